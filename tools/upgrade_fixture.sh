#!/usr/bin/env bash
# tools/upgrade_fixture.sh — writes the data fixture of a release for the
# upgrade test (test/t/060_upgrade.pl).
#
#   bash tools/upgrade_fixture.sh PORT DB OUT
#
# PORT/DB: a running cluster (127.0.0.1, superuser postgres) whose installed
# library IS the release (build and install that commit first), with cdviz
# preloaded and cdviz.database = DB, and the release's extension freshly
# created in DB.  The script fills DB through the release's own API
# (test/fixtures/upgrade/fill.sql), lets the workers write what only they
# write (a folder source's progress, a sink's progress, folded summaries),
# then writes OUT: every row of every table of the extension, the lake's
# partitions and the sequences' positions, as a psql script that the test
# loads into a fresh install of that release.  Run once per release; the
# output is committed (test/fixtures/upgrade/cdviz-VERSION-data.sql).
set -euo pipefail
[ $# -eq 3 ] || { sed -n '2,18s/^# \{0,1\}//p' "$0" >&2; exit 2; }
PORT=$1 DB=$2 OUT=$3
cd "$(dirname "${BASH_SOURCE[0]}")/.."
psql() { command psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres -d "$DB" "$@"; }
wait_for() {
	local i
	for i in $(seq 1 120); do
		[ "$(psql -tAc "$1")" = t ] && return 0
		sleep 0.5
	done
	echo "timed out waiting for: $1" >&2
	exit 1
}

psql -f test/fixtures/upgrade/fill.sql >/dev/null

# a folder source: one file of two events (the server's user must read it)
DIR=$(mktemp -d /tmp/cdviz-fixture.XXXXXX)
chmod 755 "$DIR"
printf '%s\n' \
	'{"context": {"id": "fs-1", "source": "/fixture/fs", "type": "dev.cdevents.build.started.0.1.1", "timestamp": "2024-03-30T10:00:00Z", "version": "0.4.1"}, "subject": {"id": "build-fs", "source": "/fixture/fs", "type": "build", "content": {}}}' \
	'{"context": {"id": "fs-2", "source": "/fixture/fs", "type": "dev.cdevents.build.finished.0.1.1", "timestamp": "2024-03-30T10:05:00Z", "version": "0.4.1"}, "subject": {"id": "build-fs", "source": "/fixture/fs", "type": "build", "content": {"artifactId": "pkg:generic/fs@1"}}}' \
	>"$DIR/builds.jsonl"
chmod 644 "$DIR/builds.jsonl"
psql -c "ALTER SYSTEM SET cdviz.fs_path = '$DIR'" -c 'SELECT pg_reload_conf()' >/dev/null
wait_for "SELECT EXISTS (SELECT FROM cdviz.fs_files WHERE status = 'read' AND events = 2)"
psql -c 'ALTER SYSTEM RESET cdviz.fs_path' -c 'SELECT pg_reload_conf()' >/dev/null
rm -rf "$DIR"

wait_for "SELECT cdviz.summaries_pending() = 0"
wait_for "SELECT pending = 0 AND delivered > 0 FROM cdviz.sink_status WHERE name = 'archive'"

VERSION=$(psql -tAc "SELECT extversion FROM pg_extension WHERE extname = 'cdviz'")
{
	echo "-- cdviz $VERSION: every row of a database filled by tools/upgrade_fixture.sh"
	echo "-- (generated; load into a fresh CREATE EXTENSION cdviz VERSION '$VERSION')."
	echo "SET session_replication_role = replica;"
	psql -tAc "SELECT format('SELECT cdviz.ensure_partition(%L);', min(\"timestamp\"))
			   FROM cdviz.cdevents_lake GROUP BY date_trunc('month', \"timestamp\" AT TIME ZONE 'UTC') ORDER BY 1"
	# every table of the extension, the lake through its parent
	psql -tAc "SELECT c.oid::regclass FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
			   WHERE d.classid = 'pg_class'::regclass AND d.deptype = 'e'
				 AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'cdviz')
				 AND c.relkind IN ('r', 'p') ORDER BY c.relname" |
		while read -r t; do
			cols=$(psql -tAc "SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute
							  WHERE attrelid = '$t'::regclass AND attnum > 0 AND NOT attisdropped")
			echo "COPY $t ($cols) FROM stdin;"
			psql -c "COPY (SELECT $cols FROM $t ORDER BY 1) TO STDOUT"
			echo '\.'
		done
	psql -tAc "SELECT format('SELECT pg_catalog.setval(%L, %s, %s);', c.oid::regclass,
					 coalesce(pg_sequence_last_value(c.oid), 1),
					 CASE WHEN pg_sequence_last_value(c.oid) IS NULL THEN 'false' ELSE 'true' END)
			   FROM pg_class c
			   WHERE c.relkind = 'S' AND c.relnamespace = 'cdviz'::regnamespace ORDER BY c.relname"
	echo "RESET session_replication_role;"
} >"$OUT"
echo "wrote $OUT ($(grep -c '^COPY' "$OUT") tables)"
