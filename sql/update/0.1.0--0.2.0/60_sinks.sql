-- Sinks: progress knows the cluster whose transaction ids it holds, and is
-- re-based by the dispatcher when restored into another (60_sinks.sql).
-- Which cluster wrote a row of progress or of the outbox: transaction
-- ids and snapshots have a meaning only there.  A streaming standby has
-- its primary's identifier (and its transaction ids), so a failover keeps
-- it; a cluster restored from pg_dump has a new one.
CREATE FUNCTION cdviz._cluster_id()
RETURNS bigint
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT system_identifier FROM pg_catalog.pg_control_system() $$;
COMMENT ON FUNCTION cdviz._cluster_id() IS
'cdviz internal: this cluster''s system identifier (pg_control_system()), shared by its streaming standbys';

-- Filled, then given their default: a default given with ADD COLUMN
-- would be kept as the column's "missing value", which a fresh install
-- has not.
ALTER TABLE cdviz.lake_batches ADD COLUMN cluster_id bigint;
UPDATE cdviz.lake_batches SET cluster_id = cdviz._cluster_id();
ALTER TABLE cdviz.lake_batches ALTER COLUMN cluster_id SET DEFAULT cdviz._cluster_id(),
	ALTER COLUMN cluster_id SET NOT NULL;
COMMENT ON COLUMN cdviz.lake_batches.cluster_id IS 'the cluster whose transaction xid is (cdviz._cluster_id()); rows restored from another cluster are dropped when the dispatcher re-bases the sinks';

-- Progress written by 0.1.0 is this cluster's, and a backfill in
-- progress delivers the events that existed at the sink's creation.
ALTER TABLE cdviz.sink_progress ADD COLUMN cluster_id bigint;
ALTER TABLE cdviz.sink_progress ADD COLUMN created_until bigint;
UPDATE cdviz.sink_progress SET cluster_id = cdviz._cluster_id(),
	created_until = CASE WHEN backfill_until IS NOT NULL THEN backfill_until END;
ALTER TABLE cdviz.sink_progress ALTER COLUMN cluster_id SET DEFAULT cdviz._cluster_id();
COMMENT ON COLUMN cdviz.sink_progress.cluster_id IS 'the cluster whose transaction ids snap, next_snap and pos_xid are (cdviz._cluster_id()); NULL: this one. Progress restored into another cluster is re-based by the dispatcher before it delivers anything';
COMMENT ON COLUMN cdviz.sink_progress.created_until IS 'the highest lake id when the sink was created with start_at (or when it was re-based): the backfill delivers an event up to it only if imported since start_at, and every event above it';
COMMENT ON COLUMN cdviz.sink_progress.backfill_until IS 'backfill: the highest lake id to deliver by id, that existed at creation or at a re-base (NULL: no backfill)';

-- cdviz.create_sink(), which fills created_until, is replaced by
-- 44_secrets.sql.

-- What a sink still owes of one outbox row: its last N events.  The
-- window is (snap, next_snap] and pos the last event delivered in it
-- (see cdviz.sink_progress); a row written by another cluster than the
-- progress (a restore, the dispatcher not yet run) is owed whole, its
-- transaction id being no transaction of the progress's cluster.  Plain
-- SQL without SET, so that the planner inlines it into sink_status.
CREATE FUNCTION cdviz._sink_owed(p cdviz.sink_progress, b cdviz.lake_batches)
RETURNS integer
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
	SELECT CASE
		WHEN b.cluster_id <> coalesce(p.cluster_id, b.cluster_id) THEN cardinality(b.ids)
		WHEN pg_catalog.pg_visible_in_snapshot(b.xid, p.snap) THEN 0
		WHEN p.next_snap IS NULL OR p.pos_xid IS NULL
			OR NOT pg_catalog.pg_visible_in_snapshot(b.xid, p.next_snap) THEN cardinality(b.ids)
		WHEN (b.xid, b.batch_id) = (p.pos_xid, p.pos_batch)
			THEN greatest(cardinality(b.ids) - p.pos_ord, 0)
		WHEN (b.xid, b.batch_id) > (p.pos_xid, p.pos_batch) THEN cardinality(b.ids)
		ELSE 0
	END
$$;
COMMENT ON FUNCTION cdviz._sink_owed(cdviz.sink_progress, cdviz.lake_batches) IS
'cdviz internal: how many events at the end of an outbox row a sink has not passed yet (its pending events there, before its filter)';

-- Progress restored from another cluster (pg_dump + pg_restore) holds
-- transaction ids of that cluster: read as ids of this one, events stored
-- here could look delivered and be skipped.  The dispatcher calls this
-- before it delivers anything.  With the restored snapshots, against the
-- restored outbox rows, it finds each sink's lowest lake id still owed
-- (its backfill counts too); the sink then delivers by lake id, as a
-- backfill, every event above it up to the newest stored one (those
-- stored here since the restore included), and its window starts again
-- from a snapshot of this cluster.  Owed events are delivered, none
-- skipped; events above the lowest owed one that had been delivered are
-- delivered again; a sink that had delivered everything delivers nothing
-- again.  The restored outbox rows go: their ids are the backfill's now.
CREATE FUNCTION cdviz._rebase_sinks()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	here CONSTANT bigint := cdviz._cluster_id();
	newest bigint;
	rebased integer;
BEGIN
	UPDATE cdviz.sink_progress SET cluster_id = here WHERE cluster_id IS NULL;
	IF NOT EXISTS (SELECT FROM cdviz.sink_progress WHERE cluster_id <> here) THEN
		RETURN 0;
	END IF;
	-- As in create_sink(): writers in flight finish first and new ones
	-- wait for our commit, so every event up to newest is in a
	-- transaction visible in the snapshot the window starts from, and
	-- every later one in a transaction that is not.
	LOCK TABLE cdviz.cdevents_lake IN SHARE MODE;
	SELECT max(id) INTO newest FROM cdviz.cdevents_lake;
	WITH owed AS (
		SELECT p.sink_id,
			   least(CASE WHEN p.backfill_until IS NOT NULL THEN p.backfill_pos END,
					 (SELECT min(u.id) - 1
					  FROM cdviz.lake_batches b,
						   unnest(b.ids) WITH ORDINALITY AS u(id, ord)
					  WHERE u.ord > cardinality(b.ids) - cdviz._sink_owed(p, b))) AS after
		FROM cdviz.sink_progress p
		WHERE p.cluster_id <> here
	)
	UPDATE cdviz.sink_progress p
	SET snap = pg_current_snapshot(), next_snap = NULL,
		pos_xid = NULL, pos_batch = NULL, pos_ord = NULL,
		backfill_until = CASE WHEN o.after < newest THEN newest END,
		backfill_pos = CASE WHEN o.after < newest THEN o.after END,
		created_until = coalesce(p.created_until, o.after, newest),
		cluster_id = here
	FROM owed o
	WHERE o.sink_id = p.sink_id;
	GET DIAGNOSTICS rebased = ROW_COUNT;
	DELETE FROM cdviz.lake_batches WHERE cluster_id <> here;
	RETURN rebased;
END
$$;
COMMENT ON FUNCTION cdviz._rebase_sinks() IS
'cdviz internal: called by the dispatcher; re-bases the progress of sinks restored from another cluster (see cdviz.sink_progress.cluster_id) on a backfill by lake id from the lowest id each still owed, and returns how many it re-based';
REVOKE EXECUTE ON FUNCTION cdviz._rebase_sinks() FROM PUBLIC;

CREATE OR REPLACE VIEW cdviz.sink_status AS
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
	SELECT sum(cdviz._sink_owed(p, b)) AS pending, min(b.stored_at) AS oldest
	FROM cdviz.lake_batches b
	WHERE cdviz._sink_owed(p, b) > 0
) w ON true
LEFT JOIN LATERAL (
	SELECT count(*) AS pending, min(l.imported_at) AS oldest
	FROM cdviz.cdevents_lake l
	WHERE p.backfill_until IS NOT NULL AND l.id > p.backfill_pos AND l.id <= p.backfill_until
	  AND (l.id > p.created_until OR l.imported_at >= s.start_at)
) bf ON true;
