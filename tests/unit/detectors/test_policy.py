from __future__ import annotations

import pytest

from driftwatch.detectors import AlertPolicy, DriftRule, Edge, RuleState


def run(policy, breaches, step=60.0):
    state = RuleState()
    return [policy.update(state, b, i * step) for i, b in enumerate(breaches)]


def test_consecutive_breaches_before_firing_and_one_resolve():
    edges = run(AlertPolicy(consecutive=3, cooldown_seconds=0), [1, 1, 0, 1, 1, 1, 1, 0, 0])
    assert edges == [None, None, None, None, None, Edge.FIRED, None, Edge.RESOLVED, None]


def test_cooldown_suppresses_a_quick_refire_and_its_resolve():
    p = AlertPolicy(consecutive=1, cooldown_seconds=600)
    edges = run(p, [1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0], step=60)
    # fired at 0 s; re-fire at 120 s is inside the cooldown: silent, and so is its resolve;
    # the breach at 660 s is past it.
    assert edges == [
        Edge.FIRED,
        Edge.RESOLVED,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        Edge.FIRED,
        Edge.RESOLVED,
    ]


def test_policy_arguments_checked():
    with pytest.raises(ValueError):
        AlertPolicy(consecutive=0)
    with pytest.raises(ValueError):
        AlertPolicy(cooldown_seconds=-1)


def test_drift_rule_methods():
    psi = DriftRule(method="psi", threshold=0.2, min_events=10)
    assert psi.numerical(10, 0.2, 1.0) and not psi.numerical(9, 5.0, 0.0)
    assert not psi.numerical(10, float("nan"), 0.0)
    ks = DriftRule(method="ks", threshold=0.05, min_events=1)
    assert ks.numerical(5, 0.0, 0.01) and not ks.numerical(5, 9.0, 0.05)
    assert ks.categorical(5, 0.25)
    with pytest.raises(ValueError):
        DriftRule(method="ks", threshold=0.5 * 4)
    with pytest.raises(ValueError):
        DriftRule(method="chi2")
