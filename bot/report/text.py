"""How the reports write numbers, times and amounts: one place, so ``bot
status``, the daily summary and the notifications agree to the character.

The ``*_text`` functions take typed values (``None`` is ``-``). The
``field_*_text`` ones take an event's fields as the jobs send them (a
Decimal, a number, a string, or nothing at all): a missing field is ``?`` and
a value that is not a number is shown as it is, because a notification must
go out even when one field is odd.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import SupportsFloat


def age_text(seconds: float) -> str:
    """``75 s``, ``12 min``, ``3 h 5 min``, ``2 d 4 h``."""
    s = int(round(max(seconds, 0)))
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    if s < 172800:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def when_text(ts: datetime | None) -> str:
    """``01-05 03:20Z`` (UTC, minutes)."""
    return "-" if ts is None else ts.astimezone(UTC).strftime("%m-%d %H:%MZ")


def krw_text(value: Decimal | None, signed: bool = False) -> str:
    """An amount in whole won with thousands separators: ``-1,234``."""
    if value is None:
        return "-"
    return f"{value:{'+' if signed else ''},.0f}"


def price_text(value: Decimal | None) -> str:
    """A price: whole won from 100 KRW up, else the decimals the tick allows."""
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.8f}".rstrip("0").rstrip(".") or "0"


def coins_text(value: Decimal) -> str:
    """A volume with up to 8 decimals and no trailing zeros."""
    text = f"{value:.8f}".rstrip("0").rstrip(".")
    return text or "0"


def trades_text(count: int) -> str:
    return f"{count} trade" + ("" if count == 1 else "s")


def pct_text(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f} %"


def field_krw_text(value: object, signed: bool = False) -> str:
    return _field_text(value, lambda d: krw_text(d, signed))


def field_price_text(value: object) -> str:
    return _field_text(value, price_text)


def field_coins_text(value: object) -> str:
    return _field_text(value, coins_text)


def field_pct_text(value: SupportsFloat | str | None) -> str:
    """Raises ValueError for a value that is not a number: the message's
    formatter then falls back to the raw fields (bot/report/messages.py)."""
    return pct_text(None if value is None else float(value))


def _field_text(value: object, as_text: Callable[[Decimal], str]) -> str:
    if value is None:
        return "?"
    try:
        return as_text(Decimal(str(value)))
    except (ArithmeticError, ValueError):
        return str(value)
