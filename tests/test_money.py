"""bot.money: the KRW tick table at every band edge, rounding, volumes, formatting."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.money import KRW_TICKS, floor_volume, fmt, is_on_tick, round_price, tick_size

D = Decimal
# (lower bound, tick, tick of the band just below) for every band with a band below it.
BOUNDS = [(lo, tick, KRW_TICKS[i + 1][1]) for i, (lo, tick) in enumerate(KRW_TICKS)
          if lo > 0]


def on_tick(price: Decimal) -> bool:
    return price % tick_size(price) == 0 and is_on_tick(price)


def test_table_is_ordered_and_each_bound_sits_on_the_tick_below() -> None:
    lows = [lo for lo, _ in KRW_TICKS]
    assert lows == sorted(lows, reverse=True) and lows[-1] == 0
    for lo, tick, below in BOUNDS:
        assert lo % tick == 0 and lo % below == 0, lo


@pytest.mark.parametrize(("lo", "tick", "below"), BOUNDS, ids=[str(b[0]) for b in BOUNDS])
def test_tick_size_on_both_sides_of_every_bound(lo: Decimal, tick: Decimal,
                                                below: Decimal) -> None:
    assert tick_size(lo) == tick
    assert tick_size(lo + tick) == tick
    assert tick_size(lo - below) == below
    assert tick_size(lo - D("1E-12")) == below


@pytest.mark.parametrize(("lo", "tick", "below"), BOUNDS, ids=[str(b[0]) for b in BOUNDS])
def test_round_price_just_below_every_bound(lo: Decimal, tick: Decimal,
                                            below: Decimal) -> None:
    price = lo - below / 2
    assert round_price(price, "up") == lo
    assert round_price(price, "down") == lo - below
    assert round_price(price, "nearest") == lo  # half rounds up
    assert round_price(lo - below * D("0.6"), "nearest") == lo - below
    assert round_price(lo - below * D("0.4"), "nearest") == lo
    for mode in ("up", "down", "nearest"):
        assert on_tick(round_price(price, mode))


@pytest.mark.parametrize(("lo", "tick", "below"), BOUNDS, ids=[str(b[0]) for b in BOUNDS])
def test_round_price_just_above_every_bound(lo: Decimal, tick: Decimal,
                                            below: Decimal) -> None:
    price = lo + tick / 2
    assert round_price(price, "up") == lo + tick
    assert round_price(price, "down") == lo
    assert round_price(price, "nearest") == lo + tick
    assert round_price(lo, "up") == lo == round_price(lo, "down") == round_price(lo, "nearest")
    for mode in ("up", "down", "nearest"):
        assert on_tick(round_price(price, mode))


@pytest.mark.parametrize(("price", "mode", "expected"), [
    ("1999999.5", "up", "2000000"),
    ("1999999.5", "down", "1999000"),
    ("2000500", "nearest", "2001000"),
    ("99999", "up", "100000"),
    ("99999", "down", "99950"),
    ("100050", "down", "100000"),
    ("100050", "up", "100100"),
    ("100050", "nearest", "100100"),
    ("500250", "down", "500000"),
    ("9999.9", "up", "10000"),
    ("1000.5", "down", "1000"),
    ("99.95", "up", "100"),
    ("99.95", "down", "99.9"),
    ("1.005", "up", "1.01"),
    ("0.00001234", "down", "0.0000123"),
    ("0.000001234", "up", "0.00000124"),
])
def test_round_price_examples(price: str, mode: str, expected: str) -> None:
    result = round_price(D(price), mode)  # type: ignore[arg-type]
    assert result == D(expected)
    assert on_tick(result)


def test_round_price_with_a_market_tick_overrides_the_table() -> None:
    assert round_price(D("1.2345"), "up", D("0.001")) == D("1.235")
    assert round_price(D("1.2345"), "down", D("0.001")) == D("1.234")


def test_round_price_refuses_non_positive_prices() -> None:
    for bad in (D(0), D(-1)):
        with pytest.raises(ValueError):
            round_price(bad, "up")


@given(st.decimals(min_value=D("0.00000002"), max_value=D("10000000000"), places=9,
                   allow_nan=False, allow_infinity=False))
def test_round_price_is_on_tick_and_within_one_tick(price: Decimal) -> None:
    up, down = round_price(price, "up"), round_price(price, "down")
    assert down <= price <= up
    assert up - price < tick_size(price) and price - down < tick_size(price)
    assert on_tick(up) and on_tick(down) and on_tick(round_price(price, "nearest"))


@pytest.mark.parametrize(("volume", "expected"), [
    ("1.123456789", "1.12345678"),
    ("0.000000019", "0.00000001"),
    ("0.000000009", "0"),
    ("2", "2"),
    ("0.99999999999", "0.99999999"),
    ("-1", "0"),
])
def test_floor_volume_rounds_down_to_8_decimals(volume: str, expected: str) -> None:
    result = floor_volume(D(volume))
    assert result == D(expected)
    assert result.as_tuple().exponent == -8  # type: ignore[comparison-overlap]


@pytest.mark.parametrize(("value", "expected"), [
    (D("1E-5"), "0.00001"),
    (D("1E+8"), "100000000"),
    (D("1.2300"), "1.23"),
    (D("0.00000001"), "0.00000001"),
    (D("1E-8"), "0.00000001"),
    (D("100"), "100"),
    (D("100.000"), "100"),
    (D("0E-8"), "0"),
    (D("-0"), "0"),
    (12, "12"),
    ("5000.50", "5000.5"),
])
def test_fmt_plain_text(value: object, expected: str) -> None:
    assert fmt(value) == expected  # type: ignore[arg-type]


@given(st.decimals(allow_nan=False, allow_infinity=False, min_value=D("-1E+20"),
                   max_value=D("1E+20")))
def test_fmt_never_uses_exponent_and_round_trips(value: Decimal) -> None:
    text = fmt(value)
    assert "E" not in text.upper()
    assert D(text) == value


def test_fmt_refuses_non_finite() -> None:
    with pytest.raises(ValueError):
        fmt(D("NaN"))
