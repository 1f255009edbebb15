#!/usr/bin/env bash
# bench/sources.sh — sources that read what tools leave behind, against
# POST /cdevents of the events they produce, in the same run.
#
#   bench/sources.sh [FILES] [CASES]     default 1000 reports of 200 cases
#
# Run it as an unprivileged user (PostgreSQL refuses root).  It starts its
# own PostgreSQL cluster with cdviz preloaded (database "bench", the HTTP
# receiver on a free loopback port) and removes it at the end.
#
# JUnit reports (bench/gen_junit.pl: Maven Surefire's shape, its JVM
# properties, 4% of the cases failing with a stack trace, 1% erring, 3%
# skipped), read by folder sources with format junit; each report gives
# CASES + 1 events (its cases and its suite).
#
# 1. The reports are generated once and copied into folders a and j.
# 2. Source a reads folder a (warm-up: it creates the summary rows, so that
#    the timed sides do the same work after it).  Its events, with "/a/"
#    made "/h/" in their ids and source (same sizes), become the bodies of
#    set H, one JSON array per report.
# 3. Set H is posted to /cdevents, one report's events per request, one
#    request after the other on one connection (curl): timed.
# 4. Source j reads folder j (the same reports under another path, so
#    other ids): timed from the start of its first transaction to the end
#    of its last (the events' imported_at, plus one report), so that the
#    two looks at the folder before a file is read (poll_interval 1 s) are
#    not counted; the wall time from create_source is printed as well.
#    Its rate is printed against H's (goal >= 0.5).
# 5. bench/sources_oci.sh, when present, runs the registry part on the same
#    cluster (see below).
set -eu

FILES=${1:-1000}
CASES=${2:-200}
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/cluster.sh
. "$HERE/cluster.sh"
bench_env bench
HTTP_PORT=$((PGPORT + 1))
PSQL="psql -X -q -v ON_ERROR_STOP=1 -At"
command -v curl >/dev/null || { echo "bench: curl is missing" >&2; exit 1; }
trap 'bench_cluster_stop "$TMP"; rm -rf "$TMP"' EXIT

now() { date +%s.%N; }
seconds() { awk -v a="$1" -v b="$2" 'BEGIN { print b - a }'; }

# wait_source NAME COUNT: until source NAME has stored COUNT events (10 min at most)
wait_source() {
	deadline=$(($(date +%s) + 600))
	until [ "$($PSQL -c "SELECT events + rejected >= $2 FROM cdviz.source_status WHERE name = '$1'")" = t ]; do
		[ "$(date +%s)" -lt "$deadline" ] || {
			echo "bench: source $1 stored $($PSQL -c "SELECT events FROM cdviz.source_status WHERE name = '$1'") of $2" >&2
			exit 1
		}
		sleep 0.2
	done
	REJECTED=$($PSQL -c "SELECT rejected FROM cdviz.source_status WHERE name = '$1'")
	[ "$REJECTED" = 0 ] || { echo "bench: source $1 rejected $REJECTED events" >&2; exit 1; }
}

# ---- server ------------------------------------------------------------------
bench_cluster_start "$TMP" "$PGPORT" bench \
	"cdviz.http_listen_addresses = '127.0.0.1'" \
	"cdviz.http_port = $HTTP_PORT"
URL=http://127.0.0.1:$HTTP_PORT
$PSQL -d postgres -c "CREATE DATABASE bench"
$PSQL -c "CREATE EXTENSION cdviz"

# ---- reports -----------------------------------------------------------------
echo "generating $FILES JUnit reports of $CASES cases ..."
perl "$HERE/gen_junit.pl" "$TMP/gen" "$FILES" "$CASES"
BYTES=$(du -sb "$TMP/gen" | cut -f1)
N=$((FILES * (CASES + 1)))
cp -r "$TMP/gen" "$TMP/a"
cp -r "$TMP/gen" "$TMP/j"
SOURCE_OPTIONS='{"format": "junit", "poll_interval": 1}'

echo "reading folder a (warm-up) ..."
$PSQL -c "SELECT cdviz.create_source('a', 'folder', '$TMP/a', '$SOURCE_OPTIONS')" >/dev/null
wait_source a "$N"
$PSQL -c "SELECT cdviz.drop_source('a')" >/dev/null
GOT_A=$($PSQL -c "SELECT count(*) FROM cdviz.cdevents_lake WHERE context_source = 'file://$TMP/a'")
[ "$GOT_A" = "$N" ] || { echo "bench: source a stored $GOT_A of $N events" >&2; exit 1; }

# set H: one request body a report, the events in the order stored
mkdir "$TMP/h"
$PSQL -F $'\t' -c "
	SELECT lpad((row_number() OVER (ORDER BY split_part(context_id, '#', 1)))::text, 6, '0'),
		   replace(jsonb_agg(payload ORDER BY id)::text, '$TMP/a', '$TMP/h')
	FROM cdviz.cdevents_lake WHERE context_source = 'file://$TMP/a'
	GROUP BY split_part(context_id, '#', 1)" |
	awk -F '\t' -v dir="$TMP/h" '{ f = dir "/" $1 ".json"; printf "%s", $2 > f; close(f) }'
CURL_ARGS=()
for f in "$TMP"/h/*; do
	[ ${#CURL_ARGS[@]} -eq 0 ] || CURL_ARGS+=(--next)
	CURL_ARGS+=(-sf -o /dev/null -H 'content-type: application/json' --data-binary "@$f" "$URL/cdevents")
done
$PSQL -c "CHECKPOINT"
until curl -sf "$URL/readyz" >/dev/null; do sleep 0.2; done

# ---- POST /cdevents ------------------------------------------------------------
echo "posting set H to /cdevents ($FILES requests) ..."
t0=$(now)
curl "${CURL_ARGS[@]}"
T_HTTP=$(seconds "$t0" "$(now)")
GOT_H=$($PSQL -c "SELECT count(*) FROM cdviz.cdevents_lake WHERE context_source = 'file://$TMP/h'")
[ "$GOT_H" = "$N" ] || { echo "bench: /cdevents stored $GOT_H of $N" >&2; exit 1; }
$PSQL -c "CHECKPOINT"

# ---- folder source, format junit ------------------------------------------------
echo "reading folder j with a folder source (format junit) ..."
t0=$(now)
$PSQL -c "SELECT cdviz.create_source('j', 'folder', '$TMP/j', '$SOURCE_OPTIONS')" >/dev/null
wait_source j "$N"
T_WALL=$(seconds "$t0" "$(now)")
# imported_at is each transaction's start, one report each: from the first
# to the last, plus one report
read -r T_JUNIT TXS <<<"$($PSQL -F ' ' -c "
	SELECT extract(epoch FROM max(imported_at) - min(imported_at)) * count(DISTINCT imported_at)
			 / greatest(count(DISTINCT imported_at) - 1, 1),
		   count(DISTINCT imported_at)
	FROM cdviz.cdevents_lake WHERE context_source = 'file://$TMP/j'")"
GOT_J=$($PSQL -c "SELECT count(*) FROM cdviz.cdevents_lake WHERE context_source = 'file://$TMP/j'")
[ "$GOT_J" = "$N" ] || { echo "bench: source j stored $GOT_J of $N" >&2; exit 1; }
SIZES=$($PSQL -c "SELECT string_agg(right(context_source, 1) || ' ' || round(avg), ', ' ORDER BY context_source)
	FROM (SELECT context_source, avg(length(payload::text)) FROM cdviz.cdevents_lake GROUP BY 1) s")

awk -v n="$N" -v f="$FILES" -v c="$CASES" -v b="$BYTES" -v e="$SIZES" -v h="$T_HTTP" -v j="$T_JUNIT" \
	-v w="$T_WALL" -v x="$TXS" 'BEGIN {
	printf "reports: %d of %d cases, %.1f MB of XML; %d events per set, bytes per event (sets a, h, j): %s\n", f, c, b / 1048576, n, e;
	printf "POST /cdevents H (a report per request): %7.1f s  %8.0f events/s\n", h, n / h;
	printf "folder source, junit J:                  %7.1f s  %8.0f events/s  %6.1f MB/s  vs /cdevents %.2f (goal >= 0.5)\n",
		j, n / j, b / 1048576 / j, (n / j) / (n / h);
	printf "(source wall time from create_source, two looks at the folder included: %.1f s; %d transactions)\n", w, x;
}'

# ---- the registry part -----------------------------------------------------------
# bench/sources_oci.sh (an OCI registry of many tags scanned by an oci
# source) runs here when present, on this cluster: it inherits PGHOST,
# PGPORT, PGUSER, PGDATABASE, PGBIN, TMP (its scratch space, removed on
# exit) and HTTP_PORT (taken: pick others above it), and prints its own
# lines.
if [ -f "$HERE/sources_oci.sh" ]; then
	export PGBIN TMP HTTP_PORT
	bash "$HERE/sources_oci.sh"
fi
