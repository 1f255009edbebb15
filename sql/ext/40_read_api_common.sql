-- Read API, part 1: helpers shared by the views.
--
-- Everything in the read API is plain SQL so that the planner can inline it
-- into the caller's query: a function written as a single SELECT (LANGUAGE
-- sql, not SECURITY DEFINER, no SET clause, not VOLATILE) is expanded in
-- place, its range parameters become ordinary quals on the lake, and the
-- lake's monthly partitions outside the range are pruned.
--
-- Privileges: cdviz_reader (what Grafana logs in as) may read the read API
-- and nothing else, and cannot write anything.  Each object is granted where
-- it is created.  The lake and the state tables are part of the API: the
-- inlined *_between functions run with the caller's privileges, which is
-- what lets the planner see through them.  The dead-letter table is not: it
-- holds raw, possibly sensitive, rejected input.  Read functions are not
-- executable by PUBLIC: each is revoked from PUBLIC and granted to
-- cdviz_reader next to its definition.

-- Spec 0.3 and 0.4 report test outcomes as pass/fail, 0.5 as success/failure.
CREATE FUNCTION cdviz.normalize_outcome(outcome text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE outcome WHEN 'pass' THEN 'success' WHEN 'fail' THEN 'failure' ELSE outcome END;

COMMENT ON FUNCTION cdviz.normalize_outcome(text) IS
'cdviz: one vocabulary for outcomes across spec versions: pass -> success, fail -> failure (0.3/0.4 test outcomes); anything else unchanged';
REVOKE EXECUTE ON FUNCTION cdviz.normalize_outcome(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz.normalize_outcome(text) TO cdviz_reader;

-- Percent-decoding for package URLs.  Only ASCII escapes (%01-%7F) are
-- decoded: they are what purls encode in practice (":" "/" "@" "?" "#" "+"
-- " " "%"), and decoding them cannot produce invalid UTF-8, so one odd purl
-- can never make a view fail.  A string with any other escape, or with a
-- "%" not followed by two hex digits, is returned as it is.  In C
-- (src/core/purl.c): a deployments listing decodes thousands per query.
CREATE FUNCTION cdviz.percent_decode(s text)
RETURNS text
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdviz_percent_decode_text';

COMMENT ON FUNCTION cdviz.percent_decode(text) IS
'cdviz: percent-decoding of a package URL component: the %XX escapes of s decoded when all of them are ASCII (%01-%7F), s unchanged otherwise; NULL stays NULL';
REVOKE EXECUTE ON FUNCTION cdviz.percent_decode(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz.percent_decode(text) TO cdviz_reader;

-- Package URL (https://github.com/package-url/purl-spec):
--   pkg:type/namespace/name@version?qualifiers#subpath
-- The version is what follows the last "@" that has no "/" after it, the
-- name the last path segment, the namespace what lies between type and name.
-- The split is C (cdviz.purl_split, src/core/purl.c, where the rules are
-- listed): views call cdviz.purl_parse() once per selected column, as a
-- scalar subquery, so a deployments listing parses thousands of purls per
-- query, a count of deployments none.  purl_parse stays a one-SELECT SQL
-- function so that the planner inlines it and drops the columns nobody
-- selected (the qualifiers' jsonb above all).
CREATE FUNCTION cdviz.purl_split(purl text)
RETURNS text[]
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdviz_purl_split_text';

COMMENT ON FUNCTION cdviz.purl_split(text) IS
'cdviz: the components of a package URL as {type (lower case), namespace, name, version, qualifiers (raw text), subpath}, percent-decoded but for the qualifiers, NULL where absent; NULL when the text is not a purl. Used by cdviz.purl_parse().';
REVOKE EXECUTE ON FUNCTION cdviz.purl_split(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz.purl_split(text) TO cdviz_reader;

CREATE FUNCTION cdviz.purl_parse(purl text)
RETURNS TABLE (purl_type text, namespace text, name text, version text,
			   qualifiers jsonb, subpath text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
SELECT s.p[1], s.p[2], s.p[3], s.p[4],
	   (SELECT jsonb_object_agg(lower(split_part(kv, '=', 1)),
								cdviz.percent_decode(substr(kv, strpos(kv, '=') + 1)))
		FROM unnest(string_to_array(s.p[5], '&')) AS kv
		WHERE strpos(kv, '=') > 1),
	   s.p[6]
FROM (SELECT cdviz.purl_split(purl) AS p OFFSET 0) AS s
WHERE s.p IS NOT NULL
$$;

COMMENT ON FUNCTION cdviz.purl_parse(text) IS
'cdviz: splits a package URL into type, namespace, name, version, qualifiers (jsonb) and subpath, percent-decoded; no row when the text is not a purl. Example: SELECT * FROM cdviz.purl_parse(''pkg:oci/myapp@sha256%3A0b31?repository_url=ghcr.io/org'') -> oci, NULL, myapp, sha256:0b31, {"repository_url": "ghcr.io/org"}, NULL';
REVOKE EXECUTE ON FUNCTION cdviz.purl_parse(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz.purl_parse(text) TO cdviz_reader;
