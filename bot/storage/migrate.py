"""Schema migrations: numbered SQL files applied once each, in order, under a
PostgreSQL advisory lock so that workers starting together do not race.

``schema_migrations`` records what is applied. After the files, the candles
table becomes a TimescaleDB hypertable when the extension can be created
(installed, in shared_preload_libraries, and the role a superuser or holding
CREATE on the database: the extension is marked trusted); plain PostgreSQL
otherwise (one log line says which, and why). A database migrated plain is
converted, its rows kept, by the first migration that can create the extension.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

import psycopg2

from bot.storage.db import Database

log = logging.getLogger(__name__)

# Any constant works as long as every process uses the same one.
MIGRATION_LOCK_KEY = 0x5B0_7ADE
_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


@dataclass(frozen=True)
class MigrateResult:
    applied: tuple[int, ...]
    current: int
    timescale: bool


def available_migrations() -> list[Migration]:
    found = []
    for entry in resources.files("bot.storage").joinpath("migrations").iterdir():
        match = _FILE_RE.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration numbers: {versions}")
    return found


def migrate(db: Database) -> MigrateResult:
    """Apply every pending migration; safe to call from many processes at once."""
    with db.connection() as conn:
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
                try:
                    applied = _apply_pending(cur)
                    timescale = _ensure_hypertable(cur)
                    cur.execute("SELECT coalesce(max(version), 0) FROM schema_migrations")
                    current = cur.fetchone()[0]
                finally:
                    cur.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
        finally:
            conn.autocommit = False
    if applied:
        log.info("schema migrated", extra={"event": "db.migrated",
                                           "fields": {"applied": ",".join(map(str, applied)),
                                                      "version": current}})
    return MigrateResult(tuple(applied), current, timescale)


def _apply_pending(cur: psycopg2.extensions.cursor) -> list[int]:
    cur.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version integer PRIMARY KEY, name text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )
    cur.execute("SELECT version FROM schema_migrations")
    done = {row[0] for row in cur.fetchall()}
    applied = []
    for migration in available_migrations():
        if migration.version in done:
            continue
        cur.execute("BEGIN")
        try:
            cur.execute(migration.sql)
            cur.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (migration.version, migration.name))
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        applied.append(migration.version)
    return applied


def _ensure_hypertable(cur: psycopg2.extensions.cursor) -> bool:
    cur.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
    if cur.fetchone() is None:
        _log_backend(False, "extension not installed")
        return False
    # TimescaleDB's loader defines this setting only when preloaded (and any role
    # may read it, unlike shared_preload_libraries itself).
    cur.execute("SELECT current_setting('timescaledb.disable_load', true) IS NOT NULL")
    if not cur.fetchone()[0]:
        # CREATE EXTENSION would end the session with a FATAL error then.
        _log_backend(False, "extension installed but not in shared_preload_libraries")
        return False
    try:
        cur.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        cur.execute(
            "SELECT create_hypertable('candles', 'ts', chunk_time_interval => interval '7 days',"
            " if_not_exists => TRUE, migrate_data => TRUE)"
        )
    except psycopg2.Error as exc:
        # For example: the extension exists but is not in shared_preload_libraries.
        _log_backend(False, str(exc).strip().splitlines()[0])
        return False
    _log_backend(True, "")
    return True


_logged_backend: list[bool] = []


def _log_backend(timescale: bool, why: str) -> None:
    if _logged_backend:  # one line per process is enough
        return
    _logged_backend.append(timescale)
    if timescale:
        log.info("candles stored in a TimescaleDB hypertable",
                 extra={"event": "db.backend", "fields": {"backend": "timescaledb"}})
    else:
        log.info("candles stored in a plain PostgreSQL table",
                 extra={"event": "db.backend", "fields": {"backend": "postgresql", "why": why}})
