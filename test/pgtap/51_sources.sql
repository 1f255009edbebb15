-- Sources managed with SQL: every kind's known options accepted, and each
-- wrong definition refused with SQLSTATE 22023 and a message (and hint)
-- naming what is wrong: an unknown option, a missing required one, a
-- value of the wrong type or out of range, a location of the wrong shape.
-- Secrets go to cdviz.source_secrets: a member of cdviz_reader sees which
-- options are secret (secret_keys), never a value.  The sources the
-- settings define are changed through the settings only.  Transformers:
-- only where a source hands items to one (folder and s3, format junit,
-- tap or metadata; oci), required by format metadata; their dead letters
-- are run again by cdviz.retransform_source(), not replayed as CDEvents,
-- the source's counters put right.
BEGIN;
SET client_min_messages = warning;

SELECT plan(80);

-- the error a statement raises: SQLSTATE, message and hint
CREATE FUNCTION pg_temp.error_of(stmt text, OUT state text, OUT message text, OUT hint text)
LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE stmt;
	state := 'no error';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
END
$$;

-- ---- the options of each kind -----------------------------------------------
SELECT is(array_agg(option ORDER BY option),
		  '{after,batch_lines,done_path,environment,format,max_json_size,max_line_size,max_report_cases,max_report_size,pattern,poll_interval}',
		  'folder options') FROM cdviz.source_options('folder');
SELECT is(array_agg(option ORDER BY option),
		  '{access_key_id,batch_lines,endpoint,environment,format,max_json_size,max_line_size,max_report_cases,max_report_size,path_style,pattern,poll_interval,region,secret_access_key}',
		  's3 options') FROM cdviz.source_options('s3');
SELECT is(array_agg(option ORDER BY option), '{consumer,stream,url}', 'nats options')
FROM cdviz.source_options('nats');
SELECT is(string_agg(option || '=' || default_value || ' ' || type, ', ' ORDER BY option),
		  'environment= string, format=cdevents string, max_report_cases=100000 integer, max_report_size=65536 integer',
		  'report options of s3, with their defaults')
FROM cdviz.source_options('s3') WHERE option IN ('format', 'max_report_size', 'max_report_cases', 'environment');
SELECT is(array_agg(option ORDER BY option), '{batch_size,batch_timeout_ms,brokers,config,group,start}',
		  'kafka options') FROM cdviz.source_options('kafka');

-- every known option of each kind, with a value of its type
SELECT lives_ok($$SELECT cdviz.create_source('all-folder', 'folder', '/srv/events/', '{"poll_interval": 2,
	"pattern": "*.jsonl", "after": "move", "done_path": "/srv/done", "batch_lines": 100,
	"max_line_size": 64, "max_json_size": 1024, "format": "junit", "max_report_size": 2048,
	"max_report_cases": 3, "environment": "ci"}')$$, 'a folder source with every option');
SELECT lives_ok($$SELECT cdviz.create_source('all-s3', 's3', 's3://ci-events/builds/', '{"endpoint": "http://127.0.0.1:9000",
	"region": "eu-west-1", "path_style": true, "access_key_id": "AKIA-PROBE-1", "secret_access_key": "PROBE-SECRET-2",
	"poll_interval": 60, "pattern": "*.json", "batch_lines": 10, "max_line_size": 8, "max_json_size": 16,
	"format": "tap", "max_report_size": 1, "environment": ""}')$$,
	'an s3 source with every option');
SELECT lives_ok($$SELECT cdviz.create_source('all-nats', 'nats', 'ci.events.>, cd.events.>',
	'{"url": "nats://probe:PROBE-PASS-3@127.0.0.1:4222", "stream": "CI", "consumer": "cdviz-ci"}')$$,
	'a nats source with every option');
SELECT lives_ok($$SELECT cdviz.create_source('all-kafka', 'kafka', 'ci-events,cd-events', '{"brokers": "127.0.0.1:9092",
	"group": "cdviz", "batch_size": 1000, "batch_timeout_ms": 50, "start": "latest",
	"config": {"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN", "sasl.username": "cdviz",
			   "sasl.password": "PROBE-PASS-5", "ssl.key.pem": "PROBE-KEY-6"}}', paused => true)$$,
	'a kafka source with every option');
SELECT is(string_agg(name || ' ' || location, ', ' ORDER BY id),
		  'all-folder /srv/events, all-s3 s3://ci-events/builds/, all-nats ci.events.>,cd.events.>, all-kafka ci-events,cd-events',
		  'locations are stored without a final slash or spaces') FROM cdviz.sources;

-- ---- what is refused ---------------------------------------------------------
SELECT is(e.state || ' ' || e.message || ' / ' || e.hint,
		  '22023 unknown option "interval" for a source of kind folder / known options: after, batch_lines, done_path, environment, format, max_json_size, max_line_size, max_report_cases, max_report_size, pattern, poll_interval.',
		  'an unknown option, with the known ones in the hint')
FROM pg_temp.error_of($$SELECT cdviz.create_source('x', 'folder', '/x', '{"interval": 5}')$$) e;

-- each row: a definition, the SQLSTATE and message it gets (LIKE pattern)
SELECT alike(e.state || ' ' || e.message, t.expected, t.what)
FROM (VALUES
	('x', 'kafka', 't', '{"brokers": "b:9092", "stream": "S"}',
	 '22023 unknown option "stream" for a source of kind kafka', 'an option of another kind'),
	('x', 'ftp', '/x', '{}', '22023 unknown source kind "ftp"', 'an unknown kind'),
	('x', 'nats', 'a.b', '{}', '22023 option "url" is required for a source of kind nats', 'nats needs its url'),
	('x', 'kafka', 't', '{}', '22023 option "brokers" is required for a source of kind kafka', 'kafka needs its brokers'),
	('x', 'folder', '/x', '{"after": "move"}',
	 '22023 option "done_path" (an absolute path) is required when "after" is move', 'moving needs a done_path'),
	('x', 'folder', '/x', '{"poll_interval": "5"}',
	 '22023 option "poll_interval" of a source of kind folder must be an integer, not "5"', 'a number as a string'),
	('x', 's3', 's3://bkt', '{"batch_lines": 1.5}',
	 '22023 option "batch_lines" of a source of kind s3 must be an integer, not 1.5', 'a fraction'),
	('x', 's3', 's3://bkt', '{"path_style": "yes"}',
	 '22023 option "path_style" of a source of kind s3 must be true or false, not "yes"', 'a boolean as a string'),
	('x', 'nats', 'a', '{"url": "nats://h", "stream": 5}',
	 '22023 option "stream" of a source of kind nats must be a string, not 5', 'a number for a string'),
	('x', 'kafka', 't', '{"brokers": "b", "config": "acks=all"}',
	 '22023 option "config" of a source of kind kafka must be an object of settings and their values',
	 'kafka settings not an object'),
	('x', 'folder', '/x', '{"poll_interval": 0}', '22023 option "poll_interval" must be from 1 to 86400, not 0',
	 'out of range'),
	('x', 'folder', '/x', '{"after": "archive"}', '22023 option "after" must be keep, delete or move, not "archive"',
	 'an unknown choice'),
	('x', 'folder', '/x', '{"format": "xml"}', '22023 option "format" must be cdevents, junit, tap or metadata, not "xml"',
	 'an unknown format'),
	('x', 's3', 's3://bkt', '{"format": 1}', '22023 option "format" of a source of kind s3 must be a string, not 1',
	 'a format that is not a string'),
	('x', 'folder', '/x', '{"format": "junit", "max_report_size": 0}',
	 '22023 option "max_report_size" must be from 1 to 1048576, not 0', 'a report size out of range'),
	('x', 'folder', '/x', '{"format": "junit", "max_report_cases": 1000001}',
	 '22023 option "max_report_cases" must be from 1 to 1000000, not 1000001', 'a case limit out of range'),
	('x', 'kafka', 't', '{"brokers": "b", "start": "now"}', '22023 option "start" must be earliest or latest, not "now"',
	 'an unknown start'),
	('x', 'folder', '/x', '[]', '22023 source options must be a JSON object', 'options not an object'),
	('x', 'folder', 'events', '{}', '22023 the location of a folder source must be an absolute path, not "events"',
	 'a relative folder'),
	('x', 's3', 'https://bkt/x', '{}', '22023 the location of an s3 source must be s3://bucket/prefix, not "https://bkt/x"',
	 'an s3 location that is not s3://'),
	('x', 'nats', (SELECT string_agg('s' || i, ',') FROM generate_series(1, 17) i), '{"url": "nats://h"}',
	 '22023 the location of a nats source must be a comma-separated list of at most 16 subjects, not "s1,%,s17"',
	 'more than 16 NATS subjects'),
	('x', 'kafka', 'a topic', '{"brokers": "b"}',
	 '22023 the location of a kafka source must be a comma-separated list of topics, not "a topic"',
	 'a topic name with a space'),
	('x', 'folder', '/srv/events/', '{}', '23505 source "all-folder" reads "/srv/events" already', 'one source per folder'),
	('x', 'folder', '/srv/events/agent-1', '{}', '23505 source "all-folder" reads "/srv/events/agent-1" already',
	 'nor a folder inside it'),
	('x', 's3', 's3://ci-events', '{}', '23505 source "all-s3" reads "s3://ci-events/" already',
	 'nor a prefix holding another''s'),
	('settings.folder', 'folder', '/elsewhere', '{}',
	 '22023 source names starting with "settings." are kept for the sources the settings define',
	 'settings. names are kept for the settings')
) AS t (name, kind, location, options, expected, what),
LATERAL pg_temp.error_of(format('SELECT cdviz.create_source(%L, %L, %L, %L)', t.name, t.kind, t.location, t.options)) e;

-- ---- transformers --------------------------------------------------------------
CREATE FUNCTION pg_temp.tr(meta jsonb, body jsonb) RETURNS SETOF jsonb LANGUAGE sql AS 'SELECT body';
SELECT alike(e.state || ' ' || e.message || ' / ' || e.hint, t.expected, t.what)
FROM (VALUES
	('{"format": "metadata"}', NULL,
	 '22023 a source of format metadata needs a transformer / Example: CREATE FUNCTION my_files(meta jsonb, body jsonb) RETURNS SETOF jsonb %transformer => ''my_files(jsonb,jsonb)''.',
	 'format metadata without a transformer, with an example in the hint'),
	('{}', 'pg_temp.tr(jsonb,jsonb)',
	 '0A000 a source of format cdevents takes no transformer / Give the source the format whose items the transformer reads: %',
	 'format cdevents takes none'),
	('{"format": "junit"}', 'pg_catalog.lower(text)',
	 '22023 a source transformer must be a function (meta jsonb, body jsonb) RETURNS SETOF jsonb, not lower(text) / Example: %',
	 'a function of another shape')
) AS t (options, transformer, expected, what),
LATERAL pg_temp.error_of(format('SELECT cdviz.create_source(''x'', ''folder'', ''/x'', %L, transformer => %L)',
								t.options, t.transformer)) e;
SELECT is(e.state || ' ' || e.message || ' / ' || e.hint,
		  '0A000 sources of kind kafka take no transformer / Post the tool''s payloads to a webhook route instead, which applies a transformer to each (cdviz.create_webhook()), or drop them as files into a folder source.',
		  'message sources take none')
FROM pg_temp.error_of($$SELECT cdviz.create_source('x', 'kafka', 't', '{"brokers": "b:9092"}', 'pg_temp.tr(jsonb,jsonb)')$$) e;
SELECT lives_ok($$SELECT cdviz.create_source('tr-junit', 'folder', '/srv/junit', '{"format": "junit"}', 'pg_temp.tr(jsonb,jsonb)');
				  SELECT cdviz.create_source('tr-files', 's3', 's3://drops/', '{"format": "metadata"}', 'pg_temp.tr(jsonb,jsonb)')$$,
				'a junit folder and an s3 prefix of format metadata with a transformer');
SELECT lives_ok($$SELECT cdviz.create_source('tr-oci', 'oci', 'https://registry.example', '{}', 'pg_temp.tr(jsonb,jsonb)')$$,
				'an oci source with a transformer (it has no format)');
SELECT is(string_agg(name || ' ' || (transformer::oid = 'pg_temp.tr(jsonb,jsonb)'::regprocedure), ', ' ORDER BY name),
		  'tr-files true, tr-junit true, tr-oci true', 'their transformer is kept')
FROM cdviz.sources WHERE name LIKE 'tr-%';
SELECT is(e.state || ' ' || e.message, '22023 unknown option "format" for a source of kind oci',
		  'an oci source takes no format')
FROM pg_temp.error_of($$SELECT cdviz.alter_source('tr-oci', options => '{"format": "metadata"}')$$) e;
SELECT is(e.state || ' ' || e.message, '22023 a source of format metadata needs a transformer',
		  'alter: removing the transformer of a metadata source')
FROM pg_temp.error_of($$SELECT cdviz.alter_source('tr-files', transformer => '-')$$) e;
SELECT is(e.state || ' ' || e.message, '0A000 a source of format cdevents takes no transformer',
		  'alter: format cdevents while a transformer is kept')
FROM pg_temp.error_of($$SELECT cdviz.alter_source('tr-junit', options => '{}')$$) e;
SELECT cdviz.alter_source('tr-junit', transformer => '-');
SELECT is(transformer, NULL, 'alter: transformer => ''-'' removes it') FROM cdviz.sources WHERE name = 'tr-junit';
SELECT is(e.state || ' ' || e.message || ' / ' || e.hint,
		  '55000 source "tr-junit" has no transformer / SELECT cdviz.alter_source(''tr-junit'', transformer => ''my_transform(jsonb,jsonb)'');',
		  'retransform_source needs a transformer')
FROM pg_temp.error_of($$SELECT cdviz.retransform_source('tr-junit')$$) e;
SELECT is(e.state || ' ' || e.message, '42704 source "nope" does not exist', 'retransform_source of no source')
FROM pg_temp.error_of($$SELECT cdviz.retransform_source('nope')$$) e;
SELECT is((SELECT concat_ws(' ', items, stored, duplicates, rejected, failed) FROM cdviz.retransform_source('tr-files')),
		  '0 0 0 0 0', 'retransform_source of a source without dead letters');

-- the dead letter of a transformer, as a source keeps it: retransformed
-- with the source's transformer, not replayed as a CDEvent
INSERT INTO cdviz.rejected_events (origin, origin_ref, raw, problems, envelope)
VALUES ('s3', 's3://drops/a.json', '{"context": {"id": "x"}}', '[]',
		'{"mode": "transformer", "source": "tr-files", "sqlstate": "22012",
		  "meta": {"id": "a.json@sha256:00", "source_uri": "s3://drops/", "mtime": "2024-05-01T10:00:00Z"}}'),
	   ('http', '127.0.0.1 /cdevents', '{}', '[]', NULL);
SELECT is(e.state || ' ' || e.message, '42809 rejected event ' || r.id || ' is the input of a source''s transformer, not a CDEvent',
		  'replay_rejected refuses a transformer''s dead letter')
FROM cdviz.rejected_events r, LATERAL pg_temp.error_of(format('SELECT cdviz.replay_rejected(%s)', r.id)) e
WHERE r.origin_ref = 's3://drops/a.json';
SELECT is(e.state || ' ' || e.message, '42809 rejected event ' || r.id || ' is not the input of a source''s transformer',
		  '_source_retransform refuses any other dead letter')
FROM cdviz.rejected_events r, LATERAL pg_temp.error_of(format('SELECT cdviz._source_retransform(%s)', r.id)) e
WHERE r.origin = 'http';
-- pg_temp.tr returns the body: an invalid event, a dead letter of its own
SELECT is((SELECT concat_ws(' ', items, stored, duplicates, rejected, failed) FROM cdviz.retransform_source('tr-files')),
		  '1 0 0 1 0', 'retransform_source: the output is validated, an invalid event a dead letter');
SELECT is(string_agg(origin || ' ' || origin_ref || ' ' || coalesce(envelope->>'mode', '-'), ', '), 's3 s3://drops/a.json[0] -',
		  'the transformer''s dead letter is gone, its invalid output kept as s3://drops/a.json[0]')
FROM cdviz.rejected_events WHERE origin_ref LIKE 's3://drops/%';

-- an oci source's dead letter: the tag made again from its meta (the
-- built-in mapping, as a transformer may start from it), its event's id
-- from meta.id; the source counts it as an event, no longer a rejection
CREATE FUNCTION pg_temp.oci_tr(meta jsonb, body jsonb) RETURNS SETOF jsonb LANGUAGE sql
AS 'SELECT cdviz.oci_source_events(meta, body)';
SELECT cdviz.alter_source('tr-oci', transformer => 'pg_temp.oci_tr(jsonb,jsonb)');
INSERT INTO cdviz.source_progress (source_id, events, rejected)
SELECT id, 5, 2 FROM cdviz.sources WHERE name = 'tr-oci';
INSERT INTO cdviz.rejected_events (origin, origin_ref, raw, problems, envelope)
VALUES ('oci', 'registry.example/acme/api:1.2@sha256:ab12', '', '[]',
		'{"mode": "transformer", "source": "tr-oci", "sqlstate": "22012",
		  "meta": {"source": "tr-oci", "kind": "oci", "id": "registry.example/acme/api:1.2@sha256:ab12@2024-05-01T10:00:00Z",
				   "source_uri": "https://registry.example", "mtime": "2024-05-01T10:00:00Z",
				   "registry": "https://registry.example", "host": "registry.example", "repository": "acme/api",
				   "tag": "1.2", "digest": "sha256:ab12", "media_type": null, "previous_digest": null,
				   "seen_at": "2024-05-01T10:00:00Z"}}');
SELECT is((SELECT concat_ws(' ', items, stored, duplicates, rejected, failed) FROM cdviz.retransform_source('tr-oci')),
		  '1 1 0 0 0', 'retransform_source of an oci dead letter stores its event');
SELECT is(concat_ws(' ', context_id, type, subject_id, "timestamp" = '2024-05-01T10:00:00Z'),
		  'registry.example/acme/api:1.2@sha256:ab12@2024-05-01T10:00:00Z#0 dev.cdevents.artifact.published.0.3.0 '
		  'pkg:oci/api@sha256%3Aab12?repository_url=registry.example/acme/api&tag=1.2 t',
		  'its event: the id from meta.id, the subject the image''s purl, the time the tag was seen')
FROM cdviz.cdevents_lake WHERE context_source = 'https://registry.example';
SELECT is(concat_ws(' ', x.events, x.duplicates, x.rejected, (SELECT count(*) FROM cdviz.rejected_events WHERE origin = 'oci')),
		  '6 0 1 0', 'the oci source counts one more event and one rejection less; the dead letter is gone')
FROM cdviz.source_status x WHERE x.name = 'tr-oci';

-- the built-in mapping of reports, for transformers
SELECT is(string_agg((e->'context'->>'id') || ' ' || (e->'context'->>'timestamp') || ' '
					 || (e->'subject'->'content'->'environment'->>'id'), ', '),
		  'f@sha256:00#s0.c0 2024-05-01T10:00:00Z qa, f@sha256:00#s0 2024-05-01T10:00:00Z qa',
		  'report_cdevents: the built-in events of a report model')
FROM cdviz.report_cdevents('{"id": "f@sha256:00", "source_uri": "file:///x", "name": "a.xml", "mtime": "2024-05-01T10:00:00Z"}',
						   '{"format": "junit", "suites": [{"name": "s", "cases": [{"name": "c", "outcome": "success"}]}]}', 'qa') e;
SELECT is(e.state || ' ' || e.message, '22023 the body is not a test report''s model', 'report_cdevents of a scalar')
FROM pg_temp.error_of($$SELECT cdviz.report_cdevents('{"id": "f"}', '"x"')$$) e;
SELECT is(e.state, '22023', 'report_cdevents of no model')
FROM pg_temp.error_of($$SELECT cdviz.report_cdevents('{"id": "f", "source_uri": "file:///x"}', '{"suites": 1}')$$) e;
-- the case limit: the default, or that of the source meta names (all-folder: 3)
SELECT is(e.state || ' ' || e.message || ' / ' || e.hint,
		  '54000 the report holds more than 100000 suites and cases / The limit is the option max_report_cases of the source meta names (default 100000, at most 1000000); a source''s reports over it are dead letters.',
		  'report_cdevents: a body over the default case limit')
FROM pg_temp.error_of($$SELECT cdviz.report_cdevents('{"id": "f", "source_uri": "file:///x"}',
	jsonb_build_object('suites', jsonb_build_array(jsonb_build_object('cases',
		(SELECT jsonb_agg(jsonb_build_object('name', 't' || i, 'outcome', 'success')) FROM generate_series(1, 100000) i)))))$$) e;
SELECT is(e.state || ' ' || e.message, '54000 the report holds more than 3 suites and cases',
		  'report_cdevents: the limit of the source meta names')
FROM pg_temp.error_of($$SELECT cdviz.report_cdevents('{"id": "f", "source_uri": "file:///x", "source": "all-folder"}',
	'{"suites": [{"cases": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}]}')$$) e;
SELECT is((SELECT count(*) FROM cdviz.report_cdevents('{"id": "f", "source_uri": "file:///x", "source": "all-folder"}',
	'{"suites": [{"cases": [{"name": "a"}, {"name": "b"}]}]}')), 3::bigint,
		  'report_cdevents: a body within it gives its events');
SELECT ok(has_function_privilege('cdviz_reader', 'cdviz.report_cdevents(jsonb,jsonb,text)', 'EXECUTE')
		  AND NOT has_function_privilege('public', 'cdviz.report_cdevents(jsonb,jsonb,text)', 'EXECUTE'),
		  'report_cdevents: cdviz_reader''s to call, not PUBLIC''s');

-- ---- alter, pause, resume, drop ------------------------------------------------
SELECT lives_ok($$SELECT cdviz.alter_source('all-s3', options => '{"endpoint": "http://127.0.0.1:9001",
	"path_style": true, "access_key_id": "***", "secret_access_key": "***"}')$$, 'alter with the secrets as shown');
SELECT is(x.secrets, '{"access_key_id": "AKIA-PROBE-1", "secret_access_key": "PROBE-SECRET-2"}',
		  'a secret given as *** keeps its value')
FROM cdviz.source_secrets x JOIN cdviz.sources s ON s.id = x.source_id WHERE s.name = 'all-s3';
SELECT is(e.state || ' ' || e.message, '22023 unknown option "bucket" for a source of kind s3', 'alter checks as create does')
FROM pg_temp.error_of($$SELECT cdviz.alter_source('all-s3', options => '{"bucket": "b"}')$$) e;
SELECT cdviz.pause_source('all-folder');
SELECT is(state, 'paused', 'a paused source says so') FROM cdviz.source_status WHERE name = 'all-folder';
SELECT cdviz.drop_source('all-folder');
SELECT is(count(*), 0::bigint, 'a dropped source is gone') FROM cdviz.sources WHERE name = 'all-folder';
SELECT is(e.state || ' ' || e.message, '42704 source "all-folder" does not exist', 'dropping it again')
FROM pg_temp.error_of($$SELECT cdviz.drop_source('all-folder')$$) e;

-- the settings' sources: through the settings only
SELECT cdviz._source_sync_settings('folder', '/var/lib/cdviz/in', '{"poll_interval": 5}');
SELECT is(e.state || ' ' || e.message || ' / ' || e.hint,
		  '55000 source "settings.folder" is defined by the settings / Change the cdviz.fs_* settings in postgresql.conf and reload; an empty cdviz.fs_path removes the source.',
		  'a source of the settings is not altered with SQL')
FROM pg_temp.error_of($$SELECT cdviz.alter_source('settings.folder', location => '/elsewhere')$$) e;
SELECT is(e.state, '55000', 'nor paused') FROM pg_temp.error_of($$SELECT cdviz.pause_source('settings.folder')$$) e;
SELECT is(e.state, '55000', 'nor dropped') FROM pg_temp.error_of($$SELECT cdviz.drop_source('settings.folder')$$) e;

-- errors are shown with the source's secrets as ***
SELECT is(cdviz._source_redact('key AKIA-PROBE-1 refused; nats://probe:PROBE-PASS-3@h:4222 down; user probe:PROBE-PASS-3; sasl PROBE-PASS-5',
		  '{"access_key_id": "AKIA-PROBE-1", "url": "nats://probe:PROBE-PASS-3@h:4222", "config": {"sasl.password": "PROBE-PASS-5"}}'),
		  'key *** refused; *** down; user ***; sasl ***', 'a source''s error is shown with its secrets as ***');

-- ---- what a reader sees --------------------------------------------------------
CREATE ROLE cdviz_sources_probe NOLOGIN IN ROLE cdviz_reader;
SET LOCAL ROLE cdviz_sources_probe;
SELECT is(string_agg(name || ' ' || secret_keys::text, ', ' ORDER BY id),
		  'all-s3 {access_key_id,secret_access_key}, all-nats {url}, all-kafka {config.sasl.password,config.ssl.key.pem}, tr-junit {}, tr-files {}, tr-oci {}, settings.folder {}',
		  'a reader sees which options are secrets')
FROM cdviz.sources;
SELECT is(count(*), 0::bigint, 'and no secret value in cdviz.sources or cdviz.source_status')
FROM (SELECT s::text AS t FROM cdviz.sources s UNION ALL SELECT s::text FROM cdviz.source_status s) x
WHERE x.t ~ 'PROBE';
SELECT throws_ok('SELECT * FROM cdviz.source_secrets', '42501', NULL, 'cdviz.source_secrets is not for readers');
SELECT throws_ok($$SELECT cdviz.create_source('r', 'folder', '/r')$$, '42501', NULL, 'nor is creating a source');
SELECT throws_ok($$SELECT cdviz.retransform_source('tr-files')$$, '42501', NULL, 'nor running a transformer again');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
