//! The root-only partition backend: one network namespace per node slot, a veth pair per
//! slot into a bridge in the root namespace, node i at `10.88.X.(i+1)` and the bridge (the
//! harness and its clients) at `10.88.X.254`. No proxies: nodes and clients use the node
//! addresses, and a link mode is a set of `nft` rules in an `inet chaos` table inside the
//! namespace of the link's listening side (reliability.md §3.3 A).
//!
//! A link is one side's TCP connections to one port of the other: slot a's connections to
//! slot b's raft port (`ip saddr A tcp dport RAFT_B` coming in, `ip daddr A tcp sport
//! RAFT_B` going out, both seen in b's namespace), or the harness's to a slot's gRPC port.
//! Matching on the port keeps the proxy backend's per-connection meaning: b's own
//! connections to a are the other link.
//!
//! Everything created is recorded in a global ([`teardown_recorded`]) so that the end of a
//! run, ctrl-c/SIGTERM, the panic hook and the error exit of `main` delete it; leftovers of
//! a run that was SIGKILLed are removed at the next start ([`remove_stale`]).

use std::collections::BTreeMap;
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use anyhow::Context;

use super::{Link, Mode};

/// The first octet pair of every run's /24.
const SUBNET_PREFIX: [u8; 2] = [10, 88];
/// Host part of the bridge's address (the harness's source address towards the nodes).
const BRIDGE_HOST: u8 = 254;
/// Most node slots one /24 holds here (hosts 1..=253; .254 is the bridge).
pub const MAX_SLOTS: usize = 253;
/// Prefix of every namespace this backend creates (`endure-<pid>-n<slot>`).
const NS_PREFIX: &str = "endure-";
/// Prefix of every link (bridge `ech<pid>b`, veths `ech<pid>v<slot>`); kept short because
/// Linux interface names have at most 15 bytes.
const LINK_PREFIX: &str = "ech";
/// Name of the veth end inside each namespace.
const INNER_IF: &str = "eth0";

/// Names and addresses of one run, derived from the harness's PID and free of IO.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub pid: u32,
    /// Third octet of the run's /24.
    pub subnet: u8,
    pub slots: usize,
}

impl Plan {
    /// The plan of this process's run with `subnet` as the third octet.
    pub fn new(pid: u32, subnet: u8, slots: usize) -> anyhow::Result<Plan> {
        anyhow::ensure!(
            (1..=MAX_SLOTS).contains(&slots),
            "--net netns supports 1 to {MAX_SLOTS} nodes, not {slots}"
        );
        Ok(Plan { pid, subnet, slots })
    }

    /// The first third octet tried for a PID (others follow when it is taken).
    pub fn preferred_subnet(pid: u32) -> u8 {
        (pid % 250) as u8 + 1
    }

    pub fn namespace(&self, slot: usize) -> String {
        format!("{NS_PREFIX}{}-n{slot}", self.pid)
    }

    pub fn bridge(&self) -> String {
        format!("{LINK_PREFIX}{}b", self.pid)
    }

    /// The root namespace's end of the slot's veth pair.
    pub fn veth(&self, slot: usize) -> String {
        format!("{LINK_PREFIX}{}v{slot}", self.pid)
    }

    pub fn node_addr(&self, slot: usize) -> Ipv4Addr {
        let [a, b] = SUBNET_PREFIX;
        Ipv4Addr::new(a, b, self.subnet, slot as u8 + 1)
    }

    pub fn bridge_addr(&self) -> Ipv4Addr {
        let [a, b] = SUBNET_PREFIX;
        Ipv4Addr::new(a, b, self.subnet, BRIDGE_HOST)
    }

    pub fn cidr(&self) -> String {
        cidr_of(self.subnet)
    }

    /// Every `ip` invocation of the setup, in order (the nft table comes after, per slot).
    pub fn setup_commands(&self) -> Vec<Vec<String>> {
        let bridge = self.bridge();
        let mut commands = vec![
            args(&["link", "add", &bridge, "type", "bridge"]),
            args(&[
                "addr",
                "add",
                &format!("{}/24", self.bridge_addr()),
                "dev",
                &bridge,
            ]),
            args(&["link", "set", &bridge, "up"]),
        ];
        for slot in 0..self.slots {
            let ns = self.namespace(slot);
            let veth = self.veth(slot);
            let addr = format!("{}/24", self.node_addr(slot));
            commands.extend([
                args(&["netns", "add", &ns]),
                args(&[
                    "link", "add", &veth, "type", "veth", "peer", "name", INNER_IF, "netns", &ns,
                ]),
                args(&["link", "set", &veth, "master", &bridge, "up"]),
                args(&["-n", &ns, "addr", "add", &addr, "dev", INNER_IF]),
                args(&["-n", &ns, "link", "set", INNER_IF, "up"]),
                args(&["-n", &ns, "link", "set", "lo", "up"]),
            ]);
        }
        commands
    }
}

/// The /24 whose third octet is `subnet`.
pub fn cidr_of(subnet: u8) -> String {
    let [a, b] = SUBNET_PREFIX;
    format!("{a}.{b}.{subnet}.0/24")
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// The nft script that creates the (empty) `inet chaos` table of a namespace.
pub fn table_script() -> String {
    "add table inet chaos\n\
     add chain inet chaos input { type filter hook input priority 0; policy accept; }\n\
     add chain inet chaos output { type filter hook output priority 0; policy accept; }\n"
        .to_owned()
}

/// The rules of one link in the listening side's namespace: `peer` connects to `port`.
pub fn link_rules(peer: Ipv4Addr, port: u16, mode: Mode) -> Vec<String> {
    let incoming = format!("add rule inet chaos input ip saddr {peer} tcp dport {port}");
    let outgoing = format!("add rule inet chaos output ip daddr {peer} tcp sport {port}");
    match mode {
        Mode::Pass => Vec::new(),
        Mode::Blackhole => vec![format!("{incoming} drop"), format!("{outgoing} drop")],
        // Resets new and existing connections on both ends.
        Mode::Refuse => vec![
            format!("{incoming} reject with tcp reset"),
            format!("{outgoing} reject with tcp reset"),
        ],
        // Requests arrive, answers (the SYN-ACK included) are dropped.
        Mode::ForwardOnly => vec![format!("{outgoing} drop")],
        Mode::BackwardOnly => vec![format!("{incoming} drop")],
    }
}

/// One namespace's whole rule set, replacing the previous one atomically (`nft -f`).
pub fn namespace_script(rules: &[String]) -> String {
    let mut script = String::from("flush table inet chaos\n");
    for rule in rules {
        script.push_str(rule);
        script.push('\n');
    }
    script
}

/// Names to delete at teardown (a global so that signal and panic paths reach them).
#[derive(Clone, Debug, Default)]
struct Created {
    /// Root-side veth ends: deleted first, because a namespace whose last process has not
    /// been reaped yet outlives `ip netns delete`, and its veth pair with it.
    veths: Vec<String>,
    namespaces: Vec<String>,
    bridge: Option<String>,
}

static CREATED: Mutex<Option<Created>> = Mutex::new(None);

fn created() -> std::sync::MutexGuard<'static, Option<Created>> {
    CREATED.lock().unwrap_or_else(|p| p.into_inner())
}

/// Deletes every namespace and the bridge this process created (idempotent; safe from the
/// panic hook and the signal task). Deleting a namespace deletes its veth pair.
pub fn teardown_recorded() {
    let Some(created) = created().take() else {
        return;
    };
    for veth in &created.veths {
        quiet_ip(&["link", "delete", veth]);
    }
    for ns in &created.namespaces {
        quiet_ip(&["netns", "delete", ns]);
    }
    if let Some(bridge) = &created.bridge {
        quiet_ip(&["link", "delete", bridge]);
    }
}

/// Runs `ip ARGS`, ignoring failure (teardown of what may not exist).
fn quiet_ip(list: &[&str]) {
    let _ = Command::new("ip")
        .args(list)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Runs `program ARGS`, failing with its stderr.
fn run(program: &str, list: &[String], input: Option<&str>) -> anyhow::Result<()> {
    let shown = format!("{program} {}", list.join(" "));
    let mut child = Command::new(program)
        .args(list)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running `{shown}`"))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .with_context(|| format!("writing the script of `{shown}`"))?;
    }
    let out = child
        .wait_with_output()
        .with_context(|| format!("waiting for `{shown}`"))?;
    anyhow::ensure!(
        out.status.success(),
        "`{shown}` failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// Whether `program ARG` runs and succeeds.
fn runs(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Refuses the backend when not root or without `ip`/`nft`, with the reason.
pub fn check_prerequisites() -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    #[allow(unsafe_code)]
    let euid = unsafe { libc::geteuid() };
    anyhow::ensure!(
        euid == 0,
        "--net netns needs root (network namespaces, a bridge and nft rules); run as root or use --net proxy"
    );
    anyhow::ensure!(
        runs("ip", "-V"),
        "--net netns needs `ip` (iproute2) on PATH; install iproute2 or use --net proxy"
    );
    anyhow::ensure!(
        runs("nft", "--version"),
        "--net netns needs `nft` on PATH; install nftables (apt-get install nftables) or use --net proxy"
    );
    Ok(())
}

/// The PID in one of our namespace names (`endure-<pid>-n<slot>`).
pub fn pid_of_namespace(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(NS_PREFIX)?;
    let (pid, slot) = rest.split_once("-n")?;
    slot.parse::<usize>().ok()?;
    pid.parse().ok()
}

/// The PID in one of our link names (`ech<pid>b`, `ech<pid>v<slot>`).
pub fn pid_of_link(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(LINK_PREFIX)?;
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let tail = &rest[digits.len()..];
    let ours = tail == "b"
        || tail
            .strip_prefix('v')
            .is_some_and(|s| s.parse::<usize>().is_ok());
    if ours {
        digits.parse().ok()
    } else {
        None
    }
}

fn process_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

fn command_lines(program: &str, list: &[&str]) -> Vec<String> {
    Command::new(program)
        .args(list)
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Deletes namespaces and links of ours left by a run that is gone (SIGKILLed): those of
/// this PID (a reused PID) and those whose PID no longer runs. Returns what was removed.
pub fn remove_stale(own_pid: u32) -> Vec<String> {
    let mut removed = Vec::new();
    for line in command_lines("ip", &["netns", "list"]) {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        if let Some(pid) = pid_of_namespace(name) {
            if pid == own_pid || !process_alive(pid) {
                quiet_ip(&["netns", "delete", name]);
                removed.push(name.to_owned());
            }
        }
    }
    for line in command_lines("ip", &["-o", "link", "show"]) {
        // `7: ech123v0@if2: <...>`
        let Some(name) = line.split(": ").nth(1) else {
            continue;
        };
        let name = name.split('@').next().unwrap_or(name);
        if let Some(pid) = pid_of_link(name) {
            if pid == own_pid || !process_alive(pid) {
                quiet_ip(&["link", "delete", name]);
                removed.push(name.to_owned());
            }
        }
    }
    removed
}

/// Third octets to try for a run, its preferred one first, each of 1..=250 once.
pub fn subnet_candidates(pid: u32) -> impl Iterator<Item = u8> {
    let first = Plan::preferred_subnet(pid) as u16;
    (0..250u16).map(move |i| ((first - 1 + i) % 250) as u8 + 1)
}

/// Whether a /24 is free in the root namespace (no route into it).
fn subnet_free(cidr: &str) -> bool {
    command_lines("ip", &["-4", "route", "show", "to", "match", cidr])
        .iter()
        .all(|line| !line.starts_with(cidr))
}

/// The running backend: the plan, the ports the rules match and the current link modes.
pub struct Namespaces {
    plan: Plan,
    raft_ports: Vec<u16>,
    grpc_ports: Vec<u16>,
    modes: Mutex<BTreeMap<Link, Mode>>,
}

impl Namespaces {
    /// Creates the bridge, the namespaces, the veths and an empty chaos table in each.
    pub fn start(raft_ports: &[u16], grpc_ports: &[u16]) -> anyhow::Result<Namespaces> {
        check_prerequisites()?;
        let pid = std::process::id();
        let removed = remove_stale(pid);
        if !removed.is_empty() {
            eprintln!(
                "netns: removed leftovers of earlier runs: {}",
                removed.join(" ")
            );
        }
        let subnet = subnet_candidates(pid)
            .find(|&x| subnet_free(&cidr_of(x)))
            .context("no free 10.88.X.0/24 for the run's bridge (all 250 are routed)")?;
        let plan = Plan::new(pid, subnet, raft_ports.len())?;
        let namespaces = Namespaces {
            plan: plan.clone(),
            raft_ports: raft_ports.to_vec(),
            grpc_ports: grpc_ports.to_vec(),
            modes: Mutex::new(BTreeMap::new()),
        };
        // Record before creating, so that a failure half-way is torn down too.
        *created() = Some(Created {
            veths: (0..plan.slots).map(|s| plan.veth(s)).collect(),
            namespaces: (0..plan.slots).map(|s| plan.namespace(s)).collect(),
            bridge: Some(plan.bridge()),
        });
        let setup = || -> anyhow::Result<()> {
            for command in plan.setup_commands() {
                run("ip", &command, None)?;
            }
            for slot in 0..plan.slots {
                namespaces.nft(slot, &table_script())?;
            }
            Ok(())
        };
        if let Err(error) = setup() {
            teardown_recorded();
            return Err(error.context("setting up the network namespaces"));
        }
        Ok(namespaces)
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// `ip netns exec <ns>`: the prefix of a command that runs inside the slot's namespace.
    pub fn exec_prefix(&self, slot: usize) -> Vec<String> {
        args(&["netns", "exec", &self.plan.namespace(slot)])
    }

    fn nft(&self, slot: usize, script: &str) -> anyhow::Result<()> {
        let mut list = self.exec_prefix(slot);
        list.extend(args(&["nft", "-f", "-"]));
        run("ip", &list, Some(script))
    }

    /// The namespace a link's rules live in, the peer address and the port they match.
    fn placement(&self, link: Link) -> Option<(usize, Ipv4Addr, u16)> {
        match link {
            Link::Raft { from, to } => {
                Some((to, self.plan.node_addr(from), *self.raft_ports.get(to)?))
            }
            Link::Client { slot } => {
                Some((slot, self.plan.bridge_addr(), *self.grpc_ports.get(slot)?))
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Link, Mode>> {
        self.modes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Rewrites one namespace's rules from the recorded modes.
    fn apply(&self, slot: usize, modes: &BTreeMap<Link, Mode>) -> anyhow::Result<()> {
        let rules: Vec<String> = modes
            .iter()
            .filter_map(|(&link, &mode)| {
                let (ns, peer, port) = self.placement(link)?;
                (ns == slot).then(|| link_rules(peer, port, mode))
            })
            .flatten()
            .collect();
        self.nft(slot, &namespace_script(&rules))
            .with_context(|| format!("changing the nft rules of {}", self.plan.namespace(slot)))
    }

    pub fn set(&self, link: Link, mode: Mode) -> anyhow::Result<()> {
        let Some((slot, _, _)) = self.placement(link) else {
            return Ok(());
        };
        let mut modes = self.lock();
        if mode == Mode::Pass {
            modes.remove(&link);
        } else {
            modes.insert(link, mode);
        }
        self.apply(slot, &modes)
    }

    /// Empties every namespace's chaos table.
    pub fn heal(&self) -> anyhow::Result<()> {
        let mut modes = self.lock();
        modes.clear();
        let mut errors = Vec::new();
        for slot in 0..self.plan.slots {
            if let Err(error) = self.apply(slot, &modes) {
                errors.push(format!("{error:#}"));
            }
        }
        anyhow::ensure!(errors.is_empty(), "{}", errors.join("; "));
        Ok(())
    }

    pub fn faulty_links(&self) -> Vec<(Link, Mode)> {
        self.lock().iter().map(|(l, m)| (*l, *m)).collect()
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        teardown_recorded();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_per_run_and_slot_and_fit_interface_names() {
        let a = Plan::new(4_194_304, 7, 5).unwrap();
        let b = Plan::new(4_194_305, 7, 5).unwrap();
        assert_ne!(a.namespace(0), b.namespace(0));
        assert_ne!(a.namespace(0), a.namespace(1));
        assert_ne!(a.bridge(), b.bridge());
        for slot in 0..5 {
            assert!(a.veth(slot).len() <= 15, "{}", a.veth(slot));
        }
        assert!(a.bridge().len() <= 15);
        assert_eq!(a.namespace(2), "endure-4194304-n2");
        assert_eq!(pid_of_namespace(&a.namespace(2)), Some(4_194_304));
        assert_eq!(pid_of_link(&a.veth(3)), Some(4_194_304));
        assert_eq!(pid_of_link(&a.bridge()), Some(4_194_304));
        assert_eq!(pid_of_link("echo0"), None);
        assert_eq!(pid_of_link("ech12x"), None);
        assert_eq!(pid_of_namespace("endure-12"), None);
        assert_eq!(pid_of_namespace("other-12-n0"), None);
    }

    #[test]
    fn address_plan() {
        let plan = Plan::new(1234, Plan::preferred_subnet(1234), 3).unwrap();
        assert_eq!(plan.subnet, 235);
        assert_eq!(plan.node_addr(0), Ipv4Addr::new(10, 88, 235, 1));
        assert_eq!(plan.node_addr(2), Ipv4Addr::new(10, 88, 235, 3));
        assert_eq!(plan.bridge_addr(), Ipv4Addr::new(10, 88, 235, 254));
        assert_eq!(plan.cidr(), "10.88.235.0/24");
        for pid in [0, 249, 250, u32::MAX] {
            assert!((1..=250).contains(&Plan::preferred_subnet(pid)));
        }
        let candidates: Vec<u8> = subnet_candidates(1234).collect();
        assert_eq!(candidates[0], 235);
        assert_eq!(candidates.len(), 250);
        let mut sorted = candidates.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted, (1..=250).collect::<Vec<u8>>());
        assert!(Plan::new(1, 1, 0).is_err());
        assert!(Plan::new(1, 1, MAX_SLOTS + 1).is_err());
    }

    #[test]
    fn setup_puts_every_slot_on_the_bridge() {
        let plan = Plan::new(42, 9, 2).unwrap();
        let lines: Vec<String> = plan.setup_commands().iter().map(|c| c.join(" ")).collect();
        assert_eq!(lines[0], "link add ech42b type bridge");
        assert!(lines.contains(&"addr add 10.88.9.254/24 dev ech42b".to_owned()));
        assert!(lines.contains(&"netns add endure-42-n1".to_owned()));
        assert!(lines
            .contains(&"link add ech42v1 type veth peer name eth0 netns endure-42-n1".to_owned()));
        assert!(lines.contains(&"link set ech42v1 master ech42b up".to_owned()));
        assert!(lines.contains(&"-n endure-42-n1 addr add 10.88.9.2/24 dev eth0".to_owned()));
        assert!(lines.contains(&"-n endure-42-n0 link set lo up".to_owned()));
    }

    #[test]
    fn rules_per_mode() {
        let peer = Ipv4Addr::new(10, 88, 9, 1);
        assert!(link_rules(peer, 7000, Mode::Pass).is_empty());
        assert_eq!(
            link_rules(peer, 7000, Mode::Blackhole),
            vec![
                "add rule inet chaos input ip saddr 10.88.9.1 tcp dport 7000 drop",
                "add rule inet chaos output ip daddr 10.88.9.1 tcp sport 7000 drop",
            ]
        );
        assert_eq!(
            link_rules(peer, 7000, Mode::Refuse),
            vec![
                "add rule inet chaos input ip saddr 10.88.9.1 tcp dport 7000 reject with tcp reset",
                "add rule inet chaos output ip daddr 10.88.9.1 tcp sport 7000 reject with tcp reset",
            ]
        );
        assert_eq!(
            link_rules(peer, 7000, Mode::ForwardOnly),
            vec!["add rule inet chaos output ip daddr 10.88.9.1 tcp sport 7000 drop"]
        );
        assert_eq!(
            link_rules(peer, 7000, Mode::BackwardOnly),
            vec!["add rule inet chaos input ip saddr 10.88.9.1 tcp dport 7000 drop"]
        );
        let script = namespace_script(&link_rules(peer, 1, Mode::BackwardOnly));
        assert!(script.starts_with("flush table inet chaos\n"));
        assert_eq!(namespace_script(&[]), "flush table inet chaos\n");
        assert!(table_script().contains("hook input"));
        assert!(table_script().contains("hook output"));
    }

    #[test]
    fn links_land_in_the_listening_namespace() {
        let ns = Namespaces {
            plan: Plan::new(42, 9, 3).unwrap(),
            raft_ports: vec![7001, 7002, 7003],
            grpc_ports: vec![5001, 5002, 5003],
            modes: Mutex::new(BTreeMap::new()),
        };
        assert_eq!(
            ns.placement(Link::Raft { from: 0, to: 2 }),
            Some((2, Ipv4Addr::new(10, 88, 9, 1), 7003))
        );
        assert_eq!(
            ns.placement(Link::Client { slot: 1 }),
            Some((1, Ipv4Addr::new(10, 88, 9, 254), 5002))
        );
        assert_eq!(ns.placement(Link::Client { slot: 3 }), None);
    }
}
