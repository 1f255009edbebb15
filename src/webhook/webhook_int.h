/*
 * webhook_int.h
 *	  What the files of src/webhook/ share, by the file that defines it
 *	  (see webhook.h for the order in which they call each other).
 */
#ifndef CDVIZ_WEBHOOK_INT_H
#define CDVIZ_WEBHOOK_INT_H

#include "postgres.h"

#include "nodes/pg_list.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "store/store.h"
#include "webhook/webhook.h"

/* One delivery, as processed. */
typedef struct CdvizDelivery
{
	const char *route;
	const char *key;
	const char *event_name;
	Jsonb	   *headers;		/* clean */
	Jsonb	   *body;
	TimestampTz received_at;	/* first reception: the default timestamp */
	int			receptions;		/* 1 for a reception, 0 for a retransform */
} CdvizDelivery;

/*
 * One input of a transformer, a function (jsonb, jsonb) RETURNS SETOF
 * jsonb: a webhook delivery (headers, body) or an item a source read
 * (meta, body).
 */
typedef struct CdvizTransformInput
{
	Oid			transformer;
	const char *transformer_name;	/* schema.name, quoted; NULL when the
									 * function no longer exists */
	Jsonb	   *first;			/* headers, or meta */
	Jsonb	   *body;			/* NULL: SQL null */
	const char *key;			/* the input's identity: event n gets
								 * context.id <key>#<n> */
	const char *default_source; /* context.source of events without one */
	TimestampTz default_time;	/* context.timestamp of events without one */
	const char *ref;			/* event n's origin_ref: <ref>[<n>] */
} CdvizTransformInput;

/* What the transformer made of one input. */
typedef struct CdvizTransformed
{
	const char *status;			/* failed, ignored or ping; NULL: stored or
								 * duplicate, or failed if the store rejects
								 * an event */
	char	   *error;
	int			sqlerrcode;		/* failed: the transformer's error code */
	char	   *reason;			/* why some outputs were {"ignored": ...} */
	List	   *context_ids;	/* its events' ids (of the batch, for
								 * cdviz_transform_next()); NIL when the
								 * transformer raised */
	CdvizItem  *items;			/* its events (of the batch) */
	int			nitems;
	bool		inventory;		/* service or incident events among them */

	/* the output rows not yet made items: webhook_transform.c's */
	MemoryContext cxt;			/* where the rows and reason are kept */
	struct Tuplestorestate *rows;
	struct TupleTableSlot *slot;
	int			made;			/* events made so far: the next one's
								 * position */
	char	   *default_ts;
} CdvizTransformed;

/* webhook_util.c */

/*
 * Run under "pg_catalog, pg_temp" in a GUC nest level of our own, as a
 * SET clause on a function would; the level goes to
 * cdviz_webhook_restore_search_path().
 */
extern int	cdviz_webhook_pin_search_path(void);
extern void cdviz_webhook_restore_search_path(int nest);

/* Member key of object c: as ->> gives it, whether ? finds it, an object. */
extern char *cdviz_webhook_member_text(JsonbContainer *c, const char *key);
extern bool cdviz_webhook_has_member(JsonbContainer *c, const char *key);
extern JsonbContainer *cdviz_webhook_member_object(JsonbContainer *c, const char *key);

/* Push a string, or a key and its string value, to a jsonb being built. */
extern void cdviz_webhook_push_string(JsonbParseState **st, JsonbIteratorToken tok,
									const char *s);
extern void cdviz_webhook_push_pair(JsonbParseState **st, const char *key, const char *value);

/* text[] of a list of C strings; int8[] of n values. */
extern Datum cdviz_webhook_text_array(List *strings);
extern Datum cdviz_webhook_int8_array(const int64 *values, int n);

/* webhook_identity.c */

/*
 * The identity of a delivery, stable across redeliveries; NULL when only
 * the body could tell and there is none.  Headers in lower case.
 */
extern char *cdviz_webhook_key(Jsonb *headers, Jsonb *body);

/* What the tool calls the delivery (X-GitHub-Event.action, ...), or NULL. */
extern char *cdviz_webhook_event_name(Jsonb *headers, Jsonb *body);

/*
 * The name a function is called by, schema.name quoted, or NULL when it
 * no longer exists.
 */
extern char *cdviz_webhook_function_name(Oid fn);

/* webhook_transform.c */

/*
 * Run in's transformer over its input, its output rows kept in *t as
 * jsonb (in a tuplestore of the current memory context, on disk past
 * work_mem).  A transformer that raises says so in t->status ("failed"),
 * t->error and t->sqlerrcode, and keeps nothing.  Under the pinned
 * search_path.
 */
extern void cdviz_transform_run(const CdvizTransformInput *in, CdvizTransformed *t);

/*
 * Make up to max of the output rows not made yet items of the lake
 * (contexts completed, ids from the key and their position in the whole
 * output) in t->items, t->nitems and t->context_ids, allocated in the
 * current memory context, which the caller may reset once it has stored
 * them; returns how many, 0 when no row is left.  So an output is made
 * into json-c documents (some kilobytes an event) and stored a batch at a
 * time.
 */
extern int	cdviz_transform_next(const CdvizTransformInput *in, CdvizTransformed *t, int max);

/* Free the output rows of t (any not made into items are dropped). */
extern void cdviz_transform_end(CdvizTransformed *t);

/*
 * cdviz_transform_run(), and the whole output made items at once: for
 * the input of a webhook, whose size the HTTP server bounds, and whose
 * events are stored all or nothing.
 */
extern void cdviz_transform(const CdvizTransformInput *in, CdvizTransformed *t);

/*
 * Run route's transformer over d and make its output items of the lake
 * (contexts completed, ids from the delivery key), in *t.  A transformer
 * that raises or makes no event says so in t->status.
 */
extern void cdviz_webhook_make_events(const CdvizWebhookRoute *route, CdvizDelivery *d,
									CdvizTransformed *t);

/* webhook_batch.c */

/* An empty batch; isolate: see CdvizWebhookBatch. */
extern CdvizWebhookBatch *cdviz_webhook_batch_new(bool isolate);

/* The batch's memory context, where a delivery is processed. */
extern MemoryContext cdviz_webhook_batch_context(CdvizWebhookBatch *batch);

/*
 * Add d, transformed into t, to the batch, with its outcome to go to out
 * (allocated in outcxt) at the flush.
 */
extern void cdviz_webhook_batch_add(CdvizWebhookBatch *batch, const CdvizWebhookRoute *route,
									const CdvizDelivery *d, CdvizTransformed *t,
									CdvizWebhookOutcome *out, MemoryContext outcxt);

/* webhook_delivery.c */

/*
 * Process d (a reception, or a retransform with its stored key and name)
 * into batch, or when batch is NULL write it at once.
 */
extern void cdviz_webhook_process_delivery(const CdvizWebhookRoute *route, CdvizDelivery *d,
										   CdvizWebhookOutcome *out, CdvizWebhookBatch *batch);

#endif							/* CDVIZ_WEBHOOK_INT_H */
