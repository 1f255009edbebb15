/*
 * store.c
 *	  Validate a batch of documents, insert the valid ones into the lake in
 *	  one INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING, and keep
 *	  the rest in cdviz.rejected_events.
 *
 * One statement per batch is what makes ingestion cheap: the per-statement
 * overhead (planning is cached, executor start-up, triggers fired once per
 * statement) is paid once, not per event.  Dedup is the lake's unique key
 * (context_source, context_id, timestamp): retransmissions are a no-op and
 * are answered with the id stored before.  Duplicates inside one batch are
 * found here first, since ON CONFLICT cannot report which row a skipped
 * one collided with.
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "datatype/timestamp.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "store/store.h"

int			cdviz_validation = CDVIZ_VALIDATION_STRICT;

static const struct config_enum_entry validation_options[] = {
	{"strict", CDVIZ_VALIDATION_STRICT, false},
	{"lenient", CDVIZ_VALIDATION_LENIENT, false},
	{"off", CDVIZ_VALIDATION_OFF, false},
	{NULL, 0, false}
};

/* Plans kept across calls; the plan cache re-plans them after DDL. */
static SPIPlanPtr insert_plan;
static SPIPlanPtr existing_plan;
static SPIPlanPtr reject_plan;
static SPIPlanPtr partition_plan;

#define N_LAKE_COLS 11

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
item_timestamp(const CdvizItem *item)
{
	return (TimestampTz) (item->info.timestamp_us -
						  ((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY));
}

/*
 * Build the jsonb payload from raw text.  jsonb_in refuses a few things
 * json-c accepts (lone surrogate escapes, numbers out of numeric range);
 * those become a problem of the item instead of an error of the batch.
 */
static Jsonb *
payload_from_raw(CdvizItem *item)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	Jsonb	   *result = NULL;

	PG_TRY();
	{
		result = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(item->raw)));
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		cdviz_problems_add(&item->problems, "$", "cannot be stored as jsonb: %s", edata->message);
		FreeErrorData(edata);
		result = NULL;
	}
	PG_END_TRY();
	return result;
}

/* ------------------------------------------------------------------ */
/* the dedup key                                                       */
/* ------------------------------------------------------------------ */

/* FNV-1a over the key's parts. */
static uint64
key_hash(CdvizStr source, CdvizStr id, TimestampTz ts)
{
	uint64		h = UINT64CONST(14695981039346656037);
	const unsigned char *p;

	for (p = (const unsigned char *) source.ptr; p < (const unsigned char *) source.ptr + source.len; p++)
		h = (h ^ *p) * UINT64CONST(1099511628211);
	h = (h ^ 0xff) * UINT64CONST(1099511628211);
	for (p = (const unsigned char *) id.ptr; p < (const unsigned char *) id.ptr + id.len; p++)
		h = (h ^ *p) * UINT64CONST(1099511628211);
	return h ^ (uint64) ts * UINT64CONST(0x9E3779B97F4A7C15);
}

static bool
str_eq(CdvizStr a, const char *b, size_t blen)
{
	return a.len == blen && memcmp(a.ptr, b, blen) == 0;
}

/* An open-addressing table of item indexes, keyed by the dedup key. */
typedef struct KeyTable
{
	int			size;			/* a power of two */
	int		   *slots;			/* item index, or -1 */
} KeyTable;

static void
keytable_init(KeyTable *t, int nitems)
{
	t->size = 16;
	while (t->size < nitems * 2)
		t->size <<= 1;
	t->slots = palloc(sizeof(int) * t->size);
	memset(t->slots, -1, sizeof(int) * t->size);
}

/* Find the item with this key, or the empty slot where it belongs. */
static int *
keytable_slot(KeyTable *t, CdvizItem *items, const char *src, size_t srclen,
			  const char *id, size_t idlen, TimestampTz ts)
{
	CdvizStr	s = {src, srclen};
	CdvizStr	i = {id, idlen};
	uint64		h = key_hash(s, i, ts);
	int			pos = (int) (h & (t->size - 1));

	for (;;)
	{
		int		   *slot = &t->slots[pos];
		CdvizItem  *it;

		if (*slot < 0)
			return slot;
		it = &items[*slot];
		if (item_timestamp(it) == ts &&
			str_eq(it->info.context_source, src, srclen) &&
			str_eq(it->info.context_id, id, idlen))
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
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, argtypes);

	if (plan == NULL)
		elog(ERROR, "cdviz: SPI_prepare failed for \"%s\": %s", sql,
			 SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "cdviz: SPI_keepplan failed");
	return plan;
}

static void
prepare_plans(void)
{
	if (insert_plan == NULL)
	{
		Oid			types[N_LAKE_COLS] = {TIMESTAMPTZARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
			TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
		TEXTARRAYOID, TEXTARRAYOID, JSONBARRAYOID};

		insert_plan = prepare_kept(
								   "INSERT INTO cdviz.cdevents_lake "
								   "(\"timestamp\", context_id, context_source, type, subject, predicate,"
								   " type_version, spec_version, subject_id, chain_id, payload) "
								   "SELECT * FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2),"
								   " pg_catalog.unnest($3), pg_catalog.unnest($4), pg_catalog.unnest($5),"
								   " pg_catalog.unnest($6), pg_catalog.unnest($7), pg_catalog.unnest($8),"
								   " pg_catalog.unnest($9), pg_catalog.unnest($10), pg_catalog.unnest($11)) "
								   "ON CONFLICT DO NOTHING "
								   "RETURNING id, context_source, context_id, \"timestamp\"",
								   N_LAKE_COLS, types);
	}
	if (existing_plan == NULL)
	{
		Oid			types[3] = {TEXTARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID};

		existing_plan = prepare_kept(
									 "SELECT l.id, l.context_source, l.context_id, l.\"timestamp\" "
									 "FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2),"
									 " pg_catalog.unnest($3)) AS k(src, cid, ts) "
									 "JOIN cdviz.cdevents_lake l ON l.context_source = k.src "
									 " AND l.context_id = k.cid AND l.\"timestamp\" = k.ts",
									 3, types);
	}
	if (reject_plan == NULL)
	{
		Oid			types[4] = {TEXTOID, TEXTOID, TEXTOID, JSONBOID};

		reject_plan = prepare_kept(
								   "INSERT INTO cdviz.rejected_events (origin, origin_ref, raw, problems) "
								   "VALUES ($1, $2, $3, $4) RETURNING id",
								   4, types);
	}
	if (partition_plan == NULL)
	{
		Oid			types[1] = {TIMESTAMPTZOID};

		partition_plan = prepare_kept("SELECT cdviz.ensure_partition($1)", 1, types);
	}
}

/* Make sure the monthly partition of every timestamp in the batch exists. */
static void
ensure_partitions(CdvizItem *items, int *rows, int nrows)
{
	Oid			nsp = get_namespace_oid("cdviz", false);
	int			seen[64];
	int			nseen = 0;

	for (int r = 0; r < nrows; r++)
	{
		TimestampTz ts = item_timestamp(&items[rows[r]]);
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

static Datum
text_datum(CdvizStr s, bool *isnull)
{
	*isnull = (s.ptr == NULL);
	return s.ptr ? PointerGetDatum(cstring_to_text_with_len(s.ptr, (int) s.len)) : (Datum) 0;
}

static ArrayType *
make_array(Datum *values, bool *nulls, int n, Oid elemtype)
{
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			dims[1] = {n};
	int			lbs[1] = {1};

	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	return construct_md_array(values, nulls, 1, dims, lbs, elemtype, typlen, typbyval, typalign);
}

/*
 * Row i of the last SPI result, (id, context_source, context_id, timestamp),
 * mapped to the slot of the batch item with that key.
 */
static int *
slot_of_result_row(KeyTable *keys, CdvizItem *items, uint64 i, int64 *id)
{
	HeapTuple	tup = SPI_tuptable->vals[i];
	TupleDesc	desc = SPI_tuptable->tupdesc;
	bool		isnull;
	text	   *src = DatumGetTextPP(SPI_getbinval(tup, desc, 2, &isnull));
	text	   *cid = DatumGetTextPP(SPI_getbinval(tup, desc, 3, &isnull));
	TimestampTz ts = DatumGetTimestampTz(SPI_getbinval(tup, desc, 4, &isnull));

	*id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
	return keytable_slot(keys, items, VARDATA_ANY(src), VARSIZE_ANY_EXHDR(src),
						 VARDATA_ANY(cid), VARSIZE_ANY_EXHDR(cid), ts);
}

/* Insert rows (item indexes) into the lake; mark what came back stored. */
static void
insert_rows(CdvizItem *items, int *rows, int nrows, KeyTable *keys)
{
	Datum	   *cols[N_LAKE_COLS];
	bool	   *nulls[N_LAKE_COLS];
	static const Oid elemtypes[N_LAKE_COLS] = {TIMESTAMPTZOID, TEXTOID, TEXTOID, TEXTOID,
		TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, JSONBOID};
	Datum		args[N_LAKE_COLS];
	int			ret;

	for (int c = 0; c < N_LAKE_COLS; c++)
	{
		cols[c] = palloc(sizeof(Datum) * nrows);
		nulls[c] = palloc0(sizeof(bool) * nrows);
	}
	for (int r = 0; r < nrows; r++)
	{
		CdvizItem  *it = &items[rows[r]];
		CdvizEventInfo *in = &it->info;

		cols[0][r] = TimestampTzGetDatum(item_timestamp(it));
		cols[1][r] = text_datum(in->context_id, &nulls[1][r]);
		cols[2][r] = text_datum(in->context_source, &nulls[2][r]);
		cols[3][r] = text_datum(in->type, &nulls[3][r]);
		cols[4][r] = text_datum(in->subject, &nulls[4][r]);
		cols[5][r] = text_datum(in->predicate, &nulls[5][r]);
		cols[6][r] = text_datum(in->type_version, &nulls[6][r]);
		cols[7][r] = text_datum(in->spec_version, &nulls[7][r]);
		cols[8][r] = text_datum(in->subject_id, &nulls[8][r]);
		cols[9][r] = text_datum(in->chain_id, &nulls[9][r]);
		cols[10][r] = JsonbPGetDatum(it->jsonb);
	}
	for (int c = 0; c < N_LAKE_COLS; c++)
		args[c] = PointerGetDatum(make_array(cols[c], nulls[c], nrows, elemtypes[c]));

	ret = SPI_execute_plan(insert_plan, args, NULL, false, 0);
	if (ret != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "cdviz: lake insert failed: %s", SPI_result_code_string(ret));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		int64		id;
		int		   *slot = slot_of_result_row(keys, items, i, &id);

		if (*slot >= 0)
		{
			items[*slot].status = CDVIZ_ITEM_STORED;
			items[*slot].event_id = id;
		}
	}
	SPI_freetuptable(SPI_tuptable);
}

/* Rows the INSERT skipped were in the lake already: fetch their ids. */
static void
resolve_existing(CdvizItem *items, int *rows, int nrows, KeyTable *keys)
{
	Datum	   *src = palloc(sizeof(Datum) * nrows);
	Datum	   *cid = palloc(sizeof(Datum) * nrows);
	Datum	   *ts = palloc(sizeof(Datum) * nrows);
	int			n = 0;
	Datum		args[3];
	bool		isnull;

	for (int r = 0; r < nrows; r++)
	{
		CdvizItem  *it = &items[rows[r]];

		if (it->status == CDVIZ_ITEM_STORED)
			continue;
		src[n] = text_datum(it->info.context_source, &isnull);
		cid[n] = text_datum(it->info.context_id, &isnull);
		ts[n] = TimestampTzGetDatum(item_timestamp(it));
		n++;
	}
	if (n == 0)
		return;
	args[0] = PointerGetDatum(make_array(src, NULL, n, TEXTOID));
	args[1] = PointerGetDatum(make_array(cid, NULL, n, TEXTOID));
	args[2] = PointerGetDatum(make_array(ts, NULL, n, TIMESTAMPTZOID));
	if (SPI_execute_plan(existing_plan, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "cdviz: dedup lookup failed");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		int64		id;
		int		   *slot = slot_of_result_row(keys, items, i, &id);

		if (*slot >= 0 && items[*slot].status != CDVIZ_ITEM_STORED)
		{
			items[*slot].status = CDVIZ_ITEM_DUPLICATE;
			items[*slot].event_id = id;
		}
	}
	SPI_freetuptable(SPI_tuptable);
}

/*
 * Bytes as a text value.  Text holds neither NUL bytes nor invalid
 * encoding, both of which bad input may have: such bytes are kept as \xNN
 * escapes, so a dead letter still shows what was sent.
 */
text *
cdviz_bytes_as_text(const char *raw, size_t len)
{
	StringInfoData buf;
	size_t		i = 0;

	if (memchr(raw, '\0', len) == NULL && pg_verifymbstr(raw, (int) len, true))
		return cstring_to_text_with_len(raw, (int) len);
	initStringInfo(&buf);
	while (i < len)
	{
		int			clen = pg_encoding_verifymbchar(GetDatabaseEncoding(), raw + i,
													(int) (len - i));

		if (raw[i] != '\0' && clen > 0)
		{
			appendBinaryStringInfo(&buf, raw + i, clen);
			i += clen;
		}
		else
			appendStringInfo(&buf, "\\x%02X", (unsigned char) raw[i++]);
	}
	return cstring_to_text_with_len(buf.data, buf.len);
}

int64
cdviz_store_dead_letter(const char *origin, const char *origin_ref,
						const char *raw, size_t raw_len, const CdvizProblems *problems)
{
	char	   *json = cdviz_problems_to_json(problems);
	Datum		args[4];
	char		nulls[4] = {' ', origin_ref ? ' ' : 'n', ' ', ' '};
	bool		isnull;
	int64		id;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "cdviz: SPI_connect failed");
	prepare_plans();
	args[0] = CStringGetTextDatum(origin);
	args[1] = origin_ref ? CStringGetTextDatum(origin_ref) : (Datum) 0;
	args[2] = PointerGetDatum(cdviz_bytes_as_text(raw, raw_len));
	args[3] = DirectFunctionCall1(jsonb_in, CStringGetDatum(json ? json : "[]"));
	free(json);
	if (SPI_execute_plan(reject_plan, args, nulls, false, 1) != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "cdviz: storing a rejected event failed");
	id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	return id;
}

CdvizStoreResult
cdviz_store_items(CdvizItem *items, int nitems, const char *origin)
{
	CdvizStoreResult result = {0, 0, 0};
	MemoryContext batchcxt;
	MemoryContext oldcxt;
	KeyTable	keys;
	int		   *rows;
	int			nrows = 0;
	CdvizValidation mode = (CdvizValidation) cdviz_validation;

	if (nitems == 0)
		return result;
	batchcxt = AllocSetContextCreate(CurrentMemoryContext, "cdviz store batch",
									 ALLOCSET_DEFAULT_SIZES);
	oldcxt = MemoryContextSwitchTo(batchcxt);

	keytable_init(&keys, nitems);
	rows = palloc(sizeof(int) * nitems);
	for (int i = 0; i < nitems; i++)
	{
		CdvizItem  *it = &items[i];
		int		   *slot;

		cdviz_problems_init(&it->problems);
		it->status = CDVIZ_ITEM_REJECTED;
		it->event_id = 0;
		it->rejected_id = 0;
		it->first_of_key = -1;
		it->own_jsonb = false;
		if (!pg_verifymbstr(it->raw, (int) it->raw_len, true))
		{
			cdviz_problems_add(&it->problems, "$", "not valid %s text",
							   GetDatabaseEncodingName());
			continue;
		}
		it->json = cdviz_json_parse(it->raw, it->raw_len, &it->problems);
		if (it->json == NULL ||
			!cdviz_event_check(it->json, mode, &it->info, &it->problems))
			continue;
		if (it->jsonb == NULL)
		{
			if ((it->jsonb = payload_from_raw(it)) == NULL)
				continue;
			it->own_jsonb = true;
		}
		slot = keytable_slot(&keys, items,
							 it->info.context_source.ptr, it->info.context_source.len,
							 it->info.context_id.ptr, it->info.context_id.len,
							 item_timestamp(it));
		if (*slot >= 0)
		{
			/* same key earlier in this batch: a retransmission */
			it->status = CDVIZ_ITEM_DUPLICATE;
			it->first_of_key = *slot;
			continue;
		}
		*slot = i;
		rows[nrows++] = i;
	}

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "cdviz: SPI_connect failed");
	prepare_plans();
	if (nrows > 0)
	{
		ensure_partitions(items, rows, nrows);
		insert_rows(items, rows, nrows, &keys);
		resolve_existing(items, rows, nrows, &keys);
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
				it->rejected_id = cdviz_store_dead_letter(origin, it->origin_ref, it->raw,
														  it->raw_len, &it->problems);
			result.rejected++;
		}
		else if (it->status == CDVIZ_ITEM_STORED)
			result.stored++;
		else
			result.duplicates++;
		cdviz_json_free(it->json);
		it->json = NULL;
		if (it->own_jsonb)
			it->jsonb = NULL;	/* freed with the batch context */
	}
	SPI_finish();

	MemoryContextSwitchTo(oldcxt);
	/* jsonb payloads the caller passed in stay valid: they are not ours */
	MemoryContextDelete(batchcxt);
	return result;
}

void
cdviz_store_release_items(CdvizItem *items, int nitems)
{
	for (int i = 0; i < nitems; i++)
		cdviz_problems_reset(&items[i].problems);
}
