"""Settings: every environment variable the daemon reads, parsed once into one
immutable object.

This is the only module that reads ``os.environ``. Each setting is declared once
in ``SETTINGS`` (name, default, parser, meaning); ``.env.example`` and the
README's configuration table are checked against that list by the tests, so the
three cannot drift. A bad value raises :class:`ConfigError`, which the entry
points turn into one line on stderr and exit code 2.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.errors import ConfigError, EnvFileError, MissingSettings
from bot.logs import SECRET_NAMES, redact_url
from bot.models import CANDLE_UNITS, NOTIFY_EVENT_NAMES, SIGNAL_NAMES, TUNABLE, timeframe_of
from bot.money import AGGRESSIVENESS_DECIMALS

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_MARKET_RE = re.compile(r"^KRW-[A-Z0-9]{1,15}$")
_CRON_FIELD_RE = re.compile(r"^[0-9*/,\-]+$")


# --- parsers: each takes the raw string and returns the typed value or raises
# ValueError with the "allowed" text.


def _decimal(lo: Decimal | None = None, hi: Decimal | None = None, *, lo_open: bool = False,
             hi_open: bool = False) -> Callable[[str], Decimal]:
    def describe() -> str:
        parts = []
        if lo is not None:
            parts.append(f"{'>' if lo_open else '>='} {lo}")
        if hi is not None:
            parts.append(f"{'<' if hi_open else '<='} {hi}")
        return "a decimal number" + (" " + " and ".join(parts) if parts else "")

    def parse(raw: str) -> Decimal:
        try:
            value = Decimal(raw.strip())
        except InvalidOperation:
            raise ValueError(describe()) from None
        if not value.is_finite():
            raise ValueError(describe())
        if lo is not None and (value < lo or (lo_open and value == lo)):
            raise ValueError(describe())
        if hi is not None and (value > hi or (hi_open and value == hi)):
            raise ValueError(describe())
        return value

    return parse


def _aggressiveness(raw: str) -> Decimal:
    allowed = (f"a decimal number >= 0 and < 0.1 with at most {AGGRESSIVENESS_DECIMALS}"
               " decimals")
    try:
        value = _decimal(Decimal(0), Decimal("0.1"), hi_open=True)(raw)
    except ValueError:
        raise ValueError(allowed) from None
    if -value.normalize().as_tuple().exponent > AGGRESSIVENESS_DECIMALS:
        raise ValueError(allowed)
    return value


def _int(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    def describe() -> str:
        if lo is not None and hi is not None:
            return f"an integer from {lo} to {hi}"
        if lo is not None:
            return f"an integer >= {lo}"
        return "an integer"

    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(describe()) from None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ValueError(describe())
        return value

    return parse


def _choice(*options: str, lower: bool = True) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower() if lower else raw.strip().upper()
        if value not in options:
            raise ValueError("one of " + ", ".join(options))
        return value

    return parse


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("true or false")


def _text(raw: str) -> str:
    return raw.strip()


def _host(raw: str) -> str:
    value = raw.strip()
    if not re.fullmatch(r"[A-Za-z0-9.:\-]+", value):
        raise ValueError("an IP address or host name to listen on, e.g. 127.0.0.1")
    return value


def _url(*schemes: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip()
        if not any(value.startswith(s + "://") for s in schemes):
            raise ValueError("a URL starting with " + " or ".join(s + "://" for s in schemes))
        return value.rstrip("/") if schemes == ("http", "https") else value

    return parse


def _optional_url(raw: str) -> str:
    return "" if not raw.strip() else _url("http", "https")(raw)


def _notify_events(raw: str) -> tuple[str, ...]:
    """``all`` (every event), ``none``, or a comma list of event names."""
    allowed = "all, none, or a comma list of " + ", ".join(NOTIFY_EVENT_NAMES)
    value = raw.strip().lower()
    if value == "all":
        return NOTIFY_EVENT_NAMES
    if value in ("none", ""):
        return ()
    items = [item.strip() for item in value.split(",") if item.strip()]
    if not items or any(item not in NOTIFY_EVENT_NAMES for item in items):
        raise ValueError(allowed)
    return tuple(dict.fromkeys(items))


def _tune(raw: str) -> tuple[str, ...]:
    items = [item.strip().lower() for item in raw.split(",") if item.strip()]
    if not items or any(item not in TUNABLE for item in items):
        raise ValueError("a comma list of " + ", ".join(TUNABLE))
    return tuple(name for name in TUNABLE if name in items)


MAX_TOP = 50  # top:N beyond this would outrun one IP's 10 requests/s (README: throughput)


@dataclass(frozen=True)
class Top:
    """``MARKETS=top:N``: the N KRW markets with the highest 24-hour traded value."""

    count: int


def _markets(raw: str) -> tuple[str, ...] | Top:
    allowed = (f"comma-separated KRW markets such as KRW-BTC,KRW-ETH, or top:N (N from 1 to"
               f" {MAX_TOP}) for the N most traded KRW markets")
    text = raw.strip()
    if text.lower().startswith("top:"):
        count = text[4:].strip()
        if not count.isdigit() or not 1 <= int(count) <= MAX_TOP:
            raise ValueError(allowed)
        return Top(int(count))
    items = [m.strip().upper() for m in raw.split(",") if m.strip()]
    if not items or any(not _MARKET_RE.match(m) for m in items):
        raise ValueError(allowed)
    return tuple(dict.fromkeys(items))


def _market_list(raw: str) -> tuple[str, ...]:
    items = [m.strip().upper() for m in raw.split(",") if m.strip()]
    if any(not _MARKET_RE.match(m) for m in items):
        raise ValueError("comma-separated KRW markets such as KRW-DOGE,KRW-SHIB (or empty)")
    return tuple(dict.fromkeys(items))


def _unit(raw: str) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        value = -1
    if value not in CANDLE_UNITS:
        raise ValueError("one of " + ", ".join(map(str, CANDLE_UNITS)) + " (candle minutes)")
    return value


def _schedule(raw: str) -> str:
    """A 5-field crontab or a positive number of seconds; kept as text, the
    scheduler turns it into a Celery schedule."""
    value = " ".join(raw.split())
    allowed = "a 5-field crontab such as '* * * * *' or a number of seconds such as 30"
    try:
        seconds = float(value)
    except ValueError:
        fields = value.split(" ")
        if len(fields) != 5 or not all(_CRON_FIELD_RE.match(f) for f in fields):
            raise ValueError(allowed) from None
        return value
    if not seconds > 0:
        raise ValueError(allowed)
    return value


def _timezone(raw: str) -> str:
    value = raw.strip()
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("an IANA time zone such as Asia/Seoul or UTC") from None
    return value


def parse_weights(raw: str) -> dict[str, float]:
    """``trend=1,momentum=2`` -> normalised weights; empty means equal weights."""
    allowed = ("empty (equal weights) or name=weight pairs over "
               + ", ".join(SIGNAL_NAMES) + ", non-negative, not all zero")
    if not raw.strip():
        return {}
    out: dict[str, float] = {}
    for part in raw.split(","):
        name, sep, number = part.partition("=")
        name = name.strip()
        if not sep or name not in SIGNAL_NAMES:
            raise ValueError(allowed)
        try:
            value = float(number)
        except ValueError:
            raise ValueError(allowed) from None
        if not value >= 0 or value == float("inf"):
            raise ValueError(allowed)
        out[name] = value
    if sum(out.values()) <= 0:
        raise ValueError(allowed)
    return out


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    parse: Callable[[str], Any]
    meaning: str
    attr: str = ""
    group: str = "general"

    @property
    def field_name(self) -> str:
        return self.attr or self.name.lower()


S = Setting
SETTINGS: tuple[Setting, ...] = (
    # connections
    S("DATABASE_URL", "postgresql://bot:bot@database:5432/bot", _url("postgresql", "postgres"),
      "PostgreSQL/TimescaleDB DSN", group="connections"),
    S("CELERY_BROKER_URL", "redis://redis:6379/0", _url("redis", "rediss"),
      "Celery broker (Redis)", group="connections"),
    S("CELERY_BACKEND_URL", "redis://redis:6379/1", _url("redis", "rediss"),
      "Celery result backend, also used for locks and heartbeats", group="connections"),
    S("UPBIT_API_BASE", "https://api.upbit.com", _url("http", "https"),
      "Upbit REST base URL (tests point it at a local server)", group="connections"),
    S("UPBIT_ACCESS_KEY", "", _text, "Upbit access key; needed only in live mode; never logged",
      group="connections"),
    S("UPBIT_SECRET_KEY", "", _text, "Upbit secret key; needed only in live mode; never logged",
      group="connections"),
    S("UPBIT_TIMEOUT_SECONDS", "10", _decimal(Decimal("0.1"), Decimal("120")),
      "HTTP read timeout for Upbit requests", group="connections"),
    # trading
    S("TRADING_MODE", "paper", _choice("paper", "live"),
      "paper (simulated exchange, the default) or live (real orders on Upbit)", group="trading"),
    S("TRADING_ENABLED", "true", _bool,
      "kill switch: false = decide and log, never place an order", group="trading"),
    S("MARKETS", "KRW-BTC", _markets,
      "comma-separated KRW markets to collect and trade (MARKET is accepted too), or top:N:"
      " the N KRW markets with the highest 24-hour traded value, refreshed hourly",
      group="trading"),
    S("MARKETS_EXCLUDE", "", _market_list,
      "with MARKETS=top:N: markets never selected (comma-separated)", group="trading"),
    S("UNIT", "1", _unit, "candle minutes: 1, 3, 5, 10, 15, 30, 60 or 240", group="trading"),
    S("THRESHOLD", "1", _decimal(Decimal(0), Decimal(1), lo_open=True),
      "buy if score >= THRESHOLD, sell if score <= -THRESHOLD", group="trading"),
    S("AGGRESSIVENESS", "0.0015", _aggressiveness,
      "limit price = last close * (1 +/- AGGRESSIVENESS), rounded to the tick",
      group="trading"),
    S("FEE_RATE", "0.0005", _decimal(Decimal(0), Decimal("0.01")),
      "exchange fee per side (0.0005 = 0.05 %)", group="trading"),
    S("FEE_BUFFER", "0.0005", _decimal(Decimal(0), Decimal("0.01")),
      "extra margin kept back when sizing a buy", group="trading"),
    S("MIN_ORDER_KRW", "5000", _decimal(Decimal(0), lo_open=True),
      "exchange minimum order value in KRW", group="trading"),
    S("PAPER_START_KRW", "1000000", _decimal(Decimal(0), lo_open=True),
      "paper account's starting cash in KRW", group="trading"),
    S("ORDER_TIMEOUT_SECONDS", "120", _int(1, 86400),
      "an open limit order older than this is cancelled", group="trading"),
    S("WEIGHTS", "", parse_weights,
      "starting weights until the optimizer adopts some, e.g. trend=1,momentum=1 "
      "(empty = equal weights)", group="trading"),
    # risk
    S("MAX_POSITION_KRW", "0", _decimal(Decimal(0)),
      "cap on the KRW value of one buy (0 = no cap)", group="risk"),
    S("DAILY_LOSS_LIMIT_PCT", "5", _decimal(Decimal(0), Decimal(100)),
      "stop new buys for the rest of the UTC day once equity is this many percent below "
      "the day's start (0 = off)", group="risk"),
    S("STOP_LOSS_PCT", "3", _decimal(Decimal(0), Decimal(100), hi_open=True),
      "sell a held market once its close is this many percent below the average entry "
      "(0 = off)", group="risk"),
    S("TRAILING_STOP_PCT", "0", _decimal(Decimal(0), Decimal(100), hi_open=True),
      "sell once the close is this many percent below the highest close since entry "
      "(0 = off)", group="risk"),
    S("TAKE_PROFIT_PCT", "0", _decimal(Decimal(0), Decimal(10000)),
      "sell once the close is this many percent above the average entry (0 = off)",
      group="risk"),
    S("COOLDOWN_CANDLES", "60", _int(0, 100_000),
      "candles after a sell fills before a buy may be decided (0 = at that candle's close)",
      group="risk"),
    S("STOP_GUARD_EXITS", "2", _int(0, 1000),
      "stop exits (stop-loss or trailing) within STOP_GUARD_WINDOW_CANDLES that pause a "
      "market's buys (0 = off)", group="risk"),
    S("STOP_GUARD_WINDOW_CANDLES", "120", _int(1, 100_000),
      "the window, in candles, in which the stop guard counts stop exits", group="risk"),
    S("STOP_GUARD_PAUSE_CANDLES", "240", _int(1, 100_000),
      "candles without buys after the stop guard trips", group="risk"),
    S("LIVE_ALLOW_UNVALIDATED", "false", _bool,
      "live mode: open positions even without a parameter set the optimizer adopted for "
      "the market", group="risk"),
    S("BUY_ON_CAUTION", "false", _bool,
      "buy markets Upbit flags with a caution (price or volume surge, ...); markets under "
      "investment warning or delisted are never bought", group="risk"),
    # collector
    S("BACKFILL_MAX_CANDLES", "10080", _int(200, 10_000_000),
      "how far back one collect pass fills a gap (default 7 days of minutes)",
      group="collector"),
    # optimizer
    S("OPTIMIZE_LOOKBACK_DAYS", "30", _int(1, 3650),
      "days of candles the optimizer backtests", group="optimizer"),
    S("OPTIMIZE_HOLDOUT", "0.25", _decimal(Decimal("0.05"), Decimal("0.9")),
      "share of the lookback (the newest part) kept out of the search to validate it",
      group="optimizer"),
    S("OPTIMIZE_CANDIDATES", "5000", _int(1, 1_000_000),
      "weight vectors tried per optimize run", group="optimizer"),
    S("OPTIMIZE_MIN_IMPROVEMENT", "0.1", _decimal(Decimal(0)),
      "holdout objective margin new weights must win by to be adopted", group="optimizer"),
    S("OPTIMIZE_TUNE", "weights,threshold,cooldown", _tune,
      "what the optimizer tunes: a comma list of " + ", ".join(TUNABLE) + " (the others "
      "stay the settings' values)", group="optimizer"),
    # schedules
    S("COLLECT_SCHEDULE", "* * * * *", _schedule,
      "when Beat sends collect: 5-field crontab or seconds", group="schedules"),
    S("TRADE_SCHEDULE", "* * * * *", _schedule,
      "fallback trade schedule (the collector triggers trades at once)", group="schedules"),
    S("RECONCILE_SCHEDULE", "* * * * *", _schedule,
      "when open orders are reconciled", group="schedules"),
    S("OPTIMIZE_SCHEDULE", "5 0 * * *", _schedule,
      "when the optimizer runs", group="schedules"),
    S("TIMEZONE", "Asia/Seoul", _timezone, "Beat's time zone for crontab schedules",
      group="schedules"),
    # operations
    S("LOG_LEVEL", "INFO", _choice(*LOG_LEVELS, lower=False),
      "DEBUG, INFO, WARNING or ERROR", group="operations"),
    S("LOG_FORMAT", "text", _choice("text", "json"),
      "text (one readable line per event) or json (one object per line)",
      group="operations"),
    S("STATUS_MAX_CANDLE_AGE_SECONDS", "300", _int(30, 86400),
      "bot status and health fail when a market's newest candle closed longer ago than this",
      group="operations"),
    S("STATUS_MAX_HEARTBEAT_AGE_SECONDS", "60", _int(15, 3600),
      "bot status and bot health fail when a worker's heartbeat is older than this",
      group="operations"),
    S("METRICS_PORT", "9108", _int(0, 65535),
      "port of the Prometheus exporter (bot metrics, and the metrics child of bot run);"
      " 0 = no exporter", group="operations"),
    S("METRICS_HOST", "127.0.0.1", _host,
      "address the Prometheus exporter listens on (0.0.0.0 inside a container whose port"
      " is published)", group="operations"),
    # notifications
    S("TELEGRAM_BOT_TOKEN", "", _text,
      "Telegram bot token for notifications (empty = no Telegram); never logged",
      group="notifications"),
    S("TELEGRAM_CHAT_ID", "", _text,
      "Telegram chat to send notifications to (needed with TELEGRAM_BOT_TOKEN)",
      group="notifications"),
    S("NOTIFY_WEBHOOK_URL", "", _optional_url,
      "Slack-compatible webhook that receives {\"text\": ...} (empty = none); never logged",
      group="notifications"),
    S("NOTIFY_EVENTS", "all", _notify_events,
      "all, none, or a comma list of: " + ", ".join(NOTIFY_EVENT_NAMES),
      group="notifications"),
    S("NOTIFY_FAILURES_AFTER", "3", _int(1, 1000),
      "notify once a job has failed this many times in a row", group="notifications"),
    S("DAILY_SUMMARY_SCHEDULE", "0 9 * * *", _schedule,
      "when the daily summary (PnL, trades, equity vs buy-and-hold) is sent, in TIMEZONE",
      group="notifications"),
    # testing
    S("BOT_CLOCK_SPEEDUP", "1", _decimal(Decimal(1), Decimal(3600)),
      "testing only: run the daemon's clock this many times faster (1 = real time)",
      group="testing"),
    S("BOT_CLOCK_EPOCH", "0", _decimal(Decimal(0)),
      "testing only: Unix time from which a sped-up clock runs", group="testing"),
)
del S

_ALIASES = {"MARKET": "MARKETS"}
# Settings where an empty value is a mistake rather than "use the default":
# trading a market nobody named would be a surprise.
REQUIRED_IF_GIVEN = {"MARKETS": "name at least one market, e.g. MARKETS=KRW-BTC "
                                "(remove the line to use the default KRW-BTC)"}


@dataclass(frozen=True)
class Settings:
    """Every setting, typed. Build with :func:`load_settings`; never mutate."""

    database_url: str
    celery_broker_url: str
    celery_backend_url: str
    upbit_api_base: str
    upbit_access_key: str = field(repr=False)
    upbit_secret_key: str = field(repr=False)
    upbit_timeout_seconds: Decimal
    trading_mode: str
    trading_enabled: bool
    markets: tuple[str, ...]
    markets_exclude: tuple[str, ...]
    unit: int
    threshold: Decimal
    aggressiveness: Decimal
    fee_rate: Decimal
    fee_buffer: Decimal
    min_order_krw: Decimal
    paper_start_krw: Decimal
    order_timeout_seconds: int
    weights: Mapping[str, float]
    max_position_krw: Decimal
    daily_loss_limit_pct: Decimal
    stop_loss_pct: Decimal
    trailing_stop_pct: Decimal
    take_profit_pct: Decimal
    cooldown_candles: int
    stop_guard_exits: int
    stop_guard_window_candles: int
    stop_guard_pause_candles: int
    live_allow_unvalidated: bool
    buy_on_caution: bool
    backfill_max_candles: int
    optimize_lookback_days: int
    optimize_holdout: Decimal
    optimize_candidates: int
    optimize_min_improvement: Decimal
    optimize_tune: tuple[str, ...]
    collect_schedule: str
    trade_schedule: str
    reconcile_schedule: str
    optimize_schedule: str
    timezone: str
    log_level: str
    log_format: str
    status_max_candle_age_seconds: int
    status_max_heartbeat_age_seconds: int
    metrics_port: int
    metrics_host: str
    telegram_bot_token: str = field(repr=False)
    telegram_chat_id: str
    notify_webhook_url: str = field(repr=False)
    notify_events: tuple[str, ...]
    notify_failures_after: int
    daily_summary_schedule: str
    bot_clock_speedup: Decimal
    bot_clock_epoch: Decimal
    # MARKETS=top:N gives N here and no ``markets``: the set is chosen from
    # Upbit's tickers (bot/data/markets.py) and read with bot.storage.markets.traded.
    markets_top: int = 0

    @property
    def live(self) -> bool:
        return self.trading_mode == "live"

    @property
    def timeframe(self) -> str:
        """The ``candles.timeframe`` value for UNIT, e.g. ``1m``."""
        return timeframe_of(self.unit)

    @property
    def notifications(self) -> tuple[str, ...]:
        """The configured notification channels: telegram, webhook (may be none)."""
        channels = []
        if self.telegram_bot_token and self.telegram_chat_id:
            channels.append("telegram")
        if self.notify_webhook_url:
            channels.append("webhook")
        return tuple(channels)

    def secret_values(self) -> tuple[str, ...]:
        """Every secret setting's value (for log redaction). For a URL, also its
        path and query: an HTTP library's error names only those, and a webhook's
        path is its token."""
        values = []
        for s in SETTINGS:
            value = getattr(self, s.field_name) if s.name in SECRET_NAMES else ""
            if not value:
                continue
            values.append(value)
            if "://" in value:
                rest = value.split("://", 1)[1]
                path = rest[rest.find("/"):] if "/" in rest else ""
                if len(path) >= 8:
                    values.append(path)
        return tuple(values)

    def public_summary(self) -> dict[str, Any]:
        """The settings worth a start-up log line; never a secret or a DSN password."""
        return {
            "mode": "LIVE" if self.live else "paper",
            "trading_enabled": self.trading_enabled,
            "markets": f"top:{self.markets_top}" if self.markets_top else ",".join(self.markets),
            "unit": self.unit,
            "threshold": str(self.threshold),
            "aggressiveness": str(self.aggressiveness),
            "fee_rate": str(self.fee_rate),
            "max_position_krw": str(self.max_position_krw),
            "daily_loss_limit_pct": str(self.daily_loss_limit_pct),
            "stop_loss_pct": str(self.stop_loss_pct),
            "trailing_stop_pct": str(self.trailing_stop_pct),
            "take_profit_pct": str(self.take_profit_pct),
            "cooldown_candles": self.cooldown_candles,
            "stop_guard": (f"{self.stop_guard_exits}/{self.stop_guard_window_candles}"
                           f"/{self.stop_guard_pause_candles}" if self.stop_guard_exits
                           else "off"),
            "order_timeout_seconds": self.order_timeout_seconds,
            "database": redact_url(self.database_url),
            "broker": redact_url(self.celery_broker_url),
            "upbit_api_base": self.upbit_api_base,
            "notifications": ",".join(self.notifications) or "off",
        }


def read_env_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """Parse a docker-compose style ``.env`` file (KEY=VALUE, # comments)."""
    values: dict[str, str] = {}
    for number, raw in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line or not line.partition("=")[0].strip():
            raise EnvFileError(str(path), number, line)
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip().removeprefix("export ").strip()] = value
    return values


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Parse every setting from ``environ`` (default: ``os.environ``).

    Raises :class:`ConfigError` naming the first bad variable.
    """
    env = dict(os.environ if environ is None else environ)
    for alias, name in _ALIASES.items():
        if alias in env and name not in env:
            env[name] = env[alias]
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = env.get(setting.name)
        if raw is not None and raw.strip() == "" and setting.name in REQUIRED_IF_GIVEN:
            raise ConfigError(setting.name, raw, "empty: " + REQUIRED_IF_GIVEN[setting.name])
        if raw is None or (raw.strip() == "" and setting.default != ""):
            raw = setting.default
        try:
            values[setting.field_name] = setting.parse(raw)
        except ValueError as exc:
            raise ConfigError(setting.name, raw, str(exc)) from None
    values["weights"] = MappingProxyType(values["weights"])
    if isinstance(values["markets"], Top):
        values["markets_top"], values["markets"] = values["markets"].count, ()
    settings = Settings(**values)
    # Secrets are known to the log redactor as soon as they are read, so no
    # dump, exception or request line can show them.
    from bot.logs import register_secret
    register_secret(*settings.secret_values())
    _check_together(settings)
    return settings


def _check_together(settings: Settings) -> None:
    if settings.live:
        missing = [name for name in ("UPBIT_ACCESS_KEY", "UPBIT_SECRET_KEY")
                   if not getattr(settings, name.lower())]
        if missing:
            raise MissingSettings(missing, "required when TRADING_MODE=live (Upbit's "
                                  "Open API keys; or set TRADING_MODE=paper)")
    if settings.telegram_bot_token and not settings.telegram_chat_id:
        raise ConfigError("TELEGRAM_CHAT_ID", "", "required when TELEGRAM_BOT_TOKEN is set")


def env_file_path(env_file: str | os.PathLike[str] | None = None) -> Path:
    """The ``.env`` file this process reads: ``ENV_FILE``, default ``.env`` in
    the working directory (absolute, for messages)."""
    return Path(env_file or os.environ.get("ENV_FILE") or ".env").absolute()


def process_environment(env_file: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """This process's environment over the ``.env`` file (:func:`env_file_path`)
    when one exists: real variables win."""
    path = env_file_path(env_file)
    merged = read_env_file(path) if path.is_file() else {}
    merged.update(os.environ)
    return merged


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once from the environment (and ``.env``)."""
    return load_settings(process_environment())

