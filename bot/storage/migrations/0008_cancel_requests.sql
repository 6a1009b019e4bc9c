-- Cancels are requests (issue 12): Upbit answers a DELETE /v1/order with the
-- order still 'wait', and it can still fill until it reports 'cancel' or
-- 'done' (docs/upbit.md). An order the daemon asked to cancel is 'cancelling'
-- until then: still active, still reconciled (bot/trading/lifecycle.py).

ALTER TABLE orders DROP CONSTRAINT IF EXISTS orders_state_check;
ALTER TABLE orders ADD CONSTRAINT orders_state_check CHECK (state IN (
    'new', 'wait', 'watch', 'cancelling', 'done', 'cancel', 'rejected', 'failed'));
-- When the cancel was asked for (NULL: never asked).
ALTER TABLE orders ADD COLUMN IF NOT EXISTS cancel_requested_at timestamptz;

DROP INDEX IF EXISTS orders_active;
CREATE INDEX orders_active ON orders (mode, market)
    WHERE state IN ('new', 'wait', 'watch', 'cancelling');

-- The paper exchange's pending cancel: the order stays 'wait' and meets the
-- candles that start before this moment, then ends 'cancel' (bot/exchange/paper.py).
ALTER TABLE paper_orders ADD COLUMN IF NOT EXISTS cancel_at timestamptz;
