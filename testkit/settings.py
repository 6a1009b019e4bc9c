"""Settings and databases for tests and benches: the PostgreSQL role that may
create databases, the Redis the tests use, and settings built from a clean
environment with the trading values the mechanics tests are written against."""

from __future__ import annotations

import os

from bot.config import Settings, load_settings
from testkit import e2e

PG_ADMIN_DSN = os.environ.get("TEST_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379")
# Each pytest-xdist worker (gw0, gw1, ...) has four Redis databases of its own,
# so that tests running side by side never see each other's keys.
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:] or 0)


def redis_db(k: int) -> str:
    """This test process's Redis database ``k`` (0: broker, 1: results,
    2 and 3: scratch)."""
    return f"{REDIS_URL}/{4 * _WORKER + k}"


def admin(sql: str) -> None:
    """Run ``sql`` as the admin role (CREATE/DROP DATABASE, GRANT)."""
    e2e.admin(PG_ADMIN_DSN, sql)


def dsn_for(name: str) -> str:
    """The DSN of database ``name`` on the admin's server."""
    return e2e.dsn_for(PG_ADMIN_DSN, name)


# The trading values the mechanics tests are written against (a low threshold
# that trades often, no cooldown or stop guard); tests of the shipped defaults
# call load_settings({}) (tests/test_config.py).
MECHANICS = {"THRESHOLD": "0.2", "STOP_LOSS_PCT": "5", "COOLDOWN_CANDLES": "0",
             "STOP_GUARD_EXITS": "0"}


def make_settings(database_url: str = "postgresql://postgres@127.0.0.1:5432/postgres",
                  **overrides: str) -> Settings:
    env: dict[str, str] = {
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": redis_db(0),
        "CELERY_BACKEND_URL": redis_db(1),
        "UPBIT_API_BASE": "https://api.upbit.test",
        **MECHANICS,
    }
    env.update({k.upper(): str(v) for k, v in overrides.items()})
    return load_settings(env)
