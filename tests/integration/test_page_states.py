"""The web page (``GET /``) in headless chromium in the states a live daemon rarely shows on
cue, without a broker: the real page through the real ``HttpEndpoints``, fed either crafted
JSON (hostile strings, a model it cannot draw, errors) or a real ``Daemon`` that is never
run (its pipeline evaluated by hand; its outbox filled by hand). Needs ``chromium``
(``scripts/ensure-chromium.sh``)."""

from __future__ import annotations

import html
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from driftwatch.config import load_config
from driftwatch.daemon import Daemon
from driftwatch.monitor.history import HistoryQuery, distributions, history_document
from driftwatch.sinks.http import HttpEndpoints
from driftwatch.sources.base import Record
from tests.helpers import FEATURES, events, reference_frame
from tests.integration.test_page import Elements, chromium

#: strings that would run script or add attributes if the page ever built HTML from text
X = '<img src=x onerror="document.title=1">'
Q = 'v"1\' onmouseover="document.title=2" data-pwned="'
#: the page's cap on the evaluations it draws (and asks for on its first load)
KEEP = 120
#: the page retries while /status and /api/history do not match, at most this many times
RETRIES = 3

Doc = dict[str, Any]


@contextmanager
def serving(
    status: Callable[[], Doc],
    history: Callable[[HistoryQuery], Doc],
    dists: Callable[[], Doc],
) -> Iterator[tuple[str, list[tuple[HistoryQuery, Doc]]]]:
    """The page and its JSON on 127.0.0.1: its URL, and each /api/history query it got
    with the answer."""
    asked: list[tuple[HistoryQuery, Doc]] = []

    def recorded(query: HistoryQuery) -> Doc:
        doc = history(query)
        asked.append((query, doc))
        return doc

    http = HttpEndpoints(
        "127.0.0.1",
        0,
        lambda accept: (b"", "text/plain"),
        lambda: (True, "ready"),
        status,
        history=recorded,
        distributions=dists,
    )
    http.start()
    try:
        yield f"http://127.0.0.1:{http.port}/", asked
    finally:
        http.stop()


def page_of(url: str, tmp_path: Path, budget_ms: int = 4000) -> tuple[str, Elements]:
    """The DOM chromium ends with (without the page's script, whose strings would match
    what the tests look for), and its elements."""
    dom = chromium(["--dump-dom", url], tmp_path / "profile", budget_ms=budget_ms).decode()
    dom = re.sub(r"<script>.*?</script>", "", dom, flags=re.DOTALL)
    page = Elements()
    page.feed(dom)
    return dom, page


def banner(dom: str) -> str:
    found = re.search(r'id="banner">([^<]*)<', dom)
    assert found, "no banner"
    return html.unescape(found.group(1))


# -- crafted JSON ----------------------------------------------------------------------------
RULE = {
    "method": "psi",
    "threshold": 0.2,
    "categorical_threshold": 0.2,
    "prediction_threshold": 0.2,
    "share": 0.5,
    "min_events": 500,
}


def evaluation(model: str, t: float) -> Doc:
    def feat(name: str, kind: str, psi: float, drift: bool) -> Doc:
        return {"feature": name, "kind": kind, "psi": psi, "ks_statistic": None, "drift": drift}

    return {
        "model": model,
        "evaluated_at": t,
        "window": {"events": 2000, "labeled_events": 10},
        "enough_events": True,
        "features": [feat(X, "categorical", 0.3, True), feat("n" + Q, "numerical", 0.01, False)],
        "prediction_psi": None,
        "prediction_drift": False,
        "drifted_features_ratio": 0.5,
        "labeled_events": 10,
        "label_coverage": 0.005,
        "labels_pending": 0,
        "performance": {
            "metric": "accuracy",
            "current": {"accuracy": 0.5},
            "reference": {"accuracy": 0.7},
            "estimated": {},
            "scored_events": 0,
            "estimated_rule": None,
        },
        "quality": {X: {"missing_ratio": 0.1, "new_category_ratio": 0.2}},
        "quality_breaches": [{"feature": X, "ratio": "missing_ratio"}],
        "versions": [
            {"version": Q, "events": 1000, "labeled_events": 5, "performance": {"accuracy": 0.4}},
            {"version": X, "events": 1000, "labeled_events": 5, "performance": {}},
        ],
        "version_regression": {"metric": "accuracy", "newest": Q, "previous": X},
    }


def point(t: float) -> Doc:
    return {
        "evaluated_at": t,
        "window_events": 2000,
        "labeled_events": 10,
        "scored_events": 0,
        "enough_events": True,
        "features": {X: {"psi": 0.3, "drift": True}, "n" + Q: {"psi": 0.01, "drift": False}},
        "prediction_psi": None,
        "drifted_features_ratio": 0.5,
        "dataset_drift": True,
        "breaches": ["feature_drift"],
        "performance": {"metric": "accuracy", "current": 0.5, "reference": 0.7},
        "estimated": None,
    }


def crafted_history(rings: dict[str, list[Doc]]) -> Callable[[HistoryQuery], Doc]:
    """/api/history of these rings, as ``history_document`` answers a query."""

    def history(q: HistoryQuery) -> Doc:
        models = {}
        for name, ring in rings.items():
            pts = [p for p in ring if q.since is None or p["evaluated_at"] > q.since]
            pts = pts[len(pts) - min(len(pts), q.limit) :] if q.limit is not None else pts
            models[name] = {
                "rules": ["feature_drift", "dataset_drift", "performance", "version_regression"],
                "drift_rule": RULE,
                "kept": len(ring),
                "oldest_evaluated_at": ring[0]["evaluated_at"] if ring else None,
                "evaluations": pts,
            }
        return {"length": 240, "models": models, "generated_at": time.time()}

    return history


def distribution() -> Doc:
    return {
        "window_events": 2000,
        "prediction": None,
        "prediction_source": None,
        "features": {
            X: {
                "kind": "categorical",
                "categories": [X, Q],
                "labels": [X, Q, "(unseen)"],
                "reference": [0.5, 0.5, 0.0],
                "current": [0.1, 0.2, 0.7],
            },
            "n" + Q: {
                "kind": "numerical",
                "edges": [],
                "labels": ["all"],
                "reference": [1.0],
                "current": [1.0],
            },
        },
    }


def test_hostile_strings_are_text_and_one_model_it_cannot_draw_hides_nothing_else(tmp_path):
    """Model, feature, category and version names, notification ids, webhook names and
    errors, readiness: all hostile, all shown as text. A model with an evaluation but no
    history point yet (the first round after a start) is drawn with empty charts after the
    retries; a model whose figures break the drawing gets an error card of its own."""
    now = time.time()
    hostile, first, broken = X + Q, "first-round", "broken"
    models = {
        hostile: {"evaluation": evaluation(hostile, now - 3), "alerts": {"feature_drift": True}},
        first: {"evaluation": evaluation(first, now - 3), "alerts": {}},
        broken: {"evaluation": dict(evaluation(broken, now - 3), window=None), "alerts": {}},
    }
    rings = {hostile: [point(now - 13), point(now - 3)], first: [], broken: [point(now - 3)]}
    hooks = {
        "pending_count": 1,
        "failed_count": 1,
        "pending": [
            {"id": X, "webhook": Q, "attempts": 1, "created_at": now, "next_attempt_at": now}
        ],
        "failed": [{"id": Q, "webhook": X, "attempts": 3, "created_at": now, "last_error": X * 3}],
    }

    def status() -> Doc:
        return {
            "models": models,
            "invalid_events_total": {},
            "generated_at": time.time(),
            "ready": True,
            "readiness": "ready " + X,
            "webhooks": hooks,
        }

    dists = {"models": dict.fromkeys(models, distribution()), "generated_at": now}
    with serving(status, crafted_history(rings), lambda: dists) as (url, asked):
        dom, page = page_of(url, tmp_path)

    [body] = page.where(data_state="*")
    assert (body["data-state"], body["data-refreshes"], body["data-model-errors"]) == (
        "ok",
        "1",
        "1",
    )
    # nothing hostile became an element or an attribute
    tags = {tag for tag, _ in page.found}
    assert "img" not in tags
    assert not [a for _, attrs in page.found for a in attrs if a.startswith("on") or "pwned" in a]
    # ... and all of it is there, as text and as attribute values
    cards = {a["data-model"]: a for a in page.where(data_model="*")}
    assert set(cards) == {hostile, first, broken}
    assert {a["data-feature"] for a in page.where(data_feature="*")} == {X, "n" + Q}
    assert {a["data-version"] for a in page.where(data_version="*")} == {X, Q}
    assert {a["data-notification"] for a in page.where(data_notification="*")} == {X, Q}
    assert [a["title"] for _, a in page.found if a.get("class") == "err"] == ["", X * 3]
    text = X.replace("<", "&lt;").replace(">", "&gt;")
    assert dom.count(text) >= 10  # names, labels, rows, the error, the readiness
    # the first-round model: drawn, with empty charts, after the page's retries
    assert "data-render-error" not in cards[first] and cards[first]["data-points"] == "0"
    assert len(asked) == 1 + RETRIES
    assert asked[0][0] == HistoryQuery(KEEP, None)
    assert all(q == HistoryQuery(KEEP, now - 3) for q, _ in asked[1:])  # only what is new
    # the broken one: an error card, the others drawn in full
    assert cards[broken]["data-render-error"].startswith("TypeError")
    assert "data-render-error" not in cards[hostile] and cards[hostile]["data-points"] == "2"
    assert "could not draw this model" in dom and banner(dom) == ""


@pytest.mark.parametrize(
    ("broken", "state", "told"),
    [
        (
            "distributions",
            "error",
            "The daemon answered with an error (api/distributions: HTTP 500)",
        ),
        ("status", "render-error", "This page could not draw the daemon's figures (TypeError"),
    ],
)
def test_an_error_answer_and_a_page_that_cannot_draw_are_told_apart(tmp_path, broken, state, told):
    def failing() -> Doc:
        raise RuntimeError("boom")

    def status() -> Any:
        return None if broken == "status" else {"models": {}, "generated_at": time.time()}

    dists = failing if broken == "distributions" else (lambda: {"models": {}})
    with serving(status, crafted_history({}), dists) as (url, _):
        dom, page = page_of(url, tmp_path)
    [body] = page.where(data_state="*")
    assert body["data-state"] == state and body["data-refreshes"] == "0"
    [box] = page.where(id="banner")
    assert box["class"] == "banner" and banner(dom).startswith(told)


# -- a real daemon, never run ------------------------------------------------------------
@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    """Two models; "m" has a full window of undrifted events (no alert fires); the
    daemon's page and JSON are served by the test (see ``served``)."""
    reference_frame().to_csv(tmp_path / "ref.csv", index=False)

    def model(name: str) -> Doc:
        return {
            "name": name,
            "reference": "ref.csv",
            "window": {"events": 1000},
            "features": dict(FEATURES),
            "drift": {"threshold": 0.2, "min_events": 200, "share": 0.75},
            "webhooks": ["retrain"],
        }

    cfg = {
        "kafka": {"bootstrap_servers": ["127.0.0.1:1"], "prediction_topic": "p"},
        "http": {"host": "127.0.0.1", "port": 0},
        "state": {"path": str(tmp_path / "state")},
        "webhooks": {"retrain": {"url": "http://127.0.0.1:1/x"}},
        "models": [model("m"), model("m2")],
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    d = Daemon(load_config(path), config_path=path)
    d.http.start()  # (unused: the test serves the daemon's documents itself)
    evs = events(1, 1000, model="m", t0=time.time() - 60)
    d.pipeline.apply(
        [Record("p", 0, i, b"m", json.dumps(e).encode(), 0.0) for i, e in enumerate(evs)]
    )
    try:
        yield d
    finally:
        d.http.stop()
        d.outbox.close()


@contextmanager
def served(
    d: Daemon, slow_distributions: float = 0.0
) -> Iterator[tuple[str, list[tuple[HistoryQuery, Doc]]]]:
    def dists() -> Doc:
        time.sleep(slow_distributions)
        return distributions(d.pipeline)

    def history(q: HistoryQuery) -> Doc:
        return history_document(d.history, d.pipeline, q.limit, q.since)

    with serving(d.status, history, dists) as out:
        yield out


def test_the_first_round_and_exact_webhook_counts(daemon, tmp_path):
    """In the first round after a start /status has the evaluations before the history has
    a point: the page retries, then draws them without points, not an error. 150 failed
    and 7 pending deliveries are counted exactly, the lists bounded."""
    d = daemon
    for i in range(150):
        d.outbox.add(f"old{i}", "retrain", b"{}", 1000.0 + i)
        d.outbox.failed(f"old{i}", "retrain", X)
    for i in range(7):
        d.outbox.add(f"new{i}", "retrain", b"{}", time.time())
    d.pipeline.evaluate(time.time())  # as Daemon.evaluate does, before history.record
    assert d.history.models() == []
    hooks = d.status()["webhooks"]
    assert (hooks["pending_count"], hooks["failed_count"]) == (7, 150)
    assert (len(hooks["pending"]), len(hooks["failed"])) == (7, 100)

    with served(d) as (url, asked):
        dom, page = page_of(url, tmp_path)
    [body] = page.where(data_state="*")
    assert (body["data-state"], body["data-refreshes"], body["data-model-errors"]) == (
        "ok",
        "1",
        "0",
    )
    cards = {a["data-model"]: a for a in page.where(data_model="*")}
    assert set(cards) == {"m", "m2"}
    for card in cards.values():
        assert card["data-evaluated-at"] and card["data-points"] == "0"
    assert dom.count("no evaluation yet") == 2 * len(FEATURES)  # the empty sparklines
    assert len(asked) == 1 + RETRIES  # the retries, and no more

    [box] = page.where(data_webhooks_pending="*")
    assert (box["data-webhooks-pending"], box["data-webhooks-failed"]) == ("7", "150")
    assert ">7 pending<" in dom and ">150 failed<" in dom
    assert "Showing 100 of 150 failed (the newest)." in dom
    assert page.where(data_shown="pending") == []
    rows = page.where(data_delivery="*")
    assert [r["data-notification"] for r in rows] == [f"new{i}" for i in range(7)] + [
        f"old{i}" for i in range(149, 49, -1)
    ]
    assert "img" not in {tag for tag, _ in page.found}  # the errors are text


def test_the_refresh_loop_fetches_only_new_evaluations(daemon, tmp_path):
    """Over 11 s of the page's time (three refreshes) the daemon keeps evaluating: after the
    first load the page asks only for the newer evaluations, and the copy it draws is
    exactly the daemon's history, nothing doubled or missed."""
    d = daemon
    for _ in range(3):
        d.evaluate()
    stop = threading.Event()

    def evaluating() -> None:
        while not stop.wait(0.1):
            d.evaluate()

    thread = threading.Thread(target=evaluating)
    # the distributions take a while: the page's loads are apart in real time too, so the
    # daemon evaluates between them
    with served(d, slow_distributions=0.5) as (url, asked):
        thread.start()
        try:
            _, page = page_of(url, tmp_path, budget_ms=11_000)
        finally:
            stop.set()
            thread.join()
    [body] = page.where(data_state="*")
    assert body["data-state"] == "ok" and int(body["data-refreshes"]) >= 2
    assert asked[0][0] == HistoryQuery(KEEP, None)
    later = [(q, doc) for q, doc in asked[1:] if q.since is not None]
    assert later and all(q.limit == KEEP for q, _ in later)
    assert any(doc["models"]["m"]["evaluations"] for _, doc in later), "nothing new was fetched"
    # the points drawn are the daemon's, up to the newest drawn
    [card] = page.where(data_model="m")
    times = [p.evaluated_at for p in d.history.points("m")]
    drawn = float(card["data-last-point"])
    assert drawn in times
    assert int(card["data-points"]) == min(KEEP, len([t for t in times if t <= drawn])) > 3
