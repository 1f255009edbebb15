#!/usr/bin/env bash
# bench/sources_oci.sh — an oci source's scan of a registry of N tags
# (bench/sources.sh runs it for the registry part of its figures).
#
#   bench/sources_oci.sh [N] [REPOS]     default 2,000 tags in 10 repositories
#
# REG_PORT sets the registry's loopback port (default: the server's port + 1).
#
# Run it as an unprivileged user (PostgreSQL refuses root).  It starts its
# own servers and removes them at the end: a PostgreSQL cluster with cdviz
# preloaded (database "bench") and a docker-registry on a free loopback
# port, into which N images (one OCI manifest per tag, each its own digest,
# sharing two blobs) are pushed with curl, N / REPOS tags in each of
# REPOS repositories bench/r01, bench/r02...
#
# 1. An oci source with "repositories": ["bench/*"] (the catalog read,
#    then every repository's tags and a manifest HEAD per tag) and
#    "initial": "backfill" is created.  Timed: from create_source to the end
#    of its first scan (cdviz.oci_registries.first_scan_at), which stored
#    an artifact.published per tag (checked).  Goal: under a minute.
# 2. The next scan, which finds nothing new (N HEADs and no event), is
#    timed from the end of the first to its own end (the poll interval is
#    1 s, shorter than a scan, so it starts at once).
set -eu

N=${1:-2000}
REPOS=${2:-10}
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/cluster.sh
. "$HERE/cluster.sh"
bench_env bench
REG_PORT=${REG_PORT:-$((PGPORT + 1))}
REG=http://127.0.0.1:$REG_PORT
PSQL="psql -X -q -v ON_ERROR_STOP=1 -At"
REGISTRY=${REGISTRY:-/usr/bin/docker-registry}
[ -x "$REGISTRY" ] || { echo "bench: $REGISTRY is missing (apt-get install docker-registry)" >&2; exit 1; }

cleanup() {
	[ -z "${REG_PID:-}" ] || kill "$REG_PID" 2>/dev/null || true
	bench_cluster_stop "$TMP"
	rm -rf "$TMP"
}
trap cleanup EXIT

# ---- the registry ------------------------------------------------------------
cat >"$TMP/registry.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $TMP/registry
http:
  addr: 127.0.0.1:$REG_PORT
EOF
"$REGISTRY" serve "$TMP/registry.yml" >"$TMP/registry.log" 2>&1 &
REG_PID=$!
for _ in $(seq 100); do
	curl -sf -o /dev/null "$REG/v2/" && break
	sleep 0.1
done

# push a blob to repository $1 from file $2; prints its digest
push_blob() {
	local d loc
	d=sha256:$(sha256sum "$2" | cut -d' ' -f1)
	loc=$(curl -sf -D - -o /dev/null -X POST "$REG/v2/$1/blobs/uploads/" | tr -d '\r' |
		sed -n 's/^[Ll]ocation: //p')
	case $loc in /*) loc=$REG$loc ;; esac
	curl -sf -o /dev/null -X PUT -H 'content-type: application/octet-stream' \
		--data-binary "@$2" "$loc&digest=$d"
	echo "$d"
}

echo "pushing $N tags into $REPOS repositories ..."
printf '%s' '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}' >"$TMP/config"
printf '%s' 'a layer' >"$TMP/layer"
mkdir "$TMP/m"
: >"$TMP/put.cfg"
per=$((N / REPOS))
for r in $(seq -f '%02g' "$REPOS"); do
	cd_=$(push_blob "bench/r$r" "$TMP/config")
	ld=$(push_blob "bench/r$r" "$TMP/layer")
	for t in $(seq -f '%04g' "$per"); do
		f=$TMP/m/r$r-$t
		printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}],"annotations":{"tag":"%s"}}' \
			"$cd_" "$(wc -c <"$TMP/config")" "$ld" "$(wc -c <"$TMP/layer")" "t$t" >"$f"
		printf 'upload-file = "%s"\nurl = "%s"\noutput = "/dev/null"\n' "$f" "$REG/v2/bench/r$r/manifests/t$t" >>"$TMP/put.cfg"
	done
done
curl -sf -K "$TMP/put.cfg" -H 'content-type: application/vnd.oci.image.manifest.v1+json'
N=$((per * REPOS))

# ---- the scan ----------------------------------------------------------------
bench_cluster_start "$TMP" "$PGPORT" bench
$PSQL -d postgres -c "CREATE DATABASE bench"
$PSQL -c "CREATE EXTENSION cdviz"

echo "scanning $REG ($N tags) ..."
t0=$(date +%s.%N)
$PSQL -c "SELECT cdviz.create_source('bench', 'oci', '$REG', '{\"repositories\": [\"bench/*\"], \"poll_interval\": 1, \"initial\": \"backfill\"}')" >/dev/null
until [ "$($PSQL -c "SELECT count(*) FROM cdviz.oci_registries WHERE first_scan_at IS NOT NULL")" = 1 ]; do
	sleep 0.2
	if [ "$(echo "$(date +%s.%N) - $t0 > 600" | bc)" = 1 ]; then
		echo "bench: no complete scan after 10 minutes" >&2
		$PSQL -c "SELECT last_error FROM cdviz.source_status" >&2
		exit 1
	fi
done
first=$($PSQL -c "SELECT extract(epoch FROM first_scan_at) - $t0 FROM cdviz.oci_registries")
events=$($PSQL -c "SELECT count(*) FROM cdviz.cdevents_lake WHERE context_source = '$REG'")
[ "$events" = "$N" ] || { echo "bench: $events events for $N tags" >&2; exit 1; }
last1=$($PSQL -c "SELECT last_scan_at FROM cdviz.oci_registries")
until [ "$($PSQL -c "SELECT last_scan_at > '$last1' FROM cdviz.oci_registries")" = t ]; do sleep 0.2; done
second=$($PSQL -c "SELECT extract(epoch FROM last_scan_at - '$last1') FROM cdviz.oci_registries")
events2=$($PSQL -c "SELECT count(*) FROM cdviz.cdevents_lake WHERE context_source = '$REG'")

printf 'first scan:  %d tags, %d events in %.2f s (%.0f tags/s; goal: under 60 s) %s\n' "$N" "$events" "$first" \
	"$(echo "$N / $first" | bc -l)" "$([ "$(echo "$first < 60" | bc)" = 1 ] && echo PASS || echo FAIL)"
printf 'next scan:   %d tags, %d new events in %.2f s\n' "$N" "$((events2 - events))" "$second"
