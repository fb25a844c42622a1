-- depends: 0003.dashboard-worklist 0007.acquisition-guard
-- Acquisition sensitivity (lung_model.scoring.sensitivity) and the worklist's "teach the
-- model" order (issue 22). For a guarded model the guard's slices are also scored under a few
-- acquisition perturbations: each prediction of such a slice keeps its calls under them
-- (perturbed_calls: {"smoothed": "malignant", ...}), each study result how many of its checked
-- slices change their call (acquisition_sensitivity: {"perturbations", "n_slices",
-- "changed": {path: [perturbations]}}) and that share (sensitivity_share). NULL: not checked
-- (an unguarded model, LUNG_GUARD_PERTURBATIONS empty, or scored before this migration).

ALTER TABLE predictions ADD COLUMN perturbed_calls jsonb;
ALTER TABLE study_results ADD COLUMN acquisition_sensitivity jsonb;
ALTER TABLE study_results ADD COLUMN sensitivity_share double precision;
-- the Operations page counts the latest studies whose calls hang on the export
CREATE INDEX study_results_sensitive_idx ON study_results (created_at DESC)
    WHERE sensitivity_share > 0;

-- The teach order's priority of a study result, each term in [0, 1] (so at most 4): unlike
-- the scans its model learned from (the acquisition guard) + the model unsure (needs_review) +
-- the share of checked slices whose call another export changes + how close its highest
-- malignant probability is to a coin toss (1 - 2 |p - 0.5|). Highest first; the worklist
-- breaks ties by risk (lung_model.review.worklist).
CREATE FUNCTION teach_priority(unlike jsonb, uncertain boolean, sensitivity double precision,
                               max_p_malignant double precision)
RETURNS double precision LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN jsonb_array_length(unlike) > 0 THEN 1.0 ELSE 0.0 END
         + CASE WHEN uncertain THEN 1.0 ELSE 0.0 END
         + coalesce(sensitivity, 0.0)
         + 1.0 - 2.0 * abs(max_p_malignant - 0.5)
$$;

-- Stored on the worklist's row, so the teach order is one indexed read like the risk order.
ALTER TABLE worklist_entries ADD COLUMN teach_priority double precision NOT NULL DEFAULT 0;
CREATE INDEX worklist_teach_idx
    ON worklist_entries (teach_priority DESC, max_p_malignant DESC, batch_id);
CREATE INDEX worklist_teach_unreviewed_idx
    ON worklist_entries (teach_priority DESC, max_p_malignant DESC, batch_id)
    WHERE review_id IS NULL;

-- sql/0003.dashboard-worklist.sql's function, now also keeping teach_priority current.
CREATE OR REPLACE FUNCTION worklist_refresh(target bigint) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    latest study_results%ROWTYPE;
    review reviews%ROWTYPE;
    settled text;
BEGIN
    PERFORM 1 FROM scan_batches WHERE id = target FOR NO KEY UPDATE;
    SELECT * INTO latest FROM study_results WHERE batch_id = target
        ORDER BY created_at DESC, id DESC LIMIT 1;
    IF NOT FOUND THEN
        DELETE FROM worklist_entries WHERE batch_id = target;
        RETURN;
    END IF;
    SELECT * INTO review FROM reviews WHERE batch_id = target AND image_id IS NULL
        ORDER BY created_at DESC, id DESC LIMIT 1;
    settled := CASE review.decision WHEN 'correct' THEN review.corrected_label
                                    WHEN 'confirm' THEN latest.predicted_class END;
    INSERT INTO worklist_entries AS w (batch_id, study, received_at, result_id, max_p_malignant,
        predicted_class, needs_review, review_id, reviewed_label, disagrees, teach_priority)
    SELECT b.id, b.study, b.started_at, latest.id, latest.max_p_malignant,
           latest.predicted_class, latest.needs_review, review.id, settled,
           coalesce(settled <> latest.predicted_class, false),
           teach_priority(latest.acquisition_outside, latest.needs_review,
                          latest.sensitivity_share, latest.max_p_malignant)
    FROM scan_batches b WHERE b.id = target
    ON CONFLICT (batch_id) DO UPDATE SET
        result_id = excluded.result_id, max_p_malignant = excluded.max_p_malignant,
        predicted_class = excluded.predicted_class, needs_review = excluded.needs_review,
        review_id = excluded.review_id, reviewed_label = excluded.reviewed_label,
        disagrees = excluded.disagrees, teach_priority = excluded.teach_priority;
END;
$$;
REVOKE ALL ON FUNCTION worklist_refresh(bigint) FROM PUBLIC;

-- Studies scored before this migration, in one pass.
UPDATE worklist_entries w
SET teach_priority = teach_priority(r.acquisition_outside, r.needs_review,
                                    r.sensitivity_share, r.max_p_malignant)
FROM study_results r WHERE r.id = w.result_id;
