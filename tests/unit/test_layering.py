"""The dependency rules of STYLE.md §8, checked by walking the imports of the source files.

- the core (`esign_gateway/`) never imports `adapters` or `webhooks`; only the composition root
  (`esign_gateway/bootstrap.py`) and the CLI edges that use it (`cli.py`, `backup_cli.py`) may;
- `esign_gateway/http` never imports the ORM models (`esign_gateway.db.models`);
- `esign_gateway/services` never imports `tortoise`.

Every import counts, also one inside a function or under `TYPE_CHECKING`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "esign_gateway"
EDGES_THAT_WIRE_ADAPTERS = {"esign_gateway/bootstrap.py", "esign_gateway/cli.py", "esign_gateway/backup_cli.py"}

# Violations that exist today, each removed by the rest of #17 (services get their unit of work and
# repositories; handlers get domain objects or schemas). An entry is (module, rule, imported name).
# The test fails on any violation not listed here, and on an entry that no longer occurs (so the list
# only shrinks).
_TORTOISE = ("service imports tortoise", "tortoise")
KNOWN: set[tuple[str, str, str]] = {
    # Q(...) over the document hashes: the query belongs in a repository method (#17 moves it).
    ("esign_gateway/services/archive.py", *_TORTOISE),
    # BaseDBAsyncClient as the type of the connection it is handed: #17 passes a unit of work instead.
    ("esign_gateway/services/download_links.py", *_TORTOISE),
    # catches tortoise's IntegrityError (a notice already recorded): #17 gives the repository a method for it.
    ("esign_gateway/services/notifications.py", *_TORTOISE),
    # connections.get("default") and Count(...) over usage rows: #17 moves both queries into repositories.
    ("esign_gateway/services/plans.py", *_TORTOISE),
    # catches tortoise's IntegrityError (another worker saw the event first): #17 moves it into a repository.
    ("esign_gateway/services/remote.py", *_TORTOISE),
}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_names(path: Path, root: Path) -> set[str]:
    """Every module a file imports, absolute; `from a import b` yields both `a` and `a.b`."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module_name(path, root).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                stem = ".".join([*base, node.module] if node.module else base)
            else:
                stem = node.module or ""
            names.add(stem)
            names.update(f"{stem}.{alias.name}" for alias in node.names)
    return names


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations_of(path: Path, root: Path = ROOT) -> set[tuple[str, str, str]]:
    rel = path.relative_to(root).as_posix()
    found: set[tuple[str, str, str]] = set()
    for name in imported_names(path, root):
        if rel not in EDGES_THAT_WIRE_ADAPTERS:
            for banned in ("adapters", "webhooks"):
                if within(name, banned):
                    found.add((rel, "core imports a concrete adapter", banned))
        if rel.startswith("esign_gateway/http/") and within(name, "esign_gateway.db.models"):
            found.add((rel, "http imports ORM models", "esign_gateway.db.models"))
        if rel.startswith("esign_gateway/services/") and within(name, "tortoise"):
            found.add((rel, "service imports tortoise", "tortoise"))
    return found


def all_violations() -> set[tuple[str, str, str]]:
    found: set[tuple[str, str, str]] = set()
    for path in sorted(CORE.rglob("*.py")):
        if "migrations" in path.relative_to(CORE).parts:
            continue
        found |= violations_of(path)
    return found


def test_the_core_keeps_the_dependency_rules() -> None:
    new = all_violations() - KNOWN
    assert not new, "imports that break STYLE.md §8:\n" + "\n".join(f"  {m}: {r} ({n})" for m, r, n in sorted(new))


def test_the_known_violations_still_exist() -> None:
    gone = KNOWN - all_violations()
    assert not gone, "remove from KNOWN (fixed):\n" + "\n".join(f"  {m}: {r} ({n})" for m, r, n in sorted(gone))


@pytest.mark.parametrize(
    ("rel", "source", "rule"),
    [
        ("esign_gateway/services/x.py", "from adapters.email import smtp\n", "core imports a concrete adapter"),
        ("esign_gateway/jobs/x.py", "def f():\n    import webhooks.delivery\n", "core imports a concrete adapter"),
        ("esign_gateway/http/routes/x.py", "from ...db import models\n", "http imports ORM models"),
        ("esign_gateway/http/x.py", "from esign_gateway.db.models import Envelope\n", "http imports ORM models"),
        ("esign_gateway/services/x.py", "from tortoise.transactions import atomic\n", "service imports tortoise"),
    ],
)
def test_the_walk_sees_a_violation(tmp_path: Path, rel: str, source: str, rule: str) -> None:
    path = tmp_path / rel
    path.parent.mkdir(parents=True)
    path.write_text(source, encoding="utf-8")
    assert rule in {r for _, r, _ in violations_of(path, tmp_path)}


def test_the_composition_root_may_import_adapters(tmp_path: Path) -> None:
    path = tmp_path / "esign_gateway" / "bootstrap.py"
    path.parent.mkdir(parents=True)
    path.write_text("import adapters.email.smtp\nimport webhooks.routes\n", encoding="utf-8")
    assert violations_of(path, tmp_path) == set()
