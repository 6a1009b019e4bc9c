"""The optimizer job over the database, the weights it hands the trader, and
the backtest/optimize commands."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from bot.lifecycle import TradeContext
from bot.models import Candle
from bot.optimizer import optimize_market
from bot.paper import PaperExchange
from bot.storage import candles as candle_store
from bot.storage import decisions as decision_store
from bot.storage import optimizer_runs as run_store
from bot.storage import weights as weight_store
from bot.trader import trade_market
from tests.conftest import make_settings
from tests.test_cli import run_bot
from tests.test_search import market as synthetic

M = "KRW-BTC"
REQUIRED = {"final_equity", "total_return", "buy_and_hold_return", "max_drawdown", "sharpe",
            "round_trips", "fills", "win_rate", "exposure", "fees"}


def _store(db, arrays, market=M):
    rows = [Candle(market, datetime.fromtimestamp(int(t), UTC), Decimal(f"{o:.0f}"),
                   Decimal(f"{h:.0f}"), Decimal(f"{lo:.0f}"), Decimal(f"{c:.0f}"), Decimal(1),
                   Decimal(f"{c:.0f}"), 1, {"final": True})
            for t, o, h, lo, c in zip(arrays.ts, arrays.open, arrays.high, arrays.low,
                                      arrays.close, strict=True)]
    candle_store.upsert_candles(db, rows, "1m")
    return datetime.fromtimestamp(int(arrays.ts[-1]), UTC)


def _settings(database_url, **kw):
    base = {"AGGRESSIVENESS": "0", "OPTIMIZE_HOLDOUT": "0.3", "OPTIMIZE_CANDIDATES": "400",
            "OPTIMIZE_LOOKBACK_DAYS": "30"}
    return make_settings(database_url, **{**base, **kw})


def test_planted_edge_is_adopted_and_the_trader_uses_it(db, database_url):
    last = _store(db, synthetic(8000, 0, edge=0.0004))
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


def test_noise_keeps_the_current_weights(db, database_url):
    last = _store(db, synthetic(8000, 1))
    before = weight_store.adopt(db, M, {"trend": 1.0}, source="manual")
    settings = _settings(database_url, AGGRESSIVENESS="0.0015")
    run = optimize_market(settings, db, M, seed=0, now=lambda: last + timedelta(minutes=2))
    assert not run.adopted and run.reason
    assert weight_store.current(db, M).version == before
    assert run.outcome.current_weights["trend"] == 1.0
    assert run_store.count(db, M) == 1 and not run_store.latest(db, M).adopted


def test_too_few_candles_is_logged_and_kept(db, database_url):
    last = _store(db, synthetic(300, 2))
    run = optimize_market(_settings(database_url), db, M,
                          now=lambda: last + timedelta(minutes=2))
    assert not run.adopted and "not enough candles" in run.reason
    assert weight_store.current(db, M) is None


def test_no_save_stores_nothing(db, database_url):
    last = _store(db, synthetic(8000, 0, edge=0.0004))
    run = optimize_market(_settings(database_url), db, M, seed=0, save=False,
                          now=lambda: last + timedelta(minutes=2))
    assert run.adopted and run.run_id is None
    assert run_store.count(db) == 0 and weight_store.current(db, M) is None


def test_same_seed_same_weights(db, database_url):
    last = _store(db, synthetic(3000, 5, edge=0.0002))
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
    _store(db, synthetic(3000, 4))  # in 2024: --days reaches back that far
    env = {"DATABASE_URL": database_url}
    done = run_bot("backtest", "--json", "--days", "100000", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["market"] == M and data["bars"] == 3000 and data["weights_version"] is None
