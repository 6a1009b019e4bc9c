"""The parameter search and the verdict: a planted edge is found and
adopted, noise is not, a market where everything loses stands aside,
OPTIMIZE_TUNE limits what changes, and a seed fixes the result."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bot.models import CandleArrays
from bot.optimize import search as opt
from bot.optimize.backtest import BacktestParams
from bot.trading import strategies as st
from testkit.series import DAY0
from testkit.series import momentum_market as market

# Cheap trading, so that a modest edge survives costs.
CHEAP = BacktestParams(aggressiveness=0.0, fee_rate=0.0005, fee_buffer=0.0005)
SETTINGS_LIKE = BacktestParams(threshold=0.2, stop_loss_pct=5.0)  # costs as the defaults



def test_recovers_a_planted_momentum_edge():
    train, holdout = opt.split(market(8000, 0, edge=0.0004), 0.3)
    out = opt.choose(train, holdout, CHEAP, None, candidates=400, seed=0,
                     min_improvement=0.1)
    assert max(out.weights, key=out.weights.get) == "momentum"
    assert out.weights["momentum"] >= 0.4
    assert out.verdict == "adopt" and out.adopted, out.reason
    assert out.objective_holdout_new >= out.objective_holdout_current + 0.1
    assert out.holdout_new["total_return"] > 0 and out.holdout_new["round_trips"] >= 5
    assert out.t_holdout_new >= opt.MIN_T_STAT
    assert out.candidates == 400 and out.duration_s > 0
    # the default tune varies the threshold and the cooldown too, on their grids
    assert out.params["threshold"] in opt.THRESHOLDS
    assert out.params["cooldown_candles"] in opt.COOLDOWNS
    assert out.tune == ("weights", "threshold", "cooldown")


@pytest.mark.parametrize("seed", [1, 2])
def test_pure_noise_is_not_adopted(seed):
    train, holdout = opt.split(market(8000, seed), 0.3)
    out = opt.choose(train, holdout, BacktestParams(), None, candidates=400, seed=0,
                     min_improvement=0.1)
    assert out.verdict != "adopt" and not out.adopted, out.reason
    assert out.reason


def test_noise_keeps_a_set_that_does_not_lose():
    # THRESHOLD 1 buys only when all six signals agree: on noise it barely trades
    current = opt.ParamSet.of(BacktestParams(threshold=1.0))
    train, holdout = opt.split(market(8000, 1), 0.3)
    out = opt.choose(train, holdout, BacktestParams(), current, candidates=200, seed=0)
    assert out.holdout_current["total_return"] > -opt.STAND_ASIDE_LOSS
    assert out.verdict == "keep", out.reason
    assert out.current_params == current.to_dict()


@pytest.mark.parametrize("seed", [1, 2])
def test_a_steady_fall_stands_aside(seed):
    # Long-only trading on a market that falls with noise: every candidate
    # loses or barely trades, and the set in force (the defaults) churns.
    train, holdout = opt.split(market(8000, seed, drift=-0.0002), 0.3)
    out = opt.choose(train, holdout, SETTINGS_LIKE, None, candidates=300, seed=0)
    assert out.verdict == "stand_aside", out.reason
    assert out.holdout_current["total_return"] < -opt.STAND_ASIDE_LOSS
    assert out.t_holdout_current <= opt.STAND_ASIDE_T
    assert out.reason.startswith("the parameters in force lost")
    assert not out.adopted


def test_an_alternating_market_stands_aside():
    # Up one bar, down the next: every signal flips each minute and a
    # candidate that trades at all pays the spread and the fees each time.
    n = 6000
    close = 50_000_000.0 * (1 + 0.002 * (np.arange(n) % 2))
    close = np.round(close / 1000) * 1000
    open_ = np.concatenate([[close[0]], close[:-1]])
    data = CandleArrays(DAY0 + 60 * np.arange(n, dtype=np.int64), open_,
                        np.maximum(open_, close), np.minimum(open_, close), close, np.ones(n))
    train, holdout = opt.split(data, 0.3)
    out = opt.choose(train, holdout, SETTINGS_LIKE, None, candidates=200, seed=0)
    assert out.verdict == "stand_aside", out.reason
    assert out.holdout_current["round_trips"] > 50  # the defaults churn


def test_standing_aside_is_sticky_until_an_adoption():
    current = opt.ParamSet.of(BacktestParams(threshold=1.0))
    train, holdout = opt.split(market(8000, 1), 0.3)
    out = opt.choose(train, holdout, BacktestParams(), current, candidates=200, seed=0,
                     standing_aside=True)
    assert out.verdict == "stand_aside" and out.reason.startswith("still standing aside")
    # too few candles to judge: a market standing aside stays so, else it keeps
    short_train, short_holdout = opt.split(market(1000, 3), 0.3)
    for aside, expected in ((True, "stand_aside"), (False, "keep")):
        got = opt.choose(short_train, short_holdout, CHEAP, None, candidates=20,
                         standing_aside=aside)
        assert got.verdict == expected and "not enough candles" in got.reason
    # an adoption ends it
    train, holdout = opt.split(market(8000, 0, edge=0.0004), 0.3)
    assert opt.choose(train, holdout, CHEAP, None, candidates=300, seed=0,
                      standing_aside=True).verdict == "adopt"


def test_the_noise_margin():
    class R:  # the two numbers the margin reads
        def __init__(self, total_return):
            self.total_return = total_return

    assert opt.lost_beyond_noise(R(-0.006), -1.0)
    assert not opt.lost_beyond_noise(R(-0.004), -5.0)  # a small loss: noise
    assert not opt.lost_beyond_noise(R(-0.05), -0.5)  # one unlucky trade: noise
    assert opt.verdict((True, "ok"), R(-0.5), -9.0, True) == ("adopt", "ok")
    assert opt.verdict((False, "no"), R(-0.5), -9.0, False)[0] == "stand_aside"
    assert opt.verdict((False, "no"), R(0.01), 1.0, False) == ("keep", "no")


@pytest.mark.parametrize("tune", [("weights",), ("threshold",), ("cooldown",), ("exits",),
                                  ("threshold", "exits")])
def test_tune_limits_what_changes(tune):
    current = opt.ParamSet({"trend": 0.3, "momentum": 0.7}, 0.35, 7, 4.0, 0.5, 0.0)
    data = market(3000, 5, edge=0.0002)
    found = opt.search_sets(data, CHEAP, tune=tune, candidates=150, seed=3, current=current)
    pool = [f.params for f in found.finalists] + [found.best.to_dict()]
    fields = {"weights": ("weights",), "threshold": ("threshold",),
              "cooldown": ("cooldown_candles",),
              "exits": ("stop_loss_pct", "trailing_stop_pct", "take_profit_pct")}
    fixed = [name for group, names in fields.items() if group not in tune for name in names]
    for params in pool:
        for name in fixed:  # what is not tuned is the current set's, exactly
            assert params[name] == current.to_dict()[name], (name, params)
    tuned = [name for group in tune for name in fields[group]]
    values = {name: {p[name] for p in pool} for name in tuned if name != "weights"}
    for name, seen in values.items():
        assert seen <= set(opt.GRIDS[name]) | {current.to_dict()[name]}, name
    # every combination of the tuned grids is reachable: the threshold's 19
    # values, the 6 cooldowns and the current 7, the 96 exit combinations
    # (and the current exits' neighbours); weights make the budget
    expected = {("weights",): 150, ("threshold",): 19, ("cooldown",): 7,
                ("threshold", "exits"): 150}
    if tune in expected:
        assert found.candidates == expected[tune]
    else:
        assert 96 < found.candidates < 150


def test_same_seed_same_set():
    data = market(3000, 5, edge=0.0002)
    current = opt.ParamSet.of(CHEAP, {"trend": 1, "swing": 1})
    one = opt.search_sets(data, CHEAP, candidates=300, seed=7, current=current)
    two = opt.search_sets(data, CHEAP, candidates=300, seed=7, current=current)
    assert one.best == two.best and one.objective == two.objective
    assert [f.params for f in one.finalists] == [f.params for f in two.finalists]
    assert sum(one.weights.values()) == pytest.approx(1.0)
    assert all(abs(w * opt.GRID - round(w * opt.GRID)) < 1e-6 for w in one.weights.values())
    other = opt.search_sets(data, CHEAP, candidates=300, seed=8, current=current)
    assert [f.params for f in other.finalists] != [f.params for f in one.finalists]


def test_too_few_candles_is_not_adopted():
    train, holdout = opt.split(market(1000, 3), 0.3)  # holdout: 300 + 199 warm-up < 500
    out = opt.choose(train, holdout, CHEAP, {"trend": 1}, candidates=50, seed=0)
    assert out.verdict == "keep" and out.reason.startswith("not enough candles: holdout")
    assert out.weights == st.normalise_weights({"trend": 1})
    assert out.holdout_new is None and not out.judged


def test_split_is_in_time_order_with_warm_up():
    data = market(1000, 4)
    train, holdout = opt.split(data, 0.25)
    assert len(train.ts) == 750 and train.ts[-1] < data.ts[750]
    # The holdout's first decision (bar WINDOW-1) is the first candle after the train.
    assert holdout.ts[st.FIRST_DECISION] == data.ts[750]
    assert holdout.ts[-1] == data.ts[-1]
    with pytest.raises(ValueError):
        opt.split(data, 1.0)


def test_objective_shrinks_with_few_round_trips():
    assert opt.objective(10.0, 40) == 10.0
    assert opt.objective(10.0, 5) == 2.5
    assert opt.objective(-4.0, 0) == 0.0
    np.testing.assert_allclose(opt.objective(np.array([2.0, 2.0]), np.array([10, 30])),
                               [1.0, 2.0])


def test_grid_points_sum_to_grid():
    rng = np.random.default_rng(0)
    parts = opt._to_grid(rng.dirichlet(np.full(6, 0.3), 500))
    assert (parts.sum(axis=1) == opt.GRID).all() and (parts >= 0).all()
    assert opt._to_grid(np.eye(6))[2].tolist() == [0, 0, opt.GRID, 0, 0, 0]


def test_outcome_to_dict_is_plain_data():
    train, holdout = opt.split(market(2000, 6, edge=0.0004), 0.3)
    out = opt.choose(train, holdout, CHEAP, None, candidates=60, seed=1)
    data = out.to_dict()
    json.dumps(data)
    assert set(data) >= {"verdict", "params", "current_params", "weights", "adopted", "reason",
                         "train_new", "holdout_current", "t_holdout_new", "candidates",
                         "duration_s", "tune"}
    assert opt.ParamSet.from_dict(data["params"]) == out.best


def test_param_set_round_trips_through_params():
    one = opt.ParamSet({"day": 1.0}, 0.45, 15, 3.0, 1.0, 8.0)
    applied = one.apply(CHEAP)
    assert (applied.threshold, applied.cooldown_candles, applied.stop_loss_pct,
            applied.trailing_stop_pct, applied.take_profit_pct) == (0.45, 15, 3.0, 1.0, 8.0)
    assert applied.fee_rate == CHEAP.fee_rate
    assert opt.ParamSet.of(applied, {"day": 1.0}) == opt.ParamSet.from_dict(one.to_dict())
    with pytest.raises(ValueError, match="tune must name"):
        opt.check_tune(("weights", "fees"))
