"""What the benchmarks print about the peers they run beside simdex."""

from __future__ import annotations

import os


def faiss_level() -> str:
    """The SIMD level the imported faiss runs: faiss-cpu >= 1.13 is one library with run-time
    dispatch (FAISS_SIMD_LEVEL lowers it, e.g. AVX2); older wheels were one build per level
    (FAISS_OPT_LEVEL)."""
    import faiss

    config = getattr(faiss, "SIMDConfig", None)
    if config is not None:
        return str(config.get_level_name())
    return os.environ.get("FAISS_OPT_LEVEL", "?")
