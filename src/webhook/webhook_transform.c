/*
 * webhook_transform.c
 *	  A transformer's run: a SQL function (jsonb, jsonb) RETURNS SETOF jsonb
 *	  runs over one input in a subtransaction, its call planned once and
 *	  kept per function, and each event it returns gets its context
 *	  completed: the id from the input's key and the event's position, the
 *	  source, and the input's own time when it has no timestamp, so that
 *	  the same input makes the same events.  The input is a webhook
 *	  delivery (headers, body: cdviz_webhook_make_events()) or an item a
 *	  source read (meta, body: source_item.c).
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "common/rfc3339.h"
#include "common/spi_util.h"
#include "common/subxact.h"
#include "store/store.h"
#include "webhook/webhook_int.h"

/* Transformers whose call is planned and kept, by function. */
#define TRANSFORMER_PLANS 16

/* A kept plan calling function fn, by the name it had when planned. */
typedef struct TransformerPlan
{
	Oid			fn;
	char	   *name;
	SPIPlanPtr	plan;
} TransformerPlan;

static TransformerPlan transformer_plans[TRANSFORMER_PLANS];
static int	transformer_victim;
static int	transformer_depth;	/* transformer calls in progress */

/*
 * The members of an event's context: specversion, source and timestamp
 * when it has none, its own members but nulls (as jsonb_strip_nulls drops
 * them), and id, always ours.  Later pairs win over earlier ones.
 */
static void
push_context(JsonbParseState **st, JsonbValue *context, const char *id,
			 const char *source, const char *ts)
{
	Jsonb	   *stripped = DatumGetJsonbP(DirectFunctionCall1(jsonb_strip_nulls,
															  JsonbPGetDatum(JsonbValueToJsonb(context))));
	JsonbIterator *it = JsonbIteratorInit(&stripped->root);
	JsonbValue	v;
	JsonbIteratorToken tok;

	pushJsonbValue(st, WJB_BEGIN_OBJECT, NULL);
	cdviz_webhook_push_pair(st, "specversion", "0.5.1");
	cdviz_webhook_push_pair(st, "source", source);
	if (ts)
		cdviz_webhook_push_pair(st, "timestamp", ts);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		if (tok == WJB_KEY || tok == WJB_VALUE)
			pushJsonbValue(st, tok, &v);
	cdviz_webhook_push_pair(st, "id", id);
	pushJsonbValue(st, WJB_END_OBJECT, NULL);
}

/* What a transformer is handed: the headers and x-cdviz-route. */
static Jsonb *
with_route_header(Jsonb *headers, const char *route)
{
	JsonbParseState *st = NULL;
	JsonbValue *res;

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	cdviz_webhook_push_pair(&st, "x-cdviz-route", route);
	res = pushJsonbValue(&st, WJB_END_OBJECT, NULL);
	return DatumGetJsonbP(DirectFunctionCall2(jsonb_concat, JsonbPGetDatum(headers),
											  JsonbPGetDatum(JsonbValueToJsonb(res))));
}

/* An event of the transformer with its context completed (push_context). */
static Jsonb *
complete_event(Jsonb *ev, const char *id, const char *source, const char *ts)
{
	JsonbParseState *st = NULL;
	JsonbIterator *it = JsonbIteratorInit(&ev->root);
	JsonbValue	v;
	JsonbIteratorToken tok;
	JsonbValue *res = NULL;
	bool		in_context = false;

	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (in_context && tok == WJB_VALUE)
		{
			push_context(&st, &v, id, source, ts);
			in_context = false;
			continue;
		}
		if (tok == WJB_KEY && v.val.string.len == 7 && memcmp(v.val.string.val, "context", 7) == 0)
			in_context = true;
		res = pushJsonbValue(&st, tok, tok < WJB_BEGIN_ARRAY ? &v : NULL);
	}
	return JsonbValueToJsonb(res);
}

/* The transformer's call and its output, inside run_transformer(). */
typedef struct TransformerCall
{
	const CdvizTransformInput *in;
	Datum		args[2];
	char		nulls[2];		/* ' ', or 'n' for a SQL null */
	List	   *rows;			/* Jsonb, or NULL for a SQL null */
} TransformerCall;

/*
 * The transformer's call, its output in the order the function returns it
 * (context ids are positions in it).
 */
static char *
transformer_query(const CdvizTransformInput *in)
{
	return psprintf("SELECT t.e FROM %s($1, $2) WITH ORDINALITY AS t(e, n) ORDER BY t.n",
					in->transformer_name);
}

/*
 * The plan calling the route's transformer: kept, in a cache of
 * TRANSFORMER_PLANS by function, which replaces one when full, or when the
 * function was renamed.  Inside a transformer's call (which may process
 * deliveries of its own) no kept plan is replaced, since the outer call's
 * may be running: an unknown transformer then gets a plan for this call
 * only, freed with the SPI connection.
 */
static SPIPlanPtr
transformer_plan(const CdvizTransformInput *in)
{
	Oid			types[2] = {JSONBOID, JSONBOID};
	TransformerPlan *tp;
	SPIPlanPtr	plan;

	for (int i = 0; i < TRANSFORMER_PLANS; i++)
		if (transformer_plans[i].plan && transformer_plans[i].fn == in->transformer &&
			strcmp(transformer_plans[i].name, in->transformer_name) == 0)
			return transformer_plans[i].plan;
	if (transformer_depth > 0)
	{
		if ((plan = SPI_prepare(transformer_query(in), 2, types)) == NULL)
			elog(ERROR, "cdviz: SPI_prepare failed for transformer %s: %s", in->transformer_name,
				 SPI_result_code_string(SPI_result));
		return plan;
	}
	tp = &transformer_plans[transformer_victim];
	transformer_victim = (transformer_victim + 1) % TRANSFORMER_PLANS;
	if (tp->plan)
		SPI_freeplan(tp->plan);
	tp->plan = NULL;
	if (tp->name)
		pfree(tp->name);
	tp->name = MemoryContextStrdup(TopMemoryContext, in->transformer_name);
	tp->fn = in->transformer;
	tp->plan = cdviz_prepare_kept(transformer_query(in), 2, types, 0);
	return tp->plan;
}

/* The owner of function fn, or InvalidOid when there is no such function. */
static Oid
function_owner(Oid fn)
{
	HeapTuple	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		return InvalidOid;
	owner = ((Form_pg_proc) GETSTRUCT(tup))->proowner;
	ReleaseSysCache(tup);
	return owner;
}

/*
 * The transformer's call, as cdviz_subxact() runs it: its rows kept.
 *
 * The caller is a worker, a superuser; a role that owns the transformer
 * may replace its body at any time.  So a transformer whose owner is no
 * superuser runs with its owner's rights, in a security-restricted
 * operation (no temporary object, no SET ROLE), and the settings it
 * changes are undone after it, before the caller's own statements: as
 * PostgreSQL runs the functions of a table's indexes for VACUUM.  When it
 * raises, the subtransaction's abort restores both.
 */
static void
call_transformer(void *arg)
{
	TransformerCall *call = (TransformerCall *) arg;
	const CdvizTransformInput *in = call->in;
	MemoryContext cxt = CurrentMemoryContext;
	SPIPlanPtr	plan;
	Oid			owner = function_owner(in->transformer);
	bool		as_owner = OidIsValid(owner) && !superuser_arg(owner);
	Oid			save_user = InvalidOid;
	int			save_sec = 0;
	int			nest = 0;

	if (in->transformer_name == NULL || !OidIsValid(owner))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("function with OID %u does not exist", in->transformer)));
	plan = transformer_plan(in);
	transformer_depth++;
	if (as_owner)
	{
		GetUserIdAndSecContext(&save_user, &save_sec);
		SetUserIdAndSecContext(owner, save_sec | SECURITY_LOCAL_USERID_CHANGE |
							   SECURITY_RESTRICTED_OPERATION);
		nest = NewGUCNestLevel();
	}
	if (SPI_execute_plan(plan, call->args, call->nulls, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "cdviz: calling transformer %s failed", in->transformer_name);
	if (as_owner)
	{
		AtEOXact_GUC(false, nest);
		SetUserIdAndSecContext(save_user, save_sec);
	}
	transformer_depth--;
	MemoryContextSwitchTo(cxt);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);

		call->rows = lappend(call->rows, isnull ? NULL : DatumGetJsonbPCopy(d));
	}
	SPI_freetuptable(SPI_tuptable);
}

/*
 * Run the transformer in a subtransaction: its output rows as Jsonb (NULL
 * for a SQL null) in *rows, or false with t->error and t->sqlerrcode
 * saying why.
 */
static bool
run_transformer(const CdvizTransformInput *in, Jsonb *first, List **rows, CdvizTransformed *t)
{
	TransformerCall call;
	int			depth = transformer_depth;
	ErrorData  *edata;

	memset(&call, 0, sizeof(call));
	call.in = in;
	call.args[0] = JsonbPGetDatum(first);
	call.nulls[0] = ' ';
	call.args[1] = in->body ? JsonbPGetDatum(in->body) : (Datum) 0;
	call.nulls[1] = in->body ? ' ' : 'n';
	edata = cdviz_subxact(call_transformer, &call, NULL);
	transformer_depth = depth;	/* also when the call raised */
	*rows = call.rows;
	if (edata == NULL)
		return true;
	/* a cancel is not the transformer's fault (PL/pgSQL's OTHERS agrees) */
	if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
		ReThrowError(edata);
	t->error = psprintf("transformer %s failed: %s",
						in->transformer_name ? in->transformer_name
						: psprintf("%u", in->transformer),
						edata->message);
	t->sqlerrcode = edata->sqlerrcode;
	FreeErrorData(edata);
	return false;
}

/* Whether an event of the transformer is one the built-in ones read. */
static bool
is_inventory_event(Jsonb *ev)
{
	JsonbContainer *context = cdviz_webhook_member_object(&ev->root, "context");
	char	   *type = context ? cdviz_webhook_member_text(context, "type") : NULL;

	return type != NULL &&
		(strncmp(type, "dev.cdevents.service.", 21) == 0 ||
		 strncmp(type, "dev.cdevents.incident.", 22) == 0);
}

/* See webhook_int.h. */
void
cdviz_transform(const CdvizTransformInput *in, CdvizTransformed *t)
{
	List	   *rows;
	const char *default_ts = NULL;
	int			n = 0;
	ListCell   *lc;

	memset(t, 0, sizeof(*t));
	if (!run_transformer(in, in->first, &rows, t))
	{
		t->status = "failed";
		return;
	}
	t->items = palloc0(sizeof(CdvizItem) * Max(list_length(rows), 1));
	foreach(lc, rows)
	{
		Jsonb	   *ev = (Jsonb *) lfirst(lc);
		JsonbContainer *context;
		char	   *id;

		if (ev == NULL)
			ev = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("null")));
		/* {"ignored": "reason"} says why nothing comes out */
		if (cdviz_webhook_has_member(&ev->root, "ignored") && !cdviz_webhook_has_member(&ev->root, "context"))
		{
			char	   *why = cdviz_webhook_member_text(&ev->root, "ignored");

			if (why)
				t->reason = t->reason ? psprintf("%s; %s", t->reason, why) : why;
			continue;
		}
		id = psprintf("%s#%d", in->key, n);
		if ((context = cdviz_webhook_member_object(&ev->root, "context")) != NULL)
		{
			char	   *ts = cdviz_webhook_member_text(context, "timestamp");

			/* the input's time, for events that have none */
			if (ts == NULL && default_ts == NULL)
				default_ts = cdviz_rfc3339_utc(in->default_time);
			ev = complete_event(ev, id, in->default_source, ts ? NULL : default_ts);
		}
		t->inventory |= is_inventory_event(ev);
		cdviz_item_from_jsonb(&t->items[n], ev, psprintf("%s[%d]", in->ref, n));
		t->context_ids = lappend(t->context_ids, id);
		n++;
	}
	t->nitems = n;
}

/*
 * Run the route's transformer over d and make its events items of the
 * lake, in *t.  Nothing is made when this raises.
 */
void
cdviz_webhook_make_events(const CdvizWebhookRoute *route, CdvizDelivery *d, CdvizTransformed *t)
{
	CdvizTransformInput in;

	memset(&in, 0, sizeof(in));
	in.transformer = route->transformer;
	in.transformer_name = route->transformer_name;
	in.first = with_route_header(d->headers, d->route);
	in.body = d->body;
	in.key = d->key;
	in.default_source = psprintf("/webhooks/%s", d->route);
	in.default_time = d->received_at;
	in.ref = psprintf("webhook %s delivery %s", d->route, d->key);
	cdviz_transform(&in, t);
	if (t->status)
		return;
	/* the delivery keeps the input: its refused events are no dead letters */
	for (int k = 0; k < t->nitems; k++)
		t->items[k].no_dead_letter = true;
	if (t->nitems == 0)
	{
		t->status = d->event_name && strcmp(d->event_name, "ping") == 0 ? "ping" : "ignored";
		t->error = psprintf("ignored: %s", t->reason ? t->reason :
							psprintf("the transformer returned no event for %s",
									 d->event_name ? d->event_name : "this delivery"));
	}
}
