-- OCI registry sources (kind oci, 51_source_catalog.sql): what each
-- registry's tags pointed to when its source last looked, and the mapping
-- of a new or moved tag to its events.
--
-- A registry's rows are written in the transaction that stores the events
-- of the tags they record, so a scan interrupted at any moment resumes
-- without emitting an event twice or missing one.  The rows of tags and
-- repositories the registry no longer lists are deleted: a scan costs what
-- the registry holds, not what it has held.  Rows are kept by registry URL
-- (the source's location), so a source dropped and created again for the
-- same registry emits nothing twice.

CREATE TABLE cdviz.oci_registries (
	registry		text PRIMARY KEY,
	first_scan_at	timestamptz,
	last_scan_at	timestamptz
);

COMMENT ON TABLE cdviz.oci_registries IS
'cdviz: per OCI registry read by a source of kind oci, when its scans ended';
COMMENT ON COLUMN cdviz.oci_registries.registry IS 'the registry URL, as the source''s location';
COMMENT ON COLUMN cdviz.oci_registries.first_scan_at IS 'when its first complete scan ended (NULL: not yet; with "initial": "baseline", tags found until then are recorded without events)';
COMMENT ON COLUMN cdviz.oci_registries.last_scan_at IS 'when its last complete scan ended';

CREATE TABLE cdviz.oci_tags (
	registry		text NOT NULL,
	repository		text NOT NULL,
	tag				text NOT NULL,
	digest			text NOT NULL,
	media_type		text,
	seen_at			timestamptz NOT NULL DEFAULT now(),
	emitted			boolean NOT NULL,
	PRIMARY KEY (registry, repository, tag)
);

COMMENT ON TABLE cdviz.oci_tags IS
'cdviz: the tags of the OCI registries read by sources of kind oci and the manifest digest each pointed to when last seen; written with the events of a new or moved tag, in the same transaction';
COMMENT ON COLUMN cdviz.oci_tags.registry IS 'the registry URL, as the source''s location';
COMMENT ON COLUMN cdviz.oci_tags.repository IS 'repository name, e.g. team/app';
COMMENT ON COLUMN cdviz.oci_tags.tag IS 'tag';
COMMENT ON COLUMN cdviz.oci_tags.digest IS 'manifest digest (sha256:...) the tag pointed to';
COMMENT ON COLUMN cdviz.oci_tags.media_type IS 'media type of that manifest or index';
COMMENT ON COLUMN cdviz.oci_tags.seen_at IS 'when the source first saw the tag point to that digest';
COMMENT ON COLUMN cdviz.oci_tags.emitted IS 'whether events were made of it (false: recorded by a baseline scan)';

-- Restored with the events, a registry is not scanned as new again.
SELECT pg_catalog.pg_extension_config_dump('cdviz.oci_registries', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.oci_tags', '');

-- The location and options of a source of kind oci, checked beyond their
-- JSON types (cdviz._source_check() calls it); returns the location as
-- stored: scheme and host in lower case, no final slash.
CREATE FUNCTION cdviz._source_check_oci(location text, options jsonb)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	loc text := lower(regexp_replace(trim(location), '/+$', ''));
	pat text;
	iv interval;
	k text;
BEGIN
	IF loc !~ '^https?://[a-z0-9.-]+(:[0-9]{1,5})?$' THEN
		RAISE EXCEPTION 'the location of an oci source must be a registry URL, not "%"', location
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Give its scheme and host (and port), without a path: https://ghcr.io, http://127.0.0.1:5000.';
	END IF;
	IF options ? 'repositories' THEN
		IF jsonb_typeof(options->'repositories') <> 'array' THEN
			RAISE EXCEPTION 'option "repositories" must be an array of repository names or patterns, not %', options->'repositories'
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Example: {"repositories": ["team/app", "team/*"]}.';
		END IF;
		FOR pat IN SELECT e FROM jsonb_array_elements(options->'repositories') e LOOP
			IF pat !~ '^"[a-z0-9._/*?-]{1,255}"$' THEN
				RAISE EXCEPTION 'repository % of an oci source is not a repository name or pattern', pat
					USING ERRCODE = 'invalid_parameter_value',
						  HINT = 'Repository names are lower case letters, digits and . _ - /; * and ? match any characters.';
			END IF;
		END LOOP;
	END IF;
	IF options ? 'poll_interval' THEN
		IF jsonb_typeof(options->'poll_interval') = 'number' AND options->>'poll_interval' ~ '^[0-9]{1,5}$' THEN
			iv := make_interval(secs => (options->>'poll_interval')::integer);
		ELSIF jsonb_typeof(options->'poll_interval') = 'string' THEN
			BEGIN
				iv := (options->>'poll_interval')::interval;
			EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR interval_field_overflow THEN
				iv := NULL;
			END;
		END IF;
		IF iv IS NULL OR NOT iv BETWEEN interval '1 second' AND interval '1 day' THEN
			RAISE EXCEPTION 'option "poll_interval" of an oci source must be whole seconds or a duration from 1 s to 1 day, not %', options->'poll_interval'
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Examples: 60, "30s", "5m", "1h".';
		END IF;
	END IF;
	IF options ? 'initial' AND NOT options->>'initial' IN ('baseline', 'backfill') THEN
		RAISE EXCEPTION 'option "initial" must be baseline or backfill, not "%"', options->>'initial'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF (options ? 'username') <> (options ? 'password') THEN
		RAISE EXCEPTION 'options "username" and "password" of an oci source go together'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF options ? 'ecr' THEN
		FOR k IN SELECT e FROM jsonb_object_keys(options->'ecr') e WHERE NOT e IN ('region', 'endpoint') ORDER BY 1 LOOP
			RAISE EXCEPTION 'unknown key "%" in option "ecr"', k
				USING ERRCODE = 'invalid_parameter_value', HINT = 'It takes region and endpoint.';
		END LOOP;
		IF coalesce(options->'ecr'->>'region', '') !~ '^[a-z0-9-]{1,32}$' THEN
			RAISE EXCEPTION 'option "ecr" needs the registry''s AWS region'
				USING ERRCODE = 'invalid_parameter_value', HINT = 'Example: {"ecr": {"region": "eu-west-1"}}.';
		END IF;
		IF options->'ecr' ? 'endpoint' AND options->'ecr'->>'endpoint' !~ '^https?://[^\s/]+(/\S*)?$' THEN
			RAISE EXCEPTION 'the ECR endpoint must be an http:// or https:// URL, not "%"', options->'ecr'->>'endpoint'
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		IF coalesce(options->>'access_key_id', '') = '' OR coalesce(options->>'secret_access_key', '') = '' THEN
			RAISE EXCEPTION 'an ECR registry needs options "access_key_id" and "secret_access_key"'
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		IF options ? 'username' THEN
			RAISE EXCEPTION 'an ECR registry takes its credentials from AWS, not from "username" and "password"'
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
	ELSIF options ?| ARRAY['access_key_id', 'secret_access_key', 'session_token'] THEN
		RAISE EXCEPTION 'options "access_key_id", "secret_access_key" and "session_token" are for an ECR registry'
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Add {"ecr": {"region": "..."}}.';
	END IF;
	RETURN loc;
END
$$;
COMMENT ON FUNCTION cdviz._source_check_oci(text, jsonb) IS
'cdviz internal: checks the location and options of a source of kind oci (called by cdviz._source_check()) and returns the location as stored; raises SQLSTATE 22023 naming what is wrong';
-- As cdviz._source_check(): superusers manage sources.
REVOKE EXECUTE ON FUNCTION cdviz._source_check_oci(text, jsonb) FROM PUBLIC;

-- The events of one registry item (a tag seen pointing to a new digest),
-- by the contract of transformers: meta describes the item (see
-- docs/sources.md), body is NULL.  One artifact.published whose subject is
-- the image's package URL, made by cdviz.webhook_oci_purl() as webhooks
-- make it, and whose context.id follows from meta (the same item makes the
-- same event).
CREATE FUNCTION cdviz.oci_source_events(meta jsonb, body jsonb)
RETURNS SETOF jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN NEXT cdviz.webhook_cdevent('artifact.published', meta->>'registry', meta->>'seen_at',
			cdviz.webhook_oci_purl(format('%s/%s:%s', meta->>'host', meta->>'repository', meta->>'tag'),
								   meta->>'digest'),
			NULL)
		|| jsonb_build_object('customData', jsonb_strip_nulls(jsonb_build_object(
			'registry', meta->>'registry', 'repository', meta->>'repository', 'tag', meta->>'tag',
			'digest', meta->>'digest', 'mediaType', meta->>'media_type',
			'previousDigest', meta->>'previous_digest')));
END
$$;
COMMENT ON FUNCTION cdviz.oci_source_events(jsonb, jsonb) IS
'cdviz: the events a source of kind oci makes of a tag seen pointing to a new digest (meta: source, kind, id, source_uri, mtime, registry, host, repository, tag, digest, media_type, previous_digest, seen_at; body NULL; a transformer of the source may start from it): one artifact.published with subject id pkg:oci/<name>@sha256%3A<hex>?repository_url=<host>/<repository>&tag=<tag>. Example: SELECT cdviz.oci_source_events(''{"registry": "https://ghcr.io", "host": "ghcr.io", "repository": "acme/api", "tag": "1.2", "digest": "sha256:ab12", "seen_at": "2024-05-01T10:00:00Z"}'', NULL);';
