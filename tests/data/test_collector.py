"""The collector against a local server speaking Upbit's API (real HTTP, real
PostgreSQL), with the clock moved by hand."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

import pytest

from bot.data.collector import Progress, backfill, collect, collect_market, follow_up_seconds
from bot.errors import UnknownMarket
from bot.exchange.upbit import UpbitClient
from bot.storage import Database
from bot.storage import candles as candle_store
from testkit.fakeupbit import FakeUpbit, ManualClock

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


# --- backfill fetches only what is missing ---------------------------------------------


def _minute_after(moment: datetime) -> datetime:
    """The first whole minute at or after ``moment``: the oldest candle a backfill keeps."""
    floor = moment.replace(second=0, microsecond=0)
    return floor if floor == moment else floor + timedelta(minutes=1)


def _candle_requests(server, since: int) -> list[dict[str, list[str]]]:
    return [parse_qs(r.query) for r in server.requests[since:] if r.path == CANDLES]


def test_a_second_backfill_of_the_same_days_fetches_only_the_newest_page(db, server, client,
                                                                        clock):
    first = backfill(db, client, "KRW-BTC", days=2, unit=1, now=clock)
    assert first.requests == 15  # ceil(2880 / 200)
    clock.advance(minutes=3)
    before = len(server.requests)
    again = backfill(db, client, "KRW-BTC", days=2, unit=1, now=clock)
    assert again.requests == 1 == len(server.requests) - before
    assert "to" not in _candle_requests(server, before)[0]  # the newest page
    # 12:01..12:03 are new, 12:00 (in progress the first time) gets its final values
    assert (again.inserted, again.updated) == (3, 1)
    _assert_matches_server(db, server, clock, _minute_after(START - timedelta(days=2)))


def test_a_longer_backfill_after_a_shorter_one_fetches_only_the_older_part(db, server, client,
                                                                          clock):
    backfill(db, client, "KRW-BTC", days=1, unit=1, now=clock)
    before = len(server.requests)
    longer = backfill(db, client, "KRW-BTC", days=2, unit=1, now=clock)
    # the newest page, then the second day back: ceil(1440 / 200) pages
    assert longer.requests == 1 + 8 == len(server.requests) - before
    assert longer.inserted == 24 * 60
    held_from = _minute_after(START - timedelta(days=1))
    older = [q["to"][0] for q in _candle_requests(server, before)[1:]]
    assert all(datetime.fromisoformat(to) <= held_from for to in older), older
    _assert_matches_server(db, server, clock, _minute_after(START - timedelta(days=2)))
    # one range, up to the candle in progress (a later run fetches it again)
    assert candle_store.held_ranges(db, "KRW-BTC", "1m") == [
        (_minute_after(START - timedelta(days=2)), datetime(2026, 3, 2, 12, 0, tzinfo=UTC))]


def test_minutes_without_trades_inside_held_history_are_not_fetched_again(db, clock):
    with FakeUpbit(clock=clock, history_minutes=3 * 24 * 60, gap_probability=0.4) as server:
        client = make_client(server)
        backfill(db, client, "KRW-BTC", days=2, unit=1, now=clock)
        before = len(server.requests)
        assert backfill(db, client, "KRW-BTC", days=2, unit=1, now=clock).requests == 1
        assert len(server.requests) - before == 1
        _assert_matches_server(db, server, clock, _minute_after(START - timedelta(days=2)))
        assert server.errors == []


def test_history_the_collector_walked_is_not_fetched_again(db, server, client, clock):
    backfill(db, client, "KRW-BTC", days=1, unit=1, now=clock)
    clock.advance(minutes=5 * 60)
    assert _pass(db, client, clock).requests == 2  # the collector closes the 5-hour gap
    clock.advance(minutes=10)
    again = backfill(db, client, "KRW-BTC", days=1, unit=1, now=clock)
    assert again.requests == 1
    _assert_matches_server(db, server, clock, _minute_after(clock() - timedelta(days=1)))


def test_a_hole_the_collector_left_at_its_cap_is_filled_by_backfill(db, server, client, clock):
    _pass(db, client, clock, cap=200)
    clock.advance(minutes=12 * 60)
    assert not _pass(db, client, clock, cap=400).gap_closed  # 320 minutes stay missing
    result = backfill(db, client, "KRW-BTC", days=1, unit=1, now=clock)
    # The newest page, a jump over the rest of the second pass's candles, two
    # pages through the hole (the second reaches into the first pass's and
    # refetches its in-progress candle), a jump over the rest of the first
    # pass's, three pages down to a day back.
    assert result.requests == 1 + 2 + 3
    assert result.inserted == 320 + 520 and result.updated == 1
    assert result.skipped == timedelta(minutes=200 + 120)
    _assert_matches_server(db, server, clock, _minute_after(clock() - timedelta(days=1)))


class _DiesAfter:
    """A candle source that fails after ``pages`` answers, as a killed backfill would."""

    def __init__(self, source, pages: int):
        self.source, self.pages = source, pages

    def candles(self, market, **kw):
        if self.pages == 0:
            raise KeyboardInterrupt
        self.pages -= 1
        return self.source.candles(market, **kw)


def test_a_killed_backfill_resumes_below_what_it_stored(db, server, client, clock):
    with pytest.raises(KeyboardInterrupt):
        backfill(db, _DiesAfter(client, 7), "KRW-BTC", days=2, unit=1, now=clock,
                 pages_per_write=2)
    stored = candle_store.count(db, "KRW-BTC", "1m")
    assert stored == 6 * 200  # three writes of two pages; the 7th page was not written
    result = backfill(db, client, "KRW-BTC", days=2, unit=1, now=clock)
    # the newest page, then from the 6th page's end on: ceil((2880 - 1200) / 200)
    assert result.requests == 1 + 9
    _assert_matches_server(db, server, clock, _minute_after(START - timedelta(days=2)))


def test_backfill_keeps_the_in_progress_candle_open_for_the_next_run(db, server, client, clock):
    backfill(db, client, "KRW-BTC", days=1, unit=1, now=clock)
    # The newest page now ends just after the candle that was in progress
    # (12:00): it is not held, so the next page fetches its final values.
    clock.advance(minutes=200)
    again = backfill(db, client, "KRW-BTC", days=1, unit=1, now=clock)
    assert again.requests == 2
    _assert_matches_server(db, server, clock, _minute_after(clock() - timedelta(days=1)))


# --- progress ----------------------------------------------------------------------------


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


class _Ticking:
    """A monotonic clock that moves ``step`` seconds each time it is read."""

    def __init__(self, step: float):
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_progress_without_a_terminal_prints_a_line_every_few_seconds(db, server, client,
                                                                    clock):
    out = io.StringIO()
    # 0.5 s per reading: the backfill's 15 requests take a few simulated seconds
    progress = Progress("backfill KRW-BTC", out, interval=5.0, monotonic=_Ticking(0.5))
    backfill(db, client, "KRW-BTC", days=2, unit=1, now=clock, progress=progress)
    lines = out.getvalue().splitlines()
    assert 2 <= len(lines) <= 4, lines  # not one line per request
    assert all(line.startswith("backfill KRW-BTC: ") for line in lines)
    assert lines[-1].startswith("backfill KRW-BTC: 100% done, 15 requests, 2880 new candles")
    assert "\r" not in out.getvalue()


def test_progress_lines_stay_few_for_a_long_backfill():
    out = io.StringIO()
    progress = Progress("backfill KRW-BTC", out, interval=5.0, monotonic=_Ticking(0.2))
    for i in range(1, 217):  # 30 days: 216 requests, about 43 s
        progress.update(i / 216, f"{i} requests so far")
    progress.update(1.0, "216 requests")
    progress.close()
    lines = out.getvalue().splitlines()
    assert 2 <= len(lines) <= 11, lines  # the first, one per 5 s, the final
    assert lines[-1].startswith("backfill KRW-BTC: 100% done, 216 requests")


def test_one_request_is_not_one_requests(db, server, client, clock):
    backfill(db, client, "KRW-BTC", days=1, unit=1, now=clock)
    out = io.StringIO()
    backfill(db, client, "KRW-BTC", days=1, unit=1, now=clock,
             progress=Progress("backfill KRW-BTC", out))
    final = out.getvalue().splitlines()[-1]
    assert "1 request," in final and "1 requests" not in final, final
    assert "already held" in final


def test_the_terminal_bar_never_shows_100_percent_unfilled(db, server, client, clock):
    out = _Tty()
    progress = Progress("backfill KRW-BTC", out)
    backfill(db, client, "KRW-BTC", days=2, unit=1, now=clock, progress=progress)
    frames = [f for f in out.getvalue().split("\r") if f]
    full = [f for f in frames if "100.0%" in f]
    assert len(full) == 1 and "[" + "#" * 30 + "]" in full[0], full
    assert frames[-1].endswith("\n")
    # almost done is not rounded up to 100.0 %
    out = _Tty()
    progress = Progress("backfill KRW-BTC", out)
    progress.update(0.9996, "215 requests so far")
    assert "99.9%" in out.getvalue() and "100.0%" not in out.getvalue()


# --- a market Upbit does not have --------------------------------------------------------


def test_an_unknown_market_is_named_in_one_sentence(db, server, client, clock, caplog):
    with caplog.at_level(logging.ERROR):
        results = collect(db, client, ["KRW-DOESNOTEXIST", "KRW-BTC"], max_candles=300,
                          now=clock)
    assert results[0].error == "UnknownMarket: market KRW-DOESNOTEXIST does not exist on Upbit"
    assert results[0].unknown_market and not results[1].unknown_market
    assert results[1].ok and results[1].inserted == 300  # the other market is collected
    with pytest.raises(UnknownMarket) as info:
        backfill(db, client, "KRW-DOESNOTEXIST", days=1, unit=1, now=clock)
    assert str(info.value) == "market KRW-DOESNOTEXIST does not exist on Upbit"


def _run_bot(*args: str, env: dict[str, str], cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bot", *args],
                          env={"PATH": os.environ["PATH"], **env}, cwd=cwd,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args, sentence", [
    (("collect",), "bot collect: market KRW-DOESNOTEXIST does not exist on Upbit"
                   " (check MARKETS)"),
    (("backfill", "--days", "1", "--market", "KRW-DOESNOTEXIST"),
     "bot backfill: market KRW-DOESNOTEXIST does not exist on Upbit (check --market)"),
])
def test_the_command_line_says_the_market_does_not_exist(db, database_url, tmp_path, args,
                                                        sentence):
    with FakeUpbit(history_minutes=60) as server:
        env = {"DATABASE_URL": database_url, "UPBIT_API_BASE": server.url,
               "MARKETS": "KRW-DOESNOTEXIST"}
        done = _run_bot(*args, env=env, cwd=tmp_path)
    assert done.returncode == 2, done.stderr  # the configuration or the option is wrong
    assert sentence in done.stderr.splitlines()
    assert "Code not found" not in done.stderr and "Traceback" not in done.stderr
