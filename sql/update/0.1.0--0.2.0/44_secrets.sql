-- Sinks: every credential-bearing value of a sink (the token and HMAC key,
-- every header value, the user info and query values of the URL) is kept
-- in cdviz.sink_secrets, which only superusers read; cdviz.sinks and
-- cdviz.sink_status, which cdviz_reader reads, show *** in its place.
-- 0.1.0 moved only token and hmac_secret there.  (The text below is that
-- of sql/ext/60_sinks.sql; create_sink() is replaced here only, this file
-- coming before 60_sinks.sql.)
COMMENT ON TABLE cdviz.sinks IS
'cdviz: where the dispatcher forwards stored events; managed with cdviz.create_sink(), alter_sink(), drop_sink(), pause_sink(), resume_sink(). Secrets (token, hmac_secret, header values, the URL''s user info and query values) are kept apart in cdviz.sink_secrets and shown here as ***.';
COMMENT ON COLUMN cdviz.sinks.target IS 'http: the URL, its user info and query values shown as ***; nats: the subject or subject template ({subject}, {predicate}, {version} are replaced); log: a label';
COMMENT ON COLUMN cdviz.sinks.options IS 'options without secrets; http: mode (binary, structured, batch), batch_size, headers (values shown as ***), timeout, initial_backoff, max_backoff; nats: jetstream (auto, always, never), timeout';
COMMENT ON COLUMN cdviz.sinks.secret_keys IS 'which secret parts are set: token, hmac_secret, headers (their values), target (the URL''s user info or query values); they are in cdviz.sink_secrets, readable by superusers only';
COMMENT ON TABLE cdviz.sink_secrets IS
'cdviz: secret parts of the sinks (token, hmac_secret, header values, URLs with their user info and query); superusers only';
COMMENT ON COLUMN cdviz.sink_secrets.secrets IS 'JSON object: token, hmac_secret, headers (names and values), target (the whole URL), those the sink has';

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

-- A sink's definition split into what cdviz.sinks shows and what
-- cdviz.sink_secrets keeps: every secret option, every header value (by
-- name), and the whole URL when its user info or query is redacted.
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
	secrets := jsonb_strip_nulls(jsonb_build_object(
		'token', options->'token',
		'hmac_secret', options->'hmac_secret',
		'headers', CASE WHEN shown_options->'headers' IS DISTINCT FROM options->'headers'
						THEN options->'headers' END,
		'target', CASE WHEN shown_target IS DISTINCT FROM target THEN to_jsonb(target) END));
	secret_keys := ARRAY(SELECT k FROM jsonb_object_keys(secrets) k ORDER BY k);
	IF secrets = '{}' THEN
		secrets := NULL;
	END IF;
END
$$;
COMMENT ON FUNCTION cdviz._sink_split(text, jsonb) IS
'cdviz internal: splits a sink''s target and options into what cdviz.sinks shows (secrets as ***, token and hmac_secret left out), the names of the secret parts and the JSON object cdviz.sink_secrets keeps (NULL: none)';

-- A message the dispatcher records about a sink (the last error, which
-- cdviz_reader reads in cdviz.sink_status) with the sink's secrets in it
-- replaced by ***: a receiver may answer a failure with the request it
-- was sent.  Values shorter than four characters are left: replacing them
-- would blank out the message, not hide a credential.
CREATE FUNCTION cdviz._sink_redact(message text, secrets jsonb)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	userinfo text := substring(secrets->>'target' FROM '^[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)@');
	v text;
BEGIN
	IF message IS NULL OR secrets IS NULL THEN
		RETURN message;
	END IF;
	FOR v IN
		SELECT x.v FROM (
			SELECT secrets->>'token' AS v
			UNION ALL SELECT secrets->>'hmac_secret'
			UNION ALL SELECT h.value FROM jsonb_each_text(CASE WHEN jsonb_typeof(secrets->'headers') = 'object'
																THEN secrets->'headers' END) h
			UNION ALL SELECT userinfo
			UNION ALL SELECT p.part FROM regexp_split_to_table(userinfo, ':') p(part)
			UNION ALL SELECT substring(p.part FROM '=(.*)$')
			FROM regexp_split_to_table(substring(secrets->>'target' FROM '^[^?#]*\?([^#]*)'), '&') p(part)
		) x
		WHERE length(x.v) >= 4
		GROUP BY x.v
		-- the longer first: a password inside the user info
		ORDER BY length(x.v) DESC, x.v
	LOOP
		message := replace(message, v, '***');
	END LOOP;
	RETURN message;
END
$$;
COMMENT ON FUNCTION cdviz._sink_redact(text, jsonb) IS
'cdviz internal: a message with the given sink secrets (of cdviz.sink_secrets) in it replaced by ***';

CREATE OR REPLACE FUNCTION cdviz.create_sink(name text, kind text, target text,
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
'cdviz: creates a sink and returns its id; the dispatcher delivers to it every matching event stored after this transaction commits (with start_at: also those imported since start_at). Secrets (token, hmac_secret, header values, the URL''s user info and query values) go to cdviz.sink_secrets; cdviz.sinks shows them as ***. Example: SELECT cdviz.create_sink(''ci'', ''http'', ''https://hooks.example/cd'', ''{"mode": "batch", "batch_size": 100, "hmac_secret": "s3cret", "headers": {"X-Api-Key": "k3y"}}'', type_pattern => ''dev.cdevents.service.%'');';

CREATE OR REPLACE FUNCTION cdviz.alter_sink(name text, target text DEFAULT NULL, options jsonb DEFAULT NULL,
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
		IF jsonb_typeof(options->'headers') = 'object' THEN
			full_options := jsonb_set(full_options, '{headers}', coalesce((
				SELECT jsonb_object_agg(h.key, CASE WHEN h.value = '"***"' AND cur->'headers' ? h.key
													THEN cur->'headers'->h.key ELSE h.value END)
				FROM jsonb_each(options->'headers') h), '{}'));
		END IF;
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
'cdviz: changes a sink; NULL arguments keep the current value, an empty string removes a filter, options (when given) replace all options, secrets included (a secret or header value given as ***, as cdviz.sinks shows it, keeps its current value; so does the target as cdviz.sinks shows it). Takes effect at the dispatcher''s next chunk; delivery resumes where it was. Example: SELECT cdviz.alter_sink(''ci'', type_pattern => ''dev.cdevents.%'');';

REVOKE EXECUTE ON FUNCTION cdviz._redact_url(text), cdviz._sink_split(text, jsonb),
	cdviz._sink_redact(text, jsonb) FROM PUBLIC;

-- The sinks made by 0.1.0: their header values and URL credentials move
-- to cdviz.sink_secrets, as create_sink() now puts them.  What the
-- dispatcher uses is unchanged (it joins the two), so updated_at is left.
WITH split AS (
	SELECT s.id, sp.shown_target, sp.shown_options, sp.secret_keys, sp.secrets
	FROM cdviz.sinks s
	LEFT JOIN cdviz.sink_secrets x ON x.sink_id = s.id
	CROSS JOIN LATERAL cdviz._sink_split(s.target, s.options || coalesce(x.secrets, '{}')) sp
), shown AS (
	UPDATE cdviz.sinks s
	SET target = p.shown_target, options = p.shown_options, secret_keys = p.secret_keys
	FROM split p
	WHERE p.id = s.id
)
INSERT INTO cdviz.sink_secrets AS x (sink_id, secrets)
SELECT p.id, p.secrets FROM split p WHERE p.secrets IS NOT NULL
ON CONFLICT (sink_id) DO UPDATE SET secrets = excluded.secrets;

-- Planner statistics are readable by whoever may read the table's
-- columns (pg_stats): those of the rows as 0.1.0 stored them would show
-- the old values to cdviz_reader until the next analyze.
ANALYZE cdviz.sinks;
