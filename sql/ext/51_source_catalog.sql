-- Sources as rows: any number of folders, S3 prefixes, NATS subject lists,
-- Kafka topic lists and OCI registries, managed with cdviz.create_source(), alter_source(),
-- drop_source(), pause_source() and resume_source().  The "cdviz sources"
-- launcher worker keeps one background worker per active source (so that a
-- dead bucket never delays a folder) and restarts a source's worker when
-- its row changes.  The cdviz.fs_*, cdviz.s3_* and cdviz.nats_* settings
-- each define one source too, kept here as a row the launcher writes
-- (defined_by = 'settings') and that SQL does not change.

CREATE TABLE cdviz.sources (
	id				integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	name			text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9_.-]{1,63}$'),
	kind			text NOT NULL CHECK (kind IN ('folder', 's3', 'nats', 'kafka', 'oci')),
	location		text NOT NULL,
	options			jsonb NOT NULL DEFAULT '{}',
	secret_keys		text[] NOT NULL DEFAULT '{}',
	transformer		regprocedure,
	paused			boolean NOT NULL DEFAULT false,
	defined_by		text NOT NULL DEFAULT 'sql' CHECK (defined_by IN ('sql', 'settings')),
	created_at		timestamptz NOT NULL DEFAULT now(),
	updated_at		timestamptz NOT NULL DEFAULT now(),
	UNIQUE (kind, location)
);

COMMENT ON TABLE cdviz.sources IS
'cdviz: where events are read from (folders, S3 prefixes, NATS subjects, Kafka topics, OCI registries), one worker per active source; managed with cdviz.create_source(), alter_source(), drop_source(), pause_source(), resume_source(). Secrets (S3 keys, credentials in the NATS URL, secret Kafka settings, registry passwords) are kept apart in cdviz.source_secrets and shown here as ***.';
COMMENT ON COLUMN cdviz.sources.id IS 'source number';
COMMENT ON COLUMN cdviz.sources.name IS 'source name (letters, digits, _ . -); settings.folder, settings.s3 and settings.nats are the sources the cdviz.* settings define';
COMMENT ON COLUMN cdviz.sources.kind IS 'folder, s3, nats, kafka or oci';
COMMENT ON COLUMN cdviz.sources.location IS 'folder: an absolute path; s3: s3://bucket/prefix; nats: comma-separated subjects; kafka: comma-separated topics; oci: the registry''s https:// or http:// URL. One source per location and kind';
COMMENT ON COLUMN cdviz.sources.options IS 'options of the kind (see cdviz.source_options()), secrets shown as ***';
COMMENT ON COLUMN cdviz.sources.secret_keys IS 'which options are secrets (kept in cdviz.source_secrets, readable by superusers only)';
COMMENT ON COLUMN cdviz.sources.transformer IS 'folder and s3 (format junit, tap or metadata), oci: a function (meta jsonb, body jsonb) RETURNS SETOF jsonb called for each file or object read, or each new or moved tag, whose output replaces the built-in mapping of the format or kind; NULL: the built-in mapping. See cdviz.retransform_source()';
COMMENT ON COLUMN cdviz.sources.paused IS 'a paused source has no worker and reads nothing; its progress is kept';
COMMENT ON COLUMN cdviz.sources.defined_by IS 'sql (managed with the functions) or settings (written by the launcher from the cdviz.* settings; change those instead)';
COMMENT ON COLUMN cdviz.sources.created_at IS 'when the source was created';
COMMENT ON COLUMN cdviz.sources.updated_at IS 'when the source was last changed; a change restarts its worker';

-- As cdviz.sink_secrets: a table nobody is granted anything on.
CREATE TABLE cdviz.source_secrets (
	source_id		integer PRIMARY KEY REFERENCES cdviz.sources (id) ON DELETE CASCADE,
	secrets			jsonb NOT NULL
);
REVOKE ALL ON cdviz.source_secrets FROM PUBLIC;

COMMENT ON TABLE cdviz.source_secrets IS
'cdviz: secret options of the sources (S3 keys, the NATS URL when it carries credentials, secret Kafka settings); superusers only';
COMMENT ON COLUMN cdviz.source_secrets.source_id IS 'cdviz.sources.id';
COMMENT ON COLUMN cdviz.source_secrets.secrets IS 'JSON object of the secret options (Kafka settings under "config"), merged into the options by the source''s worker';

-- What each source's worker last did: written by the launcher (state)
-- and by the worker (polls, errors, and the counters of message sources,
-- in the transaction that stored the messages).
CREATE TABLE cdviz.source_progress (
	source_id		integer PRIMARY KEY REFERENCES cdviz.sources (id) ON DELETE CASCADE,
	state			text NOT NULL DEFAULT 'starting'
		CHECK (state IN ('starting', 'running', 'failed', 'no worker slot')),
	state_at		timestamptz NOT NULL DEFAULT now(),
	restarts		integer NOT NULL DEFAULT 0,
	events			bigint NOT NULL DEFAULT 0,
	duplicates		bigint NOT NULL DEFAULT 0,
	rejected		bigint NOT NULL DEFAULT 0,
	lag				bigint,
	last_read_at	timestamptz,
	last_poll_at	timestamptz,
	last_success_at	timestamptz,
	last_error		text,
	last_error_at	timestamptz
);

COMMENT ON TABLE cdviz.source_progress IS
'cdviz: per source, the state of its worker, its last poll and error, and the counters of message sources (nats, kafka); read it through cdviz.source_status';
COMMENT ON COLUMN cdviz.source_progress.source_id IS 'cdviz.sources.id';
COMMENT ON COLUMN cdviz.source_progress.state IS 'starting, running, failed (its worker stopped on an error and is started again later) or no worker slot (max_worker_processes reached)';
COMMENT ON COLUMN cdviz.source_progress.state_at IS 'when the state was entered';
COMMENT ON COLUMN cdviz.source_progress.restarts IS 'times the worker was started again after a failure';
COMMENT ON COLUMN cdviz.source_progress.events IS 'message sources and oci: events stored';
COMMENT ON COLUMN cdviz.source_progress.duplicates IS 'message sources and oci: events the lake already had';
COMMENT ON COLUMN cdviz.source_progress.rejected IS 'message sources: messages sent to cdviz.rejected_events; oci: invalid events and tags its transformer raised on';
COMMENT ON COLUMN cdviz.source_progress.lag IS 'message sources: messages waiting, as last measured by the worker';
COMMENT ON COLUMN cdviz.source_progress.last_read_at IS 'message sources: when messages were last stored';
COMMENT ON COLUMN cdviz.source_progress.last_poll_at IS 'when the worker last looked at its source';
COMMENT ON COLUMN cdviz.source_progress.last_success_at IS 'when a look last succeeded';
COMMENT ON COLUMN cdviz.source_progress.last_error IS 'why the last look, or the worker, failed; NULL once a look succeeds';
COMMENT ON COLUMN cdviz.source_progress.last_error_at IS 'when last_error happened';

-- The options each kind takes: name, JSON type, default, and whether the
-- value is a secret.  cdviz._source_check() validates against it and the
-- workers read the same defaults (src/sources/).  The row 'reader' of the
-- folder and s3 kinds stands for the options of the file readers
-- (src/poll/), which both take; its description names what is read.
CREATE FUNCTION cdviz.source_options(kind text DEFAULT NULL)
RETURNS TABLE (kind text, option text, type text, default_value text, secret boolean,
			   description text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT o.kind, o.option, o.type, o.default_value, o.secret, o.description
	FROM (VALUES
		('folder', 'poll_interval', 'integer', '5', false, 'seconds between two looks at the folder (1 to 86400)'),
		('folder', 'pattern', 'string', '*.json,*.jsonl,*.ndjson', false, 'comma-separated file name patterns; *.json files hold one event or an array, others one event per line'),
		('folder', 'after', 'string', 'keep', false, 'what to do with a file read to its end: keep, delete or move'),
		('folder', 'done_path', 'string', NULL, false, 'absolute path of the folder files are moved into (required when after is move)'),
		('folder', 'reader', NULL, NULL, NULL, 'file'),
		('s3', 'endpoint', 'string', '', false, 'endpoint URL; empty: AWS in the region'),
		('s3', 'region', 'string', 'us-east-1', false, 'region of the AWS Signature V4'),
		('s3', 'path_style', 'boolean', 'false', false, 'address the bucket in the URL path (MinIO, Ceph...)'),
		('s3', 'access_key_id', 'string', '', true, 'access key id'),
		('s3', 'secret_access_key', 'string', '', true, 'secret access key'),
		('s3', 'poll_interval', 'integer', '30', false, 'seconds between two listings (1 to 86400); doubled after each failure, up to 10 minutes'),
		('s3', 'pattern', 'string', '*.json,*.jsonl,*.ndjson', false, 'comma-separated patterns for the last segment of the keys'),
		('s3', 'reader', NULL, NULL, NULL, 'object'),
		('nats', 'url', 'string', NULL, false, 'server URL (required); a secret when it carries a user, password or token'),
		('nats', 'stream', 'string', '', false, 'JetStream stream: read through durable consumers, acknowledged after the commit; empty: plain subscriptions'),
		('nats', 'consumer', 'string', 'cdviz-<name>', false, 'durable consumer name (suffixed with the subject''s place when there are several subjects)'),
		('kafka', 'brokers', 'string', NULL, false, 'bootstrap servers host:port,... (required)'),
		('kafka', 'group', 'string', 'cdviz-<name>', false, 'consumer group'),
		('kafka', 'batch_size', 'integer', '500', false, 'messages stored per transaction (1 to 100000)'),
		('kafka', 'batch_timeout_ms', 'integer', '100', false, 'longest wait for a batch to fill, in ms (0 to 60000)'),
		('kafka', 'start', 'string', 'earliest', false, 'where a new group starts: earliest or latest'),
		('kafka', 'config', 'object', '{}', false, 'librdkafka settings; those a kafka sink keeps secret (named like *password*, *secret*, *.pem, ssl_key*, sasl.oauthbearer.config) are secrets'),
		('oci', 'repositories', 'array', '[]', false, 'repository names, or patterns where * and ? match any characters (/ included); empty: every repository of the registry''s catalog'),
		('oci', 'poll_interval', 'duration', '60', false, 'time between two scans: seconds, or a duration such as "30s", "5m", "1h" (1 s to 1 day); doubled after each failure, up to 10 minutes'),
		('oci', 'initial', 'string', 'baseline', false, 'the first scan of a registry: baseline (records its tags, emits nothing) or backfill (an event for every tag found)'),
		('oci', 'page_size', 'integer', '1000', false, 'entries asked for per page of the catalog and of tag lists (1 to 10000)'),
		('oci', 'batch_size', 'integer', '500', false, 'new or moved tags whose events and progress are stored per transaction (1 to 100000)'),
		('oci', 'username', 'string', '', true, 'user name for the registry (basic authentication, and for the token endpoint when the registry asks for a bearer token)'),
		('oci', 'password', 'string', '', true, 'password or access token of that user'),
		('oci', 'ecr', 'object', NULL, false, 'AWS ECR: {"region": "eu-west-1"}, and "endpoint" for another ECR API URL; the registry''s credentials come from GetAuthorizationToken, signed with the access keys'),
		('oci', 'access_key_id', 'string', '', true, 'ecr: AWS access key id'),
		('oci', 'secret_access_key', 'string', '', true, 'ecr: AWS secret access key'),
		('oci', 'session_token', 'string', '', true, 'ecr: AWS session token of temporary credentials')
	) AS v (kind, option, type, default_value, secret, description)
	CROSS JOIN LATERAL (
		SELECT v.kind, v.option, v.type, v.default_value, v.secret, v.description
		WHERE v.option <> 'reader'
		UNION ALL
		SELECT v.kind, r.option, r.type, r.default_value, false, format(r.description, v.description)
		FROM (VALUES
			('format', 'string', 'cdevents', 'how each %s is read: cdevents (a .json event or array, else JSON Lines), junit (a JUnit XML report), tap (a TAP 13/14 report) or metadata (not read: its name, size, time and SHA-256 handed to the source''s transformer, which it requires); the pattern defaults to *.xml for junit, *.tap for tap, * for metadata'),
			('batch_lines', 'integer', '5000', 'lines or array elements stored per transaction (1 to 1000000)'),
			('max_line_size', 'integer', '1024', 'longest line read, in kB (1 to 1048576)'),
			('max_json_size', 'integer', '65536', 'largest .json %s read, in kB (1 to 1048576)'),
			('max_report_size', 'integer', '65536', 'largest report (format junit or tap) read, in kB (1 to 1048576); larger ones are dead letters'),
			('max_report_cases', 'integer', '100000', 'most suites and cases in a report (format junit or tap), 1 to 1000000; a report with more is a dead letter. Its model costs about 1 kB of memory per case while it is read'),
			('environment', 'string', '', 'reports: the test runs'' environment.id; empty: the suite''s hostname, else unknown')
		) AS r (option, type, default_value, description)
		WHERE v.option = 'reader'
	) AS o (kind, option, type, default_value, secret, description)
	WHERE source_options.kind IS NULL OR v.kind = source_options.kind
$$;
COMMENT ON FUNCTION cdviz.source_options(text) IS
'cdviz: the options a kind of source takes (all kinds when NULL), their JSON type, default and meaning. Example: SELECT option, type, default_value FROM cdviz.source_options(''folder'');';

-- Checks a source's definition; returns its location as stored (folder
-- paths without a final slash, s3://bucket/ with its slash, lists
-- without spaces).  Raises 22023 naming what is wrong.
CREATE FUNCTION cdviz._source_check(kind text, location text, options jsonb)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	known text[] := ARRAY(SELECT o.option FROM cdviz.source_options(kind) o ORDER BY o.option);
	o record;
	v jsonb;
	loc text := location;
	-- at most 16 NATS subjects (one subscription each); Kafka topic names
	list_re CONSTANT text := CASE kind WHEN 'nats' THEN '^[^\s,]+(,[^\s,]+){0,15}$'
									   ELSE '^[A-Za-z0-9._-]{1,249}(,[A-Za-z0-9._-]{1,249})*$' END;
BEGIN
	IF kind IS NULL OR NOT kind IN ('folder', 's3', 'nats', 'kafka', 'oci') THEN
		RAISE EXCEPTION 'unknown source kind "%"', kind
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Use folder, s3, nats, kafka or oci.';
	END IF;
	IF jsonb_typeof(options) IS DISTINCT FROM 'object' THEN
		RAISE EXCEPTION 'source options must be a JSON object'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	FOR o IN SELECT k FROM jsonb_object_keys(options) k WHERE NOT k = ANY (known) ORDER BY k LOOP
		RAISE EXCEPTION 'unknown option "%" for a source of kind %', o.k, kind
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = format('known options: %s.', array_to_string(known, ', '));
	END LOOP;
	FOR o IN SELECT s.option, s.type FROM cdviz.source_options(kind) s LOOP
		v := options->o.option;
		CONTINUE WHEN v IS NULL;
		IF o.type = 'integer' AND NOT (jsonb_typeof(v) = 'number' AND v::text ~ '^-?[0-9]+$') THEN
			RAISE EXCEPTION 'option "%" of a source of kind % must be an integer, not %', o.option, kind, v
				USING ERRCODE = 'invalid_parameter_value';
		ELSIF o.type = 'string' AND jsonb_typeof(v) <> 'string' THEN
			RAISE EXCEPTION 'option "%" of a source of kind % must be a string, not %', o.option, kind, v
				USING ERRCODE = 'invalid_parameter_value';
		ELSIF o.type = 'boolean' AND jsonb_typeof(v) <> 'boolean' THEN
			RAISE EXCEPTION 'option "%" of a source of kind % must be true or false, not %', o.option, kind, v
				USING ERRCODE = 'invalid_parameter_value';
		ELSIF o.type = 'object' AND (jsonb_typeof(v) <> 'object' OR EXISTS (
				SELECT FROM jsonb_each(v) e WHERE jsonb_typeof(e.value) NOT IN ('string', 'number', 'boolean'))) THEN
			RAISE EXCEPTION 'option "%" of a source of kind % must be an object of settings and their values', o.option, kind
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
	END LOOP;
	-- ranges, as the settings of the same name have
	FOR o IN SELECT * FROM (VALUES ('poll_interval', 1, 86400), ('batch_lines', 1, 1000000),
							  ('max_line_size', 1, 1048576), ('max_json_size', 1, 1048576),
							  ('max_report_size', 1, 1048576), ('max_report_cases', 1, 1000000),
							  ('page_size', 1, 10000),
							  ('batch_size', 1, 100000), ('batch_timeout_ms', 0, 60000)) r (k, lo, hi)
	LOOP
		-- an oci source's poll_interval may be a duration (checked below)
		IF jsonb_typeof(options->o.k) = 'number' AND NOT (options->>o.k)::numeric BETWEEN o.lo AND o.hi THEN
			RAISE EXCEPTION 'option "%" must be from % to %, not %', o.k, o.lo, o.hi, options->>o.k
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
	END LOOP;
	IF options ? 'after' AND NOT options->>'after' IN ('keep', 'delete', 'move') THEN
		RAISE EXCEPTION 'option "after" must be keep, delete or move, not "%"', options->>'after'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF options->>'after' = 'move' AND coalesce(options->>'done_path', '') !~ '^/' THEN
		RAISE EXCEPTION 'option "done_path" (an absolute path) is required when "after" is move'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF options ? 'format' AND NOT options->>'format' IN ('cdevents', 'junit', 'tap', 'metadata') THEN
		RAISE EXCEPTION 'option "format" must be cdevents, junit, tap or metadata, not "%"', options->>'format'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF options ? 'start' AND NOT options->>'start' IN ('earliest', 'latest') THEN
		RAISE EXCEPTION 'option "start" must be earliest or latest, not "%"', options->>'start'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	FOR o IN SELECT x.option FROM (VALUES ('nats', 'url'), ('kafka', 'brokers')) x (kind, option)
			 WHERE x.kind = _source_check.kind LOOP
		IF coalesce(options->>o.option, '') = '' THEN
			RAISE EXCEPTION 'option "%" is required for a source of kind %', o.option, kind
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
	END LOOP;

	IF loc IS NULL THEN
		RAISE EXCEPTION 'a source needs a location' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	CASE kind
		WHEN 'folder' THEN
			IF loc !~ '^/' THEN
				RAISE EXCEPTION 'the location of a folder source must be an absolute path, not "%"', loc
					USING ERRCODE = 'invalid_parameter_value';
			END IF;
			loc := coalesce(nullif(regexp_replace(loc, '/+$', ''), ''), '/');
		WHEN 'oci' THEN
			loc := cdviz._source_check_oci(loc, options);
		WHEN 's3' THEN
			-- bucket names as S3 has known them (older ones have capitals, _)
			IF loc !~ '^s3://[A-Za-z0-9._-]{3,255}(/.*)?$' THEN
				RAISE EXCEPTION 'the location of an s3 source must be s3://bucket/prefix, not "%"', loc
					USING ERRCODE = 'invalid_parameter_value';
			END IF;
			IF loc !~ '^s3://[^/]*/' THEN
				loc := loc || '/';
			END IF;
		ELSE
			loc := regexp_replace(trim(loc), '\s*,\s*', ',', 'g');
			IF loc !~ list_re THEN
				RAISE EXCEPTION 'the location of a % source must be a comma-separated list of %, not "%"', kind,
					CASE kind WHEN 'nats' THEN 'at most 16 subjects' ELSE 'topics' END, location
					USING ERRCODE = 'invalid_parameter_value';
			END IF;
	END CASE;
	RETURN loc;
END
$$;
COMMENT ON FUNCTION cdviz._source_check(text, text, jsonb) IS
'cdviz internal: checks a source''s kind, location and options (see cdviz.source_options()) and returns the location as stored; raises SQLSTATE 22023 naming what is wrong';

-- A source's options split into what cdviz.sources shows and what
-- cdviz.source_secrets keeps.
CREATE FUNCTION cdviz._source_split(kind text, options jsonb,
									OUT shown_options jsonb, OUT secret_keys text[], OUT secrets jsonb)
RETURNS record
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	names text[] := ARRAY(SELECT o.option FROM cdviz.source_options(kind) o WHERE o.secret);
	config jsonb := '{}';
BEGIN
	secrets := (SELECT coalesce(jsonb_object_agg(k, options->k), '{}') FROM unnest(names) k WHERE options ? k);
	shown_options := options - names;
	IF kind = 'nats' AND options ? 'url' AND cdviz._redact_url(options->>'url') <> options->>'url' THEN
		secrets := secrets || jsonb_build_object('url', options->'url');
		shown_options := jsonb_set(shown_options, '{url}', to_jsonb(cdviz._redact_url(options->>'url')));
	END IF;
	IF kind = 'kafka' AND jsonb_typeof(options->'config') = 'object' THEN
		SELECT coalesce(jsonb_object_agg(e.key, e.value), '{}') INTO config
		FROM jsonb_each(options->'config') e WHERE cdviz._sink_secret_setting(e.key);
		IF config <> '{}' THEN
			secrets := secrets || jsonb_build_object('config', config);
			shown_options := jsonb_set(shown_options, '{config}', (
				SELECT jsonb_object_agg(e.key, CASE WHEN cdviz._sink_secret_setting(e.key) THEN '"***"' ELSE e.value END)
				FROM jsonb_each(options->'config') e));
		END IF;
	END IF;
	secret_keys := ARRAY(SELECT k FROM jsonb_object_keys(secrets) k WHERE k <> 'config'
						 UNION ALL SELECT 'config.' || k FROM jsonb_object_keys(config) k ORDER BY 1);
	shown_options := shown_options || (SELECT coalesce(jsonb_object_agg(k, '***'), '{}')
									   FROM unnest(secret_keys) k WHERE k NOT LIKE 'config.%' AND k <> 'url');
	IF secrets = '{}' THEN
		secrets := NULL;
	END IF;
END
$$;
COMMENT ON FUNCTION cdviz._source_split(text, jsonb) IS
'cdviz internal: splits a source''s options into what cdviz.sources shows (secrets as ***), the names of the secret options and the JSON object cdviz.source_secrets keeps (NULL: none)';

-- A message with each of the given secret values replaced by ***, the
-- longer first (a password inside a URL).  Values shorter than four
-- characters are left: replacing them would blank out the message, not
-- hide a credential.  Sinks and sources record errors that a server may
-- have answered with the request it was sent.
CREATE FUNCTION cdviz._redact_values(message text, secret_values text[])
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v text;
BEGIN
	FOR v IN
		SELECT x.v FROM unnest(secret_values) x(v)
		WHERE length(x.v) >= 4
		GROUP BY x.v
		ORDER BY length(x.v) DESC, x.v
	LOOP
		message := replace(message, v, '***');
	END LOOP;
	RETURN message;
END
$$;
COMMENT ON FUNCTION cdviz._redact_values(text, text[]) IS
'cdviz internal: a message with each of the given values (of four characters or more) replaced by ***';

-- A source's message (its last error, which cdviz_reader reads in
-- cdviz.source_status) with the source's secrets replaced: every secret
-- value, and the user info of the NATS URL and its parts.
CREATE FUNCTION cdviz._source_redact(message text, secrets jsonb)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT cdviz._redact_values(message, ARRAY(
		SELECT e.value FROM jsonb_each_text(secrets - 'config') e
		UNION ALL SELECT e.value FROM jsonb_each_text(CASE WHEN jsonb_typeof(secrets->'config') = 'object'
														   THEN secrets->'config' END) e
		UNION ALL SELECT u.userinfo
		UNION ALL SELECT p.part FROM regexp_split_to_table(u.userinfo, ':') p(part)))
	FROM (SELECT substring(secrets->>'url' FROM '^[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)@') AS userinfo) u
$$;
COMMENT ON FUNCTION cdviz._source_redact(text, jsonb) IS
'cdviz internal: a message with the given source secrets (of cdviz.source_secrets) in it replaced by ***; executable by all, as cdviz.source_status calls it with its reader''s rights';

-- A source's transformer, as it will be (NULL: none): the contract (meta
-- jsonb, body jsonb) RETURNS SETOF jsonb, on a kind and format that hand
-- items to one (a folder or s3 format that reads items, or oci's tags);
-- format metadata has no built-in mapping and needs one.
CREATE FUNCTION cdviz._source_check_transformer(kind text, options jsonb, transformer regprocedure)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	fmt CONSTANT text := coalesce(options->>'format', 'cdevents');
BEGIN
	IF transformer IS NULL THEN
		IF kind IN ('folder', 's3') AND fmt = 'metadata' THEN
			RAISE EXCEPTION 'a source of format metadata needs a transformer'
				USING ERRCODE = 'invalid_parameter_value',
					  DETAIL = 'Its files are not read: there are no events in them to store without one.',
					  HINT = 'Example: CREATE FUNCTION my_files(meta jsonb, body jsonb) RETURNS SETOF jsonb LANGUAGE sql AS $f$ SELECT cdviz.webhook_cdevent(''artifact.published'', meta->>''source_uri'', meta->>''mtime'', ''pkg:generic/'' || (meta->>''name'') || ''?checksum=sha256:'' || (meta->>''sha256''), ''{}'') $f$; then transformer => ''my_files(jsonb,jsonb)''.';
		END IF;
		RETURN;
	END IF;
	IF NOT EXISTS (SELECT FROM pg_proc p WHERE p.oid = transformer AND p.proretset
				   AND p.prorettype = 'jsonb'::regtype
				   AND p.proargtypes = '3802 3802'::oidvector) THEN
		RAISE EXCEPTION 'a source transformer must be a function (meta jsonb, body jsonb) RETURNS SETOF jsonb, not %', transformer
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Example: CREATE FUNCTION my_files(meta jsonb, body jsonb) RETURNS SETOF jsonb LANGUAGE plpgsql AS ...';
	END IF;
	IF kind IN ('nats', 'kafka') THEN
		RAISE EXCEPTION 'sources of kind % take no transformer', kind
			USING ERRCODE = 'feature_not_supported',
				  DETAIL = 'Their messages are read as CDEvents or CloudEvents, in batches.',
				  HINT = 'Post the tool''s payloads to a webhook route instead, which applies a transformer to each (cdviz.create_webhook()), or drop them as files into a folder source.';
	END IF;
	IF kind IN ('folder', 's3') AND fmt = 'cdevents' THEN
		RAISE EXCEPTION 'a source of format cdevents takes no transformer'
			USING ERRCODE = 'feature_not_supported',
				  DETAIL = 'Its files hold CDEvents, stored as they are.',
				  HINT = 'Give the source the format whose items the transformer reads: junit, tap (the report) or metadata (the file''s name, size, time and SHA-256).';
	END IF;
END
$$;
COMMENT ON FUNCTION cdviz._source_check_transformer(text, jsonb, regprocedure) IS
'cdviz internal: raises unless a source of that kind and options may have that transformer (NULL: none): the signature (meta jsonb, body jsonb) RETURNS SETOF jsonb (22023), a folder or s3 source of format junit, tap or metadata, or an oci source (0A000 otherwise), and one at all for format metadata (22023)';

-- The row to change, or an error naming it: missing, or defined by the
-- settings.
CREATE FUNCTION cdviz._source_for_change(name text)
RETURNS cdviz.sources
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s cdviz.sources;
BEGIN
	SELECT * INTO s FROM cdviz.sources WHERE sources.name = _source_for_change.name FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'source "%" does not exist', name USING ERRCODE = 'undefined_object';
	END IF;
	IF s.defined_by = 'settings' THEN
		RAISE EXCEPTION 'source "%" is defined by the settings', name
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = format('Change %s in postgresql.conf and reload; an empty %s removes the source.',
								CASE s.kind WHEN 'folder' THEN 'the cdviz.fs_* settings'
											WHEN 's3' THEN 'the cdviz.s3_* settings'
											ELSE 'the cdviz.nats_* settings' END,
								CASE s.kind WHEN 'folder' THEN 'cdviz.fs_path'
											WHEN 's3' THEN 'cdviz.s3_bucket'
											ELSE 'cdviz.nats_subjects' END);
	END IF;
	RETURN s;
END
$$;
COMMENT ON FUNCTION cdviz._source_for_change(text) IS
'cdviz internal: locks and returns the SQL-defined source of that name; raises 42704 when it does not exist and 55000 when the settings define it';

-- Writes a source's location, options and secrets (checked already);
-- id NULL inserts a new source and returns its id.
CREATE FUNCTION cdviz._source_store(id integer, name text, kind text, location text, options jsonb,
									defined_by text DEFAULT 'sql', paused boolean DEFAULT false)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	sp record := cdviz._source_split(kind, options);
	sid integer := id;
	other text;
BEGIN
	-- progress is kept per file and object: a folder inside another's,
	-- or a key prefix inside another's, would be read by two sources
	SELECT s.name INTO other FROM cdviz.sources s
	WHERE s.kind = _source_store.kind AND s.id IS DISTINCT FROM sid
	  AND (s.location = _source_store.location
		   OR (_source_store.kind = 'folder' AND (starts_with(s.location || '/', rtrim(_source_store.location, '/') || '/')
									OR starts_with(_source_store.location || '/', rtrim(s.location, '/') || '/')))
		   OR (_source_store.kind = 's3' AND (starts_with(s.location, _source_store.location)
								OR starts_with(_source_store.location, s.location))))
	LIMIT 1;
	IF other IS NOT NULL THEN
		RAISE EXCEPTION 'source "%" reads "%" already', other, location
			USING ERRCODE = 'unique_violation',
				  HINT = 'A folder (with its sub-folders), a bucket prefix, a subject list or a topic list is read by one source.';
	END IF;
	IF sid IS NULL THEN
		INSERT INTO cdviz.sources (name, kind, location, options, secret_keys, paused, defined_by)
		VALUES (name, kind, location, sp.shown_options, sp.secret_keys, paused, defined_by)
		RETURNING sources.id INTO sid;
	ELSE
		UPDATE cdviz.sources s
		SET location = _source_store.location, options = sp.shown_options,
			secret_keys = sp.secret_keys, updated_at = clock_timestamp()
		WHERE s.id = sid;
		DELETE FROM cdviz.source_secrets x WHERE x.source_id = sid;
	END IF;
	IF sp.secrets IS NOT NULL THEN
		INSERT INTO cdviz.source_secrets VALUES (sid, sp.secrets);
	END IF;
	RETURN sid;
END
$$;
COMMENT ON FUNCTION cdviz._source_store(integer, text, text, text, jsonb, text, boolean) IS
'cdviz internal: writes a checked source into cdviz.sources and cdviz.source_secrets (id NULL: a new one) and returns its id; raises 23505 when another source of the kind reads the location';

CREATE FUNCTION cdviz.create_source(name text, kind text, location text,
									options jsonb DEFAULT '{}',
									transformer regprocedure DEFAULT NULL,
									paused boolean DEFAULT false)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	loc text := cdviz._source_check(kind, location, coalesce(options, '{}'));
	sid integer;
BEGIN
	PERFORM cdviz._source_check_transformer(kind, coalesce(options, '{}'), transformer);
	IF name LIKE 'settings.%' THEN
		RAISE EXCEPTION 'source names starting with "settings." are kept for the sources the settings define'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	sid := cdviz._source_store(NULL, name, kind, loc, coalesce(options, '{}'),
							   paused => coalesce(paused, false));
	IF transformer IS NOT NULL THEN
		UPDATE cdviz.sources x SET transformer = create_source.transformer WHERE x.id = sid;
	END IF;
	RETURN sid;
END
$$;
COMMENT ON FUNCTION cdviz.create_source(text, text, text, jsonb, regprocedure, boolean) IS
'cdviz: creates a source (kind folder, s3, nats or kafka; options as cdviz.source_options() lists them) and returns its id; its worker starts when the transaction commits. Secret options go to cdviz.source_secrets; cdviz.sources shows them as ***. A folder or s3 source of format junit, tap or metadata may have a transformer (meta jsonb, body jsonb) RETURNS SETOF jsonb, called for each file or object; format metadata requires one. Example: SELECT cdviz.create_source(''agents'', ''folder'', ''/var/lib/ci/events'', ''{"poll_interval": 2, "after": "delete"}'');';

CREATE FUNCTION cdviz.alter_source(name text, location text DEFAULT NULL, options jsonb DEFAULT NULL,
								   transformer regprocedure DEFAULT NULL, paused boolean DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s cdviz.sources := cdviz._source_for_change(name);
	cur jsonb;
	full_options jsonb;
	k text;
	-- NULL keeps the current transformer, '-' (no function) removes it
	tr CONSTANT regprocedure := CASE WHEN transformer IS NULL THEN s.transformer
									 WHEN transformer <> 0 THEN transformer END;
BEGIN
	SELECT x.secrets INTO cur FROM cdviz.source_secrets x WHERE x.source_id = s.id;
	cur := coalesce(cur, '{}');
	IF options IS NULL THEN
		-- the options as the worker sees them, secrets in place
		full_options := s.options || (cur - 'config');
		IF cur ? 'config' THEN
			full_options := jsonb_set(full_options, '{config}', full_options->'config' || cur->'config');
		END IF;
	ELSE
		-- new options replace all options; a secret given as *** (as
		-- cdviz.sources shows it) keeps its current value
		full_options := options;
		FOR k IN SELECT e.key FROM jsonb_each_text(options) e WHERE e.value = '***' AND cur ? e.key LOOP
			full_options := jsonb_set(full_options, ARRAY[k], cur->k);
		END LOOP;
		IF options->>'url' = cdviz._redact_url(cur->>'url') THEN
			full_options := jsonb_set(full_options, '{url}', cur->'url');
		END IF;
		IF jsonb_typeof(options->'config') = 'object' AND cur ? 'config' THEN
			full_options := jsonb_set(full_options, '{config}', (
				SELECT jsonb_object_agg(e.key, CASE WHEN e.value = '"***"' AND cur->'config' ? e.key
													THEN cur->'config'->e.key ELSE e.value END)
				FROM jsonb_each(options->'config') e));
		END IF;
	END IF;
	PERFORM cdviz._source_check_transformer(s.kind, full_options, tr);
	PERFORM cdviz._source_store(s.id, s.name, s.kind,
								cdviz._source_check(s.kind, coalesce(location, s.location), full_options),
								full_options);
	IF tr IS DISTINCT FROM s.transformer THEN
		UPDATE cdviz.sources x SET transformer = tr WHERE x.id = s.id;
	END IF;
	IF paused IS NOT NULL THEN
		UPDATE cdviz.sources x SET paused = alter_source.paused WHERE x.id = s.id;
	END IF;
END
$$;
COMMENT ON FUNCTION cdviz.alter_source(text, text, jsonb, regprocedure, boolean) IS
'cdviz: changes a source; NULL arguments keep the current value, options (when given) replace all options, secrets included (a secret given as ***, as cdviz.sources shows it, keeps its current value); transformer => ''-'' removes the transformer. Its worker restarts with the new definition when the transaction commits; progress is kept per file, object, stream consumer or group. Example: SELECT cdviz.alter_source(''agents'', options => ''{"poll_interval": 10}'');';

CREATE FUNCTION cdviz.drop_source(name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s cdviz.sources := cdviz._source_for_change(name);
BEGIN
	DELETE FROM cdviz.sources x WHERE x.id = s.id;
END
$$;
COMMENT ON FUNCTION cdviz.drop_source(text) IS
'cdviz: removes a source and its secrets; its worker stops when the transaction commits. The progress of its files and objects is kept (a source created again for the same folder or bucket reads nothing twice). Example: SELECT cdviz.drop_source(''agents'');';

CREATE FUNCTION cdviz.pause_source(name text, paused boolean DEFAULT true)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s cdviz.sources := cdviz._source_for_change(name);
BEGIN
	UPDATE cdviz.sources x SET paused = pause_source.paused, updated_at = clock_timestamp()
	WHERE x.id = s.id AND x.paused IS DISTINCT FROM pause_source.paused;
END
$$;
COMMENT ON FUNCTION cdviz.pause_source(text, boolean) IS
'cdviz: stops a source''s worker when the transaction commits; nothing is read until cdviz.resume_source(), and reading then starts where it stopped. Example: SELECT cdviz.pause_source(''agents'');';

CREATE FUNCTION cdviz.resume_source(name text)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT cdviz.pause_source(name, false) $$;
COMMENT ON FUNCTION cdviz.resume_source(text) IS
'cdviz: starts a paused source''s worker again when the transaction commits. Example: SELECT cdviz.resume_source(''agents'');';

-- Called by the launcher at start and on reload: the source a group of
-- settings defines (location NULL: none), as a row like the others.
CREATE FUNCTION cdviz._source_sync_settings(kind text, location text, options jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	sname CONSTANT text := 'settings.' || kind;
	s cdviz.sources;
	loc text;
	cur jsonb;
BEGIN
	SELECT * INTO s FROM cdviz.sources x WHERE x.name = sname FOR UPDATE;
	IF coalesce(location, '') = '' THEN
		DELETE FROM cdviz.sources x WHERE x.name = sname;
		RETURN;
	END IF;
	loc := cdviz._source_check(kind, location, options);
	IF s.id IS NOT NULL THEN
		-- unchanged: no update, which would restart the worker
		SELECT x.secrets INTO cur FROM cdviz.source_secrets x WHERE x.source_id = s.id;
		IF s.location = loc AND s.options || coalesce(cur, '{}') = options THEN
			RETURN;
		END IF;
	END IF;
	PERFORM cdviz._source_store(s.id, sname, kind, loc, options, 'settings');
END
$$;
COMMENT ON FUNCTION cdviz._source_sync_settings(text, text, jsonb) IS
'cdviz internal: called by the cdviz sources launcher; makes the source named settings.<kind> agree with the cdviz.* settings (deleted when location is empty)';

-- Wakes the launcher at commit: a change takes effect at once.
CREATE FUNCTION cdviz._sources_changed()
RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'cdviz_sources_changed';
COMMENT ON FUNCTION cdviz._sources_changed() IS
'cdviz internal: statement trigger of cdviz.sources and cdviz.source_secrets; wakes the cdviz sources launcher when the transaction commits';

CREATE TRIGGER sources_changed
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON cdviz.sources
	FOR EACH STATEMENT EXECUTE FUNCTION cdviz._sources_changed();
CREATE TRIGGER sources_changed
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON cdviz.source_secrets
	FOR EACH STATEMENT EXECUTE FUNCTION cdviz._sources_changed();
COMMENT ON TRIGGER sources_changed ON cdviz.sources IS
'cdviz: wakes the sources launcher, which starts, stops or restarts the sources'' workers';
COMMENT ON TRIGGER sources_changed ON cdviz.source_secrets IS
'cdviz: wakes the sources launcher, which restarts the worker of a source whose secrets changed';

SELECT pg_catalog.pg_extension_config_dump('cdviz.sources', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.source_secrets', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.source_progress', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.sources_id_seq', '');

-- Sources are managed by superusers only, as sinks are: a source writes
-- into the lake and reads files the server's account can read.
REVOKE EXECUTE ON FUNCTION cdviz._source_check(text, text, jsonb),
	cdviz._source_split(text, jsonb),
	cdviz._source_check_transformer(text, jsonb, regprocedure), cdviz._source_for_change(text),
	cdviz._source_store(integer, text, text, text, jsonb, text, boolean),
	cdviz.create_source(text, text, text, jsonb, regprocedure, boolean),
	cdviz.alter_source(text, text, jsonb, regprocedure, boolean),
	cdviz.drop_source(text), cdviz.pause_source(text, boolean), cdviz.resume_source(text),
	cdviz._source_sync_settings(text, text, jsonb), cdviz._sources_changed() FROM PUBLIC;
GRANT SELECT ON cdviz.sources TO cdviz_reader;

-- One row per source.  Folder and S3 sources count their files and
-- objects in cdviz.fs_files and cdviz.s3_objects (rows of the source's
-- location: a source dropped and created again for the same folder
-- finds its progress), OCI sources their registry's tags in
-- cdviz.oci_tags; message sources count in cdviz.source_progress, and so
-- do OCI sources their events.
-- Every kind notes its polls in cdviz.source_progress.
-- Errors are shown with the source's secrets replaced by ***.
CREATE VIEW cdviz.source_status AS
SELECT s.id, s.name, s.kind, s.location, s.paused, s.defined_by,
	   CASE WHEN s.paused THEN 'paused' ELSE coalesce(p.state, 'starting') END AS state,
	   i.items,
	   coalesce(i.events, 0) + coalesce(p.events, 0) AS events,
	   coalesce(i.duplicates, 0) + coalesce(p.duplicates, 0) AS duplicates,
	   coalesce(i.rejected, 0) + coalesce(p.rejected, 0) AS rejected,
	   CASE WHEN s.kind IN ('folder', 's3') THEN coalesce(i.unread, 0) ELSE p.lag END AS lag,
	   greatest(i.last_read_at, p.last_read_at) AS last_read_at,
	   p.last_poll_at,
	   p.last_success_at,
	   cdviz._source_redact(e.error, x.secrets) AS last_error,
	   e.error_at AS last_error_at
FROM cdviz.sources s
LEFT JOIN cdviz.source_progress p ON p.source_id = s.id
LEFT JOIN cdviz.source_secrets x ON x.source_id = s.id
LEFT JOIN LATERAL (
	SELECT count(*) AS items,
		   count(*) FILTER (WHERE f.status = 'reading') AS unread,
		   sum(f.events) AS events, sum(f.duplicates) AS duplicates, sum(f.rejected) AS rejected,
		   max(f.last_read_at) AS last_read_at,
		   (array_agg(f.path || ': ' || f.last_error ORDER BY f.last_error_at DESC)
				FILTER (WHERE f.last_error IS NOT NULL))[1] AS last_item_error,
		   max(f.last_error_at) AS last_item_error_at
	FROM cdviz.fs_files f
	WHERE f.source = s.location
	HAVING s.kind = 'folder'
	UNION ALL
	SELECT count(*),
		   count(*) FILTER (WHERE o.status = 'reading'),
		   sum(o.events), sum(o.duplicates), sum(o.rejected),
		   max(o.last_read_at),
		   (array_agg('s3://' || o.bucket || '/' || o.key || ': ' || o.last_error ORDER BY o.last_error_at DESC)
				FILTER (WHERE o.last_error IS NOT NULL))[1],
		   max(o.last_error_at)
	FROM cdviz.s3_objects o
	WHERE o.source = s.location
	HAVING s.kind = 's3'
	UNION ALL
	SELECT count(*), 0::bigint, NULL, NULL, NULL, max(t.seen_at), NULL, NULL
	FROM cdviz.oci_tags t
	WHERE t.registry = s.location
	HAVING s.kind = 'oci'
) i ON true
-- the first error there is: of the worker (failed) or of its last poll,
-- else of one of the files or objects
LEFT JOIN LATERAL (
	SELECT v.error, v.error_at
	FROM (VALUES (1, p.last_error, p.last_error_at),
				 (2, i.last_item_error, i.last_item_error_at)) v (n, error, error_at)
	WHERE v.error IS NOT NULL
	ORDER BY v.n
	LIMIT 1
) e ON true;

COMMENT ON VIEW cdviz.source_status IS
'cdviz: one row per source (cdviz.sources): the state of its worker, files or objects seen, events stored, duplicates, rejected lines or messages, what is left to read, when it was last read and polled, and its last error (of the source, else of one of its files); no secrets';
COMMENT ON COLUMN cdviz.source_status.id IS 'cdviz.sources.id';
COMMENT ON COLUMN cdviz.source_status.name IS 'source name';
COMMENT ON COLUMN cdviz.source_status.kind IS 'folder, s3, nats, kafka or oci';
COMMENT ON COLUMN cdviz.source_status.location IS 'folder path, s3://bucket/prefix, NATS subjects, Kafka topics or registry URL';
COMMENT ON COLUMN cdviz.source_status.paused IS 'whether the source is paused';
COMMENT ON COLUMN cdviz.source_status.defined_by IS 'sql or settings';
COMMENT ON COLUMN cdviz.source_status.state IS 'running, paused, starting, failed (see last_error; started again after a pause that doubles from 5 s to 5 min) or no worker slot (raise max_worker_processes)';
COMMENT ON COLUMN cdviz.source_status.items IS 'folder and s3: files or objects seen; oci: tags of the registry seen; NULL for message sources';
COMMENT ON COLUMN cdviz.source_status.events IS 'events stored';
COMMENT ON COLUMN cdviz.source_status.duplicates IS 'events read that the lake already had';
COMMENT ON COLUMN cdviz.source_status.rejected IS 'lines, elements or messages sent to cdviz.rejected_events';
COMMENT ON COLUMN cdviz.source_status.lag IS 'folder and s3: files or objects seen but not read to their end; kafka: messages behind the group''s committed offsets, nats: messages pending, as last measured by the worker';
COMMENT ON COLUMN cdviz.source_status.last_read_at IS 'when something was last read';
COMMENT ON COLUMN cdviz.source_status.last_poll_at IS 'when the source was last looked at';
COMMENT ON COLUMN cdviz.source_status.last_success_at IS 'when a look last succeeded';
COMMENT ON COLUMN cdviz.source_status.last_error IS 'the source''s current error, else the latest error of one of its files or objects';
COMMENT ON COLUMN cdviz.source_status.last_error_at IS 'when last_error happened';

GRANT SELECT ON cdviz.source_status TO cdviz_reader;
