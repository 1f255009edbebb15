
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
