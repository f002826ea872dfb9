"""Settings from the environment (prefix ``ESIGN_``). The only reader of ``os.environ``.

``Settings()`` is built once in ``cli.py`` and handed down; nothing below reads the env.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]

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
    pdf_parse_memory_bytes: int = 1024 * MB
    """Address-space limit of each inspector process."""
    pdf_parse_cpu_seconds: int = 20
    """CPU budget of one inspection (per document, not per process)."""
    pdf_parse_timeout_seconds: float = 30.0
    """Wall-clock limit of one inspection; past it the inspector process is killed and replaced."""
    pdf_inspect_wait_seconds: float = 20.0
    """How long an upload waits for a free inspector before ``503 inspector_busy``."""

    retention_years: int = 3
    """Completed envelopes are kept this long after completion (``retained_until``), then purged."""
    unsigned_retention_days: int = 90
    """Envelopes that ended unsigned (declined, expired, cancelled) are purged this long after."""

    embedded_worker: bool = True
    worker_poll_seconds: float = 1.0
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
    def pki_dir(self) -> Path:
        return self.data_dir / "pki"
