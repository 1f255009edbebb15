-- Read API, part 7: privileges.  cdviz_reader (what Grafana logs in as) may
-- read the read API and nothing else, and cannot write anything.  The lake
-- and the state tables are part of the API: the inlined *_between functions
-- run with the caller's privileges, which is what lets the planner see
-- through them.  The dead-letter table is not: it holds raw, possibly
-- sensitive, rejected input.  Read functions are not executable by PUBLIC,
-- so the grants below are the whole list.

GRANT SELECT ON
	cdviz.cdevents_lake,
	cdviz.environment_history, cdviz.environment_state, cdviz.first_deployments,
	cdviz.artifact_changes, cdviz.change_times, cdviz.event_links,
	cdviz.pipeline_run_summaries, cdviz.task_run_summaries, cdviz.build_summaries,
	cdviz.branch_summaries,
	cdviz.test_case_run_summaries, cdviz.test_suite_run_summaries, cdviz.artifact_summaries,
	cdviz.change_summaries, cdviz.incident_summaries, cdviz.event_counts_hourly,
	cdviz.test_case_outcomes_daily,
	cdviz.pipeline_runs, cdviz.task_runs, cdviz.builds, cdviz.test_case_runs,
	cdviz.test_suite_runs, cdviz.test_outputs, cdviz.artifacts, cdviz.changes,
	cdviz.repositories, cdviz.branches, cdviz.environments, cdviz.services,
	cdviz.incidents, cdviz.tickets, cdviz.deployments, cdviz.environment_inventory,
	cdviz.dora_thresholds
TO cdviz_reader;

REVOKE EXECUTE ON FUNCTION
	cdviz.lake_maintain(), cdviz._summaries_deferred(),
	cdviz.fold_queued_summaries(integer), cdviz.summaries_pending(),
	cdviz.summaries_fold(timestamptz, timestamptz), cdviz.rebuild_summaries(),
	cdviz.normalize_outcome(text), cdviz.purl_split(text),
	cdviz.percent_decode(text), cdviz.purl_parse(text),
	cdviz.pipeline_runs_between(timestamptz, timestamptz, interval),
	cdviz.task_runs_between(timestamptz, timestamptz, interval),
	cdviz.builds_between(timestamptz, timestamptz, interval),
	cdviz.test_case_runs_between(timestamptz, timestamptz, interval),
	cdviz.test_suite_runs_between(timestamptz, timestamptz, interval),
	cdviz.artifacts_between(timestamptz, timestamptz, interval),
	cdviz.changes_between(timestamptz, timestamptz, interval),
	cdviz.repositories_between(timestamptz, timestamptz, interval),
	cdviz.branches_between(timestamptz, timestamptz, interval),
	cdviz.environments_between(timestamptz, timestamptz, interval),
	cdviz.services_between(timestamptz, timestamptz, interval),
	cdviz.incidents_between(timestamptz, timestamptz, interval),
	cdviz.tickets_between(timestamptz, timestamptz, interval),
	cdviz.environment_inventory_at(timestamptz),
	cdviz.dora_deployment_frequency(timestamptz, timestamptz, text, text),
	cdviz.dora_lead_time(timestamptz, timestamptz, text, text),
	cdviz.dora_change_failure_rate(timestamptz, timestamptz, text, text),
	cdviz.dora_change_failures(timestamptz, timestamptz, text, text),
	cdviz.dora_failed_deployments(timestamptz, timestamptz, text, text),
	cdviz.dora_time_to_restore(timestamptz, timestamptz, text, text),
	cdviz.dora_by_environment(timestamptz, timestamptz, text),
	cdviz.chain(text), cdviz.related(text, int)
FROM PUBLIC;

GRANT EXECUTE ON FUNCTION
	cdviz.summaries_pending(),
	cdviz.normalize_outcome(text), cdviz.purl_split(text),
	cdviz.percent_decode(text), cdviz.purl_parse(text),
	cdviz.pipeline_runs_between(timestamptz, timestamptz, interval),
	cdviz.task_runs_between(timestamptz, timestamptz, interval),
	cdviz.builds_between(timestamptz, timestamptz, interval),
	cdviz.test_case_runs_between(timestamptz, timestamptz, interval),
	cdviz.test_suite_runs_between(timestamptz, timestamptz, interval),
	cdviz.artifacts_between(timestamptz, timestamptz, interval),
	cdviz.changes_between(timestamptz, timestamptz, interval),
	cdviz.repositories_between(timestamptz, timestamptz, interval),
	cdviz.branches_between(timestamptz, timestamptz, interval),
	cdviz.environments_between(timestamptz, timestamptz, interval),
	cdviz.services_between(timestamptz, timestamptz, interval),
	cdviz.incidents_between(timestamptz, timestamptz, interval),
	cdviz.tickets_between(timestamptz, timestamptz, interval),
	cdviz.environment_inventory_at(timestamptz),
	cdviz.dora_deployment_frequency(timestamptz, timestamptz, text, text),
	cdviz.dora_lead_time(timestamptz, timestamptz, text, text),
	cdviz.dora_change_failure_rate(timestamptz, timestamptz, text, text),
	cdviz.dora_change_failures(timestamptz, timestamptz, text, text),
	cdviz.dora_failed_deployments(timestamptz, timestamptz, text, text),
	cdviz.dora_time_to_restore(timestamptz, timestamptz, text, text),
	cdviz.dora_by_environment(timestamptz, timestamptz, text),
	cdviz.chain(text), cdviz.related(text, int)
TO cdviz_reader;

-- a writer may catch the summaries up for read-after-write
GRANT EXECUTE ON FUNCTION cdviz.fold_queued_summaries(integer), cdviz.summaries_pending()
TO cdviz_writer;
