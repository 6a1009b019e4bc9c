"""The ``optimizer_runs`` table: one row per optimize run, whatever its
verdict (adopt, keep, stand_aside)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg2.extras
from psycopg2.extensions import cursor as Cursor

from bot.storage.db import Database


@dataclass(frozen=True)
class RunRow:
    id: int
    market: str
    started_at: datetime
    adopted: bool
    reason: str
    weights: dict[str, float]
    weights_version: int | None
    objective_holdout_new: float | None
    objective_holdout_current: float | None
    duration_s: float
    verdict: str
    bars: int
    params: dict[str, Any] | None

    @property
    def judged(self) -> bool:
        """Whether the run had candles enough to judge the holdout."""
        return self.objective_holdout_current is not None


_JSON = ("train_new", "train_current", "holdout_new", "holdout_current", "weights",
         "current_weights", "params", "current_params")
_FIELDS = ("started_at", "market", "window_start", "window_end", "bars", "candidates", "seed",
           "objective_train_new", "objective_train_current", "objective_holdout_new",
           "objective_holdout_current", "t_holdout_new", "t_holdout_current", *_JSON,
           "current_version", "verdict", "adopted", "tune", "reason", "duration_s")
_ROW = ("id, market, started_at, adopted, reason, weights, weights_version,"
        " objective_holdout_new, objective_holdout_current, duration_s, verdict, bars, params")


def insert(cur: Cursor, **values: Any) -> int:
    values = {**values, "adopted": values["verdict"] == "adopt",
              "tune": list(values["tune"])}
    row = [psycopg2.extras.Json(values[k]) if k in _JSON else values[k] for k in _FIELDS]
    cur.execute(f"INSERT INTO optimizer_runs ({', '.join(_FIELDS)}) VALUES"
                f" ({', '.join(['%s'] * len(_FIELDS))}) RETURNING id", row)
    return cur.fetchone()[0]


def set_version(cur: Cursor, run_id: int, version: int) -> None:
    cur.execute("UPDATE optimizer_runs SET weights_version = %s WHERE id = %s", (version, run_id))


def _one(db: Database, where: str, market: str) -> RunRow | None:
    with db.cursor() as cur:
        cur.execute(f"SELECT {_ROW} FROM optimizer_runs WHERE market = %s{where}"
                    " ORDER BY id DESC LIMIT 1", (market,))
        row = cur.fetchone()
    return RunRow(*row) if row else None


def latest(db: Database, market: str) -> RunRow | None:
    """The market's newest run, or None."""
    return _one(db, "", market)


def latest_judged(db: Database, market: str) -> RunRow | None:
    """The market's newest run that had candles enough to judge, or None."""
    return _one(db, " AND objective_holdout_current IS NOT NULL", market)


def count(db: Database, market: str | None = None) -> int:
    with db.cursor() as cur:
        if market is None:
            cur.execute("SELECT count(*) FROM optimizer_runs")
        else:
            cur.execute("SELECT count(*) FROM optimizer_runs WHERE market = %s", (market,))
        return cur.fetchone()[0]
