"""Exact recovery after kill -9, corrupt checkpoints, and scale-out across replicas."""

from __future__ import annotations

import copy
import json
import random
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from driftwatch.demo.broker import free_port
from driftwatch.sources.kafka import partition_of
from tests.helpers import events, http_get, wait_for
from tests.integration.conftest import DaemonProcess, daemon_config
from tests.integration.test_daemon import create_topic, produce

MODELS = ["m0", "m1", "m2", "m3", "m4", "m5"]


def multi_model_config(broker, workdir: Path, topic: str, **over: Any) -> dict[str, Any]:
    cfg = daemon_config(broker, workdir, topic, **over)
    base = cfg["models"][0]
    cfg["models"] = []
    for name in MODELS:
        m = copy.deepcopy(base)
        m["name"] = name
        m["window"] = {"events": 700}
        cfg["models"].append(m)
    return cfg


def stream(n_per_model: int) -> list[tuple[str, bytes]]:
    """Every model's events, interleaved; the second half of each model's drifts."""
    out = []
    for k, name in enumerate(MODELS):
        half = n_per_model // 2
        evs = events(10 + k, half, model=name) + events(
            20 + k, n_per_model - half, model=name, shift=("x1", "color"), start=half
        )
        out.append([(name, orjson.dumps(e)) for e in evs])
    mixed: list[tuple[str, bytes]] = []
    for i in range(n_per_model):
        mixed.extend(per[i] for per in out)
    return mixed


def send(broker, topic, items):
    from driftwatch.sources.kafka import JsonProducer

    p = JsonProducer([broker.bootstrap])
    for key, value in items:
        p.send(topic, key, value)
    p.flush()
    p.close()


def model_status(d: DaemonProcess) -> dict[str, Any]:
    code, body = http_get(d.base + "/status")
    assert code == 200
    models: dict[str, Any] = json.loads(body)["models"]
    return models


def settled(d: DaemonProcess, expected_total: dict[str, int]) -> dict[str, Any] | None:
    """The status once every model has counted its events and been evaluated since."""
    st = model_status(d)
    if {m: st[m]["events_total"] for m in st} != expected_total:
        return None
    return st


def comparable(st: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, s in st.items():
        ev = s["evaluation"]
        out[name] = {
            "events_total": s["events_total"],
            "window": ev["window"]["events"],
            "features": [
                (f["feature"], f["psi"], f["ks_statistic"], f["drift"]) for f in ev["features"]
            ],
            "prediction_psi": ev["prediction_psi"],
        }
    return out


def final_state(d: DaemonProcess, expected_total: dict[str, int]) -> dict[str, Any]:
    wait_for(lambda: settled(d, expected_total), 60, what="all events counted")
    time.sleep(2.5)  # evaluations after the last event
    return comparable(model_status(d))


@pytest.mark.usefixtures("kafka_library")
def test_kill_9_at_random_points_recovers_exactly(broker, topic, tmp_path, daemons):
    create_topic(broker, topic, partitions=3)
    items = stream(900)
    expected = dict.fromkeys(MODELS, 900)

    crash_dir = tmp_path / "crash"
    crash_dir.mkdir()
    cfg = multi_model_config(broker, crash_dir, topic)
    d = DaemonProcess(cfg, crash_dir)
    daemons.append(d.start())

    def feed() -> None:
        for i in range(0, len(items), 300):
            send(broker, topic, items[i : i + 300])
            time.sleep(0.25)

    feeder = threading.Thread(target=feed)
    feeder.start()
    rng = random.Random(2026)
    for _ in range(4):
        time.sleep(rng.uniform(0.3, 2.5))  # anywhere: mid-batch, mid-checkpoint, mid-commit
        d.kill()
        d = DaemonProcess(cfg, crash_dir)
        daemons.append(d.start())
    feeder.join()
    crashed = final_state(d, expected)

    ref_dir = tmp_path / "reference"
    ref_dir.mkdir()
    ref_cfg = multi_model_config(broker, ref_dir, topic)
    ref_cfg["kafka"]["group_id"] = f"reference-{topic}"
    ref = DaemonProcess(ref_cfg, ref_dir)
    daemons.append(ref.start())
    uninterrupted = final_state(ref, expected)
    assert crashed == uninterrupted
    assert all(700 <= v["window"] < 707 for v in crashed.values())  # panes of 7 events
    assert all(any(f[3] for f in v["features"]) for v in crashed.values())  # drift was seen
    assert d.stop() == 0 and ref.stop() == 0


def test_corrupt_checkpoint_is_refused_not_reset(broker, topic, tmp_path, daemons):
    create_topic(broker, topic, partitions=1)
    cfg = daemon_config(broker, tmp_path, topic)
    d = DaemonProcess(cfg, tmp_path)
    daemons.append(d.start())
    produce(broker, topic, [orjson.dumps(e) for e in events(7, 300)])
    wait_for(lambda: model_status(d)["m"]["events_total"] == 300, 30, what="300 events")
    assert d.stop() == 0
    [ckpt] = (tmp_path / "state" / "checkpoints").glob("*.dwck")
    data = bytearray(ckpt.read_bytes())
    data[len(data) // 2] ^= 0xFF
    ckpt.write_bytes(bytes(data))
    d2 = DaemonProcess(cfg, tmp_path)
    daemons.append(d2.start(wait_ready=False))
    assert d2.proc is not None
    assert d2.proc.wait(40) == 3
    log = d2.log.read_text()
    assert "corrupt (CRC mismatch)" in log and "move its checkpoint file" in log
    assert ckpt.read_bytes() == bytes(data)  # left for the operator, not overwritten


def owners(replicas: list[DaemonProcess]) -> dict[str, tuple[int, int]]:
    """model -> (index of the replica exporting it, its events_total); each model once."""
    out: dict[str, tuple[int, int]] = {}
    for i, r in enumerate(replicas):
        for name, s in model_status(r).items():
            assert name not in out, f"{name} exported by two replicas"
            out[name] = (i, s["events_total"])
    return out


@pytest.mark.usefixtures("kafka_library")
def test_replicas_split_partitions_and_hand_over_exact_state(broker, topic, tmp_path, daemons):
    create_topic(broker, topic, partitions=4)
    cfg = multi_model_config(
        broker, tmp_path, topic, state={"backend": "kafka", "topic": f"state-{topic}"}
    )
    replicas = []
    for i in range(2):
        work = tmp_path / f"r{i}"
        work.mkdir()
        c = copy.deepcopy(cfg)
        c["http"]["port"] = free_port()
        c["state"]["path"] = str(work / "state")
        replicas.append(DaemonProcess(c, work))
    for r in replicas:
        daemons.append(r.start())
    partitions_of = {m: partition_of(m, 4) for m in MODELS}
    assert len(set(partitions_of.values())) > 1  # the models really are spread out

    send(broker, topic, stream(400))
    wait_for(
        lambda: {m: n for m, (_, n) in owners(replicas).items()} == dict.fromkeys(MODELS, 400),
        60,
        what="every model counted by exactly one of two replicas",
    )
    split = owners(replicas)
    assert {i for i, _ in split.values()} == {0, 1}  # both replicas own some models
    time.sleep(2)  # a checkpoint after the last event

    replicas[0].kill()  # kill -9: its partitions move to the survivor
    survivor = replicas[1]
    wait_for(
        lambda: set(model_status(survivor)) == set(MODELS),
        60,
        what="the survivor to take over every model",
    )
    st = model_status(survivor)
    assert {m: st[m]["events_total"] for m in MODELS} == dict.fromkeys(MODELS, 400)

    def windows(replica):
        return {
            m: (s["evaluation"] or {}).get("window", {}).get("events")
            for m, s in model_status(replica).items()
        }

    wait_for(
        lambda: windows(survivor) == dict.fromkeys(MODELS, 400),
        15,
        what="restored windows evaluated",
    )

    send(broker, topic, stream(800)[len(MODELS) * 400 :])  # 400 more per model
    wait_for(
        lambda: (
            {m: s["events_total"] for m, s in model_status(survivor).items()}
            == dict.fromkeys(MODELS, 800)
        ),
        60,
        what="800 per model on the survivor",
    )
    time.sleep(2)

    work = tmp_path / "r2"
    work.mkdir()
    c = copy.deepcopy(cfg)
    c["http"]["port"] = free_port()
    c["state"]["path"] = str(work / "state")
    third = DaemonProcess(c, work)
    daemons.append(third.start())
    both = [survivor, third]
    wait_for(
        lambda: len({i for i, _ in owners(both).values()}) == 2,
        60,
        what="the third replica to take some partitions",
    )
    final = owners(both)
    assert set(final) == set(MODELS)
    assert {m: n for m, (_, n) in final.items()} == dict.fromkeys(MODELS, 800)  # none reset
    for r in both:
        for s in model_status(r).values():
            assert s["evaluation"] is None or 700 <= s["evaluation"]["window"]["events"] < 707
    assert survivor.stop() == 0 and third.stop() == 0
