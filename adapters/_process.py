"""Name worker processes so ``ps``/``top`` tell the pools apart (``esign-sign``, ``esign-report``…).

Linux only (``prctl(PR_SET_NAME)`` sets ``/proc/<pid>/comm``, at most 15 bytes); elsewhere a no-op.
The benches read the names to account CPU per pool.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["name_process"]

_PR_SET_NAME = 15


def name_process(name: str) -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)
    except OSError:  # no libc to call: the name is a convenience
        pass
