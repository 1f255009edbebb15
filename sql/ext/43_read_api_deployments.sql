-- Read API, part 4: deployments and what runs where.

-- One row per service event; "timestamp" is the lake column itself, so a
-- WHERE on it prunes partitions and bounds the (subject, predicate,
-- "timestamp") index scan.
CREATE VIEW cdviz.deployments AS
SELECT l.id AS event_id,
	   l."timestamp",
	   l.predicate AS action,
	   l.payload #>> '{subject,content,environment,id}' AS environment_id,
	   l.subject_id AS service_id,
	   l.payload #>> '{subject,content,artifactId}' AS artifact_id,
	   p.purl_type AS package_type,
	   p.namespace AS package_namespace,
	   p.name AS package_name,
	   p.version AS package_version,
	   l.context_id, l.context_source, l.chain_id, l.spec_version, l.payload
FROM cdviz.cdevents_lake AS l
LEFT JOIN LATERAL cdviz.purl_parse(l.payload #>> '{subject,content,artifactId}') AS p ON true
WHERE l.subject = 'service'
  AND l.predicate IN ('deployed', 'upgraded', 'rolledback', 'removed', 'published');

COMMENT ON VIEW cdviz.deployments IS
'cdviz: every service deployed/upgraded/rolledback/removed/published event (action) with environment, service, artifact id and the package type, namespace, name and version parsed from the artifact purl. A WHERE on "timestamp" prunes partitions: WHERE "timestamp" >= now() - interval ''7 days''.';

CREATE VIEW cdviz.environment_inventory AS
SELECT s.environment_id, s.service_id, s.artifact_id,
	   p.purl_type AS package_type, p.namespace AS package_namespace,
	   p.name AS package_name, p.version,
	   s.deployed_at, s.predicate AS deployed_by, s.previous_artifact_id,
	   s.event_id, s.context_id
FROM cdviz.environment_state AS s
LEFT JOIN LATERAL cdviz.purl_parse(s.artifact_id) AS p ON true
WHERE s.artifact_id IS NOT NULL;

COMMENT ON VIEW cdviz.environment_inventory IS
'cdviz: what runs now, one row per (environment, service): artifact, package name and version from its purl, deployed_at and the predicate that put it there (deployed, upgraded or rolledback), the artifact that ran before, and the lake id and context id of that event. Read from cdviz.environment_state, kept at ingest: its cost does not grow with the lake. Out-of-order delivery safe; a service whose latest event is "removed" is absent.';

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
	   p.purl_type, p.namespace, p.name, p.version,
	   cur.valid_from, cur.predicate, prev.artifact_id, cur.event_id, cur.context_id
FROM cdviz.environment_state AS k
CROSS JOIN LATERAL (
	SELECT h.* FROM cdviz.environment_history AS h
	WHERE h.environment_id = k.environment_id AND h.service_id = k.service_id
	  AND h.valid_from <= at_ts
	ORDER BY h.valid_from DESC, h.event_id DESC
	LIMIT 1) AS cur
LEFT JOIN LATERAL (
	SELECT h.artifact_id FROM cdviz.environment_history AS h
	WHERE h.environment_id = k.environment_id AND h.service_id = k.service_id
	  AND h.predicate <> 'removed'
	  AND (h.valid_from, h.event_id) < (cur.valid_from, cur.event_id)
	  AND h.artifact_id IS DISTINCT FROM cur.artifact_id
	ORDER BY h.valid_from DESC, h.event_id DESC
	LIMIT 1) AS prev ON true
LEFT JOIN LATERAL cdviz.purl_parse(cur.artifact_id) AS p ON true
WHERE cur.predicate <> 'removed'
$$;

COMMENT ON FUNCTION cdviz.environment_inventory_at(timestamptz) IS
'cdviz: what ran at at_ts, same columns as cdviz.environment_inventory: for each (environment, service) the latest deployed/upgraded/rolledback/removed event with timestamp <= at_ts, unless it is a removal. Reads cdviz.environment_history, which retention does not prune.';
