-- depends: 0003.dashboard-role
-- The worklist as a table kept current by triggers: one row per scored study with its
-- latest result and latest study-level review, so that ordering 100,000 studies by risk,
-- filtering and paging them reads one indexed table (bench/bench_worklist.py).
-- The triggers run as the owner (SECURITY DEFINER): the dashboard role inserts a review and
-- the worklist follows, although the role itself can only read this table.

CREATE TABLE worklist_entries (
    batch_id        bigint PRIMARY KEY REFERENCES scan_batches (id) ON DELETE CASCADE,
    study           text NOT NULL,
    received_at     timestamptz NOT NULL,
    result_id       bigint NOT NULL,
    max_p_malignant double precision NOT NULL,
    predicted_class text NOT NULL,
    needs_review    boolean NOT NULL,
    review_id       bigint,                      -- latest study-level review, if any
    reviewed_label  text,                        -- the label that review settled on
    disagrees       boolean NOT NULL DEFAULT false
);
CREATE INDEX worklist_risk_idx ON worklist_entries (max_p_malignant DESC, batch_id);
CREATE INDEX worklist_unreviewed_idx ON worklist_entries (max_p_malignant DESC, batch_id)
    WHERE review_id IS NULL;
CREATE INDEX worklist_disagrees_idx ON worklist_entries (max_p_malignant DESC, batch_id)
    WHERE disagrees;
CREATE INDEX worklist_uncertain_idx ON worklist_entries (max_p_malignant DESC, batch_id)
    WHERE needs_review;
CREATE INDEX worklist_received_idx ON worklist_entries (received_at);
CREATE INDEX worklist_study_idx ON worklist_entries (study text_pattern_ops);
GRANT SELECT ON worklist_entries TO lung_dashboard;

-- Recompute one study's entry from its results and reviews. Locking the study's batch row
-- serialises concurrent writers of the same study (a row lock, so bulk inserts do not fill
-- the lock table), and each statement below then sees what they committed (READ
-- COMMITTED), so the entry never goes stale. FOR NO KEY UPDATE does not block foreign-key
-- checks of rows that merely reference the batch.
CREATE FUNCTION worklist_refresh(target bigint) RETURNS void
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
        predicted_class, needs_review, review_id, reviewed_label, disagrees)
    SELECT b.id, b.study, b.started_at, latest.id, latest.max_p_malignant,
           latest.predicted_class, latest.needs_review, review.id, settled,
           coalesce(settled <> latest.predicted_class, false)
    FROM scan_batches b WHERE b.id = target
    ON CONFLICT (batch_id) DO UPDATE SET
        result_id = excluded.result_id, max_p_malignant = excluded.max_p_malignant,
        predicted_class = excluded.predicted_class, needs_review = excluded.needs_review,
        review_id = excluded.review_id, reviewed_label = excluded.reviewed_label,
        disagrees = excluded.disagrees;
END;
$$;
REVOKE ALL ON FUNCTION worklist_refresh(bigint) FROM PUBLIC;

CREATE FUNCTION worklist_follow() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM worklist_refresh(OLD.batch_id);
        RETURN OLD;
    END IF;
    PERFORM worklist_refresh(NEW.batch_id);
    IF TG_OP = 'UPDATE' AND OLD.batch_id <> NEW.batch_id THEN
        PERFORM worklist_refresh(OLD.batch_id);
    END IF;
    RETURN NEW;
END;
$$;
REVOKE ALL ON FUNCTION worklist_follow() FROM PUBLIC;

CREATE TRIGGER worklist_follows_results AFTER INSERT OR UPDATE OR DELETE ON study_results
    FOR EACH ROW EXECUTE FUNCTION worklist_follow();
CREATE TRIGGER worklist_follows_reviews AFTER INSERT ON reviews
    FOR EACH ROW WHEN (NEW.image_id IS NULL) EXECUTE FUNCTION worklist_follow();

-- Studies scored before this migration, in one pass.
INSERT INTO worklist_entries (batch_id, study, received_at, result_id, max_p_malignant,
    predicted_class, needs_review, review_id, reviewed_label, disagrees)
SELECT b.id, b.study, b.started_at, r.id, r.max_p_malignant, r.predicted_class,
       r.needs_review, v.id, s.settled, coalesce(s.settled <> r.predicted_class, false)
FROM scan_batches b
JOIN LATERAL (SELECT * FROM study_results x WHERE x.batch_id = b.id
              ORDER BY x.created_at DESC, x.id DESC LIMIT 1) r ON true
LEFT JOIN LATERAL (SELECT * FROM reviews y WHERE y.batch_id = b.id AND y.image_id IS NULL
                   ORDER BY y.created_at DESC, y.id DESC LIMIT 1) v ON true
CROSS JOIN LATERAL (SELECT CASE v.decision WHEN 'correct' THEN v.corrected_label
                                           WHEN 'confirm' THEN r.predicted_class END
                    AS settled) s;
