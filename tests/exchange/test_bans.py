"""Upbit's bans (HTTP 418): how long one lasts, the rule for repeats, and the
boards that keep them, in memory and in the real Redis (db 13, a key of each
test's own) shared by clients that stand for separate processes."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
import responses
from redis.backoff import NoBackoff
from redis.retry import Retry

from bot.errors import Banned
from bot.exchange.bans import (
    DEFAULT_BAN_SECONDS,
    MAX_BAN_SECONDS,
    REDIS_RETRY_SECONDS,
    STRIKE_WINDOW_SECONDS,
    Ban,
    MemoryBans,
    RedisBans,
    ban_seconds,
    decode_ban,
    encode_ban,
    next_ban,
    read_ban,
)
from bot.exchange.upbit import UpbitClient
from testkit.clock import FakeClock
from testkit.settings import redis_db
from testkit.upbit_json import ACCESS, BASE, SECRET, candle_json, upbit_error

CANDLES = f"{BASE}/v1/candles/minutes/1"


# --- how long ---------------------------------------------------------------------

@pytest.mark.parametrize(("headers", "message", "seconds"), [
    ({"Retry-After": "120"}, "", 120),
    ({"Retry-After": "7.5"}, "blocked for 30 seconds", 7.5),
    ({}, "요청 수 제한을 초과하여 30초 동안 차단되었습니다.", 30),
    ({}, "blocked for 30 seconds", 30),
    ({}, "Too many requests: banned for 45s", 45),
    ({}, "차단 시간: 1분 30초 남음", 90),
    ({}, "ban lasts 2 minutes and 5 seconds", 125),
    ({}, "1시간 동안 차단", 3600),
    ({}, "blocked for 30 seconds (strike 3 of 5 minutes)", 30),
    ({"Retry-After": "0"}, "10초", 10),
    ({"Retry-After": "-5"}, "", DEFAULT_BAN_SECONDS),
    ({"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"}, "", DEFAULT_BAN_SECONDS),
    ({"Retry-After": "nan"}, "", DEFAULT_BAN_SECONDS),
    ({}, "잠시 후 다시 시도해주세요", DEFAULT_BAN_SECONDS),
    ({}, "error 418 after 300ms", DEFAULT_BAN_SECONDS),
])
def test_ban_seconds(headers: dict[str, str], message: str, seconds: float) -> None:
    assert ban_seconds(headers, message) == seconds


# --- the rule for repeats ------------------------------------------------------------

def test_a_first_ban_lasts_what_upbit_asked() -> None:
    assert next_ban(None, 60, now=1000) == Ban(1060, 1, 60)


def test_a_418_during_a_ban_is_the_same_ban_ending_no_earlier() -> None:
    ban = Ban(1060, 2, 60)
    assert next_ban(ban, 10, now=1030) == ban
    assert next_ban(ban, 90, now=1030) == Ban(1120, 2, 90)


def test_a_repeat_within_the_window_doubles_and_later_starts_over() -> None:
    ended = Ban(1060, 1, 60)
    assert next_ban(ended, 60, now=1061) == Ban(1061 + 120, 2, 120)
    assert next_ban(Ban(1060, 2, 120), 60, now=1070) == Ban(1070 + 240, 3, 240)
    late = 1060 + STRIKE_WINDOW_SECONDS
    assert next_ban(ended, 60, now=late) == Ban(late + 60, 1, 60)


def test_a_repeat_lasts_at_least_what_upbit_asked_and_doubling_is_capped() -> None:
    assert next_ban(Ban(1060, 1, 60), 300, now=1070) == Ban(1370, 2, 300)
    assert next_ban(Ban(1060, 5, 3000), 60, now=1070).seconds == MAX_BAN_SECONDS


def test_encode_and_decode() -> None:
    ban = Ban(1234.5, 3, 240.0)
    assert decode_ban(encode_ban(ban)) == ban
    assert decode_ban(encode_ban(ban).encode()) == ban
    for garbled in (None, "", "{}", "[1]", '{"until": "x", "strikes": 1, "seconds": 1}', "nope"):
        assert decode_ban(garbled) is None


# --- the memory board ---------------------------------------------------------------

def test_memory_bans() -> None:
    clock = FakeClock()
    board = MemoryBans(clock.monotonic)
    assert board.seconds_left() == 0
    first = board.record(60)
    assert first.new and first.seconds_left == 60 and first.ban.strikes == 1
    clock.now += 20
    again = board.record(30)  # in flight when the ban began
    assert not again.new and again.seconds_left == 40
    assert board.seconds_left() == 40
    board.adopt(Ban(clock.now + 100, 2, 100))
    assert board.seconds_left() == 100
    board.adopt(Ban(clock.now + 5, 1, 5))  # ends sooner: ignored
    assert board.seconds_left() == 100
    clock.now += 100
    assert board.seconds_left() == 0


# --- the Redis board ------------------------------------------------------------------

@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_db(2))
    yield client
    client.close()


@pytest.fixture
def key(redis_client: redis.Redis) -> Iterator[str]:
    name = f"test:upbit-ban:{uuid.uuid4().hex}"
    yield name
    redis_client.delete(name)


@pytest.fixture
def server() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def process(clock: FakeClock, redis_client: redis.Redis, key: str) -> UpbitClient:
    """A client as another process would build it: its own transport and board
    object, on the installation's Redis key. The fake clock stands for both
    clocks (monotonic and wall), which move together."""
    board = RedisBans(redis_client, key=key, clock=clock.monotonic)
    return UpbitClient(BASE, ACCESS, SECRET, sleep=clock.sleep, monotonic=clock.monotonic,
                       bans=board)


def test_a_ban_one_process_got_stops_the_other_from_sending(
        server: responses.RequestsMock, redis_client: redis.Redis, key: str) -> None:
    clock = FakeClock()
    banned = server.get(CANDLES, status=418, json=upbit_error("banned", "30초 동안 차단"))
    first, second = process(clock, redis_client, key), process(clock, redis_client, key)
    with pytest.raises(Banned) as caught:
        first.candles("KRW-BTC")
    assert caught.value.retry_after == 30
    clock.now += 10
    for call in (lambda: second.candles("KRW-BTC"), second.balances):
        with pytest.raises(Banned) as refused:
            call()
        assert refused.value.retry_after == pytest.approx(20)
    assert banned.call_count == 1 and len(server.calls) == 1  # the second sent nothing
    clock.now += 21
    server.replace(responses.GET, CANDLES, json=[candle_json(1)])
    assert len(second.candles("KRW-BTC")) == 1


def test_strikes_are_shared_so_a_repeat_elsewhere_doubles(
        server: responses.RequestsMock, redis_client: redis.Redis, key: str) -> None:
    clock = FakeClock()
    server.get(CANDLES, status=418, json=upbit_error("banned", "blocked for 60 seconds"))
    first, second = process(clock, redis_client, key), process(clock, redis_client, key)
    with pytest.raises(Banned):
        first.candles("KRW-BTC")
    clock.now += 70  # the ban is over; the second process knocks again
    with pytest.raises(Banned) as caught:
        second.candles("KRW-BTC")
    assert caught.value.retry_after == 120
    until, strikes = read_ban(redis_client, key=key, now=clock.now) or (None, 0)
    assert strikes == 2 and until == datetime.fromtimestamp(clock.now + 120, tz=UTC)


def test_a_shorter_ban_never_replaces_a_longer_one(redis_client: redis.Redis,
                                                   key: str) -> None:
    clock = FakeClock()
    one = RedisBans(redis_client, key=key, clock=clock.monotonic)
    other = RedisBans(redis_client, key=key, clock=clock.monotonic)
    assert one.record(300).new
    clock.now += 1
    shorter = other.record(30)
    assert not shorter.new and shorter.seconds_left == 299
    assert decode_ban(redis_client.get(key)) == Ban(1300, 1, 300)
    # The key outlives the ban by the strike window, so repeats still find the count.
    ttl = redis_client.pttl(key) / 1000
    assert 300 + STRIKE_WINDOW_SECONDS - 5 <= ttl <= 300 + STRIKE_WINDOW_SECONDS


def test_read_ban(redis_client: redis.Redis, key: str) -> None:
    assert read_ban(redis_client, key=key) is None
    RedisBans(redis_client, key=key).record(45)  # on the real wall clock
    found = read_ban(redis_client, key=key)
    assert found is not None
    until, strikes = found
    assert strikes == 1 and until.tzinfo == UTC
    assert 40 <= (until - datetime.now(UTC)).total_seconds() <= 45
    assert read_ban(redis_client, key=key, now=until.timestamp() + 1) is None  # ended
    redis_client.set(key, "not a ban")
    assert read_ban(redis_client, key=key) is None


class CountingRedis(redis.Redis):
    """A client of a Redis that is not there, counting what it is asked."""

    def __init__(self) -> None:
        super().__init__(host="127.0.0.1", port=1, socket_connect_timeout=0.2,
                         retry=Retry(NoBackoff(), 0))
        self.asked = 0

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.asked += 1
        return super().execute_command(*args, **options)


def test_redis_down_keeps_the_ban_in_this_process_and_warns_once(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    down = CountingRedis()
    board = RedisBans(down, clock=clock.monotonic)
    with caplog.at_level(logging.WARNING, logger="bot.exchange.bans"):
        strike = board.record(60)
        clock.now += 10
        left = [board.seconds_left() for _ in range(3)]
        asked = down.asked
        clock.now += REDIS_RETRY_SECONDS
        board.seconds_left()
    assert strike.new and strike.seconds_left == 60
    assert left == [50, 50, 50]
    # After the failed record, Redis is left alone for a while, then asked again.
    assert asked == 0 and down.asked == 1
    warnings = [r for r in caplog.records
                if getattr(r, "event", "") == "upbit.ban_board_unavailable"]
    assert len(warnings) == 1
    down.close()
