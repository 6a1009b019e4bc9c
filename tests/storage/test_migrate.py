"""Migrations: idempotent, and safe when several processes start at once."""

import subprocess
import sys
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import psycopg2
import pytest
from psycopg2.extensions import make_dsn

from bot.models import Candle
from bot.storage import Database, candles
from bot.storage.migrate import MigrateResult, available_migrations, migrate
from testkit import e2e
from testkit.settings import PG_ADMIN_DSN, admin, dsn_for


@pytest.fixture
def fresh_url():
    name = f"bot_mig_{uuid.uuid4().hex[:10]}"
    admin(f"CREATE DATABASE {name}")
    yield dsn_for(name)
    admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def restricted_url():
    """A fresh database reached as a role that may create tables in ``public``
    but not extensions (no CREATE on the database, not a superuser): the plain
    PostgreSQL path even on a server where TimescaleDB is installed and preloaded
    (timescaledb.control says trusted, so database CREATE is all it would need)."""
    suffix = uuid.uuid4().hex[:10]
    name, role = f"bot_mig_{suffix}", f"bot_plain_{suffix}"
    admin(f"CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE")
    admin(f"CREATE DATABASE {name}")
    e2e.admin(dsn_for(name), f"GRANT CREATE ON SCHEMA public TO {role}")
    yield make_dsn(dsn_for(name), user=role), dsn_for(name)
    admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin(f"DROP ROLE IF EXISTS {role}")


def _timescale_expected() -> bool:
    """Whether this server can host TimescaleDB: installed (a control file) and
    preloaded, which CREATE EXTENSION requires. Asked of the server directly, not
    through bot/storage/migrate.py, so the tests below check the migration."""
    conn = psycopg2.connect(PG_ADMIN_DSN)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
            available = cur.fetchone() is not None
            cur.execute("SHOW shared_preload_libraries")
            preloaded = "timescaledb" in [lib.strip() for lib in cur.fetchone()[0].split(",")]
    finally:
        conn.close()
    return available and preloaded


def _candles_backend(db) -> tuple[str, str | None]:
    """("hypertable", chunk interval) or ("table", None) for the candles table."""
    with db.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
        if cur.fetchone() is not None:
            cur.execute("SELECT d.time_interval::text FROM timescaledb_information.dimensions d"
                        " WHERE d.hypertable_schema = 'public' AND d.hypertable_name = 'candles'"
                        " AND d.column_name = 'ts'")
            row = cur.fetchone()
            if row is not None:
                return "hypertable", row[0]
        cur.execute("SELECT relkind FROM pg_class WHERE oid = 'public.candles'::regclass")
        assert cur.fetchone()[0] == "r"
        return "table", None


def _candle(minute: int, close: str) -> Candle:
    return Candle("KRW-BTC", datetime(2026, 1, 1, 0, minute, tzinfo=UTC), Decimal("100"),
                  Decimal("101"), Decimal("99"), Decimal(close), Decimal("1.5"), Decimal("150"))


def _tables(db):
    with db.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {r[0] for r in cur.fetchall()}


def test_migrations_apply_once_and_twice_is_harmless(fresh_url):
    db = Database(fresh_url)
    first = migrate(db)
    versions = tuple(m.version for m in available_migrations())
    assert first.applied == versions and first.current == versions[-1]
    # a hypertable exactly when the server can host TimescaleDB; plain PostgreSQL otherwise
    expected = _timescale_expected()
    assert first.timescale is expected
    assert _candles_backend(db) == (("hypertable", "7 days") if expected else ("table", None))
    second = migrate(db)
    assert second.applied == () and second.current == versions[-1]
    assert second.timescale is expected
    assert {"candles", "decisions", "orders", "fills", "schema_migrations"} <= _tables(db)
    with db.cursor() as cur:
        cur.execute("SELECT version FROM schema_migrations ORDER BY version")
        assert tuple(r[0] for r in cur.fetchall()) == versions
    db.close()


def test_plain_postgresql_when_the_extension_cannot_be_created(restricted_url):
    url, admin_url = restricted_url
    db = Database(url)
    result = migrate(db)
    assert result.applied == tuple(m.version for m in available_migrations())
    assert result.timescale is False and _candles_backend(db) == ("table", None)
    # the storage works on the plain table as on the hypertable the other tests may use
    first = candles.upsert_candles(db, [_candle(0, "100"), _candle(1, "101")], "1m")
    assert first == candles.UpsertResult(2, 0)
    assert candles.upsert_candles(db, [_candle(1, "102")], "1m") == candles.UpsertResult(0, 1)
    assert migrate(db).timescale is False
    db.close()

    if not _timescale_expected():
        return
    # Later migrated by a role that may create the extension (TimescaleDB added to
    # a running deployment): the existing candles move into the hypertable.
    admin_db = Database(admin_url)
    assert migrate(admin_db) == MigrateResult((), result.current, True)
    assert _candles_backend(admin_db) == ("hypertable", "7 days")
    loaded = candles.load_candles(admin_db, "KRW-BTC", "1m")
    assert [(c.ts.minute, c.close) for c in loaded] == [(0, Decimal("100")), (1, Decimal("102"))]
    admin_db.close()


def test_concurrent_migrations_from_several_processes(fresh_url):
    script = ("import sys; from bot.storage import Database; from bot.storage.migrate import"
              " migrate; r = migrate(Database(sys.argv[1])); print(len(r.applied))")
    procs = [subprocess.Popen([sys.executable, "-c", script, fresh_url], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], outputs
    applied = sorted(int(out.strip()) for out, _ in outputs)
    # exactly one process applied everything; the others found nothing to do
    assert applied == [0, 0, 0, len(available_migrations())]


def test_numbered_files_are_unique_and_ordered():
    versions = [m.version for m in available_migrations()]
    assert versions == sorted(set(versions)) and versions[0] == 1
