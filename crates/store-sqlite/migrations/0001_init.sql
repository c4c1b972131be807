-- Caravan node schema (SQLite). Timestamps are RFC 3339 UTC text with microseconds; ids are UUID text.

CREATE TABLE institutions (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    level TEXT NOT NULL,
    country TEXT NOT NULL,
    parent_id TEXT REFERENCES institutions(id),
    timezone TEXT NOT NULL
);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    institution_id TEXT NOT NULL REFERENCES institutions(id),
    role TEXT NOT NULL,
    patient_id TEXT,
    profile TEXT,              -- JSON PractitionerProfile
    locale TEXT NOT NULL,
    active INTEGER NOT NULL,
    password_hash TEXT
);
CREATE INDEX users_institution ON users(institution_id);

CREATE TABLE user_specialties (
    user_id TEXT NOT NULL REFERENCES users(id),
    specialty TEXT NOT NULL,
    PRIMARY KEY (specialty, user_id)
);

CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    csrf_token TEXT NOT NULL,
    expires_at TEXT NOT NULL
);

CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL REFERENCES users(id),
    name TEXT NOT NULL,
    created_at TEXT NOT NULL,
    last_used_at TEXT,
    revoked INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE patients (
    id TEXT PRIMARY KEY,
    institution_id TEXT NOT NULL REFERENCES institutions(id),
    given_name TEXT NOT NULL,
    family_name TEXT NOT NULL,
    birth_date TEXT NOT NULL,
    sex TEXT NOT NULL,
    national_id TEXT,
    languages TEXT NOT NULL     -- JSON array
);
CREATE INDEX patients_institution ON patients(institution_id);

CREATE TABLE consents (
    id TEXT PRIMARY KEY,
    patient_id TEXT NOT NULL REFERENCES patients(id),
    scope TEXT NOT NULL,
    granted INTEGER NOT NULL,
    recorded_by TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    note TEXT NOT NULL
);
CREATE INDEX consents_patient ON consents(patient_id);

CREATE TABLE consultations (
    id TEXT PRIMARY KEY,
    institution_id TEXT NOT NULL REFERENCES institutions(id),
    referrer_id TEXT NOT NULL REFERENCES users(id),
    patient_id TEXT NOT NULL REFERENCES patients(id),
    specialty TEXT NOT NULL,
    urgency TEXT NOT NULL,
    state TEXT NOT NULL,
    assigned_to TEXT,
    due_at TEXT,
    escalated_at TEXT,
    created_at TEXT NOT NULL,
    version INTEGER NOT NULL,
    doc TEXT NOT NULL           -- JSON Consultation: the source of truth; the columns above are for queries
);
CREATE INDEX consultations_institution ON consultations(institution_id, state);
CREATE INDEX consultations_assigned ON consultations(assigned_to, state);
CREATE INDEX consultations_patient ON consultations(patient_id);
CREATE INDEX consultations_due ON consultations(state, due_at);

-- Everyone who takes part in a case (referrer, assignee, panel): the key of "a consultation shares the patient".
CREATE TABLE participants (
    consultation_id TEXT NOT NULL REFERENCES consultations(id),
    user_id TEXT NOT NULL,
    institution_id TEXT NOT NULL,
    PRIMARY KEY (consultation_id, user_id)
);
CREATE INDEX participants_user ON participants(user_id);
CREATE INDEX participants_institution ON participants(institution_id);

CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    consultation_id TEXT NOT NULL REFERENCES consultations(id),
    parent_id TEXT,
    author_id TEXT NOT NULL,
    author_name TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX messages_consultation ON messages(consultation_id, created_at);

CREATE TABLE attachments (
    id TEXT PRIMARY KEY,
    consultation_id TEXT NOT NULL REFERENCES consultations(id),
    filename TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    blob_key TEXT NOT NULL,
    uploaded_by TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX attachments_consultation ON attachments(consultation_id);

CREATE TABLE audit_events (
    seq INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    actor_user TEXT,
    actor_name TEXT NOT NULL,
    actor_institution TEXT,
    actor_role TEXT,
    action TEXT NOT NULL,
    entity_type TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    patient_id TEXT,
    purpose TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_patient ON audit_events(patient_id, seq);
CREATE INDEX audit_entity ON audit_events(entity_type, entity_id, seq);
