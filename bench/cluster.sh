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

# bench_own_cluster DB [SETTING...]: the setting of a benchmark that runs
# alone.  Refuses root (PostgreSQL does), makes a temporary directory TMP,
# starts a cluster there (PGHOST, PGPORT, PGUSER exported) with database DB
# and the extension created, and removes both on exit; PSQL is the psql
# command line, an array.
bench_own_cluster() {
	[ "$(id -u)" -ne 0 ] || { echo "bench: run as an unprivileged user" >&2; exit 1; }
	DB=$1
	shift
	PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
	TMP=$(mktemp -d)
	export PGHOST=$TMP PGPORT=$((20000 + $$ % 10000)) PGUSER=postgres
	PSQL=(psql -X -q -v ON_ERROR_STOP=1)
	trap 'bench_cluster_stop "$TMP"; rm -rf "$TMP"' EXIT
	bench_cluster_start "$TMP" "$PGPORT" "$DB" "$@"
	"${PSQL[@]}" -d postgres -c "CREATE DATABASE $DB"
	"${PSQL[@]}" -d "$DB" -c "CREATE EXTENSION cdviz"
}
