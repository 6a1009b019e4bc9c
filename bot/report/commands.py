"""The bot's commands from Telegram (and the pauses ``bot pause``/``bot
resume`` share with them): text in, text out, no HTTP. The poller
(bot/report/telegram.py) decides who may ask and hands the text here.

- ``/status`` ``/balance`` ``/pnl [days]`` ``/weights`` ``/help`` only read.
- ``/pause [market]`` ``/resume [market]`` store a pause (bot/storage/pauses.py)
  that the buy guards read (bot/trading/guards.py): no new buys, exits and
  sells go on, across restarts.
- ``/sell MARKET`` says what it would do; ``/sell MARKET confirm`` places that
  ask through the order life cycle, under an identifier made from the
  Telegram update, so one confirm can never become two orders.

:func:`has_side_effect` tells the poller which commands change something:
it stores the update's offset *before* handling those (at most once).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from bot.errors import LockBusy, UsageError
from bot.exchange.protocol import free_balance
from bot.logs import event
from bot.models import coin_of
from bot.report.account import read_balances
from bot.report.text import (
    age_text,
    coins_text,
    krw_text,
    pct_text,
    price_text,
    trades_text,
    when_text,
)
from bot.storage import markets as market_store
from bot.storage import orders as order_store
from bot.storage import pauses as pause_store
from bot.storage import weights as weight_store

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.exchange.protocol import Exchange
    from bot.storage import Database
    from bot.trading.lifecycle import TradeContext
    from bot.trading.trader import OrderPlan

log = logging.getLogger(__name__)

HELP = """Commands:
/status: candles, decisions, positions, PnL, problems
/balance: cash, coins, equity
/pnl [days]: realised PnL and fees over the last days (default 1)
/pause [market]: no new buys (every market, or one); exits and sells go on
/resume [market]: buy again (every pause, or one market's)
/sell MARKET: what selling it now would do; /sell MARKET confirm does it
/weights: the parameters in force and the optimizer's last verdict
/help: this list"""

_WORD = re.compile(r"^/([A-Za-z0-9_]{1,32})(?:@\w+)?$")
MAX_PNL_DAYS = 366


@dataclass(frozen=True)
class Request:
    """One command as the poller hands it over."""

    text: str
    update_id: int
    by: str  # who asked, for the pauses: telegram:<username or id>


def command_word(text: str) -> str | None:
    """``pause`` for ``/pause KRW-BTC`` or ``/pause@upbit_bot``; None for
    anything that is not a command. Safe to log: a bounded word, no text."""
    first = text.strip().split(maxsplit=1)[0] if text.strip() else ""
    match = _WORD.match(first)
    return match.group(1).lower() if match else None


def has_side_effect(text: str) -> bool:
    """Whether handling ``text`` changes something (a pause, an order)."""
    word = command_word(text)
    args = text.split()[1:]
    return word in ("pause", "resume") or (word == "sell" and _confirmed(args))


def _confirmed(args: list[str]) -> bool:
    return len(args) >= 2 and args[1].lower() == "confirm"


def market_name(raw: str) -> str:
    """``krw-btc`` -> ``KRW-BTC``; raises UsageError for a name that is no KRW market."""
    market = raw.strip().upper()
    if not re.fullmatch(r"KRW-[A-Z0-9]{1,15}", market):
        raise UsageError(f"{raw!r} is not a KRW market such as KRW-BTC")
    return market


# --- pauses (shared with bot pause / bot resume) -----------------------------------------


def set_pause(db: Database, market: str | None, by: str, now: Any) -> str:
    """Pause one market (or all: None) and say so."""
    scope = pause_store.ALL if market is None else market
    paused = pause_store.pause(db, scope, now, by)
    which = "all markets" if market is None else market
    event(log, "pause.set", scope=scope, by=by, since=paused.since)
    fresh = paused.by == by and paused.since == now
    said = "Paused" if fresh else "Already paused"
    return (f"{said} {which} since {when_text(paused.since)} by {paused.by}: no new buys;"
            " exits and sells go on.")


def end_pause(db: Database, market: str | None, by: str) -> str:
    """End one market's pause (None: every pause) and say what is left."""
    ended = pause_store.resume(db, market)
    for p in ended:
        event(log, "pause.ended", scope=p.scope, by=by, since=p.since)
    which = "every market" if market is None else market
    text = f"Resumed {which}: buys allowed again." if ended else f"{which} was not paused."
    still = None if market is None else pause_store.pause_of(db, market)
    if still is not None:
        text += (f" Still paused: all markets since {when_text(still.since)} by {still.by}"
                 " (/resume alone ends it).")
    return text


# --- the handler -------------------------------------------------------------------------


class Commands:
    """Answers commands. ``view`` is the exchange to look at (paper: read
    only); ``ctx`` the trader's context a confirmed /sell places through;
    ``heartbeats`` reads the workers' heartbeats (None: unknown); ``lock(market)``
    holds the market's order lock (the trader's and reconcile's) around a sell."""

    def __init__(self, settings: Settings, db: Database, ctx: TradeContext, view: Exchange,
                 *, heartbeats: Callable[[], Mapping[str, float] | None] = lambda: None,
                 lock: Callable[[str], AbstractContextManager[None]] | None = None) -> None:
        self.settings, self.db, self.ctx, self.view = settings, db, ctx, view
        self.heartbeats = heartbeats
        self.lock = lock or (lambda market: contextlib.nullcontext())

    def handle(self, request: Request) -> str:
        """The answer to one command (every failure becomes words)."""
        word = command_word(request.text)
        args = request.text.split()[1:]
        handler = {"status": self._status, "balance": self._balance, "pnl": self._pnl,
                   "pause": self._pause, "resume": self._resume, "sell": self._sell,
                   "weights": self._weights, "help": self._help,
                   "start": self._help}.get(word or "")
        if handler is None:
            return f"Unknown command {request.text.split()[0][:40]!r}. /help lists them."
        try:
            return handler(request, args)
        except UsageError as exc:
            return f"/{word}: {exc}"

    @property
    def _mode(self) -> str:
        return "[LIVE]" if self.settings.live else "[paper]"

    def _help(self, request: Request, args: list[str]) -> str:
        return HELP

    def _markets(self) -> tuple[str, ...]:
        return market_store.managed(self.settings, self.db)

    # --- reading ---

    def _status(self, request: Request, args: list[str]) -> str:
        from bot.report import status as status_report
        s = status_report.collect(self.settings, self.db, self.view, self.heartbeats(),
                                  heartbeat_error="not read by the Telegram poller"
                                  if self.heartbeats() is None else None,
                                  now=self.ctx.now())
        return _status_text(self._mode, s)

    def _balance(self, request: Request, args: list[str]) -> str:
        from bot.storage import candles as candle_store
        from bot.trading import accounting
        balances, error = read_balances(self.view)
        if balances is None:
            return f"{self._mode} balances unknown: exchange {error}"
        closes = candle_store.latest_closes(
            self.db, [f"KRW-{b.currency}" for b in balances if b.currency != "KRW"],
            self.settings.timeframe)
        lines = [f"{self._mode} balance"]
        for b in balances:
            held = b.balance + b.locked
            locked = f" ({coins_text(b.locked)} in orders)" if b.locked else ""
            if b.currency == "KRW":
                lines.insert(1, f"cash {krw_text(held)} KRW"
                             + (f" ({krw_text(b.locked)} in orders)" if b.locked else ""))
            elif held > 0:
                close = closes.get(f"KRW-{b.currency}")
                value = "no price" if close is None else f"{krw_text(held * close)} KRW"
                lines.append(f"{b.currency} {coins_text(held)}{locked} = {value}")
        lines.append(f"equity {krw_text(accounting.equity(balances, closes))} KRW")
        return "\n".join(lines)

    def _pnl(self, request: Request, args: list[str]) -> str:
        from bot.report.daily import daily_report
        try:
            days = Decimal(args[0]) if args else Decimal(1)
        except ArithmeticError:
            raise UsageError(f"{args[0]!r} is not a number of days") from None
        if not 0 < days <= MAX_PNL_DAYS:
            raise UsageError(f"days must be above 0 and at most {MAX_PNL_DAYS}")
        report = daily_report(self.settings, self.db, None, now=self.ctx.now(),
                              hours=float(days * 24))
        lines = [f"{self._mode} last {days.normalize():f} day(s): realised "
                 f"{krw_text(report['realised'], True)} KRW, fees {krw_text(report['fees'])}"
                 f", {trades_text(report['trades'])}"]
        lines += [f"{m['market']}: {krw_text(m['realised'], True)} KRW, fees "
                  f"{krw_text(m['fees'])}, {trades_text(m['trades'])}"
                  for m in report["markets"] if m["trades"]]
        return "\n".join(lines)

    def _weights(self, request: Request, args: list[str]) -> str:
        from bot.storage import optimizer_runs as run_store
        from bot.trading.in_force import params_in_force
        lines = [f"{self._mode} parameters in force"]
        for market in self._markets():
            p = params_in_force(self.settings, self.db, market)
            stored = weight_store.current(self.db, market)
            version = "default" if p.version is None else f"v{p.version}"
            vector = " ".join(f"{k} {v * 100:.0f}%" for k, v in p.weights.items() if v)
            lines.append(f"{market} {version}{' STANDING ASIDE' if p.standing_aside else ''}"
                         f"{'' if stored is None else ' since ' + when_text(stored.created_at)}")
            lines.append(f"  {vector}")
            lines.append(f"  threshold {p.threshold}, cooldown {p.cooldown_candles}, stop-loss "
                         f"{p.stop_loss_pct} %, trailing {p.trailing_stop_pct} %, take-profit "
                         f"{p.take_profit_pct} %")
            run = run_store.latest(self.db, market)
            lines.append("  optimizer never ran" if run is None else
                         f"  optimizer {when_text(run.started_at)} {run.verdict}: "
                         f"{_short(run.reason, 120)}")
        return "\n".join(lines)

    # --- changing ---

    def _pause(self, request: Request, args: list[str]) -> str:
        market = market_name(args[0]) if args else None
        text = set_pause(self.db, market, request.by, self.ctx.now())
        return f"{text} /resume{'' if market is None else ' ' + market} to buy again."

    def _resume(self, request: Request, args: list[str]) -> str:
        market = market_name(args[0]) if args else None
        return end_pause(self.db, market, request.by)

    def _sell(self, request: Request, args: list[str]) -> str:
        if not args:
            raise UsageError("name the market: /sell KRW-BTC")
        market = market_name(args[0])
        try:
            with self.lock(market):
                return self._sell_locked(request, market, confirm=_confirmed(args))
        except LockBusy:
            return (f"Not selling {market}: the trader is working on its orders right now;"
                    " send it again in a moment.")

    def _sell_locked(self, request: Request, market: str, *, confirm: bool) -> str:
        from bot.trading.lifecycle import send_order
        identifier = sell_identifier(self.settings.trading_mode, market, request.update_id)
        done = order_store.by_identifier(self.db, identifier)
        if done is not None:  # this very confirm was handled already
            return f"Already placed for this confirm: {_order_text(done)} ({done.state})."
        plan = self._sell_plan(market)
        if isinstance(plan, str):
            return f"Not selling {market}: {plan}"
        order, close = plan
        what = (f"sell {coins_text(order.volume)} {coin_of(market)} at {price_text(order.price)}"
                f" (limit, last close {price_text(close)} - AGGRESSIVENESS "
                f"{self.settings.aggressiveness * 100:f} %) = {krw_text(order.value)} KRW")
        if not self.settings.trading_enabled:
            return f"Not selling {market}: kill switch on (TRADING_ENABLED=false); it would {what}."
        if not confirm:
            return f"{self._mode} Would {what}.\nSend /sell {market} confirm to place it."
        now = self.ctx.now()
        with self.db.cursor() as cur:
            order_id = order_store.insert_new(
                cur, identifier=identifier, mode=self.settings.trading_mode, market=market,
                side="ask", price=order.price, volume=order.volume, decision_id=None,
                created_at=now)
        row = order_store.by_id(self.db, order_id)
        assert row is not None  # written just above, in this process
        state = send_order(self.ctx, row)
        return (f"{self._mode} Placed: {what}; state {state}, identifier {identifier}. A buy may"
                f" follow on the next signal: /pause {market} to stop that.")

    def _sell_plan(self, market: str) -> tuple[OrderPlan, Decimal] | str:
        from bot.storage import candles as candle_store
        from bot.trading.terms import terms_of
        from bot.trading.trader import plan_sell
        open_orders = order_store.active(self.db, self.settings.trading_mode, market)
        if open_orders:
            return (f"an order is still open ({'; '.join(map(_order_text, open_orders))}):"
                    " wait for it to fill or be cancelled")
        close = candle_store.latest_closes(self.db, [market], self.settings.timeframe).get(market)
        if close is None:
            return "no candle stored for it: no price to sell at"
        coins = free_balance(self.ctx.exchange.balances(), coin_of(market))
        if coins <= 0:
            return f"no {coin_of(market)} held"
        terms = terms_of(self.settings, self.db, market)
        plan = plan_sell(coins, close, aggressiveness=self.settings.aggressiveness,
                         min_order_krw=terms.min_order_krw, tick=terms.tick)
        return plan if isinstance(plan, str) else (plan, close)


def sell_identifier(mode: str, market: str, update_id: int) -> str:
    """Unique per Telegram update: a confirm handled twice finds its order."""
    return f"ubot-{mode}-{market}-tg{update_id}-ask"


def _order_text(o: order_store.OrderRow) -> str:
    return f"{o.side} {coins_text(o.volume)} @ {price_text(o.price)} {o.state}"


def _short(text: str, size: int) -> str:
    return text if len(text) <= size else text[:size - 3] + "..."


# --- /status, condensed for a phone --------------------------------------------------------


def _status_text(mode: str, s: dict[str, Any]) -> str:
    verdict = "OK" if s["ok"] else f"{len(s['problems'])} PROBLEM(S)"
    lines = [f"{mode} {when_text(s['time'])} {verdict}"
             + ("" if s["trading_enabled"] else " KILL SWITCH ON")]
    account = s.get("account") or {}
    if account.get("equity") is not None:
        lines.append(f"equity {krw_text(account['equity'])} KRW"
                     + ("" if account.get("return_pct") is None
                        else f" ({pct_text(account['return_pct'])})")
                     + f", cash {krw_text(account['krw'])}")
    for p in s.get("pauses") or ():
        lines.append(f"PAUSED {p['market'] or 'all markets'} since {when_text(p['since'])}"
                     f" by {p['by']}")
    for e in s["markets"]:
        lines.extend(_market_lines(e))
    if s["problems"]:
        lines.append("problems:")
        lines.extend(f"- {p}" for p in s["problems"])
    return "\n".join(lines)


def _market_lines(e: dict[str, Any]) -> list[str]:
    c = e["candle"]
    candle = "no candle" if c is None else f"candle {age_text(c['age_s'])} old" + (
        " STALE" if c["stale"] else "")
    flags = " PAUSED" if e.get("paused") else ""
    lines = [f"{e['market']}: {candle}{flags}"]
    d = e["decision"]
    lines.append("  no decision yet" if d is None else
                 f"  {d['action'].upper()} {d['score']:+.2f} by {d.get('trigger') or 'signal'}"
                 f" {when_text(d['candle_ts'])}")
    pos = e["position"]
    if pos is None:
        lines.append("  position unknown")
    elif pos["volume"] <= 0:
        lines.append("  flat")
    else:
        unreal = "" if pos.get("unrealised") is None else \
            f", unrealised {krw_text(pos['unrealised'], True)}"
        lines.append(f"  {coins_text(pos['volume'])} {pos['currency']} = "
                     f"{krw_text(pos['value_krw'])} KRW{unreal}")
    m = e["pnl"]
    lines.append(f"  pnl today {krw_text(m['realised_today'], True)}, total "
                 f"{krw_text(m['realised_total'], True)}")
    return lines
