"""Benchmarks of the numeric core (signals, exact backtest, batch evaluator,
optimizer). A script that prints numbers, not a timed test:

    .venv/bin/python bench/bench_backtest.py            # all, human-readable
    .venv/bin/python bench/bench_backtest.py --json     # one JSON object
    .venv/bin/python bench/bench_backtest.py --quick    # smaller sizes

Targets on the 2-core development machine: one exact backtest over 525,600
bars (a year of minutes) including signals <= 0.5 s; 10,000 weight vectors
over 43,200 bars (30 days) <= 4.3 s (>= 100 M candidate-bars/s) in < 1 GiB;
a default optimize run (5,000 candidates, 30 days) < 30 s. If backtesting.py
(``pip install backtesting``, not a dependency) is importable, the same
strategy runs there too and the time ratio is reported.

Synthetic data: a geometric random walk of 1-minute candles around 50 M KRW
(BTC-like: 0.1 % per-minute volatility, prices on the 1,000 KRW tick).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np

from bot import search as optimizer
from bot.backtest import BacktestParams, prepare, run_backtest
from bot.batch import evaluate_batch
from bot.storage.candles import CandleArrays

YEAR, MONTH = 525_600, 43_200
START = 1_704_067_200  # 2024-01-01T00:00:00Z


def synthetic(n: int, seed: int = 0, vol: float = 0.001) -> CandleArrays:
    rng = np.random.default_rng(seed)
    close = np.round(50_000_000.0 * np.exp(np.cumsum(rng.normal(0, vol, n))) / 1000) * 1000
    open_ = np.concatenate([[close[0]], close[:-1]])
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, vol / 2, n)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, vol / 2, n)))
    return CandleArrays(START + 60 * np.arange(n, dtype=np.int64), open_, high, low, close,
                        rng.random(n))


def best_of(repeat: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    best, value = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - started)
    return best, value


def bench_single(bars: int) -> dict[str, Any]:
    data = synthetic(bars)
    out: dict[str, Any] = {"bars": bars}
    # Default costs: the account bleeds fees until cash falls below the minimum.
    # Costless: trades all year long, the engine's worst case.
    for name, params in (("default", BacktestParams()),
                         ("costless", BacktestParams(aggressiveness=0.0, fee_rate=0.0,
                                                     fee_buffer=0.0))):
        seconds, result = best_of(3, lambda p=params: run_backtest(data, None, p))
        prep_s, _ = best_of(3, lambda p=params: prepare(data, p))
        out[name] = {"seconds": round(seconds, 4), "signals_and_fills_s": round(prep_s, 4),
                     "fills": result.fills}
    return out


def bench_batch(bars: int, candidates: int, threads: int) -> dict[str, Any]:
    data = synthetic(bars, seed=1)
    params = BacktestParams()
    weights = np.random.default_rng(2).dirichlet(np.ones(6), candidates)
    prep_s, prep = best_of(1, lambda: prepare(data, params))
    seconds, metrics = best_of(2, lambda: evaluate_batch(prep, weights, params,
                                                         threads=threads))
    tracemalloc.start()
    evaluate_batch(prep, weights, params, threads=threads)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"bars": bars, "candidates": candidates, "threads": threads,
            "seconds": round(seconds, 4), "prepare_s": round(prep_s, 4),
            "candidate_bars_per_s": round(bars * candidates / seconds),
            "peak_traced_mib": round(peak / 2**20, 1),
            "mean_fills": float(np.mean(metrics.fills))}


def bench_optimize(bars: int, candidates: int) -> dict[str, Any]:
    data = synthetic(bars, seed=3)
    train, holdout = optimizer.split(data, 0.25)
    seconds, out = best_of(1, lambda: optimizer.choose(
        train, holdout, BacktestParams(), None, candidates=candidates, seed=0,
        min_improvement=0.1))
    return {"bars": bars, "candidates": out.candidates, "seconds": round(seconds, 3),
            "adopted": out.adopted, "reason": out.reason}


def _backtesting_py_run(data: CandleArrays, scores: np.ndarray, bid: np.ndarray,
                        ask: np.ndarray, threshold: float) -> tuple[float, int]:
    """The same strategy in backtesting.py: limit orders at our bid/ask, each
    cancelled after one bar, signals precomputed (its loop is what we time)."""
    import pandas as pd
    from backtesting import Backtest, Strategy

    frame = pd.DataFrame({"Open": data.open, "High": data.high, "Low": data.low,
                          "Close": data.close, "Volume": data.volume},
                         index=pd.to_datetime(data.ts, unit="s"))

    class Ensemble(Strategy):
        def init(self) -> None:
            self.score = self.I(lambda: scores, name="score", plot=False)
            self.bid = self.I(lambda: bid, name="bid", plot=False)
            self.ask = self.I(lambda: ask, name="ask", plot=False)

        def next(self) -> None:
            for order in self.orders:
                order.cancel()
            if not self.position and self.score[-1] >= threshold:
                self.buy(limit=self.bid[-1], size=0.998)
            elif self.position and self.score[-1] <= -threshold:
                self.sell(limit=self.ask[-1], size=self.position.size)

    started = time.perf_counter()
    stats = Backtest(frame, Ensemble, cash=1e12, commission=0.0).run()
    return time.perf_counter() - started, int(stats["# Trades"])


def bench_backtesting_py(bars: int) -> dict[str, Any]:
    try:
        import backtesting  # noqa: F401
    except ImportError:
        return {"skipped": "backtesting.py is not installed (pip install backtesting)"}
    import warnings

    data = synthetic(bars, seed=4)
    # Costless in both engines, so that both trade all year long (with costs
    # our account drops below the minimum order and stops trading early).
    params = BacktestParams(aggressiveness=0.0, fee_rate=0.0, fee_buffer=0.0)
    ours, result = best_of(3, lambda: run_backtest(data, None, params))
    prep = prepare(data, params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs, trades = _backtesting_py_run(data, result.scores, prep.bid, prep.ask,
                                             params.threshold)
    return {"bars": bars, "backtesting_py_s": round(theirs, 3), "ours_s": round(ours, 4),
            "ratio": round(theirs / ours, 1), "our_round_trips": result.round_trips,
            "their_trades": trades}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--threads", type=int, default=1, help="evaluate_batch threads")
    parser.add_argument("--backtesting-bars", type=int, default=None,
                        help="bars for the backtesting.py comparison (default: a year)")
    args = parser.parse_args(argv)
    scale = 10 if args.quick else 1
    report = {
        "single": bench_single(YEAR // scale),
        "batch": bench_batch(MONTH, 10_000 // scale, args.threads),
        "optimize": bench_optimize(MONTH, 5_000 // scale),
        "backtesting_py": bench_backtesting_py(args.backtesting_bars or YEAR // scale),
        "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if args.json:
        print(json.dumps(report))
    else:
        for section, values in report.items():
            print(f"{section}: {values}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
