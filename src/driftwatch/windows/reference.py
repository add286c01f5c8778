"""Reference profiles: the bins a window counts into, precomputed once per model.

A numerical feature is counted over *fine* bins built from ~500 reference
quantiles (or every distinct reference value, when there are fewer) plus the
PSI decile edges. Each edge ``e`` gets its own bin (``x == e``) between the
open intervals, so the reference CDF is known exactly on both sides of every
edge. From one fine count vector the daemon derives:

* the PSI decile counts exactly (each fine bin lies inside one decile bin);
* the KS statistic, exact at every edge, and off by at most the reference mass
  strictly inside one open interval (about 1/500) elsewhere;
* the data-quality figures of ``monitor.quality``: the values outside the reference's
  range exactly (the first fine edge is the reference minimum, the last its maximum, so
  they are the first and last bins), and the window's mean and quantiles within a bound
  computed from the counts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from driftwatch.events.schema import category_key, is_missing
from driftwatch.stats.psi import decile_edges

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

#: Quantiles of the reference that become fine-bin edges for a numerical feature.
FINE_QUANTILES = 500
#: Cells of the lookup grid that speeds up :meth:`NumericalBins.bin`, and the vectorised
#: correction steps it takes before falling back to a binary search.
GRID_CELLS = 4096
GRID_STEPS = 4
#: The quantiles of each numerical feature summarised per window and on the reference.
SUMMARY_QUANTILES = (0.05, 0.5, 0.95)


class NumericalBinner:
    """Bins a matrix of values, one row per :class:`NumericalBins`, in a few vectorised
    steps for all rows at once (the per-call cost of numpy is paid once per batch, not
    once per feature).

    The fine bin of a value is ``left + right`` for ``left``/``right`` its ``searchsorted``
    positions among the (distinct) edges, i.e. ``2 * left + (the value is an edge)``.
    ``left`` is found without a binary search for most values: per row, a uniform grid
    of up to :data:`GRID_CELLS` cells over the edges' range gives the first edge at or
    above the cell's start, and up to :data:`GRID_STEPS` vectorised steps correct it to
    the exact position (rounding may put a value one cell off; a cell may hold several
    edges). Values still unresolved after that (dense clusters of edges) get
    ``np.searchsorted``. The result is exactly the binary search's, at a fraction of its
    cost; ``tests/unit/events/test_columns.py`` checks it on arbitrary edges and values.

    All rows' tables are concatenated: ``upper[base[r] + i]`` is edge ``i`` of row ``r``
    (NaN past its last), ``lower[base[r] + i]`` its edge ``i - 1`` (NaN before its first);
    comparisons with NaN are false, so no step leaves a row's own segment."""

    def __init__(self, bins: Sequence[NumericalBins]) -> None:
        self.bins = tuple(bins)
        uppers, lowers, firsts = [], [], []
        starts, scales, cells, cell_base, edge_base = [], [], [], [], []
        edges_so_far = cells_so_far = 0
        for b in self.bins:
            fine = b.fine_edges
            lo, hi = float(fine[0]), float(fine[-1])
            span = hi - lo
            n_cells = min(GRID_CELLS, 8 * fine.size) if span > 0 and np.isfinite(span) else 0
            scale = n_cells / span if n_cells else 0.0
            grid = lo + np.arange(n_cells + 1) / scale if n_cells else np.full(1, lo)
            firsts.append(np.searchsorted(fine, grid, side="left") + edges_so_far)
            uppers.append(np.append(fine, np.nan))
            lowers.append(np.concatenate([[np.nan], fine]))
            starts.append(lo)
            scales.append(scale)
            cells.append(n_cells)
            cell_base.append(cells_so_far)
            edge_base.append(edges_so_far)
            cells_so_far += n_cells + 1
            edges_so_far += fine.size + 1
        self.upper = np.concatenate(uppers) if uppers else np.zeros(0)
        self.lower = np.concatenate(lowers) if lowers else np.zeros(0)
        self.first = np.concatenate(firsts).astype(np.intp) if firsts else np.zeros(0, np.intp)
        self.start = np.array(starts, dtype=np.float64)[:, None]
        self.scale = np.array(scales, dtype=np.float64)[:, None]
        self.cells = np.array(cells, dtype=np.float64)[:, None]
        self.cell_base = np.array(cell_base, dtype=np.intp)[:, None]
        self.edge_base = np.array(edge_base, dtype=np.intp)[:, None]
        #: values binned, and those the grid left to a binary search
        self.values = 0
        self.misses = 0

    def bin(self, values: FloatArray) -> IntArray:
        """Fine bins of a ``(len(bins), n)`` matrix; -1 for NaN (a missing value)."""
        # C order, so that the flat views the correction steps write through are views
        values = np.ascontiguousarray(values, dtype=np.float64)
        if values.ndim != 2 or values.shape[0] != len(self.bins):
            raise ValueError(f"expected {len(self.bins)} rows of values, got {values.shape}")
        if not values.size:
            return np.zeros(values.shape, dtype=np.int64)
        nan = np.isnan(values)
        if self.misses * 4 > self.values + 100_000:  # edges too clustered for a grid
            at = np.stack(
                [
                    np.searchsorted(b.fine_edges, row)
                    for b, row in zip(self.bins, values, strict=True)
                ]
            )
            at += self.edge_base
        else:
            at = self._grid_search(values)
        out = 2 * (at - self.edge_base) + (self.upper[at] == values)
        out[nan] = -1
        result: IntArray = out.astype(np.int64, copy=False)
        return result

    def _grid_search(self, values: FloatArray) -> npt.NDArray[np.intp]:
        """Global ``left`` positions (``edge_base`` + the row's ``searchsorted`` left)."""
        with np.errstate(invalid="ignore", over="ignore"):
            cell = (values - self.start) * self.scale
        np.maximum(cell, 0, out=cell)
        np.minimum(cell, self.cells, out=cell)
        np.nan_to_num(cell, copy=False, nan=0.0)
        at = self.first[self.cell_base + cell.astype(np.intp)]
        # one step over every value, then only over the ones that moved
        up = self.upper[at] < values
        down = self.lower[at] >= values
        at += up
        at -= down
        at = np.ascontiguousarray(at)
        flat_at, flat_values = at.reshape(-1), values.reshape(-1)
        assert np.shares_memory(flat_at, at)  # writes below must land in ``at``
        todo = np.flatnonzero(up | down)
        for _ in range(GRID_STEPS - 1):
            if not todo.size:
                break
            v, pos = flat_values[todo], flat_at[todo]
            up = self.upper[pos] < v
            down = self.lower[pos] >= v
            flat_at[todo] = pos + up - down
            todo = todo[up | down]
        self.values += values.size
        if todo.size:
            self.misses += todo.size
            n = values.shape[1]
            rows = todo // n
            for r in np.unique(rows).tolist():
                idx = todo[rows == r]
                flat_at[idx] = self.edge_base[r, 0] + np.searchsorted(
                    self.bins[r].fine_edges, flat_values[idx], side="left"
                )
        return at


@dataclass(frozen=True, eq=False)
class NumericalBins:
    """Fine bins of one numerical column (see the module docstring)."""

    fine_edges: FloatArray
    psi_edges: FloatArray
    psi_of_fine: IntArray
    reference_psi_counts: IntArray
    reference_cdf: FloatArray
    n_reference: int
    #: The raw reference's mean and :data:`SUMMARY_QUANTILES` (``numpy.quantile``, linear),
    #: computed at build time; not part of the bin layout (nor of a checkpoint's fingerprint).
    reference_mean: float = math.nan
    reference_quantiles: tuple[float, ...] = ()
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
        return cls(
            fine,
            psi_edges,
            psi_of_fine,
            ref_psi.astype(np.int64),
            cdf,
            int(ref.size),
            _mean(ref),
            tuple(float(x) for x in np.quantile(ref, SUMMARY_QUANTILES)),
        )

    @property
    def nbins(self) -> int:
        return 2 * self.fine_edges.size + 1

    @property
    def minimum(self) -> float:
        """The reference's smallest value: the first fine edge."""
        return float(self.fine_edges[0])

    @property
    def maximum(self) -> float:
        """The reference's largest value: the last fine edge."""
        return float(self.fine_edges[-1])

    @cached_property
    def bin_bounds(self) -> tuple[FloatArray, FloatArray]:
        """Each fine bin's lower and upper end: ``(fine[i-1], fine[i])`` for the open bin
        ``2i`` (``-inf`` / ``+inf`` for the outer ones), ``fine[i]`` twice for bin ``2i+1``."""
        fine = self.fine_edges
        lower = np.empty(self.nbins, dtype=np.float64)
        upper = np.empty(self.nbins, dtype=np.float64)
        lower[0::2] = np.concatenate([[-np.inf], fine])
        upper[0::2] = np.concatenate([fine, [np.inf]])
        lower[1::2] = upper[1::2] = fine
        return lower, upper

    @cached_property
    def bin_points(self) -> tuple[FloatArray, FloatArray]:
        """Each fine bin's representative value and width (``monitor.quality``): the edge
        and 0 for an equality bin, the midpoint and ``upper - lower`` for an open one, the
        reference minimum / maximum and ``inf`` for the outer ones (values out of range)."""
        lower, upper = self.bin_bounds
        fine = self.fine_edges
        point = lower / 2 + upper / 2  # cannot overflow
        point[1::2] = fine
        point[0], point[-1] = fine[0], fine[-1]
        return point, upper - lower

    def bin(self, values: FloatArray) -> IntArray:
        """Fine bin of each value; -1 for NaN (a missing value). See :class:`NumericalBinner`."""
        values = np.asarray(values, dtype=np.float64)
        out: IntArray = self._binner.bin(values.reshape(1, -1))[0]
        return out

    @cached_property
    def _binner(self) -> NumericalBinner:
        return NumericalBinner([self])

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


def _mean(values: FloatArray) -> float:
    """The mean from the correctly rounded sum (``math.fsum``; numpy's mean on overflow)."""
    chunk = 1 << 16  # a list of one chunk at a time: memory stays flat on huge references
    try:
        return (
            math.fsum(
                x for lo in range(0, values.size, chunk) for x in values[lo : lo + chunk].tolist()
            )
            / values.size
        )
    except OverflowError:
        with np.errstate(over="ignore"):
            return float(np.mean(values))


def _numeric(values: object, name: str) -> FloatArray:
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"column {name!r} is configured numerical but holds non-numbers") from None
