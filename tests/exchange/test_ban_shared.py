"""A 418 ban is the installation's: a second process, on the same Redis, sends
nothing to Upbit until the ban one process received has ended, and
``bot status`` shows it."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import UTC, datetime

import pytest
import redis

from bot.errors import Banned
from bot.exchange.bans import RedisBans, read_ban
from bot.exchange.upbit import UpbitClient
from testkit import ROOT
from testkit.fakeupbit import FakeUpbit
from testkit.settings import redis_db

OTHER_PROCESS = """
import sys
from bot.errors import Banned
from bot.exchange.bans import RedisBans
from bot.exchange.upbit import UpbitClient
import redis
url, redis_url, key = sys.argv[1:4]
client = UpbitClient(url, bans=RedisBans(redis.Redis.from_url(redis_url), key=key))
try:
    client.markets()
except Banned as exc:
    print(f"banned {exc.retry_after:.0f}")
else:
    print("sent")
"""


@pytest.fixture
def board():
    client = redis.Redis.from_url(redis_db(2))
    key = f"test:upbit:ban:{uuid.uuid4().hex}"
    yield client, key
    client.delete(key)


def test_a_ban_one_process_got_stops_another_process_from_sending(board):
    client, key = board
    with FakeUpbit() as server:
        server.ban_next(120)
        first = UpbitClient(server.url, bans=RedisBans(client, key=key), sleep=lambda s: None)
        with pytest.raises(Banned) as info:
            first.markets()
        assert 110 <= info.value.retry_after <= 120
        sent_before = len(server.requests)
        out = subprocess.run([sys.executable, "-c", OTHER_PROCESS, server.url,
                              redis_db(2), key], cwd=ROOT, capture_output=True, text=True,
                             timeout=30)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split()[0] == "banned" and 100 <= float(out.stdout.split()[1]) <= 120
        assert len(server.requests) == sent_before  # the other process sent nothing
        first.close()
    until, strikes = read_ban(client, key=key)
    assert strikes == 1 and 100 <= (until - datetime.now(UTC)).total_seconds() <= 120


def test_bot_status_shows_the_ban_and_when_it_ends(db, database_url):
    from bot.exchange.factory import make_exchange
    from bot.report import status
    from testkit.settings import make_settings
    settings = make_settings(database_url)
    until = datetime(2026, 12, 1, 23, 10, 5, tzinfo=UTC)
    got = status.collect(settings, db, make_exchange(settings, db, view=True), {},
                         ban=(until, 2))
    assert got["upbit_ban"] == {"until": until, "strikes": 2}
    assert ("Upbit ban in force until 23:10:05Z (strike 2): nothing is sent to Upbit until then"
            in got["problems"]) and not got["ok"]
