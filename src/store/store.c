/*
 * store.c
 *	  Validate a batch of documents, insert the valid ones into the lake in
 *	  one INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING, and keep
 *	  the rest in cdviz.rejected_events.
 *
 * One statement per batch is what makes ingestion cheap: the per-statement
 * overhead (planning is cached, executor start-up, triggers fired once per
 * statement) is paid once, not per event.  The statement is a plain INSERT
 * first and ON CONFLICT DO NOTHING only when the batch meets rows already
 * stored (see insert_rows).  Dedup is the lake's unique key
 * (context_source, context_id, timestamp): retransmissions are a no-op and
 * are answered with the id stored before.  Duplicates inside one batch are
 * found here first, since ON CONFLICT cannot report which row a skipped
 * one collided with.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "datatype/timestamp.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#include "store/store.h"
#include "common/subxact.h"

int			cdviz_validation = CDVIZ_VALIDATION_STRICT;

static const struct config_enum_entry validation_options[] = {
	{"strict", CDVIZ_VALIDATION_STRICT, false},
	{"lenient", CDVIZ_VALIDATION_LENIENT, false},
	{"off", CDVIZ_VALIDATION_OFF, false},
	{NULL, 0, false}
};

/* Plans kept across calls; the plan cache re-plans them after DDL. */
static SPIPlanPtr insert_plan;	/* ON CONFLICT DO NOTHING */
static SPIPlanPtr insert_fast_plan; /* plain INSERT: no conflict expected */
static SPIPlanPtr existing_plan;
static SPIPlanPtr reject_plan;
static SPIPlanPtr partition_plan;

/* Define the settings the store reads. */
void
cdviz_store_define_gucs(void)
{
	DefineCustomEnumVariable("cdviz.validation",
							 "How strictly incoming CDEvents are validated.",
							 "strict: the official CDEvents JSON schema of the event's type and release; "
							 "lenient: required fields and types only, unknown fields allowed; "
							 "off: only what storage needs (context id, source, type, timestamp).",
							 &cdviz_validation,
							 CDVIZ_VALIDATION_STRICT,
							 validation_options,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);
}

/* ------------------------------------------------------------------ */
/* parsing and checking                                                */
/* ------------------------------------------------------------------ */

bool
cdviz_store_check(const char *raw, size_t raw_len, CdvizProblems *problems)
{
	struct json_object *obj = cdviz_json_parse(raw, raw_len, problems);
	CdvizEventInfo info;
	bool		ok;

	if (obj == NULL)
		return false;
	ok = cdviz_event_check(obj, (CdvizValidation) cdviz_validation, &info, problems);
	cdviz_json_free(obj);
	return ok;
}

/* Lake timestamp from the core's microseconds since 1970. */
static TimestampTz
lake_timestamp(int64 epoch_us)
{
	return (TimestampTz) (epoch_us -
						  ((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY));
}

/*
 * Build the jsonb payload from raw text (cdviz_jsonb_parse).  jsonb_in
 * refuses a few things json-c accepts (lone surrogate escapes, numbers out
 * of numeric range); those become a problem of the item instead of an
 * error of the batch.
 */
static Jsonb *
payload_from_raw(CdvizItem *item)
{
	ErrorData  *edata;
	Jsonb	   *result = cdviz_jsonb_parse(item->raw, item->raw_len, &edata);

	if (result == NULL)
	{
		/* the detail says what: "Unicode low surrogate must follow …" */
		cdviz_problems_add(&item->problems, "$", "cannot be stored as jsonb: %s%s%s", edata->message,
						   edata->detail ? ": " : "", edata->detail ? edata->detail : "");
		FreeErrorData(edata);
	}
	return result;
}

/* ------------------------------------------------------------------ */
/* the rows of a batch and their dedup key                             */
/* ------------------------------------------------------------------ */

#define N_LAKE_COLS 11
#define COL_TS 0
#define COL_ID 1
#define COL_SOURCE 2
#define COL_PAYLOAD 10

/*
 * The lake columns of the batch's valid events, one array per column, as
 * the INSERT takes them.  They are built right after each event's check,
 * so its json-c document can be freed at once: keeping thousands of them
 * alive until the INSERT had malloc spend its time consolidating.
 */
typedef struct BatchRows
{
	int			nrows;
	int		   *item;			/* row -> index of its item */
	Datum	   *cols[N_LAKE_COLS];
	bool	   *nulls[N_LAKE_COLS];
	char	   *texts;			/* the text columns' values, one after another */
	Size		texts_used;
	Size		texts_size;
} BatchRows;

/*
 * Room for the rows of nitems items whose input is at most input_bytes
 * long.  The text columns are copied into one buffer taken here: every one
 * is a part of a JSON string of the input, so the input's size bounds them.
 * Taken piece by piece instead, the memory context's growing blocks are
 * large allocations made between the parser's many small frees, and each
 * made malloc merge its free lists again (a twentieth of the batch time).
 */
static void
rows_init(BatchRows *b, int nitems, Size input_bytes)
{
	b->nrows = 0;
	b->item = palloc(sizeof(int) * nitems);
	for (int c = 0; c < N_LAKE_COLS; c++)
	{
		b->cols[c] = palloc(sizeof(Datum) * nitems);
		b->nulls[c] = palloc0(sizeof(bool) * nitems);
	}
	b->texts_size = input_bytes + (Size) nitems * (N_LAKE_COLS - 2) * MAXALIGN(VARHDRSZ + 1);
	b->texts = palloc_extended(b->texts_size, MCXT_ALLOC_HUGE);
	b->texts_used = 0;
}

/* A text column's value, in the batch's buffer (palloc'd if it is full). */
static Datum
text_datum(BatchRows *b, CdvizStr s, bool *isnull)
{
	Size		need = VARHDRSZ + s.len;
	text	   *t;

	*isnull = (s.ptr == NULL);
	if (s.ptr == NULL)
		return (Datum) 0;
	if (b->texts_used + MAXALIGN(need) > b->texts_size)
		return PointerGetDatum(cstring_to_text_with_len(s.ptr, (int) s.len));
	t = (text *) (b->texts + b->texts_used);
	b->texts_used += MAXALIGN(need);
	SET_VARSIZE(t, need);
	memcpy(VARDATA(t), s.ptr, s.len);
	return PointerGetDatum(t);
}

/* Append a row for a checked event; its index. */
static int
rows_add(BatchRows *b, int item, const CdvizEventInfo *in, Jsonb *payload)
{
	int			r = b->nrows++;
	const CdvizStr *text_cols[N_LAKE_COLS] = {NULL, &in->context_id, &in->context_source,
		&in->type, &in->subject, &in->predicate, &in->type_version, &in->spec_version,
	&in->subject_id, &in->chain_id, NULL};

	b->item[r] = item;
	b->cols[COL_TS][r] = TimestampTzGetDatum(lake_timestamp(in->timestamp_us));
	for (int c = COL_ID; c < COL_PAYLOAD; c++)
		b->cols[c][r] = text_datum(b, *text_cols[c], &b->nulls[c][r]);
	b->cols[COL_PAYLOAD][r] = JsonbPGetDatum(payload);
	return r;
}

/* FNV-1a over the key's parts. */
static uint64
key_hash(const char *src, size_t srclen, const char *id, size_t idlen, TimestampTz ts)
{
	uint64		h = UINT64CONST(14695981039346656037);

	for (size_t i = 0; i < srclen; i++)
		h = (h ^ (unsigned char) src[i]) * UINT64CONST(1099511628211);
	h = (h ^ 0xff) * UINT64CONST(1099511628211);
	for (size_t i = 0; i < idlen; i++)
		h = (h ^ (unsigned char) id[i]) * UINT64CONST(1099511628211);
	return h ^ (uint64) ts * UINT64CONST(0x9E3779B97F4A7C15);
}

static bool
text_eq(Datum t, const char *b, size_t blen)
{
	text	   *a = DatumGetTextPP(t);

	return VARSIZE_ANY_EXHDR(a) == blen && memcmp(VARDATA_ANY(a), b, blen) == 0;
}

/* An open-addressing table of batch rows, keyed by the dedup key. */
typedef struct KeyTable
{
	int			size;			/* a power of two */
	int		   *slots;			/* row, or -1 */
	BatchRows  *rows;
} KeyTable;

static void
keytable_init(KeyTable *t, BatchRows *rows, int nitems)
{
	t->size = 16;
	while (t->size < nitems * 2)
		t->size <<= 1;
	t->slots = palloc(sizeof(int) * t->size);
	memset(t->slots, -1, sizeof(int) * t->size);
	t->rows = rows;
}

/* Find the row with this key, or the empty slot where it belongs. */
static int *
keytable_slot(KeyTable *t, const char *src, size_t srclen,
			  const char *id, size_t idlen, TimestampTz ts)
{
	int			pos = (int) (key_hash(src, srclen, id, idlen, ts) & (t->size - 1));

	for (;;)
	{
		int		   *slot = &t->slots[pos];
		int			r = *slot;

		if (r < 0)
			return slot;
		if (DatumGetTimestampTz(t->rows->cols[COL_TS][r]) == ts &&
			text_eq(t->rows->cols[COL_SOURCE][r], src, srclen) &&
			text_eq(t->rows->cols[COL_ID][r], id, idlen))
			return slot;
		pos = (pos + 1) & (t->size - 1);
	}
}

/* ------------------------------------------------------------------ */
/* SQL                                                                 */
/* ------------------------------------------------------------------ */

static SPIPlanPtr
prepare_kept(const char *sql, int nargs, Oid *argtypes)
{
	return cdviz_prepare_kept(sql, nargs, argtypes, 0);
}

static void
prepare_plans(void)
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
		 * and merge-joins a sorted copy of the whole lake (430 ms for a
		 * batch of 10,000 retransmissions over 200,000 events, where the
		 * probes take 65 ms).  Planned for each batch's keys, as a worker
		 * keeps this plan for its whole life.
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
	if (reject_plan == NULL)
	{
		Oid			types[5] = {TEXTOID, TEXTOID, TEXTOID, JSONBOID, TEXTOID};

		reject_plan = prepare_kept(
								   "INSERT INTO cdviz.rejected_events (origin, origin_ref, raw, problems, envelope) "
								   "VALUES ($1, $2, $3, $4, $5::jsonb) RETURNING id",
								   5, types);
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
	return keytable_slot(keys, VARDATA_ANY(src), VARSIZE_ANY_EXHDR(src),
						 VARDATA_ANY(cid), VARSIZE_ANY_EXHDR(cid), ts);
}

/*
 * Did the last batch meet rows that were in the lake already?  Then the
 * next one goes straight to ON CONFLICT: retransmissions come in bursts.
 */
static bool conflicts_expected = false;

/* An insert plan and its arguments, as cdviz_subxact() runs them. */
typedef struct InsertRun
{
	SPIPlanPtr	plan;
	Datum	   *args;
} InsertRun;

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
	if (!conflicts_expected)
		done = execute_insert(insert_fast_plan, args, true);
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

int64
cdviz_store_dead_letter(const char *origin, const char *origin_ref,
						const char *raw, size_t raw_len, const CdvizProblems *problems)
{
	return cdviz_store_dead_letter_enveloped(origin, origin_ref, raw, raw_len, NULL, problems);
}

int64
cdviz_store_dead_letter_enveloped(const char *origin, const char *origin_ref,
								  const char *raw, size_t raw_len, const char *envelope,
								  const CdvizProblems *problems)
{
	char	   *json = cdviz_problems_to_json(problems);
	Datum		args[5];
	char		nulls[5] = {' ', origin_ref ? ' ' : 'n', ' ', ' ', envelope ? ' ' : 'n'};
	bool		isnull;
	int64		id;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "cdviz: SPI_connect failed");
	prepare_plans();
	args[0] = CStringGetTextDatum(origin);
	args[1] = origin_ref ? CStringGetTextDatum(origin_ref) : (Datum) 0;
	args[2] = PointerGetDatum(cdviz_bytes_as_text(raw, raw_len));
	args[3] = DirectFunctionCall1(jsonb_in, CStringGetDatum(json ? json : "[]"));
	args[4] = envelope ? CStringGetTextDatum(envelope) : (Datum) 0;
	free(json);
	if (SPI_execute_plan(reject_plan, args, nulls, false, 1) != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "cdviz: storing a rejected event failed");
	id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	return id;
}

/*
 * An invalid item in an all-or-nothing unit that began at item first and
 * row first_row: the unit's valid items so far are withheld.  Their rows
 * are the batch's last ones (a unit's items are adjacent), so they are
 * taken off the end and out of the key table in the reverse order of
 * their insertion, which leaves the open-addressing table as if they had
 * never been there.
 */
static void
withhold_unit(CdvizItem *items, int first, int upto, BatchRows *rows, KeyTable *keys,
			  int first_row)
{
	for (int r = rows->nrows - 1; r >= first_row; r--)
	{
		int		   *slot;
		text	   *src = DatumGetTextPP(rows->cols[COL_SOURCE][r]);
		text	   *cid = DatumGetTextPP(rows->cols[COL_ID][r]);

		slot = keytable_slot(keys, VARDATA_ANY(src), VARSIZE_ANY_EXHDR(src),
							 VARDATA_ANY(cid), VARSIZE_ANY_EXHDR(cid),
							 DatumGetTimestampTz(rows->cols[COL_TS][r]));
		Assert(*slot == r);
		*slot = -1;
		items[rows->item[r]].status = CDVIZ_ITEM_WITHHELD;
	}
	rows->nrows = first_row;
	for (int i = first; i < upto; i++)
	{
		if (items[i].first_of_key >= 0)
		{
			items[i].status = CDVIZ_ITEM_WITHHELD;
			items[i].first_of_key = -1;
		}
	}
}

/*
 * Validate every item, then insert the valid ones in one statement and
 * find the lake ids of the retransmissions; atomic: see
 * cdviz_store_items_atomic().
 */
static CdvizStoreResult
store_items(CdvizItem *items, int nitems, const char *origin, bool atomic)
{
	CdvizStoreResult result = {0, 0, 0, 0};
	int			unit_first = 0; /* atomic: where the current unit began */
	int			unit_first_row = 0;
	bool		unit_failed = false;
	MemoryContext batchcxt;
	MemoryContext oldcxt;
	KeyTable	keys;
	BatchRows	rows;
	CdvizValidation mode = (CdvizValidation) cdviz_validation;

	if (nitems == 0)
		return result;
	batchcxt = AllocSetContextCreate(CurrentMemoryContext, "cdviz store batch",
									 ALLOCSET_DEFAULT_SIZES);
	oldcxt = MemoryContextSwitchTo(batchcxt);

	{
		Size		input_bytes = 0;

		for (int i = 0; i < nitems; i++)
			input_bytes += items[i].raw ? items[i].raw_len : VARSIZE(items[i].jsonb);
		rows_init(&rows, nitems, input_bytes);
	}
	keytable_init(&keys, &rows, nitems);
	for (int i = 0; i < nitems; i++)
	{
		CdvizItem  *it = &items[i];
		struct json_object *json;
		CdvizEventInfo info;
		Jsonb	   *payload = NULL;
		int		   *slot;

		if (atomic && (i == 0 || it->unit != items[i - 1].unit))
		{
			unit_first = i;
			unit_first_row = rows.nrows;
			unit_failed = false;
		}
		cdviz_problems_init(&it->problems);
		it->status = CDVIZ_ITEM_REJECTED;
		it->event_id = 0;
		it->rejected_id = 0;
		it->first_of_key = -1;
		/* the caller's parsed document, if any, is ours from here on */
		json = it->json;
		it->json = NULL;
		/* jsonb is valid text of the database encoding by construction */
		if (it->raw != NULL && !pg_verifymbstr(it->raw, (int) it->raw_len, true))
		{
			cdviz_problems_add(&it->problems, "$", "not valid %s text",
							   GetDatabaseEncodingName());
			cdviz_json_free(json);
			json = NULL;
		}
		else if (json == NULL)
			json = cdviz_json_parse(it->raw, it->raw_len, &it->problems);
		/* a document built from jsonb holds no NUL (jsonb refuses \u0000) */
		if (json != NULL &&
			cdviz_event_check_ex(json, mode, it->raw == NULL, &info, &it->problems))
			payload = it->jsonb ? it->jsonb : payload_from_raw(it);
		if (payload == NULL)
		{
			if (atomic && !unit_failed)
				withhold_unit(items, unit_first, i, &rows, &keys, unit_first_row);
			unit_failed = atomic;
		}
		else if (unit_failed)
			it->status = CDVIZ_ITEM_WITHHELD;
		else
		{
			slot = keytable_slot(&keys, info.context_source.ptr, info.context_source.len,
								 info.context_id.ptr, info.context_id.len,
								 lake_timestamp(info.timestamp_us));
			if (*slot >= 0)
			{
				/* same key earlier in this batch: a retransmission */
				it->status = CDVIZ_ITEM_DUPLICATE;
				it->first_of_key = rows.item[*slot];
			}
			else
				*slot = rows_add(&rows, i, &info, payload);
		}
		/* info pointed into the document: rows_add copied what it needs */
		cdviz_json_free(json);
	}

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "cdviz: SPI_connect failed");
	prepare_plans();
	if (rows.nrows > 0)
	{
		ensure_partitions(&rows);
		insert_rows(items, &rows, &keys);
		resolve_existing(items, &rows, &keys);
	}
	for (int i = 0; i < nitems; i++)
	{
		CdvizItem  *it = &items[i];

		if (it->first_of_key >= 0)
			it->event_id = items[it->first_of_key].event_id;
		if (it->status == CDVIZ_ITEM_REJECTED)
		{
			if (it->problems.count == 0)
				cdviz_problems_add(&it->problems, "$", "the lake refused the event");
			if (!it->no_dead_letter)
			{
				const char *raw = it->received ? it->received : it->raw;
				size_t		raw_len = it->received ? it->received_len : it->raw_len;

				/* a jsonb item's text is printed only for its dead letter */
				if (raw == NULL)
				{
					raw = JsonbToCString(NULL, &it->jsonb->root, VARSIZE(it->jsonb));
					raw_len = strlen(raw);
				}
				it->rejected_id = cdviz_store_dead_letter_enveloped(origin, it->origin_ref,
																	raw, raw_len, it->envelope,
																	&it->problems);
			}
			result.rejected++;
		}
		else if (it->status == CDVIZ_ITEM_STORED)
			result.stored++;
		else if (it->status == CDVIZ_ITEM_WITHHELD)
			result.withheld++;
		else
			result.duplicates++;
	}
	SPI_finish();

	MemoryContextSwitchTo(oldcxt);
	/* payloads built from raw die with the batch; the caller's stay valid */
	MemoryContextDelete(batchcxt);
	return result;
}

CdvizStoreResult
cdviz_store_items(CdvizItem *items, int nitems, const char *origin)
{
	return store_items(items, nitems, origin, false);
}

CdvizStoreResult
cdviz_store_items_atomic(CdvizItem *items, int nitems, const char *origin)
{
	return store_items(items, nitems, origin, true);
}

void
cdviz_store_release_items(CdvizItem *items, int nitems)
{
	for (int i = 0; i < nitems; i++)
	{
		cdviz_problems_reset(&items[i].problems);
		cdviz_json_free(items[i].json);
		items[i].json = NULL;
	}
}
