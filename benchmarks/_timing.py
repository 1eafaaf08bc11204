"""The one wall-clock timer of the benchmarks; no imports beyond the standard library, so that
the peers' own interpreters (``_miniff_peer.py`` runs under miniff's venv) can use it too."""

from __future__ import annotations

import statistics
import time


def median_time(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` in seconds (one warm-up call first)."""
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)
