"""The ``esign-gateway`` command line, run as a real subprocess."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from esign_gateway.domain.quota import month_of

EXE = [sys.executable, "-m", "esign_gateway"]


def run(data_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ESIGN_DATA_DIR": str(data_dir), "ESIGN_ENV": "test", "ESIGN_LOG_JSON": "false"}
    env.pop("ESIGN_DATABASE_URL", None)
    return subprocess.run([*EXE, *args], env=env, capture_output=True, text=True, check=check, timeout=120)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    run(tmp_path, "migrate")
    return tmp_path


def test_tenant_create_json_then_list_and_key_lifecycle(data_dir: Path) -> None:
    out = json.loads(run(data_dir, "tenant", "create", "--name", "Dodavatel s.r.o.", "--paid", "--json").stdout)
    assert out["api_key"].startswith("esk_") and len(out["api_key"]) >= 46
    listed = json.loads(run(data_dir, "tenant", "list", "--json").stdout)
    assert listed == [{"id": out["tenant_id"], "name": "Dodavatel s.r.o.", "mode": "paid", "plan": "free",
                       "signing_enabled": True, "pending_plan": None}]

    support = json.loads(run(data_dir, "key", "create", "--role", "support", "--json").stdout)
    assert support["role"] == "support" and support["api_key"] != out["api_key"]
    revoked = run(data_dir, "key", "revoke", support["api_key"][:12]).stdout
    assert "revoked 1 key" in revoked

    bad = run(data_dir, "key", "create", "--role", "integration", check=False)
    assert bad.returncode == 2 and "tenant" in bad.stderr

    trial = json.loads(run(data_dir, "tenant", "create", "--name", "Zkouška", "--trial", "--json").stdout)
    run(data_dir, "tenant", "update", trial["tenant_id"], "--paid")
    modes = {t["name"]: t["mode"] for t in json.loads(run(data_dir, "tenant", "list", "--json").stdout)}
    assert modes == {"Dodavatel s.r.o.": "paid", "Zkouška": "paid"}


def test_keys_are_stored_hashed(data_dir: Path) -> None:
    out = json.loads(run(data_dir, "tenant", "create", "--name", "A", "--paid", "--json").stdout)
    raw = (data_dir / "esign.sqlite3").read_bytes()
    assert out["api_key"].encode() not in raw


def test_operator_sets_a_custom_plan_and_billing_export_writes_csv_and_json(data_dir: Path) -> None:
    month = month_of(datetime.now(UTC))  # the CLI runs on the real clock
    paid = json.loads(run(data_dir, "tenant", "create", "--name", "Zakázková a.s.", "--paid", "--json").stdout)
    run(data_dir, "tenant", "create", "--name", "Zkouška", "--trial", "--json")
    out = run(data_dir, "tenant", "update", paid["tenant_id"], "--plan", "custom", "--documents", "7",
              "--fee", "1234.5").stdout
    assert "plan custom (7 docs, 1234.50/month)" in out

    lines = json.loads(run(data_dir, "billing", "export", "--month", month, "--format", "json").stdout)
    assert lines == [{
        "tenant_id": paid["tenant_id"], "tenant_name": "Zakázková a.s.", "month": month, "plan": "custom",
        "plan_name": "Custom", "monthly_fee": "1234.50", "currency": "CZK", "documents_sent": 0, "allowance": 7,
    }]
    rows = list(csv.DictReader(io.StringIO(run(data_dir, "billing", "export", "--month", month).stdout)))
    assert rows == [{k: str(v) for k, v in lines[0].items()}]

    bad = run(data_dir, "billing", "export", "--month", "2026/11", check=False)
    assert bad.returncode == 2 and "month" in bad.stderr
    bad = run(data_dir, "tenant", "update", paid["tenant_id"], "--plan", "custom", check=False)
    assert bad.returncode == 2 and "documents" in bad.stderr


def test_key_revoke_takes_the_printed_key_id_or_a_prefix_and_fails_when_nothing_matched(data_dir: Path) -> None:
    by_id = json.loads(run(data_dir, "key", "create", "--role", "support", "--json").stdout)
    assert "revoked 1 key" in run(data_dir, "key", "revoke", by_id["key_id"]).stdout
    by_prefix = json.loads(run(data_dir, "key", "create", "--role", "support", "--json").stdout)
    assert "revoked 1 key" in run(data_dir, "key", "revoke", by_prefix["api_key"][:8]).stdout  # the documented minimum
    again = run(data_dir, "key", "revoke", by_prefix["api_key"][:8], check=False)
    assert again.returncode != 0 and "no live key" in again.stderr
    shown = run(data_dir, "key", "create", "--role", "operator").stdout
    assert "key id" in shown


def test_billing_csv_neutralises_cells_a_spreadsheet_would_run_as_formulas(data_dir: Path) -> None:
    month = month_of(datetime.now(UTC))
    for name in ("=HYPERLINK(\"http://evil\")", "+1+1", "-2", "@SUM(A1)", "Poctivá s.r.o."):
        run(data_dir, "tenant", "create", "--name", name, "--paid", "--json")
    rows = list(csv.DictReader(io.StringIO(run(data_dir, "billing", "export", "--month", month).stdout)))
    names = sorted(r["tenant_name"] for r in rows)
    assert names == sorted(["'=HYPERLINK(\"http://evil\")", "'+1+1", "'-2", "'@SUM(A1)", "Poctivá s.r.o."])
    as_json = json.loads(run(data_dir, "billing", "export", "--month", month, "--format", "json").stdout)
    assert "=HYPERLINK(\"http://evil\")" in {r["tenant_name"] for r in as_json}  # JSON is data, not a sheet
