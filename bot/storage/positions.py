"""Reads the exits and the buy guards need (docs/semantics.md): a market's
stored fills as the position rules see them, its stop exits, and the highest
close since a bar. Everything comes from the database, so a restart in the
middle of a position changes nothing.

A fill's *bar* is the candle it filled in: its time floored to UNIT. (The
paper exchange stamps a fill with the start of the candle that filled it, or
the order's placing time when that is later, which floors to the same candle.)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from bot.clock import floor_to_unit
from bot.rules import STOP_EXITS, FillEvent
from bot.storage.db import Database


def fill_events(db: Database, mode: str, market: str, unit: int) -> list[FillEvent]:
    """Every fill of ``market`` in ``mode``, oldest first, for
    :func:`bot.rules.position_of`."""
    with db.cursor() as cur:
        cur.execute("SELECT traded_at, side, price, volume FROM fills WHERE mode = %s"
                    " AND market = %s ORDER BY traded_at, id", (mode, market))
        rows = cur.fetchall()
    return [FillEvent(floor_to_unit(at, unit), side, price, volume)
            for at, side, price, volume in rows]


def stop_exit_bars(db: Database, mode: str, market: str, unit: int) -> list[datetime]:
    """The bar of each stop exit (a filled sell whose decision's trigger was a
    stop-loss or a trailing stop; its first fill's bar), oldest first."""
    with db.cursor() as cur:
        cur.execute("SELECT min(f.traded_at) FROM fills f JOIN orders o ON o.id = f.order_id"
                    " JOIN decisions d ON d.id = o.decision_id"
                    " WHERE f.mode = %s AND f.market = %s AND f.side = 'ask'"
                    " AND d.trigger IN %s GROUP BY o.id ORDER BY 1",
                    (mode, market, tuple(sorted(STOP_EXITS))))
        return [floor_to_unit(row[0], unit) for row in cur.fetchall()]


def peak_close(db: Database, market: str, timeframe: str, since: datetime,
               until: datetime) -> Decimal | None:
    """The highest close of the candles starting from ``since`` through ``until``."""
    with db.cursor() as cur:
        cur.execute("SELECT max(close) FROM candles WHERE market = %s AND timeframe = %s"
                    " AND ts >= %s AND ts <= %s", (market, timeframe, since, until))
        return cur.fetchone()[0]


@dataclass(frozen=True)
class FillBar:
    """One fill with its bar and the candle of the decision behind it."""

    bar: datetime
    side: str
    price: Decimal
    volume: Decimal
    funds: Decimal
    fee: Decimal
    slippage: Decimal | None
    decision_ts: datetime | None
    trigger: str | None


def fills_by_bar(db: Database, mode: str, market: str, unit: int) -> list[FillBar]:
    """Every fill of ``market`` in ``mode`` with its bar, oldest first: the
    trader's fills in the terms a backtest reports them."""
    with db.cursor() as cur:
        cur.execute("SELECT f.traded_at, f.side, f.price, f.volume, f.funds, f.fee, f.slippage,"
                    " d.candle_ts, d.trigger FROM fills f JOIN orders o ON o.id = f.order_id"
                    " LEFT JOIN decisions d ON d.id = o.decision_id"
                    " WHERE f.mode = %s AND f.market = %s ORDER BY f.traded_at, f.id",
                    (mode, market))
        rows = cur.fetchall()
    return [FillBar(floor_to_unit(row[0], unit), *row[1:]) for row in rows]
