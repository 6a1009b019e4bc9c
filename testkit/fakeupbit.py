"""A small local HTTP server that speaks Upbit's REST API, for tests and benchmarks.

No test may reach the real Upbit; this module owns everything a test needs to
stand in for it: synthetic (or scripted) 1-minute candles, the quotation
endpoints, the private endpoints with Upbit's JWT checks, an account with
balances, limit orders that fill against the candles, Upbit's rate limiting
and fault injection. It imports nothing from ``bot`` (not even the tick table:
it has its own, :data:`KRW_TICK_TABLE`), so it judges the client from the outside.

Use::

    with FakeUpbit(markets=("KRW-BTC",), clock=clock) as upbit:
        requests.get(upbit.url + "/v1/candles/minutes/1", params={"market": "KRW-BTC"})

or standalone (end-to-end tests, other processes):
``python -m testkit.fakeupbit --port 8765 --speedup 60 --epoch 1700000000 --rate-limit 10``
prints its URL and serves until killed.

Semantics (tests rely on these; change them only on purpose):

* **Time.** "Now" is ``clock()`` when given, else bot/clock.py's formula
  ``epoch + (time.time() - epoch) * speedup``. Rate limiting, bans and delays use real
  time; a delayed cancel and the key's expiry use "now".
* **Candles.** Synthetic per market: a seeded random walk of closes on the market's
  tick (its own, :meth:`FakeUpbit.set_tick`, else :data:`KRW_TICK_TABLE`'s), slowly
  pulled back towards ``start_price`` (typically within +/-12 % of it); open = the
  previous minute's close; high/low around them; positive volumes. The walk is
  generated in blocks of ``BLOCK_MINUTES`` on a fixed grid of absolute minutes, keyed
  by (seed, market, block): it starts at ``start_price`` at the block boundary at or
  before the history start, so two servers with the same arguments whose history
  starts fall in one block agree. Candles exist from ``history_minutes`` before the
  server's creation up to the current minute; with ``gap_probability`` some minutes
  have no candle, by seed (the current one too: then there is no in-progress candle).
  The current minute is served as the newest candle with values that grow with the
  elapsed fraction of the minute (close moves from open towards its final close,
  high/low widen, volume grows); once the minute is over its values are final forever.
  Scripted candles (:meth:`FakeUpbit.set_candles`, :meth:`FakeUpbit.set_price_path`)
  replace a market's series; they are served as given (also while in progress), and
  only once their minute has started.
* **Markets.** :meth:`FakeUpbit.list_market` adds a market at run time (synthetic
  candles), :meth:`FakeUpbit.delist_market` removes one: it leaves ``/v1/market/all``
  and the tickers, its quotation answers are 404 ``Code not found``, orders on it 400
  ``market_does_not_exist``, and its open orders are cancelled. With
  ``is_details=true`` each market has ``market_event``: ``warning`` and ``caution``
  with every flag of :data:`CAUTION_FLAGS` (all false unless
  :meth:`FakeUpbit.set_market_event`); there is no ``market_warning`` any more.
* **Units.** ``/v1/candles/minutes/{unit}`` accepts Upbit's units 1, 3, 5, 10, 15, 30,
  60, 240; units above 1 are aggregated from the 1-minute series on UTC-aligned
  buckets. Any other unit: 400 ``validation_error``. ``count`` defaults to 1 and must be
  1..200 (else 400 ``validation_error``); ``to`` is exclusive and accepts ISO-8601 with
  ``Z``/an offset, without zone (= UTC), or ``YYYY-MM-DD HH:MM:SS``. Unknown market:
  404 ``{"error": {"name": 404, "message": "Code not found"}}`` (an integer name, as
  Upbit's quotation endpoints have been seen to answer).
* **Tickers.** ``/v1/ticker?markets=`` and ``/v1/ticker/all?quote_currencies=`` (every
  listed market of those quotes; the parameter is required) answer the same items:
  the day's fields since UTC midnight, the 52-week high/low over the candles the
  server has, and ``acc_trade_price_24h``/``acc_trade_volume_24h``, the sums over the
  1,440 minutes up to the current one, or what :meth:`FakeUpbit.set_traded_value`
  scripted (the volume then follows at the last price).
* **Ticks.** ``/v1/orderbook/instruments`` reports each market's ``tick_size`` at its
  last price: its own tick (:meth:`FakeUpbit.set_tick`) or the table's. Orders are
  judged on that same tick.
* **Endpoints.** Public: ``/v1/market/all``, ``/v1/candles/minutes/{unit}``,
  ``/v1/ticker``, ``/v1/ticker/all``, ``/v1/orderbook/instruments``. Private:
  ``GET /v1/accounts``, ``GET /v1/api_keys``, ``GET /v1/orders/chance``,
  ``POST /v1/orders``, ``POST /v1/orders/test``, ``GET``/``DELETE /v1/order``,
  ``GET``/``DELETE /v1/orders/open`` (DELETE: cancel many, by ``cancel_side``,
  ``pairs``, ``excluded_pairs``, ``quote_currencies``, ``count`` 1..300, default 20),
  ``GET /v1/orders/closed``, ``/v1/orders/uuids`` and the older ``GET /v1/orders``.
* **Rate limits.** Groups as :data:`ROUTE_GROUPS`, named in ``Remaining-Req`` as
  Upbit spells them. With ``rate_limit_per_sec`` set, quotation groups allow that many
  requests per sliding second and IP; exchange groups per access key (Upbit counts per
  account pocket) :data:`EXCHANGE_LIMITS`: ``default`` 30/s, ``order`` 12/s,
  ``order-test`` 8/s, ``order-cancel-all`` one per 2 s (:data:`LIMIT_WINDOWS`). Past it:
  429 ``too_many_requests``. Throttled requests do not count against the window (as
  Upbit documents). Without ``rate_limit_per_sec`` nothing is enforced and
  ``Remaining-Req`` reports a constant ``sec`` of the nominal allowance minus one (at
  least 1), so a client pacing on the header is not slowed down by a limit that does
  not exist.
* **Bans.** :meth:`FakeUpbit.ban_next` (or, when :meth:`FakeUpbit.auto_ban` is set, a
  run of 429s) starts a ban: every request, whatever its path, answers 418
  ``{"error": {"name": "banned", "message": "... blocked for <n> more seconds."}}`` with
  ``Retry-After: <n>``, the whole seconds left. A ban after an earlier one lasts at
  least twice as long as that one.
* **Private API.** JWT (HS256 or HS512, verified here with ``hmac``), ``access_key``
  must match (else ``invalid_access_key``), a ``nonce`` is required and never reusable
  (``nonce_used``; a nonce is spent once the signature verifies). Then the key: past
  its expiry (:meth:`FakeUpbit.key_expires_at`, default a year after the server's
  creation) 401 ``expired_access_key``; from an IP not in ``allowed_ips`` (the socket's
  peer address; None allows any) 401 ``no_authorization_i_p``. A POST body must be JSON:
  a form (or any non-JSON) body is 400 ``validation_error`` (Upbit stopped reading form
  bodies on 2022-03-01, so it sees none of the required parameters). With parameters,
  ``query_hash`` must be the SHA-512 hex of the unquoted query string (GET/DELETE: the
  URL's query, unquoted; POST: the body's parameters as ``k=v&...`` in the order sent;
  ``k[]=a&k[]=b`` for lists) and ``query_hash_alg``, when present, ``SHA512``; else 401
  ``invalid_query_payload``. A bad signature or token is 401 ``jwt_verification``; no
  token 401 ``no_authorization_token``. Last, the route's permission
  (:data:`ROUTE_SCOPES`) must be in ``key_scopes``, else 401 ``out_of_scope``.
* **Orders.** Only ``ord_type=limit`` (others: 400 ``validation_error``) and no
  ``time_in_force``. Checks in order: market (400 ``market_does_not_exist``), side,
  price format and the market's tick (``invalid_price_bid``/``_ask``), volume > 0 with
  at most 8 decimals (``invalid_volume``), total >= the minimum
  (:meth:`FakeUpbit.set_min_total`, default 5000; ``under_min_total_bid``/``_ask``),
  identifier never used before, even by an ended order (400
  :data:`ERROR_DUPLICATE_IDENTIFIER`), funds (``insufficient_funds_bid``/``_ask``).
  ``POST /v1/orders/test`` makes the same checks and answers the order it would place
  (201) without placing it, locking anything or spending the identifier. Fees: a bid
  reserves and pays the market's ``bid`` rate, an ask pays its ``ask`` rate, as of when
  it was placed (:meth:`FakeUpbit.set_fees`; default ``fee_rate``; ``/v1/orders/chance``
  reports them with the maker rates and the minimum). A bid locks
  ``price * volume * (1 + bid rate)`` KRW, an ask locks the volume. An order fills
  at its limit price on the closed candles of minutes that start at or after its
  creation (placed mid-minute: from the next minute on; placed exactly at a minute's
  close: on the next minute, as docs/semantics.md's fill model), when ``low <= price`` (bid) or
  ``high >= price`` (ask), one ``partial_fills``-th of its volume per crossing minute.
  Fills are evaluated lazily, on each request (and by :meth:`FakeUpbit.settle`), over
  the minutes closed since the last evaluation: a candle scripted for a minute already
  evaluated is not looked at again. A cancel takes effect ``cancel_delay`` seconds
  after it is asked for (default 0: at once): until then ``DELETE /v1/order`` and every
  read show the order ``wait`` and it keeps filling on the candles that close by then
  (whenever the fills are evaluated); then it is ``cancel`` (or ``done`` if it filled
  completely meanwhile) and what it still locks is released. Asking again while a
  cancel is pending answers the order and keeps the first schedule; cancelling an
  order that is not ``wait``: 400 :data:`ERROR_NOT_CANCELLABLE`. Fee = funds * rate,
  exact ``Decimal``; a bid pays funds + fee, an ask receives funds - fee. Orders carry
  the SDK's ``prevented_volume``/``prevented_locked`` (always 0: no self-match
  prevention here).
* **Faults.** :meth:`FakeUpbit.fail_next`, :meth:`FakeUpbit.malform_next`,
  :meth:`FakeUpbit.delay_next` (the request hangs *before* it is processed) and
  :meth:`FakeUpbit.drop_after_commit_next` (POST /v1/orders: the order is created, then
  the connection is closed without an answer, or the answer comes late).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import hmac
import json
import math
import signal
import socket
import sys
import threading
import time
import traceback
import uuid as uuidlib
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation
from decimal import localcontext as decimal_context
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, unquote

import numpy as np

__all__ = [
    "BLOCK_MINUTES",
    "CAUTION_FLAGS",
    "ERROR_DUPLICATE_IDENTIFIER",
    "ERROR_NOT_CANCELLABLE",
    "EXCHANGE_LIMITS",
    "KEY_SCOPES",
    "KRW_TICK_TABLE",
    "LIMIT_WINDOWS",
    "MALFORM_KINDS",
    "ROUTE_GROUPS",
    "ROUTE_SCOPES",
    "AccountBalance",
    "FakeUpbit",
    "FakeOrder",
    "FakeTrade",
    "ManualClock",
    "PathStats",
    "PrivateRequest",
    "RequestRecord",
    "main",
]

KST = timezone(timedelta(hours=9))
SCALE = 10**8  # prices and volumes are held as integers of 1e-8
BLOCK_MINUTES = 1 << 14  # the synthetic walk is generated in blocks of ~11.4 days
CANDLE_UNITS = (1, 3, 5, 10, 15, 30, 60, 240)
MAX_COUNT = 200
MIN_TOTAL_KRW = Decimal(5000)
MAX_TOTAL_KRW = Decimal(1_000_000_000)

# Error names this server chooses where Upbit's own are not documented.
ERROR_DUPLICATE_IDENTIFIER = "duplicate_identifier"
ERROR_NOT_CANCELLABLE = "order_not_cancellable"

# (method or "*", path prefix, group, quotation?): first match wins, so the longer
# order paths come before ``POST /v1/orders``. Group names are spelled as Upbit's
# ``Remaining-Req`` spells them.
ROUTE_GROUPS: tuple[tuple[str, str, str, bool], ...] = (
    ("POST", "/v1/orders/test", "order-test", False),
    ("POST", "/v1/orders", "order", False),
    ("DELETE", "/v1/orders/open", "order-cancel-all", False),
    ("*", "/v1/candles/", "candle", True),
    ("*", "/v1/market/", "market", True),
    ("*", "/v1/ticker", "ticker", True),
    ("*", "/v1/orderbook", "orderbook", True),
    ("*", "/v1/trades/", "trade", True),
    ("*", "/", "default", False),
)
QUOTATION_NOMINAL_LIMIT = 10
# Requests per window (one second unless LIMIT_WINDOWS says otherwise), per access key.
EXCHANGE_LIMITS: dict[str, int] = {"default": 30, "order": 12, "order-test": 8,
                                   "order-cancel-all": 1}
LIMIT_WINDOWS: dict[str, float] = {"order-cancel-all": 2.0}
REMAINING_MIN = 1800  # Upbit's deprecated, fixed ``min`` field

MALFORM_KINDS = ("missing_field", "null_price", "non_json", "truncated", "not_a_list")

# The flags of ``market_event.caution`` in /v1/market/all?is_details=true.
CAUTION_FLAGS = ("PRICE_FLUCTUATIONS", "TRADING_VOLUME_SOARING", "DEPOSIT_AMOUNT_SOARING",
                 "GLOBAL_PRICE_DIFFERENCES", "CONCENTRATION_OF_SMALL_ACCOUNTS")
# An API key's permissions, as Upbit's API key types name them.
KEY_SCOPES = frozenset({"view_account", "view_orders", "make_orders", "view_withdrawals",
                        "withdraw", "view_deposits", "deposit", "transfer", "manage_pockets"})
# The permission each private route needs (routes not listed need none).
ROUTE_SCOPES: dict[tuple[str, str], str] = {
    ("GET", "/v1/accounts"): "view_account",
    ("GET", "/v1/orders/chance"): "view_orders",
    ("GET", "/v1/order"): "view_orders",
    ("GET", "/v1/orders/open"): "view_orders",
    ("GET", "/v1/orders/closed"): "view_orders",
    ("GET", "/v1/orders/uuids"): "view_orders",
    ("GET", "/v1/orders"): "view_orders",
    ("POST", "/v1/orders"): "make_orders",
    ("POST", "/v1/orders/test"): "make_orders",
    ("DELETE", "/v1/order"): "make_orders",
    ("DELETE", "/v1/orders/open"): "make_orders",
}
KEY_LIFETIME = timedelta(days=365)  # Upbit's keys expire a year after they are issued

_NAMES = {
    "BTC": ("비트코인", "Bitcoin"),
    "ETH": ("이더리움", "Ethereum"),
    "XRP": ("엑스알피(리플)", "XRP"),
    "SOL": ("솔라나", "Solana"),
    "DOGE": ("도지코인", "Dogecoin"),
}
_HTML_ERROR = b"<html><head><title>502 Bad Gateway</title></head><body>bad gateway</body></html>"


# --- numbers --------------------------------------------------------------------------

# Upbit's KRW tick table in force since 2025-07-31: (band's lower bound, tick), highest
# band first. A copy, not bot/money.py's: the fake judges the client from the outside,
# and a test can make the two disagree (FakeUpbit.set_tick).
KRW_TICK_TABLE: tuple[tuple[Decimal, Decimal], ...] = tuple(
    (Decimal(low), Decimal(tick)) for low, tick in (
        ("1000000", "1000"), ("500000", "500"), ("100000", "100"), ("50000", "50"),
        ("10000", "10"), ("5000", "5"), ("100", "1"), ("10", "0.1"), ("1", "0.01"),
        ("0.1", "0.001"), ("0.01", "0.0001"), ("0.001", "0.00001"),
        ("0.0001", "0.000001"), ("0.00001", "0.0000001"), ("0", "0.00000001"),
    )
)


def _table_tick(price: Decimal) -> Decimal:
    """The tick of ``price``'s band in :data:`KRW_TICK_TABLE`."""
    for low, tick in KRW_TICK_TABLE:
        if price >= low:
            return tick
    return KRW_TICK_TABLE[-1][1]


# Band lower bounds ascending, with their ticks, for vectorised rounding.
_BAND_LOW = np.array([float(low) for low, _ in reversed(KRW_TICK_TABLE)])
_BAND_TICK = np.array([float(tick) for _, tick in reversed(KRW_TICK_TABLE)])
_BAND_TICK_UNITS = np.array([int(tick * SCALE) for _, tick in reversed(KRW_TICK_TABLE)],
                            dtype=np.int64)
_ROUNDERS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "nearest": np.rint, "up": np.ceil, "down": np.floor}
_DECIMAL_ROUNDING = {"nearest": ROUND_HALF_UP, "up": ROUND_CEILING, "down": ROUND_FLOOR}


def _round_to_tick(prices: np.ndarray, mode: str, tick: Decimal | None = None) -> np.ndarray:
    """Float KRW prices -> integer 1e-8 units on the tick (at least one tick): the
    table's band tick, or one fixed ``tick`` for a market with its own."""
    if tick is not None:
        steps = np.maximum(_ROUNDERS[mode](prices / float(tick)), 1.0)
        return steps.astype(np.int64) * int(tick * SCALE)
    band = np.searchsorted(_BAND_LOW, prices, side="right") - 1
    band = np.clip(band, 0, len(_BAND_LOW) - 1)
    steps = np.maximum(_ROUNDERS[mode](prices / _BAND_TICK[band]), 1.0)
    return steps.astype(np.int64) * _BAND_TICK_UNITS[band]


def _round_units(units: float, mode: str, tick: Decimal | None = None) -> int:
    """One price in 1e-8 units (maybe fractional) -> on the tick, exact."""
    price = Decimal(repr(units)) / SCALE if units > 0 else Decimal(1) / SCALE
    step = tick if tick is not None else _table_tick(price)
    steps = (price / step).quantize(Decimal(1), rounding=_DECIMAL_ROUNDING[mode])
    return int(max(steps, Decimal(1)) * step * SCALE)


def _num(units: int) -> str:
    """JSON number text for 1e-8 units, no exponent: ``50000000.0``, ``0.0123``."""
    whole, frac = divmod(units, SCALE)
    if frac == 0:
        return f"{whole}.0"
    return f"{whole}.{frac:08d}".rstrip("0")


def _float_text(value: float) -> str:
    text = f"{value:.8f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def _dec(units: int) -> Decimal:
    return Decimal(units).scaleb(-8)


def _units(value: Any) -> int:
    """A price or volume (number, str, Decimal) -> 1e-8 units; more decimals is an error."""
    number = Decimal(str(value))
    units = number * SCALE
    if units != units.to_integral_value():
        raise ValueError(f"{value!r} has more than 8 decimals")
    return int(units)


def _text(value: Decimal) -> str:
    """Plain decimal text as Upbit writes it: no exponent, no trailing zeros."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _kst(ts: float) -> str:
    return datetime.fromtimestamp(ts, KST).isoformat(timespec="seconds")


def _parse_time(text: str) -> datetime:
    """Upbit's ``to``: ISO-8601 with Z or an offset, no zone = UTC, or 'YYYY-MM-DD HH:MM:SS'."""
    moment = datetime.fromisoformat(text.strip())
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _to_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, UTC)
    return _parse_time(str(value))


def _minute_of(value: Any) -> int:
    """A minute's start (datetime, ISO text or epoch seconds) -> absolute minute index."""
    moment = _to_datetime(value)
    seconds = moment.timestamp()
    if seconds % 60:
        raise ValueError(f"{value!r} is not the start of a minute")
    return int(seconds // 60)


# --- candle series --------------------------------------------------------------------

_SERIES_FIELDS = ("minutes", "open", "high", "low", "close", "volume", "quote", "last_ms")


class _Series:
    """One market's candles as parallel arrays, present minutes only, ascending.

    ``minutes`` are absolute minute indices (Unix seconds // 60); prices and volumes
    are int64 1e-8 units; ``quote`` is the KRW traded (float); ``last_ms`` the
    millisecond of the minute at which its last trade happened.
    """

    evolving = False  # True: the in-progress minute's values grow with the clock
    tick: Decimal | None = None  # the market's own tick; None: the table's

    def __init__(self) -> None:
        self.minutes = np.empty(0, np.int64)
        self.open = np.empty(0, np.int64)
        self.high = np.empty(0, np.int64)
        self.low = np.empty(0, np.int64)
        self.close = np.empty(0, np.int64)
        self.volume = np.empty(0, np.int64)
        self.quote = np.empty(0, np.float64)
        self.last_ms = np.empty(0, np.int64)
        self.first_minute = -(1 << 62)

    def ensure(self, minute: int) -> None:
        """Make sure candles up to ``minute`` (inclusive) exist."""

    def _append(self, parts: Sequence[dict[str, np.ndarray]]) -> None:
        for name in _SERIES_FIELDS:
            setattr(self, name, np.concatenate([getattr(self, name)] + [p[name] for p in parts]))

    def index(self, minute: int) -> int:
        """Position of the first candle at or after ``minute``."""
        return int(np.searchsorted(self.minutes, minute, side="left"))


class _ScriptedSeries(_Series):
    """Candles a test set explicitly; served as given."""

    def __init__(self, rows: Iterable[Any]) -> None:
        super().__init__()
        parsed = sorted((self._row(row) for row in rows), key=lambda r: r[0])
        minutes = [r[0] for r in parsed]
        if len(set(minutes)) != len(minutes):
            raise ValueError("two candles for one minute")
        columns = list(zip(*parsed, strict=True)) if parsed else [[]] * 8
        self._append([{
            "minutes": np.array(columns[0], np.int64),
            "open": np.array(columns[1], np.int64),
            "high": np.array(columns[2], np.int64),
            "low": np.array(columns[3], np.int64),
            "close": np.array(columns[4], np.int64),
            "volume": np.array(columns[5], np.int64),
            "quote": np.array(columns[6], np.float64),
            "last_ms": np.array(columns[7], np.int64),
        }])

    @staticmethod
    def _row(row: Any) -> tuple[int, int, int, int, int, int, float, int]:
        if isinstance(row, Mapping):
            ts, o, h, low, c, v = (row[k] for k in ("ts", "open", "high", "low", "close",
                                                    "volume"))
            quote = row.get("quote_volume")
        else:
            ts, o, h, low, c, v, *rest = row
            quote = rest[0] if rest else None
        prices = [_units(x) for x in (o, h, low, c)]
        volume = _units(v)
        if min(prices) <= 0 or volume <= 0:
            raise ValueError(f"candle {row!r}: prices and volume must be positive")
        if quote is None:
            quote = float(_dec(volume) * _dec(sum(prices)) / 4)
        return (_minute_of(ts), *prices, volume, float(quote), 59_000)


class _SyntheticSeries(_Series):
    """A seeded random walk, generated block by block as the clock advances."""

    evolving = True
    SIGMA = 0.0008  # per-minute log-return deviation
    PULL = 1 - 1 / 43_200  # mean reversion per minute towards start_price
    QUOTE_MEAN_KRW = 2e7  # typical KRW traded per minute

    def __init__(self, market: str, *, seed: int, start_price: Decimal, first_minute: int,
                 gap_probability: float, tick: Decimal | None = None) -> None:
        super().__init__()
        self.first_minute = first_minute
        self.tick = tick
        self._seed = seed
        self._key = zlib.crc32(market.encode())
        self._start_price = float(start_price)
        self._gap_probability = gap_probability
        self._block = first_minute // BLOCK_MINUTES
        self._log_level = 0.0
        self._last_close = int(_round_to_tick(np.array([self._start_price]), "nearest",
                                              tick)[0])

    @property
    def generated_until(self) -> int:
        """First minute not generated yet."""
        return self._block * BLOCK_MINUTES

    def ensure(self, minute: int) -> None:
        if minute < self.generated_until:
            return
        parts = []
        while minute >= self.generated_until:
            parts.append(self._next_block())
        self._append(parts)

    def _next_block(self) -> dict[str, np.ndarray]:
        n = BLOCK_MINUTES
        rng = np.random.default_rng([self._seed, self._key, self._block])
        returns = rng.normal(0.0, self.SIGMA, n)
        trades = rng.random(n)
        up = rng.exponential(self.SIGMA * 0.7, n)
        down = rng.exponential(self.SIGMA * 0.7, n)
        quote = rng.lognormal(math.log(self.QUOTE_MEAN_KRW), 1.0, n)
        last_ms = rng.integers(0, 60_000, n)

        # log(close / start_price) is an AR(1) walk pulled back to 0 (a 30-day time
        # constant): x[t] = PULL * x[t-1] + r[t], computed in closed form.
        decay = self.PULL ** np.arange(1, n + 1)
        log_close = decay * (self._log_level + np.cumsum(returns / decay))
        close = _round_to_tick(self._start_price * np.exp(log_close), "nearest", self.tick)
        open_ = np.empty(n, np.int64)
        open_[0] = self._last_close
        open_[1:] = close[:-1]
        top = np.maximum(open_, close)
        bottom = np.minimum(open_, close)
        high = np.maximum(_round_to_tick(top / SCALE * (1 + up), "up", self.tick), top)
        low = np.minimum(_round_to_tick(bottom / SCALE * (1 - down), "down", self.tick),
                         bottom)
        volume = np.maximum(np.rint(quote / (close / SCALE) * SCALE), 1).astype(np.int64)
        vwap = (open_ + high + low + close) / (4 * SCALE)
        traded = volume / SCALE * vwap

        minutes = np.arange(self._block * n, (self._block + 1) * n, dtype=np.int64)
        keep = (trades >= self._gap_probability) & (minutes >= self.first_minute)
        self._block += 1
        self._log_level = float(log_close[-1])
        self._last_close = int(close[-1])
        return {"minutes": minutes[keep], "open": open_[keep], "high": high[keep],
                "low": low[keep], "close": close[keep], "volume": volume[keep],
                "quote": traded[keep], "last_ms": last_ms[keep]}


class _Bar(NamedTuple):
    minute: int
    open: int
    high: int
    low: int
    close: int
    volume: int
    quote: float
    ts_ms: int


def _in_progress(bar: _Bar, fraction: float, tick: Decimal | None = None) -> _Bar:
    """The values of a minute ``fraction`` (0..1) of the way through: close moves from
    open towards the final close, high and low widen towards their final values and
    volume grows; all stay within the final candle's range and on the tick."""
    o, h, low, c = bar.open, bar.high, bar.low, bar.close
    top, bottom = max(o, c), min(o, c)
    close = min(max(_round_units(o + (c - o) * fraction, "nearest", tick), bottom), top)
    top_now, bottom_now = max(o, close), min(o, close)
    high = min(h, max(top_now, _round_units(top_now + (h - top) * fraction, "up", tick)))
    low_now = max(low, min(bottom_now, _round_units(bottom_now - (bottom - low) * fraction,
                                                    "down", tick)))
    volume = max(1, int(bar.volume * fraction))
    quote = bar.quote * volume / bar.volume
    ts_ms = bar.minute * 60_000 + int((bar.ts_ms - bar.minute * 60_000) * fraction)
    return _Bar(bar.minute, o, high, low_now, close, volume, quote, ts_ms)


# --- accounts and orders --------------------------------------------------------------


@dataclass
class AccountBalance:
    """One currency of the fake account: ``balance`` is free, ``locked`` held by orders."""

    balance: Decimal = Decimal(0)
    locked: Decimal = Decimal(0)
    avg_buy_price: Decimal = Decimal(0)


@dataclass(frozen=True)
class FakeTrade:
    market: str
    uuid: str
    price: Decimal
    volume: Decimal
    funds: Decimal
    fee: Decimal
    side: str
    created_ts: float
    minute: int  # the candle it filled on

    def to_json(self) -> dict[str, Any]:
        return {"market": self.market, "uuid": self.uuid, "price": _text(self.price),
                "volume": _text(self.volume), "funds": _text(self.funds),
                "trend": "up" if self.side == "bid" else "down", "side": self.side,
                "created_at": _kst(self.created_ts)}


@dataclass
class FakeOrder:
    """An order on the fake exchange; ``locked_left`` is what it still holds."""

    uuid: str
    market: str
    side: str
    ord_type: str
    price: Decimal
    volume: Decimal
    identifier: str | None
    created_ts: float
    reserved_fee: Decimal
    locked_left: Decimal
    parts: int
    next_minute: int  # first candle minute not yet checked for a fill
    state: str = "wait"
    executed_volume: Decimal = Decimal(0)
    paid_fee: Decimal = Decimal(0)
    trades: list[FakeTrade] = field(default_factory=list)
    fee_rate: Decimal = Decimal(0)  # its side's fee when it was placed
    cancel_at: float | None = None  # a requested cancel takes effect then (fake's clock)

    @property
    def remaining_volume(self) -> Decimal:
        return self.volume - self.executed_volume

    def to_json(self, *, with_trades: bool = False) -> dict[str, Any]:
        waiting = self.state == "wait"
        body: dict[str, Any] = {
            "uuid": self.uuid, "side": self.side, "ord_type": self.ord_type,
            "price": _text(self.price), "state": self.state, "market": self.market,
            "created_at": _kst(self.created_ts), "volume": _text(self.volume),
            "remaining_volume": _text(self.remaining_volume),
            "reserved_fee": _text(self.reserved_fee),
            "remaining_fee": _text(self.reserved_fee - self.paid_fee if waiting else Decimal(0)),
            "paid_fee": _text(self.paid_fee),
            "locked": _text(self.locked_left if waiting else Decimal(0)),
            "executed_volume": _text(self.executed_volume),
            "trades_count": len(self.trades), "identifier": self.identifier,
            "prevented_volume": "0", "prevented_locked": "0",
        }
        if with_trades:
            body["trades"] = [t.to_json() for t in self.trades]
        return body


# --- bookkeeping types ----------------------------------------------------------------


class RequestRecord(NamedTuple):
    method: str
    path: str
    query: str
    time: float  # real time.time() when it arrived


class PrivateRequest(NamedTuple):
    """A private request whose JWT verified."""

    method: str
    path: str
    params: tuple[tuple[str, str], ...]
    payload: dict[str, Any]
    time: float


@dataclass
class PathStats:
    requests: int = 0
    throttled: int = 0  # answered 429 (limit or injected)
    statuses: Counter[int] = field(default_factory=Counter)


@dataclass
class _Fault:
    kind: str  # "fail", "malform", "delay", "drop"
    remaining: int
    path_prefix: str | None
    status: int = 500
    body: Any = None
    malform: str = ""
    seconds: float = 0.0
    mode: str = "close"

    def matches(self, method: str, path: str) -> bool:
        return self.path_prefix is None or path.startswith(self.path_prefix)


@dataclass
class _Ban:
    """Upbit's HTTP 418: a block of every request that lengthens on repeats (real,
    monotonic time)."""

    until: float = 0.0
    last: float = 0.0  # the latest ban's length; 0: never banned
    armed: float | None = None  # ban_next's length, started by the next request
    auto_after: int | None = None
    auto_seconds: float = 60.0
    auto_window: float = 10.0
    throttled: deque[float] = field(default_factory=deque)  # recent 429s, for auto_after

    def start(self, seconds: float, now: float) -> None:
        length = max(seconds, 2 * self.last) if self.last else seconds
        self.last, self.until = length, now + length
        self.throttled.clear()

    def left(self, now: float) -> float:
        return max(0.0, self.until - now)

    def note_throttled(self, now: float) -> None:
        if self.auto_after is None:
            return
        self.throttled.append(now)
        while self.throttled and self.throttled[0] <= now - self.auto_window:
            self.throttled.popleft()
        if len(self.throttled) >= self.auto_after:
            self.start(self.auto_seconds, now)


@dataclass
class _Reply:
    status: int
    body: bytes
    content_type: str = "application/json; charset=utf-8"
    remaining: str = ""  # the Remaining-Req header
    drop: bool = False  # close the connection without answering
    delay: float = 0.0  # real seconds to wait before answering
    headers: dict[str, str] = field(default_factory=dict)  # more headers to send


class _ApiError(Exception):
    def __init__(self, status: int, name: str | int, message: str):
        super().__init__(message)
        self.status, self.name, self.message = status, name, message


def _json_reply(status: int, obj: Any) -> _Reply:
    return _Reply(status, json.dumps(obj, ensure_ascii=False).encode("utf-8"))


def _error_body(name: str | int, message: str) -> dict[str, Any]:
    return {"error": {"name": name, "message": message}}


class _Params:
    """Request parameters in the order received (repeated keys kept)."""

    def __init__(self, pairs: Sequence[tuple[str, str]]):
        self.pairs = tuple(pairs)

    def __bool__(self) -> bool:
        return bool(self.pairs)

    def get(self, name: str) -> str | None:
        for key, value in self.pairs:
            if key == name:
                return value
        return None

    def getlist(self, name: str) -> list[str]:
        return [v for k, v in self.pairs if k in (name, name + "[]")]

    def hash_string(self) -> str:
        return "&".join(f"{k}={v}" for k, v in self.pairs)


class _RateLimiter:
    """A sliding window per group and client (real, monotonic time): one second, or
    :data:`LIMIT_WINDOWS`' length for the groups it names."""

    def __init__(self, limits: Mapping[str, int] | None):
        self._limits = limits
        self._windows: dict[tuple[str, str], deque[float]] = {}

    def _limit(self, group: str, quotation: bool) -> int:
        nominal = QUOTATION_NOMINAL_LIMIT if quotation else EXCHANGE_LIMITS.get(group, 30)
        if self._limits is None:
            return nominal
        return self._limits.get(group, self._limits.get("*", nominal) if quotation else nominal)

    def _window(self, group: str, who: str, now: float) -> deque[float]:
        window = self._windows.setdefault((group, who), deque())
        length = LIMIT_WINDOWS.get(group, 1.0)
        while window and window[0] <= now - length:
            window.popleft()
        return window

    def admit(self, group: str, quotation: bool, now: float, who: str = "") -> bool:
        """Count the request in its window, or refuse it (not counted)."""
        if self._limits is None:
            return True
        window = self._window(group, who, now)
        if len(window) >= self._limit(group, quotation):
            return False
        window.append(now)
        return True

    def left(self, group: str, quotation: bool, now: float, who: str = "") -> int:
        """What ``Remaining-Req``'s ``sec`` reports: requests left in this window (a
        constant nominal allowance minus one when nothing is enforced)."""
        if self._limits is None:
            return max(1, self._limit(group, quotation) - 1)
        return max(0, self._limit(group, quotation) - len(self._window(group, who, now)))


class _Incoming(NamedTuple):
    """One request as the server sees it."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes
    client_ip: str  # the socket's peer address
    group: str  # its rate-limit group
    quotation: bool
    who: str  # whose allowance it counts against: the IP or the access key


def _claimed_access_key(headers: Mapping[str, str]) -> str:
    """The ``access_key`` a bearer token claims, unverified ("" if none can be read)."""
    token = (headers.get("Authorization") or "").partition(" ")[2].strip()
    parts = token.split(".")
    if len(parts) != 3:
        return ""
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return ""
    key = payload.get("access_key") if isinstance(payload, dict) else None
    return key if isinstance(key, str) else ""


def _ban_reply(left: float) -> _Reply:
    seconds = max(1, math.ceil(left))
    reply = _json_reply(418, _error_body(
        "banned", f"Too many requests after repeated limit violations: blocked for "
                  f"{seconds} more seconds."))
    reply.headers["Retry-After"] = str(seconds)
    return reply


def _csv(text: str | None) -> set[str]:
    return {item.strip() for item in (text or "").split(",") if item.strip()}


def _route(method: str, path: str) -> tuple[str, bool]:
    for route_method, prefix, group, quotation in ROUTE_GROUPS:
        if route_method in ("*", method) and path.startswith(prefix):
            return group, quotation
    return "default", False


# --- the server -----------------------------------------------------------------------


class FakeUpbit:
    """Upbit's REST API on 127.0.0.1 (see the module docstring for the semantics).

    Attributes for assertions: ``requests`` (every request, :class:`RequestRecord`),
    ``stats`` (path -> :class:`PathStats`), ``private_requests`` (verified private
    calls), ``orders`` (every :class:`FakeOrder`, in creation order), ``errors``
    (tracebacks of bugs in this server; should stay empty), ``partial_fills``.

    Attributes a test may set at any time: ``key_scopes`` (the key's permissions, a
    set of :data:`KEY_SCOPES`), ``allowed_ips`` (the key's IP allow list; None: any),
    ``cancel_delay`` (seconds on the fake's clock between a cancel request and the
    cancel).
    """

    def __init__(self, *, markets: Sequence[str] = ("KRW-BTC",),
                 start_price: Any = 50_000_000, seed: int = 1,
                 history_minutes: int = 10_080, gap_probability: float = 0.0,
                 clock: Callable[[], datetime] | None = None, speedup: float = 1.0,
                 epoch: float = 0.0, rate_limit_per_sec: int | None = None,
                 access_key: str = "test-access",
                 secret_key: str = "test-secret",  # noqa: S107 - a test fixture's key
                 krw: Any = 1_000_000, coins: Mapping[str, Any] | None = None,
                 fee_rate: Any = "0.0005", partial_fills: int = 1,
                 key_scopes: Iterable[str] = KEY_SCOPES,
                 allowed_ips: Iterable[str] | None = None, cancel_delay: float = 0.0,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        if not 0 <= gap_probability < 1:
            raise ValueError("gap_probability must be in [0, 1)")
        if history_minutes < 0 or partial_fills < 1:
            raise ValueError("history_minutes must be >= 0 and partial_fills >= 1")
        self.seed = seed
        self.history_minutes = history_minutes
        self.gap_probability = gap_probability
        self.speedup = float(speedup)
        self.epoch = float(epoch)
        self.access_key = access_key
        self.secret_key = secret_key
        self.fee_rate = Decimal(str(fee_rate))
        self.partial_fills = partial_fills
        self.key_scopes: set[str] = set(key_scopes)
        self.allowed_ips: set[str] | None = None if allowed_ips is None else set(allowed_ips)
        self.cancel_delay = float(cancel_delay)
        self._clock = clock
        self._host, self._port = host, port
        self._start_prices = start_price
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        limits: dict[str, int] | None = None
        if rate_limit_per_sec is not None:
            limits = {"*": int(rate_limit_per_sec), **EXCHANGE_LIMITS}
        self._limiter = _RateLimiter(limits)
        self._faults: list[_Fault] = []
        self._nonces: set[str] = set()
        self._identifiers: set[str] = set()
        self._orders_by_uuid: dict[str, FakeOrder] = {}
        self._orders_by_identifier: dict[str, FakeOrder] = {}
        self._fees: dict[str | None, dict[str, Decimal]] = {
            None: dict.fromkeys(("bid", "ask", "maker_bid", "maker_ask"), self.fee_rate)}
        self._min_total = MIN_TOTAL_KRW
        self._ticks: dict[str, Decimal] = {}
        self._events: dict[str, dict[str, Any]] = {}
        self._traded: dict[str, Decimal] = {}
        self._names: dict[str, tuple[str, str]] = {}
        self._prices: dict[str, Decimal] = {}
        self._starts: dict[str, int] = {}  # first minute of a market listed with its own history
        self._key_expiry = self.timestamp() + KEY_LIFETIME.total_seconds()
        self._ban = _Ban()

        self.requests: list[RequestRecord] = []
        self.stats: dict[str, PathStats] = {}
        self.private_requests: list[PrivateRequest] = []
        self.orders: list[FakeOrder] = []
        self.errors: list[str] = []

        self._history_start = self.current_minute() - history_minutes
        self._series: dict[str, _Series] = {}
        for market in markets:
            self._series[market] = self._synthetic(market)
        self._accounts: dict[str, AccountBalance] = {"KRW": AccountBalance(Decimal(str(krw)))}
        for currency, amount in (coins or {}).items():
            if isinstance(amount, (tuple, list)):
                self._accounts[currency] = AccountBalance(Decimal(str(amount[0])),
                                                          avg_buy_price=Decimal(str(amount[1])))
            else:
                self._accounts[currency] = AccountBalance(Decimal(str(amount)))

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> FakeUpbit:
        """Bind (a free port unless one was given) and serve in a daemon thread."""
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._httpd = _HTTPServer((self._host, self._port), self)
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name="fakeupbit", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; open connections are closed and hanging requests released."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeUpbit:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("FakeUpbit is not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    # --- time --------------------------------------------------------------------------

    def timestamp(self) -> float:
        """Seconds since the Unix epoch on this server's clock."""
        if self._clock is not None:
            return self._clock().timestamp()
        real = time.time()
        return real if self.speedup == 1.0 else self.epoch + (real - self.epoch) * self.speedup

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp(), UTC)

    def current_minute(self) -> int:
        """The absolute minute index (Unix seconds // 60) of the minute in progress."""
        return int(self.timestamp() // 60)

    # --- test controls: market data --------------------------------------------------

    def _synthetic(self, market: str) -> _SyntheticSeries:
        prices = self._start_prices
        price = self._prices.get(market)
        if price is None:
            price = prices.get(market, 50_000_000) if isinstance(prices, Mapping) else prices
        series = _SyntheticSeries(market, seed=self.seed, start_price=Decimal(str(price)),
                                  first_minute=self._starts.get(market, self._history_start),
                                  gap_probability=self.gap_probability,
                                  tick=self._ticks.get(market))
        series.ensure(self.current_minute() + 1)
        return series

    @property
    def markets(self) -> tuple[str, ...]:
        return tuple(self._series)

    def set_candles(self, market: str, candles: Iterable[Any]) -> None:
        """Replace ``market``'s series with these candles: dicts with ``ts, open, high, low,
        close, volume`` (optional ``quote_volume``) or tuples in that order. ``ts`` is the
        minute's start (datetime, ISO text or epoch seconds). A candle is served once its
        minute has started, as given."""
        series = _ScriptedSeries(candles)
        with self._lock:
            self._series[market] = series

    def set_price_path(self, market: str, closes: Sequence[Any], *, start: Any = None,
                       volume: Any = 1) -> None:
        """Scripted candles from closes, one per minute from ``start`` (default: so that
        the last close is the current minute's): open = previous close (the first
        opens at its close), high/low = max/min of open and close."""
        first = (self.current_minute() - len(closes) + 1) if start is None else _minute_of(start)
        rows = []
        previous = closes[0] if closes else None
        for i, close in enumerate(closes):
            o, c = Decimal(str(previous)), Decimal(str(close))
            rows.append(((first + i) * 60, o, max(o, c), min(o, c), c, volume))
            previous = close
        self.set_candles(market, rows)

    def use_synthetic(self, market: str) -> None:
        """Back to the synthetic series for ``market`` (also adds a new market)."""
        with self._lock:
            self._series[market] = self._synthetic(market)

    def list_market(self, market: str, *, start_price: Any = None,
                    history_minutes: int | None = None, korean_name: str | None = None,
                    english_name: str | None = None) -> None:
        """List ``market`` now, with synthetic candles from ``history_minutes`` ago
        (default: the server's own history) around ``start_price`` (default: the
        server's); a market already listed gets a fresh synthetic series."""
        with self._lock:
            if start_price is not None:
                self._prices[market] = Decimal(str(start_price))
            if history_minutes is not None:
                if history_minutes < 0:
                    raise ValueError("history_minutes must be >= 0")
                self._starts[market] = self.current_minute() - history_minutes
            if korean_name is not None or english_name is not None:
                coin = market.split("-", 1)[-1]
                self._names[market] = (korean_name or coin, english_name or coin)
            self._series[market] = self._synthetic(market)

    def delist_market(self, market: str) -> None:
        """Take ``market`` off the exchange: it leaves /v1/market/all and the tickers, its
        quotation answers 404 ``Code not found``, orders on it ``market_does_not_exist``;
        its open orders are cancelled after the fills due by now."""
        with self._lock:
            if market not in self._series:
                raise KeyError(market)
            self._settle(self.timestamp())
            del self._series[market]
            self._events.pop(market, None)
            self._traded.pop(market, None)
            for order in self.orders:
                if order.market == market and order.state == "wait":
                    self._end_cancel(order)

    def set_market_event(self, market: str, *, warning: bool = False,
                         cautions: Iterable[str] = ()) -> None:
        """What /v1/market/all?is_details=true says of ``market``: ``warning`` (under
        investment warning) and the ``caution`` flags (names of :data:`CAUTION_FLAGS`)
        that are true."""
        flags = set(cautions)
        unknown = flags - set(CAUTION_FLAGS)
        if unknown:
            raise ValueError(f"unknown caution flags {sorted(unknown)}; use {CAUTION_FLAGS}")
        with self._lock:
            self._events[market] = {"warning": bool(warning),
                                    "caution": {f: f in flags for f in CAUTION_FLAGS}}

    def set_traded_value(self, market: str, krw: Any | None) -> None:
        """Script ``market``'s ``acc_trade_price_24h`` in KRW (its ``acc_trade_volume_24h``
        follows at the last price); None: back to the sum over its candles."""
        with self._lock:
            if krw is None:
                self._traded.pop(market, None)
            else:
                self._traded[market] = Decimal(str(krw))

    def set_tick(self, market: str, tick: Any | None) -> None:
        """Give ``market`` its own price tick (None: back to :data:`KRW_TICK_TABLE`):
        /v1/orderbook/instruments reports it, orders must sit on it, and a synthetic
        series is generated anew on it (same walk, rounded to the new tick)."""
        with self._lock:
            if tick is None:
                self._ticks.pop(market, None)
            else:
                step = Decimal(str(tick))
                if step <= 0 or step != step.quantize(Decimal("0.00000001")):
                    raise ValueError("tick must be positive with at most 8 decimals")
                self._ticks[market] = step
            if isinstance(self._series.get(market), _SyntheticSeries):
                self._series[market] = self._synthetic(market)

    def tick(self, market: str, price: Any) -> Decimal:
        """The tick this server applies to ``price`` on ``market``."""
        with self._lock:
            return self._tick_of(market, Decimal(str(price)))

    def _tick_of(self, market: str, price: Decimal) -> Decimal:
        return self._ticks.get(market) or _table_tick(price)

    def candle(self, market: str, minute_start: Any) -> dict[str, Decimal] | None:
        """The final values of one 1-minute candle (None if no candle), for assertions."""
        minute = _minute_of(minute_start)
        with self._lock:
            series = self._series[market]
            series.ensure(minute)
            i = series.index(minute)
            if i >= len(series.minutes) or int(series.minutes[i]) != minute:
                return None
            return {name: _dec(int(getattr(series, name)[i]))
                    for name in ("open", "high", "low", "close", "volume")}

    # --- test controls: account ---------------------------------------------------------

    def balances(self) -> dict[str, AccountBalance]:
        """The server's view of the account after settling fills (copies)."""
        with self._lock:
            self._settle(self.timestamp())
            return {c: AccountBalance(a.balance, a.locked, a.avg_buy_price)
                    for c, a in self._accounts.items()}

    def set_balance(self, currency: str, balance: Any, avg_buy_price: Any = 0) -> None:
        with self._lock:
            account = self._accounts.setdefault(currency, AccountBalance())
            account.balance = Decimal(str(balance))
            account.avg_buy_price = Decimal(str(avg_buy_price))

    def order(self, key: str) -> FakeOrder | None:
        """An order by uuid or identifier, after settling fills."""
        with self._lock:
            self._settle(self.timestamp())
            return self._orders_by_uuid.get(key) or self._orders_by_identifier.get(key)

    def settle(self) -> None:
        """Apply every fill due by now (requests do this by themselves)."""
        with self._lock:
            self._settle(self.timestamp())

    def set_fees(self, market: str | None = None, *, bid: Any = None, ask: Any = None,
                 maker_bid: Any = None, maker_ask: Any = None) -> None:
        """The fee rates /v1/orders/chance reports, for ``market`` or (None) for every
        market without its own; what is not given keeps its value. A bid reserves and
        pays ``bid``, an ask pays ``ask`` (as of when it was placed); the maker rates are
        reported only."""
        given = {"bid": bid, "ask": ask, "maker_bid": maker_bid, "maker_ask": maker_ask}
        with self._lock:
            fees = dict(self._fee_table(market))
            fees.update({k: Decimal(str(v)) for k, v in given.items() if v is not None})
            self._fees[market] = fees

    def _fee_table(self, market: str | None) -> dict[str, Decimal]:
        return self._fees.get(market) or self._fees[None]

    def set_min_total(self, amount: Any) -> None:
        """The minimum order value (``market.bid.min_total``/``ask.min_total``), checked
        by POST /v1/orders and /v1/orders/test."""
        with self._lock:
            self._min_total = Decimal(str(amount))

    def key_expires_at(self, moment: datetime | str) -> None:
        """When the API key expires (GET /v1/api_keys' ``expire_at``); from then on (the
        fake's clock) every private request answers 401 ``expired_access_key``."""
        with self._lock:
            self._key_expiry = _to_datetime(moment).timestamp()

    def expire_key(self) -> None:
        """The API key expires now."""
        with self._lock:
            self._key_expiry = self.timestamp()

    # --- test controls: bans -----------------------------------------------------------

    def ban_next(self, seconds: float) -> None:
        """The next request starts a ban (HTTP 418 for every request, with a
        ``Retry-After``) of ``seconds`` real seconds, or of twice the previous ban's
        length if there was one and it is longer."""
        with self._lock:
            self._ban.armed = float(seconds)

    def auto_ban(self, after_429s: int | None, *, seconds: float = 60.0,
                 window: float = 10.0) -> None:
        """Ban (as :meth:`ban_next`) when ``after_429s`` rate-limit refusals fall within
        ``window`` real seconds; None: never (the default)."""
        with self._lock:
            self._ban.auto_after = after_429s
            self._ban.auto_seconds, self._ban.auto_window = float(seconds), float(window)
            self._ban.throttled.clear()

    def banned_for(self) -> float:
        """Real seconds left of the current ban (0: not banned)."""
        with self._lock:
            return self._ban.left(time.monotonic())

    # --- test controls: faults ----------------------------------------------------------

    def fail_next(self, n: int = 1, status: int = 500, body: Any = None,
                  path_prefix: str | None = None) -> None:
        """Answer the next ``n`` requests (matching ``path_prefix``) with ``status`` and
        ``body``: a dict/list (sent as JSON), str/bytes (sent as is; HTML when it starts
        with ``<``), or None for a default: Upbit's ``too_many_requests`` body for 429,
        ``banned`` for 418, ``server_error`` for 5xx, ``injected_error`` otherwise."""
        with self._lock:
            self._faults.append(_Fault("fail", n, path_prefix, status=status, body=body))

    def malform_next(self, n: int = 1, kind: str = "missing_field") -> None:
        """Spoil the next ``n`` candle answers: one of :data:`MALFORM_KINDS`
        (``missing_field``: the newest candle lacks ``trade_price``; ``null_price``: its
        ``trade_price`` is null; ``non_json``: an HTML page with status 200; ``truncated``:
        JSON cut in half; ``not_a_list``: a JSON object instead of the array)."""
        if kind not in MALFORM_KINDS:
            raise ValueError(f"kind must be one of {MALFORM_KINDS}")
        with self._lock:
            self._faults.append(_Fault("malform", n, "/v1/candles/", malform=kind))

    def delay_next(self, seconds: float, path_prefix: str | None = None, n: int = 1) -> None:
        """Make the next ``n`` matching requests hang ``seconds`` (real time) before they
        are processed (a client that times out first never sees them answered)."""
        with self._lock:
            self._faults.append(_Fault("delay", n, path_prefix, seconds=seconds))

    def drop_after_commit_next(self, n: int = 1, *, mode: str = "close",
                               delay: float = 30.0) -> None:
        """The next ``n`` successful POST /v1/orders create the order, then either close
        the connection without an answer (``mode="close"``) or answer after ``delay``
        real seconds (``mode="delay"``)."""
        if mode not in ("close", "delay"):
            raise ValueError("mode must be 'close' or 'delay'")
        with self._lock:
            self._faults.append(_Fault("drop", n, "/v1/orders", mode=mode, seconds=delay))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, kind: str, method: str, path: str) -> _Fault | None:
        for fault in self._faults:
            if fault.kind == kind and fault.matches(method, path):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    # --- request handling ---------------------------------------------------------------

    def serve(self, method: str, target: str, headers: Mapping[str, str], body: bytes,
              client_ip: str = "127.0.0.1") -> _Reply:
        """Handle one HTTP request (called by the handler thread)."""
        path, _, query = target.partition("?")
        group, quotation = _route(method, path)
        # Quotation limits count per IP, exchange limits per account (here: access key).
        who = client_ip if quotation else _claimed_access_key(headers)
        req = _Incoming(method, path, query, headers, body, client_ip, group, quotation, who)
        with self._lock:
            self.requests.append(RequestRecord(method, path, query, time.time()))
            delay = self._take_fault("delay", method, path)
        if delay is not None:
            self._stopping.wait(delay.seconds)
        with self._lock:
            reply = self._serve_locked(req)
            stats = self.stats.setdefault(path, PathStats())
            stats.requests += 1
            stats.statuses[reply.status] += 1
            if reply.status == 429:
                stats.throttled += 1
        return reply

    def _serve_locked(self, req: _Incoming) -> _Reply:
        reply = self._answer(req)
        left = self._limiter.left(req.group, req.quotation, time.monotonic(), req.who)
        reply.remaining = f"group={req.group}; min={REMAINING_MIN}; sec={left}"
        return reply

    def _answer(self, req: _Incoming) -> _Reply:
        now = time.monotonic()
        if self._ban.armed is not None:
            self._ban.start(self._ban.armed, now)
            self._ban.armed = None
        if self._ban.left(now) > 0:
            return _ban_reply(self._ban.left(now))
        fault = self._take_fault("fail", req.method, req.path)
        if fault is not None:
            return self._fault_reply(fault)
        if not self._limiter.admit(req.group, req.quotation, now, req.who):
            self._ban.note_throttled(now)
            if self._ban.left(now) > 0:
                return _ban_reply(self._ban.left(now))
            return _json_reply(429, _error_body("too_many_requests", "Too many API requests."))
        try:
            self._settle(self.timestamp())
            return self._dispatch(req)
        except _ApiError as exc:
            return _json_reply(exc.status, _error_body(exc.name, exc.message))
        except Exception:  # a bug here: answer 500 and keep it for the tests to see
            self.errors.append(traceback.format_exc())
            return _json_reply(500, _error_body("server_error", "fake server bug"))

    @staticmethod
    def _fault_reply(fault: _Fault) -> _Reply:
        status, body = fault.status, fault.body
        if body is None:
            if status == 429:
                return _json_reply(429, _error_body("too_many_requests",
                                                    "Too many API requests."))
            if status == 418:
                return _json_reply(418, _error_body("banned",
                                                    "IP banned for 60 seconds (injected)"))
            return _json_reply(status, _error_body("server_error" if status >= 500
                                                   else "injected_error", "injected fault"))
        if isinstance(body, (dict, list)):
            return _json_reply(status, body)
        raw = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        html = raw.lstrip().startswith(b"<")
        return _Reply(status, raw, "text/html; charset=utf-8" if html else
                      "application/json; charset=utf-8")

    def _dispatch(self, req: _Incoming) -> _Reply:
        method, path = req.method, req.path
        if path.startswith("/v1/candles/minutes/") and method == "GET":
            return self._candles(path.rsplit("/", 1)[1], _Params(parse_qsl(req.query)))
        public = {
            ("GET", "/v1/market/all"): self._market_all,
            ("GET", "/v1/ticker"): self._ticker,
            ("GET", "/v1/ticker/all"): self._ticker_all,
            ("GET", "/v1/orderbook/instruments"): self._instruments,
        }
        handler = public.get((method, path))
        if handler is not None:
            return _json_reply(200, handler(_Params(parse_qsl(req.query))))
        private: dict[tuple[str, str], Callable[[_Params], tuple[int, Any]]] = {
            ("GET", "/v1/accounts"): self._accounts_json,
            ("GET", "/v1/api_keys"): self._api_keys,
            ("GET", "/v1/orders/chance"): self._chance,
            ("POST", "/v1/orders"): self._create_order,
            ("POST", "/v1/orders/test"): self._test_order,
            ("GET", "/v1/order"): self._get_order,
            ("DELETE", "/v1/order"): self._cancel_order,
            ("GET", "/v1/orders/open"): self._open_orders,
            ("DELETE", "/v1/orders/open"): self._cancel_open,
            ("GET", "/v1/orders/closed"): self._closed_orders,
            ("GET", "/v1/orders/uuids"): self._orders_by_ids,
            ("GET", "/v1/orders"): self._list_orders,
        }
        private_handler = private.get((method, path))
        if private_handler is None:
            raise _ApiError(404, "not_found", f"no route {method} {path}")
        params = self._authenticate(req)
        scope = ROUTE_SCOPES.get((method, path))
        if scope is not None and scope not in self.key_scopes:
            raise _ApiError(401, "out_of_scope", f"the API key lacks the {scope} permission")
        status, obj = private_handler(params)
        reply = _json_reply(status, obj)
        if (method, path) == ("POST", "/v1/orders"):
            drop = self._take_fault("drop", method, path)
            if drop is not None:
                reply.drop = drop.mode == "close"
                reply.delay = drop.seconds if drop.mode == "delay" else 0.0
        return reply

    # --- quotation ------------------------------------------------------------------------

    def _market(self, params: _Params, name: str = "market") -> str:
        market = params.get(name)
        if not market:
            raise _ApiError(400, "validation_error", f"{name} is required")
        if market not in self._series:
            raise _ApiError(404, 404, "Code not found")
        return market

    def _bars(self, series: _Series, unit: int, end_minute: int, count: int,
              now: float) -> list[_Bar]:
        """Up to ``count`` candles of ``unit`` minutes starting before ``end_minute``
        (exclusive, already capped at the minute in progress), oldest first."""
        current = int(now // 60)
        lo = series.index(series.first_minute)
        hi = series.index(end_minute)
        start = max(lo, hi - count * unit)
        rows = list(zip(*(getattr(series, f)[start:hi].tolist() for f in _SERIES_FIELDS),
                        strict=True))
        bars = [_Bar(m, o, h, low, c, v, q, m * 60_000 + ms)
                for m, o, h, low, c, v, q, ms in rows]
        if series.evolving and bars and bars[-1].minute == current:
            bars[-1] = _in_progress(bars[-1], (now - current * 60) / 60, series.tick)
        if unit == 1:
            return bars
        buckets: dict[int, list[_Bar]] = {}
        for bar in bars:
            buckets.setdefault(bar.minute // unit, []).append(bar)
        merged = [_Bar(b * unit, group[0].open, max(x.high for x in group),
                       min(x.low for x in group), group[-1].close,
                       sum(x.volume for x in group), sum(x.quote for x in group),
                       group[-1].ts_ms) for b, group in buckets.items()]
        return merged[-count:]

    def _candles(self, unit_text: str, params: _Params) -> _Reply:
        try:
            unit = int(unit_text)
        except ValueError:
            unit = 0
        if unit not in CANDLE_UNITS:
            raise _ApiError(400, "validation_error", f"unit must be one of {CANDLE_UNITS}")
        market = self._market(params)
        count_text = params.get("count") or "1"
        try:
            count = int(count_text)
        except ValueError:
            count = 0
        if not 1 <= count <= MAX_COUNT:
            raise _ApiError(400, "validation_error", "count must be 1..200")
        now = self.timestamp()
        current = int(now // 60)
        end_bucket = current // unit + 1
        to_text = params.get("to")
        if to_text:
            try:
                to = _parse_time(to_text)
            except ValueError:
                raise _ApiError(400, "validation_error", f"bad to: {to_text!r}") from None
            micros = (to - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
            end_bucket = min(end_bucket, -(-micros // (60_000_000 * unit)))
        series = self._series[market]
        series.ensure(current)
        bars = self._bars(series, unit, end_bucket * unit, count, now)
        return self._candle_reply(market, unit, bars[::-1])

    def _candle_reply(self, market: str, unit: int, bars: list[_Bar]) -> _Reply:
        starts = np.array([b.minute for b in bars], dtype="datetime64[m]")
        utc = np.datetime_as_string(starts, unit="s").tolist()
        kst = np.datetime_as_string(starts + np.timedelta64(540, "m"), unit="s").tolist()
        items = [
            f'{{"market":"{market}","candle_date_time_utc":"{u}","candle_date_time_kst":"{k}",'
            f'"opening_price":{_num(b.open)},"high_price":{_num(b.high)},'
            f'"low_price":{_num(b.low)},"trade_price":{_num(b.close)},"timestamp":{b.ts_ms},'
            f'"candle_acc_trade_price":{_float_text(b.quote)},'
            f'"candle_acc_trade_volume":{_num(b.volume)},"unit":{unit}}}'
            for b, u, k in zip(bars, utc, kst, strict=True)
        ]
        fault = self._take_fault("malform", "GET", "/v1/candles/")
        if fault is not None:
            return self._malformed(fault.malform, items)
        return _Reply(200, ("[" + ",".join(items) + "]").encode())

    @staticmethod
    def _malformed(kind: str, items: list[str]) -> _Reply:
        if kind == "non_json":
            return _Reply(200, _HTML_ERROR, "text/html; charset=utf-8")
        text = "[" + ",".join(items) + "]"
        if kind == "truncated":
            return _Reply(200, text[: max(1, len(text) // 2)].encode())
        candles = json.loads(text)
        if kind == "not_a_list":
            return _json_reply(200, candles[0] if candles else {"market": None})
        if candles:
            if kind == "missing_field":
                del candles[0]["trade_price"]
            else:  # null_price
                candles[0]["trade_price"] = None
        return _json_reply(200, candles)

    def _market_all(self, params: _Params) -> list[dict[str, Any]]:
        details = (params.get("is_details") or "").lower() == "true"
        out = []
        for market in self._series:
            coin = market.split("-", 1)[-1]
            korean, english = self._names.get(market) or _NAMES.get(coin, (coin, coin))
            item: dict[str, Any] = {"market": market, "korean_name": korean,
                                    "english_name": english}
            if details:
                item["market_event"] = self._market_event(market)
            out.append(item)
        return out

    def _market_event(self, market: str) -> dict[str, Any]:
        event = self._events.get(market)
        if event is None:
            return {"warning": False, "caution": dict.fromkeys(CAUTION_FLAGS, False)}
        return {"warning": event["warning"], "caution": dict(event["caution"])}

    def _markets_param(self, params: _Params) -> list[str]:
        text = params.get("markets")
        if not text:
            raise _ApiError(400, "validation_error", "markets is required")
        markets = [m.strip() for m in text.split(",") if m.strip()]
        if any(m not in self._series for m in markets):
            raise _ApiError(404, 404, "Code not found")
        return markets

    def _last_bar(self, market: str, now: float) -> _Bar | None:
        series = self._series[market]
        current = int(now // 60)
        series.ensure(current)
        bars = self._bars(series, 1, current + 1, 1, now)
        return bars[-1] if bars else None

    def _ticker(self, params: _Params) -> list[dict[str, Any]]:
        now = self.timestamp()
        items = (self._ticker_item(market, now) for market in self._markets_param(params))
        return [item for item in items if item is not None]

    def _ticker_all(self, params: _Params) -> list[dict[str, Any]]:
        text = params.get("quote_currencies")
        if not text:
            raise _ApiError(400, "validation_error", "quote_currencies is required")
        quotes = {q.strip() for q in text.split(",") if q.strip()}
        now = self.timestamp()
        items = (self._ticker_item(market, now) for market in self._series
                 if market.split("-", 1)[0] in quotes)
        return [item for item in items if item is not None]

    def _ticker_item(self, market: str, now: float) -> dict[str, Any] | None:
        bar = self._last_bar(market, now)
        if bar is None:
            return None
        series = self._series[market]
        current = int(now // 60)
        day = int(now // 86_400) * 1440
        a, b = series.index(day), series.index(current + 1)
        day_open = int(series.open[a]) if b > a else bar.open
        day_high = max(int(series.high[a:b].max()) if b > a else bar.high, bar.high)
        day_low = min(int(series.low[a:b].min()) if b > a else bar.low, bar.low)
        prev = series.index(day) - 1
        prev_close = int(series.close[prev]) if prev >= 0 else day_open
        change = bar.close - prev_close
        trade_time = datetime.fromtimestamp(bar.ts_ms / 1000, UTC)
        return {
            "market": market,
            "trade_date": trade_time.strftime("%Y%m%d"),
            "trade_time": trade_time.strftime("%H%M%S"),
            "trade_date_kst": trade_time.astimezone(KST).strftime("%Y%m%d"),
            "trade_time_kst": trade_time.astimezone(KST).strftime("%H%M%S"),
            "trade_timestamp": bar.ts_ms,
            "opening_price": float(_dec(day_open)),
            "high_price": float(_dec(day_high)),
            "low_price": float(_dec(day_low)),
            "trade_price": float(_dec(bar.close)),
            "prev_closing_price": float(_dec(prev_close)),
            "change": "RISE" if change > 0 else "FALL" if change < 0 else "EVEN",
            "change_price": float(_dec(abs(change))),
            "signed_change_price": float(_dec(change)),
            "change_rate": abs(change) / prev_close,
            "signed_change_rate": change / prev_close,
            "trade_volume": float(_dec(bar.volume)),
            "acc_trade_volume": float(_dec(int(series.volume[a:b].sum()))),
            "acc_trade_price": float(series.quote[a:b].sum()),
            **self._last_24h(market, series, current, bar),
            **self._year_extremes(series, current),
            "timestamp": int(now * 1000),
        }

    def _last_24h(self, market: str, series: _Series, current: int,
                  bar: _Bar) -> dict[str, float]:
        """The 1,440 minutes up to the current one, as the day's sums are: or the value
        a test scripted, with the volume that buys it at the last price."""
        scripted = self._traded.get(market)
        if scripted is not None:
            volume = (scripted / _dec(bar.close)).quantize(Decimal("0.00000001"))
            return {"acc_trade_price_24h": float(scripted),
                    "acc_trade_volume_24h": float(volume)}
        a, b = series.index(current - 1439), series.index(current + 1)
        return {"acc_trade_price_24h": float(series.quote[a:b].sum()),
                "acc_trade_volume_24h": float(_dec(int(series.volume[a:b].sum())))}

    @staticmethod
    def _year_extremes(series: _Series, current: int) -> dict[str, Any]:
        """The 52-week high and low over the candles this server has (at least one)."""
        a, b = series.index(current - 365 * 1440 + 1), series.index(current + 1)
        a = min(a, max(b - 1, 0))
        high_at = a + int(np.argmax(series.high[a:b]))
        low_at = a + int(np.argmin(series.low[a:b]))

        def date(i: int) -> str:
            return datetime.fromtimestamp(int(series.minutes[i]) * 60, UTC).strftime("%Y-%m-%d")

        return {"highest_52_week_price": float(_dec(int(series.high[high_at]))),
                "highest_52_week_date": date(high_at),
                "lowest_52_week_price": float(_dec(int(series.low[low_at]))),
                "lowest_52_week_date": date(low_at)}

    def _instruments(self, params: _Params) -> list[dict[str, Any]]:
        now = self.timestamp()
        out = []
        for market in self._markets_param(params):
            bar = self._last_bar(market, now)
            price = _dec(bar.close) if bar else Decimal(1)
            out.append({"market": market, "quote_currency": market.split("-", 1)[0],
                        "tick_size": _text(self._tick_of(market, price)),
                        "supported_levels": ["0"]})
        return out

    # --- authentication ---------------------------------------------------------------------

    def _authenticate(self, req: _Incoming) -> _Params:
        auth = req.headers.get("Authorization") or ""
        if not auth:
            raise _ApiError(401, "no_authorization_token", "Authorization header is missing")
        scheme, _, token = auth.partition(" ")
        if scheme != "Bearer" or not token:
            raise _ApiError(401, "jwt_verification", "Authorization must be 'Bearer <JWT>'")
        payload = self._verify_jwt(token.strip())
        if payload.get("access_key") != self.access_key:
            raise _ApiError(401, "invalid_access_key", "unknown access key")
        nonce = payload.get("nonce")
        if not isinstance(nonce, str) or not nonce:
            raise _ApiError(401, "invalid_query_payload", "nonce is required")
        if nonce in self._nonces:
            raise _ApiError(401, "nonce_used", "nonce was used before")
        self._nonces.add(nonce)
        self._check_key(req.client_ip)
        params = self._signed_params(req, payload)
        self.private_requests.append(PrivateRequest(req.method, req.path, params.pairs,
                                                    payload, time.time()))
        return params

    def _check_key(self, client_ip: str) -> None:
        """What the key itself allows: not expired, and called from an allowed IP."""
        if self.timestamp() >= self._key_expiry:
            raise _ApiError(401, "expired_access_key", "the API key has expired")
        if self.allowed_ips is not None and client_ip not in self.allowed_ips:
            raise _ApiError(401, "no_authorization_i_p",
                            f"{client_ip} is not on the API key's IP allow list")

    def _signed_params(self, req: _Incoming, payload: Mapping[str, Any]) -> _Params:
        """The parameters, once ``query_hash`` proves they are the ones signed."""
        if req.method == "POST" and req.body:
            params = self._body_params(req.headers, req.body)
            hashed = params.hash_string()
        else:
            params = _Params(parse_qsl(req.query, keep_blank_values=True))
            hashed = unquote(req.query)
        if params:
            expected = hashlib.sha512(hashed.encode("utf-8")).hexdigest()
            if payload.get("query_hash_alg", "SHA512") != "SHA512":
                raise _ApiError(401, "invalid_query_payload", "query_hash_alg must be SHA512")
            if not hmac.compare_digest(str(payload.get("query_hash", "")), expected):
                raise _ApiError(401, "invalid_query_payload",
                                "query_hash does not match the parameters")
        return params

    def _verify_jwt(self, token: str) -> dict[str, Any]:
        def decode(part: str) -> bytes:
            return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))

        try:
            head_b64, payload_b64, signature_b64 = token.split(".")
            header = json.loads(decode(head_b64))
            payload = json.loads(decode(payload_b64))
            signature = decode(signature_b64)
        except (ValueError, TypeError):
            raise _ApiError(401, "jwt_verification", "malformed JWT") from None
        digest = {"HS256": hashlib.sha256, "HS512": hashlib.sha512}.get(
            header.get("alg") if isinstance(header, dict) else None)
        if digest is None or not isinstance(payload, dict):
            raise _ApiError(401, "jwt_verification", "JWT must be HS256 or HS512")
        signed = f"{head_b64}.{payload_b64}".encode("ascii")
        expected = hmac.new(self.secret_key.encode("utf-8"), signed, digest).digest()
        if not hmac.compare_digest(signature, expected):
            raise _ApiError(401, "jwt_verification", "JWT signature does not verify")
        return payload

    @staticmethod
    def _body_params(headers: Mapping[str, str], body: bytes) -> _Params:
        content_type = (headers.get("Content-Type") or "").lower()
        text = body.decode("utf-8", errors="replace")
        # Upbit has refused form bodies since 2022-03-01; it then sees none of the
        # parameters it requires, hence validation_error.
        if "form" in content_type or not ("json" in content_type
                                          or text.lstrip().startswith("{")):
            raise _ApiError(400, "validation_error",
                            "POST bodies must be JSON (Content-Type: application/json)")
        try:
            obj = json.loads(text, parse_float=str, parse_int=str)
        except ValueError:
            raise _ApiError(400, "validation_error", "body is not JSON") from None
        if not isinstance(obj, dict):
            raise _ApiError(400, "validation_error", "body must be a JSON object")
        pairs: list[tuple[str, str]] = []
        for key, value in obj.items():
            values = value if isinstance(value, list) else [value]
            name = key if not isinstance(value, list) or key.endswith("[]") else key + "[]"
            for item in values:
                if item is None:
                    continue
                pairs.append((name, "true" if item is True else "false" if item is False
                              else str(item)))
        return _Params(pairs)

    # --- accounts -----------------------------------------------------------------------------

    def _account(self, currency: str) -> AccountBalance:
        return self._accounts.setdefault(currency, AccountBalance())

    def _account_json(self, currency: str) -> dict[str, Any]:
        account = self._accounts.get(currency, AccountBalance())
        return {"currency": currency, "balance": _text(account.balance),
                "locked": _text(account.locked), "avg_buy_price": _text(account.avg_buy_price),
                "avg_buy_price_modified": False, "unit_currency": "KRW"}

    def _accounts_json(self, params: _Params) -> tuple[int, Any]:
        return 200, [self._account_json(c) for c, a in self._accounts.items()
                     if c == "KRW" or a.balance or a.locked]

    def _api_keys(self, params: _Params) -> tuple[int, Any]:
        return 200, [{"access_key": self.access_key, "expire_at": _kst(self._key_expiry)}]

    def _chance(self, params: _Params) -> tuple[int, Any]:
        market = params.get("market")
        if not market or market not in self._series:
            raise _ApiError(404, "market_does_not_exist", "market does not exist")
        quote, coin = market.split("-", 1)
        fees = self._fee_table(market)
        return 200, {
            **{f"{name}_fee": _text(rate) for name, rate in fees.items()},
            "market": {
                "id": market, "name": f"{coin}/{quote}", "order_types": ["limit"],
                "order_sides": ["ask", "bid"], "bid_types": ["limit"], "ask_types": ["limit"],
                "bid": {"currency": quote, "min_total": _text(self._min_total)},
                "ask": {"currency": coin, "min_total": _text(self._min_total)},
                "max_total": _text(MAX_TOTAL_KRW), "state": "active",
            },
            "bid_account": self._account_json(quote),
            "ask_account": self._account_json(coin),
        }

    # --- orders ----------------------------------------------------------------------------------

    def _validate_order(self, params: _Params) -> dict[str, Any]:
        market = params.get("market")
        if not market or market not in self._series:
            raise _ApiError(400, "market_does_not_exist", "market does not exist")
        side = params.get("side")
        if side not in ("bid", "ask"):
            raise _ApiError(400, "validation_error", "side must be bid or ask")
        if params.get("ord_type") != "limit":
            raise _ApiError(400, "validation_error", "this fake supports ord_type=limit only")
        if params.get("time_in_force"):
            raise _ApiError(400, "validation_error", "this fake supports no time_in_force")
        price = self._decimal(params.get("price"), f"invalid_price_{side}")
        if price <= 0 or price % self._tick_of(market, price) != 0:
            raise _ApiError(400, f"invalid_price_{side}", "price is not on the tick")
        volume = self._decimal(params.get("volume"), "invalid_volume")
        if volume <= 0 or volume != volume.quantize(Decimal("0.00000001"), ROUND_FLOOR):
            raise _ApiError(400, "invalid_volume", "volume must be > 0 with at most 8 decimals")
        total = price * volume
        if total < self._min_total:
            raise _ApiError(400, f"under_min_total_{side}",
                            f"order total is under {_text(self._min_total)}")
        if total > MAX_TOTAL_KRW:
            raise _ApiError(400, "volume_too_large", "order total is too large")
        identifier = params.get("identifier") or None
        if identifier is not None and identifier in self._identifiers:
            raise _ApiError(400, ERROR_DUPLICATE_IDENTIFIER, "identifier was used before")
        coin = market.split("-", 1)[1]
        if side == "bid":
            need = total * (1 + self._fee_table(market)["bid"])
            if need > self._account("KRW").balance:
                raise _ApiError(400, "insufficient_funds_bid", "not enough KRW")
        elif volume > self._account(coin).balance:
            raise _ApiError(400, "insufficient_funds_ask", f"not enough {coin}")
        return {"market": market, "side": side, "price": price, "volume": volume,
                "identifier": identifier}

    @staticmethod
    def _decimal(text: str | None, error: str) -> Decimal:
        if text is None or not text.replace(".", "", 1).isdigit():
            raise _ApiError(400, error, f"not a plain decimal number: {text!r}")
        try:
            return Decimal(text)
        except InvalidOperation:
            raise _ApiError(400, error, f"not a number: {text!r}") from None

    def _new_order(self, spec: dict[str, Any], now: float) -> FakeOrder:
        price, volume = spec["price"], spec["volume"]
        fee_rate = self._fee_table(spec["market"])[spec["side"]]
        reserved_fee = price * volume * fee_rate
        locked = price * volume + reserved_fee if spec["side"] == "bid" else volume
        return FakeOrder(uuid=str(uuidlib.uuid4()), market=spec["market"], side=spec["side"],
                         ord_type="limit", price=price, volume=volume,
                         identifier=spec["identifier"], created_ts=now,
                         reserved_fee=reserved_fee, locked_left=locked,
                         parts=self.partial_fills, next_minute=math.ceil(now / 60),
                         fee_rate=fee_rate)

    def _create_order(self, params: _Params) -> tuple[int, Any]:
        spec = self._validate_order(params)
        order = self._new_order(spec, self.timestamp())
        currency = "KRW" if order.side == "bid" else order.market.split("-", 1)[1]
        account = self._account(currency)
        account.balance -= order.locked_left
        account.locked += order.locked_left
        self.orders.append(order)
        self._orders_by_uuid[order.uuid] = order
        if order.identifier is not None:
            self._identifiers.add(order.identifier)
            self._orders_by_identifier[order.identifier] = order
        return 201, order.to_json()

    def _test_order(self, params: _Params) -> tuple[int, Any]:
        return 201, self._new_order(self._validate_order(params), self.timestamp()).to_json()

    def _find(self, params: _Params) -> FakeOrder:
        key_uuid, key_identifier = params.get("uuid"), params.get("identifier")
        if not key_uuid and not key_identifier:
            raise _ApiError(400, "validation_error", "uuid or identifier is required")
        order = (self._orders_by_uuid.get(key_uuid) if key_uuid
                 else self._orders_by_identifier.get(key_identifier or ""))
        if order is None:
            raise _ApiError(404, "order_not_found", "order not found")
        return order

    def _get_order(self, params: _Params) -> tuple[int, Any]:
        return 200, self._find(params).to_json(with_trades=True)

    def _cancel_order(self, params: _Params) -> tuple[int, Any]:
        order = self._find(params)
        if order.state != "wait":
            raise _ApiError(400, ERROR_NOT_CANCELLABLE, f"order is {order.state}")
        self._request_cancel(order, self.timestamp())
        return 200, order.to_json()

    def _request_cancel(self, order: FakeOrder, now: float) -> None:
        """Schedule the cancel ``cancel_delay`` from now (a repeated request keeps the
        first schedule); without a delay it takes effect at once."""
        if order.cancel_at is None:
            order.cancel_at = now + self.cancel_delay
        if now >= order.cancel_at:
            self._end_cancel(order)

    def _end_cancel(self, order: FakeOrder) -> None:
        self._release(order)
        order.state = "cancel"

    def _cancel_open(self, params: _Params) -> tuple[int, Any]:
        side = params.get("cancel_side") or "all"
        if side not in ("all", "bid", "ask"):
            raise _ApiError(400, "validation_error", "cancel_side must be all, bid or ask")
        pairs, excluded = _csv(params.get("pairs")), _csv(params.get("excluded_pairs"))
        quotes = _csv(params.get("quote_currencies"))
        try:
            count = int(params.get("count") or 20)
        except ValueError:
            count = 0
        if not 1 <= count <= 300:
            raise _ApiError(400, "validation_error", "count must be 1..300")
        chosen = [o for o in self.orders
                  if o.state == "wait" and o.cancel_at is None
                  and side in ("all", o.side) and o.market not in excluded
                  and (not pairs or o.market in pairs)
                  and (not quotes or o.market.split("-", 1)[0] in quotes)]
        if (params.get("order_by") or "desc") == "desc":
            chosen.reverse()
        now = self.timestamp()
        for order in chosen[:count]:
            self._request_cancel(order, now)
        done = [{"market": o.market, "uuid": o.uuid, "identifier": o.identifier}
                for o in chosen[:count]]
        return 200, {"success": {"count": len(done), "orders": done},
                     "failed": {"count": 0, "orders": []}}

    def _release(self, order: FakeOrder) -> None:
        currency = "KRW" if order.side == "bid" else order.market.split("-", 1)[1]
        account = self._account(currency)
        account.locked -= order.locked_left
        account.balance += order.locked_left
        order.locked_left = Decimal(0)

    def _select(self, params: _Params, allowed: set[str], default: list[str],
                limit_max: int) -> list[FakeOrder]:
        states = params.getlist("states") or ([params.get("state")] if params.get("state")
                                              else default)
        if any(s not in allowed for s in states):
            raise _ApiError(400, "validation_error", f"states must be among {sorted(allowed)}")
        market = params.get("market")
        found = [o for o in self.orders
                 if o.state in states and (market is None or o.market == market)]
        if (params.get("order_by") or "desc") == "desc":
            found.reverse()
        try:
            page = int(params.get("page") or 1)
            limit = int(params.get("limit") or 100)
        except ValueError:
            raise _ApiError(400, "validation_error", "page and limit are integers") from None
        if page < 1 or not 1 <= limit <= limit_max:
            raise _ApiError(400, "validation_error", f"page >= 1, limit 1..{limit_max}")
        return found[(page - 1) * limit: page * limit]

    def _open_orders(self, params: _Params) -> tuple[int, Any]:
        chosen = self._select(params, {"wait", "watch"}, ["wait", "watch"], 100)
        return 200, [o.to_json() for o in chosen]

    def _closed_orders(self, params: _Params) -> tuple[int, Any]:
        chosen = self._select(params, {"done", "cancel"}, ["done", "cancel"], 1000)
        return 200, [o.to_json() for o in chosen]

    def _list_orders(self, params: _Params) -> tuple[int, Any]:
        if params.getlist("uuids") or params.getlist("identifiers"):
            return self._orders_by_ids(params)
        chosen = self._select(params, {"wait", "watch", "done", "cancel"}, ["wait"], 100)
        return 200, [o.to_json() for o in chosen]

    def _orders_by_ids(self, params: _Params) -> tuple[int, Any]:
        uuids, identifiers = params.getlist("uuids"), params.getlist("identifiers")
        if bool(uuids) == bool(identifiers):
            raise _ApiError(400, "validation_error", "give uuids[] or identifiers[]")
        market = params.get("market")
        found = [o for o in self.orders
                 if (o.uuid in uuids or o.identifier in identifiers)
                 and (market is None or o.market == market)]
        if (params.get("order_by") or "desc") == "desc":
            found.reverse()
        return 200, [o.to_json() for o in found]

    # --- matching ---------------------------------------------------------------------------------

    def _settle(self, now: float) -> None:
        """Fill open orders on the closed candles that started after they were placed,
        then end the cancels due: a candle that closed by the time a cancel took effect
        still fills, whenever this runs."""
        current = int(now // 60)
        for order in self.orders:
            if order.state != "wait":
                continue
            end = current if order.cancel_at is None else min(current,
                                                               int(order.cancel_at // 60))
            self._match(order, end)
            if order.state == "wait" and order.cancel_at is not None and now >= order.cancel_at:
                self._end_cancel(order)

    def _match(self, order: FakeOrder, end: int) -> None:
        """Fill ``order`` on the candles from its ``next_minute`` up to ``end``
        (exclusive)."""
        series = self._series.get(order.market)
        if order.next_minute >= end or series is None:
            return
        series.ensure(end)
        a, b = series.index(order.next_minute), series.index(end)
        price = int(order.price * SCALE)
        crossed = (series.low[a:b] <= price) if order.side == "bid" \
            else (series.high[a:b] >= price)
        for hit in np.flatnonzero(crossed).tolist():
            self._fill(order, int(series.minutes[a + hit]))
            if order.state != "wait":
                break
        order.next_minute = end

    def _fill(self, order: FakeOrder, minute: int) -> None:
        with decimal_context() as ctx:
            ctx.prec = 60
            parts_left = order.parts - len(order.trades)
            volume = order.remaining_volume
            if parts_left > 1:
                part = (order.volume / order.parts).quantize(Decimal("0.00000001"), ROUND_FLOOR)
                volume = min(volume, part) if part > 0 else volume
            funds = order.price * volume
            fee = funds * order.fee_rate
            coin_currency = order.market.split("-", 1)[1]
            krw, coin = self._account("KRW"), self._account(coin_currency)
            if order.side == "bid":
                krw.locked -= funds + fee
                order.locked_left -= funds + fee
                held = coin.balance + coin.locked
                coin.avg_buy_price = ((held * coin.avg_buy_price + volume * order.price)
                                      / (held + volume)).quantize(Decimal("0.00000001"))
                coin.balance += volume
            else:
                coin.locked -= volume
                order.locked_left -= volume
                krw.balance += funds - fee
            order.executed_volume += volume
            order.paid_fee += fee
            order.trades.append(FakeTrade(order.market, str(uuidlib.uuid4()), order.price,
                                          volume, funds, fee, order.side, minute * 60 + 30,
                                          minute))
            if order.remaining_volume == 0:
                self._release(order)  # whatever rounding left locked goes back
                order.state = "done"


# --- HTTP plumbing --------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], fake: FakeUpbit):
        self.fake = fake
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, connection: socket.socket, alive: bool) -> None:
        with self._connections_lock:
            if alive:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else headers and body wait 40 ms on delayed ACKs
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read ``FakeUpbit.requests`` instead."""

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def _handle(self, method: str) -> None:
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        reply = fake.serve(method, self.path, self.headers, body, str(self.client_address[0]))
        if reply.delay:
            fake._stopping.wait(reply.delay)
        if reply.drop or fake._stopping.is_set():
            self.close_connection = True
            return
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        self.send_header("Remaining-Req", reply.remaining)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(reply.body)


# --- a clock for tests ----------------------------------------------------------------


class ManualClock:
    """A clock a test moves by hand: pass it as ``clock=`` (it is callable)."""

    def __init__(self, start: datetime | str) -> None:
        self._now = _to_datetime(start).astimezone(UTC)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, moment: datetime | str) -> None:
        with self._lock:
            self._now = _to_datetime(moment).astimezone(UTC)

    def advance(self, seconds: float = 0.0, *, minutes: float = 0.0) -> datetime:
        with self._lock:
            self._now += timedelta(seconds=seconds, minutes=minutes)
            return self._now


# --- command line ---------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testkit.fakeupbit",
                                     description="Serve a fake Upbit REST API until killed.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = a free port")
    parser.add_argument("--speedup", type=float, default=1.0)
    parser.add_argument("--epoch", type=float, default=0.0)
    parser.add_argument("--markets", nargs="+", default=["KRW-BTC"],
                        help="markets, space- or comma-separated")
    parser.add_argument("--rate-limit", type=int, default=None,
                        help="quotation requests per second per group (default: unlimited)")
    parser.add_argument("--history-minutes", type=int, default=10_080)
    parser.add_argument("--gap-probability", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--start-price", default="50000000")
    parser.add_argument("--krw", default="1000000")
    parser.add_argument("--fee-rate", default="0.0005")
    parser.add_argument("--partial-fills", type=int, default=1)
    parser.add_argument("--access-key", default="test-access")
    parser.add_argument("--secret-key", default="test-secret")
    args = parser.parse_args(argv)
    markets = [m for item in args.markets for m in item.split(",") if m]
    fake = FakeUpbit(markets=markets, start_price=args.start_price, seed=args.seed,
                     history_minutes=args.history_minutes, gap_probability=args.gap_probability,
                     speedup=args.speedup, epoch=args.epoch, rate_limit_per_sec=args.rate_limit,
                     access_key=args.access_key, secret_key=args.secret_key, krw=args.krw,
                     fee_rate=args.fee_rate, partial_fills=args.partial_fills,
                     host=args.host, port=args.port)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    fake.start()
    print(fake.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
