"""The single-Beat lock (bot/worker/scheduler.py): renewed and released only by
its holder; released when Beat stops cleanly, so that a Beat started right
after starts at once; a Beat that finds the lock held says by whom and for
how long, and waits. Real Redis (a private server) and real ``celery beat``
processes."""

from __future__ import annotations

import pytest
import redis

from bot.storage.keys import BEAT_LOCK
from bot.worker.scheduler import BeatLock
from testkit.e2e import RedisServer, Stack, wait_for
from testkit.logcapture import LINE

pytestmark = [pytest.mark.timeout(120)]


@pytest.fixture
def server(tmp_path):
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def client(server):
    return redis.Redis.from_url(f"{server.url}/1")


@pytest.fixture
def stack(server, tmp_path):
    stack = Stack({"DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/unused",
                   "CELERY_BROKER_URL": f"{server.url}/0",
                   "CELERY_BACKEND_URL": f"{server.url}/1",
                   "UPBIT_API_BASE": "http://127.0.0.1:9"}, tmp_path)
    yield stack
    stack.stop()


def _events(text: str, name: str) -> list[str]:
    return [x for x in text.splitlines() if (m := LINE.match(x)) and m.group(4) == name]


def test_only_the_holder_renews_or_releases_the_lock(client):
    ours, theirs = BeatLock(client, "ours", ttl=30), BeatLock(client, "theirs", ttl=30)
    assert ours.take() and not theirs.take()
    assert theirs.holder()[0] == "ours" and 0 < theirs.holder()[1] <= 30
    assert not theirs.renew() and not theirs.release()
    assert client.get(BEAT_LOCK) == b"ours"
    assert ours.renew() and ours.release()
    assert client.exists(BEAT_LOCK) == 0
    # a lock that expired (Redis was away) is taken again by its renewal
    assert ours.renew() and client.get(BEAT_LOCK) == b"ours"
    client.set(BEAT_LOCK, "theirs", ex=30)
    assert not ours.renew() and not ours.release()
    assert client.get(BEAT_LOCK) == b"theirs"


@pytest.mark.e2e
def test_a_stopped_beat_releases_its_lock_and_the_next_starts_at_once(stack, client):
    stack.start("beat")
    wait_for(lambda: _events(stack.log("beat"), "beat.started"), 40, "beat.started")
    assert client.get(BEAT_LOCK) is not None
    stack.stop()  # SIGTERM
    assert "lock=released" in _events(stack.log("beat"), "beat.stopped")[0]
    assert client.exists(BEAT_LOCK) == 0
    stack.start("beat")
    wait_for(lambda: _events(stack.log("beat"), "beat.started"), 40, "the second beat.started")
    assert _events(stack.log("beat"), "beat.waiting") == []


@pytest.mark.e2e
def test_beat_says_who_holds_the_lock_and_waits_for_it(stack, client):
    client.set(BEAT_LOCK, "beat@elsewhere-7-1700000000", ex=4)  # a Beat killed 26 s ago
    stack.start("beat")
    wait_for(lambda: _events(stack.log("beat"), "beat.started"), 40, "beat.started")
    [waiting] = _events(stack.log("beat"), "beat.waiting")
    assert " WARNING beat beat.waiting holder=beat@elsewhere-7-1700000000 expires_in_s=" in waiting
    assert 0 <= int(waiting.split("expires_in_s=")[1].split()[0]) <= 4


@pytest.mark.e2e
def test_beat_leaves_a_lock_taken_by_another(stack, client):
    stack.start("beat")
    wait_for(lambda: _events(stack.log("beat"), "beat.started"), 40, "beat.started")
    client.set(BEAT_LOCK, "another-beat", ex=60)
    # its next renewal finds the other holder: it stops by itself
    wait_for(lambda: not stack.alive("beat"), 40, "beat to stop")
    log = stack.log("beat")
    assert "holder=another-beat" in _events(log, "beat.lock_lost")[0]
    assert 'lock="not ours"' in _events(log, "beat.stopped")[0]
    assert client.get(BEAT_LOCK) == b"another-beat"
