"""Logging for every process (workers, Beat, CLI): one line per event.

Code logs events through :func:`event` (or ``logger.info(msg, extra={"event":
name, "fields": {...}})``). ``LOG_FORMAT=text`` renders
``time level worker event key=value ...``; ``LOG_FORMAT=json`` one JSON object
per line with the same fields. Secrets are redacted from every rendered line,
and identical errors repeated within a window are collapsed.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

_STD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "event", "fields", "taskName"}
_BARE_VALUE = re.compile(r"^[A-Za-z0-9_.:+\-/@,%]+$")

_role = "bot"
_secrets: list[str] = []
_secret_lock = threading.Lock()
# Bearer tokens and JWTs can appear in exception text from HTTP libraries.
_TOKEN_RE = re.compile(r"(Bearer\s+)[A-Za-z0-9\-_.=]+"
                       r"|eyJ[A-Za-z0-9\-_]+\.[A-Za-z0-9\-_]+\.[A-Za-z0-9\-_]*")
_URL_PASSWORD_RE = re.compile(r"(://[^:/@\s]*):[^@/\s]*@")


# The settings whose values are secrets: never shown in a message or a log.
SECRET_NAMES = frozenset({"UPBIT_ACCESS_KEY", "UPBIT_SECRET_KEY", "TELEGRAM_BOT_TOKEN",
                          "NOTIFY_WEBHOOK_URL"})


def redact_url(url: str) -> str:
    """``scheme://user:password@host`` -> ``scheme://user:***@host``."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)


def looks_like_url_secret(name: str) -> bool:
    """DSNs and webhook URLs may carry passwords or tokens; never echo them."""
    return name.endswith("_URL") and name not in {"UPBIT_API_BASE"}


def register_secret(*values: str) -> None:
    """Make these strings appear as ``***`` in every log line from now on."""
    with _secret_lock:
        for value in values:
            if value and len(value) >= 4 and value not in _secrets:
                _secrets.append(value)
        _secrets.sort(key=len, reverse=True)


def redact(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, "***")
    text = _TOKEN_RE.sub(lambda m: (m.group(1) or "") + "***", text)
    return _URL_PASSWORD_RE.sub(r"\1:***@", text)


def event(logger: logging.Logger, name: str, message: str = "", *, level: int = logging.INFO,
          exc_info: Any = None, **fields: Any) -> None:
    """Log one named event with its context fields."""
    logger.log(level, message or name, extra={"event": name, "fields": fields}, exc_info=exc_info)


def _fields_of(record: logging.LogRecord) -> dict[str, Any]:
    fields = dict(getattr(record, "fields", None) or {})
    # Plain ``extra={...}`` keys must show too.
    for key, value in vars(record).items():
        if key not in _STD_ATTRS and not key.startswith("_"):
            fields.setdefault(key, value)
    return fields


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _text_value(value: Any) -> str:
    # Redact before quoting: escaping could hide a secret holding a quote or a
    # backslash from the line-level pass.
    value = _redacted(_plain(value))
    if isinstance(value, (dict, list)):
        text = json.dumps(value, separators=(",", ":"), default=str, ensure_ascii=False)
    elif value is None:
        text = "-"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = redact(str(value))
    if text == "" or not _BARE_VALUE.match(text) and not text.startswith(("{", "[")):
        text = json.dumps(text, ensure_ascii=False)
    return text


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class TextFormatter(logging.Formatter):
    """``2026-11-25T08:00:01.123Z INFO  trader decision market=KRW-BTC score=0.3``"""

    def format(self, record: logging.LogRecord) -> str:
        name = getattr(record, "event", None) or record.name
        parts = [_timestamp(record), f"{record.levelname:<5}", _role, name]
        message = redact(record.getMessage())
        if message and message != name:
            parts.append(_text_value(message) if " " not in message else json.dumps(
                message, ensure_ascii=False))
        parts.extend(f"{k}={_text_value(v)}" for k, v in _fields_of(record).items())
        line = " ".join(parts)
        if record.exc_info and record.exc_info[0] is not None:
            line += "\n" + self.formatException(record.exc_info)
        return redact(line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, worker, event, message, fields."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname,
            "worker": _role,
            "event": getattr(record, "event", None) or record.name,
            "message": record.getMessage(),
            "logger": record.name,
        }
        for key, value in _fields_of(record).items():
            # A field never overwrites the line's own keys; it shows renamed.
            data[key if key not in data else key + "_"] = _plain(value)
        if record.exc_info and record.exc_info[0] is not None:
            data["exception"] = self.formatException(record.exc_info)
        # Redact the values before encoding too: JSON escaping could hide a
        # secret that holds a quote or a backslash from the line-level pass.
        return redact(json.dumps(_redacted(data), default=str, ensure_ascii=False))


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    return value


class RepeatFilter(logging.Filter):
    """Collapses identical WARNING+ lines (same logger, event, message and
    fields): the first passes, repeats within ``window`` seconds are dropped
    and counted, and the first identical line after the window carries
    ``repeated=N``. A dead exchange cannot write thousands of lines a minute,
    and two different errors (another market, another order) both show."""

    def __init__(self, window: float = 60.0, clock: Any = time.monotonic):
        super().__init__()
        self.window = window
        self.clock = clock
        self._seen: dict[tuple[str, str, str], tuple[float, int]] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, getattr(record, "event", "") or "",
               record.getMessage() + " " + _fingerprint(_fields_of(record)))
        now = self.clock()
        with self._lock:
            first, suppressed = self._seen.get(key, (None, 0))
            if first is not None and now - first < self.window:
                self._seen[key] = (first, suppressed + 1)
                return False
            self._seen[key] = (now, 0)
            if len(self._seen) > 1000:
                self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self.window}
        if suppressed:
            record.fields = {**(getattr(record, "fields", None) or {}),
                             "repeated": suppressed}
        return True


def _fingerprint(fields: dict[str, Any]) -> str:
    try:
        return json.dumps(_plain(fields), sort_keys=True, default=str)
    except (TypeError, ValueError):
        return repr(sorted(fields.items(), key=lambda kv: kv[0]))


_QUIET = ("urllib3", "kombu", "amqp", "celery.redirected", "celery.worker.strategy")
# Celery's own task-failure lines repeat what the task.failed event says; its
# app-level warnings concern RabbitMQ, or a retry published after its task's
# expiry (multi-line, once per retry; task.expired reports the drop).
_SILENT = ("celery.app.trace", "celery.app.base")


# Celery's routine INFO lines, the same every few seconds: at DEBUG.
_ROUTINE = {"celery.beat": ("Scheduler: Sending due task",)}


class Demote(logging.Filter):
    """A logger filter that turns INFO records whose message starts with one
    of ``prefixes`` into DEBUG records (dropped unless DEBUG is enabled)."""

    def __init__(self, prefixes: tuple[str, ...]):
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        if (record.levelno == logging.INFO and isinstance(record.msg, str)
                and record.msg.startswith(self.prefixes)):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


def set_role(role: str) -> None:
    """Name this process in every line from now on (collector, trader, ...)."""
    global _role
    _role = role


def setup_logging(level: str = "INFO", fmt: str = "text", role: str = "bot",
                  stream: Any = None, secrets: Iterable[str] = ()) -> None:
    """Configure the root logger (and so Celery's loggers) for this process."""
    global _role
    _role = role
    register_secret(*secrets)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in _QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    # Python warnings (deprecations in a library, ...) become log lines too.
    logging.captureWarnings(True)
    for name in _SILENT:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    for name, prefixes in _ROUTINE.items():
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, Demote)]:
            logger.removeFilter(old)
        logger.addFilter(Demote(prefixes))
