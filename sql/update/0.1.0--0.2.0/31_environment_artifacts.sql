
-- The previous artifact of a redeployed service in one index probe: the
-- lake trigger searched back through the key's whole history of
-- redeployments of the current artifact (cdviz.lake_maintain() above uses
-- the new table).
CREATE TABLE cdviz.environment_artifacts (
	environment_id	text NOT NULL,
	service_id		text NOT NULL,
	artifact_id		text NOT NULL,
	last_at			timestamptz NOT NULL,
	last_event_id	bigint NOT NULL,
	PRIMARY KEY (environment_id, service_id, artifact_id)
);
-- the artifacts of a key newest first: the one before the current one is
-- the second entry, however often either was deployed
CREATE INDEX environment_artifacts_latest
	ON cdviz.environment_artifacts (environment_id, service_id, last_at, last_event_id);

COMMENT ON TABLE cdviz.environment_artifacts IS
'cdviz: the latest deployed/upgraded/rolledback event of each artifact in each (environment, service), kept by the lake trigger (latest wins, whatever the arrival order); where environment_state.previous_artifact_id is found in one index probe, however long the history of redeployments';
COMMENT ON COLUMN cdviz.environment_artifacts.artifact_id IS 'subject.content.artifactId; empty for a deployment that named none';
COMMENT ON COLUMN cdviz.environment_artifacts.last_at IS 'timestamp of the latest such event';
COMMENT ON COLUMN cdviz.environment_artifacts.last_event_id IS 'cdviz.cdevents_lake.id of that event';

INSERT INTO cdviz.environment_artifacts
	(environment_id, service_id, artifact_id, last_at, last_event_id)
SELECT DISTINCT ON (h.environment_id, h.service_id, coalesce(h.artifact_id, ''))
	   h.environment_id, h.service_id, coalesce(h.artifact_id, ''), h.valid_from, h.event_id
FROM cdviz.environment_history h
WHERE h.predicate IN ('deployed', 'upgraded', 'rolledback')
ORDER BY h.environment_id, h.service_id, coalesce(h.artifact_id, ''), h.valid_from DESC, h.event_id DESC;

SELECT pg_catalog.pg_extension_config_dump('cdviz.environment_artifacts', '');
