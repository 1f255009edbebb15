#!/usr/bin/env bash
# bench/kafka_source.sh — the Kafka source's ingest rate against POST
# /cdevents batches of the same events, in the same run.
#
#   bench/kafka_source.sh [N]     default N = 20000 events
#
# Run it as an unprivileged user (PostgreSQL refuses root).  It starts its
# own servers and removes them at the end: a PostgreSQL cluster with cdviz
# preloaded (database "bench", the HTTP receiver on a free loopback port)
# and librdkafka's mock cluster of three brokers (test/kafka/mock_cluster,
# built with `make test/kafka/mock_cluster`), which trims the oldest
# messages of a partition whose log grows past a few thousand messages:
# hence N's default and a topic of PARTITIONS (16) partitions (the script
# checks that nothing was trimmed).
#
# 1. N generated events (bench/gen_events.sql) are prepared three times, as
#    sets A, H and K (same events, other context ids), in batches of BATCH
#    (500, the source's default batch_size) assembled before timing.
# 2. Set A is ingested through cdviz.ingest_batch: it creates the summary
#    rows, so that H and K do the same work after it.
# 3. Set H is posted to /cdevents, one JSON array of BATCH events per
#    request, one after the other on one connection (curl): timed.
# 4. Set K, one event per message, is produced by kcat to a topic of
#    PARTITIONS partitions; then a kafka source (batch_size BATCH) is
#    created and reads it.  Its time runs from the start of its first
#    transaction to the end of its last (the events' imported_at, plus one
#    batch), so that the group join before it is not counted (the wall
#    time from create_source is printed as well).  Its rate is printed
#    against H's (goal >= 0.8).
set -eu

N=${1:-20000}
BATCH=${BATCH:-500}
PARTITIONS=${PARTITIONS:-16}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
MOCK=${MOCK:-$ROOT/test/kafka/mock_cluster}
TMP=$(mktemp -d)
PGPORT=$((20000 + $$ % 10000))
# shellcheck disable=SC2034 # bench_http_cluster listens there
HTTP_PORT=$((PGPORT + 1))
export PGHOST=$TMP PGPORT PGUSER=postgres PGDATABASE=bench
PSQL="psql -X -q -v ON_ERROR_STOP=1 -At"
# shellcheck source=bench/cluster.sh
. "$HERE/cluster.sh"

[ "$(id -u)" -ne 0 ] || { echo "bench: run as an unprivileged user" >&2; exit 1; }
command -v curl >/dev/null || { echo "bench: curl is missing" >&2; exit 1; }

now() { date +%s.%N; }

# ---- servers ---------------------------------------------------------------
bench_kafka_mock bench.in "$PARTITIONS" 1

bench_http_cluster

# ---- events ----------------------------------------------------------------
echo "generating $N events ..."
$PSQL -v n="$N" -v target=staging -v staging=bench_events -f "$ROOT/bench/gen_events.sql" >/dev/null
bench_prepare_sets "$BATCH" a h k
N=$($PSQL -c "SELECT count(*) FROM bench_events")
# set H: one request body a file; set K: one event a line
mkdir "$TMP/h"
$PSQL -c "SELECT n, events::text FROM bench_batches WHERE set = 'h' ORDER BY n" -F $'\t' |
	while IFS=$'\t' read -r n body; do printf '%s' "$body" >"$TMP/h/$(printf %06d "$n")"; done
$PSQL -c "SELECT e::text FROM bench_batches, jsonb_array_elements(events) e WHERE set = 'k' ORDER BY n" >"$TMP/k.jsonl"
CURL_ARGS=()
for f in "$TMP"/h/*; do
	[ ${#CURL_ARGS[@]} -eq 0 ] || CURL_ARGS+=(--next)
	CURL_ARGS+=(-sf -o /dev/null -H 'content-type: application/json' --data-binary "@$f" "$URL/cdevents")
done
$PSQL -c "CHECKPOINT"

echo "ingesting set A with cdviz.ingest_batch (warm-up) ..."
$PSQL -c "CALL bench_ingest('a')"
$PSQL -c "CHECKPOINT"
until curl -sf "$URL/readyz" >/dev/null; do sleep 0.2; done

# ---- HTTP --------------------------------------------------------------------
echo "posting set H to /cdevents ($(ls "$TMP/h" | wc -l) requests) ..."
t0=$(now)
curl "${CURL_ARGS[@]}"
t1=$(now)
T_HTTP=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
GOT_H=$($PSQL -c "SELECT count(*) FROM cdviz.cdevents_lake WHERE context_id LIKE '%-h'")
[ "$GOT_H" = "$N" ] || { echo "bench: /cdevents stored $GOT_H of $N" >&2; exit 1; }
$PSQL -c "CHECKPOINT"

# ---- Kafka ---------------------------------------------------------------------
echo "producing set K with kcat ..."
kcat -P -b "$BROKERS" -t bench.in -z none -l "$TMP/k.jsonl"
TRIMMED=$(kcat -C -b "$BROKERS" -t bench.in -o beginning -e -q -f '%p %o\n' |
	awk '{ if (!($1 in lo) || $2 < lo[$1]) lo[$1] = $2 } END { for (p in lo) t += lo[p]; print t + 0 }')
[ "$TRIMMED" = 0 ] || { echo "bench: the mock cluster trimmed $TRIMMED messages (lower N or raise PARTITIONS)" >&2; exit 1; }
echo "reading set K with a kafka source ..."
t0=$(now)
$PSQL -c "SELECT cdviz.create_source('bench', 'kafka', 'bench.in', '{\"brokers\": \"$BROKERS\", \"group\": \"bench\", \"batch_size\": $BATCH}')" >/dev/null
deadline=$(( $(date +%s) + 600 ))
until [ "$($PSQL -c "SELECT events >= $N FROM cdviz.source_status WHERE name = 'bench'")" = t ]; do
	[ "$(date +%s)" -lt "$deadline" ] || { echo "bench: the source stored $($PSQL -c "SELECT events FROM cdviz.source_status WHERE name = 'bench'") of $N" >&2; exit 1; }
	sleep 0.1
done
t1=$(now)
T_WALL=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
# imported_at is each transaction's start: from the first batch's to the
# last's, plus one batch (the group join before the first is not counted)
T_KAFKA=$($PSQL -c "SELECT extract(epoch FROM max(imported_at) - min(imported_at)) * count(DISTINCT imported_at) / greatest(count(DISTINCT imported_at) - 1, 1)
	FROM cdviz.cdevents_lake WHERE context_id LIKE '%-k'")
STATUS=$($PSQL -c "SELECT events || ' events, ' || duplicates || ' duplicates, ' || rejected || ' rejected, lag ' || coalesce(lag::text, '?') FROM cdviz.source_status WHERE name = 'bench'")
TXS=$($PSQL -c "SELECT count(DISTINCT imported_at) FROM cdviz.cdevents_lake WHERE context_id LIKE '%-k'")
ING_A=$($PSQL -c "SELECT seconds FROM bench_times WHERE what = 'ingest a'")

awk -v n="$N" -v a="$ING_A" -v h="$T_HTTP" -v k="$T_KAFKA" -v w="$T_WALL" -v x="$TXS" -v st="$STATUS" 'BEGIN {
	printf "events: %d per set, batches of '"$BATCH"'\n", n;
	printf "ingest_batch A (warm-up):      %7.1f s  %8.0f events/s\n", a, n / a;
	printf "POST /cdevents H:              %7.1f s  %8.0f events/s\n", h, n / h;
	printf "kafka source K:                %7.1f s  %8.0f events/s   vs /cdevents %.2f (goal >= 0.8)\n", k, n / k, (n / k) / (n / h);
	printf "(source wall time from create_source, group join included: %.1f s; %d transactions; source_status: %s)\n", w, x, st;
}'
