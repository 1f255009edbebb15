/*
 * webhook_store.h
 *	  One webhook delivery, from the request to the stored events: the
 *	  route, the delivery's identity, the transformer's run and the
 *	  delivery record, in C (webhook_store.c).  The http worker calls it
 *	  for POST /webhooks/<name>; cdviz.process_webhook() and
 *	  cdviz.retransform() reach it from SQL.
 */
#ifndef CDVIZ_WEBHOOK_STORE_H
#define CDVIZ_WEBHOOK_STORE_H

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
} CdvizWebhookOutcome;

/*
 * The route named name, or false when there is none.  The strings are
 * allocated in the caller's memory context; clear the secret after use.
 * Needs a transaction.
 */
extern bool cdviz_webhook_lookup(const char *name, CdvizWebhookRoute *route);

/*
 * Record one delivery of route and store the events its transformer makes
 * of it, in the current transaction; headers must already be clean (names
 * in lower case, no credentials: see cdviz_webhook_clean_headers).  A
 * transformer's error or invalid output is recorded on the delivery, not
 * raised.  out is allocated in the caller's memory context.
 */
extern void cdviz_webhook_process(const CdvizWebhookRoute *route, Jsonb *headers, Jsonb *body,
								  CdvizWebhookOutcome *out);

/* Headers with names in lower case and the credential headers removed. */
extern Jsonb *cdviz_webhook_clean_headers(Jsonb *headers);

/* Whether a header (any case) carries credentials: never stored. */
extern bool cdviz_webhook_is_credential_header(const char *name);

#endif							/* CDVIZ_WEBHOOK_STORE_H */
