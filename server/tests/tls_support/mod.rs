//! Clients over TLS for the tests: a connector trusting a test CA, and a channel over it.

use std::path::Path;
use std::time::Duration;

use endure_tls::{ClientTls, Connector, KeyPair};
use tonic::transport::{Channel, Endpoint};

pub fn trusting(ca: &Path, identity: Option<KeyPair>) -> Connector {
    Connector::tls(ClientTls::load("test client", ca.to_path_buf(), identity).unwrap())
}

/// A channel to `port` over `connector` (tonic sees http://; the connector does TLS).
pub async fn channel(port: u16, connector: &Connector) -> Result<Channel, tonic::transport::Error> {
    Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .connect_with_connector(connector.clone())
        .await
}
