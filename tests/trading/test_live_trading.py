"""Live mode against a local server speaking Upbit's API: the same trader code
path as paper, signed orders, lost answers, crashes, partial fills, timeouts,
orders the database never saw."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from bot.data.collector import collect_market
from bot.errors import OrderSubmitUnknown, TemporaryError
from bot.exchange.upbit import UpbitClient
from bot.storage import decisions as decision_store
from bot.storage import orders as order_store
from bot.storage import positions
from bot.storage import weights as weight_store
from bot.trading.lifecycle import TradeContext, reconcile_market
from bot.trading.trader import order_identifier, trade_market
from testkit.fakeupbit import FakeUpbit, ManualClock
from testkit.settings import make_settings

D = Decimal
M = "KRW-BTC"
START = datetime(2026, 4, 1, 0, 0, tzinfo=UTC)
DECIDE_AT = START + timedelta(minutes=300, seconds=2)  # candle START+299 just closed
DECISION_TS = START + timedelta(minutes=299)
ACCESS, SECRET = "live-access-key", "live-secret-" * 6


def _rows(closes, start=START, dips=None):
    """Candles for the server: open = previous close; ``dips`` maps an index
    to a low below the candle."""
    rows, prev = [], closes[0]
    for i, close in enumerate(closes):
        o, c = D(prev), D(close)
        low = min(o, c) if not dips or i not in dips else D(dips[i])
        rows.append((start + timedelta(minutes=i), o, max(o, c), low, c, D(1)))
        prev = close
    return rows


RISING = [100_000 + 300 * i for i in range(300)]  # every signal +1


@pytest.fixture
def clock():
    return ManualClock(DECIDE_AT)


@pytest.fixture
def server(clock):
    with FakeUpbit(clock=clock, access_key=ACCESS, secret_key=SECRET, krw=1_000_000,
                   history_minutes=600) as fake:
        fake.set_candles(M, _rows(RISING + [RISING[-1], RISING[-1]],
                                  dips={301: RISING[-1] - 2000}))
        yield fake
        assert fake.errors == []


@pytest.fixture
def ctx(db, database_url, server, clock):
    settings = make_settings(database_url, TRADING_MODE="live", LIVE_ALLOW_UNVALIDATED="true",
                             UPBIT_ACCESS_KEY=ACCESS, UPBIT_SECRET_KEY=SECRET,
                             UPBIT_API_BASE=server.url)
    client = UpbitClient(server.url, ACCESS, SECRET, sleep=lambda s: None, max_retries=2)
    collect_market(db, client, M, max_candles=400, now=clock)
    yield TradeContext(settings, db, client, now=clock)
    client.close()


def _identifier(side="bid"):
    return order_identifier("live", M, DECISION_TS, side)


def test_live_buy_is_signed_filled_and_reconciled(db, ctx, server, clock):
    out = trade_market(ctx, M)
    assert out.action == "buy" and out.order_state == "wait"
    # 189,700 * 1.0015 = 189,984.55 -> tick 100 -> 190,000; 1,000,000 / (190,000 * 1.001)
    assert (out.order.price, out.order.volume) == (D("190000"), D("5.25789999"))
    posts = [dict(r.params) for r in server.private_requests if r.method == "POST"]
    assert len(posts) == 1  # the server verified its JWT and query_hash
    assert posts[0] == {"market": M, "side": "bid", "volume": "5.25789999", "price": "190000",
                        "ord_type": "limit", "identifier": _identifier()}
    # the order rests through START+300 and fills on START+301's dip
    clock.set(START + timedelta(minutes=302, seconds=2))
    result = reconcile_market(ctx, M)
    assert result.fills == 1
    row = order_store.by_identifier(db, _identifier())
    assert row.state == "done" and row.executed_volume == out.order.volume
    fills = order_store.fills_of(db, row.id)
    server_order = server.order(_identifier())
    assert [f[0] for f in fills] == [t.uuid for t in server_order.trades]
    assert sum(f[4] for f in fills) == server_order.paid_fee
    # the server's balances equal what the database's fills say
    balances = server.balances()
    spent = sum(f[3] + f[4] for f in fills)
    assert balances["KRW"].balance + balances["KRW"].locked == D(1_000_000) - spent
    assert balances["BTC"].balance == sum(f[2] for f in fills)
    # each fill's slippage is its price against the decision's close (189,700)
    stored = positions.fills_by_bar(db, "live", M, 1)
    assert [(f.price, f.slippage, f.decision_ts) for f in stored] == [
        (t.price, t.price / D(189_700) - 1, DECISION_TS) for t in server_order.trades]
    assert stored[0].slippage > 0


def test_lost_post_answer_then_retry_places_one_order(db, ctx, server, clock):
    server.drop_after_commit_next()  # the order lands, the answer is lost
    real_place = ctx.exchange.place_limit_order

    def place_then_break_lookups(*args, **kwargs):
        try:
            return real_place(*args, **kwargs)
        except OrderSubmitUnknown:
            server.fail_next(10, status=500, path_prefix="/v1/order")  # lookups fail too
            raise

    ctx.exchange.place_limit_order = place_then_break_lookups
    with pytest.raises(TemporaryError):
        trade_market(ctx, M)
    assert len(server.orders) == 1
    assert order_store.by_identifier(db, _identifier()).state == "new"
    server.clear_faults()
    # the task is retried: the decision exists, reconcile finds the order by identifier
    again = trade_market(ctx, M)
    assert again.status == "already_decided"
    row = order_store.by_identifier(db, _identifier())
    assert row.state == "wait" and row.exchange_uuid == server.order(_identifier()).uuid
    assert len([o for o in server.orders if o.identifier == _identifier()]) == 1
    assert len(server.orders) == 1


def test_crash_after_post_before_uuid_is_healed_by_reconcile(db, ctx, server, clock):
    import bot.trading.lifecycle as lifecycle
    real = lifecycle._take

    def crash(*args, **kwargs):
        raise SystemExit("killed after the POST")

    lifecycle._take = crash
    try:
        with pytest.raises(SystemExit):
            trade_market(ctx, M)
    finally:
        lifecycle._take = real
    assert len(server.orders) == 1
    assert order_store.by_identifier(db, _identifier()).exchange_uuid is None
    result = reconcile_market(ctx, M)
    assert result.sent == 0 and result.errors == 0
    row = order_store.by_identifier(db, _identifier())
    assert row.exchange_uuid == server.orders[0].uuid and row.state == "wait"
    assert len(server.orders) == 1


def test_partial_fills_over_several_passes_are_recorded_once_each(db, database_url, clock):
    closes = RISING + [RISING[-1]] * 6
    dips = {i: RISING[-1] - 2000 for i in range(301, 306)}
    with FakeUpbit(clock=clock, access_key=ACCESS, secret_key=SECRET, krw=1_000_000,
                   history_minutes=600, partial_fills=3) as server:
        server.set_candles(M, _rows(closes, dips=dips))
        settings = make_settings(database_url, TRADING_MODE="live",
                                 LIVE_ALLOW_UNVALIDATED="true", UPBIT_ACCESS_KEY=ACCESS,
                                 UPBIT_SECRET_KEY=SECRET, UPBIT_API_BASE=server.url,
                                 ORDER_TIMEOUT_SECONDS="3600")
        client = UpbitClient(server.url, ACCESS, SECRET, sleep=lambda s: None)
        collect_market(db, client, M, max_candles=400, now=clock)
        ctx = TradeContext(settings, db, client, now=clock)
        out = trade_market(ctx, M)
        row = order_store.by_identifier(db, _identifier())
        seen = []
        for minute in (302, 303, 303, 304, 305):
            clock.set(START + timedelta(minutes=minute, seconds=2))
            reconcile_market(ctx, M)
            seen.append(len(order_store.fills_of(db, row.id)))
        assert seen == [1, 2, 2, 3, 3]
        row = order_store.by_id(db, row.id)
        assert row.state == "done" and row.executed_volume == out.order.volume
        fills = order_store.fills_of(db, row.id)
        assert sum(f[2] for f in fills) == out.order.volume
        assert sum(f[4] for f in fills) == server.order(_identifier()).paid_fee
        assert server.errors == []


def test_open_order_past_the_timeout_is_cancelled(db, database_url, server, clock):
    settings = make_settings(database_url, TRADING_MODE="live", LIVE_ALLOW_UNVALIDATED="true",
                             UPBIT_ACCESS_KEY=ACCESS, UPBIT_SECRET_KEY=SECRET,
                             UPBIT_API_BASE=server.url,
                             ORDER_TIMEOUT_SECONDS="60")
    client = UpbitClient(server.url, ACCESS, SECRET, sleep=lambda s: None)
    collect_market(db, client, M, max_candles=400, now=clock)
    notes = []
    ctx = TradeContext(settings, db, client, now=clock, notify=lambda n, **f: notes.append(n))
    server.set_candles(M, _rows(RISING + [RISING[-1]] * 3))  # no dip: never fills
    trade_market(ctx, M)
    clock.advance(30)
    assert reconcile_market(ctx, M).cancelled == 0
    clock.advance(40)
    assert reconcile_market(ctx, M).cancelled == 1
    row = order_store.by_identifier(db, _identifier())
    assert row.state == "cancel" and row.cancel_reason == "timeout"
    assert server.order(_identifier()).state == "cancel"
    assert server.balances()["KRW"].locked == 0
    assert notes == ["order.cancelled"]


def test_order_unknown_to_the_database_is_adopted(db, ctx, server, caplog):
    placed = ctx.exchange.place_limit_order(M, "bid", D("80000"), D("0.1"), "placed-by-hand")
    with caplog.at_level(logging.WARNING):
        result = reconcile_market(ctx, M)
    assert result.adopted == 1
    row = order_store.by_identifier(db, "placed-by-hand")
    assert row.exchange_uuid == placed.uuid and row.state == "wait" and row.mode == "live"
    assert any(getattr(r, "event", "") == "order.adopted" for r in caplog.records)
    assert reconcile_market(ctx, M).adopted == 0


def test_an_error_on_one_order_does_not_stop_the_others(db, ctx, server, clock):
    good = ctx.exchange.place_limit_order(M, "bid", D("80000"), D("0.1"), "good-one")
    with db.cursor() as cur:
        bad_id = order_store.insert_new(cur, identifier="bad-one", mode="live", market=M,
                                        side="bid", price=D("80000"), volume=D("0.1"),
                                        decision_id=None, created_at=clock())
        good_id = order_store.insert_new(cur, identifier="good-one", mode="live", market=M,
                                         side="bid", price=D("80000"), volume=D("0.1"),
                                         decision_id=None, created_at=clock())
        cur.execute("UPDATE orders SET exchange_uuid = 'no-such-uuid', state = 'wait'"
                    " WHERE id = %s", (bad_id,))
    result = reconcile_market(ctx, M, adopt_unknown=False)
    assert result.errors == 1 and result.checked == 2
    assert order_store.by_id(db, good_id).exchange_uuid == good.uuid


# --- the live gate ----------------------------------------------------------------


def _live_ctx(db, database_url, server, clock, **overrides):
    settings = make_settings(database_url, TRADING_MODE="live", UPBIT_ACCESS_KEY=ACCESS,
                             UPBIT_SECRET_KEY=SECRET, UPBIT_API_BASE=server.url, **overrides)
    client = UpbitClient(server.url, ACCESS, SECRET, sleep=lambda s: None, max_retries=2)
    collect_market(db, client, M, max_candles=400, now=clock)
    return TradeContext(settings, db, client, now=clock), client


def _posts(server):
    return [r for r in server.private_requests if r.method == "POST"]


def test_live_gate_blocks_buys_without_an_adopted_parameter_set(db, database_url, server,
                                                                clock):
    ctx, client = _live_ctx(db, database_url, server, clock)  # LIVE_ALLOW_UNVALIDATED=false
    try:
        out = trade_market(ctx, M)
    finally:
        client.close()
    assert (out.action, out.trigger, out.order) == ("hold", "live_gate", None)
    assert "live_gate: no parameter set adopted for this market" in out.reason
    row = decision_store.get(db, M, DECISION_TS)
    assert (row.action, row.trigger) == ("hold", "live_gate")
    assert _posts(server) == [] and order_store.count(db) == 0


def test_live_gate_opens_once_a_parameter_set_is_adopted(db, database_url, server, clock):
    weight_store.adopt(db, M, {"trend": 1.0})
    ctx, client = _live_ctx(db, database_url, server, clock)
    try:
        out = trade_market(ctx, M)
    finally:
        client.close()
    assert (out.action, out.trigger, out.order_state) == ("buy", "signal", "wait")
    assert len(_posts(server)) == 1


def test_live_allow_unvalidated_lifts_the_gate(db, database_url, server, clock):
    ctx, client = _live_ctx(db, database_url, server, clock, LIVE_ALLOW_UNVALIDATED="true")
    try:
        out = trade_market(ctx, M)
    finally:
        client.close()
    assert (out.action, out.trigger) == ("buy", "signal") and len(_posts(server)) == 1
