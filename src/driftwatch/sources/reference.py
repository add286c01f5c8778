"""Reading reference data files (CSV or Parquet) into columns."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from driftwatch.errors import ReferenceDataError


def load_reference(model: str, path: Path) -> pd.DataFrame:
    """Read a reference file; raises :class:`ReferenceDataError` with a readable reason."""
    if not path.exists():
        raise ReferenceDataError(model, f"file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        elif suffix in (".csv", ".txt") or suffix.endswith(".gz"):
            frame = pd.read_csv(path)
        else:
            raise ReferenceDataError(model, f"expected a .csv or .parquet file, got {path.name}")
    except ReferenceDataError:
        raise
    except ImportError as exc:
        raise ReferenceDataError(
            model, f"cannot read {path.name}: {exc} (pip install 'driftwatch[parquet]')"
        ) from None
    except Exception as exc:
        raise ReferenceDataError(model, f"cannot read {path}: {exc}") from None
    if frame.empty:
        raise ReferenceDataError(model, f"{path} has no rows")
    return frame
