-- A search or a list is recorded as one audit event whose subjects (the records it returned, each with its
-- patient; JSON text `[[entity_id, patient_id], ...]`) are part of the hashed event, instead of one full event per
-- record returned. `audit_subjects` indexes those events by each listed patient, so that the patient's access
-- log, and the trail of a patient's case, find them.
ALTER TABLE audit_events ADD COLUMN subjects TEXT;
CREATE TABLE audit_subjects (
    patient_id UUID NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (patient_id, seq)
);
