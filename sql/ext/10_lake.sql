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

-- Not registered with pg_extension_config_dump: its rows live in monthly
-- partitions that are not the extension's, which pg_dump writes with their
-- rows (see the registrations below).
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
-- Not registered with pg_extension_config_dump: its rows live in its
-- partitions, which pg_dump writes (see the end of this file).
-- lz4 compresses and decompresses payloads several times faster than
-- pglz, the default; partitions inherit it.  Only where the server was built with lz4.
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
GRANT SELECT ON cdviz.cdevents_lake TO cdviz_reader;
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

-- Transaction locks no SQL role can take (src/common/locks.c): writers take
-- turns on keys with them, and a read-only role calling pg_advisory_lock()
-- with the same keys cannot hold a writer up.
CREATE FUNCTION cdviz._lock_keys(class integer, keys integer[])
RETURNS void
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'cdviz_lock_keys';
COMMENT ON FUNCTION cdviz._lock_keys(integer, integer[]) IS
'cdviz internal: takes the transaction locks (class, key) for each key, in array order (pass them sorted); advisory locks of a kind that pg_advisory_lock() cannot take (pg_locks: locktype advisory, objsubid 3)';
REVOKE EXECUTE ON FUNCTION cdviz._lock_keys(integer, integer[]) FROM PUBLIC;

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
	PERFORM cdviz._lock_keys(pg_catalog.hashtext('cdviz.cdevents_lake'), ARRAY[pg_catalog.hashtext(part_name)]);
	part := to_regclass('cdviz.' || part_name);
	IF part IS NULL THEN
		-- Made apart, then attached: CREATE TABLE ... PARTITION OF would
		-- lock the lake against every reader (ACCESS EXCLUSIVE), so the
		-- open transaction of a read-only role would stall ingestion, where
		-- ATTACH PARTITION takes SHARE UPDATE EXCLUSIVE, which neither
		-- readers nor writers of the lake conflict with.  Attaching gives
		-- the new, empty table the lake's indexes and keys.
		EXECUTE format('CREATE TABLE cdviz.%I (LIKE cdviz.cdevents_lake INCLUDING DEFAULTS INCLUDING COMPRESSION INCLUDING STORAGE)',
					   part_name);
		EXECUTE format('ALTER TABLE cdviz.cdevents_lake ATTACH PARTITION cdviz.%I FOR VALUES FROM (%L) TO (%L)',
					   part_name, month_start, month_start + interval '1 month');
		part := to_regclass('cdviz.' || part_name);
	END IF;
	RETURN part;
END
$$;
COMMENT ON FUNCTION cdviz.ensure_partition(timestamptz) IS
'cdviz: creates (if missing) and returns the monthly lake partition that holds ts (months are UTC). Called by the ingest path.';

-- Dropping a partition takes the whole lake (ACCESS EXCLUSIVE): waiting
-- for a reader's open transaction, it would queue every writer behind it.
-- So it waits one second at most and says why it gave up.
CREATE FUNCTION cdviz.drop_partitions_before(cutoff timestamptz)
RETURNS SETOF text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '1s'
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
			BEGIN
				EXECUTE format('DROP TABLE %s', r.part);
			EXCEPTION WHEN lock_not_available THEN
				RAISE EXCEPTION 'lake partition % is in use: not dropped', r.part
					USING ERRCODE = 'lock_not_available',
						  DETAIL = 'Dropping a partition needs the lake to itself; open transactions that read it (a dashboard''s among them) held it for more than 1 s, and ingestion would have waited behind the drop.',
						  HINT = 'Run cdviz.drop_partitions_before() again, or end the long transactions listed in pg_stat_activity first.';
			END;
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
	replayed_event_id bigint,
	envelope		jsonb
);
CREATE INDEX rejected_events_received_at ON cdviz.rejected_events (received_at);
CREATE INDEX rejected_events_pending ON cdviz.rejected_events (id) WHERE replayed_at IS NULL;

COMMENT ON TABLE cdviz.rejected_events IS
'cdviz: dead letters — input that was not a valid event, with its origin and problems; see cdviz.replay_rejected()';
COMMENT ON COLUMN cdviz.rejected_events.origin IS 'sql, http, fs, s3, nats, kafka, oci or webhook';
COMMENT ON COLUMN cdviz.rejected_events.origin_ref IS 'where exactly: HTTP peer and path, file:line, s3://bucket/key#n, NATS subject#stream sequence, Kafka topic/partition@offset, registry/repository:tag@digest, batch element index';
COMMENT ON COLUMN cdviz.rejected_events.raw IS 'the input text as received';
COMMENT ON COLUMN cdviz.rejected_events.problems IS 'JSON array of {"path": ..., "message": ...}';
COMMENT ON COLUMN cdviz.rejected_events.replayed_at IS 'when a replay stored it as an event (NULL while pending)';
COMMENT ON COLUMN cdviz.rejected_events.replayed_event_id IS 'lake id of the event the replay stored';
COMMENT ON COLUMN cdviz.rejected_events.envelope IS 'how raw came, when that says how to read it: {"mode": "binary", "headers": {...}} (a CloudEvents binary-mode request: raw is its body, headers its Content-Type and ce-* headers as received), {"mode": "structured"} (raw is one CloudEvent), {"mode": "batch"} (raw is one CloudEvent of a batch) or {"mode": "transformer", "source": ..., "transformer": ..., "sqlstate": ..., "meta": {...}} (an item a source''s transformer raised on: raw is the body it was handed, '''' for none; see cdviz.retransform_source()); NULL for plain JSON. cdviz.replay_rejected() reads raw as it says';

-- pg_dump keeps the dead letters and the sequences' positions (a restored
-- lake goes on with ids above the old ones).  cdviz.cdevents_lake itself is
-- not registered with pg_extension_config_dump: a partitioned table holds
-- no rows of its own (pg_dump skips its data), and its monthly partitions,
-- which hold them, are not the extension's: pg_dump writes them, rows and
-- all, as tables of their own (TAP 061_dump_restore.pl).
SELECT pg_catalog.pg_extension_config_dump('cdviz.cdevents_lake_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.rejected_events', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.rejected_events_id_seq', '');
