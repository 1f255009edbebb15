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
REVOKE EXECUTE ON FUNCTION cdviz.pipeline_runs_between(timestamptz, timestamptz, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz.pipeline_runs_between(timestamptz, timestamptz, interval) TO cdviz_reader;

CREATE VIEW cdviz.pipeline_runs AS
	SELECT * FROM cdviz.pipeline_runs_between('-infinity', 'infinity', '0');

COMMENT ON VIEW cdviz.pipeline_runs IS
'cdviz: every pipeline run, one row each (see cdviz.pipeline_runs_between for the columns). Every run ever stored: for a time window call cdviz.pipeline_runs_between(from, to).';
GRANT SELECT ON cdviz.pipeline_runs TO cdviz_reader;

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
REVOKE EXECUTE ON FUNCTION cdviz.task_runs_between(timestamptz, timestamptz, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz.task_runs_between(timestamptz, timestamptz, interval) TO cdviz_reader;

CREATE VIEW cdviz.task_runs AS
	SELECT * FROM cdviz.task_runs_between('-infinity', 'infinity', '0');

COMMENT ON VIEW cdviz.task_runs IS
'cdviz: every task run, one row each (columns: see cdviz.task_runs_between). Whole history: for a window call cdviz.task_runs_between(from, to).';
GRANT SELECT ON cdviz.task_runs TO cdviz_reader;

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
REVOKE EXECUTE ON FUNCTION cdviz.builds_between(timestamptz, timestamptz, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz.builds_between(timestamptz, timestamptz, interval) TO cdviz_reader;

CREATE VIEW cdviz.builds AS
	SELECT * FROM cdviz.builds_between('-infinity', 'infinity', '0');

COMMENT ON VIEW cdviz.builds IS
'cdviz: every build, one row each (columns: see cdviz.builds_between). Whole history: for a window call cdviz.builds_between(from, to).';
GRANT SELECT ON cdviz.builds TO cdviz_reader;

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
REVOKE EXECUTE ON FUNCTION cdviz.test_case_runs_between(timestamptz, timestamptz, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz.test_case_runs_between(timestamptz, timestamptz, interval) TO cdviz_reader;

CREATE VIEW cdviz.test_case_runs AS
	SELECT * FROM cdviz.test_case_runs_between('-infinity', 'infinity', '0');

COMMENT ON VIEW cdviz.test_case_runs IS
'cdviz: every test case run, one row each (columns: see cdviz.test_case_runs_between). Whole history: for a window call cdviz.test_case_runs_between(from, to).';
GRANT SELECT ON cdviz.test_case_runs TO cdviz_reader;

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
REVOKE EXECUTE ON FUNCTION cdviz.test_suite_runs_between(timestamptz, timestamptz, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz.test_suite_runs_between(timestamptz, timestamptz, interval) TO cdviz_reader;

CREATE VIEW cdviz.test_suite_runs AS
	SELECT * FROM cdviz.test_suite_runs_between('-infinity', 'infinity', '0');

COMMENT ON VIEW cdviz.test_suite_runs IS
'cdviz: every test suite run, one row each (columns: see cdviz.test_suite_runs_between). Whole history: for a window call cdviz.test_suite_runs_between(from, to).';
GRANT SELECT ON cdviz.test_suite_runs TO cdviz_reader;

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
GRANT SELECT ON cdviz.test_outputs TO cdviz_reader;
