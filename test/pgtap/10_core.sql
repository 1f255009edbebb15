-- Schema objects, privileges and contracts of the extension core.
BEGIN;
SELECT plan(57);

SELECT has_schema('cdviz');
SELECT has_table('cdviz', 'cdevents_lake', 'the lake exists');
SELECT is((SELECT relkind::text FROM pg_class WHERE oid = 'cdviz.cdevents_lake'::regclass), 'p',
		  'the lake is partitioned');
SELECT is(pg_get_partkeydef('cdviz.cdevents_lake'::regclass), 'RANGE ("timestamp")',
		  'partitioned by range of the event timestamp');
SELECT columns_are('cdviz', 'cdevents_lake', ARRAY['id', 'timestamp', 'imported_at', 'context_id',
	'context_source', 'type', 'subject', 'predicate', 'type_version', 'spec_version',
	'subject_id', 'chain_id', 'payload']);
SELECT col_type_is('cdviz', 'cdevents_lake', 'payload', 'jsonb', 'payload is jsonb');
SELECT col_type_is('cdviz', 'cdevents_lake', 'timestamp', 'timestamp with time zone', 'timestamp is timestamptz');
SELECT col_is_unique('cdviz', 'cdevents_lake', ARRAY['context_source', 'context_id', 'timestamp'],
					 'dedup key is unique');
SELECT has_index('cdviz', 'cdevents_lake', 'cdevents_lake_subject_predicate_ts',
				 ARRAY['subject', 'predicate', '"timestamp"'], 'time-window index by subject and predicate');
SELECT has_table('cdviz', 'rejected_events', 'dead letters exist');
SELECT columns_are('cdviz', 'rejected_events', ARRAY['id', 'received_at', 'origin', 'origin_ref',
	'raw', 'problems', 'replayed_at', 'replayed_event_id', 'envelope']);

SELECT has_function('cdviz', 'ingest', ARRAY['jsonb']);
SELECT function_returns('cdviz', 'ingest', ARRAY['jsonb'], 'bigint');
SELECT has_function('cdviz', 'ingest_batch', ARRAY['jsonb', 'text']);
SELECT has_function('cdviz', 'validate', ARRAY['jsonb']);
SELECT has_function('cdviz', 'replay_rejected', ARRAY['bigint']);
SELECT has_function('cdviz', 'replay_rejected', ARRAY['text', 'timestamp with time zone']);
SELECT is_definer('cdviz', 'ingest', ARRAY['jsonb'], 'ingest runs as the owner');
SELECT is_definer('cdviz', 'ingest_batch', ARRAY['jsonb', 'text'], 'ingest_batch runs as the owner');

SELECT has_role('cdviz_reader');
SELECT has_role('cdviz_writer');

-- every object of the extension has a COMMENT
SELECT is_empty($$
	SELECT d.classid::regclass || ' ' || d.objid
	FROM pg_depend d
	WHERE d.refclassid = 'pg_extension'::regclass
	  AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'cdviz')
	  AND d.deptype = 'e'
	  AND d.classid IN ('pg_class'::regclass, 'pg_proc'::regclass)
	  AND NOT (d.classid = 'pg_class'::regclass AND
			   (SELECT relkind FROM pg_class WHERE oid = d.objid) IN ('S', 'i', 'I', 't'))
	  AND obj_description(d.objid, d.classid::regclass::name) IS NULL
$$, 'every table, view and function of the extension has a COMMENT');

-- privileges: the writer ingests through the functions only
SELECT ok(has_function_privilege('cdviz_writer', 'cdviz.ingest(jsonb)', 'EXECUTE'), 'writer may ingest');
SELECT ok(has_function_privilege('cdviz_writer', 'cdviz.ingest_batch(jsonb, text)', 'EXECUTE'), 'writer may ingest batches');
SELECT ok(NOT has_table_privilege('cdviz_writer', 'cdviz.cdevents_lake', 'INSERT'), 'writer cannot insert into the lake');
SELECT ok(NOT has_table_privilege('cdviz_writer', 'cdviz.cdevents_lake', 'UPDATE'), 'writer cannot update the lake');
SELECT ok(NOT has_table_privilege('cdviz_writer', 'cdviz.cdevents_lake', 'DELETE'), 'writer cannot delete from the lake');
SELECT ok(NOT has_function_privilege('cdviz_reader', 'cdviz.ingest(jsonb)', 'EXECUTE'), 'reader cannot ingest');
SELECT ok(NOT has_table_privilege('cdviz_reader', 'cdviz.cdevents_lake', 'INSERT'), 'reader cannot insert');
SELECT ok(NOT has_table_privilege('cdviz_reader', 'cdviz.rejected_events', 'UPDATE'), 'reader cannot update dead letters');
SELECT ok(NOT has_function_privilege('public', 'cdviz.ingest(jsonb)', 'EXECUTE'), 'PUBLIC cannot ingest');

-- the writer really stores events, and really cannot write the table
CREATE ROLE cdviz_tap_writer IN ROLE cdviz_writer;
SET ROLE cdviz_tap_writer;
SELECT ok(cdviz.ingest('{"context": {"specversion": "0.5.1", "id": "tap-1", "source": "/tap",
	"type": "dev.cdevents.build.started.0.3.0", "timestamp": "2024-04-01T00:00:00Z"},
	"subject": {"id": "b-1", "content": {}}}') > 0, 'the writer ingests an event');
SELECT throws_ok($$UPDATE cdviz.cdevents_lake SET subject_id = 'x'$$, '42501', NULL,
				 'the writer cannot update the lake');
SELECT throws_ok($$INSERT INTO cdviz.rejected_events (origin, raw, problems) VALUES ('x', 'y', '[]')$$,
				 '42501', NULL, 'the writer cannot write dead letters directly');
SELECT throws_ok($$SELECT cdviz.ingest('{"context": {}}')$$, '22023', NULL,
				 'an invalid event raises 22023');
RESET ROLE;
CREATE ROLE cdviz_tap_reader IN ROLE cdviz_reader;
SET ROLE cdviz_tap_reader;
SELECT throws_ok($$INSERT INTO cdviz.cdevents_lake (timestamp, context_id, context_source, type,
	subject, predicate, type_version, payload) VALUES (now(), 'a', 'b', 'c', 'd', 'e', 'f', '{}')$$,
				 '42501', NULL, 'the reader cannot insert into the lake');
SELECT throws_ok($$SELECT cdviz.ingest('{}')$$, '42501', NULL, 'the reader cannot call ingest');
SELECT is((SELECT count(*) FROM cdviz.validate('{}'))::int, 1, 'the reader may validate');
RESET ROLE;

-- retransmission contract
SELECT is(cdviz.ingest('{"context": {"specversion": "0.5.1", "id": "tap-1", "source": "/tap",
	"type": "dev.cdevents.build.started.0.3.0", "timestamp": "2024-04-01T00:00:00Z"},
	"subject": {"id": "b-1", "content": {}}}'),
	(SELECT id FROM cdviz.cdevents_lake WHERE context_id = 'tap-1'), 'a retransmission answers the stored id');
SELECT is((SELECT count(*) FROM cdviz.cdevents_lake WHERE context_id = 'tap-1')::int, 1,
		  'and stores nothing');

-- a retransmitted batch is found by index probes: a plain join of its keys
-- with the lake was planned as a merge join over a sorted copy of every
-- partition, a cost that grows with the lake instead of with the batch
CREATE TEMP TABLE probe_batch AS
SELECT jsonb_agg(jsonb_build_object('context', jsonb_build_object('specversion', '0.5.1',
	'id', 'probe-' || i, 'source', '/tap/probe', 'type', 'dev.cdevents.build.started.0.3.0',
	'timestamp', to_char(timestamptz '2024-05-01 00:00:00+00' + i * interval '1 minute',
						 'YYYY-MM-DD"T"HH24:MI:SS"Z"')),
	'subject', jsonb_build_object('id', 'b-' || i, 'content', '{}'::jsonb))) AS events
FROM generate_series(1, 20000) i;
SELECT is((SELECT stored FROM cdviz.ingest_batch((SELECT events FROM probe_batch))), 20000::bigint,
		  'a batch of 20,000 events is stored');
ANALYZE cdviz.cdevents_lake;
CREATE TEMP TABLE lake_seq_scans AS
	SELECT sum(pg_stat_get_xact_numscans(inhrelid)) AS n
	FROM pg_inherits WHERE inhparent = 'cdviz.cdevents_lake'::regclass;
CREATE TEMP TABLE retransmitted AS SELECT * FROM cdviz.ingest_batch((SELECT events FROM probe_batch));
SELECT is((SELECT duplicates FROM retransmitted), 20000::bigint, 'its retransmission stores nothing');
SELECT is((SELECT sum(pg_stat_get_xact_numscans(inhrelid)) FROM pg_inherits
		   WHERE inhparent = 'cdviz.cdevents_lake'::regclass) - (SELECT n FROM lake_seq_scans),
		  0::numeric, 'and is recognised without scanning a lake partition');

-- cdviz.ingest_batch hands the core a document built from the jsonb, while
-- cdviz.validate reads the jsonb's text as any client's text is read: both
-- must find the same problems, in the same order, for every mutation of
-- every leaf of some valid events (removed, or replaced by a number, a
-- fraction, a large integer, a string, a boolean, null, an array, an object)
CREATE TEMP TABLE mutation_base AS
SELECT b.n, b.e FROM (VALUES
	(1, '{"context": {"specversion": "0.5.1", "id": "m-1", "source": "/tap/m", "type": "dev.cdevents.pipelinerun.finished.0.3.0",
	  "timestamp": "2024-06-01T00:00:00Z", "chainId": "c-1", "links": [{"linkType": "PATH", "from": {"contextId": "x"}}]},
	  "subject": {"id": "run-1", "source": "/ci", "content": {"pipelineName": "p", "uri": "https://ci/run-1", "outcome": "success", "errors": "none"}},
	  "customData": {"a": [1, 2.5, {"b": null}]}, "customDataContentType": "application/json"}'::jsonb),
	(2, '{"context": {"version": "0.4.1", "id": "m-2", "source": "/tap/m", "type": "dev.cdevents.service.deployed.0.2.0",
	  "timestamp": "2024-06-01T00:00:01Z"},
	  "subject": {"id": "svc", "source": "/cd", "type": "service", "content": {"environment": {"id": "prod", "source": "/env"}, "artifactId": "pkg:oci/svc@sha256%3Aab"}}}'::jsonb),
	(3, '{"context": {"specversion": "0.5.1", "id": "m-3", "source": "/tap/m", "type": "dev.cdevents.testcaserun.finished.0.3.0",
	  "timestamp": "2024-06-01T00:00:02Z"},
	  "subject": {"id": "tc-1", "content": {"outcome": "failure", "severity": "high", "reason": "boom", "testCase": {"id": "t", "name": "t", "type": "unit"}, "environment": {"id": "ci"}}}}'::jsonb)
) AS b(n, e);
CREATE TEMP TABLE mutations AS
WITH RECURSIVE leaves(n, path, v) AS (
	SELECT b.n, ARRAY[k.key], k.value FROM mutation_base b, jsonb_each(b.e) k
	UNION ALL
	SELECT l.n, l.path || c.key, c.value
	FROM leaves l, LATERAL (SELECT key, value FROM jsonb_each(CASE WHEN jsonb_typeof(l.v) = 'object' THEN l.v END)
							UNION ALL
							SELECT (o - 1)::text, value FROM jsonb_array_elements(CASE WHEN jsonb_typeof(l.v) = 'array' THEN l.v END)
								WITH ORDINALITY AS a(value, o)) c
)
SELECT row_number() OVER () - 1 AS i, m.e
FROM (SELECT b.e #- l.path AS e FROM leaves l JOIN mutation_base b USING (n)
	  UNION ALL
	  SELECT jsonb_set(b.e, l.path, r.v) FROM leaves l JOIN mutation_base b USING (n),
			 (VALUES ('7'::jsonb), ('2.5'), ('123456789012345678901234'), ('"x"'), ('""'), ('true'),
					 ('null'), ('[]'), ('{}')) AS r(v)) m;
SELECT cmp_ok((SELECT count(*) FROM mutations)::int, '>', 500, 'over five hundred mutated events');
CREATE TEMP TABLE mutation_result AS
SELECT * FROM cdviz.ingest_batch((SELECT jsonb_agg(e ORDER BY i) FROM mutations), 'mut');
SELECT cmp_ok((SELECT rejected FROM mutation_result)::int, '>', 400, 'most of them are rejected');
SELECT is_empty($$
	SELECT m.i, m.e FROM mutations m
	WHERE (SELECT r.problems FROM cdviz.rejected_events r WHERE r.origin_ref = 'mut[' || m.i || ']')
		  IS DISTINCT FROM
		  (SELECT jsonb_agg(jsonb_build_object('path', v.path, 'message', v.message))
		   FROM cdviz.validate(m.e) v)$$,
	'ingest_batch (jsonb walked) and validate (text parsed) find the same problems for every mutation');

-- the events of a webhook delivery: all stored, ids in input order
-- (retransmissions and in-batch repeats give the stored id), or none
CREATE TEMP TABLE aon_events AS
SELECT jsonb_build_array(
	jsonb_build_object('context', jsonb_build_object('specversion', '0.5.1', 'id', 'aon-1', 'source', '/tap/aon',
		'type', 'dev.cdevents.build.started.0.3.0', 'timestamp', '2024-05-02T00:00:00Z'),
		'subject', jsonb_build_object('id', 'b-aon', 'content', '{}'::jsonb)),
	(SELECT payload FROM cdviz.cdevents_lake WHERE context_id = 'tap-1'),
	jsonb_build_object('context', jsonb_build_object('specversion', '0.5.1', 'id', 'aon-1', 'source', '/tap/aon',
		'type', 'dev.cdevents.build.started.0.3.0', 'timestamp', '2024-05-02T00:00:00Z'),
		'subject', jsonb_build_object('id', 'b-aon', 'content', '{}'::jsonb))) AS events;
SELECT is((SELECT (a.stored, a.duplicates, a.problems IS NULL)::text
		   FROM cdviz._ingest_all_or_nothing((SELECT events FROM aon_events), 'tap') a),
		  '(1,2,t)', 'all or nothing: one new, one retransmission, one repeat');
SELECT is((SELECT a.event_ids FROM cdviz._ingest_all_or_nothing((SELECT events FROM aon_events), 'tap') a),
		  ARRAY[(SELECT id FROM cdviz.cdevents_lake WHERE context_id = 'aon-1'),
				(SELECT id FROM cdviz.cdevents_lake WHERE context_id = 'tap-1'),
				(SELECT id FROM cdviz.cdevents_lake WHERE context_id = 'aon-1')],
		  'all or nothing: the lake ids, in input order');
CREATE TEMP TABLE aon_bad AS
SELECT * FROM cdviz._ingest_all_or_nothing(
	(SELECT jsonb_set(events, '{0,context,id}', '"aon-2"') || '[{"context": {}}]'::jsonb FROM aon_events), 'tap');
SELECT is((SELECT (stored, duplicates, event_ids IS NULL)::text FROM aon_bad), '(0,0,t)',
		  'all or nothing: an invalid event and none is stored');
SELECT is((SELECT count(*) FROM cdviz.cdevents_lake WHERE context_id = 'aon-2')::int, 0,
		  'not even the valid new one');
SELECT is((SELECT array_agg(DISTINCT (p ->> 'index')::int) FROM aon_bad, jsonb_array_elements(problems) p),
		  ARRAY[3], 'the problems name the invalid event by its index');
SELECT is((SELECT count(*) FROM cdviz.rejected_events WHERE origin_ref LIKE 'tap[%')::int, 0,
		  'and keep no dead letter');

-- payloads are compressed with lz4 where the server has it, partitions too
SELECT is((SELECT bool_and(a.attcompression = 'l') FROM pg_attribute a
		   WHERE a.attname = 'payload'
			 AND a.attrelid IN (SELECT 'cdviz.cdevents_lake'::regclass
								UNION ALL SELECT cdviz.ensure_partition('2031-07-01')::regclass)),
		  EXISTS (SELECT FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)),
		  'lake payloads use lz4 when the server was built with it');

-- the receivers' JSON parser (core/json_scan.c) makes what jsonb_in makes,
-- byte for byte, of everything it does not decline
CREATE TEMP TABLE scan_docs(d text);
INSERT INTO scan_docs VALUES
	('{"a":1,"b":[true,false,null],"a":2,"c":"x\"y\\z\/\b\f\n\r\t"}'),
	('{"d":"\u00e9\u4e2d\ud83d\ude00\u0041","é":"中😀","":""}'),
	('[1.0, 1.50, -0, 0e0, -2.5E-3, 12345678901234567890123, 1e1000, 1e-1000]'),
	('{"z":1,"a":{"y":[1,{"b":2,"a":3}],"x":{}},"m":[[[]]]}'),
	(E' \t\r\n[ {} , [] , "" ] \n'),
	('{"long":"' || repeat('abc\\n', 5000) || '"}'),
	('{"b":1,"a":2,"aa":3,"a":4,"b":{"z":[1,{"y":2,"x":3,"y":5}],"a":null},"a":5}');
-- members with equal keys, in every order: the last one read is kept
INSERT INTO scan_docs
SELECT '{' || string_agg(format('"%s":%s', (i * 7919) % 97, i), ',') || '}' FROM generate_series(1, 300) i;
-- and a document of 2,000 members with escapes, numbers and nesting
INSERT INTO scan_docs
SELECT '{' || string_agg(format('"k%s\u00e9\t":{"n":%s,"s":"v\"%s\"","a":[%s,true,null]}', i, i * 7 - 3000, i, i::numeric / 7), ',') || '}'
FROM generate_series(1, 2000) i;
SELECT is((SELECT count(*) FROM scan_docs WHERE cdviz._jsonb_from_text(d) IS NULL), 0::bigint,
		  'the receivers'' parser takes every valid document of the sample');
-- the datum's bytes, through a cast that only this rolled-back transaction knows
CREATE CAST (jsonb AS bytea) WITHOUT FUNCTION;
SELECT is((SELECT count(*) FROM scan_docs WHERE cdviz._jsonb_from_text(d)::bytea <> d::jsonb::bytea), 0::bigint,
		  'and makes of each the same jsonb as jsonb_in, byte for byte');
SELECT is((SELECT count(*) FROM (VALUES ('"a string"'), ('3'), ('{"a":1,}'), ('[01]'), ('["\u0000"]'),
			('["\ud800"]'), ('{"a":1}x'), ('[1e1001]'), ('[1e10000000000000000000]'), ('[1E-99999999999999999999]'), ('[' || repeat('1', 70) || ']'),
			(repeat('[', 300) || repeat(']', 300))) AS v(d)
		   WHERE cdviz._jsonb_from_text(d) IS NOT NULL), 0::bigint,
		  'it declines what is not JSON, a scalar document, what jsonb refuses and what only jsonb_in should judge');
SELECT is(cdviz._jsonb_from_text(repeat('[', 256) || repeat(']', 256)), (repeat('[', 256) || repeat(']', 256))::jsonb,
		  'nesting of 256 levels is parsed');

SELECT * FROM finish();
ROLLBACK;
