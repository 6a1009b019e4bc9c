"""Client-side pacing of Upbit requests, per rate-limit group.

Owns the group tables (which request belongs to which group, and each group's
allowance), the sliding send window per group, and what the ``Remaining-Req``
response header teaches. It only ever waits through the injected ``sleep``; it
never sends anything, raises exchange errors or reads settings.
"""

from __future__ import annotations

import re
import threading
import time
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
    "order": (8, 1.0),
    "order-cancel-all": (1, 2.0),
}

# (method or "*", path prefix, group), first match wins: the group a request is
# counted in before a response names the group for certain.
ROUTE_GROUPS: tuple[tuple[str, str, str], ...] = (
    ("POST", "/v1/orders/cancel_and_new", "order"),
    ("POST", "/v1/orders/test", "order"),
    ("POST", "/v1/orders", "order"),
    ("DELETE", "/v1/orders/open", "order-cancel-all"),
    ("*", "/v1/candles/", "candle"),
    ("*", "/v1/market/", "market"),
    ("*", "/v1/ticker", "ticker"),
    ("*", "/v1/orderbook", "orderbook"),
    ("*", "/v1/trades/", "trade"),
)
DEFAULT_GROUP = "default"

_REMAINING_RE = re.compile(r"group=([A-Za-z0-9_\-]+).*?\bsec=(\d+)")
# A wait shorter than this is float noise from adding and subtracting times.
_EPSILON = 1e-6


def route_group(method: str, path: str) -> str:
    """The group a request is counted in until a response says otherwise."""
    for route_method, prefix, group in ROUTE_GROUPS:
        if route_method in ("*", method.upper()) and path.startswith(prefix):
            return group
    return DEFAULT_GROUP


def parse_remaining(header: str | None) -> tuple[str, int] | None:
    """``group=candle; min=600; sec=9`` -> ``("candle", 9)``; None if absent or garbled."""
    match = _REMAINING_RE.search(header or "")
    return (match.group(1), int(match.group(2))) if match else None


class Slot:
    """One send in a group's window. Its time is moved to when the answer
    arrived: the server saw the request somewhere between send and answer, so
    counting the window from the answer can never undercount the server's."""

    __slots__ = ("at",)

    def __init__(self, at: float):
        self.at = at


class RateLimiter:
    """Sliding windows of send times, one per group; thread-safe."""

    def __init__(self, *, sleep: Callable[[float], None] = time.sleep,
                 monotonic: Callable[[], float] = time.monotonic,
                 limits: dict[str, tuple[int, float]] | None = None):
        self._sleep = sleep
        self._monotonic = monotonic
        self._limits = dict(GROUP_LIMITS if limits is None else limits)
        self._sends: dict[str, list[Slot]] = {}
        self._blocked_until: dict[str, float] = {}
        self._alias: dict[str, str] = {}
        self._lock = threading.Lock()

    def group_of(self, route: str) -> str:
        """The server's name for a route group, once a response has told it."""
        return self._alias.get(route, route)

    def _limit(self, route: str, group: str) -> tuple[int, float]:
        return (self._limits.get(group) or self._limits.get(route)
                or self._limits[DEFAULT_GROUP])

    def acquire(self, route: str) -> Slot:
        """Wait until the group has room, then take a slot (call :meth:`done` after)."""
        while True:
            with self._lock:
                group = self.group_of(route)
                count, window = self._limit(route, group)
                now = self._monotonic()
                sends = [s for s in self._sends.get(group, ()) if s.at > now - window]
                self._sends[group] = sends
                wait = self._blocked_until.get(group, 0.0) - now
                if wait <= _EPSILON and len(sends) >= count:
                    wait = min(s.at for s in sends) + window - now
                if wait <= _EPSILON:
                    slot = Slot(now)
                    sends.append(slot)
                    return slot
            # Sleep outside the lock so other groups keep flowing.
            self._sleep(wait)

    def done(self, slot: Slot) -> None:
        """The answer (or the failure) for this slot's request has arrived."""
        with self._lock:
            slot.at = max(slot.at, self._monotonic())

    def observe(self, route: str, header: str | None) -> None:
        """Learn from a ``Remaining-Req`` header: the group's real name, and
        ``sec=0``: the window is full (maybe with another process's requests on
        this IP), so nothing more until the oldest send we know of leaves it."""
        parsed = parse_remaining(header)
        if parsed is None:
            return
        group, remaining = parsed
        with self._lock:
            old = self.group_of(route)
            if group != old:
                self._alias[route] = group
                # Sends counted under the guessed name count under the real one too.
                merged = self._sends.setdefault(group, [])
                merged.extend(s for s in self._sends.get(old, ()) if s not in merged)
            if remaining <= 0:
                window = self._limit(route, group)[1]
                now = self._monotonic()
                oldest = min((s.at for s in self._sends.get(group, ()) if s.at > now - window),
                             default=now)
                self._blocked_until[group] = max(self._blocked_until.get(group, 0.0),
                                                 oldest + window)

    def block(self, route: str, seconds: float) -> None:
        """Send nothing in this route's group for ``seconds`` (after a 429)."""
        with self._lock:
            group = self.group_of(route)
            until = self._monotonic() + seconds
            self._blocked_until[group] = max(self._blocked_until.get(group, 0.0), until)
