-- depends: 0008.teach-order
-- A study that grows after it was scored (lung_model.scoring.grown): instances of a DICOM
-- study that arrive after the scorer claimed it start a new folder of the same name, which is
-- scored with the study's earlier instances linked in. Once that batch has a verdict, each
-- earlier batch of the study points to it: it leaves the worklist (its verdict read part of
-- the study; the worklist follows scan_batches.superseded_by by trigger, as it follows
-- results and reviews) and its unsent reports are never sent.
ALTER TABLE scan_batches ADD COLUMN superseded_by bigint REFERENCES scan_batches (id);
CREATE INDEX scan_batches_superseded_by_idx ON scan_batches (superseded_by)
    WHERE superseded_by IS NOT NULL;

-- sql/0008.teach-order.sql's function; a superseded batch has no worklist row.
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
    IF NOT FOUND OR EXISTS (SELECT 1 FROM scan_batches
                            WHERE id = target AND superseded_by IS NOT NULL) THEN
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

CREATE FUNCTION worklist_follow_batch() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    PERFORM worklist_refresh(NEW.id);
    RETURN NULL;
END;
$$;
REVOKE ALL ON FUNCTION worklist_follow_batch() FROM PUBLIC;

CREATE TRIGGER worklist_follows_superseding AFTER UPDATE OF superseded_by ON scan_batches
    FOR EACH ROW WHEN (NEW.superseded_by IS DISTINCT FROM OLD.superseded_by)
    EXECUTE FUNCTION worklist_follow_batch();
