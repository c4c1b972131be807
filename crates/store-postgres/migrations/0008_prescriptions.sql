-- e-Prescription (caravan_store::rx): imported reference tables, patient allergies, prescriptions and dispenses.
-- Records are JSON documents in the field names of the store's types, with the columns queries filter on.

CREATE TABLE rx_tables (
    name TEXT NOT NULL,                      -- formulary | interactions | allergies
    key TEXT NOT NULL,
    doc JSONB NOT NULL,
    PRIMARY KEY (name, key)
);

CREATE TABLE rx_allergies (
    id UUID PRIMARY KEY,
    patient_id UUID NOT NULL REFERENCES patients(id),
    recorded_at TIMESTAMPTZ NOT NULL,
    doc JSONB NOT NULL
);
CREATE INDEX rx_allergies_patient ON rx_allergies(patient_id, recorded_at);

CREATE TABLE rx_prescriptions (
    id UUID PRIMARY KEY,
    patient_id UUID REFERENCES patients(id),  -- NULL: received from another node for dispensing here
    origin_node TEXT,
    status TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    doc JSONB NOT NULL
);
CREATE INDEX rx_prescriptions_patient ON rx_prescriptions(patient_id, created_at);
CREATE INDEX rx_prescriptions_received ON rx_prescriptions(origin_node, created_at);

CREATE TABLE rx_dispenses (
    id UUID PRIMARY KEY,
    prescription_id UUID NOT NULL REFERENCES rx_prescriptions(id),
    dispensed_at TIMESTAMPTZ NOT NULL,
    doc JSONB NOT NULL
);
CREATE INDEX rx_dispenses_prescription ON rx_dispenses(prescription_id, dispensed_at);
