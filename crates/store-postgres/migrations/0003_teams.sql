-- Standing multidisciplinary teams that routing can propose as a whole.
CREATE TABLE teams (
    id UUID PRIMARY KEY,
    institution_id UUID NOT NULL REFERENCES institutions(id),
    name TEXT NOT NULL,
    specialty TEXT NOT NULL,
    lead_id UUID NOT NULL REFERENCES users(id),
    member_ids UUID[] NOT NULL        -- lead excluded
);
CREATE INDEX teams_specialty ON teams(specialty);
