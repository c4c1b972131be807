-- Who stored each instance (the archive's principal: `dicom:<AE title>`, `federation:<node>`, a user), so a
-- study can be removed only when every instance of it came from one source (see `Archive::delete_study`).
-- Instances stored before this column existed have an empty source: their provenance is unknown and a
-- conditional delete keeps them.
ALTER TABLE instances ADD COLUMN source TEXT NOT NULL DEFAULT '';
