"""Upbit's temporary bans (HTTP 418), kept where every process can see them.

Upbit bans an IP (or a key) for a while after repeated abuse and lengthens the
ban when it happens again (docs/upbit.md, "Limits"). The transport
(:mod:`bot.exchange.transport`) records each 418 on a :class:`BanBoard` and asks
the board before every request; while a ban is in force it sends nothing.

- :class:`MemoryBans`: one process's board (the default).
- :class:`RedisBans`: one board for the whole installation in Redis
  (:data:`bot.storage.keys.UPBIT_BAN`), so that no process of it keeps knocking
  while another one was banned. It keeps a copy in memory, so a Redis outage
  never makes this process forget a ban it was told about.
- :func:`read_ban`: the ban in force as ``bot status`` shows it.

Also here: how long a ban lasts (:func:`ban_seconds`, from the 418 answer) and
the rule for repeats (:func:`next_ban`).
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from redis.exceptions import RedisError

from bot.logs import event
from bot.storage.keys import UPBIT_BAN

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)

DEFAULT_BAN_SECONDS = 60.0
# A 418 this long after the previous ban ended still counts as a repeat.
STRIKE_WINDOW_SECONDS = 600.0
MAX_BAN_SECONDS = 3600.0
# After Redis failed, it is asked again only this much later: every request asks
# the board, and a client that retries a dead server would slow each one down.
REDIS_RETRY_SECONDS = 30.0

# "30초", "30 seconds", "30s", "2분", "5 minutes", "1시간": a number and its unit.
_DURATION_RE = re.compile(
    r"(\d+(?:\.\d+)?)\s*(초|seconds?|secs?|s|분|minutes?|mins?|m|시간|hours?|hrs?|h)(?![A-Za-z])",
    re.IGNORECASE)
_UNIT_SECONDS = {"분": 60, "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
                 "시간": 3600, "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600}
# What may stand between the parts of one duration: "1분 30초", "1 minute and 30 seconds".
_JOINER = re.compile(r"[\s,]*(?:and)?[\s,]*", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Ban:
    """A ban: it ends at ``until`` (in the board's clock), is the ``strikes``-th
    in a row, and lasted ``seconds`` when it was set (what a repeat doubles)."""

    until: float
    strikes: int
    seconds: float


@dataclass(frozen=True, slots=True)
class Strike:
    """What one 418 did to a board: the ban now in force, the seconds left of
    it, and whether it is ``new`` (a fresh ban, or a longer one than was in
    force) rather than one the board already knew."""

    ban: Ban
    seconds_left: float
    new: bool


class BanBoard(Protocol):
    """Where the bans are kept. Thread-safe."""

    def seconds_left(self) -> float:
        """The seconds left of the ban in force; 0 when there is none."""
        ...

    def record(self, asked: float) -> Strike:
        """A 418 arrived whose answer asked for ``asked`` seconds."""
        ...


def ban_seconds(headers: Mapping[str, str], message: str) -> float:
    """How long a 418 answer says the ban lasts: its ``Retry-After`` header,
    else a duration in its message (Upbit words it in Korean or English), else
    :data:`DEFAULT_BAN_SECONDS`."""
    header = _seconds(headers.get("Retry-After"))
    if header is not None and header > 0:
        return header
    value = _message_seconds(message)
    return value if value > 0 else DEFAULT_BAN_SECONDS


def _message_seconds(message: str) -> float:
    """The first duration in ``message``, its parts added up ("1분 30초": 90); 0 if none."""
    total, end = 0.0, None
    for found in _DURATION_RE.finditer(message):
        if end is not None and not _JOINER.fullmatch(message[end:found.start()]):
            break
        total += float(found.group(1)) * _UNIT_SECONDS.get(found.group(2).lower(), 1)
        end = found.end()
    return total


def _seconds(text: str | None) -> float | None:
    try:
        value = float(text or "")
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def next_ban(previous: Ban | None, asked: float, now: float) -> Ban:
    """The ban in force after a 418 at ``now`` asking for ``asked`` seconds.

    The rule:
    - during a ban, a 418 is the same ban (its requests were in flight when it
      began): the strikes stay, and it ends no earlier than either asks;
    - within :data:`STRIKE_WINDOW_SECONDS` after a ban ended, a 418 is a repeat:
      one more strike, and it lasts twice the previous ban (at most
      :data:`MAX_BAN_SECONDS`), never less than Upbit asked;
    - later than that, the count starts again at one strike.
    """
    if previous is not None and now < previous.until:
        return Ban(max(previous.until, now + asked), previous.strikes,
                   max(previous.seconds, asked))
    if previous is not None and now < previous.until + STRIKE_WINDOW_SECONDS:
        seconds = max(asked, min(MAX_BAN_SECONDS, 2 * previous.seconds))
        return Ban(now + seconds, previous.strikes + 1, seconds)
    return Ban(now + asked, 1, asked)


class MemoryBans:
    """The bans one process has seen, on ``clock`` (any clock that only moves
    forward: the transport passes its monotonic clock)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._ban: Ban | None = None
        self._lock = threading.Lock()

    def seconds_left(self) -> float:
        with self._lock:
            return self._left(self._clock())

    def _left(self, now: float) -> float:
        return max(0.0, self._ban.until - now) if self._ban is not None else 0.0

    def record(self, asked: float) -> Strike:
        with self._lock:
            now = self._clock()
            ban = next_ban(self._ban, asked, now)
            new = self._ban is None or ban.until > self._ban.until
            self._ban = ban
            return Strike(ban, self._left(now), new)

    def adopt(self, ban: Ban) -> None:
        """Keep ``ban`` (on this board's clock) if it ends later than the one kept."""
        with self._lock:
            if self._ban is None or ban.until > self._ban.until:
                self._ban = ban


class RedisBans:
    """The installation's board in Redis under ``key``: the ban's end (wall
    clock seconds, ``clock``), its strikes and length, as JSON. The key lives
    until :data:`STRIKE_WINDOW_SECONDS` after the ban ends, so that a repeat
    still finds the strikes; a ban replaces the stored one only if it ends later."""

    def __init__(self, client: redis.Redis, *, key: str = UPBIT_BAN,
                 clock: Callable[[], float] = time.time):
        self._client = client
        self._key = key
        self._clock = clock
        self._local = MemoryBans(clock)
        self._failing = False
        self._skip_until = float("-inf")

    def seconds_left(self) -> float:
        left = self._local.seconds_left()
        if self._skipping():
            return left
        try:
            stored = decode_ban(self._client.get(self._key))
        except RedisError as exc:
            self._unavailable(exc)
            return left
        self._failing = False
        if stored is None:
            return left
        self._local.adopt(stored)
        return max(left, stored.until - self._clock())

    def record(self, asked: float) -> Strike:
        local = self._local.record(asked)
        if self._skipping():
            return local
        try:
            return self._record_shared(asked)
        except RedisError as exc:
            self._unavailable(exc)
            return local

    def _record_shared(self, asked: float) -> Strike:
        result: list[Strike] = []

        def apply(pipe: Any) -> None:
            result.clear()
            previous = decode_ban(pipe.get(self._key))
            now = self._clock()
            ban = next_ban(previous, asked, now)
            new = previous is None or ban.until > previous.until
            pipe.multi()
            if new:
                ttl = ban.until + STRIKE_WINDOW_SECONDS - now
                pipe.set(self._key, encode_ban(ban), px=max(1, math.ceil(ttl * 1000)))
            result.append(Strike(ban if new else previous or ban, max(0.0, ban.until - now),
                                 new))

        # WATCH the key: a ban another process wrote meanwhile is read again.
        self._client.transaction(apply, self._key)
        strike = result[-1]
        self._local.adopt(strike.ban)
        return strike

    def _skipping(self) -> bool:
        return self._clock() < self._skip_until

    def _unavailable(self, exc: RedisError) -> None:
        self._skip_until = self._clock() + REDIS_RETRY_SECONDS
        # Once per outage, not once per request.
        if not self._failing:
            event(log, "upbit.ban_board_unavailable", level=logging.WARNING,
                  error=type(exc).__name__, detail="bans are kept in this process only "
                  "until Redis answers again")
        self._failing = True


def encode_ban(ban: Ban) -> str:
    return json.dumps({"until": ban.until, "strikes": ban.strikes, "seconds": ban.seconds})


def decode_ban(raw: bytes | str | None) -> Ban | None:
    """The stored ban; None when there is none or it is not ours to read."""
    if raw is None:
        return None
    try:
        value = json.loads(raw)
        return Ban(float(value["until"]), int(value["strikes"]), float(value["seconds"]))
    except (ValueError, TypeError, KeyError):
        return None


def read_ban(client: redis.Redis, *, key: str = UPBIT_BAN,
             now: float | None = None) -> tuple[datetime, int] | None:
    """The installation's ban in force: when it ends (UTC) and its strikes;
    None when there is none. Redis errors are the caller's to handle."""
    ban = decode_ban(client.get(key))
    moment = time.time() if now is None else now
    if ban is None or ban.until <= moment:
        return None
    return datetime.fromtimestamp(ban.until, tz=UTC), ban.strikes
