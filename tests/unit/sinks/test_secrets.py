"""Webhook secrets: refused at start (and by check-config) when malformed; a signing
failure at send time only delays that notification; the shipped Kubernetes Secret is not
a usable key."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from standardwebhooks.webhooks import Webhook

from driftwatch import cli
from driftwatch.app import webhook_targets
from driftwatch.config import Config, parse_config
from driftwatch.errors import ConfigError
from driftwatch.sinks.outbox import Outbox
from driftwatch.sinks.webhook import WebhookSender, WebhookTarget
from tests.helpers import WebhookServer, reference_frame

ROOT = Path(__file__).resolve().parents[3]
GOOD = "whsec_" + base64.b64encode(b"0123456789abcdef01234567").decode()  # 24 bytes
BODY: dict[str, Any] = {
    "id": "n-1",
    "type": "drift.detected",
    "model": "m",
    "rule": "feature_drift",
    "occurred_at": "2026-11-22T06:00:00Z",
    "window": {"events": 10, "labeled_events": 0},
    "drifted_features": [],
    "performance": None,
}


def config(tmp_path: Path) -> Config:
    return parse_config(
        {
            "kafka": {"bootstrap_servers": ["x:1"], "prediction_topic": "p"},
            "webhooks": {"retrain": {"url": "http://127.0.0.1:1/x", "secret_env": "DW_SECRET"}},
            "models": [
                {
                    "name": "m",
                    "reference": "r.csv",
                    "window": {"events": 5},
                    "features": {"x": "numerical"},
                }
            ],
        },
        tmp_path,
    )


@pytest.mark.parametrize(
    ("secret", "why"),
    [
        ("whsec_!!!", "not valid base64"),
        ("whsec_", "empty"),
        ("whsec_cmVwbGFjZS1tZQ=%", "not valid base64"),
        ("whsec_" + base64.urlsafe_b64encode(b"\xfb\xff" * 16).decode(), "not valid base64"),
        ("whsec_" + base64.b64encode(b"k" * 32).decode() + "\n", "whitespace"),
        ("whsec_" + base64.b64encode(b"short-key").decode(), "9 bytes"),
        ("whsec_" + base64.b64encode(b"k" * 23).decode(), "23 bytes"),
    ],
)
def test_malformed_whsec_secret_is_a_config_error_naming_the_key(tmp_path, secret, why):
    with pytest.raises(ConfigError) as exc:
        webhook_targets(config(tmp_path), {"DW_SECRET": secret})
    [problem] = exc.value.problems
    assert problem.startswith("webhooks.retrain.secret_env: ")
    assert why in problem
    payload = secret.removeprefix("whsec_").strip()
    assert not payload or payload not in problem  # the secret is never echoed


def test_well_formed_secrets_are_accepted(tmp_path):
    cfg = config(tmp_path)
    assert webhook_targets(cfg, {"DW_SECRET": GOOD})["retrain"].secret == GOOD
    unpadded = "whsec_" + base64.b64encode(b"k" * 32).decode().rstrip("=")
    assert webhook_targets(cfg, {"DW_SECRET": unpadded})["retrain"].secret == unpadded
    # without the prefix, the string is the key itself (CONTRACT section 6)
    assert webhook_targets(cfg, {"DW_SECRET": "raw!!!"})["retrain"].secret == "raw!!!"


def test_unpadded_secret_signs_like_the_standard_webhooks_library(tmp_path):
    """The reference library accepts unpadded base64; the same key must come out here."""
    unpadded = "whsec_" + base64.b64encode(b"k" * 32).decode().rstrip("=")
    with WebhookServer() as srv:
        box = Outbox(tmp_path / "o.sqlite3")
        target = WebhookTarget("retrain", srv.url, secret=unpadded)
        s = WebhookSender(box, {"retrain": target}, lambda *_: None)
        box.add("n-1", "retrain", json.dumps(BODY).encode(), time.time())
        s.drain_once()
        req = srv.requests[0]
        Webhook(unpadded).verify(req["body"], {k.lower(): v for k, v in req["headers"].items()})


def test_check_config_refuses_a_malformed_secret_with_exit_2(tmp_path, monkeypatch, capsys):
    reference_frame().to_csv(tmp_path / "ref.csv", index=False)
    data = {
        "kafka": {"bootstrap_servers": ["127.0.0.1:1"], "prediction_topic": "p"},
        "webhooks": {"retrain": {"url": "http://127.0.0.1:1/x", "secret_env": "DW_SECRET"}},
        "models": [
            {
                "name": "m",
                "reference": "ref.csv",
                "window": {"events": 100},
                "features": {"x1": "numerical"},
                "webhooks": ["retrain"],
            }
        ],
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.setenv("DW_SECRET", "whsec_!!!")
    assert cli.check_config(tmp_path / "c.yaml") == 2
    err = capsys.readouterr().err
    assert "webhooks.retrain.secret_env:" in err and "!!!" not in err
    monkeypatch.setenv("DW_SECRET", GOOD)
    assert cli.check_config(tmp_path / "c.yaml") == 0


def test_a_secret_that_cannot_sign_delays_only_its_own_webhook(tmp_path):
    """Defence in depth: a bad secret that got past start-up validation (a target built
    by hand) must not stop the sender nor the other webhooks."""
    outcomes: list[tuple[str, str]] = []
    with WebhookServer() as srv:
        box = Outbox(tmp_path / "o.sqlite3")
        targets = {
            "bad": WebhookTarget("bad", srv.url, secret="whsec_!!!", backoff_initial_seconds=60),
            "good": WebhookTarget("good", srv.url, secret=GOOD),
        }
        s = WebhookSender(box, targets, lambda w, o, _s: outcomes.append((w, o)))
        now = time.time()
        box.add("n-1", "bad", json.dumps(BODY).encode(), now - 1)  # due first
        box.add("n-1", "good", json.dumps(BODY).encode(), now)
        s.drain_once()
        assert ("good", "success") in outcomes and ("bad", "retry") in outcomes
        assert len(srv.requests) == 1  # nothing unsigned was sent for "bad"
        [item] = box.listing()
        assert (item.webhook, item.status) == ("bad", "pending")
        assert item.last_error is not None and "cannot sign" in item.last_error
        assert "!!!" not in item.last_error


def kubernetes_docs() -> dict[str, dict[str, Any]]:
    docs: dict[str, dict[str, Any]] = {}
    for path in sorted((ROOT / "deploy/kubernetes/base").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            docs[doc["kind"]] = doc
    return docs


def test_shipped_kubernetes_secret_is_not_a_usable_key():
    docs = kubernetes_docs()
    cm, secret = docs["ConfigMap"], docs["Secret"]
    cfg = parse_config(yaml.safe_load(cm["data"]["config.yaml"]), Path("/etc/driftwatch"))
    env = {
        **{k: str(v) for k, v in (secret.get("stringData") or {}).items()},
        **{
            k: base64.b64decode(v).decode()
            for k, v in (secret.get("data") or {}).items()  # data: is base64 of the value
        },
    }
    signed = [name for name, hook in cfg.webhooks.items() if hook.secret_env]
    assert signed, "the example config signs its webhook"
    with pytest.raises(ConfigError) as exc:
        webhook_targets(cfg, env)
    for name in signed:
        assert any(p.startswith(f"webhooks.{name}.secret_env: ") for p in exc.value.problems)
