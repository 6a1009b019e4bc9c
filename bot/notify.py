"""Notifications (Telegram, webhook): optional, off by default."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.config import Settings


def notifier(settings: Settings) -> Callable[..., None]:
    """A function ``notify(event_name, **fields)`` that never raises."""

    def notify(name: str, **fields: Any) -> None:
        return None

    return notify
