-- No secret given to a sink or a webhook reaches cdviz_reader (what Grafana
-- logs in as).  Sinks and webhook routes are created with credentials in
-- every place one can be given (header values, URL user info, query
-- values, token, hmac_secret, webhook secrets, credential headers of a
-- delivery), each holding the marker S3KR1T; then a role that is only a
-- member of cdviz_reader reads every relation of schema cdviz it may read
-- (and the planner statistics of their columns), and calls every function
-- of the schema it may execute, and the marker must appear in none of
-- their rows.  The lists are taken from the catalog, so that a relation
-- or function added later is searched too.
BEGIN;
SET LOCAL timezone = 'UTC';
SET client_min_messages = warning;
\set QUIET on
\ir ../fixtures/timeline.sql
\set QUIET off

SELECT plan(23);

CREATE ROLE cdviz_secrets_probe NOLOGIN IN ROLE cdviz_reader;

-- ---- secrets, everywhere one can be given --------------------------------
SELECT cdviz.create_sink('sec-http', 'http',
	'http://S3KR1T-user-1:S3KR1T-pass-2@hooks.example:8443/in?api_key=S3KR1T-query-3&v=2',
	'{"headers": {"X-Api-Key": "S3KR1T-header-4", "Authorization": "Bearer S3KR1T-header-5"},
	  "token": "S3KR1T-token-6", "hmac_secret": "S3KR1T-hmac-7", "mode": "batch"}');
SELECT cdviz.create_sink('sec-alter', 'http', 'https://S3KR1T-solo-8@hooks.example/b',
	'{"headers": {"X-Trace": "S3KR1T-header-9"}}');
SELECT cdviz.alter_sink('sec-alter', target => 'https://S3KR1T-user-10:S3KR1T-pass-11@hooks.example/c',
	options => '{"headers": {"X-Trace": "S3KR1T-header-12", "X-Other": "S3KR1T-header-13"},
				 "token": "S3KR1T-token-14"}');
-- a NATS sink takes no credential option (cdviz.nats_url, superuser-only,
-- holds the server's credentials): its options are all public
SELECT cdviz.create_sink('sec-nats', 'nats', 'cdviz.{subject}', '{"jetstream": "never"}');
-- a Kafka sink's secret librdkafka settings (the rest of its config is public)
SELECT cdviz.create_sink('sec-kafka', 'kafka', 'cdevents',
	'{"brokers": "kafka.example:9092", "config": {"sasl.username": "public-user",
	  "sasl.password": "S3KR1T-kafka-25", "ssl.key.pem": "S3KR1T-kafka-26"}}');

-- a transformer that keeps every header it is given in the event it makes
CREATE FUNCTION public.secrets_probe_transform(headers jsonb, body jsonb)
RETURNS SETOF jsonb
LANGUAGE sql AS $$
	SELECT cdviz.webhook_cdevent('pipelinerun.started', '/secrets-probe', '2024-03-02T00:00:00Z',
								 body->>'run', jsonb_build_object('pipelineName', headers::text,
								 'uri', 'https://ci.example/probe'))
$$;
SELECT cdviz.create_webhook('sec-github', 'public.secrets_probe_transform(jsonb,jsonb)', 'github', 'S3KR1T-webhook-15');
SELECT cdviz.create_webhook('sec-basic', 'public.secrets_probe_transform(jsonb,jsonb)', 'basic',
	'S3KR1T-user-16:S3KR1T-pass-17');
SELECT cdviz.create_webhook('sec-bearer', 'public.secrets_probe_transform(jsonb,jsonb)', 'bearer', 'S3KR1T-bearer-18');
SELECT cdviz.alter_webhook('sec-bearer', secret => 'S3KR1T-bearer-19');
SELECT is(status, 'stored', 'a delivery with credential headers is stored')
FROM cdviz.process_webhook('sec-basic',
	'{"Authorization": "Basic S3KR1T-header-20", "X-Hub-Signature-256": "sha256=S3KR1T-header-21",
	  "X-Gitlab-Token": "S3KR1T-header-22", "Cookie": "session=S3KR1T-header-23",
	  "Proxy-Authorization": "Basic S3KR1T-header-24", "X-Request-Id": "public-id"}',
	'{"run": "secrets-probe-run"}');

-- the statistics readers may see (pg_stats) are those of the rows as stored
ANALYZE cdviz.sinks, cdviz.sink_progress, cdviz.webhooks, cdviz.cdevents_lake;

-- the secrets are kept, where the superuser reads them
SELECT is((SELECT count(*) FROM regexp_matches(
			  (SELECT string_agg(secrets::text, ' ') FROM cdviz.sink_secrets), 'S3KR1T-[a-z]+-[0-9]+', 'g')),
		  14::bigint, 'the sinks'' fourteen secrets (the replaced ones gone) are in cdviz.sink_secrets');
SELECT is((SELECT string_agg(secret, ' ' ORDER BY name) FROM cdviz.webhook_secrets),
		  'S3KR1T-user-16:S3KR1T-pass-17 S3KR1T-bearer-19 S3KR1T-webhook-15',
		  'the webhook secrets are in cdviz.webhook_secrets');

-- ---- everything the reader may read ----------------------------------------
-- Each readable relation of cdviz (its readable columns), the statistics
-- of cdviz columns, and the result of each function of cdviz the role may
-- execute, called with arguments of its types (times spanning a century).
-- Returns where the marker appears, and, as 'error:', what could not be
-- read.
CREATE FUNCTION pg_temp.reader_sees(marker text)
RETURNS TABLE (place text, found text)
LANGUAGE plpgsql AS $$
DECLARE
	r record;
	cols text;
	args text;
BEGIN
	FOR r IN
		SELECT c.oid::regclass AS rel FROM pg_class c
		WHERE c.relnamespace = 'cdviz'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
		  AND has_any_column_privilege(c.oid, 'SELECT')
		ORDER BY 1::text
	LOOP
		SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO cols
		FROM pg_attribute a
		WHERE a.attrelid = r.rel AND a.attnum > 0 AND NOT a.attisdropped
		  AND has_column_privilege(r.rel, a.attnum, 'SELECT');
		BEGIN
			RETURN QUERY EXECUTE format(
				'SELECT %L, left(t::text, 200) FROM (SELECT %s FROM %s) t WHERE strpos(t::text, $1) > 0',
				r.rel::text, cols, r.rel) USING marker;
		EXCEPTION WHEN OTHERS THEN
			RETURN QUERY SELECT r.rel::text, 'error: ' || SQLERRM;
		END;
	END LOOP;

	RETURN QUERY
		SELECT format('pg_stats %s.%s', s.tablename, s.attname), left(s::text, 200)
		FROM pg_stats s
		WHERE s.schemaname = 'cdviz' AND strpos(s::text, marker) > 0;

	FOR r IN
		SELECT p.oid::regprocedure AS fn, p.proname, p.proargtypes::oid[] AS argtypes
		FROM pg_proc p
		WHERE p.pronamespace = 'cdviz'::regnamespace AND p.prokind = 'f'
		  AND has_function_privilege(p.oid, 'EXECUTE')
		  AND p.prorettype <> 'trigger'::regtype
		  AND NOT (p.prorettype = 'record'::regtype AND p.proallargtypes IS NULL)
		ORDER BY 1::text
	LOOP
		-- the first of two times is the start of the range
		SELECT string_agg(CASE
				WHEN a.t = 'timestamptz'::regtype AND a.nth = 1 AND a.ntimes > 1 THEN '''1970-01-01Z''::timestamptz'
				WHEN a.t = 'timestamptz'::regtype THEN '''2070-01-01Z''::timestamptz'
				WHEN a.t = 'interval'::regtype THEN '''100 years''::interval'
				WHEN a.t IN ('integer'::regtype, 'bigint'::regtype) THEN '5'
				ELSE format('NULL::%s', a.t::regtype)
			END, ', ' ORDER BY a.ord) INTO args
		FROM (SELECT u.t, u.ord,
					 count(*) FILTER (WHERE u.t = 'timestamptz'::regtype) OVER (ORDER BY u.ord) AS nth,
					 count(*) FILTER (WHERE u.t = 'timestamptz'::regtype) OVER () AS ntimes
			  FROM unnest(r.argtypes) WITH ORDINALITY AS u(t, ord)) a;
		BEGIN
			RETURN QUERY EXECUTE format(
				'SELECT %L, left(t::text, 200) FROM cdviz.%I(%s) t WHERE strpos(t::text, $1) > 0',
				r.fn::text, r.proname, coalesce(args, '')) USING marker;
		EXCEPTION WHEN OTHERS THEN
			RETURN QUERY SELECT r.fn::text, 'error: ' || SQLERRM;
		END;
	END LOOP;
END
$$;

SET ROLE cdviz_secrets_probe;

-- the scan does find what the reader may read
SELECT isnt_empty($$SELECT * FROM pg_temp.reader_sees('secrets-probe-run')$$,
				  'the scan finds a value the reader may read (the probe delivery''s event)');
SELECT isnt_empty($$SELECT * FROM pg_temp.reader_sees('/webhooks/sec-bearer') WHERE place = 'cdviz.webhook_routes'$$,
				  'the scan reads the webhook routes');
SELECT isnt_empty($$SELECT * FROM pg_temp.reader_sees('sec-alter') WHERE place = 'cdviz.sink_status'$$,
				  'the scan reads the sink status');
SELECT isnt_empty($$SELECT * FROM pg_temp.reader_sees('api-ci') WHERE place LIKE 'cdviz.pipeline_runs_between(%'$$,
				  'the scan calls the read functions over the whole timeline');

SELECT is_empty($$SELECT * FROM pg_temp.reader_sees('S3KR1T')$$,
				'no relation, statistic or function result cdviz_reader may read holds a secret');
SELECT is_empty($$SELECT * FROM pg_temp.reader_sees('zzz-no-such-value') WHERE found LIKE 'error:%'$$,
				'every relation and function cdviz_reader may use was read');

-- what the reader sees instead: the secret parts redacted
SELECT is((SELECT target FROM cdviz.sinks WHERE name = 'sec-http'),
		  'http://***@hooks.example:8443/in?api_key=***&v=***',
		  'the URL''s user info and query values are shown as ***');
SELECT is((SELECT options FROM cdviz.sinks WHERE name = 'sec-http'),
		  '{"mode": "batch", "headers": {"X-Api-Key": "***", "Authorization": "***"}}'::jsonb,
		  'header names are shown, their values as ***, token and hmac_secret not at all');
SELECT is((SELECT secret_keys FROM cdviz.sinks WHERE name = 'sec-http'),
		  '{headers,hmac_secret,target,token}'::text[], 'secret_keys names the secret parts');
SELECT is((SELECT st.target || ' ' || s.options::text FROM cdviz.sink_status st JOIN cdviz.sinks s USING (name)
		   WHERE name = 'sec-alter'),
		  'https://***@hooks.example/c {"headers": {"X-Other": "***", "X-Trace": "***"}}',
		  'alter_sink follows the same rules');
SELECT is((SELECT target || ' ' || options::text FROM cdviz.sinks WHERE name = 'sec-nats'),
		  'cdviz.{subject} {"jetstream": "never"}', 'a sink without secrets is shown as given');

RESET ROLE;

-- options copied from cdviz.sinks, *** and all, keep the secrets they hide
SELECT cdviz.alter_sink('sec-http', target => (SELECT target FROM cdviz.sinks WHERE name = 'sec-http'),
	options => (SELECT options || '{"token": "***", "batch_size": 5}' FROM cdviz.sinks WHERE name = 'sec-http'));
SELECT is((SELECT secrets FROM cdviz.sink_secrets JOIN cdviz.sinks s ON s.id = sink_id WHERE s.name = 'sec-http'),
		  '{"token": "S3KR1T-token-6",
			"target": "http://S3KR1T-user-1:S3KR1T-pass-2@hooks.example:8443/in?api_key=S3KR1T-query-3&v=2",
			"headers": {"X-Api-Key": "S3KR1T-header-4", "Authorization": "Bearer S3KR1T-header-5"}}'::jsonb,
		  'alter_sink: a secret given as *** keeps its value; one left out (hmac_secret) goes');
SELECT is((SELECT options FROM cdviz.sinks WHERE name = 'sec-http'),
		  '{"mode": "batch", "batch_size": 5, "headers": {"X-Api-Key": "***", "Authorization": "***"}}'::jsonb,
		  'and the other options change');
-- a header removed, one added, the URL replaced by one without credentials
SELECT cdviz.alter_sink('sec-http', target => 'https://hooks.example/plain',
	options => '{"headers": {"X-Api-Key": "***", "X-New": "S3KR1T-header-25"}}');
SELECT is((SELECT s.target || ' ' || x.secrets::text FROM cdviz.sink_secrets x JOIN cdviz.sinks s ON s.id = x.sink_id
		   WHERE s.name = 'sec-http'),
		  'https://hooks.example/plain {"headers": {"X-New": "S3KR1T-header-25", "X-Api-Key": "S3KR1T-header-4"}}',
		  'alter_sink: a new URL and new headers replace the old ones');
SELECT cdviz.alter_sink('sec-http', options => '{}');
SELECT ok(NOT EXISTS (SELECT FROM cdviz.sink_secrets x JOIN cdviz.sinks s ON s.id = x.sink_id WHERE s.name = 'sec-http')
		  AND (SELECT secret_keys FROM cdviz.sinks WHERE name = 'sec-http') = '{}',
		  'a sink left without secrets has no row in cdviz.sink_secrets');

-- the last error the dispatcher records: the secrets it holds are taken out
SELECT is(cdviz._sink_redact(
			'HTTP 500: echo Authorization: Basic x; X-Trace: S3KR1T-header-12 to S3KR1T-user-10:S3KR1T-pass-11@ (S3KR1T-pass-11)',
			(SELECT x.secrets FROM cdviz.sink_secrets x JOIN cdviz.sinks s ON s.id = x.sink_id WHERE s.name = 'sec-alter')),
		  'HTTP 500: echo Authorization: Basic x; X-Trace: *** to ***@ (***)',
		  'secrets in a message to record are replaced by ***');
SELECT is(cdviz._redact_url(u), want, 'URL shown: ' || u)
FROM (VALUES ('https://tok3n@h.example', 'https://***@h.example'),
			 ('https://u:p@ss@h.example:1/a@b?x&y=1#f', 'https://***@h.example:1/a@b?***&y=***#f'),
			 ('http://h.example/a@b', 'http://h.example/a@b'),
			 ('cdviz.{subject}', 'cdviz.{subject}')) AS t(u, want);

SELECT * FROM finish();
ROLLBACK;
