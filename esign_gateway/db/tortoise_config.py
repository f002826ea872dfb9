"""The one TORTOISE_ORM config, built from Settings (for ``migrate`` and the tortoise CLI)."""

from __future__ import annotations

from typing import Any

from tortoise.backends.base.config_generator import expand_db_url

__all__ = ["TORTOISE_ORM", "build_config", "normalise_url"]

MODEL_MODULES = ["esign_gateway.db.models", "webhooks.models"]


def normalise_url(url: str) -> str:
    """Tortoise wants ``postgres://``/``sqlite://``; accept ``postgresql://`` too."""
    if url.startswith("postgresql://"):
        return "postgres://" + url[len("postgresql://") :]
    return url


def build_config(database_url: str, *, pool_max: int = 10) -> dict[str, Any]:
    url = normalise_url(database_url)
    connection: str | dict[str, Any] = url
    if url.startswith("postgres://"):
        sep = "&" if "?" in url else "?"
        connection = f"{url}{sep}maxsize={pool_max}"
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
