"""The Prometheus exporter: every family, label and value read from a stored
installation over HTTP, the Upbit request counts the transport keeps in
Redis, an exporter whose database or Redis is down, and `bot metrics` under
SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import redis
import responses
from prometheus_client.parser import text_string_to_metric_families
from redis.backoff import NoBackoff
from redis.retry import Retry

from bot.errors import Banned
from bot.exchange.transport import RedisCounts, Transport
from bot.models import Balance, Fill, MarketInfo
from bot.report import exporter
from bot.storage import decisions, keys, optimizer_runs
from bot.storage import markets as market_store
from bot.storage import orders as order_store
from bot.storage import paper as paper_store
from testkit import ROOT
from testkit.candles import store_closes
from testkit.e2e import free_port
from testkit.settings import make_settings, redis_db

D = Decimal
NOW = datetime(2026, 1, 5, 3, 20, tzinfo=UTC)  # the daemon's clock
WALL = 1_800_000_000.0
REDIS_URL = redis_db(2)
BTC, ETH = "KRW-BTC", "KRW-ETH"
UPBIT = "https://api.upbit.test"

Samples = dict[str, dict[frozenset[tuple[str, str]], float]]


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    conn = redis.Redis.from_url(REDIS_URL)
    conn.flushdb()
    yield conn
    conn.flushdb()
    conn.close()


def _settings(database_url: str, **overrides: str):
    return make_settings(database_url, markets="top:2", celery_backend_url=REDIS_URL,
                         **overrides)


def _scrape(settings) -> tuple[set[str], Samples]:
    """(the family names, every sample by name and labels) of one GET /metrics."""
    running = exporter.start(settings, host="127.0.0.1", port=0, now=lambda: NOW,
                             wall=lambda: WALL)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{running.port}/metrics",
                                    timeout=10) as answer:
            assert answer.status == 200
            text = answer.read().decode()
    finally:
        running.close()
    families = list(text_string_to_metric_families(text))
    samples: Samples = {}
    for family in families:
        for s in family.samples:
            samples.setdefault(s.name, {})[frozenset(s.labels.items())] = s.value
    return {f.name for f in families}, samples


def _by(samples: Samples, name: str, label: str) -> dict[str, float]:
    """One family's values keyed by one label (every other label dropped)."""
    return {dict(k)[label]: v for k, v in samples[name].items()}


# --- a stored installation ------------------------------------------------------------


def _decide(db, market: str, minutes_ago: int, action: str, trigger: str,
            latency_s: float, mode: str = "paper") -> int:
    candle_ts = NOW - timedelta(minutes=minutes_ago)
    with db.cursor() as cur:
        decision_id = decisions.insert(
            cur, market=market, candle_ts=candle_ts, mode=mode, close=D(100_000), signals={},
            weights={}, weights_version=None, score=0.5, action=action, reason="test",
            trigger=trigger)
        # created_at is the database's now(): set it to when the test says it was decided
        cur.execute("UPDATE decisions SET created_at = %s WHERE id = %s",
                    (candle_ts + timedelta(minutes=1, seconds=latency_s), decision_id))
    return decision_id


def _order(db, decision_id: int | None, side: str, state: str, n: int) -> int:
    with db.cursor() as cur:
        order_id = order_store.insert_new(
            cur, identifier=f"test-{n}", mode="paper", market=BTC, side=side,
            price=D(100_000), volume=D(2), decision_id=decision_id, created_at=NOW)
    order_store.mark(db, order_id, state)
    return order_id


def _fill(db, order_id: int, price: int, volume: int, fee: int, n: int) -> None:
    row = order_store.by_id(db, order_id)
    fill = Fill(f"trade-{n}", BTC, row.side, D(price), D(volume), D(price * volume), NOW)
    assert order_store.insert_fill(db, row, fill, D(fee))


def _run(db, market: str, verdict: str) -> None:
    with db.cursor() as cur:
        optimizer_runs.insert(
            cur, started_at=NOW, market=market, window_start=None, window_end=None, bars=100,
            candidates=10, seed=1, objective_train_new=None, objective_train_current=None,
            objective_holdout_new=None, objective_holdout_current=None, t_holdout_new=None,
            t_holdout_current=None, train_new=None, train_current=None, holdout_new=None,
            holdout_current=None, weights={}, current_weights={}, params=None,
            current_params=None, current_version=None, verdict=verdict, tune=["weights"],
            reason="test", duration_s=0.1)


def _installation(db, client: redis.Redis) -> None:
    market_store.store_listing(db, [MarketInfo(m, m, m) for m in (BTC, ETH, "KRW-XRP")], NOW,
                               ())
    market_store.store_selection(db, [BTC, ETH], NOW)  # top:2 trades these two, not XRP
    store_closes(db, BTC, [100_000, 101_000, 102_000, 103_000, 104_000],
                 start=NOW - timedelta(minutes=5))  # newest began 60 s ago
    store_closes(db, ETH, [5_000, 5_100], start=NOW - timedelta(minutes=10))  # 540 s ago
    bought = _decide(db, BTC, 5, "buy", "signal", 0.4)
    _decide(db, BTC, 4, "hold", "cooldown", 1.5)
    _decide(db, BTC, 3, "hold", "stand_aside", 3.0)
    sold = _decide(db, BTC, 2, "sell", "stop_loss", 40.0)
    _decide(db, ETH, 10, "hold", "kill_switch", 0.2)
    _decide(db, ETH, 9, "buy", "signal", 0.1, mode="live")  # another mode: not counted
    bid = _order(db, bought, "bid", "done", 1)
    ask = _order(db, sold, "ask", "wait", 2)
    _order(db, None, "bid", "rejected", 3)
    _fill(db, bid, 100_000, 2, 100, 1)  # cost 200,100 for 2
    _fill(db, ask, 104_000, 1, 52, 2)  # 103,948 - 100,050 = 3,898 realised
    with db.cursor() as cur:
        paper_store.ensure_account(cur, D(1_000_000))
        paper_store.save_balance(cur, Balance("KRW", D(900_000), D(3_848)))
        paper_store.lock_balance(cur, "BTC")
        paper_store.save_balance(cur, Balance("BTC", D(0), D(1), D(100_050)))
    _run(db, BTC, "keep")
    _run(db, BTC, "adopt")
    _run(db, ETH, "stand_aside")
    client.set(keys.heartbeat("collector+trader"), WALL - 5)
    client.set(keys.heartbeat("beat"), WALL - 70)
    counts = RedisCounts(client)
    for status in (200, 200, 200, 429):
        counts.count("candle", status)
    counts.count("order", 418)
    assert counts.flush()


def test_every_family_with_its_labels_and_values(db, database_url, client):
    _installation(db, client)
    names, samples = _scrape(_settings(database_url))
    assert _by(samples, "upbit_bot_up", "source") == {"database": 1, "redis": 1, "exchange": 1}
    # the account: cash free and locked, the coin at its last close
    assert samples["upbit_bot_cash_krw"] == {frozenset({("mode", "paper")}): 903_848}
    assert samples["upbit_bot_equity_krw"] == {frozenset({("mode", "paper")}): 1_007_848}
    # the traded markets (XRP is listed, not selected, not held): position and PnL
    assert _by(samples, "upbit_bot_position_value_krw", "market") == {BTC: 104_000, ETH: 0}
    assert _by(samples, "upbit_bot_unrealised_pnl_krw", "market") == {BTC: 3_950, ETH: 0}
    assert _by(samples, "upbit_bot_realised_pnl_krw", "market") == {BTC: 3_898, ETH: 0}
    assert _by(samples, "upbit_bot_fees_krw", "market") == {BTC: 152, ETH: 0}
    # decisions of this mode, their trigger grouped by bot.rules.TRIGGER_CLASS
    decided = {tuple(sorted(k)): v for k, v in samples["upbit_bot_decisions_total"].items()}
    assert decided == {
        (("action", "buy"), ("market", BTC), ("reason_class", "signal")): 1,
        (("action", "hold"), ("market", BTC), ("reason_class", "guard")): 1,
        (("action", "hold"), ("market", BTC), ("reason_class", "stand_aside")): 1,
        (("action", "sell"), ("market", BTC), ("reason_class", "exit")): 1,
        (("action", "hold"), ("market", ETH), ("reason_class", "kill_switch")): 1}
    assert _by(samples, "upbit_bot_orders", "state") == {
        "new": 0, "wait": 1, "watch": 0, "cancelling": 0, "done": 1, "rejected": 1}
    fills = {tuple(sorted(k)): v for k, v in samples["upbit_bot_fills_total"].items()}
    assert fills == {(("market", BTC), ("side", "ask")): 1, (("market", BTC), ("side", "bid")): 1}
    # ages: candles on the daemon's clock, heartbeats on the wall clock
    assert _by(samples, "upbit_bot_candle_age_seconds", "market") == {BTC: 60, ETH: 540}
    assert _by(samples, "upbit_bot_heartbeat_age_seconds", "role") == {
        "collector": 5, "trader": 5, "beat": 70}
    assert _by(samples, "upbit_bot_upbit_requests_total", "group") == {"candle": 4, "order": 1}
    assert _by(samples, "upbit_bot_upbit_rate_limited_total", "group") == {"candle": 1}
    assert _by(samples, "upbit_bot_upbit_banned_total", "group") == {"order": 1}
    verdicts = {tuple(sorted(k)): v for k, v in samples["upbit_bot_optimizer_verdict"].items()}
    assert verdicts == {(("market", BTC), ("verdict", "adopt")): 1,
                        (("market", ETH), ("verdict", "stand_aside")): 1}
    # latencies 0.2, 0.4, 1.5, 3 and 40 s after the candles closed, in cumulative buckets
    buckets = _by(samples, "upbit_bot_decision_latency_seconds_bucket", "le")
    assert buckets == {"0.25": 1, "0.5": 2, "1.0": 2, "2.0": 3, "5.0": 4, "10.0": 4, "30.0": 4,
                       "60.0": 5, "120.0": 5, "300.0": 5, "+Inf": 5}
    assert samples["upbit_bot_decision_latency_seconds_count"][frozenset()] == 5
    assert samples["upbit_bot_decision_latency_seconds_sum"][frozenset()] == pytest.approx(45.1)
    assert "upbit_bot_decision_latency_seconds" in names


def test_a_database_down_leaves_its_metrics_out_and_says_so(client):
    client.set(keys.heartbeat("trader"), WALL - 3)
    names, samples = _scrape(_settings("postgresql://postgres@127.0.0.1:1/bot"))
    assert _by(samples, "upbit_bot_up", "source") == {"database": 0, "redis": 1, "exchange": 0}
    assert _by(samples, "upbit_bot_heartbeat_age_seconds", "role") == {"trader": 3}
    assert not names & {"upbit_bot_equity_krw", "upbit_bot_decisions", "upbit_bot_orders",
                        "upbit_bot_decision_latency_seconds"}


def test_a_redis_down_leaves_its_metrics_out_and_says_so(db, database_url):
    settings = make_settings(database_url, celery_backend_url="redis://127.0.0.1:1/0")
    names, samples = _scrape(settings)
    assert _by(samples, "upbit_bot_up", "source") == {"database": 1, "redis": 0, "exchange": 1}
    assert samples["upbit_bot_cash_krw"] == {frozenset({("mode", "paper")}): 1_000_000}
    assert not names & {"upbit_bot_heartbeat_age_seconds", "upbit_bot_upbit_requests"}


# --- the transport's counts ------------------------------------------------------------


def _transport(counts: RedisCounts) -> Transport:
    return Transport(UPBIT, "", "", timeout=2, connect_timeout=1, max_retries=1,
                     backoff_base=0.01, backoff_cap=0.05, sleep=time.sleep,
                     monotonic=time.monotonic, counts=counts)


@responses.activate
def test_each_request_429_and_418_counts_in_redis_by_group(client):
    responses.get(f"{UPBIT}/v1/candles/minutes/1", status=429, headers={"Retry-After": "0"},
                  json={"error": {"name": "too_many_requests", "message": "slow down"}})
    responses.get(f"{UPBIT}/v1/candles/minutes/1", json=[])
    responses.get(f"{UPBIT}/v1/ticker", status=418, headers={"Retry-After": "1"},
                  json={"error": {"name": "banned", "message": "banned"}})
    counts = RedisCounts(client, every=60)  # flushed below, not by its thread
    transport = _transport(counts)
    assert transport.request("GET", "/v1/candles/minutes/1", {"market": BTC}) == []
    with pytest.raises(Banned):
        transport.request("GET", "/v1/ticker", {"markets": BTC})
    assert counts.flush()
    assert client.hgetall(keys.UPBIT_REQUESTS) == {b"candle": b"2", b"ticker": b"1"}
    assert client.hgetall(keys.UPBIT_RATE_LIMITED) == {b"candle": b"1"}
    assert client.hgetall(keys.UPBIT_BANNED) == {b"ticker": b"1"}


@responses.activate
def test_a_dead_redis_neither_slows_nor_breaks_a_request(client):
    responses.get(f"{UPBIT}/v1/candles/minutes/1", json=[])
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=2, socket_timeout=2,
                       retry=Retry(NoBackoff(), 0))
    counts = RedisCounts(dead, every=60)
    transport = _transport(counts)
    started = time.monotonic()
    for _ in range(3):
        assert transport.request("GET", "/v1/candles/minutes/1", {"market": BTC}) == []
    assert time.monotonic() - started < 0.5
    assert not counts.flush()  # kept for a flush that succeeds
    counts._client = client
    assert counts.flush()
    assert client.hget(keys.UPBIT_REQUESTS, "candle") == b"3"


# --- bot metrics ---------------------------------------------------------------------------


def _bot_metrics(database_url: str, port: int, cwd) -> subprocess.Popen:
    env = {"PATH": os.environ["PATH"], "DATABASE_URL": database_url,
           "CELERY_BACKEND_URL": REDIS_URL, "METRICS_PORT": str(port),
           "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "bot", "metrics"], env=env, cwd=cwd,
                            stderr=subprocess.PIPE, text=True)


def _wait_line(proc: subprocess.Popen, word: str) -> str:
    for line in iter(proc.stderr.readline, ""):
        if word in line:
            return line
    raise AssertionError(f"bot metrics ended without logging {word}")


def test_bot_metrics_serves_until_sigterm_and_waits_out_a_taken_port(db, database_url,
                                                                     tmp_path, client):
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        blocked = _bot_metrics(database_url, taken.getsockname()[1], tmp_path)
        serving = _bot_metrics(database_url, port, tmp_path)
        try:
            assert f"port={taken.getsockname()[1]}" in _wait_line(blocked, "metrics.bind_failed")
            assert f"port={port}" in _wait_line(serving, "metrics.started")
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                assert 'upbit_bot_up{source="database"} 1.0' in r.read().decode()
            for proc in (blocked, serving):
                proc.send_signal(signal.SIGTERM)
                assert "reason=SIGTERM" in _wait_line(proc, "metrics.stopped")
                assert proc.wait(10) == 0
        finally:
            for proc in (blocked, serving):
                if proc.poll() is None:
                    proc.kill()
                proc.stderr.close()
