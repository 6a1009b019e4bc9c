-- Exits and guards (docs/semantics.md): why each decision is what it is, and
-- what each fill cost against its decision's close.

-- The decision's trigger: the signal, an exit that sold, the guard that
-- blocked a buy, or the kill switch that kept an order from being placed.
ALTER TABLE decisions ADD COLUMN IF NOT EXISTS trigger text NOT NULL DEFAULT 'signal';
ALTER TABLE decisions ADD CONSTRAINT decisions_trigger CHECK (trigger IN (
    'signal', 'stop_loss', 'trailing_stop', 'take_profit', 'stand_aside', 'live_gate',
    'paused', 'loss_limit', 'stop_guard', 'cooldown', 'kill_switch'));
-- Decisions made before this column: their reason text names what stopped them.
UPDATE decisions SET trigger = 'kill_switch'
    WHERE reason LIKE '%kill switch: TRADING_ENABLED=false%';
UPDATE decisions SET trigger = 'loss_limit'
    WHERE reason LIKE '%daily loss limit reached%' AND trigger = 'signal';

-- fill price / decision close - 1 (NULL: the order had no decision, e.g. adopted).
ALTER TABLE fills ADD COLUMN IF NOT EXISTS slippage numeric;
