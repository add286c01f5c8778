"""Event types and the decoder that turns raw record bytes into them."""

from __future__ import annotations

from driftwatch.events.decode import INVALID_REASONS, Decoder
from driftwatch.events.schema import Label, ModelSchema, Prediction

__all__ = ["INVALID_REASONS", "Decoder", "Label", "ModelSchema", "Prediction"]
