"""The daemon's notion of "now", in one place so tests can control it.

Real time by default. For end-to-end tests only, ``BOT_CLOCK_SPEEDUP`` and
``BOT_CLOCK_EPOCH`` (read by :mod:`bot.config`) make every process of a test
run share a clock that runs N times faster from a common origin, so that a
minute candle closes every few seconds.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

_speedup = 1.0
_epoch = 0.0


def configure(speedup: float = 1.0, epoch: float = 0.0) -> None:
    global _speedup, _epoch
    _speedup, _epoch = float(speedup), float(epoch)


def timestamp() -> float:
    """Seconds since the Unix epoch on the daemon's clock."""
    real = time.time()
    if _speedup == 1.0:
        return real
    return _epoch + (real - _epoch) * _speedup


def now() -> datetime:
    """The current time on the daemon's clock, UTC, timezone-aware."""
    return datetime.fromtimestamp(timestamp(), UTC)


def real_seconds(simulated: float) -> float:
    """How many real seconds a span of the daemon's clock takes."""
    return simulated / _speedup


def floor_to_unit(ts: datetime, unit_minutes: int) -> datetime:
    """Start of the candle period containing ``ts``."""
    ts = ts.astimezone(UTC)
    minutes = ts.hour * 60 + ts.minute
    start = ts.replace(hour=0, minute=0, second=0, microsecond=0)
    return start + timedelta(minutes=minutes - minutes % unit_minutes)
