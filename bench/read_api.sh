#!/bin/bash
# Read API benchmark: every view and function of the read API over a 30-day
# window, RUNS times each (after one warm-up run), p50/p95 per query, and
# the EXPLAIN ANALYZE plan of each with the lake partitions it really read.
#
#   bench/read_api.sh [-g N] [-r RUNS] [-o PLANS_FILE] CONNINFO
#
#   CONNINFO   libpq connection string or URI of a database where the cdviz
#              extension is installed, e.g. "port=5432 dbname=cdviz"
#   -g N       first fill the lake with N generated events (bench/gen_events.sql)
#   -r RUNS    timed runs per query (default 20)
#   -o FILE    write the plans to FILE instead of printing them after the table
#
# It starts no server.  Times are wall-clock as psql sees them, result rows
# included, in one session with a warm cache, like a dashboard refreshing.
# "partitions" counts the monthly lake partitions the executed plan touched
# (an index probe counts), "lake seq scans" the sequential scans of non-empty
# lake partitions: a windowed query should touch one or two months and scan
# none.

set -euo pipefail

runs=20
gen=0
plans=""
while getopts "g:r:o:h" opt; do
	case $opt in
		g) gen=$OPTARG ;;
		r) runs=$OPTARG ;;
		o) plans=$OPTARG ;;
		*) sed -n '2,16p' "$0"; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
if [ $# -ne 1 ]; then
	sed -n '2,16p' "$0"
	exit 2
fi
conn=$1
here=$(cd "$(dirname "$0")" && pwd)
print_plans=0
if [ -z "$plans" ]; then
	plans=$(mktemp "${TMPDIR:-/tmp}/cdviz-read-api-plans.XXXXXX")
	print_plans=1
	trap 'rm -f "$plans"' EXIT
fi
PSQL=(psql -X -q -v ON_ERROR_STOP=1 "$conn")

if [ "$gen" -gt 0 ]; then
	echo "generating $gen events into the lake..."
	start=$(date +%s)
	"${PSQL[@]}" -v n="$gen" -f "$here/gen_events.sql" >/dev/null
	echo "generated in $(( $(date +%s) - start )) s"
fi

# Parameters for the lineage queries: a chain and a linked event of the window.
read -r chain ctx < <("${PSQL[@]}" -At -F ' ' -c "
	SELECT (SELECT chain_id FROM cdviz.cdevents_lake
			WHERE subject = 'pipelinerun' AND predicate = 'finished'
			  AND \"timestamp\" >= now() - interval '3 days' AND chain_id IS NOT NULL LIMIT 1),
		   (SELECT k.linked_context_id FROM cdviz.event_links k
			ORDER BY k.event_id DESC LIMIT 1)")

W="now() - interval '30 days', now()"
declare -a names queries
q() { names+=("$1"); queries+=("$2"); }

q "pipeline_runs_between"      "SELECT date_trunc('day', finished_at) AS day, outcome, count(*), avg(run_duration) FROM cdviz.pipeline_runs_between($W) GROUP BY 1, 2"
q "pipeline_runs (one run)"    "SELECT * FROM cdviz.pipeline_runs WHERE pipeline_run_id = (SELECT subject_id FROM cdviz.cdevents_lake WHERE subject = 'pipelinerun' AND \"timestamp\" >= now() - interval '1 day' LIMIT 1)"
q "task_runs_between"          "SELECT task_name, outcome, count(*), percentile_cont(0.95) WITHIN GROUP (ORDER BY run_duration) FROM cdviz.task_runs_between($W) GROUP BY 1, 2"
q "builds_between"             "SELECT date_trunc('day', finished_at), count(*), avg(run_duration), count(artifact_id) FROM cdviz.builds_between($W) GROUP BY 1"
q "test_case_runs_between"     "SELECT test_case_name, count(*) FILTER (WHERE outcome = 'failure') AS failures, count(*) AS runs FROM cdviz.test_case_runs_between($W) GROUP BY 1 ORDER BY failures DESC LIMIT 20"
q "test_suite_runs_between"    "SELECT test_suite_name, outcome, count(*), avg(run_duration) FROM cdviz.test_suite_runs_between($W) GROUP BY 1, 2"
q "test_outputs"               "SELECT output_type, format, count(*) FROM cdviz.test_outputs WHERE published_at >= now() - interval '30 days' GROUP BY 1, 2"
q "artifacts_between"          "SELECT count(*), count(signed_at), count(published_at), avg(published_at - packaged_at), count(change_id) FROM cdviz.artifacts_between($W)"
q "changes_between"            "SELECT repository_id, state, count(*), avg(merged_at - created_at) FROM cdviz.changes_between($W) GROUP BY 1, 2"
q "repositories_between"       "SELECT repository_id, name, uri, state FROM cdviz.repositories_between($W)"
q "branches_between"           "SELECT repository_id, state, count(*) FROM cdviz.branches_between($W) GROUP BY 1, 2"
q "environments_between"       "SELECT environment_id, name, uri, state FROM cdviz.environments_between($W)"
q "services_between"           "SELECT service_id, environment_id, deployment_count, rollback_count, last_artifact_id FROM cdviz.services_between($W)"
q "incidents_between"          "SELECT incident_id, environment_id, service_id, state, time_to_resolve FROM cdviz.incidents_between($W) ORDER BY last_event_at DESC LIMIT 100"
q "tickets_between"            "SELECT state, priority, count(*) FROM cdviz.tickets_between($W) GROUP BY 1, 2"
q "deployments (prod, rows)"   "SELECT \"timestamp\", environment_id, service_id, action, package_name, package_version FROM cdviz.deployments WHERE \"timestamp\" >= now() - interval '30 days' AND environment_id LIKE 'prod%' ORDER BY \"timestamp\" DESC"
q "deployments (per day)"      "SELECT date_trunc('day', \"timestamp\"), environment_id, count(*) FROM cdviz.deployments WHERE \"timestamp\" >= now() - interval '30 days' GROUP BY 1, 2"
q "environment_inventory"      "SELECT * FROM cdviz.environment_inventory"
q "environment_inventory_at"   "SELECT * FROM cdviz.environment_inventory_at(now() - interval '30 days')"
q "dora_deployment_frequency"  "SELECT * FROM cdviz.dora_deployment_frequency($W)"
q "dora_deployment_freq prod"  "SELECT * FROM cdviz.dora_deployment_frequency($W, 'prod-eu')"
q "dora_lead_time"             "SELECT * FROM cdviz.dora_lead_time($W)"
q "dora_lead_time prod"        "SELECT * FROM cdviz.dora_lead_time($W, 'prod-eu')"
q "dora_change_failure_rate"   "SELECT * FROM cdviz.dora_change_failure_rate($W)"
q "dora_cfr prod svc"          "SELECT * FROM cdviz.dora_change_failure_rate($W, 'prod-eu', 'svc-07')"
q "dora_time_to_restore"       "SELECT * FROM cdviz.dora_time_to_restore($W)"
q "dora_recovery_time"         "SELECT * FROM cdviz.dora_failed_deployment_recovery_time($W)"
q "dora_recovery_time prod"    "SELECT * FROM cdviz.dora_failed_deployment_recovery_time($W, 'prod-eu')"
q "dora_rework_rate"           "SELECT * FROM cdviz.dora_rework_rate($W)"
q "dora_rework_rate prod svc"  "SELECT * FROM cdviz.dora_rework_rate($W, 'prod-eu', 'svc-07')"
q "dora_by_environment"        "SELECT * FROM cdviz.dora_by_environment($W)"
q "chain"                      "SELECT * FROM cdviz.chain('$chain')"
q "related"                    "SELECT * FROM cdviz.related('$ctx', 2)"

"${PSQL[@]}" -At -c "SELECT 'lake: ' || pg_size_pretty(sum(pg_total_relation_size(inhrelid))) || ' in ' || count(*) || ' partitions' FROM pg_inherits WHERE inhparent = 'cdviz.cdevents_lake'::regclass"
"${PSQL[@]}" -At -c "SELECT 'events: ' || count(*) FROM cdviz.cdevents_lake"
"${PSQL[@]}" -At -c "SELECT 'server: ' || version() || '; jit=' || current_setting('jit') || ', work_mem=' || current_setting('work_mem') || ', shared_buffers=' || current_setting('shared_buffers')"
total_parts=$("${PSQL[@]}" -At -c "SELECT count(*) FROM pg_inherits WHERE inhparent = 'cdviz.cdevents_lake'::regclass")
# empty partitions (future months, say) are planned as seq scans of nothing
empty_parts=$("${PSQL[@]}" -At -c "SELECT coalesce(string_agg(c.relname, '|'), '-') FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'cdviz.cdevents_lake'::regclass AND c.relpages = 0")

: > "$plans"
printf '%-28s %8s %8s %8s  %-10s %s\n' "query" "p50 ms" "p95 ms" "max ms" "partitions" "lake seq scans"
for i in "${!names[@]}"; do
	name=${names[$i]}
	sql=${queries[$i]}
	# one warm-up, then the timed runs, in one session
	times=$( { echo '\timing on'; echo '\o /dev/null'; echo "$sql;";
			   for _ in $(seq "$runs"); do echo "$sql;"; done; } |
			 "${PSQL[@]}" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -n "$runs" | sort -g)
	p50=$(echo "$times" | awk -v n="$runs" 'NR == int((n + 1) / 2) { print }')
	p95=$(echo "$times" | awk -v n="$runs" 'NR == int(n * 0.95 + 0.999) { print }')
	max=$(echo "$times" | tail -n 1)
	plan=$("${PSQL[@]}" -At -c "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) $sql")
	# a partition counts as read when a node scanned it (not "never executed")
	read_parts=$( { echo "$plan" | grep -v 'never executed' | grep -o 'cdevents_lake_[0-9]\{6\}' || true; } | sort -u | wc -l)
	seq_scans=$( { echo "$plan" | grep -v 'never executed' | grep -o 'Seq Scan on cdevents_lake_[0-9]\{6\}' | grep -Ev "$empty_parts" || true; } | wc -l)
	{ echo "=== $name"; echo "$sql"; echo "$plan"; echo; } >> "$plans"
	printf '%-28s %8.1f %8.1f %8.1f  %-10s %s\n' "$name" "$p50" "$p95" "$max" "$read_parts/$total_parts" "$seq_scans"
done
echo
if [ "$print_plans" -eq 1 ]; then
	echo "EXPLAIN (ANALYZE) of each query:"
	echo
	cat "$plans"
else
	echo "plans: $plans"
fi
