-- Candles: one row per market, timeframe and period start (UTC).
-- meta holds what Upbit adds (KST time, last trade timestamp) and "final":
-- false while the candle was stored in progress, true once stored after close.
CREATE TABLE IF NOT EXISTS candles (
    market       text        NOT NULL,
    timeframe    text        NOT NULL,
    ts           timestamptz NOT NULL,
    open         numeric     NOT NULL,
    high         numeric     NOT NULL,
    low          numeric     NOT NULL,
    close        numeric     NOT NULL,
    volume       numeric     NOT NULL,
    quote_volume numeric     NOT NULL,
    meta         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (market, timeframe, ts),
    CHECK (low <= high AND open > 0 AND close > 0 AND volume >= 0)
);
