/*
 * store_messages.h
 *	  Messages of a message source (Kafka, NATS) stored like HTTP request
 *	  bodies: each message's headers and body read by the envelope
 *	  (src/core/envelope.h), the events validated, deduplicated and stored
 *	  in one transaction for a batch of messages, and what is not an event
 *	  kept in cdviz.rejected_events with the message's reference.
 *
 *		CdvizMessageBatch b;
 *
 *		cdviz_messages_read(&b, msgs, n);			-- outside the transaction
 *		r = cdviz_messages_store(&b, "kafka");		-- inside it
 *		cdviz_messages_release(&b);					-- after it, either way
 */
#ifndef CDVIZ_STORE_MESSAGES_H
#define CDVIZ_STORE_MESSAGES_H

#include "core/envelope.h"
#include "store/store.h"

/* One message: what its transport carried, and where it came from. */
typedef struct CdvizMessage
{
	CdvizEnvelopeInput in;		/* headers and body (NUL-terminated) */
	const char *origin_ref;		/* e.g. topic/partition@offset */
} CdvizMessage;

/* A batch of messages read into events; private but for the counts. */
typedef struct CdvizMessageBatch
{
	CdvizMessage *msgs;
	int			nmsgs;
	CdvizEnvelope *envs;		/* one per message */
	char	  **envelopes;		/* per message: JSON of the envelope column of
								 * its dead letters, or NULL */
	CdvizItem  *items;			/* the events the envelopes accepted */
	int			nitems;
} CdvizMessageBatch;

/*
 * Read each message's envelope (in the current memory context); the
 * messages must outlive the batch.  Raises out of memory.
 */
extern void cdviz_messages_read(CdvizMessageBatch *b, CdvizMessage *msgs, int nmsgs);

/*
 * In the current transaction: store the events, keep as dead letters the
 * messages and elements the envelope refused.  The result's rejected
 * counts both kinds of dead letters.
 */
extern CdvizStoreResult cdviz_messages_store(CdvizMessageBatch *b, const char *origin);

/* Release what the envelopes and the store hold (not the memory context's). */
extern void cdviz_messages_release(CdvizMessageBatch *b);

#endif							/* CDVIZ_STORE_MESSAGES_H */
