"""Configuration checks and the signing self-test at start.

Every problem in the configuration is reported at once, in plain words naming the variable, and
production refuses development shortcuts (outbox transports, no TSA). At start the local provider
signs a probe PDF in its worker pool and validates it: in ``prod`` a failure stops the start, in
``dev``/``test`` ``/readyz`` reports ``signing`` not ready with the cause.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from adapters._pdf.certs import as_leaf
from adapters.providers.local.dev_pki import DevPki, ensure_dev_pki
from adapters.providers.local.tsa import DevTimeStamper, tsa_routes
from esign_gateway.bootstrap import build_container, close_db, init_db
from esign_gateway.config import ConfigurationError, Settings
from esign_gateway.container import Container
from esign_gateway.http.app import create_app
from esign_gateway.secretbox import SecretBox
from tests.conftest import _free_port

EXE = [sys.executable, "-m", "esign_gateway"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    """A CA, a seal and a TSA: here they stand for a production CA's files."""
    return ensure_dev_pki(tmp_path_factory.mktemp("prod-pki"))


@pytest.fixture
async def tsa(pki: DevPki) -> AsyncIterator[str]:
    """A real RFC 3161 TSA over HTTP on a local port (the dev TSA's routes)."""
    app = web.Application()
    app.router.add_routes(tsa_routes(DevTimeStamper.from_files(pki.tsa_cert_path, pki.tsa_key_path)))
    server = TestServer(app, host="127.0.0.1", port=_free_port())
    await server.start_server()
    yield f"http://127.0.0.1:{server.port}/tsa"
    await server.close()


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    target = tmp_path / "esign.sqlite3"
    shutil.copy(sqlite_template, target)
    return f"sqlite://{target}"


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A seal certificate signed by its own key: it chains to no configured root."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Self-made seal")])
    now = datetime.now(UTC) - timedelta(minutes=5)
    cert = as_leaf(
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + timedelta(days=30)),
        tsa=False,
    ).sign(key, hashes.SHA256())
    key_path, cert_path = directory / "self.key", directory / "self.pem"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def _other_key(directory: Path) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = directory / "other.key"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


def _prod(tmp_path: Path, pki: DevPki, db: str, tsa_url: str, **overrides: Any) -> Settings:
    """A complete production configuration (the PKI's files as the production identity)."""
    values: dict[str, Any] = {
        "env": "prod", "data_dir": tmp_path / "data", "database_url": db, "public_url": "https://sign.example.test",
        "secret_key": SecretBox.generate_key().decode(), "smtp_url": "smtp://127.0.0.1:2525",
        "sms_url": "https://sms.example.test/send", "signing_key_path": pki.signer_key_path,
        "signing_cert_path": pki.signer_cert_path, "signing_chain_paths": [pki.ca_cert_path],
        "signing_trust_root_paths": [pki.ca_cert_path], "tsa_url": tsa_url, "signing_workers": 1,
        "embedded_worker": False, "log_json": False,
    }
    values.update(overrides)
    return Settings(**values)


def _env(settings: Settings) -> dict[str, str]:
    """``settings`` as the ``ESIGN_*`` environment of a subprocess."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESIGN_")}
    for name, value in settings.model_dump(exclude_unset=True).items():
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        if isinstance(value, list):
            value = "[" + ",".join(f'"{v}"' for v in value) + "]"
        env[f"ESIGN_{name.upper()}"] = str(value)
    return env


@dataclass
class Started:
    container: Container
    error: ConfigurationError | None


async def _start(settings: Settings, shared_parts: dict[str, Any]) -> Started:
    """What ``esign-gateway worker`` does at start: build the container (with the real local provider),
    open the database, run every startup hook. The upload inspector is the session's (not under test)."""
    from tests.conftest import _Shared

    container = build_container(settings, inspector=_Shared(shared_parts["inspector"]))
    await init_db(settings)
    try:
        for start in container.startup:
            await start()
    except ConfigurationError as err:
        return Started(container, err)
    return Started(container, None)


async def _stop(started: Started) -> None:
    for close in reversed(started.container.shutdown):
        await close()
    await close_db()


async def _signing_health(container: Container) -> tuple[bool, str]:
    [signing] = [h for h in [await check() for check in container.health_checks] if h.name == "signing"]
    return signing.ready, signing.detail


# ----------------------------------------------------------------------------- checks without signing


def test_prod_refuses_the_outbox_transports_naming_both_variables(tmp_path: Path, pki: DevPki) -> None:
    settings = _prod(tmp_path, pki, "sqlite://:memory:", "https://tsa.example.test/", smtp_url=None, sms_url=None)
    with pytest.raises(ConfigurationError) as caught:
        build_container(settings)
    text = "\n".join(caught.value.problems)
    assert "ESIGN_SMTP_URL" in text and "ESIGN_SMS_URL" in text
    assert not (settings.outbox_dir / "sms").exists() and not (settings.outbox_dir / "email").exists()


def test_dev_still_uses_the_outbox_transports(tmp_path: Path) -> None:
    settings = Settings(env="dev", data_dir=tmp_path / "data", log_json=False)
    container = build_container(settings)
    assert type(container.email).__name__ == "OutboxEmailSender"
    assert type(container.sms).__name__ == "OutboxSmsSender"


def test_unreadable_signing_files_are_named(tmp_path: Path, pki: DevPki) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    settings = _prod(tmp_path, pki, "sqlite://:memory:", "https://tsa.example.test/",
                     signing_key_path=tmp_path / "missing.key", signing_cert_path=garbage,
                     signing_trust_root_paths=[tmp_path / "missing-root.pem"])
    with pytest.raises(ConfigurationError) as caught:
        build_container(settings)
    problems = caught.value.problems
    assert any(p.startswith("ESIGN_SIGNING_KEY_PATH") and "missing.key" in p for p in problems), problems
    assert any(p.startswith("ESIGN_SIGNING_CERT_PATH") for p in problems), problems
    assert any(p.startswith("ESIGN_SIGNING_TRUST_ROOT_PATHS") for p in problems), problems


def test_unreadable_values_become_plain_lines_and_the_rest_is_still_read(monkeypatch: pytest.MonkeyPatch) -> None:
    from esign_gateway.config import read_settings

    for name in [k for k in os.environ if k.startswith("ESIGN_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("ESIGN_ENV", "production")
    monkeypatch.setenv("ESIGN_SIGNING_CHAIN_PATHS", "/etc/esign/ca.pem")  # not a JSON list
    monkeypatch.setenv("ESIGN_LOG_JSON", "maybe")
    monkeypatch.setenv("ESIGN_HOST", "0.0.0.0")  # a good value: kept
    settings, problems = read_settings()
    assert sorted(problems) == sorted([
        'ESIGN_SIGNING_CHAIN_PATHS: must be a JSON list, e.g. ["/etc/esign/ca.pem"]',
        "ESIGN_ENV: must be one of 'dev', 'test' or 'prod', got 'production'",
        "ESIGN_LOG_JSON: must be true or false, got 'maybe'",
    ]), problems
    assert settings.host == "0.0.0.0"


def test_a_secret_value_is_never_echoed(tmp_path: Path, pki: DevPki) -> None:
    settings = _prod(tmp_path, pki, "sqlite://:memory:", "https://tsa.example.test/",
                     smtp_url="http://mailer:hunter2@mail.example.test", secret_key="hunter3")
    with pytest.raises(ConfigurationError) as caught:
        build_container(settings)
    text = "\n".join(caught.value.problems)
    assert "ESIGN_SMTP_URL" in text and "ESIGN_SECRET_KEY" in text
    assert "hunter2" not in text and "hunter3" not in text


def test_serve_reports_every_problem_at_once_in_plain_words(tmp_path: Path) -> None:
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith("ESIGN_")}
    env.update({
        "ESIGN_ENV": "prod", "ESIGN_DATA_DIR": str(tmp_path / "data"), "ESIGN_PORT": "abc",
        "ESIGN_PROVIDER": "digisign", "ESIGN_SIGNING_KEY_PATH": str(tmp_path / "seal.key"),
        "ESIGN_MAX_DOCUMENT_BYTES": "lots", "ESIGN_LOG_JSON": "false",
    })
    started = time.monotonic()
    proc = subprocess.run([*EXE, "serve"], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    for name in ("ESIGN_PORT", "ESIGN_MAX_DOCUMENT_BYTES", "ESIGN_SECRET_KEY", "ESIGN_SMTP_URL", "ESIGN_SMS_URL",
                 "ESIGN_SIGNING_CERT_PATH", "ESIGN_TSA_URL", "ESIGN_DIGISIGN_BASE_URL", "ESIGN_PUBLIC_URL"):
        assert name in proc.stderr, (name, proc.stderr)
    assert "'abc'" in proc.stderr  # the value that was refused, quoted
    assert "listening" not in proc.stdout
    assert time.monotonic() - started < 30


# ----------------------------------------------------------------------------- the signing self-test


async def test_a_good_production_configuration_signs_its_probe(
    tmp_path: Path, pki: DevPki, tsa: str, sqlite_url: str, shared_parts: dict[str, Any]
) -> None:
    started = await _start(_prod(tmp_path, pki, sqlite_url, tsa), shared_parts)
    try:
        assert started.error is None
        ready, detail = await _signing_health(started.container)
        assert ready, detail
    finally:
        await _stop(started)


async def test_prod_start_fails_when_the_key_does_not_match_the_certificate(
    tmp_path: Path, pki: DevPki, tsa: str, sqlite_url: str, shared_parts: dict[str, Any]
) -> None:
    settings = _prod(tmp_path, pki, sqlite_url, tsa, signing_key_path=_other_key(tmp_path))
    started = await _start(settings, shared_parts)
    try:
        assert started.error is not None
        text = "\n".join(started.error.problems)
        assert "ESIGN_SIGNING_KEY_PATH" in text and "does not match" in text, text
        ready, detail = await _signing_health(started.container)
        assert not ready and "does not match" in detail
    finally:
        await _stop(started)


async def test_prod_start_fails_when_the_tsa_does_not_answer(
    tmp_path: Path, pki: DevPki, sqlite_url: str, shared_parts: dict[str, Any]
) -> None:
    closed = f"http://127.0.0.1:{_free_port()}/tsa"
    started = await _start(_prod(tmp_path, pki, sqlite_url, closed), shared_parts)
    try:
        assert started.error is not None
        text = "\n".join(started.error.problems)
        assert "ESIGN_TSA_URL" in text and closed in text, text
        ready, detail = await _signing_health(started.container)
        assert not ready and "ESIGN_TSA_URL" in detail
    finally:
        await _stop(started)


async def test_prod_serve_exits_when_the_signing_chain_does_not_build(
    tmp_path: Path, pki: DevPki, tsa: str, sqlite_url: str
) -> None:
    key, cert = _self_signed(tmp_path)
    settings = _prod(tmp_path, pki, sqlite_url, tsa, signing_key_path=key, signing_cert_path=cert,
                     signing_chain_paths=[], port=_free_port())
    proc = await asyncio.create_subprocess_exec(
        *EXE, "serve", "--no-worker", env=_env(settings),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=90)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    stderr = err.decode()
    assert proc.returncode == 2, stderr
    assert "Traceback" not in stderr
    assert "signing" in stderr and "ESIGN_SIGNING_TRUST_ROOT_PATHS" in stderr, stderr
    assert b"listening" not in out


async def test_test_mode_serves_but_readyz_says_signing_is_not_ready(
    aiohttp_client: Callable[..., Any], tmp_path: Path, pki: DevPki, sqlite_url: str, shared_parts: dict[str, Any]
) -> None:
    from tests.conftest import _Shared

    key, cert = _self_signed(tmp_path)
    settings = Settings(env="test", data_dir=tmp_path / "data", database_url=sqlite_url, embedded_worker=False,
                        log_json=False, signing_key_path=key, signing_cert_path=cert,
                        signing_trust_root_paths=[pki.ca_cert_path], signing_workers=1)
    container = build_container(settings, inspector=_Shared(shared_parts["inspector"]))
    await init_db(settings)
    try:
        client = await aiohttp_client(create_app(container))
        resp = await client.get("/readyz")
        body = await resp.json()
        assert resp.status == 503, body
        [signing] = [c for c in body["components"] if c["name"] == "signing"]
        assert not signing["ready"] and "trust root" in signing["detail"], signing
    finally:
        await close_db()


async def test_a_good_dev_configuration_is_ready_to_sign(
    aiohttp_client: Callable[..., Any], tmp_path: Path, sqlite_url: str, shared_parts: dict[str, Any]
) -> None:
    from tests.conftest import _Shared

    settings = Settings(env="dev", data_dir=tmp_path / "data", database_url=sqlite_url, embedded_worker=False,
                        log_json=False, signing_workers=1)
    container = build_container(settings, inspector=_Shared(shared_parts["inspector"]))
    await init_db(settings)
    try:
        client = await aiohttp_client(create_app(container))
        resp = await client.get("/readyz")
        body = await resp.json()
        assert resp.status == 200, body
        [signing] = [c for c in body["components"] if c["name"] == "signing"]
        assert signing["ready"], signing
    finally:
        await close_db()
