"""Typed application state keys."""

from __future__ import annotations

from aiohttp import web

from esign_gateway.container import Container

__all__ = ["CONTAINER"]

CONTAINER = web.AppKey("esign.container", Container)
