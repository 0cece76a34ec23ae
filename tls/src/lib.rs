//! TLS for Endure: the client listeners (gRPC, HTTP), the internal port between nodes
//! (mutual TLS with a cluster CA), and the connections a node or the CLI opens.
//!
//! - [`ServerTls`]: a listener's certificate, key and (for mutual TLS) the CA its clients'
//!   certificates must chain to; [`server::incoming`] turns a `TcpListener` into a stream
//!   of connections, plain or TLS, with each handshake off the accept loop.
//! - [`ClientTls`]: the CA a connection trusts and the certificate it shows (mutual TLS);
//!   [`Connector`] opens TCP + TLS for tonic channels.
//! - [`watch`]: reloads every [`Reload`] on SIGHUP and when one of its files changes. A
//!   reload builds a new rustls config and swaps it in: new connections get it, open ones
//!   keep theirs. A reload that fails (a half-written file, a key that does not match the
//!   certificate) logs why and keeps the previous config.
//!
//! Files are PEM. rustls with ring; no OpenSSL.

pub mod client;
pub mod server;
#[cfg(feature = "testing")]
pub mod testing;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::RootCertStore;
use tokio::sync::watch as signal;
use tracing::{info, warn};

pub use client::{ClientTls, Connector};
pub use server::{Conn, ServerTls};

/// How often the watched files' modification times are compared.
pub const RELOAD_POLL_INTERVAL: Duration = Duration::from_secs(2);

/// A TLS file that cannot be used, with what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate chain and its private key, as PEM file paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

struct Loaded {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl KeyPair {
    fn load(&self) -> Result<Loaded, Error> {
        let chain = certificates(&self.cert)?;
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| {
            Error(format!(
                "cannot read a private key from {}: {e}",
                self.key.display()
            ))
        })?;
        Ok(Loaded { chain, key })
    }

    /// rustls refused this pair (a key that does not match, an unsupported algorithm).
    fn unusable(&self, error: rustls::Error) -> Error {
        Error(format!(
            "{} and {} do not make a usable certificate and key: {error}",
            self.cert.display(),
            self.key.display()
        ))
    }

    fn files(&self) -> Vec<PathBuf> {
        vec![self.cert.clone(), self.key.clone()]
    }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let unreadable = |e: &dyn std::fmt::Display| {
        Error(format!(
            "cannot read certificates from {}: {e}",
            path.display()
        ))
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| unreadable(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unreadable(&e))?;
    if chain.is_empty() {
        return Err(unreadable(&"no PEM CERTIFICATE block in the file"));
    }
    Ok(chain)
}

fn roots(path: &Path) -> Result<Arc<RootCertStore>, Error> {
    let mut store = RootCertStore::empty();
    for cert in certificates(path)? {
        store.add(cert).map_err(|e| {
            Error(format!(
                "{} holds a certificate that cannot be a CA: {e}",
                path.display()
            ))
        })?;
    }
    Ok(Arc::new(store))
}

/// The modification time and length of each file, to tell whether one changed.
type Stamps = Vec<Option<(SystemTime, u64)>>;

fn stamps(files: &[PathBuf]) -> Stamps {
    files
        .iter()
        .map(|file| {
            let meta = std::fs::metadata(file).ok()?;
            Some((meta.modified().ok()?, meta.len()))
        })
        .collect()
}

/// A config built from files, swapped in whole by [`Reload::reload`].
struct Reloadable<T> {
    what: &'static str,
    files: Vec<PathBuf>,
    current: RwLock<Arc<T>>,
    stamps: Mutex<Stamps>,
    build: Box<dyn Fn() -> Result<T, Error> + Send + Sync>,
}

impl<T> Reloadable<T> {
    fn new(
        what: &'static str,
        files: Vec<PathBuf>,
        build: impl Fn() -> Result<T, Error> + Send + Sync + 'static,
    ) -> Result<Self, Error> {
        let before = stamps(&files);
        let config = build()?;
        Ok(Reloadable {
            what,
            stamps: Mutex::new(before),
            files,
            current: RwLock::new(Arc::new(config)),
            build: Box::new(build),
        })
    }

    fn current(&self) -> Arc<T> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn reload(&self, forced: bool) -> Result<bool, Error> {
        let now = stamps(&self.files);
        {
            let last = self.stamps.lock().unwrap_or_else(|p| p.into_inner());
            if !forced && *last == now {
                return Ok(false);
            }
        }
        let config = (self.build)();
        // Whether or not it built, these files were seen: a broken file is reported once,
        // not every poll, and retried when it changes again (or on SIGHUP).
        *self.stamps.lock().unwrap_or_else(|p| p.into_inner()) = now;
        let config = config?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
        Ok(true)
    }
}

/// A TLS config that can be built again from its files.
pub trait Reload: Send + Sync {
    /// What it is, for the log ("client listener certificate", ...).
    fn what(&self) -> &'static str;
    /// Builds the config again if a file changed (or always, when `forced`) and swaps it
    /// in; `Ok(true)` when it did. On an error the previous config stays.
    fn reload(&self, forced: bool) -> Result<bool, Error>;
}

/// Takes over SIGHUP from its default (ending the process), for [`watch`]. Call it early,
/// before a slow start, so a certificate tool's SIGHUP cannot kill a node still starting.
pub fn hangups() -> Option<tokio::signal::unix::Signal> {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(hangup) => Some(hangup),
        Err(error) => {
            warn!(%error, "cannot listen for SIGHUP; TLS files reload only when they change");
            None
        }
    }
}

/// Reloads `configs` on each SIGHUP from `hangup` ([`hangups`]) and when their files
/// change, until `shutdown` turns true.
pub async fn watch(
    configs: Vec<Arc<dyn Reload>>,
    mut hangup: Option<tokio::signal::unix::Signal>,
    mut shutdown: signal::Receiver<bool>,
) {
    if configs.is_empty() {
        return;
    }
    let mut poll = tokio::time::interval(RELOAD_POLL_INTERVAL);
    loop {
        let forced = tokio::select! {
            _ = shutdown.changed() => return,
            _ = poll.tick() => false,
            Some(()) = async {
                match hangup.as_mut() {
                    Some(hangup) => hangup.recv().await,
                    None => std::future::pending().await,
                }
            } => true,
        };
        if *shutdown.borrow() {
            return;
        }
        for config in &configs {
            match config.reload(forced) {
                Ok(true) => info!(what = config.what(), "TLS files reloaded"),
                Ok(false) => {}
                Err(error) => warn!(what = config.what(), %error,
                    "TLS files not reloaded; the previous certificate stays in use"),
            }
        }
    }
}
