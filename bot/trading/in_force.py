"""What the trader trades a market with now: the stored adopted set and the
optimizer's latest verdict, read and combined by :func:`bot.trading.params.in_force_of`.
Beside the weights storage, above it: loading the trader loads neither the
optimizer nor its search."""

from __future__ import annotations

from bot.config import Settings
from bot.storage import Database
from bot.storage import optimizer_runs as run_store
from bot.storage import weights as weight_store
from bot.trading.params import InForce, in_force_of


def params_in_force(settings: Settings, db: Database, market: str) -> InForce:
    """What the trader trades ``market`` with (see :class:`InForce` and the
    module docstring)."""
    run = run_store.latest(db, market)
    return in_force_of(settings, weight_store.current(db, market),
                       None if run is None else run.verdict)


def current_weights(settings: Settings, db: Database, market: str) -> tuple[dict[str, float],
                                                                          int | None]:
    """The weights in force for ``market`` and the version of the set in
    force (:func:`params_in_force`)."""
    p = params_in_force(settings, db, market)
    return p.weights, p.version
