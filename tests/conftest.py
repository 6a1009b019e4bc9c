"""Shared fixtures: a real PostgreSQL database per test session (created and
dropped here), emptied before each test, and settings built from a clean
environment."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from bot.storage import Database
from bot.storage.migrate import migrate
from testkit.settings import admin, dsn_for


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    name = f"bot_test_{uuid.uuid4().hex[:10]}"
    admin(f"CREATE DATABASE {name}")
    try:
        yield dsn_for(name)
    finally:
        admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


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
