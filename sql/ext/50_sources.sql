-- Progress of the folder and S3 sources (51_source_catalog.sql).
-- Each file or object has a progress row, written in the same transaction
-- as the events read from it, so that after a crash at any moment the
-- worker resumes exactly where the committed events end: nothing is lost,
-- nothing is stored twice.

CREATE TABLE cdviz.fs_files (
	path			text PRIMARY KEY,
	source			text NOT NULL,
	size			bigint NOT NULL,
	mtime			timestamptz NOT NULL,
	read_offset		bigint NOT NULL DEFAULT 0,
	lines_read		bigint NOT NULL DEFAULT 0,
	prefix_hash		bigint NOT NULL,
	status			text NOT NULL
		CHECK (status IN ('reading', 'read', 'rejected', 'error', 'deleted', 'moved')),
	moved_to		text,
	events			bigint NOT NULL DEFAULT 0,
	duplicates		bigint NOT NULL DEFAULT 0,
	rejected		bigint NOT NULL DEFAULT 0,
	first_read_at	timestamptz,
	last_read_at	timestamptz,
	last_error		text,
	last_error_at	timestamptz
);
CREATE INDEX fs_files_source ON cdviz.fs_files (source);

COMMENT ON TABLE cdviz.fs_files IS
'cdviz: progress of the folder source (cdviz.fs_path), one row per file seen; written by the poller in the transaction that stores the file''s events';
COMMENT ON COLUMN cdviz.fs_files.path IS 'absolute path of the file';
COMMENT ON COLUMN cdviz.fs_files.source IS 'the cdviz.fs_path the file was found under';
COMMENT ON COLUMN cdviz.fs_files.size IS 'file size in bytes when it was last read';
COMMENT ON COLUMN cdviz.fs_files.mtime IS 'file modification time when it was last read';
COMMENT ON COLUMN cdviz.fs_files.read_offset IS 'bytes consumed: JSON Lines files continue from here when lines are appended';
COMMENT ON COLUMN cdviz.fs_files.lines_read IS 'lines consumed (the line number of the last line read)';
COMMENT ON COLUMN cdviz.fs_files.prefix_hash IS '64-bit FNV-1a hash of bytes [0, read_offset): an appended file keeps it, a rewritten one is read again from the start';
COMMENT ON COLUMN cdviz.fs_files.status IS 'reading (more to read), read, rejected (not JSON at all, kept once in rejected_events), error (could not be read, see last_error), deleted or moved (cdviz.fs_after)';
COMMENT ON COLUMN cdviz.fs_files.moved_to IS 'where cdviz.fs_after = move put the file';
COMMENT ON COLUMN cdviz.fs_files.events IS 'events stored from this file (all readings)';
COMMENT ON COLUMN cdviz.fs_files.duplicates IS 'events of this file the lake already had';
COMMENT ON COLUMN cdviz.fs_files.rejected IS 'lines or elements of this file sent to cdviz.rejected_events';
COMMENT ON COLUMN cdviz.fs_files.first_read_at IS 'when the poller first stored something from this file';
COMMENT ON COLUMN cdviz.fs_files.last_read_at IS 'when the poller last read this file';
COMMENT ON COLUMN cdviz.fs_files.last_error IS 'why the file could not be read or moved, the last time it failed';
COMMENT ON COLUMN cdviz.fs_files.last_error_at IS 'when last_error happened';

CREATE TABLE cdviz.s3_objects (
	bucket			text NOT NULL,
	key				text NOT NULL,
	source			text NOT NULL,
	etag			text NOT NULL,
	size			bigint NOT NULL,
	read_offset		bigint NOT NULL DEFAULT 0,
	lines_read		bigint NOT NULL DEFAULT 0,
	prefix_hash		bigint NOT NULL,
	status			text NOT NULL
		CHECK (status IN ('reading', 'read', 'rejected', 'error')),
	events			bigint NOT NULL DEFAULT 0,
	duplicates		bigint NOT NULL DEFAULT 0,
	rejected		bigint NOT NULL DEFAULT 0,
	first_read_at	timestamptz,
	last_read_at	timestamptz,
	last_error		text,
	last_error_at	timestamptz,
	PRIMARY KEY (bucket, key)
);
CREATE INDEX s3_objects_source ON cdviz.s3_objects (source);

COMMENT ON TABLE cdviz.s3_objects IS
'cdviz: progress of the S3 source, one row per object seen; written by the poller in the transaction that stores the object''s events';
COMMENT ON COLUMN cdviz.s3_objects.bucket IS 'cdviz.s3_bucket';
COMMENT ON COLUMN cdviz.s3_objects.key IS 'object key';
COMMENT ON COLUMN cdviz.s3_objects.source IS 'the source the object was listed under: s3://bucket/prefix';
COMMENT ON COLUMN cdviz.s3_objects.etag IS 'ETag of the version read; a new ETag means the object is read again (its events deduplicate)';
COMMENT ON COLUMN cdviz.s3_objects.size IS 'object size in bytes, as listed';
COMMENT ON COLUMN cdviz.s3_objects.read_offset IS 'bytes consumed of this version (large JSON Lines objects are committed in chunks)';
COMMENT ON COLUMN cdviz.s3_objects.lines_read IS 'lines consumed of this version';
COMMENT ON COLUMN cdviz.s3_objects.prefix_hash IS '64-bit FNV-1a hash of bytes [0, read_offset)';
COMMENT ON COLUMN cdviz.s3_objects.status IS 'reading (more to read), read, rejected (not JSON at all), error (see last_error)';
COMMENT ON COLUMN cdviz.s3_objects.events IS 'events stored from this object (all versions)';
COMMENT ON COLUMN cdviz.s3_objects.duplicates IS 'events of this object the lake already had';
COMMENT ON COLUMN cdviz.s3_objects.rejected IS 'lines or elements sent to cdviz.rejected_events';
COMMENT ON COLUMN cdviz.s3_objects.first_read_at IS 'when the poller first stored something from this object';
COMMENT ON COLUMN cdviz.s3_objects.last_read_at IS 'when the poller last read this object';
COMMENT ON COLUMN cdviz.s3_objects.last_error IS 'why the object could not be read, the last time it failed';
COMMENT ON COLUMN cdviz.s3_objects.last_error_at IS 'when last_error happened';

-- cdviz.source_status, one row per source, is in 51_source_catalog.sql.

-- The pollers' progress survives pg_dump: a restored server reads nothing
-- twice.
SELECT pg_catalog.pg_extension_config_dump('cdviz.fs_files', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.s3_objects', '');
