//! The connecting side: the CA a connection trusts, the certificate it shows, and the
//! connector tonic channels use.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio_rustls::{TlsConnector, TlsStream};

use crate::server::Conn;
use crate::{provider, roots, Error, KeyPair, Reload, Reloadable};

/// What a connection trusts (`ca`) and, for mutual TLS, the certificate it shows.
pub struct ClientTls {
    config: Reloadable<ClientConfig>,
}

impl ClientTls {
    pub fn load(
        what: &'static str,
        ca: PathBuf,
        identity: Option<KeyPair>,
    ) -> Result<Arc<Self>, Error> {
        let mut files = vec![ca.clone()];
        if let Some(pair) = &identity {
            files.extend(pair.files());
        }
        let build = move || {
            let builder = ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| Error(format!("TLS versions: {e}")))?
                .with_root_certificates(roots(&ca)?);
            let mut config = match &identity {
                None => builder.with_no_client_auth(),
                Some(pair) => {
                    let loaded = pair.load()?;
                    builder
                        .with_client_auth_cert(loaded.chain, loaded.key)
                        .map_err(|e| pair.unusable(e))?
                }
            };
            // Every connection Endure opens carries gRPC.
            config.alpn_protocols = vec![b"h2".to_vec()];
            Ok(config)
        };
        Ok(Arc::new(ClientTls {
            config: Reloadable::new(what, files, build)?,
        }))
    }
}

impl Reload for ClientTls {
    fn what(&self) -> &'static str {
        self.config.what
    }

    fn reload(&self, forced: bool) -> Result<bool, Error> {
        self.config.reload(forced)
    }
}

/// Opens the TCP connection for a tonic channel, then TLS when it has a [`ClientTls`].
/// The server's name is the URI's host (a DNS name, or an IP address that must be in the
/// certificate's subject alternative names).
#[derive(Clone, Default)]
pub struct Connector {
    tls: Option<Arc<ClientTls>>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Connector {
    /// Plain TCP.
    pub fn plain() -> Self {
        Connector { tls: None }
    }

    pub fn tls(tls: Arc<ClientTls>) -> Self {
        Connector { tls: Some(tls) }
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Connects to `uri`'s host and port.
    pub async fn connect(&self, uri: &Uri) -> io::Result<Conn> {
        let host = uri
            .host()
            .ok_or_else(|| invalid(format!("{uri} names no host")))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        // Without a port, the scheme's: 443 for TLS, 80 for cleartext.
        let port = uri
            .port_u16()
            .unwrap_or(if self.tls.is_some() { 443 } else { 80 });
        let stream = TcpStream::connect((host.as_str(), port)).await?;
        let _ = stream.set_nodelay(true);
        let Some(tls) = &self.tls else {
            return Ok(Conn::Plain(stream));
        };
        let name = ServerName::try_from(host.clone())
            .map_err(|_| invalid(format!("{host} is not a DNS name or IP address")))?;
        let tls = TlsConnector::from(tls.config.current())
            .connect(name, stream)
            .await?;
        Ok(Conn::Tls(Box::new(TlsStream::Client(tls))))
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<Conn>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TokioIo<Conn>>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connector = self.clone();
        Box::pin(async move { connector.connect(&uri).await.map(TokioIo::new) })
    }
}
