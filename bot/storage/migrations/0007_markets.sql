-- What Upbit says about each KRW market (issue 12), refreshed by the collector
-- (bot/data/markets.py): whether it is listed, its investment warning and
-- caution flags, its price tick, the account's fees and minimum order, and the
-- 24-hour traded value that MARKETS=top:N ranks by, and whether that selection
-- holds the market now. One row per market ever seen.
CREATE TABLE IF NOT EXISTS markets (
    market text PRIMARY KEY,
    korean_name text NOT NULL DEFAULT '',
    english_name text NOT NULL DEFAULT '',
    listed boolean NOT NULL,
    warning boolean NOT NULL DEFAULT false,
    cautions text[] NOT NULL DEFAULT '{}',
    -- When listed, warning or cautions last changed (first sight included).
    changed_at timestamptz NOT NULL,
    -- The last refresh of the market list (listed / warning / cautions).
    seen_at timestamptz NOT NULL,
    traded_value_24h numeric,
    tick_size numeric CHECK (tick_size IS NULL OR tick_size > 0),
    tick_at timestamptz,
    bid_fee numeric,
    ask_fee numeric,
    maker_bid_fee numeric,
    maker_ask_fee numeric,
    min_total numeric,
    chance_at timestamptz,
    -- MARKETS=top:N: in the traded set since selected_at (bot/data/markets.py).
    selected boolean NOT NULL DEFAULT false,
    selected_at timestamptz
);

-- The trader's new buy guards (bot/trading/terms.py) are decision triggers too.
ALTER TABLE decisions DROP CONSTRAINT IF EXISTS decisions_trigger;
ALTER TABLE decisions ADD CONSTRAINT decisions_trigger CHECK (trigger IN (
    'signal', 'stop_loss', 'trailing_stop', 'take_profit', 'stand_aside', 'live_gate',
    'paused', 'loss_limit', 'stop_guard', 'cooldown', 'kill_switch',
    'delisted', 'market_warning', 'market_caution', 'deselected'));
