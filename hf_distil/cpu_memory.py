"""Keep freed memory in the process on CPU, so that large tensors do not pay page faults every step.

Why: glibc hands every allocation above 32 MB (a 600 × 30522 logit block is 75 MB) to mmap and
returns it to the kernel when freed; the next step's tensor of the same size then faults in every page
again, 18,000 faults each time. On 2 CPU cores that was ~10% of a distillation step, and more of a
step than of its parts, whose peak memory is lower (benchmarks/train_step.py). PyTorch's CPU
performance guide reaches the same end by preloading jemalloc or tcmalloc; mallopt needs no extra
package. The cost is that the process's resident memory stays at its peak, like CUDA's caching allocator.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import platform

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


@functools.cache
def keep_freed_memory() -> bool:
    """Ask glibc to serve large blocks from its heap and never trim it; True when applied (Linux glibc only)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
