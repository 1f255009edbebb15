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
 * transaction lock on that identity (common/locks.h: one no SQL role can
 * take), taken before the row is looked up.
 *
 * Deliveries are written in batches (CdvizWebhookBatch): the http worker
 * transforms a group's deliveries one after another, and their events go
 * to the lake in one statement, their rows to the deliveries table in
 * another, as /cdevents stores a group's events.  Paid per delivery, the
 * lake insert and the record cost more than the transformer.  The batch
 * is written before a transformer that could read it runs (see
 * cdviz_webhook_batch_wants_flush()), so a transformer still sees every
 * earlier delivery's inventory; a delivery's events are still all or
 * nothing (the store's units); and a delivery the database refuses still
 * fails alone (write_isolated()).
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/skey.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
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
#include "common/locks.h"
#include "common/version.h"
#include "common/subxact.h"
#include "webhook/webhook.h"

PG_FUNCTION_INFO_V1(cdviz_process_webhook);
PG_FUNCTION_INFO_V1(cdviz_webhook_transform);
PG_FUNCTION_INFO_V1(cdviz_webhook_delivery_key);

/* What transformers and this file's statements run under. */
#define WEBHOOK_SEARCH_PATH "pg_catalog, pg_temp"


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

/* A delivery transformed, waiting for its batch's flush. */
typedef struct Pending
{
	Delivery	d;
	const CdvizWebhookRoute *route;
	CdvizWebhookOutcome *out;	/* filled at the flush */
	MemoryContext outcxt;		/* where out's strings and ids go */
	int			first_item;		/* its events: the batch's items from here */
	int			nitems;
	List	   *context_ids;	/* NULL when the transformer raised */
	const char *status;			/* failed, ignored or ping; NULL: stored or
								 * duplicate, or failed if the store rejects
								 * an event */
	char	   *error;
} Pending;

/* See webhook_store.h. */
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

		/* the transformer's name and kind come from the caches (route_transformer()) */
		lookup_plan = cdviz_prepare_kept(
										 "SELECT w.auth, s.secret, w.transformer::pg_catalog.oid, w.retention "
										 "FROM cdviz.webhooks w "
										 "LEFT JOIN cdviz.webhook_secrets s ON s.name = w.name "
										 "WHERE w.name = $1",
										 1, types, 0);
	}
	if (record_plan == NULL)
	{
		Oid			types[11] = {TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, JSONBARRAYOID,
			JSONBARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
		JSONBARRAYOID, INT4OID};

		/*
		 * The deliveries of a flush, one row each, in one statement (its
		 * start, the check constraint's and the indexes' set-up are paid
		 * once).  event_ids and context_ids come as array text: arrays of
		 * arrays do not unnest; an unnest of several arrays is only known
		 * unqualified (search_path is pg_catalog here).  No two rows have
		 * the same key (a redelivery flushes the batch first).  A
		 * redelivery of a stored delivery stays "stored": it did produce
		 * them.
		 */
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
 * whole.  The caller holds the delivery's lock, so the latest
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
	return PointerGetDatum(cdviz_make_array(elems, NULL, n, TEXTOID));
}

static Datum
int8_array(const int64 *values, int n)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		elems[i] = Int64GetDatum(values[i]);
	return PointerGetDatum(cdviz_make_array(elems, NULL, n, INT8OID));
}

/* Whether an event of the transformer is one the built-in ones read. */
static bool
is_inventory_event(Jsonb *ev)
{
	JsonbContainer *context = member_object(&ev->root, "context");
	char	   *type = context ? member_text(context, "type") : NULL;

	return type != NULL &&
		(strncmp(type, "dev.cdevents.service.", 21) == 0 ||
		 strncmp(type, "dev.cdevents.incident.", 22) == 0);
}

/*
 * Run the transformer over p's delivery and add its events to the batch,
 * as the unit of p (the batch's next Pending).  Nothing is added when
 * this raises.
 */
static void
transform(const CdvizWebhookRoute *route, CdvizWebhookBatch *b, Pending *p)
{
	Delivery   *d = &p->d;
	List	   *rows;
	char	   *reason = NULL;
	CdvizItem  *items;
	int			n = 0;
	bool		inventory = false;
	const char *default_source;
	ListCell   *lc;

	p->first_item = b->nitems;
	p->nitems = 0;
	if (!run_transformer(route, with_route_header(d->headers, d->route), d->body, &rows, &p->error))
	{
		p->status = "failed";
		return;
	}
	default_source = psprintf("/webhooks/%s", d->route);
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
		inventory |= is_inventory_event(ev);
		cdviz_item_from_jsonb(&items[n], ev, psprintf("webhook %s delivery %s[%d]", d->route, d->key, n));
		items[n].no_dead_letter = true;
		items[n].unit = b->npending;
		p->context_ids = lappend(p->context_ids, id);
		n++;
	}
	if (n == 0)
	{
		p->status = d->event_name && strcmp(d->event_name, "ping") == 0 ? "ping" : "ignored";
		p->error = psprintf("ignored: %s", reason ? reason :
							psprintf("the transformer returned no event for %s",
									 d->event_name ? d->event_name : "this delivery"));
		return;
	}

	/* nothing can fail from here: the events join the batch */
	if (b->nitems + n > b->maxitems)
	{
		b->maxitems = Max(b->maxitems * 2, b->nitems + n);
		b->items = repalloc(b->items, sizeof(CdvizItem) * b->maxitems);
	}
	memcpy(b->items + b->nitems, items, sizeof(CdvizItem) * n);
	b->nitems += n;
	p->nitems = n;
	b->inventory_events |= inventory;
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
	Delivery   *d = &p->d;
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
	v[6] = out->event_ids ? array_as_text(int8_array(out->event_ids, out->nevents))
		: (n[6] = true, (Datum) 0);
	/* a transformer that raised made no ids; one with invalid output did */
	v[7] = strcmp(status, "failed") == 0 && problems == NULL ? (n[7] = true, (Datum) 0)
		: array_as_text(text_array(p->context_ids));
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

/* An empty batch; see CdvizWebhookBatch.isolate. */
static CdvizWebhookBatch *
batch_new(bool isolate)
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

/* See webhook_store.h. */
CdvizWebhookBatch *
cdviz_webhook_batch_start(void)
{
	return batch_new(true);
}

/* See webhook_store.h. */
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
	key = delivery_key(headers, body);
	for (int i = 0; i < b->npending && !found; i++)
		found = strcmp(b->pending[i].d.route, route->name) == 0 &&
			strcmp(b->pending[i].d.key, key) == 0;
	pfree(key);
	return found;
}

/* See webhook_store.h. */
void
cdviz_webhook_batch_flush(CdvizWebhookBatch *b)
{
	int			nest;

	if (b->npending == 0)
		return;
	nest = pin_search_path();
	SPI_connect();
	prepare_plans();
	if (b->isolate)
		write_isolated(b);
	else
		write_deliveries(b, 0, b->npending);
	SPI_finish();
	restore_search_path(nest);
	cdviz_store_release_items(b->items, b->nitems);
	b->npending = 0;
	b->nitems = 0;
	b->inventory_events = false;
	MemoryContextReset(b->cxt);
}

/* See webhook_store.h. */
void
cdviz_webhook_batch_end(CdvizWebhookBatch *b)
{
	cdviz_store_release_items(b->items, b->nitems);
	MemoryContextDelete(b->cxt);
	pfree(b->items);
	pfree(b->pending);
	pfree(b);
}

/*
 * Transform d (filled but for what find_earlier_reception() tells a
 * reception) into the batch, with its outcome to go to out.  Inside SPI,
 * in the batch's memory context.
 */
static void
add_delivery(CdvizWebhookBatch *b, const CdvizWebhookRoute *route, const Delivery *d,
			 CdvizWebhookOutcome *out, MemoryContext outcxt)
{
	Pending    *p;

	if (b->npending == b->maxpending)
	{
		b->maxpending *= 2;
		b->pending = repalloc(b->pending, sizeof(Pending) * b->maxpending);
	}
	p = &b->pending[b->npending];
	/* one statement records the batch: receptions or retransforms, not both */
	Assert(b->npending == 0 || b->pending[0].d.receptions == d->receptions);
	memset(p, 0, sizeof(*p));
	p->d = *d;
	p->route = route;
	p->out = out;
	p->outcxt = outcxt;
	if (d->receptions > 0)
		find_earlier_reception(&p->d);
	transform(route, b, p);
	b->npending++;
}

/*
 * The route's transformer as schema.name (quoted), NULL when the function
 * no longer exists, and whether it is one of the extension's own.  From
 * the system caches and pg_depend's index: a join over the catalogs in
 * the route's query cost a twentieth of the worker's webhook time.
 */
static void
route_transformer(CdvizWebhookRoute *route)
{
	char	   *fn = get_func_name(route->transformer);
	char	   *nsp = fn ? get_namespace_name(get_func_namespace(route->transformer)) : NULL;
	Oid			ext = get_extension_oid("cdviz", true);

	route->transformer_name = nsp ? quote_qualified_identifier(nsp, fn) : NULL;
	route->builtin = nsp != NULL && OidIsValid(ext) &&
		getExtensionOfObject(ProcedureRelationId, route->transformer) == ext;
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
		route->retention = datumCopy(SPI_getbinval(tuple, desc, 4, &isnull), false, 16);
		route_transformer(route);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	return found;
}

/*
 * Add d to batch, or when batch is NULL write it at once in a batch of
 * its own.  A reception is keyed and named here, and locked (one session
 * at a time per delivery, until it commits) before its earlier reception
 * is looked up; a retransform comes with its stored key and name.
 */
static void
process(const CdvizWebhookRoute *route, Delivery *d, CdvizWebhookOutcome *out,
		CdvizWebhookBatch *batch)
{
	MemoryContext outcxt = CurrentMemoryContext;
	CdvizWebhookBatch *b = batch ? batch : batch_new(false);
	int			nest = pin_search_path();

	SPI_connect();
	prepare_plans();
	MemoryContextSwitchTo(b->cxt);
	if (d->receptions > 0)
	{
		StringInfoData lockname;

		d->key = delivery_key(d->headers, d->body);
		d->event_name = event_name(d->headers, d->body);
		initStringInfo(&lockname);
		appendStringInfo(&lockname, "%s%c%s", d->route, '\0', d->key);
		cdviz_lock_key(CDVIZ_LOCK_WEBHOOK,
					   DatumGetUInt32(hash_any((unsigned char *) lockname.data, lockname.len)));
	}
	add_delivery(b, route, d, out, outcxt);
	SPI_finish();
	restore_search_path(nest);
	if (batch == NULL)
	{
		cdviz_webhook_batch_flush(b);
		cdviz_webhook_batch_end(b);
	}
}

/* See webhook_store.h. */
void
cdviz_webhook_process(const CdvizWebhookRoute *route, Jsonb *headers, Jsonb *body,
					  CdvizWebhookOutcome *out, CdvizWebhookBatch *batch)
{
	Delivery	d;

	memset(&d, 0, sizeof(d));
	d.route = route->name;
	d.headers = headers;
	d.body = body;
	d.receptions = 1;
	process(route, &d, out, batch);
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

	cdviz_check_version();
	if (PG_ARGISNULL(0) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("route and body of a webhook delivery may not be null")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	route_for_sql(name, &route);
	cdviz_webhook_process(&route, cdviz_webhook_clean_headers(PG_ARGISNULL(1) ? NULL : PG_GETARG_JSONB_P(1)),
						  PG_GETARG_JSONB_P(2), &out, NULL);

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
	CdvizWebhookRoute route;
	CdvizWebhookOutcome out;
	Delivery	d;
	bool		isnull;
	Datum		name_d;

	cdviz_check_version();
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
	process(&route, &d, &out, NULL);

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

	cdviz_check_version();
	if (key == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(key));
}
