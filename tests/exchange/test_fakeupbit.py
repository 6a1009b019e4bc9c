"""The fake Upbit server (testkit/fakeupbit.py) speaks Upbit's API as the other tests
assume: candle paging, gaps, the in-progress candle, rate limits, JWT checks, order
fills with exact balances, and fault injection. Plain ``requests`` and hand-made JWTs,
so nothing here depends on the daemon's own client."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import jwt
import pytest
import requests

from testkit import ROOT
from testkit.fakeupbit import (
    ERROR_DUPLICATE_IDENTIFIER,
    ERROR_NOT_CANCELLABLE,
    FakeUpbit,
    ManualClock,
)
from testkit.upbit_json import FAKE_ACCESS, FAKE_SECRET, query_of, send

ACCESS, SECRET = FAKE_ACCESS, FAKE_SECRET
CANDLES = "/v1/candles/minutes/1"


def candles(server: FakeUpbit, **params: Any) -> list[dict[str, Any]]:
    response = requests.get(server.url + CANDLES, params={"market": "KRW-BTC", **params},
                            timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


def all_candles(server: FakeUpbit, market: str = "KRW-BTC") -> list[list[dict[str, Any]]]:
    pages, to = [], None
    while True:
        params = {"market": market, "count": 200, **({"to": to} if to else {})}
        page = requests.get(server.url + CANDLES, params=params, timeout=5).json()
        if not page:
            return pages
        pages.append(page)
        to = page[-1]["candle_date_time_utc"] + "Z"


def minute(text: str) -> int:
    """``candle_date_time_utc`` -> absolute minute index."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()) // 60


def auth(query: str, *, alg: str = "HS512", secret: str = SECRET, access: str = ACCESS,
         nonce: str | None = None, query_hash: str | None = None) -> dict[str, str]:
    payload: dict[str, Any] = {"access_key": access, "nonce": nonce or str(uuid.uuid4())}
    if query:
        payload["query_hash"] = query_hash or hashlib.sha512(query.encode()).hexdigest()
        payload["query_hash_alg"] = "SHA512"
    return {"Authorization": "Bearer " + jwt.encode(payload, secret, algorithm=alg)}


def private(server: FakeUpbit, method: str, path: str, params: dict[str, Any] | None = None,
            *, form: bool = False, timeout: float = 5, **token: Any) -> requests.Response:
    """A signed call: the query string hashed is exactly the one sent (unquoted)."""
    pairs, query = query_of(params)
    return send(server.url, method, path, pairs, query, auth(query, **token), form=form,
                timeout=timeout)


def bid(server: FakeUpbit, price: str, volume: str, **extra: Any) -> requests.Response:
    return private(server, "POST", "/v1/orders", {"market": "KRW-BTC", "side": "bid",
                                                  "volume": volume, "price": price,
                                                  "ord_type": "limit", **extra})


def error_name(response: requests.Response) -> Any:
    return response.json()["error"]["name"]


# --- candles ---------------------------------------------------------------------------


def test_pages_walk_back_newest_first_with_to_exclusive(upbit: FakeUpbit) -> None:
    pages = all_candles(upbit)
    assert [len(p) for p in pages] == [200, 200, 51]  # 450 closed minutes + the current one
    stamps = [minute(c["candle_date_time_utc"]) for page in pages for c in page]
    assert stamps[0] == upbit.current_minute()
    assert stamps == list(range(stamps[0], stamps[0] - 451, -1))  # contiguous, newest first
    first = pages[0][0]
    assert first["candle_date_time_kst"] == "2025-01-01T09:10:00"
    assert set(first) >= {"market", "candle_date_time_utc", "opening_price", "high_price",
                          "low_price", "trade_price", "timestamp", "candle_acc_trade_price",
                          "candle_acc_trade_volume", "unit"}
    # Exactly one candle is in progress: every other one already has its final values.
    in_progress = [c for page in pages for c in page
                   if Decimal(str(c["candle_acc_trade_volume"]))
                   != upbit.candle("KRW-BTC", c["candle_date_time_utc"] + "Z")["volume"]]
    assert in_progress == [first]
    # `to` is exclusive, in any of Upbit's spellings.
    for to in ("2025-01-01T00:05:00Z", "2025-01-01 00:05:00", "2025-01-01T00:05:00",
               "2025-01-01T09:05:00+09:00"):
        assert candles(upbit, to=to, count=2)[0]["candle_date_time_utc"] == "2025-01-01T00:04:00"
    assert len(candles(upbit)) == 1  # Upbit's default count
    too_many = requests.get(upbit.url + CANDLES, params={"market": "KRW-BTC", "count": 201},
                            timeout=5)
    assert too_many.status_code == 400
    unknown = requests.get(upbit.url + CANDLES, params={"market": "KRW-NOPE"}, timeout=5)
    assert unknown.status_code == 404 and unknown.json()["error"]["message"] == "Code not found"


def test_prices_sit_on_the_tick_and_candles_are_consistent(upbit: FakeUpbit) -> None:
    for c in candles(upbit, count=200):
        o, h, low, close = (Decimal(str(c[k])) for k in ("opening_price", "high_price",
                                                         "low_price", "trade_price"))
        assert all(p % 1000 == 0 for p in (o, h, low, close))
        assert low <= min(o, close) <= max(o, close) <= h
        assert c["candle_acc_trade_volume"] > 0 and c["candle_acc_trade_price"] > 0


def test_gaps_are_deterministic_by_seed(clock: ManualClock) -> None:
    def fetch(seed: int) -> list[list[dict[str, Any]]]:
        with FakeUpbit(clock=clock, history_minutes=600, gap_probability=0.3,
                       seed=seed) as server:
            return all_candles(server)

    pages = fetch(7)
    stamps = [minute(c["candle_date_time_utc"]) for page in pages for c in page]
    assert 300 < len(stamps) < 540  # about 70 % of 601 minutes have a trade
    assert stamps == sorted(set(stamps), reverse=True)
    first_page = [minute(c["candle_date_time_utc"]) for c in pages[0]]
    assert first_page[0] - first_page[-1] + 1 > 200  # a page of 200 spans more minutes
    assert fetch(7) == pages
    assert fetch(8) != pages


def test_in_progress_candle_evolves_then_freezes(upbit: FakeUpbit, clock: ManualClock) -> None:
    clock.set("2025-01-01T00:10:05Z")
    early = candles(upbit)[0]
    clock.set("2025-01-01T00:10:45Z")
    late = candles(upbit)[0]
    assert early["candle_date_time_utc"] == late["candle_date_time_utc"] == "2025-01-01T00:10:00"
    assert early != late
    assert early["candle_acc_trade_volume"] < late["candle_acc_trade_volume"]
    assert early["opening_price"] == late["opening_price"]
    clock.set("2025-01-01T00:11:00.5Z")
    newest, closed = candles(upbit, count=2)
    assert newest["candle_date_time_utc"] == "2025-01-01T00:11:00"
    final = upbit.candle("KRW-BTC", "2025-01-01T00:10:00Z")
    assert Decimal(str(closed["trade_price"])) == final["close"]
    assert Decimal(str(closed["candle_acc_trade_volume"])) == final["volume"]
    assert late["high_price"] <= closed["high_price"] and late["low_price"] >= closed["low_price"]
    assert late != closed
    clock.advance(minutes=30)
    assert candles(upbit, to="2025-01-01T00:11:00Z")[0] == closed


def test_other_units_are_aggregated_from_minutes(upbit: FakeUpbit) -> None:
    five = requests.get(upbit.url + "/v1/candles/minutes/5",
                        params={"market": "KRW-BTC", "count": 2}, timeout=5).json()
    assert [c["candle_date_time_utc"] for c in five] == ["2025-01-01T00:10:00",
                                                         "2025-01-01T00:05:00"]
    ones = candles(upbit, count=5, to="2025-01-01T00:10:00Z")  # 00:09 .. 00:05
    closed = five[1]
    assert closed["opening_price"] == ones[-1]["opening_price"]
    assert closed["trade_price"] == ones[0]["trade_price"]
    assert closed["high_price"] == max(c["high_price"] for c in ones)
    assert closed["low_price"] == min(c["low_price"] for c in ones)
    assert closed["unit"] == 5
    bad = requests.get(upbit.url + "/v1/candles/minutes/2", params={"market": "KRW-BTC"},
                       timeout=5)
    assert bad.status_code == 400


def test_market_ticker_and_instruments(upbit: FakeUpbit) -> None:
    markets = requests.get(upbit.url + "/v1/market/all", timeout=5).json()
    assert markets == [{"market": "KRW-BTC", "korean_name": "비트코인",
                        "english_name": "Bitcoin"}]
    ticker = requests.get(upbit.url + "/v1/ticker", params={"markets": "KRW-BTC"},
                          timeout=5).json()
    assert ticker[0]["trade_price"] == candles(upbit)[0]["trade_price"]
    instruments = requests.get(upbit.url + "/v1/orderbook/instruments",
                               params={"markets": "KRW-BTC"}, timeout=5).json()
    assert instruments[0]["tick_size"] == "1000"


def test_clock_formula_matches_bot_clock() -> None:
    epoch = time.time() - 100
    server = FakeUpbit(speedup=60, epoch=epoch, history_minutes=10)
    expected = epoch + (time.time() - epoch) * 60
    assert abs(server.timestamp() - expected) < 1.0


# --- rate limits -----------------------------------------------------------------------


def test_rate_limit_answers_429_and_remaining_counts_down(clock: ManualClock) -> None:
    with FakeUpbit(clock=clock, history_minutes=10, rate_limit_per_sec=3) as server:
        session = requests.Session()
        url, params = server.url + CANDLES, {"market": "KRW-BTC"}
        replies = [session.get(url, params=params, timeout=5) for _ in range(4)]
        assert [r.status_code for r in replies] == [200, 200, 200, 429]
        assert [r.headers["Remaining-Req"] for r in replies[:3]] == [
            f"group=candle; min=1800; sec={n}" for n in (2, 1, 0)]
        assert replies[3].json() == {"error": {"name": "too_many_requests",
                                               "message": "Too many API requests."}}
        # Another group has its own allowance.
        assert session.get(server.url + "/v1/market/all", timeout=5).status_code == 200
        assert server.stats[CANDLES].requests == 4 and server.stats[CANDLES].throttled == 1
        time.sleep(1.05)
        assert session.get(url, params=params, timeout=5).status_code == 200
        assert [r.path for r in server.requests].count(CANDLES) == 5


def test_without_a_limit_nothing_is_throttled(upbit: FakeUpbit) -> None:
    session = requests.Session()
    replies = [session.get(upbit.url + CANDLES, params={"market": "KRW-BTC"}, timeout=5)
               for _ in range(15)]
    assert {r.status_code for r in replies} == {200}
    assert {r.headers["Remaining-Req"] for r in replies} == {"group=candle; min=1800; sec=9"}


# --- authentication ----------------------------------------------------------------------


def test_jwt_is_verified_like_upbit(upbit: FakeUpbit) -> None:
    accounts = private(upbit, "GET", "/v1/accounts")
    assert accounts.status_code == 200
    assert accounts.json() == [{"currency": "KRW", "balance": "1000000", "locked": "0",
                                "avg_buy_price": "0", "avg_buy_price_modified": False,
                                "unit_currency": "KRW"}]
    assert accounts.headers["Remaining-Req"].startswith("group=default;")
    assert private(upbit, "GET", "/v1/accounts", alg="HS256").status_code == 200

    no_token = requests.get(upbit.url + "/v1/accounts", timeout=5)
    assert (no_token.status_code, error_name(no_token)) == (401, "no_authorization_token")
    forged = private(upbit, "GET", "/v1/accounts", secret="x" * 64)
    assert (forged.status_code, error_name(forged)) == (401, "jwt_verification")
    stranger = private(upbit, "GET", "/v1/accounts", access="someone-else")
    assert (stranger.status_code, error_name(stranger)) == (401, "invalid_access_key")
    private(upbit, "GET", "/v1/accounts", nonce="n-1")
    reused = private(upbit, "GET", "/v1/accounts", nonce="n-1")
    assert (reused.status_code, error_name(reused)) == (401, "nonce_used")

    params = {"market": "KRW-BTC"}
    wrong_hash = private(upbit, "GET", "/v1/orders/chance", params,
                         query_hash=hashlib.sha512(b"market=KRW-ETH").hexdigest())
    assert (wrong_hash.status_code, error_name(wrong_hash)) == (401, "invalid_query_payload")
    chance = private(upbit, "GET", "/v1/orders/chance", params)
    assert chance.status_code == 200 and chance.json()["bid_fee"] == "0.0005"
    assert chance.json()["market"]["bid"]["min_total"] == "5000"

    # The hash covers the unquoted query even when the URL carries it quoted.
    query = "market=KRW-BTC&states[]=wait&states[]=watch"
    quoted = requests.get(upbit.url + "/v1/orders/open", headers=auth(query), timeout=5,
                          params=[("market", "KRW-BTC"), ("states[]", "wait"),
                                  ("states[]", "watch")])
    assert "%5B%5D" in quoted.url and quoted.status_code == 200, quoted.text
    verified = [r for r in upbit.private_requests if r.path == "/v1/orders/open"]
    assert verified[-1].params == (("market", "KRW-BTC"), ("states[]", "wait"),
                                   ("states[]", "watch"))


# --- orders ------------------------------------------------------------------------------


def scripted_market(server: FakeUpbit) -> None:
    """00:05 .. 00:15 around 50,000,000; 00:10 crosses a 50,000,000 bid but starts before
    the order (placed at 00:10:30), 00:11 does not cross, 00:12 does; 00:13 reaches a
    50,100,000 ask."""
    rows = [(f"2025-01-01T00:{m:02d}:00Z", 50_000_000, 50_050_000, 50_000_000, 50_020_000, 1)
            for m in range(5, 10)]
    rows += [
        ("2025-01-01T00:10:00Z", 50_020_000, 50_030_000, 49_900_000, 50_010_000, 1),
        ("2025-01-01T00:11:00Z", 50_110_000, 50_200_000, 50_100_000, 50_150_000, 1),
        ("2025-01-01T00:12:00Z", 50_150_000, 50_160_000, 49_990_000, 50_000_000, 1),
        ("2025-01-01T00:13:00Z", 50_000_000, 50_200_000, 49_990_000, 50_100_000, 1),
        ("2025-01-01T00:14:00Z", 50_100_000, 50_100_000, 50_000_000, 50_000_000, 1),
        ("2025-01-01T00:15:00Z", 50_000_000, 50_000_000, 49_000_000, 49_500_000, 1),
    ]
    server.set_candles("KRW-BTC", rows)


def test_order_fills_on_a_later_crossing_candle_with_exact_balances(
        upbit: FakeUpbit, clock: ManualClock) -> None:
    scripted_market(upbit)
    placed = bid(upbit, "50000000", "0.001", identifier="buy-1")
    assert placed.status_code == 201, placed.text
    order = placed.json()
    assert {k: order[k] for k in ("side", "ord_type", "price", "state", "market", "volume",
                                  "remaining_volume", "reserved_fee", "remaining_fee",
                                  "paid_fee", "locked", "executed_volume", "trades_count",
                                  "identifier", "created_at")} == {
        "side": "bid", "ord_type": "limit", "price": "50000000", "state": "wait",
        "market": "KRW-BTC", "volume": "0.001", "remaining_volume": "0.001",
        "reserved_fee": "25", "remaining_fee": "25", "paid_fee": "0", "locked": "50025",
        "executed_volume": "0", "trades_count": 0, "identifier": "buy-1",
        "created_at": "2025-01-01T09:10:30+09:00"}
    krw = upbit.balances()["KRW"]
    assert (krw.balance, krw.locked) == (Decimal("949975"), Decimal("50025"))

    def state() -> dict[str, Any]:
        reply = private(upbit, "GET", "/v1/order", {"uuid": order["uuid"]})
        assert reply.status_code == 200, reply.text
        return reply.json()

    clock.set("2025-01-01T00:11:30Z")  # 00:10 crossed, but it started before the order
    assert state()["state"] == "wait"
    clock.set("2025-01-01T00:12:59Z")  # 00:11 closed without crossing; 00:12 in progress
    assert state()["state"] == "wait"
    clock.set("2025-01-01T00:13:00Z")  # 00:12 closed, low 49,990,000 <= 50,000,000
    done = state()
    assert (done["state"], done["executed_volume"], done["paid_fee"], done["locked"]) == (
        "done", "0.001", "25", "0")
    assert [{k: t[k] for k in ("price", "volume", "funds", "side", "market")}
            for t in done["trades"]] == [{"price": "50000000", "volume": "0.001",
                                          "funds": "50000", "side": "bid", "market": "KRW-BTC"}]
    balances = upbit.balances()
    assert (balances["KRW"].balance, balances["KRW"].locked) == (Decimal("949975"), 0)
    assert balances["BTC"].balance == Decimal("0.001")
    assert balances["BTC"].avg_buy_price == Decimal("50000000")

    sold = private(upbit, "POST", "/v1/orders", {"market": "KRW-BTC", "side": "ask",
                                                 "volume": "0.001", "price": "50100000",
                                                 "ord_type": "limit"})
    assert sold.status_code == 201, sold.text
    assert upbit.balances()["BTC"].locked == Decimal("0.001")
    clock.set("2025-01-01T00:13:59Z")  # placed at 00:13:00 sharp: 00:13 counts, once closed
    assert upbit.order(sold.json()["uuid"]).state == "wait"
    clock.set("2025-01-01T00:14:00Z")  # 00:13 high 50,200,000 >= 50,100,000
    sale = upbit.order(sold.json()["uuid"])
    assert sale is not None and sale.state == "done" and sale.paid_fee == Decimal("25.05")
    balances = upbit.balances()
    assert balances["KRW"].balance == Decimal("1000049.95")  # 949,975 + 50,100 - 25.05
    assert (balances["BTC"].balance, balances["BTC"].locked) == (0, 0)
    listed = private(upbit, "GET", "/v1/accounts").json()
    assert [a["currency"] for a in listed] == ["KRW"]
    assert listed[0]["balance"] == "1000049.95"


def test_partial_fills_over_successive_crossing_minutes(clock: ManualClock) -> None:
    with FakeUpbit(clock=clock, history_minutes=10, secret_key=SECRET,
                   partial_fills=3) as server:
        server.set_price_path("KRW-BTC", [50_000_000] * 20,
                              start="2025-01-01T00:00:00Z")  # every minute crosses
        uuid_ = bid(server, "50000000", "0.001").json()["uuid"]
        executed = []
        for m in (11, 12, 13, 14):
            clock.set(f"2025-01-01T00:{m:02d}:10Z")
            executed.append(private(server, "GET", "/v1/order", {"uuid": uuid_}).json())
        assert [(o["state"], o["executed_volume"], o["trades_count"]) for o in executed] == [
            ("wait", "0", 0), ("wait", "0.00033333", 1), ("wait", "0.00066666", 2),
            ("done", "0.001", 3)]
        assert [t["volume"] for t in executed[-1]["trades"]] == [
            "0.00033333", "0.00033333", "0.00033334"]
        assert executed[-1]["paid_fee"] == "25"
        balances = server.balances()
        assert (balances["KRW"].balance, balances["KRW"].locked) == (Decimal("949975"), 0)
        assert balances["BTC"].balance == Decimal("0.001")


def test_identifier_is_never_reusable_and_cancel_releases_funds(upbit: FakeUpbit) -> None:
    first = bid(upbit, "49000000", "0.001", identifier="decision-1")
    assert first.status_code == 201
    listed = private(upbit, "GET", "/v1/orders/open",
                     {"market": "KRW-BTC", "states[]": ["wait", "watch"]}).json()
    assert [o["identifier"] for o in listed] == ["decision-1"]
    again = bid(upbit, "49000000", "0.001", identifier="decision-1")
    assert (again.status_code, error_name(again)) == (400, ERROR_DUPLICATE_IDENTIFIER)

    cancelled = private(upbit, "DELETE", "/v1/order", {"identifier": "decision-1"})
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancel"
    krw = upbit.balances()["KRW"]
    assert (krw.balance, krw.locked) == (Decimal("1000000"), 0)
    after_cancel = bid(upbit, "49000000", "0.001", identifier="decision-1")
    assert (after_cancel.status_code, error_name(after_cancel)) == (
        400, ERROR_DUPLICATE_IDENTIFIER)
    twice = private(upbit, "DELETE", "/v1/order", {"uuid": first.json()["uuid"]})
    assert (twice.status_code, error_name(twice)) == (400, ERROR_NOT_CANCELLABLE)
    assert private(upbit, "GET", "/v1/orders/open", {"market": "KRW-BTC"}).json() == []
    closed = private(upbit, "GET", "/v1/orders/closed", {"market": "KRW-BTC"}).json()
    assert [o["state"] for o in closed] == ["cancel"]
    missing = private(upbit, "GET", "/v1/order", {"identifier": "never-placed"})
    assert (missing.status_code, error_name(missing)) == (404, "order_not_found")


@pytest.mark.parametrize(("side", "price", "volume", "error"), [
    ("bid", "50000500", "0.001", "invalid_price_bid"),
    ("ask", "50000500", "0.001", "invalid_price_ask"),
    ("bid", "50000000", "0.000000001", "invalid_volume"),
    ("bid", "50000000", "1e-3", "invalid_volume"),
    ("bid", "50000000", "0", "invalid_volume"),
    ("bid", "50000000", "0.00009", "under_min_total_bid"),
    ("ask", "50000000", "0.00009", "under_min_total_ask"),
    ("bid", "50000000", "0.02", "insufficient_funds_bid"),
    ("ask", "50000000", "0.001", "insufficient_funds_ask"),
])
def test_order_validation(upbit: FakeUpbit, side: str, price: str, volume: str,
                          error: str) -> None:
    reply = private(upbit, "POST", "/v1/orders", {"market": "KRW-BTC", "side": side,
                                                  "volume": volume, "price": price,
                                                  "ord_type": "limit"})
    assert (reply.status_code, error_name(reply)) == (400, error)
    assert upbit.orders == []


# --- faults --------------------------------------------------------------------------------


def test_injected_failures(upbit: FakeUpbit) -> None:
    upbit.fail_next(2, status=500)
    upbit.fail_next(1, status=429, path_prefix="/v1/ticker")
    statuses = [requests.get(upbit.url + CANDLES, params={"market": "KRW-BTC"},
                             timeout=5).status_code for _ in range(3)]
    assert statuses == [500, 500, 200]
    throttled = requests.get(upbit.url + "/v1/ticker", params={"markets": "KRW-BTC"}, timeout=5)
    assert throttled.status_code == 429 and error_name(throttled) == "too_many_requests"
    assert upbit.stats["/v1/ticker"].throttled == 1

    upbit.fail_next(1, status=200, body="<html><body>maintenance</body></html>")
    html = requests.get(upbit.url + CANDLES, params={"market": "KRW-BTC"}, timeout=5)
    assert html.status_code == 200 and html.headers["Content-Type"].startswith("text/html")
    upbit.fail_next(1, status=418)
    assert requests.get(upbit.url + CANDLES, params={"market": "KRW-BTC"},
                        timeout=5).status_code == 418


def test_malformed_candle_answers(upbit: FakeUpbit) -> None:
    def fetch() -> requests.Response:
        return requests.get(upbit.url + CANDLES, params={"market": "KRW-BTC", "count": 3},
                            timeout=5)

    upbit.malform_next(1, "missing_field")
    assert "trade_price" not in fetch().json()[0]
    upbit.malform_next(1, "null_price")
    assert fetch().json()[0]["trade_price"] is None
    upbit.malform_next(1, "not_a_list")
    assert isinstance(fetch().json(), dict)
    for kind in ("non_json", "truncated"):
        upbit.malform_next(1, kind)
        with pytest.raises(ValueError):
            fetch().json()
    assert len(fetch().json()) == 3


def test_delayed_request_outlives_the_client_timeout(upbit: FakeUpbit) -> None:
    upbit.delay_next(1.0, path_prefix="/v1/candles/")
    with pytest.raises(requests.Timeout):
        requests.get(upbit.url + CANDLES, params={"market": "KRW-BTC"}, timeout=0.2)
    assert requests.get(upbit.url + CANDLES, params={"market": "KRW-BTC"},
                        timeout=5).status_code == 200


def test_order_committed_but_answer_lost(upbit: FakeUpbit) -> None:
    upbit.drop_after_commit_next()
    with pytest.raises(requests.ConnectionError):
        bid(upbit, "49000000", "0.001", identifier="lost-1")
    found = private(upbit, "GET", "/v1/order", {"identifier": "lost-1"})
    assert found.status_code == 200 and found.json()["state"] == "wait"
    retry = bid(upbit, "49000000", "0.001", identifier="lost-1")
    assert error_name(retry) == ERROR_DUPLICATE_IDENTIFIER

    upbit.drop_after_commit_next(mode="delay", delay=1.0)
    with pytest.raises(requests.Timeout):
        private(upbit, "POST", "/v1/orders", {"market": "KRW-BTC", "side": "bid",
                                              "volume": "0.001", "price": "49000000",
                                              "ord_type": "limit", "identifier": "late-1"},
                timeout=0.3)
    assert upbit.order("late-1") is not None
    assert len(upbit.orders) == 2


# --- standalone ------------------------------------------------------------------------------


def test_runs_standalone() -> None:
    root = ROOT
    process = subprocess.Popen(
        [sys.executable, "-m", "testkit.fakeupbit", "--port", "0", "--speedup", "60",
         "--epoch", str(time.time()), "--markets", "KRW-BTC,KRW-ETH", "--rate-limit", "10",
         "--history-minutes", "100"],
        cwd=root, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        markets = requests.get(url + "/v1/market/all", timeout=5).json()
        assert [m["market"] for m in markets] == ["KRW-BTC", "KRW-ETH"]
    finally:
        process.terminate()
        process.wait(timeout=10)
