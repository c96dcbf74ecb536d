"""Progress bars for long calls (progress=True): tqdm when installed, else one warning."""

from __future__ import annotations

import warnings
from typing import Any


def bar(total: int, desc: str) -> Any:
    """A tqdm bar over `total` items, or None (with a warning) when tqdm is not installed."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        warnings.warn("progress=True needs tqdm (pip install 'simdex[progress]'); continuing without a bar",
                      RuntimeWarning, stacklevel=3)
        return None
    return tqdm(total=total, unit="vec", desc=desc)
