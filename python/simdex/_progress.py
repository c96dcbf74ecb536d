"""Progress bars for long calls (progress=True): tqdm when installed, else one warning.

Long operations report through a `Progress` (a no-op when progress=False), so one bar can
span the stages of a call (IVF training: coarse k-means, then the PQ sub-spaces), and work
split in row chunks ticks per chunk.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

CHUNK = 32_768  # rows per step of a chunked add


def check(progress: Any) -> bool:
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be True or False; got {type(progress).__name__}")
    return progress


class Progress:
    """A bar over `total` units, or nothing when disabled (or tqdm is missing: one warning)."""

    def __init__(self, enabled: bool, total: int, desc: str, unit: str = "vec") -> None:
        self._bar: Any = None
        if not check(enabled):
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:
            warnings.warn(
                "progress=True needs tqdm (pip install 'simdex[progress]'); continuing "
                "without a bar",
                RuntimeWarning,
                stacklevel=3,
            )
            return
        self._bar = tqdm(total=total, unit=unit, desc=desc)

    @property
    def shown(self) -> bool:
        return self._bar is not None

    def update(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def chunks(n: int, bar: Progress, chunk: int = CHUNK) -> Iterator[slice]:
    """Row slices covering [0, n): one slice when no bar is shown, else chunks that tick it."""
    if not bar.shown:
        yield slice(0, n)
        return
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        yield slice(start, stop)
        bar.update(stop - start)
