"""Commands from Telegram, against a local server speaking the Bot API
(testkit/faketelegram.py): every command, a stranger's message, a restart in
the middle of the update stream, /sell's confirm, and pauses from the chat."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from datetime import timedelta

import pytest

from bot import rules
from bot.exchange.paper import PaperExchange
from bot.report.commands import Commands, Request, sell_identifier
from bot.report.status import ROLES
from bot.report.telegram import Poller, TelegramApi
from bot.storage import orders as order_store
from bot.storage import pauses as pause_store
from bot.storage import telegram as offset_store
from bot.trading.lifecycle import TradeContext
from bot.trading.trader import trade_market
from testkit.candles import T0, store_closes
from testkit.clock import FakeClock
from testkit.faketelegram import FakeTelegram
from testkit.settings import make_settings

TOKEN = "123456:secret-telegram-token-for-tests"
CHAT = "42"
M = "KRW-BTC"
RISING = [100_000 + 300 * i for i in range(200)]


class Crash(BaseException):
    """The process dies here (nothing after it runs)."""


@pytest.fixture
def tg():
    with FakeTelegram(TOKEN) as fake:
        yield fake


@pytest.fixture
def clock():
    return FakeClock(T0 + timedelta(minutes=200, seconds=1))


@pytest.fixture
def ctx(db, database_url, clock):
    settings = make_settings(database_url, TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_CHAT_ID=CHAT,
                             MARKETS=M)
    exchange = PaperExchange(db, start_krw=settings.paper_start_krw, fee_rate=settings.fee_rate,
                             min_order_krw=settings.min_order_krw, now=clock)
    return TradeContext(settings, db, exchange, now=clock)


@pytest.fixture
def commands(ctx, db):
    return Commands(ctx.settings, db, ctx, ctx.exchange,
                    heartbeats=lambda: {role: time.time() for role in ROLES})


def _poller(ctx, db, tg, handle) -> Poller:
    return Poller(ctx.settings, db, TelegramApi(TOKEN, base=tg.url), handle)


@pytest.fixture
def poller(ctx, db, tg, commands):
    return _poller(ctx, db, tg, commands.handle)


def ask(tg: FakeTelegram, poller: Poller, text: str) -> str:
    before = len(tg.sent)
    tg.push(text, chat_id=CHAT)
    poller.poll_once(timeout=0)
    sent = tg.wait_sent(before + 1, timeout=1)
    assert len(sent) == before + 1, f"no answer to {text!r}"
    assert sent[-1].chat_id == CHAT
    return sent[-1].text


def _hold_btc(db, ctx, clock) -> list[int]:
    """Buy on the rising closes and fill the bid on the next candle."""
    closes = list(RISING)
    store_closes(db, M, closes, spread="1000")
    assert trade_market(ctx, M).action == "buy"
    closes.append(closes[-1] + 300)
    store_closes(db, M, closes, spread="1000")
    clock.advance(minutes=1)
    assert trade_market(ctx, M).action == "hold"
    return closes


# --- the read-only commands --------------------------------------------------------------


def test_help_start_and_an_unknown_command(tg, poller):
    assert "/sell MARKET" in ask(tg, poller, "/help")
    assert "/status" in ask(tg, poller, "/start")
    assert "Unknown command '/frobnicate'" in ask(tg, poller, "/frobnicate now")
    assert "/pause [market]" in ask(tg, poller, "/help@upbit_bot")


def test_status_is_a_few_lines_per_market(db, tg, poller, ctx, clock):
    _hold_btc(db, ctx, clock)
    text = ask(tg, poller, "/status")
    lines = text.splitlines()
    assert lines[0].startswith("[paper] 01-05 03:21Z OK")
    assert lines[1].startswith("equity ")
    assert "KRW-BTC: candle 61 s old" in text
    assert "HOLD +1.00 by signal 01-05 03:20Z" in text
    assert "6.24375624 BTC = " in text and "unrealised" in text
    assert "pnl today " in text and "problems" not in text
    assert len(lines) <= 8


def test_status_lists_problems(db, tg, ctx, commands):
    silent = Commands(ctx.settings, db, ctx, ctx.exchange, heartbeats=lambda: None)
    text = ask(tg, _poller(ctx, db, tg, silent.handle), "/status")
    assert "PROBLEM(S)" in text.splitlines()[0]
    assert "- KRW-BTC: no candles stored" in text


def test_balance_shows_cash_coins_and_equity(db, tg, poller, ctx, clock):
    assert ask(tg, poller, "/balance").splitlines()[1:] == ["cash 1,000,000 KRW",
                                                           "equity 1,000,000 KRW"]
    _hold_btc(db, ctx, clock)
    text = ask(tg, poller, "/balance")
    assert "BTC 6.24375624 = 999,001 KRW" in text  # at the last close, 160,000
    assert "cash 500 KRW" in text and text.endswith("equity 999,500 KRW")


def test_pnl_over_days_and_a_bad_argument(db, tg, poller, ctx, clock):
    _hold_btc(db, ctx, clock)
    # a buy realises nothing; its fee (998,001 KRW * 0.05 %) is the day's
    assert ask(tg, poller, "/pnl").splitlines() == [
        "[paper] last 1 day(s): realised +0 KRW, fees 500, 1 trade",
        "KRW-BTC: +0 KRW, fees 500, 1 trade"]
    assert "last 2.5 day(s)" in ask(tg, poller, "/pnl 2.5")
    assert "'abc' is not a number of days" in ask(tg, poller, "/pnl abc")
    assert "days must be above 0" in ask(tg, poller, "/pnl 0")


def test_weights_show_the_parameters_and_the_last_verdict(tg, poller):
    text = ask(tg, poller, "/weights")
    assert "KRW-BTC default" in text
    assert "threshold 0.2, cooldown 0, stop-loss 5 %" in text
    assert "optimizer never ran" in text


# --- who may ask --------------------------------------------------------------------------


def test_a_stranger_is_ignored_and_logged_without_the_text(db, tg, poller, caplog):
    tg.push("/pause KRW-BTC because-my-secret-plan", chat_id=666, user="mallory")
    tg.push("hello there", chat_id=667)
    with caplog.at_level(logging.INFO):
        assert poller.poll_once(timeout=0) == 2
    assert tg.sent == [] and pause_store.all_pauses(db) == []
    ignored = [r for r in caplog.records if getattr(r, "event", "") == "telegram.ignored"]
    assert [(r.fields["chat"], r.fields["command"]) for r in ignored] == [("666", "pause"),
                                                                          ("667", "-")]
    logged = " ".join(f"{r.getMessage()} {getattr(r, 'fields', '')}" for r in caplog.records)
    assert "secret-plan" not in logged and "hello there" not in logged
    assert offset_store.next_update(db, "123456") == max(u["update_id"] for u in
                                                         tg.updates) + 1


# --- at most once, none lost -------------------------------------------------------------


def test_a_restart_in_the_middle_handles_each_update_once(db, ctx, tg, commands):
    handled: list[str] = []
    first = None

    def handle(request: Request) -> str:
        handled.append(request.text)
        if request.text == "/help second":
            first.stop_requested = True  # SIGTERM arrives while this one is handled
        return commands.handle(request)

    first = _poller(ctx, db, tg, handle)
    for text in ("/pause KRW-BTC", "/help second", "/resume KRW-BTC", "/help fourth"):
        tg.push(text, chat_id=CHAT)
    first.poll_once(timeout=0)
    assert handled == ["/pause KRW-BTC", "/help second"]  # the rest waits, unconfirmed
    second = _poller(ctx, db, tg, handle)  # the restarted process
    second.poll_once(timeout=0)
    assert handled == ["/pause KRW-BTC", "/help second", "/resume KRW-BTC", "/help fourth"]
    assert len(tg.wait_sent(4)) == 4
    second.poll_once(timeout=0)
    assert len(handled) == 4 and tg.polls[-1]["offset"] == tg.polls[-2]["offset"] + 2


def test_a_death_after_a_side_effect_never_repeats_it(db, ctx, tg, commands):
    handled: list[str] = []

    def dies_after(request: Request) -> str:
        handled.append(request.text)
        commands.handle(request)
        raise Crash  # died after handling, before answering

    tg.push("/pause", chat_id=CHAT)
    with pytest.raises(Crash):
        _poller(ctx, db, tg, dies_after).poll_once(timeout=0)
    assert pause_store.pause_of(db, M) is not None
    restarted = _poller(ctx, db, tg, commands.handle)
    assert restarted.poll_once(timeout=0) == 0  # the pause is not done again
    assert handled == ["/pause"]


def test_a_death_before_a_read_is_answered_answers_it_after_the_restart(db, ctx, tg, commands):
    def dies(request: Request) -> str:
        raise Crash

    tg.push("/help", chat_id=CHAT)
    with pytest.raises(Crash):
        _poller(ctx, db, tg, dies).poll_once(timeout=0)
    assert tg.sent == []
    assert _poller(ctx, db, tg, commands.handle).poll_once(timeout=0) == 1
    assert [t.splitlines()[0] for t in tg.texts()] == ["Commands:"]  # not lost


def test_long_polling_stops_on_request_without_losing_the_next_update(db, ctx, tg, poller,
                                                                      commands):
    thread = threading.Thread(target=poller.run, daemon=True)
    thread.start()
    tg.push("/help", chat_id=CHAT)
    assert tg.wait_sent(1)[0].text.startswith("Commands:")
    poller.stop_requested = True
    tg.push("/pause", chat_id=CHAT)  # wakes the long poll: seen, not handled
    thread.join(5)
    assert not thread.is_alive()
    assert pause_store.all_pauses(db) == [] and len(tg.sent) == 1
    assert any(p["timeout"] > 0 for p in tg.polls)  # it did long-poll
    assert _poller(ctx, db, tg, commands.handle).poll_once(timeout=0) == 1
    assert tg.texts()[1].startswith("Paused all markets")


def test_an_unreachable_telegram_is_waited_for_and_the_token_never_logged(db, ctx, caplog):
    waits: list[float] = []
    poller = Poller(ctx.settings, db, TelegramApi(TOKEN, base="http://127.0.0.1:9"),
                    lambda r: "", sleep=waits.append)
    poller.sleep = lambda s: (waits.append(s), setattr(poller, "stop_requested", len(waits) > 1))
    with caplog.at_level(logging.INFO):
        poller.run()
    assert waits == [1.0, 2.0]
    failed = [r for r in caplog.records if getattr(r, "event", "") == "telegram.poll_failed"]
    assert len(failed) == 2 and failed[0].fields["error"] == "TelegramUnavailable"
    assert "127.0.0.1" in failed[0].fields["detail"]
    logged = " ".join(f"{r.getMessage()} {getattr(r, 'fields', '')}" for r in caplog.records)
    assert "secret-telegram-token" not in logged


# --- pauses and /sell from the chat --------------------------------------------------------


def test_pause_from_the_chat_stops_buys_until_resume(db, tg, poller, ctx, clock):
    closes = list(RISING)
    store_closes(db, M, closes)
    assert "Paused KRW-BTC" in ask(tg, poller, "/pause krw-btc")
    held = trade_market(ctx, M)
    assert held.trigger == rules.PAUSED and "by telegram:alice" in held.reason
    assert "PAUSED KRW-BTC since" in ask(tg, poller, "/status")
    assert "Resumed KRW-BTC" in ask(tg, poller, "/resume KRW-BTC")
    closes.append(closes[-1] + 300)
    store_closes(db, M, closes)
    clock.advance(minutes=1)
    assert trade_market(ctx, M).action == "buy"
    assert "not a KRW market" in ask(tg, poller, "/pause BTC")


def test_resume_of_one_market_says_the_pause_of_all_is_still_on(db, tg, poller):
    ask(tg, poller, "/pause")
    assert "Still paused: all markets" in ask(tg, poller, "/resume KRW-BTC")
    assert "Resumed every market" in ask(tg, poller, "/resume")
    assert pause_store.all_pauses(db) == []


def test_sell_asks_for_confirm_then_places_one_order_even_when_paused(db, tg, poller, ctx,
                                                                     clock, commands):
    _hold_btc(db, ctx, clock)
    ask(tg, poller, "/pause KRW-BTC")
    before = order_store.count(db)
    text = ask(tg, poller, "/sell KRW-BTC")
    # 160,000 * 0.9985 = 159,760 -> down to the tick of 100 -> 159,700
    assert "Would sell 6.24375624 BTC at 159,700" in text
    assert "/sell KRW-BTC confirm" in text and order_store.count(db) == before
    update_id = tg.push("/sell KRW-BTC confirm", chat_id=CHAT)
    poller.poll_once(timeout=0)
    assert "Placed: sell 6.24375624 BTC at 159,700" in tg.wait_sent(3)[-1].text
    row = order_store.by_identifier(db, sell_identifier("paper", M, update_id))
    assert (row.side, row.price, row.volume, row.state) == ("ask", 159_700, row.volume, "wait")
    # The same confirm handled again (a redelivery): no second order.
    again = commands.handle(Request("/sell KRW-BTC confirm", update_id, "telegram:alice"))
    assert again.startswith("Already placed for this confirm")
    # A new confirm while that ask is open places nothing either.
    assert "an order is still open" in ask(tg, poller, "/sell KRW-BTC confirm")
    assert order_store.count(db) == before + 1


def test_sell_of_nothing_held_and_the_kill_switch(db, tg, poller, ctx, clock):
    store_closes(db, M, RISING)
    assert "Not selling KRW-BTC: no BTC held" in ask(tg, poller, "/sell KRW-BTC confirm")
    assert "name the market" in ask(tg, poller, "/sell")
    _hold_btc(db, ctx, clock)
    before = order_store.count(db)
    off = replace(ctx.settings, trading_enabled=False)
    switched = Commands(off, db, replace(ctx, settings=off), ctx.exchange)
    text = ask(tg, _poller(ctx, db, tg, switched.handle), "/sell KRW-BTC confirm")
    assert text.startswith("Not selling KRW-BTC: kill switch on (TRADING_ENABLED=false)")
    assert order_store.count(db) == before


# --- the command, as a process ------------------------------------------------------------


def test_bot_telegram_answers_and_stops_on_sigterm(db, database_url, tg, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": database_url, "TELEGRAM_BOT_TOKEN": TOKEN,
           "TELEGRAM_CHAT_ID": CHAT, "MARKETS": M,
           "CELERY_BACKEND_URL": make_settings(database_url).celery_backend_url}
    proc = subprocess.Popen([sys.executable, "-m", "bot", "telegram", "--api-base", tg.url],
                            env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        tg.push("/help", chat_id=CHAT)
        assert tg.wait_sent(1, timeout=20), "bot telegram never answered"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "telegram.started" in err and "telegram.stopped" in err
    assert TOKEN not in err and TOKEN not in out
