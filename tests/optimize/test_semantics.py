"""docs/semantics.md as a naive bar-by-bar reference (one step per bar,
bot.trading.strategies.decide, bot.rules, Decimal), and the engines held to it on
random series with exits and guards on: the exact backtest here; the trader
through the real database and paper exchange, and the batch evaluator, in the
tests further down."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from bot import rules
from bot.models import SIGNAL_NAMES, CandleArrays
from bot.money import floor_volume
from bot.optimize import backtest as bt
from bot.trading import strategies as st
from testkit.series import DAY0, candles

D = Decimal


def dec(x: float) -> Decimal:
    return Decimal(repr(float(x)))


@dataclass
class Reference:
    """What the reference decided: per bar (action, trigger); fills as
    (bar, side, price, volume, fee); the final equity."""

    decisions: list[tuple[str, str]] = field(default_factory=list)
    fills: list[tuple[int, str, Decimal, Decimal, Decimal]] = field(default_factory=list)
    final: Decimal = D(0)


def reference(series: CandleArrays, weights, params: bt.BacktestParams) -> Reference:
    exits, guards = params.exit_rules(), params.guard_rules()
    fee, min_order = dec(params.fee_rate), dec(params.min_order_krw)
    sizing = 1 + fee + dec(params.fee_buffer)
    max_position, loss_pct = dec(params.max_position_krw), dec(params.daily_loss_limit_pct)
    period = bt.bar_period(series.ts)
    cash, coin, order = dec(params.cash), D(0), None
    events: list[rules.FillEvent] = []
    stops: list[int] = []
    last_sell = None
    day_start: dict[int, Decimal] = {}
    halted: set[int] = set()
    out = Reference()
    day, day_open = None, None
    n = len(series.ts)
    for i in range(n):
        ts = int(series.ts[i])
        if order is not None:  # the order placed at the previous close
            side, limit, volume, trigger = order
            price = rules.fill_price(side, limit, dec(series.open[i]), dec(series.low[i]),
                                     dec(series.high[i]))
            if price is not None:
                value = price * volume
                paid = value * fee
                if side == "bid":
                    cash -= value + paid
                    coin += volume
                else:
                    cash += value - paid
                    coin -= volume
                    last_sell = ts
                    if trigger in rules.STOP_EXITS:
                        stops.append(ts)
                events.append(rules.FillEvent(ts, side, price, volume))
                out.fills.append((i, side, price, volume, paid))
            order = None
        if series.ts[i] // 86_400 != day:
            day, day_open = series.ts[i] // 86_400, float(series.open[i])
        close = dec(series.close[i])
        holding = coin * close >= min_order
        window = series.close[max(0, i - st.WINDOW + 1):i + 1]
        decision = st.decide(window, day_open, weights, params.threshold, holding)
        action, trigger = decision.action, rules.SIGNAL
        if i >= st.FIRST_DECISION and loss_pct > 0:
            today = (ts + period) // 86_400
            equity = cash + coin * close
            start = day_start.setdefault(today, equity)
            if rules.daily_loss_reached(equity, start, loss_pct):
                halted.add(today)
        if holding and i >= st.FIRST_DECISION:
            position = rules.position_of(events, min_order)
            if position is not None:
                first = int(np.searchsorted(series.ts, position.first_bar))
                peak = dec(max(series.close[first:i + 1]))
                exit_trigger = exits.trigger(close, position.entry, peak)
                if exit_trigger:
                    action, trigger = "sell", exit_trigger
        if action == "buy":
            blocks = [
                (params.stand_aside, rules.STAND_ASIDE),
                ((ts + period) // 86_400 in halted, rules.LOSS_LIMIT),
                (guards.stop_guard_blocks(ts, stops, period), rules.STOP_GUARD),
                (guards.cooldown_blocks(ts, last_sell, period), rules.COOLDOWN),
            ]
            block = next((name for applies, name in blocks if applies), None)
            if block:
                action, trigger = "hold", block
        out.decisions.append((action, trigger))
        if action == "buy":
            price = bt.limit_price(float(series.close[i]), params.aggressiveness, "bid")
            volume = floor_volume(cash / (price * sizing))
            if max_position > 0:
                volume = min(volume, floor_volume(max_position / price))
            if price * volume >= min_order:
                order = ("bid", price, volume, trigger)
        elif action == "sell":
            price = bt.limit_price(float(series.close[i]), params.aggressiveness, "ask")
            if price * coin >= min_order:
                order = ("ask", price, coin, trigger)
    out.final = cash + coin * dec(series.close[-1])
    return out


def engine_decisions(result: bt.BacktestResult) -> list[tuple[str, str]]:
    return [(bt.ACTION_NAMES[a], bt.TRIGGERS[t])
            for a, t in zip(result.actions.tolist(), result.triggers.tolist(), strict=True)]


def engine_fills(result: bt.BacktestResult) -> list[tuple[int, str, float]]:
    return sorted([(int(b), "bid", p) for b, p in zip(result.buy_bars.tolist(),
                                                      result.buy_prices.tolist(), strict=True)]
                  + [(int(b), "ask", p) for b, p in zip(result.sell_bars.tolist(),
                                                        result.sell_prices.tolist(),
                                                        strict=True)])


# --- random series with everything on -------------------------------------------------------

weights_strategy = hs.lists(hs.sampled_from([0.0, 0.0, 0.5, 1.0, 2.0, 3.0]), min_size=6,
                            max_size=6).filter(lambda w: sum(w) > 0)
steps_strategy = hs.lists(hs.sampled_from([-8, -3, -1, 0, 0, 1, 3, 8, 40, -40]),
                          min_size=300, max_size=700)
params_strategy = hs.builds(
    bt.BacktestParams,
    threshold=hs.sampled_from([0.1, 0.2, 1 / 3, 0.5]),
    aggressiveness=hs.sampled_from([0.0, 0.0015, 0.004]),
    cash=hs.sampled_from([1_000_000.0, 6_000.0, 5_020.0]),
    max_position_krw=hs.sampled_from([0.0, 0.0, 300_000.0]),
    stop_loss_pct=hs.sampled_from([0.0, 1.0, 2.0, 3.5]),
    trailing_stop_pct=hs.sampled_from([0.0, 0.0, 1.0, 2.5]),
    take_profit_pct=hs.sampled_from([0.0, 0.0, 2.0, 5.0]),
    cooldown_candles=hs.sampled_from([0, 0, 1, 5, 30]),
    stop_guard_exits=hs.sampled_from([0, 1, 2]),
    stop_guard_window_candles=hs.sampled_from([10, 60]),
    stop_guard_pause_candles=hs.sampled_from([5, 40]),
    daily_loss_limit_pct=hs.sampled_from([0.0, 0.5, 2.0]),
    stand_aside=hs.sampled_from([False, False, False, True]),
)


def random_series(steps, offset: int, gaps: bool = False) -> CandleArrays:
    rng = np.random.default_rng(len(steps))
    close = np.maximum(1_000_000.0 + np.cumsum(np.array(steps, dtype=np.float64)) * 1000.0,
                       100_000.0)
    n = len(close)
    open_ = np.concatenate([[close[0]], close[:-1]]) + rng.integers(-2, 3, n) * 1000.0
    spread = rng.integers(0, 4, (2, n)) * 1000.0
    high = np.maximum(open_, close) + spread[0]
    low = np.minimum(open_, close) - spread[1]
    series = candles(close, high, low, open_, start=DAY0 + offset)
    if gaps:  # minutes without trades: no candle
        keep = np.sort(rng.choice(n, size=int(n * 0.8), replace=False))
        keep[0] = 0
        series = CandleArrays(series.ts[keep], series.open[keep], series.high[keep],
                              series.low[keep], series.close[keep], series.volume[keep])
    return series


@settings(max_examples=60, deadline=None)
@given(steps_strategy, weights_strategy, params_strategy, hs.integers(0, 86_399),
       hs.booleans())
def test_exact_engine_equals_the_reference_bar_for_bar(steps, raw, params, offset, gaps):
    series = random_series(steps, offset, gaps)
    weights = dict(zip(SIGNAL_NAMES, raw, strict=True))
    result = bt.run_backtest(series, weights, params)
    ref = reference(series, weights, params)
    assert engine_decisions(result) == ref.decisions
    assert engine_fills(result) == [(b, s, float(p)) for b, s, p, _, _ in ref.fills]
    assert result.fees == pytest.approx(float(sum((f[4] for f in ref.fills), D(0))), abs=1e-6)
    assert result.final_equity == pytest.approx(float(ref.final), rel=1e-12)
    # with the engine's own holding state, every decision is decide()'s or an exit or guard
    opens = st.day_opens(series.ts, series.open)
    for i in range(st.FIRST_DECISION, len(series.ts)):
        window = series.close[i - st.WINDOW + 1:i + 1]
        d = st.decide(window, float(opens[i]), weights, params.threshold,
                      bool(result.holding[i]))
        trigger = bt.TRIGGERS[int(result.triggers[i])]
        if trigger == rules.SIGNAL:
            assert bt.ACTION_NAMES[int(result.actions[i])] == d.action, f"bar {i}"
        assert result.scores[i] == d.score


# --- the batch evaluator -----------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(steps_strategy, weights_strategy, params_strategy, hs.integers(0, 86_399),
       hs.booleans())
def test_batch_evaluator_equals_the_reference_bar_for_bar(steps, raw, params, offset, gaps):
    from bot.optimize.batch import trace_batch
    series = random_series(steps, offset, gaps)
    weights = dict(zip(SIGNAL_NAMES, raw, strict=True))
    trace = trace_batch(series, weights, params)
    ref = reference(series, weights, params)
    assert [(bt.ACTION_NAMES[a], bt.TRIGGERS[t]) for a, t in zip(
        trace.actions.tolist(), trace.triggers.tolist(), strict=True)] == ref.decisions
    sides = ["bid" if s == bt.BUY else "ask" for s in trace.fill_sides.tolist()]
    assert list(zip(trace.fill_bars.tolist(), sides, trace.fill_prices.tolist(),
                    strict=True)) == [(b, s, float(p)) for b, s, p, _, _ in ref.fills]
    assert trace.final_equity == pytest.approx(float(ref.final), rel=1e-9)


# --- the trader, through the real database and the paper exchange ---------------------------


def _setting(value: float) -> str:
    return repr(float(value)) if value != int(value) else str(int(value))


def trader_env(weights, params: bt.BacktestParams) -> dict[str, str]:
    return {
        "WEIGHTS": ",".join(f"{k}={v!r}" for k, v in weights.items() if v),
        "THRESHOLD": repr(params.threshold), "AGGRESSIVENESS": repr(params.aggressiveness),
        "FEE_RATE": repr(params.fee_rate), "FEE_BUFFER": repr(params.fee_buffer),
        "MIN_ORDER_KRW": _setting(params.min_order_krw),
        "PAPER_START_KRW": _setting(params.cash),
        "MAX_POSITION_KRW": _setting(params.max_position_krw),
        "STOP_LOSS_PCT": _setting(params.stop_loss_pct),
        "TRAILING_STOP_PCT": _setting(params.trailing_stop_pct),
        "TAKE_PROFIT_PCT": _setting(params.take_profit_pct),
        "COOLDOWN_CANDLES": str(params.cooldown_candles),
        "STOP_GUARD_EXITS": str(params.stop_guard_exits),
        "STOP_GUARD_WINDOW_CANDLES": str(params.stop_guard_window_candles),
        "STOP_GUARD_PAUSE_CANDLES": str(params.stop_guard_pause_candles),
        "DAILY_LOSS_LIMIT_PCT": _setting(params.daily_loss_limit_pct),
    }


def run_trader(db, database_url, series: CandleArrays, weights, params, monkeypatch):
    """Drive the trader as the daemon does: each bar's final candle stored, the
    clock just past its close, one decision pass (which first reconciles the
    previous bar's order on the paper exchange)."""
    from datetime import UTC, datetime, timedelta

    import bot.trading.trader as trader_module
    from bot.exchange.paper import PaperExchange
    from bot.models import Candle
    from bot.storage import candles as candle_store
    from bot.storage import decisions as decision_store
    from bot.storage import positions
    from bot.trading.lifecycle import TradeContext
    from testkit.clock import FakeClock
    from testkit.settings import make_settings

    if params.stand_aside:
        real = trader_module.params_in_force
        monkeypatch.setattr(trader_module, "params_in_force", lambda *a: __import__(
            "dataclasses").replace(real(*a), verdict="stand_aside"))
    settings = make_settings(database_url, **trader_env(weights, params))
    clock = FakeClock(datetime.fromtimestamp(int(series.ts[0]), UTC))
    exchange = PaperExchange(db, start_krw=settings.paper_start_krw, fee_rate=settings.fee_rate,
                             min_order_krw=settings.min_order_krw, unit=1, now=clock)
    ctx = TradeContext(settings, db, exchange, now=clock)
    market = settings.markets[0]
    rows = [Candle(market, datetime.fromtimestamp(int(series.ts[i]), UTC), dec(series.open[i]),
                   dec(series.high[i]), dec(series.low[i]), dec(series.close[i]), D(1),
                   dec(series.close[i]), 1, {"final": True}) for i in range(len(series.ts))]
    first = st.FIRST_DECISION
    candle_store.upsert_candles(db, rows[:first], "1m")
    for i in range(first, len(rows)):
        candle_store.upsert_candles(db, [rows[i]], "1m")
        clock.current = rows[i].ts + timedelta(minutes=1, seconds=1)
        assert trade_market_ok(trader_module.trade_market(ctx, market))
    index = {int(t): i for i, t in enumerate(series.ts.tolist())}
    decisions = [(action, trigger) for _, action, trigger in
                 decision_store.actions(db, "paper", market)]
    fills = [(index[int(f.bar.timestamp())], "bid" if f.side == "bid" else "ask", f.price,
              f.volume, f.fee) for f in positions.fills_by_bar(db, "paper", market, 1)]
    balances = {b.currency: b.balance + b.locked for b in exchange.balances()}
    coin = balances.get(market.split("-", 1)[1], D(0))
    return decisions, fills, balances.get("KRW", D(0)) + coin * dec(series.close[-1])


def trade_market_ok(outcome) -> bool:
    return outcome.status == "decided"


@settings(max_examples=25, deadline=None)
@given(hs.lists(hs.sampled_from([-8, -3, -1, 0, 0, 1, 3, 8, 40, -40]), min_size=260,
                max_size=340),
       weights_strategy, params_strategy, hs.integers(0, 1439), hs.booleans())
def test_trader_equals_the_reference_bar_for_bar(migrated_db, database_url, steps, raw, params,
                                                 minute, gaps):
    db = migrated_db  # emptied here for each example (the db fixture does it per test)
    with db.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                    " AND tablename <> 'schema_migrations'")
        cur.execute("TRUNCATE " + ", ".join(r[0] for r in cur.fetchall())
                    + " RESTART IDENTITY CASCADE")
    series = random_series(steps, 60 * minute, gaps)
    weights = dict(zip(SIGNAL_NAMES, raw, strict=True))
    ref = reference(series, weights, params)
    with pytest.MonkeyPatch.context() as patch:
        decisions, fills, final = run_trader(db, database_url, series, weights, params, patch)
    assert len(decisions) == len(series.ts) - st.FIRST_DECISION
    assert decisions == ref.decisions[st.FIRST_DECISION:]
    assert fills == ref.fills
    assert final == ref.final
    # and the exact engine, the same run
    result = bt.run_backtest(series, weights, params)
    assert engine_decisions(result)[st.FIRST_DECISION:] == decisions
