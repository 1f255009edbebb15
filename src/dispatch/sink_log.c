/*
 * sink_log.c
 *	  Log sink: one JSON line per event in the server log, what a
 *	  container's stdout or journald shows.
 *
 * The message itself is the JSON object {"sink", "id", "event"}, so a
 * log shipper that reads the message field gets a parsable document.
 */
#include "postgres.h"

#include "dispatch/dispatch.h"

static void
log_start(Sink *sink)
{
	DispatchChunk *chunk = sink->chunk;

	if (chunk == NULL)
		return;
	for (int i = chunk->next; i < chunk->nevents; i++)
	{
		const DispatchEvent *ev = &chunk->events[i];

		/* sink names are [A-Za-z0-9_.-]: nothing to escape */
		ereport(LOG,
				(errmsg_internal("{\"sink\":\"%s\",\"id\":" INT64_FORMAT ",\"event\":%s}",
								 sink->name, ev->id, ev->payload),
				 errhidestmt(true), errhidecontext(true)));
	}
	dispatch_chunk_settle(sink, chunk->nevents, 0, NULL);
}

const SinkMethods sink_log_methods = {
	.kind = "log",
	.start = log_start,
};
