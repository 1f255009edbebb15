/*
 * http_routes.c
 *	  The request handler libmicrohttpd calls: which route, receiving the
 *	  body within the size limit, checking credentials and the envelope,
 *	  then handing POST /cdevents to the group commit.
 *
 * libmicrohttpd calls the handler several times per request: once when
 * the headers are in (*con_cls is still NULL), once per piece of body,
 * once when the body is complete, and once more after a suspended
 * connection is resumed.  Answers that need no database are given at the
 * first or the last of these; POST /cdevents is suspended and answered
 * after its transaction commits.
 */
#include "postgres.h"

#include <netdb.h>
#include <sys/socket.h>

#include "utils/builtins.h"
#include "utils/formatting.h"
#include "utils/json.h"
#include "utils/memutils.h"

#include "http/http.h"
#include "http/http_webhook.h"
#include "store/store.h"
#include "common/worker.h"

/* Which route a path names (the query string is not part of url). */
static HttpRoute
route_of(const char *url)
{
	if (strcmp(url, "/cdevents") == 0 || strcmp(url, "/cdevents/") == 0)
		return ROUTE_CDEVENTS;
	if (strcmp(url, "/healthz") == 0)
		return ROUTE_HEALTHZ;
	if (strcmp(url, "/readyz") == 0)
		return ROUTE_READYZ;
	if (strcmp(url, "/metrics") == 0)
		return ROUTE_METRICS;
	return ROUTE_NOT_FOUND;
}

/* "address:port" of the client, for dead letters and logs. */
static char *
peer_of(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *info;
	char		host[NI_MAXHOST];
	char		port[NI_MAXSERV];
	const struct sockaddr *sa;

	info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	if (info == NULL || (sa = info->client_addr) == NULL)
		return pstrdup("unknown");
	if (getnameinfo(sa, sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
					: sizeof(struct sockaddr_in),
					host, sizeof(host), port, sizeof(port),
					NI_NUMERICHOST | NI_NUMERICSERV) != 0)
		return pstrdup("unknown");
	return sa->sa_family == AF_INET6 ? psprintf("[%s]:%s", host, port)
		: psprintf("%s:%s", host, port);
}

/* A new request, in its own memory context. */
static HttpRequest *
request_new(struct MHD_Connection *conn, const char *url, const char *method)
{
	MemoryContext cxt = AllocSetContextCreate(TopMemoryContext, "cdviz http request",
											  ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	HttpRequest *req = palloc0(sizeof(HttpRequest));

	req->cxt = cxt;
	req->conn = conn;
	req->route = route_of(url);
	req->state = REQ_RECEIVING;
	INSTR_TIME_SET_CURRENT(req->started);
	req->origin_ref = psprintf("%s %s %s", peer_of(conn), method, url);
	MemoryContextSwitchTo(old);
	return req;
}

/* The answer of a /cdevents, health or metrics request. */
static enum MHD_Result
queue_answer(HttpRequest *req)
{
	return http_queue_answer(req, "Bearer realm=\"cdviz\"",
							 req->route == ROUTE_CDEVENTS ? "POST" : "GET, HEAD");
}

/* Nothing to do: the transaction helper checks the extension. */
static void
ready_probe(void *arg)
{
}

/* GET /healthz, /readyz, /metrics: answered at once. */
static void
answer_get(HttpRequest *req)
{
	switch (req->route)
	{
		case ROUTE_HEALTHZ:
			/* the loop is running: that is all liveness means */
			http_set_answer(req, MHD_HTTP_OK, "text/plain", "ok\n");
			break;
		case ROUTE_READYZ:
			switch (cdviz_worker_transaction("checking readiness", ready_probe, NULL, NULL))
			{
				case CDVIZ_TX_DONE:
					http_set_answer(req, MHD_HTTP_OK, "text/plain", "ready\n");
					break;
				case CDVIZ_TX_NO_EXTENSION:
					http_set_answer(req, MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain",
									psprintf("not ready: %s\n", cdviz_worker_not_ready()));
					req->retry_after = true;
					break;
				case CDVIZ_TX_FAILED:
					http_set_answer(req, MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain",
									"not ready: the database is not available\n");
					req->retry_after = true;
					break;
			}
			break;
		case ROUTE_METRICS:
			{
				char	   *text = http_metrics_render();

				http_set_answer(req, MHD_HTTP_OK, "text/plain; version=0.0.4", text);
				pfree(text);
			}
			break;
		default:
			Assert(false);
	}
}

/* The body limit in bytes. */
static size_t
max_body(void)
{
	return (size_t) cdviz_http_max_body * 1024;
}

/* First call, headers only: decide what can be decided now. */
static void
first_call(HttpRequest *req, const char *method)
{
	const char *length;
	MemoryContext old;

	if (req->route == ROUTE_NOT_FOUND)
	{
		http_set_error(req, MHD_HTTP_NOT_FOUND,
					   "not found: POST events to /cdevents; GET /healthz, /readyz, /metrics");
		return;
	}
	if (req->route != ROUTE_CDEVENTS)
	{
		if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
			http_set_error(req, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed: use GET");
		else
			answer_get(req);
		return;
	}
	if (strcmp(method, "POST") != 0)
	{
		http_set_error(req, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed: use POST");
		return;
	}
	/* refuse a declared oversize body before reading any of it */
	length = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND,
										 MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (length && strtoull(length, NULL, 10) > max_body())
	{
		http_set_error(req, MHD_HTTP_CONTENT_TOO_LARGE,
					   psprintf("the body is larger than cdviz.http_max_body (%d kB)",
								cdviz_http_max_body));
		return;
	}
	old = MemoryContextSwitchTo(req->cxt);
	initStringInfo(&req->body);
	MemoryContextSwitchTo(old);
}

/* A piece of body: keep it, unless past the limit. */
static void
body_piece(HttpRequest *req, const char *data, size_t size)
{
	MemoryContext old;

	if (req->too_large)
		return;					/* drain the rest without keeping it */
	if ((size_t) req->body.len + size > max_body())
	{
		req->too_large = true;
		pfree(req->body.data);
		initStringInfo(&req->body);
		return;
	}
	old = MemoryContextSwitchTo(req->cxt);
	appendBinaryStringInfo(&req->body, data, size);
	MemoryContextSwitchTo(old);
}

/*
 * A header value without the white space around it, which is not part of
 * it (RFC 9110, section 5.5) and which libmicrohttpd leaves at its end.
 */
static const char *
trimmed(HttpRequest *req, const char *value)
{
	size_t		len;
	char	   *copy;

	if (value == NULL)
		return NULL;
	while (*value == ' ' || *value == '\t')
		value++;
	len = strlen(value);
	while (len > 0 && (value[len - 1] == ' ' || value[len - 1] == '\t'))
		len--;
	copy = MemoryContextAlloc(req->cxt, len + 1);
	memcpy(copy, value, len);
	copy[len] = '\0';
	return copy;
}

/* What collect_header() gathers: the headers as a JSON object. */
typedef struct HeaderCollector
{
	StringInfoData json;
	int			count;
	char	   *repeated;		/* a header given twice, or NULL */
	List	   *seen;			/* lower-cased names so far */
} HeaderCollector;

/*
 * One request header: Content-Type and every ce-* header go into the
 * object, named in lower case, their values as received (bytes that are
 * not text in the database encoding escaped as \xNN, as in raw).
 */
static enum MHD_Result
collect_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	HeaderCollector *c = cls;
	char	   *name;
	ListCell   *lc;

	if (pg_strncasecmp(key, "ce-", 3) != 0 && pg_strcasecmp(key, "content-type") != 0)
		return MHD_YES;
	name = asc_tolower(key, strlen(key));
	foreach(lc, c->seen)
	{
		if (strcmp((char *) lfirst(lc), name) == 0)
		{
			if (c->repeated == NULL)
				c->repeated = name;
			return MHD_YES;
		}
	}
	c->seen = lappend(c->seen, name);
	appendStringInfoString(&c->json, c->count++ ? ", " : "{");
	escape_json(&c->json, name);
	appendStringInfoString(&c->json, ": ");
	escape_json(&c->json,
				text_to_cstring(cdviz_bytes_as_text(value ? value : "",
													value ? strlen(value) : 0)));
	return MHD_YES;
}

/*
 * The envelope column of the request's dead letters (see
 * cdviz.rejected_events), in the current memory context; *repeated is set
 * to a binary-mode header the request gives more than once.
 */
static char *
envelope_json(HttpRequest *req, char **repeated)
{
	HeaderCollector c;

	*repeated = NULL;
	if (req->env.mode != CDVIZ_ENVELOPE_BINARY)
	{
		const char *column = cdviz_envelope_column(req->env.mode);

		return column ? pstrdup(column) : NULL;
	}
	memset(&c, 0, sizeof(c));
	initStringInfo(&c.json);
	appendStringInfoString(&c.json, "{\"mode\": \"binary\", \"headers\": ");
	MHD_get_connection_values(req->conn, MHD_HEADER_KIND, collect_header, &c);
	appendStringInfoString(&c.json, c.count ? "}}" : "{}}");
	*repeated = c.repeated;
	return c.json.data;
}

/*
 * Keep the whole body as a dead letter with one problem, answering status
 * once it is stored (the group commit does both).
 */
static void
refuse_body(HttpRequest *req, int status, const char *problem)
{
	req->keep_body = req->body.data;
	req->keep_len = req->body.len;
	req->keep_problem = MemoryContextStrdup(req->cxt, problem);
	req->status = status;
	http_commit_enqueue(req);
}

/* The complete body of POST /cdevents: check it and queue it. */
static void
body_complete(HttpRequest *req)
{
	const char *why;
	const char *encoding;
	CdvizEnvelopeInput in;

	if (req->too_large)
	{
		http_set_error(req, MHD_HTTP_CONTENT_TOO_LARGE,
					   psprintf("the body is larger than cdviz.http_max_body (%d kB)",
								cdviz_http_max_body));
		return;
	}
	/* unauthenticated input is not kept: that would let anyone fill the disk */
	if (!http_auth_check(trimmed(req, http_header(req, MHD_HTTP_HEADER_AUTHORIZATION)),
						 trimmed(req, http_header(req, "X-Signature-256")),
						 req->body.data, req->body.len, &why))
	{
		http_set_error(req, MHD_HTTP_UNAUTHORIZED, why);
		req->www_authenticate = cdviz_http_auth_token && cdviz_http_auth_token[0];
		return;
	}

	memset(&in, 0, sizeof(in));
	in.body = req->body.data;
	in.body_len = req->body.len;
	encoding = trimmed(req, http_header(req, MHD_HTTP_HEADER_CONTENT_ENCODING));
	if (encoding && pg_strcasecmp(encoding, "identity") != 0)
	{
		size_t		len;

		if (pg_strcasecmp(encoding, "gzip") != 0 && pg_strcasecmp(encoding, "x-gzip") != 0 &&
			pg_strcasecmp(encoding, "deflate") != 0)
		{
			refuse_body(req, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE,
						psprintf("Content-Encoding \"%s\" is not supported: use gzip or none", encoding));
			return;
		}
		switch (cdviz_gzip_inflate(req->body.data, req->body.len, max_body(),
								   &req->inflated, &len))
		{
			case CDVIZ_INFLATE_OK:
				in.body = req->inflated;
				in.body_len = len;
				break;
			case CDVIZ_INFLATE_TOO_LARGE:
				http_set_error(req, MHD_HTTP_CONTENT_TOO_LARGE,
							   psprintf("the inflated body is larger than cdviz.http_max_body (%d kB)",
										cdviz_http_max_body));
				return;
			case CDVIZ_INFLATE_CORRUPT:
				refuse_body(req, MHD_HTTP_BAD_REQUEST,
							psprintf("the body is not valid %s data", encoding));
				return;
			case CDVIZ_INFLATE_NO_MEMORY:
				http_set_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "out of memory");
				req->retry_after = true;
				return;
		}
	}

	in.content_type = http_header(req, MHD_HTTP_HEADER_CONTENT_TYPE);
	in.ce_specversion = http_header(req, "ce-specversion");
	in.ce_id = http_header(req, "ce-id");
	in.ce_source = http_header(req, "ce-source");
	in.ce_type = http_header(req, "ce-type");
	in.http_headers = true;
	if (!cdviz_envelope_read(&in, &req->env))
	{
		cdviz_envelope_free(&req->env);
		http_set_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "out of memory");
		req->retry_after = true;
		return;
	}
	req->have_env = true;
	if (req->env.mode == CDVIZ_ENVELOPE_UNSUPPORTED)
	{
		refuse_body(req, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, req->env.error);
		return;
	}
	{
		MemoryContext old = MemoryContextSwitchTo(req->cxt);
		char	   *repeated;

		req->envelope = envelope_json(req, &repeated);
		MemoryContextSwitchTo(old);
		if (repeated)
		{
			/* which of the values is the attribute would be a guess */
			refuse_body(req, MHD_HTTP_BAD_REQUEST,
						psprintf("the header %s is given more than once", repeated));
			return;
		}
	}
	if (req->env.nevents == 0)
	{
		/* an empty batch, which the binding allows: nothing to store */
		http_set_answer(req, MHD_HTTP_OK, "application/json",
						"{\"stored\":[],\"duplicates\":[],\"rejected\":0,\"events\":[]}\n");
		return;
	}
	http_commit_enqueue(req);
}

/* The libmicrohttpd access handler; see the file header. */
enum MHD_Result
http_handle_request(void *cls, struct MHD_Connection *conn, const char *url,
					const char *method, const char *version,
					const char *upload_data, size_t *upload_data_size,
					void **con_cls)
{
	HttpRequest *req = *con_cls;

	/* POST /webhooks/<name>: a tool's own payload, see http_webhook.c */
	if (strncmp(url, HTTP_WEBHOOK_PREFIX, strlen(HTTP_WEBHOOK_PREFIX)) == 0)
		return http_webhook_handle(conn, url, method, upload_data, upload_data_size, con_cls);

	if (req == NULL)
	{
		req = request_new(conn, url, method);
		*con_cls = req;
		first_call(req, method);
		if (req->state == REQ_ANSWERED)
			return queue_answer(req);
		return MHD_YES;
	}
	if (req->answer_queued)
	{
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (*upload_data_size > 0)
	{
		body_piece(req, upload_data, *upload_data_size);
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (req->state == REQ_RECEIVING)
		body_complete(req);
	/* REQ_QUEUED: suspended until the commit; resumed when answered */
	if (req->state == REQ_ANSWERED)
		return queue_answer(req);
	return MHD_YES;
}

/* libmicrohttpd is done with the request: free it. */
void
http_request_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
					   enum MHD_RequestTerminationCode toe)
{
	HttpRequest *req = *con_cls;

	if (req == NULL)
		return;
	if (req->have_env)
		cdviz_envelope_free(&req->env);
	free(req->inflated);
	MemoryContextDelete(req->cxt);
	*con_cls = NULL;
}
