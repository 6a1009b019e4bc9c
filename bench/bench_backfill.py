"""Wall time of ``bot backfill`` against Upbit's quotation rate limit.

Not a test: it prints numbers (``--json``: one JSON object on stdout). It runs
``bot.data.collector.backfill(db, UpbitClient(server.url), "KRW-BTC", days=N)``
against ``testkit.fakeupbit.FakeUpbit(history_minutes=(N + 1) * 1440,
rate_limit_per_sec=10)`` started in this process (it serves ~500 requests/s
unthrottled, so the limit dominates), into a scratch database
``bench_backfill_<pid>`` created on the server of ``--admin-dsn`` and dropped at
the end.

A year of 1-minute candles is 525,600 minutes, 2,628 requests of 200; at 10
requests/s the limit-bound ideal is 2,628 / 10 = 262.8 s. The target is a wall
time within 10 % of it and no 429 at all (and every candle stored). The ideal counts the requests
needed, ceil(minutes / 200); backfill's own count is reported too. ``--days 30``
is a quick check (~22 s); ``--copy-threshold 1000000000`` runs it with
execute_values only (the upsert path before COPY).

Run: ``.venv/bin/python bench/bench_backfill.py [--days 365] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

# testkit.fakeupbit lives in the repository, not in the installed package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from daemon_support import admin, dsn_for, max_in_window  # noqa: E402

from bot.data import collector  # noqa: E402
from bot.exchange.upbit import UpbitClient  # noqa: E402
from bot.storage import Database  # noqa: E402
from bot.storage import candles as store  # noqa: E402
from bot.storage.migrate import migrate  # noqa: E402
from testkit.fakeupbit import FakeUpbit  # noqa: E402

MARKET = "KRW-BTC"
CANDLES_PATH = "/v1/candles/minutes/1"
DEFAULT_ADMIN_DSN = os.environ.get("BENCH_PG_ADMIN_DSN", os.environ.get(
    "TEST_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"))
TARGET_RATIO = 1.10


class _Timed:
    """Wraps a function and sums the seconds spent in it (from any thread)."""

    def __init__(self, func):
        self.func = func
        self.seconds = 0.0
        self.calls = 0
        self.longest = 0.0
        self._lock = threading.Lock()

    def __call__(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return self.func(*args, **kwargs)
        finally:
            spent = time.perf_counter() - started
            with self._lock:
                self.seconds += spent
                self.calls += 1
                self.longest = max(self.longest, spent)


def run(days: float, rate_limit: int, admin_dsn: str, *, pages_per_write: int | None = None,
        copy_threshold: int | None = None, quiet: bool = False, say=print) -> dict[str, object]:
    name = f"bench_backfill_{os.getpid()}"
    admin(admin_dsn, f"CREATE DATABASE {name}")
    db = Database(dsn_for(admin_dsn, name))
    upsert = _Timed(store.upsert_candles_held)
    sleep = _Timed(time.sleep)
    original_upsert, original_threshold = store.upsert_candles_held, store.COPY_THRESHOLD
    store.upsert_candles_held = upsert  # backfill calls it as candle_store.upsert_candles_held
    if copy_threshold is not None:
        store.COPY_THRESHOLD = copy_threshold
    try:
        migrate(db)
        history = math.ceil(days + 1) * 24 * 60
        say(f"fake Upbit: {history:,} minutes of history, {rate_limit} requests/s;"
            f" backfill --days {days:g} ...")
        with FakeUpbit(history_minutes=history, rate_limit_per_sec=rate_limit) as server, \
                UpbitClient(server.url, sleep=sleep) as client:
            progress = None if quiet else collector.Progress(f"backfill {MARKET}",
                                                                stream=sys.stderr)
            kwargs = {} if pages_per_write is None else {"pages_per_write": pages_per_write}
            started = time.perf_counter()
            result = collector.backfill(db, client, MARKET, days=days, progress=progress,
                                        **kwargs)
            wall = time.perf_counter() - started
            stats = server.stats.get(CANDLES_PATH)
            arrivals = sorted(r.time for r in server.requests if r.path == CANDLES_PATH)
            errors = list(server.errors)
        stored = store.count(db, MARKET, "1m")
    finally:
        store.upsert_candles_held, store.COPY_THRESHOLD = original_upsert, original_threshold
        db.close()
        admin(admin_dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    requests = result.requests
    # Every candle from ``now - days`` on: one per minute (the history has no gaps).
    expected = round(days * 24 * 60)
    needed = math.ceil(expected / collector.PAGE)
    ideal = needed / rate_limit
    throttled = stats.throttled if stats else 0
    return {
        "days": days,
        "rate_limit_per_sec": rate_limit,
        "copy_threshold": store.COPY_THRESHOLD if copy_threshold is None else copy_threshold,
        "wall_seconds": round(wall, 2),
        "ideal_seconds": round(ideal, 2),
        "ratio_to_ideal": round(wall / ideal, 4),
        "target_ratio": TARGET_RATIO,
        "met_target": wall / ideal <= TARGET_RATIO and throttled == 0 and stored == expected,
        "requests": requests,
        "requests_needed": needed,
        "server_requests": stats.requests if stats else 0,
        "requests_per_sec": round(requests / wall, 3),
        "http_429": stats.statuses.get(429, 0) if stats else 0,
        "statuses": dict(stats.statuses) if stats else {},
        "max_requests_in_any_second": max_in_window(arrivals),
        "candles_expected": expected,
        "candles_stored": stored,
        "inserted": result.inserted,
        "updated": result.updated,
        "db_write_seconds": round(upsert.seconds, 2),
        "db_writes": upsert.calls,
        "longest_db_write_seconds": round(upsert.longest, 3),
        "client_sleep_seconds": round(sleep.seconds, 2),
        "server_errors": len(errors),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=float, default=365.0,
                        help="days of history to backfill (default: 365)")
    parser.add_argument("--rate-limit", type=int, default=10,
                        help="the fake server's quotation limit per second (default: 10)")
    parser.add_argument("--pages-per-write", type=int, default=None,
                        help="backfill's pages_per_write (default: backfill's own)")
    parser.add_argument("--copy-threshold", type=int, default=None,
                        help="override COPY_THRESHOLD (a huge one: execute_values only)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.add_argument("--admin-dsn", default=DEFAULT_ADMIN_DSN)
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args(argv)

    def say(text: str) -> None:
        print(text, file=sys.stderr if args.json else sys.stdout, flush=True)

    report = run(args.days, args.rate_limit, args.admin_dsn, pages_per_write=args.pages_per_write,
                 copy_threshold=args.copy_threshold, quiet=args.quiet, say=say)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        width = max(map(len, report))
        for key, value in report.items():
            say(f"{key:<{width}}  {value}")
    return 0 if report["met_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
