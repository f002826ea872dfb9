"""PdfiumPageRenderer: the signer page's document images, made by pdfium in worker processes and
cached on disk by document version.

**Where the work runs.** In a :class:`~adapters._pool.RebuildingPool` of ``workers`` spawned
processes (``esign-pages``), each with an address-space limit and a CPU budget per call
(:mod:`adapters._pdf.page_images`); never on the event loop. Requests beyond the workers wait in
the pool's queue, so at most ``workers`` pages render at once per web process.

**The cache** is content-addressed: ``<cache_dir>/<sha[:2]>/<sha>/sizes.json`` and
``<page>-<width>.png``, where ``sha`` is the SHA-256 of the document version (a signature makes a
new version, so a page shows every stamp made so far). Files are written atomically; two
processes rendering the same page at once both write the same bytes. :meth:`forget` removes a
version's folder — :class:`PagesForgottenWithBlobs` calls it whenever the document store deletes
the blob (retention purge, garbage collection), so no image outlives its document.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path

from adapters._files import write_atomic
from adapters._pdf import page_images
from adapters._pool import RebuildingPool
from esign_gateway.ports import PAGE_IMAGE_WIDTHS, ComponentHealth, DocumentStore, PageSize

__all__ = ["PagesForgottenWithBlobs", "PdfiumPageRenderer"]

_SHA = re.compile(r"^[0-9a-f]{64}$")
Loader = Callable[[], Awaitable[bytes]]


class PdfiumPageRenderer:
    def __init__(self, cache_dir: Path, *, workers: int = 1, memory_limit_bytes: int = 1024 * 1024 * 1024,
                 cpu_seconds: int = 20, pool: RebuildingPool | None = None) -> None:
        self.cache_dir = cache_dir
        self.pool = pool or RebuildingPool(
            "page_pool", process_name="esign-pages", max_workers=workers,
            initializer=page_images.worker_init, initargs=(memory_limit_bytes, cpu_seconds),
        )
        self.renders = 0
        """Pages rendered by the workers since start (cache misses)."""

    def _dir(self, sha256: str) -> Path:
        if not _SHA.fullmatch(sha256):
            raise ValueError("not a document version")
        return self.cache_dir / sha256[:2] / sha256

    async def start(self) -> None:
        await self.pool.start()

    async def close(self) -> None:
        await self.pool.close()

    async def health(self) -> ComponentHealth:
        return await self.pool.health()

    async def sizes(self, sha256: str, load: Loader) -> list[PageSize]:
        path = self._dir(sha256) / "sizes.json"
        cached = await asyncio.to_thread(_read, path)
        if cached is None:
            found = await self.pool.run(page_images.page_sizes, await load())
            cached = json.dumps(found).encode()
            await asyncio.to_thread(write_atomic, path, cached)
        return [PageSize(float(w), float(h)) for w, h in json.loads(cached)]

    async def render(self, sha256: str, page: int, width: int, load: Loader) -> bytes:
        if width not in PAGE_IMAGE_WIDTHS:
            raise ValueError(f"width must be one of {PAGE_IMAGE_WIDTHS}")
        if page < 0:
            raise IndexError(page)
        path = self._dir(sha256) / f"{page}-{width}.png"
        cached = await asyncio.to_thread(_read, path)
        if cached is not None:
            return cached
        if page >= len(await self.sizes(sha256, load)):
            raise IndexError(page)
        png = await self.pool.run(page_images.render_page, await load(), page, width)
        self.renders += 1
        await asyncio.to_thread(write_atomic, path, png)
        return png

    async def forget(self, sha256: str) -> None:
        await asyncio.to_thread(shutil.rmtree, self._dir(sha256), True)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


class PagesForgottenWithBlobs:
    """A :class:`DocumentStore` whose ``delete`` also drops the page images of that version."""

    def __init__(self, store: DocumentStore, pages: PdfiumPageRenderer) -> None:
        self.inner = store
        self.pages = pages

    async def put(self, data: bytes) -> str:
        return await self.inner.put(data)

    async def get(self, key: str) -> bytes:
        return await self.inner.get(key)

    async def delete(self, key: str) -> None:
        await self.inner.delete(key)
        await self.pages.forget(key)

    async def exists(self, key: str) -> bool:
        return await self.inner.exists(key)

    async def written_before(self, moment: datetime) -> list[str]:
        return await self.inner.written_before(moment)
