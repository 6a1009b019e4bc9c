"""Notifications against `responses`: the payloads sent to Telegram and to a
webhook, the events filter, redaction, bounded retries, and a failing or slow
endpoint never reaching the trade."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from decimal import Decimal

import pytest
import redis
import requests
import responses
from redis.backoff import NoBackoff
from redis.retry import Retry

from bot.exchange.paper import PaperExchange
from bot.report import notify as notify_mod
from bot.report.daily import send_daily_summary
from bot.report.failures import note_failure, note_success
from bot.report.messages import format_message, repeated_failure
from bot.storage import orders as order_store
from bot.trading.lifecycle import TradeContext
from bot.trading.trader import order_identifier, trade_market
from testkit.candles import T0, store_closes
from testkit.clock import FakeClock
from testkit.logcapture import captured_logs, json_lines
from testkit.settings import make_settings, redis_db

D = Decimal
M = "KRW-BTC"
TOKEN = "123456789:AAFakeTelegramTokenNeverLogged_xyz"
CHAT = "-100200300"
WEBHOOK = "https://hooks.example.test/services/T000/B000/WebhookSecretPart"
TELEGRAM_URL = f"https://api.telegram.org/bot{TOKEN}/sendMessage"


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch):
    monkeypatch.setattr(notify_mod, "RETRY_DELAYS", (0.0, 0.0))
    yield
    assert notify_mod.flush(10)


def _settings(**overrides):
    env = {"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_CHAT_ID": CHAT, "NOTIFY_WEBHOOK_URL": WEBHOOK}
    env.update(overrides)
    return make_settings(**{k: v for k, v in env.items() if v is not None})


def _bodies(calls, url_start):
    return [json.loads(c.request.body) for c in calls if c.request.url.startswith(url_start)]


FILLED = {"market": M, "side": "bid", "price": D("160000"), "volume": D("6.24375624"),
          "funds": D("998000.9984"), "fee": D("499.5004992")}


def test_messages_are_short_and_human():
    fmt = format_message
    assert fmt("order.filled", FILLED) == (
        "[paper] KRW-BTC BUY filled: 6.24375624 BTC at 160,000 KRW = 998,001 KRW (fee 500)")
    assert fmt("order.cancelled", {"market": M, "side": "ask", "price": D("99900"),
                                   "volume": D("0.5"), "reason": "timeout"}, live=True) == (
        "[LIVE] KRW-BTC sell order cancelled (not filled in time): 0.5 BTC at 99,900 KRW")
    text = fmt("risk.loss_limit", {"equity": D("940000"), "start_equity": D("1000000"),
                                   "limit_pct": D("5")})
    assert "equity 940,000 KRW" in text and "(6.00 % below)" in text and "00:00 UTC" in text
    text = fmt("weights.adopted", {"market": M, "version": 4, "weights": "trend=0.600,day=0.400",
                                   "reason": "holdout objective 1.2 beats 0.9"})
    assert text == ("[paper] KRW-BTC: new weights adopted (v4): trend=0.600,day=0.400. "
                    "holdout objective 1.2 beats 0.9")
    assert fmt("job.failing", {"task": "collect", "market": M, "failures": 3,
                               "error": "ExchangeTemporaryError", "detail": "HTTP 503"}) == (
        "[paper] collect KRW-BTC has failed 3 times in a row: ExchangeTemporaryError: HTTP 503")
    assert repeated_failure("optimize", 5, "MemoryError") == (
        "optimize has failed 5 times in a row: MemoryError")
    # an event without a format still says what it is; a broken field does not lose it
    assert fmt("something.new", {"a": 1}) == "[paper] something.new: a=1"
    assert fmt("order.filled", {"market": M}) == (
        "[paper] KRW-BTC SELL filled: ? BTC at ? KRW = ? KRW (fee ?)")


@responses.activate
def test_telegram_and_webhook_receive_the_message():
    responses.post(TELEGRAM_URL, json={"ok": True, "result": {}})
    responses.post(WEBHOOK, body="ok")
    notify = notify_mod.notifier(_settings())
    with captured_logs("json") as out:
        notify("order.filled", **FILLED)
        assert notify_mod.flush(10)
    text = format_message("order.filled", FILLED)
    assert _bodies(responses.calls, "https://api.telegram.org") == [
        {"chat_id": CHAT, "text": text, "disable_web_page_preview": True}]
    assert _bodies(responses.calls, WEBHOOK) == [{"text": text}]
    sent = [e for e in json_lines(out.getvalue()) if e["event"] == "notify.sent"]
    assert {(e["channel"], e["notification"]) for e in sent} == {
        ("telegram", "order.filled"), ("webhook", "order.filled")}
    assert TOKEN not in out.getvalue() and "WebhookSecretPart" not in out.getvalue()


@responses.activate
def test_nothing_is_sent_when_off_or_not_chosen():
    notify_mod.notifier(make_settings())("order.filled", **FILLED)  # no channel: the default
    only_fills = notify_mod.notifier(_settings(NOTIFY_EVENTS="order.filled,daily.summary",
                                               NOTIFY_WEBHOOK_URL=None))
    responses.post(TELEGRAM_URL, json={"ok": True})
    only_fills("weights.adopted", market=M, version=2, weights="trend=1.000")
    only_fills("order.cancelled", market=M, side="bid", price=1, volume=1, reason="timeout")
    notify_mod.notifier(_settings(NOTIFY_EVENTS="none"))("order.filled", **FILLED)
    assert notify_mod.flush(10)
    assert len(responses.calls) == 0
    only_fills("order.filled", **FILLED)
    assert notify_mod.flush(10)
    assert len(responses.calls) == 1


@responses.activate
def test_secrets_in_a_message_are_redacted():
    responses.post(WEBHOOK, body="ok")
    settings = _settings(TELEGRAM_BOT_TOKEN=None, TELEGRAM_CHAT_ID=None,
                         UPBIT_ACCESS_KEY="AccessKeyInAnError1234", UPBIT_SECRET_KEY="S" * 40)
    notify = notify_mod.notifier(settings)
    notify("job.failing", task="trade", market=M, failures=3, error="AuthError",
           detail="Authorization: Bearer eyJhbGciOi.eyJhY2Nlc3Nfa2V5.c2lnbmF0dXJl key "
                  "AccessKeyInAnError1234 secret " + "S" * 40)
    assert notify_mod.flush(10)
    (body,) = _bodies(responses.calls, WEBHOOK)
    assert "AccessKeyInAnError1234" not in body["text"] and "S" * 40 not in body["text"]
    assert "eyJhbGciOi" not in body["text"] and "***" in body["text"]


@responses.activate
def test_a_failing_endpoint_is_tried_three_times_then_logged_and_dropped():
    responses.post(TELEGRAM_URL, json={"ok": False, "description": "Bad Gateway"}, status=502)
    # requests names only the path in its errors: the webhook's path is its token
    responses.post(WEBHOOK, body=requests.ConnectionError(
        "Max retries exceeded with url: /services/T000/B000/WebhookSecretPart"))
    with captured_logs("text") as out:
        notify_mod.notifier(_settings())("order.filled", **FILLED)
        assert notify_mod.flush(10)
    assert len([c for c in responses.calls if "telegram" in c.request.url]) == 3
    assert len([c for c in responses.calls if c.request.url == WEBHOOK]) == 3
    failed = [line for line in out.getvalue().splitlines() if " notify.failed " in line]
    assert len(failed) == 2
    assert all("attempts=3" in line and "notification=order.filled" in line for line in failed)
    assert "HTTP 502" in out.getvalue()
    assert TOKEN not in out.getvalue() and "WebhookSecretPart" not in out.getvalue()


@responses.activate
def test_a_refusal_is_not_retried_and_a_rate_limit_is():
    responses.post(TELEGRAM_URL, json={"ok": False, "description": "chat not found"},
                   status=400)
    notify_mod.notifier(_settings(NOTIFY_WEBHOOK_URL=None))("order.filled", **FILLED)
    assert notify_mod.flush(10)
    assert len(responses.calls) == 1
    responses.reset()
    responses.post(WEBHOOK, status=429, headers={"Retry-After": "0"})
    responses.post(WEBHOOK, body="ok")
    with captured_logs("text") as out:
        notify_mod.notifier(_settings(TELEGRAM_BOT_TOKEN=None, TELEGRAM_CHAT_ID=None))(
            "order.filled", **FILLED)
        assert notify_mod.flush(10)
    assert len(responses.calls) == 2
    assert "notify.sent" in out.getvalue() and "attempts=2" in out.getvalue()


@responses.activate
def test_notify_never_blocks_the_caller():
    def slow(request):
        time.sleep(0.3)
        return 200, {}, "ok"

    responses.add_callback(responses.POST, WEBHOOK, callback=slow)
    notify = notify_mod.notifier(_settings(TELEGRAM_BOT_TOKEN=None, TELEGRAM_CHAT_ID=None))
    started = time.monotonic()
    for _ in range(3):
        notify("order.filled", **FILLED)
    assert time.monotonic() - started < 0.2
    assert notify_mod.flush(10)
    assert len(responses.calls) == 3


def test_notify_never_raises(monkeypatch):
    notify = notify_mod.notifier(_settings())

    def broken(*args, **kwargs):
        raise RuntimeError("queue exploded")

    monkeypatch.setattr(notify_mod, "_get_sender", broken)
    with captured_logs("text") as out:
        notify("order.filled", **FILLED)
    assert "notify.failed" in out.getvalue() and "queue exploded" in out.getvalue()


# --- a failing endpoint and the trade -----------------------------------------------


RISING = [100_000 + 300 * i for i in range(200)]


@responses.activate
def test_a_dead_endpoint_does_not_affect_the_trade(db, database_url):
    responses.post(TELEGRAM_URL, body=requests.ConnectionError("connection refused"))
    responses.post(WEBHOOK, status=500)
    settings = make_settings(database_url, TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_CHAT_ID=CHAT,
                             NOTIFY_WEBHOOK_URL=WEBHOOK)
    clock = FakeClock(T0 + timedelta(minutes=200, seconds=1))
    exchange = PaperExchange(db, start_krw=settings.paper_start_krw, fee_rate=settings.fee_rate,
                             min_order_krw=settings.min_order_krw, now=clock)
    ctx = TradeContext(settings, db, exchange, now=clock, notify=notify_mod.notifier(settings))
    closes = RISING + [RISING[-1] + 300]
    store_closes(db, M, closes[:200], spread="1000")
    with captured_logs("text") as out:
        out_buy = trade_market(ctx, M)
        store_closes(db, M, closes, spread="1000")  # the next candle crosses the bid
        clock.advance(minutes=1)
        trade_market(ctx, M)  # reconciles the fill (and notifies) first
        assert notify_mod.flush(10)
    assert out_buy.action == "buy"
    row = order_store.by_identifier(db, order_identifier("paper", M, T0 + timedelta(
        minutes=199), "bid"))
    assert row.state == "done" and len(order_store.fills_of(db, row.id)) == 1
    assert len(responses.calls) == 6  # both channels tried three times
    log = out.getvalue()
    assert " order.filled " in log and log.count(" notify.failed ") == 2
    assert TOKEN not in log and "WebhookSecretPart" not in log


# --- repeated failures and the daily summary ---------------------------------------------


@pytest.fixture
def redis_client():
    client = redis.Redis.from_url(redis_db(2))
    yield client
    for key in client.scan_iter(match="bot:failures:test-*"):
        client.delete(key)


def test_a_job_failing_repeatedly_notifies_once_per_streak(redis_client):
    settings = make_settings(NOTIFY_FAILURES_AFTER="3")
    sent = []

    def notify(name, **fields):
        sent.append((name, fields))

    counts = [note_failure(settings, redis_client, notify, "test-collect", M,
                           "ExchangeTemporaryError", "HTTP 503") for _ in range(5)]
    assert counts == [1, 2, 3, 4, 5]
    assert sent == [("job.failing", {"task": "test-collect", "market": M, "failures": 3,
                                     "error": "ExchangeTemporaryError", "detail": "HTTP 503"})]
    note_success(redis_client, "test-collect", M)
    assert note_failure(settings, redis_client, notify, "test-collect", M, "E") == 1
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2,
                       retry=Retry(NoBackoff(), 0))
    assert note_failure(settings, dead, notify, "test-collect", M, "E") == 0
    note_success(dead, "test-collect", M)  # no exception either


def test_daily_summary_reports_the_last_24_hours(db, database_url):
    settings = make_settings(database_url)
    clock = FakeClock(T0 + timedelta(minutes=200, seconds=1))
    exchange = PaperExchange(db, start_krw=settings.paper_start_krw, fee_rate=settings.fee_rate,
                             min_order_krw=settings.min_order_krw, now=clock)
    ctx = TradeContext(settings, db, exchange, now=clock)
    closes = RISING + [RISING[-1] + 300]
    store_closes(db, M, closes[:200], spread="1000")
    trade_market(ctx, M)
    store_closes(db, M, closes, spread="1000")
    clock.advance(minutes=1)
    trade_market(ctx, M)
    sent = []
    report = send_daily_summary(settings, db, exchange, now=clock(),
                                notify=lambda n, **f: sent.append((n, f)))
    assert report["trades"] == 1 and report["realised"] == 0
    assert report["fees"] == D("160000") * D("6.24375624") * D("0.0005")
    assert report["equity"] > 0 and report["return_pct"] is not None
    assert report["buy_and_hold_pct"] is not None
    assert report["text"].startswith("Daily summary (last 24 h): realised PnL +0 KRW, fees 500")
    assert "against buy-and-hold" in report["text"]
    (name, fields), = sent
    assert name == "daily.summary" and fields["trades"] == 1
    assert format_message(name, fields) == "[paper] " + report["text"]
