"""The trader on the paper exchange (real PostgreSQL): every branch of buy and
sell, the risk controls, and one decision per candle."""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal

import pytest

from bot.exchange.paper import PaperExchange
from bot.storage import decisions as decision_store
from bot.storage import orders as order_store
from bot.storage import weights as weight_store
from bot.trading.lifecycle import TradeContext, reconcile_market
from bot.trading.trader import OrderPlan, order_identifier, plan_buy, plan_sell, trade_market
from testkit.candles import T0, store_closes
from testkit.clock import FakeClock
from testkit.settings import make_settings

D = Decimal
M = "KRW-BTC"
RISING = [100_000 + 300 * i for i in range(200)]  # every signal +1: score 1
FALLING = list(reversed(RISING))
AFTER = T0 + timedelta(minutes=200, seconds=1)  # just after the 200th candle closed


def _plan_kw(**kw):
    base = {"aggressiveness": D("0.0015"), "fee_rate": D("0.0005"), "fee_buffer": D("0.0005"),
            "min_order_krw": D("5000")}
    return {**base, **kw}


# --- sizing: pure --------------------------------------------------------------


def test_buy_price_rounds_up_across_a_band_edge_and_volume_floors_to_8_decimals():
    plan = plan_buy(D("1000000"), D("99900"), **_plan_kw())
    # 99,900 * 1.0015 = 100,049.85 -> band >= 100,000 has tick 100 -> 100,100
    assert plan.price == D("100100")
    # 1,000,000 / (100,100 * 1.001) = 9.980029960...: floored to 8 decimals
    assert plan.volume == D("9.98002996")
    assert plan.value <= D("1000000") / D("1.001")


def test_sell_price_rounds_down_across_a_band_edge():
    plan = plan_sell(D("0.5"), D("100100"), aggressiveness=D("0.0015"), min_order_krw=D("5000"))
    # 100,100 * 0.9985 = 99,949.85 -> band 50,000-100,000 has tick 50 -> 99,900
    assert plan == OrderPlan("ask", D("99900"), D("0.5"))


def test_exactly_at_the_minimum_is_allowed_and_a_won_less_is_not():
    kw = _plan_kw(aggressiveness=D(0))
    at_min = plan_buy(D("5005"), D("1000"), **kw)
    assert at_min == OrderPlan("bid", D("1000"), D("5"))
    assert at_min.value == D("5000")
    below = plan_buy(D("5004.99"), D("1000"), **kw)
    assert isinstance(below, str) and "below the minimum order" in below
    assert plan_sell(D("5"), D("1000"), aggressiveness=D(0), min_order_krw=D("5000")).value == 5000
    assert isinstance(plan_sell(D("4.99999999"), D("1000"), aggressiveness=D(0),
                                min_order_krw=D("5000")), str)


def test_position_cap_limits_the_buy_value():
    plan = plan_buy(D("1000000"), D("50000000"), **_plan_kw(max_position_krw=D("100000")))
    assert plan.price == D("50075000")
    assert plan.volume == D("0.00199700")
    assert plan.value <= D("100000")


def test_insufficient_balance_gives_a_reason():
    reason = plan_buy(D("3000"), D("50000000"), **_plan_kw())
    assert isinstance(reason, str) and "3000 KRW free" in reason


def test_identifier_derives_from_the_decision():
    assert order_identifier("paper", M, T0, "bid") == "ubot-paper-KRW-BTC-20260105T0000Z-bid"


# --- the trade pass on paper ------------------------------------------------------


@pytest.fixture
def clock():
    return FakeClock(AFTER)


def _ctx(db, database_url, clock, **overrides):
    settings = make_settings(database_url, **overrides)
    exchange = PaperExchange(db, start_krw=settings.paper_start_krw, fee_rate=settings.fee_rate,
                             min_order_krw=settings.min_order_krw, now=clock)
    events = []
    return TradeContext(settings, db, exchange, now=clock,
                        notify=lambda name, **f: events.append((name, f))), events


@pytest.fixture
def ctx(db, database_url, clock):
    return _ctx(db, database_url, clock)[0]


def test_rising_market_buys_once_per_candle(db, ctx, clock):
    store_closes(db, M, RISING)
    first = trade_market(ctx, M)
    assert first.status == "decided" and first.action == "buy" and first.trigger == "signal"
    assert first.score == pytest.approx(1.0)
    assert set(first.signals.values()) == {1}
    # 159,700 * 1.0015 = 159,939.55 -> tick 100 -> 160,000; 1,000,000 / (160,000 * 1.001)
    assert first.order == OrderPlan("bid", D("160000"), D("6.24375624"))
    assert first.identifier == order_identifier("paper", M, T0 + timedelta(minutes=199), "bid")
    assert first.order_state == "wait"
    second = trade_market(ctx, M)
    assert second.status == "already_decided"
    # the second pass reports the stored decision, not a made-up hold
    assert (second.action, second.score, second.signals) == ("buy", first.score, first.signals)
    assert second.trigger == "signal"
    assert second.order == first.order and second.identifier == first.identifier
    assert second.order_state == "wait" and second.reason == first.reason
    assert order_store.count(db) == 1 and decision_store.count(db) == 1
    row = decision_store.get(db, M, T0 + timedelta(minutes=199))
    assert row.action == "buy" and row.weights_version is None
    assert row.signals == first.signals


def test_paper_round_trip_matches_a_hand_calculation(db, ctx, clock):
    closes = RISING + [RISING[-1] + 300]
    store_closes(db, M, closes[:200], spread="1000")
    trade_market(ctx, M)  # bid 6.24375624 @ 160,000
    # next candle crosses the bid: low = 160,000 - 1,000
    store_closes(db, M, closes, spread="1000")
    clock.advance(minutes=1)
    out = trade_market(ctx, M)  # reconciles the fill first, then decides while holding
    assert out.action == "hold"  # score 1 while holding: nothing to do
    fills = order_store.fills_of(db, order_store.by_identifier(
        db, order_identifier("paper", M, T0 + timedelta(minutes=199), "bid")).id)
    funds = D("160000") * D("6.24375624")  # 998,000.9984
    assert fills == [(fills[0][0], D("160000"), D("6.24375624"), funds, funds * D("0.0005"))]
    balances = {b.currency: b for b in ctx.exchange.balances()}
    assert balances["KRW"].balance == D("1000000") - funds - funds * D("0.0005")
    assert balances["BTC"].balance == D("6.24375624")
    # now prices fall: sell everything at close * 0.9985 rounded down
    falling = closes + [closes[-1] - 300 * (i + 1) for i in range(199)]
    store_closes(db, M, falling, spread="1000")
    clock.current = T0 + timedelta(minutes=len(falling), seconds=1)
    out = trade_market(ctx, M)
    assert out.action == "sell" and out.order.side == "ask"
    last = D(falling[-1])
    expected_price = (last * D("0.9985") / 100).to_integral_value(rounding="ROUND_FLOOR") * 100
    assert out.order == OrderPlan("ask", expected_price, D("6.24375624"))


def test_falling_market_while_flat_holds(db, ctx):
    store_closes(db, M, FALLING)
    out = trade_market(ctx, M)
    assert out.action == "hold" and out.order is None and "while flat" in out.reason


def test_not_enough_candles_is_a_hold(db, ctx, clock):
    store_closes(db, M, RISING[:150])
    clock.current = T0 + timedelta(minutes=150, seconds=1)
    out = trade_market(ctx, M)
    assert out.action == "hold" and out.reason == "not enough candles"
    assert order_store.count(db) == 0


def test_stale_data_is_skipped_and_logged(db, ctx, clock, caplog):
    store_closes(db, M, RISING)
    clock.advance(minutes=3)
    with caplog.at_level(logging.WARNING):
        out = trade_market(ctx, M)
    assert out.status == "skipped" and "stale data" in out.reason
    assert decision_store.count(db) == 0
    assert any(getattr(r, "event", "") == "decision.skipped" for r in caplog.records)


def test_unconfirmed_newest_candle_waits(db, ctx):
    store_closes(db, M, RISING, final_last=False)
    out = trade_market(ctx, M)
    assert out.status == "skipped" and "not confirmed" in out.reason


def test_no_candles_at_all(db, ctx):
    assert trade_market(ctx, M).status == "skipped"


def test_kill_switch_decides_but_never_orders(db, database_url, clock):
    ctx, _ = _ctx(db, database_url, clock, TRADING_ENABLED="false")
    store_closes(db, M, RISING)
    out = trade_market(ctx, M)
    assert out.action == "buy" and out.order is None and out.trigger == "kill_switch"
    assert "kill switch" in out.reason
    row = decision_store.get(db, M, T0 + timedelta(minutes=199))
    assert row.reason.endswith("kill switch: TRADING_ENABLED=false")
    assert (row.action, row.trigger) == ("buy", "kill_switch")
    assert order_store.count(db) == 0


def test_position_cap_in_a_pass(db, database_url, clock):
    ctx, _ = _ctx(db, database_url, clock, MAX_POSITION_KRW="100000")
    store_closes(db, M, RISING)
    out = trade_market(ctx, M)
    assert out.order.value <= D("100000") and out.order.volume == D("0.62500000")


def test_insufficient_balance_in_a_pass(db, database_url, clock):
    ctx, _ = _ctx(db, database_url, clock, PAPER_START_KRW="4000")
    store_closes(db, M, RISING)
    out = trade_market(ctx, M)
    assert out.action == "buy" and out.order is None
    assert "below the minimum order" in out.reason


def test_daily_loss_limit_stops_buys_for_the_day(db, database_url, clock, caplog):
    ctx, events = _ctx(db, database_url, clock, DAILY_LOSS_LIMIT_PCT="5")
    with db.cursor() as cur:  # the day started with more equity than the paper account has now
        cur.execute("INSERT INTO equity_days (mode, day, start_equity) VALUES"
                    " ('paper', %s, 1100000)", (AFTER.date(),))
    store_closes(db, M, RISING)
    with caplog.at_level(logging.WARNING):
        out = trade_market(ctx, M)
    # a blocked buy is a hold, and the guard is its trigger (docs/semantics.md)
    assert (out.action, out.trigger, out.order) == ("hold", "loss_limit", None)
    assert "daily loss limit" in out.reason and out.reason.startswith("score 1.0000 >= 0.2")
    row = decision_store.get(db, M, T0 + timedelta(minutes=199))
    assert (row.action, row.trigger) == ("hold", "loss_limit")
    assert [name for name, _ in events] == ["risk.loss_limit"]
    # still halted later the same day, without a second alert
    store_closes(db, M, RISING + [RISING[-1] + 300])
    clock.advance(minutes=1)
    again = trade_market(ctx, M)
    assert "daily loss limit" in again.reason and again.trigger == "loss_limit"
    assert [name for name, _ in events] == ["risk.loss_limit"]


def test_loss_limit_off_with_zero(db, database_url, clock):
    ctx, _ = _ctx(db, database_url, clock, DAILY_LOSS_LIMIT_PCT="0")
    with db.cursor() as cur:
        cur.execute("INSERT INTO equity_days (mode, day, start_equity) VALUES"
                    " ('paper', %s, 9000000)", (AFTER.date(),))
    store_closes(db, M, RISING)
    assert trade_market(ctx, M).order is not None


def test_one_open_order_per_market(db, ctx, clock):
    store_closes(db, M, RISING, spread="0")
    first = trade_market(ctx, M)
    assert first.order_state == "wait"
    # the next candle is stored but not final yet: the paper bid is still open
    store_closes(db, M, RISING + [RISING[-1] + 300], final_last=False)
    store_closes(db, M, RISING + [RISING[-1] + 300, RISING[-1] + 600], final_last=True)
    clock.advance(minutes=2)
    with db.cursor() as cur:  # keep the first order open: make its fill candle unconfirmed
        cur.execute("UPDATE candles SET meta = '{\"final\": false}' WHERE ts = %s",
                    (T0 + timedelta(minutes=200),))
    out = trade_market(ctx, M)
    assert out.action == "buy" and out.order is None
    assert "still open" in out.reason


def test_newest_adopted_weights_are_used_and_named(db, ctx):
    store_closes(db, M, RISING)
    version = weight_store.adopt(db, M, {"trend": 0.0, "momentum": 0.0, "swing": 0.0,
                                         "scalping": 0.0, "day": 0.0, "price_action": 1.0})
    out = trade_market(ctx, M)
    assert out.weights_version == version
    row = decision_store.get(db, M, T0 + timedelta(minutes=199))
    assert row.weights_version == version and row.weights["price_action"] == 1.0


def test_reconcile_heals_an_order_written_but_never_sent(db, ctx, clock):
    """A crash between writing the order and sending it: the retry (or the
    next reconcile) sends it once."""
    store_closes(db, M, RISING)
    import bot.trading.trader as trader_module
    real = trader_module.send_order
    trader_module.send_order = lambda ctx, row: (_ for _ in ()).throw(SystemExit("crash"))
    try:
        with pytest.raises(SystemExit):
            trade_market(ctx, M)
    finally:
        trader_module.send_order = real
    row = order_store.by_identifier(db, order_identifier("paper", M, T0 + timedelta(minutes=199),
                                                         "bid"))
    assert row.state == "new" and row.exchange_uuid is None
    result = reconcile_market(ctx, M)
    assert result.sent == 1
    row = order_store.by_id(db, row.id)
    assert row.state == "wait" and row.exchange_uuid
    assert len(ctx.exchange.open_orders(M)) == 1
    assert reconcile_market(ctx, M).sent == 0  # and never twice


def test_an_order_never_sent_and_too_old_is_marked_failed(db, ctx, clock):
    store_closes(db, M, RISING)
    with db.cursor() as cur:
        order_store.insert_new(cur, identifier="old-one", mode="paper", market=M, side="bid",
                               price=D("160000"), volume=D("0.1"), decision_id=None,
                               created_at=clock() - timedelta(minutes=5))
    reconcile_market(ctx, M)
    assert order_store.by_identifier(db, "old-one").state == "failed"
    assert ctx.exchange.open_orders(M) == []
