/*
 * wake.h
 *	  Waking a cdviz worker when a transaction that gave it work commits.
 *
 * A worker with nothing to do sleeps on its latch.  A transaction that
 * queues work for it (lake rows for the dispatcher, queued summaries for
 * the summaries worker, a changed source for the sources launcher) asks for a wake-up; when it commits, a flag is set
 * in shared memory and the worker's latch too.  The worker tests and clears
 * the flag, not the latch: a latch is also set by signals that are none of
 * its business, and reset by waits inside its own transactions (lock
 * waits, synchronous replication), which would lose a wake-up.
 */
#ifndef CDVIZ_COMMON_WAKE_H
#define CDVIZ_COMMON_WAKE_H

typedef enum CdvizWakeTarget
{
	CDVIZ_WAKE_SUMMARIES,
	CDVIZ_WAKE_DISPATCHER,
	CDVIZ_WAKE_SOURCES,			/* the sources launcher: cdviz.sources changed */
	CDVIZ_WAKE_TARGETS
} CdvizWakeTarget;

/* From _PG_init while preloading: ask for the shared memory. */
extern void cdviz_wake_init(void);

/* In the worker: publish its latch, withdrawn when it exits. */
extern void cdviz_wake_register(CdvizWakeTarget target);

/*
 * Wake target's worker when the current transaction commits (nothing on
 * abort).  A no-op where the library is not preloaded: no worker runs.
 */
extern void cdviz_wake_at_commit(CdvizWakeTarget target);

/* In the worker: whether a wake-up came since the last call; clears it. */
extern bool cdviz_wake_take(CdvizWakeTarget target);

#endif							/* CDVIZ_COMMON_WAKE_H */
