-- Lesion marks on slices (issue 22): where a reviewer saw the lesion on one slice (its centre
-- in the slice's own pixel coordinates, optionally its radius), or that the slice shows none.
-- Append-only like reviews: a correction is a new row and the newest row of a slice counts
-- ('withdrawn' takes an earlier mark back); no row is ever updated or deleted. The feedback
-- export writes the counting marks beside the images of the next data version.
-- depends: 0003.dashboard-role

CREATE TABLE review_marks (
    id              bigserial PRIMARY KEY,
    image_id        bigint NOT NULL REFERENCES images (id),
    reviewer        text NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('lesion', 'no_lesion', 'withdrawn')),
    x               double precision CHECK (x >= 0),   -- column, pixels from the left edge
    y               double precision CHECK (y >= 0),   -- row, pixels from the top edge
    radius          double precision CHECK (radius > 0),  -- NULL: the centre only
    model_name      text,                              -- the model whose answer was shown
    model_version   text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'lesion') = (x IS NOT NULL AND y IS NOT NULL)),
    CHECK (kind = 'lesion' OR radius IS NULL)
);
CREATE INDEX review_marks_image_latest_idx ON review_marks (image_id, created_at DESC, id DESC);

CREATE FUNCTION review_marks_are_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'review marks are append-only: % is not allowed', TG_OP;
END;
$$;
CREATE TRIGGER review_marks_append_only BEFORE UPDATE OR DELETE ON review_marks
    FOR EACH ROW EXECUTE FUNCTION review_marks_are_append_only();

-- The dashboard role reads and appends marks, nothing more (sql/0003.dashboard-role.sql).
GRANT SELECT, INSERT ON review_marks TO lung_dashboard;
GRANT USAGE ON SEQUENCE review_marks_id_seq TO lung_dashboard;

-- Which marks the feedback export has written (lung_model.data.feedback): a study's newest
-- mark id at its export, so that new marks (or a withdrawal) export the study again and an
-- export run twice adds nothing.
CREATE TABLE feedback_mark_exports (
    batch_id        bigint NOT NULL REFERENCES scan_batches (id),
    last_mark_id    bigint NOT NULL,             -- the study's newest review_marks.id then
    n_marks         integer NOT NULL,            -- annotation rows written (counting marks)
    data_version    text NOT NULL,               -- the DVC version that first holds them
    exported_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (batch_id, last_mark_id)
);
GRANT SELECT ON feedback_mark_exports TO lung_dashboard;
