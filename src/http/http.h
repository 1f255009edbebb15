/*
 * http.h
 *	  The cdviz http worker: what its files share.
 *
 * Files, each calling only those listed below it:
 *
 *	  http_worker.c    registration, the wait loop driving libmicrohttpd
 *	  http_routes.c    the request handler: routes, body, limits
 *	  http_webhook.c   POST /webhooks/<name> (http_webhook.h)
 *	  http_commit.c    group commit: queued requests stored in one transaction
 *	  http_answer.c    answers set on requests and queued to libmicrohttpd
 *	  http_auth.c      bearer token and X-Signature-256 (HMAC-SHA256) checks
 *	  http_metrics.c   counters and histograms for GET /metrics
 *	  http_settings.c  the cdviz.http_* settings
 *
 * Everything runs in the worker's one thread: libmicrohttpd is driven in
 * its external event loop mode, so its callbacks are ordinary function
 * calls made from MHD_run() in the worker's own loop.
 */
#ifndef CDVIZ_HTTP_H
#define CDVIZ_HTTP_H

#include "postgres.h"

#include <microhttpd.h>

#include "lib/ilist.h"
#include "lib/stringinfo.h"
#include "portability/instr_time.h"

#include "core/envelope.h"

/* settings (http_settings.c) */
extern char *cdviz_http_listen_addresses;
extern int	cdviz_http_port;
extern char *cdviz_http_auth_token;
extern char *cdviz_http_hmac_secret;
extern int	cdviz_http_max_body;	/* kB */
extern int	cdviz_http_max_connections;
extern int	cdviz_http_max_connections_per_address;
extern int	cdviz_http_timeout;		/* seconds, idle */
extern int	cdviz_http_request_deadline;	/* seconds, whole request */

extern void http_define_settings(void);

/* Seconds a client is told to wait (Retry-After) when we cannot store. */
#define HTTP_RETRY_AFTER 5

typedef enum HttpRoute
{
	ROUTE_CDEVENTS,
	ROUTE_HEALTHZ,
	ROUTE_READYZ,
	ROUTE_METRICS,
	ROUTE_NOT_FOUND
} HttpRoute;

typedef enum HttpRequestState
{
	REQ_RECEIVING,				/* headers seen, body arriving */
	REQ_QUEUED,					/* suspended, waiting for the next commit */
	REQ_ANSWERED				/* answer ready (or sent) */
} HttpRequestState;

/* One request, from its headers to its answer. */
typedef struct HttpRequest
{
	MemoryContext cxt;			/* everything below lives here */
	struct MHD_Connection *conn;
	HttpRoute	route;
	HttpRequestState state;
	instr_time	started;
	char	   *origin_ref;		/* "<peer> <method> <path>" */

	StringInfoData body;
	bool		too_large;
	char	   *inflated;		/* malloc'd gzip-decoded body, or NULL */
	bool		answer_queued;	/* handed to libmicrohttpd */

	/* the documents to store (malloc'd by the core) */
	CdvizEnvelope env;
	bool		have_env;
	char	   *keep_body;		/* a whole body refused before the envelope */
	size_t		keep_len;
	char	   *keep_problem;	/* its one problem */
	char	   *envelope;		/* JSON for the dead letters' envelope
								 * column: how the body arrived (CloudEvents
								 * mode, binary mode's headers), or NULL */
	int			first_item;		/* its items in the group's array */
	int			nitems;
	int64	   *envelope_rejected_ids;	/* dead letters of refused envelope
										 * events, by event index */
	int64		keep_rejected_id;

	/* the answer */
	int			status;
	char	   *answer;
	const char *answer_type;
	bool		retry_after;
	bool		www_authenticate;
	const char *challenge;		/* a webhook's WWW-Authenticate, or NULL */

	dlist_node	queue_node;		/* in the commit queue */
} HttpRequest;

/* A request header's value, or NULL. */
static inline const char *
http_header(HttpRequest *req, const char *name)
{
	return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

/* http_routes.c */
extern enum MHD_Result http_handle_request(void *cls, struct MHD_Connection *conn,
										   const char *url, const char *method,
										   const char *version,
										   const char *upload_data,
										   size_t *upload_data_size,
										   void **con_cls);
extern void http_request_completed(void *cls, struct MHD_Connection *conn,
								   void **con_cls,
								   enum MHD_RequestTerminationCode toe);

/* http_answer.c */
extern void http_set_answer(HttpRequest *req, int status, const char *type,
							const char *text);
extern void http_set_error(HttpRequest *req, int status, const char *message);
extern void http_set_rejected(HttpRequest *req, int status, const char *message,
							  int64 rejected_id);
extern enum MHD_Result http_queue_answer(HttpRequest *req, const char *www_authenticate,
										 const char *allow);
extern void http_suspend(HttpRequest *req, dlist_head *queue, dlist_node *node);

/* http_auth.c */
extern bool http_equal_constant_time(const char *a, size_t alen, const char *b, size_t blen);
extern bool http_signature_ok(const char *header, const char *secret,
							  const char *body, size_t len);
extern bool http_auth_check(const char *authorization, const char *signature,
							const char *body, size_t body_len,
							const char **why);

/* http_commit.c */
extern bool http_is_data_error(int sqlerrcode);
extern int64 http_store_refused_body(const char *origin, const char *origin_ref,
									 const char *body, size_t len, const char *problem);
extern void http_commit_enqueue(HttpRequest *req);
extern bool http_commit_pending(void);
extern void http_commit_flush(void);

/* http_metrics.c */
extern void http_metrics_request(int status, double seconds);
extern void http_metrics_events(int64 stored, int64 duplicates, int64 rejected);
extern void http_metrics_transaction(int nrequests, int nevents, double seconds,
									 bool committed);
extern void http_metrics_connections(int open);
extern char *http_metrics_render(void);

#endif							/* CDVIZ_HTTP_H */
