"""`bot run`: Beat and the three workers as child processes, their output
prefixed with their names, all stopped on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import redis

from tests.e2e_support import ROOT, RedisServer, wait_for
from tests.fakeupbit import FakeUpbit

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def test_bot_run_starts_prefixes_and_stops_everything(db, database_url, tmp_path):
    server_redis = RedisServer(tmp_path)
    server_redis.start()
    epoch = time.time()
    with FakeUpbit(speedup=30, epoch=epoch, history_minutes=400) as upbit:
        env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1",
               "DATABASE_URL": database_url, "UPBIT_API_BASE": upbit.url,
               "CELERY_BROKER_URL": f"{server_redis.url}/0",
               "CELERY_BACKEND_URL": f"{server_redis.url}/1",
               "BOT_CLOCK_SPEEDUP": "30", "BOT_CLOCK_EPOCH": repr(epoch),
               "COLLECT_SCHEDULE": "2", "TRADE_SCHEDULE": "2", "RECONCILE_SCHEDULE": "2",
               "BACKFILL_MAX_CANDLES": "300"}
        proc = subprocess.Popen([sys.executable, "-m", "bot", "run", "--schedule-file",
                                 str(tmp_path / "beat-state")], env=env, cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")),
                                  daemon=True)
        reader.start()
        try:
            for name in ("beat", "collector", "trader", "optimizer"):
                wait_for(lambda n=name: any(line.startswith(f"{n:<9} | ") for line in lines),
                         40, f"output prefixed with {name}")
            wait_for(lambda: any(line.startswith("collector | ") and "candles.stored" in line
                                 for line in lines), 40, "the collector to store candles")
            wait_for(lambda: any(line.startswith("trader    | ") and " decision " in line
                                 for line in lines), 40, "the trader to decide")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(40) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        reader.join(5)
        # every child is gone: none of them is connected to Redis any more
        client = redis.Redis.from_url(server_redis.url)
        wait_for(lambda: len(client.client_list()) == 1, 20, "the children to disconnect")
        server_redis.stop()
