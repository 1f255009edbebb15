#!/usr/bin/env bash
# Poller benchmark (issue 5): a JSON Lines file of N generated events
# (default 1,000,000) picked up by the folder source settings.folder, against
# COPY of the same file into a table with one jsonb column, in the same run
# on the same throwaway cluster.  Prints both rates, the ratio (goal >= 0.5)
# and the poller's peak memory (VmHWM of its process).  For scale, the same
# rows already split into the lake's columns (as bench/ingest.sh's ceiling
# splits them) are copied into a table with the lake's indexes: what no
# ingester of this lake can beat, since it also parses, validates and runs
# the lake's trigger.
#
# The poller's time runs from the start of its first transaction on the
# file to the end of its last (events' imported_at, corrected by one
# chunk), so the discovery delay (two looks at the folder) is not counted;
# the wall time including it is printed as well.
#
# usage: bench/poll.sh [N]     (BENCH_BATCH: lines per transaction, default
#        5000; BENCH_VALIDATION: strict (default), lenient or off; as root it runs the server as the cdviz
#        user of scripts/lib.sh; it creates and removes its own cluster
#        under .run/bench-poll on a free port)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=../scripts/lib.sh
source scripts/lib.sh
N=${1:-1000000}
PORT=${BENCH_PORT:-55433}
BATCH=${BENCH_BATCH:-5000}
VALIDATION=${BENCH_VALIDATION:-strict}

WORK=$(cdviz_runtime_dir "$CDVIZ_ROOT/.run/bench-poll")
DATA=$WORK/data
IN=$WORK/in
rm -rf "$WORK"
cdviz_mkdir_owned "$(dirname "$WORK")"
cdviz_mkdir_owned "$WORK"
cdviz_mkdir_owned "$IN"
cleanup() {
	local rc=$?
	if [ "$rc" != 0 ] && [ -f "$DATA/server.log" ]; then
		echo "bench failed; last lines of the server log:" >&2
		tail -n 40 "$DATA/server.log" >&2
	fi
	cdviz_pg_stop "$DATA" || true
	rm -rf "$WORK"
}
trap cleanup EXIT

cdviz_pg_start "$DATA" "$PORT" "cdviz.http_listen_addresses = ''" \
	"cdviz.fs_path = '$IN'" "cdviz.fs_poll_interval = 1" \
	"cdviz.poll_batch_lines = $BATCH" "cdviz.validation = '$VALIDATION'" "shared_buffers = '256MB'" "max_wal_size = '4GB'"
PSQL=(cdviz_psql "$PORT" -d cdviz)
"${PSQL[@]}" -c "CREATE EXTENSION cdviz"

echo "generating $N events ..."
"${PSQL[@]}" -v n="$N" -v target=staging -v staging=bench_events -f bench/gen_events.sql >/dev/null
FILE=$WORK/events.jsonl
"${PSQL[@]}" -At -c "SELECT payload::text FROM bench_events ORDER BY seq" >"$FILE"
N=$(wc -l <"$FILE")
SIZE=$(stat -c %s "$FILE")
echo "file: $N lines, $SIZE bytes"
"${PSQL[@]}" -c "DROP TABLE bench_events" -c "CHECKPOINT"

# ---- COPY into one jsonb column (the file as it is: csv with quote and
# delimiter bytes that never occur, so each line is one value)
"${PSQL[@]}" -c "CREATE TABLE copy_target (doc jsonb)" -c "SELECT cdviz._prefer_lz4('copy_target', 'doc')"  # compressed as the lake is
t0=$(date +%s.%N)
"${PSQL[@]}" -c "\\copy copy_target FROM '$FILE' (FORMAT csv, QUOTE e'\\x01', DELIMITER e'\\x02')"
t1=$(date +%s.%N)
copy_s=$(echo "$t1 - $t0" | bc -l)
"${PSQL[@]}" -c "CHECKPOINT"

# ---- the ceiling of any ingester: the same events, already split into the
# lake's columns (untimed), copied (COPY: batched heap inserts) into a table
# with the lake's columns and indexes (no trigger, no parsing, no validation)
"${PSQL[@]}" -q <<'SQL'
CREATE TABLE ceiling_rows AS
SELECT (doc #>> '{context,timestamp}')::timestamptz AS "timestamp", doc #>> '{context,id}' AS context_id,
	   doc #>> '{context,source}' AS context_source, doc #>> '{context,type}' AS type,
	   split_part(doc #>> '{context,type}', '.', 3) AS subject, split_part(doc #>> '{context,type}', '.', 4) AS predicate,
	   array_to_string((string_to_array(doc #>> '{context,type}', '.'))[5:], '.') AS type_version,
	   coalesce(doc #>> '{context,specversion}', doc #>> '{context,version}') AS spec_version,
	   doc #>> '{subject,id}' AS subject_id, doc #>> '{context,chainId}' AS chain_id, doc AS payload
FROM copy_target;
CREATE TABLE ceiling_target (LIKE cdviz.cdevents_lake INCLUDING DEFAULTS INCLUDING INDEXES INCLUDING COMPRESSION);
SQL
COLS='"timestamp", context_id, context_source, type, subject, predicate, type_version, spec_version, subject_id, chain_id, payload'
"${PSQL[@]}" -q -c "\\copy ceiling_rows TO '$WORK/rows.copy'" -c "CHECKPOINT"
t0=$(date +%s.%N)
"${PSQL[@]}" -q -c "\\copy ceiling_target ($COLS) FROM '$WORK/rows.copy'"
t1=$(date +%s.%N)
rm -f "$WORK/rows.copy"
ceil_s=$(echo "$t1 - $t0" | bc -l)
nidx=$("${PSQL[@]}" -At -c "SELECT count(*) FROM pg_index WHERE indrelid = 'ceiling_target'::regclass")
"${PSQL[@]}" -q -c "DROP TABLE ceiling_rows, ceiling_target" -c "CHECKPOINT"

# ---- the poller: the file appears in its folder at once (rename)
pid=$("${PSQL[@]}" -At -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'cdviz source settings.folder'")
[ -n "$pid" ] || cdviz_die "no worker for the source settings.folder"
cp "$FILE" "$IN/.events.jsonl.tmp"
if cdviz_is_root; then chown "$CDVIZ_USER:" "$IN/.events.jsonl.tmp"; fi
t0=$(date +%s.%N)
mv "$IN/.events.jsonl.tmp" "$IN/events.jsonl"
until [ "$("${PSQL[@]}" -At -c "SELECT status = 'read' AND read_offset = size FROM cdviz.fs_files WHERE path = '$IN/events.jsonl'")" = t ]; do
	sleep 0.2
done
t1=$(date +%s.%N)
wall_s=$(echo "$t1 - $t0" | bc -l)
hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
anon=$(awk '/^RssAnon/ {print $2}' "/proc/$pid/status")
read -r stored rejected chunks span <<<"$("${PSQL[@]}" -At -F ' ' -c "
	SELECT f.events, f.rejected, ceil(f.lines_read::numeric / $BATCH),
		   extract(epoch FROM max(l.imported_at) - min(l.imported_at))
	FROM cdviz.fs_files f, cdviz.cdevents_lake l
	WHERE f.path = '$IN/events.jsonl' GROUP BY f.events, f.rejected, f.lines_read")"
[ "$stored" = "$N" ] || cdviz_warn "the poller stored $stored events of $N ($rejected rejected)"
# imported_at is each transaction's start: add one chunk for the last one
poll_s=$(echo "$span * $chunks / ($chunks - 1)" | bc -l)

awk -v n="$N" -v size="$SIZE" -v c="$copy_s" -v p="$poll_s" -v w="$wall_s" -v hwm="$hwm" -v anon="$anon" -v b="$BATCH" -v v="$VALIDATION" -v ce="$ceil_s" -v ni="$nidx" 'BEGIN {
	printf "events: %d (%.0f MB), poller chunks of %d lines, validation %s\n", n, size / 1048576, b, v;
	printf "COPY into (doc jsonb):  %7.1f s  %9.0f events/s\n", c, n / c;
	printf "cdviz poller:           %7.1f s  %9.0f events/s  (wall %.1f s with discovery)\n", p, n / p, w;
	printf "ceiling: COPY of the rows into a table with the lake'"'"'s %d indexes: %7.1f s  %9.0f events/s (ceiling / COPY %.2f)\n", ni, ce, n / ce, c / ce;
	printf "ratio poller / COPY: %.2f (goal >= 0.50); poller / ceiling: %.2f\n", (n / p) / (n / c), (n / p) / (n / ce);
	printf "poller peak memory: VmHWM %.1f MB (RssAnon now %.1f MB; VmHWM counts shared buffers it touched)\n", hwm / 1024, anon / 1024;
}'
