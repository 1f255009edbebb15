-- Transformers of sources, with the webhooks' contract (70_webhooks.sql):
-- a folder or s3 source of format junit, tap or metadata, or an oci
-- source, may name a function (meta jsonb, body jsonb) RETURNS SETOF
-- jsonb, which its worker calls for each file, object or new or moved tag
-- in the transaction that stores the events (src/webhook/source_item.c).  Its output replaces the built-in
-- mapping of the format.  A transformer that raises keeps the item in
-- cdviz.rejected_events (envelope {"mode": "transformer", ...}), which
-- cdviz.retransform_source() runs the fixed transformer over again.

-- The source's current transformer over one dead letter a transformer
-- left: its events stored and the dead letter removed, or the new error
-- recorded on it.
CREATE FUNCTION cdviz._source_retransform(id bigint,
										  OUT stored bigint, OUT duplicates bigint, OUT rejected bigint,
										  OUT error text)
RETURNS record
LANGUAGE c STRICT VOLATILE
AS 'MODULE_PATHNAME', 'cdviz_source_retransform';
COMMENT ON FUNCTION cdviz._source_retransform(bigint) IS
'cdviz internal: runs the source''s current transformer over the item a transformer''s dead letter keeps, stores its events and removes the dead letter, or records the new error on it; see cdviz.retransform_source()';

CREATE FUNCTION cdviz.retransform_source(name text, since timestamptz DEFAULT '-infinity',
										 OUT items bigint, OUT stored bigint, OUT duplicates bigint,
										 OUT rejected bigint, OUT failed bigint)
RETURNS record
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s cdviz.sources;
	d record;
	r record;
BEGIN
	SELECT * INTO s FROM cdviz.sources x WHERE x.name = retransform_source.name;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'source "%" does not exist', name USING ERRCODE = 'undefined_object';
	END IF;
	IF s.transformer IS NULL THEN
		RAISE EXCEPTION 'source "%" has no transformer', name
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = format('SELECT cdviz.alter_source(%L, transformer => ''my_transform(jsonb,jsonb)'');', name);
	END IF;
	items := 0; stored := 0; duplicates := 0; rejected := 0; failed := 0;
	-- locked as they come: a run in another session waits for this one,
	-- then skips the dead letters this one removed
	FOR d IN
		SELECT e.id, e.origin_ref FROM cdviz.rejected_events e
		WHERE e.envelope->>'mode' = 'transformer' AND e.envelope->>'source' = retransform_source.name
		  AND e.received_at >= since AND e.replayed_at IS NULL
		ORDER BY e.id
		FOR UPDATE OF e
	LOOP
		SELECT * INTO r FROM cdviz._source_retransform(d.id) t;
		items := items + 1;
		stored := stored + r.stored;
		duplicates := duplicates + r.duplicates;
		IF r.error IS NOT NULL THEN
			failed := failed + 1;
			CONTINUE;
		END IF;
		rejected := rejected + r.rejected;
		-- the counters of the file, object or oci source: the item is no
		-- longer rejected (a registry's tags have no counters of their own)
		UPDATE cdviz.fs_files f
		SET events = f.events + r.stored, duplicates = f.duplicates + r.duplicates,
			rejected = greatest(f.rejected - 1 + r.rejected, 0)
		WHERE s.kind = 'folder' AND f.path = d.origin_ref;
		UPDATE cdviz.s3_objects o
		SET events = o.events + r.stored, duplicates = o.duplicates + r.duplicates,
			rejected = greatest(o.rejected - 1 + r.rejected, 0)
		WHERE s.kind = 's3' AND 's3://' || o.bucket || '/' || o.key = d.origin_ref;
		UPDATE cdviz.source_progress p
		SET events = p.events + r.stored, duplicates = p.duplicates + r.duplicates,
			rejected = greatest(p.rejected - 1 + r.rejected, 0)
		WHERE s.kind = 'oci' AND p.source_id = s.id;
	END LOOP;
END
$$;
COMMENT ON FUNCTION cdviz.retransform_source(text, timestamptz) IS
'cdviz: runs the source''s current transformer again over the items it raised on (kept in cdviz.rejected_events) since a time, in the order they were kept; stores their events and removes each dead letter it recovers (one it raises on again keeps the new error). Safe to repeat, and to run from two sessions at once (the second waits for the first): the events get the ids and times they would have had, which the lake stores once. Returns the items processed, events stored and duplicated, invalid events (dead letters of their own) and items still failing. Example: SELECT * FROM cdviz.retransform_source(''drops'', now() - interval ''1 day'');';

-- The built-in mapping of test reports, for transformers that start from
-- it (attach an environment, a pipeline run...).  It holds the model it is
-- given in memory, about 1 kB a case: not PUBLIC's to call, and held to
-- the case limit of the source meta names.
CREATE FUNCTION cdviz.report_cdevents(meta jsonb, body jsonb, environment text DEFAULT NULL)
RETURNS SETOF jsonb
LANGUAGE c STABLE
AS 'MODULE_PATHNAME', 'cdviz_report_cdevents';
COMMENT ON FUNCTION cdviz.report_cdevents(jsonb, jsonb, text) IS
'cdviz: the events a source of format junit or tap stores without a transformer, made of the meta and body it hands a transformer (environment: the test runs'' environment.id; NULL: the suite''s hostname, else unknown). A body of more suites and cases than the max_report_cases of the source meta names (default 100000) raises SQLSTATE 54000. Executable by cdviz_reader, of which a transformer''s owner is a member. Example, in a transformer: RETURN QUERY SELECT e FROM cdviz.report_cdevents(meta, body, ''staging'') e;';
REVOKE EXECUTE ON FUNCTION cdviz.report_cdevents(jsonb, jsonb, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz.report_cdevents(jsonb, jsonb, text) TO cdviz_reader;

REVOKE EXECUTE ON FUNCTION cdviz._source_retransform(bigint),
	cdviz.retransform_source(text, timestamptz) FROM PUBLIC;
