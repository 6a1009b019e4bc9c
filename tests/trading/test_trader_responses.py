"""The trader in live mode with Upbit's HTTP mocked by ``responses``: the exact
requests it sends for a buy and a sell, and how each Upbit error ends up in
the log and the database."""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import timedelta
from decimal import Decimal
from urllib.parse import urlencode

import jwt
import pytest
import responses

from bot.errors import OrderSubmitUnknown, RateLimited
from bot.exchange.upbit import UpbitClient
from bot.storage import orders as order_store
from bot.trading.lifecycle import TradeContext
from bot.trading.trader import order_identifier, trade_market
from testkit.candles import T0, store_closes
from testkit.clock import FakeClock
from testkit.settings import make_settings

D = Decimal
M = "KRW-BTC"
BASE = "https://api.upbit.test"
ACCESS, SECRET = "resp-access-key-0123456789", "resp-secret-key-" * 4
RISING = [100_000 + 300 * i for i in range(200)]
FALLING = list(reversed(RISING))
DECISION_TS = T0 + timedelta(minutes=199)


def _account(krw="1000000", btc=None):
    rows = [{"currency": "KRW", "balance": krw, "locked": "0", "avg_buy_price": "0",
             "avg_buy_price_modified": False, "unit_currency": "KRW"}]
    if btc:
        rows.append({"currency": "BTC", "balance": btc, "locked": "0",
                     "avg_buy_price": "150000", "avg_buy_price_modified": False,
                     "unit_currency": "KRW"})
    return rows


def _order_json(side, price, volume, identifier, state="wait"):
    return {"uuid": "c2f0d5b6-0000-4000-8000-000000000001", "side": side, "ord_type": "limit",
            "price": price, "state": state, "market": M,
            "created_at": "2026-01-05T12:20:01+09:00", "volume": volume,
            "remaining_volume": volume, "reserved_fee": "0", "remaining_fee": "0",
            "paid_fee": "0", "locked": "0", "executed_volume": "0", "trades_count": 0,
            "identifier": identifier, "trades": []}


def _error(name, status=400):
    return {"status": status, "json": {"error": {"name": name, "message": f"{name} (test)"}}}


@pytest.fixture
def clock():
    return FakeClock(T0 + timedelta(minutes=200, seconds=1))


@pytest.fixture
def ctx(db, database_url, clock):
    settings = make_settings(database_url, TRADING_MODE="live", LIVE_ALLOW_UNVALIDATED="true",
                             UPBIT_ACCESS_KEY=ACCESS, UPBIT_SECRET_KEY=SECRET,
                             UPBIT_API_BASE=BASE)
    client = UpbitClient(BASE, ACCESS, SECRET, sleep=lambda s: None, max_retries=1)
    yield TradeContext(settings, db, client, now=clock)
    client.close()


def _check_signed(request, expected_params):
    token = request.headers["Authorization"].removeprefix("Bearer ")
    payload = jwt.decode(token, SECRET, algorithms=["HS512", "HS256"])
    assert payload["access_key"] == ACCESS and payload["nonce"]
    assert payload["query_hash_alg"] == "SHA512"
    body = json.loads(request.body)
    assert list(body.items()) == list(expected_params.items())
    query = urlencode(list(body.items()))
    assert payload["query_hash"] == hashlib.sha512(query.encode()).hexdigest()


def _lookups_not_found(rsps):
    rsps.add(responses.GET, f"{BASE}/v1/order", **_error("order_not_found", 404))


@responses.activate
def test_buy_sends_exactly_one_signed_limit_bid(db, ctx):
    store_closes(db, M, RISING)
    identifier = order_identifier("live", M, DECISION_TS, "bid")
    responses.add(responses.GET, f"{BASE}/v1/accounts", json=_account())
    _lookups_not_found(responses)
    responses.add(responses.POST, f"{BASE}/v1/orders", status=201,
                  json=_order_json("bid", "160000", "6.24375624", identifier))
    out = trade_market(ctx, M)
    assert out.order_state == "wait"
    posts = [c.request for c in responses.calls if c.request.method == "POST"]
    assert len(posts) == 1
    assert posts[0].url == f"{BASE}/v1/orders"
    assert posts[0].headers["Content-Type"].startswith("application/json")
    _check_signed(posts[0], {"market": M, "side": "bid", "volume": "6.24375624",
                             "price": "160000", "ord_type": "limit", "identifier": identifier})
    # the identifier was looked up before placing
    methods = [(c.request.method, c.request.path_url.split("?")[0]) for c in responses.calls]
    assert methods.index(("GET", "/v1/order")) < methods.index(("POST", "/v1/orders"))
    row = order_store.by_identifier(db, identifier)
    assert row.state == "wait" and row.exchange_uuid.startswith("c2f0d5b6")


@responses.activate
def test_sell_sends_the_whole_free_balance_as_a_signed_ask(db, ctx):
    store_closes(db, M, FALLING)
    identifier = order_identifier("live", M, DECISION_TS, "ask")
    responses.add(responses.GET, f"{BASE}/v1/accounts", json=_account(btc="0.12345678"))
    _lookups_not_found(responses)
    responses.add(responses.POST, f"{BASE}/v1/orders", status=201,
                  json=_order_json("ask", "99800", "0.12345678", identifier))
    out = trade_market(ctx, M)
    assert out.action == "sell"
    post = next(c.request for c in responses.calls if c.request.method == "POST")
    # 100,000 * 0.9985 = 99,850 -> tick 50 -> 99,850
    _check_signed(post, {"market": M, "side": "ask", "volume": "0.12345678", "price": "99850",
                         "ord_type": "limit", "identifier": identifier})


@pytest.mark.parametrize("name", ["insufficient_funds_bid", "under_min_total_bid",
                                  "invalid_price_bid"])
@responses.activate
def test_refusals_are_recorded_and_logged(db, ctx, caplog, name):
    store_closes(db, M, RISING)
    responses.add(responses.GET, f"{BASE}/v1/accounts", json=_account())
    _lookups_not_found(responses)
    responses.add(responses.POST, f"{BASE}/v1/orders", **_error(name))
    with caplog.at_level(logging.WARNING):
        out = trade_market(ctx, M)
    assert out.order_state == "rejected"
    row = order_store.by_identifier(db, order_identifier("live", M, DECISION_TS, "bid"))
    assert row.state == "rejected" and row.error.startswith(name)
    logged = [r for r in caplog.records if getattr(r, "event", "") == "order.rejected"]
    assert logged and logged[0].fields["error"] == name
    assert len([c for c in responses.calls if c.request.method == "POST"]) == 1  # no retry


@responses.activate
def test_rate_limited_post_is_retried_by_the_task_and_lands_once(db, ctx):
    store_closes(db, M, RISING)
    identifier = order_identifier("live", M, DECISION_TS, "bid")
    responses.add(responses.GET, f"{BASE}/v1/accounts", json=_account())
    _lookups_not_found(responses)
    responses.add(responses.POST, f"{BASE}/v1/orders", **_error("too_many_requests", 429))
    with pytest.raises(RateLimited):
        trade_market(ctx, M)
    assert order_store.by_identifier(db, identifier).state == "new"
    # the task's retry: the decision exists; reconcile sends the written order once
    responses.replace(responses.POST, f"{BASE}/v1/orders", status=201,
                      json=_order_json("bid", "160000", "6.24375624", identifier))
    assert trade_market(ctx, M).status == "already_decided"
    assert order_store.by_identifier(db, identifier).state == "wait"
    assert len([c for c in responses.calls if c.request.method == "POST"]) == 2


@responses.activate
def test_server_error_on_post_is_never_blindly_resent(db, ctx):
    store_closes(db, M, RISING)
    identifier = order_identifier("live", M, DECISION_TS, "bid")
    responses.add(responses.GET, f"{BASE}/v1/accounts", json=_account())
    _lookups_not_found(responses)
    responses.add(responses.POST, f"{BASE}/v1/orders", status=500, body="<html>oops</html>")
    with pytest.raises(OrderSubmitUnknown):
        trade_market(ctx, M)
    assert len([c for c in responses.calls if c.request.method == "POST"]) == 1
    row = order_store.by_identifier(db, identifier)
    assert row.state == "new"  # unknown: the identifier is looked up before any resend
    lookups_after = [c for c in responses.calls if c.request.method == "GET"
                     and c.request.path_url.startswith("/v1/order?")]
    assert len(lookups_after) >= 2
