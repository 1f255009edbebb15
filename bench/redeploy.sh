#!/usr/bin/env bash
# Redeployment benchmark (issue 21): one cdviz.ingest() per transaction
# redeploying the same artifact to one (environment, service) whose history
# already holds H events (default 10,000: Argo CD re-syncs, restarts),
# against the same single-event ingests of services seen for the first time
# (each event a new key), in the same run.  The two alternate in R rounds of
# K transactions each (pgbench, one client); the redeployed key's history
# grows by K every round.  Prints each round's rates and ratio, and their
# median (goal: redeploy / fresh >= 0.8: a per-event cost that does not grow
# with the history).
#
# usage: bench/redeploy.sh [H] [K] [R]
#
# Run it as an unprivileged user (PostgreSQL refuses root): it starts its
# own cluster in a temporary directory and removes it at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
H=${1:-10000}
K=${2:-1000}
R=${3:-5}
# shellcheck source=bench/cluster.sh
. bench/cluster.sh
bench_own_cluster bench

# one deployment event as SQL: $1 the service expression, $2 the id expression
event() {
	cat <<SQL
SELECT cdviz.ingest(jsonb_build_object(
	'context', jsonb_build_object('version', '0.4.1', 'id', $2, 'source', '/bench/redeploy',
		'type', 'dev.cdevents.service.deployed.0.2.0',
		'timestamp', to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')),
	'subject', jsonb_build_object('id', $1, 'source', '/bench/redeploy', 'type', 'service',
		'content', jsonb_build_object('environment', jsonb_build_object('id', 'prod'),
									  'artifactId', 'pkg:oci/shop@sha256%3Aaaaa'))));
SQL
}

echo "history: $H deployments of one artifact to prod/shop ..."
"${PSQL[@]}" -d $DB <<SQL >/dev/null
SELECT cdviz.ingest_batch(jsonb_agg(jsonb_build_object(
	'context', jsonb_build_object('version', '0.4.1', 'id', 'history-' || g, 'source', '/bench/redeploy',
		'type', 'dev.cdevents.service.deployed.0.2.0',
		'timestamp', to_char((now() - interval '30 days' + g * interval '1 second') AT TIME ZONE 'UTC',
							 'YYYY-MM-DD"T"HH24:MI:SS"Z"')),
	'subject', jsonb_build_object('id', 'shop', 'source', '/bench/redeploy', 'type', 'service',
		'content', jsonb_build_object('environment', jsonb_build_object('id', 'prod'),
									  'artifactId', CASE WHEN g = 1 THEN 'pkg:oci/shop@sha256%3Abbbb'
														 ELSE 'pkg:oci/shop@sha256%3Aaaaa' END)))))
FROM generate_series(1, $H) AS g
GROUP BY g / 1000;
VACUUM ANALYZE;
SQL

{ echo '\set n random(1, 2000000000)'; event "'shop'" "'redeploy-' || :n || '-' || random()"; } >"$TMP/redeploy.sql"
{ echo '\set n random(1, 2000000000)'; event "'fresh-' || :n || '-' || random()" "'fresh-' || :n || '-' || random()"; } >"$TMP/fresh.sql"

tps() {
	"$PGBIN/pgbench" -n -c 1 -t "$K" -f "$1" "$DB" 2>&1 | sed -n 's/^tps = \([0-9.]*\).*/\1/p'
}

ratios=()
printf '%-6s %12s %12s %7s %9s\n' round redeploy/s fresh/s ratio history
for r in $(seq 1 "$R"); do
	if [ $((r % 2)) = 1 ]; then
		a=$(tps "$TMP/redeploy.sql")
		b=$(tps "$TMP/fresh.sql")
	else
		b=$(tps "$TMP/fresh.sql")
		a=$(tps "$TMP/redeploy.sql")
	fi
	ratio=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", a / b }')
	ratios+=("$ratio")
	hist=$("${PSQL[@]}" -d $DB -tAc "SELECT count(*) FROM cdviz.environment_history WHERE service_id = 'shop'")
	printf '%-6s %12.0f %12.0f %7s %9s\n' "$r" "$a" "$b" "$ratio" "$hist"
done
printf '%s\n' "${ratios[@]}" | sort -n | awk '{ v[NR] = $1 } END { printf "median ratio redeploy / fresh: %.2f (goal >= 0.8)\n", v[int((NR + 1) / 2)] }'
