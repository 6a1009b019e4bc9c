"""The Celery app, configured lazily: started as ``celery -A bot.worker.app
worker -Q collector_queue`` (or ``trader_queue``, ``optimizer_queue``) and
``celery -A bot.worker.app beat``.

Importing this module (or any of bot.worker) reads no setting and connects
nowhere. The configuration is a promise (``app.add_defaults``) that Celery
evaluates when it first reads ``app.conf``: a worker or Beat does so before
connecting anywhere, so a bad setting still stops it there with one line on
stderr and exit code 2.
"""

from __future__ import annotations

import sys
import warnings

from celery import Celery
from celery.exceptions import SecurityWarning

from bot import clock
from bot.config import Settings, get_settings
from bot.errors import ConfigError
from bot.worker import timing

# Celery warns in nine raw lines, before logging is set up, when a worker runs
# as root; bot.worker.signals says it in one line (worker.root) instead.
warnings.filterwarnings("ignore", message="You're running the worker with superuser",
                        category=SecurityWarning)

QUEUES = {"collect": "collector_queue", "markets": "collector_queue",
          "each_market": "collector_queue", "trade": "trader_queue",
          "reconcile": "trader_queue", "optimize": "optimizer_queue",
          "optimize_due": "optimizer_queue", "daily_summary": "trader_queue"}
ROLES = {"collector_queue": "collector", "trader_queue": "trader",
         "optimizer_queue": "optimizer"}


def settings() -> Settings:
    """The process's settings; a bad one ends the process with one line on
    stderr and exit code 2 (no traceback: the message says what to fix)."""
    try:
        return get_settings()
    except ConfigError as exc:
        sys.stderr.write(f"bot: {exc}\n")
        raise SystemExit(2) from None


def _config() -> dict[str, object]:
    """Celery's configuration, from the settings."""
    current = settings()
    clock.configure(float(current.bot_clock_speedup), float(current.bot_clock_epoch))
    # The handlers are connected here, where every worker and Beat configures
    # the app before it sends its first signal, whichever module ``-A`` names;
    # importing them from this module's top would make importing the app
    # connect them too, and close a cycle (they use the app and its tasks).
    from bot.worker import scheduler, signals  # noqa: F401
    return {
        "broker_url": current.celery_broker_url,
        "result_backend": current.celery_backend_url,
        "task_routes": {name: {"queue": queue} for name, queue in QUEUES.items()},
        "task_default_queue": "collector_queue",
        "task_annotations": {name: {"soft_time_limit": soft, "time_limit": hard}
                             for name, (soft, hard) in timing.limits(current).items()},
        "task_serializer": "json", "accept_content": ["json"], "result_serializer": "json",
        "task_ignore_result": True,
        "timezone": current.timezone, "enable_utc": True,
        "worker_prefetch_multiplier": 1,
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
        "broker_connection_retry_on_startup": True,
        "broker_connection_retry": True,
        "broker_connection_max_retries": None,  # keep reconnecting to Redis, never crash-loop
        "broker_transport_options": {"visibility_timeout": 600},
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "result_expires": 3600,
        "beat_schedule": scheduler.build_beat_schedule(current),
    }


# include: the worker imports the tasks (and so registers them) before it
# consumes; Beat sends them by name and needs only the schedule.
app = Celery("bot", include=["bot.worker.tasks"])
app.add_defaults(_config)
