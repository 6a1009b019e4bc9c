"""The signals, the score and the decision: hand-checked cases, and the
property that the vectorised forms equal the per-window forms bit for bit."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from bot.models import SIGNAL_NAMES
from bot.trading import strategies as st

DAY0 = int(datetime(2024, 3, 1, tzinfo=UTC).timestamp())


def flat(n: int = st.WINDOW, price: float = 100_000.0) -> list[float]:
    return [price] * n


# --- weights and score ----------------------------------------------------------


def test_normalise_none_and_empty_give_equal_weights():
    for given_weights in (None, {}):
        w = st.normalise_weights(given_weights)
        assert list(w) == list(SIGNAL_NAMES)
        assert all(v == pytest.approx(1 / 6, abs=1e-15) for v in w.values())
        assert w == st.normalise_weights(dict.fromkeys(SIGNAL_NAMES, 2.5))
        assert st.score_table(given_weights).tolist() == st.score_table(w).tolist()


def test_normalise_scales_to_one_and_missing_names_weigh_zero():
    w = st.normalise_weights({"trend": 3, "day": 1})
    assert w == {"trend": 0.75, "momentum": 0.0, "swing": 0.0, "scalping": 0.0, "day": 0.25,
                 "price_action": 0.0}


@pytest.mark.parametrize("bad", [{"trend": -1, "day": 2}, {"trend": float("nan")},
                                 {"trend": float("inf")}, {"trend": 0, "day": 0},
                                 {"trnd": 1}])
def test_normalise_rejects_bad_weights(bad):
    with pytest.raises(ValueError):
        st.normalise_weights(bad)


def test_normalise_matrix_matches_mapping_form():
    rng = np.random.default_rng(3)
    raw = rng.random((50, 6)) * rng.integers(0, 2, (50, 6))
    raw[:, 0] += 0.01
    rows = st.normalise_matrix(raw)
    for r, n in zip(raw, rows, strict=True):
        expect = st.normalise_weights(dict(zip(SIGNAL_NAMES, r, strict=True)))
        assert n.tolist() == list(expect.values())
    with pytest.raises(ValueError):
        st.normalise_matrix(np.zeros((1, 6)))


def test_score_is_weighted_sum_in_range():
    signals = {"trend": 1, "momentum": 1, "swing": -1, "scalping": 0, "day": 0,
               "price_action": 0}
    assert st.score(signals, {"trend": 1, "swing": 1}) == 0.0
    assert st.score(signals, {"trend": 1}) == 1.0
    assert st.score(signals, {"swing": 2, "trend": 2}) == 0.0
    assert -1.0 <= st.score(signals, None) <= 1.0


@settings(max_examples=60, deadline=None)
@given(hs.lists(hs.floats(0, 10, allow_nan=False), min_size=6, max_size=6)
       .filter(lambda w: sum(w) > 1e-3))
def test_score_table_equals_score_for_all_729_codes(raw):
    weights = dict(zip(SIGNAL_NAMES, raw, strict=True))
    table = st.score_table(weights)
    decoded = st.code_signals()
    for code in range(st.N_CODES):
        signals = dict(zip(SIGNAL_NAMES, decoded[code].tolist(), strict=True))
        assert table[code] == st.score(signals, weights)  # exactly, not approximately


def test_signal_codes_round_trip():
    decoded = st.code_signals()
    assert st.signal_codes(decoded).tolist() == list(range(st.N_CODES))
    assert st.signal_codes(np.zeros((1, 6), dtype=np.int8))[0] == 364


# --- one window by hand ----------------------------------------------------------


def test_flat_window_gives_all_zero_signals():
    assert set(st.signals_for_window(flat(), 100_000.0).values()) == {0}


def test_rising_last_bar():
    c = flat()
    c[-1] = 100_200.0  # +0.2 %: a new high, above the day open
    s = st.signals_for_window(c, 100_000.0)
    assert s == {"trend": 1, "momentum": 1, "swing": 1, "scalping": 1, "day": 1,
                 "price_action": 1}


def test_small_falling_last_bar():
    c = flat()
    c[-1] = 99_950.0  # -0.05 %: not a scalping move
    s = st.signals_for_window(c, 99_950.0)
    assert s == {"trend": -1, "momentum": -1, "swing": -1, "scalping": 0, "day": 0,
                 "price_action": -1}


def test_ties_give_zero_not_sell():
    c = flat()
    c[-7] = 90_000.0  # out of momentum's reach, inside swing's 20 bars
    s = st.signals_for_window(c, None)
    assert s["trend"] == 0 and s["momentum"] == 0 and s["day"] == 0
    assert s["swing"] == 1  # mean of 5 above mean of 20
    assert s["price_action"] == 0  # equal to the earlier max


def test_scalping_boundaries():
    c = flat(price=1000.0)
    c[-1] = 1001.0  # exactly +0.1 %
    assert st.signals_for_window(c, None)["scalping"] == 1
    c[-1] = 999.0
    assert st.signals_for_window(c, None)["scalping"] == -1


def test_price_action_looks_at_199_earlier_closes_only():
    c = flat(250)
    c[-201] = 200_000.0  # just outside the window
    c[-1] = 100_100.0
    assert st.signals_for_window(c, None)["price_action"] == 1
    c[-200] = 200_000.0  # first candle of the window
    assert st.signals_for_window(c, None)["price_action"] == 0


def test_day_open_decimal_and_unknown():
    c = flat()
    assert st.signals_for_window(c, Decimal("99999"))["day"] == 1
    assert st.signals_for_window(c, None)["day"] == 0
    assert st.signals_for_window(c, 0)["day"] == 0


def test_short_window_raises_and_decide_holds():
    with pytest.raises(ValueError):
        st.signals_for_window(flat(199), None)
    d = st.decide(flat(199), None, None, 0.2, holding=False)
    assert d.action == "hold" and d.reason == "not enough candles"


def test_decide_buy_sell_hold():
    up = flat()
    up[-1] = 100_200.0
    down = flat()
    down[-1] = 99_800.0
    assert st.decide(up, 100_000.0, None, 0.2, holding=False).action == "buy"
    assert st.decide(up, 100_000.0, None, 0.2, holding=True).action == "hold"
    assert st.decide(down, 100_000.0, None, 0.2, holding=True).action == "sell"
    assert st.decide(down, 100_000.0, None, 0.2, holding=False).action == "hold"
    d = st.decide(up, 100_000.0, {"trend": 1}, Decimal("0.2"), holding=False)
    assert d.action == "buy" and d.score == 1.0 and d.signals["trend"] == 1
    with pytest.raises(ValueError):
        st.decide(up, None, None, 0, holding=False)


def test_score_exactly_at_threshold_buys():
    up = flat()
    up[-1] = 100_050.0  # +0.05 %: trend up, no scalping move, day open unknown
    d = st.decide(up, None, {"trend": 1, "scalping": 1, "day": 1}, 1 / 3, holding=False)
    assert d.score == 1 / 3
    assert d.action == "buy"


# --- vectorised == per window ----------------------------------------------------


def _series(draw_steps: list[int], tick: float, start: float) -> np.ndarray:
    # Prices on a coarse grid so that ties, flat stretches and 0.1 % moves all occur.
    return np.maximum(start + np.cumsum(np.array(draw_steps, dtype=np.float64)) * tick, tick)


series_steps = hs.lists(hs.sampled_from([-3, -1, -1, 0, 0, 0, 1, 1, 3, 20, -20]),
                        min_size=300, max_size=600)


@settings(max_examples=25, deadline=None)
@given(series_steps, hs.sampled_from([(1000.0, 50_000_000.0), (1.0, 3000.0),
                                      (0.01, 5.0), (10.0, 120_000.0)]),
       hs.integers(0, 86_399))
def test_signal_matrix_equals_signals_for_window(steps, grid, offset):
    tick, start = grid
    close = _series(steps, tick, start)
    n = len(close)
    ts = DAY0 + offset + 60 * np.arange(n, dtype=np.int64)
    open_ = np.concatenate([[close[0]], close[:-1]])
    matrix = st.signal_matrix(ts, open_, close)
    opens = st.day_opens(ts, open_)
    assert not matrix[:st.FIRST_DECISION].any()
    for i in range(st.FIRST_DECISION, n):
        window = close[i - st.WINDOW + 1:i + 1]
        expect = st.signals_for_window(window, float(opens[i]))
        assert matrix[i].tolist() == list(expect.values()), f"bar {i}"


def test_day_opens_follow_utc_days():
    ts = np.array([DAY0 - 120, DAY0 - 60, DAY0, DAY0 + 60, DAY0 + 86_400 + 300], dtype=np.int64)
    open_ = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert st.day_opens(ts, open_).tolist() == [1.0, 1.0, 3.0, 3.0, 5.0]


@settings(max_examples=40, deadline=None)
@given(hs.lists(hs.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=400),
       hs.integers(1, 60))
def test_rolling_max_is_exact(values, width):
    x = np.array(values)
    if width > len(x):
        width = len(x)
    got = st._rolling_max(x, width)
    expect = [max(values[k:k + width]) for k in range(len(values) - width + 1)]
    assert got.tolist() == expect


def test_signal_matrix_short_series_is_all_zero():
    close = np.full(150, 100.0)
    m = st.signal_matrix(np.arange(150) * 60, close, close)
    assert m.shape == (150, 6) and not m.any()


def test_signals_reject_bad_closes():
    c = flat()
    c[5] = math.nan
    with pytest.raises(ValueError):
        st.signals_for_window(c, None)


@settings(max_examples=200, deadline=None)
@given(hs.lists(hs.one_of(hs.just(0.0), hs.floats(1e-6, 1e3)), min_size=6, max_size=6)
       .filter(lambda w: sum(w) > 0))
def test_normalising_twice_changes_nothing(raw):
    once = st.normalise_weights(dict(zip(SIGNAL_NAMES, raw, strict=True)))
    assert st.normalise_weights(once) == once
    total = 0.0
    for value in once.values():
        total += value
    assert total == 1.0
    assert st.normalise_matrix(np.array([raw]))[0].tolist() == list(once.values())
    grid = [round(v * 10_000) / 10_000 for v in raw]
    if sum(grid) > 0:
        weights = dict(zip(SIGNAL_NAMES, grid, strict=True))
        assert st.score_table(st.normalise_weights(weights)).tolist() == \
            st.score_table(weights).tolist()
