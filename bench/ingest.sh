#!/usr/bin/env bash
# Ingest benchmark (issue 2): N generated events (default 1,000,000, ~400
# bytes each, a realistic mix) stored through the cdviz batch path
# (cdviz.ingest_batch, batches of B events, one transaction each) against the
# same events through a plain INSERT ... SELECT into an equivalent table with
# the same indexes, partitions and no validation, batch for batch, in the same
# run.  Prints both rates and the ratio (goal: >= 0.7).
#
# usage: bench/ingest.sh [N] [B]     (connection from PGHOST/PGPORT/PGUSER;
#        it creates and drops database cdviz_bench_ingest)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
B=${2:-10000}
DB=cdviz_bench_ingest
PSQL=(psql -X -q -v ON_ERROR_STOP=1)

"${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
trap '"${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true' EXIT
"${PSQL[@]}" -d $DB -c "CREATE EXTENSION cdviz"

echo "generating $N events ..."
"${PSQL[@]}" -d $DB -v n="$N" -v target=staging -v staging=bench_events -f bench/gen_events.sql >/dev/null

"${PSQL[@]}" -d $DB <<SQL
CREATE INDEX IF NOT EXISTS bench_events_seq ON bench_events (seq);
SELECT count(*) AS events, round(avg(length(payload::text))) AS avg_bytes,
       count(DISTINCT payload->'context'->>'type') AS types FROM bench_events;

-- the baseline: the lake's shape, indexes and monthly partitions, no
-- validation, no dedup handling, no triggers
CREATE TABLE plain_lake (LIKE cdviz.cdevents_lake INCLUDING DEFAULTS INCLUDING CONSTRAINTS
						 INCLUDING INDEXES) PARTITION BY RANGE ("timestamp");
DO \$\$
DECLARE m timestamptz;
BEGIN
	FOR m IN SELECT DISTINCT date_trunc('month', (payload->'context'->>'timestamp')::timestamptz AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
			 FROM bench_events
	LOOP
		EXECUTE format('CREATE TABLE %I PARTITION OF plain_lake FOR VALUES FROM (%L) TO (%L)',
					   'plain_lake_' || to_char(m AT TIME ZONE 'UTC', 'YYYYMM'), m, m + interval '1 month');
	END LOOP;
END
\$\$;

-- the baseline's columns are extracted before timing, so that it measures
-- the insert alone: the ceiling of any ingest path into this table shape
CREATE TABLE bench_rows AS
SELECT seq, (e->'context'->>'timestamp')::timestamptz AS ts, e->'context'->>'id' AS context_id,
	   e->'context'->>'source' AS context_source, e->'context'->>'type' AS type,
	   split_part(e->'context'->>'type', '.', 3) AS subject, split_part(e->'context'->>'type', '.', 4) AS predicate,
	   array_to_string((string_to_array(e->'context'->>'type', '.'))[5:], '.') AS type_version,
	   coalesce(e->'context'->>'specversion', e->'context'->>'version') AS spec_version,
	   e->'subject'->>'id' AS subject_id, e->'context'->>'chainId' AS chain_id, e AS payload
FROM (SELECT seq, payload AS e FROM bench_events) s;
CREATE INDEX ON bench_rows (seq);
VACUUM ANALYZE bench_rows;
VACUUM ANALYZE bench_events;

CREATE PROCEDURE bench_plain(b int) LANGUAGE plpgsql AS \$\$
DECLARE lo bigint := 1; hi bigint := (SELECT max(seq) FROM bench_rows);
-- batches of b rows, seq 1..b, b+1..2b, ...: the same as bench_batches
BEGIN
	WHILE lo <= hi LOOP
		INSERT INTO plain_lake ("timestamp", context_id, context_source, type, subject, predicate,
								type_version, spec_version, subject_id, chain_id, payload)
		SELECT ts, context_id, context_source, type, subject, predicate, type_version,
			   spec_version, subject_id, chain_id, payload
		FROM bench_rows WHERE seq >= lo AND seq < lo + b;
		COMMIT;
		lo := lo + b;
	END LOOP;
END
\$\$;

-- the cdviz path's input is assembled before timing too: a client sends a
-- batch as one parameter, building it is the client's work
CREATE TABLE bench_batches AS
SELECT (seq - 1) / $B AS n, jsonb_agg(payload ORDER BY seq) AS events
FROM bench_events GROUP BY 1;
CREATE INDEX ON bench_batches (n);
VACUUM ANALYZE bench_batches;

CREATE PROCEDURE bench_cdviz(b int) LANGUAGE plpgsql AS \$\$
DECLARE i bigint := 0; hi bigint := (SELECT max(n) FROM bench_batches); r record;
BEGIN
	WHILE i <= hi LOOP
		SELECT * INTO r FROM cdviz.ingest_batch((SELECT events FROM bench_batches WHERE n = i));
		IF r.rejected > 0 THEN
			RAISE EXCEPTION 'benchmark events were rejected: %', r;
		END IF;
		COMMIT;
		i := i + 1;
	END LOOP;
END
\$\$;
SQL

run() {
	local what=$1
	"${PSQL[@]}" -d $DB -c "CHECKPOINT" >/dev/null
	local t0 t1
	t0=$(date +%s.%N)
	"${PSQL[@]}" -d $DB -c "CALL $what($B)"
	t1=$(date +%s.%N)
	echo "$t1 - $t0" | bc -l
}

echo "plain INSERT ... SELECT (baseline) ..."
plain_s=$(run bench_plain)
echo "cdviz.ingest_batch ..."
cdviz_s=$(run bench_cdviz)

"${PSQL[@]}" -d $DB -At -c "SELECT 'lake rows: ' || count(*) FROM cdviz.cdevents_lake" \
	-c "SELECT 'plain rows: ' || count(*) FROM plain_lake"
# the generator makes whole delivery cycles: count what it made
N=$("${PSQL[@]}" -d $DB -At -c "SELECT count(*) FROM bench_events")
awk -v n="$N" -v p="$plain_s" -v c="$cdviz_s" -v b="$B" 'BEGIN {
	printf "events: %d, batch: %d\n", n, b;
	printf "plain INSERT ... SELECT: %8.1f s  %9.0f events/s\n", p, n / p;
	printf "cdviz.ingest_batch:      %8.1f s  %9.0f events/s\n", c, n / c;
	printf "ratio cdviz / plain: %.2f (goal >= 0.70)\n", (n / c) / (n / p);
}'
