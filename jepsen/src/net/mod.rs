//! The network between the nodes and between the harness and the nodes, as a set of
//! directed links ([`proxy::Proxy`]): for n nodes, n·(n−1) raft links (node i's
//! connections to node j's raft port) and one client link per node (the harness's
//! clients and workers to node i's gRPC port). Partitions are link modes.

pub mod proxy;

use std::collections::BTreeMap;

use serde::Serialize;

pub use proxy::Mode;
use proxy::Proxy;

/// One directed link, by slot (0-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Link {
    /// Slot `from`'s connections to slot `to`'s raft port.
    Raft { from: usize, to: usize },
    /// The harness's connections to the slot's gRPC port.
    Client { slot: usize },
}

/// Every proxy of the run.
pub struct Net {
    links: BTreeMap<Link, Proxy>,
}

impl Net {
    /// Starts all proxies. `raft_ports[i]`/`grpc_ports[i]` are slot i's real ports;
    /// `base_port` (if any) fixes the proxies' own ports, else any free port is used.
    pub async fn start(
        raft_ports: &[u16],
        grpc_ports: &[u16],
        base_port: Option<u16>,
    ) -> anyhow::Result<Net> {
        let n = raft_ports.len();
        let mut next = base_port;
        let mut take = || {
            let port = next.unwrap_or(0);
            next = next.map(|p| p + 1);
            port
        };
        let mut links = BTreeMap::new();
        for from in 0..n {
            for (to, &raft) in raft_ports.iter().enumerate() {
                if from != to {
                    let proxy = Proxy::start(take(), raft).await?;
                    links.insert(Link::Raft { from, to }, proxy);
                }
            }
        }
        for (slot, &grpc) in grpc_ports.iter().enumerate() {
            links.insert(Link::Client { slot }, Proxy::start(take(), grpc).await?);
        }
        Ok(Net { links })
    }

    /// Listening port of a link's proxy.
    pub fn port(&self, link: Link) -> u16 {
        self.links[&link].port()
    }

    /// Proxy ports of the raft links, for `--peer-route`.
    pub fn raft_routes(&self) -> BTreeMap<(usize, usize), u16> {
        self.links
            .iter()
            .filter_map(|(link, proxy)| match *link {
                Link::Raft { from, to } => Some(((from, to), proxy.port())),
                Link::Client { .. } => None,
            })
            .collect()
    }

    pub fn client_port(&self, slot: usize) -> u16 {
        self.port(Link::Client { slot })
    }

    pub fn set(&self, link: Link, mode: Mode) {
        if let Some(proxy) = self.links.get(&link) {
            proxy.set_mode(mode);
        }
    }

    /// Sets both directions between two slots: `a_to_b` on a's link to b, `b_to_a` on b's.
    pub fn set_pair(&self, a: usize, b: usize, a_to_b: Mode, b_to_a: Mode) {
        self.set(Link::Raft { from: a, to: b }, a_to_b);
        self.set(Link::Raft { from: b, to: a }, b_to_a);
    }

    /// Every link back to `pass`.
    pub fn heal(&self) {
        for proxy in self.links.values() {
            proxy.set_mode(Mode::Pass);
        }
    }

    /// Links not in `pass`, for the record.
    pub fn faulty_links(&self) -> Vec<(Link, Mode)> {
        self.links
            .iter()
            .filter(|(_, p)| p.mode() != Mode::Pass)
            .map(|(l, p)| (*l, p.mode()))
            .collect()
    }
}
