-- Current state kept at ingest.
--
-- A statement-level AFTER INSERT trigger on the lake reads the rows the
-- statement really stored (the transition table holds neither duplicates
-- skipped by ON CONFLICT DO NOTHING nor rejected input) and maintains a few
-- narrow tables that the read API would otherwise have to rebuild from the
-- whole lake on every query:
--
--   environment_history   every deployed/upgraded/rolledback/removed/published
--                         event (what cdviz.deployments lists)
--   environment_state     what runs now, one row per (environment, service)
--   first_deployments     first time each artifact reached each environment,
--                         with the time of the change it was built from
--   artifact_changes      the change each artifact was built from
--   change_times          when each change was created and merged
--   event_links           the context.links of every event, by both ends
--
-- Every table is either append-only or merged with commutative rules
-- (earliest wins, or "recompute from history"), so the result does not depend
-- on the order in which events arrive: an older event never overwrites a
-- newer state.  Only service, artifact.packaged and change.created/merged
-- events cost anything; for any other batch the trigger scans the transition
-- table and does nothing else.
--
-- Retention (cdviz.drop_partitions_before) does not prune these tables: they
-- are small, and keeping them lets the inventory and the DORA figures keep
-- working for months whose raw events are gone.

CREATE TABLE cdviz.environment_history (
	event_id		bigint PRIMARY KEY,
	environment_id	text NOT NULL,
	service_id		text NOT NULL,
	predicate		text NOT NULL,
	artifact_id		text,
	valid_from		timestamptz NOT NULL,
	context_id		text NOT NULL
);
CREATE INDEX environment_history_key
	ON cdviz.environment_history (environment_id, service_id, valid_from);
CREATE INDEX environment_history_valid_from
	ON cdviz.environment_history (valid_from);

COMMENT ON TABLE cdviz.environment_history IS
'cdviz: one row per service deployed/upgraded/rolledback/removed/published event that names an environment, kept by the lake trigger; the narrow time line behind cdviz.deployments, cdviz.services, cdviz.environment_inventory_at() and the deployment DORA metrics';
COMMENT ON COLUMN cdviz.environment_history.event_id IS 'cdviz.cdevents_lake.id of the event';
COMMENT ON COLUMN cdviz.environment_history.environment_id IS 'subject.content.environment.id';
COMMENT ON COLUMN cdviz.environment_history.service_id IS 'subject.id of the service';
COMMENT ON COLUMN cdviz.environment_history.predicate IS 'deployed, upgraded, rolledback, removed or published (published does not change what runs)';
COMMENT ON COLUMN cdviz.environment_history.artifact_id IS 'subject.content.artifactId (NULL for removed and published)';
COMMENT ON COLUMN cdviz.environment_history.valid_from IS 'event timestamp: from then on this event describes the (environment, service)';
COMMENT ON COLUMN cdviz.environment_history.context_id IS 'context.id of the event';

CREATE TABLE cdviz.environment_state (
	environment_id	text NOT NULL,
	service_id		text NOT NULL,
	artifact_id		text,
	deployed_at		timestamptz,
	predicate		text NOT NULL,
	previous_artifact_id text,
	updated_at		timestamptz NOT NULL,
	event_id		bigint NOT NULL,
	context_id		text NOT NULL,
	PRIMARY KEY (environment_id, service_id)
);

COMMENT ON TABLE cdviz.environment_state IS
'cdviz: latest event of each (environment, service) by event timestamp, recomputed from cdviz.environment_history at ingest; rows whose latest event is "removed" stay (artifact_id NULL) so that an older deploy delivered late cannot bring the service back. Read it through cdviz.environment_inventory.';
COMMENT ON COLUMN cdviz.environment_state.artifact_id IS 'artifact running now; NULL when the latest event removed the service';
COMMENT ON COLUMN cdviz.environment_state.deployed_at IS 'timestamp of the event that put artifact_id there; NULL when removed';
COMMENT ON COLUMN cdviz.environment_state.predicate IS 'predicate of the latest event: deployed, upgraded, rolledback or removed';
COMMENT ON COLUMN cdviz.environment_state.previous_artifact_id IS 'artifact of the most recent earlier deployment whose artifact differs from the current one (what ran before)';
COMMENT ON COLUMN cdviz.environment_state.updated_at IS 'timestamp of the latest event (the removal time when removed)';
COMMENT ON COLUMN cdviz.environment_state.event_id IS 'cdviz.cdevents_lake.id of the latest event';
COMMENT ON COLUMN cdviz.environment_state.context_id IS 'context.id of the latest event';

CREATE TABLE cdviz.first_deployments (
	environment_id	text NOT NULL,
	artifact_id		text NOT NULL,
	service_id		text NOT NULL,
	deployed_at		timestamptz NOT NULL,
	event_id		bigint NOT NULL,
	change_id		text,
	changed_at		timestamptz,
	PRIMARY KEY (environment_id, artifact_id)
);
CREATE INDEX first_deployments_deployed_at
	ON cdviz.first_deployments (deployed_at);
CREATE INDEX first_deployments_artifact_id
	ON cdviz.first_deployments (artifact_id);

COMMENT ON TABLE cdviz.first_deployments IS
'cdviz: earliest deployed/upgraded event of each artifact in each environment (earliest wins, whatever the arrival order), with the change the artifact was built from: one row per sample of lead time for changes';
COMMENT ON COLUMN cdviz.first_deployments.deployed_at IS 'timestamp of the earliest deployed/upgraded event of the artifact in the environment';
COMMENT ON COLUMN cdviz.first_deployments.event_id IS 'cdviz.cdevents_lake.id of that event';
COMMENT ON COLUMN cdviz.first_deployments.change_id IS 'the change of the artifact (cdviz.artifact_changes), NULL while unknown';
COMMENT ON COLUMN cdviz.first_deployments.changed_at IS 'when that change was merged, else created (cdviz.change_times); NULL while unknown. Kept up to date whichever of deployment, packaging and change events arrives last.';

CREATE TABLE cdviz.artifact_changes (
	artifact_id		text PRIMARY KEY,
	change_id		text NOT NULL,
	change_source	text,
	packaged_at		timestamptz NOT NULL,
	event_id		bigint NOT NULL
);
CREATE INDEX artifact_changes_change_id ON cdviz.artifact_changes (change_id);

COMMENT ON TABLE cdviz.artifact_changes IS
'cdviz: the change each artifact was built from, from artifact.packaged (subject.content.change); the earliest packaged event wins';
COMMENT ON COLUMN cdviz.artifact_changes.change_id IS 'subject.content.change.id of the packaged event';
COMMENT ON COLUMN cdviz.artifact_changes.change_source IS 'subject.content.change.source of the packaged event';
COMMENT ON COLUMN cdviz.artifact_changes.packaged_at IS 'timestamp of the earliest packaged event';
COMMENT ON COLUMN cdviz.artifact_changes.event_id IS 'cdviz.cdevents_lake.id of that event';

CREATE TABLE cdviz.change_times (
	change_id		text PRIMARY KEY,
	created_at		timestamptz,
	merged_at		timestamptz
);

COMMENT ON TABLE cdviz.change_times IS
'cdviz: earliest change.created and change.merged timestamps of each change id (the start point of lead time for changes). Changes are matched on id alone: ids should be unique across repositories.';
COMMENT ON COLUMN cdviz.change_times.created_at IS 'timestamp of the earliest change.created event';
COMMENT ON COLUMN cdviz.change_times.merged_at IS 'timestamp of the earliest change.merged event';

-- context.links (spec 0.4+) name other events by context id: RELATION links
-- by target, PATH and END links by from (the parent).  Looking links up by
-- the far end ("which events point at this one?") would otherwise need a
-- GIN index over every payload of the lake.
CREATE TABLE cdviz.event_links (
	event_id		bigint NOT NULL,
	context_id		text NOT NULL,
	linked_context_id text NOT NULL,
	link_type		text,
	link_kind		text,
	tags			jsonb
);
CREATE INDEX event_links_context_id ON cdviz.event_links (context_id);
CREATE INDEX event_links_linked_context_id ON cdviz.event_links (linked_context_id);

COMMENT ON TABLE cdviz.event_links IS
'cdviz: one row per element of context.links of a stored event, kept by the lake trigger; read through cdviz.related()';
COMMENT ON COLUMN cdviz.event_links.event_id IS 'cdviz.cdevents_lake.id of the event that carries the link';
COMMENT ON COLUMN cdviz.event_links.context_id IS 'context.id of the event that carries the link';
COMMENT ON COLUMN cdviz.event_links.linked_context_id IS 'the other end: target.contextId (RELATION), else from.contextId (PATH, END), else to.contextId';
COMMENT ON COLUMN cdviz.event_links.link_type IS 'linkType: RELATION, PATH, END';
COMMENT ON COLUMN cdviz.event_links.link_kind IS 'linkKind of a RELATION link, e.g. TRIGGER';
COMMENT ON COLUMN cdviz.event_links.tags IS 'tags of the link';

CREATE FUNCTION cdviz.lake_maintain_state()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n bigint;
BEGIN
	-- service events: history, then recompute the state of the touched keys
	INSERT INTO cdviz.environment_history
		(event_id, environment_id, service_id, predicate, artifact_id, valid_from, context_id)
	SELECT e.id, e.payload #>> '{subject,content,environment,id}', e.subject_id, e.predicate,
		   CASE WHEN e.predicate IN ('deployed', 'upgraded', 'rolledback')
				THEN e.payload #>> '{subject,content,artifactId}' END,
		   e."timestamp", e.context_id
	FROM new_events e
	WHERE e.subject = 'service'
	  AND e.predicate IN ('deployed', 'upgraded', 'rolledback', 'removed', 'published')
	  AND e.subject_id IS NOT NULL
	  AND e.payload #>> '{subject,content,environment,id}' IS NOT NULL;
	GET DIAGNOSTICS n = ROW_COUNT;

	IF n > 0 THEN
		-- The state of a key is a pure function of its history, so recomputing
		-- it is right whatever order the events came in.
		INSERT INTO cdviz.environment_state AS s
			(environment_id, service_id, artifact_id, deployed_at, predicate,
			 previous_artifact_id, updated_at, event_id, context_id)
		SELECT k.environment_id, k.service_id, cur.artifact_id,
			   CASE WHEN cur.predicate <> 'removed' THEN cur.valid_from END,
			   cur.predicate, prev.artifact_id, cur.valid_from, cur.event_id, cur.context_id
		FROM (SELECT DISTINCT e.payload #>> '{subject,content,environment,id}' AS environment_id,
					 e.subject_id AS service_id
			  FROM new_events e
			  WHERE e.subject = 'service'
				AND e.predicate IN ('deployed', 'upgraded', 'rolledback', 'removed')
				AND e.subject_id IS NOT NULL
				AND e.payload #>> '{subject,content,environment,id}' IS NOT NULL) k
		CROSS JOIN LATERAL (
			SELECT h.* FROM cdviz.environment_history h
			WHERE h.environment_id = k.environment_id AND h.service_id = k.service_id
			  AND h.predicate <> 'published'
			ORDER BY h.valid_from DESC, h.event_id DESC
			LIMIT 1) cur
		LEFT JOIN LATERAL (
			SELECT h.artifact_id FROM cdviz.environment_history h
			WHERE h.environment_id = k.environment_id AND h.service_id = k.service_id
			  AND h.predicate IN ('deployed', 'upgraded', 'rolledback')
			  AND (h.valid_from, h.event_id) < (cur.valid_from, cur.event_id)
			  AND h.artifact_id IS DISTINCT FROM cur.artifact_id
			ORDER BY h.valid_from DESC, h.event_id DESC
			LIMIT 1) prev ON true
		ON CONFLICT (environment_id, service_id) DO UPDATE
		SET artifact_id = excluded.artifact_id,
			deployed_at = excluded.deployed_at,
			predicate = excluded.predicate,
			previous_artifact_id = excluded.previous_artifact_id,
			updated_at = excluded.updated_at,
			event_id = excluded.event_id,
			context_id = excluded.context_id;

	END IF;

	INSERT INTO cdviz.artifact_changes AS a
		(artifact_id, change_id, change_source, packaged_at, event_id)
	SELECT DISTINCT ON (e.subject_id)
		   e.subject_id, e.payload #>> '{subject,content,change,id}',
		   e.payload #>> '{subject,content,change,source}', e."timestamp", e.id
	FROM new_events e
	WHERE e.subject = 'artifact' AND e.predicate = 'packaged'
	  AND e.subject_id IS NOT NULL
	  AND e.payload #>> '{subject,content,change,id}' IS NOT NULL
	ORDER BY e.subject_id, e."timestamp", e.id
	ON CONFLICT (artifact_id) DO UPDATE
	SET change_id = excluded.change_id,
		change_source = excluded.change_source,
		packaged_at = excluded.packaged_at,
		event_id = excluded.event_id
	WHERE (excluded.packaged_at, excluded.event_id) < (a.packaged_at, a.event_id);

	INSERT INTO cdviz.change_times AS c (change_id, created_at, merged_at)
	SELECT e.subject_id,
		   min(e."timestamp") FILTER (WHERE e.predicate = 'created'),
		   min(e."timestamp") FILTER (WHERE e.predicate = 'merged')
	FROM new_events e
	WHERE e.subject = 'change' AND e.predicate IN ('created', 'merged')
	  AND e.subject_id IS NOT NULL
	GROUP BY e.subject_id
	ON CONFLICT (change_id) DO UPDATE
	SET created_at = LEAST(c.created_at, excluded.created_at),
		merged_at = LEAST(c.merged_at, excluded.merged_at)
	WHERE excluded.created_at < c.created_at OR excluded.merged_at < c.merged_at
	   OR (c.created_at IS NULL AND excluded.created_at IS NOT NULL)
	   OR (c.merged_at IS NULL AND excluded.merged_at IS NOT NULL);

	-- New first deployments take the change time known so far; the
	-- statement below catches up when packaging or change events come later.
	IF n > 0 THEN
		INSERT INTO cdviz.first_deployments AS f
			(environment_id, artifact_id, service_id, deployed_at, event_id, change_id, changed_at)
		SELECT d.environment_id, d.artifact_id, d.service_id, d.deployed_at, d.event_id,
			   a.change_id, coalesce(c.merged_at, c.created_at)
		FROM (SELECT DISTINCT ON (d.environment_id, d.artifact_id) d.*
			  FROM (SELECT e.payload #>> '{subject,content,environment,id}' AS environment_id,
						   e.payload #>> '{subject,content,artifactId}' AS artifact_id,
						   e.subject_id AS service_id, e."timestamp" AS deployed_at, e.id AS event_id
					FROM new_events e
					WHERE e.subject = 'service' AND e.predicate IN ('deployed', 'upgraded')
					  AND e.subject_id IS NOT NULL) d
			  WHERE d.environment_id IS NOT NULL AND d.artifact_id IS NOT NULL
			  ORDER BY d.environment_id, d.artifact_id, d.deployed_at, d.event_id) d
		LEFT JOIN cdviz.artifact_changes a ON a.artifact_id = d.artifact_id
		LEFT JOIN cdviz.change_times c ON c.change_id = a.change_id
		ON CONFLICT (environment_id, artifact_id) DO UPDATE
		SET service_id = excluded.service_id,
			deployed_at = excluded.deployed_at,
			event_id = excluded.event_id
		WHERE (excluded.deployed_at, excluded.event_id) < (f.deployed_at, f.event_id);
	END IF;

	-- Packaging or change events of this statement: refresh the change of
	-- the first deployments of the artifacts they concern.
	UPDATE cdviz.first_deployments f
	SET change_id = a.change_id, changed_at = coalesce(c.merged_at, c.created_at)
	FROM cdviz.artifact_changes a
	LEFT JOIN cdviz.change_times c ON c.change_id = a.change_id
	WHERE f.artifact_id = a.artifact_id
	  AND a.artifact_id IN (SELECT e.subject_id FROM new_events e
							WHERE e.subject = 'artifact' AND e.predicate = 'packaged'
							UNION
							SELECT a2.artifact_id FROM cdviz.artifact_changes a2
							WHERE a2.change_id IN (SELECT e.subject_id FROM new_events e
												   WHERE e.subject = 'change'
													 AND e.predicate IN ('created', 'merged')))
	  AND (f.change_id, f.changed_at) IS DISTINCT FROM (a.change_id, coalesce(c.merged_at, c.created_at));

	INSERT INTO cdviz.event_links (event_id, context_id, linked_context_id, link_type, link_kind, tags)
	SELECT e.id, e.context_id,
		   coalesce(k.link #>> '{target,contextId}', k.link #>> '{from,contextId}', k.link #>> '{to,contextId}'),
		   k.link ->> 'linkType', k.link ->> 'linkKind', k.link -> 'tags'
	FROM new_events e
	CROSS JOIN LATERAL jsonb_array_elements(e.payload #> '{context,links}') AS k(link)
	WHERE jsonb_typeof(e.payload #> '{context,links}') = 'array'
	  AND jsonb_typeof(k.link) = 'object'
	  AND coalesce(k.link #>> '{target,contextId}', k.link #>> '{from,contextId}', k.link #>> '{to,contextId}') IS NOT NULL;

	RETURN NULL;
END
$$;

COMMENT ON FUNCTION cdviz.lake_maintain_state() IS
'cdviz: statement-level AFTER INSERT trigger of cdviz.cdevents_lake: folds the stored service, artifact.packaged and change.created/merged events of the statement into the current-state tables, and the context.links of every event into cdviz.event_links (SECURITY DEFINER so that writers need no privilege on them)';

CREATE TRIGGER lake_maintain_state
	AFTER INSERT ON cdviz.cdevents_lake
	REFERENCING NEW TABLE AS new_events
	FOR EACH STATEMENT
	EXECUTE FUNCTION cdviz.lake_maintain_state();

COMMENT ON TRIGGER lake_maintain_state ON cdviz.cdevents_lake IS
'cdviz: keeps environment_history, environment_state, first_deployments, artifact_changes, change_times and event_links in step with the lake, one pass per insert statement';

-- These tables hold data, not definitions: pg_dump must dump their rows
-- (the extension recreates the tables themselves).
SELECT pg_catalog.pg_extension_config_dump('cdviz.environment_history', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.environment_state', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.first_deployments', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.artifact_changes', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.change_times', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.event_links', '');
