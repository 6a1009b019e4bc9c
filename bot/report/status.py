"""``bot status`` and ``bot health``: is it working, and is it making money.

Gathering is apart from rendering. :func:`collect` reads the database, the
exchange's balances and the workers' heartbeats (Redis) into one plain dict:
that dict, made JSON-safe by :func:`bot.jsonout.jsonable`, is ``bot status --json``, and
:func:`bot.report.render.render` turns it into the one-screen text. Each thing that is wrong
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TextIO

from bot import clock
from bot.config import Settings
from bot.errors import DatabaseUnavailable
from bot.jsonout import dumps
from bot.models import Balance, FillRow, coin_of
from bot.report.account import account_summary, fills_by_market, held_markets, read_balances
from bot.report.render import render
from bot.report.text import age_text, when_text
from bot.storage import keys, reports
from bot.storage import markets as market_store
from bot.storage import optimizer_runs as run_store
from bot.storage import orders as order_store
from bot.storage import pauses as pause_store
from bot.storage import weights as weight_store
from bot.trading import accounting

if TYPE_CHECKING:
    import redis

    from bot.exchange.protocol import Exchange
    from bot.storage import Database
    from bot.storage.reports import NewestCandle
    from bot.trading.params import InForce

ROLES = ("collector", "trader", "optimizer", "beat")
EXIT_OK, EXIT_PROBLEM = 0, 1


# --- heartbeats ---------------------------------------------------------------


def read_heartbeats(client: redis.Redis) -> dict[str, float]:
    """``{role: unix time}`` from every ``bot:heartbeat:*`` key; a worker that
    serves several queues (``collector+trader``) counts for each role."""
    beats: dict[str, float] = {}
    for key in client.scan_iter(match=keys.HEARTBEAT_PREFIX + "*", count=100):
        name = key.decode() if isinstance(key, bytes) else str(key)
        raw = client.get(name)
        if raw is None:  # expired between the scan and the read
            continue
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


def _redis(settings: Settings) -> redis.Redis:
    """A client that answers or fails within seconds (a healthcheck has 10 s)."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry
    return redis.Redis.from_url(settings.celery_backend_url, socket_timeout=3,
                                socket_connect_timeout=3, retry=Retry(NoBackoff(), 1))


def health(settings: Settings, role: str, out: TextIO, *, client: redis.Redis | None = None,
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


# --- gathering ------------------------------------------------------------------


def collect(settings: Settings, db: Database, exchange: Exchange | None,
            heartbeats: Mapping[str, float] | None, *, heartbeat_error: str | None = None,
            markets: Sequence[str] | None = None, now: datetime | None = None,
            wall: float | None = None,
            ban: tuple[datetime, int] | None = None) -> dict[str, Any]:
    """Everything ``bot status`` shows, as one dict (see the module docstring).
    ``ban``: Upbit's 418 ban in force (its end and strikes), from Redis."""
    now = now or clock.now()
    wall = time.time() if wall is None else wall
    markets = tuple(markets or ())
    status: dict[str, Any] = {
        "ok": True, "problems": [], "time": now, "mode": settings.trading_mode,
        "trading_enabled": settings.trading_enabled,
        "limits": {"candle_age_s": settings.status_max_candle_age_seconds,
                   "heartbeat_age_s": settings.status_max_heartbeat_age_seconds},
        "account": None, "loss_limit": None, "pauses": [], "markets": [], "workers": {},
    }
    problems: list[str] = status["problems"]
    try:
        balances, balance_error = read_balances(exchange)
        _gather_storage(status, settings, db, markets, balances, balance_error, now)
    except DatabaseUnavailable as exc:
        problems.append(str(exc))
        status["database"] = "unavailable"
    status["workers"] = _workers(problems, settings, heartbeats, heartbeat_error, wall)
    status["upbit_ban"] = None if ban is None else {"until": ban[0], "strikes": ban[1]}
    if ban is not None:
        problems.append(f"Upbit ban in force until {ban[0].astimezone(UTC):%H:%M:%S}Z (strike "
                        f"{ban[1]}): nothing is sent to Upbit until then")
    status["ok"] = not problems
    return status


@dataclass(frozen=True)
class _Scene:
    """What every market's entry is read against."""

    settings: Settings
    db: Database
    now: datetime
    day_start: datetime
    balances: list[Balance] | None
    closes: dict[str, Decimal]
    by_market: dict[str, list[FillRow]]
    halted: bool


def _gather_storage(status: dict[str, Any], settings: Settings, db: Database,
                    markets: Sequence[str], balances: list[Balance] | None,
                    balance_error: str | None, now: datetime) -> None:
    # Imported here: they pull numpy in, and `bot health` (a healthcheck
    # with 10 s) imports this module without ever gathering.
    from bot.storage import candles as candle_store

    problems: list[str] = status["problems"]
    day_start = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    by_market = fills_by_market(db, settings.trading_mode)
    if not markets:
        # MARKETS=top:N: what the daemon looks after now (the selection, then
        # what it still holds); else MARKETS.
        markets = market_store.managed(settings, db) if settings.markets_top \
            else settings.markets
    closes = candle_store.latest_closes(
        db, sorted(set(market_store.traded(settings, db)) | held_markets(balances)
                   | set(markets)), settings.timeframe)
    status["loss_limit"] = _loss_limit(problems, settings, db, day_start)
    # A pause is asked for, so it is shown but is no problem (exit 0).
    status["pauses"] = [_pause(p) for p in pause_store.all_pauses(db)]
    scene = _Scene(settings, db, now, day_start, balances, closes, by_market,
                   halted=status["loss_limit"]["halted_at"] is not None)
    for market in markets:
        status["markets"].append(_market(scene, market, problems))
    ledgers = [accounting.ledger(m, rows, since=day_start) for m, rows in by_market.items()]
    status["pnl"] = _pnl_total(ledgers)
    status["account"] = account_summary(settings, db, balances, balance_error, closes)
    if balance_error is not None:
        problems.append(f"exchange {balance_error}")


def _loss_limit(problems: list[str], settings: Settings, db: Database,
                day_start: datetime) -> dict[str, Any]:
    day = reports.equity_day(db, settings.trading_mode, day_start.date())
    halted_at = day[1] if day else None
    if halted_at is not None:
        problems.append(f"daily loss limit tripped at {when_text(halted_at)}: no new buys until "
                        "00:00 UTC")
    return {"limit_pct": settings.daily_loss_limit_pct,
            "start_equity_today": day[0] if day else None, "halted_at": halted_at}


def _market(scene: _Scene, market: str, problems: list[str]) -> dict[str, Any]:
    """One market's entry; the key order is the JSON's (``bot status --json``)."""
    from bot.trading.in_force import params_in_force

    settings, db = scene.settings, scene.db
    entry: dict[str, Any] = {"market": market, "halted": scene.halted}
    candle = reports.newest_candle(db, market, settings.timeframe)
    entry["candle"] = _candle(scene, market, candle, problems)
    entry["decision"] = _decision(db, settings.trading_mode, market)
    entry["open_orders"] = [
        {"side": o.side, "price": o.price, "volume": o.volume, "state": o.state,
         "identifier": o.identifier,
         "age_s": round((scene.now - (o.sent_at or o.created_at)).total_seconds(), 1)}
        for o in order_store.active(db, settings.trading_mode, market)]
    led = accounting.ledger(market, scene.by_market.get(market, ()), since=scene.day_start)
    entry["pnl"] = _pnl(led)
    entry["position"] = _position(market, scene.balances, scene.closes.get(market), led)
    in_force = params_in_force(settings, db, market)
    entry["weights"] = _weights(db, market, in_force)
    entry["in_force"] = _in_force(in_force)
    entry["exits"], entry["guards"] = _rules_state(settings, db, market, candle, in_force,
                                                   scene.halted)
    entry["optimizer"] = _optimizer(db, market)
    entry["upbit"] = _upbit_says(db, market, problems)
    paused = pause_store.pause_of(db, market)
    entry["paused"] = None if paused is None else _pause(paused)
    return entry


def _pause(p: pause_store.Pause) -> dict[str, Any]:
    return {"market": p.market, "since": p.since, "by": p.by}


def _upbit_says(db: Database, market: str, problems: list[str]) -> dict[str, Any] | None:
    """What Upbit says of the market (bot.data.markets), None before the first read."""
    row = market_store.get(db, market)
    if row is None:
        return None
    says = {"listed": row.listed, "warning": row.warning, "cautions": list(row.cautions),
            "since": row.changed_at, "tick": row.tick_size, "tick_at": row.tick_at,
            "bid_fee": row.bid_fee, "ask_fee": row.ask_fee, "min_total": row.min_total}
    if not row.listed:
        problems.append(f"{market}: Upbit no longer lists it: no new buys")
    elif row.warning:
        problems.append(f"{market}: under investment warning (유의 종목) since "
                        f"{when_text(row.changed_at)}: no new buys")
    elif row.cautions:
        problems.append(f"{market}: Upbit flags {', '.join(row.cautions)} since "
                        f"{when_text(row.changed_at)}")
    return says


def _candle(scene: _Scene, market: str, candle: NewestCandle | None,
            problems: list[str]) -> dict[str, Any] | None:
    if candle is None:
        problems.append(f"{market}: no candles stored")
        return None
    limit = scene.settings.status_max_candle_age_seconds
    age = (scene.now - candle.ts).total_seconds()
    closed_ago = age - timedelta(minutes=scene.settings.unit).total_seconds()
    if closed_ago > limit:
        problems.append(f"{market}: newest candle closed {age_text(closed_ago)} ago "
                        f"(limit {limit} s)")
    return {"ts": candle.ts, "close": candle.close, "final": candle.final,
            "age_s": round(max(age, 0.0), 1), "stale": closed_ago > limit}


def _decision(db: Database, mode: str, market: str) -> dict[str, Any] | None:
    decision = reports.latest_decision(db, mode, market)
    return None if decision is None else {
        "candle_ts": decision.candle_ts, "action": decision.action,
        "trigger": decision.trigger, "score": round(decision.score, 4),
        "reason": decision.reason, "weights_version": decision.weights_version}


def _weights(db: Database, market: str, in_force: InForce) -> dict[str, Any]:
    from bot.trading.params import SETTING

    weights = weight_store.current(db, market)
    if weights is None or in_force.sources["weights"] == SETTING:
        return {"version": None, "source": "settings", "weights": in_force.weights}
    return {"version": weights.version, "source": weights.source,
            "adopted_at": weights.created_at, "weights": in_force.weights}


def _optimizer(db: Database, market: str) -> dict[str, Any] | None:
    run = run_store.latest(db, market)
    return None if run is None else {
        "at": run.started_at, "verdict": run.verdict, "adopted": run.adopted,
        "reason": run.reason, "version": run.weights_version,
        "objective_new": run.objective_holdout_new,
        "objective_current": run.objective_holdout_current}


def _rules_state(settings: Settings, db: Database, market: str, candle: NewestCandle | None,
                 params: InForce,
                 halted: bool) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The position's exits (entry, peak, each level; None when not held) and
    the buy guards in force, as the trader would see them at the newest stored
    candle (bot/trading/guards.py, the trader's own reads)."""
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


_VALUES = ("threshold", "cooldown_candles", "stop_loss_pct", "trailing_stop_pct",
           "take_profit_pct")


def _in_force(p: InForce) -> dict[str, Any]:
    """Each value in force with its source."""
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


# --- the command ----------------------------------------------------------------


def run(settings: Settings, out: TextIO, *, as_json: bool = False,
        markets: Sequence[str] | None = None) -> int:
    """``bot status``: gather, print (text or one JSON object), exit 0 or 1."""
    status = _gather(settings, markets)
    out.write(dumps(status) + "\n" if as_json else render(status))
    out.flush()
    return EXIT_OK if status["ok"] else EXIT_PROBLEM


def _gather(settings: Settings, markets: Sequence[str] | None) -> dict[str, Any]:
    import redis

    from bot.exchange.bans import read_ban
    from bot.exchange.factory import make_exchange
    from bot.storage import Database
    db = Database(settings.database_url)
    exchange = None
    try:
        exchange = make_exchange(settings, db, view=True)
        heartbeats: dict[str, float] | None = None
        error = None
        ban = None
        try:
            client = _redis(settings)
            heartbeats = read_heartbeats(client)
            ban = read_ban(client)
        except redis.RedisError as exc:
            error = f"redis unavailable: {exc}"
        return collect(settings, db, exchange, heartbeats, heartbeat_error=error,
                       markets=markets, ban=ban)
    finally:
        close = getattr(exchange, "close", None)
        if close is not None:
            close()
        db.close()
