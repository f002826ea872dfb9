"""Worker processes: named so ``ps``/``top`` tell the pools apart (``esign-sign``, ``esign-report``…),
and gone when the gateway is.

Naming is Linux only (``prctl(PR_SET_NAME)`` sets ``/proc/<pid>/comm``, at most 15 bytes); elsewhere
a no-op. The benches read the names to account CPU per pool.

A worker's parent may die without a word (``kill -9``, the OOM killer): a pool worker blocked on its
task queue would then wait forever under PID 1. :func:`watch_parent` ends the worker within a
second of that. (``PR_SET_PDEATHSIG`` is no substitute: it fires when the *thread* that started the
child ends, and the inspector starts its workers from short-lived threads.)

A worker logs as its parent does (:func:`esign_gateway.logging.worker_logging`, handed over by the
pool): with ``ESIGN_LOG_JSON=true`` what pyHanko, ``warnings`` or asyncio write there is JSON too,
each line naming the process; without it the standard library would print them as bare text.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from esign_gateway.logging import WorkerLogging

__all__ = ["name_process", "watch_parent", "worker_init"]

_PR_SET_NAME = 15


def name_process(name: str) -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)
    except OSError:  # no libc to call: the name is a convenience
        pass


def watch_parent(parent: int, interval: float = 0.5) -> None:
    """End this process when ``parent`` (the pid of the process that started it, passed from there:
    by the time a spawned child runs, its parent may already be gone) is no longer its parent."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(70)  # no cleanup: the parent that would receive results is gone

    if os.getppid() != parent:
        os._exit(70)
    threading.Thread(target=watch, name="esign-parent-watch", daemon=True).start()


def worker_init(
    name: str, parent: int, initializer: Callable[..., object] | None = None, initargs: tuple[Any, ...] = (),
    logs: WorkerLogging | None = None,
) -> None:
    """A process-pool initializer: name the process, watch the parent, log as the parent does, then
    run ``initializer`` (which may quieten its libraries further)."""
    name_process(name)
    watch_parent(parent)
    if logs is not None:
        logs.apply(process=name)
    if initializer is not None:
        initializer(*initargs)
