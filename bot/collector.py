"""The collector job: bring each market's candles in the database up to date.

One pass per market fetches the newest page, re-stores every candle from the
newest stored one onward (so a candle first stored while in progress gets its
final values), and when the gap since the newest stored candle is longer than
a page, walks back with ``to`` until the gap is closed or
``BACKFILL_MAX_CANDLES`` is reached. The whole gap is written in one
transaction, so a pass killed half-way leaves no hole behind the newest candle.

A candle is marked ``final`` in its meta once it is known closed: a newer
candle exists in the same answer, or the clock is past its end by
``FINAL_GRACE_SECONDS``. The trader decides only on final candles.

``backfill`` fills older history (``bot backfill --days N``), page by page.
No Celery here: the task layer calls these functions.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol, TextIO

from bot import clock
from bot.errors import BotError, MalformedResponse
from bot.logs import event
from bot.models import Candle
from bot.storage import Database
from bot.storage import candles as candle_store

log = logging.getLogger("bot.collector")

PAGE = 200
FINAL_GRACE_SECONDS = 1.0


class CandleSource(Protocol):
    def candles(self, market: str, *, unit: int = 1, count: int = 200,
                to: datetime | None = None) -> list[Candle]: ...


@dataclass(frozen=True)
class CollectResult:
    market: str
    inserted: int = 0
    updated: int = 0
    newest_ts: datetime | None = None
    newest_final_ts: datetime | None = None
    requests: int = 0
    gap_closed: bool = True
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def mark_final(page: Sequence[Candle], now: datetime, unit: int) -> list[Candle]:
    """Set ``meta['final']`` on candles of one newest-first answer."""
    period = timedelta(minutes=unit)
    grace = timedelta(seconds=FINAL_GRACE_SECONDS)
    newest = page[0].ts if page else None
    out = []
    for candle in page:
        final = candle.ts != newest or candle.ts + period + grace <= now
        out.append(replace(candle, meta={**candle.meta, "final": final}))
    return out


def _fetch_back(source: CandleSource, market: str, unit: int, first: list[Candle],
                stop_at: datetime | None, limit: int) -> tuple[list[Candle], int, bool]:
    """Walk back from the first page until a candle at or before ``stop_at``
    is seen, the history ends, or ``limit`` candles are held.

    Returns (candles newest first, extra requests, reached stop_at)."""
    fetched = list(first)
    requests = 0
    while fetched and (stop_at is None or fetched[-1].ts > stop_at) and len(fetched) < limit:
        oldest = fetched[-1].ts
        page = source.candles(market, unit=unit, count=PAGE, to=oldest)
        requests += 1
        if not page:
            return fetched, requests, True  # the market's history starts here
        if page[0].ts >= oldest:
            raise MalformedResponse(f"{market}: candles before {oldest.isoformat()} returned"
                                    f" {page[0].ts.isoformat()} (to= not honoured)")
        fetched.extend(page)
        if len(page) < PAGE:
            return fetched, requests, True
    reached = stop_at is None or bool(fetched) and fetched[-1].ts <= stop_at
    return fetched, requests, reached


def collect_market(db: Database, source: CandleSource, market: str, *, unit: int = 1,
                   max_candles: int = 10080,
                   now: Callable[[], datetime] = clock.now) -> CollectResult:
    """One collect pass for one market. Raises on exchange or database errors
    (the caller decides about retries); nothing is stored on error."""
    timeframe = f"{unit}m"
    newest = candle_store.newest_ts(db, market, timeframe)
    first = source.candles(market, unit=unit, count=PAGE)
    # On an empty database, take up to max_candles of history.
    fetched, extra, reached = _fetch_back(source, market, unit, first, newest, max_candles)
    keep = [c for c in fetched if newest is None or c.ts >= newest][:max_candles]
    keep = mark_final(keep, now(), unit)
    written = candle_store.upsert_candles(db, keep, timeframe)
    newest_final = next((c.ts for c in keep if c.meta["final"]), None)
    result = CollectResult(
        market=market, inserted=written.inserted, updated=written.updated,
        newest_ts=keep[0].ts if keep else newest, newest_final_ts=newest_final,
        requests=1 + extra, gap_closed=newest is None or reached)
    if not result.gap_closed:
        event(log, "collector.gap_not_closed", level=logging.WARNING, market=market,
              stored_newest=newest, filled_from=keep[-1].ts if keep else None,
              max_candles=max_candles, hint="run `bot backfill` to fill the rest")
    event(log, "candles.stored", market=market, inserted=result.inserted,
          updated=result.updated, newest=result.newest_ts, final=result.newest_final_ts,
          requests=result.requests)
    return result


def follow_up_seconds(result: CollectResult, now: datetime, unit: int) -> float | None:
    """Seconds until another pass can confirm the last closed candle, when
    this pass stored it but could not yet call it final; else None."""
    last_closed = clock.floor_to_unit(now, unit) - timedelta(minutes=unit)
    if result.newest_ts != last_closed or result.newest_final_ts == last_closed:
        return None
    due = last_closed + timedelta(minutes=unit, seconds=FINAL_GRACE_SECONDS)
    return max(0.2, (due - now).total_seconds())


def collect(db: Database, source: CandleSource, markets: Sequence[str], *, unit: int = 1,
            max_candles: int = 10080,
            now: Callable[[], datetime] = clock.now) -> list[CollectResult]:
    """A pass over every market; one market's failure does not stop the others."""
    results = []
    for market in markets:
        try:
            results.append(collect_market(db, source, market, unit=unit,
                                          max_candles=max_candles, now=now))
        except BotError as exc:
            event(log, "collector.failed", level=logging.ERROR, market=market,
                  error=type(exc).__name__, detail=str(exc))
            results.append(CollectResult(market=market, error=f"{type(exc).__name__}: {exc}"))
    return results


@dataclass(frozen=True)
class BackfillResult:
    market: str
    inserted: int
    updated: int
    requests: int
    oldest_ts: datetime | None
    seconds: float


class Progress:
    """A progress bar on a terminal, plain lines (every 5 %) elsewhere."""

    def __init__(self, label: str, stream: TextIO | None = None):
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_step = -1
        self._start = time.monotonic()

    def update(self, share: float, note: str = "") -> None:
        """``share`` of the work done, 0..1."""
        share = min(max(share, 0.0), 1.0)
        elapsed = time.monotonic() - self._start
        if self.tty:
            bar = "#" * int(share * 30)
            self.stream.write(f"\r{self.label} [{bar:<30}] {share:6.1%} {note} {elapsed:5.0f}s")
            self.stream.flush()
            return
        step = int(share * 20)
        if step != self._last_step:
            self._last_step = step
            self.stream.write(f"{self.label}: {share:.0%} {note} ({elapsed:.0f}s)\n")
            self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def backfill(db: Database, source: CandleSource, market: str, *, days: float, unit: int = 1,
             now: Callable[[], datetime] = clock.now, progress: Progress | None = None,
             pages_per_write: int = 10) -> BackfillResult:
    """Fetch ``days`` of history back from now and upsert it, newest first.

    Idempotent: running it again (for example after it was killed) rewrites
    nothing that is already stored and fills what is missing."""
    timeframe = f"{unit}m"
    started = time.monotonic()
    moment = now()
    target = moment - timedelta(days=days)
    span = (moment - target).total_seconds()
    period = timedelta(minutes=unit)
    total = candle_store.UpsertResult(0, 0)
    pending: list[Candle] = []
    requests = 0
    to: datetime | None = None
    oldest: datetime | None = None
    while True:
        page = source.candles(market, unit=unit, count=PAGE, to=to)
        requests += 1
        if to is None:
            page = mark_final(page, moment, unit)
        else:
            page = [replace(c, meta={**c.meta, "final": True}) for c in page]
        page = [c for c in page if c.ts >= target]
        pending.extend(page)
        if page:
            oldest = page[-1].ts
            to = oldest
        # The next page's candles start at least one unit before ``oldest``: when
        # that is before ``target`` they would all be dropped, so do not ask.
        done = not page or len(page) < PAGE or oldest - period < target
        if len(pending) >= PAGE * pages_per_write or done:
            total = total + candle_store.upsert_candles(db, pending, timeframe)
            pending = []
        if progress is not None and oldest is not None:
            progress.update((moment - oldest).total_seconds() / span, f"{requests} requests")
        if done:
            break
    if progress is not None:
        progress.update(1.0, f"{requests} requests")
        progress.close()
    result = BackfillResult(market, total.inserted, total.updated, requests, oldest,
                            time.monotonic() - started)
    event(log, "candles.backfilled", market=market, inserted=result.inserted,
          updated=result.updated, requests=requests, oldest=oldest,
          seconds=round(result.seconds, 2))
    return result
