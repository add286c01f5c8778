"""Validated events (CONTRACT section 3) and the per-model schema they are checked against."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field


def category_key(value: object) -> str:
    """The canonical string of a category, so ``1``, ``1.0`` and ``"1"`` are one category.

    Booleans become ``"true"``/``"false"``; integral floats lose their ``.0``. Used for
    event values and reference columns alike.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return str(int(value))
        return repr(value)
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        return category_key(item())
    return str(value)


def is_missing(value: object) -> bool:
    """None or a float NaN: a missing value in a reference column."""
    return value is None or (isinstance(value, float) and math.isnan(value))


#: A validated feature value: a finite float (numerical), a category, or None (missing).
FeatureValue = float | str | None


@dataclass(frozen=True, slots=True)
class ModelSchema:
    """What a model's events must look like: its task and each feature's kind."""

    name: str
    task: str  # "classification" | "regression"
    features: Mapping[str, str]  # feature -> "numerical" | "categorical"
    segments: tuple[str, ...] = ()  # columns (read from ``features``) that split the model
    numerical: tuple[str, ...] = field(init=False)
    categorical: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "numerical", tuple(f for f, k in self.features.items() if k == "numerical")
        )
        object.__setattr__(
            self, "categorical", tuple(f for f, k in self.features.items() if k == "categorical")
        )


@dataclass(slots=True)
class Prediction:
    """One prediction event. ``features`` holds floats for numerical features, canonical
    strings for categorical ones, and ``None`` for a missing value."""

    model: str
    id: str
    timestamp: float
    features: dict[str, FeatureValue]
    prediction: float | str
    score: float | None = None
    segments: dict[str, str | None] = field(default_factory=dict)


@dataclass(slots=True)
class Label:
    """One delayed ground-truth label, joined to the prediction with the same model and id."""

    model: str
    id: str
    label: float | str
    timestamp: float | None = None
