"""``kernels.allocator=``: whether the process keeps the memory it frees (glibc ``malloc``) for the next step.

PyTorch allocates CPU tensors with ``malloc``. With glibc's defaults, blocks of a few MiB (activations,
their gradients) are mapped fresh and returned to the system on every free, and the top of the heap is
trimmed whenever a few MiB lie free there; each step then page-faults all of its activation memory in
again. On a BERT-mini MLM step that is ~70,000 page faults and ~15 % of the step spent in the kernel
(docs/performance.md, "Where the time goes"). ``retain`` raises glibc's thresholds once per process
(``mallopt``: blocks up to 32 MiB come from the heap, freed memory is kept until 1 GiB lies unused at its
top), the same trade a caching allocator makes on GPU: the resident size stays at the step's peak instead of
falling between steps; the peak itself does not grow. ``system`` leaves glibc's defaults. Off glibc (macOS,
musl) there is nothing to set and the run says so.
"""

from __future__ import annotations

import ctypes
import ctypes.util

ALLOCATOR_OPTIONS = ("retain", "system")
# mallopt parameters (glibc malloc.h) and the values ``retain`` sets.
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
RETAIN = {M_MMAP_THRESHOLD: 32 << 20, M_TRIM_THRESHOLD: 1 << 30, M_TOP_PAD: 64 << 20}

_retained = False


def _mallopt():
    """glibc's ``mallopt``, or None where the C library has none."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.mallopt
    except (OSError, AttributeError):
        return None


def retain_freed_memory() -> str:
    """Switch this process to ``retain`` (idempotent); what the run records: ``retain`` or why not."""
    global _retained
    if _retained:
        return "retain"
    mallopt = _mallopt()
    if mallopt is None:
        return "system (no glibc mallopt on this platform)"
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    if not all(mallopt(param, value) == 1 for param, value in RETAIN.items()):
        return "system (mallopt refused the thresholds)"
    _retained = True
    return "retain"


def apply_allocator(option: str) -> str:
    """Carry out ``kernels.allocator`` for this process; returns what it now is, for ``run.json``."""
    if option == "retain":
        return retain_freed_memory()
    return "retain (set earlier in this process)" if _retained else "system"
