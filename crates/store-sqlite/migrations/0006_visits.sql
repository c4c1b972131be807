-- Live care (caravan_store::visits): FHIR Schedule / Slot / Appointment + Encounter, guest invitations and the
-- participants of a call. Times are RFC 3339 UTC strings with microseconds (fixed width, so they sort as text).
CREATE TABLE visit_schedules (
    id TEXT PRIMARY KEY,
    institution_id TEXT NOT NULL REFERENCES institutions(id),
    practitioner_id TEXT NOT NULL REFERENCES users(id),
    service TEXT NOT NULL,
    active INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX visit_schedules_practitioner ON visit_schedules(practitioner_id);

CREATE TABLE visit_slots (
    id TEXT PRIMARY KEY,
    schedule_id TEXT NOT NULL REFERENCES visit_schedules(id),
    start_at TEXT NOT NULL,
    end_at TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('free','busy')),
    CHECK (start_at < end_at)
);
CREATE INDEX visit_slots_schedule ON visit_slots(schedule_id, start_at);

CREATE TABLE visits (
    id TEXT PRIMARY KEY,
    slot_id TEXT REFERENCES visit_slots(id),
    institution_id TEXT NOT NULL REFERENCES institutions(id),
    practitioner_id TEXT NOT NULL REFERENCES users(id),
    patient_id TEXT NOT NULL REFERENCES patients(id),
    consultation_id TEXT REFERENCES consultations(id),
    start_at TEXT NOT NULL,
    end_at TEXT NOT NULL,
    reason TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('booked','arrived','in-progress','finished','cancelled')),
    arrived_at TEXT,
    started_at TEXT,
    ended_at TEXT,
    created_by TEXT NOT NULL REFERENCES users(id),
    created_at TEXT NOT NULL,
    CHECK (start_at < end_at)
);
CREATE INDEX visits_practitioner ON visits(practitioner_id, start_at);
CREATE INDEX visits_patient ON visits(patient_id);
-- A slot is booked once (a cancelled visit gives it back).
CREATE UNIQUE INDEX visits_slot_once ON visits(slot_id) WHERE slot_id IS NOT NULL AND status <> 'cancelled';
-- One patient at a time: a clinician has at most one visit in progress, even under racing admissions.
CREATE UNIQUE INDEX visits_one_in_progress ON visits(practitioner_id) WHERE status = 'in-progress';

CREATE TABLE visit_invitations (
    id TEXT PRIMARY KEY,
    visit_id TEXT NOT NULL REFERENCES visits(id),
    role TEXT NOT NULL,
    display_name TEXT NOT NULL,
    user_id TEXT REFERENCES users(id),
    token_hash TEXT UNIQUE,
    expires_at TEXT NOT NULL,
    created_by TEXT NOT NULL REFERENCES users(id),
    created_at TEXT NOT NULL,
    CHECK ((user_id IS NULL) <> (token_hash IS NULL))
);
CREATE INDEX visit_invitations_visit ON visit_invitations(visit_id);
CREATE INDEX visit_invitations_user ON visit_invitations(user_id);

CREATE TABLE visit_participants (
    visit_id TEXT NOT NULL REFERENCES visits(id),
    participant TEXT NOT NULL,
    role TEXT NOT NULL,
    display_name TEXT NOT NULL,
    joined_at TEXT NOT NULL,
    left_at TEXT,
    PRIMARY KEY (visit_id, participant)
);
