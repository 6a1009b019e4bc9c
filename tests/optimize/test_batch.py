"""The batch evaluator (bot/optimize/batch.py): hand-built series for each fill case,
exit and guard of docs/semantics.md; per-candidate parameters equal separate
runs; chunks and threads change nothing; memory stays bounded; and bar for
bar agreement with the exact engine on realistic series."""

from __future__ import annotations

import dataclasses
import math
import tracemalloc
from decimal import Decimal

import numpy as np
import pytest

from bench.marketdata import generate
from bot.models import SIGNAL_NAMES, CandleArrays
from bot.money import floor_volume
from bot.optimize import backtest as bt
from bot.optimize import batch
from bot.optimize.batch import evaluate_batch, trace_batch
from bot.trading import strategies as st

DAY0 = 1_709_251_200  # 2024-03-01T00:00:00Z
DEFAULT = bt.BacktestParams()
BUY_CODE, SELL_CODE, QUIET_CODE = st.N_CODES - 1, 0, 364  # all +1, all -1, all 0
W = st.FIRST_DECISION  # the first decision bar: 199
P = 100_000.0


def series(close, *, open_=None, high=None, low=None, ts=None, start=DAY0) -> CandleArrays:
    """Candles whose open is the previous close unless given (so a bid or
    ask decided at a close is marketable at the next open)."""
    c = np.asarray(close, dtype=np.float64)
    n = len(c)
    o = np.concatenate([[c[0]], c[:-1]]) if open_ is None else np.asarray(open_, float)
    h = np.maximum(o, c) if high is None else np.asarray(high, float)
    lo = np.minimum(o, c) if low is None else np.asarray(low, float)
    t = start + 60 * np.arange(n, dtype=np.int64) if ts is None else np.asarray(ts, np.int64)
    return CandleArrays(t, o, h, lo, c, np.ones(n))


def forced(candles: CandleArrays, params: bt.BacktestParams,
           signals: dict[int, int]) -> bt.Prepared:
    """The candles prepared with the signal codes replaced: +1 at a bar is a
    buy signal (score 1 under equal weights), -1 a sell, elsewhere none."""
    prep = bt.prepare(candles, params)
    codes = np.full(len(prep), QUIET_CODE, dtype=np.int16)
    for bar, side in signals.items():
        codes[bar] = BUY_CODE if side > 0 else SELL_CODE
    return dataclasses.replace(prep, codes=codes)


def closes(*path: float, warm: int = W + 1) -> np.ndarray:
    """``warm`` bars at P (bars 0..199: the first decision is bar 199), then ``path``."""
    return np.array([P] * warm + list(path))


def run(prep: bt.Prepared, params: bt.BacktestParams = DEFAULT, **kw) -> batch.BatchTrace:
    trace = trace_batch(prep, None, params, **kw)
    metrics = evaluate_batch(prep, np.ones((1, 6)), params, **_plural(kw))
    # The trace and the batch are the same loop: their results agree exactly.
    assert metrics.final_equity[0] == trace.final_equity
    assert metrics.fills[0] == len(trace.fill_bars)
    return trace


def _plural(kw: dict) -> dict:
    names = {"threshold": "thresholds", "cooldown": "cooldowns", "stop_loss": "stop_losses",
             "trailing_stop": "trailing_stops", "take_profit": "take_profits"}
    return {names[k]: [v] for k, v in kw.items()}


def names(trace: batch.BatchTrace, bars) -> list[str]:
    return [batch.TRIGGERS[trace.triggers[b]] for b in bars]


# --- fills ---------------------------------------------------------------------------------


def test_round_trip_fills_at_the_open_by_hand():
    prep = forced(series(closes(101_000, 101_000, 100_500, 100_500, 100_500)), DEFAULT,
                  {200: +1, 202: -1})
    trace = run(prep)
    # Bid at 200: 101,000 * 1.0015 rounded up to the 100 tick = 101,200; sized there.
    volume = floor_volume(Decimal(1_000_000) / (Decimal(101_200) * Decimal("1.001")))
    assert volume == Decimal("9.87155137")
    # Bar 201 opens at 101,000 <= 101,200: fills at the open; the rest stays in cash.
    cash = Decimal(1_000_000) - volume * 101_000 * Decimal("1.0005")
    # Ask at 202: 100,350 rounded down = 100,300; bar 203 opens at 100,500: the open.
    final = cash + volume * 100_500 * Decimal("0.9995")
    assert trace.fill_bars.tolist() == [201, 203]
    assert trace.fill_sides.tolist() == [bt.BUY, bt.SELL]
    assert trace.fill_prices.tolist() == [101_000.0, 100_500.0]
    assert trace.fill_volumes.tolist() == [float(volume)] * 2
    assert trace.final_equity == pytest.approx(float(final), rel=1e-13)
    assert trace.equity[201] == pytest.approx(float(cash) + float(volume) * 101_000, rel=1e-13)
    assert trace.actions[200] == bt.BUY and trace.actions[202] == bt.SELL
    assert np.count_nonzero(trace.actions) == 2
    assert trace.holding[201:203].tolist() == [True, True] and not trace.holding[203:].any()
    m = evaluate_batch(prep, np.ones((1, 6)), DEFAULT)
    assert m.round_trips[0] == 1 and m.win_rate[0] == 0.0
    assert m.exposure[0] == pytest.approx(2 / 6)  # bars 199..204 hold at 201 and 202
    fees = (volume * 101_000 + volume * 100_500) * Decimal("0.0005")
    assert m.fees[0] == pytest.approx(float(fees), rel=1e-12)
    assert m.total_return[0] == pytest.approx(float(final) / 1e6 - 1, rel=1e-12)


def test_fill_at_the_limit_when_the_open_is_beyond_it():
    close = closes(101_000, 101_000, 100_500, 100_500, 100_500)
    open_ = np.concatenate([[P], close[:-1]])
    open_[201] = 101_500.0  # above the bid 101,200, the low reaches it
    open_[203] = 100_000.0  # below the ask 100,300, the high reaches it
    candles = series(close, open_=open_, high=np.maximum(open_, close) + 200,
                     low=np.minimum(open_, close) - 200)
    trace = run(forced(candles, DEFAULT, {200: +1, 202: -1}))
    assert trace.fill_prices.tolist() == [101_200.0, 100_300.0]


def test_limit_never_reached_is_cancelled_and_decided_again():
    close = closes(101_000, 101_500, 102_000)
    low = close - 100
    low[201], low[202] = 101_300.0, 101_800.0  # above the bids 101,200 and 101,700
    candles = series(close, open_=close, high=close + 100, low=low)
    trace = run(forced(candles, DEFAULT, {200: +1, 201: +1, 202: +1}))
    assert trace.actions[200:].tolist() == [bt.BUY] * 3
    assert len(trace.fill_bars) == 0 and trace.final_equity == 1_000_000.0
    assert np.all(trace.equity == 1_000_000.0)


def test_the_last_bars_decision_cannot_fill():
    prep = forced(series(closes(101_000)), DEFAULT, {200: +1})
    trace = run(prep)
    assert trace.actions[200] == bt.BUY and len(trace.fill_bars) == 0


def test_no_order_below_the_minimum():
    params = bt.BacktestParams(cash=5_004.0)  # 5,004 / 1.001 < 5,000 at any price
    trace = run(forced(series(closes(P, P)), params, {200: +1}), params)
    assert trace.actions[200] == bt.BUY and len(trace.fill_bars) == 0


def test_max_position_caps_the_volume():
    params = bt.BacktestParams(max_position_krw=300_000.0)
    trace = run(forced(series(closes(P, P)), params, {200: +1}), params)
    # bid 100,150 -> 100,200: min(floor8(1e6 / (100,200 * 1.001)), floor8(300,000 / 100,200))
    assert trace.fill_volumes.tolist() == [float(floor_volume(Decimal(300_000) / 100_200))]


def test_fewer_than_window_candles_never_trade():
    candles = series([P] * 150)
    m = evaluate_batch(candles, np.ones((3, 6)), DEFAULT)
    assert m.fills.tolist() == [0, 0, 0] and m.total_return.tolist() == [0.0] * 3
    assert m.bars == 0 and m.sharpe.tolist() == [0.0] * 3
    trace = trace_batch(candles, None, DEFAULT)
    assert not trace.actions.any() and trace.final_equity == 1_000_000.0


# --- exits ---------------------------------------------------------------------------------


def test_stop_loss_hits_at_its_level_exactly_and_not_above():
    # Entry 100,000 in bar 201 (its open, the close of 200); 2 % below is 98,000.
    prep = forced(series(closes(P, 98_001, 98_000, 98_000, 98_000)), DEFAULT, {200: +1})
    trace = run(prep, stop_loss=2.0)
    assert trace.actions[201] == bt.HOLD  # 98,001 > 98,000
    assert trace.actions[202] == bt.SELL and names(trace, [202]) == ["stop_loss"]
    assert trace.fill_bars.tolist() == [201, 203] and trace.fill_prices[1] == 98_000.0
    m = evaluate_batch(prep, np.ones((1, 6)), DEFAULT, stop_losses=[2.0])
    assert m.stop_loss_exits[0] == 1 and m.trailing_stop_exits[0] == 0
    assert run(prep).actions[202] == bt.HOLD  # no stop-loss without the setting


def test_trailing_stop_follows_the_peak():
    # Peak 110,000 at bar 202; 5 % below it is 104,500.
    prep = forced(series(closes(P, 105_000, 110_000, 104_600, 104_500, 104_500)),
                  DEFAULT, {200: +1})
    trace = run(prep, trailing_stop=5.0)
    assert trace.actions[200:204].tolist() == [bt.BUY] + [bt.HOLD] * 3  # 104,600 > 104,500
    assert names(trace, [204]) == ["trailing_stop"] and trace.actions[204] == bt.SELL
    assert trace.fill_bars.tolist() == [201, 205]


def test_take_profit_hits_at_its_level():
    prep = forced(series(closes(P, 102_900, 103_000, 103_000)), DEFAULT, {200: +1})
    trace = run(prep, take_profit=3.0)
    assert trace.actions[201] == bt.HOLD
    assert names(trace, [202]) == ["take_profit"] and trace.fill_bars.tolist() == [201, 203]


def test_exit_precedence_stop_then_trailing_then_take_profit_then_signal():
    # Both stops hit at 98,000 (stop 2 %, trailing 1 % of the peak 100,000): stop-loss.
    prep = forced(series(closes(P, 98_000, 98_000)), DEFAULT, {200: +1})
    assert names(run(prep, stop_loss=2.0, trailing_stop=1.0), [201]) == ["stop_loss"]
    # Take-profit at 120,000 (level 110,000), its ask (119,800) is not reached in
    # bar 202, which closes at 112,000: below the trailing level 114,000 of the
    # peak and still above the take-profit level. The trailing stop names it.
    close = closes(P, 120_000, 112_000, 112_000)
    open_ = np.concatenate([[P], close[:-1]])
    open_[202] = 112_000.0
    prep = forced(series(close, open_=open_), DEFAULT, {200: +1})
    trace = run(prep, trailing_stop=5.0, take_profit=10.0)
    assert names(trace, [201, 202]) == ["take_profit", "trailing_stop"]
    assert trace.fill_bars.tolist() == [201, 203]
    # A sell signal on a bar where an exit hits: the exit names the decision.
    prep = forced(series(closes(P, 103_000, 103_000)), DEFAULT, {200: +1, 201: -1})
    assert names(run(prep, take_profit=3.0), [201]) == ["take_profit"]
    assert names(run(prep), [201]) == ["signal"]


# --- guards --------------------------------------------------------------------------------


def test_cooldown_counts_candles_of_time_after_the_sell_fill():
    # Sell decided at 202, filled in bar 203; buys wanted at 203..207.
    close = closes(P, P, P, P, P, P, P, P)
    signals = {200: +1, 202: -1, **{b: +1 for b in range(203, 208)}}
    trace = run(forced(series(close), DEFAULT, signals), cooldown=3)
    assert names(trace, range(203, 206)) == ["cooldown"] * 3
    assert trace.actions[206] == bt.BUY and trace.fill_bars.tolist() == [201, 203, 207]
    # A missing minute after bar 203: bar 205 is already 3 periods after it.
    ts = DAY0 + 60 * np.r_[np.arange(204), np.arange(205, len(close) + 1)]
    trace = run(forced(series(close, ts=ts), DEFAULT, signals), cooldown=3)
    assert names(trace, [203, 204]) == ["cooldown"] * 2 and trace.actions[205] == bt.BUY


def test_no_cooldown_buys_at_the_sell_fill_bar():
    prep = forced(series(closes(P, P, P, P, P)), DEFAULT, {200: +1, 202: -1, 203: +1})
    trace = run(prep)
    assert trace.actions[203] == bt.BUY and trace.fill_bars.tolist() == [201, 203, 204]


def _two_stop_exits(first_exit: str = "stop") -> bt.Prepared:
    """Stop exits (at 1 %) filled in bars 202 and 204: a buy at 200 fills in
    201 at 100,000 and 99,000 at 201 hits; a buy at 202 fills in 203 at 99,000
    and 98,000 at 203 hits. Then buy signals every bar. ``first_exit="signal"``
    makes the first sell a signal sell at 201 (100,000, no stop hit)."""
    close = closes(P, 99_000, 99_000, 98_000, *[98_000] * 10)
    signals = {200: +1, 202: +1, **{b: +1 for b in range(204, len(close))}}
    if first_exit == "signal":
        close[201] = P
        signals[201] = -1
    return forced(series(close), DEFAULT, signals)


def _sell_bars(trace: batch.BatchTrace) -> list[int]:
    return trace.fill_bars[trace.fill_sides == bt.SELL].tolist()


def test_stop_guard_pauses_buys_after_n_stop_exits_in_the_window():
    params = bt.BacktestParams(stop_guard_exits=2, stop_guard_window_candles=3,
                               stop_guard_pause_candles=5)
    trace = run(_two_stop_exits(), params, stop_loss=1.0)
    assert names(trace, [201, 203]) == ["stop_loss"] * 2 and _sell_bars(trace)[:2] == [202, 204]
    # Blocked for decisions with t_204 <= t < t_204 + 5 periods: bars 204..208.
    assert names(trace, range(204, 209)) == ["stop_guard"] * 5
    assert trace.actions[209] == bt.BUY


def test_stop_guard_window_is_strict_and_signal_sells_do_not_count():
    # t_202 + 2 periods is not after t_204: the two exits are not within 2 candles.
    params = bt.BacktestParams(stop_guard_exits=2, stop_guard_window_candles=2,
                               stop_guard_pause_candles=5)
    assert run(_two_stop_exits(), params, stop_loss=1.0).actions[204] == bt.BUY
    prep = _two_stop_exits(first_exit="signal")
    params = bt.BacktestParams(stop_guard_exits=2, stop_guard_window_candles=10,
                               stop_guard_pause_candles=5)
    trace = run(prep, params, stop_loss=1.0)
    assert names(trace, [201, 203]) == ["signal", "stop_loss"]
    assert _sell_bars(trace)[:2] == [202, 204] and trace.actions[204] == bt.BUY
    one = dataclasses.replace(params, stop_guard_exits=1)
    assert names(run(prep, one, stop_loss=1.0), [204]) == ["stop_guard"]


def test_daily_loss_limit_blocks_the_rest_of_the_day_only():
    # Bars 0..203 close on day A (the close is t + 60), bar 204 on day B.
    start = DAY0 + 86_400 - 205 * 60
    close = np.array([P] * W + [P, 98_500, 98_500, 98_500, 98_500, 98_500, 98_500])
    signals = {199: +1, 200: -1, 201: +1, 202: +1, 203: +1, 204: +1}
    params = bt.BacktestParams(daily_loss_limit_pct=1.0)
    prep = forced(series(close, start=start), params, signals)
    assert prep.day[203] + 1 == prep.day[204]
    trace = run(prep, params)
    # Day A started at 1,000,000 (bar 199); at 200 the coin lost 1.5 %: limit reached.
    assert trace.equity[200] < 990_000
    assert names(trace, [201, 202, 203]) == ["loss_limit"] * 3
    assert trace.actions[204] == bt.BUY and trace.fill_bars.tolist() == [200, 201, 205]
    looser = bt.BacktestParams(daily_loss_limit_pct=2.0)
    assert run(forced(series(close, start=start), looser, signals), looser).actions[201] == \
        bt.BUY


def test_stand_aside_blocks_every_buy():
    params = bt.BacktestParams(stand_aside=True)
    trace = run(forced(series(closes(P, P, P)), params, {200: +1, 201: +1}), params)
    assert names(trace, [200, 201]) == ["stand_aside"] * 2 and len(trace.fill_bars) == 0


# --- candidates, chunks, threads, memory ------------------------------------------------------


def _grid(m: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"thresholds": rng.choice([0.1, 0.2, 0.35], m),
            "cooldowns": rng.choice([0, 2, 15], m),
            "stop_losses": rng.choice([0.0, 0.2, 0.5], m),
            "trailing_stops": rng.choice([0.0, 0.3, 1.0], m),
            "take_profits": rng.choice([0.0, 0.5, 2.0], m)}


SINGULAR = {"thresholds": "threshold", "cooldowns": "cooldown_candles",
            "stop_losses": "stop_loss_pct", "trailing_stops": "trailing_stop_pct",
            "take_profits": "take_profit_pct"}
GUARDED = bt.BacktestParams(stop_guard_exits=2, stop_guard_window_candles=30,
                            stop_guard_pause_candles=60, daily_loss_limit_pct=1.0)


def _same(a: batch.BatchMetrics, b: batch.BatchMetrics) -> None:
    for name in batch.BatchMetrics.ROW:
        assert np.array_equal(getattr(a, name), getattr(b, name), equal_nan=True), name


def test_per_candidate_values_equal_separate_runs():
    prep = bt.prepare(generate(4_000, seed=7), GUARDED)
    m = 24
    weights = np.random.default_rng(3).dirichlet(np.ones(6), m)
    grid = _grid(m, 4)
    together = evaluate_batch(prep, weights, GUARDED, **grid)
    assert len(set(together.final_equity.tolist())) > m // 2  # the values matter
    assert together.stop_loss_exits.sum() and together.trailing_stop_exits.sum()
    assert together.take_profit_exits.sum()
    for c in range(m):
        params = dataclasses.replace(GUARDED, **{SINGULAR[k]: v[c].item()
                                                 for k, v in grid.items()})
        alone = evaluate_batch(prep, weights[c:c + 1], params)
        for name in batch.BatchMetrics.ROW:
            assert np.array_equal(getattr(alone, name), getattr(together, name)[c:c + 1],
                                  equal_nan=True), (c, name)


def test_chunks_and_threads_do_not_change_results():
    prep = bt.prepare(generate(2_000, seed=2), GUARDED)
    weights = np.random.default_rng(1).dirichlet(np.ones(6), 300)
    grid = _grid(300, 5)
    one = evaluate_batch(prep, weights, GUARDED, **grid, chunk=10_000, threads=1)
    _same(one, evaluate_batch(prep, weights, GUARDED, **grid, chunk=7, threads=3))
    _same(one, evaluate_batch(prep, weights, GUARDED, **grid, chunk=64, threads=2))
    assert one.fills.sum() > 0


def test_memory_is_bounded_by_the_chunk():
    prep = bt.prepare(generate(400, seed=1), DEFAULT)
    m = 20_000
    weights = np.random.default_rng(0).dirichlet(np.ones(6), m)
    evaluate_batch(prep, weights[:10], DEFAULT)  # compiled before measuring
    tracemalloc.start()
    try:
        evaluate_batch(prep, weights, DEFAULT, chunk=256, threads=2)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # All score tables at once would be m * 729 * 8 = 117 MB; per-candidate
    # outputs are ~100 B each (2 MB), two chunks of tables 3 MB.
    assert peak < 12 * 2**20


def test_bad_input_is_one_sentence():
    candles = series([P] * 300)
    with pytest.raises(ValueError, match="must not be all zero"):
        evaluate_batch(candles, np.zeros((2, 6)), DEFAULT)
    with pytest.raises(ValueError, match=r"thresholds must have one value per candidate \(2\)"):
        evaluate_batch(candles, np.ones((2, 6)), DEFAULT, thresholds=[0.2])
    with pytest.raises(ValueError, match=r"thresholds\[1\]=0\.0 must be in \(0, 1\]"):
        evaluate_batch(candles, np.ones((2, 6)), DEFAULT, thresholds=[0.2, 0.0])
    with pytest.raises(ValueError, match=r"cooldowns\[0\]=1\.5 must be a whole number"):
        evaluate_batch(candles, np.ones((2, 6)), DEFAULT, cooldowns=[1.5, 2])
    with pytest.raises(ValueError, match=r"stop_losses\[0\]=100\.0 must be in \[0, 100\)"):
        trace_batch(candles, None, DEFAULT, stop_loss=100.0)


def test_uncacheable_compiles_without_the_cache(monkeypatch):
    real = batch.numba.njit

    def refusing(*args, **kwargs):
        if kwargs.get("cache"):
            raise RuntimeError("cannot cache function: no locator available")
        return real(*args, **kwargs)

    monkeypatch.setattr(batch.numba, "njit", refusing)

    def double(x):
        return 2 * x

    assert batch._jit(double)(21) == 42


# --- against the exact engine -------------------------------------------------------------


CASES = [
    dict(),
    dict(stop_loss_pct=1.0, take_profit_pct=1.5, cooldown_candles=5),
    dict(trailing_stop_pct=0.5, stop_guard_exits=2, stop_guard_window_candles=60,
         stop_guard_pause_candles=120),
    dict(stop_loss_pct=0.5, trailing_stop_pct=0.8, take_profit_pct=0.7, cooldown_candles=2,
         stop_guard_exits=1, stop_guard_window_candles=5, stop_guard_pause_candles=30,
         daily_loss_limit_pct=0.5),
    dict(stop_loss_pct=0.4, daily_loss_limit_pct=0.3, threshold=0.1),
    # A cap just above the minimum: positions fall below it and are added to.
    dict(max_position_krw=5_100.0, stop_loss_pct=0.3, trailing_stop_pct=0.4, threshold=0.1),
    # Minutes without trades (no candle): cooldown and stop guard count time.
    dict(profile="illiquid", stop_loss_pct=0.1, trailing_stop_pct=0.2, take_profit_pct=0.3,
         cooldown_candles=20, stop_guard_exits=2, stop_guard_window_candles=240,
         stop_guard_pause_candles=240, daily_loss_limit_pct=3.0, threshold=0.1),
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_trace_equals_the_exact_engine_bar_for_bar(case):
    settings = dict(CASES[case])
    profile = settings.pop("profile", "liquid")
    params = bt.BacktestParams(**settings)
    prep = bt.prepare(generate(3_000, seed=10 + case, profile=profile), params)
    rng = np.random.default_rng(case)
    weights = dict(zip(SIGNAL_NAMES, rng.dirichlet(np.ones(6)).tolist(), strict=True))
    exact = bt.run_backtest(prep, weights, params)
    trace = trace_batch(prep, weights, params)
    assert exact.fills >= 10
    assert np.array_equal(trace.actions, exact.actions)
    assert np.array_equal(trace.triggers, exact.triggers)
    assert np.array_equal(trace.holding, exact.holding)
    buys, sells = trace.fill_sides == bt.BUY, trace.fill_sides == bt.SELL
    assert trace.fill_bars[buys].tolist() == exact.buy_bars.tolist()
    assert trace.fill_bars[sells].tolist() == exact.sell_bars.tolist()
    assert trace.fill_prices[buys].tolist() == exact.buy_prices.tolist()
    assert trace.fill_prices[sells].tolist() == exact.sell_prices.tolist()
    np.testing.assert_allclose(trace.equity, exact.equity, rtol=1e-9)
    metrics = evaluate_batch(prep, np.array([list(weights.values())]), params)
    row = metrics.row(0)
    for name in ("fills", "round_trips", "stop_loss_exits", "trailing_stop_exits",
                 "take_profit_exits", "exposure"):
        assert row[name] == getattr(exact, name), name
    for name in ("final_equity", "fees", "total_return", "max_drawdown", "sharpe"):
        assert row[name] == pytest.approx(getattr(exact, name), rel=1e-9, abs=1e-9), name
    assert row["win_rate"] == exact.win_rate or (exact.win_rate is None
                                                  and math.isnan(row["win_rate"]))


def test_batch_agrees_with_the_exact_engine_over_many_weights():
    params = bt.BacktestParams(stop_loss_pct=1.0, trailing_stop_pct=0.6, cooldown_candles=3)
    prep = bt.prepare(generate(2_500, seed=11), params)
    rng = np.random.default_rng(5)
    matrix = np.vstack([np.eye(6), np.ones(6), rng.dirichlet(np.ones(6), 9),
                        rng.dirichlet(np.full(6, 0.3), 9)])
    metrics = evaluate_batch(prep, matrix, params)
    traded = 0
    for i, row in enumerate(matrix):
        exact = bt.run_backtest(prep, dict(zip(SIGNAL_NAMES, row, strict=True)), params)
        assert metrics.fills[i] == exact.fills and metrics.round_trips[i] == exact.round_trips
        assert metrics.exposure[i] == exact.exposure
        assert metrics.final_equity[i] == pytest.approx(exact.final_equity, rel=1e-9)
        assert metrics.sharpe[i] == pytest.approx(exact.sharpe, rel=1e-7, abs=1e-9)
        traded += exact.fills > 0
    assert traded >= 20
