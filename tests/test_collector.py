"""The collector against a local server speaking Upbit's API (real HTTP, real
PostgreSQL), with the clock moved by hand."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from bot.collector import backfill, collect, collect_market, follow_up_seconds
from bot.storage import Database
from bot.storage import candles as candle_store
from bot.upbit import UpbitClient
from tests.fakeupbit import FakeUpbit, ManualClock

START = datetime(2026, 3, 2, 12, 0, 30, tzinfo=UTC)
CANDLES = "/v1/candles/minutes/1"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def server(clock):
    with FakeUpbit(clock=clock, history_minutes=3 * 24 * 60) as fake:
        yield fake
        assert fake.errors == []


class FakeTime:
    """monotonic() and sleep() for the client: sleeping advances the clock
    at once, so backoffs are recorded without waiting."""

    def __init__(self):
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make_client(server) -> UpbitClient:
    fake = FakeTime()
    c = UpbitClient(server.url, sleep=fake.sleep, monotonic=fake.monotonic, max_retries=3)
    c.sleeps = fake.sleeps
    return c


@pytest.fixture
def client(server):
    c = make_client(server)
    yield c
    c.close()


def _pass(db, client, clock, cap=600):
    return collect_market(db, client, "KRW-BTC", unit=1, max_candles=cap, now=clock)


def _stored(db):
    return candle_store.load_candles(db, "KRW-BTC", "1m")


def _assert_matches_server(db, server, clock, since):
    """Every stored candle from ``since`` on equals the server's final values,
    and every candle the server has in that range is stored (no gap)."""
    stored = {c.ts: c for c in _stored(db) if c.ts >= since}
    minute = since
    current = clock().replace(second=0, microsecond=0)
    while minute < current:
        expected = server.candle("KRW-BTC", minute)
        if expected is None:
            assert minute not in stored
        else:
            got = stored.pop(minute)
            assert (got.open, got.high, got.low, got.close, got.volume) == (
                expected["open"], expected["high"], expected["low"], expected["close"],
                expected["volume"]), minute
            assert got.meta["final"] is True
        minute += timedelta(minutes=1)
    assert set(stored) <= {current}  # only the in-progress minute may remain


def test_empty_database_takes_history_up_to_the_cap(db, server, client, clock):
    result = _pass(db, client, clock, cap=600)
    assert result.ok and result.inserted == 600 and result.updated == 0
    assert result.requests == 3
    stored = _stored(db)
    assert len(stored) == 600
    assert stored[-1].ts == datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    assert stored[-1].meta["final"] is False  # the minute in progress
    assert all(c.meta["final"] for c in stored[:-1])
    assert result.newest_final_ts == datetime(2026, 3, 2, 11, 59, tzinfo=UTC)


def test_one_new_candle_and_the_in_progress_one_gets_its_final_values(db, server, client,
                                                                     clock):
    _pass(db, client, clock)
    partial = _stored(db)[-1]
    clock.advance(minutes=1)  # 12:01:30
    result = _pass(db, client, clock)
    assert result.requests == 1
    assert result.inserted == 1  # 12:01, in progress
    assert result.updated == 1  # 12:00 with its final values
    final = next(c for c in _stored(db) if c.ts == partial.ts)
    expected = server.candle("KRW-BTC", partial.ts)
    assert final.close == expected["close"] and final.volume == expected["volume"]
    assert final.volume != partial.volume  # it really was partial before
    assert final.meta["final"] is True
    _assert_matches_server(db, server, clock, _stored(db)[0].ts)


def test_five_hour_outage_backfilled_exactly(db, server, client, clock):
    _pass(db, client, clock)
    before = len(server.requests)
    clock.advance(minutes=5 * 60)
    result = _pass(db, client, clock)
    # 300 minutes of gap: the newest page (200) plus one page back reaches the stored newest.
    assert result.requests == 2 == len(server.requests) - before
    assert result.gap_closed
    assert result.inserted == 300 and result.updated == 1
    _assert_matches_server(db, server, clock, _stored(db)[0].ts)
    assert candle_store.count(db, "KRW-BTC", "1m") == 900


def test_missing_minutes_neither_loop_nor_leave_gaps(db, clock):
    with FakeUpbit(clock=clock, history_minutes=2000, gap_probability=0.4) as server:
        client = make_client(server)
        _pass(db, client, clock, cap=500)
        clock.advance(minutes=400)
        result = _pass(db, client, clock, cap=5000)
        assert result.gap_closed
        # 400 minutes with ~40 % empty hold ~240 candles: the walk stops at the stored newest.
        assert result.requests == 2
        _assert_matches_server(db, server, clock, _stored(db)[0].ts)
        assert server.errors == []


def test_backfill_cap_stops_the_walk_and_says_so(db, server, client, clock, caplog):
    _pass(db, client, clock, cap=200)
    clock.advance(minutes=24 * 60)
    with caplog.at_level(logging.WARNING):
        result = _pass(db, client, clock, cap=1000)
    assert not result.gap_closed
    assert result.inserted == 1000 and result.requests == 5
    assert any(getattr(r, "event", "") == "collector.gap_not_closed" for r in caplog.records)
    # the newest 1000 minutes are complete; the rest waits for `bot backfill`
    newest = _stored(db)[-1].ts
    _assert_matches_server(db, server, clock, newest - timedelta(minutes=998))


@pytest.mark.parametrize("status", [429, 500])
def test_transient_error_then_success(db, server, client, clock, status):
    server.fail_next(1, status=status, path_prefix=CANDLES)
    result = _pass(db, client, clock)
    assert result.ok and result.inserted == 600
    assert server.stats[CANDLES].statuses[status] == 1
    assert len(client.sleeps) == 1  # backed off once, then retried


@pytest.mark.parametrize("kind", ["missing_field", "null_price", "non_json"])
def test_malformed_payload_is_logged_with_the_market_and_nothing_is_stored(
        db, server, client, clock, caplog, kind):
    server.malform_next(10, kind)
    with caplog.at_level(logging.ERROR):
        results = collect(db, client, ["KRW-BTC"], max_candles=600, now=clock)
    assert not results[0].ok
    assert "KRW-BTC" in results[0].error
    failed = [r for r in caplog.records if getattr(r, "event", "") == "collector.failed"]
    assert failed and failed[0].fields["market"] == "KRW-BTC"
    assert candle_store.count(db, "KRW-BTC", "1m") == 0
    # once the server answers properly again, the next pass stores everything
    server.clear_faults()
    assert collect(db, client, ["KRW-BTC"], max_candles=600, now=clock)[0].inserted == 600


def test_a_single_non_json_answer_is_retried_within_the_pass(db, server, client, clock):
    server.malform_next(1, "non_json")
    assert _pass(db, client, clock).inserted == 600
    assert len(client.sleeps) == 1


def test_malformed_answer_during_a_gap_fill_stores_nothing_partial(db, server, client, clock):
    _pass(db, client, clock)
    clock.advance(minutes=300)
    count_before = candle_store.count(db, "KRW-BTC", "1m")
    server.malform_next(10, "not_a_list")
    results = collect(db, client, ["KRW-BTC"], max_candles=600, now=clock)
    assert not results[0].ok and "KRW-BTC" in results[0].error
    assert candle_store.count(db, "KRW-BTC", "1m") == count_before


def test_database_down_for_one_pass_then_the_next_catches_up(db, server, client, clock,
                                                             database_url):
    _pass(db, client, clock)
    clock.advance(minutes=30)
    dead = Database("postgresql://postgres@127.0.0.1:1/nowhere", connect_timeout=1)
    results = collect(dead, client, ["KRW-BTC"], max_candles=600, now=clock)
    assert results[0].error.startswith("DatabaseUnavailable")
    assert "127.0.0.1:1" in results[0].error
    clock.advance(minutes=2)
    result = _pass(db, client, clock)
    assert result.ok and result.inserted == 32 and result.gap_closed
    _assert_matches_server(db, server, clock, _stored(db)[0].ts)


def test_follow_up_when_the_last_closed_candle_is_not_confirmed(db, server, client, clock):
    clock.set(datetime(2026, 3, 2, 12, 1, 0, 200000, tzinfo=UTC))
    server.set_price_path("KRW-BTC", [100 + i for i in range(300)],
                          start=datetime(2026, 3, 2, 7, 1, tzinfo=UTC))
    result = _pass(db, client, clock)
    # 12:00 is the newest candle and only 0.2 s past its end: not final yet
    assert result.newest_ts == datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    assert result.newest_final_ts == datetime(2026, 3, 2, 11, 59, tzinfo=UTC)
    wait = follow_up_seconds(result, clock(), 1)
    assert wait == pytest.approx(0.8)
    clock.advance(seconds=1)
    again = _pass(db, client, clock)
    assert again.newest_final_ts == datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    assert follow_up_seconds(again, clock(), 1) is None


def test_backfill_walks_history_and_is_idempotent(db, server, client, clock):
    result = backfill(db, client, "KRW-BTC", days=1, unit=1, now=clock)
    # minutes starting within the last day: 12:00:30 a day ago excludes 12:00 itself
    assert result.inserted == 24 * 60
    assert result.requests == 8  # ceil(1440 / 200)
    _assert_matches_server(db, server, clock, START - timedelta(days=1, seconds=-30))
    again = backfill(db, client, "KRW-BTC", days=1, unit=1, now=clock)
    assert again.inserted == 0 and again.updated == 0
