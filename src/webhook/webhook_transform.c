/*
 * webhook_transform.c
 *	  A transformer's run: a SQL function (jsonb, jsonb) RETURNS SETOF jsonb
 *	  runs over one input in a subtransaction, called by its OID, and each
 *	  event it returns gets its context completed: the id from the input's
 *	  key and the event's position, the source, and the input's own time
 *	  when it has no timestamp, so that the same input makes the same
 *	  events.  The input is a webhook
 *	  delivery (headers, body: cdviz_webhook_make_events()) or an item a
 *	  source read (meta, body: source_item.c).
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "common/rfc3339.h"
#include "common/subxact.h"
#include "store/store.h"
#include "webhook/webhook_int.h"

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
	Tuplestorestate *rows;		/* one jsonb column, null for a SQL null;
								 * made by the caller, so that its memory
								 * and temporary file (owned by the
								 * tuplestore's resource owner) outlive the
								 * call's subtransaction */
	TupleDesc	desc;			/* of rows */
} TransformerCall;

/* Keep one row of the transformer's output, detoasted, in call->rows. */
static void
keep_row(TransformerCall *call, Datum d, bool isnull)
{
	Datum		value = isnull ? (Datum) 0 : PointerGetDatum(DatumGetJsonbP(d));

	tuplestore_putvalues(call->rows, call->desc, &value, &isnull);
}

/*
 * Call the transformer over (first, body) and keep its rows, in the order
 * it returns them (context ids are positions in it).  It is called by its
 * OID through the function manager, as the executor calls a function in
 * FROM (ExecMakeTableFunctionResult()): in value-per-call or materialize
 * mode, as it chooses; a strict one handed a SQL null returns no row.  A
 * call by name would be ambiguous when another function of that name and
 * schema takes a defaulted third argument.  Materialize mode is allowed,
 * not preferred: a SQL function then hands its rows one by one, each kept
 * as it comes, rather than all in a tuplestore first.  The rows stay
 * jsonb, in a tuplestore that spills to disk past work_mem: made into
 * json-c all at once, a large output (a test report's events) would take
 * some kilobytes a row outside any memory context.
 */
static void
call_set_function(TransformerCall *call)
{
	const CdvizTransformInput *in = call->in;

	/* in the subtransaction's memory: gone with it when the call raises */
	MemoryContext callcxt = AllocSetContextCreate(CurTransactionContext, "cdviz transformer call",
												  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(callcxt);
	FmgrInfo	flinfo;

	LOCAL_FCINFO(fcinfo, 2);
	ReturnSetInfo rsinfo;
	ExprContext *econtext = CreateStandaloneExprContext();
	PgStat_FunctionCallUsage fcusage;
	bool		more;

	fmgr_info(in->transformer, &flinfo);
	InitFunctionCallInfoData(*fcinfo, &flinfo, 2, InvalidOid, NULL, (Node *) &rsinfo);
	fcinfo->args[0].value = JsonbPGetDatum(in->first);
	fcinfo->args[0].isnull = false;
	fcinfo->args[1].value = in->body ? JsonbPGetDatum(in->body) : (Datum) 0;
	fcinfo->args[1].isnull = in->body == NULL;
	rsinfo.type = T_ReturnSetInfo;
	rsinfo.econtext = econtext;
	rsinfo.expectedDesc = call->desc;
	rsinfo.allowedModes = (int) (SFRM_ValuePerCall | SFRM_Materialize);
	rsinfo.returnMode = SFRM_ValuePerCall;
	rsinfo.setResult = NULL;
	rsinfo.setDesc = NULL;

	/* a strict function handed a SQL null returns no row, as in FROM */
	more = !flinfo.fn_strict || in->body != NULL;
	/* what the function leaves behind goes with each call's reset */
	MemoryContextSwitchTo(econtext->ecxt_per_tuple_memory);
	while (more)
	{
		Datum		d;

		CHECK_FOR_INTERRUPTS();
		ResetExprContext(econtext);
		pgstat_init_function_usage(fcinfo, &fcusage);
		fcinfo->isnull = false;
		rsinfo.isDone = ExprSingleResult;
		d = FunctionCallInvoke(fcinfo);
		pgstat_end_function_usage(&fcusage, rsinfo.isDone != ExprMultipleResult);
		if (rsinfo.returnMode == SFRM_Materialize)
			break;
		if (rsinfo.returnMode != SFRM_ValuePerCall)
			ereport(ERROR,
					(errcode(ERRCODE_E_R_I_E_SRF_PROTOCOL_VIOLATED),
					 errmsg("unrecognized table-function returnMode: %d", (int) rsinfo.returnMode)));
		if (rsinfo.isDone != ExprEndResult)
			keep_row(call, d, fcinfo->isnull);
		more = rsinfo.isDone == ExprMultipleResult;
	}

	if (rsinfo.returnMode == SFRM_Materialize && rsinfo.setResult != NULL)
	{
		TupleDesc	rowdesc = rsinfo.setDesc ? rsinfo.setDesc : call->desc;
		TupleTableSlot *slot;

		if (rowdesc->natts != 1 || TupleDescAttr(rowdesc, 0)->atttypid != JSONBOID)
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("function return row and query-specified return row do not match"),
					 errdetail("Returned rows are not of one column of type jsonb.")));
		/* the slot outlives each row's reset */
		MemoryContextSwitchTo(callcxt);
		slot = MakeSingleTupleTableSlot(rowdesc, &TTSOpsMinimalTuple);
		MemoryContextSwitchTo(econtext->ecxt_per_tuple_memory);
		while (tuplestore_gettupleslot(rsinfo.setResult, true, false, slot))
		{
			bool		isnull;
			Datum		d;

			ResetExprContext(econtext);
			d = slot_getattr(slot, 1, &isnull);
			keep_row(call, d, isnull);
		}
		ExecDropSingleTupleTableSlot(slot);
		tuplestore_end(rsinfo.setResult);
	}
	/* runs the shutdown callbacks of a value-per-call function */
	MemoryContextSwitchTo(callcxt);
	FreeExprContext(econtext, true);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(callcxt);
}

/*
 * The transformer's call, as cdviz_subxact() runs it: its rows kept.
 *
 * The caller is a worker, a superuser; a role that owns the transformer
 * may replace its body at any time.  So a transformer whose owner is no
 * superuser runs with its owner's rights, in a security-restricted
 * operation (no temporary object, no SET ROLE), as PostgreSQL runs the
 * functions of a table's indexes for VACUUM.  Whoever owns it, the
 * settings it changes are undone after it, before the caller's own
 * statements and the next input's call, which must not depend on what an
 * earlier input made it set.  When it raises, the subtransaction's abort
 * restores both.
 *
 * It sees what the transaction wrote before it, with a snapshot of its
 * own, as a statement the caller ran through SPI would.
 */
static void
call_transformer(void *arg)
{
	TransformerCall *call = (TransformerCall *) arg;
	Oid			fn = call->in->transformer;
	HeapTuple	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	Oid			owner;
	Oid			save_user;
	int			save_sec;
	int			nest;
	AclResult	aclresult;

	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("function with OID %u does not exist", fn)));
	owner = ((Form_pg_proc) GETSTRUCT(tup))->proowner;
	ReleaseSysCache(tup);

	GetUserIdAndSecContext(&save_user, &save_sec);
	if (!superuser_arg(owner))
		SetUserIdAndSecContext(owner, save_sec | SECURITY_LOCAL_USERID_CHANGE |
							   SECURITY_RESTRICTED_OPERATION);
	nest = NewGUCNestLevel();
	aclresult = pg_proc_aclcheck(fn, GetUserId(), ACL_EXECUTE);
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_FUNCTION, get_func_name(fn));
	InvokeFunctionExecuteHook(fn);

	CommandCounterIncrement();
	PushActiveSnapshot(GetTransactionSnapshot());
	call_set_function(call);
	PopActiveSnapshot();

	AtEOXact_GUC(false, nest);
	SetUserIdAndSecContext(save_user, save_sec);
}

/*
 * Run the transformer in a subtransaction: its output rows kept in
 * t->rows, or false with t->error and t->sqlerrcode saying why.
 */
static bool
run_transformer(const CdvizTransformInput *in, CdvizTransformed *t)
{
	TransformerCall call;
	ErrorData  *edata;

	memset(&call, 0, sizeof(call));
	call.in = in;
	call.desc = CreateTemplateTupleDesc(1);
	TupleDescInitEntry(call.desc, (AttrNumber) 1, "e", JSONBOID, -1, 0);
	call.rows = tuplestore_begin_heap(false, false, work_mem);
	t->rows = call.rows;
	t->slot = MakeSingleTupleTableSlot(call.desc, &TTSOpsMinimalTuple);
	edata = cdviz_subxact(call_transformer, &call, NULL);
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
cdviz_transform_run(const CdvizTransformInput *in, CdvizTransformed *t)
{
	memset(t, 0, sizeof(*t));
	t->cxt = CurrentMemoryContext;
	if (!run_transformer(in, t))
	{
		t->status = "failed";
		cdviz_transform_end(t);
	}
}

/*
 * See webhook_int.h.  The rows are read in the order the transformer
 * returned them: an event's position in it is its id's.
 */
int
cdviz_transform_next(const CdvizTransformInput *in, CdvizTransformed *t, int max)
{
	int			room = Min(max, 16);

	t->items = palloc0(sizeof(CdvizItem) * room);
	t->nitems = 0;
	t->context_ids = NIL;
	while (t->nitems < max && t->rows != NULL &&
		   tuplestore_gettupleslot(t->rows, true, false, t->slot))
	{
		bool		isnull;
		Datum		d = slot_getattr(t->slot, 1, &isnull);
		Jsonb	   *ev;
		JsonbContainer *context;
		char	   *id;

		ev = isnull ? DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("null")))
			: DatumGetJsonbPCopy(d);
		/* {"ignored": "reason"} says why nothing comes out */
		if (cdviz_webhook_has_member(&ev->root, "ignored") && !cdviz_webhook_has_member(&ev->root, "context"))
		{
			char	   *why = cdviz_webhook_member_text(&ev->root, "ignored");

			if (why)
				t->reason = MemoryContextStrdup(t->cxt, t->reason ? psprintf("%s; %s", t->reason, why) : why);
			continue;
		}
		id = psprintf("%s#%d", in->key, t->made);
		if ((context = cdviz_webhook_member_object(&ev->root, "context")) != NULL)
		{
			char	   *ts = cdviz_webhook_member_text(context, "timestamp");

			/* the input's time, for events that have none */
			if (ts == NULL && t->default_ts == NULL)
				t->default_ts = MemoryContextStrdup(t->cxt, cdviz_rfc3339_utc(in->default_time));
			ev = complete_event(ev, id, in->default_source, ts ? NULL : t->default_ts);
		}
		t->inventory |= is_inventory_event(ev);
		if (t->nitems == room)
		{
			room *= 2;
			t->items = repalloc(t->items, sizeof(CdvizItem) * room);
			memset(t->items + t->nitems, 0, sizeof(CdvizItem) * (room - t->nitems));
		}
		cdviz_item_from_jsonb(&t->items[t->nitems], ev, psprintf("%s[%d]", in->ref, t->made));
		t->context_ids = lappend(t->context_ids, id);
		t->nitems++;
		t->made++;
	}
	return t->nitems;
}

/* See webhook_int.h. */
void
cdviz_transform_end(CdvizTransformed *t)
{
	if (t->rows == NULL)
		return;
	ExecDropSingleTupleTableSlot(t->slot);
	tuplestore_end(t->rows);
	t->slot = NULL;
	t->rows = NULL;
}

/* See webhook_int.h. */
void
cdviz_transform(const CdvizTransformInput *in, CdvizTransformed *t)
{
	cdviz_transform_run(in, t);
	if (t->status == NULL)
		(void) cdviz_transform_next(in, t, INT_MAX);
	cdviz_transform_end(t);
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
