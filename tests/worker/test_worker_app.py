"""The Celery app is configured lazily: importing any bot.worker module reads
no setting, even a malformed one; a worker or Beat that starts reads them
and refuses a bad one with one line and exit code 2 (the worker's case:
tests/test_deploy.py::test_worker_with_a_bad_setting_exits_2_before_connecting).
Configuring the app connects the signal handlers and holds Beat's schedule."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BAD = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "THRESHOLD": "abc",
       "CELERY_BROKER_URL": "redis://127.0.0.1:1/0"}

IMPORT_ALL = """
import bot.config
import bot.worker.tasks, bot.worker.app, bot.worker.scheduler
import bot.worker.signals, bot.worker.runtime, bot.worker.runner, bot.worker.timing
from bot.worker.app import app
assert not app.configured
assert bot.config.get_settings.cache_info().currsize == 0, "the settings were read"
print("imported")
"""

CONFIGURE = """
import sys
from celery import signals
from bot.worker.app import app
assert "bot.worker.signals" not in sys.modules
assert app.conf.task_routes["trade"] == {"queue": "trader_queue"}
assert "bot.worker.signals" in sys.modules and "bot.worker.scheduler" in sys.modules
for signal in (signals.setup_logging, signals.celeryd_after_setup, signals.worker_ready,
               signals.task_failure, signals.beat_init):
    assert signal.receivers, signal.name
assert {"collect", "trade", "reconcile", "optimize"} <= set(app.tasks)
assert "collect KRW-BTC" in app.conf.beat_schedule
assert app.tasks["collect"].soft_time_limit > 0
print("configured")
"""


def _python(code: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def test_importing_the_worker_modules_reads_no_setting(tmp_path):
    done = _python(IMPORT_ALL, BAD, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "imported"


def test_configuring_the_app_connects_the_handlers_and_the_schedule(tmp_path):
    env = {**BAD, "THRESHOLD": "0.5", "MARKETS": "KRW-BTC"}
    done = _python(CONFIGURE, env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "configured"


def test_beat_with_a_bad_setting_exits_2_with_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "celery", "-q", "-A", "bot.worker.app", "beat",
                           "-s", str(tmp_path / "beat-state")], env=BAD, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr == "bot: invalid setting THRESHOLD='abc': a decimal number > 0 and <= 1\n"
    assert not (tmp_path / "beat-state").exists()  # nothing started
