"""``GET /metrics`` over the real app: Prometheus text that prometheus_client's own parser reads,
counters a real ceremony moves (real SMTP, real signatures, real inspector), failures counted,
job gauges read from the job table on a frozen clock, and no tenant or person in any label."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from esign_gateway.config import Settings
from esign_gateway.container import Container
from esign_gateway.db.models import Job
from esign_gateway.http.keys import LOOP_LAG
from tests.api.conftest import Ceremony, Tenant, envelope_body
from tests.fakes import FrozenClock

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def _scrape_text(api: Any, headers: dict[str, str] | None = None) -> str:
    resp = await api.get("/metrics", headers=headers or {})
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "text/plain"
    return str(await resp.text())


async def _scrape(api: Any) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(await _scrape_text(api)):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def _v(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return _v(after, name, **labels) - _v(before, name, **labels)


async def _subscribe(api: Any, tenant: Tenant, url: str) -> None:
    resp = await api.put("/v1/webhook", json={"url": url, "events": ["envelope.sent"]}, headers=tenant.auth)
    assert resp.status == 200, await resp.text()


@pytest.fixture
async def receiver(aiohttp_server: Callable[..., Any]) -> dict[str, Any]:
    """A real CRM endpoint on a loopback port that answers ``state["status"]``."""
    state: dict[str, Any] = {"status": 500, "hits": 0}

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        state["hits"] += 1
        return web.Response(status=state["status"])

    app = web.Application()
    app.router.add_post("/hooks", handle)
    server = await aiohttp_server(app)
    state["url"] = str(server.make_url("/hooks"))
    return state


async def test_metrics_is_prometheus_text_with_every_family(api: Any) -> None:
    families = {f.name: f for f in text_string_to_metric_families(await _scrape_text(api))}
    expected = {
        "esign_http_requests": "counter", "esign_http_request_duration_seconds": "histogram",
        "esign_signatures": "counter", "esign_signature_duration_seconds": "histogram",
        "esign_pdf_inspections": "counter", "esign_pdf_inspection_duration_seconds": "histogram",
        "esign_webhook_deliveries": "counter", "esign_webhook_delivery_duration_seconds": "histogram",
        "esign_messages": "counter", "esign_message_send_duration_seconds": "histogram",
        "esign_quota_refusals": "counter", "esign_jobs_run": "counter", "esign_job_duration_seconds": "histogram",
        "esign_event_loop_lag_seconds": "histogram", "esign_jobs_due": "gauge", "esign_jobs_running": "gauge",
        "esign_jobs_failed": "gauge", "esign_jobs_oldest_due_age_seconds": "gauge", "esign_jobs_query_ok": "gauge",
        "process_resident_memory_bytes": "gauge",
    }
    assert {name: families[name].type for name in expected if name in families} == expected
    assert families["esign_jobs_query_ok"].samples[0].value == 1
    # every job kind the worker knows has a series before its first job
    kinds = {s.labels["kind"] for s in families["esign_jobs_due"].samples}
    assert {"send_invitation", "deliver_webhook", "expire_envelope", "audit_report"} <= kinds


async def test_a_ceremony_moves_the_counters_it_should(
    api: Any, tenant: Tenant, ceremony: Ceremony, container: Container
) -> None:
    before = await _scrape(api)
    resp = await api.post("/v1/envelopes", json=envelope_body(), headers=tenant.auth)
    assert resp.status == 201, await resp.text()
    created = await _scrape(api)
    assert _v(created, "esign_jobs_due", kind="send_invitation") == 1  # committed, not yet sent
    assert _delta(before, created, "esign_pdf_inspections_total", outcome="ok") == 1
    assert _delta(before, created, "esign_pdf_inspection_duration_seconds_count") == 1

    await ceremony.run_jobs()  # the invitation goes out through the real SMTP server
    mailed = await _scrape(api)
    assert _v(mailed, "esign_jobs_due", kind="send_invitation") == 0
    assert _delta(before, mailed, "esign_jobs_run_total", kind="send_invitation", outcome="ok") == 1
    assert _delta(before, mailed, "esign_job_duration_seconds_count", kind="send_invitation") == 1
    assert _delta(before, mailed, "esign_messages_total", channel="email", outcome="sent") == 1
    assert len(ceremony.smtp.messages) == 1

    await ceremony.sign(ceremony.link_token("jana@example.cz"), "+420601123456")
    await ceremony.run_jobs()  # the completion e-mails
    after = await _scrape(api)

    assert _delta(before, after, "esign_http_requests_total", method="POST", route="/v1/envelopes", status="201") == 1
    assert _delta(before, after, "esign_http_requests_total", method="POST", route="/api/sign/{token}/code",
                  status="202") == 1
    assert _delta(before, after, "esign_http_requests_total", method="POST", route="/api/sign/{token}/sign",
                  status="200") == 1
    assert _delta(before, after, "esign_http_request_duration_seconds_count", method="POST",
                  route="/api/sign/{token}/sign") == 1
    assert _delta(before, after, "esign_http_requests_total", method="GET", route="/metrics", status="200") == 3
    assert _delta(before, after, "esign_signatures_total", provider="local", outcome="ok") == 1
    assert _delta(before, after, "esign_signature_duration_seconds_count", provider="local") == 1
    assert _delta(before, after, "esign_signature_duration_seconds_sum", provider="local") > 0
    assert _delta(before, after, "esign_messages_total", channel="sms", outcome="sent") == 1
    assert _delta(before, after, "esign_messages_total", channel="email", outcome="sent") == len(ceremony.smtp.messages)
    assert _delta(before, after, "esign_messages_total", channel="email", outcome="failed") == 0
    assert _delta(before, after, "esign_jobs_run_total", kind="send_completion", outcome="ok") >= 1
    assert _v(after, "esign_quota_refusals_total", limit="monthly_documents") == 0


async def test_refusals_and_failures_move_the_failure_counters(
    api: Any, container: Container, tenant: Tenant, ceremony: Ceremony, receiver: dict[str, Any], clock: FrozenClock
) -> None:
    free_info, free_key = await container.tenants.create_tenant("Malá firma s.r.o.", paid=True)
    free = Tenant(free_info.id, free_key.secret)
    before = await _scrape(api)

    resp = await api.post("/v1/envelopes", json=envelope_body(documents=5), headers=free.auth)  # free: 4 a month
    assert resp.status == 402 and (await resp.json())["code"] == "quota_exceeded"

    body = envelope_body()
    body["documents"][0]["content"] = base64.b64encode(b"%PDF-1.7\nnot really a pdf").decode()
    resp = await api.post("/v1/envelopes", json=body, headers=tenant.auth)
    assert resp.status == 422, await resp.text()
    refused_code = (await resp.json())["code"]

    await _subscribe(api, tenant, receiver["url"])
    assert (await api.post("/v1/envelopes", json=envelope_body(), headers=tenant.auth)).status == 201
    await ceremony.run_jobs()
    assert receiver["hits"] == 1
    failing = await _scrape(api)
    clock.advance(minutes=10)  # past the first retry (5 s): the endpoint is gone now
    receiver["status"] = 410
    await ceremony.run_jobs()
    assert receiver["hits"] == 2
    after = await _scrape(api)

    assert _delta(before, after, "esign_quota_refusals_total", limit="monthly_documents") == 1
    assert _delta(before, after, "esign_http_requests_total", method="POST", route="/v1/envelopes", status="402") == 1
    assert _delta(before, after, "esign_pdf_inspections_total", outcome=refused_code) == 1
    assert _delta(before, failing, "esign_webhook_deliveries_total", outcome="retrying") == 1
    assert _delta(before, after, "esign_webhook_deliveries_total", outcome="held") == 1
    assert _delta(before, after, "esign_webhook_deliveries_total", outcome="succeeded") == 0
    assert _delta(before, after, "esign_webhook_delivery_duration_seconds_count") == 2
    assert _delta(before, after, "esign_signatures_total", provider="local", outcome="ok") == 0


class TestDailyLimit:
    @pytest.fixture
    def settings(self, tmp_path: Path, db_url: str) -> Settings:
        plans = tmp_path / "plans.toml"
        plans.write_text('currency = "CZK"\n[plans.free]\nname = "Free"\nmonthly_documents = 4\n'
                         'monthly_fee = "0"\ndaily_requests = 2\n')
        return Settings(env="test", data_dir=tmp_path / "data", database_url=db_url, plans_file=plans,
                        public_url="https://sign.example.test", embedded_worker=False, log_json=False)

    async def test_a_request_over_the_daily_limit_is_a_quota_refusal(self, api: Any, container: Container) -> None:
        _, key = await container.tenants.create_tenant("Malá firma s.r.o.", paid=True)
        auth = {"Authorization": f"Bearer {key.secret}"}
        statuses = [(await api.get("/v1/envelopes", headers=auth)).status for _ in range(3)]
        assert statuses == [200, 200, 429]
        after = await _scrape(api)
        assert _v(after, "esign_quota_refusals_total", limit="daily_requests") == 1
        assert _v(after, "esign_http_requests_total", method="GET", route="/v1/envelopes", status="429") == 1


async def test_job_gauges_come_from_the_job_table_at_scrape_time(
    api: Any, container: Container, clock: FrozenClock
) -> None:
    now = clock.now()
    for status, due in (("pending", now - timedelta(minutes=10)),  # due for 10 min
                        ("pending", now + timedelta(hours=1)),  # not yet due
                        ("running", now + timedelta(minutes=4)),  # held under a live lease
                        ("running", now - timedelta(minutes=1)),  # its worker died: due again
                        ("failed", now - timedelta(days=1))):
        await Job.create(kind="expire_envelope", payload={}, status=status, due_at=due, created_at=now)
    first = await _scrape(api)
    assert _v(first, "esign_jobs_due", kind="expire_envelope") == 2
    assert _v(first, "esign_jobs_running", kind="expire_envelope") == 1
    assert _v(first, "esign_jobs_failed", kind="expire_envelope") == 1
    assert _v(first, "esign_jobs_oldest_due_age_seconds", kind="expire_envelope") == 600
    assert _v(first, "esign_jobs_oldest_due_age_seconds", kind="send_invitation") == 0

    clock.advance(minutes=5)  # the live lease ran out too; the oldest is 15 min overdue
    second = await _scrape(api)
    assert _v(second, "esign_jobs_due", kind="expire_envelope") == 3
    assert _v(second, "esign_jobs_running", kind="expire_envelope") == 0
    assert _v(second, "esign_jobs_oldest_due_age_seconds", kind="expire_envelope") == 900


async def test_no_label_value_holds_a_tenant_an_envelope_or_a_person(
    api: Any, tenant: Tenant, ceremony: Ceremony
) -> None:
    env = await (await api.post("/v1/envelopes", json=envelope_body(), headers=tenant.auth)).json()
    await ceremony.run_jobs()
    token = ceremony.link_token("jana@example.cz")
    await ceremony.sign(token, "+420601123456")
    await ceremony.run_jobs()
    assert (await api.get(f"/v1/envelopes/{env['id']}", headers=tenant.auth)).status == 200
    assert (await api.get(f"/nowhere/{env['id']}/jana@example.cz")).status == 404  # no route: not its path
    assert (await api.get(f"/api/sign/{token}x")).status == 404
    text = await _scrape_text(api)

    secrets = {tenant.id, tenant.key, env["id"], env["signers"][0]["id"], env["documents"][0]["id"], token,
               "jana@example.cz", "+420601123456", "601123456", "Jana", "Dodávka", "D-2026-0042"}
    values = {v for family in text_string_to_metric_families(text) for s in family.samples for v in s.labels.values()}
    assert values, "no labels at all"
    leaked = {(secret, v) for secret in secrets for v in values if secret in v}
    assert leaked == set()
    assert not re.search(r"@|[0-9a-f]{8}-[0-9a-f]{4}-", text.split("# HELP process_")[0])  # no address, no UUID
    routes = {v for family in text_string_to_metric_families(text) for s in family.samples
              for k, v in s.labels.items() if k == "route"}
    assert {"unmatched", "/v1/envelopes/{id}", "/api/sign/{token}"} <= routes


async def test_metrics_needs_the_token_when_one_is_set(api: Any, container: Container) -> None:
    container.settings = container.settings.model_copy(update={"metrics_token": SecretStr("s3cr3t-scrape")})
    missing = await api.get("/metrics")
    assert missing.status == 401 and missing.content_type == "application/problem+json"
    assert (await api.get("/metrics", headers={"Authorization": "Bearer wrong"})).status == 401
    text = await _scrape_text(api, {"Authorization": "Bearer s3cr3t-scrape"})
    assert "esign_http_requests_total" in text
    assert "s3cr3t" not in text


async def test_event_loop_lag_is_a_histogram_of_the_monitors_samples(api: Any) -> None:
    monitor = api.server.app[LOOP_LAG]
    await asyncio.wait_for(monitor.ticked.wait(), timeout=10)
    samples = await _scrape(api)
    count = _v(samples, "esign_event_loop_lag_seconds_count")
    assert count >= 1
    assert _v(samples, "esign_event_loop_lag_seconds_bucket", le="+Inf") == count


# ----------------------------------------------------------------------------- the Grafana dashboard

_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or",
                 "unless", "inf", "nan", "le"}


def _metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (label matchers, grouping lists, ranges and
    Grafana's ``$__rate_interval`` taken out first)."""
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r'"[^"]*"', "", expr)
    names = set()
    for match in re.finditer(r"(?<![\w$.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", expr):
        word = match.group(1)
        if word.lower() not in _PROMQL_WORDS:
            names.add(word)
    return names


def _exprs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["expr"]] if isinstance(node.get("expr"), str) else []
        return found + [e for v in node.values() for e in _exprs(v)]
    if isinstance(node, list):
        return [e for v in node for e in _exprs(v)]
    return []


def test_promql_names_are_read_as_a_scrape_names_them() -> None:
    expr = ('histogram_quantile(0.99, sum by (le, route) (rate(esign_http_request_duration_seconds_bucket'
            '{route!="/metrics"}[$__rate_interval])))')
    assert _metric_names(expr) == {"esign_http_request_duration_seconds_bucket"}
    assert _metric_names('max by (kind) (esign_jobs_due) > 0 or vector(0)') == {"esign_jobs_due"}


async def test_the_grafana_dashboard_asks_only_for_metrics_a_gateway_exposes(
    api: Any, tenant: Tenant, ceremony: Ceremony
) -> None:
    await api.post("/v1/envelopes", json=envelope_body(), headers=tenant.auth)
    await ceremony.run_jobs()
    await ceremony.sign(ceremony.link_token("jana@example.cz"), "+420601123456")
    exposed = {name for name, _ in await _scrape(api)}
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = _exprs(dashboard["panels"])
    assert len(exprs) >= 12
    asked = {name for e in exprs for name in _metric_names(e)}
    for variable in dashboard["templating"]["list"]:  # label_values(<metric>, <label>) of the variables
        asked |= set(re.findall(r"label_values\((\w+)", str(variable.get("query", ""))))
    assert asked - exposed == set()
    areas = ("esign_http_", "esign_jobs_due", "esign_jobs_oldest_due_age", "esign_signature", "esign_pdf_inspection",
             "esign_webhook_", "esign_messages", "esign_quota_refusals", "esign_event_loop_lag")
    assert [a for a in areas if not any(n.startswith(a) for n in asked)] == []
