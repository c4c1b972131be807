-- Live care (caravan_store::visits): FHIR Schedule / Slot / Appointment + Encounter, guest invitations and the
-- participants of a call.
CREATE TABLE visit_schedules (
    id UUID PRIMARY KEY,
    institution_id UUID NOT NULL REFERENCES institutions(id),
    practitioner_id UUID NOT NULL REFERENCES users(id),
    service TEXT NOT NULL,
    active BOOLEAN NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX visit_schedules_practitioner ON visit_schedules(practitioner_id);

CREATE TABLE visit_slots (
    id UUID PRIMARY KEY,
    schedule_id UUID NOT NULL REFERENCES visit_schedules(id),
    start_at TIMESTAMPTZ NOT NULL,
    end_at TIMESTAMPTZ NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('free','busy')),
    CHECK (start_at < end_at)
);
CREATE INDEX visit_slots_schedule ON visit_slots(schedule_id, start_at);

CREATE TABLE visits (
    id UUID PRIMARY KEY,
    slot_id UUID REFERENCES visit_slots(id),
    institution_id UUID NOT NULL REFERENCES institutions(id),
    practitioner_id UUID NOT NULL REFERENCES users(id),
    patient_id UUID NOT NULL REFERENCES patients(id),
    consultation_id UUID REFERENCES consultations(id),
    start_at TIMESTAMPTZ NOT NULL,
    end_at TIMESTAMPTZ NOT NULL,
    reason TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('booked','arrived','in-progress','finished','cancelled')),
    arrived_at TIMESTAMPTZ,
    started_at TIMESTAMPTZ,
    ended_at TIMESTAMPTZ,
    created_by UUID NOT NULL REFERENCES users(id),
    created_at TIMESTAMPTZ NOT NULL,
    CHECK (start_at < end_at)
);
CREATE INDEX visits_practitioner ON visits(practitioner_id, start_at);
CREATE INDEX visits_patient ON visits(patient_id);
-- A slot is booked once (a cancelled visit gives it back).
CREATE UNIQUE INDEX visits_slot_once ON visits(slot_id) WHERE slot_id IS NOT NULL AND status <> 'cancelled';
-- One patient at a time: a clinician has at most one visit in progress, even under racing admissions.
CREATE UNIQUE INDEX visits_one_in_progress ON visits(practitioner_id) WHERE status = 'in-progress';

CREATE TABLE visit_invitations (
    id UUID PRIMARY KEY,
    visit_id UUID NOT NULL REFERENCES visits(id),
    role TEXT NOT NULL,
    display_name TEXT NOT NULL,
    user_id UUID REFERENCES users(id),
    token_hash TEXT UNIQUE,
    expires_at TIMESTAMPTZ NOT NULL,
    created_by UUID NOT NULL REFERENCES users(id),
    created_at TIMESTAMPTZ NOT NULL,
    CHECK ((user_id IS NULL) <> (token_hash IS NULL))
);
CREATE INDEX visit_invitations_visit ON visit_invitations(visit_id);
CREATE INDEX visit_invitations_user ON visit_invitations(user_id);

CREATE TABLE visit_participants (
    visit_id UUID NOT NULL REFERENCES visits(id),
    participant TEXT NOT NULL,
    role TEXT NOT NULL,
    display_name TEXT NOT NULL,
    joined_at TIMESTAMPTZ NOT NULL,
    left_at TIMESTAMPTZ,
    PRIMARY KEY (visit_id, participant)
);
