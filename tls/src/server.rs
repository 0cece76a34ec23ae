//! The listening side: a listener's TLS config and its stream of accepted connections.

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::{TlsAcceptor, TlsStream};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tracing::debug;

use crate::{provider, roots, Error, KeyPair, Reload, Reloadable};

/// A TLS handshake that takes longer is dropped (a client that connects and says nothing
/// holds no more than this).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections accepted but not yet taken by the server.
const ACCEPTED_BACKLOG: usize = 256;
/// Connections accepted and still in their handshake (or waiting for a first byte) at once,
/// per listener; beyond, the listener accepts no more until one ends. Each costs a
/// descriptor and a task for at most [`HANDSHAKE_TIMEOUT`].
pub const MAX_PENDING_HANDSHAKES: usize = 16_384;
/// How long accepting waits after an error (out of file descriptors, say).
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(100);

/// A listener's certificate, and the CA its clients must prove themselves to (mutual TLS).
pub struct ServerTls {
    config: Reloadable<ServerConfig>,
}

impl ServerTls {
    /// Loads `pair`; with `client_ca`, every client must show a certificate it signed.
    /// `alpn` lists the protocols offered, most preferred first (`h2` for gRPC).
    pub fn load(
        what: &'static str,
        pair: KeyPair,
        client_ca: Option<PathBuf>,
        alpn: &[&[u8]],
    ) -> Result<Arc<Self>, Error> {
        let mut files = pair.files();
        files.extend(client_ca.clone());
        let alpn: Vec<Vec<u8>> = alpn.iter().map(|p| p.to_vec()).collect();
        let build = move || {
            let loaded = pair.load()?;
            let builder = ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| Error(format!("TLS versions: {e}")))?;
            let builder = match &client_ca {
                None => builder.with_no_client_auth(),
                Some(ca) => {
                    let verifier =
                        WebPkiClientVerifier::builder_with_provider(roots(ca)?, provider())
                            .build()
                            .map_err(|e| {
                                Error(format!("cannot verify clients with {}: {e}", ca.display()))
                            })?;
                    builder.with_client_cert_verifier(verifier)
                }
            };
            let mut config = builder
                .with_single_cert(loaded.chain, loaded.key)
                .map_err(|e| pair.unusable(e))?;
            config.alpn_protocols = alpn.clone();
            Ok(config)
        };
        Ok(Arc::new(ServerTls {
            config: Reloadable::new(what, files, build)?,
        }))
    }

    /// Runs the TLS handshake on an accepted connection with the current config.
    pub async fn accept(&self, stream: TcpStream) -> io::Result<Conn> {
        let acceptor = TlsAcceptor::from(self.config.current());
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => Ok(Conn::Tls(Box::new(TlsStream::Server(tls)))),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the TLS handshake did not finish in time",
            )),
        }
    }
}

impl Reload for ServerTls {
    fn what(&self) -> &'static str {
        self.config.what
    }

    fn reload(&self, forced: bool) -> Result<bool, Error> {
        self.config.reload(forced)
    }
}

/// A connection, plain or TLS, on either side.
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(tcp) => tcp,
            Conn::Tls(tls) => tls.get_ref().0,
        }
    }
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.tcp().connect_info()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Conn::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Conn::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Conn::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Conn::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Conn::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(tcp) => tcp.is_write_vectored(),
            Conn::Tls(tls) => tls.is_write_vectored(),
        }
    }
}

/// Sets TCP_NODELAY (small replies must not wait for the peer's delayed ACK), then waits
/// for the client within [`HANDSHAKE_TIMEOUT`]: its TLS handshake when `tls` is set, else
/// its first byte.
pub async fn establish(stream: TcpStream, tls: Option<&ServerTls>) -> io::Result<Conn> {
    let _ = stream.set_nodelay(true);
    match tls {
        // A client that connects and sends nothing would hold a descriptor (and on HTTP a
        // connection slot) for ever: it has HANDSHAKE_TIMEOUT to send its first byte, as a
        // TLS client has to finish its handshake.
        None => match tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut [0u8; 1])).await {
            Ok(peeked) => peeked.map(|_| Conn::Plain(stream)),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client sent nothing within the handshake timeout",
            )),
        },
        Some(tls) => tls.accept(stream).await,
    }
}

/// The connections accepted on `listener`, each handshake in its own task so a slow
/// client delays no other. Ends when the stream is dropped. Failed handshakes are logged
/// and skipped, never ending the stream.
pub fn incoming(
    listener: TcpListener,
    tls: Option<Arc<ServerTls>>,
) -> impl tokio_stream::Stream<Item = io::Result<Conn>> {
    let (tx, rx) = mpsc::channel(ACCEPTED_BACKLOG);
    let handshakes = Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let Ok(handshake) = handshakes.clone().acquire_owned().await else {
                return;
            };
            let accepted = tokio::select! {
                _ = tx.closed() => return,
                accepted = listener.accept() => accepted,
            };
            let stream = match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    debug!(%error, "accept failed; retrying");
                    tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
                    continue;
                }
            };
            // Cleartext too waits for the client (its first byte), so in a task of its own.
            let (tx, tls) = (tx.clone(), tls.clone());
            tokio::spawn(async move {
                let established = establish(stream, tls.as_deref()).await;
                drop(handshake);
                match established {
                    Ok(conn) => {
                        let _ = tx.send(Ok(conn)).await;
                    }
                    Err(error) => debug!(%error, "connection closed before its handshake"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}
