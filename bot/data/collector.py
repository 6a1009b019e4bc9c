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

``backfill`` fills older history (``bot backfill --days N``), page by page,
fetching only what is missing. Minutes without trades have no candle, so a
stretch without candles in the database says nothing by itself: instead each
walk through Upbit's pages records the range it proved stored (a full page
answered for ``to`` holds every candle from its oldest to before ``to``) in
``candle_coverage``, in the transaction that stores the candles; the collector
records its passes the same way. Backfill always fetches the newest page, then
jumps over recorded ranges. The newest candle is left out of a range while it
is in progress, so a later run fetches it again. No Celery here: the task
layer calls these functions.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol, TextIO

from bot import clock
from bot.errors import BotError, MalformedResponse, NotFound, UnknownMarket
from bot.logs import event
from bot.models import Candle, timeframe_of
from bot.storage import Database
from bot.storage import candles as candle_store

log = logging.getLogger(__name__)

PAGE = 200
FINAL_GRACE_SECONDS = 1.0
# A short page means Upbit has nothing older: the range it proves starts here.
HISTORY_START = datetime(1970, 1, 1, tzinfo=UTC)


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
    unknown_market: bool = False

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


def _page(source: CandleSource, market: str, unit: int,
          to: datetime | None = None) -> list[Candle]:
    """One page of candles; a 404 for candles means Upbit has no such market."""
    try:
        return source.candles(market, unit=unit, count=PAGE, to=to)
    except UnknownMarket:
        raise
    except NotFound as exc:
        raise UnknownMarket(market, name=exc.name, status=exc.status, method=exc.method,
                            path=exc.path) from None


def _held_end(newest_first: Sequence[Candle], unit: int) -> datetime:
    """End of the range a walk's newest page proves stored: past its newest
    candle once that is final, else before it (a later pass must fetch it again)."""
    top = newest_first[0]
    return top.ts + timedelta(minutes=unit) if top.meta.get("final") else top.ts


def _fetch_back(source: CandleSource, market: str, unit: int, first: list[Candle],
                stop_at: datetime | None, limit: int) -> tuple[list[Candle], int, bool]:
    """Walk back from the first page until a candle at or before ``stop_at``
    is seen, the history ends, or ``limit`` candles are held.

    Returns (candles newest first, extra requests, reached stop_at)."""
    fetched = list(first)
    requests = 0
    while fetched and (stop_at is None or fetched[-1].ts > stop_at) and len(fetched) < limit:
        oldest = fetched[-1].ts
        page = _page(source, market, unit, oldest)
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
    timeframe = timeframe_of(unit)
    newest = candle_store.newest_ts(db, market, timeframe)
    first = _page(source, market, unit)
    # On an empty database, take up to max_candles of history.
    fetched, extra, reached = _fetch_back(source, market, unit, first, newest, max_candles)
    keep = [c for c in fetched if newest is None or c.ts >= newest][:max_candles]
    keep = mark_final(keep, now(), unit)
    # ``keep`` is one unbroken stretch of Upbit's answers: all of it is held.
    held = candle_store.Held(market, keep[-1].ts, _held_end(keep, unit)) if keep else None
    written = candle_store.upsert_candles_held(db, keep, timeframe, held)
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
            results.append(CollectResult(market=market, error=f"{type(exc).__name__}: {exc}",
                                         unknown_market=isinstance(exc, UnknownMarket)))
    return results


@dataclass(frozen=True)
class BackfillResult:
    market: str
    inserted: int
    updated: int
    requests: int
    oldest_ts: datetime | None
    seconds: float
    skipped: timedelta = timedelta(0)  # history already held, not fetched again


def plural(count: int, noun: str) -> str:
    """``1 request``, ``2 requests``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def duration_words(span: timedelta) -> str:
    """A span for people: ``45 minutes``, ``3.5 hours``, ``2.0 days``."""
    minutes = span.total_seconds() / 60
    if minutes < 90:
        return plural(round(minutes), "minute")
    if minutes < 36 * 60:
        return f"{minutes / 60:.1f} hours"
    return f"{minutes / 1440:.1f} days"


class Progress:
    """Progress of one long job. On a terminal, a bar redrawn in place; elsewhere
    (a pipe, a log file), a plain line at the first update, then at most one
    every ``interval`` seconds, and always one at 100 %. Shares are rounded
    down, so 100 % (and a full bar) means done."""

    WIDTH = 30

    def __init__(self, label: str, stream: TextIO | None = None, *, interval: float = 5.0,
                 monotonic: Callable[[], float] = time.monotonic):
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval
        self._monotonic = monotonic
        self._start = monotonic()
        self._last_line: float | None = None
        self._frame_width = 0  # of the bar on screen: a shorter one must blank the rest

    def update(self, share: float, note: str = "") -> None:
        """``share`` of the work done, 0..1; ``note`` says how far, in words."""
        share = min(max(share, 0.0), 1.0)
        now = self._monotonic()
        elapsed = now - self._start
        if self.tty:
            self._draw(share, note, elapsed)
            return
        due = self._last_line is None or now - self._last_line >= self.interval
        if due or share >= 1.0:
            self._last_line = now
            words = ", ".join(p for p in (f"{math.floor(share * 100)}% done", note) if p)
            self.stream.write(f"{self.label}: {words} ({elapsed:.0f} s)\n")
            self.stream.flush()

    def _draw(self, share: float, note: str, elapsed: float) -> None:
        bar = "#" * math.floor(share * self.WIDTH)
        percent = math.floor(share * 1000) / 10
        frame = f"{self.label} [{bar:<{self.WIDTH}}] {percent:5.1f}% {note} {elapsed:.0f} s"
        padding = " " * max(0, self._frame_width - len(frame))
        self._frame_width = len(frame)
        self.stream.write(f"\r{frame}{padding}")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self._frame_width:
            self.stream.write("\n")
            self.stream.flush()


def _ceil_minute(moment: datetime) -> datetime:
    floor = moment.replace(second=0, microsecond=0)
    return floor if floor == moment else floor + timedelta(minutes=1)


class _Walk:
    """One backfill run: a walk back from now to ``lower`` that fetches pages
    where nothing is recorded held and jumps over what is."""

    def __init__(self, db: Database, source: CandleSource, market: str, unit: int,
                 moment: datetime, days: float, pages_per_write: int):
        self.db, self.source, self.market, self.unit = db, source, market, unit
        self.timeframe = timeframe_of(unit)
        self.period = timedelta(minutes=unit)
        self.moment = moment
        self.target = moment - timedelta(days=days)
        # Candles start on whole minutes: the oldest one the run keeps.
        self.lower = _ceil_minute(self.target)
        self.batch_size = PAGE * pages_per_write
        self.total = candle_store.UpsertResult(0, 0)
        self.pending: list[Candle] = []
        self.held: candle_store.Held | None = None  # what ``pending`` proves
        self.requests = 0
        self.skipped = timedelta(0)
        self.oldest: datetime | None = None

    def share(self, to: datetime) -> float:
        return (self.moment - to) / (self.moment - self.target)

    def step(self, to: datetime | None) -> datetime | None:
        """Fetch the page before ``to`` (the newest page when None), or jump
        over the held range that reaches ``to``; the next ``to``, None when done."""
        if to is not None:
            start = candle_store.held_start(self.db, self.market, self.timeframe, to)
            if start is not None:
                self.skipped += to - max(start, self.lower)
                return start if start > self.lower else None
        return self._fetch(to)

    def _fetch(self, to: datetime | None) -> datetime | None:
        page = _page(self.source, self.market, self.unit, to)
        self.requests += 1
        if to is None:
            page = mark_final(page, self.moment, self.unit)
        else:
            if page and page[0].ts >= to:
                raise MalformedResponse(f"{self.market}: candles before {to.isoformat()}"
                                        f" returned {page[0].ts.isoformat()} (to= not honoured)")
            page = [replace(c, meta={**c.meta, "final": True}) for c in page]
        kept = [c for c in page if c.ts >= self.lower]
        if kept:
            self.oldest = kept[-1].ts
        if page or to is not None:
            end = _held_end(page, self.unit) if to is None else to
            self._queue(kept, self._proved_start(page), end)
        # The next page's candles start at least one unit before the oldest: when
        # that is before the target they would all be dropped, so do not ask.
        done = len(page) < PAGE or page[-1].ts - self.period < self.target
        if done or len(self.pending) >= self.batch_size:
            self.flush()
        return None if done else page[-1].ts

    def _proved_start(self, page: Sequence[Candle]) -> datetime:
        """Where the range a page answered proves stored starts: its oldest
        candle, the start of history after a short page, never below ``lower``
        (older candles are not kept)."""
        if page and page[-1].ts < self.lower:
            return self.lower
        if len(page) < PAGE:
            return HISTORY_START
        return page[-1].ts

    def _queue(self, candles: list[Candle], start: datetime, end: datetime) -> None:
        if self.held is not None and self.held.start != end:
            self.flush()  # after a jump: the ranges do not join
        self.pending.extend(candles)
        held_end = end if self.held is None else self.held.end
        self.held = candle_store.Held(self.market, start, held_end)

    def flush(self) -> None:
        if self.pending or self.held is not None:
            written = candle_store.upsert_candles_held(self.db, self.pending, self.timeframe,
                                                       self.held)
            self.total = self.total + written
        self.pending, self.held = [], None

    def summary(self) -> str:
        words = [plural(self.requests, "request"), plural(self.total.inserted, "new candle"),
                 f"{self.total.updated} updated"]
        if self.skipped:
            words.append(f"{duration_words(self.skipped)} already held")
        return ", ".join(words)


def backfill(db: Database, source: CandleSource, market: str, *, days: float, unit: int = 1,
             now: Callable[[], datetime] = clock.now, progress: Progress | None = None,
             pages_per_write: int = 10) -> BackfillResult:
    """Fetch what is missing of the last ``days`` of history and upsert it,
    newest first, ``pages_per_write`` pages a transaction.

    The newest page is fetched every time; below it, ranges recorded held are
    skipped. Idempotent and resumable: a run killed half-way keeps what it
    wrote, with the range it proves, and the next run fetches only the rest."""
    started = time.monotonic()
    walk = _Walk(db, source, market, unit, now(), days, pages_per_write)
    try:
        to = walk.step(None)
        while to is not None:
            if progress is not None:
                progress.update(walk.share(to), f"{plural(walk.requests, 'request')} so far")
            to = walk.step(to)
        walk.flush()  # a jump can end the walk with pages not yet written
        if progress is not None:
            progress.update(1.0, walk.summary())
    finally:
        if progress is not None:
            progress.close()
    result = BackfillResult(market, walk.total.inserted, walk.total.updated, walk.requests,
                            walk.oldest, time.monotonic() - started, walk.skipped)
    event(log, "candles.backfilled", market=market, inserted=result.inserted,
          updated=result.updated, requests=result.requests, oldest=result.oldest_ts,
          skipped_minutes=round(walk.skipped.total_seconds() / 60),
          seconds=round(result.seconds, 2))
    return result
