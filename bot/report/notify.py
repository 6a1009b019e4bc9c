"""Notifications: optional (off by default) messages to Telegram and/or a
Slack-compatible webhook.

:func:`notifier` gives the jobs a ``notify(event_name, **fields)`` that turns
an event (one of ``NOTIFY_EVENT_NAMES``) into one short human message and
hands it to a background thread; it never raises and never waits on the
network. The thread tries each channel a few times with short timeouts, then
logs ``notify.failed`` and drops the message: a dead chat service cannot slow
or break trading. Secrets (the bot token, the webhook URL) are registered for
redaction and never logged; message text is redacted too.

Also here: the daily summary (:func:`daily_summary`, :func:`send_daily_summary`)
and the "job failing repeatedly" message (:func:`repeated_failure`,
:func:`note_failure`, :func:`note_success`), which the Celery wiring calls.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import requests

from bot.config import Settings
from bot.logs import event, redact, register_secret
from bot.models import NOTIFY_EVENT_NAMES
from bot.storage import keys

log = logging.getLogger(__name__)

TELEGRAM_API = "https://api.telegram.org"
ATTEMPTS = 3
RETRY_DELAYS = (1.0, 3.0)  # seconds before the 2nd and the 3rd try
MAX_RETRY_AFTER = 10.0  # a longer rate-limit wait is not worth holding the queue
TIMEOUT = (3.05, 5.0)  # connect, read
QUEUE_SIZE = 100
MAX_TEXT = 3500  # Telegram's limit is 4096 characters
FAILURES_TTL = 86400


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


# --- messages -----------------------------------------------------------------


def _num(value: Any, signed: bool = False) -> str:
    from bot.report.status import krw
    if value is None:
        return "?"
    try:
        return krw(Decimal(str(value)), signed)
    except (ArithmeticError, ValueError):
        return str(value)


def _price(value: Any) -> str:
    from bot.report.status import price
    if value is None:
        return "?"
    try:
        return price(Decimal(str(value)))
    except (ArithmeticError, ValueError):
        return str(value)


def _coins(value: Any) -> str:
    from bot.report.status import coins
    if value is None:
        return "?"
    try:
        return coins(Decimal(str(value)))
    except (ArithmeticError, ValueError):
        return str(value)


def _pct(value: Any) -> str:
    return "-" if value is None else f"{float(value):+.2f} %"


def repeated_failure(task: str, failures: int, error: str, detail: str = "",
                     market: str | None = None) -> str:
    """``collect KRW-BTC has failed 3 times in a row: ExchangeTemporaryError: ...``"""
    what = f"{task} {market}" if market else task
    text = f"{what} has failed {failures} times in a row: {error}"
    if detail:
        text += f": {detail[:300]}"
    return text


def _filled(f: Mapping[str, Any]) -> str:
    coin = str(f.get("market", "")).partition("-")[2]
    verb = "BUY" if f.get("side") == "bid" else "SELL"
    return (f"{f.get('market')} {verb} filled: {_coins(f.get('volume'))} {coin} at "
            f"{_price(f.get('price'))} KRW = {_num(f.get('funds'))} KRW (fee {_num(f.get('fee'))})")


def _cancelled(f: Mapping[str, Any]) -> str:
    coin = str(f.get("market", "")).partition("-")[2]
    side = "buy" if f.get("side") == "bid" else "sell"
    why = "not filled in time" if f.get("reason") == "timeout" else str(f.get("reason"))
    return (f"{f.get('market')} {side} order cancelled ({why}): {_coins(f.get('volume'))} {coin}"
            f" at {_price(f.get('price'))} KRW")


def _loss_limit(f: Mapping[str, Any]) -> str:
    try:
        drop = (1 - Decimal(str(f["equity"])) / Decimal(str(f["start_equity"]))) * 100
        below = f" ({drop:.2f} % below)"
    except (KeyError, ArithmeticError, ValueError):
        below = ""
    return (f"Daily loss limit tripped: equity {_num(f.get('equity'))} KRW against "
            f"{_num(f.get('start_equity'))} KRW at the day's start{below}, limit "
            f"{f.get('limit_pct')} %. No new buys until 00:00 UTC.")


def _adopted(f: Mapping[str, Any]) -> str:
    text = f"{f.get('market')}: new weights adopted (v{f.get('version')}): {f.get('weights')}"
    if f.get("params"):
        text += f"; {f['params']}"
    if f.get("resumed"):
        text += "; buys resume after standing aside"
    return text + (f". {f['reason']}" if f.get("reason") else "")


def _stood_aside(f: Mapping[str, Any]) -> str:
    version = f.get("version")
    using = f"v{version}" if version is not None else "the settings"
    text = (f"{f.get('market')}: standing aside: no new buys until the optimizer adopts a "
            "parameter set (exits and sells go on).")
    if f.get("holdout_return") is not None:
        return text + (f" The parameters in force ({using}) lost "
                       f"{_pct(float(f['holdout_return']) * 100)} on the holdout and no "
                       "candidate qualifies.")
    return text + (f" {f['reason']}" if f.get("reason") else "")


def _failing(f: Mapping[str, Any]) -> str:
    return repeated_failure(str(f.get("task", "?")), int(f.get("failures", 0)),
                            str(f.get("error", "")), str(f.get("detail", "") or ""),
                            f.get("market"))


def summary_text(f: Mapping[str, Any]) -> str:
    """The daily summary's text from :func:`daily_summary`'s fields."""
    hours = f.get("hours", 24)
    from bot.report.status import trades_text
    lines = [f"Daily summary (last {hours:g} h): realised PnL {_num(f.get('realised'), True)}"
             f" KRW, fees {_num(f.get('fees'))} KRW, {trades_text(f.get('trades', 0))}."]
    if f.get("equity") is not None:
        line = f"Equity {_num(f['equity'])} KRW"
        if f.get("return_pct") is not None:
            started = f.get("started")
            since = started.strftime("%Y-%m-%d") if isinstance(started, datetime) else started
            line += (f": {_pct(f['return_pct'])} since {since} against buy-and-hold "
                     f"{_pct(f.get('buy_and_hold_pct'))}")
        lines.append(line + ".")
    elif f.get("error"):
        lines.append(f"Equity unknown: {f['error']}.")
    for m in f.get("markets") or ():
        if m.get("trades") or m.get("realised"):
            lines.append(f"{m['market']}: {_num(m.get('realised'), True)} KRW, "
                         f"{trades_text(m.get('trades', 0))}, fees {_num(m.get('fees'))}")
    return "\n".join(lines)


_FORMATS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "order.filled": _filled,
    "order.cancelled": _cancelled,
    "risk.loss_limit": _loss_limit,
    "weights.adopted": _adopted,
    "weights.stood_aside": _stood_aside,
    "job.failing": _failing,
    "daily.summary": summary_text,
}


def format_message(name: str, fields: Mapping[str, Any], *, live: bool = False) -> str:
    """One short human message for an event, prefixed with the mode."""
    render = _FORMATS.get(name)
    if render is None:
        body = name + ": " + " ".join(f"{k}={v}" for k, v in fields.items())
    else:
        try:
            body = render(fields)
        except Exception:  # a formatting slip must not cost the message
            body = name + ": " + " ".join(f"{k}={v}" for k, v in fields.items())
    text = f"[{'LIVE' if live else 'paper'}] {body}"
    if len(text) > MAX_TEXT:
        text = text[:MAX_TEXT - 3] + "..."
    return redact(text)


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


# --- the daily summary and repeated failures ----------------------------------


def daily_summary(settings: Settings, db: Any, exchange: Any, *,
                  now: datetime | None = None) -> dict[str, Any]:
    """The last 24 hours (see :func:`bot.report.status.daily_report`) with its
    message in ``text``."""
    from bot.report.status import daily_report
    report = daily_report(settings, db, exchange, now=now)
    report["text"] = summary_text(report)
    return report


def send_daily_summary(settings: Settings, db: Any, exchange: Any, *,
                       notify: Callable[..., None] | None = None,
                       now: datetime | None = None) -> dict[str, Any]:
    """Log the daily summary (event ``daily.summary``) and send it as a
    notification of the same name; returns the summary. Raises only what
    :func:`daily_summary` raises (the database being down)."""
    report = daily_summary(settings, db, exchange, now=now)
    won = Decimal(1)
    event(log, "daily.summary", hours=report["hours"], realised=report["realised"].quantize(won),
          fees=report["fees"].quantize(won), trades=report["trades"],
          equity=None if report["equity"] is None else report["equity"].quantize(won),
          return_pct=report["return_pct"], buy_and_hold_pct=report["buy_and_hold_pct"],
          error=report["error"])
    (notify or notifier(settings))("daily.summary", **{k: v for k, v in report.items()
                                                       if k != "text"})
    return report


def note_failure(settings: Settings, client: Any, notify: Callable[..., None], task: str,
                 market: str | None, error: str, detail: str = "") -> int:
    """Count a failed run of ``task`` for ``market`` (Redis, per streak) and send
    ``job.failing`` once the streak reaches NOTIFY_FAILURES_AFTER. Returns the
    streak length (0 when Redis is down); never raises."""
    key = keys.failures(task, market)
    try:
        count = int(client.incr(key))
        client.expire(key, FAILURES_TTL)
    except Exception as exc:
        event(log, "notify.failed", level=logging.WARNING, notification="job.failing",
              error=type(exc).__name__, detail=redact(str(exc)))
        return 0
    if count == settings.notify_failures_after:
        notify("job.failing", task=task, market=market, failures=count, error=error,
               detail=detail)
    return count


def note_success(client: Any, task: str, market: str | None) -> None:
    """End ``task``'s failure streak for ``market``; never raises."""
    try:
        client.delete(keys.failures(task, market))
    except Exception as exc:
        event(log, "notify.failed", level=logging.DEBUG, notification="job.failing",
              error=type(exc).__name__, detail=redact(str(exc)))


__all__ = ["NOTIFY_EVENT_NAMES", "Channel", "channels", "daily_summary", "deliver", "flush",
           "format_message", "note_failure", "note_success", "notifier", "repeated_failure",
           "send_daily_summary", "summary_text"]
