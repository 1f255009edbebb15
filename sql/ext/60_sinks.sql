-- Sinks: where the cdviz dispatcher worker forwards stored events (HTTP
-- webhooks, NATS subjects, Kafka topics, the server log), at least once,
-- never skipping one.
--
-- Why an outbox of transaction ids, and not "lake id > last delivered":
-- a lake id is taken from a sequence when the row is inserted, but the
-- transactions commit in another order.  A batch of 10,000 events that
-- took ids 1..10000 and commits after a single event that took id 10001
-- would be skipped by a reader that had already moved past 10001.  So the
-- statement trigger below writes one row per INSERT statement into
-- cdviz.lake_batches with the inserting transaction's id (xid8) and the
-- lake ids and timestamps of the statement.  The dispatcher reads the lake
-- in windows between two snapshots, as PgQ does: the events of the
-- transactions visible in the newer snapshot and not in the older one.
-- Once a transaction is visible in a snapshot, no event can join it, so a
-- window is a fixed set, read in (xid, batch, position) order; when it is
-- exhausted the newer snapshot becomes the older one.  A long transaction
-- of somebody else delays nothing: only the transactions that are still
-- running are left for a later window.  One row per statement (not per
-- event) keeps the cost to ingestion small; bench/dispatch.sh measures it.
-- While no sink exists the trigger writes nothing at all.

-- Which cluster wrote a row of progress or of the outbox: transaction
-- ids and snapshots have a meaning only there.  A streaming standby has
-- its primary's identifier (and its transaction ids), so a failover keeps
-- it; a cluster restored from pg_dump has a new one.
CREATE FUNCTION cdviz._cluster_id()
RETURNS bigint
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT system_identifier FROM pg_catalog.pg_control_system() $$;
COMMENT ON FUNCTION cdviz._cluster_id() IS
'cdviz internal: this cluster''s system identifier (pg_control_system()), shared by its streaming standbys';

CREATE TABLE cdviz.sinks (
	id				integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	name			text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9_.-]{1,63}$'),
	kind			text NOT NULL CHECK (kind IN ('http', 'nats', 'kafka', 'log')),
	target			text NOT NULL,
	options			jsonb NOT NULL DEFAULT '{}',
	secret_keys		text[] NOT NULL DEFAULT '{}',
	type_pattern	text,
	source_pattern	text,
	predicate		text,
	paused			boolean NOT NULL DEFAULT false,
	start_at		timestamptz,
	created_at		timestamptz NOT NULL DEFAULT now(),
	updated_at		timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE cdviz.sinks IS
'cdviz: where the dispatcher forwards stored events; managed with cdviz.create_sink(), alter_sink(), drop_sink(), pause_sink(), resume_sink(). Secrets (token, hmac_secret, header values, the URL''s user info and query values, Kafka config values named like a secret) are kept apart in cdviz.sink_secrets and shown here as ***.';
COMMENT ON COLUMN cdviz.sinks.id IS 'sink number';
COMMENT ON COLUMN cdviz.sinks.name IS 'sink name (letters, digits, _ . -)';
COMMENT ON COLUMN cdviz.sinks.kind IS 'http (POST to a URL), nats (publish to a subject on cdviz.nats_url), kafka (produce to a topic) or log (one JSON line per event in the server log)';
COMMENT ON COLUMN cdviz.sinks.target IS 'http: the URL, its user info and query values shown as ***; nats: the subject or subject template ({subject}, {predicate}, {version} are replaced); kafka: the topic; log: a label';
COMMENT ON COLUMN cdviz.sinks.options IS 'options without secrets; http: mode (binary, structured, batch), batch_size, headers (values shown as ***), timeout, initial_backoff, max_backoff; nats: jetstream (auto, always, never), timeout; kafka: brokers, mode (binary, structured), key (subject, source, none), config (librdkafka settings, secret ones shown as ***), timeout, initial_backoff, max_backoff';
COMMENT ON COLUMN cdviz.sinks.secret_keys IS 'which secret parts are set: token, hmac_secret, headers (their values), config (Kafka settings named like a secret), target (the URL''s user info or query values); they are in cdviz.sink_secrets, readable by superusers only';
COMMENT ON COLUMN cdviz.sinks.type_pattern IS 'filter: LIKE pattern on the event type, e.g. dev.cdevents.service.%; NULL matches every type';
COMMENT ON COLUMN cdviz.sinks.source_pattern IS 'filter: LIKE pattern on context.source; NULL matches every source';
COMMENT ON COLUMN cdviz.sinks.predicate IS 'filter: SQL boolean expression over the lake row (columns of cdviz.cdevents_lake, e.g. payload->''subject''->''content''->''environment''->>''id'' = ''prod''); NULL matches every event';
COMMENT ON COLUMN cdviz.sinks.paused IS 'a paused sink receives nothing; its events wait for resume_sink()';
COMMENT ON COLUMN cdviz.sinks.start_at IS 'backfill: events imported since this time and before the sink was created are delivered too; NULL: only events stored after creation';
COMMENT ON COLUMN cdviz.sinks.created_at IS 'when the sink was created';
COMMENT ON COLUMN cdviz.sinks.updated_at IS 'when the sink was last changed';

-- Secrets live in their own table on which nobody is granted anything:
-- cdviz_reader reads cdviz.sinks without ever seeing a credential.  Every
-- value that may carry one is a secret: the token and HMAC key, every
-- header value (a header is added to a sink for authentication more often
-- than not), and the user info and query values of the URL.  cdviz.sinks
-- keeps what remains, with *** in their place (cdviz._sink_split()).
CREATE TABLE cdviz.sink_secrets (
	sink_id			integer PRIMARY KEY REFERENCES cdviz.sinks (id) ON DELETE CASCADE,
	secrets			jsonb NOT NULL
);
REVOKE ALL ON cdviz.sink_secrets FROM PUBLIC;

COMMENT ON TABLE cdviz.sink_secrets IS
'cdviz: secret parts of the sinks (token, hmac_secret, header values, Kafka config, URLs with their user info and query); superusers only';
COMMENT ON COLUMN cdviz.sink_secrets.sink_id IS 'cdviz.sinks.id';
COMMENT ON COLUMN cdviz.sink_secrets.secrets IS 'JSON object: token, hmac_secret, headers (names and values), config (the whole Kafka config, when a setting of it is secret), target (the whole URL), those the sink has';

-- The outbox: one row per INSERT statement into the lake (see the top).
CREATE TABLE cdviz.lake_batches (
	batch_id		bigint GENERATED ALWAYS AS IDENTITY,
	xid				xid8 NOT NULL,
	stored_at		timestamptz NOT NULL DEFAULT now(),
	ids				bigint[] NOT NULL,
	stamps			timestamptz[] NOT NULL,
	cluster_id		bigint NOT NULL DEFAULT cdviz._cluster_id(),
	PRIMARY KEY (xid, batch_id)
);

COMMENT ON TABLE cdviz.lake_batches IS
'cdviz: outbox of the dispatcher — one row per statement that inserted into cdviz.cdevents_lake while a sink existed: the inserting transaction and the lake keys, in insertion order. Rows every sink has passed are deleted by the dispatcher.';
COMMENT ON COLUMN cdviz.lake_batches.batch_id IS 'statement number (orders the statements of one transaction)';
COMMENT ON COLUMN cdviz.lake_batches.xid IS 'the inserting (top-level) transaction';
COMMENT ON COLUMN cdviz.lake_batches.stored_at IS 'transaction time of the insert';
COMMENT ON COLUMN cdviz.lake_batches.ids IS 'lake ids of the statement, in insertion order';
COMMENT ON COLUMN cdviz.lake_batches.stamps IS 'lake timestamps of the same rows (the partition key, for lookups)';
COMMENT ON COLUMN cdviz.lake_batches.cluster_id IS 'the cluster whose transaction xid is (cdviz._cluster_id()); rows restored from another cluster are dropped when the dispatcher re-bases the sinks';

CREATE FUNCTION cdviz.lake_record_batch()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	-- cdviz.create_sink() takes a SHARE lock on the lake before it takes
	-- its snapshot, so a writer that saw no sink here has committed
	-- before the sink's first snapshot: its events are not the sink's.
	IF EXISTS (SELECT FROM cdviz.sinks) THEN
		INSERT INTO cdviz.lake_batches (xid, ids, stamps)
		SELECT pg_current_xact_id(), array_agg(id), array_agg("timestamp")
		FROM new_events
		HAVING count(*) > 0;
	END IF;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION cdviz.lake_record_batch() IS
'cdviz: statement-level AFTER INSERT trigger of cdviz.cdevents_lake: records the statement''s transaction and lake keys in cdviz.lake_batches while a sink exists (SECURITY DEFINER so that writers need no privilege on it)';

CREATE TRIGGER lake_record_batch
	AFTER INSERT ON cdviz.cdevents_lake
	REFERENCING NEW TABLE AS new_events
	FOR EACH STATEMENT
	EXECUTE FUNCTION cdviz.lake_record_batch();

COMMENT ON TRIGGER lake_record_batch ON cdviz.cdevents_lake IS
'cdviz: fills the dispatcher''s outbox cdviz.lake_batches, one row per insert statement';

-- Per-sink progress, written by the dispatcher in the transaction that
-- follows each delivered chunk.  The window is (snap, next_snap]; pos is
-- the last (xid, batch, position) delivered inside it.
CREATE TABLE cdviz.sink_progress (
	sink_id			integer PRIMARY KEY REFERENCES cdviz.sinks (id) ON DELETE CASCADE,
	snap			pg_snapshot NOT NULL,
	next_snap		pg_snapshot,
	pos_xid			xid8,
	pos_batch		bigint,
	pos_ord			integer,
	backfill_until	bigint,
	backfill_pos	bigint,
	delivered		bigint NOT NULL DEFAULT 0,
	rejected		bigint NOT NULL DEFAULT 0,
	failures		bigint NOT NULL DEFAULT 0,
	last_delivered_id bigint,
	last_success_at	timestamptz,
	last_error		text,
	last_error_at	timestamptz,
	cluster_id		bigint DEFAULT cdviz._cluster_id(),
	created_until	bigint
);

COMMENT ON TABLE cdviz.sink_progress IS
'cdviz: how far each sink has been delivered (written by the dispatcher after each delivered chunk); read it through cdviz.sink_status';
COMMENT ON COLUMN cdviz.sink_progress.sink_id IS 'cdviz.sinks.id';
COMMENT ON COLUMN cdviz.sink_progress.snap IS 'every event of a transaction visible in this snapshot is delivered (or filtered out)';
COMMENT ON COLUMN cdviz.sink_progress.next_snap IS 'the window being delivered: transactions visible here and not in snap';
COMMENT ON COLUMN cdviz.sink_progress.pos_xid IS 'window position: transaction of the last delivered event';
COMMENT ON COLUMN cdviz.sink_progress.pos_batch IS 'window position: its cdviz.lake_batches row';
COMMENT ON COLUMN cdviz.sink_progress.pos_ord IS 'window position: its place in that row (1-based)';
COMMENT ON COLUMN cdviz.sink_progress.backfill_until IS 'backfill: the highest lake id to deliver by id, that existed at creation or at a re-base (NULL: no backfill)';
COMMENT ON COLUMN cdviz.sink_progress.backfill_pos IS 'backfill: the last lake id delivered';
COMMENT ON COLUMN cdviz.sink_progress.delivered IS 'events delivered (a redelivery after a crash counts again)';
COMMENT ON COLUMN cdviz.sink_progress.rejected IS 'events the sink refused for good (cdviz.rejected_deliveries)';
COMMENT ON COLUMN cdviz.sink_progress.failures IS 'failed delivery attempts that were retried';
COMMENT ON COLUMN cdviz.sink_progress.last_delivered_id IS 'lake id of the last delivered event';
COMMENT ON COLUMN cdviz.sink_progress.last_success_at IS 'when a delivery last succeeded';
COMMENT ON COLUMN cdviz.sink_progress.last_error IS 'why the last failed attempt failed';
COMMENT ON COLUMN cdviz.sink_progress.last_error_at IS 'when it failed';
COMMENT ON COLUMN cdviz.sink_progress.cluster_id IS 'the cluster whose transaction ids snap, next_snap and pos_xid are (cdviz._cluster_id()); NULL: this one. Progress restored into another cluster is re-based by the dispatcher before it delivers anything';
COMMENT ON COLUMN cdviz.sink_progress.created_until IS 'the highest lake id when the sink was created with start_at (or when it was re-based): the backfill delivers an event up to it only if imported since start_at, and every event above it';

-- Dead letters of the way out: events a sink refused for good.
CREATE TABLE cdviz.rejected_deliveries (
	id				bigserial PRIMARY KEY,
	sink_id			integer NOT NULL REFERENCES cdviz.sinks (id) ON DELETE CASCADE,
	event_id		bigint NOT NULL,
	event_timestamp	timestamptz NOT NULL,
	status			integer,
	response		text,
	rejected_at		timestamptz NOT NULL DEFAULT now(),
	retry_requested_at timestamptz,
	retried_at		timestamptz
);
CREATE INDEX rejected_deliveries_sink ON cdviz.rejected_deliveries (sink_id, id);
CREATE INDEX rejected_deliveries_retry ON cdviz.rejected_deliveries (sink_id, id)
	WHERE retry_requested_at IS NOT NULL AND retried_at IS NULL;

COMMENT ON TABLE cdviz.rejected_deliveries IS
'cdviz: events a sink refused for good (HTTP 4xx other than 408 and 429; Kafka: a message too large or invalid), with the answer; retry them with cdviz.retry_rejected_deliveries()';
COMMENT ON COLUMN cdviz.rejected_deliveries.sink_id IS 'cdviz.sinks.id';
COMMENT ON COLUMN cdviz.rejected_deliveries.event_id IS 'cdviz.cdevents_lake.id of the event';
COMMENT ON COLUMN cdviz.rejected_deliveries.event_timestamp IS 'cdviz.cdevents_lake."timestamp" of the event';
COMMENT ON COLUMN cdviz.rejected_deliveries.status IS 'HTTP status of the refusal; kafka sinks: the Kafka error code (10: message too large, 87: invalid record)';
COMMENT ON COLUMN cdviz.rejected_deliveries.response IS 'the start of the response body (at most 1 kB)';
COMMENT ON COLUMN cdviz.rejected_deliveries.rejected_at IS 'when the sink refused it';
COMMENT ON COLUMN cdviz.rejected_deliveries.retry_requested_at IS 'when cdviz.retry_rejected_deliveries() asked for another attempt';
COMMENT ON COLUMN cdviz.rejected_deliveries.retried_at IS 'when that attempt was made (a new refusal is a new row)';

SELECT pg_catalog.pg_extension_config_dump('cdviz.sinks', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.sink_secrets', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.sink_progress', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.lake_batches', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.rejected_deliveries', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.sinks_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.lake_batches_batch_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.rejected_deliveries_id_seq', '');

-- What cdviz_reader may see of a URL: the user info (before the last @
-- of the authority, all of it, since a token is often given as the user
-- name) and every query value become ***; scheme, host, port, path and
-- query names stay.  Anything else is left as it is.
CREATE FUNCTION cdviz._redact_url(url text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT u.base
		   || coalesce('?' || (SELECT string_agg(CASE WHEN p.part = '' THEN ''
													  WHEN strpos(p.part, '=') > 0 THEN split_part(p.part, '=', 1) || '=***'
													  ELSE '***' END, '&' ORDER BY p.n)
							   FROM regexp_split_to_table(u.query, '&') WITH ORDINALITY AS p(part, n)), '')
		   || coalesce('#' || u.fragment, '')
	FROM (SELECT substring(r.url FROM '^[^?#]*') AS base,
				 substring(r.url FROM '^[^?#]*\?([^#]*)') AS query,
				 substring(r.url FROM '^[^#]*#(.*)$') AS fragment
		  FROM (SELECT regexp_replace(url, '^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@', '\1***@') AS url) r) u
$$;
COMMENT ON FUNCTION cdviz._redact_url(text) IS
'cdviz internal: a URL with its user info and query values replaced by ***';

-- Which librdkafka settings of a kafka sink's config are secrets: every
-- password, secret and PEM text (sasl.password, ssl.key.password,
-- ssl.key.pem, sasl.oauthbearer.client.secret...), the key settings
-- (ssl_key...) and sasl.oauthbearer.config, which may hold a client
-- secret.
CREATE FUNCTION cdviz._sink_secret_setting(name text)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT name ~* '(password|secret|\.pem$|^ssl_key|^sasl\.oauthbearer\.config$)' $$;
COMMENT ON FUNCTION cdviz._sink_secret_setting(text) IS
'cdviz internal: whether a librdkafka setting of a kafka sink''s config is a secret (kept in cdviz.sink_secrets, shown as ***)';

-- A sink's definition split into what cdviz.sinks shows and what
-- cdviz.sink_secrets keeps: every secret option, every header value (by
-- name), the whole Kafka config when a setting of it is secret (the
-- secret ones by name), and the whole URL when its user info or query is
-- redacted.
-- Credential options a kind takes later are added to secret_names.
CREATE FUNCTION cdviz._sink_split(target text, options jsonb,
								  OUT shown_target text, OUT shown_options jsonb,
								  OUT secret_keys text[], OUT secrets jsonb)
RETURNS record
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	secret_names CONSTANT text[] := ARRAY['token', 'hmac_secret'];
BEGIN
	shown_target := cdviz._redact_url(target);
	shown_options := options - secret_names;
	IF jsonb_typeof(options->'headers') = 'object' AND options->'headers' <> '{}' THEN
		shown_options := jsonb_set(shown_options, '{headers}',
								   (SELECT jsonb_object_agg(h, '***') FROM jsonb_object_keys(options->'headers') h));
	END IF;
	IF jsonb_typeof(options->'config') = 'object' AND options->'config' <> '{}' THEN
		shown_options := jsonb_set(shown_options, '{config}',
								   (SELECT jsonb_object_agg(c.key, CASE WHEN cdviz._sink_secret_setting(c.key)
																		THEN '"***"'::jsonb ELSE c.value END)
									FROM jsonb_each(options->'config') c));
	END IF;
	secrets := jsonb_strip_nulls(jsonb_build_object(
		'token', options->'token',
		'hmac_secret', options->'hmac_secret',
		'headers', CASE WHEN shown_options->'headers' IS DISTINCT FROM options->'headers'
						THEN options->'headers' END,
		'config', CASE WHEN shown_options->'config' IS DISTINCT FROM options->'config'
					   THEN options->'config' END,
		'target', CASE WHEN shown_target IS DISTINCT FROM target THEN to_jsonb(target) END));
	secret_keys := ARRAY(SELECT k FROM jsonb_object_keys(secrets) k ORDER BY k);
	IF secrets = '{}' THEN
		secrets := NULL;
	END IF;
END
$$;
COMMENT ON FUNCTION cdviz._sink_split(text, jsonb) IS
'cdviz internal: splits a sink''s target and options into what cdviz.sinks shows (secrets as ***, token and hmac_secret left out, secret Kafka settings as ***), the names of the secret parts and the JSON object cdviz.sink_secrets keeps (NULL: none)';

-- A message the dispatcher records about a sink (the last error, which
-- cdviz_reader reads in cdviz.sink_status) with the sink's secrets in it
-- replaced by *** (see cdviz._redact_values()): a receiver may answer a
-- failure with the request it was sent.
CREATE FUNCTION cdviz._sink_redact(message text, secrets jsonb)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT cdviz._redact_values(message, ARRAY(
		SELECT secrets->>'token'
		UNION ALL SELECT secrets->>'hmac_secret'
		UNION ALL SELECT h.value FROM jsonb_each_text(CASE WHEN jsonb_typeof(secrets->'headers') = 'object'
														   THEN secrets->'headers' END) h
		UNION ALL SELECT c.value FROM jsonb_each_text(CASE WHEN jsonb_typeof(secrets->'config') = 'object'
														   THEN secrets->'config' END) c
		WHERE cdviz._sink_secret_setting(c.key)
		UNION ALL SELECT u.userinfo
		UNION ALL SELECT p.part FROM regexp_split_to_table(u.userinfo, ':') p(part)
		UNION ALL SELECT substring(p.part FROM '=(.*)$')
		FROM regexp_split_to_table(substring(secrets->>'target' FROM '^[^?#]*\?([^#]*)'), '&') p(part)))
	FROM (SELECT substring(secrets->>'target' FROM '^[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)@') AS userinfo) u
$$;
COMMENT ON FUNCTION cdviz._sink_redact(text, jsonb) IS
'cdviz internal: a message with the given sink secrets (of cdviz.sink_secrets) in it replaced by ***';

-- Options: which keys a kind takes, and which are secrets.
CREATE FUNCTION cdviz._sink_check(kind text, target text, options jsonb,
								  type_pattern text, source_pattern text, predicate text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	allowed text[] := CASE kind
		WHEN 'http' THEN ARRAY['mode', 'batch_size', 'headers', 'timeout', 'initial_backoff',
							   'max_backoff', 'token', 'hmac_secret']
		WHEN 'nats' THEN ARRAY['jetstream', 'timeout', 'initial_backoff', 'max_backoff']
		WHEN 'kafka' THEN ARRAY['brokers', 'mode', 'key', 'config', 'timeout', 'initial_backoff',
								'max_backoff']
		WHEN 'log' THEN ARRAY[]::text[]
	END;
	k text;
BEGIN
	IF allowed IS NULL THEN
		RAISE EXCEPTION 'unknown sink kind "%"', kind
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Use http, nats, kafka or log.';
	END IF;
	IF jsonb_typeof(options) IS DISTINCT FROM 'object' THEN
		RAISE EXCEPTION 'sink options must be a JSON object'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	FOR k IN SELECT jsonb_object_keys(options) LOOP
		IF NOT k = ANY (allowed) THEN
			RAISE EXCEPTION 'unknown option "%" for a % sink', k, kind
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = format('Options of a %s sink: %s.', kind,
									coalesce(nullif(array_to_string(allowed, ', '), ''), 'none'));
		END IF;
	END LOOP;
	IF kind = 'http' AND target !~* '^https?://' THEN
		RAISE EXCEPTION 'an http sink needs an http:// or https:// URL, not "%"', target
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF kind = 'nats' AND (target = '' OR target ~ '\s') THEN
		RAISE EXCEPTION 'a nats sink needs a subject without spaces, not "%"', target
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF options ? 'mode' AND NOT options->>'mode' IN ('binary', 'structured', 'batch') THEN
		RAISE EXCEPTION 'unknown mode "%"', options->>'mode'
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Use binary, structured or batch.';
	END IF;
	IF kind = 'kafka' THEN
		PERFORM cdviz._sink_check_kafka(target, options);
	END IF;
	IF options ? 'jetstream' AND NOT options->>'jetstream' IN ('auto', 'always', 'never') THEN
		RAISE EXCEPTION 'jetstream must be auto, always or never, not "%"', options->>'jetstream'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF options ? 'batch_size' AND NOT (jsonb_typeof(options->'batch_size') = 'number'
									   AND (options->>'batch_size')::numeric BETWEEN 1 AND 10000) THEN
		RAISE EXCEPTION 'batch_size must be a number from 1 to 10000'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	FOR k IN SELECT unnest(ARRAY['timeout', 'initial_backoff', 'max_backoff']) LOOP
		IF options ? k AND NOT (jsonb_typeof(options->k) = 'number' AND (options->>k)::numeric > 0) THEN
			RAISE EXCEPTION '% must be a positive number of seconds', k
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
	END LOOP;
	IF options ? 'headers' AND (jsonb_typeof(options->'headers') <> 'object' OR EXISTS (
			SELECT FROM jsonb_each(options->'headers') h
			WHERE jsonb_typeof(h.value) <> 'string' OR h.key !~ '^[!#$%&''*+.^_`|~0-9A-Za-z-]+$'
			   OR h.value->>0 ~ '[\r\n]')) THEN
		RAISE EXCEPTION 'headers must be a JSON object of header names and string values'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	-- the filters must be valid SQL over the lake: try them on no row
	EXECUTE format('SELECT FROM cdviz.cdevents_lake WHERE type LIKE $1 AND context_source LIKE $2 AND (%s) LIMIT 0',
				   coalesce(nullif(predicate, ''), 'true'))
		USING coalesce(type_pattern, '%'), coalesce(source_pattern, '%');
END
$$;
COMMENT ON FUNCTION cdviz._sink_check(text, text, jsonb, text, text, text) IS
'cdviz internal: checks a sink definition; raises SQLSTATE 22023 naming what is wrong';

-- A kafka sink: a topic, brokers, and librdkafka settings that leave the
-- sink's guarantees alone (an acknowledged delivery means acks=all on an
-- idempotent producer; the brokers and the delivery timeout have options
-- of their own).  librdkafka itself checks the names and values of the
-- rest when the dispatcher makes the producer (an error there is the
-- sink's last error).
CREATE FUNCTION cdviz._sink_check_kafka(target text, options jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	owned CONSTANT text[] := ARRAY['bootstrap.servers', 'metadata.broker.list', 'enable.idempotence',
								   'acks', 'request.required.acks', 'message.timeout.ms',
								   'delivery.timeout.ms', 'log.queue'];
	k text;
BEGIN
	IF target !~ '^[A-Za-z0-9._-]{1,249}$' THEN
		RAISE EXCEPTION 'a kafka sink needs a topic name (letters, digits, . _ -), not "%"', target
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF jsonb_typeof(options->'brokers') IS DISTINCT FROM 'string'
	   OR options->>'brokers' !~ '^[^\s,]+(,[^\s,]+)*$' THEN
		RAISE EXCEPTION 'a kafka sink needs "brokers": "host:port,host:port..."'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF options->>'mode' = 'batch' THEN
		RAISE EXCEPTION 'a kafka sink sends one event per message: mode binary or structured'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF options ? 'key' AND NOT options->>'key' IN ('subject', 'source', 'none') THEN
		RAISE EXCEPTION 'key must be subject, source or none, not "%"', options->>'key'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF options ? 'config' AND (jsonb_typeof(options->'config') <> 'object' OR EXISTS (
			SELECT FROM jsonb_each(options->'config') c
			WHERE jsonb_typeof(c.value) NOT IN ('string', 'number', 'boolean'))) THEN
		RAISE EXCEPTION 'config must be a JSON object of librdkafka settings and their values'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	FOR k IN SELECT jsonb_object_keys(coalesce(options->'config', '{}')) LOOP
		IF k = ANY (owned) THEN
			RAISE EXCEPTION 'the kafka sink sets "%" itself', k
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Give the brokers as "brokers" and the delivery timeout as "timeout"; the sink always uses an idempotent producer with acks=all.';
		END IF;
	END LOOP;
END
$$;
COMMENT ON FUNCTION cdviz._sink_check_kafka(text, jsonb) IS
'cdviz internal: checks a kafka sink''s topic and options; raises SQLSTATE 22023 naming what is wrong';

CREATE FUNCTION cdviz.create_sink(name text, kind text, target text,
								  options jsonb DEFAULT '{}',
								  type_pattern text DEFAULT NULL,
								  source_pattern text DEFAULT NULL,
								  predicate text DEFAULT NULL,
								  start_at timestamptz DEFAULT NULL,
								  paused boolean DEFAULT false)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	sp record;
	sid integer;
	until bigint;
BEGIN
	PERFORM cdviz._sink_check(kind, target, options, type_pattern, source_pattern, predicate);
	sp := cdviz._sink_split(target, options);
	-- Wait for the writers in flight and hold new ones until we commit:
	-- each writer's trigger then either ran before, and its transaction
	-- is visible in the snapshot taken below (not this sink's event), or
	-- runs after our commit and sees this sink (see lake_record_batch).
	LOCK TABLE cdviz.cdevents_lake IN SHARE MODE;
	INSERT INTO cdviz.sinks (name, kind, target, options, secret_keys, type_pattern,
							 source_pattern, predicate, paused, start_at)
	VALUES (name, kind, sp.shown_target, sp.shown_options, sp.secret_keys,
			nullif(type_pattern, ''), nullif(source_pattern, ''), nullif(predicate, ''),
			paused, start_at)
	RETURNING id INTO sid;
	IF sp.secrets IS NOT NULL THEN
		INSERT INTO cdviz.sink_secrets VALUES (sid, sp.secrets);
	END IF;
	IF start_at IS NOT NULL THEN
		SELECT max(id) INTO until FROM cdviz.cdevents_lake;
	END IF;
	INSERT INTO cdviz.sink_progress (sink_id, snap, backfill_until, backfill_pos, created_until)
	VALUES (sid, pg_current_snapshot(), until, CASE WHEN until IS NOT NULL THEN 0 END, until);
	RETURN sid;
END
$$;
COMMENT ON FUNCTION cdviz.create_sink(text, text, text, jsonb, text, text, text, timestamptz, boolean) IS
'cdviz: creates a sink and returns its id; the dispatcher delivers to it every matching event stored after this transaction commits (with start_at: also those imported since start_at). Secrets (token, hmac_secret, header values, the URL''s user info and query values, Kafka settings named like a secret) go to cdviz.sink_secrets; cdviz.sinks shows them as ***. Example: SELECT cdviz.create_sink(''ci'', ''http'', ''https://hooks.example/cd'', ''{"mode": "batch", "batch_size": 100, "hmac_secret": "s3cret", "headers": {"X-Api-Key": "k3y"}}'', type_pattern => ''dev.cdevents.service.%'');';

CREATE FUNCTION cdviz.alter_sink(name text, target text DEFAULT NULL, options jsonb DEFAULT NULL,
								 type_pattern text DEFAULT NULL,
								 source_pattern text DEFAULT NULL,
								 predicate text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s cdviz.sinks;
	cur jsonb;
	full_target text;
	full_options jsonb;
	sp record;
	k text;
BEGIN
	SELECT * INTO s FROM cdviz.sinks WHERE sinks.name = alter_sink.name FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'sink "%" does not exist', name USING ERRCODE = 'undefined_object';
	END IF;
	SELECT x.secrets INTO cur FROM cdviz.sink_secrets x WHERE x.sink_id = s.id;
	cur := coalesce(cur, '{}');
	-- The sink as the dispatcher sees it, secrets in place; the target as
	-- cdviz.sinks shows it keeps the current one.
	full_target := CASE WHEN target IS NULL OR target = s.target THEN coalesce(cur->>'target', s.target)
						ELSE target END;
	full_options := s.options || (cur - 'target');
	IF options IS NOT NULL THEN
		-- new options replace all options; a secret given as *** (as
		-- cdviz.sinks shows it) keeps its current value
		full_options := options;
		FOREACH k IN ARRAY ARRAY['token', 'hmac_secret'] LOOP
			IF options->>k = '***' AND cur ? k THEN
				full_options := jsonb_set(full_options, ARRAY[k], cur->k);
			END IF;
		END LOOP;
		FOREACH k IN ARRAY ARRAY['headers', 'config'] LOOP
			IF jsonb_typeof(options->k) = 'object' THEN
				full_options := jsonb_set(full_options, ARRAY[k], coalesce((
					SELECT jsonb_object_agg(h.key, CASE WHEN h.value = '"***"' AND cur->k ? h.key
														THEN cur->k->h.key ELSE h.value END)
					FROM jsonb_each(options->k) h), '{}'));
			END IF;
		END LOOP;
	END IF;
	s.type_pattern := CASE WHEN type_pattern IS NULL THEN s.type_pattern ELSE nullif(type_pattern, '') END;
	s.source_pattern := CASE WHEN source_pattern IS NULL THEN s.source_pattern ELSE nullif(source_pattern, '') END;
	s.predicate := CASE WHEN predicate IS NULL THEN s.predicate ELSE nullif(predicate, '') END;
	PERFORM cdviz._sink_check(s.kind, full_target, full_options, s.type_pattern,
							  s.source_pattern, s.predicate);
	sp := cdviz._sink_split(full_target, full_options);
	DELETE FROM cdviz.sink_secrets WHERE sink_id = s.id;
	IF sp.secrets IS NOT NULL THEN
		INSERT INTO cdviz.sink_secrets VALUES (s.id, sp.secrets);
	END IF;
	UPDATE cdviz.sinks
	SET target = sp.shown_target, options = sp.shown_options, secret_keys = sp.secret_keys,
		type_pattern = s.type_pattern, source_pattern = s.source_pattern,
		predicate = s.predicate, updated_at = now()
	WHERE id = s.id;
END
$$;
COMMENT ON FUNCTION cdviz.alter_sink(text, text, jsonb, text, text, text) IS
'cdviz: changes a sink; NULL arguments keep the current value, an empty string removes a filter, options (when given) replace all options, secrets included (a secret, header or Kafka setting value given as ***, as cdviz.sinks shows it, keeps its current value; so does the target as cdviz.sinks shows it). Takes effect at the dispatcher''s next chunk; delivery resumes where it was. Example: SELECT cdviz.alter_sink(''ci'', type_pattern => ''dev.cdevents.%'');';

CREATE FUNCTION cdviz.drop_sink(name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	DELETE FROM cdviz.sinks WHERE sinks.name = drop_sink.name;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'sink "%" does not exist', name USING ERRCODE = 'undefined_object';
	END IF;
END
$$;
COMMENT ON FUNCTION cdviz.drop_sink(text) IS
'cdviz: removes a sink with its progress, secrets and rejected deliveries. Example: SELECT cdviz.drop_sink(''ci'');';

CREATE FUNCTION cdviz.pause_sink(name text, paused boolean DEFAULT true)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	UPDATE cdviz.sinks SET paused = pause_sink.paused, updated_at = now()
	WHERE sinks.name = pause_sink.name;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'sink "%" does not exist', name USING ERRCODE = 'undefined_object';
	END IF;
END
$$;
COMMENT ON FUNCTION cdviz.pause_sink(text, boolean) IS
'cdviz: stops delivering to a sink; its events wait (they stay in the outbox) until cdviz.resume_sink(). Example: SELECT cdviz.pause_sink(''ci'');';

CREATE FUNCTION cdviz.resume_sink(name text)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT cdviz.pause_sink(name, false) $$;
COMMENT ON FUNCTION cdviz.resume_sink(text) IS
'cdviz: delivers again to a paused sink, starting where it stopped. Example: SELECT cdviz.resume_sink(''ci'');';

CREATE FUNCTION cdviz.retry_rejected_deliveries(sink text DEFAULT NULL, since timestamptz DEFAULT '-infinity')
RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
	WITH r AS (
		UPDATE cdviz.rejected_deliveries d SET retry_requested_at = now()
		FROM cdviz.sinks s
		WHERE s.id = d.sink_id AND (retry_rejected_deliveries.sink IS NULL OR s.name = retry_rejected_deliveries.sink)
		  AND d.rejected_at >= since AND d.retried_at IS NULL AND d.retry_requested_at IS NULL
		RETURNING 1)
	SELECT count(*) FROM r
$$;
COMMENT ON FUNCTION cdviz.retry_rejected_deliveries(text, timestamptz) IS
'cdviz: asks the dispatcher to deliver the refused events again (of one sink, refused since a time) and returns how many; a new refusal makes a new row. Example: SELECT cdviz.retry_rejected_deliveries(''ci'');';

-- What a sink still owes of one outbox row: its last N events.  The
-- window is (snap, next_snap] and pos the last event delivered in it
-- (see cdviz.sink_progress); a row written by another cluster than the
-- progress (a restore, the dispatcher not yet run) is owed whole, its
-- transaction id being no transaction of the progress's cluster.  Plain
-- SQL without SET, so that the planner inlines it into sink_status.
CREATE FUNCTION cdviz._sink_owed(p cdviz.sink_progress, b cdviz.lake_batches)
RETURNS integer
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
	SELECT CASE
		WHEN b.cluster_id <> coalesce(p.cluster_id, b.cluster_id) THEN cardinality(b.ids)
		WHEN pg_catalog.pg_visible_in_snapshot(b.xid, p.snap) THEN 0
		WHEN p.next_snap IS NULL OR p.pos_xid IS NULL
			OR NOT pg_catalog.pg_visible_in_snapshot(b.xid, p.next_snap) THEN cardinality(b.ids)
		WHEN (b.xid, b.batch_id) = (p.pos_xid, p.pos_batch)
			THEN greatest(cardinality(b.ids) - p.pos_ord, 0)
		WHEN (b.xid, b.batch_id) > (p.pos_xid, p.pos_batch) THEN cardinality(b.ids)
		ELSE 0
	END
$$;
COMMENT ON FUNCTION cdviz._sink_owed(cdviz.sink_progress, cdviz.lake_batches) IS
'cdviz internal: how many events at the end of an outbox row a sink has not passed yet (its pending events there, before its filter)';

-- Progress restored from another cluster (pg_dump + pg_restore) holds
-- transaction ids of that cluster: read as ids of this one, events stored
-- here could look delivered and be skipped.  The dispatcher calls this
-- before it delivers anything.  With the restored snapshots, against the
-- restored outbox rows, it finds each sink's lowest lake id still owed
-- (its backfill counts too); the sink then delivers by lake id, as a
-- backfill, every event above it up to the newest stored one (those
-- stored here since the restore included), and its window starts again
-- from a snapshot of this cluster.  Owed events are delivered, none
-- skipped; events above the lowest owed one that had been delivered are
-- delivered again; a sink that had delivered everything delivers nothing
-- again.  The restored outbox rows go: their ids are the backfill's now.
CREATE FUNCTION cdviz._rebase_sinks()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	here CONSTANT bigint := cdviz._cluster_id();
	newest bigint;
	rebased integer;
BEGIN
	UPDATE cdviz.sink_progress SET cluster_id = here WHERE cluster_id IS NULL;
	IF NOT EXISTS (SELECT FROM cdviz.sink_progress WHERE cluster_id <> here) THEN
		RETURN 0;
	END IF;
	-- As in create_sink(): writers in flight finish first and new ones
	-- wait for our commit, so every event up to newest is in a
	-- transaction visible in the snapshot the window starts from, and
	-- every later one in a transaction that is not.
	LOCK TABLE cdviz.cdevents_lake IN SHARE MODE;
	SELECT max(id) INTO newest FROM cdviz.cdevents_lake;
	WITH owed AS (
		SELECT p.sink_id,
			   least(CASE WHEN p.backfill_until IS NOT NULL THEN p.backfill_pos END,
					 (SELECT min(u.id) - 1
					  FROM cdviz.lake_batches b,
						   unnest(b.ids) WITH ORDINALITY AS u(id, ord)
					  WHERE u.ord > cardinality(b.ids) - cdviz._sink_owed(p, b))) AS after
		FROM cdviz.sink_progress p
		WHERE p.cluster_id <> here
	)
	UPDATE cdviz.sink_progress p
	SET snap = pg_current_snapshot(), next_snap = NULL,
		pos_xid = NULL, pos_batch = NULL, pos_ord = NULL,
		backfill_until = CASE WHEN o.after < newest THEN newest END,
		backfill_pos = CASE WHEN o.after < newest THEN o.after END,
		created_until = coalesce(p.created_until, o.after, newest),
		cluster_id = here
	FROM owed o
	WHERE o.sink_id = p.sink_id;
	GET DIAGNOSTICS rebased = ROW_COUNT;
	DELETE FROM cdviz.lake_batches WHERE cluster_id <> here;
	RETURN rebased;
END
$$;
COMMENT ON FUNCTION cdviz._rebase_sinks() IS
'cdviz internal: called by the dispatcher; re-bases the progress of sinks restored from another cluster (see cdviz.sink_progress.cluster_id) on a backfill by lake id from the lowest id each still owed, and returns how many it re-based';

-- Per sink: what was delivered and what waits.  Pending counts the events
-- of the outbox the sink has not passed yet, before its filter.
CREATE VIEW cdviz.sink_status AS
SELECT s.name, s.kind, s.target, s.paused,
	   p.delivered,
	   p.rejected,
	   (SELECT count(*) FROM cdviz.rejected_deliveries d
		WHERE d.sink_id = s.id AND d.retry_requested_at IS NOT NULL AND d.retried_at IS NULL)
		   AS retries_requested,
	   coalesce(w.pending, 0) + coalesce(bf.pending, 0) AS pending,
	   CASE WHEN coalesce(w.pending, 0) + coalesce(bf.pending, 0) = 0 THEN 0
			ELSE extract(epoch FROM now() - least(w.oldest, bf.oldest)) END AS lag_seconds,
	   p.failures,
	   p.last_delivered_id,
	   p.last_success_at,
	   p.last_error,
	   p.last_error_at,
	   s.created_at
FROM cdviz.sinks s
JOIN cdviz.sink_progress p ON p.sink_id = s.id
LEFT JOIN LATERAL (
	SELECT sum(cdviz._sink_owed(p, b)) AS pending, min(b.stored_at) AS oldest
	FROM cdviz.lake_batches b
	WHERE cdviz._sink_owed(p, b) > 0
) w ON true
LEFT JOIN LATERAL (
	SELECT count(*) AS pending, min(l.imported_at) AS oldest
	FROM cdviz.cdevents_lake l
	WHERE p.backfill_until IS NOT NULL AND l.id > p.backfill_pos AND l.id <= p.backfill_until
	  AND (l.id > p.created_until OR l.imported_at >= s.start_at)
) bf ON true;

COMMENT ON VIEW cdviz.sink_status IS
'cdviz: per sink — events delivered and refused, events waiting (pending, before the filter) and how old the oldest is (lag_seconds), failed attempts, last success and last error; no secrets';
COMMENT ON COLUMN cdviz.sink_status.name IS 'sink name';
COMMENT ON COLUMN cdviz.sink_status.kind IS 'http, nats, kafka or log';
COMMENT ON COLUMN cdviz.sink_status.target IS 'URL, subject, topic or label';
COMMENT ON COLUMN cdviz.sink_status.paused IS 'whether delivery is paused';
COMMENT ON COLUMN cdviz.sink_status.delivered IS 'events delivered';
COMMENT ON COLUMN cdviz.sink_status.rejected IS 'events refused for good';
COMMENT ON COLUMN cdviz.sink_status.retries_requested IS 'refused events waiting for the retry asked by cdviz.retry_rejected_deliveries()';
COMMENT ON COLUMN cdviz.sink_status.pending IS 'events stored and not yet passed by this sink (before its filter)';
COMMENT ON COLUMN cdviz.sink_status.lag_seconds IS 'age of the oldest pending event; 0 when none';
COMMENT ON COLUMN cdviz.sink_status.failures IS 'failed attempts that were retried';
COMMENT ON COLUMN cdviz.sink_status.last_delivered_id IS 'lake id of the last delivered event';
COMMENT ON COLUMN cdviz.sink_status.last_success_at IS 'when a delivery last succeeded';
COMMENT ON COLUMN cdviz.sink_status.last_error IS 'why the last failed attempt failed';
COMMENT ON COLUMN cdviz.sink_status.last_error_at IS 'when it failed';
COMMENT ON COLUMN cdviz.sink_status.created_at IS 'when the sink was created';

-- Sinks are managed by superusers only: a sink's predicate runs inside
-- the dispatcher, and a sink sends events out of the database.
REVOKE EXECUTE ON FUNCTION cdviz._sink_check(text, text, jsonb, text, text, text),
	cdviz._sink_check_kafka(text, jsonb), cdviz._sink_secret_setting(text),
	cdviz._redact_url(text), cdviz._sink_split(text, jsonb), cdviz._sink_redact(text, jsonb),
	cdviz.create_sink(text, text, text, jsonb, text, text, text, timestamptz, boolean),
	cdviz.alter_sink(text, text, jsonb, text, text, text),
	cdviz.drop_sink(text), cdviz.pause_sink(text, boolean), cdviz.resume_sink(text),
	cdviz.retry_rejected_deliveries(text, timestamptz),
	cdviz.lake_record_batch(), cdviz._rebase_sinks() FROM PUBLIC;
GRANT SELECT ON cdviz.sinks, cdviz.sink_status TO cdviz_reader;
