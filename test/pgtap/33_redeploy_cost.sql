-- The lake trigger's cost per event does not grow with the history of a
-- key: redeploying one artifact again and again to one (environment,
-- service), as Argo CD re-syncs do, reads a handful of rows per event, not
-- the key's history (it used to walk back through every redeployment to
-- find the previous, different artifact).
BEGIN;
SELECT plan(5);

CREATE FUNCTION pg_temp.deploy(n int, artifact text)
RETURNS jsonb LANGUAGE sql AS $$
	SELECT jsonb_build_object(
		'context', jsonb_build_object('version', '0.4.1', 'id', 'redeploy-' || n, 'source', '/argocd',
									  'type', 'dev.cdevents.service.deployed.0.2.0',
									  'timestamp', to_char((timestamptz '2024-07-01 00:00Z' + n * interval '1 minute')
														   AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')),
		'subject', jsonb_build_object('id', 'shop', 'source', '/argocd', 'type', 'service',
									  'content', jsonb_build_object('environment', jsonb_build_object('id', 'prod'),
																	'artifactId', artifact)))
$$;

-- one deployment of b, then 2,000 of a, one statement each
SELECT cdviz.ingest(pg_temp.deploy(0, 'pkg:oci/shop@sha256%3Abbbb'));
SELECT count(cdviz.ingest(pg_temp.deploy(g, 'pkg:oci/shop@sha256%3Aaaaa'))) FROM generate_series(1, 2000) AS g;

CREATE TEMP TABLE reads_before AS
	SELECT relname, coalesce(idx_tup_fetch, 0) AS fetched, coalesce(seq_tup_read, 0) AS scanned
	FROM pg_stat_xact_user_tables WHERE schemaname = 'cdviz';
SELECT cdviz.ingest(pg_temp.deploy(2001, 'pkg:oci/shop@sha256%3Aaaaa'));
CREATE TEMP TABLE reads AS
	SELECT t.relname, coalesce(t.idx_tup_fetch, 0) - b.fetched AS fetched,
		   coalesce(t.seq_tup_read, 0) - b.scanned AS scanned
	FROM pg_stat_xact_user_tables t JOIN reads_before b USING (relname)
	WHERE t.schemaname = 'cdviz';

SELECT cmp_ok((SELECT fetched FROM reads WHERE relname = 'environment_history'), '<', 10::bigint,
			  'one more redeployment reads a handful of history rows, not the key''s 2,001');
SELECT cmp_ok((SELECT fetched FROM reads WHERE relname = 'environment_artifacts'), '<', 10::bigint,
			  'and a handful of environment_artifacts rows');
SELECT is((SELECT sum(scanned) FROM reads WHERE relname LIKE 'environment%'), 0::numeric,
		  'and scans no environment table');
SELECT is((SELECT (artifact_id, previous_artifact_id)::text FROM cdviz.environment_state
		   WHERE environment_id = 'prod' AND service_id = 'shop'),
		  '(pkg:oci/shop@sha256%3Aaaaa,pkg:oci/shop@sha256%3Abbbb)',
		  'the previous artifact is the last different one');

-- a late deployment of c before the last redeployments becomes the previous one
SELECT cdviz.ingest(jsonb_set(pg_temp.deploy(1500, 'pkg:oci/shop@sha256%3Acccc'), '{context,id}', '"late-c"'));
SELECT is((SELECT previous_artifact_id FROM cdviz.environment_state
		   WHERE environment_id = 'prod' AND service_id = 'shop'),
		  'pkg:oci/shop@sha256%3Acccc', 'a late deployment of another artifact is the previous one');

SELECT * FROM finish();
ROLLBACK;
