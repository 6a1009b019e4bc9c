"""Notifications: optional (off by default) messages to Telegram and/or a
Slack-compatible webhook.

:func:`notifier` gives the jobs a ``notify(event_name, **fields)`` that turns
an event (one of ``NOTIFY_EVENT_NAMES``) into one short human message and
hands it to a background thread; it never raises and never waits on the
network. The thread tries each channel a few times with short timeouts, then
logs ``notify.failed`` and drops the message: a dead chat service cannot slow
or break trading. Secrets (the bot token, the webhook URL) are registered for
redaction and never logged; message text is redacted too.

The message text is bot/report/messages.py's; the daily summary is sent from
bot/report/daily.py and the "job failing repeatedly" streaks are counted in
bot/report/failures.py; both send with a function from :func:`notifier`.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

from bot.config import Settings
from bot.logs import event, redact, register_secret
from bot.report.messages import format_message

log = logging.getLogger(__name__)

TELEGRAM_API = "https://api.telegram.org"
ATTEMPTS = 3
RETRY_DELAYS = (1.0, 3.0)  # seconds before the 2nd and the 3rd try
MAX_RETRY_AFTER = 10.0  # a longer rate-limit wait is not worth holding the queue
TIMEOUT = (3.05, 5.0)  # connect, read
QUEUE_SIZE = 100


@dataclass(frozen=True)
class Channel:
    """Where a message goes: ``telegram`` or ``webhook``."""

    name: str
    url: str
    chat_id: str = ""

    def payload(self, text: str) -> dict[str, Any]:
        if self.name == "telegram":
            return {"chat_id": self.chat_id, "text": text, "disable_web_page_preview": True}
        return {"text": text}

    def __repr__(self) -> str:  # the URL holds a token
        return f"Channel({self.name})"


def channels(settings: Settings) -> tuple[Channel, ...]:
    """The configured channels (none by default)."""
    out = []
    if settings.telegram_bot_token and settings.telegram_chat_id:
        out.append(Channel("telegram",
                           f"{TELEGRAM_API}/bot{settings.telegram_bot_token}/sendMessage",
                           settings.telegram_chat_id))
    if settings.notify_webhook_url:
        out.append(Channel("webhook", settings.notify_webhook_url))
    return tuple(out)


# --- delivery -----------------------------------------------------------------


def deliver(channel: Channel, name: str, text: str, *, session: requests.Session | None = None,
            sleep: Callable[[float], None] = time.sleep) -> bool:
    """Send one message to one channel with bounded retries; True when sent.
    Network errors, 429 and 5xx are tried again; any other answer is final.
    Logs ``notify.sent`` or ``notify.failed``; never raises."""
    http = session or requests
    error = ""
    attempt = 0
    for attempt in range(1, ATTEMPTS + 1):
        wait = RETRY_DELAYS[min(attempt - 1, len(RETRY_DELAYS) - 1)]
        try:
            response = http.post(channel.url, json=channel.payload(text), timeout=TIMEOUT,
                                 allow_redirects=False)
        except requests.RequestException as exc:
            error = f"{type(exc).__name__}: {exc}"
        else:
            if 200 <= response.status_code < 300 and _accepted(channel, response):
                event(log, "notify.sent", channel=channel.name, notification=name,
                      attempts=attempt)
                return True
            error = f"HTTP {response.status_code}: {response.text[:200]}"
            if response.status_code == 429:
                wait = min(MAX_RETRY_AFTER, _retry_after(response) or wait)
            elif response.status_code < 500:
                break  # refused (bad token, unknown chat, bad URL): trying again won't help
        if attempt < ATTEMPTS:
            sleep(wait)
    event(log, "notify.failed", level=logging.WARNING, channel=channel.name, notification=name,
          attempts=attempt, error=redact(error), detail="message dropped")
    return False


def _accepted(channel: Channel, response: requests.Response) -> bool:
    if channel.name != "telegram":
        return True
    try:
        return bool(response.json().get("ok", True))
    except ValueError:
        return True


def _retry_after(response: requests.Response) -> float | None:
    try:
        return float(response.headers.get("Retry-After", ""))
    except ValueError:
        pass
    try:
        return float(response.json()["parameters"]["retry_after"])
    except (ValueError, KeyError, TypeError):
        return None


class _Sender:
    """One daemon thread per process draining a bounded queue."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.queue: queue.Queue[tuple[tuple[Channel, ...], str, str]] = queue.Queue(QUEUE_SIZE)
        self.thread = threading.Thread(target=self._run, name="notify", daemon=True)
        self.thread.start()

    def submit(self, chans: tuple[Channel, ...], name: str, text: str) -> bool:
        try:
            self.queue.put_nowait((chans, name, text))
            return True
        except queue.Full:
            event(log, "notify.failed", level=logging.WARNING, notification=name,
                  error="queue full", detail="message dropped")
            return False

    def _run(self) -> None:
        session = requests.Session()
        while True:
            chans, name, text = self.queue.get()
            try:
                for channel in chans:
                    deliver(channel, name, text, session=session)
            except Exception as exc:  # pragma: no cover - deliver does not raise
                event(log, "notify.failed", level=logging.WARNING, notification=name,
                      error=type(exc).__name__, detail=redact(str(exc)))
            finally:
                self.queue.task_done()

    def flush(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.queue.all_tasks_done:
            while self.queue.unfinished_tasks:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.queue.all_tasks_done.wait(left)
        return True


_sender: _Sender | None = None
_sender_lock = threading.Lock()


def _get_sender() -> _Sender:
    global _sender
    with _sender_lock:
        if _sender is None or _sender.pid != os.getpid():  # none yet, or forked
            _sender = _Sender()
            atexit.register(flush, 5.0)
        return _sender


def flush(timeout: float = 10.0) -> bool:
    """Wait (at most ``timeout`` s) until every queued message was sent or
    dropped; True when the queue is empty. Called at exit, and by tests."""
    sender = _sender
    if sender is None or sender.pid != os.getpid():
        return True
    return sender.flush(timeout)


def notifier(settings: Settings) -> Callable[..., None]:
    """A function ``notify(event_name, **fields)`` that never raises and never
    blocks: events not in NOTIFY_EVENTS, or with no channel configured, are
    ignored; others are formatted and queued for the background sender."""
    chans = channels(settings)
    register_secret(*settings.secret_values(), *(c.url for c in chans))
    wanted = frozenset(settings.notify_events)

    def notify(name: str, **fields: Any) -> None:
        try:
            if not chans or name not in wanted:
                return
            text = format_message(name, fields, live=settings.live)
            _get_sender().submit(chans, name, text)
        except Exception as exc:  # never let a notification break the caller
            event(log, "notify.failed", level=logging.WARNING, notification=name,
                  error=type(exc).__name__, detail=redact(str(exc)))

    return notify


__all__ = ["Channel", "channels", "deliver", "flush", "notifier"]
