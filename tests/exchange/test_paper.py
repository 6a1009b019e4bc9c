"""The paper exchange: reservations, fills on the next candle as Upbit executes
a limit order (at the open when marketable, else at the limit, else
cancelled), fees, refusals, persistence across processes."""

import subprocess
import sys
import textwrap
from datetime import timedelta
from decimal import Decimal

import pytest

from bot.errors import InsufficientFunds, InvalidOrder, OrderNotFound
from bot.exchange.paper import PaperExchange
from bot.exchange.protocol import free_balance
from bot.storage import candles as candle_store
from testkit.candles import T0, candle
from testkit.clock import FakeClock

D = Decimal


@pytest.fixture
def clock():
    return FakeClock(T0 + timedelta(minutes=1, seconds=1))


@pytest.fixture
def paper(db, clock):
    return PaperExchange(db, start_krw=D("1000000"), fee_rate=D("0.0005"),
                         min_order_krw=D("5000"), unit=1, now=clock)


def _balances(ex):
    return {b.currency: (b.balance, b.locked) for b in ex.balances()}


def _next_candle(db, minute, low, high, final=True, open_=None):
    """The candle of ``minute``; it opens at ``open_`` (default: its low)."""
    candle_store.upsert_candles(db, [candle("KRW-BTC", T0 + timedelta(minutes=minute), high,
                                            open_=open_ or low, high=high, low=low,
                                            final=final)], "1m")


def test_starts_with_paper_cash(paper):
    assert _balances(paper) == {"KRW": (D("1000000"), D("0"))}


def test_bid_reserves_then_fills_at_limit_with_fee_to_the_won(db, paper, clock):
    order = paper.place_limit_order("KRW-BTC", "bid", D("50000000"), D("0.01"), "id-1")
    assert order.state == "wait"
    # 0.01 * 50,000,000 = 500,000 KRW + 0.05 % fee = 500,250 KRW reserved
    assert _balances(paper)["KRW"] == (D("499750"), D("500250"))
    # it opens above the bid, then trades down through it: filled at the limit
    _next_candle(db, 1, low="49990000", high="50100000", open_="50050000", final=False)
    assert paper.get_order(uuid=order.uuid).state == "wait"  # candle not closed yet
    _next_candle(db, 1, low="49990000", high="50100000", open_="50050000")
    done = paper.get_order(identifier="id-1")
    assert done.state == "done"
    assert done.executed_volume == D("0.01") and done.remaining_volume == 0
    assert done.paid_fee == D("250")
    assert [(t.price, t.volume, t.funds) for t in done.fills] == [
        (D("50000000"), D("0.01"), D("500000"))]
    balances = _balances(paper)
    assert balances["KRW"] == (D("499750"), D("0"))
    assert balances["BTC"] == (D("0.01"), D("0"))
    assert {b.currency: b.avg_buy_price for b in paper.balances()}["BTC"] == D("50000000")


def test_bid_below_the_open_fills_at_the_open_and_frees_the_rest(db, paper, clock):
    """A bid at or above the next candle's open is marketable: Upbit fills it at
    once at the best ask, the open, not at its limit."""
    order = paper.place_limit_order("KRW-BTC", "bid", D("50000000"), D("0.01"), "cheap")
    _next_candle(db, 1, open_="49900000", low="49800000", high="50200000")
    done = paper.get_order(uuid=order.uuid)
    assert done.state == "done" and done.executed_volume == D("0.01")
    assert done.price == D("50000000")  # the order keeps its limit; the trade has the fill
    assert [(t.price, t.volume, t.funds) for t in done.fills] == [
        (D("49900000"), D("0.01"), D("499000"))]
    assert done.paid_fee == D("249.5")  # 0.05 % of the filled value
    # 500,250 was reserved; 499,000 + 249.5 was spent: 1,000.5 is free again
    assert _balances(paper) == {"KRW": (D("1000000") - D("499249.5"), D("0")),
                                "BTC": (D("0.01"), D("0"))}
    assert {b.currency: b.avg_buy_price for b in paper.balances()}["BTC"] == D("49900000")


def test_bid_at_exactly_the_open_fills_there(db, paper):
    order = paper.place_limit_order("KRW-BTC", "bid", D("50000000"), D("0.01"), "equal")
    _next_candle(db, 1, open_="50000000", low="50000000", high="50100000")
    assert [t.price for t in paper.get_order(uuid=order.uuid).fills] == [D("50000000")]


def test_ask_above_the_open_fills_at_the_open(db, paper, clock):
    paper.place_limit_order("KRW-BTC", "bid", D("50000000"), D("0.01"), "b")
    _next_candle(db, 1, open_="50000000", low="49000000", high="50000000")
    clock.advance(minutes=1)
    ask = paper.place_limit_order("KRW-BTC", "ask", D("51000000"), D("0.01"), "a")
    _next_candle(db, 2, open_="51200000", low="51100000", high="51300000")
    done = paper.get_order(uuid=ask.uuid)
    assert [(t.price, t.funds) for t in done.fills] == [(D("51200000"), D("512000"))]
    assert done.paid_fee == D("256")
    # 499,750 left after the bid + 512,000 - 256
    assert _balances(paper) == {"KRW": (D("1011494"), D("0"))}


def test_ask_not_reached_is_cancelled_and_the_coin_released(db, paper, clock):
    paper.place_limit_order("KRW-BTC", "bid", D("50000000"), D("0.01"), "b")
    _next_candle(db, 1, open_="50000000", low="49000000", high="50000000")
    clock.advance(minutes=1)
    ask = paper.place_limit_order("KRW-BTC", "ask", D("51000000"), D("0.01"), "a")
    _next_candle(db, 2, open_="50500000", low="50400000", high="50999000")
    assert paper.get_order(uuid=ask.uuid).state == "cancel"
    assert _balances(paper)["BTC"] == (D("0.01"), D("0"))


def test_ask_fills_and_credits_funds_minus_fee(db, paper, clock):
    paper.place_limit_order("KRW-BTC", "bid", D("50000000"), D("0.01"), "b")
    _next_candle(db, 1, open_="50000000", low="49000000", high="50000000")
    clock.advance(minutes=1)
    ask = paper.place_limit_order("KRW-BTC", "ask", D("51000000"), D("0.01"), "a")
    assert _balances(paper)["BTC"] == (D("0"), D("0.01"))
    _next_candle(db, 2, low="50500000", high="51000000")
    assert paper.get_order(uuid=ask.uuid).state == "done"
    # 499,750 + 510,000 - 255 fee
    assert _balances(paper) == {"KRW": (D("1009495"), D("0"))}


def test_not_crossed_on_the_next_candle_is_cancelled_and_released(db, paper):
    order = paper.place_limit_order("KRW-BTC", "bid", D("50000000"), D("0.01"), "x")
    _next_candle(db, 1, low="50000500", high="50100000")
    assert paper.get_order(uuid=order.uuid).state == "cancel"
    assert _balances(paper) == {"KRW": (D("1000000"), D("0"))}
    # a later candle that would cross changes nothing
    _next_candle(db, 2, low="40000000", high="50100000")
    assert paper.get_order(uuid=order.uuid).state == "cancel"
    assert paper.open_orders("KRW-BTC") == []


def test_cancel_releases_funds(paper):
    order = paper.place_limit_order("KRW-BTC", "bid", D("50000000"), D("0.01"), "c")
    assert [o.uuid for o in paper.open_orders()] == [order.uuid]
    cancelled = paper.cancel_order(uuid=order.uuid)
    assert cancelled.state == "cancel"
    assert _balances(paper) == {"KRW": (D("1000000"), D("0"))}
    with pytest.raises(InvalidOrder):
        paper.cancel_order(uuid=order.uuid)


@pytest.mark.parametrize(("side", "price", "volume", "name"), [
    ("bid", "50000050", "0.01", "invalid_price_bid"),
    ("ask", "1234.5", "10", "invalid_price_ask"),
    ("bid", "50000000", "0.000000001", "invalid_volume"),
    ("bid", "1000", "4.999", "under_min_total_bid"),
])
def test_refuses_what_upbit_refuses(paper, side, price, volume, name):
    with pytest.raises(InvalidOrder) as info:
        paper.place_limit_order("KRW-BTC", side, D(price), D(volume), "r")
    assert info.value.name == name
    assert _balances(paper) == {"KRW": (D("1000000"), D("0"))}


def test_insufficient_funds_and_balances_never_negative(paper):
    with pytest.raises(InsufficientFunds) as info:
        paper.place_limit_order("KRW-BTC", "bid", D("50000000"), D("0.02"), "too-much")
    assert info.value.name == "insufficient_funds_bid"
    with pytest.raises(InsufficientFunds):
        paper.place_limit_order("KRW-BTC", "ask", D("50000000"), D("0.01"), "no-coin")
    assert _balances(paper) == {"KRW": (D("1000000"), D("0"))}


def test_identifier_is_never_reusable(paper):
    order = paper.place_limit_order("KRW-BTC", "bid", D("50000000"), D("0.001"), "same")
    paper.cancel_order(uuid=order.uuid)
    with pytest.raises(InvalidOrder) as info:
        paper.place_limit_order("KRW-BTC", "bid", D("50000000"), D("0.001"), "same")
    assert info.value.name == "duplicate_identifier"
    with pytest.raises(OrderNotFound):
        paper.get_order(identifier="never-placed")


def test_state_survives_a_new_process(db, paper, database_url):
    paper.place_limit_order("KRW-BTC", "bid", D("50000000"), D("0.01"), "persist")
    script = textwrap.dedent(f"""
        from decimal import Decimal as D
        from bot.exchange.paper import PaperExchange
        from bot.storage import Database
        ex = PaperExchange(Database({database_url!r}), start_krw=D("1"), fee_rate=D("0.0005"),
                           min_order_krw=D("5000"))
        ex.settle = lambda market=None: None  # read only
        from bot.money import fmt
        print({{b.currency: fmt(b.balance) + "/" + fmt(b.locked) for b in ex.balances()}})
        print(ex.get_order(identifier="persist").state)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, timeout=60).stdout.splitlines()
    assert out == ["{'KRW': '499750/500250'}", "wait"]
    assert free_balance(paper.balances(), "KRW") == D("499750")


# --- a cancel is a request (cancel_delay) ------------------------------------------


@pytest.fixture
def slow_cancel(db, clock):
    return PaperExchange(db, start_krw=D("1000000"), fee_rate=D("0.0005"),
                         min_order_krw=D("5000"), unit=1, now=clock,
                         cancel_delay=timedelta(seconds=30))


def test_a_delayed_cancel_answers_wait_and_the_order_can_still_fill(db, slow_cancel, clock):
    order = slow_cancel.place_limit_order("KRW-BTC", "bid", D("50000000"), D("0.01"), "slow")
    clock.advance(seconds=70)  # its candle (minute 1) was never stored
    answer = slow_cancel.cancel_order(uuid=order.uuid)
    assert answer.state == "wait" and answer.executed_volume == 0
    assert [o.uuid for o in slow_cancel.open_orders("KRW-BTC")] == [order.uuid]
    assert _balances(slow_cancel)["KRW"] == (D("499750"), D("500250"))  # still reserved
    # the candle arrives while the cancel is pending: the same fill model decides
    _next_candle(db, 1, low="49990000", high="50100000", open_="50050000")
    clock.advance(seconds=10)
    done = slow_cancel.get_order(uuid=order.uuid)
    assert (done.state, done.executed_volume) == ("done", D("0.01"))
    assert [(t.price, t.volume) for t in done.fills] == [(D("50000000"), D("0.01"))]
    with pytest.raises(InvalidOrder):
        slow_cancel.cancel_order(uuid=order.uuid)


def test_a_delayed_cancel_ends_cancel_and_later_candles_meet_nothing(db, slow_cancel, clock):
    order = slow_cancel.place_limit_order("KRW-BTC", "bid", D("50000000"), D("0.01"), "gone")
    clock.advance(seconds=70)  # T0 + 2:11: the cancel takes effect at 2:41
    slow_cancel.cancel_order(uuid=order.uuid)
    clock.advance(seconds=20)
    assert slow_cancel.cancel_order(uuid=order.uuid).state == "wait"  # asked again: same end
    clock.advance(seconds=9)
    assert slow_cancel.get_order(uuid=order.uuid).state == "wait"  # 2:40
    clock.advance(seconds=1)
    ended = slow_cancel.get_order(uuid=order.uuid)
    assert (ended.state, ended.executed_volume, ended.fills) == ("cancel", 0, ())
    assert _balances(slow_cancel) == {"KRW": (D("1000000"), D("0"))}
    _next_candle(db, 3, low="40000000", high="50100000")  # starts after the cancel
    assert slow_cancel.get_order(uuid=order.uuid).state == "cancel"
    assert slow_cancel.open_orders() == []


def test_a_candle_that_starts_before_the_cancel_takes_effect_still_decides(db, slow_cancel,
                                                                          clock):
    order = slow_cancel.place_limit_order("KRW-BTC", "bid", D("50000000"), D("0.01"), "late")
    clock.advance(seconds=70)
    slow_cancel.cancel_order(uuid=order.uuid)  # takes effect at T0 + 2:41
    clock.advance(minutes=2)
    # minute 1 never traded; minute 2 started before the cancel took effect and
    # closes after it: the order meets it, and it is not final yet
    _next_candle(db, 2, low="49990000", high="50100000", open_="50050000", final=False)
    assert slow_cancel.get_order(uuid=order.uuid).state == "wait"
    _next_candle(db, 2, low="49990000", high="50100000", open_="50050000")
    assert slow_cancel.get_order(uuid=order.uuid).state == "done"
