/*
 * store_lake.c
 *	  A batch's rows into the lake in one INSERT ... SELECT unnest(...),
 *	  and the ids of the rows it already had.
 *
 * One statement per batch is what makes ingestion cheap: the per-statement
 * overhead (planning is cached, executor start-up, triggers fired once per
 * statement) is paid once, not per event.  The statement is a plain INSERT
 * first and ON CONFLICT DO NOTHING only when the batch meets rows already
 * stored (see insert_rows).  Dedup is the lake's unique key
 * (context_source, context_id, timestamp): retransmissions are a no-op and
 * are answered with the id stored before.
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "common/spi_util.h"
#include "common/subxact.h"
#include "store/store_int.h"

static SPIPlanPtr insert_plan;	/* ON CONFLICT DO NOTHING */
static SPIPlanPtr insert_fast_plan; /* plain INSERT: no conflict expected */
static SPIPlanPtr existing_plan;
static SPIPlanPtr partition_plan;

/* A plan kept across calls. */
static SPIPlanPtr
prepare_kept(const char *sql, int nargs, Oid *argtypes)
{
	return cdviz_prepare_kept(sql, nargs, argtypes, 0);
}

/* The lake's statements, kept across calls; the plan cache re-plans them after DDL. */
static void
prepare_lake_plans(void)
{
	if (insert_plan == NULL)
	{
		Oid			types[N_LAKE_COLS] = {TIMESTAMPTZARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
			TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
		TEXTARRAYOID, TEXTARRAYOID, JSONBARRAYOID};
		/*
		 * The arrays are unnested in the select list (ProjectSet walks them
		 * in step, they have one length), not in FROM: a function scan
		 * would first copy every row, payload included, into a tuplestore.
		 */
		const char *insert =
		"INSERT INTO cdviz.cdevents_lake "
		"(\"timestamp\", context_id, context_source, type, subject, predicate,"
		" type_version, spec_version, subject_id, chain_id, payload) "
		"SELECT pg_catalog.unnest($1), pg_catalog.unnest($2),"
		" pg_catalog.unnest($3), pg_catalog.unnest($4), pg_catalog.unnest($5),"
		" pg_catalog.unnest($6), pg_catalog.unnest($7), pg_catalog.unnest($8),"
		" pg_catalog.unnest($9), pg_catalog.unnest($10), pg_catalog.unnest($11) ";
		const char *returning = "RETURNING id, context_source, context_id, \"timestamp\"";

		insert_fast_plan = prepare_kept(psprintf("%s%s", insert, returning),
										N_LAKE_COLS, types);
		/*
		 * The conflict target names the dedup key: a clash on any other
		 * key (the primary key, when the id sequence is behind the rows)
		 * is an error to report, not an event to skip.
		 */
		insert_plan = prepare_kept(psprintf("%sON CONFLICT (context_source, context_id, \"timestamp\") DO NOTHING %s",
											insert, returning),
								   N_LAKE_COLS, types);
	}
	if (existing_plan == NULL)
	{
		Oid			types[3] = {TEXTARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID};

		/*
		 * One index probe per key, whatever the planner thinks of the
		 * join: with a plain join it misjudges the function scan's rows
		 * and merge-joins a sorted copy of the whole lake, far slower than
		 * the probes for a batch of retransmissions.  Planned for each
		 * batch's keys, as a worker keeps this plan for its whole life.
		 */
		existing_plan = cdviz_prepare_kept(
										  "SELECT l.id, k.src, k.cid, k.ts "
										  "FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2),"
										  " pg_catalog.unnest($3)) AS k(src, cid, ts) "
										  "CROSS JOIN LATERAL (SELECT l.id FROM cdviz.cdevents_lake l"
										  " WHERE l.context_source = k.src AND l.context_id = k.cid"
										  " AND l.\"timestamp\" = k.ts LIMIT 1) l",
										  3, types, CURSOR_OPT_CUSTOM_PLAN);
	}
	if (partition_plan == NULL)
	{
		Oid			types[1] = {TIMESTAMPTZOID};

		partition_plan = prepare_kept("SELECT cdviz.ensure_partition($1)", 1, types);
	}
}

/* Make sure the monthly partition of every timestamp in the batch exists. */
static void
ensure_partitions(BatchRows *rows)
{
	Oid			nsp = get_namespace_oid("cdviz", false);
	int			seen[64];
	int			nseen = 0;

	for (int r = 0; r < rows->nrows; r++)
	{
		TimestampTz ts = DatumGetTimestampTz(rows->cols[COL_TS][r]);
		struct pg_tm tm;
		fsec_t		fsec;
		char		name[NAMEDATALEN];
		int			month;
		bool		known = false;

		if (timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0)
			continue;			/* out of range: the INSERT will say so */
		month = tm.tm_year * 12 + tm.tm_mon;
		for (int i = 0; i < nseen && !known; i++)
			known = seen[i] == month;
		if (known)
			continue;
		if (nseen < (int) lengthof(seen))
			seen[nseen++] = month;
		snprintf(name, sizeof(name), "cdevents_lake_%04d%02d", tm.tm_year, tm.tm_mon);
		if (OidIsValid(get_relname_relid(name, nsp)))
			continue;
		{
			Datum		arg = TimestampTzGetDatum(ts);

			if (SPI_execute_plan(partition_plan, &arg, NULL, false, 0) != SPI_OK_SELECT)
				elog(ERROR, "cdviz: creating lake partition %s failed", name);
		}
	}
}

/*
 * Row i of the last SPI result, (id, context_source, context_id, timestamp),
 * mapped to the key table's slot of the batch row with that key.
 */
static int *
slot_of_result_row(KeyTable *keys, uint64 i, int64 *id)
{
	HeapTuple	tup = SPI_tuptable->vals[i];
	TupleDesc	desc = SPI_tuptable->tupdesc;
	bool		isnull;
	text	   *src = DatumGetTextPP(SPI_getbinval(tup, desc, 2, &isnull));
	text	   *cid = DatumGetTextPP(SPI_getbinval(tup, desc, 3, &isnull));
	TimestampTz ts = DatumGetTimestampTz(SPI_getbinval(tup, desc, 4, &isnull));

	*id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
	return cdviz_keytable_slot(keys, VARDATA_ANY(src), VARSIZE_ANY_EXHDR(src),
						 VARDATA_ANY(cid), VARSIZE_ANY_EXHDR(cid), ts);
}

/*
 * Did the last batch meet rows that were in the lake already?  Then the
 * next one goes straight to ON CONFLICT: retransmissions come in bursts.
 */
static bool conflicts_expected = false;

/*
 * A subtransaction that commits keeps its memory context until the whole
 * transaction ends, and the fast path's holds what its INSERT allocated
 * there: the transition table the lake's statement trigger reads, which
 * the raised work_mem keeps in memory (a few kB a row).  A transaction
 * that stores many batches (a test report of many cases) would hold them
 * all; past FAST_PATH_ROWS rows in one transaction its batches go straight
 * to ON CONFLICT, without a subtransaction, and each reuses the memory
 * the one before it freed.
 */
#define FAST_PATH_ROWS 5000
static LocalTransactionId fast_path_lxid = InvalidLocalTransactionId;
static int64 fast_path_rows = 0;

/* An insert plan and its arguments, as cdviz_subxact() runs them. */
typedef struct InsertRun
{
	SPIPlanPtr	plan;
	Datum	   *args;
} InsertRun;

/* The insert of run, as cdviz_subxact() runs it. */
static void
run_insert(void *arg)
{
	InsertRun  *run = (InsertRun *) arg;

	if (SPI_execute_plan(run->plan, run->args, NULL, false, 0) != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "cdviz: lake insert failed");
}

/*
 * Run an insert plan over the batch's column arrays, in a subtransaction
 * when tolerate_conflict: a unique violation then rolls it back and makes
 * the result false.  Any other error is raised.
 */
static bool
execute_insert(SPIPlanPtr plan, Datum *args, bool tolerate_conflict)
{
	InsertRun	run = {plan, args};
	ErrorData  *edata;

	if (!tolerate_conflict)
	{
		run_insert(&run);
		return true;
	}
	if ((edata = cdviz_subxact(run_insert, &run, NULL)) == NULL)
		return true;
	if (edata->sqlerrcode != ERRCODE_UNIQUE_VIOLATION)
		ReThrowError(edata);
	FreeErrorData(edata);
	return false;
}

/*
 * Insert the batch's rows into the lake; mark what came back stored.
 *
 * Most batches hold only new events, and a plain INSERT is then cheaper
 * than ON CONFLICT, whose speculative insertion probes the unique index
 * once more per row.  So the plain INSERT goes first, in a subtransaction;
 * a unique violation (a retransmission, or a concurrent writer of the same
 * event) rolls it back and the batch goes again with ON CONFLICT DO NOTHING.
 */
static void
insert_rows(CdvizItem *items, BatchRows *rows, KeyTable *keys)
{
	static const Oid elemtypes[N_LAKE_COLS] = {TIMESTAMPTZOID, TEXTOID, TEXTOID, TEXTOID,
		TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, JSONBOID};
	Datum		args[N_LAKE_COLS];
	int			save_nestlevel;
	bool		done = false;

	for (int c = 0; c < N_LAKE_COLS; c++)
		args[c] = PointerGetDatum(cdviz_make_array(rows->cols[c], rows->nulls[c], rows->nrows,
												   elemtypes[c]));

	/*
	 * The lake's statement trigger reads the batch from a transition table:
	 * let it stay in memory (as ri_triggers.c raises work_mem for its own
	 * checks), or every pass of the trigger reads it back from a file.
	 */
	save_nestlevel = NewGUCNestLevel();
	if (work_mem < 64 * 1024)
		(void) set_config_option("work_mem", "65536", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
	if (MyProc->lxid != fast_path_lxid)
	{
		fast_path_lxid = MyProc->lxid;
		fast_path_rows = 0;
	}
	if (!conflicts_expected && fast_path_rows < FAST_PATH_ROWS)
	{
		fast_path_rows += rows->nrows;
		done = execute_insert(insert_fast_plan, args, true);
	}
	if (!done)
		(void) execute_insert(insert_plan, args, false);
	AtEOXact_GUC(true, save_nestlevel);

	for (uint64 i = 0; i < SPI_processed; i++)
	{
		int64		id;
		int		   *slot = slot_of_result_row(keys, i, &id);

		if (*slot >= 0)
		{
			CdvizItem  *it = &items[rows->item[*slot]];

			it->status = CDVIZ_ITEM_STORED;
			it->event_id = id;
		}
	}
	conflicts_expected = SPI_processed < (uint64) rows->nrows;
	SPI_freetuptable(SPI_tuptable);
}

/*
 * Rows the INSERT skipped were in the lake already: fetch their ids.  Not
 * read-only: the lookup needs a fresh snapshot to see rows stored earlier
 * in the same statement (ingest_batch called several times by one query).
 */
static void
resolve_existing(CdvizItem *items, BatchRows *rows, KeyTable *keys)
{
	Datum	   *src = palloc(sizeof(Datum) * rows->nrows);
	Datum	   *cid = palloc(sizeof(Datum) * rows->nrows);
	Datum	   *ts = palloc(sizeof(Datum) * rows->nrows);
	int			n = 0;
	Datum		args[3];

	for (int r = 0; r < rows->nrows; r++)
	{
		if (items[rows->item[r]].status == CDVIZ_ITEM_STORED)
			continue;
		src[n] = rows->cols[COL_SOURCE][r];
		cid[n] = rows->cols[COL_ID][r];
		ts[n] = rows->cols[COL_TS][r];
		n++;
	}
	if (n == 0)
		return;
	args[0] = PointerGetDatum(cdviz_make_array(src, NULL, n, TEXTOID));
	args[1] = PointerGetDatum(cdviz_make_array(cid, NULL, n, TEXTOID));
	args[2] = PointerGetDatum(cdviz_make_array(ts, NULL, n, TIMESTAMPTZOID));
	if (SPI_execute_plan(existing_plan, args, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "cdviz: dedup lookup failed");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		int64		id;
		int		   *slot = slot_of_result_row(keys, i, &id);
		CdvizItem  *it;

		if (*slot < 0)
			continue;
		it = &items[rows->item[*slot]];
		if (it->status != CDVIZ_ITEM_STORED)
		{
			it->status = CDVIZ_ITEM_DUPLICATE;
			it->event_id = id;
		}
	}
	SPI_freetuptable(SPI_tuptable);
}

/* See store_int.h. */
void
cdviz_lake_insert(CdvizItem *items, BatchRows *rows, KeyTable *keys)
{
	prepare_lake_plans();
	ensure_partitions(rows);
	insert_rows(items, rows, keys);
	resolve_existing(items, rows, keys);
}
