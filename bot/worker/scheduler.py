"""Celery Beat's schedule and its single-Beat lock; Beat is started as
``celery -A bot.worker.app beat``, whose configuration holds this schedule.

Entries come from COLLECT_SCHEDULE, TRADE_SCHEDULE, RECONCILE_SCHEDULE and
OPTIMIZE_SCHEDULE (5-field crontab in TIMEZONE, or a number of seconds), one
per market for collect, trade and optimize. Every entry expires: a message not
consumed within its period is dropped rather than run late. Beat's own state
lives in the file given with ``-s`` (a volume under docker compose). After
downtime Beat sends each overdue entry once, not once per missed run.

Only one Beat may run: at start it takes a Redis lock that it refreshes while
alive and releases when it stops cleanly; a second Beat says who holds the
lock and when it expires, waits, and exits with a clear message if the lock
is still held after its TTL (a live Beat holds it).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TypedDict

import redis
from celery import signals
from celery.beat import Service
from celery.schedules import crontab, schedule

from bot.config import Settings
from bot.logs import event, set_role
from bot.storage import keys
from bot.worker.app import settings
from bot.worker.timing import OPTIMIZE_EXPIRES, markets_every, optimize_due_every, period

log = logging.getLogger(__name__)

BEAT_LOCK_TTL = 30


def parse_schedule(text: str) -> schedule:
    """``'* * * * *'`` -> crontab; ``'30'`` -> every 30 seconds."""
    try:
        seconds = float(text)
    except ValueError:
        minute, hour, day_of_month, month, day_of_week = text.split()
        return crontab(minute=minute, hour=hour, day_of_month=day_of_month,
                       month_of_year=month, day_of_week=day_of_week)
    return schedule(timedelta(seconds=seconds))


def _expires(entry: schedule, fallback: float) -> float:
    if isinstance(entry, crontab):
        return fallback
    return max(1.0, min(fallback, entry.run_every.total_seconds()))


class BeatEntry(TypedDict, total=False):
    task: str
    schedule: schedule
    args: tuple[str, ...]
    options: dict[str, float]


def build_beat_schedule(current: Settings) -> dict[str, BeatEntry]:
    """Celery's ``beat_schedule`` for these settings (bot.worker.app's configuration)."""
    every_period = period(current)
    due_every = optimize_due_every()
    collect_every = parse_schedule(current.collect_schedule)
    trade_every = parse_schedule(current.trade_schedule)
    reconcile_every = parse_schedule(current.reconcile_schedule)
    optimize_every = parse_schedule(current.optimize_schedule)
    entries: dict[str, BeatEntry] = {
        "reconcile": {"task": "reconcile", "schedule": reconcile_every,
                      "options": {"expires": _expires(reconcile_every, every_period)}},
        "daily summary": {"task": "daily_summary",
                          "schedule": parse_schedule(current.daily_summary_schedule),
                          "options": {"expires": 3600}},
        # what Upbit says of the markets: warnings, ticks, fees (bot.data.markets)
        "markets": {"task": "markets", "schedule": schedule(timedelta(seconds=markets_every())),
                    "options": {"expires": markets_every()}},
        # markets without a judged optimizer run for a day (bot.optimize.job.due_markets)
        "optimize due": {"task": "optimize_due",
                         "schedule": schedule(timedelta(seconds=due_every)),
                         "options": {"expires": due_every}},
    }
    if current.markets_top:
        # The set changes hourly (bot.data.markets.choose): each entry fans out
        # over the markets of the moment.
        for task, every in (("collect", collect_every), ("trade", trade_every),
                            ("optimize", optimize_every)):
            expires = OPTIMIZE_EXPIRES if task == "optimize" else _expires(every, every_period)
            entries[f"{task} each market"] = {
                "task": "each_market", "schedule": every, "args": (task, expires),
                "options": {"expires": _expires(every, every_period)}}
    for market in current.markets:
        entries[f"collect {market}"] = {
            "task": "collect", "schedule": collect_every, "args": (market,),
            "options": {"expires": _expires(collect_every, every_period)}}
        entries[f"trade {market}"] = {
            "task": "trade", "schedule": trade_every, "args": (market,),
            "options": {"expires": _expires(trade_every, every_period)}}
        entries[f"optimize {market}"] = {
            "task": "optimize", "schedule": optimize_every, "args": (market,),
            "options": {"expires": OPTIMIZE_EXPIRES}}
    return entries



class BeatLock:
    """The single-Beat lock: a Redis key holding its owner's token, taken
    with NX and expiring after BEAT_LOCK_TTL unless renewed. Renewing and
    releasing check the token in one script, so a Beat never extends or
    deletes a lock another Beat took."""

    # 1: renewed (or taken again after it expired); 0: another Beat holds it.
    _RENEW = ("if redis.call('get', KEYS[1]) == ARGV[1] then"
              " return redis.call('expire', KEYS[1], ARGV[2])"
              " elseif redis.call('set', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return 1"
              " else return 0 end")
    _RELEASE = ("if redis.call('get', KEYS[1]) == ARGV[1] then"
                " return redis.call('del', KEYS[1]) else return 0 end")

    def __init__(self, client: redis.Redis, token: str, key: str = keys.BEAT_LOCK,
                 ttl: int = BEAT_LOCK_TTL):
        self.client, self.token, self.key, self.ttl = client, token, key, ttl
        self.stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def take(self) -> bool:
        return bool(self.client.set(self.key, self.token, nx=True, ex=self.ttl))

    def holder(self) -> tuple[str | None, int]:
        """The token holding the lock and the seconds until it expires."""
        with self.client.pipeline() as pipe:
            value, ttl = pipe.get(self.key).ttl(self.key).execute()
        return (value.decode() if value else None), max(0, int(ttl))

    def renew(self) -> bool:
        return bool(self.client.eval(self._RENEW, 1, self.key, self.token, self.ttl))

    def release(self) -> bool:
        """Delete the lock if it is still ours; True when it was."""
        return bool(self.client.eval(self._RELEASE, 1, self.key, self.token))

    def hold(self, on_beat: Callable[[], None] | None = None) -> None:
        """Renew the lock every TTL/3 seconds in a thread, until :meth:`stop`."""
        def loop() -> None:
            while not self.stopped.wait(self.ttl / 3):
                try:
                    if not self.renew():
                        holder, _ = self.holder()
                        event(log, "beat.lock_lost", level=logging.ERROR, holder=holder,
                              detail="another Beat took the lock; this one stops")
                        os.kill(os.getpid(), signal.SIGTERM)  # Beat's own clean stop
                        return
                    if on_beat is not None:
                        on_beat()
                except redis.RedisError as exc:
                    event(log, "beat.lock_failed", level=logging.WARNING, error=str(exc))
        self._thread = threading.Thread(target=loop, daemon=True, name="beat-lock")
        self._thread.start()

    def stop(self) -> None:
        """Stop renewing (waiting for a renewal under way), then release."""
        self.stopped.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(10)
        try:
            released = self.release()
        except redis.RedisError as exc:
            event(log, "beat.stopped", level=logging.WARNING, lock="kept", error=str(exc),
                  detail=f"the lock could not be released: it expires within {self.ttl} s")
            return
        event(log, "beat.stopped", lock="released" if released else "not ours")


def _heartbeat() -> None:
    from bot.worker.runtime import runtime
    runtime(settings()).beat("beat")


def _take_beat_lock(lock: BeatLock, patience: float) -> bool:
    """Take the lock, waiting up to ``patience`` seconds for it; say once
    who holds it and when it expires (a Beat killed without a clean stop
    leaves its lock until then)."""
    deadline = time.monotonic() + patience
    said = None
    while True:
        try:
            if lock.take():
                return True
            holder, expires_in = lock.holder()
            if holder is not None and holder != said:
                event(log, "beat.waiting", level=logging.WARNING, holder=holder,
                      expires_in_s=expires_in,
                      detail="another Beat holds the lock; waiting until it expires")
                said = holder
        except redis.RedisError as exc:
            event(log, "beat.waiting", level=logging.WARNING, error=str(exc))
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.5)


@signals.beat_init.connect
def _beat_init(sender: Service, **_: object) -> None:
    set_role("beat")
    current = settings()
    client = redis.Redis.from_url(current.celery_backend_url, socket_timeout=5)
    host = getattr(sender, "hostname", None) or socket.gethostname()
    token = f"{host}-{os.getpid()}-{time.time():.0f}"  # who holds it, for beat.waiting
    lock = BeatLock(client, token)
    # A live holder renews its lock: waiting longer than its TTL means one runs.
    if not _take_beat_lock(lock, BEAT_LOCK_TTL + 5):
        event(log, "beat.refused", level=logging.ERROR,
              detail="another Beat holds the lock; only one may run")
        raise SystemExit(1)
    lock.hold(on_beat=_heartbeat)
    # Beat leaves through SystemExit (its SIGTERM/SIGINT handler) or an
    # error: either way the interpreter exits normally and runs this.
    atexit.register(lock.stop)
    with contextlib.suppress(redis.RedisError):
        _heartbeat()
    event(log, "beat.started", entries=len(sender.app.conf.beat_schedule),
          **current.public_summary())
