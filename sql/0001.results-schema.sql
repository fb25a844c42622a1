-- Results schema: study folders, their images, predictions, study results, reviews and
-- promotion decisions. Applied by yoyo-migrations (lung_model.db.migrate).

CREATE TABLE scan_batches (
    id              bigserial PRIMARY KEY,
    study           text NOT NULL,                 -- study folder name as dropped in the inbox
    source_path     text NOT NULL,                 -- where the folder was found
    status          text NOT NULL DEFAULT 'processing'
                    CHECK (status IN ('processing', 'done', 'failed')),
    n_files         integer NOT NULL DEFAULT 0,
    n_scored        integer NOT NULL DEFAULT 0,
    n_quarantined   integer NOT NULL DEFAULT 0,
    model_name      text,
    model_version   text,
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    error           text,
    UNIQUE (study, source_path)
);
CREATE INDEX scan_batches_started_idx ON scan_batches (started_at DESC);
CREATE INDEX scan_batches_status_idx ON scan_batches (status);

-- One row per input file of a batch, scored or quarantined (with the reason).
CREATE TABLE images (
    id              bigserial PRIMARY KEY,
    batch_id        bigint NOT NULL REFERENCES scan_batches (id) ON DELETE CASCADE,
    path            text NOT NULL,                 -- relative to the study folder
    sha256          char(64),                      -- NULL only when the file could not be read
    format          text,                          -- jpeg, png, dicom, or what was detected
    size_bytes      bigint,
    width           integer,
    height          integer,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'scored', 'quarantined')),
    reason          text,                          -- why it was quarantined
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (batch_id, path)
);
CREATE INDEX images_sha256_idx ON images (sha256);
CREATE INDEX images_quarantined_idx ON images (batch_id) WHERE status = 'quarantined';

-- One row per image content and model version: a rerun adds nothing twice.
CREATE TABLE predictions (
    id              bigserial PRIMARY KEY,
    image_sha256    char(64) NOT NULL,
    model_name      text NOT NULL,
    model_version   text NOT NULL,
    data_version    text NOT NULL,
    p_normal        double precision NOT NULL,
    p_benign        double precision NOT NULL,
    p_malignant     double precision NOT NULL,
    predicted_class text NOT NULL CHECK (predicted_class IN ('normal', 'benign', 'malignant')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (image_sha256, model_name, model_version)
);
CREATE INDEX predictions_created_idx ON predictions (created_at DESC);
CREATE INDEX predictions_model_idx ON predictions (model_name, model_version);

-- The study-level verdict of one model version on one batch.
CREATE TABLE study_results (
    id              bigserial PRIMARY KEY,
    batch_id        bigint NOT NULL REFERENCES scan_batches (id) ON DELETE CASCADE,
    model_name      text NOT NULL,
    model_version   text NOT NULL,
    data_version    text NOT NULL,
    n_slices        integer NOT NULL,
    max_p_malignant double precision NOT NULL,
    mean_p_malignant double precision NOT NULL,
    n_malignant_slices integer NOT NULL,           -- slices over the malignant threshold
    predicted_class text NOT NULL CHECK (predicted_class IN ('normal', 'benign', 'malignant')),
    needs_review    boolean NOT NULL,              -- the model is uncertain
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (batch_id, model_name, model_version)
);
CREATE INDEX study_results_risk_idx ON study_results (max_p_malignant DESC, id);
CREATE INDEX study_results_created_idx ON study_results (created_at DESC);

-- Append-only: a later review supersedes an earlier one in the views, never erases it.
CREATE TABLE reviews (
    id              bigserial PRIMARY KEY,
    batch_id        bigint NOT NULL REFERENCES scan_batches (id),
    image_id        bigint REFERENCES images (id),  -- NULL: a review of the whole study
    reviewer        text NOT NULL,
    decision        text NOT NULL CHECK (decision IN ('confirm', 'correct')),
    corrected_label text CHECK (corrected_label IN ('normal', 'benign', 'malignant')),
    comment         text,
    model_name      text,
    model_version   text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (decision = 'confirm' OR corrected_label IS NOT NULL)
);
CREATE INDEX reviews_batch_idx ON reviews (batch_id, created_at DESC);
CREATE INDEX reviews_image_idx ON reviews (image_id, created_at DESC) WHERE image_id IS NOT NULL;

CREATE FUNCTION reviews_are_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'reviews are append-only: % is not allowed', TG_OP;
END;
$$;
CREATE TRIGGER reviews_append_only BEFORE UPDATE OR DELETE ON reviews
    FOR EACH ROW EXECUTE FUNCTION reviews_are_append_only();

-- Every gate decision, operator override and rollback, with both models' metrics.
CREATE TABLE promotion_events (
    id                  bigserial PRIMARY KEY,
    model_name          text NOT NULL,
    candidate_version   text NOT NULL,
    champion_version    text,                      -- NULL when there was no champion
    candidate_metrics   jsonb NOT NULL DEFAULT '{}'::jsonb,
    champion_metrics    jsonb,
    decision            text NOT NULL
                        CHECK (decision IN ('promoted', 'rejected', 'override', 'rollback')),
    reason              text NOT NULL,
    actor               text NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX promotion_events_model_idx ON promotion_events (model_name, created_at DESC);
