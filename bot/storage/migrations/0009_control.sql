-- Control from Telegram and the command line (issue 13).
--
-- A pause stops new buys in one market, or in every market ('*'); exits and
-- sells go on. Stored, not held in a process, so that it survives restarts
-- and every process (the trader, bot status) sees the same one.
CREATE TABLE IF NOT EXISTS pauses (
    scope    text        PRIMARY KEY CHECK (scope = '*' OR scope LIKE 'KRW-%'),
    since    timestamptz NOT NULL,
    by_whom  text        NOT NULL
);

-- The next Telegram update to ask for (getUpdates' offset), per bot (the
-- numeric id in front of the token's colon): a new bot starts afresh, and a
-- restarted poller handles no update twice.
CREATE TABLE IF NOT EXISTS telegram_offsets (
    bot_id      text        PRIMARY KEY,
    next_update bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
