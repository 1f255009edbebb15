#!/usr/bin/env bash
# bench/dispatch.sh — the dispatcher's delivery rates against the ingest rate
# of the same events, and what sinks cost ingestion.
#
#   bench/dispatch.sh [N]          default N = 200000 events
#
# Run it as an unprivileged user (PostgreSQL refuses root).  It starts its
# own servers on loopback and removes them at the end: a PostgreSQL cluster
# with cdviz preloaded (the dispatcher serves database "bench"), nginx
# answering 204 to every POST (Debian package nginx or nginx-light), and
# nats-server with JetStream.
#
# 1. N generated events (bench/gen_events.sql) are prepared three times, as
#    sets A, B and C (same events, other context ids), in batches of BATCH
#    (5000) events assembled before timing.
# 2. Set A is ingested through cdviz.ingest_batch with no sink: it creates
#    the summary rows, so that B and C do the same work after it.
# 3. Three sinks are created paused (http binary, http batch of 100,
#    JetStream), so that the outbox trigger records every statement.  Sets
#    B and C are then ingested interleaved batch by batch (B first in even
#    pairs, C first in odd ones), B with the outbox trigger and C without
#    it (disabled for C's batches: what ingestion costs with no sink, less
#    even the EXISTS check), so that the machine's noise hits both alike.
#    Ratio of the rates: goal >= 0.9.
# 4. Each sink is resumed alone and timed until it delivered the N events
#    of set B; its rate is printed against the rate at which set B was
#    ingested (goal: batch mode and JetStream >= 1.0).
set -eu

# shellcheck source=bench/cluster.sh
. "$(dirname "$0")/cluster.sh"
bench_sink_env 200000 "$@"
HTTPPORT=$((PGPORT + 1))
NATSPORT=$((PGPORT + 2))
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
NATS=${NATS:-$(command -v nats-server || echo /usr/sbin/nats-server)}

[ -x "$NGINX" ] || { echo "bench: nginx is missing (apt-get install nginx-light)" >&2; exit 1; }
[ -x "$NATS" ] || { echo "bench: nats-server is missing (apt-get install nats-server)" >&2; exit 1; }

cleanup() {
	[ -f "$TMP/nginx.pid" ] && kill "$(cat "$TMP/nginx.pid")" 2>/dev/null || true
	[ -n "${NATS_PID:-}" ] && kill "$NATS_PID" 2>/dev/null || true
	bench_cluster_stop "$TMP"
	rm -rf "$TMP"
}
trap cleanup EXIT

# ---- servers ---------------------------------------------------------------
bench_cluster_start "$TMP" "$PGPORT" bench \
	"cdviz.nats_url = 'nats://127.0.0.1:$NATSPORT'" \
	"cdviz.dispatch_chunk = 5000" \
	"cdviz.dispatch_interval = 100"

mkdir -p "$TMP/nginx"
cat > "$TMP/nginx.conf" <<CONF
daemon on;
worker_processes 1;
pid $TMP/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 1024; }
http {
	access_log off;
	client_body_temp_path $TMP/nginx/body;
	proxy_temp_path $TMP/nginx/proxy;
	fastcgi_temp_path $TMP/nginx/fastcgi;
	uwsgi_temp_path $TMP/nginx/uwsgi;
	scgi_temp_path $TMP/nginx/scgi;
	client_max_body_size 64m;
	client_body_buffer_size 4m;
	keepalive_requests 1000000;
	server {
		listen 127.0.0.1:$HTTPPORT;
		location / { return 204; }
	}
}
CONF
"$NGINX" -q -e "$TMP/nginx/error.log" -p "$TMP/nginx" -c "$TMP/nginx.conf"

"$NATS" -js -sd "$TMP/js" -a 127.0.0.1 -p "$NATSPORT" >"$TMP/nats.log" 2>&1 &
NATS_PID=$!
sleep 1
perl -I "$ROOT/test/t" -MMiniNats -e '
	my $c = MiniNats->new($ARGV[0]);
	my $r = $c->request(q($JS.API.STREAM.CREATE.BENCH),
		q({"name":"BENCH","subjects":["bench.>"],"storage":"file","duplicate_window":120000000000}));
	die "stream: $r->{error}{description}\n" if $r->{error};' "$NATSPORT"

# ---- events ----------------------------------------------------------------
$PSQL -d postgres -c "CREATE DATABASE bench"
$PSQL -c "CREATE EXTENSION cdviz"
echo "generating $N events ..."
$PSQL -v n="$N" -v target=staging -v staging=bench_events -f "$ROOT/bench/gen_events.sql" >/dev/null
bench_prepare_sets "$BATCH" a b c
$PSQL <<SQL
-- B with the outbox, C without, batch by batch, alternating which goes first
CREATE PROCEDURE bench_interleaved() LANGUAGE plpgsql AS \$\$
DECLARE
	t0 timestamptz;
	r record;
	i int;
	k int;
	s text;
	secs float8[] := '{0,0}';
BEGIN
	FOR i IN SELECT n FROM bench_batches WHERE set = 'b' ORDER BY n LOOP
		FOR k IN 0..1 LOOP
			s := CASE WHEN (i + k) % 2 = 0 THEN 'b' ELSE 'c' END;
			IF s = 'b' THEN
				ALTER TABLE cdviz.cdevents_lake ENABLE TRIGGER lake_record_batch;
			ELSE
				ALTER TABLE cdviz.cdevents_lake DISABLE TRIGGER lake_record_batch;
			END IF;
			COMMIT;
			t0 := clock_timestamp();
			SELECT * INTO r FROM cdviz.ingest_batch((SELECT events FROM bench_batches WHERE set = s AND n = i));
			COMMIT;
			secs[CASE s WHEN 'b' THEN 1 ELSE 2 END] := secs[CASE s WHEN 'b' THEN 1 ELSE 2 END]
				+ extract(epoch FROM clock_timestamp() - t0);
		END LOOP;
	END LOOP;
	ALTER TABLE cdviz.cdevents_lake ENABLE TRIGGER lake_record_batch;
	INSERT INTO bench_times VALUES ('ingest b', secs[1]), ('ingest c', secs[2]);
	COMMIT;
END
\$\$;
CHECKPOINT;
SQL
N=$($PSQL -c "SELECT count(*) FROM bench_events")

# ---- ingestion without and with sinks ----------------------------------------
echo "ingesting set A, no sink ..."
$PSQL -c "CALL bench_ingest('a')"
$PSQL -c "CHECKPOINT"
$PSQL <<SQL >/dev/null
SELECT cdviz.create_sink('binary', 'http', 'http://127.0.0.1:$HTTPPORT/binary', paused => true);
SELECT cdviz.create_sink('batch', 'http', 'http://127.0.0.1:$HTTPPORT/batch',
						 '{"mode": "batch", "batch_size": 100}', paused => true);
SELECT cdviz.create_sink('jetstream', 'nats', 'bench.{subject}.{predicate}', '{"jetstream": "always"}',
						 paused => true);
SQL
echo "ingesting sets B (three sinks, paused) and C (no outbox), interleaved ..."
$PSQL -c "CALL bench_interleaved()"
$PSQL -c "CHECKPOINT"
BATCHES=$($PSQL -c "SELECT count(*), pg_size_pretty(pg_total_relation_size('cdviz.lake_batches')) FROM cdviz.lake_batches")

# ---- delivery, one sink at a time ------------------------------------------
deliver() {
	bench_deliver "$1"
	$PSQL -c "SELECT cdviz.pause_sink('$1')" >/dev/null
}
echo "delivering set B to each sink ..."
T_BIN=$(deliver binary)
T_BATCH=$(deliver batch)
T_JS=$(deliver jetstream)
$PSQL -c "SELECT cdviz.drop_sink(name) FROM cdviz.sinks" >/dev/null
ING_A=$($PSQL -c "SELECT seconds FROM bench_times WHERE what = 'ingest a'")
ING_B=$($PSQL -c "SELECT seconds FROM bench_times WHERE what = 'ingest b'")
ING_C=$($PSQL -c "SELECT seconds FROM bench_times WHERE what = 'ingest c'")
JS_MSGS=$(perl -I "$ROOT/test/t" -MMiniNats -e '
	my $r = MiniNats->new($ARGV[0])->request(q($JS.API.STREAM.INFO.BENCH), "");
	print $r->{state}{messages};' "$NATSPORT")

awk -v n="$N" -v a="$ING_A" -v b="$ING_B" -v c="$ING_C" -v tb="$T_BIN" -v tt="$T_BATCH" -v tj="$T_JS" \
	-v js="$JS_MSGS" -v ob="$BATCHES" 'BEGIN {
	ri = n / b;
	printf "events: %d per set, batches of '"$BATCH"'\n", n;
	printf "ingest A, no sink (warm-up):  %7.1f s  %8.0f events/s\n", a, n / a;
	printf "ingest B, three sinks:        %7.1f s  %8.0f events/s\n", b, n / b;
	printf "ingest C, no outbox:          %7.1f s  %8.0f events/s   (interleaved with B)\n", c, n / c;
	printf "three sinks / no sink (B / C): %.2f (goal >= 0.90)\n", c / b;
	printf "outbox rows | size:           %s\n", ob;
	printf "deliver http binary:          %7.1f s  %8.0f events/s   vs ingest %.2f\n", tb, n / tb, (n / tb) / ri;
	printf "deliver http batch (100):     %7.1f s  %8.0f events/s   vs ingest %.2f (goal >= 1.0)\n", tt, n / tt, (n / tt) / ri;
	printf "deliver JetStream:            %7.1f s  %8.0f events/s   vs ingest %.2f (goal >= 1.0)\n", tj, n / tj, (n / tj) / ri;
	printf "JetStream stream holds %d messages (Nats-Msg-Id is the context id, which the generator reuses across sources)\n", js;
}'
