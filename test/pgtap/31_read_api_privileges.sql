-- cdviz_reader (what Grafana uses) can read the whole read API and write
-- nothing: every view and read function works under SET ROLE cdviz_reader
-- on the fixture timeline, and every way of writing is refused.
BEGIN;
SET LOCAL timezone = 'UTC';
\ir ../fixtures/timeline.sql

SELECT plan(52);

-- catalogue-wide: no write privilege on any relation, SELECT on every view
SELECT is_empty(
	$$SELECT c.oid::regclass::text || ' ' || p.priv
	  FROM pg_class c
	  CROSS JOIN unnest(ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) AS p(priv)
	  WHERE c.relnamespace = 'cdviz'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
		AND has_table_privilege('cdviz_reader', c.oid, p.priv)$$,
	'cdviz_reader holds no write privilege on any table, view or sequence');
SELECT is_empty(
	$$SELECT c.oid::regclass::text FROM pg_class c
	  WHERE c.relnamespace = 'cdviz'::regnamespace AND c.relkind = 'v'
		AND NOT has_table_privilege('cdviz_reader', c.oid, 'SELECT')$$,
	'cdviz_reader may SELECT every view');
SELECT ok(NOT has_table_privilege('cdviz_reader', 'cdviz.rejected_events', 'SELECT'),
		  'dead letters (raw rejected input) are not part of the read API');
SELECT ok(NOT has_schema_privilege('cdviz_reader', 'cdviz', 'CREATE'), 'cdviz_reader cannot create objects in cdviz');
SELECT is_empty(
	$$SELECT p.oid::regprocedure::text FROM pg_proc p
	  WHERE p.pronamespace = 'cdviz'::regnamespace
		AND has_function_privilege('cdviz_reader', p.oid, 'EXECUTE')
		AND (p.provolatile = 'v' OR p.prorettype = 'trigger'::regtype)$$,
	'every function cdviz_reader may execute is read-only (STABLE or IMMUTABLE)');

SET ROLE cdviz_reader;

-- every view
SELECT lives_ok('SELECT * FROM cdviz.' || v, 'reader reads cdviz.' || v)
FROM unnest(ARRAY['pipeline_runs', 'task_runs', 'builds', 'test_case_runs', 'test_suite_runs',
				  'test_outputs', 'artifacts', 'changes', 'repositories', 'branches', 'environments',
				  'services', 'incidents', 'tickets', 'deployments', 'environment_inventory',
				  'dora_thresholds']) AS v;
SELECT is((SELECT count(*) FROM cdviz.environment_inventory), 7::bigint, 'reader sees the inventory');

-- every function
SELECT lives_ok('SELECT * FROM cdviz.' || f || '(''2024-03-01Z'', ''2024-03-31Z'')', 'reader calls cdviz.' || f)
FROM unnest(ARRAY['pipeline_runs_between', 'task_runs_between', 'builds_between',
				  'test_case_runs_between', 'test_suite_runs_between', 'artifacts_between',
				  'changes_between', 'repositories_between', 'branches_between',
				  'environments_between', 'services_between', 'incidents_between',
				  'tickets_between', 'dora_deployment_frequency', 'dora_lead_time',
				  'dora_change_failure_rate', 'dora_time_to_restore', 'dora_by_environment']) AS f;
SELECT lives_ok($$SELECT * FROM cdviz.environment_inventory_at('2024-03-10Z')$$, 'reader calls environment_inventory_at');
SELECT lives_ok($$SELECT * FROM cdviz.chain('chain-1')$$, 'reader calls chain');
SELECT lives_ok($$SELECT * FROM cdviz.related('ctx-p7', 3)$$, 'reader calls related');
SELECT lives_ok($$SELECT * FROM cdviz.purl_parse('pkg:oci/x@1')$$, 'reader calls purl_parse');

-- and writes nothing
SELECT throws_ok(
	$$INSERT INTO cdviz.cdevents_lake ("timestamp", context_id, context_source, type, subject, predicate, type_version, payload)
	  VALUES ('2024-03-02Z', 'x', 'x', 'dev.cdevents.service.deployed.0.3.0', 'service', 'deployed', '0.3.0', '{}')$$,
	'42501', NULL, 'reader cannot insert into the lake');
SELECT throws_ok($$DELETE FROM cdviz.cdevents_lake$$, '42501', NULL, 'reader cannot delete from the lake');
SELECT throws_ok($$UPDATE cdviz.environment_state SET artifact_id = 'x'$$, '42501', NULL, 'reader cannot update the state');
SELECT throws_ok($$INSERT INTO cdviz.environment_history VALUES (1, 'e', 's', 'deployed', 'a', now(), 'c')$$,
				 '42501', NULL, 'reader cannot insert history');
SELECT throws_ok($$INSERT INTO cdviz.test_outputs (test_output_id) VALUES ('x')$$, '42501', NULL,
				 'reader cannot insert through a view');
SELECT throws_ok($$SELECT cdviz.ingest('{}')$$, '42501', NULL, 'reader cannot ingest');
SELECT throws_ok($$SELECT cdviz.ensure_partition('2030-01-01Z')$$, '42501', NULL, 'reader cannot create partitions');

RESET ROLE;
SELECT * FROM finish();
ROLLBACK;
