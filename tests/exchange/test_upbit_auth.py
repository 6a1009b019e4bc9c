"""Upbit JWT authentication: the token verifies with the secret, and its
query_hash is the SHA-512 of exactly the parameters the server received."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import unquote, urlsplit

import jwt
import pytest
import responses

from bot.errors import AuthError
from bot.exchange.transport import build_query
from bot.exchange.upbit import UpbitClient
from testkit.clock import FakeClock
from testkit.upbit_json import ACCESS, BASE, SECRET, make_client, order_json

# Upbit's secrets are 40 bytes; PyJWT would warn about it when the test verifies.
pytestmark = pytest.mark.filterwarnings("ignore::jwt.InsecureKeyLengthWarning")


@pytest.fixture
def server() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


# Shaped like the SDK's OrderRetrieveChanceResponse, cut to what is read.
CHANCE = {"bid_fee": "0.0005", "ask_fee": "0.0005", "maker_bid_fee": "0.0005",
          "maker_ask_fee": "0.0005",
          "market": {"id": "KRW-BTC", "bid": {"currency": "KRW", "min_total": "5000"},
                     "ask": {"currency": "BTC", "min_total": "5000"}}}


def claims(call: Any) -> dict[str, Any]:
    header = call.request.headers["Authorization"]
    assert header.startswith("Bearer ")
    token = header.removeprefix("Bearer ")
    assert jwt.get_unverified_header(token)["alg"] == "HS512"
    # Raises if the signature does not verify with the secret.
    return jwt.decode(token, SECRET, algorithms=["HS512"])


def received_query(call: Any) -> str:
    """The query as the server decodes it (Upbit hashes the decoded form)."""
    return unquote(urlsplit(call.request.url).query)


def sha512(text: str) -> str:
    return hashlib.sha512(text.encode()).hexdigest()


def test_get_with_params_hashes_the_query_the_server_received(
        server: responses.RequestsMock) -> None:
    server.get(f"{BASE}/v1/orders/chance", json=CHANCE)
    make_client(FakeClock()).order_chance("KRW-BTC")
    call = server.calls[0]
    payload = claims(call)
    assert received_query(call) == "market=KRW-BTC"
    assert payload["access_key"] == ACCESS
    assert payload["query_hash"] == sha512("market=KRW-BTC")
    assert payload["query_hash_alg"] == "SHA512"
    uuid.UUID(payload["nonce"])


def test_get_without_params_has_no_query_hash(server: responses.RequestsMock) -> None:
    server.get(f"{BASE}/v1/accounts", json=[])
    make_client(FakeClock()).balances()
    call = server.calls[0]
    payload = claims(call)
    assert urlsplit(call.request.url).query == ""
    assert set(payload) == {"access_key", "nonce"}


def test_get_order_by_identifier(server: responses.RequestsMock) -> None:
    server.get(f"{BASE}/v1/order", json=order_json())
    make_client(FakeClock()).get_order(identifier="bot-KRW-BTC-1")
    call = server.calls[0]
    assert received_query(call) == "identifier=bot-KRW-BTC-1"
    assert claims(call)["query_hash"] == sha512(received_query(call))


def test_list_params_are_hashed_as_repeated_bracket_keys(
        server: responses.RequestsMock) -> None:
    server.get(f"{BASE}/v1/orders/open", json=[])
    make_client(FakeClock()).open_orders("KRW-BTC")
    call = server.calls[0]
    query = received_query(call)
    assert "states[]=wait&states[]=watch" in query
    assert query.startswith("market=KRW-BTC&")
    assert claims(call)["query_hash"] == sha512(query)


def test_build_query_matches_upbits_own_recipe() -> None:
    pairs, query = build_query({"market": "KRW-BTC", "uuids[]": ["a-1", "b-2"], "page": 2,
                                "skip": None, "price": Decimal("1E+5")})
    assert query == "market=KRW-BTC&uuids[]=a-1&uuids[]=b-2&page=2&price=100000"
    assert pairs[1] == ("uuids[]", "a-1")
    with pytest.raises(ValueError, match="identifier"):
        build_query({"identifier": "a&b=c"})


def test_post_hashes_the_json_body_params_in_order(server: responses.RequestsMock) -> None:
    server.post(f"{BASE}/v1/orders", json=order_json(), status=201)
    make_client(FakeClock()).place_limit_order("KRW-BTC", "bid", Decimal("1.43E+8"),
                                               Decimal("1E-4"), "bot-KRW-BTC-1")
    call = server.calls[0]
    assert urlsplit(call.request.url).query == ""
    assert call.request.headers["Content-Type"].startswith("application/json")
    body = json.loads(call.request.body)
    assert list(body) == ["market", "side", "volume", "price", "ord_type", "identifier"]
    assert body["price"] == "143000000" and body["volume"] == "0.0001"
    assert body["ord_type"] == "limit"
    hashed = "&".join(f"{key}={value}" for key, value in body.items())
    assert claims(call)["query_hash"] == sha512(hashed)


def test_delete_hashes_its_query(server: responses.RequestsMock) -> None:
    server.delete(f"{BASE}/v1/order", json=order_json(state="cancel"))
    make_client(FakeClock()).cancel_order(uuid="9ca023a5-851b-4fec-9f0a-48cd83c2eaae")
    call = server.calls[0]
    assert received_query(call) == "uuid=9ca023a5-851b-4fec-9f0a-48cd83c2eaae"
    assert claims(call)["query_hash"] == sha512(received_query(call))


def test_nonce_is_fresh_for_every_request_and_retry(server: responses.RequestsMock) -> None:
    server.get(f"{BASE}/v1/accounts", status=500, json={"error": {"name": "server_error"}})
    server.get(f"{BASE}/v1/accounts", json=[])
    client = make_client(FakeClock())
    client.balances()
    client.balances()
    nonces = [claims(call)["nonce"] for call in server.calls]
    assert len(nonces) == 3 and len(set(nonces)) == 3


def test_public_calls_carry_no_authorization(server: responses.RequestsMock) -> None:
    server.get(f"{BASE}/v1/ticker", json=[])
    make_client(FakeClock()).ticker(["KRW-BTC"])
    assert "Authorization" not in server.calls[0].request.headers


@pytest.mark.parametrize("keys", [("", ""), (ACCESS, ""), ("", SECRET)])
def test_private_call_without_keys_sends_nothing(server: responses.RequestsMock,
                                                 keys: tuple[str, str]) -> None:
    clock = FakeClock()
    client = UpbitClient(BASE, *keys, sleep=clock.sleep, monotonic=clock.monotonic)
    with pytest.raises(AuthError):
        client.balances()
    with pytest.raises(AuthError):
        client.place_limit_order("KRW-BTC", "bid", Decimal(1000), Decimal(5), "bot-1")
    assert len(server.calls) == 0


def test_test_order_is_signed_like_an_order_with_a_json_body(
        server: responses.RequestsMock) -> None:
    server.post(f"{BASE}/v1/orders/test", json=order_json(identifier=None), status=201)
    make_client(FakeClock()).test_order("KRW-BTC", "bid", Decimal("143000000"),
                                        Decimal("0.0001"))
    call = server.calls[0]
    assert urlsplit(call.request.url).query == ""
    assert call.request.headers["Content-Type"].startswith("application/json")
    body = json.loads(call.request.body)
    # No identifier given: none is sent (nor hashed).
    assert body == {"market": "KRW-BTC", "side": "bid", "volume": "0.0001",
                    "price": "143000000", "ord_type": "limit"}
    hashed = "&".join(f"{key}={value}" for key, value in body.items())
    assert claims(call)["query_hash"] == sha512(hashed)


def test_api_keys_is_private_without_a_query(server: responses.RequestsMock) -> None:
    server.get(f"{BASE}/v1/api_keys", json=[])
    assert make_client(FakeClock()).api_keys() == []
    payload = claims(server.calls[0])
    assert set(payload) == {"access_key", "nonce"} and payload["access_key"] == ACCESS
