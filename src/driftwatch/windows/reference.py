"""Reference profiles: the bins a window counts into, precomputed once per model.

A numerical feature is counted over *fine* bins built from ~500 reference
quantiles (or every distinct reference value, when there are fewer) plus the
PSI decile edges. Each edge ``e`` gets its own bin (``x == e``) between the
open intervals, so the reference CDF is known exactly on both sides of every
edge. From one fine count vector the daemon derives:

* the PSI decile counts exactly (each fine bin lies inside one decile bin);
* the KS statistic, exact at every edge, and off by at most the reference mass
  strictly inside one open interval (about 1/500) elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from driftwatch.events.schema import category_key, is_missing
from driftwatch.stats.psi import decile_edges

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

#: Quantiles of the reference that become fine-bin edges for a numerical feature.
FINE_QUANTILES = 500


@dataclass(frozen=True, eq=False)
class NumericalBins:
    """Fine bins of one numerical column (see the module docstring)."""

    fine_edges: FloatArray
    psi_edges: FloatArray
    psi_of_fine: IntArray
    reference_psi_counts: IntArray
    reference_cdf: FloatArray
    n_reference: int
    kind: str = field(default="numerical", init=False)

    @classmethod
    def from_reference(
        cls, values: npt.ArrayLike, quantiles: int = FINE_QUANTILES
    ) -> NumericalBins:
        ref = np.asarray(values, dtype=np.float64)
        ref = np.sort(ref[np.isfinite(ref)])
        if ref.size == 0:
            raise ValueError("no finite reference values")
        psi_edges = decile_edges(ref)
        distinct = np.unique(ref)
        base = (
            distinct
            if distinct.size <= quantiles
            else np.quantile(ref, np.linspace(0, 1, quantiles))
        )
        fine = np.unique(np.concatenate([base, psi_edges]))
        k = fine.size
        # Fine bin 2i: fine[i-1] < x < fine[i]; bin 2i+1: x == fine[i]; bin 2k: x > fine[k-1].
        lower = np.concatenate([[-np.inf], fine])  # left end of the open interval of bin 2i
        psi_of_fine = np.empty(2 * k + 1, dtype=np.int64)
        psi_of_fine[0::2] = np.searchsorted(psi_edges, lower, side="right")
        psi_of_fine[1::2] = np.searchsorted(psi_edges, fine, side="right")
        cdf = np.empty(2 * k + 1, dtype=np.float64)
        cdf[0:-1:2] = np.searchsorted(ref, fine, side="left") / ref.size
        cdf[1::2] = np.searchsorted(ref, fine, side="right") / ref.size
        cdf[-1] = 1.0
        ref_psi = np.bincount(
            np.searchsorted(psi_edges, ref, side="right"), minlength=psi_edges.size + 1
        )
        return cls(fine, psi_edges, psi_of_fine, ref_psi.astype(np.int64), cdf, int(ref.size))

    @property
    def nbins(self) -> int:
        return 2 * self.fine_edges.size + 1

    def bin(self, values: FloatArray) -> IntArray:
        """Fine bin of each value; -1 for NaN (a missing value)."""
        left = np.searchsorted(self.fine_edges, values, side="left")
        right = np.searchsorted(self.fine_edges, values, side="right")
        out = (left + right).astype(np.int64)
        out[np.isnan(values)] = -1
        return out

    def psi_counts(self, fine_counts: npt.ArrayLike) -> FloatArray:
        """Decile-bin counts from fine-bin counts."""
        return np.bincount(  # type: ignore[return-value]
            self.psi_of_fine,
            weights=np.asarray(fine_counts, dtype=np.float64),
            minlength=self.psi_edges.size + 1,
        )


@dataclass(frozen=True, eq=False)
class CategoricalBins:
    """One bin per reference category (canonical strings) plus a last bin for unseen ones."""

    categories: tuple[str, ...]
    reference_counts: IntArray
    index: Mapping[str, int]
    kind: str = field(default="categorical", init=False)

    @classmethod
    def from_reference(cls, values: Sequence[object]) -> CategoricalBins:
        keys = [category_key(v) for v in values if not is_missing(v)]
        if not keys:
            raise ValueError("no reference values")
        cats = tuple(sorted(set(keys)))
        index = {c: i for i, c in enumerate(cats)}
        counts = np.zeros(len(cats) + 1, dtype=np.int64)
        np.add.at(counts, np.fromiter((index[k] for k in keys), dtype=np.int64, count=len(keys)), 1)
        return cls(cats, counts, index)

    @property
    def nbins(self) -> int:
        return len(self.categories) + 1

    def bin(self, values: Sequence[str | None]) -> IntArray:
        """Bin of each canonical category; the last bin for unseen ones; -1 for None."""
        unseen = len(self.categories)
        get = self.index.get
        return np.fromiter(
            (-1 if v is None else get(v, unseen) for v in values), dtype=np.int64, count=len(values)
        )


SlotBins = NumericalBins | CategoricalBins


@dataclass(frozen=True, eq=False)
class ReferenceProfile:
    """Every slot's bins for one model, laid out in one flat count vector.

    Slots are the features in config order, then ``prediction`` when the
    reference has a ``score`` or ``prediction`` column.
    """

    features: Mapping[str, SlotBins]
    prediction: SlotBins | None = None
    prediction_source: str | None = None  # "score" | "prediction"
    slots: tuple[str, ...] = field(init=False)
    offsets: IntArray = field(init=False)
    nbins: int = field(init=False)

    def __post_init__(self) -> None:
        slots = tuple(self.features)
        sizes = [b.nbins for b in self.features.values()]
        if self.prediction is not None:
            slots += ("prediction",)
            sizes.append(self.prediction.nbins)
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        object.__setattr__(self, "slots", slots)
        object.__setattr__(self, "offsets", offsets)
        object.__setattr__(self, "nbins", int(offsets[-1]))

    def slot_bins(self, slot: str) -> SlotBins:
        if slot == "prediction" and self.prediction is not None:
            return self.prediction
        return self.features[slot]

    def slot_slice(self, index: int) -> slice:
        return slice(int(self.offsets[index]), int(self.offsets[index + 1]))

    @classmethod
    def build(
        cls,
        columns: Mapping[str, Any],
        features: Mapping[str, str],
        task: str,
    ) -> ReferenceProfile:
        """Profile from reference columns. Raises ``ValueError`` naming a bad column."""
        bins: dict[str, SlotBins] = {}
        for name, kind in features.items():
            if name not in columns:
                raise ValueError(f"column {name!r} (a configured feature) is missing")
            try:
                if kind == "numerical":
                    bins[name] = NumericalBins.from_reference(_numeric(columns[name], name))
                else:
                    bins[name] = CategoricalBins.from_reference(list(columns[name]))
            except ValueError as exc:
                raise ValueError(f"column {name!r}: {exc}") from None
        prediction: SlotBins | None = None
        source: str | None = None
        if "score" in columns:
            prediction, source = (
                NumericalBins.from_reference(_numeric(columns["score"], "score")),
                "score",
            )
        elif "prediction" in columns:
            source = "prediction"
            if task == "regression":
                prediction = NumericalBins.from_reference(
                    _numeric(columns["prediction"], "prediction")
                )
            else:
                prediction = CategoricalBins.from_reference(list(columns["prediction"]))
        return cls(bins, prediction, source)


def _numeric(values: object, name: str) -> FloatArray:
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"column {name!r} is configured numerical but holds non-numbers") from None
