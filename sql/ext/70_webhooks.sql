-- Webhooks: tools that do not speak CDEvents (GitHub, GitLab, Argo CD,
-- Tekton, anything a user writes a transformer for) post their own
-- payloads to POST /webhooks/<name>; a SQL transformer turns each delivery
-- into zero or more CDEvents, stored through the same validation and dedup
-- as every other event, in the same transaction as the delivery record.
--
--   cdviz.webhooks             routes: name -> transformer, auth kind
--   cdviz.webhook_secrets      their secrets (no grant: superusers and the owner)
--   cdviz.webhook_routes       the routes without secrets, for cdviz_reader
--   cdviz.webhook_deliveries   every delivery, its outcome and its events
--   cdviz.process_webhook()    one delivery, called by the http worker
--   cdviz.retransform()        runs the (fixed) transformer again
--
-- Transformers run as the http worker's role (a superuser), or with their
-- owner's rights when that is no superuser (webhook_transform.c): only the
-- owner of the extension and superusers may create routes, and each route names
-- its function by regprocedure so a later same-named function elsewhere on
-- a search_path cannot take its place.

CREATE TABLE cdviz.webhooks (
	name			text PRIMARY KEY
		CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$'),
	transformer		regprocedure NOT NULL,
	auth			text NOT NULL
		CHECK (auth IN ('github', 'gitlab', 'bearer', 'basic', 'none')),
	retention		interval NOT NULL DEFAULT interval '30 days'
		CHECK (retention > interval '0'),
	created_at		timestamptz NOT NULL DEFAULT now(),
	updated_at		timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE cdviz.webhooks IS
'cdviz: webhook routes served by the http worker at POST /webhooks/<name>; manage them with cdviz.create_webhook(), alter_webhook(), drop_webhook(). Secrets are in cdviz.webhook_secrets.';
COMMENT ON COLUMN cdviz.webhooks.name IS 'route name: the URL path is /webhooks/<name> (letters, digits, _ . -; up to 63)';
COMMENT ON COLUMN cdviz.webhooks.transformer IS 'function (headers jsonb, body jsonb) RETURNS SETOF jsonb turning one delivery into CDEvents';
COMMENT ON COLUMN cdviz.webhooks.auth IS 'github: X-Hub-Signature-256 HMAC of the body; gitlab: X-Gitlab-Token; bearer: Authorization: Bearer; basic: Authorization: Basic (secret is user:password); none';
COMMENT ON COLUMN cdviz.webhooks.retention IS 'how long deliveries of this route are kept in cdviz.webhook_deliveries (cdviz.prune_webhook_deliveries())';
COMMENT ON COLUMN cdviz.webhooks.created_at IS 'when the route was created';
COMMENT ON COLUMN cdviz.webhooks.updated_at IS 'when the route was last altered';

-- A separate table rather than a column: cdviz_reader may read the routes
-- (through the view) but no role but the owner may read this one.
CREATE TABLE cdviz.webhook_secrets (
	name			text PRIMARY KEY REFERENCES cdviz.webhooks ON UPDATE CASCADE ON DELETE CASCADE,
	secret			text NOT NULL CHECK (secret <> '')
);

COMMENT ON TABLE cdviz.webhook_secrets IS
'cdviz: the secret of each webhook route (HMAC key, token, or user:password). Readable by the extension owner and superusers only.';
COMMENT ON COLUMN cdviz.webhook_secrets.secret IS 'github: the webhook secret; gitlab: the secret token; bearer: the token; basic: user:password';

CREATE TABLE cdviz.webhook_deliveries (
	id				bigserial PRIMARY KEY,
	route			text NOT NULL,
	received_at		timestamptz NOT NULL DEFAULT now(),
	last_received_at timestamptz NOT NULL DEFAULT now(),
	attempts		integer NOT NULL DEFAULT 1,
	event_name		text,
	delivery_key	text NOT NULL,
	headers			jsonb NOT NULL,
	body			jsonb NOT NULL,
	status			text NOT NULL
		CHECK (status IN ('stored', 'duplicate', 'ignored', 'failed', 'ping')),
	event_ids		bigint[],
	context_ids		text[],
	error			text,
	problems		jsonb,
	transformed_at	timestamptz NOT NULL DEFAULT now(),
	UNIQUE (route, delivery_key)
)
-- A tool's body compresses to a few kB (GitHub's 20 kB workflow_run: 4.7
-- kB with lz4): kept in the row rather than in TOAST chunks, one heap
-- insert instead of three and no TOAST index entries per delivery.
WITH (toast_tuple_target = 8160);
SELECT cdviz._prefer_lz4('cdviz.webhook_deliveries', 'body');
SELECT cdviz._prefer_lz4('cdviz.webhook_deliveries', 'headers');
CREATE INDEX webhook_deliveries_received_at ON cdviz.webhook_deliveries (route, received_at);
CREATE INDEX webhook_deliveries_failed ON cdviz.webhook_deliveries (route, received_at)
	WHERE status = 'failed';

COMMENT ON TABLE cdviz.webhook_deliveries IS
'cdviz: every webhook delivery with its outcome: the events it produced, or why none (ignored: <reason>, or the transformer''s error). A redelivery (same delivery key) updates its row instead of adding one. Pruned after the route''s retention.';
COMMENT ON COLUMN cdviz.webhook_deliveries.route IS 'cdviz.webhooks.name it was posted to (kept after the route is dropped)';
COMMENT ON COLUMN cdviz.webhook_deliveries.received_at IS 'first reception; also the event timestamp of transformer output that has none';
COMMENT ON COLUMN cdviz.webhook_deliveries.last_received_at IS 'latest reception (redeliveries)';
COMMENT ON COLUMN cdviz.webhook_deliveries.attempts IS 'how many times it was received';
COMMENT ON COLUMN cdviz.webhook_deliveries.event_name IS 'what the tool called it: X-GitHub-Event/action, X-Gitlab-Event, ce-type, ...';
COMMENT ON COLUMN cdviz.webhook_deliveries.delivery_key IS 'identity of the delivery, the root of its events'' context.id: github:<hook id>:<X-GitHub-Delivery>, gitlab:<Idempotency-Key or X-Gitlab-Event-UUID>, ce:<ce-source>:<ce-id>, else sha256:<hash of the body>';
COMMENT ON COLUMN cdviz.webhook_deliveries.headers IS 'request headers, names in lower case, credentials (Authorization, X-Hub-Signature*, X-Gitlab-Token, Cookie) removed';
COMMENT ON COLUMN cdviz.webhook_deliveries.body IS 'the body as received (JSON)';
COMMENT ON COLUMN cdviz.webhook_deliveries.status IS 'stored (new events), duplicate (all already stored), ignored (no event, see error), failed (transformer error or invalid events, see error and problems), ping';
COMMENT ON COLUMN cdviz.webhook_deliveries.event_ids IS 'cdviz.cdevents_lake ids of the events it produced, in output order';
COMMENT ON COLUMN cdviz.webhook_deliveries.context_ids IS 'context.id of the events it produced, in output order';
COMMENT ON COLUMN cdviz.webhook_deliveries.error IS 'ignored: <reason>, or the transformer''s error, or why its output was refused';
COMMENT ON COLUMN cdviz.webhook_deliveries.problems IS 'for refused output: [{"index": n, "path": ..., "message": ...}]';
COMMENT ON COLUMN cdviz.webhook_deliveries.transformed_at IS 'when the transformer last ran on it';

-- Deliveries are data: pg_dump keeps them (routes too; secrets as well,
-- since a dump is read by superusers only when it contains them).
SELECT pg_catalog.pg_extension_config_dump('cdviz.webhooks', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.webhook_secrets', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.webhook_deliveries', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.webhook_deliveries_id_seq', '');

CREATE VIEW cdviz.webhook_routes AS
SELECT w.name, '/webhooks/' || w.name AS path, w.transformer, w.auth,
	   (s.name IS NOT NULL) AS has_secret, w.retention, w.created_at, w.updated_at
FROM cdviz.webhooks w
LEFT JOIN cdviz.webhook_secrets s ON s.name = w.name;

COMMENT ON VIEW cdviz.webhook_routes IS
'cdviz: webhook routes without their secrets (path, transformer, auth kind, whether a secret is set, retention)';

-- ---------------------------------------------------------------------
-- Managing routes
-- ---------------------------------------------------------------------

-- The transformer must have the signature the worker calls.
CREATE FUNCTION cdviz._webhook_check_transformer(transformer regprocedure)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	p pg_proc;
BEGIN
	SELECT * INTO p FROM pg_proc WHERE oid = transformer;
	IF p.pronargs <> 2 OR p.proargtypes[0] <> 'jsonb'::regtype OR p.proargtypes[1] <> 'jsonb'::regtype
	   OR p.prorettype <> 'jsonb'::regtype OR NOT p.proretset THEN
		RAISE EXCEPTION 'transformer % does not have the signature (headers jsonb, body jsonb) RETURNS SETOF jsonb',
			transformer
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Example: CREATE FUNCTION my_transform(headers jsonb, body jsonb) RETURNS SETOF jsonb LANGUAGE plpgsql AS ...';
	END IF;
END
$$;
COMMENT ON FUNCTION cdviz._webhook_check_transformer(regprocedure) IS
'cdviz internal: raises unless the function is (jsonb, jsonb) RETURNS SETOF jsonb';

CREATE FUNCTION cdviz._webhook_check_secret(auth text, secret text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF auth = 'none' AND secret IS NOT NULL THEN
		RAISE EXCEPTION 'auth none takes no secret' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF auth <> 'none' AND coalesce(secret, '') = '' THEN
		RAISE EXCEPTION 'auth % needs a secret', auth
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'github: the webhook secret; gitlab: the secret token; bearer: the token; basic: user:password';
	END IF;
	IF auth = 'basic' AND position(':' IN secret) = 0 THEN
		RAISE EXCEPTION 'auth basic needs a secret of the form user:password'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
END
$$;
COMMENT ON FUNCTION cdviz._webhook_check_secret(text, text) IS
'cdviz internal: raises unless the secret suits the auth kind';

CREATE FUNCTION cdviz.create_webhook(name text, transformer regprocedure, auth text, secret text DEFAULT NULL,
									 retention interval DEFAULT interval '30 days')
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM cdviz._webhook_check_transformer(transformer);
	PERFORM cdviz._webhook_check_secret(auth, secret);
	INSERT INTO cdviz.webhooks (name, transformer, auth, retention)
	VALUES (create_webhook.name, create_webhook.transformer, create_webhook.auth, create_webhook.retention);
	IF secret IS NOT NULL THEN
		INSERT INTO cdviz.webhook_secrets (name, secret) VALUES (create_webhook.name, create_webhook.secret);
	END IF;
	RETURN '/webhooks/' || name;
END
$$;
COMMENT ON FUNCTION cdviz.create_webhook(text, regprocedure, text, text, interval) IS
'cdviz: creates the route POST /webhooks/<name> (returned) whose deliveries the transformer turns into CDEvents; auth is github, gitlab, bearer, basic (secret user:password) or none. Takes effect at once. Example: SELECT cdviz.create_webhook(''github'', ''cdviz.transform_github(jsonb,jsonb)'', ''github'', ''s3cret'');';

CREATE FUNCTION cdviz.alter_webhook(name text, transformer regprocedure DEFAULT NULL, auth text DEFAULT NULL,
									secret text DEFAULT NULL, retention interval DEFAULT NULL,
									new_name text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	w cdviz.webhooks;
	cur_secret text;
BEGIN
	SELECT * INTO w FROM cdviz.webhooks WHERE webhooks.name = alter_webhook.name FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'webhook "%" does not exist', alter_webhook.name
			USING ERRCODE = 'undefined_object', HINT = 'SELECT * FROM cdviz.webhook_routes lists them.';
	END IF;
	SELECT s.secret INTO cur_secret FROM cdviz.webhook_secrets s WHERE s.name = w.name;
	IF transformer IS NOT NULL THEN
		PERFORM cdviz._webhook_check_transformer(transformer);
	END IF;
	-- switching to none drops the secret; otherwise a new secret replaces it
	PERFORM cdviz._webhook_check_secret(coalesce(auth, w.auth),
										CASE WHEN coalesce(auth, w.auth) = 'none' THEN NULL
											 ELSE coalesce(secret, cur_secret) END);
	UPDATE cdviz.webhooks
	SET transformer = coalesce(alter_webhook.transformer, webhooks.transformer),
		auth = coalesce(alter_webhook.auth, webhooks.auth),
		retention = coalesce(alter_webhook.retention, webhooks.retention),
		name = coalesce(alter_webhook.new_name, webhooks.name),
		updated_at = now()
	WHERE webhooks.name = w.name;
	IF coalesce(auth, w.auth) = 'none' THEN
		DELETE FROM cdviz.webhook_secrets s WHERE s.name = coalesce(new_name, w.name);
	ELSIF secret IS NOT NULL THEN
		INSERT INTO cdviz.webhook_secrets AS s (name, secret) VALUES (coalesce(new_name, w.name), secret)
		ON CONFLICT ON CONSTRAINT webhook_secrets_pkey DO UPDATE SET secret = excluded.secret;
	END IF;
	RETURN '/webhooks/' || coalesce(new_name, w.name);
END
$$;
COMMENT ON FUNCTION cdviz.alter_webhook(text, regprocedure, text, text, interval, text) IS
'cdviz: changes what is given of a route (transformer, auth, secret, retention, new_name) and returns its path; auth none drops the secret. Example: SELECT cdviz.alter_webhook(''github'', secret => ''rotated'');';

CREATE FUNCTION cdviz.drop_webhook(name text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	DELETE FROM cdviz.webhooks w WHERE w.name = drop_webhook.name;
	RETURN FOUND;
END
$$;
COMMENT ON FUNCTION cdviz.drop_webhook(text) IS
'cdviz: removes the route (its deliveries stay until pruned) and returns whether it existed; the path answers 404 from then on. Example: SELECT cdviz.drop_webhook(''github'');';

-- ---------------------------------------------------------------------
-- Helpers for transformers
--
-- The one-expression helpers have no SET clause and declare the
-- volatility of what they call, so that the planner inlines them into the
-- transformer's statements: a SET (or a FROM) makes each call a function
-- execution of its own, planned afresh in every statement that calls it,
-- which cost more than the rest of a transformer.  Inlined, they run under
-- the caller's search_path (the shipped transformers pin pg_catalog) and
-- name only built-in functions and cdviz-qualified objects.
-- ---------------------------------------------------------------------

CREATE FUNCTION cdviz.webhook_timestamp(ts text)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
	-- RFC 3339 in UTC, microseconds only when there are some: the tools
	-- write "2016-08-12 15:23:28 UTC", "+0200" offsets or epoch seconds.
	-- One expression (t three times), so that it is inlined.
	SELECT to_char(
		CASE WHEN ts ~ '^[0-9]+(\.[0-9]+)?$' THEN to_timestamp(ts::numeric)
			 ELSE nullif(ts, '')::timestamptz END AT TIME ZONE 'UTC',
		CASE WHEN date_trunc('second', CASE WHEN ts ~ '^[0-9]+(\.[0-9]+)?$' THEN to_timestamp(ts::numeric)
											ELSE nullif(ts, '')::timestamptz END)
				  = CASE WHEN ts ~ '^[0-9]+(\.[0-9]+)?$' THEN to_timestamp(ts::numeric)
						 ELSE nullif(ts, '')::timestamptz END
			 THEN 'YYYY-MM-DD"T"HH24:MI:SS"Z"'
			 ELSE 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"' END)
$$;
COMMENT ON FUNCTION cdviz.webhook_timestamp(text) IS
'cdviz: a tool''s time (ISO 8601, "2016-08-12 15:23:28 UTC", "+0200" offsets, epoch seconds) as an RFC 3339 UTC string for context.timestamp; NULL stays NULL. Example: SELECT cdviz.webhook_timestamp(''2021-04-28 21:50:00 +0200'');';

CREATE FUNCTION cdviz.webhook_cdevent(kind text, source text, ts text, subject_id text, content jsonb)
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
	-- The version of each type is the one CDEvents 0.5.1 ships; context.id
	-- is a placeholder that process_webhook replaces by one derived from the
	-- delivery, so that the output is a valid event on its own too.
	SELECT jsonb_build_object(
		'context', jsonb_strip_nulls(jsonb_build_object(
			'specversion', '0.5.1',
			'id', md5(concat_ws('|', kind, source, ts, subject_id)),
			'source', source,
			'type', 'dev.cdevents.' || kind || '.' ||
				CASE WHEN kind = 'change.created' THEN '0.4.0'
					 WHEN kind LIKE 'ticket.%' THEN '0.2.0'
					 ELSE '0.3.0' END,
			'timestamp', cdviz.webhook_timestamp(ts))),
		'subject', jsonb_build_object(
			'id', subject_id,
			'source', source,
			'content', jsonb_strip_nulls(coalesce(content, '{}'))))
$$;
COMMENT ON FUNCTION cdviz.webhook_cdevent(text, text, text, text, jsonb) IS
'cdviz: builds a CDEvents 0.5.1 event of kind ''<subject>.<predicate>'' (e.g. ''pipelinerun.finished'') with its 0.5.1 type version; null content fields are dropped, a NULL ts is left out (process_webhook then uses the first reception time). Example: SELECT cdviz.webhook_cdevent(''pipelinerun.started'', ''/ci'', now()::text, ''run-1'', ''{"pipelineName": "build"}'');';

CREATE FUNCTION cdviz.webhook_deploy_predicate(environment_id text, service_id text, at_ts timestamptz)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	-- What ran in the environment just before at_ts decides, not what runs
	-- now: a deployment delivered late is judged by its own time.
	SELECT CASE WHEN EXISTS (
		SELECT FROM (SELECT h.predicate FROM cdviz.environment_history h
					 WHERE h.environment_id = webhook_deploy_predicate.environment_id
					   AND h.service_id = webhook_deploy_predicate.service_id
					   AND h.valid_from < at_ts
					   AND h.predicate <> 'published'
					 ORDER BY h.valid_from DESC, h.event_id DESC
					 LIMIT 1) last
		WHERE last.predicate <> 'removed')
	THEN 'upgraded' ELSE 'deployed' END
$$;
COMMENT ON FUNCTION cdviz.webhook_deploy_predicate(text, text, timestamptz) IS
'cdviz: ''upgraded'' when the inventory says the service ran in the environment just before at_ts (a deployed, upgraded or rolledback event earlier than at_ts not followed by a removal), else ''deployed''. Judges by at_ts, so out-of-order deliveries are classified by their own time. Example: SELECT cdviz.webhook_deploy_predicate(''prod'', ''api'', now());';

CREATE FUNCTION cdviz.webhook_oci_purl(image text, digest text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	ref text := image;
	tag text;
	dig text := digest;
	repo text;
	name text;
BEGIN
	IF image IS NULL OR image = '' THEN
		RETURN NULL;
	END IF;
	IF position('@' IN ref) > 0 THEN
		dig := coalesce(dig, lower(split_part(ref, '@', 2)));
		ref := split_part(ref, '@', 1);
	END IF;
	-- a tag is after the last ':' of the last path segment (not a port);
	-- tags are case-sensitive, registry and repository names are not
	IF ref ~ ':[^/:]*$' THEN
		tag := substring(ref FROM ':([^/:]*)$');
		ref := regexp_replace(ref, ':[^/:]*$', '');
	END IF;
	repo := lower(ref);
	name := regexp_replace(ref, '^.*/', '');
	RETURN 'pkg:oci/' || name
		|| CASE WHEN dig IS NOT NULL AND dig <> '' THEN '@' || replace(dig, ':', '%3A') ELSE '' END
		|| '?repository_url=' || repo
		|| CASE WHEN tag IS NOT NULL AND tag <> '' THEN '&tag=' || tag ELSE '' END;
END
$$;
COMMENT ON FUNCTION cdviz.webhook_oci_purl(text, text) IS
'cdviz: package URL of a container image reference (registry/path/name[:tag][@sha256:...]): pkg:oci/<name>@<digest>?repository_url=<registry/path/name>&tag=<tag>, registry and name in lower case, the tag as given. Example: SELECT cdviz.webhook_oci_purl(''ghcr.io/acme/api:1.2@sha256:ab12'');';

-- ---------------------------------------------------------------------
-- Processing deliveries
-- ---------------------------------------------------------------------

-- A delivery is processed in C (src/webhook/): the route's
-- transformer is called through a kept plan, its output completed and
-- stored as items, and the delivery row written once with its outcome.
-- The transformers stay SQL.  These functions pin search_path to
-- pg_catalog, pg_temp themselves while a transformer runs, whoever calls.

CREATE FUNCTION cdviz.webhook_delivery_key(headers jsonb, body jsonb)
RETURNS text
LANGUAGE c STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdviz_webhook_delivery_key';
COMMENT ON FUNCTION cdviz.webhook_delivery_key(jsonb, jsonb) IS
'cdviz: the identity of a delivery, stable across redeliveries: github:<X-GitHub-Hook-ID>:<X-GitHub-Delivery>, gitlab:<Idempotency-Key, else X-Gitlab-Event-UUID>, ce:<ce-source>:<ce-id> (CloudEvents such as Tekton''s), else sha256:<hash of the body''s jsonb text>. Events get context.id <key>#<position>. Headers are in lower case. Example: SELECT cdviz.webhook_delivery_key(''{"x-github-delivery": "72d3162e"}'', ''{}'');';

-- Run the route's transformer over a stored delivery and store its
-- events; the delivery row records the outcome (for retransform).
CREATE FUNCTION cdviz._webhook_transform(d cdviz.webhook_deliveries,
										  OUT status text, OUT event_ids bigint[],
										  OUT stored bigint, OUT duplicates bigint, OUT error text)
RETURNS record
LANGUAGE c STRICT VOLATILE
AS 'MODULE_PATHNAME', 'cdviz_webhook_transform';
COMMENT ON FUNCTION cdviz._webhook_transform(cdviz.webhook_deliveries) IS
'cdviz internal: runs the route''s transformer over one stored delivery, stores its events and records the outcome on the delivery';

CREATE FUNCTION cdviz.process_webhook(route text, headers jsonb, body jsonb,
									  OUT status text, OUT delivery_id bigint, OUT event_ids bigint[],
									  OUT stored bigint, OUT duplicates bigint, OUT error text)
RETURNS record
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'cdviz_process_webhook';
COMMENT ON FUNCTION cdviz.process_webhook(text, jsonb, jsonb) IS
'cdviz: processes one delivery of a route (what the http worker calls for POST /webhooks/<name>, after checking credentials): records it in cdviz.webhook_deliveries, runs the transformer, derives each event''s context.id from the delivery key and its position, fills a missing context.source (/webhooks/<route>), specversion and timestamp (first reception), and stores the events through cdviz.ingest_batch — all or nothing. A transformer error or invalid output is recorded on the delivery (status failed) rather than raised. Returns status (stored, duplicate, ignored, failed, ping), the delivery id, the lake ids, counts and the error. Example: SELECT * FROM cdviz.process_webhook(''github'', ''{"X-GitHub-Event": "ping"}'', ''{}'');';

CREATE FUNCTION cdviz.retransform(route text, since timestamptz DEFAULT '-infinity',
								  only_failed boolean DEFAULT true,
								  OUT deliveries bigint, OUT stored bigint, OUT duplicates bigint,
								  OUT failed bigint, OUT ignored bigint)
RETURNS record
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	d cdviz.webhook_deliveries;
	r record;
BEGIN
	IF NOT EXISTS (SELECT FROM cdviz.webhooks w WHERE w.name = retransform.route) THEN
		RAISE EXCEPTION 'webhook "%" does not exist', route USING ERRCODE = 'undefined_object';
	END IF;
	deliveries := 0; stored := 0; duplicates := 0; failed := 0; ignored := 0;
	FOR d IN
		SELECT x.* FROM cdviz.webhook_deliveries x
		WHERE x.route = retransform.route AND x.received_at >= since
		  AND (NOT only_failed OR x.status = 'failed')
		ORDER BY x.received_at, x.id
	LOOP
		SELECT * INTO r FROM cdviz._webhook_transform(d) AS t;
		deliveries := deliveries + 1;
		stored := stored + coalesce(r.stored, 0);
		duplicates := duplicates + coalesce(r.duplicates, 0);
		IF r.status = 'failed' THEN
			failed := failed + 1;
		ELSIF r.status IN ('ignored', 'ping') THEN
			ignored := ignored + 1;
		END IF;
	END LOOP;
END
$$;
COMMENT ON FUNCTION cdviz.retransform(text, timestamptz, boolean) IS
'cdviz: runs the route''s (fixed) transformer again over its stored deliveries received since a time — by default only those that failed — in delivery order; safe to repeat, since events get the same ids and the lake ignores retransmissions. Returns how many deliveries were processed, events stored and duplicated, deliveries still failing and ignored. Example: SELECT * FROM cdviz.retransform(''github'', now() - interval ''1 day'');';

CREATE FUNCTION cdviz.prune_webhook_deliveries()
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n bigint;
BEGIN
	-- deliveries of dropped routes go after 30 days
	DELETE FROM cdviz.webhook_deliveries d
	WHERE d.received_at < now() - coalesce((SELECT w.retention FROM cdviz.webhooks w WHERE w.name = d.route),
										   interval '30 days');
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;
COMMENT ON FUNCTION cdviz.prune_webhook_deliveries() IS
'cdviz: deletes the deliveries older than their route''s retention (30 days for dropped routes) and returns how many; process_webhook also prunes a route as deliveries arrive. Example (pg_cron): SELECT cron.schedule(''0 3 * * *'', ''SELECT cdviz.prune_webhook_deliveries()'');';

-- Everything here is for the owner and superusers: transformers run with
-- the worker's rights.  cdviz_reader sees the routes, not their secrets;
-- like the dead letters, deliveries hold raw input (private repositories'
-- payloads) and are not part of the read API.
REVOKE ALL ON cdviz.webhooks, cdviz.webhook_secrets, cdviz.webhook_deliveries FROM PUBLIC;
GRANT SELECT ON cdviz.webhook_routes TO cdviz_reader;
REVOKE EXECUTE ON FUNCTION
	cdviz._webhook_check_transformer(regprocedure), cdviz._webhook_check_secret(text, text),
	cdviz.create_webhook(text, regprocedure, text, text, interval),
	cdviz.alter_webhook(text, regprocedure, text, text, interval, text),
	cdviz.drop_webhook(text),
	cdviz._webhook_transform(cdviz.webhook_deliveries),
	cdviz.process_webhook(text, jsonb, jsonb),
	cdviz.retransform(text, timestamptz, boolean),
	cdviz.prune_webhook_deliveries()
FROM PUBLIC;
