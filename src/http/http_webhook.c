/*
 * http_webhook.c
 *	  POST /webhooks/<name>: a tool's own webhook (GitHub, GitLab, Argo CD,
 *	  Tekton, or anything a user wrote a SQL transformer for).
 *
 * The route (cdviz.webhooks) names the transformer and how the tool proves
 * who it is; the secret is in cdviz.webhook_secrets.  For each delivery a
 * subtransaction looks the route up, checks the credentials, then records
 * the delivery, runs the transformer and stores its events
 * (webhook_store.c).  The answer leaves after COMMIT.
 *
 * Group commit, as for POST /cdevents (http_commit.c) but in a queue of its
 * own: a complete delivery is suspended and queued, and the worker loop
 * processes every queued delivery in one transaction, one subtransaction
 * each, so that the WAL flush of the commit is shared.  A delivery whose
 * subtransaction fails is answered for itself, as it would have been in a
 * transaction of its own; when the group's transaction fails as a whole,
 * each delivery runs again alone.  Deliveries of one group run in order,
 * so a transformer sees what the earlier ones stored (the inventory).
 *
 * A failed credential check is answered 401 before anything is written:
 * its subtransaction has written nothing, and nobody can fill the disk
 * with unauthenticated bodies.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/base64.h"
#include "common/hmac_sha256.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "postmaster/bgworker.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/memutils.h"

#include "http/http_webhook.h"
#include "store/store.h"
#include "common/subxact.h"
#include "webhook/webhook.h"
#include "common/worker.h"

/* Longest route name (cdviz.webhooks.name allows 63 characters). */
#define WEBHOOK_NAME_MAX 63

/*
 * Most deliveries one transaction takes; the rest wait for the next.  A
 * stored delivery takes two or three subtransaction ids (its own, the
 * lake insert's): past 64 in one transaction every other backend's
 * snapshots overflow to pg_subtrans while it runs.
 */
#define WEBHOOK_GROUP_MAX 16

#define NOT_JSON "the body is not JSON: set the webhook's content type to application/json"

/* What one delivery's transaction found and did. */
typedef struct WebhookCall
{
	HttpRequest *req;
	const char *name;
	char	   *headers_json;	/* request headers, credentials removed */

	/* results, in req->cxt */
	bool		found;
	bool		authorized;
	bool		not_json;
	const char *auth;			/* the route's auth kind */
	const char *why;			/* why the credentials were refused */
	const char *status;			/* process_webhook's status */
	char	   *answer;			/* JSON answer of a processed delivery */
	int64		stored;
	int64		duplicates;
	ErrorData  *error;			/* why its subtransaction failed, if it did */
	int64		rejected_id;	/* the dead letter of a refused body */

	/* between its two subtransactions, in the group's transaction */
	CdvizWebhookRoute *route;	/* NULL: nothing to process */
	Jsonb	   *headers;
	Jsonb	   *body;
	bool		processed;		/* out is filled at the group's flush */
	CdvizWebhookOutcome out;

	dlist_node	node;			/* in the queue */
} WebhookCall;

/* Deliveries processed in one transaction. */
typedef struct WebhookGroup
{
	WebhookCall **calls;
	int			ncalls;

	/*
	 * Routes looked up by this group's transaction: deliveries of a group
	 * mostly go to one route, read once per transaction (secrets are wiped
	 * when the group is done).  A name with no route has only its name.
	 */
	CdvizWebhookRoute routes[WEBHOOK_GROUP_MAX];
	int			nroutes;

	/* the deliveries' events and records, written together; NULL alone */
	CdvizWebhookBatch *batch;
} WebhookGroup;

static dlist_head queue = DLIST_STATIC_INIT(queue);

/* The route name of a webhook path, or NULL when it cannot be one. */
static char *
route_name(const char *url)
{
	const char *name = url + strlen(HTTP_WEBHOOK_PREFIX);
	size_t		len = strlen(name);

	if (len > 0 && name[len - 1] == '/')
		len--;
	if (len == 0 || len > WEBHOOK_NAME_MAX)
		return NULL;
	for (size_t i = 0; i < len; i++)
	{
		char		c = name[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
			  (i > 0 && (c == '_' || c == '.' || c == '-'))))
			return NULL;
	}
	return pnstrdup(name, len);
}

/* "Authorization: <scheme> <credentials>": the credentials, or NULL. */
static const char *
credentials_of(const char *authorization, const char *scheme)
{
	size_t		n = strlen(scheme);

	if (authorization == NULL || pg_strncasecmp(authorization, scheme, n) != 0 ||
		authorization[n] != ' ')
		return NULL;
	authorization += n;
	while (*authorization == ' ')
		authorization++;
	return authorization;
}

/* Basic credentials (base64 of user:password) equal to secret. */
static bool
basic_ok(const char *given, const char *secret)
{
	int			enclen = strlen(given);
	int			maxlen = pg_b64_dec_len(enclen);
	char	   *decoded = palloc(maxlen + 1);
	int			declen = pg_b64_decode(given, enclen, decoded, maxlen);
	bool		ok;

	if (declen < 0)
		return false;
	ok = http_equal_constant_time(decoded, declen, secret, strlen(secret));
	pfree(decoded);
	return ok;
}

/*
 * Check the request against the route's auth kind and secret; on failure
 * call->why says what is missing or wrong (never what was expected).
 */
static bool
credentials_ok(WebhookCall *call, const char *auth, const char *secret)
{
	HttpRequest *req = call->req;
	const char *given;

	if (strcmp(auth, "none") == 0)
		return true;
	if (secret == NULL)
	{
		call->why = "the webhook has no secret: see cdviz.alter_webhook()";
		return false;
	}
	if (strcmp(auth, "github") == 0)
	{
		given = http_header(req, "X-Hub-Signature-256");
		if (http_signature_ok(given, secret, req->body.data, req->body.len))
			return true;
		call->why = given ? "the X-Hub-Signature-256 signature does not match the body"
			: "an X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body> header is required";
		return false;
	}
	if (strcmp(auth, "gitlab") == 0)
	{
		given = http_header(req, "X-Gitlab-Token");
		if (given && http_equal_constant_time(given, strlen(given), secret, strlen(secret)))
			return true;
		call->why = given ? "the X-Gitlab-Token is not valid" : "an X-Gitlab-Token header is required";
		return false;
	}
	given = http_header(req, MHD_HTTP_HEADER_AUTHORIZATION);
	if (strcmp(auth, "bearer") == 0)
	{
		const char *token = credentials_of(given, "Bearer");

		if (token && http_equal_constant_time(token, strlen(token), secret, strlen(secret)))
			return true;
		call->why = token ? "the bearer token is not valid" : "an Authorization: Bearer header is required";
		return false;
	}
	if (strcmp(auth, "basic") == 0)
	{
		const char *userpass = credentials_of(given, "Basic");

		if (userpass && basic_ok(userpass, secret))
			return true;
		call->why = userpass ? "the user name or password is not valid"
			: "an Authorization: Basic header is required";
		return false;
	}
	call->why = "the webhook's auth kind is unknown";
	return false;
}

/* One header into the JSON object being built (names in lower case). */
static enum MHD_Result
add_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	StringInfo	buf = (StringInfo) cls;
	char	   *lower;

	if (key == NULL || value == NULL || cdviz_webhook_is_credential_header(key))
		return MHD_YES;
	/* jsonb would refuse text that is not in the database encoding */
	if (!pg_verifymbstr(key, strlen(key), true) || !pg_verifymbstr(value, strlen(value), true))
		return MHD_YES;
	lower = pstrdup(key);
	for (char *p = lower; *p; p++)
		*p = pg_ascii_tolower((unsigned char) *p);
	appendStringInfoChar(buf, buf->len > 1 ? ',' : ' ');
	escape_json(buf, lower);
	appendStringInfoChar(buf, ':');
	escape_json(buf, value);
	pfree(lower);
	return MHD_YES;
}

static char *
headers_as_json(HttpRequest *req)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	MHD_get_connection_values(req->conn, MHD_HEADER_KIND, add_header, &buf);
	appendStringInfoChar(&buf, '}');
	return buf.data;
}

/*
 * The body as jsonb, or 0 when it is not JSON text in the database encoding.
 * Parsed once, here (cdviz_jsonb_parse: jsonb_in words what the core's
 * scanner declines, so that a body jsonb refuses gets a precise answer).
 * The delivery path takes the jsonb as it is instead of parsing the text
 * again.
 */
static Datum
body_as_jsonb(HttpRequest *req)
{
	ErrorData  *edata;
	Jsonb	   *jb;

	/* jsonb_in reads a C string: a NUL would end the body early */
	if (memchr(req->body.data, '\0', req->body.len) != NULL ||
		!pg_verifymbstr(req->body.data, req->body.len, true))
		return (Datum) 0;
	if ((jb = cdviz_jsonb_parse(req->body.data, req->body.len, &edata)) == NULL)
	{
		FreeErrorData(edata);
		return (Datum) 0;
	}
	return JsonbPGetDatum(jb);
}

/* {"delivery":1,"status":"stored","events":[1,2],"stored":2,"duplicates":0} */
static char *
outcome_answer(const CdvizWebhookOutcome *out)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"delivery\":" INT64_FORMAT ",\"status\":", out->delivery_id);
	escape_json(&buf, out->status);
	appendStringInfoString(&buf, ",\"events\":[");
	for (int i = 0; i < out->nevents; i++)
		appendStringInfo(&buf, "%s" INT64_FORMAT, i > 0 ? "," : "", out->event_ids[i]);
	appendStringInfo(&buf, "],\"stored\":" INT64_FORMAT ",\"duplicates\":" INT64_FORMAT,
					 out->stored, out->duplicates);
	if (out->error)
	{
		appendStringInfoString(&buf, ",\"error\":");
		escape_json(&buf, out->error);
	}
	appendStringInfoString(&buf, "}\n");
	return buf.data;
}

/* The route named name, as this group's transaction reads it; NULL if none. */
static CdvizWebhookRoute *
group_route(WebhookGroup *g, const char *name)
{
	int			i;

	for (i = 0; i < g->nroutes && strcmp(g->routes[i].name, name) != 0; i++)
		;
	if (i == g->nroutes)
	{
		Assert(g->nroutes < WEBHOOK_GROUP_MAX);
		if (!cdviz_webhook_lookup(name, &g->routes[i]))
		{
			memset(&g->routes[i], 0, sizeof(CdvizWebhookRoute));
			g->routes[i].name = pstrdup(name);
		}
		g->nroutes++;
	}
	return g->routes[i].auth ? &g->routes[i] : NULL;
}

/* Forget the group's routes, wiping their secrets. */
static void
forget_routes(WebhookGroup *g)
{
	for (int i = 0; i < g->nroutes; i++)
		if (g->routes[i].secret)
			explicit_bzero(g->routes[i].secret, strlen(g->routes[i].secret));
	g->nroutes = 0;
}

/*
 * Inside the transaction, first subtransaction: route, credentials and
 * body.  A delivery to process gets call->route, headers and body.
 */
static void
prepare_delivery(WebhookGroup *g, WebhookCall *call)
{
	HttpRequest *req = call->req;
	CdvizWebhookRoute *route;
	Datum		body;
	ErrorData  *edata;

	if ((route = group_route(g, call->name)) == NULL)
		return;
	call->found = true;
	call->auth = MemoryContextStrdup(req->cxt, route->auth);
	call->authorized = credentials_ok(call, route->auth, route->secret);
	if (!call->authorized)
		return;
	body = body_as_jsonb(req);
	if (body == (Datum) 0)
	{
		call->not_json = true;
		call->rejected_id = http_store_refused_body("webhook", req->origin_ref, req->body.data,
													req->body.len, NOT_JSON);
		return;
	}
	/* JSON the receiver wrote itself: refused, it would be a bug of ours */
	if ((call->headers = cdviz_jsonb_parse(call->headers_json, strlen(call->headers_json),
										   &edata)) == NULL)
		ReThrowError(edata);
	call->body = DatumGetJsonbP(body);
	call->route = route;
}

/*
 * Second subtransaction: the delivery itself (into the group's batch).
 * Its outcome is allocated with the request, to outlive the transaction.
 */
static void
process_delivery(WebhookGroup *g, WebhookCall *call)
{
	MemoryContext old = MemoryContextSwitchTo(call->req->cxt);

	cdviz_webhook_process(call->route, call->headers, call->body, &call->out, g->batch);
	MemoryContextSwitchTo(old);
	call->processed = true;
}

/* The answer of a processed delivery, from its outcome. */
static void
take_outcome(WebhookCall *call)
{
	HttpRequest *req = call->req;

	call->stored = call->out.stored;
	call->duplicates = call->out.duplicates;
	call->status = MemoryContextStrdup(req->cxt, call->out.status);
	call->answer = MemoryContextStrdup(req->cxt, outcome_answer(&call->out));
}

/* One delivery of a group, as cdviz_subxact() runs it. */
typedef struct DeliveryRun
{
	WebhookGroup *g;
	WebhookCall *call;
} DeliveryRun;

static void
run_prepare(void *arg)
{
	DeliveryRun *run = (DeliveryRun *) arg;

	prepare_delivery(run->g, run->call);
}

static void
run_process(void *arg)
{
	DeliveryRun *run = (DeliveryRun *) arg;

	process_delivery(run->g, run->call);
}

/* Why the database refused a delivery, as answered and kept. */
static char *
refused_message(ErrorData *edata)
{
	return psprintf("the database refused the delivery: %s", edata->message);
}

/*
 * A delivery the database refused (call->error): said in the log, and its
 * body kept as a dead letter when it was the data's fault (not when the
 * database could not be reached).
 */
static void
delivery_failed(WebhookCall *call)
{
	ereport(LOG,
			(errcode(call->error->sqlerrcode),
			 errmsg("%s: processing a webhook delivery to \"%s\" failed: %s",
					MyBgworkerEntry->bgw_type, call->name, call->error->message)));
	if (call->authorized && http_is_data_error(call->error->sqlerrcode))
		call->rejected_id =
			http_store_refused_body("webhook", call->req->origin_ref,
									call->req->body.data, call->req->body.len,
									refused_message(call->error));
}

/*
 * Inside the group's transaction: each delivery in subtransactions, so
 * that one the database refuses leaves the others' work in place.  Their
 * events and records are written together at the end (the batch), or
 * earlier when a transformer could read them (see
 * cdviz_webhook_batch_wants_flush): outside any delivery's
 * subtransaction, whose rollback would take them along.  A delivery whose
 * write the database refuses fails alone (cdviz_webhook_batch_flush).
 */
static void
process_group(void *arg)
{
	WebhookGroup *g = (WebhookGroup *) arg;

	g->nroutes = 0;				/* none read by an earlier, failed attempt */
	g->batch = g->ncalls > 1 ? cdviz_webhook_batch_start() : NULL;
	PG_TRY();
	{
		for (int i = 0; i < g->ncalls; i++)
		{
			WebhookCall *call = g->calls[i];
			DeliveryRun run = {g, call};

			/* the error is answered after the transaction: kept with the request */
			call->error = cdviz_subxact(run_prepare, &run, call->req->cxt);
			if (call->error == NULL && call->route != NULL)
			{
				if (g->batch &&
					cdviz_webhook_batch_wants_flush(g->batch, call->route, call->headers, call->body))
					cdviz_webhook_batch_flush(g->batch);
				call->error = cdviz_subxact(run_process, &run, call->req->cxt);
			}
			if (call->error)
				delivery_failed(call);
		}
		if (g->batch)
			cdviz_webhook_batch_flush(g->batch);
		for (int i = 0; i < g->ncalls; i++)
		{
			WebhookCall *call = g->calls[i];

			if (!call->processed || call->error != NULL)
				continue;
			if ((call->error = call->out.failure) != NULL)
				delivery_failed(call);
			else
				take_outcome(call);
		}
	}
	PG_FINALLY();
	{
		/* the secrets are wiped even when the group fails */
		forget_routes(g);
		if (g->batch)
			cdviz_webhook_batch_end(g->batch);
		g->batch = NULL;
	}
	PG_END_TRY();
}

/* The answer of a delivery, from its transaction's outcome and its own. */
static void
answer_call(WebhookCall *call, CdvizTxResult res, ErrorData *edata)
{
	HttpRequest *req = call->req;

	if (res == CDVIZ_TX_DONE && call->error)
	{
		res = CDVIZ_TX_FAILED;
		edata = call->error;
	}
	switch (res)
	{
		case CDVIZ_TX_DONE:
			if (!call->found)
				http_set_error(req, MHD_HTTP_NOT_FOUND,
							   psprintf("no webhook \"%s\": see cdviz.webhook_routes", call->name));
			else if (!call->authorized)
			{
				http_set_error(req, MHD_HTTP_UNAUTHORIZED, call->why);
				if (strcmp(call->auth, "bearer") == 0)
					req->challenge = "Bearer realm=\"cdviz\"";
				else if (strcmp(call->auth, "basic") == 0)
					req->challenge = "Basic realm=\"cdviz\"";
				req->www_authenticate = req->challenge != NULL;
			}
			else if (call->not_json)
				http_set_rejected(req, MHD_HTTP_BAD_REQUEST, NOT_JSON, call->rejected_id);
			else
			{
				http_metrics_events(call->stored, call->duplicates, 0);
				http_set_answer(req,
								strcmp(call->status, "ping") == 0 ? MHD_HTTP_OK :
								strcmp(call->status, "stored") == 0 || strcmp(call->status, "duplicate") == 0 ?
								MHD_HTTP_CREATED : MHD_HTTP_ACCEPTED,
								"application/json", call->answer);
			}
			break;
		case CDVIZ_TX_NO_EXTENSION:
			http_set_error(req, MHD_HTTP_SERVICE_UNAVAILABLE,
						   psprintf("not ready: %s", cdviz_worker_not_ready()));
			req->retry_after = true;
			break;
		case CDVIZ_TX_FAILED:
			/* a transformer's own errors are kept by process_webhook */
			if (http_is_data_error(edata->sqlerrcode) && call->rejected_id)
				http_set_rejected(req, MHD_HTTP_BAD_REQUEST, refused_message(edata), call->rejected_id);
			else if (http_is_data_error(edata->sqlerrcode))
				http_set_error(req, MHD_HTTP_BAD_REQUEST, refused_message(edata));
			else
			{
				http_set_error(req, MHD_HTTP_SERVICE_UNAVAILABLE,
							   psprintf("the database is not available: %s", edata->message));
				req->retry_after = true;
			}
			break;
	}
}

/* Forget what an attempt found, before the delivery runs again. */
static void
reset_call(WebhookCall *call)
{
	call->found = call->authorized = call->not_json = false;
	call->auth = call->why = call->status = NULL;
	call->answer = NULL;
	call->stored = call->duplicates = 0;
	call->error = NULL;
	call->rejected_id = 0;
	call->route = NULL;
	call->headers = call->body = NULL;
	call->processed = false;
	memset(&call->out, 0, sizeof(call->out));
}

/* Process g in one transaction and set every delivery's answer. */
static void
run_group(WebhookGroup *g)
{
	ErrorData  *edata = NULL;
	CdvizTxResult res;

	res = cdviz_worker_transaction(g->ncalls > 1 ? "processing webhook deliveries" :
								   "processing a webhook delivery", process_group, g, &edata);
	if (res == CDVIZ_TX_FAILED && g->ncalls > 1)
	{
		/* the transaction failed as a whole (its commit, say): each alone */
		for (int i = 0; i < g->ncalls; i++)
		{
			WebhookGroup one = {&g->calls[i], 1};

			reset_call(g->calls[i]);
			run_group(&one);
		}
	}
	else
		for (int i = 0; i < g->ncalls; i++)
		{
			/* a dead letter of a transaction that failed was not kept */
			if (res == CDVIZ_TX_FAILED)
				g->calls[i]->rejected_id = 0;
			answer_call(g->calls[i], res, edata);
		}
	if (edata)
		FreeErrorData(edata);
}

/* A complete delivery: suspended until its group's transaction is over. */
static void
enqueue(HttpRequest *req, const char *url)
{
	MemoryContext old = MemoryContextSwitchTo(req->cxt);
	WebhookCall *call = palloc0(sizeof(WebhookCall));

	call->req = req;
	call->name = route_name(url);
	call->headers_json = headers_as_json(req);
	MemoryContextSwitchTo(old);

	http_suspend(req, &queue, &call->node);
}

/* See http_webhook.h. */
bool
http_webhook_pending(void)
{
	return !dlist_is_empty(&queue);
}

/* See http_webhook.h. */
void
http_webhook_flush(void)
{
	WebhookCall *calls[WEBHOOK_GROUP_MAX];
	WebhookGroup g = {calls, 0};

	while (!dlist_is_empty(&queue) && g.ncalls < WEBHOOK_GROUP_MAX)
		calls[g.ncalls++] = dlist_container(WebhookCall, node, dlist_pop_head_node(&queue));
	if (g.ncalls == 0)
		return;

	/*
	 * What the group allocates outside its transaction lives in the worker
	 * loop's context, reset at the next turn; what the answers need is
	 * copied into each request's context.
	 */
	run_group(&g);
	for (int i = 0; i < g.ncalls; i++)
	{
		Assert(calls[i]->req->state == REQ_ANSWERED);
		MHD_resume_connection(calls[i]->req->conn);
	}
}

/* First call, headers only: what can be refused before the body. */
static void
webhook_first_call(HttpRequest *req, const char *url, const char *method)
{
	const char *length;
	unsigned long long declared;
	const char *encoding;

	if (route_name(url) == NULL)
	{
		http_set_error(req, MHD_HTTP_NOT_FOUND,
					   "not found: webhooks are POST /webhooks/<name>, see cdviz.webhook_routes");
		return;
	}
	if (strcmp(method, "POST") != 0)
	{
		http_set_error(req, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed: use POST");
		return;
	}
	length = http_header(req, MHD_HTTP_HEADER_CONTENT_LENGTH);
	declared = length ? strtoull(length, NULL, 10) : 0;
	if (declared > (size_t) cdviz_http_max_body * 1024)
	{
		http_set_error(req, MHD_HTTP_CONTENT_TOO_LARGE,
					   psprintf("the body is larger than cdviz.http_max_body (%d kB)", cdviz_http_max_body));
		return;
	}
	/* room for the whole body at once, not five doublings of it */
	if (declared > 0 && declared <= 64 * 1024 * 1024)
	{
		MemoryContext old = MemoryContextSwitchTo(req->cxt);

		enlargeStringInfo(&req->body, (int) declared);
		MemoryContextSwitchTo(old);
	}
	/* signatures are over the bytes sent: no tool compresses its webhooks */
	encoding = http_header(req, MHD_HTTP_HEADER_CONTENT_ENCODING);
	if (encoding && pg_strcasecmp(encoding, "identity") != 0)
	{
		http_set_error(req, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE,
					   psprintf("Content-Encoding \"%s\" is not supported on webhooks", encoding));
		return;
	}
}

/* See http_webhook.h. */
enum MHD_Result
http_webhook_handle(struct MHD_Connection *conn, const char *url, const char *method,
					const char *upload_data, size_t *upload_data_size, void **con_cls)
{
	HttpRequest *req = *con_cls;
	MemoryContext old;

	if (req == NULL)
	{
		MemoryContext cxt = AllocSetContextCreate(TopMemoryContext, "cdviz webhook request",
												  ALLOCSET_SMALL_SIZES);

		old = MemoryContextSwitchTo(cxt);
		req = palloc0(sizeof(HttpRequest));
		req->cxt = cxt;
		req->conn = conn;
		req->route = ROUTE_NOT_FOUND;	/* none of http_routes.c's */
		req->state = REQ_RECEIVING;
		INSTR_TIME_SET_CURRENT(req->started);
		req->origin_ref = psprintf("%s %s", method, url);
		initStringInfo(&req->body);
		MemoryContextSwitchTo(old);
		*con_cls = req;

		webhook_first_call(req, url, method);
		if (req->state == REQ_ANSWERED)
			return http_queue_answer(req, NULL, "POST");
		return MHD_YES;
	}
	if (req->answer_queued)
	{
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (*upload_data_size > 0)
	{
		if (!req->too_large)
		{
			if ((size_t) req->body.len + *upload_data_size > (size_t) cdviz_http_max_body * 1024)
			{
				/* drain the rest without keeping it */
				req->too_large = true;
				resetStringInfo(&req->body);
			}
			else
			{
				old = MemoryContextSwitchTo(req->cxt);
				appendBinaryStringInfo(&req->body, upload_data, *upload_data_size);
				MemoryContextSwitchTo(old);
			}
		}
		*upload_data_size = 0;
		return MHD_YES;
	}

	/* resumed after its group's commit, or called while it waits */
	if (req->state == REQ_ANSWERED)
		return http_queue_answer(req, req->challenge, "POST");
	if (req->state == REQ_QUEUED)
		return MHD_YES;

	/* the whole body is in */
	if (!req->too_large)
	{
		enqueue(req, url);
		return MHD_YES;
	}
	http_set_error(req, MHD_HTTP_CONTENT_TOO_LARGE,
				   psprintf("the body is larger than cdviz.http_max_body (%d kB)", cdviz_http_max_body));
	return http_queue_answer(req, NULL, "POST");
}
