"""Migrations: idempotent, and safe when several processes start at once."""

import subprocess
import sys
import uuid

import pytest

from bot.storage import Database
from bot.storage.migrate import available_migrations, migrate
from tests.conftest import _admin, dsn_for


@pytest.fixture
def fresh_url():
    name = f"bot_mig_{uuid.uuid4().hex[:10]}"
    _admin(f"CREATE DATABASE {name}")
    yield dsn_for(name)
    _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _tables(db):
    with db.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {r[0] for r in cur.fetchall()}


def test_migrations_apply_once_and_twice_is_harmless(fresh_url):
    db = Database(fresh_url)
    first = migrate(db)
    versions = tuple(m.version for m in available_migrations())
    assert first.applied == versions and first.current == versions[-1]
    assert first.timescale is False  # no TimescaleDB on the test machine: plain PostgreSQL
    second = migrate(db)
    assert second.applied == () and second.current == versions[-1]
    assert {"candles", "decisions", "orders", "fills", "schema_migrations"} <= _tables(db)
    with db.cursor() as cur:
        cur.execute("SELECT version FROM schema_migrations ORDER BY version")
        assert tuple(r[0] for r in cur.fetchall()) == versions
    db.close()


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
