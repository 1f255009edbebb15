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
-- artifact_changes, change_times, event_links) and the summaries.  Its
-- callers only say which rows:
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
			chain_id = GREATEST(s.chain_id, excluded.chain_id),
			first_event_at = LEAST(s.first_event_at, excluded.first_event_at),
			last_event_at = GREATEST(s.last_event_at, excluded.last_event_at),
			last_event_id = CASE WHEN (excluded.last_event_at, excluded.last_event_id) > (s.last_event_at, s.last_event_id)
								 THEN excluded.last_event_id ELSE s.last_event_id END,
			last_predicate = CASE WHEN (excluded.last_event_at, excluded.last_event_id) > (s.last_event_at, s.last_event_id)
								  THEN excluded.last_predicate ELSE s.last_predicate END,
			event_count = s.event_count + excluded.event_count;
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
			chain_id = GREATEST(s.chain_id, excluded.chain_id),
			first_event_at = LEAST(s.first_event_at, excluded.first_event_at),
			last_event_at = GREATEST(s.last_event_at, excluded.last_event_at),
			last_event_id = CASE WHEN (excluded.last_event_at, excluded.last_event_id) > (s.last_event_at, s.last_event_id)
								 THEN excluded.last_event_id ELSE s.last_event_id END,
			last_predicate = CASE WHEN (excluded.last_event_at, excluded.last_event_id) > (s.last_event_at, s.last_event_id)
								  THEN excluded.last_predicate ELSE s.last_predicate END,
			event_count = s.event_count + excluded.event_count;
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
			chain_id = GREATEST(s.chain_id, excluded.chain_id),
			first_event_at = LEAST(s.first_event_at, excluded.first_event_at),
			last_event_at = GREATEST(s.last_event_at, excluded.last_event_at),
			last_event_id = CASE WHEN (excluded.last_event_at, excluded.last_event_id) > (s.last_event_at, s.last_event_id)
								 THEN excluded.last_event_id ELSE s.last_event_id END,
			last_predicate = CASE WHEN (excluded.last_event_at, excluded.last_event_id) > (s.last_event_at, s.last_event_id)
								  THEN excluded.last_predicate ELSE s.last_predicate END,
			event_count = s.event_count + excluded.event_count;
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
			chain_id = GREATEST(s.chain_id, excluded.chain_id),
			first_event_at = LEAST(s.first_event_at, excluded.first_event_at),
			last_event_at = GREATEST(s.last_event_at, excluded.last_event_at),
			last_event_id = CASE WHEN (excluded.last_event_at, excluded.last_event_id) > (s.last_event_at, s.last_event_id)
								 THEN excluded.last_event_id ELSE s.last_event_id END,
			last_predicate = CASE WHEN (excluded.last_event_at, excluded.last_event_id) > (s.last_event_at, s.last_event_id)
								  THEN excluded.last_predicate ELSE s.last_predicate END,
			event_count = s.event_count + excluded.event_count;
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
			chain_id = GREATEST(s.chain_id, excluded.chain_id),
			first_event_at = LEAST(s.first_event_at, excluded.first_event_at),
			last_event_at = GREATEST(s.last_event_at, excluded.last_event_at),
			last_event_id = CASE WHEN (excluded.last_event_at, excluded.last_event_id) > (s.last_event_at, s.last_event_id)
								 THEN excluded.last_event_id ELSE s.last_event_id END,
			last_predicate = CASE WHEN (excluded.last_event_at, excluded.last_event_id) > (s.last_event_at, s.last_event_id)
								  THEN excluded.last_predicate ELSE s.last_predicate END,
			event_count = s.event_count + excluded.event_count;
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
			chain_id = GREATEST(s.chain_id, excluded.chain_id),
			first_event_at = LEAST(s.first_event_at, excluded.first_event_at),
			last_event_at = GREATEST(s.last_event_at, excluded.last_event_at),
			last_event_id = CASE WHEN (excluded.last_event_at, excluded.last_event_id) > (s.last_event_at, s.last_event_id)
								 THEN excluded.last_event_id ELSE s.last_event_id END,
			last_predicate = CASE WHEN (excluded.last_event_at, excluded.last_event_id) > (s.last_event_at, s.last_event_id)
								  THEN excluded.last_predicate ELSE s.last_predicate END,
			event_count = s.event_count + excluded.event_count;
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
			chain_id = GREATEST(s.chain_id, excluded.chain_id),
			first_event_at = LEAST(s.first_event_at, excluded.first_event_at),
			last_event_at = GREATEST(s.last_event_at, excluded.last_event_at),
			last_event_id = CASE WHEN (excluded.last_event_at, excluded.last_event_id) > (s.last_event_at, s.last_event_id)
								 THEN excluded.last_event_id ELSE s.last_event_id END,
			last_predicate = CASE WHEN (excluded.last_event_at, excluded.last_event_id) > (s.last_event_at, s.last_event_id)
								  THEN excluded.last_predicate ELSE s.last_predicate END,
			event_count = s.event_count + excluded.event_count;
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
			chain_id = GREATEST(s.chain_id, excluded.chain_id),
			first_event_at = LEAST(s.first_event_at, excluded.first_event_at),
			last_event_at = GREATEST(s.last_event_at, excluded.last_event_at),
			last_event_id = CASE WHEN (excluded.last_event_at, excluded.last_event_id) > (s.last_event_at, s.last_event_id)
								 THEN excluded.last_event_id ELSE s.last_event_id END,
			last_predicate = CASE WHEN (excluded.last_event_at, excluded.last_event_id) > (s.last_event_at, s.last_event_id)
								  THEN excluded.last_predicate ELSE s.last_predicate END,
			event_count = s.event_count + excluded.event_count;
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
			chain_id = GREATEST(s.chain_id, excluded.chain_id),
			first_event_at = LEAST(s.first_event_at, excluded.first_event_at),
			last_event_at = GREATEST(s.last_event_at, excluded.last_event_at),
			last_event_id = CASE WHEN (excluded.last_event_at, excluded.last_event_id) > (s.last_event_at, s.last_event_id)
								 THEN excluded.last_event_id ELSE s.last_event_id END,
			last_predicate = CASE WHEN (excluded.last_event_at, excluded.last_event_id) > (s.last_event_at, s.last_event_id)
								  THEN excluded.last_predicate ELSE s.last_predicate END,
			event_count = s.event_count + excluded.event_count;
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
'cdviz: internal: folds the lake rows of events into the summary tables (pipeline/task/test case/test suite run, build, artifact, change and incident summaries, event_counts_hourly, test_case_outcomes_daily) and, when derived, into first_deployments, artifact_changes, change_times and event_links, grouped per key, one set-based statement per table, each run only when the rows hold its subject; order-independent merge rules (see cdviz.pipeline_run_summaries). Called by cdviz.lake_maintain(), cdviz.fold_queued_summaries() and cdviz.summaries_fold().';

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
		-- locks no SQL role can take (src/store/locks.c): a read-only role
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
'cdviz: statement-level AFTER INSERT trigger of cdviz.cdevents_lake: folds the stored events of the statement into environment_history and environment_state; then, with cdviz.summaries = deferred (in the summaries worker''s database), queues them in cdviz.summary_queue for cdviz.fold_queued_summaries(), else folds them at once into the derived tables (first_deployments, artifact_changes, change_times, event_links) and, grouped per key, into the summary tables (pipeline/task/test case/test suite run, build, artifact, change and incident summaries, event_counts_hourly, test_case_outcomes_daily) with one set-based statement per table, each run only when the statement stored events of its subject; order-independent merge rules (see cdviz.pipeline_run_summaries). SECURITY DEFINER so that writers need no privilege on them.';

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
