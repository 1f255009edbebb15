/*
 * http_webhook.h
 *	  POST /webhooks/<name>: tool webhooks (GitHub, GitLab, Argo CD, Tekton,
 *	  any tool with a SQL transformer) checked against their route's
 *	  credentials and handed to cdviz.process_webhook().
 */
#ifndef CDVIZ_HTTP_WEBHOOK_H
#define CDVIZ_HTTP_WEBHOOK_H

#include "http/http.h"

/* Paths under this prefix belong to http_webhook.c. */
#define HTTP_WEBHOOK_PREFIX "/webhooks/"

/*
 * The libmicrohttpd access handler for webhook paths, called by
 * http_handle_request() for every call of a request whose URL starts with
 * HTTP_WEBHOOK_PREFIX.  *con_cls holds an HttpRequest that
 * http_request_completed() frees as any other.
 */
extern enum MHD_Result http_webhook_handle(struct MHD_Connection *conn,
										   const char *url, const char *method,
										   const char *upload_data,
										   size_t *upload_data_size,
										   void **con_cls);

/* Whether deliveries wait for their group's transaction. */
extern bool http_webhook_pending(void);

/* Process the waiting deliveries (a group) in one transaction, answer them. */
extern void http_webhook_flush(void);

#endif							/* CDVIZ_HTTP_WEBHOOK_H */
