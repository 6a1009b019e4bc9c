"""The ``strategy_weights`` table: versions of adopted weights per market."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg2.extras
from psycopg2.extensions import cursor as Cursor

from bot.storage.db import Database


@dataclass(frozen=True)
class WeightsRow:
    version: int
    market: str
    weights: dict[str, float]
    source: str
    optimizer_run_id: int | None
    created_at: datetime


def current(db: Database, market: str) -> WeightsRow | None:
    """The newest adopted weights for a market, or None."""
    with db.cursor() as cur:
        cur.execute("SELECT version, market, weights, source, optimizer_run_id, created_at"
                    " FROM strategy_weights WHERE market = %s ORDER BY version DESC LIMIT 1",
                    (market,))
        row = cur.fetchone()
    return WeightsRow(*row) if row else None


def insert(cur: Cursor, market: str, weights: dict[str, float], source: str,
           optimizer_run_id: int | None = None) -> int:
    cur.execute("INSERT INTO strategy_weights (market, weights, source, optimizer_run_id)"
                " VALUES (%s, %s, %s, %s) RETURNING version",
                (market, psycopg2.extras.Json(weights), source, optimizer_run_id))
    return cur.fetchone()[0]


def adopt(db: Database, market: str, weights: dict[str, float], source: str = "manual",
          optimizer_run_id: int | None = None) -> int:
    with db.cursor() as cur:
        return insert(cur, market, weights, source, optimizer_run_id)
