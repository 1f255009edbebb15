-- Read API, part 4: deployments and what runs where.

-- One row per service event, read from the narrow environment_history kept
-- at ingest rather than from the lake: "timestamp" is its indexed
-- valid_from and environment_id an indexed column, so windows and
-- environment filters cost a range scan of small rows.  The package columns
-- and the columns only the lake has are scalar subqueries (purl parsing,
-- lake lookup by primary key), evaluated only when selected.
CREATE VIEW cdviz.deployments AS
SELECT h.event_id,
	   h.valid_from AS "timestamp",
	   h.predicate AS action,
	   h.environment_id,
	   h.service_id,
	   h.artifact_id,
	   (SELECT p.purl_type FROM cdviz.purl_parse(h.artifact_id) AS p) AS package_type,
	   (SELECT p.namespace FROM cdviz.purl_parse(h.artifact_id) AS p) AS package_namespace,
	   (SELECT p.name FROM cdviz.purl_parse(h.artifact_id) AS p) AS package_name,
	   (SELECT p.version FROM cdviz.purl_parse(h.artifact_id) AS p) AS package_version,
	   h.context_id,
	   (SELECT l.context_source FROM cdviz.cdevents_lake AS l
		WHERE l.id = h.event_id AND l."timestamp" = h.valid_from) AS context_source,
	   (SELECT l.chain_id FROM cdviz.cdevents_lake AS l
		WHERE l.id = h.event_id AND l."timestamp" = h.valid_from) AS chain_id,
	   (SELECT l.spec_version FROM cdviz.cdevents_lake AS l
		WHERE l.id = h.event_id AND l."timestamp" = h.valid_from) AS spec_version,
	   (SELECT l.payload FROM cdviz.cdevents_lake AS l
		WHERE l.id = h.event_id AND l."timestamp" = h.valid_from) AS payload
FROM cdviz.environment_history AS h;

COMMENT ON VIEW cdviz.deployments IS
'cdviz: every service deployed/upgraded/rolledback/removed/published event (action) naming an environment, with environment, service, artifact id and the package type, namespace, name and version parsed from the artifact purl; context_source, chain_id, spec_version and payload are fetched from the lake only when selected. A WHERE on "timestamp" (and on environment_id) is an index range scan: WHERE "timestamp" >= now() - interval ''7 days''.';
GRANT SELECT ON cdviz.deployments TO cdviz_reader;

CREATE VIEW cdviz.environment_inventory AS
SELECT s.environment_id, s.service_id, s.artifact_id,
	   (SELECT p.purl_type FROM cdviz.purl_parse(s.artifact_id) AS p) AS package_type,
	   (SELECT p.namespace FROM cdviz.purl_parse(s.artifact_id) AS p) AS package_namespace,
	   (SELECT p.name FROM cdviz.purl_parse(s.artifact_id) AS p) AS package_name,
	   (SELECT p.version FROM cdviz.purl_parse(s.artifact_id) AS p) AS version,
	   s.deployed_at, s.predicate AS deployed_by, s.previous_artifact_id,
	   s.event_id, s.context_id
FROM cdviz.environment_state AS s
WHERE s.artifact_id IS NOT NULL;

COMMENT ON VIEW cdviz.environment_inventory IS
'cdviz: what runs now, one row per (environment, service): artifact, package name and version from its purl, deployed_at and the predicate that put it there (deployed, upgraded or rolledback), the artifact that ran before, and the lake id and context id of that event. Read from cdviz.environment_state, kept at ingest: its cost does not grow with the lake. Out-of-order delivery safe; a service whose latest event is "removed" is absent.';
GRANT SELECT ON cdviz.environment_inventory TO cdviz_reader;

-- The history is small and indexed on (environment_id, service_id,
-- valid_from): one descent per key known to the state table, whatever the
-- size of the lake.
CREATE FUNCTION cdviz.environment_inventory_at(at_ts timestamptz)
RETURNS TABLE (environment_id text, service_id text, artifact_id text, package_type text,
			   package_namespace text, package_name text, version text,
			   deployed_at timestamptz, deployed_by text, previous_artifact_id text,
			   event_id bigint, context_id text)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT k.environment_id, k.service_id, cur.artifact_id,
	   (SELECT p.purl_type FROM cdviz.purl_parse(cur.artifact_id) AS p),
	   (SELECT p.namespace FROM cdviz.purl_parse(cur.artifact_id) AS p),
	   (SELECT p.name FROM cdviz.purl_parse(cur.artifact_id) AS p),
	   (SELECT p.version FROM cdviz.purl_parse(cur.artifact_id) AS p),
	   cur.valid_from, cur.predicate, prev.artifact_id, cur.event_id, cur.context_id
FROM cdviz.environment_state AS k
CROSS JOIN LATERAL (
	SELECT h.* FROM cdviz.environment_history AS h
	WHERE h.environment_id = k.environment_id AND h.service_id = k.service_id
	  AND h.valid_from <= at_ts AND h.predicate <> 'published'
	ORDER BY h.valid_from DESC, h.event_id DESC
	LIMIT 1) AS cur
LEFT JOIN LATERAL (
	SELECT h.artifact_id FROM cdviz.environment_history AS h
	WHERE h.environment_id = k.environment_id AND h.service_id = k.service_id
	  AND h.predicate IN ('deployed', 'upgraded', 'rolledback')
	  AND (h.valid_from, h.event_id) < (cur.valid_from, cur.event_id)
	  AND h.artifact_id IS DISTINCT FROM cur.artifact_id
	ORDER BY h.valid_from DESC, h.event_id DESC
	LIMIT 1) AS prev ON true
WHERE cur.predicate <> 'removed'
$$;

COMMENT ON FUNCTION cdviz.environment_inventory_at(timestamptz) IS
'cdviz: what ran at at_ts, same columns as cdviz.environment_inventory: for each (environment, service) the latest deployed/upgraded/rolledback/removed event with timestamp <= at_ts, unless it is a removal. Reads cdviz.environment_history, which retention does not prune.';
REVOKE EXECUTE ON FUNCTION cdviz.environment_inventory_at(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz.environment_inventory_at(timestamptz) TO cdviz_reader;
