"""Every Redis key the daemon writes, in one place (the database's tables are
the rest of this package). All start with ``bot:``; Celery's own keys are
Celery's."""

from __future__ import annotations

HEARTBEAT_PREFIX = "bot:heartbeat:"  # + the worker's role(s), e.g. collector
LOCK_PREFIX = "bot:lock:"  # + job:market, a per-market job lock
BEAT_LOCK = "bot:beat:lock"  # the single-Beat lock
FAILURES_PREFIX = "bot:failures:"  # + task:market, a job's failure streak
UPBIT_BAN = "bot:upbit:ban"  # Upbit's ban in force (bot/exchange/bans.py)
# Hashes of ratelimit group -> count, added to by bot/exchange/transport.py's
# RedisCounts and read by the metrics exporter (bot/report/metrics.py).
UPBIT_REQUESTS = "bot:upbit:requests"  # requests sent to Upbit
UPBIT_RATE_LIMITED = "bot:upbit:rate_limited"  # of those, answered 429
UPBIT_BANNED = "bot:upbit:banned"  # of those, answered 418


def heartbeat(role: str) -> str:
    return f"{HEARTBEAT_PREFIX}{role}"


def lock(job: str, market: str) -> str:
    return f"{LOCK_PREFIX}{job}:{market}"


def failures(task: str, market: str | None) -> str:
    return f"{FAILURES_PREFIX}{task}:{market or '-'}"
