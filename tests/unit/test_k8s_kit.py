"""The Kubernetes kit (deploy/kubernetes): every kustomization renders with the real
kubectl, every object validates offline against Kubernetes' schemas (kubernetes-validate),
and the Prometheus Operator objects, dashboards and NetworkPolicy agree with the daemon's
config, the shipped alert rules and the dashboards they are generated from."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from driftwatch.config import parse_config

ROOT = Path(__file__).resolve().parents[2]
KIT = ROOT / "deploy/kubernetes"
#: Schemas to validate against: a version still widely run and the newest the package has.
K8S_VERSIONS = ("1.30.0", "1.37.0")
CRDS = {"ServiceMonitor", "PrometheusRule"}
NAMESPACE = "driftwatch"


def kubectl() -> str:
    path = shutil.which("kubectl")
    assert path, "kubectl is missing: run scripts/ensure-kubectl.sh"
    return path


def kustomization(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((path / "kustomization.yaml").read_text())
    return doc


def kustomizations() -> list[Path]:
    """Every buildable kustomization (base, overlays, the top level); not the components."""
    dirs = sorted(p.parent for p in KIT.rglob("kustomization.yaml"))
    return [d for d in dirs if kustomization(d)["kind"] == "Kustomization"]


def components() -> list[Path]:
    dirs = sorted(p.parent for p in KIT.rglob("kustomization.yaml"))
    return [d for d in dirs if kustomization(d)["kind"] == "Component"]


@cache
def render(path: Path) -> tuple[dict[str, Any], ...]:
    res = subprocess.run(
        [kubectl(), "kustomize", str(path)], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, f"kubectl kustomize {path}: {res.stderr}"
    return tuple(d for d in yaml.safe_load_all(res.stdout) if d)


def by_kind(docs: tuple[dict[str, Any], ...], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: tuple[dict[str, Any], ...], kind: str) -> dict[str, Any]:
    [doc] = by_kind(docs, kind)
    return doc


def name(path: Path) -> str:
    return str(path.relative_to(KIT)) if path != KIT else "."


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_prometheusrule", ROOT / "scripts/gen_prometheusrule.py"
    )
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gen_prometheusrule"] = mod
    spec.loader.exec_module(mod)
    return mod


def quantity(q: str) -> float:
    """A Kubernetes quantity (cpu or memory) as a number."""
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 1e3, "M": 1e6, "G": 1e9}
    m = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(q))
    assert m, q
    return float(m.group(1)) * units.get(m.group(2), 1.0)


PRODUCTION = KIT / "overlays/production"


# -- render and validate ------------------------------------------------------------------
def test_the_kit_has_a_base_an_overlay_and_three_components():
    assert {name(p) for p in kustomizations()} >= {".", "base", "overlays/production"}
    assert {name(p) for p in components()} == {
        "components/prometheus-operator",
        "components/grafana-dashboards",
        "components/network-policy",
    }
    for comp in components():
        assert kustomization(comp)["apiVersion"] == "kustomize.config.k8s.io/v1alpha1"
    # every component is used by the production overlay
    used = {(PRODUCTION / c).resolve() for c in kustomization(PRODUCTION)["components"]}
    assert used == {c.resolve() for c in components()}


@pytest.mark.parametrize("path", kustomizations(), ids=name)
def test_every_kustomization_renders_and_validates(path):
    docs = render(path)
    assert docs
    validated = 0
    for doc in docs:
        kind = doc["kind"]
        if kind in CRDS:
            continue  # checked field by field below
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                where = "/".join(str(p) for p in exc.path)
                raise AssertionError(
                    f"{name(path)}: {kind}/{doc['metadata']['name']} is invalid for Kubernetes "
                    f"{version} at {where}: {exc.message}"
                ) from None
        validated += 1
        if kind != "Namespace":
            assert doc["metadata"]["namespace"] == NAMESPACE, (kind, doc["metadata"]["name"])
    assert validated >= 6
    assert {d["kind"] for d in docs} >= {"Deployment", "Service", "ConfigMap", "Secret"}


def test_validation_can_fail():
    """The check above is not vacuous: strict schemas reject a misspelt field and a wrong
    type."""
    dep = json.loads(json.dumps(one(render(KIT), "Deployment")))
    dep["spec"]["template"]["spec"]["containers"][0]["resource"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, K8S_VERSIONS[0], strict=True)
    svc = json.loads(json.dumps(one(render(KIT), "Service")))
    svc["spec"]["ports"][0]["port"] = "http"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(svc, K8S_VERSIONS[0], strict=True)


def test_the_top_level_kit_is_the_base_and_production_adds_to_it():
    """`kubectl apply -k deploy/kubernetes` (the README's command) still deploys exactly
    the base, on any cluster (no CRDs needed); production is the base plus components."""
    base = render(KIT / "base")
    assert render(KIT) == base
    ids = {(d["kind"], d["metadata"]["name"]) for d in base}
    prod = {(d["kind"], d["metadata"]["name"]) for d in render(PRODUCTION)}
    assert ids < prod
    assert prod - ids == {
        ("ServiceMonitor", "driftwatch"),
        ("PrometheusRule", "driftwatch"),
        ("NetworkPolicy", "driftwatch"),
        ("ConfigMap", "driftwatch-dashboard-overview"),
        ("ConfigMap", "driftwatch-dashboard-model"),
    }


# -- resources ----------------------------------------------------------------------------
def test_resources_are_sized_and_explained():
    [container] = one(render(KIT), "Deployment")["spec"]["template"]["spec"]["containers"]
    req, lim = container["resources"]["requests"], container["resources"]["limits"]
    assert quantity(req["cpu"]) >= 0.25 and quantity(req["memory"]) >= 256 * 2**20
    assert quantity(lim["cpu"]) >= 1.5  # below that the poll loop is throttled at checkpoints
    assert quantity(lim["memory"]) >= 2 * quantity(req["memory"])
    text = (KIT / "base/deployment.yaml").read_text()
    reasoning = text[text.index("Sized from README") : text.index("resources:")]
    for fact in ("ev/s", "per core", "RSS", "per event", "checkpoint"):
        assert fact in reasoning, fact


# -- Prometheus Operator -----------------------------------------------------------------
def test_service_monitor_scrapes_the_service_port():
    docs = render(PRODUCTION)
    sm, svc = one(docs, "ServiceMonitor"), one(docs, "Service")
    dep = one(docs, "Deployment")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["namespace"] == svc["metadata"]["namespace"]
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    port_names = {p["name"] for p in svc["spec"]["ports"]}
    [endpoint] = sm["spec"]["endpoints"]
    assert endpoint["port"] in port_names and endpoint["path"] == "/metrics"
    # the job label is the Service's name: DriftwatchDown's up{job="driftwatch"} needs it
    alerts = (ROOT / "config/prometheus/alerts.yml").read_text()
    assert f'up{{job="{svc["metadata"]["name"]}"}}' in alerts
    # the pods are no longer also scraped through annotations
    assert dep["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"] == "false"
    base_dep = one(render(KIT), "Deployment")
    assert base_dep["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"] == (
        "true"
    )


def test_prometheus_rule_is_alerts_yml():
    rule = one(render(PRODUCTION), "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["namespace"] == NAMESPACE
    alerts = yaml.safe_load((ROOT / "config/prometheus/alerts.yml").read_text())
    assert rule["spec"]["groups"] == alerts["groups"]
    names = [r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]]
    assert "DriftwatchAbsent" in names and len(names) == len(set(names)) >= 10
    for g in rule["spec"]["groups"]:
        for r in g["rules"]:
            assert r["expr"] and r["labels"]["severity"] in ("warning", "critical")


def test_generated_files_are_committed_and_current():
    gen = generator()
    for path, text in gen.render().items():
        assert path.exists(), f"run scripts/gen_prometheusrule.py: {path} is missing"
        assert path.read_text() == text, f"run scripts/gen_prometheusrule.py: {path} is stale"
    assert gen.stale() == []


# -- Grafana ------------------------------------------------------------------------------
def test_dashboard_configmaps_carry_the_sidecar_label_and_the_dashboards():
    maps = [
        cm
        for cm in by_kind(render(PRODUCTION), "ConfigMap")
        if cm["metadata"]["name"].startswith("driftwatch-dashboard-")
    ]
    sources = {p.name: p.read_text() for p in (ROOT / "grafana/dashboards").glob("*.json")}
    seen = {}
    for cm in maps:
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        for key, text in cm["data"].items():
            board = json.loads(text)
            assert board["uid"] and board["panels"]
            seen[key] = text
    assert seen == sources  # every dashboard, each identical to grafana/dashboards/


# -- NetworkPolicy ------------------------------------------------------------------------
def test_network_policy_matches_the_pods_and_the_config():
    docs = render(PRODUCTION)
    [pol] = by_kind(docs, "NetworkPolicy")
    dep = one(docs, "Deployment")
    [cm] = [c for c in by_kind(docs, "ConfigMap") if c["metadata"]["name"] == "driftwatch-config"]
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert pol["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert set(pol["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    cfg = parse_config(yaml.safe_load(cm["data"]["config.yaml"]), Path("/etc/driftwatch"))

    ingress = pol["spec"]["ingress"]
    assert len(ingress) == 2  # Prometheus, and the model servers' cloudevents
    for rule in ingress:
        assert [p["port"] for p in rule["ports"]] == [cfg.http.port]
        [peer] = rule["from"]
        assert peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
    egress_ports = {
        (p["port"], p.get("protocol", "TCP")) for r in pol["spec"]["egress"] for p in r["ports"]
    }
    assert (53, "UDP") in egress_ports and (53, "TCP") in egress_ports
    for server in cfg.kafka.bootstrap_servers:
        assert (int(server.rsplit(":", 1)[1]), "TCP") in egress_ports, server
    for hook in cfg.webhooks.values():
        url = urlsplit(str(hook.url))
        port = url.port or (443 if url.scheme == "https" else 80)
        assert (port, "TCP") in egress_ports, hook.url
    text = (KIT / "components/network-policy/networkpolicy.yaml").read_text()
    assert text.count("PLACEHOLDER") >= 4


def commented_egress_examples() -> list[dict[str, Any]]:
    """The egress rules networkpolicy.yaml offers in comments (NodeLocal DNSCache,
    OpenShift DNS, webhooks and Kafka outside the cluster), uncommented."""
    lines = (KIT / "components/network-policy/networkpolicy.yaml").read_text().splitlines()
    examples, block = [], None
    for text in [*lines, ""]:
        if text == "    # - to:":
            block = [text]
        elif block is not None and text.startswith("    #  "):
            block.append(text)
        elif block is not None:
            [rule] = yaml.safe_load("\n".join(t.replace("    # ", "", 1) for t in block))
            examples.append(rule)
            block = None
    return examples


def test_network_policy_commented_alternatives_are_valid_rules():
    """Uncommenting an alternative yields a valid policy: the examples cannot rot."""
    examples = commented_egress_examples()
    assert len(examples) == 4
    [pol] = by_kind(render(PRODUCTION), "NetworkPolicy")
    for rule in examples:
        doc = json.loads(json.dumps(pol))
        doc["spec"]["egress"].append(rule)
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)
    cidrs = {b["ipBlock"]["cidr"] for r in examples for b in r["to"] if "ipBlock" in b}
    assert "169.254.20.10/32" in cidrs  # NodeLocal DNSCache
    namespaces = {
        b["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for r in examples
        for b in r["to"]
        if "namespaceSelector" in b
    }
    assert namespaces == {"openshift-dns"}
    ports = {(p["port"], p["protocol"]) for r in examples for p in r["ports"]}
    assert {(53, "UDP"), (53, "TCP"), (5353, "UDP"), (5353, "TCP"), (443, "TCP")} <= ports
