"""Cancels are requests (docs/upbit.md): an order the daemon asks to cancel is
``cancelling``, still active and still reconciled, until the exchange reports
``cancel`` or ``done``; what fills meanwhile is recorded once, and
``order.cancelled`` comes only with the final ``cancel``. On the paper
exchange with a cancel delay, and on the live client against Upbit's answers."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import responses

from bot.errors import ExchangeTemporaryError
from bot.exchange.paper import PaperExchange
from bot.exchange.protocol import total_balance
from bot.storage import candles as candle_store
from bot.storage import orders as order_store
from bot.trading.lifecycle import TradeContext, reconcile_market
from bot.trading.trader import trade_market
from testkit.candles import T0, candle, store_closes
from testkit.clock import FakeClock
from testkit.settings import make_settings
from testkit.upbit_json import ACCESS, BASE, SECRET, make_client, order_json

D = Decimal
M = "KRW-BTC"
RISING = [100_000 + 300 * i for i in range(200)]  # every signal +1: a buy
AFTER = T0 + timedelta(minutes=200, seconds=1)  # just after the 200th candle closed
# 159,700 * 1.0015 -> tick 100 -> 160,000; 1,000,000 / (160,000 * 1.001)
BID, VOLUME = D("160000"), D("6.24375624")
DELAY = timedelta(seconds=30)
FILL_BAR = T0 + timedelta(minutes=200)  # the candle that decides the buy


def _events(caplog, name):
    return [r.fields for r in caplog.records if getattr(r, "event", None) == name]


def _paper_ctx(db, database_url, clock, delay=DELAY):
    settings = make_settings(database_url, ORDER_TIMEOUT_SECONDS="60")
    exchange = PaperExchange(db, start_krw=settings.paper_start_krw, fee_rate=settings.fee_rate,
                             min_order_krw=settings.min_order_krw, now=clock,
                             cancel_delay=delay)
    notes = []
    ctx = TradeContext(settings, db, exchange, now=clock,
                       notify=lambda name, **f: notes.append((name, f)))
    return ctx, notes


def _store_bar(db, ts, *, low, high, open_):
    candle_store.upsert_candles(db, [candle(M, ts, open_, open_=open_, low=low, high=high)],
                                "1m")


def _crossing(db, ts=FILL_BAR):
    """Opens above the bid, trades down through it: the bid fills at its limit."""
    _store_bar(db, ts, open_="160100", low="159900", high="160200")


def _not_crossing(db, ts=FILL_BAR):
    _store_bar(db, ts, open_="160300", low="160100", high="160400")


@pytest.fixture
def clock():
    return FakeClock(AFTER)


@pytest.fixture
def paper(db, database_url, clock):
    """A buy resting past ORDER_TIMEOUT_SECONDS (its candle was never collected),
    then cancel-requested: the exchange's answer is still ``wait``."""
    store_closes(db, M, RISING)
    ctx, notes = _paper_ctx(db, database_url, clock)
    out = trade_market(ctx, M)
    assert (out.action, out.order.price, out.order.volume) == ("buy", BID, VOLUME)
    clock.advance(seconds=62)
    result = reconcile_market(ctx, M)
    assert (result.cancel_requested, result.cancelled) == (1, 0)
    return ctx, notes, order_store.by_identifier(db, out.identifier)


def test_a_timed_out_order_is_cancelling_and_still_open(db, paper, clock, caplog):
    ctx, notes, row = paper
    assert row.state == "cancelling" and row.cancel_reason == "timeout"
    assert row.cancel_requested_at == clock()
    assert ctx.exchange.get_order(uuid=row.exchange_uuid).state == "wait"
    # still an open order of the market: no second order, and reconciled each pass
    assert [o.id for o in order_store.active(db, "paper", M)] == [row.id]
    with caplog.at_level(logging.DEBUG):
        clock.advance(seconds=10)
        result = reconcile_market(ctx, M)
    assert (result.checked, result.fills, result.cancel_requested, result.cancelled) == (
        1, 0, 0, 0)
    assert order_store.by_id(db, row.id).state == "cancelling"
    # nothing happened, so nothing is said: no state change, no cancel, no notification
    assert _events(caplog, "order.state") == _events(caplog, "order.cancelled") == []
    assert notes == []


def test_the_request_is_logged_once_with_the_exchanges_answer(db, database_url, clock, caplog):
    store_closes(db, M, RISING)
    ctx, _ = _paper_ctx(db, database_url, clock)
    trade_market(ctx, M)
    clock.advance(seconds=62)
    with caplog.at_level(logging.INFO):
        reconcile_market(ctx, M)
        clock.advance(seconds=5)
        reconcile_market(ctx, M)
    (requested,) = _events(caplog, "order.cancel_requested")
    assert requested["reason"] == "timeout" and requested["state"] == "wait"
    assert (requested["age_s"], requested["executed"], requested["again"]) == (62, 0, False)
    assert requested["volume"] == VOLUME and requested["price"] == BID


def test_a_fill_during_the_delay_is_recorded_and_the_order_ends_filled(db, paper, clock,
                                                                      caplog):
    ctx, notes, row = paper
    _crossing(db)  # the candle arrives while the cancel is pending
    clock.advance(seconds=10)
    with caplog.at_level(logging.INFO):
        result = reconcile_market(ctx, M)
    assert (result.fills, result.cancelled) == (1, 0)
    done = order_store.by_id(db, row.id)
    assert done.state == "done" and done.executed_volume == VOLUME
    assert [(f[1], f[2]) for f in order_store.fills_of(db, row.id)] == [(BID, VOLUME)]
    # filled in full while cancelling: it ends as filled, not cancelled
    assert [n for n, _ in notes] == ["order.filled"]
    assert _events(caplog, "order.cancelled") == []
    assert [(e["database"], e["exchange"]) for e in _events(caplog, "order.state")] == [
        ("cancelling", "done")]
    assert total_balance(ctx.exchange.balances(), "BTC") == VOLUME
    # the order has ended: nothing more to reconcile, no fill twice
    assert reconcile_market(ctx, M).checked == 0
    assert len(order_store.fills_of(db, row.id)) == 1


@pytest.mark.parametrize("bar", ["none", "not_crossing"])
def test_a_cancel_without_a_fill_fires_exactly_one_cancelled(db, paper, clock, caplog, bar):
    ctx, notes, row = paper
    if bar == "not_crossing":
        _not_crossing(db)  # the candle came and did not reach the bid
    else:
        clock.advance(seconds=20)  # no candle: before the delay is over nothing changes
        assert reconcile_market(ctx, M).cancelled == 0
        assert order_store.by_id(db, row.id).state == "cancelling"
    clock.advance(seconds=20)
    with caplog.at_level(logging.INFO):
        assert reconcile_market(ctx, M).cancelled == 1
        _crossing(db, FILL_BAR + timedelta(minutes=2))  # after the cancel: meets nothing
        clock.advance(minutes=2)
        assert reconcile_market(ctx, M).cancelled == 0
    ended = order_store.by_id(db, row.id)
    assert ended.state == "cancel" and ended.executed_volume == 0
    assert order_store.fills_of(db, row.id) == []
    (cancelled,) = _events(caplog, "order.cancelled")
    assert (cancelled["reason"], cancelled["executed"], cancelled["remaining"]) == (
        "timeout", 0, VOLUME)
    assert notes == [("order.cancelled", {"market": M, "side": "bid", "price": BID,
                                          "volume": VOLUME, "reason": "timeout",
                                          "executed": D(0), "remaining": VOLUME})]
    assert ctx.exchange.get_order(uuid=row.exchange_uuid).state == "cancel"
    balances = {b.currency: (b.balance, b.locked) for b in ctx.exchange.balances()}
    assert balances == {"KRW": (D(1_000_000), D(0))}


def test_a_restart_in_the_middle_still_finishes_the_cancel(db, database_url, paper, clock):
    _, _, row = paper
    # a new process: a new exchange and context on the same database
    ctx, notes = _paper_ctx(db, database_url, clock)
    _crossing(db)
    clock.advance(seconds=10)
    assert reconcile_market(ctx, M).fills == 1
    assert order_store.by_id(db, row.id).state == "done"
    assert [n for n, _ in notes] == ["order.filled"]
    assert reconcile_market(ctx, M).fills == 0
    assert len(order_store.fills_of(db, row.id)) == 1


def test_a_death_before_the_request_is_sent_is_asked_again(db, database_url, clock, caplog):
    store_closes(db, M, RISING)
    ctx, _ = _paper_ctx(db, database_url, clock)
    identifier = trade_market(ctx, M).identifier

    def die(**kwargs):
        raise SystemExit("killed before the DELETE")

    ctx.exchange.cancel_order = die
    clock.advance(seconds=62)
    with pytest.raises(SystemExit):
        reconcile_market(ctx, M)
    row = order_store.by_identifier(db, identifier)
    assert row.state == "cancelling"  # written before the request
    ctx, notes = _paper_ctx(db, database_url, clock)  # restarted
    clock.advance(seconds=30)
    assert reconcile_market(ctx, M).cancel_requested == 0  # not yet: it may be pending
    clock.advance(seconds=31)
    with caplog.at_level(logging.INFO):
        assert reconcile_market(ctx, M).cancel_requested == 1
        clock.advance(seconds=31)
        assert reconcile_market(ctx, M).cancelled == 1
    assert [e["again"] for e in _events(caplog, "order.cancel_requested")] == [True]
    assert order_store.by_id(db, row.id).state == "cancel"
    assert [n for n, _ in notes] == ["order.cancelled"]


def test_a_temporary_error_on_the_request_keeps_it_cancelling(db, database_url, clock):
    store_closes(db, M, RISING)
    ctx, _ = _paper_ctx(db, database_url, clock)
    identifier = trade_market(ctx, M).identifier
    real = ctx.exchange.cancel_order

    def lost(**kwargs):
        real(**kwargs)  # it lands, the answer is lost
        raise ExchangeTemporaryError("no answer", name="no_answer")

    ctx.exchange.cancel_order = lost
    clock.advance(seconds=62)
    assert reconcile_market(ctx, M).errors == 1
    assert order_store.by_identifier(db, identifier).state == "cancelling"
    ctx.exchange.cancel_order = real
    clock.advance(seconds=31)  # the delay is over: the exchange ends it
    result = reconcile_market(ctx, M)
    assert (result.cancel_requested, result.cancelled, result.errors) == (0, 1, 0)


def test_without_a_delay_the_cancel_ends_at_once(db, database_url, clock, caplog):
    store_closes(db, M, RISING)
    ctx, notes = _paper_ctx(db, database_url, clock, delay=timedelta(0))
    identifier = trade_market(ctx, M).identifier
    clock.advance(seconds=62)
    with caplog.at_level(logging.INFO):
        result = reconcile_market(ctx, M)
    assert (result.cancel_requested, result.cancelled) == (1, 1)
    assert order_store.by_identifier(db, identifier).state == "cancel"
    assert [e["state"] for e in _events(caplog, "order.cancel_requested")] == ["cancel"]
    assert len(_events(caplog, "order.cancelled")) == 1
    assert [n for n, _ in notes] == ["order.cancelled"]


# --- live: Upbit's answers (responses) ------------------------------------------------

UUID = "9ca023a5-851b-4fec-9f0a-48cd83c2eaae"
ORDER = f"{BASE}/v1/order"
SENT = datetime(2025, 1, 1, 0, 0, tzinfo=UTC)
LIVE_PRICE, LIVE_VOLUME = D("143000000"), D("0.01")


def _trade(n, volume):
    funds = LIVE_PRICE * D(volume)
    return {"market": M, "uuid": f"trade-{n}", "price": "143000000", "volume": volume,
            "funds": str(funds), "trend": "down", "side": "bid",
            "created_at": f"2025-01-01T09:0{n}:00+09:00"}


def _live_order(state, trades=(), paid_fee="0"):
    executed = sum((D(t["volume"]) for t in trades), D(0))
    return order_json(UUID, state=state, volume="0.01", remaining_volume=str(LIVE_VOLUME -
                      executed), executed_volume=str(executed), paid_fee=paid_fee,
                      trades_count=len(trades), trades=list(trades))


@pytest.fixture
def live(db, database_url):
    clock = FakeClock(SENT + timedelta(seconds=90))
    settings = make_settings(database_url, TRADING_MODE="live", UPBIT_ACCESS_KEY=ACCESS,
                             UPBIT_SECRET_KEY=SECRET, UPBIT_API_BASE=BASE,
                             ORDER_TIMEOUT_SECONDS="60")
    client = make_client(clock)
    notes = []
    ctx = TradeContext(settings, db, client, now=clock,
                       notify=lambda name, **f: notes.append((name, f)))
    with db.cursor() as cur:
        order_id = order_store.insert_new(cur, identifier="bot-KRW-BTC-1", mode="live",
                                          market=M, side="bid", price=LIVE_PRICE,
                                          volume=LIVE_VOLUME, decision_id=None,
                                          created_at=SENT)
        cur.execute("UPDATE orders SET exchange_uuid = %s, state = 'wait', sent_at = %s"
                    " WHERE id = %s", (UUID, SENT, order_id))
    with responses.RequestsMock() as mock:
        yield ctx, notes, mock, clock, order_id
    client.close()


def _answer(mock, method, body, status=200):
    mock.upsert(method, ORDER, json=body, status=status)


def _deletes(mock):
    return [c for c in mock.calls if c.request.method == "DELETE"]


def test_live_partial_fill_while_cancelling_then_cancel(db, live, caplog):
    ctx, notes, mock, clock, order_id = live
    _answer(mock, responses.GET, _live_order("wait"))
    _answer(mock, responses.DELETE, _live_order("wait"))  # Upbit: a request, still wait
    assert reconcile_market(ctx, M, adopt_unknown=False).cancel_requested == 1
    assert order_store.by_id(db, order_id).state == "cancelling"
    # a fill lands before the cancel takes
    _answer(mock, responses.GET, _live_order("wait", [_trade(1, "0.004")], paid_fee="286"))
    clock.advance(seconds=2)
    with caplog.at_level(logging.INFO):
        assert reconcile_market(ctx, M, adopt_unknown=False).fills == 1
        row = order_store.by_id(db, order_id)
        assert row.state == "cancelling" and row.executed_volume == D("0.004")
        _answer(mock, responses.GET,
                _live_order("cancel", [_trade(1, "0.004")], paid_fee="286"))
        clock.advance(seconds=2)
        result = reconcile_market(ctx, M, adopt_unknown=False)
    assert (result.fills, result.cancelled) == (0, 1)
    assert order_store.by_id(db, order_id).state == "cancel"
    assert [(f[0], f[2], f[4]) for f in order_store.fills_of(db, order_id)] == [
        ("trade-1", D("0.004"), D("286"))]
    (cancelled,) = _events(caplog, "order.cancelled")
    assert (cancelled["executed"], cancelled["remaining"]) == (D("0.004"), D("0.006"))
    assert [n for n, _ in notes] == ["order.filled", "order.cancelled"]
    assert (notes[1][1]["executed"], notes[1][1]["remaining"]) == (D("0.004"), D("0.006"))
    assert len(_deletes(mock)) == 1


def test_live_cancel_that_ends_done_is_a_fill_not_a_cancel(db, live, caplog):
    ctx, notes, mock, clock, order_id = live
    _answer(mock, responses.GET, _live_order("wait"))
    _answer(mock, responses.DELETE, _live_order("wait"))
    reconcile_market(ctx, M, adopt_unknown=False)
    trades = [_trade(1, "0.004"), _trade(2, "0.006")]
    _answer(mock, responses.GET, _live_order("done", trades, paid_fee="715"))
    clock.advance(seconds=2)
    with caplog.at_level(logging.INFO):
        result = reconcile_market(ctx, M, adopt_unknown=False)
    assert (result.fills, result.cancelled) == (2, 0)
    row = order_store.by_id(db, order_id)
    assert row.state == "done" and row.executed_volume == LIVE_VOLUME
    assert sum(f[4] for f in order_store.fills_of(db, order_id)) == D("715")
    assert _events(caplog, "order.cancelled") == []
    assert [n for n, _ in notes] == ["order.filled", "order.filled"]


def test_live_cancel_answered_final_is_looked_up_for_its_trades(db, live):
    """A DELETE answer need not list the trades: a ``cancel`` answer with an
    executed volume must not end the order before its fills are recorded."""
    ctx, notes, mock, clock, order_id = live
    _answer(mock, responses.GET, _live_order("wait"))
    cancelled = _live_order("cancel", [_trade(1, "0.004")], paid_fee="286")
    _answer(mock, responses.DELETE, {**cancelled, "trades": []})
    mock.add(responses.GET, ORDER, json=cancelled)  # the look after the answer
    result = reconcile_market(ctx, M, adopt_unknown=False)
    assert (result.cancel_requested, result.fills, result.cancelled) == (1, 1, 1)
    assert order_store.by_id(db, order_id).state == "cancel"
    assert [f[0] for f in order_store.fills_of(db, order_id)] == ["trade-1"]
    assert [n for n, _ in notes] == ["order.filled", "order.cancelled"]


def test_live_cancel_refused_because_the_order_just_filled(db, live):
    ctx, notes, mock, clock, order_id = live
    mock.add(responses.GET, ORDER, json=_live_order("wait"))
    _answer(mock, responses.DELETE,
            {"error": {"name": "order_not_cancellable", "message": "order is done"}}, 400)
    mock.add(responses.GET, ORDER, json=_live_order("done", [_trade(1, "0.01")],
                                                    paid_fee="715"))
    result = reconcile_market(ctx, M, adopt_unknown=False)
    assert (result.errors, result.fills, result.cancelled) == (0, 1, 0)
    row = order_store.by_id(db, order_id)
    assert row.state == "done" and row.cancel_reason is None
    assert [n for n, _ in notes] == ["order.filled"]


# --- live: the local fake Upbit server with a cancel delay --------------------------------

FAKE_START = datetime(2026, 4, 1, 0, 0, tzinfo=UTC)
FAKE_KEYS = {"access_key": "cancel-access-key", "secret_key": "cancel-secret-" * 5}


def _fake_rows():
    """RISING to minute 299 (a buy at 190,000), then above the bid but for a dip
    in minute 301."""
    closes = [100_000 + 300 * i for i in range(300)] + [191_000] * 3
    rows, prev = [], closes[0]
    for i, close in enumerate(closes):
        o, c = D(prev), D(close)
        low = D(187_700) if i == 301 else min(o, c)
        rows.append((FAKE_START + timedelta(minutes=i), o, max(o, c), low, c, D(1)))
        prev = close
    return rows


@pytest.mark.parametrize(("parts", "ends"), [(2, "cancel"), (1, "done")])
def test_fake_upbit_fills_during_the_cancel_delay(db, database_url, caplog, parts, ends):
    from bot.data.collector import collect_market
    from bot.exchange.upbit import UpbitClient
    from testkit.fakeupbit import FakeUpbit, ManualClock

    def at(minute, second):
        clock.set(FAKE_START + timedelta(minutes=minute, seconds=second))

    clock = ManualClock(FAKE_START + timedelta(minutes=300, seconds=2))
    with FakeUpbit(clock=clock, krw=1_000_000, history_minutes=600, partial_fills=parts,
                   cancel_delay=55, **FAKE_KEYS) as server:
        server.set_candles(M, _fake_rows())
        settings = make_settings(database_url, TRADING_MODE="live",
                                 LIVE_ALLOW_UNVALIDATED="true", UPBIT_API_BASE=server.url,
                                 UPBIT_ACCESS_KEY=FAKE_KEYS["access_key"],
                                 UPBIT_SECRET_KEY=FAKE_KEYS["secret_key"],
                                 ORDER_TIMEOUT_SECONDS="60")
        client = UpbitClient(server.url, FAKE_KEYS["access_key"], FAKE_KEYS["secret_key"],
                             sleep=lambda s: None)
        collect_market(db, client, M, max_candles=400, now=clock)
        notes = []
        ctx = TradeContext(settings, db, client, now=clock,
                           notify=lambda name, **f: notes.append((name, f)))
        out = trade_market(ctx, M)
        assert (out.action, out.order.price) == ("buy", D("190000"))
        row = order_store.by_identifier(db, out.identifier)
        with caplog.at_level(logging.INFO):
            at(301, 10)  # open 68 s: asked to cancel; it takes effect at 302:05
            assert reconcile_market(ctx, M).cancel_requested == 1
            assert server.order(out.identifier).state == "wait"
            at(301, 40)  # minute 301 has not closed yet
            assert reconcile_market(ctx, M).fills == 0
            assert order_store.by_id(db, row.id).state == "cancelling"
            at(302, 2)  # minute 301 dipped through the bid before the cancel took
            assert reconcile_market(ctx, M).fills == 1
            assert order_store.by_id(db, row.id).state == ("cancelling" if parts > 1 else "done")
            at(302, 10)
            last = reconcile_market(ctx, M)
        client.close()
        assert server.errors == []
        executed = out.order.volume if parts == 1 else server.order(out.identifier).executed_volume
        assert 0 < executed <= out.order.volume
    ended = order_store.by_id(db, row.id)
    assert (ended.state, ended.executed_volume) == (ends, executed)
    assert sum(f[2] for f in order_store.fills_of(db, row.id)) == executed
    cancelled = _events(caplog, "order.cancelled")
    if ends == "cancel":
        assert last.cancelled == 1
        assert [(c["executed"], c["remaining"]) for c in cancelled] == [
            (executed, out.order.volume - executed)]
        assert [n for n, _ in notes] == ["order.filled", "order.cancelled"]
    else:
        assert cancelled == [] and [n for n, _ in notes] == ["order.filled"]
    assert len(_events(caplog, "order.cancel_requested")) == 1
