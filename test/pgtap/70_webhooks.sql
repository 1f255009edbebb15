-- Webhook routes, deliveries and the GitHub transformer, through
-- cdviz.process_webhook (what the http worker calls after checking
-- credentials).  Fixtures: test/fixtures/webhooks/ (see its README).
BEGIN;
SET client_min_messages = warning;
\ir include/webhooks.sql

SELECT plan(121);

-- gh(event, fixture): a GitHub delivery, its GUID derived from the fixture
CREATE FUNCTION pg_temp.gh(event text, fixture text, guid text DEFAULT NULL)
RETURNS TABLE (status text, delivery_id bigint, event_ids bigint[], stored bigint, error text)
LANGUAGE sql AS $$
	SELECT * FROM pg_temp.post('github',
		jsonb_build_object('X-GitHub-Event', event, 'X-GitHub-Delivery', coalesce(guid, md5(fixture)),
						   'X-GitHub-Hook-ID', '109948940', 'X-Hub-Signature-256', 'sha256=00',
						   'Content-Type', 'application/json'),
		'github/' || fixture)
$$;

-- ---------------------------------------------------------------- routes
SELECT has_table('cdviz', 'webhooks', 'routes table');
SELECT has_table('cdviz', 'webhook_secrets', 'secrets table');
SELECT has_table('cdviz', 'webhook_deliveries', 'deliveries table');
SELECT has_view('cdviz', 'webhook_routes', 'routes view');
SELECT is((SELECT count(*) FROM pg_proc p WHERE p.pronamespace = 'cdviz'::regnamespace
			AND (p.proname LIKE '%webhook%' OR p.proname LIKE 'transform_%' OR p.proname = 'retransform'
				 OR p.proname LIKE 'github_%' OR p.proname LIKE 'gitlab_%' OR p.proname LIKE 'argocd_%'
				 OR p.proname LIKE 'tekton_%')
			AND obj_description(p.oid, 'pg_proc') IS NULL), 0::bigint,
		  'every webhook function has a COMMENT');
SELECT is((SELECT count(*) FROM pg_attribute a WHERE a.attrelid IN ('cdviz.webhooks'::regclass,
			'cdviz.webhook_secrets'::regclass, 'cdviz.webhook_deliveries'::regclass)
			AND a.attnum > 0 AND NOT a.attisdropped AND col_description(a.attrelid, a.attnum) IS NULL
			AND a.attname NOT IN ('name', 'id')), 0::bigint,
		  'every webhook table column has a COMMENT');

SELECT is(cdviz.create_webhook('github', 'cdviz.transform_github(jsonb,jsonb)', 'github', 'It''s a Secret to Everybody'),
		  '/webhooks/github', 'create_webhook returns the path');
SELECT throws_ok($$SELECT cdviz.create_webhook('bad', 'cdviz.ingest(jsonb)', 'none')$$, '22023', NULL,
				 'a transformer with the wrong signature is refused');
SELECT throws_ok($$SELECT cdviz.create_webhook('nosecret', 'cdviz.transform_github(jsonb,jsonb)', 'github')$$,
				 '22023', 'auth github needs a secret', 'github auth needs a secret');
SELECT throws_ok($$SELECT cdviz.create_webhook('b', 'cdviz.transform_github(jsonb,jsonb)', 'basic', 'nocolon')$$,
				 '22023', NULL, 'basic auth needs user:password');
SELECT throws_ok($$SELECT cdviz.create_webhook('has/slash', 'cdviz.transform_github(jsonb,jsonb)', 'none')$$,
				 '23514', NULL, 'a route name is one path segment');
SELECT is(cdviz.create_webhook('tmp', 'cdviz.transform_gitlab(jsonb,jsonb)', 'gitlab', 't0ken'), '/webhooks/tmp', 'second route');
SELECT is(cdviz.alter_webhook('tmp', auth => 'none'), '/webhooks/tmp', 'alter to auth none');
SELECT is((SELECT has_secret FROM cdviz.webhook_routes WHERE name = 'tmp'), false, 'auth none dropped the secret');
SELECT is(cdviz.alter_webhook('tmp', auth => 'bearer', secret => 'tok', new_name => 'tmp2'), '/webhooks/tmp2', 'rename with a new secret');
SELECT is((SELECT secret FROM cdviz.webhook_secrets WHERE name = 'tmp2'), 'tok', 'secret follows the rename');
SELECT throws_ok($$SELECT cdviz.alter_webhook('nope', auth => 'none')$$, '42704', NULL, 'altering a missing route raises');
SELECT ok(cdviz.drop_webhook('tmp2'), 'drop_webhook');
SELECT ok(NOT cdviz.drop_webhook('tmp2'), 'drop_webhook of a missing route says false');
SELECT is((SELECT count(*) FROM cdviz.webhook_secrets WHERE name = 'tmp2'), 0::bigint, 'its secret went with it');

-- privileges: the reader sees routes without secrets, never the secrets
SELECT ok(has_table_privilege('cdviz_reader', 'cdviz.webhook_routes', 'SELECT'), 'reader reads the routes view');
SELECT ok(NOT has_table_privilege('cdviz_reader', 'cdviz.webhook_secrets', 'SELECT'), 'reader cannot read secrets');
SELECT ok(NOT has_table_privilege('cdviz_reader', 'cdviz.webhooks', 'SELECT'), 'reader cannot read the routes table');
SELECT ok(NOT has_table_privilege('cdviz_writer', 'cdviz.webhook_deliveries', 'SELECT'), 'writer cannot read deliveries');
SELECT ok(NOT has_function_privilege('cdviz_writer', 'cdviz.process_webhook(text,jsonb,jsonb)', 'EXECUTE'),
		  'only the owner runs process_webhook');
SELECT ok(NOT has_function_privilege('cdviz_writer', 'cdviz.create_webhook(text,regprocedure,text,text,interval)', 'EXECUTE'),
		  'only the owner creates routes (transformers run as the worker)');
SELECT is((SELECT array_agg(attname::text ORDER BY attnum) FROM pg_attribute
		   WHERE attrelid = 'cdviz.webhook_routes'::regclass AND attnum > 0),
		  ARRAY['name', 'path', 'transformer', 'auth', 'has_secret', 'retention', 'created_at', 'updated_at'],
		  'the routes view has no secret column');

-- ---------------------------------------------------------------- GitHub
CREATE TEMP TABLE r AS SELECT * FROM pg_temp.gh('ping', 'ping/payload.json');
SELECT is((SELECT status FROM r), 'ping', 'ping is answered as ping');
SELECT is((SELECT count(*) FROM cdviz.cdevents_lake), 0::bigint, 'ping stores no event');
SELECT is((SELECT headers ? 'x-hub-signature-256' FROM cdviz.webhook_deliveries WHERE id = (SELECT delivery_id FROM r)),
		  false, 'the signature header is not stored');
SELECT is((SELECT headers ->> 'x-github-event' FROM cdviz.webhook_deliveries WHERE id = (SELECT delivery_id FROM r)),
		  'ping', 'header names are stored in lower case');

DROP TABLE r;
CREATE TEMP TABLE r AS SELECT * FROM pg_temp.gh('workflow_run', 'workflow_run/requested.json');
SELECT is((SELECT status FROM r), 'stored', 'workflow_run requested stored');
SELECT is(pg_temp.ev((SELECT event_ids FROM r)) #>> '{context,type}', 'dev.cdevents.pipelinerun.queued.0.3.0', 'requested -> pipelinerun.queued');
SELECT is(pg_temp.ev((SELECT event_ids FROM r)) #>> '{subject,id}',
		  'https://github.com/octo-org/octo-repo/actions/runs/289782451/attempts/1', 'pipeline run id is the attempt URL');
SELECT is(pg_temp.ev((SELECT event_ids FROM r)) #>> '{context,timestamp}', '2020-10-05T16:33:24Z', 'queued at created_at');
SELECT is(pg_temp.ev((SELECT event_ids FROM r)) #>> '{context,id}',
		  'github:109948940:' || md5('workflow_run/requested.json') || '#0', 'context.id = hook id + delivery + position');
SELECT is(pg_temp.ev((SELECT event_ids FROM r)) #>> '{context,source}', '/webhooks/github/octo-org/octo-repo',
		  'context.source names the route and the repository');
SELECT is(pg_temp.ev((SELECT event_ids FROM r)) #>> '{subject,content,pipelineName}', 'test', 'pipeline name from the workflow');

-- redelivery: same GUID, nothing new
SELECT is((SELECT status FROM pg_temp.gh('workflow_run', 'workflow_run/requested.json')), 'duplicate', 'a redelivery is a duplicate');
SELECT is((SELECT count(*) FROM cdviz.cdevents_lake), 1::bigint, 'a redelivery stores no event');
SELECT is((SELECT count(*) FROM cdviz.webhook_deliveries WHERE event_name = 'workflow_run.requested'), 1::bigint,
		  'a redelivery adds no delivery row');
SELECT is((SELECT attempts FROM cdviz.webhook_deliveries WHERE event_name = 'workflow_run.requested'), 2,
		  'it is counted as an attempt');
SELECT is((SELECT status FROM cdviz.webhook_deliveries WHERE event_name = 'workflow_run.requested'), 'stored',
		  'the delivery still says it stored its events');

DROP TABLE r;
CREATE TEMP TABLE r AS SELECT * FROM pg_temp.gh('workflow_run', 'workflow_run/in_progress.json');
SELECT is(pg_temp.ev((SELECT event_ids FROM r)) #>> '{context,type}', 'dev.cdevents.pipelinerun.started.0.3.0', 'in_progress -> pipelinerun.started');
SELECT is(pg_temp.ev((SELECT event_ids FROM r)) #>> '{subject,content,uri}',
		  'https://github.com/octo-org/octo-repo/actions/runs/289782451', 'started carries the run URL');
DROP TABLE r;
CREATE TEMP TABLE r AS SELECT * FROM pg_temp.gh('workflow_run', 'workflow_run/completed.json');
SELECT is(pg_temp.ev((SELECT event_ids FROM r)) #>> '{context,type}', 'dev.cdevents.pipelinerun.finished.0.3.0', 'completed -> pipelinerun.finished');
SELECT is(pg_temp.ev((SELECT event_ids FROM r)) #>> '{subject,content,outcome}', 'success', 'conclusion success -> success');
DROP TABLE r;
CREATE TEMP TABLE r AS SELECT * FROM pg_temp.gh('workflow_run', 'workflow_run/completed.failure.json');
SELECT is(pg_temp.ev((SELECT event_ids FROM r)) #>> '{subject,content,outcome}', 'failure', 'conclusion failure -> failure');
SELECT is((SELECT array_agg(cdviz.github_outcome(c) ORDER BY c) FROM unnest(ARRAY['action_required', 'cancelled', 'neutral',
		   'skipped', 'stale', 'startup_failure', 'timed_out']) c),
		  ARRAY['error', 'cancel', 'success', 'cancel', 'cancel', 'error', 'error'], 'every other conclusion');
SELECT is((SELECT outcome FROM cdviz.pipeline_runs
		   WHERE pipeline_run_id = 'https://github.com/octo-org/octo-repo/actions/runs/289782451/attempts/1'),
		  'success', 'the run reads as one pipeline run in the read API');

DROP TABLE r;
CREATE TEMP TABLE r AS SELECT * FROM pg_temp.gh('workflow_job', 'workflow_job/queued.json');
SELECT is((SELECT status FROM r), 'ignored', 'a queued job is ignored');
SELECT alike((SELECT error FROM r), 'ignored: workflow_job action queued%', 'with its reason');
DROP TABLE r;
CREATE TEMP TABLE r AS SELECT * FROM pg_temp.gh('workflow_job', 'workflow_job/in_progress.json');
SELECT is(pg_temp.ev((SELECT event_ids FROM r)) #>> '{context,type}', 'dev.cdevents.taskrun.started.0.3.0', 'job in_progress -> taskrun.started');
SELECT is(pg_temp.ev((SELECT event_ids FROM r)) #>> '{subject,content,pipelineRun,id}',
		  'https://github.com/Codertocat/Hello-World/actions/runs/2202229078/attempts/1', 'linked to its pipeline run');
DROP TABLE r;
CREATE TEMP TABLE r AS SELECT * FROM pg_temp.gh('workflow_job', 'workflow_job/completed.failure.with-organization.json');
SELECT is(pg_temp.ev((SELECT event_ids FROM r)) #>> '{context,type}', 'dev.cdevents.taskrun.finished.0.3.0', 'job completed -> taskrun.finished');
SELECT is(pg_temp.ev((SELECT event_ids FROM r)) #>> '{subject,content,outcome}', 'failure', 'job outcome');
SELECT is(pg_temp.ev((SELECT event_ids FROM r)) #>> '{context,timestamp}', '2021-08-05T10:38:16Z', 'finished at completed_at');

-- pull requests and reviews
-- (tables of deliveries: one a row, posted in the order of the rows, each
-- checking one field of its event)
SELECT is(pg_temp.ev((SELECT event_ids FROM pg_temp.gh(t.event, t.fixture))) #>> t.path::text[], t.expected, t.description)
FROM (VALUES
	('pull_request', 'pull_request/opened.json', '{context,type}', 'dev.cdevents.change.created.0.4.0', 'PR opened -> change.created'),
	('pull_request', 'pull_request/synchronize.json', '{context,type}', 'dev.cdevents.change.updated.0.3.0', 'PR synchronize -> change.updated'),
	('pull_request', 'pull_request/closed.json', '{context,type}', 'dev.cdevents.change.abandoned.0.3.0', 'PR closed unmerged -> change.abandoned'),
	('pull_request', 'pull_request/closed.merged.json', '{context,type}', 'dev.cdevents.change.merged.0.3.0', 'PR closed merged -> change.merged'),
	('pull_request_review', 'pull_request_review/submitted.json', '{context,type}', 'dev.cdevents.change.reviewed.0.3.0', 'review submitted -> change.reviewed')
) AS t (event, fixture, path, expected, description);
SELECT is((SELECT (state, review_count, merged_at) FROM cdviz.changes WHERE change_id = 'https://github.com/Codertocat/Hello-World/pull/2')::text,
		  '(merged,1,"2019-05-15 15:21:18+00")', 'the pull request reads as one merged change');

-- branches
SELECT is((SELECT status FROM pg_temp.gh('create', 'create/payload.json')), 'ignored', 'create of a tag is ignored');
DROP TABLE r;
CREATE TEMP TABLE r AS SELECT * FROM pg_temp.gh('create', 'create/branch.json');
SELECT is(pg_temp.ev((SELECT event_ids FROM r)) #>> '{context,type}', 'dev.cdevents.branch.created.0.3.0', 'create branch -> branch.created');
SELECT is((pg_temp.ev((SELECT event_ids FROM r)) #>> '{context,timestamp}')::timestamptz,
		  (SELECT received_at FROM cdviz.webhook_deliveries WHERE id = (SELECT delivery_id FROM r)),
		  'no time in the payload: the first reception time');
SELECT is(pg_temp.ev((SELECT event_ids FROM pg_temp.gh(t.event, t.fixture))) #>> t.path::text[], t.expected, t.description)
FROM (VALUES
	('delete', 'delete/branch.json', '{context,type}', 'dev.cdevents.branch.deleted.0.3.0', 'delete branch -> branch.deleted'),
	('push', 'push/with-new-branch.json', '{context,type}', 'dev.cdevents.branch.created.0.3.0', 'push created -> branch.created'),
	('push', 'push/deleted-branch.json', '{subject,id}', 'https://github.com/Codertocat/Hello-World/tree/feature/old', 'push deleted -> branch.deleted of that branch')
) AS t (event, fixture, path, expected, description);
SELECT is((SELECT status FROM pg_temp.gh('push', 'push/payload.json')), 'ignored', 'a tag push is ignored');

-- artifacts
SELECT is((SELECT status FROM pg_temp.gh('release', 'release/created.json')), 'ignored', 'release created is ignored');
SELECT is(pg_temp.ev((SELECT event_ids FROM pg_temp.gh(t.event, t.fixture))) #>> t.path::text[], t.expected, t.description)
FROM (VALUES
	('release', 'release/published.json', '{subject,id}', 'pkg:github/codertocat/hello-world@0.0.1', 'release published -> artifact.published pkg:github'),
	('package', 'package/published.docker.json', '{subject,id}', 'pkg:oci/hello-world@sha256%3A6c62fb45fe66bfb1ea9a66abc38f6a0cc974292b?repository_url=ghcr.io/codertocat/hello-world', 'container package -> pkg:oci with digest and repository_url'),
	('package', 'package/published.npm.json', '{subject,id}', 'pkg:npm/%40codertocat/hello-world-npm@1.0.0', 'npm package -> pkg:npm'),
	('registry_package', 'registry_package/published.docker.json', '{context,type}', 'dev.cdevents.artifact.published.0.3.0', 'registry_package published -> artifact.published')
) AS t (event, fixture, path, expected, description);
SELECT is(cdviz.github_package_purl('{"name": "com.acme.api", "package_type": "maven", "package_version": {"version": "2.1.0"}}', 'acme'),
		  'pkg:maven/com.acme/api@2.1.0', 'maven purl');
SELECT is(cdviz.github_package_purl('{"name": "Acme.Api", "package_type": "nuget", "package_version": {"version": "2.1.0"}}', 'acme'),
		  'pkg:nuget/Acme.Api@2.1.0', 'nuget purl');
SELECT is(cdviz.github_package_purl('{"name": "acme", "package_type": "rubygems", "package_version": {"version": "2.1.0"}}', 'acme'),
		  'pkg:gem/acme@2.1.0', 'rubygems purl');

-- deployments
DROP TABLE r;
CREATE TEMP TABLE r AS SELECT * FROM pg_temp.gh('deployment_status', 'deployment_status/payload.json');
SELECT is(pg_temp.ev((SELECT event_ids FROM r)) #>> '{context,type}', 'dev.cdevents.service.deployed.0.3.0',
		  'first deployment_status success -> service.deployed');
SELECT is(pg_temp.ev((SELECT event_ids FROM r)) #>> '{subject,content,environment,id}', 'production', 'environment');
SELECT is(pg_temp.ev((SELECT event_ids FROM r)) #>> '{subject,content,artifactId}',
		  'pkg:github/codertocat/hello-world@f95f852bd8fca8fcc58a9a2d6c842781e32a215e', 'artifact is the commit');
SELECT is((SELECT status FROM pg_temp.gh('deployment_status', 'deployment_status/failure.json')), 'ignored', 'failure state is ignored');
SELECT is((SELECT status FROM pg_temp.gh('deployment', 'deployment/payload.json')), 'ignored', 'deployment (not its status) is ignored');
DROP TABLE r;
CREATE TEMP TABLE r AS SELECT * FROM pg_temp.gh('deployment_status', 'deployment_status/with-image.json');
SELECT is(pg_temp.ev((SELECT event_ids FROM r)) #>> '{subject,content,artifactId}',
		  'pkg:oci/hello-api@sha256%3A9f2c3d4e5f60718293a4b5c6d7e8f90112233445566778899aabbccddeeff001?repository_url=ghcr.io/codertocat/hello-api&tag=1.4.2',
		  'the image of the deployment payload is the artifact');
SELECT is(pg_temp.ev((SELECT event_ids FROM r)) #>> '{subject,id}', 'hello-api', 'the service of the deployment payload');

-- checks and issues
DROP TABLE r;
CREATE TEMP TABLE r AS SELECT * FROM pg_temp.gh('check_run', 'check_run/completed.json');
SELECT is(pg_temp.ev((SELECT event_ids FROM r)) #>> '{context,type}', 'dev.cdevents.testsuiterun.finished.0.3.0', 'check_run completed -> testsuiterun.finished');
SELECT is(pg_temp.ev((SELECT event_ids FROM r)) #>> '{subject,content,outcome}', 'success', 'check outcome');
SELECT is(pg_temp.ev((SELECT event_ids FROM pg_temp.gh(t.event, t.fixture))) #>> t.path::text[], t.expected, t.description)
FROM (VALUES
	('check_suite', 'check_suite/completed.json', '{context,type}', 'dev.cdevents.testsuiterun.finished.0.3.0', 'check_suite completed -> testsuiterun.finished'),
	('issues', 'issues/opened.json', '{context,type}', 'dev.cdevents.ticket.created.0.2.0', 'issue opened -> ticket.created'),
	('issues', 'issues/edited.json', '{context,type}', 'dev.cdevents.ticket.updated.0.2.0', 'issue edited -> ticket.updated'),
	('issues', 'issues/closed.json', '{subject,content,resolution}', 'completed', 'issue closed -> ticket.closed with its resolution')
) AS t (event, fixture, path, expected, description);
SELECT is((SELECT state FROM cdviz.tickets WHERE ticket_id = 'https://github.com/Codertocat/Hello-World/issues/1'),
		  'closed', 'the issue reads as one closed ticket');
SELECT is((SELECT status FROM pg_temp.gh('star', 'ping/payload.json', 'star-1')), 'ignored', 'unknown events are ignored');

-- everything stored is strict-valid CDEvents 0.5.1
SELECT is((SELECT count(*) FROM cdviz.cdevents_lake l CROSS JOIN LATERAL cdviz.validate(l.payload) v), 0::bigint,
		  'every stored event passes validation');
SELECT is((SELECT count(*) FROM cdviz.cdevents_lake WHERE spec_version <> '0.5.1'), 0::bigint, 'all are spec 0.5.1');
SELECT is((SELECT count(*) FROM cdviz.webhook_deliveries WHERE status = 'failed'), 0::bigint, 'no GitHub delivery failed');
SELECT is((SELECT count(*) FROM cdviz.rejected_events), 0::bigint, 'nothing became a dead letter');

-- ------------------------------------------------- the delivery path in C
-- delivery keys (the C function the worker and process_webhook share)
SELECT is(cdviz.webhook_delivery_key('{"x-github-delivery": "g1", "x-github-hook-id": "7"}', '{}'), 'github:7:g1',
		  'GitHub key: hook id and delivery GUID');
SELECT is(cdviz.webhook_delivery_key('{"x-github-delivery": "g1"}', '{}'), 'github::g1', 'GitHub key without a hook id');
SELECT is(cdviz.webhook_delivery_key('{"idempotency-key": "i1", "x-gitlab-event-uuid": "u1"}', '{}'), 'gitlab:i1',
		  'GitLab key: Idempotency-Key first');
SELECT is(cdviz.webhook_delivery_key('{"x-gitlab-event-uuid": "u1"}', '{}'), 'gitlab:u1', 'GitLab key: else the event UUID');
SELECT is(cdviz.webhook_delivery_key('{"ce-id": "c1", "ce-source": "/tekton"}', '{}'), 'ce:/tekton:c1', 'CloudEvents key');
SELECT is(cdviz.webhook_delivery_key('{}', '{"b": [1, "é"], "a": null}'),
		  'sha256:' || encode(sha256(convert_to('{"b": [1, "é"], "a": null}'::jsonb::text, 'UTF8')), 'hex'),
		  'otherwise the SHA-256 of the body''s jsonb text');
SELECT is(cdviz.webhook_delivery_key('{}', NULL), NULL, 'no header and no body: no key');
SELECT is(cdviz.webhook_delivery_key(NULL, '{}'), cdviz.webhook_delivery_key('{}', '{}'), 'NULL headers count as none');

-- what a transformer is given and runs under, whoever calls
CREATE FUNCTION public.transform_probe(headers jsonb, body jsonb)
RETURNS SETOF jsonb LANGUAGE sql AS $$
	SELECT jsonb_build_object('ignored', current_setting('search_path') || ' | ' || (headers ->> 'x-cdviz-route')
		|| ' | ' || (SELECT string_agg(k, ',' ORDER BY k) FROM jsonb_object_keys(headers) k))
$$;
SELECT cdviz.create_webhook('probe', 'public.transform_probe(jsonb,jsonb)', 'none');
SET search_path = public, cdviz;
DROP TABLE IF EXISTS r;
CREATE TEMP TABLE r AS SELECT * FROM cdviz.process_webhook('probe',
	'{"AUTHORIZATION": "Bearer x", "Cookie": "c", "X-Gitlab-Token": "t", "X-Signature-256": "s", "X-Request-Id": "1"}', '{"n": 1}');
SELECT is((SELECT error FROM r), 'ignored: pg_catalog, pg_temp | probe | x-cdviz-route,x-request-id',
		  'a transformer runs under search_path pg_catalog, pg_temp and sees the route, no credential header');
SELECT is(current_setting('search_path'), 'public, cdviz', 'the caller''s search_path is back afterwards');
RESET search_path;
SELECT is((SELECT headers FROM cdviz.webhook_deliveries WHERE id = (SELECT delivery_id FROM r)), '{"x-request-id": "1"}',
		  'credential headers of any case are not stored');

-- output completed: defaults for missing context members, nulls dropped,
-- the id derived from the delivery
CREATE OR REPLACE FUNCTION public.transform_probe(headers jsonb, body jsonb)
RETURNS SETOF jsonb LANGUAGE sql AS $$
	SELECT jsonb_build_object('context', jsonb_build_object('id', 'mine', 'type', 'dev.cdevents.pipelinerun.queued.0.3.0',
		'source', NULL, 'chainId', NULL),
		'subject', jsonb_build_object('id', 'run-' || (body ->> 'n'), 'content', jsonb_build_object('pipelineName', 'p')))
	UNION ALL SELECT jsonb_build_object('ignored', 'second thoughts')
$$;
DROP TABLE r;
CREATE TEMP TABLE r AS SELECT * FROM cdviz.process_webhook('probe', '{}', '{"n": 2}');
SELECT is((SELECT status FROM r), 'stored', 'a completed event is stored');
SELECT is(pg_temp.ev((SELECT event_ids FROM r)) -> 'context',
		  jsonb_build_object('id', cdviz.webhook_delivery_key('{}', '{"n": 2}') || '#0', 'type', 'dev.cdevents.pipelinerun.queued.0.3.0',
							 'source', '/webhooks/probe', 'specversion', '0.5.1',
							 'timestamp', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')),
		  'context: own id replaced, source, specversion and timestamp (first reception) filled, nulls dropped');
SELECT is((SELECT (status, event_ids)::text FROM cdviz.process_webhook('probe', '{}', '{"n": 2}')),
		  (SELECT ('duplicate', event_ids)::text FROM r), 'a redelivery finds the same events');
SELECT is((SELECT attempts FROM cdviz.webhook_deliveries WHERE id = (SELECT delivery_id FROM r)), 2, 'and counts its attempt');

-- a transformer whose function is gone: the delivery is kept as failed
DROP TABLE r;
DROP FUNCTION public.transform_probe(jsonb, jsonb);
CREATE TEMP TABLE r AS SELECT * FROM cdviz.process_webhook('probe', '{}', '{"n": 3}');
SELECT is((SELECT status FROM r), 'failed', 'a dropped transformer -> failed, not an error');
SELECT alike((SELECT error FROM r), '%does not exist%', 'saying its function does not exist');
CREATE FUNCTION public.transform_probe2(headers jsonb, body jsonb)
RETURNS SETOF jsonb LANGUAGE sql AS $$ SELECT NULL::jsonb $$;
SELECT cdviz.alter_webhook('probe', transformer => 'public.transform_probe2(jsonb,jsonb)');
SELECT is((SELECT (deliveries, failed)::text FROM cdviz.retransform('probe')), '(1,1)',
		  'retransform runs the new transformer over it');
SELECT alike((SELECT error FROM cdviz.webhook_deliveries WHERE id = (SELECT delivery_id FROM r)),
			 'the transformer returned 1 invalid event(s) of 1: event 0 at %', 'a SQL null out of a transformer is an invalid event');

-- a redelivery is transformed from the first reception's body, whatever it carries now
CREATE FUNCTION public.transform_echo(headers jsonb, body jsonb) RETURNS SETOF jsonb LANGUAGE sql
AS $$ SELECT cdviz.webhook_cdevent('pipelinerun.queued', '/echo', body ->> 'at', body ->> 'run', '{"pipelineName": "p"}') $$;
SELECT cdviz.create_webhook('echo', 'public.transform_echo(jsonb,jsonb)', 'none');
DROP TABLE r;
CREATE TEMP TABLE r AS SELECT * FROM cdviz.process_webhook('echo', '{"ce-id": "e1", "ce-source": "/s"}',
	'{"run": "first", "at": "2024-07-01T08:00:00Z"}');
SELECT is((SELECT (status, event_ids)::text FROM cdviz.process_webhook('echo', '{"ce-id": "e1", "ce-source": "/s"}',
	'{"run": "second", "at": "2024-07-02T08:00:00Z"}')), (SELECT ('duplicate', event_ids)::text FROM r),
		  'a redelivery with another body gives the first reception''s events again');
SELECT is((SELECT body ->> 'run' FROM cdviz.webhook_deliveries WHERE id = (SELECT delivery_id FROM r)), 'first',
		  'and the delivery keeps the body its events came from');
SELECT is(cdviz._webhook_transform(NULL), NULL, '_webhook_transform(NULL) is NULL');

-- a webhook body the receiver refused is a tool's payload, even when it
-- happens to read as a CDEvent: the bulk replay leaves it alone
INSERT INTO cdviz.rejected_events (origin, origin_ref, raw, problems)
SELECT 'webhook', 'POST /webhooks/github', l.payload::text, '[{"path": "$", "message": "refused"}]'
FROM cdviz.cdevents_lake l ORDER BY l.id LIMIT 1;
SELECT is((SELECT (replayed, still_rejected)::text FROM cdviz.replay_rejected()), '(0,0)',
		  'replay_rejected() skips webhook dead letters');
SELECT throws_ok($$SELECT cdviz.replay_rejected((SELECT max(id) FROM cdviz.rejected_events WHERE origin = 'webhook'))$$,
				 '42809', NULL, 'replaying one webhook dead letter is refused: it is not a CDEvent');

SELECT * FROM finish();
ROLLBACK;
