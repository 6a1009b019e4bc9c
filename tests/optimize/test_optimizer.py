"""The optimizer job over the database: the parameter sets it adopts, the
verdicts it records (adopt, keep, stand aside), what params_in_force hands
the trader and where each value came from, the start-up run, and the
backtest/optimize commands."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest

from bot.exchange.factory import make_exchange
from bot.exchange.paper import PaperExchange
from bot.optimize.job import due_markets, enough_candles, optimize_market
from bot.storage import Database
from bot.storage import decisions as decision_store
from bot.storage import optimizer_runs as run_store
from bot.storage import weights as weight_store
from bot.trading.in_force import params_in_force
from bot.trading.lifecycle import TradeContext
from bot.trading.trader import trade_market
from testkit.cli import run_bot
from testkit.logcapture import captured_logs, text_lines
from testkit.series import momentum_market as synthetic
from testkit.series import store_arrays
from testkit.settings import make_settings

M = "KRW-BTC"
REQUIRED = {"final_equity", "total_return", "buy_and_hold_return", "max_drawdown", "sharpe",
            "round_trips", "fills", "win_rate", "exposure", "fees"}



def _settings(database_url, **kw):
    base = {"AGGRESSIVENESS": "0", "OPTIMIZE_HOLDOUT": "0.3", "OPTIMIZE_CANDIDATES": "400",
            "OPTIMIZE_LOOKBACK_DAYS": "30"}
    return make_settings(database_url, **{**base, **kw})


def test_planted_edge_is_adopted_and_the_trader_uses_it(db, database_url):
    last = store_arrays(db, synthetic(8000, 0, edge=0.0004))
    now = last + timedelta(minutes=1, seconds=2)
    settings = _settings(database_url)
    notes = []
    run = optimize_market(settings, db, M, seed=0, now=lambda: now,
                          notify=lambda name, **f: notes.append(name))
    assert run.adopted, run.reason
    assert max(run.outcome.weights, key=run.outcome.weights.get) == "momentum"
    assert run.bars == 8000 and run.run_id is not None
    current = weight_store.current(db, M)
    assert current.version == run.weights_version and current.source == "optimizer"
    assert current.weights == run.outcome.weights  # stored exactly
    recorded = run_store.latest(db, M)
    assert recorded.adopted and recorded.weights_version == current.version
    assert notes == ["weights.adopted"]
    # the trader's next decision uses the adopted weights and names their version
    exchange = PaperExchange(db, start_krw=settings.paper_start_krw, fee_rate=settings.fee_rate,
                             min_order_krw=settings.min_order_krw, now=lambda: now)
    out = trade_market(TradeContext(settings, db, exchange, now=lambda: now), M)
    assert out.status == "decided" and out.weights_version == current.version
    row = decision_store.get(db, M, last)
    assert row.weights_version == current.version
    assert row.weights == pytest.approx(current.weights, abs=1e-12)  # as normalised for use


def test_an_adopted_set_stores_its_values_and_the_trader_gets_them(db, database_url):
    last = store_arrays(db, synthetic(8000, 0, edge=0.0004))
    settings = _settings(database_url)  # OPTIMIZE_TUNE: weights,threshold,cooldown
    run = optimize_market(settings, db, M, seed=0, now=lambda: last + timedelta(minutes=2))
    assert run.verdict == "adopt", run.reason
    row = weight_store.current(db, M)
    best = run.outcome.params
    assert row.params == {"tuned": ["weights", "threshold", "cooldown"],
                          **{k: v for k, v in best.items() if k != "weights"}}
    p = params_in_force(settings, db, M)
    label = f"optimizer v{row.version}"
    assert p.version == row.version and p.verdict == "adopt" and not p.standing_aside
    assert p.sources == {"weights": label, "threshold": label, "cooldown_candles": label,
                         "stop_loss_pct": "setting", "trailing_stop_pct": "setting",
                         "take_profit_pct": "setting"}
    assert p.weights == pytest.approx(best["weights"], abs=1e-12)
    assert p.threshold == Decimal(repr(best["threshold"]))
    assert p.cooldown_candles == best["cooldown_candles"]
    assert p.stop_loss_pct == settings.stop_loss_pct  # the setting's own Decimal
    assert recorded_verdict(db) == "adopt"


def recorded_verdict(db):
    with db.cursor() as cur:
        cur.execute("SELECT verdict, adopted, tune FROM optimizer_runs ORDER BY id DESC LIMIT 1")
        verdict, adopted, tune = cur.fetchone()
    assert adopted == (verdict == "adopt") and tune
    return verdict


def test_params_in_force_before_any_run_are_the_settings(db, database_url):
    settings = _settings(database_url, THRESHOLD="0.35", COOLDOWN_CANDLES="4",
                         WEIGHTS="trend=1")
    p = params_in_force(settings, db, M)
    assert p.version is None and p.verdict is None and not p.standing_aside
    assert set(p.sources.values()) == {"setting"}
    assert (p.threshold, p.cooldown_candles) == (Decimal("0.35"), 4)
    assert p.weights["trend"] == 1.0 and sum(p.weights.values()) == 1.0


STORED = {"tuned": ["weights", "threshold", "cooldown", "exits"], "threshold": 0.65,
          "cooldown_candles": 30, "stop_loss_pct": 2.0, "trailing_stop_pct": 1.0,
          "take_profit_pct": 8.0}


@pytest.mark.parametrize(("tune", "from_set"), [
    ("weights,threshold,cooldown,exits", {"weights", "threshold", "cooldown_candles",
                                          "stop_loss_pct", "trailing_stop_pct",
                                          "take_profit_pct"}),
    ("threshold", {"threshold"}),  # the user keeps the weights, cooldown and exits their own
    ("weights,exits", {"weights", "stop_loss_pct", "trailing_stop_pct", "take_profit_pct"}),
])
def test_optimize_tune_says_which_values_come_from_the_set(db, database_url, tune, from_set):
    version = weight_store.adopt(db, M, {"day": 1.0}, source="optimizer", params=STORED)
    settings = _settings(database_url, OPTIMIZE_TUNE=tune, THRESHOLD="0.2",
                         COOLDOWN_CANDLES="0", STOP_LOSS_PCT="5")
    p = params_in_force(settings, db, M)
    assert {k for k, v in p.sources.items() if v == f"optimizer v{version}"} == from_set
    assert {k for k, v in p.sources.items() if v == "setting"} == set(p.sources) - from_set
    assert p.version == version
    assert p.threshold == (Decimal("0.65") if "threshold" in from_set else Decimal("0.2"))
    assert p.stop_loss_pct == (Decimal("2") if "stop_loss_pct" in from_set else Decimal("5"))
    assert p.cooldown_candles == (30 if "cooldown_candles" in from_set else 0)
    assert (p.weights["day"] == 1.0) == ("weights" in from_set)


def test_a_set_none_of_whose_groups_is_tuned_is_not_in_force(db, database_url):
    # a weights-only version (adopted before parameter sets, or by hand)
    weight_store.adopt(db, M, {"day": 1.0}, source="manual")
    settings = _settings(database_url, OPTIMIZE_TUNE="threshold,cooldown")
    p = params_in_force(settings, db, M)
    assert p.version is None and set(p.sources.values()) == {"setting"}
    # with weights tuned, that version's weights are in force, the rest settings
    p = params_in_force(_settings(database_url), db, M)
    assert p.version is not None and p.sources["weights"] == f"manual v{p.version}"
    assert p.sources["threshold"] == "setting" and p.weights["day"] == 1.0


def test_stand_aside_is_recorded_notified_once_and_lifted_by_an_adoption(db, database_url):
    # Five days of a steady fall: the defaults churn and lose, nothing qualifies.
    fall = synthetic(7200, 1, drift=-0.0002)
    last = store_arrays(db, fall)
    settings = _settings(database_url, OPTIMIZE_LOOKBACK_DAYS="5", OPTIMIZE_CANDIDATES="200")
    notes = []

    def note(name, **fields):
        notes.append((name, fields))

    with captured_logs("text", role="optimizer") as out:
        run = optimize_market(settings, db, M, seed=0, notify=note,
                              now=lambda: last + timedelta(minutes=2))
    assert run.verdict == "stand_aside", run.reason
    assert run.reason.startswith("the parameters in force lost")
    (line,) = text_lines(out.getvalue(), "weights.stood_aside")
    assert " WARNING " in line and "since=now" in line and "holdout_return=-" in line
    assert [n for n, _ in notes] == ["weights.stood_aside"]
    assert notes[0][1]["holdout_return"] < -0.005
    assert recorded_verdict(db) == "stand_aside"
    assert weight_store.current(db, M) is None  # nothing adopted
    screen, (entry,) = _status(settings, db, last)
    assert entry["optimizer"]["verdict"] == "stand_aside" and entry["in_force"]["standing_aside"]
    assert "STANDING ASIDE: no new buys" in screen and "stood aside: the parameters" in screen
    assert ("params   threshold 0.2, cooldown off, stop-loss 5 %, trailing stop off, "
            "take-profit off (settings)") in screen
    # the state is in the database: a fresh connection (a restarted trader) sees it
    fresh = Database(database_url)
    try:
        assert params_in_force(settings, fresh, M).standing_aside
    finally:
        fresh.close()
    # the next run still finds nothing: still standing aside, no second message
    run = optimize_market(settings, db, M, seed=1, notify=note,
                          now=lambda: last + timedelta(minutes=3))
    assert run.verdict == "stand_aside" and len(notes) == 1
    assert params_in_force(settings, db, M).standing_aside
    # later, candles with an edge: a set is adopted and buying resumes
    edge = synthetic(7200, 0, edge=0.0004)
    shift = int(fall.ts[-1]) + 60 - int(edge.ts[0])
    later = store_arrays(db, type(edge)(edge.ts + shift, edge.open, edge.high, edge.low, edge.close,
                                  edge.volume))
    run = optimize_market(settings, db, M, seed=0, notify=note,
                          now=lambda: later + timedelta(minutes=2))
    assert run.verdict == "adopt", run.reason
    assert notes[-1][0] == "weights.adopted" and notes[-1][1]["resumed"] is True
    p = params_in_force(settings, db, M)
    assert not p.standing_aside and p.version == run.weights_version
    screen, (entry,) = _status(settings, db, later)
    label = f"optimizer v{p.version}"
    assert entry["in_force"]["values"]["threshold"] == {"value": p.threshold, "source": label}
    assert f"(optimizer v{p.version}); stop-loss 5 %, trailing stop off" in screen
    assert f"adopted v{p.version}" in screen and "STANDING ASIDE" not in screen


def _status(settings, db, at):
    from bot.report import status
    from bot.report.render import render
    got = status.collect(settings, db, make_exchange(settings, db, view=True), {},
                         now=at + timedelta(minutes=2), wall=0.0)
    return render(got), got["markets"]


def test_the_stand_aside_and_adoption_messages():
    from bot.report.messages import format_message
    assert format_message("weights.stood_aside", {
        "market": M, "version": 3, "holdout_return": -0.0345, "reason": "r"}) == (
        "[paper] KRW-BTC: standing aside: no new buys until the optimizer adopts a parameter"
        " set (exits and sells go on). The parameters in force (v3) lost -3.45 % on the"
        " holdout and no candidate qualifies.")
    assert format_message("weights.adopted", {
        "market": M, "version": 4, "weights": "day=1.000", "params": "threshold 0.45",
        "resumed": True, "reason": "r"}) == (
        "[paper] KRW-BTC: new weights adopted (v4): day=1.000; threshold 0.45; buys resume"
        " after standing aside. r")


# --- the start-up run -----------------------------------------------------------------


def test_enough_candles_is_what_the_split_can_judge():
    from bot.optimize.search import MIN_BARS, split
    for bars in range(1000, 1400, 7):
        train, holdout = split(synthetic(bars, 0), 0.3)
        judged = len(train.ts) >= MIN_BARS and len(holdout.ts) >= MIN_BARS
        assert enough_candles(bars, 0.3) == judged, bars


def test_due_markets_until_a_run_had_candles_enough(db, database_url):
    settings = _settings(database_url, MARKETS="KRW-BTC,KRW-ETH", OPTIMIZE_LOOKBACK_DAYS="5")
    last = store_arrays(db, synthetic(3000, 0))  # KRW-BTC: enough to judge
    store_arrays(db, synthetic(600, 1), market="KRW-ETH")  # too few yet
    now = last + timedelta(minutes=2)
    due = due_markets(settings, db, now)
    assert due.run == ("KRW-BTC",) and due.waiting == ("KRW-ETH",)
    # a run that could not judge (too early) does not count: still due
    optimize_market(settings, db, "KRW-ETH", seed=0, now=lambda: now)
    assert run_store.latest(db, "KRW-ETH").judged is False
    assert due_markets(settings, db, now).waiting == ("KRW-ETH",)
    # a judged run counts for a day
    run = optimize_market(settings, db, M, seed=0, now=lambda: now)
    assert run.outcome.judged
    assert due_markets(settings, db, now + timedelta(hours=23)).run == ()
    assert due_markets(settings, db, now + timedelta(hours=25)).run == (M,)


def test_the_due_check_runs_what_is_due_until_a_run_judged(db, database_url):
    from bot.optimize.job import start_due_runs
    from bot.worker.app import app
    from bot.worker.scheduler import build_beat_schedule
    from bot.worker.timing import optimize_due_every
    assert app.conf.task_routes["optimize_due"]["queue"] == "optimizer_queue"
    # Beat sends the check every 15 minutes (no countdown held in a worker)
    entry = build_beat_schedule(_settings(database_url))["optimize due"]
    assert entry["task"] == "optimize_due"
    assert entry["schedule"].run_every == timedelta(seconds=optimize_due_every())
    assert optimize_due_every() == 900.0  # the test clock runs at real speed
    settings = _settings(database_url, OPTIMIZE_LOOKBACK_DAYS="5")
    history = synthetic(3000, 0)
    newest = type(history)(*(getattr(history, f)[-400:] for f in
                             ("ts", "open", "high", "low", "close", "volume")))
    last = store_arrays(db, newest)  # the first backfill has not reached back yet
    now = last + timedelta(minutes=2)
    runs = []

    def check(at):
        return start_due_runs(settings, db, at, run=runs.append)

    with captured_logs("text", role="optimizer") as out:
        due = check(now)
    assert runs == [] and due.waiting == (M,)
    (line,) = text_lines(out.getvalue(), "optimize.due")
    assert "waiting=KRW-BTC" in line and "run=none" in line
    # fifteen minutes later the history is in: a run
    store_arrays(db, history)
    check(now + timedelta(minutes=15))
    assert runs == [M]
    optimize_market(settings, db, M, seed=0, now=lambda: now + timedelta(minutes=15))
    # judged: nothing is due until the market goes a day without a judged run
    with captured_logs("text", role="optimizer") as out:
        assert check(now + timedelta(minutes=30)) == type(due)((), ())
    assert runs == [M] and not text_lines(out.getvalue(), "optimize.due")


def test_a_fresh_install_optimizes_soon_after_its_workers_start(tmp_path):
    """Real workers and Beat, with OPTIMIZE_SCHEDULE far away: the first
    backfill sends the due check, which runs the optimizer."""
    from testkit.e2e import wait_for
    from tests.e2e.test_e2e import Daemon
    d = Daemon(tmp_path, env={"OPTIMIZE_SCHEDULE": "0 0 1 1 *"})  # not in this test's span
    try:
        for role in ("collector", "optimizer", "beat"):
            d.stack.start(role)
        wait_for(lambda: d.scalar("SELECT count(*) FROM optimizer_runs"
                                  " WHERE objective_holdout_current IS NOT NULL"), 90,
                 "an optimizer run that judged its holdout")
        assert "optimize.due" in d.stack.log("optimizer")
    finally:
        d.close()


def test_history_stored_before_the_start_is_judged_when_the_optimizer_starts(tmp_path):
    """`bot backfill`, then `bot run`: no collect stores new history and Beat's
    check is 15 minutes away (no Beat here at all): the optimizer worker asks
    for the due runs as soon as it is ready."""
    from bot.storage.migrate import migrate
    from testkit.candles import store_closes
    from testkit.e2e import wait_for
    from tests.e2e.test_e2e import Daemon
    d = Daemon(tmp_path, env={"OPTIMIZE_SCHEDULE": "0 0 1 1 *"})
    try:
        migrate(d.db)
        now = d.sim_now().replace(second=0, microsecond=0)
        rng = np.random.default_rng(4)
        closes = np.round(50_000_000 * np.exp(np.cumsum(rng.normal(0, 0.001, 2000))), -3)
        store_closes(d.db, M, closes.tolist(), start=now - timedelta(minutes=2000),
                     spread="2000")
        d.stack.start("optimizer")
        wait_for(lambda: d.scalar("SELECT count(*) FROM optimizer_runs"), 30,
                 "the optimizer to run at its start")
        assert "optimize.due" in d.stack.log("optimizer")
    finally:
        d.close()


def test_noise_keeps_the_current_weights(db, database_url):
    last = store_arrays(db, synthetic(8000, 1))
    before = weight_store.adopt(db, M, {"trend": 1.0}, source="manual")
    settings = _settings(database_url, AGGRESSIVENESS="0.0015")
    run = optimize_market(settings, db, M, seed=0, now=lambda: last + timedelta(minutes=2))
    assert not run.adopted and run.reason
    assert weight_store.current(db, M).version == before
    assert run.outcome.current_weights["trend"] == 1.0
    assert run_store.count(db, M) == 1 and not run_store.latest(db, M).adopted


def test_too_few_candles_is_logged_and_kept(db, database_url):
    last = store_arrays(db, synthetic(300, 2))
    run = optimize_market(_settings(database_url), db, M,
                          now=lambda: last + timedelta(minutes=2))
    assert not run.adopted and "not enough candles" in run.reason
    assert weight_store.current(db, M) is None


def test_no_save_stores_nothing(db, database_url):
    last = store_arrays(db, synthetic(8000, 0, edge=0.0004))
    run = optimize_market(_settings(database_url), db, M, seed=0, save=False,
                          now=lambda: last + timedelta(minutes=2))
    assert run.adopted and run.run_id is None
    assert run_store.count(db) == 0 and weight_store.current(db, M) is None


def test_same_seed_same_weights(db, database_url):
    last = store_arrays(db, synthetic(3000, 5, edge=0.0002))
    now = last + timedelta(minutes=2)
    runs = [optimize_market(_settings(database_url), db, M, seed=7, save=False,
                            now=lambda: now).outcome.weights for _ in range(2)]
    assert runs[0] == runs[1]


# --- the commands -----------------------------------------------------------------


@pytest.fixture
def csv_file(tmp_path):
    data = synthetic(6000, 0, edge=0.0004)
    path = tmp_path / "candles.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ts", "open", "high", "low", "close", "volume"])
        for t, o, h, lo, c in zip(data.ts, data.open, data.high, data.low, data.close,
                                  strict=True):
            stamp = datetime.fromtimestamp(int(t), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            writer.writerow([stamp, f"{o:.0f}", f"{h:.0f}", f"{lo:.0f}", f"{c:.0f}", "1"])
    return path


def test_backtest_csv_json_and_plot(csv_file, tmp_path):
    plot = tmp_path / "out.png"
    done = run_bot("backtest", "--csv", str(csv_file), "--json", "--plot", str(plot),
                   "--weights", "momentum=1", "--aggressiveness", "0", env={}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert set(data) >= REQUIRED
    assert data["weights"]["momentum"] == 1.0 and data["bars"] == 6000
    assert data["total_return"] > 0  # the planted edge pays with momentum alone
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_optimize_csv_json(csv_file, tmp_path):
    done = run_bot("optimize", "--csv", str(csv_file), "--json", "--candidates", "300",
                   "--seed", "3", env={"AGGRESSIVENESS": "0", "OPTIMIZE_HOLDOUT": "0.3"},
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert REQUIRED | {"weights", "adopted", "reason", "train", "holdout", "candidates",
                       "duration_s"} <= set(data)
    assert data["candidates"] == 300 and isinstance(data["adopted"], bool)
    assert data["verdict"] in ("adopt", "keep", "stand_aside")
    assert data["adopted"] == (data["verdict"] == "adopt")
    assert data["tune"] == ["weights", "threshold", "cooldown"]
    assert set(data["params"]) == set(data["current_params"]) == {
        "weights", "threshold", "cooldown_candles", "stop_loss_pct", "trailing_stop_pct",
        "take_profit_pct"}
    assert data["current_params"]["threshold"] == 1.0  # THRESHOLD's default: the set in force
    assert isinstance(data["holdout"]["t_new"], float)
    assert set(data["weights"]) == {"trend", "momentum", "swing", "scalping", "day",
                                    "price_action"}
    assert set(data["holdout"]["new"]) >= REQUIRED and set(data["train"]["new"]) >= REQUIRED


def test_bad_csv_exits_2_naming_the_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("ts,open,high,low,close,volume\n2026-01-01T00:00:00Z,1,2,1,1,1\n"
                    "2026-01-01T00:01:00Z,1,abc,1,1,1\n")
    done = run_bot("backtest", "--csv", str(path), env={}, cwd=tmp_path)
    assert done.returncode == 2 and "line 3" in done.stderr


def test_backtest_from_the_database(db, database_url, tmp_path):
    store_arrays(db, synthetic(3000, 4))  # in 2024: --days reaches back that far
    env = {"DATABASE_URL": database_url}
    done = run_bot("backtest", "--json", "--days", "100000", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["market"] == M and data["bars"] == 3000 and data["weights_version"] is None
