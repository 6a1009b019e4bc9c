"""Read-only queries for reports (``bot status``, the daily summary): fills,
the newest candle and decision, open orders, the loss-limit state, the
account's first activity and its equity then. No writes here; the accounting
itself is done above this layer, on these rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from bot.models import FillRow
from bot.storage.db import Database
from bot.storage.decisions import COLUMNS as _DECISION_COLUMNS
from bot.storage.decisions import DecisionRow


@dataclass(frozen=True)
class NewestCandle:
    ts: datetime
    close: Decimal
    final: bool


def fills(db: Database, mode: str, market: str | None = None) -> list[FillRow]:
    """Every fill of ``mode`` (one market or all), oldest first."""
    sql = ("SELECT order_id, market, side, price, volume, funds, fee, traded_at FROM fills"
           " WHERE mode = %s")
    params: list = [mode]
    if market is not None:
        sql += " AND market = %s"
        params.append(market)
    with db.cursor() as cur:
        cur.execute(sql + " ORDER BY traded_at, id", params)
        return [FillRow(*row) for row in cur.fetchall()]


def newest_candle(db: Database, market: str, timeframe: str) -> NewestCandle | None:
    with db.cursor() as cur:
        cur.execute("SELECT ts, close, coalesce((meta->>'final')::boolean, false) FROM candles"
                    " WHERE market = %s AND timeframe = %s ORDER BY ts DESC LIMIT 1",
                    (market, timeframe))
        row = cur.fetchone()
    return NewestCandle(*row) if row else None


def close_at(db: Database, market: str, timeframe: str, ts: datetime) -> Decimal | None:
    """The close of the last candle starting at or before ``ts`` (else the
    first one after it)."""
    with db.cursor() as cur:
        cur.execute("SELECT close FROM candles WHERE market = %s AND timeframe = %s"
                    " AND ts <= %s ORDER BY ts DESC LIMIT 1", (market, timeframe, ts))
        row = cur.fetchone()
        if row is None:
            cur.execute("SELECT close FROM candles WHERE market = %s AND timeframe = %s"
                        " AND ts > %s ORDER BY ts LIMIT 1", (market, timeframe, ts))
            row = cur.fetchone()
    return row[0] if row else None


def latest_decision(db: Database, mode: str, market: str) -> DecisionRow | None:
    with db.cursor() as cur:
        cur.execute(f"SELECT {_DECISION_COLUMNS} FROM decisions WHERE mode = %s AND market = %s"
                    " ORDER BY candle_ts DESC LIMIT 1", (mode, market))
        row = cur.fetchone()
    return DecisionRow(*row) if row else None


def started(db: Database, mode: str) -> datetime | None:
    """When trading in ``mode`` started: the first decision's candle or the
    first fill, whichever came first."""
    with db.cursor() as cur:
        cur.execute("SELECT least((SELECT min(candle_ts) FROM decisions WHERE mode = %s),"
                    " (SELECT min(traded_at) FROM fills WHERE mode = %s))", (mode, mode))
        return cur.fetchone()[0]


def first_equity(db: Database, mode: str) -> tuple[date, Decimal] | None:
    """The first recorded day's starting equity (the trader records it at the
    day's first decision)."""
    with db.cursor() as cur:
        cur.execute("SELECT day, start_equity FROM equity_days WHERE mode = %s"
                    " ORDER BY day LIMIT 1", (mode,))
        row = cur.fetchone()
    return (row[0], row[1]) if row else None


def equity_day(db: Database, mode: str, day: date) -> tuple[Decimal, datetime | None] | None:
    """The day's starting equity and when the loss limit halted buying (None:
    not halted), or None when nothing was recorded that day."""
    with db.cursor() as cur:
        cur.execute("SELECT start_equity, halted_at FROM equity_days WHERE mode = %s"
                    " AND day = %s", (mode, day))
        row = cur.fetchone()
    return (row[0], row[1]) if row else None
