"""ProcessPdfInspector: parse untrusted uploads in a worker process with memory and time limits.

pyHanko inflates streams without a cap, so a small "PDF bomb" can ask for gigabytes. Parsing
happens in a separate process whose address space is capped (``RLIMIT_AS``) and whose CPU time
is capped (``RLIMIT_CPU``); every page's content is decoded there, so a bomb fails inside the
worker (MemoryError) instead of in the gateway. A parse that runs past the timeout kills the
pool, which is then rebuilt. Results cross the process boundary as plain tuples.
"""

from __future__ import annotations

import asyncio
import io
import multiprocessing
import resource
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from adapters._process import name_process
from esign_gateway.errors import PdfEncryptedError, PdfInvalidError
from esign_gateway.ports import PdfInfo

__all__ = ["ProcessPdfInspector", "inspect_bytes"]

MAX_PAGES = 5000


def _limit(memory_bytes: int, cpu_seconds: int) -> None:
    name_process("esign-inspect")
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))


def inspect_bytes(data: bytes) -> tuple[str, int | str]:
    """("ok", pages) | ("encrypted", detail) | ("invalid", detail). Never raises for bad input."""
    if not data.lstrip()[:5].startswith(b"%PDF-") or b"%PDF-" not in data[:1024]:
        return "invalid", "The file does not start like a PDF."
    try:
        from pyhanko.pdf_utils.reader import PdfFileReader

        reader = PdfFileReader(io.BytesIO(data), strict=False)
        if reader.encrypted:
            return "encrypted", "The PDF is encrypted; upload it without a password."
        pages = int(reader.root["/Pages"]["/Count"])
        if not 1 <= pages <= MAX_PAGES:
            return "invalid", f"The PDF has {pages} pages; 1 to {MAX_PAGES} are accepted."
        seen = 0
        for page in _pages(reader.root["/Pages"], depth=0):
            seen += 1
            contents = page.get("/Contents")
            if contents is None:
                continue
            streams = contents if isinstance(contents, list) else [contents]
            for ref in streams:
                stream = ref.get_object() if hasattr(ref, "get_object") else ref
                _ = stream.data  # decoding happens here, under the memory limit
        if seen != pages:
            return "invalid", "The PDF page tree is inconsistent."
        return "ok", pages
    except MemoryError:
        return "invalid", "The PDF needs too much memory to read (a compressed bomb?)."
    except RecursionError:
        return "invalid", "The PDF is nested too deeply."
    except Exception as exc:  # pyHanko raises PdfReadError, KeyError, TypeError, AssertionError…
        return "invalid", f"The PDF could not be read ({type(exc).__name__})."


def _pages(node: Any, depth: int) -> Iterator[Any]:
    if depth > 64:
        raise RecursionError("page tree too deep")
    kids = node.get("/Kids")
    if kids is None:
        yield node
        return
    for kid in kids:
        yield from _pages(kid.get_object() if hasattr(kid, "get_object") else kid, depth + 1)


class ProcessPdfInspector:
    def __init__(
        self, *, max_workers: int = 1, memory_limit_bytes: int = 1 << 30, timeout_seconds: float = 20.0
    ) -> None:
        self.max_workers = max_workers
        self.memory_limit_bytes = memory_limit_bytes
        self.timeout_seconds = timeout_seconds
        self._pool: ProcessPoolExecutor | None = None

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.max_workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=_limit, initargs=(self.memory_limit_bytes, int(self.timeout_seconds) + 1),
        )

    async def start(self) -> None:
        if self._pool is None:
            self._pool = self._new_pool()

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _kill(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            for proc in list(getattr(pool, "_processes", {}).values()):
                proc.kill()
            pool.shutdown(wait=False, cancel_futures=True)

    async def inspect(self, data: bytes) -> PdfInfo:
        if self._pool is None:
            await self.start()
        assert self._pool is not None
        loop = asyncio.get_running_loop()
        try:
            verdict, value = await asyncio.wait_for(
                loop.run_in_executor(self._pool, inspect_bytes, data), timeout=self.timeout_seconds
            )
        except TimeoutError:
            self._kill()
            raise PdfInvalidError("The PDF took too long to read.") from None
        except BrokenProcessPool:
            self._kill()  # the worker died (killed by a limit): the next call gets a fresh pool
            raise PdfInvalidError("The PDF could not be read within the resource limits.") from None
        if verdict == "ok":
            return PdfInfo(pages=int(value))
        if verdict == "encrypted":
            raise PdfEncryptedError(str(value))
        raise PdfInvalidError(str(value))
