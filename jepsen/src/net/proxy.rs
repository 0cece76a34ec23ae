//! One directed TCP link through the harness: a listener that forwards every accepted
//! connection to a fixed target, with a mode that can change at any time. This is how
//! partitions are made without privileges (TigerBeetle Vortex's approach): a node is told
//! to reach its peer through the proxy, and the proxy decides what gets through.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How long the proxy waits to connect to its target before dropping the client.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Bytes moved per read.
const COPY_BUFFER_BYTES: usize = 32 * 1024;

/// What a link does with traffic. "Forward" is the direction of the connecting side
/// (node i's requests to node j); "backward" carries the answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    Pass,
    /// Existing connections are closed; new ones are accepted and closed at once.
    Refuse,
    /// Connections are accepted but no byte moves in either direction (TCP hangs).
    Blackhole,
    /// Requests pass, answers are blackholed.
    ForwardOnly,
    /// Answers pass, requests are blackholed.
    BackwardOnly,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Forward,
    Backward,
}

#[derive(PartialEq, Eq)]
enum Verdict {
    Flow,
    Hold,
    Close,
}

impl Mode {
    fn verdict(self, direction: Direction) -> Verdict {
        match (self, direction) {
            (Mode::Pass, _) => Verdict::Flow,
            (Mode::Refuse, _) => Verdict::Close,
            (Mode::Blackhole, _) => Verdict::Hold,
            (Mode::ForwardOnly, Direction::Forward) => Verdict::Flow,
            (Mode::BackwardOnly, Direction::Backward) => Verdict::Flow,
            _ => Verdict::Hold,
        }
    }
}

/// A running proxy; dropping it stops accepting (existing connections end when the
/// mode sender goes away).
pub struct Proxy {
    port: u16,
    mode: watch::Sender<Mode>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Binds `127.0.0.1:listen_port` (0: any) and forwards to `127.0.0.1:target_port`.
    pub async fn start(listen_port: u16, target_port: u16) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind(("127.0.0.1", listen_port)).await?;
        let port = listener.local_addr()?.port();
        let (mode, rx) = watch::channel(Mode::Pass);
        let target = SocketAddr::from(([127, 0, 0, 1], target_port));
        let task = tokio::spawn(accept_loop(listener, target, rx));
        Ok(Proxy { port, mode, task })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn mode(&self) -> Mode {
        *self.mode.borrow()
    }

    pub fn set_mode(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, mode: watch::Receiver<Mode>) {
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        if *mode.borrow() == Mode::Refuse {
            drop(inbound);
            continue;
        }
        tokio::spawn(connection(inbound, target, mode.clone()));
    }
}

async fn connection(inbound: TcpStream, target: SocketAddr, mode: watch::Receiver<Mode>) {
    let outbound =
        match tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, TcpStream::connect(target)).await {
            Ok(Ok(stream)) => stream,
            _ => return,
        };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (in_read, in_write) = inbound.into_split();
    let (out_read, out_write) = outbound.into_split();
    tokio::select! {
        _ = pump(in_read, out_write, Direction::Forward, mode.clone()) => {}
        _ = pump(out_read, in_write, Direction::Backward, mode) => {}
    }
}

/// Waits until the mode lets `direction` flow; false when the link must close.
async fn wait_flow(mode: &mut watch::Receiver<Mode>, direction: Direction) -> bool {
    loop {
        let verdict = mode.borrow_and_update().verdict(direction);
        match verdict {
            Verdict::Flow => return true,
            Verdict::Close => return false,
            Verdict::Hold => {
                if mode.changed().await.is_err() {
                    return false;
                }
            }
        }
    }
}

/// Copies one direction of a connection while the mode allows it.
async fn pump<R, W>(mut from: R, mut to: W, direction: Direction, mut mode: watch::Receiver<Mode>)
where
    R: AsyncReadExt + Unpin,
    W: AsyncWriteExt + Unpin,
{
    let mut buffer = vec![0u8; COPY_BUFFER_BYTES];
    loop {
        if !wait_flow(&mut mode, direction).await {
            return;
        }
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            changed = mode.changed() => {
                if changed.is_err() { return; }
                continue;
            }
        };
        let n = match read {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // Bytes read just before a mode change wait for the link to flow again.
        if !wait_flow(&mut mode, direction).await {
            return;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut b = [0u8; 64];
                    while let Ok(n) = s.read(&mut b).await {
                        if n == 0 || s.write_all(&b[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        port
    }

    async fn round_trip(port: u16) -> Option<Vec<u8>> {
        let attempt = async {
            let mut s = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
            s.write_all(b"ping").await.ok()?;
            let mut b = [0u8; 4];
            s.read_exact(&mut b).await.ok()?;
            Some(b.to_vec())
        };
        tokio::time::timeout(Duration::from_millis(300), attempt)
            .await
            .ok()
            .flatten()
    }

    #[tokio::test]
    async fn modes_switch_at_runtime() {
        let proxy = Proxy::start(0, echo_server().await).await.unwrap();
        assert_eq!(
            round_trip(proxy.port()).await.as_deref(),
            Some(&b"ping"[..])
        );
        for mode in [
            Mode::Refuse,
            Mode::Blackhole,
            Mode::ForwardOnly,
            Mode::BackwardOnly,
        ] {
            proxy.set_mode(mode);
            assert_eq!(round_trip(proxy.port()).await, None, "{mode:?}");
        }
        proxy.set_mode(Mode::Pass);
        assert_eq!(
            round_trip(proxy.port()).await.as_deref(),
            Some(&b"ping"[..])
        );
    }
}
