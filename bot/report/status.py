"""``bot status`` and ``bot health``: is it working, and is it making money.

Gathering is apart from rendering. :func:`collect` reads the database, the
exchange's balances and the workers' heartbeats (Redis) into one plain dict:
that dict, made JSON-safe by :func:`bot.jsonout.jsonable`, is ``bot status --json``, and
:func:`render` turns it into the one-screen text. Each thing that is wrong
(a market without a fresh candle, a silent worker, the loss limit tripped, the
exchange, the database or Redis unreachable) becomes one line in
``problems``; any problem makes the exit code 1, so the command doubles as a
healthcheck. Nothing here raises for an unreachable service: it says so.

``today`` means since 00:00 UTC, the day the daily loss limit counts. Ages of
candles are on the daemon's clock; heartbeat ages on the wall clock (the
workers write ``time.time()``).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TextIO

from bot import clock
from bot.config import Settings
from bot.errors import BotError, DatabaseUnavailable, TemporaryError
from bot.jsonout import dumps
from bot.models import Balance, FillRow, coin_of
from bot.storage import keys
from bot.trading import accounting

ROLES = ("collector", "trader", "optimizer", "beat")
EXIT_OK, EXIT_PROBLEM = 0, 1


# --- heartbeats ---------------------------------------------------------------


def read_heartbeats(client: Any) -> dict[str, float]:
    """``{role: unix time}`` from every ``bot:heartbeat:*`` key; a worker that
    serves several queues (``collector+trader``) counts for each role."""
    beats: dict[str, float] = {}
    for key in client.scan_iter(match=keys.HEARTBEAT_PREFIX + "*", count=100):
        name = key.decode() if isinstance(key, bytes) else str(key)
        raw = client.get(name)
        try:
            at = float(raw)
        except (TypeError, ValueError):
            continue
        for role in name[len(keys.HEARTBEAT_PREFIX):].split("+"):
            beats[role] = max(beats.get(role, 0.0), at)
    return beats


def heartbeat_verdict(role: str, last: float | None, limit: float,
                      wall: float) -> tuple[bool, str]:
    """(healthy, one line) for one role's heartbeat."""
    if last is None:
        return False, f"{role}: no heartbeat recorded"
    age = max(0.0, wall - last)
    if age > limit:
        return False, f"{role}: heartbeat {age_text(age)} old (limit {limit:.0f} s)"
    return True, f"{role}: heartbeat {age_text(age)} old"


def _redis(settings: Settings) -> Any:
    """A client that answers or fails within seconds (a healthcheck has 10 s)."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry
    return redis.Redis.from_url(settings.celery_backend_url, socket_timeout=3,
                                socket_connect_timeout=3, retry=Retry(NoBackoff(), 1))


def health(settings: Settings, role: str, out: TextIO, *, client: Any = None,
           wall: float | None = None) -> int:
    """``bot health ROLE``: exit 0 when the role's heartbeat is younger than
    STATUS_MAX_HEARTBEAT_AGE_SECONDS, else 1; one line either way."""
    import redis
    try:
        beats = read_heartbeats(client if client is not None else _redis(settings))
    except redis.RedisError as exc:
        out.write(f"{role}: heartbeat unknown, redis unavailable: {exc}\n")
        return EXIT_PROBLEM
    ok, line = heartbeat_verdict(role, beats.get(role), settings.status_max_heartbeat_age_seconds,
                                 time.time() if wall is None else wall)
    out.write(line + "\n")
    return EXIT_OK if ok else EXIT_PROBLEM


# --- gathering ------------------------------------------------------------------


def collect(settings: Settings, db: Any, exchange: Any, heartbeats: Mapping[str, float] | None,
            *, heartbeat_error: str | None = None, markets: Sequence[str] | None = None,
            now: datetime | None = None, wall: float | None = None) -> dict[str, Any]:
    """Everything ``bot status`` shows, as one dict (see the module docstring)."""
    now = now or clock.now()
    wall = time.time() if wall is None else wall
    markets = tuple(markets or settings.markets)
    status: dict[str, Any] = {
        "ok": True, "problems": [], "time": now, "mode": settings.trading_mode,
        "trading_enabled": settings.trading_enabled,
        "limits": {"candle_age_s": settings.status_max_candle_age_seconds,
                   "heartbeat_age_s": settings.status_max_heartbeat_age_seconds},
        "account": None, "loss_limit": None, "markets": [], "workers": {},
    }
    problems: list[str] = status["problems"]
    try:
        balances, balance_error = _balances(exchange)
        _gather_storage(status, settings, db, markets, balances, balance_error, now)
    except DatabaseUnavailable as exc:
        problems.append(str(exc))
        status["database"] = "unavailable"
    status["workers"] = _workers(problems, settings, heartbeats, heartbeat_error, wall)
    status["ok"] = not problems
    return status


def _balances(exchange: Any) -> tuple[list[Balance] | None, str | None]:
    if exchange is None:
        return None, "no exchange"
    try:
        return list(exchange.balances()), None
    except DatabaseUnavailable:
        raise
    except (TemporaryError, OSError) as exc:
        return None, f"unreachable: {type(exc).__name__}: {exc}"
    except BotError as exc:  # it answered, with a refusal (keys, IP, permissions)
        return None, f"refused: {type(exc).__name__}: {exc}"


def _gather_storage(status: dict[str, Any], settings: Settings, db: Any, markets: Sequence[str],
                    balances: list[Balance] | None, balance_error: str | None,
                    now: datetime) -> None:
    from bot.storage import candles as candle_store
    from bot.storage import optimizer_runs as run_store
    from bot.storage import orders as order_store
    from bot.storage import reports
    from bot.storage import weights as weight_store
    from bot.trading.in_force import params_in_force
    from bot.trading.params import SETTING

    problems: list[str] = status["problems"]
    mode, tf = settings.trading_mode, settings.timeframe
    period = timedelta(minutes=settings.unit)
    day_start = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    limit = settings.status_max_candle_age_seconds

    by_market: dict[str, list[FillRow]] = defaultdict(list)
    for fill in reports.fills(db, mode):
        by_market[fill.market].append(fill)
    held = {f"KRW-{b.currency}" for b in balances or () if b.currency != "KRW"}
    closes = candle_store.latest_closes(db, sorted(set(settings.markets) | held | set(markets)),
                                        tf)
    day = reports.equity_day(db, mode, day_start.date())
    halted_at = day[1] if day else None
    status["loss_limit"] = {"limit_pct": settings.daily_loss_limit_pct,
                            "start_equity_today": day[0] if day else None,
                            "halted_at": halted_at}
    if halted_at is not None:
        problems.append(f"daily loss limit tripped at {when(halted_at)}: no new buys until "
                        "00:00 UTC")

    for market in markets:
        entry: dict[str, Any] = {"market": market, "halted": halted_at is not None}
        candle = reports.newest_candle(db, market, tf)
        if candle is None:
            entry["candle"] = None
            problems.append(f"{market}: no candles stored")
        else:
            age = (now - candle.ts).total_seconds()
            closed_ago = age - period.total_seconds()
            entry["candle"] = {"ts": candle.ts, "close": candle.close, "final": candle.final,
                               "age_s": round(max(age, 0.0), 1),
                               "stale": closed_ago > limit}
            if closed_ago > limit:
                problems.append(f"{market}: newest candle closed {age_text(closed_ago)} ago "
                                f"(limit {limit} s)")
        decision = reports.latest_decision(db, mode, market)
        entry["decision"] = None if decision is None else {
            "candle_ts": decision.candle_ts, "action": decision.action,
            "trigger": decision.trigger, "score": round(decision.score, 4),
            "reason": decision.reason, "weights_version": decision.weights_version}
        entry["open_orders"] = [
            {"side": o.side, "price": o.price, "volume": o.volume, "state": o.state,
             "identifier": o.identifier,
             "age_s": round((now - (o.sent_at or o.created_at)).total_seconds(), 1)}
            for o in order_store.active(db, mode, market)]
        led = accounting.ledger(market, by_market.get(market, ()), since=day_start)
        entry["pnl"] = _pnl(led)
        entry["position"] = _position(market, balances, closes.get(market), led)
        weights = weight_store.current(db, market)
        in_force = params_in_force(settings, db, market)
        entry["weights"] = (
            {"version": None, "source": "settings", "weights": in_force.weights}
            if weights is None or in_force.sources["weights"] == SETTING else
            {"version": weights.version, "source": weights.source,
             "adopted_at": weights.created_at, "weights": in_force.weights})
        entry["in_force"] = _in_force(in_force)
        entry["exits"], entry["guards"] = _rules_state(settings, db, market, candle, in_force,
                                                       halted_at is not None)
        run = run_store.latest(db, market)
        entry["optimizer"] = None if run is None else {
            "at": run.started_at, "verdict": run.verdict, "adopted": run.adopted,
            "reason": run.reason, "version": run.weights_version,
            "objective_new": run.objective_holdout_new,
            "objective_current": run.objective_holdout_current}
        status["markets"].append(entry)

    ledgers = [accounting.ledger(m, rows, since=day_start) for m, rows in by_market.items()]
    status["pnl"] = _pnl_total(ledgers)
    status["account"] = _account(settings, db, balances, balance_error, closes, now)
    if balance_error is not None:
        problems.append(f"exchange {balance_error}")


def _rules_state(settings: Settings, db: Any, market: str, candle: Any, params: Any,
                 halted: bool) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The position's exits (entry, peak, each level; None when not held) and
    the buy guards in force (``params``: bot.trading.params.InForce), as the trader
    would see them at the newest stored candle (bot/trading/guards.py, the trader's
    own reads)."""
    if candle is None:
        return None, []
    from bot.trading import guards
    held = guards.holding(settings, db, market, candle.ts, candle.close)
    exits = None
    if held is not None and held.volume * candle.close >= settings.min_order_krw:
        exits = {"entry": held.entry, "peak": held.peak, "since": held.first_bar,
                 **guards.exit_levels(guards.exit_rules(params), held)}
    active = [{"name": g.trigger, "until": g.until, "reason": g.reason}
              for g in guards.buy_guards(settings, db, market, params, candle.ts,
                                         loss_limit=halted)]
    return exits, active


def daily_report(settings: Settings, db: Any, exchange: Any, *, now: datetime | None = None,
                 hours: float = 24) -> dict[str, Any]:
    """The last ``hours`` in numbers: realised PnL, fees and trades (per market
    and in total), equity now against the start and against buy-and-hold.
    Raises :class:`~bot.errors.DatabaseUnavailable`; an unreachable exchange
    only leaves the equity unknown (``error`` says why)."""
    from bot.storage import candles as candle_store
    from bot.storage import reports
    now = now or clock.now()
    since = now - timedelta(hours=hours)
    balances, error = _balances(exchange)
    by_market: dict[str, list[FillRow]] = defaultdict(list)
    for fill in reports.fills(db, settings.trading_mode):
        by_market[fill.market].append(fill)
    names = sorted(set(settings.markets) | set(by_market))
    held = {f"KRW-{b.currency}" for b in balances or () if b.currency != "KRW"}
    closes = candle_store.latest_closes(db, sorted(set(names) | held), settings.timeframe)
    ledgers = [accounting.ledger(m, by_market.get(m, ()), since=since) for m in names]
    account = _account(settings, db, balances, error, closes, now)
    zero = Decimal(0)
    return {
        "mode": settings.trading_mode, "since": since, "until": now, "hours": hours,
        "realised": sum((x.realised_since for x in ledgers), zero),
        "fees": sum((x.fees_since for x in ledgers), zero),
        "trades": sum(x.trades_since for x in ledgers),
        "realised_total": sum((x.realised for x in ledgers), zero),
        "equity": account.get("equity"), "start_equity": account.get("start_equity"),
        "started": account.get("since"), "return_pct": account.get("return_pct"),
        "buy_and_hold_pct": account.get("buy_and_hold_pct"), "error": error,
        "markets": [{"market": x.market, "realised": x.realised_since, "fees": x.fees_since,
                     "trades": x.trades_since, "holding": x.volume} for x in ledgers],
    }


_VALUES = ("threshold", "cooldown_candles", "stop_loss_pct", "trailing_stop_pct",
           "take_profit_pct")


def _in_force(p: Any) -> dict[str, Any]:
    """Each value in force (bot.trading.params.InForce) with its source."""
    return {"version": p.version, "standing_aside": p.standing_aside,
            "values": {name: {"value": getattr(p, name), "source": p.sources[name]}
                       for name in _VALUES}}


def _pnl(led: accounting.Ledger) -> dict[str, Any]:
    return {"realised_today": led.realised_since, "realised_total": led.realised,
            "fees_today": led.fees_since, "fees_total": led.fees,
            "trades_today": led.trades_since, "trades_total": led.trades}


def _pnl_total(ledgers: list[accounting.Ledger]) -> dict[str, Any]:
    zero = Decimal(0)
    return {"realised_today": sum((x.realised_since for x in ledgers), zero),
            "realised_total": sum((x.realised for x in ledgers), zero),
            "fees_today": sum((x.fees_since for x in ledgers), zero),
            "fees_total": sum((x.fees for x in ledgers), zero),
            "trades_today": sum(x.trades_since for x in ledgers),
            "trades_total": sum(x.trades for x in ledgers)}


def _position(market: str, balances: list[Balance] | None, close: Decimal | None,
              led: accounting.Ledger) -> dict[str, Any] | None:
    coin = coin_of(market)
    if balances is None:
        return None  # unknown: the exchange did not answer
    balance = next((b for b in balances if b.currency == coin), None)
    volume = Decimal(0) if balance is None else balance.balance + balance.locked
    entry = (balance.avg_buy_price if balance is not None and balance.avg_buy_price > 0
             else led.avg_entry)
    return {"currency": coin, "volume": volume,
            "locked": Decimal(0) if balance is None else balance.locked,
            "value_krw": None if close is None else volume * close,
            "avg_entry": entry if volume > 0 else None,
            "unrealised": (None if close is None or not entry or volume <= 0
                           else volume * (close - entry))}


def _account(settings: Settings, db: Any, balances: list[Balance] | None,
             balance_error: str | None, closes: dict[str, Decimal],
             now: datetime) -> dict[str, Any]:
    from bot.storage import reports
    mode = settings.trading_mode
    since = reports.started(db, mode)
    first = reports.first_equity(db, mode)
    start_equity = first[1] if first else (None if settings.live else settings.paper_start_krw)
    account: dict[str, Any] = {"error": balance_error, "since": since,
                               "start_equity": start_equity}
    if balances is None:
        return account
    krw = next((b for b in balances if b.currency == "KRW"), Balance("KRW", Decimal(0)))
    equity = accounting.equity(balances, closes)
    account.update(krw=krw.balance, krw_locked=krw.locked, equity=equity,
                   return_pct=None, buy_and_hold_pct=None)
    if since is not None and start_equity is not None:
        start_prices = {m: reports.close_at(db, m, settings.timeframe, since)
                        for m in settings.markets}
        held = accounting.buy_and_hold(start_equity, start_prices, closes, settings.fee_rate)
        account.update(return_pct=_round(accounting.pct(equity, start_equity)),
                       buy_and_hold=held,
                       buy_and_hold_pct=_round(accounting.pct(held, start_equity)))
    return account


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _workers(problems: list[str], settings: Settings, heartbeats: Mapping[str, float] | None,
             error: str | None, wall: float) -> dict[str, Any]:
    limit = settings.status_max_heartbeat_age_seconds
    workers: dict[str, Any] = {}
    if heartbeats is None:
        problems.append(f"heartbeats unknown: {error or 'redis unavailable'}")
        return {role: {"last": None, "age_s": None, "ok": False} for role in ROLES}
    for role in ROLES:
        last = heartbeats.get(role)
        ok, line = heartbeat_verdict(role, last, limit, wall)
        workers[role] = {"last": None if last is None else datetime.fromtimestamp(last, UTC),
                         "age_s": None if last is None else round(max(0.0, wall - last), 1),
                         "ok": ok}
        if not ok:
            problems.append(line)
    return workers


# --- output -------------------------------------------------------------------


def age_text(seconds: float) -> str:
    s = int(round(max(seconds, 0)))
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    if s < 172800:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def when(ts: datetime | None) -> str:
    return "-" if ts is None else ts.astimezone(UTC).strftime("%m-%d %H:%MZ")


def krw(value: Decimal | None, signed: bool = False) -> str:
    """An amount in whole won with thousands separators: ``-1,234``."""
    if value is None:
        return "-"
    return f"{value:{'+' if signed else ''},.0f}"


def price(value: Decimal | None) -> str:
    """A price: whole won from 100 KRW up, else the decimals the tick allows."""
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.8f}".rstrip("0").rstrip(".") or "0"


def coins(value: Decimal) -> str:
    text = f"{value:.8f}".rstrip("0").rstrip(".")
    return text or "0"


def trades_text(count: int) -> str:
    return f"{count} trade" + ("" if count == 1 else "s")


def pct_text(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f} %"


def render(status: dict[str, Any]) -> str:
    """The one-screen text of a :func:`collect` result."""
    lines: list[str] = []
    mode = "LIVE" if status["mode"] == "live" else "paper"
    switch = "trading on" if status["trading_enabled"] else \
        "KILL SWITCH: trading off (TRADING_ENABLED=false)"
    verdict = "OK" if status["ok"] else f"{len(status['problems'])} PROBLEM(S)"
    lines.append(f"upbit-bot  {status['time'].astimezone(UTC):%Y-%m-%d %H:%M:%S}Z   "
                 f"mode {mode}   {switch}   {verdict}")
    account = status.get("account")
    if account is not None:
        lines.append("")
        lines.extend(_render_account(account, status.get("pnl") or {}))
    for entry in status["markets"]:
        lines.append("")
        lines.extend(_render_market(entry))
    lines.append("")
    lines.append(f"{'workers':<10} " + "   ".join(
        _render_worker(role, w) for role, w in status["workers"].items()))
    if status["problems"]:
        lines.append(f"{'problems':<10} " + status["problems"][0])
        lines.extend(" " * 11 + p for p in status["problems"][1:])
    else:
        lines.append(f"{'problems':<10} none")
    return "\n".join(lines) + "\n"


def _render_worker(role: str, w: dict[str, Any]) -> str:
    seen = "never" if w["age_s"] is None else age_text(w["age_s"]) + " ago"
    return f"{role} {seen}" if w["ok"] else f"{role} SILENT ({seen})"


def _render_account(account: dict[str, Any], pnl: dict[str, Any]) -> list[str]:
    if account.get("equity") is None:
        first = f"balances unknown, exchange {account.get('error') or 'not asked'}"
    else:
        first = f"equity {krw(account['equity'])} KRW"
        if account.get("return_pct") is not None:
            first += (f" ({pct_text(account['return_pct'])} since {when(account['since'])},"
                      f" start {krw(account['start_equity'])})   buy-and-hold "
                      f"{pct_text(account['buy_and_hold_pct'])}")
        else:
            first += " (no trading yet: nothing to compare)"
        first += f"   cash {krw(account['krw'])} KRW"
        if account.get("krw_locked"):
            first += f" (+{krw(account['krw_locked'])} in orders)"
    lines = [f"{'account':<10} {first}"]
    if pnl:
        lines.append(
            f"{'pnl':<10} today {krw(pnl['realised_today'], True)} KRW realised, fees "
            f"{krw(pnl['fees_today'])}, {trades_text(pnl['trades_today'])}   total "
            f"{krw(pnl['realised_total'], True)} KRW, fees {krw(pnl['fees_total'])}, "
            f"{trades_text(pnl['trades_total'])}")
    return lines


def _render_market(e: dict[str, Any]) -> list[str]:
    pad = " " * 11
    c = e["candle"]
    if c is None:
        candle = "candle   none stored"
    else:
        candle = (f"candle   {when(c['ts'])} close {price(c['close'])}, {age_text(c['age_s'])} old"
                  f"{'' if c['final'] else ' (in progress)'}{'  STALE' if c['stale'] else ''}")
    aside = (e.get("in_force") or {}).get("standing_aside")
    lines = [f"{e['market']:<10} {candle}" + ("   HALTED by the loss limit" if e["halted"]
                                              else "")
             + ("   STANDING ASIDE: no new buys" if aside else "")]
    d = e["decision"]
    if d is None:
        lines.append(pad + "decision none yet")
    else:
        reason = d["reason"] if len(d["reason"]) <= 60 else d["reason"][:57] + "..."
        trigger = d.get("trigger") or "signal"
        lines.append(pad + f"decision {when(d['candle_ts'])} {d['action'].upper():<4} score "
                     f"{d['score']:+.3f} by {trigger}  ({reason})")
    p = e["position"]
    if p is None:
        lines.append(pad + "position unknown (no balances from the exchange)")
    elif p["volume"] > 0:
        line = (f"position {coins(p['volume'])} {p['currency']} = {krw(p['value_krw'])} KRW,"
                f" avg entry {price(p['avg_entry'])}")
        if p.get("unrealised") is not None:
            line += f", unrealised {krw(p['unrealised'], True)}"
        lines.append(pad + line)
    else:
        lines.append(pad + "position flat")
    x = e.get("exits")
    if x is not None:
        def level(name: str) -> str:
            return "off" if x[name] is None else price(x[name])
        lines.append(pad + f"exits    entry {price(x['entry'])}, peak {price(x['peak'])} since "
                     f"{when(x['since'])}: stop-loss {level('stop_loss')}, trailing "
                     f"{level('trailing_stop')}, take-profit {level('take_profit')}")
    for g in e.get("guards") or ():
        until = "until it changes" if g["until"] is None else f"until {when(g['until'])}"
        lines.append(pad + f"guard    {g['name']} {until}: no buys")
    orders = e["open_orders"]
    if orders:
        lines.append(pad + "orders   " + "; ".join(
            f"{o['side']} {coins(o['volume'])} @ {price(o['price'])} {o['state']} "
            f"{age_text(o['age_s'])}" for o in orders))
    else:
        lines.append(pad + "orders   none open")
    m = e["pnl"]
    lines.append(pad + f"pnl      today {krw(m['realised_today'], True)} KRW (fees "
                 f"{krw(m['fees_today'])}, {trades_text(m['trades_today'])}), total "
                 f"{krw(m['realised_total'], True)} KRW (fees {krw(m['fees_total'])}, "
                 f"{trades_text(m['trades_total'])})")
    w = e["weights"]
    vector = " ".join(f"{k} {v * 100:.0f}%" for k, v in w["weights"].items() if v)
    if w["version"] is None:
        lines.append(pad + f"weights  default (WEIGHTS): {vector}")
    else:
        lines.append(pad + f"weights  v{w['version']} ({w['source']}, {when(w['adopted_at'])}):"
                     f" {vector}")
    if e.get("in_force"):
        lines.append(pad + "params   " + _values_text(e["in_force"]["values"]))
    o = e["optimizer"]
    if o is None:
        lines.append(pad + "optimizer never ran")
    else:
        verdict = {"adopt": f"adopted v{o['version']}", "keep": "kept the parameters",
                   "stand_aside": "stood aside"}.get(o.get("verdict"), o.get("verdict"))
        reason = o["reason"] if len(o["reason"]) <= 70 else o["reason"][:67] + "..."
        lines.append(pad + f"optimizer {when(o['at'])} {verdict}: {reason}")
    return lines


def _value_text(name: str, value: Any) -> str:
    if name == "threshold":
        return f"threshold {value}"
    if name == "cooldown_candles":
        return f"cooldown {value} candles" if value else "cooldown off"
    label = {"stop_loss_pct": "stop-loss", "trailing_stop_pct": "trailing stop",
             "take_profit_pct": "take-profit"}[name]
    return f"{label} {value} %" if value else f"{label} off"


def _values_text(values: dict[str, dict[str, Any]]) -> str:
    """``threshold 0.45, cooldown 15 candles (optimizer v3); stop-loss 5 %,
    trailing stop off, take-profit off (settings)``: the values in force,
    grouped by source in order of first appearance."""
    groups: dict[str, list[str]] = {}
    for name, v in values.items():
        groups.setdefault(v["source"], []).append(_value_text(name, v["value"]))
    return "; ".join(f"{', '.join(texts)} ({'settings' if source == 'setting' else source})"
                     for source, texts in groups.items())


def run(settings: Settings, out: TextIO, *, as_json: bool = False,
        markets: Sequence[str] | None = None) -> int:
    """``bot status``: gather, print (text or one JSON object), exit 0 or 1."""

    import redis

    from bot.exchange.protocol import make_exchange
    from bot.storage import Database
    db = Database(settings.database_url)
    exchange = None
    try:
        exchange = make_exchange(settings, db, view=True)
        heartbeats: dict[str, float] | None = None
        error = None
        try:
            heartbeats = read_heartbeats(_redis(settings))
        except redis.RedisError as exc:
            error = f"redis unavailable: {exc}"
        status = collect(settings, db, exchange, heartbeats, heartbeat_error=error,
                         markets=markets)
    finally:
        close = getattr(exchange, "close", None)
        if close is not None:
            close()
        db.close()
    if as_json:
        out.write(dumps(status) + "\n")
    else:
        out.write(render(status))
    out.flush()
    return EXIT_OK if status["ok"] else EXIT_PROBLEM
