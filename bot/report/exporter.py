"""``bot metrics``: the Prometheus exporter, on prometheus_client's own HTTP
server (``GET /metrics``), serving :class:`bot.report.metrics.BotCollector`.

It listens on METRICS_HOST:METRICS_PORT, 127.0.0.1 by default: the metrics
tell the account's size and its PnL, which is nobody else's business. It
runs until SIGTERM, SIGINT or SIGHUP. A port that is taken is tried again
every :data:`BIND_RETRY_SECONDS` instead of exiting, because under ``bot run``
a child that keeps dying makes the supervisor stop the trading workers too.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from prometheus_client import start_http_server
from prometheus_client.registry import CollectorRegistry

from bot import clock
from bot.config import Settings
from bot.logs import event
from bot.report.metrics import BotCollector

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    import redis

    from bot.exchange.protocol import Exchange
    from bot.storage import Database

log = logging.getLogger(__name__)

BIND_RETRY_SECONDS = 10.0
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
# A scrape gives up on a source within seconds (Prometheus' own default
# timeout is 10 s): a dead database or Redis then reads as up == 0.
SOURCE_TIMEOUT_SECONDS = 3


@dataclass
class Exporter:
    """A running exporter: its server (on its own thread) and what it reads."""

    server: WSGIServer
    thread: threading.Thread
    db: Database
    client: redis.Redis
    exchange: Exchange | None
    closed: bool = field(default=False)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
        close = getattr(self.exchange, "close", None)
        if close is not None:
            close()
        self.client.close()
        self.db.close()


def _sources(settings: Settings) -> tuple[Database, redis.Redis, Exchange]:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from bot.exchange.bans import RedisBans
    from bot.exchange.factory import make_exchange
    from bot.exchange.upbit import UpbitClient
    from bot.storage import Database

    db = Database(settings.database_url, connect_timeout=SOURCE_TIMEOUT_SECONDS)
    client = redis.Redis.from_url(settings.celery_backend_url,
                                  socket_timeout=SOURCE_TIMEOUT_SECONDS,
                                  socket_connect_timeout=SOURCE_TIMEOUT_SECONDS,
                                  retry=Retry(NoBackoff(), 0))
    # Live balances come from Upbit: wait out the installation's ban like every process.
    upbit = (UpbitClient.from_settings(settings, quick=True, bans=RedisBans(client))
             if settings.live else None)
    return db, client, make_exchange(settings, db, upbit=upbit, view=True)


def start(settings: Settings, *, host: str | None = None, port: int | None = None,
          now: Callable[[], datetime] = clock.now,
          wall: Callable[[], float] = time.time) -> Exporter:
    """Serve the metrics on a thread; ``host``/``port`` default to
    METRICS_HOST/METRICS_PORT (port 0: any free one), ``now`` and ``wall``
    are the collector's clocks. Raises OSError when the address cannot be bound."""
    db, client, exchange = _sources(settings)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BotCollector(settings, db, client, exchange, now=now, wall=wall))
    try:
        server, thread = start_http_server(settings.metrics_port if port is None else port,
                                           addr=settings.metrics_host if host is None else host,
                                           registry=registry)
    except OSError:
        close = getattr(exchange, "close", None)
        if close is not None:
            close()
        client.close()
        db.close()
        raise
    return Exporter(server, thread, db, client, exchange)


def serve(settings: Settings) -> int:
    """``bot metrics``: serve until a stop signal; exit code 0."""
    # Blocked here, before the server's thread starts (it inherits the mask),
    # so that the signal waits for sigwait instead of interrupting anything.
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        exporter = _bind(settings)
        if exporter is None:
            return 0
        try:
            event(log, "metrics.started", host=settings.metrics_host, port=exporter.port,
                  mode=settings.trading_mode)
            received = signal.sigwait(STOP_SIGNALS)
        finally:
            exporter.close()
        event(log, "metrics.stopped", reason=signal.Signals(received).name)
        return 0
    finally:
        with contextlib.suppress(ValueError):
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _bind(settings: Settings) -> Exporter | None:
    """The started exporter, trying again while the port is taken; None when
    a stop signal came first."""
    while True:
        try:
            return start(settings)
        except OSError as exc:
            event(log, "metrics.bind_failed", level=logging.WARNING,
                  host=settings.metrics_host, port=settings.metrics_port,
                  error=exc.strerror or type(exc).__name__, retry_in_s=BIND_RETRY_SECONDS)
        received = signal.sigtimedwait(STOP_SIGNALS, BIND_RETRY_SECONDS)
        if received is not None:
            event(log, "metrics.stopped", reason=signal.Signals(received.si_signo).name)
            return None
