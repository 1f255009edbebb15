-- Generator of realistic CDEvents for benchmarks, in plain SQL.
--
--   psql -v n=10000000 -f bench/gen_events.sql                 straight into cdviz.cdevents_lake
--   psql -v n=1000000 -v target=staging -v staging=bench_events -f bench/gen_events.sql
--                                                              into a table (seq bigint, payload jsonb)
-- Optional: -v services=50 -v days=365 (history ends now).
--
-- The unit of generation is a delivery cycle of one of the services:
-- change created/reviewed/merged (sometimes updated, sometimes abandoned),
-- a short-lived branch, a pipeline run (queued/started/finished) with three
-- task runs, a build, the artifact (packaged with the change id, signed,
-- published), a test suite run with five test case runs and a report, then
-- the artifact goes through dev, qa, staging, prod-eu and prod-us as fewer
-- cycles get promoted; production deployments sometimes cause an incident
-- (detected, reported, resolved), half of which end with a rollback to the
-- previous artifact of the service; a few cycles carry a ticket.  Cycles are
-- spread evenly over the period, one cycle every few minutes, so the lake
-- fills in time order as it would in production.  One event in twenty is
-- shaped as spec 0.3.0 and one in twenty as 0.4.1 (context.version,
-- subject.type, url instead of uri, pass/fail test outcomes); the others
-- are 0.5.1, with context.links from deployments to the artifact they ship.
-- An average cycle holds about 33 events.
--
-- Rows go in by chunks of cycles, one statement each, so the lake's
-- statement trigger sees batches of the size a busy ingest would produce.

\set ON_ERROR_STOP on
\if :{?n}
\else
\set n 1000000
\endif
\if :{?services}
\else
\set services 50
\endif
\if :{?days}
\else
\set days 365
\endif
\if :{?target}
\else
\set target lake
\endif
\if :{?staging}
\else
\set staging bench_events
\endif

SELECT (:n / 33.0)::bigint AS ncycles,
	   date_trunc('minute', now()) - make_interval(days => :days) AS t0,
	   make_interval(days => :days) AS span
\gset

-- cdevents_type_versions: the type versions of each subject.predicate
\ir ../test/fixtures/type_versions.sql

-- Spec 0.3 and 0.4 spelling of a 0.5 content: url for uri, pass/fail test
-- outcomes, and none of the fields those versions did not have yet (their
-- schemas forbid additional properties).
CREATE FUNCTION pg_temp.gen_old_content(subj text, pred text, sv text, content jsonb)
RETURNS jsonb
LANGUAGE sql IMMUTABLE
AS $$
SELECT CASE
	WHEN subj IN ('pipelinerun', 'taskrun', 'environment', 'repository') AND content ? 'uri'
		THEN (content - 'uri') || jsonb_build_object('url', content -> 'uri')
	WHEN subj = 'testsuiterun' AND pred = 'queued'
		THEN jsonb_set(content, '{testSuite}', ((content -> 'testSuite') - 'uri')
							   || jsonb_build_object('url', content #> '{testSuite,uri}'))
	WHEN subj IN ('testcaserun', 'testsuiterun') AND content ? 'outcome'
		THEN content || jsonb_build_object('outcome',
			CASE content ->> 'outcome' WHEN 'success' THEN 'pass' WHEN 'failure' THEN 'fail'
				 ELSE content ->> 'outcome' END)
	WHEN sv = '0.3.0' AND subj = 'change' THEN content - 'description'
	WHEN sv = '0.3.0' AND subj = 'artifact' THEN content - 'sbom' - 'user'
	ELSE content END
$$;

-- subject.type, required by 0.3 and 0.4
CREATE FUNCTION pg_temp.gen_subject_type(subj text)
RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
SELECT CASE subj WHEN 'pipelinerun' THEN 'pipelineRun' WHEN 'taskrun' THEN 'taskRun'
				 WHEN 'testcaserun' THEN 'testCaseRun' WHEN 'testsuiterun' THEN 'testSuiteRun'
				 WHEN 'testoutput' THEN 'testOutput' ELSE subj END
$$;

-- The events of cycles [c0, c1): lake columns plus the payload.
CREATE FUNCTION pg_temp.gen_cycles(c0 bigint, c1 bigint, ncycles bigint, nservices int,
								   t0 timestamptz, span interval)
RETURNS TABLE ("timestamp" timestamptz, context_id text, context_source text, type text,
			   subject text, predicate text, type_version text, spec_version text,
			   subject_id text, chain_id text, payload jsonb)
LANGUAGE sql
AS $gen$
WITH cyc AS (
	SELECT c,
		   c % nservices AS s,
		   'svc-' || lpad((c % nservices)::text, 2, '0') AS svc,
		   'org/repo-' || lpad((c % nservices)::text, 2, '0') AS repo,
		   t0 + span * (c::float8 / ncycles) AS t,
		   md5('chain' || c)::uuid::text AS chain,
		   abs(hashint8(c)) % 1000 AS r,		-- per-cycle dice, 0..999
		   abs(hashint8(-c)) % 1000 AS r2,
		   CASE abs(hashint8(c * 31)) % 10 WHEN 0 THEN 'maven' WHEN 1 THEN 'maven' WHEN 2 THEN 'helm'
				ELSE 'oci' END AS ptype
	FROM generate_series(c0, c1 - 1) c
), cyc2 AS (
	SELECT cyc.*,
		   CASE ptype
			   WHEN 'oci' THEN 'pkg:oci/' || svc || '@sha256%3A' || md5('img' || c) || md5('img2' || c)
								|| '?repository_url=registry.example.com%2F' || svc
			   WHEN 'maven' THEN 'pkg:maven/com.example/' || svc || '@1.' || (c / nservices) || '.0'
			   ELSE 'pkg:helm/charts/' || svc || '@0.' || (c / nservices) || '.1' END AS artifact,
		   -- the artifact this service's previous cycle built: the rollback target
		   CASE abs(hashint8((c - nservices) * 31)) % 10 WHEN 0 THEN 'pkg:maven/com.example/' || svc || '@1.' || ((c - nservices) / nservices) || '.0'
				WHEN 1 THEN 'pkg:maven/com.example/' || svc || '@1.' || ((c - nservices) / nservices) || '.0'
				WHEN 2 THEN 'pkg:helm/charts/' || svc || '@0.' || ((c - nservices) / nservices) || '.1'
				ELSE 'pkg:oci/' || svc || '@sha256%3A' || md5('img' || (c - nservices)) || md5('img2' || (c - nservices))
					 || '?repository_url=registry.example.com%2F' || svc END AS prev_artifact,
		   repo || '/pull/' || c AS change,
		   'pipelinerun-' || c AS prun,
		   r < 920 AS green,					-- pipeline and tests pass
		   r2 < 950 AS merged
	FROM cyc
), ev AS (
	-- change lifecycle
	SELECT c, chain, t, interval '0' AS off, 'change' AS subj, 'created' AS pred, change AS sid,
		   jsonb_build_object('description', 'Change ' || c || ' of ' || svc,
							  'repository', jsonb_build_object('id', repo, 'source', 'https://git.example.com')) AS content,
		   NULL::text AS link_to
	FROM cyc2
	UNION ALL
	SELECT c, chain, t, interval '20 min', 'change', 'updated', change,
		   jsonb_build_object('repository', jsonb_build_object('id', repo, 'source', 'https://git.example.com')), NULL
	FROM cyc2 WHERE r % 10 = 3
	UNION ALL
	SELECT c, chain, t, interval '60 min', 'change', 'reviewed', change,
		   jsonb_build_object('repository', jsonb_build_object('id', repo, 'source', 'https://git.example.com')), NULL
	FROM cyc2
	UNION ALL
	SELECT c, chain, t, interval '120 min', 'change', CASE WHEN merged THEN 'merged' ELSE 'abandoned' END, change,
		   jsonb_build_object('repository', jsonb_build_object('id', repo, 'source', 'https://git.example.com')), NULL
	FROM cyc2
	UNION ALL
	SELECT c, chain, t, x.off, 'branch', x.pred, repo || '/heads/feature-' || c,
		   jsonb_build_object('repository', jsonb_build_object('id', repo, 'source', 'https://git.example.com')), NULL
	FROM cyc2, (VALUES (interval '-5 min', 'created'), (interval '125 min', 'deleted')) x(off, pred)
	WHERE r % 10 < 3
	UNION ALL
	-- the pipeline run of the merge, its tasks, the build
	SELECT c, chain, t, x.off, 'pipelinerun', x.pred, prun,
		   jsonb_build_object('pipelineName', 'build-' || svc, 'uri', 'https://ci.example.com/runs/' || c)
		   || CASE WHEN x.pred = 'finished'
				   THEN jsonb_build_object('outcome', CASE WHEN green THEN 'success' ELSE 'failure' END)
						|| CASE WHEN green THEN '{}'::jsonb ELSE jsonb_build_object('errors', 'unit tests failed') END
				   ELSE '{}'::jsonb END,
		   CASE WHEN x.pred = 'finished' THEN c || ':pipelinerun:started:' || prun END
	FROM cyc2, (VALUES (interval '121 min', 'queued'), (interval '122 min', 'started'),
					   (interval '137 min', 'finished')) x(off, pred)
	WHERE merged
	UNION ALL
	SELECT c, chain, t, interval '122 min' + k * interval '4 min' + x.off, 'taskrun', x.pred, prun || '-' || tn,
		   jsonb_build_object('taskName', tn, 'uri', 'https://ci.example.com/runs/' || c || '/' || tn,
							  'pipelineRun', jsonb_build_object('id', prun, 'source', 'https://ci.example.com'))
		   || CASE WHEN x.pred = 'finished' THEN jsonb_build_object('outcome',
					CASE WHEN green OR k < 2 THEN 'success' ELSE 'failure' END) ELSE '{}'::jsonb END,
		   NULL
	FROM cyc2, (VALUES (0, 'checkout'), (1, 'compile'), (2, 'unit-test')) tk(k, tn),
		 (VALUES (interval '0', 'started'), (interval '3 min', 'finished')) x(off, pred)
	WHERE merged
	UNION ALL
	SELECT c, chain, t, x.off, 'build', x.pred, 'build-' || c,
		   CASE WHEN x.pred = 'finished' THEN jsonb_build_object('artifactId', artifact) ELSE '{}'::jsonb END, NULL
	FROM cyc2, (VALUES (interval '126 min', 'queued'), (interval '127 min', 'started'),
					   (interval '130 min', 'finished')) x(off, pred)
	WHERE merged
	UNION ALL
	SELECT c, chain, t, x.off, 'artifact', x.pred, artifact,
		   CASE x.pred
			   WHEN 'packaged' THEN jsonb_build_object('change', jsonb_build_object('id', change, 'source', 'https://git.example.com'),
													   'sbom', jsonb_build_object('uri', 'https://sbom.example.com/' || c || '.json'))
			   WHEN 'signed' THEN jsonb_build_object('signature', md5('sig' || c))
			   ELSE jsonb_build_object('user', 'ci-bot') END,
		   NULL
	FROM cyc2, (VALUES (interval '131 min', 'packaged'), (interval '132 min', 'signed'),
					   (interval '138 min', 'published')) x(off, pred)
	WHERE merged AND green
	UNION ALL
	-- tests: a suite run, five test cases, a report
	SELECT c, chain, t, x.off, 'testsuiterun', x.pred, 'suite-' || c,
		   jsonb_build_object('environment', jsonb_build_object('id', 'ci'),
							  'testSuite', jsonb_build_object('id', 'suite-' || svc, 'name', svc || ' unit tests',
															  'uri', 'https://tests.example.com/' || svc))
		   || CASE WHEN x.pred = 'finished' THEN jsonb_build_object('outcome', CASE WHEN green THEN 'success' ELSE 'failure' END,
																   'severity', 'low') ELSE '{}'::jsonb END,
		   NULL
	FROM cyc2, (VALUES (interval '129 min', 'queued'), (interval '130 min', 'started'),
					   (interval '136 min', 'finished')) x(off, pred)
	WHERE merged
	UNION ALL
	SELECT c, chain, t, interval '130 min' + k * interval '1 min' + x.off, 'testcaserun', x.pred, 'case-' || c || '-' || k,
		   jsonb_build_object('environment', jsonb_build_object('id', 'ci'),
							  'testSuiteRun', jsonb_build_object('id', 'suite-' || c),
							  'testCase', jsonb_build_object('id', svc || '-test-' || k, 'name', 'test_' || svc || '_' || k))
		   || CASE WHEN x.pred = 'finished' THEN jsonb_build_object('outcome',
					CASE WHEN NOT green AND k = (r % 5) THEN 'failure' ELSE 'success' END) ELSE '{}'::jsonb END,
		   NULL
	FROM cyc2, generate_series(0, 4) k, (VALUES (interval '0', 'started'), (interval '50 s', 'finished')) x(off, pred)
	WHERE merged
	UNION ALL
	SELECT c, chain, t, interval '136 min', 'testoutput', 'published', 'report-' || c,
		   jsonb_build_object('outputType', 'report', 'format', 'application/xml',
							  'uri', 'https://tests.example.com/reports/' || c || '.xml',
							  'testCaseRun', jsonb_build_object('id', 'case-' || c || '-0')), NULL
	FROM cyc2 WHERE merged
	UNION ALL
	-- promotion through the environments
	SELECT c, chain, t, d.off, 'service', CASE WHEN c < nservices * 2 THEN 'deployed' ELSE 'upgraded' END, svc,
		   jsonb_build_object('environment', jsonb_build_object('id', d.env, 'source', 'https://k8s.example.com'),
							  'artifactId', artifact),
		   c || ':artifact:published:' || artifact
	FROM cyc2, (VALUES ('dev', interval '140 min', 1000), ('qa', interval '190 min', 450),
					   ('staging', interval '260 min', 350), ('prod-eu', interval '1 day', 200),
					   ('prod-us', interval '1 day 40 min', 180)) d(env, off, share)
	WHERE merged AND green AND r2 % 1000 < d.share
	UNION ALL
	-- production incidents: one prod-eu deployment in 25 breaks; half are rolled back
	SELECT c, chain, t, x.off, 'incident', x.pred, 'incident-' || c,
		   jsonb_build_object('description', svc || ' error rate above SLO',
							  'environment', jsonb_build_object('id', 'prod-eu'),
							  'service', jsonb_build_object('id', svc), 'artifactId', artifact)
		   || CASE WHEN x.pred = 'reported' THEN jsonb_build_object('ticketURI', 'https://tickets.example.com/INC-' || c)
				   ELSE '{}'::jsonb END,
		   NULL
	FROM cyc2, LATERAL (VALUES (interval '1 day 30 min', 'detected'), (interval '1 day 45 min', 'reported'),
							   (interval '1 day 30 min' + interval '3 min' * (1 + cyc2.c % 60), 'resolved')) x(off, pred)
	WHERE merged AND green AND r2 % 1000 < 200 AND r % 25 = 7
	UNION ALL
	SELECT c, chain, t, interval '1 day 50 min', 'service', 'rolledback', svc,
		   jsonb_build_object('environment', jsonb_build_object('id', 'prod-eu'), 'artifactId', prev_artifact), NULL
	FROM cyc2 WHERE merged AND green AND r2 % 1000 < 200 AND r % 25 = 7 AND r % 2 = 1
	UNION ALL
	SELECT c, chain, t, x.off, 'ticket', x.pred, 'TICKET-' || c,
		   jsonb_build_object('summary', 'Follow-up of change ' || c, 'ticketType', 'task', 'group', 'team-' || (c % 5),
							  'creator', 'alice', 'assignees', jsonb_build_array('bob'), 'priority', 'medium',
							  'labels', jsonb_build_array(svc), 'uri', 'https://tickets.example.com/TICKET-' || c)
		   || CASE WHEN x.pred = 'closed' THEN jsonb_build_object('resolution', 'completed', 'updatedBy', 'bob')
				   WHEN x.pred = 'updated' THEN jsonb_build_object('updatedBy', 'bob') ELSE '{}'::jsonb END,
		   NULL
	FROM cyc2, (VALUES (interval '10 min', 'created'), (interval '3 hours', 'updated'), (interval '2 days', 'closed')) x(off, pred)
	WHERE r % 20 = 11
	UNION ALL
	-- the first cycles create the repositories and the environments
	SELECT c, chain, t, interval '-1 hour', 'repository', 'created', repo,
		   jsonb_build_object('name', 'repo-' || lpad(s::text, 2, '0'), 'owner', 'org',
							  'uri', 'https://git.example.com/' || repo, 'viewUrl', 'https://git.example.com/' || repo), NULL
	FROM cyc2 WHERE c < nservices
	UNION ALL
	SELECT c, chain, t, interval '-2 hours', 'environment', 'created', e.env,
		   jsonb_build_object('name', e.env, 'uri', 'https://k8s.example.com/' || e.env), NULL
	FROM cyc2, (VALUES (0, 'dev'), (1, 'qa'), (2, 'staging'), (3, 'prod-eu'), (4, 'prod-us')) e(k, env)
	WHERE c = e.k
), shaped AS (
	SELECT ev.*, ev.t + ev.off AS ts, v.v03, v.v04, v.v05,
		   -- tickets did not exist before 0.4
		   CASE abs(hashint8(c * 7 + length(sid) + length(pred))) % 20
				WHEN 0 THEN CASE WHEN subj = 'ticket' THEN '0.4.1' ELSE '0.3.0' END
				WHEN 1 THEN '0.4.1' ELSE '0.5.1' END AS sv,
		   md5(c || ':' || subj || ':' || pred || ':' || sid)::uuid::text AS ctx_id,
		   'https://' || CASE subj WHEN 'change' THEN 'git' WHEN 'branch' THEN 'git' WHEN 'repository' THEN 'git'
									WHEN 'service' THEN 'k8s' WHEN 'environment' THEN 'k8s'
									WHEN 'incident' THEN 'monitor' WHEN 'ticket' THEN 'tickets'
									ELSE 'ci' END || '.example.com' AS src
	FROM ev JOIN cdevents_type_versions v ON v.sp = ev.subj || '.' || ev.pred
)
SELECT ts, ctx_id, src,
	   'dev.cdevents.' || subj || '.' || pred || '.' || tv, subj, pred, tv, sv, sid,
	   CASE WHEN sv <> '0.3.0' THEN chain END,
	   jsonb_build_object(
		   'context', CASE WHEN sv = '0.5.1'
						   THEN jsonb_build_object('specversion', sv, 'id', ctx_id, 'source', src,
												   'type', 'dev.cdevents.' || subj || '.' || pred || '.' || tv,
												   'timestamp', to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
												   'chainId', chain)
								|| CASE WHEN link_to IS NOT NULL THEN jsonb_build_object('links', jsonb_build_array(
									   jsonb_build_object('linkType', 'RELATION', 'linkKind', 'TRIGGER',
														  'target', jsonb_build_object('contextId', md5(link_to)::uuid::text))))
									   ELSE '{}'::jsonb END
						   ELSE jsonb_build_object('version', sv, 'id', ctx_id, 'source', src,
												   'type', 'dev.cdevents.' || subj || '.' || pred || '.' || tv,
												   'timestamp', to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
								|| CASE WHEN sv = '0.4.1' THEN jsonb_build_object('chainId', chain) ELSE '{}'::jsonb END
					  END,
		   'subject', jsonb_build_object('id', sid, 'source', src,
										 'content', CASE WHEN sv = '0.5.1' THEN content
														 ELSE pg_temp.gen_old_content(subj, pred, sv, content) END)
					  || CASE WHEN sv <> '0.5.1' THEN jsonb_build_object('type', pg_temp.gen_subject_type(subj))
							  ELSE '{}'::jsonb END)
FROM (SELECT shaped.*, CASE sv WHEN '0.3.0' THEN v03 WHEN '0.4.1' THEN v04 ELSE v05 END AS tv FROM shaped) x
$gen$;

-- Chunks of 2000 cycles (about 70,000 events), one statement each.
SELECT :'target' = 'staging' AS to_staging \gset
\if :to_staging
DROP TABLE IF EXISTS :"staging";
CREATE UNLOGGED TABLE :"staging" (seq bigint GENERATED ALWAYS AS IDENTITY, payload jsonb NOT NULL);
SELECT format('INSERT INTO %I (payload) SELECT payload FROM pg_temp.gen_cycles(%s, %s, %s, %s, %L, %L) ORDER BY "timestamp"',
			  :'staging', c0, least(c0 + 2000, :ncycles), :ncycles, :services, :'t0', :'span')
FROM generate_series(0, :ncycles - 1, 2000) c0
\gexec
SELECT count(*) AS events_generated FROM :"staging";
\else
SELECT cdviz.ensure_partition(m)
FROM generate_series(date_trunc('month', :'t0'::timestamptz - interval '1 month'),
					 now() + interval '2 months', interval '1 month') m;
SELECT format('INSERT INTO cdviz.cdevents_lake ("timestamp", context_id, context_source, type, subject, predicate, type_version, spec_version, subject_id, chain_id, payload) SELECT * FROM pg_temp.gen_cycles(%s, %s, %s, %s, %L, %L) ORDER BY "timestamp" ON CONFLICT DO NOTHING',
			  c0, least(c0 + 2000, :ncycles), :ncycles, :services, :'t0', :'span')
FROM generate_series(0, :ncycles - 1, 2000) c0
\gexec
-- in the cdviz summaries worker's database the trigger queued the derived
-- tables and summaries: fold what the worker has not folded yet.  Each fold
-- commits, and one that found only rows the worker holds waits a little:
-- the worker may be waiting for this session's transaction to end.
DO $$
BEGIN
	WHILE cdviz.summaries_pending() > 0 LOOP
		IF cdviz.fold_queued_summaries() = 0 THEN
			PERFORM pg_sleep(0.1);
		END IF;
		COMMIT;
	END LOOP;
END
$$;
ANALYZE cdviz.cdevents_lake;
-- vacuumed too: the window indexes are read by index-only scans
VACUUM ANALYZE cdviz.environment_history, cdviz.environment_state, cdviz.first_deployments,
		cdviz.artifact_changes, cdviz.change_times, cdviz.event_links,
		cdviz.pipeline_run_summaries, cdviz.task_run_summaries, cdviz.build_summaries,
		cdviz.branch_summaries, cdviz.test_case_run_summaries, cdviz.test_suite_run_summaries,
		cdviz.artifact_summaries, cdviz.change_summaries, cdviz.incident_summaries,
		cdviz.event_counts_hourly, cdviz.test_case_outcomes_daily;
SELECT count(*) AS events_in_lake FROM cdviz.cdevents_lake;
\endif
