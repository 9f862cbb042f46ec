"""Hand freed heap memory back to the operating system between the phases of a long step.

glibc keeps freed blocks below its (self-raising, up to 32 MiB) mmap threshold in the
heap, so a step that frees large temporaries and then allocates smaller ones keeps the
high-water mark of all of them in its RSS.  :func:`trim` asks glibc to release what is
free (``malloc_trim(0)``: the heap's top and free pages inside it); elsewhere (musl,
macOS) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _malloc_trim() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


def trim() -> bool:
    """Release freed heap memory to the OS; True if glibc did (or could) trim."""
    fn = _malloc_trim()
    return bool(fn(0)) if fn is not None else False
