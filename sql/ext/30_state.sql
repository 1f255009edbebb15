-- Current state kept at ingest.
--
-- One statement-level AFTER INSERT trigger on the lake, cdviz.lake_maintain()
-- (created at the end of this file, with the summaries below), reads the rows
-- the statement really stored (the transition table holds neither duplicates
-- skipped by ON CONFLICT DO NOTHING nor rejected input) and maintains a few
-- narrow tables that the read API would otherwise have to rebuild from the
-- whole lake on every query:
--
--   environment_history   every deployed/upgraded/rolledback/removed/published
--                         event (what cdviz.deployments lists)
--   environment_state     what runs now, one row per (environment, service)
--   environment_artifacts the latest deployment of each artifact per
--                         (environment, service): the previous artifact
--   first_deployments     first time each artifact reached each environment,
--                         with the time of the change it was built from
--   artifact_changes      the change each artifact was built from
--   change_times          when each change was created and merged
--   event_links           the context.links of every event, by both ends
--   rework_causes         incident events and bug tickets' events, which
--                         can make a deployment rework
--   rework_links          what is linked to them, by links and chains
--
-- Every table is either append-only or merged with commutative rules
-- (earliest wins, or "recompute from history"), so the result does not depend
-- on the order in which events arrive: an older event never overwrites a
-- newer state.  Only service, artifact.packaged and change.created/merged
-- events (and events with links) cost anything: the trigger first lists the
-- subjects the statement stored and skips the parts that have nothing to do.
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
-- (valid_from, event_id) is the order "latest" is decided on: with event_id
-- in the key, events of one instant need no sort of the key's whole history
CREATE INDEX environment_history_key
	ON cdviz.environment_history (environment_id, service_id, valid_from, event_id);
CREATE INDEX environment_history_valid_from
	ON cdviz.environment_history (valid_from);
-- the time range of one environment (its DORA figures, its deployments),
-- covering what the deployment counts read: the history is insert-only, so
-- its pages are all-visible and the counts never touch the heap
CREATE INDEX environment_history_environment_valid_from
	ON cdviz.environment_history (environment_id, valid_from) INCLUDE (predicate, service_id);
-- rollbacks are rare failure signals of the change failure rate: found
-- without reading the deployments around them
CREATE INDEX environment_history_rollbacks
	ON cdviz.environment_history (valid_from) WHERE predicate = 'rolledback';
-- the deployments of one artifact: the rework rate finds the artifacts
-- linked to incidents and bug tickets, then their deployments in a range
CREATE INDEX environment_history_artifact_id
	ON cdviz.environment_history (artifact_id, valid_from) WHERE artifact_id IS NOT NULL;

COMMENT ON TABLE cdviz.environment_history IS
'cdviz: one row per service deployed/upgraded/rolledback/removed/published event that names an environment, kept by the lake trigger; the narrow time line behind cdviz.deployments, cdviz.services, cdviz.environment_inventory_at() and the deployment DORA metrics';
GRANT SELECT ON cdviz.environment_history TO cdviz_reader;
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
GRANT SELECT ON cdviz.environment_state TO cdviz_reader;
COMMENT ON COLUMN cdviz.environment_state.artifact_id IS 'artifact running now; NULL when the latest event removed the service';
COMMENT ON COLUMN cdviz.environment_state.deployed_at IS 'timestamp of the event that put artifact_id there; NULL when removed';
COMMENT ON COLUMN cdviz.environment_state.predicate IS 'predicate of the latest event: deployed, upgraded, rolledback or removed';
COMMENT ON COLUMN cdviz.environment_state.previous_artifact_id IS 'artifact of the most recent earlier deployment whose artifact differs from the current one (what ran before)';
COMMENT ON COLUMN cdviz.environment_state.updated_at IS 'timestamp of the latest event (the removal time when removed)';
COMMENT ON COLUMN cdviz.environment_state.event_id IS 'cdviz.cdevents_lake.id of the latest event';
COMMENT ON COLUMN cdviz.environment_state.context_id IS 'context.id of the latest event';

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
CREATE INDEX first_deployments_environment_deployed_at
	ON cdviz.first_deployments (environment_id, deployed_at) INCLUDE (changed_at, service_id);
CREATE INDEX first_deployments_artifact_id
	ON cdviz.first_deployments (artifact_id);

COMMENT ON TABLE cdviz.first_deployments IS
'cdviz: earliest deployed/upgraded event of each artifact in each environment (earliest wins, whatever the arrival order), with the change the artifact was built from: one row per sample of lead time for changes';
GRANT SELECT ON cdviz.first_deployments TO cdviz_reader;
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
GRANT SELECT ON cdviz.artifact_changes TO cdviz_reader;
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
GRANT SELECT ON cdviz.change_times TO cdviz_reader;
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
GRANT SELECT ON cdviz.event_links TO cdviz_reader;
COMMENT ON COLUMN cdviz.event_links.event_id IS 'cdviz.cdevents_lake.id of the event that carries the link';
COMMENT ON COLUMN cdviz.event_links.context_id IS 'context.id of the event that carries the link';
COMMENT ON COLUMN cdviz.event_links.linked_context_id IS 'the other end: target.contextId (RELATION), else from.contextId (PATH, END), else to.contextId';
COMMENT ON COLUMN cdviz.event_links.link_type IS 'linkType: RELATION, PATH, END';
COMMENT ON COLUMN cdviz.event_links.link_kind IS 'linkKind of a RELATION link, e.g. TRIGGER';
COMMENT ON COLUMN cdviz.event_links.tags IS 'tags of the link';

-- The events that can make a deployment rework (cdviz.dora_rework): every
-- incident detected/reported/resolved event, and every ticket event whose
-- ticketType names a bug.  A few rows a day, insert-only; found by the
-- context id a link names and by chain.
CREATE TABLE cdviz.rework_causes (
	event_id		bigint PRIMARY KEY,
	"timestamp"		timestamptz NOT NULL,
	context_id		text NOT NULL,
	chain_id		text,
	subject			text NOT NULL,
	subject_id		text
);
CREATE INDEX rework_causes_context_id ON cdviz.rework_causes (context_id);
CREATE INDEX rework_causes_chain_id ON cdviz.rework_causes (chain_id) WHERE chain_id IS NOT NULL;

COMMENT ON TABLE cdviz.rework_causes IS
'cdviz: one row per incident detected/reported/resolved event and per ticket created/updated/closed event whose subject.content.ticketType contains "bug" (case-insensitive), kept by the lake trigger: what a deployment, artifact or change linked to it (context.links) or made in its chain (chainId) is rework for (cdviz.rework_links)';
GRANT SELECT ON cdviz.rework_causes TO cdviz_reader;
COMMENT ON COLUMN cdviz.rework_causes.event_id IS 'cdviz.cdevents_lake.id of the event';
COMMENT ON COLUMN cdviz.rework_causes."timestamp" IS 'event timestamp';
COMMENT ON COLUMN cdviz.rework_causes.context_id IS 'context.id of the event: what a link names';
COMMENT ON COLUMN cdviz.rework_causes.chain_id IS 'context.chainId of the event';
COMMENT ON COLUMN cdviz.rework_causes.subject IS 'incident or ticket';
COMMENT ON COLUMN cdviz.rework_causes.subject_id IS 'subject.id: the incident or ticket';

-- What is linked to a rework cause: the join of the causes with the links,
-- artifacts and changes, kept at ingest from whichever side arrives last,
-- so that the rework rate reads the few rows of its range and look-back
-- instead of probing links and chains for every cause.  Insert-only; a
-- pair found from both sides is one row.
CREATE TABLE cdviz.rework_links (
	cause_event_id	bigint NOT NULL,
	since			timestamptz NOT NULL,
	reason			text NOT NULL,
	subject			text NOT NULL,
	subject_id		text,
	event_id		bigint,
	CONSTRAINT rework_links_key UNIQUE NULLS NOT DISTINCT (cause_event_id, reason, subject, subject_id, event_id)
);
CREATE INDEX rework_links_since ON cdviz.rework_links (since);

COMMENT ON TABLE cdviz.rework_links IS
'cdviz: what is linked to a rework cause (cdviz.rework_causes), kept by the lake trigger whatever the arrival order: a service event (a deployment) or an event of an artifact or change that names the cause''s event in its context.links (reason "link to incident" or "link to ticket"), and an artifact packaged or a change created in the cause''s chain at or after it ("chain of incident", "chain of ticket"); read by cdviz.dora_rework';
GRANT SELECT ON cdviz.rework_links TO cdviz_reader;
COMMENT ON COLUMN cdviz.rework_links.cause_event_id IS 'cdviz.rework_causes.event_id';
COMMENT ON COLUMN cdviz.rework_links.since IS 'timestamp of the cause''s event';
COMMENT ON COLUMN cdviz.rework_links.reason IS 'link to incident, link to ticket, chain of incident or chain of ticket';
COMMENT ON COLUMN cdviz.rework_links.subject IS 'what is linked: service (the event itself), artifact or change';
COMMENT ON COLUMN cdviz.rework_links.subject_id IS 'the artifact or change id; NULL for a service event';
COMMENT ON COLUMN cdviz.rework_links.event_id IS 'cdviz.cdevents_lake.id of the service event; NULL for an artifact or change';

-- These tables hold data, not definitions: pg_dump must dump their rows
-- (the extension recreates the tables themselves).
SELECT pg_catalog.pg_extension_config_dump('cdviz.environment_history', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.environment_state', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.environment_artifacts', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.first_deployments', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.artifact_changes', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.change_times', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.event_links', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.rework_causes', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.rework_links', '');

-- ---------------------------------------------------------------------------
-- Summaries kept at ingest for the read API.
--
-- Aggregating lake events per subject id on every query of the read API's
-- per-subject functions (41_read_api_runs.sql, 42_read_api_entities.sql)
-- and the dashboards would read every lake row of the window.  These
-- tables hold the result of that aggregation instead,
-- one narrow row per run (or artifact, change, incident), and two rollups
-- for the dashboards:
--
--   pipeline_run_summaries, task_run_summaries, build_summaries, branch_summaries,
--   test_case_run_summaries, test_suite_run_summaries, artifact_summaries,
--   change_summaries, incident_summaries
--                         one row per subject id: lifecycle timestamps,
--                         outcome, names, and the latest event
--   event_counts_hourly   events per UTC hour, type, source and spec version
--   test_case_outcomes_daily
--                         test case runs per UTC day, test case and outcome
--
-- Every column is merged with a commutative, associative rule: min or max
-- (LEAST/GREATEST, which skip NULLs as min()/max() do), a sum, or "the value
-- of the latest event" decided on (timestamp, lake id).  So a batch folds
-- into a row the same way whatever came before it, and any arrival order,
-- any split into batches, gives the same row as one aggregation over the
-- whole lake (which is what cdviz.rebuild_summaries() does).  Text columns
-- that the views took with max() keep max(); the raw outcome is kept and
-- normalised when read, exactly as the views did.
--
-- Cost at ingest: one INSERT ... ON CONFLICT DO UPDATE per table and batch,
-- grouped per key (a run's queued/started/finished in one batch are one row
-- write), no loop.  The summary tables are indexed on their key and on
-- first_event_at, which a later event of the same run almost never changes,
-- so most updates are HOT (fillfactor leaves room for them).
--
-- The statements are written once, in cdviz._fold_events() below, which
-- the trigger, the fold of queued events and cdviz.summaries_fold() call.

-- Every summary ends with the same columns, described at
-- cdviz.pipeline_run_summaries and folded by the same rules: the type
-- cdviz._summary_columns names them once, for the tables and for
-- cdviz._summary_merge(), which folds them.  The tables copy them by LIKE
-- from a template table of that type, which adds their NOT NULLs (LIKE
-- copies names, types and NOT NULL and leaves no link, so the template is
-- dropped once the tables exist).
CREATE TYPE cdviz._summary_columns AS (
	chain_id		text,
	first_event_at	timestamptz,
	last_event_at	timestamptz,
	last_event_id	bigint,
	last_predicate	text,
	event_count		bigint
);

COMMENT ON TYPE cdviz._summary_columns IS
'cdviz: internal: the columns every summary table ends with (see cdviz.pipeline_run_summaries), as cdviz._summary_merge() returns them';

-- A template the summary tables copy with LIKE (the shared columns with
-- their NOT NULLs), dropped once they are made (below): it never holds a
-- row nor outlives this script, so it holds nothing worth keeping and is
-- not registered with pg_extension_config_dump.
CREATE TABLE cdviz._summary_template OF cdviz._summary_columns (
	first_event_at WITH OPTIONS NOT NULL,
	last_event_at WITH OPTIONS NOT NULL,
	last_event_id WITH OPTIONS NOT NULL,
	last_predicate WITH OPTIONS NOT NULL,
	event_count WITH OPTIONS NOT NULL
);
COMMENT ON TABLE cdviz._summary_template IS
'cdviz internal: the shared columns the summary tables copy with LIKE; dropped by the install script once they are made';

CREATE TABLE cdviz.pipeline_run_summaries (
	pipeline_run_id	text PRIMARY KEY,
	source			text,
	pipeline_name	text,
	queued_at		timestamptz,
	started_at		timestamptz,
	finished_at		timestamptz,
	outcome			text,
	errors			text,
	uri				text,
	LIKE cdviz._summary_template
) WITH (fillfactor = 80);
CREATE INDEX pipeline_run_summaries_first_event_at ON cdviz.pipeline_run_summaries (first_event_at);

CREATE TABLE cdviz.task_run_summaries (
	task_run_id		text PRIMARY KEY,
	source			text,
	task_name		text,
	pipeline_run_id	text,
	started_at		timestamptz,
	finished_at		timestamptz,
	outcome			text,
	errors			text,
	uri				text,
	LIKE cdviz._summary_template
) WITH (fillfactor = 80);
-- The window index covers what the task dashboards read (task, outcome,
-- durations, pipeline run), so a window is read by an index-only scan, not
-- from heap pages (rows inserted in one statement lie in any order of their
-- window).  last_event_at is a key column, not an included one, so that the
-- window's "last_event_at >= from" test is an index condition: its bound is
-- computed once per scan, where a filter computes an expression bound such
-- as now() - interval '30 days' again for every row.  (Indexed either way,
-- its updates are not HOT.)
CREATE INDEX task_run_summaries_first_event_at
	ON cdviz.task_run_summaries (first_event_at, last_event_at)
	INCLUDE (task_name, outcome, started_at, finished_at, pipeline_run_id);

CREATE TABLE cdviz.build_summaries (
	build_id		text PRIMARY KEY,
	source			text,
	queued_at		timestamptz,
	started_at		timestamptz,
	finished_at		timestamptz,
	artifact_id		text,
	LIKE cdviz._summary_template
) WITH (fillfactor = 80);
CREATE INDEX build_summaries_first_event_at ON cdviz.build_summaries (first_event_at);

CREATE TABLE cdviz.branch_summaries (
	branch_id		text PRIMARY KEY,
	source			text,
	repository_id	text,
	repository_source text,
	created_at		timestamptz,
	deleted_at		timestamptz,
	LIKE cdviz._summary_template
) WITH (fillfactor = 80);
CREATE INDEX branch_summaries_first_event_at ON cdviz.branch_summaries (first_event_at);

CREATE TABLE cdviz.test_case_run_summaries (
	test_case_run_id text PRIMARY KEY,
	source			text,
	test_case_id	text,
	test_case_name	text,
	test_case_version text,
	test_case_type	text,
	test_case_uri	text,
	test_suite_run_id text,
	environment_id	text,
	trigger_type	text,
	trigger_uri		text,
	queued_at		timestamptz,
	started_at		timestamptz,
	finished_at		timestamptz,
	skipped_at		timestamptz,
	outcome			text,
	severity		text,
	reason			text,
	LIKE cdviz._summary_template
) WITH (fillfactor = 80);
-- covers the counts per test case and outcome (118,000 runs in 30 days at
-- 10M events), as for task runs (last_event_at a key column likewise)
CREATE INDEX test_case_run_summaries_first_event_at
	ON cdviz.test_case_run_summaries (first_event_at, last_event_at)
	INCLUDE (test_case_name, test_case_id, outcome, skipped_at, finished_at);
-- flaky tests: the other runs of a chain (one delivery cycle, one artifact)
CREATE INDEX test_case_run_summaries_chain_id ON cdviz.test_case_run_summaries (chain_id);
-- failed runs are few: finding them in a window reads only them
CREATE INDEX test_case_run_summaries_failed ON cdviz.test_case_run_summaries (finished_at)
	WHERE outcome IN ('failure', 'fail');

CREATE TABLE cdviz.test_suite_run_summaries (
	test_suite_run_id text PRIMARY KEY,
	source			text,
	test_suite_id	text,
	test_suite_name	text,
	test_suite_version text,
	test_suite_uri	text,
	environment_id	text,
	trigger_type	text,
	trigger_uri		text,
	queued_at		timestamptz,
	started_at		timestamptz,
	finished_at		timestamptz,
	outcome			text,
	severity		text,
	reason			text,
	LIKE cdviz._summary_template
) WITH (fillfactor = 80);
CREATE INDEX test_suite_run_summaries_first_event_at ON cdviz.test_suite_run_summaries (first_event_at);

CREATE TABLE cdviz.artifact_summaries (
	artifact_id		text PRIMARY KEY,
	source			text,
	packaged_at		timestamptz,
	signed_at		timestamptz,
	published_at	timestamptz,
	first_downloaded_at timestamptz,
	last_downloaded_at timestamptz,
	download_count	bigint NOT NULL,
	deleted_at		timestamptz,
	change_id		text,
	change_source	text,
	sbom_uri		text,
	signature		text,
	last_user		text,
	last_user_at	timestamptz,
	last_user_event_id bigint,
	LIKE cdviz._summary_template
) WITH (fillfactor = 80);
CREATE INDEX artifact_summaries_first_event_at ON cdviz.artifact_summaries (first_event_at);
-- the artifacts of a chain: the rework rate follows the chain of an
-- incident or bug ticket to what was built in it
CREATE INDEX artifact_summaries_chain_id ON cdviz.artifact_summaries (chain_id) WHERE chain_id IS NOT NULL;

CREATE TABLE cdviz.change_summaries (
	change_id		text PRIMARY KEY,
	source			text,
	repository_id	text,
	repository_source text,
	description		text,
	description_at	timestamptz,
	description_event_id bigint,
	created_at		timestamptz,
	first_reviewed_at timestamptz,
	review_count	bigint NOT NULL,
	last_updated_at	timestamptz,
	merged_at		timestamptz,
	abandoned_at	timestamptz,
	LIKE cdviz._summary_template
) WITH (fillfactor = 80);
CREATE INDEX change_summaries_first_event_at ON cdviz.change_summaries (first_event_at);
-- the changes of a chain, likewise
CREATE INDEX change_summaries_chain_id ON cdviz.change_summaries (chain_id) WHERE chain_id IS NOT NULL;

CREATE TABLE cdviz.incident_summaries (
	incident_id		text PRIMARY KEY,
	source			text,
	environment_id	text,
	service_id		text,
	artifact_id		text,
	description		text,
	description_at	timestamptz,
	description_event_id bigint,
	ticket_uri		text,
	detected_at		timestamptz,
	reported_at		timestamptz,
	resolved_at		timestamptz,
	LIKE cdviz._summary_template
);
CREATE INDEX incident_summaries_first_event_at ON cdviz.incident_summaries (first_event_at);
CREATE INDEX incident_summaries_last_event_at ON cdviz.incident_summaries (last_event_at);
CREATE INDEX incident_summaries_resolved_at ON cdviz.incident_summaries (resolved_at);

DROP TABLE cdviz._summary_template;

CREATE TABLE cdviz.event_counts_hourly (
	hour			timestamptz NOT NULL,
	type			text NOT NULL,
	context_source	text NOT NULL,
	spec_version	text,
	subject			text NOT NULL,
	predicate		text NOT NULL,
	events			bigint NOT NULL,
	first_at		timestamptz NOT NULL,
	last_at			timestamptz NOT NULL,
	CONSTRAINT event_counts_hourly_key UNIQUE NULLS NOT DISTINCT (hour, type, context_source, spec_version)
);

CREATE TABLE cdviz.test_case_outcomes_daily (
	day				timestamptz NOT NULL,
	test_case		text,
	outcome			text,
	runs			bigint NOT NULL,
	last_at			timestamptz NOT NULL,
	reason			text,
	CONSTRAINT test_case_outcomes_daily_key UNIQUE NULLS NOT DISTINCT (day, test_case, outcome)
);

COMMENT ON TABLE cdviz.pipeline_run_summaries IS
'cdviz: one row per pipeline run (subject.id), kept by the lake trigger, out-of-order safe: what cdviz.pipeline_runs_between() returns. Timestamps are min (queued, started) or max (finished) of the run''s events; outcome is the raw (not normalised) max outcome of its finished events; last_* describe the latest event by (timestamp, lake id). Rebuilt from the lake by cdviz.rebuild_summaries().';
COMMENT ON TABLE cdviz.task_run_summaries IS
'cdviz: one row per task run, kept by the lake trigger (rules: see cdviz.pipeline_run_summaries); what cdviz.task_runs_between() returns';
COMMENT ON TABLE cdviz.branch_summaries IS
'cdviz: one row per branch, kept by the lake trigger (rules: see cdviz.pipeline_run_summaries): repository, earliest created and latest deleted times; what cdviz.branches_between() returns';
COMMENT ON TABLE cdviz.build_summaries IS
'cdviz: one row per build, kept by the lake trigger (rules: see cdviz.pipeline_run_summaries); what cdviz.builds_between() returns';
COMMENT ON TABLE cdviz.test_case_run_summaries IS
'cdviz: one row per test case run, kept by the lake trigger (rules: see cdviz.pipeline_run_summaries; skipped_at is the latest skipped event); what cdviz.test_case_runs_between() returns';
COMMENT ON TABLE cdviz.test_suite_run_summaries IS
'cdviz: one row per test suite run, kept by the lake trigger (rules: see cdviz.pipeline_run_summaries); what cdviz.test_suite_runs_between() returns';
COMMENT ON TABLE cdviz.artifact_summaries IS
'cdviz: one row per artifact, kept by the lake trigger: packaged/signed/published/downloaded/deleted times, download count, the change of its packaged event, latest user (last_user_at and last_user_event_id decide which event is the latest); what cdviz.artifacts_between() returns';
COMMENT ON TABLE cdviz.change_summaries IS
'cdviz: one row per change, kept by the lake trigger: repository, latest description (decided on description_at, description_event_id), created/first reviewed/last updated/merged/abandoned times, review count; what cdviz.changes_between() returns';
COMMENT ON TABLE cdviz.incident_summaries IS
'cdviz: one row per incident, kept by the lake trigger: environment, service, artifact, latest description, detected/reported (earliest) and resolved (latest) times; what cdviz.incidents_between() and the incident DORA metrics read';
COMMENT ON TABLE cdviz.event_counts_hourly IS
'cdviz: number of stored events per UTC hour, type, context source and spec version (with the subject and predicate of the type, and the first and last event timestamps), kept by the lake trigger: the Activity dashboard reads it instead of the lake';
COMMENT ON TABLE cdviz.test_case_outcomes_daily IS
'cdviz: test case run outcomes per UTC day (of the finished or skipped event), test case (name, else id) and outcome (normalised: success, failure, error, cancel; skipped for skipped events), with the number of runs, the latest such event and a reason (max): the Tests dashboard reads it instead of aggregating runs';
COMMENT ON COLUMN cdviz.event_counts_hourly.hour IS 'start of the UTC hour of the events'' timestamps';
COMMENT ON COLUMN cdviz.event_counts_hourly.events IS 'number of events stored (duplicates are not stored, so not counted)';
COMMENT ON COLUMN cdviz.test_case_outcomes_daily.day IS 'start of the UTC day of the finished/skipped events';
COMMENT ON COLUMN cdviz.test_case_outcomes_daily.runs IS 'number of finished (or skipped) events with that outcome';
GRANT SELECT ON cdviz.pipeline_run_summaries, cdviz.task_run_summaries, cdviz.build_summaries,
	cdviz.branch_summaries, cdviz.test_case_run_summaries, cdviz.test_suite_run_summaries,
	cdviz.artifact_summaries, cdviz.change_summaries, cdviz.incident_summaries,
	cdviz.event_counts_hourly, cdviz.test_case_outcomes_daily TO cdviz_reader;

-- Summaries folded later: with cdviz.summaries = deferred the lake trigger
-- keeps the current state at once and queues the statement's events here;
-- the cdviz summaries worker folds them in transactions of its own, so an
-- ingest transaction does not pay for the summaries.
CREATE TABLE cdviz.summary_queue (
	id				bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	queued_at		timestamptz NOT NULL DEFAULT now(),
	events			bigint NOT NULL,
	ids				bigint[] NOT NULL,
	stamps			timestamptz[] NOT NULL
);
-- 160 kB of arrays for 10,000 events: compressing them costs the ingest
-- transaction more than writing them, and the row lives a moment
ALTER TABLE cdviz.summary_queue ALTER COLUMN ids SET STORAGE EXTERNAL,
	ALTER COLUMN stamps SET STORAGE EXTERNAL;

COMMENT ON TABLE cdviz.summary_queue IS
'cdviz: lake events stored but not yet folded into the summary tables (cdviz.summaries = deferred), one row per insert statement; emptied by cdviz.fold_queued_summaries(), which the cdviz summaries worker calls';
COMMENT ON COLUMN cdviz.summary_queue.events IS 'number of events of the statement';
COMMENT ON COLUMN cdviz.summary_queue.ids IS 'their lake ids';
COMMENT ON COLUMN cdviz.summary_queue.stamps IS 'their lake timestamps (the partition key, for the lookups)';

CREATE FUNCTION cdviz._summaries_deferred()
RETURNS boolean
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'cdviz_summaries_deferred';

COMMENT ON FUNCTION cdviz._summaries_deferred() IS
'cdviz: internal, for the lake trigger: whether this session queues the summaries (cdviz.summaries = deferred, the library preloaded so that the cdviz summaries worker runs, and this database is cdviz.database, the one it folds)';
REVOKE EXECUTE ON FUNCTION cdviz._summaries_deferred() FROM PUBLIC;

CREATE FUNCTION cdviz.summaries_pending()
RETURNS bigint
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT coalesce(sum(q.events), 0)::bigint FROM cdviz.summary_queue AS q $$;

COMMENT ON FUNCTION cdviz.summaries_pending() IS
'cdviz: number of stored events not yet folded into the summary tables (the *_between functions, event counts and test outcomes); 0 when they are up to date. Example: SELECT cdviz.summaries_pending();';
REVOKE EXECUTE ON FUNCTION cdviz.summaries_pending() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz.summaries_pending() TO cdviz_reader;
GRANT EXECUTE ON FUNCTION cdviz.summaries_pending() TO cdviz_writer;

-- The cause side of cdviz.rework_links, for causes just stored (the lake
-- trigger) or all of them (the update that made the table): the links
-- that name them, found by the far end, and the artifacts and changes of
-- their chains, from the summaries.
CREATE FUNCTION cdviz._link_rework_causes(causes bigint[])
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
INSERT INTO cdviz.rework_links (cause_event_id, since, reason, subject, subject_id, event_id)
SELECT c.event_id, c."timestamp", 'link to ' || c.subject, l.subject,
	   CASE WHEN l.subject <> 'service' THEN l.subject_id END,
	   CASE WHEN l.subject = 'service' THEN l.id END
FROM cdviz.rework_causes AS c
JOIN cdviz.event_links AS k ON k.linked_context_id = c.context_id
CROSS JOIN LATERAL (
	SELECT l.subject, l.subject_id, l.id FROM cdviz.cdevents_lake AS l
	WHERE l.id = k.event_id AND l.subject IN ('service', 'artifact', 'change')
	LIMIT 1) AS l
WHERE c.event_id = ANY (causes)
UNION ALL
SELECT c.event_id, c."timestamp", 'chain of ' || c.subject, 'artifact', a.artifact_id, NULL
FROM cdviz.rework_causes AS c
JOIN cdviz.artifact_summaries AS a ON a.chain_id = c.chain_id AND a.packaged_at >= c."timestamp"
WHERE c.event_id = ANY (causes)
UNION ALL
SELECT c.event_id, c."timestamp", 'chain of ' || c.subject, 'change', s.change_id, NULL
FROM cdviz.rework_causes AS c
JOIN cdviz.change_summaries AS s ON s.chain_id = c.chain_id AND s.created_at >= c."timestamp"
WHERE c.event_id = ANY (causes)
ON CONFLICT DO NOTHING
$$;

COMMENT ON FUNCTION cdviz._link_rework_causes(bigint[]) IS
'cdviz: internal, for cdviz._fold_events(): adds to cdviz.rework_links what was stored before these rework causes (lake ids) and is linked to them: the service, artifact and change events whose context.links name them, and the artifacts packaged and changes created in their chains after them';
REVOKE EXECUTE ON FUNCTION cdviz._link_rework_causes(bigint[]) FROM PUBLIC;

-- The lake trigger and the folds.
--
-- cdviz._fold_events() holds the one copy of every fold statement: it folds
-- an array of lake rows into the derived tables (first_deployments,
-- artifact_changes, change_times, event_links, rework_causes,
-- rework_links) and the summaries.  Its callers only say which rows:
--
--   cdviz.lake_maintain()          the rows an insert statement stored (its
--                                  transition table), with summaries
--                                  immediate
--   cdviz.fold_queued_summaries()  the rows of the statements queued in
--                                  cdviz.summary_queue, with summaries
--                                  deferred (the cdviz summaries worker)
--   cdviz.summaries_fold()         the rows of a range of the lake, summaries
--                                  only (cdviz.rebuild_summaries())
--
-- Each caller hands over at most about 10,000 rows at a time, so that memory
-- stays bounded however many rows a statement stored, a queue held or a
-- month of the lake has; the merge rules make any split of the rows into
-- chunks give the same tables.
--
-- Why one trigger and not one per concern: the http worker commits small
-- groups, where each trigger's call (SECURITY DEFINER, search_path) and each
-- statement's executor start-up cost more than the rows they fold; listing
-- the stored subjects first lets a group skip the statements of the
-- subjects it does not hold.

-- The rows of an array of lake rows, as a relation the fold statements read
-- like a table.  Written so that it is inlined into them (LANGUAGE sql,
-- IMMUTABLE, not STRICT, no SET) and streams from the array: unnest() in
-- FROM would copy every row into a tuplestore, and 10,000 rows of payload
-- spill to disk.
CREATE FUNCTION cdviz._lake_rows(events cdviz.cdevents_lake[])
RETURNS SETOF cdviz.cdevents_lake
LANGUAGE sql IMMUTABLE
AS $$ SELECT (u.r).* FROM (SELECT pg_catalog.unnest(events) AS r) AS u $$;

COMMENT ON FUNCTION cdviz._lake_rows(cdviz.cdevents_lake[]) IS
'cdviz: internal, for cdviz._fold_events(): the lake rows of an array, inlined into the statement that reads them';

-- How the columns every summary ends with fold, for any summary table: s is
-- the stored row, x the one proposed (excluded).  chain_id and
-- last_event_at take the max, first_event_at the min, last_event_id and
-- last_predicate those of the latest event by (timestamp, lake id),
-- event_count the sum.  A statement assigns them in one item,
--   (chain_id, ..., event_count) = ROW((cdviz._summary_merge(s, excluded)).*)
-- and the function is inlined there (LANGUAGE sql, IMMUTABLE, not STRICT,
-- no SET, one ROW() of a named type): each field becomes its own
-- expression over the two rows' columns, so an update runs the same
-- expressions as if written out, with no call and no row value built.
-- (Declared with OUT parameters instead of a named type, it would not be
-- inlined, and would be called once per field.)
-- Only the extension's owner may execute it, as the fold runs (the
-- planner inlines a function only for a user who may execute it).
CREATE FUNCTION cdviz._summary_merge(s anyelement, x anyelement)
RETURNS cdviz._summary_columns
LANGUAGE sql IMMUTABLE
AS $$
SELECT ROW(GREATEST(s.chain_id, x.chain_id),
		   LEAST(s.first_event_at, x.first_event_at),
		   GREATEST(s.last_event_at, x.last_event_at),
		   CASE WHEN (x.last_event_at, x.last_event_id) > (s.last_event_at, s.last_event_id)
				THEN x.last_event_id ELSE s.last_event_id END,
		   CASE WHEN (x.last_event_at, x.last_event_id) > (s.last_event_at, s.last_event_id)
				THEN x.last_predicate ELSE s.last_predicate END,
		   s.event_count + x.event_count)::cdviz._summary_columns
$$;

COMMENT ON FUNCTION cdviz._summary_merge(anyelement, anyelement) IS
'cdviz: internal, for cdviz._fold_events(): the columns every summary table ends with, folded from a stored row and a proposed one; inlined into the statement';
REVOKE EXECUTE ON FUNCTION cdviz._summary_merge(anyelement, anyelement) FROM PUBLIC;

-- One INSERT ... ON CONFLICT DO UPDATE per table, grouped per key (a run's
-- queued/started/finished in one chunk are one row write), no loop.  Each
-- statement runs only when the rows hold its subject (named in the
-- statement's own WHERE clause): for the small groups of the http worker
-- most statements have nothing to do, and each would still cost its
-- executor start-up and locks.
--
-- Its statements are planned once per session and kept (generic plans),
-- as the trigger's own are: a custom plan would be made at every call, with
-- the whole array as a constant, and took more than half the time of a
-- fold of 10,000 rows.  Seq scans are as its caller runs: off under the
-- trigger, on under the fold of queued events (see cdviz.lake_maintain()).
-- Not SECURITY DEFINER: its callers are, or are superuser-only, and nobody
-- else may execute it.
CREATE FUNCTION cdviz._fold_events(events cdviz.cdevents_lake[], derived boolean)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	subjects text[];
	has_links boolean;
BEGIN
	SELECT array_agg(DISTINCT e.subject), coalesce(bool_or(e.payload -> 'context' ? 'links'), false)
	INTO subjects, has_links
	FROM cdviz._lake_rows(events) AS e;
	IF subjects IS NULL THEN
		RETURN;
	END IF;

	-- what is derived from the lake besides the summaries: lineage, artifact
	-- changes, change times, first deployments (not refolded by
	-- cdviz.rebuild_summaries(), which empties only the summaries)
	IF derived THEN
		IF subjects @> '{artifact}' THEN
			INSERT INTO cdviz.artifact_changes AS a
				(artifact_id, change_id, change_source, packaged_at, event_id)
			SELECT DISTINCT ON (e.subject_id)
				   e.subject_id, e.payload #>> '{subject,content,change,id}',
				   e.payload #>> '{subject,content,change,source}', e."timestamp", e.id
			FROM cdviz._lake_rows(events) e
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
		END IF;

		IF subjects @> '{change}' THEN
			INSERT INTO cdviz.change_times AS c (change_id, created_at, merged_at)
			SELECT e.subject_id,
				   min(e."timestamp") FILTER (WHERE e.predicate = 'created'),
				   min(e."timestamp") FILTER (WHERE e.predicate = 'merged')
			FROM cdviz._lake_rows(events) e
			WHERE e.subject = 'change' AND e.predicate IN ('created', 'merged')
			  AND e.subject_id IS NOT NULL
			GROUP BY e.subject_id
			ON CONFLICT (change_id) DO UPDATE
			SET created_at = LEAST(c.created_at, excluded.created_at),
				merged_at = LEAST(c.merged_at, excluded.merged_at)
			WHERE excluded.created_at < c.created_at OR excluded.merged_at < c.merged_at
			   OR (c.created_at IS NULL AND excluded.created_at IS NOT NULL)
			   OR (c.merged_at IS NULL AND excluded.merged_at IS NOT NULL);
		END IF;

		-- New first deployments take the change time known so far; the
		-- statement below catches up when packaging or change events come later.
		IF subjects @> '{service}' THEN
			INSERT INTO cdviz.first_deployments AS f
				(environment_id, artifact_id, service_id, deployed_at, event_id, change_id, changed_at)
			SELECT d.environment_id, d.artifact_id, d.service_id, d.deployed_at, d.event_id,
				   a.change_id, coalesce(c.merged_at, c.created_at)
			FROM (SELECT DISTINCT ON (d.environment_id, d.artifact_id) d.*
				  FROM (SELECT e.payload #>> '{subject,content,environment,id}' AS environment_id,
							   e.payload #>> '{subject,content,artifactId}' AS artifact_id,
							   e.subject_id AS service_id, e."timestamp" AS deployed_at, e.id AS event_id
						FROM cdviz._lake_rows(events) e
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

		IF subjects && '{artifact,change}' THEN
			-- Packaging or change events of this statement: refresh the change of
			-- the first deployments of the artifacts they concern.
			UPDATE cdviz.first_deployments f
			SET change_id = a.change_id, changed_at = coalesce(c.merged_at, c.created_at)
			FROM cdviz.artifact_changes a
			LEFT JOIN cdviz.change_times c ON c.change_id = a.change_id
			WHERE f.artifact_id = a.artifact_id
			  AND a.artifact_id IN (SELECT e.subject_id FROM cdviz._lake_rows(events) e
									WHERE e.subject = 'artifact' AND e.predicate = 'packaged'
									UNION
									SELECT a2.artifact_id FROM cdviz.artifact_changes a2
									WHERE a2.change_id IN (SELECT e.subject_id FROM cdviz._lake_rows(events) e
														   WHERE e.subject = 'change'
															 AND e.predicate IN ('created', 'merged')))
			  AND (f.change_id, f.changed_at) IS DISTINCT FROM (a.change_id, coalesce(c.merged_at, c.created_at));
		END IF;

		-- what can make a deployment rework (cdviz.dora_rework): every
		-- incident event, and the ticket events that name a bug type
		IF subjects && '{incident,ticket}' THEN
			INSERT INTO cdviz.rework_causes (event_id, "timestamp", context_id, chain_id, subject, subject_id)
			SELECT e.id, e."timestamp", e.context_id, e.chain_id, e.subject, e.subject_id
			FROM cdviz._lake_rows(events) e
			WHERE (e.subject = 'incident' AND e.predicate IN ('detected', 'reported', 'resolved'))
			   OR (e.subject = 'ticket' AND e.predicate IN ('created', 'updated', 'closed')
				   AND e.payload #>> '{subject,content,ticketType}' ~* 'bug')
			ON CONFLICT (event_id) DO NOTHING;
		END IF;

		IF has_links THEN
			INSERT INTO cdviz.event_links (event_id, context_id, linked_context_id, link_type, link_kind, tags)
			SELECT e.id, e.context_id,
				   coalesce(k.link #>> '{target,contextId}', k.link #>> '{from,contextId}', k.link #>> '{to,contextId}'),
				   k.link ->> 'linkType', k.link ->> 'linkKind', k.link -> 'tags'
			FROM cdviz._lake_rows(events) e
			CROSS JOIN LATERAL jsonb_array_elements(e.payload #> '{context,links}') AS k(link)
			WHERE jsonb_typeof(e.payload #> '{context,links}') = 'array'
			  AND jsonb_typeof(k.link) = 'object'
			  AND coalesce(k.link #>> '{target,contextId}', k.link #>> '{from,contextId}', k.link #>> '{to,contextId}') IS NOT NULL;
		END IF;

		-- What is linked to a rework cause, whichever came first: the causes
		-- of these rows with what was stored before them, then these rows'
		-- links, artifacts and changes with the causes stored before them
		-- (or just above).
		IF subjects && '{incident,ticket}' THEN
			PERFORM cdviz._link_rework_causes(ARRAY(SELECT e.id FROM cdviz._lake_rows(events) e
													WHERE e.subject IN ('incident', 'ticket')));
		END IF;
		IF subjects && '{service,artifact,change}' THEN
			INSERT INTO cdviz.rework_links (cause_event_id, since, reason, subject, subject_id, event_id)
			SELECT c.event_id, c."timestamp", 'link to ' || c.subject, e.subject,
				   CASE WHEN e.subject <> 'service' THEN e.subject_id END,
				   CASE WHEN e.subject = 'service' THEN e.id END
			FROM cdviz._lake_rows(events) e
			JOIN cdviz.event_links k ON k.context_id = e.context_id AND k.event_id = e.id
			JOIN cdviz.rework_causes c ON c.context_id = k.linked_context_id
			WHERE has_links AND e.subject IN ('service', 'artifact', 'change')
			UNION ALL
			SELECT c.event_id, c."timestamp", 'chain of ' || c.subject, e.subject, e.subject_id, NULL
			FROM cdviz._lake_rows(events) e
			JOIN cdviz.rework_causes c ON c.chain_id = e.chain_id AND c."timestamp" <= e."timestamp"
			WHERE ((e.subject = 'artifact' AND e.predicate = 'packaged')
				   OR (e.subject = 'change' AND e.predicate = 'created'))
			  AND e.subject_id IS NOT NULL
			ON CONFLICT DO NOTHING;
		END IF;
	END IF;

	IF subjects @> '{pipelinerun}' THEN
		INSERT INTO cdviz.pipeline_run_summaries AS s
			(pipeline_run_id, source, pipeline_name, queued_at, started_at, finished_at, outcome, errors,
			 uri, chain_id, first_event_at, last_event_at, last_event_id, last_predicate, event_count)
		SELECT e.subject_id,
			   max(e.payload #>> '{subject,source}'),
			   max(e.payload #>> '{subject,content,pipelineName}'),
			   min(e."timestamp") FILTER (WHERE e.predicate = 'queued'),
			   min(e."timestamp") FILTER (WHERE e.predicate = 'started'),
			   max(e."timestamp") FILTER (WHERE e.predicate = 'finished'),
			   max(e.payload #>> '{subject,content,outcome}') FILTER (WHERE e.predicate = 'finished'),
			   max(e.payload #>> '{subject,content,errors}') FILTER (WHERE e.predicate = 'finished'),
			   max(coalesce(e.payload #>> '{subject,content,uri}', e.payload #>> '{subject,content,url}')),
			   max(e.chain_id),
			   min(e."timestamp"), max(e."timestamp"),
			   (array_agg(e.id ORDER BY e."timestamp" DESC, e.id DESC))[1],
			   (array_agg(e.predicate ORDER BY e."timestamp" DESC, e.id DESC))[1],
			   count(*)
		FROM cdviz._lake_rows(events) AS e
		WHERE e.subject = 'pipelinerun' AND e.predicate IN ('queued', 'started', 'finished')
		  AND e.subject_id IS NOT NULL
		GROUP BY e.subject_id
		ON CONFLICT (pipeline_run_id) DO UPDATE SET
			source = GREATEST(s.source, excluded.source),
			pipeline_name = GREATEST(s.pipeline_name, excluded.pipeline_name),
			queued_at = LEAST(s.queued_at, excluded.queued_at),
			started_at = LEAST(s.started_at, excluded.started_at),
			finished_at = GREATEST(s.finished_at, excluded.finished_at),
			outcome = GREATEST(s.outcome, excluded.outcome),
			errors = GREATEST(s.errors, excluded.errors),
			uri = GREATEST(s.uri, excluded.uri),
			(chain_id, first_event_at, last_event_at, last_event_id, last_predicate, event_count)
				= ROW((cdviz._summary_merge(s, excluded)).*);
	END IF;

	IF subjects @> '{taskrun}' THEN
		INSERT INTO cdviz.task_run_summaries AS s
			(task_run_id, source, task_name, pipeline_run_id, started_at, finished_at, outcome, errors,
			 uri, chain_id, first_event_at, last_event_at, last_event_id, last_predicate, event_count)
		SELECT e.subject_id,
			   max(e.payload #>> '{subject,source}'),
			   max(e.payload #>> '{subject,content,taskName}'),
			   max(e.payload #>> '{subject,content,pipelineRun,id}'),
			   min(e."timestamp") FILTER (WHERE e.predicate = 'started'),
			   max(e."timestamp") FILTER (WHERE e.predicate = 'finished'),
			   max(e.payload #>> '{subject,content,outcome}') FILTER (WHERE e.predicate = 'finished'),
			   max(e.payload #>> '{subject,content,errors}') FILTER (WHERE e.predicate = 'finished'),
			   max(coalesce(e.payload #>> '{subject,content,uri}', e.payload #>> '{subject,content,url}')),
			   max(e.chain_id),
			   min(e."timestamp"), max(e."timestamp"),
			   (array_agg(e.id ORDER BY e."timestamp" DESC, e.id DESC))[1],
			   (array_agg(e.predicate ORDER BY e."timestamp" DESC, e.id DESC))[1],
			   count(*)
		FROM cdviz._lake_rows(events) AS e
		WHERE e.subject = 'taskrun' AND e.predicate IN ('started', 'finished')
		  AND e.subject_id IS NOT NULL
		GROUP BY e.subject_id
		ON CONFLICT (task_run_id) DO UPDATE SET
			source = GREATEST(s.source, excluded.source),
			task_name = GREATEST(s.task_name, excluded.task_name),
			pipeline_run_id = GREATEST(s.pipeline_run_id, excluded.pipeline_run_id),
			started_at = LEAST(s.started_at, excluded.started_at),
			finished_at = GREATEST(s.finished_at, excluded.finished_at),
			outcome = GREATEST(s.outcome, excluded.outcome),
			errors = GREATEST(s.errors, excluded.errors),
			uri = GREATEST(s.uri, excluded.uri),
			(chain_id, first_event_at, last_event_at, last_event_id, last_predicate, event_count)
				= ROW((cdviz._summary_merge(s, excluded)).*);
	END IF;

	IF subjects @> '{build}' THEN
		INSERT INTO cdviz.build_summaries AS s
			(build_id, source, queued_at, started_at, finished_at, artifact_id, chain_id,
			 first_event_at, last_event_at, last_event_id, last_predicate, event_count)
		SELECT e.subject_id,
			   max(e.payload #>> '{subject,source}'),
			   min(e."timestamp") FILTER (WHERE e.predicate = 'queued'),
			   min(e."timestamp") FILTER (WHERE e.predicate = 'started'),
			   max(e."timestamp") FILTER (WHERE e.predicate = 'finished'),
			   max(e.payload #>> '{subject,content,artifactId}') FILTER (WHERE e.predicate = 'finished'),
			   max(e.chain_id),
			   min(e."timestamp"), max(e."timestamp"),
			   (array_agg(e.id ORDER BY e."timestamp" DESC, e.id DESC))[1],
			   (array_agg(e.predicate ORDER BY e."timestamp" DESC, e.id DESC))[1],
			   count(*)
		FROM cdviz._lake_rows(events) AS e
		WHERE e.subject = 'build' AND e.predicate IN ('queued', 'started', 'finished')
		  AND e.subject_id IS NOT NULL
		GROUP BY e.subject_id
		ON CONFLICT (build_id) DO UPDATE SET
			source = GREATEST(s.source, excluded.source),
			queued_at = LEAST(s.queued_at, excluded.queued_at),
			started_at = LEAST(s.started_at, excluded.started_at),
			finished_at = GREATEST(s.finished_at, excluded.finished_at),
			artifact_id = GREATEST(s.artifact_id, excluded.artifact_id),
			(chain_id, first_event_at, last_event_at, last_event_id, last_predicate, event_count)
				= ROW((cdviz._summary_merge(s, excluded)).*);
	END IF;

	IF subjects @> '{branch}' THEN
		INSERT INTO cdviz.branch_summaries AS s
			(branch_id, source, repository_id, repository_source, created_at, deleted_at, chain_id,
			 first_event_at, last_event_at, last_event_id, last_predicate, event_count)
		SELECT e.subject_id,
			   max(e.payload #>> '{subject,source}'),
			   max(e.payload #>> '{subject,content,repository,id}'),
			   max(e.payload #>> '{subject,content,repository,source}'),
			   min(e."timestamp") FILTER (WHERE e.predicate = 'created'),
			   max(e."timestamp") FILTER (WHERE e.predicate = 'deleted'),
			   max(e.chain_id),
			   min(e."timestamp"), max(e."timestamp"),
			   (array_agg(e.id ORDER BY e."timestamp" DESC, e.id DESC))[1],
			   (array_agg(e.predicate ORDER BY e."timestamp" DESC, e.id DESC))[1],
			   count(*)
		FROM cdviz._lake_rows(events) AS e
		WHERE e.subject = 'branch' AND e.predicate IN ('created', 'deleted')
		  AND e.subject_id IS NOT NULL
		GROUP BY e.subject_id
		ON CONFLICT (branch_id) DO UPDATE SET
			source = GREATEST(s.source, excluded.source),
			repository_id = GREATEST(s.repository_id, excluded.repository_id),
			repository_source = GREATEST(s.repository_source, excluded.repository_source),
			created_at = LEAST(s.created_at, excluded.created_at),
			deleted_at = GREATEST(s.deleted_at, excluded.deleted_at),
			(chain_id, first_event_at, last_event_at, last_event_id, last_predicate, event_count)
				= ROW((cdviz._summary_merge(s, excluded)).*);
	END IF;

	IF subjects @> '{testcaserun}' THEN
		INSERT INTO cdviz.test_case_run_summaries AS s
			(test_case_run_id, source, test_case_id, test_case_name, test_case_version, test_case_type,
			 test_case_uri, test_suite_run_id, environment_id, trigger_type, trigger_uri,
			 queued_at, started_at, finished_at, skipped_at, outcome, severity, reason, chain_id,
			 first_event_at, last_event_at, last_event_id, last_predicate, event_count)
		SELECT e.subject_id,
			   max(e.payload #>> '{subject,source}'),
			   max(e.payload #>> '{subject,content,testCase,id}'),
			   max(e.payload #>> '{subject,content,testCase,name}'),
			   max(e.payload #>> '{subject,content,testCase,version}'),
			   max(e.payload #>> '{subject,content,testCase,type}'),
			   max(coalesce(e.payload #>> '{subject,content,testCase,uri}', e.payload #>> '{subject,content,testCase,url}')),
			   max(e.payload #>> '{subject,content,testSuiteRun,id}'),
			   max(e.payload #>> '{subject,content,environment,id}'),
			   max(e.payload #>> '{subject,content,trigger,type}'),
			   max(e.payload #>> '{subject,content,trigger,uri}'),
			   min(e."timestamp") FILTER (WHERE e.predicate = 'queued'),
			   min(e."timestamp") FILTER (WHERE e.predicate = 'started'),
			   max(e."timestamp") FILTER (WHERE e.predicate = 'finished'),
			   max(e."timestamp") FILTER (WHERE e.predicate = 'skipped'),
			   max(e.payload #>> '{subject,content,outcome}') FILTER (WHERE e.predicate = 'finished'),
			   max(e.payload #>> '{subject,content,severity}') FILTER (WHERE e.predicate = 'finished'),
			   max(e.payload #>> '{subject,content,reason}') FILTER (WHERE e.predicate IN ('finished', 'skipped')),
			   max(e.chain_id),
			   min(e."timestamp"), max(e."timestamp"),
			   (array_agg(e.id ORDER BY e."timestamp" DESC, e.id DESC))[1],
			   (array_agg(e.predicate ORDER BY e."timestamp" DESC, e.id DESC))[1],
			   count(*)
		FROM cdviz._lake_rows(events) AS e
		WHERE e.subject = 'testcaserun' AND e.predicate IN ('queued', 'started', 'finished', 'skipped')
		  AND e.subject_id IS NOT NULL
		GROUP BY e.subject_id
		ON CONFLICT (test_case_run_id) DO UPDATE SET
			source = GREATEST(s.source, excluded.source),
			test_case_id = GREATEST(s.test_case_id, excluded.test_case_id),
			test_case_name = GREATEST(s.test_case_name, excluded.test_case_name),
			test_case_version = GREATEST(s.test_case_version, excluded.test_case_version),
			test_case_type = GREATEST(s.test_case_type, excluded.test_case_type),
			test_case_uri = GREATEST(s.test_case_uri, excluded.test_case_uri),
			test_suite_run_id = GREATEST(s.test_suite_run_id, excluded.test_suite_run_id),
			environment_id = GREATEST(s.environment_id, excluded.environment_id),
			trigger_type = GREATEST(s.trigger_type, excluded.trigger_type),
			trigger_uri = GREATEST(s.trigger_uri, excluded.trigger_uri),
			queued_at = LEAST(s.queued_at, excluded.queued_at),
			started_at = LEAST(s.started_at, excluded.started_at),
			finished_at = GREATEST(s.finished_at, excluded.finished_at),
			skipped_at = GREATEST(s.skipped_at, excluded.skipped_at),
			outcome = GREATEST(s.outcome, excluded.outcome),
			severity = GREATEST(s.severity, excluded.severity),
			reason = GREATEST(s.reason, excluded.reason),
			(chain_id, first_event_at, last_event_at, last_event_id, last_predicate, event_count)
				= ROW((cdviz._summary_merge(s, excluded)).*);
	END IF;

	IF subjects @> '{testsuiterun}' THEN
		INSERT INTO cdviz.test_suite_run_summaries AS s
			(test_suite_run_id, source, test_suite_id, test_suite_name, test_suite_version, test_suite_uri,
			 environment_id, trigger_type, trigger_uri, queued_at, started_at, finished_at, outcome,
			 severity, reason, chain_id, first_event_at, last_event_at, last_event_id, last_predicate,
			 event_count)
		SELECT e.subject_id,
			   max(e.payload #>> '{subject,source}'),
			   max(e.payload #>> '{subject,content,testSuite,id}'),
			   max(e.payload #>> '{subject,content,testSuite,name}'),
			   max(e.payload #>> '{subject,content,testSuite,version}'),
			   max(coalesce(e.payload #>> '{subject,content,testSuite,uri}', e.payload #>> '{subject,content,testSuite,url}')),
			   max(e.payload #>> '{subject,content,environment,id}'),
			   max(e.payload #>> '{subject,content,trigger,type}'),
			   max(e.payload #>> '{subject,content,trigger,uri}'),
			   min(e."timestamp") FILTER (WHERE e.predicate = 'queued'),
			   min(e."timestamp") FILTER (WHERE e.predicate = 'started'),
			   max(e."timestamp") FILTER (WHERE e.predicate = 'finished'),
			   max(e.payload #>> '{subject,content,outcome}') FILTER (WHERE e.predicate = 'finished'),
			   max(e.payload #>> '{subject,content,severity}') FILTER (WHERE e.predicate = 'finished'),
			   max(e.payload #>> '{subject,content,reason}') FILTER (WHERE e.predicate = 'finished'),
			   max(e.chain_id),
			   min(e."timestamp"), max(e."timestamp"),
			   (array_agg(e.id ORDER BY e."timestamp" DESC, e.id DESC))[1],
			   (array_agg(e.predicate ORDER BY e."timestamp" DESC, e.id DESC))[1],
			   count(*)
		FROM cdviz._lake_rows(events) AS e
		WHERE e.subject = 'testsuiterun' AND e.predicate IN ('queued', 'started', 'finished')
		  AND e.subject_id IS NOT NULL
		GROUP BY e.subject_id
		ON CONFLICT (test_suite_run_id) DO UPDATE SET
			source = GREATEST(s.source, excluded.source),
			test_suite_id = GREATEST(s.test_suite_id, excluded.test_suite_id),
			test_suite_name = GREATEST(s.test_suite_name, excluded.test_suite_name),
			test_suite_version = GREATEST(s.test_suite_version, excluded.test_suite_version),
			test_suite_uri = GREATEST(s.test_suite_uri, excluded.test_suite_uri),
			environment_id = GREATEST(s.environment_id, excluded.environment_id),
			trigger_type = GREATEST(s.trigger_type, excluded.trigger_type),
			trigger_uri = GREATEST(s.trigger_uri, excluded.trigger_uri),
			queued_at = LEAST(s.queued_at, excluded.queued_at),
			started_at = LEAST(s.started_at, excluded.started_at),
			finished_at = GREATEST(s.finished_at, excluded.finished_at),
			outcome = GREATEST(s.outcome, excluded.outcome),
			severity = GREATEST(s.severity, excluded.severity),
			reason = GREATEST(s.reason, excluded.reason),
			(chain_id, first_event_at, last_event_at, last_event_id, last_predicate, event_count)
				= ROW((cdviz._summary_merge(s, excluded)).*);
	END IF;

	IF subjects @> '{artifact}' THEN
		INSERT INTO cdviz.artifact_summaries AS s
			(artifact_id, source, packaged_at, signed_at, published_at, first_downloaded_at,
			 last_downloaded_at, download_count, deleted_at, change_id, change_source, sbom_uri,
			 signature, last_user, last_user_at, last_user_event_id, chain_id,
			 first_event_at, last_event_at, last_event_id, last_predicate, event_count)
		SELECT e.subject_id,
			   max(e.payload #>> '{subject,source}'),
			   min(e."timestamp") FILTER (WHERE e.predicate = 'packaged'),
			   min(e."timestamp") FILTER (WHERE e.predicate = 'signed'),
			   min(e."timestamp") FILTER (WHERE e.predicate = 'published'),
			   min(e."timestamp") FILTER (WHERE e.predicate = 'downloaded'),
			   max(e."timestamp") FILTER (WHERE e.predicate = 'downloaded'),
			   count(*) FILTER (WHERE e.predicate = 'downloaded'),
			   max(e."timestamp") FILTER (WHERE e.predicate = 'deleted'),
			   max(e.payload #>> '{subject,content,change,id}') FILTER (WHERE e.predicate = 'packaged'),
			   max(e.payload #>> '{subject,content,change,source}') FILTER (WHERE e.predicate = 'packaged'),
			   max(e.payload #>> '{subject,content,sbom,uri}'),
			   max(e.payload #>> '{subject,content,signature}') FILTER (WHERE e.predicate = 'signed'),
			   (array_agg((e.payload #>> '{subject,content,user}') ORDER BY e."timestamp" DESC, e.id DESC) FILTER (WHERE (e.payload #>> '{subject,content,user}') IS NOT NULL))[1],
			   max(e."timestamp") FILTER (WHERE (e.payload #>> '{subject,content,user}') IS NOT NULL),
			   (array_agg(e.id ORDER BY e."timestamp" DESC, e.id DESC) FILTER (WHERE (e.payload #>> '{subject,content,user}') IS NOT NULL))[1],
			   max(e.chain_id),
			   min(e."timestamp"), max(e."timestamp"),
			   (array_agg(e.id ORDER BY e."timestamp" DESC, e.id DESC))[1],
			   (array_agg(e.predicate ORDER BY e."timestamp" DESC, e.id DESC))[1],
			   count(*)
		FROM cdviz._lake_rows(events) AS e
		WHERE e.subject = 'artifact'
		  AND e.predicate IN ('packaged', 'signed', 'published', 'downloaded', 'deleted')
		  AND e.subject_id IS NOT NULL
		GROUP BY e.subject_id
		ON CONFLICT (artifact_id) DO UPDATE SET
			source = GREATEST(s.source, excluded.source),
			packaged_at = LEAST(s.packaged_at, excluded.packaged_at),
			signed_at = LEAST(s.signed_at, excluded.signed_at),
			published_at = LEAST(s.published_at, excluded.published_at),
			first_downloaded_at = LEAST(s.first_downloaded_at, excluded.first_downloaded_at),
			last_downloaded_at = GREATEST(s.last_downloaded_at, excluded.last_downloaded_at),
			download_count = s.download_count + excluded.download_count,
			deleted_at = GREATEST(s.deleted_at, excluded.deleted_at),
			change_id = GREATEST(s.change_id, excluded.change_id),
			change_source = GREATEST(s.change_source, excluded.change_source),
			sbom_uri = GREATEST(s.sbom_uri, excluded.sbom_uri),
			signature = GREATEST(s.signature, excluded.signature),
			last_user = CASE WHEN (excluded.last_user_at, excluded.last_user_event_id) > (s.last_user_at, s.last_user_event_id) OR s.last_user_at IS NULL
						THEN coalesce(excluded.last_user, s.last_user) ELSE s.last_user END,
			last_user_at = GREATEST(s.last_user_at, excluded.last_user_at),
			last_user_event_id = CASE WHEN (excluded.last_user_at, excluded.last_user_event_id) > (s.last_user_at, s.last_user_event_id) OR s.last_user_at IS NULL
						THEN coalesce(excluded.last_user_event_id, s.last_user_event_id) ELSE s.last_user_event_id END,
			(chain_id, first_event_at, last_event_at, last_event_id, last_predicate, event_count)
				= ROW((cdviz._summary_merge(s, excluded)).*);
	END IF;

	IF subjects @> '{change}' THEN
		INSERT INTO cdviz.change_summaries AS s
			(change_id, source, repository_id, repository_source, description, description_at,
			 description_event_id, created_at, first_reviewed_at, review_count, last_updated_at,
			 merged_at, abandoned_at, chain_id,
			 first_event_at, last_event_at, last_event_id, last_predicate, event_count)
		SELECT e.subject_id,
			   max(e.payload #>> '{subject,source}'),
			   max(e.payload #>> '{subject,content,repository,id}'),
			   max(e.payload #>> '{subject,content,repository,source}'),
			   (array_agg((e.payload #>> '{subject,content,description}') ORDER BY e."timestamp" DESC, e.id DESC) FILTER (WHERE (e.payload #>> '{subject,content,description}') IS NOT NULL))[1],
			   max(e."timestamp") FILTER (WHERE (e.payload #>> '{subject,content,description}') IS NOT NULL),
			   (array_agg(e.id ORDER BY e."timestamp" DESC, e.id DESC) FILTER (WHERE (e.payload #>> '{subject,content,description}') IS NOT NULL))[1],
			   min(e."timestamp") FILTER (WHERE e.predicate = 'created'),
			   min(e."timestamp") FILTER (WHERE e.predicate = 'reviewed'),
			   count(*) FILTER (WHERE e.predicate = 'reviewed'),
			   max(e."timestamp") FILTER (WHERE e.predicate = 'updated'),
			   min(e."timestamp") FILTER (WHERE e.predicate = 'merged'),
			   min(e."timestamp") FILTER (WHERE e.predicate = 'abandoned'),
			   max(e.chain_id),
			   min(e."timestamp"), max(e."timestamp"),
			   (array_agg(e.id ORDER BY e."timestamp" DESC, e.id DESC))[1],
			   (array_agg(e.predicate ORDER BY e."timestamp" DESC, e.id DESC))[1],
			   count(*)
		FROM cdviz._lake_rows(events) AS e
		WHERE e.subject = 'change'
		  AND e.predicate IN ('created', 'reviewed', 'updated', 'merged', 'abandoned')
		  AND e.subject_id IS NOT NULL
		GROUP BY e.subject_id
		ON CONFLICT (change_id) DO UPDATE SET
			source = GREATEST(s.source, excluded.source),
			repository_id = GREATEST(s.repository_id, excluded.repository_id),
			repository_source = GREATEST(s.repository_source, excluded.repository_source),
			description = CASE WHEN (excluded.description_at, excluded.description_event_id) > (s.description_at, s.description_event_id) OR s.description_at IS NULL
						THEN coalesce(excluded.description, s.description) ELSE s.description END,
			description_at = GREATEST(s.description_at, excluded.description_at),
			description_event_id = CASE WHEN (excluded.description_at, excluded.description_event_id) > (s.description_at, s.description_event_id) OR s.description_at IS NULL
						THEN coalesce(excluded.description_event_id, s.description_event_id) ELSE s.description_event_id END,
			created_at = LEAST(s.created_at, excluded.created_at),
			first_reviewed_at = LEAST(s.first_reviewed_at, excluded.first_reviewed_at),
			review_count = s.review_count + excluded.review_count,
			last_updated_at = GREATEST(s.last_updated_at, excluded.last_updated_at),
			merged_at = LEAST(s.merged_at, excluded.merged_at),
			abandoned_at = LEAST(s.abandoned_at, excluded.abandoned_at),
			(chain_id, first_event_at, last_event_at, last_event_id, last_predicate, event_count)
				= ROW((cdviz._summary_merge(s, excluded)).*);
	END IF;

	IF subjects @> '{incident}' THEN
		INSERT INTO cdviz.incident_summaries AS s
			(incident_id, source, environment_id, service_id, artifact_id, description, description_at,
			 description_event_id, ticket_uri, detected_at, reported_at, resolved_at, chain_id,
			 first_event_at, last_event_at, last_event_id, last_predicate, event_count)
		SELECT e.subject_id,
			   max(e.payload #>> '{subject,source}'),
			   max(e.payload #>> '{subject,content,environment,id}'),
			   max(e.payload #>> '{subject,content,service,id}'),
			   max(e.payload #>> '{subject,content,artifactId}'),
			   (array_agg((e.payload #>> '{subject,content,description}') ORDER BY e."timestamp" DESC, e.id DESC) FILTER (WHERE (e.payload #>> '{subject,content,description}') IS NOT NULL))[1],
			   max(e."timestamp") FILTER (WHERE (e.payload #>> '{subject,content,description}') IS NOT NULL),
			   (array_agg(e.id ORDER BY e."timestamp" DESC, e.id DESC) FILTER (WHERE (e.payload #>> '{subject,content,description}') IS NOT NULL))[1],
			   max(e.payload #>> '{subject,content,ticketURI}'),
			   min(e."timestamp") FILTER (WHERE e.predicate = 'detected'),
			   min(e."timestamp") FILTER (WHERE e.predicate = 'reported'),
			   max(e."timestamp") FILTER (WHERE e.predicate = 'resolved'),
			   max(e.chain_id),
			   min(e."timestamp"), max(e."timestamp"),
			   (array_agg(e.id ORDER BY e."timestamp" DESC, e.id DESC))[1],
			   (array_agg(e.predicate ORDER BY e."timestamp" DESC, e.id DESC))[1],
			   count(*)
		FROM cdviz._lake_rows(events) AS e
		WHERE e.subject = 'incident' AND e.predicate IN ('detected', 'reported', 'resolved')
		  AND e.subject_id IS NOT NULL
		GROUP BY e.subject_id
		ON CONFLICT (incident_id) DO UPDATE SET
			source = GREATEST(s.source, excluded.source),
			environment_id = GREATEST(s.environment_id, excluded.environment_id),
			service_id = GREATEST(s.service_id, excluded.service_id),
			artifact_id = GREATEST(s.artifact_id, excluded.artifact_id),
			description = CASE WHEN (excluded.description_at, excluded.description_event_id) > (s.description_at, s.description_event_id) OR s.description_at IS NULL
						THEN coalesce(excluded.description, s.description) ELSE s.description END,
			description_at = GREATEST(s.description_at, excluded.description_at),
			description_event_id = CASE WHEN (excluded.description_at, excluded.description_event_id) > (s.description_at, s.description_event_id) OR s.description_at IS NULL
						THEN coalesce(excluded.description_event_id, s.description_event_id) ELSE s.description_event_id END,
			ticket_uri = GREATEST(s.ticket_uri, excluded.ticket_uri),
			detected_at = LEAST(s.detected_at, excluded.detected_at),
			reported_at = LEAST(s.reported_at, excluded.reported_at),
			resolved_at = GREATEST(s.resolved_at, excluded.resolved_at),
			(chain_id, first_event_at, last_event_at, last_event_id, last_predicate, event_count)
				= ROW((cdviz._summary_merge(s, excluded)).*);
	END IF;

	IF subjects @> '{testcaserun}' THEN
		INSERT INTO cdviz.test_case_outcomes_daily AS s (day, test_case, outcome, runs, last_at, reason)
		SELECT date_bin('1 day', e."timestamp", timestamptz '2000-01-01 00:00+00'),
			   coalesce(e.payload #>> '{subject,content,testCase,name}', e.payload #>> '{subject,content,testCase,id}'),
			   CASE WHEN e.predicate = 'skipped' THEN 'skipped'
					ELSE cdviz.normalize_outcome(e.payload #>> '{subject,content,outcome}') END,
			   count(*), max(e."timestamp"), max(e.payload #>> '{subject,content,reason}')
		FROM cdviz._lake_rows(events) AS e
		WHERE e.subject = 'testcaserun' AND e.predicate IN ('finished', 'skipped')
		GROUP BY 1, 2, 3
		ON CONFLICT (day, test_case, outcome) DO UPDATE SET
			runs = s.runs + excluded.runs,
			last_at = GREATEST(s.last_at, excluded.last_at),
			reason = GREATEST(s.reason, excluded.reason);
	END IF;

	INSERT INTO cdviz.event_counts_hourly AS s
		(hour, type, context_source, spec_version, subject, predicate, events, first_at, last_at)
	SELECT date_bin('1 hour', e."timestamp", timestamptz '2000-01-01 00:00+00'), e.type,
		   e.context_source, e.spec_version, max(e.subject), max(e.predicate),
		   count(*), min(e."timestamp"), max(e."timestamp")
	FROM cdviz._lake_rows(events) AS e
	GROUP BY 1, 2, 3, 4
	ON CONFLICT (hour, type, context_source, spec_version) DO UPDATE SET
		events = s.events + excluded.events,
		first_at = LEAST(s.first_at, excluded.first_at),
		last_at = GREATEST(s.last_at, excluded.last_at);
END
$$;

COMMENT ON FUNCTION cdviz._fold_events(cdviz.cdevents_lake[], boolean) IS
'cdviz: internal: folds the lake rows of events into the summary tables (pipeline/task/test case/test suite run, build, artifact, change and incident summaries, event_counts_hourly, test_case_outcomes_daily) and, when derived, into first_deployments, artifact_changes, change_times, event_links, rework_causes and rework_links, grouped per key, one set-based statement per table, each run only when the rows hold its subject; order-independent merge rules (see cdviz.pipeline_run_summaries). Called by cdviz.lake_maintain(), cdviz.fold_queued_summaries() and cdviz.summaries_fold().';

-- The trigger's statements are planned once per session and kept: the
-- http worker keeps its plans for days.  Planned while a table was small or
-- vacuumed empty, a key probe would become a scan of the whole table as it
-- grows.  The trigger reads tables by key only (its batch is a tuplestore
-- or an array, which this does not touch): seq scans off, whatever the
-- statistics said when they were planned, for its own statements and for
-- those of cdviz._fold_events() it calls; large immediate batches pay a
-- little for it.  Not for the fold of queued events: its chunks are
-- thousands of rows, joined best by hash.
CREATE FUNCTION cdviz.lake_maintain()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
AS $$
DECLARE
	deferred boolean := cdviz._summaries_deferred();
	subjects text[];
	n bigint := 0;
	queued bigint;
	ids bigint[];
	stamps timestamptz[];
	r cdviz.cdevents_lake;
	events cdviz.cdevents_lake[] := '{}';
BEGIN
	-- one pass over the stored rows says which parts below have work (and,
	-- deferred, what the queue keeps)
	IF deferred THEN
		-- only service events have work here: no need to sort the subjects
		SELECT CASE WHEN bool_or(e.subject = 'service') THEN '{service}'::text[] ELSE '{}' END,
			   count(*), array_agg(e.id), array_agg(e."timestamp")
		INTO subjects, queued, ids, stamps
		FROM new_events AS e;
		IF queued = 0 THEN
			RETURN NULL;
		END IF;
	ELSE
		SELECT array_agg(DISTINCT e.subject)
		INTO subjects
		FROM new_events AS e;
	END IF;
	IF subjects IS NULL THEN
		RETURN NULL;
	END IF;
	IF subjects @> '{service}' THEN
		-- Writers of one (environment, service) take turns.  Its state is
		-- recomputed below from the history this transaction sees; without
		-- the turns, two transactions storing events of one key at once each
		-- missed the other's uncommitted event, and the one committing last
		-- wrote its view: an older event could overwrite a newer state (TAP
		-- 001_extension.pl).  With a transaction lock per key taken first,
		-- the statements after this one (new snapshots: READ COMMITTED)
		-- see what an earlier holder committed; under REPEATABLE READ the
		-- upsert fails with a serialization error instead, to be retried.
		-- Keys hash into 1,024 locks (the "cdvs" class), so that a batch of
		-- thousands of services does not fill the lock table, taken in one
		-- order: one statement never deadlocks with another.  They are
		-- locks no SQL role can take (src/common/locks.c): a read-only role
		-- holding pg_advisory_lock() on the same keys delays nothing.  (Transactions
		-- of several insert statements can, as they could on the state rows.)
		PERFORM cdviz._lock_keys(1667528307, array_agg(k.h ORDER BY k.h))
		FROM (SELECT DISTINCT pg_catalog.hashtext((e.payload #>> '{subject,content,environment,id}')
												   || E'\n' || e.subject_id) & 1023 AS h
			  FROM new_events e
			  WHERE e.subject = 'service'
				AND e.predicate IN ('deployed', 'upgraded', 'rolledback', 'removed')
				AND e.subject_id IS NOT NULL
				AND e.payload #>> '{subject,content,environment,id}' IS NOT NULL) AS k;

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
			INSERT INTO cdviz.environment_artifacts AS a
				(environment_id, service_id, artifact_id, last_at, last_event_id)
			SELECT DISTINCT ON (1, 2, 3)
				   e.payload #>> '{subject,content,environment,id}', e.subject_id,
				   coalesce(e.payload #>> '{subject,content,artifactId}', ''), e."timestamp", e.id
			FROM new_events e
			WHERE e.subject = 'service'
			  AND e.predicate IN ('deployed', 'upgraded', 'rolledback')
			  AND e.subject_id IS NOT NULL
			  AND e.payload #>> '{subject,content,environment,id}' IS NOT NULL
			ORDER BY 1, 2, 3, e."timestamp" DESC, e.id DESC
			ON CONFLICT (environment_id, service_id, artifact_id) DO UPDATE
			SET last_at = excluded.last_at,
				last_event_id = excluded.last_event_id
			WHERE (excluded.last_at, excluded.last_event_id) > (a.last_at, a.last_event_id);

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
				-- the latest deployment of another artifact: the newest
				-- entry but the current artifact's
				SELECT NULLIF(a.artifact_id, '') AS artifact_id FROM cdviz.environment_artifacts a
				WHERE a.environment_id = k.environment_id AND a.service_id = k.service_id
				  AND a.artifact_id <> coalesce(cur.artifact_id, '')
				  AND (a.last_at, a.last_event_id) < (cur.valid_from, cur.event_id)
				ORDER BY a.last_at DESC, a.last_event_id DESC
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
	END IF;

	-- the derived tables and summaries: queued for the cdviz summaries
	-- worker, or folded here, 10,000 rows at a time
	IF deferred THEN
		INSERT INTO cdviz.summary_queue (events, ids, stamps) VALUES (queued, ids, stamps);
	ELSE
		FOR r IN SELECT * FROM new_events LOOP
			events := events || r;
			CONTINUE WHEN cardinality(events) < 10000;
			PERFORM cdviz._fold_events(events, true);
			events := '{}';
		END LOOP;
		PERFORM cdviz._fold_events(events, true);
	END IF;
	RETURN NULL;
END
$$;

COMMENT ON FUNCTION cdviz.lake_maintain() IS
'cdviz: statement-level AFTER INSERT trigger of cdviz.cdevents_lake: folds the stored events of the statement into environment_history and environment_state; then, with cdviz.summaries = deferred (in the summaries worker''s database), queues them in cdviz.summary_queue for cdviz.fold_queued_summaries(), else folds them at once into the derived tables (first_deployments, artifact_changes, change_times, event_links, rework_causes, rework_links) and, grouped per key, into the summary tables (pipeline/task/test case/test suite run, build, artifact, change and incident summaries, event_counts_hourly, test_case_outcomes_daily) with one set-based statement per table, each run only when the statement stored events of its subject; order-independent merge rules (see cdviz.pipeline_run_summaries). SECURITY DEFINER so that writers need no privilege on them.';
REVOKE EXECUTE ON FUNCTION cdviz.lake_maintain() FROM PUBLIC;

-- Folds the lake rows of queued statements (their keys: ids, stamps).
CREATE FUNCTION cdviz._fold_lake_keys(ids bigint[], stamps timestamptz[])
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	events cdviz.cdevents_lake[];
	n bigint;
BEGIN
	-- One probe per event, so that no plan can read whole partitions (an
	-- event of a dropped partition is gone: nothing to fold).
	SELECT array_agg(l.r), count(*)
	INTO events, n
	FROM unnest(ids, stamps) AS k(id, ts)
	CROSS JOIN LATERAL (SELECT c FROM cdviz.cdevents_lake AS c
						WHERE c.id = k.id AND c."timestamp" = k.ts LIMIT 1) AS l(r);
	PERFORM cdviz._fold_events(events, true);
	RETURN n;
END
$$;

COMMENT ON FUNCTION cdviz._fold_lake_keys(bigint[], timestamptz[]) IS
'cdviz: internal, for cdviz.fold_queued_summaries(): folds the lake rows with these (id, timestamp) keys with cdviz._fold_events() and returns how many it found';

CREATE FUNCTION cdviz.fold_queued_summaries(max_statements integer DEFAULT 1000)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	stmt record;
	ids bigint[] := '{}';
	stamps timestamptz[] := '{}';
	i integer;
	n bigint := 0;
BEGIN
	-- Taken in queue order and deleted in this transaction: each queued
	-- statement is folded exactly once, whoever calls (SKIP LOCKED lets a
	-- concurrent call take the next ones).  The events of small statements
	-- are folded together, those of a large one in slices: 10,000 at a time.
	FOR stmt IN
		DELETE FROM cdviz.summary_queue AS q
		WHERE q.id IN (SELECT w.id FROM cdviz.summary_queue AS w ORDER BY w.id
					   LIMIT max_statements FOR UPDATE SKIP LOCKED)
		RETURNING q.ids, q.stamps
	LOOP
		ids := ids || stmt.ids;
		stamps := stamps || stmt.stamps;
		i := 1;
		WHILE cardinality(ids) - i + 1 >= 10000 LOOP
			n := n + cdviz._fold_lake_keys(ids[i:i + 9999], stamps[i:i + 9999]);
			i := i + 10000;
		END LOOP;
		ids := ids[i:];
		stamps := stamps[i:];
	END LOOP;
	IF cardinality(ids) > 0 THEN
		n := n + cdviz._fold_lake_keys(ids, stamps);
	END IF;
	RETURN n;
END
$$;

COMMENT ON FUNCTION cdviz.fold_queued_summaries(integer) IS
'cdviz: folds the events queued by the lake trigger (cdviz.summaries = deferred) into the summary tables, the oldest max_statements insert statements at most, and returns how many events it folded; the cdviz summaries worker calls it, a session that wants read-after-write may too. Example: SELECT cdviz.fold_queued_summaries();';
REVOKE EXECUTE ON FUNCTION cdviz.fold_queued_summaries(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz.fold_queued_summaries(integer) TO cdviz_writer;

CREATE FUNCTION cdviz.summaries_fold(from_ts timestamptz, to_ts timestamptz)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r cdviz.cdevents_lake;
	events cdviz.cdevents_lake[] := '{}';
BEGIN
	-- one read of the range, folded 10,000 rows at a time
	FOR r IN SELECT * FROM cdviz.cdevents_lake AS l WHERE l."timestamp" >= from_ts AND l."timestamp" < to_ts
	LOOP
		events := events || r;
		CONTINUE WHEN cardinality(events) < 10000;
		PERFORM cdviz._fold_events(events, false);
		events := '{}';
	END LOOP;
	PERFORM cdviz._fold_events(events, false);
END
$$;

COMMENT ON FUNCTION cdviz.summaries_fold(timestamptz, timestamptz) IS
'cdviz: folds the lake events with "timestamp" in [from_ts, to_ts) into the summary tables, with the same statements as the lake trigger; adds to what is there (call it on empty summaries, or for events the summaries have not seen). Used by cdviz.rebuild_summaries().';
REVOKE EXECUTE ON FUNCTION cdviz.summaries_fold(timestamptz, timestamptz) FROM PUBLIC;

-- only the functions above call them, as the extension's owner
REVOKE EXECUTE ON FUNCTION cdviz._lake_rows(cdviz.cdevents_lake[]),
	cdviz._fold_events(cdviz.cdevents_lake[], boolean),
	cdviz._fold_lake_keys(bigint[], timestamptz[]) FROM PUBLIC;

CREATE TRIGGER lake_maintain
	AFTER INSERT ON cdviz.cdevents_lake
	REFERENCING NEW TABLE AS new_events
	FOR EACH STATEMENT
	EXECUTE FUNCTION cdviz.lake_maintain();

COMMENT ON TRIGGER lake_maintain ON cdviz.cdevents_lake IS
'cdviz: keeps the environment history and state in step with the lake, one pass per insert statement, and the derived tables, run, artifact, change and incident summaries and hourly/daily rollups too, at once or through cdviz.summary_queue (cdviz.summaries)';

CREATE FUNCTION cdviz.rebuild_summaries()
RETURNS TABLE (summary text, row_count bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	summaries text[] := ARRAY['pipeline_run_summaries', 'task_run_summaries', 'build_summaries',
							  'branch_summaries',
							  'test_case_run_summaries', 'test_suite_run_summaries',
							  'artifact_summaries', 'change_summaries', 'incident_summaries',
							  'event_counts_hourly', 'test_case_outcomes_daily'];
	m record;
	t text;
BEGIN
	IF NOT (SELECT r.rolsuper FROM pg_roles AS r WHERE r.rolname = current_user) THEN
		RAISE EXCEPTION 'cdviz.rebuild_summaries() requires a superuser'
			USING ERRCODE = 'insufficient_privilege';
	END IF;
	-- no ingest meanwhile: a batch stored during the rebuild could be
	-- counted twice (by its trigger and by the fold)
	LOCK TABLE cdviz.cdevents_lake IN SHARE MODE;
	-- DELETE, not TRUNCATE: TRUNCATE waits for every open transaction that
	-- read these tables (a dashboard's), holding the lake meanwhile
	FOREACH t IN ARRAY summaries || 'summary_queue'::text
	LOOP
		EXECUTE format('DELETE FROM cdviz.%I', t);
	END LOOP;
	-- month by month (the folds merge), so memory stays bounded
	FOR m IN
		SELECT g.m AT TIME ZONE 'UTC' AS month_start
		FROM (SELECT min(l."timestamp") AS lo, max(l."timestamp") AS hi FROM cdviz.cdevents_lake AS l) AS b,
			 generate_series(date_trunc('month', b.lo AT TIME ZONE 'UTC'),
							 date_trunc('month', b.hi AT TIME ZONE 'UTC'), interval '1 month') AS g(m)
		ORDER BY 1
	LOOP
		PERFORM cdviz.summaries_fold(m.month_start, m.month_start + interval '1 month');
	END LOOP;
	FOREACH t IN ARRAY summaries
	LOOP
		EXECUTE format('ANALYZE cdviz.%I', t);
		summary := t;
		EXECUTE format('SELECT count(*) FROM cdviz.%I', t) INTO row_count;
		RETURN NEXT;
	END LOOP;
END
$$;

COMMENT ON FUNCTION cdviz.rebuild_summaries() IS
'cdviz: superuser only. Empties the summary tables kept by the lake trigger (cdviz.*_summaries, cdviz.event_counts_hourly, cdviz.test_case_outcomes_daily) and refolds them from the whole lake, month by month, under a SHARE lock of the lake (ingest waits); returns the row count of each. For upgrades from a version without summaries, and after loading lake rows without the trigger (pg_restore of partitions, COPY into a partition). Example: SELECT * FROM cdviz.rebuild_summaries();';
REVOKE EXECUTE ON FUNCTION cdviz.rebuild_summaries() FROM PUBLIC;

SELECT pg_catalog.pg_extension_config_dump('cdviz.pipeline_run_summaries', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.task_run_summaries', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.build_summaries', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.branch_summaries', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.test_case_run_summaries', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.test_suite_run_summaries', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.artifact_summaries', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.change_summaries', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.incident_summaries', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.event_counts_hourly', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.test_case_outcomes_daily', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.summary_queue', '');
-- its identity sequence too: restored queue rows keep their ids, and later
-- ones must not collide with them
SELECT pg_catalog.pg_extension_config_dump('cdviz.summary_queue_id_seq', '');
