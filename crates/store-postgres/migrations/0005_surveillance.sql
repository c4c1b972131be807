-- Infectious-disease surveillance (caravan_store::surveillance): regions and their cross-border neighbours,
-- notifiable-disease reports (pseudonymised line list and aggregate counts per ISO week), alerts and their notes.

CREATE TABLE surv_regions (
    code TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    country TEXT NOT NULL,
    population BIGINT NOT NULL
);

CREATE TABLE surv_neighbours (
    region TEXT NOT NULL REFERENCES surv_regions(code) ON DELETE CASCADE,
    node_id TEXT NOT NULL,
    remote_region TEXT NOT NULL,
    remote_name TEXT NOT NULL,
    PRIMARY KEY (region, node_id, remote_region)
);

CREATE TABLE surv_cases (
    id UUID PRIMARY KEY,
    pseudonym TEXT NOT NULL,
    disease TEXT NOT NULL,
    region TEXT NOT NULL,
    onset_date DATE NOT NULL,
    report_date DATE NOT NULL,
    iso_year INTEGER NOT NULL,               -- ISO week of onset, computed by the store
    iso_week INTEGER NOT NULL,
    age_band TEXT NOT NULL,
    sex TEXT NOT NULL,
    outcome TEXT NOT NULL,
    lab_confirmed BOOLEAN NOT NULL,
    reported_by UUID NOT NULL,
    source TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX surv_cases_series ON surv_cases(disease, region, iso_year, iso_week);

CREATE TABLE surv_aggregates (
    disease TEXT NOT NULL,
    region TEXT NOT NULL,
    iso_year INTEGER NOT NULL,
    iso_week INTEGER NOT NULL,
    count BIGINT NOT NULL,
    reported_by UUID NOT NULL,
    source TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (disease, region, iso_year, iso_week)
);

CREATE TABLE surv_alerts (
    id UUID PRIMARY KEY,
    origin_node TEXT NOT NULL,               -- '' for this node's own alerts
    origin_id TEXT NOT NULL,
    disease TEXT NOT NULL,
    region TEXT NOT NULL,
    region_name TEXT NOT NULL,
    country TEXT NOT NULL,
    local_region TEXT,
    iso_year INTEGER NOT NULL,
    iso_week INTEGER NOT NULL,
    observed DOUBLE PRECISION NOT NULL,
    upperbound DOUBLE PRECISION,
    method TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    status TEXT NOT NULL,                    -- open | acknowledged
    acknowledged_by TEXT,
    acknowledged_at TIMESTAMPTZ,
    UNIQUE (origin_node, disease, region, iso_year, iso_week)
);
CREATE INDEX surv_alerts_origin ON surv_alerts(origin_node, origin_id);

CREATE TABLE surv_notes (
    id UUID PRIMARY KEY,
    alert_id UUID NOT NULL REFERENCES surv_alerts(id),
    kind TEXT NOT NULL,                      -- note | ack
    author_name TEXT NOT NULL,
    author_node TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX surv_notes_alert ON surv_notes(alert_id, created_at);

CREATE TABLE surv_foreign_counts (
    node_id TEXT NOT NULL,
    region TEXT NOT NULL,
    disease TEXT NOT NULL,
    iso_year INTEGER NOT NULL,
    iso_week INTEGER NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (node_id, region, disease, iso_year, iso_week)
);
