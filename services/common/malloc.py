"""glibc's malloc told to hand large freed blocks back to the OS at once (Linux; elsewhere nothing)."""

from __future__ import annotations

import contextlib
import ctypes
import sys

_M_MMAP_THRESHOLD = -3  # mallopt parameter (malloc.h)


def return_freed_memory() -> None:
    """Fix glibc's mmap threshold at 128 KiB: larger blocks are mapped on their own and unmapped on free.

    With the default sliding threshold (up to 32 MiB), a freed large block raises the threshold, and the next
    ones of that size come from the allocating thread's heap, which keeps what it had: worker threads that
    decode images or open index versions hold on to their last ones. Measured: the gateway's anonymous memory
    after a mixed sequence of 8 images grew 70 -> 149 MiB by default, 69 -> 74 MiB fixed (docs/reliability.md);
    an index worker kept ~30 MiB per version opened at 1M items (bench/memory.py).
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_THRESHOLD, 128 * 1024)
