"""The one TORTOISE_ORM config, built from Settings (for ``migrate`` and the tortoise CLI)."""

from __future__ import annotations

from typing import Any

from tortoise.backends.base.config_generator import expand_db_url

__all__ = ["TORTOISE_ORM", "build_config", "normalise_url"]

MODEL_MODULES = ["esign_gateway.db.models", "webhooks.models"]
CONNECT_TIMEOUT_SECONDS = 5
"""How long opening a PostgreSQL connection may take (``?timeout=`` in the URL overrides it)."""


def normalise_url(url: str) -> str:
    """Tortoise wants ``postgres://``/``sqlite://``; accept ``postgresql://`` too."""
    if url.startswith("postgresql://"):
        return "postgres://" + url[len("postgresql://") :]
    return url


def build_config(database_url: str, *, pool_max: int = 10) -> dict[str, Any]:
    url = normalise_url(database_url)
    connection: str | dict[str, Any] = url
    if url.startswith("postgres://"):
        # A transaction whose BEGIN meets a dead connection gives it back (see asyncpg_backend); a
        # new connection gives up after CONNECT_TIMEOUT_SECONDS instead of asyncpg's 60 s; and the
        # pool keeps no floor of open connections (minsize 0), so while the server is down asyncpg
        # does not retry in the background, logging a traceback each time.
        connection = expand_db_url(url)
        connection["engine"] = "esign_gateway.db.asyncpg_backend"
        credentials = connection["credentials"]
        credentials["maxsize"] = pool_max
        credentials.setdefault("timeout", CONNECT_TIMEOUT_SECONDS)
        credentials.setdefault("minsize", 0)
    elif url.startswith("sqlite://") and ":memory:" not in url:
        # Several processes may share the file: immediate transactions, and wait for the lock.
        connection = expand_db_url(url)
        connection["engine"] = "esign_gateway.db.sqlite_backend"
        connection["credentials"].setdefault("busy_timeout", 30000)
    return {
        "connections": {"default": connection},
        "apps": {
            "models": {
                "models": MODEL_MODULES,
                "default_connection": "default",
                "migrations": "esign_gateway.db.migrations",
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


# For the tortoise CLI only (``tortoise -c esign_gateway.db.tortoise_config.TORTOISE_ORM makemigrations``).
TORTOISE_ORM = build_config("sqlite://:memory:")
