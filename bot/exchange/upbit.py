"""The Upbit REST client.

Owns the HTTP conversation with Upbit: one ``requests.Session`` with
timeouts, JWT authentication, retries with capped, jittered backoff (never for
order placement), memory of a 418 ban, the mapping of Upbit's error answers onto
:mod:`bot.errors` (a table), and parsing answers into :mod:`bot.models` values
with exact ``Decimal`` numbers (every JSON number is parsed as ``Decimal``, in
the dicts returned as they are too). Request pacing is :mod:`bot.exchange.ratelimit`'s.

It decides nothing about trading and must never put a secret (secret key, JWT,
``Authorization`` header) in an exception or a log line.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
import time
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import unquote, urlencode

import jwt
import requests

from bot.errors import (
    AuthError,
    Banned,
    ExchangeError,
    ExchangeTemporaryError,
    InsufficientFunds,
    InvalidOrder,
    MalformedResponse,
    NotFound,
    OrderNotFound,
    OrderSubmitUnknown,
    RateLimited,
)
from bot.exchange.ratelimit import RateLimiter, route_group
from bot.logs import event, redact, register_secret
from bot.models import CANDLE_UNITS, Balance, Candle, Fill, Order
from bot.money import fmt

if TYPE_CHECKING:
    from bot.config import Settings

log = logging.getLogger(__name__)

# Upbit issues 40-byte secret keys and documents HS512 with them; PyJWT's
# advice (and warning, since 2.10) to use 64 bytes is not ours to follow.
_KEY_LENGTH_WARNING: type[Warning] = getattr(jwt, "InsecureKeyLengthWarning", UserWarning)

# Upbit's error ``name`` -> exception class; looked up before the status table.
ERRORS_BY_NAME: dict[str, type[ExchangeError]] = {
    "insufficient_funds_bid": InsufficientFunds,
    "insufficient_funds_ask": InsufficientFunds,
    "under_min_total_bid": InvalidOrder,
    "under_min_total_ask": InvalidOrder,
    "invalid_price_bid": InvalidOrder,
    "invalid_price_ask": InvalidOrder,
    "invalid_volume": InvalidOrder,
    "invalid_volume_bid": InvalidOrder,
    "invalid_volume_ask": InvalidOrder,
    "invalid_funds_bid": InvalidOrder,
    "volume_too_large": InvalidOrder,
    "validation_error": InvalidOrder,
    "create_bid_error": InvalidOrder,
    "create_ask_error": InvalidOrder,
    "market_does_not_exist": InvalidOrder,
    # Upbit does not document the name for a reused identifier; this is the
    # local fake server's. Either way the order may exist: callers look it up.
    "duplicate_identifier": InvalidOrder,
    "order_not_found": OrderNotFound,
    # Quotation endpoints answer an unknown market with {"name": 404, "message":
    # "Code not found"}: not an order.
    "404": NotFound,
    "jwt_verification": AuthError,
    "expired_access_key": AuthError,
    "nonce_used": AuthError,
    "no_authorization_token": AuthError,
    "no_authorization_i_p": AuthError,
    "invalid_access_key": AuthError,
    "invalid_query_payload": AuthError,
    "out_of_scope": AuthError,
}
# HTTP status -> exception class, when the name is unknown or absent.
ERRORS_BY_STATUS: dict[int, type[ExchangeError]] = {
    401: AuthError,
    403: AuthError,
    404: NotFound,
    418: Banned,
    429: RateLimited,
}
DEFAULT_BAN_SECONDS = 60.0
OPEN_ORDERS_PAGE = 100
_MAX_PAGES = 100
# Values go into the query unquoted (as Upbit hashes them), so only characters
# that need no quoting are allowed.
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9_.~:,\-]*$")


NOT_JSON = object()


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a number Upbit sends")


def _loads(content: bytes) -> Any:
    """JSON with every number exact, or NOT_JSON (an HTML error page, say)."""
    try:
        return json.loads(content, parse_float=Decimal, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError):
        return NOT_JSON


def build_query(params: Mapping[str, Any] | None) -> tuple[list[tuple[str, str]], str]:
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


def _field(item: Any, key: str, what: str) -> Any:
    if not isinstance(item, dict):
        raise ValueError(f"{what}: item is {type(item).__name__}, not an object")
    if key not in item:
        raise ValueError(f"{what}: field {key!r} missing")
    return item[key]


def _number(item: Any, key: str, what: str, *, positive: bool = False) -> Decimal:
    raw = _field(item, key, what)
    if raw is None:
        raise ValueError(f"{what}: field {key!r} is null")
    try:
        if isinstance(raw, bool):
            raise InvalidOperation
        value = raw if isinstance(raw, Decimal) else Decimal(str(raw))
    except (InvalidOperation, ValueError):
        raise ValueError(f"{what}: field {key!r} is not a number: {raw!r}") from None
    if not value.is_finite() or value < 0 or (positive and value == 0):
        raise ValueError(f"{what}: field {key!r} out of range: {raw!r}")
    return value


def _optional_number(item: Any, key: str, what: str) -> Decimal | None:
    """A number that Upbit sends as null where it does not apply (a market
    order's price, say); the key itself must be there."""
    return None if _field(item, key, what) is None else _number(item, key, what)


def _text(item: Any, key: str, what: str) -> str:
    raw = _field(item, key, what)
    if not isinstance(raw, str) or not raw:
        raise ValueError(f"{what}: field {key!r} is not a non-empty string: {raw!r}")
    return raw


def _time(item: Any, key: str, what: str, *, naive_is_utc: bool = False) -> datetime:
    raw = _text(item, key, what)
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{what}: field {key!r} is not a time: {raw!r}") from None
    if value.tzinfo is None:
        if not naive_is_utc:
            raise ValueError(f"{what}: field {key!r} has no UTC offset: {raw!r}")
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _side(item: Any, what: str) -> Any:
    side = _text(item, "side", what)
    if side not in ("bid", "ask"):
        raise ValueError(f"{what}: field 'side' is {side!r}, not bid or ask")
    return side


def parse_candle(item: Any, market: str, unit: int, index: int = 0) -> Candle:
    what = f"candle {market} #{index}"
    if _text(item, "market", what) != market:
        raise ValueError(f"{what}: field 'market' is {item['market']!r}")
    low = _number(item, "low_price", what, positive=True)
    high = _number(item, "high_price", what, positive=True)
    if low > high:
        raise ValueError(f"{what}: field 'low_price' {low} above high_price {high}")
    return Candle(
        market=market,
        ts=_time(item, "candle_date_time_utc", what, naive_is_utc=True),
        open=_number(item, "opening_price", what, positive=True),
        high=high,
        low=low,
        close=_number(item, "trade_price", what, positive=True),
        volume=_number(item, "candle_acc_trade_volume", what),
        quote_volume=_number(item, "candle_acc_trade_price", what),
        unit=unit,
        meta={"kst": _text(item, "candle_date_time_kst", what),
              "trade_timestamp": _field(item, "timestamp", what)},
    )


def parse_fill(item: Any, what: str = "trade") -> Fill:
    return Fill(
        uuid=_text(item, "uuid", what),
        market=_text(item, "market", what),
        side=_side(item, what),
        price=_number(item, "price", what, positive=True),
        volume=_number(item, "volume", what),
        funds=_number(item, "funds", what),
        created_at=_time(item, "created_at", what),
    )


def parse_order(item: Any) -> Order:
    if not isinstance(item, dict):
        raise ValueError(f"order: body is {type(item).__name__}, not an object")
    what = f"order {item['uuid']}" if isinstance(item.get("uuid"), str) else "order"
    trades = item.get("trades", [])
    if not isinstance(trades, list):
        raise ValueError(f"{what}: field 'trades' is not a list")
    identifier = item.get("identifier")
    remaining = _optional_number(item, "remaining_volume", what)
    return Order(
        uuid=_text(item, "uuid", what),
        market=_text(item, "market", what),
        side=_side(item, what),
        ord_type=_text(item, "ord_type", what),
        state=_text(item, "state", what),
        price=_optional_number(item, "price", what),
        volume=_optional_number(item, "volume", what),
        # Null for orders by amount (ord_type "price"), which have no volume to remain.
        remaining_volume=remaining if remaining is not None else Decimal(0),
        executed_volume=_number(item, "executed_volume", what),
        paid_fee=_number(item, "paid_fee", what),
        created_at=_time(item, "created_at", what),
        identifier=str(identifier) if identifier is not None else None,
        fills=tuple(parse_fill(t, f"{what} trade #{i}") for i, t in enumerate(trades)),
    )


def parse_tick_sizes(items: list[Any]) -> dict[str, Decimal]:
    ticks: dict[str, Decimal] = {}
    for item in items:
        market = _text(item, "market", "instrument")
        ticks[market] = _number(item, "tick_size", f"instrument {market}", positive=True)
    return ticks


def parse_balance(item: Any) -> Balance:
    what = "account"
    return Balance(
        currency=_text(item, "currency", what),
        balance=_number(item, "balance", what),
        locked=_number(item, "locked", what),
        avg_buy_price=_optional_number(item, "avg_buy_price", what) or Decimal(0),
    )


def format_to(moment: datetime) -> str:
    """A candle page's exclusive end, as Upbit reads it: ``YYYY-MM-DDTHH:MM:SSZ``."""
    if moment.tzinfo is None:
        raise ValueError("to= must be a timezone-aware datetime")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _retry_after(response: requests.Response) -> float | None:
    try:
        value = float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None
    return value if value >= 0 else None


class UpbitClient:
    """Upbit's REST API: quotation (public) and exchange (private) endpoints."""

    def __init__(self, base_url: str = "https://api.upbit.com", access_key: str = "",
                 secret_key: str = "", *, timeout: float = 10.0, connect_timeout: float = 3.05,
                 max_retries: int = 4, backoff_base: float = 0.5, backoff_cap: float = 8.0,
                 sleep: Callable[[float], None] = time.sleep,
                 monotonic: Callable[[], float] = time.monotonic,
                 session: requests.Session | None = None):
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
        self._session = session or requests.Session()
        self._limiter = RateLimiter(sleep=sleep, monotonic=monotonic)
        self._banned_until = 0.0
        self._random = random.Random()
        register_secret(access_key, secret_key)

    @classmethod
    def from_settings(cls, settings: Settings, *, quick: bool = False) -> UpbitClient:
        """The client the settings describe; ``quick`` gives up within seconds
        (a status screen must not hang on Upbit)."""
        if quick:
            return cls(settings.upbit_api_base, settings.upbit_access_key,
                       settings.upbit_secret_key, timeout=5.0, max_retries=1,
                       backoff_base=0.2, backoff_cap=1.0)
        return cls(settings.upbit_api_base, settings.upbit_access_key,
                   settings.upbit_secret_key, timeout=float(settings.upbit_timeout_seconds))

    def __repr__(self) -> str:
        return f"UpbitClient({self.base_url!r}, keys={'yes' if self._secret_key else 'no'})"

    def close(self) -> None:
        if self._owns_session:
            self._session.close()

    def __enter__(self) -> UpbitClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- quotation -------------------------------------------------------

    def candles(self, market: str, *, unit: int = 1, count: int = 200,
                to: datetime | None = None) -> list[Candle]:
        """Minute candles ending before ``to`` (exclusive), newest first as Upbit
        sends them. Any bad item fails the whole page."""
        if unit not in CANDLE_UNITS:
            raise ValueError(f"unit must be one of {CANDLE_UNITS}, got {unit}")
        if not 1 <= count <= 200:
            raise ValueError(f"count must be 1..200, got {count}")
        path = f"/v1/candles/minutes/{unit}"
        params: dict[str, Any] = {"market": market, "count": count}
        if to is not None:
            params["to"] = format_to(to)
        try:
            body = self._request("GET", path, params)
            return self._parse("GET", path, lambda: self._candle_page(body, market, unit))
        except MalformedResponse as exc:
            if market in exc.error_message:
                raise
            raise MalformedResponse(f"candles {market}: {exc.error_message}", name=exc.name,
                                    status=exc.status, method="GET", path=path) from None

    @staticmethod
    def _candle_page(body: Any, market: str, unit: int) -> list[Candle]:
        if not isinstance(body, list):
            raise ValueError(f"candles {market}: body is {type(body).__name__}, not a list")
        return [parse_candle(item, market, unit, i) for i, item in enumerate(body)]

    def markets(self) -> list[dict]:
        return self._objects("GET", "/v1/market/all", None)

    def ticker(self, markets: Sequence[str]) -> list[dict]:
        return self._objects("GET", "/v1/ticker", {"markets": ",".join(markets)})

    def tick_sizes(self, markets: Sequence[str]) -> dict[str, Decimal]:
        """Each market's price tick from ``/v1/orderbook/instruments``."""
        path = "/v1/orderbook/instruments"
        items = self._list("GET", path, {"markets": ",".join(markets)})
        return self._parse("GET", path, lambda: parse_tick_sizes(items))

    # --- exchange (private) ----------------------------------------------

    def balances(self) -> list[Balance]:
        path = "/v1/accounts"
        items = self._list("GET", path, None, private=True)
        return self._parse("GET", path, lambda: [parse_balance(item) for item in items])

    def order_chance(self, market: str) -> dict:
        path = "/v1/orders/chance"
        body = self._request("GET", path, {"market": market}, private=True)
        if not isinstance(body, dict):
            self._malformed("GET", path, f"body is {type(body).__name__}, not an object")
        return body

    def place_limit_order(self, market: str, side: str, price: Decimal, volume: Decimal,
                          identifier: str) -> Order:
        """Place a limit order. Never retried: an answer that did not arrive
        raises :class:`OrderSubmitUnknown`; look the identifier up."""
        if side not in ("bid", "ask"):
            raise ValueError(f"side must be bid or ask, got {side!r}")
        if price <= 0 or volume <= 0:
            raise ValueError(f"price and volume must be positive, got {price} and {volume}")
        if not identifier:
            raise ValueError("an order needs an identifier")
        path = "/v1/orders"
        params = {"market": market, "side": side, "volume": fmt(volume), "price": fmt(price),
                  "ord_type": "limit", "identifier": identifier}
        body = self._request("POST", path, params, private=True)
        try:
            return self._parse("POST", path, lambda: parse_order(body))
        except MalformedResponse as exc:
            # A 2xx answer means the order exists; we just cannot read it.
            raise OrderSubmitUnknown(f"order {identifier} placed but answer unreadable: "
                                     f"{exc.error_message}", status=exc.status, method="POST",
                                     path=path) from None

    def get_order(self, *, uuid: str | None = None, identifier: str | None = None) -> Order:
        """One order with its trades; :class:`OrderNotFound` if there is none."""
        path = "/v1/order"
        body = self._request("GET", path, _one_id(uuid, identifier), private=True)
        return self._parse("GET", path, lambda: parse_order(body))

    def cancel_order(self, *, uuid: str | None = None, identifier: str | None = None) -> Order:
        path = "/v1/order"
        body = self._request("DELETE", path, _one_id(uuid, identifier), private=True)
        return self._parse("DELETE", path, lambda: parse_order(body))

    def open_orders(self, market: str | None = None) -> list[Order]:
        """Every open (``wait`` or ``watch``) order, over as many pages as it takes."""
        path = "/v1/orders/open"
        orders: list[Order] = []
        for page in range(1, _MAX_PAGES + 1):
            params = {"market": market, "states[]": ["wait", "watch"], "page": page,
                      "limit": OPEN_ORDERS_PAGE, "order_by": "desc"}
            items = self._list("GET", path, params, private=True)
            for item in items:
                orders.append(self._parse("GET", path, lambda x=item: parse_order(x)))
            if len(items) < OPEN_ORDERS_PAGE:
                break
        # A list that changes between pages can repeat an order at a page edge.
        return list({order.uuid: order for order in orders}.values())

    # --- transport -------------------------------------------------------

    def _list(self, method: str, path: str, params: Mapping[str, Any] | None, *,
              private: bool = False) -> list[Any]:
        body = self._request(method, path, params, private=private)
        if not isinstance(body, list):
            self._malformed(method, path, f"body is {type(body).__name__}, not a list")
        return body

    def _objects(self, method: str, path: str, params: Mapping[str, Any] | None) -> list[dict]:
        items = self._list(method, path, params)
        if not all(isinstance(item, dict) for item in items):
            self._malformed(method, path, "an item is not an object")
        return items

    def _parse(self, method: str, path: str, parse: Callable[[], Any]) -> Any:
        try:
            return parse()
        except ValueError as exc:
            self._malformed(method, path, str(exc))

    def _malformed(self, method: str, path: str, message: str) -> NoReturn:
        raise MalformedResponse(self._scrub(message), name="malformed_response", status=200,
                                method=method, path=path)

    def _scrub(self, text: str) -> str:
        for secret in (self._secret_key, self._access_key):
            if secret:
                text = text.replace(secret, "***")
        return redact(text)

    def _token(self, query: str) -> str:
        payload = {"access_key": self._access_key, "nonce": str(uuid.uuid4())}
        if query:
            payload["query_hash"] = hashlib.sha512(query.encode("utf-8")).hexdigest()
            payload["query_hash_alg"] = "SHA512"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", _KEY_LENGTH_WARNING)
            return jwt.encode(payload, self._secret_key, algorithm="HS512")

    def _backoff(self, attempt: int) -> float:
        delay = min(self._backoff_cap, self._backoff_base * 2 ** attempt)
        # Equal jitter: never zero, never more than the capped delay.
        return delay / 2 + self._random.uniform(0, delay / 2)

    def _request(self, method: str, path: str, params: Mapping[str, Any] | None = None, *,
                 private: bool = False) -> Any:
        """Send (and, unless it places an order, retry) one call; the parsed JSON body."""
        if private and not (self._access_key and self._secret_key):
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
        now = self._monotonic()
        if now < self._banned_until:
            raise Banned("banned by Upbit; nothing is sent until the ban ends", name="banned",
                         status=418, method=method, path=path,
                         retry_after=self._banned_until - now)
        slot = self._limiter.acquire(route)
        if private:
            headers = {**headers, "Authorization": "Bearer " + self._token(query)}
        try:
            response = self._session.request(method, url, data=data, headers=headers,
                                             timeout=self._timeouts, allow_redirects=False)
        except requests.RequestException as exc:
            self._limiter.done(slot)
            raise self._network_error(exc, method, path) from None
        self._limiter.done(slot)
        self._limiter.observe(route, response.headers.get("Remaining-Req"))
        body = _loads(response.content)
        if 200 <= response.status_code < 300 and body is not NOT_JSON:
            return body
        error = self._error(response, body, method, path, attempt)
        if isinstance(error, RateLimited):
            self._limiter.block(route, error.retry_after)
        raise error

    def _network_error(self, exc: requests.RequestException, method: str,
                       path: str) -> ExchangeError:
        detail = self._scrub(f"{type(exc).__name__}: {exc}")
        # A connect timeout means nothing left this machine; any other failure
        # after the order went out leaves its fate unknown.
        if method == "POST" and not isinstance(exc, requests.ConnectTimeout):
            return OrderSubmitUnknown(f"no answer to the order: {detail}", name="no_answer",
                                      method=method, path=path)
        return ExchangeTemporaryError(detail, name="no_answer", method=method, path=path)

    def _error(self, response: requests.Response, body: Any, method: str, path: str,
               attempt: int) -> ExchangeError:
        status = response.status_code
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            name, message = str(error.get("name") or ""), str(error.get("message") or "")
            cls = ERRORS_BY_NAME.get(name) or ERRORS_BY_STATUS.get(status) or (
                ExchangeTemporaryError if status >= 500 else ExchangeError)
        else:
            # Not Upbit's error shape (an HTML page from a proxy, a 2xx that is
            # not JSON): only 418 and 429 mean something without a body.
            name = ""
            message = (f"HTTP {status} answer is not Upbit's JSON "
                       f"({response.headers.get('Content-Type', 'no content type')})")
            garbled = MalformedResponse if 200 <= status < 300 else ExchangeTemporaryError
            cls = {418: Banned, 429: RateLimited}.get(status, garbled)
        if method == "POST" and cls in (ExchangeTemporaryError, MalformedResponse):
            # A 5xx or garbled answer says nothing about whether the order landed.
            cls = OrderSubmitUnknown
        kwargs: dict[str, Any] = {"name": name, "status": status, "method": method, "path": path}
        if cls is Banned:
            kwargs["retry_after"] = _retry_after(response) or DEFAULT_BAN_SECONDS
            self._banned_until = self._monotonic() + kwargs["retry_after"]
            event(log, "upbit.banned", level=logging.WARNING, method=method, path=path,
                  status=status, error=name or None, retry_after=kwargs["retry_after"])
        elif cls is RateLimited:
            retry_after = _retry_after(response)
            kwargs["retry_after"] = (retry_after if retry_after is not None
                                     else self._backoff(attempt))
        return cls(self._scrub(message), **kwargs)


def _one_id(uuid: str | None, identifier: str | None) -> dict[str, str]:
    if (uuid is None) == (identifier is None):
        raise ValueError("give exactly one of uuid or identifier")
    return {"uuid": uuid} if uuid is not None else {"identifier": identifier}  # type: ignore[dict-item]
