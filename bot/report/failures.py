"""The "job failing repeatedly" streaks: one Redis counter per task and
market (bot/storage/keys.py), counted on every failed run and ended by the
next success, so a flapping job sends ``job.failing`` once per streak and not
once per run. The Celery signals call these (bot/worker/signals.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from bot.config import Settings
from bot.logs import event, redact
from bot.storage import keys

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)

FAILURES_TTL = 86400  # a streak nobody ended (the job stopped running) is forgotten


def note_failure(settings: Settings, client: redis.Redis, notify: Callable[..., None], task: str,
                 market: str | None, error: str, detail: str = "") -> int:
    """Count a failed run of ``task`` for ``market`` (Redis, per streak) and send
    ``job.failing`` once the streak reaches NOTIFY_FAILURES_AFTER. Returns the
    streak length (0 when Redis is down); never raises."""
    key = keys.failures(task, market)
    try:
        count = int(client.incr(key))
        client.expire(key, FAILURES_TTL)
    except Exception as exc:
        event(log, "notify.failed", level=logging.WARNING, notification="job.failing",
              error=type(exc).__name__, detail=redact(str(exc)))
        return 0
    if count == settings.notify_failures_after:
        notify("job.failing", task=task, market=market, failures=count, error=error,
               detail=detail)
    return count


def note_success(client: redis.Redis, task: str, market: str | None) -> None:
    """End ``task``'s failure streak for ``market``; never raises."""
    try:
        client.delete(keys.failures(task, market))
    except Exception as exc:
        event(log, "notify.failed", level=logging.DEBUG, notification="job.failing",
              error=type(exc).__name__, detail=redact(str(exc)))
