#!/usr/bin/env bash
# Ingest benchmark (issue 2): N generated events (default 1,000,000, ~490
# bytes each, a realistic mix of every subject) stored through the cdviz batch
# path (cdviz.ingest_batch, batches of B events, one transaction each) against
# the same batches through a plain INSERT ... SELECT (columns extracted with
# jsonb operators, no validation, no dedup handling, no state upkeep) into an
# equivalent table with the same indexes and partitions, in the same run.
# A third path inserts columns extracted before timing: the ceiling of any
# ingest into that table shape.  A fourth is cdviz with
# cdviz.summaries = immediate (summaries folded in the ingest transaction)
# on a copy of the events with other context ids.  The four run interleaved
# batch by batch.  The default cdviz path (summaries deferred) leaves the
# summaries to the cdviz summaries worker: after each of its batches the
# benchmark waits, untimed, until the worker has folded them, and reports
# that wait as the fold time, so that no path is measured while the worker
# works.  Prints the rates and the ratios (goal: cdviz / plain >= 0.7).
#
# usage: bench/ingest.sh [N] [B]
#
# Run it as an unprivileged user (PostgreSQL refuses root): it starts its
# own cluster (cdviz preloaded, serving database "bench") in a temporary
# directory and removes it at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
B=${2:-10000}
# shellcheck source=bench/cluster.sh
. bench/cluster.sh
bench_own_cluster bench "shared_buffers = 1GB" "cdviz.summaries_interval = 10"

echo "generating $N events ..."
"${PSQL[@]}" -d $DB -v n="$N" -v target=staging -v staging=bench_events -f bench/gen_events.sql >/dev/null

"${PSQL[@]}" -d $DB <<SQL
CREATE INDEX IF NOT EXISTS bench_events_seq ON bench_events (seq);
SELECT count(*) AS events, round(avg(length(payload::text))) AS avg_bytes,
       count(DISTINCT payload->'context'->>'type') AS types FROM bench_events;

-- the baseline: the lake's shape, indexes and monthly partitions, no
-- validation, no dedup handling, no triggers
CREATE TABLE plain_lake (LIKE cdviz.cdevents_lake INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING COMPRESSION
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
-- the same events with other context ids, for the immediate path
CREATE TABLE bench_batches_i AS
SELECT n, (SELECT jsonb_agg(jsonb_set(e, '{context,id}', to_jsonb((e->'context'->>'id') || '-i')))
		   FROM jsonb_array_elements(events) e) AS events
FROM bench_batches;
CREATE INDEX ON bench_batches_i (n);
VACUUM ANALYZE bench_batches_i;

SQL

# Both paths run interleaved, batch by batch (alternating which goes first),
# so that both see the same machine: load from other processes hits them
# alike and the ratio stays meaningful on a noisy host.
"${PSQL[@]}" -d $DB <<SQL
CREATE TABLE bench_times (path text PRIMARY KEY, seconds float8 NOT NULL DEFAULT 0);
CREATE TABLE ceiling_lake (LIKE plain_lake INCLUDING ALL);
CREATE PROCEDURE bench_all(b int) LANGUAGE plpgsql AS \$\$
DECLARE
	i bigint := 0;
	hi bigint := (SELECT max(n) FROM bench_batches);
	t0 timestamptz;
	r record;
	deferred boolean;
	secs float8[] := '{0,0,0,0,0}';
BEGIN
	WHILE i <= hi LOOP
		FOR k IN 0..3 LOOP
			t0 := clock_timestamp();
			CASE (k + i) % 4
			WHEN 0 THEN
				-- plain: the same batch, columns extracted in SQL, no checks
				INSERT INTO plain_lake ("timestamp", context_id, context_source, type, subject,
										predicate, type_version, spec_version, subject_id, chain_id, payload)
				SELECT (e->'context'->>'timestamp')::timestamptz, e->'context'->>'id',
					   e->'context'->>'source', e->'context'->>'type',
					   split_part(e->'context'->>'type', '.', 3), split_part(e->'context'->>'type', '.', 4),
					   array_to_string((string_to_array(e->'context'->>'type', '.'))[5:], '.'),
					   coalesce(e->'context'->>'specversion', e->'context'->>'version'),
					   e->'subject'->>'id', e->'context'->>'chainId', e
				FROM jsonb_array_elements((SELECT events FROM bench_batches WHERE n = i)) e;
				COMMIT;
				secs[1] := secs[1] + extract(epoch FROM clock_timestamp() - t0);
			WHEN 1, 3 THEN
				-- cdviz, summaries deferred (1) or immediate (3, other context ids)
				deferred := (k + i) % 4 = 1;
				PERFORM set_config('cdviz.summaries', CASE WHEN deferred THEN 'deferred' ELSE 'immediate' END, true);
				SELECT * INTO r FROM cdviz.ingest_batch(CASE WHEN deferred
					THEN (SELECT events FROM bench_batches WHERE n = i)
					ELSE (SELECT events FROM bench_batches_i WHERE n = i) END);
				IF r.rejected > 0 THEN
					RAISE EXCEPTION 'benchmark events were rejected: %', r;
				END IF;
				COMMIT;
				IF NOT deferred THEN
					secs[4] := secs[4] + extract(epoch FROM clock_timestamp() - t0);
					CONTINUE;
				END IF;
				secs[2] := secs[2] + extract(epoch FROM clock_timestamp() - t0);
				-- untimed for the path: the worker folds the batch's summaries
				t0 := clock_timestamp();
				LOOP
					EXIT WHEN cdviz.summaries_pending() = 0;
					PERFORM pg_sleep(0.002);
					COMMIT;
				END LOOP;
				COMMIT;
				secs[5] := secs[5] + extract(epoch FROM clock_timestamp() - t0);
			ELSE
				-- the insert alone: columns extracted before timing
				INSERT INTO ceiling_lake ("timestamp", context_id, context_source, type, subject, predicate,
										  type_version, spec_version, subject_id, chain_id, payload)
				SELECT ts, context_id, context_source, type, subject, predicate, type_version,
					   spec_version, subject_id, chain_id, payload
				FROM bench_rows WHERE (seq - 1) / b = i;
				COMMIT;
				secs[3] := secs[3] + extract(epoch FROM clock_timestamp() - t0);
			END CASE;
		END LOOP;
		i := i + 1;
	END LOOP;
	INSERT INTO bench_times VALUES ('plain', secs[1]), ('cdviz', secs[2]), ('ceiling', secs[3]),
		('immediate', secs[4]), ('fold', secs[5]);
END
\$\$;
CREATE INDEX ON bench_rows (((seq - 1) / $B));
ANALYZE bench_rows;
CHECKPOINT;
SQL

echo "the four paths, interleaved batch by batch ..."
"${PSQL[@]}" -d $DB -c "CALL bench_all($B)"
secs() { "${PSQL[@]}" -d $DB -At -c "SELECT seconds FROM bench_times WHERE path = '$1'"; }
plain_s=$(secs plain)
cdviz_s=$(secs cdviz)
ceil_s=$(secs ceiling)
imm_s=$(secs immediate)
fold_s=$(secs fold)

"${PSQL[@]}" -d $DB -At -c "SELECT 'lake rows: ' || count(*) FROM cdviz.cdevents_lake" \
	-c "SELECT 'plain rows: ' || count(*) FROM plain_lake" \
	-c "SELECT 'ceiling rows: ' || count(*) FROM ceiling_lake" \
	-c "SELECT 'summaries pending at the end: ' || cdviz.summaries_pending()"
# the generator makes whole delivery cycles: count what it made
N=$("${PSQL[@]}" -d $DB -At -c "SELECT count(*) FROM bench_events")
awk -v n="$N" -v p="$plain_s" -v c="$cdviz_s" -v x="$ceil_s" -v m="$imm_s" -v f="$fold_s" -v b="$B" 'BEGIN {
	printf "events: %d per path, batch: %d\n", n, b;
	printf "plain INSERT ... SELECT from the batch:    %7.1f s  %9.0f events/s\n", p, n / p;
	printf "cdviz.ingest_batch (summaries deferred):   %7.1f s  %9.0f events/s\n", c, n / c;
	printf "  the worker folding those summaries:      %7.1f s  %9.0f events/s\n", f, n / f;
	printf "cdviz.ingest_batch (summaries immediate):  %7.1f s  %9.0f events/s\n", m, n / m;
	printf "insert of pre-extracted columns (ceiling): %7.1f s  %9.0f events/s\n", x, n / x;
	printf "ratio cdviz / plain: %.2f (goal >= 0.70)\n", (n / c) / (n / p);
	printf "ratio cdviz immediate / plain: %.2f\n", (n / m) / (n / p);
	printf "ratio cdviz / ceiling: %.2f\n", (n / c) / (n / x);
}'
