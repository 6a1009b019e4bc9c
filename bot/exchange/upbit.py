"""The Upbit REST client: one method per endpoint the bot uses.

Built on :class:`bot.exchange.transport.Transport` (signing, retries, bans,
pacing, error answers) and :mod:`bot.exchange.parsing` (answers into
:mod:`bot.models` values with exact ``Decimal`` numbers; the dicts it returns
as they are keep them exact too). A body out of shape raises
``MalformedResponse``. It decides nothing about trading.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import requests

from bot.errors import ExchangeTemporaryError, MalformedResponse, OrderSubmitUnknown
from bot.exchange.parsing import (
    format_to,
    parse_api_key,
    parse_balance,
    parse_candle_page,
    parse_market_info,
    parse_order,
    parse_order_chance,
    parse_tick_sizes,
    parse_ticker,
)
from bot.exchange.transport import Params, QueryValue, RequestCounter, Transport
from bot.models import (
    CANDLE_UNITS,
    ApiKey,
    Balance,
    Candle,
    MarketInfo,
    Order,
    OrderChance,
    Side,
    Ticker,
)
from bot.money import fmt

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.exchange.bans import BanBoard

OPEN_ORDERS_PAGE = 100
_MAX_PAGES = 100

T = TypeVar("T")


class UpbitClient:
    """Upbit's REST API: quotation (public) and exchange (private) endpoints."""

    def __init__(self, base_url: str = "https://api.upbit.com", access_key: str = "",
                 secret_key: str = "", *, timeout: float = 10.0, connect_timeout: float = 3.05,
                 max_retries: int = 4, backoff_base: float = 0.5, backoff_cap: float = 8.0,
                 sleep: Callable[[float], None] = time.sleep,
                 monotonic: Callable[[], float] = time.monotonic,
                 session: requests.Session | None = None, bans: BanBoard | None = None,
                 counts: RequestCounter | None = None):
        self._transport = Transport(
            base_url, access_key, secret_key, timeout=timeout, connect_timeout=connect_timeout,
            max_retries=max_retries, backoff_base=backoff_base, backoff_cap=backoff_cap,
            sleep=sleep, monotonic=monotonic, session=session, bans=bans, counts=counts)
        self._has_secret = bool(secret_key)

    @property
    def base_url(self) -> str:
        return self._transport.base_url

    @property
    def max_retries(self) -> int:
        return self._transport.max_retries

    @classmethod
    def from_settings(cls, settings: Settings, *, quick: bool = False,
                      bans: BanBoard | None = None,
                      counts: RequestCounter | None = None) -> UpbitClient:
        """The client the settings describe; ``quick`` gives up within seconds
        (a status screen must not hang on Upbit). ``bans``: the board a ban is
        shared on (:class:`bot.exchange.bans.RedisBans` for the installation);
        without one, this client alone remembers its bans. ``counts``: where its
        requests are counted (:class:`bot.exchange.transport.RedisCounts` for the
        metrics exporter; none without one)."""
        if quick:
            return cls(settings.upbit_api_base, settings.upbit_access_key,
                       settings.upbit_secret_key, timeout=5.0, max_retries=1,
                       backoff_base=0.2, backoff_cap=1.0, bans=bans, counts=counts)
        return cls(settings.upbit_api_base, settings.upbit_access_key,
                   settings.upbit_secret_key, timeout=float(settings.upbit_timeout_seconds),
                   bans=bans, counts=counts)

    def __repr__(self) -> str:
        return f"UpbitClient({self.base_url!r}, keys={'yes' if self._has_secret else 'no'})"

    def close(self) -> None:
        self._transport.close()

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
        params: dict[str, QueryValue] = {"market": market, "count": count}
        if to is not None:
            params["to"] = format_to(to)
        try:
            body = self._transport.request("GET", path, params)
            return self._parse("GET", path, lambda: parse_candle_page(body, market, unit))
        except MalformedResponse as exc:
            if market in exc.error_message:
                raise
            raise MalformedResponse(f"candles {market}: {exc.error_message}", name=exc.name,
                                    status=exc.status, method="GET", path=path) from None

    def markets(self, details: bool = True) -> list[MarketInfo]:
        """Every market Upbit lists; with ``details``, each one's investment
        warning and caution flags (without, none are reported)."""
        path = "/v1/market/all"
        items = self._objects("GET", path, {"is_details": "true" if details else None})
        return self._parse("GET", path, lambda: [parse_market_info(item) for item in items])

    def tickers_all(self, quote: str = "KRW") -> list[Ticker]:
        """The ticker of every market quoted in ``quote`` (``KRW``, or ``KRW,BTC``)."""
        path = "/v1/ticker/all"
        items = self._objects("GET", path, {"quote_currencies": quote})
        return self._parse("GET", path, lambda: [parse_ticker(item) for item in items])

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

    def order_chance(self, market: str) -> OrderChance:
        """The account's fees and minimum order value for ``market``."""
        path = "/v1/orders/chance"
        body = self._transport.request("GET", path, {"market": market}, private=True)
        if not isinstance(body, dict):
            self._malformed("GET", path, f"body is {type(body).__name__}, not an object")
        return self._parse("GET", path, lambda: parse_order_chance(body))

    def api_keys(self) -> list[ApiKey]:
        """The account's API keys and when each expires."""
        path = "/v1/api_keys"
        items = self._list("GET", path, None, private=True)
        return self._parse("GET", path, lambda: [parse_api_key(item) for item in items])

    def place_limit_order(self, market: str, side: str, price: Decimal, volume: Decimal,
                          identifier: str) -> Order:
        """Place a limit order. Never retried: an answer that did not arrive
        raises :class:`OrderSubmitUnknown`; look the identifier up."""
        if not identifier:
            raise ValueError("an order needs an identifier")
        path = "/v1/orders"
        params = _limit_order(market, side, price, volume, identifier)
        body = self._transport.request("POST", path, params, private=True)
        try:
            return self._parse("POST", path, lambda: parse_order(body))
        except MalformedResponse as exc:
            # A 2xx answer means the order exists; we just cannot read it.
            raise OrderSubmitUnknown(f"order {identifier} placed but answer unreadable: "
                                     f"{exc.error_message}", status=exc.status, method="POST",
                                     path=path) from None

    def test_order(self, market: str, side: Side, price: Decimal, volume: Decimal,
                   identifier: str | None = None) -> Order:
        """Have Upbit check a limit order as :meth:`place_limit_order` would
        send it, without placing it (``POST /v1/orders/test``): the live
        preflight. Sent once, like an order. Upbit's refusal raises what it
        means, with Upbit's error ``name`` (``out_of_scope``: the key may not
        place orders; ``no_authorization_i_p``: this IP is not on the key's list)."""
        path = "/v1/orders/test"
        params = _limit_order(market, side, price, volume, identifier)
        try:
            body = self._transport.request("POST", path, params, private=True)
        except OrderSubmitUnknown as exc:
            # A test order places nothing, so a lost answer is merely temporary.
            raise ExchangeTemporaryError(exc.error_message, name=exc.name, status=exc.status,
                                         method="POST", path=path) from None
        return self._parse("POST", path, lambda: parse_order(body))

    def get_order(self, *, uuid: str | None = None, identifier: str | None = None) -> Order:
        """One order with its trades; :class:`OrderNotFound` if there is none."""
        path = "/v1/order"
        body = self._transport.request("GET", path, _one_id(uuid, identifier), private=True)
        return self._parse("GET", path, lambda: parse_order(body))

    def cancel_order(self, *, uuid: str | None = None, identifier: str | None = None) -> Order:
        """Ask Upbit to cancel; the order as Upbit answered, normally still
        ``wait``: it can fill until Upbit reports ``cancel`` or ``done``."""
        path = "/v1/order"
        body = self._transport.request("DELETE", path, _one_id(uuid, identifier), private=True)
        return self._parse("DELETE", path, lambda: parse_order(body))

    def open_orders(self, market: str | None = None) -> list[Order]:
        """Every open (``wait`` or ``watch``) order, over as many pages as it takes."""
        path = "/v1/orders/open"
        orders: list[Order] = []
        for page in range(1, _MAX_PAGES + 1):
            params: Params = {"market": market, "states[]": ["wait", "watch"], "page": page,
                              "limit": OPEN_ORDERS_PAGE, "order_by": "desc"}
            items = self._list("GET", path, params, private=True)
            for item in items:
                orders.append(self._parse("GET", path, partial(parse_order, item)))
            if len(items) < OPEN_ORDERS_PAGE:
                break
        # A list that changes between pages can repeat an order at a page edge.
        return list({order.uuid: order for order in orders}.values())

    # --- reading answers -------------------------------------------------

    def _list(self, method: str, path: str, params: Params | None, *,
              private: bool = False) -> list[Any]:
        body = self._transport.request(method, path, params, private=private)
        if not isinstance(body, list):
            self._malformed(method, path, f"body is {type(body).__name__}, not a list")
        return body

    def _objects(self, method: str, path: str, params: Params | None) -> list[dict]:
        items = self._list(method, path, params)
        if not all(isinstance(item, dict) for item in items):
            self._malformed(method, path, "an item is not an object")
        return items

    def _parse(self, method: str, path: str, parse: Callable[[], T]) -> T:
        try:
            return parse()
        except ValueError as exc:
            self._malformed(method, path, str(exc))

    def _malformed(self, method: str, path: str, message: str) -> NoReturn:
        raise MalformedResponse(self._transport.scrub(message), name="malformed_response",
                                status=200, method=method, path=path)


def _limit_order(market: str, side: str, price: Decimal, volume: Decimal,
                 identifier: str | None) -> dict[str, str | None]:
    """A limit order's parameters, in the order they are signed and sent."""
    if side not in ("bid", "ask"):
        raise ValueError(f"side must be bid or ask, got {side!r}")
    if price <= 0 or volume <= 0:
        raise ValueError(f"price and volume must be positive, got {price} and {volume}")
    return {"market": market, "side": side, "volume": fmt(volume), "price": fmt(price),
            "ord_type": "limit", "identifier": identifier}


def _one_id(uuid: str | None, identifier: str | None) -> dict[str, str]:
    if (uuid is None) == (identifier is None):
        raise ValueError("give exactly one of uuid or identifier")
    return {"uuid": uuid} if uuid is not None else {"identifier": identifier}  # type: ignore[dict-item]
