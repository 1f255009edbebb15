/*
 * sql_api.c
 *	  The SQL-callable ingest functions: cdviz.ingest(), cdviz.ingest_batch(),
 *	  the all-or-nothing batch of webhook deliveries, cdviz.validate() and
 *	  the dead-letter replay.
 */
#include "postgres.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"

#include "core/envelope.h"
#include "store/store.h"
#include "common/version.h"

PG_FUNCTION_INFO_V1(cdviz_ingest);
PG_FUNCTION_INFO_V1(cdviz_ingest_batch);
PG_FUNCTION_INFO_V1(cdviz_ingest_all_or_nothing);
PG_FUNCTION_INFO_V1(cdviz_validate);
PG_FUNCTION_INFO_V1(cdviz_replay_rejected);

static const char *
validation_name(void)
{
	switch (cdviz_validation)
	{
		case CDVIZ_VALIDATION_STRICT:
			return "strict";
		case CDVIZ_VALIDATION_LENIENT:
			return "lenient";
		default:
			return "off";
	}
}

/*
 * The items of the function's (events jsonb, origin_ref text) arguments:
 * a JSON array of events (an object or scalar counts as an array of one),
 * each with origin_ref "<ref>[<index>]" (ref default_ref when NULL).
 */
static CdvizItem *
items_from_args(FunctionCallInfo fcinfo, const char *default_ref, int *nitems)
{
	Jsonb	   *events = PG_GETARG_JSONB_P(0);
	const char *ref = PG_ARGISNULL(1) ? default_ref : text_to_cstring(PG_GETARG_TEXT_PP(1));
	CdvizItem  *items;
	int			n = 0;

	if (JB_ROOT_IS_SCALAR(events) || !JB_ROOT_IS_ARRAY(events))
	{
		items = palloc(sizeof(CdvizItem));
		cdviz_item_from_jsonb(&items[0], events, psprintf("%s[0]", ref));
		n = 1;
	}
	else
	{
		JsonbIterator *it = JsonbIteratorInit(&events->root);
		JsonbValue	v;
		JsonbIteratorToken tok;

		items = palloc(sizeof(CdvizItem) * Max(JB_ROOT_COUNT(events), 1));
		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			if (tok != WJB_ELEM)
				continue;
			cdviz_item_from_jsonb(&items[n], JsonbValueToJsonb(&v), psprintf("%s[%d]", ref, n));
			n++;
		}
	}
	*nitems = n;
	return items;
}

/* Raise the problems of a rejected item as a SQL error. */
static void
report_invalid(const CdvizProblems *problems, const char *what)
{
	char	   *detail = cdviz_problems_to_text(problems, "\n");
	const CdvizProblem *first = &problems->items[0];

	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid CDEvent%s: %s: %s", what, first->path, first->message),
			 errdetail("%d problem%s found:\n%s%s", problems->count,
					   problems->count == 1 ? "" : "s", detail ? detail : "",
					   problems->truncated ? "\n(more problems not listed)" : ""),
			 errhint("Fix the event and send it again; SELECT * FROM cdviz.validate(event) lists every problem. "
					 "cdviz.validation is \"%s\" (strict checks the official CDEvents schema of the event's type).",
					 validation_name())));
}

/*
 * cdviz.ingest(event jsonb) RETURNS bigint
 *
 * Stores one event and returns its lake id; a retransmission returns the
 * id stored before.  An invalid event is an error (SQLSTATE 22023): the
 * caller is told at once, so nothing goes to the dead letters.
 */
Datum
cdviz_ingest(PG_FUNCTION_ARGS)
{
	Jsonb	   *jb = PG_GETARG_JSONB_P(0);
	CdvizItem	item;
	int64		id;

	cdviz_check_version();
	cdviz_item_from_jsonb(&item, jb, NULL);
	item.no_dead_letter = true;
	cdviz_store_items(&item, 1, "sql");
	if (item.status == CDVIZ_ITEM_REJECTED)
	{
		CdvizProblems copy = item.problems;

		/* the error unwinds: free nothing we still print */
		report_invalid(&copy, "");
	}
	id = item.event_id;
	cdviz_store_release_items(&item, 1);
	PG_RETURN_INT64(id);
}

/*
 * cdviz.ingest_batch(events jsonb, origin_ref text DEFAULT NULL)
 *	 RETURNS (stored bigint, duplicates bigint, rejected bigint)
 *
 * events is a JSON array of events (an object counts as an array of one).
 * Valid events are stored in one statement; each invalid one goes to
 * cdviz.rejected_events with origin 'sql' and origin_ref "<ref>[<index>]".
 */
Datum
cdviz_ingest_batch(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	CdvizItem  *items;
	int			n;
	CdvizStoreResult res;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};

	cdviz_check_version();
	tupdesc = cdviz_result_tupdesc(fcinfo);
	items = items_from_args(fcinfo, "ingest_batch", &n);
	res = cdviz_store_items(items, n, "sql");
	cdviz_store_release_items(items, n);

	values[0] = Int64GetDatum(res.stored);
	values[1] = Int64GetDatum(res.duplicates);
	values[2] = Int64GetDatum(res.rejected);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/*
 * cdviz._ingest_all_or_nothing(events jsonb, origin_ref text)
 *	 RETURNS (stored bigint, duplicates bigint, event_ids bigint[], problems jsonb)
 *
 * The events of one webhook delivery: all stored (or found stored), with
 * their lake ids in input order, or, when any is invalid, none, with the
 * problems of each invalid one ([{index, path, message}], index from 0)
 * and event_ids NULL.  Nothing goes to the dead letters: the delivery
 * itself keeps the input, for cdviz.retransform().
 */
Datum
cdviz_ingest_all_or_nothing(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	CdvizItem  *items;
	int			n;
	CdvizStoreResult res;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};

	cdviz_check_version();
	tupdesc = cdviz_result_tupdesc(fcinfo);
	items = items_from_args(fcinfo, "delivery", &n);
	for (int i = 0; i < n; i++)
		items[i].no_dead_letter = true;
	res = cdviz_store_items_atomic(items, n, "webhook");

	values[0] = Int64GetDatum(res.stored);
	values[1] = Int64GetDatum(res.duplicates);
	if (res.rejected == 0)
	{
		Datum	   *ids = palloc(sizeof(Datum) * Max(n, 1));

		for (int i = 0; i < n; i++)
			ids[i] = Int64GetDatum(items[i].event_id);
		values[2] = PointerGetDatum(construct_array(ids, n, INT8OID, sizeof(int64),
													FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		nulls[3] = true;
	}
	else
	{
		nulls[2] = true;
		values[3] = JsonbPGetDatum(cdviz_items_problems(items, n));
	}
	cdviz_store_release_items(items, n);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/*
 * cdviz.validate(event jsonb) RETURNS TABLE(path text, message text)
 *
 * Every problem cdviz.ingest would find, under the cdviz.validation mode
 * in force; no rows when the event is valid.  Stores nothing.
 */
Datum
cdviz_validate(PG_FUNCTION_ARGS)
{
	Jsonb	   *jb = PG_GETARG_JSONB_P(0);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *raw = JsonbToCString(NULL, &jb->root, VARSIZE(jb));
	CdvizProblems problems;

	cdviz_check_version();
	InitMaterializedSRF(fcinfo, 0);
	cdviz_problems_init(&problems);
	cdviz_store_check(raw, strlen(raw), &problems);
	if (problems.truncated)
		cdviz_problems_add(&problems, "$", "more problems were found than are listed");
	for (int i = 0; i < problems.count; i++)
	{
		Datum		values[2];
		bool		nulls[2] = {false, false};

		values[0] = CStringGetTextDatum(problems.items[i].path);
		values[1] = CStringGetTextDatum(problems.items[i].message);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	if (problems.truncated && problems.count == CDVIZ_MAX_PROBLEMS)
	{
		Datum		values[2] = {CStringGetTextDatum("$"),
		CStringGetTextDatum("more problems were found than are listed")};
		bool		nulls[2] = {false, false};

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	cdviz_problems_reset(&problems);
	return (Datum) 0;
}

/* The value of column col of the one row SPI read, copied, or NULL. */
static char *
spi_text(int col)
{
	char	   *v = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col);

	return v ? MemoryContextStrdup(TopTransactionContext, v) : NULL;
}

/*
 * Read a dead letter's raw as its envelope says (see the envelope column
 * of cdviz.rejected_events) into item: the CDEvent of a CloudEvent, or a
 * binary-mode body judged with the headers it came with.  When the
 * envelope refuses it, item is REJECTED with its problems.
 */
static void
replay_envelope(CdvizItem *item, const char *raw, const char *mode, char **headers)
{
	CdvizEnvelopeInput in;
	CdvizEnvelope env;

	memset(&in, 0, sizeof(in));
	in.body = raw;
	in.body_len = strlen(raw);
	in.http_headers = true;
	if (strcmp(mode, "binary") == 0)
	{
		in.content_type = headers[0];
		/* binary mode is what the receiver saw, whatever was edited since */
		in.ce_specversion = headers[1] ? headers[1] : "";
		in.ce_id = headers[2];
		in.ce_source = headers[3];
		in.ce_type = headers[4];
	}
	else if (strcmp(mode, "structured") == 0 || strcmp(mode, "batch") == 0)
		in.content_type = "application/cloudevents+json";
	else
	{
		item->status = CDVIZ_ITEM_REJECTED;
		cdviz_problems_add(&item->problems, "$",
						   "the dead letter's envelope mode \"%s\" is none of binary, structured, batch",
						   mode);
		return;
	}
	if (!cdviz_envelope_read(&in, &env))
	{
		cdviz_envelope_free(&env);
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	}
	Assert(env.nevents == 1);
	if (env.events[0].problems.count > 0)
	{
		item->status = CDVIZ_ITEM_REJECTED;
		cdviz_problems_move(&item->problems, &env.events[0].problems);
	}
	else
	{
		char	   *copy = MemoryContextAlloc(TopTransactionContext, env.events[0].raw_len + 1);

		memcpy(copy, env.events[0].raw, env.events[0].raw_len);
		copy[env.events[0].raw_len] = '\0';
		item->raw = copy;
		item->raw_len = env.events[0].raw_len;
	}
	cdviz_envelope_free(&env);
}

/*
 * cdviz._replay_rejected(id bigint, raise boolean) RETURNS bigint
 *
 * Runs a dead letter through ingestion again, reading it as its envelope
 * says.  Stored (or found stored): marks it replayed and returns the lake
 * id.  Still invalid: records the current problems and raises them (raise)
 * or returns NULL.
 */
Datum
cdviz_replay_rejected(PG_FUNCTION_ARGS)
{
	int64		rid = PG_GETARG_INT64(0);
	bool		raise = PG_GETARG_BOOL(1);
	Datum		arg = Int64GetDatum(rid);
	Oid			argtype = INT8OID;
	CdvizItem	item;
	char	   *raw;
	char	   *mode;
	char	   *headers[5];
	bool		isnull;
	int64		result = 0;

	cdviz_check_version();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "cdviz: SPI_connect failed");
	if (SPI_execute_with_args("SELECT raw, replayed_event_id, origin, origin_ref, envelope->>'mode', "
							  "envelope #>> '{headers,content-type}', "
							  "envelope #>> '{headers,ce-specversion}', "
							  "envelope #>> '{headers,ce-id}', "
							  "envelope #>> '{headers,ce-source}', "
							  "envelope #>> '{headers,ce-type}' "
							  "FROM cdviz.rejected_events WHERE id = $1 FOR UPDATE",
							  1, &argtype, &arg, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "cdviz: reading rejected event failed");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("rejected event %lld does not exist", (long long) rid),
				 errhint("SELECT id FROM cdviz.rejected_events lists the dead letters.")));
	/* a webhook body the receiver refused is the tool's payload, not a CDEvent */
	if (strcmp(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3), "webhook") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("rejected event %lld is a webhook delivery, not a CDEvent", (long long) rid),
				 errdetail("The receiver could not take it at \"%s\".",
						   SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4)),
				 errhint("Post it to its webhook again once the cause is fixed.")));
	/* an item a source's transformer raised on is the source's input */
	mode = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 5);
	if (mode && strcmp(mode, "transformer") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("rejected event %lld is the input of a source's transformer, not a CDEvent",
						(long long) rid),
				 errhint("Fix the transformer, then run it again with cdviz.retransform_source().")));
	(void) SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	if (!isnull)
	{
		/* replayed before: idempotent */
		result = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
		SPI_finish();
		PG_RETURN_INT64(result);
	}
	raw = spi_text(1);
	mode = spi_text(5);
	for (int i = 0; i < 5; i++)
		headers[i] = spi_text(6 + i);
	SPI_finish();

	memset(&item, 0, sizeof(item));
	cdviz_problems_init(&item.problems);
	item.raw = raw;
	item.raw_len = strlen(raw);
	item.no_dead_letter = true;
	if (mode != NULL)
		replay_envelope(&item, raw, mode, headers);
	if (item.status != CDVIZ_ITEM_REJECTED)
		cdviz_store_items(&item, 1, "replay");

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "cdviz: SPI_connect failed");
	if (item.status == CDVIZ_ITEM_REJECTED)
	{
		char	   *problems = cdviz_problems_to_json(&item.problems);
		Oid			types[2] = {INT8OID, TEXTOID};
		Datum		args[2] = {arg, CStringGetTextDatum(problems)};

		free(problems);
		SPI_execute_with_args("UPDATE cdviz.rejected_events SET problems = $2::jsonb WHERE id = $1",
							  2, types, args, NULL, false, 0);
		SPI_finish();
		if (raise)
		{
			CdvizProblems copy = item.problems;

			report_invalid(&copy, psprintf(" (rejected event %lld)", (long long) rid));
		}
		cdviz_store_release_items(&item, 1);
		PG_RETURN_NULL();
	}
	{
		Oid			types[2] = {INT8OID, INT8OID};
		Datum		args[2] = {arg, Int64GetDatum(item.event_id)};

		SPI_execute_with_args("UPDATE cdviz.rejected_events SET replayed_at = now(), "
							  "replayed_event_id = $2 WHERE id = $1",
							  2, types, args, NULL, false, 0);
	}
	SPI_finish();
	result = item.event_id;
	cdviz_store_release_items(&item, 1);
	PG_RETURN_INT64(result);
}
