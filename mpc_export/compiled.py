"""numba-compiled loops, shared by the stages: the decorator that compiles one (no GIL, cached on disk
beside its source or in numba's user cache directory, so only a machine's first run pays the
compilation), and the helper that runs one over slices of its work in threads."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import torch

INT64_MAX, INT64_MIN = np.iinfo(np.int64).max, np.iinfo(np.int64).min

_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def kernel(function):
    """numba.njit without the GIL, cached on disk where numba finds a writable place, else in memory."""
    try:
        return numba.njit(nogil=True, cache=True)(function)
    except RuntimeError:  # no writable cache location: compile once per process
        return numba.njit(nogil=True)(function)


def _pool() -> ThreadPoolExecutor:
    """One pool of worker threads for the process (starting threads per call costs ~2 ms each)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="mpc-export")
        return _POOL


def slices() -> int:
    """How many slices over_slices cuts work into: torch's thread count, as for PyTorch's own passes."""
    return max(1, torch.get_num_threads())


def over_slices(compiled, count: int, *args, per_thread=()) -> None:
    """compiled(first, stop, *args, *[a[t] for a in per_thread]) over [0, count) cut into up to slices()
    ranges, one thread each; per_thread arrays have a row per slice (their first dimension, slices())."""
    threads = max(1, min(slices(), count))
    bounds = np.linspace(0, count, threads + 1).astype(int)
    if threads == 1:
        compiled(0, count, *args, *[a[0] for a in per_thread])
        return
    futures = [_pool().submit(compiled, int(bounds[t]), int(bounds[t + 1]), *args, *[a[t] for a in per_thread])
               for t in range(threads)]
    for future in futures:
        future.result()


def running_extremes(width: int) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) per-slice running extremes, (slices(), width) int64, ready for min / max."""
    return np.full((slices(), width), INT64_MAX, np.int64), np.full((slices(), width), INT64_MIN, np.int64)
