-- cdviz extension script, assembled from sql/ext/*.sql in name order.
\echo Use "CREATE EXTENSION cdviz" to load this file. \quit

-- The schema is created here rather than named in cdviz.control: a schema
-- the script creates belongs to the extension, so DROP EXTENSION removes it.
CREATE SCHEMA cdviz;

-- Roles are cluster-wide: create them only when missing, so the extension
-- can live in several databases of one cluster, and leave them behind on
-- DROP EXTENSION (other databases may still use them).
DO $roles$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'cdviz_reader') THEN
		CREATE ROLE cdviz_reader NOLOGIN;
		COMMENT ON ROLE cdviz_reader IS 'cdviz: read-only access to the cdviz read API (views and query functions)';
	END IF;
	IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'cdviz_writer') THEN
		CREATE ROLE cdviz_writer NOLOGIN;
		COMMENT ON ROLE cdviz_writer IS 'cdviz: may submit events through the cdviz ingest functions';
	END IF;
END
$roles$;

COMMENT ON SCHEMA cdviz IS 'cdviz: CDEvents lake, ingest functions and read API';
GRANT USAGE ON SCHEMA cdviz TO cdviz_reader, cdviz_writer;
