"""The Celery wiring: routes, delivery options, time limits and Beat's
schedule built from the settings."""

from __future__ import annotations

from datetime import timedelta

from celery.schedules import crontab, schedule

from bot.worker import tasks, timing
from bot.worker.app import app
from bot.worker.scheduler import build_beat_schedule, parse_schedule
from testkit.settings import make_settings


def test_tasks_are_routed_to_their_queues():
    routes = app.conf.task_routes
    assert routes["collect"]["queue"] == "collector_queue"
    assert routes["trade"]["queue"] == routes["reconcile"]["queue"] == "trader_queue"
    assert routes["optimize"]["queue"] == "optimizer_queue"
    assert app.conf.worker_prefetch_multiplier == 1
    assert tasks.collect.app is app


def test_only_idempotent_tasks_are_acked_late():
    for task in (tasks.collect, tasks.trade, tasks.reconcile):
        assert task.acks_late and task.reject_on_worker_lost
    assert not tasks.optimize.acks_late


def test_every_task_has_time_limits_and_retries_only_temporary_errors():
    from bot.errors import TemporaryError
    for task in (tasks.collect, tasks.trade, tasks.reconcile, tasks.optimize,
                 tasks.optimize_due, tasks.daily_summary):
        assert 0 < task.soft_time_limit < task.time_limit
    for task in (tasks.collect, tasks.trade, tasks.reconcile, tasks.optimize):
        assert task.autoretry_for == (TemporaryError,)
        assert task.retry_backoff and task.max_retries >= 1


def test_parse_schedule():
    every = parse_schedule("30")
    assert isinstance(every, schedule) and every.run_every == timedelta(seconds=30)
    cron = parse_schedule("5 0 * * *")
    assert isinstance(cron, crontab)
    assert cron.minute == {5} and cron.hour == {0}


def test_beat_schedule_has_an_entry_per_market_and_every_entry_expires():
    settings = make_settings(MARKETS="KRW-BTC,KRW-ETH", COLLECT_SCHEDULE="* * * * *",
                             TRADE_SCHEDULE="20", OPTIMIZE_SCHEDULE="5 0 * * *")
    entries = build_beat_schedule(settings)
    assert {f"{job} {m}" for job in ("collect", "trade", "optimize")
            for m in ("KRW-BTC", "KRW-ETH")} | {"reconcile", "daily summary",
                                                 "optimize due", "markets"} == set(entries)
    assert entries["markets"]["task"] == "markets"
    assert entries["markets"]["schedule"].run_every == timedelta(seconds=3600)
    assert entries["collect KRW-ETH"]["args"] == ("KRW-ETH",)
    for name, entry in entries.items():
        assert entry["options"]["expires"] > 0, name
    # a trade not consumed within its period is dropped, not run late
    period = timing.period(settings)
    assert entries["trade KRW-BTC"]["options"]["expires"] == min(20.0, period)
    assert entries["collect KRW-BTC"]["options"]["expires"] == period
    assert entries["optimize KRW-BTC"]["options"]["expires"] == 3 * 3600


def test_with_top_n_each_entry_fans_out_over_the_markets_of_the_moment():
    entries = build_beat_schedule(make_settings(MARKETS="top:5", TRADE_SCHEDULE="20"))
    fan = {name: e for name, e in entries.items() if e["task"] == "each_market"}
    assert set(fan) == {"collect each market", "trade each market", "optimize each market"}
    assert fan["trade each market"]["args"][0] == "trade"
    assert fan["optimize each market"]["args"] == ("optimize", 3 * 3600)
    assert not any(name.startswith("collect KRW") for name in entries)


def test_the_time_limits_follow_the_backfill_size():
    small = timing.limits(make_settings(BACKFILL_MAX_CANDLES="200"))["collect"]
    large = timing.limits(make_settings(BACKFILL_MAX_CANDLES="200000"))["collect"]
    assert small == (45.0, 55.0) and large == (230.0, 240.0)


def test_overdue_crontab_runs_once_after_downtime():
    """Beat sends an overdue entry once, then waits for the next slot: no burst."""
    from datetime import UTC, datetime
    cron = crontab(minute="*")
    now = datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC)
    cron.nowfun = lambda: now
    due, next_in = cron.is_due(now - timedelta(hours=5))  # last run 5 hours ago
    assert due and 0 < next_in <= 60
