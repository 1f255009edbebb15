#!/usr/bin/env bash
# scripts/run.sh — builds, installs and starts cdviz with demo data.
#
#   bash scripts/run.sh          install deps, build, install, start the cluster
#                                in .run/pgdata (port ${CDVIZ_PGPORT:-5455}) with
#                                cdviz preloaded, create database and extension,
#                                load demo events, and leave the server running
#   bash scripts/run.sh stop     stop that cluster
#   bash scripts/run.sh status   say whether it runs
#
# As root the server runs as the unprivileged user "cdviz" (see
# scripts/lib.sh).  The server log is .run/pgdata/server.log; cdviz settings
# are in .run/pgdata/cdviz.conf (SELECT pg_reload_conf() after editing).

set -euo pipefail
umask 022

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PORT=${CDVIZ_PGPORT:-5455}
cdviz_ensure_user
PGDATA_DIR=$(cdviz_runtime_dir "$CDVIZ_ROOT/.run/pgdata")

case "${1:-start}" in
start) ;;
stop)
	if cdviz_pg_running "$PGDATA_DIR"; then
		cdviz_pg_stop "$PGDATA_DIR"
	else
		echo "cdviz cluster ($PGDATA_DIR) is not running"
	fi
	exit 0
	;;
status)
	if cdviz_pg_running "$PGDATA_DIR"; then
		echo "cdviz cluster running: data $PGDATA_DIR, port $(sed -n 's/^port = \([0-9]*\).*/\1/p' "$PGDATA_DIR/postgresql.conf" | tail -n 1)"
		exit 0
	fi
	echo "cdviz cluster ($PGDATA_DIR) is not running"
	exit 3
	;;
-h | --help) sed -n '2,13s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; exit 0 ;;
*) echo "usage: $0 [start|stop|status]" >&2; exit 2 ;;
esac

cdviz_install_deps || cdviz_die "installing dependencies failed"
cdviz_build_install || cdviz_die "build failed: nothing started"

# Stop the cluster again if this run started it and then failed.
STARTED_HERE=0
on_exit() {
	local rc=$?
	if [ "$rc" != 0 ] && [ "$STARTED_HERE" = 1 ]; then
		cdviz_warn "startup failed: stopping the cluster again"
		cdviz_pg_stop "$PGDATA_DIR"
	fi
}
trap on_exit EXIT

postmaster_pid() { head -n 1 "$PGDATA_DIR/postmaster.pid" 2>/dev/null || true; }
OLD_PID=""
if cdviz_pg_running "$PGDATA_DIR"; then OLD_PID=$(postmaster_pid); else STARTED_HERE=1; fi
cdviz_pg_start "$PGDATA_DIR" "$PORT" || cdviz_die "could not start PostgreSQL"

# A server that ran before this build still has the old library: restart it.
if [ -n "$OLD_PID" ] && [ "$(postmaster_pid)" = "$OLD_PID" ]; then
	cdviz_log "cluster was already running: restarting it to load the freshly installed cdviz"
	(cd / && cdviz_runas "$CDVIZ_PGBIN/pg_ctl" -D "$PGDATA_DIR" -l "$PGDATA_DIR/server.log" \
		-m fast -w -t 60 restart >/dev/null) || cdviz_die "restart failed, see $PGDATA_DIR/server.log"
fi

cdviz_log "creating (or updating) extension cdviz in database cdviz"
cdviz_psql "$PORT" -d cdviz <<'SQL'
CREATE EXTENSION IF NOT EXISTS cdviz;
DO $$
BEGIN
	-- keep the installed extension at the newest version shipped
	IF (SELECT extversion FROM pg_extension WHERE extname = 'cdviz')
	   IS DISTINCT FROM (SELECT default_version FROM pg_available_extensions WHERE name = 'cdviz') THEN
		ALTER EXTENSION cdviz UPDATE;
	END IF;
END
$$;
-- the login role Grafana (or any reader) uses
DO $$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'cdviz_grafana') THEN
		CREATE ROLE cdviz_grafana LOGIN PASSWORD 'cdviz';
	ELSE
		ALTER ROLE cdviz_grafana LOGIN PASSWORD 'cdviz';
	END IF;
END
$$;
GRANT cdviz_reader TO cdviz_grafana;
ALTER ROLE cdviz_grafana IN DATABASE cdviz SET search_path = cdviz, public;
SQL

DEMO_OK=1
DEMO="$CDVIZ_ROOT/scripts/demo_events.sql"
if [ -f "$DEMO" ]; then
	cdviz_log "loading demo events (scripts/demo_events.sql)"
	if ! (cd "$CDVIZ_ROOT" && cdviz_psql "$PORT" -d cdviz -f "$DEMO"); then
		cdviz_warn "loading scripts/demo_events.sql failed"
		DEMO_OK=0
	fi
else
	echo "note: scripts/demo_events.sql does not exist yet: no demo events loaded"
fi

HTTP_PORT=$(cdviz_psql "$PORT" -d cdviz -tAc 'SHOW cdviz.http_port' 2>/dev/null || true)
# On a new cluster the workers started before database cdviz existed; they
# start again a few seconds later (CDVIZ_WORKER_RETRY_SECONDS).  Say that the
# receiver listens only once it answers.
HTTP_READY=0
if [ -n "$HTTP_PORT" ] && [ "$HTTP_PORT" != 0 ]; then
	for _ in $(seq 60); do
		if curl -sf -o /dev/null "http://localhost:$HTTP_PORT/readyz"; then
			HTTP_READY=1
			break
		fi
		sleep 0.5
	done
	[ "$HTTP_READY" = 1 ] || cdviz_warn "the HTTP receiver does not answer on port $HTTP_PORT yet; see $PGDATA_DIR/server.log"
fi
ADMIN_URL="postgresql://$CDVIZ_PGSUPERUSER@127.0.0.1:$PORT/cdviz"
READER_URL="postgresql://cdviz_grafana:cdviz@127.0.0.1:$PORT/cdviz"

# The example queries (the README mirrors them).
read -r -d '' EXAMPLES <<'SQL' || true
-- events stored, per subject and predicate
SELECT subject, predicate, count(*) AS events, max("timestamp") AS latest
FROM cdviz.cdevents_lake GROUP BY 1, 2 ORDER BY events DESC LIMIT 12;

-- what runs where: the artifact currently deployed per environment and service
SELECT environment_id, service_id, version, deployed_at
FROM cdviz.environment_inventory ORDER BY 1, 2 LIMIT 12;

-- the ten latest deployments
SELECT "timestamp", action, environment_id, service_id, package_version
FROM cdviz.deployments ORDER BY "timestamp" DESC LIMIT 10;
SQL

# Run the examples as the reader, skipping views that do not exist yet.
echo
echo "Results (as cdviz_grafana):"
run_example() {
	local rel=$1 sql=$2
	if [ "$(cdviz_psql "$PORT" -d cdviz -tAc "SELECT to_regclass('$rel') IS NOT NULL")" = t ]; then
		"$CDVIZ_PGBIN/psql" -X -P pager=off "$READER_URL" -c "$sql" || true
	else
		echo "($rel does not exist yet)"
	fi
}
run_example cdviz.cdevents_lake \
	'SELECT subject, predicate, count(*) AS events, max("timestamp") AS latest FROM cdviz.cdevents_lake GROUP BY 1, 2 ORDER BY events DESC LIMIT 12'
run_example cdviz.environment_inventory \
	'SELECT environment_id, service_id, version, deployed_at FROM cdviz.environment_inventory ORDER BY 1, 2 LIMIT 12'
run_example cdviz.deployments \
	'SELECT "timestamp", action, environment_id, service_id, package_version FROM cdviz.deployments ORDER BY "timestamp" DESC LIMIT 10'


cat <<EOF

cdviz is running (PostgreSQL 15, data $PGDATA_DIR, port $PORT); it keeps
running after this script: stop it with  bash scripts/run.sh stop
  server log:     $PGDATA_DIR/server.log
  cdviz settings: $PGDATA_DIR/cdviz.conf

Connect:
  as the superuser:  psql "$ADMIN_URL"
  read-only:         psql "$READER_URL"
                     (role cdviz_grafana, password cdviz, member of cdviz_reader:
                      use this URL as the Grafana PostgreSQL data source)
EOF
if [ -n "$HTTP_PORT" ] && [ "$HTTP_PORT" != 0 ]; then
	cat <<EOF

Post CDEvents over HTTP:
  curl -i -X POST http://localhost:$HTTP_PORT/cdevents -H 'Content-Type: application/json' --data @event.json
EOF
else
	echo
	echo "HTTP receiver: not in this build yet (SHOW cdviz.http_port failed); ingest with SELECT cdviz.ingest(...)"
fi
cat <<EOF

Example queries:
$EXAMPLES
EOF

[ "$DEMO_OK" = 1 ] || cdviz_die "the server is running, but the demo events did not load (see above)"
