#!/bin/sh
# bench/http.sh — the http worker's group commit against one-commit-per-event
# clients, in the same run, on the same server.
#
#   bench/http.sh [URL]        default http://127.0.0.1:8080
#
# The server is the one named by the libpq environment (PGHOST, PGPORT,
# PGDATABASE, PGUSER): the database the cdviz http worker stores into, with
# the extension created.  Nothing is started.  Options (environment):
# DURATION (20 s), CONNECTIONS (16), BATCH_SIZE (500), TOKEN (bearer token).
#
# Run 1: wrk posts one distinct event per request over CONNECTIONS keep-alive
# connections, then pgbench runs CONNECTIONS clients each doing one INSERT of
# the same event per transaction into bench_http_baseline, a table with the
# lake's columns and indexes.  Goal: http/pgbench >= 1.5.
# Run 2: wrk posts arrays of BATCH_SIZE events; compared with the ceiling of
# one INSERT ... SELECT of the same rows into the baseline table.  Goal: >= 0.6.
# Rows the bench adds are deleted at the end (source /bench/http).
set -eu

URL=${1:-http://127.0.0.1:8080}
DURATION=${DURATION:-20}
CONNECTIONS=${CONNECTIONS:-16}
BATCH_SIZE=${BATCH_SIZE:-500}
HERE=$(cd "$(dirname "$0")" && pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
PSQL="psql -X -q -v ON_ERROR_STOP=1 -At"
PGBENCH=${PGBENCH:-$(command -v pgbench || echo /usr/lib/postgresql/15/bin/pgbench)}
THREADS=$(nproc)
[ "$THREADS" -gt "$CONNECTIONS" ] && THREADS=$CONNECTIONS

curl -sf "$URL/readyz" >/dev/null || { echo "bench: $URL/readyz is not 200" >&2; exit 1; }

EVENT='{"context":{"version":"0.4.1","id":"pgbench","source":"/bench/http","type":"dev.cdevents.service.deployed.0.2.0","timestamp":"2024-05-01T10:00:00Z"},"subject":{"id":"svc/bench","source":"/bench/http","type":"service","content":{"environment":{"id":"prod"},"artifactId":"pkg:oci/app@sha256%3A0b31b1c02ff458ad9b7b81cbdf8f028bd54699fa151f221d1e8de6817db93427"}}}'

$PSQL <<SQL
DROP TABLE IF EXISTS bench_http_baseline;
CREATE TABLE bench_http_baseline (LIKE cdviz.cdevents_lake INCLUDING DEFAULTS INCLUDING INDEXES);
SQL

# one INSERT of the event per transaction, ids unique per client
cat > "$TMP/insert.sql" <<SQL
INSERT INTO bench_http_baseline ("timestamp", context_id, context_source, type, subject, predicate,
  type_version, spec_version, subject_id, payload)
VALUES ('2024-05-01T10:00:00Z', 'pgb-' || :client_id || '-' || nextval('cdviz.cdevents_lake_id_seq'),
  '/bench/http', 'dev.cdevents.service.deployed.0.2.0', 'service', 'deployed', '0.2.0', '0.4.1',
  'svc/bench', '$EVENT'::jsonb)
ON CONFLICT DO NOTHING;
SQL

wrk_run() {
	# $1 batch size; prints rps p50 p99 non201
	BATCH=$1 RUN_ID="$(date +%s%N)" wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" \
		--latency -s "$HERE/http_post.lua" "$URL" > "$TMP/wrk.out"
	awk '/^rps /{r=$2} /^p50_ms /{a=$2} /^p99_ms /{b=$2} /^non201 /{n=$2} END{print r, a, b, n}' "$TMP/wrk.out"
}

percentile() {
	# $1: pgbench transaction logs (4th column = latency in us); $2 percent
	cat "$TMP"/pgbench_log.* | awk '{print $3}' | sort -n | awk -v p="$2" \
		'{v[NR]=$1} END{i=int(NR*p/100); if (i<1) i=1; printf "%.3f", v[i]/1000}'
}

echo "== run 1: one event per request, $CONNECTIONS connections, ${DURATION}s"
set -- $(wrk_run 1)
HTTP_RPS=$1 HTTP_P50=$2 HTTP_P99=$3 HTTP_BAD=$4
(cd "$TMP" && $PGBENCH -n -c "$CONNECTIONS" -j "$THREADS" -T "$DURATION" -l -f insert.sql > pgbench.out)
PGB_TPS=$(awk '/^tps = /{print $3; exit}' "$TMP/pgbench.out")
PGB_P50=$(percentile x 50)
PGB_P99=$(percentile x 99)
rm -f "$TMP"/pgbench_log.*
printf '%-34s %10s %10s %10s\n' "" "events/s" "p50 ms" "p99 ms"
printf '%-34s %10.0f %10s %10s\n' "http worker (wrk, 1 event/req)" "$HTTP_RPS" "$HTTP_P50" "$HTTP_P99"
printf '%-34s %10.0f %10s %10s\n' "pgbench (1 INSERT per commit)" "$PGB_TPS" "$PGB_P50" "$PGB_P99"
R1=$(awk -v a="$HTTP_RPS" -v b="$PGB_TPS" 'BEGIN{printf "%.2f", a/b}')
echo "ratio http/pgbench: $R1 (goal >= 1.5); answers other than 201: $HTTP_BAD"

echo "== run 2: $BATCH_SIZE events per request, $CONNECTIONS connections, ${DURATION}s"
set -- $(wrk_run "$BATCH_SIZE")
BATCH_RPS=$1 BATCH_P50=$2 BATCH_P99=$3 BATCH_BAD=$4
BATCH_EPS=$(awk -v a="$BATCH_RPS" -v b="$BATCH_SIZE" 'BEGIN{printf "%.0f", a*b}')
# the ceiling: the same rows in one INSERT ... SELECT per BATCH_SIZE*100 rows
ROWS=$((BATCH_SIZE * 100))
CEIL_MS=$($PSQL <<SQL | awk '/^Time:/{print $2}' | tail -1
TRUNCATE bench_http_baseline;
\timing on
INSERT INTO bench_http_baseline ("timestamp", context_id, context_source, type, subject, predicate,
  type_version, spec_version, subject_id, payload)
SELECT '2024-05-01T10:00:00Z', 'ceil-' || g, '/bench/http', 'dev.cdevents.service.deployed.0.2.0',
  'service', 'deployed', '0.2.0', '0.4.1', 'svc/bench',
  jsonb_set('$EVENT'::jsonb, '{context,id}', to_jsonb('ceil-' || g))
FROM generate_series(1, $ROWS) g;
SQL
)
CEIL_EPS=$(awk -v r="$ROWS" -v ms="$CEIL_MS" 'BEGIN{printf "%.0f", r/(ms/1000)}')
printf '%-34s %10s %10s %10s\n' "" "events/s" "p50 ms" "p99 ms"
printf '%-34s %10s %10s %10s\n' "http worker (wrk, $BATCH_SIZE events/req)" "$BATCH_EPS" "$BATCH_P50" "$BATCH_P99"
printf '%-34s %10s %10s %10s\n' "INSERT ... SELECT ceiling" "$CEIL_EPS" "-" "-"
R2=$(awk -v a="$BATCH_EPS" -v b="$CEIL_EPS" 'BEGIN{printf "%.2f", a/b}')
echo "ratio http batches/ceiling: $R2 (goal >= 0.6); answers other than 201: $BATCH_BAD"

$PSQL <<SQL
DROP TABLE bench_http_baseline;
DELETE FROM cdviz.cdevents_lake WHERE context_source = '/bench/http';
SQL
