-- Parameter sets (issue 10): the optimizer tunes weights and, per
-- OPTIMIZE_TUNE, THRESHOLD, COOLDOWN_CANDLES and the exits; an adopted set is
-- one strategy_weights version.

-- The values the set was validated with and the groups it tuned:
-- {"tuned": ["weights", "threshold", "cooldown"], "threshold": 0.45,
--  "cooldown_candles": 15, "stop_loss_pct": 5.0, ...}. NULL: a weights-only
-- version (adopted before this migration, or by hand).
ALTER TABLE strategy_weights ADD COLUMN IF NOT EXISTS params jsonb;

-- Each run's verdict: adopt, keep or stand_aside (bot/search.py). Runs from
-- before this migration adopted or kept.
ALTER TABLE optimizer_runs ADD COLUMN IF NOT EXISTS verdict text;
UPDATE optimizer_runs SET verdict = CASE WHEN adopted THEN 'adopt' ELSE 'keep' END
    WHERE verdict IS NULL;
ALTER TABLE optimizer_runs ALTER COLUMN verdict SET NOT NULL;
ALTER TABLE optimizer_runs ADD CONSTRAINT optimizer_runs_verdict
    CHECK (verdict IN ('adopt', 'keep', 'stand_aside') AND adopted = (verdict = 'adopt'));
-- The best candidate's set and the set in force (ParamSet.to_dict), the groups
-- tuned, and the holdout t statistics the verdict used.
ALTER TABLE optimizer_runs ADD COLUMN IF NOT EXISTS params jsonb;
ALTER TABLE optimizer_runs ADD COLUMN IF NOT EXISTS current_params jsonb;
ALTER TABLE optimizer_runs ADD COLUMN IF NOT EXISTS tune text[];
ALTER TABLE optimizer_runs ADD COLUMN IF NOT EXISTS t_holdout_new double precision;
ALTER TABLE optimizer_runs ADD COLUMN IF NOT EXISTS t_holdout_current double precision;
