"""HTTP-level fixtures: the real app over a real socket (pytest-aiohttp), tenants, helpers that
play the signer — link from the caught e-mail, code from the SMS outbox."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from esign_gateway.container import Container
from tests.conftest import SmtpServer, Tenant
from tests.factories import make_pdf

LINK_RE = re.compile(r"https://sign\.example\.test/sign/([A-Za-z0-9_\-]+)")


@pytest.fixture
async def other_tenant(container: Container) -> Tenant:
    info, key = await container.tenants.create_tenant("Konkurence a.s.", paid=True, plan_code="l")
    return Tenant(info.id, key.secret)


def signer(name: str = "Jana Nováková", email: str = "jana@example.cz", phone: str = "+420601123456",
           order: int = 1) -> dict[str, Any]:
    return {"name": name, "email": email, "phone": phone, "order": order}


def envelope_body(signers: list[dict[str, Any]] | None = None, *, documents: int = 1, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "record": {"type": "deal", "id": "D-2026-0042", "name": "Dodávka serverů"},
        "name": "Smlouva o dílo 2026/042",
        "message": "Dobrý den, prosím o podpis smlouvy.",
        "language": "cs",
        "documents": [
            {"name": f"smlouva-{i + 1}.pdf", "content": base64.b64encode(make_pdf(pages=2)).decode()}
            for i in range(documents)
        ],
        "signers": signers or [signer()],
        "metadata": {"crm_user": "42"},
    }
    body.update(extra)
    return body


class Ceremony:
    """Plays the signer's side through the public HTTP API, reading real e-mails and SMS."""

    def __init__(self, api: TestClient, container: Container, smtp: SmtpServer) -> None:
        self.api = api
        self.container = container
        self.smtp = smtp

    async def run_jobs(self) -> int:
        return await self.container.worker.run_once()

    def link_token(self, email: str) -> str:
        mails = self.smtp.to(email)
        assert mails, f"no e-mail to {email}"
        body = mails[-1].get_body(("plain",))
        assert body is not None
        match = LINK_RE.search(body.get_content())
        assert match, "no signing link in the e-mail"
        return match.group(1)

    def last_code(self, phone: str) -> str:
        sms_dir = Path(self.container.settings.outbox_dir) / "sms"
        files = sorted(sms_dir.glob("*.json"))
        for f in reversed(files):
            data = json.loads(f.read_text())
            if data["to"] == phone:
                match = re.search(r"\b(\d{6})\b", data["text"])
                assert match
                return match.group(1)
        raise AssertionError(f"no SMS to {phone}")

    async def request_code(self, token: str) -> Any:
        resp = await self.api.post(f"/api/sign/{token}/code", json={})
        assert resp.status == 202, await resp.text()
        return await resp.json()

    async def sign(self, token: str, phone: str) -> Any:
        await self.request_code(token)
        resp = await self.api.post(f"/api/sign/{token}/sign", json={"code": self.last_code(phone), "agree": True})
        assert resp.status == 200, await resp.text()
        return await resp.json()


@pytest.fixture
def ceremony(api: TestClient, container: Container, smtp_server: SmtpServer) -> Ceremony:
    return Ceremony(api, container, smtp_server)
