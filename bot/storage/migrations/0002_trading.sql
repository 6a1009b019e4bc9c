-- Trading: weights, decisions, orders and their fills, the paper exchange's
-- account, and the daily equity used by the loss limit.

-- Weights the trader uses, per market; the newest version wins. A decision
-- names the version it used (NULL = the WEIGHTS setting / equal weights).
CREATE TABLE IF NOT EXISTS strategy_weights (
    version          serial      PRIMARY KEY,
    market           text        NOT NULL,
    weights          jsonb       NOT NULL,
    source           text        NOT NULL,
    optimizer_run_id bigint,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS strategy_weights_market ON strategy_weights (market, version DESC);

-- One decision per market and candle: a second evaluation changes nothing.
CREATE TABLE IF NOT EXISTS decisions (
    id              bigserial        PRIMARY KEY,
    market          text             NOT NULL,
    candle_ts       timestamptz      NOT NULL,
    mode            text             NOT NULL,
    close           numeric          NOT NULL,
    signals         jsonb            NOT NULL,
    weights         jsonb            NOT NULL,
    weights_version integer          REFERENCES strategy_weights (version),
    score           double precision NOT NULL,
    action          text             NOT NULL CHECK (action IN ('buy', 'sell', 'hold')),
    reason          text             NOT NULL,
    created_at      timestamptz      NOT NULL DEFAULT now(),
    UNIQUE (market, candle_ts)
);

-- Every order is written (state 'new') before it is sent, then follows the
-- exchange: wait/watch -> done/cancel; 'rejected' when the exchange refused it,
-- 'failed' when it provably never reached the exchange.
CREATE TABLE IF NOT EXISTS orders (
    id              bigserial   PRIMARY KEY,
    identifier      text        NOT NULL UNIQUE,
    mode            text        NOT NULL CHECK (mode IN ('paper', 'live')),
    market          text        NOT NULL,
    side            text        NOT NULL CHECK (side IN ('bid', 'ask')),
    ord_type        text        NOT NULL DEFAULT 'limit',
    price           numeric     NOT NULL,
    volume          numeric     NOT NULL,
    state           text        NOT NULL
                    CHECK (state IN ('new', 'wait', 'watch', 'done', 'cancel', 'rejected', 'failed')),
    exchange_uuid   text        UNIQUE,
    decision_id     bigint      REFERENCES decisions (id),
    executed_volume numeric     NOT NULL DEFAULT 0,
    paid_fee        numeric     NOT NULL DEFAULT 0,
    error           text,
    cancel_reason   text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS orders_active ON orders (mode, market)
    WHERE state IN ('new', 'wait', 'watch');

-- Fills, each recorded exactly once (the exchange's trade uuid is unique).
CREATE TABLE IF NOT EXISTS fills (
    id          bigserial   PRIMARY KEY,
    order_id    bigint      NOT NULL REFERENCES orders (id),
    trade_uuid  text        NOT NULL UNIQUE,
    mode        text        NOT NULL,
    market      text        NOT NULL,
    side        text        NOT NULL CHECK (side IN ('bid', 'ask')),
    price       numeric     NOT NULL,
    volume      numeric     NOT NULL,
    funds       numeric     NOT NULL,
    fee         numeric     NOT NULL,
    traded_at   timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS fills_market ON fills (mode, market, traded_at);

-- Equity at the start of each UTC day (for the daily loss limit).
CREATE TABLE IF NOT EXISTS equity_days (
    mode         text        NOT NULL,
    day          date        NOT NULL,
    start_equity numeric     NOT NULL,
    halted_at    timestamptz,
    PRIMARY KEY (mode, day)
);

-- The paper exchange: a simulated Upbit account that survives restarts.
CREATE TABLE IF NOT EXISTS paper_balances (
    currency      text    PRIMARY KEY,
    balance       numeric NOT NULL CHECK (balance >= 0),
    locked        numeric NOT NULL DEFAULT 0 CHECK (locked >= 0),
    avg_buy_price numeric NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS paper_orders (
    uuid             text        PRIMARY KEY,
    identifier       text        NOT NULL UNIQUE,
    market           text        NOT NULL,
    side             text        NOT NULL CHECK (side IN ('bid', 'ask')),
    price            numeric     NOT NULL,
    volume           numeric     NOT NULL,
    remaining_volume numeric     NOT NULL,
    executed_volume  numeric     NOT NULL DEFAULT 0,
    reserved         numeric     NOT NULL,
    paid_fee         numeric     NOT NULL DEFAULT 0,
    state            text        NOT NULL CHECK (state IN ('wait', 'done', 'cancel')),
    created_at       timestamptz NOT NULL,
    fill_from        timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS paper_orders_open ON paper_orders (market) WHERE state = 'wait';

CREATE TABLE IF NOT EXISTS paper_trades (
    uuid       text        PRIMARY KEY,
    order_uuid text        NOT NULL REFERENCES paper_orders (uuid),
    market     text        NOT NULL,
    side       text        NOT NULL,
    price      numeric     NOT NULL,
    volume     numeric     NOT NULL,
    funds      numeric     NOT NULL,
    fee        numeric     NOT NULL,
    created_at timestamptz NOT NULL
);
