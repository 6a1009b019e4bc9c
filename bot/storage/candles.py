"""The ``candles`` table: bulk upsert, the newest stored candle, and reads for
the trader (a closed window) and the backtest (float arrays); and
``candle_coverage``, the ranges of history known to be stored completely."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import numpy as np
import psycopg2.extensions
import psycopg2.extras

from bot.models import Candle, CandleArrays
from bot.storage.db import Database

_COLUMNS = "market, timeframe, ts, open, high, low, close, volume, quote_volume, meta"
# What makes a stored row "changed": any of these differs (NULL-safe, jsonb equality).
_ON_CONFLICT = """
ON CONFLICT (market, timeframe, ts) DO UPDATE SET
    open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low,
    close = EXCLUDED.close, volume = EXCLUDED.volume,
    quote_volume = EXCLUDED.quote_volume, meta = EXCLUDED.meta
WHERE (candles.open, candles.high, candles.low, candles.close, candles.volume,
       candles.quote_volume, candles.meta)
      IS DISTINCT FROM
      (EXCLUDED.open, EXCLUDED.high, EXCLUDED.low, EXCLUDED.close, EXCLUDED.volume,
       EXCLUDED.quote_volume, EXCLUDED.meta)
  -- a closed candle's final values are never replaced by a view of it in progress
  -- (a backfill's page fetched before the collector stored the close, say)
  AND NOT (coalesce((candles.meta->>'final')::boolean, false)
           AND NOT coalesce((EXCLUDED.meta->>'final')::boolean, false))
RETURNING (xmax = 0) AS inserted
"""
_UPSERT = f"INSERT INTO candles ({_COLUMNS}) VALUES %s{_ON_CONFLICT}"
_PAGE = 1000

# The large-batch path: COPY into a staging table dropped at commit, then one
# INSERT ... SELECT with the very same ON CONFLICT clause; only the counts come back.
_STAGE = "candles_stage"
_CREATE_STAGE = f"""
CREATE TEMP TABLE {_STAGE} (
    market text, timeframe text, ts timestamptz, open numeric, high numeric, low numeric,
    close numeric, volume numeric, quote_volume numeric, meta jsonb
) ON COMMIT DROP
"""
_COPY_STAGE = f"COPY {_STAGE} ({_COLUMNS}) FROM STDIN"
_MERGE_STAGE = f"""
WITH written AS (
    INSERT INTO candles ({_COLUMNS}) SELECT {_COLUMNS} FROM {_STAGE}{_ON_CONFLICT})
SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM written
"""
# From this many distinct candles on, COPY is used. bench/bench_ingest.py on a
# 2-CPU Xeon, PostgreSQL 15: the two paths break even at 100-150 candles a call
# (the staging table costs ~2 ms); below, execute_values is faster (2 candles:
# 4 ms against 7 ms); at 200 COPY is ~15 % faster, at 2,000 twice as fast, and
# at 10^5..10^6 candles 2.5-3.5x (80,000-130,000 rows/s against 31,000-38,000).
COPY_THRESHOLD = 200
_COPY_ROWS_PER_READ = 2000
# COPY's text format: these characters must be escaped inside a value.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"})


@dataclass(frozen=True)
class UpsertResult:
    inserted: int
    updated: int

    def __add__(self, other: UpsertResult) -> UpsertResult:
        return UpsertResult(self.inserted + other.inserted, self.updated + other.updated)


def upsert_candles(db: Database, candles: Sequence[Candle], timeframe: str) -> UpsertResult:
    """Insert new candles and update stored ones whose values changed, in one
    transaction. Unchanged rows are not rewritten. A key given twice keeps its
    last candle."""
    if not candles:
        return UpsertResult(0, 0)
    with db.cursor() as cur:
        return _upsert(cur, candles, timeframe)


def _upsert(cur: psycopg2.extensions.cursor, candles: Sequence[Candle],
            timeframe: str) -> UpsertResult:
    if not candles:
        return UpsertResult(0, 0)
    # A statement must not hold one key twice (ON CONFLICT cannot touch a row twice).
    unique = list({(c.market, c.ts): c for c in candles}.values())
    if len(unique) >= COPY_THRESHOLD:
        return _upsert_copy(cur, unique, timeframe)
    return _upsert_values(cur, unique, timeframe)


@dataclass(frozen=True)
class Held:
    """Every candle of ``market`` with ``start <= ts < end`` is stored."""

    market: str
    start: datetime
    end: datetime


# Two-key advisory locks (a key space apart from migrate.py's one-key lock):
# this class and hashtext(market/timeframe) serialise merges of one market's ranges.
_HELD_LOCK_CLASS = 0x5B0C
_LOCK_HELD = "SELECT pg_advisory_xact_lock(%s, hashtext(%s))"
_TAKE_HELD = """
DELETE FROM candle_coverage
WHERE market = %s AND timeframe = %s AND from_ts <= %s AND to_ts >= %s
RETURNING from_ts, to_ts
"""
_PUT_HELD = ("INSERT INTO candle_coverage (market, timeframe, from_ts, to_ts)"
             " VALUES (%s, %s, %s, %s)")


def upsert_candles_held(db: Database, candles: Sequence[Candle], timeframe: str,
                        held: Held | None) -> UpsertResult:
    """:func:`upsert_candles`, and in the same transaction record ``held``
    (merged with the ranges it overlaps or touches), so that a range is never
    recorded without its candles."""
    with db.cursor() as cur:
        result = _upsert(cur, candles, timeframe)
        if held is not None and held.start < held.end:
            _merge_held(cur, held, timeframe)
        return result


def _merge_held(cur: psycopg2.extensions.cursor, held: Held, timeframe: str) -> None:
    cur.execute(_LOCK_HELD, (_HELD_LOCK_CLASS, f"{held.market}/{timeframe}"))
    cur.execute(_TAKE_HELD, (held.market, timeframe, held.end, held.start))
    ranges = cur.fetchall()
    start = min([held.start, *(r[0] for r in ranges)])
    end = max([held.end, *(r[1] for r in ranges)])
    cur.execute(_PUT_HELD, (held.market, timeframe, start, end))


def held_start(db: Database, market: str, timeframe: str, end: datetime) -> datetime | None:
    """Where the stored range that reaches ``end`` starts (every candle from
    there to before ``end`` is stored), or None when the stretch just before
    ``end`` is not known to be held."""
    with db.cursor() as cur:
        cur.execute("SELECT min(from_ts) FROM candle_coverage WHERE market = %s"
                    " AND timeframe = %s AND from_ts < %s AND to_ts >= %s",
                    (market, timeframe, end, end))
        return cur.fetchone()[0]


def held_ranges(db: Database, market: str, timeframe: str) -> list[tuple[datetime, datetime]]:
    """Every recorded ``[start, end)`` of ``market``, oldest first."""
    with db.cursor() as cur:
        cur.execute("SELECT from_ts, to_ts FROM candle_coverage WHERE market = %s"
                    " AND timeframe = %s ORDER BY from_ts", (market, timeframe))
        return cur.fetchall()


def _upsert_values(cur: psycopg2.extensions.cursor, unique: Sequence[Candle], timeframe: str,
                   page_size: int = _PAGE) -> UpsertResult:
    """Small batches: multi-row INSERT ... VALUES pages (no key twice in ``unique``)."""
    rows = [_row(c, timeframe) for c in unique]
    flags = psycopg2.extras.execute_values(cur, _UPSERT, rows, page_size=page_size, fetch=True)
    inserted = sum(1 for (was_insert,) in flags if was_insert)
    return UpsertResult(inserted, len(flags) - inserted)


def _upsert_copy(cur: psycopg2.extensions.cursor, unique: Sequence[Candle],
                 timeframe: str) -> UpsertResult:
    """Large batches: COPY into a staging table, then one INSERT ... SELECT ...
    ON CONFLICT with the same clause as the small path (no key twice in ``unique``)."""
    cur.execute(_CREATE_STAGE)
    cur.copy_expert(_COPY_STAGE, _CopySource(unique, timeframe))
    cur.execute(_MERGE_STAGE)
    inserted, updated = cur.fetchone()
    return UpsertResult(inserted, updated)


def _row(candle: Candle, timeframe: str) -> tuple:
    return (candle.market, timeframe, candle.ts, candle.open, candle.high, candle.low,
            candle.close, candle.volume, candle.quote_volume,
            psycopg2.extras.Json(candle.meta))


def _copy_text(value: object) -> str:
    """A text value in COPY's text format (backslash, newline, CR and tab escaped)."""
    return "\\N" if value is None else str(value).translate(_COPY_ESCAPES)


def _copy_number(value: object) -> str:
    """A number as psycopg2 adapts a Decimal: ``str()`` (an exponent, as in
    ``1E+7``, is read exactly by numeric)."""
    return "\\N" if value is None else str(value)


class _CopySource:
    """A file-like ``read()`` over candles as COPY text lines, a few thousand
    rows at a time (a million candles are never one string). Each value is
    written as psycopg2 adapts it for the small path: ``str()`` of a number,
    ISO 8601 for ``ts`` (a naive one is read in the session's time zone, as
    psycopg2's adaptation is), ``json.dumps`` for meta."""

    def __init__(self, candles: Sequence[Candle], timeframe: str):
        self._candles = candles
        self._timeframe = _copy_text(timeframe)
        self._markets: dict[str, str] = {}
        self._next = 0

    def read(self, size: int = -1) -> str:
        start = self._next
        chunk = self._candles[start:start + _COPY_ROWS_PER_READ]
        self._next = start + len(chunk)
        return "".join(map(self._line, chunk))

    def _line(self, c: Candle) -> str:
        market = self._markets.get(c.market)
        if market is None:
            market = self._markets[c.market] = _copy_text(c.market)
        num = _copy_number
        # json.dumps escapes every control character, so only backslashes remain.
        meta = json.dumps(c.meta).replace("\\", "\\\\")
        ts = "\\N" if c.ts is None else c.ts.isoformat()
        return (f"{market}\t{self._timeframe}\t{ts}\t{num(c.open)}\t{num(c.high)}\t"
                f"{num(c.low)}\t{num(c.close)}\t{num(c.volume)}\t{num(c.quote_volume)}\t"
                f"{meta}\n")


def newest_ts(db: Database, market: str, timeframe: str) -> datetime | None:
    with db.cursor() as cur:
        cur.execute("SELECT max(ts) FROM candles WHERE market = %s AND timeframe = %s",
                    (market, timeframe))
        return cur.fetchone()[0]


def count(db: Database, market: str, timeframe: str) -> int:
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM candles WHERE market = %s AND timeframe = %s",
                    (market, timeframe))
        return cur.fetchone()[0]


def _range(market: str, timeframe: str, since: datetime | None,
           until: datetime | None) -> tuple[str, list]:
    """WHERE clause and parameters for one market's candles, since <= ts < until."""
    clauses = ["market = %s", "timeframe = %s"]
    params: list = [market, timeframe]
    if since is not None:
        clauses.append("ts >= %s")
        params.append(since)
    if until is not None:
        clauses.append("ts < %s")
        params.append(until)
    return " AND ".join(clauses), params


def load_candles(db: Database, market: str, timeframe: str, *, since: datetime | None = None,
                 until: datetime | None = None, limit: int | None = None) -> list[Candle]:
    """Candles with ``since <= ts < until``, oldest first; with ``limit``, the
    newest ``limit`` of them."""
    unit = int(timeframe.rstrip("m"))
    where, params = _range(market, timeframe, since, until)
    sql = ("SELECT market, ts, open, high, low, close, volume, quote_volume, meta"
           f" FROM candles WHERE {where} ORDER BY ts DESC")
    if limit is not None:
        sql += " LIMIT %s"
        params.append(limit)
    with db.cursor() as cur:
        cur.execute(sql, params)
        rows = cur.fetchall()
    rows.reverse()
    return [Candle(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], unit, r[8]) for r in rows]


def load_arrays(db: Database, market: str, timeframe: str, *, since: datetime | None = None,
                until: datetime | None = None) -> CandleArrays:
    """Candles ``since <= ts < until`` as float arrays, oldest first; the
    conversion happens in SQL so that no Decimal is built per value."""
    where, params = _range(market, timeframe, since, until)
    sql = ("SELECT extract(epoch FROM ts)::bigint, open::float8, high::float8, low::float8,"
           f" close::float8, volume::float8 FROM candles WHERE {where} ORDER BY ts")
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
