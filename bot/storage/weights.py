"""The ``strategy_weights`` table: versions of adopted parameter sets per
market (weights, and the values the set was validated with in ``params``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg2.extras
from psycopg2.extensions import cursor as Cursor

from bot.storage.db import Database

_COLUMNS = "version, market, weights, source, optimizer_run_id, created_at, params"


@dataclass(frozen=True)
class WeightsRow:
    version: int
    market: str
    weights: dict[str, float]
    source: str
    optimizer_run_id: int | None
    created_at: datetime
    params: dict[str, Any] | None = None  # None: a weights-only version

    @property
    def tuned(self) -> tuple[str, ...]:
        """The groups this version set (OPTIMIZE_TUNE names): a weights-only
        version sets the weights alone."""
        if self.params is None:
            return ("weights",)
        return tuple(self.params.get("tuned", ()))


def current(db: Database, market: str) -> WeightsRow | None:
    """The newest adopted version for a market, or None."""
    with db.cursor() as cur:
        cur.execute(f"SELECT {_COLUMNS} FROM strategy_weights WHERE market = %s"
                    " ORDER BY version DESC LIMIT 1", (market,))
        row = cur.fetchone()
    return WeightsRow(*row) if row else None


def insert(cur: Cursor, market: str, weights: dict[str, float], source: str,
           optimizer_run_id: int | None = None, params: dict[str, Any] | None = None,
           created_at: datetime | None = None) -> int:
    """A new version; ``created_at`` defaults to the database's now()."""
    cur.execute("INSERT INTO strategy_weights (market, weights, source, optimizer_run_id, params,"
                " created_at) VALUES (%s, %s, %s, %s, %s, coalesce(%s, now())) RETURNING version",
                (market, psycopg2.extras.Json(weights), source, optimizer_run_id,
                 None if params is None else psycopg2.extras.Json(params), created_at))
    return cur.fetchone()[0]


def adopt(db: Database, market: str, weights: dict[str, float], source: str = "manual",
          optimizer_run_id: int | None = None, params: dict[str, Any] | None = None) -> int:
    with db.cursor() as cur:
        return insert(cur, market, weights, source, optimizer_run_id, params)
