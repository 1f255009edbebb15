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
# 1. The reports are generated once and copied into folder a, and in two
#    halves (by name) into folders j and k.
# 2. Source a reads folder a (warm-up: it creates the summary rows, so that
#    the timed sides do the same work after it).  Its events, with folder a
#    named h in their ids and source (same sizes), become the bodies of set
#    H, one JSON array per report, assembled before any timing.
# 3. In the order H1, J, K, H2 (so that a machine slowing down or speeding
#    up during the run favours neither side): the first half of set H is
#    posted to /cdevents, one report's events per request, one request
#    after the other on one connection (curl); a folder source reads folder
#    j, then another folder k (the same reports under other paths, hence
#    other ids); the second half of H is posted.  A source's time runs from
#    the start of its first transaction to the end of its last (the events'
#    imported_at, plus one report), so that the two looks at the folder
#    before a file is read (poll_interval 1 s) are not counted; their wall
#    time from create_source is printed as well.  The sources' rate is
#    printed against /cdevents' (goal >= 0.5), and each half's ratio.
# 5. bench/sources_oci.sh, the registry part, runs next with a cluster and
#    a docker-registry of its own.
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
bench_http_cluster

# ---- reports -----------------------------------------------------------------
echo "generating $FILES JUnit reports of $CASES cases ..."
perl "$HERE/gen_junit.pl" "$TMP/gen" "$FILES" "$CASES"
BYTES=$(du -sb "$TMP/gen" | cut -f1)
N=$((FILES * (CASES + 1)))
cp -r "$TMP/gen" "$TMP/a"
# halves: folder j gets the first half of the reports (by name), k the rest
mkdir "$TMP/j" "$TMP/k"
reports=("$TMP"/gen/*)
cp "${reports[@]:0:FILES / 2}" "$TMP/j"
cp "${reports[@]:FILES / 2}" "$TMP/k"
N_J=$(((FILES / 2) * (CASES + 1)))
N_K=$((N - N_J))
SOURCE_OPTIONS='{"format": "junit", "poll_interval": 1}'

echo "reading folder a (warm-up) ..."
$PSQL -c "SELECT cdviz.create_source('a', 'folder', '$TMP/a', '$SOURCE_OPTIONS')" >/dev/null
wait_source a "$N"
$PSQL -c "SELECT cdviz.drop_source('a')" >/dev/null
GOT_A=$($PSQL -c "SELECT count(*) FROM cdviz.cdevents_lake WHERE context_source = 'file://$TMP/a'")
[ "$GOT_A" = "$N" ] || { echo "bench: source a stored $GOT_A of $N events" >&2; exit 1; }

# set H: one request body a report (named after it), its events in the
# order stored; the requests of each half assembled before any timing
mkdir "$TMP/h"
$PSQL -F $'\t' -c "
	SELECT regexp_replace(split_part(context_id, '#', 1), '^.*/|@sha256:.*$', '', 'g'),
		   replace(jsonb_agg(payload ORDER BY id)::text, '$TMP/a', '$TMP/h')
	FROM cdviz.cdevents_lake WHERE context_source = 'file://$TMP/a'
	GROUP BY split_part(context_id, '#', 1)" |
	awk -F '\t' -v dir="$TMP/h" '{ f = dir "/" $1; printf "%s", $2 > f; close(f) }'
CURL_J=()
CURL_K=()
for f in "$TMP"/h/*; do
	args=(-sf -o /dev/null -H 'content-type: application/json' --data-binary "@$f" "$URL/cdevents")
	if [ -f "$TMP/j/${f##*/}" ]; then
		[ ${#CURL_J[@]} -eq 0 ] || CURL_J+=(--next)
		CURL_J+=("${args[@]}")
	else
		[ ${#CURL_K[@]} -eq 0 ] || CURL_K+=(--next)
		CURL_K+=("${args[@]}")
	fi
done
until curl -sf "$URL/readyz" >/dev/null; do sleep 0.2; done

# post_half NAME CURL_ARG...: post one half of set H, one request after the
# other on one connection; its seconds in T_NAME
post_half() {
	name=$1
	shift
	echo "posting half $name of set H to /cdevents ..."
	$PSQL -c "CHECKPOINT"
	t0=$(now)
	curl "$@"
	eval "T_$name=$(seconds "$t0" "$(now)")"
}

# read_half NAME COUNT: a folder source reads folder NAME (COUNT events);
# its seconds in T_NAME, from the start of its first transaction to the end
# of its last (imported_at is a transaction's start, one report each: the
# span plus one report); the wall time from create_source in W_NAME
read_half() {
	echo "reading folder $1 with a folder source (format junit) ..."
	$PSQL -c "CHECKPOINT"
	t0=$(now)
	$PSQL -c "SELECT cdviz.create_source('$1', 'folder', '$TMP/$1', '$SOURCE_OPTIONS')" >/dev/null
	wait_source "$1" "$2"
	eval "W_$1=$(seconds "$t0" "$(now)")"
	eval "T_$1=$($PSQL -c "
		SELECT extract(epoch FROM max(imported_at) - min(imported_at)) * count(DISTINCT imported_at)
				 / greatest(count(DISTINCT imported_at) - 1, 1)
		FROM cdviz.cdevents_lake WHERE context_source = 'file://$TMP/$1'")"
	got=$($PSQL -c "SELECT count(*) FROM cdviz.cdevents_lake WHERE context_source = 'file://$TMP/$1'")
	[ "$got" = "$2" ] || { echo "bench: source $1 stored $got of $2" >&2; exit 1; }
}

# ---- the two halves, in the order /cdevents, source, source, /cdevents --------
post_half h1 "${CURL_J[@]}"
read_half j "$N_J"
read_half k "$N_K"
post_half h2 "${CURL_K[@]}"
GOT_H=$($PSQL -c "SELECT count(*) FROM cdviz.cdevents_lake WHERE context_source = 'file://$TMP/h'")
[ "$GOT_H" = "$N" ] || { echo "bench: /cdevents stored $GOT_H of $N" >&2; exit 1; }
SIZES=$($PSQL -c "SELECT string_agg(set || ' ' || round(avg), ', ' ORDER BY set)
	FROM (SELECT CASE WHEN right(context_source, 2) IN ('/j', '/k') THEN 'j+k' ELSE right(context_source, 1) END AS set, avg(length(payload::text))
		  FROM cdviz.cdevents_lake GROUP BY 1) s")

# shellcheck disable=SC2154 # T_h1, T_h2, T_j, T_k, W_j, W_k are set by eval
awk -v n="$N" -v nj="$N_J" -v nk="$N_K" -v f="$FILES" -v c="$CASES" -v b="$BYTES" -v e="$SIZES" \
	-v h1="$T_h1" -v h2="$T_h2" -v j="$T_j" -v k="$T_k" -v w="$(awk -v a="$W_j" -v b="$W_k" 'BEGIN { print a + b }')" 'BEGIN {
	h = h1 + h2; s = j + k;
	printf "reports: %d of %d cases, %.1f MB of XML; %d events per set, bytes per event (sets a, h, j+k): %s\n", f, c, b / 1048576, n, e;
	printf "POST /cdevents H (a report per request): %7.1f s  %8.0f events/s\n", h, n / h;
	printf "folder sources, junit J and K:           %7.1f s  %8.0f events/s  %6.1f MB/s  vs /cdevents %.2f (goal >= 0.5)\n",
		s, n / s, b / 1048576 / s, (n / s) / (n / h);
	printf "(halves: first %.2f, second %.2f; sources'"'"' wall time from create_source, two looks at the folder included: %.1f s; %d reports, a transaction each)\n",
		(nj / j) / (nj / h1), (nk / k) / (nk / h2), w, f;
}'

# ---- the registry part -----------------------------------------------------------
# bench/sources_oci.sh: an oci source's scans of a registry of 2,000 tags,
# with its own cluster and docker-registry (it needs docker-registry installed).
if [ -x /usr/bin/docker-registry ]; then
	bash "$HERE/sources_oci.sh" "${OCI_TAGS:-2000}"
else
	echo "registry part skipped: docker-registry is not installed"
fi
