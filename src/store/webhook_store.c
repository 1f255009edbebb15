/*
 * webhook_store.c
 *	  One webhook delivery: recorded in cdviz.webhook_deliveries, turned
 *	  into CDEvents by its route's SQL transformer, the events stored.
 *
 * This was PL/pgSQL, and most of a delivery's time went to it: the
 * transformer's call was planned afresh for every delivery (EXECUTE), its
 * output rebuilt element by element, the delivery row written twice (once
 * to learn the first reception, once with the outcome).  Here the plans
 * are kept, the output goes to the store as items, and the row is written
 * once, with its outcome.  The transformers themselves stay SQL.
 *
 * A delivery is known by its route and key (delivery_key()).  A
 * redelivery finds the first one's row and is transformed from its
 * headers, body and reception time (the default timestamp of the events),
 * so its events get the same identity and the lake stores nothing new.
 * Two sessions processing one delivery at once are serialized by a
 * transaction advisory lock on that identity, taken before the row is
 * looked up.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/skey.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "common/cryptohash.h"
#include "common/hashfn.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/formatting.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "store/store.h"
#include "store/subxact.h"
#include "store/webhook_store.h"

PG_FUNCTION_INFO_V1(cdviz_process_webhook);
PG_FUNCTION_INFO_V1(cdviz_webhook_transform);
PG_FUNCTION_INFO_V1(cdviz_webhook_delivery_key);

/* What transformers and this file's statements run under. */
#define WEBHOOK_SEARCH_PATH "pg_catalog, pg_temp"

/* First key of the advisory locks on deliveries ("cdvz"). */
#define WEBHOOK_LOCK_CLASS 0x6364767a

/* Transformers whose call is planned and kept, by function. */
#define TRANSFORMER_PLANS 16

/* One delivery, as processed. */
typedef struct Delivery
{
	const char *route;
	const char *key;
	const char *event_name;
	Jsonb	   *headers;		/* clean */
	Jsonb	   *body;
	TimestampTz received_at;	/* first reception */
	char	   *default_ts;		/* received_at for context.timestamp */
	int			receptions;		/* 1 for a reception, 0 for a retransform */
} Delivery;

typedef struct TransformerPlan
{
	Oid			fn;
	char	   *name;
	SPIPlanPtr	plan;
} TransformerPlan;

static SPIPlanPtr lookup_plan;
static SPIPlanPtr record_plan;
static TransformerPlan transformer_plans[TRANSFORMER_PLANS];
static int	transformer_victim;
static int	transformer_depth;	/* transformer calls in progress */

static void
prepare_plans(void)
{
	if (lookup_plan == NULL)
	{
		Oid			types[1] = {TEXTOID};

		lookup_plan = cdviz_prepare_kept(
										 "SELECT w.auth, s.secret, w.transformer::pg_catalog.oid,"
										 " CASE WHEN p.oid IS NOT NULL THEN pg_catalog.format('%I.%I', n.nspname, p.proname) END,"
										 " w.retention "
										 "FROM cdviz.webhooks w "
										 "LEFT JOIN cdviz.webhook_secrets s ON s.name = w.name "
										 "LEFT JOIN pg_catalog.pg_proc p ON p.oid = w.transformer "
										 "LEFT JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace "
										 "WHERE w.name = $1",
										 1, types, 0);
	}
	if (record_plan == NULL)
	{
		Oid			types[11] = {TEXTOID, TEXTOID, TEXTOID, JSONBOID, JSONBOID, TEXTOID,
		INT8ARRAYOID, TEXTARRAYOID, TEXTOID, JSONBOID, INT4OID};

		/* a redelivery of a stored delivery stays "stored": it did produce them */
		record_plan = cdviz_prepare_kept(
										 "INSERT INTO cdviz.webhook_deliveries AS x (route, event_name, delivery_key,"
										 " headers, body, status, event_ids, context_ids, error, problems) "
										 "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) "
										 "ON CONFLICT ON CONSTRAINT webhook_deliveries_route_delivery_key_key DO UPDATE "
										 "SET attempts = x.attempts + $11,"
										 " last_received_at = CASE WHEN $11 > 0 THEN pg_catalog.now()"
										 " ELSE x.last_received_at END,"
										 " status = CASE WHEN x.status = 'stored' AND excluded.status = 'duplicate'"
										 " THEN 'stored' ELSE excluded.status END,"
										 " error = excluded.error, problems = excluded.problems,"
										 " event_ids = excluded.event_ids, context_ids = excluded.context_ids,"
										 " transformed_at = pg_catalog.now() "
										 "RETURNING x.id",
										 11, types, 0);
	}
}

/*
 * Run under WEBHOOK_SEARCH_PATH (a user's transformer, whoever calls it),
 * in a GUC nest level of our own, as a SET clause on a function would:
 * the caller's search_path is back afterwards.  Returns the level for
 * restore_search_path().
 */
static int
pin_search_path(void)
{
	int			nest = NewGUCNestLevel();

	if (namespace_search_path == NULL || strcmp(namespace_search_path, WEBHOOK_SEARCH_PATH) != 0)
		(void) set_config_option("search_path", WEBHOOK_SEARCH_PATH, PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
	return nest;
}

static void
restore_search_path(int nest)
{
	AtEOXact_GUC(true, nest);
}

/*
 * The text of member key of an object, as ->> gives it: NULL when c is no
 * object, has no such member or it is JSON null.
 */
static char *
member_text(JsonbContainer *c, const char *key)
{
	JsonbValue	v;
	Jsonb	   *jb;

	if (!JsonContainerIsObject(c) ||
		getKeyJsonValueFromContainer(c, key, strlen(key), &v) == NULL ||
		v.type == jbvNull)
		return NULL;
	if (v.type == jbvString)
		return pnstrdup(v.val.string.val, v.val.string.len);
	jb = JsonbValueToJsonb(&v);
	return JsonbToCString(NULL, &jb->root, VARSIZE(jb));
}

/* Whether object c has member key (as the ? operator tells). */
static bool
has_member(JsonbContainer *c, const char *key)
{
	JsonbValue	v;

	return JsonContainerIsObject(c) &&
		getKeyJsonValueFromContainer(c, key, strlen(key), &v) != NULL;
}

/* Member key of object c when it is an object itself, or NULL. */
static JsonbContainer *
member_object(JsonbContainer *c, const char *key)
{
	JsonbValue	v;

	if (!JsonContainerIsObject(c) ||
		getKeyJsonValueFromContainer(c, key, strlen(key), &v) == NULL ||
		v.type != jbvBinary || !JsonContainerIsObject(v.val.binary.data))
		return NULL;
	return v.val.binary.data;
}

/* Hex SHA-256 of the body's jsonb text in UTF-8. */
static char *
body_hash(Jsonb *body)
{
	char	   *text = JsonbToCString(NULL, &body->root, VARSIZE(body));
	char	   *utf8 = pg_server_to_any(text, strlen(text), PG_UTF8);
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	char	   *hex = palloc(PG_SHA256_DIGEST_LENGTH * 2 + 1);

	if (pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (uint8 *) utf8, strlen(utf8)) < 0 ||
		pg_cryptohash_final(ctx, digest, sizeof(digest)) < 0)
		elog(ERROR, "could not compute a SHA-256 digest");
	pg_cryptohash_free(ctx);
	hex[hex_encode((char *) digest, sizeof(digest), hex)] = '\0';
	return hex;
}

/*
 * The identity of a delivery, stable across redeliveries (see the comment
 * of cdviz.webhook_delivery_key); headers in lower case.  NULL when only
 * the body could tell and there is none.
 */
static char *
delivery_key(Jsonb *headers, Jsonb *body)
{
	JsonbContainer *h = &headers->root;
	char	   *v;

	if ((v = member_text(h, "x-github-delivery")) != NULL)
	{
		char	   *hook = member_text(h, "x-github-hook-id");

		return psprintf("github:%s:%s", hook ? hook : "", v);
	}
	if ((v = member_text(h, "idempotency-key")) != NULL ||
		(v = member_text(h, "x-gitlab-event-uuid")) != NULL)
		return psprintf("gitlab:%s", v);
	if ((v = member_text(h, "ce-id")) != NULL)
	{
		char	   *source = member_text(h, "ce-source");

		return psprintf("ce:%s:%s", source ? source : "", v);
	}
	return body ? psprintf("sha256:%s", body_hash(body)) : NULL;
}

/* What the tool calls the delivery: X-GitHub-Event.action, ... or NULL. */
static char *
event_name(Jsonb *headers, Jsonb *body)
{
	JsonbContainer *h = &headers->root;
	char	   *v;

	if ((v = member_text(h, "x-github-event")) != NULL)
	{
		char	   *action = member_text(&body->root, "action");

		return action ? psprintf("%s.%s", v, action) : v;
	}
	if ((v = member_text(h, "x-gitlab-event")) != NULL ||
		(v = member_text(h, "ce-type")) != NULL ||
		(v = member_text(h, "x-event-name")) != NULL)
		return v;
	if (member_object(&body->root, "app") && has_member(&body->root, "context"))
		return pstrdup("argocd");
	return member_text(&body->root, "object_kind");
}

/* context.timestamp of a time: RFC 3339 in UTC, microseconds when any. */
static char *
rfc3339_utc(TimestampTz t)
{
	struct pg_tm tm;
	fsec_t		fsec;

	if (timestamp2tm(t, NULL, &tm, &fsec, NULL, NULL) != 0)
		elog(ERROR, "timestamp out of range");
	if (fsec == 0)
		return psprintf("%04d-%02d-%02dT%02d:%02d:%02dZ",
						tm.tm_year, tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
	return psprintf("%04d-%02d-%02dT%02d:%02d:%02d.%06dZ",
					tm.tm_year, tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int) fsec);
}

static void
push_string(JsonbParseState **st, JsonbIteratorToken tok, const char *s)
{
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = (char *) s;
	v.val.string.len = strlen(s);
	pushJsonbValue(st, tok, &v);
}

static void
push_pair(JsonbParseState **st, const char *key, const char *value)
{
	push_string(st, WJB_KEY, key);
	push_string(st, WJB_VALUE, value);
}

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
	push_pair(st, "specversion", "0.5.1");
	push_pair(st, "source", source);
	if (ts)
		push_pair(st, "timestamp", ts);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		if (tok == WJB_KEY || tok == WJB_VALUE)
			pushJsonbValue(st, tok, &v);
	push_pair(st, "id", id);
	pushJsonbValue(st, WJB_END_OBJECT, NULL);
}

/* What a transformer is handed: the headers and x-cdviz-route. */
static Jsonb *
with_route_header(Jsonb *headers, const char *route)
{
	JsonbParseState *st = NULL;
	JsonbValue *res;

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	push_pair(&st, "x-cdviz-route", route);
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

/* A column of a deliveries row, by name, copied out of the tuple. */
static Datum
stored_column(HeapTuple tuple, Relation rel, const char *name, bool *isnull)
{
	Form_pg_attribute att;
	AttrNumber	attnum = get_attnum(RelationGetRelid(rel), name);
	Datum		v;

	if (attnum == InvalidAttrNumber)
		elog(ERROR, "cdviz: cdviz.webhook_deliveries has no column %s", name);
	v = heap_getattr(tuple, attnum, RelationGetDescr(rel), isnull);
	att = TupleDescAttr(RelationGetDescr(rel), attnum - 1);
	return *isnull ? (Datum) 0 : datumCopy(v, att->attbyval, att->attlen);
}

/*
 * A redelivery: take the first reception's headers, body, event name and
 * time from its row, so that the transformer makes the same events of it
 * (as for cdviz.retransform()) whatever this attempt carried; a new
 * delivery keeps its own and the time is now.  Read through the unique
 * index, without a plan: one made while the table was empty would read it
 * whole.  The caller holds the delivery's advisory lock, so the latest
 * snapshot sees a concurrent reception that committed.
 */
static void
find_earlier_reception(Delivery *d)
{
	Oid			nsp = get_namespace_oid("cdviz", false);
	Oid			relid = get_relname_relid("webhook_deliveries", nsp);
	Oid			indexid = get_relname_relid("webhook_deliveries_route_delivery_key_key", nsp);
	Relation	rel;
	SysScanDesc scan;
	ScanKeyData keys[2];
	HeapTuple	tuple;

	if (!OidIsValid(relid) || !OidIsValid(indexid))
		elog(ERROR, "cdviz: table cdviz.webhook_deliveries or its unique index is missing");
	rel = table_open(relid, AccessShareLock);
	ScanKeyEntryInitialize(&keys[0], 0, get_attnum(relid, "route"), BTEqualStrategyNumber,
						   InvalidOid, DEFAULT_COLLATION_OID, F_TEXTEQ, CStringGetTextDatum(d->route));
	ScanKeyEntryInitialize(&keys[1], 0, get_attnum(relid, "delivery_key"), BTEqualStrategyNumber,
						   InvalidOid, DEFAULT_COLLATION_OID, F_TEXTEQ, CStringGetTextDatum(d->key));
	scan = systable_beginscan(rel, indexid, true, GetLatestSnapshot(), 2, keys);
	d->received_at = GetCurrentTransactionStartTimestamp();
	if ((tuple = systable_getnext(scan)) != NULL)
	{
		bool		isnull;
		Datum		v;

		v = stored_column(tuple, rel, "received_at", &isnull);
		if (!isnull)
			d->received_at = DatumGetTimestampTz(v);
		v = stored_column(tuple, rel, "headers", &isnull);
		if (!isnull)
			d->headers = DatumGetJsonbP(v);
		v = stored_column(tuple, rel, "body", &isnull);
		if (!isnull)
			d->body = DatumGetJsonbP(v);
		v = stored_column(tuple, rel, "event_name", &isnull);
		d->event_name = isnull ? NULL : TextDatumGetCString(v);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
}

/* The timestamp of events that have none: the delivery's first reception. */
static const char *
default_timestamp(Delivery *d)
{
	if (d->default_ts == NULL)
		d->default_ts = rfc3339_utc(d->received_at);
	return d->default_ts;
}

/* The transformer's call and its output, inside run_transformer(). */
typedef struct TransformerCall
{
	const CdvizWebhookRoute *route;
	Datum		args[2];		/* headers, body */
	List	   *rows;			/* Jsonb, or NULL for a SQL null */
} TransformerCall;

/*
 * The transformer's call, its output in the order the function returns it
 * (context ids are positions in it).
 */
static char *
transformer_query(const CdvizWebhookRoute *route)
{
	return psprintf("SELECT t.e FROM %s($1, $2) WITH ORDINALITY AS t(e, n) ORDER BY t.n",
					route->transformer_name);
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
transformer_plan(const CdvizWebhookRoute *route)
{
	Oid			types[2] = {JSONBOID, JSONBOID};
	TransformerPlan *tp;
	SPIPlanPtr	plan;

	for (int i = 0; i < TRANSFORMER_PLANS; i++)
		if (transformer_plans[i].plan && transformer_plans[i].fn == route->transformer &&
			strcmp(transformer_plans[i].name, route->transformer_name) == 0)
			return transformer_plans[i].plan;
	if (transformer_depth > 0)
	{
		if ((plan = SPI_prepare(transformer_query(route), 2, types)) == NULL)
			elog(ERROR, "cdviz: SPI_prepare failed for transformer %s: %s", route->transformer_name,
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
	tp->name = MemoryContextStrdup(TopMemoryContext, route->transformer_name);
	tp->fn = route->transformer;
	tp->plan = cdviz_prepare_kept(transformer_query(route), 2, types, 0);
	return tp->plan;
}

static void
call_transformer(void *arg)
{
	TransformerCall *call = (TransformerCall *) arg;
	const CdvizWebhookRoute *route = call->route;
	MemoryContext cxt = CurrentMemoryContext;
	SPIPlanPtr	plan;

	if (route->transformer_name == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("function with OID %u does not exist", route->transformer)));
	plan = transformer_plan(route);
	transformer_depth++;
	if (SPI_execute_plan(plan, call->args, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "cdviz: calling transformer %s failed", route->transformer_name);
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
 * Run the route's transformer in a subtransaction: its output rows as
 * Jsonb (NULL for a SQL null) in *rows, or false with *error saying why.
 */
static bool
run_transformer(const CdvizWebhookRoute *route, Jsonb *headers, Jsonb *body,
				List **rows, char **error)
{
	TransformerCall call = {route, {JsonbPGetDatum(headers), JsonbPGetDatum(body)}, NIL};
	int			depth = transformer_depth;
	ErrorData  *edata = cdviz_subxact(call_transformer, &call, NULL);

	transformer_depth = depth;	/* also when the call raised */
	*rows = call.rows;
	if (edata == NULL)
		return true;
	/* a cancel is not the transformer's fault (PL/pgSQL's OTHERS agrees) */
	if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
		ReThrowError(edata);
	*error = psprintf("transformer %s failed: %s",
					  route->transformer_name ? route->transformer_name
					  : psprintf("%u", route->transformer),
					  edata->message);
	FreeErrorData(edata);
	return false;
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

static Datum
text_array(List *strings)
{
	int			n = list_length(strings);
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));
	int			i = 0;
	ListCell   *lc;

	foreach(lc, strings)
		elems[i++] = CStringGetTextDatum((char *) lfirst(lc));
	return PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
}

static Datum
int8_array(const int64 *values, int n)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		elems[i] = Int64GetDatum(values[i]);
	return PointerGetDatum(construct_array(elems, n, INT8OID, sizeof(int64),
										   FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/*
 * Run the transformer over d, store its events all or nothing, and write
 * the delivery row with the outcome.  Inside SPI; out's strings and ids
 * are allocated in outcxt.
 */
static void
transform_and_record(const CdvizWebhookRoute *route, Delivery *d, CdvizWebhookOutcome *out,
					 MemoryContext outcxt)
{
	List	   *rows;
	List	   *context_ids = NIL;
	char	   *reason = NULL;
	char	   *error = NULL;
	const char *status = NULL;
	Jsonb	   *problems = NULL;
	CdvizItem  *items = NULL;
	int			n = 0;
	Datum		args[11];
	char		nulls[11];
	bool		isnull;

	memset(out, 0, sizeof(*out));
	if (!run_transformer(route, with_route_header(d->headers, d->route), d->body, &rows, &error))
		status = "failed";
	else
	{
		const char *default_source = psprintf("/webhooks/%s", d->route);
		ListCell   *lc;

		items = palloc0(sizeof(CdvizItem) * Max(list_length(rows), 1));
		foreach(lc, rows)
		{
			Jsonb	   *ev = (Jsonb *) lfirst(lc);
			JsonbContainer *context;
			char	   *id;

			if (ev == NULL)
				ev = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("null")));
			/* {"ignored": "reason"} says why nothing comes out */
			if (has_member(&ev->root, "ignored") && !has_member(&ev->root, "context"))
			{
				char	   *why = member_text(&ev->root, "ignored");

				if (why)
					reason = reason ? psprintf("%s; %s", reason, why) : why;
				continue;
			}
			id = psprintf("%s#%d", d->key, n);
			if ((context = member_object(&ev->root, "context")) != NULL)
			{
				char	   *ts = member_text(context, "timestamp");

				ev = complete_event(ev, id, default_source, ts ? NULL : default_timestamp(d));
			}
			cdviz_item_from_jsonb(&items[n], ev, psprintf("webhook %s delivery %s[%d]", d->route, d->key, n));
			items[n].no_dead_letter = true;
			context_ids = lappend(context_ids, id);
			n++;
		}
	}

	if (status == NULL && n == 0)
	{
		status = d->event_name && strcmp(d->event_name, "ping") == 0 ? "ping" : "ignored";
		error = psprintf("ignored: %s", reason ? reason :
						 psprintf("the transformer returned no event for %s",
								  d->event_name ? d->event_name : "this delivery"));
		out->event_ids = MemoryContextAlloc(outcxt, sizeof(int64));
	}
	else if (status == NULL)
	{
		/*
		 * All or nothing: a delivery whose output is partly invalid is kept
		 * whole, for retransform once the transformer is fixed.
		 */
		CdvizStoreResult res = cdviz_store_items_atomic(items, n, "webhook");

		if (res.rejected > 0)
		{
			status = "failed";
			problems = cdviz_items_problems(items, n);
			error = invalid_output_error(items, n, res.rejected);
		}
		else
		{
			out->stored = res.stored;
			out->duplicates = res.duplicates;
			out->event_ids = MemoryContextAlloc(outcxt, sizeof(int64) * Max(n, 1));
			out->nevents = n;
			for (int i = 0; i < n; i++)
				out->event_ids[i] = items[i].event_id;
			status = res.stored > 0 ? "stored" : "duplicate";
		}
		cdviz_store_release_items(items, n);
	}

	memset(nulls, ' ', sizeof(nulls));
	args[0] = CStringGetTextDatum(d->route);
	args[1] = d->event_name ? CStringGetTextDatum(d->event_name) : (nulls[1] = 'n', (Datum) 0);
	args[2] = CStringGetTextDatum(d->key);
	args[3] = JsonbPGetDatum(d->headers);
	args[4] = JsonbPGetDatum(d->body);
	args[5] = CStringGetTextDatum(status);
	args[6] = out->event_ids ? int8_array(out->event_ids, out->nevents) : (nulls[6] = 'n', (Datum) 0);
	/* a transformer that raised made no ids; one with invalid output did */
	args[7] = strcmp(status, "failed") == 0 && problems == NULL ? (nulls[7] = 'n', (Datum) 0)
		: text_array(context_ids);
	args[8] = error ? CStringGetTextDatum(error) : (nulls[8] = 'n', (Datum) 0);
	args[9] = problems ? JsonbPGetDatum(problems) : (nulls[9] = 'n', (Datum) 0);
	args[10] = Int32GetDatum(d->receptions);
	if (SPI_execute_plan(record_plan, args, nulls, false, 1) != SPI_OK_INSERT_RETURNING ||
		SPI_processed != 1)
		elog(ERROR, "cdviz: recording webhook delivery %s of \"%s\" failed", d->key, d->route);

	out->delivery_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	out->status = MemoryContextStrdup(outcxt, status);
	out->error = error ? MemoryContextStrdup(outcxt, error) : NULL;
}

/* See webhook_store.h. */
bool
cdviz_webhook_lookup(const char *name, CdvizWebhookRoute *route)
{
	MemoryContext outcxt = CurrentMemoryContext;
	Datum		args[1];
	HeapTuple	tuple;
	TupleDesc	desc;
	bool		isnull;
	bool		found;

	SPI_connect();
	prepare_plans();
	args[0] = CStringGetTextDatum(name);
	if (SPI_execute_plan(lookup_plan, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "cdviz: looking up webhook \"%s\" failed", name);
	found = SPI_processed == 1;
	if (found)
	{
		MemoryContext old = MemoryContextSwitchTo(outcxt);

		tuple = SPI_tuptable->vals[0];
		desc = SPI_tuptable->tupdesc;
		route->name = pstrdup(name);
		route->auth = SPI_getvalue(tuple, desc, 1);
		route->secret = SPI_getvalue(tuple, desc, 2);
		route->transformer = DatumGetObjectId(SPI_getbinval(tuple, desc, 3, &isnull));
		route->transformer_name = SPI_getvalue(tuple, desc, 4);
		route->retention = datumCopy(SPI_getbinval(tuple, desc, 5, &isnull), false, 16);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	return found;
}

/* See webhook_store.h. */
void
cdviz_webhook_process(const CdvizWebhookRoute *route, Jsonb *headers, Jsonb *body,
					  CdvizWebhookOutcome *out)
{
	MemoryContext outcxt = CurrentMemoryContext;
	int			nest = pin_search_path();
	Delivery	d;
	StringInfoData lockname;

	SPI_connect();
	prepare_plans();
	d.route = route->name;
	d.headers = headers;
	d.body = body;
	d.key = delivery_key(headers, body);
	d.event_name = event_name(headers, body);
	d.default_ts = NULL;
	d.receptions = 1;

	/* one session at a time per delivery, until it commits */
	initStringInfo(&lockname);
	appendStringInfo(&lockname, "%s%c%s", d.route, '\0', d.key);
	DirectFunctionCall2(pg_advisory_xact_lock_int4, Int32GetDatum(WEBHOOK_LOCK_CLASS),
						Int32GetDatum((int32) DatumGetUInt32(hash_any((unsigned char *) lockname.data,
																	   lockname.len))));

	find_earlier_reception(&d);
	transform_and_record(route, &d, out, outcxt);

	/*
	 * Retention as deliveries arrive: one cheap indexed delete in a
	 * thousand, planned for the table as it is now.
	 */
	if (out->delivery_id % 1000 == 0)
	{
		Oid			types[2] = {TEXTOID, INTERVALOID};
		Datum		pargs[2] = {CStringGetTextDatum(d.route), route->retention};

		if (SPI_execute_with_args("DELETE FROM cdviz.webhook_deliveries d "
								  "WHERE d.route = $1 AND d.received_at < pg_catalog.now() - $2",
								  2, types, pargs, NULL, false, 0) != SPI_OK_DELETE)
			elog(ERROR, "cdviz: pruning webhook deliveries of \"%s\" failed", d.route);
	}
	SPI_finish();
	restore_search_path(nest);
}

/* See webhook_store.h. */
bool
cdviz_webhook_is_credential_header(const char *name)
{
	return pg_strcasecmp(name, "Authorization") == 0 ||
		pg_strcasecmp(name, "Proxy-Authorization") == 0 ||
		pg_strcasecmp(name, "Cookie") == 0 ||
		pg_strcasecmp(name, "X-Gitlab-Token") == 0 ||
		pg_strcasecmp(name, "X-Hub-Signature") == 0 ||
		pg_strcasecmp(name, "X-Hub-Signature-256") == 0 ||
		pg_strcasecmp(name, "X-Signature-256") == 0;
}

/* See webhook_store.h. */
Jsonb *
cdviz_webhook_clean_headers(Jsonb *headers)
{
	JsonbParseState *st = NULL;
	JsonbValue *res;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	bool		skip = false;

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	if (headers != NULL && JB_ROOT_IS_OBJECT(headers))
	{
		it = JsonbIteratorInit(&headers->root);
		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			if (tok == WJB_KEY)
			{
				char	   *key = pnstrdup(v.val.string.val, v.val.string.len);
				char	   *lower = str_tolower(v.val.string.val, v.val.string.len, DEFAULT_COLLATION_OID);

				/* (the original too: a locale may lower-case I to dotless ı) */
				skip = cdviz_webhook_is_credential_header(key) ||
					cdviz_webhook_is_credential_header(lower);
				if (!skip)
					push_string(&st, WJB_KEY, lower);
			}
			else if (tok == WJB_VALUE && !skip)
				pushJsonbValue(&st, WJB_VALUE, &v);
		}
	}
	res = pushJsonbValue(&st, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(res);
}

/*
 * (status, [delivery_id,] event_ids, stored, duplicates, error): the row
 * cdviz.process_webhook() (with the delivery id) and
 * cdviz._webhook_transform() return.
 */
static Datum
outcome_record(TupleDesc tupdesc, const CdvizWebhookOutcome *out, bool with_delivery)
{
	Datum		values[6];
	bool		nulls[6] = {false, false, false, false, false, false};
	int			n = 0;

	values[n++] = CStringGetTextDatum(out->status);
	if (with_delivery)
		values[n++] = Int64GetDatum(out->delivery_id);
	nulls[n] = out->event_ids == NULL;
	values[n++] = out->event_ids ? int8_array(out->event_ids, out->nevents) : (Datum) 0;
	values[n++] = Int64GetDatum(out->stored);
	values[n++] = Int64GetDatum(out->duplicates);
	nulls[n] = out->error == NULL;
	values[n++] = out->error ? CStringGetTextDatum(out->error) : (Datum) 0;
	return HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls));
}

/*
 * The route named name for the SQL functions, which check no credentials:
 * its secret is wiped at once.  Raises when there is no such route.
 */
static void
route_for_sql(const char *name, CdvizWebhookRoute *route)
{
	if (!cdviz_webhook_lookup(name, route))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("webhook \"%s\" does not exist", name),
				 errhint("Create it with cdviz.create_webhook().")));
	if (route->secret)
		explicit_bzero(route->secret, strlen(route->secret));
}

/*
 * cdviz.process_webhook(route text, headers jsonb, body jsonb)
 *	 RETURNS (status, delivery_id, event_ids, stored, duplicates, error)
 */
Datum
cdviz_process_webhook(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc = cdviz_result_tupdesc(fcinfo);
	char	   *name;
	CdvizWebhookRoute route;
	CdvizWebhookOutcome out;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("route and body of a webhook delivery may not be null")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	route_for_sql(name, &route);
	cdviz_webhook_process(&route, cdviz_webhook_clean_headers(PG_ARGISNULL(1) ? NULL : PG_GETARG_JSONB_P(1)),
						  PG_GETARG_JSONB_P(2), &out);

	PG_RETURN_DATUM(outcome_record(tupdesc, &out, true));
}

/* A column of a cdviz.webhook_deliveries row, by name; raises when null. */
static Datum
row_field(HeapTupleHeader row, const char *name)
{
	bool		isnull;
	Datum		v = GetAttributeByName(row, name, &isnull);

	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the webhook delivery has no %s", name),
				 errhint("Pass a row of cdviz.webhook_deliveries.")));
	return v;
}

/*
 * cdviz._webhook_transform(d cdviz.webhook_deliveries)
 *	 RETURNS (status, event_ids, stored, duplicates, error)
 *
 * The route's (current) transformer over a stored delivery, for
 * cdviz.retransform(): same events, same identities.
 */
Datum
cdviz_webhook_transform(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc = cdviz_result_tupdesc(fcinfo);
	HeapTupleHeader row = PG_GETARG_HEAPTUPLEHEADER(0);
	MemoryContext outcxt = CurrentMemoryContext;
	CdvizWebhookRoute route;
	CdvizWebhookOutcome out;
	Delivery	d;
	bool		isnull;
	Datum		name_d;
	int			nest;

	d.route = TextDatumGetCString(row_field(row, "route"));
	d.key = TextDatumGetCString(row_field(row, "delivery_key"));
	d.headers = DatumGetJsonbP(row_field(row, "headers"));
	d.body = DatumGetJsonbP(row_field(row, "body"));
	d.received_at = DatumGetTimestampTz(row_field(row, "received_at"));
	name_d = GetAttributeByName(row, "event_name", &isnull);
	d.event_name = isnull ? NULL : TextDatumGetCString(name_d);
	d.default_ts = NULL;
	d.receptions = 0;
	route_for_sql(d.route, &route);

	nest = pin_search_path();
	SPI_connect();
	prepare_plans();
	transform_and_record(&route, &d, &out, outcxt);
	SPI_finish();
	restore_search_path(nest);

	PG_RETURN_DATUM(outcome_record(tupdesc, &out, false));
}

/*
 * cdviz.webhook_delivery_key(headers jsonb, body jsonb) RETURNS text
 *
 * NULL headers count as none; a NULL body has no hash.
 */
Datum
cdviz_webhook_delivery_key(PG_FUNCTION_ARGS)
{
	Jsonb	   *headers = PG_ARGISNULL(0) ? cdviz_webhook_clean_headers(NULL) : PG_GETARG_JSONB_P(0);
	char	   *key = delivery_key(headers, PG_ARGISNULL(1) ? NULL : PG_GETARG_JSONB_P(1));

	if (key == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(key));
}
