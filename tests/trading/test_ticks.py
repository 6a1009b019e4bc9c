"""Upbit's own tick per market, followed live: a tick that changes mid-run
makes Upbit refuse the order as off the tick; the trader reads the market's
tick again and places the order once more on it (a new identifier)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from bot.data.collector import collect_market
from bot.data.markets import refresh
from bot.exchange.upbit import UpbitClient
from bot.storage import markets as market_store
from bot.storage import orders as order_store
from bot.trading.lifecycle import TradeContext
from bot.trading.trader import order_identifier, trade_market
from testkit.fakeupbit import FakeUpbit, ManualClock
from testkit.settings import make_settings

D = Decimal
M = "KRW-BTC"
START = datetime(2026, 4, 1, 0, 0, tzinfo=UTC)
DECIDE_AT = START + timedelta(minutes=300, seconds=2)
DECISION_TS = START + timedelta(minutes=299)
ACCESS, SECRET = "live-access-key", "live-secret-" * 6
# every signal +1; the last close 189,850: a bid at 190,134.78, rounded up to
# 190,200 on the KRW table's tick of 100, to 191,000 on a tick of 1,000
CLOSES = [100_150 + 300 * i for i in range(300)]


def _rows(closes):
    rows, prev = [], closes[0]
    for i, close in enumerate(closes):
        o, c = D(prev), D(close)
        rows.append((START + timedelta(minutes=i), o, max(o, c), min(o, c), c, D(1)))
        prev = close
    return rows


def test_a_tick_changed_mid_run_is_read_again_and_the_order_placed_on_it(db, database_url,
                                                                        caplog):
    clock = ManualClock(DECIDE_AT)
    with FakeUpbit(clock=clock, access_key=ACCESS, secret_key=SECRET, krw=1_000_000,
                   history_minutes=600) as server:
        server.set_candles(M, _rows(CLOSES + [CLOSES[-1]]))
        settings = make_settings(database_url, TRADING_MODE="live", LIVE_ALLOW_UNVALIDATED="true",
                                 UPBIT_ACCESS_KEY=ACCESS, UPBIT_SECRET_KEY=SECRET,
                                 UPBIT_API_BASE=server.url)
        client = UpbitClient(server.url, ACCESS, SECRET, sleep=lambda s: None, max_retries=2)
        collect_market(db, client, M, max_candles=400, now=clock)
        refresh(db, client, settings, DECIDE_AT)  # the tick as Upbit gives it now: 100
        assert market_store.tick_of(db, M) == D(100)
        server.set_tick(M, D(1000))  # Upbit changes the market's tick
        ctx = TradeContext(settings, db, client, now=clock)
        with caplog.at_level(logging.WARNING, logger="bot.trading.lifecycle"):
            out = trade_market(ctx, M)
        client.close()
    first = order_store.by_identifier(db, order_identifier("live", M, DECISION_TS, "bid"))
    assert first.state == "rejected" and first.price == D(190_200)
    again = order_store.by_identifier(db, first.identifier + "-t")
    assert again.price == D(191_000) and again.state == "wait"
    assert again.decision_id == first.decision_id
    # value kept within the first order's budget
    assert again.volume * again.price <= first.volume * first.price
    assert out.order_state == "wait"
    assert market_store.tick_of(db, M) == D(1000)
    (line,) = [r for r in caplog.records if getattr(r, "event", None) == "order.retick"]
    assert line.fields["tick"] == D(1000) and line.fields["new_price"] == D(191_000)
    # exactly one order at the exchange
    assert [o.identifier for o in server.orders] == [again.identifier]
