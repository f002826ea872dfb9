"""``esign-gateway backup`` and ``restore`` (see :mod:`adapters.backup` for what a set holds)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path

from adapters import backup

from .bootstrap import close_db, init_db
from .config import Settings

__all__ = ["add_parsers", "run"]


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    take = sub.add_parser("backup", help="write today's verified backup set (database + documents)")
    take.add_argument("--dir", type=Path, default=None, help="where sets are kept (default: DATA_DIR/backups)")
    take.add_argument("--keep", type=int, default=backup.KEEP, help=f"sets to keep (default {backup.KEEP})")
    back = sub.add_parser("restore", help="restore a backup set into an empty data directory and database")
    back.add_argument("set", type=Path, help="the set's directory, e.g. backups/esign-2026-12-01")
    check = sub.add_parser("backup-verify", help="check a backup set against its manifest")
    check.add_argument("set", type=Path)


def _target(settings: Settings) -> backup.Target:
    return backup.Target(settings.resolved_database_url, settings.documents_dir, settings.data_dir)


async def _take(settings: Settings, args: argparse.Namespace) -> int:
    from .db.blobs import referenced_keys

    backup.preflight(_target(settings))  # a missing pg_dump is said before anything is read
    await init_db(settings)
    try:
        referenced = await referenced_keys()  # named before the copy begins: all must be in the set
    finally:
        await close_db()
    dest = args.dir or settings.data_dir / "backups"
    made = await asyncio.to_thread(backup.take, _target(settings), dest, datetime.now(UTC),
                                   referenced=referenced, keep=args.keep)
    print(f"backup {made.path}: {made.database} database, {made.documents} documents, "
          f"{made.bytes / 1e6:.1f} MB, verified")
    for old in made.removed:
        print(f"removed {old}")
    return 0


async def _database_is_empty(settings: Settings) -> bool:
    target = _target(settings)
    if target.sqlite_path is not None:
        return not target.sqlite_path.exists()
    from tortoise import connections

    await init_db(settings)
    try:
        _, rows = await connections.get("default").execute_query(
            "SELECT count(*) AS n FROM information_schema.tables WHERE table_schema = 'public'"
        )
        return int(dict(rows[0])["n"]) == 0
    finally:
        await close_db()


async def _restore(settings: Settings, args: argparse.Namespace) -> int:
    empty = await _database_is_empty(settings)
    done = await asyncio.to_thread(backup.restore, args.set, _target(settings), database_is_empty=empty)
    print(f"restored {done.path}: {done.database} database, {done.documents} documents. "
          "Next: `esign-gateway migrate` (if this version is newer), then `esign-gateway audit verify --all`.")
    return 0


def run(settings: Settings, args: argparse.Namespace) -> int:
    try:
        if args.command == "backup":
            return asyncio.run(_take(settings, args))
        if args.command == "restore":
            return asyncio.run(_restore(settings, args))
        problems = backup.verify(args.set)
        for p in problems:
            print(f"problem: {p}")
        print(f"{args.set}: {'verified' if not problems else 'BROKEN'}")
        return 1 if problems else 0
    except backup.BackupError as err:
        print(f"esign-gateway {args.command}: {err}", file=sys.stderr)
        return 2
