"""Validated events (CONTRACT section 3) and the per-model schema they are checked against."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field


def category_key(value: object) -> str:
    """The canonical string of a category, so ``1``, ``1.0`` and ``"1"`` are one category.

    Booleans become ``"true"``/``"false"``; integral floats lose their ``.0``. Used for
    event values and reference columns alike. Total: integers of any size, non-finite
    floats, numpy scalars and arrays, and objects whose ``str`` or ``item`` fail all get a
    string; nothing raises.
    """
    if type(value) is str:
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return _int_key(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return _int_key(int(value))
        return float.__repr__(value)  # not repr(): numpy 2 spells it "np.float64(0.5)"
    if isinstance(value, str):  # a subclass (numpy.str_): its plain value
        return str.__str__(value)
    item = getattr(value, "item", None)  # numpy scalars and 0-d arrays
    if callable(item):
        try:
            inner = item()
        except Exception:  # e.g. an array of several values
            inner = None
        if isinstance(inner, (str, bool, int, float)):
            return category_key(inner)
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__name__}>"


#: Digits per chunk when an int is too long for ``str`` (Python's int_max_str_digits).
_CHUNK = 10**1000


def _int_key(value: int) -> str:
    try:
        return str(value)
    except ValueError:  # more digits than sys.get_int_max_str_digits() allows
        pass
    sign, rest = ("-", -value) if value < 0 else ("", value)
    chunks: list[str] = []
    while rest:
        rest, low = divmod(rest, _CHUNK)
        chunks.append(f"{low:01000d}")
    return sign + "".join(reversed(chunks)).lstrip("0")


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
    #: ``model_version`` (CONTRACT section 9): a string of 1 to 128 characters, or None.
    model_version: str | None = None


@dataclass(slots=True)
class Label:
    """One delayed ground-truth label, joined to the prediction with the same model and id."""

    model: str
    id: str
    label: float | str
    timestamp: float | None = None
