#!/bin/sh
# bench/http.sh — the http worker's group commit against one-commit-per-event
# clients, in the same run, on the same server.
#
#   bench/http.sh [URL]        default http://127.0.0.1:8080
#
# The server is the one named by the libpq environment (PGHOST, PGPORT,
# PGDATABASE, PGUSER): the database the cdviz http worker stores into, with
# the extension created.  Nothing is started.  Options (environment):
# DURATION (20 s of each side per run), ROUNDS (4), CONNECTIONS (16),
# BATCH_SIZE (500), TOKEN (bearer token), PGBENCH_MODE (prepared).
#
# Run 1: wrk posts one distinct event per request over CONNECTIONS keep-alive
# connections, what a delivery platform sends (bench/http_post.lua, EVENTS=
# delivery: a pipeline run with its tasks and test cases, its artifact
# published and deployed, in 16 events); pgbench runs CONNECTIONS clients each doing one
# INSERT of an event per transaction into bench_http_baseline, a table with
# the lake's columns and indexes (not its trigger: the baseline does less
# work per event than the lake).  Goal: http/pgbench >= 1.5.
# Run 1b, the lake trigger's worst case: every event a deployment, whose
# inventory upkeep runs in the ingest transaction (EVENTS=deployments), the
# same pgbench INSERT baseline, and, for the same work per event, pgbench
# clients each calling cdviz.ingest() with such a deployment once per
# transaction (validation, store, lake trigger).
# Run 2: wrk posts arrays of BATCH_SIZE events of a delivery platform;
# compared with the ceiling of INSERT ... SELECT statements of 5,000
# generated rows (one group commit's worth) into the baseline table, each
# its own transaction.  Goal: >= 0.6.  Run 2b: the same with deployments
# only, the worst case.
#
# The machine may be shared and busy: both sides of a run are measured in
# ROUNDS short rounds that alternate (ABBA...), so that they see the same
# load; rates are totals over all rounds, latencies percentiles over every
# request of all rounds, and the per-round ratios show the spread.
# Rows the bench adds (source /bench/http, services svc/bench*) are deleted
# from the lake and the state tables before and after.
set -eu

URL=${1:-http://127.0.0.1:8080}
DURATION=${DURATION:-20}
ROUNDS=${ROUNDS:-4}
CONNECTIONS=${CONNECTIONS:-16}
BATCH_SIZE=${BATCH_SIZE:-500}
PGBENCH_MODE=${PGBENCH_MODE:-prepared}
CEIL_ROWS=5000
ROUND=$(( (DURATION + ROUNDS - 1) / ROUNDS ))
HERE=$(cd "$(dirname "$0")" && pwd)
TMP=$(mktemp -d)
PSQL="psql -X -q -v ON_ERROR_STOP=1 -At"
PGBENCH=${PGBENCH:-$(command -v pgbench || echo /usr/lib/postgresql/15/bin/pgbench)}
THREADS=$(nproc)
[ "$THREADS" -gt "$CONNECTIONS" ] && THREADS=$CONNECTIONS

curl -sf "$URL/readyz" >/dev/null || { echo "bench: $URL/readyz is not 200" >&2; exit 1; }

cleanup() {
	$PSQL <<SQL
DROP TABLE IF EXISTS bench_http_baseline;
-- what is queued for the summaries worker is folded first, not after
DO \$\$ BEGIN WHILE cdviz.summaries_pending() > 0 LOOP PERFORM cdviz.fold_queued_summaries(); END LOOP; END \$\$;
DELETE FROM cdviz.cdevents_lake WHERE context_source = '/bench/http';
DELETE FROM cdviz.environment_history WHERE service_id LIKE 'svc/bench%';
DELETE FROM cdviz.environment_state WHERE service_id LIKE 'svc/bench%';
DELETE FROM cdviz.first_deployments WHERE service_id LIKE 'svc/bench%';
DELETE FROM cdviz.pipeline_run_summaries WHERE source = '/bench/http';
DELETE FROM cdviz.task_run_summaries WHERE source = '/bench/http';
DELETE FROM cdviz.test_case_run_summaries WHERE source = '/bench/http';
DELETE FROM cdviz.artifact_summaries WHERE source = '/bench/http';
DELETE FROM cdviz.event_counts_hourly WHERE context_source = '/bench/http';
DELETE FROM cdviz.test_case_outcomes_daily WHERE test_case LIKE 'bench test %';
-- and their dead rows, or the next run's trigger wades through them (the
-- same services, the same timestamps): a run measures the receiver on
-- tables as autovacuum keeps them, not a backlog of earlier runs
VACUUM cdviz.cdevents_lake, cdviz.environment_history, cdviz.environment_state,
	cdviz.first_deployments, cdviz.summary_queue, cdviz.pipeline_run_summaries,
	cdviz.task_run_summaries, cdviz.test_case_run_summaries, cdviz.artifact_summaries,
	cdviz.event_counts_hourly, cdviz.test_case_outcomes_daily;
SQL
}
# (requests wrk left in flight are still committed after it stops: let them)
trap 'sleep 2; cleanup; rm -rf "$TMP"' EXIT
cleanup

EVENT='{"context":{"version":"0.4.1","id":"pgbench","source":"/bench/http","type":"dev.cdevents.service.deployed.0.2.0","timestamp":"2024-05-01T10:00:00Z"},"subject":{"id":"svc/bench","source":"/bench/http","type":"service","content":{"environment":{"id":"prod"},"artifactId":"pkg:oci/app@sha256%3A0b31b1c02ff458ad9b7b81cbdf8f028bd54699fa151f221d1e8de6817db93427"}}}'

$PSQL <<SQL
CREATE TABLE bench_http_baseline (LIKE cdviz.cdevents_lake INCLUDING DEFAULTS INCLUDING INDEXES INCLUDING COMPRESSION);
SQL

# one INSERT of the event per transaction, ids unique per client (the
# event is a variable: pgbench would take its ":00" for variables)
cat > "$TMP/insert.sql" <<'SQL'
INSERT INTO bench_http_baseline ("timestamp", context_id, context_source, type, subject, predicate,
  type_version, spec_version, subject_id, payload)
VALUES (now(), 'pgb-' || :client_id || '-' || nextval('cdviz.cdevents_lake_id_seq'),
  '/bench/http', 'dev.cdevents.service.deployed.0.2.0', 'service', 'deployed', '0.2.0', '0.4.1',
  'svc/bench', :payload::jsonb)
ON CONFLICT DO NOTHING;
SQL

# The same event through cdviz.ingest(), one per transaction: what a client
# of the SQL API does per event, with the validation, the store and the
# lake trigger's state upkeep that the http worker does too.  Each event
# deploys a new artifact of one of 64 services per client, as the wrk
# script's do.  (No ':' in the text: pgbench would read a variable.)
cat > "$TMP/ingest.sql" <<'SQL'
\set n random(1, 2000000000)
SELECT cdviz.ingest(jsonb_build_object(
  'context', jsonb_build_object('version', '0.4.1', 'id', 'pgi-' || :client_id || '-' || :n,
    'source', '/bench/http', 'type', 'dev.cdevents.service.deployed.0.2.0',
    'timestamp', (to_jsonb(timestamp '2024-05-01' + (36000 + :n % 2500000) * interval '1 second') #>> '{}') || 'Z'),
  'subject', jsonb_build_object('id', 'svc/bench-p' || :client_id || '-' || :n % 64, 'source', '/bench/http',
    'type', 'service', 'content', jsonb_build_object('environment', jsonb_build_object('id', 'prod'),
    'artifactId', 'pkg.oci/app@sha256%3A' || :n))));
SQL

# one round of wrk: $1 batch size, $2 output prefix, $3 events (delivery
# or deployments).  Appends the latency histogram (microseconds, count) to
# $2.hist and "requests seconds errors" to $2.sum.
wrk_round() {
	EVENTS=${3:-deployments} BATCH=$1 RUN_ID="$(date +%s%N)" HIST="$2.hist" wrk -t"$THREADS" -c"$CONNECTIONS" \
		-d"${ROUND}s" -s "$HERE/http_post.lua" "$URL" > "$TMP/wrk.out"
	awk '/^summary /{print $2, $3, $4}' "$TMP/wrk.out" >> "$2.sum"
}

# one round of pgbench running script $1; per-transaction latencies (us) go
# to $TMP/$2.lat, "transactions seconds" to $TMP/$2.sum
pgbench_round() {
	rm -f "$TMP"/pgbench_log.*
	(cd "$TMP" && $PGBENCH -n -M "$PGBENCH_MODE" -c "$CONNECTIONS" -j "$THREADS" -T "$ROUND" \
		-D "payload=$EVENT" -l -f "$1" > pgbench.out 2>&1) || { cat "$TMP/pgbench.out" >&2; exit 1; }
	cat "$TMP"/pgbench_log.* | awk '{print $3}' >> "$TMP/$2.lat"
	awk -v t="$ROUND" '/^number of transactions actually processed/{split($0, a, ": "); split(a[2], b, "/"); print b[1], t}' \
		"$TMP/pgbench.out" >> "$TMP/$2.sum"
}

# one round of the ceiling: INSERT ... SELECT of CEIL_ROWS rows, repeated
# for ROUND seconds; "rows milliseconds" (statement time) to $TMP/$1.sum
ceiling_round() {
	end=$(( $(date +%s) + ROUND ))
	rows=0
	ms=0
	while [ "$(date +%s)" -lt "$end" ]; do
		n=$(date +%s%N)
		t=$($PSQL <<SQL | awk '/^Time:/{print $2}'
\\timing on
INSERT INTO bench_http_baseline ("timestamp", context_id, context_source, type, subject, predicate,
  type_version, spec_version, subject_id, payload)
SELECT '2024-05-01T10:00:00Z'::timestamptz + g * interval '1 second', 'ceil-$$-$n-' || g, '/bench/http',
  'dev.cdevents.service.deployed.0.2.0', 'service', 'deployed', '0.2.0', '0.4.1', 'svc/bench-' || g % 64,
  jsonb_set('$EVENT'::jsonb, '{context,id}', to_jsonb('ceil-$$-$n-' || g))
FROM generate_series(1, $CEIL_ROWS) g;
SQL
)
		[ -n "$t" ] || { echo "bench: the ceiling's INSERT failed" >&2; exit 1; }
		rows=$((rows + CEIL_ROWS))
		ms=$(awk -v a="$ms" -v b="$t" 'BEGIN{printf "%.3f", a + b}')
	done
	echo "$rows $ms" >> "$TMP/$1.sum"
}

# percentile $2 of a file of latencies in microseconds, one per line, as ms
pct_list() {
	sort -n "$1" | awk -v p="$2" '{v[NR]=$1} END{i=int(NR*p/100+0.5); if (i<1) i=1; printf "%.3f", v[i]/1000}'
}

# percentile $2 of a histogram file ("microseconds count" lines), as ms
pct_hist() {
	sort -n "$1" | awk -v p="$2" '{v[NR]=$1; c[NR]=$2; n+=$2}
		END{want=n*p/100; s=0; for (i=1; i<=NR; i++) {s+=c[i]; if (s>=want) {printf "%.3f", v[i]/1000; exit}}}'
}

# rate of the last line of a .sum file ("count seconds ..."), and in total
last_rate() { tail -1 "$1" | awk -v k="${2:-1}" '{printf "%.0f", $1*k/$2}'; }
total_rate() { awk -v k="${2:-1}" '{n+=$1; t+=$2} END{printf "%.0f", n*k/t}' "$1"; }

# totals of a run of single events: $1 the wrk files' prefix, $2 their
# label.  Sets HTTP_RPS, HTTP_BAD and PGB_TPS; prints the http and pgbench
# INSERT lines.
single_totals() {
	HTTP_RPS=$(total_rate "$1.sum")
	HTTP_BAD=$(awk '{n+=$3} END{print n+0}' "$1.sum")
	PGB_TPS=$(total_rate "$TMP/pgb.sum")
	printf '%-44s %10s %10s %10s\n' "" "events/s" "p50 ms" "p99 ms"
	printf '%-44s %10s %10s %10s\n' "$2" "$HTTP_RPS" "$(pct_hist "$1.hist" 50)" "$(pct_hist "$1.hist" 99)"
	printf '%-44s %10s %10s %10s\n' "pgbench 1 INSERT per commit ($PGBENCH_MODE)" "$PGB_TPS" \
		"$(pct_list "$TMP/pgb.lat" 50)" "$(pct_list "$TMP/pgb.lat" 99)"
}

echo "== run 1: one event per request (a delivery platform's events), $CONNECTIONS connections, $ROUNDS rounds of ${ROUND}s per side"
for r in $(seq 1 "$ROUNDS"); do
	if [ $((r % 2)) -eq 1 ]; then
		wrk_round 1 "$TMP/w1" delivery; pgbench_round insert.sql pgb
	else
		pgbench_round insert.sql pgb; wrk_round 1 "$TMP/w1" delivery
	fi
	a=$(last_rate "$TMP/w1.sum"); b=$(last_rate "$TMP/pgb.sum")
	printf '  round %d: http %s events/s, pgbench INSERT %s tx/s (ratio %s)\n' \
		"$r" "$a" "$b" "$(awk -v a="$a" -v b="$b" 'BEGIN{printf "%.2f", a/b}')"
done
single_totals "$TMP/w1" "http worker (wrk, 1 event/req)"
R1=$(awk -v a="$HTTP_RPS" -v b="$PGB_TPS" 'BEGIN{printf "%.2f", a/b}')
echo "ratio http/pgbench INSERT: $R1 (goal >= 1.5)"
echo "failed requests: $HTTP_BAD"

echo "== run 1b: one deployment per request (the lake trigger's worst case), $CONNECTIONS connections, $ROUNDS rounds of ${ROUND}s per side"
rm -f "$TMP/pgb.sum" "$TMP/pgb.lat"
for r in $(seq 1 "$ROUNDS"); do
	if [ $((r % 2)) -eq 1 ]; then
		wrk_round 1 "$TMP/wd"; pgbench_round insert.sql pgb; pgbench_round ingest.sql pgi
	else
		pgbench_round ingest.sql pgi; pgbench_round insert.sql pgb; wrk_round 1 "$TMP/wd"
	fi
	a=$(last_rate "$TMP/wd.sum"); b=$(last_rate "$TMP/pgb.sum"); c=$(last_rate "$TMP/pgi.sum")
	printf '  round %d: http %s events/s, pgbench INSERT %s tx/s (ratio %s), cdviz.ingest %s tx/s (ratio %s)\n' \
		"$r" "$a" "$b" "$(awk -v a="$a" -v b="$b" 'BEGIN{printf "%.2f", a/b}')" \
		"$c" "$(awk -v a="$a" -v b="$c" 'BEGIN{printf "%.2f", a/b}')"
done
single_totals "$TMP/wd" "http worker (wrk, 1 deployment/req)"
PGI_TPS=$(total_rate "$TMP/pgi.sum")
printf '%-44s %10s %10s %10s\n' "pgbench 1 cdviz.ingest() per commit" "$PGI_TPS" \
	"$(pct_list "$TMP/pgi.lat" 50)" "$(pct_list "$TMP/pgi.lat" 99)"
R1B=$(awk -v a="$HTTP_RPS" -v b="$PGB_TPS" 'BEGIN{printf "%.2f", a/b}')
R1I=$(awk -v a="$HTTP_RPS" -v b="$PGI_TPS" 'BEGIN{printf "%.2f", a/b}')
echo "ratio http/pgbench INSERT: $R1B (worst case); http/cdviz.ingest (same work per event): $R1I"
echo "failed requests: $HTTP_BAD"

# run 2 and 2b: batches of $1 events (delivery or deployments) against the
# ceiling; prints the per-round and total figures, sets R2
batch_run() {
	$PSQL -c "TRUNCATE bench_http_baseline"
	for r in $(seq 1 "$ROUNDS"); do
		if [ $((r % 2)) -eq 1 ]; then
			wrk_round "$BATCH_SIZE" "$TMP/b$1" "$1"; ceiling_round "ceil$1"
		else
			ceiling_round "ceil$1"; wrk_round "$BATCH_SIZE" "$TMP/b$1" "$1"
		fi
		a=$(last_rate "$TMP/b$1.sum" "$BATCH_SIZE"); b=$(last_rate "$TMP/ceil$1.sum" 1000)
		printf '  round %d: http %s events/s, ceiling %s rows/s, ratio %s\n' "$r" "$a" "$b" \
			"$(awk -v a="$a" -v b="$b" 'BEGIN{printf "%.2f", a/b}')"
	done
	BATCH_EPS=$(total_rate "$TMP/b$1.sum" "$BATCH_SIZE")
	BATCH_BAD=$(awk '{n+=$3} END{print n+0}' "$TMP/b$1.sum")
	CEIL_EPS=$(total_rate "$TMP/ceil$1.sum" 1000)
	printf '%-36s %10s %10s %10s\n' "" "events/s" "p50 ms" "p99 ms"
	printf '%-36s %10s %10s %10s\n' "http worker (wrk, $BATCH_SIZE events/req)" "$BATCH_EPS" \
		"$(pct_hist "$TMP/b$1.hist" 50)" "$(pct_hist "$TMP/b$1.hist" 99)"
	printf '%-36s %10s %10s %10s\n' "INSERT ... SELECT ceiling" "$CEIL_EPS" "-" "-"
	R2=$(awk -v a="$BATCH_EPS" -v b="$CEIL_EPS" 'BEGIN{printf "%.2f", a/b}')
}

echo "== run 2: $BATCH_SIZE events of a delivery platform per request, $CONNECTIONS connections, $ROUNDS rounds of ${ROUND}s per side"
batch_run delivery
echo "ratio http batches/ceiling: $R2 (goal >= 0.6); failed requests: $BATCH_BAD"
echo "== run 2b: $BATCH_SIZE deployments per request (the worst case), $CONNECTIONS connections, $ROUNDS rounds of ${ROUND}s per side"
batch_run deployments
echo "ratio http batches/ceiling: $R2 (worst case); failed requests: $BATCH_BAD"
