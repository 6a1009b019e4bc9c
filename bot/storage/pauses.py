"""The ``pauses`` table: no new buys in one market, or in all of them
(:data:`ALL`), from when and at whose word. Exits and sells are never paused."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.storage.db import Database

ALL = "*"  # the scope of a pause of every market


@dataclass(frozen=True)
class Pause:
    scope: str  # a market, or ALL
    since: datetime
    by: str  # who asked: cli:<user> or telegram:<user>

    @property
    def market(self) -> str | None:
        return None if self.scope == ALL else self.scope


def pause(db: Database, scope: str, since: datetime, by: str) -> Pause:
    """Pause ``scope``; a pause already in force is kept as it was (its
    ``since`` is when buying stopped). Returns the pause in force."""
    with db.cursor() as cur:
        cur.execute("INSERT INTO pauses (scope, since, by_whom) VALUES (%s, %s, %s)"
                    " ON CONFLICT (scope) DO NOTHING", (scope, since, by))
        cur.execute("SELECT scope, since, by_whom FROM pauses WHERE scope = %s", (scope,))
        return Pause(*cur.fetchone())


def resume(db: Database, scope: str | None) -> list[Pause]:
    """End the pause of ``scope`` (None: every pause); the pauses ended."""
    with db.cursor() as cur:
        if scope is None:
            cur.execute("DELETE FROM pauses RETURNING scope, since, by_whom")
        else:
            cur.execute("DELETE FROM pauses WHERE scope = %s RETURNING scope, since, by_whom",
                        (scope,))
        return sorted((Pause(*row) for row in cur.fetchall()), key=_order)


def all_pauses(db: Database) -> list[Pause]:
    """Every pause in force: the one of all markets first, then by market."""
    with db.cursor() as cur:
        cur.execute("SELECT scope, since, by_whom FROM pauses")
        return sorted((Pause(*row) for row in cur.fetchall()), key=_order)


def pause_of(db: Database, market: str) -> Pause | None:
    """The pause that stops buys in ``market``: the pause of all markets
    before the market's own (it is the one a /resume of the market leaves)."""
    with db.cursor() as cur:
        cur.execute("SELECT scope, since, by_whom FROM pauses WHERE scope IN (%s, %s)",
                    (ALL, market))
        found = sorted((Pause(*row) for row in cur.fetchall()), key=_order)
    return found[0] if found else None


def _order(p: Pause) -> tuple[bool, str]:
    return p.scope != ALL, p.scope
