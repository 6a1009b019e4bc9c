"""Benchmarks of the numeric core (signals, exact backtest, batch evaluator,
optimizer). A script that prints numbers, not a timed test:

    .venv/bin/python bench/bench_backtest.py            # all, human-readable
    .venv/bin/python bench/bench_backtest.py --json     # one JSON object
    .venv/bin/python bench/bench_backtest.py --quick    # smaller sizes

Targets on the 2-core development machine: one exact backtest over 525,600
bars (a year of minutes) including signals <= 0.5 s; the batch evaluator with
exits and cooldown on, 10,000 parameter sets over 43,200 bars (30 days) <=
4.3 s (>= 100 M candidate-bars/s) in < 1 GiB, its compilation reported
apart (first call with an empty numba cache; a fresh process loading the
cache); a default optimize run (5,000 candidates, 30 days) < 30 s. If
backtesting.py (``pip install backtesting``) or vectorbt (``pip install
vectorbt``) is importable (neither is a dependency), the same strategy runs
there too and the time ratio is reported.

Data: the batch runs on seeded realistic minutes (``bench/marketdata.py``)
and, for comparison, on a geometric random walk of 1-minute candles around
50 M KRW (BTC-like: 0.1 % per-minute volatility, prices on the 1,000 KRW
tick), which the other sections use.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
from marketdata import generate

from bot.config import load_settings
from bot.models import CandleArrays
from bot.optimize import search as optimizer
from bot.optimize.backtest import BacktestParams, prepare, run_backtest
from bot.optimize.batch import evaluate_batch, warm_up
from bot.trading import strategies as st

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
    walk, real = synthetic(bars), generate(bars, seed=1)
    out: dict[str, Any] = {"bars": bars}
    daemon = BacktestParams.from_settings(load_settings({}))
    # The daemon's defaults (exits and guards on) on realistic minutes; the old
    # defaults (THRESHOLD 0.2) with every exit on, which churn; costless on a
    # random walk: trades all year long, the engine's worst case.
    cases = (("daemon_defaults", real, daemon),
             ("churning_with_exits", real, replace(daemon, threshold=0.2,
                                                   trailing_stop_pct=1.0,
                                                   take_profit_pct=2.0)),
             ("costless", walk, BacktestParams(aggressiveness=0.0, fee_rate=0.0,
                                               fee_buffer=0.0)))
    for name, data, params in cases:
        seconds, result = best_of(3, lambda d=data, p=params: run_backtest(d, None, p))
        prep_s, _ = best_of(3, lambda d=data, p=params: prepare(d, p))
        out[name] = {"seconds": round(seconds, 4), "signals_and_fills_s": round(prep_s, 4),
                     "fills": result.fills}
    return out


# The batch benchmark's settings: every exit, the cooldown and both guards on.
BATCH_PARAMS = BacktestParams(stop_loss_pct=1.0, trailing_stop_pct=0.8, take_profit_pct=1.5,
                              cooldown_candles=10, stop_guard_exits=3,
                              stop_guard_window_candles=60, stop_guard_pause_candles=120,
                              daily_loss_limit_pct=3.0)


def batch_grid(candidates: int, seed: int = 2) -> dict[str, np.ndarray]:
    """Weights plus per-candidate threshold, cooldown and exits, as the
    optimizer searches them."""
    rng = np.random.default_rng(seed)
    return {"weights": rng.dirichlet(np.ones(6), candidates),
            "thresholds": rng.choice([0.1, 0.15, 0.2, 0.3], candidates),
            "cooldowns": rng.choice([0, 5, 10, 30], candidates),
            "stop_losses": rng.choice([0.5, 1.0, 2.0], candidates),
            "trailing_stops": rng.choice([0.0, 0.5, 1.0], candidates),
            "take_profits": rng.choice([0.0, 1.0, 2.0], candidates)}


def _compile_seconds() -> dict[str, float]:
    """The batch loop's compile time (a fresh process, an empty cache) and its
    load time from that cache (a second fresh process)."""
    code = "import bot.optimize.batch as b; print(b.warm_up())"
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        for name in ("first_call_compile_s", "cached_load_s"):
            done = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                                  capture_output=True, text=True)
            out[name] = round(float(done.stdout.split()[-1]), 3)
    return out


def _batch_run(data: CandleArrays, grid: dict[str, np.ndarray], threads: int | None,
               repeat: int) -> dict[str, Any]:
    prep_s, prep = best_of(1, lambda: prepare(data, BATCH_PARAMS))
    weights = grid["weights"]
    per_candidate = {k: v for k, v in grid.items() if k != "weights"}

    def call() -> Any:
        return evaluate_batch(prep, weights, BATCH_PARAMS, threads=threads, **per_candidate)

    seconds, metrics = best_of(repeat, call)
    bars, candidates = len(prep), len(weights)
    return {"seconds": round(seconds, 4), "prepare_s": round(prep_s, 4),
            "candidate_bars_per_s": round(bars * candidates / seconds),
            "mean_fills": round(float(np.mean(metrics.fills)), 1),
            "mean_exposure": round(float(np.mean(metrics.exposure)), 3),
            "exits_per_candidate": round(float(np.mean(
                metrics.stop_loss_exits + metrics.trailing_stop_exits
                + metrics.take_profit_exits)), 1)}


def bench_batch(bars: int, candidates: int, threads: int | None) -> dict[str, Any]:
    out: dict[str, Any] = {"bars": bars, "candidates": candidates,
                           "threads": threads or "cores", **_compile_seconds()}
    warm_up()  # this process: loaded from the cache the line above filled
    grid = batch_grid(candidates)
    out["realistic"] = _batch_run(generate(bars, seed=1), grid, threads, 3)
    out["random_walk"] = _batch_run(synthetic(bars, seed=1), grid, threads, 2)
    out["one_thread"] = _batch_run(generate(bars, seed=1), grid, 1, 1)
    tracemalloc.start()
    _batch_run(generate(bars, seed=1), grid, threads, 1)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    out["peak_traced_mib"] = round(peak / 2**20, 1)
    out["max_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


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


def _vectorbt_signals(prep: Any, grid: dict[str, np.ndarray], a: int,
                      b: int) -> tuple[np.ndarray, np.ndarray]:
    """Entry and exit matrices ``(bars, b - a)`` of candidates a..b-1: the
    batch evaluator's buy and sell signals (the same score tables)."""
    scores = st.score_tables(grid["weights"][a:b])[:, prep.codes].T
    threshold = grid["thresholds"][a:b]
    entries, exits = scores >= threshold, scores <= -threshold
    entries[:st.FIRST_DECISION] = exits[:st.FIRST_DECISION] = False
    return entries, exits


def _pct_or_nan(pct: np.ndarray) -> np.ndarray:
    return np.where(pct > 0, pct / 100.0, np.nan)  # vectorbt: NaN is no stop


def bench_vectorbt(bars: int, candidates: int, threads: int | None,
                   chunk: int = 1_000) -> dict[str, Any]:
    """The same grid in vectorbt's ``Portfolio.from_signals`` with its stop-loss
    and take-profit (``sl_stop``/``tp_stop``; its trailing stop replaces the
    stop-loss rather than adding to it, and it has no cooldown or guards, so
    those are off there and on here). Its fill model differs: a signal fills
    at the close of its own bar at market, whole cash, no minimum order or
    volume rounding; stops fill intrabar at their level (or the open past a
    gap). Times only, in chunks of ``chunk`` columns to bound its memory."""
    try:
        import vectorbt as vbt
    except ImportError:
        return {"skipped": "vectorbt is not installed (pip install vectorbt)"}
    prep = prepare(generate(bars, seed=1), BATCH_PARAMS)
    grid = batch_grid(candidates)

    def run(a: int, b: int) -> float:
        entries, exits = _vectorbt_signals(prep, grid, a, b)
        started = time.perf_counter()
        column = {name: getattr(prep, name)[:, None] for name in ("open", "high", "low")}
        pf = vbt.Portfolio.from_signals(
            prep.close[:, None], entries, exits, **column,
            sl_stop=_pct_or_nan(grid["stop_losses"][a:b])[None, :],
            tp_stop=_pct_or_nan(grid["take_profits"][a:b])[None, :],
            fees=BATCH_PARAMS.fee_rate, init_cash=BATCH_PARAMS.cash)
        pf.total_return()
        return time.perf_counter() - started

    warm = run(0, 10)  # vectorbt compiles its own numba functions on first use
    theirs = sum(run(a, min(candidates, a + chunk)) for a in range(0, candidates, chunk))
    per_candidate = {k: v for k, v in grid.items() if k != "weights"}
    ours, _ = best_of(2, lambda: evaluate_batch(prep, grid["weights"], BATCH_PARAMS,
                                                threads=threads, **per_candidate))
    return {"bars": bars, "candidates": candidates, "vectorbt_version": vbt.__version__,
            "vectorbt_s": round(theirs, 3), "vectorbt_first_call_s": round(warm, 2),
            "ours_s": round(ours, 3), "ratio": round(theirs / ours, 1),
            "vectorbt_candidate_bars_per_s": round(bars * candidates / theirs)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--threads", type=int, default=None,
                        help="evaluate_batch threads (default: the usable cores)")
    parser.add_argument("--backtesting-bars", type=int, default=None,
                        help="bars for the backtesting.py comparison (default: a year)")
    parser.add_argument("--only", choices=("single", "batch", "optimize", "backtesting_py",
                                           "vectorbt"), action="append",
                        help="run only these sections (repeatable)")
    args = parser.parse_args(argv)
    scale = 10 if args.quick else 1
    sections: dict[str, Callable[[], dict[str, Any]]] = {
        # The batch first: the process's peak RSS it reports is its own.
        "batch": lambda: bench_batch(MONTH, 10_000 // scale, args.threads),
        "single": lambda: bench_single(YEAR // scale),
        "optimize": lambda: bench_optimize(MONTH, 5_000 // scale),
        "backtesting_py": lambda: bench_backtesting_py(args.backtesting_bars or YEAR // scale),
        "vectorbt": lambda: bench_vectorbt(MONTH, 10_000 // scale, args.threads),
    }
    report: dict[str, Any] = {name: run() for name, run in sections.items()
                              if not args.only or name in args.only}
    report["max_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if args.json:
        print(json.dumps(report))
    else:
        for section, values in report.items():
            print(f"{section}: {values}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
