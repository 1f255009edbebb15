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
 * On JetStream a chunk is published asynchronously and counts as
 * delivered when every message was acknowledged by the stream; the
 * acknowledgements arrive on a libnats thread, which counts them and
 * wakes the loop through dispatch_wake().  A chunk that is not fully
 * acknowledged within the sink's timeout is published again after the
 * backoff: the stream drops what it already has by Nats-Msg-Id.
 * With jetstream = auto, a subject no stream listens to ("no responders")
 * is published with core NATS instead and counts as delivered once the
 * server has it (a flush round trip); that is checked again every minute.
 */
#include "postgres.h"

#include "port/atomics.h"
#include "utils/memutils.h"

#include "dispatch/dispatch.h"

/* Seconds before a subject found without a stream is tried on JetStream again. */
#define CORE_RECHECK_SECONDS 60

struct NatsSinkState
{
	jsCtx	   *js;
	int			generation;		/* of the connection js belongs to */
	bool		in_flight;
	int			end;			/* events [chunk->next, end) in flight */
	uint32		expected;
	pg_atomic_uint32 acked;
	pg_atomic_uint32 failed;
	char		error[256];		/* first failure, written by its counter's winner */
	TimestampTz deadline;
	bool		core;			/* no stream: core NATS */
	TimestampTz core_since;
};

/* libnats thread: count, remember the first error, wake the loop at the end. */
static void
ack_handler(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
	NatsSinkState *st = closure;

	if (pae != NULL && pg_atomic_fetch_add_u32(&st->failed, 1) == 0)
		snprintf(st->error, sizeof(st->error), "%s",
				 pae->ErrText ? pae->ErrText : natsStatus_GetText(pae->Err));
	if (pg_atomic_add_fetch_u32(&st->acked, 1) >= st->expected)
		dispatch_wake();
	natsMsg_Destroy(msg);
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
void
sink_nats_cancel(Sink *sink)
{
	NatsSinkState *st = sink->nats;

	if (st == NULL || !st->in_flight)
		return;
	if (st->js && st->generation == dispatch_nats_generation)
	{
		natsMsgList pending;

		/* taken back, they get no acknowledgement callback any more */
		if (js_PublishAsyncGetPendingList(&pending, st->js) == NATS_OK)
			natsMsgList_Destroy(&pending);
	}
	st->in_flight = false;
}

static NatsSinkState *
state_of(Sink *sink, natsConnection *nc)
{
	NatsSinkState *st = sink->nats;

	if (st == NULL)
	{
		st = MemoryContextAllocZero(TopMemoryContext, sizeof(NatsSinkState));
		pg_atomic_init_u32(&st->acked, 0);
		pg_atomic_init_u32(&st->failed, 0);
		sink->nats = st;
	}
	if (st->js && st->generation != dispatch_nats_generation)
	{
		/* its connection is gone: so are its pending messages */
		jsCtx_Destroy(st->js);
		st->js = NULL;
		st->in_flight = false;
	}
	if (st->js == NULL)
	{
		jsOptions	o;
		sigset_t	saved;

		jsOptions_Init(&o);
		o.PublishAsync.AckHandler = ack_handler;
		o.PublishAsync.AckHandlerClosure = st;
		o.PublishAsync.MaxPending = 100000;
		o.Wait = sink->timeout_ms;
		dispatch_nats_block_signals(&saved);
		if (natsConnection_JetStream(&st->js, nc, &o) != NATS_OK)
			st->js = NULL;
		dispatch_nats_restore_signals(&saved);
		st->generation = dispatch_nats_generation;
	}
	return st;
}

/* Core NATS: publish, then one flush round trip says the server has them. */
static void
publish_core(Sink *sink, NatsSinkState *st, natsConnection *nc)
{
	DispatchChunk *chunk = sink->chunk;
	natsStatus	s = NATS_OK;

	for (int i = chunk->next; i < chunk->nevents && s == NATS_OK; i++)
	{
		natsMsg    *msg = NULL;

		s = make_msg(sink, &chunk->events[i], &msg);
		if (s == NATS_OK)
			s = natsConnection_PublishMsg(nc, msg);
		natsMsg_Destroy(msg);
	}
	if (s == NATS_OK)
		s = natsConnection_FlushTimeout(nc, Min(sink->timeout_ms, 2000));
	if (s != NATS_OK)
	{
		dispatch_sink_failed(sink, "NATS publish to \"%s\": %s", sink->target,
							 natsStatus_GetText(s));
		return;
	}
	dispatch_chunk_settle(sink, chunk->nevents, 0, NULL);
	dispatch_sink_progressed(sink);
}

/*
 * With jetstream = auto: is there a stream for this subject?  One
 * synchronous publish of the chunk's first event answers, and counts.
 */
static bool
probe(Sink *sink, NatsSinkState *st)
{
	DispatchChunk *chunk = sink->chunk;
	natsMsg    *msg = NULL;
	jsPubAck   *ack = NULL;
	jsErrCode	jerr = 0;
	jsPubOptions po;
	natsStatus	s;

	jsPubOptions_Init(&po);
	po.MaxWait = sink->timeout_ms;
	s = make_msg(sink, &chunk->events[chunk->next], &msg);
	if (s == NATS_OK)
		s = js_PublishMsg(&ack, st->js, msg, &po, &jerr);
	natsMsg_Destroy(msg);
	jsPubAck_Destroy(ack);
	if (s == NATS_NO_RESPONDERS)
	{
		if (!st->core)
			ereport(LOG,
					(errmsg("cdviz dispatcher: no JetStream stream takes the subjects of sink \"%s\"; publishing with core NATS",
							sink->name)));
		st->core = true;
		st->core_since = GetCurrentTimestamp();
		return false;
	}
	st->core = false;
	if (s != NATS_OK)
	{
		dispatch_sink_failed(sink, "JetStream publish to \"%s\": %s", sink->target,
							 natsStatus_GetText(s));
		return false;
	}
	dispatch_chunk_settle(sink, chunk->next + 1, 0, NULL);
	return true;
}

/* Start publishing the chunk, or see whether what is in flight is done. */
void
sink_nats_start(Sink *sink)
{
	DispatchChunk *chunk = sink->chunk;
	natsConnection *nc = dispatch_nats_connection();
	NatsSinkState *st;

	if (nc == NULL)
	{
		dispatch_sink_failed(sink, "no NATS connection to \"%s\"", cdviz_nats_url);
		return;
	}
	st = state_of(sink, nc);
	if (st->in_flight)
	{
		uint32		acked = pg_atomic_read_u32(&st->acked);

		if (acked >= st->expected)
		{
			st->in_flight = false;
			if (pg_atomic_read_u32(&st->failed) > 0)
				dispatch_sink_failed(sink, "JetStream refused %u of %u messages: %s",
									 pg_atomic_read_u32(&st->failed), st->expected, st->error);
			else
			{
				dispatch_chunk_settle(sink, st->end, 0, NULL);
				dispatch_sink_progressed(sink);
			}
		}
		else if (GetCurrentTimestamp() >= st->deadline)
		{
			sink_nats_cancel(sink);
			dispatch_sink_failed(sink, "JetStream acknowledged %u of %u messages within %d ms",
								 acked, st->expected, sink->timeout_ms);
		}
		return;
	}
	if (!dispatch_nats_connected())
	{
		dispatch_sink_failed(sink, "not connected to NATS at \"%s\"", cdviz_nats_url);
		return;
	}
	if (st->js == NULL)
	{
		dispatch_sink_failed(sink, "no JetStream context");
		return;
	}
	if (sink->jetstream == 0 ||
		(sink->jetstream == 2 && st->core &&
		 !TimestampDifferenceExceeds(st->core_since, GetCurrentTimestamp(),
									 CORE_RECHECK_SECONDS * 1000)))
	{
		publish_core(sink, st, nc);
		return;
	}
	if (sink->jetstream == 2 && !probe(sink, st))
	{
		if (st->core)
			publish_core(sink, st, nc);
		return;
	}
	if (chunk->next >= chunk->nevents)
	{
		dispatch_sink_progressed(sink);
		return;
	}

	/* the rest of the chunk, asynchronously */
	st->end = chunk->nevents;
	st->expected = (uint32) (chunk->nevents - chunk->next);
	pg_atomic_write_u32(&st->acked, 0);
	pg_atomic_write_u32(&st->failed, 0);
	st->error[0] = '\0';
	st->deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), sink->timeout_ms);
	st->in_flight = true;
	for (int i = chunk->next; i < chunk->nevents; i++)
	{
		natsMsg    *msg = NULL;
		jsPubOptions po;
		natsStatus	s;

		jsPubOptions_Init(&po);
		po.MaxWait = sink->timeout_ms;
		s = make_msg(sink, &chunk->events[i], &msg);
		if (s == NATS_OK)
			s = js_PublishMsgAsync(st->js, &msg, &po);
		natsMsg_Destroy(msg);
		if (s != NATS_OK)
		{
			sink_nats_cancel(sink);
			dispatch_sink_failed(sink, "JetStream publish to \"%s\": %s", sink->target,
								 natsStatus_GetText(s));
			return;
		}
	}
}
