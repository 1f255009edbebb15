/*
 * source_item_sql.c
 *	  The SQL functions of source transformers: cdviz._source_retransform()
 *	  (a dead letter a transformer left, made again with the source's
 *	  current transformer, for cdviz.retransform_source()) and
 *	  cdviz.report_cdevents() (the built-in mapping of a test report, for
 *	  transformers that start from it).
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "common/json.h"
#include "common/rfc3339.h"
#include "common/spi_util.h"
#include "common/subxact.h"
#include "common/version.h"
#include "core/event.h"
#include "core/report.h"
#include "webhook/source_item.h"
#include "webhook/webhook_int.h"

PG_FUNCTION_INFO_V1(cdviz_source_retransform);
PG_FUNCTION_INFO_V1(cdviz_report_cdevents);

/* Column col of the row SPI read, as text copied into cxt, or NULL. */
static char *
spi_text_in(int col, MemoryContext cxt)
{
	char	   *v = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col);

	return v ? MemoryContextStrdup(cxt, v) : NULL;
}

/*
 * Read dead letter id into item, the source's current transformer
 * included; raises when it is no transformer's dead letter, or its source
 * is gone or has no transformer any more.
 */
static void
read_dead_letter(int64 id, CdvizSourceItem *item)
{
	MemoryContext cxt = CurrentMemoryContext;
	Oid			types[1] = {INT8OID};
	Datum		args[1] = {Int64GetDatum(id)};
	char	   *mode;
	char	   *raw;
	bool		isnull;
	Datum		d;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "cdviz: SPI_connect failed");
	if (SPI_execute_with_args("SELECT r.origin, r.origin_ref, r.raw, r.envelope->>'mode', "
							  " r.envelope->>'source', r.envelope->'meta', s.id, s.transformer::pg_catalog.oid "
							  "FROM cdviz.rejected_events r "
							  "LEFT JOIN cdviz.sources s ON s.name = r.envelope->>'source' "
							  "WHERE r.id = $1 FOR UPDATE OF r",
							  1, types, args, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "cdviz: reading dead letter " INT64_FORMAT " failed", id);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("rejected event " INT64_FORMAT " does not exist", id)));
	mode = spi_text_in(4, cxt);
	if (mode == NULL || strcmp(mode, "transformer") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("rejected event " INT64_FORMAT " is not the input of a source's transformer", id),
				 errhint("Replay it with cdviz.replay_rejected().")));
	item->origin = spi_text_in(1, cxt);
	item->origin_ref = spi_text_in(2, cxt);
	raw = spi_text_in(3, cxt);
	item->source = spi_text_in(5, cxt);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 6, &isnull);
	if (isnull)
		elog(ERROR, "cdviz: dead letter " INT64_FORMAT " has no meta", id);
	MemoryContextSwitchTo(cxt);
	item->meta = DatumGetJsonbPCopy(d);
	(void) SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 7, &isnull);
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("source \"%s\" of rejected event " INT64_FORMAT " does not exist", item->source, id),
				 errhint("Create the source again under that name, with its transformer, to transform it again.")));
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 8, &isnull);
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("source \"%s\" has no transformer", item->source),
				 errhint("SELECT cdviz.alter_source('%s', transformer => 'my_transform(jsonb,jsonb)');",
						 item->source)));
	item->transformer = DatumGetObjectId(d);
	SPI_finish();

	item->dead_letter_id = id;
	if (raw[0] == '\0')
		item->body = NULL;		/* the transformer was handed a SQL null */
	else
	{
		ErrorData  *edata = NULL;

		item->body = cdviz_jsonb_parse(raw, strlen(raw), &edata);
		if (item->body == NULL)
			ReThrowError(edata);
	}
}

/*
 * cdviz._source_retransform(id bigint)
 *	 RETURNS (stored, duplicates, rejected, error)
 *
 * The source's current transformer over the item a transformer's dead
 * letter keeps: stored, and the dead letter removed, or, when it raises
 * again, the dead letter updated with the new error.
 */
Datum
cdviz_source_retransform(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc = cdviz_result_tupdesc(fcinfo);
	CdvizSourceItem item;
	CdvizStoreResult res;
	char	   *error;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};

	cdviz_check_version();
	memset(&item, 0, sizeof(item));
	read_dead_letter(PG_GETARG_INT64(0), &item);
	res = cdviz_source_item_store(&item, &error);
	values[0] = Int64GetDatum(res.stored);
	values[1] = Int64GetDatum(res.duplicates);
	values[2] = Int64GetDatum(res.rejected);
	nulls[3] = error == NULL;
	values[3] = error ? CStringGetTextDatum(error) : (Datum) 0;
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/*
 * The case limit of the reports of source name (meta's "source"): its
 * max_report_cases, else the default, so that a transformer is handed no
 * model the mapping then refuses.
 */
static long
source_case_limit(const char *name)
{
	Oid			types[1] = {TEXTOID};
	Datum		args[1];
	long		limit = CDVIZ_REPORT_DEFAULT_CASES;

	if (name == NULL)
		return limit;
	args[0] = CStringGetTextDatum(name);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "cdviz: SPI_connect failed");
	if (SPI_execute_with_args("SELECT (options->>'max_report_cases')::pg_catalog.int4 "
							  "FROM cdviz.sources WHERE name = $1",
							  1, types, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "cdviz: reading source \"%s\" failed", name);
	if (SPI_processed > 0)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			limit = cdviz_report_case_limit(DatumGetInt32(d));
	}
	SPI_finish();
	return limit;
}

/*
 * Count the suites and cases of suites (a jsonb array) as the mapping
 * does, into *items, and stop past max: the model is counted before it is
 * made into json-c, which costs some kilobyte per case.  Deeper than the
 * mapping reads, nothing is counted: the mapping refuses such a model.
 */
static void
count_suites(JsonbContainer *suites, int depth, long max, long *items)
{
	if (!JsonContainerIsArray(suites) || depth > CDVIZ_REPORT_MAX_DEPTH)
		return;
	for (uint32 i = 0; i < JsonContainerSize(suites) && *items <= max; i++)
	{
		JsonbValue *suite = getIthJsonbValueFromContainer(suites, i);
		JsonbValue *cases;
		JsonbValue *nested;

		if (suite->type != jbvBinary || !JsonContainerIsObject(suite->val.binary.data))
			continue;
		(*items)++;
		cases = getKeyJsonValueFromContainer(suite->val.binary.data, "cases", 5, NULL);
		if (cases && cases->type == jbvBinary && JsonContainerIsArray(cases->val.binary.data))
			for (uint32 c = 0; c < JsonContainerSize(cases->val.binary.data); c++)
			{
				JsonbValue *tc = getIthJsonbValueFromContainer(cases->val.binary.data, c);

				*items += tc->type == jbvBinary && JsonContainerIsObject(tc->val.binary.data);
			}
		nested = getKeyJsonValueFromContainer(suite->val.binary.data, "suites", 6, NULL);
		if (nested && nested->type == jbvBinary)
			count_suites(nested->val.binary.data, depth + 1, max, items);
	}
}

/* Where report_cdevents() puts the events the core hands over. */
typedef struct ReportRows
{
	ReturnSetInfo *rsinfo;
	MemoryContext cxt;			/* a batch's jsonb, reset after each */
	struct json_object *events; /* the batch being kept */
	ErrorData  *error;			/* what a batch raised, raised again once
								 * the core has freed its own memory */
} ReportRows;

/* The batch rows->events into the tuplestore, in rows->cxt, reset after it. */
static void
put_events(void *arg)
{
	ReportRows *rows = (ReportRows *) arg;
	MemoryContext old = MemoryContextSwitchTo(rows->cxt);
	int			n;
	Jsonb	  **jb = cdviz_json_array_to_jsonb(rows->events, &n);

	for (int i = 0; i < n; i++)
	{
		Datum		value = JsonbPGetDatum(jb[i]);
		bool		isnull = false;

		tuplestore_putvalues(rows->rsinfo->setResult, rows->rsinfo->setDesc, &value, &isnull);
	}
	MemoryContextSwitchTo(old);
	MemoryContextReset(rows->cxt);
}

/*
 * CdvizReportEmit: a batch of events into the function's tuplestore,
 * which spills to disk past work_mem.  An error is kept for
 * report_events() to raise again once the core has freed the batch.
 */
static bool
put_rows(struct json_object *events, void *arg)
{
	ReportRows *rows = (ReportRows *) arg;

	rows->events = events;
	rows->error = cdviz_catch(put_events, rows);
	return rows->error == NULL;
}

/*
 * The events of a report model (body) into rows; raises 54000 when body
 * holds more suites and cases than the limit, 22023 with the mapping's
 * problems when body is no model or meta lacks what the mapping needs.
 */
static void
report_events(Jsonb *meta, Jsonb *body, const char *environment, ReportRows *rows)
{
	CdvizReportOptions options;
	CdvizProblems problems;
	struct json_object *model;
	char	   *mtime = cdviz_webhook_member_text(&meta->root, "mtime");
	long		items = 0;
	bool		ok;

	memset(&options, 0, sizeof(options));
	options.file_id = cdviz_webhook_member_text(&meta->root, "id");
	options.source = cdviz_webhook_member_text(&meta->root, "source_uri");
	options.suite_name = cdviz_webhook_member_text(&meta->root, "name");
	options.environment_id = environment && environment[0] ? environment : NULL;
	options.max_cases = source_case_limit(cdviz_webhook_member_text(&meta->root, "source"));
	if (mtime)
		options.default_timestamp_us = cdviz_timestamptz_to_unix_us(
			DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in, CStringGetDatum(mtime),
													ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1))));
	if (JB_ROOT_IS_SCALAR(body))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the body is not a test report's model"),
				 errhint("Pass the body a source of format junit or tap hands its transformer.")));
	if (JsonContainerIsObject(&body->root))
	{
		JsonbValue *suites = getKeyJsonValueFromContainer(&body->root, "suites", 6, NULL);

		if (suites && suites->type == jbvBinary)
			count_suites(suites->val.binary.data, 1, options.max_cases, &items);
	}
	if (items > options.max_cases)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("the report holds more than %ld suites and cases", options.max_cases),
				 errhint("The limit is the option max_report_cases of the source meta names (default %d, at most %d); "
						 "a source's reports over it are dead letters.",
						 CDVIZ_REPORT_DEFAULT_CASES, CDVIZ_REPORT_MAX_CASES)));
	cdviz_problems_init(&problems);
	rows->cxt = AllocSetContextCreate(CurrentMemoryContext, "cdviz report_cdevents",
									  ALLOCSET_DEFAULT_SIZES);
	model = cdviz_jsonb_to_json(body);
	ok = cdviz_report_map(model, &options, 500, put_rows, rows, &problems);
	/* json-c memory is not the memory context's */
	cdviz_json_free(model);
	MemoryContextDelete(rows->cxt);
	if (rows->error != NULL)
	{
		cdviz_problems_reset(&problems);
		ReThrowError(rows->error);
	}
	if (!ok)
	{
		char	   *text = cdviz_problems_to_text(&problems, "; ");
		char	   *copy = pstrdup(text);

		free(text);
		cdviz_problems_reset(&problems);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the report cannot be made into events: %s", copy),
				 errhint("meta needs \"id\" and \"source_uri\", as a source of format junit or tap gives them.")));
	}
	cdviz_problems_reset(&problems);
}

/*
 * cdviz.report_cdevents(meta jsonb, body jsonb, environment text)
 *	 RETURNS SETOF jsonb
 *
 * What a source of format junit or tap stores without a transformer, as
 * a materialized set: the events go to a tuplestore a batch at a time.
 */
Datum
cdviz_report_cdevents(PG_FUNCTION_ARGS)
{
	ReportRows	rows = {0};

	cdviz_check_version();
	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	rows.rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	if (!PG_ARGISNULL(0) && !PG_ARGISNULL(1))
		report_events(PG_GETARG_JSONB_P(0), PG_GETARG_JSONB_P(1),
					  PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2)), &rows);
	return (Datum) 0;
}
