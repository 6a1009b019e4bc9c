"""The Upbit client against a `responses` fake: parsing, error mapping,
retries, bans, order-placement safety, rate limiting and secret hygiene."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from zoneinfo import ZoneInfo

import pytest
import requests
import responses

from bot.config import load_settings
from bot.errors import (
    AuthError,
    Banned,
    ExchangeError,
    ExchangeTemporaryError,
    InsufficientFunds,
    InvalidOrder,
    MalformedResponse,
    NotFound,
    OrderNotFound,
    OrderSubmitUnknown,
    RateLimited,
    TemporaryError,
)
from bot.exchange.bans import MemoryBans
from bot.exchange.ratelimit import GROUP_LIMITS, parse_remaining, route_group
from bot.exchange.upbit import UpbitClient
from bot.exchange.upbit_errors import error_class, error_fields
from bot.models import ApiKey, Balance, MarketInfo, OrderChance, Ticker
from testkit.clock import FakeClock
from testkit.upbit_json import (
    ACCESS,
    BASE,
    SECRET,
    candle_json,
    make_client,
    order_json,
    upbit_error,
)

CANDLES = f"{BASE}/v1/candles/minutes/1"
ORDER = f"{BASE}/v1/order"
ORDERS = f"{BASE}/v1/orders"


@pytest.fixture
def server() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def client(clock: FakeClock) -> Iterator[UpbitClient]:
    with make_client(clock) as upbit:
        yield upbit


def query_of(call: Any) -> dict[str, list[str]]:
    return parse_qs(unquote(urlsplit(call.request.url).query))


# --- candles -------------------------------------------------------------

def test_candles_parse_exact_decimals_utc_times_and_keep_upbits_order(
        server: responses.RequestsMock, client: UpbitClient) -> None:
    raw = ('[{"market":"KRW-BTC","candle_date_time_utc":"2025-01-01T00:02:00",'
           '"candle_date_time_kst":"2025-01-01T09:02:00","opening_price":143000000.00000000,'
           '"high_price":143050000.0,"low_price":142990000.0,"trade_price":143020000.0,'
           '"timestamp":1735689779123,"candle_acc_trade_price":17001839.067580001234,'
           '"candle_acc_trade_volume":0.1189031200000001,"unit":1},'
           + json.dumps(candle_json(1)) + "]")
    server.get(CANDLES, body=raw, content_type="application/json")
    page = client.candles("KRW-BTC", count=2)
    assert [c.ts for c in page] == [datetime(2025, 1, 1, 0, 2, tzinfo=UTC),
                                    datetime(2025, 1, 1, 0, 1, tzinfo=UTC)]
    newest = page[0]
    assert newest.ts.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert newest.open == Decimal("143000000") and isinstance(newest.open, Decimal)
    assert newest.quote_volume == Decimal("17001839.067580001234")
    assert newest.volume == Decimal("0.1189031200000001")
    assert (newest.high, newest.low, newest.close) == (
        Decimal(143050000), Decimal(142990000), Decimal(143020000))
    assert newest.unit == 1 and newest.market == "KRW-BTC"
    assert newest.meta == {"kst": "2025-01-01T09:02:00", "trade_timestamp": 1735689779123}
    assert query_of(server.calls[0]) == {"market": ["KRW-BTC"], "count": ["2"]}


def test_candles_to_is_formatted_in_utc_and_unit_picks_the_path(
        server: responses.RequestsMock, client: UpbitClient) -> None:
    server.get(f"{BASE}/v1/candles/minutes/5", json=[candle_json(0)])
    seoul = datetime(2025, 1, 1, 9, 5, 30, 999, tzinfo=ZoneInfo("Asia/Seoul"))
    (candle,) = client.candles("KRW-BTC", unit=5, count=1, to=seoul)
    assert candle.unit == 5
    assert unquote(urlsplit(server.calls[0].request.url).query) == (
        "market=KRW-BTC&count=1&to=2025-01-01T00:05:30Z")


def test_candles_refuse_bad_arguments(client: UpbitClient) -> None:
    for kwargs in ({"unit": 2}, {"count": 0}, {"count": 201},
                   {"to": datetime(2025, 1, 1)}):  # noqa: DTZ001 - naive on purpose
        with pytest.raises(ValueError):
            client.candles("KRW-BTC", **kwargs)  # type: ignore[arg-type]


def _without(key: str) -> dict[str, Any]:
    item = candle_json(1)
    del item[key]
    return item


@pytest.mark.parametrize(("body", "field"), [
    ([candle_json(2), _without("low_price")], "low_price"),
    ([candle_json(2), _without("candle_date_time_utc")], "candle_date_time_utc"),
    ([candle_json(2), candle_json(1, trade_price=None)], "trade_price"),
    ([candle_json(2), candle_json(1, opening_price=0)], "opening_price"),
    ([candle_json(2), candle_json(1, high_price=-5)], "high_price"),
    ([candle_json(2), candle_json(1, low_price="abc")], "low_price"),
    ([candle_json(2), candle_json(1, low_price=2.0, high_price=1.0)], "low_price"),
    ([candle_json(2), candle_json(1, market="KRW-ETH")], "market"),
    ([candle_json(2), candle_json(1, candle_date_time_utc="yesterday")],
     "candle_date_time_utc"),
    ([candle_json(2), "not an object"], "object"),
    ({"market": "KRW-BTC"}, "list"),
])
def test_a_malformed_item_fails_the_whole_page_naming_market_and_field(
        server: responses.RequestsMock, client: UpbitClient, body: Any, field: str) -> None:
    server.get(CANDLES, json=body)
    with pytest.raises(MalformedResponse, match="KRW-BTC") as caught:
        client.candles("KRW-BTC")
    assert field in str(caught.value)
    assert caught.value.path == "/v1/candles/minutes/1"
    assert len(server.calls) == 1  # a readable but wrong page is not retried here


def test_a_non_json_page_is_retried_then_malformed_naming_the_market(
        server: responses.RequestsMock, clock: FakeClock) -> None:
    server.get(CANDLES, body="<html>maintenance</html>", content_type="text/html")
    client = make_client(clock, max_retries=2)
    with pytest.raises(MalformedResponse, match="KRW-BTC"):
        client.candles("KRW-BTC")
    assert len(server.calls) == 3 and len(clock.sleeps) == 2


def test_a_non_json_page_then_a_good_one(server: responses.RequestsMock,
                                         client: UpbitClient, clock: FakeClock) -> None:
    server.get(CANDLES, body="<html>oops</html>", status=200)
    server.get(CANDLES, json=[candle_json(1)])
    assert len(client.candles("KRW-BTC")) == 1
    assert len(clock.sleeps) == 1


def test_an_unknown_market_is_not_found_not_an_order_error(server: responses.RequestsMock,
                                                          client: UpbitClient) -> None:
    server.get(CANDLES, status=404, json={"error": {"name": 404, "message": "Code not found"}})
    with pytest.raises(NotFound) as caught:
        client.candles("KRW-NOPE")
    assert not isinstance(caught.value, OrderNotFound)
    assert caught.value.status == 404 and "Code not found" in str(caught.value)


# --- other public endpoints ------------------------------------------------

def test_markets_ticker_and_tick_sizes(server: responses.RequestsMock,
                                       client: UpbitClient) -> None:
    server.get(f"{BASE}/v1/market/all", json=[{"market": "KRW-BTC", "korean_name": "비트코인",
                                               "english_name": "Bitcoin"}])
    server.get(f"{BASE}/v1/ticker", body='[{"market":"KRW-BTC","trade_price":0.1}]')
    server.get(f"{BASE}/v1/orderbook/instruments", json=[
        {"market": "KRW-BTC", "quote_currency": "KRW", "tick_size": "1000"},
        {"market": "KRW-USDT", "quote_currency": "KRW", "tick_size": "0.1"}])
    assert client.markets() == [MarketInfo("KRW-BTC", "비트코인", "Bitcoin")]
    assert query_of(server.calls[0]) == {"is_details": ["true"]}
    assert client.ticker(["KRW-BTC", "KRW-ETH"])[0]["trade_price"] == Decimal("0.1")
    assert query_of(server.calls[1]) == {"markets": ["KRW-BTC,KRW-ETH"]}
    assert client.tick_sizes(["KRW-BTC", "KRW-USDT"]) == {
        "KRW-BTC": Decimal(1000), "KRW-USDT": Decimal("0.1")}


def test_tick_sizes_malformed(server: responses.RequestsMock, client: UpbitClient) -> None:
    server.get(f"{BASE}/v1/orderbook/instruments", json=[{"market": "KRW-BTC"}])
    with pytest.raises(MalformedResponse, match="tick_size"):
        client.tick_sizes(["KRW-BTC"])


# --- private endpoints -----------------------------------------------------

def test_balances(server: responses.RequestsMock, client: UpbitClient) -> None:
    server.get(f"{BASE}/v1/accounts", json=[
        {"currency": "KRW", "balance": "1000000.12345", "locked": "5000",
         "avg_buy_price": "0", "avg_buy_price_modified": False, "unit_currency": "KRW"},
        {"currency": "BTC", "balance": "0.00012", "locked": "0",
         "avg_buy_price": "143000000", "avg_buy_price_modified": False,
         "unit_currency": "KRW"}])
    assert client.balances() == [
        Balance("KRW", Decimal("1000000.12345"), Decimal(5000), Decimal(0)),
        Balance("BTC", Decimal("0.00012"), Decimal(0), Decimal(143000000))]


def test_get_order_with_trades_in_utc(server: responses.RequestsMock,
                                      client: UpbitClient) -> None:
    trades = [{"market": "KRW-BTC", "uuid": "t-1", "price": "143000000", "volume": "0.00004",
               "funds": "5720", "trend": "up", "created_at": "2025-01-01T09:00:05+09:00",
               "side": "bid"}]
    server.get(ORDER, json=order_json(state="wait", executed_volume="0.00004",
                                      remaining_volume="0.00006", paid_fee="2.86",
                                      trades=trades, trades_count=1))
    order = client.get_order(uuid="9ca023a5-851b-4fec-9f0a-48cd83c2eaae")
    assert order.is_open and order.side == "bid" and order.identifier == "bot-KRW-BTC-1"
    assert order.created_at == datetime(2025, 1, 1, 0, 0, tzinfo=UTC)
    assert order.created_at.tzinfo == UTC
    assert (order.price, order.volume) == (Decimal(143000000), Decimal("0.0001"))
    assert order.executed_volume == Decimal("0.00004") and order.paid_fee == Decimal("2.86")
    (trade,) = order.fills
    assert trade.funds == Decimal(5720) and trade.created_at == datetime(
        2025, 1, 1, 0, 0, 5, tzinfo=UTC)


@pytest.mark.parametrize(("change", "field"), [
    ({"executed_volume": None}, "executed_volume"),
    ({"side": "buy"}, "side"),
    ({"created_at": "2025-01-01T09:00:00"}, "created_at"),
    ({"price": "1e"}, "price"),
    ({"trades": [{"uuid": "t-1"}]}, "market"),
])
def test_get_order_malformed(server: responses.RequestsMock, client: UpbitClient,
                             change: dict[str, Any], field: str) -> None:
    server.get(ORDER, json=order_json(**change))
    with pytest.raises(MalformedResponse, match=field):
        client.get_order(identifier="bot-KRW-BTC-1")


def test_get_order_needs_exactly_one_id(client: UpbitClient) -> None:
    with pytest.raises(ValueError):
        client.get_order()
    with pytest.raises(ValueError):
        client.get_order(uuid="a", identifier="b")


def test_open_orders_paginates(server: responses.RequestsMock, client: UpbitClient) -> None:
    first = [order_json(uuid=f"u-{i}") for i in range(100)]
    second = [order_json(uuid=f"u-{i}") for i in range(100, 103)]
    server.get(f"{BASE}/v1/orders/open", json=first)
    server.get(f"{BASE}/v1/orders/open", json=second)
    orders = client.open_orders("KRW-BTC")
    assert [o.uuid for o in orders] == [f"u-{i}" for i in range(103)]
    pages = [query_of(call) for call in server.calls]
    assert [p["page"] for p in pages] == [["1"], ["2"]]
    assert pages[0]["states[]"] == ["wait", "watch"] and pages[0]["market"] == ["KRW-BTC"]


def test_open_orders_without_market(server: responses.RequestsMock,
                                    client: UpbitClient) -> None:
    server.get(f"{BASE}/v1/orders/open", json=[])
    assert client.open_orders() == []
    assert "market" not in query_of(server.calls[0])


def test_cancel_order_returns_the_order(server: responses.RequestsMock,
                                        client: UpbitClient) -> None:
    server.delete(ORDER, json=order_json(state="wait", executed_volume="0.00004",
                                         remaining_volume="0.00006"))
    order = client.cancel_order(identifier="bot-KRW-BTC-1")
    assert order.uuid == "9ca023a5-851b-4fec-9f0a-48cd83c2eaae"
    # As answered: the cancel is only asked for, the order can still fill.
    assert order.state == "wait" and order.is_open
    assert order.executed_volume == Decimal("0.00004")
    assert query_of(server.calls[0]) == {"identifier": ["bot-KRW-BTC-1"]}


def test_place_limit_order_parses_the_answer(server: responses.RequestsMock,
                                             client: UpbitClient) -> None:
    server.post(ORDERS, json=order_json(), status=201)
    order = client.place_limit_order("KRW-BTC", "bid", Decimal("143000000"),
                                     Decimal("0.0001"), "bot-KRW-BTC-1")
    assert order.identifier == "bot-KRW-BTC-1" and order.state == "wait"


def test_place_limit_order_refuses_bad_arguments(client: UpbitClient) -> None:
    for args in (("KRW-BTC", "buy", Decimal(1), Decimal(1), "x"),
                 ("KRW-BTC", "bid", Decimal(0), Decimal(1), "x"),
                 ("KRW-BTC", "bid", Decimal(1), Decimal(-1), "x"),
                 ("KRW-BTC", "bid", Decimal(1), Decimal(1), "")):
        with pytest.raises(ValueError):
            client.place_limit_order(*args)


# --- error mapping ---------------------------------------------------------

@pytest.mark.parametrize(("name", "status", "cls"), [
    ("insufficient_funds_bid", 400, InsufficientFunds),
    ("insufficient_funds_ask", 400, InsufficientFunds),
    ("under_min_total_bid", 400, InvalidOrder),
    ("under_min_total_ask", 400, InvalidOrder),
    ("invalid_price_bid", 400, InvalidOrder),
    ("invalid_price_ask", 400, InvalidOrder),
    ("invalid_volume", 400, InvalidOrder),
    ("volume_too_large", 400, InvalidOrder),
    ("validation_error", 400, InvalidOrder),
    ("create_bid_error", 400, InvalidOrder),
    ("create_ask_error", 400, InvalidOrder),
    ("market_does_not_exist", 400, InvalidOrder),
    ("order_not_found", 404, OrderNotFound),
    ("order_not_found", 400, OrderNotFound),
    ("jwt_verification", 401, AuthError),
    ("expired_access_key", 401, AuthError),
    ("nonce_used", 401, AuthError),
    ("no_authorization_token", 401, AuthError),
    ("invalid_access_key", 401, AuthError),
    ("invalid_query_payload", 401, AuthError),
    ("out_of_scope", 401, AuthError),
    ("something_new", 401, AuthError),
    ("something_new", 403, AuthError),
    ("something_new", 404, NotFound),
    ("something_new", 400, ExchangeError),
])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_error_names_map_to_types(server: responses.RequestsMock, client: UpbitClient,
                                  clock: FakeClock, name: str, status: int,
                                  cls: type[ExchangeError], method: str) -> None:
    url = ORDER if method == "GET" else ORDERS
    server.add(method, url, json=upbit_error(name, "주문 오류 message"), status=status)
    with pytest.raises(ExchangeError) as caught:
        if method == "GET":
            client.get_order(uuid="u-1")
        else:
            client.place_limit_order("KRW-BTC", "bid", Decimal(1000), Decimal(5), "bot-1")
    error = caught.value
    assert type(error) is cls
    assert not isinstance(error, TemporaryError)
    assert (error.name, error.status, error.method) == (name, status, method)
    assert error.path == urlsplit(url).path and "?" not in error.path
    assert error.error_message == "주문 오류 message"
    assert len(server.calls) == 1 and clock.sleeps == []  # never retried


def test_unknown_json_5xx_is_temporary_and_retried_with_capped_backoff(
        server: responses.RequestsMock, clock: FakeClock) -> None:
    server.get(ORDER, json=upbit_error("server_error", "down"), status=503)
    client = make_client(clock, max_retries=4, backoff_base=0.5, backoff_cap=2.0)
    with pytest.raises(ExchangeTemporaryError) as caught:
        client.get_order(uuid="u-1")
    assert caught.value.status == 503 and caught.value.name == "server_error"
    assert len(server.calls) == 5
    bounds = [(0.25, 0.5), (0.5, 1.0), (1.0, 2.0), (1.0, 2.0)]
    assert len(clock.sleeps) == 4
    for slept, (low, high) in zip(clock.sleeps, bounds, strict=True):
        assert low <= slept <= high


def test_500_then_success(server: responses.RequestsMock, client: UpbitClient,
                          clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    server.get(CANDLES, body="<html>502 Bad Gateway</html>", status=502)
    server.get(CANDLES, json=[candle_json(1)])
    with caplog.at_level(logging.WARNING, logger="bot.exchange.transport"):
        assert len(client.candles("KRW-BTC")) == 1
    assert len(server.calls) == 2 and len(clock.sleeps) == 1
    (record,) = [r for r in caplog.records if getattr(r, "event", "") == "upbit.retry"]
    fields = record.fields  # type: ignore[attr-defined]
    assert fields["method"] == "GET" and fields["path"] == "/v1/candles/minutes/1"
    assert fields["status"] == 502


def test_connection_error_and_timeout_on_get_are_retried(
        server: responses.RequestsMock, client: UpbitClient, clock: FakeClock) -> None:
    server.get(CANDLES, body=requests.ConnectionError("connection reset"))
    server.get(CANDLES, body=requests.ReadTimeout("read timed out"))
    server.get(CANDLES, json=[candle_json(1)])
    assert len(client.candles("KRW-BTC")) == 1
    assert len(server.calls) == 3 and len(clock.sleeps) == 2


def test_network_errors_exhausted_are_temporary(server: responses.RequestsMock,
                                                clock: FakeClock) -> None:
    server.get(CANDLES, body=requests.ConnectTimeout("connect timed out"))
    client = make_client(clock, max_retries=1)
    with pytest.raises(ExchangeTemporaryError) as caught:
        client.candles("KRW-BTC")
    assert caught.value.status == 0 and caught.value.path == "/v1/candles/minutes/1"
    assert len(server.calls) == 2


def test_delete_is_retried(server: responses.RequestsMock, client: UpbitClient,
                           clock: FakeClock) -> None:
    server.delete(ORDER, body=requests.ReadTimeout())
    server.delete(ORDER, json=order_json(state="cancel"))
    assert client.cancel_order(uuid="u-1").state == "cancel"
    assert len(server.calls) == 2


# --- 429 and 418 -------------------------------------------------------------

def test_429_then_success_sleeps_once(server: responses.RequestsMock, client: UpbitClient,
                                      clock: FakeClock) -> None:
    server.get(CANDLES, body="Too many API requests.", status=429)
    server.get(CANDLES, json=[candle_json(1)])
    assert len(client.candles("KRW-BTC")) == 1
    assert len(server.calls) == 2
    assert len(clock.sleeps) == 1 and 0.25 <= clock.sleeps[0] <= 0.5


def test_429_honours_retry_after(server: responses.RequestsMock, client: UpbitClient,
                                 clock: FakeClock) -> None:
    server.get(CANDLES, json=upbit_error("too_many_requests", "slow down"), status=429,
               headers={"Retry-After": "2", "Remaining-Req": "group=candle; min=600; sec=0"})
    server.get(CANDLES, json=[candle_json(1)])
    client.candles("KRW-BTC")
    assert clock.sleeps == [2.0]


def test_429_exhausted_raises_rate_limited(server: responses.RequestsMock,
                                           clock: FakeClock) -> None:
    server.get(CANDLES, body="Too many API requests.", status=429)
    client = make_client(clock, max_retries=2)
    with pytest.raises(RateLimited) as caught:
        client.candles("KRW-BTC")
    assert caught.value.status == 429 and caught.value.retry_after > 0
    assert len(server.calls) == 3 and len(clock.sleeps) == 2


def test_418_bans_and_later_calls_send_nothing(server: responses.RequestsMock,
                                               client: UpbitClient, clock: FakeClock) -> None:
    server.get(CANDLES, json=upbit_error("banned", "차단"), status=418,
               headers={"Retry-After": "120"})
    with pytest.raises(Banned) as caught:
        client.candles("KRW-BTC")
    assert caught.value.retry_after == 120 and caught.value.status == 418
    assert len(server.calls) == 1 and clock.sleeps == []
    clock.now += 100
    for call in (lambda: client.candles("KRW-BTC"), client.balances,
                 lambda: client.place_limit_order("KRW-BTC", "bid", Decimal(1000),
                                                  Decimal(5), "bot-1")):
        with pytest.raises(Banned) as later:
            call()
        assert 0 < later.value.retry_after <= 20
    assert len(server.calls) == 1
    clock.now += 21
    server.replace(responses.GET, CANDLES, json=[candle_json(1)])
    assert len(client.candles("KRW-BTC")) == 1


def test_418_without_retry_after_bans_for_60_seconds(server: responses.RequestsMock,
                                                     client: UpbitClient) -> None:
    server.get(CANDLES, body="banned", status=418)
    with pytest.raises(Banned) as caught:
        client.candles("KRW-BTC")
    assert caught.value.retry_after == 60


# --- order placement is never retried ----------------------------------------

@pytest.mark.parametrize("failure", [requests.ReadTimeout("read timed out"),
                                     requests.ConnectionError("connection reset by peer")])
def test_post_without_answer_is_submit_unknown_and_sent_once(
        server: responses.RequestsMock, client: UpbitClient, clock: FakeClock,
        failure: Exception) -> None:
    server.post(ORDERS, body=failure)
    with pytest.raises(OrderSubmitUnknown) as caught:
        client.place_limit_order("KRW-BTC", "bid", Decimal(143000000), Decimal("0.0001"),
                                 "bot-KRW-BTC-1")
    assert caught.value.method == "POST" and caught.value.path == "/v1/orders"
    assert len(server.calls) == 1 and clock.sleeps == []


def test_post_connect_timeout_never_left_so_is_plain_temporary(
        server: responses.RequestsMock, client: UpbitClient) -> None:
    server.post(ORDERS, body=requests.ConnectTimeout("connect timed out"))
    with pytest.raises(ExchangeTemporaryError) as caught:
        client.place_limit_order("KRW-BTC", "bid", Decimal(1000), Decimal(5), "bot-1")
    assert not isinstance(caught.value, OrderSubmitUnknown)
    assert len(server.calls) == 1


@pytest.mark.parametrize(("status", "body"), [
    (500, json.dumps(upbit_error("server_error", "x"))),
    (502, "<html>bad gateway</html>"),
    (201, "<html>not json</html>"),
    (201, json.dumps({"uuid": "u-1"})),
])
def test_post_5xx_or_unreadable_answer_is_not_retried_and_is_unknown(
        server: responses.RequestsMock, client: UpbitClient, clock: FakeClock,
        status: int, body: str) -> None:
    server.post(ORDERS, body=body, status=status)
    with pytest.raises(OrderSubmitUnknown) as caught:
        client.place_limit_order("KRW-BTC", "bid", Decimal(1000), Decimal(5), "bot-1")
    assert isinstance(caught.value, ExchangeTemporaryError)
    assert len(server.calls) == 1 and clock.sleeps == []


def test_post_429_is_rate_limited_and_not_retried(server: responses.RequestsMock,
                                                  client: UpbitClient,
                                                  clock: FakeClock) -> None:
    server.post(ORDERS, body="Too many API requests.", status=429)
    with pytest.raises(RateLimited):
        client.place_limit_order("KRW-BTC", "bid", Decimal(1000), Decimal(5), "bot-1")
    assert len(server.calls) == 1 and clock.sleeps == []


# --- rate limiting -------------------------------------------------------------

def test_remaining_req_sec_0_makes_the_next_request_of_that_group_wait(
        server: responses.RequestsMock, client: UpbitClient, clock: FakeClock) -> None:
    server.get(CANDLES, json=[candle_json(1)],
               headers={"Remaining-Req": "group=candle; min=600; sec=0"})
    server.get(CANDLES, json=[candle_json(1)],
               headers={"Remaining-Req": "group=candle; min=600; sec=9"})
    server.get(f"{BASE}/v1/ticker", json=[],
               headers={"Remaining-Req": "group=ticker; min=600; sec=9"})
    client.candles("KRW-BTC")
    client.ticker(["KRW-BTC"])  # another group: not held back
    assert clock.sleeps == []
    client.candles("KRW-BTC")
    assert clock.sleeps == [pytest.approx(1.0)]


class TimedServer:
    """Answers candle requests after ``latency`` seconds of fake time and
    records when each request arrived."""

    def __init__(self, clock: FakeClock, latency: float):
        self.clock = clock
        self.latency = latency
        self.arrivals: list[float] = []

    def __call__(self, request: Any) -> tuple[int, dict[str, str], str]:
        self.arrivals.append(self.clock.now)
        self.clock.now += self.latency
        return 200, {"Remaining-Req": "group=candle; min=600; sec=5"}, json.dumps(
            [candle_json(1)])


@pytest.mark.parametrize("latency", [0.0, 0.013])
def test_sliding_window_never_exceeds_10_in_any_second_yet_runs_at_full_speed(
        server: responses.RequestsMock, client: UpbitClient, clock: FakeClock,
        latency: float) -> None:
    timed = TimedServer(clock, latency)
    server.add_callback(responses.GET, CANDLES, callback=timed)
    start = clock.now
    for _ in range(25):
        client.candles("KRW-BTC")
    arrivals = timed.arrivals
    assert len(arrivals) == 25
    for i in range(len(arrivals) - 10):
        assert arrivals[i + 10] - arrivals[i] >= 1.0 - 1e-9, (i, arrivals)
    # Full allowance: 25 calls = two full windows plus a few; no busy loop.
    assert clock.now - start <= 2.0 + 3 * latency + 25 * latency
    assert len(clock.sleeps) <= 25


def test_groups_have_their_own_windows(server: responses.RequestsMock,
                                       client: UpbitClient, clock: FakeClock) -> None:
    server.get(CANDLES, json=[candle_json(1)])
    server.get(f"{BASE}/v1/ticker", json=[])
    for _ in range(10):
        client.candles("KRW-BTC")
    client.ticker(["KRW-BTC"])
    assert clock.sleeps == []
    client.candles("KRW-BTC")
    assert clock.sleeps == [pytest.approx(1.0)]


def test_order_group_allows_12_per_second(server: responses.RequestsMock,
                                          client: UpbitClient, clock: FakeClock) -> None:
    server.post(ORDERS, json=order_json(), status=201)
    for i in range(13):
        client.place_limit_order("KRW-BTC", "bid", Decimal(1000), Decimal(5), f"bot-{i}")
    assert clock.sleeps == [pytest.approx(1.0)]


def test_a_group_named_by_the_server_keeps_counting_earlier_sends(
        server: responses.RequestsMock, client: UpbitClient, clock: FakeClock) -> None:
    # The server calls the group "candles"; sends counted before that still count.
    server.get(CANDLES, json=[candle_json(1)],
               headers={"Remaining-Req": "group=candles; min=600; sec=9"})
    for _ in range(10):
        client.candles("KRW-BTC")
    assert clock.sleeps == []
    client.candles("KRW-BTC")
    assert clock.sleeps == [pytest.approx(1.0)]


# --- secrets -------------------------------------------------------------------

def test_no_secret_in_any_exception_or_log(server: responses.RequestsMock, clock: FakeClock,
                                           caplog: pytest.LogCaptureFixture) -> None:
    client = make_client(clock, max_retries=1)
    sent_tokens: list[str] = []

    def echo_auth(request: Any) -> tuple[int, dict[str, str], str]:
        # A hostile or buggy server that echoes the Authorization header back.
        header = request.headers.get("Authorization", "")
        sent_tokens.append(header.removeprefix("Bearer "))
        return 401, {}, json.dumps(upbit_error("jwt_verification", f"bad {header} {SECRET}"))

    server.add_callback(responses.GET, f"{BASE}/v1/accounts", callback=echo_auth)
    server.add_callback(responses.GET, f"{BASE}/v1/orders/chance", callback=echo_auth)
    server.get(ORDER, body=requests.ConnectionError(f"reset; key={SECRET} access={ACCESS}"))
    server.delete(ORDER, json=upbit_error("server_error", SECRET), status=500)
    server.post(ORDERS, body=requests.ReadTimeout(f"timeout secret={SECRET}"))
    server.get(f"{BASE}/v1/orders/open", body="<html>" + SECRET + "</html>", status=200)
    server.get(CANDLES, body="x", status=418)

    calls = [
        client.balances,
        lambda: client.order_chance("KRW-BTC"),
        lambda: client.get_order(uuid="u-1"),
        lambda: client.cancel_order(uuid="u-1"),
        lambda: client.place_limit_order("KRW-BTC", "bid", Decimal(1000), Decimal(5), "b-1"),
        client.open_orders,
        lambda: client.candles("KRW-BTC"),
        client.balances,  # refused: banned
    ]
    errors: list[BaseException] = []
    with caplog.at_level(logging.DEBUG):
        for call in calls:
            with pytest.raises(ExchangeError) as caught:
                call()
            errors.append(caught.value)
    assert sent_tokens and all(sent_tokens)
    forbidden = [SECRET, ACCESS, *sent_tokens]
    texts = [text for e in errors for text in (str(e), repr(e), repr(vars(e)))]
    texts += [r.getMessage() + repr(getattr(r, "fields", {})) for r in caplog.records]
    texts.append(repr(client))
    for text in texts:
        for secret in forbidden:
            assert secret not in text, text
        assert "Bearer ey" not in text


def test_sec_0_waits_only_until_the_oldest_send_leaves_the_window(
        server: responses.RequestsMock, client: UpbitClient, clock: FakeClock) -> None:
    for sec in (9, 0, 9):
        server.get(CANDLES, json=[candle_json(1)],
                   headers={"Remaining-Req": f"group=candle; min=600; sec={sec}"})
    client.candles("KRW-BTC")
    clock.now += 0.4
    client.candles("KRW-BTC")  # the server says this second is used up
    client.candles("KRW-BTC")
    assert clock.sleeps == [pytest.approx(0.6)]


@pytest.mark.parametrize(("method", "path", "group"), [
    ("GET", "/v1/candles/minutes/1", "candle"),
    ("GET", "/v1/market/all", "market"),
    ("GET", "/v1/ticker", "ticker"),
    ("GET", "/v1/orderbook/instruments", "orderbook"),
    ("POST", "/v1/orders", "order"),
    ("POST", "/v1/orders/test", "order-test"),
    ("DELETE", "/v1/orders/open", "order-cancel-all"),
    ("GET", "/v1/ticker/all", "ticker"),
    ("GET", "/v1/trades/ticks", "trade"),
    ("GET", "/v1/api_keys", "default"),
    ("GET", "/v1/orders/open", "default"),
    ("GET", "/v1/orders/chance", "default"),
    ("DELETE", "/v1/order", "default"),
    ("GET", "/v1/accounts", "default"),
])
def test_route_groups(method: str, path: str, group: str) -> None:
    assert route_group(method, path) == group
    assert group in GROUP_LIMITS


def test_parse_remaining() -> None:
    assert parse_remaining("group=default; min=1800; sec=29") == ("default", 29)
    assert parse_remaining("group=order-cancel-all; min=1; sec=0") == ("order-cancel-all", 0)
    assert parse_remaining(None) is None and parse_remaining("garbage") is None


def test_from_settings_uses_base_keys_and_timeout(server: responses.RequestsMock) -> None:
    settings = load_settings({"UPBIT_API_BASE": BASE + "/", "UPBIT_ACCESS_KEY": ACCESS,
                              "UPBIT_SECRET_KEY": SECRET, "UPBIT_TIMEOUT_SECONDS": "7.5"})
    seen: list[Any] = []
    client = UpbitClient.from_settings(settings)
    original = client._transport.session.request

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs["timeout"])
        return original(*args, **kwargs)

    client._transport.session.request = spy  # type: ignore[method-assign]
    server.get(f"{BASE}/v1/accounts", json=[])
    assert client.balances() == []
    assert seen == [(3.05, 7.5)]
    assert "Authorization" in server.calls[0].request.headers
    client.close()


@pytest.mark.parametrize("body", [{"market": "KRW-BTC"}, ["KRW-BTC"]])
def test_markets_and_ticker_must_be_lists_of_objects(server: responses.RequestsMock,
                                                     client: UpbitClient, body: Any) -> None:
    server.get(f"{BASE}/v1/market/all", json=body)
    server.get(f"{BASE}/v1/ticker", json=body)
    with pytest.raises(MalformedResponse):
        client.markets()
    with pytest.raises(MalformedResponse):
        client.ticker(["KRW-BTC"])


@pytest.mark.parametrize(("status", "name", "method", "expected"), [
    (400, "insufficient_funds_bid", "POST", InsufficientFunds),
    (404, "404", "GET", NotFound),
    (401, "some_new_name", "GET", AuthError),
    (503, "server_error", "GET", ExchangeTemporaryError),
    (503, "server_error", "POST", OrderSubmitUnknown),
    (400, "", "GET", ExchangeError),
    (429, None, "GET", RateLimited),
    (418, None, "DELETE", Banned),
    (502, None, "GET", ExchangeTemporaryError),
    (200, None, "GET", MalformedResponse),
    (200, None, "POST", OrderSubmitUnknown),
])
def test_error_class_table(status: int, name: str | None, method: str,
                           expected: type[ExchangeError]) -> None:
    assert error_class(status, name, method) is expected


def test_error_fields_reads_only_upbits_shape() -> None:
    assert error_fields(upbit_error("nonce_used", "again")) == ("nonce_used", "again")
    assert error_fields({"error": {"name": 404}}) == ("404", "")
    assert error_fields({"error": "flat"}) is None and error_fields(["x"]) is None


# --- market list, tickers, order chance, api keys (bodies as the SDK's types) ---

def market_item(market: str, *, warning: bool | None = None,
                caution: dict[str, bool | None] | None = None) -> dict[str, Any]:
    """An item of ``/v1/market/all?is_details=true`` (types/trading_pair_list_response.py)."""
    item: dict[str, Any] = {"market": market, "korean_name": "코인", "english_name": "Coin"}
    if warning is not None or caution is not None:
        item["market_event"] = {"warning": warning, "caution": caution}
    return item


def test_markets_read_warning_and_caution_flags(server: responses.RequestsMock,
                                                client: UpbitClient) -> None:
    server.get(f"{BASE}/v1/market/all", json=[
        market_item("KRW-BTC", warning=False, caution={
            "PRICE_FLUCTUATIONS": False, "TRADING_VOLUME_SOARING": False,
            "DEPOSIT_AMOUNT_SOARING": False, "GLOBAL_PRICE_DIFFERENCES": False,
            "CONCENTRATION_OF_SMALL_ACCOUNTS": False}),
        market_item("KRW-WARN", warning=True, caution={"PRICE_FLUCTUATIONS": False}),
        market_item("KRW-CAUT", warning=False, caution={
            "PRICE_FLUCTUATIONS": True, "TRADING_VOLUME_SOARING": None,
            "GLOBAL_PRICE_DIFFERENCES": True}),
        market_item("KRW-PLAIN"),
        {**market_item("KRW-OLD"), "market_warning": "CAUTION"},
        {**market_item("KRW-NONE"), "market_warning": "NONE"},
    ])
    infos = {info.market: info for info in client.markets(details=True)}
    assert infos["KRW-BTC"] == MarketInfo("KRW-BTC", "코인", "Coin", False, frozenset())
    assert infos["KRW-WARN"].warning and infos["KRW-WARN"].cautions == frozenset()
    assert not infos["KRW-CAUT"].warning
    assert infos["KRW-CAUT"].cautions == {"PRICE_FLUCTUATIONS", "GLOBAL_PRICE_DIFFERENCES"}
    assert not infos["KRW-PLAIN"].warning and not infos["KRW-PLAIN"].cautions
    assert infos["KRW-OLD"].warning and not infos["KRW-NONE"].warning


def test_markets_without_details_do_not_ask_for_them(server: responses.RequestsMock,
                                                     client: UpbitClient) -> None:
    server.get(f"{BASE}/v1/market/all", json=[market_item("KRW-BTC")])
    (info,) = client.markets(details=False)
    assert info.market == "KRW-BTC" and query_of(server.calls[0]) == {}


@pytest.mark.parametrize(("item", "field"), [
    ({**market_item("KRW-BTC"), "market_event": {"warning": "yes"}}, "warning"),
    ({**market_item("KRW-BTC"), "market_event": {"caution": ["PRICE_FLUCTUATIONS"]}},
     "caution"),
    ({**market_item("KRW-BTC"), "market_event": {"caution": {"PRICE_FLUCTUATIONS": 1}}},
     "PRICE_FLUCTUATIONS"),
    ({"market": "KRW-BTC", "english_name": "Bitcoin"}, "korean_name"),
])
def test_markets_malformed(server: responses.RequestsMock, client: UpbitClient,
                           item: dict[str, Any], field: str) -> None:
    server.get(f"{BASE}/v1/market/all", json=[item])
    with pytest.raises(MalformedResponse, match=field):
        client.markets()


def ticker_item(market: str, trade_price: Any, traded_24h: Any) -> dict[str, Any]:
    """A ticker as types/ticker.py lists it (the KRW API sends numbers, the SDK strings)."""
    return {"market": market, "trade_date": "20250101", "trade_time": "000005",
            "trade_date_kst": "20250101", "trade_time_kst": "090005",
            "trade_timestamp": 1735689605000, "opening_price": trade_price,
            "high_price": trade_price, "low_price": trade_price, "trade_price": trade_price,
            "prev_closing_price": trade_price, "change": "EVEN", "change_price": 0,
            "change_rate": 0, "signed_change_price": 0, "signed_change_rate": 0,
            "trade_volume": "0.001", "acc_trade_price": traded_24h,
            "acc_trade_price_24h": traded_24h, "acc_trade_volume": 12.5,
            "acc_trade_volume_24h": 30.1, "highest_52_week_price": trade_price,
            "highest_52_week_date": "2024-12-17", "lowest_52_week_price": trade_price,
            "lowest_52_week_date": "2024-01-23", "timestamp": 1735689606123}


def test_tickers_all_reads_every_market_of_the_quote(server: responses.RequestsMock,
                                                     client: UpbitClient) -> None:
    server.get(f"{BASE}/v1/ticker/all", json=[
        ticker_item("KRW-BTC", "143000000", "351234567890.123456"),
        ticker_item("KRW-XRP", 3120.5, 98765432.1)])
    btc, xrp = client.tickers_all()
    assert query_of(server.calls[0]) == {"quote_currencies": ["KRW"]}
    assert btc == Ticker("KRW-BTC", Decimal(143000000), Decimal("351234567890.123456"),
                         datetime(2025, 1, 1, 0, 0, 6, 123000, tzinfo=UTC))
    assert isinstance(xrp.trade_price, Decimal) and xrp.trade_price == Decimal("3120.5")
    assert xrp.acc_trade_price_24h == Decimal("98765432.1")


@pytest.mark.parametrize(("change", "field"), [
    ({"acc_trade_price_24h": None}, "acc_trade_price_24h"),
    ({"trade_price": 0}, "trade_price"),
    ({"timestamp": "yesterday"}, "timestamp"),
])
def test_tickers_all_malformed(server: responses.RequestsMock, client: UpbitClient,
                               change: dict[str, Any], field: str) -> None:
    server.get(f"{BASE}/v1/ticker/all", json=[{**ticker_item("KRW-BTC", 1, 2), **change}])
    with pytest.raises(MalformedResponse, match=field):
        client.tickers_all("KRW")


def chance_body(**change: Any) -> dict[str, Any]:
    """types/order_retrieve_chance_response.py."""
    account = {"currency": "KRW", "balance": "100000", "locked": "0", "avg_buy_price": "0",
               "avg_buy_price_modified": False, "unit_currency": "KRW"}
    body: dict[str, Any] = {
        "bid_fee": "0.0005", "ask_fee": "0.0005", "maker_bid_fee": "0.0002",
        "maker_ask_fee": "0.0002",
        "market": {"id": "KRW-BTC", "name": "BTC/KRW", "order_sides": ["ask", "bid"],
                   "bid_types": ["limit", "price", "best_fok"],
                   "ask_types": ["limit", "market", "best_fok"],
                   "bid": {"currency": "KRW", "min_total": "5000"},
                   "ask": {"currency": "BTC", "min_total": "5000"},
                   "max_total": "1000000000", "state": "active"},
        "bid_account": account, "ask_account": {**account, "currency": "BTC"}}
    body.update(change)
    return body


def test_order_chance_reads_fees_and_minimums(server: responses.RequestsMock,
                                              client: UpbitClient) -> None:
    server.get(f"{BASE}/v1/orders/chance", json=chance_body())
    assert client.order_chance("KRW-BTC") == OrderChance(
        "KRW-BTC", Decimal("0.0005"), Decimal("0.0005"), Decimal("0.0002"), Decimal("0.0002"),
        Decimal(5000), Decimal(5000))
    assert query_of(server.calls[0]) == {"market": ["KRW-BTC"]}


def test_order_chance_without_maker_fees_uses_the_taker_fee(
        server: responses.RequestsMock, client: UpbitClient) -> None:
    old = chance_body(ask_fee="0.0025")
    del old["maker_bid_fee"], old["maker_ask_fee"]
    server.get(f"{BASE}/v1/orders/chance", json=old)
    server.get(f"{BASE}/v1/orders/chance", json=chance_body(maker_bid_fee="0"))
    chance = client.order_chance("KRW-BTC")
    assert (chance.maker_bid_fee, chance.maker_ask_fee) == (Decimal("0.0005"),
                                                            Decimal("0.0025"))
    assert client.order_chance("KRW-BTC").maker_bid_fee == Decimal(0)  # a zero fee stays zero


@pytest.mark.parametrize(("body", "field"), [
    (chance_body(bid_fee=None), "bid_fee"),
    (chance_body(market={"id": "KRW-BTC", "bid": {"currency": "KRW"},
                         "ask": {"currency": "BTC", "min_total": "5000"}}), "min_total"),
    (chance_body(market="KRW-BTC"), "object"),
    ([chance_body()], "object"),
])
def test_order_chance_malformed(server: responses.RequestsMock, client: UpbitClient,
                                body: Any, field: str) -> None:
    server.get(f"{BASE}/v1/orders/chance", json=body)
    with pytest.raises(MalformedResponse, match=field):
        client.order_chance("KRW-BTC")


def test_api_keys_read_expiry_in_utc_and_hide_the_key_from_repr(
        server: responses.RequestsMock, client: UpbitClient) -> None:
    server.get(f"{BASE}/v1/api_keys", json=[
        {"access_key": ACCESS, "expire_at": "2027-03-01T15:20:00+09:00"},
        {"access_key": "other-key-xyz", "expire_at": "2026-12-24T09:00:00+09:00"}])
    ours, other = client.api_keys()
    assert ours == ApiKey(ACCESS, datetime(2027, 3, 1, 6, 20, tzinfo=UTC))
    assert other.expire_at == datetime(2026, 12, 24, 0, 0, tzinfo=UTC)
    assert ACCESS not in repr(ours) and "other-key-xyz" not in repr(other)


def test_api_keys_malformed(server: responses.RequestsMock, client: UpbitClient) -> None:
    server.get(f"{BASE}/v1/api_keys", json=[{"access_key": ACCESS,
                                            "expire_at": "2027-03-01 15:20:00"}])
    with pytest.raises(MalformedResponse, match="expire_at") as caught:
        client.api_keys()
    assert ACCESS not in str(caught.value)


# --- the test order (the live preflight) ---------------------------------------

TEST_ORDERS = f"{ORDERS}/test"


def test_test_order_returns_the_order_upbit_would_place(server: responses.RequestsMock,
                                                        client: UpbitClient) -> None:
    # types/order.py: no trades; prevented_* are today's fields.
    server.post(TEST_ORDERS, status=201, json=order_json(
        uuid="cdd92199-2897-4e14-9448-f923320408ad", identifier="bot-test-1",
        prevented_volume="0", prevented_locked="0"))
    order = client.test_order("KRW-BTC", "bid", Decimal(143000000), Decimal("0.0001"),
                              identifier="bot-test-1")
    assert order.uuid == "cdd92199-2897-4e14-9448-f923320408ad"
    assert (order.state, order.side, order.price) == ("wait", "bid", Decimal(143000000))
    assert json.loads(server.calls[0].request.body)["identifier"] == "bot-test-1"


def test_test_order_answer_without_price_or_volume_keys_is_read(
        server: responses.RequestsMock, client: UpbitClient) -> None:
    body = order_json()
    del body["price"], body["volume"]  # optional in types/order.py
    server.post(TEST_ORDERS, status=201, json=body)
    order = client.test_order("KRW-BTC", "bid", Decimal(1000), Decimal(5))
    assert order.price is None and order.volume is None


@pytest.mark.parametrize(("name", "status", "cls"), [
    ("out_of_scope", 401, AuthError),
    ("no_authorization_i_p", 401, AuthError),
    ("expired_access_key", 401, AuthError),
    ("jwt_verification", 401, AuthError),
    ("insufficient_funds_bid", 400, InsufficientFunds),
    ("invalid_price_bid", 400, InvalidOrder),
])
def test_test_order_refusals_keep_upbits_name(server: responses.RequestsMock,
                                              client: UpbitClient, clock: FakeClock,
                                              name: str, status: int,
                                              cls: type[ExchangeError]) -> None:
    server.post(TEST_ORDERS, status=status, json=upbit_error(name, "거부"))
    with pytest.raises(ExchangeError) as caught:
        client.test_order("KRW-BTC", "bid", Decimal(1000), Decimal(5))
    assert type(caught.value) is cls
    assert (caught.value.name, caught.value.path) == (name, "/v1/orders/test")
    assert len(server.calls) == 1 and clock.sleeps == []


@pytest.mark.parametrize("answer", [
    {"status": 500, "json": upbit_error("server_error", "x")},
    {"status": 502, "body": "<html>bad gateway</html>"},
    {"body": requests.ReadTimeout("read timed out")},
])
def test_test_order_is_sent_once_and_a_lost_answer_is_only_temporary(
        server: responses.RequestsMock, client: UpbitClient, clock: FakeClock,
        answer: dict[str, Any]) -> None:
    server.post(TEST_ORDERS, **answer)
    with pytest.raises(ExchangeTemporaryError) as caught:
        client.test_order("KRW-BTC", "bid", Decimal(1000), Decimal(5))
    # Nothing can have been placed: not "submit unknown".
    assert not isinstance(caught.value, OrderSubmitUnknown)
    assert caught.value.path == "/v1/orders/test"
    assert len(server.calls) == 1 and clock.sleeps == []


def test_test_order_unreadable_answer_is_malformed(server: responses.RequestsMock,
                                                   client: UpbitClient) -> None:
    server.post(TEST_ORDERS, status=201, json={"uuid": "u-1"})
    with pytest.raises(MalformedResponse):
        client.test_order("KRW-BTC", "bid", Decimal(1000), Decimal(5))


def test_test_order_refuses_bad_arguments(server: responses.RequestsMock,
                                          client: UpbitClient) -> None:
    for args in (("KRW-BTC", "buy", Decimal(1), Decimal(1)),
                 ("KRW-BTC", "bid", Decimal(0), Decimal(1)),
                 ("KRW-BTC", "ask", Decimal(1), Decimal(0))):
        with pytest.raises(ValueError):
            client.test_order(*args)  # type: ignore[arg-type]
    assert len(server.calls) == 0


def test_test_orders_have_their_own_group_of_8_per_second(
        server: responses.RequestsMock, client: UpbitClient, clock: FakeClock) -> None:
    server.post(TEST_ORDERS, json=order_json(), status=201)
    server.post(ORDERS, json=order_json(), status=201)
    for _ in range(8):
        client.test_order("KRW-BTC", "bid", Decimal(1000), Decimal(5))
    client.place_limit_order("KRW-BTC", "bid", Decimal(1000), Decimal(5), "bot-1")
    assert clock.sleeps == []  # real orders are counted apart
    client.test_order("KRW-BTC", "bid", Decimal(1000), Decimal(5))
    assert clock.sleeps == [pytest.approx(1.0)]


# --- bans: how long, repeats, one log line, a board from the settings -----------

@pytest.mark.parametrize(("answer", "seconds"), [
    ({"json": upbit_error("too_many_requests", "요청이 너무 많아 30초 동안 차단됩니다.")}, 30),
    ({"json": upbit_error("banned", "You are blocked for 45 seconds")}, 45),
    ({"json": upbit_error("banned", "차단 시간: 2분")}, 120),
    ({"body": "<html>IP blocked for 90 seconds</html>", "content_type": "text/html"}, 90),
    ({"json": upbit_error("banned", "30초"), "headers": {"Retry-After": "15"}}, 15),
    ({"json": upbit_error("banned", "잠시 후 다시 시도해 주세요")}, 60),
])
def test_418_reads_the_ban_length_from_the_answer(server: responses.RequestsMock,
                                                  client: UpbitClient,
                                                  answer: dict[str, Any],
                                                  seconds: float) -> None:
    server.get(CANDLES, status=418, **answer)
    with pytest.raises(Banned) as caught:
        client.candles("KRW-BTC")
    assert caught.value.retry_after == seconds


def test_repeated_418s_double_the_ban_and_the_count_starts_over_later(
        server: responses.RequestsMock, client: UpbitClient, clock: FakeClock) -> None:
    server.get(CANDLES, status=418, json=upbit_error("banned", "blocked for 60 seconds"))
    waits = []
    for gap in (0, 10, 10, 10, 601):
        clock.now += gap
        with pytest.raises(Banned) as caught:
            client.candles("KRW-BTC")
        waits.append(caught.value.retry_after)
        clock.now += caught.value.retry_after  # wait it out
    assert waits == [60, 120, 240, 480, 60]
    assert len(server.calls) == 5


def test_the_ban_is_capped_at_an_hour(server: responses.RequestsMock, client: UpbitClient,
                                      clock: FakeClock) -> None:
    server.get(CANDLES, status=418, json=upbit_error("banned", "blocked for 2000 seconds"))
    waits = []
    for _ in range(3):
        with pytest.raises(Banned) as caught:
            client.candles("KRW-BTC")
        waits.append(caught.value.retry_after)
        clock.now += caught.value.retry_after + 1
    assert waits == [2000, 3600, 3600]


def test_one_log_line_per_ban_not_per_refused_request(server: responses.RequestsMock,
                                                      client: UpbitClient, clock: FakeClock,
                                                      caplog: pytest.LogCaptureFixture
                                                      ) -> None:
    server.get(CANDLES, status=418, json=upbit_error("banned", "blocked"),
               headers={"Retry-After": "30"})
    with caplog.at_level(logging.WARNING, logger="bot.exchange.transport"):
        for _ in range(5):
            with pytest.raises(Banned):
                client.candles("KRW-BTC")
            clock.now += 1
    bans = [r for r in caplog.records if getattr(r, "event", "") == "upbit.banned"]
    assert len(bans) == 1 and len(server.calls) == 1
    fields = bans[0].fields  # type: ignore[attr-defined]
    assert fields["retry_after"] == 30 and fields["strikes"] == 1
    assert 29 <= (fields["until"] - datetime.now(UTC)).total_seconds() <= 30
    assert bans[0].levelno == logging.WARNING


def test_from_settings_shares_the_board_it_is_given(server: responses.RequestsMock) -> None:
    settings = load_settings({"UPBIT_API_BASE": BASE, "UPBIT_ACCESS_KEY": ACCESS,
                              "UPBIT_SECRET_KEY": SECRET})
    board = MemoryBans()
    board.record(30)
    server.get(f"{BASE}/v1/accounts", json=[])
    for quick in (False, True):
        with UpbitClient.from_settings(settings, quick=quick, bans=board) as client, \
                pytest.raises(Banned) as caught:
            client.balances()
        assert 0 < caught.value.retry_after <= 30
    assert len(server.calls) == 0
