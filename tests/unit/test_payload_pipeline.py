"""Payload logs and re-keyed copies through the pipeline (no broker: records built here).

The monitoring stage of ``format: cloudevents`` / ``keyed_by_model: false``: copies
carrying ``dw-src`` are applied once whatever is copied again; request and response halves
join in either order into one event per instance; the state survives a checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftwatch.app import build_pipeline
from driftwatch.config import parse_config
from driftwatch.errors import ConfigError
from driftwatch.events.payloads import SOURCE_HEADER, TOO_LARGE_HEADER, source_of
from driftwatch.sources.base import Record, RecordBatch
from tests.helpers import events
from tests.unit.test_pipeline import FakeDeadLetters, config_dict

TOPIC = "p.by-model"
REQUEST = "org.kubeflow.serving.inference.request"
RESPONSE = "org.kubeflow.serving.inference.response"
ORDER = ["x1", "x2", "x3", "color"]


def ce_cfg(tmp_path: Path, **kafka: Any) -> Any:
    data = config_dict(tmp_path, inference_service="credit", feature_order=ORDER)
    data["kafka"].update({"format": "cloudevents", **kafka})
    return parse_config(data, tmp_path)


def half(
    ce_id: str, kind: str, body: dict[str, Any], service: str = "credit"
) -> tuple[list[tuple[str, bytes]], bytes]:
    return [
        ("ce_specversion", b"1.0"),
        ("ce_id", ce_id.encode()),
        ("ce_type", (REQUEST if kind == "request" else RESPONSE).encode()),
        ("ce_source", b"s"),
        ("ce_inferenceservicename", service.encode()),
    ], orjson.dumps(body)


def batch(items: list[tuple[Any, bytes]], src: list[tuple[int, int]] | None = None) -> RecordBatch:
    """One batch of the re-keyed topic's partition 0 (model ``m`` hashes anywhere: the
    pipeline's router is not set in these tests)."""
    headers = []
    for i, (h, _) in enumerate(items):
        s = src[i] if src else (0, i)
        headers.append([*h, (SOURCE_HEADER, f"{s[0]}:{s[1]}".encode())])
    n = len(items)
    return RecordBatch(
        TOPIC, 0, list(range(n)), [b"m"] * n, [v for _, v in items], [0.0] * n, headers
    )


def pairs(n: int, per: int, response_first: bool = False) -> list[tuple[Any, bytes]]:
    evs = events(1, n * per)
    out = []
    for r in range(n):
        chunk = evs[r * per : (r + 1) * per]
        req = half(
            f"c{r}", "request", {"instances": [[e["features"][f] for f in ORDER] for e in chunk]}
        )
        resp = half(f"c{r}", "response", {"predictions": [e["prediction"] for e in chunk]})
        out.extend([resp, req] if response_first and r % 2 == 0 else [req, resp])
    return out


def test_pairs_join_either_order_into_one_event_per_instance(tmp_path):
    pipe = build_pipeline(ce_cfg(tmp_path))
    items = pairs(10, 7, response_first=True)
    assert pipe.apply_batches([batch(items)], now=1_790_000_000.0) == 70
    m = pipe.monitors["m"]
    assert m.events_total == 70
    assert m.front.pairs.pending == 0
    # the ids are <ce_id>/<i>: a label for one joins it
    assert "c3/6" in m.join.predictions or not m.spec.joins_labels


def test_copies_made_again_are_skipped_exactly(tmp_path):
    pipe = build_pipeline(ce_cfg(tmp_path))
    items = pairs(6, 5)
    src = [(i % 3, i) for i in range(len(items))]
    pipe.apply_batches([batch(items, src)], now=1_790_000_000.0)
    assert pipe.monitors["m"].events_total == 30
    # the copier crashed before committing: everything is copied again, then more
    more = pairs(8, 5)[12:]  # pairs c6, c7 (new ids)
    again = items + more
    src2 = src + [(i % 3, len(items) + i) for i in range(len(more))]
    pipe.apply_batches([batch(again, src2)], now=1_790_000_001.0)
    assert pipe.monitors["m"].events_total == 40
    assert pipe.monitors["m"].front.duplicates == len(items)


def test_front_state_survives_a_checkpoint_and_old_checkpoints_restore(tmp_path):
    cfg = ce_cfg(tmp_path)
    pipe = build_pipeline(cfg)
    items = pairs(4, 3)
    # every request, but only the first two responses: two requests wait
    first = [items[0], items[1], items[2], items[3], items[4], items[6]]
    pipe.apply_batches([batch(first, [(0, i) for i in range(6)])], now=1_790_000_000.0)
    assert pipe.monitors["m"].events_total == 6
    meta, arrays = pipe.monitors["m"].state()
    meta = json.loads(json.dumps(meta))  # what a checkpoint keeps
    again = build_pipeline(cfg)
    again.monitors["m"].restore(meta, arrays)
    front = again.monitors["m"].front
    assert front.watermarks == {0: 5} and front.pairs.pending == 2
    # replayed copies skipped; the missing responses complete their pairs
    rest = [items[5], items[7]]
    again.apply_batches(
        [batch([*first, *rest], [*((0, i) for i in range(6)), (0, 6), (0, 7)])],
        now=1_790_000_001.0,
    )
    assert again.monitors["m"].events_total == 12
    # a checkpoint from before this release has no "front": it starts empty
    del meta["front"]
    old = build_pipeline(cfg)
    old.monitors["m"].restore(meta, arrays)
    assert old.monitors["m"].front.watermarks == {}


def test_bad_halves_are_counted_with_their_reason_and_dead_lettered(tmp_path):
    dlq = FakeDeadLetters()
    pipe = build_pipeline(ce_cfg(tmp_path), dead_letters=dlq)
    items = [
        (half("a", "request", {})[0], b"{not json"),
        half("b", "request", {"instances": [[1.0, 2.0]]}),  # 2 values, 4 features in order
        half("c", "request", {"instances": [[1.0, 2.0, 3.0, "red"]]}, service="other"),
        half("d", "request", {"instances": [[1.0, 2.0, 3.0, "red"]]}),
        half("d", "response", {"predictions": [1, 0]}),  # 2 predictions for 1 instance
    ]
    assert pipe.apply_batches([batch(items)], now=1_790_000_000.0) == 0
    assert sorted(r for _, r in dlq.sent) == [
        "invalid_json",
        "invalid_shape",
        "invalid_shape",
        "unknown_model",
    ]


def test_unkeyed_driftwatch_events_are_deduplicated_too(tmp_path):
    data = config_dict(tmp_path)
    data["kafka"]["keyed_by_model"] = False
    pipe = build_pipeline(parse_config(data, tmp_path))
    evs = [orjson.dumps(e) for e in events(2, 20)]

    def copies(idx: range) -> RecordBatch:
        return RecordBatch(
            TOPIC, 0, list(idx), [b"m"] * len(idx), [evs[i] for i in idx], [0.0] * len(idx),
            [[(SOURCE_HEADER, f"1:{100 + i}".encode())] for i in idx],
        )  # fmt: skip

    pipe.apply_batches([copies(range(0, 15))])
    pipe.apply_batches([copies(range(10, 20))])  # 10-14 copied again
    assert pipe.monitors["m"].events_total == 20


@pytest.mark.parametrize(
    ("kafka", "model", "http", "needle"),
    [
        ({"format": "cloudevents", "keyed_by_model": True}, {}, {}, "kafka.keyed_by_model"),
        ({"repartition_topic": "x"}, {}, {}, "kafka.repartition_topic"),
        ({"format": "cloudevents", "repartition_topic": "p"}, {}, {}, "kafka.repartition_topic"),
        ({}, {"feature_order": ["x1", "nope"]}, {}, "feature_order[1]"),
        ({}, {"feature_order": ["x1", "x1"]}, {}, "feature_order"),
        ({}, {}, {"ingest": True}, "http.ingest"),
    ],
)
def test_config_errors_name_the_key(tmp_path, kafka, model, http, needle):
    data = config_dict(tmp_path, **model)
    data["kafka"].update(kafka)
    data["http"] = http
    with pytest.raises(ConfigError) as exc:
        parse_config(data, tmp_path)
    assert any(needle in p for p in exc.value.problems), exc.value.problems


def test_monitored_topic_defaults():
    from driftwatch.config import KafkaConfig

    k = KafkaConfig(bootstrap_servers=["b"], prediction_topic="p")
    assert (k.repartitions, k.monitored_topic) == (False, "p")
    k = KafkaConfig(bootstrap_servers=["b"], prediction_topic="p", format="cloudevents")
    assert (k.repartitions, k.monitored_topic) == (True, "p.by-model")
    k = KafkaConfig(
        bootstrap_servers=["b"], prediction_topic="p", keyed_by_model=False, repartition_topic="q"
    )
    assert (k.repartitions, k.monitored_topic) == (True, "q")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=8), st.binary(max_size=12)), max_size=4))
def test_source_of_never_raises(headers):
    got = source_of(headers)
    assert got is None or isinstance(got, tuple)
    assert source_of([(SOURCE_HEADER, b"3:17")]) == (3, 17)


def test_records_without_headers_are_not_deduplicated(tmp_path):
    # a keyed topic (no copies): a Record with no headers goes the plain path
    pipe = build_pipeline(parse_config(config_dict(tmp_path), tmp_path))
    recs = [Record("p", 0, i, b"m", orjson.dumps(e), 0.0) for i, e in enumerate(events(3, 5))]
    assert pipe.apply(recs) == 5
    assert pipe.apply(recs) == 5  # keyed topics are exact by offsets, not by this


def test_a_stub_of_a_record_too_large_to_copy_is_counted_too_large(tmp_path):
    dlq = FakeDeadLetters()
    pipe = build_pipeline(ce_cfg(tmp_path), dead_letters=dlq)
    items = pairs(2, 3)
    stub = ([(TOO_LARGE_HEADER, b"5000000")], b"{partial")
    b = batch([items[0], stub, items[1], items[2], items[3]])
    assert pipe.apply_batches([b], now=1_790_000_000.0) == 6
    assert [r for _, r in dlq.sent] == ["too_large"]
