"""Client-side pacing of Upbit requests, per rate-limit group.

Owns the group tables (which request belongs to which group, and each group's
allowance), the sliding send window per group, and what the ``Remaining-Req``
response header teaches. It only ever waits through the injected ``sleep``; it
never sends anything, raises exchange errors or reads settings.

Upbit counts quotation (public) groups per IP and, since 2026-06-25, exchange
(private) groups per account pocket, i.e. per access key (docs/upbit.md,
"Limits"). So one limiter serves every client of a process
(:func:`shared_limiter`), and it keeps an exchange group's window per access
key while a quotation group's window is one for the whole process.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
import weakref
from collections.abc import Callable

# group -> (requests, per seconds). Upbit's published allowances; a group the
# server names that is missing here inherits the allowance of the route's group.
GROUP_LIMITS: dict[str, tuple[int, float]] = {
    "market": (10, 1.0),
    "candle": (10, 1.0),
    "candles": (10, 1.0),
    "trade": (10, 1.0),
    "ticker": (10, 1.0),
    "orderbook": (10, 1.0),
    "default": (30, 1.0),
    # 8 per second until 2026-08-21.
    "order": (12, 1.0),
    "order-test": (8, 1.0),
    "order-cancel-all": (1, 2.0),
}
# The groups Upbit counts per IP; every other group is counted per access key.
QUOTATION_GROUPS = frozenset({"market", "candle", "candles", "trade", "ticker", "orderbook"})

# (method or "*", path prefix, group), first match wins: the group a request is
# counted in before a response names the group for certain.
ROUTE_GROUPS: tuple[tuple[str, str, str], ...] = (
    ("POST", "/v1/orders/cancel_and_new", "order"),
    ("POST", "/v1/orders/test", "order-test"),
    ("POST", "/v1/orders", "order"),
    ("DELETE", "/v1/orders/open", "order-cancel-all"),
    ("*", "/v1/candles/", "candle"),
    ("*", "/v1/market/", "market"),
    ("*", "/v1/ticker", "ticker"),
    ("*", "/v1/orderbook", "orderbook"),
    ("*", "/v1/trades/", "trade"),
)
DEFAULT_GROUP = "default"

# One ``key=value`` of the header; separators and spacing vary, so each pair is
# found on its own. A group name is anything up to the next separator.
_PAIR_RE = re.compile(r"(?:^|[;,\s])\s*(group|sec)\s*=\s*([^;,\s]+)", re.IGNORECASE)
# A wait shorter than this is float noise from adding and subtracting times.
_EPSILON = 1e-6

# A window's key: (group, account); account is "" for quotation groups.
Bucket = tuple[str, str]


def route_group(method: str, path: str) -> str:
    """The group a request is counted in until a response says otherwise."""
    for route_method, prefix, group in ROUTE_GROUPS:
        if route_method in ("*", method.upper()) and path.startswith(prefix):
            return group
    return DEFAULT_GROUP


def parse_remaining(header: str | None) -> tuple[str, int] | None:
    """``group=candle; min=600; sec=9`` -> ``("candle", 9)``; None if absent or
    garbled. Group names may hold ``.`` and ``-`` (``order-cancel-all``)."""
    pairs = {key.lower(): value for key, value in _PAIR_RE.findall(header or "")}
    group, sec = pairs.get("group"), pairs.get("sec")
    if not group or sec is None or not sec.isdigit():
        return None
    return group, int(sec)


def account_of(access_key: str) -> str:
    """The key an access key's windows are kept under: a digest, so that the
    limiter's state never holds the key itself."""
    if not access_key:
        return ""
    return hashlib.sha256(access_key.encode("utf-8")).hexdigest()[:16]


class Slot:
    """One send in a group's window. Its time is moved to when the answer
    arrived: the server saw the request somewhere between send and answer, so
    counting the window from the answer can never undercount the server's."""

    __slots__ = ("at",)

    def __init__(self, at: float):
        self.at = at


class RateLimiter:
    """Sliding windows of send times, one per group (and per account for the
    exchange groups); thread-safe. ``account`` is :func:`account_of` a key."""

    def __init__(self, *, sleep: Callable[[float], None] = time.sleep,
                 monotonic: Callable[[], float] = time.monotonic,
                 limits: dict[str, tuple[int, float]] | None = None):
        self._sleep = sleep
        self._monotonic = monotonic
        self._limits = dict(GROUP_LIMITS if limits is None else limits)
        self._sends: dict[Bucket, list[Slot]] = {}
        self._blocked_until: dict[Bucket, float] = {}
        self._alias: dict[str, str] = {}
        self._lock = threading.Lock()

    def group_of(self, route: str) -> str:
        """The server's name for a route group, once a response has told it."""
        return self._alias.get(route, route)

    def _bucket(self, route: str, account: str, group: str | None = None) -> Bucket:
        # Whether a group is per IP follows the route's group, which this
        # module names; a name the server gives may be one it does not know.
        return (group or self.group_of(route), "" if route in QUOTATION_GROUPS else account)

    def _limit(self, route: str, group: str) -> tuple[int, float]:
        return (self._limits.get(group) or self._limits.get(route)
                or self._limits[DEFAULT_GROUP])

    def acquire(self, route: str, account: str = "") -> Slot:
        """Wait until the group has room, then take a slot (call :meth:`done` after)."""
        while True:
            with self._lock:
                wait = self._try_take(route, account)
                if isinstance(wait, Slot):
                    return wait
            # Sleep outside the lock so other groups keep flowing.
            self._sleep(wait)

    def _try_take(self, route: str, account: str) -> Slot | float:
        """A slot if the window has room now, else how long to wait for one."""
        bucket = self._bucket(route, account)
        count, window = self._limit(route, bucket[0])
        now = self._monotonic()
        sends = [s for s in self._sends.get(bucket, ()) if s.at > now - window]
        self._sends[bucket] = sends
        wait = self._blocked_until.get(bucket, 0.0) - now
        if wait <= _EPSILON and len(sends) >= count:
            wait = min(s.at for s in sends) + window - now
        if wait > _EPSILON:
            return wait
        slot = Slot(now)
        sends.append(slot)
        return slot

    def done(self, slot: Slot) -> None:
        """The answer (or the failure) for this slot's request has arrived."""
        with self._lock:
            slot.at = max(slot.at, self._monotonic())

    def observe(self, route: str, header: str | None, account: str = "") -> None:
        """Learn from a ``Remaining-Req`` header: the group's real name, and
        ``sec=0``: the window is full (maybe with another process's requests on
        this IP), so nothing more until the oldest send we know of leaves it."""
        parsed = parse_remaining(header)
        if parsed is None:
            return
        group, remaining = parsed
        with self._lock:
            old = self._bucket(route, account)
            new = self._bucket(route, account, group)
            if new != old:
                self._alias[route] = group
                # Sends counted under the guessed name count under the real one too.
                merged = self._sends.setdefault(new, [])
                merged.extend(s for s in self._sends.get(old, ()) if s not in merged)
            if remaining <= 0:
                window = self._limit(route, group)[1]
                now = self._monotonic()
                oldest = min((s.at for s in self._sends.get(new, ()) if s.at > now - window),
                             default=now)
                self._blocked_until[new] = max(self._blocked_until.get(new, 0.0),
                                               oldest + window)

    def block(self, route: str, seconds: float, account: str = "") -> None:
        """Send nothing in this route's group for ``seconds`` (after a 429)."""
        with self._lock:
            bucket = self._bucket(route, account)
            until = self._monotonic() + seconds
            self._blocked_until[bucket] = max(self._blocked_until.get(bucket, 0.0), until)


# One limiter per pair of clocks: every client of a process that runs on the
# real clocks shares one (Upbit counts per IP and per key, not per client),
# while a test's fake clock gets a limiter of its own.
_SHARED: weakref.WeakValueDictionary[
    tuple[Callable[[float], None], Callable[[], float]], RateLimiter] = (
    weakref.WeakValueDictionary())
_SHARED_LOCK = threading.Lock()


def shared_limiter(sleep: Callable[[float], None] = time.sleep,
                   monotonic: Callable[[], float] = time.monotonic) -> RateLimiter:
    """The process's limiter for these clocks (made on first use)."""
    with _SHARED_LOCK:
        limiter = _SHARED.get((sleep, monotonic))
        if limiter is None:
            limiter = RateLimiter(sleep=sleep, monotonic=monotonic)
            _SHARED[(sleep, monotonic)] = limiter
        return limiter
