/*
 * source_item.c
 *	  One item of a source made into stored events: the source's
 *	  transformer run over (meta, body) by webhook_transform.c, as a
 *	  webhook delivery's is, or the built-in mapping; a transformer's error
 *	  keeps the item as a dead letter (see source_item.h).
 *
 * Unlike a webhook delivery, an item has no record of its own: the file
 * or object is what keeps it, and what the source's progress row says of
 * it.  So the item is kept only when the transformer raises, in
 * cdviz.rejected_events, whose envelope says how to make it again; the
 * events of a transformer that ran are stored like any source's, one
 * invalid event not costing the others.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "store/store.h"
#include "webhook/source_item.h"
#include "webhook/webhook_int.h"

/* meta's member key, which must be a string. */
static const char *
required_member(const CdvizSourceItem *item, const char *key)
{
	char	   *v = cdviz_webhook_member_text(&item->meta->root, key);

	if (v == NULL)
		elog(ERROR, "cdviz: the meta of an item of source \"%s\" has no \"%s\"", item->source, key);
	return v;
}

/* The default context.timestamp: meta.mtime, else the transaction's time. */
static TimestampTz
item_time(const CdvizSourceItem *item)
{
	char	   *mtime = cdviz_webhook_member_text(&item->meta->root, "mtime");

	if (mtime == NULL)
		return GetCurrentTransactionStartTimestamp();
	return DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in, CStringGetDatum(mtime),
												   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
}

/* The envelope of the item's dead letter: how to make it again. */
static char *
dead_letter_envelope(const CdvizSourceItem *item, const char *transformer_name, int sqlerrcode)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"mode\": \"transformer\", \"source\": ");
	escape_json(&buf, item->source);
	appendStringInfoString(&buf, ", \"transformer\": ");
	escape_json(&buf, transformer_name ? transformer_name : psprintf("%u", item->transformer));
	appendStringInfoString(&buf, ", \"sqlstate\": ");
	escape_json(&buf, unpack_sql_state(sqlerrcode));
	appendStringInfoString(&buf, ", \"meta\": ");
	(void) JsonbToCString(&buf, &item->meta->root, VARSIZE(item->meta));
	appendStringInfoChar(&buf, '}');
	return buf.data;
}

/*
 * Keep the item as a dead letter, or, for a retransform, record the new
 * error on the one it comes from.
 */
static void
keep_item(const CdvizSourceItem *item, const char *transformer_name, const CdvizTransformed *t)
{
	CdvizProblems problems;
	char	   *envelope = dead_letter_envelope(item, transformer_name, t->sqlerrcode);

	cdviz_problems_init(&problems);
	cdviz_problems_add(&problems, "$", "%s", t->error);
	if (item->dead_letter_id == 0)
	{
		char	   *raw = item->body ? JsonbToCString(NULL, &item->body->root, VARSIZE(item->body)) : "";

		(void) cdviz_store_dead_letter_enveloped(item->origin, item->origin_ref, raw, strlen(raw),
												 envelope, &problems);
	}
	else
	{
		Oid			types[3] = {INT8OID, TEXTOID, TEXTOID};
		char	   *json = cdviz_problems_to_json(&problems);
		Datum		args[3] = {Int64GetDatum(item->dead_letter_id), CStringGetTextDatum(json),
		CStringGetTextDatum(envelope)};

		free(json);
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "cdviz: SPI_connect failed");
		if (SPI_execute_with_args("UPDATE cdviz.rejected_events SET problems = $2::pg_catalog.jsonb, "
								  " envelope = $3::pg_catalog.jsonb WHERE id = $1",
								  3, types, args, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "cdviz: updating dead letter " INT64_FORMAT " failed", item->dead_letter_id);
		SPI_finish();
	}
	cdviz_problems_reset(&problems);
}

/* A retransform that succeeded: its dead letter is recovered. */
static void
forget_dead_letter(int64 id)
{
	Oid			types[1] = {INT8OID};
	Datum		args[1] = {Int64GetDatum(id)};

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "cdviz: SPI_connect failed");
	if (SPI_execute_with_args("DELETE FROM cdviz.rejected_events WHERE id = $1",
							  1, types, args, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "cdviz: removing dead letter " INT64_FORMAT " failed", id);
	SPI_finish();
}

/*
 * Store the output of the transformer that ran into t, batch by batch
 * (CDVIZ_SOURCE_BATCH), each batch's items freed before the next is made,
 * adding the counts to *res.
 */
static void
store_output(const CdvizSourceItem *item, const CdvizTransformInput *in, CdvizTransformed *t,
			 CdvizStoreResult *res)
{
	MemoryContext batchcxt = AllocSetContextCreate(CurrentMemoryContext, "cdviz source item batch",
												   ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(batchcxt);
	int			max = item->batch_events > 0 ? item->batch_events : CDVIZ_SOURCE_BATCH;

	while (cdviz_transform_next(in, t, max) > 0)
	{
		CdvizStoreResult r = cdviz_store_items(t->items, t->nitems, item->origin);

		cdviz_store_release_items(t->items, t->nitems);
		res->stored += r.stored;
		res->duplicates += r.duplicates;
		res->rejected += r.rejected;
		MemoryContextReset(batchcxt);
	}
	MemoryContextSwitchTo(old);
	MemoryContextDelete(batchcxt);
	cdviz_transform_end(t);
}

/* See source_item.h. */
CdvizStoreResult
cdviz_source_item_store(const CdvizSourceItem *item, char **error)
{
	MemoryContext cxt = CurrentMemoryContext;
	CdvizStoreResult res = {0};
	CdvizTransformInput in;
	CdvizTransformed t;
	int			nest;

	*error = NULL;
	if (!OidIsValid(item->transformer))
	{
		if (item->builtin == NULL)
			elog(ERROR, "cdviz: source \"%s\" has neither a transformer nor a built-in mapping",
				 item->source);
		return item->builtin(item, item->builtin_arg);
	}

	memset(&in, 0, sizeof(in));
	in.transformer = item->transformer;
	in.transformer_name = cdviz_webhook_function_name(item->transformer);
	in.first = item->meta;
	in.body = item->body;
	in.key = required_member(item, "id");
	in.default_source = required_member(item, "source_uri");
	in.default_time = item_time(item);
	in.ref = item->origin_ref;

	/* the transformer runs as a webhook's: its own search_path, in SPI */
	nest = cdviz_webhook_pin_search_path();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "cdviz: SPI_connect failed");
	MemoryContextSwitchTo(cxt);
	cdviz_transform_run(&in, &t);
	SPI_finish();
	MemoryContextSwitchTo(cxt);

	if (t.status != NULL)
	{
		keep_item(item, in.transformer_name, &t);
		res.rejected = 1;
		*error = t.error;
	}
	else
	{
		store_output(item, &in, &t, &res);
		if (item->dead_letter_id != 0)
			forget_dead_letter(item->dead_letter_id);
	}
	cdviz_webhook_restore_search_path(nest);
	return res;
}
