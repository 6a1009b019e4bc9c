"""The one convention for every ``--json`` output (README, "JSON output"):

* times: ISO-8601 in UTC with ``Z`` (``2026-12-01T17:49:00Z``);
* money (KRW amounts, prices, coin volumes): decimal strings, exact to 8
  decimals, never exponent notation (``"1000000"``, ``"0.00012345"``);
* other numbers (returns, drawdowns, scores, weights, Sharpe ratios): JSON
  numbers rounded to 6 decimals; NaN and infinities as ``null``.

Commands build plain dicts whose money values are ``Decimal`` (use
:func:`money` for a float amount) and print them with :func:`dumps`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

FLOAT_DIGITS = 6
_QUANTUM = Decimal("1e-8")


def money(value: float | Decimal | None) -> Decimal | None:
    """A KRW amount or price computed as a float, as the Decimal the JSON shows."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        return value
    if not math.isfinite(value):
        return None
    return Decimal(repr(float(value)))


def plain_decimal(value: Decimal) -> str:
    """Exact up to 8 decimals (a coin's precision), no exponent, no trailing zeros."""
    if value == value.to_integral_value():
        return format(value.quantize(Decimal(1)), "f")
    return format(value.quantize(_QUANTUM).normalize(), "f")


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def jsonable(value: Any) -> Any:
    """``value`` with every Decimal, datetime and float in the convention."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, Decimal):
        return plain_decimal(value) if value.is_finite() else None
    if isinstance(value, float):
        return round(value, FLOAT_DIGITS) if math.isfinite(value) else None
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, Iterable):
        return [jsonable(v) for v in value]
    if hasattr(value, "item"):  # a numpy scalar
        return jsonable(value.item())
    return str(value)


def with_money(data: Mapping[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    """``data`` with the float amounts under ``keys`` turned into money."""
    names = set(keys)
    return {k: money(v) if k in names and isinstance(v, float) else v for k, v in data.items()}


def dumps(data: Any) -> str:
    return json.dumps(jsonable(data), ensure_ascii=False)
