"""Make ``docs/sample-audit-report.pdf`` and its first page as PNG (run by hand; needs pdftoppm).

A whole ceremony runs in-process on a throw-away SQLite database: create → sign → completed; the
audit report job seals the report; the result is copied here. ``python docs/make_audit_report_sample.py``
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from esign_gateway.bootstrap import build_container, close_db, init_db, migrate
from esign_gateway.cli import _demo_pdf
from esign_gateway.config import Settings
from esign_gateway.http.app import create_app

HERE = Path(__file__).parent


async def main() -> str:
    data = Path(tempfile.mkdtemp())
    settings = Settings(env="dev", data_dir=data, embedded_worker=False, log_level="WARNING", log_json=False)
    await migrate(settings)
    container = build_container(settings)
    await init_db(settings)
    _, key = await container.tenants.create_tenant("Dodavatel s.r.o.", paid=True, plan_code="m")
    auth = {"Authorization": f"Bearer {key.secret}"}
    async with TestClient(TestServer(create_app(container))) as api:
        body = {
            "record": {"type": "deal", "id": "D-2026-0042", "name": "Dodávka serverů"},
            "name": "Smlouva o dílo 2026/042", "language": "cs",
            "documents": [{"name": "smlouva.pdf", "content": base64.b64encode(_demo_pdf()).decode()}],
            "signers": [{"name": "Jana Nováková", "email": "jana.novakova@example.cz", "phone": "+420601123456"}],
        }
        env = await (await api.post("/v1/envelopes", json=body, headers=auth)).json()
        await container.worker.run_once()
        mail = sorted((data / "outbox" / "email").glob("*.eml"))[-1].read_text()
        token = re.search(r"/sign/([A-Za-z0-9_\-]+)", mail).group(1)  # type: ignore[union-attr]
        ua = {"User-Agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) Mobile Safari"}
        await api.get(f"/sign/{token}", headers=ua)
        await api.post(f"/api/sign/{token}/code", json={}, headers=ua)
        sms = sorted((data / "outbox" / "sms").glob("*.json"))[-1]
        code = re.search(r"\b(\d{6})\b", json.loads(sms.read_text())["text"]).group(1)  # type: ignore[union-attr]
        await api.post(f"/api/sign/{token}/sign", json={"code": code, "agree": True}, headers=ua)
        await container.worker.run_once()
        pdf = await (await api.get(f"/v1/envelopes/{env['id']}/audit", headers=auth)).read()
    await close_db()
    (HERE / "sample-audit-report.pdf").write_bytes(pdf)
    shutil.rmtree(data)
    return str(env["id"])


def picture() -> None:
    """The first page as PNG (poppler's pdftoppm; Debian package poppler-utils)."""
    subprocess.run(  # noqa: S603 - fixed arguments
        ["/usr/bin/pdftoppm", "-png", "-r", "80", "-f", "1", "-l", "1", "-singlefile",
         str(HERE / "sample-audit-report.pdf"), str(HERE / "screenshots" / "audit-report-page1")],
        check=True,
    )


if __name__ == "__main__":
    envelope_id = asyncio.run(main())
    picture()
    print(f"docs/sample-audit-report.pdf and docs/screenshots/audit-report-page1.png (envelope {envelope_id})")
