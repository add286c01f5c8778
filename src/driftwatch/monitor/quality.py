"""Data quality and summaries per feature (CONTRACT section 9), read from a window's counts.

Nothing here is kept of its own: every figure is a pure function of the counts the window
already keeps per pane (``monitor.model``): per region, each slot's bins, then one bin
counting the region's events. An event adds one count to a feature's slot unless its value
is missing, so over the window (exactly, whatever was evicted):

* ``values`` = the sum of the feature's slot, ``missing = events - values``;
  ``missing_ratio = missing / events``;
* numerical: ``out_of_range_ratio`` = (first fine bin + last fine bin) / ``values``: the
  first fine edge is the reference minimum and the last its maximum
  (:class:`~driftwatch.windows.reference.NumericalBins`), so those bins hold exactly the
  values below the minimum and above the maximum;
* categorical: ``new_category_ratio`` = the last bin (categories the reference never had)
  / ``values``.

A ratio without a denominator (no events; no values) is NaN: no figure, never a breach.

**Mean and quantiles** of a numerical feature come from its fine bins: an equality bin
(``x == fine[i]``) holds one value exactly; an open bin ``(fine[i-1], fine[i])`` between two
of the ~500 reference quantiles holds about 1/500 of the reference; the two outer bins hold
the values out of the reference's range, which the counts do not locate.

* ``mean`` stands each value for its bin's midpoint (the value itself in an equality bin;
  the reference minimum / maximum in the outer bins). It is within ``mean_error_bound`` =
  ``sum(count x half-width over the open in-range bins) / values`` of the mean of the
  window's values *clipped to the reference range*; that is the window mean itself when no
  value is out of range. With values out of range the window mean is unbounded (each such
  value may lie anywhere beyond the minimum or maximum; their share is
  ``out_of_range_ratio``) and ``mean_error_bound`` is infinite (``null`` in JSON).
* quantile ``q`` is ``numpy.quantile(values, q)`` (method ``linear``: ``h = (values - 1) q``,
  between the order statistics of ranks ``floor(h) + 1`` and ``floor(h) + 2``) with each
  order statistic read from the bin its rank falls in: exact in an equality bin, spread
  evenly over an open bin (the ``j``-th of its ``c`` values at ``(j - 1/2) / c`` of its
  width), the reference minimum / maximum in an outer bin. Its error is at most
  ``(1 - g) x width(bin of the lower rank) + g x width(bin of the upper rank)`` with ``g``
  the fractional part of ``h``: at most one fine bin's width, 0 when both ranks fall in
  equality bins (integer or few-valued data that the reference had), infinite when a rank
  falls out of the reference's range. ``quantile_error_bounds`` reports it per quantile.

The reference's mean and quantiles are computed from its raw values when its bins are
built (``NumericalBins.reference_mean``, ``reference_quantiles``): exact.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from driftwatch.detectors.threshold import QualityRule
from driftwatch.windows.reference import (
    SUMMARY_QUANTILES,
    CategoricalBins,
    NumericalBins,
    ReferenceProfile,
)


def finite_or_none(x: float | None) -> float | None:
    """A float for JSON: NaN and infinities (no figure, no bound) are ``null``."""
    return None if x is None or not math.isfinite(x) else x


def _ratio(part: int, whole: int) -> float:
    return part / whole if whole else math.nan


def quantile_label(q: float) -> str:
    """How a quantile is spelled in JSON keys and metric labels: ``0.05``, ``0.5``, ``0.95``."""
    return repr(float(q))


@dataclass(frozen=True)
class NumericSummary:
    """A numerical feature's window mean and quantiles, with their error bounds."""

    mean: float
    #: bound on |mean - the mean of the values clipped to the reference range|
    clipped_mean_error_bound: float
    quantiles: tuple[float, ...]
    quantile_error_bounds: tuple[float, ...]


def numeric_summary(
    bins: NumericalBins, counts: npt.ArrayLike, quantiles: tuple[float, ...] = SUMMARY_QUANTILES
) -> NumericSummary:
    """Mean and quantiles of the values counted in ``counts`` (one numerical slot's fine
    bins), with their error bounds (see the module docstring). NaN without values."""
    c = np.asarray(counts, dtype=np.int64)
    n = int(c.sum())
    if n == 0:
        nan = (math.nan,) * len(quantiles)
        return NumericSummary(math.nan, math.nan, nan, nan)
    lower = bins.bin_bounds[0]
    rep, width = bins.bin_points  # width: 0 for equality bins, inf for the outer ones
    cf = c.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        mean = float(np.dot(cf, rep)) / n
        bound = float(np.dot(cf[1:-1], width[1:-1])) / 2 / n
    cum = np.cumsum(c)
    last = c.size - 1
    qs, qbounds = [], []
    for q in quantiles:
        h = (n - 1) * q
        if abs(h - round(h)) <= 1e-9 * max(1.0, h):  # (n - 1) q an integer but for rounding
            h = float(round(h))
        lo = math.floor(h)
        g = h - lo
        ranks = (lo + 1, min(lo + 2, n))
        at = np.searchsorted(cum, ranks, side="left").tolist()  # the bin of each rank
        values, err = [], 0.0
        for weight, rank, b in zip((1.0 - g, g), ranks, at, strict=True):
            if b in (0, last) or b % 2 == 1:
                values.append(float(rep[b]))  # exact, or the range's end
            else:  # the j-th of the bin's c values, spread evenly over it
                j = rank - int(cum[b] - c[b])
                values.append(float(lower[b] + (j - 0.5) / int(c[b]) * width[b]))
            if weight > 0:  # (a zero weight on an infinite width adds nothing)
                err += weight * float(width[b])
        qs.append(values[0] + g * (values[1] - values[0]))
        qbounds.append(err)
    return NumericSummary(mean, bound, tuple(qs), tuple(qbounds))


@dataclass(frozen=True)
class FeatureQuality:
    """One feature's data quality over the window, and (numerical) its summaries beside
    the reference's. Ratios are NaN without a denominator; see the module docstring."""

    feature: str
    kind: str  # numerical | categorical
    events: int
    values: int
    missing_ratio: float
    #: numerical: share of the values below the reference minimum or above its maximum
    out_of_range_ratio: float | None = None
    #: categorical: share of the values in categories the reference never had
    new_category_ratio: float | None = None
    mean: float | None = None
    #: bound on |mean - the window's mean|; infinite while values are out of range
    mean_error_bound: float | None = None
    quantiles: Mapping[float, float] = field(default_factory=dict)
    quantile_error_bounds: Mapping[float, float] = field(default_factory=dict)
    reference_mean: float | None = None
    reference_quantiles: Mapping[float, float] = field(default_factory=dict)

    @property
    def ratios(self) -> dict[str, float]:
        """The ratios that apply to this feature's kind, by name."""
        out = {"missing_ratio": self.missing_ratio}
        if self.out_of_range_ratio is not None:
            out["out_of_range_ratio"] = self.out_of_range_ratio
        if self.new_category_ratio is not None:
            out["new_category_ratio"] = self.new_category_ratio
        return out

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "values": self.values}
        out.update({name: finite_or_none(v) for name, v in self.ratios.items()})
        if self.kind == "numerical":
            out.update(
                {
                    "mean": finite_or_none(self.mean),
                    "mean_error_bound": finite_or_none(self.mean_error_bound),
                    "quantiles": {
                        quantile_label(q): finite_or_none(v) for q, v in self.quantiles.items()
                    },
                    "quantile_error_bounds": {
                        quantile_label(q): finite_or_none(v)
                        for q, v in self.quantile_error_bounds.items()
                    },
                    "reference": {
                        "mean": finite_or_none(self.reference_mean),
                        "quantiles": {
                            quantile_label(q): finite_or_none(v)
                            for q, v in self.reference_quantiles.items()
                        },
                    },
                }
            )
        return out


def feature_quality(
    feature: str, bins: NumericalBins | CategoricalBins, counts: npt.ArrayLike, events: int
) -> FeatureQuality:
    """One feature's :class:`FeatureQuality` from its slot's counts and the window's events."""
    c = np.asarray(counts, dtype=np.int64)
    values = int(c.sum())
    missing = _ratio(events - values, events)
    if isinstance(bins, CategoricalBins):
        return FeatureQuality(
            feature,
            "categorical",
            events,
            values,
            missing,
            new_category_ratio=_ratio(int(c[-1]), values),
        )
    s = numeric_summary(bins, c)
    out_of_range = int(c[0]) + int(c[-1])
    return FeatureQuality(
        feature,
        "numerical",
        events,
        values,
        missing,
        out_of_range_ratio=_ratio(out_of_range, values),
        mean=s.mean,
        mean_error_bound=math.inf if out_of_range else s.clipped_mean_error_bound,
        quantiles=dict(zip(SUMMARY_QUANTILES, s.quantiles, strict=True)),
        quantile_error_bounds=dict(zip(SUMMARY_QUANTILES, s.quantile_error_bounds, strict=True)),
        reference_mean=bins.reference_mean,
        reference_quantiles=dict(zip(SUMMARY_QUANTILES, bins.reference_quantiles, strict=False)),
    )


def window_quality(
    profile: ReferenceProfile, region: npt.ArrayLike, events: int
) -> dict[str, FeatureQuality]:
    """Every feature's quality from one region's counts (its slots' bins first, as laid out
    by ``profile``) and the region's events."""
    counts = np.asarray(region)
    return {
        f: feature_quality(f, profile.features[f], counts[profile.slot_slice(j)], events)
        for j, f in enumerate(profile.slots)
        if f in profile.features
    }


@dataclass(frozen=True)
class QualityBreach:
    """One feature's ratio over its threshold (rule ``data_quality``)."""

    feature: str
    ratio: str  # missing_ratio | out_of_range_ratio | new_category_ratio
    value: float
    threshold: float

    @property
    def key(self) -> tuple[str, str]:
        return (self.feature, self.ratio)

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "ratio": self.ratio,
            "value": self.value,
            "threshold": self.threshold,
        }


def quality_breaches(
    rule: QualityRule,
    quality: Mapping[str, FeatureQuality],
    was: frozenset[tuple[str, str]] = frozenset(),
) -> tuple[QualityBreach, ...]:
    """Each (feature, ratio) over its threshold; ``was`` (the previous evaluation's
    breaches) gets the hysteresis of ``rule.resolve_ratio``. A missing ratio is judged on
    at least ``rule.min_events`` window events, the others on as many of the feature's
    values."""
    out = []
    for f, fq in quality.items():
        for name, value in fq.ratios.items():
            threshold = rule.threshold(name)
            if threshold is None:
                continue
            support = fq.events if name == "missing_ratio" else fq.values
            if rule.breach(name, value, support, (f, name) in was):
                out.append(QualityBreach(f, name, value, threshold))
    return tuple(out)
