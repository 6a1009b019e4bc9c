"""The ``telegram_offsets`` table: the next update the Telegram poller asks
for (getUpdates' ``offset``), per bot."""

from __future__ import annotations

from bot.storage.db import Database


def next_update(db: Database, bot_id: str) -> int | None:
    """The offset to ask from (None: nothing was ever handled)."""
    with db.cursor() as cur:
        cur.execute("SELECT next_update FROM telegram_offsets WHERE bot_id = %s", (bot_id,))
        row = cur.fetchone()
    return None if row is None else int(row[0])


def store_next_update(db: Database, bot_id: str, offset: int) -> None:
    """Record ``offset``; never moves back (two pollers of one bot, or a
    late write, must not make an update come round again)."""
    with db.cursor() as cur:
        cur.execute("INSERT INTO telegram_offsets (bot_id, next_update) VALUES (%s, %s)"
                    " ON CONFLICT (bot_id) DO UPDATE SET next_update ="
                    " greatest(telegram_offsets.next_update, EXCLUDED.next_update),"
                    " updated_at = now()", (bot_id, offset))
