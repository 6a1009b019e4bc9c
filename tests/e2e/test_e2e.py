"""End to end: Beat and the three workers as real ``celery`` processes, a real
Redis (our own, so it can be restarted), real PostgreSQL (behind a proxy that
can cut it away), and a local server speaking Upbit's API. The daemon's clock
runs 30 times faster (BOT_CLOCK_SPEEDUP), so a minute candle closes every 2 s.

The tests of the paper stack share one running daemon and run in order:
pipeline, trader killed, Redis restarted, database unavailable."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest
from celery import Celery

from bot.storage import Database
from bot.storage import candles as candle_store
from bot.storage import orders as order_store
from testkit.e2e import RedisServer, Stack, TcpProxy, wait_for
from testkit.fakeupbit import FakeUpbit
from testkit.series import momentum_market as planted_market
from testkit.settings import admin, dsn_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

M = "KRW-BTC"
SPEEDUP = 30
PERIOD = 60 / SPEEDUP  # real seconds per candle
ACCESS, SECRET = "e2e-access-key", "e2e-secret-key-" * 4


def _planted_rows(epoch: float, history: int, future: int, seed: int = 1):
    """Candles with a momentum edge (the optimizer can find it), from
    ``history`` minutes before the epoch to ``future`` minutes after."""
    data = planted_market(history + future, seed, edge=0.0006)
    first = int(epoch // 60) * 60 - history * 60
    return [(first + 60 * i, Decimal(f"{o:.0f}"), Decimal(f"{h:.0f}"), Decimal(f"{lo:.0f}"),
             Decimal(f"{c:.0f}"), Decimal(1))
            for i, (o, h, lo, c) in enumerate(zip(data.open, data.high, data.low, data.close,
                                                  strict=True))]


class Daemon:
    """One test's world: database, Redis, Upbit server, processes."""

    def __init__(self, workdir, *, env=None, server_kw=None, planted=True):
        self.name = f"bot_e2e_{uuid.uuid4().hex[:10]}"
        admin(f"CREATE DATABASE {self.name}")
        self.url = dsn_for(self.name)
        self.db = Database(self.url)
        self.epoch = time.time()
        kw = {"speedup": SPEEDUP, "epoch": self.epoch, "history_minutes": 4000,
              "access_key": ACCESS, "secret_key": SECRET, **(server_kw or {})}
        self.server = FakeUpbit(**kw)
        if planted:
            self.server.set_candles(M, _planted_rows(self.epoch, 3000, 600))
        self.server.start()
        self.redis = RedisServer(workdir)
        self.redis.start()
        self.pg_proxy = TcpProxy(5432)
        proxied = self.url.replace("127.0.0.1:5432", f"127.0.0.1:{self.pg_proxy.port}")
        base = {
            "DATABASE_URL": proxied,
            "CELERY_BROKER_URL": f"{self.redis.url}/0",
            "CELERY_BACKEND_URL": f"{self.redis.url}/1",
            "UPBIT_API_BASE": self.server.url,
            "BOT_CLOCK_SPEEDUP": str(SPEEDUP), "BOT_CLOCK_EPOCH": repr(self.epoch),
            "COLLECT_SCHEDULE": "2", "TRADE_SCHEDULE": "2", "RECONCILE_SCHEDULE": "2",
            "OPTIMIZE_SCHEDULE": "12", "BACKFILL_MAX_CANDLES": "3000",
            "OPTIMIZE_LOOKBACK_DAYS": "2", "OPTIMIZE_HOLDOUT": "0.4",
            "OPTIMIZE_CANDIDATES": "300", "AGGRESSIVENESS": "0",
            "ORDER_TIMEOUT_SECONDS": "600", "DAILY_LOSS_LIMIT_PCT": "0",
        }
        self.env = {**base, **(env or {})}
        self.stack = Stack(self.env, workdir)

    def sim_now(self) -> datetime:
        return datetime.fromtimestamp(self.epoch + (time.time() - self.epoch) * SPEEDUP, UTC)

    def scalar(self, sql: str, *params):
        with self.db.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchone()[0]

    def newest_candle(self) -> datetime | None:
        return candle_store.newest_ts(self.db, M, "1m")

    def assert_candles_match_server(self, since: datetime, until: datetime) -> int:
        """Every minute in [since, until) is stored once with the server's final
        values (the planted series has a candle every minute)."""
        stored = {c.ts: c for c in candle_store.load_candles(self.db, M, "1m", since=since,
                                                              until=until)}
        minute, checked = since, 0
        while minute < until:
            expected = self.server.candle(M, minute)
            assert minute in stored, f"gap at {minute}"
            got = stored[minute]
            assert (got.open, got.high, got.low, got.close) == (
                expected["open"], expected["high"], expected["low"], expected["close"]), minute
            minute += timedelta(minutes=1)
            checked += 1
        return checked

    def close(self) -> None:
        self.stack.stop()
        self.pg_proxy.close()
        self.redis.stop()
        self.server.stop()
        self.db.close()
        admin(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")


def _no_duplicates(d: Daemon) -> None:
    assert d.scalar("SELECT count(*) - count(DISTINCT (market, candle_ts)) FROM decisions") == 0
    assert d.scalar("SELECT count(*) - count(DISTINCT decision_id) FROM orders"
                    " WHERE decision_id IS NOT NULL") == 0
    # the exchange holds no order twice either
    assert d.scalar("SELECT count(*) - count(DISTINCT exchange_uuid) FROM orders"
                    " WHERE exchange_uuid IS NOT NULL") == 0


@pytest.fixture(scope="module")
def paper(tmp_path_factory):
    daemon = Daemon(tmp_path_factory.mktemp("paper"))
    for role in ("collector", "trader", "optimizer", "beat"):
        daemon.stack.start(role)
    yield daemon
    daemon.close()


def test_pipeline_collects_trades_fills_and_adopts_weights(paper):
    d = paper
    wait_for(lambda: candle_store.count(d.db, M, "1m") >= 2900, 30, "the initial backfill")
    wait_for(lambda: d.scalar("SELECT count(*) FROM fills") >= 1, 60, "a paper fill")
    version = wait_for(lambda: d.scalar("SELECT max(version) FROM strategy_weights"), 60,
                       "the optimizer to adopt weights")
    run = d.scalar("SELECT reason FROM optimizer_runs WHERE weights_version = %s", version)
    assert "beats the current" in run
    wait_for(lambda: d.scalar("SELECT count(*) FROM decisions WHERE weights_version = %s",
                              version), 30, "a decision with the adopted weights")
    # candles are final and exact, with no gap
    newest_final = d.scalar("SELECT max(ts) FROM candles WHERE (meta->>'final')::boolean")
    checked = d.assert_candles_match_server(newest_final - timedelta(minutes=120),
                                            newest_final)
    assert checked == 120
    # fills match their orders; the paper account never went negative
    assert d.scalar("SELECT count(*) FROM orders o JOIN fills f ON f.order_id = o.id"
                    " WHERE f.price <> o.price") == 0
    assert d.scalar("SELECT count(*) FROM paper_balances WHERE balance < 0 OR locked < 0") == 0
    _no_duplicates(d)
    log = d.stack.log("trader")
    assert "decision market=KRW-BTC" in log and "order.placed" in log
    assert "weights.adopted" in d.stack.log("optimizer")


def test_trader_killed_then_restarted(paper):
    d = paper
    decided_before = d.scalar("SELECT max(candle_ts) FROM decisions")
    d.stack.kill("trader")
    killed_at = d.newest_candle()
    time.sleep(4 * PERIOD)
    # candles keep arriving without the trader
    assert d.newest_candle() >= killed_at + timedelta(minutes=3)
    d.stack.start("trader")
    wait_for(lambda: d.scalar("SELECT max(candle_ts) FROM decisions") > decided_before
             + timedelta(minutes=3), 30, "decisions after the restart")
    _no_duplicates(d)
    # trade messages queued while it was dead were dropped, not run late
    wait_for(lambda: "task.expired" in d.stack.log("trader"), 10, "expired trade messages")
    assert "task=trade" in d.stack.log("trader")


def test_redis_restart_is_survived_without_a_hand(paper):
    d = paper
    d.redis.stop()
    time.sleep(3 * PERIOD)
    d.redis.start()
    after = d.sim_now()
    wait_for(lambda: d.scalar("SELECT count(*) FROM decisions WHERE candle_ts > %s",
                              after) >= 2, 60, "decisions after Redis came back")
    assert all(d.stack.alive(role) for role in ("collector", "trader", "optimizer", "beat"))
    _no_duplicates(d)


def test_database_outage_fails_visibly_then_the_gap_is_filled(paper):
    d = paper
    # the workers are up and the history in (whichever test of the module runs first)
    wait_for(lambda: candle_store.count(d.db, M, "1m") >= 2900, 60, "the initial backfill")
    d.pg_proxy.cut()
    cut_at = d.sim_now()
    time.sleep(5 * PERIOD)
    d.pg_proxy.restore()
    restored_at = d.sim_now()
    wait_for(lambda: d.newest_candle() >= restored_at + timedelta(minutes=2), 40,
             "candles after the database came back")
    collector_log = d.stack.log("collector")
    assert "DatabaseUnavailable" in collector_log
    assert "task.retry" in collector_log or "task.failed" in collector_log
    # the minutes of the outage were filled afterwards, exactly
    start = cut_at.replace(second=0, microsecond=0) - timedelta(minutes=2)
    final = d.scalar("SELECT max(ts) FROM candles WHERE (meta->>'final')::boolean")
    assert d.assert_candles_match_server(start, final) >= 8
    assert all(d.stack.alive(role) for role in ("collector", "trader", "optimizer", "beat"))


def test_collector_killed_mid_backfill_leaves_no_gap(tmp_path):
    d = Daemon(tmp_path, env={"BACKFILL_MAX_CANDLES": "20000"},
               server_kw={"rate_limit_per_sec": 10, "history_minutes": 30000},
               planted=False)
    try:
        d.server.use_synthetic(M)
        d.stack.start("collector")
        app = Celery(broker=d.env["CELERY_BROKER_URL"])
        send = lambda: app.send_task("collect", args=(M,), queue="collector_queue")  # noqa: E731
        wait_for(lambda: "ready" in d.stack.log("collector"), 30, "the collector to start")
        send()
        candles_path = "/v1/candles/minutes/1"
        wait_for(lambda: d.server.stats.get(candles_path) and
                 d.server.stats[candles_path].requests >= 30, 30, "the backfill to be underway")
        d.stack.kill("collector")
        # the gap is written in one transaction: nothing half-done is stored
        assert candle_store.count(d.db, M, "1m") == 0
        d.stack.start("collector")
        wait_for(lambda: "ready" in d.stack.log("collector"), 30, "the collector to restart")
        send()
        try:
            wait_for(lambda: candle_store.count(d.db, M, "1m") >= 20000, 60,
                     "the backfill to finish after the restart")
        except AssertionError:
            print(d.stack.log("collector", 1)[-3000:])
            print(d.stack.log("collector")[-5000:])
            raise
        assert "worker.locks_released" in d.stack.log("collector")
        stored = candle_store.load_candles(d.db, M, "1m")
        minutes = np.array([c.ts.timestamp() for c in stored])
        assert len(set(minutes)) == len(minutes)  # no duplicate
        assert (np.diff(minutes) == 60).all()  # no gap: the synthetic series has no holes
        newest = stored[-1].ts
        assert d.assert_candles_match_server(newest - timedelta(minutes=300),
                                             newest - timedelta(minutes=1)) == 299
    finally:
        d.close()


def test_live_mode_orders_are_signed_and_balances_agree(tmp_path):
    d = Daemon(tmp_path, env={"TRADING_MODE": "live", "UPBIT_ACCESS_KEY": ACCESS,
                              "UPBIT_SECRET_KEY": SECRET, "OPTIMIZE_SCHEDULE": "3600",
                              "ORDER_TIMEOUT_SECONDS": "120", "AGGRESSIVENESS": "0.003",
                              "LIVE_ALLOW_UNVALIDATED": "true"})
    try:
        for role in ("collector", "trader", "beat"):
            d.stack.start(role)
        wait_for(lambda: d.scalar("SELECT count(*) FROM fills") >= 1, 60, "a live fill")
        # stop deciding; reconcile until every order is done or cancelled (timeout: 4 s)
        d.stack.kill("beat")
        app = Celery(broker=d.env["CELERY_BROKER_URL"])

        def settled():
            app.send_task("reconcile", queue="trader_queue")
            return d.scalar("SELECT count(*) FROM orders WHERE state IN"
                            " ('new', 'wait', 'watch', 'cancelling')") == 0

        wait_for(settled, 30, "orders to settle", every=1.0)
        posts = [dict(r.params) for r in d.server.private_requests
                 if r.method == "POST" and r.path == "/v1/orders"]
        assert posts and all(p["ord_type"] == "limit" and p["identifier"].startswith(
            "ubot-live-") for p in posts)
        # every order the server holds is in the database, and the money agrees
        ids = {o.identifier for o in d.server.orders}
        assert ids == {r[0] for r in _rows(d, "SELECT identifier FROM orders")}
        balances = d.server.balances()
        bought = d.scalar("SELECT coalesce(sum(volume), 0) FROM fills WHERE side = 'bid'")
        sold = d.scalar("SELECT coalesce(sum(volume), 0) FROM fills WHERE side = 'ask'")
        coin = balances.get("BTC")
        assert (coin.balance + coin.locked if coin else 0) == bought - sold
        spent = d.scalar("SELECT coalesce(sum(funds + fee), 0) FROM fills WHERE side = 'bid'")
        got = d.scalar("SELECT coalesce(sum(funds - fee), 0) FROM fills WHERE side = 'ask'")
        krw = balances["KRW"]
        assert krw.balance + krw.locked == Decimal(1_000_000) - spent + got
        _no_duplicates(d)
        assert SECRET not in d.stack.all_logs() and ACCESS not in d.stack.all_logs()
        assert "LIVE" in d.stack.log("trader")
        rows = order_store.active(d.db, "live")
        assert rows == []
    finally:
        d.close()


def _rows(d: Daemon, sql: str):
    with d.db.cursor() as cur:
        cur.execute(sql)
        return cur.fetchall()
