/*
 * sink_http.c
 *	  HTTP sink: POST events to a URL with libcurl's multi interface,
 *	  driven by the dispatcher's wait loop.
 *
 * Modes (the CloudEvents 1.0 HTTP binding, as our own receiver reads it):
 *	  binary	 one event per request, the CDEvent as body, ce-* headers
 *	  structured one event per request, application/cloudevents+json
 *	  batch		 up to batch_size events, application/cloudevents-batch+json
 *
 * A sink has one request in flight at a time, so its events arrive in
 * storage order; its connection is kept alive across requests by the
 * multi handle's connection cache.  The request's body is signed with
 * X-Signature-256: sha256=<hex HMAC-SHA256> when hmac_secret is set: the
 * exact scheme cdviz's receiver checks, so one cdviz forwards to another.
 *
 * libcurl never blocks here: the socket callback records which sockets
 * the loop must wait on and the timer callback when to call back, and the
 * loop hands readiness to curl_multi_socket_action().
 */
#include "postgres.h"

#include <curl/curl.h>
#include <json-c/json.h>

#include "storage/latch.h"
#include "utils/memutils.h"

#include "dispatch/dispatch.h"
#include "common/hmac_sha256.h"

/* Bytes of an answer kept for the logs and rejected_deliveries. */
#define RESPONSE_EXCERPT 1024

typedef struct HttpSinkState
{
	CURL	   *easy;
	struct curl_slist *headers;
	StringInfoData body;
	char		response[RESPONSE_EXCERPT + 1];
	size_t		response_len;
	int			end;			/* events [chunk->next, end) in flight */
	bool		in_flight;
	char		error[CURL_ERROR_SIZE];
} HttpSinkState;

static CURLM *multi = NULL;

/* Sockets libcurl wants watched: fd and CURL_POLL_* flags. */
#define MAX_SOCKETS 256
static int	nsockets = 0;
static int	socket_fd[MAX_SOCKETS];
static int	socket_what[MAX_SOCKETS];
static long timer_ms = -1;		/* -1: no timer */
static TimestampTz timer_set_at;

static int
socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	int			i;

	for (i = 0; i < nsockets && socket_fd[i] != s; i++)
		;
	if (what == CURL_POLL_REMOVE)
	{
		if (i < nsockets)
		{
			socket_fd[i] = socket_fd[nsockets - 1];
			socket_what[i] = socket_what[nsockets - 1];
			nsockets--;
		}
	}
	else if (i < nsockets)
		socket_what[i] = what;
	else if (nsockets < MAX_SOCKETS)
	{
		socket_fd[nsockets] = s;
		socket_what[nsockets] = what;
		nsockets++;
	}
	dispatch_sockets_changed = true;
	return 0;
}

static int
timer_cb(CURLM *m, long timeout_ms, void *userp)
{
	timer_ms = timeout_ms;
	timer_set_at = GetCurrentTimestamp();
	return 0;
}

static void
http_init(void)
{
	if (multi)
		return;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		ereport(ERROR, (errmsg("cdviz dispatcher: libcurl could not be initialised")));
	multi = curl_multi_init();
	curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	/* one connection per sink is plenty: requests of a sink are sequential */
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, 64L);
}

/* The sockets to wait on, as WL_SOCKET_* flags. */
static int
http_sockets(int *fds, int *events, int max)
{
	int			n = 0;

	for (int i = 0; i < nsockets && n < max; i++)
	{
		int			ev = 0;

		if (socket_what[i] & CURL_POLL_IN)
			ev |= WL_SOCKET_READABLE;
		if (socket_what[i] & CURL_POLL_OUT)
			ev |= WL_SOCKET_WRITEABLE;
		if (ev == 0)
			continue;
		fds[n] = socket_fd[i];
		events[n] = ev;
		n++;
	}
	return n;
}

/* Milliseconds until libcurl wants its timeout action, or -1. */
static long
http_timer_ms(void)
{
	long		elapsed;

	if (timer_ms < 0)
		return -1;
	elapsed = (long) ((GetCurrentTimestamp() - timer_set_at) / 1000);
	return Max(0, timer_ms - elapsed);
}

static void check_done(void);

static void
http_socket_ready(int fd, int events)
{
	int			running;
	int			flags = 0;

	if (events & WL_SOCKET_READABLE)
		flags |= CURL_CSELECT_IN;
	if (events & WL_SOCKET_WRITEABLE)
		flags |= CURL_CSELECT_OUT;
	curl_multi_socket_action(multi, fd, flags, &running);
	check_done();
}

static void
http_timer(void)
{
	int			running;

	if (multi == NULL || http_timer_ms() != 0)
		return;
	timer_ms = -1;
	curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_done();
}

static size_t
write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	HttpSinkState *st = userdata;
	size_t		n = size * nmemb;
	size_t		keep = Min(n, RESPONSE_EXCERPT - st->response_len);

	memcpy(st->response + st->response_len, ptr, keep);
	st->response_len += keep;
	st->response[st->response_len] = '\0';
	return n;
}

/* ------------------------------------------------------------------ */
/* requests                                                            */
/* ------------------------------------------------------------------ */

/* HMAC-SHA256 of the body as 64 hex digits. */
static void
sign(const char *secret, const char *body, size_t len, char *hex)
{
	if (!cdviz_hmac_sha256_hex(secret, body, len, hex))
		ereport(ERROR, (errmsg("cdviz dispatcher: HMAC-SHA256 failed")));
}

static void
append_json_string(StringInfo buf, const char *s)
{
	struct json_object *str = json_object_new_string(s ? s : "");

	appendStringInfoString(buf, json_object_to_json_string_ext(str, JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(str);
}

/* A structured CloudEvent carrying the event. */
static void
append_structured(StringInfo buf, const DispatchEvent *ev)
{
	appendStringInfoString(buf, "{\"specversion\":\"1.0\",\"id\":");
	append_json_string(buf, ev->context_id);
	appendStringInfoString(buf, ",\"source\":");
	append_json_string(buf, ev->source);
	appendStringInfoString(buf, ",\"type\":");
	append_json_string(buf, ev->type);
	if (ev->time)
	{
		appendStringInfoString(buf, ",\"time\":");
		append_json_string(buf, ev->time);
	}
	appendStringInfoString(buf, ",\"datacontenttype\":\"application/json\",\"data\":");
	appendBinaryStringInfo(buf, ev->payload, ev->payload_len);
	appendStringInfoChar(buf, '}');
}

static struct curl_slist *
add_header(struct curl_slist *list, const char *name, const char *value)
{
	char	   *h = psprintf("%s: %s", name, value);
	struct curl_slist *l = curl_slist_append(list, h);

	pfree(h);
	return l;
}

/* Send the next request of the sink's chunk. */
static void
http_start(Sink *sink)
{
	DispatchChunk *chunk = sink->chunk;
	HttpSinkState *st = sink->state;
	struct curl_slist *h = NULL;
	MemoryContext old;

	if (chunk == NULL || chunk->next >= chunk->nevents)
		return;
	if (st == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		st = palloc0(sizeof(HttpSinkState));
		initStringInfo(&st->body);
		sink->state = st;
		MemoryContextSwitchTo(old);
	}
	if (st->in_flight)
		return;
	if (st->easy == NULL)
		st->easy = curl_easy_init();
	else
		curl_easy_reset(st->easy);

	old = MemoryContextSwitchTo(TopMemoryContext);
	resetStringInfo(&st->body);
	st->response_len = 0;
	st->response[0] = '\0';
	st->error[0] = '\0';
	if (sink->mode == HTTP_BATCH)
	{
		st->end = Min(chunk->nevents, chunk->next + sink->batch_size);
		appendStringInfoChar(&st->body, '[');
		for (int i = chunk->next; i < st->end; i++)
		{
			if (i > chunk->next)
				appendStringInfoChar(&st->body, ',');
			append_structured(&st->body, &chunk->events[i]);
		}
		appendStringInfoChar(&st->body, ']');
		h = add_header(h, "Content-Type", "application/cloudevents-batch+json");
	}
	else
	{
		const DispatchEvent *ev = &chunk->events[chunk->next];

		st->end = chunk->next + 1;
		if (sink->mode == HTTP_STRUCTURED)
		{
			append_structured(&st->body, ev);
			h = add_header(h, "Content-Type", "application/cloudevents+json");
		}
		else
		{
			appendBinaryStringInfo(&st->body, ev->payload, ev->payload_len);
			h = add_header(h, "Content-Type", "application/json");
			h = add_header(h, "ce-specversion", "1.0");
			h = add_header(h, "ce-id", ev->context_id);
			h = add_header(h, "ce-source", ev->source);
			h = add_header(h, "ce-type", ev->type);
			if (ev->time)
				h = add_header(h, "ce-time", ev->time);
		}
	}
	if (sink->headers_json)
	{
		struct json_object *hs = json_tokener_parse(sink->headers_json);

		if (hs)
		{
			json_object_object_foreach(hs, key, val)
				h = add_header(h, key, json_object_get_string(val));
			json_object_put(hs);
		}
	}
	if (sink->token)
	{
		char	   *v = psprintf("Bearer %s", sink->token);

		h = add_header(h, "Authorization", v);
		pfree(v);
	}
	if (sink->hmac_secret)
	{
		char		hex[CDVIZ_HMAC_HEX_LEN + 1];
		char		v[sizeof(hex) + 8];

		sign(sink->hmac_secret, st->body.data, st->body.len, hex);
		snprintf(v, sizeof(v), "sha256=%s", hex);
		h = add_header(h, "X-Signature-256", v);
	}
	/* no "Expect: 100-continue" round trip before larger bodies */
	h = curl_slist_append(h, "Expect:");
	MemoryContextSwitchTo(old);

	if (st->headers)
		curl_slist_free_all(st->headers);
	st->headers = h;
	curl_easy_setopt(st->easy, CURLOPT_URL, sink->target);
	curl_easy_setopt(st->easy, CURLOPT_POST, 1L);
	curl_easy_setopt(st->easy, CURLOPT_POSTFIELDS, st->body.data);
	curl_easy_setopt(st->easy, CURLOPT_POSTFIELDSIZE, (long) st->body.len);
	curl_easy_setopt(st->easy, CURLOPT_HTTPHEADER, st->headers);
	curl_easy_setopt(st->easy, CURLOPT_USERAGENT, "cdviz-dispatcher/0.1");
	curl_easy_setopt(st->easy, CURLOPT_TIMEOUT_MS, (long) sink->timeout_ms);
	curl_easy_setopt(st->easy, CURLOPT_CONNECTTIMEOUT_MS, (long) Min(sink->timeout_ms, 5000));
	curl_easy_setopt(st->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(st->easy, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(st->easy, CURLOPT_WRITEDATA, st);
	curl_easy_setopt(st->easy, CURLOPT_ERRORBUFFER, st->error);
	curl_easy_setopt(st->easy, CURLOPT_PRIVATE, sink);
	curl_easy_setopt(st->easy, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(st->easy, CURLOPT_PROTOCOLS_STR, "http,https");
	st->in_flight = true;
	curl_multi_add_handle(multi, st->easy);
}

/* Stop what is in flight (the chunk is dropped or read again). */
static void
http_cancel(Sink *sink)
{
	HttpSinkState *st = sink->state;

	if (st == NULL)
		return;
	if (st->in_flight)
	{
		curl_multi_remove_handle(multi, st->easy);
		st->in_flight = false;
	}
	curl_easy_cleanup(st->easy);
	st->easy = NULL;
}

/* A request ended: settle its events or schedule a retry. */
static void
finished(Sink *sink, CURLcode rc)
{
	HttpSinkState *st = sink->state;
	long		status = 0;

	st->in_flight = false;
	curl_multi_remove_handle(multi, st->easy);
	if (sink->chunk == NULL)
		return;
	if (rc != CURLE_OK)
	{
		dispatch_sink_failed(sink, "%s", st->error[0] ? st->error : curl_easy_strerror(rc));
		return;
	}
	curl_easy_getinfo(st->easy, CURLINFO_RESPONSE_CODE, &status);
	if (status >= 200 && status < 300)
	{
		dispatch_chunk_settle(sink, st->end, 0, NULL);
		dispatch_sink_progressed(sink);
		/* the next part of the chunk at once */
		http_start(sink);
	}
	else if (status >= 400 && status < 500 && status != 408 && status != 429)
	{
		/* refused for good: keep them aside and go on */
		ereport(LOG,
				(errmsg("cdviz dispatcher: sink \"%s\" refused %d event(s) with HTTP %ld",
						sink->name, st->end - sink->chunk->next, status),
				 errdetail_internal("%s", st->response)));
		dispatch_chunk_settle(sink, st->end, (int) status, st->response);
		dispatch_sink_progressed(sink);
		http_start(sink);
	}
	else
		dispatch_sink_failed(sink, "HTTP %ld: %s", status, st->response);
}

static void
check_done(void)
{
	CURLMsg    *msg;
	int			left;

	while ((msg = curl_multi_info_read(multi, &left)) != NULL)
	{
		Sink	   *sink = NULL;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &sink);
		if (sink)
			finished(sink, msg->data.result);
	}
}

const SinkMethods sink_http_methods = {
	.kind = "http",
	.init = http_init,
	.start = http_start,
	.cancel = http_cancel,
	.sockets = http_sockets,
	.socket_ready = http_socket_ready,
	.timer_ms = http_timer_ms,
	.timer = http_timer,
};
