#!/bin/sh
# bench/webhooks.sh — tool webhooks against posting the CDEvents they
# produce, in the same run, on the same server.
#
#   bench/webhooks.sh [URL]        default http://127.0.0.1:8080
#
# The server is the one named by the libpq environment (PGHOST, PGPORT,
# PGDATABASE, PGUSER): the database the cdviz http worker stores into, with
# the extension created, as its owner (the bench adds a function to the
# extension for the time of the run, see below).  Options (environment):
# DELIVERIES (20000), CONNECTIONS (8), ROUNDS (4).
#
# DELIVERIES GitHub workflow_run (completed, ~22 KB) and workflow_job
# (completed, ~11 KB) deliveries, every one distinct and signed with
# HMAC-SHA256 (precomputed here, checked by the receiver), are posted to
# POST /webhooks/bench-github over CONNECTIONS keep-alive connections; the
# CDEvents 0.5.1 those deliveries produce (same type, same content, other
# ids) are posted to POST /cdevents.  The same deliveries are also posted
# to POST /webhooks/bench-constant, whose transformer makes the same event
# as the GitHub one from a template and the delivery's headers, without
# reading the body (PL/pgSQL, and a member of the extension during the
# run, so that its deliveries are written in groups as those of the
# extension's own transformers are): the difference between the two
# webhook routes is what the transformation itself costs, the rest is
# taking the delivery in (reading, checking the signature, parsing and
# keeping the body).  The three alternate in ROUNDS chunks so that they
# see the same server state.  Prints the rates, the ratio (goal >= 0.5:
# transforming may not cost more than storing) and p99 latencies.  The
# events, deliveries, routes and function the bench made are deleted at
# the end, also when it fails (the summaries those events fed keep their
# counts).  The client builds a chunk's requests before sending the
# first: it holds DELIVERIES / ROUNDS of them (16 KB each on average) in
# memory.
set -eu

URL=${1:-http://127.0.0.1:8080}
DELIVERIES=${DELIVERIES:-20000}
CONNECTIONS=${CONNECTIONS:-8}
ROUNDS=${ROUNDS:-4}
HERE=$(cd "$(dirname "$0")" && pwd)
FIXTURES="$HERE/../test/fixtures/webhooks/github"
TMP=$(mktemp -d)
WRK_PID=""
PSQL="psql -X -q -v ON_ERROR_STOP=1 -At"
THREADS=$(nproc)
[ "$THREADS" -gt "$CONNECTIONS" ] && THREADS=$CONNECTIONS
SECRET=bench-secret

curl -sf "$URL/readyz" >/dev/null || { echo "bench: $URL/readyz is not 200" >&2; exit 1; }

cleanup_sql="
SET client_min_messages = warning;
DELETE FROM cdviz.cdevents_lake WHERE context_source LIKE '/webhooks/bench-github/%'
	OR context_source LIKE '/bench/constant/%' OR context_source LIKE '/bench/direct/%';
DELETE FROM cdviz.webhook_deliveries WHERE route IN ('bench-github', 'bench-constant');
SELECT cdviz.drop_webhook('bench-github');
SELECT cdviz.drop_webhook('bench-constant');
DO \$\$ BEGIN
	IF EXISTS (SELECT FROM pg_depend
			   WHERE classid = 'pg_proc'::regclass AND deptype = 'e'
				 AND objid = to_regprocedure('cdviz.bench_constant(jsonb,jsonb)')) THEN
		ALTER EXTENSION cdviz DROP FUNCTION cdviz.bench_constant(jsonb, jsonb);
	END IF;
END \$\$;
DROP FUNCTION IF EXISTS cdviz.bench_constant(jsonb, jsonb);"
# dead rows of earlier runs would weigh on this one (VACUUM: a statement of its own)
vacuum_sql="VACUUM cdviz.cdevents_lake, cdviz.webhook_deliveries, cdviz.summary_queue"
trap '[ -n "$WRK_PID" ] && kill "$WRK_PID" 2>/dev/null; $PSQL -c "$cleanup_sql" >/dev/null 2>&1; rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM
$PSQL -c "$cleanup_sql" -c "$vacuum_sql" >/dev/null
$PSQL -c "SELECT cdviz.create_webhook('bench-github', 'cdviz.transform_github(jsonb,jsonb)', 'github', '$SECRET')" >/dev/null

# Templates with __ID__ where the run / job id goes, the signatures of every
# delivery, and the CDEvents the transformer makes of the templates (other
# source and ids, so that they are new to the lake too).
python3 - "$FIXTURES" "$TMP" "$DELIVERIES" "$SECRET" <<'PY'
import hashlib, hmac, sys
fixtures, out, n, secret = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].encode()
run = open(fixtures + '/workflow_run/completed.json', 'rb').read().replace(b'289782451', b'__ID__')
job = (open(fixtures + '/workflow_job/completed.success.with-organization.json', 'rb').read()
       .replace(b'289782451', b'__ID__').replace(b'2202229078', b'__ID__'))
open(out + '/run.json', 'wb').write(run)
open(out + '/job.json', 'wb').write(job)
with open(out + '/sigs.txt', 'w') as f:
    for i in range(n):
        kind, t = ('run', run) if i % 2 == 0 else ('job', job)
        ident = str(1000000000 + i).encode()
        f.write('%d %s %s %s\n' % (i, kind, ident.decode(),
                                   hmac.new(secret, t.replace(b'__ID__', ident), hashlib.sha256).hexdigest()))
PY
for kind in run job; do
	event=$([ $kind = run ] && echo workflow_run || echo workflow_job)
	$PSQL -v body="$(sed 's/__ID__/999000999/g' "$TMP/$kind.json")" -v event="$event" > "$TMP/cd_$kind.json" <<'SQL'
SELECT replace(jsonb_set(jsonb_set(e, '{context,id}', '"bench-direct-__ID__"'), '{context,source}',
	to_jsonb('/bench/direct/' || (e #>> '{context,source}')))::text, '999000999', '__ID__')
FROM cdviz.transform_github(jsonb_build_object('x-github-event', :'event', 'x-cdviz-route', 'bench-github'), :'body'::jsonb) e;
SQL
done
# The constant transformer: the events posted to /cdevents (their template,
# under a source of its own), the run's or the job's after the
# X-GitHub-Event header, the id from X-GitHub-Delivery, the body unread.
# PL/pgSQL, like the shipped transformers, whose compiled form and plans a
# session keeps (a SQL function's body is parsed and planned again at
# every call from the kept plan that calls it: 25 us a delivery).  One
# transaction (-1): the function is a member of the extension, or absent.
for kind in run job; do
	sed 's#"/bench/direct/#"/bench/constant/#' "$TMP/cd_$kind.json" > "$TMP/const_$kind.json"
done
$PSQL -1 -v run="$(cat "$TMP/const_run.json")" -v job="$(cat "$TMP/const_job.json")" <<'SQL'
SELECT format('CREATE FUNCTION cdviz.bench_constant(headers jsonb, body jsonb) RETURNS SETOF jsonb '
	'LANGUAGE plpgsql STABLE AS %L',
	format('BEGIN RETURN NEXT pg_catalog.replace(CASE headers ->> %L WHEN %L THEN %L ELSE %L END, '
		   '%L, pg_catalog.substr(headers ->> %L, 7))::jsonb; END',
		'x-github-event', 'workflow_run', :'run', :'job', '__ID__', 'x-github-delivery')) \gexec
ALTER EXTENSION cdviz ADD FUNCTION cdviz.bench_constant(jsonb, jsonb);
SQL
$PSQL -c "SELECT cdviz.create_webhook('bench-constant', 'cdviz.bench_constant(jsonb,jsonb)', 'github', '$SECRET')" >/dev/null
printf 'bench: %s deliveries, %s B workflow_run / %s B workflow_job, %s connections, %s rounds\n' \
	"$DELIVERIES" "$(wc -c < "$TMP/run.json")" "$(wc -c < "$TMP/job.json")" "$CONNECTIONS" "$ROUNDS"

# run_chunk MODE FROM COUNT [ROUTE]: "seconds p99_ms errors" in $TMP/chunk.
# The seconds run from the first request of any thread to the last answer
# of any thread, as the threads wrote them in their marker files; the wait
# for the markers polls slowly, since each poll forks on a machine the
# server shares.  (Not run in a subshell: the EXIT trap must see WRK_PID.)
run_chunk() {
	rm -f "$TMP"/done.* "$TMP"/go
	MODE=$1 FROM=$2 COUNT=$3 ROUTE=${4:-bench-github} DIR=$TMP THREADS=$THREADS \
		wrk -t"$THREADS" -c"$CONNECTIONS" -d600s --latency -s "$HERE/webhooks.lua" "$URL" > "$TMP/wrk.out" 2>&1 &
	WRK_PID=$!
	while [ "$(ls "$TMP" | grep -c "^done\.$1\.$2\.")" -lt "$THREADS" ]; do
		kill -0 "$WRK_PID" 2>/dev/null || { cat "$TMP/wrk.out" >&2; exit 1; }
		sleep 0.2
	done
	kill -INT "$WRK_PID"
	wait "$WRK_PID" || true
	WRK_PID=""
	cat "$TMP"/done.* | awk 'NR == 1 || $1 < s {s = $1} NR == 1 || $2 > e {e = $2} END {print s, e}' > "$TMP/span"
	awk 'NR == FNR {s = $1; e = $2; next} /^p99_ms /{p=$2} /^errors /{x=$2} END{printf "%.3f %s %s\n", e - s, p, x}' \
		"$TMP/span" "$TMP/wrk.out" > "$TMP/chunk"
}

chunk=$((DELIVERIES / ROUNDS))
hook_s=0 const_s=0 direct_s=0 hook_p99=0 const_p99=0 direct_p99=0 errors=0 rounds=""
max() { echo "if ($1 > $2) $1 else $2" | bc -l; }
r=0
while [ "$r" -lt "$ROUNDS" ]; do
	from=$((r * chunk))
	run_chunk webhook "$from" "$chunk"
	set -- $(cat "$TMP/chunk")
	hook_s=$(echo "$hook_s + $1" | bc -l); hook_p99=$(max "$2" "$hook_p99"); errors=$((errors + $3)); round_hook=$1
	run_chunk webhook "$from" "$chunk" bench-constant
	set -- $(cat "$TMP/chunk")
	const_s=$(echo "$const_s + $1" | bc -l); const_p99=$(max "$2" "$const_p99"); errors=$((errors + $3))
	run_chunk cdevents "$from" "$chunk"
	set -- $(cat "$TMP/chunk")
	direct_s=$(echo "$direct_s + $1" | bc -l); direct_p99=$(max "$2" "$direct_p99"); errors=$((errors + $3))
	# this round's ratio: its chunks ran one after the other, so a stall of
	# the machine's disk in another round (p99 jumps) does not weigh here
	rounds="$rounds $(echo "$1 / $round_hook" | bc -l)"
	r=$((r + 1))
done
total=$((chunk * ROUNDS))

stored=$($PSQL -c "SELECT count(*) FILTER (WHERE context_source LIKE '/webhooks/bench-github/%') || ' '
	|| count(*) FILTER (WHERE context_source LIKE '/bench/constant/%') || ' '
	|| count(*) FILTER (WHERE context_source LIKE '/bench/direct/%')
	FROM cdviz.cdevents_lake WHERE context_source LIKE '/webhooks/bench-github/%'
		OR context_source LIKE '/bench/constant/%' OR context_source LIKE '/bench/direct/%'")
failed=$($PSQL -c "SELECT count(*) FROM cdviz.webhook_deliveries WHERE route IN ('bench-github', 'bench-constant') AND status <> 'stored'")
echo "$stored" | {
	read -r hook_events const_events direct_events
	awk -v n="$total" -v rounds="$rounds" -v hs="$hook_s" -v cs="$const_s" -v ds="$direct_s" -v hp="$hook_p99" -v cp="$const_p99" \
		-v dp="$direct_p99" -v he="$hook_events" -v ce="$const_events" -v de="$direct_events" -v err="$errors" \
		-v f="$failed" 'BEGIN {
		hr = n / hs; cr = n / cs; dr = n / ds;
		printf "webhooks  (POST /webhooks/bench-github):   %6d deliveries in %7.2f s = %8.1f /s, p99 %7.2f ms (%d events stored)\n", n, hs, hr, hp, he;
		printf "constant  (POST /webhooks/bench-constant): %6d deliveries in %7.2f s = %8.1f /s, p99 %7.2f ms (%d events stored)\n", n, cs, cr, cp, ce;
		printf "cdevents  (POST /cdevents, same events):   %6d events     in %7.2f s = %8.1f /s, p99 %7.2f ms (%d events stored)\n", n, ds, dr, dp, de;
		printf "ratio webhooks / cdevents: %.2f (goal >= 0.5); HTTP errors %d, deliveries not stored %d\n", hr / dr, err, f;
		k = split(rounds, q, " ");
		for (i = 1; i <= k; i++)
			for (j = i + 1; j <= k; j++)
				if (q[j] < q[i]) { t = q[i]; q[i] = q[j]; q[j] = t; }
		printf "ratio per round, sorted:";
		for (i = 1; i <= k; i++)
			printf " %.2f", q[i];
		printf " (median %.2f)\n", k % 2 ? q[(k + 1) / 2] : (q[k / 2] + q[k / 2 + 1]) / 2;
		printf "per delivery or event: transforming %.0f us (github - constant), taking the delivery in %.0f us (constant - cdevents), storing an event %.0f us\n",
			1e6 * (1 / hr - 1 / cr), 1e6 * (1 / cr - 1 / dr), 1e6 / dr;
	}'
}
$PSQL -c "$cleanup_sql" -c "$vacuum_sql" >/dev/null
