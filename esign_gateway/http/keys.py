"""Typed application state keys."""

from __future__ import annotations

from aiohttp import web

from esign_gateway.container import Container
from esign_gateway.metrics import Metrics

from .loop_lag import LoopLagMonitor

__all__ = ["CONTAINER", "LOOP_LAG", "METRICS"]

CONTAINER = web.AppKey("esign.container", Container)
LOOP_LAG = web.AppKey("esign.loop_lag", LoopLagMonitor)
METRICS = web.AppKey("esign.metrics", Metrics)
