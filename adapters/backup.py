"""Backup and restore: the database and the document store as one dated, verified set.

A set is a directory ``esign-YYYY-MM-DD`` holding

- ``database.sqlite3`` (SQLite's online backup API: a consistent copy while the gateway writes) or
  ``database.pgdump`` (``pg_dump --format=custom``, one consistent snapshot of a PostgreSQL database);
- ``documents/``: the content-addressed blobs (``ab/cd/<sha256>``), each checked against its name
  while it is copied;
- ``secret.key`` when the data directory holds one (development: it opens the sealed secrets);
- ``manifest.json``: what the set holds, with the SHA-256 of every file, written last.

The database is copied first, then the blobs: a blob is stored before the row that names it is
committed, so every blob the database copy names was on disk when the copy of the blobs began.
After writing, the set is read back and checked against its manifest, and every blob the
database named before the copy began must be in it. A set is built under a temporary name and
renamed into place, so a crash never leaves a half set under a real name. Re-running on the same
day replaces that day's set; the ``keep`` newest sets are kept, older ones removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from adapters._files import write_atomic

__all__ = ["BackupError", "BackupSet", "Target", "preflight", "restore", "take", "verify"]

FORMAT = 1
KEEP = 14
_SET = re.compile(r"^esign-\d{4}-\d{2}-\d{2}$")
_BLOB = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20


class BackupError(Exception):
    """A backup or restore that cannot be done, in plain words for the operator."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where the gateway keeps its data (from the settings)."""

    database_url: str
    documents_dir: Path
    data_dir: Path

    @property
    def sqlite_path(self) -> Path | None:
        if self.database_url.startswith("sqlite://"):
            return Path(self.database_url.removeprefix("sqlite://"))
        return None


@dataclass(frozen=True, slots=True)
class BackupSet:
    path: Path
    database: str
    """``sqlite`` or ``postgres``."""
    documents: int
    bytes: int
    removed: tuple[Path, ...] = ()
    """Older sets removed to keep the newest ``keep``."""


# ----------------------------------------------------------------------------- take


def take(target: Target, dest: Path, now: datetime, *, referenced: Iterable[str] = (), keep: int = KEEP) -> BackupSet:
    """Write today's set into ``dest`` (blocking: run it in a thread)."""
    dest.mkdir(parents=True, exist_ok=True)
    name = f"esign-{now.date().isoformat()}"
    work = dest / f".{name}.partial-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        files: dict[str, str] = {}
        kind = _dump_database(target, work)
        db_file = "database.sqlite3" if kind == "sqlite" else "database.pgdump"
        files[db_file] = _sha256_file(work / db_file)
        count = _copy_blobs(target.documents_dir, work / "documents")
        secret = target.data_dir / "secret.key"
        if secret.exists():
            shutil.copy2(secret, work / "secret.key")
            os.chmod(work / "secret.key", 0o600)
            files["secret.key"] = _sha256_file(work / "secret.key")
        size = sum(p.stat().st_size for p in work.rglob("*") if p.is_file())
        manifest = {
            "format": FORMAT, "created_at": now.isoformat(), "database": kind, "files": files,
            "documents": count, "bytes": size,
        }
        write_atomic(work / "manifest.json", json.dumps(manifest, indent=2).encode())
        problems = verify(work)
        missing = sorted(k for k in set(referenced) if not (work / "documents" / k[:2] / k[2:4] / k).exists())
        if missing:
            problems.append(f"{len(missing)} document(s) the database names are not in the document store "
                            f"(first: {missing[0]})")
        if problems:
            raise BackupError("the backup did not verify: " + "; ".join(problems))
        final = dest / name
        if final.exists():  # today's set again: the new one replaces it
            old = dest / f".{name}.old-{os.getpid()}"
            final.rename(old)
            work.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            work.rename(final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    removed = _prune(dest, keep)
    return BackupSet(final, kind, count, size, removed)


def _prune(dest: Path, keep: int) -> tuple[Path, ...]:
    sets = sorted((p for p in dest.iterdir() if p.is_dir() and _SET.fullmatch(p.name)), key=lambda p: p.name)
    old = sets[:-keep] if keep > 0 else []
    for p in old:
        shutil.rmtree(p)
    return tuple(old)


def _dump_database(target: Target, work: Path) -> str:
    sqlite_path = target.sqlite_path
    if sqlite_path is not None:
        if not sqlite_path.exists():
            raise BackupError(f"there is no database at {sqlite_path} (run `esign-gateway migrate` first)")
        source = sqlite3.connect(f"file:{sqlite_path}?mode=ro", uri=True)
        copy = sqlite3.connect(work / "database.sqlite3")
        try:
            source.backup(copy)  # consistent while the gateway writes (online backup API)
        finally:
            copy.close()
            source.close()
        return "sqlite"
    pg_dump = preflight(target)
    assert pg_dump is not None
    url = _libpq_url(target.database_url)
    done = _tool([pg_dump, "--format=custom", "--no-owner", "--no-privileges",
                  f"--file={work / 'database.pgdump'}", f"--dbname={url}"])
    if done.returncode != 0:
        raise BackupError(f"pg_dump failed: {_quiet(done.stderr)}")
    return "postgres"


def preflight(target: Target) -> str | None:
    """The ``pg_dump`` a PostgreSQL backup will run (None for SQLite); BackupError when it is missing."""
    if target.sqlite_path is not None:
        return None
    pg_dump = shutil.which("pg_dump")
    if pg_dump is None:
        raise BackupError("pg_dump is not installed: install the PostgreSQL client tools of the server's "
                          "major version (Debian: postgresql-client) and run the backup again")
    return pg_dump


def _copy_blobs(source: Path, dest: Path) -> int:
    count = 0
    if not source.exists():
        return 0
    for path in sorted(source.glob("??/??/*")):
        if not _BLOB.fullmatch(path.name):
            continue
        out = dest / path.name[:2] / path.name[2:4] / path.name
        out.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with path.open("rb") as src, out.open("wb") as dst:
            while chunk := src.read(_CHUNK):
                digest.update(chunk)
                dst.write(chunk)
            dst.flush()
            os.fsync(dst.fileno())
        if digest.hexdigest() != path.name:
            raise BackupError(f"the stored document {path.name} does not match its SHA-256: the store is damaged")
        count += 1
    return count


# ----------------------------------------------------------------------------- verify


def verify(set_path: Path) -> list[str]:
    """Every problem with a set (an empty list: it is whole)."""
    manifest_path = set_path / "manifest.json"
    if not manifest_path.exists():
        return [f"{set_path} has no manifest.json: not a finished backup set"]
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError:
        return ["manifest.json is not readable"]
    if manifest.get("format") != FORMAT:
        return [f"backup format {manifest.get('format')!r} is not one this version reads"]
    problems = []
    for name, digest in manifest["files"].items():
        path = set_path / name
        if not path.exists():
            problems.append(f"{name} is missing")
        elif _sha256_file(path) != digest:
            problems.append(f"{name} does not match its SHA-256 in the manifest")
    blobs = 0
    for path in (set_path / "documents").glob("??/??/*"):
        blobs += 1
        if _sha256_file(path) != path.name:
            problems.append(f"document {path.name} does not match its SHA-256")
    if blobs != manifest["documents"]:
        problems.append(f"the set holds {blobs} documents, its manifest says {manifest['documents']}")
    if manifest["database"] == "sqlite" and not problems:
        db = sqlite3.connect(f"file:{set_path / 'database.sqlite3'}?mode=ro", uri=True)
        try:
            result = db.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            db.close()
        if result != "ok":
            problems.append(f"the database copy fails SQLite's integrity check: {result}")
    if manifest["database"] == "postgres" and not problems and (pg_restore := shutil.which("pg_restore")):
        listed = _tool([pg_restore, "--list", str(set_path / "database.pgdump")])
        if listed.returncode != 0:
            problems.append(f"pg_restore cannot read the dump: {_quiet(listed.stderr)}")
    return problems


# ----------------------------------------------------------------------------- restore


def restore(set_path: Path, target: Target, *, database_is_empty: bool) -> BackupSet:
    """Restore ``set_path`` into an empty data directory / database (blocking: run it in a thread).

    ``database_is_empty``: the caller looked (a PostgreSQL database without tables; a SQLite file
    that does not exist yet)."""
    problems = verify(set_path)
    if problems:
        raise BackupError("the backup set did not verify: " + "; ".join(problems))
    manifest = json.loads((set_path / "manifest.json").read_text())
    kind = manifest["database"]
    sqlite_path = target.sqlite_path
    if (kind == "sqlite") != (sqlite_path is not None):
        raise BackupError(f"the set holds a {kind} database, the configured database is "
                          f"{'SQLite' if sqlite_path else 'PostgreSQL'}")
    if not database_is_empty or (sqlite_path is not None and sqlite_path.exists()):
        raise BackupError("the configured database is not empty: restore only into an empty one")
    if target.documents_dir.exists() and any(target.documents_dir.iterdir()):
        raise BackupError(f"{target.documents_dir} is not empty: restore only into an empty data directory")
    target.data_dir.mkdir(parents=True, exist_ok=True)
    if sqlite_path is not None:
        sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        partial = sqlite_path.with_name(sqlite_path.name + ".restoring")
        shutil.copyfile(set_path / "database.sqlite3", partial)
        os.replace(partial, sqlite_path)
    else:
        pg_restore = shutil.which("pg_restore")
        if pg_restore is None:
            raise BackupError("pg_restore is not installed: install the PostgreSQL client tools "
                              "(Debian: postgresql-client) and run the restore again")
        done = _tool([pg_restore, "--no-owner", "--no-privileges", "--exit-on-error",
                      f"--dbname={_libpq_url(target.database_url)}", str(set_path / "database.pgdump")])
        if done.returncode != 0:
            raise BackupError(f"pg_restore failed: {_quiet(done.stderr)}")
    count = _copy_blobs(set_path / "documents", target.documents_dir)
    if (set_path / "secret.key").exists() and not (target.data_dir / "secret.key").exists():
        shutil.copy2(set_path / "secret.key", target.data_dir / "secret.key")
        os.chmod(target.data_dir / "secret.key", 0o600)
    return BackupSet(set_path, kind, count, manifest["bytes"])


# ----------------------------------------------------------------------------- helpers


def _tool(args: list[str]) -> subprocess.CompletedProcess[str]:
    """A PostgreSQL client tool (found with ``shutil.which``; arguments are ours, never a shell)."""
    return subprocess.run(args, capture_output=True, text=True, check=False, timeout=3600)  # noqa: S603


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _libpq_url(url: str) -> str:
    """``postgres://…`` as libpq takes it (tortoise's ``?minsize=`` options are not libpq's)."""
    parts = urlsplit(url)
    return parts._replace(scheme="postgresql", query="").geturl()


def _quiet(stderr: str) -> str:
    """A tool's error without any password a URL in it may carry."""
    text = re.sub(r"(postgres(?:ql)?://[^:/@\s]+):[^@\s]+@", r"\1:***@", stderr.strip())
    return text.splitlines()[-1] if text else "no message"
