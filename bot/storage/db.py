"""Connections: one lazily created psycopg2 pool per process.

Every connection is borrowed inside a ``with`` block and always given back,
closed if it broke, so none leaks. A lost or refused
connection surfaces as :class:`bot.errors.DatabaseUnavailable`, which the job
layer retries; SQL errors stay psycopg2 errors (a bug, not worth a retry).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
import psycopg2.errors
import psycopg2.extensions
import psycopg2.extras
import psycopg2.pool

from bot.errors import DatabaseUnavailable, SchemaMissing
from bot.logs import redact_url

_CONNECTION_ERRORS = (psycopg2.OperationalError, psycopg2.InterfaceError)
KEEP_IDLE = 2  # connections kept open between uses (one per nested cursor in use)
PING_AFTER_IDLE = 1.0  # seconds idle after which a kept connection is checked before use


class Database:
    """A small pool of connections to one DSN, safe across ``fork`` (Celery's
    prefork workers): a child process builds its own pool on first use."""

    def __init__(self, dsn: str, *, maxconn: int = 4, connect_timeout: int = 5):
        self.dsn = dsn
        self.maxconn = maxconn
        self.connect_timeout = connect_timeout
        self._pool: psycopg2.pool.ThreadedConnectionPool | None = None
        self._pid = 0
        self._lock = threading.Lock()
        self._idle_since: dict[int, float] = {}  # id(connection) -> when it was given back

    def __repr__(self) -> str:
        return f"Database({redact_url(self.dsn)!r})"

    def _get_pool(self) -> psycopg2.pool.ThreadedConnectionPool:
        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                try:
                    # psycopg2 keeps a returned connection only while fewer than
                    # minconn are idle: with 0 every cursor would connect anew.
                    self._pool = psycopg2.pool.ThreadedConnectionPool(
                        min(KEEP_IDLE, self.maxconn), self.maxconn, self.dsn,
                        connect_timeout=self.connect_timeout, application_name="upbit-bot",
                    )
                except _CONNECTION_ERRORS as exc:
                    raise DatabaseUnavailable(_describe(exc, self.dsn)) from None
                self._pid = os.getpid()
            return self._pool

    @contextmanager
    def connection(self) -> Iterator[psycopg2.extensions.connection]:
        """Borrow a connection; commit on success, roll back on error, always
        give it back (closed if it broke)."""
        pool = self._get_pool()
        conn = self._checkout(pool)
        broken = False
        try:
            yield conn
            conn.commit()
        except _CONNECTION_ERRORS as exc:
            broken = True
            raise DatabaseUnavailable(_describe(exc, self.dsn)) from None
        except psycopg2.errors.UndefinedTable as exc:
            conn.rollback()
            first = str(exc).strip().splitlines()[0]
            raise SchemaMissing(f"the database schema is missing or old ({first}): run "
                                "`bot migrate` (workers migrate when they start)") from None
        except BaseException:
            try:
                conn.rollback()
            except _CONNECTION_ERRORS:
                broken = True
            raise
        finally:
            broken = broken or bool(conn.closed)
            if not broken:
                self._idle_since[id(conn)] = time.monotonic()
            pool.putconn(conn, close=broken)

    def _checkout(self, pool: psycopg2.pool.ThreadedConnectionPool
                  ) -> psycopg2.extensions.connection:
        """A connection from the pool. One that sat idle for a while is pinged
        first and replaced if the server or the network dropped it meanwhile
        (a restart, an idle timeout), so that no caller meets a dead one."""
        for _ in range(self.maxconn + 1):
            try:
                conn = pool.getconn()
            except _CONNECTION_ERRORS as exc:
                raise DatabaseUnavailable(_describe(exc, self.dsn)) from None
            except psycopg2.pool.PoolError as exc:
                raise DatabaseUnavailable(f"database pool exhausted: {exc}") from None
            idle = self._idle_since.pop(id(conn), None)
            if idle is None or time.monotonic() - idle < PING_AFTER_IDLE:
                return conn
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT 1")
                conn.rollback()
                return conn
            except _CONNECTION_ERRORS:
                pool.putconn(conn, close=True)
        raise DatabaseUnavailable(f"database unavailable ({redact_url(self.dsn)}): every "
                                  "pooled connection was dropped")

    @contextmanager
    def cursor(self) -> Iterator[psycopg2.extensions.cursor]:
        """A cursor inside one transaction (committed when the block ends)."""
        with self.connection() as conn, conn.cursor() as cur:
            yield cur

    def close(self) -> None:
        with self._lock:
            if self._pool is not None and self._pid == os.getpid():
                self._pool.closeall()
            self._pool = None


def _describe(exc: BaseException, dsn: str) -> str:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return f"database unavailable ({redact_url(dsn)}): {first}"
