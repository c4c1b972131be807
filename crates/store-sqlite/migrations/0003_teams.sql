-- Standing multidisciplinary teams that routing can propose as a whole.
CREATE TABLE teams (
    id TEXT PRIMARY KEY,
    institution_id TEXT NOT NULL REFERENCES institutions(id),
    name TEXT NOT NULL,
    specialty TEXT NOT NULL,
    lead_id TEXT NOT NULL REFERENCES users(id),
    member_ids TEXT NOT NULL          -- JSON array of user ids, lead excluded
);
CREATE INDEX teams_specialty ON teams(specialty);
