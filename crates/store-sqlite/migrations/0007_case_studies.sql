-- DICOM studies linked to consultations (the pixels stay in the imaging archive).
CREATE TABLE case_studies (
    consultation_id TEXT NOT NULL REFERENCES consultations(id),
    study_uid TEXT NOT NULL,
    accession TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    modalities TEXT NOT NULL DEFAULT '',
    study_date TEXT NOT NULL DEFAULT '',
    instances INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL CHECK (state IN ('ready', 'pending', 'failed')),
    share INTEGER NOT NULL DEFAULT 1,
    origin_node TEXT,
    transfer TEXT,
    detail TEXT NOT NULL DEFAULT '',
    added_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (consultation_id, study_uid)
);
CREATE INDEX case_studies_pending ON case_studies(state) WHERE state = 'pending';
