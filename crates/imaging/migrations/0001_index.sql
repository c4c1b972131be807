-- The index of the imaging archive: one row per patient, study, series and instance, holding the
-- attributes that C-FIND and QIDO-RS match on and return. The DICOM bytes live in the object store.
CREATE TABLE patients (
    patient_key TEXT PRIMARY KEY NOT NULL,
    patient_id TEXT NOT NULL,
    patient_name TEXT,
    birth_date TEXT,
    sex TEXT
);
CREATE INDEX patients_name ON patients (patient_name);

CREATE TABLE studies (
    study_uid TEXT PRIMARY KEY NOT NULL,
    patient_key TEXT NOT NULL REFERENCES patients (patient_key),
    study_date TEXT,
    study_time TEXT,
    accession_number TEXT,
    study_id TEXT,
    study_description TEXT,
    referring_physician TEXT
);
CREATE INDEX studies_patient ON studies (patient_key);
CREATE INDEX studies_date ON studies (study_date);
CREATE INDEX studies_accession ON studies (accession_number);

CREATE TABLE series (
    series_uid TEXT PRIMARY KEY NOT NULL,
    study_uid TEXT NOT NULL REFERENCES studies (study_uid),
    modality TEXT,
    series_number INTEGER,
    series_description TEXT,
    body_part TEXT,
    series_date TEXT
);
CREATE INDEX series_study ON series (study_uid);

CREATE TABLE instances (
    sop_uid TEXT PRIMARY KEY NOT NULL,
    series_uid TEXT NOT NULL REFERENCES series (series_uid),
    study_uid TEXT NOT NULL REFERENCES studies (study_uid),
    sop_class_uid TEXT NOT NULL,
    instance_number INTEGER,
    rows INTEGER,
    columns INTEGER,
    number_of_frames INTEGER,
    transfer_syntax TEXT NOT NULL,
    object_key TEXT NOT NULL,
    size INTEGER NOT NULL,
    data_offset INTEGER NOT NULL,
    stored_at TEXT NOT NULL
);
CREATE INDEX instances_series ON instances (series_uid);
CREATE INDEX instances_study ON instances (study_uid);
