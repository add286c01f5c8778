"""PSI for categorical features: one bin per reference category plus one for unseen ones."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence

import numpy as np
import numpy.typing as npt

from driftwatch.stats.psi import psi_from_counts


def category_counts(
    categories: Sequence[Hashable], values: Iterable[Hashable]
) -> npt.NDArray[np.int64]:
    """Counts over ``categories`` plus a final bin for every value not among them."""
    index = {c: i for i, c in enumerate(categories)}
    unseen = len(categories)
    counts = np.zeros(len(categories) + 1, dtype=np.int64)
    for v in values:
        counts[index.get(v, unseen)] += 1
    return counts


def psi_categorical(reference: Iterable[Hashable], current: Iterable[Hashable]) -> float:
    """PSI of a categorical feature (CONTRACT section 4). Categories compare by equality."""
    ref = list(reference)
    cats = list(dict.fromkeys(ref))
    return psi_from_counts(category_counts(cats, ref), category_counts(cats, current))
