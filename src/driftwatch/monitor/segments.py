"""Cohorts: a model's events split by the values of segment columns.

Each (column, value) is a *region* of the model's count vector with the same layout as
the whole model's; values beyond the ``max_values`` most frequent in the reference are
pooled as ``__other__`` (so are missing values). Every region has its own reference
counts, taken from the reference rows of that value.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from driftwatch.events.schema import category_key, is_missing
from driftwatch.windows.reference import CategoricalBins, NumericalBins, ReferenceProfile

OTHER = "__other__"


@dataclass(frozen=True, eq=False)
class Segment:
    column: str
    values: tuple[str, ...]  # the kept values, then OTHER
    first_region: int
    #: per value: feature -> reference counts over that feature's PSI bins
    reference: tuple[dict[str, npt.NDArray[np.int64]], ...]

    def local(self, value: str | None) -> int:
        if value is None:
            return len(self.values) - 1
        try:
            return self.values.index(value)
        except ValueError:
            return len(self.values) - 1

    @classmethod
    def build(
        cls,
        column: str,
        columns: Mapping[str, Any],
        profile: ReferenceProfile,
        max_values: int,
        first_region: int,
    ) -> Segment:
        if column not in columns:
            raise ValueError(f"segment column {column!r} is missing from the reference")
        keys = np.array([category_key(v) if not is_missing(v) else "" for v in columns[column]])
        ranked = [
            v
            for v, _ in sorted(
                Counter(k for k in keys if k).items(), key=lambda kv: (-kv[1], kv[0])
            )
        ]
        kept = tuple(str(v) for v in ranked[:max_values])
        values = (*kept, OTHER)
        masks = [keys == v for v in kept]
        masks.append(~np.isin(keys, kept))
        reference = tuple(
            {f: _psi_counts(profile.features[f], _subset(columns[f], m)) for f in profile.features}
            for m in masks
        )
        return cls(column, values, first_region, reference)


def _subset(values: Any, mask: npt.NDArray[np.bool_]) -> Sequence[Any]:
    arr = np.asarray(values, dtype=object)
    return list(arr[mask])


def _psi_counts(
    bins: NumericalBins | CategoricalBins, values: Sequence[Any]
) -> npt.NDArray[np.int64]:
    if isinstance(bins, NumericalBins):
        x = np.asarray(values, dtype=np.float64)
        x = x[np.isfinite(x)]
        return np.bincount(
            np.searchsorted(bins.psi_edges, x, side="right"), minlength=bins.psi_edges.size + 1
        ).astype(np.int64)
    keys = [category_key(v) for v in values if not is_missing(v)]
    idx = bins.bin(keys)
    return np.bincount(idx[idx >= 0], minlength=bins.nbins).astype(np.int64)
