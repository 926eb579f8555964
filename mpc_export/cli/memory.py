"""Process-wide memory tuning for the batch loops of `verify` and `build --calibrate`.

Each batch allocates the same large tensors again (layer outputs of 10-70 MB). glibc hands every block
above 32 MB (and, by default, many smaller ones) back to the kernel when it is freed, so the next batch
touches fresh pages: on the 2-core machines here a fresh page costs 2-3x a reused one, about a sixth of
verify's time. With mmap disabled for the allocator and a high trim threshold, freed blocks stay in the
heap and the next batch reuses them; the process keeps its peak memory until it exits (a CLI command).
Nothing changes where glibc's mallopt is unavailable (other C libraries, other systems).
"""

from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
_M_MMAP_MAX = -4
_TRIM_THRESHOLD_BYTES = 1 << 30


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse (see the module docstring); True when it accepted."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES))
