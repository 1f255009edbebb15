/*
 * webhook.h
 *	  Webhook deliveries, from the request to the stored events: what the
 *	  http worker calls for POST /webhooks/<name>.  The folder's files, each
 *	  calling only files listed above it (their shared declarations are in
 *	  webhook_int.h):
 *
 *	  webhook_util.c       jsonb members, arrays, the pinned search_path,
 *	                       a function's name
 *	  webhook_identity.c   a delivery's key and name, its headers cleaned
 *	  webhook_route.c      a route's row and its transformer
 *	  webhook_transform.c  a transformer's run: an input (a delivery, a
 *	                       source's item) made events
 *	  webhook_batch.c      deliveries written together: events and records
 *	  webhook_delivery.c   one delivery: its lock, its earlier reception,
 *	                       its transform, into a batch
 *	  webhook_sql.c        cdviz.process_webhook(), cdviz._webhook_transform()
 *	                       and cdviz.webhook_delivery_key()
 *	  source_item.c        one item a source read, through the source's
 *	                       transformer or its built-in mapping
 *	                       (source_item.h, for the sources' readers)
 *	  source_item_sql.c    cdviz._source_retransform() and
 *	                       cdviz.report_cdevents()
 *
 * The transformers of sources run here too, with the same contract: a
 * source's item is handed over as (meta, body) where a delivery is
 * (headers, body).
 */
#ifndef CDVIZ_WEBHOOK_H
#define CDVIZ_WEBHOOK_H

#include "postgres.h"

#include "utils/jsonb.h"

/* A row of cdviz.webhooks with its secret and its transformer's name. */
typedef struct CdvizWebhookRoute
{
	char	   *name;
	char	   *auth;			/* github, gitlab, bearer, basic, none */
	char	   *secret;			/* NULL when the route has none */
	Oid			transformer;
	char	   *transformer_name;	/* schema.name, quoted; NULL when the
									 * function no longer exists */
	Datum		retention;		/* interval */
	bool		builtin;		/* the transformer is one of the extension's:
								 * of the lake it reads only the inventory
								 * (service events) and open incidents */
} CdvizWebhookRoute;

/* What processing one delivery did. */
typedef struct CdvizWebhookOutcome
{
	const char *status;			/* stored, duplicate, ignored, failed, ping */
	int64		delivery_id;
	int64	   *event_ids;		/* lake ids in output order, NULL when failed */
	int			nevents;
	int64		stored;
	int64		duplicates;
	char	   *error;			/* ignored: <reason>, or why it failed */
	ErrorData  *failure;		/* a batch's: the database refused to write
								 * this delivery (nothing of it was); the
								 * fields above are then unset */
} CdvizWebhookOutcome;

/*
 * The route named name, or false when there is none.  The strings are
 * allocated in the caller's memory context; clear the secret after use.
 * Needs a transaction.
 */
extern bool cdviz_webhook_lookup(const char *name, CdvizWebhookRoute *route);

/*
 * Deliveries whose events and records are written together, at the
 * batch's flush: one lake insert for all of them instead of one each
 * (which cost more than the transformer).  Made by the http worker for a
 * group of deliveries in one transaction.
 */
typedef struct CdvizWebhookBatch CdvizWebhookBatch;

/* An empty batch, in the current memory context. */
extern CdvizWebhookBatch *cdviz_webhook_batch_start(void);

/*
 * Whether the batch must be flushed before this delivery of route is
 * processed: when its transformer could read what the batch holds (any
 * user transformer; the extension's own when the batch holds inventory
 * or incident events), or when it is a redelivery of one the batch holds.
 */
extern bool cdviz_webhook_batch_wants_flush(CdvizWebhookBatch *batch,
											const CdvizWebhookRoute *route,
											Jsonb *headers, Jsonb *body);

/*
 * Store the batch's events (all or nothing per delivery) and record its
 * deliveries, in the current transaction; fills their outcomes.  When the
 * database refuses the batch, each delivery is written alone, and one it
 * refuses gets the error in its outcome's failure.
 */
extern void cdviz_webhook_batch_flush(CdvizWebhookBatch *batch);

/* Release what the batch holds, flushed or not. */
extern void cdviz_webhook_batch_end(CdvizWebhookBatch *batch);

/*
 * Record one delivery of route and store the events its transformer makes
 * of it, in the current transaction; headers must already be clean (names
 * in lower case, no credentials: see cdviz_webhook_clean_headers).  A
 * transformer's error or invalid output is recorded on the delivery, not
 * raised.  out is allocated in the caller's memory context.  With a batch
 * the events and the record are written at its flush, and out is filled
 * then: it must stay valid until then.  Without one, they are written now.
 */
extern void cdviz_webhook_process(const CdvizWebhookRoute *route, Jsonb *headers, Jsonb *body,
								  CdvizWebhookOutcome *out, CdvizWebhookBatch *batch);

/* Headers with names in lower case and the credential headers removed. */
extern Jsonb *cdviz_webhook_clean_headers(Jsonb *headers);

/* Whether a header (any case) carries credentials: never stored. */
extern bool cdviz_webhook_is_credential_header(const char *name);

#endif							/* CDVIZ_WEBHOOK_H */
