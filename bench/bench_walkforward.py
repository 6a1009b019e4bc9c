"""Benchmark of the walk-forward (``bot walkforward``). A script that prints
numbers, not a timed test:

    .venv/bin/python bench/bench_walkforward.py            # 90 days, 1-day steps
    .venv/bin/python bench/bench_walkforward.py --json     # one JSON object
    .venv/bin/python bench/bench_walkforward.py --days 10  # a shorter run

Target on the 2-core development machine: a walk-forward over 90 days with
1-day steps and the default candidates (OPTIMIZE_CANDIDATES 5,000, the
30-day OPTIMIZE_LOOKBACK_DAYS, OPTIMIZE_TUNE weights,threshold,cooldown)
under 60 s. The data are seeded realistic minutes (``bench/marketdata.py``):
30 days of training history before the first window, then the 90 days
traded out of sample. Almost all of the time is the nightly search, run once
per window; the stitched exact backtest of the out-of-sample span is a small
part (both are reported).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

from marketdata import generate

from bot.config import load_settings
from bot.optimize.walkforward import walk_forward


def bench(days: int, seed: int, candidates: int | None) -> dict[str, Any]:
    env = {"DATABASE_URL": "postgresql://unused@127.0.0.1/unused"}
    if candidates is not None:
        env["OPTIMIZE_CANDIDATES"] = str(candidates)
    settings = load_settings(env)
    data = generate((settings.optimize_lookback_days + days) * 1440, seed=seed)
    cpu, started = time.process_time(), time.perf_counter()
    wf = walk_forward(settings, data, test_days=1, seed=0)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    runs = [s.seconds for s in wf.segments]
    return {
        "days": days, "windows": len(wf.segments), "candidates": wf.candidates,
        "bars": len(data.ts), "seconds": round(wall, 2), "cpu_seconds": round(cpu, 2),
        "cores": os.cpu_count(), "run_mean_s": round(sum(runs) / len(runs), 3),
        "run_max_s": round(max(runs), 3), "runs_s": round(sum(runs), 2),
        "stitch_s": round(wall - sum(runs), 2), "total_return": round(wf.total_return, 4),
        "default_return": round(wf.default_return, 4),
        "buy_and_hold_return": round(wf.buy_and_hold_return, 4),
        "max_drawdown": round(wf.max_drawdown, 4), "round_trips": wf.round_trips,
        "default_round_trips": wf.default_round_trips, "adoptions": wf.adoptions,
        "keeps": wf.keeps, "stand_asides": wf.stand_asides, "target_s": 60,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=90, help="days out of sample")
    parser.add_argument("--seed", type=int, default=1, help="market data seed")
    parser.add_argument("--candidates", type=int, help="default: OPTIMIZE_CANDIDATES")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    out = bench(args.days, args.seed, args.candidates)
    if args.json:
        print(json.dumps(out))
        return
    print(f"walk-forward: {out['windows']} windows of 1 day, {out['candidates']:,} candidates "
          f"each, {out['bars']:,} bars")
    print(f"  {out['seconds']} s wall ({out['cpu_seconds']} s CPU on {out['cores']} cores),"
          f" target < {out['target_s']} s: {'OK' if out['seconds'] < 60 else 'MISSED'}")
    print(f"  nightly runs {out['runs_s']} s (mean {out['run_mean_s']} s, max "
          f"{out['run_max_s']} s), stitching {out['stitch_s']} s")
    print(f"  return {out['total_return']:+.2%} against defaults {out['default_return']:+.2%}"
          f" and buy and hold {out['buy_and_hold_return']:+.2%}; max drawdown "
          f"{out['max_drawdown']:.2%}; {out['round_trips']} round trips (defaults "
          f"{out['default_round_trips']}); verdicts: {out['adoptions']} adopt, {out['keeps']}"
          f" keep, {out['stand_asides']} stand aside")


if __name__ == "__main__":
    main()
