"""The rate-limit table as Upbit documents it today, the ``Remaining-Req``
parser, and whose windows are whose: quotation groups per IP (the process),
exchange groups per access key (Upbit's account pockets)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import responses

from bot.exchange.ratelimit import (
    GROUP_LIMITS,
    QUOTATION_GROUPS,
    RateLimiter,
    account_of,
    parse_remaining,
    route_group,
    shared_limiter,
)
from bot.exchange.upbit import UpbitClient
from testkit.clock import FakeClock
from testkit.upbit_json import ACCESS, BASE, SECRET, candle_json

A, B = account_of("access-key-a"), account_of("access-key-b")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def limiter(clock: FakeClock) -> RateLimiter:
    return RateLimiter(sleep=clock.sleep, monotonic=clock.monotonic)


def take(limiter: RateLimiter, route: str, account: str = "", times: int = 1) -> None:
    for _ in range(times):
        limiter.done(limiter.acquire(route, account))


def test_the_table_is_upbits_of_today() -> None:
    for group in ("market", "candle", "trade", "ticker", "orderbook"):
        assert GROUP_LIMITS[group] == (10, 1.0) and group in QUOTATION_GROUPS
    assert GROUP_LIMITS["default"] == (30, 1.0)
    assert GROUP_LIMITS["order"] == (12, 1.0)
    assert GROUP_LIMITS["order-test"] == (8, 1.0)
    assert GROUP_LIMITS["order-cancel-all"] == (1, 2.0)
    assert not {"default", "order", "order-test", "order-cancel-all"} & QUOTATION_GROUPS


@pytest.mark.parametrize(("method", "path", "group"), [
    ("POST", "/v1/orders/test", "order-test"),
    ("POST", "/v1/orders", "order"),
    ("POST", "/v1/orders/cancel_and_new", "order"),
    ("DELETE", "/v1/orders/open", "order-cancel-all"),
    ("GET", "/v1/orders/open", "default"),
    ("DELETE", "/v1/order", "default"),
    ("GET", "/v1/ticker/all", "ticker"),
    ("GET", "/v1/market/all", "market"),
    ("GET", "/v1/api_keys", "default"),
])
def test_routes(method: str, path: str, group: str) -> None:
    assert route_group(method, path) == group


@pytest.mark.parametrize(("header", "parsed"), [
    ("group=default; min=1800; sec=29", ("default", 29)),
    ("group=order-cancel-all; min=1; sec=0", ("order-cancel-all", 0)),
    ("group=candle.minutes; min=600; sec=7", ("candle.minutes", 7)),
    ("group=order.test-v2;sec=3", ("order.test-v2", 3)),
    ("sec=4; group=ticker", ("ticker", 4)),
    ("Group = orderbook ;  Sec = 9", ("orderbook", 9)),
    ("group=market, min=600, sec=5", ("market", 5)),
])
def test_parse_remaining_reads_liberally(header: str, parsed: tuple[str, int]) -> None:
    assert parse_remaining(header) == parsed


@pytest.mark.parametrize("header", [None, "", "garbage", "group=; sec=3", "group=candle",
                                    "group=candle; sec=-1", "group=candle; sec=x",
                                    "mygroup=candle; sec=3"])
def test_parse_remaining_refuses_what_it_cannot_read(header: str | None) -> None:
    assert parse_remaining(header) is None


def test_exchange_groups_are_counted_per_access_key(limiter: RateLimiter,
                                                    clock: FakeClock) -> None:
    take(limiter, "default", A, times=30)
    take(limiter, "default", B, times=30)  # another pocket: its own allowance
    assert clock.sleeps == []
    take(limiter, "default", A)
    assert clock.sleeps == [pytest.approx(1.0)]


def test_quotation_groups_are_counted_per_ip_whatever_the_key(limiter: RateLimiter,
                                                              clock: FakeClock) -> None:
    take(limiter, "candle", A, times=5)
    take(limiter, "candle", B, times=5)
    assert clock.sleeps == []
    take(limiter, "candle", B)
    assert clock.sleeps == [pytest.approx(1.0)]


def test_cancel_all_once_per_two_seconds(limiter: RateLimiter, clock: FakeClock) -> None:
    take(limiter, "order-cancel-all", A, times=2)
    assert clock.sleeps == [pytest.approx(2.0)]


def test_sec_0_under_a_dotted_name_blocks_that_group(limiter: RateLimiter,
                                                     clock: FakeClock) -> None:
    take(limiter, "candle")
    limiter.observe("candle", "group=candle.minutes; min=600; sec=0")
    assert limiter.group_of("candle") == "candle.minutes"
    take(limiter, "ticker")  # another group flows
    assert clock.sleeps == []
    take(limiter, "candle")
    assert clock.sleeps == [pytest.approx(1.0)]


def test_sec_0_of_one_key_does_not_hold_back_another(limiter: RateLimiter,
                                                     clock: FakeClock) -> None:
    take(limiter, "order", A)
    limiter.observe("order", "group=order; min=1; sec=0", A)
    take(limiter, "order", B)
    assert clock.sleeps == []
    take(limiter, "order", A)
    assert clock.sleeps == [pytest.approx(1.0)]


def test_a_429_block_is_per_key_for_exchange_groups(limiter: RateLimiter,
                                                    clock: FakeClock) -> None:
    limiter.block("default", 3.0, A)
    take(limiter, "default", B)
    assert clock.sleeps == []
    take(limiter, "default", A)
    assert clock.sleeps == [pytest.approx(3.0)]


def test_account_of_is_a_digest_not_the_key() -> None:
    assert account_of("") == ""
    assert account_of(ACCESS) == account_of(ACCESS) != account_of(ACCESS + "x")
    assert ACCESS not in account_of(ACCESS) and len(account_of(ACCESS)) == 16


def test_shared_limiter_is_one_per_pair_of_clocks(clock: FakeClock) -> None:
    assert shared_limiter(clock.sleep, clock.monotonic) is shared_limiter(clock.sleep,
                                                                          clock.monotonic)
    other = FakeClock()
    assert shared_limiter(other.sleep, other.monotonic) is not shared_limiter(
        clock.sleep, clock.monotonic)


@pytest.fixture
def server() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def client(clock: FakeClock, access: str) -> UpbitClient:
    return UpbitClient(BASE, access, SECRET, sleep=clock.sleep, monotonic=clock.monotonic)


def test_clients_of_one_process_share_the_ip_allowance(server: responses.RequestsMock,
                                                       clock: FakeClock) -> None:
    server.get(f"{BASE}/v1/candles/minutes/1", json=[candle_json(1)])
    first, second = client(clock, ACCESS), client(clock, "another-access-key-123")
    for _ in range(10):
        first.candles("KRW-BTC")
    assert clock.sleeps == []
    second.candles("KRW-BTC")
    assert clock.sleeps == [pytest.approx(1.0)]


def test_clients_with_other_keys_have_their_own_exchange_allowance(
        server: responses.RequestsMock, clock: FakeClock) -> None:
    server.get(f"{BASE}/v1/accounts", json=[])
    first, second = client(clock, ACCESS), client(clock, "another-access-key-123")
    same_key = client(clock, ACCESS)
    for _ in range(30):
        first.balances()
    second.balances()
    assert clock.sleeps == []
    same_key.balances()  # the same pocket as the first
    assert clock.sleeps == [pytest.approx(1.0)]
