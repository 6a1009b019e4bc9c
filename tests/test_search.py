"""The weight search and the adoption rule: a planted edge is found and
adopted, noise is not, and a seed fixes the result."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from bot import search as opt
from bot import strategies as st
from bot.backtest import BacktestParams
from bot.storage.candles import CandleArrays

DAY0 = int(datetime(2024, 3, 1, tzinfo=UTC).timestamp())
# Cheap trading, so that a modest edge survives costs.
CHEAP = BacktestParams(aggressiveness=0.0, fee_rate=0.0005, fee_buffer=0.0005)


def market(n: int, seed: int, edge: float = 0.0, vol: float = 0.001) -> CandleArrays:
    """A random walk; with ``edge`` the next log return gets ``edge * momentum``
    (the sign of close - close five bars earlier): momentum truly predicts."""
    rng = np.random.default_rng(seed)
    close = np.empty(n)
    close[:6] = 50_000_000.0
    noise = rng.normal(0.0, vol, n)
    for t in range(6, n):
        close[t] = close[t - 1] * np.exp(edge * np.sign(close[t - 1] - close[t - 6]) + noise[t])
    close = np.round(close / 1000) * 1000
    open_ = np.concatenate([[close[0]], close[:-1]])
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, vol / 2, n)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, vol / 2, n)))
    return CandleArrays(DAY0 + 60 * np.arange(n, dtype=np.int64), open_, high, low, close,
                        np.ones(n))


def test_recovers_a_planted_momentum_edge():
    train, holdout = opt.split(market(8000, 0, edge=0.0004), 0.3)
    out = opt.choose(train, holdout, CHEAP, None, candidates=400, seed=0,
                     min_improvement=0.1)
    assert max(out.weights, key=out.weights.get) == "momentum"
    assert out.weights["momentum"] >= 0.4
    assert out.adopted, out.reason
    assert out.objective_holdout_new >= out.objective_holdout_current + 0.1
    assert out.holdout_new["total_return"] > 0 and out.holdout_new["round_trips"] >= 5
    assert out.candidates == 400 and out.duration_s > 0


@pytest.mark.parametrize("seed", [1, 2])
def test_pure_noise_is_not_adopted(seed):
    train, holdout = opt.split(market(8000, seed), 0.3)
    out = opt.choose(train, holdout, BacktestParams(), None, candidates=400, seed=0,
                     min_improvement=0.1)
    assert not out.adopted, out.reason
    assert out.reason


def test_same_seed_same_weights():
    data = market(3000, 5, edge=0.0002)
    current = {"trend": 1, "swing": 1}
    one = opt.search_weights(data, CHEAP, candidates=300, seed=7, current=current)
    two = opt.search_weights(data, CHEAP, candidates=300, seed=7, current=current)
    assert one.weights == two.weights and one.objective == two.objective
    assert [f.weights for f in one.finalists] == [f.weights for f in two.finalists]
    assert sum(one.weights.values()) == pytest.approx(1.0)
    assert all(abs(w * opt.GRID - round(w * opt.GRID)) < 1e-6 for w in one.weights.values())


def test_too_few_candles_is_not_adopted():
    train, holdout = opt.split(market(1000, 3), 0.3)  # holdout: 300 + 199 warm-up < 500
    out = opt.choose(train, holdout, CHEAP, {"trend": 1}, candidates=50, seed=0)
    assert not out.adopted and out.reason.startswith("not enough candles: holdout")
    assert out.weights == st.normalise_weights({"trend": 1})
    assert out.holdout_new is None


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
    import json

    json.dumps(data)
    assert set(data) >= {"weights", "adopted", "reason", "train_new", "holdout_current",
                         "candidates", "duration_s"}
