-- A case read takes the latest messages of its thread in thread order (created_at, then id): with id in the
-- index, that is a short backward walk of the index instead of sorting the whole thread.
CREATE INDEX messages_thread ON messages(consultation_id, created_at, id);
DROP INDEX messages_consultation;
