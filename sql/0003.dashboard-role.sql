-- depends: 0001.results-schema
-- The review dashboard's database role: it reads results and appends reviews, nothing more.
-- Roles are cluster-wide (several databases may share one), so it is created only when
-- missing; grants are per database. The dashboard logs in as this role (lung_model.review.
-- database sets its generated password at setup), so a bug or an injected statement in the
-- dashboard cannot change predictions, results or promotion history, nor erase a review.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'lung_dashboard') THEN
        CREATE ROLE lung_dashboard LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- another database's migration created it at the same moment
END
$$;

REVOKE ALL ON ALL TABLES IN SCHEMA public FROM lung_dashboard;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO lung_dashboard;
GRANT INSERT ON reviews TO lung_dashboard;
GRANT USAGE ON SEQUENCE reviews_id_seq TO lung_dashboard;

-- Tables later migrations add (drift checks, exports, ...) are readable, never writable.
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO lung_dashboard;

-- The latest result and the latest study-level review of a study (worklist_refresh).
CREATE INDEX study_results_batch_latest_idx
    ON study_results (batch_id, created_at DESC, id DESC);
CREATE INDEX reviews_study_latest_idx
    ON reviews (batch_id, created_at DESC, id DESC) WHERE image_id IS NULL;
