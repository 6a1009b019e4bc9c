"""Upbit's JSON read into :mod:`bot.models` values, and the one time format
Upbit reads back.

Pure: no HTTP, no settings, no logging. Every JSON number is parsed as an exact
``Decimal``; anything out of shape raises ``ValueError`` with a message naming
the item and field, which the client turns into ``MalformedResponse``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, NoReturn

from bot.models import (
    ApiKey,
    Balance,
    Candle,
    Fill,
    MarketInfo,
    Order,
    OrderChance,
    Side,
    Ticker,
)

# What :func:`loads` returns for a body that is not JSON; no JSON value is it.
NOT_JSON = object()


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a number Upbit sends")


def loads(content: bytes) -> Any:
    """JSON with every number exact, or NOT_JSON (an HTML error page, say)."""
    try:
        return json.loads(content, parse_float=Decimal, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError):
        return NOT_JSON


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


def _optional_number(item: Any, key: str, what: str, *, absent_ok: bool = False
                     ) -> Decimal | None:
    """A number that Upbit sends as null where it does not apply (a market
    order's price, say); the key itself must be there unless ``absent_ok``."""
    if absent_ok and isinstance(item, dict) and key not in item:
        return None
    return None if _field(item, key, what) is None else _number(item, key, what)


def _flag(item: Any, key: str, what: str) -> bool:
    """A true/false field that Upbit leaves out (or sends as null) when false."""
    raw = item.get(key) if isinstance(item, dict) else None
    if raw is None:
        return False
    if not isinstance(raw, bool):
        raise ValueError(f"{what}: field {key!r} is not true or false: {raw!r}")
    return raw


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


def _time_ms(item: Any, key: str, what: str) -> datetime:
    raw = _field(item, key, what)
    if isinstance(raw, bool) or not isinstance(raw, (int, Decimal)) or raw < 0:
        raise ValueError(f"{what}: field {key!r} is not a time in milliseconds: {raw!r}")
    return datetime.fromtimestamp(float(raw) / 1000, tz=UTC)


def _side(item: Any, what: str) -> Side:
    side = _text(item, "side", what)
    if side == "bid":
        return "bid"
    if side == "ask":
        return "ask"
    raise ValueError(f"{what}: field 'side' is {side!r}, not bid or ask")


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


def parse_candle_page(body: Any, market: str, unit: int) -> list[Candle]:
    """A whole page of candles; any bad item fails the page."""
    if not isinstance(body, list):
        raise ValueError(f"candles {market}: body is {type(body).__name__}, not a list")
    return [parse_candle(item, market, unit, i) for i, item in enumerate(body)]


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
        # Upbit's SDK (types/order.py) marks both optional: absent where they do not apply.
        price=_optional_number(item, "price", what, absent_ok=True),
        volume=_optional_number(item, "volume", what, absent_ok=True),
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


def parse_market_info(item: Any) -> MarketInfo:
    """One item of ``/v1/market/all?is_details=true``. Items without
    ``market_event`` (the list without details) are neither warned nor cautioned."""
    market = _text(item, "market", "market")
    what = f"market {market}"
    events = item.get("market_event")
    if events is not None and not isinstance(events, dict):
        raise ValueError(f"{what}: field 'market_event' is not an object")
    events = events or {}
    caution = events.get("caution")
    if caution is not None and not isinstance(caution, dict):
        raise ValueError(f"{what}: field 'market_event.caution' is not an object")
    cautions = frozenset(name for name in caution or {}
                         if _flag(caution, name, f"{what} caution"))
    # ``market_warning: "CAUTION"`` is the field Upbit removed in 2024-11
    # (docs/upbit.md); an answer that still carries it is read the safe way.
    legacy = item.get("market_warning") == "CAUTION"
    return MarketInfo(
        market=market,
        korean_name=_plain_text(item, "korean_name", what),
        english_name=_plain_text(item, "english_name", what),
        warning=_flag(events, "warning", what) or legacy,
        cautions=cautions,
    )


def _plain_text(item: Any, key: str, what: str) -> str:
    """A string field that may be empty (a name Upbit has not filled in)."""
    raw = _field(item, key, what)
    if not isinstance(raw, str):
        raise ValueError(f"{what}: field {key!r} is not a string: {raw!r}")
    return raw


def parse_ticker(item: Any) -> Ticker:
    """One ticker of ``/v1/ticker`` or ``/v1/ticker/all`` (numbers or strings)."""
    market = _text(item, "market", "ticker")
    what = f"ticker {market}"
    return Ticker(
        market=market,
        trade_price=_number(item, "trade_price", what, positive=True),
        acc_trade_price_24h=_number(item, "acc_trade_price_24h", what),
        timestamp=_time_ms(item, "timestamp", what),
    )


def parse_order_chance(body: Any) -> OrderChance:
    """``/v1/orders/chance``. Older answers lack the maker fees: the taker fee
    applies then."""
    market_item = _field(body, "market", "order chance")
    market = _text(market_item, "id", "order chance market")
    what = f"order chance {market}"
    bid_fee = _number(body, "bid_fee", what)
    ask_fee = _number(body, "ask_fee", what)
    return OrderChance(
        market=market,
        bid_fee=bid_fee,
        ask_fee=ask_fee,
        maker_bid_fee=_or(_optional_number(body, "maker_bid_fee", what, absent_ok=True), bid_fee),
        maker_ask_fee=_or(_optional_number(body, "maker_ask_fee", what, absent_ok=True), ask_fee),
        min_total_bid=_number(_field(market_item, "bid", what), "min_total", f"{what} bid"),
        min_total_ask=_number(_field(market_item, "ask", what), "min_total", f"{what} ask"),
    )


def _or(value: Decimal | None, default: Decimal) -> Decimal:
    # Not ``value or default``: a maker fee of 0 is a fee, not a missing one.
    return default if value is None else value


def parse_api_key(item: Any) -> ApiKey:
    """One key of ``/v1/api_keys``; the key itself is never put in a message."""
    what = "api key"
    return ApiKey(access_key=_text(item, "access_key", what),
                  expire_at=_time(item, "expire_at", what))


def format_to(moment: datetime) -> str:
    """A candle page's exclusive end, as Upbit reads it: ``YYYY-MM-DDTHH:MM:SSZ``."""
    if moment.tzinfo is None:
        raise ValueError("to= must be a timezone-aware datetime")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
