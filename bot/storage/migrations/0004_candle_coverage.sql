-- Candle history known complete: every candle Upbit has for (market, timeframe)
-- with from_ts <= ts < to_ts is stored, with its final values. A minute without
-- trades has no candle, so a stretch without candles inside such a range is not
-- a hole. The collector and `bot backfill` record what each walk through Upbit's
-- pages proved, in the transaction that stores its candles; backfill then
-- fetches only what lies outside (bot/collector.py). Ranges that overlap or
-- touch are merged on write (bot/storage/candles.py).
CREATE TABLE IF NOT EXISTS candle_coverage (
    market    text        NOT NULL,
    timeframe text        NOT NULL,
    from_ts   timestamptz NOT NULL,
    to_ts     timestamptz NOT NULL,
    PRIMARY KEY (market, timeframe, from_ts),
    CHECK (from_ts < to_ts)
);
