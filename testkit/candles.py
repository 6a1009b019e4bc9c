"""Small builders shared by tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from bot.models import Candle
from bot.storage import Database
from bot.storage import candles as candle_store

T0 = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)


def candle(market: str, ts: datetime, close, *, open_=None, high=None, low=None,
           volume="1", final: bool = True) -> Candle:
    close = Decimal(str(close))
    open_ = Decimal(str(open_)) if open_ is not None else close
    high = Decimal(str(high)) if high is not None else max(open_, close)
    low = Decimal(str(low)) if low is not None else min(open_, close)
    return Candle(market, ts, open_, high, low, close, Decimal(volume), Decimal(volume) * close,
                  1, {"final": final})


def store_closes(db: Database, market: str, closes, *, start: datetime = T0,
                 spread: str = "0", final_last: bool = True) -> list[Candle]:
    """Store one 1-minute candle per close, consecutive minutes from ``start``;
    high/low = close +/- spread."""
    rows = []
    for i, close in enumerate(closes):
        c = Decimal(str(close))
        s = Decimal(spread)
        rows.append(candle(market, start + timedelta(minutes=i), c, high=c + s, low=c - s,
                           final=final_last or i < len(closes) - 1))
    candle_store.upsert_candles(db, rows, "1m")
    return rows
