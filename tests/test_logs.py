"""Logging: one line per event in text and in JSON with every context field,
the event vocabulary documented in the README, secrets redacted wherever
they could appear (settings dumps, exception text, request headers, a whole
live trade against the local fake server), and repeated errors collapsed."""

from __future__ import annotations

import ast
import json
import logging
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import responses

from bot import logs
from bot.data.collector import collect_market
from bot.exchange.paper import PaperExchange
from bot.exchange.upbit import UpbitClient
from bot.logs import RepeatFilter, event, redact, register_secret
from bot.optimize.job import optimize_market
from bot.report.notify import flush, notifier
from bot.trading.lifecycle import TradeContext, reconcile, reconcile_market
from bot.trading.trader import trade_market
from testkit import ROOT
from testkit.candles import T0, store_closes
from testkit.clock import FakeClock
from testkit.fakeupbit import FakeUpbit, ManualClock
from testkit.logcapture import LINE, captured_logs, json_lines
from testkit.settings import make_settings

D = Decimal
M = "KRW-BTC"
log = logging.getLogger("bot.test")


def _fields(line: str) -> dict[str, str]:
    """``key=value`` pairs of a text line (values as written)."""
    return dict(re.findall(r" ([A-Za-z_][A-Za-z0-9_]*)=(\"(?:[^\"\\]|\\.)*\"|\S+)", line))


# --- the formats ------------------------------------------------------------------


def test_text_line_shows_time_level_worker_event_and_every_field():
    with captured_logs("text", role="trader") as out:
        event(log, "order.filled", market=M, side="bid", price=D("160000"),
              volume=D("6.24375624"), fee=D("499.5005"), at=datetime(2026, 1, 5, tzinfo=UTC),
              why="score 1.0 >= 0.2 while flat", missing=None, ok=True,
              signals={"trend": 1}, tags=["a", "b"])
        log.warning("plain message %s", "here", extra={"market": M, "attempt": 2})
        logging.getLogger("celery.worker.consumer").info("Connected to redis://:pw@redis:6379/0")
    first, second, third = out.getvalue().splitlines()
    time_, level, worker, name, _ = LINE.match(first).groups()
    assert (level.strip(), worker, name) == ("INFO", "trader", "order.filled")
    assert _fields(first) == {
        "market": M, "side": "bid", "price": "160000", "volume": "6.24375624",
        "fee": "499.5005", "at": "2026-01-05T00:00:00Z", "why": '"score 1.0 >= 0.2 while flat"',
        "missing": "-", "ok": "true", "signals": '{"trend":1}', "tags": '["a","b"]'}
    # a plain logger call with extra= shows its fields too
    assert LINE.match(second).group(4) == "bot.test"
    assert '"plain message here"' in second and _fields(second) == {"market": M,
                                                                    "attempt": "2"}
    # Celery's own loggers go through the same handler (and lose the password)
    assert LINE.match(third).group(4) == "celery.worker.consumer"
    assert "redis://:***@redis:6379/0" in third and ":pw@" not in third


def test_json_line_has_the_same_fields():
    with captured_logs("json", role="collector") as out:
        event(log, "candles.stored", market=M, inserted=3, newest=datetime(2026, 1, 5,
                                                                           tzinfo=UTC),
              price=D("1.50"), worker="not the column", time="not the time")
        try:
            raise ValueError("boom")
        except ValueError:
            event(log, "collector.failed", level=logging.ERROR, exc_info=True, market=M)
    first, second = json_lines(out.getvalue())
    assert first == {"time": first["time"], "level": "INFO", "worker": "collector",
                     "event": "candles.stored", "message": "candles.stored",
                     "logger": "bot.test", "market": M, "inserted": 3,
                     "newest": "2026-01-05T00:00:00Z", "price": "1.50",
                     "worker_": "not the column", "time_": "not the time"}
    assert second["level"] == "ERROR" and second["market"] == M
    assert "ValueError: boom" in second["exception"]
    assert len(out.getvalue().splitlines()) == 2  # one line each, even with a traceback


# --- real events, both formats ---------------------------------------------------------

RISING = [100_000 + 300 * i for i in range(200)]
EXPECTED = {  # event -> fields each line must carry
    "candles.stored": {"market", "inserted", "updated", "newest", "final", "requests"},
    "decision": {"market", "candle", "action", "score", "signals", "weights_version"},
    "order.placed": {"market", "side", "price", "volume", "identifier", "uuid", "state"},
    "order.filled": {"market", "side", "price", "volume", "funds", "fee", "identifier",
                     "trade"},
    "order.cancelled": {"market", "side", "price", "volume", "identifier", "reason", "age_s",
                        "executed", "remaining"},
    "order.cancel_requested": {"market", "side", "price", "volume", "identifier", "uuid",
                               "reason", "age_s", "again", "state", "executed"},
    "reconcile": {"market", "checked", "fills", "cancelled", "adopted", "sent", "errors"},
    "risk.loss_limit": {"equity", "start_equity", "limit_pct", "detail"},
    "decision.skipped": {"market", "candle", "reason"},
    "weights.kept": {"market", "version", "bars", "candidates", "objective_new",
                     "objective_current", "seconds", "reason"},
    "notify.sent": {"channel", "notification", "attempts"},
}


def _scenario(db, database_url):
    """Collect from the fake server, then a paper buy, fill, loss-limit sell,
    a cancelled order, a skipped decision, an optimizer run, a notification."""
    url = "https://hooks.example.test/log-scenario"
    settings = make_settings(database_url, NOTIFY_WEBHOOK_URL=url, ORDER_TIMEOUT_SECONDS="60",
                             OPTIMIZE_CANDIDATES="5")
    fake_clock = ManualClock(datetime(2026, 4, 1, 5, 0, 30, tzinfo=UTC))
    with FakeUpbit(markets=("KRW-ETH",), clock=fake_clock, history_minutes=300) as server:
        client = UpbitClient(server.url, sleep=lambda s: None)
        collect_market(db, client, "KRW-ETH", max_candles=250, now=fake_clock)
        client.close()
    clk = FakeClock(T0 + timedelta(minutes=200, seconds=1))
    exchange = PaperExchange(db, start_krw=settings.paper_start_krw, fee_rate=settings.fee_rate,
                             min_order_krw=settings.min_order_krw, now=clk)
    with responses.RequestsMock() as mock:
        mock.post(url, body="ok")
        ctx = TradeContext(settings, db, exchange, now=clk, notify=notifier(settings))
        closes = RISING + [RISING[-1] + 300]
        store_closes(db, M, closes[:200], spread="1000")
        trade_market(ctx, M)
        store_closes(db, M, closes, spread="1000")
        clk.advance(minutes=1)
        trade_market(ctx, M)  # fill
        falling = closes + [closes[-1] - 300 * (i + 1) for i in range(199)]
        store_closes(db, M, falling, spread="1000")
        clk.current = T0 + timedelta(minutes=len(falling), seconds=1)
        trade_market(ctx, M)  # sell order, loss limit
        clk.advance(seconds=90)
        reconcile(ctx)  # no candle after it yet: open too long, cancelled
        clk.advance(minutes=5)
        trade_market(ctx, M)  # stale data: skipped
        optimize_market(settings, db, M, now=clk, seed=1, days=1)
        assert flush(10)


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_each_event_of_a_trading_session_carries_its_context(db, database_url, fmt):
    with captured_logs(fmt, level="INFO", role="trader") as out:
        _scenario(db, database_url)
    text = out.getvalue()
    seen: dict[str, list[set[str]]] = {}
    for line in text.splitlines():
        if fmt == "json":
            data = json.loads(line)  # every line is one JSON object
            assert data["worker"] == "trader" and data["time"].endswith("Z")
            seen.setdefault(data["event"], []).append(set(data))
        else:
            match = LINE.match(line)
            assert match, line
            seen.setdefault(match.group(4), []).append(set(_fields(line)))
    for name, fields in EXPECTED.items():
        assert name in seen, f"{name} not logged"
        assert any(fields <= got for got in seen[name]), (name, seen[name])


# --- the vocabulary ------------------------------------------------------------------------


def emitted_events() -> set[str]:
    """Every event name the code can log: ``event(logger, "name", ...)`` (both
    branches of a conditional name) and ``extra={"event": "name"}``."""
    names: set[str] = set()
    for path in (ROOT / "bot").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "event"
                    and len(node.args) >= 2):
                arg = node.args[1]
                options = [arg.body, arg.orelse] if isinstance(arg, ast.IfExp) else [arg]
                names.update(o.value for o in options if isinstance(o, ast.Constant))
            elif isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if (isinstance(key, ast.Constant) and key.value == "event"
                            and isinstance(value, ast.Constant)):
                        names.add(value.value)
    # f"order.{how}" in bot/trading/lifecycle.py: how is "placed" or "found"
    return names | {"order.placed", "order.found"}


def test_readme_documents_every_event_with_an_example_line():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ops = readme.split("\n## Operations", 1)[1]
    # the events table: from its header to the first line that is not a row
    rows = ops.split("\n| event | level | logged by | what happened |\n", 1)[1]
    rows = rows.split("\n\n", 1)[0]
    table = set(re.findall(r"^\| `([a-z_.]+)` \|", rows, flags=re.M))
    examples = set()
    for line in ops.splitlines():
        match = LINE.match(line)
        if match:
            examples.add(match.group(4))
    events = emitted_events()
    assert events - table == set(), "events missing from the README's event table"
    assert events - examples == set(), "events without an example line in the README"
    assert table - events == set(), "README documents events the code no longer logs"


# --- redaction --------------------------------------------------------------------------


ACCESS, SECRET = "live-access-key-for-logs", "live-secret-for-logs-" * 3
TOKEN = "987654:TelegramTokenForLogTests"


def test_secrets_are_redacted_from_dumps_exceptions_and_headers():
    settings = make_settings(TRADING_MODE="live", UPBIT_ACCESS_KEY=ACCESS, UPBIT_SECRET_KEY=SECRET,
                             TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_CHAT_ID="42",
                             NOTIFY_WEBHOOK_URL="https://hooks.example.test/T1/B2/hook-secret-x",
                             DATABASE_URL="postgresql://bot:db-password@db:5432/bot")
    register_secret('quote"and\\backslash-secret')
    for fmt in ("text", "json"):
        with captured_logs(fmt) as out:
            event(log, "settings.dump", settings=vars(settings))
            log.info("settings %r", vars(settings))
            event(log, "request", headers={"Authorization": "Bearer eyJhbGciOiJIUzUxMiJ9."
                                           "eyJhY2Nlc3Nfa2V5IjoiYWsifQ.c2lnbmF0dXJl"})
            event(log, "odd", value='quote"and\\backslash-secret')
            try:
                raise RuntimeError(f"POST https://api.telegram.org/bot{TOKEN}/sendMessage failed"
                                   f" with key {ACCESS}")
            except RuntimeError as exc:
                event(log, "notify.failed", level=logging.WARNING, exc_info=True,
                      detail=str(exc))
        text = out.getvalue()
        for secret in (ACCESS, SECRET, TOKEN, "hook-secret-x", "db-password", "eyJhbGciOi",
                       "quote", "backslash-secret"):
            assert secret not in text, (fmt, secret)
        assert "***" in text


def test_redact_covers_url_passwords_and_bearer_tokens():
    assert redact("redis://:pw@host:6379/0") == "redis://:***@host:6379/0"
    assert redact("Authorization: Bearer abc.def-ghi") == "Authorization: Bearer ***"


@responses.activate
def test_a_live_trade_logs_no_secret(db, database_url):
    """The captured output of a whole live trade against the local fake server
    (collect, a signed buy, a lost answer, a retry, the fill, a notification)."""
    start = datetime(2026, 4, 1, tzinfo=UTC)
    clock = ManualClock(start + timedelta(minutes=300, seconds=2))
    with FakeUpbit(clock=clock, access_key=ACCESS, secret_key=SECRET, krw=1_000_000,
                   history_minutes=600) as server:
        responses.add_passthru(server.url)
        responses.post(f"https://api.telegram.org/bot{TOKEN}/sendMessage", json={"ok": True})
        rising = [100_000 + 300 * i for i in range(300)]
        closes = rising + [rising[-1], rising[-1]]
        rows, prev = [], closes[0]
        for i, close in enumerate(closes):
            low = D(rising[-1] - 2000) if i == 301 else min(D(prev), D(close))
            rows.append((start + timedelta(minutes=i), D(prev), max(D(prev), D(close)), low,
                         D(close), D(1)))
            prev = close
        server.set_candles(M, rows)
        with captured_logs("text", level="DEBUG", role="trader") as text_out:
            settings = make_settings(database_url, TRADING_MODE="live", UPBIT_ACCESS_KEY=ACCESS,
                                     UPBIT_SECRET_KEY=SECRET, UPBIT_API_BASE=server.url,
                                     TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_CHAT_ID="42",
                                     LIVE_ALLOW_UNVALIDATED="true")
            event(log, "worker.started", **settings.public_summary())
            client = UpbitClient(server.url, ACCESS, SECRET, sleep=lambda s: None)
            collect_market(db, client, M, max_candles=400, now=clock)
            ctx = TradeContext(settings, db, client, now=clock, notify=notifier(settings))
            server.fail_next(1, status=500, path_prefix="/v1/order")  # a retried lookup
            out = trade_market(ctx, M)
            clock.set(start + timedelta(minutes=302, seconds=2))
            assert reconcile_market(ctx, M).fills >= 1
            bad = UpbitClient(server.url, ACCESS, "wrong-" + SECRET, sleep=lambda s: None)
            with pytest.raises(Exception) as info:
                bad.balances()
            event(log, "command.failed", level=logging.ERROR, exc_info=info.value,
                  detail=str(info.value))
            assert flush(10)
            client.close()
            bad.close()
        assert out.action == "buy"
    text = text_out.getvalue()
    assert " order.placed " in text and " order.filled " in text and " notify.sent " in text
    for secret in (ACCESS, SECRET, TOKEN, "eyJ"):
        assert secret not in text, secret
    assert len(responses.calls) >= 1


# --- repeated errors ------------------------------------------------------------------------


def test_identical_errors_are_collapsed_and_counted():
    now = [0.0]
    handler = logging.StreamHandler(stream := __import__("io").StringIO())
    handler.setFormatter(logs.TextFormatter())
    handler.addFilter(RepeatFilter(window=60, clock=lambda: now[0]))
    logger = logging.getLogger("bot.test.repeat")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        for _ in range(50):
            event(logger, "collector.failed", level=logging.ERROR, market=M, error="Timeout")
        event(logger, "collector.failed", level=logging.ERROR, market="KRW-ETH", error="Timeout")
        event(logger, "decision", market=M)  # INFO is never collapsed
        event(logger, "decision", market=M)
        now[0] = 61.0
        event(logger, "collector.failed", level=logging.ERROR, market=M, error="Timeout")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    lines = stream.getvalue().splitlines()
    assert len(lines) == 5
    assert "market=KRW-ETH" in lines[1] and "repeated=" not in lines[0]
    assert lines[-1].endswith("market=KRW-BTC error=Timeout repeated=49")
