"""The tortoise internals `esign_gateway/db/sqlite_backend.py` and `esign_gateway/db/asyncpg_backend.py` rely on.

Both backends subclass tortoise's clients and transaction contexts and copy two ``__aenter__`` bodies;
`tortoise-orm` is pinned in pyproject.toml to the minor release they are written for. When an upgrade
changes one of these internals, a test here names what changed: re-read tortoise's code, adapt the
backend, then update this file and the pin.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import textwrap
import tomllib
from pathlib import Path

import pytest
import tortoise
from packaging.requirements import Requirement

from esign_gateway.db.sqlite_backend import ImmediateSqliteClient, InlineConnection

IMPORTED = [
    ("tortoise.backends.base.client", "TransactionalDBClient"),
    ("tortoise.backends.base.client", "TransactionContext"),
    ("tortoise.backends.base.client", "TransactionContextPooled"),
    ("tortoise.backends.sqlite.client", "SqliteClient"),
    ("tortoise.backends.sqlite.client", "SqliteTransactionContext"),
    ("tortoise.backends.sqlite.client", "SqliteTransactionWrapper"),
    ("tortoise.backends.sqlite.client", "translate_exceptions"),
    ("tortoise.backends.asyncpg.client", "AsyncpgDBClient"),
    ("tortoise.backends.asyncpg.client", "TransactionWrapper"),
    ("tortoise.connection", "get_connections"),
    ("tortoise.exceptions", "TransactionManagementError"),
]

# (module, qualified name, parameters): what the backends override or call, with the parameters they pass.
SIGNATURES = [
    ("tortoise.backends.sqlite.client", "SqliteClient.__init__", ["self", "file_path", "kwargs"]),
    ("tortoise.backends.sqlite.client", "SqliteClient.create_connection", ["self", "with_db"]),
    ("tortoise.backends.sqlite.client", "SqliteClient._in_transaction", ["self"]),
    ("tortoise.backends.sqlite.client", "SqliteClient.execute_many", ["self", "query", "values"]),
    ("tortoise.backends.sqlite.client", "SqliteClient.acquire_connection", ["self"]),
    ("tortoise.backends.sqlite.client", "SqliteClient._post_connect", ["self"]),
    ("tortoise.backends.sqlite.client", "SqliteTransactionContext.__init__", ["self", "connection", "trxlock"]),
    ("tortoise.backends.sqlite.client", "SqliteTransactionContext.ensure_connection", ["self"]),
    ("tortoise.backends.sqlite.client", "SqliteTransactionWrapper.__init__", ["self", "connection"]),
    ("tortoise.backends.sqlite.client", "SqliteTransactionWrapper.begin", ["self"]),
    ("tortoise.backends.base.client", "TransactionContextPooled.__init__", ["self", "client", "pool_init_lock"]),
    ("tortoise.backends.base.client", "TransactionContextPooled.ensure_connection", ["self"]),
    ("tortoise.backends.asyncpg.client", "AsyncpgDBClient._in_transaction", ["self"]),
    ("tortoise.backends.asyncpg.client", "TransactionWrapper.__init__", ["self", "connection"]),
]

# The bodies our _TransactionContext.__aenter__ copies (adding only the clean-up when BEGIN fails).
COPIED_AENTER = {
    "tortoise.backends.sqlite.client.SqliteTransactionContext": """
        async def __aenter__(self) -> TransactionalDBClient:
            await self._trxlock.acquire()
            await self.ensure_connection()
            self.token = get_connections().set(self.connection_name, self.connection)
            await self.connection.begin()
            return self.connection
    """,
    "tortoise.backends.base.client.TransactionContextPooled": """
        async def __aenter__(self) -> TransactionalDBClient:
            await self.ensure_connection()
            self.client._connection = await self.client._parent._pool.acquire()
            self.token = get_connections().set(self.connection_name, self.client)
            await self.client.begin()
            return self.client
    """,
}


def resolve(module: str, qualname: str) -> object:
    obj: object = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def body_dump(source: str) -> str:
    return ast.dump(ast.parse(textwrap.dedent(source)).body[0])


def test_the_installed_tortoise_is_within_the_pin() -> None:
    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text(encoding="utf-8"))
    (pin,) = [Requirement(d) for d in pyproject["project"]["dependencies"] if d.startswith("tortoise-orm")]
    assert pin.specifier.contains(tortoise.__version__), (
        f"tortoise-orm {tortoise.__version__} is installed; the backends are written for {pin.specifier}"
    )
    assert not pin.specifier.contains("99"), "tortoise-orm has no upper bound in pyproject.toml"


@pytest.mark.parametrize(("module", "name"), IMPORTED, ids=[f"{m}.{n}" for m, n in IMPORTED])
def test_what_the_backends_import_exists(module: str, name: str) -> None:
    assert hasattr(importlib.import_module(module), name), f"tortoise no longer has {module}.{name}"


@pytest.mark.parametrize(("module", "qualname", "params"), SIGNATURES, ids=[q for _, q, _ in SIGNATURES])
def test_what_the_backends_override_keeps_its_signature(module: str, qualname: str, params: list[str]) -> None:
    fn = resolve(module, qualname)
    assert callable(fn)
    actual = list(inspect.signature(fn).parameters)
    assert actual == params, f"{module}.{qualname} now takes {actual}, the backends are written for {params}"


@pytest.mark.parametrize("where", sorted(COPIED_AENTER))
def test_the_copied_transaction_entry_is_unchanged(where: str) -> None:
    module, cls = where.rsplit(".", 1)
    theirs = inspect.getsource(resolve(module, f"{cls}.__aenter__"))
    assert body_dump(theirs) == body_dump(COPIED_AENTER[where]), (
        f"{where}.__aenter__ changed; the backend's _TransactionContext.__aenter__ is a copy of it:\n{theirs}"
    )


def _attributes_used_on_the_connection() -> set[str]:
    """What tortoise's SQLite client does with its aiosqlite connection: `connection.x` (from
    `acquire_connection()`) and `self._connection.x`, outside the constructors."""
    module = importlib.import_module("tortoise.backends.sqlite.client")
    tree = ast.parse(inspect.getsource(module))
    used: set[str] = set()
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        if cls.name not in {"SqliteClient", "SqliteTransactionWrapper"}:
            continue
        for fn in (n for n in cls.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)):
            if fn.name == "__init__":
                continue
            for node in ast.walk(fn):
                if not isinstance(node, ast.Attribute):
                    continue
                value = node.value
                on_name = isinstance(value, ast.Name) and value.id == "connection"
                on_attribute = isinstance(value, ast.Attribute) and value.attr == "_connection"
                if on_name or on_attribute:
                    used.add(node.attr)
    return used


def test_the_inline_connection_offers_all_tortoise_uses() -> None:
    used = _attributes_used_on_the_connection()
    assert {"execute", "execute_fetchall", "commit"} <= used  # the walk still finds the connection
    missing = sorted(name for name in used if not hasattr(InlineConnection, name) and name != "_conn")
    assert not missing, f"tortoise's SQLite client now uses connection.{missing}, which InlineConnection lacks"


def test_the_sqlite_client_keeps_the_attributes_the_backend_reads() -> None:
    client = ImmediateSqliteClient(":memory:", connection_name="internals", busy_timeout=2500)
    assert isinstance(client.pragmas, dict), "SqliteClient.pragmas is no longer a dict"
    assert "busy_timeout" not in client.pragmas
    assert client._busy_timeout == 2.5
    assert client.filename == ":memory:", "SqliteClient.filename is gone"
    assert client._connection is None, "SqliteClient._connection is gone"
    assert hasattr(client, "_lock"), "SqliteClient._lock is gone"


def test_tortoise_still_picks_the_client_and_schema_editor_by_module() -> None:
    from tortoise.connection import ConnectionHandler
    from tortoise.migrations.executor import MigrationExecutor

    assert "engine_module.client_class" in inspect.getsource(ConnectionHandler._discover_client_class), (
        "tortoise no longer reads a backend module's `client_class` (both backends export one)"
    )
    editor = inspect.getsource(MigrationExecutor._schema_editor)
    for word in ("sqlite", "asyncpg"):
        assert f'"{word}" in module' in editor, (
            f"tortoise's migration executor no longer picks the {word} schema editor by the client's module name"
        )
