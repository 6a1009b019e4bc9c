"""Exact money math for orders: the KRW price tick, rounding to it, volume to
8 decimals, and number formatting without exponent notation.

Everything here is ``Decimal`` and pure. The tick table is data (see
``KRW_TICKS``); a market's own tick from ``/v1/orderbook/instruments``, when
known, overrides it.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Literal

RoundMode = Literal["up", "down", "nearest"]

# (lower bound of the price band, tick), highest band first. Upbit's KRW market
# table in force since 2025-07-31.
KRW_TICKS: tuple[tuple[Decimal, Decimal], ...] = tuple(
    (Decimal(lo), Decimal(tick)) for lo, tick in (
        ("2000000", "1000"),
        ("1000000", "1000"),
        ("500000", "500"),
        ("100000", "100"),
        ("50000", "50"),
        ("10000", "10"),
        ("5000", "5"),
        ("1000", "1"),
        ("100", "1"),
        ("10", "0.1"),
        ("1", "0.01"),
        ("0.1", "0.001"),
        ("0.01", "0.0001"),
        ("0.001", "0.00001"),
        ("0.0001", "0.000001"),
        ("0.00001", "0.0000001"),
        ("0", "0.00000001"),
    )
)
VOLUME_QUANTUM = Decimal("0.00000001")
# AGGRESSIVENESS's precision: enough for any real use (0.0001 %), and what keeps
# the backtest's vectorised tick rounding exact (bot.optimize.backtest.limit_prices).
AGGRESSIVENESS_DECIMALS = 6


def tick_size(price: Decimal) -> Decimal:
    """The KRW market tick for a price (the band whose lower bound <= price)."""
    for lower, tick in KRW_TICKS:
        if price >= lower:
            return tick
    raise ValueError(f"price must be positive, got {price}")


_ROUNDING = {"up": ROUND_CEILING, "down": ROUND_FLOOR, "nearest": ROUND_HALF_UP}


def round_price(price: Decimal, mode: RoundMode, tick: Decimal | None = None) -> Decimal:
    """Round a positive price onto the tick: ``up`` for bids (never below the
    wanted price), ``down`` for asks, ``nearest`` for display.

    Band bounds are multiples of the next band's tick, so a price rounded up
    across a bound still lies on the new band's tick.
    """
    if price <= 0:
        raise ValueError(f"price must be positive, got {price}")
    step = tick if tick is not None else tick_size(price)
    rounded = (price / step).quantize(Decimal(1), rounding=_ROUNDING[mode]) * step
    if rounded <= 0:  # rounding a tiny price down
        rounded = step
    return rounded.quantize(step)


def is_on_tick(price: Decimal, tick: Decimal | None = None) -> bool:
    step = tick if tick is not None else tick_size(price)
    return price > 0 and price % step == 0


def floor_volume(volume: Decimal) -> Decimal:
    """Volume rounded down to the 8 decimals Upbit accepts."""
    if volume <= 0:
        return Decimal(0).quantize(VOLUME_QUANTUM)
    return volume.quantize(VOLUME_QUANTUM, rounding=ROUND_DOWN)


def fmt(value: Decimal | int | str) -> str:
    """Plain decimal text for a request: no exponent, no trailing zeros after
    the point (``Decimal('1E-5')`` -> ``0.00001``, ``1.2300`` -> ``1.23``)."""
    number = Decimal(value)
    if not number.is_finite():
        raise ValueError(f"not a finite number: {value}")
    text = format(number, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text
