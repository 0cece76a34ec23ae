//! The network between the nodes and between the harness and the nodes, as a set of
//! directed links: for n nodes, n·(n−1) raft links (node i's connections to node j's raft
//! port) and one client link per node (the harness's clients and workers to node i's gRPC
//! port). Partitions are link modes. Two backends ([`Backend`]) make them: per-link TCP
//! proxies in the harness ([`proxy`], the default, unprivileged), or network namespaces
//! with nft rules ([`netns`], root only). The nemeses see only [`Net`].

pub mod netns;
pub mod proxy;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};

use serde::Serialize;

pub use proxy::Mode;
use proxy::Proxy;

/// Which backend makes the links (`--net`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Per-link TCP proxies in the harness; nodes on 127.0.0.1.
    Proxy,
    /// One network namespace per node on a bridge, nft rules per link (root only).
    Netns,
}

/// One line per backend, for `endure-chaos list`.
pub const DESCRIPTIONS: [(&str, &str); 2] = [
    (
        "proxy",
        "per-link TCP proxies in the harness, nodes on 127.0.0.1 (default, unprivileged)",
    ),
    (
        "netns",
        "a network namespace per node on a bridge, nft rules per link (root, ip and nft)",
    ),
];

/// One directed link, by slot (0-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Link {
    /// Slot `from`'s connections to slot `to`'s raft port.
    Raft { from: usize, to: usize },
    /// The harness's connections to the slot's gRPC port.
    Client { slot: usize },
}

/// The run's network, whichever backend makes it.
pub struct Net {
    inner: Inner,
}

enum Inner {
    Proxy(Proxies),
    Netns(netns::Namespaces),
}

impl Net {
    /// Starts the proxies; see [`Proxies::start`].
    pub async fn proxies(
        raft_ports: &[u16],
        grpc_ports: &[u16],
        base_port: Option<u16>,
    ) -> anyhow::Result<Net> {
        let proxies = Proxies::start(raft_ports, grpc_ports, base_port).await?;
        Ok(Net {
            inner: Inner::Proxy(proxies),
        })
    }

    /// Creates the namespaces, bridge and veths; see [`netns::Namespaces::start`].
    pub fn namespaces(raft_ports: &[u16], grpc_ports: &[u16]) -> anyhow::Result<Net> {
        let namespaces = netns::Namespaces::start(raft_ports, grpc_ports)?;
        Ok(Net {
            inner: Inner::Netns(namespaces),
        })
    }

    pub fn backend(&self) -> Backend {
        match self.inner {
            Inner::Proxy(_) => Backend::Proxy,
            Inner::Netns(_) => Backend::Netns,
        }
    }

    /// The address slot `slot` binds (all three ports) and its peers and clients reach.
    pub fn node_host(&self, slot: usize) -> Ipv4Addr {
        match &self.inner {
            Inner::Proxy(_) => Ipv4Addr::LOCALHOST,
            Inner::Netns(ns) => ns.plan().node_addr(slot),
        }
    }

    /// The `ip netns exec <ns>` prefix the slot's server starts under (empty: none).
    pub fn exec_prefix(&self, slot: usize) -> Vec<String> {
        match &self.inner {
            Inner::Proxy(_) => Vec::new(),
            Inner::Netns(ns) => ns.exec_prefix(slot),
        }
    }

    /// Proxy ports of the raft links, for `--peer-route` (none with namespaces: peers
    /// connect to each other's own addresses).
    pub fn raft_routes(&self) -> BTreeMap<(usize, usize), u16> {
        match &self.inner {
            Inner::Proxy(p) => p.raft_routes(),
            Inner::Netns(_) => BTreeMap::new(),
        }
    }

    /// Whether raft links can be cut given whether the server knows `--peer-route` (the
    /// proxies need it; namespaces cut the real addresses).
    pub fn can_partition(&self, server_has_peer_route: bool) -> bool {
        match self.inner {
            Inner::Proxy(_) => server_has_peer_route,
            Inner::Netns(_) => true,
        }
    }

    /// Where the harness's clients and workers reach slot `slot`.
    pub fn client_addr(&self, slot: usize, grpc_port: u16) -> SocketAddr {
        match &self.inner {
            Inner::Proxy(p) => SocketAddr::from((Ipv4Addr::LOCALHOST, p.client_port(slot))),
            Inner::Netns(ns) => SocketAddr::from((ns.plan().node_addr(slot), grpc_port)),
        }
    }

    pub fn set(&self, link: Link, mode: Mode) -> anyhow::Result<()> {
        match &self.inner {
            Inner::Proxy(p) => {
                p.set(link, mode);
                Ok(())
            }
            Inner::Netns(ns) => ns.set(link, mode),
        }
    }

    /// Sets both directions between two slots: `a_to_b` on a's link to b, `b_to_a` on b's.
    pub fn set_pair(&self, a: usize, b: usize, a_to_b: Mode, b_to_a: Mode) -> anyhow::Result<()> {
        self.set(Link::Raft { from: a, to: b }, a_to_b)?;
        self.set(Link::Raft { from: b, to: a }, b_to_a)
    }

    /// Every link back to `pass`.
    pub fn heal(&self) -> anyhow::Result<()> {
        match &self.inner {
            Inner::Proxy(p) => {
                p.heal();
                Ok(())
            }
            Inner::Netns(ns) => ns.heal(),
        }
    }

    /// Links not in `pass`, for the record.
    pub fn faulty_links(&self) -> Vec<(Link, Mode)> {
        match &self.inner {
            Inner::Proxy(p) => p.faulty_links(),
            Inner::Netns(ns) => ns.faulty_links(),
        }
    }
}

/// Every proxy of the run.
pub struct Proxies {
    links: BTreeMap<Link, Proxy>,
}

impl Proxies {
    /// Starts all proxies. `raft_ports[i]`/`grpc_ports[i]` are slot i's real ports;
    /// `base_port` (if any) fixes the proxies' own ports, else any free port is used.
    pub async fn start(
        raft_ports: &[u16],
        grpc_ports: &[u16],
        base_port: Option<u16>,
    ) -> anyhow::Result<Proxies> {
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
        Ok(Proxies { links })
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
