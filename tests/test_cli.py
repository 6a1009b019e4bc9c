"""The command line, run as a real process: `bot migrate && bot collect`
against a local database and a local server speaking Upbit's API."""

from __future__ import annotations

import json

import pytest

from bot.storage import candles as candle_store
from testkit.cli import run_bot
from testkit.fakeupbit import FakeUpbit


@pytest.fixture
def server():
    with FakeUpbit(markets=("KRW-BTC", "KRW-ETH"), history_minutes=2000) as fake:
        yield fake


@pytest.fixture
def env(db, database_url, server):
    return {"DATABASE_URL": database_url, "UPBIT_API_BASE": server.url,
            "MARKETS": "KRW-BTC,KRW-ETH", "BACKFILL_MAX_CANDLES": "400"}


def test_migrate_then_collect_stores_candles(db, env, tmp_path, server):
    done = run_bot("migrate", "--json", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["version"] >= 2
    done = run_bot("collect", "--json", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)  # one JSON object and nothing else on stdout
    by_market = {m["market"]: m for m in report["markets"]}
    assert by_market["KRW-BTC"]["inserted"] == 400 and by_market["KRW-ETH"]["inserted"] == 400
    for market in ("KRW-BTC", "KRW-ETH"):
        stored = candle_store.load_candles(db, market, "1m")
        assert len(stored) == 400
        final = [c for c in stored if c.meta["final"]]
        for c in final[-5:]:
            expected = server.candle(market, c.ts)
            assert (c.open, c.high, c.low, c.close) == (
                expected["open"], expected["high"], expected["low"], expected["close"])
    # the text log names each market and what happened
    assert "candles.stored" in done.stderr and "market=KRW-ETH" in done.stderr
    again = run_bot("collect", "--market", "KRW-BTC", env=env, cwd=tmp_path)
    assert again.returncode == 0 and "inserted=" in again.stderr


def test_backfill_prints_plain_progress_lines_when_not_a_tty(db, env, tmp_path):
    done = run_bot("backfill", "--days", "1", "--market", "KRW-BTC", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("backfill KRW-BTC:")]
    assert lines[0].startswith("backfill KRW-BTC: 0%") or len(lines) >= 2
    assert lines[-1].startswith("backfill KRW-BTC: 100%")
    assert "\r" not in done.stderr
    assert candle_store.count(db, "KRW-BTC", "1m") >= 1440


def test_progress_bar_on_a_terminal():
    import io

    from bot.data.collector import Progress

    class Tty(io.StringIO):
        def isatty(self):
            return True

    out = Tty()
    bar = Progress("backfill KRW-BTC", out)
    bar.update(0.5, "10 requests")
    bar.update(1.0, "20 requests")
    bar.close()
    text = out.getvalue()
    assert "\r" in text and "#" * 30 in text and "100.0%" in text


def test_usage_errors_exit_2(env, tmp_path):
    assert run_bot("backfill", env=env, cwd=tmp_path).returncode == 2  # --days missing
    done = run_bot("collect", "--market", "BTC", env=env, cwd=tmp_path)
    assert done.returncode == 2 and "KRW market" in done.stderr
    assert run_bot("nonsense", env=env, cwd=tmp_path).returncode == 2


def test_exchange_down_exits_1_with_a_clear_line(db, env, tmp_path):
    env = {**env, "UPBIT_API_BASE": "http://127.0.0.1:1"}
    done = run_bot("collect", "--market", "KRW-BTC", env=env, cwd=tmp_path)
    assert done.returncode == 1
    assert "collector.failed" in done.stderr and "market=KRW-BTC" in done.stderr
    assert "Traceback" not in done.stderr


def test_collect_trade_reconcile_paper_round_trip_matches_hand_arithmetic(db, database_url,
                                                                        tmp_path):
    """`bot collect`, `bot trade`, `bot reconcile` as processes, on a clock 30
    times faster; the paper account's cash, coin and fee match a hand sum."""
    import time
    from decimal import Decimal as D

    from bot.storage import orders as order_store
    from bot.storage import positions

    epoch = time.time()
    with FakeUpbit(speedup=30, epoch=epoch, history_minutes=400) as server:
        minute = int(epoch // 60) * 60
        # rising all along: every signal says buy, and each candle's low (its open, the
        # previous close) is under a bid placed at that close * 1.0015, so it fills
        closes = [100_000 + 300 * i for i in range(340)]
        server.set_price_path("KRW-BTC", closes, start=minute - 300 * 60)
        env = {"DATABASE_URL": database_url, "UPBIT_API_BASE": server.url,
               "BOT_CLOCK_SPEEDUP": "30", "BOT_CLOCK_EPOCH": repr(epoch),
               "BACKFILL_MAX_CANDLES": "400", "AGGRESSIVENESS": "0.0015"}
        # A minute lasts 2 s here, about two process starts: if one ends between
        # collect and trade, the trade finds its candle unconfirmed and skips;
        # the next collect confirms it (as the collector's follow-up does).
        for _ in range(4):
            assert run_bot("collect", env=env, cwd=tmp_path).returncode == 0
            done = run_bot("trade", "--json", env=env, cwd=tmp_path)
            assert done.returncode == 0, done.stderr
            decision = json.loads(done.stdout)["markets"][0]
            if decision["status"] == "decided":
                break
        assert decision["action"] == "buy", decision
        order = decision["order"]
        price, volume = D(order["price"]), D(order["volume"])
        close = server.candle("KRW-BTC", decision["candle_ts"])["close"]  # e.g. 189,700
        # close * 1.0015 rounded up to the 100 KRW tick; 1,000,000 / (price * 1.001) floored
        assert price == (close * D("1.0015") / 100).to_integral_value("ROUND_CEILING") * 100
        assert volume == (D(1_000_000) / (price * D("1.001"))).quantize(D("1E-8"), "ROUND_DOWN")
        assert "decision" in done.stderr and "identifier=" in done.stderr
        # two candles later (4 s) the bid's candle has closed below the bid: it filled
        time.sleep(4.2)
        assert run_bot("collect", env=env, cwd=tmp_path).returncode == 0
        done = run_bot("reconcile", "--json", env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["markets"][0]["fills"] == 1
    row = order_store.by_identifier(db, order["identifier"])
    assert row.state == "done"
    # a bid above the open is marketable: it filled at the open of its candle
    (fill,) = positions.fills_by_bar(db, "paper", "KRW-BTC", 1)
    with db.cursor() as cur:
        cur.execute("SELECT open FROM candles WHERE market = 'KRW-BTC' AND ts = %s",
                    (fill.bar,))
        assert fill.price == cur.fetchone()[0] <= price
    funds = fill.price * volume
    fee = funds * D("0.0005")
    with db.cursor() as cur:
        cur.execute("SELECT currency, balance, locked FROM paper_balances ORDER BY currency")
        balances = {c: (b, lk) for c, b, lk in cur.fetchall()}
    assert balances["KRW"] == (D(1_000_000) - funds - fee, 0)
    assert balances["BTC"] == (volume, 0)
    assert order_store.fills_of(db, row.id)[0][1:] == (fill.price, volume, funds, fee)


def test_markets_reads_upbit_and_top_n_then_drives_collect(db, database_url, tmp_path):
    with FakeUpbit(markets=("KRW-BTC", "KRW-ETH", "KRW-XRP"), history_minutes=300) as fake:
        fake.set_traded_value("KRW-BTC", 3_000_000_000)
        fake.set_traded_value("KRW-ETH", 2_000_000_000)
        fake.set_traded_value("KRW-XRP", 1_000_000_000)
        fake.set_market_event("KRW-BTC", warning=True)
        env = {"DATABASE_URL": database_url, "UPBIT_API_BASE": fake.url, "MARKETS": "top:2",
               "BACKFILL_MAX_CANDLES": "200"}
        assert run_bot("migrate", env=env, cwd=tmp_path).returncode == 0
        done = run_bot("markets", "--json", env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        # the most traded is warned: the next two are chosen
        assert [m["market"] for m in report["markets"]] == ["KRW-ETH", "KRW-XRP"]
        assert report["listed"] == 3 and set(report["joined"]) == {"KRW-ETH", "KRW-XRP"}
        text = run_bot("markets", env=env, cwd=tmp_path)
        assert "Upbit lists 3 KRW markets; top:2 selects 2" in text.stdout
        assert "KRW-ETH      traded  ok" in text.stdout
        collected = run_bot("collect", "--json", env=env, cwd=tmp_path)
        assert collected.returncode == 0, collected.stderr
        assert {m["market"] for m in json.loads(collected.stdout)["markets"]} == {"KRW-ETH",
                                                                                 "KRW-XRP"}
