-- Infectious-disease surveillance (caravan_store::surveillance): regions and their cross-border neighbours,
-- notifiable-disease reports (pseudonymised line list and aggregate counts per ISO week), alerts and their notes.

CREATE TABLE surv_regions (
    code TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    country TEXT NOT NULL,
    population INTEGER NOT NULL
);

CREATE TABLE surv_neighbours (
    region TEXT NOT NULL REFERENCES surv_regions(code) ON DELETE CASCADE,
    node_id TEXT NOT NULL,
    remote_region TEXT NOT NULL,
    remote_name TEXT NOT NULL,
    PRIMARY KEY (region, node_id, remote_region)
);

CREATE TABLE surv_cases (
    id TEXT PRIMARY KEY,
    pseudonym TEXT NOT NULL,
    disease TEXT NOT NULL,
    region TEXT NOT NULL,
    onset_date TEXT NOT NULL,
    report_date TEXT NOT NULL,
    iso_year INTEGER NOT NULL,               -- ISO week of onset, computed by the store
    iso_week INTEGER NOT NULL,
    age_band TEXT NOT NULL,
    sex TEXT NOT NULL,
    outcome TEXT NOT NULL,
    lab_confirmed INTEGER NOT NULL,
    reported_by TEXT NOT NULL,
    source TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX surv_cases_series ON surv_cases(disease, region, iso_year, iso_week);

CREATE TABLE surv_aggregates (
    disease TEXT NOT NULL,
    region TEXT NOT NULL,
    iso_year INTEGER NOT NULL,
    iso_week INTEGER NOT NULL,
    count INTEGER NOT NULL,
    reported_by TEXT NOT NULL,
    source TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (disease, region, iso_year, iso_week)
);

CREATE TABLE surv_alerts (
    id TEXT PRIMARY KEY,
    origin_node TEXT NOT NULL,               -- '' for this node's own alerts
    origin_id TEXT NOT NULL,
    disease TEXT NOT NULL,
    region TEXT NOT NULL,
    region_name TEXT NOT NULL,
    country TEXT NOT NULL,
    local_region TEXT,
    iso_year INTEGER NOT NULL,
    iso_week INTEGER NOT NULL,
    observed REAL NOT NULL,
    upperbound REAL,
    method TEXT NOT NULL,
    created_at TEXT NOT NULL,
    status TEXT NOT NULL,                    -- open | acknowledged
    acknowledged_by TEXT,
    acknowledged_at TEXT,
    UNIQUE (origin_node, disease, region, iso_year, iso_week)
);
CREATE INDEX surv_alerts_origin ON surv_alerts(origin_node, origin_id);

CREATE TABLE surv_notes (
    id TEXT PRIMARY KEY,
    alert_id TEXT NOT NULL REFERENCES surv_alerts(id),
    kind TEXT NOT NULL,                      -- note | ack
    author_name TEXT NOT NULL,
    author_node TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX surv_notes_alert ON surv_notes(alert_id, created_at);

CREATE TABLE surv_foreign_counts (
    node_id TEXT NOT NULL,
    region TEXT NOT NULL,
    disease TEXT NOT NULL,
    iso_year INTEGER NOT NULL,
    iso_week INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (node_id, region, disease, iso_year, iso_week)
);
