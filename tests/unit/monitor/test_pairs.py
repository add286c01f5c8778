"""PairJoin: request and response halves of a KServe payload log joined by CloudEvent id."""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftwatch.monitor.pairs import PairJoin

REQ = {"instances": [[6.8, 2.8, 4.8, 1.4]]}
RESP = {"predictions": [1]}


def test_request_then_response():
    j = PairJoin(ttl_seconds=60)
    assert j.add("a", "request", REQ, at=100.0, now=100.0) is None
    assert j.pending == 1 and j.pending_by_kind() == {"request": 1, "response": 0}
    assert j.add("a", "response", RESP, at=100.2, now=100.3) == (REQ, RESP)
    assert j.pending == 0 and j.completed == 1
    assert not j.dropped


def test_response_then_request_keeps_the_order_of_the_pair():
    j = PairJoin(ttl_seconds=60)
    assert j.add("a", "response", RESP, at=100.0, now=100.0) is None
    assert j.pending_by_kind() == {"request": 0, "response": 1}
    assert j.add("a", "request", REQ, at=99.9, now=100.1) == (REQ, RESP)
    assert j.pending_by_kind() == {"request": 0, "response": 0}


def test_pairs_are_joined_by_id_only():
    j = PairJoin()
    j.add("a", "request", "ra", 1.0, 1.0)
    j.add("b", "request", "rb", 1.0, 1.0)
    assert j.add("b", "response", "pb", 2.0, 2.0) == ("rb", "pb")
    assert j.add("a", "response", "pa", 2.0, 2.0) == ("ra", "pa")


def test_the_same_half_twice_keeps_the_first():
    j = PairJoin()
    j.add("a", "request", "first", 1.0, 1.0)
    assert j.add("a", "request", "second", 1.5, 1.5) is None
    assert j.dropped == {"duplicate": 1}
    assert j.add("a", "response", "p", 2.0, 2.0) == ("first", "p")


def test_a_replayed_half_after_completion_is_a_duplicate_not_a_waiter():
    j = PairJoin(ttl_seconds=60)
    j.add("a", "request", REQ, 100.0, 100.0)
    j.add("a", "response", RESP, 100.0, 100.0)
    # a crash, and the partition is replayed from an older offset
    assert j.add("a", "request", REQ, 100.0, 101.0) is None
    assert j.add("a", "response", RESP, 100.0, 101.0) is None
    assert j.pending == 0
    assert j.dropped == {"duplicate": 2}


def test_waiting_halves_expire_after_the_ttl():
    j = PairJoin(ttl_seconds=60)
    j.add("a", "request", REQ, at=100.0, now=100.0)
    j.add("b", "response", RESP, at=130.0, now=130.0)
    assert j.expire(now=160.0) == 0  # exactly the TTL: still waiting
    assert j.expire(now=160.5) == 1
    assert j.state()["pending"] == [["b", "response", RESP, 130.0]]
    assert j.dropped == {"expired": 1}
    # its other half arrives later: it waits (nothing says its pair is gone) and expires
    assert j.add("a", "response", RESP, at=150.0, now=161.0) is None
    assert j.expire(now=300.0) == 2
    assert j.pending == 0 and j.dropped == {"expired": 3}


def test_a_half_older_than_the_ttl_on_arrival_is_dropped_unless_it_completes_a_pair():
    j = PairJoin(ttl_seconds=60)
    assert j.add("a", "request", REQ, at=10.0, now=100.0) is None
    assert j.pending == 0 and j.dropped == {"expired": 1}
    j.add("b", "request", REQ, at=90.0, now=90.0)
    assert j.add("b", "response", RESP, at=10.0, now=100.0) == (REQ, RESP)


def test_capacity_drops_the_longest_waiting_first():
    j = PairJoin(max_pending=2)
    for i in range(5):
        j.add(str(i), "request", i, 100.0 + i, 100.0 + i)
    assert [p[0] for p in j.state()["pending"]] == ["3", "4"]
    assert j.dropped == {"capacity": 3}
    assert j.pending_by_kind() == {"request": 2, "response": 0}
    assert j.add("4", "response", "p", 105.0, 105.0) == (4, "p")
    assert j.add("0", "response", "p", 105.0, 105.0) is None  # its request was dropped: waits


def test_completed_ids_are_bounded_by_count_and_ttl():
    j = PairJoin(ttl_seconds=60, max_pending=2)
    for i, t in enumerate((100.0, 110.0, 120.0)):
        j.add(str(i), "request", i, t, t)
        j.add(str(i), "response", i, t, t)
    assert [c[0] for c in j.state()["completed"]] == ["1", "2"]  # "0" forgotten: the cap
    assert j.expire(now=175.0) == 0
    assert [c[0] for c in j.state()["completed"]] == ["2"]  # "1" completed at 110 + 60 < 175
    assert j.add("1", "request", 1, 110.0, 175.0) is None  # no longer known: expired on arrival
    assert j.dropped == {"expired": 1}
    assert j.add("2", "request", 2, 120.0, 175.0) is None
    assert j.dropped == {"expired": 1, "duplicate": 1}


def test_expiry_index_stays_bounded():
    j = PairJoin(ttl_seconds=60, max_pending=10)
    for i in range(20_000):
        j.add(str(i), "request", None, float(i), float(i))
        j.add(str(i), "response", None, float(i), float(i))
    assert j.pending == 0
    assert len(j._heap) <= 2 * j.pending + 1024 + 1
    assert j.completed == 10


def test_state_round_trip():
    j = PairJoin(ttl_seconds=60, max_pending=3)
    j.add("a", "request", {"instances": [[1, 2]]}, 100.0, 100.0)
    j.add("b", "response", {"outputs": [{"name": "p", "data": [1]}]}, 101.0, 101.0)
    j.add("c", "request", REQ, 102.0, 102.0)
    j.add("c", "response", RESP, 102.5, 102.5)
    j.add("c", "response", RESP, 102.5, 103.0)
    state = orjson.loads(orjson.dumps(j.state()))
    k = PairJoin(ttl_seconds=60, max_pending=3)
    k.restore(state)
    assert k.state() == j.state()
    assert k.pending_by_kind() == j.pending_by_kind()
    # and they go on alike
    for join in (j, k):
        assert join.add("a", "response", RESP, 103.0, 103.0) == ({"instances": [[1, 2]]}, RESP)
        assert join.add("c", "request", REQ, 103.0, 103.0) is None
        assert join.expire(now=161.5) == 1
    assert k.state() == j.state()


def test_arguments_checked():
    with pytest.raises(ValueError):
        PairJoin(ttl_seconds=0)
    with pytest.raises(ValueError):
        PairJoin(ttl_seconds=float("inf"))
    with pytest.raises(ValueError):
        PairJoin(max_pending=0)
    j = PairJoin()
    with pytest.raises(ValueError):
        j.add("a", "label", None, 1.0, 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        j.add("a", "request", None, float("nan"), 1.0)


# -- against a brute-force model ------------------------------------------------------------------


class Model:
    """The rules, stated as plainly as possible: lists scanned in full."""

    def __init__(self, ttl: float, cap: int) -> None:
        self.ttl, self.cap = ttl, cap
        self.pending: list[list[Any]] = []  # [id, kind, payload, at], arrival order
        self.completed: list[list[Any]] = []  # [id, completion time], completion order
        self.dropped: Counter[str] = Counter()

    def add(self, ce_id: str, kind: str, payload: Any, at: float, now: float) -> Any:
        if any(c[0] == ce_id for c in self.completed):
            self.dropped["duplicate"] += 1
            return None
        for k, (i, other_kind, other, _) in enumerate(self.pending):
            if i != ce_id:
                continue
            if other_kind == kind:
                self.dropped["duplicate"] += 1
                return None
            del self.pending[k]
            self.completed.append([ce_id, now])
            self.completed = self.completed[-self.cap :]
            return (payload, other) if kind == "request" else (other, payload)
        if now - at > self.ttl:
            self.dropped["expired"] += 1
            return None
        self.pending.append([ce_id, kind, payload, at])
        while len(self.pending) > self.cap:
            self.pending.pop(0)
            self.dropped["capacity"] += 1
        return None

    def expire(self, now: float) -> int:
        keep = [p for p in self.pending if not now - p[3] > self.ttl]
        expired = len(self.pending) - len(keep)
        self.pending = keep
        self.dropped["expired"] += expired
        while self.completed and now - self.completed[0][1] > self.ttl:
            self.completed.pop(0)
        return expired


OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("add"),
            st.sampled_from("abcdef"),
            st.sampled_from(["request", "response"]),
            st.integers(-3, 25),  # how far `at` lies behind `now`
            st.integers(-2, 8),  # how far `now` moves first (it may step back a little)
        ),
        st.tuples(st.just("expire"), st.integers(-2, 30)),
        st.tuples(
            st.just("restore"),
        ),
    ),
    max_size=60,
)


class Rebuilding(PairJoin):
    """Rebuilds its expiry index as often as it may, to test the rebuild too."""

    _REBUILD_SLACK = 0


@settings(max_examples=300, deadline=None)
@given(ops=OPS, cap=st.integers(1, 4), cls=st.sampled_from([PairJoin, Rebuilding]))
def test_matches_a_brute_force_model(ops, cap, cls):
    ttl = 10.0
    j, m = cls(ttl_seconds=ttl, max_pending=cap), Model(ttl, cap)
    now = 1000.0
    for step, op in enumerate(ops):
        if op[0] == "add":
            _, ce_id, kind, behind, advance = op
            now += advance
            payload = {"step": step, "kind": kind}
            assert j.add(ce_id, kind, payload, now - behind, now) == m.add(
                ce_id, kind, payload, now - behind, now
            )
        elif op[0] == "expire":
            now += op[1]
            assert j.expire(now) == m.expire(now)
        else:
            state = orjson.loads(orjson.dumps(j.state()))
            j = cls(ttl_seconds=ttl, max_pending=cap)
            j.restore(state)
        state = j.state()
        assert state["pending"] == m.pending
        assert state["completed"] == m.completed
        assert Counter(state["dropped"]) == m.dropped
        assert j.pending == len(m.pending)
        kinds = Counter(p[1] for p in m.pending)
        assert j.pending_by_kind() == {"request": kinds["request"], "response": kinds["response"]}
