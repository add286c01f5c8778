"""Checkpoints: the complete per-partition state, with the input offsets it reflects."""
