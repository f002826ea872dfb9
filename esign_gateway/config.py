"""Settings from the environment (prefix ``ESIGN_``). The only reader of ``os.environ``.

``read_settings()`` is called once in ``cli.py`` and the result handed down; nothing below reads
the env. It never raises for a bad value: it returns the settings (a bad value replaced by its
default) and one plain line per value it refused, so that ``check_settings`` can still look at
everything else and every problem is reported at once (:class:`ConfigurationError`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import SecretStr, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from esign_gateway.domain.envelope import RETENTION_YEARS
from esign_gateway.domain.policy import UNSIGNED_RETENTION_DAYS

__all__ = ["ConfigurationError", "Settings", "check_settings", "check_signing_settings", "env_name", "read_settings"]

MB = 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ESIGN_", extra="ignore")

    env: Literal["dev", "test", "prod"] = "dev"
    """``dev`` enables the outbox page and development PKI; ``prod`` refuses dev shortcuts."""
    data_dir: Path = Path("./data")
    database_url: str | None = None
    """Default ``sqlite://<data_dir>/esign.sqlite3``; ``postgres://…`` in production."""
    database_pool_max: int = 10
    """PostgreSQL connections per process."""
    plans_file: Path | None = None
    """The plan catalogue (TOML); unset → the shipped ``esign_gateway/plans.toml``."""
    public_url: str = ""
    """Base of every link in e-mails; never taken from the request's Host. Unset: ``http://host:port``."""
    host: str = "127.0.0.1"
    port: int = 8080
    provider: Literal["local", "digisign"] = "local"
    """The default provider of new envelopes; a tenant may have its own (``tenant update --provider``)."""
    digisign_base_url: str | None = None
    """``https://api.digisign.org``; DigiSign's testing environment: ``https://api.digisign.digital.cz``."""
    digisign_access_key: SecretStr | None = None
    digisign_secret_key: SecretStr | None = None
    digisign_webhook_secrets: SecretStr | None = None
    """Comma-separated secrets of webhooks registered by hand (``register-webhooks`` stores its own)."""
    secret_key: SecretStr | None = None
    """Fernet key encrypting reusable secrets at rest; generated into ``data_dir`` in dev."""

    smtp_url: SecretStr | None = None
    """``smtp://user:pass@host:587?starttls=true`` or ``smtps://…``; unset → outbox files."""
    mail_from: str = "esign-gateway <noreply@esign.localhost>"
    operator_name: str = ""
    """Who operates the service: named in the footer of the signer's page and of every e-mail."""
    operator_contact: str = ""
    """The operator's contact (an e-mail address or a phone number), in the same footers."""
    privacy_url: str = ""
    """The privacy notice (https://…), linked from the same footers."""
    dkim_domain: str | None = None
    dkim_selector: str | None = None
    dkim_key_path: Path | None = None
    """With all three set, outgoing mail is DKIM-signed (publish the public key at ``<selector>._domainkey``)."""
    sms_url: str | None = None
    """An HTTP SMS gateway (JSON POST ``{to, text, sender}`` with a bearer token); unset → outbox files."""
    sms_token: SecretStr | None = None
    sms_sender: str = "eSign"

    signing_pkcs12_path: Path | None = None
    signing_pkcs12_password: SecretStr | None = None
    signing_key_path: Path | None = None
    signing_cert_path: Path | None = None
    signing_chain_paths: list[Path] = []
    signing_trust_root_paths: list[Path] = []
    """Roots of the signing and TSA chains (PEM), for the B-LTA validation data; empty → the chain's own top."""
    signing_crl_paths: list[Path] = []
    """CRLs (DER) to embed besides what the certificates' CRL/OCSP URLs give."""
    tsa_url: str | None = None
    """RFC 3161 TSA; unset → the built-in development TSA (dev PKI)."""
    signing_workers: int = 2

    max_document_bytes: int = 20 * MB
    max_request_bytes: int = 50 * MB
    pdf_inspectors: int = 2
    """Upload inspector processes (each checks one document at a time by trial-signing it)."""
    page_image_workers: int = 1
    """Processes that render document pages for the signer's page (cached per document version)."""
    pdf_parse_memory_bytes: int = 1024 * MB
    """Address-space limit of each inspector process."""
    pdf_parse_cpu_seconds: int = 20
    """CPU budget of one inspection (per document, not per process)."""
    pdf_parse_timeout_seconds: float = 30.0
    """Wall-clock limit of one inspection; past it the inspector process is killed and replaced."""
    pdf_inspect_wait_seconds: float = 20.0
    """How long an upload waits for a free inspector before ``503 inspector_busy``."""

    retention_years: int = RETENTION_YEARS
    """Completed envelopes are kept this long after completion (``retained_until``), then purged."""
    unsigned_retention_days: int = UNSIGNED_RETENTION_DAYS
    """Envelopes that ended unsigned (declined, expired, cancelled) are purged this long after."""

    embedded_worker: bool = True
    worker_poll_seconds: float = 1.0
    metrics_token: SecretStr | None = None
    """Unset: ``/metrics`` is open on the listening address; set: it needs ``Authorization: Bearer <token>``."""
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_port: int | None = None
    """Where a ``worker`` process serves its ``/metrics``; unset: it serves none (0: any free port, printed)."""
    log_level: str = "INFO"
    log_json: bool = True

    @field_validator("public_url")
    @classmethod
    def _strip_slash(cls, v: str) -> str:
        return v.rstrip("/")

    @property
    def digisign_configured(self) -> bool:
        return bool(self.digisign_base_url and self.digisign_access_key and self.digisign_secret_key)

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite://{(self.data_dir / 'esign.sqlite3').resolve()}"

    @property
    def outbox_dir(self) -> Path:
        return self.data_dir / "outbox"

    @property
    def documents_dir(self) -> Path:
        return self.data_dir / "documents"

    @property
    def page_images_dir(self) -> Path:
        return self.data_dir / "page-images"

    @property
    def pki_dir(self) -> Path:
        return self.data_dir / "pki"



# ------------------------------------------------------------------------------ checks


class ConfigurationError(Exception):
    """The configuration cannot run the gateway: every problem found, one plain line each, each
    naming its ``ESIGN_`` variable. The CLI prints them to stderr and exits 2 (no traceback)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def env_name(field: str) -> str:
    return f"ESIGN_{field.upper()}"


class _SkippingEnv(EnvSettingsSource):
    """The environment, less the variables already found unreadable (they take their default)."""

    def __init__(self, settings_cls: type[BaseSettings], skip: frozenset[str]) -> None:
        super().__init__(settings_cls)
        self.skip = skip

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        if field_name in self.skip:
            return None, field_name, False
        return super().get_field_value(field, field_name)


def _lenient(skip: frozenset[str]) -> type[Settings]:
    class _Settings(Settings):
        @classmethod
        def settings_customise_sources(
            cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return init_settings, _SkippingEnv(settings_cls, skip), dotenv_settings, file_secret_settings

    return _Settings


_WHAT = {
    "int_parsing": "must be an integer", "int_type": "must be an integer", "int_from_float": "must be an integer",
    "float_parsing": "must be a number", "float_type": "must be a number",
    "bool_parsing": "must be true or false", "bool_type": "must be true or false",
    "list_type": 'must be a JSON list, e.g. ["/etc/esign/ca.pem"]',
    "path_type": "must be a file path", "string_type": "must be text",
}


def _plain(error: Any) -> str:
    """One pydantic error as ``ESIGN_PORT: must be an integer, got 'abc'`` (never a secret's value)."""
    field = str(error["loc"][0]) if error["loc"] else ""
    where = env_name(field) + "".join(f"[{part}]" for part in error["loc"][1:])
    kind = error["type"]
    if kind == "literal_error":
        what = f"must be one of {error.get('ctx', {}).get('expected', '')}"
    else:
        what = _WHAT.get(kind) or str(error["msg"]).replace("Input should be", "must be").replace("Value error, ", "")
    info = Settings.model_fields.get(field)
    secret = info is not None and "SecretStr" in str(info.annotation)
    value = error.get("input")
    got = f", got {value!r}" if isinstance(value, str | int | float) and not secret else ""
    return f"{where}: {what}{got}"


def read_settings() -> tuple[Settings, list[str]]:
    """The settings from the environment, and what in it could not be read (plain lines).

    A value that cannot be read takes its default here, so that everything else can still be
    checked; the caller must not run with a non-empty list."""
    skip: set[str] = set()
    problems: list[str] = []
    for _ in range(len(Settings.model_fields) + 1):
        try:
            return (_lenient(frozenset(skip))() if skip else Settings()), problems
        except SettingsError as exc:  # pydantic-settings could not even decode it (a list that is not JSON)
            match = re.search(r'field "(\w+)"', str(exc))
            if match is None or match.group(1) in skip:
                raise
            skip.add(match.group(1))
            problems.append(f"{env_name(match.group(1))}: {_WHAT['list_type']}")
        except ValidationError as exc:
            fields = {str(e["loc"][0]) for e in exc.errors() if e["loc"]}
            if not fields or fields <= skip:
                raise
            skip |= fields
            problems.extend(_plain(e) for e in exc.errors())
    raise RuntimeError("unreachable")  # pragma: no cover


def _readable(field: str, path: Path | None, problems: list[str], *, index: int | None = None) -> bool:
    if path is None:
        return False
    name = env_name(field) + (f"[{index}]" if index is not None else "")
    try:
        with path.open("rb") as fh:
            fh.read(1)
    except IsADirectoryError:
        problems.append(f"{name}: {path} is a directory, not a file.")
        return False
    except OSError as exc:
        problems.append(f"{name}: {path} cannot be read ({exc.strerror or type(exc).__name__}).")
        return False
    return True


def _url(field: str, value: str | None, schemes: tuple[str, ...], problems: list[str]) -> None:
    if not value:
        return
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.hostname:
        shown = "" if field == "smtp_url" else f", got {value!r}"  # an SMTP URL may carry a password
        starts = " or ".join(f"{s}://" for s in schemes)
        problems.append(f"{env_name(field)}: must be a URL starting with {starts}{shown}.")


def check_settings(settings: Settings, *, email: bool = True, sms: bool = True, signing: bool = True) -> list[str]:
    """Every problem of ``settings`` that can be seen without starting anything, in plain words.

    ``email``/``sms``/``signing``: whether those parts are built from the settings (a test that
    brings its own sender or provider does not need their variables). Production refuses the
    development shortcuts: the outbox folders as transports, a generated secret key, the
    development PKI and TSA, links to ``http://host:port``."""
    problems: list[str] = []
    prod = settings.env == "prod"
    smtp = settings.smtp_url.get_secret_value() if settings.smtp_url else None
    if prod and settings.secret_key is None:
        problems.append("ESIGN_SECRET_KEY is not set: production needs a Fernet key to encrypt secrets at rest "
                        "(make one with: python -c 'from cryptography.fernet import Fernet; "
                        "print(Fernet.generate_key().decode())').")
    if settings.secret_key is not None:
        from cryptography.fernet import Fernet

        try:
            Fernet(settings.secret_key.get_secret_value().encode())
        except ValueError:
            problems.append("ESIGN_SECRET_KEY: not a Fernet key (32 bytes, url-safe base64).")
    if prod and not settings.public_url:
        problems.append("ESIGN_PUBLIC_URL is not set: production links in e-mails need the gateway's https:// "
                        "address.")
    elif prod and not settings.public_url.startswith("https://"):
        problems.append(f"ESIGN_PUBLIC_URL: production links must be https://, got {settings.public_url!r}.")
    if email:
        if prod and not smtp:
            problems.append("ESIGN_SMTP_URL is not set: production sends e-mail only through an SMTP server "
                            "(the outbox folder is for development).")
        _url("smtp_url", smtp, ("smtp", "smtps"), problems)
    if email and any((settings.dkim_domain, settings.dkim_selector, settings.dkim_key_path)):
        missing = [env_name(f) for f in ("dkim_domain", "dkim_selector", "dkim_key_path") if not getattr(settings, f)]
        if missing:
            problems.append(f"{', '.join(missing)} not set: DKIM signing needs ESIGN_DKIM_DOMAIN, "
                            "ESIGN_DKIM_SELECTOR and ESIGN_DKIM_KEY_PATH together.")
        _readable("dkim_key_path", settings.dkim_key_path, problems)
    if sms:
        if prod and not settings.sms_url:
            problems.append("ESIGN_SMS_URL is not set: production sends SMS codes only through an SMS gateway "
                            "(the outbox folder would keep them in clear).")
        _url("sms_url", settings.sms_url, ("http", "https"), problems)
    if signing:
        problems.extend(check_signing_settings(settings))
    if settings.plans_file is not None:
        _readable("plans_file", settings.plans_file, problems)
    if not 0 < settings.port < 65536:
        problems.append(f"ESIGN_PORT: must be between 1 and 65535, got {settings.port}.")
    for field in ("signing_workers", "pdf_inspectors", "page_image_workers", "database_pool_max"):
        if getattr(settings, field) < 1:
            problems.append(f"{env_name(field)}: must be at least 1, got {getattr(settings, field)}.")
    return problems


def check_signing_settings(settings: Settings) -> list[str]:
    """The signing identity, the TSA and the providers' settings (part of :func:`check_settings`)."""
    problems: list[str] = []
    prod = settings.env == "prod"
    digisign = ("digisign_base_url", "digisign_access_key", "digisign_secret_key")
    given = [f for f in digisign if getattr(settings, f)]
    if (settings.provider == "digisign" or given) and len(given) < len(digisign):
        missing = ", ".join(env_name(f) for f in digisign if f not in given)
        why = "ESIGN_PROVIDER=digisign needs" if settings.provider == "digisign" else "DigiSign needs"
        problems.append(f"{missing} not set: {why} ESIGN_DIGISIGN_BASE_URL, ESIGN_DIGISIGN_ACCESS_KEY and "
                        "ESIGN_DIGISIGN_SECRET_KEY together.")
    _url("digisign_base_url", settings.digisign_base_url, ("https", "http"), problems)
    if settings.signing_pkcs12_path and settings.signing_key_path:
        problems.append("ESIGN_SIGNING_PKCS12_PATH and ESIGN_SIGNING_KEY_PATH are both set: set one of them.")
    elif settings.signing_key_path and not settings.signing_cert_path:
        problems.append("ESIGN_SIGNING_CERT_PATH is not set: ESIGN_SIGNING_KEY_PATH needs its certificate.")
    elif settings.signing_cert_path and not (settings.signing_key_path or settings.signing_pkcs12_path):
        problems.append("ESIGN_SIGNING_KEY_PATH is not set: ESIGN_SIGNING_CERT_PATH needs its private key.")
    elif prod and not (settings.signing_pkcs12_path or settings.signing_key_path):
        problems.append("ESIGN_SIGNING_PKCS12_PATH or ESIGN_SIGNING_KEY_PATH (with ESIGN_SIGNING_CERT_PATH) is not "
                        "set: production signs with its own key, not the development PKI.")
    if prod and not settings.tsa_url:
        problems.append("ESIGN_TSA_URL is not set: production timestamps signatures with a real RFC 3161 TSA, "
                        "not the built-in development one.")
    _url("tsa_url", settings.tsa_url, ("http", "https"), problems)
    for field in ("signing_pkcs12_path", "signing_key_path", "signing_cert_path"):
        _readable(field, getattr(settings, field), problems)
    for field in ("signing_chain_paths", "signing_trust_root_paths", "signing_crl_paths"):
        for i, path in enumerate(getattr(settings, field)):
            _readable(field, path, problems, index=i)
    if settings.signing_pkcs12_password is not None and not settings.signing_pkcs12_path:
        problems.append("ESIGN_SIGNING_PKCS12_PASSWORD is set without ESIGN_SIGNING_PKCS12_PATH.")
    return problems
