"""The resources a process's jobs share: the database pool, the Upbit client,
the exchange and the trader's context. Built lazily, on first use, so that
importing connects nowhere. The CLI's commands use one :class:`Resources`; a
worker's :class:`bot.worker.runtime.Runtime` is one with Redis added."""

from __future__ import annotations

from functools import cached_property

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from bot.config import Settings
from bot.exchange.bans import BanBoard, RedisBans
from bot.exchange.factory import make_exchange
from bot.exchange.protocol import Exchange
from bot.exchange.transport import RedisCounts, RequestCounter
from bot.exchange.upbit import UpbitClient
from bot.storage import Database
from bot.trading.lifecycle import TradeContext


class Resources:
    def __init__(self, settings: Settings):
        self.settings = settings

    @cached_property
    def db(self) -> Database:
        return Database(self.settings.database_url)

    @cached_property
    def upbit(self) -> UpbitClient:
        """Upbit's client: market data in both modes, orders in live mode; it
        waits out a 418 ban together with every process of the installation."""
        return UpbitClient.from_settings(self.settings, bans=self.bans, counts=self.counts)

    @cached_property
    def shared_redis(self) -> redis.Redis:
        """The ban board's and the request counts' Redis. A command gives Redis
        no second chance: while it is down, bans are this process's own."""
        return redis.Redis.from_url(self.settings.celery_backend_url, socket_timeout=2,
                                    socket_connect_timeout=2, retry=Retry(NoBackoff(), 0))

    @cached_property
    def bans(self) -> BanBoard:
        """The installation's ban board in Redis."""
        return RedisBans(self.shared_redis)

    @cached_property
    def counts(self) -> RequestCounter:
        """The installation's Upbit request counts, for the metrics exporter."""
        return RedisCounts(self.shared_redis)

    @cached_property
    def exchange(self) -> Exchange:
        """Where orders go; live mode shares :attr:`upbit` (one rate limiter)."""
        return make_exchange(self.settings, self.db,
                             upbit=self.upbit if self.settings.live else None)

    def trade_context(self) -> TradeContext:
        from bot.report.notify import notifier
        return TradeContext(self.settings, self.db, self.exchange,
                            notify=notifier(self.settings))
