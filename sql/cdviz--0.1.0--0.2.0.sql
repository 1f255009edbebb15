-- cdviz update from 0.1.0 to 0.2.0: every change to an installed object since
-- release 0.1.0, in the order of sql/ext/.  An install updated by it equals a fresh install of 0.2.0
-- (TAP test 060_upgrade.pl compares their schema dumps).
\echo Use "ALTER EXTENSION cdviz UPDATE TO '0.2.0'" to load this file. \quit

-- pg_dump keeps every table with data or progress and the sequences behind
-- them (0.1.0 left these out: a restore lost the dead letters and the
-- pollers' progress, and restarted the lake's ids at 1).
SELECT pg_catalog.pg_extension_config_dump('cdviz.cdevents_lake_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.rejected_events', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.rejected_events_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.fs_files', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.s3_objects', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.source_polls', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.sinks_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.lake_batches_batch_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.rejected_deliveries_id_seq', '');

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
-- 30_state.sql: the lake trigger and the folds, written as SQL.  0.1.0
-- built cdviz.lake_maintain(), cdviz.fold_queued_summaries() and
-- cdviz.summaries_fold() from string templates in a DO block; 0.2.0 has one
-- copy of each fold statement, in the new cdviz._fold_events().  The text
-- below is that of sql/ext/30_state.sql, so that an updated install equals
-- a fresh one (the functions that 0.1.0 had are replaced, keeping their
-- owners, privileges and trigger).

-- The lake trigger and the folds.
--
-- cdviz._fold_events() holds the one copy of every fold statement: it folds
-- an array of lake rows into the derived tables (first_deployments,
-- artifact_changes, change_times, event_links, rework_causes,
-- rework_links) and the summaries.  Its callers only say which rows:
--
--   cdviz.lake_maintain()          the rows an insert statement stored (its
--                                  transition table), with summaries
--                                  immediate
--   cdviz.fold_queued_summaries()  the rows of the statements queued in
--                                  cdviz.summary_queue, with summaries
--                                  deferred (the cdviz summaries worker)
--   cdviz.summaries_fold()         the rows of a range of the lake, summaries
--                                  only (cdviz.rebuild_summaries())
--
-- Each caller hands over at most about 10,000 rows at a time, so that memory
-- stays bounded however many rows a statement stored, a queue held or a
-- month of the lake has; the merge rules make any split of the rows into
-- chunks give the same tables.
--
-- Why one trigger and not one per concern: the http worker commits small
-- groups, where each trigger's call (SECURITY DEFINER, search_path) and each
-- statement's executor start-up cost more than the rows they fold.  Listing
-- the stored subjects first and skipping the rest took a one-event
-- cdviz.ingest() transaction from 1.03 to 0.61 ms.

-- The rows of an array of lake rows, as a relation the fold statements read
-- like a table.  Written so that it is inlined into them (LANGUAGE sql,
-- IMMUTABLE, not STRICT, no SET) and streams from the array: unnest() in
-- FROM would copy every row into a tuplestore, and 10,000 rows of payload
-- spill to disk.
CREATE FUNCTION cdviz._lake_rows(events cdviz.cdevents_lake[])
RETURNS SETOF cdviz.cdevents_lake
LANGUAGE sql IMMUTABLE
AS $$ SELECT (u.r).* FROM (SELECT pg_catalog.unnest(events) AS r) AS u $$;

COMMENT ON FUNCTION cdviz._lake_rows(cdviz.cdevents_lake[]) IS
'cdviz: internal, for cdviz._fold_events(): the lake rows of an array, inlined into the statement that reads them';

-- One INSERT ... ON CONFLICT DO UPDATE per table, grouped per key (a run's
-- queued/started/finished in one chunk are one row write), no loop.  Each
-- statement runs only when the rows hold its subject (named in the
-- statement's own WHERE clause): for the small groups of the http worker
-- most statements have nothing to do, and each would still cost its
-- executor start-up and locks.
--
-- Its statements are planned once per session and kept (generic plans),
-- as the trigger's own are: a custom plan would be made at every call, with
-- the whole array as a constant, and took more than half the time of a
-- fold of 10,000 rows.  Seq scans are as its caller runs: off under the
-- trigger, on under the fold of queued events (see cdviz.lake_maintain()).
-- Not SECURITY DEFINER: its callers are, or are superuser-only, and nobody
-- else may execute it.
CREATE FUNCTION cdviz._fold_events(events cdviz.cdevents_lake[], derived boolean)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	subjects text[];
	has_links boolean;
BEGIN
	SELECT array_agg(DISTINCT e.subject), coalesce(bool_or(e.payload -> 'context' ? 'links'), false)
	INTO subjects, has_links
	FROM cdviz._lake_rows(events) AS e;
	IF subjects IS NULL THEN
		RETURN;
	END IF;

	-- what is derived from the lake besides the summaries: lineage, artifact
	-- changes, change times, first deployments (not refolded by
	-- cdviz.rebuild_summaries(), which empties only the summaries)
	IF derived THEN
		IF subjects @> '{artifact}' THEN
			INSERT INTO cdviz.artifact_changes AS a
				(artifact_id, change_id, change_source, packaged_at, event_id)
			SELECT DISTINCT ON (e.subject_id)
				   e.subject_id, e.payload #>> '{subject,content,change,id}',
				   e.payload #>> '{subject,content,change,source}', e."timestamp", e.id
			FROM cdviz._lake_rows(events) e
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
			FROM cdviz._lake_rows(events) e
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
						FROM cdviz._lake_rows(events) e
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
			  AND a.artifact_id IN (SELECT e.subject_id FROM cdviz._lake_rows(events) e
									WHERE e.subject = 'artifact' AND e.predicate = 'packaged'
									UNION
									SELECT a2.artifact_id FROM cdviz.artifact_changes a2
									WHERE a2.change_id IN (SELECT e.subject_id FROM cdviz._lake_rows(events) e
														   WHERE e.subject = 'change'
															 AND e.predicate IN ('created', 'merged')))
			  AND (f.change_id, f.changed_at) IS DISTINCT FROM (a.change_id, coalesce(c.merged_at, c.created_at));
		END IF;

		-- what can make a deployment rework (cdviz.dora_rework): every
		-- incident event, and the ticket events that name a bug type
		IF subjects && '{incident,ticket}' THEN
			INSERT INTO cdviz.rework_causes (event_id, "timestamp", context_id, chain_id, subject, subject_id)
			SELECT e.id, e."timestamp", e.context_id, e.chain_id, e.subject, e.subject_id
			FROM cdviz._lake_rows(events) e
			WHERE (e.subject = 'incident' AND e.predicate IN ('detected', 'reported', 'resolved'))
			   OR (e.subject = 'ticket' AND e.predicate IN ('created', 'updated', 'closed')
				   AND e.payload #>> '{subject,content,ticketType}' ~* 'bug')
			ON CONFLICT (event_id) DO NOTHING;
		END IF;

		IF has_links THEN
			INSERT INTO cdviz.event_links (event_id, context_id, linked_context_id, link_type, link_kind, tags)
			SELECT e.id, e.context_id,
				   coalesce(k.link #>> '{target,contextId}', k.link #>> '{from,contextId}', k.link #>> '{to,contextId}'),
				   k.link ->> 'linkType', k.link ->> 'linkKind', k.link -> 'tags'
			FROM cdviz._lake_rows(events) e
			CROSS JOIN LATERAL jsonb_array_elements(e.payload #> '{context,links}') AS k(link)
			WHERE jsonb_typeof(e.payload #> '{context,links}') = 'array'
			  AND jsonb_typeof(k.link) = 'object'
			  AND coalesce(k.link #>> '{target,contextId}', k.link #>> '{from,contextId}', k.link #>> '{to,contextId}') IS NOT NULL;
		END IF;

		-- What is linked to a rework cause, whichever came first: the causes
		-- of these rows with what was stored before them, then these rows'
		-- links, artifacts and changes with the causes stored before them
		-- (or just above).
		IF subjects && '{incident,ticket}' THEN
			PERFORM cdviz._link_rework_causes(ARRAY(SELECT e.id FROM cdviz._lake_rows(events) e
													WHERE e.subject IN ('incident', 'ticket')));
		END IF;
		IF subjects && '{service,artifact,change}' THEN
			INSERT INTO cdviz.rework_links (cause_event_id, since, reason, subject, subject_id, event_id)
			SELECT c.event_id, c."timestamp", 'link to ' || c.subject, e.subject,
				   CASE WHEN e.subject <> 'service' THEN e.subject_id END,
				   CASE WHEN e.subject = 'service' THEN e.id END
			FROM cdviz._lake_rows(events) e
			JOIN cdviz.event_links k ON k.context_id = e.context_id AND k.event_id = e.id
			JOIN cdviz.rework_causes c ON c.context_id = k.linked_context_id
			WHERE has_links AND e.subject IN ('service', 'artifact', 'change')
			UNION ALL
			SELECT c.event_id, c."timestamp", 'chain of ' || c.subject, e.subject, e.subject_id, NULL
			FROM cdviz._lake_rows(events) e
			JOIN cdviz.rework_causes c ON c.chain_id = e.chain_id AND c."timestamp" <= e."timestamp"
			WHERE ((e.subject = 'artifact' AND e.predicate = 'packaged')
				   OR (e.subject = 'change' AND e.predicate = 'created'))
			  AND e.subject_id IS NOT NULL
			ON CONFLICT DO NOTHING;
		END IF;
	END IF;

	IF subjects @> '{pipelinerun}' THEN
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
			   max(e.chain_id),
			   min(e."timestamp"), max(e."timestamp"),
			   (array_agg(e.id ORDER BY e."timestamp" DESC, e.id DESC))[1],
			   (array_agg(e.predicate ORDER BY e."timestamp" DESC, e.id DESC))[1],
			   count(*)
		FROM cdviz._lake_rows(events) AS e
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
			(chain_id, first_event_at, last_event_at, last_event_id, last_predicate, event_count)
				= ROW((cdviz._summary_merge(s, excluded)).*);
	END IF;

	IF subjects @> '{taskrun}' THEN
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
			   max(e.chain_id),
			   min(e."timestamp"), max(e."timestamp"),
			   (array_agg(e.id ORDER BY e."timestamp" DESC, e.id DESC))[1],
			   (array_agg(e.predicate ORDER BY e."timestamp" DESC, e.id DESC))[1],
			   count(*)
		FROM cdviz._lake_rows(events) AS e
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
			(chain_id, first_event_at, last_event_at, last_event_id, last_predicate, event_count)
				= ROW((cdviz._summary_merge(s, excluded)).*);
	END IF;

	IF subjects @> '{build}' THEN
		INSERT INTO cdviz.build_summaries AS s
			(build_id, source, queued_at, started_at, finished_at, artifact_id, chain_id,
			 first_event_at, last_event_at, last_event_id, last_predicate, event_count)
		SELECT e.subject_id,
			   max(e.payload #>> '{subject,source}'),
			   min(e."timestamp") FILTER (WHERE e.predicate = 'queued'),
			   min(e."timestamp") FILTER (WHERE e.predicate = 'started'),
			   max(e."timestamp") FILTER (WHERE e.predicate = 'finished'),
			   max(e.payload #>> '{subject,content,artifactId}') FILTER (WHERE e.predicate = 'finished'),
			   max(e.chain_id),
			   min(e."timestamp"), max(e."timestamp"),
			   (array_agg(e.id ORDER BY e."timestamp" DESC, e.id DESC))[1],
			   (array_agg(e.predicate ORDER BY e."timestamp" DESC, e.id DESC))[1],
			   count(*)
		FROM cdviz._lake_rows(events) AS e
		WHERE e.subject = 'build' AND e.predicate IN ('queued', 'started', 'finished')
		  AND e.subject_id IS NOT NULL
		GROUP BY e.subject_id
		ON CONFLICT (build_id) DO UPDATE SET
			source = GREATEST(s.source, excluded.source),
			queued_at = LEAST(s.queued_at, excluded.queued_at),
			started_at = LEAST(s.started_at, excluded.started_at),
			finished_at = GREATEST(s.finished_at, excluded.finished_at),
			artifact_id = GREATEST(s.artifact_id, excluded.artifact_id),
			(chain_id, first_event_at, last_event_at, last_event_id, last_predicate, event_count)
				= ROW((cdviz._summary_merge(s, excluded)).*);
	END IF;

	IF subjects @> '{branch}' THEN
		INSERT INTO cdviz.branch_summaries AS s
			(branch_id, source, repository_id, repository_source, created_at, deleted_at, chain_id,
			 first_event_at, last_event_at, last_event_id, last_predicate, event_count)
		SELECT e.subject_id,
			   max(e.payload #>> '{subject,source}'),
			   max(e.payload #>> '{subject,content,repository,id}'),
			   max(e.payload #>> '{subject,content,repository,source}'),
			   min(e."timestamp") FILTER (WHERE e.predicate = 'created'),
			   max(e."timestamp") FILTER (WHERE e.predicate = 'deleted'),
			   max(e.chain_id),
			   min(e."timestamp"), max(e."timestamp"),
			   (array_agg(e.id ORDER BY e."timestamp" DESC, e.id DESC))[1],
			   (array_agg(e.predicate ORDER BY e."timestamp" DESC, e.id DESC))[1],
			   count(*)
		FROM cdviz._lake_rows(events) AS e
		WHERE e.subject = 'branch' AND e.predicate IN ('created', 'deleted')
		  AND e.subject_id IS NOT NULL
		GROUP BY e.subject_id
		ON CONFLICT (branch_id) DO UPDATE SET
			source = GREATEST(s.source, excluded.source),
			repository_id = GREATEST(s.repository_id, excluded.repository_id),
			repository_source = GREATEST(s.repository_source, excluded.repository_source),
			created_at = LEAST(s.created_at, excluded.created_at),
			deleted_at = GREATEST(s.deleted_at, excluded.deleted_at),
			(chain_id, first_event_at, last_event_at, last_event_id, last_predicate, event_count)
				= ROW((cdviz._summary_merge(s, excluded)).*);
	END IF;

	IF subjects @> '{testcaserun}' THEN
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
			   max(e.chain_id),
			   min(e."timestamp"), max(e."timestamp"),
			   (array_agg(e.id ORDER BY e."timestamp" DESC, e.id DESC))[1],
			   (array_agg(e.predicate ORDER BY e."timestamp" DESC, e.id DESC))[1],
			   count(*)
		FROM cdviz._lake_rows(events) AS e
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
			(chain_id, first_event_at, last_event_at, last_event_id, last_predicate, event_count)
				= ROW((cdviz._summary_merge(s, excluded)).*);
	END IF;

	IF subjects @> '{testsuiterun}' THEN
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
			   max(e.chain_id),
			   min(e."timestamp"), max(e."timestamp"),
			   (array_agg(e.id ORDER BY e."timestamp" DESC, e.id DESC))[1],
			   (array_agg(e.predicate ORDER BY e."timestamp" DESC, e.id DESC))[1],
			   count(*)
		FROM cdviz._lake_rows(events) AS e
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
			(chain_id, first_event_at, last_event_at, last_event_id, last_predicate, event_count)
				= ROW((cdviz._summary_merge(s, excluded)).*);
	END IF;

	IF subjects @> '{artifact}' THEN
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
			   (array_agg((e.payload #>> '{subject,content,user}') ORDER BY e."timestamp" DESC, e.id DESC) FILTER (WHERE (e.payload #>> '{subject,content,user}') IS NOT NULL))[1],
			   max(e."timestamp") FILTER (WHERE (e.payload #>> '{subject,content,user}') IS NOT NULL),
			   (array_agg(e.id ORDER BY e."timestamp" DESC, e.id DESC) FILTER (WHERE (e.payload #>> '{subject,content,user}') IS NOT NULL))[1],
			   max(e.chain_id),
			   min(e."timestamp"), max(e."timestamp"),
			   (array_agg(e.id ORDER BY e."timestamp" DESC, e.id DESC))[1],
			   (array_agg(e.predicate ORDER BY e."timestamp" DESC, e.id DESC))[1],
			   count(*)
		FROM cdviz._lake_rows(events) AS e
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
			signature = GREATEST(s.signature, excluded.signature),
			last_user = CASE WHEN (excluded.last_user_at, excluded.last_user_event_id) > (s.last_user_at, s.last_user_event_id) OR s.last_user_at IS NULL
						THEN coalesce(excluded.last_user, s.last_user) ELSE s.last_user END,
			last_user_at = GREATEST(s.last_user_at, excluded.last_user_at),
			last_user_event_id = CASE WHEN (excluded.last_user_at, excluded.last_user_event_id) > (s.last_user_at, s.last_user_event_id) OR s.last_user_at IS NULL
						THEN coalesce(excluded.last_user_event_id, s.last_user_event_id) ELSE s.last_user_event_id END,
			(chain_id, first_event_at, last_event_at, last_event_id, last_predicate, event_count)
				= ROW((cdviz._summary_merge(s, excluded)).*);
	END IF;

	IF subjects @> '{change}' THEN
		INSERT INTO cdviz.change_summaries AS s
			(change_id, source, repository_id, repository_source, description, description_at,
			 description_event_id, created_at, first_reviewed_at, review_count, last_updated_at,
			 merged_at, abandoned_at, chain_id,
			 first_event_at, last_event_at, last_event_id, last_predicate, event_count)
		SELECT e.subject_id,
			   max(e.payload #>> '{subject,source}'),
			   max(e.payload #>> '{subject,content,repository,id}'),
			   max(e.payload #>> '{subject,content,repository,source}'),
			   (array_agg((e.payload #>> '{subject,content,description}') ORDER BY e."timestamp" DESC, e.id DESC) FILTER (WHERE (e.payload #>> '{subject,content,description}') IS NOT NULL))[1],
			   max(e."timestamp") FILTER (WHERE (e.payload #>> '{subject,content,description}') IS NOT NULL),
			   (array_agg(e.id ORDER BY e."timestamp" DESC, e.id DESC) FILTER (WHERE (e.payload #>> '{subject,content,description}') IS NOT NULL))[1],
			   min(e."timestamp") FILTER (WHERE e.predicate = 'created'),
			   min(e."timestamp") FILTER (WHERE e.predicate = 'reviewed'),
			   count(*) FILTER (WHERE e.predicate = 'reviewed'),
			   max(e."timestamp") FILTER (WHERE e.predicate = 'updated'),
			   min(e."timestamp") FILTER (WHERE e.predicate = 'merged'),
			   min(e."timestamp") FILTER (WHERE e.predicate = 'abandoned'),
			   max(e.chain_id),
			   min(e."timestamp"), max(e."timestamp"),
			   (array_agg(e.id ORDER BY e."timestamp" DESC, e.id DESC))[1],
			   (array_agg(e.predicate ORDER BY e."timestamp" DESC, e.id DESC))[1],
			   count(*)
		FROM cdviz._lake_rows(events) AS e
		WHERE e.subject = 'change'
		  AND e.predicate IN ('created', 'reviewed', 'updated', 'merged', 'abandoned')
		  AND e.subject_id IS NOT NULL
		GROUP BY e.subject_id
		ON CONFLICT (change_id) DO UPDATE SET
			source = GREATEST(s.source, excluded.source),
			repository_id = GREATEST(s.repository_id, excluded.repository_id),
			repository_source = GREATEST(s.repository_source, excluded.repository_source),
			description = CASE WHEN (excluded.description_at, excluded.description_event_id) > (s.description_at, s.description_event_id) OR s.description_at IS NULL
						THEN coalesce(excluded.description, s.description) ELSE s.description END,
			description_at = GREATEST(s.description_at, excluded.description_at),
			description_event_id = CASE WHEN (excluded.description_at, excluded.description_event_id) > (s.description_at, s.description_event_id) OR s.description_at IS NULL
						THEN coalesce(excluded.description_event_id, s.description_event_id) ELSE s.description_event_id END,
			created_at = LEAST(s.created_at, excluded.created_at),
			first_reviewed_at = LEAST(s.first_reviewed_at, excluded.first_reviewed_at),
			review_count = s.review_count + excluded.review_count,
			last_updated_at = GREATEST(s.last_updated_at, excluded.last_updated_at),
			merged_at = LEAST(s.merged_at, excluded.merged_at),
			abandoned_at = LEAST(s.abandoned_at, excluded.abandoned_at),
			(chain_id, first_event_at, last_event_at, last_event_id, last_predicate, event_count)
				= ROW((cdviz._summary_merge(s, excluded)).*);
	END IF;

	IF subjects @> '{incident}' THEN
		INSERT INTO cdviz.incident_summaries AS s
			(incident_id, source, environment_id, service_id, artifact_id, description, description_at,
			 description_event_id, ticket_uri, detected_at, reported_at, resolved_at, chain_id,
			 first_event_at, last_event_at, last_event_id, last_predicate, event_count)
		SELECT e.subject_id,
			   max(e.payload #>> '{subject,source}'),
			   max(e.payload #>> '{subject,content,environment,id}'),
			   max(e.payload #>> '{subject,content,service,id}'),
			   max(e.payload #>> '{subject,content,artifactId}'),
			   (array_agg((e.payload #>> '{subject,content,description}') ORDER BY e."timestamp" DESC, e.id DESC) FILTER (WHERE (e.payload #>> '{subject,content,description}') IS NOT NULL))[1],
			   max(e."timestamp") FILTER (WHERE (e.payload #>> '{subject,content,description}') IS NOT NULL),
			   (array_agg(e.id ORDER BY e."timestamp" DESC, e.id DESC) FILTER (WHERE (e.payload #>> '{subject,content,description}') IS NOT NULL))[1],
			   max(e.payload #>> '{subject,content,ticketURI}'),
			   min(e."timestamp") FILTER (WHERE e.predicate = 'detected'),
			   min(e."timestamp") FILTER (WHERE e.predicate = 'reported'),
			   max(e."timestamp") FILTER (WHERE e.predicate = 'resolved'),
			   max(e.chain_id),
			   min(e."timestamp"), max(e."timestamp"),
			   (array_agg(e.id ORDER BY e."timestamp" DESC, e.id DESC))[1],
			   (array_agg(e.predicate ORDER BY e."timestamp" DESC, e.id DESC))[1],
			   count(*)
		FROM cdviz._lake_rows(events) AS e
		WHERE e.subject = 'incident' AND e.predicate IN ('detected', 'reported', 'resolved')
		  AND e.subject_id IS NOT NULL
		GROUP BY e.subject_id
		ON CONFLICT (incident_id) DO UPDATE SET
			source = GREATEST(s.source, excluded.source),
			environment_id = GREATEST(s.environment_id, excluded.environment_id),
			service_id = GREATEST(s.service_id, excluded.service_id),
			artifact_id = GREATEST(s.artifact_id, excluded.artifact_id),
			description = CASE WHEN (excluded.description_at, excluded.description_event_id) > (s.description_at, s.description_event_id) OR s.description_at IS NULL
						THEN coalesce(excluded.description, s.description) ELSE s.description END,
			description_at = GREATEST(s.description_at, excluded.description_at),
			description_event_id = CASE WHEN (excluded.description_at, excluded.description_event_id) > (s.description_at, s.description_event_id) OR s.description_at IS NULL
						THEN coalesce(excluded.description_event_id, s.description_event_id) ELSE s.description_event_id END,
			ticket_uri = GREATEST(s.ticket_uri, excluded.ticket_uri),
			detected_at = LEAST(s.detected_at, excluded.detected_at),
			reported_at = LEAST(s.reported_at, excluded.reported_at),
			resolved_at = GREATEST(s.resolved_at, excluded.resolved_at),
			(chain_id, first_event_at, last_event_at, last_event_id, last_predicate, event_count)
				= ROW((cdviz._summary_merge(s, excluded)).*);
	END IF;

	IF subjects @> '{testcaserun}' THEN
		INSERT INTO cdviz.test_case_outcomes_daily AS s (day, test_case, outcome, runs, last_at, reason)
		SELECT date_bin('1 day', e."timestamp", timestamptz '2000-01-01 00:00+00'),
			   coalesce(e.payload #>> '{subject,content,testCase,name}', e.payload #>> '{subject,content,testCase,id}'),
			   CASE WHEN e.predicate = 'skipped' THEN 'skipped'
					ELSE cdviz.normalize_outcome(e.payload #>> '{subject,content,outcome}') END,
			   count(*), max(e."timestamp"), max(e.payload #>> '{subject,content,reason}')
		FROM cdviz._lake_rows(events) AS e
		WHERE e.subject = 'testcaserun' AND e.predicate IN ('finished', 'skipped')
		GROUP BY 1, 2, 3
		ON CONFLICT (day, test_case, outcome) DO UPDATE SET
			runs = s.runs + excluded.runs,
			last_at = GREATEST(s.last_at, excluded.last_at),
			reason = GREATEST(s.reason, excluded.reason);
	END IF;

	INSERT INTO cdviz.event_counts_hourly AS s
		(hour, type, context_source, spec_version, subject, predicate, events, first_at, last_at)
	SELECT date_bin('1 hour', e."timestamp", timestamptz '2000-01-01 00:00+00'), e.type,
		   e.context_source, e.spec_version, max(e.subject), max(e.predicate),
		   count(*), min(e."timestamp"), max(e."timestamp")
	FROM cdviz._lake_rows(events) AS e
	GROUP BY 1, 2, 3, 4
	ON CONFLICT (hour, type, context_source, spec_version) DO UPDATE SET
		events = s.events + excluded.events,
		first_at = LEAST(s.first_at, excluded.first_at),
		last_at = GREATEST(s.last_at, excluded.last_at);
END
$$;

COMMENT ON FUNCTION cdviz._fold_events(cdviz.cdevents_lake[], boolean) IS
'cdviz: internal: folds the lake rows of events into the summary tables (pipeline/task/test case/test suite run, build, artifact, change and incident summaries, event_counts_hourly, test_case_outcomes_daily) and, when derived, into first_deployments, artifact_changes, change_times, event_links, rework_causes and rework_links, grouped per key, one set-based statement per table, each run only when the rows hold its subject; order-independent merge rules (see cdviz.pipeline_run_summaries). Called by cdviz.lake_maintain(), cdviz.fold_queued_summaries() and cdviz.summaries_fold().';

-- The trigger's statements are planned once per session and kept: the
-- http worker keeps its plans for days.  Planned while a table was small or
-- vacuumed empty, a key probe would become a scan of the whole table as it
-- grows (the http bench's first rounds after a cleanup: 1,200 events/s
-- against 5,800).  The trigger reads tables by key only (its batch is a
-- tuplestore or an array, which this does not touch): seq scans off,
-- whatever the statistics said when they were planned, for its own
-- statements and for those of cdviz._fold_events() it calls.  With
-- summaries immediate and batches of 10,000 this costs a little (0.43-0.45
-- of a plain insert instead of 0.46-0.48, bench/ingest.sh).  Not for the
-- fold of queued events: its chunks are thousands of rows, joined best by
-- hash (2,200 events/s with seq scans off, against 21,000-31,500).
CREATE OR REPLACE FUNCTION cdviz.lake_maintain()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
AS $$
DECLARE
	deferred boolean := cdviz._summaries_deferred();
	subjects text[];
	n bigint := 0;
	queued bigint;
	ids bigint[];
	stamps timestamptz[];
	r cdviz.cdevents_lake;
	events cdviz.cdevents_lake[] := '{}';
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
		SELECT array_agg(DISTINCT e.subject)
		INTO subjects
		FROM new_events AS e;
	END IF;
	IF subjects IS NULL THEN
		RETURN NULL;
	END IF;
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
		-- order: one statement never deadlocks with another.  They are
		-- locks no SQL role can take (src/common/locks.c): a read-only role
		-- holding pg_advisory_lock() on the same keys delays nothing.  (Transactions
		-- of several insert statements can, as they could on the state rows.)
		PERFORM cdviz._lock_keys(1667528307, array_agg(k.h ORDER BY k.h))
		FROM (SELECT DISTINCT pg_catalog.hashtext((e.payload #>> '{subject,content,environment,id}')
												   || E'\n' || e.subject_id) & 1023 AS h
			  FROM new_events e
			  WHERE e.subject = 'service'
				AND e.predicate IN ('deployed', 'upgraded', 'rolledback', 'removed')
				AND e.subject_id IS NOT NULL
				AND e.payload #>> '{subject,content,environment,id}' IS NOT NULL) AS k;

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
			INSERT INTO cdviz.environment_artifacts AS a
				(environment_id, service_id, artifact_id, last_at, last_event_id)
			SELECT DISTINCT ON (1, 2, 3)
				   e.payload #>> '{subject,content,environment,id}', e.subject_id,
				   coalesce(e.payload #>> '{subject,content,artifactId}', ''), e."timestamp", e.id
			FROM new_events e
			WHERE e.subject = 'service'
			  AND e.predicate IN ('deployed', 'upgraded', 'rolledback')
			  AND e.subject_id IS NOT NULL
			  AND e.payload #>> '{subject,content,environment,id}' IS NOT NULL
			ORDER BY 1, 2, 3, e."timestamp" DESC, e.id DESC
			ON CONFLICT (environment_id, service_id, artifact_id) DO UPDATE
			SET last_at = excluded.last_at,
				last_event_id = excluded.last_event_id
			WHERE (excluded.last_at, excluded.last_event_id) > (a.last_at, a.last_event_id);

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
				-- the latest deployment of another artifact: the newest
				-- entry but the current artifact's
				SELECT NULLIF(a.artifact_id, '') AS artifact_id FROM cdviz.environment_artifacts a
				WHERE a.environment_id = k.environment_id AND a.service_id = k.service_id
				  AND a.artifact_id <> coalesce(cur.artifact_id, '')
				  AND (a.last_at, a.last_event_id) < (cur.valid_from, cur.event_id)
				ORDER BY a.last_at DESC, a.last_event_id DESC
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

	-- the derived tables and summaries: queued for the cdviz summaries
	-- worker, or folded here, 10,000 rows at a time
	IF deferred THEN
		INSERT INTO cdviz.summary_queue (events, ids, stamps) VALUES (queued, ids, stamps);
	ELSE
		FOR r IN SELECT * FROM new_events LOOP
			events := events || r;
			CONTINUE WHEN cardinality(events) < 10000;
			PERFORM cdviz._fold_events(events, true);
			events := '{}';
		END LOOP;
		PERFORM cdviz._fold_events(events, true);
	END IF;
	RETURN NULL;
END
$$;

COMMENT ON FUNCTION cdviz.lake_maintain() IS
'cdviz: statement-level AFTER INSERT trigger of cdviz.cdevents_lake: folds the stored events of the statement into environment_history and environment_state; then, with cdviz.summaries = deferred (in the summaries worker''s database), queues them in cdviz.summary_queue for cdviz.fold_queued_summaries(), else folds them at once into the derived tables (first_deployments, artifact_changes, change_times, event_links, rework_causes, rework_links) and, grouped per key, into the summary tables (pipeline/task/test case/test suite run, build, artifact, change and incident summaries, event_counts_hourly, test_case_outcomes_daily) with one set-based statement per table, each run only when the statement stored events of its subject; order-independent merge rules (see cdviz.pipeline_run_summaries). SECURITY DEFINER so that writers need no privilege on them.';

-- Folds the lake rows of queued statements (their keys: ids, stamps).
CREATE FUNCTION cdviz._fold_lake_keys(ids bigint[], stamps timestamptz[])
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	events cdviz.cdevents_lake[];
	n bigint;
BEGIN
	-- One probe per event, so that no plan can read whole partitions (an
	-- event of a dropped partition is gone: nothing to fold).
	SELECT array_agg(l.r), count(*)
	INTO events, n
	FROM unnest(ids, stamps) AS k(id, ts)
	CROSS JOIN LATERAL (SELECT c FROM cdviz.cdevents_lake AS c
						WHERE c.id = k.id AND c."timestamp" = k.ts LIMIT 1) AS l(r);
	PERFORM cdviz._fold_events(events, true);
	RETURN n;
END
$$;

COMMENT ON FUNCTION cdviz._fold_lake_keys(bigint[], timestamptz[]) IS
'cdviz: internal, for cdviz.fold_queued_summaries(): folds the lake rows with these (id, timestamp) keys with cdviz._fold_events() and returns how many it found';

CREATE OR REPLACE FUNCTION cdviz.fold_queued_summaries(max_statements integer DEFAULT 1000)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	stmt record;
	ids bigint[] := '{}';
	stamps timestamptz[] := '{}';
	i integer;
	n bigint := 0;
BEGIN
	-- Taken in queue order and deleted in this transaction: each queued
	-- statement is folded exactly once, whoever calls (SKIP LOCKED lets a
	-- concurrent call take the next ones).  The events of small statements
	-- are folded together, those of a large one in slices: 10,000 at a time.
	FOR stmt IN
		DELETE FROM cdviz.summary_queue AS q
		WHERE q.id IN (SELECT w.id FROM cdviz.summary_queue AS w ORDER BY w.id
					   LIMIT max_statements FOR UPDATE SKIP LOCKED)
		RETURNING q.ids, q.stamps
	LOOP
		ids := ids || stmt.ids;
		stamps := stamps || stmt.stamps;
		i := 1;
		WHILE cardinality(ids) - i + 1 >= 10000 LOOP
			n := n + cdviz._fold_lake_keys(ids[i:i + 9999], stamps[i:i + 9999]);
			i := i + 10000;
		END LOOP;
		ids := ids[i:];
		stamps := stamps[i:];
	END LOOP;
	IF cardinality(ids) > 0 THEN
		n := n + cdviz._fold_lake_keys(ids, stamps);
	END IF;
	RETURN n;
END
$$;

COMMENT ON FUNCTION cdviz.fold_queued_summaries(integer) IS
'cdviz: folds the events queued by the lake trigger (cdviz.summaries = deferred) into the summary tables, the oldest max_statements insert statements at most, and returns how many events it folded; the cdviz summaries worker calls it, a session that wants read-after-write may too. Example: SELECT cdviz.fold_queued_summaries();';

CREATE OR REPLACE FUNCTION cdviz.summaries_fold(from_ts timestamptz, to_ts timestamptz)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r cdviz.cdevents_lake;
	events cdviz.cdevents_lake[] := '{}';
BEGIN
	-- one read of the range, folded 10,000 rows at a time
	FOR r IN SELECT * FROM cdviz.cdevents_lake AS l WHERE l."timestamp" >= from_ts AND l."timestamp" < to_ts
	LOOP
		events := events || r;
		CONTINUE WHEN cardinality(events) < 10000;
		PERFORM cdviz._fold_events(events, false);
		events := '{}';
	END LOOP;
	PERFORM cdviz._fold_events(events, false);
END
$$;

COMMENT ON FUNCTION cdviz.summaries_fold(timestamptz, timestamptz) IS
'cdviz: folds the lake events with "timestamp" in [from_ts, to_ts) into the summary tables, with the same statements as the lake trigger; adds to what is there (call it on empty summaries, or for events the summaries have not seen). Used by cdviz.rebuild_summaries().';

-- only the functions above call them, as the extension's owner
REVOKE EXECUTE ON FUNCTION cdviz._lake_rows(cdviz.cdevents_lake[]),
	cdviz._fold_events(cdviz.cdevents_lake[], boolean),
	cdviz._fold_lake_keys(bigint[], timestamptz[]) FROM PUBLIC;

-- summary_queue's identity sequence is dumped with the queue's rows
SELECT pg_catalog.pg_extension_config_dump('cdviz.summary_queue_id_seq', '');

-- The previous artifact of a redeployed service in one index probe: the
-- lake trigger searched back through the key's whole history of
-- redeployments of the current artifact (cdviz.lake_maintain() above uses
-- the new table).
CREATE TABLE cdviz.environment_artifacts (
	environment_id	text NOT NULL,
	service_id		text NOT NULL,
	artifact_id		text NOT NULL,
	last_at			timestamptz NOT NULL,
	last_event_id	bigint NOT NULL,
	PRIMARY KEY (environment_id, service_id, artifact_id)
);
-- the artifacts of a key newest first: the one before the current one is
-- the second entry, however often either was deployed
CREATE INDEX environment_artifacts_latest
	ON cdviz.environment_artifacts (environment_id, service_id, last_at, last_event_id);

COMMENT ON TABLE cdviz.environment_artifacts IS
'cdviz: the latest deployed/upgraded/rolledback event of each artifact in each (environment, service), kept by the lake trigger (latest wins, whatever the arrival order); where environment_state.previous_artifact_id is found in one index probe, however long the history of redeployments';
COMMENT ON COLUMN cdviz.environment_artifacts.artifact_id IS 'subject.content.artifactId; empty for a deployment that named none';
COMMENT ON COLUMN cdviz.environment_artifacts.last_at IS 'timestamp of the latest such event';
COMMENT ON COLUMN cdviz.environment_artifacts.last_event_id IS 'cdviz.cdevents_lake.id of that event';

INSERT INTO cdviz.environment_artifacts
	(environment_id, service_id, artifact_id, last_at, last_event_id)
SELECT DISTINCT ON (h.environment_id, h.service_id, coalesce(h.artifact_id, ''))
	   h.environment_id, h.service_id, coalesce(h.artifact_id, ''), h.valid_from, h.event_id
FROM cdviz.environment_history h
WHERE h.predicate IN ('deployed', 'upgraded', 'rolledback')
ORDER BY h.environment_id, h.service_id, coalesce(h.artifact_id, ''), h.valid_from DESC, h.event_id DESC;

SELECT pg_catalog.pg_extension_config_dump('cdviz.environment_artifacts', '');
-- 41_dead_letters.sql: a dead letter keeps how its input came.  The HTTP
-- receiver keeps the bytes it received (a whole structured CloudEvent, not
-- its data printed again) and, for a CloudEvents binary-mode request, its
-- Content-Type and ce-* headers, in the new column envelope, which
-- cdviz.replay_rejected() reads.  0.1.0's dead letters have none (NULL:
-- read as plain JSON, as 0.1.0 replayed them).

ALTER TABLE cdviz.rejected_events ADD COLUMN envelope jsonb;
COMMENT ON COLUMN cdviz.rejected_events.envelope IS 'how raw came, when that says how to read it: {"mode": "binary", "headers": {...}} (a CloudEvents binary-mode request: raw is its body, headers its Content-Type and ce-* headers as received), {"mode": "structured"} (raw is one CloudEvent), {"mode": "batch"} (raw is one CloudEvent of a batch) or {"mode": "transformer", "source": ..., "transformer": ..., "sqlstate": ..., "meta": {...}} (an item a source''s transformer raised on: raw is the body it was handed, '''' for none; see cdviz.retransform_source()); NULL for plain JSON. cdviz.replay_rejected() reads raw as it says';

COMMENT ON FUNCTION cdviz.replay_rejected(bigint) IS
'cdviz: ingests dead letter id again (after the data or cdviz.validation was fixed) and returns the lake id; marks it replayed. raw is read as its envelope says: a CloudEvent (structured, or a batch element) gives its data; a binary-mode body is judged with the ce-* headers it came with, as the receiver judged it. Still invalid: raises SQLSTATE 22023 with the current problems, which are recorded on the dead letter. A webhook body the receiver refused (origin webhook), or an item a source''s transformer raised on (envelope mode transformer), is not a CDEvent: raises 42809. Replaying twice is harmless. Example: SELECT cdviz.replay_rejected(42);';

-- What a source's transformer raised on is kept as a dead letter that is no
-- CDEvent either (52_source_transformers.sql): not replayed.
CREATE OR REPLACE FUNCTION cdviz.replay_rejected(origin text DEFAULT NULL, since timestamptz DEFAULT '-infinity',
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

-- Sinks: every credential-bearing value of a sink (the token and HMAC key,
-- every header value, the user info and query values of the URL) is kept
-- in cdviz.sink_secrets, which only superusers read; cdviz.sinks and
-- cdviz.sink_status, which cdviz_reader reads, show *** in its place.
-- 0.1.0 moved only token and hmac_secret there.  (The text below is that
-- of sql/ext/60_sinks.sql; create_sink() is replaced here only, this file
-- coming before 60_sinks.sql.)
COMMENT ON TABLE cdviz.sinks IS
'cdviz: where the dispatcher forwards stored events; managed with cdviz.create_sink(), alter_sink(), drop_sink(), pause_sink(), resume_sink(). Secrets (token, hmac_secret, header values, the URL''s user info and query values) are kept apart in cdviz.sink_secrets and shown here as ***.';
COMMENT ON COLUMN cdviz.sinks.target IS 'http: the URL, its user info and query values shown as ***; nats: the subject or subject template ({subject}, {predicate}, {version} are replaced); log: a label';
COMMENT ON COLUMN cdviz.sinks.options IS 'options without secrets; http: mode (binary, structured, batch), batch_size, headers (values shown as ***), timeout, initial_backoff, max_backoff; nats: jetstream (auto, always, never), timeout';
COMMENT ON COLUMN cdviz.sinks.secret_keys IS 'which secret parts are set: token, hmac_secret, headers (their values), target (the URL''s user info or query values); they are in cdviz.sink_secrets, readable by superusers only';
COMMENT ON TABLE cdviz.sink_secrets IS
'cdviz: secret parts of the sinks (token, hmac_secret, header values, URLs with their user info and query); superusers only';
COMMENT ON COLUMN cdviz.sink_secrets.secrets IS 'JSON object: token, hmac_secret, headers (names and values), target (the whole URL), those the sink has';

-- What cdviz_reader may see of a URL: the user info (before the last @
-- of the authority, all of it, since a token is often given as the user
-- name) and every query value become ***; scheme, host, port, path and
-- query names stay.  Anything else is left as it is.
CREATE FUNCTION cdviz._redact_url(url text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT u.base
		   || coalesce('?' || (SELECT string_agg(CASE WHEN p.part = '' THEN ''
													  WHEN strpos(p.part, '=') > 0 THEN split_part(p.part, '=', 1) || '=***'
													  ELSE '***' END, '&' ORDER BY p.n)
							   FROM regexp_split_to_table(u.query, '&') WITH ORDINALITY AS p(part, n)), '')
		   || coalesce('#' || u.fragment, '')
	FROM (SELECT substring(r.url FROM '^[^?#]*') AS base,
				 substring(r.url FROM '^[^?#]*\?([^#]*)') AS query,
				 substring(r.url FROM '^[^#]*#(.*)$') AS fragment
		  FROM (SELECT regexp_replace(url, '^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@', '\1***@') AS url) r) u
$$;
COMMENT ON FUNCTION cdviz._redact_url(text) IS
'cdviz internal: a URL with its user info and query values replaced by ***';

-- A sink's definition split into what cdviz.sinks shows and what
-- cdviz.sink_secrets keeps: every secret option, every header value (by
-- name), and the whole URL when its user info or query is redacted.
-- Credential options a kind takes later are added to secret_names.
CREATE FUNCTION cdviz._sink_split(target text, options jsonb,
								  OUT shown_target text, OUT shown_options jsonb,
								  OUT secret_keys text[], OUT secrets jsonb)
RETURNS record
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	secret_names CONSTANT text[] := ARRAY['token', 'hmac_secret'];
BEGIN
	shown_target := cdviz._redact_url(target);
	shown_options := options - secret_names;
	IF jsonb_typeof(options->'headers') = 'object' AND options->'headers' <> '{}' THEN
		shown_options := jsonb_set(shown_options, '{headers}',
								   (SELECT jsonb_object_agg(h, '***') FROM jsonb_object_keys(options->'headers') h));
	END IF;
	IF jsonb_typeof(options->'config') = 'object' AND options->'config' <> '{}' THEN
		shown_options := jsonb_set(shown_options, '{config}',
								   (SELECT jsonb_object_agg(c.key, CASE WHEN cdviz._sink_secret_setting(c.key)
																		THEN '"***"'::jsonb ELSE c.value END)
									FROM jsonb_each(options->'config') c));
	END IF;
	secrets := jsonb_strip_nulls(jsonb_build_object(
		'token', options->'token',
		'hmac_secret', options->'hmac_secret',
		'headers', CASE WHEN shown_options->'headers' IS DISTINCT FROM options->'headers'
						THEN options->'headers' END,
		'config', CASE WHEN shown_options->'config' IS DISTINCT FROM options->'config'
					   THEN options->'config' END,
		'target', CASE WHEN shown_target IS DISTINCT FROM target THEN to_jsonb(target) END));
	secret_keys := ARRAY(SELECT k FROM jsonb_object_keys(secrets) k ORDER BY k);
	IF secrets = '{}' THEN
		secrets := NULL;
	END IF;
END
$$;
COMMENT ON FUNCTION cdviz._sink_split(text, jsonb) IS
'cdviz internal: splits a sink''s target and options into what cdviz.sinks shows (secrets as ***, token and hmac_secret left out), the names of the secret parts and the JSON object cdviz.sink_secrets keeps (NULL: none)';

-- A message the dispatcher records about a sink (the last error, which
-- cdviz_reader reads in cdviz.sink_status) with the sink's secrets in it
-- replaced by ***: a receiver may answer a failure with the request it
-- was sent.  Values shorter than four characters are left: replacing them
-- would blank out the message, not hide a credential.
CREATE FUNCTION cdviz._sink_redact(message text, secrets jsonb)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	userinfo text := substring(secrets->>'target' FROM '^[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)@');
	v text;
BEGIN
	IF message IS NULL OR secrets IS NULL THEN
		RETURN message;
	END IF;
	FOR v IN
		SELECT x.v FROM (
			SELECT secrets->>'token' AS v
			UNION ALL SELECT secrets->>'hmac_secret'
			UNION ALL SELECT h.value FROM jsonb_each_text(CASE WHEN jsonb_typeof(secrets->'headers') = 'object'
																THEN secrets->'headers' END) h
			UNION ALL SELECT c.value FROM jsonb_each_text(CASE WHEN jsonb_typeof(secrets->'config') = 'object'
																THEN secrets->'config' END) c
			WHERE cdviz._sink_secret_setting(c.key)
			UNION ALL SELECT userinfo
			UNION ALL SELECT p.part FROM regexp_split_to_table(userinfo, ':') p(part)
			UNION ALL SELECT substring(p.part FROM '=(.*)$')
			FROM regexp_split_to_table(substring(secrets->>'target' FROM '^[^?#]*\?([^#]*)'), '&') p(part)
		) x
		WHERE length(x.v) >= 4
		GROUP BY x.v
		-- the longer first: a password inside the user info
		ORDER BY length(x.v) DESC, x.v
	LOOP
		message := replace(message, v, '***');
	END LOOP;
	RETURN message;
END
$$;
COMMENT ON FUNCTION cdviz._sink_redact(text, jsonb) IS
'cdviz internal: a message with the given sink secrets (of cdviz.sink_secrets) in it replaced by ***';

CREATE OR REPLACE FUNCTION cdviz.create_sink(name text, kind text, target text,
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
	sp record;
	sid integer;
	until bigint;
BEGIN
	PERFORM cdviz._sink_check(kind, target, options, type_pattern, source_pattern, predicate);
	sp := cdviz._sink_split(target, options);
	-- Wait for the writers in flight and hold new ones until we commit:
	-- each writer's trigger then either ran before, and its transaction
	-- is visible in the snapshot taken below (not this sink's event), or
	-- runs after our commit and sees this sink (see lake_record_batch).
	LOCK TABLE cdviz.cdevents_lake IN SHARE MODE;
	INSERT INTO cdviz.sinks (name, kind, target, options, secret_keys, type_pattern,
							 source_pattern, predicate, paused, start_at)
	VALUES (name, kind, sp.shown_target, sp.shown_options, sp.secret_keys,
			nullif(type_pattern, ''), nullif(source_pattern, ''), nullif(predicate, ''),
			paused, start_at)
	RETURNING id INTO sid;
	IF sp.secrets IS NOT NULL THEN
		INSERT INTO cdviz.sink_secrets VALUES (sid, sp.secrets);
	END IF;
	IF start_at IS NOT NULL THEN
		SELECT max(id) INTO until FROM cdviz.cdevents_lake;
	END IF;
	INSERT INTO cdviz.sink_progress (sink_id, snap, backfill_until, backfill_pos, created_until)
	VALUES (sid, pg_current_snapshot(), until, CASE WHEN until IS NOT NULL THEN 0 END, until);
	RETURN sid;
END
$$;
COMMENT ON FUNCTION cdviz.create_sink(text, text, text, jsonb, text, text, text, timestamptz, boolean) IS
'cdviz: creates a sink and returns its id; the dispatcher delivers to it every matching event stored after this transaction commits (with start_at: also those imported since start_at). Secrets (token, hmac_secret, header values, the URL''s user info and query values) go to cdviz.sink_secrets; cdviz.sinks shows them as ***. Example: SELECT cdviz.create_sink(''ci'', ''http'', ''https://hooks.example/cd'', ''{"mode": "batch", "batch_size": 100, "hmac_secret": "s3cret", "headers": {"X-Api-Key": "k3y"}}'', type_pattern => ''dev.cdevents.service.%'');';

CREATE OR REPLACE FUNCTION cdviz.alter_sink(name text, target text DEFAULT NULL, options jsonb DEFAULT NULL,
								 type_pattern text DEFAULT NULL,
								 source_pattern text DEFAULT NULL,
								 predicate text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s cdviz.sinks;
	cur jsonb;
	full_target text;
	full_options jsonb;
	sp record;
	k text;
BEGIN
	SELECT * INTO s FROM cdviz.sinks WHERE sinks.name = alter_sink.name FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'sink "%" does not exist', name USING ERRCODE = 'undefined_object';
	END IF;
	SELECT x.secrets INTO cur FROM cdviz.sink_secrets x WHERE x.sink_id = s.id;
	cur := coalesce(cur, '{}');
	-- The sink as the dispatcher sees it, secrets in place; the target as
	-- cdviz.sinks shows it keeps the current one.
	full_target := CASE WHEN target IS NULL OR target = s.target THEN coalesce(cur->>'target', s.target)
						ELSE target END;
	full_options := s.options || (cur - 'target');
	IF options IS NOT NULL THEN
		-- new options replace all options; a secret given as *** (as
		-- cdviz.sinks shows it) keeps its current value
		full_options := options;
		FOREACH k IN ARRAY ARRAY['token', 'hmac_secret'] LOOP
			IF options->>k = '***' AND cur ? k THEN
				full_options := jsonb_set(full_options, ARRAY[k], cur->k);
			END IF;
		END LOOP;
		FOREACH k IN ARRAY ARRAY['headers', 'config'] LOOP
			IF jsonb_typeof(options->k) = 'object' THEN
				full_options := jsonb_set(full_options, ARRAY[k], coalesce((
					SELECT jsonb_object_agg(h.key, CASE WHEN h.value = '"***"' AND cur->k ? h.key
														THEN cur->k->h.key ELSE h.value END)
					FROM jsonb_each(options->k) h), '{}'));
			END IF;
		END LOOP;
	END IF;
	s.type_pattern := CASE WHEN type_pattern IS NULL THEN s.type_pattern ELSE nullif(type_pattern, '') END;
	s.source_pattern := CASE WHEN source_pattern IS NULL THEN s.source_pattern ELSE nullif(source_pattern, '') END;
	s.predicate := CASE WHEN predicate IS NULL THEN s.predicate ELSE nullif(predicate, '') END;
	PERFORM cdviz._sink_check(s.kind, full_target, full_options, s.type_pattern,
							  s.source_pattern, s.predicate);
	sp := cdviz._sink_split(full_target, full_options);
	DELETE FROM cdviz.sink_secrets WHERE sink_id = s.id;
	IF sp.secrets IS NOT NULL THEN
		INSERT INTO cdviz.sink_secrets VALUES (s.id, sp.secrets);
	END IF;
	UPDATE cdviz.sinks
	SET target = sp.shown_target, options = sp.shown_options, secret_keys = sp.secret_keys,
		type_pattern = s.type_pattern, source_pattern = s.source_pattern,
		predicate = s.predicate, updated_at = now()
	WHERE id = s.id;
END
$$;
COMMENT ON FUNCTION cdviz.alter_sink(text, text, jsonb, text, text, text) IS
'cdviz: changes a sink; NULL arguments keep the current value, an empty string removes a filter, options (when given) replace all options, secrets included (a secret or header value given as ***, as cdviz.sinks shows it, keeps its current value; so does the target as cdviz.sinks shows it). Takes effect at the dispatcher''s next chunk; delivery resumes where it was. Example: SELECT cdviz.alter_sink(''ci'', type_pattern => ''dev.cdevents.%'');';

REVOKE EXECUTE ON FUNCTION cdviz._redact_url(text), cdviz._sink_split(text, jsonb),
	cdviz._sink_redact(text, jsonb) FROM PUBLIC;

-- The sinks made by 0.1.0: their header values and URL credentials move
-- to cdviz.sink_secrets, as create_sink() now puts them.  What the
-- dispatcher uses is unchanged (it joins the two), so updated_at is left.
WITH split AS (
	SELECT s.id, sp.shown_target, sp.shown_options, sp.secret_keys, sp.secrets
	FROM cdviz.sinks s
	LEFT JOIN cdviz.sink_secrets x ON x.sink_id = s.id
	CROSS JOIN LATERAL cdviz._sink_split(s.target, s.options || coalesce(x.secrets, '{}')) sp
), shown AS (
	UPDATE cdviz.sinks s
	SET target = p.shown_target, options = p.shown_options, secret_keys = p.secret_keys
	FROM split p
	WHERE p.id = s.id
)
INSERT INTO cdviz.sink_secrets AS x (sink_id, secrets)
SELECT p.id, p.secrets FROM split p WHERE p.secrets IS NOT NULL
ON CONFLICT (sink_id) DO UPDATE SET secrets = excluded.secrets;

-- Planner statistics are readable by whoever may read the table's
-- columns (pg_stats): those of the rows as 0.1.0 stored them would show
-- the old values to cdviz_reader until the next analyze.
ANALYZE cdviz.sinks;
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

-- Kafka sinks: kind kafka (a topic, brokers, librdkafka settings), whose
-- secret settings are kept in cdviz.sink_secrets like the other secrets.
ALTER TABLE cdviz.sinks DROP CONSTRAINT sinks_kind_check;
ALTER TABLE cdviz.sinks ADD CONSTRAINT sinks_kind_check CHECK (kind IN ('http', 'nats', 'kafka', 'log'));
COMMENT ON TABLE cdviz.sinks IS
'cdviz: where the dispatcher forwards stored events; managed with cdviz.create_sink(), alter_sink(), drop_sink(), pause_sink(), resume_sink(). Secrets (token, hmac_secret, header values, the URL''s user info and query values, Kafka config values named like a secret) are kept apart in cdviz.sink_secrets and shown here as ***.';
COMMENT ON COLUMN cdviz.sinks.kind IS 'http (POST to a URL), nats (publish to a subject on cdviz.nats_url), kafka (produce to a topic) or log (one JSON line per event in the server log)';
COMMENT ON COLUMN cdviz.sinks.target IS 'http: the URL, its user info and query values shown as ***; nats: the subject or subject template ({subject}, {predicate}, {version} are replaced); kafka: the topic; log: a label';
COMMENT ON COLUMN cdviz.sinks.options IS 'options without secrets; http: mode (binary, structured, batch), batch_size, headers (values shown as ***), timeout, initial_backoff, max_backoff; nats: jetstream (auto, always, never), timeout; kafka: brokers, mode (binary, structured), key (subject, source, none), config (librdkafka settings, secret ones shown as ***), timeout, initial_backoff, max_backoff';
COMMENT ON COLUMN cdviz.sinks.secret_keys IS 'which secret parts are set: token, hmac_secret, headers (their values), config (Kafka settings named like a secret), target (the URL''s user info or query values); they are in cdviz.sink_secrets, readable by superusers only';
COMMENT ON TABLE cdviz.sink_secrets IS
'cdviz: secret parts of the sinks (token, hmac_secret, header values, Kafka config, URLs with their user info and query); superusers only';
COMMENT ON COLUMN cdviz.sink_secrets.secrets IS 'JSON object: token, hmac_secret, headers (names and values), config (the whole Kafka config, when a setting of it is secret), target (the whole URL), those the sink has';
COMMENT ON TABLE cdviz.rejected_deliveries IS
'cdviz: events a sink refused for good (HTTP 4xx other than 408 and 429; Kafka: a message too large or invalid), with the answer; retry them with cdviz.retry_rejected_deliveries()';
COMMENT ON COLUMN cdviz.rejected_deliveries.status IS 'HTTP status of the refusal; kafka sinks: the Kafka error code (10: message too large, 87: invalid record)';

CREATE FUNCTION cdviz._sink_secret_setting(name text)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT name ~* '(password|secret|\.pem$|^ssl_key|^sasl\.oauthbearer\.config$)' $$;
COMMENT ON FUNCTION cdviz._sink_secret_setting(text) IS
'cdviz internal: whether a librdkafka setting of a kafka sink''s config is a secret (kept in cdviz.sink_secrets, shown as ***)';

COMMENT ON FUNCTION cdviz._sink_split(text, jsonb) IS
'cdviz internal: splits a sink''s target and options into what cdviz.sinks shows (secrets as ***, token and hmac_secret left out, secret Kafka settings as ***), the names of the secret parts and the JSON object cdviz.sink_secrets keeps (NULL: none)';

CREATE OR REPLACE FUNCTION cdviz._sink_check(kind text, target text, options jsonb,
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
		WHEN 'kafka' THEN ARRAY['brokers', 'mode', 'key', 'config', 'timeout', 'initial_backoff',
								'max_backoff']
		WHEN 'log' THEN ARRAY[]::text[]
	END;
	k text;
BEGIN
	IF allowed IS NULL THEN
		RAISE EXCEPTION 'unknown sink kind "%"', kind
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Use http, nats, kafka or log.';
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
	IF kind = 'kafka' THEN
		PERFORM cdviz._sink_check_kafka(target, options);
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

CREATE FUNCTION cdviz._sink_check_kafka(target text, options jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	owned CONSTANT text[] := ARRAY['bootstrap.servers', 'metadata.broker.list', 'enable.idempotence',
								   'acks', 'request.required.acks', 'message.timeout.ms',
								   'delivery.timeout.ms', 'log.queue'];
	k text;
BEGIN
	IF target !~ '^[A-Za-z0-9._-]{1,249}$' THEN
		RAISE EXCEPTION 'a kafka sink needs a topic name (letters, digits, . _ -), not "%"', target
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF jsonb_typeof(options->'brokers') IS DISTINCT FROM 'string'
	   OR options->>'brokers' !~ '^[^\s,]+(,[^\s,]+)*$' THEN
		RAISE EXCEPTION 'a kafka sink needs "brokers": "host:port,host:port..."'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF options->>'mode' = 'batch' THEN
		RAISE EXCEPTION 'a kafka sink sends one event per message: mode binary or structured'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF options ? 'key' AND NOT options->>'key' IN ('subject', 'source', 'none') THEN
		RAISE EXCEPTION 'key must be subject, source or none, not "%"', options->>'key'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF options ? 'config' AND (jsonb_typeof(options->'config') <> 'object' OR EXISTS (
			SELECT FROM jsonb_each(options->'config') c
			WHERE jsonb_typeof(c.value) NOT IN ('string', 'number', 'boolean'))) THEN
		RAISE EXCEPTION 'config must be a JSON object of librdkafka settings and their values'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	FOR k IN SELECT jsonb_object_keys(coalesce(options->'config', '{}')) LOOP
		IF k = ANY (owned) THEN
			RAISE EXCEPTION 'the kafka sink sets "%" itself', k
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Give the brokers as "brokers" and the delivery timeout as "timeout"; the sink always uses an idempotent producer with acks=all.';
		END IF;
	END LOOP;
END
$$;
COMMENT ON FUNCTION cdviz._sink_check_kafka(text, jsonb) IS
'cdviz internal: checks a kafka sink''s topic and options; raises SQLSTATE 22023 naming what is wrong';

COMMENT ON FUNCTION cdviz.create_sink(text, text, text, jsonb, text, text, text, timestamptz, boolean) IS
'cdviz: creates a sink and returns its id; the dispatcher delivers to it every matching event stored after this transaction commits (with start_at: also those imported since start_at). Secrets (token, hmac_secret, header values, the URL''s user info and query values, Kafka settings named like a secret) go to cdviz.sink_secrets; cdviz.sinks shows them as ***. Example: SELECT cdviz.create_sink(''ci'', ''http'', ''https://hooks.example/cd'', ''{"mode": "batch", "batch_size": 100, "hmac_secret": "s3cret", "headers": {"X-Api-Key": "k3y"}}'', type_pattern => ''dev.cdevents.service.%'');';

COMMENT ON FUNCTION cdviz.alter_sink(text, text, jsonb, text, text, text) IS
'cdviz: changes a sink; NULL arguments keep the current value, an empty string removes a filter, options (when given) replace all options, secrets included (a secret, header or Kafka setting value given as ***, as cdviz.sinks shows it, keeps its current value; so does the target as cdviz.sinks shows it). Takes effect at the dispatcher''s next chunk; delivery resumes where it was. Example: SELECT cdviz.alter_sink(''ci'', type_pattern => ''dev.cdevents.%'');';

COMMENT ON COLUMN cdviz.sink_status.kind IS 'http, nats, kafka or log';
COMMENT ON COLUMN cdviz.sink_status.target IS 'URL, subject, topic or label';
REVOKE EXECUTE ON FUNCTION cdviz._sink_check_kafka(text, jsonb), cdviz._sink_secret_setting(text) FROM PUBLIC;

-- Repositories and environments are kept the same way: created, modified
-- and deleted events, the latest value of each field that can change, and
-- a state from the latest event.  cdviz._entities_between() aggregates them
-- once for either subject; it is inlined (a single SELECT, STABLE, no SET)
-- into the function that calls it, and the planner drops the aggregates of
-- the columns that function does not return (environments have no owner).
CREATE FUNCTION cdviz._entities_between(subject text, from_ts timestamptz, to_ts timestamptz,
										lookback interval)
RETURNS TABLE (subject_id text, source text, name text, owner text, uri text,
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
WHERE l.subject = _entities_between.subject AND l.predicate IN ('created', 'modified', 'deleted')
  AND l."timestamp" >= from_ts - lookback AND l."timestamp" < to_ts
GROUP BY l.subject_id
HAVING max(l."timestamp") >= from_ts
$$;

COMMENT ON FUNCTION cdviz._entities_between(text, timestamptz, timestamptz, interval) IS
'cdviz: internal, for cdviz.repositories_between() and cdviz.environments_between(): one row per instance of subject (repository or environment) with an event in [from_ts, to_ts), read back to from_ts - lookback';
REVOKE EXECUTE ON FUNCTION cdviz._entities_between(text, timestamptz, timestamptz, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz._entities_between(text, timestamptz, timestamptz, interval) TO cdviz_reader;

CREATE OR REPLACE FUNCTION cdviz.repositories_between(from_ts timestamptz, to_ts timestamptz,
										   lookback interval DEFAULT '30 days')
RETURNS TABLE (repository_id text, source text, name text, owner text, uri text,
			   view_url text, state text, created_at timestamptz, modified_at timestamptz,
			   deleted_at timestamptz, first_event_at timestamptz, last_event_at timestamptz,
			   last_predicate text, event_count bigint, last_payload jsonb)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT * FROM cdviz._entities_between('repository', from_ts, to_ts, lookback)
$$;

CREATE OR REPLACE FUNCTION cdviz.environments_between(from_ts timestamptz, to_ts timestamptz,
										   lookback interval DEFAULT '30 days')
RETURNS TABLE (environment_id text, source text, name text, uri text, state text,
			   created_at timestamptz, modified_at timestamptz, deleted_at timestamptz,
			   first_event_at timestamptz, last_event_at timestamptz, last_predicate text,
			   event_count bigint, last_payload jsonb)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT e.subject_id, e.source, e.name, e.uri, e.state, e.created_at, e.modified_at,
	   e.deleted_at, e.first_event_at, e.last_event_at, e.last_predicate, e.event_count,
	   e.last_payload
FROM cdviz._entities_between('environment', from_ts, to_ts, lookback) AS e
$$;

-- Sources as rows (sql/ext/51_source_catalog.sql).  Progress stays where it
-- is: cdviz.fs_files and cdviz.s3_objects are keyed by path and by
-- bucket and key, so a file read under 0.1.0 is known to the source that
-- reads its folder now, whether the settings or SQL define it.
-- Sources as rows: any number of folders, S3 prefixes, NATS subject lists
-- and Kafka topic lists, managed with cdviz.create_source(), alter_source(),
-- drop_source(), pause_source() and resume_source().  The "cdviz sources"
-- launcher worker keeps one background worker per active source (so that a
-- dead bucket never delays a folder) and restarts a source's worker when
-- its row changes.  The cdviz.fs_*, cdviz.s3_* and cdviz.nats_* settings
-- each define one source too, kept here as a row the launcher writes
-- (defined_by = 'settings') and that SQL does not change.

CREATE TABLE cdviz.sources (
	id				integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	name			text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9_.-]{1,63}$'),
	kind			text NOT NULL CHECK (kind IN ('folder', 's3', 'nats', 'kafka')),
	location		text NOT NULL,
	options			jsonb NOT NULL DEFAULT '{}',
	secret_keys		text[] NOT NULL DEFAULT '{}',
	transformer		regprocedure,
	paused			boolean NOT NULL DEFAULT false,
	defined_by		text NOT NULL DEFAULT 'sql' CHECK (defined_by IN ('sql', 'settings')),
	created_at		timestamptz NOT NULL DEFAULT now(),
	updated_at		timestamptz NOT NULL DEFAULT now(),
	UNIQUE (kind, location)
);

COMMENT ON TABLE cdviz.sources IS
'cdviz: where events are read from (folders, S3 prefixes, NATS subjects, Kafka topics), one worker per active source; managed with cdviz.create_source(), alter_source(), drop_source(), pause_source(), resume_source(). Secrets (S3 keys, credentials in the NATS URL, secret Kafka settings) are kept apart in cdviz.source_secrets and shown here as ***.';
COMMENT ON COLUMN cdviz.sources.id IS 'source number';
COMMENT ON COLUMN cdviz.sources.name IS 'source name (letters, digits, _ . -); settings.folder, settings.s3 and settings.nats are the sources the cdviz.* settings define';
COMMENT ON COLUMN cdviz.sources.kind IS 'folder, s3, nats or kafka';
COMMENT ON COLUMN cdviz.sources.location IS 'folder: an absolute path; s3: s3://bucket/prefix; nats: comma-separated subjects; kafka: comma-separated topics. One source per location and kind';
COMMENT ON COLUMN cdviz.sources.options IS 'options of the kind (see cdviz.source_options()), secrets shown as ***';
COMMENT ON COLUMN cdviz.sources.secret_keys IS 'which options are secrets (kept in cdviz.source_secrets, readable by superusers only)';
COMMENT ON COLUMN cdviz.sources.transformer IS 'folder and s3: a function (meta jsonb, body jsonb) RETURNS SETOF jsonb called for each file or object read (format junit, tap or metadata), whose output replaces the built-in mapping of the format; NULL: the built-in mapping. See cdviz.retransform_source()';
COMMENT ON COLUMN cdviz.sources.paused IS 'a paused source has no worker and reads nothing; its progress is kept';
COMMENT ON COLUMN cdviz.sources.defined_by IS 'sql (managed with the functions) or settings (written by the launcher from the cdviz.* settings; change those instead)';
COMMENT ON COLUMN cdviz.sources.created_at IS 'when the source was created';
COMMENT ON COLUMN cdviz.sources.updated_at IS 'when the source was last changed; a change restarts its worker';

-- As cdviz.sink_secrets: a table nobody is granted anything on.
CREATE TABLE cdviz.source_secrets (
	source_id		integer PRIMARY KEY REFERENCES cdviz.sources (id) ON DELETE CASCADE,
	secrets			jsonb NOT NULL
);
REVOKE ALL ON cdviz.source_secrets FROM PUBLIC;

COMMENT ON TABLE cdviz.source_secrets IS
'cdviz: secret options of the sources (S3 keys, the NATS URL when it carries credentials, secret Kafka settings); superusers only';
COMMENT ON COLUMN cdviz.source_secrets.source_id IS 'cdviz.sources.id';
COMMENT ON COLUMN cdviz.source_secrets.secrets IS 'JSON object of the secret options (Kafka settings under "config"), merged into the options by the source''s worker';

-- What each source's worker last did: written by the launcher (state)
-- and by the worker (polls, errors, and the counters of message sources,
-- in the transaction that stored the messages).
CREATE TABLE cdviz.source_progress (
	source_id		integer PRIMARY KEY REFERENCES cdviz.sources (id) ON DELETE CASCADE,
	state			text NOT NULL DEFAULT 'starting'
		CHECK (state IN ('starting', 'running', 'failed', 'no worker slot')),
	state_at		timestamptz NOT NULL DEFAULT now(),
	restarts		integer NOT NULL DEFAULT 0,
	events			bigint NOT NULL DEFAULT 0,
	duplicates		bigint NOT NULL DEFAULT 0,
	rejected		bigint NOT NULL DEFAULT 0,
	lag				bigint,
	last_read_at	timestamptz,
	last_poll_at	timestamptz,
	last_success_at	timestamptz,
	last_error		text,
	last_error_at	timestamptz
);

COMMENT ON TABLE cdviz.source_progress IS
'cdviz: per source, the state of its worker, its last poll and error, and the counters of message sources (nats, kafka); read it through cdviz.source_status';
COMMENT ON COLUMN cdviz.source_progress.source_id IS 'cdviz.sources.id';
COMMENT ON COLUMN cdviz.source_progress.state IS 'starting, running, failed (its worker stopped on an error and is started again later) or no worker slot (max_worker_processes reached)';
COMMENT ON COLUMN cdviz.source_progress.state_at IS 'when the state was entered';
COMMENT ON COLUMN cdviz.source_progress.restarts IS 'times the worker was started again after a failure';
COMMENT ON COLUMN cdviz.source_progress.events IS 'message sources: events stored';
COMMENT ON COLUMN cdviz.source_progress.duplicates IS 'message sources: events the lake already had';
COMMENT ON COLUMN cdviz.source_progress.rejected IS 'message sources: messages sent to cdviz.rejected_events';
COMMENT ON COLUMN cdviz.source_progress.lag IS 'message sources: messages waiting, as last measured by the worker';
COMMENT ON COLUMN cdviz.source_progress.last_read_at IS 'message sources: when messages were last stored';
COMMENT ON COLUMN cdviz.source_progress.last_poll_at IS 'when the worker last looked at its source';
COMMENT ON COLUMN cdviz.source_progress.last_success_at IS 'when a look last succeeded';
COMMENT ON COLUMN cdviz.source_progress.last_error IS 'why the last look, or the worker, failed; NULL once a look succeeds';
COMMENT ON COLUMN cdviz.source_progress.last_error_at IS 'when last_error happened';

-- The options each kind takes: name, JSON type, default, and whether the
-- value is a secret.  cdviz._source_check() validates against it and the
-- workers read the same defaults (src/sources/).
CREATE FUNCTION cdviz.source_options(kind text DEFAULT NULL)
RETURNS TABLE (kind text, option text, type text, default_value text, secret boolean,
			   description text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT o.kind, o.option, o.type, o.default_value, o.secret, o.description
	FROM (VALUES
		('folder', 'poll_interval', 'integer', '5', false, 'seconds between two looks at the folder (1 to 86400)'),
		('folder', 'pattern', 'string', '*.json,*.jsonl,*.ndjson', false, 'comma-separated file name patterns; *.json files hold one event or an array, others one event per line'),
		('folder', 'after', 'string', 'keep', false, 'what to do with a file read to its end: keep, delete or move'),
		('folder', 'done_path', 'string', NULL, false, 'absolute path of the folder files are moved into (required when after is move)'),
		('folder', 'reader', NULL, NULL, NULL, 'file'),
		('s3', 'endpoint', 'string', '', false, 'endpoint URL; empty: AWS in the region'),
		('s3', 'region', 'string', 'us-east-1', false, 'region of the AWS Signature V4'),
		('s3', 'path_style', 'boolean', 'false', false, 'address the bucket in the URL path (MinIO, Ceph...)'),
		('s3', 'access_key_id', 'string', '', true, 'access key id'),
		('s3', 'secret_access_key', 'string', '', true, 'secret access key'),
		('s3', 'poll_interval', 'integer', '30', false, 'seconds between two listings (1 to 86400); doubled after each failure, up to 10 minutes'),
		('s3', 'pattern', 'string', '*.json,*.jsonl,*.ndjson', false, 'comma-separated patterns for the last segment of the keys'),
		('s3', 'reader', NULL, NULL, NULL, 'object'),
		('nats', 'url', 'string', NULL, false, 'server URL (required); a secret when it carries a user, password or token'),
		('nats', 'stream', 'string', '', false, 'JetStream stream: read through durable consumers, acknowledged after the commit; empty: plain subscriptions'),
		('nats', 'consumer', 'string', 'cdviz-<name>', false, 'durable consumer name (suffixed with the subject''s place when there are several subjects)'),
		('kafka', 'brokers', 'string', NULL, false, 'bootstrap servers host:port,... (required)'),
		('kafka', 'group', 'string', 'cdviz-<name>', false, 'consumer group'),
		('kafka', 'batch_size', 'integer', '500', false, 'messages stored per transaction (1 to 100000)'),
		('kafka', 'batch_timeout_ms', 'integer', '100', false, 'longest wait for a batch to fill, in ms (0 to 60000)'),
		('kafka', 'start', 'string', 'earliest', false, 'where a new group starts: earliest or latest'),
		('kafka', 'config', 'object', '{}', false, 'librdkafka settings; those a kafka sink keeps secret (named like *password*, *secret*, *.pem, ssl_key*, sasl.oauthbearer.config) are secrets')
	) AS v (kind, option, type, default_value, secret, description)
	CROSS JOIN LATERAL (
		SELECT v.kind, v.option, v.type, v.default_value, v.secret, v.description
		WHERE v.option <> 'reader'
		UNION ALL
		SELECT v.kind, r.option, r.type, r.default_value, false, format(r.description, v.description)
		FROM (VALUES
			('format', 'string', 'cdevents', 'how each %s is read: cdevents (a .json event or array, else JSON Lines), junit (a JUnit XML report), tap (a TAP 13/14 report) or metadata (not read: its name, size, time and SHA-256 handed to the source''s transformer, which it requires); the pattern defaults to *.xml for junit, *.tap for tap, * for metadata'),
			('batch_lines', 'integer', '5000', 'lines or array elements stored per transaction (1 to 1000000)'),
			('max_line_size', 'integer', '1024', 'longest line read, in kB (1 to 1048576)'),
			('max_json_size', 'integer', '65536', 'largest .json %s read, in kB (1 to 1048576)'),
			('max_report_size', 'integer', '65536', 'largest report (format junit or tap) read, in kB (1 to 1048576); larger ones are dead letters'),
			('environment', 'string', '', 'reports: the test runs'' environment.id; empty: the suite''s hostname, else unknown')
		) AS r (option, type, default_value, description)
		WHERE v.option = 'reader'
	) AS o (kind, option, type, default_value, secret, description)
	WHERE source_options.kind IS NULL OR v.kind = source_options.kind
$$;
COMMENT ON FUNCTION cdviz.source_options(text) IS
'cdviz: the options a kind of source takes (all kinds when NULL), their JSON type, default and meaning. Example: SELECT option, type, default_value FROM cdviz.source_options(''folder'');';

-- Checks a source's definition; returns its location as stored (folder
-- paths without a final slash, s3://bucket/ with its slash, lists
-- without spaces).  Raises 22023 naming what is wrong.
CREATE FUNCTION cdviz._source_check(kind text, location text, options jsonb)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	known text[] := ARRAY(SELECT o.option FROM cdviz.source_options(kind) o ORDER BY o.option);
	o record;
	v jsonb;
	loc text := location;
	-- at most 16 NATS subjects (one subscription each); Kafka topic names
	list_re CONSTANT text := CASE kind WHEN 'nats' THEN '^[^\s,]+(,[^\s,]+){0,15}$'
									   ELSE '^[A-Za-z0-9._-]{1,249}(,[A-Za-z0-9._-]{1,249})*$' END;
BEGIN
	IF kind IS NULL OR NOT kind IN ('folder', 's3', 'nats', 'kafka') THEN
		RAISE EXCEPTION 'unknown source kind "%"', kind
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Use folder, s3, nats or kafka.';
	END IF;
	IF jsonb_typeof(options) IS DISTINCT FROM 'object' THEN
		RAISE EXCEPTION 'source options must be a JSON object'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	FOR o IN SELECT k FROM jsonb_object_keys(options) k WHERE NOT k = ANY (known) ORDER BY k LOOP
		RAISE EXCEPTION 'unknown option "%" for a source of kind %', o.k, kind
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = format('known options: %s.', array_to_string(known, ', '));
	END LOOP;
	FOR o IN SELECT s.option, s.type FROM cdviz.source_options(kind) s LOOP
		v := options->o.option;
		CONTINUE WHEN v IS NULL;
		IF o.type = 'integer' AND NOT (jsonb_typeof(v) = 'number' AND v::text ~ '^-?[0-9]+$') THEN
			RAISE EXCEPTION 'option "%" of a source of kind % must be an integer, not %', o.option, kind, v
				USING ERRCODE = 'invalid_parameter_value';
		ELSIF o.type = 'string' AND jsonb_typeof(v) <> 'string' THEN
			RAISE EXCEPTION 'option "%" of a source of kind % must be a string, not %', o.option, kind, v
				USING ERRCODE = 'invalid_parameter_value';
		ELSIF o.type = 'boolean' AND jsonb_typeof(v) <> 'boolean' THEN
			RAISE EXCEPTION 'option "%" of a source of kind % must be true or false, not %', o.option, kind, v
				USING ERRCODE = 'invalid_parameter_value';
		ELSIF o.type = 'object' AND (jsonb_typeof(v) <> 'object' OR EXISTS (
				SELECT FROM jsonb_each(v) e WHERE jsonb_typeof(e.value) NOT IN ('string', 'number', 'boolean'))) THEN
			RAISE EXCEPTION 'option "%" of a source of kind % must be an object of settings and their values', o.option, kind
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
	END LOOP;
	-- ranges, as the settings of the same name have
	FOR o IN SELECT * FROM (VALUES ('poll_interval', 1, 86400), ('batch_lines', 1, 1000000),
							  ('max_line_size', 1, 1048576), ('max_json_size', 1, 1048576),
							  ('max_report_size', 1, 1048576),
							  ('batch_size', 1, 100000), ('batch_timeout_ms', 0, 60000)) r (k, lo, hi)
	LOOP
		IF options ? o.k AND NOT (options->>o.k)::numeric BETWEEN o.lo AND o.hi THEN
			RAISE EXCEPTION 'option "%" must be from % to %, not %', o.k, o.lo, o.hi, options->>o.k
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
	END LOOP;
	IF options ? 'after' AND NOT options->>'after' IN ('keep', 'delete', 'move') THEN
		RAISE EXCEPTION 'option "after" must be keep, delete or move, not "%"', options->>'after'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF options->>'after' = 'move' AND coalesce(options->>'done_path', '') !~ '^/' THEN
		RAISE EXCEPTION 'option "done_path" (an absolute path) is required when "after" is move'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF options ? 'format' AND NOT options->>'format' IN ('cdevents', 'junit', 'tap', 'metadata') THEN
		RAISE EXCEPTION 'option "format" must be cdevents, junit, tap or metadata, not "%"', options->>'format'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF options ? 'start' AND NOT options->>'start' IN ('earliest', 'latest') THEN
		RAISE EXCEPTION 'option "start" must be earliest or latest, not "%"', options->>'start'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	FOR o IN SELECT x.option FROM (VALUES ('nats', 'url'), ('kafka', 'brokers')) x (kind, option)
			 WHERE x.kind = _source_check.kind LOOP
		IF coalesce(options->>o.option, '') = '' THEN
			RAISE EXCEPTION 'option "%" is required for a source of kind %', o.option, kind
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
	END LOOP;

	IF loc IS NULL THEN
		RAISE EXCEPTION 'a source needs a location' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	CASE kind
		WHEN 'folder' THEN
			IF loc !~ '^/' THEN
				RAISE EXCEPTION 'the location of a folder source must be an absolute path, not "%"', loc
					USING ERRCODE = 'invalid_parameter_value';
			END IF;
			loc := coalesce(nullif(regexp_replace(loc, '/+$', ''), ''), '/');
		WHEN 's3' THEN
			-- bucket names as S3 has known them (older ones have capitals, _)
			IF loc !~ '^s3://[A-Za-z0-9._-]{3,255}(/.*)?$' THEN
				RAISE EXCEPTION 'the location of an s3 source must be s3://bucket/prefix, not "%"', loc
					USING ERRCODE = 'invalid_parameter_value';
			END IF;
			IF loc !~ '^s3://[^/]*/' THEN
				loc := loc || '/';
			END IF;
		ELSE
			loc := regexp_replace(trim(loc), '\s*,\s*', ',', 'g');
			IF loc !~ list_re THEN
				RAISE EXCEPTION 'the location of a % source must be a comma-separated list of %, not "%"', kind,
					CASE kind WHEN 'nats' THEN 'at most 16 subjects' ELSE 'topics' END, location
					USING ERRCODE = 'invalid_parameter_value';
			END IF;
	END CASE;
	RETURN loc;
END
$$;
COMMENT ON FUNCTION cdviz._source_check(text, text, jsonb) IS
'cdviz internal: checks a source''s kind, location and options (see cdviz.source_options()) and returns the location as stored; raises SQLSTATE 22023 naming what is wrong';

-- A source's options split into what cdviz.sources shows and what
-- cdviz.source_secrets keeps.
CREATE FUNCTION cdviz._source_split(kind text, options jsonb,
									OUT shown_options jsonb, OUT secret_keys text[], OUT secrets jsonb)
RETURNS record
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	names text[] := ARRAY(SELECT o.option FROM cdviz.source_options(kind) o WHERE o.secret);
	config jsonb := '{}';
BEGIN
	secrets := (SELECT coalesce(jsonb_object_agg(k, options->k), '{}') FROM unnest(names) k WHERE options ? k);
	shown_options := options - names;
	IF kind = 'nats' AND options ? 'url' AND cdviz._redact_url(options->>'url') <> options->>'url' THEN
		secrets := secrets || jsonb_build_object('url', options->'url');
		shown_options := jsonb_set(shown_options, '{url}', to_jsonb(cdviz._redact_url(options->>'url')));
	END IF;
	IF kind = 'kafka' AND jsonb_typeof(options->'config') = 'object' THEN
		SELECT coalesce(jsonb_object_agg(e.key, e.value), '{}') INTO config
		FROM jsonb_each(options->'config') e WHERE cdviz._sink_secret_setting(e.key);
		IF config <> '{}' THEN
			secrets := secrets || jsonb_build_object('config', config);
			shown_options := jsonb_set(shown_options, '{config}', (
				SELECT jsonb_object_agg(e.key, CASE WHEN cdviz._sink_secret_setting(e.key) THEN '"***"' ELSE e.value END)
				FROM jsonb_each(options->'config') e));
		END IF;
	END IF;
	secret_keys := ARRAY(SELECT k FROM jsonb_object_keys(secrets) k WHERE k <> 'config'
						 UNION ALL SELECT 'config.' || k FROM jsonb_object_keys(config) k ORDER BY 1);
	shown_options := shown_options || (SELECT coalesce(jsonb_object_agg(k, '***'), '{}')
									   FROM unnest(secret_keys) k WHERE k NOT LIKE 'config.%' AND k <> 'url');
	IF secrets = '{}' THEN
		secrets := NULL;
	END IF;
END
$$;
COMMENT ON FUNCTION cdviz._source_split(text, jsonb) IS
'cdviz internal: splits a source''s options into what cdviz.sources shows (secrets as ***), the names of the secret options and the JSON object cdviz.source_secrets keeps (NULL: none)';

-- A message with each of the given secret values replaced by ***, the
-- longer first (a password inside a URL).  Values shorter than four
-- characters are left: replacing them would blank out the message, not
-- hide a credential.  Sinks and sources record errors that a server may
-- have answered with the request it was sent.
CREATE FUNCTION cdviz._redact_values(message text, secret_values text[])
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v text;
BEGIN
	FOR v IN
		SELECT x.v FROM unnest(secret_values) x(v)
		WHERE length(x.v) >= 4
		GROUP BY x.v
		ORDER BY length(x.v) DESC, x.v
	LOOP
		message := replace(message, v, '***');
	END LOOP;
	RETURN message;
END
$$;
COMMENT ON FUNCTION cdviz._redact_values(text, text[]) IS
'cdviz internal: a message with each of the given values (of four characters or more) replaced by ***';

-- A source's message (its last error, which cdviz_reader reads in
-- cdviz.source_status) with the source's secrets replaced: every secret
-- value, and the user info of the NATS URL and its parts.
CREATE FUNCTION cdviz._source_redact(message text, secrets jsonb)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT cdviz._redact_values(message, ARRAY(
		SELECT e.value FROM jsonb_each_text(secrets - 'config') e
		UNION ALL SELECT e.value FROM jsonb_each_text(CASE WHEN jsonb_typeof(secrets->'config') = 'object'
														   THEN secrets->'config' END) e
		UNION ALL SELECT u.userinfo
		UNION ALL SELECT p.part FROM regexp_split_to_table(u.userinfo, ':') p(part)))
	FROM (SELECT substring(secrets->>'url' FROM '^[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)@') AS userinfo) u
$$;
COMMENT ON FUNCTION cdviz._source_redact(text, jsonb) IS
'cdviz internal: a message with the given source secrets (of cdviz.source_secrets) in it replaced by ***; executable by all, as cdviz.source_status calls it with its reader''s rights';

-- A source's transformer, as it will be (NULL: none): the contract (meta
-- jsonb, body jsonb) RETURNS SETOF jsonb, on a kind and format that hand
-- items to one; format metadata has no built-in mapping and needs one.
CREATE FUNCTION cdviz._source_check_transformer(kind text, options jsonb, transformer regprocedure)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	fmt CONSTANT text := coalesce(options->>'format', 'cdevents');
BEGIN
	IF transformer IS NULL THEN
		IF kind IN ('folder', 's3') AND fmt = 'metadata' THEN
			RAISE EXCEPTION 'a source of format metadata needs a transformer'
				USING ERRCODE = 'invalid_parameter_value',
					  DETAIL = 'Its files are not read: there are no events in them to store without one.',
					  HINT = 'Example: CREATE FUNCTION my_files(meta jsonb, body jsonb) RETURNS SETOF jsonb LANGUAGE sql AS $f$ SELECT cdviz.webhook_cdevent(''artifact.published'', meta->>''source_uri'', meta->>''mtime'', ''pkg:generic/'' || (meta->>''name'') || ''?checksum=sha256:'' || (meta->>''sha256''), ''{}'') $f$; then transformer => ''my_files(jsonb,jsonb)''.';
		END IF;
		RETURN;
	END IF;
	IF NOT EXISTS (SELECT FROM pg_proc p WHERE p.oid = transformer AND p.proretset
				   AND p.prorettype = 'jsonb'::regtype
				   AND p.proargtypes = '3802 3802'::oidvector) THEN
		RAISE EXCEPTION 'a source transformer must be a function (meta jsonb, body jsonb) RETURNS SETOF jsonb, not %', transformer
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Example: CREATE FUNCTION my_files(meta jsonb, body jsonb) RETURNS SETOF jsonb LANGUAGE plpgsql AS ...';
	END IF;
	IF kind IN ('nats', 'kafka') THEN
		RAISE EXCEPTION 'sources of kind % take no transformer', kind
			USING ERRCODE = 'feature_not_supported',
				  DETAIL = 'Their messages are read as CDEvents or CloudEvents, in batches.',
				  HINT = 'Post the tool''s payloads to a webhook route instead, which applies a transformer to each (cdviz.create_webhook()), or drop them as files into a folder source.';
	END IF;
	IF fmt = 'cdevents' THEN
		RAISE EXCEPTION 'a source of format cdevents takes no transformer'
			USING ERRCODE = 'feature_not_supported',
				  DETAIL = 'Its files hold CDEvents, stored as they are.',
				  HINT = 'Give the source the format whose items the transformer reads: junit, tap (the report) or metadata (the file''s name, size, time and SHA-256).';
	END IF;
END
$$;
COMMENT ON FUNCTION cdviz._source_check_transformer(text, jsonb, regprocedure) IS
'cdviz internal: raises unless a source of that kind and options may have that transformer (NULL: none): the signature (meta jsonb, body jsonb) RETURNS SETOF jsonb (22023), a folder or s3 source of format junit, tap or metadata (0A000 otherwise), and one at all for format metadata (22023)';

-- The row to change, or an error naming it: missing, or defined by the
-- settings.
CREATE FUNCTION cdviz._source_for_change(name text)
RETURNS cdviz.sources
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s cdviz.sources;
BEGIN
	SELECT * INTO s FROM cdviz.sources WHERE sources.name = _source_for_change.name FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'source "%" does not exist', name USING ERRCODE = 'undefined_object';
	END IF;
	IF s.defined_by = 'settings' THEN
		RAISE EXCEPTION 'source "%" is defined by the settings', name
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = format('Change %s in postgresql.conf and reload; an empty %s removes the source.',
								CASE s.kind WHEN 'folder' THEN 'the cdviz.fs_* settings'
											WHEN 's3' THEN 'the cdviz.s3_* settings'
											ELSE 'the cdviz.nats_* settings' END,
								CASE s.kind WHEN 'folder' THEN 'cdviz.fs_path'
											WHEN 's3' THEN 'cdviz.s3_bucket'
											ELSE 'cdviz.nats_subjects' END);
	END IF;
	RETURN s;
END
$$;
COMMENT ON FUNCTION cdviz._source_for_change(text) IS
'cdviz internal: locks and returns the SQL-defined source of that name; raises 42704 when it does not exist and 55000 when the settings define it';

-- Writes a source's location, options and secrets (checked already);
-- id NULL inserts a new source and returns its id.
CREATE FUNCTION cdviz._source_store(id integer, name text, kind text, location text, options jsonb,
									defined_by text DEFAULT 'sql', paused boolean DEFAULT false)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	sp record := cdviz._source_split(kind, options);
	sid integer := id;
	other text;
BEGIN
	-- progress is kept per file and object: a folder inside another's,
	-- or a key prefix inside another's, would be read by two sources
	SELECT s.name INTO other FROM cdviz.sources s
	WHERE s.kind = _source_store.kind AND s.id IS DISTINCT FROM sid
	  AND (s.location = _source_store.location
		   OR (_source_store.kind = 'folder' AND (starts_with(s.location || '/', rtrim(_source_store.location, '/') || '/')
									OR starts_with(_source_store.location || '/', rtrim(s.location, '/') || '/')))
		   OR (_source_store.kind = 's3' AND (starts_with(s.location, _source_store.location)
								OR starts_with(_source_store.location, s.location))))
	LIMIT 1;
	IF other IS NOT NULL THEN
		RAISE EXCEPTION 'source "%" reads "%" already', other, location
			USING ERRCODE = 'unique_violation',
				  HINT = 'A folder (with its sub-folders), a bucket prefix, a subject list or a topic list is read by one source.';
	END IF;
	IF sid IS NULL THEN
		INSERT INTO cdviz.sources (name, kind, location, options, secret_keys, paused, defined_by)
		VALUES (name, kind, location, sp.shown_options, sp.secret_keys, paused, defined_by)
		RETURNING sources.id INTO sid;
	ELSE
		UPDATE cdviz.sources s
		SET location = _source_store.location, options = sp.shown_options,
			secret_keys = sp.secret_keys, updated_at = clock_timestamp()
		WHERE s.id = sid;
		DELETE FROM cdviz.source_secrets x WHERE x.source_id = sid;
	END IF;
	IF sp.secrets IS NOT NULL THEN
		INSERT INTO cdviz.source_secrets VALUES (sid, sp.secrets);
	END IF;
	RETURN sid;
END
$$;
COMMENT ON FUNCTION cdviz._source_store(integer, text, text, text, jsonb, text, boolean) IS
'cdviz internal: writes a checked source into cdviz.sources and cdviz.source_secrets (id NULL: a new one) and returns its id; raises 23505 when another source of the kind reads the location';

CREATE FUNCTION cdviz.create_source(name text, kind text, location text,
									options jsonb DEFAULT '{}',
									transformer regprocedure DEFAULT NULL,
									paused boolean DEFAULT false)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	loc text := cdviz._source_check(kind, location, coalesce(options, '{}'));
	sid integer;
BEGIN
	PERFORM cdviz._source_check_transformer(kind, coalesce(options, '{}'), transformer);
	IF name LIKE 'settings.%' THEN
		RAISE EXCEPTION 'source names starting with "settings." are kept for the sources the settings define'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	sid := cdviz._source_store(NULL, name, kind, loc, coalesce(options, '{}'),
							   paused => coalesce(paused, false));
	IF transformer IS NOT NULL THEN
		UPDATE cdviz.sources x SET transformer = create_source.transformer WHERE x.id = sid;
	END IF;
	RETURN sid;
END
$$;
COMMENT ON FUNCTION cdviz.create_source(text, text, text, jsonb, regprocedure, boolean) IS
'cdviz: creates a source (kind folder, s3, nats or kafka; options as cdviz.source_options() lists them) and returns its id; its worker starts when the transaction commits. Secret options go to cdviz.source_secrets; cdviz.sources shows them as ***. A folder or s3 source of format junit, tap or metadata may have a transformer (meta jsonb, body jsonb) RETURNS SETOF jsonb, called for each file or object; format metadata requires one. Example: SELECT cdviz.create_source(''agents'', ''folder'', ''/var/lib/ci/events'', ''{"poll_interval": 2, "after": "delete"}'');';

CREATE FUNCTION cdviz.alter_source(name text, location text DEFAULT NULL, options jsonb DEFAULT NULL,
								   transformer regprocedure DEFAULT NULL, paused boolean DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s cdviz.sources := cdviz._source_for_change(name);
	cur jsonb;
	full_options jsonb;
	k text;
	-- NULL keeps the current transformer, '-' (no function) removes it
	tr CONSTANT regprocedure := CASE WHEN transformer IS NULL THEN s.transformer
									 WHEN transformer <> 0 THEN transformer END;
BEGIN
	SELECT x.secrets INTO cur FROM cdviz.source_secrets x WHERE x.source_id = s.id;
	cur := coalesce(cur, '{}');
	IF options IS NULL THEN
		-- the options as the worker sees them, secrets in place
		full_options := s.options || (cur - 'config');
		IF cur ? 'config' THEN
			full_options := jsonb_set(full_options, '{config}', full_options->'config' || cur->'config');
		END IF;
	ELSE
		-- new options replace all options; a secret given as *** (as
		-- cdviz.sources shows it) keeps its current value
		full_options := options;
		FOR k IN SELECT e.key FROM jsonb_each_text(options) e WHERE e.value = '***' AND cur ? e.key LOOP
			full_options := jsonb_set(full_options, ARRAY[k], cur->k);
		END LOOP;
		IF options->>'url' = cdviz._redact_url(cur->>'url') THEN
			full_options := jsonb_set(full_options, '{url}', cur->'url');
		END IF;
		IF jsonb_typeof(options->'config') = 'object' AND cur ? 'config' THEN
			full_options := jsonb_set(full_options, '{config}', (
				SELECT jsonb_object_agg(e.key, CASE WHEN e.value = '"***"' AND cur->'config' ? e.key
													THEN cur->'config'->e.key ELSE e.value END)
				FROM jsonb_each(options->'config') e));
		END IF;
	END IF;
	PERFORM cdviz._source_check_transformer(s.kind, full_options, tr);
	PERFORM cdviz._source_store(s.id, s.name, s.kind,
								cdviz._source_check(s.kind, coalesce(location, s.location), full_options),
								full_options);
	IF tr IS DISTINCT FROM s.transformer THEN
		UPDATE cdviz.sources x SET transformer = tr WHERE x.id = s.id;
	END IF;
	IF paused IS NOT NULL THEN
		UPDATE cdviz.sources x SET paused = alter_source.paused WHERE x.id = s.id;
	END IF;
END
$$;
COMMENT ON FUNCTION cdviz.alter_source(text, text, jsonb, regprocedure, boolean) IS
'cdviz: changes a source; NULL arguments keep the current value, options (when given) replace all options, secrets included (a secret given as ***, as cdviz.sources shows it, keeps its current value); transformer => ''-'' removes the transformer. Its worker restarts with the new definition when the transaction commits; progress is kept per file, object, stream consumer or group. Example: SELECT cdviz.alter_source(''agents'', options => ''{"poll_interval": 10}'');';

CREATE FUNCTION cdviz.drop_source(name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s cdviz.sources := cdviz._source_for_change(name);
BEGIN
	DELETE FROM cdviz.sources x WHERE x.id = s.id;
END
$$;
COMMENT ON FUNCTION cdviz.drop_source(text) IS
'cdviz: removes a source and its secrets; its worker stops when the transaction commits. The progress of its files and objects is kept (a source created again for the same folder or bucket reads nothing twice). Example: SELECT cdviz.drop_source(''agents'');';

CREATE FUNCTION cdviz.pause_source(name text, paused boolean DEFAULT true)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s cdviz.sources := cdviz._source_for_change(name);
BEGIN
	UPDATE cdviz.sources x SET paused = pause_source.paused, updated_at = clock_timestamp()
	WHERE x.id = s.id AND x.paused IS DISTINCT FROM pause_source.paused;
END
$$;
COMMENT ON FUNCTION cdviz.pause_source(text, boolean) IS
'cdviz: stops a source''s worker when the transaction commits; nothing is read until cdviz.resume_source(), and reading then starts where it stopped. Example: SELECT cdviz.pause_source(''agents'');';

CREATE FUNCTION cdviz.resume_source(name text)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT cdviz.pause_source(name, false) $$;
COMMENT ON FUNCTION cdviz.resume_source(text) IS
'cdviz: starts a paused source''s worker again when the transaction commits. Example: SELECT cdviz.resume_source(''agents'');';

-- Called by the launcher at start and on reload: the source a group of
-- settings defines (location NULL: none), as a row like the others.
CREATE FUNCTION cdviz._source_sync_settings(kind text, location text, options jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	sname CONSTANT text := 'settings.' || kind;
	s cdviz.sources;
	loc text;
	cur jsonb;
BEGIN
	SELECT * INTO s FROM cdviz.sources x WHERE x.name = sname FOR UPDATE;
	IF coalesce(location, '') = '' THEN
		DELETE FROM cdviz.sources x WHERE x.name = sname;
		RETURN;
	END IF;
	loc := cdviz._source_check(kind, location, options);
	IF s.id IS NOT NULL THEN
		-- unchanged: no update, which would restart the worker
		SELECT x.secrets INTO cur FROM cdviz.source_secrets x WHERE x.source_id = s.id;
		IF s.location = loc AND s.options || coalesce(cur, '{}') = options THEN
			RETURN;
		END IF;
	END IF;
	PERFORM cdviz._source_store(s.id, sname, kind, loc, options, 'settings');
END
$$;
COMMENT ON FUNCTION cdviz._source_sync_settings(text, text, jsonb) IS
'cdviz internal: called by the cdviz sources launcher; makes the source named settings.<kind> agree with the cdviz.* settings (deleted when location is empty)';

-- Wakes the launcher at commit: a change takes effect at once.
CREATE FUNCTION cdviz._sources_changed()
RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'cdviz_sources_changed';
COMMENT ON FUNCTION cdviz._sources_changed() IS
'cdviz internal: statement trigger of cdviz.sources and cdviz.source_secrets; wakes the cdviz sources launcher when the transaction commits';

CREATE TRIGGER sources_changed
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON cdviz.sources
	FOR EACH STATEMENT EXECUTE FUNCTION cdviz._sources_changed();
CREATE TRIGGER sources_changed
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON cdviz.source_secrets
	FOR EACH STATEMENT EXECUTE FUNCTION cdviz._sources_changed();
COMMENT ON TRIGGER sources_changed ON cdviz.sources IS
'cdviz: wakes the sources launcher, which starts, stops or restarts the sources'' workers';
COMMENT ON TRIGGER sources_changed ON cdviz.source_secrets IS
'cdviz: wakes the sources launcher, which restarts the worker of a source whose secrets changed';

SELECT pg_catalog.pg_extension_config_dump('cdviz.sources', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.source_secrets', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.source_progress', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.sources_id_seq', '');

-- Sources are managed by superusers only, as sinks are: a source writes
-- into the lake and reads files the server's account can read.
REVOKE EXECUTE ON FUNCTION cdviz._source_check(text, text, jsonb),
	cdviz._source_split(text, jsonb),
	cdviz._source_check_transformer(text, jsonb, regprocedure), cdviz._source_for_change(text),
	cdviz._source_store(integer, text, text, text, jsonb, text, boolean),
	cdviz.create_source(text, text, text, jsonb, regprocedure, boolean),
	cdviz.alter_source(text, text, jsonb, regprocedure, boolean),
	cdviz.drop_source(text), cdviz.pause_source(text, boolean), cdviz.resume_source(text),
	cdviz._source_sync_settings(text, text, jsonb), cdviz._sources_changed() FROM PUBLIC;
GRANT SELECT ON cdviz.sources TO cdviz_reader;

-- One row per source.  Folder and S3 sources count their files and
-- objects in cdviz.fs_files and cdviz.s3_objects (rows of the source's
-- location: a source dropped and created again for the same folder
-- finds its progress); message sources count in cdviz.source_progress.
-- Errors are shown with the source's secrets replaced by ***.
-- 0.1.0's view had a row per folder or prefix and other columns
DROP VIEW cdviz.source_status;
CREATE VIEW cdviz.source_status AS
SELECT s.id, s.name, s.kind, s.location, s.paused, s.defined_by,
	   CASE WHEN s.paused THEN 'paused' ELSE coalesce(p.state, 'starting') END AS state,
	   i.items,
	   coalesce(i.events, 0) + coalesce(p.events, 0) AS events,
	   coalesce(i.duplicates, 0) + coalesce(p.duplicates, 0) AS duplicates,
	   coalesce(i.rejected, 0) + coalesce(p.rejected, 0) AS rejected,
	   CASE WHEN s.kind IN ('folder', 's3') THEN coalesce(i.unread, 0) ELSE p.lag END AS lag,
	   greatest(i.last_read_at, p.last_read_at) AS last_read_at,
	   p.last_poll_at,
	   p.last_success_at,
	   cdviz._source_redact(e.error, x.secrets) AS last_error,
	   e.error_at AS last_error_at
FROM cdviz.sources s
LEFT JOIN cdviz.source_progress p ON p.source_id = s.id
LEFT JOIN cdviz.source_secrets x ON x.source_id = s.id
LEFT JOIN LATERAL (
	SELECT count(*) AS items,
		   count(*) FILTER (WHERE f.status = 'reading') AS unread,
		   sum(f.events) AS events, sum(f.duplicates) AS duplicates, sum(f.rejected) AS rejected,
		   max(f.last_read_at) AS last_read_at,
		   (array_agg(f.path || ': ' || f.last_error ORDER BY f.last_error_at DESC)
				FILTER (WHERE f.last_error IS NOT NULL))[1] AS last_item_error,
		   max(f.last_error_at) AS last_item_error_at
	FROM cdviz.fs_files f
	WHERE f.source = s.location
	HAVING s.kind = 'folder'
	UNION ALL
	SELECT count(*),
		   count(*) FILTER (WHERE o.status = 'reading'),
		   sum(o.events), sum(o.duplicates), sum(o.rejected),
		   max(o.last_read_at),
		   (array_agg('s3://' || o.bucket || '/' || o.key || ': ' || o.last_error ORDER BY o.last_error_at DESC)
				FILTER (WHERE o.last_error IS NOT NULL))[1],
		   max(o.last_error_at)
	FROM cdviz.s3_objects o
	WHERE o.source = s.location
	HAVING s.kind = 's3'
) i ON true
-- the first error there is: of the worker (failed) or of its last poll,
-- else of one of the files or objects
LEFT JOIN LATERAL (
	SELECT v.error, v.error_at
	FROM (VALUES (1, p.last_error, p.last_error_at),
				 (2, i.last_item_error, i.last_item_error_at)) v (n, error, error_at)
	WHERE v.error IS NOT NULL
	ORDER BY v.n
	LIMIT 1
) e ON true;

COMMENT ON VIEW cdviz.source_status IS
'cdviz: one row per source (cdviz.sources): the state of its worker, files or objects seen, events stored, duplicates, rejected lines or messages, what is left to read, when it was last read and polled, and its last error (of the source, else of one of its files); no secrets';
COMMENT ON COLUMN cdviz.source_status.id IS 'cdviz.sources.id';
COMMENT ON COLUMN cdviz.source_status.name IS 'source name';
COMMENT ON COLUMN cdviz.source_status.kind IS 'folder, s3, nats or kafka';
COMMENT ON COLUMN cdviz.source_status.location IS 'folder path, s3://bucket/prefix, NATS subjects or Kafka topics';
COMMENT ON COLUMN cdviz.source_status.paused IS 'whether the source is paused';
COMMENT ON COLUMN cdviz.source_status.defined_by IS 'sql or settings';
COMMENT ON COLUMN cdviz.source_status.state IS 'running, paused, starting, failed (see last_error; started again after a pause that doubles from 5 s to 5 min) or no worker slot (raise max_worker_processes)';
COMMENT ON COLUMN cdviz.source_status.items IS 'folder and s3: files or objects seen; NULL for message sources';
COMMENT ON COLUMN cdviz.source_status.events IS 'events stored';
COMMENT ON COLUMN cdviz.source_status.duplicates IS 'events read that the lake already had';
COMMENT ON COLUMN cdviz.source_status.rejected IS 'lines, elements or messages sent to cdviz.rejected_events';
COMMENT ON COLUMN cdviz.source_status.lag IS 'folder and s3: files or objects seen but not read to their end; kafka: messages behind the group''s committed offsets, nats: messages pending, as last measured by the worker';
COMMENT ON COLUMN cdviz.source_status.last_read_at IS 'when something was last read';
COMMENT ON COLUMN cdviz.source_status.last_poll_at IS 'when the source was last looked at';
COMMENT ON COLUMN cdviz.source_status.last_success_at IS 'when a look last succeeded';
COMMENT ON COLUMN cdviz.source_status.last_error IS 'the source''s current error, else the latest error of one of its files or objects';
COMMENT ON COLUMN cdviz.source_status.last_error_at IS 'when last_error happened';

GRANT SELECT ON cdviz.source_status TO cdviz_reader;

-- A message the dispatcher records about a sink (the last error, which
-- cdviz_reader reads in cdviz.sink_status) with the sink's secrets in it
-- replaced by *** (see cdviz._redact_values()): a receiver may answer a
-- failure with the request it was sent.
CREATE OR REPLACE FUNCTION cdviz._sink_redact(message text, secrets jsonb)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT cdviz._redact_values(message, ARRAY(
		SELECT secrets->>'token'
		UNION ALL SELECT secrets->>'hmac_secret'
		UNION ALL SELECT h.value FROM jsonb_each_text(CASE WHEN jsonb_typeof(secrets->'headers') = 'object'
														   THEN secrets->'headers' END) h
		UNION ALL SELECT c.value FROM jsonb_each_text(CASE WHEN jsonb_typeof(secrets->'config') = 'object'
														   THEN secrets->'config' END) c
		WHERE cdviz._sink_secret_setting(c.key)
		UNION ALL SELECT u.userinfo
		UNION ALL SELECT p.part FROM regexp_split_to_table(u.userinfo, ':') p(part)
		UNION ALL SELECT substring(p.part FROM '=(.*)$')
		FROM regexp_split_to_table(substring(secrets->>'target' FROM '^[^?#]*\?([^#]*)'), '&') p(part)))
	FROM (SELECT substring(secrets->>'target' FROM '^[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)@') AS userinfo) u
$$;
COMMENT ON FUNCTION cdviz._sink_redact(text, jsonb) IS
'cdviz internal: a message with the given sink secrets (of cdviz.sink_secrets) in it replaced by ***';

-- The columns every summary table ends with are named once, by the type
-- cdviz._summary_columns, and folded once, by cdviz._summary_merge(),
-- which each statement of cdviz._fold_events() now calls (the tables
-- exist already: a fresh install makes them from a template of the type).
CREATE TYPE cdviz._summary_columns AS (
	chain_id		text,
	first_event_at	timestamptz,
	last_event_at	timestamptz,
	last_event_id	bigint,
	last_predicate	text,
	event_count		bigint
);

COMMENT ON TYPE cdviz._summary_columns IS
'cdviz: internal: the columns every summary table ends with (see cdviz.pipeline_run_summaries), as cdviz._summary_merge() returns them';

-- How the columns every summary ends with fold, for any summary table: s is
-- the stored row, x the one proposed (excluded).  chain_id and
-- last_event_at take the max, first_event_at the min, last_event_id and
-- last_predicate those of the latest event by (timestamp, lake id),
-- event_count the sum.  A statement assigns them in one item,
--   (chain_id, ..., event_count) = ROW((cdviz._summary_merge(s, excluded)).*)
-- and the function is inlined there (LANGUAGE sql, IMMUTABLE, not STRICT,
-- no SET, one ROW() of a named type): each field becomes its own
-- expression over the two rows' columns, so an update runs the same
-- expressions as if written out, with no call and no row value built.
-- (Declared with OUT parameters instead of a named type, it would not be
-- inlined, and would be called once per field.)
-- Only the extension's owner may execute it, as the fold runs (the
-- planner inlines a function only for a user who may execute it).
CREATE FUNCTION cdviz._summary_merge(s anyelement, x anyelement)
RETURNS cdviz._summary_columns
LANGUAGE sql IMMUTABLE
AS $$
SELECT ROW(GREATEST(s.chain_id, x.chain_id),
		   LEAST(s.first_event_at, x.first_event_at),
		   GREATEST(s.last_event_at, x.last_event_at),
		   CASE WHEN (x.last_event_at, x.last_event_id) > (s.last_event_at, s.last_event_id)
				THEN x.last_event_id ELSE s.last_event_id END,
		   CASE WHEN (x.last_event_at, x.last_event_id) > (s.last_event_at, s.last_event_id)
				THEN x.last_predicate ELSE s.last_predicate END,
		   s.event_count + x.event_count)::cdviz._summary_columns
$$;

COMMENT ON FUNCTION cdviz._summary_merge(anyelement, anyelement) IS
'cdviz: internal, for cdviz._fold_events(): the columns every summary table ends with, folded from a stored row and a proposed one; inlined into the statement';
REVOKE EXECUTE ON FUNCTION cdviz._summary_merge(anyelement, anyelement) FROM PUBLIC;

-- Dead letters of the Kafka source name their topic, partition and offset.
COMMENT ON COLUMN cdviz.rejected_events.origin IS 'sql, http, fs, s3, nats, kafka or webhook';
COMMENT ON COLUMN cdviz.rejected_events.origin_ref IS 'where exactly: HTTP peer and path, file:line, s3://bucket/key#n, NATS subject#stream sequence, Kafka topic/partition@offset, batch element index';

ALTER EXTENSION cdviz DROP TABLE cdviz.source_polls;
DROP TABLE cdviz.source_polls;

-- Transformers of sources, with the webhooks' contract (70_webhooks.sql):
-- a folder or s3 source of format junit, tap or metadata may name a
-- function (meta jsonb, body jsonb) RETURNS SETOF jsonb, which its worker
-- calls for each file or object in the transaction that stores the
-- events (src/webhook/source_item.c).  Its output replaces the built-in
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
	FOR d IN
		SELECT e.id, e.origin_ref FROM cdviz.rejected_events e
		WHERE e.envelope->>'mode' = 'transformer' AND e.envelope->>'source' = retransform_source.name
		  AND e.received_at >= since AND e.replayed_at IS NULL
		ORDER BY e.id
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
		-- the file's or object's counters: the item is no longer rejected
		UPDATE cdviz.fs_files f
		SET events = f.events + r.stored, duplicates = f.duplicates + r.duplicates,
			rejected = greatest(f.rejected - 1 + r.rejected, 0)
		WHERE s.kind = 'folder' AND f.path = d.origin_ref;
		UPDATE cdviz.s3_objects o
		SET events = o.events + r.stored, duplicates = o.duplicates + r.duplicates,
			rejected = greatest(o.rejected - 1 + r.rejected, 0)
		WHERE s.kind = 's3' AND 's3://' || o.bucket || '/' || o.key = d.origin_ref;
	END LOOP;
END
$$;
COMMENT ON FUNCTION cdviz.retransform_source(text, timestamptz) IS
'cdviz: runs the source''s current transformer again over the items it raised on (kept in cdviz.rejected_events) since a time, in the order they were kept; stores their events and removes each dead letter it recovers (one it raises on again keeps the new error). Safe to repeat: the events get the ids and times they would have had, which the lake stores once. Returns the items processed, events stored and duplicated, invalid events (dead letters of their own) and items still failing. Example: SELECT * FROM cdviz.retransform_source(''drops'', now() - interval ''1 day'');';

-- The built-in mapping of test reports, for transformers that start from
-- it (attach an environment, a pipeline run...).
CREATE FUNCTION cdviz.report_cdevents(meta jsonb, body jsonb, environment text DEFAULT NULL)
RETURNS SETOF jsonb
LANGUAGE c STABLE
AS 'MODULE_PATHNAME', 'cdviz_report_cdevents';
COMMENT ON FUNCTION cdviz.report_cdevents(jsonb, jsonb, text) IS
'cdviz: the events a source of format junit or tap stores without a transformer, made of the meta and body it hands a transformer (environment: the test runs'' environment.id; NULL: the suite''s hostname, else unknown). Example, in a transformer: RETURN QUERY SELECT e FROM cdviz.report_cdevents(meta, body, ''staging'') e;';

REVOKE EXECUTE ON FUNCTION cdviz._source_retransform(bigint),
	cdviz.retransform_source(text, timestamptz) FROM PUBLIC;

-- Sources of kind oci: a container registry's tags read through the OCI
-- Distribution API into artifact.published events; their progress in
-- cdviz.oci_registries and cdviz.oci_tags.
ALTER TABLE cdviz.sources DROP CONSTRAINT sources_kind_check,
	ADD CONSTRAINT sources_kind_check CHECK (kind IN ('folder', 's3', 'nats', 'kafka', 'oci'));
COMMENT ON TABLE cdviz.sources IS
'cdviz: where events are read from (folders, S3 prefixes, NATS subjects, Kafka topics, OCI registries), one worker per active source; managed with cdviz.create_source(), alter_source(), drop_source(), pause_source(), resume_source(). Secrets (S3 keys, credentials in the NATS URL, secret Kafka settings, registry passwords) are kept apart in cdviz.source_secrets and shown here as ***.';
COMMENT ON COLUMN cdviz.sources.kind IS 'folder, s3, nats, kafka or oci';
COMMENT ON COLUMN cdviz.sources.location IS 'folder: an absolute path; s3: s3://bucket/prefix; nats: comma-separated subjects; kafka: comma-separated topics; oci: the registry''s https:// or http:// URL. One source per location and kind';
COMMENT ON COLUMN cdviz.rejected_events.origin IS 'sql, http, fs, s3, nats, kafka, oci or webhook';
COMMENT ON COLUMN cdviz.rejected_events.origin_ref IS 'where exactly: HTTP peer and path, file:line, s3://bucket/key#n, NATS subject#stream sequence, Kafka topic/partition@offset, registry/repository:tag@digest, batch element index';

-- OCI registry sources (kind oci, 51_source_catalog.sql): what each
-- registry's tags pointed to when its source last looked, and the mapping
-- of a new or moved tag to its events.
--
-- A registry's rows are written in the transaction that stores the events
-- of the tags they record, so a scan interrupted at any moment resumes
-- without emitting an event twice or missing one.  The rows of tags and
-- repositories the registry no longer lists are deleted: a scan costs what
-- the registry holds, not what it has held.  Rows are kept by registry URL
-- (the source's location), so a source dropped and created again for the
-- same registry emits nothing twice.

CREATE TABLE cdviz.oci_registries (
	registry		text PRIMARY KEY,
	first_scan_at	timestamptz,
	last_scan_at	timestamptz
);

COMMENT ON TABLE cdviz.oci_registries IS
'cdviz: per OCI registry read by a source of kind oci, when its scans ended';
COMMENT ON COLUMN cdviz.oci_registries.registry IS 'the registry URL, as the source''s location';
COMMENT ON COLUMN cdviz.oci_registries.first_scan_at IS 'when its first complete scan ended (NULL: not yet; with "initial": "baseline", tags found until then are recorded without events)';
COMMENT ON COLUMN cdviz.oci_registries.last_scan_at IS 'when its last complete scan ended';

CREATE TABLE cdviz.oci_tags (
	registry		text NOT NULL,
	repository		text NOT NULL,
	tag				text NOT NULL,
	digest			text NOT NULL,
	media_type		text,
	seen_at			timestamptz NOT NULL DEFAULT now(),
	emitted			boolean NOT NULL,
	PRIMARY KEY (registry, repository, tag)
);

COMMENT ON TABLE cdviz.oci_tags IS
'cdviz: the tags of the OCI registries read by sources of kind oci and the manifest digest each pointed to when last seen; written with the events of a new or moved tag, in the same transaction';
COMMENT ON COLUMN cdviz.oci_tags.registry IS 'the registry URL, as the source''s location';
COMMENT ON COLUMN cdviz.oci_tags.repository IS 'repository name, e.g. team/app';
COMMENT ON COLUMN cdviz.oci_tags.tag IS 'tag';
COMMENT ON COLUMN cdviz.oci_tags.digest IS 'manifest digest (sha256:...) the tag pointed to';
COMMENT ON COLUMN cdviz.oci_tags.media_type IS 'media type of that manifest or index';
COMMENT ON COLUMN cdviz.oci_tags.seen_at IS 'when the source first saw the tag point to that digest';
COMMENT ON COLUMN cdviz.oci_tags.emitted IS 'whether events were made of it (false: recorded by a baseline scan)';

-- Restored with the events, a registry is not scanned as new again.
SELECT pg_catalog.pg_extension_config_dump('cdviz.oci_registries', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.oci_tags', '');

-- The location and options of a source of kind oci, checked beyond their
-- JSON types (cdviz._source_check() calls it); returns the location as
-- stored: scheme and host in lower case, no final slash.
CREATE FUNCTION cdviz._source_check_oci(location text, options jsonb)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	loc text := lower(regexp_replace(trim(location), '/+$', ''));
	pat text;
	iv interval;
	k text;
BEGIN
	IF loc !~ '^https?://[a-z0-9.-]+(:[0-9]{1,5})?$' THEN
		RAISE EXCEPTION 'the location of an oci source must be a registry URL, not "%"', location
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Give its scheme and host (and port), without a path: https://ghcr.io, http://127.0.0.1:5000.';
	END IF;
	IF options ? 'repositories' THEN
		IF jsonb_typeof(options->'repositories') <> 'array' THEN
			RAISE EXCEPTION 'option "repositories" must be an array of repository names or patterns, not %', options->'repositories'
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Example: {"repositories": ["team/app", "team/*"]}.';
		END IF;
		FOR pat IN SELECT e FROM jsonb_array_elements(options->'repositories') e LOOP
			IF pat !~ '^"[a-z0-9._/*?-]{1,255}"$' THEN
				RAISE EXCEPTION 'repository % of an oci source is not a repository name or pattern', pat
					USING ERRCODE = 'invalid_parameter_value',
						  HINT = 'Repository names are lower case letters, digits and . _ - /; * and ? match any characters.';
			END IF;
		END LOOP;
	END IF;
	IF options ? 'poll_interval' THEN
		IF jsonb_typeof(options->'poll_interval') = 'number' AND options->>'poll_interval' ~ '^[0-9]{1,5}$' THEN
			iv := make_interval(secs => (options->>'poll_interval')::integer);
		ELSIF jsonb_typeof(options->'poll_interval') = 'string' THEN
			BEGIN
				iv := (options->>'poll_interval')::interval;
			EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR interval_field_overflow THEN
				iv := NULL;
			END;
		END IF;
		IF iv IS NULL OR NOT iv BETWEEN interval '1 second' AND interval '1 day' THEN
			RAISE EXCEPTION 'option "poll_interval" of an oci source must be whole seconds or a duration from 1 s to 1 day, not %', options->'poll_interval'
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Examples: 60, "30s", "5m", "1h".';
		END IF;
	END IF;
	IF options ? 'initial' AND NOT options->>'initial' IN ('baseline', 'backfill') THEN
		RAISE EXCEPTION 'option "initial" must be baseline or backfill, not "%"', options->>'initial'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF (options ? 'username') <> (options ? 'password') THEN
		RAISE EXCEPTION 'options "username" and "password" of an oci source go together'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF options ? 'ecr' THEN
		FOR k IN SELECT e FROM jsonb_object_keys(options->'ecr') e WHERE NOT e IN ('region', 'endpoint') ORDER BY 1 LOOP
			RAISE EXCEPTION 'unknown key "%" in option "ecr"', k
				USING ERRCODE = 'invalid_parameter_value', HINT = 'It takes region and endpoint.';
		END LOOP;
		IF coalesce(options->'ecr'->>'region', '') !~ '^[a-z0-9-]{1,32}$' THEN
			RAISE EXCEPTION 'option "ecr" needs the registry''s AWS region'
				USING ERRCODE = 'invalid_parameter_value', HINT = 'Example: {"ecr": {"region": "eu-west-1"}}.';
		END IF;
		IF options->'ecr' ? 'endpoint' AND options->'ecr'->>'endpoint' !~ '^https?://[^\s/]+(/\S*)?$' THEN
			RAISE EXCEPTION 'the ECR endpoint must be an http:// or https:// URL, not "%"', options->'ecr'->>'endpoint'
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		IF coalesce(options->>'access_key_id', '') = '' OR coalesce(options->>'secret_access_key', '') = '' THEN
			RAISE EXCEPTION 'an ECR registry needs options "access_key_id" and "secret_access_key"'
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		IF options ? 'username' THEN
			RAISE EXCEPTION 'an ECR registry takes its credentials from AWS, not from "username" and "password"'
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
	ELSIF options ?| ARRAY['access_key_id', 'secret_access_key', 'session_token'] THEN
		RAISE EXCEPTION 'options "access_key_id", "secret_access_key" and "session_token" are for an ECR registry'
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Add {"ecr": {"region": "..."}}.';
	END IF;
	RETURN loc;
END
$$;
COMMENT ON FUNCTION cdviz._source_check_oci(text, jsonb) IS
'cdviz internal: checks the location and options of a source of kind oci (called by cdviz._source_check()) and returns the location as stored; raises SQLSTATE 22023 naming what is wrong';

-- The events of one registry item (a tag seen pointing to a new digest),
-- by the contract of transformers: meta describes the item (see
-- docs/sources.md), body is NULL.  One artifact.published whose subject is
-- the image's package URL, made by cdviz.webhook_oci_purl() as webhooks
-- make it, and whose context.id follows from meta (the same item makes the
-- same event).
CREATE FUNCTION cdviz.oci_source_events(meta jsonb, body jsonb)
RETURNS SETOF jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN NEXT cdviz.webhook_cdevent('artifact.published', meta->>'registry', meta->>'seen_at',
			cdviz.webhook_oci_purl(format('%s/%s:%s', meta->>'host', meta->>'repository', meta->>'tag'),
								   meta->>'digest'),
			NULL)
		|| jsonb_build_object('customData', jsonb_strip_nulls(jsonb_build_object(
			'registry', meta->>'registry', 'repository', meta->>'repository', 'tag', meta->>'tag',
			'digest', meta->>'digest', 'mediaType', meta->>'media_type',
			'previousDigest', meta->>'previous_digest')));
END
$$;
COMMENT ON FUNCTION cdviz.oci_source_events(jsonb, jsonb) IS
'cdviz: the events a source of kind oci makes of a tag seen pointing to a new digest (meta: source, kind, registry, host, repository, tag, digest, media_type, previous_digest, seen_at; body NULL): one artifact.published with subject id pkg:oci/<name>@sha256%3A<hex>?repository_url=<host>/<repository>&tag=<tag>. Example: SELECT cdviz.oci_source_events(''{"registry": "https://ghcr.io", "host": "ghcr.io", "repository": "acme/api", "tag": "1.2", "digest": "sha256:ab12", "seen_at": "2024-05-01T10:00:00Z"}'', NULL);';

CREATE OR REPLACE FUNCTION cdviz.source_options(kind text DEFAULT NULL)
RETURNS TABLE (kind text, option text, type text, default_value text, secret boolean,
			   description text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT o.kind, o.option, o.type, o.default_value, o.secret, o.description
	FROM (VALUES
		('folder', 'poll_interval', 'integer', '5', false, 'seconds between two looks at the folder (1 to 86400)'),
		('folder', 'pattern', 'string', '*.json,*.jsonl,*.ndjson', false, 'comma-separated file name patterns; *.json files hold one event or an array, others one event per line'),
		('folder', 'after', 'string', 'keep', false, 'what to do with a file read to its end: keep, delete or move'),
		('folder', 'done_path', 'string', NULL, false, 'absolute path of the folder files are moved into (required when after is move)'),
		('folder', 'reader', NULL, NULL, NULL, 'file'),
		('s3', 'endpoint', 'string', '', false, 'endpoint URL; empty: AWS in the region'),
		('s3', 'region', 'string', 'us-east-1', false, 'region of the AWS Signature V4'),
		('s3', 'path_style', 'boolean', 'false', false, 'address the bucket in the URL path (MinIO, Ceph...)'),
		('s3', 'access_key_id', 'string', '', true, 'access key id'),
		('s3', 'secret_access_key', 'string', '', true, 'secret access key'),
		('s3', 'poll_interval', 'integer', '30', false, 'seconds between two listings (1 to 86400); doubled after each failure, up to 10 minutes'),
		('s3', 'pattern', 'string', '*.json,*.jsonl,*.ndjson', false, 'comma-separated patterns for the last segment of the keys'),
		('s3', 'reader', NULL, NULL, NULL, 'object'),
		('nats', 'url', 'string', NULL, false, 'server URL (required); a secret when it carries a user, password or token'),
		('nats', 'stream', 'string', '', false, 'JetStream stream: read through durable consumers, acknowledged after the commit; empty: plain subscriptions'),
		('nats', 'consumer', 'string', 'cdviz-<name>', false, 'durable consumer name (suffixed with the subject''s place when there are several subjects)'),
		('kafka', 'brokers', 'string', NULL, false, 'bootstrap servers host:port,... (required)'),
		('kafka', 'group', 'string', 'cdviz-<name>', false, 'consumer group'),
		('kafka', 'batch_size', 'integer', '500', false, 'messages stored per transaction (1 to 100000)'),
		('kafka', 'batch_timeout_ms', 'integer', '100', false, 'longest wait for a batch to fill, in ms (0 to 60000)'),
		('kafka', 'start', 'string', 'earliest', false, 'where a new group starts: earliest or latest'),
		('kafka', 'config', 'object', '{}', false, 'librdkafka settings; those a kafka sink keeps secret (named like *password*, *secret*, *.pem, ssl_key*, sasl.oauthbearer.config) are secrets'),
		('oci', 'repositories', 'array', '[]', false, 'repository names, or patterns where * and ? match any characters (/ included); empty: every repository of the registry''s catalog'),
		('oci', 'poll_interval', 'duration', '60', false, 'time between two scans: seconds, or a duration such as "30s", "5m", "1h" (1 s to 1 day); doubled after each failure, up to 10 minutes'),
		('oci', 'initial', 'string', 'baseline', false, 'the first scan of a registry: baseline (records its tags, emits nothing) or backfill (an event for every tag found)'),
		('oci', 'page_size', 'integer', '1000', false, 'entries asked for per page of the catalog and of tag lists (1 to 10000)'),
		('oci', 'batch_size', 'integer', '500', false, 'new or moved tags whose events and progress are stored per transaction (1 to 100000)'),
		('oci', 'username', 'string', '', true, 'user name for the registry (basic authentication, and for the token endpoint when the registry asks for a bearer token)'),
		('oci', 'password', 'string', '', true, 'password or access token of that user'),
		('oci', 'ecr', 'object', NULL, false, 'AWS ECR: {"region": "eu-west-1"}, and "endpoint" for another ECR API URL; the registry''s credentials come from GetAuthorizationToken, signed with the access keys'),
		('oci', 'access_key_id', 'string', '', true, 'ecr: AWS access key id'),
		('oci', 'secret_access_key', 'string', '', true, 'ecr: AWS secret access key'),
		('oci', 'session_token', 'string', '', true, 'ecr: AWS session token of temporary credentials')
	) AS v (kind, option, type, default_value, secret, description)
	CROSS JOIN LATERAL (
		SELECT v.kind, v.option, v.type, v.default_value, v.secret, v.description
		WHERE v.option <> 'reader'
		UNION ALL
		SELECT v.kind, r.option, r.type, r.default_value, false, format(r.description, v.description)
		FROM (VALUES
			('format', 'string', 'cdevents', 'how each %s is read: cdevents (a .json event or array, else JSON Lines), junit (a JUnit XML report), tap (a TAP 13/14 report) or metadata (not read: its name, size, time and SHA-256 handed to the source''s transformer, which it requires); the pattern defaults to *.xml for junit, *.tap for tap, * for metadata'),
			('batch_lines', 'integer', '5000', 'lines or array elements stored per transaction (1 to 1000000)'),
			('max_line_size', 'integer', '1024', 'longest line read, in kB (1 to 1048576)'),
			('max_json_size', 'integer', '65536', 'largest .json %s read, in kB (1 to 1048576)'),
			('max_report_size', 'integer', '65536', 'largest report (format junit or tap) read, in kB (1 to 1048576); larger ones are dead letters'),
			('environment', 'string', '', 'reports: the test runs'' environment.id; empty: the suite''s hostname, else unknown')
		) AS r (option, type, default_value, description)
		WHERE v.option = 'reader'
	) AS o (kind, option, type, default_value, secret, description)
	WHERE source_options.kind IS NULL OR v.kind = source_options.kind
$$;
CREATE OR REPLACE FUNCTION cdviz._source_check(kind text, location text, options jsonb)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	known text[] := ARRAY(SELECT o.option FROM cdviz.source_options(kind) o ORDER BY o.option);
	o record;
	v jsonb;
	loc text := location;
	-- at most 16 NATS subjects (one subscription each); Kafka topic names
	list_re CONSTANT text := CASE kind WHEN 'nats' THEN '^[^\s,]+(,[^\s,]+){0,15}$'
									   ELSE '^[A-Za-z0-9._-]{1,249}(,[A-Za-z0-9._-]{1,249})*$' END;
BEGIN
	IF kind IS NULL OR NOT kind IN ('folder', 's3', 'nats', 'kafka', 'oci') THEN
		RAISE EXCEPTION 'unknown source kind "%"', kind
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Use folder, s3, nats, kafka or oci.';
	END IF;
	IF jsonb_typeof(options) IS DISTINCT FROM 'object' THEN
		RAISE EXCEPTION 'source options must be a JSON object'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	FOR o IN SELECT k FROM jsonb_object_keys(options) k WHERE NOT k = ANY (known) ORDER BY k LOOP
		RAISE EXCEPTION 'unknown option "%" for a source of kind %', o.k, kind
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = format('known options: %s.', array_to_string(known, ', '));
	END LOOP;
	FOR o IN SELECT s.option, s.type FROM cdviz.source_options(kind) s LOOP
		v := options->o.option;
		CONTINUE WHEN v IS NULL;
		IF o.type = 'integer' AND NOT (jsonb_typeof(v) = 'number' AND v::text ~ '^-?[0-9]+$') THEN
			RAISE EXCEPTION 'option "%" of a source of kind % must be an integer, not %', o.option, kind, v
				USING ERRCODE = 'invalid_parameter_value';
		ELSIF o.type = 'string' AND jsonb_typeof(v) <> 'string' THEN
			RAISE EXCEPTION 'option "%" of a source of kind % must be a string, not %', o.option, kind, v
				USING ERRCODE = 'invalid_parameter_value';
		ELSIF o.type = 'boolean' AND jsonb_typeof(v) <> 'boolean' THEN
			RAISE EXCEPTION 'option "%" of a source of kind % must be true or false, not %', o.option, kind, v
				USING ERRCODE = 'invalid_parameter_value';
		ELSIF o.type = 'object' AND (jsonb_typeof(v) <> 'object' OR EXISTS (
				SELECT FROM jsonb_each(v) e WHERE jsonb_typeof(e.value) NOT IN ('string', 'number', 'boolean'))) THEN
			RAISE EXCEPTION 'option "%" of a source of kind % must be an object of settings and their values', o.option, kind
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
	END LOOP;
	-- ranges, as the settings of the same name have
	FOR o IN SELECT * FROM (VALUES ('poll_interval', 1, 86400), ('batch_lines', 1, 1000000),
							  ('max_line_size', 1, 1048576), ('max_json_size', 1, 1048576),
							  ('max_report_size', 1, 1048576), ('page_size', 1, 10000),
							  ('batch_size', 1, 100000), ('batch_timeout_ms', 0, 60000)) r (k, lo, hi)
	LOOP
		-- an oci source's poll_interval may be a duration (checked below)
		IF jsonb_typeof(options->o.k) = 'number' AND NOT (options->>o.k)::numeric BETWEEN o.lo AND o.hi THEN
			RAISE EXCEPTION 'option "%" must be from % to %, not %', o.k, o.lo, o.hi, options->>o.k
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
	END LOOP;
	IF options ? 'after' AND NOT options->>'after' IN ('keep', 'delete', 'move') THEN
		RAISE EXCEPTION 'option "after" must be keep, delete or move, not "%"', options->>'after'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF options->>'after' = 'move' AND coalesce(options->>'done_path', '') !~ '^/' THEN
		RAISE EXCEPTION 'option "done_path" (an absolute path) is required when "after" is move'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF options ? 'format' AND NOT options->>'format' IN ('cdevents', 'junit', 'tap', 'metadata') THEN
		RAISE EXCEPTION 'option "format" must be cdevents, junit, tap or metadata, not "%"', options->>'format'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF options ? 'start' AND NOT options->>'start' IN ('earliest', 'latest') THEN
		RAISE EXCEPTION 'option "start" must be earliest or latest, not "%"', options->>'start'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	FOR o IN SELECT x.option FROM (VALUES ('nats', 'url'), ('kafka', 'brokers')) x (kind, option)
			 WHERE x.kind = _source_check.kind LOOP
		IF coalesce(options->>o.option, '') = '' THEN
			RAISE EXCEPTION 'option "%" is required for a source of kind %', o.option, kind
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
	END LOOP;

	IF loc IS NULL THEN
		RAISE EXCEPTION 'a source needs a location' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	CASE kind
		WHEN 'folder' THEN
			IF loc !~ '^/' THEN
				RAISE EXCEPTION 'the location of a folder source must be an absolute path, not "%"', loc
					USING ERRCODE = 'invalid_parameter_value';
			END IF;
			loc := coalesce(nullif(regexp_replace(loc, '/+$', ''), ''), '/');
		WHEN 'oci' THEN
			loc := cdviz._source_check_oci(loc, options);
		WHEN 's3' THEN
			-- bucket names as S3 has known them (older ones have capitals, _)
			IF loc !~ '^s3://[A-Za-z0-9._-]{3,255}(/.*)?$' THEN
				RAISE EXCEPTION 'the location of an s3 source must be s3://bucket/prefix, not "%"', loc
					USING ERRCODE = 'invalid_parameter_value';
			END IF;
			IF loc !~ '^s3://[^/]*/' THEN
				loc := loc || '/';
			END IF;
		ELSE
			loc := regexp_replace(trim(loc), '\s*,\s*', ',', 'g');
			IF loc !~ list_re THEN
				RAISE EXCEPTION 'the location of a % source must be a comma-separated list of %, not "%"', kind,
					CASE kind WHEN 'nats' THEN 'at most 16 subjects' ELSE 'topics' END, location
					USING ERRCODE = 'invalid_parameter_value';
			END IF;
	END CASE;
	RETURN loc;
END
$$;

CREATE OR REPLACE VIEW cdviz.source_status AS
SELECT s.id, s.name, s.kind, s.location, s.paused, s.defined_by,
	   CASE WHEN s.paused THEN 'paused' ELSE coalesce(p.state, 'starting') END AS state,
	   i.items,
	   coalesce(i.events, 0) + coalesce(p.events, 0) AS events,
	   coalesce(i.duplicates, 0) + coalesce(p.duplicates, 0) AS duplicates,
	   coalesce(i.rejected, 0) + coalesce(p.rejected, 0) AS rejected,
	   CASE WHEN s.kind IN ('folder', 's3') THEN coalesce(i.unread, 0) ELSE p.lag END AS lag,
	   greatest(i.last_read_at, p.last_read_at) AS last_read_at,
	   p.last_poll_at,
	   p.last_success_at,
	   cdviz._source_redact(e.error, x.secrets) AS last_error,
	   e.error_at AS last_error_at
FROM cdviz.sources s
LEFT JOIN cdviz.source_progress p ON p.source_id = s.id
LEFT JOIN cdviz.source_secrets x ON x.source_id = s.id
LEFT JOIN LATERAL (
	SELECT count(*) AS items,
		   count(*) FILTER (WHERE f.status = 'reading') AS unread,
		   sum(f.events) AS events, sum(f.duplicates) AS duplicates, sum(f.rejected) AS rejected,
		   max(f.last_read_at) AS last_read_at,
		   (array_agg(f.path || ': ' || f.last_error ORDER BY f.last_error_at DESC)
				FILTER (WHERE f.last_error IS NOT NULL))[1] AS last_item_error,
		   max(f.last_error_at) AS last_item_error_at
	FROM cdviz.fs_files f
	WHERE f.source = s.location
	HAVING s.kind = 'folder'
	UNION ALL
	SELECT count(*),
		   count(*) FILTER (WHERE o.status = 'reading'),
		   sum(o.events), sum(o.duplicates), sum(o.rejected),
		   max(o.last_read_at),
		   (array_agg('s3://' || o.bucket || '/' || o.key || ': ' || o.last_error ORDER BY o.last_error_at DESC)
				FILTER (WHERE o.last_error IS NOT NULL))[1],
		   max(o.last_error_at)
	FROM cdviz.s3_objects o
	WHERE o.source = s.location
	HAVING s.kind = 's3'
	UNION ALL
	SELECT count(*), 0::bigint, NULL, NULL, NULL, max(t.seen_at), NULL, NULL
	FROM cdviz.oci_tags t
	WHERE t.registry = s.location
	HAVING s.kind = 'oci'
) i ON true
-- the first error there is: of the worker (failed) or of its last poll,
-- else of one of the files or objects
LEFT JOIN LATERAL (
	SELECT v.error, v.error_at
	FROM (VALUES (1, p.last_error, p.last_error_at),
				 (2, i.last_item_error, i.last_item_error_at)) v (n, error, error_at)
	WHERE v.error IS NOT NULL
	ORDER BY v.n
	LIMIT 1
) e ON true;
COMMENT ON COLUMN cdviz.source_status.kind IS 'folder, s3, nats, kafka or oci';
COMMENT ON COLUMN cdviz.source_status.location IS 'folder path, s3://bucket/prefix, NATS subjects, Kafka topics or registry URL';
COMMENT ON COLUMN cdviz.source_status.items IS 'folder and s3: files or objects seen; oci: tags of the registry seen; NULL for message sources';

-- Package URLs of images keep the tag's case (tags are case-sensitive).
CREATE OR REPLACE FUNCTION cdviz.webhook_oci_purl(image text, digest text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	ref text := image;
	tag text;
	dig text := digest;
	repo text;
	name text;
BEGIN
	IF image IS NULL OR image = '' THEN
		RETURN NULL;
	END IF;
	IF position('@' IN ref) > 0 THEN
		dig := coalesce(dig, lower(split_part(ref, '@', 2)));
		ref := split_part(ref, '@', 1);
	END IF;
	-- a tag is after the last ':' of the last path segment (not a port);
	-- tags are case-sensitive, registry and repository names are not
	IF ref ~ ':[^/:]*$' THEN
		tag := substring(ref FROM ':([^/:]*)$');
		ref := regexp_replace(ref, ':[^/:]*$', '');
	END IF;
	repo := lower(ref);
	name := regexp_replace(ref, '^.*/', '');
	RETURN 'pkg:oci/' || name
		|| CASE WHEN dig IS NOT NULL AND dig <> '' THEN '@' || replace(dig, ':', '%3A') ELSE '' END
		|| '?repository_url=' || repo
		|| CASE WHEN tag IS NOT NULL AND tag <> '' THEN '&tag=' || tag ELSE '' END;
END
$$;
COMMENT ON FUNCTION cdviz.webhook_oci_purl(text, text) IS
'cdviz: package URL of a container image reference (registry/path/name[:tag][@sha256:...]): pkg:oci/<name>@<digest>?repository_url=<registry/path/name>&tag=<tag>, registry and name in lower case, the tag as given. Example: SELECT cdviz.webhook_oci_purl(''ghcr.io/acme/api:1.2@sha256:ab12'');';
-- As cdviz._source_check(): superusers manage sources.
REVOKE EXECUTE ON FUNCTION cdviz._source_check_oci(text, jsonb) FROM PUBLIC;
-- retransform_source() locks the dead letters it runs over: a run in
-- another session waits for it, then skips those it removed.
CREATE OR REPLACE FUNCTION cdviz.retransform_source(name text, since timestamptz DEFAULT '-infinity',
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
		-- the file's or object's counters: the item is no longer rejected
		UPDATE cdviz.fs_files f
		SET events = f.events + r.stored, duplicates = f.duplicates + r.duplicates,
			rejected = greatest(f.rejected - 1 + r.rejected, 0)
		WHERE s.kind = 'folder' AND f.path = d.origin_ref;
		UPDATE cdviz.s3_objects o
		SET events = o.events + r.stored, duplicates = o.duplicates + r.duplicates,
			rejected = greatest(o.rejected - 1 + r.rejected, 0)
		WHERE s.kind = 's3' AND 's3://' || o.bucket || '/' || o.key = d.origin_ref;
	END LOOP;
END
$$;
COMMENT ON FUNCTION cdviz.retransform_source(text, timestamptz) IS
'cdviz: runs the source''s current transformer again over the items it raised on (kept in cdviz.rejected_events) since a time, in the order they were kept; stores their events and removes each dead letter it recovers (one it raises on again keeps the new error). Safe to repeat, and to run from two sessions at once (the second waits for the first): the events get the ids and times they would have had, which the lake stores once. Returns the items processed, events stored and duplicated, invalid events (dead letters of their own) and items still failing. Example: SELECT * FROM cdviz.retransform_source(''drops'', now() - interval ''1 day'');';

-- DORA's fifth metric and failed deployment recovery time: the failure
-- signals behind the change failure rate as a function of their own,
-- recovery per failed deployment, the rework rate with its rules, and
-- the indexes the rework rate reads.

-- The events that can make a deployment rework (cdviz.dora_rework): every
-- incident detected/reported/resolved event, and every ticket event whose
-- ticketType names a bug.  A few rows a day, insert-only; found by the
-- context id a link names and by chain.
CREATE TABLE cdviz.rework_causes (
	event_id		bigint PRIMARY KEY,
	"timestamp"		timestamptz NOT NULL,
	context_id		text NOT NULL,
	chain_id		text,
	subject			text NOT NULL,
	subject_id		text
);
CREATE INDEX rework_causes_context_id ON cdviz.rework_causes (context_id);
CREATE INDEX rework_causes_chain_id ON cdviz.rework_causes (chain_id) WHERE chain_id IS NOT NULL;

COMMENT ON TABLE cdviz.rework_causes IS
'cdviz: one row per incident detected/reported/resolved event and per ticket created/updated/closed event whose subject.content.ticketType contains "bug" (case-insensitive), kept by the lake trigger: what a deployment, artifact or change linked to it (context.links) or made in its chain (chainId) is rework for (cdviz.rework_links)';
GRANT SELECT ON cdviz.rework_causes TO cdviz_reader;
COMMENT ON COLUMN cdviz.rework_causes.event_id IS 'cdviz.cdevents_lake.id of the event';
COMMENT ON COLUMN cdviz.rework_causes."timestamp" IS 'event timestamp';
COMMENT ON COLUMN cdviz.rework_causes.context_id IS 'context.id of the event: what a link names';
COMMENT ON COLUMN cdviz.rework_causes.chain_id IS 'context.chainId of the event';
COMMENT ON COLUMN cdviz.rework_causes.subject IS 'incident or ticket';
COMMENT ON COLUMN cdviz.rework_causes.subject_id IS 'subject.id: the incident or ticket';

-- What is linked to a rework cause: the join of the causes with the links,
-- artifacts and changes, kept at ingest from whichever side arrives last,
-- so that the rework rate reads the few rows of its range and look-back
-- instead of probing links and chains for every cause.  Insert-only; a
-- pair found from both sides is one row.
CREATE TABLE cdviz.rework_links (
	cause_event_id	bigint NOT NULL,
	since			timestamptz NOT NULL,
	reason			text NOT NULL,
	subject			text NOT NULL,
	subject_id		text,
	event_id		bigint,
	CONSTRAINT rework_links_key UNIQUE NULLS NOT DISTINCT (cause_event_id, reason, subject, subject_id, event_id)
);
CREATE INDEX rework_links_since ON cdviz.rework_links (since);

COMMENT ON TABLE cdviz.rework_links IS
'cdviz: what is linked to a rework cause (cdviz.rework_causes), kept by the lake trigger whatever the arrival order: a service event (a deployment) or an event of an artifact or change that names the cause''s event in its context.links (reason "link to incident" or "link to ticket"), and an artifact packaged or a change created in the cause''s chain at or after it ("chain of incident", "chain of ticket"); read by cdviz.dora_rework';
GRANT SELECT ON cdviz.rework_links TO cdviz_reader;
COMMENT ON COLUMN cdviz.rework_links.cause_event_id IS 'cdviz.rework_causes.event_id';
COMMENT ON COLUMN cdviz.rework_links.since IS 'timestamp of the cause''s event';
COMMENT ON COLUMN cdviz.rework_links.reason IS 'link to incident, link to ticket, chain of incident or chain of ticket';
COMMENT ON COLUMN cdviz.rework_links.subject IS 'what is linked: service (the event itself), artifact or change';
COMMENT ON COLUMN cdviz.rework_links.subject_id IS 'the artifact or change id; NULL for a service event';
COMMENT ON COLUMN cdviz.rework_links.event_id IS 'cdviz.cdevents_lake.id of the service event; NULL for an artifact or change';

-- The cause side of cdviz.rework_links, for causes just stored (the lake
-- trigger) or all of them (the update that made the table): the links
-- that name them, found by the far end, and the artifacts and changes of
-- their chains, from the summaries.
CREATE FUNCTION cdviz._link_rework_causes(causes bigint[])
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
INSERT INTO cdviz.rework_links (cause_event_id, since, reason, subject, subject_id, event_id)
SELECT c.event_id, c."timestamp", 'link to ' || c.subject, l.subject,
	   CASE WHEN l.subject <> 'service' THEN l.subject_id END,
	   CASE WHEN l.subject = 'service' THEN l.id END
FROM cdviz.rework_causes AS c
JOIN cdviz.event_links AS k ON k.linked_context_id = c.context_id
CROSS JOIN LATERAL (
	SELECT l.subject, l.subject_id, l.id FROM cdviz.cdevents_lake AS l
	WHERE l.id = k.event_id AND l.subject IN ('service', 'artifact', 'change')
	LIMIT 1) AS l
WHERE c.event_id = ANY (causes)
UNION ALL
SELECT c.event_id, c."timestamp", 'chain of ' || c.subject, 'artifact', a.artifact_id, NULL
FROM cdviz.rework_causes AS c
JOIN cdviz.artifact_summaries AS a ON a.chain_id = c.chain_id AND a.packaged_at >= c."timestamp"
WHERE c.event_id = ANY (causes)
UNION ALL
SELECT c.event_id, c."timestamp", 'chain of ' || c.subject, 'change', s.change_id, NULL
FROM cdviz.rework_causes AS c
JOIN cdviz.change_summaries AS s ON s.chain_id = c.chain_id AND s.created_at >= c."timestamp"
WHERE c.event_id = ANY (causes)
ON CONFLICT DO NOTHING
$$;

COMMENT ON FUNCTION cdviz._link_rework_causes(bigint[]) IS
'cdviz: internal, for cdviz._fold_events(): adds to cdviz.rework_links what was stored before these rework causes (lake ids) and is linked to them: the service, artifact and change events whose context.links name them, and the artifacts packaged and changes created in their chains after them';
REVOKE EXECUTE ON FUNCTION cdviz._link_rework_causes(bigint[]) FROM PUBLIC;

-- filled from the events stored before the update (the lake's
-- (subject, predicate, timestamp) index finds them); later ones come
-- through cdviz._fold_events()
INSERT INTO cdviz.rework_causes (event_id, "timestamp", context_id, chain_id, subject, subject_id)
SELECT e.id, e."timestamp", e.context_id, e.chain_id, e.subject, e.subject_id
FROM cdviz.cdevents_lake AS e
WHERE (e.subject = 'incident' AND e.predicate IN ('detected', 'reported', 'resolved'))
   OR (e.subject = 'ticket' AND e.predicate IN ('created', 'updated', 'closed')
	   AND e.payload #>> '{subject,content,ticketType}' ~* 'bug')
ON CONFLICT (event_id) DO NOTHING;
SELECT cdviz._link_rework_causes(ARRAY(SELECT c.event_id FROM cdviz.rework_causes AS c));
SELECT pg_catalog.pg_extension_config_dump('cdviz.rework_causes', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.rework_links', '');

-- the deployments of one artifact: the rework rate finds the artifacts
-- linked to incidents and bug tickets, then their deployments in a range
CREATE INDEX environment_history_artifact_id
	ON cdviz.environment_history (artifact_id, valid_from) WHERE artifact_id IS NOT NULL;

-- the artifacts of a chain: the rework rate follows the chain of an
-- incident or bug ticket to what was built in it
CREATE INDEX artifact_summaries_chain_id ON cdviz.artifact_summaries (chain_id) WHERE chain_id IS NOT NULL;

-- the changes of a chain, likewise
CREATE INDEX change_summaries_chain_id ON cdviz.change_summaries (chain_id) WHERE chain_id IS NOT NULL;

CREATE OR REPLACE VIEW cdviz.dora_thresholds (metric, tier, rule) AS
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
	('time_to_restore', 'low', 'median of 1 week or more'),
	-- The 2023 report's clusters: elite less than one hour, high less than
	-- one day, medium between one day and one week, low slower still (a
	-- month or more); the gap between medium and low belongs to low here.
	('failed_deployment_recovery_time', 'elite', 'median under 1 hour'),
	('failed_deployment_recovery_time', 'high', 'median under 1 day'),
	('failed_deployment_recovery_time', 'medium', 'median under 1 week'),
	('failed_deployment_recovery_time', 'low', 'median of 1 week or more'),
	-- The 2024 report introduced rework rate without performance clusters.
	('rework_rate', NULL, 'no tiers: DORA published none for this metric (2024 report)');

COMMENT ON VIEW cdviz.dora_thresholds IS
'cdviz: the DORA tier thresholds the cdviz.dora_* functions apply (after the clusters of the 2023 Accelerate State of DevOps report, which also gives failed deployment recovery time''s); boundaries belong to the better tier. Rework rate, added by the 2024 report, has no tiers (one row, tier NULL).';
GRANT SELECT ON cdviz.dora_thresholds TO cdviz_reader;

-- Each deployment owns the events of its (environment, service) up to the
-- next deployment there.  Failure signals (rollbacks from the history,
-- incidents' first detected and reported times from cdviz.incident_summaries,
-- found through its last_event_at index) are few:
-- each is charged to the latest deployment at or before it, found by one
-- descent of the (environment_id, service_id, valid_from) index, so the
-- deployments themselves are only counted, never sorted.
CREATE FUNCTION cdviz.dora_failure_signals(from_ts timestamptz, to_ts timestamptz,
										   environment text DEFAULT NULL,
										   service text DEFAULT NULL)
RETURNS TABLE (event_id bigint, environment_id text, service_id text, deployed_at timestamptz,
			   signal text, signal_at timestamptz, incident_id text, resolved_at timestamptz)
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
	SELECT h.environment_id, h.service_id, h.valid_from AS ts, 'rolledback' AS signal,
		   NULL::text AS incident_id, NULL::timestamptz AS resolved_at
	FROM cdviz.environment_history AS h
	WHERE h.valid_from >= from_ts AND h.predicate = 'rolledback'
	  AND h.valid_from <= (SELECT ts FROM horizon)
	  AND (environment IS NULL OR h.environment_id = environment)
	  AND (service IS NULL OR h.service_id = service)
	UNION ALL
	SELECT i.environment_id, i.service_id, x.ts, x.signal, i.incident_id, i.resolved_at
	FROM cdviz.incident_summaries AS i
	CROSS JOIN LATERAL (VALUES (i.detected_at, 'detected'), (i.reported_at, 'reported')) AS x(ts, signal)
	WHERE i.last_event_at >= from_ts AND x.ts >= from_ts
	  AND x.ts <= (SELECT ts FROM horizon)
	  AND i.service_id IS NOT NULL AND i.environment_id IS NOT NULL
	  AND (environment IS NULL OR i.environment_id = environment)
	  AND (service IS NULL OR i.service_id = service)
)
SELECT d.event_id, s.environment_id, s.service_id, d.valid_from, s.signal, s.ts,
	   s.incident_id, s.resolved_at
FROM signals AS s
CROSS JOIN LATERAL (
	SELECT h.event_id, h.valid_from
	FROM cdviz.environment_history AS h
	WHERE h.environment_id = s.environment_id AND h.service_id = s.service_id
	  AND h.valid_from <= s.ts AND h.predicate IN ('deployed', 'upgraded')
	ORDER BY h.valid_from DESC, h.event_id DESC
	LIMIT 1) AS d
WHERE d.valid_from >= from_ts AND d.valid_from < to_ts
$$;

COMMENT ON FUNCTION cdviz.dora_failure_signals(timestamptz, timestamptz, text, text) IS
'cdviz DORA: the failure signals charged to the deployments (service deployed/upgraded events) in [from_ts, to_ts), optionally of one environment and/or service, one row per signal: the deployment (event_id, environment_id, service_id, deployed_at), the signal (rolledback, or detected/reported for the first detected and first reported time of an incident naming that service and environment), signal_at, and for incidents incident_id and resolved_at (the latest resolved event, NULL while open). A signal is charged to the latest deployment of its (environment, service) at or before it. What cdviz.dora_failed_deployments and cdviz.dora_failed_deployment_recovery_time read. Example: SELECT * FROM cdviz.dora_failure_signals(now() - interval ''30 days'', now(), ''prod'') ORDER BY deployed_at;';
REVOKE EXECUTE ON FUNCTION cdviz.dora_failure_signals(timestamptz, timestamptz, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz.dora_failure_signals(timestamptz, timestamptz, text, text) TO cdviz_reader;

CREATE OR REPLACE FUNCTION cdviz.dora_failed_deployments(from_ts timestamptz, to_ts timestamptz,
											  environment text DEFAULT NULL,
											  service text DEFAULT NULL)
RETURNS TABLE (event_id bigint)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT DISTINCT s.event_id FROM cdviz.dora_failure_signals(from_ts, to_ts, environment, service) AS s
$$;

COMMENT ON FUNCTION cdviz.dora_failed_deployments(timestamptz, timestamptz, text, text) IS
'cdviz DORA: the environment_history event ids of the deployments in [from_ts, to_ts) (optionally of one environment and/or service) that failed: a service.rolledback or an incident detected/reported on that service and environment followed them before the next deployment there (cdviz.dora_failure_signals lists the signals). What cdviz.dora_change_failure_rate and cdviz.dora_change_failures count. Example: SELECT count(*) FROM cdviz.dora_failed_deployments(now() - interval ''30 days'', now(), ''prod'');';
REVOKE EXECUTE ON FUNCTION cdviz.dora_failed_deployments(timestamptz, timestamptz, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz.dora_failed_deployments(timestamptz, timestamptz, text, text) TO cdviz_reader;

-- Time to restore and failed deployment recovery time are judged on the
-- same clusters (the 2023 report's recovery times); NULL without a sample.
CREATE FUNCTION cdviz._dora_recovery_tier(median interval)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN median < interval '1 hour' THEN 'elite'
			WHEN median < interval '1 day' THEN 'high'
			WHEN median < interval '7 days' THEN 'medium'
			WHEN median IS NOT NULL THEN 'low' END;

COMMENT ON FUNCTION cdviz._dora_recovery_tier(interval) IS
'cdviz: internal, for cdviz.dora_time_to_restore and cdviz.dora_failed_deployment_recovery_time: the DORA tier of a median recovery time: elite < 1 hour, high < 1 day, medium < 1 week, else low; NULL for NULL';
REVOKE EXECUTE ON FUNCTION cdviz._dora_recovery_tier(interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz._dora_recovery_tier(interval) TO cdviz_reader;

CREATE OR REPLACE FUNCTION cdviz.dora_time_to_restore(from_ts timestamptz, to_ts timestamptz,
										   environment text DEFAULT NULL,
										   service text DEFAULT NULL)
RETURNS TABLE (median interval, p90 interval, sample_size bigint, tier text)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY i.time_to_resolve),
	   percentile_cont(0.9) WITHIN GROUP (ORDER BY i.time_to_resolve),
	   count(*),
	   cdviz._dora_recovery_tier(percentile_cont(0.5) WITHIN GROUP (ORDER BY i.time_to_resolve))
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
REVOKE EXECUTE ON FUNCTION cdviz.dora_time_to_restore(timestamptz, timestamptz, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz.dora_time_to_restore(timestamptz, timestamptz, text, text) TO cdviz_reader;

-- Failed deployment recovery time, per failed deployment (DORA since its
-- 2023 report) where time to restore above is per incident.  The failed
-- deployments and what failed them come from cdviz.dora_failure_signals,
-- grouped per deployment; only a deployment with neither a resolution nor
-- a rollback costs one more descent of the history index (its next
-- deployment).  A deployment's recovery does not depend on the range
-- asked, so one call over a long range serves trailing windows.
CREATE FUNCTION cdviz.dora_failed_deployment_recoveries(from_ts timestamptz, to_ts timestamptz,
														environment text DEFAULT NULL,
														service text DEFAULT NULL)
RETURNS TABLE (event_id bigint, environment_id text, service_id text, deployed_at timestamptz,
			   recovered_at timestamptz, recovered_by text, recovery_time interval)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
WITH failed AS (
	SELECT s.event_id, s.environment_id, s.service_id, s.deployed_at,
		   min(s.signal_at) FILTER (WHERE s.signal = 'rolledback') AS rolled_back_at,
		   -- recovered from its incidents once the last of them is resolved
		   CASE WHEN bool_and(s.resolved_at IS NOT NULL) FILTER (WHERE s.incident_id IS NOT NULL)
				THEN max(s.resolved_at) FILTER (WHERE s.incident_id IS NOT NULL) END AS resolved_at
	FROM cdviz.dora_failure_signals(from_ts, to_ts, environment, service) AS s
	GROUP BY s.event_id, s.environment_id, s.service_id, s.deployed_at
), recovery AS (
	SELECT f.event_id, f.environment_id, f.service_id, f.deployed_at,
		   CASE WHEN f.rolled_back_at <= f.resolved_at OR f.resolved_at IS NULL THEN f.rolled_back_at
				ELSE f.resolved_at END AS rolled_back_or_resolved_at,
		   CASE WHEN f.rolled_back_at <= f.resolved_at
					 OR (f.rolled_back_at IS NOT NULL AND f.resolved_at IS NULL) THEN 'rollback'
				WHEN f.resolved_at IS NOT NULL THEN 'incident resolved' END AS recovered_by,
		   n.valid_from AS next_deployed_at
	FROM failed AS f
	LEFT JOIN LATERAL (
		SELECT h.valid_from
		FROM cdviz.environment_history AS h
		WHERE f.resolved_at IS NULL AND f.rolled_back_at IS NULL
		  AND h.environment_id = f.environment_id AND h.service_id = f.service_id
		  AND (h.valid_from, h.event_id) > (f.deployed_at, f.event_id)
		  AND h.predicate IN ('deployed', 'upgraded')
		ORDER BY h.valid_from, h.event_id
		LIMIT 1) AS n ON true
)
SELECT r.event_id, r.environment_id, r.service_id, r.deployed_at,
	   coalesce(r.rolled_back_or_resolved_at, r.next_deployed_at),
	   coalesce(r.recovered_by, CASE WHEN r.next_deployed_at IS NOT NULL THEN 'next deployment' END),
	   coalesce(r.rolled_back_or_resolved_at, r.next_deployed_at) - r.deployed_at
FROM recovery AS r
$$;

COMMENT ON FUNCTION cdviz.dora_failed_deployment_recoveries(timestamptz, timestamptz, text, text) IS
'cdviz DORA: every deployment in [from_ts, to_ts) (optionally of one environment and/or service) that cdviz.dora_failed_deployments counts as failed, one row each, with its recovery: recovered_at and recovered_by = rollback (the first service.rolledback charged to it), incident resolved (the latest resolved time of the incidents charged to it, once all of them are resolved), whichever came first, else next deployment (its service''s next deployed/upgraded event in that environment); NULL while not recovered. recovery_time = recovered_at - deployed_at. A deployment''s recovery does not depend on the range asked. What cdviz.dora_failed_deployment_recovery_time aggregates. Example: SELECT service_id, deployed_at, recovered_by, recovery_time FROM cdviz.dora_failed_deployment_recoveries(now() - interval ''30 days'', now(), ''prod'') ORDER BY recovery_time DESC NULLS FIRST;';
REVOKE EXECUTE ON FUNCTION cdviz.dora_failed_deployment_recoveries(timestamptz, timestamptz, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz.dora_failed_deployment_recoveries(timestamptz, timestamptz, text, text) TO cdviz_reader;

CREATE FUNCTION cdviz.dora_failed_deployment_recovery_time(from_ts timestamptz, to_ts timestamptz,
														   environment text DEFAULT NULL,
														   service text DEFAULT NULL)
RETURNS TABLE (median interval, p90 interval, sample_size bigint, tier text)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY r.recovery_time),
	   percentile_cont(0.9) WITHIN GROUP (ORDER BY r.recovery_time),
	   count(*),
	   cdviz._dora_recovery_tier(percentile_cont(0.5) WITHIN GROUP (ORDER BY r.recovery_time))
FROM cdviz.dora_failed_deployment_recoveries(from_ts, to_ts, environment, service) AS r
WHERE r.recovery_time >= interval '0'
$$;

COMMENT ON FUNCTION cdviz.dora_failed_deployment_recovery_time(timestamptz, timestamptz, text, text) IS
'cdviz DORA failed deployment recovery time over [from_ts, to_ts), optionally for one environment and/or service: for every deployment in the range that cdviz.dora_failed_deployments counts as failed, the time from the deployment to its recovery (cdviz.dora_failed_deployment_recoveries): the resolution of the incidents charged to it (the latest resolved time, once all of them are resolved) or the rollback charged to it, whichever came first; with neither, the next deployed/upgraded event of that service in that environment. Returns median and p90 (percentile_cont), sample_size and the tier on the median: elite < 1 hour, high < 1 day, medium < 1 week, else low. Limits: a failed deployment not yet recovered (an open incident, no rollback, no later deployment) is not in the sample; a recovery before the deployment (an incident resolved before it was reported) is left out. Example: SELECT * FROM cdviz.dora_failed_deployment_recovery_time(now() - interval ''30 days'', now(), ''prod'');';
REVOKE EXECUTE ON FUNCTION cdviz.dora_failed_deployment_recovery_time(timestamptz, timestamptz, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz.dora_failed_deployment_recovery_time(timestamptz, timestamptz, text, text) TO cdviz_reader;

-- Rework rate (DORA's fifth metric, 2024 report): the share of deployments
-- that were unplanned, made because of an incident in production.  Which
-- deployments were rework is found from the rare side: rollbacks (their
-- partial index), incidents open at the time (incident_summaries by
-- last_event_at), and incidents and bug tickets that a deployment's
-- artifact or change is linked to (cdviz.rework_links of the look-back
-- window, kept at ingest); the deployments themselves are only counted.
-- The rules of cdviz.dora_rework_rules are the exception: they are tested
-- against every deployment of the range, and only when the table has a
-- row.
--
-- Incidents and tickets are looked for at most 90 days before the
-- deployment (the look-back), so that the cost of a range does not grow
-- with the history before it; the bound is per deployment, so a
-- deployment's verdict does not depend on the range asked.
CREATE TABLE cdviz.dora_rework_rules (
	rule_name		text PRIMARY KEY,
	field			text NOT NULL
		CHECK (field IN ('environment_id', 'service_id', 'artifact_id', 'change_id', 'change_description')),
	pattern			text NOT NULL
		-- compiling the expression here rejects an invalid one when it is
		-- stored (SQLSTATE 2201B), not in every later call
		CHECK (pattern <> '' AND ('' ~ pattern) IS NOT NULL),
	rework			boolean NOT NULL DEFAULT true
);

COMMENT ON TABLE cdviz.dora_rework_rules IS
'cdviz DORA: the site''s own rework classification, read by cdviz.dora_rework: a deployment whose field (environment_id, service_id, artifact_id, change_id of its artifact, change_description = the latest description of that change) matches pattern (a POSIX regular expression, case-sensitive: prefix (?i) for case-insensitive) is rework when rework is true, and is not rework, whatever else says it is, when rework is false. Readers may read it; only the extension''s owner (or a role it grants INSERT/UPDATE/DELETE) may change it. Example: INSERT INTO cdviz.dora_rework_rules VALUES (''hotfix changes'', ''change_description'', ''(?i)^hotfix'');';
COMMENT ON COLUMN cdviz.dora_rework_rules.rule_name IS 'a name for the rule; cdviz.dora_rework reports it as the reason "rule: <name>"';
COMMENT ON COLUMN cdviz.dora_rework_rules.field IS 'what the pattern is matched against: environment_id, service_id, artifact_id, change_id or change_description';
COMMENT ON COLUMN cdviz.dora_rework_rules.pattern IS 'POSIX regular expression (the ~ operator)';
COMMENT ON COLUMN cdviz.dora_rework_rules.rework IS 'true: a matching deployment is rework; false: a matching deployment is never rework (the rule wins over every other reason)';
GRANT SELECT ON cdviz.dora_rework_rules TO cdviz_reader;
SELECT pg_catalog.pg_extension_config_dump('cdviz.dora_rework_rules', '');

-- The site's rules are tested against every deployment of the range, and
-- only while the table has a row.  Inlined, their estimate (the rules
-- crossed with every deployment of the range, whether the table is empty
-- or not) made the planner compile the whole rework query with JIT:
-- seconds for a query of milliseconds.  As a function of their own they
-- are planned apart, with the row estimate below.
CREATE FUNCTION cdviz._dora_rework_by_rules(from_ts timestamptz, to_ts timestamptz,
											environment text, service text)
RETURNS TABLE (event_id bigint, environment_id text, service_id text, deployed_at timestamptz,
			   action text, reason text)
LANGUAGE plpgsql STABLE PARALLEL SAFE ROWS 10
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT EXISTS (SELECT FROM cdviz.dora_rework_rules) THEN
		RETURN;
	END IF;
	RETURN QUERY
	SELECT h.event_id, h.environment_id, h.service_id, h.valid_from, h.predicate,
		   CASE WHEN r.rework THEN 'rule: ' ELSE 'not rework, rule: ' END || r.rule_name
	FROM cdviz.environment_history AS h
	LEFT JOIN cdviz.artifact_changes AS a ON a.artifact_id = h.artifact_id
	CROSS JOIN cdviz.dora_rework_rules AS r
	WHERE h.valid_from >= from_ts AND h.valid_from < to_ts
	  AND h.predicate IN ('deployed', 'upgraded', 'rolledback')
	  AND (environment IS NULL OR h.environment_id = environment)
	  AND (service IS NULL OR h.service_id = service)
	  AND CASE r.field
			  WHEN 'environment_id' THEN h.environment_id
			  WHEN 'service_id' THEN h.service_id
			  WHEN 'artifact_id' THEN h.artifact_id
			  WHEN 'change_id' THEN a.change_id
			  WHEN 'change_description' THEN (SELECT c.description FROM cdviz.change_summaries AS c
											  WHERE c.change_id = a.change_id)
		  END ~ r.pattern;
END
$$;

COMMENT ON FUNCTION cdviz._dora_rework_by_rules(timestamptz, timestamptz, text, text) IS
'cdviz: internal, for cdviz.dora_rework: the deployments of the range that a row of cdviz.dora_rework_rules matches, with the reason "rule: <name>" (rework) or "not rework, rule: <name>"; nothing, at once, while the table is empty';
REVOKE EXECUTE ON FUNCTION cdviz._dora_rework_by_rules(timestamptz, timestamptz, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz._dora_rework_by_rules(timestamptz, timestamptz, text, text) TO cdviz_reader;

CREATE FUNCTION cdviz.dora_rework(from_ts timestamptz, to_ts timestamptz,
								  environment text DEFAULT NULL,
								  service text DEFAULT NULL)
RETURNS TABLE (event_id bigint, environment_id text, service_id text, deployed_at timestamptz,
			   action text, reasons text[])
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
WITH reasons AS (
	SELECT h.event_id, h.environment_id, h.service_id, h.valid_from, h.predicate, 'rollback' AS reason
	FROM cdviz.environment_history AS h
	WHERE h.valid_from >= from_ts AND h.valid_from < to_ts AND h.predicate = 'rolledback'
	  AND (environment IS NULL OR h.environment_id = environment)
	  AND (service IS NULL OR h.service_id = service)
	UNION ALL
	-- an incident is open from its first detected or reported event to its
	-- (latest) resolved event: the deployments of its service and
	-- environment meanwhile, one range of the (environment, service,
	-- valid_from) index per incident
	SELECT h.event_id, h.environment_id, h.service_id, h.valid_from, h.predicate, 'open incident'
	FROM cdviz.incident_summaries AS i
	CROSS JOIN LATERAL (
		SELECT h.event_id, h.environment_id, h.service_id, h.valid_from, h.predicate
		FROM cdviz.environment_history AS h
		WHERE h.environment_id = i.environment_id AND h.service_id = i.service_id
		  AND h.valid_from >= GREATEST(LEAST(i.detected_at, i.reported_at), from_ts)
		  AND h.valid_from < LEAST(i.resolved_at, to_ts)
		  AND h.valid_from <= LEAST(i.detected_at, i.reported_at) + interval '90 days'
		  AND h.predicate IN ('deployed', 'upgraded', 'rolledback')
		-- kept a subquery: a join would be planned over every deployment of
		-- the range, sorted or hashed, where the incidents are few
		OFFSET 0) AS h
	WHERE i.last_event_at >= from_ts - interval '90 days'
	  AND LEAST(i.detected_at, i.reported_at) < to_ts
	  AND i.environment_id IS NOT NULL AND i.service_id IS NOT NULL
	  AND (environment IS NULL OR i.environment_id = environment)
	  AND (service IS NULL OR i.service_id = service)
	UNION ALL
	-- deployments linked to a cause of the look-back, or shipping an
	-- artifact linked to one or built from a change linked to one
	-- (cdviz.rework_links, kept at ingest)
	SELECT h.event_id, h.environment_id, h.service_id, h.valid_from, h.predicate, k.reason
	FROM cdviz.rework_links AS k
	JOIN cdviz.environment_history AS h ON h.event_id = k.event_id
	WHERE k.since >= from_ts - interval '90 days' AND k.since < to_ts AND k.subject = 'service'
	  AND h.valid_from >= from_ts AND h.valid_from < to_ts
	  AND h.valid_from >= k.since AND h.valid_from <= k.since + interval '90 days'
	  AND h.predicate IN ('deployed', 'upgraded', 'rolledback')
	  AND (environment IS NULL OR h.environment_id = environment)
	  AND (service IS NULL OR h.service_id = service)
	UNION ALL
	SELECT h.event_id, h.environment_id, h.service_id, h.valid_from, h.predicate, k.reason
	FROM (SELECT k.subject_id AS artifact_id, k.since, k.reason
		  FROM cdviz.rework_links AS k
		  WHERE k.since >= from_ts - interval '90 days' AND k.since < to_ts AND k.subject = 'artifact'
		  UNION ALL
		  SELECT a.artifact_id, k.since, k.reason
		  FROM cdviz.rework_links AS k
		  JOIN cdviz.artifact_changes AS a ON a.change_id = k.subject_id
		  WHERE k.since >= from_ts - interval '90 days' AND k.since < to_ts AND k.subject = 'change') AS k
	JOIN cdviz.environment_history AS h
	  ON h.artifact_id = k.artifact_id
	 AND h.valid_from >= from_ts AND h.valid_from < to_ts
	 AND h.valid_from >= k.since AND h.valid_from <= k.since + interval '90 days'
	WHERE h.predicate IN ('deployed', 'upgraded', 'rolledback')
	  AND (environment IS NULL OR h.environment_id = environment)
	  AND (service IS NULL OR h.service_id = service)
	UNION ALL
	SELECT * FROM cdviz._dora_rework_by_rules(from_ts, to_ts, environment, service)
)
SELECT r.event_id, r.environment_id, r.service_id, r.valid_from, r.predicate,
	   array_agg(DISTINCT r.reason ORDER BY r.reason)
FROM reasons AS r
GROUP BY r.event_id, r.environment_id, r.service_id, r.valid_from, r.predicate
HAVING NOT bool_or(r.reason LIKE 'not rework, %')
$$;

COMMENT ON FUNCTION cdviz.dora_rework(timestamptz, timestamptz, text, text) IS
'cdviz DORA: the deployments (service deployed, upgraded or rolledback events) in [from_ts, to_ts), optionally of one environment and/or service, that were rework, one row each with its reasons: rollback (a rolledback event); open incident (made to that service and environment while an incident naming both was open: first detected or reported at or before the deployment and at most 90 days before it, not yet resolved); link to incident / link to ticket (the deployment event, its artifact''s events or its artifact''s change''s events name in context.links an incident event, or a ticket event whose ticketType contains "bug", of the 90 days before the deployment (cdviz.rework_links)); chain of incident / chain of ticket (its artifact was packaged, or its change created, in the chain of such an incident or ticket after it); rule: <name> (cdviz.dora_rework_rules). A rule with rework = false takes the deployment out. What cdviz.dora_rework_rate counts; a deployment''s verdict does not depend on the range asked. Example: SELECT * FROM cdviz.dora_rework(now() - interval ''30 days'', now(), ''prod'') ORDER BY deployed_at;';
REVOKE EXECUTE ON FUNCTION cdviz.dora_rework(timestamptz, timestamptz, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz.dora_rework(timestamptz, timestamptz, text, text) TO cdviz_reader;

CREATE FUNCTION cdviz.dora_rework_rate(from_ts timestamptz, to_ts timestamptz,
									   environment text DEFAULT NULL,
									   service text DEFAULT NULL)
RETURNS TABLE (rate numeric, rework bigint, deployments bigint, sample_size bigint)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT round(r.n::numeric / nullif(t.n, 0), 4), r.n, t.n, t.n
FROM (SELECT count(*) AS n
	  FROM cdviz.environment_history AS h
	  WHERE h.valid_from >= from_ts AND h.valid_from < to_ts
		AND h.predicate IN ('deployed', 'upgraded', 'rolledback')
		AND (environment IS NULL OR h.environment_id = environment)
		AND (service IS NULL OR h.service_id = service)) AS t,
	 (SELECT count(*) AS n
	  FROM cdviz.dora_rework(from_ts, to_ts, environment, service)) AS r
$$;

COMMENT ON FUNCTION cdviz.dora_rework_rate(timestamptz, timestamptz, text, text) IS
'cdviz DORA rework rate over [from_ts, to_ts), optionally for one environment and/or service: the share of deployments (service deployed, upgraded and rolledback events) that were rework as cdviz.dora_rework says (rollbacks, deployments made while an incident on that service and environment was open, deployments whose artifact or change is linked by context.links or chainId to an incident or a bug ticket, and the site''s cdviz.dora_rework_rules). Returns rate (0..1), rework, deployments (= sample_size). No tier: DORA''s 2024 report introduced the metric without performance clusters. Example: SELECT * FROM cdviz.dora_rework_rate(now() - interval ''30 days'', now(), ''prod'');';
REVOKE EXECUTE ON FUNCTION cdviz.dora_rework_rate(timestamptz, timestamptz, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz.dora_rework_rate(timestamptz, timestamptz, text, text) TO cdviz_reader;

-- Its result gains columns: a new function, not a replacement (nothing in
-- the schema depends on it; its comment and grant are made again below).
DROP FUNCTION cdviz.dora_by_environment(timestamptz, timestamptz, text);

-- The metrics for every environment, one row each: what a "DORA per
-- environment" table shows.  Calling the functions above laterally, once
-- per environment, passes the environment as a parameter, which the
-- planner cannot fold into the (environment_id, time) index ranges: every
-- call then reads the window of every environment.  Here each environment
-- gets its own statement with the id as a literal, planned for it.  The
-- rework is the exception: most of its cost (the causes and their links)
-- is the same for every environment, so it is listed once for all of
-- them and counted per environment, over the deployments
-- cdviz.dora_rework_rate counts: the deployment frequency's (deployed,
-- upgraded) and the rollbacks (their partial index).
CREATE FUNCTION cdviz.dora_by_environment(from_ts timestamptz, to_ts timestamptz,
										  service text DEFAULT NULL)
RETURNS TABLE (environment_id text, deployments bigint, per_day_per_service numeric,
			   frequency_tier text, lead_time_median interval, lead_time_p90 interval,
			   lead_time_tier text, change_failure_rate numeric, failed_deployments bigint,
			   failure_rate_tier text, time_to_restore_median interval, incidents bigint,
			   restore_tier text, recovery_time_median interval, recovery_tier text,
			   rework_rate numeric)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	env text;
	rework jsonb;
BEGIN
	SELECT coalesce(jsonb_object_agg(w.environment_id, w.n), '{}')
	INTO rework
	FROM (SELECT r.environment_id, count(*) AS n
		  FROM cdviz.dora_rework(from_ts, to_ts, NULL, service) AS r
		  GROUP BY r.environment_id) AS w;
	FOR env IN
		SELECT DISTINCT i.environment_id FROM cdviz.environment_inventory AS i ORDER BY 1
	LOOP
		RETURN QUERY EXECUTE format(
			'SELECT %1$L::text, df.deployments, df.per_day_per_service, df.tier,'
			' lt.median, lt.p90, lt.tier, cfr.rate, cfr.failed, cfr.tier,'
			' ttr.median, ttr.sample_size, ttr.tier, fdrt.median, fdrt.tier,'
			' round(coalesce(($4 ->> %1$L)::numeric, 0) / nullif(df.deployments + rb.n, 0), 4)'
			' FROM cdviz.dora_deployment_frequency($1, $2, %1$L, $3) AS df'
			' FULL JOIN cdviz.dora_lead_time($1, $2, %1$L, $3) AS lt ON true'
			' FULL JOIN cdviz.dora_change_failure_rate($1, $2, %1$L, $3) AS cfr ON true'
			' FULL JOIN cdviz.dora_time_to_restore($1, $2, %1$L, $3) AS ttr ON true'
			' FULL JOIN cdviz.dora_failed_deployment_recovery_time($1, $2, %1$L, $3) AS fdrt ON true'
			' FULL JOIN (SELECT count(*) AS n FROM cdviz.environment_history AS h'
			'            WHERE h.valid_from >= $1 AND h.valid_from < $2 AND h.predicate = ''rolledback'''
			'              AND h.environment_id = %1$L AND ($3 IS NULL OR h.service_id = $3)) AS rb ON true', env)
			USING from_ts, to_ts, service, rework;
	END LOOP;
END
$$;

COMMENT ON FUNCTION cdviz.dora_by_environment(timestamptz, timestamptz, text) IS
'cdviz DORA: the five metrics over [from_ts, to_ts) for every environment where a service runs (cdviz.environment_inventory), optionally for one service; one row per environment with the values and tiers of cdviz.dora_deployment_frequency, dora_lead_time, dora_change_failure_rate, dora_time_to_restore, dora_failed_deployment_recovery_time (recovery_time_median, recovery_tier) and dora_rework_rate (rework_rate) for that environment (same definitions). Example: SELECT environment_id, per_day_per_service, frequency_tier, lead_time_median, change_failure_rate, recovery_time_median, rework_rate FROM cdviz.dora_by_environment(now() - interval ''30 days'', now());';
REVOKE EXECUTE ON FUNCTION cdviz.dora_by_environment(timestamptz, timestamptz, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz.dora_by_environment(timestamptz, timestamptz, text) TO cdviz_reader;

-- Transformers of oci sources: _source_check_transformer accepts them,
-- retransform_source keeps the counters of an oci source right, the
-- comments say so.
COMMENT ON COLUMN cdviz.sources.transformer IS 'folder and s3 (format junit, tap or metadata), oci: a function (meta jsonb, body jsonb) RETURNS SETOF jsonb called for each file or object read, or each new or moved tag, whose output replaces the built-in mapping of the format or kind; NULL: the built-in mapping. See cdviz.retransform_source()';
COMMENT ON COLUMN cdviz.source_progress.events IS 'message sources and oci: events stored';
COMMENT ON COLUMN cdviz.source_progress.duplicates IS 'message sources and oci: events the lake already had';
COMMENT ON COLUMN cdviz.source_progress.rejected IS 'message sources: messages sent to cdviz.rejected_events; oci: invalid events and tags its transformer raised on';
CREATE OR REPLACE FUNCTION cdviz._source_check_transformer(kind text, options jsonb, transformer regprocedure)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	fmt CONSTANT text := coalesce(options->>'format', 'cdevents');
BEGIN
	IF transformer IS NULL THEN
		IF kind IN ('folder', 's3') AND fmt = 'metadata' THEN
			RAISE EXCEPTION 'a source of format metadata needs a transformer'
				USING ERRCODE = 'invalid_parameter_value',
					  DETAIL = 'Its files are not read: there are no events in them to store without one.',
					  HINT = 'Example: CREATE FUNCTION my_files(meta jsonb, body jsonb) RETURNS SETOF jsonb LANGUAGE sql AS $f$ SELECT cdviz.webhook_cdevent(''artifact.published'', meta->>''source_uri'', meta->>''mtime'', ''pkg:generic/'' || (meta->>''name'') || ''?checksum=sha256:'' || (meta->>''sha256''), ''{}'') $f$; then transformer => ''my_files(jsonb,jsonb)''.';
		END IF;
		RETURN;
	END IF;
	IF NOT EXISTS (SELECT FROM pg_proc p WHERE p.oid = transformer AND p.proretset
				   AND p.prorettype = 'jsonb'::regtype
				   AND p.proargtypes = '3802 3802'::oidvector) THEN
		RAISE EXCEPTION 'a source transformer must be a function (meta jsonb, body jsonb) RETURNS SETOF jsonb, not %', transformer
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Example: CREATE FUNCTION my_files(meta jsonb, body jsonb) RETURNS SETOF jsonb LANGUAGE plpgsql AS ...';
	END IF;
	IF kind IN ('nats', 'kafka') THEN
		RAISE EXCEPTION 'sources of kind % take no transformer', kind
			USING ERRCODE = 'feature_not_supported',
				  DETAIL = 'Their messages are read as CDEvents or CloudEvents, in batches.',
				  HINT = 'Post the tool''s payloads to a webhook route instead, which applies a transformer to each (cdviz.create_webhook()), or drop them as files into a folder source.';
	END IF;
	IF kind IN ('folder', 's3') AND fmt = 'cdevents' THEN
		RAISE EXCEPTION 'a source of format cdevents takes no transformer'
			USING ERRCODE = 'feature_not_supported',
				  DETAIL = 'Its files hold CDEvents, stored as they are.',
				  HINT = 'Give the source the format whose items the transformer reads: junit, tap (the report) or metadata (the file''s name, size, time and SHA-256).';
	END IF;
END
$$;
COMMENT ON FUNCTION cdviz._source_check_transformer(text, jsonb, regprocedure) IS
'cdviz internal: raises unless a source of that kind and options may have that transformer (NULL: none): the signature (meta jsonb, body jsonb) RETURNS SETOF jsonb (22023), a folder or s3 source of format junit, tap or metadata, or an oci source (0A000 otherwise), and one at all for format metadata (22023)';
CREATE OR REPLACE FUNCTION cdviz.retransform_source(name text, since timestamptz DEFAULT '-infinity',
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
COMMENT ON FUNCTION cdviz.oci_source_events(jsonb, jsonb) IS
'cdviz: the events a source of kind oci makes of a tag seen pointing to a new digest (meta: source, kind, id, source_uri, mtime, registry, host, repository, tag, digest, media_type, previous_digest, seen_at; body NULL; a transformer of the source may start from it): one artifact.published with subject id pkg:oci/<name>@sha256%3A<hex>?repository_url=<host>/<repository>&tag=<tag>. Example: SELECT cdviz.oci_source_events(''{"registry": "https://ghcr.io", "host": "ghcr.io", "repository": "acme/api", "tag": "1.2", "digest": "sha256:ab12", "seen_at": "2024-05-01T10:00:00Z"}'', NULL);';

-- Test reports: a source's max_report_cases bounds the model a report is
-- read into (about 1 kB a case), and cdviz.report_cdevents() is
-- cdviz_reader's, held to the same limit.
CREATE OR REPLACE FUNCTION cdviz.source_options(kind text DEFAULT NULL)
RETURNS TABLE (kind text, option text, type text, default_value text, secret boolean,
			   description text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT o.kind, o.option, o.type, o.default_value, o.secret, o.description
	FROM (VALUES
		('folder', 'poll_interval', 'integer', '5', false, 'seconds between two looks at the folder (1 to 86400)'),
		('folder', 'pattern', 'string', '*.json,*.jsonl,*.ndjson', false, 'comma-separated file name patterns; *.json files hold one event or an array, others one event per line'),
		('folder', 'after', 'string', 'keep', false, 'what to do with a file read to its end: keep, delete or move'),
		('folder', 'done_path', 'string', NULL, false, 'absolute path of the folder files are moved into (required when after is move)'),
		('folder', 'reader', NULL, NULL, NULL, 'file'),
		('s3', 'endpoint', 'string', '', false, 'endpoint URL; empty: AWS in the region'),
		('s3', 'region', 'string', 'us-east-1', false, 'region of the AWS Signature V4'),
		('s3', 'path_style', 'boolean', 'false', false, 'address the bucket in the URL path (MinIO, Ceph...)'),
		('s3', 'access_key_id', 'string', '', true, 'access key id'),
		('s3', 'secret_access_key', 'string', '', true, 'secret access key'),
		('s3', 'poll_interval', 'integer', '30', false, 'seconds between two listings (1 to 86400); doubled after each failure, up to 10 minutes'),
		('s3', 'pattern', 'string', '*.json,*.jsonl,*.ndjson', false, 'comma-separated patterns for the last segment of the keys'),
		('s3', 'reader', NULL, NULL, NULL, 'object'),
		('nats', 'url', 'string', NULL, false, 'server URL (required); a secret when it carries a user, password or token'),
		('nats', 'stream', 'string', '', false, 'JetStream stream: read through durable consumers, acknowledged after the commit; empty: plain subscriptions'),
		('nats', 'consumer', 'string', 'cdviz-<name>', false, 'durable consumer name (suffixed with the subject''s place when there are several subjects)'),
		('kafka', 'brokers', 'string', NULL, false, 'bootstrap servers host:port,... (required)'),
		('kafka', 'group', 'string', 'cdviz-<name>', false, 'consumer group'),
		('kafka', 'batch_size', 'integer', '500', false, 'messages stored per transaction (1 to 100000)'),
		('kafka', 'batch_timeout_ms', 'integer', '100', false, 'longest wait for a batch to fill, in ms (0 to 60000)'),
		('kafka', 'start', 'string', 'earliest', false, 'where a new group starts: earliest or latest'),
		('kafka', 'config', 'object', '{}', false, 'librdkafka settings; those a kafka sink keeps secret (named like *password*, *secret*, *.pem, ssl_key*, sasl.oauthbearer.config) are secrets'),
		('oci', 'repositories', 'array', '[]', false, 'repository names, or patterns where * and ? match any characters (/ included); empty: every repository of the registry''s catalog'),
		('oci', 'poll_interval', 'duration', '60', false, 'time between two scans: seconds, or a duration such as "30s", "5m", "1h" (1 s to 1 day); doubled after each failure, up to 10 minutes'),
		('oci', 'initial', 'string', 'baseline', false, 'the first scan of a registry: baseline (records its tags, emits nothing) or backfill (an event for every tag found)'),
		('oci', 'page_size', 'integer', '1000', false, 'entries asked for per page of the catalog and of tag lists (1 to 10000)'),
		('oci', 'batch_size', 'integer', '500', false, 'new or moved tags whose events and progress are stored per transaction (1 to 100000)'),
		('oci', 'username', 'string', '', true, 'user name for the registry (basic authentication, and for the token endpoint when the registry asks for a bearer token)'),
		('oci', 'password', 'string', '', true, 'password or access token of that user'),
		('oci', 'ecr', 'object', NULL, false, 'AWS ECR: {"region": "eu-west-1"}, and "endpoint" for another ECR API URL; the registry''s credentials come from GetAuthorizationToken, signed with the access keys'),
		('oci', 'access_key_id', 'string', '', true, 'ecr: AWS access key id'),
		('oci', 'secret_access_key', 'string', '', true, 'ecr: AWS secret access key'),
		('oci', 'session_token', 'string', '', true, 'ecr: AWS session token of temporary credentials')
	) AS v (kind, option, type, default_value, secret, description)
	CROSS JOIN LATERAL (
		SELECT v.kind, v.option, v.type, v.default_value, v.secret, v.description
		WHERE v.option <> 'reader'
		UNION ALL
		SELECT v.kind, r.option, r.type, r.default_value, false, format(r.description, v.description)
		FROM (VALUES
			('format', 'string', 'cdevents', 'how each %s is read: cdevents (a .json event or array, else JSON Lines), junit (a JUnit XML report), tap (a TAP 13/14 report) or metadata (not read: its name, size, time and SHA-256 handed to the source''s transformer, which it requires); the pattern defaults to *.xml for junit, *.tap for tap, * for metadata'),
			('batch_lines', 'integer', '5000', 'lines or array elements stored per transaction (1 to 1000000)'),
			('max_line_size', 'integer', '1024', 'longest line read, in kB (1 to 1048576)'),
			('max_json_size', 'integer', '65536', 'largest .json %s read, in kB (1 to 1048576)'),
			('max_report_size', 'integer', '65536', 'largest report (format junit or tap) read, in kB (1 to 1048576); larger ones are dead letters'),
			('max_report_cases', 'integer', '100000', 'most suites and cases in a report (format junit or tap), 1 to 1000000; a report with more is a dead letter. Its model costs about 1 kB of memory per case while it is read'),
			('environment', 'string', '', 'reports: the test runs'' environment.id; empty: the suite''s hostname, else unknown')
		) AS r (option, type, default_value, description)
		WHERE v.option = 'reader'
	) AS o (kind, option, type, default_value, secret, description)
	WHERE source_options.kind IS NULL OR v.kind = source_options.kind
$$;
CREATE OR REPLACE FUNCTION cdviz._source_check(kind text, location text, options jsonb)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	known text[] := ARRAY(SELECT o.option FROM cdviz.source_options(kind) o ORDER BY o.option);
	o record;
	v jsonb;
	loc text := location;
	-- at most 16 NATS subjects (one subscription each); Kafka topic names
	list_re CONSTANT text := CASE kind WHEN 'nats' THEN '^[^\s,]+(,[^\s,]+){0,15}$'
									   ELSE '^[A-Za-z0-9._-]{1,249}(,[A-Za-z0-9._-]{1,249})*$' END;
BEGIN
	IF kind IS NULL OR NOT kind IN ('folder', 's3', 'nats', 'kafka', 'oci') THEN
		RAISE EXCEPTION 'unknown source kind "%"', kind
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Use folder, s3, nats, kafka or oci.';
	END IF;
	IF jsonb_typeof(options) IS DISTINCT FROM 'object' THEN
		RAISE EXCEPTION 'source options must be a JSON object'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	FOR o IN SELECT k FROM jsonb_object_keys(options) k WHERE NOT k = ANY (known) ORDER BY k LOOP
		RAISE EXCEPTION 'unknown option "%" for a source of kind %', o.k, kind
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = format('known options: %s.', array_to_string(known, ', '));
	END LOOP;
	FOR o IN SELECT s.option, s.type FROM cdviz.source_options(kind) s LOOP
		v := options->o.option;
		CONTINUE WHEN v IS NULL;
		IF o.type = 'integer' AND NOT (jsonb_typeof(v) = 'number' AND v::text ~ '^-?[0-9]+$') THEN
			RAISE EXCEPTION 'option "%" of a source of kind % must be an integer, not %', o.option, kind, v
				USING ERRCODE = 'invalid_parameter_value';
		ELSIF o.type = 'string' AND jsonb_typeof(v) <> 'string' THEN
			RAISE EXCEPTION 'option "%" of a source of kind % must be a string, not %', o.option, kind, v
				USING ERRCODE = 'invalid_parameter_value';
		ELSIF o.type = 'boolean' AND jsonb_typeof(v) <> 'boolean' THEN
			RAISE EXCEPTION 'option "%" of a source of kind % must be true or false, not %', o.option, kind, v
				USING ERRCODE = 'invalid_parameter_value';
		ELSIF o.type = 'object' AND (jsonb_typeof(v) <> 'object' OR EXISTS (
				SELECT FROM jsonb_each(v) e WHERE jsonb_typeof(e.value) NOT IN ('string', 'number', 'boolean'))) THEN
			RAISE EXCEPTION 'option "%" of a source of kind % must be an object of settings and their values', o.option, kind
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
	END LOOP;
	-- ranges, as the settings of the same name have
	FOR o IN SELECT * FROM (VALUES ('poll_interval', 1, 86400), ('batch_lines', 1, 1000000),
							  ('max_line_size', 1, 1048576), ('max_json_size', 1, 1048576),
							  ('max_report_size', 1, 1048576), ('max_report_cases', 1, 1000000),
							  ('page_size', 1, 10000),
							  ('batch_size', 1, 100000), ('batch_timeout_ms', 0, 60000)) r (k, lo, hi)
	LOOP
		-- an oci source's poll_interval may be a duration (checked below)
		IF jsonb_typeof(options->o.k) = 'number' AND NOT (options->>o.k)::numeric BETWEEN o.lo AND o.hi THEN
			RAISE EXCEPTION 'option "%" must be from % to %, not %', o.k, o.lo, o.hi, options->>o.k
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
	END LOOP;
	IF options ? 'after' AND NOT options->>'after' IN ('keep', 'delete', 'move') THEN
		RAISE EXCEPTION 'option "after" must be keep, delete or move, not "%"', options->>'after'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF options->>'after' = 'move' AND coalesce(options->>'done_path', '') !~ '^/' THEN
		RAISE EXCEPTION 'option "done_path" (an absolute path) is required when "after" is move'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF options ? 'format' AND NOT options->>'format' IN ('cdevents', 'junit', 'tap', 'metadata') THEN
		RAISE EXCEPTION 'option "format" must be cdevents, junit, tap or metadata, not "%"', options->>'format'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF options ? 'start' AND NOT options->>'start' IN ('earliest', 'latest') THEN
		RAISE EXCEPTION 'option "start" must be earliest or latest, not "%"', options->>'start'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	FOR o IN SELECT x.option FROM (VALUES ('nats', 'url'), ('kafka', 'brokers')) x (kind, option)
			 WHERE x.kind = _source_check.kind LOOP
		IF coalesce(options->>o.option, '') = '' THEN
			RAISE EXCEPTION 'option "%" is required for a source of kind %', o.option, kind
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
	END LOOP;

	IF loc IS NULL THEN
		RAISE EXCEPTION 'a source needs a location' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	CASE kind
		WHEN 'folder' THEN
			IF loc !~ '^/' THEN
				RAISE EXCEPTION 'the location of a folder source must be an absolute path, not "%"', loc
					USING ERRCODE = 'invalid_parameter_value';
			END IF;
			loc := coalesce(nullif(regexp_replace(loc, '/+$', ''), ''), '/');
		WHEN 'oci' THEN
			loc := cdviz._source_check_oci(loc, options);
		WHEN 's3' THEN
			-- bucket names as S3 has known them (older ones have capitals, _)
			IF loc !~ '^s3://[A-Za-z0-9._-]{3,255}(/.*)?$' THEN
				RAISE EXCEPTION 'the location of an s3 source must be s3://bucket/prefix, not "%"', loc
					USING ERRCODE = 'invalid_parameter_value';
			END IF;
			IF loc !~ '^s3://[^/]*/' THEN
				loc := loc || '/';
			END IF;
		ELSE
			loc := regexp_replace(trim(loc), '\s*,\s*', ',', 'g');
			IF loc !~ list_re THEN
				RAISE EXCEPTION 'the location of a % source must be a comma-separated list of %, not "%"', kind,
					CASE kind WHEN 'nats' THEN 'at most 16 subjects' ELSE 'topics' END, location
					USING ERRCODE = 'invalid_parameter_value';
			END IF;
	END CASE;
	RETURN loc;
END
$$;
COMMENT ON FUNCTION cdviz.report_cdevents(jsonb, jsonb, text) IS
'cdviz: the events a source of format junit or tap stores without a transformer, made of the meta and body it hands a transformer (environment: the test runs'' environment.id; NULL: the suite''s hostname, else unknown). A body of more suites and cases than the max_report_cases of the source meta names (default 100000) raises SQLSTATE 54000. Executable by cdviz_reader, of which a transformer''s owner is a member. Example, in a transformer: RETURN QUERY SELECT e FROM cdviz.report_cdevents(meta, body, ''staging'') e;';
REVOKE EXECUTE ON FUNCTION cdviz.report_cdevents(jsonb, jsonb, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz.report_cdevents(jsonb, jsonb, text) TO cdviz_reader;
-- DORA per environment in one statement (44_read_api_dora.sql): the
-- environment filters of the deployment frequency and lead time stay index
-- conditions when the environment is a parameter, and the formulas shared
-- with cdviz.dora_by_environment become internal functions.

-- The rows of one environment, or of all when environment is NULL, as
-- two branches of which the planner keeps one: for a constant it drops the
-- other, for a parameter (a lateral call per environment) it gates the
-- other off once per call.  Written "environment IS NULL OR
-- environment_id = environment", the filter is no index condition when
-- environment is a parameter, and each such call reads the window of every
-- environment instead of its (environment_id, time) index range.
CREATE OR REPLACE FUNCTION cdviz._dora_environment_history(environment text)
RETURNS SETOF cdviz.environment_history
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT * FROM cdviz.environment_history AS h WHERE h.environment_id = environment
UNION ALL
SELECT * FROM cdviz.environment_history AS h WHERE environment IS NULL
$$;

COMMENT ON FUNCTION cdviz._dora_environment_history(text) IS
'cdviz: internal, for the DORA functions: the rows of cdviz.environment_history of one environment, or all of them when environment is NULL, in a form whose environment filter stays an index condition when the environment is a parameter';
REVOKE EXECUTE ON FUNCTION cdviz._dora_environment_history(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz._dora_environment_history(text) TO cdviz_reader;

CREATE OR REPLACE FUNCTION cdviz._dora_first_deployments(environment text)
RETURNS SETOF cdviz.first_deployments
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT * FROM cdviz.first_deployments AS f WHERE f.environment_id = environment
UNION ALL
SELECT * FROM cdviz.first_deployments AS f WHERE environment IS NULL
$$;

COMMENT ON FUNCTION cdviz._dora_first_deployments(text) IS
'cdviz: internal, for the DORA functions: the rows of cdviz.first_deployments of one environment, or all of them when environment is NULL, in a form whose environment filter stays an index condition when the environment is a parameter';
REVOKE EXECUTE ON FUNCTION cdviz._dora_first_deployments(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz._dora_first_deployments(text) TO cdviz_reader;

-- The share of part in total, NULL without a total: the change failure
-- rate's and the rework rate's.
CREATE OR REPLACE FUNCTION cdviz._dora_rate(part bigint, total bigint)
RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN round(part::numeric / nullif(total, 0), 4);

COMMENT ON FUNCTION cdviz._dora_rate(bigint, bigint) IS
'cdviz: internal, for cdviz.dora_change_failure_rate, cdviz.dora_rework_rate and cdviz.dora_by_environment: part / total rounded to 4 decimals, NULL when total is 0';
REVOKE EXECUTE ON FUNCTION cdviz._dora_rate(bigint, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz._dora_rate(bigint, bigint) TO cdviz_reader;

CREATE OR REPLACE FUNCTION cdviz.dora_deployment_frequency(from_ts timestamptz, to_ts timestamptz,
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
FROM (SELECT coalesce(sum(k.n), 0)::bigint AS n,
			 count(DISTINCT k.service_id) AS nsvc,
			 count(DISTINCT k.day) AS ndays,
			 extract(epoch FROM to_ts - from_ts) / 86400 AS days
	  -- counted per service and day first (hashed): the distinct counts
	  -- then sort those few rows, not every deployment
	  FROM (SELECT h.service_id, (h.valid_from AT TIME ZONE 'UTC')::date AS day, count(*) AS n
			FROM cdviz._dora_environment_history(environment) AS h
			WHERE h.valid_from >= from_ts AND h.valid_from < to_ts
			  AND h.predicate IN ('deployed', 'upgraded')
			  AND (service IS NULL OR h.service_id = service)
			GROUP BY h.service_id, (h.valid_from AT TIME ZONE 'UTC')::date) AS k) AS d
WHERE d.days > 0
$$;

CREATE OR REPLACE FUNCTION cdviz.dora_lead_time(from_ts timestamptz, to_ts timestamptz,
									 environment text DEFAULT NULL,
									 service text DEFAULT NULL)
RETURNS TABLE (median interval, p90 interval, sample_size bigint, unmatched bigint, tier text)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY s.lead_time),
	   percentile_cont(0.9) WITHIN GROUP (ORDER BY s.lead_time),
	   count(s.lead_time),
	   count(*) - count(s.lead_time),
	   CASE WHEN count(s.lead_time) = 0 THEN NULL
			WHEN percentile_cont(0.5) WITHIN GROUP (ORDER BY s.lead_time) < interval '1 day' THEN 'elite'
			WHEN percentile_cont(0.5) WITHIN GROUP (ORDER BY s.lead_time) < interval '7 days' THEN 'high'
			WHEN percentile_cont(0.5) WITHIN GROUP (ORDER BY s.lead_time) < interval '30 days' THEN 'medium'
			ELSE 'low' END
-- lead_time is NULL for an unmatched deployment (no change, or a change
-- after the deployment): the aggregates skip it, count(*) counts it
FROM (SELECT CASE WHEN f.deployed_at - f.changed_at >= interval '0'
				  THEN f.deployed_at - f.changed_at END AS lead_time
	  FROM cdviz._dora_first_deployments(environment) AS f
	  WHERE f.deployed_at >= from_ts AND f.deployed_at < to_ts
		AND (service IS NULL OR f.service_id = service)) AS s
$$;

CREATE OR REPLACE FUNCTION cdviz._dora_failure_rate_tier(failed bigint, deployments bigint)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN deployments = 0 THEN NULL
			WHEN failed::numeric / deployments <= 0.05 THEN 'elite'
			WHEN failed::numeric / deployments <= 0.10 THEN 'high'
			WHEN failed::numeric / deployments <= 0.15 THEN 'medium'
			ELSE 'low' END;

COMMENT ON FUNCTION cdviz._dora_failure_rate_tier(bigint, bigint) IS
'cdviz: internal, for cdviz.dora_change_failure_rate and cdviz.dora_by_environment: the DORA tier of failed out of deployments: elite <= 5%, high <= 10%, medium <= 15%, else low; NULL without deployments';
REVOKE EXECUTE ON FUNCTION cdviz._dora_failure_rate_tier(bigint, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz._dora_failure_rate_tier(bigint, bigint) TO cdviz_reader;

CREATE OR REPLACE FUNCTION cdviz.dora_change_failure_rate(from_ts timestamptz, to_ts timestamptz,
											   environment text DEFAULT NULL,
											   service text DEFAULT NULL)
RETURNS TABLE (rate numeric, failed bigint, deployments bigint, sample_size bigint, tier text)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
-- counted apart: the deployments from dora_change_failures without its
-- verdict column (an index-only scan), the failed ones from the signals
SELECT cdviz._dora_rate(f.n, t.n), f.n, t.n, t.n, cdviz._dora_failure_rate_tier(f.n, t.n)
FROM (SELECT count(*) AS n
	  FROM cdviz.dora_change_failures(from_ts, to_ts, environment, service)) AS t,
	 (SELECT count(*) AS n
	  FROM cdviz.dora_failed_deployments(from_ts, to_ts, environment, service)) AS f
$$;

-- The aggregate of the recovery times, apart so that
-- cdviz.dora_by_environment applies it to each environment's recoveries,
-- listed once for all environments.
CREATE OR REPLACE FUNCTION cdviz._dora_recovery_time(recovery_times interval[])
RETURNS TABLE (median interval, p90 interval, sample_size bigint, tier text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY r.recovery_time),
	   percentile_cont(0.9) WITHIN GROUP (ORDER BY r.recovery_time),
	   count(*),
	   cdviz._dora_recovery_tier(percentile_cont(0.5) WITHIN GROUP (ORDER BY r.recovery_time))
FROM unnest(recovery_times) AS r(recovery_time)
WHERE r.recovery_time >= interval '0'
$$;

COMMENT ON FUNCTION cdviz._dora_recovery_time(interval[]) IS
'cdviz: internal, for cdviz.dora_failed_deployment_recovery_time and cdviz.dora_by_environment: median, p90, sample_size and tier of the recovery times that are not negative (NULL elements and a NULL array count as none)';
REVOKE EXECUTE ON FUNCTION cdviz._dora_recovery_time(interval[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz._dora_recovery_time(interval[]) TO cdviz_reader;

CREATE OR REPLACE FUNCTION cdviz.dora_failed_deployment_recovery_time(from_ts timestamptz, to_ts timestamptz,
														   environment text DEFAULT NULL,
														   service text DEFAULT NULL)
RETURNS TABLE (median interval, p90 interval, sample_size bigint, tier text)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT t.*
FROM (SELECT array_agg(r.recovery_time) AS recovery_times
	  FROM cdviz.dora_failed_deployment_recoveries(from_ts, to_ts, environment, service) AS r) AS r
CROSS JOIN LATERAL cdviz._dora_recovery_time(r.recovery_times) AS t
$$;

CREATE OR REPLACE FUNCTION cdviz.dora_rework_rate(from_ts timestamptz, to_ts timestamptz,
									   environment text DEFAULT NULL,
									   service text DEFAULT NULL)
RETURNS TABLE (rate numeric, rework bigint, deployments bigint, sample_size bigint)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT cdviz._dora_rate(r.n, t.n), r.n, t.n, t.n
FROM (SELECT count(*) AS n
	  FROM cdviz.environment_history AS h
	  WHERE h.valid_from >= from_ts AND h.valid_from < to_ts
		AND h.predicate IN ('deployed', 'upgraded', 'rolledback')
		AND (environment IS NULL OR h.environment_id = environment)
		AND (service IS NULL OR h.service_id = service)) AS t,
	 (SELECT count(*) AS n
	  FROM cdviz.dora_rework(from_ts, to_ts, environment, service)) AS r
$$;

-- The metrics for every environment, one row each: what a "DORA per
-- environment" table shows, in one statement.  The
-- deployment frequency, lead time and time to restore are the functions
-- above called per environment: their environment filter stays an index
-- condition on the (environment_id, time) indexes, so each call reads the
-- window of its environment only.  What costs the same for one environment
-- as for all is listed once for all of them and counted per environment:
-- the failed deployments with their recoveries (the change failure rate's
-- failed deployments and the recovery time's sample; the failure signals
-- are found once), and the rework (its causes and their links).  The
-- change failure rate's deployments are the deployment frequency's (the
-- same deployed and upgraded events), and the rework rate's are those
-- plus the rollbacks (their partial index).
--
-- Without JIT: the statement's estimated cost grows with the range and
-- passes jit_above_cost at a few months, and compiling its many
-- expressions then takes longer than running it (a tenth of a second at
-- 90 days, over a second at a year).
CREATE OR REPLACE FUNCTION cdviz.dora_by_environment(from_ts timestamptz, to_ts timestamptz,
										  service text DEFAULT NULL)
RETURNS TABLE (environment_id text, deployments bigint, per_day_per_service numeric,
			   frequency_tier text, lead_time_median interval, lead_time_p90 interval,
			   lead_time_tier text, change_failure_rate numeric, failed_deployments bigint,
			   failure_rate_tier text, time_to_restore_median interval, incidents bigint,
			   restore_tier text, recovery_time_median interval, recovery_tier text,
			   rework_rate numeric)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
BEGIN
	RETURN QUERY
	WITH failed AS (
		SELECT r.environment_id, count(*) AS n, array_agg(r.recovery_time) AS recovery_times
		FROM cdviz.dora_failed_deployment_recoveries(from_ts, to_ts, NULL, service) AS r
		GROUP BY r.environment_id
	), rework AS (
		SELECT r.environment_id, count(*) AS n
		FROM cdviz.dora_rework(from_ts, to_ts, NULL, service) AS r
		GROUP BY r.environment_id
	), rollbacks AS (
		SELECT h.environment_id, count(*) AS n
		FROM cdviz.environment_history AS h
		WHERE h.valid_from >= from_ts AND h.valid_from < to_ts AND h.predicate = 'rolledback'
		  AND (service IS NULL OR h.service_id = service)
		GROUP BY h.environment_id
	)
	SELECT e.environment_id, df.deployments, df.per_day_per_service, df.tier,
		   lt.median, lt.p90, lt.tier,
		   cdviz._dora_rate(coalesce(f.n, 0), coalesce(df.deployments, 0)), coalesce(f.n, 0),
		   cdviz._dora_failure_rate_tier(coalesce(f.n, 0), coalesce(df.deployments, 0)),
		   ttr.median, ttr.sample_size, ttr.tier, fdrt.median, fdrt.tier,
		   cdviz._dora_rate(coalesce(rw.n, 0), coalesce(df.deployments, 0) + coalesce(rb.n, 0))
	FROM (SELECT DISTINCT i.environment_id FROM cdviz.environment_inventory AS i) AS e
	LEFT JOIN LATERAL cdviz.dora_deployment_frequency(from_ts, to_ts, e.environment_id, service) AS df ON true
	CROSS JOIN LATERAL cdviz.dora_lead_time(from_ts, to_ts, e.environment_id, service) AS lt
	CROSS JOIN LATERAL cdviz.dora_time_to_restore(from_ts, to_ts, e.environment_id, service) AS ttr
	LEFT JOIN failed AS f ON f.environment_id = e.environment_id
	CROSS JOIN LATERAL cdviz._dora_recovery_time(f.recovery_times) AS fdrt
	LEFT JOIN rework AS rw ON rw.environment_id = e.environment_id
	LEFT JOIN rollbacks AS rb ON rb.environment_id = e.environment_id
	ORDER BY e.environment_id;
END
$$;
