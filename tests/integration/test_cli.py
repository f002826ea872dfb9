"""The ``esign-gateway`` command line, run as a real subprocess.

Commands that only read or change tenants, keys, plans and the evidence start light: they import
no PDF, signing or web stack and build no development PKI (``bootstrap.build_admin``).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from esign_gateway.domain.quota import month_of

EXE = [sys.executable, "-m", "esign_gateway"]


def run(
    data_dir: Path, *args: str, check: bool = True, flags: tuple[str, ...] = (), **env_vars: str
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ESIGN_DATA_DIR": str(data_dir), "ESIGN_ENV": "test", "ESIGN_LOG_JSON": "false", **env_vars}
    env.pop("ESIGN_DATABASE_URL", None)
    return subprocess.run([sys.executable, *flags, "-m", "esign_gateway", *args], env=env, capture_output=True,
                          text=True, check=check, timeout=120)


@pytest.fixture
def data_dir(tmp_path: Path, sqlite_template: Path) -> Path:
    """A migrated data directory (a copy of the session's migrated SQLite file)."""
    shutil.copy(sqlite_template, tmp_path / "esign.sqlite3")
    return tmp_path


def test_migrate_prepares_an_empty_data_dir(tmp_path: Path) -> None:
    before = run(tmp_path, "tenant", "list", check=False)
    assert before.returncode == 2 and "esign-gateway migrate" in before.stderr and "Traceback" not in before.stderr
    assert run(tmp_path, "migrate").stdout.strip() == "migrations applied"
    assert json.loads(run(tmp_path, "tenant", "list", "--json").stdout) == []


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


def test_key_list_shows_each_key_with_its_tenant_and_revocation_but_never_the_secret(data_dir: Path) -> None:
    a = json.loads(run(data_dir, "tenant", "create", "--name", "Alfa s.r.o.", "--paid", "--json").stdout)
    b = json.loads(run(data_dir, "tenant", "create", "--name", "Beta a.s.", "--paid", "--json").stdout)
    support = json.loads(run(data_dir, "key", "create", "--role", "support", "--json").stdout)
    run(data_dir, "key", "revoke", support["key_id"])

    listed = json.loads(run(data_dir, "key", "list", "--json").stdout)
    assert {(k["role"], k["tenant_id"], k["prefix"]) for k in listed} == {
        ("integration", a["tenant_id"], a["api_key"][:12]), ("integration", b["tenant_id"], b["api_key"][:12]),
        ("support", None, support["api_key"][:12]),
    }
    (revoked,) = [k for k in listed if k["revoked_at"] is not None]
    assert revoked["id"] == support["key_id"] and all(k["created_at"] for k in listed)

    only_a = json.loads(run(data_dir, "key", "list", "--tenant", a["tenant_id"], "--json").stdout)
    assert [k["prefix"] for k in only_a] == [a["api_key"][:12]]
    text = run(data_dir, "key", "list").stdout
    assert support["key_id"] in text and "revoked" in text and "Alfa s.r.o." in text
    for secret in (a["api_key"], b["api_key"], support["api_key"]):
        assert secret not in text and secret[:13] not in text  # the stored 12 characters, not one more

    unknown = run(data_dir, "key", "list", "--tenant", "01a206aa-bcdb-750e-bbc5-e812ca10e709", check=False)
    assert unknown.returncode == 2 and "No tenant" in unknown.stderr and "Traceback" not in unknown.stderr


def test_a_command_that_did_nothing_exits_non_zero_with_a_plain_message(data_dir: Path) -> None:
    nobody = "01a206aa-bcdb-750e-bbc5-e812ca10e709"
    tenant = json.loads(run(data_dir, "tenant", "create", "--name", "Alfa s.r.o.", "--paid", "--json").stdout)
    cases = {
        "unknown tenant": ("tenant", "update", nobody, "--paid"),
        "nothing to change": ("tenant", "update", tenant["tenant_id"]),
        "unknown envelope": ("audit", "verify", nobody),
        "unknown signer (erase)": ("gdpr", "erase", "--email", "nikdo@example.cz"),
        "unknown signer (export)": ("gdpr", "export", "--email", "nikdo@example.cz"),
        "no key": ("key", "revoke", "esk_notakey"),
    }
    for case, args in cases.items():
        proc = run(data_dir, *args, check=False)
        assert proc.returncode != 0, case
        assert proc.stderr.strip() and "Traceback" not in proc.stderr, (case, proc.stderr)
        assert "nikdo@example.cz" not in proc.stderr, case
    listed = json.loads(run(data_dir, "tenant", "list", "--json").stdout)
    assert [t["mode"] for t in listed] == ["paid"]


HEAVY = ("pyhanko", "pyhanko_certvalidator", "pikepdf", "reportlab", "pypdfium2", "numpy", "fontTools", "PIL",
         "aiohttp", "esign_gateway.http", "adapters.providers", "adapters.reports", "adapters.pdf",
         "adapters._pdf", "webhooks.delivery", "webhooks.routes")


def _imported(proc: subprocess.CompletedProcess[str]) -> set[str]:
    """The modules ``-X importtime`` reports as imported."""
    return {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}


def test_light_commands_import_no_pdf_signing_or_web_stack_and_make_no_development_pki(data_dir: Path) -> None:
    month = month_of(datetime.now(UTC))
    run(data_dir, "tenant", "create", "--name", "Alfa s.r.o.", "--paid", "--json")
    for args in (("tenant", "list"), ("key", "list"), ("audit", "verify", "--all"), ("billing", "export", "--month",
                 month), ("gdpr", "export", "--email", "nikdo@example.cz")):
        proc = run(data_dir, *args, flags=("-X", "importtime"), check=False)
        assert proc.returncode in (0, 1), (args, proc.stderr[-2000:])
        heavy = sorted(m for m in _imported(proc) if any(m == h or m.startswith(h + ".") for h in HEAVY))
        assert heavy == [], args
    assert not (data_dir / "pki").exists()


def test_light_commands_check_only_the_configuration_they_use(data_dir: Path) -> None:
    missing = str(data_dir / "no-such.key")
    listed = run(data_dir, "tenant", "list", "--json", ESIGN_SIGNING_KEY_PATH=missing,
                 ESIGN_SIGNING_CERT_PATH=missing)
    assert json.loads(listed.stdout) == []  # signing files are serve's and worker's concern
    refused = run(data_dir, "tenant", "list", check=False, ESIGN_PLANS_FILE=str(data_dir / "no-plans.toml"))
    assert refused.returncode == 2 and "ESIGN_PLANS_FILE" in refused.stderr and "Traceback" not in refused.stderr
    served = run(data_dir, "serve", check=False, ESIGN_SIGNING_KEY_PATH=missing, ESIGN_SIGNING_CERT_PATH=missing)
    assert served.returncode == 2 and "ESIGN_SIGNING_KEY_PATH" in served.stderr
