"""The backtest engine: hand-computed trades, the contract with the decision
function and a bar-by-bar reference simulation, tick rounding, no look-ahead,
and the CSV reader (the batch evaluator: tests/optimize/test_batch.py)."""

from __future__ import annotations

import json
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from bot.config import load_settings
from bot.models import CandleArrays
from bot.money import KRW_TICKS, floor_volume
from bot.optimize import backtest as bt
from testkit.series import candles, random_walk

DEFAULT = bt.BacktestParams()


# --- hand-built series --------------------------------------------------------------


def one_round_trip() -> CandleArrays:
    # 200 flat bars, then up (buy), flat, down (sell), flat.
    close = [100_000.0] * 200 + [101_000.0, 101_000.0, 100_500.0, 100_500.0, 100_500.0,
                                 100_500.0]
    c = np.array(close)
    return candles(c, high=c + 200, low=c - 200)


def test_one_round_trip_by_hand():
    result = bt.run_backtest(one_round_trip(), {"trend": 1}, DEFAULT)
    # Bar 200: close 101,000 > 100,000, trend +1, flat: buy.
    bid = Decimal(101_000) * Decimal("1.0015")  # 101,151.5 -> tick 100, up: 101,200
    assert bid == Decimal("101151.5")
    volume = floor_volume(Decimal(1_000_000) / (Decimal(101_200) * Decimal("1.001")))
    assert volume == Decimal("9.87155137")  # sized at the bid: 1,000,000 / 101,301.2
    # Bar 201 opens at 101,000 <= 101,200: the bid is marketable and fills at the open;
    # the funds the cheaper fill did not use stay in cash.
    buy_value = volume * 101_000  # 997,026.68837
    buy_fee = buy_value * Decimal("0.0005")
    cash = Decimal(1_000_000) - buy_value - buy_fee
    assert cash == Decimal("2474.798285815")
    # Bar 202: close 100,500 < 101,000, trend -1, holding: sell.
    ask = Decimal(100_500) * Decimal("0.9985")  # 100,349.25 -> tick 100, down: 100,300
    assert ask == Decimal("100349.25")
    # Bar 203 opens at 100,500 >= 100,300: the ask fills at the open.
    sell_value = volume * 100_500
    sell_fee = sell_value * Decimal("0.0005")
    final = cash + sell_value - sell_fee
    assert final == Decimal("994069.6655144725")
    assert result.buy_bars.tolist() == [201] and result.buy_prices.tolist() == [101_000.0]
    assert result.sell_bars.tolist() == [203] and result.sell_prices.tolist() == [100_500.0]
    assert result.fills == 2 and result.round_trips == 1 and result.win_rate == 0.0
    assert result.final_equity == pytest.approx(float(final), abs=1e-6)
    assert result.fees == pytest.approx(float(buy_fee + sell_fee), abs=1e-9)
    assert result.total_return == pytest.approx(float(final) / 1e6 - 1)
    # slippage against the decision's close: both filled at that close
    assert result.slippages.tolist() == [0.0, 0.0] and result.mean_slippage == 0.0
    actions = result.actions.tolist()
    assert actions[200] == bt.BUY and actions[202] == bt.SELL
    assert actions.count(bt.BUY) == 1 and actions.count(bt.SELL) == 1
    assert result.triggers[202] == bt.T_SIGNAL and result.sell_triggers.tolist() == [bt.T_SIGNAL]
    assert result.holding[201:203].tolist() == [True, True]
    assert not result.holding[203:].any()
    # Equity at bar 201: cash plus the coin at the close.
    assert result.equity[201] == pytest.approx(float(cash) + float(volume) * 101_000)
    assert result.exposure == pytest.approx(2 / 7)  # bars 199..205 hold at 201, 202


def test_fill_at_the_limit_when_the_open_is_beyond_it():
    # The bar after each decision opens beyond the order's limit but reaches it.
    close = np.array([100_000.0] * 200 + [101_000.0, 101_000.0, 100_500.0, 100_500.0, 100_500.0])
    open_ = np.concatenate([[100_000.0], close[:-1]])
    open_[201] = 101_500.0  # above the bid 101,200: not marketable
    open_[203] = 100_000.0  # below the ask 100,300
    high, low = np.maximum(open_, close) + 200, np.minimum(open_, close) - 200
    result = bt.run_backtest(candles(close, high, low, open_), {"trend": 1}, DEFAULT)
    assert result.buy_prices.tolist() == [101_200.0] and result.sell_prices.tolist() == [100_300.0]
    assert result.slippages == pytest.approx([101_200 / 101_000 - 1, 100_300 / 100_500 - 1])


def test_limit_never_reached_leaves_equity_unchanged():
    # Each bar gaps above the previous bid: bids at 101,200 and 101,700 never fill.
    close = np.array([100_000.0] * 200 + [101_000.0, 101_500.0, 102_000.0])
    low = close - 100
    low[201], low[202] = 101_300.0, 101_800.0
    series = candles(close, high=close + 100, low=low, open_=close)
    result = bt.run_backtest(series, {"trend": 1}, DEFAULT)
    assert result.actions[200:].tolist() == [bt.BUY] * 3  # decided, never filled
    assert result.fills == 0 and result.round_trips == 0 and result.win_rate is None
    assert result.final_equity == 1_000_000.0 and result.total_return == 0.0
    assert np.all(result.equity == 1_000_000.0)
    assert result.sharpe == 0.0 and result.max_drawdown == 0.0


def test_all_signals_zero_never_trades():
    series = candles(np.full(400, 100_000.0))
    result = bt.run_backtest(series, None, DEFAULT)
    assert not result.scores.any() and not result.actions.any()
    assert result.fills == 0 and result.final_equity == 1_000_000.0
    assert result.buy_and_hold_return == 0.0


def test_fewer_than_window_candles_hold():
    series = random_walk(150, 1)
    result = bt.run_backtest(series, None, DEFAULT)
    assert result.fills == 0 and not result.actions.any() and result.bars == 150


def test_no_order_below_minimum():
    params = bt.BacktestParams(cash=5_004.0)  # 5,004 / 1.001 < 5,000: never a buy
    result = bt.run_backtest(one_round_trip(), {"trend": 1}, params)
    assert result.actions[200] == bt.BUY and result.fills == 0


def test_position_below_minimum_is_not_holding():
    # Buy with ~5,100 KRW, then the price falls 5 %: the coin is worth < 5,000,
    # so the falling bars are not sell decisions (not holding) and no sell fills.
    close = np.array([100_000.0] * 200 + [101_000.0, 101_000.0, 96_000.0, 95_000.0])
    params = bt.BacktestParams(cash=5_100.0)
    result = bt.run_backtest(candles(close, high=close + 300, low=close - 300), {"trend": 1},
                             params)
    assert result.buy_bars.tolist() == [201]
    assert result.holding[201] and not result.holding[202]
    assert result.actions[202:].tolist() == [bt.HOLD, bt.HOLD]  # score -1 but not holding
    assert result.sell_bars.size == 0


def test_result_to_dict_is_the_json_object():
    result = bt.run_backtest(random_walk(600, 2), None, DEFAULT)
    data = result.to_dict()
    assert list(data) == ["final_equity", "total_return", "buy_and_hold_return",
                          "max_drawdown", "sharpe", "round_trips", "fills", "win_rate",
                          "exposure", "fees", "start_ts", "end_ts", "bars", "stop_loss_exits",
                          "trailing_stop_exits", "take_profit_exits", "guarded_buys",
                          "mean_slippage"]
    json.dumps(data)
    assert data["start_ts"] == "2024-03-01T00:00:00Z" and data["bars"] == 600
    full = result.to_dict(arrays=True)
    assert len(full["equity"]) == 600 and full["buy_bars"] == result.buy_bars.tolist()
    json.dumps(full)


def test_params_from_settings_and_validation():
    params = bt.BacktestParams.from_settings(load_settings({"THRESHOLD": "0.3",
                                                            "PAPER_START_KRW": "2000000"}))
    assert params == bt.BacktestParams(threshold=0.3, cash=2_000_000.0, stop_loss_pct=3.0,
                                       cooldown_candles=60, stop_guard_exits=2,
                                       stop_guard_window_candles=120,
                                       stop_guard_pause_candles=240, daily_loss_limit_pct=5.0)
    tuned = bt.BacktestParams.from_settings(load_settings({
        "TRAILING_STOP_PCT": "2.5", "TAKE_PROFIT_PCT": "10", "COOLDOWN_CANDLES": "15",
        "STOP_GUARD_EXITS": "2", "STOP_GUARD_WINDOW_CANDLES": "30",
        "STOP_GUARD_PAUSE_CANDLES": "90", "MAX_POSITION_KRW": "300000"}))
    assert (tuned.trailing_stop_pct, tuned.take_profit_pct, tuned.cooldown_candles) == (
        2.5, 10.0, 15)
    assert (tuned.stop_guard_exits, tuned.stop_guard_window_candles,
            tuned.stop_guard_pause_candles, tuned.max_position_krw) == (2, 30, 90, 300_000.0)
    with pytest.raises(ValueError):
        bt.BacktestParams(threshold=0.0)


# --- tick rounding ------------------------------------------------------------------


BANDS = [(lo, tick) for lo, tick in reversed(KRW_TICKS)]


@settings(max_examples=300, deadline=None)
@given(hs.integers(0, len(BANDS) - 1), hs.floats(0, 1), hs.one_of(
    hs.sampled_from([0.0, 0.0005, 0.0015, 0.002, 0.01, 0.05, 0.0999]),
    hs.integers(0, 99_999).map(lambda n: n / 1e6)), hs.sampled_from(["bid", "ask"]))
def test_vectorised_tick_rounding_equals_round_price(band, where, aggr, side):
    # The domain limit_prices is exact on: closes below MAX_EXACT_PRICE,
    # aggressiveness of at most AGGRESSIVENESS_DECIMALS decimals (hypothesis once
    # found close 1e10 with 0.0999 a tick off before the snap became relative).
    lo, tick = BANDS[band]
    hi = BANDS[band + 1][0] if band + 1 < len(BANDS) else Decimal(repr(bt.MAX_EXACT_PRICE))
    units = int((lo + (hi - lo) * Decimal(repr(where))) / tick)
    close = float(max(units, 1) * tick)  # a traded price lies on its tick
    expect = float(bt.limit_price(close, aggr, side))
    assert bt.limit_prices(np.array([close]), aggr, side)[0] == expect


@pytest.mark.parametrize("side", ["bid", "ask"])
def test_tick_rounding_at_the_top_of_the_domain(side):
    closes = np.array([1e10, 1.5e10, 1.9999e10, 123_456_789_000.0 / 10])
    for aggr in (0.0999, 0.099999, 0.000001, 0.012345):
        got = bt.limit_prices(closes, aggr, side).tolist()
        assert got == [float(bt.limit_price(c, aggr, side)) for c in closes.tolist()]


def test_aggressiveness_beyond_the_exact_domain_is_refused():
    with pytest.raises(ValueError, match="at most 6 decimals"):
        bt.BacktestParams(aggressiveness=0.0000001)
    bt.BacktestParams(aggressiveness=0.000001)


def test_tick_rounding_many_prices_every_band():
    rng = np.random.default_rng(7)
    for lo, tick in BANDS:
        top = lo * 10 if lo > 0 else Decimal("0.00001")
        units = rng.integers(max(int(lo / tick), 1), int(top / tick) + 2, 500)
        closes = np.array([float(int(u) * tick) for u in units])
        for side in ("bid", "ask"):
            got = bt.limit_prices(closes, 0.0015, side)
            expect = [float(bt.limit_price(c, 0.0015, side)) for c in closes.tolist()]
            assert got.tolist() == expect, (lo, side)


def test_limit_price_examples():
    assert bt.limit_price(100_000.0, 0.0015, "bid") == Decimal(100_200)
    assert bt.limit_price(100_000.0, 0.0015, "ask") == Decimal(99_850)
    assert bt.limit_price(150_000_000.0, 0.0015, "bid") == Decimal(150_225_000)
    assert bt.limit_price(0.00123, 0.0015, "bid") == Decimal("0.00124")  # tick 0.00001


# --- no look-ahead -----------------------------------------------------------------


@settings(max_examples=15, deadline=None)
@given(hs.integers(0, 2**31), hs.integers(210, 590))
def test_no_look_ahead(seed, cut):
    series = random_walk(600, seed % 1000, vol=0.002)
    base = bt.run_backtest(series, None, DEFAULT)
    rng = np.random.default_rng(seed)
    tail = slice(cut + 1, None)
    changed = CandleArrays(series.ts, series.open.copy(), series.high.copy(),
                           series.low.copy(), series.close.copy(), series.volume)
    factor = np.exp(rng.normal(0, 0.01, 600 - cut - 1))
    for arr in (changed.open, changed.high, changed.low, changed.close):
        arr[tail] *= factor
    other = bt.run_backtest(changed, None, DEFAULT)
    head = slice(0, cut + 1)
    assert other.actions[head].tolist() == base.actions[head].tolist()
    assert other.holding[head].tolist() == base.holding[head].tolist()
    assert other.equity[head].tolist() == base.equity[head].tolist()
    assert base.buy_bars[base.buy_bars <= cut].tolist() == \
        other.buy_bars[other.buy_bars <= cut].tolist()
    assert base.sell_bars[base.sell_bars <= cut].tolist() == \
        other.sell_bars[other.sell_bars <= cut].tolist()


def test_plot_draws_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    from bot.optimize.plot import plot_backtest

    series = random_walk(800, 9, vol=0.003)
    result = bt.run_backtest(series, None, DEFAULT)
    out = plot_backtest(series, result, tmp_path / "run.png", title="KRW-BTC")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
