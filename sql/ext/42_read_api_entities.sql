-- Read API, part 3: subjects that are things rather than runs: artifacts,
-- changes, repositories, branches, environments, services, incidents and
-- tickets.  Each has cdviz.<subject>s_between(from_ts, to_ts, lookback)
-- returning every instance with an event in [from_ts, to_ts), and a view
-- over all time.  Artifacts, changes and incidents, the busy ones (and
-- incidents for DORA), read a summary table kept at ingest (30_state.sql)
-- like the runs of part 2: instances whose first event is in
-- [from_ts - lookback, to_ts) and whose last event is at or after from_ts,
-- with their whole history.  The rare ones (repositories, branches,
-- environments, tickets) aggregate their lake events, pruned to
-- [from_ts - lookback, to_ts).  These things live longer than a run, so the
-- default lookback is longer: 7 days for artifacts, changes and branches,
-- 30 days for the others.  Values that can change (a ticket's summary, a
-- repository's name) come from the latest event that carries them.

CREATE FUNCTION cdviz.artifacts_between(from_ts timestamptz, to_ts timestamptz,
										lookback interval DEFAULT '7 days')
RETURNS TABLE (artifact_id text, source text, packaged_at timestamptz, signed_at timestamptz,
			   published_at timestamptz, first_downloaded_at timestamptz,
			   last_downloaded_at timestamptz, download_count bigint, deleted_at timestamptz,
			   change_id text, change_source text, sbom_uri text, signature text,
			   last_user text, chain_id text, first_event_at timestamptz,
			   last_event_at timestamptz, last_predicate text, event_count bigint,
			   last_payload jsonb)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT s.artifact_id, s.source, s.packaged_at, s.signed_at, s.published_at,
	   s.first_downloaded_at, s.last_downloaded_at, s.download_count, s.deleted_at,
	   s.change_id, s.change_source, s.sbom_uri, s.signature, s.last_user, s.chain_id,
	   s.first_event_at, s.last_event_at, s.last_predicate, s.event_count,
	   (SELECT l.payload FROM cdviz.cdevents_lake AS l
		WHERE l.id = s.last_event_id AND l."timestamp" = s.last_event_at)
FROM cdviz.artifact_summaries AS s
WHERE s.first_event_at >= from_ts - lookback AND s.first_event_at < to_ts
  AND s.last_event_at >= from_ts
$$;

COMMENT ON FUNCTION cdviz.artifacts_between(timestamptz, timestamptz, interval) IS
'cdviz: one row per artifact with an event in [from_ts, to_ts): packaged/signed/published times, downloads, deletion, the change it was built from (packaged.change), sbom uri, signature, last user. Reads cdviz.artifact_summaries: artifacts whose first event is at most lookback (7 days) before from_ts, with their whole history. cdviz.purl_parse(artifact_id) splits the id.';
REVOKE EXECUTE ON FUNCTION cdviz.artifacts_between(timestamptz, timestamptz, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz.artifacts_between(timestamptz, timestamptz, interval) TO cdviz_reader;

CREATE VIEW cdviz.artifacts AS
	SELECT * FROM cdviz.artifacts_between('-infinity', 'infinity', '0');

COMMENT ON VIEW cdviz.artifacts IS
'cdviz: every artifact, one row each (columns: see cdviz.artifacts_between). Whole history: for a window call cdviz.artifacts_between(from, to).';
GRANT SELECT ON cdviz.artifacts TO cdviz_reader;

CREATE FUNCTION cdviz.changes_between(from_ts timestamptz, to_ts timestamptz,
									  lookback interval DEFAULT '7 days')
RETURNS TABLE (change_id text, source text, repository_id text, repository_source text,
			   description text, state text, created_at timestamptz,
			   first_reviewed_at timestamptz, review_count bigint, last_updated_at timestamptz,
			   merged_at timestamptz, abandoned_at timestamptz, chain_id text,
			   first_event_at timestamptz, last_event_at timestamptz, last_predicate text,
			   event_count bigint, last_payload jsonb)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT s.change_id, s.source, s.repository_id, s.repository_source, s.description,
	   CASE WHEN s.merged_at IS NOT NULL THEN 'merged'
			WHEN s.abandoned_at IS NOT NULL THEN 'abandoned'
			ELSE 'open' END,
	   s.created_at, s.first_reviewed_at, s.review_count, s.last_updated_at,
	   s.merged_at, s.abandoned_at, s.chain_id,
	   s.first_event_at, s.last_event_at, s.last_predicate, s.event_count,
	   (SELECT l.payload FROM cdviz.cdevents_lake AS l
		WHERE l.id = s.last_event_id AND l."timestamp" = s.last_event_at)
FROM cdviz.change_summaries AS s
WHERE s.first_event_at >= from_ts - lookback AND s.first_event_at < to_ts
  AND s.last_event_at >= from_ts
$$;

COMMENT ON FUNCTION cdviz.changes_between(timestamptz, timestamptz, interval) IS
'cdviz: one row per change (pull/merge request) with an event in [from_ts, to_ts): repository, latest description, state (merged, abandoned or open), created, first review and review count, last update, merged/abandoned times. Reads cdviz.change_summaries: changes whose first event is at most lookback (7 days) before from_ts, with their whole history.';
REVOKE EXECUTE ON FUNCTION cdviz.changes_between(timestamptz, timestamptz, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz.changes_between(timestamptz, timestamptz, interval) TO cdviz_reader;

CREATE VIEW cdviz.changes AS
	SELECT * FROM cdviz.changes_between('-infinity', 'infinity', '0');

COMMENT ON VIEW cdviz.changes IS
'cdviz: every change, one row each (columns: see cdviz.changes_between). Whole history: for a window call cdviz.changes_between(from, to).';
GRANT SELECT ON cdviz.changes TO cdviz_reader;

-- Repositories and environments are kept the same way: created, modified
-- and deleted events, the latest value of each field that can change, and
-- a state from the latest event.  cdviz._entities_between() aggregates them
-- once for either subject; it is inlined (a single SELECT, STABLE, no SET)
-- into the function that calls it, and the planner drops the aggregates of
-- the columns that function does not return (environments have no owner).
CREATE FUNCTION cdviz._entities_between(subject text, from_ts timestamptz, to_ts timestamptz,
										lookback interval)
RETURNS TABLE (subject_id text, source text, name text, owner text, uri text,
			   view_url text, state text, created_at timestamptz, modified_at timestamptz,
			   deleted_at timestamptz, first_event_at timestamptz, last_event_at timestamptz,
			   last_predicate text, event_count bigint, last_payload jsonb)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT l.subject_id,
	   max(l.payload #>> '{subject,source}'),
	   (array_agg(l.payload #>> '{subject,content,name}' ORDER BY l."timestamp" DESC, l.id DESC)
			FILTER (WHERE l.payload #> '{subject,content,name}' IS NOT NULL))[1],
	   (array_agg(l.payload #>> '{subject,content,owner}' ORDER BY l."timestamp" DESC, l.id DESC)
			FILTER (WHERE l.payload #> '{subject,content,owner}' IS NOT NULL))[1],
	   (array_agg(coalesce(l.payload #>> '{subject,content,uri}', l.payload #>> '{subject,content,url}')
				  ORDER BY l."timestamp" DESC, l.id DESC)
			FILTER (WHERE coalesce(l.payload #> '{subject,content,uri}', l.payload #> '{subject,content,url}') IS NOT NULL))[1],
	   (array_agg(l.payload #>> '{subject,content,viewUrl}' ORDER BY l."timestamp" DESC, l.id DESC)
			FILTER (WHERE l.payload #> '{subject,content,viewUrl}' IS NOT NULL))[1],
	   CASE (array_agg(l.predicate ORDER BY l."timestamp" DESC, l.id DESC))[1]
			WHEN 'deleted' THEN 'deleted' ELSE 'active' END,
	   min(l."timestamp") FILTER (WHERE l.predicate = 'created'),
	   max(l."timestamp") FILTER (WHERE l.predicate = 'modified'),
	   max(l."timestamp") FILTER (WHERE l.predicate = 'deleted'),
	   min(l."timestamp"), max(l."timestamp"),
	   (array_agg(l.predicate ORDER BY l."timestamp" DESC, l.id DESC))[1],
	   count(*),
	   (array_agg(l.payload ORDER BY l."timestamp" DESC, l.id DESC))[1]
FROM cdviz.cdevents_lake AS l
WHERE l.subject = _entities_between.subject AND l.predicate IN ('created', 'modified', 'deleted')
  AND l."timestamp" >= from_ts - lookback AND l."timestamp" < to_ts
GROUP BY l.subject_id
HAVING max(l."timestamp") >= from_ts
$$;

COMMENT ON FUNCTION cdviz._entities_between(text, timestamptz, timestamptz, interval) IS
'cdviz: internal, for cdviz.repositories_between() and cdviz.environments_between(): one row per instance of subject (repository or environment) with an event in [from_ts, to_ts), read back to from_ts - lookback';
REVOKE EXECUTE ON FUNCTION cdviz._entities_between(text, timestamptz, timestamptz, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz._entities_between(text, timestamptz, timestamptz, interval) TO cdviz_reader;

CREATE FUNCTION cdviz.repositories_between(from_ts timestamptz, to_ts timestamptz,
										   lookback interval DEFAULT '30 days')
RETURNS TABLE (repository_id text, source text, name text, owner text, uri text,
			   view_url text, state text, created_at timestamptz, modified_at timestamptz,
			   deleted_at timestamptz, first_event_at timestamptz, last_event_at timestamptz,
			   last_predicate text, event_count bigint, last_payload jsonb)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT * FROM cdviz._entities_between('repository', from_ts, to_ts, lookback)
$$;

COMMENT ON FUNCTION cdviz.repositories_between(timestamptz, timestamptz, interval) IS
'cdviz: one row per repository with an event in [from_ts, to_ts): latest name, owner, uri (0.5 uri or 0.3/0.4 url), viewUrl, state (deleted when the latest event is a deletion, else active), created/modified/deleted times. Prunes partitions.';
REVOKE EXECUTE ON FUNCTION cdviz.repositories_between(timestamptz, timestamptz, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz.repositories_between(timestamptz, timestamptz, interval) TO cdviz_reader;

CREATE VIEW cdviz.repositories AS
	SELECT * FROM cdviz.repositories_between('-infinity', 'infinity', '0');

COMMENT ON VIEW cdviz.repositories IS
'cdviz: every repository, one row each (columns: see cdviz.repositories_between).';
GRANT SELECT ON cdviz.repositories TO cdviz_reader;

CREATE FUNCTION cdviz.branches_between(from_ts timestamptz, to_ts timestamptz,
									   lookback interval DEFAULT '7 days')
RETURNS TABLE (branch_id text, source text, repository_id text, repository_source text,
			   state text, created_at timestamptz, deleted_at timestamptz,
			   first_event_at timestamptz, last_event_at timestamptz, last_predicate text,
			   event_count bigint, last_payload jsonb)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT s.branch_id, s.source, s.repository_id, s.repository_source,
	   CASE s.last_predicate WHEN 'deleted' THEN 'deleted' ELSE 'active' END,
	   s.created_at, s.deleted_at, s.first_event_at, s.last_event_at, s.last_predicate,
	   s.event_count,
	   (SELECT l.payload FROM cdviz.cdevents_lake AS l
		WHERE l.id = s.last_event_id AND l."timestamp" = s.last_event_at)
FROM cdviz.branch_summaries AS s
WHERE s.first_event_at >= from_ts - lookback AND s.first_event_at < to_ts
  AND s.last_event_at >= from_ts
$$;

COMMENT ON FUNCTION cdviz.branches_between(timestamptz, timestamptz, interval) IS
'cdviz: one row per branch with an event in [from_ts, to_ts): repository, state (deleted or active, from its latest event), created/deleted times. Reads the summary kept at ingest (cdviz.branch_summaries): branches created at most lookback (default 7 days) before from_ts, with their whole lifecycle.';
REVOKE EXECUTE ON FUNCTION cdviz.branches_between(timestamptz, timestamptz, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz.branches_between(timestamptz, timestamptz, interval) TO cdviz_reader;

CREATE VIEW cdviz.branches AS
	SELECT * FROM cdviz.branches_between('-infinity', 'infinity', '0');

COMMENT ON VIEW cdviz.branches IS
'cdviz: every branch, one row each (columns: see cdviz.branches_between).';
GRANT SELECT ON cdviz.branches TO cdviz_reader;

CREATE FUNCTION cdviz.environments_between(from_ts timestamptz, to_ts timestamptz,
										   lookback interval DEFAULT '30 days')
RETURNS TABLE (environment_id text, source text, name text, uri text, state text,
			   created_at timestamptz, modified_at timestamptz, deleted_at timestamptz,
			   first_event_at timestamptz, last_event_at timestamptz, last_predicate text,
			   event_count bigint, last_payload jsonb)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT e.subject_id, e.source, e.name, e.uri, e.state, e.created_at, e.modified_at,
	   e.deleted_at, e.first_event_at, e.last_event_at, e.last_predicate, e.event_count,
	   e.last_payload
FROM cdviz._entities_between('environment', from_ts, to_ts, lookback) AS e
$$;

COMMENT ON FUNCTION cdviz.environments_between(timestamptz, timestamptz, interval) IS
'cdviz: one row per environment with an event in [from_ts, to_ts): latest name and uri (uri or url), state (deleted or active), created/modified/deleted times. Prunes partitions.';
REVOKE EXECUTE ON FUNCTION cdviz.environments_between(timestamptz, timestamptz, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz.environments_between(timestamptz, timestamptz, interval) TO cdviz_reader;

CREATE VIEW cdviz.environments AS
	SELECT * FROM cdviz.environments_between('-infinity', 'infinity', '0');

COMMENT ON VIEW cdviz.environments IS
'cdviz: every environment that had an environment event, one row each (columns: see cdviz.environments_between). Environments only named by deployments appear in cdviz.environment_inventory.';
GRANT SELECT ON cdviz.environments TO cdviz_reader;

-- A service exists per environment: one row per (service, environment),
-- read from the narrow environment_history kept at ingest (indexed on
-- valid_from) rather than from the lake; the lake is only read, by primary
-- key, for the source and payload of the latest event, and only when those
-- columns are selected.
CREATE FUNCTION cdviz.services_between(from_ts timestamptz, to_ts timestamptz,
									   lookback interval DEFAULT '0')
RETURNS TABLE (service_id text, environment_id text, source text,
			   first_deployed_at timestamptz, last_deployed_at timestamptz,
			   deployment_count bigint, rollback_count bigint, last_rolledback_at timestamptz,
			   last_removed_at timestamptz, last_published_at timestamptz,
			   last_artifact_id text, last_event_at timestamptz, last_predicate text,
			   event_count bigint, last_payload jsonb)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT s.service_id, s.environment_id,
	   (SELECT l.payload #>> '{subject,source}' FROM cdviz.cdevents_lake AS l
		WHERE l.id = k.event_id AND l."timestamp" = s.last_event_at),
	   s.first_deployed_at, s.last_deployed_at, s.deployment_count, s.rollback_count,
	   s.last_rolledback_at, s.last_removed_at, s.last_published_at,
	   (SELECT h.artifact_id FROM cdviz.environment_history AS h
		WHERE h.environment_id = s.environment_id AND h.service_id = s.service_id
		  AND h.valid_from >= from_ts - lookback AND h.valid_from < to_ts
		  AND h.predicate IN ('deployed', 'upgraded', 'rolledback')
		ORDER BY h.valid_from DESC, h.event_id DESC
		LIMIT 1),
	   s.last_event_at, k.predicate, s.event_count,
	   (SELECT l.payload FROM cdviz.cdevents_lake AS l
		WHERE l.id = k.event_id AND l."timestamp" = s.last_event_at)
-- counts first, hashed per key (no ordered aggregate: nothing to sort),
-- then the latest event of each key by one descent of the history's key
-- index
FROM (SELECT h.service_id, h.environment_id,
			 min(h.valid_from) FILTER (WHERE h.predicate IN ('deployed', 'upgraded')) AS first_deployed_at,
			 max(h.valid_from) FILTER (WHERE h.predicate IN ('deployed', 'upgraded')) AS last_deployed_at,
			 count(*) FILTER (WHERE h.predicate IN ('deployed', 'upgraded')) AS deployment_count,
			 count(*) FILTER (WHERE h.predicate = 'rolledback') AS rollback_count,
			 max(h.valid_from) FILTER (WHERE h.predicate = 'rolledback') AS last_rolledback_at,
			 max(h.valid_from) FILTER (WHERE h.predicate = 'removed') AS last_removed_at,
			 max(h.valid_from) FILTER (WHERE h.predicate = 'published') AS last_published_at,
			 max(h.valid_from) AS last_event_at,
			 count(*) AS event_count
	  FROM cdviz.environment_history AS h
	  WHERE h.valid_from >= from_ts - lookback AND h.valid_from < to_ts
	  GROUP BY h.service_id, h.environment_id
	  HAVING max(h.valid_from) >= from_ts) AS s
CROSS JOIN LATERAL (
	SELECT h.event_id, h.predicate FROM cdviz.environment_history AS h
	WHERE h.environment_id = s.environment_id AND h.service_id = s.service_id
	  AND h.valid_from = s.last_event_at
	ORDER BY h.event_id DESC
	LIMIT 1) AS k
$$;

COMMENT ON FUNCTION cdviz.services_between(timestamptz, timestamptz, interval) IS
'cdviz: one row per (service, environment) with a service event in [from_ts, to_ts): deployments (deployed + upgraded) and rollbacks in the scanned range, first/last deployment, last removal and publication, the artifact of the latest deployment-like event. Counts cover [from_ts - lookback, to_ts) (lookback defaults to 0). Reads cdviz.environment_history. What runs now: cdviz.environment_inventory.';
REVOKE EXECUTE ON FUNCTION cdviz.services_between(timestamptz, timestamptz, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz.services_between(timestamptz, timestamptz, interval) TO cdviz_reader;

CREATE VIEW cdviz.services AS
	SELECT * FROM cdviz.services_between('-infinity', 'infinity', '0');

COMMENT ON VIEW cdviz.services IS
'cdviz: every (service, environment) pair ever seen, with its whole-history deployment counts (columns: see cdviz.services_between).';
GRANT SELECT ON cdviz.services TO cdviz_reader;

CREATE FUNCTION cdviz.incidents_between(from_ts timestamptz, to_ts timestamptz,
										lookback interval DEFAULT '30 days')
RETURNS TABLE (incident_id text, source text, environment_id text, service_id text,
			   artifact_id text, description text, ticket_uri text, state text,
			   detected_at timestamptz, reported_at timestamptz, resolved_at timestamptz,
			   time_to_resolve interval, chain_id text, first_event_at timestamptz,
			   last_event_at timestamptz, last_predicate text, event_count bigint,
			   last_payload jsonb)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT s.incident_id, s.source, s.environment_id, s.service_id, s.artifact_id, s.description,
	   s.ticket_uri,
	   CASE WHEN s.resolved_at IS NOT NULL THEN 'resolved' ELSE 'open' END,
	   s.detected_at, s.reported_at, s.resolved_at,
	   s.resolved_at - LEAST(s.detected_at, s.reported_at),
	   s.chain_id,
	   s.first_event_at, s.last_event_at, s.last_predicate, s.event_count,
	   (SELECT l.payload FROM cdviz.cdevents_lake AS l
		WHERE l.id = s.last_event_id AND l."timestamp" = s.last_event_at)
FROM cdviz.incident_summaries AS s
WHERE s.first_event_at >= from_ts - lookback AND s.first_event_at < to_ts
  AND s.last_event_at >= from_ts
$$;

COMMENT ON FUNCTION cdviz.incidents_between(timestamptz, timestamptz, interval) IS
'cdviz: one row per incident with an event in [from_ts, to_ts): environment, service, artifact, latest description, ticket uri, state (resolved or open), detected/reported/resolved times, time_to_resolve (resolved minus the earlier of detected and reported). Reads cdviz.incident_summaries: incidents whose first event is at most lookback (30 days) before from_ts, with their whole history.';
REVOKE EXECUTE ON FUNCTION cdviz.incidents_between(timestamptz, timestamptz, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz.incidents_between(timestamptz, timestamptz, interval) TO cdviz_reader;

CREATE VIEW cdviz.incidents AS
	SELECT * FROM cdviz.incidents_between('-infinity', 'infinity', '0');

COMMENT ON VIEW cdviz.incidents IS
'cdviz: every incident, one row each (columns: see cdviz.incidents_between).';
GRANT SELECT ON cdviz.incidents TO cdviz_reader;

CREATE FUNCTION cdviz.tickets_between(from_ts timestamptz, to_ts timestamptz,
									  lookback interval DEFAULT '30 days')
RETURNS TABLE (ticket_id text, source text, summary text, ticket_type text, ticket_group text,
			   creator text, assignees jsonb, priority text, labels jsonb, milestone text,
			   uri text, resolution text, updated_by text, state text, created_at timestamptz,
			   last_updated_at timestamptz, closed_at timestamptz, chain_id text,
			   first_event_at timestamptz, last_event_at timestamptz, last_predicate text,
			   event_count bigint, last_payload jsonb)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT l.subject_id,
	   max(l.payload #>> '{subject,source}'),
	   (array_agg(l.payload #>> '{subject,content,summary}' ORDER BY l."timestamp" DESC, l.id DESC)
			FILTER (WHERE l.payload #> '{subject,content,summary}' IS NOT NULL))[1],
	   (array_agg(l.payload #>> '{subject,content,ticketType}' ORDER BY l."timestamp" DESC, l.id DESC)
			FILTER (WHERE l.payload #> '{subject,content,ticketType}' IS NOT NULL))[1],
	   (array_agg(l.payload #>> '{subject,content,group}' ORDER BY l."timestamp" DESC, l.id DESC)
			FILTER (WHERE l.payload #> '{subject,content,group}' IS NOT NULL))[1],
	   max(l.payload #>> '{subject,content,creator}'),
	   (array_agg(l.payload #> '{subject,content,assignees}' ORDER BY l."timestamp" DESC, l.id DESC)
			FILTER (WHERE l.payload #> '{subject,content,assignees}' IS NOT NULL))[1],
	   (array_agg(l.payload #>> '{subject,content,priority}' ORDER BY l."timestamp" DESC, l.id DESC)
			FILTER (WHERE l.payload #> '{subject,content,priority}' IS NOT NULL))[1],
	   (array_agg(l.payload #> '{subject,content,labels}' ORDER BY l."timestamp" DESC, l.id DESC)
			FILTER (WHERE l.payload #> '{subject,content,labels}' IS NOT NULL))[1],
	   (array_agg(l.payload #>> '{subject,content,milestone}' ORDER BY l."timestamp" DESC, l.id DESC)
			FILTER (WHERE l.payload #> '{subject,content,milestone}' IS NOT NULL))[1],
	   max(l.payload #>> '{subject,content,uri}'),
	   max(l.payload #>> '{subject,content,resolution}') FILTER (WHERE l.predicate = 'closed'),
	   (array_agg(l.payload #>> '{subject,content,updatedBy}' ORDER BY l."timestamp" DESC, l.id DESC)
			FILTER (WHERE l.payload #> '{subject,content,updatedBy}' IS NOT NULL))[1],
	   CASE WHEN bool_or(l.predicate = 'closed') THEN 'closed' ELSE 'open' END,
	   min(l."timestamp") FILTER (WHERE l.predicate = 'created'),
	   max(l."timestamp") FILTER (WHERE l.predicate = 'updated'),
	   max(l."timestamp") FILTER (WHERE l.predicate = 'closed'),
	   max(l.chain_id),
	   min(l."timestamp"), max(l."timestamp"),
	   (array_agg(l.predicate ORDER BY l."timestamp" DESC, l.id DESC))[1],
	   count(*),
	   (array_agg(l.payload ORDER BY l."timestamp" DESC, l.id DESC))[1]
FROM cdviz.cdevents_lake AS l
WHERE l.subject = 'ticket' AND l.predicate IN ('created', 'updated', 'closed')
  AND l."timestamp" >= from_ts - lookback AND l."timestamp" < to_ts
GROUP BY l.subject_id
HAVING max(l."timestamp") >= from_ts
$$;

COMMENT ON FUNCTION cdviz.tickets_between(timestamptz, timestamptz, interval) IS
'cdviz: one row per ticket with an event in [from_ts, to_ts): latest summary, type, group (ticket_group), creator, assignees, priority, labels, milestone, uri, resolution, updated_by; state (closed or open); created/last updated/closed times. Read back to from_ts - lookback (30 days); prunes partitions.';
REVOKE EXECUTE ON FUNCTION cdviz.tickets_between(timestamptz, timestamptz, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz.tickets_between(timestamptz, timestamptz, interval) TO cdviz_reader;

CREATE VIEW cdviz.tickets AS
	SELECT * FROM cdviz.tickets_between('-infinity', 'infinity', '0');

COMMENT ON VIEW cdviz.tickets IS
'cdviz: every ticket, one row each (columns: see cdviz.tickets_between).';
GRANT SELECT ON cdviz.tickets TO cdviz_reader;
