/*
 * sink_nats.c
 *	  NATS sink: publish each event to a subject (a template such as
 *	  cdevents.{subject}.{predicate}), on JetStream when a stream takes the
 *	  subject, with Nats-Msg-Id set to the event's context id.
 *
 * Messages carry the CloudEvents binary-mode headers (ce-specversion,
 * ce-id, ce-source, ce-type, ce-time) and the CDEvent as data, which is
 * what cdviz's own NATS source reads.
 *
 * Nothing here waits: the loop publishes a chunk and comes back when the
 * answers are in.  On JetStream a chunk is published asynchronously and
 * counts as delivered when every message was acknowledged by the stream;
 * the acknowledgements arrive on a libnats thread, which counts them and
 * wakes the loop through dispatch_wake().  On core NATS the chunk is
 * followed by a marker message to the sink's own inbox: the server handles
 * a connection's messages in order, so once the marker comes back the
 * server has every message before it (the round trip of a flush, without
 * blocking on it).  A chunk not settled within the sink's timeout is
 * published again after the backoff: a stream drops what it already has by
 * Nats-Msg-Id.
 *
 * With jetstream = auto, each subject is looked up with the JetStream API
 * ($JS.API.STREAM.NAMES with the subject as filter: the streams that take
 * it), never with a trial publish, which a core subscriber of the subject
 * would receive as a duplicate and never acknowledge.  The request is
 * published with the sink's inbox as reply subject; its answer arrives
 * like the marker.  A subject's answer is looked up again after
 * cdviz.nats_stream_check_interval, in the background: until the new
 * answer arrives the old one is used, so a re-check delays nothing.
 *
 * Replies to the inbox are queued by the libnats thread that receives them
 * (under a mutex, nothing else) and read by the loop.  A sink's state is
 * never freed, as libnats threads may still hold it in a callback; a
 * dropped sink only unsubscribes.
 */
#include "postgres.h"

#include <pthread.h>

#include <json-c/json.h>

#include "port/atomics.h"
#include "utils/memutils.h"

#include "dispatch/dispatch.h"

/* Replies that wait for the loop; more are dropped (a look-up times out). */
#define INBOX_QUEUE 256

/* Subjects whose route is remembered; past that, all are forgotten. */
#define MAX_ROUTES 1024

typedef enum Route
{
	ROUTE_UNKNOWN,
	ROUTE_CORE,
	ROUTE_STREAM
} Route;

/* What a concrete subject is published with (jetstream = auto). */
typedef struct SubjectRoute
{
	char	   *subject;
	Route		route;
	TimestampTz checked_at;
	uint32		lookup;			/* look-up in flight, 0: none */
	TimestampTz lookup_deadline;
} SubjectRoute;

typedef struct NatsSinkState
{
	jsCtx	   *js;
	bool		js_async;		/* js has published asynchronously */
	int			generation;		/* of the connection js and inbox belong to */
	natsSubscription *inbox_sub;
	char		inbox[128];		/* replies come to <inbox>.L<n>, markers to <inbox>.F<n> */

	/* filled by the inbox callback, read by the loop */
	pthread_mutex_t lock;
	natsMsg    *queue[INBOX_QUEUE];
	int			nqueue;

	/* the chunk part in flight */
	bool		in_flight;
	int			end;			/* events [chunk->next, end) in flight */
	uint32		expected;		/* JetStream acknowledgements */
	pg_atomic_uint32 acked;
	pg_atomic_uint32 failed;
	pg_atomic_uint32 no_responders;
	char		error[256];		/* first failure, written by its counter's winner */
	TimestampTz deadline;
	uint32		marker;			/* marker sent after core messages, 0: none */
	bool		marker_back;
	uint64		reconnects;		/* of the connection when the chunk was sent */

	/* jetstream = auto */
	SubjectRoute *routes;
	int			nroutes;
	uint32		next_id;		/* of markers and look-ups */
} NatsSinkState;

/* libnats thread: count, remember the first error, wake the loop at the end. */
static void
ack_handler(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
	NatsSinkState *st = closure;

	if (pae != NULL)
	{
		if (pae->Err == NATS_NO_RESPONDERS)
			pg_atomic_fetch_add_u32(&st->no_responders, 1);
		if (pg_atomic_fetch_add_u32(&st->failed, 1) == 0)
			snprintf(st->error, sizeof(st->error), "%s",
					 pae->ErrText ? pae->ErrText : natsStatus_GetText(pae->Err));
	}
	if (pg_atomic_add_fetch_u32(&st->acked, 1) >= st->expected)
		dispatch_wake();
	natsMsg_Destroy(msg);
}

/* libnats thread: queue a reply or a marker for the loop. */
static void
inbox_handler(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	NatsSinkState *st = closure;

	pthread_mutex_lock(&st->lock);
	if (st->nqueue < INBOX_QUEUE)
	{
		st->queue[st->nqueue++] = msg;
		msg = NULL;
	}
	pthread_mutex_unlock(&st->lock);
	if (msg)
		natsMsg_Destroy(msg);
	dispatch_wake();
}

/* The subject of an event: {subject}, {predicate}, {version} replaced. */
static char *
subject_of(const char *tmpl, const DispatchEvent *ev)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (const char *p = tmpl; *p; p++)
	{
		if (strncmp(p, "{subject}", 9) == 0)
		{
			appendStringInfoString(&buf, ev->subject);
			p += 8;
		}
		else if (strncmp(p, "{predicate}", 11) == 0)
		{
			appendStringInfoString(&buf, ev->predicate);
			p += 10;
		}
		else if (strncmp(p, "{version}", 9) == 0)
		{
			appendStringInfoString(&buf, ev->version);
			p += 8;
		}
		else
			appendStringInfoChar(&buf, *p);
	}
	return buf.data;
}

static natsStatus
make_msg(Sink *sink, const DispatchEvent *ev, natsMsg **msg)
{
	char	   *subj = subject_of(sink->target, ev);
	natsStatus	s = natsMsg_Create(msg, subj, NULL, ev->payload, ev->payload_len);

	pfree(subj);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(*msg, "Nats-Msg-Id", ev->context_id);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(*msg, "content-type", "application/json");
	if (s == NATS_OK)
		s = natsMsgHeader_Set(*msg, "ce-specversion", "1.0");
	if (s == NATS_OK)
		s = natsMsgHeader_Set(*msg, "ce-id", ev->context_id);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(*msg, "ce-source", ev->source);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(*msg, "ce-type", ev->type);
	if (s == NATS_OK && ev->time)
		s = natsMsgHeader_Set(*msg, "ce-time", ev->time);
	return s;
}

/* Forget what is in flight (after a timeout, or when the chunk goes). */
static void
nats_cancel(Sink *sink)
{
	NatsSinkState *st = sink->state;

	if (st == NULL || !st->in_flight)
		return;
	/*
	 * Only a context that published asynchronously has a list of pending
	 * messages: libnats creates it at the first such publish, and
	 * js_PublishAsyncGetPendingList() reads it without checking.
	 */
	if (st->js && st->js_async && st->generation == dispatch_nats_generation)
	{
		natsMsgList pending;

		/* taken back, they get no acknowledgement callback any more */
		if (js_PublishAsyncGetPendingList(&pending, st->js) == NATS_OK)
			natsMsgList_Destroy(&pending);
	}
	st->in_flight = false;
	st->marker = 0;
}

/* Replies not read yet are of no use any more. */
static void
discard_inbox(NatsSinkState *st)
{
	pthread_mutex_lock(&st->lock);
	for (int i = 0; i < st->nqueue; i++)
		natsMsg_Destroy(st->queue[i]);
	st->nqueue = 0;
	pthread_mutex_unlock(&st->lock);
}

static void
forget_routes(NatsSinkState *st)
{
	for (int i = 0; i < st->nroutes; i++)
		pfree(st->routes[i].subject);
	st->nroutes = 0;
}

static void
close_state(NatsSinkState *st)
{
	if (st->inbox_sub)
	{
		natsSubscription_Unsubscribe(st->inbox_sub);
		natsSubscription_Destroy(st->inbox_sub);
		st->inbox_sub = NULL;
	}
	if (st->js)
	{
		jsCtx_Destroy(st->js);
		st->js = NULL;
		st->js_async = false;
	}
	discard_inbox(st);
	for (int i = 0; i < st->nroutes; i++)
		st->routes[i].lookup = 0;
	st->in_flight = false;
	st->marker = 0;
}

/* The sink is dropped: stop listening (its state stays, see the top). */
static void
nats_close(Sink *sink)
{
	NatsSinkState *st = sink->state;

	if (st == NULL)
		return;
	nats_cancel(sink);
	close_state(st);
	forget_routes(st);
	sink->state = NULL;
}

static NatsSinkState *
state_of(Sink *sink, natsConnection *nc)
{
	NatsSinkState *st = sink->state;

	if (st == NULL)
	{
		st = MemoryContextAllocZero(TopMemoryContext, sizeof(NatsSinkState));
		pthread_mutex_init(&st->lock, NULL);
		pg_atomic_init_u32(&st->acked, 0);
		pg_atomic_init_u32(&st->failed, 0);
		pg_atomic_init_u32(&st->no_responders, 0);
		st->routes = MemoryContextAllocZero(TopMemoryContext, sizeof(SubjectRoute) * MAX_ROUTES);
		sink->state = st;
	}
	if (st->generation != dispatch_nats_generation)
	{
		/* its connection is gone: so are its pending messages and replies */
		close_state(st);
		st->generation = dispatch_nats_generation;
	}
	if (st->js == NULL || st->inbox_sub == NULL)
	{
		jsOptions	o;
		natsInbox  *inbox = NULL;
		sigset_t	saved;

		jsOptions_Init(&o);
		o.PublishAsync.AckHandler = ack_handler;
		o.PublishAsync.AckHandlerClosure = st;
		o.PublishAsync.MaxPending = 100000;
		o.Wait = sink->timeout_ms;
		dispatch_nats_block_signals(&saved);
		if (st->js == NULL && natsConnection_JetStream(&st->js, nc, &o) != NATS_OK)
			st->js = NULL;
		if (st->inbox_sub == NULL && natsInbox_Create(&inbox) == NATS_OK)
		{
			char		subj[sizeof(st->inbox) + 2];

			snprintf(st->inbox, sizeof(st->inbox), "%s", (const char *) inbox);
			snprintf(subj, sizeof(subj), "%s.*", st->inbox);
			if (natsConnection_Subscribe(&st->inbox_sub, nc, subj, inbox_handler, st) == NATS_OK)
				natsSubscription_SetPendingLimits(st->inbox_sub, -1, -1);
			else
				st->inbox_sub = NULL;
			natsInbox_Destroy(inbox);
		}
		dispatch_nats_restore_signals(&saved);
	}
	return st;
}

static SubjectRoute *
route_of(NatsSinkState *st, const char *subject)
{
	SubjectRoute *r;

	for (int i = 0; i < st->nroutes; i++)
		if (strcmp(st->routes[i].subject, subject) == 0)
			return &st->routes[i];
	if (st->nroutes >= MAX_ROUTES)
		forget_routes(st);
	r = &st->routes[st->nroutes++];
	memset(r, 0, sizeof(*r));
	r->subject = MemoryContextStrdup(TopMemoryContext, subject);
	return r;
}

/* The answer of $JS.API.STREAM.NAMES; ROUTE_UNKNOWN and *error when none. */
static Route
lookup_answer(natsMsg *msg, char *error, size_t errlen)
{
	struct json_object *doc;
	struct json_object *v;
	struct json_object *code;
	Route		route = ROUTE_CORE;

	/* no JetStream on the server at all */
	if (natsMsg_IsNoResponders(msg))
		return ROUTE_CORE;
	doc = json_tokener_parse(natsMsg_GetData(msg) ? natsMsg_GetData(msg) : "");
	if (doc == NULL || !json_object_is_type(doc, json_type_object))
	{
		snprintf(error, errlen, "the JetStream API answered no JSON object");
		route = ROUTE_UNKNOWN;
	}
	else if (json_object_object_get_ex(doc, "error", &v))
	{
		/* 503: JetStream is not enabled for this account, nothing is a stream */
		if (!(json_object_object_get_ex(v, "code", &code) && json_object_get_int(code) == 503))
		{
			struct json_object *d;

			snprintf(error, errlen, "the JetStream API answered: %s",
					 json_object_object_get_ex(v, "description", &d)
					 ? json_object_get_string(d) : json_object_to_json_string(v));
			route = ROUTE_UNKNOWN;
		}
	}
	else if ((json_object_object_get_ex(doc, "total", &v) && json_object_get_int(v) > 0) ||
			 (json_object_object_get_ex(doc, "streams", &v) &&
			  json_object_is_type(v, json_type_array) && json_object_array_length(v) > 0))
		route = ROUTE_STREAM;
	if (doc)
		json_object_put(doc);
	return route;
}

/*
 * Read what came to the inbox: markers of the chunk in flight, answers to
 * look-ups.  *error gets the first look-up that failed.
 */
static void
read_inbox(Sink *sink, NatsSinkState *st, char *error, size_t errlen)
{
	natsMsg    *msgs[INBOX_QUEUE];
	int			n;
	TimestampTz now = GetCurrentTimestamp();

	pthread_mutex_lock(&st->lock);
	n = st->nqueue;
	memcpy(msgs, st->queue, sizeof(natsMsg *) * n);
	st->nqueue = 0;
	pthread_mutex_unlock(&st->lock);

	for (int i = 0; i < n; i++)
	{
		const char *subj = natsMsg_GetSubject(msgs[i]);
		const char *tok = strrchr(subj, '.');
		uint32		id = tok ? (uint32) strtoul(tok + 2, NULL, 10) : 0;

		if (tok && tok[1] == 'F')
		{
			if (st->in_flight && id != 0 && id == st->marker)
				st->marker_back = true;
		}
		else if (tok && tok[1] == 'L' && id != 0)
		{
			for (int r = 0; r < st->nroutes; r++)
			{
				SubjectRoute *route = &st->routes[r];
				char		why[256];
				Route		found;

				if (route->lookup != id)
					continue;
				why[0] = '\0';
				found = lookup_answer(msgs[i], why, sizeof(why));
				route->lookup = 0;
				route->checked_at = now;
				if (found == ROUTE_UNKNOWN)
				{
					/* a known route is kept until the next look-up */
					if (route->route == ROUTE_UNKNOWN && error[0] == '\0')
						snprintf(error, errlen, "looking up the streams of \"%s\": %s",
								 route->subject, why);
					break;
				}
				if (found != route->route)
					ereport(LOG,
							(errmsg("cdviz dispatcher: sink \"%s\" publishes \"%s\" with %s",
									sink->name, route->subject,
									found == ROUTE_STREAM ? "JetStream (a stream takes it)"
									: "core NATS (no stream takes it)")));
				route->route = found;
				break;
			}
		}
		natsMsg_Destroy(msgs[i]);
	}
}

/* Ask the JetStream API which streams take the route's subject. */
static natsStatus
send_lookup(Sink *sink, NatsSinkState *st, natsConnection *nc, SubjectRoute *route)
{
	StringInfoData body;
	char		reply[sizeof(st->inbox) + 16];
	natsStatus	s;

	if (++st->next_id == 0)
		st->next_id = 1;
	snprintf(reply, sizeof(reply), "%s.L%u", st->inbox, st->next_id);
	initStringInfo(&body);
	appendStringInfoString(&body, "{\"subject\":\"");
	for (const char *p = route->subject; *p; p++)
	{
		if (*p == '"' || *p == '\\')
			appendStringInfoChar(&body, '\\');
		if ((unsigned char) *p >= 0x20)
			appendStringInfoChar(&body, *p);
	}
	appendStringInfoString(&body, "\"}");
	s = natsConnection_PublishRequestString(nc, "$JS.API.STREAM.NAMES", reply, body.data);
	pfree(body.data);
	if (s == NATS_OK)
	{
		route->lookup = st->next_id;
		route->lookup_deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
															 sink->timeout_ms);
	}
	return s;
}

/* A JetStream publish found no stream: look its subjects up again. */
static void
forget_chunk_routes(Sink *sink, NatsSinkState *st)
{
	DispatchChunk *chunk = sink->chunk;

	for (int i = chunk->next; i < st->end && i < chunk->nevents; i++)
	{
		char	   *subj = subject_of(sink->target, &chunk->events[i]);
		SubjectRoute *route = route_of(st, subj);

		route->route = ROUTE_UNKNOWN;
		pfree(subj);
	}
}

/* Is what is in flight settled?  Settle it, or fail the attempt. */
static void
check_in_flight(Sink *sink, NatsSinkState *st)
{
	uint32		acked = pg_atomic_read_u32(&st->acked);

	if (acked >= st->expected && (st->marker == 0 || st->marker_back))
	{
		st->in_flight = false;
		if (pg_atomic_read_u32(&st->failed) > 0)
		{
			if (pg_atomic_read_u32(&st->no_responders) > 0 && sink->jetstream == 2)
				forget_chunk_routes(sink, st);
			dispatch_sink_failed(sink, "JetStream refused %u of %u messages: %s",
								 pg_atomic_read_u32(&st->failed), st->expected, st->error);
		}
		else if (st->marker != 0 && dispatch_nats_reconnects() != st->reconnects)
			dispatch_sink_failed(sink, "the connection to NATS was re-established before the server confirmed the messages");
		else
		{
			dispatch_chunk_settle(sink, st->end, 0, NULL);
			dispatch_sink_progressed(sink);
		}
		st->marker = 0;
	}
	else if (GetCurrentTimestamp() >= st->deadline)
	{
		bool		marker_missing = st->marker != 0 && !st->marker_back;

		nats_cancel(sink);
		if (acked < st->expected)
			dispatch_sink_failed(sink, "JetStream acknowledged %u of %u messages within %d ms",
								 acked, st->expected, sink->timeout_ms);
		else if (marker_missing)
			dispatch_sink_failed(sink, "the NATS server did not confirm the messages within %d ms",
								 sink->timeout_ms);
	}
}

/*
 * With jetstream = auto: the route of every event of the chunk in routes[],
 * looking up what is unknown or due.  False while an answer is awaited.
 */
static bool
routes_known(Sink *sink, NatsSinkState *st, natsConnection *nc, SubjectRoute **routes)
{
	DispatchChunk *chunk = sink->chunk;
	TimestampTz now = GetCurrentTimestamp();
	bool		known = true;

	for (int i = chunk->next; i < chunk->nevents; i++)
	{
		char	   *subj = subject_of(sink->target, &chunk->events[i]);
		SubjectRoute *route = route_of(st, subj);

		pfree(subj);
		routes[i - chunk->next] = route;
		if (route->lookup != 0 && now >= route->lookup_deadline)
		{
			route->lookup = 0;
			if (route->route == ROUTE_UNKNOWN)
			{
				dispatch_sink_failed(sink, "the JetStream API did not answer within %d ms which streams take \"%s\"",
									 sink->timeout_ms, route->subject);
				return false;
			}
			/* the old answer serves until the next period */
			route->checked_at = now;
		}
		if (route->lookup == 0 &&
			(route->route == ROUTE_UNKNOWN ||
			 TimestampDifferenceExceeds(route->checked_at, now,
										cdviz_nats_stream_check_interval * 1000)))
		{
			natsStatus	s = send_lookup(sink, st, nc, route);

			if (s != NATS_OK)
			{
				dispatch_sink_failed(sink, "looking up the streams of \"%s\": %s",
									 route->subject, natsStatus_GetText(s));
				return false;
			}
		}
		if (route->route == ROUTE_UNKNOWN)
			known = false;
	}
	return known;
}

/* Start publishing the chunk, or see whether what is in flight is done. */
static void
nats_start(Sink *sink)
{
	DispatchChunk *chunk = sink->chunk;
	natsConnection *nc = dispatch_nats_connection();
	NatsSinkState *st;
	SubjectRoute **routes = NULL;
	char		error[512];
	bool		any_core = false;

	if (nc == NULL)
	{
		dispatch_sink_failed(sink, "no NATS connection to \"%s\"", cdviz_nats_url);
		return;
	}
	st = state_of(sink, nc);
	error[0] = '\0';
	read_inbox(sink, st, error, sizeof(error));
	if (st->in_flight)
	{
		check_in_flight(sink, st);
		return;
	}
	if (error[0] != '\0')
	{
		/* a subject's look-up failed: try again after the backoff */
		dispatch_sink_failed(sink, "%s", error);
		return;
	}
	if (!dispatch_nats_connected())
	{
		dispatch_sink_failed(sink, "not connected to NATS at \"%s\"", cdviz_nats_url);
		return;
	}
	if (st->js == NULL || st->inbox_sub == NULL)
	{
		dispatch_sink_failed(sink, "no JetStream context or inbox subscription");
		return;
	}
	if (chunk->next >= chunk->nevents)
	{
		dispatch_sink_progressed(sink);
		return;
	}
	if (sink->jetstream == 2)
	{
		routes = palloc(sizeof(SubjectRoute *) * (chunk->nevents - chunk->next));
		if (!routes_known(sink, st, nc, routes))
		{
			/* the loop comes back when the answers are in (or every 250 ms) */
			pfree(routes);
			return;
		}
	}

	/* the chunk, in order: JetStream asynchronously, core then a marker */
	st->end = chunk->nevents;
	st->expected = 0;
	for (int i = chunk->next; i < chunk->nevents; i++)
	{
		if (sink->jetstream == 1 || (routes && routes[i - chunk->next]->route == ROUTE_STREAM))
			st->expected++;
		else
			any_core = true;
	}
	pg_atomic_write_u32(&st->acked, 0);
	pg_atomic_write_u32(&st->failed, 0);
	pg_atomic_write_u32(&st->no_responders, 0);
	st->error[0] = '\0';
	st->marker = 0;
	st->marker_back = false;
	st->reconnects = dispatch_nats_reconnects();
	st->deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), sink->timeout_ms);
	st->in_flight = true;
	for (int i = chunk->next; i < chunk->nevents; i++)
	{
		natsMsg    *msg = NULL;
		natsStatus	s;
		bool		stream = sink->jetstream == 1 ||
			(routes && routes[i - chunk->next]->route == ROUTE_STREAM);

		s = make_msg(sink, &chunk->events[i], &msg);
		if (s == NATS_OK && stream)
		{
			jsPubOptions po;

			jsPubOptions_Init(&po);
			po.MaxWait = sink->timeout_ms;
			s = js_PublishMsgAsync(st->js, &msg, &po);
			if (s == NATS_OK)
				st->js_async = true;
		}
		else if (s == NATS_OK)
			s = natsConnection_PublishMsg(nc, msg);
		natsMsg_Destroy(msg);
		if (s != NATS_OK)
		{
			nats_cancel(sink);
			dispatch_sink_failed(sink, "%s publish to \"%s\": %s", stream ? "JetStream" : "NATS",
								 sink->target, natsStatus_GetText(s));
			if (routes)
				pfree(routes);
			return;
		}
	}
	if (any_core)
	{
		char		subj[sizeof(st->inbox) + 16];
		natsStatus	s;

		if (++st->next_id == 0)
			st->next_id = 1;
		snprintf(subj, sizeof(subj), "%s.F%u", st->inbox, st->next_id);
		s = natsConnection_Publish(nc, subj, NULL, 0);
		if (s != NATS_OK)
		{
			nats_cancel(sink);
			dispatch_sink_failed(sink, "NATS publish to \"%s\": %s", subj, natsStatus_GetText(s));
		}
		else
			st->marker = st->next_id;
	}
	if (routes)
		pfree(routes);
}

/* A chunk in flight is looked at every 250 ms, so that its deadline is seen. */
const SinkMethods sink_nats_methods = {
	.kind = "nats",
	.start = nats_start,
	.cancel = nats_cancel,
	.close = nats_close,
	.recheck_ms = 250,
};
