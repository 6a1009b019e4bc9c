"""Rows per second of the candle upsert path (bot/storage/candles.py) on this machine.

Not a test: it prints numbers (``--json``: one JSON object on stdout). It creates
a scratch database ``bench_ingest_<pid>`` on the server of ``--admin-dsn``,
migrates it, and drops it at the end.

Two parts:

* **large**: for each size (default 100,000 and 1,000,000 candles of one market,
  consecutive minutes, Decimal prices as the client parses them) and each path,
  on an emptied table: insert them all (``fresh``), upsert the same candles again
  (``unchanged``: nothing is written), upsert them with a changed close and
  volume (``changed``: every row updated). Every phase checks the returned
  counts and the stored values (exact sums, the jsonb meta).
* **small**: the per-call time of batches of 200 .. 10,000 candles (the
  collector's and backfill's batch sizes) on a table that already holds rows,
  per path: where COPY starts to beat execute_values (``COPY_THRESHOLD``).

Paths: ``values:N`` is execute_values with page size N (``_upsert_values``);
``copy`` is COPY into a staging table, then INSERT ... SELECT ... ON CONFLICT
(``_upsert_copy``); ``auto`` is ``upsert_candles`` as the daemon calls it.

Run: ``.venv/bin/python bench/bench_ingest.py [--sizes 100000 1000000] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg2
from daemon_support import admin, dsn_for

from bot.models import Candle
from bot.storage import Database
from bot.storage import candles as store
from bot.storage.migrate import migrate

MARKET = "KRW-BTC"
TIMEFRAME = "1m"
START = datetime(2024, 1, 1, tzinfo=UTC)
KST = timedelta(hours=9)
DEFAULT_ADMIN_DSN = os.environ.get("BENCH_PG_ADMIN_DSN", os.environ.get(
    "TEST_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"))
TARGET_ROWS_PER_SEC = 50_000


# --- data -------------------------------------------------------------------------------


def make_candles(n: int, *, first_minute: int = 0, seed: int = 7) -> list[Candle]:
    """``n`` consecutive 1-minute candles, newest first (as backfill hands them
    over), with values shaped like the client's: prices on the 1,000 KRW tick of
    ~50M KRW written ``50123000.0``, volumes with 8 decimals, the quote volume
    with 8 decimals, and meta (KST time, last trade ms, final)."""
    rng = random.Random(seed + first_minute)
    close = 50_000_000
    out = []
    for i in range(first_minute, first_minute + n):
        ts = START + timedelta(minutes=i)
        open_ = close
        close = max(1_000_000, open_ + rng.randint(-30, 30) * 1000)
        high = max(open_, close) + rng.randint(0, 10) * 1000
        low = min(open_, close) - rng.randint(0, 10) * 1000
        volume_units = rng.randint(1, 2_000_000_000)  # 1e-8 BTC
        volume = Decimal(volume_units).scaleb(-8)
        quote = (volume * close).quantize(Decimal("0.00000001"))
        out.append(Candle(
            MARKET, ts, Decimal(f"{open_}.0"), Decimal(f"{high}.0"), Decimal(f"{low}.0"),
            Decimal(f"{close}.0"), volume, quote, 1,
            {"kst": (ts + KST).strftime("%Y-%m-%dT%H:%M:%S"),
             "trade_timestamp": int(ts.timestamp() * 1000) + rng.randint(0, 59_999),
             "final": True}))
    out.reverse()
    return out


def changed(candles: Sequence[Candle]) -> list[Candle]:
    """Every candle with a close one tick higher and a slightly larger volume."""
    tick = Decimal(1000)
    return [replace(c, close=c.close + tick, high=max(c.high, c.close + tick),
                    volume=c.volume + Decimal("0.00000001")) for c in candles]


# --- paths ------------------------------------------------------------------------------


def run_path(db: Database, path: str, batch: Sequence[Candle]) -> store.UpsertResult:
    """One upsert call by ``path``, in its own transaction, dedupe included (as
    ``upsert_candles`` does it)."""
    if path == "auto":
        return store.upsert_candles(db, batch, TIMEFRAME)
    unique = list({(c.market, c.ts): c for c in batch}.values())
    with db.cursor() as cur:
        if path == "copy":
            return store._upsert_copy(cur, unique, TIMEFRAME)
        kind, _, page = path.partition(":")
        if kind != "values" or not page.isdigit():
            raise ValueError(f"unknown path {path!r}: values:N, copy or auto")
        return store._upsert_values(cur, unique, TIMEFRAME, page_size=int(page))


# --- database ---------------------------------------------------------------------------


def _truncate(db: Database) -> None:
    with db.cursor() as cur:
        cur.execute("TRUNCATE candles")


def _checkpoint(db: Database) -> None:
    """Start each measured phase with no dirty pages from the one before."""
    try:
        with db.connection() as conn:
            conn.autocommit = True
            try:
                with conn.cursor() as cur:
                    cur.execute("CHECKPOINT")
            finally:
                conn.autocommit = False
    except psycopg2.Error:
        pass  # not a superuser: measure without it


def _stored_summary(db: Database) -> tuple[int, Decimal, Decimal, Decimal, int]:
    with db.cursor() as cur:
        cur.execute("SELECT count(*), sum(close), sum(volume), sum(quote_volume),"
                    " count(*) FILTER (WHERE meta->>'final' = 'true' AND meta ? 'kst'"
                    " AND meta ? 'trade_timestamp') FROM candles")
        return cur.fetchone()


def _expected_summary(candles: Sequence[Candle]) -> tuple[int, Decimal, Decimal, Decimal, int]:
    return (len(candles), sum(c.close for c in candles), sum(c.volume for c in candles),
            sum(c.quote_volume for c in candles), len(candles))


def _check(db: Database, path: str, phase: str, got: store.UpsertResult,
           want: store.UpsertResult, candles: Sequence[Candle]) -> None:
    if got != want:
        raise AssertionError(f"{path} {phase}: returned {got}, expected {want}")
    stored, expected = _stored_summary(db), _expected_summary(candles)
    if stored != expected:
        raise AssertionError(f"{path} {phase}: stored {stored}, expected {expected}")


# --- measurements -----------------------------------------------------------------------


@dataclass
class Row:
    part: str  # "large" or "small"
    path: str
    size: int
    phase: str  # fresh, unchanged, changed
    seconds: float
    rows_per_sec: float
    inserted: int
    updated: int


def _timed(call: Callable[[], store.UpsertResult]) -> tuple[float, store.UpsertResult]:
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


def bench_large(db: Database, paths: Sequence[str], sizes: Sequence[int],
                say: Callable[[str], None]) -> list[Row]:
    rows: list[Row] = []
    for size in sizes:
        say(f"generating {size:,} candles ...")
        fresh = make_candles(size)
        modified = changed(fresh)
        for path in paths:
            _truncate(db)
            phases = (("fresh", fresh, store.UpsertResult(size, 0)),
                      ("unchanged", fresh, store.UpsertResult(0, 0)),
                      ("changed", modified, store.UpsertResult(0, size)))
            for phase, batch, want in phases:
                _checkpoint(db)
                seconds, got = _timed(lambda p=path, b=batch: run_path(db, p, b))
                _check(db, path, phase, got, want, batch)
                row = Row("large", path, size, phase, seconds, size / seconds,
                          got.inserted, got.updated)
                rows.append(row)
                say(f"  {path:<12} {size:>9,} {phase:<9} {seconds:8.2f} s"
                    f" {row.rows_per_sec:>10,.0f} rows/s")
    _truncate(db)
    return rows


def bench_small(db: Database, paths: Sequence[str], sizes: Sequence[int], repeat: int,
                say: Callable[[str], None]) -> list[Row]:
    """Median per call over ``repeat`` calls per (path, size, phase), each call
    on fresh minutes appended after what the table holds (100,000 rows first)."""
    _truncate(db)
    base = 100_000
    run_path(db, "copy", make_candles(base))
    next_minute = base
    rows: list[Row] = []
    for size in sizes:
        times: dict[tuple[str, str], list[float]] = {}
        for _ in range(repeat):
            for path in paths:  # interleaved, so drift hits every path alike
                batch = make_candles(size, first_minute=next_minute)
                next_minute += size
                phases = (("fresh", batch, store.UpsertResult(size, 0)),
                          ("unchanged", batch, store.UpsertResult(0, 0)),
                          ("changed", changed(batch), store.UpsertResult(0, size)))
                for phase, data, want in phases:
                    seconds, got = _timed(lambda p=path, d=data: run_path(db, p, d))
                    if got != want:
                        raise AssertionError(f"{path} {phase} {size}: {got} != {want}")
                    times.setdefault((path, phase), []).append(seconds)
        for path in paths:
            for phase in ("fresh", "unchanged", "changed"):
                seconds = statistics.median(times[(path, phase)])
                rows.append(Row("small", path, size, phase, seconds, size / seconds,
                                size if phase == "fresh" else 0,
                                size if phase == "changed" else 0))
        line = "  ".join(
            f"{path} " + "/".join(f"{statistics.median(times[(path, ph)]) * 1000:.1f}"
                                  for ph in ("fresh", "unchanged", "changed"))
            for path in paths)
        say(f"  {size:>6,} rows: ms per call fresh/unchanged/changed: {line}")
    _truncate(db)
    return rows


def crossover(rows: Sequence[Row], values_path: str) -> int | None:
    """The smallest measured size from which COPY is faster than ``values_path``
    in the sum of the three phases, at that size and every larger one."""
    sizes = sorted({r.size for r in rows if r.part == "small"})

    def total(path: str, size: int) -> float:
        return sum(r.seconds for r in rows if r.part == "small" and r.path == path
                   and r.size == size)

    faster = [total("copy", s) < total(values_path, s) for s in sizes]
    for i, size in enumerate(sizes):
        if all(faster[i:]):
            return size
    return None


def machine() -> dict[str, object]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cpus": os.cpu_count(), "python": platform.python_version(),
            "psycopg2": psycopg2.__version__.split()[0], "platform": platform.platform()}


def server_info(db: Database) -> dict[str, object]:
    with db.cursor() as cur:
        cur.execute("SELECT current_setting('server_version'), current_setting('shared_buffers'),"
                    " current_setting('synchronous_commit'), current_setting('fsync')")
        version, buffers, sync, fsync = cur.fetchone()
    return {"postgresql": version, "shared_buffers": buffers, "synchronous_commit": sync,
            "fsync": fsync}


def summarize(rows: Sequence[Row]) -> list[str]:
    lines = ["", "large batches (one call each; rows/s):",
             f"  {'path':<12} {'size':>9} {'fresh':>10} {'unchanged':>10} {'changed':>10}"]
    keys = sorted({(r.size, r.path) for r in rows if r.part == "large"},
                  key=lambda k: (k[0], k[1]))
    for size, path in keys:
        rate = {r.phase: r.rows_per_sec for r in rows
                if r.part == "large" and r.path == path and r.size == size}
        lines.append(f"  {path:<12} {size:>9,} {rate['fresh']:>10,.0f}"
                     f" {rate['unchanged']:>10,.0f} {rate['changed']:>10,.0f}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--admin-dsn", default=DEFAULT_ADMIN_DSN,
                        help="a database on the server to create the scratch database from")
    parser.add_argument("--sizes", type=int, nargs="*", default=[100_000, 1_000_000],
                        help="candles per large batch (none: skip the large part)")
    parser.add_argument("--paths", nargs="+", default=["values:1000", "values:5000", "copy"],
                        help="paths for the large part: values:N, copy, auto")
    parser.add_argument("--small-sizes", type=int, nargs="*",
                        default=[2, 50, 200, 500, 1000, 2000, 5000, 10_000],
                        help="batch sizes for the threshold part (none: skip it)")
    parser.add_argument("--small-paths", nargs="+", default=["values:1000", "copy"])
    parser.add_argument("--repeat", type=int, default=7, help="calls per small measurement")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args(argv)

    def say(text: str) -> None:
        print(text, file=sys.stderr if args.json else sys.stdout, flush=True)

    name = f"bench_ingest_{os.getpid()}"
    admin(args.admin_dsn, f"CREATE DATABASE {name}")
    db = Database(dsn_for(args.admin_dsn, name))
    try:
        migrate(db)
        info = {**machine(), **server_info(db)}
        say(f"machine: {info}")
        rows = bench_large(db, args.paths, args.sizes, say) if args.sizes else []
        small = (bench_small(db, args.small_paths, args.small_sizes, args.repeat, say)
                 if args.small_sizes else [])
    finally:
        db.close()
        admin(args.admin_dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    rows += small
    values_paths = [p for p in args.small_paths if p.startswith("values:")]
    threshold = (crossover(rows, values_paths[0])
                 if small and "copy" in args.small_paths and values_paths else None)
    slowest = min((r.rows_per_sec for r in rows if r.part == "large"), default=None)
    for line in summarize(rows) if args.sizes else []:
        say(line)
    if threshold is not None or small:
        say(f"COPY faster than {values_paths[0] if values_paths else '?'} from {threshold}"
            f" rows per call on (COPY_THRESHOLD in bot/storage/candles.py:"
            f" {store.COPY_THRESHOLD})")
    if args.json:
        print(json.dumps({"machine": info, "target_rows_per_sec": TARGET_ROWS_PER_SEC,
                          "copy_threshold": store.COPY_THRESHOLD,
                          "measured_crossover": threshold,
                          "slowest_large_rows_per_sec": slowest,
                          "results": [asdict(r) for r in rows]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
