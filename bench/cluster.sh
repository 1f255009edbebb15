# bench/cluster.sh — sourced by the benchmarks that start their own server.
#
#   bench_cluster_start DIR PORT DB [SETTING...]
#
# initdb in DIR/pg, a unix socket in DIR only (no TCP), cdviz preloaded and
# serving database DB (its workers fold, dispatch and poll there), settings
# sized for a benchmark; each SETTING is one more postgresql.conf line.
# The log is DIR/pg.log; stop it with bench_cluster_stop DIR.
bench_cluster_start() {
	dir=$1 port=$2 db=$3
	shift 3
	"$PGBIN/initdb" -D "$dir/pg" -U postgres -A trust >/dev/null
	cat >> "$dir/pg/postgresql.conf" <<CONF
port = $port
listen_addresses = ''
unix_socket_directories = '$dir'
shared_preload_libraries = 'cdviz'
shared_buffers = 512MB
max_wal_size = 8GB
checkpoint_timeout = 30min
cdviz.database = '$db'
cdviz.http_listen_addresses = ''
CONF
	for line in "$@"; do
		echo "$line" >> "$dir/pg/postgresql.conf"
	done
	"$PGBIN/pg_ctl" -D "$dir/pg" -l "$dir/pg.log" -w start >/dev/null
}

bench_cluster_stop() {
	"$PGBIN/pg_ctl" -D "$1/pg" -m immediate stop >/dev/null 2>&1 || true
}

# bench_env DB: what every benchmark with its own server starts with.
# Refuses root (PostgreSQL does), defaults PGBIN, sets ROOT (the top of the
# tree), makes a temporary directory TMP and exports PGHOST (TMP, where the
# server's socket goes), PGPORT (from the shell's pid, so that benchmarks
# run side by side), PGUSER and PGDATABASE (DB).  The caller removes TMP.
bench_env() {
	[ "$(id -u)" -ne 0 ] || { echo "bench: run as an unprivileged user" >&2; exit 1; }
	PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
	# shellcheck disable=SC2034 # for the benchmarks that source this file
	ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
	TMP=$(mktemp -d)
	export PGHOST=$TMP PGPORT=$((20000 + $$ % 10000)) PGUSER=postgres PGDATABASE=$1
}

# bench_sink_env DEFAULT_N [N]: the settings of a benchmark of sinks
# (bench/dispatch.sh, bench/kafka.sh): N events (DEFAULT_N unless given),
# in batches of BATCH (5000 unless set in the environment), PSQL the psql
# command line (a string), then bench_env with database "bench".
# shellcheck disable=SC2034 # for the benchmarks that source this file
bench_sink_env() {
	N=${2:-$1}
	BATCH=${BATCH:-5000}
	PSQL="psql -X -q -v ON_ERROR_STOP=1 -At"
	bench_env bench
}

# bench_deliver SINK: after bench_sink_env, resumes the paused sink SINK
# and prints the seconds until cdviz.sink_status shows N events delivered.
bench_deliver() {
	$PSQL -c "SELECT cdviz.resume_sink('$1')" >/dev/null
	t0=$(date +%s.%N)
	while [ "$($PSQL -c "SELECT delivered >= $N FROM cdviz.sink_status WHERE name = '$1'")" != t ]; do
		sleep 0.2
	done
	awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { print b - a }'
}

# bench_http_cluster: the cluster of a benchmark against the HTTP receiver.
# With TMP, PGPORT and HTTP_PORT set (bench_env bench does the first two),
# starts a cluster in TMP whose receiver listens on 127.0.0.1:HTTP_PORT,
# sets URL to it, and creates database "bench" with the extension.
# shellcheck disable=SC2034 # URL is for the benchmarks that source this file
bench_http_cluster() {
	bench_cluster_start "$TMP" "$PGPORT" bench \
		"cdviz.http_listen_addresses = '127.0.0.1'" \
		"cdviz.http_port = $HTTP_PORT"
	URL=http://127.0.0.1:$HTTP_PORT
	psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE bench"
	psql -X -q -v ON_ERROR_STOP=1 -d bench -c "CREATE EXTENSION cdviz"
}

# bench_own_cluster DB [SETTING...]: the setting of a benchmark that runs
# alone.  After bench_env, starts a cluster in TMP with database DB and the
# extension created, and removes both on exit; PSQL is the psql command
# line, an array.
bench_own_cluster() {
	DB=$1
	shift
	bench_env "$DB"
	PSQL=(psql -X -q -v ON_ERROR_STOP=1)
	trap 'bench_cluster_stop "$TMP"; rm -rf "$TMP"' EXIT
	bench_cluster_start "$TMP" "$PGPORT" "$DB" "$@"
	"${PSQL[@]}" -d postgres -c "CREATE DATABASE $DB"
	"${PSQL[@]}" -d "$DB" -c "CREATE EXTENSION cdviz"
}

# bench_prepare_sets BATCH SET...
#
# In the database psql connects to (PGHOST, PGPORT, PGDATABASE): the
# events of bench_events (bench/gen_events.sql) as one set per name, the
# same events under other context ids (the first set keeps them), cut in
# batches of BATCH assembled before any timing (bench_batches); the table
# bench_times and the procedure bench_ingest(set), which ingests a set
# batch by batch with cdviz.ingest_batch, one transaction each, and
# records its time as 'ingest <set>'.
bench_prepare_sets() {
	batch=$1
	shift
	first=$1
	sets=$(printf "('%s')," "$@")
	psql -X -q -v ON_ERROR_STOP=1 <<SQL
CREATE TABLE bench_batches AS
SELECT s AS set, (seq - 1) / $batch AS n,
	   jsonb_agg(CASE WHEN s = '$first' THEN payload
				 ELSE jsonb_set(payload, '{context,id}', to_jsonb(payload->'context'->>'id' || '-' || s)) END
				 ORDER BY seq) AS events
FROM bench_events, (VALUES ${sets%,}) v(s)
GROUP BY 1, 2;
CREATE INDEX ON bench_batches (set, n);
VACUUM ANALYZE bench_batches;
CREATE TABLE bench_times (what text PRIMARY KEY, seconds float8);
CREATE PROCEDURE bench_ingest(s text) LANGUAGE plpgsql AS \$\$
DECLARE
	t0 timestamptz := clock_timestamp();
	r record;
	i int;
BEGIN
	FOR i IN SELECT n FROM bench_batches WHERE set = s ORDER BY n LOOP
		SELECT * INTO r FROM cdviz.ingest_batch((SELECT events FROM bench_batches WHERE set = s AND n = i));
		COMMIT;
	END LOOP;
	INSERT INTO bench_times VALUES ('ingest ' || s, extract(epoch FROM clock_timestamp() - t0));
	COMMIT;
END
\$\$;
SQL
}

# bench_kafka_mock TOPIC PARTITIONS REPLICATION
#
# Start librdkafka's mock cluster of three brokers ($MOCK, built by `make
# test/kafka/mock_cluster`) reading its commands from a pipe kept open on
# descriptor 7, create TOPIC, and set BROKERS and MOCK_PID.  On exit the
# mock cluster, the cluster of $TMP and $TMP go.
bench_kafka_mock() {
	[ -x "$MOCK" ] || { echo "bench: $MOCK is missing (make test/kafka/mock_cluster)" >&2; exit 1; }
	command -v kcat >/dev/null || { echo "bench: kcat is missing (apt-get install kcat)" >&2; exit 1; }
	trap bench_kafka_cleanup EXIT
	mkfifo "$TMP/mock.in"
	"$MOCK" 3 <"$TMP/mock.in" >"$TMP/mock.out" 2>"$TMP/mock.log" &
	MOCK_PID=$!
	exec 7>"$TMP/mock.in"
	echo "topic $1 $2 $3" >&7
	while [ "$(wc -l <"$TMP/mock.out")" -lt 2 ]; do sleep 0.1; done
	BROKERS=$(sed -n 's/^bootstrap //p' "$TMP/mock.out")
	[ "$(sed -n 2p "$TMP/mock.out")" = ok ] || { echo "bench: topic: $(sed -n 2p "$TMP/mock.out")" >&2; exit 1; }
}

bench_kafka_cleanup() {
	[ -n "${MOCK_PID:-}" ] && kill "$MOCK_PID" 2>/dev/null || true
	exec 7>&- 2>/dev/null || true
	bench_cluster_stop "$TMP"
	rm -rf "$TMP"
}
