"""The walk-forward: the exact engine carried across windows with each
window's parameters, the nightly verdicts slid over history without
look-ahead, reproducible with a seed, and the `bot walkforward` command."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from bench import marketdata as md
from bot.data.csvdata import write_csv
from bot.models import CandleArrays
from bot.optimize.backtest import BUY, SELL, BacktestParams, prepare, run_backtest
from bot.optimize.search import ParamSet
from bot.optimize.walkforward import DAY, Leg, trade_plan, walk_forward
from bot.trading import strategies as st
from testkit.cli import run_bot
from testkit.series import momentum_market as market
from testkit.settings import make_settings

FIRST = st.FIRST_DECISION
# Exits, the cooldown, the stop guard and the loss limit all on: state the
# account must carry across a window boundary.
GUARDED = BacktestParams(threshold=0.3, stop_loss_pct=1.0, trailing_stop_pct=0.5,
                         take_profit_pct=1.5, cooldown_candles=5, stop_guard_exits=2,
                         stop_guard_window_candles=120, stop_guard_pause_candles=30,
                         daily_loss_limit_pct=1.0)
SET = ParamSet({"momentum": 2, "scalping": 1, "trend": 1}, 0.3, 5, 1.0, 0.5, 1.5)


def _same_as_backtest(traded, result) -> None:
    np.testing.assert_array_equal(traded.equity, result.equity)
    np.testing.assert_array_equal(traded.actions, result.actions)
    np.testing.assert_array_equal(traded.holding, result.holding)
    buys = traded.fill_bars[traded.fill_sides == BUY]
    sells = traded.fill_bars[traded.fill_sides == SELL]
    np.testing.assert_array_equal(buys, result.buy_bars)
    np.testing.assert_array_equal(sells, result.sell_bars)


@pytest.fixture(scope="module")
def prep():
    return prepare(md.generate(4 * 1440, seed=21), GUARDED)


def test_one_leg_is_the_exact_backtest(prep):
    traded = trade_plan(prep, GUARDED, [Leg(FIRST, len(prep), SET)])
    result = run_backtest(prep, SET.weights, SET.apply(GUARDED))
    assert result.round_trips > 20  # the comparison covers many fills
    _same_as_backtest(traded, result)


@pytest.mark.parametrize("every", [97, 500, 1440])
def test_legs_with_one_set_carry_the_account_exactly(prep, every):
    # Boundaries mid-position, mid-cooldown and mid-day change nothing.
    cuts = [FIRST, *range(FIRST + every, len(prep), every), len(prep)]
    legs = [Leg(a, b, SET) for a, b in zip(cuts, cuts[1:], strict=False)]
    _same_as_backtest(trade_plan(prep, GUARDED, legs),
                      run_backtest(prep, SET.weights, SET.apply(GUARDED)))


def test_a_leg_without_buys_sells_what_it_holds_and_buys_nothing(prep):
    whole = run_backtest(prep, SET.weights, SET.apply(GUARDED))
    cut = int(np.flatnonzero(whole.holding[1500:])[0]) + 1500  # a bar holding a position
    traded = trade_plan(prep, GUARDED, [Leg(FIRST, cut, SET),
                                        Leg(cut, len(prep), SET, no_buys=True)])
    # up to the boundary nothing differs
    np.testing.assert_array_equal(traded.equity[:cut], whole.equity[:cut])
    decided = traded.fill_bars - 1
    assert not np.any((traded.fill_sides == BUY) & (decided >= cut))
    # the position held across the boundary is still sold (by a signal or an exit)
    assert np.any((traded.fill_sides == SELL) & (decided >= cut))
    assert not traded.holding[-1]


def test_a_new_set_takes_over_at_its_boundary(prep):
    base = replace(GUARDED, daily_loss_limit_pct=0.0, stop_guard_exits=0)  # no buy guards
    other = ParamSet({"day": 1, "swing": 1}, 0.5, 0, 0.0, 0.0, 0.0)  # no exits, no cooldown
    cut = 2500
    traded = trade_plan(prep, base, [Leg(FIRST, cut, SET), Leg(cut, len(prep), other)])
    first = run_backtest(prep, SET.weights, SET.apply(base))
    np.testing.assert_array_equal(traded.equity[:cut], first.equity[:cut])
    # after the boundary every decision is the other set's signal
    scores = st.score_table(other.weights)[prep.codes[cut:]]
    held = traded.holding[cut:]
    expected = np.where(held, np.where(scores <= -0.5, SELL, 0),
                        np.where(scores >= 0.5, BUY, 0))
    np.testing.assert_array_equal(traded.actions[cut:], expected)
    assert not np.array_equal(traded.equity, first.equity)


# --- the walk-forward ------------------------------------------------------------------


def _settings(**kw):
    base = {"OPTIMIZE_CANDIDATES": "150", "OPTIMIZE_HOLDOUT": "0.3"}
    return make_settings(**{**base, **kw})


def _stable(wf) -> dict:
    """The walk-forward's JSON without its timings."""
    data = json.loads(json.dumps(wf.to_dict(), default=str))
    data.pop("duration_s")
    for segment in data["segments"]:
        segment.pop("seconds")
    return data


@pytest.fixture(scope="module")
def candles():
    """Six days: three of realistic minutes, on which the defaults churn and
    lose (the optimizer stands aside), then three with a momentum edge (it
    adopts a set that trades it)."""
    a = md.generate(3 * 1440, seed=8)
    b = market(3 * 1440, 0, edge=0.0004)
    scale = a.close[-1] / b.open[0]
    cols = [np.concatenate([getattr(a, name), md.to_tick(getattr(b, name) * scale, "nearest")])
            for name in ("open", "high", "low", "close")]
    ts = np.concatenate([a.ts, a.ts[-1] + 60 + (b.ts - b.ts[0])])
    return CandleArrays(ts, *cols, np.concatenate([a.volume, b.volume]))


def test_windows_follow_the_nightly_rules(candles):
    wf = walk_forward(_settings(), candles, train_days=2, test_days=0.5, seed=1)
    t0 = int(candles.ts[0])
    assert len(wf.segments) == 8  # 4 days after 2 of training, in half days
    for k, segment in enumerate(wf.segments):
        assert segment.test_start == t0 + 2 * DAY + k * DAY // 2
        assert segment.test_end - segment.test_start == DAY // 2
        assert segment.train_end == segment.test_start
        assert segment.train_start == segment.test_start - 2 * DAY
        assert segment.train_bars == 2 * 1440 and segment.bars == 720
        # no buys exactly while the latest verdict is stand aside
        assert (segment.gate == "stand_aside") == (segment.verdict == "stand_aside")
        if segment.gate == "stand_aside":
            assert segment.round_trips == 0 or k and wf.segments[k - 1].gate is None
    # segment returns chain into the total
    chained = np.prod([1 + s.total_return for s in wf.segments]) - 1
    assert chained == pytest.approx(wf.total_return, abs=1e-12)
    assert wf.adoptions + wf.keeps + wf.stand_asides == 8
    assert wf.adoptions and wf.stand_asides  # the series has both
    assert len(wf.equity) == len(wf.ts) == 4 * 1440
    assert wf.buy_and_hold_return == pytest.approx(wf.close[-1] / wf.close[0] - 1)


def test_reproducible_with_a_seed(candles):
    settings = _settings()
    one = walk_forward(settings, candles, train_days=2, test_days=1, seed=4)
    two = walk_forward(settings, candles, train_days=2, test_days=1, seed=4)
    assert _stable(one) == _stable(two)
    np.testing.assert_array_equal(one.equity, two.equity)
    other = walk_forward(settings, candles, train_days=2, test_days=1, seed=5)
    assert [s.seed for s in other.segments] != [s.seed for s in one.segments]


def test_no_look_ahead(candles):
    """Perturbing the candles after a window's end changes nothing up to it:
    the verdicts and sets of that window and the ones before it, and the
    equity of every bar before its end."""
    settings = _settings(OPTIMIZE_TUNE="weights,threshold,cooldown,exits")
    base = walk_forward(settings, candles, train_days=2, test_days=0.5, seed=2)
    j = 4  # the first run on the edge: trading goes on after it
    end = base.segments[j].test_end
    after = candles.ts >= end
    rng = np.random.default_rng(0)
    factor = np.where(after, np.exp(np.cumsum(rng.normal(0, 0.003, len(candles.ts)))), 1.0)
    changed = CandleArrays(candles.ts, md.to_tick(candles.open * factor, "nearest"),
                           md.to_tick(candles.high * factor * 1.001, "up"),
                           md.to_tick(candles.low * factor * 0.999, "down"),
                           md.to_tick(candles.close * factor, "nearest"), candles.volume)
    moved = walk_forward(settings, changed, train_days=2, test_days=0.5, seed=2)
    for a, b in zip(base.segments[:j + 1], moved.segments[:j + 1], strict=True):
        assert (a.verdict, a.reason, a.params, a.gate) == (b.verdict, b.reason, b.params, b.gate)
        assert (a.start_equity, a.end_equity) == (b.start_equity, b.end_equity)
    before = base.ts < end
    np.testing.assert_array_equal(base.equity[before], moved.equity[before])
    # and the perturbation does reach what follows
    assert not np.array_equal(base.equity[~before], moved.equity[~before])


def test_a_falling_market_stands_aside_and_buys_nothing_meanwhile():
    settings = _settings(OPTIMIZE_CANDIDATES="100")
    falling = market(5 * 1440, 3, drift=-0.0002)
    wf = walk_forward(settings, falling, train_days=2, test_days=0.5, seed=0)
    aside = [s for s in wf.segments if s.gate == "stand_aside"]
    assert aside and wf.stand_asides >= 1
    buys = wf.fill_ts[wf.fill_sides == BUY]
    for segment in aside:  # a buy fills on the bar after its decision
        decided = buys - 60
        assert not np.any((decided >= segment.test_start) & (decided < segment.test_end))
    assert wf.total_return > wf.default_return  # standing aside beat churning


def test_the_live_gate_buys_nothing_before_the_first_adoption(candles):
    # THRESHOLD 1 trades rarely and loses little: the runs before the edge keep it
    live = {"TRADING_MODE": "live", "UPBIT_ACCESS_KEY": "a" * 20, "UPBIT_SECRET_KEY": "b" * 20,
            "THRESHOLD": "1.0"}
    gated = walk_forward(_settings(**live), candles, train_days=2, test_days=0.5, seed=1)
    first = next(s for s in gated.segments if s.set_number is not None)
    before = [s for s in gated.segments if s.index < first.index]
    assert before and all(s.verdict == "keep" and s.gate == "live_gate" for s in before)
    assert all(s.gate is None for s in gated.segments[first.index:])
    def buys_before(wf):
        decided = wf.fill_ts[wf.fill_sides == BUY] - 60
        return int(np.sum(decided < first.test_start))

    assert buys_before(gated) == 0
    allowed = walk_forward(_settings(**live, LIVE_ALLOW_UNVALIDATED="true"), candles,
                           train_days=2, test_days=0.5, seed=1)
    assert {s.gate for s in allowed.segments} == {None}
    assert buys_before(allowed) > 0  # the settings' set did want to buy


def test_candles_too_short_for_one_window_say_so():
    with pytest.raises(ValueError, match="needs more than --train-days"):
        walk_forward(_settings(), md.generate(1440, seed=1), train_days=2)


def test_the_defaults_are_the_settings_traded_over_the_same_span(candles):
    settings = _settings()
    wf = walk_forward(settings, candles, train_days=2, test_days=1, seed=1)
    params = BacktestParams.from_settings(settings)
    first = int(np.searchsorted(candles.ts, wf.segments[0].test_start))
    prep = prepare(candles, params)
    from bot.optimize.walkforward import slice_prepared
    result = run_backtest(slice_prepared(prep, first - FIRST), None, params)
    assert wf.default_return == result.total_return
    assert wf.default_round_trips == result.round_trips
    np.testing.assert_array_equal(wf.default_equity, result.equity[FIRST:])


# --- the command -------------------------------------------------------------------------


@pytest.fixture
def csv_file(tmp_path):
    path = tmp_path / "candles.csv"
    write_csv(md.generate(4 * 1440, seed=8), path)
    return path


def test_walkforward_csv_json_and_plot(csv_file, tmp_path):
    plot = tmp_path / "wf.png"
    done = run_bot("walkforward", "--csv", str(csv_file), "--train-days", "2", "--test-days",
                   "1", "--candidates", "40", "--seed", "3", "--json", "--plot", str(plot),
                   env={"OPTIMIZE_HOLDOUT": "0.3"}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert {"total_return", "buy_and_hold_return", "default_return", "max_drawdown",
            "round_trips", "fees", "adoptions", "stand_asides", "segments"} <= set(data)
    assert isinstance(data["fees"], str) and isinstance(data["final_equity"], str)
    assert data["candidates"] == 40 and data["seed"] == 3 and len(data["segments"]) == 2
    segment = data["segments"][0]
    assert segment["train_start"].endswith("Z") and segment["test_end"].endswith("Z")
    assert segment["verdict"] in ("adopt", "keep", "stand_aside")
    assert set(segment["params"]) == {"weights", "threshold", "cooldown_candles",
                                      "stop_loss_pct", "trailing_stop_pct", "take_profit_pct"}
    assert isinstance(segment["total_return"], float)
    assert data["plot"] == str(plot) and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "walkforward market=" in done.stderr


@pytest.mark.parametrize(("args", "message"), [
    (("--train-days", "0"), "--train-days must be a positive number"),
    (("--test-days", "-1"), "--test-days must be a positive number"),
    (("--candidates", "0"), "--candidates must be at least 1"),
    (("--train-days", "10"), "needs more than --train-days (10) days"),
    (("--market", "KRW-BTC"), "--csv replaces --market/--days"),
    (("--plot", "out.txt"), "must end in"),
])
def test_walkforward_bad_usage_is_one_sentence_and_exit_2(csv_file, tmp_path, args, message):
    done = run_bot("walkforward", "--csv", str(csv_file), "--quiet", *args, env={},
                   cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr


def test_walkforward_from_the_database(db, database_url, tmp_path):
    from testkit.series import store_arrays
    store_arrays(db, md.generate(3 * 1440, seed=9))  # in 2024: --days reaches back that far
    done = run_bot("walkforward", "--days", "100000", "--train-days", "2", "--candidates",
                   "30", "--json", "--quiet", env={"DATABASE_URL": database_url}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["market"] == "KRW-BTC" and len(data["segments"]) == 1
    assert data["bars"] == 1440


def test_the_params_of_each_window_are_the_set_in_force(candles):
    wf = walk_forward(_settings(), candles, train_days=2, test_days=0.5, seed=1)
    in_force = ParamSet.of(BacktestParams.from_settings(_settings()))
    for segment in wf.segments:
        if segment.verdict == "adopt":
            assert segment.set_number is not None and segment.params != replace(in_force)
            in_force = segment.params
        assert segment.params == in_force
        label = "setting" if segment.set_number is None else f"optimizer #{segment.set_number}"
        assert segment.sources["weights"] == label


def test_the_plot_marks_each_window_by_its_verdict(candles):
    from matplotlib.colors import to_rgba

    from bot.optimize.plot import VERDICT_COLOURS, walkforward_figure
    wf = walk_forward(_settings(), candles, train_days=2, test_days=0.5, seed=1)
    figure = walkforward_figure(wf, title="KRW-BTC")
    axes = {ax.get_label(): ax for ax in figure.axes}
    assert {"equity", "windows", "summary"} <= set(axes)
    equity = axes["equity"]
    lines = [line.get_label() for line in equity.get_lines()
             if not line.get_label().startswith("_")]
    assert lines == [f"walk-forward {wf.total_return:+.2%}",
                     f"buy and hold {wf.buy_and_hold_return:+.2%}",
                     f"defaults {wf.default_return:+.2%}"]
    legend = [t.get_text() for t in equity.get_legend().get_texts()]
    assert f"stood aside ({wf.stand_asides})" in legend and f"adopted ({wf.adoptions})" in legend
    bars = axes["windows"].patches
    assert len(bars) == len(wf.segments)
    for bar, segment in zip(bars, wf.segments, strict=True):
        assert bar.get_facecolor()[:3] == to_rgba(VERDICT_COLOURS[segment.verdict])[:3]
        assert bar.get_height() == pytest.approx(segment.total_return * 100)
