"""The fake Upbit server speaks Upbit as it is today (issue 12): market events and
listings, the 24-hour ticker, per-market ticks, the account's fees and minimum, the
order preflight, key scopes, expiry and IP allow list, JSON-only bodies, cancels that
take a while, 418 bans that lengthen, and today's rate-limit groups. Plain ``requests``
and hand-made JWTs, so nothing here depends on the daemon's own client."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import jwt
import pytest
import requests

from testkit.fakeupbit import CAUTION_FLAGS, FakeUpbit, ManualClock
from testkit.upbit_json import FAKE_ACCESS, FAKE_SECRET, query_of, send

ACCESS, SECRET = FAKE_ACCESS, FAKE_SECRET
CANDLES = "/v1/candles/minutes/1"
ORDER_FIELDS = {"uuid", "side", "ord_type", "price", "state", "market", "created_at",
                "volume", "remaining_volume", "reserved_fee", "remaining_fee", "paid_fee",
                "locked", "executed_volume", "trades_count", "identifier",
                "prevented_volume", "prevented_locked"}


def private(server: FakeUpbit, method: str, path: str, params: dict[str, Any] | None = None,
            *, access: str = ACCESS, session: requests.Session | None = None,
            form: bool = False) -> requests.Response:
    """A signed call whose hashed query string is exactly the one sent."""
    pairs, query = query_of(params)
    payload: dict[str, Any] = {"access_key": access, "nonce": str(uuid.uuid4())}
    if query:
        payload["query_hash"] = hashlib.sha512(query.encode()).hexdigest()
        payload["query_hash_alg"] = "SHA512"
    headers = {"Authorization": "Bearer " + jwt.encode(payload, SECRET, algorithm="HS512")}
    return send(server.url, method, path, pairs, query, headers, form=form, session=session)


def order_params(price: str, volume: str = "0.001", side: str = "bid",
                 market: str = "KRW-BTC", **extra: Any) -> dict[str, Any]:
    return {"market": market, "side": side, "volume": volume, "price": price,
            "ord_type": "limit", **extra}


def public(server: FakeUpbit, path: str, **params: Any) -> requests.Response:
    return requests.get(server.url + path, params=params, timeout=5)


def error_of(response: requests.Response) -> tuple[int, Any]:
    return response.status_code, response.json()["error"]["name"]


# --- markets ---------------------------------------------------------------------------


def test_market_all_reports_market_events_and_no_market_warning(clock: ManualClock) -> None:
    with FakeUpbit(clock=clock, history_minutes=10, markets=("KRW-BTC", "KRW-ETH"),
                   start_price={"KRW-BTC": 50_000_000, "KRW-ETH": 3_000_000}) as server:
        server.set_market_event("KRW-ETH", warning=True,
                                cautions=("PRICE_FLUCTUATIONS", "DEPOSIT_AMOUNT_SOARING"))
        listed = public(server, "/v1/market/all", is_details="true").json()
        assert [set(item) for item in listed] == [
            {"market", "korean_name", "english_name", "market_event"}] * 2
        assert listed[0]["market_event"] == {"warning": False,
                                             "caution": dict.fromkeys(CAUTION_FLAGS, False)}
        assert listed[1]["market_event"] == {"warning": True, "caution": {
            "PRICE_FLUCTUATIONS": True, "TRADING_VOLUME_SOARING": False,
            "DEPOSIT_AMOUNT_SOARING": True, "GLOBAL_PRICE_DIFFERENCES": False,
            "CONCENTRATION_OF_SMALL_ACCOUNTS": False}}
        assert "market_event" not in public(server, "/v1/market/all").json()[0]
        with pytest.raises(ValueError):
            server.set_market_event("KRW-BTC", cautions=("NOT_A_FLAG",))


def test_markets_are_listed_and_delisted_at_run_time(upbit: FakeUpbit) -> None:
    upbit.list_market("KRW-NEW", start_price=1234, history_minutes=5, english_name="Newcoin")
    names = [(m["market"], m["english_name"]) for m in public(upbit, "/v1/market/all").json()]
    assert names == [("KRW-BTC", "Bitcoin"), ("KRW-NEW", "Newcoin")]
    new = public(upbit, CANDLES, market="KRW-NEW", count=200).json()
    assert len(new) == 6  # five closed minutes and the one in progress
    assert all(0.7 < c["trade_price"] / 1234 < 1.3 for c in new)  # the walk around 1,234

    placed = private(upbit, "POST", "/v1/orders", order_params("1000", "10", market="KRW-NEW"))
    assert placed.status_code == 201, placed.text
    assert upbit.balances()["KRW"].locked > 0
    upbit.delist_market("KRW-NEW")
    assert [m["market"] for m in public(upbit, "/v1/market/all").json()] == ["KRW-BTC"]
    for path, params in ((CANDLES, {"market": "KRW-NEW"}),
                         ("/v1/ticker", {"markets": "KRW-NEW"}),
                         ("/v1/orderbook/instruments", {"markets": "KRW-NEW"})):
        gone = public(upbit, path, **params)
        assert (gone.status_code, gone.json()["error"]["message"]) == (404, "Code not found")
    assert error_of(private(upbit, "POST", "/v1/orders",
                            order_params("1000", "10", market="KRW-NEW"))) == (
        400, "market_does_not_exist")
    # Its open order was cancelled and what it locked is free again.
    found = private(upbit, "GET", "/v1/order", {"uuid": placed.json()["uuid"]}).json()
    assert found["state"] == "cancel"
    krw = upbit.balances()["KRW"]
    assert (krw.balance, krw.locked) == (Decimal(1_000_000), 0)


# --- tickers ---------------------------------------------------------------------------


def test_ticker_all_lists_a_quote_with_24_hour_sums(clock: ManualClock) -> None:
    markets = ("KRW-BTC", "KRW-ETH", "BTC-ETH")
    prices = {"KRW-BTC": 50_000_000, "KRW-ETH": 3_000_000, "BTC-ETH": "0.05"}
    with FakeUpbit(clock=clock, history_minutes=2000, markets=markets,
                   start_price=prices) as server:
        # 1,500 minutes of 1,000 KRW each: the 24 hours up to now hold 1,440 of them.
        server.set_candles("KRW-ETH", [
            ((server.current_minute() - i) * 60, 3_000_000, 3_000_000, 3_000_000, 3_000_000,
             "0.001", 1000) for i in range(1500)])
        server.set_traded_value("KRW-BTC", 9_000_000_000)
        tickers = public(server, "/v1/ticker/all", quote_currencies="KRW").json()
        assert [t["market"] for t in tickers] == ["KRW-BTC", "KRW-ETH"]
        by_market = {t["market"]: t for t in tickers}
        assert by_market["KRW-ETH"]["acc_trade_price_24h"] == 1_440_000
        assert by_market["KRW-ETH"]["acc_trade_volume_24h"] == pytest.approx(1.44)
        btc = by_market["KRW-BTC"]
        assert btc["acc_trade_price_24h"] == 9_000_000_000
        assert btc["acc_trade_volume_24h"] == pytest.approx(9e9 / btc["trade_price"], 1e-6)
        assert {"trade_price", "acc_trade_price", "acc_trade_volume", "highest_52_week_price",
                "lowest_52_week_date", "signed_change_rate"} <= set(btc)

        one = public(server, "/v1/ticker", markets="KRW-ETH").json()[0]
        assert one["acc_trade_price_24h"] == 1_440_000
        server.set_traded_value("KRW-BTC", None)
        derived = public(server, "/v1/ticker", markets="KRW-BTC").json()[0]
        assert 0 < derived["acc_trade_price_24h"] != 9_000_000_000
        again = public(server, "/v1/ticker", markets="KRW-BTC").json()[0]
        assert again["acc_trade_price_24h"] == derived["acc_trade_price_24h"]
        assert public(server, "/v1/ticker/all").status_code == 400


# --- ticks -----------------------------------------------------------------------------


def test_instruments_report_the_fakes_own_tick_table(clock: ManualClock) -> None:
    markets = ("KRW-A", "KRW-B", "KRW-C")
    with FakeUpbit(clock=clock, history_minutes=10, markets=markets,
                   start_price={"KRW-A": 1500, "KRW-B": 50, "KRW-C": 750_000}) as server:
        ticks = public(server, "/v1/orderbook/instruments",
                       markets="KRW-A,KRW-B,KRW-C").json()
        assert [(t["market"], t["tick_size"], t["quote_currency"]) for t in ticks] == [
            ("KRW-A", "1", "KRW"), ("KRW-B", "0.1", "KRW"), ("KRW-C", "500", "KRW")]


def test_a_tick_override_moves_instruments_orders_and_candles(upbit: FakeUpbit) -> None:
    upbit.set_tick("KRW-BTC", 5000)
    tick = public(upbit, "/v1/orderbook/instruments", markets="KRW-BTC").json()[0]
    assert tick["tick_size"] == "5000"
    for c in public(upbit, CANDLES, market="KRW-BTC", count=200).json():
        for key in ("opening_price", "high_price", "low_price", "trade_price"):
            assert Decimal(str(c[key])) % 5000 == 0, c
    # 50,001,000 lies on the table's 1,000 KRW tick, not on this market's own.
    for path in ("/v1/orders/test", "/v1/orders"):
        for side in ("bid", "ask"):
            refused = private(upbit, "POST", path, order_params("50001000", side=side))
            assert error_of(refused) == (400, f"invalid_price_{side}")
    assert private(upbit, "POST", "/v1/orders", order_params("50005000")).status_code == 201
    upbit.set_tick("KRW-BTC", None)
    assert upbit.tick("KRW-BTC", 50_000_000) == Decimal(1000)


# --- fees and minimums -------------------------------------------------------------------


def test_chance_reports_scripted_fees_and_minimum(upbit: FakeUpbit) -> None:
    upbit.set_fees(bid="0.001", maker_ask="0.0002")
    upbit.set_fees("KRW-ETH", ask="0.0025")
    upbit.set_min_total(10_000)
    chance = private(upbit, "GET", "/v1/orders/chance", {"market": "KRW-BTC"}).json()
    assert {k: chance[k] for k in ("bid_fee", "ask_fee", "maker_bid_fee", "maker_ask_fee")} == {
        "bid_fee": "0.001", "ask_fee": "0.0005", "maker_bid_fee": "0.0005",
        "maker_ask_fee": "0.0002"}
    assert chance["market"]["bid"] == {"currency": "KRW", "min_total": "10000"}
    assert chance["market"]["ask"] == {"currency": "BTC", "min_total": "10000"}
    assert "price_unit" not in json.dumps(chance)
    under = private(upbit, "POST", "/v1/orders", order_params("50000000", "0.0001"))
    assert error_of(under) == (400, "under_min_total_bid")
    placed = private(upbit, "POST", "/v1/orders", order_params("50000000", "0.001")).json()
    assert (placed["reserved_fee"], placed["locked"]) == ("50", "50050")  # the bid fee, 0.1 %


# --- order preflight and scopes ----------------------------------------------------------


def test_order_test_validates_like_an_order_and_places_nothing(upbit: FakeUpbit) -> None:
    tried = private(upbit, "POST", "/v1/orders/test", order_params("49000000", identifier="t-1"))
    assert tried.status_code == 201, tried.text
    body = tried.json()
    assert set(body) == ORDER_FIELDS
    assert (body["state"], body["identifier"], body["locked"]) == ("wait", "t-1", "49024.5")
    uuid.UUID(body["uuid"])
    assert tried.headers["Remaining-Req"] == "group=order-test; min=1800; sec=7"
    assert upbit.orders == [] and upbit.balances()["KRW"].locked == 0
    for params, error in ((order_params("49000500"), "invalid_price_bid"),
                          (order_params("49000000", "0.00001"), "under_min_total_bid"),
                          (order_params("49000000", "1"), "insufficient_funds_bid"),
                          (order_params("49000000", side="ask"), "insufficient_funds_ask")):
        assert error_of(private(upbit, "POST", "/v1/orders/test", params)) == (400, error)
    placed = private(upbit, "POST", "/v1/orders", order_params("49000000", identifier="t-1"))
    assert placed.status_code == 201  # the preflight did not spend the identifier
    assert placed.headers["Remaining-Req"] == "group=order; min=1800; sec=11"


def test_a_key_without_the_order_scope_cannot_order(upbit: FakeUpbit) -> None:
    upbit.key_scopes = {"view_account", "view_orders"}
    for path in ("/v1/orders", "/v1/orders/test"):
        assert error_of(private(upbit, "POST", path, order_params("49000000"))) == (
            401, "out_of_scope")
    assert upbit.orders == []
    assert private(upbit, "GET", "/v1/accounts").status_code == 200
    upbit.key_scopes = {"view_orders", "make_orders"}
    assert error_of(private(upbit, "GET", "/v1/accounts")) == (401, "out_of_scope")


# --- the key: expiry and IP allow list -------------------------------------------------------


def test_api_keys_report_the_expiry_and_an_expired_key_is_refused(
        upbit: FakeUpbit, clock: ManualClock) -> None:
    keys = private(upbit, "GET", "/v1/api_keys").json()
    assert keys == [{"access_key": ACCESS, "expire_at": "2026-01-01T09:10:30+09:00"}]
    upbit.key_expires_at(datetime(2025, 1, 1, 0, 20, tzinfo=UTC))
    keys = private(upbit, "GET", "/v1/api_keys").json()
    assert datetime.fromisoformat(keys[0]["expire_at"]) == datetime(2025, 1, 1, 0, 20,
                                                                    tzinfo=UTC)
    clock.set("2025-01-01T00:20:00Z")
    for method, path in (("GET", "/v1/accounts"), ("GET", "/v1/api_keys")):
        assert error_of(private(upbit, method, path)) == (401, "expired_access_key")
    assert error_of(private(upbit, "POST", "/v1/orders", order_params("49000000"))) == (
        401, "expired_access_key")
    assert public(upbit, CANDLES, market="KRW-BTC").status_code == 200


def test_a_client_off_the_allow_list_is_refused(upbit: FakeUpbit) -> None:
    upbit.allowed_ips = {"10.0.0.1"}
    assert error_of(private(upbit, "GET", "/v1/accounts")) == (401, "no_authorization_i_p")
    assert public(upbit, CANDLES, market="KRW-BTC").status_code == 200
    upbit.allowed_ips = {"10.0.0.1", "127.0.0.1"}
    assert private(upbit, "GET", "/v1/accounts").status_code == 200


def test_expire_key_refuses_at_once(upbit: FakeUpbit) -> None:
    upbit.expire_key()
    assert error_of(private(upbit, "GET", "/v1/accounts")) == (401, "expired_access_key")


# --- JSON bodies -----------------------------------------------------------------------------


def test_form_bodies_are_refused(upbit: FakeUpbit) -> None:
    for path in ("/v1/orders", "/v1/orders/test"):
        refused = private(upbit, "POST", path, order_params("49000000"), form=True)
        assert error_of(refused) == (400, "validation_error")
        assert "JSON" in refused.json()["error"]["message"]
    assert upbit.orders == []


# --- cancels that take a while ------------------------------------------------------------------


def crossing_minutes(server: FakeUpbit) -> None:
    """Every minute from 00:00 crosses a 50,000,000 bid."""
    server.set_price_path("KRW-BTC", [50_000_000] * 30, start="2025-01-01T00:00:00Z")


def test_a_delayed_cancel_still_fills_on_candles_closed_before_it(clock: ManualClock) -> None:
    with FakeUpbit(clock=clock, history_minutes=10, secret_key=SECRET, partial_fills=3,
                   cancel_delay=60) as server:
        crossing_minutes(server)
        placed = private(server, "POST", "/v1/orders", order_params("50000000")).json()
        clock.set("2025-01-01T00:11:30Z")  # 00:11 is in progress
        asked = private(server, "DELETE", "/v1/order", {"uuid": placed["uuid"]})
        assert (asked.status_code, asked.json()["state"]) == (200, "wait")
        assert private(server, "DELETE", "/v1/order", {"uuid": placed["uuid"]}).json()[
            "state"] == "wait"  # asking again changes nothing
        listed = private(server, "GET", "/v1/orders/open", {"market": "KRW-BTC"}).json()
        assert [o["uuid"] for o in listed] == [placed["uuid"]]
        # Nothing is looked at before 00:20: the cancel took effect at 00:12:30, so the
        # candle of 00:11 (closed 00:12:00) filled a third and 00:12 (closed 00:13) did not.
        clock.set("2025-01-01T00:20:00Z")
        final = private(server, "GET", "/v1/order", {"uuid": placed["uuid"]}).json()
        assert (final["state"], final["executed_volume"], final["trades_count"],
                final["locked"]) == ("cancel", "0.00033333", 1, "0")
        krw = server.balances()["KRW"]
        assert krw.locked == 0
        assert krw.balance == Decimal(1_000_000) - Decimal("16666.5") * Decimal("1.0005")
        assert server.balances()["BTC"].balance == Decimal("0.00033333")


def test_a_delayed_cancel_shows_wait_until_it_takes_effect(clock: ManualClock) -> None:
    with FakeUpbit(clock=clock, history_minutes=10, secret_key=SECRET,
                   cancel_delay=90) as server:
        server.set_price_path("KRW-BTC", [51_000_000] * 30, start="2025-01-01T00:00:00Z")
        placed = private(server, "POST", "/v1/orders", order_params("50000000")).json()
        private(server, "DELETE", "/v1/order", {"uuid": placed["uuid"]})  # at 00:10:30
        clock.set("2025-01-01T00:11:59Z")
        assert private(server, "GET", "/v1/order", {"uuid": placed["uuid"]}).json()[
            "state"] == "wait"
        assert server.balances()["KRW"].locked == Decimal("50025")
        clock.set("2025-01-01T00:12:00Z")
        assert private(server, "GET", "/v1/order", {"uuid": placed["uuid"]}).json()[
            "state"] == "cancel"
        assert server.balances()["KRW"].locked == 0


def test_an_order_that_fills_before_its_delayed_cancel_is_done(clock: ManualClock) -> None:
    with FakeUpbit(clock=clock, history_minutes=10, secret_key=SECRET,
                   cancel_delay=120) as server:
        crossing_minutes(server)
        placed = private(server, "POST", "/v1/orders", order_params("50000000")).json()
        clock.set("2025-01-01T00:10:50Z")
        private(server, "DELETE", "/v1/order", {"uuid": placed["uuid"]})
        clock.set("2025-01-01T00:15:00Z")
        final = private(server, "GET", "/v1/order", {"uuid": placed["uuid"]}).json()
        assert (final["state"], final["executed_volume"]) == ("done", "0.001")
        assert server.balances()["BTC"].balance == Decimal("0.001")


def test_cancel_all_open_orders(upbit: FakeUpbit) -> None:
    first = private(upbit, "POST", "/v1/orders", order_params("49000000")).json()
    second = private(upbit, "POST", "/v1/orders", order_params("48000000")).json()
    cancelled = private(upbit, "DELETE", "/v1/orders/open", {"pairs": "KRW-BTC"})
    assert cancelled.headers["Remaining-Req"].startswith("group=order-cancel-all;")
    body = cancelled.json()
    assert body["failed"] == {"count": 0, "orders": []}
    assert body["success"]["count"] == 2
    assert [o["uuid"] for o in body["success"]["orders"]] == [second["uuid"], first["uuid"]]
    assert private(upbit, "GET", "/v1/orders/open", {"market": "KRW-BTC"}).json() == []
    assert upbit.balances()["KRW"].locked == 0


# --- bans --------------------------------------------------------------------------------------


def test_a_ban_answers_418_with_its_length_and_doubles_on_repeat(upbit: FakeUpbit) -> None:
    upbit.ban_next(1)
    banned = public(upbit, CANDLES, market="KRW-BTC")
    assert banned.status_code == 418 and banned.headers["Retry-After"] == "1"
    assert "1 more seconds" in banned.json()["error"]["message"]
    during = private(upbit, "GET", "/v1/accounts")
    assert during.status_code == 418 and int(during.headers["Retry-After"]) <= 1
    time.sleep(1.05)
    assert public(upbit, CANDLES, market="KRW-BTC").status_code == 200
    upbit.ban_next(1)
    again = public(upbit, CANDLES, market="KRW-BTC")
    assert again.status_code == 418 and again.headers["Retry-After"] == "2"
    assert 1.5 < upbit.banned_for() <= 2


def test_repeated_429s_can_start_a_ban(clock: ManualClock) -> None:
    with FakeUpbit(clock=clock, history_minutes=10, rate_limit_per_sec=2) as server:
        server.auto_ban(2, seconds=30)
        session = requests.Session()
        statuses = [session.get(server.url + CANDLES, params={"market": "KRW-BTC"},
                                timeout=5).status_code for _ in range(5)]
        assert statuses == [200, 200, 429, 418, 418]
        assert 29 < server.banned_for() <= 30


# --- rate-limit groups -------------------------------------------------------------------------


def test_exchange_groups_have_todays_limits(clock: ManualClock) -> None:
    with FakeUpbit(clock=clock, history_minutes=10, secret_key=SECRET,
                   rate_limit_per_sec=10) as server:
        session = requests.Session()

        def burst(method: str, path: str, params: dict[str, Any], n: int) -> list[int]:
            return [private(server, method, path, params, session=session).status_code
                    for _ in range(n)]

        off_tick = order_params("49000500")  # refused, but counted like any order
        assert burst("POST", "/v1/orders", off_tick, 13) == [400] * 12 + [429]
        assert burst("POST", "/v1/orders/test", off_tick, 9) == [400] * 8 + [429]
        assert burst("DELETE", "/v1/orders/open", {}, 2) == [200, 429]
        assert burst("GET", "/v1/accounts", {}, 31) == [200] * 30 + [429]
        # Counted per access key: another key's request is judged, not throttled.
        stranger = private(server, "GET", "/v1/accounts", access="someone-else",
                           session=session)
        assert error_of(stranger) == (401, "invalid_access_key")
        assert server.stats["/v1/orders"].throttled == 1


def test_remaining_req_names_the_group_with_its_nominal_allowance(upbit: FakeUpbit) -> None:
    replies = {
        "order": private(upbit, "POST", "/v1/orders", order_params("49000500")),
        "order-test": private(upbit, "POST", "/v1/orders/test", order_params("49000500")),
        "default": private(upbit, "GET", "/v1/accounts"),
        "ticker": public(upbit, "/v1/ticker/all", quote_currencies="KRW"),
    }
    assert {group: r.headers["Remaining-Req"] for group, r in replies.items()} == {
        "order": "group=order; min=1800; sec=11",
        "order-test": "group=order-test; min=1800; sec=7",
        "default": "group=default; min=1800; sec=29",
        "ticker": "group=ticker; min=1800; sec=9",
    }
