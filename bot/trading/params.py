"""The parameters the trader trades a market with now, and where each value
came from: the one reading of "adopted set over settings" that the trader,
``bot status``, ``bot backtest`` and the walk-forward share.

For each group named in OPTIMIZE_TUNE the newest adopted set's value wins,
else the setting's; the groups not in OPTIMIZE_TUNE always come from the
settings, so a user keeps a setting their own by leaving its group out. Until
the first adoption every value is the setting's (``InForce.version`` None: not
validated, which the live gate reads). A market stands aside (no new buys)
while the optimizer's latest verdict for it is ``stand_aside``; both are in
the database, so they survive restarts.

Pure: :func:`bot.trading.in_force.params_in_force` reads the stored rows, the
optimizer's search combines its candidates with the same :func:`combine`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from bot.config import Settings
from bot.models import GROUP_OF, PARAMETERS
from bot.trading.strategies import normalise_weights

if TYPE_CHECKING:  # the row's type only: this module reads no database
    from bot.storage.weights import WeightsRow

SETTING = "setting"  # the source of a value that is not an adopted set's


@dataclass(frozen=True)
class InForce:
    """The parameters the trader uses now for a market, and where each came
    from. ``version`` is the adopted parameter set's (None: the settings);
    ``sources`` maps each parameter name to ``"setting"`` or ``"optimizer vN"``;
    ``verdict`` is the optimizer's latest verdict for the market (``adopt``,
    ``keep``, ``stand_aside``; None before its first run)."""

    weights: dict[str, float]
    threshold: Decimal
    cooldown_candles: int
    stop_loss_pct: Decimal
    trailing_stop_pct: Decimal
    take_profit_pct: Decimal
    version: int | None
    sources: dict[str, str]
    verdict: str | None

    @property
    def standing_aside(self) -> bool:
        return self.verdict == "stand_aside"

    def values(self) -> dict[str, Any]:
        """The six values by name (``PARAMETERS``)."""
        return {name: getattr(self, name) for name in PARAMETERS}


def combine(base: Mapping[str, Any], adopted: Mapping[str, Any] | None, tuned: Iterable[str],
            tune: Iterable[str], label: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The values in force and each value's source: a value comes from
    ``adopted`` (source ``label``) when its group is both in ``tune``
    (OPTIMIZE_TUNE now) and in ``tuned`` (what the adopted set set), else
    from ``base`` (the settings, source ``"setting"``). Both are mappings of
    ``PARAMETERS``."""
    use = set(tuned) & set(tune) if adopted is not None else set()
    values, sources = {}, {}
    for name in PARAMETERS:
        mine = GROUP_OF[name] in use
        values[name] = (adopted if mine and adopted is not None else base)[name]
        sources[name] = label if mine else SETTING
    return values, sources


def setting_values(settings: Settings) -> dict[str, Any]:
    """The values the settings define (WEIGHTS empty: equal), as written."""
    return {"weights": normalise_weights(dict(settings.weights)),
            "threshold": settings.threshold, "cooldown_candles": settings.cooldown_candles,
            "stop_loss_pct": settings.stop_loss_pct,
            "trailing_stop_pct": settings.trailing_stop_pct,
            "take_profit_pct": settings.take_profit_pct}


def _adopted_values(row: WeightsRow, base: Mapping[str, Any]) -> dict[str, Any]:
    stored = row.params or {}
    values = {name: stored.get(name, base[name]) for name in PARAMETERS[1:]}
    return {"weights": normalise_weights(row.weights), **values}


def _dec(value: Decimal | float | str) -> Decimal:
    """A stored value as the Decimal a user would write (5, not 5.0)."""
    if isinstance(value, Decimal):
        return value
    number = float(value)
    return Decimal(int(number)) if number.is_integer() else Decimal(repr(number))


def in_force_of(settings: Settings, row: WeightsRow | None, verdict: str | None) -> InForce:
    """:class:`InForce` from the newest adopted version (or None) and the
    latest verdict (pure: :func:`params_in_force` reads them)."""
    base = setting_values(settings)
    adopted = None if row is None else _adopted_values(row, base)
    label = "" if row is None else f"{row.source} v{row.version}"
    chosen, sources = combine(base, adopted, () if row is None else row.tuned,
                              settings.optimize_tune, label)
    from_set = row is not None and any(s != SETTING for s in sources.values())
    # A setting stays the exact Decimal it was written as.
    return InForce(chosen["weights"], _dec(chosen["threshold"]),
                   int(chosen["cooldown_candles"]), _dec(chosen["stop_loss_pct"]),
                   _dec(chosen["trailing_stop_pct"]), _dec(chosen["take_profit_pct"]),
                   row.version if from_set and row is not None else None, sources, verdict)
