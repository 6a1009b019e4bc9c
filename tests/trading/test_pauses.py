"""Pauses (``bot pause``/``bot resume``, Telegram's /pause and /resume): a
stored pause blocks new buys with the ``paused`` trigger and a reason naming
it; exits and sells go on; it shows in ``bot status``."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from bot import rules
from bot.exchange.paper import PaperExchange
from bot.report.render import render
from bot.report.status import collect
from bot.storage import pauses as pause_store
from bot.trading.lifecycle import TradeContext
from bot.trading.trader import trade_market
from testkit.candles import T0, store_closes
from testkit.cli import run_bot
from testkit.clock import FakeClock
from testkit.settings import make_settings

M = "KRW-BTC"
RISING = [100_000 + 300 * i for i in range(200)]  # every signal +1: a buy while flat


def _ctx(db, database_url, clock) -> TradeContext:
    settings = make_settings(database_url)
    exchange = PaperExchange(db, start_krw=settings.paper_start_krw, fee_rate=settings.fee_rate,
                             min_order_krw=settings.min_order_krw, now=clock)
    return TradeContext(settings, db, exchange, now=clock)


@pytest.fixture
def clock():
    return FakeClock(T0 + timedelta(minutes=200, seconds=1))


@pytest.fixture
def ctx(db, database_url, clock):
    return _ctx(db, database_url, clock)


def _next_candle(db, closes, clock, close):
    closes.append(close)
    store_closes(db, M, closes, spread="1000")
    clock.current = T0 + timedelta(minutes=len(closes), seconds=1)


def test_a_paused_market_holds_with_the_paused_trigger_until_resumed(db, ctx, clock):
    closes = list(RISING)
    store_closes(db, M, closes)
    pause_store.pause(db, M, T0, "telegram:alice")
    held = trade_market(ctx, M)
    assert (held.action, held.trigger, held.order) == ("hold", rules.PAUSED, None)
    assert "paused: buys in KRW-BTC paused since 01-05 00:00Z by telegram:alice" in held.reason
    assert pause_store.resume(db, M)[0].by == "telegram:alice"
    _next_candle(db, closes, clock, closes[-1] + 300)
    bought = trade_market(ctx, M)
    assert (bought.action, bought.trigger) == ("buy", rules.SIGNAL)
    assert bought.order is not None


def test_a_pause_of_all_markets_blocks_every_market_and_outlasts_a_market_resume(db, ctx):
    store_closes(db, M, RISING)
    pause_store.pause(db, pause_store.ALL, T0, "cli:ops")
    assert pause_store.resume(db, M) == []  # its own pause: none
    out = trade_market(ctx, M)
    assert out.trigger == rules.PAUSED and "buys in all markets paused" in out.reason


def test_a_paused_market_still_sells(db, ctx, clock):
    closes = list(RISING)
    store_closes(db, M, closes, spread="1000")
    assert trade_market(ctx, M).action == "buy"
    _next_candle(db, closes, clock, closes[-1] + 300)  # crosses the bid: it fills
    assert trade_market(ctx, M).action == "hold"
    pause_store.pause(db, M, clock(), "telegram:alice")
    for _ in range(199):
        closes.append(closes[-1] - 300)
    store_closes(db, M, closes, spread="1000")
    clock.current = T0 + timedelta(minutes=len(closes), seconds=1)
    out = trade_market(ctx, M)
    assert out.action == "sell" and out.order is not None and out.order.side == "ask"


def test_bot_status_shows_the_pause_and_it_is_no_problem(db, ctx, clock):
    store_closes(db, M, RISING)
    pause_store.pause(db, M, T0, "cli:ops")
    status = collect(ctx.settings, db, ctx.exchange, {"collector": 0.0}, wall=0.0, now=clock())
    entry = status["markets"][0]
    assert entry["paused"] == {"market": M, "since": T0, "by": "cli:ops"}
    assert [g["name"] for g in entry["guards"]] == [rules.PAUSED]
    assert not any("paus" in p for p in status["problems"])
    text = render(status)
    assert "paused     KRW-BTC since 01-05 00:00Z by cli:ops: no new buys" in text
    assert "PAUSED: no new buys" in text
    assert "guard    paused until it changes: no buys" in text


def test_bot_pause_and_resume_on_the_command_line(db, database_url, ctx, clock, tmp_path):
    env = {"DATABASE_URL": database_url, "MARKETS": M, "USER": "ops"}
    paused = run_bot("pause", "--market", "krw-btc", env=env, cwd=tmp_path)
    assert paused.returncode == 0, paused.stderr
    assert "Paused KRW-BTC" in paused.stdout and "bot resume --market KRW-BTC" in paused.stdout
    closes = list(RISING)
    store_closes(db, M, closes)
    out = trade_market(ctx, M)
    assert out.trigger == rules.PAUSED and "by cli:" in out.reason
    resumed = run_bot("resume", "--market", M, env=env, cwd=tmp_path)
    assert resumed.returncode == 0 and "Resumed KRW-BTC" in resumed.stdout
    _next_candle(db, closes, clock, closes[-1] + 300)
    assert trade_market(ctx, M).action == "buy"
    bad = run_bot("pause", "--market", "BTC", env=env, cwd=tmp_path)
    assert bad.returncode == 2 and "not a KRW market" in bad.stderr
    assert pause_store.all_pauses(db) == []


def test_a_pause_in_force_keeps_its_start(db):
    first = pause_store.pause(db, M, T0, "cli:a")
    again = pause_store.pause(db, M, T0 + timedelta(hours=1), "cli:b")
    assert again == first
    assert pause_store.pause_of(db, M).since == T0
    assert Decimal(len(pause_store.resume(db, None))) == 1
