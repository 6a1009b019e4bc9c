"""The HTTP conversation with Upbit, below the endpoints.

Owns one ``requests.Session`` with timeouts, the query string and its JWT
signature, retries with capped, jittered backoff (never for order placement),
honouring ``Retry-After``, pacing through :mod:`bot.exchange.ratelimit`, and
bans: a 418 is recorded on a :class:`bot.exchange.bans.BanBoard`, which is asked
before every request, so that nothing is sent while a ban is in force. Each
request sent, 429 and 418 is counted per ratelimit group on a
:class:`RequestCounter` (:class:`RedisCounts` for the metrics exporter). An
error answer becomes the exception :mod:`bot.exchange.upbit_errors` names; a
body becomes JSON with exact numbers (:func:`bot.exchange.parsing.loads`). It
knows no endpoint.

It must never put a secret (secret key, JWT, ``Authorization`` header) in an
exception or a log line.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import random
import re
import threading
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote, urlencode

import jwt
import requests
from redis.exceptions import RedisError

from bot.errors import (
    AuthError,
    Banned,
    ExchangeError,
    ExchangeTemporaryError,
    OrderSubmitUnknown,
    RateLimited,
)
from bot.exchange.bans import BanBoard, MemoryBans, Strike, ban_seconds
from bot.exchange.parsing import NOT_JSON, loads
from bot.exchange.ratelimit import account_of, route_group, shared_limiter
from bot.exchange.upbit_errors import error_class, error_fields
from bot.logs import event, redact, register_secret
from bot.money import fmt
from bot.storage import keys

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)

# Upbit issues 40-byte secret keys and documents HS512 with them; PyJWT's
# advice (and warning, since 2.10) to use 64 bytes is not ours to follow.
_KEY_LENGTH_WARNING: type[Warning] = getattr(jwt, "InsecureKeyLengthWarning", UserWarning)

# Values go into the query unquoted (as Upbit hashes them), so only characters
# that need no quoting are allowed.
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9_.~:,\-]*$")

# How much of a 418 answer that is not Upbit's JSON is searched for the ban's length.
_BAN_TEXT = 2000

# One query parameter: None leaves it out, a list repeats its key.
QueryValue = str | int | Decimal | list[str] | tuple[str, ...] | None
Params = Mapping[str, QueryValue]


def build_query(params: Params | None) -> tuple[list[tuple[str, str]], str]:
    """Parameters -> (ordered pairs, the exact ``k=v&k[]=a&k[]=b`` string that is
    hashed and sent). A list value repeats its key, which should end in ``[]``."""
    pairs: list[tuple[str, str]] = []
    for key, value in (params or {}).items():
        if value is None:
            continue
        for item in value if isinstance(value, (list, tuple)) else (value,):
            text = fmt(item) if isinstance(item, Decimal) else str(item)
            if not _SAFE_VALUE.match(text):
                raise ValueError(f"parameter {key} has characters Upbit's query cannot carry: "
                                 f"{text!r}")
            pairs.append((key, text))
    return pairs, unquote(urlencode(pairs))


def sign(access_key: str, secret_key: str, query: str) -> str:
    """The JWT for one private request: a fresh nonce, and the SHA-512 of the
    query string when there is one."""
    payload = {"access_key": access_key, "nonce": str(uuid.uuid4())}
    if query:
        payload["query_hash"] = hashlib.sha512(query.encode("utf-8")).hexdigest()
        payload["query_hash_alg"] = "SHA512"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", _KEY_LENGTH_WARNING)
        return jwt.encode(payload, secret_key, algorithm="HS512")


def retry_after(response: requests.Response) -> float | None:
    """The ``Retry-After`` header in seconds; None if absent, garbled or negative."""
    try:
        value = float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None
    return value if value >= 0 else None


class RequestCounter(Protocol):
    """Where requests are counted. Thread-safe, and never slow: it runs on
    every request."""

    def count(self, group: str, status: int | None) -> None:
        """A request of ``group`` was sent; ``status``: its answer's HTTP
        status, None when none came."""
        ...


class NoCounts:
    """Counts nothing (the default)."""

    def count(self, group: str, status: int | None) -> None:
        return None


# The answers counted apart from the requests, each in its own hash.
_STATUS_KEYS = {429: keys.UPBIT_RATE_LIMITED, 418: keys.UPBIT_BANNED}
COUNTS_FLUSH_SECONDS = 1.0


class RedisCounts:
    """The installation's counts in Redis (hashes of group -> count,
    :data:`bot.storage.keys.UPBIT_REQUESTS` and the 429 and 418 ones).

    A request only adds to counts in memory; a background thread adds them to
    Redis every ``every`` seconds, so a slow or dead Redis never delays a
    request. While Redis fails, the counts wait in memory (one number per
    group and kind) for the next flush that succeeds."""

    def __init__(self, client: redis.Redis, *, every: float = COUNTS_FLUSH_SECONDS):
        self._client = client
        self._every = every
        self._lock = threading.Lock()
        self._pending: Counter[tuple[str, str]] = Counter()
        self._pid = 0  # the process whose thread flushes: a forked child starts its own

    def count(self, group: str, status: int | None) -> None:
        with self._lock:
            if self._pid != os.getpid():
                self._start()
            self._pending[(keys.UPBIT_REQUESTS, group)] += 1
            kind = _STATUS_KEYS.get(status or 0)
            if kind is not None:
                self._pending[(kind, group)] += 1

    def _start(self) -> None:
        self._pending.clear()
        self._pid = os.getpid()
        threading.Thread(target=self._run, name="upbit-counts", daemon=True).start()
        atexit.register(self.flush)

    def _run(self) -> None:
        while True:
            time.sleep(self._every)
            self.flush()

    def flush(self) -> bool:
        """Add the counts to Redis now; False (they are kept) when it fails."""
        with self._lock:
            if self._pid != os.getpid():
                return True  # what a forked child inherited is its parent's to flush
            pending, self._pending = self._pending, Counter()
        if not pending:
            return True
        try:
            # MULTI/EXEC: all or none, so a failure never counts twice.
            pipe = self._client.pipeline(transaction=True)
            for (key, group), n in pending.items():
                pipe.hincrby(key, group, n)
            pipe.execute()
        except RedisError:
            with self._lock:
                self._pending.update(pending)
            return False
        return True


class Transport:
    """Sends one call to Upbit (retrying it when that is safe) and returns the
    parsed JSON body, or raises the :mod:`bot.errors` exception its answer means."""

    def __init__(self, base_url: str, access_key: str, secret_key: str, *, timeout: float,
                 connect_timeout: float, max_retries: int, backoff_base: float,
                 backoff_cap: float, sleep: Callable[[float], None],
                 monotonic: Callable[[], float], session: requests.Session | None = None,
                 bans: BanBoard | None = None, counts: RequestCounter | None = None):
        self.base_url = base_url.rstrip("/")
        self._access_key = access_key
        self._secret_key = secret_key
        self._timeouts = (connect_timeout, timeout)
        self.max_retries = max_retries
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._sleep = sleep
        self._monotonic = monotonic
        self._owns_session = session is None
        self.session = session or requests.Session()
        self._limiter = shared_limiter(sleep, monotonic)
        self._account = account_of(access_key)
        self._bans: BanBoard = bans if bans is not None else MemoryBans(monotonic)
        self._counts: RequestCounter = counts if counts is not None else NoCounts()
        self._random = random.Random()
        register_secret(access_key, secret_key)

    @property
    def has_keys(self) -> bool:
        return bool(self._access_key and self._secret_key)

    def close(self) -> None:
        if self._owns_session:
            self.session.close()

    def scrub(self, text: str) -> str:
        """``text`` with the keys and anything token-like masked."""
        for secret in (self._secret_key, self._access_key):
            if secret:
                text = text.replace(secret, "***")
        return redact(text)

    def request(self, method: str, path: str, params: Params | None = None, *,
                private: bool = False) -> Any:
        """Send (and, unless it places an order, retry) one call; the parsed JSON body."""
        if private and not self.has_keys:
            raise AuthError("UPBIT_ACCESS_KEY and UPBIT_SECRET_KEY are needed for this call",
                            name="no_keys", method=method, path=path)
        pairs, query = build_query(params)
        url = self.base_url + path
        data: bytes | None = None
        headers = {"Accept": "application/json"}
        if method == "POST":
            # Same keys, same order as the hashed string.
            data = json.dumps(dict(pairs)).encode("utf-8")
            headers["Content-Type"] = "application/json; charset=utf-8"
        elif query:
            # The very string that was hashed. urllib3 still percent-encodes the
            # brackets of ``states[]`` on the wire; Upbit decodes the query before
            # hashing it, which its own examples (requests + unquote) rely on.
            url += "?" + query
        retries = self.max_retries if method in ("GET", "DELETE") else 0
        route = route_group(method, path)
        for attempt in range(retries + 1):
            try:
                return self._send_once(method, path, url, route, query, data, headers, private,
                                       attempt)
            except ExchangeTemporaryError as exc:
                if attempt >= retries:
                    raise
                self._wait_before_retry(exc, attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _backoff(self, attempt: int) -> float:
        delay = min(self._backoff_cap, self._backoff_base * 2 ** attempt)
        # Equal jitter: never zero, never more than the capped delay.
        return delay / 2 + self._random.uniform(0, delay / 2)

    def _wait_before_retry(self, exc: ExchangeTemporaryError, attempt: int) -> None:
        if isinstance(exc, RateLimited):
            delay = exc.retry_after
            if delay > self._backoff_cap:
                raise exc  # longer than one call should block; the caller reschedules
            # The limiter already blocks the group that long; its acquire() sleeps.
        else:
            delay = self._backoff(attempt)
            self._sleep(delay)
        event(log, "upbit.retry", level=logging.WARNING, method=exc.method, path=exc.path,
              status=exc.status, error=exc.name or None, attempt=attempt + 1,
              delay=round(delay, 3))

    def _send_once(self, method: str, path: str, url: str, route: str, query: str,
                   data: bytes | None, headers: dict[str, str], private: bool,
                   attempt: int) -> Any:
        left = self._bans.seconds_left()
        if left > 0:
            raise Banned("banned by Upbit; nothing is sent until the ban ends", name="banned",
                         status=418, method=method, path=path, retry_after=left)
        slot = self._limiter.acquire(route, self._account)
        if private:
            headers = {**headers, "Authorization": "Bearer " + sign(
                self._access_key, self._secret_key, query)}
        try:
            response = self.session.request(method, url, data=data, headers=headers,
                                            timeout=self._timeouts, allow_redirects=False)
        except requests.RequestException as exc:
            self._limiter.done(slot)
            self._counts.count(route, None)
            raise self._network_error(exc, method, path) from None
        self._limiter.done(slot)
        self._counts.count(route, response.status_code)
        self._limiter.observe(route, response.headers.get("Remaining-Req"), self._account)
        body = loads(response.content)
        if 200 <= response.status_code < 300 and body is not NOT_JSON:
            return body
        error = self._error(response, body, method, path, attempt)
        if isinstance(error, RateLimited):
            self._limiter.block(route, error.retry_after, self._account)
        raise error

    def _log_ban(self, strike: Strike, method: str, path: str, status: int,
                 name: str) -> None:
        # The end as a wall-clock time is for the reader; the board keeps its own clock.
        until = (datetime.now(UTC) + timedelta(seconds=strike.seconds_left)).replace(
            microsecond=0)
        event(log, "upbit.banned", level=logging.WARNING, method=method, path=path,
              status=status, error=name or None, retry_after=round(strike.seconds_left, 3),
              until=until, strikes=strike.ban.strikes)

    def _network_error(self, exc: requests.RequestException, method: str,
                       path: str) -> ExchangeError:
        detail = self.scrub(f"{type(exc).__name__}: {exc}")
        # A connect timeout means nothing left this machine; any other failure
        # after the order went out leaves its fate unknown.
        if method == "POST" and not isinstance(exc, requests.ConnectTimeout):
            return OrderSubmitUnknown(f"no answer to the order: {detail}", name="no_answer",
                                      method=method, path=path)
        return ExchangeTemporaryError(detail, name="no_answer", method=method, path=path)

    def _error(self, response: requests.Response, body: Any, method: str, path: str,
               attempt: int) -> ExchangeError:
        status = response.status_code
        fields = error_fields(body)
        if fields is not None:
            name, message = fields
        else:
            name = ""
            message = (f"HTTP {status} answer is not Upbit's JSON "
                       f"({response.headers.get('Content-Type', 'no content type')})")
        cls = error_class(status, name if fields is not None else None, method)
        message = self.scrub(message)
        if cls is Banned:
            said = message if fields is not None else response.text[:_BAN_TEXT]
            strike = self._bans.record(ban_seconds(response.headers, said))
            if strike.new:
                self._log_ban(strike, method, path, status, name)
            return Banned(message, retry_after=strike.seconds_left, name=name or "banned",
                          status=status, method=method, path=path)
        if cls is RateLimited:
            wait = retry_after(response)
            return RateLimited(message, retry_after=wait if wait is not None
                               else self._backoff(attempt), name=name, status=status,
                               method=method, path=path)
        return cls(message, name=name, status=status, method=method, path=path)
