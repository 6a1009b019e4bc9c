"""The ``candles`` table: bulk upsert, the newest stored candle, and reads for
the trader (a closed window) and the backtest (float arrays)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import numpy as np
import psycopg2.extras

from bot.models import Candle
from bot.storage.db import Database

_COLUMNS = "market, timeframe, ts, open, high, low, close, volume, quote_volume, meta"
_VALUES = ("market", "timeframe", "ts", "open", "high", "low", "close", "volume",
           "quote_volume", "meta")
_UPSERT = f"""
INSERT INTO candles ({_COLUMNS}) VALUES %s
ON CONFLICT (market, timeframe, ts) DO UPDATE SET
    open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low,
    close = EXCLUDED.close, volume = EXCLUDED.volume,
    quote_volume = EXCLUDED.quote_volume, meta = EXCLUDED.meta
WHERE (candles.open, candles.high, candles.low, candles.close, candles.volume,
       candles.quote_volume, candles.meta)
      IS DISTINCT FROM
      (EXCLUDED.open, EXCLUDED.high, EXCLUDED.low, EXCLUDED.close, EXCLUDED.volume,
       EXCLUDED.quote_volume, EXCLUDED.meta)
RETURNING (xmax = 0) AS inserted
"""
_PAGE = 1000


@dataclass(frozen=True)
class UpsertResult:
    inserted: int
    updated: int

    def __add__(self, other: UpsertResult) -> UpsertResult:
        return UpsertResult(self.inserted + other.inserted, self.updated + other.updated)


def _row(candle: Candle, timeframe: str) -> tuple:
    return (candle.market, timeframe, candle.ts, candle.open, candle.high, candle.low,
            candle.close, candle.volume, candle.quote_volume,
            psycopg2.extras.Json(candle.meta))


def upsert_candles(db: Database, candles: Sequence[Candle], timeframe: str) -> UpsertResult:
    """Insert new candles and update stored ones whose values changed, in one
    transaction. Unchanged rows are not rewritten."""
    if not candles:
        return UpsertResult(0, 0)
    # A page must not hold one key twice (ON CONFLICT cannot touch a row twice).
    unique = {(c.market, c.ts): c for c in candles}
    rows = [_row(c, timeframe) for c in unique.values()]
    with db.cursor() as cur:
        flags = psycopg2.extras.execute_values(cur, _UPSERT, rows, page_size=_PAGE, fetch=True)
    inserted = sum(1 for (was_insert,) in flags if was_insert)
    return UpsertResult(inserted, len(flags) - inserted)


def newest_ts(db: Database, market: str, timeframe: str) -> datetime | None:
    with db.cursor() as cur:
        cur.execute("SELECT max(ts) FROM candles WHERE market = %s AND timeframe = %s",
                    (market, timeframe))
        return cur.fetchone()[0]


def oldest_ts(db: Database, market: str, timeframe: str) -> datetime | None:
    with db.cursor() as cur:
        cur.execute("SELECT min(ts) FROM candles WHERE market = %s AND timeframe = %s",
                    (market, timeframe))
        return cur.fetchone()[0]


def count(db: Database, market: str, timeframe: str) -> int:
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM candles WHERE market = %s AND timeframe = %s",
                    (market, timeframe))
        return cur.fetchone()[0]


def load_candles(db: Database, market: str, timeframe: str, *, since: datetime | None = None,
                 until: datetime | None = None, limit: int | None = None) -> list[Candle]:
    """Candles with ``since <= ts < until``, oldest first; with ``limit``, the
    newest ``limit`` of them."""
    unit = int(timeframe.rstrip("m"))
    clauses = ["market = %s", "timeframe = %s"]
    params: list = [market, timeframe]
    if since is not None:
        clauses.append("ts >= %s")
        params.append(since)
    if until is not None:
        clauses.append("ts < %s")
        params.append(until)
    sql = (f"SELECT market, ts, open, high, low, close, volume, quote_volume, meta"
           f" FROM candles WHERE {' AND '.join(clauses)} ORDER BY ts DESC")
    if limit is not None:
        sql += " LIMIT %s"
        params.append(limit)
    with db.cursor() as cur:
        cur.execute(sql, params)
        rows = cur.fetchall()
    rows.reverse()
    return [Candle(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], unit, r[8]) for r in rows]


@dataclass(frozen=True)
class CandleArrays:
    """Candles as float arrays for the numeric engines; ``ts`` as int64
    seconds since the epoch (UTC)."""

    ts: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __len__(self) -> int:
        return len(self.ts)


def load_arrays(db: Database, market: str, timeframe: str, *, since: datetime | None = None,
                until: datetime | None = None) -> CandleArrays:
    """Candles ``since <= ts < until`` as float arrays, oldest first; the
    conversion happens in SQL so that no Decimal is built per value."""
    clauses = ["market = %s", "timeframe = %s"]
    params: list = [market, timeframe]
    if since is not None:
        clauses.append("ts >= %s")
        params.append(since)
    if until is not None:
        clauses.append("ts < %s")
        params.append(until)
    sql = ("SELECT extract(epoch FROM ts)::bigint, open::float8, high::float8, low::float8,"
           " close::float8, volume::float8 FROM candles WHERE " + " AND ".join(clauses)
           + " ORDER BY ts")
    with db.cursor() as cur:
        cur.execute(sql, params)
        rows = cur.fetchall()
    if not rows:
        empty = np.empty(0)
        return CandleArrays(np.empty(0, dtype=np.int64), empty, empty, empty, empty, empty)
    data = np.array(rows, dtype=np.float64)
    return CandleArrays(data[:, 0].astype(np.int64), data[:, 1].copy(), data[:, 2].copy(),
                        data[:, 3].copy(), data[:, 4].copy(), data[:, 5].copy())


def day_open(db: Database, market: str, timeframe: str, day_start: datetime,
             until: datetime) -> Decimal | None:
    """Open of the first stored candle of the UTC day starting at ``day_start``
    (with ts < ``until``), or None."""
    with db.cursor() as cur:
        cur.execute(
            "SELECT open FROM candles WHERE market = %s AND timeframe = %s"
            " AND ts >= %s AND ts < %s ORDER BY ts LIMIT 1",
            (market, timeframe, day_start, until))
        row = cur.fetchone()
    return row[0] if row else None


def latest_closes(db: Database, markets: Sequence[str], timeframe: str) -> dict[str, Decimal]:
    """The newest stored close of each market."""
    if not markets:
        return {}
    with db.cursor() as cur:
        cur.execute("SELECT DISTINCT ON (market) market, close FROM candles"
                    " WHERE market = ANY(%s) AND timeframe = %s ORDER BY market, ts DESC",
                    (list(markets), timeframe))
        return dict(cur.fetchall())
