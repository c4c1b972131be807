-- Case-insensitive name search in every script: SQLite's lower() folds ASCII only, so the node stores
-- a Unicode-lowercased copy (caravan_domain::name_search_key) and matches against it.
-- Rows written before this migration are filled in by the store when it opens the database.
ALTER TABLE patients ADD COLUMN search_name TEXT;
CREATE INDEX patients_search_name ON patients (institution_id, search_name);
