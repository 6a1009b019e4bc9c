"""Per-market locks in Redis: exclusive, waited for briefly, renewed while
held, and released by the same worker's next start."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from bot.errors import LockBusy
from bot.worker.runtime import Runtime
from testkit.settings import make_settings, redis_db


@pytest.fixture
def runtime():
    rt = Runtime(make_settings(CELERY_BACKEND_URL=redis_db(3)))
    rt.node = f"test-{uuid.uuid4().hex[:8]}"
    yield rt
    for key in rt.redis.scan_iter(match="bot:lock:*"):
        rt.redis.delete(key)


def test_a_held_lock_makes_the_second_run_skip_or_wait(runtime):
    market = f"KRW-{uuid.uuid4().hex[:6].upper()}"
    released = threading.Event()

    def hold():
        with runtime.market_lock("orders", market):
            time.sleep(0.5)
        released.set()

    holder = threading.Thread(target=hold)
    holder.start()
    time.sleep(0.1)
    with pytest.raises(LockBusy), runtime.market_lock("orders", market):
        pass
    started = time.monotonic()
    with runtime.market_lock("orders", market, wait=5):
        assert released.is_set()
    assert time.monotonic() - started < 2
    holder.join()


def test_the_lock_is_renewed_while_held(runtime):
    market = "KRW-RENEW"
    with runtime.market_lock("collect", market, ttl=0.6):
        time.sleep(1.0)  # longer than the TTL: renewal keeps it
        with pytest.raises(LockBusy), runtime.market_lock("collect", market):
            pass


def test_a_restarted_worker_releases_only_its_own_locks(runtime):
    other = Runtime(runtime.settings)
    other.node = "someone-else"
    runtime.redis.set("bot:lock:collect:KRW-A", f"{runtime.node}:abc")
    runtime.redis.set("bot:lock:collect:KRW-B", "someone-else:def")
    assert runtime.release_own_locks() == 1
    assert runtime.redis.get("bot:lock:collect:KRW-A") is None
    assert runtime.redis.get("bot:lock:collect:KRW-B") == b"someone-else:def"
