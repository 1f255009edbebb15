-- Failed deployment recovery time and rework rate on a constructed
-- history whose figures are worked out by hand below, loaded in three
-- delivery orders that must give the same figures.  Window: April 2025
-- (UTC), [2025-04-01, 2025-05-01).
--
-- prod/pay
--   P1 04-02 10:00 deployed pay@1   inc-A detected 11:00, reported 11:30,
--                                   resolved 13:00
--   P2 04-03 10:00 upgraded pay@2   inc-B detected 10:30, resolved 12:00
--   R1 04-03 10:45 rolledback to pay@1
--   P3 04-05 10:00 upgraded pay@3   inc-C detected 04-05 12:00, resolved
--                                   04-07 12:00: open across P4 and P5
--   P4 04-06 10:00 upgraded pay@4
--   P5 04-07 10:00 upgraded pay@5
--   P6 04-08 10:00 upgraded pay@6   its change ch-6 links to bug ticket BUG-1
--   P7 04-09 10:00 upgraded pay@7   its change ch-7 links to TASK-1 (a task)
-- prod/cart
--   C1 04-10 10:00 deployed cart@1  inc-D detected 10:20, never resolved
--   C2 04-11 16:00 upgraded cart@2
-- prod/shop
--   S1 04-15 10:00 deployed shop@1  inc-E detected 04-20 08:00 in chain
--                                   chain-e, resolved 09:00
--   S2 04-21 10:00 upgraded shop@2  change ch-s2 created 04-20 08:30 and
--                                   shop@2 packaged 10:00, in chain-e
-- prod/mail
--   M1 04-25 10:00 deployed mail@1  inc-F detected 11:00, never resolved,
--                                   no later deployment: not recovered
-- dev/pay
--   D1 04-01 12:00 deployed pay@1
--   D2 04-07 14:00 upgraded pay@6   (the bug fix, in dev first)
BEGIN;
SET LOCAL timezone = 'UTC';
\ir ../fixtures/type_versions.sql

SELECT plan(37);

-- One CDEvent of spec 0.5.1.
CREATE FUNCTION pg_temp.ev(name text, subj text, pred text, sid text, ts text, content jsonb,
						   chain text DEFAULT NULL, link_to text DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql
AS $$
SELECT jsonb_build_object(
	'context',
	jsonb_build_object('specversion', '0.5.1', 'id', 'ctx-' || name, 'source', '/dora/' || subj,
					   'type', 'dev.cdevents.' || subj || '.' || pred || '.'
							   || (SELECT v05 FROM cdevents_type_versions WHERE sp = subj || '.' || pred),
					   'timestamp', ts)
	|| CASE WHEN chain IS NOT NULL THEN jsonb_build_object('chainId', chain) ELSE '{}' END
	|| CASE WHEN link_to IS NOT NULL
			THEN jsonb_build_object('links', jsonb_build_array(jsonb_build_object(
					 'linkType', 'RELATION', 'linkKind', 'TRIGGER',
					 'target', jsonb_build_object('contextId', 'ctx-' || link_to))))
			ELSE '{}' END,
	'subject', jsonb_build_object('id', sid, 'source', '/dora/' || subj, 'content', content))
$$;

CREATE FUNCTION pg_temp.deploy(name text, pred text, env text, svc text, artifact text, ts text)
RETURNS jsonb
LANGUAGE sql
AS $$
SELECT pg_temp.ev(name, 'service', pred, svc, ts,
				  jsonb_build_object('environment', jsonb_build_object('id', env), 'artifactId', artifact))
$$;

CREATE FUNCTION pg_temp.incident(name text, pred text, inc text, env text, svc text, ts text,
								 chain text DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql
AS $$
SELECT pg_temp.ev(name, 'incident', pred, inc, ts,
				  jsonb_build_object('environment', jsonb_build_object('id', env),
									 'service', jsonb_build_object('id', svc))
				  || CASE WHEN pred = 'reported'
						  THEN jsonb_build_object('ticketURI', 'https://tickets.example/' || inc)
						  ELSE '{}' END, chain)
$$;

CREATE TEMP TABLE dora_events (seq serial PRIMARY KEY, payload jsonb NOT NULL);
INSERT INTO dora_events (payload) VALUES
(pg_temp.deploy('d1', 'deployed', 'dev', 'pay', 'pkg:oci/pay@1', '2025-04-01T12:00:00Z')),
(pg_temp.deploy('p1', 'deployed', 'prod', 'pay', 'pkg:oci/pay@1', '2025-04-02T10:00:00Z')),
(pg_temp.incident('ia-det', 'detected', 'inc-A', 'prod', 'pay', '2025-04-02T11:00:00Z')),
(pg_temp.incident('ia-rep', 'reported', 'inc-A', 'prod', 'pay', '2025-04-02T11:30:00Z')),
(pg_temp.incident('ia-res', 'resolved', 'inc-A', 'prod', 'pay', '2025-04-02T13:00:00Z')),
(pg_temp.deploy('p2', 'upgraded', 'prod', 'pay', 'pkg:oci/pay@2', '2025-04-03T10:00:00Z')),
(pg_temp.incident('ib-det', 'detected', 'inc-B', 'prod', 'pay', '2025-04-03T10:30:00Z')),
(pg_temp.deploy('r1', 'rolledback', 'prod', 'pay', 'pkg:oci/pay@1', '2025-04-03T10:45:00Z')),
(pg_temp.incident('ib-res', 'resolved', 'inc-B', 'prod', 'pay', '2025-04-03T12:00:00Z')),
(pg_temp.deploy('p3', 'upgraded', 'prod', 'pay', 'pkg:oci/pay@3', '2025-04-05T10:00:00Z')),
(pg_temp.incident('ic-det', 'detected', 'inc-C', 'prod', 'pay', '2025-04-05T12:00:00Z')),
(pg_temp.deploy('p4', 'upgraded', 'prod', 'pay', 'pkg:oci/pay@4', '2025-04-06T10:00:00Z')),
(pg_temp.deploy('p5', 'upgraded', 'prod', 'pay', 'pkg:oci/pay@5', '2025-04-07T10:00:00Z')),
(pg_temp.incident('ic-res', 'resolved', 'inc-C', 'prod', 'pay', '2025-04-07T12:00:00Z')),
-- the bug fix: ticket, change linking to it, artifact, dev then prod
(pg_temp.ev('bug1-created', 'ticket', 'created', 'BUG-1', '2025-04-07T09:00:00Z',
			'{"summary": "pay rounds totals", "ticketType": "bug", "creator": "alice", "uri": "https://tickets.example/BUG-1"}')),
(pg_temp.ev('ch6-created', 'change', 'created', 'ch-6', '2025-04-07T10:00:00Z',
			'{"description": "Round totals half-even", "repository": {"id": "org/pay"}}', NULL, 'bug1-created')),
(pg_temp.ev('pay6-packaged', 'artifact', 'packaged', 'pkg:oci/pay@6', '2025-04-07T12:00:00Z',
			'{"change": {"id": "ch-6"}}')),
(pg_temp.deploy('d2', 'upgraded', 'dev', 'pay', 'pkg:oci/pay@6', '2025-04-07T14:00:00Z')),
(pg_temp.deploy('p6', 'upgraded', 'prod', 'pay', 'pkg:oci/pay@6', '2025-04-08T10:00:00Z')),
-- planned work linked to a task ticket: not rework
(pg_temp.ev('task1-created', 'ticket', 'created', 'TASK-1', '2025-04-08T09:00:00Z',
			'{"summary": "pay: export as CSV", "ticketType": "task", "creator": "alice", "uri": "https://tickets.example/TASK-1"}')),
(pg_temp.ev('ch7-created', 'change', 'created', 'ch-7', '2025-04-08T10:00:00Z',
			'{"description": "Hotfix: CSV export", "repository": {"id": "org/pay"}}', NULL, 'task1-created')),
(pg_temp.ev('pay7-packaged', 'artifact', 'packaged', 'pkg:oci/pay@7', '2025-04-08T12:00:00Z',
			'{"change": {"id": "ch-7"}}')),
(pg_temp.deploy('p7', 'upgraded', 'prod', 'pay', 'pkg:oci/pay@7', '2025-04-09T10:00:00Z')),
-- cart: recovered by its next deployment
(pg_temp.deploy('c1', 'deployed', 'prod', 'cart', 'pkg:oci/cart@1', '2025-04-10T10:00:00Z')),
(pg_temp.incident('id-det', 'detected', 'inc-D', 'prod', 'cart', '2025-04-10T10:20:00Z')),
(pg_temp.deploy('c2', 'upgraded', 'prod', 'cart', 'pkg:oci/cart@2', '2025-04-11T16:00:00Z')),
-- shop: the fix of inc-E is built in the incident's chain
(pg_temp.deploy('s1', 'deployed', 'prod', 'shop', 'pkg:oci/shop@1', '2025-04-15T10:00:00Z')),
(pg_temp.incident('ie-det', 'detected', 'inc-E', 'prod', 'shop', '2025-04-20T08:00:00Z', 'chain-e')),
(pg_temp.ev('chs2-created', 'change', 'created', 'ch-s2', '2025-04-20T08:30:00Z',
			'{"description": "Fix basket totals", "repository": {"id": "org/shop"}}', 'chain-e')),
(pg_temp.incident('ie-res', 'resolved', 'inc-E', 'prod', 'shop', '2025-04-20T09:00:00Z', 'chain-e')),
(pg_temp.ev('shop2-packaged', 'artifact', 'packaged', 'pkg:oci/shop@2', '2025-04-20T10:00:00Z',
			'{"change": {"id": "ch-s2"}}', 'chain-e')),
(pg_temp.deploy('s2', 'upgraded', 'prod', 'shop', 'pkg:oci/shop@2', '2025-04-21T10:00:00Z')),
-- mail: failed, not recovered yet
(pg_temp.deploy('m1', 'deployed', 'prod', 'mail', 'pkg:oci/mail@1', '2025-04-25T10:00:00Z')),
(pg_temp.incident('if-det', 'detected', 'inc-F', 'prod', 'mail', '2025-04-25T11:00:00Z'));

-- Stores the events one statement each, in the order the query lists
-- their seq.
CREATE FUNCTION pg_temp.load(order_by text)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
	r record;
BEGIN
	FOR r IN EXECUTE 'SELECT payload FROM dora_events ORDER BY ' || order_by LOOP
		PERFORM cdviz.ingest(r.payload);
	END LOOP;
END
$$;

-- Every figure of this test, without lake ids (they differ between loads).
CREATE FUNCTION pg_temp.figures()
RETURNS jsonb
LANGUAGE sql
AS $$
SELECT jsonb_build_object(
	'recovery', (SELECT jsonb_agg(jsonb_build_array(k.env, k.svc, to_jsonb(f)) ORDER BY k.n)
				 FROM (VALUES (1, 'prod', NULL), (2, 'prod', 'pay'), (3, NULL, 'cart'), (4, NULL, 'shop'),
							  (5, 'dev', NULL)) AS k(n, env, svc)
				 CROSS JOIN LATERAL cdviz.dora_failed_deployment_recovery_time('2025-04-01Z', '2025-05-01Z', k.env, k.svc) AS f),
	'rework', (SELECT jsonb_agg(jsonb_build_array(r.environment_id, r.service_id, r.deployed_at, r.action, r.reasons)
							   ORDER BY r.deployed_at)
			   FROM cdviz.dora_rework('2025-04-01Z', '2025-05-01Z') AS r),
	'rate', (SELECT to_jsonb(r) FROM cdviz.dora_rework_rate('2025-04-01Z', '2025-05-01Z') AS r),
	'failed', (SELECT to_jsonb(r) FROM cdviz.dora_change_failure_rate('2025-04-01Z', '2025-05-01Z', 'prod') AS r))
$$;

-- ------------------------------------------------ three delivery orders
SAVEPOINT orders;
SELECT pg_temp.load('seq DESC');
SELECT pg_temp.figures() AS reversed \gset
ROLLBACK TO SAVEPOINT orders;
SELECT pg_temp.load('md5(seq::text)');
SELECT pg_temp.figures() AS shuffled \gset
ROLLBACK TO SAVEPOINT orders;
-- all in one statement: the lake trigger folds causes, links and chains
-- of one batch together
SELECT count(*) FROM cdviz.ingest_batch((SELECT jsonb_agg(payload ORDER BY seq DESC) FROM dora_events));
SELECT pg_temp.figures() AS batched \gset
ROLLBACK TO SAVEPOINT orders;
SELECT pg_temp.load('seq');

SELECT is(pg_temp.figures(), :'reversed'::jsonb,
		  'the events delivered newest first give the same figures');
SELECT is(pg_temp.figures(), :'shuffled'::jsonb,
		  'the events delivered in a shuffled order give the same figures');
SELECT is(pg_temp.figures(), :'batched'::jsonb,
		  'the events stored by one statement give the same figures');

-- ------------------------------------------------------ recovery time
-- Failed prod deployments (cdviz.dora_failed_deployments) and their recovery:
--   P1 inc-A resolved 13:00                          10:00 -> 13:00  =   3h
--   P2 inc-B resolved 12:00, rollback R1 10:45 first 10:00 -> 10:45  = 0.75h
--   P3 inc-C resolved 04-07 12:00          04-05 10:00 -> 04-07 12:00 =  50h
--   C1 inc-D open, no rollback: next deployment C2
--                                          04-10 10:00 -> 04-11 16:00 =  30h
--   S1 inc-E resolved 04-20 09:00          04-15 10:00 -> 04-20 09:00 = 119h
--   M1 inc-F open, no rollback, no later deployment: not recovered, not
--      in the sample
-- P4, P5, P6, P7, C2, S2: no signal.  Sorted 0.75 3 30 50 119: median 30h,
-- p90 at rank 3.6 = 50 + 0.6 * 69 = 91.4h = 91h24; median between a day
-- and a week: medium.
SELECT results_eq(
	$$SELECT * FROM cdviz.dora_failed_deployment_recovery_time('2025-04-01Z', '2025-05-01Z', 'prod')$$,
	$$VALUES (interval '30 hours', interval '91 hours 24 minutes', 5::bigint, 'medium'::text)$$,
	'recovery time in prod: by resolution, by rollback, by the next deployment');
SELECT set_eq(
	$$SELECT h.service_id || ' ' || to_char(h.valid_from, 'MM-DD HH24:MI')
	  FROM cdviz.dora_failed_deployments('2025-04-01Z', '2025-05-01Z', 'prod') AS f
	  JOIN cdviz.environment_history AS h USING (event_id)$$,
	ARRAY['pay 04-02 10:00', 'pay 04-03 10:00', 'pay 04-05 10:00', 'cart 04-10 10:00', 'shop 04-15 10:00',
		  'mail 04-25 10:00'],
	'the failed deployments of the change failure rate');
SELECT results_eq(
	$$SELECT service_id || ' ' || to_char(deployed_at, 'MM-DD HH24:MI'), recovered_by, recovery_time
	  FROM cdviz.dora_failed_deployment_recoveries('2025-04-01Z', '2025-05-01Z', 'prod') ORDER BY deployed_at$$,
	$$VALUES ('pay 04-02 10:00', 'incident resolved'::text, interval '3 hours'),
			 ('pay 04-03 10:00', 'rollback', interval '45 minutes'),
			 ('pay 04-05 10:00', 'incident resolved', interval '50 hours'),
			 ('cart 04-10 10:00', 'next deployment', interval '30 hours'),
			 ('shop 04-15 10:00', 'incident resolved', interval '119 hours'),
			 ('mail 04-25 10:00', NULL, NULL)$$,
	'each failed deployment with what recovered it, and the one not recovered yet');
-- P2 is recovered by its rollback (10:45), before inc-B's resolution (12:00)
SELECT results_eq(
	$$SELECT * FROM cdviz.dora_failed_deployment_recovery_time('2025-04-03Z', '2025-04-04Z', 'prod', 'pay')$$,
	$$VALUES (interval '45 minutes', interval '45 minutes', 1::bigint, 'elite'::text)$$,
	'a rollback before the incident''s resolution is the recovery');
-- P1 alone: inc-A resolved 3h after it
SELECT results_eq(
	$$SELECT median, sample_size, tier FROM cdviz.dora_failed_deployment_recovery_time('2025-04-02Z', '2025-04-03Z', 'prod')$$,
	$$VALUES (interval '3 hours', 1::bigint, 'high'::text)$$,
	'recovery by the resolution of the incident charged to the deployment');
-- C1 alone: inc-D never resolved, no rollback: C2 30h later
SELECT results_eq(
	$$SELECT * FROM cdviz.dora_failed_deployment_recovery_time('2025-04-01Z', '2025-05-01Z', NULL, 'cart')$$,
	$$VALUES (interval '30 hours', interval '30 hours', 1::bigint, 'medium'::text)$$,
	'recovery by the next deployment when the incident stays open');
-- pay in prod: 3, 0.75, 50: median 3h (high), p90 at rank 1.8 = 3 + 0.8 * 47
-- = 40.6h = 40h36
SELECT results_eq(
	$$SELECT * FROM cdviz.dora_failed_deployment_recovery_time('2025-04-01Z', '2025-05-01Z', 'prod', 'pay')$$,
	$$VALUES (interval '3 hours', interval '40 hours 36 minutes', 3::bigint, 'high'::text)$$,
	'service filter: pay in prod');
-- shop, every environment: S1 119h, under a week: medium
SELECT results_eq(
	$$SELECT median, sample_size, tier FROM cdviz.dora_failed_deployment_recovery_time('2025-04-01Z', '2025-05-01Z', NULL, 'shop')$$,
	$$VALUES (interval '119 hours', 1::bigint, 'medium'::text)$$,
	'service filter over every environment: shop');
SELECT results_eq(
	$$SELECT * FROM cdviz.dora_failed_deployment_recovery_time('2025-04-01Z', '2025-05-01Z', 'dev')$$,
	$$VALUES (NULL::interval, NULL::interval, 0::bigint, NULL::text)$$,
	'environment filter: no failed deployment in dev, no figure and no tier');
-- C1 before its next deployment: not recovered yet, not in the sample
SELECT is((SELECT sample_size FROM cdviz.dora_failed_deployment_recovery_time('2025-04-10Z', '2025-04-11Z', 'prod', 'cart')),
		  1::bigint, 'the next deployment that recovers a deployment is found after the range too');

-- ------------------------------------------------------- rework rate
-- prod, deployed + upgraded + rolledback: P1..P7, R1 (8), C1, C2, S1, S2, M1 = 13
--   R1  rollback; inc-B (10:30-12:00) was open at 10:45
--   P4  inc-C (04-05 12:00 - 04-07 12:00) open at 04-06 10:00
--   P5  inc-C still open at 04-07 10:00
--   P6  pay@6's change ch-6 links to BUG-1 (ticketType bug)
--   C2  inc-D, never resolved, open at 04-11 16:00
--   S2  shop@2 packaged and ch-s2 created in chain-e after inc-E's detection
-- P2 (inc-B detected after it), P6's neighbours, P7 (linked to a task),
-- S1, M1: not rework.  6 / 13 = 0.4615.
SELECT results_eq(
	$$SELECT * FROM cdviz.dora_rework_rate('2025-04-01Z', '2025-05-01Z', 'prod')$$,
	$$VALUES (0.4615::numeric, 6::bigint, 13::bigint, 13::bigint)$$,
	'rework rate in prod: 6 of 13 deployments');
SELECT results_eq(
	$$SELECT service_id || ' ' || to_char(deployed_at, 'MM-DD HH24:MI') || ' ' || action, reasons
	  FROM cdviz.dora_rework('2025-04-01Z', '2025-05-01Z', 'prod') ORDER BY deployed_at$$,
	$$VALUES ('pay 04-03 10:45 rolledback', ARRAY['open incident', 'rollback']),
			 ('pay 04-06 10:00 upgraded', ARRAY['open incident']),
			 ('pay 04-07 10:00 upgraded', ARRAY['open incident']),
			 ('pay 04-08 10:00 upgraded', ARRAY['link to ticket']),
			 ('cart 04-11 16:00 upgraded', ARRAY['open incident']),
			 ('shop 04-21 10:00 upgraded', ARRAY['chain of incident'])$$,
	'rework in prod, each with its reasons: rollback, open incident, link to a bug ticket, chain of an incident');
-- dev: D1, D2; D2 ships pay@6, the bug fix: 1 / 2
SELECT results_eq(
	$$SELECT * FROM cdviz.dora_rework_rate('2025-04-01Z', '2025-05-01Z', 'dev')$$,
	$$VALUES (0.5000::numeric, 1::bigint, 2::bigint, 2::bigint)$$,
	'environment filter: the bug fix is rework in dev too');
-- pay in prod: P1..P7, R1 = 8; R1, P4, P5, P6 = 4
SELECT results_eq(
	$$SELECT rate, rework, deployments FROM cdviz.dora_rework_rate('2025-04-01Z', '2025-05-01Z', 'prod', 'pay')$$,
	$$VALUES (0.5000::numeric, 4::bigint, 8::bigint)$$,
	'service filter: pay in prod');
-- every environment: 15 deployments, 7 rework
SELECT results_eq(
	$$SELECT rate, rework, deployments FROM cdviz.dora_rework_rate('2025-04-01Z', '2025-05-01Z')$$,
	$$VALUES (0.4667::numeric, 7::bigint, 15::bigint)$$,
	'every environment');
-- [04-06, 04-07): P4 alone, rework through inc-C opened the day before
SELECT results_eq(
	$$SELECT rate, rework, deployments FROM cdviz.dora_rework_rate('2025-04-06Z', '2025-04-07Z', 'prod')$$,
	$$VALUES (1.0000::numeric, 1::bigint, 1::bigint)$$,
	'an incident opened before the range makes a deployment of the range rework');
SELECT is((SELECT count(*) FROM cdviz.dora_rework('2025-04-08Z', '2025-04-09Z', 'prod')), 1::bigint,
		  'the link to the bug ticket is found from a range that starts after the ticket');
SELECT results_eq(
	$$SELECT count(*) FILTER (WHERE w.event_id IS NOT NULL), count(*)
	  FROM generate_series(timestamptz '2025-04-01Z', '2025-04-30Z', interval '1 day') AS d
	  CROSS JOIN LATERAL cdviz.dora_rework(d, d + interval '1 day', 'prod') AS w$$,
	$$VALUES (6::bigint, 6::bigint)$$,
	'day by day, the same deployments are rework as over the month: a verdict does not depend on the range');
SELECT results_eq(
	$$SELECT * FROM cdviz.dora_rework_rate('2025-06-01Z', '2025-07-01Z', 'prod')$$,
	$$VALUES (NULL::numeric, 0::bigint, 0::bigint, 0::bigint)$$,
	'no deployment: no rate');

-- ------------------------------------------------- the site's rules
-- ch-7's description starts with "Hotfix": P7 becomes rework (7 / 13);
-- a rule with rework = false takes dev out (D2: 0 / 2)
INSERT INTO cdviz.dora_rework_rules (rule_name, field, pattern)
VALUES ('hotfix changes', 'change_description', '(?i)^hotfix');
SELECT results_eq(
	$$SELECT rate, rework FROM cdviz.dora_rework_rate('2025-04-01Z', '2025-05-01Z', 'prod')$$,
	$$VALUES (0.5385::numeric, 7::bigint)$$,
	'a rule on the change description adds the hotfix');
SELECT results_eq(
	$$SELECT reasons FROM cdviz.dora_rework('2025-04-09Z', '2025-04-10Z', 'prod')$$,
	$$VALUES (ARRAY['rule: hotfix changes'])$$,
	'the rule is named as the reason');
INSERT INTO cdviz.dora_rework_rules VALUES ('dev is never rework', 'environment_id', '^dev$', false);
SELECT results_eq(
	$$SELECT rate, rework FROM cdviz.dora_rework_rate('2025-04-01Z', '2025-05-01Z', 'dev')$$,
	$$VALUES (0.0000::numeric, 0::bigint)$$,
	'a rule with rework = false wins over a link to a bug ticket');
INSERT INTO cdviz.dora_rework_rules VALUES ('pay artifacts', 'artifact_id', '^pkg:oci/pay@(1|2)$');
SELECT results_eq(
	$$SELECT rework FROM cdviz.dora_rework_rate('2025-04-01Z', '2025-05-01Z', 'prod', 'pay')$$,
	$$VALUES (7::bigint)$$,
	'a rule on the artifact: P1, P2 added to R1, P4, P5, P6, P7 (R1 ships pay@1 too)');
SELECT throws_ok(
	$$INSERT INTO cdviz.dora_rework_rules VALUES ('broken', 'service_id', '(unclosed')$$,
	'2201B', NULL, 'an invalid regular expression is refused when the rule is stored');
SELECT throws_ok(
	$$INSERT INTO cdviz.dora_rework_rules VALUES ('unknown field', 'branch', 'hotfix/')$$,
	'23514', NULL, 'a rule on a field the function does not know is refused');
SET LOCAL ROLE cdviz_reader;
SELECT is((SELECT count(*) FROM cdviz.dora_rework_rules), 3::bigint, 'cdviz_reader reads the rules');
SELECT throws_ok(
	$$DELETE FROM cdviz.dora_rework_rules$$,
	'42501', NULL, 'cdviz_reader cannot change the rules');
SELECT results_eq(
	$$SELECT rework FROM cdviz.dora_rework_rate('2025-04-01Z', '2025-05-01Z', 'prod')$$,
	$$VALUES (9::bigint)$$,
	'cdviz_reader gets the rules'' verdicts: prod 6 + P7 + P1 + P2');
RESET ROLE;

-- --------------------------------------------- dora_by_environment, tiers
SELECT results_eq(
	$$SELECT environment_id, recovery_time_median, recovery_tier, rework_rate
	  FROM cdviz.dora_by_environment('2025-04-01Z', '2025-05-01Z') ORDER BY 1$$,
	$$VALUES ('dev'::text, NULL::interval, NULL::text, 0.0000::numeric),
			 ('prod', interval '30 hours', 'medium', 0.6923)$$,
	'dora_by_environment: recovery time and rework rate per environment (rules included: prod 9 / 13)');
-- Every column of every row against the function it comes from, for that
-- environment: over the month, per service, over a day with a failure and
-- its rollback, over an empty range and over a month without deployments.
SELECT results_eq(
	$$SELECT k.n, b.*
	  FROM (VALUES (1, '2025-04-01Z'::timestamptz, '2025-05-01Z'::timestamptz, NULL::text),
				   (2, '2025-04-01Z', '2025-05-01Z', 'pay'), (3, '2025-04-01Z', '2025-05-01Z', 'cart'),
				   (4, '2025-04-03Z', '2025-04-04Z', NULL), (5, '2025-04-10Z', '2025-04-10Z', NULL),
				   (6, '2025-06-01Z', '2025-07-01Z', NULL)) AS k(n, from_ts, to_ts, svc)
	  CROSS JOIN LATERAL cdviz.dora_by_environment(k.from_ts, k.to_ts, k.svc) AS b
	  ORDER BY k.n, b.environment_id$$,
	$$SELECT k.n, e.environment_id, df.deployments, df.per_day_per_service, df.tier, lt.median,
			 lt.p90, lt.tier, cfr.rate, cfr.failed, cfr.tier, ttr.median, ttr.sample_size, ttr.tier,
			 fdrt.median, fdrt.tier, rw.rate
	  FROM (VALUES (1, '2025-04-01Z'::timestamptz, '2025-05-01Z'::timestamptz, NULL::text),
				   (2, '2025-04-01Z', '2025-05-01Z', 'pay'), (3, '2025-04-01Z', '2025-05-01Z', 'cart'),
				   (4, '2025-04-03Z', '2025-04-04Z', NULL), (5, '2025-04-10Z', '2025-04-10Z', NULL),
				   (6, '2025-06-01Z', '2025-07-01Z', NULL)) AS k(n, from_ts, to_ts, svc)
	  CROSS JOIN (SELECT DISTINCT environment_id FROM cdviz.environment_inventory) AS e
	  LEFT JOIN LATERAL cdviz.dora_deployment_frequency(k.from_ts, k.to_ts, e.environment_id, k.svc) AS df ON true
	  LEFT JOIN LATERAL cdviz.dora_lead_time(k.from_ts, k.to_ts, e.environment_id, k.svc) AS lt ON true
	  LEFT JOIN LATERAL cdviz.dora_change_failure_rate(k.from_ts, k.to_ts, e.environment_id, k.svc) AS cfr ON true
	  LEFT JOIN LATERAL cdviz.dora_time_to_restore(k.from_ts, k.to_ts, e.environment_id, k.svc) AS ttr ON true
	  LEFT JOIN LATERAL cdviz.dora_failed_deployment_recovery_time(k.from_ts, k.to_ts, e.environment_id, k.svc) AS fdrt ON true
	  LEFT JOIN LATERAL cdviz.dora_rework_rate(k.from_ts, k.to_ts, e.environment_id, k.svc) AS rw ON true
	  ORDER BY k.n, e.environment_id$$,
	'dora_by_environment: each row equals the functions for its environment, per range and service');
SELECT results_eq(
	$$SELECT tier, rule FROM cdviz.dora_thresholds WHERE metric = 'failed_deployment_recovery_time'$$,
	$$VALUES ('elite'::text, 'median under 1 hour'::text), ('high', 'median under 1 day'),
			 ('medium', 'median under 1 week'), ('low', 'median of 1 week or more')$$,
	'the recovery time tiers');

-- ---------------------------------------------------------- lead time
-- April's first deployments matched to their change: P6 (ch-6 created
-- 04-07 10:00, deployed 04-08 10:00) 24h, P7 (ch-7) 24h, S2 (ch-s2 created
-- 04-20 08:30, deployed 04-21 10:00) 25h30; the nine other prod artifacts
-- have no packaged event: unmatched.  Median 24h (a day: high), p90 at
-- rank 2.8 = 24h + 0.8 * 1h30 = 25h12.  Dev: pay@6 4h, pay@1 unmatched.
SELECT results_eq(
	$$SELECT * FROM cdviz.dora_lead_time('2025-04-01Z', '2025-05-01Z', 'prod')$$,
	$$VALUES (interval '24 hours', interval '25 hours 12 minutes', 3::bigint, 9::bigint, 'high'::text)$$,
	'lead time in prod: three artifacts matched to their change, nine unmatched');
SELECT results_eq(
	$$SELECT * FROM cdviz.dora_lead_time('2025-04-01Z', '2025-05-01Z', 'dev')$$,
	$$VALUES (interval '4 hours', interval '4 hours', 1::bigint, 1::bigint, 'elite'::text)$$,
	'lead time in dev');
-- mail@2, deployed before its change was created: unmatched, not a
-- negative lead time
SAVEPOINT late_change;
SELECT cdviz.ingest(pg_temp.ev('ch8-created', 'change', 'created', 'ch-8', '2025-04-26T12:00:00Z',
							   '{"description": "Mail retries", "repository": {"id": "org/mail"}}'));
SELECT cdviz.ingest(pg_temp.ev('mail2-packaged', 'artifact', 'packaged', 'pkg:oci/mail@2',
							   '2025-04-26T09:00:00Z', '{"change": {"id": "ch-8"}}'));
SELECT cdviz.ingest(pg_temp.deploy('m2', 'upgraded', 'prod', 'mail', 'pkg:oci/mail@2', '2025-04-26T10:00:00Z'));
SELECT l.* FROM cdviz.dora_lead_time('2025-04-01Z', '2025-05-01Z', 'prod') AS l \gset late_
-- rolled back before the test's verdict, which the rollback would undo
ROLLBACK TO SAVEPOINT late_change;
SELECT results_eq(
	format('VALUES (%L::interval, %L::interval, %L::bigint, %L::bigint, %L::text)', :'late_median',
		   :'late_p90', :'late_sample_size', :'late_unmatched', :'late_tier'),
	$$VALUES (interval '24 hours', interval '25 hours 12 minutes', 3::bigint, 10::bigint, 'high'::text)$$,
	'a change after the deployment makes it unmatched');

SELECT * FROM finish();
ROLLBACK;
