"""The synthetic market data of ``bench/marketdata.py``: its statistics side by
side with a plain geometric random walk, the time to generate a year, and
optionally a CSV for ``bot backtest --csv``. A script that prints numbers:

    .venv/bin/python bench/bench_marketdata.py                  # 30 days, seed 1
    .venv/bin/python bench/bench_marketdata.py --days 90 --seed 7 --json
    .venv/bin/python bench/bench_marketdata.py --csv out.csv --days 30 --seed 1 \\
        --profile illiquid --start-price 500

Columns: the liquid and illiquid profiles at 50 M KRW (BTC-like, 1,000 KRW
tick) and at 500 KRW (a cheap alt, 1 KRW tick), and the random walk with the
same minute volatility. The ``expect`` column says what real minute data shows.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from typing import Any

import marketdata as md

SERIES = (  # (column, profile, start price); None: the random walk
    ("liquid", "liquid", 50_000_000.0),
    ("illiquid", "illiquid", 50_000_000.0),
    ("alt", "liquid", 500.0),
    ("alt-illiq", "illiquid", 500.0),
    ("rand-walk", None, 50_000_000.0),
)
EXPECT = {  # statistic -> what real 1-minute data shows, and which model part gives it
    "return_std_pct": "0.05-0.1 (BTC)",
    "lag1_autocorr": "< 0: bounce",
    "abs_autocorr_1": "> 0: clustering",
    "abs_autocorr_10": "> 0, slow decay",
    "abs_autocorr_60": "> 0, slow decay",
    "excess_kurtosis": ">> 0: fat tails",
    "variance_ratio_1h": "< 1: bounce",
    "hourly_autocorr": "> 0: trends",
    "variance_ratio_4h": "> 1: trends",
    "hourly_moves_gt_1pct": "share of hours",
    "daily_range_pct": "a few % (BTC)",
    "daily_return_std_pct": "2-4 (BTC)",
    "gap_share": "illiquid 0.2-0.6",
    "volume_profile_ratio": "> 1.5: KST cycle",
    "volume_peak_hour_kst": "9 or 22",
    "volume_range_corr": "> 0: vol ~ volume",
    "candles": "",
}


def series(profile: str | None, start_price: float, minutes: int, seed: int) -> md.CandleArrays:
    if profile is None:
        return md.random_walk(minutes, seed=seed, start_price=start_price)
    return md.generate(minutes, seed=seed, profile=profile, start_price=start_price)


def year_seconds(profile: str, repeat: int = 3) -> float:
    best = math.inf
    for _ in range(repeat):
        started = time.perf_counter()
        md.generate(525_600, seed=0, profile=profile)
        best = min(best, time.perf_counter() - started)
    return best


def report(days: int, seed: int) -> dict[str, Any]:
    stats = {name: md.statistics(series(profile, price, days * md.DAY, seed))
             for name, profile, price in SERIES}
    return {"days": days, "seed": seed, "statistics": stats,
            "year_seconds": {p: round(year_seconds(p), 3) for p in md.PROFILES}}


def table(out: dict[str, Any]) -> str:
    names = [name for name, _, _ in SERIES]
    lines = [f"{out['days']} days of 1-minute candles, seed {out['seed']}",
             f"{'statistic':22}" + "".join(f"{n:>11}" for n in names) + "  expect"]
    for key, expect in EXPECT.items():
        cells = "".join(f"{out['statistics'][n][key]:>11.4g}" for n in names)
        lines.append(f"{key:22}{cells}  {expect}")
    times = ", ".join(f"{p} {s:.3f} s" for p, s in out["year_seconds"].items())
    lines.append(f"generate 525,600 minutes (a year): {times}")
    return "\n".join(lines)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=positive_int, default=30,
                        help="days of minutes per series (default 30; statistics need 2)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--csv", metavar="PATH",
                        help="write one series as ts,open,high,low,close,volume and exit")
    parser.add_argument("--profile", choices=[*md.PROFILES, "random-walk"], default="liquid",
                        help="the series --csv writes (default liquid)")
    parser.add_argument("--start-price", type=positive_float, default=50_000_000.0,
                        help="first price in KRW for --csv (default 50,000,000; 500: an alt)")
    args = parser.parse_args(argv)
    if args.csv:
        profile = None if args.profile == "random-walk" else args.profile
        candles = series(profile, args.start_price, args.days * md.DAY, args.seed)
        try:
            md.write_csv(candles, args.csv)
        except OSError as exc:
            print(f"cannot write {args.csv}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        print(f"wrote {len(candles):,} candles ({args.days} days, {args.profile}, "
              f"seed {args.seed}) to {args.csv}")
        return 0
    if args.days * md.DAY < md.MIN_STATISTICS_MINUTES:
        parser.error(f"--days must be at least {md.MIN_STATISTICS_MINUTES // md.DAY} "
                     "for the statistics")
    out = report(args.days, args.seed)
    print(json.dumps(out) if args.json else table(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
