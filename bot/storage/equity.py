"""The ``equity_days`` table: each UTC day's starting equity and whether the
daily loss limit halted buying that day."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from bot.storage.db import Database


def start_of_day(db: Database, mode: str, day: date, equity: Decimal) -> tuple[Decimal, bool]:
    """The day's starting equity (recorded now if this is the day's first
    look) and whether buying is halted for the day."""
    with db.cursor() as cur:
        cur.execute("INSERT INTO equity_days (mode, day, start_equity) VALUES (%s, %s, %s)"
                    " ON CONFLICT (mode, day) DO NOTHING", (mode, day, equity))
        cur.execute("SELECT start_equity, halted_at IS NOT NULL FROM equity_days"
                    " WHERE mode = %s AND day = %s", (mode, day))
        start, halted = cur.fetchone()
    return start, halted


def halt(db: Database, mode: str, day: date, at: datetime) -> bool:
    """Mark the day halted; True the first time (so the caller alerts once)."""
    with db.cursor() as cur:
        cur.execute("UPDATE equity_days SET halted_at = %s WHERE mode = %s AND day = %s"
                    " AND halted_at IS NULL", (at, mode, day))
        return cur.rowcount == 1
