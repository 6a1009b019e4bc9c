"""Celery Beat's schedule: started as ``celery -A bot.scheduler beat``.

Entries come from COLLECT_SCHEDULE, TRADE_SCHEDULE, RECONCILE_SCHEDULE and
OPTIMIZE_SCHEDULE (5-field crontab in TIMEZONE, or a number of seconds), one
per market for collect, trade and optimize. Every entry expires: a message not
consumed within its period is dropped rather than run late. Beat's own state
lives in the file given with ``-s`` (a volume under docker compose). After
downtime Beat sends each overdue entry once, not once per missed run.

Only one Beat may run: at start it takes a Redis lock that it refreshes while
alive; a second Beat exits with a clear message.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from typing import Any

import redis
from celery import signals
from celery.schedules import crontab, schedule

from bot.config import Settings
from bot.logs import event, set_role
from bot.tasks import OPTIMIZE_EXPIRES, PERIOD, SETTINGS, app

log = logging.getLogger("bot.scheduler")

BEAT_LOCK = "bot:beat:lock"
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


def build_beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    collect_every = parse_schedule(settings.collect_schedule)
    trade_every = parse_schedule(settings.trade_schedule)
    reconcile_every = parse_schedule(settings.reconcile_schedule)
    optimize_every = parse_schedule(settings.optimize_schedule)
    entries: dict[str, dict[str, Any]] = {
        "reconcile": {"task": "reconcile", "schedule": reconcile_every,
                      "options": {"expires": _expires(reconcile_every, PERIOD)}},
        "daily summary": {"task": "daily_summary",
                          "schedule": parse_schedule(settings.daily_summary_schedule),
                          "options": {"expires": 3600}},
    }
    for market in settings.markets:
        entries[f"collect {market}"] = {
            "task": "collect", "schedule": collect_every, "args": (market,),
            "options": {"expires": _expires(collect_every, PERIOD)}}
        entries[f"trade {market}"] = {
            "task": "trade", "schedule": trade_every, "args": (market,),
            "options": {"expires": _expires(trade_every, PERIOD)}}
        entries[f"optimize {market}"] = {
            "task": "optimize", "schedule": optimize_every, "args": (market,),
            "options": {"expires": OPTIMIZE_EXPIRES}}
    return entries


app.conf.beat_schedule = build_beat_schedule(SETTINGS)


def _hold_beat_lock(client: redis.Redis, token: str) -> None:
    while True:
        time.sleep(BEAT_LOCK_TTL / 3)
        try:
            if client.get(BEAT_LOCK) in (None, token.encode()):
                client.set(BEAT_LOCK, token, ex=BEAT_LOCK_TTL)
            from bot.runtime import runtime
            runtime(SETTINGS).beat("beat")
        except redis.RedisError as exc:
            event(log, "beat.lock_failed", level=logging.WARNING, error=str(exc))


@signals.beat_init.connect
def _beat_init(sender: Any = None, **_: Any) -> None:
    set_role("beat")
    client = redis.Redis.from_url(SETTINGS.celery_backend_url, socket_timeout=5)
    token = f"{sender.hostname if hasattr(sender, 'hostname') else 'beat'}-{time.time()}"
    for _attempt in range(BEAT_LOCK_TTL + 5):
        try:
            if client.set(BEAT_LOCK, token, nx=True, ex=BEAT_LOCK_TTL):
                break
        except redis.RedisError as exc:
            event(log, "beat.waiting", level=logging.WARNING, error=str(exc))
        time.sleep(1)
    else:
        event(log, "beat.refused", level=logging.ERROR,
              detail="another Beat holds the lock; only one may run")
        raise SystemExit(1)
    threading.Thread(target=_hold_beat_lock, args=(client, token), daemon=True,
                     name="beat-lock").start()
    event(log, "beat.started", entries=len(app.conf.beat_schedule),
          **SETTINGS.public_summary())
