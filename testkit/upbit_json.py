"""Shared fakes for the Upbit client tests: a clock whose sleep advances it,
keys, and Upbit-shaped JSON bodies."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote, urlencode

import requests

from bot.exchange.upbit import UpbitClient
from testkit.clock import FakeClock

BASE = "https://api.upbit.test"
ACCESS = "test-access-AKxq81bN2mZr5wLp0Vt7Ue3Hs"
SECRET = "test-secret-SKp3Zr9Qa7Lm2Xw8Nc4Bv6Ty1Jhx"  # 40 bytes, like Upbit's
# The keys the fake server's own tests sign with (FakeUpbit's default access key).
FAKE_ACCESS = "test-access"
FAKE_SECRET = "s3cr3t-" * 10  # 70 bytes: PyJWT warns about shorter HMAC keys


def make_client(clock: FakeClock, *, keys: bool = True, **kwargs: Any) -> UpbitClient:
    return UpbitClient(BASE, ACCESS if keys else "", SECRET if keys else "",
                       sleep=clock.sleep, monotonic=clock.monotonic, **kwargs)


def candle_json(minute: int = 1, market: str = "KRW-BTC", **overrides: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "market": market,
        "candle_date_time_utc": f"2025-01-01T00:{minute:02d}:00",
        "candle_date_time_kst": f"2025-01-01T09:{minute:02d}:00",
        "opening_price": 143000000.0,
        "high_price": 143050000.0,
        "low_price": 142990000.0,
        "trade_price": 143020000.0,
        "timestamp": 1735689719000 + minute,
        "candle_acc_trade_price": 17001839.06758,
        "candle_acc_trade_volume": 0.11890312,
        "unit": 1,
    }
    item.update(overrides)
    return item


def order_json(uuid: str = "9ca023a5-851b-4fec-9f0a-48cd83c2eaae", **overrides: Any
               ) -> dict[str, Any]:
    item: dict[str, Any] = {
        "uuid": uuid, "side": "bid", "ord_type": "limit", "price": "143000000",
        "state": "wait", "market": "KRW-BTC", "created_at": "2025-01-01T09:00:00+09:00",
        "volume": "0.0001", "remaining_volume": "0.0001", "reserved_fee": "7.15",
        "remaining_fee": "7.15", "paid_fee": "0", "locked": "14307.15",
        "executed_volume": "0", "trades_count": 0, "identifier": "bot-KRW-BTC-1",
    }
    item.update(overrides)
    return item


def upbit_error(name: str, message: str = "some message") -> dict[str, Any]:
    return {"error": {"name": name, "message": message}}


def query_of(params: dict[str, Any] | None) -> tuple[list[tuple[str, Any]], str]:
    """The parameters as sent (lists as repeated keys) and the query string a
    signature hashes (unquoted, in that order)."""
    pairs = [(k, v) for k, vs in (params or {}).items()
             for v in (vs if isinstance(vs, list) else [vs])]
    return pairs, unquote(urlencode(pairs))


def send(base_url: str, method: str, path: str, pairs: list[tuple[str, Any]], query: str,
         headers: dict[str, str], *, form: bool = False, session: requests.Session | None = None,
         timeout: float = 5.0) -> requests.Response:
    """Send a (signed) call: a POST with a JSON body (or, ``form``, the form
    body Upbit refuses today), anything else with the query in the URL."""
    http = session or requests
    if method == "POST":
        headers = {**headers, "Content-Type": "application/x-www-form-urlencoded" if form
                   else "application/json; charset=utf-8"}
        body = urlencode(pairs) if form else json.dumps(dict(pairs))
        return http.post(base_url + path, data=body, headers=headers, timeout=timeout)
    url = base_url + path + ("?" + query if query else "")
    return http.request(method, url, headers=headers, timeout=timeout)
