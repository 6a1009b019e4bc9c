"""Latency from a candle's close to its decision and to its order at the exchange,
measured on the whole daemon at real time.

Not a test: it prints numbers (``--json``: one JSON object on stdout). It runs
the daemon as docker compose does (Celery Beat, a collector worker and a trader
worker, each ``-c 2``, as real ``celery`` processes with the default schedules
``* * * * *``) in LIVE mode against ``testkit.fakeupbit.FakeUpbit`` started in
this process (``rate_limit_per_sec=10``, Upbit's quotation limit; real time,
speedup 1), a private ``redis-server`` on a free port and a scratch database
``bench_latency_<pid>`` created on the server of ``--admin-dsn`` and dropped at
the end.

Orders happen often: every market gets a planted price path whose closes go
up, up, down, down, ... by 1 %, and the daemon runs with ``WEIGHTS=trend=1``,
``THRESHOLD=0.5``, ``AGGRESSIVENESS=0.002``, so it buys after an up candle
when flat and sells after a down candle when holding; a limit order fills on
the candle after next, so each market places an order every second minute.

Before Beat starts, one ``collect`` per market loads the history (300 candles),
so the measured minutes are the steady state. For each market and each candle
that closes during the ``--minutes`` measured minutes it reports, from the
candle's close (its ``ts`` + 60 s):

* ``beat_sent``: Beat sent the market's ``collect`` (Beat's log);
* ``stored_final``: the collector stored the candle as final (collector log);
* ``decision``: the decision row (``decisions.created_at``, PostgreSQL's now());
* ``order_post``: the order's POST /v1/orders arrived at the fake exchange
  (``FakeUpbit.private_requests``);
* ``order_sent_at``: ``orders.sent_at`` (the trader saw the exchange accept it).

Median, p90 and worst of each; the target is a median under 2 s for the
decision and the order. ``--first-trade-delay S`` makes the fake exchange show a
minute's candle only S seconds after the minute starts (a quiet market whose
first trade of the minute comes late; FakeUpbit alone shows it at once), which
exercises the collector's "not confirmed yet, look again" path.

Run: ``.venv/bin/python bench/bench_latency.py [--minutes 10] [--json]``;
``--minutes 2`` is a quick check (~4 min).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from daemon_support import (
    ACCESS_KEY,
    DEFAULT_ADMIN_DSN,
    SECRET_KEY,
    Processes,
    beat_args,
    count_events,
    fmt_seconds,
    log_events,
    machine,
    parse_utc,
    scratch_database,
    summary,
    worker_args,
)

from bot.money import round_price
from bot.storage import Database
from testkit.e2e import RedisServer
from testkit.fakeupbit import FakeUpbit

MARKETS = ("KRW-BTC", "KRW-ETH", "KRW-XRP", "KRW-SOL", "KRW-DOGE")
START_PRICES = {"KRW-BTC": 50_000_000, "KRW-ETH": 3_000_000, "KRW-XRP": 3_000,
                "KRW-SOL": 200_000, "KRW-DOGE": 300}
HISTORY = 300  # minutes of candles before the start (the decision needs 200)
PATTERN = (1, 2, 1, 0)  # closes in steps above the base: up, up, down, down
TARGET_MEDIAN = 2.0
SETTLE = 30.0  # seconds after the last measured close before stopping
STAGES = ("beat_sent", "stored_final", "decision", "order_post", "order_sent_at")
STAGE_TITLES = {
    "beat_sent": "Beat sends the market's collect",
    "stored_final": "candle stored as final",
    "decision": "decision row (decisions.created_at)",
    "order_post": "order POST at the exchange",
    "order_sent_at": "order accepted (orders.sent_at)",
}
EVENTS = ("task.skipped", "task.retry", "task.failed", "task.expired", "upbit.retry",
          "order.rejected", "order.unknown", "collector.gap_not_closed")
_BEAT_SEND = re.compile(r"Sending due task (\w+) (KRW-\w+)")


class LateCandleUpbit(FakeUpbit):
    """FakeUpbit whose in-progress candle appears only ``first_trade_delay`` real
    seconds into its minute (before that the newest candle is the last closed one)."""

    def __init__(self, *args: Any, first_trade_delay: float = 0.0, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.first_trade_delay = first_trade_delay

    def _bars(self, series, unit, end_minute, count, now):
        bars = super()._bars(series, unit, end_minute, count, now)
        current = int(now // 60)
        if (self.first_trade_delay > 0 and unit == 1 and bars and bars[-1].minute == current
                and now - current * 60 < self.first_trade_delay):
            bars = bars[:-1]
        return bars


def price_path(market: str, length: int, phase: int = 0) -> list[Decimal]:
    """Closes going up, up, down, down by 1 % of the start price, on the tick."""
    base = Decimal(START_PRICES.get(market, 10_000))
    step = round_price(base / 100, "nearest")
    return [round_price(base + step * PATTERN[(i + phase) % len(PATTERN)], "nearest")
            for i in range(length)]


def _plant(server: FakeUpbit, markets: Sequence[str], minutes: int) -> None:
    first = server.current_minute() - HISTORY
    length = HISTORY + minutes + 30
    for k, market in enumerate(markets):
        server.set_price_path(market, price_path(market, length, phase=k), start=first * 60)


def _beat_sends(text: str) -> dict[tuple[str, str], list[float]]:
    sends: dict[tuple[str, str], list[float]] = {}
    for line in text.splitlines():
        found = _BEAT_SEND.search(line)
        if found and len(line) > 24 and line[23] == "Z":
            moment = parse_utc(line[:24])
            sends.setdefault((found.group(1), found.group(2)), []).append(moment)
    return sends


def _stored_final(text: str) -> dict[tuple[str, float], float]:
    """(market, candle ts) -> when the collector first stored it as final."""
    first: dict[tuple[str, float], float] = {}
    for moment, _, fields in log_events(text, "candles.stored"):
        if fields.get("final", "-") != "-":
            key = (fields["market"], parse_utc(fields["final"]))
            first.setdefault(key, moment)
    return first


def _rows(db: Database, sql: str, *params: Any) -> list[tuple]:
    with db.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def _wait_primed(db: Database, markets: Sequence[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = _rows(db, "SELECT market, count(*) FROM candles WHERE timeframe = '1m'"
                         " GROUP BY market")
        if len(rows) == len(markets) and all(n >= 200 for _, n in rows):
            return
        time.sleep(0.5)
    raise RuntimeError(f"history not loaded after {timeout:.0f} s")


def run(args: argparse.Namespace, say) -> dict[str, Any]:
    markets = tuple(args.markets)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench_latency_"))
    workdir.mkdir(parents=True, exist_ok=True)
    say(f"logs in {workdir}")
    with scratch_database(args.admin_dsn, "bench_latency") as dsn:
        db = Database(dsn)
        server = LateCandleUpbit(markets=markets, rate_limit_per_sec=args.rate_limit,
                                 history_minutes=HISTORY + 10, krw=10_000_000,
                                 access_key=ACCESS_KEY, secret_key=SECRET_KEY,
                                 first_trade_delay=args.first_trade_delay)
        _plant(server, markets, args.minutes + 5)
        server.start()
        redis = RedisServer(workdir)
        redis.start()
        env = {
            "DATABASE_URL": dsn,
            "CELERY_BROKER_URL": f"{redis.url}/0", "CELERY_BACKEND_URL": f"{redis.url}/1",
            "UPBIT_API_BASE": server.url,
            "TRADING_MODE": "live", "LIVE_ALLOW_UNVALIDATED": "true",
            "UPBIT_ACCESS_KEY": ACCESS_KEY,
            "UPBIT_SECRET_KEY": SECRET_KEY,
            "MARKETS": ",".join(markets),
            "WEIGHTS": "trend=1", "THRESHOLD": str(args.threshold),
            "AGGRESSIVENESS": str(args.aggressiveness),
            "ORDER_TIMEOUT_SECONDS": "600", "DAILY_LOSS_LIMIT_PCT": "0",
            "BACKFILL_MAX_CANDLES": str(HISTORY),
            "LOG_LEVEL": "INFO", "LOG_FORMAT": "text",
        }
        procs = Processes(env, workdir)
        try:
            procs.start("collector", worker_args("collector_queue", "collector@bench",
                                                 args.concurrency))
            procs.start("trader", worker_args("trader_queue", "trader@bench",
                                              args.concurrency))
            procs.wait_ready(["collector", "trader"])
            from celery import Celery
            client = Celery(broker=env["CELERY_BROKER_URL"])
            for market in markets:
                client.send_task("collect", args=(market,), queue="collector_queue")
            _wait_primed(db, markets, 120)
            say(f"history loaded ({len(markets)} markets); starting Beat")
            procs.start("beat", beat_args(workdir / "celerybeat-schedule"))
            deadline = time.monotonic() + 60
            while "beat.started" not in procs.log("beat"):
                if time.monotonic() > deadline:
                    raise RuntimeError("Beat did not start:\n" + procs.log("beat")[-3000:])
                time.sleep(0.2)
            first_close = math.ceil((time.time() + 2) / 60) * 60
            last_close = first_close + 60 * (args.minutes - 1)
            say(f"measuring candles closing {_hms(first_close)} .. {_hms(last_close)} UTC")
            while time.time() < last_close + SETTLE:
                time.sleep(min(60.0, max(0.1, last_close + SETTLE - time.time())))
                done = _rows(db, "SELECT count(*) FROM decisions WHERE candle_ts >="
                                 " to_timestamp(%s)", first_close - 60)[0][0]
                say(f"  {_hms(time.time())}: {done} decisions so far")
        finally:
            procs.stop_all()
            redis.stop()
            server.stop()
        report = _measure(db, server, procs, markets, first_close, last_close, args)
        db.close()
    report["workdir"] = str(workdir)
    return report


def _hms(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%H:%M:%S")


def _measure(db: Database, server: FakeUpbit, procs: Processes, markets: Sequence[str],
             first_close: float, last_close: float, args: argparse.Namespace) -> dict[str, Any]:
    lo, hi = first_close - 60, last_close - 60  # candle ts range, inclusive
    decisions = _rows(db, "SELECT id, market, extract(epoch FROM candle_ts)::float8,"
                          " extract(epoch FROM created_at)::float8, action FROM decisions"
                          " WHERE candle_ts BETWEEN to_timestamp(%s) AND to_timestamp(%s)",
                      lo, hi)
    orders = _rows(db, "SELECT o.identifier, d.market, extract(epoch FROM d.candle_ts)::float8,"
                       " extract(epoch FROM o.sent_at)::float8, o.state FROM orders o"
                       " JOIN decisions d ON d.id = o.decision_id"
                       " WHERE d.candle_ts BETWEEN to_timestamp(%s) AND to_timestamp(%s)",
                   lo, hi)
    posts: dict[str, float] = {}
    for request in server.private_requests:
        if request.method == "POST" and request.path == "/v1/orders":
            identifier = dict(request.params).get("identifier", "")
            posts.setdefault(identifier, request.time)
    beat_log, collector_log = procs.log("beat"), procs.log("collector")
    trader_log = procs.log("trader")
    sends = _beat_sends(beat_log)
    stored = _stored_final(collector_log)

    latencies: dict[str, list[float]] = {stage: [] for stage in STAGES}
    per_candle = []
    candles = [lo + 60 * k for k in range(int((hi - lo) / 60) + 1)]
    for market in markets:
        for ts in candles:
            close = ts + 60
            beat = [t - close for t in sends.get(("collect", market), ()) if -5 < t - close < 50]
            if beat:
                latencies["beat_sent"].append(min(beat))
            if (market, ts) in stored:
                latencies["stored_final"].append(stored[(market, ts)] - close)
    decided = {(m, ts): (created, action) for _, m, ts, created, action in decisions}
    for (_market, ts), (created, _action) in decided.items():
        latencies["decision"].append(created - ts - 60)
    for identifier, market, ts, sent_at, state in orders:
        close = ts + 60
        if identifier in posts:
            latencies["order_post"].append(posts[identifier] - close)
        if sent_at is not None:
            latencies["order_sent_at"].append(sent_at - close)
        per_candle.append({"market": market, "candle": _hms(ts), "state": state,
                           "decision_s": round(decided[(market, ts)][0] - close, 3),
                           "post_s": round(posts[identifier] - close, 3)
                           if identifier in posts else None})
    missing = sorted(f"{m} {_hms(ts)}" for m in markets for ts in candles
                     if (m, ts) not in decided)
    skipped = Counter(f.get("reason", "?") for _, _, f in log_events(trader_log,
                                                                      "decision.skipped"))
    stats = {path: {"requests": s.requests, "http_429": s.statuses.get(429, 0)}
             for path, s in server.stats.items()}
    worst = max(decided.items(), key=lambda kv: kv[1][0] - kv[0][1], default=None)
    return {
        "benchmark": "latency",
        "machine": machine(args.admin_dsn),
        "minutes": args.minutes,
        "markets": list(markets),
        "mode": "live",
        "rate_limit_per_sec": args.rate_limit,
        "concurrency": args.concurrency,
        "first_trade_delay_s": args.first_trade_delay,
        "first_candle_close_utc": datetime.fromtimestamp(first_close, UTC).isoformat(),
        "latency_s": {stage: summary(latencies[stage]) for stage in STAGES},
        "decisions": len(decisions),
        "decisions_expected": len(markets) * len(candles),
        "decisions_missing": missing,
        "actions": dict(Counter(a for *_, a in decisions)),
        "orders": len(orders),
        "orders_at_exchange": sum(1 for o in orders if o[0] in posts),
        "worst_decision": None if worst is None else {
            "market": worst[0][0], "candle": _hms(worst[0][1]),
            "seconds": round(worst[1][0] - worst[0][1] - 60, 3)},
        "orders_detail": sorted(per_candle, key=lambda r: (r["candle"], r["market"])),
        "decision_skipped": dict(skipped),
        "events": {"collector": count_events(collector_log, EVENTS),
                   "trader": count_events(trader_log, EVENTS)},
        "server": {"paths": stats, "errors": len(server.errors)},
        "met_target": bool(latencies["decision"]) and bool(latencies["order_post"])
        and summary(latencies["decision"])["median"] < TARGET_MEDIAN
        and summary(latencies["order_post"])["median"] < TARGET_MEDIAN,
    }


def table(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"Latency from candle close, {report['minutes']} min x {len(report['markets'])} markets,"
        f" live mode vs FakeUpbit ({report['rate_limit_per_sec']} req/s), real time,"
        f" workers -c {report['concurrency']}, first trade delay"
        f" {report['first_trade_delay_s']:g} s",
        f"machine: {m['cpu']}, {m['cores']} cores, {m['memory']}, {m['os']}, Python"
        f" {m['python']}, Celery {m['celery']}, PostgreSQL {m['postgresql']},"
        f" Redis {m['redis']}",
        "",
        "| from the candle's close to ... | n | median s | p90 s | worst s |",
        "|---|---:|---:|---:|---:|",
    ]
    for stage in STAGES:
        s = report["latency_s"][stage]
        lines.append(f"| {STAGE_TITLES[stage]} | {s['n']} | {fmt_seconds(s['median'])} |"
                     f" {fmt_seconds(s['p90'])} | {fmt_seconds(s['worst'])} |")
    lines += [
        "",
        f"decisions {report['decisions']} of {report['decisions_expected']} expected"
        f" ({', '.join(f'{k} {v}' for k, v in sorted(report['actions'].items()))});"
        f" orders {report['orders']} ({report['orders_at_exchange']} seen by the exchange)",
        f"missing decisions: {', '.join(report['decisions_missing']) or 'none'}",
        f"decision skipped: {report['decision_skipped'] or 'none'}",
        f"collector events: {report['events']['collector']}",
        f"trader events: {report['events']['trader']}",
        f"server: {report['server']}",
        f"target (median < {TARGET_MEDIAN:g} s for decision and order):"
        f" {'met' if report['met_target'] else 'MISSED'}",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=int, default=10,
                        help="candles (minutes) measured per market (default: 10)")
    parser.add_argument("--markets", nargs="+", default=list(MARKETS))
    parser.add_argument("--rate-limit", type=int, default=10,
                        help="the fake server's quotation limit per second (default: 10)")
    parser.add_argument("--concurrency", type=int, default=2,
                        help="celery -c of the collector and the trader (compose: 2)")
    parser.add_argument("--first-trade-delay", type=float, default=0.0,
                        help="seconds into a minute before its candle exists (default: 0)")
    parser.add_argument("--threshold", default="0.5")
    parser.add_argument("--aggressiveness", default="0.002")
    parser.add_argument("--workdir", default=None, help="where logs go (default: a temp dir)")
    parser.add_argument("--admin-dsn", default=DEFAULT_ADMIN_DSN)
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args(argv)
    if args.minutes < 1:
        parser.error("--minutes must be at least 1")

    def say(text: str) -> None:
        print(text, file=sys.stderr if args.json else sys.stdout, flush=True)

    report = run(args, say)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(table(report))
    return 0 if report["met_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
