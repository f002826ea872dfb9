"""``/readyz`` reports the timestamp authority (the ``tsa`` component) from a cached probe.

A real RFC 3161 TSA is served over HTTP on a local port (the development TSA's routes, as in
test_configuration.py); it is stopped and started again between probes. The probe is called
directly and the clock is the test's: nothing waits for time. ``/readyz`` itself never reaches
the TSA (the server counts its requests).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from asn1crypto import tsp

from adapters.providers.local.dev_pki import DevPki, ensure_dev_pki
from adapters.providers.local.tsa import DevTimeStamper, tsa_routes
from adapters.providers.local.tsa_probe import TsaProbe
from esign_gateway.config import Settings
from esign_gateway.container import Container
from tests.conftest import _free_port
from tests.fakes import FrozenClock


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    return ensure_dev_pki(tmp_path_factory.mktemp("tsa-pki"))


class TsaServer:
    """The development TSA's routes on a fixed local port, stoppable and startable again."""

    def __init__(self, pki: DevPki) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/tsa"
        self.requests = 0
        self.answer: Callable[[web.Request], Awaitable[web.StreamResponse]] | None = None
        """When set, answers instead of the real TSA (a TSA that misbehaves)."""
        self.stamper = DevTimeStamper.from_files(pki.tsa_cert_path, pki.tsa_key_path)
        self._server: TestServer | None = None

    async def start(self) -> None:
        @web.middleware
        async def count(request: web.Request, handler: Any) -> web.StreamResponse:
            self.requests += 1
            return await (self.answer or handler)(request)

        app = web.Application(middlewares=[count])
        app.router.add_routes(tsa_routes(self.stamper))
        self._server = TestServer(app, host="127.0.0.1", port=self.port)
        await self._server.start_server()

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.close()
            self._server = None


@pytest.fixture
async def tsa(pki: DevPki) -> AsyncIterator[TsaServer]:
    server = TsaServer(pki)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def settings(tmp_path: Path, db_url: str, tsa: TsaServer) -> Settings:
    """The suite's settings with a TSA reached over HTTP (``ESIGN_TSA_URL``)."""
    return Settings(
        env="test", data_dir=tmp_path / "data", database_url=db_url, public_url="https://sign.example.test",
        embedded_worker=False, log_json=False, tsa_url=tsa.url,
    )


def _probe(container: Container) -> TsaProbe:
    (probe,) = [getattr(c, "__self__", None) for c in container.health_checks
                if isinstance(getattr(c, "__self__", None), TsaProbe)]
    assert isinstance(probe, TsaProbe)
    return probe


async def _tsa_component(api: Any) -> tuple[int, dict[str, Any]]:
    resp = await api.get("/readyz")
    body = await resp.json()
    (tsa,) = [c for c in body["components"] if c["name"] == "tsa"]
    return resp.status, tsa


async def test_readyz_says_the_tsa_is_down_after_the_next_probe_and_ready_again_once_it_answers(
    api: Any, container: Container, tsa: TsaServer, clock: FrozenClock
) -> None:
    status, part = await _tsa_component(api)  # the probe at start asked it
    assert status == 200 and part["ready"] is True
    assert part["detail"].startswith(f"TSA {tsa.url} answered in ") and "at 2026-11-23 09:00 UTC" in part["detail"]
    asked = tsa.requests

    await tsa.stop()
    status, part = await _tsa_component(api)
    assert status == 200 and part["ready"] is True  # cached: /readyz did not go to the TSA

    clock.advance(minutes=5)
    await _probe(container).probe()
    resp = await api.get("/readyz")
    assert resp.status == 503
    body = await resp.json()
    assert body["status"] == "not_ready"
    (part,) = [c for c in body["components"] if c["name"] == "tsa"]
    assert part == {"name": "tsa", "ready": False,
                    "detail": f"TSA {tsa.url} unreachable since 2026-11-23 09:05 UTC: ConnectionRefusedError"}
    assert {c["name"] for c in body["components"] if not c["ready"]} == {"tsa"}

    clock.advance(minutes=1)
    await _probe(container).probe()  # still down: the outage began at the first failed probe
    assert (await _tsa_component(api))[1]["detail"].endswith("since 2026-11-23 09:05 UTC: ConnectionRefusedError")

    await tsa.start()
    clock.advance(seconds=30)
    await _probe(container).probe()
    status, part = await _tsa_component(api)
    assert status == 200 and part["ready"] is True and "at 2026-11-23 09:06 UTC" in part["detail"]
    assert tsa.requests == asked + 1  # one probe reached it; no /readyz ever did


def _rejection(_: TsaServer) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def answer(_: web.Request) -> web.Response:  # RFC 3161: a refusal carries no token
        status = tsp.PKIStatusInfo({"status": "rejection", "status_string": ["busy"]}).dump()
        return web.Response(body=b"\x30" + bytes([len(status)]) + status, content_type="application/timestamp-reply")
    return answer


def _server_error(_: TsaServer) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def answer(_: web.Request) -> web.Response:
        return web.Response(status=500, text="TSA backend down")
    return answer


def _someone_elses_token(server: TsaServer) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A real token from the real TSA key, but for another digest (a replayed or cached answer)."""
    async def answer(request: web.Request) -> web.Response:
        other = tsp.TimeStampReq.load(await request.read())
        forged = tsp.TimeStampReq({
            "version": 1, "message_imprint": tsp.MessageImprint({
                "hash_algorithm": other["message_imprint"]["hash_algorithm"], "hashed_message": b"\x00" * 32}),
            "nonce": other["nonce"].native, "cert_req": True,
        })
        reply = await server.stamper.async_request_tsa_response(forged)
        return web.Response(body=reply.dump(), content_type="application/timestamp-reply")
    return answer


@pytest.mark.parametrize(("answer", "cause"), [
    (_rejection, "answered 'rejection' instead of a timestamp token"),
    (_server_error, "answered HTTP 500"),
    (_someone_elses_token, "answered with a token for another request"),
])
async def test_a_tsa_that_answers_without_a_token_for_our_request_is_not_ready(
    api: Any, container: Container, tsa: TsaServer, clock: FrozenClock,
    answer: Callable[[TsaServer], Callable[[web.Request], Awaitable[web.Response]]], cause: str,
) -> None:
    tsa.answer = answer(tsa)
    await _probe(container).probe()
    resp = await api.get("/readyz")
    assert resp.status == 503
    (part,) = [c for c in (await resp.json())["components"] if c["name"] == "tsa"]
    assert part["ready"] is False and part["detail"].endswith(f"since 2026-11-23 09:00 UTC: {cause}")


async def test_without_a_tsa_url_the_built_in_development_tsa_is_ready(
    aiohttp_client: Callable[..., Any], tmp_path: Path, db_url: str, clock: FrozenClock, shared_parts: dict[str, Any],
) -> None:
    from esign_gateway.bootstrap import build_container, close_db, init_db
    from esign_gateway.http.app import create_app
    from tests.conftest import _Shared

    settings = Settings(env="test", data_dir=tmp_path / "dev", database_url=db_url, embedded_worker=False,
                        log_json=False)
    container = build_container(settings, clock=clock, providers={"local": _Shared(shared_parts["provider"])},
                                inspector=_Shared(shared_parts["inspector"]))
    await init_db(settings)
    try:
        api = await aiohttp_client(create_app(container))
        _, part = await _tsa_component(api)
        assert part["ready"] is True and part["detail"].startswith("built-in development TSA")
    finally:
        await close_db()
