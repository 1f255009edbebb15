#!/usr/bin/env bash
# bench/kafka.sh — the Kafka sink's delivery rate against the ingest rate of
# the same events, in the same run.
#
#   bench/kafka.sh [N]          default N = 100000 events
#
# Run it as an unprivileged user (PostgreSQL refuses root).  It starts its
# own servers and removes them at the end: a PostgreSQL cluster with cdviz
# preloaded (the dispatcher serves database "bench") and a Kafka cluster of
# three brokers, librdkafka's mock cluster (test/kafka/mock_cluster, built
# with `make test/kafka/mock_cluster`), which keeps its messages in memory:
# hence a smaller default N than bench/dispatch.sh.
#
# 1. N generated events (bench/gen_events.sql) are prepared twice, as sets
#    A and B (same events, other context ids), in batches of BATCH (5000)
#    events assembled before timing.
# 2. Set A is ingested through cdviz.ingest_batch with no sink: it creates
#    the summary rows, so that B does the same work after it.
# 3. A kafka sink (binary mode, key = subject id, topic of 8 partitions,
#    replication factor 3, acks=all) is created paused, so that the outbox
#    trigger records every statement; set B is ingested and timed.
# 4. The sink is resumed and timed until it delivered the N events of set
#    B, counted from delivery reports; its rate is printed against the rate
#    at which set B was ingested (goal >= 1.0).  kcat reads the topic back:
#    the partitions' end offsets add up to what was written (the mock
#    cluster trims each partition's log to its newest few megabytes, so
#    fewer messages are left to read than were written).
set -eu

# shellcheck source=bench/cluster.sh
. "$(dirname "$0")/cluster.sh"
bench_sink_env 100000 "$@"
MOCK=${MOCK:-$ROOT/test/kafka/mock_cluster}


# ---- servers ---------------------------------------------------------------
bench_kafka_mock bench 8 3

bench_cluster_start "$TMP" "$PGPORT" bench \
	"cdviz.dispatch_chunk = 5000" \
	"cdviz.dispatch_interval = 100"

# ---- events ----------------------------------------------------------------
$PSQL -d postgres -c "CREATE DATABASE bench"
$PSQL -c "CREATE EXTENSION cdviz"
echo "generating $N events ..."
$PSQL -v n="$N" -v target=staging -v staging=bench_events -f "$ROOT/bench/gen_events.sql" >/dev/null
bench_prepare_sets "$BATCH" a b
$PSQL -c "CHECKPOINT"
N=$($PSQL -c "SELECT count(*) FROM bench_events")

# ---- ingestion ---------------------------------------------------------------
echo "ingesting set A, no sink ..."
$PSQL -c "CALL bench_ingest('a')"
$PSQL -c "CHECKPOINT"
$PSQL -c "SELECT cdviz.create_sink('kafka', 'kafka', 'bench', '{\"brokers\": \"$BROKERS\"}', paused => true)" >/dev/null
echo "ingesting set B (kafka sink paused) ..."
$PSQL -c "CALL bench_ingest('b')"
$PSQL -c "CHECKPOINT"

# ---- delivery ------------------------------------------------------------------
echo "delivering set B to Kafka ..."
T_KAFKA=$(bench_deliver kafka)
STATUS=$($PSQL -c "SELECT delivered || ' delivered, ' || failures || ' failed attempts' FROM cdviz.sink_status WHERE name = 'kafka'")
ON_TOPIC=$(kcat -C -b "$BROKERS" -t bench -o beginning -e -q -f '%p %o\n' |
	awk '{ n++; if (!($1 in lo) || $2 < lo[$1]) lo[$1] = $2; if ($2 > hi[$1]) hi[$1] = $2 }
		 END { for (p in hi) w += hi[p] + 1; print w " (the mock keeps the newest " n " of them)" }')
ING_A=$($PSQL -c "SELECT seconds FROM bench_times WHERE what = 'ingest a'")
ING_B=$($PSQL -c "SELECT seconds FROM bench_times WHERE what = 'ingest b'")

awk -v n="$N" -v a="$ING_A" -v b="$ING_B" -v tk="$T_KAFKA" -v st="$STATUS" -v top="$ON_TOPIC" 'BEGIN {
	ri = n / b;
	printf "events: %d per set, batches of '"$BATCH"'\n", n;
	printf "ingest A, no sink (warm-up):  %7.1f s  %8.0f events/s\n", a, n / a;
	printf "ingest B, kafka sink paused:  %7.1f s  %8.0f events/s\n", b, n / b;
	printf "deliver Kafka (acks=all):     %7.1f s  %8.0f events/s   vs ingest %.2f (goal >= 1.0)\n", tk, n / tk, (n / tk) / ri;
	printf "sink_status: %s; written to the topic (sum of the partitions\047 end offsets, read by kcat): %s\n", st, top;
}'
