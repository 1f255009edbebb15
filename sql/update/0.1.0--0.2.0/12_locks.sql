
-- Transaction locks no SQL role can take (src/store/locks.c): writers take
-- turns on keys with them, and a read-only role calling pg_advisory_lock()
-- with the same keys cannot hold a writer up.
CREATE FUNCTION cdviz._lock_keys(class integer, keys integer[])
RETURNS void
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'cdviz_lock_keys';
COMMENT ON FUNCTION cdviz._lock_keys(integer, integer[]) IS
'cdviz internal: takes the transaction locks (class, key) for each key, in array order (pass them sorted); advisory locks of a kind that pg_advisory_lock() cannot take (pg_locks: locktype advisory, objsubid 3)';
REVOKE EXECUTE ON FUNCTION cdviz._lock_keys(integer, integer[]) FROM PUBLIC;

CREATE OR REPLACE FUNCTION cdviz.ensure_partition(ts timestamptz)
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

-- Dropping a partition takes the whole lake (ACCESS EXCLUSIVE): waiting
-- for a reader's open transaction, it would queue every writer behind it.
-- So it waits one second at most and says why it gave up.
CREATE OR REPLACE FUNCTION cdviz.drop_partitions_before(cutoff timestamptz)
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

CREATE OR REPLACE FUNCTION cdviz.rebuild_summaries()
RETURNS TABLE (summary text, row_count bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	summaries text[] := ARRAY['pipeline_run_summaries', 'task_run_summaries', 'build_summaries',
							  'branch_summaries',
							  'test_case_run_summaries', 'test_suite_run_summaries',
							  'artifact_summaries', 'change_summaries', 'incident_summaries',
							  'event_counts_hourly', 'test_case_outcomes_daily'];
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
	-- DELETE, not TRUNCATE: TRUNCATE waits for every open transaction that
	-- read these tables (a dashboard's), holding the lake meanwhile
	FOREACH t IN ARRAY summaries || 'summary_queue'::text
	LOOP
		EXECUTE format('DELETE FROM cdviz.%I', t);
	END LOOP;
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
	FOREACH t IN ARRAY summaries
	LOOP
		EXECUTE format('ANALYZE cdviz.%I', t);
		summary := t;
		EXECUTE format('SELECT count(*) FROM cdviz.%I', t) INTO row_count;
		RETURN NEXT;
	END LOOP;
END
$$;
