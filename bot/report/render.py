"""The one-screen text of ``bot status``: :func:`render` turns the dict that
:func:`bot.report.status.collect` gathers into lines, and reads nothing else.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from bot.report.text import (
    age_text,
    coins_text,
    krw_text,
    pct_text,
    price_text,
    trades_text,
    when_text,
)


def render(status: dict[str, Any]) -> str:
    """The one-screen text of a :func:`bot.report.status.collect` result."""
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
    if status.get("pauses"):
        lines.extend(_render_pauses(status["pauses"], first=account is None))
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


def _render_pauses(pauses: list[dict[str, Any]], *, first: bool) -> list[str]:
    """``paused     KRW-BTC since 01-05 03:20Z by telegram:alice``: one line
    each, under the account (or on their own after the header)."""
    lines = [""] if first else []
    for k, p in enumerate(pauses):
        label = "paused" if k == 0 else ""
        lines.append(f"{label:<10} {p['market'] or 'all markets'} since {when_text(p['since'])}"
                     f" by {p['by']}: no new buys (exits and sells go on)")
    return lines


def _render_worker(role: str, w: dict[str, Any]) -> str:
    seen = "never" if w["age_s"] is None else age_text(w["age_s"]) + " ago"
    return f"{role} {seen}" if w["ok"] else f"{role} SILENT ({seen})"


def _render_account(account: dict[str, Any], pnl: dict[str, Any]) -> list[str]:
    if account.get("equity") is None:
        first = f"balances unknown, exchange {account.get('error') or 'not asked'}"
    else:
        first = f"equity {krw_text(account['equity'])} KRW"
        if account.get("return_pct") is not None:
            first += (f" ({pct_text(account['return_pct'])} since {when_text(account['since'])},"
                      f" start {krw_text(account['start_equity'])})   buy-and-hold "
                      f"{pct_text(account['buy_and_hold_pct'])}")
        else:
            first += " (no trading yet: nothing to compare)"
        first += f"   cash {krw_text(account['krw'])} KRW"
        if account.get("krw_locked"):
            first += f" (+{krw_text(account['krw_locked'])} in orders)"
    lines = [f"{'account':<10} {first}"]
    if pnl:
        lines.append(
            f"{'pnl':<10} today {krw_text(pnl['realised_today'], True)} KRW realised, fees "
            f"{krw_text(pnl['fees_today'])}, {trades_text(pnl['trades_today'])}   total "
            f"{krw_text(pnl['realised_total'], True)} KRW, fees {krw_text(pnl['fees_total'])}, "
            f"{trades_text(pnl['trades_total'])}")
    return lines


PAD = " " * 11  # under the 10-wide label column and its space


def _render_market(e: dict[str, Any]) -> list[str]:
    lines = [_candle_line(e)]
    lines.append(PAD + _decision_text(e["decision"]))
    lines.append(PAD + _position_text(e["position"]))
    if e.get("exits") is not None:
        lines.append(PAD + _exits_text(e["exits"]))
    for g in e.get("guards") or ():
        until = "until it changes" if g["until"] is None else f"until {when_text(g['until'])}"
        lines.append(PAD + f"guard    {g['name']} {until}: no buys")
    lines.append(PAD + _orders_text(e["open_orders"]))
    m = e["pnl"]
    lines.append(PAD + f"pnl      today {krw_text(m['realised_today'], True)} KRW (fees "
                 f"{krw_text(m['fees_today'])}, {trades_text(m['trades_today'])}), total "
                 f"{krw_text(m['realised_total'], True)} KRW (fees {krw_text(m['fees_total'])}, "
                 f"{trades_text(m['trades_total'])})")
    lines.append(PAD + _weights_text(e["weights"]))
    if e.get("in_force"):
        lines.append(PAD + "params   " + _values_text(e["in_force"]["values"]))
    lines.append(PAD + _optimizer_text(e["optimizer"]))
    upbit = e.get("upbit")
    if upbit is not None and (not upbit["listed"] or upbit["warning"] or upbit["cautions"]):
        lines.append(PAD + _upbit_text(upbit))
    return lines


def _upbit_text(u: dict[str, Any]) -> str:
    if not u["listed"]:
        state = "DELISTED"
    elif u["warning"]:
        state = "INVESTMENT WARNING (유의 종목)"
    else:
        state = "caution " + ", ".join(u["cautions"])
    return f"upbit    {state} since {when_text(u['since'])}"


def _candle_line(e: dict[str, Any]) -> str:
    c = e["candle"]
    if c is None:
        candle = "candle   none stored"
    else:
        candle = (f"candle   {when_text(c['ts'])} close {price_text(c['close'])}, "
                  f"{age_text(c['age_s'])} old"
                  f"{'' if c['final'] else ' (in progress)'}{'  STALE' if c['stale'] else ''}")
    aside = (e.get("in_force") or {}).get("standing_aside")
    return (f"{e['market']:<10} {candle}"
            + ("   HALTED by the loss limit" if e["halted"] else "")
            + ("   STANDING ASIDE: no new buys" if aside else "")
            + ("   PAUSED: no new buys" if e.get("paused") else ""))


def _decision_text(d: dict[str, Any] | None) -> str:
    if d is None:
        return "decision none yet"
    reason = d["reason"] if len(d["reason"]) <= 60 else d["reason"][:57] + "..."
    trigger = d.get("trigger") or "signal"
    return (f"decision {when_text(d['candle_ts'])} {d['action'].upper():<4} score "
            f"{d['score']:+.3f} by {trigger}  ({reason})")


def _position_text(p: dict[str, Any] | None) -> str:
    if p is None:
        return "position unknown (no balances from the exchange)"
    if p["volume"] <= 0:
        return "position flat"
    line = (f"position {coins_text(p['volume'])} {p['currency']} = "
            f"{krw_text(p['value_krw'])} KRW, avg entry {price_text(p['avg_entry'])}")
    if p.get("unrealised") is not None:
        line += f", unrealised {krw_text(p['unrealised'], True)}"
    return line


def _exits_text(x: dict[str, Any]) -> str:
    def level(name: str) -> str:
        return "off" if x[name] is None else price_text(x[name])
    return (f"exits    entry {price_text(x['entry'])}, peak {price_text(x['peak'])} since "
            f"{when_text(x['since'])}: stop-loss {level('stop_loss')}, trailing "
            f"{level('trailing_stop')}, take-profit {level('take_profit')}")


def _orders_text(orders: list[dict[str, Any]]) -> str:
    if not orders:
        return "orders   none open"
    return "orders   " + "; ".join(
        f"{o['side']} {coins_text(o['volume'])} @ {price_text(o['price'])} {o['state']} "
        f"{age_text(o['age_s'])}" for o in orders)


def _weights_text(w: dict[str, Any]) -> str:
    vector = " ".join(f"{k} {v * 100:.0f}%" for k, v in w["weights"].items() if v)
    if w["version"] is None:
        return f"weights  default (WEIGHTS): {vector}"
    return f"weights  v{w['version']} ({w['source']}, {when_text(w['adopted_at'])}): {vector}"


def _optimizer_text(o: dict[str, Any] | None) -> str:
    if o is None:
        return "optimizer never ran"
    said = str(o.get("verdict"))
    verdict = {"adopt": f"adopted v{o['version']}", "keep": "kept the parameters",
               "stand_aside": "stood aside"}.get(said, said)
    reason = o["reason"] if len(o["reason"]) <= 70 else o["reason"][:67] + "..."
    return f"optimizer {when_text(o['at'])} {verdict}: {reason}"


def _value_text(name: str, value: object) -> str:
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
