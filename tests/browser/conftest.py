"""Debian's Chromium driven by Playwright (never a browser download), one browser for the session.

The browser process starts once (``--remote-debugging-port`` on loopback); each test connects to
it over CDP in its own event loop and gets fresh contexts (no cookies or cache shared between
tests). axe-core comes from npm into ``tests/browser/node_modules`` (``.ci/ensure-axe``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

from tests.conftest import _free_port

CHROMIUM = "/usr/bin/chromium"
AXE = Path(__file__).parent / "node_modules" / "axe-core" / "axe.min.js"


@pytest.fixture(scope="session")
def chromium_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One headless Chromium for the whole session: its CDP address on 127.0.0.1."""
    assert os.access(CHROMIUM, os.X_OK), "install Debian's chromium (.ci/ensure-chromium)"
    port = _free_port()
    profile = tmp_path_factory.mktemp("chromium-profile")
    process = subprocess.Popen(
        [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--remote-debugging-port={port}", "--remote-debugging-address=127.0.0.1", f"--user-data-dir={profile}",
         "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{url}/json/version", timeout=1) as resp:
                json.load(resp)
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("chromium did not start") from None
            time.sleep(0.1)
    yield url
    process.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(10)
    if process.poll() is None:
        process.kill()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
async def browser(chromium_endpoint: str) -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        b = await p.chromium.connect_over_cdp(chromium_endpoint)
        yield b
        for context in b.contexts[1:]:  # the first is the browser's default one
            await context.close()
        await b.close()  # the connection: the browser goes on for the next test


@pytest.fixture(scope="session")
def axe_source() -> str:
    assert AXE.exists(), "axe-core is missing: run .ci/ensure-axe (npm ci in tests/browser)"
    return AXE.read_text()
