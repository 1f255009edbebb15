/*
 * nats_kind.c
 *	  The nats kind: one NATS source read by the NATS source reader
 *	  (src/dispatch/nats_source.c) in the source's own worker, on its own
 *	  connection.
 *
 * As the poller's readers, the NATS reader takes its settings from the
 * cdviz.nats_* variables of its process, set here to the source's
 * location and options at the highest priority.  A durable consumer per
 * subject keeps the progress in JetStream (see nats_source.c).
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/wait_event.h"

#include "common/worker.h"
#include "dispatch/dispatch.h"
#include "sources/kinds.h"

/* The reader takes what is queued, and looks again this often when idle. */
#define NATS_IDLE_MS 100

/* See kinds.h. */
void
cdviz_nats_source_run(const CdvizSource *src)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "cdviz source nats",
											  ALLOCSET_DEFAULT_SIZES);

	SetConfigOption("cdviz.nats_url", cdviz_source_opt_text(src, "url", ""),
					PGC_SIGHUP, PGC_S_OVERRIDE);
	SetConfigOption("cdviz.nats_subjects", src->location, PGC_SIGHUP, PGC_S_OVERRIDE);
	SetConfigOption("cdviz.nats_stream", cdviz_source_opt_text(src, "stream", ""),
					PGC_SIGHUP, PGC_S_OVERRIDE);
	SetConfigOption("cdviz.nats_consumer",
					cdviz_source_opt_text(src, "consumer", psprintf("cdviz-%s", src->name)),
					PGC_SIGHUP, PGC_S_OVERRIDE);

	while (!cdviz_worker_wait_for_extension())
		(void) cdviz_source_stopping();
	while (!cdviz_source_stopping())
	{
		MemoryContext old = MemoryContextSwitchTo(cxt);

		nats_source_poll();
		MemoryContextSwitchTo(old);
		MemoryContextReset(cxt);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 NATS_IDLE_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
	nats_source_close();
	dispatch_nats_close();
}
