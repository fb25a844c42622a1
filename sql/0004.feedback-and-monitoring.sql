-- depends: 0001.results-schema
-- Feedback exports (which reviewed studies went into which DVC data version) and the daily
-- monitoring checks (drift, review backlog, failures). Written by lung_model.feedback and
-- lung_model.monitoring, usually from the lung_feedback and lung_monitoring DAGs.

-- One row per exported review: re-running an export adds nothing twice, and a study
-- reviewed again later is exported again under its new label.
CREATE TABLE feedback_exports (
    review_id       bigint PRIMARY KEY REFERENCES reviews (id),
    batch_id        bigint NOT NULL REFERENCES scan_batches (id),
    label           text NOT NULL CHECK (label IN ('normal', 'benign', 'malignant')),
    n_images        integer NOT NULL,
    data_version    text NOT NULL,               -- the DVC version that first holds them
    exported_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX feedback_exports_batch_idx ON feedback_exports (batch_id, exported_at DESC);

-- One row per check run over a time window; `breaches` empty means all is well.
CREATE TABLE monitoring_checks (
    id              bigserial PRIMARY KEY,
    window_start    timestamptz NOT NULL,
    window_end      timestamptz NOT NULL,
    report          jsonb NOT NULL,
    breaches        text[] NOT NULL DEFAULT '{}',
    checked_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (window_start, window_end)
);

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'lung_dashboard') THEN
        GRANT SELECT ON feedback_exports, monitoring_checks TO lung_dashboard;
    END IF;
END
$$;
