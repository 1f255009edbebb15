/*
 * catalog.c
 *	  Loading a source of cdviz.sources with its secrets, reading its
 *	  options, and what its worker and the launcher record about it in
 *	  cdviz.source_progress.
 *
 * The options were validated by cdviz._source_check() when the row was
 * written, so an accessor trusts the type it finds and falls back to its
 * default only for a missing key.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "common/worker.h"
#include "sources/source.h"

/* See source.h. */
CdvizSource *
cdviz_source_load(int32 id, MemoryContext cxt, bool *paused)
{
	Oid			types[1] = {INT4OID};
	Datum		args[1] = {Int32GetDatum(id)};
	CdvizSource *src;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	Datum		d;
	MemoryContext old;

	/* the secrets over the options, a Kafka source's settings merged */
	if (SPI_execute_with_args("SELECT s.name, s.kind, s.location, "
							  " s.options || coalesce(x.secrets - 'config', '{}') "
							  "  || CASE WHEN x.secrets ? 'config' THEN jsonb_build_object('config', "
							  "     coalesce(s.options->'config', '{}') || (x.secrets->'config')) "
							  "     ELSE '{}' END, "
							  " s.transformer::oid, s.paused "
							  "FROM cdviz.sources s "
							  "LEFT JOIN cdviz.source_secrets x ON x.source_id = s.id "
							  "WHERE s.id = $1",
							  1, types, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "cdviz: loading source %d failed", id);
	if (SPI_processed == 0)
		return NULL;
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	old = MemoryContextSwitchTo(cxt);
	src = palloc0(sizeof(CdvizSource));
	src->id = id;
	src->name = SPI_getvalue(tup, desc, 1);
	src->kind = SPI_getvalue(tup, desc, 2);
	src->location = SPI_getvalue(tup, desc, 3);
	src->options = DatumGetJsonbPCopy(SPI_getbinval(tup, desc, 4, &isnull));
	d = SPI_getbinval(tup, desc, 5, &isnull);
	src->transformer = isnull ? InvalidOid : DatumGetObjectId(d);
	MemoryContextSwitchTo(old);
	if (paused)
		*paused = DatumGetBool(SPI_getbinval(tup, desc, 6, &isnull));
	return src;
}

/* The value of key in the options, or NULL. */
static JsonbValue *
option_value(const CdvizSource *src, const char *key, JsonbValue *buf)
{
	return getKeyJsonValueFromContainer(&src->options->root, key, strlen(key), buf);
}

/* See source.h. */
const char *
cdviz_source_opt_text(const CdvizSource *src, const char *key, const char *dflt)
{
	JsonbValue	buf;
	JsonbValue *v = option_value(src, key, &buf);

	if (v == NULL || v->type == jbvNull)
		return dflt;
	switch (v->type)
	{
		case jbvString:
			return pnstrdup(v->val.string.val, v->val.string.len);
		case jbvNumeric:
			return DatumGetCString(DirectFunctionCall1(numeric_out,
													   NumericGetDatum(v->val.numeric)));
		case jbvBool:
			return v->val.boolean ? "true" : "false";
		default:
			elog(ERROR, "cdviz: option \"%s\" of source \"%s\" is not a scalar", key, src->name);
	}
	return dflt;				/* not reached */
}

/* See source.h. */
int
cdviz_source_opt_int(const CdvizSource *src, const char *key, int dflt)
{
	JsonbValue	buf;
	JsonbValue *v = option_value(src, key, &buf);

	if (v == NULL || v->type == jbvNull)
		return dflt;
	if (v->type != jbvNumeric)
		elog(ERROR, "cdviz: option \"%s\" of source \"%s\" is not a number", key, src->name);
	return DatumGetInt32(DirectFunctionCall1(numeric_int4, NumericGetDatum(v->val.numeric)));
}

/* See source.h. */
bool
cdviz_source_opt_bool(const CdvizSource *src, const char *key, bool dflt)
{
	JsonbValue	buf;
	JsonbValue *v = option_value(src, key, &buf);

	if (v == NULL || v->type == jbvNull)
		return dflt;
	if (v->type != jbvBool)
		elog(ERROR, "cdviz: option \"%s\" of source \"%s\" is not true or false", key, src->name);
	return v->val.boolean;
}

/* Arguments of note_poll(). */
typedef struct PollNote
{
	int32		id;
	const char *error;
} PollNote;

static void
note_poll(void *arg)
{
	PollNote   *n = (PollNote *) arg;
	Oid			types[2] = {INT4OID, TEXTOID};
	Datum		args[2];
	char		nulls[2] = {' ', n->error ? ' ' : 'n'};

	args[0] = Int32GetDatum(n->id);
	args[1] = n->error ? CStringGetTextDatum(n->error) : (Datum) 0;
	if (SPI_execute_with_args("UPDATE cdviz.source_progress "
							  "SET last_poll_at = now(), "
							  " last_success_at = CASE WHEN $2 IS NULL THEN now() ELSE last_success_at END, "
							  " last_error = $2, "
							  " last_error_at = CASE WHEN $2 IS NOT NULL THEN now() ELSE last_error_at END "
							  "WHERE source_id = $1",
							  2, types, args, nulls, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "cdviz: updating cdviz.source_progress failed");
}

/* See source.h. */
void
cdviz_source_note_poll(const CdvizSource *src, const char *error)
{
	PollNote	n = {src->id, error};

	(void) cdviz_worker_transaction("noting the poll", note_poll, &n, NULL);
}

/* See source.h. */
void
cdviz_source_count(const CdvizSource *src, int64 events, int64 duplicates, int64 rejected)
{
	Oid			types[4] = {INT4OID, INT8OID, INT8OID, INT8OID};
	Datum		args[4];

	args[0] = Int32GetDatum(src->id);
	args[1] = Int64GetDatum(events);
	args[2] = Int64GetDatum(duplicates);
	args[3] = Int64GetDatum(rejected);
	if (SPI_execute_with_args("UPDATE cdviz.source_progress "
							  "SET events = events + $2, duplicates = duplicates + $3, "
							  " rejected = rejected + $4, last_read_at = now() "
							  "WHERE source_id = $1",
							  4, types, args, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "cdviz: updating cdviz.source_progress failed");
}

/* See source.h. */
void
cdviz_source_note_lag(const CdvizSource *src, int64 lag)
{
	Oid			types[2] = {INT4OID, INT8OID};
	Datum		args[2] = {Int32GetDatum(src->id), Int64GetDatum(lag)};

	if (SPI_execute_with_args("UPDATE cdviz.source_progress SET lag = $2 WHERE source_id = $1",
							  2, types, args, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "cdviz: updating cdviz.source_progress failed");
}

/* Arguments of set_state(). */
typedef struct StateNote
{
	int32		id;
	const char *state;
	const char *error;
	bool		restarted;
} StateNote;

static void
set_state(void *arg)
{
	StateNote  *n = (StateNote *) arg;
	Oid			types[4] = {INT4OID, TEXTOID, TEXTOID, BOOLOID};
	Datum		args[4];
	char		nulls[4] = {' ', ' ', n->error ? ' ' : 'n', ' '};

	args[0] = Int32GetDatum(n->id);
	args[1] = CStringGetTextDatum(n->state);
	args[2] = n->error ? CStringGetTextDatum(n->error) : (Datum) 0;
	args[3] = BoolGetDatum(n->restarted);

	/* a source dropped meanwhile has no row to write */
	if (SPI_execute_with_args("INSERT INTO cdviz.source_progress AS p "
							  " (source_id, state, last_error, last_error_at) "
							  "SELECT $1, $2, $3, CASE WHEN $3 IS NOT NULL THEN now() END "
							  "FROM cdviz.sources s WHERE s.id = $1 "
							  "ON CONFLICT (source_id) DO UPDATE SET state = $2, "
							  " state_at = CASE WHEN p.state = $2 THEN p.state_at ELSE now() END, "
							  " restarts = p.restarts + CASE WHEN $4 THEN 1 ELSE 0 END, "
							  " last_error = coalesce($3, p.last_error), "
							  " last_error_at = CASE WHEN $3 IS NOT NULL THEN now() ELSE p.last_error_at END",
							  4, types, args, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "cdviz: updating cdviz.source_progress failed");
}

/* See source.h. */
void
cdviz_source_set_state(int32 id, const char *state, const char *error, bool restarted)
{
	StateNote	n = {id, state, error, restarted};

	(void) cdviz_worker_transaction("noting a source's state", set_state, &n, NULL);
}
