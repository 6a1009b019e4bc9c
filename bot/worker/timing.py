"""How long the worker's messages live and its tasks may run, in real
seconds: a sped-up test clock (bot.clock) shortens candle periods, not time
limits. Functions of the settings, so nothing is computed at import; the
clock is configured from the same settings when the app is (bot.worker.app).
No Celery here."""

from __future__ import annotations

from datetime import datetime, timedelta

from bot import clock
from bot.config import Settings

OPTIMIZE_EXPIRES = 3 * 3600.0
# optimize_due (bot.optimize.job.start_due_runs): Beat sends it this often (on
# the daemon's clock), and a collect pass storing at least BACKFILL_CANDLES new
# candles (the first backfill, a gap filled after an outage) sends it at once.
OPTIMIZE_DUE_SIMULATED = 15 * 60.0
MARKETS_SIMULATED = 3600.0  # Upbit's market list, warnings and ticks: hourly
BACKFILL_CANDLES = 200
_CANDLES_PER_PAGE = 200  # Upbit's page size; a collect pass backfills page by page


def period(settings: Settings) -> float:
    """One candle period."""
    return clock.real_seconds(settings.unit * 60.0)


def markets_every() -> float:
    """Real seconds between two reads of Upbit's market list (hourly)."""
    return clock.real_seconds(MARKETS_SIMULATED)


def optimize_due_every() -> float:
    return clock.real_seconds(OPTIMIZE_DUE_SIMULATED)


def limits(settings: Settings) -> dict[str, tuple[float, float]]:
    """Each task's (soft, hard) time limit; a collect pass's grows with the
    pages of history it may backfill (BACKFILL_MAX_CANDLES)."""
    pages = settings.backfill_max_candles / _CANDLES_PER_PAGE
    return {
        "collect": (max(45.0, pages / 5 + 30), max(55.0, pages / 5 + 40)),
        "markets": (60.0, 90.0),
        "each_market": (30.0, 40.0),
        "trade": (30.0, 40.0),
        "reconcile": (45.0, 55.0),
        "optimize": (1200.0, 1500.0),
        "optimize_due": (60.0, 90.0),
        "daily_summary": (60.0, 90.0),
    }


def trade_expires(settings: Settings, candle_ts: datetime) -> float:
    """Until a trade for this candle is pointless (two periods after its
    close the trader calls the data stale anyway)."""
    deadline = candle_ts + timedelta(minutes=settings.unit * 3)
    return max(1.0, clock.real_seconds((deadline - clock.now()).total_seconds()))
