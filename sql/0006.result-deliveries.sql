-- depends: 0001.results-schema 0003.dashboard-role
-- Results out (lung_model.exchange.deliveries): one row per version of a study's report and
-- place it goes to. A report version is the model's preliminary result ('model:<name>:<version>')
-- or a clinician's review ('review:<id>', final). The row exists before the first attempt and
-- names the object sent (the SR's SOP Instance UID, the DiagnosticReport's id), so a retry
-- after a crash sends the same object again, never a second one; 'sent' rows are never sent
-- again. A destination that is down keeps its rows 'waiting' with the next attempt backed off.

CREATE TABLE result_deliveries (
    id                  bigserial PRIMARY KEY,
    batch_id            bigint NOT NULL REFERENCES scan_batches (id) ON DELETE CASCADE,
    report              text NOT NULL,
    report_status       text NOT NULL CHECK (report_status IN ('preliminary', 'final')),
    channel             text NOT NULL CHECK (channel IN ('dicom', 'stow-rs', 'fhir-outbox', 'fhir')),
    destination         text NOT NULL,              -- AET@host:port, a URL, or the outbox folder
    study_instance_uid  text NOT NULL,
    object_uid          text NOT NULL,              -- SR SOP Instance UID or DiagnosticReport id
    status              text NOT NULL DEFAULT 'waiting' CHECK (status IN ('waiting', 'sent')),
    attempts            integer NOT NULL DEFAULT 0,
    next_attempt_at     timestamptz NOT NULL DEFAULT now(),
    last_error          text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    sent_at             timestamptz,
    UNIQUE (batch_id, report, channel, destination),
    CHECK ((status = 'sent') = (sent_at IS NOT NULL))
);
CREATE INDEX result_deliveries_waiting_idx ON result_deliveries (next_attempt_at)
    WHERE status = 'waiting';
CREATE INDEX result_deliveries_batch_idx ON result_deliveries (batch_id, created_at DESC);

-- The Study and Operations pages show what was sent and what waits (read only).
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'lung_dashboard') THEN
        GRANT SELECT ON result_deliveries TO lung_dashboard;
    END IF;
END
$$;
