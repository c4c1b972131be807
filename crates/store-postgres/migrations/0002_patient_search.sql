-- Case-insensitive name search in every script, independent of the database's locale: the node stores a
-- Unicode-lowercased copy (caravan_domain::name_search_key). Older rows are filled in when the store opens.
ALTER TABLE patients ADD COLUMN search_name TEXT;
