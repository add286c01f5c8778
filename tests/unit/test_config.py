from __future__ import annotations

import re
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from driftwatch.config import Config, load_config, parse_config
from driftwatch.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def minimal(**model_over):
    model = {
        "name": "m",
        "reference": "ref.csv",
        "window": {"events": 100},
        "features": {"age": "numerical"},
    }
    model.update(model_over)
    return {
        "kafka": {"bootstrap_servers": ["localhost:9092"], "prediction_topic": "p"},
        "models": [model],
    }


def problems(data):
    with pytest.raises(ConfigError) as exc:
        parse_config(data, Path("/tmp"))
    return exc.value.problems


def test_shipped_configs_load():
    for name in ("driftwatch.example.yaml", "demo.yaml"):
        cfg = load_config(ROOT / "config" / name)
        assert cfg.models[0].reference.exists(), name


def test_defaults_and_relative_paths():
    cfg = parse_config(minimal(), Path("/srv/conf"))
    assert cfg.models[0].reference == Path("/srv/conf/ref.csv")
    assert cfg.state.path == Path("/srv/conf/driftwatch-state")
    assert cfg.http.port == 9108
    assert cfg.models[0].drift.method == "psi"
    assert cfg.models[0].alerts.consecutive == 1


def test_wrong_feature_kind_names_the_key_path():
    assert problems(minimal(features={"age": "numeric"})) == [
        'models[0].features.age: expected "numerical" or "categorical", got "numeric"'
    ]


def test_unknown_keys_are_errors():
    data = minimal()
    data["kafka"]["bootsrap"] = 1
    data["models"][0]["windw"] = {}
    got = problems(data)
    assert "kafka.bootsrap: unknown key" in got
    assert "models[0].windw: unknown key" in got


def test_window_needs_exactly_one_form():
    got = problems(minimal(window={"events": 10, "seconds": 5}))
    assert got == ["models[0].window: expected exactly one of {events: N} or {seconds: S}"]


def test_cross_references():
    got = problems(minimal(webhooks=["nope"]))
    assert got == ['models[0].webhooks[0]: unknown webhook "nope" (webhooks: none defined)']
    data = minimal()
    data["models"].append(dict(data["models"][0]))
    assert problems(data) == ['models[1].name: duplicate model name "m"']


def test_secrets_are_never_echoed():
    data = minimal()
    data["kafka"]["client"] = {"sasl_plain_password": "hunter2"}
    data["kafka"]["group_id"] = ""
    data["webhooks"] = {"w": {"url": "ftp://x", "secret_env": 5}}
    text = "\n".join(problems(data))
    assert "hunter2" not in text
    assert "webhooks.w.url: expected an http:// or https:// URL" in text
    assert "webhooks.w.secret_env:" in text


def test_metric_must_fit_task():
    got = problems(minimal(task="regression", performance={"metric": "accuracy"}))
    assert got == ["models[0]: performance.metric: accuracy does not fit task regression"]


def test_ks_threshold_is_a_pvalue():
    assert "p-value" in problems(minimal(drift={"method": "ks", "threshold": 2}))[0]


def test_yaml_errors_and_missing_file(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("kafka: [unclosed\n")
    with pytest.raises(ConfigError, match="line"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")
    bad.write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(bad)


def test_recent_drift_keys_have_defaults_and_are_validated():
    cfg = parse_config(minimal(), Path("/tmp"))
    recent = cfg.models[0].drift.recent
    assert (recent.enabled, recent.min_events, recent.alpha, recent.min_psi) == (
        True,
        100,
        1e-8,
        None,
    )
    assert cfg.models[0].drift.ks_min_statistic == 0.1
    got = problems(
        minimal(drift={"recent": {"alpha": 2, "min_events": 5, "speed": 1}, "ks_min_statistic": 1})
    )
    text = "\n".join(got)
    for key in ("recent.alpha", "recent.min_events", "recent.speed", "ks_min_statistic"):
        assert f"models[0].drift.{key}" in text, text


def test_example_config_spells_out_the_recent_defaults():
    cfg = load_config(ROOT / "config" / "driftwatch.example.yaml")
    default = parse_config(minimal(), Path("/tmp")).models[0].drift.recent
    assert cfg.models[0].drift.recent == default


def _keys(model: type[BaseModel], path: str = "") -> Iterator[tuple[str, str]]:
    """(dotted path, key) of every config key, nested blocks included."""
    for name, field in model.model_fields.items():
        yield f"{path}{name}", name
        for t in (field.annotation, *typing.get_args(field.annotation)):
            for inner in (t, *typing.get_args(t)):
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    yield from _keys(inner, f"{path}{name}.")


def test_every_config_key_is_in_the_example_and_the_readme():
    example = (ROOT / "config" / "driftwatch.example.yaml").read_text()
    readme = (ROOT / "README.md").read_text()
    keys = list(_keys(Config))
    assert len(keys) > 80
    # a key of its own line (or commented out, as an option shown), a list item's, or a
    # flow mapping's: "window: {events: 5000}"
    spelled = r"(?:^[\s#-]*|[{,]\s*)"
    assert [p for p, k in keys if not re.search(rf"{spelled}{k}:", example, re.M)] == []
    assert [p for p, k in keys if not re.search(rf"\b{k}\b", readme)] == []
