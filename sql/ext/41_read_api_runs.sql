-- Read API, part 2: subjects with a run lifecycle (pipeline runs, task runs,
-- builds, test case runs, test suite runs) and test outputs.
--
-- Why a function per subject.  A view that groups events by subject id
-- cannot take a WHERE on its lifecycle columns (started_at is min() of a
-- group) down to the lake, so "the last 30 days" of such a view would read
-- the subject's whole history.  Each subject therefore has
-- cdviz.<subject>s_between(from_ts, to_ts, lookback): an inlinable SQL
-- function whose range is a plain qual on the lake's "timestamp", which
-- prunes the monthly partitions (at plan time for constants, at executor
-- start-up for now() - interval ...) and bounds the scan of the
-- (subject, predicate, "timestamp") index.  It returns every instance with
-- at least one event in [from_ts, to_ts), its lifecycle read from the events
-- in [from_ts - lookback, to_ts): a run that began shortly before the window
-- keeps its queued/started times as long as it began less than lookback
-- (default 1 day) before from_ts; events after to_ts are not seen.  The view
-- of the same name is the function over all time.
--
-- Columns that are not selected cost nothing: the planner drops unused
-- aggregates of an inlined subquery, so last_payload is only built when asked for.

CREATE FUNCTION cdviz.pipeline_runs_between(from_ts timestamptz, to_ts timestamptz,
											lookback interval DEFAULT '1 day')
RETURNS TABLE (pipeline_run_id text, source text, pipeline_name text,
			   queued_at timestamptz, started_at timestamptz, finished_at timestamptz,
			   queue_duration interval, run_duration interval, outcome text, errors text,
			   uri text, chain_id text, first_event_at timestamptz, last_event_at timestamptz,
			   last_predicate text, event_count bigint, last_payload jsonb)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT l.subject_id,
	   max(l.payload #>> '{subject,source}'),
	   max(l.payload #>> '{subject,content,pipelineName}'),
	   min(l."timestamp") FILTER (WHERE l.predicate = 'queued'),
	   min(l."timestamp") FILTER (WHERE l.predicate = 'started'),
	   max(l."timestamp") FILTER (WHERE l.predicate = 'finished'),
	   min(l."timestamp") FILTER (WHERE l.predicate = 'started')
		   - min(l."timestamp") FILTER (WHERE l.predicate = 'queued'),
	   max(l."timestamp") FILTER (WHERE l.predicate = 'finished')
		   - coalesce(min(l."timestamp") FILTER (WHERE l.predicate = 'started'),
					  min(l."timestamp") FILTER (WHERE l.predicate = 'queued')),
	   cdviz.normalize_outcome(max(l.payload #>> '{subject,content,outcome}') FILTER (WHERE l.predicate = 'finished')),
	   max(l.payload #>> '{subject,content,errors}') FILTER (WHERE l.predicate = 'finished'),
	   max(coalesce(l.payload #>> '{subject,content,uri}', l.payload #>> '{subject,content,url}')),
	   max(l.chain_id),
	   min(l."timestamp"), max(l."timestamp"),
	   (array_agg(l.predicate ORDER BY l."timestamp" DESC, l.id DESC))[1],
	   count(*),
	   (array_agg(l.payload ORDER BY l."timestamp" DESC, l.id DESC))[1]
FROM cdviz.cdevents_lake AS l
WHERE l.subject = 'pipelinerun' AND l.predicate IN ('queued', 'started', 'finished')
  AND l."timestamp" >= from_ts - lookback AND l."timestamp" < to_ts
GROUP BY l.subject_id
HAVING max(l."timestamp") >= from_ts
$$;

COMMENT ON FUNCTION cdviz.pipeline_runs_between(timestamptz, timestamptz, interval) IS
'cdviz: one row per pipeline run with an event in [from_ts, to_ts): queued/started/finished times, queue_duration (queued to started), run_duration (started, else queued, to finished), outcome (success/failure/cancel/error), errors, uri (0.5 uri or 0.3/0.4 url). Lifecycle events are read back to from_ts - lookback. Prunes partitions: use it rather than cdviz.pipeline_runs for a time window.';

CREATE VIEW cdviz.pipeline_runs AS
	SELECT * FROM cdviz.pipeline_runs_between('-infinity', 'infinity', '0');

COMMENT ON VIEW cdviz.pipeline_runs IS
'cdviz: every pipeline run, one row each (see cdviz.pipeline_runs_between for the columns). Reads the whole history of pipelinerun events: for a time window call cdviz.pipeline_runs_between(from, to).';

CREATE FUNCTION cdviz.task_runs_between(from_ts timestamptz, to_ts timestamptz,
										lookback interval DEFAULT '1 day')
RETURNS TABLE (task_run_id text, source text, task_name text, pipeline_run_id text,
			   started_at timestamptz, finished_at timestamptz, run_duration interval,
			   outcome text, errors text, uri text, chain_id text,
			   first_event_at timestamptz, last_event_at timestamptz, last_predicate text,
			   event_count bigint, last_payload jsonb)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT l.subject_id,
	   max(l.payload #>> '{subject,source}'),
	   max(l.payload #>> '{subject,content,taskName}'),
	   max(l.payload #>> '{subject,content,pipelineRun,id}'),
	   min(l."timestamp") FILTER (WHERE l.predicate = 'started'),
	   max(l."timestamp") FILTER (WHERE l.predicate = 'finished'),
	   max(l."timestamp") FILTER (WHERE l.predicate = 'finished')
		   - min(l."timestamp") FILTER (WHERE l.predicate = 'started'),
	   cdviz.normalize_outcome(max(l.payload #>> '{subject,content,outcome}') FILTER (WHERE l.predicate = 'finished')),
	   max(l.payload #>> '{subject,content,errors}') FILTER (WHERE l.predicate = 'finished'),
	   max(coalesce(l.payload #>> '{subject,content,uri}', l.payload #>> '{subject,content,url}')),
	   max(l.chain_id),
	   min(l."timestamp"), max(l."timestamp"),
	   (array_agg(l.predicate ORDER BY l."timestamp" DESC, l.id DESC))[1],
	   count(*),
	   (array_agg(l.payload ORDER BY l."timestamp" DESC, l.id DESC))[1]
FROM cdviz.cdevents_lake AS l
WHERE l.subject = 'taskrun' AND l.predicate IN ('started', 'finished')
  AND l."timestamp" >= from_ts - lookback AND l."timestamp" < to_ts
GROUP BY l.subject_id
HAVING max(l."timestamp") >= from_ts
$$;

COMMENT ON FUNCTION cdviz.task_runs_between(timestamptz, timestamptz, interval) IS
'cdviz: one row per task run with an event in [from_ts, to_ts): task name, the pipeline run it belongs to, started/finished times, run_duration, outcome, errors, uri (uri or url). Lifecycle read back to from_ts - lookback; prunes partitions.';

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
SELECT l.subject_id,
	   max(l.payload #>> '{subject,source}'),
	   min(l."timestamp") FILTER (WHERE l.predicate = 'queued'),
	   min(l."timestamp") FILTER (WHERE l.predicate = 'started'),
	   max(l."timestamp") FILTER (WHERE l.predicate = 'finished'),
	   min(l."timestamp") FILTER (WHERE l.predicate = 'started')
		   - min(l."timestamp") FILTER (WHERE l.predicate = 'queued'),
	   max(l."timestamp") FILTER (WHERE l.predicate = 'finished')
		   - coalesce(min(l."timestamp") FILTER (WHERE l.predicate = 'started'),
					  min(l."timestamp") FILTER (WHERE l.predicate = 'queued')),
	   max(l.payload #>> '{subject,content,artifactId}') FILTER (WHERE l.predicate = 'finished'),
	   max(l.chain_id),
	   min(l."timestamp"), max(l."timestamp"),
	   (array_agg(l.predicate ORDER BY l."timestamp" DESC, l.id DESC))[1],
	   count(*),
	   (array_agg(l.payload ORDER BY l."timestamp" DESC, l.id DESC))[1]
FROM cdviz.cdevents_lake AS l
WHERE l.subject = 'build' AND l.predicate IN ('queued', 'started', 'finished')
  AND l."timestamp" >= from_ts - lookback AND l."timestamp" < to_ts
GROUP BY l.subject_id
HAVING max(l."timestamp") >= from_ts
$$;

COMMENT ON FUNCTION cdviz.builds_between(timestamptz, timestamptz, interval) IS
'cdviz: one row per build with an event in [from_ts, to_ts): queued/started/finished times and durations, the artifact the finished build produced. CDEvents builds carry no outcome. Lifecycle read back to from_ts - lookback; prunes partitions.';

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
SELECT l.subject_id,
	   max(l.payload #>> '{subject,source}'),
	   max(l.payload #>> '{subject,content,testCase,id}'),
	   max(l.payload #>> '{subject,content,testCase,name}'),
	   max(l.payload #>> '{subject,content,testCase,version}'),
	   max(l.payload #>> '{subject,content,testCase,type}'),
	   max(coalesce(l.payload #>> '{subject,content,testCase,uri}', l.payload #>> '{subject,content,testCase,url}')),
	   max(l.payload #>> '{subject,content,testSuiteRun,id}'),
	   max(l.payload #>> '{subject,content,environment,id}'),
	   max(l.payload #>> '{subject,content,trigger,type}'),
	   max(l.payload #>> '{subject,content,trigger,uri}'),
	   min(l."timestamp") FILTER (WHERE l.predicate = 'queued'),
	   min(l."timestamp") FILTER (WHERE l.predicate = 'started'),
	   max(l."timestamp") FILTER (WHERE l.predicate = 'finished'),
	   max(l."timestamp") FILTER (WHERE l.predicate = 'skipped'),
	   min(l."timestamp") FILTER (WHERE l.predicate = 'started')
		   - min(l."timestamp") FILTER (WHERE l.predicate = 'queued'),
	   max(l."timestamp") FILTER (WHERE l.predicate = 'finished')
		   - min(l."timestamp") FILTER (WHERE l.predicate = 'started'),
	   coalesce(cdviz.normalize_outcome(max(l.payload #>> '{subject,content,outcome}') FILTER (WHERE l.predicate = 'finished')),
				CASE WHEN bool_or(l.predicate = 'skipped') THEN 'skipped' END),
	   max(l.payload #>> '{subject,content,severity}') FILTER (WHERE l.predicate = 'finished'),
	   max(l.payload #>> '{subject,content,reason}') FILTER (WHERE l.predicate IN ('finished', 'skipped')),
	   max(l.chain_id),
	   min(l."timestamp"), max(l."timestamp"),
	   (array_agg(l.predicate ORDER BY l."timestamp" DESC, l.id DESC))[1],
	   count(*),
	   (array_agg(l.payload ORDER BY l."timestamp" DESC, l.id DESC))[1]
FROM cdviz.cdevents_lake AS l
WHERE l.subject = 'testcaserun' AND l.predicate IN ('queued', 'started', 'finished', 'skipped')
  AND l."timestamp" >= from_ts - lookback AND l."timestamp" < to_ts
GROUP BY l.subject_id
HAVING max(l."timestamp") >= from_ts
$$;

COMMENT ON FUNCTION cdviz.test_case_runs_between(timestamptz, timestamptz, interval) IS
'cdviz: one row per test case run with an event in [from_ts, to_ts): the test case (id, name, version, type, uri), its suite run, environment, trigger, queued/started/finished/skipped times, durations, outcome (success/failure/cancel/error, pass/fail normalised; skipped for a skipped run), severity, reason. Lifecycle read back to from_ts - lookback; prunes partitions.';

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
SELECT l.subject_id,
	   max(l.payload #>> '{subject,source}'),
	   max(l.payload #>> '{subject,content,testSuite,id}'),
	   max(l.payload #>> '{subject,content,testSuite,name}'),
	   max(l.payload #>> '{subject,content,testSuite,version}'),
	   max(coalesce(l.payload #>> '{subject,content,testSuite,uri}', l.payload #>> '{subject,content,testSuite,url}')),
	   max(l.payload #>> '{subject,content,environment,id}'),
	   max(l.payload #>> '{subject,content,trigger,type}'),
	   max(l.payload #>> '{subject,content,trigger,uri}'),
	   min(l."timestamp") FILTER (WHERE l.predicate = 'queued'),
	   min(l."timestamp") FILTER (WHERE l.predicate = 'started'),
	   max(l."timestamp") FILTER (WHERE l.predicate = 'finished'),
	   min(l."timestamp") FILTER (WHERE l.predicate = 'started')
		   - min(l."timestamp") FILTER (WHERE l.predicate = 'queued'),
	   max(l."timestamp") FILTER (WHERE l.predicate = 'finished')
		   - min(l."timestamp") FILTER (WHERE l.predicate = 'started'),
	   cdviz.normalize_outcome(max(l.payload #>> '{subject,content,outcome}') FILTER (WHERE l.predicate = 'finished')),
	   max(l.payload #>> '{subject,content,severity}') FILTER (WHERE l.predicate = 'finished'),
	   max(l.payload #>> '{subject,content,reason}') FILTER (WHERE l.predicate = 'finished'),
	   max(l.chain_id),
	   min(l."timestamp"), max(l."timestamp"),
	   (array_agg(l.predicate ORDER BY l."timestamp" DESC, l.id DESC))[1],
	   count(*),
	   (array_agg(l.payload ORDER BY l."timestamp" DESC, l.id DESC))[1]
FROM cdviz.cdevents_lake AS l
WHERE l.subject = 'testsuiterun' AND l.predicate IN ('queued', 'started', 'finished')
  AND l."timestamp" >= from_ts - lookback AND l."timestamp" < to_ts
GROUP BY l.subject_id
HAVING max(l."timestamp") >= from_ts
$$;

COMMENT ON FUNCTION cdviz.test_suite_runs_between(timestamptz, timestamptz, interval) IS
'cdviz: one row per test suite run with an event in [from_ts, to_ts): the suite (id, name, version, uri or url), environment, trigger, queued/started/finished times, durations, outcome (pass/fail normalised to success/failure), severity, reason. Lifecycle read back to from_ts - lookback; prunes partitions.';

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
