"""The trader's exits and buy guards (docs/semantics.md) on the paper exchange
and a real database, driven bar by bar over hand-built candles: stop-loss,
trailing stop, take-profit and their precedence, cooldown, stop guard, daily
loss limit by the decided candle's day, stand aside, the kill switch on an
exit, a restart in the middle of a position, and the slippage of each fill.

The signal is ``price_action`` alone (WEIGHTS=price_action=1): +1 on a close
above the 199 before it, -1 below them, 0 inside. So a new high buys when
flat, and a dip inside the range holds: only an exit sells it."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest

import bot.trading.trader as trader_module
from bot import rules
from bot.exchange.paper import PaperAccountView, PaperExchange
from bot.models import Candle
from bot.storage import candles as candle_store
from bot.storage import decisions as decision_store
from bot.storage import positions
from bot.trading import guards
from bot.trading.in_force import params_in_force
from bot.trading.lifecycle import TradeContext
from bot.trading.trader import TradeOutcome, trade_market
from testkit.candles import T0, candle
from testkit.clock import FakeClock
from testkit.settings import make_settings

D = Decimal
M = "KRW-BTC"
MINUTE = timedelta(minutes=1)
RISING = [100_000 + 300 * i for i in range(200)]  # bar 199 closes at 159,700: a new high
# The bars after the buy at bar 199, before each test's own.
BOUGHT = {199: RISING[-1], 200: 160_000}  # bar 200 fills the bid at its open, 159,700
ENTRY = D(159_700)


class Bars:
    """Drives the trader as the daemon does, one bar at a time: store the
    bar's final candle (opening at the previous close unless told), set the
    clock just after its close, call :func:`trade_market`."""

    def __init__(self, db, database_url, start: datetime = T0, lag: timedelta = MINUTE,
                 **overrides: str):
        self.db, self.database_url, self.start, self.lag = db, database_url, start, lag
        self.overrides = {"WEIGHTS": "price_action=1", "STOP_LOSS_PCT": "0",
                          "DAILY_LOSS_LIMIT_PCT": "0", **overrides}
        self.clock = FakeClock(start)
        self.closes: list[int] = []
        self.notes: list[str] = []
        self.restart()
        self.history(RISING[:-1])

    def restart(self, **overrides: str) -> None:
        """A new worker over the same database: new settings, exchange, context."""
        self.overrides.update(overrides)
        self.settings = make_settings(self.database_url, **self.overrides)
        s = self.settings
        exchange = PaperExchange(self.db, start_krw=s.paper_start_krw, fee_rate=s.fee_rate,
                                 min_order_krw=s.min_order_krw, unit=s.unit, now=self.clock)
        self.ctx = TradeContext(s, self.db, exchange, now=self.clock,
                                notify=lambda name, **f: self.notes.append(name))

    def ts(self, index: int) -> datetime:
        return self.start + index * MINUTE

    def _candle(self, close, open_=None, low=None, high=None) -> Candle:
        i = len(self.closes)
        opened = open_ if open_ is not None else (self.closes[-1] if self.closes else close)
        self.closes.append(close)
        return candle(M, self.ts(i), close, open_=opened, low=low, high=high)

    def history(self, closes) -> None:
        """Candles stored without deciding (the window before the first decision)."""
        candle_store.upsert_candles(self.db, [self._candle(c) for c in closes], "1m")

    def bar(self, close, *, open_=None, low=None, high=None) -> TradeOutcome:
        row = self._candle(close, open_, low, high)
        candle_store.upsert_candles(self.db, [row], "1m")
        self.clock.current = row.ts + self.lag + timedelta(seconds=1)
        return trade_market(self.ctx, M)

    def run(self, closes: dict[int, int]) -> dict[int, TradeOutcome]:
        out = {}
        for index, close in sorted(closes.items()):
            assert index == len(self.closes), "bars are consecutive"
            out[index] = self.bar(close)
        return out

    def decisions(self) -> dict[int, tuple[str, str]]:
        """{bar: (action, trigger)} as stored."""
        return {self.index(ts): (action, trigger)
                for ts, action, trigger in decision_store.actions(self.db, "paper", M)}

    def fills(self) -> list[tuple[int, str, Decimal]]:
        return [(self.index(f.bar), f.side, f.price)
                for f in positions.fills_by_bar(self.db, "paper", M, 1)]

    def index(self, ts: datetime) -> int:
        return int((ts - self.start) / MINUTE)


@pytest.fixture
def bars(db, database_url):
    def build(**overrides: str) -> Bars:
        return Bars(db, database_url, **overrides)
    return build


# --- exits ---------------------------------------------------------------------------


def test_stop_loss_sells_at_the_first_close_at_or_below_entry_less_the_pct(bars):
    b = bars(STOP_LOSS_PCT="2")  # level 159,700 * 0.98 = 156,506
    out = b.run({**BOUGHT, 201: 157_000, 202: 156_500, 203: 156_000})
    assert [out[i].action for i in (199, 200, 201)] == ["buy", "hold", "hold"]
    assert (out[202].action, out[202].trigger) == ("sell", "stop_loss")
    assert out[202].reason == "stop_loss: close 156,500 <= 156,506 (entry 159,700 - 2%)"
    assert out[202].order.side == "ask" and out[202].order.price == D(156_200)
    assert out[202].order.volume == out[199].order.volume
    # the ask fills at bar 203's open (156,500 >= 156,200); then flat
    assert b.fills() == [(200, "bid", ENTRY), (203, "ask", D(156_500))]
    assert b.decisions()[203] == ("hold", "signal")


def test_trailing_stop_sells_below_the_highest_close_since_the_first_buy_fill(bars):
    b = bars(TRAILING_STOP_PCT="1")
    out = b.run({**BOUGHT, 201: 162_000, 202: 160_400, 203: 160_380})
    assert out[202].action == "hold"  # 162,000 * 0.99 = 160,380 < 160,400
    assert (out[203].action, out[203].trigger) == ("sell", "trailing_stop")
    assert out[203].reason == "trailing_stop: close 160,380 <= 160,380 (peak 162,000 - 1%)"


def test_take_profit_sells_at_the_first_close_at_or_above_entry_plus_the_pct(bars):
    b = bars(TAKE_PROFIT_PCT="1")  # 159,700 * 1.01 = 161,297
    out = b.run({**BOUGHT, 201: 161_296, 202: 161_297})
    assert out[201].action == "hold"  # a new high: the signal alone would hold
    assert (out[202].action, out[202].trigger) == ("sell", "take_profit")
    assert out[202].reason == "take_profit: close 161,297 >= 161,297 (entry 159,700 + 1%)"


@pytest.mark.parametrize(("close", "trigger"), [
    (158_000, "trailing_stop"),  # below 160,000 * 0.99 = 158,400 only
    (156_000, "stop_loss"),  # below both: the stop-loss comes first
    (100_000, "stop_loss"),  # below the range too (the signal sells): the exit names it
])
def test_exit_precedence(bars, close, trigger):
    b = bars(STOP_LOSS_PCT="2", TRAILING_STOP_PCT="1")
    out = b.run({**BOUGHT, 201: close})
    assert (out[201].action, out[201].trigger) == ("sell", trigger)


def test_every_exit_off_at_zero_holds_through_a_crash(bars):
    b = bars()
    out = b.run({**BOUGHT, 201: 120_000})
    assert (out[201].action, out[201].trigger) == ("hold", "signal")


def test_kill_switch_keeps_the_exit_decision_and_places_no_order(bars, db):
    b = bars(STOP_LOSS_PCT="2")
    b.run(BOUGHT)
    b.restart(TRADING_ENABLED="false")
    out = b.bar(156_000)
    assert (out.action, out.trigger, out.order) == ("sell", "kill_switch", None)
    assert out.reason.startswith("stop_loss: close 156,000 <= 156,506")
    assert out.reason.endswith("kill switch: TRADING_ENABLED=false")


@pytest.mark.parametrize("restart_after", [None, 199, 201, 202])
def test_a_restart_mid_position_keeps_the_entry_and_the_trailing_peak(bars, restart_after):
    """The same trailing exit at the same bar whether or not a new worker (new
    exchange object, new context) takes over: after the bid was placed but not
    filled (199), after the peak (201), or after a bar under it (202)."""
    b = bars(TRAILING_STOP_PCT="1")
    series = {**BOUGHT, 201: 162_000, 202: 161_000, 203: 160_500, 204: 160_380}
    seen = {}
    for index, close in series.items():
        seen[index] = b.bar(close)
        if index == restart_after:
            before = guards.holding(b.settings, b.db, M, b.ts(index), D(close))
            b.restart()
            assert guards.holding(b.settings, b.db, M, b.ts(index), D(close)) == before
    assert {i: (o.action, o.trigger) for i, o in seen.items()} == {
        199: ("buy", "signal"), 200: ("hold", "signal"), 201: ("hold", "signal"),
        202: ("hold", "signal"), 203: ("hold", "signal"), 204: ("sell", "trailing_stop")}
    held = guards.holding(b.settings, b.db, M, b.ts(204), D(160_380))
    assert (held.entry, held.peak, held.first_bar) == (ENTRY, D(162_000), b.ts(200))


def test_the_entry_is_the_volume_weighted_price_of_the_position_s_buys(bars, db):
    b = bars(STOP_LOSS_PCT="2")
    b.run(BOUGHT)
    # a second buy fill of the same position (as with an order filled in two
    # parts): the entry is the VWAP of both, fees left out
    first = positions.fills_by_bar(db, "paper", M, 1)[0]
    with db.cursor() as cur:
        cur.execute("INSERT INTO fills (order_id, trade_uuid, mode, market, side, price, volume,"
                    " funds, fee, traded_at) SELECT order_id, 'second', mode, market, side,"
                    " 150000, 3 * volume, 450000 * volume, 0, traded_at + interval '1 minute'"
                    " FROM fills")
    held = guards.holding(b.settings, db, M, b.ts(201), D(160_000))
    assert held.entry == (first.price + 3 * D(150_000)) / 4
    assert held.first_bar == b.ts(200) and held.volume == 4 * first.volume


# --- slippage ------------------------------------------------------------------------


def test_each_fill_records_its_slippage_against_the_decision_close(bars, db):
    b = bars(STOP_LOSS_PCT="2")
    b.bar(RISING[-1])  # bid 160,000 (159,939.55 rounded up)
    b.bar(160_000, open_=159_900, low=159_800, high=160_100)  # fills at the open, 159,900
    b.bar(156_500)  # stop-loss: ask 156,200
    b.bar(156_400, open_=156_000, low=155_900, high=156_300)  # opens under it: at 156,200
    got = [(f.bar, f.side, f.price, f.slippage, f.decision_ts, f.trigger)
           for f in positions.fills_by_bar(db, "paper", M, 1)]
    assert got == [
        (b.ts(200), "bid", D(159_900), D(159_900) / D(159_700) - 1, b.ts(199), "signal"),
        (b.ts(202), "ask", D(156_200), D(156_200) / D(156_500) - 1, b.ts(201), "stop_loss")]
    assert got[0][3] == rules.slippage(D(159_900), D(159_700)) > 0
    assert got[1][3] < 0


# --- guards --------------------------------------------------------------------------


@pytest.mark.parametrize(("cooldown", "expected"), [
    (0, {202: ("buy", "signal")}),  # the sell's own fill bar may buy
    (2, {202: ("hold", "cooldown"), 203: ("hold", "cooldown"), 204: ("buy", "signal")}),
])
def test_cooldown_counts_candles_from_the_last_sell_fill(bars, cooldown, expected):
    b = bars(STOP_LOSS_PCT="2", COOLDOWN_CANDLES=str(cooldown))
    out = b.run({**BOUGHT, 201: 156_000, 202: 170_000, 203: 171_000, 204: 172_000})
    assert out[201].trigger == "stop_loss"
    assert b.fills()[1] == (202, "ask", D(156_000))
    for index, decided in expected.items():
        assert (out[index].action, out[index].trigger) == decided
    if cooldown:
        assert out[202].reason == (
            "score 1.0000 >= 0.2 while flat; cooldown: a sell filled in the 01-05 03:22Z "
            "candle (COOLDOWN_CANDLES=2): no buys until 01-05 03:25Z")
        assert out[202].order is None and out[204].order.side == "bid"


def test_stop_guard_trips_on_the_nth_stop_exit_and_releases_after_the_pause(bars):
    b = bars(STOP_LOSS_PCT="2", STOP_GUARD_EXITS="2", STOP_GUARD_WINDOW_CANDLES="10",
             STOP_GUARD_PAUSE_CANDLES="3")
    b.run({**BOUGHT, 201: 156_000, 202: 161_000, 203: 162_000, 204: 157_000, 205: 163_000,
           206: 164_000, 207: 165_000, 208: 166_000})
    assert b.decisions() == {
        199: ("buy", "signal"), 200: ("hold", "signal"), 201: ("sell", "stop_loss"),
        202: ("buy", "signal"),  # one stop exit (filled in 202): not yet
        203: ("hold", "signal"), 204: ("sell", "stop_loss"),
        205: ("hold", "stop_guard"), 206: ("hold", "stop_guard"), 207: ("hold", "stop_guard"),
        208: ("buy", "signal")}
    assert b.fills() == [(200, "bid", ENTRY), (202, "ask", D(156_000)),
                         (203, "bid", D(161_000)), (205, "ask", D(157_000))]
    row = decision_store.get(b.db, M, b.ts(205))
    assert row.reason.endswith("stop_guard: 2 stop exits within 10 candles (the last in the "
                               "01-05 03:25Z candle): no buys until 01-05 03:29Z")


def test_stop_guard_counts_only_stop_exits(bars):
    """A take-profit is an exit but not a stop: it does not count."""
    b = bars(TAKE_PROFIT_PCT="1", STOP_LOSS_PCT="2", STOP_GUARD_EXITS="1",
             STOP_GUARD_WINDOW_CANDLES="10", STOP_GUARD_PAUSE_CANDLES="5")
    out = b.run({**BOUGHT, 201: 161_500, 202: 162_000})
    assert out[201].trigger == "take_profit"
    assert (out[202].action, out[202].trigger) == ("buy", "signal")


def test_loss_limit_day_is_the_decided_candle_s_close_not_the_wall_clock(db, database_url):
    """Bar 199 closes at 23:59 on 01-04; the trader decides it 90 s late, at
    00:00:30 on 01-05. Its day is 01-04, whose start equity was higher."""
    start = T0 - timedelta(minutes=201)
    with db.cursor() as cur:
        cur.execute("INSERT INTO equity_days (mode, day, start_equity) VALUES"
                    " ('paper', '2026-01-04', 1100000)")
    b = Bars(db, database_url, start=start, lag=timedelta(seconds=89) + MINUTE,
             DAILY_LOSS_LIMIT_PCT="5")
    out = b.bar(RISING[-1])
    assert b.clock() == datetime(2026, 1, 5, 0, 0, 30, tzinfo=T0.tzinfo)
    assert (out.action, out.trigger) == ("hold", "loss_limit")
    assert b.notes == ["risk.loss_limit"]
    with db.cursor() as cur:
        cur.execute("SELECT day FROM equity_days ORDER BY day")
        assert [r[0] for r in cur.fetchall()] == [date(2026, 1, 4)]


def test_the_day_s_start_equity_is_the_equity_at_its_first_decision(bars, db):
    b = bars(DAILY_LOSS_LIMIT_PCT="5")
    b.run(BOUGHT)
    with db.cursor() as cur:
        cur.execute("SELECT day, start_equity FROM equity_days")
        assert cur.fetchall() == [(date(2026, 1, 5), D(1_000_000))]


def test_stand_aside_blocks_buys_and_comes_before_the_loss_limit(bars, db, monkeypatch):
    real = params_in_force
    monkeypatch.setattr(trader_module, "params_in_force",
                        lambda s, d, m: replace(real(s, d, m), verdict="stand_aside"))
    with db.cursor() as cur:
        cur.execute("INSERT INTO equity_days (mode, day, start_equity) VALUES"
                    " ('paper', '2026-01-05', 1100000)")
    b = bars(DAILY_LOSS_LIMIT_PCT="5")
    out = b.bar(RISING[-1])
    assert (out.action, out.trigger, out.order) == ("hold", "stand_aside", None)
    assert "stand_aside: the optimizer's latest verdict" in out.reason
    listed = guards.buy_guards(b.settings, db, M, replace(real(b.settings, db, M),
                                                          verdict="stand_aside"),
                               b.ts(199), loss_limit=True)
    assert [g.trigger for g in listed] == ["stand_aside", "loss_limit"]


def test_stand_aside_never_blocks_an_exit(bars, monkeypatch):
    b = bars(STOP_LOSS_PCT="2")
    b.run(BOUGHT)
    real = params_in_force
    monkeypatch.setattr(trader_module, "params_in_force",
                        lambda s, d, m: replace(real(s, d, m), verdict="stand_aside"))
    out = b.bar(156_000)
    assert (out.action, out.trigger) == ("sell", "stop_loss") and out.order.side == "ask"


def test_the_decision_log_line_names_the_trigger(bars, caplog):
    b = bars(STOP_LOSS_PCT="2")
    b.run(BOUGHT)
    with caplog.at_level(logging.INFO, logger="bot.trading.trader"):
        b.bar(156_000)
    lines = [r for r in caplog.records if getattr(r, "event", "") == "decision"]
    assert [r.fields["trigger"] for r in lines] == ["stop_loss"]
    assert lines[0].fields["action"] == "sell" and lines[0].fields["order"] == "ask"
    assert lines[0].fields["why"] == "stop_loss: close 156,000 <= 156,506 (entry 159,700 - 2%)"


# --- bot status ----------------------------------------------------------------------


def _status(b: Bars) -> tuple[dict, str]:
    from bot.report import status
    from bot.report.render import render
    got = status.collect(b.settings, b.db, PaperAccountView(b.db, D(1_000_000)), {},
                         now=b.clock(), wall=0.0)
    return got["markets"][0], render(got)


def test_status_shows_the_position_s_entry_peak_and_exit_levels(bars):
    b = bars(STOP_LOSS_PCT="2", TRAILING_STOP_PCT="1")
    b.run({**BOUGHT, 201: 162_000, 202: 161_000})
    market, screen = _status(b)
    assert market["exits"] == {"entry": ENTRY, "peak": D(162_000), "since": b.ts(200),
                               "stop_loss": ENTRY * D("0.98"),
                               "trailing_stop": D(162_000) * D("0.99"), "take_profit": None}
    assert ("exits    entry 159,700, peak 162,000 since 01-05 03:20Z: stop-loss 156,506, "
            "trailing 160,380, take-profit off") in screen
    assert market["guards"] == [] and market["decision"]["trigger"] == "signal"


def test_status_shows_an_active_guard_until_when_and_the_last_trigger(bars):
    b = bars(STOP_LOSS_PCT="2", COOLDOWN_CANDLES="2")
    b.run({**BOUGHT, 201: 156_000, 202: 170_000})
    market, screen = _status(b)
    assert market["exits"] is None  # sold
    assert [(g["name"], g["until"]) for g in market["guards"]] == [("cooldown", b.ts(205))]
    assert "guard    cooldown until 01-05 03:25Z: no buys" in screen
    assert market["decision"]["trigger"] == "cooldown"
    assert "HOLD score +1.000 by cooldown" in screen
