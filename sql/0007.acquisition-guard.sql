-- depends: 0001.results-schema 0003.dashboard-role
-- The acquisition guard (lung_model.scoring.guard): for a model that ships the range of
-- acquisition measurements it learned from, each scored slice's measurements (pixel noise,
-- estimated display window, matrix size; lung_model.imaging.acquisition) and, per study
-- result, the range it was checked against and the measurements on which the study lies
-- outside it ('[]': inside). NULL everywhere: scored by a model without a range (unguarded).

ALTER TABLE images ADD COLUMN acquisition jsonb;
ALTER TABLE study_results ADD COLUMN acquisition_range jsonb;
ALTER TABLE study_results ADD COLUMN acquisition_outside jsonb;
-- the Operations page lists the latest studies outside the range
CREATE INDEX study_results_unlike_training_idx ON study_results (created_at DESC)
    WHERE jsonb_array_length(acquisition_outside) > 0;

-- The dashboard role reads the guard's columns (the worklist, Study and Operations pages),
-- as sql/0003.dashboard-role.sql grants it the tables they belong to.
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'lung_dashboard') THEN
        GRANT SELECT ON images, study_results TO lung_dashboard;
    END IF;
END
$$;
