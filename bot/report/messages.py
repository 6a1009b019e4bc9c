"""One short human message per event: :func:`format_message` turns an event
(one of ``NOTIFY_EVENT_NAMES``) and its fields, as the jobs pass them, into
the text bot/report/notify.py sends. Pure: no network, no storage.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from bot.logs import redact
from bot.report.text import (
    field_coins_text,
    field_krw_text,
    field_pct_text,
    field_price_text,
    trades_text,
)

MAX_TEXT = 3500  # Telegram's limit is 4096 characters


def repeated_failure(task: str, failures: int, error: str, detail: str = "",
                     market: str | None = None) -> str:
    """``collect KRW-BTC has failed 3 times in a row: ExchangeTemporaryError: ...``"""
    what = f"{task} {market}" if market else task
    text = f"{what} has failed {failures} times in a row: {error}"
    if detail:
        text += f": {detail[:300]}"
    return text


def _filled(f: Mapping[str, Any]) -> str:
    coin = str(f.get("market", "")).partition("-")[2]
    verb = "BUY" if f.get("side") == "bid" else "SELL"
    return (f"{f.get('market')} {verb} filled: {field_coins_text(f.get('volume'))} {coin} at "
            f"{field_price_text(f.get('price'))} KRW = {field_krw_text(f.get('funds'))} KRW "
            f"(fee {field_krw_text(f.get('fee'))})")


def _cancelled(f: Mapping[str, Any]) -> str:
    coin = str(f.get("market", "")).partition("-")[2]
    side = "buy" if f.get("side") == "bid" else "sell"
    why = "not filled in time" if f.get("reason") == "timeout" else str(f.get("reason"))
    text = (f"{f.get('market')} {side} order cancelled ({why}): "
            f"{field_coins_text(f.get('volume'))} {coin} at {field_price_text(f.get('price'))} KRW")
    executed = f.get("executed")
    if executed:  # a part filled before the cancel took
        text += f"; {field_coins_text(executed)} {coin} of it filled"
    return text


def _loss_limit(f: Mapping[str, Any]) -> str:
    try:
        drop = (1 - Decimal(str(f["equity"])) / Decimal(str(f["start_equity"]))) * 100
        below = f" ({drop:.2f} % below)"
    except (KeyError, ArithmeticError, ValueError):
        below = ""
    return (f"Daily loss limit tripped: equity {field_krw_text(f.get('equity'))} KRW against "
            f"{field_krw_text(f.get('start_equity'))} KRW at the day's start{below}, limit "
            f"{f.get('limit_pct')} %. No new buys until 00:00 UTC.")


def _adopted(f: Mapping[str, Any]) -> str:
    text = f"{f.get('market')}: new weights adopted (v{f.get('version')}): {f.get('weights')}"
    if f.get("params"):
        text += f"; {f['params']}"
    if f.get("resumed"):
        text += "; buys resume after standing aside"
    return text + (f". {f['reason']}" if f.get("reason") else "")


def _stood_aside(f: Mapping[str, Any]) -> str:
    version = f.get("version")
    using = f"v{version}" if version is not None else "the settings"
    text = (f"{f.get('market')}: standing aside: no new buys until the optimizer adopts a "
            "parameter set (exits and sells go on).")
    if f.get("holdout_return") is not None:
        return text + (f" The parameters in force ({using}) lost "
                       f"{field_pct_text(float(f['holdout_return']) * 100)} on the holdout and "
                       "no candidate qualifies.")
    return text + (f" {f['reason']}" if f.get("reason") else "")


def _failing(f: Mapping[str, Any]) -> str:
    return repeated_failure(str(f.get("task", "?")), int(f.get("failures", 0)),
                            str(f.get("error", "")), str(f.get("detail", "") or ""),
                            f.get("market"))


def summary_text(f: Mapping[str, Any]) -> str:
    """The daily summary's text from :func:`bot.report.daily.daily_summary`'s
    fields."""
    hours = f.get("hours", 24)
    lines = [f"Daily summary (last {hours:g} h): realised PnL "
             f"{field_krw_text(f.get('realised'), True)} KRW, fees "
             f"{field_krw_text(f.get('fees'))} KRW, {trades_text(f.get('trades', 0))}."]
    if f.get("equity") is not None:
        lines.append(_equity_line(f) + ".")
    elif f.get("error"):
        lines.append(f"Equity unknown: {f['error']}.")
    for m in f.get("markets") or ():
        if m.get("trades") or m.get("realised"):
            lines.append(f"{m['market']}: {field_krw_text(m.get('realised'), True)} KRW, "
                         f"{trades_text(m.get('trades', 0))}, fees {field_krw_text(m.get('fees'))}")
    return "\n".join(lines)


def _equity_line(f: Mapping[str, Any]) -> str:
    line = f"Equity {field_krw_text(f['equity'])} KRW"
    if f.get("return_pct") is not None:
        started = f.get("started")
        since = started.strftime("%Y-%m-%d") if isinstance(started, datetime) else started
        line += (f": {field_pct_text(f['return_pct'])} since {since} against buy-and-hold "
                 f"{field_pct_text(f.get('buy_and_hold_pct'))}")
    return line


def _key_expiring(f: Mapping[str, Any]) -> str:
    return (f"The Upbit API key expires on {f.get('expires')} ({f.get('days')} days): issue a"
            " new one on Upbit's Open API page and set UPBIT_ACCESS_KEY/UPBIT_SECRET_KEY before"
            " then.")


def _market_warning(f: Mapping[str, Any]) -> str:
    return (f"{f.get('market')}: {f.get('detail')}. No new buys of it; a position in it is"
            " still managed and sold as usual.")


_FORMATS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "market.warning": _market_warning,
    "key.expiring": _key_expiring,
    "order.filled": _filled,
    "order.cancelled": _cancelled,
    "risk.loss_limit": _loss_limit,
    "weights.adopted": _adopted,
    "weights.stood_aside": _stood_aside,
    "job.failing": _failing,
    "daily.summary": summary_text,
}


def format_message(name: str, fields: Mapping[str, Any], *, live: bool = False) -> str:
    """One short human message for an event, prefixed with the mode; redacted,
    and cut to fit one chat message."""
    render = _FORMATS.get(name)
    if render is None:
        body = _raw(name, fields)
    else:
        try:
            body = render(fields)
        except Exception:  # a formatting slip must not cost the message
            body = _raw(name, fields)
    text = f"[{'LIVE' if live else 'paper'}] {body}"
    if len(text) > MAX_TEXT:
        text = text[:MAX_TEXT - 3] + "..."
    return redact(text)


def _raw(name: str, fields: Mapping[str, Any]) -> str:
    return name + ": " + " ".join(f"{k}={v}" for k, v in fields.items())
