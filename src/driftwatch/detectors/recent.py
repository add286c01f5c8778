"""Drift of the newest events: two-sample tests over the newest panes at several sizes.

A whole-window PSI crosses its threshold only once most of the window has changed, so a
5,000-event window needs thousands of drifted events. Here the window's newest panes are
judged on their own at sizes growing by sqrt(2) from ``min_events`` (100, 142, 202, 286,
... events below the window's size; :meth:`~driftwatch.windows.panes.PaneWindow.recent`),
each against the reference, with three tests whose null distributions are known for every
sample size:

* **cells** (every feature): the two-sample chi-square test of homogeneity over the PSI
  bins (deciles, or categories), reference cells under 5 % pooled so that each cell expects
  at least 5 events at the smallest size. ``X2 = sum((c N - r n)^2 / (c + r)) / (n N)``,
  chi-square with ``cells - 1`` degrees of freedom.
* **location** (numerical): each event's mid-rank in the reference, ``u`` (from the fine
  bins), averaged: under no drift ``mean(u)`` has the reference's mean and variance
  ``var(u) (1/n + 1/N)`` (the Mann-Whitney statistic with its tie correction).
* **spread** (numerical): the same for ``(u - 1/2)^2``, which moves when the variance does.

A size *breaches* when one of its tests is significant at ``alpha`` (a normal or
chi-square tail; 1e-8 by default kept 20 features evaluated every 100 events free of
false alarms over 5 x 1,000,000 events; at 100 events the exact tail of the cells test
is ~7x the nominal one, at 200 ~3.5x) **and**, when ``min_psi`` > 0, its effect is
material: the chi-square divergence over the PSI bins, estimated without bias as
``(X2 - df) (n + N) / (n N)``, is at least ``min_psi``. That floor (PSI and this
divergence agree to second order) keeps large sub-windows from flagging negligible
shifts, the p-value test's classic failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt
from scipy.stats import chi2, norm

from driftwatch.windows.panes import Pane
from driftwatch.windows.reference import CategoricalBins, NumericalBins, ReferenceProfile

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: A reference cell expecting fewer events than this at the smallest size is pooled.
MIN_EXPECTED = 5.0

#: Significance a breaching feature's tests need to keep breaching (hysteresis): a shift
#: just found on a few hundred events must not flap off at the next evaluation, whose
#: newest panes cut the stream elsewhere. Under no drift the hold ends at once (each size
#: and test passes it with probability 1e-5).
HOLD_ALPHA = 1e-5


@dataclass(frozen=True)
class RecentRule:
    """``drift.recent`` of the config (see the example config)."""

    enabled: bool = True
    min_events: int = 100
    alpha: float = 1e-8
    #: The effect floor; None: half the PSI threshold of the feature's kind (see
    #: :meth:`~driftwatch.detectors.threshold.DriftRule.recent_floors`).
    min_psi: float | None = None

    def __post_init__(self) -> None:
        if self.min_events < 10:
            raise ValueError("min_events must be >= 10")
        if not 1e-300 < self.alpha < 0.5:
            raise ValueError("alpha must be in (1e-300, 0.5)")
        if self.min_psi is not None and self.min_psi < 0:
            raise ValueError("min_psi must be >= 0")


@lru_cache(maxsize=4096)
def chi2_limit(alpha: float, df: int) -> float:
    return float(chi2.isf(alpha, df))


@lru_cache(maxsize=64)
def z_limit(alpha: float) -> float:
    return float(norm.isf(alpha / 2.0))


@dataclass(frozen=True)
class Breach:
    """The smallest size of newest events that breached, with its figures."""

    events: int
    #: the effect on the PSI scale: the cells' divergence, or the squared standardized
    #: location or spread effect, whichever is largest
    divergence: float
    statistic: str  # cells | location | spread
    value: float  # X2, or |z|


class _Feature:
    """One feature's reference figures for the tests (built once per model)."""

    __slots__ = ("cell_of", "cells", "df", "loc", "name", "ncells", "ref", "slot", "spread")

    def __init__(self, name: str, slot: slice, bins: NumericalBins | CategoricalBins, small: int):
        self.name = name
        self.slot = slot
        if isinstance(bins, NumericalBins):
            ref_cells = bins.reference_psi_counts.astype(np.float64)
            cell_of_bin = bins.psi_of_fine
        else:
            ref_cells = bins.reference_counts.astype(np.float64)
            cell_of_bin = np.arange(bins.nbins)
        pooled = _pool(ref_cells, small)
        self.ncells = int(pooled.max()) + 1
        self.cell_of: IntArray = pooled[cell_of_bin]
        self.ref: FloatArray = np.bincount(pooled, weights=ref_cells, minlength=self.ncells).astype(
            np.float64
        )
        self.df = max(1, int(np.count_nonzero(self.ref)) - 1)
        self.cells = self.ncells >= 2
        self.loc: tuple[FloatArray, float, float] | None = None
        self.spread: tuple[FloatArray, float, float] | None = None
        if isinstance(bins, NumericalBins):
            cdf = bins.reference_cdf
            p = np.diff(np.concatenate([[0.0], cdf]))
            u = cdf - p / 2.0  # the mid-rank of each fine bin in the reference
            mean = float(p @ u)
            var = float(p @ (u - mean) ** 2)
            if var > 0:
                self.loc = (u, mean, var)
                w = (u - mean) ** 2
                wmean = float(p @ w)
                wvar = float(p @ (w - wmean) ** 2)
                if wvar > 0:
                    self.spread = (w, wmean, wvar)


def _pool(ref: FloatArray, small: int) -> IntArray:
    """A cell index per reference cell, such that every cell expects at least
    ``MIN_EXPECTED`` events at ``small`` events: cells under that (and the cell of unseen
    categories, which expects none) are pooled, smallest first, into buckets that reach it;
    a last bucket still under it joins the smallest cell. One cell left: no cells test."""
    total = ref.sum()
    share_floor = MIN_EXPECTED / small
    share = ref / total if total > 0 else np.zeros_like(ref)
    out = np.zeros(ref.size, dtype=np.int64)
    keep = np.flatnonzero(share >= share_floor)
    out[keep] = np.arange(keep.size)
    cells = keep.size
    bucket: list[int] = []
    mass = 0.0
    for i in np.flatnonzero(share < share_floor)[np.argsort(share[share < share_floor])].tolist():
        bucket.append(i)
        mass += float(share[i])
        if mass >= share_floor:
            out[bucket] = cells
            cells += 1
            bucket, mass = [], 0.0
    if bucket:  # what is left expects too few: into the smallest cell there is
        if cells == 0:
            out[bucket] = 0
        else:
            placed = np.ones(ref.size, dtype=np.bool_)
            placed[bucket] = False
            cell_share = np.bincount(out[placed], weights=share[placed], minlength=cells)
            out[bucket] = int(np.argmin(cell_share))
    return out


class RecentTests:
    """The newest-events tests of one model's features (see the module docstring), all
    features of one size at once: a few ``bincount``s over the features' bins."""

    def __init__(
        self,
        profile: ReferenceProfile,
        rule: RecentRule,
        floors: tuple[float, float] = (0.1, 0.1),
    ) -> None:
        """``floors``: the effect floor of numerical and of categorical features when
        ``rule.min_psi`` is None."""
        self.rule = rule
        feats = [
            _Feature(f, profile.slot_slice(j), profile.slot_bins(f), rule.min_events)
            for j, f in enumerate(profile.features)
        ]
        self.names = [f.name for f in feats]
        #: Counts the tests read: the features' bins, at the start of the flat layout.
        self.bins = max((f.slot.stop for f in feats), default=0)
        nf = len(feats)
        self._feat_of_bin = np.zeros(self.bins, dtype=np.int64)
        self._cell_of_bin = np.zeros(self.bins, dtype=np.int64)
        self._u = np.zeros(self.bins)
        self._w = np.zeros(self.bins)
        cell_feat, ref = [], []
        self._loc = np.full((nf, 2), np.nan)  # mean, variance of u (NaN: no test)
        self._spread = np.full((nf, 2), np.nan)
        first = 0
        for j, f in enumerate(feats):
            self._feat_of_bin[f.slot] = j
            self._cell_of_bin[f.slot] = f.cell_of + first
            first += f.ncells
            cell_feat.append(np.full(f.ncells, j, dtype=np.int64))
            ref.append(f.ref)
            if f.loc is not None:
                self._u[f.slot], self._loc[j] = f.loc[0], f.loc[1:]
            if f.spread is not None:
                self._w[f.slot], self._spread[j] = f.spread[0], f.spread[1:]
        self._cells = first
        self._cell_feat = np.concatenate(cell_feat) if feats else np.zeros(0, np.int64)
        self._ref = np.concatenate(ref) if feats else np.zeros(0)
        self._n_ref = np.array([f.ref.sum() for f in feats], dtype=np.float64)
        self._df = np.array([f.df for f in feats], dtype=np.float64)
        self._has_cells = np.array([f.cells for f in feats], dtype=np.bool_)
        self._testable = self._has_cells | ~np.isnan(self._loc[:, 1])
        self._floor = np.array(
            [
                rule.min_psi
                if rule.min_psi is not None
                else floors[0 if f.loc is not None or f.spread is not None else 1]
                for f in feats
            ],
            dtype=np.float64,
        )
        self._chi2 = np.array([chi2_limit(rule.alpha, f.df) for f in feats], dtype=np.float64)
        self._chi2_held = np.array([chi2_limit(HOLD_ALPHA, f.df) for f in feats], dtype=np.float64)
        self._cache: dict[int, tuple[int, FloatArray]] = {}
        self._seen: set[int] = set()

    @property
    def size(self) -> int:
        """Length of a pane summary: per feature events, sum of u, sum of w; then cells."""
        return 3 * len(self.names) + self._cells

    def project(self, pane: Pane) -> FloatArray:
        """A pane's summary (see :attr:`size`), cached by pane key and event count (a
        pane's feature bins change only when events are added to it)."""
        hit = self._cache.get(pane.key)
        if hit is not None and hit[0] == pane.n:
            self._seen.add(pane.key)
            return hit[1]
        nf = len(self.names)
        if pane.counts is not None:
            c = pane.counts[: self.bins].astype(np.float64)
            feat, cell = self._feat_of_bin, self._cell_of_bin
            u, w = c * self._u, c * self._w
        else:
            idx = pane.indices()
            idx = idx[idx < self.bins]
            c = None
            feat, cell = self._feat_of_bin[idx], self._cell_of_bin[idx]
            u, w = self._u[idx], self._w[idx]
        summary = np.concatenate(
            [
                np.bincount(feat, weights=c, minlength=nf),
                np.bincount(feat, weights=u, minlength=nf),
                np.bincount(feat, weights=w, minlength=nf),
                np.bincount(cell, weights=c, minlength=self._cells),
            ]
        ).astype(np.float64)
        self._cache[pane.key] = (pane.n, summary)
        self._seen.add(pane.key)
        return summary

    def forget_unseen(self) -> None:
        """Drop the summaries of panes not read since the last call (evicted ones)."""
        for key in self._cache.keys() - self._seen:
            del self._cache[key]
        self._seen = set()

    def clear(self) -> None:
        """Forget every summary: the window was reset or restored (pane keys repeat)."""
        self._cache.clear()
        self._seen = set()

    def breaches(
        self,
        recent: tuple[tuple[int, FloatArray], ...],
        was: frozenset[str] = frozenset(),
        resolve_ratio: float = 1.0,
    ) -> dict[str, Breach]:
        """Per feature, the smallest size that breached (features that did not: absent).
        A feature in ``was`` (breaching before) keeps breaching at significance
        :data:`HOLD_ALPHA`, with its effect floor times ``resolve_ratio``."""
        rule = self.rule
        if not rule.enabled or not self.names:
            return {}
        held = np.array([f in was for f in self.names], dtype=np.bool_)
        floor = np.where(held, self._floor * resolve_ratio, self._floor)
        out: dict[str, Breach] = {}
        for events, summary in recent:
            hits = self._test(summary, floor, held)
            for j, (div, test, value) in hits.items():
                out.setdefault(self.names[j], Breach(events, div, test, value))
        return out

    def _test(
        self, summary: FloatArray, floor: FloatArray, held: npt.NDArray[np.bool_]
    ) -> dict[int, tuple[float, str, float]]:
        nf = len(self.names)
        n, sum_u, sum_w, cells = (
            summary[:nf],
            summary[nf : 2 * nf],
            summary[2 * nf : 3 * nf],
            summary[3 * nf :],
        )
        ok = self._testable & (n >= self.rule.min_events)
        if not ok.any():
            return {}
        big_n = self._n_ref
        both = cells + self._ref
        nb = n[self._cell_feat]
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(
                both > 0, (cells * big_n[self._cell_feat] - self._ref * nb) ** 2 / both, 0.0
            )
            x2 = np.bincount(self._cell_feat, weights=terms, minlength=nf) / (n * big_n)
            divergence = (x2 - self._df) * (n + big_n) / (n * big_n)
            scale = 1.0 / n + 1.0 / big_n
            # standardized effects of location and spread (for a mean shift of d sd of a
            # continuous feature both this squared and the divergence are ~d^2 ~ PSI)
            el = np.abs(sum_u / n - self._loc[:, 0]) / np.sqrt(self._loc[:, 1])
            es = np.abs(sum_w / n - self._spread[:, 0]) / np.sqrt(self._spread[:, 1])
            zl = el / np.sqrt(scale)
            zs = es / np.sqrt(scale)
            # (squared, less their sampling variance: unbiased, like the divergence)
            effect = np.fmax(
                np.where(self._has_cells, divergence, np.nan),
                np.fmax(el**2, es**2) - scale,
            )
        z = np.where(held, z_limit(max(HOLD_ALPHA, self.rule.alpha)), z_limit(self.rule.alpha))
        by_cells = self._has_cells & (
            x2 > np.where(held, np.minimum(self._chi2_held, self._chi2), self._chi2)
        )
        by_loc = zl > z  # NaN (no test) compares False
        by_spread = zs > z
        hit = ok & ((effect >= floor) | (floor <= 0)) & (by_cells | by_loc | by_spread)
        out: dict[int, tuple[float, str, float]] = {}
        for j in np.flatnonzero(hit).tolist():
            if by_cells[j]:
                out[j] = (float(effect[j]), "cells", float(x2[j]))
            elif by_loc[j]:
                out[j] = (float(effect[j]), "location", float(zl[j]))
            else:
                out[j] = (float(effect[j]), "spread", float(zs[j]))
        return out
