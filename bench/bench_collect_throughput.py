"""How many markets the collector keeps up with inside Upbit's quotation limit,
and what a second collector process changes.

Not a test: it prints numbers (``--json``: one JSON object on stdout). It starts
``testkit.fakeupbit.FakeUpbit`` in this process with ``max(--sizes)`` synthetic
markets and ``rate_limit_per_sec=10`` (Upbit's quotation limit, per IP: every
process of this host shares it), a private ``redis-server`` on a free port, a
scratch database ``bench_collect_<pid>`` (dropped at the end) and collector
workers as real ``celery`` processes, started as bin/docker-compose.yaml starts
them. Real time; Beat is not started: at each minute boundary this script sends
one ``collect`` per market itself, as Beat does (``expires`` one period), and
measures for each market when the collector stored the minute that just closed
as final (the collector's log), until all are or ``--round-timeout`` passes.

A layout ``PxC`` is P collector processes (containers: ``docker compose up
--scale collector=P``) of ``celery worker -c C`` each; compose's default is
``1x2``. Each pool process has its own Upbit client and so its own client-side
rate limiter (bot/exchange/ratelimit.py): ``1x2`` already runs two limiters against one
IP's 10 requests/s, ``2x2`` four. Per round it reports the time until the last
market's candle is stored (the ideal is (N - 10) / 10 s: one request per market,
a burst of 10 and then 10 per second), how
many markets made it within 2 s (the latency target) and within the minute,
the server's request count, 429s and busiest second, and the retries, failures,
expiries and lock skips in the collector logs. At the end every stored candle
is compared with the server's (no gap, no stale value, no duplicate).

Run: ``.venv/bin/python bench/bench_collect_throughput.py [--json]`` (about
15 min: 3 layouts x 4 sizes, one minute each); ``--quick`` is sizes 10 and 50
with layouts 1x2 and 2x2 (~6 min).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis as redis_lib
from daemon_support import (
    DEFAULT_ADMIN_DSN,
    Processes,
    log_events,
    machine,
    max_in_window,
    parse_utc,
    scratch_database,
    summary,
    worker_args,
)

from bot.storage import Database
from testkit.e2e import RedisServer
from testkit.fakeupbit import FakeUpbit

CANDLES_PATH = "/v1/candles/minutes/1"
EVENTS = ("task.retry", "task.failed", "task.expired", "task.skipped", "upbit.retry",
          "upbit.banned")
LATENCY_BUDGET = 2.0  # seconds from a close to the stored candle that leaves room to trade


def market_names(n: int) -> list[str]:
    return [f"KRW-C{i:03d}" for i in range(1, n + 1)]


def _layout(text: str) -> tuple[int, int]:
    processes, _, concurrency = text.lower().partition("x")
    try:
        p, c = int(processes), int(concurrency)
    except ValueError:
        raise argparse.ArgumentTypeError(f"layout {text!r}: give PxC, e.g. 1x2") from None
    if p < 1 or c < 1:
        raise argparse.ArgumentTypeError(f"layout {text!r}: P and C must be >= 1")
    return p, c


def _rows(db: Database, sql: str, *params: Any) -> list[tuple]:
    with db.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def _hms(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%H:%M:%S")


class Bench:
    def __init__(self, args: argparse.Namespace, dsn: str, workdir: Path, say):
        self.args, self.say, self.workdir = args, say, workdir
        self.markets = market_names(max(args.sizes))
        self.db = Database(dsn)
        self.server = FakeUpbit(markets=self.markets, rate_limit_per_sec=args.rate_limit,
                                history_minutes=400)
        self.redis = RedisServer(workdir)
        self.env = {"DATABASE_URL": dsn, "BACKFILL_MAX_CANDLES": "200",
                    "LOG_LEVEL": "INFO", "LOG_FORMAT": "text"}
        self.procs: Processes | None = None
        self.collectors: list[str] = []
        self.run_number = 0

    # --- processes --------------------------------------------------------------------

    def start(self) -> None:
        self.server.start()
        self.redis.start()
        self.env.update({"CELERY_BROKER_URL": f"{self.redis.url}/0",
                         "CELERY_BACKEND_URL": f"{self.redis.url}/1",
                         "UPBIT_API_BASE": self.server.url})
        self.procs = Processes(self.env, self.workdir)
        from celery import Celery
        self.app = Celery(broker=self.env["CELERY_BROKER_URL"])
        self.broker = redis_lib.Redis.from_url(self.env["CELERY_BROKER_URL"])

    def close(self) -> None:
        if self.procs is not None:
            self.procs.stop_all()
        self.redis.stop()
        self.server.stop()
        self.db.close()

    def start_collectors(self, processes: int, concurrency: int) -> None:
        self.stop_collectors()
        self.run_number += 1
        self.collectors = [f"collector{self.run_number}-{k}" for k in range(1, processes + 1)]
        for k, name in enumerate(self.collectors, 1):
            self.procs.start(name, worker_args("collector_queue", f"collector{k}@bench",
                                               concurrency))
        self.procs.wait_ready(self.collectors)
        # Warm every pool process (imports, database and HTTP connections), unmeasured.
        self.send(self.markets[:processes * concurrency * 2])
        time.sleep(3.0)

    def stop_collectors(self) -> None:
        for name in self.collectors:
            self.procs.stop(name)
        self.collectors = []

    def logs(self) -> str:
        return "\n".join(self.procs.log(name) for name in self.collectors)

    # --- rounds -----------------------------------------------------------------------

    def send(self, markets: Sequence[str]) -> None:
        for market in markets:
            self.app.send_task("collect", args=(market,), queue="collector_queue", expires=60)

    def prime(self) -> None:
        """Every market's history, so that each measured pass is one request."""
        self.say(f"loading history of {len(self.markets)} markets ...")
        self.start_collectors(1, 1)
        self.send(self.markets)
        deadline = time.monotonic() + 30 + len(self.markets) / 2
        while time.monotonic() < deadline:
            if _rows(self.db, "SELECT count(DISTINCT market) FROM candles")[0][0] == len(
                    self.markets):
                break
            time.sleep(0.5)
        else:
            raise RuntimeError("history not loaded in time")
        self.stop_collectors()

    def stored_times(self, text: str, close: float) -> dict[str, float]:
        """market -> when its candle of the minute before ``close`` was stored final."""
        ts = close - 60
        first: dict[str, float] = {}
        for moment, _, fields in log_events(text, "candles.stored"):
            if fields.get("final", "-") != "-" and parse_utc(fields["final"]) >= ts:
                first.setdefault(fields["market"], moment)
        return first

    def one_round(self, n: int) -> dict[str, Any]:
        markets = self.markets[:n]
        boundary = math.ceil((time.time() + 0.5) / 60) * 60
        time.sleep(max(0.0, boundary - time.time()))
        stats = self.server.stats.get(CANDLES_PATH)
        before = (stats.requests, stats.statuses.get(429, 0)) if stats else (0, 0)
        sent_at = time.time()
        self.send(markets)
        send_s = time.time() - sent_at
        ts = boundary - 60
        deadline = boundary + self.args.round_timeout
        done = 0
        while time.time() < deadline:
            done = _rows(self.db, "SELECT count(*) FROM candles WHERE timeframe = '1m' AND"
                                  " ts = to_timestamp(%s) AND (meta->>'final')::boolean"
                                  " AND market = ANY(%s)", ts, markets)[0][0]
            if done == n:
                break
            time.sleep(0.1)
        time.sleep(1.0)  # late log lines, retries in flight
        ended = time.time()
        text = self.logs()
        stored = self.stored_times(text, boundary)
        after = self.server.stats[CANDLES_PATH]
        arrivals = [r.time for r in list(self.server.requests)
                    if r.path == CANDLES_PATH and boundary - 1 <= r.time <= ended]
        lat = sorted(stored[m] - boundary for m in markets if m in stored)
        events = {name: 0 for name in EVENTS}
        for moment, name, _ in log_events(text):
            if name in events and boundary - 1 <= moment <= ended:
                events[name] += 1
        requests = after.requests - before[0]
        self.broker.delete("trader_queue")  # trades the collects enqueued: nobody consumes them
        return {
            "markets": n,
            "minute_closed_utc": _hms(boundary),
            "all_stored_s": round(lat[-1], 3) if len(lat) == n else None,
            "stored": len(lat),
            "stored_within_2s": sum(1 for x in lat if x <= LATENCY_BUDGET),
            "stored_within_60s": sum(1 for x in lat if x <= 60),
            "latency_s": summary(lat),
            # a sliding one-second window: a burst of `limit`, then `limit` per second
            "ideal_s": round(max(0, n - self.args.rate_limit) / self.args.rate_limit, 3),
            "send_s": round(send_s, 3),
            "requests": requests,
            "requests_per_market": round(requests / n, 3),
            "http_429": after.statuses.get(429, 0) - before[1],
            "max_requests_in_any_second": max_in_window(arrivals),
            "events": events,
        }

    # --- checks -----------------------------------------------------------------------

    def verify(self) -> dict[str, int]:
        """Stored candles against the server: gaps, values, stale 'not final' rows."""
        gaps = mismatches = stale = checked = 0
        dupes = _rows(self.db, "SELECT count(*) - count(DISTINCT (market, timeframe, ts))"
                               " FROM candles")[0][0]
        for market in self.markets:
            rows = _rows(self.db, "SELECT extract(epoch FROM ts)::float8, open, high, low,"
                                  " close, (meta->>'final')::boolean FROM candles WHERE"
                                  " market = %s AND timeframe = '1m' ORDER BY ts", market)
            times = [r[0] for r in rows]
            gaps += sum(1 for a, b in zip(times, times[1:], strict=False) if b - a != 60)
            for k, (moment, o, h, low, c, final) in enumerate(rows):
                if not final:
                    stale += k != len(rows) - 1  # only the newest may be in progress
                    continue
                expected = self.server.candle(market, int(moment))
                checked += 1
                if expected is None or (o, h, low, c) != (expected["open"], expected["high"],
                                                          expected["low"], expected["close"]):
                    mismatches += 1
        return {"final_candles_checked": checked, "gaps": gaps, "value_mismatches": mismatches,
                "stale_not_final": stale, "duplicates": dupes}


def run(args: argparse.Namespace, say) -> dict[str, Any]:
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench_collect_"))
    workdir.mkdir(parents=True, exist_ok=True)
    say(f"logs in {workdir}")
    results = []
    with scratch_database(args.admin_dsn, "bench_collect") as dsn:
        bench = Bench(args, dsn, workdir, say)
        try:
            bench.start()
            bench.prime()
            for processes, concurrency in args.layouts:
                layout = f"{processes}x{concurrency}"
                bench.start_collectors(processes, concurrency)
                for n in args.sizes:
                    for _ in range(args.rounds):
                        result = {"layout": layout, **bench.one_round(n)}
                        results.append(result)
                        say(f"  {layout} {n:>4} markets: all stored after"
                            f" {_fmt(result['all_stored_s'])} s (ideal {result['ideal_s']} s),"
                            f" {result['stored_within_2s']} within 2 s,"
                            f" 429s {result['http_429']}, events {result['events']}")
                bench.stop_collectors()
            integrity = bench.verify()
            server_errors = len(bench.server.errors)
        finally:
            bench.close()
    return {"benchmark": "collect_throughput", "machine": machine(args.admin_dsn),
            "rate_limit_per_sec": args.rate_limit, "rounds": results,
            "integrity": integrity, "server_errors": server_errors, "workdir": str(workdir)}


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def table(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"Collect throughput vs FakeUpbit at {report['rate_limit_per_sec']} requests/s (shared"
        " by every process), one collect per market sent at a minute boundary",
        f"machine: {m['cpu']}, {m['cores']} cores, {m['memory']}, {m['os']}, Python"
        f" {m['python']}, Celery {m['celery']}, PostgreSQL {m['postgresql']},"
        f" Redis {m['redis']}",
        "",
        "| layout (procs x -c) | markets | all stored s | ideal s | median s | p90 s |"
        " within 2 s | within 60 s | requests | 429s | max arrivals/s | retries | failed |"
        " expired |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["rounds"]:
        ev = r["events"]
        lines.append(
            f"| {r['layout']} | {r['markets']} | {_fmt(r['all_stored_s'])} | {r['ideal_s']:.1f} |"
            f" {_fmt(r['latency_s']['median'])} | {_fmt(r['latency_s']['p90'])} |"
            f" {r['stored_within_2s']} | {r['stored_within_60s']} | {r['requests']} |"
            f" {r['http_429']} | {r['max_requests_in_any_second']} |"
            f" {ev['task.retry']} + {ev['upbit.retry']} | {ev['task.failed']} |"
            f" {ev['task.expired']} |")
    lines += ["", "retries: Celery task retries + Upbit client retries (429 backoff);"
              " max arrivals/s: requests the server saw in its busiest second, 429s included",
              f"integrity after all rounds: {report['integrity']};"
              f" server errors {report['server_errors']}"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 50, 100, 300],
                        help="markets per round (default: 10 50 100 300)")
    parser.add_argument("--layouts", type=_layout, nargs="+",
                        default=[_layout(x) for x in ("1x1", "1x2", "2x2")],
                        help="collector processes x concurrency (default: 1x1 1x2 2x2)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds per size (default: 1)")
    parser.add_argument("--round-timeout", type=float, default=100.0,
                        help="seconds to wait for a round's candles (default: 100)")
    parser.add_argument("--rate-limit", type=int, default=10)
    parser.add_argument("--quick", action="store_true",
                        help="sizes 10 50, layouts 1x2 2x2")
    parser.add_argument("--workdir", default=None, help="where logs go (default: a temp dir)")
    parser.add_argument("--admin-dsn", default=DEFAULT_ADMIN_DSN)
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.layouts = [10, 50], [(1, 2), (2, 2)]

    def say(text: str) -> None:
        print(text, file=sys.stderr if args.json else sys.stdout, flush=True)

    report = run(args, say)
    print(json.dumps(report, indent=2) if args.json else table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
