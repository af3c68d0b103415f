"""The deployment artifacts in deploy/ parse and agree with the gateway.

No network and no Docker engine: YAML is parsed with PyYAML, the Kubernetes manifests
are validated with ``kubernetes-validate`` against the JSON schemas bundled in its
wheel (offline), and the Dockerfile, compose file, nginx and Prometheus configuration
and Grafana dashboard are checked structurally against each other and against the
metric names in gateway/metrics.py.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from gateway.config import Settings
from gateway.http.handlers.finance import RECONCILIATION_MAX_BODY
from gateway.http.routes import ROUTES

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose"
KUBERNETES_VERSION = "1.30.0"
SECRET_KEYS = {"DATABASE_URL", "MEDSETTLE_ID_PEPPER", "MEDSETTLE_TERMINAL_KEY_KEY"}
SHUTDOWN_TIMEOUT = 20  # MEDSETTLE_SHUTDOWN_TIMEOUT default, gateway/config.py

YAML_FILES = sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])
K8S_FILES = sorted(K8S.glob("*.yaml"))


def _documents(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [document for document in yaml.safe_load_all(handle) if document is not None]


def _k8s_objects() -> list[dict[str, Any]]:
    return [document for path in K8S_FILES for document in _documents(path)]


def _one(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        item for item in _k8s_objects() if item["kind"] == kind and (name is None or item["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def _compose() -> dict[str, Any]:
    return _documents(COMPOSE / "compose.yaml")[0]


# ---------------------------------------------------------------- YAML and Kubernetes schemas


def test_deploy_has_the_expected_files() -> None:
    expected = [
        "Dockerfile",
        "Dockerfile.dockerignore",
        "compose/compose.yaml",
        "compose/nginx.conf",
        "compose/prometheus.yml",
        "compose/.env.example",
        "compose/grafana/provisioning/datasources/prometheus.yml",
        "compose/grafana/provisioning/dashboards/medsettle.yml",
        "compose/grafana/dashboards/medsettle.json",
        "k8s/namespace.yaml",
        "k8s/deployment.yaml",
        "k8s/service.yaml",
        "k8s/service-readers.yaml",
        "k8s/hpa.yaml",
        "k8s/pdb.yaml",
        "k8s/secret.example.yaml",
        "k8s/job-migrate.yaml",
        "k8s/alert-rules.yaml",
        "k8s/ingress.yaml",
        "alerts/medsettle.rules.yml",
        "alerts/medsettle.rules.test.yml",
    ]
    missing = [name for name in expected if not (DEPLOY / name).is_file()]
    assert not missing


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda path: str(path.relative_to(DEPLOY)))
def test_every_yaml_file_parses(path: Path) -> None:
    assert _documents(path), f"{path} is empty"


@pytest.mark.parametrize("path", K8S_FILES, ids=lambda path: path.name)
def test_kubernetes_manifests_match_the_schemas(path: Path) -> None:
    for document in _documents(path):
        # strict: unknown fields are refused too. The schemas ship inside the wheel.
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_the_validator_catches_a_wrong_field() -> None:
    deployment = _one("Deployment")
    _pod_spec(deployment)["containers"][0]["readinessprobe"] = {"httpGet": {"path": "/readyz", "port": 8080}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_everything_lives_in_one_namespace() -> None:
    namespace = _one("Namespace")["metadata"]["name"]
    for item in _k8s_objects():
        if item["kind"] != "Namespace":
            assert item["metadata"]["namespace"] == namespace, item["metadata"]["name"]


# ---------------------------------------------------------------- Kubernetes semantics


def test_deployment_probes_grace_and_replicas() -> None:
    deployment = _one("Deployment")
    assert deployment["spec"]["replicas"] == 2
    pod = _pod_spec(deployment)
    assert pod["terminationGracePeriodSeconds"] > SHUTDOWN_TIMEOUT
    (gateway,) = pod["containers"]
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/healthz"
    ports = {port["name"]: port["containerPort"] for port in gateway["ports"]}
    assert ports == {"http": 8080, "reader": 8081}
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert annotations["prometheus.io/port"] == "8080"


def test_configured_shutdown_timeout_fits_in_the_grace_period() -> None:
    config = _one("ConfigMap", "medsettle-config")["data"]
    pod = _pod_spec(_one("Deployment"))
    grace = pod["terminationGracePeriodSeconds"]
    assert float(config.get("MEDSETTLE_SHUTDOWN_TIMEOUT", SHUTDOWN_TIMEOUT)) < grace
    # SIGKILL comes `grace` seconds after the preStop hook starts: the pause, the gateway's drain (readiness
    # failing, still serving) and the wait for in-flight requests must all fit, or settlements are cut off.
    (gateway,) = pod["containers"]
    command = gateway["lifecycle"]["preStop"]["exec"]["command"]
    pre_stop = float(command[1]) if command[0] == "sleep" else 0.0
    defaults = Settings()
    drain = float(config.get("MEDSETTLE_SHUTDOWN_DRAIN_SECONDS", defaults.shutdown_drain_seconds))
    shutdown = float(config.get("MEDSETTLE_SHUTDOWN_TIMEOUT", defaults.shutdown_timeout))
    request = float(config.get("MEDSETTLE_REQUEST_TIMEOUT", defaults.request_timeout))
    assert pre_stop + drain + shutdown < grace
    assert request < shutdown  # a request taken at the end of the drain still finishes
    assert config["MEDSETTLE_HOST"] == "0.0.0.0"
    assert config["MEDSETTLE_ENV"] == "production"


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
def test_every_container_has_requests_limits_and_runs_as_non_root(kind: str) -> None:
    pod = _pod_spec(_one(kind))
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    for container in [*pod.get("initContainers", []), *pod["containers"]]:
        resources = container["resources"]
        for section in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources[section]), f"{container['name']} {section}"
        assert container["securityContext"]["allowPrivilegeEscalation"] is False


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
def test_secrets_come_from_the_secret(kind: str) -> None:
    secret_name = _one("Secret")["metadata"]["name"]
    (container,) = _pod_spec(_one(kind))["containers"]
    from_secret = {
        entry["name"]: entry["valueFrom"]["secretKeyRef"]
        for entry in container.get("env", [])
        if "secretKeyRef" in entry.get("valueFrom", {})
    }
    assert set(from_secret) == SECRET_KEYS
    for variable, reference in from_secret.items():
        assert reference["name"] == secret_name
        assert reference["key"] == variable
    plain = {entry["name"] for entry in container.get("env", []) if "value" in entry}
    assert not plain & SECRET_KEYS, "a secret given as a plain value"


def test_secret_template_covers_the_three_secrets_with_placeholders() -> None:
    secret = _one("Secret")
    assert secret["metadata"]["name"] == "medsettle-secrets"
    values = secret["stringData"]
    assert set(values) == SECRET_KEYS
    assert all("CHANGE-ME" in value for value in values.values())
    assert "secret manager" in (K8S / "secret.example.yaml").read_text(encoding="utf-8")


def test_hpa_and_pdb_target_the_deployment() -> None:
    deployment = _one("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()

    hpa = _one("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        deployment["apiVersion"],
        "Deployment",
        deployment["metadata"]["name"],
    )
    assert hpa["spec"]["minReplicas"] >= 2
    assert [metric["resource"]["name"] for metric in hpa["spec"]["metrics"]] == ["cpu"]

    pdb = _one("PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_service_selects_the_pods_and_exposes_both_ports() -> None:
    service = _one("Service", "medsettle-gateway")
    labels = _one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    ports = {port["name"]: (port["port"], port["targetPort"]) for port in service["spec"]["ports"]}
    assert ports == {"http": (8080, "http"), "reader": (8081, "reader")}


def test_card_readers_reach_the_pods_from_outside_the_cluster_and_only_from_allowed_networks() -> None:
    """An Ingress carries HTTP only: the readers' framed TCP needs a Service with an external address."""
    service = _one("Service", "medsettle-readers")
    labels = _one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["type"] in ("LoadBalancer", "NodePort")
    assert [(port["port"], port["targetPort"]) for port in service["spec"]["ports"]] == [(8081, "reader")]
    assert service["spec"]["loadBalancerSourceRanges"], "the readers' port must not be open to every network"


def test_migration_job_runs_migrate_with_the_deployments_image() -> None:
    job = _one("Job")
    (container,) = _pod_spec(job)["containers"]
    command = [*container.get("command", []), *container.get("args", [])]
    assert command in (["migrate"], ["medsettle", "migrate"])
    assert _pod_spec(job)["restartPolicy"] == "Never"
    (gateway,) = _pod_spec(_one("Deployment"))["containers"]
    assert container["image"] == gateway["image"]
    text = (K8S / "job-migrate.yaml").read_text(encoding="utf-8")
    assert "kubectl -n medsettle wait --for=condition=complete" in text
    assert "job/medsettle-migrate" in text


# ---------------------------------------------------------------- compose, nginx, Prometheus, Grafana


def _depends_on(service: dict[str, Any]) -> list[str]:
    depends = service.get("depends_on", [])
    return list(depends) if isinstance(depends, (list, dict)) else []


def _gateway_replicas(services: dict[str, Any]) -> list[str]:
    """Services running `medsettle serve` from the gateway image (the one-shot migrate excluded)."""
    return sorted(
        name
        for name, service in services.items()
        if "medsettle" in str(service.get("image", "")) and service.get("command", ["serve"]) != ["migrate"]
    )


def test_compose_services_and_dependencies() -> None:
    services = _compose()["services"]
    for name, service in services.items():
        for dependency in _depends_on(service):
            assert dependency in services, f"{name} depends on unknown service {dependency}"
    assert {"gateway-1", "gateway-2", "nginx", "postgres", "migrate", "prometheus", "grafana"} <= set(services)
    assert _gateway_replicas(services) == ["gateway-1", "gateway-2"]
    assert services["migrate"]["command"] == ["migrate"]
    for name in _gateway_replicas(services):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        environment = services[name]["environment"]
        assert environment["MEDSETTLE_HOST"] == "0.0.0.0"
        assert environment["MEDSETTLE_ENV"] == "production"
        for variable in SECRET_KEYS:
            assert "${" in environment[variable], f"{name} {variable} must come from the env file"


def test_postgres_is_16_with_a_named_volume() -> None:
    document = _compose()
    postgres = document["services"]["postgres"]
    assert postgres["image"].startswith("postgres:16")
    volume = postgres["volumes"][0].split(":")[0]
    assert volume in document["volumes"]


def test_env_example_holds_placeholders_only() -> None:
    lines = (COMPOSE / ".env.example").read_text(encoding="utf-8").splitlines()
    values = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    assert {"POSTGRES_PASSWORD", "MEDSETTLE_ID_PEPPER", "MEDSETTLE_TERMINAL_KEY_KEY"} <= set(values)
    assert values["POSTGRES_PASSWORD"].startswith("change-me")
    assert values["MEDSETTLE_ID_PEPPER"].startswith("change-me")
    assert set(values["MEDSETTLE_TERMINAL_KEY_KEY"]) == {"0"}


def test_nginx_upstream_names_every_gateway_replica() -> None:
    text = (COMPOSE / "nginx.conf").read_text(encoding="utf-8")
    upstream = re.search(r"upstream\s+(\w+)\s*\{(.*?)\}", text, re.S)
    assert upstream is not None
    servers = set(re.findall(r"^\s*server\s+([\w.-]+:\d+)", upstream.group(2), re.M))
    assert servers == {f"{name}:8080" for name in _gateway_replicas(_compose()["services"])}
    assert f"proxy_pass http://{upstream.group(1)};" in text


def test_prometheus_scrapes_every_gateway_replica() -> None:
    config = _documents(COMPOSE / "prometheus.yml")[0]
    targets = {
        (job.get("metrics_path", "/metrics"), target)
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    }
    for name in _gateway_replicas(_compose()["services"]):
        assert ("/metrics", f"{name}:8080") in targets


def _exported_metric_names() -> set[str]:
    source = (ROOT / "gateway" / "metrics.py").read_text(encoding="utf-8")
    names = set(re.findall(r'"(medsettle_[a-z0-9_]+)"', source))
    assert names, "no metric names found in gateway/metrics.py"
    # A histogram is exposed as _bucket, _sum and _count series.
    histograms = set(re.findall(r'Histogram\(\s*"(medsettle_[a-z0-9_]+)"', source))
    return names | {name + suffix for name in histograms for suffix in ("_bucket", "_sum", "_count")}


def _dashboard_expressions() -> list[str]:
    dashboard = json.loads((COMPOSE / "grafana" / "dashboards" / "medsettle.json").read_text(encoding="utf-8"))
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def test_dashboard_uses_only_exported_metrics() -> None:
    exported = _exported_metric_names()
    used = {name for expr in _dashboard_expressions() for name in re.findall(r"\bmedsettle_[a-z0-9_]+", expr)}
    assert used, "the dashboard queries no medsettle metric"
    assert used <= exported, f"unknown metrics: {sorted(used - exported)}"


def test_dashboard_shows_the_agreed_panels() -> None:
    expressions = "\n".join(_dashboard_expressions())
    # Settlements written, not refused or replayed ones.
    assert re.search(r'rate\(medsettle_settlements_total\{outcome=\\?"settled\\?"\}\[[^\]]+\]\)', expressions)
    assert "by (clinic_level)" in expressions
    assert re.search(r"histogram_quantile\(0\.99,.*medsettle_http_request_duration_seconds_bucket", expressions)
    assert "by (code)" in expressions and "medsettle_errors_total" in expressions
    assert "by (payer)" in expressions and "medsettle_paid_fen_total" in expressions
    assert "medsettle_reversed_fen_total" in expressions  # amounts net of reversals
    # Pool use against what the pool may open, not against what happens to be open.
    assert "medsettle_db_pool_in_use" in expressions and "medsettle_db_pool_max" in expressions
    assert "medsettle_idempotent_replays_total" in expressions


def test_grafana_provisioning_points_at_prometheus_and_the_dashboards() -> None:
    services = _compose()["services"]
    datasource = _documents(COMPOSE / "grafana/provisioning/datasources/prometheus.yml")[0]["datasources"][0]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    provider = _documents(COMPOSE / "grafana/provisioning/dashboards/medsettle.yml")[0]["providers"][0]
    mounts = dict(volume.split(":")[:2] for volume in services["grafana"]["volumes"])
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"


# ---------------------------------------------------------------- Dockerfile


def _dockerfile_stages() -> list[list[str]]:
    """Instructions per stage, with line continuations joined and comments dropped."""
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    stages: list[list[str]] = []
    for instruction in logical:
        if instruction.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def _instructions(stage: list[str], keyword: str) -> list[str]:
    return [line[len(keyword) :].strip() for line in stage if line.upper().startswith(keyword + " ")]


def test_dockerfile_is_multi_stage_on_python_311_slim() -> None:
    stages = _dockerfile_stages()
    assert len(stages) >= 2
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text
    builder = stages[0]
    assert any("pip wheel" in line for line in _instructions(builder, "RUN"))
    assert not any("embedded" in line for line in _instructions(builder, "RUN")), "pgserver must not be installed"


def test_dockerfile_final_stage() -> None:
    final = _dockerfile_stages()[-1]
    (user,) = _instructions(final, "USER")
    assert user.split(":")[0] not in ("root", "0")
    (healthcheck,) = _instructions(final, "HEALTHCHECK")
    assert "/healthz" in healthcheck and "urllib.request" in healthcheck
    assert json.loads(_instructions(final, "ENTRYPOINT")[0]) == ["medsettle"]
    assert json.loads(_instructions(final, "CMD")[0]) == ["serve"]
    exposed = {port for line in _instructions(final, "EXPOSE") for port in line.split()}
    assert exposed == {"8080", "8081"}
    env = " ".join(_instructions(final, "ENV"))
    assert "MEDSETTLE_HOST=0.0.0.0" in env
    assert "MEDSETTLE_POLICY_DIR=/app/policies" in env


def test_dockerfile_final_stage_has_no_build_tools_and_no_secrets() -> None:
    final = _dockerfile_stages()[-1]
    body = "\n".join(final).lower()
    for tool in ("gcc", "build-essential", "apt-get install", "pip install"):
        assert tool not in body, f"{tool} in the final stage"
    copies = [shlex.split(line) for line in _instructions(final, "COPY")]
    sources = [word for words in copies for word in words[:-1] if not word.startswith("--")]
    assert sorted(sources) == ["/opt/venv", "policies"]
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    for secret in SECRET_KEYS:
        assert not re.search(rf"^\s*(ENV|ARG)\b.*\b{secret}\b", text, re.M), f"{secret} baked into the image"


def test_dockerignore_keeps_only_what_the_image_needs() -> None:
    rules = [
        line.strip()
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == "*"
    kept = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    assert kept == {"pyproject.toml", "README.md", "settlement", "adapters", "gateway", "clients/python", "policies"}


def _size(text: str) -> int:
    """nginx's size notation (``2m``, ``512k``, ``1024``) in bytes."""
    found = re.fullmatch(r"(\d+)([kmg]?)", text.strip(), re.IGNORECASE)
    assert found, f"not an nginx size: {text!r}"
    return int(found[1]) * {"": 1, "k": 1024, "m": 1024 * 1024, "g": 1024**3}[found[2].lower()]


def _nginx_body_limits() -> dict[str, int]:
    """client_max_body_size in bytes, per location ("" for the server's own)."""
    text = (COMPOSE / "nginx.conf").read_text(encoding="utf-8")
    limits: dict[str, int] = {}
    location = ""
    for line in text.splitlines():
        code = line.split("#", 1)[0]
        if found := re.search(r"location\s+=?\s*(\S+)\s*{", code):
            location = found[1]
        elif code.strip() == "}" and location:
            location = ""
        elif found := re.search(r"client_max_body_size\s+(\w+);", code):
            limits[location] = _size(found[1])
    return limits


def _gateway_body_limits() -> dict[str, int]:
    """The largest body the gateway takes on each route: the route's own, else MEDSETTLE_MAX_BODY_BYTES as
    the ConfigMap and the compose file set it (or its default)."""
    default = Settings().max_body_bytes
    configured = {
        int(_one("ConfigMap", "medsettle-config")["data"].get("MEDSETTLE_MAX_BODY_BYTES", default)),
        int(_compose()["x-gateway"]["environment"].get("MEDSETTLE_MAX_BODY_BYTES", default)),
    }
    return {route.path: route.max_body or max(configured) for route in ROUTES}


def _limit_for(path: str, limits: dict[str, int], exact: set[str]) -> int:
    """The limit a proxy applies to ``path``: an exact location's (nginx: the server's if it sets none), else
    the longest prefix's."""
    if path in exact:
        return limits[path] if path in limits else limits[""]
    prefixes = [prefix for prefix in limits if prefix not in exact and path.startswith(prefix or "/")]
    return limits[max(prefixes, key=len)]


def test_nginx_lets_every_body_the_gateway_takes_through() -> None:
    """The proxy's limits sit above the gateway's, so an over-long body is the gateway's 413 problem, and a
    day's reconciliation list (up to 16 MiB) reaches the gateway at all."""
    limits = _nginx_body_limits()
    text = (COMPOSE / "nginx.conf").read_text(encoding="utf-8")
    exact = set(re.findall(r"location\s+=\s*(\S+)", text))
    for path, largest in _gateway_body_limits().items():
        assert _limit_for(path, limits, exact) > largest, path
    assert limits["/v1/finance/reconciliation"] > RECONCILIATION_MAX_BODY


def _ingresses() -> list[dict[str, Any]]:
    return [item for item in _k8s_objects() if item["kind"] == "Ingress"]


def test_ingress_lets_every_body_the_gateway_takes_through() -> None:
    limits: dict[str, int] = {}
    exact: set[str] = set()
    for ingress in _ingresses():
        size = _size(ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"])
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                limits[path["path"]] = size
                if path["pathType"] == "Exact":
                    exact.add(path["path"])
    for path, largest in _gateway_body_limits().items():
        assert _limit_for(path, limits, exact) > largest, path


def test_ingress_terminates_tls_for_the_gateway_service() -> None:
    service = _one("Service", "medsettle-gateway")
    port_names = {port["name"] for port in service["spec"]["ports"]}
    assert _ingresses()
    for ingress in _ingresses():
        annotations = ingress["metadata"]["annotations"]
        assert annotations["nginx.ingress.kubernetes.io/ssl-redirect"] == "true"
        (tls,) = ingress["spec"]["tls"]
        assert tls["secretName"] == "medsettle-tls"
        for rule in ingress["spec"]["rules"]:
            assert rule["host"] in tls["hosts"], "a host served without its certificate"
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                assert backend["name"] == service["metadata"]["name"]
                assert backend["port"]["name"] in port_names


def test_metrics_are_not_served_through_either_proxy() -> None:
    """Prometheus scrapes each replica or pod directly; the proxies facing terminals refuse /metrics."""
    assert re.search(r"location = /metrics \{\s*return 404;", (COMPOSE / "nginx.conf").read_text(encoding="utf-8"))
    closing = [
        ingress
        for ingress in _ingresses()
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
        if path["path"] == "/metrics"
    ]
    assert len(closing) == 1 and closing[0]["spec"]["rules"][0]["http"]["paths"][0]["pathType"] == "Exact"
    denied = closing[0]["metadata"]["annotations"]["nginx.ingress.kubernetes.io/denylist-source-range"]
    assert set(denied.split(",")) == {"0.0.0.0/0", "::/0"}


def test_nginx_terminates_tls_and_sends_plain_http_to_https() -> None:
    text = (COMPOSE / "nginx.conf").read_text(encoding="utf-8")
    servers = re.split(r"^\s*server\s*\{", text, flags=re.M)[1:]
    plain = [server for server in servers if re.search(r"listen\s+80;", server)]
    secure = [server for server in servers if re.search(r"listen\s+443\s+ssl;", server)]
    assert len(plain) == 1 and len(secure) == 1
    assert "return 308 https://$host$request_uri;" in plain[0] and "proxy_pass" not in plain[0]
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in secure[0]
    nginx = _compose()["services"]["nginx"]
    mounts = dict(volume.split(":")[:2] for volume in nginx["volumes"])
    for directive in ("ssl_certificate", "ssl_certificate_key"):
        (file,) = re.findall(rf"^\s*{directive}\s+(\S+);", secure[0], re.M)
        assert any(file.startswith(target + "/") for target in mounts.values()), f"{file} is not mounted"
    assert any(port.endswith(":443") for port in nginx["ports"])
