"""`bot status` and `bot health`: an empty database, a healthy one and
unhealthy ones (stale candles, a silent worker, the loss limit, the exchange,
the database or Redis out of reach), the exit codes, and the PnL accounting
behind the numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import redis
import responses
from redis.backoff import NoBackoff
from redis.retry import Retry

from bot import clock
from bot.exchange.factory import make_exchange
from bot.exchange.paper import PaperExchange
from bot.exchange.upbit import UpbitClient
from bot.jsonout import jsonable
from bot.models import Balance, FillRow
from bot.optimize.job import optimize_market
from bot.report import status
from bot.report.render import render
from bot.report.text import when_text
from bot.storage import Database
from bot.storage import orders as order_store
from bot.trading import accounting
from bot.trading.lifecycle import TradeContext
from bot.trading.trader import order_identifier, trade_market
from testkit.candles import T0, candle, store_closes
from testkit.clock import FakeClock
from testkit.settings import make_settings, redis_db

D = Decimal
M = "KRW-BTC"
RISING = [100_000 + 300 * i for i in range(200)]
WALL = 1_800_000_000.0
FRESH = {role: WALL - 5 for role in status.ROLES}
REDIS_DB = redis_db(2)


# --- accounting: pure ----------------------------------------------------------


def _fill(order_id, side, price, volume, fee, minute):
    price, volume = D(price), D(volume)
    return FillRow(order_id, M, side, price, volume, price * volume, D(fee),
                   T0 + timedelta(minutes=minute))


def test_average_cost_pnl_by_hand():
    fills = [
        _fill(1, "bid", "100", "10", "1", 0),  # cost 1,001 for 10
        _fill(2, "bid", "130", "10", "2", 1),  # cost 1,302 for 10: avg 115.15
        _fill(3, "ask", "150", "5", "1", 2),   # 749 - 575.75 = 173.25
        _fill(3, "ask", "150", "5", "1", 3),   # the same order's second fill
        _fill(4, "ask", "90", "10", "1", 60 * 24 + 5),  # next day: 899 - 1151.5 = -252.5
    ]
    day2 = T0 + timedelta(days=1)
    led = accounting.ledger(M, list(reversed(fills)), since=day2)
    assert led.realised == D("173.25") * 2 - D("252.5")
    assert led.realised_since == D("-252.5")
    assert led.fees == 6 and led.fees_since == 1
    assert led.trades == 4 and led.trades_since == 1
    assert led.volume == 0 and led.avg_entry is None and led.unmatched_volume == 0
    half = accounting.ledger(M, fills[:3])
    assert half.volume == 15 and half.avg_entry == D("2303") / 20
    # coins sold that no fill bought have no known cost: left out, counted
    odd = accounting.ledger(M, [_fill(9, "ask", "100", "2", "0", 0)])
    assert odd.realised == 0 and odd.unmatched_volume == 2


def test_equity_and_buy_and_hold():
    balances = [Balance("KRW", D("1000"), D("500")), Balance("BTC", D("2"), D("1"), D("90")),
                Balance("XRP", D("10"), D(0), D("3"))]
    assert accounting.equity(balances, {"KRW-BTC": D("100")}) == 1500 + 300 + 30
    held = accounting.buy_and_hold(D("1000"), {"KRW-BTC": D("100"), "KRW-ETH": D("10")},
                                   {"KRW-BTC": D("120"), "KRW-ETH": None})
    assert held == 500 * D("1.2") + 500
    assert accounting.pct(D("1100"), D("1000")) == pytest.approx(10.0)
    assert accounting.pct(D("1"), None) is None


# --- scenarios on the paper exchange --------------------------------------------


def _paper(db, database_url, **overrides):
    settings = make_settings(database_url, **overrides)
    clk = FakeClock(T0 + timedelta(minutes=200, seconds=1))
    exchange = PaperExchange(db, start_krw=settings.paper_start_krw, fee_rate=settings.fee_rate,
                             min_order_krw=settings.min_order_krw, now=clk)
    return settings, clk, exchange, TradeContext(settings, db, exchange, now=clk)


def _buy_then_sell_order(db, ctx, clk):
    """A filled buy at 160,000, then prices fall and an ask is placed (open)."""
    closes = RISING + [RISING[-1] + 300]
    store_closes(db, M, closes[:200], spread="1000")
    trade_market(ctx, M)
    store_closes(db, M, closes, spread="1000")
    clk.advance(minutes=1)
    trade_market(ctx, M)  # the fill is recorded
    falling = closes + [closes[-1] - 300 * (i + 1) for i in range(199)]
    store_closes(db, M, falling, spread="1000")
    clk.current = T0 + timedelta(minutes=len(falling), seconds=1)
    out = trade_market(ctx, M)
    assert out.action == "sell" and out.order_state == "wait"
    return falling


def _collect(settings, db, exchange, clk, heartbeats=FRESH, **kw):
    return status.collect(settings, db, exchange, heartbeats, now=clk(), wall=WALL, **kw)


def _paper_rows(db):
    with db.cursor() as cur:
        cur.execute("SELECT (SELECT count(*) FROM paper_balances),"
                    " (SELECT count(*) FROM paper_orders WHERE state <> 'wait')")
        return cur.fetchone()


def test_empty_database(db, database_url):
    settings, clk, _, _ = _paper(db, database_url)
    exchange = make_exchange(settings, db, view=True)  # the stored paper account, read only
    got = _collect(settings, db, exchange, clk, heartbeats={})
    assert _paper_rows(db) == (0, 0)
    assert got["ok"] is False
    assert got["problems"] == ["KRW-BTC: no candles stored"] + [
        f"{role}: no heartbeat recorded" for role in status.ROLES]
    (market,) = got["markets"]
    assert market["candle"] is None and market["decision"] is None
    assert market["position"]["volume"] == 0 and market["open_orders"] == []
    assert market["weights"]["version"] is None and market["optimizer"] is None
    assert got["account"]["equity"] == D("1000000") and got["account"]["return_pct"] is None
    screen = render(got)
    assert "mode paper" in screen and "5 PROBLEM(S)" in screen
    assert "candle   none stored" in screen and "collector SILENT (never)" in screen
    assert "no trading yet" in screen
    json.dumps(jsonable(got))  # JSON-safe


def test_healthy_screen_answers_is_it_working_and_am_i_making_money(db, database_url):
    settings, clk, exchange, ctx = _paper(db, database_url, DAILY_LOSS_LIMIT_PCT="0",
                                          OPTIMIZE_CANDIDATES="30")
    falling = _buy_then_sell_order(db, ctx, clk)
    run = optimize_market(settings, db, M, now=clk, seed=1, days=1)
    last = falling[-1] - 300
    store_closes(db, M, falling + [last], spread="1000")  # a candle that would fill the ask
    settled = _paper_rows(db)
    got = _collect(settings, db, make_exchange(settings, db, view=True), clk)
    assert _paper_rows(db) == settled  # looking did not fill the paper order
    assert got["ok"] is True and got["problems"] == []
    (m,) = got["markets"]
    assert m["candle"]["ts"] == T0 + timedelta(minutes=len(falling))
    assert m["candle"]["age_s"] == 1.0 and not m["candle"]["stale"]
    assert m["decision"]["action"] == "sell" and m["decision"]["score"] < 0
    assert m["position"]["volume"] == D("6.24375624")
    assert m["position"]["avg_entry"] == D("160000")
    assert m["position"]["value_krw"] == D("6.24375624") * last
    (order,) = m["open_orders"]
    assert order["side"] == "ask" and order["state"] == "wait" and order["age_s"] == 0
    buy_funds = D("160000") * D("6.24375624")
    assert m["pnl"]["trades_total"] == 1 and m["pnl"]["realised_total"] == 0
    assert m["pnl"]["fees_total"] == buy_funds * D("0.0005")
    assert m["optimizer"]["adopted"] == run.adopted and m["optimizer"]["reason"] == run.reason
    account = got["account"]
    cash = D("1000000") - buy_funds * D("1.0005")
    assert account["krw"] == cash
    assert account["equity"] == cash + D("6.24375624") * last
    assert account["since"] == T0 + timedelta(minutes=199)
    # buy-and-hold from the first decision's close (159,700) to the last close
    held = D("1000000") * D("0.9995") * last / 159_700
    assert account["buy_and_hold_pct"] == round(float((held / 1_000_000 - 1) * 100), 3)
    assert account["return_pct"] < 0
    assert all(w["ok"] for w in got["workers"].values())
    screen = render(got)
    assert screen.splitlines()[0].endswith("mode paper   trading on   OK")
    for fragment in ("account    equity ", "buy-and-hold ", "position 6.24375624 BTC",
                     "avg entry 160,000", "orders   ask 6.24375624 @ ", "decision 01-05 ",
                     "SELL score -", "collector 5 s ago", "problems   none",
                     "optimizer " + when_text(m["optimizer"]["at"])):
        assert fragment in screen, fragment
    data = json.loads(json.dumps(jsonable(got)))
    assert data["ok"] is True and data["markets"][0]["position"]["volume"] == "6.24375624"
    assert data["time"].endswith("Z")


def test_unhealthy_stale_candles_silent_worker_and_the_loss_limit(db, database_url):
    settings, clk, exchange, ctx = _paper(db, database_url)  # loss limit 5 %
    falling = _buy_then_sell_order(db, ctx, clk)  # equity fell ~37 %: the limit tripped
    # the ask fills on the next candle; then the collector stops
    store_closes(db, M, falling + [falling[-1] - 300], spread="1000")
    clk.advance(minutes=1)
    trade_market(ctx, M)
    clk.advance(minutes=10)
    beats = {**FRESH, "trader": WALL - 75}
    beats.pop("optimizer")
    got = _collect(settings, db, exchange, clk, heartbeats=beats)
    assert got["ok"] is False
    problems = got["problems"]
    assert problems[0].startswith("daily loss limit tripped at 01-05 ")
    assert "KRW-BTC: newest candle closed 10 min ago (limit 300 s)" in problems
    assert "trader: heartbeat 75 s old (limit 60 s)" in problems
    assert "optimizer: no heartbeat recorded" in problems
    assert len(problems) == 4
    (m,) = got["markets"]
    assert m["halted"] and m["candle"]["stale"]
    # a full round trip: realised PnL = what the sell brought minus what the buy cost
    fills = order_store.fills_of(db, order_store.by_identifier(
        db, order_identifier("paper", M, T0 + timedelta(minutes=len(falling) - 1), "ask")).id)
    (sell,) = fills
    buy_cost = D("160000") * D("6.24375624") * D("1.0005")
    assert m["pnl"]["realised_total"] == sell[3] - sell[4] - buy_cost
    assert m["pnl"]["trades_total"] == 2 and m["position"]["volume"] == 0
    assert got["pnl"]["realised_today"] == m["pnl"]["realised_total"]
    screen = render(got)
    assert "HALTED by the loss limit" in screen and "STALE" in screen
    assert "trader SILENT (75 s ago)" in screen and "4 PROBLEM(S)" in screen


def test_live_exchange_out_of_reach_is_a_problem_not_a_crash(db, database_url):
    settings = make_settings(database_url, TRADING_MODE="live", UPBIT_ACCESS_KEY="ak-status",
                             UPBIT_SECRET_KEY="sk-status-secret", UPBIT_API_BASE="http://127.0.0.1:9")
    store_closes(db, M, RISING, start=T0)
    client = UpbitClient("http://127.0.0.1:9", "ak-status", "sk-status-secret", max_retries=0,
                         connect_timeout=0.5)
    got = status.collect(settings, db, client, FRESH, now=T0 + timedelta(minutes=200), wall=WALL)
    assert got["ok"] is False and got["mode"] == "live"
    (problem,) = got["problems"]
    assert problem.startswith("exchange unreachable: ExchangeTemporaryError")
    assert got["markets"][0]["position"] is None
    screen = render(got)
    assert "mode LIVE" in screen
    assert "balances unknown, exchange unreachable: ExchangeTemporaryError" in screen
    assert "position unknown (no balances from the exchange)" in screen
    assert "sk-status-secret" not in screen


@responses.activate
def test_live_exchange_refusing_the_keys_is_a_problem(db, database_url):
    responses.get("https://api.upbit.test/v1/accounts", status=401, json={
        "error": {"name": "invalid_access_key", "message": "unknown access key"}})
    settings = make_settings(database_url, TRADING_MODE="live", UPBIT_ACCESS_KEY="ak-status",
                             UPBIT_SECRET_KEY="sk-status-secret")
    got = status.collect(settings, db, make_exchange(settings, db, view=True), FRESH,
                         now=T0, wall=WALL)
    assert got["problems"][-1].startswith("exchange refused: AuthError")
    assert "invalid_access_key" in got["problems"][-1]


def test_database_or_redis_out_of_reach(database_url):
    settings = make_settings("postgresql://nobody@127.0.0.1:1/nothing")
    dead = Database(settings.database_url, connect_timeout=1)
    exchange = PaperExchange(dead, start_krw=D(1), fee_rate=D(0), min_order_krw=D(1))
    got = status.collect(settings, dead, exchange, None, heartbeat_error="redis unavailable: x",
                         now=T0, wall=WALL)
    assert got["ok"] is False and got["database"] == "unavailable"
    assert got["problems"][0].startswith("database unavailable")
    assert got["problems"][1] == "heartbeats unknown: redis unavailable: x"
    assert "database unavailable" in render(got)


def test_kill_switch_shows_but_is_not_a_problem(db, database_url):
    settings, clk, exchange, _ = _paper(db, database_url, TRADING_ENABLED="false")
    store_closes(db, M, RISING)
    got = _collect(settings, db, exchange, clk)
    assert got["ok"] is True and got["trading_enabled"] is False
    assert "KILL SWITCH: trading off (TRADING_ENABLED=false)   OK" in render(got)


# --- heartbeats and `bot health` ------------------------------------------------------


@pytest.fixture
def beats():
    client = redis.Redis.from_url(REDIS_DB)
    written = []

    def put(role, age):
        key = f"bot:heartbeat:{role}"
        client.set(key, f"{time.time() - age:.3f}", ex=600)
        written.append(key)

    yield client, put
    for key in written:
        client.delete(key)


def test_health_reads_the_role_heartbeat(beats):
    client, put = beats
    role = f"t{uuid.uuid4().hex[:8]}"
    settings = make_settings()
    out = []

    class Out:
        def write(self, text):
            out.append(text)

    assert status.health(settings, role, Out(), client=client) == 1
    assert out[-1] == f"{role}: no heartbeat recorded\n"
    put(role, 75)
    assert status.health(settings, role, Out(), client=client) == 1
    assert out[-1] == f"{role}: heartbeat 75 s old (limit 60 s)\n"
    put(f"other+{role}", 2)  # one worker serving two queues counts for both roles
    assert status.health(settings, role, Out(), client=client) == 0
    assert out[-1] == f"{role}: heartbeat 2 s old\n"
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2,
                       retry=Retry(NoBackoff(), 0))
    assert status.health(settings, role, Out(), client=dead) == 1
    assert out[-1].startswith(f"{role}: heartbeat unknown, redis unavailable")


# --- the commands, as real processes ---------------------------------------------------


def _bot(*args, env):
    full = {"PATH": os.environ["PATH"], "CELERY_BACKEND_URL": REDIS_DB,
            "CELERY_BROKER_URL": REDIS_DB, **env}
    return subprocess.run([sys.executable, "-m", "bot", *args], env=full, capture_output=True,
                          text=True, timeout=60, cwd="/")


def test_status_command_exit_codes(db, database_url, beats):
    client, put = beats
    for role in status.ROLES:
        client.delete(f"bot:heartbeat:{role}")
    env = {"DATABASE_URL": database_url}
    empty = _bot("status", env=env)
    assert empty.returncode == 1, empty.stderr
    assert "KRW-BTC: no candles stored" in empty.stdout and "SILENT" in empty.stdout
    as_json = _bot("status", "--json", env=env)
    assert as_json.returncode == 1
    data = json.loads(as_json.stdout)  # one object, nothing else on stdout
    assert data["ok"] is False and data["mode"] == "paper"
    # fresh candles on the real clock and every worker beating: exit 0
    now = clock.floor_to_unit(datetime.now(UTC), 1)
    from bot.storage import candles as candle_store
    candle_store.upsert_candles(db, [candle(M, now - timedelta(minutes=i), 100_000)
                                     for i in range(3)], "1m")
    for role in status.ROLES:
        put(role, 1)
    healthy = _bot("status", env=env)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert healthy.stdout.splitlines()[0].endswith("OK")
    assert _bot("health", "trader", env=env).returncode == 0
    client.delete("bot:heartbeat:beat")
    sick = _bot("health", "beat", env=env)
    assert sick.returncode == 1 and sick.stdout == "beat: no heartbeat recorded\n"
