"""The listening socket: a header-read deadline (slowloris), keep-alive and bodies unaffected, and
a malformed request that leaves no credential in the log. Real sockets, a real aiohttp app."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from esign_gateway.http.server import listen
from esign_gateway.logging import configure_logging

HEADER_SECONDS = 0.6  # the deadline under test, short so that the test is quick


async def _echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response({"bytes": len(body)})


@pytest.fixture
async def port(unused_tcp_port: int) -> AsyncIterator[int]:
    app = web.Application()
    app.router.add_get("/", lambda _: web.json_response({"ok": True}))
    app.router.add_post("/echo", _echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    server = await listen(runner, "127.0.0.1", unused_tcp_port, header_seconds=HEADER_SECONDS)
    yield unused_tcp_port
    server.close()
    await runner.cleanup()


async def _closed_after(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, dribble: bytes) -> float:
    """Send ``dribble`` a byte every 0.1 s until the server hangs up; how long that took."""
    start = time.monotonic()
    for byte in dribble:
        if reader.at_eof() or writer.is_closing():
            break
        try:
            writer.write(bytes([byte]))
            await writer.drain()
        except ConnectionError:
            break
        try:
            if await asyncio.wait_for(reader.read(1), 0.1) == b"":
                break
        except TimeoutError:
            continue
    return time.monotonic() - start


async def test_a_request_whose_headers_trickle_in_loses_its_connection_at_the_deadline(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    held = await _closed_after(reader, writer, b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200)
    assert HEADER_SECONDS <= held < HEADER_SECONDS + 2, held  # without the deadline: 20 s of dribble
    writer.close()


async def test_the_deadline_starts_again_for_the_next_request_on_a_kept_alive_connection(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    held = await _closed_after(reader, writer, b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200)
    assert held < HEADER_SECONDS + 2, held
    writer.close()


async def test_keep_alive_slow_bodies_and_idle_gaps_are_not_cut(port: int) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(3):  # one kept-alive connection, idle longer than the header deadline between requests
            async with http.get(f"http://127.0.0.1:{port}/") as resp:
                assert resp.status == 200
            await asyncio.sleep(HEADER_SECONDS * 1.5)  # the point: an idle gap on the connection

        async def slow_body() -> AsyncIterator[bytes]:
            for _ in range(4):
                yield b"x" * 1000
                await asyncio.sleep(HEADER_SECONDS / 2)  # the body takes longer than the header deadline

        async with http.post(f"http://127.0.0.1:{port}/echo", data=slow_body()) as resp:
            assert resp.status == 200 and await resp.json() == {"bytes": 4000}


async def test_a_malformed_request_leaves_one_line_and_no_credential_in_the_log(
    port: int, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    configure_logging("INFO", json=True)
    capsys.readouterr()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\nHost: x\nAuthorization: Bearer esk_live_9f8e7d6c5b4a3928\x01\r\n\r\n")
    await writer.drain()
    assert (await reader.read(100)).startswith(b"HTTP/1.0 400")
    writer.close()
    await asyncio.sleep(0)
    out = capsys.readouterr().out
    everything = out + "\n".join(r.getMessage() + str(r.exc_info) + str(r.exc_text) for r in caplog.records)
    assert "esk_live" not in everything and "9f8e7d6c5b4a3928" not in everything
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [e["event"] for e in lines] == ["http_request_malformed"]
    assert lines[0]["error"] == "BadStatusLine" and "Traceback" not in out
