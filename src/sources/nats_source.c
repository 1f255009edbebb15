/*
 * nats_source.c
 *	  The nats kind: messages of a source's subjects stored through the
 *	  same envelope and store path as HTTP requests, in the source's own
 *	  worker on its own connection (src/dispatch/nats_conn.c).
 *
 * With the option stream set, each subject is read through a durable
 * JetStream push consumer (the option consumer, suffixed with the
 * subject's place in the list when there are several) and a message is
 * acknowledged only after the transaction that stored its events
 * committed.  A crash before the acknowledgement makes JetStream deliver
 * it again, and the lake's dedup keeps one copy.  Without a stream, a
 * plain subscription takes what arrives while the worker runs.
 *
 * A message is read like an HTTP request body: its headers content-type
 * and ce-* choose the CloudEvents mode (binary, structured, batch) or a
 * plain CDEvent / JSON array.  What is not an event goes to
 * cdviz.rejected_events with origin 'nats' and origin_ref
 * "<subject>#<stream sequence>".
 *
 * Reading never waits: the server pushes messages into the subscription's
 * queue (libnats' reader thread does that), and the loop takes what is
 * queued, coming back every 100 ms while the source is idle.  (A pull
 * consumer would not do: libnats 3.4 fetches block, and a fetch cut short
 * drops the messages that arrive late until their ack wait expires.)
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "common/worker.h"
#include "core/envelope.h"
#include "dispatch/dispatch.h"
#include "sources/kinds.h"
#include "store/store_messages.h"

/* Messages read per subscription per turn; one transaction stores them. */
#define FETCH_BATCH 500

#define MAX_SUBS 16
static natsSubscription *subs[MAX_SUBS];
static int	nsubs = 0;
static bool subscribed = false;
static int	sub_generation = 0;
static TimestampTz retry_at = 0;

/* The source this worker reads: subjects, stream ("" for none), consumer. */
static const CdvizSource *source;
static const char *nats_subjects;
static const char *nats_stream;
static const char *nats_consumer;

/* Between two empty looks, the source waits this long. */
#define IDLE_POLL_MS 100

static void
close_subscriptions(void)
{
	for (int i = 0; i < nsubs; i++)
	{
		/* unsubscribing would delete nothing: durable consumers stay */
		natsSubscription_Destroy(subs[i]);
	}
	nsubs = 0;
	subscribed = false;
}

static bool
subscribe(natsConnection *nc)
{
	char	   *list = pstrdup(nats_subjects);
	char	   *save = NULL;
	int			count = 0;
	jsCtx	   *js = NULL;
	sigset_t	saved;
	bool		ok = true;

	for (char *t = strtok_r(list, ", ", &save); t; t = strtok_r(NULL, ", ", &save))
		count++;
	pfree(list);
	list = pstrdup(nats_subjects);
	save = NULL;

	dispatch_nats_block_signals(&saved);
	if (nats_stream[0] != '\0' && natsConnection_JetStream(&js, nc, NULL) != NATS_OK)
		js = NULL;
	for (char *t = strtok_r(list, ", ", &save); t && nsubs < MAX_SUBS && ok;
		 t = strtok_r(NULL, ", ", &save))
	{
		natsStatus	s;
		jsErrCode	jerr = 0;

		if (nats_stream[0] != '\0')
		{
			jsSubOptions so;
			char	   *durable = count > 1 ? psprintf("%s_%d", nats_consumer, nsubs + 1)
				: pstrdup(nats_consumer);

			jsSubOptions_Init(&so);
			so.Stream = nats_stream;
			so.ManualAck = true;
			so.Config.Durable = durable;
			so.Config.AckPolicy = js_AckExplicit;
			so.Config.AckWait = (int64_t) 30 * 1000 * 1000 * 1000;
			so.Config.MaxAckPending = 10000;
			s = js ? js_SubscribeSync(&subs[nsubs], js, t, NULL, &so, &jerr) : NATS_ERR;
			pfree(durable);
		}
		else
			s = natsConnection_SubscribeSync(&subs[nsubs], nc, t);
		if (s == NATS_OK)
		{
			natsSubscription_SetPendingLimits(subs[nsubs], -1, -1);
			nsubs++;
		}
		else
		{
			ereport(LOG,
					(errmsg("cdviz source %s: could not subscribe to NATS subject \"%s\"%s%s: %s",
							source->name, t, nats_stream[0] ? " of stream " : "", nats_stream,
							natsStatus_GetText(s)),
					 errhint("Check the source's subjects and stream; the worker tries again in %d seconds.",
							 CDVIZ_WORKER_RETRY_SECONDS)));
			ok = false;
		}
	}
	if (js)
		jsCtx_Destroy(js);
	dispatch_nats_restore_signals(&saved);
	pfree(list);
	if (!ok)
		close_subscriptions();
	else
		ereport(LOG,
				(errmsg("cdviz source %s: subscribed to \"%s\"%s%s",
						source->name, nats_subjects, nats_stream[0] ? " through stream " : "",
						nats_stream)));
	return ok;
}

/* A header of the message, as lowercase or as capitalized clients write it. */
static const char *
header(natsMsg *msg, const char *lower, const char *upper)
{
	const char *v = NULL;

	if (natsMsgHeader_Get(msg, lower, &v) == NATS_OK && v)
		return v;
	if (natsMsgHeader_Get(msg, upper, &v) == NATS_OK && v)
		return v;
	return NULL;
}

/* Store a batch of read messages, and count them, in one transaction. */
static void
store_batch(void *arg)
{
	CdvizMessageBatch *b = arg;
	CdvizStoreResult r = cdviz_messages_store(b, "nats");

	cdviz_source_count(source, r.stored, r.duplicates, r.rejected);
}

/* Read what waits, store it in one transaction, then acknowledge it. */
static int
read_and_store(natsSubscription *sub, bool jetstream)
{
	natsMsg    *msgs[FETCH_BATCH];
	int			nmsgs = 0;
	int			pending = 0;
	CdvizMessage *batch;
	CdvizMessageBatch b;
	MemoryContext cxt;
	MemoryContext old;
	CdvizTxResult res;

	natsSubscription_GetPending(sub, &pending, NULL);
	while (nmsgs < Min(pending, FETCH_BATCH) &&
		   natsSubscription_NextMsg(&msgs[nmsgs], sub, 1) == NATS_OK)
		nmsgs++;
	if (nmsgs == 0)
		return 0;

	cxt = AllocSetContextCreate(CurrentMemoryContext, "cdviz nats source", ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(cxt);
	batch = palloc0(sizeof(CdvizMessage) * nmsgs);
	for (int m = 0; m < nmsgs; m++)
	{
		CdvizEnvelopeInput *in = &batch[m].in;
		jsMsgMetaData *meta = NULL;

		in->content_type = header(msgs[m], "content-type", "Content-Type");
		in->ce_specversion = header(msgs[m], "ce-specversion", "Ce-Specversion");
		in->ce_id = header(msgs[m], "ce-id", "Ce-Id");
		in->ce_source = header(msgs[m], "ce-source", "Ce-Source");
		in->ce_type = header(msgs[m], "ce-type", "Ce-Type");
		in->body = natsMsg_GetData(msgs[m]) ? natsMsg_GetData(msgs[m]) : "";
		in->body_len = (size_t) natsMsg_GetDataLength(msgs[m]);
		if (jetstream && natsMsg_GetMetaData(&meta, msgs[m]) == NATS_OK)
		{
			batch[m].origin_ref = psprintf("%s#" UINT64_FORMAT, natsMsg_GetSubject(msgs[m]),
										   (uint64) meta->Sequence.Stream);
			jsMsgMetaData_Destroy(meta);
		}
		else
			batch[m].origin_ref = pstrdup(natsMsg_GetSubject(msgs[m]));
	}
	cdviz_messages_read(&b, batch, nmsgs);
	MemoryContextSwitchTo(old);

	res = cdviz_worker_transaction("storing NATS messages", store_batch, &b, NULL);
	/* acknowledged only once committed; otherwise JetStream sends it again */
	for (int m = 0; m < nmsgs; m++)
	{
		if (jetstream)
		{
			if (res == CDVIZ_TX_DONE)
				natsMsg_Ack(msgs[m], NULL);
			else
				natsMsg_Nak(msgs[m], NULL);
		}
	}
	cdviz_messages_release(&b);
	for (int m = 0; m < nmsgs; m++)
		natsMsg_Destroy(msgs[m]);
	MemoryContextDelete(cxt);
	return nmsgs;
}

/*
 * One turn of the source: subscribe when needed, store what waits.
 * Returns the messages read (0: idle).
 */
static int
read_turn(void)
{
	natsConnection *nc;
	TimestampTz now = GetCurrentTimestamp();
	int			got = 0;

	if (subscribed && sub_generation != dispatch_nats_generation)
		close_subscriptions();
	if (!subscribed)
	{
		if (now < retry_at)
			return 0;
		nc = dispatch_nats_connection();
		if (nc == NULL || !dispatch_nats_connected() || !subscribe(nc))
		{
			retry_at = TimestampTzPlusMilliseconds(now, CDVIZ_WORKER_RETRY_SECONDS * 1000);
			cdviz_source_note_poll(source, psprintf("not subscribed to \"%s\" on NATS (the log says why); trying again",
													nats_subjects));
			return 0;
		}
		subscribed = true;
		sub_generation = dispatch_nats_generation;
		cdviz_source_note_poll(source, NULL);
	}
	if (!dispatch_nats_connected())
		return 0;
	for (int i = 0; i < nsubs; i++)
		got += read_and_store(subs[i], nats_stream[0] != '\0');
	return got;
}

/* See kinds.h. */
void
cdviz_nats_source_run(const CdvizSource *src)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "cdviz source nats",
											  ALLOCSET_DEFAULT_SIZES);

	source = src;
	nats_subjects = src->location;
	nats_stream = cdviz_source_opt_text(src, "stream", "");
	nats_consumer = cdviz_source_opt_text(src, "consumer", psprintf("cdviz-%s", src->name));
	dispatch_nats_set_url(cdviz_source_opt_text(src, "url", ""));

	while (!cdviz_worker_wait_for_extension())
		(void) cdviz_source_stopping();
	while (!cdviz_source_stopping())
	{
		MemoryContext old = MemoryContextSwitchTo(cxt);
		int			got = read_turn();

		MemoryContextSwitchTo(old);
		MemoryContextReset(cxt);
		/* a busy source is read again at once, an idle one every 100 ms */
		if (got == 0)
		{
			pgstat_report_activity(STATE_IDLE, NULL);
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 IDLE_POLL_MS, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
	}
	close_subscriptions();
	dispatch_nats_close();
}
