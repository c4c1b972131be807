-- Attachment content is stored once per SHA-256 and shared by every row with the same bytes; the blob sweep asks
-- which keys rows still name.
CREATE INDEX attachments_blob_key ON attachments(blob_key);
