-- Scoring lineage: where an archived study now lives, and DICOM slice identity without the
-- patient's identifiers (a keyed HMAC-SHA256 of PatientID, never the ID itself).
-- depends: 0001.results-schema

ALTER TABLE scan_batches ADD COLUMN archive_path text;   -- NULL: scored in place, or not yet archived
ALTER TABLE images ADD COLUMN patient_hash text;         -- NULL for JPEG/PNG and DICOM without PatientID
ALTER TABLE images ADD COLUMN instance_number integer;   -- DICOM InstanceNumber: slice order in a series
CREATE INDEX images_patient_idx ON images (patient_hash) WHERE patient_hash IS NOT NULL;
