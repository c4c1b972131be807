-- Federation (docs/federation.md §9): outbox and inbox of signed envelopes, stand-ins for other nodes and their
-- people, and the links between a case and its copies abroad.

CREATE TABLE fed_outbox (
    seq BIGSERIAL PRIMARY KEY,               -- enqueue order: each destination is served in this order
    envelope_id UUID NOT NULL UNIQUE,
    destination TEXT NOT NULL,
    message_type TEXT NOT NULL,
    consultation_id UUID,
    envelope BYTEA NOT NULL,
    state TEXT NOT NULL,                     -- pending | delivered | dead
    attempts INTEGER NOT NULL DEFAULT 0,
    enqueued_at TIMESTAMPTZ NOT NULL,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    last_error TEXT,
    done_at TIMESTAMPTZ
);
CREATE INDEX fed_outbox_pending ON fed_outbox(state, destination, seq);

CREATE TABLE fed_inbox (
    envelope_id UUID PRIMARY KEY,
    sender TEXT NOT NULL,
    message_type TEXT NOT NULL,
    consultation_id UUID,
    received_at TIMESTAMPTZ NOT NULL,
    envelope BYTEA,                          -- NULL once the case it carried was purged (retention)
    sha256 TEXT NOT NULL,
    outcome TEXT NOT NULL
);
CREATE INDEX fed_inbox_consultation ON fed_inbox(consultation_id);

CREATE TABLE fed_nodes (
    node_id TEXT PRIMARY KEY,
    institution_id UUID NOT NULL REFERENCES institutions(id)
);

CREATE TABLE fed_remote_users (
    user_id UUID PRIMARY KEY REFERENCES users(id),
    node_id TEXT NOT NULL,
    remote_id TEXT NOT NULL,
    UNIQUE (node_id, remote_id)
);

CREATE TABLE fed_foreign_cases (
    consultation_id UUID PRIMARY KEY REFERENCES consultations(id),
    origin_node TEXT NOT NULL,
    origin_case TEXT NOT NULL,
    retention_until TIMESTAMPTZ NOT NULL,
    UNIQUE (origin_node, origin_case)
);
CREATE INDEX fed_foreign_cases_retention ON fed_foreign_cases(retention_until);

CREATE TABLE fed_shared (
    consultation_id UUID NOT NULL REFERENCES consultations(id),
    node_id TEXT NOT NULL,
    shared_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (consultation_id, node_id)
);

-- net.ping effects: no unique key on purpose, so that a ping processed twice would show (the soak tool counts).
CREATE TABLE fed_pings (
    envelope_id UUID NOT NULL,
    sender TEXT NOT NULL
);
