"""The ``decisions`` table: one row per market and candle, with its trigger
(``bot.rules``: the signal, the exit that sold, the guard that blocked a buy,
or the kill switch)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import psycopg2.extras
from psycopg2.extensions import cursor as Cursor

from bot.storage.db import Database


@dataclass(frozen=True)
class DecisionRow:
    id: int
    market: str
    candle_ts: datetime
    mode: str
    close: Decimal
    signals: dict[str, int]
    weights: dict[str, float]
    weights_version: int | None
    score: float
    action: str
    reason: str
    created_at: datetime
    trigger: str = "signal"


COLUMNS = ("id, market, candle_ts, mode, close, signals, weights, weights_version, score,"
           " action, reason, created_at, trigger")


def insert(cur: Cursor, *, market: str, candle_ts: datetime, mode: str, close: Decimal,
           signals: dict[str, int], weights: dict[str, float], weights_version: int | None,
           score: float, action: str, reason: str, trigger: str = "signal") -> int | None:
    """Record a decision; None when this market and candle already has one."""
    cur.execute(
        "INSERT INTO decisions (market, candle_ts, mode, close, signals, weights,"
        " weights_version, score, action, reason, trigger)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (market, candle_ts) DO NOTHING RETURNING id",
        (market, candle_ts, mode, close, psycopg2.extras.Json(signals),
         psycopg2.extras.Json(weights), weights_version, score, action, reason, trigger))
    row = cur.fetchone()
    return row[0] if row else None


def exists(db: Database, market: str, candle_ts: datetime) -> bool:
    with db.cursor() as cur:
        cur.execute("SELECT 1 FROM decisions WHERE market = %s AND candle_ts = %s",
                    (market, candle_ts))
        return cur.fetchone() is not None


def get(db: Database, market: str, candle_ts: datetime) -> DecisionRow | None:
    with db.cursor() as cur:
        cur.execute(f"SELECT {COLUMNS} FROM decisions WHERE market = %s AND candle_ts = %s",
                    (market, candle_ts))
        row = cur.fetchone()
    return DecisionRow(*row) if row else None


def actions(db: Database, mode: str, market: str) -> list[tuple[datetime, str, str]]:
    """``(candle_ts, action, trigger)`` of every decision, oldest first: the
    trader's per-bar record, for comparing it with a backtest."""
    with db.cursor() as cur:
        cur.execute("SELECT candle_ts, action, trigger FROM decisions WHERE mode = %s"
                    " AND market = %s ORDER BY candle_ts", (mode, market))
        return [tuple(row) for row in cur.fetchall()]


def count(db: Database, market: str | None = None) -> int:
    with db.cursor() as cur:
        if market is None:
            cur.execute("SELECT count(*) FROM decisions")
        else:
            cur.execute("SELECT count(*) FROM decisions WHERE market = %s", (market,))
        return cur.fetchone()[0]
