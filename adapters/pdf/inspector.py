"""ProcessPdfInspector: every upload is checked by signing it, in bounded worker processes.

**What an inspection does** (:func:`examine`, in a worker process): it reads the file with pyHanko,
refuses encrypted files (``pdf_encrypted``) and files certified "no changes allowed"
(``pdf_certified``), repairs an *unsigned* file whose structure is broken (:mod:`adapters._pdf.repair`:
the prepared file is what every signer signs; a file that carries a signature is never rewritten),
decodes every page's content, and finally makes the two signatures a two-signer envelope would get
with a throwaway identity (:mod:`adapters._pdf.trial`), proves the original untouched and validates
them. A file that passes is signable; one that does not is refused now, with the reason, instead
of failing after a signer typed the SMS code.

**Bounds.** Each worker process has an address-space limit (``RLIMIT_AS``) and, for each document,
its own CPU budget: before every inspection the soft ``RLIMIT_CPU`` is set to the CPU the process
has used so far plus the budget, so a long-lived worker never runs out of it (the limit used to be
counted over the process's whole life, and after ~21 s of inspections valid files were refused).
Over the budget ``SIGXCPU`` ends that inspection alone; a wall-clock timeout kills a worker that is
stuck in C code. A worker that was killed, ran out of memory or served ``jobs_per_worker`` files is
replaced; the others go on. A request waits for a free worker at most ``wait_seconds`` and then gets
``503 inspector_busy`` with ``Retry-After`` — a busy gateway never answers ``422`` for a good file.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import io
import logging
import multiprocessing
import os
import resource
import signal
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import structlog

from adapters._process import name_process, watch_parent
from esign_gateway.errors import (
    InspectorBusyError,
    PdfCertifiedError,
    PdfEncryptedError,
    PdfInvalidError,
    ValidationFailedError,
)
from esign_gateway.logging import WorkerLogging, worker_logging
from esign_gateway.ports import InspectorHealth, PdfInfo, PlacementRequest

__all__ = ["ProcessPdfInspector", "examine"]

log = structlog.get_logger(__name__)

MAX_PAGES = 5000
EXPORT_AGAIN = "Export the document again from the program that made it (Print or Save as PDF) and upload the new file."


class _OverBudget(BaseException):
    """SIGXCPU: this document used up its CPU budget (a BaseException: nothing may swallow it)."""


# ------------------------------------------------------------------------------ in the worker


def _read(data: bytes) -> tuple[Any, str | None]:
    from pyhanko.pdf_utils.reader import PdfFileReader

    try:
        reader = PdfFileReader(io.BytesIO(data), strict=False)
        if not reader.encrypted:
            _ = reader.root["/Pages"]["/Count"]
        return reader, None
    except (MemoryError, _OverBudget):
        raise
    except Exception as exc:  # PdfReadError, KeyError, TypeError, AssertionError, RecursionError…
        return None, _cause(exc)


def _cause(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def _certified_no_changes(reader: Any) -> bool:
    """DocMDP P=1: the author certified the document against every change, signatures included."""
    from adapters._pdf.repair import resolved_get as _get

    try:
        docmdp = reader.root["/Perms"]["/DocMDP"]
        for ref in _get(docmdp, "/Reference", []):
            if _get(ref, "/TransformMethod") == "/DocMDP" and int(_get(ref["/TransformParams"], "/P", 2)) == 1:
                return True
    except (KeyError, TypeError, ValueError, AttributeError):
        return False
    return False


def _resolve(obj: Any) -> Any:
    return obj.get_object() if hasattr(obj, "get_object") else obj


def _pages(reader: Any) -> int:
    """The page count, after walking the page tree and decoding every page's content."""
    from pyhanko.pdf_utils import generic

    from adapters._pdf.repair import resolved_get as _get

    pages = int(reader.root["/Pages"]["/Count"])
    if not 1 <= pages <= MAX_PAGES:
        raise ValueError(f"The PDF has {pages} pages; 1 to {MAX_PAGES} are accepted.")
    seen = 0
    stack = [(reader.root["/Pages"], 0)]
    while stack:
        node, depth = stack.pop()
        if depth > 64:
            raise ValueError("The PDF page tree is nested too deeply.")
        kids = _get(node, "/Kids")
        if kids is not None:
            stack.extend((_resolve(kid), depth + 1) for kid in reversed(list(kids)))
            continue
        seen += 1
        contents = _resolve(node.raw_get("/Contents")) if "/Contents" in node else None
        for stream in contents if isinstance(contents, generic.ArrayObject) else [contents]:
            stream = _resolve(stream)
            if isinstance(stream, generic.StreamObject):
                _ = stream.data  # decoded here, under this process's memory limit and pyHanko's decode limits
    if seen != pages:
        raise ValueError("The PDF page tree is inconsistent.")
    return pages


def examine(data: bytes, identity: Any, request: PlacementRequest | None = None) -> tuple[str, Any]:
    """("ok", {pages, prepared, repairs, placements, signature_page}) | ("encrypted" | "certified" |
    "invalid", detail) | ("placement", (path, message)). ``prepared`` is the file the signers sign
    when it is not the upload (repaired, or with a signature page), else None."""
    from adapters._pdf import placement, repair, trial

    if repair.header_offset(data) < 0:
        return "invalid", "The file does not start like a PDF."
    signed = repair.is_signed(data)
    reader, error = _read(data)
    if reader is not None and reader.encrypted:
        return "encrypted", "The PDF is encrypted; upload it without a password."
    if signed:
        if reader is None:
            return "invalid", (f"The PDF carries a signature but its structure cannot be read ({error}). "
                               "A signed file cannot be repaired without breaking that signature.")
        if _certified_no_changes(reader):
            return "certified", ("The PDF is certified by its author against any change, so no signature "
                                 "can be added to it. Ask the author for a copy that is not certified.")
    repairs = [] if signed else _faults(data, reader)
    base = data
    for attempt in range(2):
        if repairs and base is data:
            try:
                base = repair.normalise(data)
            except repair.EncryptedError:
                return "encrypted", "The PDF is encrypted; upload it without a password."
            except repair.RepairError as exc:
                return "invalid", f"The PDF could not be read or repaired ({exc}). {EXPORT_AGAIN}"
            reader, error = _read(base)
            if reader is None:
                return "invalid", f"The PDF could not be read even after repair ({error}). {EXPORT_AGAIN}"
            if reader.encrypted:
                return "encrypted", "The PDF is encrypted; upload it without a password."
        try:
            pages = _pages(reader)
        except (MemoryError, _OverBudget):
            raise
        except ValueError as exc:
            return "invalid", str(exc)
        except Exception as exc:
            # Not repaired on a guess: where pyHanko cannot read a page qpdf and poppler may each
            # reconstruct it differently (the corpus check caught a repair that changed a page's text).
            return "invalid", f"The PDF's pages could not be read ({_cause(exc)}). {EXPORT_AGAIN}"
        candidate, placements, with_page = base, (), False
        if request is not None:
            try:
                candidate, placements, with_page = _place(base, reader, request, signed=signed)
            except (MemoryError, _OverBudget):
                raise
            except placement.PlacementError as exc:
                return "placement", (exc.path, exc.message)
            except Exception as exc:
                return "invalid", f"The PDF's pages could not be rendered ({_cause(exc)}). {EXPORT_AGAIN}"
        try:
            trial.trial_sign(identity, candidate, placements)
        except (MemoryError, _OverBudget):
            raise
        except trial.CertificationForbids:
            return "certified", ("The PDF is certified by its author to allow filling in its form only; a new "
                                 "signature would break that certification. Ask the author for a copy that is "
                                 "not certified, or certified to allow annotations.")
        except Exception as exc:
            cause = _cause(exc)
            if not signed and base is data and attempt == 0:
                repairs = [f"a signature could not be added as it was ({cause})"]
                continue
            if signed:
                return "invalid", (f"The PDF is already signed, and another signature cannot be added to it "
                                   f"without breaking the earlier ones ({cause}). Ask the sender for the "
                                   "unsigned original.")
            return "invalid", f"The PDF cannot be signed ({cause}). {EXPORT_AGAIN}"
        return "ok", {"pages": pages + (1 if with_page else 0), "prepared": None if candidate is data else candidate,
                      "repairs": repairs, "placements": placements, "signature_page": with_page}
    raise AssertionError("unreachable")


def _place(data: bytes, reader: Any, request: PlacementRequest, *, signed: bool) -> tuple[bytes, tuple[Any, ...], bool]:
    """Every signer's place (:mod:`adapters._pdf.placement`); an unsigned file without room for them
    gets a signature page (:mod:`adapters._pdf.signature_page`)."""
    from adapters._pdf import placement, signature_page

    plan = placement.plan(data, reader, request, may_add_page=not signed)
    if not plan.signature_page:
        return data, tuple(plan.placements), False
    waiting = [i for i, p in enumerate(plan.placements) if p is None]
    with_page, added = signature_page.append_signature_page(data, request, waiting)
    placed = list(plan.placements)
    for i, p in zip(waiting, added, strict=True):
        placed[i] = p
    return with_page, tuple(placed), True


def _faults(data: bytes, reader: Any) -> list[str]:
    from adapters._pdf import repair

    try:
        return repair.faults(data, reader)
    except (MemoryError, _OverBudget):
        raise
    except Exception as exc:
        return [f"the document structure could not be read ({_cause(exc)})"]


def _on_sigxcpu(signum: int, frame: Any) -> None:
    raise _OverBudget


def _cpu_used() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _serve(
    conn: Connection, memory_bytes: int, cpu_seconds: int, parent: int, logs: WorkerLogging | None = None
) -> None:
    """A worker process: one document at a time, each with its own CPU budget. It logs as the
    gateway does (``logs``); the PDF libraries only when they are about to fail."""
    from adapters._pdf import asn1_fix
    from adapters._pdf.trial import TrialIdentity

    name_process("esign-inspect")
    watch_parent(parent)
    if logs is not None:
        logs.apply(process="esign-inspect")
    asn1_fix.install()
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    signal.signal(signal.SIGXCPU, _on_sigxcpu)
    for noisy in ("pyhanko", "pyhanko_certvalidator", "fontTools", "pikepdf"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    identity = TrialIdentity.create()
    hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
    conn.send(("ready", None))
    while True:
        try:
            data = conn.recv_bytes()
            request = conn.recv()
        except (EOFError, OSError):
            return
        finish = False
        resource.setrlimit(resource.RLIMIT_CPU, (int(_cpu_used()) + cpu_seconds + 1, hard))
        try:
            verdict = examine(data, identity, request)
        except _OverBudget:
            verdict = ("invalid", f"The PDF needs more than {cpu_seconds} s of processing to read. {EXPORT_AGAIN}")
        except MemoryError:
            verdict, finish = ("invalid", "The PDF needs too much memory to read (a compressed bomb?)."), True
        except Exception as exc:  # a fault of ours or of a library: this file is refused, the worker goes on
            log.error("pdf_inspection_failed", error=_cause(exc))
            verdict, finish = ("invalid", f"The PDF could not be read ({_cause(exc)}). {EXPORT_AGAIN}"), True
        finally:
            resource.setrlimit(resource.RLIMIT_CPU, (resource.RLIM_INFINITY, hard))
        del data
        conn.send((*verdict, finish))
        if finish:  # the heap may be left fragmented after a MemoryError: start afresh
            return


# ------------------------------------------------------------------------------ in the gateway


@dataclass(eq=False)
class _Worker:
    process: Any
    conn: Connection
    jobs: int = 0
    healthy: bool = True


class ProcessPdfInspector:
    """The pool is not bound to an event loop: idle workers sit in a lock-guarded list, a waiting
    request holds a future of its own loop, and a replacement worker is started in a thread."""

    def __init__(
        self, *, workers: int = 2, memory_limit_bytes: int = 1 << 30, cpu_seconds: int = 20,
        timeout_seconds: float = 30.0, wait_seconds: float = 20.0, jobs_per_worker: int = 1000,
        start_timeout_seconds: float = 60.0,
    ) -> None:
        self.workers = workers
        self.memory_limit_bytes = memory_limit_bytes
        self.cpu_seconds = cpu_seconds
        self.timeout_seconds = timeout_seconds
        self.wait_seconds = wait_seconds
        self.jobs_per_worker = jobs_per_worker
        self.start_timeout_seconds = start_timeout_seconds
        self._lock = threading.Lock()
        self._free: collections.deque[_Worker] = collections.deque()
        self._all: set[_Worker] = set()
        self._waiters: collections.deque[asyncio.Future[_Worker]] = collections.deque()
        self._started = False
        self._closed = False
        self.replaced = 0
        """Workers replaced after a kill, a memory error or their job quota."""
        self.replacements: collections.Counter[str] = collections.Counter()
        """The same, by reason."""

    @property
    def pids(self) -> list[int]:
        """The process ids of the live workers (for /readyz and tests)."""
        with self._lock:
            return [w.process.pid for w in self._all if w.process.is_alive()]

    def health(self) -> InspectorHealth:
        return InspectorHealth(workers=self.workers, alive=len(self.pids), replaced=self.replaced)

    # -------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        if self._started:
            return
        self._started, self._closed = True, False
        workers = await asyncio.gather(*(asyncio.to_thread(self._spawn) for _ in range(self.workers)))
        for worker in workers:
            self._release(worker)

    async def close(self) -> None:
        with self._lock:
            self._closed, self._started = True, False
            workers, self._free, self._all = list(self._all), collections.deque(), set()
        for worker in workers:
            self._kill(worker)

    def _spawn(self) -> _Worker:
        """Start a worker process and wait until it is ready (blocking: run in a thread)."""
        ctx = multiprocessing.get_context("spawn")  # the gateway holds a loop and DB connections: never fork
        parent, child = ctx.Pipe(duplex=True)
        process = ctx.Process(target=_serve, name="esign-inspect", daemon=True,
                              args=(child, self.memory_limit_bytes, self.cpu_seconds, os.getpid(), worker_logging()))
        process.start()
        child.close()
        worker = _Worker(process, parent)
        if not parent.poll(self.start_timeout_seconds):
            self._kill(worker)
            raise RuntimeError("a PDF inspector process did not start")
        parent.recv()
        with self._lock:
            self._all.add(worker)
        return worker

    def _respawn(self) -> None:
        """Thread body: start a replacement, retrying (with the cause logged) until it runs."""
        while not self._closed:
            try:
                self._release(self._spawn())
                return
            except (OSError, EOFError, RuntimeError) as exc:
                log.error("pdf_inspector_start_failed", error=str(exc))
                time.sleep(1.0)

    def _replace(self, worker: _Worker, reason: str) -> None:
        self._kill(worker)
        with self._lock:
            self._all.discard(worker)
            self.replaced += 1
            self.replacements[reason] += 1
        log.info("pdf_inspector_replaced", reason=reason)
        threading.Thread(target=self._respawn, name="esign-inspect-respawn", daemon=True).start()

    @staticmethod
    def _kill(worker: _Worker) -> None:
        worker.healthy = False
        with contextlib.suppress(Exception):
            worker.process.kill()
            worker.process.join(timeout=5)
        with contextlib.suppress(Exception):
            worker.conn.close()

    # -------------------------------------------------------------- the free list
    def _release(self, worker: _Worker) -> None:
        """Give a worker back (from any thread): straight to the oldest waiting request, if any."""
        with self._lock:
            closed = self._closed
            if not closed:
                while self._waiters:
                    waiter = self._waiters.popleft()
                    if not waiter.done():
                        waiter.get_loop().call_soon_threadsafe(self._hand, waiter, worker)
                        return
                self._free.append(worker)
        if closed:
            self._kill(worker)

    def _hand(self, waiter: asyncio.Future[_Worker], worker: _Worker) -> None:
        """On the waiter's loop: it takes the worker, or — if it gave up meanwhile — the next one does."""
        if waiter.done():
            self._release(worker)
        else:
            waiter.set_result(worker)

    async def _acquire(self) -> _Worker:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._free:
                return self._free.popleft()
            waiter: asyncio.Future[_Worker] = loop.create_future()
            self._waiters.append(waiter)
        try:
            return await asyncio.wait_for(waiter, timeout=self.wait_seconds)
        except TimeoutError:
            raise InspectorBusyError(retry_after=max(1, int(self.wait_seconds // 4))) from None
        finally:
            with self._lock, contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    # -------------------------------------------------------------- one inspection
    def _call(self, worker: _Worker, data: bytes, request: PlacementRequest | None) -> tuple[str, Any] | None:
        """Send one document and wait for its verdict (blocking: run in a thread). None: the worker
        was already dead before it got the document (the document is not to blame)."""
        worker.jobs += 1
        try:
            worker.conn.send_bytes(data)
            worker.conn.send(request)
        except OSError:
            worker.healthy = False
            return None
        try:
            if not worker.conn.poll(self.timeout_seconds):
                worker.healthy = False
                return "invalid", f"The PDF took more than {self.timeout_seconds:.0f} s to read. {EXPORT_AGAIN}"
            kind, value, finishing = worker.conn.recv()
        except (EOFError, OSError):
            worker.healthy = False  # killed by a limit (memory, CPU) in C code
            return "invalid", "The PDF could not be read within the resource limits."
        if finishing:
            worker.healthy = False
        return kind, value

    async def inspect(self, data: bytes, placement: PlacementRequest | None = None) -> PdfInfo:
        if not self._started:
            await self.start()
        verdict: tuple[str, Any] | None = None
        while verdict is None:
            worker = await self._acquire()
            if not worker.process.is_alive():  # died while idle (e.g. the OOM killer): not this file's fault
                self._replace(worker, "died while idle")
                continue
            done = False
            try:
                verdict = await asyncio.to_thread(self._call, worker, data, placement)
                done = True
            finally:
                if not done:  # cancelled mid-call: the worker's state is unknown
                    worker.healthy = False
                if not worker.healthy or not worker.process.is_alive():
                    self._replace(worker, "killed" if verdict is not None else "died while idle")
                elif worker.jobs >= self.jobs_per_worker:
                    self._replace(worker, "job quota")
                else:
                    self._release(worker)
        kind, value = verdict
        if kind == "ok":
            return PdfInfo(pages=int(value["pages"]), prepared=value["prepared"], repairs=tuple(value["repairs"]),
                           placements=tuple(value["placements"]), signature_page=bool(value["signature_page"]))
        if kind == "placement":
            path, message = value
            raise ValidationFailedError(errors=[{"field": str(path), "message": str(message)}])
        if kind == "encrypted":
            raise PdfEncryptedError(str(value))
        if kind == "certified":
            raise PdfCertifiedError(str(value))
        raise PdfInvalidError(str(value))


