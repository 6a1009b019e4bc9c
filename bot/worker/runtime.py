"""A worker process's resources (:class:`bot.worker.resources.Resources`) plus
Redis: the per-market locks and the heartbeats. Built lazily, once per process
(and again after a fork), so that importing never connects anywhere. No
Celery here."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from functools import cached_property

import redis

from bot import clock
from bot.config import Settings
from bot.errors import LockBusy, RedisUnavailable
from bot.exchange.bans import BanBoard, RedisBans
from bot.exchange.transport import RedisCounts, RequestCounter
from bot.logs import event
from bot.storage import keys
from bot.worker.resources import Resources

log = logging.getLogger(__name__)

LOCK_TTL = 30.0  # seconds; renewed every ttl/3 while the task runs
HEARTBEAT_EVERY = 10.0
HEARTBEAT_TTL = 3600


class Runtime(Resources):
    """A worker process's :class:`~bot.worker.resources.Resources`, with Redis for
    the per-market locks and the heartbeats."""

    def __init__(self, settings: Settings):
        super().__init__(settings)
        self.pid = os.getpid()
        clock.configure(float(settings.bot_clock_speedup), float(settings.bot_clock_epoch))

    @cached_property
    def bans(self) -> BanBoard:
        """The installation's ban board, on the worker's own Redis client."""
        return RedisBans(self.redis)

    @cached_property
    def counts(self) -> RequestCounter:
        """The installation's Upbit request counts, on the worker's own Redis client."""
        return RedisCounts(self.redis)

    @cached_property
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.settings.celery_backend_url, socket_timeout=5,
                                    socket_connect_timeout=5, health_check_interval=30)

    node = f"{socket.gethostname()}-{os.getpid()}"

    @contextlib.contextmanager
    def market_lock(self, job: str, market: str, ttl: float = LOCK_TTL,
                    wait: float = 0.0) -> Iterator[None]:
        """Hold ``job``'s lock for ``market``, waiting up to ``wait`` seconds
        for it, or raise :class:`LockBusy`.

        The lock lives ``ttl`` seconds and is renewed while the holder runs,
        so a killed holder frees it within ``ttl``; its value names this
        worker (``node``), so that the worker's next start can release what
        its previous life held (:meth:`release_own_locks`)."""
        key = keys.lock(job, market)
        try:
            lock = self.redis.lock(key, timeout=ttl, blocking=wait > 0,
                                   blocking_timeout=wait or None, sleep=0.05,
                                   thread_local=False)  # the renewing thread needs the token
            acquired = lock.acquire(token=f"{self.node}:{uuid.uuid4().hex}")
        except redis.RedisError as exc:
            raise RedisUnavailable(f"redis unavailable: {exc}") from None
        if not acquired:
            raise LockBusy(f"{job} for {market} is already running")
        done = threading.Event()

        def renew() -> None:
            while not done.wait(ttl / 3):
                with contextlib.suppress(redis.RedisError):
                    lock.reacquire()

        threading.Thread(target=renew, name=f"lock-{key}", daemon=True).start()
        try:
            yield
        finally:
            done.set()
            with contextlib.suppress(redis.RedisError):
                lock.release()

    def release_own_locks(self) -> int:
        """Delete the locks a previous run of this worker (same node name)
        held when it died; returns how many."""
        released = 0
        prefix = f"{self.node}:".encode()
        for key in self.redis.scan_iter(match=f"{keys.LOCK_PREFIX}*", count=500):
            value = self.redis.get(key)
            if value is not None and value.startswith(prefix):
                released += self.redis.delete(key)
        return released

    def beat(self, role: str) -> None:
        """Record that ``role`` is alive (for ``bot status`` and healthchecks)."""
        try:
            self.redis.set(keys.heartbeat(role), f"{time.time():.3f}",
                           ex=HEARTBEAT_TTL)
        except redis.RedisError as exc:
            event(log, "heartbeat.failed", level=logging.WARNING, role=role, error=str(exc))

    def start_heartbeat(self, role: str, every: float = HEARTBEAT_EVERY) -> threading.Thread:
        def loop() -> None:
            while True:
                self.beat(role)
                time.sleep(every)

        thread = threading.Thread(target=loop, name=f"heartbeat-{role}", daemon=True)
        thread.start()
        return thread


_runtime: Runtime | None = None


def runtime(settings: Settings | None = None) -> Runtime:
    """This process's runtime (rebuilt after a fork)."""
    global _runtime
    if _runtime is None or _runtime.pid != os.getpid():
        if settings is None:
            from bot.config import get_settings
            settings = get_settings()
        _runtime = Runtime(settings)
    return _runtime
