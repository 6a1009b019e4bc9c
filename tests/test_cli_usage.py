"""The command line's answers to a newcomer: help, version, usage errors with a
sentence and exit 2, hints, and one JSON convention for every command."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest

from bot import clock
from testkit.candles import store_closes
from testkit.cli import run_bot

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


@pytest.fixture
def env(db, database_url):
    return {"DATABASE_URL": database_url, "UPBIT_API_BASE": "http://127.0.0.1:1",
            "MARKETS": "KRW-BTC"}


def test_help_is_plain_text_and_version_is_given(tmp_path):
    done = run_bot("--help", env={}, cwd=tmp_path)
    assert done.returncode == 0
    assert "``" not in done.stdout and ":func:" not in done.stdout
    assert "Exit codes: 0 success, 1 a failure, 2 bad usage" in " ".join(done.stdout.split())
    done = run_bot("--version", env={}, cwd=tmp_path)
    assert done.returncode == 0 and re.match(r"^bot \d+\.\d+", done.stdout)


@pytest.mark.parametrize(("args", "message"), [
    (("health", "foo"), "invalid choice: 'foo'"),
    (("backtest", "--days", "0"), "--days must be a positive number"),
    (("optimize", "--days", "0", "--no-save"), "--days must be a positive number"),
    (("status", "--market", "KRW-XRP"), "--market KRW-XRP is not in MARKETS (KRW-BTC)"),
    (("trade", "--market", "KRW-XRP"), "--market KRW-XRP is not in MARKETS (KRW-BTC)"),
    (("run", "--schedule-file", "/nonexistent/dir/beat"), "/nonexistent/dir is not a writable"),
])
def test_usage_errors_are_one_sentence_and_exit_2(env, tmp_path, args, message):
    done = run_bot(*args, env=env, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr


def test_empty_markets_is_refused(env, tmp_path):
    done = run_bot("status", env={**env, "MARKETS": ""}, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("bot: invalid setting MARKETS='': empty: name at least one")


def test_a_missing_env_file_is_hinted_when_the_database_is_the_compose_default(tmp_path):
    done = run_bot("migrate", env={}, cwd=tmp_path, timeout=90)
    assert done.returncode == 1
    assert "command.failed" in done.stderr
    assert f"{tmp_path}/.env was not found" in done.stderr
    assert "run bot from the project folder" in done.stderr


def test_trade_twice_reports_the_stored_decision(db, env, tmp_path):
    now = clock.floor_to_unit(clock.now(), 1)
    closes = [100_000 + 300 * i for i in range(200)]
    store_closes(db, "KRW-BTC", closes, start=now - timedelta(minutes=200))
    first = run_bot("trade", "--json", env=env, cwd=tmp_path)
    second = run_bot("trade", "--json", env=env, cwd=tmp_path)
    assert first.returncode == 0 and second.returncode == 0, (first.stderr, second.stderr)
    a, b = (json.loads(d.stdout)["markets"][0] for d in (first, second))
    if a["candle_ts"] != b["candle_ts"]:  # a minute ended between the two: try once more
        a, b = b, json.loads(run_bot("trade", "--json", env=env, cwd=tmp_path).stdout)[
            "markets"][0]
    assert a["status"] == "decided" or b["status"] == "already_decided"
    assert b["status"] == "already_decided"
    assert (b["action"], b["score"], b["signals"]) == (a["action"], a["score"], a["signals"])
    assert b["order"] == a["order"]
    assert "decision.exists" in second.stderr or "decision.exists" in first.stderr


def test_every_json_output_follows_one_convention(db, env, tmp_path):
    now = clock.floor_to_unit(clock.now(), 1)
    closes = [100_000 + 300 * (i % 40) - 150 * (i % 7) for i in range(400)]
    store_closes(db, "KRW-BTC", closes, start=now - timedelta(minutes=400), spread="500")
    trade = json.loads(run_bot("trade", "--json", env=env, cwd=tmp_path).stdout)
    backtest = json.loads(run_bot("backtest", "--json", "--days", "1", env=env,
                                  cwd=tmp_path).stdout)
    optimize = json.loads(run_bot("optimize", "--json", "--days", "1", "--no-save",
                                  "--candidates", "20", env=env, cwd=tmp_path).stdout)
    status = json.loads(run_bot("status", "--json", env=env, cwd=tmp_path).stdout)
    assert ISO_Z.match(trade["markets"][0]["candle_ts"])
    for data in (backtest, optimize["holdout"]["new"] or backtest):
        assert ISO_Z.match(data["start_ts"]) and ISO_Z.match(data["end_ts"])
        assert isinstance(data["final_equity"], str) and isinstance(data["fees"], str)
        assert re.match(r"^-?\d+(\.\d{1,8})?$", data["final_equity"])
        assert isinstance(data["total_return"], float | int)
    for weight in [*backtest["weights"].values(), *optimize["weights"].values()]:
        assert weight == round(weight, 6)

    def times(value, found):
        if isinstance(value, dict):
            for key, item in value.items():
                timed = key.endswith(("_ts", "_at")) or key in ("ts", "since", "until")
                if timed and isinstance(item, str):
                    found.append(item)
                times(item, found)
        elif isinstance(value, list):
            for item in value:
                times(item, found)
        return found

    stamps = times(status, []) + times(trade, []) + times(optimize, [])
    assert stamps and all(ISO_Z.match(s) for s in stamps), stamps


def test_an_unmigrated_database_says_run_migrate(tmp_path):
    import uuid

    from testkit.settings import admin, dsn_for
    name = f"bot_empty_{uuid.uuid4().hex[:8]}"
    admin(f"CREATE DATABASE {name}")
    try:
        done = run_bot("status", "--json", env={"DATABASE_URL": dsn_for(name),
                                                "UPBIT_API_BASE": "http://127.0.0.1:1"},
                       cwd=tmp_path)
        trade = run_bot("trade", env={"DATABASE_URL": dsn_for(name)}, cwd=tmp_path)
    finally:
        admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    assert trade.returncode == 1 and "Traceback" not in trade.stderr
    assert "run `bot migrate`" in trade.stderr
    assert "Traceback" not in done.stderr
