-- Read API over the fixture timeline (test/fixtures/timeline.sql): every
-- view, the inventory now and in the past, the DORA figures, lineage and
-- the spec-version normalisation, each value worked out by hand below.
-- Window of the DORA figures: [2024-03-01, 2024-03-31), 30 days.
BEGIN;
SET LOCAL timezone = 'UTC';
\ir ../fixtures/timeline.sql

CREATE FUNCTION pg_temp.table_rows(t text)
RETURNS SETOF jsonb LANGUAGE plpgsql AS $$
BEGIN
	RETURN QUERY EXECUTE format('SELECT to_jsonb(x) FROM cdviz.%I AS x', t);
END
$$;
CREATE FUNCTION pg_temp.explain_lines(query text)
RETURNS SETOF text
LANGUAGE plpgsql
AS $$
BEGIN
	RETURN QUERY EXECUTE 'EXPLAIN (COSTS OFF) ' || query;
END
$$;

SELECT plan(76);

-- ---------------------------------------------------------------- the lake
SELECT is((SELECT count(*) FROM cdviz.cdevents_lake),
		  (SELECT count(*) - 1 FROM fixture_events),
		  'every fixture event stored once (the retransmitted dev/web deployment only once)');
SELECT set_eq('SELECT DISTINCT spec_version FROM cdviz.cdevents_lake',
			  ARRAY['0.3.0', '0.4.1', '0.5.1'], 'events of the three spec versions');
SELECT results_eq($$SELECT subject, predicate, subject_id FROM cdviz.cdevents_lake WHERE type LIKE 'dev.cdeventsx.%'$$,
				  $$VALUES ('mytool-resource'::text, 'created'::text, 'res-1'::text)$$,
				  'the custom event is stored under its <tool>-<subject>');

-- ------------------------------------------------------------- inventory
-- prod/api: A1 (03-03), A2 (03-08), rollback to A1 (03-08 14:00), A2 (03-12),
-- A3 (03-22, delivered before the two previous ones).  prod/worker: removed
-- 03-25, delivered before its deployment of 03-13.  staging/web: W2 (03-16)
-- delivered before the older removal (03-10) and deployment of W1 (03-05).
SELECT results_eq(
	$$SELECT environment_id, service_id, artifact_id, deployed_at, deployed_by, previous_artifact_id
	  FROM cdviz.environment_inventory ORDER BY environment_id, service_id$$,
	$$VALUES
	  ('dev', 'api', 'pkg:oci/api@sha256%3Aaaa3', '2024-03-20 14:00Z'::timestamptz, 'upgraded', 'pkg:oci/api@sha256%3Aaaa2'),
	  ('dev', 'web', 'pkg:maven/com.example/web@1.1.0', '2024-03-15 12:00Z', 'upgraded', 'pkg:maven/com.example/web@1.0.0'),
	  ('dev', 'worker', 'pkg:helm/charts/worker@0.1.0', '2024-03-11 11:00Z', 'deployed', NULL),
	  ('prod', 'api', 'pkg:oci/api@sha256%3Aaaa3', '2024-03-22 12:00Z', 'upgraded', 'pkg:oci/api@sha256%3Aaaa2'),
	  ('prod', 'web', 'pkg:maven/com.example/web@1.1.0', '2024-03-18 12:00Z', 'upgraded', 'pkg:maven/com.example/web@1.0.0'),
	  ('staging', 'api', 'pkg:oci/api@sha256%3Aaaa2', '2024-03-06 09:00Z', 'upgraded', 'pkg:oci/api@sha256%3Aaaa1'),
	  ('staging', 'web', 'pkg:maven/com.example/web@1.1.0', '2024-03-16 09:00Z', 'deployed', 'pkg:maven/com.example/web@1.0.0')$$,
	'inventory now: out-of-order deliveries never overwrite a newer state, the removed worker is gone');
SELECT results_eq(
	$$SELECT package_type, package_namespace, package_name, version FROM cdviz.environment_inventory
	  WHERE environment_id IN ('prod', 'dev') ORDER BY environment_id, service_id$$,
	$$VALUES ('oci', NULL, 'api', 'sha256:aaa3'), ('maven', 'com.example', 'web', '1.1.0'),
			 ('helm', 'charts', 'worker', '0.1.0'),
			 ('oci', NULL, 'api', 'sha256:aaa3'), ('maven', 'com.example', 'web', '1.1.0')$$,
	'inventory parses package and version out of the purl');
SELECT results_eq(
	$$SELECT predicate, artifact_id, updated_at FROM cdviz.environment_state
	  WHERE environment_id = 'prod' AND service_id = 'worker'$$,
	$$VALUES ('removed'::text, NULL::text, '2024-03-25 12:00Z'::timestamptz)$$,
	'an older deployment delivered after the removal does not bring the service back');
SELECT results_eq(
	$$SELECT environment_id, service_id, artifact_id, deployed_by, previous_artifact_id
	  FROM cdviz.environment_inventory_at('2024-03-08 14:30Z') ORDER BY 1, 2$$,
	$$VALUES ('dev', 'api', 'pkg:oci/api@sha256%3Aaaa2', 'upgraded', 'pkg:oci/api@sha256%3Aaaa1'),
			 ('dev', 'web', 'pkg:maven/com.example/web@1.0.0', 'deployed', NULL),
			 ('prod', 'api', 'pkg:oci/api@sha256%3Aaaa1', 'rolledback', 'pkg:oci/api@sha256%3Aaaa2'),
			 ('prod', 'web', 'pkg:maven/com.example/web@1.0.0', 'deployed', NULL),
			 ('staging', 'api', 'pkg:oci/api@sha256%3Aaaa2', 'upgraded', 'pkg:oci/api@sha256%3Aaaa1'),
			 ('staging', 'web', 'pkg:maven/com.example/web@1.0.0', 'deployed', NULL)$$,
	'inventory at 03-08 14:30: prod/api rolled back to A1, worker not deployed yet');
SELECT set_eq(
	$$SELECT environment_id || '/' || service_id FROM cdviz.environment_inventory_at('2024-03-11 00:00Z')$$,
	ARRAY['dev/api', 'dev/web', 'prod/api', 'prod/web', 'staging/api'],
	'inventory at 03-11: staging/web removed on 03-10');
SELECT results_eq(
	$$SELECT artifact_id, deployed_at FROM cdviz.environment_inventory_at('2024-03-13 12:00Z')
	  WHERE environment_id = 'prod' AND service_id = 'worker'$$,
	$$VALUES ('pkg:helm/charts/worker@0.1.0'::text, '2024-03-13 12:00Z'::timestamptz)$$,
	'inventory at 03-13 12:00 includes the worker deployed at that very instant');
SELECT set_eq(
	$$SELECT environment_id || '/' || service_id FROM cdviz.environment_inventory_at('2024-03-26 00:00Z')$$,
	$$SELECT environment_id || '/' || service_id FROM cdviz.environment_inventory$$,
	'inventory at 03-26 equals the current one');
SELECT is((SELECT deployed_at FROM cdviz.first_deployments
		   WHERE environment_id = 'prod' AND artifact_id = 'pkg:oci/api@sha256%3Aaaa2'),
		  '2024-03-08 12:00Z'::timestamptz,
		  'first deployment of A2 in prod is 03-08, not the re-upgrade of 03-12 delivered later');
SELECT results_eq(
	$$SELECT change_id, changed_at FROM cdviz.first_deployments
	  WHERE environment_id = 'prod' AND artifact_id IN ('pkg:oci/api@sha256%3Aaaa3', 'pkg:maven/com.example/web@1.1.0')
	  ORDER BY artifact_id$$,
	$$VALUES ('org/web/pull/5'::text, '2024-03-15 10:00Z'::timestamptz), ('org/api/pull/6', '2024-03-20 12:00Z')$$,
	'first deployments learn their change when packaging or change events arrive after them');

-- ------------------------------------------------------------------ DORA
-- Deployment frequency, prod: p1 03-03, p2 03-04, p3 03-08, p4 03-12,
-- p5 03-13, p6 03-18, p7 03-22 = 7 (the rollback is not a delivery) by 3
-- services over 30 days: 0.233/day, 1.633/week, 0.078/day/service, i.e.
-- 0.54/week/service (< 1: not high) and 2.33/month/service: medium.
SELECT results_eq(
	$$SELECT * FROM cdviz.dora_deployment_frequency('2024-03-01Z', '2024-03-31Z', 'prod')$$,
	$$VALUES (7::bigint, 3::bigint, 30.000::numeric, 0.233::numeric, 1.633::numeric, 0.078::numeric,
			  7::bigint, 7::bigint, 'medium'::text)$$,
	'deployment frequency in prod');
-- All environments: dev 6 + staging 4 + prod 7 = 17 on 15 distinct days;
-- 17 / 30 / 3 = 0.189/day/service = 1.32/week/service: high.
SELECT results_eq(
	$$SELECT * FROM cdviz.dora_deployment_frequency('2024-03-01Z', '2024-03-31Z')$$,
	$$VALUES (17::bigint, 3::bigint, 30.000::numeric, 0.567::numeric, 3.967::numeric, 0.189::numeric,
			  15::bigint, 17::bigint, 'high'::text)$$,
	'deployment frequency everywhere');
SELECT results_eq(
	$$SELECT deployments, per_week, tier FROM cdviz.dora_deployment_frequency('2024-03-01Z', '2024-03-31Z', 'prod', 'api')$$,
	$$VALUES (4::bigint, 0.933::numeric, 'medium'::text)$$,
	'deployment frequency of api in prod');
-- Lead time, prod: first deployment of each artifact minus its change's
-- merge (created for the never-merged org/web/pull/2):
--   A1 03-03 12:00 - 03-01 12:00 = 48h    W1 03-04 12:00 - 03-02 10:00 = 50h
--   A2 03-08 12:00 - 03-05 10:00 = 74h    K1 03-13 12:00 - 03-11 09:00 = 51h
--   W2 03-18 12:00 - 03-15 10:00 = 74h    A3 03-22 12:00 - 03-20 12:00 = 48h
-- sorted 48 48 50 51 74 74: median (50 + 51) / 2 = 50h30, p90 at rank 4.5
-- = 74h; median between a day and a week: high.
SELECT results_eq(
	$$SELECT * FROM cdviz.dora_lead_time('2024-03-01Z', '2024-03-31Z', 'prod')$$,
	$$VALUES (interval '50 hours 30 minutes', interval '74 hours', 6::bigint, 0::bigint, 'high'::text)$$,
	'lead time for changes in prod');
-- api in prod: 48 48 74: median 48h, p90 at rank 1.8 = 48 + 0.8 * 26 = 68h48.
SELECT results_eq(
	$$SELECT * FROM cdviz.dora_lead_time('2024-03-01Z', '2024-03-31Z', 'prod', 'api')$$,
	$$VALUES (interval '48 hours', interval '68 hours 48 minutes', 3::bigint, 0::bigint, 'high'::text)$$,
	'lead time for changes of api in prod');
-- dev: every artifact reached dev two hours after its change: elite.
SELECT results_eq(
	$$SELECT * FROM cdviz.dora_lead_time('2024-03-01Z', '2024-03-31Z', 'dev')$$,
	$$VALUES (interval '2 hours', interval '2 hours', 6::bigint, 0::bigint, 'elite'::text)$$,
	'lead time for changes in dev');
-- Change failure rate, prod: p3 (A2, 03-08) is followed by incident-1 and
-- the rollback before p4; p5 (worker) by incident-2; p6 (web) by
-- incident-3 with no later web deployment.  p1, p2, p4, p7 are clean;
-- incident-4 names no service and is not attributed.  3 / 7 = 42.86%: low.
SELECT results_eq(
	$$SELECT * FROM cdviz.dora_change_failure_rate('2024-03-01Z', '2024-03-31Z', 'prod')$$,
	$$VALUES (0.4286::numeric, 3::bigint, 7::bigint, 7::bigint, 'low'::text)$$,
	'change failure rate in prod');
SELECT results_eq(
	$$SELECT * FROM cdviz.dora_change_failure_rate('2024-03-01Z', '2024-03-31Z', 'prod', 'api')$$,
	$$VALUES (0.2500::numeric, 1::bigint, 4::bigint, 4::bigint, 'low'::text)$$,
	'change failure rate of api in prod');
SELECT results_eq(
	$$SELECT * FROM cdviz.dora_change_failure_rate('2024-03-01Z', '2024-03-31Z', 'dev')$$,
	$$VALUES (0.0000::numeric, 0::bigint, 6::bigint, 6::bigint, 'elite'::text)$$,
	'change failure rate in dev');
SELECT results_eq(
	$$SELECT * FROM cdviz.dora_change_failure_rate('2024-03-09Z', '2024-03-31Z', 'prod', 'api')$$,
	$$VALUES (0.0000::numeric, 0::bigint, 2::bigint, 2::bigint, 'elite'::text)$$,
	'change failure rate of api in prod after the rollback: p4 and p7 only');
-- [03-01, 03-20): p1..p6; p6 (03-18) fails through incident-3 of 03-26,
-- after the range but before any later web deployment: 3 / 6.
SELECT results_eq(
	$$SELECT * FROM cdviz.dora_change_failure_rate('2024-03-01Z', '2024-03-20Z', 'prod')$$,
	$$VALUES (0.5000::numeric, 3::bigint, 6::bigint, 6::bigint, 'low'::text)$$,
	'a failure signal after the range still fails a deployment of the range');
-- Per deployment: which prod deployments failed (p3, p5, p6), and a verdict
-- that does not depend on the range asked: the trailing-window counts of
-- one long call equal the rate function over each window
SELECT results_eq(
	$$SELECT count(*) FILTER (WHERE failed), count(*)
	  FROM cdviz.dora_change_failures('2024-03-01Z', '2024-03-31Z', 'prod')$$,
	$$VALUES (3::bigint, 7::bigint)$$,
	'dora_change_failures lists the 7 prod deployments, 3 of them failed');
SELECT is_empty(
	$$SELECT d FROM generate_series(timestamptz '2024-03-02Z', '2024-03-31Z', interval '1 day') AS d
	  CROSS JOIN (VALUES ('prod'), ('dev'), ('staging')) AS e(env)
	  CROSS JOIN LATERAL cdviz.dora_change_failure_rate(d - interval '7 days', d, e.env) AS r
	  CROSS JOIN LATERAL (SELECT count(*) FILTER (WHERE c.failed) AS failed, count(*) AS deployments
						  FROM cdviz.dora_change_failures('2024-02-20Z', '2024-04-01Z', e.env) AS c
						  WHERE c.deployed_at >= d - interval '7 days' AND c.deployed_at < d) AS w
	  WHERE (r.failed, r.deployments) IS DISTINCT FROM (w.failed, w.deployments)$$,
	'one call of dora_change_failures gives every trailing 7-day window the rate function gives');
-- Time to restore: incident-1 13:00 -> 15:00 = 2h (detected before
-- reported), incident-2 30 min, incident-3 reported -> resolved 24h,
-- incident-4 4h.  Sorted 0.5 2 4 24: median 3h, p90 at rank 2.7 =
-- 4 + 0.7 * 20 = 18h; median under a day: high.
SELECT results_eq(
	$$SELECT * FROM cdviz.dora_time_to_restore('2024-03-01Z', '2024-03-31Z')$$,
	$$VALUES (interval '3 hours', interval '18 hours', 4::bigint, 'high'::text)$$,
	'time to restore service');
SELECT results_eq(
	$$SELECT * FROM cdviz.dora_time_to_restore('2024-03-01Z', '2024-03-31Z', 'prod', 'worker')$$,
	$$VALUES (interval '30 minutes', interval '30 minutes', 1::bigint, 'elite'::text)$$,
	'time to restore of the worker');
SELECT is((SELECT count(*) FROM cdviz.dora_thresholds), 21::bigint,
		  'four tiers for each of five metrics, and one row saying rework rate has none');
SELECT results_eq(
	$$SELECT environment_id, deployments, per_day_per_service, frequency_tier, lead_time_median,
			 lead_time_p90, lead_time_tier, change_failure_rate, failed_deployments, failure_rate_tier,
			 time_to_restore_median, incidents, restore_tier, recovery_time_median, recovery_tier,
			 rework_rate
	  FROM cdviz.dora_by_environment('2024-03-01Z', '2024-03-31Z') ORDER BY 1$$,
	$$SELECT e.environment_id, df.deployments, df.per_day_per_service, df.tier, lt.median, lt.p90,
			 lt.tier, cfr.rate, cfr.failed, cfr.tier, ttr.median, ttr.sample_size, ttr.tier,
			 fdrt.median, fdrt.tier, rw.rate
	  FROM (SELECT DISTINCT environment_id FROM cdviz.environment_inventory) AS e
	  LEFT JOIN LATERAL cdviz.dora_deployment_frequency('2024-03-01Z', '2024-03-31Z', e.environment_id) AS df ON true
	  LEFT JOIN LATERAL cdviz.dora_lead_time('2024-03-01Z', '2024-03-31Z', e.environment_id) AS lt ON true
	  LEFT JOIN LATERAL cdviz.dora_change_failure_rate('2024-03-01Z', '2024-03-31Z', e.environment_id) AS cfr ON true
	  LEFT JOIN LATERAL cdviz.dora_time_to_restore('2024-03-01Z', '2024-03-31Z', e.environment_id) AS ttr ON true
	  LEFT JOIN LATERAL cdviz.dora_failed_deployment_recovery_time('2024-03-01Z', '2024-03-31Z', e.environment_id) AS fdrt ON true
	  LEFT JOIN LATERAL cdviz.dora_rework_rate('2024-03-01Z', '2024-03-31Z', e.environment_id) AS rw ON true
	  ORDER BY 1$$,
	'dora_by_environment: each environment''s metrics, as the functions give them');
SELECT is((SELECT count(*) FROM cdviz.dora_by_environment('2024-03-01Z', '2024-03-31Z', 'api')),
		  (SELECT count(DISTINCT environment_id) FROM cdviz.environment_inventory), 'one row per environment');

-- ------------------------------------------------------------ run views
SELECT results_eq(
	$$SELECT pipeline_run_id, pipeline_name, queued_at, started_at, finished_at, queue_duration,
			 run_duration, outcome, errors, uri
	  FROM cdviz.pipeline_runs ORDER BY pipeline_run_id$$,
	$$VALUES
	  ('pipelinerun-1', 'api-ci', '2024-03-01 12:05Z'::timestamptz, '2024-03-01 12:06Z'::timestamptz,
	   '2024-03-01 12:20Z'::timestamptz, interval '1 minute', interval '14 minutes', 'success', NULL, 'https://ci.example/runs/1'),
	  ('pipelinerun-2', 'api-ci', '2024-03-05 10:05Z', '2024-03-05 10:07Z', '2024-03-05 10:30Z',
	   interval '2 minutes', interval '23 minutes', 'failure', 'lint failed', 'https://ci.example/runs/2'),
	  ('pipelinerun-3', 'api-ci', NULL, '2024-03-20 12:10Z', '2024-03-20 12:40Z',
	   NULL, interval '30 minutes', 'success', NULL, 'https://ci.example/runs/3')$$,
	'pipeline runs: lifecycle, durations, outcome, 0.3/0.4 url read as uri');
SELECT results_eq(
	$$SELECT pipeline_run_id, last_predicate, event_count, chain_id FROM cdviz.pipeline_runs
	  WHERE pipeline_run_id = 'pipelinerun-1'$$,
	$$VALUES ('pipelinerun-1'::text, 'finished'::text, 3::bigint, 'chain-1'::text)$$,
	'the last event of a run is the latest by timestamp, not by arrival');
SELECT results_eq(
	$$SELECT pipeline_run_id FROM cdviz.pipeline_runs_between('2024-03-05Z', '2024-03-06Z')$$,
	$$VALUES ('pipelinerun-2'::text)$$,
	'pipeline_runs_between keeps runs with an event in the window');
SELECT results_eq(
	$$SELECT started_at, finished_at FROM cdviz.pipeline_runs_between('2024-03-01 12:10Z', '2024-03-02Z')$$,
	$$VALUES ('2024-03-01 12:06Z'::timestamptz, '2024-03-01 12:20Z'::timestamptz)$$,
	'a run that started before the window keeps its start (lookback)');
SELECT results_eq(
	$$SELECT task_run_id, task_name, pipeline_run_id, run_duration, outcome, uri FROM cdviz.task_runs$$,
	$$VALUES ('taskrun-1', 'compile', 'pipelinerun-1', interval '8 minutes', 'success', 'https://ci.example/runs/1/compile')$$,
	'task runs');
SELECT results_eq(
	$$SELECT build_id, queued_at, started_at, finished_at, queue_duration, run_duration, artifact_id FROM cdviz.builds$$,
	$$VALUES ('build-1', '2024-03-01 12:08Z'::timestamptz, '2024-03-01 12:09Z'::timestamptz, '2024-03-01 12:18Z'::timestamptz,
			  interval '1 minute', interval '9 minutes', 'pkg:oci/api@sha256%3Aaaa1')$$,
	'builds');
SELECT results_eq(
	$$SELECT test_suite_run_id, test_suite_name, test_suite_uri, queued_at, outcome, severity, reason
	  FROM cdviz.test_suite_runs ORDER BY 1$$,
	$$VALUES ('suite-run-1', 'API tests', 'https://tests.example/api', '2024-03-01 12:10Z'::timestamptz, 'success', NULL, NULL),
			 ('suite-run-2', 'API tests', 'https://tests.example/api', NULL, 'failure', 'high', '2 tests failed')$$,
	'test suite runs: 0.3 pass reads as success');
SELECT results_eq(
	$$SELECT test_case_run_id, test_case_name, test_suite_run_id, outcome FROM cdviz.test_case_runs ORDER BY 1$$,
	$$VALUES ('tcr-1', 'test_login', 'suite-run-2', 'failure'), ('tcr-2', 'test_login', 'suite-run-1', 'success'),
			 ('tcr-3', 'test_login', 'suite-run-2', 'failure'), ('tcr-4', 'test_logout', 'suite-run-2', 'success'),
			 ('tcr-5', 'test_signup', 'suite-run-2', 'skipped')$$,
	'test case runs: fail/pass (0.3, 0.4) and failure/success (0.5) in one vocabulary, skipped runs');
SELECT results_eq(
	$$SELECT queued_at, queue_duration, run_duration, environment_id FROM cdviz.test_case_runs WHERE test_case_run_id = 'tcr-3'$$,
	$$VALUES ('2024-03-05 10:13Z'::timestamptz, interval '1 minute', interval '1 minute', 'ci'::text)$$,
	'test case run lifecycle');
SELECT results_eq(
	$$SELECT test_case_name, count(*) FILTER (WHERE outcome = 'failure') AS failures, count(*) AS runs
	  FROM cdviz.test_case_runs_between('2024-03-01Z', '2024-03-31Z')
	  GROUP BY 1 ORDER BY failures DESC, 1 LIMIT 2$$,
	$$VALUES ('test_login'::text, 2::bigint, 3::bigint), ('test_logout', 0, 1)$$,
	'which tests fail most');
SELECT results_eq(
	$$SELECT test_output_id, published_at, output_type, format, uri, test_case_run_id FROM cdviz.test_outputs$$,
	$$VALUES ('output-1', '2024-03-05 10:20Z'::timestamptz, 'report', 'application/xml',
			  'https://tests.example/reports/1.xml', 'tcr-1')$$,
	'test outputs');

-- --------------------------------------------------------- entity views
SELECT results_eq(
	$$SELECT change_id, repository_id, state, created_at, merged_at FROM cdviz.changes ORDER BY 1$$,
	$$VALUES ('org/api/pull/1', 'org/api', 'merged', '2024-03-01 09:00Z'::timestamptz, '2024-03-01 12:00Z'::timestamptz),
			 ('org/api/pull/3', 'org/api', 'merged', '2024-03-05 08:00Z', '2024-03-05 10:00Z'),
			 ('org/api/pull/6', 'org/api', 'merged', '2024-03-20 09:00Z', '2024-03-20 12:00Z'),
			 ('org/web/pull/2', 'org/web', 'open', '2024-03-02 10:00Z', NULL),
			 ('org/web/pull/5', 'org/web', 'merged', '2024-03-15 09:00Z', '2024-03-15 10:00Z'),
			 ('org/web/pull/7', 'org/web', 'abandoned', '2024-03-21 09:00Z', NULL),
			 ('org/worker/pull/4', 'org/worker', 'merged', '2024-03-10 09:00Z', '2024-03-11 09:00Z')$$,
	'changes: state and times');
SELECT results_eq(
	$$SELECT change_id, description, review_count, first_reviewed_at, last_updated_at, abandoned_at
	  FROM cdviz.changes WHERE change_id IN ('org/api/pull/1', 'org/api/pull/6', 'org/web/pull/7') ORDER BY 1$$,
	$$VALUES ('org/api/pull/1', 'Add login', 1::bigint, '2024-03-01 10:00Z'::timestamptz, NULL::timestamptz, NULL::timestamptz),
			 ('org/api/pull/6', NULL, 0, NULL, '2024-03-20 10:00Z', NULL),
			 ('org/web/pull/7', NULL, 0, NULL, NULL, '2024-03-22 09:00Z')$$,
	'changes: description, reviews, updates, abandonment');
SELECT results_eq(
	$$SELECT packaged_at, signed_at, published_at, download_count, first_downloaded_at, last_downloaded_at,
			 change_id, sbom_uri, signature, last_user
	  FROM cdviz.artifacts WHERE artifact_id = 'pkg:oci/api@sha256%3Aaaa1'$$,
	$$VALUES ('2024-03-01 13:00Z'::timestamptz, '2024-03-01 13:05Z'::timestamptz, '2024-03-01 13:10Z'::timestamptz,
			  2::bigint, '2024-03-03 11:00Z'::timestamptz, '2024-03-08 13:55Z'::timestamptz,
			  'org/api/pull/1', 'https://sbom.example/a1.json', 'sig-a1', 'argo')$$,
	'artifacts: lifecycle, downloads, the change it was built from');
SELECT set_eq(
	$$SELECT artifact_id || ' <- ' || change_id FROM cdviz.artifacts$$,
	ARRAY['pkg:oci/api@sha256%3Aaaa1 <- org/api/pull/1', 'pkg:maven/com.example/web@1.0.0 <- org/web/pull/2',
		  'pkg:oci/api@sha256%3Aaaa2 <- org/api/pull/3', 'pkg:helm/charts/worker@0.1.0 <- org/worker/pull/4',
		  'pkg:maven/com.example/web@1.1.0 <- org/web/pull/5', 'pkg:oci/api@sha256%3Aaaa3 <- org/api/pull/6'],
	'every artifact with its change');
SELECT results_eq(
	$$SELECT repository_id, name, owner, uri, state, created_at, modified_at FROM cdviz.repositories$$,
	$$VALUES ('org/api', 'api-server', 'org', 'https://git.example/org/api-server', 'active',
			  '2024-02-28 09:00Z'::timestamptz, '2024-03-15 09:00Z'::timestamptz)$$,
	'repositories: the latest name and uri (0.5 uri after 0.3 url)');
SELECT results_eq(
	$$SELECT branch_id, repository_id, state, created_at, deleted_at FROM cdviz.branches$$,
	$$VALUES ('org/api/heads/feat-1', 'org/api', 'deleted', '2024-03-01 08:30Z'::timestamptz, '2024-03-01 12:05Z'::timestamptz)$$,
	'branches');
SELECT results_eq(
	$$SELECT environment_id, name, uri, modified_at FROM cdviz.environments ORDER BY 1$$,
	$$VALUES ('dev', 'Development', 'https://k8s.example/dev', NULL::timestamptz),
			 ('prod', 'Production EU', 'https://k8s.example/prod-eu', '2024-03-10 08:00Z'),
			 ('staging', 'Staging', 'https://k8s.example/staging', NULL)$$,
	'environments: the latest name and uri (0.3 url after 0.5 uri)');
SELECT results_eq(
	$$SELECT environment_id, service_id, deployment_count, rollback_count, last_artifact_id,
			 last_removed_at, last_published_at
	  FROM cdviz.services ORDER BY 1, 2$$,
	$$VALUES ('dev', 'api', 3::bigint, 0::bigint, 'pkg:oci/api@sha256%3Aaaa3', NULL::timestamptz, NULL::timestamptz),
			 ('dev', 'web', 2, 0, 'pkg:maven/com.example/web@1.1.0', NULL, NULL),
			 ('dev', 'worker', 1, 0, 'pkg:helm/charts/worker@0.1.0', NULL, NULL),
			 ('prod', 'api', 4, 1, 'pkg:oci/api@sha256%3Aaaa3', NULL, NULL),
			 ('prod', 'web', 2, 0, 'pkg:maven/com.example/web@1.1.0', NULL, '2024-03-18 12:30Z'),
			 ('prod', 'worker', 1, 0, 'pkg:helm/charts/worker@0.1.0', '2024-03-25 12:00Z', NULL),
			 ('staging', 'api', 2, 0, 'pkg:oci/api@sha256%3Aaaa2', NULL, NULL),
			 ('staging', 'web', 2, 0, 'pkg:maven/com.example/web@1.1.0', '2024-03-10 09:00Z', NULL)$$,
	'services: one row per (service, environment)');
SELECT results_eq(
	$$SELECT incident_id, environment_id, service_id, state, detected_at, reported_at, resolved_at, time_to_resolve
	  FROM cdviz.incidents ORDER BY 1$$,
	$$VALUES ('incident-1', 'prod', 'api', 'resolved', '2024-03-08 13:00Z'::timestamptz, '2024-03-08 13:30Z'::timestamptz,
			  '2024-03-08 15:00Z'::timestamptz, interval '2 hours'),
			 ('incident-2', 'prod', 'worker', 'resolved', '2024-03-14 10:00Z', NULL, '2024-03-14 10:30Z', interval '30 minutes'),
			 ('incident-3', 'prod', 'web', 'resolved', NULL, '2024-03-26 09:00Z', '2024-03-27 09:00Z', interval '1 day'),
			 ('incident-4', 'prod', NULL, 'resolved', '2024-03-28 10:00Z', NULL, '2024-03-28 14:00Z', interval '4 hours')$$,
	'incidents: detected/reported/resolved, time to resolve');
SELECT results_eq(
	$$SELECT description, ticket_uri, artifact_id FROM cdviz.incidents WHERE incident_id = 'incident-1'$$,
	$$VALUES ('api 5xx'::text, 'https://tickets.example/INC-1'::text, 'pkg:oci/api@sha256%3Aaaa2'::text)$$,
	'incident details gathered from its several events');
SELECT results_eq(
	$$SELECT summary, ticket_type, creator, assignees, priority, uri, resolution, updated_by, state,
			 created_at, last_updated_at, closed_at
	  FROM cdviz.tickets$$,
	$$VALUES ('api 5xx after 1.2 deploy', 'incident', 'alice', '["bob"]'::jsonb, 'medium',
			  'https://tickets.example/TICKET-1', 'completed', 'bob', 'closed',
			  '2024-03-08 13:35Z'::timestamptz, '2024-03-09 09:00Z'::timestamptz, '2024-03-12 13:00Z'::timestamptz)$$,
	'tickets: latest values across 0.4 and 0.5 events');

-- ----------------------------------------------------------- deployments
SELECT results_eq(
	$$SELECT action, count(*) FROM cdviz.deployments GROUP BY 1 ORDER BY 1$$,
	$$VALUES ('deployed'::text, 9::bigint), ('published', 1), ('removed', 2), ('rolledback', 1), ('upgraded', 8)$$,
	'deployments: every service event once');
SELECT results_eq(
	$$SELECT environment_id, service_id, action, package_name, package_version
	  FROM cdviz.deployments WHERE "timestamp" >= '2024-03-20Z' ORDER BY "timestamp"$$,
	$$VALUES ('dev', 'api', 'upgraded', 'api', 'sha256:aaa3'), ('prod', 'api', 'upgraded', 'api', 'sha256:aaa3'),
			 ('prod', 'worker', 'removed', NULL, NULL)$$,
	'what changed in the last days, with package versions');

-- --------------------------------------------------------------- lineage
SELECT results_eq(
	$$SELECT subject || '.' || predicate FROM cdviz.chain('chain-1')$$,
	$$VALUES ('pipelinerun.queued'), ('pipelinerun.started'), ('taskrun.started'), ('build.queued'),
			 ('build.started'), ('taskrun.finished'), ('build.finished'), ('pipelinerun.finished')$$,
	'chain lists the events of a chain in time order');
SELECT results_eq(
	$$SELECT depth, direction, link_type, link_kind, context_id, subject, predicate FROM cdviz.related('ctx-a3-packaged')$$,
	$$VALUES (1, 'incoming', 'RELATION', 'TRIGGER', 'ctx-p7', 'service', 'upgraded')$$,
	'related finds the events that link to an event');
SELECT results_eq(
	$$SELECT depth, direction, context_id, subject, predicate FROM cdviz.related('ctx-p7')$$,
	$$VALUES (1, 'outgoing', 'ctx-a3-packaged', 'artifact', 'packaged')$$,
	'related follows the links an event carries');

-- ----------------------------------------------------- helpers, spelling
SELECT results_eq(
	$$SELECT * FROM cdviz.purl_parse('pkg:oci/myapp@sha256%3A0b31?repository_url=ghcr.io%2Forg&arch=amd64#sub/path/')$$,
	$$VALUES ('oci', NULL, 'myapp', 'sha256:0b31', '{"repository_url": "ghcr.io/org", "arch": "amd64"}'::jsonb, 'sub/path')$$,
	'purl with qualifiers and subpath');
SELECT results_eq(
	$$SELECT purl_type, namespace, name, version FROM cdviz.purl_parse('pkg:npm/%40angular/core@12.3.1')
	  UNION ALL SELECT purl_type, namespace, name, version FROM cdviz.purl_parse('pkg:maven/org.apache.commons/io')
	  UNION ALL SELECT purl_type, namespace, name, version FROM cdviz.purl_parse('pkg:git/github.com/org/repo@v1.0')$$,
	$$VALUES ('npm', '@angular', 'core', '12.3.1'), ('maven', 'org.apache.commons', 'io', NULL),
			 ('git', 'github.com/org', 'repo', 'v1.0')$$,
	'purl namespaces, a missing version');
SELECT is_empty($$SELECT * FROM cdviz.purl_parse('docker.io/library/nginx:1.25')$$, 'not a purl: no row');
SELECT is(cdviz.percent_decode('caf%C3%A9%3A1'), 'caf%C3%A9%3A1', 'non-ASCII escapes are left encoded, never an error');

-- The C purl splitting against the SQL implementation it replaced (kept
-- here as the reference), on every combination of awkward pieces.
CREATE FUNCTION pg_temp.ref_percent_decode_ascii(s text)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
SELECT CASE
	WHEN s ~ '%(?!0[1-9A-Fa-f]|[1-7][0-9A-Fa-f])' THEN s
	ELSE (SELECT string_agg(CASE WHEN u.o = 1 THEN u.p
								 ELSE chr(('x' || lpad(left(u.p, 2), 8, '0'))::bit(32)::int) || substr(u.p, 3) END,
							'' ORDER BY u.o)
		  FROM unnest(string_to_array(s, '%')) WITH ORDINALITY AS u(p, o))
END
$$;

COMMENT ON FUNCTION pg_temp.ref_percent_decode_ascii(text) IS
'cdviz: decodes the %XX escapes of s when all of them are ASCII (%01-%7F); returns s unchanged otherwise. Used through pg_temp.ref_percent_decode().';

CREATE FUNCTION pg_temp.ref_percent_decode(s text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
	WHEN strpos(s, '%') = 0 THEN s
	WHEN strpos(replace(replace(replace(replace(replace(replace(s, '%3A', ':'), '%3a', ':'), '%2F', '/'), '%2f', '/'), '%40', '@'), '%20', ' '), '%') = 0
		THEN replace(replace(replace(replace(replace(replace(s, '%3A', ':'), '%3a', ':'), '%2F', '/'), '%2f', '/'), '%40', '@'), '%20', ' ')
	ELSE pg_temp.ref_percent_decode_ascii(s) END;

COMMENT ON FUNCTION pg_temp.ref_percent_decode(text) IS
'cdviz: percent-decoding of a package URL component (ASCII escapes only, see pg_temp.ref_percent_decode_ascii); NULL stays NULL';

CREATE FUNCTION pg_temp.ref_purl_parse(purl text)
RETURNS TABLE (purl_type text, namespace text, name text, version text,
			   qualifiers jsonb, subpath text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
SELECT lower(d.t),
	   CASE WHEN length(d.namever) > length(d.nm) + 1
			THEN pg_temp.ref_percent_decode(nullif(left(d.namever, length(d.namever) - length(d.nm) - 1), '')) END,
	   pg_temp.ref_percent_decode(d.nm),
	   pg_temp.ref_percent_decode(d.v),
	   (SELECT jsonb_object_agg(lower(split_part(kv, '=', 1)),
								pg_temp.ref_percent_decode(substr(kv, strpos(kv, '=') + 1)))
		FROM unnest(string_to_array(nullif(d.q, ''), '&')) AS kv
		WHERE strpos(kv, '=') > 1),
	   pg_temp.ref_percent_decode(nullif(trim(BOTH '/' FROM d.sp), ''))
FROM (SELECT c.*, reverse(split_part(reverse(c.namever), '/', 1)) AS nm
	  FROM (SELECT r.*,
				   CASE WHEN r.at_pos > 0 AND r.at_pos < r.slash_pos
						THEN right(r.core, r.at_pos - 1) END AS v,
				   CASE WHEN r.at_pos > 0 AND r.at_pos < r.slash_pos
						THEN left(r.rest, length(r.rest) - r.at_pos) ELSE r.rest END AS namever
			FROM (SELECT b.*, split_part(b.core, '/', 1) AS t,
						 substr(b.core, strpos(b.core, '/') + 1) AS rest,
						 strpos(reverse(b.core), '@') AS at_pos,
						 strpos(reverse(b.core), '/') AS slash_pos
				  FROM (SELECT split_part(split_part(a.body, '#', 1), '?', 1) AS core,
							   split_part(split_part(a.body, '#', 1), '?', 2) AS q,
							   split_part(a.body, '#', 2) AS sp
						FROM (SELECT ltrim(substr(purl, 5), '/') AS body
							  WHERE left(purl, 4) = 'pkg:') AS a
						OFFSET 0) AS b
				  OFFSET 0) AS r
			WHERE r.slash_pos > 0 AND r.t <> ''
			OFFSET 0) AS c
	  OFFSET 0) AS d
WHERE d.nm <> ''
$$;

CREATE TEMP TABLE purl_corpus AS
SELECT pre || t || sep || ns || nm || ver || q || sp AS purl
FROM unnest(ARRAY['pkg:', 'pkg://', 'PKG:']) pre,
	 unnest(ARRAY['oci', 'NpM', '']) t,
	 unnest(ARRAY['/', '//']) sep,
	 unnest(ARRAY['', 'org/', '%40scope/', 'a/b%2Fc/']) ns,
	 unnest(ARRAY['app', '', 'na%20me%']) nm,
	 unnest(ARRAY['', '@1.0', '@sha256%3Aab', '@']) ver,
	 unnest(ARRAY['', '?A=%2F&c&=x&a=2', '?x=1?y=2']) q,
	 unnest(ARRAY['', '#/sub/p%41th/', '#x#y']) sp
UNION ALL
SELECT unnest(ARRAY['pkg:oci', 'pkg:/oci', 'pkg:oci/', 'pkg:oci/@1', 'pkg:oci/x@', 'pkg:a/b/c@d/e',
					'pkg:a/@b/c', 'pkg:café/näme@vér', 'pkg:oci/a@b@c', 'pkg:', '', 'pkg:x//y']);

SELECT is_empty(
	$$SELECT c.purl FROM purl_corpus c
	  WHERE (SELECT array_agg(ROW(p.*)::text) FROM cdviz.purl_parse(c.purl) p)
			IS DISTINCT FROM (SELECT array_agg(ROW(r.*)::text) FROM pg_temp.ref_purl_parse(c.purl) r)$$,
	'purl_parse agrees with the SQL reference on ' || (SELECT count(*) FROM purl_corpus) || ' awkward purls');
SELECT is_empty(
	$$SELECT s FROM (SELECT a || b || c AS s
					 FROM unnest(ARRAY['%', '%4', '%41', '%7F', '%7f', '%80', '%00', '%0a', 'a', '%2F', '%3a', 'é', '%C3%A9']) a,
						  unnest(ARRAY['%', '%4', '%41', '%7F', '%80', '%00', '%0a', 'a', '%2F', '%3a', 'é', '%C3%A9', '']) b,
						  unnest(ARRAY['%', '%4', '%41', '%00', 'a', '%2f', '%20', '']) c) x
	  WHERE cdviz.percent_decode(s) IS DISTINCT FROM pg_temp.ref_percent_decode(s)$$,
	'percent_decode agrees with the SQL reference');
SELECT results_eq(
	$$SELECT cdviz.normalize_outcome(o) FROM unnest(ARRAY['pass', 'fail', 'success', 'failure', 'cancel', 'error']) o$$,
	$$VALUES ('success'), ('failure'), ('success'), ('failure'), ('cancel'), ('error')$$,
	'outcomes normalised across spec versions');

-- ------------------------------------------------------ plans and pruning
SELECT unalike(
	(SELECT string_agg(p, E'\n') FROM (SELECT * FROM pg_temp.explain_lines(
		$$SELECT pipeline_run_id, started_at, finished_at, outcome, last_predicate
		  FROM cdviz.pipeline_runs_between('2024-03-05Z', '2024-03-06Z')$$)) AS e(p)),
	'%cdevents_lake%', 'a windowed function reads the run summary kept at ingest, not the lake');
SELECT unalike(
	(SELECT string_agg(p, E'\n') FROM (SELECT * FROM pg_temp.explain_lines(
		$$SELECT "timestamp", environment_id, service_id, action, package_version
		  FROM cdviz.deployments WHERE "timestamp" >= '2024-03-20Z'$$)) AS e(p)),
	'%cdevents_lake%', 'deployments over a window read the narrow history, not the lake');
SELECT results_eq(
	$$SELECT context_source, spec_version, payload #>> '{context,id}' FROM cdviz.deployments WHERE event_id =
		(SELECT id FROM cdviz.cdevents_lake WHERE context_id = 'ctx-p2')$$,
	$$VALUES ('/fixture/service'::text, '0.3.0'::text, 'ctx-p2'::text)$$,
	'deployments fetch lake columns when asked');
SELECT unalike(
	(SELECT string_agg(p, E'\n') FROM (SELECT * FROM pg_temp.explain_lines(
		$$SELECT * FROM cdviz.test_case_runs_between(now() - interval '30 days', now())$$)) AS e(p)),
	'%Seq Scan on cdevents_lake%', 'last_payload is fetched from the lake by primary key, never by a scan');
-- The window's last_event_at bound is an index condition of the covering
-- window indexes (computed once per scan), not a filter computed per row.
-- The fixture is small enough for a sequential scan: the plan asked for is
-- the one a 10M-event lake gets.
SET LOCAL enable_seqscan = off;
SELECT ok(
	(SELECT bool_or(p LIKE '%Index Cond: %last_event_at >= %') AND NOT bool_or(p LIKE '%Filter: %last_event_at%')
	 FROM pg_temp.explain_lines(
		$$SELECT task_name, count(*) FROM cdviz.task_runs_between(now() - interval '30 days', now()) GROUP BY 1$$) AS e(p)),
	'task runs of a window: last_event_at is tested in the index condition');
SELECT ok(
	(SELECT bool_or(p LIKE '%Index Cond: %last_event_at >= %') AND NOT bool_or(p LIKE '%Filter: %last_event_at%')
	 FROM pg_temp.explain_lines(
		$$SELECT test_case_name, count(*) FROM cdviz.test_case_runs_between(now() - interval '30 days', now()) GROUP BY 1$$) AS e(p)),
	'test case runs of a window: last_event_at is tested in the index condition');
RESET enable_seqscan;

-- ------------------------------------------------- summaries kept at ingest
-- The fixture stores its events one statement each, several out of order:
-- what the trigger folded event by event must equal one aggregation of the
-- whole lake, which is what rebuild_summaries() computes.
CREATE TEMP TABLE summaries_before AS
SELECT t, x.r
FROM unnest(ARRAY['pipeline_run_summaries', 'task_run_summaries', 'build_summaries', 'branch_summaries',
				  'test_case_run_summaries', 'test_suite_run_summaries', 'artifact_summaries',
				  'change_summaries', 'incident_summaries', 'event_counts_hourly',
				  'test_case_outcomes_daily']) AS t,
	 LATERAL pg_temp.table_rows(t) AS x(r);
SELECT results_eq(
	$$SELECT summary, row_count FROM cdviz.rebuild_summaries() ORDER BY 1$$,
	$$SELECT t, count(*) FROM summaries_before GROUP BY 1 ORDER BY 1$$,
	'rebuild_summaries rebuilds every summary from the lake');
SELECT is_empty(
	$$(SELECT t, r FROM summaries_before
	   EXCEPT ALL
	   SELECT t, x.r FROM unnest(ARRAY(SELECT DISTINCT t FROM summaries_before)) AS t,
			 LATERAL pg_temp.table_rows(t) AS x(r))
	  UNION ALL
	  (SELECT t, x.r FROM unnest(ARRAY(SELECT DISTINCT t FROM summaries_before)) AS t,
			 LATERAL pg_temp.table_rows(t) AS x(r)
	   EXCEPT ALL
	   SELECT t, r FROM summaries_before)$$,
	'summaries folded event by event, out of order, equal a rebuild from the whole lake');
SELECT is_empty(
	$$SELECT date_bin('1 hour', "timestamp", '2000-01-01Z'), type, context_source, spec_version, count(*)
	  FROM cdviz.cdevents_lake GROUP BY 1, 2, 3, 4
	  EXCEPT
	  SELECT hour, type, context_source, spec_version, events FROM cdviz.event_counts_hourly$$,
	'event_counts_hourly counts every stored event once');
SELECT results_eq(
	$$SELECT test_case, outcome, sum(runs)::bigint FROM cdviz.test_case_outcomes_daily GROUP BY 1, 2 ORDER BY 1, 2$$,
	$$SELECT test_case_name, outcome, count(*) FROM cdviz.test_case_runs GROUP BY 1, 2 ORDER BY 1, 2$$,
	'test_case_outcomes_daily agrees with the test case runs');
SELECT throws_ok(
	$$SET LOCAL ROLE cdviz_writer; SELECT cdviz.rebuild_summaries()$$,
	'42501', NULL, 'only a superuser rebuilds the summaries');
RESET ROLE;

-- ------------------------------------------------------------- comments
SELECT is_empty(
	$$SELECT c.oid::regclass::text FROM pg_class c
	  WHERE c.relnamespace = 'cdviz'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm')
		AND NOT c.relispartition AND obj_description(c.oid, 'pg_class') IS NULL
	  UNION ALL
	  SELECT p.oid::regprocedure::text FROM pg_proc p
	  WHERE p.pronamespace = 'cdviz'::regnamespace AND obj_description(p.oid, 'pg_proc') IS NULL$$,
	'every table, view and function of the schema has a comment');

SELECT * FROM finish();
ROLLBACK;
