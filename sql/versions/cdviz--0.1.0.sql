-- cdviz 0.1.0 extension script: release 0.1.0 as shipped, never edited (later changes go into cdviz--0.1.0--0.2.0.sql and after).
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
-- The lake: one row per accepted event, range-partitioned by month on the
-- event's own timestamp so that retention drops whole months.  The dedup
-- key (context_source, context_id, timestamp) includes the partition key,
-- which PostgreSQL requires of a unique index on a partitioned table; the
-- spec guarantees the three never change on retransmission.
CREATE SEQUENCE cdviz.cdevents_lake_id_seq;

-- Compress a column with lz4 when this server can.
CREATE FUNCTION cdviz._prefer_lz4(tbl regclass, col name)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF EXISTS (SELECT FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
		EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET COMPRESSION lz4', tbl, col);
	END IF;
END
$$;
COMMENT ON FUNCTION cdviz._prefer_lz4(regclass, name) IS
'cdviz internal: sets a column''s compression to lz4 when the server was built with it (used by the extension script)';
REVOKE EXECUTE ON FUNCTION cdviz._prefer_lz4(regclass, name) FROM PUBLIC;

CREATE TABLE cdviz.cdevents_lake (
	id				bigint NOT NULL DEFAULT nextval('cdviz.cdevents_lake_id_seq'),
	"timestamp"		timestamptz NOT NULL,
	imported_at		timestamptz NOT NULL DEFAULT now(),
	context_id		text NOT NULL,
	context_source	text NOT NULL,
	type			text NOT NULL,
	subject			text NOT NULL,
	predicate		text NOT NULL,
	type_version	text NOT NULL,
	spec_version	text,
	subject_id		text,
	chain_id		text,
	payload			jsonb NOT NULL,
	PRIMARY KEY (id, "timestamp"),
	UNIQUE (context_source, context_id, "timestamp")
) PARTITION BY RANGE ("timestamp");
-- lz4 compresses and decompresses payloads several times faster than
-- pglz, the default (the webhook bench spent 12% of its time in pglz);
-- partitions inherit it.  Only where the server was built with lz4.
SELECT cdviz._prefer_lz4('cdviz.cdevents_lake', 'payload');
ALTER SEQUENCE cdviz.cdevents_lake_id_seq OWNED BY cdviz.cdevents_lake.id;

CREATE INDEX cdevents_lake_subject_predicate_ts
	ON cdviz.cdevents_lake (subject, predicate, "timestamp");
CREATE INDEX cdevents_lake_subject_id
	ON cdviz.cdevents_lake (subject, subject_id);
CREATE INDEX cdevents_lake_chain_id
	ON cdviz.cdevents_lake (chain_id) WHERE chain_id IS NOT NULL;
CREATE INDEX cdevents_lake_context_id
	ON cdviz.cdevents_lake (context_id);

COMMENT ON TABLE cdviz.cdevents_lake IS
'cdviz: every accepted CDEvent, one row each, partitioned by month of "timestamp". Written only through cdviz.ingest*() and the workers.';
COMMENT ON COLUMN cdviz.cdevents_lake.id IS 'row id, increasing in storage order';
COMMENT ON COLUMN cdviz.cdevents_lake."timestamp" IS 'context.timestamp of the event';
COMMENT ON COLUMN cdviz.cdevents_lake.imported_at IS 'when cdviz stored the event (transaction time)';
COMMENT ON COLUMN cdviz.cdevents_lake.context_id IS 'context.id';
COMMENT ON COLUMN cdviz.cdevents_lake.context_source IS 'context.source';
COMMENT ON COLUMN cdviz.cdevents_lake.type IS 'context.type, e.g. dev.cdevents.service.deployed.0.3.0';
COMMENT ON COLUMN cdviz.cdevents_lake.subject IS 'subject part of the type (service, pipelinerun, ...; <tool>-<subject> for dev.cdeventsx custom events)';
COMMENT ON COLUMN cdviz.cdevents_lake.predicate IS 'predicate part of the type (deployed, started, ...)';
COMMENT ON COLUMN cdviz.cdevents_lake.type_version IS 'version part of the type, e.g. 0.3.0';
COMMENT ON COLUMN cdviz.cdevents_lake.spec_version IS 'context.specversion (0.5) or context.version (0.3, 0.4)';
COMMENT ON COLUMN cdviz.cdevents_lake.subject_id IS 'subject.id';
COMMENT ON COLUMN cdviz.cdevents_lake.chain_id IS 'context.chainId, when given';
COMMENT ON COLUMN cdviz.cdevents_lake.payload IS 'the whole event as received';

-- Monthly partitions are created on demand by the ingest path.
CREATE FUNCTION cdviz.ensure_partition(ts timestamptz)
RETURNS regclass
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	month_start timestamptz := date_trunc('month', ts AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
	part_name text := 'cdevents_lake_' || to_char(ts AT TIME ZONE 'UTC', 'YYYYMM');
	part regclass;
BEGIN
	part := to_regclass('cdviz.' || part_name);
	IF part IS NOT NULL THEN
		RETURN part;
	END IF;
	-- serialise creators of the same month; the loser finds it created
	PERFORM pg_advisory_xact_lock(hashtext('cdviz.cdevents_lake'), hashtext(part_name));
	part := to_regclass('cdviz.' || part_name);
	IF part IS NULL THEN
		EXECUTE format('CREATE TABLE cdviz.%I PARTITION OF cdviz.cdevents_lake FOR VALUES FROM (%L) TO (%L)',
					   part_name, month_start, month_start + interval '1 month');
		part := to_regclass('cdviz.' || part_name);
	END IF;
	RETURN part;
END
$$;
COMMENT ON FUNCTION cdviz.ensure_partition(timestamptz) IS
'cdviz: creates (if missing) and returns the monthly lake partition that holds ts (months are UTC). Called by the ingest path.';

CREATE FUNCTION cdviz.drop_partitions_before(cutoff timestamptz)
RETURNS SETOF text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r record;
BEGIN
	FOR r IN
		SELECT c.oid::regclass AS part, c.relname,
			   (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \(''([^'']+)''\)'))[1]::timestamptz AS upper_bound
		FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'cdviz.cdevents_lake'::regclass
		ORDER BY c.relname
	LOOP
		IF r.upper_bound <= cutoff THEN
			EXECUTE format('DROP TABLE %s', r.part);
			RETURN NEXT r.relname::text;
		END IF;
	END LOOP;
END
$$;
COMMENT ON FUNCTION cdviz.drop_partitions_before(timestamptz) IS
'cdviz: retention — drops every monthly lake partition whose whole month lies before cutoff and returns their names. Example: SELECT cdviz.drop_partitions_before(now() - interval ''13 months'');';

-- Dead letters: input that could not be stored as an event, kept verbatim
-- with where it came from and why, so it can be fixed and replayed.
CREATE TABLE cdviz.rejected_events (
	id				bigserial PRIMARY KEY,
	received_at		timestamptz NOT NULL DEFAULT now(),
	origin			text NOT NULL,
	origin_ref		text,
	raw				text NOT NULL,
	problems		jsonb NOT NULL,
	replayed_at		timestamptz,
	replayed_event_id bigint
);
CREATE INDEX rejected_events_received_at ON cdviz.rejected_events (received_at);
CREATE INDEX rejected_events_pending ON cdviz.rejected_events (id) WHERE replayed_at IS NULL;

COMMENT ON TABLE cdviz.rejected_events IS
'cdviz: dead letters — input that was not a valid event, with its origin and problems; see cdviz.replay_rejected()';
COMMENT ON COLUMN cdviz.rejected_events.origin IS 'sql, http, fs, s3, nats or webhook';
COMMENT ON COLUMN cdviz.rejected_events.origin_ref IS 'where exactly: HTTP peer and path, file:line, s3://bucket/key#n, batch element index';
COMMENT ON COLUMN cdviz.rejected_events.raw IS 'the input text as received';
COMMENT ON COLUMN cdviz.rejected_events.problems IS 'JSON array of {"path": ..., "message": ...}';
COMMENT ON COLUMN cdviz.rejected_events.replayed_at IS 'when a replay stored it as an event (NULL while pending)';
COMMENT ON COLUMN cdviz.rejected_events.replayed_event_id IS 'lake id of the event the replay stored';
-- Ingest functions (C, src/store/sql_api.c).  They run as the extension
-- owner (SECURITY DEFINER) so that cdviz_writer may store events without
-- any right on the tables themselves.

CREATE FUNCTION cdviz.ingest(event jsonb)
RETURNS bigint
LANGUAGE c STRICT VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'cdviz_ingest';
COMMENT ON FUNCTION cdviz.ingest(jsonb) IS
'cdviz: stores one CDEvent and returns its lake id; a retransmission (same context.source, context.id and context.timestamp) stores nothing and returns the id stored before. An invalid event raises SQLSTATE 22023 naming the first problem, with every problem in DETAIL. Example: SELECT cdviz.ingest(''{"context": {...}, "subject": {...}}'');';

CREATE FUNCTION cdviz.ingest_batch(events jsonb, origin_ref text DEFAULT NULL,
								   OUT stored bigint, OUT duplicates bigint, OUT rejected bigint)
RETURNS record
LANGUAGE c VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'cdviz_ingest_batch';
COMMENT ON FUNCTION cdviz.ingest_batch(jsonb, text) IS
'cdviz: stores a JSON array of CDEvents in one statement and returns how many were stored, were duplicates and were rejected. Each invalid element is kept in cdviz.rejected_events (origin sql, origin_ref "<origin_ref>[<index>]"); one bad event never costs the others. Example: SELECT * FROM cdviz.ingest_batch(''[{...}, {...}]'');';

-- A batch stored all or none, from SQL.  (Webhook deliveries, which used
-- to come through here, now hand their events to the store in C:
-- src/store/webhook_store.c.)
CREATE FUNCTION cdviz._ingest_all_or_nothing(events jsonb, origin_ref text,
											 OUT stored bigint, OUT duplicates bigint,
											 OUT event_ids bigint[], OUT problems jsonb)
RETURNS record
LANGUAGE c VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'cdviz_ingest_all_or_nothing';
COMMENT ON FUNCTION cdviz._ingest_all_or_nothing(jsonb, text) IS
'cdviz internal: stores every event of a JSON array, returning their lake ids in order (retransmissions give the id stored before), or, when any is invalid, stores none and returns the problems of each invalid one as [{index, path, message}] (index from 0) with event_ids NULL. Keeps no dead letter: the caller keeps the input.';

CREATE FUNCTION cdviz.validate(event jsonb)
RETURNS TABLE (path text, message text)
LANGUAGE c STRICT STABLE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'cdviz_validate';
COMMENT ON FUNCTION cdviz.validate(jsonb) IS
'cdviz: every problem that ingesting event would report under the cdviz.validation mode in force (JSON path and message); no rows when valid. Stores nothing. Example: SELECT * FROM cdviz.validate(''{"context": {}}'');';

CREATE FUNCTION cdviz._replay_rejected(id bigint, raise boolean)
RETURNS bigint
LANGUAGE c STRICT VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'cdviz_replay_rejected';
COMMENT ON FUNCTION cdviz._replay_rejected(bigint, boolean) IS
'cdviz internal: replays one dead letter; see cdviz.replay_rejected().';

CREATE FUNCTION cdviz.replay_rejected(id bigint)
RETURNS bigint
LANGUAGE sql STRICT VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT cdviz._replay_rejected(id, true) $$;
COMMENT ON FUNCTION cdviz.replay_rejected(bigint) IS
'cdviz: ingests dead letter id again (after the data or cdviz.validation was fixed) and returns the lake id; marks it replayed. Still invalid: raises SQLSTATE 22023 with the current problems, which are recorded on the dead letter. A webhook body the receiver refused (origin webhook) is not a CDEvent: raises 42809. Replaying twice is harmless. Example: SELECT cdviz.replay_rejected(42);';

CREATE FUNCTION cdviz.replay_rejected(origin text DEFAULT NULL, since timestamptz DEFAULT '-infinity',
									  OUT replayed bigint, OUT still_rejected bigint)
RETURNS record
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r record;
BEGIN
	replayed := 0;
	still_rejected := 0;
	FOR r IN
		SELECT e.id FROM cdviz.rejected_events e
		WHERE e.replayed_at IS NULL
		  -- a webhook's dead letter is the tool's payload, not a CDEvent
		  AND e.origin <> 'webhook'
		  AND (replay_rejected.origin IS NULL OR e.origin = replay_rejected.origin)
		  AND e.received_at >= since
		ORDER BY e.id
	LOOP
		IF cdviz._replay_rejected(r.id, false) IS NULL THEN
			still_rejected := still_rejected + 1;
		ELSE
			replayed := replayed + 1;
		END IF;
	END LOOP;
END
$$;
COMMENT ON FUNCTION cdviz.replay_rejected(text, timestamptz) IS
'cdviz: replays every pending dead letter (optionally only of one origin, received since a time) and returns how many were stored and how many are still invalid (their problems are updated). Webhook deliveries the receiver refused (origin webhook) are tools'' payloads, not CDEvents: they are kept for inspection and not replayed. Example: SELECT * FROM cdviz.replay_rejected(''http'');';

GRANT EXECUTE ON FUNCTION cdviz.ingest(jsonb), cdviz.ingest_batch(jsonb, text),
	cdviz.validate(jsonb), cdviz.replay_rejected(bigint),
	cdviz.replay_rejected(text, timestamptz) TO cdviz_writer;
GRANT EXECUTE ON FUNCTION cdviz.validate(jsonb) TO cdviz_reader;
-- nobody but the owner calls the internal helpers directly
REVOKE EXECUTE ON FUNCTION cdviz._replay_rejected(bigint, boolean),
	cdviz._ingest_all_or_nothing(jsonb, text),
	cdviz.ensure_partition(timestamptz), cdviz.drop_partitions_before(timestamptz) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION cdviz.ingest(jsonb), cdviz.ingest_batch(jsonb, text),
	cdviz.replay_rejected(bigint), cdviz.replay_rejected(text, timestamptz) FROM PUBLIC;

-- The receivers' JSON parser (the core's scanner), for tests: it must
-- make of every document it does not decline what doc::jsonb makes.
CREATE FUNCTION cdviz._jsonb_from_text(doc text) RETURNS jsonb
LANGUAGE c STRICT STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdviz_jsonb_from_text_sql';
COMMENT ON FUNCTION cdviz._jsonb_from_text(text) IS
'cdviz internal: the document as the HTTP receiver and the webhooks parse it (the same value as doc::jsonb, faster), NULL when that parser declines it and leaves it to jsonb_in; for tests';
-- Current state kept at ingest.
--
-- One statement-level AFTER INSERT trigger on the lake, cdviz.lake_maintain()
-- (created at the end of this file, with the summaries below), reads the rows
-- the statement really stored (the transition table holds neither duplicates
-- skipped by ON CONFLICT DO NOTHING nor rejected input) and maintains a few
-- narrow tables that the read API would otherwise have to rebuild from the
-- whole lake on every query:
--
--   environment_history   every deployed/upgraded/rolledback/removed/published
--                         event (what cdviz.deployments lists)
--   environment_state     what runs now, one row per (environment, service)
--   first_deployments     first time each artifact reached each environment,
--                         with the time of the change it was built from
--   artifact_changes      the change each artifact was built from
--   change_times          when each change was created and merged
--   event_links           the context.links of every event, by both ends
--
-- Every table is either append-only or merged with commutative rules
-- (earliest wins, or "recompute from history"), so the result does not depend
-- on the order in which events arrive: an older event never overwrites a
-- newer state.  Only service, artifact.packaged and change.created/merged
-- events (and events with links) cost anything: the trigger first lists the
-- subjects the statement stored and skips the parts that have nothing to do.
--
-- Retention (cdviz.drop_partitions_before) does not prune these tables: they
-- are small, and keeping them lets the inventory and the DORA figures keep
-- working for months whose raw events are gone.

CREATE TABLE cdviz.environment_history (
	event_id		bigint PRIMARY KEY,
	environment_id	text NOT NULL,
	service_id		text NOT NULL,
	predicate		text NOT NULL,
	artifact_id		text,
	valid_from		timestamptz NOT NULL,
	context_id		text NOT NULL
);
-- (valid_from, event_id) is the order "latest" is decided on: with event_id
-- in the key, events of one instant need no sort of the key's whole history
CREATE INDEX environment_history_key
	ON cdviz.environment_history (environment_id, service_id, valid_from, event_id);
CREATE INDEX environment_history_valid_from
	ON cdviz.environment_history (valid_from);
-- the time range of one environment (its DORA figures, its deployments),
-- covering what the deployment counts read: the history is insert-only, so
-- its pages are all-visible and the counts never touch the heap
CREATE INDEX environment_history_environment_valid_from
	ON cdviz.environment_history (environment_id, valid_from) INCLUDE (predicate, service_id);
-- rollbacks are rare failure signals of the change failure rate: found
-- without reading the deployments around them
CREATE INDEX environment_history_rollbacks
	ON cdviz.environment_history (valid_from) WHERE predicate = 'rolledback';

COMMENT ON TABLE cdviz.environment_history IS
'cdviz: one row per service deployed/upgraded/rolledback/removed/published event that names an environment, kept by the lake trigger; the narrow time line behind cdviz.deployments, cdviz.services, cdviz.environment_inventory_at() and the deployment DORA metrics';
COMMENT ON COLUMN cdviz.environment_history.event_id IS 'cdviz.cdevents_lake.id of the event';
COMMENT ON COLUMN cdviz.environment_history.environment_id IS 'subject.content.environment.id';
COMMENT ON COLUMN cdviz.environment_history.service_id IS 'subject.id of the service';
COMMENT ON COLUMN cdviz.environment_history.predicate IS 'deployed, upgraded, rolledback, removed or published (published does not change what runs)';
COMMENT ON COLUMN cdviz.environment_history.artifact_id IS 'subject.content.artifactId (NULL for removed and published)';
COMMENT ON COLUMN cdviz.environment_history.valid_from IS 'event timestamp: from then on this event describes the (environment, service)';
COMMENT ON COLUMN cdviz.environment_history.context_id IS 'context.id of the event';

CREATE TABLE cdviz.environment_state (
	environment_id	text NOT NULL,
	service_id		text NOT NULL,
	artifact_id		text,
	deployed_at		timestamptz,
	predicate		text NOT NULL,
	previous_artifact_id text,
	updated_at		timestamptz NOT NULL,
	event_id		bigint NOT NULL,
	context_id		text NOT NULL,
	PRIMARY KEY (environment_id, service_id)
);

COMMENT ON TABLE cdviz.environment_state IS
'cdviz: latest event of each (environment, service) by event timestamp, recomputed from cdviz.environment_history at ingest; rows whose latest event is "removed" stay (artifact_id NULL) so that an older deploy delivered late cannot bring the service back. Read it through cdviz.environment_inventory.';
COMMENT ON COLUMN cdviz.environment_state.artifact_id IS 'artifact running now; NULL when the latest event removed the service';
COMMENT ON COLUMN cdviz.environment_state.deployed_at IS 'timestamp of the event that put artifact_id there; NULL when removed';
COMMENT ON COLUMN cdviz.environment_state.predicate IS 'predicate of the latest event: deployed, upgraded, rolledback or removed';
COMMENT ON COLUMN cdviz.environment_state.previous_artifact_id IS 'artifact of the most recent earlier deployment whose artifact differs from the current one (what ran before)';
COMMENT ON COLUMN cdviz.environment_state.updated_at IS 'timestamp of the latest event (the removal time when removed)';
COMMENT ON COLUMN cdviz.environment_state.event_id IS 'cdviz.cdevents_lake.id of the latest event';
COMMENT ON COLUMN cdviz.environment_state.context_id IS 'context.id of the latest event';

CREATE TABLE cdviz.first_deployments (
	environment_id	text NOT NULL,
	artifact_id		text NOT NULL,
	service_id		text NOT NULL,
	deployed_at		timestamptz NOT NULL,
	event_id		bigint NOT NULL,
	change_id		text,
	changed_at		timestamptz,
	PRIMARY KEY (environment_id, artifact_id)
);
CREATE INDEX first_deployments_deployed_at
	ON cdviz.first_deployments (deployed_at);
CREATE INDEX first_deployments_environment_deployed_at
	ON cdviz.first_deployments (environment_id, deployed_at) INCLUDE (changed_at, service_id);
CREATE INDEX first_deployments_artifact_id
	ON cdviz.first_deployments (artifact_id);

COMMENT ON TABLE cdviz.first_deployments IS
'cdviz: earliest deployed/upgraded event of each artifact in each environment (earliest wins, whatever the arrival order), with the change the artifact was built from: one row per sample of lead time for changes';
COMMENT ON COLUMN cdviz.first_deployments.deployed_at IS 'timestamp of the earliest deployed/upgraded event of the artifact in the environment';
COMMENT ON COLUMN cdviz.first_deployments.event_id IS 'cdviz.cdevents_lake.id of that event';
COMMENT ON COLUMN cdviz.first_deployments.change_id IS 'the change of the artifact (cdviz.artifact_changes), NULL while unknown';
COMMENT ON COLUMN cdviz.first_deployments.changed_at IS 'when that change was merged, else created (cdviz.change_times); NULL while unknown. Kept up to date whichever of deployment, packaging and change events arrives last.';

CREATE TABLE cdviz.artifact_changes (
	artifact_id		text PRIMARY KEY,
	change_id		text NOT NULL,
	change_source	text,
	packaged_at		timestamptz NOT NULL,
	event_id		bigint NOT NULL
);
CREATE INDEX artifact_changes_change_id ON cdviz.artifact_changes (change_id);

COMMENT ON TABLE cdviz.artifact_changes IS
'cdviz: the change each artifact was built from, from artifact.packaged (subject.content.change); the earliest packaged event wins';
COMMENT ON COLUMN cdviz.artifact_changes.change_id IS 'subject.content.change.id of the packaged event';
COMMENT ON COLUMN cdviz.artifact_changes.change_source IS 'subject.content.change.source of the packaged event';
COMMENT ON COLUMN cdviz.artifact_changes.packaged_at IS 'timestamp of the earliest packaged event';
COMMENT ON COLUMN cdviz.artifact_changes.event_id IS 'cdviz.cdevents_lake.id of that event';

CREATE TABLE cdviz.change_times (
	change_id		text PRIMARY KEY,
	created_at		timestamptz,
	merged_at		timestamptz
);

COMMENT ON TABLE cdviz.change_times IS
'cdviz: earliest change.created and change.merged timestamps of each change id (the start point of lead time for changes). Changes are matched on id alone: ids should be unique across repositories.';
COMMENT ON COLUMN cdviz.change_times.created_at IS 'timestamp of the earliest change.created event';
COMMENT ON COLUMN cdviz.change_times.merged_at IS 'timestamp of the earliest change.merged event';

-- context.links (spec 0.4+) name other events by context id: RELATION links
-- by target, PATH and END links by from (the parent).  Looking links up by
-- the far end ("which events point at this one?") would otherwise need a
-- GIN index over every payload of the lake.
CREATE TABLE cdviz.event_links (
	event_id		bigint NOT NULL,
	context_id		text NOT NULL,
	linked_context_id text NOT NULL,
	link_type		text,
	link_kind		text,
	tags			jsonb
);
CREATE INDEX event_links_context_id ON cdviz.event_links (context_id);
CREATE INDEX event_links_linked_context_id ON cdviz.event_links (linked_context_id);

COMMENT ON TABLE cdviz.event_links IS
'cdviz: one row per element of context.links of a stored event, kept by the lake trigger; read through cdviz.related()';
COMMENT ON COLUMN cdviz.event_links.event_id IS 'cdviz.cdevents_lake.id of the event that carries the link';
COMMENT ON COLUMN cdviz.event_links.context_id IS 'context.id of the event that carries the link';
COMMENT ON COLUMN cdviz.event_links.linked_context_id IS 'the other end: target.contextId (RELATION), else from.contextId (PATH, END), else to.contextId';
COMMENT ON COLUMN cdviz.event_links.link_type IS 'linkType: RELATION, PATH, END';
COMMENT ON COLUMN cdviz.event_links.link_kind IS 'linkKind of a RELATION link, e.g. TRIGGER';
COMMENT ON COLUMN cdviz.event_links.tags IS 'tags of the link';

-- These tables hold data, not definitions: pg_dump must dump their rows
-- (the extension recreates the tables themselves).
SELECT pg_catalog.pg_extension_config_dump('cdviz.environment_history', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.environment_state', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.first_deployments', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.artifact_changes', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.change_times', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.event_links', '');

-- ---------------------------------------------------------------------------
-- Summaries kept at ingest for the read API.
--
-- The read API's per-subject functions (41_read_api_runs.sql,
-- 42_read_api_entities.sql) and the dashboards used to aggregate lake events
-- per subject id on every query: 0.25-0.8 M lake rows for a 30-day window at
-- 10 M events.  These tables hold the result of that aggregation instead,
-- one narrow row per run (or artifact, change, incident), and two rollups
-- for the dashboards:
--
--   pipeline_run_summaries, task_run_summaries, build_summaries, branch_summaries,
--   test_case_run_summaries, test_suite_run_summaries, artifact_summaries,
--   change_summaries, incident_summaries
--                         one row per subject id: lifecycle timestamps,
--                         outcome, names, and the latest event
--   event_counts_hourly   events per UTC hour, type, source and spec version
--   test_case_outcomes_daily
--                         test case runs per UTC day, test case and outcome
--
-- Every column is merged with a commutative, associative rule: min or max
-- (LEAST/GREATEST, which skip NULLs as min()/max() do), a sum, or "the value
-- of the latest event" decided on (timestamp, lake id).  So a batch folds
-- into a row the same way whatever came before it, and any arrival order,
-- any split into batches, gives the same row as one aggregation over the
-- whole lake (which is what cdviz.rebuild_summaries() does).  Text columns
-- that the views took with max() keep max(); the raw outcome is kept and
-- normalised when read, exactly as the views did.
--
-- Cost at ingest: one INSERT ... ON CONFLICT DO UPDATE per table and batch,
-- grouped per key (a run's queued/started/finished in one batch are one row
-- write), no loop.  The summary tables are indexed on their key and on
-- first_event_at, which a later event of the same run almost never changes,
-- so most updates are HOT (fillfactor leaves room for them).
--
-- One template, two functions: the statements below are written once over
-- a relation named %1$s, and become both part of the trigger function (over
-- the transition table, plans cached, each statement run only when the
-- insert stored events of its subject) and cdviz.summaries_fold(from, to)
-- (over a range of the lake, used by cdviz.rebuild_summaries()).
--
-- Why one trigger and not one per concern: the http worker commits small
-- groups, where each trigger's call (SECURITY DEFINER, search_path) and each
-- statement's executor start-up cost more than the rows they fold.  Listing
-- the stored subjects first and skipping the rest took a one-event
-- cdviz.ingest() transaction from 1.03 to 0.61 ms.

CREATE TABLE cdviz.pipeline_run_summaries (
	pipeline_run_id	text PRIMARY KEY,
	source			text,
	pipeline_name	text,
	queued_at		timestamptz,
	started_at		timestamptz,
	finished_at		timestamptz,
	outcome			text,
	errors			text,
	uri				text,
	chain_id		text,
	first_event_at	timestamptz NOT NULL,
	last_event_at	timestamptz NOT NULL,
	last_event_id	bigint NOT NULL,
	last_predicate	text NOT NULL,
	event_count		bigint NOT NULL
) WITH (fillfactor = 80);
CREATE INDEX pipeline_run_summaries_first_event_at ON cdviz.pipeline_run_summaries (first_event_at);

CREATE TABLE cdviz.task_run_summaries (
	task_run_id		text PRIMARY KEY,
	source			text,
	task_name		text,
	pipeline_run_id	text,
	started_at		timestamptz,
	finished_at		timestamptz,
	outcome			text,
	errors			text,
	uri				text,
	chain_id		text,
	first_event_at	timestamptz NOT NULL,
	last_event_at	timestamptz NOT NULL,
	last_event_id	bigint NOT NULL,
	last_predicate	text NOT NULL,
	event_count		bigint NOT NULL
) WITH (fillfactor = 80);
-- The window index covers what the task dashboards read (task, outcome,
-- durations, pipeline run): 30 days at 10M events are 71,000 task runs,
-- read by an index-only scan from 900 index pages instead of 23,000 heap
-- pages (rows inserted in one statement lie in any order of their window).
-- last_event_at is a key column, not an included one, so that the window's
-- "last_event_at >= from" test is an index condition: its bound is computed
-- once per scan, whereas as a filter an expression bound (now() - interval
-- '30 days') was computed again for every row, a tenth of the query's time.
-- (It is indexed either way, so updates of it were never HOT here.)
CREATE INDEX task_run_summaries_first_event_at
	ON cdviz.task_run_summaries (first_event_at, last_event_at)
	INCLUDE (task_name, outcome, started_at, finished_at, pipeline_run_id);

CREATE TABLE cdviz.build_summaries (
	build_id		text PRIMARY KEY,
	source			text,
	queued_at		timestamptz,
	started_at		timestamptz,
	finished_at		timestamptz,
	artifact_id		text,
	chain_id		text,
	first_event_at	timestamptz NOT NULL,
	last_event_at	timestamptz NOT NULL,
	last_event_id	bigint NOT NULL,
	last_predicate	text NOT NULL,
	event_count		bigint NOT NULL
) WITH (fillfactor = 80);
CREATE INDEX build_summaries_first_event_at ON cdviz.build_summaries (first_event_at);

CREATE TABLE cdviz.branch_summaries (
	branch_id		text PRIMARY KEY,
	source			text,
	repository_id	text,
	repository_source text,
	created_at		timestamptz,
	deleted_at		timestamptz,
	chain_id		text,
	first_event_at	timestamptz NOT NULL,
	last_event_at	timestamptz NOT NULL,
	last_event_id	bigint NOT NULL,
	last_predicate	text NOT NULL,
	event_count		bigint NOT NULL
) WITH (fillfactor = 80);
CREATE INDEX branch_summaries_first_event_at ON cdviz.branch_summaries (first_event_at);

CREATE TABLE cdviz.test_case_run_summaries (
	test_case_run_id text PRIMARY KEY,
	source			text,
	test_case_id	text,
	test_case_name	text,
	test_case_version text,
	test_case_type	text,
	test_case_uri	text,
	test_suite_run_id text,
	environment_id	text,
	trigger_type	text,
	trigger_uri		text,
	queued_at		timestamptz,
	started_at		timestamptz,
	finished_at		timestamptz,
	skipped_at		timestamptz,
	outcome			text,
	severity		text,
	reason			text,
	chain_id		text,
	first_event_at	timestamptz NOT NULL,
	last_event_at	timestamptz NOT NULL,
	last_event_id	bigint NOT NULL,
	last_predicate	text NOT NULL,
	event_count		bigint NOT NULL
) WITH (fillfactor = 80);
-- covers the counts per test case and outcome (118,000 runs in 30 days at
-- 10M events), as for task runs (last_event_at a key column likewise)
CREATE INDEX test_case_run_summaries_first_event_at
	ON cdviz.test_case_run_summaries (first_event_at, last_event_at)
	INCLUDE (test_case_name, test_case_id, outcome, skipped_at, finished_at);
-- flaky tests: the other runs of a chain (one delivery cycle, one artifact)
CREATE INDEX test_case_run_summaries_chain_id ON cdviz.test_case_run_summaries (chain_id);
-- failed runs are few: finding them in a window reads only them
CREATE INDEX test_case_run_summaries_failed ON cdviz.test_case_run_summaries (finished_at)
	WHERE outcome IN ('failure', 'fail');

CREATE TABLE cdviz.test_suite_run_summaries (
	test_suite_run_id text PRIMARY KEY,
	source			text,
	test_suite_id	text,
	test_suite_name	text,
	test_suite_version text,
	test_suite_uri	text,
	environment_id	text,
	trigger_type	text,
	trigger_uri		text,
	queued_at		timestamptz,
	started_at		timestamptz,
	finished_at		timestamptz,
	outcome			text,
	severity		text,
	reason			text,
	chain_id		text,
	first_event_at	timestamptz NOT NULL,
	last_event_at	timestamptz NOT NULL,
	last_event_id	bigint NOT NULL,
	last_predicate	text NOT NULL,
	event_count		bigint NOT NULL
) WITH (fillfactor = 80);
CREATE INDEX test_suite_run_summaries_first_event_at ON cdviz.test_suite_run_summaries (first_event_at);

CREATE TABLE cdviz.artifact_summaries (
	artifact_id		text PRIMARY KEY,
	source			text,
	packaged_at		timestamptz,
	signed_at		timestamptz,
	published_at	timestamptz,
	first_downloaded_at timestamptz,
	last_downloaded_at timestamptz,
	download_count	bigint NOT NULL,
	deleted_at		timestamptz,
	change_id		text,
	change_source	text,
	sbom_uri		text,
	signature		text,
	last_user		text,
	last_user_at	timestamptz,
	last_user_event_id bigint,
	chain_id		text,
	first_event_at	timestamptz NOT NULL,
	last_event_at	timestamptz NOT NULL,
	last_event_id	bigint NOT NULL,
	last_predicate	text NOT NULL,
	event_count		bigint NOT NULL
) WITH (fillfactor = 80);
CREATE INDEX artifact_summaries_first_event_at ON cdviz.artifact_summaries (first_event_at);

CREATE TABLE cdviz.change_summaries (
	change_id		text PRIMARY KEY,
	source			text,
	repository_id	text,
	repository_source text,
	description		text,
	description_at	timestamptz,
	description_event_id bigint,
	created_at		timestamptz,
	first_reviewed_at timestamptz,
	review_count	bigint NOT NULL,
	last_updated_at	timestamptz,
	merged_at		timestamptz,
	abandoned_at	timestamptz,
	chain_id		text,
	first_event_at	timestamptz NOT NULL,
	last_event_at	timestamptz NOT NULL,
	last_event_id	bigint NOT NULL,
	last_predicate	text NOT NULL,
	event_count		bigint NOT NULL
) WITH (fillfactor = 80);
CREATE INDEX change_summaries_first_event_at ON cdviz.change_summaries (first_event_at);

CREATE TABLE cdviz.incident_summaries (
	incident_id		text PRIMARY KEY,
	source			text,
	environment_id	text,
	service_id		text,
	artifact_id		text,
	description		text,
	description_at	timestamptz,
	description_event_id bigint,
	ticket_uri		text,
	detected_at		timestamptz,
	reported_at		timestamptz,
	resolved_at		timestamptz,
	chain_id		text,
	first_event_at	timestamptz NOT NULL,
	last_event_at	timestamptz NOT NULL,
	last_event_id	bigint NOT NULL,
	last_predicate	text NOT NULL,
	event_count		bigint NOT NULL
);
CREATE INDEX incident_summaries_first_event_at ON cdviz.incident_summaries (first_event_at);
CREATE INDEX incident_summaries_last_event_at ON cdviz.incident_summaries (last_event_at);
CREATE INDEX incident_summaries_resolved_at ON cdviz.incident_summaries (resolved_at);

CREATE TABLE cdviz.event_counts_hourly (
	hour			timestamptz NOT NULL,
	type			text NOT NULL,
	context_source	text NOT NULL,
	spec_version	text,
	subject			text NOT NULL,
	predicate		text NOT NULL,
	events			bigint NOT NULL,
	first_at		timestamptz NOT NULL,
	last_at			timestamptz NOT NULL,
	CONSTRAINT event_counts_hourly_key UNIQUE NULLS NOT DISTINCT (hour, type, context_source, spec_version)
);

CREATE TABLE cdviz.test_case_outcomes_daily (
	day				timestamptz NOT NULL,
	test_case		text,
	outcome			text,
	runs			bigint NOT NULL,
	last_at			timestamptz NOT NULL,
	reason			text,
	CONSTRAINT test_case_outcomes_daily_key UNIQUE NULLS NOT DISTINCT (day, test_case, outcome)
);

COMMENT ON TABLE cdviz.pipeline_run_summaries IS
'cdviz: one row per pipeline run (subject.id), kept by the lake trigger, out-of-order safe: what cdviz.pipeline_runs_between() returns. Timestamps are min (queued, started) or max (finished) of the run''s events; outcome is the raw (not normalised) max outcome of its finished events; last_* describe the latest event by (timestamp, lake id). Rebuilt from the lake by cdviz.rebuild_summaries().';
COMMENT ON TABLE cdviz.task_run_summaries IS
'cdviz: one row per task run, kept by the lake trigger (rules: see cdviz.pipeline_run_summaries); what cdviz.task_runs_between() returns';
COMMENT ON TABLE cdviz.branch_summaries IS
'cdviz: one row per branch, kept by the lake trigger (rules: see cdviz.pipeline_run_summaries): repository, earliest created and latest deleted times; what cdviz.branches_between() returns';
COMMENT ON TABLE cdviz.build_summaries IS
'cdviz: one row per build, kept by the lake trigger (rules: see cdviz.pipeline_run_summaries); what cdviz.builds_between() returns';
COMMENT ON TABLE cdviz.test_case_run_summaries IS
'cdviz: one row per test case run, kept by the lake trigger (rules: see cdviz.pipeline_run_summaries; skipped_at is the latest skipped event); what cdviz.test_case_runs_between() returns';
COMMENT ON TABLE cdviz.test_suite_run_summaries IS
'cdviz: one row per test suite run, kept by the lake trigger (rules: see cdviz.pipeline_run_summaries); what cdviz.test_suite_runs_between() returns';
COMMENT ON TABLE cdviz.artifact_summaries IS
'cdviz: one row per artifact, kept by the lake trigger: packaged/signed/published/downloaded/deleted times, download count, the change of its packaged event, latest user (last_user_at and last_user_event_id decide which event is the latest); what cdviz.artifacts_between() returns';
COMMENT ON TABLE cdviz.change_summaries IS
'cdviz: one row per change, kept by the lake trigger: repository, latest description (decided on description_at, description_event_id), created/first reviewed/last updated/merged/abandoned times, review count; what cdviz.changes_between() returns';
COMMENT ON TABLE cdviz.incident_summaries IS
'cdviz: one row per incident, kept by the lake trigger: environment, service, artifact, latest description, detected/reported (earliest) and resolved (latest) times; what cdviz.incidents_between() and the incident DORA metrics read';
COMMENT ON TABLE cdviz.event_counts_hourly IS
'cdviz: number of stored events per UTC hour, type, context source and spec version (with the subject and predicate of the type, and the first and last event timestamps), kept by the lake trigger: the Activity dashboard reads it instead of the lake';
COMMENT ON TABLE cdviz.test_case_outcomes_daily IS
'cdviz: test case run outcomes per UTC day (of the finished or skipped event), test case (name, else id) and outcome (normalised: success, failure, error, cancel; skipped for skipped events), with the number of runs, the latest such event and a reason (max): the Tests dashboard reads it instead of aggregating runs';
COMMENT ON COLUMN cdviz.event_counts_hourly.hour IS 'start of the UTC hour of the events'' timestamps';
COMMENT ON COLUMN cdviz.event_counts_hourly.events IS 'number of events stored (duplicates are not stored, so not counted)';
COMMENT ON COLUMN cdviz.test_case_outcomes_daily.day IS 'start of the UTC day of the finished/skipped events';
COMMENT ON COLUMN cdviz.test_case_outcomes_daily.runs IS 'number of finished (or skipped) events with that outcome';

-- Summaries folded later: with cdviz.summaries = deferred the lake trigger
-- keeps the current state at once and queues the statement's events here;
-- the cdviz summaries worker folds them in transactions of its own, so an
-- ingest transaction does not pay for the summaries.
CREATE TABLE cdviz.summary_queue (
	id				bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	queued_at		timestamptz NOT NULL DEFAULT now(),
	events			bigint NOT NULL,
	ids				bigint[] NOT NULL,
	stamps			timestamptz[] NOT NULL
);
-- 160 kB of arrays for 10,000 events: compressing them costs the ingest
-- transaction more than writing them, and the row lives a moment
ALTER TABLE cdviz.summary_queue ALTER COLUMN ids SET STORAGE EXTERNAL,
	ALTER COLUMN stamps SET STORAGE EXTERNAL;

COMMENT ON TABLE cdviz.summary_queue IS
'cdviz: lake events stored but not yet folded into the summary tables (cdviz.summaries = deferred), one row per insert statement; emptied by cdviz.fold_queued_summaries(), which the cdviz summaries worker calls';
COMMENT ON COLUMN cdviz.summary_queue.events IS 'number of events of the statement';
COMMENT ON COLUMN cdviz.summary_queue.ids IS 'their lake ids';
COMMENT ON COLUMN cdviz.summary_queue.stamps IS 'their lake timestamps (the partition key, for the lookups)';

CREATE FUNCTION cdviz._summaries_deferred()
RETURNS boolean
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'cdviz_summaries_deferred';

COMMENT ON FUNCTION cdviz._summaries_deferred() IS
'cdviz: internal, for the lake trigger: whether this session queues the summaries (cdviz.summaries = deferred, the library preloaded so that the cdviz summaries worker runs, and this database is cdviz.database, the one it folds)';

CREATE FUNCTION cdviz.summaries_pending()
RETURNS bigint
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT coalesce(sum(q.events), 0)::bigint FROM cdviz.summary_queue AS q $$;

COMMENT ON FUNCTION cdviz.summaries_pending() IS
'cdviz: number of stored events not yet folded into the summary tables (the *_between functions, event counts and test outcomes); 0 when they are up to date. Example: SELECT cdviz.summaries_pending();';

DO $do$
DECLARE
	-- the latest event of a group, and the merge of a group into a row
	last_cols text := $t$
	min(e."timestamp"), max(e."timestamp"),
	(array_agg(e.id ORDER BY e."timestamp" DESC, e.id DESC))[1],
	(array_agg(e.predicate ORDER BY e."timestamp" DESC, e.id DESC))[1],
	count(*)$t$;
	last_set text := $t$
	first_event_at = LEAST(s.first_event_at, excluded.first_event_at),
	last_event_at = GREATEST(s.last_event_at, excluded.last_event_at),
	last_event_id = CASE WHEN (excluded.last_event_at, excluded.last_event_id) > (s.last_event_at, s.last_event_id)
						 THEN excluded.last_event_id ELSE s.last_event_id END,
	last_predicate = CASE WHEN (excluded.last_event_at, excluded.last_event_id) > (s.last_event_at, s.last_event_id)
						  THEN excluded.last_predicate ELSE s.last_predicate END,
	event_count = s.event_count + excluded.event_count$t$;
	-- "the latest event that carries the field": value, its timestamp, its id
	latest text := $t$(array_agg(%1$s ORDER BY e."timestamp" DESC, e.id DESC) FILTER (WHERE %1$s IS NOT NULL))[1],
	max(e."timestamp") FILTER (WHERE %1$s IS NOT NULL),
	(array_agg(e.id ORDER BY e."timestamp" DESC, e.id DESC) FILTER (WHERE %1$s IS NOT NULL))[1]$t$;
	latest_set text := $t$
	%1$s = CASE WHEN (excluded.%2$s, excluded.%3$s) > (s.%2$s, s.%3$s) OR s.%2$s IS NULL
				THEN coalesce(excluded.%1$s, s.%1$s) ELSE s.%1$s END,
	%2$s = GREATEST(s.%2$s, excluded.%2$s),
	%3$s = CASE WHEN (excluded.%2$s, excluded.%3$s) > (s.%2$s, s.%3$s) OR s.%2$s IS NULL
				THEN coalesce(excluded.%3$s, s.%3$s) ELSE s.%3$s END$t$;
	fold text;
	-- the current-state statements, over the trigger's transition table
	state text := $state$
	IF subjects @> '{service}' THEN
		-- Writers of one (environment, service) take turns.  Its state is
		-- recomputed below from the history this transaction sees; without
		-- the turns, two transactions storing events of one key at once each
		-- missed the other's uncommitted event, and the one committing last
		-- wrote its view: an older event could overwrite a newer state (TAP
		-- 001_extension.pl).  With a transaction lock per key taken first,
		-- the statements after this one (new snapshots: READ COMMITTED)
		-- see what an earlier holder committed; under REPEATABLE READ the
		-- upsert fails with a serialization error instead, to be retried.
		-- Keys hash into 1,024 locks (the "cdvs" class), so that a batch of
		-- thousands of services does not fill the lock table, taken in one
		-- order: one statement never deadlocks with another.  (Transactions
		-- of several insert statements can, as they could on the state rows.)
		PERFORM pg_catalog.pg_advisory_xact_lock(1667528307, k.h)
		FROM (SELECT DISTINCT pg_catalog.hashtext((e.payload #>> '{subject,content,environment,id}')
												   || E'\n' || e.subject_id) & 1023 AS h
			  FROM new_events e
			  WHERE e.subject = 'service'
				AND e.predicate IN ('deployed', 'upgraded', 'rolledback', 'removed')
				AND e.subject_id IS NOT NULL
				AND e.payload #>> '{subject,content,environment,id}' IS NOT NULL
			  ORDER BY 1) AS k;

		-- service events: history, then recompute the state of the touched keys
		INSERT INTO cdviz.environment_history
			(event_id, environment_id, service_id, predicate, artifact_id, valid_from, context_id)
		SELECT e.id, e.payload #>> '{subject,content,environment,id}', e.subject_id, e.predicate,
			   CASE WHEN e.predicate IN ('deployed', 'upgraded', 'rolledback')
					THEN e.payload #>> '{subject,content,artifactId}' END,
			   e."timestamp", e.context_id
		FROM new_events e
		WHERE e.subject = 'service'
		  AND e.predicate IN ('deployed', 'upgraded', 'rolledback', 'removed', 'published')
		  AND e.subject_id IS NOT NULL
		  AND e.payload #>> '{subject,content,environment,id}' IS NOT NULL;
		GET DIAGNOSTICS n = ROW_COUNT;

		IF n > 0 THEN
			-- The state of a key is a pure function of its history, so recomputing
			-- it is right whatever order the events came in.
			INSERT INTO cdviz.environment_state AS s
				(environment_id, service_id, artifact_id, deployed_at, predicate,
				 previous_artifact_id, updated_at, event_id, context_id)
			SELECT k.environment_id, k.service_id, cur.artifact_id,
				   CASE WHEN cur.predicate <> 'removed' THEN cur.valid_from END,
				   cur.predicate, prev.artifact_id, cur.valid_from, cur.event_id, cur.context_id
			FROM (SELECT DISTINCT e.payload #>> '{subject,content,environment,id}' AS environment_id,
						 e.subject_id AS service_id
				  FROM new_events e
				  WHERE e.subject = 'service'
					AND e.predicate IN ('deployed', 'upgraded', 'rolledback', 'removed')
					AND e.subject_id IS NOT NULL
					AND e.payload #>> '{subject,content,environment,id}' IS NOT NULL) k
			CROSS JOIN LATERAL (
				SELECT h.* FROM cdviz.environment_history h
				WHERE h.environment_id = k.environment_id AND h.service_id = k.service_id
				  AND h.predicate <> 'published'
				ORDER BY h.valid_from DESC, h.event_id DESC
				LIMIT 1) cur
			LEFT JOIN LATERAL (
				SELECT h.artifact_id FROM cdviz.environment_history h
				WHERE h.environment_id = k.environment_id AND h.service_id = k.service_id
				  AND h.predicate IN ('deployed', 'upgraded', 'rolledback')
				  AND (h.valid_from, h.event_id) < (cur.valid_from, cur.event_id)
				  AND h.artifact_id IS DISTINCT FROM cur.artifact_id
				ORDER BY h.valid_from DESC, h.event_id DESC
				LIMIT 1) prev ON true
			ON CONFLICT (environment_id, service_id) DO UPDATE
			SET artifact_id = excluded.artifact_id,
				deployed_at = excluded.deployed_at,
				predicate = excluded.predicate,
				previous_artifact_id = excluded.previous_artifact_id,
				updated_at = excluded.updated_at,
				event_id = excluded.event_id,
				context_id = excluded.context_id;

		END IF;
	END IF;

$state$;
	-- what is derived from the lake and may be folded later, with the
	-- summaries: lineage, artifact changes, change times, first deployments
	derived text := $derived$
	IF subjects @> '{artifact}' THEN
		INSERT INTO cdviz.artifact_changes AS a
			(artifact_id, change_id, change_source, packaged_at, event_id)
		SELECT DISTINCT ON (e.subject_id)
			   e.subject_id, e.payload #>> '{subject,content,change,id}',
			   e.payload #>> '{subject,content,change,source}', e."timestamp", e.id
		FROM new_events e
		WHERE e.subject = 'artifact' AND e.predicate = 'packaged'
		  AND e.subject_id IS NOT NULL
		  AND e.payload #>> '{subject,content,change,id}' IS NOT NULL
		ORDER BY e.subject_id, e."timestamp", e.id
		ON CONFLICT (artifact_id) DO UPDATE
		SET change_id = excluded.change_id,
			change_source = excluded.change_source,
			packaged_at = excluded.packaged_at,
			event_id = excluded.event_id
		WHERE (excluded.packaged_at, excluded.event_id) < (a.packaged_at, a.event_id);
	END IF;

	IF subjects @> '{change}' THEN
		INSERT INTO cdviz.change_times AS c (change_id, created_at, merged_at)
		SELECT e.subject_id,
			   min(e."timestamp") FILTER (WHERE e.predicate = 'created'),
			   min(e."timestamp") FILTER (WHERE e.predicate = 'merged')
		FROM new_events e
		WHERE e.subject = 'change' AND e.predicate IN ('created', 'merged')
		  AND e.subject_id IS NOT NULL
		GROUP BY e.subject_id
		ON CONFLICT (change_id) DO UPDATE
		SET created_at = LEAST(c.created_at, excluded.created_at),
			merged_at = LEAST(c.merged_at, excluded.merged_at)
		WHERE excluded.created_at < c.created_at OR excluded.merged_at < c.merged_at
		   OR (c.created_at IS NULL AND excluded.created_at IS NOT NULL)
		   OR (c.merged_at IS NULL AND excluded.merged_at IS NOT NULL);
	END IF;

	-- New first deployments take the change time known so far; the
	-- statement below catches up when packaging or change events come later.
	IF subjects @> '{service}' THEN
		INSERT INTO cdviz.first_deployments AS f
			(environment_id, artifact_id, service_id, deployed_at, event_id, change_id, changed_at)
		SELECT d.environment_id, d.artifact_id, d.service_id, d.deployed_at, d.event_id,
			   a.change_id, coalesce(c.merged_at, c.created_at)
		FROM (SELECT DISTINCT ON (d.environment_id, d.artifact_id) d.*
			  FROM (SELECT e.payload #>> '{subject,content,environment,id}' AS environment_id,
						   e.payload #>> '{subject,content,artifactId}' AS artifact_id,
						   e.subject_id AS service_id, e."timestamp" AS deployed_at, e.id AS event_id
					FROM new_events e
					WHERE e.subject = 'service' AND e.predicate IN ('deployed', 'upgraded')
					  AND e.subject_id IS NOT NULL) d
			  WHERE d.environment_id IS NOT NULL AND d.artifact_id IS NOT NULL
			  ORDER BY d.environment_id, d.artifact_id, d.deployed_at, d.event_id) d
		LEFT JOIN cdviz.artifact_changes a ON a.artifact_id = d.artifact_id
		LEFT JOIN cdviz.change_times c ON c.change_id = a.change_id
		ON CONFLICT (environment_id, artifact_id) DO UPDATE
		SET service_id = excluded.service_id,
			deployed_at = excluded.deployed_at,
			event_id = excluded.event_id
		WHERE (excluded.deployed_at, excluded.event_id) < (f.deployed_at, f.event_id);
	END IF;

	IF subjects && '{artifact,change}' THEN
		-- Packaging or change events of this statement: refresh the change of
		-- the first deployments of the artifacts they concern.
		UPDATE cdviz.first_deployments f
		SET change_id = a.change_id, changed_at = coalesce(c.merged_at, c.created_at)
		FROM cdviz.artifact_changes a
		LEFT JOIN cdviz.change_times c ON c.change_id = a.change_id
		WHERE f.artifact_id = a.artifact_id
		  AND a.artifact_id IN (SELECT e.subject_id FROM new_events e
								WHERE e.subject = 'artifact' AND e.predicate = 'packaged'
								UNION
								SELECT a2.artifact_id FROM cdviz.artifact_changes a2
								WHERE a2.change_id IN (SELECT e.subject_id FROM new_events e
													   WHERE e.subject = 'change'
														 AND e.predicate IN ('created', 'merged')))
		  AND (f.change_id, f.changed_at) IS DISTINCT FROM (a.change_id, coalesce(c.merged_at, c.created_at));
	END IF;

	IF has_links THEN
		INSERT INTO cdviz.event_links (event_id, context_id, linked_context_id, link_type, link_kind, tags)
		SELECT e.id, e.context_id,
			   coalesce(k.link #>> '{target,contextId}', k.link #>> '{from,contextId}', k.link #>> '{to,contextId}'),
			   k.link ->> 'linkType', k.link ->> 'linkKind', k.link -> 'tags'
		FROM new_events e
		CROSS JOIN LATERAL jsonb_array_elements(e.payload #> '{context,links}') AS k(link)
		WHERE jsonb_typeof(e.payload #> '{context,links}') = 'array'
		  AND jsonb_typeof(k.link) = 'object'
		  AND coalesce(k.link #>> '{target,contextId}', k.link #>> '{from,contextId}', k.link #>> '{to,contextId}') IS NOT NULL;
	END IF;
$derived$;
	gated text := '';
	gated_for text[] := '{}';
	rel text;
	stmt text;
	subj text;
BEGIN
	fold := format($tpl$
	INSERT INTO cdviz.pipeline_run_summaries AS s
		(pipeline_run_id, source, pipeline_name, queued_at, started_at, finished_at, outcome, errors,
		 uri, chain_id, first_event_at, last_event_at, last_event_id, last_predicate, event_count)
	SELECT e.subject_id,
		   max(e.payload #>> '{subject,source}'),
		   max(e.payload #>> '{subject,content,pipelineName}'),
		   min(e."timestamp") FILTER (WHERE e.predicate = 'queued'),
		   min(e."timestamp") FILTER (WHERE e.predicate = 'started'),
		   max(e."timestamp") FILTER (WHERE e.predicate = 'finished'),
		   max(e.payload #>> '{subject,content,outcome}') FILTER (WHERE e.predicate = 'finished'),
		   max(e.payload #>> '{subject,content,errors}') FILTER (WHERE e.predicate = 'finished'),
		   max(coalesce(e.payload #>> '{subject,content,uri}', e.payload #>> '{subject,content,url}')),
		   max(e.chain_id), %1$s
	FROM %%1$s AS e
	WHERE e.subject = 'pipelinerun' AND e.predicate IN ('queued', 'started', 'finished')
	  AND e.subject_id IS NOT NULL
	GROUP BY e.subject_id
	ON CONFLICT (pipeline_run_id) DO UPDATE SET
		source = GREATEST(s.source, excluded.source),
		pipeline_name = GREATEST(s.pipeline_name, excluded.pipeline_name),
		queued_at = LEAST(s.queued_at, excluded.queued_at),
		started_at = LEAST(s.started_at, excluded.started_at),
		finished_at = GREATEST(s.finished_at, excluded.finished_at),
		outcome = GREATEST(s.outcome, excluded.outcome),
		errors = GREATEST(s.errors, excluded.errors),
		uri = GREATEST(s.uri, excluded.uri),
		chain_id = GREATEST(s.chain_id, excluded.chain_id), %2$s;

	INSERT INTO cdviz.task_run_summaries AS s
		(task_run_id, source, task_name, pipeline_run_id, started_at, finished_at, outcome, errors,
		 uri, chain_id, first_event_at, last_event_at, last_event_id, last_predicate, event_count)
	SELECT e.subject_id,
		   max(e.payload #>> '{subject,source}'),
		   max(e.payload #>> '{subject,content,taskName}'),
		   max(e.payload #>> '{subject,content,pipelineRun,id}'),
		   min(e."timestamp") FILTER (WHERE e.predicate = 'started'),
		   max(e."timestamp") FILTER (WHERE e.predicate = 'finished'),
		   max(e.payload #>> '{subject,content,outcome}') FILTER (WHERE e.predicate = 'finished'),
		   max(e.payload #>> '{subject,content,errors}') FILTER (WHERE e.predicate = 'finished'),
		   max(coalesce(e.payload #>> '{subject,content,uri}', e.payload #>> '{subject,content,url}')),
		   max(e.chain_id), %1$s
	FROM %%1$s AS e
	WHERE e.subject = 'taskrun' AND e.predicate IN ('started', 'finished')
	  AND e.subject_id IS NOT NULL
	GROUP BY e.subject_id
	ON CONFLICT (task_run_id) DO UPDATE SET
		source = GREATEST(s.source, excluded.source),
		task_name = GREATEST(s.task_name, excluded.task_name),
		pipeline_run_id = GREATEST(s.pipeline_run_id, excluded.pipeline_run_id),
		started_at = LEAST(s.started_at, excluded.started_at),
		finished_at = GREATEST(s.finished_at, excluded.finished_at),
		outcome = GREATEST(s.outcome, excluded.outcome),
		errors = GREATEST(s.errors, excluded.errors),
		uri = GREATEST(s.uri, excluded.uri),
		chain_id = GREATEST(s.chain_id, excluded.chain_id), %2$s;

	INSERT INTO cdviz.build_summaries AS s
		(build_id, source, queued_at, started_at, finished_at, artifact_id, chain_id,
		 first_event_at, last_event_at, last_event_id, last_predicate, event_count)
	SELECT e.subject_id,
		   max(e.payload #>> '{subject,source}'),
		   min(e."timestamp") FILTER (WHERE e.predicate = 'queued'),
		   min(e."timestamp") FILTER (WHERE e.predicate = 'started'),
		   max(e."timestamp") FILTER (WHERE e.predicate = 'finished'),
		   max(e.payload #>> '{subject,content,artifactId}') FILTER (WHERE e.predicate = 'finished'),
		   max(e.chain_id), %1$s
	FROM %%1$s AS e
	WHERE e.subject = 'build' AND e.predicate IN ('queued', 'started', 'finished')
	  AND e.subject_id IS NOT NULL
	GROUP BY e.subject_id
	ON CONFLICT (build_id) DO UPDATE SET
		source = GREATEST(s.source, excluded.source),
		queued_at = LEAST(s.queued_at, excluded.queued_at),
		started_at = LEAST(s.started_at, excluded.started_at),
		finished_at = GREATEST(s.finished_at, excluded.finished_at),
		artifact_id = GREATEST(s.artifact_id, excluded.artifact_id),
		chain_id = GREATEST(s.chain_id, excluded.chain_id), %2$s;

	INSERT INTO cdviz.branch_summaries AS s
		(branch_id, source, repository_id, repository_source, created_at, deleted_at, chain_id,
		 first_event_at, last_event_at, last_event_id, last_predicate, event_count)
	SELECT e.subject_id,
		   max(e.payload #>> '{subject,source}'),
		   max(e.payload #>> '{subject,content,repository,id}'),
		   max(e.payload #>> '{subject,content,repository,source}'),
		   min(e."timestamp") FILTER (WHERE e.predicate = 'created'),
		   max(e."timestamp") FILTER (WHERE e.predicate = 'deleted'),
		   max(e.chain_id), %1$s
	FROM %%1$s AS e
	WHERE e.subject = 'branch' AND e.predicate IN ('created', 'deleted')
	  AND e.subject_id IS NOT NULL
	GROUP BY e.subject_id
	ON CONFLICT (branch_id) DO UPDATE SET
		source = GREATEST(s.source, excluded.source),
		repository_id = GREATEST(s.repository_id, excluded.repository_id),
		repository_source = GREATEST(s.repository_source, excluded.repository_source),
		created_at = LEAST(s.created_at, excluded.created_at),
		deleted_at = GREATEST(s.deleted_at, excluded.deleted_at),
		chain_id = GREATEST(s.chain_id, excluded.chain_id), %2$s;

	INSERT INTO cdviz.test_case_run_summaries AS s
		(test_case_run_id, source, test_case_id, test_case_name, test_case_version, test_case_type,
		 test_case_uri, test_suite_run_id, environment_id, trigger_type, trigger_uri,
		 queued_at, started_at, finished_at, skipped_at, outcome, severity, reason, chain_id,
		 first_event_at, last_event_at, last_event_id, last_predicate, event_count)
	SELECT e.subject_id,
		   max(e.payload #>> '{subject,source}'),
		   max(e.payload #>> '{subject,content,testCase,id}'),
		   max(e.payload #>> '{subject,content,testCase,name}'),
		   max(e.payload #>> '{subject,content,testCase,version}'),
		   max(e.payload #>> '{subject,content,testCase,type}'),
		   max(coalesce(e.payload #>> '{subject,content,testCase,uri}', e.payload #>> '{subject,content,testCase,url}')),
		   max(e.payload #>> '{subject,content,testSuiteRun,id}'),
		   max(e.payload #>> '{subject,content,environment,id}'),
		   max(e.payload #>> '{subject,content,trigger,type}'),
		   max(e.payload #>> '{subject,content,trigger,uri}'),
		   min(e."timestamp") FILTER (WHERE e.predicate = 'queued'),
		   min(e."timestamp") FILTER (WHERE e.predicate = 'started'),
		   max(e."timestamp") FILTER (WHERE e.predicate = 'finished'),
		   max(e."timestamp") FILTER (WHERE e.predicate = 'skipped'),
		   max(e.payload #>> '{subject,content,outcome}') FILTER (WHERE e.predicate = 'finished'),
		   max(e.payload #>> '{subject,content,severity}') FILTER (WHERE e.predicate = 'finished'),
		   max(e.payload #>> '{subject,content,reason}') FILTER (WHERE e.predicate IN ('finished', 'skipped')),
		   max(e.chain_id), %1$s
	FROM %%1$s AS e
	WHERE e.subject = 'testcaserun' AND e.predicate IN ('queued', 'started', 'finished', 'skipped')
	  AND e.subject_id IS NOT NULL
	GROUP BY e.subject_id
	ON CONFLICT (test_case_run_id) DO UPDATE SET
		source = GREATEST(s.source, excluded.source),
		test_case_id = GREATEST(s.test_case_id, excluded.test_case_id),
		test_case_name = GREATEST(s.test_case_name, excluded.test_case_name),
		test_case_version = GREATEST(s.test_case_version, excluded.test_case_version),
		test_case_type = GREATEST(s.test_case_type, excluded.test_case_type),
		test_case_uri = GREATEST(s.test_case_uri, excluded.test_case_uri),
		test_suite_run_id = GREATEST(s.test_suite_run_id, excluded.test_suite_run_id),
		environment_id = GREATEST(s.environment_id, excluded.environment_id),
		trigger_type = GREATEST(s.trigger_type, excluded.trigger_type),
		trigger_uri = GREATEST(s.trigger_uri, excluded.trigger_uri),
		queued_at = LEAST(s.queued_at, excluded.queued_at),
		started_at = LEAST(s.started_at, excluded.started_at),
		finished_at = GREATEST(s.finished_at, excluded.finished_at),
		skipped_at = GREATEST(s.skipped_at, excluded.skipped_at),
		outcome = GREATEST(s.outcome, excluded.outcome),
		severity = GREATEST(s.severity, excluded.severity),
		reason = GREATEST(s.reason, excluded.reason),
		chain_id = GREATEST(s.chain_id, excluded.chain_id), %2$s;

	INSERT INTO cdviz.test_suite_run_summaries AS s
		(test_suite_run_id, source, test_suite_id, test_suite_name, test_suite_version, test_suite_uri,
		 environment_id, trigger_type, trigger_uri, queued_at, started_at, finished_at, outcome,
		 severity, reason, chain_id, first_event_at, last_event_at, last_event_id, last_predicate,
		 event_count)
	SELECT e.subject_id,
		   max(e.payload #>> '{subject,source}'),
		   max(e.payload #>> '{subject,content,testSuite,id}'),
		   max(e.payload #>> '{subject,content,testSuite,name}'),
		   max(e.payload #>> '{subject,content,testSuite,version}'),
		   max(coalesce(e.payload #>> '{subject,content,testSuite,uri}', e.payload #>> '{subject,content,testSuite,url}')),
		   max(e.payload #>> '{subject,content,environment,id}'),
		   max(e.payload #>> '{subject,content,trigger,type}'),
		   max(e.payload #>> '{subject,content,trigger,uri}'),
		   min(e."timestamp") FILTER (WHERE e.predicate = 'queued'),
		   min(e."timestamp") FILTER (WHERE e.predicate = 'started'),
		   max(e."timestamp") FILTER (WHERE e.predicate = 'finished'),
		   max(e.payload #>> '{subject,content,outcome}') FILTER (WHERE e.predicate = 'finished'),
		   max(e.payload #>> '{subject,content,severity}') FILTER (WHERE e.predicate = 'finished'),
		   max(e.payload #>> '{subject,content,reason}') FILTER (WHERE e.predicate = 'finished'),
		   max(e.chain_id), %1$s
	FROM %%1$s AS e
	WHERE e.subject = 'testsuiterun' AND e.predicate IN ('queued', 'started', 'finished')
	  AND e.subject_id IS NOT NULL
	GROUP BY e.subject_id
	ON CONFLICT (test_suite_run_id) DO UPDATE SET
		source = GREATEST(s.source, excluded.source),
		test_suite_id = GREATEST(s.test_suite_id, excluded.test_suite_id),
		test_suite_name = GREATEST(s.test_suite_name, excluded.test_suite_name),
		test_suite_version = GREATEST(s.test_suite_version, excluded.test_suite_version),
		test_suite_uri = GREATEST(s.test_suite_uri, excluded.test_suite_uri),
		environment_id = GREATEST(s.environment_id, excluded.environment_id),
		trigger_type = GREATEST(s.trigger_type, excluded.trigger_type),
		trigger_uri = GREATEST(s.trigger_uri, excluded.trigger_uri),
		queued_at = LEAST(s.queued_at, excluded.queued_at),
		started_at = LEAST(s.started_at, excluded.started_at),
		finished_at = GREATEST(s.finished_at, excluded.finished_at),
		outcome = GREATEST(s.outcome, excluded.outcome),
		severity = GREATEST(s.severity, excluded.severity),
		reason = GREATEST(s.reason, excluded.reason),
		chain_id = GREATEST(s.chain_id, excluded.chain_id), %2$s;

	INSERT INTO cdviz.artifact_summaries AS s
		(artifact_id, source, packaged_at, signed_at, published_at, first_downloaded_at,
		 last_downloaded_at, download_count, deleted_at, change_id, change_source, sbom_uri,
		 signature, last_user, last_user_at, last_user_event_id, chain_id,
		 first_event_at, last_event_at, last_event_id, last_predicate, event_count)
	SELECT e.subject_id,
		   max(e.payload #>> '{subject,source}'),
		   min(e."timestamp") FILTER (WHERE e.predicate = 'packaged'),
		   min(e."timestamp") FILTER (WHERE e.predicate = 'signed'),
		   min(e."timestamp") FILTER (WHERE e.predicate = 'published'),
		   min(e."timestamp") FILTER (WHERE e.predicate = 'downloaded'),
		   max(e."timestamp") FILTER (WHERE e.predicate = 'downloaded'),
		   count(*) FILTER (WHERE e.predicate = 'downloaded'),
		   max(e."timestamp") FILTER (WHERE e.predicate = 'deleted'),
		   max(e.payload #>> '{subject,content,change,id}') FILTER (WHERE e.predicate = 'packaged'),
		   max(e.payload #>> '{subject,content,change,source}') FILTER (WHERE e.predicate = 'packaged'),
		   max(e.payload #>> '{subject,content,sbom,uri}'),
		   max(e.payload #>> '{subject,content,signature}') FILTER (WHERE e.predicate = 'signed'),
		   %3$s,
		   max(e.chain_id), %1$s
	FROM %%1$s AS e
	WHERE e.subject = 'artifact'
	  AND e.predicate IN ('packaged', 'signed', 'published', 'downloaded', 'deleted')
	  AND e.subject_id IS NOT NULL
	GROUP BY e.subject_id
	ON CONFLICT (artifact_id) DO UPDATE SET
		source = GREATEST(s.source, excluded.source),
		packaged_at = LEAST(s.packaged_at, excluded.packaged_at),
		signed_at = LEAST(s.signed_at, excluded.signed_at),
		published_at = LEAST(s.published_at, excluded.published_at),
		first_downloaded_at = LEAST(s.first_downloaded_at, excluded.first_downloaded_at),
		last_downloaded_at = GREATEST(s.last_downloaded_at, excluded.last_downloaded_at),
		download_count = s.download_count + excluded.download_count,
		deleted_at = GREATEST(s.deleted_at, excluded.deleted_at),
		change_id = GREATEST(s.change_id, excluded.change_id),
		change_source = GREATEST(s.change_source, excluded.change_source),
		sbom_uri = GREATEST(s.sbom_uri, excluded.sbom_uri),
		signature = GREATEST(s.signature, excluded.signature), %4$s,
		chain_id = GREATEST(s.chain_id, excluded.chain_id), %2$s;

	INSERT INTO cdviz.change_summaries AS s
		(change_id, source, repository_id, repository_source, description, description_at,
		 description_event_id, created_at, first_reviewed_at, review_count, last_updated_at,
		 merged_at, abandoned_at, chain_id,
		 first_event_at, last_event_at, last_event_id, last_predicate, event_count)
	SELECT e.subject_id,
		   max(e.payload #>> '{subject,source}'),
		   max(e.payload #>> '{subject,content,repository,id}'),
		   max(e.payload #>> '{subject,content,repository,source}'),
		   %5$s,
		   min(e."timestamp") FILTER (WHERE e.predicate = 'created'),
		   min(e."timestamp") FILTER (WHERE e.predicate = 'reviewed'),
		   count(*) FILTER (WHERE e.predicate = 'reviewed'),
		   max(e."timestamp") FILTER (WHERE e.predicate = 'updated'),
		   min(e."timestamp") FILTER (WHERE e.predicate = 'merged'),
		   min(e."timestamp") FILTER (WHERE e.predicate = 'abandoned'),
		   max(e.chain_id), %1$s
	FROM %%1$s AS e
	WHERE e.subject = 'change'
	  AND e.predicate IN ('created', 'reviewed', 'updated', 'merged', 'abandoned')
	  AND e.subject_id IS NOT NULL
	GROUP BY e.subject_id
	ON CONFLICT (change_id) DO UPDATE SET
		source = GREATEST(s.source, excluded.source),
		repository_id = GREATEST(s.repository_id, excluded.repository_id),
		repository_source = GREATEST(s.repository_source, excluded.repository_source), %6$s,
		created_at = LEAST(s.created_at, excluded.created_at),
		first_reviewed_at = LEAST(s.first_reviewed_at, excluded.first_reviewed_at),
		review_count = s.review_count + excluded.review_count,
		last_updated_at = GREATEST(s.last_updated_at, excluded.last_updated_at),
		merged_at = LEAST(s.merged_at, excluded.merged_at),
		abandoned_at = LEAST(s.abandoned_at, excluded.abandoned_at),
		chain_id = GREATEST(s.chain_id, excluded.chain_id), %2$s;

	INSERT INTO cdviz.incident_summaries AS s
		(incident_id, source, environment_id, service_id, artifact_id, description, description_at,
		 description_event_id, ticket_uri, detected_at, reported_at, resolved_at, chain_id,
		 first_event_at, last_event_at, last_event_id, last_predicate, event_count)
	SELECT e.subject_id,
		   max(e.payload #>> '{subject,source}'),
		   max(e.payload #>> '{subject,content,environment,id}'),
		   max(e.payload #>> '{subject,content,service,id}'),
		   max(e.payload #>> '{subject,content,artifactId}'),
		   %5$s,
		   max(e.payload #>> '{subject,content,ticketURI}'),
		   min(e."timestamp") FILTER (WHERE e.predicate = 'detected'),
		   min(e."timestamp") FILTER (WHERE e.predicate = 'reported'),
		   max(e."timestamp") FILTER (WHERE e.predicate = 'resolved'),
		   max(e.chain_id), %1$s
	FROM %%1$s AS e
	WHERE e.subject = 'incident' AND e.predicate IN ('detected', 'reported', 'resolved')
	  AND e.subject_id IS NOT NULL
	GROUP BY e.subject_id
	ON CONFLICT (incident_id) DO UPDATE SET
		source = GREATEST(s.source, excluded.source),
		environment_id = GREATEST(s.environment_id, excluded.environment_id),
		service_id = GREATEST(s.service_id, excluded.service_id),
		artifact_id = GREATEST(s.artifact_id, excluded.artifact_id), %6$s,
		ticket_uri = GREATEST(s.ticket_uri, excluded.ticket_uri),
		detected_at = LEAST(s.detected_at, excluded.detected_at),
		reported_at = LEAST(s.reported_at, excluded.reported_at),
		resolved_at = GREATEST(s.resolved_at, excluded.resolved_at),
		chain_id = GREATEST(s.chain_id, excluded.chain_id), %2$s;

	INSERT INTO cdviz.test_case_outcomes_daily AS s (day, test_case, outcome, runs, last_at, reason)
	SELECT date_bin('1 day', e."timestamp", timestamptz '2000-01-01 00:00+00'),
		   coalesce(e.payload #>> '{subject,content,testCase,name}', e.payload #>> '{subject,content,testCase,id}'),
		   CASE WHEN e.predicate = 'skipped' THEN 'skipped'
				ELSE cdviz.normalize_outcome(e.payload #>> '{subject,content,outcome}') END,
		   count(*), max(e."timestamp"), max(e.payload #>> '{subject,content,reason}')
	FROM %%1$s AS e
	WHERE e.subject = 'testcaserun' AND e.predicate IN ('finished', 'skipped')
	GROUP BY 1, 2, 3
	ON CONFLICT (day, test_case, outcome) DO UPDATE SET
		runs = s.runs + excluded.runs,
		last_at = GREATEST(s.last_at, excluded.last_at),
		reason = GREATEST(s.reason, excluded.reason);

	INSERT INTO cdviz.event_counts_hourly AS s
		(hour, type, context_source, spec_version, subject, predicate, events, first_at, last_at)
	SELECT date_bin('1 hour', e."timestamp", timestamptz '2000-01-01 00:00+00'), e.type,
		   e.context_source, e.spec_version, max(e.subject), max(e.predicate),
		   count(*), min(e."timestamp"), max(e."timestamp")
	FROM %%1$s AS e
	GROUP BY 1, 2, 3, 4
	ON CONFLICT (hour, type, context_source, spec_version) DO UPDATE SET
		events = s.events + excluded.events,
		first_at = LEAST(s.first_at, excluded.first_at),
		last_at = GREATEST(s.last_at, excluded.last_at);
$tpl$,
		last_cols, last_set,
		format(latest, $t$(e.payload #>> '{subject,content,user}')$t$),
		format(latest_set, 'last_user', 'last_user_at', 'last_user_event_id'),
		format(latest, $t$(e.payload #>> '{subject,content,description}')$t$),
		format(latest_set, 'description', 'description_at', 'description_event_id'));

	-- The trigger runs each summary statement only when the inserted rows
	-- hold its subject (named in the statement's own WHERE clause): for the
	-- small groups of the http worker most statements have nothing to do,
	-- and each would still cost its executor start-up and locks.
	-- The same statements over the trigger's transition table (summaries
	-- folded at once) and over the queued events (folded later).
	FOREACH rel IN ARRAY ARRAY['new_events', 'pg_temp.queued_events']
	LOOP
		gated := '';
		FOREACH stmt IN ARRAY regexp_split_to_array(format(fold, rel), E';\n')
		LOOP
			CONTINUE WHEN btrim(stmt, E' \t\n') = '';
			subj := substring(stmt FROM $r$e\.subject = '([a-z]+)'$r$);
			gated := gated || CASE WHEN subj IS NULL THEN stmt || E';\n'
				ELSE format(E'\tIF subjects @> ''{%s}'' THEN%s;\n\tEND IF;\n', subj, stmt) END;
		END LOOP;
		gated_for := gated_for || (replace(derived, 'FROM new_events e', format('FROM %s e', rel)) || gated);
	END LOOP;

	-- The trigger's statements are planned once per session and kept: the
	-- http worker keeps its plans for days.  Planned while a table was
	-- small or vacuumed empty, a key probe would become a scan of the whole
	-- table as it grows (the http bench's first rounds after a cleanup:
	-- 1,200 events/s against 5,800).  The trigger reads tables by key only
	-- (its batch is a tuplestore, which this does not touch): seq scans off,
	-- whatever the statistics said when they were planned.  With summaries
	-- immediate and batches of 10,000 this costs a little (0.43-0.45 of a
	-- plain insert instead of 0.46-0.48, bench/ingest.sh).  Not for the
	-- fold of queued events: its batches are a temp table of thousands of
	-- rows, joined best by hash (2,200 events/s with seq scans off, against
	-- 21,000-31,500).
	EXECUTE format($f$
CREATE FUNCTION cdviz.lake_maintain()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
AS $body$
DECLARE
	deferred boolean := cdviz._summaries_deferred();
	subjects text[];
	has_links boolean;
	n bigint := 0;
	queued bigint;
	ids bigint[];
	stamps timestamptz[];
BEGIN
	-- one pass over the stored rows says which parts below have work (and,
	-- deferred, what the queue keeps)
	IF deferred THEN
		-- only service events have work here: no need to sort the subjects
		SELECT CASE WHEN bool_or(e.subject = 'service') THEN '{service}'::text[] ELSE '{}' END,
			   count(*), array_agg(e.id), array_agg(e."timestamp")
		INTO subjects, queued, ids, stamps
		FROM new_events AS e;
		IF queued = 0 THEN
			RETURN NULL;
		END IF;
	ELSE
		SELECT array_agg(DISTINCT e.subject), coalesce(bool_or(e.payload -> 'context' ? 'links'), false)
		INTO subjects, has_links
		FROM new_events AS e;
	END IF;
	IF subjects IS NULL THEN
		RETURN NULL;
	END IF;
%s
	-- the derived tables and summaries: here, or queued for the cdviz
	-- summaries worker
	IF deferred THEN
		INSERT INTO cdviz.summary_queue (events, ids, stamps) VALUES (queued, ids, stamps);
	ELSE
%s
	END IF;
	RETURN NULL;
END
$body$$f$, state, gated_for[1]);

	EXECUTE format($f$
CREATE FUNCTION cdviz.fold_queued_summaries(max_statements integer DEFAULT 1000)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $body$
DECLARE
	subjects text[];
	has_links boolean;
	n bigint;
BEGIN
	IF to_regclass('pg_temp.queued_events') IS NULL THEN
		CREATE TEMP TABLE queued_events (LIKE cdviz.cdevents_lake) ON COMMIT DELETE ROWS;
	ELSE
		-- a second call in one transaction
		TRUNCATE pg_temp.queued_events;
	END IF;
	-- Taken in queue order and deleted in this transaction: each queued
	-- statement is folded exactly once, whoever calls (SKIP LOCKED lets a
	-- concurrent call take the next ones).  One probe per event, so that
	-- no plan can read whole partitions.
	WITH q AS (
		DELETE FROM cdviz.summary_queue AS q
		WHERE q.id IN (SELECT w.id FROM cdviz.summary_queue AS w ORDER BY w.id
					   LIMIT max_statements FOR UPDATE SKIP LOCKED)
		RETURNING q.ids, q.stamps)
	INSERT INTO pg_temp.queued_events
	SELECT l.*
	FROM q CROSS JOIN LATERAL unnest(q.ids, q.stamps) AS k(id, ts)
	CROSS JOIN LATERAL (SELECT * FROM cdviz.cdevents_lake AS c
						WHERE c.id = k.id AND c."timestamp" = k.ts LIMIT 1) AS l;
	GET DIAGNOSTICS n = ROW_COUNT;
	IF n = 0 THEN
		RETURN 0;
	END IF;
	SELECT array_agg(DISTINCT e.subject), coalesce(bool_or(e.payload -> 'context' ? 'links'), false)
	INTO subjects, has_links
	FROM pg_temp.queued_events AS e;
%s
	RETURN n;
END
$body$$f$, gated_for[2]);

	EXECUTE format($f$
CREATE FUNCTION cdviz.summaries_fold(from_ts timestamptz, to_ts timestamptz)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $body$
BEGIN
%s
END
$body$$f$, format(fold, $t$(SELECT * FROM cdviz.cdevents_lake AS l
			  WHERE l."timestamp" >= from_ts AND l."timestamp" < to_ts)$t$));
END
$do$;

COMMENT ON FUNCTION cdviz.lake_maintain() IS
'cdviz: statement-level AFTER INSERT trigger of cdviz.cdevents_lake: folds the stored events of the statement into environment_history and environment_state; then, with cdviz.summaries = deferred (in the summaries worker''s database), queues them in cdviz.summary_queue for cdviz.fold_queued_summaries(), else folds them at once into the derived tables (first_deployments, artifact_changes, change_times, event_links) and, grouped per key, into the summary tables (pipeline/task/test case/test suite run, build, artifact, change and incident summaries, event_counts_hourly, test_case_outcomes_daily) with one set-based statement per table, each run only when the statement stored events of its subject; order-independent merge rules (see cdviz.pipeline_run_summaries). SECURITY DEFINER so that writers need no privilege on them.';
COMMENT ON FUNCTION cdviz.fold_queued_summaries(integer) IS
'cdviz: folds the events queued by the lake trigger (cdviz.summaries = deferred) into the summary tables, the oldest max_statements insert statements at most, and returns how many events it folded; the cdviz summaries worker calls it, a session that wants read-after-write may too. Example: SELECT cdviz.fold_queued_summaries();';
COMMENT ON FUNCTION cdviz.summaries_fold(timestamptz, timestamptz) IS
'cdviz: folds the lake events with "timestamp" in [from_ts, to_ts) into the summary tables, with the same statements as the lake trigger; adds to what is there (call it on empty summaries, or for events the summaries have not seen). Used by cdviz.rebuild_summaries().';

CREATE TRIGGER lake_maintain
	AFTER INSERT ON cdviz.cdevents_lake
	REFERENCING NEW TABLE AS new_events
	FOR EACH STATEMENT
	EXECUTE FUNCTION cdviz.lake_maintain();

COMMENT ON TRIGGER lake_maintain ON cdviz.cdevents_lake IS
'cdviz: keeps the environment history and state in step with the lake, one pass per insert statement, and the derived tables, run, artifact, change and incident summaries and hourly/daily rollups too, at once or through cdviz.summary_queue (cdviz.summaries)';

CREATE FUNCTION cdviz.rebuild_summaries()
RETURNS TABLE (summary text, row_count bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	m record;
	t text;
BEGIN
	IF NOT (SELECT r.rolsuper FROM pg_roles AS r WHERE r.rolname = current_user) THEN
		RAISE EXCEPTION 'cdviz.rebuild_summaries() requires a superuser'
			USING ERRCODE = 'insufficient_privilege';
	END IF;
	-- no ingest meanwhile: a batch stored during the rebuild could be
	-- counted twice (by its trigger and by the fold)
	LOCK TABLE cdviz.cdevents_lake IN SHARE MODE;
	TRUNCATE cdviz.pipeline_run_summaries, cdviz.task_run_summaries, cdviz.build_summaries,
			 cdviz.branch_summaries,
			 cdviz.test_case_run_summaries, cdviz.test_suite_run_summaries,
			 cdviz.artifact_summaries, cdviz.change_summaries, cdviz.incident_summaries,
			 cdviz.event_counts_hourly, cdviz.test_case_outcomes_daily,
			 cdviz.summary_queue;
	-- month by month (the folds merge), so memory stays bounded
	FOR m IN
		SELECT g.m AT TIME ZONE 'UTC' AS month_start
		FROM (SELECT min(l."timestamp") AS lo, max(l."timestamp") AS hi FROM cdviz.cdevents_lake AS l) AS b,
			 generate_series(date_trunc('month', b.lo AT TIME ZONE 'UTC'),
							 date_trunc('month', b.hi AT TIME ZONE 'UTC'), interval '1 month') AS g(m)
		ORDER BY 1
	LOOP
		PERFORM cdviz.summaries_fold(m.month_start, m.month_start + interval '1 month');
	END LOOP;
	FOREACH t IN ARRAY ARRAY['pipeline_run_summaries', 'task_run_summaries', 'build_summaries',
							 'branch_summaries',
							 'test_case_run_summaries', 'test_suite_run_summaries',
							 'artifact_summaries', 'change_summaries', 'incident_summaries',
							 'event_counts_hourly', 'test_case_outcomes_daily']
	LOOP
		EXECUTE format('ANALYZE cdviz.%I', t);
		summary := t;
		EXECUTE format('SELECT count(*) FROM cdviz.%I', t) INTO row_count;
		RETURN NEXT;
	END LOOP;
END
$$;

COMMENT ON FUNCTION cdviz.rebuild_summaries() IS
'cdviz: superuser only. Empties the summary tables kept by the lake trigger (cdviz.*_summaries, cdviz.event_counts_hourly, cdviz.test_case_outcomes_daily) and refolds them from the whole lake, month by month, under a SHARE lock of the lake (ingest waits); returns the row count of each. For upgrades from a version without summaries, and after loading lake rows without the trigger (pg_restore of partitions, COPY into a partition). Example: SELECT * FROM cdviz.rebuild_summaries();';

SELECT pg_catalog.pg_extension_config_dump('cdviz.pipeline_run_summaries', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.task_run_summaries', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.build_summaries', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.branch_summaries', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.test_case_run_summaries', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.test_suite_run_summaries', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.artifact_summaries', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.change_summaries', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.incident_summaries', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.event_counts_hourly', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.test_case_outcomes_daily', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.summary_queue', '');
-- Read API, part 1: helpers shared by the views.
--
-- Everything in the read API is plain SQL so that the planner can inline it
-- into the caller's query: a function written as a single SELECT (LANGUAGE
-- sql, not SECURITY DEFINER, no SET clause, not VOLATILE) is expanded in
-- place, its range parameters become ordinary quals on the lake, and the
-- lake's monthly partitions outside the range are pruned.

-- Spec 0.3 and 0.4 report test outcomes as pass/fail, 0.5 as success/failure.
CREATE FUNCTION cdviz.normalize_outcome(outcome text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE outcome WHEN 'pass' THEN 'success' WHEN 'fail' THEN 'failure' ELSE outcome END;

COMMENT ON FUNCTION cdviz.normalize_outcome(text) IS
'cdviz: one vocabulary for outcomes across spec versions: pass -> success, fail -> failure (0.3/0.4 test outcomes); anything else unchanged';

-- Percent-decoding for package URLs.  Only ASCII escapes (%01-%7F) are
-- decoded: they are what purls encode in practice (":" "/" "@" "?" "#" "+"
-- " " "%"), and decoding them cannot produce invalid UTF-8, so one odd purl
-- can never make a view fail.  A string with any other escape, or with a
-- "%" not followed by two hex digits, is returned as it is.  In C
-- (src/core/purl.c): a deployments listing decodes thousands per query.
CREATE FUNCTION cdviz.percent_decode(s text)
RETURNS text
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdviz_percent_decode_text';

COMMENT ON FUNCTION cdviz.percent_decode(text) IS
'cdviz: percent-decoding of a package URL component: the %XX escapes of s decoded when all of them are ASCII (%01-%7F), s unchanged otherwise; NULL stays NULL';

-- Package URL (https://github.com/package-url/purl-spec):
--   pkg:type/namespace/name@version?qualifiers#subpath
-- The version is what follows the last "@" that has no "/" after it, the
-- name the last path segment, the namespace what lies between type and name.
-- The split is C (cdviz.purl_split, src/core/purl.c, where the rules are
-- listed): views call cdviz.purl_parse() once per selected column, as a
-- scalar subquery, so a deployments listing parses thousands of purls per
-- query, a count of deployments none.  purl_parse stays a one-SELECT SQL
-- function so that the planner inlines it and drops the columns nobody
-- selected (the qualifiers' jsonb above all).
CREATE FUNCTION cdviz.purl_split(purl text)
RETURNS text[]
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdviz_purl_split_text';

COMMENT ON FUNCTION cdviz.purl_split(text) IS
'cdviz: the components of a package URL as {type (lower case), namespace, name, version, qualifiers (raw text), subpath}, percent-decoded but for the qualifiers, NULL where absent; NULL when the text is not a purl. Used by cdviz.purl_parse().';

CREATE FUNCTION cdviz.purl_parse(purl text)
RETURNS TABLE (purl_type text, namespace text, name text, version text,
			   qualifiers jsonb, subpath text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
SELECT s.p[1], s.p[2], s.p[3], s.p[4],
	   (SELECT jsonb_object_agg(lower(split_part(kv, '=', 1)),
								cdviz.percent_decode(substr(kv, strpos(kv, '=') + 1)))
		FROM unnest(string_to_array(s.p[5], '&')) AS kv
		WHERE strpos(kv, '=') > 1),
	   s.p[6]
FROM (SELECT cdviz.purl_split(purl) AS p OFFSET 0) AS s
WHERE s.p IS NOT NULL
$$;

COMMENT ON FUNCTION cdviz.purl_parse(text) IS
'cdviz: splits a package URL into type, namespace, name, version, qualifiers (jsonb) and subpath, percent-decoded; no row when the text is not a purl. Example: SELECT * FROM cdviz.purl_parse(''pkg:oci/myapp@sha256%3A0b31?repository_url=ghcr.io/org'') -> oci, NULL, myapp, sha256:0b31, {"repository_url": "ghcr.io/org"}, NULL';
-- Read API, part 2: subjects with a run lifecycle (pipeline runs, task runs,
-- builds, test case runs, test suite runs) and test outputs.
--
-- Why a function per subject, and what it reads.  Each subject has
-- cdviz.<subject>s_between(from_ts, to_ts, lookback), an inlinable SQL
-- function over the summary table the lake trigger keeps (one row per run,
-- see 30_state.sql): it returns every run whose first event is in
-- [from_ts - lookback, to_ts) and whose last event is at or after from_ts,
-- that is the runs active in the window that began at most lookback
-- (default 1 day) before it, each with its whole lifecycle (events after
-- to_ts included: a run finished since shows its finish).  The range is an
-- index range scan of the summary's first_event_at: a 30-day window reads
-- the runs of 31 days, never the lake.  The view of the same name is the
-- function over all time.
--
-- Columns that are not selected cost nothing: last_payload, the only one
-- that reads the lake (one primary-key probe of one partition per row), is a
-- scalar subquery the planner drops when the column is not used.

CREATE FUNCTION cdviz.pipeline_runs_between(from_ts timestamptz, to_ts timestamptz,
											lookback interval DEFAULT '1 day')
RETURNS TABLE (pipeline_run_id text, source text, pipeline_name text,
			   queued_at timestamptz, started_at timestamptz, finished_at timestamptz,
			   queue_duration interval, run_duration interval, outcome text, errors text,
			   uri text, chain_id text, first_event_at timestamptz, last_event_at timestamptz,
			   last_predicate text, event_count bigint, last_payload jsonb)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT s.pipeline_run_id, s.source, s.pipeline_name, s.queued_at, s.started_at, s.finished_at,
	   s.started_at - s.queued_at,
	   s.finished_at - coalesce(s.started_at, s.queued_at),
	   cdviz.normalize_outcome(s.outcome), s.errors, s.uri, s.chain_id,
	   s.first_event_at, s.last_event_at, s.last_predicate, s.event_count,
	   (SELECT l.payload FROM cdviz.cdevents_lake AS l
		WHERE l.id = s.last_event_id AND l."timestamp" = s.last_event_at)
FROM cdviz.pipeline_run_summaries AS s
WHERE s.first_event_at >= from_ts - lookback AND s.first_event_at < to_ts
  AND s.last_event_at >= from_ts
$$;

COMMENT ON FUNCTION cdviz.pipeline_runs_between(timestamptz, timestamptz, interval) IS
'cdviz: one row per pipeline run with an event in [from_ts, to_ts): queued/started/finished times, queue_duration (queued to started), run_duration (started, else queued, to finished), outcome (success/failure/cancel/error), errors, uri (0.5 uri or 0.3/0.4 url). Reads the summary kept at ingest: runs that began at most lookback (default 1 day) before from_ts, with their whole lifecycle. Use it rather than cdviz.pipeline_runs for a time window.';

CREATE VIEW cdviz.pipeline_runs AS
	SELECT * FROM cdviz.pipeline_runs_between('-infinity', 'infinity', '0');

COMMENT ON VIEW cdviz.pipeline_runs IS
'cdviz: every pipeline run, one row each (see cdviz.pipeline_runs_between for the columns). Every run ever stored: for a time window call cdviz.pipeline_runs_between(from, to).';

CREATE FUNCTION cdviz.task_runs_between(from_ts timestamptz, to_ts timestamptz,
										lookback interval DEFAULT '1 day')
RETURNS TABLE (task_run_id text, source text, task_name text, pipeline_run_id text,
			   started_at timestamptz, finished_at timestamptz, run_duration interval,
			   outcome text, errors text, uri text, chain_id text,
			   first_event_at timestamptz, last_event_at timestamptz, last_predicate text,
			   event_count bigint, last_payload jsonb)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT s.task_run_id, s.source, s.task_name, s.pipeline_run_id, s.started_at, s.finished_at,
	   s.finished_at - s.started_at,
	   cdviz.normalize_outcome(s.outcome), s.errors, s.uri, s.chain_id,
	   s.first_event_at, s.last_event_at, s.last_predicate, s.event_count,
	   (SELECT l.payload FROM cdviz.cdevents_lake AS l
		WHERE l.id = s.last_event_id AND l."timestamp" = s.last_event_at)
FROM cdviz.task_run_summaries AS s
WHERE s.first_event_at >= from_ts - lookback AND s.first_event_at < to_ts
  AND s.last_event_at >= from_ts
$$;

COMMENT ON FUNCTION cdviz.task_runs_between(timestamptz, timestamptz, interval) IS
'cdviz: one row per task run with an event in [from_ts, to_ts): task name, the pipeline run it belongs to, started/finished times, run_duration, outcome, errors, uri (uri or url). Reads the summary kept at ingest: runs that began at most lookback (default 1 day) before from_ts, with their whole lifecycle.';

CREATE VIEW cdviz.task_runs AS
	SELECT * FROM cdviz.task_runs_between('-infinity', 'infinity', '0');

COMMENT ON VIEW cdviz.task_runs IS
'cdviz: every task run, one row each (columns: see cdviz.task_runs_between). Whole history: for a window call cdviz.task_runs_between(from, to).';

CREATE FUNCTION cdviz.builds_between(from_ts timestamptz, to_ts timestamptz,
									 lookback interval DEFAULT '1 day')
RETURNS TABLE (build_id text, source text, queued_at timestamptz, started_at timestamptz,
			   finished_at timestamptz, queue_duration interval, run_duration interval,
			   artifact_id text, chain_id text, first_event_at timestamptz,
			   last_event_at timestamptz, last_predicate text, event_count bigint,
			   last_payload jsonb)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT s.build_id, s.source, s.queued_at, s.started_at, s.finished_at,
	   s.started_at - s.queued_at,
	   s.finished_at - coalesce(s.started_at, s.queued_at),
	   s.artifact_id, s.chain_id,
	   s.first_event_at, s.last_event_at, s.last_predicate, s.event_count,
	   (SELECT l.payload FROM cdviz.cdevents_lake AS l
		WHERE l.id = s.last_event_id AND l."timestamp" = s.last_event_at)
FROM cdviz.build_summaries AS s
WHERE s.first_event_at >= from_ts - lookback AND s.first_event_at < to_ts
  AND s.last_event_at >= from_ts
$$;

COMMENT ON FUNCTION cdviz.builds_between(timestamptz, timestamptz, interval) IS
'cdviz: one row per build with an event in [from_ts, to_ts): queued/started/finished times and durations, the artifact the finished build produced. CDEvents builds carry no outcome. Reads the summary kept at ingest: runs that began at most lookback (default 1 day) before from_ts, with their whole lifecycle.';

CREATE VIEW cdviz.builds AS
	SELECT * FROM cdviz.builds_between('-infinity', 'infinity', '0');

COMMENT ON VIEW cdviz.builds IS
'cdviz: every build, one row each (columns: see cdviz.builds_between). Whole history: for a window call cdviz.builds_between(from, to).';

CREATE FUNCTION cdviz.test_case_runs_between(from_ts timestamptz, to_ts timestamptz,
											 lookback interval DEFAULT '1 day')
RETURNS TABLE (test_case_run_id text, source text, test_case_id text, test_case_name text,
			   test_case_version text, test_case_type text, test_case_uri text,
			   test_suite_run_id text, environment_id text, trigger_type text, trigger_uri text,
			   queued_at timestamptz, started_at timestamptz, finished_at timestamptz,
			   skipped_at timestamptz, queue_duration interval, run_duration interval,
			   outcome text, severity text, reason text, chain_id text,
			   first_event_at timestamptz, last_event_at timestamptz, last_predicate text,
			   event_count bigint, last_payload jsonb)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT s.test_case_run_id, s.source, s.test_case_id, s.test_case_name, s.test_case_version,
	   s.test_case_type, s.test_case_uri, s.test_suite_run_id, s.environment_id, s.trigger_type,
	   s.trigger_uri, s.queued_at, s.started_at, s.finished_at, s.skipped_at,
	   s.started_at - s.queued_at,
	   s.finished_at - s.started_at,
	   coalesce(cdviz.normalize_outcome(s.outcome), CASE WHEN s.skipped_at IS NOT NULL THEN 'skipped' END),
	   s.severity, s.reason, s.chain_id,
	   s.first_event_at, s.last_event_at, s.last_predicate, s.event_count,
	   (SELECT l.payload FROM cdviz.cdevents_lake AS l
		WHERE l.id = s.last_event_id AND l."timestamp" = s.last_event_at)
FROM cdviz.test_case_run_summaries AS s
WHERE s.first_event_at >= from_ts - lookback AND s.first_event_at < to_ts
  AND s.last_event_at >= from_ts
$$;

COMMENT ON FUNCTION cdviz.test_case_runs_between(timestamptz, timestamptz, interval) IS
'cdviz: one row per test case run with an event in [from_ts, to_ts): the test case (id, name, version, type, uri), its suite run, environment, trigger, queued/started/finished/skipped times, durations, outcome (success/failure/cancel/error, pass/fail normalised; skipped for a skipped run), severity, reason. Reads the summary kept at ingest: runs that began at most lookback (default 1 day) before from_ts, with their whole lifecycle.';

CREATE VIEW cdviz.test_case_runs AS
	SELECT * FROM cdviz.test_case_runs_between('-infinity', 'infinity', '0');

COMMENT ON VIEW cdviz.test_case_runs IS
'cdviz: every test case run, one row each (columns: see cdviz.test_case_runs_between). Whole history: for a window call cdviz.test_case_runs_between(from, to).';

CREATE FUNCTION cdviz.test_suite_runs_between(from_ts timestamptz, to_ts timestamptz,
											  lookback interval DEFAULT '1 day')
RETURNS TABLE (test_suite_run_id text, source text, test_suite_id text, test_suite_name text,
			   test_suite_version text, test_suite_uri text, environment_id text,
			   trigger_type text, trigger_uri text, queued_at timestamptz, started_at timestamptz,
			   finished_at timestamptz, queue_duration interval, run_duration interval,
			   outcome text, severity text, reason text, chain_id text,
			   first_event_at timestamptz, last_event_at timestamptz, last_predicate text,
			   event_count bigint, last_payload jsonb)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT s.test_suite_run_id, s.source, s.test_suite_id, s.test_suite_name, s.test_suite_version,
	   s.test_suite_uri, s.environment_id, s.trigger_type, s.trigger_uri,
	   s.queued_at, s.started_at, s.finished_at,
	   s.started_at - s.queued_at,
	   s.finished_at - s.started_at,
	   cdviz.normalize_outcome(s.outcome), s.severity, s.reason, s.chain_id,
	   s.first_event_at, s.last_event_at, s.last_predicate, s.event_count,
	   (SELECT l.payload FROM cdviz.cdevents_lake AS l
		WHERE l.id = s.last_event_id AND l."timestamp" = s.last_event_at)
FROM cdviz.test_suite_run_summaries AS s
WHERE s.first_event_at >= from_ts - lookback AND s.first_event_at < to_ts
  AND s.last_event_at >= from_ts
$$;

COMMENT ON FUNCTION cdviz.test_suite_runs_between(timestamptz, timestamptz, interval) IS
'cdviz: one row per test suite run with an event in [from_ts, to_ts): the suite (id, name, version, uri or url), environment, trigger, queued/started/finished times, durations, outcome (pass/fail normalised to success/failure), severity, reason. Reads the summary kept at ingest: runs that began at most lookback (default 1 day) before from_ts, with their whole lifecycle.';

CREATE VIEW cdviz.test_suite_runs AS
	SELECT * FROM cdviz.test_suite_runs_between('-infinity', 'infinity', '0');

COMMENT ON VIEW cdviz.test_suite_runs IS
'cdviz: every test suite run, one row each (columns: see cdviz.test_suite_runs_between). Whole history: for a window call cdviz.test_suite_runs_between(from, to).';

-- A test output is published once: one row per event, and published_at is
-- the lake's own "timestamp", so a WHERE on it prunes partitions directly.
CREATE VIEW cdviz.test_outputs AS
SELECT l.subject_id AS test_output_id,
	   l.payload #>> '{subject,source}' AS source,
	   l."timestamp" AS published_at,
	   l.payload #>> '{subject,content,outputType}' AS output_type,
	   l.payload #>> '{subject,content,format}' AS format,
	   coalesce(l.payload #>> '{subject,content,uri}', l.payload #>> '{subject,content,url}') AS uri,
	   l.payload #>> '{subject,content,testCaseRun,id}' AS test_case_run_id,
	   l.payload #>> '{subject,content,testCaseRun,source}' AS test_case_run_source,
	   l.chain_id, l.id AS event_id, l.context_id, l.context_source, l.payload
FROM cdviz.cdevents_lake AS l
WHERE l.subject = 'testoutput' AND l.predicate = 'published';

COMMENT ON VIEW cdviz.test_outputs IS
'cdviz: one row per testoutput.published event: output type (report, video, image, log, other), format, uri, the test case run it belongs to. published_at is the lake timestamp: WHERE published_at >= now() - interval ''30 days'' prunes partitions.';
-- Read API, part 3: subjects that are things rather than runs: artifacts,
-- changes, repositories, branches, environments, services, incidents and
-- tickets.  Each has cdviz.<subject>s_between(from_ts, to_ts, lookback)
-- returning every instance with an event in [from_ts, to_ts), and a view
-- over all time.  Artifacts, changes and incidents, the busy ones (and
-- incidents for DORA), read a summary table kept at ingest (30_state.sql)
-- like the runs of part 2: instances whose first event is in
-- [from_ts - lookback, to_ts) and whose last event is at or after from_ts,
-- with their whole history.  The rare ones (repositories, branches,
-- environments, tickets) aggregate their lake events, pruned to
-- [from_ts - lookback, to_ts).  These things live longer than a run, so the
-- default lookback is longer: 7 days for artifacts, changes and branches,
-- 30 days for the others.  Values that can change (a ticket's summary, a
-- repository's name) come from the latest event that carries them.

CREATE FUNCTION cdviz.artifacts_between(from_ts timestamptz, to_ts timestamptz,
										lookback interval DEFAULT '7 days')
RETURNS TABLE (artifact_id text, source text, packaged_at timestamptz, signed_at timestamptz,
			   published_at timestamptz, first_downloaded_at timestamptz,
			   last_downloaded_at timestamptz, download_count bigint, deleted_at timestamptz,
			   change_id text, change_source text, sbom_uri text, signature text,
			   last_user text, chain_id text, first_event_at timestamptz,
			   last_event_at timestamptz, last_predicate text, event_count bigint,
			   last_payload jsonb)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT s.artifact_id, s.source, s.packaged_at, s.signed_at, s.published_at,
	   s.first_downloaded_at, s.last_downloaded_at, s.download_count, s.deleted_at,
	   s.change_id, s.change_source, s.sbom_uri, s.signature, s.last_user, s.chain_id,
	   s.first_event_at, s.last_event_at, s.last_predicate, s.event_count,
	   (SELECT l.payload FROM cdviz.cdevents_lake AS l
		WHERE l.id = s.last_event_id AND l."timestamp" = s.last_event_at)
FROM cdviz.artifact_summaries AS s
WHERE s.first_event_at >= from_ts - lookback AND s.first_event_at < to_ts
  AND s.last_event_at >= from_ts
$$;

COMMENT ON FUNCTION cdviz.artifacts_between(timestamptz, timestamptz, interval) IS
'cdviz: one row per artifact with an event in [from_ts, to_ts): packaged/signed/published times, downloads, deletion, the change it was built from (packaged.change), sbom uri, signature, last user. Reads cdviz.artifact_summaries: artifacts whose first event is at most lookback (7 days) before from_ts, with their whole history. cdviz.purl_parse(artifact_id) splits the id.';

CREATE VIEW cdviz.artifacts AS
	SELECT * FROM cdviz.artifacts_between('-infinity', 'infinity', '0');

COMMENT ON VIEW cdviz.artifacts IS
'cdviz: every artifact, one row each (columns: see cdviz.artifacts_between). Whole history: for a window call cdviz.artifacts_between(from, to).';

CREATE FUNCTION cdviz.changes_between(from_ts timestamptz, to_ts timestamptz,
									  lookback interval DEFAULT '7 days')
RETURNS TABLE (change_id text, source text, repository_id text, repository_source text,
			   description text, state text, created_at timestamptz,
			   first_reviewed_at timestamptz, review_count bigint, last_updated_at timestamptz,
			   merged_at timestamptz, abandoned_at timestamptz, chain_id text,
			   first_event_at timestamptz, last_event_at timestamptz, last_predicate text,
			   event_count bigint, last_payload jsonb)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT s.change_id, s.source, s.repository_id, s.repository_source, s.description,
	   CASE WHEN s.merged_at IS NOT NULL THEN 'merged'
			WHEN s.abandoned_at IS NOT NULL THEN 'abandoned'
			ELSE 'open' END,
	   s.created_at, s.first_reviewed_at, s.review_count, s.last_updated_at,
	   s.merged_at, s.abandoned_at, s.chain_id,
	   s.first_event_at, s.last_event_at, s.last_predicate, s.event_count,
	   (SELECT l.payload FROM cdviz.cdevents_lake AS l
		WHERE l.id = s.last_event_id AND l."timestamp" = s.last_event_at)
FROM cdviz.change_summaries AS s
WHERE s.first_event_at >= from_ts - lookback AND s.first_event_at < to_ts
  AND s.last_event_at >= from_ts
$$;

COMMENT ON FUNCTION cdviz.changes_between(timestamptz, timestamptz, interval) IS
'cdviz: one row per change (pull/merge request) with an event in [from_ts, to_ts): repository, latest description, state (merged, abandoned or open), created, first review and review count, last update, merged/abandoned times. Reads cdviz.change_summaries: changes whose first event is at most lookback (7 days) before from_ts, with their whole history.';

CREATE VIEW cdviz.changes AS
	SELECT * FROM cdviz.changes_between('-infinity', 'infinity', '0');

COMMENT ON VIEW cdviz.changes IS
'cdviz: every change, one row each (columns: see cdviz.changes_between). Whole history: for a window call cdviz.changes_between(from, to).';

CREATE FUNCTION cdviz.repositories_between(from_ts timestamptz, to_ts timestamptz,
										   lookback interval DEFAULT '30 days')
RETURNS TABLE (repository_id text, source text, name text, owner text, uri text,
			   view_url text, state text, created_at timestamptz, modified_at timestamptz,
			   deleted_at timestamptz, first_event_at timestamptz, last_event_at timestamptz,
			   last_predicate text, event_count bigint, last_payload jsonb)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT l.subject_id,
	   max(l.payload #>> '{subject,source}'),
	   (array_agg(l.payload #>> '{subject,content,name}' ORDER BY l."timestamp" DESC, l.id DESC)
			FILTER (WHERE l.payload #> '{subject,content,name}' IS NOT NULL))[1],
	   (array_agg(l.payload #>> '{subject,content,owner}' ORDER BY l."timestamp" DESC, l.id DESC)
			FILTER (WHERE l.payload #> '{subject,content,owner}' IS NOT NULL))[1],
	   (array_agg(coalesce(l.payload #>> '{subject,content,uri}', l.payload #>> '{subject,content,url}')
				  ORDER BY l."timestamp" DESC, l.id DESC)
			FILTER (WHERE coalesce(l.payload #> '{subject,content,uri}', l.payload #> '{subject,content,url}') IS NOT NULL))[1],
	   (array_agg(l.payload #>> '{subject,content,viewUrl}' ORDER BY l."timestamp" DESC, l.id DESC)
			FILTER (WHERE l.payload #> '{subject,content,viewUrl}' IS NOT NULL))[1],
	   CASE (array_agg(l.predicate ORDER BY l."timestamp" DESC, l.id DESC))[1]
			WHEN 'deleted' THEN 'deleted' ELSE 'active' END,
	   min(l."timestamp") FILTER (WHERE l.predicate = 'created'),
	   max(l."timestamp") FILTER (WHERE l.predicate = 'modified'),
	   max(l."timestamp") FILTER (WHERE l.predicate = 'deleted'),
	   min(l."timestamp"), max(l."timestamp"),
	   (array_agg(l.predicate ORDER BY l."timestamp" DESC, l.id DESC))[1],
	   count(*),
	   (array_agg(l.payload ORDER BY l."timestamp" DESC, l.id DESC))[1]
FROM cdviz.cdevents_lake AS l
WHERE l.subject = 'repository' AND l.predicate IN ('created', 'modified', 'deleted')
  AND l."timestamp" >= from_ts - lookback AND l."timestamp" < to_ts
GROUP BY l.subject_id
HAVING max(l."timestamp") >= from_ts
$$;

COMMENT ON FUNCTION cdviz.repositories_between(timestamptz, timestamptz, interval) IS
'cdviz: one row per repository with an event in [from_ts, to_ts): latest name, owner, uri (0.5 uri or 0.3/0.4 url), viewUrl, state (deleted when the latest event is a deletion, else active), created/modified/deleted times. Prunes partitions.';

CREATE VIEW cdviz.repositories AS
	SELECT * FROM cdviz.repositories_between('-infinity', 'infinity', '0');

COMMENT ON VIEW cdviz.repositories IS
'cdviz: every repository, one row each (columns: see cdviz.repositories_between).';

CREATE FUNCTION cdviz.branches_between(from_ts timestamptz, to_ts timestamptz,
									   lookback interval DEFAULT '7 days')
RETURNS TABLE (branch_id text, source text, repository_id text, repository_source text,
			   state text, created_at timestamptz, deleted_at timestamptz,
			   first_event_at timestamptz, last_event_at timestamptz, last_predicate text,
			   event_count bigint, last_payload jsonb)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT s.branch_id, s.source, s.repository_id, s.repository_source,
	   CASE s.last_predicate WHEN 'deleted' THEN 'deleted' ELSE 'active' END,
	   s.created_at, s.deleted_at, s.first_event_at, s.last_event_at, s.last_predicate,
	   s.event_count,
	   (SELECT l.payload FROM cdviz.cdevents_lake AS l
		WHERE l.id = s.last_event_id AND l."timestamp" = s.last_event_at)
FROM cdviz.branch_summaries AS s
WHERE s.first_event_at >= from_ts - lookback AND s.first_event_at < to_ts
  AND s.last_event_at >= from_ts
$$;

COMMENT ON FUNCTION cdviz.branches_between(timestamptz, timestamptz, interval) IS
'cdviz: one row per branch with an event in [from_ts, to_ts): repository, state (deleted or active, from its latest event), created/deleted times. Reads the summary kept at ingest (cdviz.branch_summaries): branches created at most lookback (default 7 days) before from_ts, with their whole lifecycle.';

CREATE VIEW cdviz.branches AS
	SELECT * FROM cdviz.branches_between('-infinity', 'infinity', '0');

COMMENT ON VIEW cdviz.branches IS
'cdviz: every branch, one row each (columns: see cdviz.branches_between).';

CREATE FUNCTION cdviz.environments_between(from_ts timestamptz, to_ts timestamptz,
										   lookback interval DEFAULT '30 days')
RETURNS TABLE (environment_id text, source text, name text, uri text, state text,
			   created_at timestamptz, modified_at timestamptz, deleted_at timestamptz,
			   first_event_at timestamptz, last_event_at timestamptz, last_predicate text,
			   event_count bigint, last_payload jsonb)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT l.subject_id,
	   max(l.payload #>> '{subject,source}'),
	   (array_agg(l.payload #>> '{subject,content,name}' ORDER BY l."timestamp" DESC, l.id DESC)
			FILTER (WHERE l.payload #> '{subject,content,name}' IS NOT NULL))[1],
	   (array_agg(coalesce(l.payload #>> '{subject,content,uri}', l.payload #>> '{subject,content,url}')
				  ORDER BY l."timestamp" DESC, l.id DESC)
			FILTER (WHERE coalesce(l.payload #> '{subject,content,uri}', l.payload #> '{subject,content,url}') IS NOT NULL))[1],
	   CASE (array_agg(l.predicate ORDER BY l."timestamp" DESC, l.id DESC))[1]
			WHEN 'deleted' THEN 'deleted' ELSE 'active' END,
	   min(l."timestamp") FILTER (WHERE l.predicate = 'created'),
	   max(l."timestamp") FILTER (WHERE l.predicate = 'modified'),
	   max(l."timestamp") FILTER (WHERE l.predicate = 'deleted'),
	   min(l."timestamp"), max(l."timestamp"),
	   (array_agg(l.predicate ORDER BY l."timestamp" DESC, l.id DESC))[1],
	   count(*),
	   (array_agg(l.payload ORDER BY l."timestamp" DESC, l.id DESC))[1]
FROM cdviz.cdevents_lake AS l
WHERE l.subject = 'environment' AND l.predicate IN ('created', 'modified', 'deleted')
  AND l."timestamp" >= from_ts - lookback AND l."timestamp" < to_ts
GROUP BY l.subject_id
HAVING max(l."timestamp") >= from_ts
$$;

COMMENT ON FUNCTION cdviz.environments_between(timestamptz, timestamptz, interval) IS
'cdviz: one row per environment with an event in [from_ts, to_ts): latest name and uri (uri or url), state (deleted or active), created/modified/deleted times. Prunes partitions.';

CREATE VIEW cdviz.environments AS
	SELECT * FROM cdviz.environments_between('-infinity', 'infinity', '0');

COMMENT ON VIEW cdviz.environments IS
'cdviz: every environment that had an environment event, one row each (columns: see cdviz.environments_between). Environments only named by deployments appear in cdviz.environment_inventory.';

-- A service exists per environment: one row per (service, environment),
-- read from the narrow environment_history kept at ingest (indexed on
-- valid_from) rather than from the lake; the lake is only read, by primary
-- key, for the source and payload of the latest event, and only when those
-- columns are selected.
CREATE FUNCTION cdviz.services_between(from_ts timestamptz, to_ts timestamptz,
									   lookback interval DEFAULT '0')
RETURNS TABLE (service_id text, environment_id text, source text,
			   first_deployed_at timestamptz, last_deployed_at timestamptz,
			   deployment_count bigint, rollback_count bigint, last_rolledback_at timestamptz,
			   last_removed_at timestamptz, last_published_at timestamptz,
			   last_artifact_id text, last_event_at timestamptz, last_predicate text,
			   event_count bigint, last_payload jsonb)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT s.service_id, s.environment_id,
	   (SELECT l.payload #>> '{subject,source}' FROM cdviz.cdevents_lake AS l
		WHERE l.id = k.event_id AND l."timestamp" = s.last_event_at),
	   s.first_deployed_at, s.last_deployed_at, s.deployment_count, s.rollback_count,
	   s.last_rolledback_at, s.last_removed_at, s.last_published_at,
	   (SELECT h.artifact_id FROM cdviz.environment_history AS h
		WHERE h.environment_id = s.environment_id AND h.service_id = s.service_id
		  AND h.valid_from >= from_ts - lookback AND h.valid_from < to_ts
		  AND h.predicate IN ('deployed', 'upgraded', 'rolledback')
		ORDER BY h.valid_from DESC, h.event_id DESC
		LIMIT 1),
	   s.last_event_at, k.predicate, s.event_count,
	   (SELECT l.payload FROM cdviz.cdevents_lake AS l
		WHERE l.id = k.event_id AND l."timestamp" = s.last_event_at)
-- counts first, hashed per key (no ordered aggregate: nothing to sort),
-- then the latest event of each key by one descent of the history's key
-- index
FROM (SELECT h.service_id, h.environment_id,
			 min(h.valid_from) FILTER (WHERE h.predicate IN ('deployed', 'upgraded')) AS first_deployed_at,
			 max(h.valid_from) FILTER (WHERE h.predicate IN ('deployed', 'upgraded')) AS last_deployed_at,
			 count(*) FILTER (WHERE h.predicate IN ('deployed', 'upgraded')) AS deployment_count,
			 count(*) FILTER (WHERE h.predicate = 'rolledback') AS rollback_count,
			 max(h.valid_from) FILTER (WHERE h.predicate = 'rolledback') AS last_rolledback_at,
			 max(h.valid_from) FILTER (WHERE h.predicate = 'removed') AS last_removed_at,
			 max(h.valid_from) FILTER (WHERE h.predicate = 'published') AS last_published_at,
			 max(h.valid_from) AS last_event_at,
			 count(*) AS event_count
	  FROM cdviz.environment_history AS h
	  WHERE h.valid_from >= from_ts - lookback AND h.valid_from < to_ts
	  GROUP BY h.service_id, h.environment_id
	  HAVING max(h.valid_from) >= from_ts) AS s
CROSS JOIN LATERAL (
	SELECT h.event_id, h.predicate FROM cdviz.environment_history AS h
	WHERE h.environment_id = s.environment_id AND h.service_id = s.service_id
	  AND h.valid_from = s.last_event_at
	ORDER BY h.event_id DESC
	LIMIT 1) AS k
$$;

COMMENT ON FUNCTION cdviz.services_between(timestamptz, timestamptz, interval) IS
'cdviz: one row per (service, environment) with a service event in [from_ts, to_ts): deployments (deployed + upgraded) and rollbacks in the scanned range, first/last deployment, last removal and publication, the artifact of the latest deployment-like event. Counts cover [from_ts - lookback, to_ts) (lookback defaults to 0). Reads cdviz.environment_history. What runs now: cdviz.environment_inventory.';

CREATE VIEW cdviz.services AS
	SELECT * FROM cdviz.services_between('-infinity', 'infinity', '0');

COMMENT ON VIEW cdviz.services IS
'cdviz: every (service, environment) pair ever seen, with its whole-history deployment counts (columns: see cdviz.services_between).';

CREATE FUNCTION cdviz.incidents_between(from_ts timestamptz, to_ts timestamptz,
										lookback interval DEFAULT '30 days')
RETURNS TABLE (incident_id text, source text, environment_id text, service_id text,
			   artifact_id text, description text, ticket_uri text, state text,
			   detected_at timestamptz, reported_at timestamptz, resolved_at timestamptz,
			   time_to_resolve interval, chain_id text, first_event_at timestamptz,
			   last_event_at timestamptz, last_predicate text, event_count bigint,
			   last_payload jsonb)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT s.incident_id, s.source, s.environment_id, s.service_id, s.artifact_id, s.description,
	   s.ticket_uri,
	   CASE WHEN s.resolved_at IS NOT NULL THEN 'resolved' ELSE 'open' END,
	   s.detected_at, s.reported_at, s.resolved_at,
	   s.resolved_at - LEAST(s.detected_at, s.reported_at),
	   s.chain_id,
	   s.first_event_at, s.last_event_at, s.last_predicate, s.event_count,
	   (SELECT l.payload FROM cdviz.cdevents_lake AS l
		WHERE l.id = s.last_event_id AND l."timestamp" = s.last_event_at)
FROM cdviz.incident_summaries AS s
WHERE s.first_event_at >= from_ts - lookback AND s.first_event_at < to_ts
  AND s.last_event_at >= from_ts
$$;

COMMENT ON FUNCTION cdviz.incidents_between(timestamptz, timestamptz, interval) IS
'cdviz: one row per incident with an event in [from_ts, to_ts): environment, service, artifact, latest description, ticket uri, state (resolved or open), detected/reported/resolved times, time_to_resolve (resolved minus the earlier of detected and reported). Reads cdviz.incident_summaries: incidents whose first event is at most lookback (30 days) before from_ts, with their whole history.';

CREATE VIEW cdviz.incidents AS
	SELECT * FROM cdviz.incidents_between('-infinity', 'infinity', '0');

COMMENT ON VIEW cdviz.incidents IS
'cdviz: every incident, one row each (columns: see cdviz.incidents_between).';

CREATE FUNCTION cdviz.tickets_between(from_ts timestamptz, to_ts timestamptz,
									  lookback interval DEFAULT '30 days')
RETURNS TABLE (ticket_id text, source text, summary text, ticket_type text, ticket_group text,
			   creator text, assignees jsonb, priority text, labels jsonb, milestone text,
			   uri text, resolution text, updated_by text, state text, created_at timestamptz,
			   last_updated_at timestamptz, closed_at timestamptz, chain_id text,
			   first_event_at timestamptz, last_event_at timestamptz, last_predicate text,
			   event_count bigint, last_payload jsonb)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT l.subject_id,
	   max(l.payload #>> '{subject,source}'),
	   (array_agg(l.payload #>> '{subject,content,summary}' ORDER BY l."timestamp" DESC, l.id DESC)
			FILTER (WHERE l.payload #> '{subject,content,summary}' IS NOT NULL))[1],
	   (array_agg(l.payload #>> '{subject,content,ticketType}' ORDER BY l."timestamp" DESC, l.id DESC)
			FILTER (WHERE l.payload #> '{subject,content,ticketType}' IS NOT NULL))[1],
	   (array_agg(l.payload #>> '{subject,content,group}' ORDER BY l."timestamp" DESC, l.id DESC)
			FILTER (WHERE l.payload #> '{subject,content,group}' IS NOT NULL))[1],
	   max(l.payload #>> '{subject,content,creator}'),
	   (array_agg(l.payload #> '{subject,content,assignees}' ORDER BY l."timestamp" DESC, l.id DESC)
			FILTER (WHERE l.payload #> '{subject,content,assignees}' IS NOT NULL))[1],
	   (array_agg(l.payload #>> '{subject,content,priority}' ORDER BY l."timestamp" DESC, l.id DESC)
			FILTER (WHERE l.payload #> '{subject,content,priority}' IS NOT NULL))[1],
	   (array_agg(l.payload #> '{subject,content,labels}' ORDER BY l."timestamp" DESC, l.id DESC)
			FILTER (WHERE l.payload #> '{subject,content,labels}' IS NOT NULL))[1],
	   (array_agg(l.payload #>> '{subject,content,milestone}' ORDER BY l."timestamp" DESC, l.id DESC)
			FILTER (WHERE l.payload #> '{subject,content,milestone}' IS NOT NULL))[1],
	   max(l.payload #>> '{subject,content,uri}'),
	   max(l.payload #>> '{subject,content,resolution}') FILTER (WHERE l.predicate = 'closed'),
	   (array_agg(l.payload #>> '{subject,content,updatedBy}' ORDER BY l."timestamp" DESC, l.id DESC)
			FILTER (WHERE l.payload #> '{subject,content,updatedBy}' IS NOT NULL))[1],
	   CASE WHEN bool_or(l.predicate = 'closed') THEN 'closed' ELSE 'open' END,
	   min(l."timestamp") FILTER (WHERE l.predicate = 'created'),
	   max(l."timestamp") FILTER (WHERE l.predicate = 'updated'),
	   max(l."timestamp") FILTER (WHERE l.predicate = 'closed'),
	   max(l.chain_id),
	   min(l."timestamp"), max(l."timestamp"),
	   (array_agg(l.predicate ORDER BY l."timestamp" DESC, l.id DESC))[1],
	   count(*),
	   (array_agg(l.payload ORDER BY l."timestamp" DESC, l.id DESC))[1]
FROM cdviz.cdevents_lake AS l
WHERE l.subject = 'ticket' AND l.predicate IN ('created', 'updated', 'closed')
  AND l."timestamp" >= from_ts - lookback AND l."timestamp" < to_ts
GROUP BY l.subject_id
HAVING max(l."timestamp") >= from_ts
$$;

COMMENT ON FUNCTION cdviz.tickets_between(timestamptz, timestamptz, interval) IS
'cdviz: one row per ticket with an event in [from_ts, to_ts): latest summary, type, group (ticket_group), creator, assignees, priority, labels, milestone, uri, resolution, updated_by; state (closed or open); created/last updated/closed times. Read back to from_ts - lookback (30 days); prunes partitions.';

CREATE VIEW cdviz.tickets AS
	SELECT * FROM cdviz.tickets_between('-infinity', 'infinity', '0');

COMMENT ON VIEW cdviz.tickets IS
'cdviz: every ticket, one row each (columns: see cdviz.tickets_between).';
-- Read API, part 4: deployments and what runs where.

-- One row per service event, read from the narrow environment_history kept
-- at ingest rather than from the lake: "timestamp" is its indexed
-- valid_from and environment_id an indexed column, so windows and
-- environment filters cost a range scan of small rows.  The package columns
-- and the columns only the lake has are scalar subqueries (purl parsing,
-- lake lookup by primary key), evaluated only when selected.
CREATE VIEW cdviz.deployments AS
SELECT h.event_id,
	   h.valid_from AS "timestamp",
	   h.predicate AS action,
	   h.environment_id,
	   h.service_id,
	   h.artifact_id,
	   (SELECT p.purl_type FROM cdviz.purl_parse(h.artifact_id) AS p) AS package_type,
	   (SELECT p.namespace FROM cdviz.purl_parse(h.artifact_id) AS p) AS package_namespace,
	   (SELECT p.name FROM cdviz.purl_parse(h.artifact_id) AS p) AS package_name,
	   (SELECT p.version FROM cdviz.purl_parse(h.artifact_id) AS p) AS package_version,
	   h.context_id,
	   (SELECT l.context_source FROM cdviz.cdevents_lake AS l
		WHERE l.id = h.event_id AND l."timestamp" = h.valid_from) AS context_source,
	   (SELECT l.chain_id FROM cdviz.cdevents_lake AS l
		WHERE l.id = h.event_id AND l."timestamp" = h.valid_from) AS chain_id,
	   (SELECT l.spec_version FROM cdviz.cdevents_lake AS l
		WHERE l.id = h.event_id AND l."timestamp" = h.valid_from) AS spec_version,
	   (SELECT l.payload FROM cdviz.cdevents_lake AS l
		WHERE l.id = h.event_id AND l."timestamp" = h.valid_from) AS payload
FROM cdviz.environment_history AS h;

COMMENT ON VIEW cdviz.deployments IS
'cdviz: every service deployed/upgraded/rolledback/removed/published event (action) naming an environment, with environment, service, artifact id and the package type, namespace, name and version parsed from the artifact purl; context_source, chain_id, spec_version and payload are fetched from the lake only when selected. A WHERE on "timestamp" (and on environment_id) is an index range scan: WHERE "timestamp" >= now() - interval ''7 days''.';

CREATE VIEW cdviz.environment_inventory AS
SELECT s.environment_id, s.service_id, s.artifact_id,
	   (SELECT p.purl_type FROM cdviz.purl_parse(s.artifact_id) AS p) AS package_type,
	   (SELECT p.namespace FROM cdviz.purl_parse(s.artifact_id) AS p) AS package_namespace,
	   (SELECT p.name FROM cdviz.purl_parse(s.artifact_id) AS p) AS package_name,
	   (SELECT p.version FROM cdviz.purl_parse(s.artifact_id) AS p) AS version,
	   s.deployed_at, s.predicate AS deployed_by, s.previous_artifact_id,
	   s.event_id, s.context_id
FROM cdviz.environment_state AS s
WHERE s.artifact_id IS NOT NULL;

COMMENT ON VIEW cdviz.environment_inventory IS
'cdviz: what runs now, one row per (environment, service): artifact, package name and version from its purl, deployed_at and the predicate that put it there (deployed, upgraded or rolledback), the artifact that ran before, and the lake id and context id of that event. Read from cdviz.environment_state, kept at ingest: its cost does not grow with the lake. Out-of-order delivery safe; a service whose latest event is "removed" is absent.';

-- The history is small and indexed on (environment_id, service_id,
-- valid_from): one descent per key known to the state table, whatever the
-- size of the lake.
CREATE FUNCTION cdviz.environment_inventory_at(at_ts timestamptz)
RETURNS TABLE (environment_id text, service_id text, artifact_id text, package_type text,
			   package_namespace text, package_name text, version text,
			   deployed_at timestamptz, deployed_by text, previous_artifact_id text,
			   event_id bigint, context_id text)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT k.environment_id, k.service_id, cur.artifact_id,
	   (SELECT p.purl_type FROM cdviz.purl_parse(cur.artifact_id) AS p),
	   (SELECT p.namespace FROM cdviz.purl_parse(cur.artifact_id) AS p),
	   (SELECT p.name FROM cdviz.purl_parse(cur.artifact_id) AS p),
	   (SELECT p.version FROM cdviz.purl_parse(cur.artifact_id) AS p),
	   cur.valid_from, cur.predicate, prev.artifact_id, cur.event_id, cur.context_id
FROM cdviz.environment_state AS k
CROSS JOIN LATERAL (
	SELECT h.* FROM cdviz.environment_history AS h
	WHERE h.environment_id = k.environment_id AND h.service_id = k.service_id
	  AND h.valid_from <= at_ts AND h.predicate <> 'published'
	ORDER BY h.valid_from DESC, h.event_id DESC
	LIMIT 1) AS cur
LEFT JOIN LATERAL (
	SELECT h.artifact_id FROM cdviz.environment_history AS h
	WHERE h.environment_id = k.environment_id AND h.service_id = k.service_id
	  AND h.predicate IN ('deployed', 'upgraded', 'rolledback')
	  AND (h.valid_from, h.event_id) < (cur.valid_from, cur.event_id)
	  AND h.artifact_id IS DISTINCT FROM cur.artifact_id
	ORDER BY h.valid_from DESC, h.event_id DESC
	LIMIT 1) AS prev ON true
WHERE cur.predicate <> 'removed'
$$;

COMMENT ON FUNCTION cdviz.environment_inventory_at(timestamptz) IS
'cdviz: what ran at at_ts, same columns as cdviz.environment_inventory: for each (environment, service) the latest deployed/upgraded/rolledback/removed event with timestamp <= at_ts, unless it is a removal. Reads cdviz.environment_history, which retention does not prune.';
-- Read API, part 5: the four DORA metrics.
--
-- Each function takes a time range [from_ts, to_ts) and optional environment
-- and service ids (NULL: all), and returns the value, the sample it was
-- computed from and a performance tier.  The tiers turn the clusters of the
-- 2023 Accelerate State of DevOps report into thresholds; they are listed in
-- cdviz.dora_thresholds so that dashboards can show them.  DORA speaks of
-- production: pass your production environment id to compare with its tiers.
--
-- The deployment metrics read the tables kept at ingest (30_state.sql), never
-- the whole lake: environment_history by valid_from, and first_deployments
-- by deployed_at, whose rows already carry the time of their change.

CREATE VIEW cdviz.dora_thresholds (metric, tier, rule) AS
VALUES
	('deployment_frequency', 'elite', 'at least 1 deployment per day per service (on demand)'),
	('deployment_frequency', 'high', 'at least 1 per week per service'),
	('deployment_frequency', 'medium', 'at least 1 per month (30 days) per service'),
	('deployment_frequency', 'low', 'less than 1 per month per service'),
	('lead_time_for_changes', 'elite', 'median under 1 day'),
	('lead_time_for_changes', 'high', 'median under 1 week'),
	('lead_time_for_changes', 'medium', 'median under 1 month (30 days)'),
	('lead_time_for_changes', 'low', 'median of 1 month or more'),
	('change_failure_rate', 'elite', 'at most 5%'),
	('change_failure_rate', 'high', 'at most 10%'),
	('change_failure_rate', 'medium', 'at most 15%'),
	('change_failure_rate', 'low', 'over 15%'),
	('time_to_restore', 'elite', 'median under 1 hour'),
	('time_to_restore', 'high', 'median under 1 day'),
	('time_to_restore', 'medium', 'median under 1 week'),
	('time_to_restore', 'low', 'median of 1 week or more');

COMMENT ON VIEW cdviz.dora_thresholds IS
'cdviz: the DORA tier thresholds the cdviz.dora_* functions apply (after the 2023 Accelerate State of DevOps report clusters); boundaries belong to the better tier';

CREATE FUNCTION cdviz.dora_deployment_frequency(from_ts timestamptz, to_ts timestamptz,
												environment text DEFAULT NULL,
												service text DEFAULT NULL)
RETURNS TABLE (deployments bigint, services bigint, days numeric, per_day numeric,
			   per_week numeric, per_day_per_service numeric, deployment_days bigint,
			   sample_size bigint, tier text)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT d.n, d.nsvc, round(d.days, 3),
	   round(d.n / d.days, 3), round(d.n * 7 / d.days, 3),
	   round(d.n / d.days / greatest(d.nsvc, 1), 3),
	   d.ndays, d.n,
	   CASE WHEN d.n / d.days / greatest(d.nsvc, 1) >= 1 THEN 'elite'
			WHEN d.n * 7 / d.days / greatest(d.nsvc, 1) >= 1 THEN 'high'
			WHEN d.n * 30 / d.days / greatest(d.nsvc, 1) >= 1 THEN 'medium'
			ELSE 'low' END
FROM (SELECT count(*) AS n,
			 count(DISTINCT h.service_id) AS nsvc,
			 count(DISTINCT (h.valid_from AT TIME ZONE 'UTC')::date) AS ndays,
			 extract(epoch FROM to_ts - from_ts) / 86400 AS days
	  FROM cdviz.environment_history AS h
	  WHERE h.valid_from >= from_ts AND h.valid_from < to_ts
		AND h.predicate IN ('deployed', 'upgraded')
		AND (environment IS NULL OR h.environment_id = environment)
		AND (service IS NULL OR h.service_id = service)) AS d
WHERE d.days > 0
$$;

COMMENT ON FUNCTION cdviz.dora_deployment_frequency(timestamptz, timestamptz, text, text) IS
'cdviz DORA deployment frequency over [from_ts, to_ts), optionally for one environment and/or service: deployments (service deployed + upgraded events; rollbacks and removals are not deliveries), the distinct services deployed, per_day and per_week for the whole scope, per_day_per_service, deployment_days (UTC days with at least one deployment), sample_size (= deployments) and the tier, judged on per_day_per_service: elite >= 1/day, high >= 1/week, medium >= 1/30 days, else low. Limit: a service that never deployed in the range is not in the average.';

CREATE FUNCTION cdviz.dora_lead_time(from_ts timestamptz, to_ts timestamptz,
									 environment text DEFAULT NULL,
									 service text DEFAULT NULL)
RETURNS TABLE (median interval, p90 interval, sample_size bigint, unmatched bigint, tier text)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY s.lead_time) FILTER (WHERE s.lead_time >= interval '0'),
	   percentile_cont(0.9) WITHIN GROUP (ORDER BY s.lead_time) FILTER (WHERE s.lead_time >= interval '0'),
	   count(*) FILTER (WHERE s.lead_time >= interval '0'),
	   count(*) FILTER (WHERE s.lead_time IS NULL OR s.lead_time < interval '0'),
	   CASE WHEN count(*) FILTER (WHERE s.lead_time >= interval '0') = 0 THEN NULL
			WHEN percentile_cont(0.5) WITHIN GROUP (ORDER BY s.lead_time) FILTER (WHERE s.lead_time >= interval '0') < interval '1 day' THEN 'elite'
			WHEN percentile_cont(0.5) WITHIN GROUP (ORDER BY s.lead_time) FILTER (WHERE s.lead_time >= interval '0') < interval '7 days' THEN 'high'
			WHEN percentile_cont(0.5) WITHIN GROUP (ORDER BY s.lead_time) FILTER (WHERE s.lead_time >= interval '0') < interval '30 days' THEN 'medium'
			ELSE 'low' END
FROM (SELECT f.deployed_at - f.changed_at AS lead_time
	  FROM cdviz.first_deployments AS f
	  WHERE f.deployed_at >= from_ts AND f.deployed_at < to_ts
		AND (environment IS NULL OR f.environment_id = environment)
		AND (service IS NULL OR f.service_id = service)) AS s
$$;

COMMENT ON FUNCTION cdviz.dora_lead_time(timestamptz, timestamptz, text, text) IS
'cdviz DORA lead time for changes over [from_ts, to_ts), optionally for one environment and/or service: for every artifact whose first deployed/upgraded event in an environment falls in the range, the time from its change (change.merged, else change.created) to that first deployment; the change is the one named by the artifact''s artifact.packaged event (content.change.id, matched on id alone). Returns median and p90 (percentile_cont), sample_size, unmatched (first deployments without a packaged event, a known change, or with the change after the deployment) and the tier on the median: elite < 1 day, high < 1 week, medium < 30 days, else low. Without an environment filter each environment counts its own first deployment.';

-- Each deployment owns the events of its (environment, service) up to the
-- next deployment there.  Failure signals (rollbacks from the history,
-- incidents' first detected and reported times from cdviz.incident_summaries,
-- found through its last_event_at index) are few:
-- each is charged to the latest deployment at or before it, found by one
-- descent of the (environment_id, service_id, valid_from) index, so the
-- deployments themselves are only counted, never sorted.
CREATE FUNCTION cdviz.dora_failed_deployments(from_ts timestamptz, to_ts timestamptz,
											  environment text DEFAULT NULL,
											  service text DEFAULT NULL)
RETURNS TABLE (event_id bigint)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
-- A signal is charged to the latest deployment at or before it, so a
-- signal after a key's first deployment at or after to_ts can only fail
-- that one or a later one: none of the range.  The horizon is the latest
-- such first deployment over the keys in scope (infinity when one key has
-- none): signals after it are not looked at.  For a range in the past
-- that is hours of signals instead of everything up to now.
WITH horizon AS (
	SELECT coalesce(max(coalesce(n.valid_from, 'infinity')), 'infinity') AS ts
	FROM cdviz.environment_state AS k
	LEFT JOIN LATERAL (
		SELECT h.valid_from FROM cdviz.environment_history AS h
		WHERE h.environment_id = k.environment_id AND h.service_id = k.service_id
		  AND h.valid_from >= to_ts AND h.predicate IN ('deployed', 'upgraded')
		ORDER BY h.valid_from
		LIMIT 1) AS n ON true
	WHERE (environment IS NULL OR k.environment_id = environment)
	  AND (service IS NULL OR k.service_id = service)
), signals AS (
	SELECT h.environment_id, h.service_id, h.valid_from AS ts
	FROM cdviz.environment_history AS h
	WHERE h.valid_from >= from_ts AND h.predicate = 'rolledback'
	  AND h.valid_from <= (SELECT ts FROM horizon)
	  AND (environment IS NULL OR h.environment_id = environment)
	  AND (service IS NULL OR h.service_id = service)
	UNION ALL
	SELECT i.environment_id, i.service_id, x.ts
	FROM cdviz.incident_summaries AS i
	CROSS JOIN LATERAL (VALUES (i.detected_at), (i.reported_at)) AS x(ts)
	WHERE i.last_event_at >= from_ts AND x.ts >= from_ts
	  AND x.ts <= (SELECT ts FROM horizon)
	  AND i.service_id IS NOT NULL AND i.environment_id IS NOT NULL
	  AND (environment IS NULL OR i.environment_id = environment)
	  AND (service IS NULL OR i.service_id = service)
), failed AS (
	SELECT DISTINCT d.event_id
	FROM signals AS s
	CROSS JOIN LATERAL (
		SELECT h.event_id, h.valid_from
		FROM cdviz.environment_history AS h
		WHERE h.environment_id = s.environment_id AND h.service_id = s.service_id
		  AND h.valid_from <= s.ts AND h.predicate IN ('deployed', 'upgraded')
		ORDER BY h.valid_from DESC, h.event_id DESC
		LIMIT 1) AS d
	WHERE d.valid_from >= from_ts AND d.valid_from < to_ts
)
SELECT f.event_id FROM failed AS f
$$;

COMMENT ON FUNCTION cdviz.dora_failed_deployments(timestamptz, timestamptz, text, text) IS
'cdviz DORA: the environment_history event ids of the deployments in [from_ts, to_ts) (optionally of one environment and/or service) that failed: a service.rolledback or an incident detected/reported on that service and environment followed them before the next deployment there. What cdviz.dora_change_failure_rate and cdviz.dora_change_failures count. Example: SELECT count(*) FROM cdviz.dora_failed_deployments(now() - interval ''30 days'', now(), ''prod'');';

CREATE FUNCTION cdviz.dora_change_failures(from_ts timestamptz, to_ts timestamptz,
										   environment text DEFAULT NULL,
										   service text DEFAULT NULL)
RETURNS TABLE (event_id bigint, environment_id text, service_id text, deployed_at timestamptz,
			   failed boolean)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT h.event_id, h.environment_id, h.service_id, h.valid_from,
	   h.event_id IN (SELECT f.event_id FROM cdviz.dora_failed_deployments(from_ts, to_ts, environment, service) AS f)
FROM cdviz.environment_history AS h
WHERE h.valid_from >= from_ts AND h.valid_from < to_ts
  AND h.predicate IN ('deployed', 'upgraded')
  AND (environment IS NULL OR h.environment_id = environment)
  AND (service IS NULL OR h.service_id = service)
$$;

COMMENT ON FUNCTION cdviz.dora_change_failures(timestamptz, timestamptz, text, text) IS
'cdviz DORA: every deployment (service deployed or upgraded event) in [from_ts, to_ts), optionally of one environment and/or service, with failed as cdviz.dora_failed_deployments says. A deployment''s verdict does not depend on the range asked, so one call over a long range serves rates over its sub-ranges (a trailing window per day). Example: SELECT date_trunc(''day'', deployed_at), count(*) FILTER (WHERE failed), count(*) FROM cdviz.dora_change_failures(now() - interval ''30 days'', now(), ''prod'') GROUP BY 1;';

CREATE FUNCTION cdviz.dora_change_failure_rate(from_ts timestamptz, to_ts timestamptz,
											   environment text DEFAULT NULL,
											   service text DEFAULT NULL)
RETURNS TABLE (rate numeric, failed bigint, deployments bigint, sample_size bigint, tier text)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
-- counted apart: the deployments from dora_change_failures without its
-- verdict column (an index-only scan), the failed ones from the signals
SELECT round(f.n::numeric / nullif(t.n, 0), 4), f.n, t.n, t.n,
	   CASE WHEN t.n = 0 THEN NULL
			WHEN f.n::numeric / t.n <= 0.05 THEN 'elite'
			WHEN f.n::numeric / t.n <= 0.10 THEN 'high'
			WHEN f.n::numeric / t.n <= 0.15 THEN 'medium'
			ELSE 'low' END
FROM (SELECT count(*) AS n
	  FROM cdviz.dora_change_failures(from_ts, to_ts, environment, service)) AS t,
	 (SELECT count(*) AS n
	  FROM cdviz.dora_failed_deployments(from_ts, to_ts, environment, service)) AS f
$$;

COMMENT ON FUNCTION cdviz.dora_change_failure_rate(timestamptz, timestamptz, text, text) IS
'cdviz DORA change failure rate over [from_ts, to_ts), optionally for one environment and/or service: the share of deployments (deployed + upgraded events in the range) followed, before the next deployment of the same service in the same environment, by a service.rolledback or by an incident detected/reported on that service and environment. Returns rate (0..1), failed, deployments (= sample_size) and the tier: elite <= 5%, high <= 10%, medium <= 15%, else low. Limits: an incident without service or environment cannot be attributed and is ignored; an incident signals once at its first detected and once at its first reported event; a failure signal is looked for until the next deployment even after to_ts, so a recent deployment can still turn failed later.';

CREATE FUNCTION cdviz.dora_time_to_restore(from_ts timestamptz, to_ts timestamptz,
										   environment text DEFAULT NULL,
										   service text DEFAULT NULL)
RETURNS TABLE (median interval, p90 interval, sample_size bigint, tier text)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY i.time_to_resolve),
	   percentile_cont(0.9) WITHIN GROUP (ORDER BY i.time_to_resolve),
	   count(*),
	   CASE WHEN count(*) = 0 THEN NULL
			WHEN percentile_cont(0.5) WITHIN GROUP (ORDER BY i.time_to_resolve) < interval '1 hour' THEN 'elite'
			WHEN percentile_cont(0.5) WITHIN GROUP (ORDER BY i.time_to_resolve) < interval '1 day' THEN 'high'
			WHEN percentile_cont(0.5) WITHIN GROUP (ORDER BY i.time_to_resolve) < interval '7 days' THEN 'medium'
			ELSE 'low' END
FROM (SELECT s.environment_id, s.service_id,
			 s.resolved_at - LEAST(s.detected_at, s.reported_at) AS time_to_resolve
	  FROM cdviz.incident_summaries AS s
	  WHERE s.resolved_at >= from_ts AND s.resolved_at < to_ts) AS i
WHERE i.time_to_resolve IS NOT NULL
  AND (environment IS NULL OR i.environment_id = environment)
  AND (service IS NULL OR i.service_id = service)
$$;

COMMENT ON FUNCTION cdviz.dora_time_to_restore(timestamptz, timestamptz, text, text) IS
'cdviz DORA time to restore service over [from_ts, to_ts), optionally for one environment and/or service: for every incident resolved in the range, resolved minus the earlier of detected and reported (see cdviz.incidents). Returns median and p90, sample_size and the tier on the median: elite < 1 hour, high < 1 day, medium < 1 week, else low. Reads cdviz.incident_summaries by resolved_at. Limit: an incident resolved without a detected/reported event is left out.';

-- The four metrics for every environment, one row each: what a "DORA per
-- environment" table shows.  Calling the functions above laterally, once
-- per environment, passes the environment as a parameter, which the
-- planner cannot fold into the (environment_id, time) index ranges: every
-- call then reads the window of every environment.  Here each environment
-- gets its own statement with the id as a literal, planned for it.
CREATE FUNCTION cdviz.dora_by_environment(from_ts timestamptz, to_ts timestamptz,
										  service text DEFAULT NULL)
RETURNS TABLE (environment_id text, deployments bigint, per_day_per_service numeric,
			   frequency_tier text, lead_time_median interval, lead_time_p90 interval,
			   lead_time_tier text, change_failure_rate numeric, failed_deployments bigint,
			   failure_rate_tier text, time_to_restore_median interval, incidents bigint,
			   restore_tier text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	env text;
BEGIN
	FOR env IN
		SELECT DISTINCT i.environment_id FROM cdviz.environment_inventory AS i ORDER BY 1
	LOOP
		RETURN QUERY EXECUTE format(
			'SELECT %1$L::text, df.deployments, df.per_day_per_service, df.tier,'
			' lt.median, lt.p90, lt.tier, cfr.rate, cfr.failed, cfr.tier,'
			' ttr.median, ttr.sample_size, ttr.tier'
			' FROM cdviz.dora_deployment_frequency($1, $2, %1$L, $3) AS df'
			' FULL JOIN cdviz.dora_lead_time($1, $2, %1$L, $3) AS lt ON true'
			' FULL JOIN cdviz.dora_change_failure_rate($1, $2, %1$L, $3) AS cfr ON true'
			' FULL JOIN cdviz.dora_time_to_restore($1, $2, %1$L, $3) AS ttr ON true', env)
			USING from_ts, to_ts, service;
	END LOOP;
END
$$;

COMMENT ON FUNCTION cdviz.dora_by_environment(timestamptz, timestamptz, text) IS
'cdviz DORA: the four metrics over [from_ts, to_ts) for every environment where a service runs (cdviz.environment_inventory), optionally for one service; one row per environment with the values and tiers of cdviz.dora_deployment_frequency, dora_lead_time, dora_change_failure_rate and dora_time_to_restore for that environment (same definitions). Example: SELECT environment_id, per_day_per_service, frequency_tier, lead_time_median, change_failure_rate, time_to_restore_median FROM cdviz.dora_by_environment(now() - interval ''30 days'', now());';
-- Read API, part 6: lineage through context.chainId and context.links.

CREATE FUNCTION cdviz.chain(chain text)
RETURNS TABLE (event_id bigint, "timestamp" timestamptz, type text, subject text,
			   predicate text, subject_id text, context_id text, context_source text,
			   payload jsonb)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT l.id, l."timestamp", l.type, l.subject, l.predicate, l.subject_id,
	   l.context_id, l.context_source, l.payload
FROM cdviz.cdevents_lake AS l
WHERE l.chain_id = chain
ORDER BY l."timestamp", l.id
$$;

COMMENT ON FUNCTION cdviz.chain(text) IS
'cdviz: the events of one chain (context.chainId), in timestamp order. Example: SELECT subject, predicate, "timestamp" FROM cdviz.chain(''4c8cb7dd-3448-41de-8768-eec704e2829b'')';

-- Walks cdviz.event_links from one event, in both directions, max_depth
-- hops away; an event is listed once, at its shortest distance.
CREATE FUNCTION cdviz.related(context text, max_depth int DEFAULT 1)
RETURNS TABLE (depth int, direction text, link_type text, link_kind text,
			   context_id text, event_id bigint, "timestamp" timestamptz, type text,
			   subject text, predicate text, subject_id text, payload jsonb)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
WITH RECURSIVE walk (context_id, depth, direction, link_type, link_kind, path) AS (
	SELECT context, 0, NULL::text, NULL::text, NULL::text, ARRAY[context]
	UNION ALL
	SELECT n.other, w.depth + 1, n.direction, n.link_type, n.link_kind, w.path || n.other
	FROM walk AS w
	CROSS JOIN LATERAL (
		SELECT k.linked_context_id AS other, 'outgoing' AS direction, k.link_type, k.link_kind
		FROM cdviz.event_links AS k
		WHERE k.context_id = w.context_id
		UNION ALL
		SELECT k.context_id, 'incoming', k.link_type, k.link_kind
		FROM cdviz.event_links AS k
		WHERE k.linked_context_id = w.context_id) AS n
	WHERE w.depth < max_depth AND n.other <> ALL (w.path)
), nearest AS (
	SELECT DISTINCT ON (w.context_id) w.*
	FROM walk AS w
	WHERE w.depth > 0
	ORDER BY w.context_id, w.depth, w.direction DESC
)
SELECT w.depth, w.direction, w.link_type, w.link_kind, w.context_id,
	   l.id, l."timestamp", l.type, l.subject, l.predicate, l.subject_id, l.payload
FROM nearest AS w
LEFT JOIN cdviz.cdevents_lake AS l ON l.context_id = w.context_id
ORDER BY w.depth, l."timestamp", w.context_id
$$;

COMMENT ON FUNCTION cdviz.related(text, int) IS
'cdviz: events linked to the event with context.id = context through context.links, both ways: outgoing (links this event carries: RELATION target, PATH/END from) and incoming (events whose links name it), up to max_depth hops (default 1), each once at its shortest depth. Event columns are NULL for a linked context id that is not in the lake.';
-- Read API, part 8: rejected input, for dashboards.
--
-- cdviz.rejected_events keeps the raw text of every input that was not a
-- valid event, which may hold anything a client sent (tokens included), so
-- cdviz_reader cannot read it.  What a dashboard needs is where bad input
-- came from, when, and why it was refused: these two views give that
-- without the raw body (only its size).  Both are plain views over the
-- dead-letter table, indexed on received_at, so a
-- WHERE received_at >= now() - interval '7 days' is an index range scan.

CREATE VIEW cdviz.rejected_inputs AS
SELECT r.id,
	   r.received_at,
	   r.origin,
	   r.origin_ref,
	   octet_length(r.raw) AS raw_bytes,
	   CASE WHEN jsonb_typeof(r.problems) = 'array' THEN jsonb_array_length(r.problems) END AS problem_count,
	   (SELECT string_agg(coalesce(p.value ->> 'path', '?') || ': ' || coalesce(p.value ->> 'message', p.value::text),
						  '; ' ORDER BY p.ordinality)
		FROM jsonb_array_elements(CASE WHEN jsonb_typeof(r.problems) = 'array' THEN r.problems
									   ELSE '[]'::jsonb END) WITH ORDINALITY AS p) AS summary,
	   r.problems,
	   CASE WHEN r.replayed_at IS NULL THEN 'pending' ELSE 'replayed' END AS state,
	   r.replayed_at,
	   r.replayed_event_id
FROM cdviz.rejected_events AS r;

COMMENT ON VIEW cdviz.rejected_inputs IS
'cdviz: rejected input without its raw text, one row per cdviz.rejected_events row: when (received_at), where from (origin: sql, http, fs, s3, nats, webhook; origin_ref: HTTP peer and path, file:line, S3 key, batch index), raw_bytes (size of the input), problem_count, summary ("path: message; ..."), problems (JSON array of {path, message}), state (pending or replayed), replayed_at and replayed_event_id. WHERE received_at >= ... is an index range scan.';

-- One row per problem: what goes wrong most often.
CREATE VIEW cdviz.rejected_input_problems AS
SELECT r.id AS rejected_id,
	   r.received_at,
	   r.origin,
	   p.ordinality::int AS problem_index,
	   p.value ->> 'path' AS path,
	   coalesce(p.value ->> 'message', p.value::text) AS message
FROM cdviz.rejected_events AS r
CROSS JOIN LATERAL jsonb_array_elements(CASE WHEN jsonb_typeof(r.problems) = 'array' THEN r.problems
											  ELSE '[]'::jsonb END) WITH ORDINALITY AS p;

COMMENT ON VIEW cdviz.rejected_input_problems IS
'cdviz: one row per problem of each rejected input (cdviz.rejected_events without the raw text): rejected_id, received_at, origin, problem_index (1-based), path (JSON path of the problem, "$" for the whole input) and message. Example: SELECT path, message, count(*) FROM cdviz.rejected_input_problems WHERE received_at >= now() - interval ''7 days'' GROUP BY 1, 2 ORDER BY 3 DESC';

GRANT SELECT ON cdviz.rejected_inputs, cdviz.rejected_input_problems TO cdviz_reader;
-- Read API, part 7: privileges.  cdviz_reader (what Grafana logs in as) may
-- read the read API and nothing else, and cannot write anything.  The lake
-- and the state tables are part of the API: the inlined *_between functions
-- run with the caller's privileges, which is what lets the planner see
-- through them.  The dead-letter table is not: it holds raw, possibly
-- sensitive, rejected input.  Read functions are not executable by PUBLIC,
-- so the grants below are the whole list.

GRANT SELECT ON
	cdviz.cdevents_lake,
	cdviz.environment_history, cdviz.environment_state, cdviz.first_deployments,
	cdviz.artifact_changes, cdviz.change_times, cdviz.event_links,
	cdviz.pipeline_run_summaries, cdviz.task_run_summaries, cdviz.build_summaries,
	cdviz.branch_summaries,
	cdviz.test_case_run_summaries, cdviz.test_suite_run_summaries, cdviz.artifact_summaries,
	cdviz.change_summaries, cdviz.incident_summaries, cdviz.event_counts_hourly,
	cdviz.test_case_outcomes_daily,
	cdviz.pipeline_runs, cdviz.task_runs, cdviz.builds, cdviz.test_case_runs,
	cdviz.test_suite_runs, cdviz.test_outputs, cdviz.artifacts, cdviz.changes,
	cdviz.repositories, cdviz.branches, cdviz.environments, cdviz.services,
	cdviz.incidents, cdviz.tickets, cdviz.deployments, cdviz.environment_inventory,
	cdviz.dora_thresholds
TO cdviz_reader;

REVOKE EXECUTE ON FUNCTION
	cdviz.lake_maintain(), cdviz._summaries_deferred(),
	cdviz.fold_queued_summaries(integer), cdviz.summaries_pending(),
	cdviz.summaries_fold(timestamptz, timestamptz), cdviz.rebuild_summaries(),
	cdviz.normalize_outcome(text), cdviz.purl_split(text),
	cdviz.percent_decode(text), cdviz.purl_parse(text),
	cdviz.pipeline_runs_between(timestamptz, timestamptz, interval),
	cdviz.task_runs_between(timestamptz, timestamptz, interval),
	cdviz.builds_between(timestamptz, timestamptz, interval),
	cdviz.test_case_runs_between(timestamptz, timestamptz, interval),
	cdviz.test_suite_runs_between(timestamptz, timestamptz, interval),
	cdviz.artifacts_between(timestamptz, timestamptz, interval),
	cdviz.changes_between(timestamptz, timestamptz, interval),
	cdviz.repositories_between(timestamptz, timestamptz, interval),
	cdviz.branches_between(timestamptz, timestamptz, interval),
	cdviz.environments_between(timestamptz, timestamptz, interval),
	cdviz.services_between(timestamptz, timestamptz, interval),
	cdviz.incidents_between(timestamptz, timestamptz, interval),
	cdviz.tickets_between(timestamptz, timestamptz, interval),
	cdviz.environment_inventory_at(timestamptz),
	cdviz.dora_deployment_frequency(timestamptz, timestamptz, text, text),
	cdviz.dora_lead_time(timestamptz, timestamptz, text, text),
	cdviz.dora_change_failure_rate(timestamptz, timestamptz, text, text),
	cdviz.dora_change_failures(timestamptz, timestamptz, text, text),
	cdviz.dora_failed_deployments(timestamptz, timestamptz, text, text),
	cdviz.dora_time_to_restore(timestamptz, timestamptz, text, text),
	cdviz.dora_by_environment(timestamptz, timestamptz, text),
	cdviz.chain(text), cdviz.related(text, int)
FROM PUBLIC;

GRANT EXECUTE ON FUNCTION
	cdviz.summaries_pending(),
	cdviz.normalize_outcome(text), cdviz.purl_split(text),
	cdviz.percent_decode(text), cdviz.purl_parse(text),
	cdviz.pipeline_runs_between(timestamptz, timestamptz, interval),
	cdviz.task_runs_between(timestamptz, timestamptz, interval),
	cdviz.builds_between(timestamptz, timestamptz, interval),
	cdviz.test_case_runs_between(timestamptz, timestamptz, interval),
	cdviz.test_suite_runs_between(timestamptz, timestamptz, interval),
	cdviz.artifacts_between(timestamptz, timestamptz, interval),
	cdviz.changes_between(timestamptz, timestamptz, interval),
	cdviz.repositories_between(timestamptz, timestamptz, interval),
	cdviz.branches_between(timestamptz, timestamptz, interval),
	cdviz.environments_between(timestamptz, timestamptz, interval),
	cdviz.services_between(timestamptz, timestamptz, interval),
	cdviz.incidents_between(timestamptz, timestamptz, interval),
	cdviz.tickets_between(timestamptz, timestamptz, interval),
	cdviz.environment_inventory_at(timestamptz),
	cdviz.dora_deployment_frequency(timestamptz, timestamptz, text, text),
	cdviz.dora_lead_time(timestamptz, timestamptz, text, text),
	cdviz.dora_change_failure_rate(timestamptz, timestamptz, text, text),
	cdviz.dora_change_failures(timestamptz, timestamptz, text, text),
	cdviz.dora_failed_deployments(timestamptz, timestamptz, text, text),
	cdviz.dora_time_to_restore(timestamptz, timestamptz, text, text),
	cdviz.dora_by_environment(timestamptz, timestamptz, text),
	cdviz.chain(text), cdviz.related(text, int)
TO cdviz_reader;

-- a writer may catch the summaries up for read-after-write
GRANT EXECUTE ON FUNCTION cdviz.fold_queued_summaries(integer), cdviz.summaries_pending()
TO cdviz_writer;
-- Sources polled by the cdviz poller worker: a folder and an S3 bucket.
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

-- One row per configured source: when it was polled and its last failure.
CREATE TABLE cdviz.source_polls (
	source			text PRIMARY KEY,
	kind			text NOT NULL CHECK (kind IN ('fs', 's3')),
	last_poll_at	timestamptz,
	last_success_at	timestamptz,
	last_error		text,
	last_error_at	timestamptz
);

COMMENT ON TABLE cdviz.source_polls IS
'cdviz: one row per polled source (folder path or s3://bucket/prefix): when it was last polled and why its last poll failed';
COMMENT ON COLUMN cdviz.source_polls.source IS 'the folder (cdviz.fs_path) or s3://bucket/prefix';
COMMENT ON COLUMN cdviz.source_polls.kind IS 'fs or s3';
COMMENT ON COLUMN cdviz.source_polls.last_poll_at IS 'start of the last poll';
COMMENT ON COLUMN cdviz.source_polls.last_success_at IS 'end of the last poll that could list the source';
COMMENT ON COLUMN cdviz.source_polls.last_error IS 'why the last poll failed (unreadable folder, S3 error...); NULL once a poll succeeds';
COMMENT ON COLUMN cdviz.source_polls.last_error_at IS 'when last_error happened';

CREATE VIEW cdviz.source_status AS
WITH items AS (
	SELECT source, count(*) AS items,
		   count(*) FILTER (WHERE status IN ('read', 'deleted', 'moved')) AS items_read,
		   count(*) FILTER (WHERE status = 'rejected') AS items_rejected,
		   sum(read_offset) AS bytes_read,
		   sum(events) AS events, sum(duplicates) AS duplicates, sum(rejected) AS rejected,
		   max(last_read_at) AS last_read_at,
		   (array_agg(path || ': ' || last_error ORDER BY last_error_at DESC)
				FILTER (WHERE last_error IS NOT NULL))[1] AS last_item_error,
		   max(last_error_at) AS last_item_error_at
	FROM cdviz.fs_files GROUP BY source
	UNION ALL
	SELECT source, count(*),
		   count(*) FILTER (WHERE status = 'read'),
		   count(*) FILTER (WHERE status = 'rejected'),
		   sum(read_offset), sum(events), sum(duplicates), sum(rejected),
		   max(last_read_at),
		   (array_agg('s3://' || bucket || '/' || key || ': ' || last_error ORDER BY last_error_at DESC)
				FILTER (WHERE last_error IS NOT NULL))[1],
		   max(last_error_at)
	FROM cdviz.s3_objects GROUP BY source
)
SELECT coalesce(p.source, i.source) AS source,
	   coalesce(p.kind, CASE WHEN i.source LIKE 's3://%' THEN 's3' ELSE 'fs' END) AS kind,
	   coalesce(i.items, 0) AS files,
	   coalesce(i.items_read, 0) AS files_read,
	   coalesce(i.items_rejected, 0) AS files_rejected,
	   coalesce(i.bytes_read, 0) AS bytes_read,
	   coalesce(i.events, 0) AS events,
	   coalesce(i.duplicates, 0) AS duplicates,
	   coalesce(i.rejected, 0) AS rejected,
	   i.last_read_at,
	   p.last_poll_at,
	   p.last_success_at,
	   coalesce(p.last_error, i.last_item_error) AS last_error,
	   CASE WHEN p.last_error IS NOT NULL THEN p.last_error_at ELSE i.last_item_error_at END AS last_error_at
FROM cdviz.source_polls p
FULL JOIN items i ON i.source = p.source;

COMMENT ON VIEW cdviz.source_status IS
'cdviz: per polled source (folder or s3://bucket/prefix): files or objects seen and read, events stored, duplicates, lines or elements rejected, when it was last read and polled, and the last error (of the source, else of one of its files)';
COMMENT ON COLUMN cdviz.source_status.source IS 'folder path or s3://bucket/prefix';
COMMENT ON COLUMN cdviz.source_status.kind IS 'fs or s3';
COMMENT ON COLUMN cdviz.source_status.files IS 'files or objects seen';
COMMENT ON COLUMN cdviz.source_status.files_read IS 'files or objects read to their end';
COMMENT ON COLUMN cdviz.source_status.files_rejected IS 'files or objects that were not JSON at all';
COMMENT ON COLUMN cdviz.source_status.bytes_read IS 'bytes consumed';
COMMENT ON COLUMN cdviz.source_status.events IS 'events stored';
COMMENT ON COLUMN cdviz.source_status.duplicates IS 'events read that the lake already had';
COMMENT ON COLUMN cdviz.source_status.rejected IS 'lines or elements sent to cdviz.rejected_events';
COMMENT ON COLUMN cdviz.source_status.last_read_at IS 'when a file or object was last read';
COMMENT ON COLUMN cdviz.source_status.last_poll_at IS 'when the source was last polled';
COMMENT ON COLUMN cdviz.source_status.last_success_at IS 'when a poll last listed the source successfully';
COMMENT ON COLUMN cdviz.source_status.last_error IS 'the source''s current error, else the latest error of one of its files';
COMMENT ON COLUMN cdviz.source_status.last_error_at IS 'when last_error happened';

GRANT SELECT ON cdviz.source_status TO cdviz_reader;
-- Sinks: where the cdviz dispatcher worker forwards stored events (HTTP
-- webhooks, NATS subjects, the server log), at least once, never skipping
-- one.
--
-- Why an outbox of transaction ids, and not "lake id > last delivered":
-- a lake id is taken from a sequence when the row is inserted, but the
-- transactions commit in another order.  A batch of 10,000 events that
-- took ids 1..10000 and commits after a single event that took id 10001
-- would be skipped by a reader that had already moved past 10001.  So the
-- statement trigger below writes one row per INSERT statement into
-- cdviz.lake_batches with the inserting transaction's id (xid8) and the
-- lake ids and timestamps of the statement.  The dispatcher reads the lake
-- in windows between two snapshots, as PgQ does: the events of the
-- transactions visible in the newer snapshot and not in the older one.
-- Once a transaction is visible in a snapshot, no event can join it, so a
-- window is a fixed set, read in (xid, batch, position) order; when it is
-- exhausted the newer snapshot becomes the older one.  A long transaction
-- of somebody else delays nothing: only the transactions that are still
-- running are left for a later window.  One row per statement (not per
-- event) keeps the cost to ingestion small; bench/dispatch.sh measures it.
-- While no sink exists the trigger writes nothing at all.

CREATE TABLE cdviz.sinks (
	id				integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	name			text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9_.-]{1,63}$'),
	kind			text NOT NULL CHECK (kind IN ('http', 'nats', 'log')),
	target			text NOT NULL,
	options			jsonb NOT NULL DEFAULT '{}',
	secret_keys		text[] NOT NULL DEFAULT '{}',
	type_pattern	text,
	source_pattern	text,
	predicate		text,
	paused			boolean NOT NULL DEFAULT false,
	start_at		timestamptz,
	created_at		timestamptz NOT NULL DEFAULT now(),
	updated_at		timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE cdviz.sinks IS
'cdviz: where the dispatcher forwards stored events; managed with cdviz.create_sink(), alter_sink(), drop_sink(), pause_sink(), resume_sink(). Secrets (token, hmac_secret) are kept apart in cdviz.sink_secrets.';
COMMENT ON COLUMN cdviz.sinks.id IS 'sink number';
COMMENT ON COLUMN cdviz.sinks.name IS 'sink name (letters, digits, _ . -)';
COMMENT ON COLUMN cdviz.sinks.kind IS 'http (POST to a URL), nats (publish to a subject on cdviz.nats_url) or log (one JSON line per event in the server log)';
COMMENT ON COLUMN cdviz.sinks.target IS 'http: the URL; nats: the subject or subject template ({subject}, {predicate}, {version} are replaced); log: a label';
COMMENT ON COLUMN cdviz.sinks.options IS 'options without secrets; http: mode (binary, structured, batch), batch_size, headers, timeout, initial_backoff, max_backoff; nats: jetstream (auto, always, never), timeout';
COMMENT ON COLUMN cdviz.sinks.secret_keys IS 'which secret options are set (their values are in cdviz.sink_secrets, readable by superusers only)';
COMMENT ON COLUMN cdviz.sinks.type_pattern IS 'filter: LIKE pattern on the event type, e.g. dev.cdevents.service.%; NULL matches every type';
COMMENT ON COLUMN cdviz.sinks.source_pattern IS 'filter: LIKE pattern on context.source; NULL matches every source';
COMMENT ON COLUMN cdviz.sinks.predicate IS 'filter: SQL boolean expression over the lake row (columns of cdviz.cdevents_lake, e.g. payload->''subject''->''content''->''environment''->>''id'' = ''prod''); NULL matches every event';
COMMENT ON COLUMN cdviz.sinks.paused IS 'a paused sink receives nothing; its events wait for resume_sink()';
COMMENT ON COLUMN cdviz.sinks.start_at IS 'backfill: events imported since this time and before the sink was created are delivered too; NULL: only events stored after creation';
COMMENT ON COLUMN cdviz.sinks.created_at IS 'when the sink was created';
COMMENT ON COLUMN cdviz.sinks.updated_at IS 'when the sink was last changed';

-- Secrets live in their own table on which nobody is granted anything:
-- cdviz_reader reads cdviz.sinks without ever seeing a token.
CREATE TABLE cdviz.sink_secrets (
	sink_id			integer PRIMARY KEY REFERENCES cdviz.sinks (id) ON DELETE CASCADE,
	secrets			jsonb NOT NULL
);
REVOKE ALL ON cdviz.sink_secrets FROM PUBLIC;

COMMENT ON TABLE cdviz.sink_secrets IS
'cdviz: secret options of the sinks (token, hmac_secret); superusers only';
COMMENT ON COLUMN cdviz.sink_secrets.sink_id IS 'cdviz.sinks.id';
COMMENT ON COLUMN cdviz.sink_secrets.secrets IS 'JSON object of the secret options';

-- The outbox: one row per INSERT statement into the lake (see the top).
CREATE TABLE cdviz.lake_batches (
	batch_id		bigint GENERATED ALWAYS AS IDENTITY,
	xid				xid8 NOT NULL,
	stored_at		timestamptz NOT NULL DEFAULT now(),
	ids				bigint[] NOT NULL,
	stamps			timestamptz[] NOT NULL,
	PRIMARY KEY (xid, batch_id)
);

COMMENT ON TABLE cdviz.lake_batches IS
'cdviz: outbox of the dispatcher — one row per statement that inserted into cdviz.cdevents_lake while a sink existed: the inserting transaction and the lake keys, in insertion order. Rows every sink has passed are deleted by the dispatcher.';
COMMENT ON COLUMN cdviz.lake_batches.batch_id IS 'statement number (orders the statements of one transaction)';
COMMENT ON COLUMN cdviz.lake_batches.xid IS 'the inserting (top-level) transaction';
COMMENT ON COLUMN cdviz.lake_batches.stored_at IS 'transaction time of the insert';
COMMENT ON COLUMN cdviz.lake_batches.ids IS 'lake ids of the statement, in insertion order';
COMMENT ON COLUMN cdviz.lake_batches.stamps IS 'lake timestamps of the same rows (the partition key, for lookups)';

CREATE FUNCTION cdviz.lake_record_batch()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	-- cdviz.create_sink() takes a SHARE lock on the lake before it takes
	-- its snapshot, so a writer that saw no sink here has committed
	-- before the sink's first snapshot: its events are not the sink's.
	IF EXISTS (SELECT FROM cdviz.sinks) THEN
		INSERT INTO cdviz.lake_batches (xid, ids, stamps)
		SELECT pg_current_xact_id(), array_agg(id), array_agg("timestamp")
		FROM new_events
		HAVING count(*) > 0;
	END IF;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION cdviz.lake_record_batch() IS
'cdviz: statement-level AFTER INSERT trigger of cdviz.cdevents_lake: records the statement''s transaction and lake keys in cdviz.lake_batches while a sink exists (SECURITY DEFINER so that writers need no privilege on it)';

CREATE TRIGGER lake_record_batch
	AFTER INSERT ON cdviz.cdevents_lake
	REFERENCING NEW TABLE AS new_events
	FOR EACH STATEMENT
	EXECUTE FUNCTION cdviz.lake_record_batch();

COMMENT ON TRIGGER lake_record_batch ON cdviz.cdevents_lake IS
'cdviz: fills the dispatcher''s outbox cdviz.lake_batches, one row per insert statement';

-- Per-sink progress, written by the dispatcher in the transaction that
-- follows each delivered chunk.  The window is (snap, next_snap]; pos is
-- the last (xid, batch, position) delivered inside it.
CREATE TABLE cdviz.sink_progress (
	sink_id			integer PRIMARY KEY REFERENCES cdviz.sinks (id) ON DELETE CASCADE,
	snap			pg_snapshot NOT NULL,
	next_snap		pg_snapshot,
	pos_xid			xid8,
	pos_batch		bigint,
	pos_ord			integer,
	backfill_until	bigint,
	backfill_pos	bigint,
	delivered		bigint NOT NULL DEFAULT 0,
	rejected		bigint NOT NULL DEFAULT 0,
	failures		bigint NOT NULL DEFAULT 0,
	last_delivered_id bigint,
	last_success_at	timestamptz,
	last_error		text,
	last_error_at	timestamptz
);

COMMENT ON TABLE cdviz.sink_progress IS
'cdviz: how far each sink has been delivered (written by the dispatcher after each delivered chunk); read it through cdviz.sink_status';
COMMENT ON COLUMN cdviz.sink_progress.sink_id IS 'cdviz.sinks.id';
COMMENT ON COLUMN cdviz.sink_progress.snap IS 'every event of a transaction visible in this snapshot is delivered (or filtered out)';
COMMENT ON COLUMN cdviz.sink_progress.next_snap IS 'the window being delivered: transactions visible here and not in snap';
COMMENT ON COLUMN cdviz.sink_progress.pos_xid IS 'window position: transaction of the last delivered event';
COMMENT ON COLUMN cdviz.sink_progress.pos_batch IS 'window position: its cdviz.lake_batches row';
COMMENT ON COLUMN cdviz.sink_progress.pos_ord IS 'window position: its place in that row (1-based)';
COMMENT ON COLUMN cdviz.sink_progress.backfill_until IS 'backfill: the highest lake id that existed at creation (NULL: no backfill)';
COMMENT ON COLUMN cdviz.sink_progress.backfill_pos IS 'backfill: the last lake id delivered';
COMMENT ON COLUMN cdviz.sink_progress.delivered IS 'events delivered (a redelivery after a crash counts again)';
COMMENT ON COLUMN cdviz.sink_progress.rejected IS 'events the sink refused for good (cdviz.rejected_deliveries)';
COMMENT ON COLUMN cdviz.sink_progress.failures IS 'failed delivery attempts that were retried';
COMMENT ON COLUMN cdviz.sink_progress.last_delivered_id IS 'lake id of the last delivered event';
COMMENT ON COLUMN cdviz.sink_progress.last_success_at IS 'when a delivery last succeeded';
COMMENT ON COLUMN cdviz.sink_progress.last_error IS 'why the last failed attempt failed';
COMMENT ON COLUMN cdviz.sink_progress.last_error_at IS 'when it failed';

-- Dead letters of the way out: events a sink refused for good.
CREATE TABLE cdviz.rejected_deliveries (
	id				bigserial PRIMARY KEY,
	sink_id			integer NOT NULL REFERENCES cdviz.sinks (id) ON DELETE CASCADE,
	event_id		bigint NOT NULL,
	event_timestamp	timestamptz NOT NULL,
	status			integer,
	response		text,
	rejected_at		timestamptz NOT NULL DEFAULT now(),
	retry_requested_at timestamptz,
	retried_at		timestamptz
);
CREATE INDEX rejected_deliveries_sink ON cdviz.rejected_deliveries (sink_id, id);
CREATE INDEX rejected_deliveries_retry ON cdviz.rejected_deliveries (sink_id, id)
	WHERE retry_requested_at IS NOT NULL AND retried_at IS NULL;

COMMENT ON TABLE cdviz.rejected_deliveries IS
'cdviz: events a sink refused for good (HTTP 4xx other than 408 and 429), with the answer; retry them with cdviz.retry_rejected_deliveries()';
COMMENT ON COLUMN cdviz.rejected_deliveries.sink_id IS 'cdviz.sinks.id';
COMMENT ON COLUMN cdviz.rejected_deliveries.event_id IS 'cdviz.cdevents_lake.id of the event';
COMMENT ON COLUMN cdviz.rejected_deliveries.event_timestamp IS 'cdviz.cdevents_lake."timestamp" of the event';
COMMENT ON COLUMN cdviz.rejected_deliveries.status IS 'HTTP status of the refusal';
COMMENT ON COLUMN cdviz.rejected_deliveries.response IS 'the start of the response body (at most 1 kB)';
COMMENT ON COLUMN cdviz.rejected_deliveries.rejected_at IS 'when the sink refused it';
COMMENT ON COLUMN cdviz.rejected_deliveries.retry_requested_at IS 'when cdviz.retry_rejected_deliveries() asked for another attempt';
COMMENT ON COLUMN cdviz.rejected_deliveries.retried_at IS 'when that attempt was made (a new refusal is a new row)';

SELECT pg_catalog.pg_extension_config_dump('cdviz.sinks', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.sink_secrets', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.sink_progress', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.lake_batches', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.rejected_deliveries', '');

-- Options: which keys a kind takes, and which are secrets.
CREATE FUNCTION cdviz._sink_check(kind text, target text, options jsonb,
								  type_pattern text, source_pattern text, predicate text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	allowed text[] := CASE kind
		WHEN 'http' THEN ARRAY['mode', 'batch_size', 'headers', 'timeout', 'initial_backoff',
							   'max_backoff', 'token', 'hmac_secret']
		WHEN 'nats' THEN ARRAY['jetstream', 'timeout', 'initial_backoff', 'max_backoff']
		WHEN 'log' THEN ARRAY[]::text[]
	END;
	k text;
BEGIN
	IF allowed IS NULL THEN
		RAISE EXCEPTION 'unknown sink kind "%"', kind
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Use http, nats or log.';
	END IF;
	IF jsonb_typeof(options) IS DISTINCT FROM 'object' THEN
		RAISE EXCEPTION 'sink options must be a JSON object'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	FOR k IN SELECT jsonb_object_keys(options) LOOP
		IF NOT k = ANY (allowed) THEN
			RAISE EXCEPTION 'unknown option "%" for a % sink', k, kind
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = format('Options of a %s sink: %s.', kind,
									coalesce(nullif(array_to_string(allowed, ', '), ''), 'none'));
		END IF;
	END LOOP;
	IF kind = 'http' AND target !~* '^https?://' THEN
		RAISE EXCEPTION 'an http sink needs an http:// or https:// URL, not "%"', target
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF kind = 'nats' AND (target = '' OR target ~ '\s') THEN
		RAISE EXCEPTION 'a nats sink needs a subject without spaces, not "%"', target
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF options ? 'mode' AND NOT options->>'mode' IN ('binary', 'structured', 'batch') THEN
		RAISE EXCEPTION 'unknown mode "%"', options->>'mode'
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Use binary, structured or batch.';
	END IF;
	IF options ? 'jetstream' AND NOT options->>'jetstream' IN ('auto', 'always', 'never') THEN
		RAISE EXCEPTION 'jetstream must be auto, always or never, not "%"', options->>'jetstream'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF options ? 'batch_size' AND NOT (jsonb_typeof(options->'batch_size') = 'number'
									   AND (options->>'batch_size')::numeric BETWEEN 1 AND 10000) THEN
		RAISE EXCEPTION 'batch_size must be a number from 1 to 10000'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	FOR k IN SELECT unnest(ARRAY['timeout', 'initial_backoff', 'max_backoff']) LOOP
		IF options ? k AND NOT (jsonb_typeof(options->k) = 'number' AND (options->>k)::numeric > 0) THEN
			RAISE EXCEPTION '% must be a positive number of seconds', k
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
	END LOOP;
	IF options ? 'headers' AND (jsonb_typeof(options->'headers') <> 'object' OR EXISTS (
			SELECT FROM jsonb_each(options->'headers') h
			WHERE jsonb_typeof(h.value) <> 'string' OR h.key !~ '^[!#$%&''*+.^_`|~0-9A-Za-z-]+$'
			   OR h.value->>0 ~ '[\r\n]')) THEN
		RAISE EXCEPTION 'headers must be a JSON object of header names and string values'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	-- the filters must be valid SQL over the lake: try them on no row
	EXECUTE format('SELECT FROM cdviz.cdevents_lake WHERE type LIKE $1 AND context_source LIKE $2 AND (%s) LIMIT 0',
				   coalesce(nullif(predicate, ''), 'true'))
		USING coalesce(type_pattern, '%'), coalesce(source_pattern, '%');
END
$$;
COMMENT ON FUNCTION cdviz._sink_check(text, text, jsonb, text, text, text) IS
'cdviz internal: checks a sink definition; raises SQLSTATE 22023 naming what is wrong';

CREATE FUNCTION cdviz.create_sink(name text, kind text, target text,
								  options jsonb DEFAULT '{}',
								  type_pattern text DEFAULT NULL,
								  source_pattern text DEFAULT NULL,
								  predicate text DEFAULT NULL,
								  start_at timestamptz DEFAULT NULL,
								  paused boolean DEFAULT false)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	secret_names CONSTANT text[] := ARRAY['token', 'hmac_secret'];
	sid integer;
	until bigint;
BEGIN
	PERFORM cdviz._sink_check(kind, target, options, type_pattern, source_pattern, predicate);
	-- Wait for the writers in flight and hold new ones until we commit:
	-- each writer's trigger then either ran before, and its transaction
	-- is visible in the snapshot taken below (not this sink's event), or
	-- runs after our commit and sees this sink (see lake_record_batch).
	LOCK TABLE cdviz.cdevents_lake IN SHARE MODE;
	INSERT INTO cdviz.sinks (name, kind, target, options, secret_keys, type_pattern,
							 source_pattern, predicate, paused, start_at)
	VALUES (name, kind, target, options - secret_names,
			ARRAY(SELECT k FROM jsonb_object_keys(options) k WHERE k = ANY (secret_names) ORDER BY k),
			nullif(type_pattern, ''), nullif(source_pattern, ''), nullif(predicate, ''),
			paused, start_at)
	RETURNING id INTO sid;
	IF options ?| secret_names THEN
		INSERT INTO cdviz.sink_secrets VALUES (sid, jsonb_strip_nulls(jsonb_build_object(
			'token', options->'token', 'hmac_secret', options->'hmac_secret')));
	END IF;
	IF start_at IS NOT NULL THEN
		SELECT max(id) INTO until FROM cdviz.cdevents_lake;
	END IF;
	INSERT INTO cdviz.sink_progress (sink_id, snap, backfill_until, backfill_pos)
	VALUES (sid, pg_current_snapshot(), until, CASE WHEN until IS NOT NULL THEN 0 END);
	RETURN sid;
END
$$;
COMMENT ON FUNCTION cdviz.create_sink(text, text, text, jsonb, text, text, text, timestamptz, boolean) IS
'cdviz: creates a sink and returns its id; the dispatcher delivers to it every matching event stored after this transaction commits (with start_at: also those imported since start_at). Secret options (token, hmac_secret) go to cdviz.sink_secrets. Example: SELECT cdviz.create_sink(''ci'', ''http'', ''https://hooks.example/cd'', ''{"mode": "batch", "batch_size": 100, "hmac_secret": "s3cret"}'', type_pattern => ''dev.cdevents.service.%'');';

CREATE FUNCTION cdviz.alter_sink(name text, target text DEFAULT NULL, options jsonb DEFAULT NULL,
								 type_pattern text DEFAULT NULL,
								 source_pattern text DEFAULT NULL,
								 predicate text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	secret_names CONSTANT text[] := ARRAY['token', 'hmac_secret'];
	s cdviz.sinks;
BEGIN
	SELECT * INTO s FROM cdviz.sinks WHERE sinks.name = alter_sink.name FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'sink "%" does not exist', name USING ERRCODE = 'undefined_object';
	END IF;
	s.target := coalesce(target, s.target);
	s.type_pattern := CASE WHEN type_pattern IS NULL THEN s.type_pattern ELSE nullif(type_pattern, '') END;
	s.source_pattern := CASE WHEN source_pattern IS NULL THEN s.source_pattern ELSE nullif(source_pattern, '') END;
	s.predicate := CASE WHEN predicate IS NULL THEN s.predicate ELSE nullif(predicate, '') END;
	PERFORM cdviz._sink_check(s.kind, s.target, coalesce(options, s.options), s.type_pattern,
							  s.source_pattern, s.predicate);
	IF options IS NOT NULL THEN
		s.options := options - secret_names;
		s.secret_keys := ARRAY(SELECT k FROM jsonb_object_keys(options) k
							   WHERE k = ANY (secret_names) ORDER BY k);
		DELETE FROM cdviz.sink_secrets WHERE sink_id = s.id;
		IF options ?| secret_names THEN
			INSERT INTO cdviz.sink_secrets VALUES (s.id, jsonb_strip_nulls(jsonb_build_object(
				'token', options->'token', 'hmac_secret', options->'hmac_secret')));
		END IF;
	END IF;
	UPDATE cdviz.sinks
	SET target = s.target, options = s.options, secret_keys = s.secret_keys,
		type_pattern = s.type_pattern, source_pattern = s.source_pattern,
		predicate = s.predicate, updated_at = now()
	WHERE id = s.id;
END
$$;
COMMENT ON FUNCTION cdviz.alter_sink(text, text, jsonb, text, text, text) IS
'cdviz: changes a sink; NULL arguments keep the current value, an empty string removes a filter, options (when given) replace all options, secrets included. Takes effect at the dispatcher''s next chunk; delivery resumes where it was. Example: SELECT cdviz.alter_sink(''ci'', type_pattern => ''dev.cdevents.%'');';

CREATE FUNCTION cdviz.drop_sink(name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	DELETE FROM cdviz.sinks WHERE sinks.name = drop_sink.name;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'sink "%" does not exist', name USING ERRCODE = 'undefined_object';
	END IF;
END
$$;
COMMENT ON FUNCTION cdviz.drop_sink(text) IS
'cdviz: removes a sink with its progress, secrets and rejected deliveries. Example: SELECT cdviz.drop_sink(''ci'');';

CREATE FUNCTION cdviz.pause_sink(name text, paused boolean DEFAULT true)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	UPDATE cdviz.sinks SET paused = pause_sink.paused, updated_at = now()
	WHERE sinks.name = pause_sink.name;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'sink "%" does not exist', name USING ERRCODE = 'undefined_object';
	END IF;
END
$$;
COMMENT ON FUNCTION cdviz.pause_sink(text, boolean) IS
'cdviz: stops delivering to a sink; its events wait (they stay in the outbox) until cdviz.resume_sink(). Example: SELECT cdviz.pause_sink(''ci'');';

CREATE FUNCTION cdviz.resume_sink(name text)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT cdviz.pause_sink(name, false) $$;
COMMENT ON FUNCTION cdviz.resume_sink(text) IS
'cdviz: delivers again to a paused sink, starting where it stopped. Example: SELECT cdviz.resume_sink(''ci'');';

CREATE FUNCTION cdviz.retry_rejected_deliveries(sink text DEFAULT NULL, since timestamptz DEFAULT '-infinity')
RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
	WITH r AS (
		UPDATE cdviz.rejected_deliveries d SET retry_requested_at = now()
		FROM cdviz.sinks s
		WHERE s.id = d.sink_id AND (retry_rejected_deliveries.sink IS NULL OR s.name = retry_rejected_deliveries.sink)
		  AND d.rejected_at >= since AND d.retried_at IS NULL AND d.retry_requested_at IS NULL
		RETURNING 1)
	SELECT count(*) FROM r
$$;
COMMENT ON FUNCTION cdviz.retry_rejected_deliveries(text, timestamptz) IS
'cdviz: asks the dispatcher to deliver the refused events again (of one sink, refused since a time) and returns how many; a new refusal makes a new row. Example: SELECT cdviz.retry_rejected_deliveries(''ci'');';

-- Per sink: what was delivered and what waits.  Pending counts the events
-- of the outbox the sink has not passed yet, before its filter.
CREATE VIEW cdviz.sink_status AS
SELECT s.name, s.kind, s.target, s.paused,
	   p.delivered,
	   p.rejected,
	   (SELECT count(*) FROM cdviz.rejected_deliveries d
		WHERE d.sink_id = s.id AND d.retry_requested_at IS NOT NULL AND d.retried_at IS NULL)
		   AS retries_requested,
	   coalesce(w.pending, 0) + coalesce(bf.pending, 0) AS pending,
	   CASE WHEN coalesce(w.pending, 0) + coalesce(bf.pending, 0) = 0 THEN 0
			ELSE extract(epoch FROM now() - least(w.oldest, bf.oldest)) END AS lag_seconds,
	   p.failures,
	   p.last_delivered_id,
	   p.last_success_at,
	   p.last_error,
	   p.last_error_at,
	   s.created_at
FROM cdviz.sinks s
JOIN cdviz.sink_progress p ON p.sink_id = s.id
LEFT JOIN LATERAL (
	SELECT sum(CASE WHEN (b.xid, b.batch_id) = (p.pos_xid, p.pos_batch)
					THEN greatest(cardinality(b.ids) - p.pos_ord, 0)
					ELSE cardinality(b.ids) END) AS pending,
		   min(b.stored_at) AS oldest
	FROM cdviz.lake_batches b
	WHERE b.xid >= pg_snapshot_xmin(p.snap) AND NOT pg_visible_in_snapshot(b.xid, p.snap)
	  AND (p.next_snap IS NULL OR p.pos_xid IS NULL OR NOT pg_visible_in_snapshot(b.xid, p.next_snap)
		   OR (b.xid, b.batch_id) >= (p.pos_xid, p.pos_batch))
) w ON true
LEFT JOIN LATERAL (
	SELECT count(*) AS pending, min(l.imported_at) AS oldest
	FROM cdviz.cdevents_lake l
	WHERE p.backfill_until IS NOT NULL AND l.id > p.backfill_pos AND l.id <= p.backfill_until
	  AND l.imported_at >= s.start_at
) bf ON true;

COMMENT ON VIEW cdviz.sink_status IS
'cdviz: per sink — events delivered and refused, events waiting (pending, before the filter) and how old the oldest is (lag_seconds), failed attempts, last success and last error; no secrets';
COMMENT ON COLUMN cdviz.sink_status.name IS 'sink name';
COMMENT ON COLUMN cdviz.sink_status.kind IS 'http, nats or log';
COMMENT ON COLUMN cdviz.sink_status.target IS 'URL, subject or label';
COMMENT ON COLUMN cdviz.sink_status.paused IS 'whether delivery is paused';
COMMENT ON COLUMN cdviz.sink_status.delivered IS 'events delivered';
COMMENT ON COLUMN cdviz.sink_status.rejected IS 'events refused for good';
COMMENT ON COLUMN cdviz.sink_status.retries_requested IS 'refused events waiting for the retry asked by cdviz.retry_rejected_deliveries()';
COMMENT ON COLUMN cdviz.sink_status.pending IS 'events stored and not yet passed by this sink (before its filter)';
COMMENT ON COLUMN cdviz.sink_status.lag_seconds IS 'age of the oldest pending event; 0 when none';
COMMENT ON COLUMN cdviz.sink_status.failures IS 'failed attempts that were retried';
COMMENT ON COLUMN cdviz.sink_status.last_delivered_id IS 'lake id of the last delivered event';
COMMENT ON COLUMN cdviz.sink_status.last_success_at IS 'when a delivery last succeeded';
COMMENT ON COLUMN cdviz.sink_status.last_error IS 'why the last failed attempt failed';
COMMENT ON COLUMN cdviz.sink_status.last_error_at IS 'when it failed';
COMMENT ON COLUMN cdviz.sink_status.created_at IS 'when the sink was created';

-- Sinks are managed by superusers only: a sink's predicate runs inside
-- the dispatcher, and a sink sends events out of the database.
REVOKE EXECUTE ON FUNCTION cdviz._sink_check(text, text, jsonb, text, text, text),
	cdviz.create_sink(text, text, text, jsonb, text, text, text, timestamptz, boolean),
	cdviz.alter_sink(text, text, jsonb, text, text, text),
	cdviz.drop_sink(text), cdviz.pause_sink(text, boolean), cdviz.resume_sink(text),
	cdviz.retry_rejected_deliveries(text, timestamptz),
	cdviz.lake_record_batch() FROM PUBLIC;
GRANT SELECT ON cdviz.sinks, cdviz.sink_status TO cdviz_reader;
-- Webhooks: tools that do not speak CDEvents (GitHub, GitLab, Argo CD,
-- Tekton, anything a user writes a transformer for) post their own
-- payloads to POST /webhooks/<name>; a SQL transformer turns each delivery
-- into zero or more CDEvents, stored through the same validation and dedup
-- as every other event, in the same transaction as the delivery record.
--
--   cdviz.webhooks             routes: name -> transformer, auth kind
--   cdviz.webhook_secrets      their secrets (no grant: superusers and the owner)
--   cdviz.webhook_routes       the routes without secrets, for cdviz_reader
--   cdviz.webhook_deliveries   every delivery, its outcome and its events
--   cdviz.process_webhook()    one delivery, called by the http worker
--   cdviz.retransform()        runs the (fixed) transformer again
--
-- Transformers run as the http worker's role (a superuser): only the owner
-- of the extension and superusers may create routes, and each route names
-- its function by regprocedure so a later same-named function elsewhere on
-- a search_path cannot take its place.

CREATE TABLE cdviz.webhooks (
	name			text PRIMARY KEY
		CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$'),
	transformer		regprocedure NOT NULL,
	auth			text NOT NULL
		CHECK (auth IN ('github', 'gitlab', 'bearer', 'basic', 'none')),
	retention		interval NOT NULL DEFAULT interval '30 days'
		CHECK (retention > interval '0'),
	created_at		timestamptz NOT NULL DEFAULT now(),
	updated_at		timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE cdviz.webhooks IS
'cdviz: webhook routes served by the http worker at POST /webhooks/<name>; manage them with cdviz.create_webhook(), alter_webhook(), drop_webhook(). Secrets are in cdviz.webhook_secrets.';
COMMENT ON COLUMN cdviz.webhooks.name IS 'route name: the URL path is /webhooks/<name> (letters, digits, _ . -; up to 63)';
COMMENT ON COLUMN cdviz.webhooks.transformer IS 'function (headers jsonb, body jsonb) RETURNS SETOF jsonb turning one delivery into CDEvents';
COMMENT ON COLUMN cdviz.webhooks.auth IS 'github: X-Hub-Signature-256 HMAC of the body; gitlab: X-Gitlab-Token; bearer: Authorization: Bearer; basic: Authorization: Basic (secret is user:password); none';
COMMENT ON COLUMN cdviz.webhooks.retention IS 'how long deliveries of this route are kept in cdviz.webhook_deliveries (cdviz.prune_webhook_deliveries())';
COMMENT ON COLUMN cdviz.webhooks.created_at IS 'when the route was created';
COMMENT ON COLUMN cdviz.webhooks.updated_at IS 'when the route was last altered';

-- A separate table rather than a column: cdviz_reader may read the routes
-- (through the view) but no role but the owner may read this one.
CREATE TABLE cdviz.webhook_secrets (
	name			text PRIMARY KEY REFERENCES cdviz.webhooks ON UPDATE CASCADE ON DELETE CASCADE,
	secret			text NOT NULL CHECK (secret <> '')
);

COMMENT ON TABLE cdviz.webhook_secrets IS
'cdviz: the secret of each webhook route (HMAC key, token, or user:password). Readable by the extension owner and superusers only.';
COMMENT ON COLUMN cdviz.webhook_secrets.secret IS 'github: the webhook secret; gitlab: the secret token; bearer: the token; basic: user:password';

CREATE TABLE cdviz.webhook_deliveries (
	id				bigserial PRIMARY KEY,
	route			text NOT NULL,
	received_at		timestamptz NOT NULL DEFAULT now(),
	last_received_at timestamptz NOT NULL DEFAULT now(),
	attempts		integer NOT NULL DEFAULT 1,
	event_name		text,
	delivery_key	text NOT NULL,
	headers			jsonb NOT NULL,
	body			jsonb NOT NULL,
	status			text NOT NULL
		CHECK (status IN ('stored', 'duplicate', 'ignored', 'failed', 'ping')),
	event_ids		bigint[],
	context_ids		text[],
	error			text,
	problems		jsonb,
	transformed_at	timestamptz NOT NULL DEFAULT now(),
	UNIQUE (route, delivery_key)
)
-- A tool's body compresses to a few kB (GitHub's 20 kB workflow_run: 4.7
-- kB with lz4): kept in the row rather than in TOAST chunks, one heap
-- insert instead of three and no TOAST index entries per delivery.
WITH (toast_tuple_target = 8160);
SELECT cdviz._prefer_lz4('cdviz.webhook_deliveries', 'body');
SELECT cdviz._prefer_lz4('cdviz.webhook_deliveries', 'headers');
CREATE INDEX webhook_deliveries_received_at ON cdviz.webhook_deliveries (route, received_at);
CREATE INDEX webhook_deliveries_failed ON cdviz.webhook_deliveries (route, received_at)
	WHERE status = 'failed';

COMMENT ON TABLE cdviz.webhook_deliveries IS
'cdviz: every webhook delivery with its outcome: the events it produced, or why none (ignored: <reason>, or the transformer''s error). A redelivery (same delivery key) updates its row instead of adding one. Pruned after the route''s retention.';
COMMENT ON COLUMN cdviz.webhook_deliveries.route IS 'cdviz.webhooks.name it was posted to (kept after the route is dropped)';
COMMENT ON COLUMN cdviz.webhook_deliveries.received_at IS 'first reception; also the event timestamp of transformer output that has none';
COMMENT ON COLUMN cdviz.webhook_deliveries.last_received_at IS 'latest reception (redeliveries)';
COMMENT ON COLUMN cdviz.webhook_deliveries.attempts IS 'how many times it was received';
COMMENT ON COLUMN cdviz.webhook_deliveries.event_name IS 'what the tool called it: X-GitHub-Event/action, X-Gitlab-Event, ce-type, ...';
COMMENT ON COLUMN cdviz.webhook_deliveries.delivery_key IS 'identity of the delivery, the root of its events'' context.id: github:<hook id>:<X-GitHub-Delivery>, gitlab:<Idempotency-Key or X-Gitlab-Event-UUID>, ce:<ce-source>:<ce-id>, else sha256:<hash of the body>';
COMMENT ON COLUMN cdviz.webhook_deliveries.headers IS 'request headers, names in lower case, credentials (Authorization, X-Hub-Signature*, X-Gitlab-Token, Cookie) removed';
COMMENT ON COLUMN cdviz.webhook_deliveries.body IS 'the body as received (JSON)';
COMMENT ON COLUMN cdviz.webhook_deliveries.status IS 'stored (new events), duplicate (all already stored), ignored (no event, see error), failed (transformer error or invalid events, see error and problems), ping';
COMMENT ON COLUMN cdviz.webhook_deliveries.event_ids IS 'cdviz.cdevents_lake ids of the events it produced, in output order';
COMMENT ON COLUMN cdviz.webhook_deliveries.context_ids IS 'context.id of the events it produced, in output order';
COMMENT ON COLUMN cdviz.webhook_deliveries.error IS 'ignored: <reason>, or the transformer''s error, or why its output was refused';
COMMENT ON COLUMN cdviz.webhook_deliveries.problems IS 'for refused output: [{"index": n, "path": ..., "message": ...}]';
COMMENT ON COLUMN cdviz.webhook_deliveries.transformed_at IS 'when the transformer last ran on it';

-- Deliveries are data: pg_dump keeps them (routes too; secrets as well,
-- since a dump is read by superusers only when it contains them).
SELECT pg_catalog.pg_extension_config_dump('cdviz.webhooks', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.webhook_secrets', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.webhook_deliveries', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.webhook_deliveries_id_seq', '');

CREATE VIEW cdviz.webhook_routes AS
SELECT w.name, '/webhooks/' || w.name AS path, w.transformer, w.auth,
	   (s.name IS NOT NULL) AS has_secret, w.retention, w.created_at, w.updated_at
FROM cdviz.webhooks w
LEFT JOIN cdviz.webhook_secrets s ON s.name = w.name;

COMMENT ON VIEW cdviz.webhook_routes IS
'cdviz: webhook routes without their secrets (path, transformer, auth kind, whether a secret is set, retention)';

-- ---------------------------------------------------------------------
-- Managing routes
-- ---------------------------------------------------------------------

-- The transformer must have the signature the worker calls.
CREATE FUNCTION cdviz._webhook_check_transformer(transformer regprocedure)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	p pg_proc;
BEGIN
	SELECT * INTO p FROM pg_proc WHERE oid = transformer;
	IF p.pronargs <> 2 OR p.proargtypes[0] <> 'jsonb'::regtype OR p.proargtypes[1] <> 'jsonb'::regtype
	   OR p.prorettype <> 'jsonb'::regtype OR NOT p.proretset THEN
		RAISE EXCEPTION 'transformer % does not have the signature (headers jsonb, body jsonb) RETURNS SETOF jsonb',
			transformer
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Example: CREATE FUNCTION my_transform(headers jsonb, body jsonb) RETURNS SETOF jsonb LANGUAGE plpgsql AS ...';
	END IF;
END
$$;
COMMENT ON FUNCTION cdviz._webhook_check_transformer(regprocedure) IS
'cdviz internal: raises unless the function is (jsonb, jsonb) RETURNS SETOF jsonb';

CREATE FUNCTION cdviz._webhook_check_secret(auth text, secret text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF auth = 'none' AND secret IS NOT NULL THEN
		RAISE EXCEPTION 'auth none takes no secret' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF auth <> 'none' AND coalesce(secret, '') = '' THEN
		RAISE EXCEPTION 'auth % needs a secret', auth
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'github: the webhook secret; gitlab: the secret token; bearer: the token; basic: user:password';
	END IF;
	IF auth = 'basic' AND position(':' IN secret) = 0 THEN
		RAISE EXCEPTION 'auth basic needs a secret of the form user:password'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
END
$$;
COMMENT ON FUNCTION cdviz._webhook_check_secret(text, text) IS
'cdviz internal: raises unless the secret suits the auth kind';

CREATE FUNCTION cdviz.create_webhook(name text, transformer regprocedure, auth text, secret text DEFAULT NULL,
									 retention interval DEFAULT interval '30 days')
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM cdviz._webhook_check_transformer(transformer);
	PERFORM cdviz._webhook_check_secret(auth, secret);
	INSERT INTO cdviz.webhooks (name, transformer, auth, retention)
	VALUES (create_webhook.name, create_webhook.transformer, create_webhook.auth, create_webhook.retention);
	IF secret IS NOT NULL THEN
		INSERT INTO cdviz.webhook_secrets (name, secret) VALUES (create_webhook.name, create_webhook.secret);
	END IF;
	RETURN '/webhooks/' || name;
END
$$;
COMMENT ON FUNCTION cdviz.create_webhook(text, regprocedure, text, text, interval) IS
'cdviz: creates the route POST /webhooks/<name> (returned) whose deliveries the transformer turns into CDEvents; auth is github, gitlab, bearer, basic (secret user:password) or none. Takes effect at once. Example: SELECT cdviz.create_webhook(''github'', ''cdviz.transform_github(jsonb,jsonb)'', ''github'', ''s3cret'');';

CREATE FUNCTION cdviz.alter_webhook(name text, transformer regprocedure DEFAULT NULL, auth text DEFAULT NULL,
									secret text DEFAULT NULL, retention interval DEFAULT NULL,
									new_name text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	w cdviz.webhooks;
	cur_secret text;
BEGIN
	SELECT * INTO w FROM cdviz.webhooks WHERE webhooks.name = alter_webhook.name FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'webhook "%" does not exist', alter_webhook.name
			USING ERRCODE = 'undefined_object', HINT = 'SELECT * FROM cdviz.webhook_routes lists them.';
	END IF;
	SELECT s.secret INTO cur_secret FROM cdviz.webhook_secrets s WHERE s.name = w.name;
	IF transformer IS NOT NULL THEN
		PERFORM cdviz._webhook_check_transformer(transformer);
	END IF;
	-- switching to none drops the secret; otherwise a new secret replaces it
	PERFORM cdviz._webhook_check_secret(coalesce(auth, w.auth),
										CASE WHEN coalesce(auth, w.auth) = 'none' THEN NULL
											 ELSE coalesce(secret, cur_secret) END);
	UPDATE cdviz.webhooks
	SET transformer = coalesce(alter_webhook.transformer, webhooks.transformer),
		auth = coalesce(alter_webhook.auth, webhooks.auth),
		retention = coalesce(alter_webhook.retention, webhooks.retention),
		name = coalesce(alter_webhook.new_name, webhooks.name),
		updated_at = now()
	WHERE webhooks.name = w.name;
	IF coalesce(auth, w.auth) = 'none' THEN
		DELETE FROM cdviz.webhook_secrets s WHERE s.name = coalesce(new_name, w.name);
	ELSIF secret IS NOT NULL THEN
		INSERT INTO cdviz.webhook_secrets AS s (name, secret) VALUES (coalesce(new_name, w.name), secret)
		ON CONFLICT ON CONSTRAINT webhook_secrets_pkey DO UPDATE SET secret = excluded.secret;
	END IF;
	RETURN '/webhooks/' || coalesce(new_name, w.name);
END
$$;
COMMENT ON FUNCTION cdviz.alter_webhook(text, regprocedure, text, text, interval, text) IS
'cdviz: changes what is given of a route (transformer, auth, secret, retention, new_name) and returns its path; auth none drops the secret. Example: SELECT cdviz.alter_webhook(''github'', secret => ''rotated'');';

CREATE FUNCTION cdviz.drop_webhook(name text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	DELETE FROM cdviz.webhooks w WHERE w.name = drop_webhook.name;
	RETURN FOUND;
END
$$;
COMMENT ON FUNCTION cdviz.drop_webhook(text) IS
'cdviz: removes the route (its deliveries stay until pruned) and returns whether it existed; the path answers 404 from then on. Example: SELECT cdviz.drop_webhook(''github'');';

-- ---------------------------------------------------------------------
-- Helpers for transformers
--
-- The one-expression helpers have no SET clause and declare the
-- volatility of what they call, so that the planner inlines them into the
-- transformer's statements: a SET (or a FROM) makes each call a function
-- execution of its own, planned afresh in every statement that calls it,
-- which cost more than the rest of a transformer.  Inlined, they run under
-- the caller's search_path (the shipped transformers pin pg_catalog) and
-- name only built-in functions and cdviz-qualified objects.
-- ---------------------------------------------------------------------

CREATE FUNCTION cdviz.webhook_timestamp(ts text)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
	-- RFC 3339 in UTC, microseconds only when there are some: the tools
	-- write "2016-08-12 15:23:28 UTC", "+0200" offsets or epoch seconds.
	-- One expression (t three times), so that it is inlined.
	SELECT to_char(
		CASE WHEN ts ~ '^[0-9]+(\.[0-9]+)?$' THEN to_timestamp(ts::numeric)
			 ELSE nullif(ts, '')::timestamptz END AT TIME ZONE 'UTC',
		CASE WHEN date_trunc('second', CASE WHEN ts ~ '^[0-9]+(\.[0-9]+)?$' THEN to_timestamp(ts::numeric)
											ELSE nullif(ts, '')::timestamptz END)
				  = CASE WHEN ts ~ '^[0-9]+(\.[0-9]+)?$' THEN to_timestamp(ts::numeric)
						 ELSE nullif(ts, '')::timestamptz END
			 THEN 'YYYY-MM-DD"T"HH24:MI:SS"Z"'
			 ELSE 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"' END)
$$;
COMMENT ON FUNCTION cdviz.webhook_timestamp(text) IS
'cdviz: a tool''s time (ISO 8601, "2016-08-12 15:23:28 UTC", "+0200" offsets, epoch seconds) as an RFC 3339 UTC string for context.timestamp; NULL stays NULL. Example: SELECT cdviz.webhook_timestamp(''2021-04-28 21:50:00 +0200'');';

CREATE FUNCTION cdviz.webhook_cdevent(kind text, source text, ts text, subject_id text, content jsonb)
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
	-- The version of each type is the one CDEvents 0.5.1 ships; context.id
	-- is a placeholder that process_webhook replaces by one derived from the
	-- delivery, so that the output is a valid event on its own too.
	SELECT jsonb_build_object(
		'context', jsonb_strip_nulls(jsonb_build_object(
			'specversion', '0.5.1',
			'id', md5(concat_ws('|', kind, source, ts, subject_id)),
			'source', source,
			'type', 'dev.cdevents.' || kind || '.' ||
				CASE WHEN kind = 'change.created' THEN '0.4.0'
					 WHEN kind LIKE 'ticket.%' THEN '0.2.0'
					 ELSE '0.3.0' END,
			'timestamp', cdviz.webhook_timestamp(ts))),
		'subject', jsonb_build_object(
			'id', subject_id,
			'source', source,
			'content', jsonb_strip_nulls(coalesce(content, '{}'))))
$$;
COMMENT ON FUNCTION cdviz.webhook_cdevent(text, text, text, text, jsonb) IS
'cdviz: builds a CDEvents 0.5.1 event of kind ''<subject>.<predicate>'' (e.g. ''pipelinerun.finished'') with its 0.5.1 type version; null content fields are dropped, a NULL ts is left out (process_webhook then uses the first reception time). Example: SELECT cdviz.webhook_cdevent(''pipelinerun.started'', ''/ci'', now()::text, ''run-1'', ''{"pipelineName": "build"}'');';

CREATE FUNCTION cdviz.webhook_deploy_predicate(environment_id text, service_id text, at_ts timestamptz)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	-- What ran in the environment just before at_ts decides, not what runs
	-- now: a deployment delivered late is judged by its own time.
	SELECT CASE WHEN EXISTS (
		SELECT FROM (SELECT h.predicate FROM cdviz.environment_history h
					 WHERE h.environment_id = webhook_deploy_predicate.environment_id
					   AND h.service_id = webhook_deploy_predicate.service_id
					   AND h.valid_from < at_ts
					   AND h.predicate <> 'published'
					 ORDER BY h.valid_from DESC, h.event_id DESC
					 LIMIT 1) last
		WHERE last.predicate <> 'removed')
	THEN 'upgraded' ELSE 'deployed' END
$$;
COMMENT ON FUNCTION cdviz.webhook_deploy_predicate(text, text, timestamptz) IS
'cdviz: ''upgraded'' when the inventory says the service ran in the environment just before at_ts (a deployed, upgraded or rolledback event earlier than at_ts not followed by a removal), else ''deployed''. Judges by at_ts, so out-of-order deliveries are classified by their own time. Example: SELECT cdviz.webhook_deploy_predicate(''prod'', ''api'', now());';

CREATE FUNCTION cdviz.webhook_oci_purl(image text, digest text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	ref text := lower(image);
	tag text;
	dig text := digest;
	repo text;
	name text;
BEGIN
	IF image IS NULL OR image = '' THEN
		RETURN NULL;
	END IF;
	IF position('@' IN ref) > 0 THEN
		dig := coalesce(dig, split_part(ref, '@', 2));
		ref := split_part(ref, '@', 1);
	END IF;
	-- a tag is after the last ':' of the last path segment (not a port)
	IF ref ~ ':[^/:]*$' THEN
		tag := substring(ref FROM ':([^/:]*)$');
		ref := regexp_replace(ref, ':[^/:]*$', '');
	END IF;
	repo := ref;
	name := regexp_replace(ref, '^.*/', '');
	RETURN 'pkg:oci/' || name
		|| CASE WHEN dig IS NOT NULL AND dig <> '' THEN '@' || replace(dig, ':', '%3A') ELSE '' END
		|| '?repository_url=' || repo
		|| CASE WHEN tag IS NOT NULL AND tag <> '' THEN '&tag=' || tag ELSE '' END;
END
$$;
COMMENT ON FUNCTION cdviz.webhook_oci_purl(text, text) IS
'cdviz: package URL of a container image reference (registry/path/name[:tag][@sha256:...]): pkg:oci/<name>@<digest>?repository_url=<registry/path/name>&tag=<tag>. Example: SELECT cdviz.webhook_oci_purl(''ghcr.io/acme/api:1.2@sha256:ab12'');';

-- ---------------------------------------------------------------------
-- Processing deliveries
-- ---------------------------------------------------------------------

-- A delivery is processed in C (src/store/webhook_store.c): the route's
-- transformer is called through a kept plan, its output completed and
-- stored as items, and the delivery row written once with its outcome.
-- The transformers stay SQL.  These functions pin search_path to
-- pg_catalog, pg_temp themselves while a transformer runs, whoever calls.

CREATE FUNCTION cdviz.webhook_delivery_key(headers jsonb, body jsonb)
RETURNS text
LANGUAGE c STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdviz_webhook_delivery_key';
COMMENT ON FUNCTION cdviz.webhook_delivery_key(jsonb, jsonb) IS
'cdviz: the identity of a delivery, stable across redeliveries: github:<X-GitHub-Hook-ID>:<X-GitHub-Delivery>, gitlab:<Idempotency-Key, else X-Gitlab-Event-UUID>, ce:<ce-source>:<ce-id> (CloudEvents such as Tekton''s), else sha256:<hash of the body''s jsonb text>. Events get context.id <key>#<position>. Headers are in lower case. Example: SELECT cdviz.webhook_delivery_key(''{"x-github-delivery": "72d3162e"}'', ''{}'');';

-- Run the route's transformer over a stored delivery and store its
-- events; the delivery row records the outcome (for retransform).
CREATE FUNCTION cdviz._webhook_transform(d cdviz.webhook_deliveries,
										  OUT status text, OUT event_ids bigint[],
										  OUT stored bigint, OUT duplicates bigint, OUT error text)
RETURNS record
LANGUAGE c STRICT VOLATILE
AS 'MODULE_PATHNAME', 'cdviz_webhook_transform';
COMMENT ON FUNCTION cdviz._webhook_transform(cdviz.webhook_deliveries) IS
'cdviz internal: runs the route''s transformer over one stored delivery, stores its events and records the outcome on the delivery';

CREATE FUNCTION cdviz.process_webhook(route text, headers jsonb, body jsonb,
									  OUT status text, OUT delivery_id bigint, OUT event_ids bigint[],
									  OUT stored bigint, OUT duplicates bigint, OUT error text)
RETURNS record
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'cdviz_process_webhook';
COMMENT ON FUNCTION cdviz.process_webhook(text, jsonb, jsonb) IS
'cdviz: processes one delivery of a route (what the http worker calls for POST /webhooks/<name>, after checking credentials): records it in cdviz.webhook_deliveries, runs the transformer, derives each event''s context.id from the delivery key and its position, fills a missing context.source (/webhooks/<route>), specversion and timestamp (first reception), and stores the events through cdviz.ingest_batch — all or nothing. A transformer error or invalid output is recorded on the delivery (status failed) rather than raised. Returns status (stored, duplicate, ignored, failed, ping), the delivery id, the lake ids, counts and the error. Example: SELECT * FROM cdviz.process_webhook(''github'', ''{"X-GitHub-Event": "ping"}'', ''{}'');';

CREATE FUNCTION cdviz.retransform(route text, since timestamptz DEFAULT '-infinity',
								  only_failed boolean DEFAULT true,
								  OUT deliveries bigint, OUT stored bigint, OUT duplicates bigint,
								  OUT failed bigint, OUT ignored bigint)
RETURNS record
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	d cdviz.webhook_deliveries;
	r record;
BEGIN
	IF NOT EXISTS (SELECT FROM cdviz.webhooks w WHERE w.name = retransform.route) THEN
		RAISE EXCEPTION 'webhook "%" does not exist', route USING ERRCODE = 'undefined_object';
	END IF;
	deliveries := 0; stored := 0; duplicates := 0; failed := 0; ignored := 0;
	FOR d IN
		SELECT x.* FROM cdviz.webhook_deliveries x
		WHERE x.route = retransform.route AND x.received_at >= since
		  AND (NOT only_failed OR x.status = 'failed')
		ORDER BY x.received_at, x.id
	LOOP
		SELECT * INTO r FROM cdviz._webhook_transform(d) AS t;
		deliveries := deliveries + 1;
		stored := stored + coalesce(r.stored, 0);
		duplicates := duplicates + coalesce(r.duplicates, 0);
		IF r.status = 'failed' THEN
			failed := failed + 1;
		ELSIF r.status IN ('ignored', 'ping') THEN
			ignored := ignored + 1;
		END IF;
	END LOOP;
END
$$;
COMMENT ON FUNCTION cdviz.retransform(text, timestamptz, boolean) IS
'cdviz: runs the route''s (fixed) transformer again over its stored deliveries received since a time — by default only those that failed — in delivery order; safe to repeat, since events get the same ids and the lake ignores retransmissions. Returns how many deliveries were processed, events stored and duplicated, deliveries still failing and ignored. Example: SELECT * FROM cdviz.retransform(''github'', now() - interval ''1 day'');';

CREATE FUNCTION cdviz.prune_webhook_deliveries()
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n bigint;
BEGIN
	-- deliveries of dropped routes go after 30 days
	DELETE FROM cdviz.webhook_deliveries d
	WHERE d.received_at < now() - coalesce((SELECT w.retention FROM cdviz.webhooks w WHERE w.name = d.route),
										   interval '30 days');
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;
COMMENT ON FUNCTION cdviz.prune_webhook_deliveries() IS
'cdviz: deletes the deliveries older than their route''s retention (30 days for dropped routes) and returns how many; process_webhook also prunes a route as deliveries arrive. Example (pg_cron): SELECT cron.schedule(''0 3 * * *'', ''SELECT cdviz.prune_webhook_deliveries()'');';

-- Everything here is for the owner and superusers: transformers run with
-- the worker's rights.  cdviz_reader sees the routes, not their secrets;
-- like the dead letters, deliveries hold raw input (private repositories'
-- payloads) and are not part of the read API.
REVOKE ALL ON cdviz.webhooks, cdviz.webhook_secrets, cdviz.webhook_deliveries FROM PUBLIC;
GRANT SELECT ON cdviz.webhook_routes TO cdviz_reader;
REVOKE EXECUTE ON FUNCTION
	cdviz._webhook_check_transformer(regprocedure), cdviz._webhook_check_secret(text, text),
	cdviz.create_webhook(text, regprocedure, text, text, interval),
	cdviz.alter_webhook(text, regprocedure, text, text, interval, text),
	cdviz.drop_webhook(text),
	cdviz._webhook_transform(cdviz.webhook_deliveries),
	cdviz.process_webhook(text, jsonb, jsonb),
	cdviz.retransform(text, timestamptz, boolean),
	cdviz.prune_webhook_deliveries()
FROM PUBLIC;
-- GitHub webhooks -> CDEvents 0.5.1.  The event name comes in the
-- X-GitHub-Event header, the rest in the body; see docs/webhooks.md for the
-- mapping table.  Ids are URLs where GitHub has one, so that a dashboard
-- row links back to GitHub.

CREATE FUNCTION cdviz.github_outcome(conclusion text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT CASE conclusion
		WHEN 'success' THEN 'success'
		WHEN 'neutral' THEN 'success'
		WHEN 'failure' THEN 'failure'
		WHEN 'cancelled' THEN 'cancel'
		WHEN 'skipped' THEN 'cancel'
		WHEN 'stale' THEN 'cancel'
		WHEN 'timed_out' THEN 'error'
		WHEN 'startup_failure' THEN 'error'
		WHEN 'action_required' THEN 'error'
		ELSE CASE WHEN conclusion IS NULL THEN NULL ELSE 'error' END
	END
$$;
COMMENT ON FUNCTION cdviz.github_outcome(text) IS
'cdviz: CDEvents outcome of a GitHub conclusion: success|neutral -> success, failure -> failure, cancelled|skipped|stale -> cancel, timed_out|startup_failure|action_required (and anything new) -> error';

-- Package URL of a GitHub Packages version, per ecosystem.
CREATE FUNCTION cdviz.github_package_purl(pkg jsonb, owner text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v jsonb := pkg -> 'package_version';
	kind text := lower(coalesce(pkg ->> 'package_type', pkg ->> 'ecosystem', ''));
	name text := pkg ->> 'name';
	version text := coalesce(v ->> 'version', v ->> 'name');
	image text;
	digest text;
BEGIN
	-- container images: GitHub's examples call them docker, container or
	-- even npm with container metadata; the metadata is what tells
	IF jsonb_typeof(v -> 'container_metadata') = 'object' OR kind IN ('container', 'docker') THEN
		digest := coalesce(nullif(v #>> '{container_metadata,tag,digest}', ''),
						   nullif(v #>> '{container_metadata,manifest,digest}', ''),
						   CASE WHEN version LIKE 'sha256:%' THEN version END);
		image := coalesce(nullif(regexp_replace(coalesce(v ->> 'package_url', ''), ':[^/:]*$', ''), ''),
						  'ghcr.io/' || owner || '/' || name);
		RETURN cdviz.webhook_oci_purl(image
									  || CASE WHEN nullif(v #>> '{container_metadata,tag,name}', '') IS NOT NULL
											  THEN ':' || (v #>> '{container_metadata,tag,name}') ELSE '' END,
									  digest);
	END IF;
	RETURN CASE kind
		WHEN 'npm' THEN 'pkg:npm/%40' || lower(owner) || '/' || lower(name) || '@' || version
		WHEN 'maven' THEN 'pkg:maven/' || regexp_replace(name, '\.[^.]*$', '') || '/'
						  || regexp_replace(name, '^.*\.', '') || '@' || version
		WHEN 'nuget' THEN 'pkg:nuget/' || name || '@' || version
		WHEN 'rubygems' THEN 'pkg:gem/' || name || '@' || version
		ELSE 'pkg:generic/' || name || '@' || version
	END;
END
$$;
COMMENT ON FUNCTION cdviz.github_package_purl(jsonb, text) IS
'cdviz: package URL of the package (and package_version) object of a GitHub package / registry_package event: pkg:oci/<name>@<digest>?repository_url=ghcr.io/... for containers, pkg:npm/%40<owner>/<name>@<v>, pkg:maven/<group>/<artifact>@<v>, pkg:nuget/<name>@<v>, pkg:gem/<name>@<v>, else pkg:generic';

CREATE FUNCTION cdviz.transform_github(headers jsonb, body jsonb)
RETURNS SETOF jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	event text := headers ->> 'x-github-event';
	action text := body ->> 'action';
	repo text := body #>> '{repository,full_name}';
	repo_url text := body #>> '{repository,html_url}';
	src text := '/webhooks/' || coalesce(headers ->> 'x-cdviz-route', 'github') || '/'
				|| coalesce(repo, body #>> '{organization,login}', body #>> '{sender,login}', 'github');
	repo_ref jsonb := jsonb_build_object('id', repo, 'source', src);
	o jsonb;
	run_id text;
	pr jsonb;
	ref text;
	kind text;
	ts text;
	env text;
	svc text;
	artifact text;
	image text;
BEGIN
	IF event IS NULL THEN
		RETURN NEXT jsonb_build_object('ignored', 'no X-GitHub-Event header');
		RETURN;
	END IF;

	CASE event
	WHEN 'ping' THEN
		RETURN NEXT jsonb_build_object('ignored', 'ping');

	WHEN 'workflow_run' THEN
		o := body -> 'workflow_run';
		run_id := repo_url || '/actions/runs/' || (o ->> 'id') || '/attempts/' || coalesce(o ->> 'run_attempt', '1');
		kind := CASE action WHEN 'requested' THEN 'queued' WHEN 'in_progress' THEN 'started'
							WHEN 'completed' THEN 'finished' END;
		IF kind IS NULL THEN
			RETURN NEXT jsonb_build_object('ignored', format('workflow_run action %s', action));
			RETURN;
		END IF;
		ts := CASE kind
			WHEN 'queued' THEN CASE WHEN coalesce((o ->> 'run_attempt')::int, 1) > 1
									THEN o ->> 'run_started_at' ELSE o ->> 'created_at' END
			WHEN 'started' THEN coalesce(o ->> 'run_started_at', o ->> 'updated_at')
			ELSE o ->> 'updated_at' END;
		RETURN NEXT cdviz.webhook_cdevent('pipelinerun.' || kind, src, ts, run_id,
			jsonb_build_object(
				'pipelineName', coalesce(nullif(o ->> 'name', ''), nullif(body #>> '{workflow,name}', ''), o ->> 'path'),
				'uri', o ->> 'html_url',
				'outcome', CASE WHEN kind = 'finished' THEN cdviz.github_outcome(o ->> 'conclusion') END,
				'errors', CASE WHEN kind = 'finished' AND cdviz.github_outcome(o ->> 'conclusion') <> 'success'
							   THEN 'conclusion: ' || (o ->> 'conclusion') END));

	WHEN 'workflow_job' THEN
		o := body -> 'workflow_job';
		kind := CASE action WHEN 'in_progress' THEN 'started' WHEN 'completed' THEN 'finished' END;
		IF kind IS NULL THEN
			RETURN NEXT jsonb_build_object('ignored', format('workflow_job action %s (a task run has no queued event)', action));
			RETURN;
		END IF;
		run_id := repo_url || '/actions/runs/' || (o ->> 'run_id') || '/attempts/' || coalesce(o ->> 'run_attempt', '1');
		RETURN NEXT cdviz.webhook_cdevent('taskrun.' || kind, src,
			CASE kind WHEN 'started' THEN o ->> 'started_at' ELSE coalesce(o ->> 'completed_at', o ->> 'started_at') END,
			repo_url || '/actions/runs/' || (o ->> 'run_id') || '/job/' || (o ->> 'id'),
			jsonb_build_object(
				'taskName', o ->> 'name',
				'uri', o ->> 'html_url',
				'pipelineRun', jsonb_build_object('id', run_id, 'source', src),
				'outcome', CASE WHEN kind = 'finished' THEN cdviz.github_outcome(o ->> 'conclusion') END,
				'errors', CASE WHEN kind = 'finished' AND cdviz.github_outcome(o ->> 'conclusion') <> 'success'
							   THEN 'conclusion: ' || (o ->> 'conclusion') END));

	WHEN 'pull_request' THEN
		pr := body -> 'pull_request';
		IF action = 'opened' THEN
			RETURN NEXT cdviz.webhook_cdevent('change.created', src, pr ->> 'created_at', pr ->> 'html_url',
				jsonb_build_object('description', nullif(pr ->> 'title', ''), 'repository', repo_ref));
		ELSIF action = 'closed' AND coalesce((pr ->> 'merged')::boolean, false) THEN
			RETURN NEXT cdviz.webhook_cdevent('change.merged', src, coalesce(pr ->> 'merged_at', pr ->> 'closed_at'),
				pr ->> 'html_url', jsonb_build_object('repository', repo_ref));
		ELSIF action = 'closed' THEN
			RETURN NEXT cdviz.webhook_cdevent('change.abandoned', src, coalesce(pr ->> 'closed_at', pr ->> 'updated_at'),
				pr ->> 'html_url', jsonb_build_object('repository', repo_ref));
		ELSE
			RETURN NEXT cdviz.webhook_cdevent('change.updated', src, pr ->> 'updated_at', pr ->> 'html_url',
				jsonb_build_object('repository', repo_ref));
		END IF;

	WHEN 'pull_request_review' THEN
		IF action <> 'submitted' THEN
			RETURN NEXT jsonb_build_object('ignored', format('pull_request_review action %s', action));
			RETURN;
		END IF;
		RETURN NEXT cdviz.webhook_cdevent('change.reviewed', src, body #>> '{review,submitted_at}',
			body #>> '{pull_request,html_url}', jsonb_build_object('repository', repo_ref));

	WHEN 'create', 'delete' THEN
		IF body ->> 'ref_type' <> 'branch' THEN
			RETURN NEXT jsonb_build_object('ignored', format('%s of a %s (releases publish tags)', event, body ->> 'ref_type'));
			RETURN;
		END IF;
		-- GitHub gives no time for these: the delivery's reception time is used
		RETURN NEXT cdviz.webhook_cdevent(CASE event WHEN 'create' THEN 'branch.created' ELSE 'branch.deleted' END,
			src, NULL, repo_url || '/tree/' || (body ->> 'ref'), jsonb_build_object('repository', repo_ref));

	WHEN 'push' THEN
		ref := body ->> 'ref';
		IF ref NOT LIKE 'refs/heads/%' OR NOT (coalesce((body ->> 'created')::boolean, false)
											   OR coalesce((body ->> 'deleted')::boolean, false)) THEN
			RETURN NEXT jsonb_build_object('ignored', format('push to %s that creates or deletes no branch', ref));
			RETURN;
		END IF;
		RETURN NEXT cdviz.webhook_cdevent(
			CASE WHEN (body ->> 'deleted')::boolean THEN 'branch.deleted' ELSE 'branch.created' END, src,
			CASE WHEN (body ->> 'deleted')::boolean THEN NULL
				 ELSE coalesce(body #>> '{head_commit,timestamp}', body #>> '{repository,pushed_at}') END,
			repo_url || '/tree/' || substr(ref, 12), jsonb_build_object('repository', repo_ref));

	WHEN 'release' THEN
		IF action <> 'published' THEN
			RETURN NEXT jsonb_build_object('ignored', format('release action %s (only published releases are artifacts)', action));
			RETURN;
		END IF;
		RETURN NEXT cdviz.webhook_cdevent('artifact.published', src, body #>> '{release,published_at}',
			'pkg:github/' || lower(repo) || '@' || (body #>> '{release,tag_name}'),
			jsonb_build_object('user', body #>> '{release,author,login}'));

	WHEN 'package', 'registry_package' THEN
		o := body -> (CASE event WHEN 'package' THEN 'package' ELSE 'registry_package' END);
		IF action <> 'published' THEN
			RETURN NEXT jsonb_build_object('ignored', format('%s action %s', event, action));
			RETURN;
		END IF;
		-- GitHub's container versions may carry year 1 as their times
		ts := coalesce(CASE WHEN o #>> '{package_version,updated_at}' > '1970' THEN o #>> '{package_version,updated_at}' END,
					   CASE WHEN o #>> '{package_version,created_at}' > '1970' THEN o #>> '{package_version,created_at}' END,
					   o ->> 'updated_at');
		RETURN NEXT cdviz.webhook_cdevent('artifact.published', src, ts,
			cdviz.github_package_purl(o, coalesce(o #>> '{owner,login}', body #>> '{repository,owner,login}',
												  split_part(o ->> 'namespace', '/', 1))),
			jsonb_build_object('user', body #>> '{sender,login}'));

	WHEN 'deployment_status' THEN
		o := body -> 'deployment_status';
		IF o ->> 'state' <> 'success' THEN
			RETURN NEXT jsonb_build_object('ignored', format('deployment_status %s (only success deploys)', o ->> 'state'));
			RETURN;
		END IF;
		env := coalesce(o ->> 'environment', body #>> '{deployment,environment}');
		svc := coalesce(nullif(body #>> '{deployment,payload,service}', ''), repo);
		image := nullif(body #>> '{deployment,payload,image}', '');
		artifact := coalesce(cdviz.webhook_oci_purl(image),
							 'pkg:github/' || lower(repo) || '@' || (body #>> '{deployment,sha}'));
		ts := coalesce(o ->> 'updated_at', o ->> 'created_at');
		RETURN NEXT cdviz.webhook_cdevent(
			'service.' || cdviz.webhook_deploy_predicate(env, svc, ts::timestamptz), src, ts, svc,
			jsonb_build_object('environment', jsonb_build_object('id', env, 'source', src),
							   'artifactId', artifact));

	WHEN 'check_run', 'check_suite' THEN
		o := body -> event;
		IF action <> 'completed' THEN
			RETURN NEXT jsonb_build_object('ignored', format('%s action %s', event, action));
			RETURN;
		END IF;
		RETURN NEXT cdviz.webhook_cdevent('testsuiterun.finished', src,
			coalesce(o ->> 'completed_at', o ->> 'updated_at'),
			coalesce(o ->> 'html_url', repo_url || '/commit/' || (o ->> 'head_sha') || '/checks?check_suite_id=' || (o ->> 'id')),
			jsonb_build_object(
				'outcome', coalesce(cdviz.github_outcome(o ->> 'conclusion'), 'error'),
				'reason', CASE WHEN cdviz.github_outcome(o ->> 'conclusion') <> 'success'
							   THEN 'conclusion: ' || (o ->> 'conclusion') END,
				'environment', jsonb_build_object('id', 'github/' || coalesce(o #>> '{app,slug}', 'checks'), 'source', src),
				'testSuite', jsonb_build_object(
					'id', coalesce(o ->> 'name', o #>> '{app,slug}', 'check_suite') || '@' || repo,
					'name', coalesce(o ->> 'name', o #>> '{app,name}', 'check suite'),
					'uri', o ->> 'html_url')));

	WHEN 'issues' THEN
		o := body -> 'issue';
		kind := CASE action WHEN 'opened' THEN 'created' WHEN 'closed' THEN 'closed' ELSE 'updated' END;
		RETURN NEXT cdviz.webhook_cdevent('ticket.' || kind, src,
			CASE kind WHEN 'created' THEN o ->> 'created_at'
					  WHEN 'closed' THEN coalesce(o ->> 'closed_at', o ->> 'updated_at')
					  ELSE o ->> 'updated_at' END,
			o ->> 'html_url',
			jsonb_build_object(
				'summary', o ->> 'title',
				'creator', o #>> '{user,login}',
				'uri', o ->> 'html_url',
				'assignees', (SELECT jsonb_agg(a ->> 'login') FROM jsonb_array_elements(coalesce(o -> 'assignees', '[]')) a),
				'labels', (SELECT jsonb_agg(l ->> 'name') FROM jsonb_array_elements(coalesce(o -> 'labels', '[]')) l),
				'milestone', o #>> '{milestone,title}',
				'group', repo,
				'resolution', CASE WHEN kind = 'closed' THEN
					CASE o ->> 'state_reason' WHEN 'not_planned' THEN 'withdrawn' WHEN 'duplicate' THEN 'duplicate'
											  ELSE 'completed' END END,
				'updatedBy', CASE WHEN kind <> 'created' THEN body #>> '{sender,login}' END));

	ELSE
		RETURN NEXT jsonb_build_object('ignored', format('GitHub event %s has no CDEvents mapping', event));
	END CASE;
END
$$;
COMMENT ON FUNCTION cdviz.transform_github(jsonb, jsonb) IS
'cdviz: GitHub webhook transformer: workflow_run -> pipelinerun queued/started/finished, workflow_job -> taskrun started/finished, pull_request -> change created/merged/abandoned/updated, pull_request_review -> change.reviewed, create/delete/push of a branch -> branch created/deleted, release published -> artifact.published (pkg:github), package/registry_package published -> artifact.published (pkg:oci, npm, maven, nuget, gem), deployment_status success -> service.deployed or upgraded (inventory), check_run/check_suite completed -> testsuiterun.finished, issues -> ticket created/closed/updated; ping and the rest are ignored. See docs/webhooks.md.';

REVOKE EXECUTE ON FUNCTION cdviz.transform_github(jsonb, jsonb), cdviz.github_package_purl(jsonb, text),
	cdviz.github_outcome(text)
FROM PUBLIC;
-- GitLab webhooks -> CDEvents 0.5.1.  GitLab names the event in the
-- X-Gitlab-Event header ("Pipeline Hook", ...) and in the body's
-- object_kind; the body is read by object_kind so that a system hook
-- (header "System Hook") is understood as well.

CREATE FUNCTION cdviz.gitlab_outcome(status text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT CASE status
		WHEN 'success' THEN 'success'
		WHEN 'failed' THEN 'failure'
		WHEN 'canceled' THEN 'cancel'
		WHEN 'cancelled' THEN 'cancel'
		WHEN 'skipped' THEN 'cancel'
		ELSE 'error'
	END
$$;
COMMENT ON FUNCTION cdviz.gitlab_outcome(text) IS
'cdviz: CDEvents outcome of a GitLab pipeline or job status: success, failed -> failure, canceled|skipped -> cancel, anything else -> error';

-- pkg:gitlab/<namespace>/<name>@<version> of a project path (nested groups
-- are namespace segments)
CREATE FUNCTION cdviz.gitlab_purl(project_path text, version text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT 'pkg:gitlab/' || lower(project_path) || '@' || version
$$;
COMMENT ON FUNCTION cdviz.gitlab_purl(text, text) IS
'cdviz: package URL of a GitLab project at a version (tag or commit): pkg:gitlab/<group>/<project>@<version>';

CREATE FUNCTION cdviz.transform_gitlab(headers jsonb, body jsonb)
RETURNS SETOF jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	kind text := body ->> 'object_kind';
	project text := coalesce(body #>> '{project,path_with_namespace}',
							 regexp_replace(body #>> '{repository,homepage}', '^[a-z]+://[^/]+/', ''),
							 body ->> 'project_name');
	web_url text := coalesce(body #>> '{project,web_url}', body #>> '{repository,homepage}');
	src text := '/webhooks/' || coalesce(headers ->> 'x-cdviz-route', 'gitlab') || '/' || coalesce(project, 'gitlab');
	repo_ref jsonb := jsonb_build_object('id', project, 'source', src);
	o jsonb;
	status text;
	pred text;
	ts text;
	action text;
	sha text;
	env text;
BEGIN
	CASE kind
	WHEN 'pipeline' THEN
		o := body -> 'object_attributes';
		status := o ->> 'status';
		pred := CASE WHEN status IN ('created', 'waiting_for_resource', 'preparing', 'pending') THEN 'queued'
					 WHEN status = 'running' THEN 'started'
					 WHEN status IN ('success', 'failed', 'canceled', 'skipped') THEN 'finished' END;
		IF pred IS NULL THEN
			RETURN NEXT jsonb_build_object('ignored', format('pipeline status %s', status));
			RETURN;
		END IF;
		ts := CASE pred
			WHEN 'queued' THEN o ->> 'created_at'
			-- no start time in the hook: creation plus the time spent queued
			WHEN 'started' THEN ((o ->> 'created_at')::timestamptz
								 + make_interval(secs => coalesce((o ->> 'queued_duration')::float8, 0)))::text
			ELSE coalesce(o ->> 'finished_at', o ->> 'updated_at', o ->> 'created_at') END;
		RETURN NEXT cdviz.webhook_cdevent('pipelinerun.' || pred, src, ts,
			web_url || '/-/pipelines/' || (o ->> 'id'),
			jsonb_build_object(
				'pipelineName', coalesce(nullif(o ->> 'name', ''), project),
				'uri', web_url || '/-/pipelines/' || (o ->> 'id'),
				'outcome', CASE WHEN pred = 'finished' THEN cdviz.gitlab_outcome(status) END,
				'errors', CASE WHEN pred = 'finished' AND status <> 'success'
							   THEN 'status: ' || coalesce(o ->> 'detailed_status', status) END));

	WHEN 'build' THEN
		status := body ->> 'build_status';
		pred := CASE WHEN status = 'running' THEN 'started'
					 WHEN status IN ('success', 'failed', 'canceled') THEN 'finished' END;
		IF pred IS NULL THEN
			RETURN NEXT jsonb_build_object('ignored', format('job status %s (a task run has no queued event)', status));
			RETURN;
		END IF;
		RETURN NEXT cdviz.webhook_cdevent('taskrun.' || pred, src,
			CASE pred WHEN 'started' THEN coalesce(body ->> 'build_started_at', body ->> 'build_created_at')
					  ELSE coalesce(body ->> 'build_finished_at', body ->> 'build_started_at') END,
			web_url || '/-/jobs/' || (body ->> 'build_id'),
			jsonb_build_object(
				'taskName', body ->> 'build_name',
				'uri', web_url || '/-/jobs/' || (body ->> 'build_id'),
				'pipelineRun', jsonb_build_object('id', web_url || '/-/pipelines/' || (body ->> 'pipeline_id'),
												  'source', src),
				'outcome', CASE WHEN pred = 'finished' THEN cdviz.gitlab_outcome(status) END,
				'errors', CASE WHEN pred = 'finished' AND status <> 'success'
							   THEN coalesce(body ->> 'build_failure_reason', status) END));

	WHEN 'merge_request' THEN
		o := body -> 'object_attributes';
		action := coalesce(o ->> 'action', CASE o ->> 'state' WHEN 'opened' THEN 'open' WHEN 'merged' THEN 'merge'
															  WHEN 'closed' THEN 'close' END);
		pred := CASE action WHEN 'open' THEN 'created' WHEN 'merge' THEN 'merged' WHEN 'close' THEN 'abandoned'
							WHEN 'approved' THEN 'reviewed' WHEN 'approval' THEN 'reviewed'
							ELSE 'updated' END;
		RETURN NEXT cdviz.webhook_cdevent('change.' || pred, src,
			CASE pred WHEN 'created' THEN o ->> 'created_at'
					  WHEN 'merged' THEN coalesce(o ->> 'merged_at', o ->> 'updated_at')
					  ELSE o ->> 'updated_at' END,
			o ->> 'url',
			jsonb_build_object('repository', repo_ref)
			|| CASE WHEN pred = 'created' THEN jsonb_build_object('description', nullif(o ->> 'title', ''))
					ELSE '{}' END);

	WHEN 'push' THEN
		IF body ->> 'before' ~ '^0+$' THEN
			pred := 'created';
		ELSIF body ->> 'after' ~ '^0+$' THEN
			pred := 'deleted';
		ELSE
			RETURN NEXT jsonb_build_object('ignored', format('push to %s that creates or deletes no branch', body ->> 'ref'));
			RETURN;
		END IF;
		RETURN NEXT cdviz.webhook_cdevent('branch.' || pred, src,
			CASE WHEN pred = 'created' THEN (SELECT max(c ->> 'timestamp')
											FROM jsonb_array_elements(coalesce(body -> 'commits', '[]')) c) END,
			web_url || '/-/tree/' || regexp_replace(body ->> 'ref', '^refs/heads/', ''),
			jsonb_build_object('repository', repo_ref));

	WHEN 'tag_push' THEN
		IF body ->> 'after' ~ '^0+$' THEN
			RETURN NEXT jsonb_build_object('ignored', format('tag %s deleted', body ->> 'ref'));
			RETURN;
		END IF;
		RETURN NEXT cdviz.webhook_cdevent('artifact.published', src, NULL,
			cdviz.gitlab_purl(project, regexp_replace(body ->> 'ref', '^refs/tags/', '')),
			jsonb_build_object('user', body ->> 'user_username'));

	WHEN 'release' THEN
		IF coalesce(body ->> 'action', 'create') <> 'create' THEN
			RETURN NEXT jsonb_build_object('ignored', format('release action %s', body ->> 'action'));
			RETURN;
		END IF;
		RETURN NEXT cdviz.webhook_cdevent('artifact.published', src,
			coalesce(body ->> 'released_at', body ->> 'created_at'),
			cdviz.gitlab_purl(project, body ->> 'tag'), '{}');

	WHEN 'deployment' THEN
		status := body ->> 'status';
		env := body ->> 'environment';
		ts := coalesce(body ->> 'status_changed_at', body ->> 'deployed_at');
		sha := coalesce(substring(body ->> 'commit_url' FROM '/commit/([0-9a-f]+)$'), body ->> 'short_sha');
		IF status = 'success' THEN
			RETURN NEXT cdviz.webhook_cdevent(
				'service.' || cdviz.webhook_deploy_predicate(env, project, ts::timestamptz), src, ts, project,
				jsonb_build_object('environment', jsonb_build_object('id', env, 'source', src),
								   'artifactId', cdviz.gitlab_purl(project, sha)));
		ELSIF status = 'failed' THEN
			RETURN NEXT cdviz.webhook_cdevent('incident.detected', src, ts,
				web_url || '/-/environments#deployment-' || (body ->> 'deployment_id'),
				jsonb_build_object(
					'description', format('deployment %s of %s to %s failed', body ->> 'deployment_id', project, env),
					'environment', jsonb_build_object('id', env, 'source', src),
					'service', jsonb_build_object('id', project, 'source', src),
					'artifactId', cdviz.gitlab_purl(project, sha)));
		ELSE
			RETURN NEXT jsonb_build_object('ignored', format('deployment status %s', status));
		END IF;

	ELSE
		RETURN NEXT jsonb_build_object('ignored',
			format('GitLab event %s has no CDEvents mapping', coalesce(headers ->> 'x-gitlab-event', kind)));
	END CASE;
END
$$;
COMMENT ON FUNCTION cdviz.transform_gitlab(jsonb, jsonb) IS
'cdviz: GitLab webhook transformer: Pipeline Hook -> pipelinerun queued/started/finished, Job Hook -> taskrun started/finished, Merge Request Hook -> change created/merged/abandoned/reviewed/updated, Push Hook -> branch created/deleted, Tag Push Hook and Release Hook -> artifact.published (pkg:gitlab), Deployment Hook -> service.deployed or upgraded (inventory), failed -> incident.detected. See docs/webhooks.md.';

REVOKE EXECUTE ON FUNCTION cdviz.transform_gitlab(jsonb, jsonb) FROM PUBLIC;
-- Argo CD notifications -> CDEvents 0.5.1.
--
-- Argo CD has no fixed webhook body; the user writes a template.  This
-- transformer reads the one the peer project documents, so its users keep
-- their Argo CD configuration:
--
--   {"timestamp": "{{.time}}", "context": {{toJson .context}}, "app": {{toJson .app}}}
--
-- i.e. the whole Application resource.  The body does not say which trigger
-- fired, so the state of the application decides, and the inventory tells
-- a deployment from a health recovery of what already runs.

CREATE FUNCTION cdviz.argocd_environment(app jsonb)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT coalesce(
		nullif(app #>> '{metadata,annotations,cdviz.dev/environment}', ''),
		coalesce(nullif(app #>> '{spec,destination,name}', ''),
				 regexp_replace(regexp_replace(coalesce(app #>> '{spec,destination,server}', 'in-cluster'),
											   '^[a-z]+://', ''), '/+$', ''))
		|| '/' || coalesce(nullif(app #>> '{spec,destination,namespace}', ''), 'default'))
$$;
COMMENT ON FUNCTION cdviz.argocd_environment(jsonb) IS
'cdviz: environment id of an Argo CD Application: its annotation cdviz.dev/environment, else <destination name or server host>/<destination namespace>';

CREATE FUNCTION cdviz.argocd_revision_purl(app jsonb, revision text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	-- without images, the artifact is the configuration at its revision
	SELECT CASE
		WHEN repo ~ '^https://github\.com/[^/]+/[^/]+$'
			THEN 'pkg:github/' || lower(regexp_replace(repo, '^https://github\.com/', '')) || '@' || revision
		ELSE 'pkg:generic/' || lower(app #>> '{metadata,name}') || '@' || revision
			 || '?vcs_url=' || replace(replace(repo, ':', '%3A'), '@', '%40')
	END
	FROM (SELECT regexp_replace(coalesce(app #>> '{spec,source,repoURL}', app #>> '{spec,sources,0,repoURL}', ''),
								'(\.git)?/*$', '') AS repo) r
$$;
COMMENT ON FUNCTION cdviz.argocd_revision_purl(jsonb, text) IS
'cdviz: package URL of an Argo CD Application''s source at a revision: pkg:github/<owner>/<repo>@<rev> for GitHub sources, else pkg:generic/<app>@<rev>?vcs_url=<repoURL>';

CREATE FUNCTION cdviz.transform_argocd(headers jsonb, body jsonb)
RETURNS SETOF jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	app jsonb := body -> 'app';
	name text := body #>> '{app,metadata,name}';
	ns text := coalesce(body #>> '{app,metadata,namespace}', 'argocd');
	src text := '/webhooks/' || coalesce(headers ->> 'x-cdviz-route', 'argocd') || '/' || ns || '/' || name;
	env text := cdviz.argocd_environment(body -> 'app');
	env_ref jsonb := jsonb_build_object('id', env, 'source', src);
	phase text := body #>> '{app,status,operationState,phase}';
	health text := body #>> '{app,status,health,status}';
	revision text := coalesce(body #>> '{app,status,operationState,syncResult,revision}',
							  body #>> '{app,status,sync,revision}');
	ts text := coalesce(body ->> 'timestamp', body #>> '{app,status,reconciledAt}');
	deploy_ts text;
	images text[];
	svc text;
	artifact text;
	n integer := 0;
	inc record;
BEGIN
	IF jsonb_typeof(app) <> 'object' OR name IS NULL THEN
		RETURN NEXT jsonb_build_object('ignored', 'not an Argo CD notification: no "app" object with metadata.name');
		RETURN;
	END IF;
	SELECT array_agg(i ORDER BY i) INTO images
	FROM jsonb_array_elements_text(coalesce(app #> '{status,summary,images}', '[]')) AS i;

	-- one service per image when there are several, else the application
	FOR svc, artifact IN
		SELECT CASE WHEN cardinality(images) > 1 THEN name || '/' || regexp_replace(split_part(split_part(i, '@', 1), ':', 1), '^.*/', '')
					ELSE name END,
			   cdviz.webhook_oci_purl(i)
		FROM unnest(images) AS i
		UNION ALL
		SELECT name, cdviz.argocd_revision_purl(app, revision)
		WHERE coalesce(cardinality(images), 0) = 0
	LOOP
		IF app #>> '{metadata,deletionTimestamp}' IS NOT NULL THEN
			RETURN NEXT cdviz.webhook_cdevent('service.removed', src, app #>> '{metadata,deletionTimestamp}', svc,
				jsonb_build_object('environment', env_ref));
			n := n + 1;
		ELSIF phase IN ('Failed', 'Error') OR health = 'Degraded' THEN
			-- one incident per application and revision: a failed sync and
			-- the degraded health that follows are the same problem
			IF svc = name OR n = 0 THEN
				RETURN NEXT cdviz.webhook_cdevent('incident.detected', src, ts,
					coalesce(body #>> '{context,argocdUrl}', '') || '/applications/' || ns || '/' || name
						|| '/incidents/' || coalesce(revision, 'unknown'),
					jsonb_build_object(
						'description', CASE WHEN phase IN ('Failed', 'Error')
											THEN format('sync %s: %s', lower(phase), app #>> '{status,operationState,message}')
											ELSE format('health degraded: %s', coalesce(app #>> '{status,health,message}', 'no message')) END,
						'environment', env_ref,
						'service', jsonb_build_object('id', name, 'source', src),
						'artifactId', artifact));
				n := n + 1;
			END IF;
		ELSIF phase = 'Succeeded' AND health = 'Healthy' AND artifact IS NOT NULL THEN
			-- a notification about what already runs is no deployment
			IF NOT EXISTS (SELECT FROM cdviz.environment_state s
						   WHERE s.environment_id = env AND s.service_id = svc AND s.artifact_id = artifact) THEN
				deploy_ts := coalesce(app #>> '{status,operationState,finishedAt}', ts);
				RETURN NEXT cdviz.webhook_cdevent(
					'service.' || cdviz.webhook_deploy_predicate(env, svc, deploy_ts::timestamptz), src, deploy_ts, svc,
					jsonb_build_object('environment', env_ref, 'artifactId', artifact));
				n := n + 1;
			END IF;
		END IF;
	END LOOP;

	-- healthy again: resolve what is still open for the application there
	IF health = 'Healthy' AND coalesce(phase, 'Succeeded') = 'Succeeded'
	   AND app #>> '{metadata,deletionTimestamp}' IS NULL THEN
		FOR inc IN
			SELECT DISTINCT l.subject_id
			FROM cdviz.cdevents_lake l
			WHERE l.subject = 'incident' AND l.predicate IN ('detected', 'reported')
			  AND l.payload #>> '{subject,content,environment,id}' = env
			  AND l.payload #>> '{subject,content,service,id}' = name
			  AND l."timestamp" <= ts::timestamptz
			  AND NOT EXISTS (SELECT FROM cdviz.cdevents_lake r
							  WHERE r.subject = 'incident' AND r.subject_id = l.subject_id
								AND r.predicate = 'resolved')
		LOOP
			RETURN NEXT cdviz.webhook_cdevent('incident.resolved', src, ts, inc.subject_id,
				jsonb_build_object('description', 'application healthy again',
								   'environment', env_ref,
								   'service', jsonb_build_object('id', name, 'source', src)));
			n := n + 1;
		END LOOP;
	END IF;

	IF n = 0 THEN
		RETURN NEXT jsonb_build_object('ignored',
			CASE WHEN phase = 'Succeeded' AND health = 'Healthy'
				 THEN format('%s already runs revision %s in %s', name, coalesce(revision, '?'), env)
				 ELSE format('application %s: sync %s, health %s', name, coalesce(phase, 'none'), coalesce(health, 'unknown')) END);
	END IF;
END
$$;
COMMENT ON FUNCTION cdviz.transform_argocd(jsonb, jsonb) IS
'cdviz: Argo CD notifications transformer (template {"timestamp": ..., "context": {{toJson .context}}, "app": {{toJson .app}}}): sync succeeded and healthy -> service.deployed (first in that environment) or service.upgraded, one per image of status.summary.images (pkg:oci), else the source revision; sync failed or health degraded -> incident.detected; healthy again -> incident.resolved; deletionTimestamp -> service.removed. The environment is <cluster>/<namespace> unless the annotation cdviz.dev/environment names it.';

REVOKE EXECUTE ON FUNCTION cdviz.transform_argocd(jsonb, jsonb) FROM PUBLIC;
-- Tekton CloudEvents -> CDEvents 0.5.1.  Tekton Pipelines sends
-- CloudEvents in binary mode: the type in the ce-type header
-- (dev.tekton.event.pipelinerun.started.v1, ...), the run in the body
-- ({"pipelineRun": {...}} or {"taskRun": {...}}).  The delivery key comes
-- from ce-source and ce-id.

CREATE FUNCTION cdviz.tekton_outcome(condition jsonb)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT CASE
		WHEN condition ->> 'status' = 'True' THEN 'success'
		WHEN condition ->> 'reason' IN ('Cancelled', 'PipelineRunCancelled', 'TaskRunCancelled',
										'StoppedRunFinally', 'CancelledRunFinally') THEN 'cancel'
		WHEN condition ->> 'reason' IN ('PipelineRunTimeout', 'TaskRunTimeout', 'CouldntGetPipeline',
										'CouldntGetTask', 'PipelineValidationFailed', 'TaskRunValidationFailed',
										'TaskRunImagePullFailed', 'CreateContainerConfigError') THEN 'error'
		ELSE 'failure'
	END
$$;
COMMENT ON FUNCTION cdviz.tekton_outcome(jsonb) IS
'cdviz: CDEvents outcome of a Tekton Succeeded condition: True -> success; reason *Cancelled / StoppedRunFinally -> cancel; timeouts, missing or invalid definitions, image pull failures -> error; other failures -> failure';

CREATE FUNCTION cdviz.transform_tekton(headers jsonb, body jsonb)
RETURNS SETOF jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	ce_type text := coalesce(headers ->> 'ce-type', body ->> 'type');
	parts text[] := regexp_match(ce_type, '^dev\.tekton\.event\.(pipelinerun|taskrun)\.([a-z]+)\.v1$');
	subject text := parts[1];
	state text := parts[2];
	run jsonb;
	ns text;
	src text;
	cond jsonb;
	pred text;
	ts text;
	pipeline_run text;
BEGIN
	IF parts IS NULL THEN
		RETURN NEXT jsonb_build_object('ignored', format('CloudEvent type %s is not a Tekton run event', coalesce(ce_type, '(none)')));
		RETURN;
	END IF;
	run := coalesce(body -> (CASE subject WHEN 'pipelinerun' THEN 'pipelineRun' ELSE 'taskRun' END),
					body #> ARRAY['data', CASE subject WHEN 'pipelinerun' THEN 'pipelineRun' ELSE 'taskRun' END]);
	IF jsonb_typeof(run) <> 'object' THEN
		RETURN NEXT jsonb_build_object('ignored', format('%s without a run object in the body', ce_type));
		RETURN;
	END IF;
	ns := coalesce(run #>> '{metadata,namespace}', 'default');
	src := '/webhooks/' || coalesce(headers ->> 'x-cdviz-route', 'tekton') || '/' || ns;
	SELECT c INTO cond FROM jsonb_array_elements(coalesce(run #> '{status,conditions}', '[]')) c
	WHERE c ->> 'type' = 'Succeeded' LIMIT 1;

	pred := CASE state
		WHEN 'started' THEN 'started'
		WHEN 'successful' THEN 'finished'
		WHEN 'failed' THEN 'finished'
		WHEN 'unknown' THEN CASE WHEN subject = 'pipelinerun' AND cond ->> 'reason' IN ('Pending', 'PipelineRunPending')
								 THEN 'queued' END
		END;
	IF pred IS NULL THEN
		RETURN NEXT jsonb_build_object('ignored', format('%s (%s)', ce_type, coalesce(cond ->> 'reason', 'no reason')));
		RETURN;
	END IF;
	ts := CASE pred
		WHEN 'queued' THEN run #>> '{metadata,creationTimestamp}'
		WHEN 'started' THEN coalesce(run #>> '{status,startTime}', run #>> '{metadata,creationTimestamp}')
		ELSE coalesce(run #>> '{status,completionTime}', cond ->> 'lastTransitionTime') END;

	IF subject = 'pipelinerun' THEN
		RETURN NEXT cdviz.webhook_cdevent('pipelinerun.' || pred, src, ts, ns || '/' || (run #>> '{metadata,name}'),
			jsonb_build_object(
				'pipelineName', coalesce(run #>> '{metadata,labels,tekton.dev/pipeline}',
										 run #>> '{spec,pipelineRef,name}', run #>> '{metadata,name}'),
				-- pipelinerun.started requires a URI: the run's own link
				-- (annotation cdviz.dev/uri, e.g. its Tekton Dashboard
				-- page), else a URN naming it
				'uri', coalesce(run #>> '{metadata,annotations,cdviz.dev/uri}',
								'urn:tekton:' || ns || ':pipelinerun:' || (run #>> '{metadata,name}')),
				'outcome', CASE WHEN pred = 'finished' THEN cdviz.tekton_outcome(cond) END,
				'errors', CASE WHEN pred = 'finished' AND cond ->> 'status' <> 'True'
							   THEN concat_ws(': ', cond ->> 'reason', cond ->> 'message') END));
	ELSE
		IF pred = 'queued' THEN
			RETURN;
		END IF;
		pipeline_run := run #>> '{metadata,labels,tekton.dev/pipelineRun}';
		RETURN NEXT cdviz.webhook_cdevent('taskrun.' || pred, src, ts, ns || '/' || (run #>> '{metadata,name}'),
			jsonb_build_object(
				'taskName', coalesce(run #>> '{metadata,labels,tekton.dev/pipelineTask}',
									 run #>> '{metadata,labels,tekton.dev/task}',
									 run #>> '{spec,taskRef,name}', run #>> '{metadata,name}'),
				'uri', coalesce(run #>> '{metadata,annotations,cdviz.dev/uri}',
								'urn:tekton:' || ns || ':taskrun:' || (run #>> '{metadata,name}')),
				'pipelineRun', CASE WHEN pipeline_run IS NOT NULL
									THEN jsonb_build_object('id', ns || '/' || pipeline_run, 'source', src) END,
				'outcome', CASE WHEN pred = 'finished' THEN cdviz.tekton_outcome(cond) END,
				'errors', CASE WHEN pred = 'finished' AND cond ->> 'status' <> 'True'
							   THEN concat_ws(': ', cond ->> 'reason', cond ->> 'message') END));
	END IF;
END
$$;
COMMENT ON FUNCTION cdviz.transform_tekton(jsonb, jsonb) IS
'cdviz: Tekton CloudEvents transformer (binary mode, ce-type dev.tekton.event.<pipelinerun|taskrun>.<state>.v1): started -> started, successful / failed -> finished with the outcome of the Succeeded condition, a pending pipeline run (unknown, reason Pending) -> pipelinerun.queued; running and other unknown states are ignored. Run ids are <namespace>/<name>, their uri the annotation cdviz.dev/uri or urn:tekton:<namespace>:<kind>:<name>; a task run names its pipeline run (label tekton.dev/pipelineRun).';

REVOKE EXECUTE ON FUNCTION cdviz.transform_tekton(jsonb, jsonb) FROM PUBLIC;
