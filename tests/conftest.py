"""Shared fixtures: a real PostgreSQL database per test session (created and
dropped here), emptied before each test, and settings built from a clean
environment."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from bot.config import Settings, load_settings
from bot.storage import Database
from bot.storage.migrate import migrate
from testkit import e2e

PG_ADMIN_DSN = os.environ.get("TEST_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379")


def _admin(sql: str) -> None:
    e2e.admin(PG_ADMIN_DSN, sql)


def dsn_for(name: str) -> str:
    return e2e.dsn_for(PG_ADMIN_DSN, name)


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    name = f"bot_test_{uuid.uuid4().hex[:10]}"
    _admin(f"CREATE DATABASE {name}")
    try:
        yield dsn_for(name)
    finally:
        _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def migrated_db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    migrate(database)
    yield database
    database.close()


@pytest.fixture
def db(migrated_db: Database) -> Database:
    """The session's database, every table emptied."""
    with migrated_db.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                    " AND tablename <> 'schema_migrations'")
        tables = [row[0] for row in cur.fetchall()]
        if tables:
            cur.execute("TRUNCATE " + ", ".join(tables) + " RESTART IDENTITY CASCADE")
    return migrated_db


# The trading values the mechanics tests are written against (a low threshold
# that trades often, no cooldown or stop guard); tests of the shipped defaults
# call load_settings({}) (tests/test_config.py).
MECHANICS = {"THRESHOLD": "0.2", "STOP_LOSS_PCT": "5", "COOLDOWN_CANDLES": "0",
             "STOP_GUARD_EXITS": "0"}


def make_settings(database_url: str = "postgresql://postgres@127.0.0.1:5432/postgres",
                  **overrides: str) -> Settings:
    env: dict[str, str] = {
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": f"{REDIS_URL}/0",
        "CELERY_BACKEND_URL": f"{REDIS_URL}/1",
        "UPBIT_API_BASE": "https://api.upbit.test",
        **MECHANICS,
    }
    env.update({k.upper(): str(v) for k, v in overrides.items()})
    return load_settings(env)
