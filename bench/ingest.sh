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

-- the cdviz path's input is assembled before timing too: a client sends a
-- batch as one parameter, building it is the client's work
CREATE TABLE bench_batches AS
SELECT (seq - 1) / $B AS n, jsonb_agg(payload ORDER BY seq) AS events
FROM bench_events GROUP BY 1;
CREATE INDEX ON bench_batches (n);
VACUUM ANALYZE bench_batches;

SQL

# Both paths run interleaved, batch by batch (alternating which goes first),
# so that both see the same machine: load from other processes hits them
# alike and the ratio stays meaningful on a noisy host.
"${PSQL[@]}" -d $DB <<SQL
CREATE TABLE bench_times (path text PRIMARY KEY, seconds float8 NOT NULL DEFAULT 0);
INSERT INTO bench_times VALUES ('plain', 0), ('cdviz', 0);
CREATE PROCEDURE bench_both(b int) LANGUAGE plpgsql AS \$\$
DECLARE
	i bigint := 0;
	hi bigint := (SELECT max(n) FROM bench_batches);
	t0 timestamptz;
	r record;
	plain_s float8 := 0;
	cdviz_s float8 := 0;
BEGIN
	WHILE i <= hi LOOP
		FOR k IN 0..1 LOOP
			t0 := clock_timestamp();
			IF (k + i) % 2 = 0 THEN
				INSERT INTO plain_lake ("timestamp", context_id, context_source, type, subject, predicate,
										type_version, spec_version, subject_id, chain_id, payload)
				SELECT ts, context_id, context_source, type, subject, predicate, type_version,
					   spec_version, subject_id, chain_id, payload
				FROM bench_rows WHERE (seq - 1) / b = i;
				COMMIT;
				plain_s := plain_s + extract(epoch FROM clock_timestamp() - t0);
			ELSE
				SELECT * INTO r FROM cdviz.ingest_batch((SELECT events FROM bench_batches WHERE n = i));
				IF r.rejected > 0 THEN
					RAISE EXCEPTION 'benchmark events were rejected: %', r;
				END IF;
				COMMIT;
				cdviz_s := cdviz_s + extract(epoch FROM clock_timestamp() - t0);
			END IF;
		END LOOP;
		i := i + 1;
	END LOOP;
	UPDATE bench_times SET seconds = plain_s WHERE path = 'plain';
	UPDATE bench_times SET seconds = cdviz_s WHERE path = 'cdviz';
END
\$\$;
CREATE INDEX ON bench_rows (((seq - 1) / $B));
ANALYZE bench_rows;
CHECKPOINT;
SQL

echo "both paths, interleaved batch by batch ..."
"${PSQL[@]}" -d $DB -c "CALL bench_both($B)"
plain_s=$("${PSQL[@]}" -d $DB -At -c "SELECT seconds FROM bench_times WHERE path = 'plain'")
cdviz_s=$("${PSQL[@]}" -d $DB -At -c "SELECT seconds FROM bench_times WHERE path = 'cdviz'")

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
