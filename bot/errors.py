"""The error taxonomy. Whether a failed job is retried follows from the type
alone: :class:`TemporaryError` and its children are worth a retry (network,
rate limit, exchange 5xx, database unavailable); everything else is not.

No exception here may carry a secret: messages are built from Upbit's error
``name``/``message``, HTTP status, method and path only, never headers or keys.
"""

from __future__ import annotations

from bot.logs import SECRET_NAMES, looks_like_url_secret, redact_url


class BotError(Exception):
    """Base of every error the daemon raises on purpose."""


class TemporaryError(BotError):
    """A failure a later retry may not see: retry with backoff."""


class DatabaseUnavailable(TemporaryError):
    """PostgreSQL refused or dropped the connection."""


class SchemaMissing(BotError):
    """The database lacks a table the code needs: it was never migrated (or
    by an older version)."""


class ExchangeError(BotError):
    """An error answer from Upbit (or the paper exchange).

    ``name`` is Upbit's error code (``insufficient_funds_bid``, ...), ``status``
    the HTTP status (0 when no response arrived).
    """

    def __init__(self, message: str, *, name: str = "", status: int = 0,
                 method: str = "", path: str = ""):
        self.name = name
        self.status = status
        self.method = method
        self.path = path
        self.error_message = message
        where = f" {method} {path}" if method else ""
        code = f" {name}" if name else ""
        super().__init__(f"upbit{where} -> {status or 'no response'}{code}: {message}")


class ExchangeTemporaryError(ExchangeError, TemporaryError):
    """Network failure, timeout, 5xx or an unreadable body."""


class RateLimited(ExchangeTemporaryError):
    """HTTP 429: over Upbit's request allowance. ``retry_after`` in seconds."""

    def __init__(self, message: str, *, retry_after: float = 1.0, **kw):
        super().__init__(message, **kw)
        self.retry_after = retry_after


class Banned(ExchangeError):
    """HTTP 418: Upbit banned this IP for a while. Do not retry before ``retry_after``."""

    def __init__(self, message: str, *, retry_after: float = 60.0, **kw):
        super().__init__(message, **kw)
        self.retry_after = retry_after


class AuthError(ExchangeError):
    """Keys missing, wrong, expired or without the needed permission."""


class InvalidOrder(ExchangeError):
    """The exchange refused the order's parameters (price off tick, below minimum...)."""


class InsufficientFunds(InvalidOrder):
    """Not enough free KRW or coin for the order."""


class NotFound(ExchangeError):
    """Upbit knows no such thing: an unknown market ("Code not found"), ..."""


class UnknownMarket(NotFound):
    """Upbit does not list the market (its candles answer 404 "Code not found").
    ``str()`` is one sentence naming the market."""

    def __init__(self, market: str, **kw):
        super().__init__(f"market {market} does not exist on Upbit", **kw)
        self.market = market

    def __str__(self) -> str:
        return self.error_message


class OrderNotFound(NotFound):
    """No order with that uuid or identifier."""


class MalformedResponse(ExchangeTemporaryError):
    """A 2xx answer whose body is not what Upbit documents (missing field, null price)."""


class OrderSubmitUnknown(ExchangeTemporaryError):
    """An order POST got no answer (timeout, connection reset): it may or may not
    have landed. Never resend blindly; look the identifier up."""


# --- settings and command lines -------------------------------------------------


class ConfigError(ValueError):
    """A setting has a value the daemon cannot run with."""

    def __init__(self, name: str, value: str, allowed: str):
        self.name = name
        self.value = value
        self.allowed = allowed
        if name in SECRET_NAMES:
            shown = "<redacted>"
        elif looks_like_url_secret(name):
            shown = redact_url(value)
        else:
            shown = value
        super().__init__(f"invalid setting {name}={shown!r}: {allowed}")


class MissingSettings(ConfigError):
    """Settings that must be given together (every one is named at once)."""

    def __init__(self, names: list[str], why: str):
        ValueError.__init__(self, f"missing setting{'s' if len(names) > 1 else ''} "
                                  f"{' and '.join(names)}: {why}")
        self.name, self.value, self.allowed = names[0], "", why


class EnvFileError(ConfigError):
    """A line of the ``.env`` file that is not ``KEY=VALUE``."""

    def __init__(self, path: str, line: int, text: str):
        key = text.split()[0] if text.split() else text
        shown = "<redacted>" if key in SECRET_NAMES else text
        ValueError.__init__(self, f"{path}: line {line}: {shown!r} is not KEY=VALUE "
                                  "(write it as KEY=VALUE, or start the line with # to "
                                  "comment it out)")
        self.name, self.value, self.allowed = key, "", "KEY=VALUE"


class UsageError(Exception):
    """A command-line argument the command cannot run with (exit 2)."""


class PlotUnavailable(ImportError):
    """``--plot`` without matplotlib installed."""


# --- worker coordination --------------------------------------------------------


class LockBusy(Exception):
    """Another run of the same job for the same market holds the lock."""


class RedisUnavailable(TemporaryError):
    """Redis refused or dropped the connection."""


class TelegramError(BotError):
    """Telegram's Bot API refused a request (a wrong token, another poller of
    the same bot, a webhook set): trying again will not help. The message
    names the method and Telegram's description, never the token."""


class TelegramUnavailable(TelegramError, TemporaryError):
    """Telegram did not answer, or answered 429 or 5xx: try again later."""
