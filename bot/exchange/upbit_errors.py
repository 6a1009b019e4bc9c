"""Which :mod:`bot.errors` exception an Upbit error answer stands for.

Tables and pure functions only: the transport reads the answer, asks here for
the class, and adds what needs state (a ban's end, a retry's delay).
"""

from __future__ import annotations

from typing import Any

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
# Not Upbit's error shape (an HTML page from a proxy, a 2xx that is not JSON):
# only these statuses mean something without a body.
ERRORS_WITHOUT_BODY: dict[int, type[ExchangeError]] = {
    418: Banned,
    429: RateLimited,
}


def error_fields(body: Any) -> tuple[str, str] | None:
    """``(name, message)`` of Upbit's ``{"error": {...}}`` body; None for any other body."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None
    return str(error.get("name") or ""), str(error.get("message") or "")


def error_class(status: int, name: str | None, method: str) -> type[ExchangeError]:
    """The exception for an answer with this status and error name (None: the
    body is not Upbit's error shape)."""
    if name is not None:
        cls = ERRORS_BY_NAME.get(name) or ERRORS_BY_STATUS.get(status) or (
            ExchangeTemporaryError if status >= 500 else ExchangeError)
    else:
        garbled = MalformedResponse if 200 <= status < 300 else ExchangeTemporaryError
        cls = ERRORS_WITHOUT_BODY.get(status, garbled)
    if method == "POST" and cls in (ExchangeTemporaryError, MalformedResponse):
        # A 5xx or garbled answer says nothing about whether the order landed.
        return OrderSubmitUnknown
    return cls
