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

-- A batch stored all or none, from SQL.  (Webhook deliveries hand their
-- events to the store in C: src/webhook/webhook_delivery.c.)
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
'cdviz: ingests dead letter id again (after the data or cdviz.validation was fixed) and returns the lake id; marks it replayed. raw is read as its envelope says: a CloudEvent (structured, or a batch element) gives its data; a binary-mode body is judged with the ce-* headers it came with, as the receiver judged it. Still invalid: raises SQLSTATE 22023 with the current problems, which are recorded on the dead letter. A webhook body the receiver refused (origin webhook), or an item a source''s transformer raised on (envelope mode transformer), is not a CDEvent: raises 42809. Replaying twice is harmless. Example: SELECT cdviz.replay_rejected(42);';

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
		  -- a webhook's dead letter is the tool's payload, not a CDEvent,
		  -- nor is what a source's transformer raised on
		  AND e.origin <> 'webhook'
		  AND e.envelope->>'mode' IS DISTINCT FROM 'transformer'
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
'cdviz: replays every pending dead letter (optionally only of one origin, received since a time) and returns how many were stored and how many are still invalid (their problems are updated). Webhook deliveries the receiver refused (origin webhook) are tools'' payloads, not CDEvents: they are kept for inspection and not replayed; nor are the items a source''s transformer raised on (envelope mode transformer: see cdviz.retransform_source()). Example: SELECT * FROM cdviz.replay_rejected(''http'');';

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
