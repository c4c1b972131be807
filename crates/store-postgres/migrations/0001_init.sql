-- Caravan node schema (PostgreSQL). The same tables as the SQLite backend, in native types: ids are UUID,
-- instants are TIMESTAMPTZ (microsecond precision, exactly the precision the audit chain hashes), documents are
-- JSONB.

CREATE TABLE institutions (
    id UUID PRIMARY KEY,
    name TEXT NOT NULL,
    level TEXT NOT NULL,
    country TEXT NOT NULL,
    parent_id UUID REFERENCES institutions(id),
    timezone TEXT NOT NULL
);

CREATE TABLE users (
    id UUID PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    institution_id UUID NOT NULL REFERENCES institutions(id),
    role TEXT NOT NULL,
    patient_id UUID,
    profile JSONB,              -- PractitionerProfile
    locale TEXT NOT NULL,
    active BOOLEAN NOT NULL,
    password_hash TEXT
);
CREATE INDEX users_institution ON users(institution_id);

CREATE TABLE user_specialties (
    user_id UUID NOT NULL REFERENCES users(id),
    specialty TEXT NOT NULL,
    PRIMARY KEY (specialty, user_id)
);

CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    user_id UUID NOT NULL REFERENCES users(id),
    csrf_token TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX sessions_expiry ON sessions(expires_at);

CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    user_id UUID NOT NULL REFERENCES users(id),
    name TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    last_used_at TIMESTAMPTZ,
    revoked BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX api_tokens_user ON api_tokens(user_id);

CREATE TABLE patients (
    id UUID PRIMARY KEY,
    institution_id UUID NOT NULL REFERENCES institutions(id),
    given_name TEXT NOT NULL,
    family_name TEXT NOT NULL,
    birth_date DATE NOT NULL,
    sex TEXT NOT NULL,
    national_id TEXT,
    languages JSONB NOT NULL     -- array of language tags
);
CREATE INDEX patients_institution ON patients(institution_id);

CREATE TABLE consents (
    id UUID PRIMARY KEY,
    patient_id UUID NOT NULL REFERENCES patients(id),
    scope TEXT NOT NULL,
    granted BOOLEAN NOT NULL,
    recorded_by UUID NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL,
    note TEXT NOT NULL
);
CREATE INDEX consents_patient ON consents(patient_id);

CREATE TABLE consultations (
    id UUID PRIMARY KEY,
    institution_id UUID NOT NULL REFERENCES institutions(id),
    referrer_id UUID NOT NULL REFERENCES users(id),
    patient_id UUID NOT NULL REFERENCES patients(id),
    specialty TEXT NOT NULL,
    urgency TEXT NOT NULL,
    state TEXT NOT NULL,
    assigned_to UUID,
    due_at TIMESTAMPTZ,
    escalated_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL,
    version BIGINT NOT NULL,
    doc JSONB NOT NULL           -- the Consultation: the source of truth; the columns above are for queries
);
CREATE INDEX consultations_institution ON consultations(institution_id, state);
CREATE INDEX consultations_assigned ON consultations(assigned_to, state);
CREATE INDEX consultations_patient ON consultations(patient_id);
CREATE INDEX consultations_due ON consultations(state, due_at);

-- Everyone who takes part in a case (referrer, assignee, panel): the key of "a consultation shares the patient".
CREATE TABLE participants (
    consultation_id UUID NOT NULL REFERENCES consultations(id),
    user_id UUID NOT NULL,
    institution_id UUID NOT NULL,
    PRIMARY KEY (consultation_id, user_id)
);
CREATE INDEX participants_user ON participants(user_id);
CREATE INDEX participants_institution ON participants(institution_id);

CREATE TABLE messages (
    id UUID PRIMARY KEY,
    consultation_id UUID NOT NULL REFERENCES consultations(id),
    parent_id UUID,
    author_id UUID NOT NULL,
    author_name TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX messages_consultation ON messages(consultation_id, created_at);

CREATE TABLE attachments (
    id UUID PRIMARY KEY,
    consultation_id UUID NOT NULL REFERENCES consultations(id),
    filename TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    blob_key TEXT NOT NULL,
    uploaded_by UUID NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX attachments_consultation ON attachments(consultation_id);

CREATE TABLE audit_events (
    seq BIGINT PRIMARY KEY,
    at TIMESTAMPTZ NOT NULL,
    actor_user UUID,
    actor_name TEXT NOT NULL,
    actor_institution UUID,
    actor_role TEXT,
    action TEXT NOT NULL,
    entity_type TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    patient_id UUID,
    purpose TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_patient ON audit_events(patient_id, seq);
CREATE INDEX audit_entity ON audit_events(entity_type, entity_id, seq);

-- The head of the audit chain: exactly one row. Every transaction that appends audit events locks it
-- (SELECT ... FOR UPDATE) as its last step before commit, so appends from any number of connections and
-- processes are serialised and the chain stays linear; a rolled-back transaction leaves the head untouched, so
-- sequence numbers have no gaps.
CREATE TABLE audit_head (
    id SMALLINT PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
