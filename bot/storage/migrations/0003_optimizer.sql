-- Every optimizer run, adopted or not, with the metrics it decided on.
CREATE TABLE IF NOT EXISTS optimizer_runs (
    id                        bigserial        PRIMARY KEY,
    market                    text             NOT NULL,
    started_at                timestamptz      NOT NULL DEFAULT now(),
    window_start              timestamptz,
    window_end                timestamptz,
    bars                      integer          NOT NULL,
    candidates                integer          NOT NULL,
    seed                      bigint           NOT NULL,
    objective_train_new       double precision,
    objective_train_current   double precision,
    objective_holdout_new     double precision,
    objective_holdout_current double precision,
    train_new                 jsonb,
    train_current             jsonb,
    holdout_new               jsonb,
    holdout_current           jsonb,
    weights                   jsonb            NOT NULL,
    current_weights           jsonb            NOT NULL,
    current_version           integer,
    adopted                   boolean          NOT NULL,
    reason                    text             NOT NULL,
    weights_version           integer          REFERENCES strategy_weights (version),
    duration_s                double precision NOT NULL
);
CREATE INDEX IF NOT EXISTS optimizer_runs_market ON optimizer_runs (market, started_at DESC);
