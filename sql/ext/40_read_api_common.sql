-- Read API, part 1: helpers shared by the views.
--
-- Everything in the read API is plain SQL so that the planner can inline it
-- into the caller's query: a function written as a single SELECT (LANGUAGE
-- sql, not SECURITY DEFINER, no SET clause, not VOLATILE) is expanded in
-- place, its range parameters become ordinary quals on the lake, and the
-- lake's monthly partitions outside the range are pruned.

-- Spec 0.3 and 0.4 report test outcomes as pass/fail, 0.5 as success/failure.
CREATE FUNCTION cdviz.normalize_outcome(outcome text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE outcome WHEN 'pass' THEN 'success' WHEN 'fail' THEN 'failure' ELSE outcome END;

COMMENT ON FUNCTION cdviz.normalize_outcome(text) IS
'cdviz: one vocabulary for outcomes across spec versions: pass -> success, fail -> failure (0.3/0.4 test outcomes); anything else unchanged';

-- Percent-decoding for package URLs.  Only ASCII escapes (%01-%7F) are
-- decoded: they are what purls encode in practice (":" "/" "@" "?" "#" "+"
-- " " "%"), and decoding them cannot produce invalid UTF-8, so one odd purl
-- can never make a view fail.  A string with any other escape, or with a
-- "%" not followed by two hex digits, is returned as it is.
CREATE FUNCTION cdviz.percent_decode_ascii(s text)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
SELECT CASE
	WHEN s ~ '%(?!0[1-9A-Fa-f]|[1-7][0-9A-Fa-f])' THEN s
	ELSE (SELECT string_agg(CASE WHEN u.o = 1 THEN u.p
								 ELSE chr(('x' || lpad(left(u.p, 2), 8, '0'))::bit(32)::int) || substr(u.p, 3) END,
							'' ORDER BY u.o)
		  FROM unnest(string_to_array(s, '%')) WITH ORDINALITY AS u(p, o))
END
$$;

COMMENT ON FUNCTION cdviz.percent_decode_ascii(text) IS
'cdviz: decodes the %XX escapes of s when all of them are ASCII (%01-%7F); returns s unchanged otherwise. Used through cdviz.percent_decode().';

-- Inlined fast paths: nothing to decode (a strpos), or only the escapes
-- package URLs use all the time (":" of OCI digests, "/" of repository
-- URLs, "@" of npm scopes, spaces), a few replace() calls.  Anything else
-- takes the general, slower function.
CREATE FUNCTION cdviz.percent_decode(s text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
	WHEN strpos(s, '%') = 0 THEN s
	WHEN strpos(replace(replace(replace(replace(replace(replace(s, '%3A', ':'), '%3a', ':'), '%2F', '/'), '%2f', '/'), '%40', '@'), '%20', ' '), '%') = 0
		THEN replace(replace(replace(replace(replace(replace(s, '%3A', ':'), '%3a', ':'), '%2F', '/'), '%2f', '/'), '%40', '@'), '%20', ' ')
	ELSE cdviz.percent_decode_ascii(s) END;

COMMENT ON FUNCTION cdviz.percent_decode(text) IS
'cdviz: percent-decoding of a package URL component (ASCII escapes only, see cdviz.percent_decode_ascii); NULL stays NULL';

-- Package URL (https://github.com/package-url/purl-spec):
--   pkg:type/namespace/name@version?qualifiers#subpath
-- The version is what follows the last "@" that has no "/" after it, the
-- name the last path segment, the namespace what lies between type and name.
-- Plain string functions rather than regular expressions, computed step by
-- step: each OFFSET 0 keeps a step a subquery, evaluated once per purl,
-- instead of letting the planner paste its expressions into every later
-- use, where percent_decode() could no longer be inlined.  Views call it
-- once per selected column, as a scalar subquery: a deployments listing
-- parses thousands of purls per query, a count of deployments none.
CREATE FUNCTION cdviz.purl_parse(purl text)
RETURNS TABLE (purl_type text, namespace text, name text, version text,
			   qualifiers jsonb, subpath text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
SELECT lower(d.t),
	   CASE WHEN length(d.namever) > length(d.nm) + 1
			THEN cdviz.percent_decode(nullif(left(d.namever, length(d.namever) - length(d.nm) - 1), '')) END,
	   cdviz.percent_decode(d.nm),
	   cdviz.percent_decode(d.v),
	   (SELECT jsonb_object_agg(lower(split_part(kv, '=', 1)),
								cdviz.percent_decode(substr(kv, strpos(kv, '=') + 1)))
		FROM unnest(string_to_array(nullif(d.q, ''), '&')) AS kv
		WHERE strpos(kv, '=') > 1),
	   cdviz.percent_decode(nullif(trim(BOTH '/' FROM d.sp), ''))
FROM (SELECT c.*, reverse(split_part(reverse(c.namever), '/', 1)) AS nm
	  FROM (SELECT r.*,
				   CASE WHEN r.at_pos > 0 AND r.at_pos < r.slash_pos
						THEN right(r.core, r.at_pos - 1) END AS v,
				   CASE WHEN r.at_pos > 0 AND r.at_pos < r.slash_pos
						THEN left(r.rest, length(r.rest) - r.at_pos) ELSE r.rest END AS namever
			FROM (SELECT b.*, split_part(b.core, '/', 1) AS t,
						 substr(b.core, strpos(b.core, '/') + 1) AS rest,
						 strpos(reverse(b.core), '@') AS at_pos,
						 strpos(reverse(b.core), '/') AS slash_pos
				  FROM (SELECT split_part(split_part(a.body, '#', 1), '?', 1) AS core,
							   split_part(split_part(a.body, '#', 1), '?', 2) AS q,
							   split_part(a.body, '#', 2) AS sp
						FROM (SELECT ltrim(substr(purl, 5), '/') AS body
							  WHERE left(purl, 4) = 'pkg:') AS a
						OFFSET 0) AS b
				  OFFSET 0) AS r
			WHERE r.slash_pos > 0 AND r.t <> ''
			OFFSET 0) AS c
	  OFFSET 0) AS d
WHERE d.nm <> ''
$$;

COMMENT ON FUNCTION cdviz.purl_parse(text) IS
'cdviz: splits a package URL into type, namespace, name, version, qualifiers (jsonb) and subpath, percent-decoded; no row when the text is not a purl. Example: SELECT * FROM cdviz.purl_parse(''pkg:oci/myapp@sha256%3A0b31?repository_url=ghcr.io/org'') -> oci, NULL, myapp, sha256:0b31, {"repository_url": "ghcr.io/org"}, NULL';
