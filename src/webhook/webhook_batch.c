/*
 * webhook_batch.c
 *	  Deliveries written together (CdvizWebhookBatch): the http worker
 *	  transforms a group's deliveries one after another, and their events
 *	  go to the lake in one statement, their rows to
 *	  cdviz.webhook_deliveries in another, as /cdevents stores a group's
 *	  events; paid per delivery, the lake insert and the record would cost
 *	  more than the transformer.  The batch is written before a transformer
 *	  that could read it runs (see cdviz_webhook_batch_wants_flush()), so a
 *	  transformer sees every earlier delivery's inventory; a delivery's
 *	  events are all or nothing (the store's units); and a delivery the
 *	  database refuses fails alone (write_isolated()).
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "common/json.h"
#include "common/spi_util.h"
#include "common/subxact.h"
#include "store/store.h"
#include "webhook/webhook_int.h"

/* A delivery transformed, waiting for its batch's flush. */
typedef struct Pending
{
	CdvizDelivery d;
	const CdvizWebhookRoute *route;
	CdvizWebhookOutcome *out;	/* filled at the flush */
	MemoryContext outcxt;		/* where out's strings and ids go */
	int			first_item;		/* its events: the batch's items from here */
	int			nitems;
	List	   *context_ids;	/* as CdvizTransformed's */
	const char *status;
	char	   *error;
} Pending;

/* See webhook.h. */
struct CdvizWebhookBatch
{
	MemoryContext cxt;			/* the deliveries' data, reset at the flush */
	Pending    *pending;		/* in the batch's parent context, as items */
	int			npending;
	int			maxpending;
	CdvizItem  *items;			/* the events, unit = index of their Pending */
	int			nitems;
	int			maxitems;
	bool		inventory_events;	/* service or incident events among them */
	bool		isolate;		/* a delivery's write error is its own
								 * (out->failure), not the batch's: for the
								 * http worker's groups */
};

static SPIPlanPtr record_plan;

/*
 * The deliveries of a flush, one row each, in one statement (its start,
 * the check constraint's and the indexes' set-up are paid once).
 * event_ids and context_ids come as array text: arrays of arrays do not
 * unnest; an unnest of several arrays is only known unqualified
 * (search_path is pg_catalog here).  No two rows have the same key (a
 * redelivery flushes the batch first).  A redelivery of a stored delivery
 * stays "stored": it did produce them.
 */
static void
prepare_record_plan(void)
{
	Oid			types[11] = {TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, JSONBARRAYOID,
		JSONBARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
	JSONBARRAYOID, INT4OID};

	if (record_plan != NULL)
		return;
	record_plan = cdviz_prepare_kept(
										 "INSERT INTO cdviz.webhook_deliveries AS x (route, event_name, delivery_key,"
										 " headers, body, status, event_ids, context_ids, error, problems) "
										 "SELECT u.route, u.event_name, u.delivery_key, u.headers, u.body, u.status,"
										 " u.event_ids::pg_catalog.int8[], u.context_ids::pg_catalog.text[], u.error, u.problems "
										 "FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
										 " AS u(route, event_name, delivery_key, headers, body, status, event_ids,"
										 " context_ids, error, problems) "
										 "ON CONFLICT ON CONSTRAINT webhook_deliveries_route_delivery_key_key DO UPDATE "
										 "SET attempts = x.attempts + $11,"
										 " last_received_at = CASE WHEN $11 > 0 THEN pg_catalog.now()"
										 " ELSE x.last_received_at END,"
										 " status = CASE WHEN x.status = 'stored' AND excluded.status = 'duplicate'"
										 " THEN 'stored' ELSE excluded.status END,"
										 " error = excluded.error, problems = excluded.problems,"
										 " event_ids = excluded.event_ids, context_ids = excluded.context_ids,"
										 " transformed_at = pg_catalog.now() "
										 "RETURNING x.id, x.route, x.delivery_key",
										 11, types, 0);
}

/* "the transformer returned 1 invalid event(s) of 2: event 0 at $.x: …" */
static char *
invalid_output_error(const CdvizItem *items, int nitems, int64 rejected)
{
	for (int i = 0; i < nitems; i++)
	{
		const CdvizProblems *p = &items[i].problems;

		if (items[i].status != CDVIZ_ITEM_REJECTED)
			continue;
		return psprintf("the transformer returned " INT64_FORMAT " invalid event(s) of %d: event %d at %s: %s",
						rejected, nitems, i,
						p->count > 0 ? p->items[0].path : "$",
						p->count > 0 ? p->items[0].message : "more problems were found than are listed");
	}
	return pstrdup("the transformer returned invalid events");
}

/* The delivery rows of a flush, one array element per delivery. */
#define RECORD_COLS 10

typedef struct RecordRows
{
	Datum	   *cols[RECORD_COLS];
	bool	   *nulls[RECORD_COLS];
} RecordRows;

/* An array text (array_out) as a text datum, for the record's unnest. */
static Datum
array_as_text(Datum array)
{
	/* array_out caches in its flinfo: called through one */
	return CStringGetTextDatum(OidOutputFunctionCall(F_ARRAY_OUT, array));
}

/*
 * p's outcome, now that its events were stored (or rejected), in p->out
 * but for the delivery id; its row as element i of rows.
 */
static void
delivery_outcome(Pending *p, const CdvizItem *items, RecordRows *rows, int i)
{
	CdvizDelivery   *d = &p->d;
	CdvizWebhookOutcome *out = p->out;
	const char *status = p->status;
	char	   *error = p->error;
	Jsonb	   *problems = NULL;
	int64		rejected = 0;
	Datum		v[RECORD_COLS];
	bool		n[RECORD_COLS];

	memset(out, 0, sizeof(*out));
	for (int k = 0; k < p->nitems; k++)
	{
		if (items[k].status == CDVIZ_ITEM_REJECTED)
			rejected++;
		else if (items[k].status == CDVIZ_ITEM_STORED)
			out->stored++;
		else if (items[k].status == CDVIZ_ITEM_DUPLICATE)
			out->duplicates++;
	}
	if (status != NULL)
	{
		/* a transformer that raised made no events; "ignored" made none */
		if (strcmp(status, "failed") != 0)
			out->event_ids = MemoryContextAlloc(p->outcxt, sizeof(int64));
	}
	else if (rejected > 0)
	{
		/*
		 * All or nothing: a delivery whose output is partly invalid is kept
		 * whole, for retransform once the transformer is fixed.
		 */
		status = "failed";
		problems = cdviz_items_problems(items, p->nitems);
		error = invalid_output_error(items, p->nitems, rejected);
	}
	else
	{
		out->event_ids = MemoryContextAlloc(p->outcxt, sizeof(int64) * p->nitems);
		out->nevents = p->nitems;
		for (int k = 0; k < p->nitems; k++)
			out->event_ids[k] = items[k].event_id;
		status = out->stored > 0 ? "stored" : "duplicate";
	}
	out->status = MemoryContextStrdup(p->outcxt, status);
	out->error = error ? MemoryContextStrdup(p->outcxt, error) : NULL;

	memset(n, false, sizeof(n));
	v[0] = CStringGetTextDatum(d->route);
	v[1] = d->event_name ? CStringGetTextDatum(d->event_name) : (n[1] = true, (Datum) 0);
	v[2] = CStringGetTextDatum(d->key);
	v[3] = JsonbPGetDatum(d->headers);
	v[4] = JsonbPGetDatum(d->body);
	v[5] = CStringGetTextDatum(status);
	v[6] = out->event_ids ? array_as_text(cdviz_webhook_int8_array(out->event_ids, out->nevents))
		: (n[6] = true, (Datum) 0);
	/* a transformer that raised made no ids; one with invalid output did */
	v[7] = strcmp(status, "failed") == 0 && problems == NULL ? (n[7] = true, (Datum) 0)
		: array_as_text(cdviz_webhook_text_array(p->context_ids));
	v[8] = error ? CStringGetTextDatum(error) : (n[8] = true, (Datum) 0);
	v[9] = problems ? JsonbPGetDatum(problems) : (n[9] = true, (Datum) 0);
	for (int c = 0; c < RECORD_COLS; c++)
	{
		rows->cols[c][i] = v[c];
		rows->nulls[c][i] = n[c];
	}
}

/*
 * Write the delivery rows of the batch's deliveries from .. to-1 with
 * their outcomes, in one statement, and give each outcome its delivery
 * id.  Inside SPI.
 */
static void
record_deliveries(CdvizWebhookBatch *b, int from, int to)
{
	int			n = to - from;
	int			receptions = b->pending[from].d.receptions;
	static const Oid elemtypes[RECORD_COLS] = {TEXTOID, TEXTOID, TEXTOID, JSONBOID, JSONBOID,
	TEXTOID, TEXTOID, TEXTOID, TEXTOID, JSONBOID};
	RecordRows	rows;
	Datum		args[RECORD_COLS + 1];
	bool		prune = false;

	for (int c = 0; c < RECORD_COLS; c++)
	{
		rows.cols[c] = palloc(sizeof(Datum) * n);
		rows.nulls[c] = palloc(sizeof(bool) * n);
	}
	for (int i = 0; i < n; i++)
		delivery_outcome(&b->pending[from + i], b->items + b->pending[from + i].first_item, &rows, i);
	for (int c = 0; c < RECORD_COLS; c++)
		args[c] = PointerGetDatum(cdviz_make_array(rows.cols[c], rows.nulls[c], n, elemtypes[c]));
	args[RECORD_COLS] = Int32GetDatum(receptions);
	if (SPI_execute_plan(record_plan, args, NULL, false, 0) != SPI_OK_INSERT_RETURNING ||
		SPI_processed != (uint64) n)
		elog(ERROR, "cdviz: recording %d webhook deliveries failed", n);

	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		char	   *route = TextDatumGetCString(SPI_getbinval(tup, desc, 2, &isnull));
		char	   *key = TextDatumGetCString(SPI_getbinval(tup, desc, 3, &isnull));

		for (int i = from; i < to; i++)
			if (strcmp(b->pending[i].d.route, route) == 0 && strcmp(b->pending[i].d.key, key) == 0)
				b->pending[i].out->delivery_id = id;
		prune |= receptions > 0 && id % 1000 == 0;
	}
	SPI_freetuptable(SPI_tuptable);

	/*
	 * Retention as deliveries arrive: one cheap indexed delete per route of
	 * the batch when a delivery id crosses a thousand, planned for the
	 * table as it is now.
	 */
	for (int i = from; prune && i < to; i++)
	{
		Oid			types[2] = {TEXTOID, INTERVALOID};
		Datum		pargs[2] = {CStringGetTextDatum(b->pending[i].d.route), b->pending[i].route->retention};
		bool		seen = false;

		for (int j = from; j < i && !seen; j++)
			seen = strcmp(b->pending[j].d.route, b->pending[i].d.route) == 0;
		if (seen)
			continue;
		if (SPI_execute_with_args("DELETE FROM cdviz.webhook_deliveries d "
								  "WHERE d.route = $1 AND d.received_at < pg_catalog.now() - $2",
								  2, types, pargs, NULL, false, 0) != SPI_OK_DELETE)
			elog(ERROR, "cdviz: pruning webhook deliveries of \"%s\" failed", b->pending[i].d.route);
	}
}

/* The batch's items made by its deliveries from .. to-1: *first .. *end-1. */
static void
items_of(CdvizWebhookBatch *b, int from, int to, int *first, int *end)
{
	*first = b->pending[from].first_item;
	*end = b->pending[to - 1].first_item + b->pending[to - 1].nitems;
}

/*
 * Store the events of the batch's deliveries from .. to-1 (all or nothing
 * per delivery) and record them.  Inside SPI.
 */
static void
write_deliveries(CdvizWebhookBatch *b, int from, int to)
{
	int			first;
	int			end;

	items_of(b, from, to, &first, &end);
	if (end > first)
		(void) cdviz_store_items_atomic(b->items + first, end - first, "webhook");
	record_deliveries(b, from, to);
}

/* Deliveries of a batch, as cdviz_subxact() writes them. */
typedef struct WriteRun
{
	CdvizWebhookBatch *b;
	int			from;
	int			to;
} WriteRun;

/* The deliveries of w, as cdviz_subxact() runs them. */
static void
run_write(void *arg)
{
	WriteRun   *w = (WriteRun *) arg;

	write_deliveries(w->b, w->from, w->to);
}

/*
 * A write rolled back took the events' json-c documents (the store frees
 * them as it goes): make them again for the next attempt.
 */
static void
renew_documents(CdvizWebhookBatch *b, int from, int to)
{
	int			first;
	int			end;

	items_of(b, from, to, &first, &end);
	for (int k = first; k < end; k++)
	{
		CdvizItem  *it = &b->items[k];

		cdviz_problems_reset(&it->problems);
		if (it->json == NULL && it->raw == NULL)
			it->json = cdviz_jsonb_to_json(it->jsonb);
	}
}

/*
 * Write the whole batch in a subtransaction; if the database refuses it,
 * each delivery alone, so that the error is only the delivery's that
 * caused it (out->failure) and the others are written as they would have
 * been on their own.
 */
static void
write_isolated(CdvizWebhookBatch *b)
{
	WriteRun	all = {b, 0, b->npending};
	ErrorData  *edata;

	if (b->npending > 1)
	{
		if ((edata = cdviz_subxact(run_write, &all, NULL)) == NULL)
			return;
		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
			ReThrowError(edata);
		FreeErrorData(edata);
		renew_documents(b, 0, b->npending);
	}
	for (int i = 0; i < b->npending; i++)
	{
		WriteRun	one = {b, i, i + 1};
		Pending    *p = &b->pending[i];

		if ((edata = cdviz_subxact(run_write, &one, p->outcxt)) == NULL)
			continue;
		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
			ReThrowError(edata);
		memset(p->out, 0, sizeof(*p->out));
		p->out->failure = edata;
	}
}

/* See webhook_int.h. */
CdvizWebhookBatch *
cdviz_webhook_batch_new(bool isolate)
{
	CdvizWebhookBatch *b = palloc0(sizeof(CdvizWebhookBatch));

	b->isolate = isolate;
	b->cxt = AllocSetContextCreate(CurrentMemoryContext, "cdviz webhook batch",
								   ALLOCSET_DEFAULT_SIZES);
	b->maxpending = 16;
	b->pending = palloc(sizeof(Pending) * b->maxpending);
	b->maxitems = 16;
	b->items = palloc(sizeof(CdvizItem) * b->maxitems);
	return b;
}

/* See webhook_int.h. */
MemoryContext
cdviz_webhook_batch_context(CdvizWebhookBatch *b)
{
	return b->cxt;
}

/* See webhook_int.h.  d's events are the unit of its index in the batch. */
void
cdviz_webhook_batch_add(CdvizWebhookBatch *b, const CdvizWebhookRoute *route,
						const CdvizDelivery *d, CdvizTransformed *t,
						CdvizWebhookOutcome *out, MemoryContext outcxt)
{
	Pending    *p;

	if (b->npending == b->maxpending)
	{
		b->maxpending *= 2;
		b->pending = repalloc(b->pending, sizeof(Pending) * b->maxpending);
	}
	if (b->nitems + t->nitems > b->maxitems)
	{
		b->maxitems = Max(b->maxitems * 2, b->nitems + t->nitems);
		b->items = repalloc(b->items, sizeof(CdvizItem) * b->maxitems);
	}
	p = &b->pending[b->npending];
	/* one statement records the batch: receptions or retransforms, not both */
	Assert(b->npending == 0 || b->pending[0].d.receptions == d->receptions);
	memset(p, 0, sizeof(*p));
	p->d = *d;
	p->route = route;
	p->out = out;
	p->outcxt = outcxt;
	p->first_item = b->nitems;
	p->nitems = t->nitems;
	p->context_ids = t->context_ids;
	p->status = t->status;
	p->error = t->error;
	for (int k = 0; k < t->nitems; k++)
	{
		t->items[k].unit = b->npending;
		b->items[b->nitems++] = t->items[k];
	}
	b->inventory_events |= t->inventory;
	b->npending++;
}

/* See webhook.h. */
CdvizWebhookBatch *
cdviz_webhook_batch_start(void)
{
	return cdviz_webhook_batch_new(true);
}

/* See webhook.h. */
bool
cdviz_webhook_batch_wants_flush(CdvizWebhookBatch *b, const CdvizWebhookRoute *route,
								Jsonb *headers, Jsonb *body)
{
	char	   *key;
	bool		found = false;

	if (b->npending == 0)
		return false;
	if (!route->builtin || b->inventory_events)
		return true;
	key = cdviz_webhook_key(headers, body);
	for (int i = 0; i < b->npending && !found; i++)
		found = strcmp(b->pending[i].d.route, route->name) == 0 &&
			strcmp(b->pending[i].d.key, key) == 0;
	pfree(key);
	return found;
}

/* See webhook.h. */
void
cdviz_webhook_batch_flush(CdvizWebhookBatch *b)
{
	int			nest;

	if (b->npending == 0)
		return;
	nest = cdviz_webhook_pin_search_path();
	SPI_connect();
	prepare_record_plan();
	if (b->isolate)
		write_isolated(b);
	else
		write_deliveries(b, 0, b->npending);
	SPI_finish();
	cdviz_webhook_restore_search_path(nest);
	cdviz_store_release_items(b->items, b->nitems);
	b->npending = 0;
	b->nitems = 0;
	b->inventory_events = false;
	MemoryContextReset(b->cxt);
}

/* See webhook.h. */
void
cdviz_webhook_batch_end(CdvizWebhookBatch *b)
{
	cdviz_store_release_items(b->items, b->nitems);
	MemoryContextDelete(b->cxt);
	pfree(b->items);
	pfree(b->pending);
	pfree(b);
}
