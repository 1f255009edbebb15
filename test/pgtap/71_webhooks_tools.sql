-- GitLab, Argo CD and Tekton transformers, a user-written transformer
-- (Jenkins notification plugin), transformer failures and retransform,
-- the deployed/upgraded decision against the inventory, retention.
BEGIN;
SET client_min_messages = warning;
\ir include/webhooks.sql

SELECT plan(77);

CREATE FUNCTION pg_temp.gl(event text, fixture text)
RETURNS TABLE (status text, delivery_id bigint, event_ids bigint[], stored bigint, error text)
LANGUAGE sql AS $$
	SELECT * FROM pg_temp.post('gitlab',
		jsonb_build_object('X-Gitlab-Event', event, 'X-Gitlab-Event-UUID', md5(fixture), 'X-Gitlab-Token', 'tok'),
		'gitlab/' || fixture)
$$;
CREATE FUNCTION pg_temp.argo(fixture text)
RETURNS TABLE (status text, delivery_id bigint, event_ids bigint[], stored bigint, error text)
LANGUAGE sql AS $$
	SELECT * FROM pg_temp.post('argocd', '{"Content-Type": "application/json"}', 'argocd/' || fixture)
$$;
CREATE FUNCTION pg_temp.tekton(fixture text)
RETURNS TABLE (status text, delivery_id bigint, event_ids bigint[], stored bigint, error text)
LANGUAGE sql AS $$
	SELECT * FROM pg_temp.post('tekton',
		(SELECT f.body FROM webhook_fixture f WHERE f.path = 'tekton/' || fixture || '.headers.json'),
		'tekton/' || fixture || '.json')
$$;
CREATE FUNCTION pg_temp.t(ids bigint[], n int DEFAULT 1)
RETURNS text LANGUAGE sql AS $$
	SELECT l.type FROM cdviz.cdevents_lake l WHERE l.id = ids[n]
$$;

SELECT cdviz.create_webhook('gitlab', 'cdviz.transform_gitlab(jsonb,jsonb)', 'gitlab', 'tok');
SELECT cdviz.create_webhook('argocd', 'cdviz.transform_argocd(jsonb,jsonb)', 'bearer', 'argo-token');
SELECT cdviz.create_webhook('tekton', 'cdviz.transform_tekton(jsonb,jsonb)', 'none');

-- ---------------------------------------------------------------- GitLab
SELECT is(pg_temp.t((SELECT event_ids FROM pg_temp.gl('Pipeline Hook', 'pipeline.pending.json'))),
		  'dev.cdevents.pipelinerun.queued.0.3.0', 'pipeline pending -> pipelinerun.queued');
SELECT is(pg_temp.ev((SELECT event_ids FROM pg_temp.gl('Pipeline Hook', 'pipeline.running.json'))) #>> '{context,timestamp}',
		  '2016-08-12T15:23:40Z', 'pipeline running -> started at creation + queued duration');
CREATE TEMP TABLE r AS SELECT * FROM pg_temp.gl('Pipeline Hook', 'pipeline.json');
SELECT is(pg_temp.t((SELECT event_ids FROM r)), 'dev.cdevents.pipelinerun.finished.0.3.0', 'pipeline success -> pipelinerun.finished');
SELECT is(pg_temp.ev((SELECT event_ids FROM r)) #>> '{subject,id}', 'http://192.168.64.1:3005/gitlab-org/gitlab-test/-/pipelines/31', 'pipeline id is its URL');
SELECT is(pg_temp.ev((SELECT event_ids FROM r)) #>> '{subject,content,outcome}', 'success', 'pipeline outcome success');
SELECT is(pg_temp.ev((SELECT event_ids FROM r)) #>> '{context,timestamp}', '2016-08-12T15:26:29Z', 'finished_at, GitLab time format read');
SELECT is(pg_temp.ev((SELECT event_ids FROM r)) #>> '{context,id}', 'gitlab:' || md5('pipeline.json') || '#0', 'id from X-Gitlab-Event-UUID');
SELECT is((SELECT status FROM pg_temp.post('gitlab', '{"X-Gitlab-Event": "Pipeline Hook", "X-Gitlab-Event-UUID": "other", "Idempotency-Key": "idem-1"}', 'gitlab/pipeline.failed.json')),
		  'stored', 'pipeline failed stored');
SELECT is((SELECT outcome FROM cdviz.pipeline_runs WHERE pipeline_run_id = 'http://192.168.64.1:3005/gitlab-org/gitlab-test/-/pipelines/31'),
		  'success', 'the read API takes the first finished of a run');
SELECT is((SELECT context_ids[1] FROM cdviz.webhook_deliveries WHERE delivery_key = 'gitlab:idem-1'), 'gitlab:idem-1#0',
		  'Idempotency-Key wins over X-Gitlab-Event-UUID');
SELECT is((SELECT status FROM pg_temp.gl('Job Hook', 'build.json')), 'ignored', 'job created is ignored');
SELECT is(pg_temp.t((SELECT event_ids FROM pg_temp.gl('Job Hook', 'job.running.json'))), 'dev.cdevents.taskrun.started.0.3.0', 'job running -> taskrun.started');
DROP TABLE r;
CREATE TEMP TABLE r AS SELECT * FROM pg_temp.gl('Job Hook', 'job.failed.json');
SELECT is(pg_temp.ev((SELECT event_ids FROM r)) #>> '{subject,content,outcome}', 'failure', 'job failed -> taskrun.finished failure');
SELECT is(pg_temp.ev((SELECT event_ids FROM r)) #>> '{subject,content,pipelineRun,id}',
		  'https://gitlab.com/jsmithy2/release-tools-fake/-/pipelines/743121198', 'job linked to its pipeline');
SELECT is(pg_temp.t((SELECT event_ids FROM pg_temp.gl('Merge Request Hook', 'merge_request.json'))), 'dev.cdevents.change.created.0.4.0', 'MR open -> change.created');
SELECT is(pg_temp.t((SELECT event_ids FROM pg_temp.gl('Merge Request Hook', 'merge_request.update.json'))), 'dev.cdevents.change.updated.0.3.0', 'MR update -> change.updated');
SELECT is(pg_temp.t((SELECT event_ids FROM pg_temp.gl('Merge Request Hook', 'merge_request.approved.json'))), 'dev.cdevents.change.reviewed.0.3.0', 'MR approved -> change.reviewed');
SELECT is(pg_temp.t((SELECT event_ids FROM pg_temp.gl('Merge Request Hook', 'merge_request.merge.json'))), 'dev.cdevents.change.merged.0.3.0', 'MR merge -> change.merged');
SELECT is(pg_temp.t((SELECT event_ids FROM pg_temp.gl('Merge Request Hook', 'merge_request.close.json'))), 'dev.cdevents.change.abandoned.0.3.0', 'MR close -> change.abandoned');
SELECT is((SELECT status FROM pg_temp.gl('Push Hook', 'push.json')), 'ignored', 'a push to an existing branch is ignored');
SELECT is(pg_temp.t((SELECT event_ids FROM pg_temp.gl('Push Hook', 'push.new_branch.json'))), 'dev.cdevents.branch.created.0.3.0', 'push from 000 -> branch.created');
SELECT is(pg_temp.t((SELECT event_ids FROM pg_temp.gl('Push Hook', 'push.deleted_branch.json'))), 'dev.cdevents.branch.deleted.0.3.0', 'push to 000 -> branch.deleted');
SELECT is(pg_temp.ev((SELECT event_ids FROM pg_temp.gl('Tag Push Hook', 'tag_push.json'))) #>> '{subject,id}',
		  'pkg:gitlab/jsmith/example@v1.0.0', 'tag push -> artifact.published');
SELECT is(pg_temp.ev((SELECT event_ids FROM pg_temp.gl('Release Hook', 'release.json'))) #>> '{subject,id}',
		  'pkg:gitlab/exm-namespace/example-project@1.0.0', 'release -> artifact.published');
SELECT is((SELECT status FROM pg_temp.gl('Deployment Hook', 'deployment.running.json')), 'ignored', 'deployment running -> nothing');
DROP TABLE r;
CREATE TEMP TABLE r AS SELECT * FROM pg_temp.gl('Deployment Hook', 'deployment.json');
SELECT is(pg_temp.t((SELECT event_ids FROM r)), 'dev.cdevents.service.deployed.0.3.0', 'deployment success -> service.deployed');
SELECT is(pg_temp.ev((SELECT event_ids FROM r)) #>> '{subject,content,environment,id}', 'staging', 'deployment environment');
SELECT is(pg_temp.ev((SELECT event_ids FROM r)) #>> '{subject,content,artifactId}',
		  'pkg:gitlab/root/test-deployment-webhooks@279484c09fbe69ededfced8c1bb6e6d24616b468', 'deployment artifact is the commit');
SELECT is(pg_temp.ev((SELECT event_ids FROM r)) #>> '{context,timestamp}', '2021-04-28T19:50:00Z', 'status_changed_at with its offset');
DROP TABLE r;
CREATE TEMP TABLE r AS SELECT * FROM pg_temp.gl('Deployment Hook', 'deployment.failed.json');
SELECT is(pg_temp.t((SELECT event_ids FROM r)), 'dev.cdevents.incident.detected.0.3.0', 'deployment failed -> incident.detected');
SELECT is(pg_temp.ev((SELECT event_ids FROM r)) #>> '{subject,content,service,id}', 'root/test-deployment-webhooks', 'incident names the service');

-- ---------------------------------------------------------------- Argo CD
SELECT is((SELECT status FROM pg_temp.argo('sync_succeeded.json')), 'ignored', 'sync still running -> nothing');
DROP TABLE r;
CREATE TEMP TABLE r AS SELECT * FROM pg_temp.argo('app_deleted.json');
SELECT is(pg_temp.t((SELECT event_ids FROM r)), 'dev.cdevents.service.deployed.0.3.0', 'synced and healthy, first revision -> service.deployed');
SELECT is(pg_temp.ev((SELECT event_ids FROM r)) #>> '{subject,content,environment,id}', 'kubernetes.default.svc/argocd', 'environment is the destination');
SELECT is(pg_temp.ev((SELECT event_ids FROM r)) #>> '{subject,content,artifactId}',
		  'pkg:github/cdviz-dev/demo-cluster@224f6a2da219e7efa4178277707ac90007e133b9', 'no image: the source revision');
SELECT is((SELECT status FROM pg_temp.argo('health_recovered.json')), 'stored', 'another revision synced');
SELECT is((SELECT predicate FROM cdviz.environment_state WHERE service_id = 'aaaaaaaaa'), 'upgraded', 'a later revision -> service.upgraded');
DROP TABLE r;
CREATE TEMP TABLE r AS SELECT * FROM pg_temp.argo('health_degraded.json');
SELECT is(pg_temp.t((SELECT event_ids FROM r)), 'dev.cdevents.incident.detected.0.3.0', 'health degraded -> incident.detected');
SELECT is((SELECT status FROM pg_temp.argo('sync_failed.json')), 'stored', 'sync failed -> incident.detected');
SELECT is((SELECT count(DISTINCT subject_id) FROM cdviz.cdevents_lake WHERE subject = 'incident' AND context_source LIKE '/webhooks/argocd/%'),
		  1::bigint, 'failed sync and degraded health of one revision are one incident');
SELECT is((SELECT body FROM webhook_fixture WHERE path = 'argocd/health_recovered.json') #>> '{timestamp}', '2025-10-02T17:40:00Z', 'fixture sanity');
DROP TABLE r;
CREATE TEMP TABLE r AS SELECT * FROM cdviz.process_webhook('argocd', '{}',
	(SELECT jsonb_set(body, '{timestamp}', '"2025-10-02T17:45:00Z"') FROM webhook_fixture WHERE path = 'argocd/health_recovered.json'));
SELECT is((SELECT array_agg(l.type) FROM cdviz.cdevents_lake l WHERE l.id = ANY ((SELECT event_ids FROM r)::bigint[])),
		  ARRAY['dev.cdevents.incident.resolved.0.3.0'], 'healthy again on what already runs -> incident.resolved only');
SELECT is((SELECT state FROM cdviz.incidents WHERE source LIKE '/webhooks/argocd/%'), 'resolved', 'the incident reads as resolved');
DROP TABLE r;
CREATE TEMP TABLE r AS SELECT * FROM pg_temp.argo('sync_succeeded.images.json');
SELECT is((SELECT array_length(event_ids, 1) FROM r), 2, 'one event per image');
SELECT is(pg_temp.ev((SELECT event_ids FROM r)) #>> '{subject,content,artifactId}',
		  'pkg:oci/demo-api?repository_url=ghcr.io/cdviz-dev/demo-api&tag=1.2.0', 'the image is the artifact (pkg:oci)');
SELECT is(pg_temp.ev((SELECT event_ids FROM r), 2) #>> '{subject,id}', 'aaaaaaaaa/demo-web', 'several images: one service each');
SELECT is(pg_temp.ev((SELECT event_ids FROM pg_temp.argo('sync_succeeded.annotated.json'))) #>> '{subject,content,environment,id}',
		  'staging', 'the annotation cdviz.dev/environment names the environment');
SELECT is(pg_temp.t((SELECT event_ids FROM pg_temp.argo('app_deleted.with-deletion-timestamp.json'))),
		  'dev.cdevents.service.removed.0.3.0', 'deletion -> service.removed');

-- ---------------------------------------------------------------- Tekton
SELECT is(pg_temp.t((SELECT event_ids FROM pg_temp.tekton('pipelinerun-unknown-pending'))), 'dev.cdevents.pipelinerun.queued.0.3.0', 'pending -> pipelinerun.queued');
SELECT is(pg_temp.ev((SELECT event_ids FROM pg_temp.tekton('pipelinerun-started'))) #>> '{subject,content,pipelineName}', 'build-and-deploy', 'started -> pipelinerun.started with its pipeline');
SELECT is((SELECT status FROM pg_temp.tekton('pipelinerun-running')), 'ignored', 'running -> nothing');
SELECT is(pg_temp.ev((SELECT event_ids FROM pg_temp.tekton('pipelinerun-successful'))) #>> '{subject,content,outcome}', 'success', 'successful -> finished success');
SELECT is(pg_temp.ev((SELECT event_ids FROM pg_temp.tekton('pipelinerun-failed'))) #>> '{subject,content,outcome}', 'failure', 'failed -> finished failure');
SELECT is(pg_temp.ev((SELECT event_ids FROM pg_temp.tekton('taskrun-started'))) #>> '{subject,content,pipelineRun,id}', 'ci/build-and-deploy-run-x7k2p', 'taskrun linked to its pipeline run');
SELECT is(pg_temp.t((SELECT event_ids FROM pg_temp.tekton('taskrun-successful'))), 'dev.cdevents.taskrun.finished.0.3.0', 'taskrun successful -> taskrun.finished');
SELECT is(pg_temp.ev((SELECT event_ids FROM pg_temp.tekton('taskrun-failed-cancelled'))) #>> '{subject,content,outcome}', 'cancel', 'cancelled -> cancel');
SELECT is((SELECT delivery_key FROM cdviz.webhook_deliveries WHERE route = 'tekton' ORDER BY id LIMIT 1),
		  'ce:/apis///namespaces/ci//build-and-deploy-run-x7k2p:1f2e3d4c-0001', 'delivery key from ce-source and ce-id');

-- ------------------------------------------- deployed / upgraded, out of order
-- (the lake is read in a second statement: the first one's snapshot
-- predates the rows process_webhook stores)
CREATE FUNCTION pg_temp.deploy(ts text, artifact text, action text DEFAULT 'deploy')
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	ids bigint[];
BEGIN
	SELECT p.event_ids INTO ids FROM cdviz.process_webhook('jenkins', '{}',
		jsonb_build_object('name', 'api', 'url', 'job/api/', 'build',
			jsonb_build_object('phase', 'FINALIZED', 'status', 'SUCCESS', 'number', 1, 'timestamp', ts,
							   'full_url', 'https://jenkins.example.com/job/api/1/',
							   'parameters', jsonb_build_object('ENVIRONMENT', 'prod', 'ARTIFACT', artifact, 'ACTION', action)))) p;
	RETURN (SELECT l.predicate FROM cdviz.cdevents_lake l WHERE l.id = ids[1]);
END
$$;

-- a user-written transformer: Jenkins' notification plugin
\set schema pg_temp
\ir ../fixtures/webhooks/transform_jenkins.sql
SELECT is(cdviz.create_webhook('jenkins', 'pg_temp.transform_jenkins(jsonb,jsonb)', 'basic', 'jenkins:pw'),
		  '/webhooks/jenkins', 'a user transformer is a route like any other');
SELECT is(pg_temp.t((SELECT event_ids FROM cdviz.process_webhook('jenkins', '{}',
			'{"name": "api", "build": {"phase": "STARTED", "number": 7, "timestamp": "2024-05-01T10:00:00Z", "full_url": "https://jenkins.example.com/job/api/7/"}}'))),
		  'dev.cdevents.pipelinerun.started.0.3.0', 'the Jenkins transformer stores a pipelinerun.started end to end');
SELECT is(pg_temp.deploy('2024-05-02T10:00:00Z', 'pkg:oci/api@sha256%3Aa2'), 'deployed', 'out of order: the later deployment first -> deployed');
SELECT is(pg_temp.deploy('2024-05-01T10:00:00Z', 'pkg:oci/api@sha256%3Aa1'), 'deployed', 'the earlier one, late -> deployed (nothing ran before it)');
SELECT is(pg_temp.deploy('2024-05-03T10:00:00Z', 'pkg:oci/api@sha256%3Aa3'), 'upgraded', 'a third -> upgraded');
SELECT is(pg_temp.deploy('2024-05-01T12:00:00Z', 'pkg:oci/api@sha256%3Aa15'), 'upgraded', 'a late one between -> upgraded');
SELECT is(pg_temp.deploy('2024-05-04T10:00:00Z', NULL, 'remove'), 'removed', 'removed');
SELECT is(pg_temp.deploy('2024-05-05T10:00:00Z', 'pkg:oci/api@sha256%3Aa5'), 'deployed', 'after a removal -> deployed again');
SELECT is((SELECT artifact_id FROM cdviz.environment_inventory WHERE service_id = 'api' AND environment_id = 'prod'),
		  'pkg:oci/api@sha256%3Aa5', 'the inventory runs the latest');

-- ------------------------------------------- transformer failures, retransform
CREATE FUNCTION pg_temp.transform_buggy(headers jsonb, body jsonb)
RETURNS SETOF jsonb LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'bug: cannot read %', body ->> 'kind';
END
$$;
SELECT cdviz.create_webhook('buggy', 'pg_temp.transform_buggy(jsonb,jsonb)', 'none');
DROP TABLE r;
CREATE TEMP TABLE r AS SELECT * FROM cdviz.process_webhook('buggy', '{"X-Request-Id": "1"}',
	'{"kind": "deploy", "service": "billing", "env": "prod", "at": "2024-06-01T08:00:00Z"}');
SELECT is((SELECT status FROM r), 'failed', 'a raising transformer -> failed, not an error');
SELECT alike((SELECT error FROM r), '%bug: cannot read deploy%', 'its error is kept');
SELECT is((SELECT body ->> 'service' FROM cdviz.webhook_deliveries WHERE id = (SELECT delivery_id FROM r)), 'billing', 'the delivery is kept');
-- the fix
CREATE OR REPLACE FUNCTION pg_temp.transform_buggy(headers jsonb, body jsonb)
RETURNS SETOF jsonb LANGUAGE sql AS $$
	SELECT cdviz.webhook_cdevent('service.deployed', '/webhooks/buggy', body ->> 'at', body ->> 'service',
		jsonb_build_object('environment', jsonb_build_object('id', body ->> 'env'), 'artifactId', 'pkg:generic/billing@1'))
$$;
SELECT is((SELECT (deliveries, stored, failed)::text FROM cdviz.retransform('buggy', now() - interval '1 hour')), '(1,1,0)',
		  'retransform stores what the fixed transformer returns');
SELECT is((SELECT status FROM cdviz.webhook_deliveries WHERE id = (SELECT delivery_id FROM r)), 'stored', 'the delivery is now stored');
SELECT is((SELECT (deliveries, stored)::text FROM cdviz.retransform('buggy', only_failed => false)), '(1,0)',
		  'retransform again stores nothing');
-- invalid output is refused whole and kept
CREATE OR REPLACE FUNCTION pg_temp.transform_buggy(headers jsonb, body jsonb)
RETURNS SETOF jsonb LANGUAGE sql AS $$
	SELECT cdviz.webhook_cdevent('service.deployed', '/webhooks/buggy', body ->> 'at', body ->> 'service', '{}')
$$;
DROP TABLE r;
CREATE TEMP TABLE r AS SELECT * FROM cdviz.process_webhook('buggy', '{}', '{"service": "billing", "at": "2024-06-02T08:00:00Z"}');
SELECT is((SELECT status FROM r), 'failed', 'invalid output -> failed');
SELECT ok((SELECT problems FROM cdviz.webhook_deliveries WHERE id = (SELECT delivery_id FROM r)) @> '[{"index": 0}]',
		  'the problems are kept on the delivery');
SELECT is((SELECT count(*) FROM cdviz.rejected_events), 0::bigint, 'and nothing went to the dead letters');

-- ------------------------------------------- retention
UPDATE cdviz.webhook_deliveries SET received_at = now() - interval '40 days' WHERE route = 'tekton';
SELECT is(cdviz.prune_webhook_deliveries(), 8::bigint, 'deliveries older than the retention are pruned');

SELECT is((SELECT count(*) FROM cdviz.cdevents_lake l CROSS JOIN LATERAL cdviz.validate(l.payload) v), 0::bigint,
		  'every stored event passes validation');

SELECT * FROM finish();
ROLLBACK;
