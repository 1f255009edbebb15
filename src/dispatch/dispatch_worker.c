/*
 * dispatch_worker.c
 *	  The cdviz dispatcher worker: its settings, its registration and the
 *	  loop that reads chunks of stored events, hands them to the sinks and
 *	  records what was delivered.
 *
 * One process serves every sink.  Nothing in the loop waits for a sink:
 * HTTP requests progress through libcurl's multi interface on sockets the
 * loop's WaitEventSet watches, NATS acknowledgements arrive on libnats
 * threads that only count and write a byte to a pipe the loop also
 * watches, and a failing sink is retried after its own backoff while the
 * others go on.  Each sink holds one chunk at a time; reading chunks and
 * recording progress are short transactions of this process, apart from
 * the transactions of the writers, which never wait for the dispatcher.
 */
#include "postgres.h"


#include "access/xact.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/latch.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/wait_event.h"

#include "dispatch/dispatch.h"
#include "dispatch/dispatch_worker.h"
#include "common/subxact.h"
#include "common/worker.h"

/* Seconds between prunings of the outbox. */
#define PRUNE_SECONDS 10

PGDLLEXPORT void cdviz_dispatch_main(Datum arg);

static List *sinks = NIL;

/* Define the settings and register the worker (from _PG_init, preloaded). */
void
cdviz_dispatch_init(void)
{
	dispatch_define_settings();
	cdviz_worker_register("cdviz dispatcher", "cdviz dispatcher", "cdviz_dispatch_main",
						  CDVIZ_WORKER_RETRY_SECONDS);
}

/* ------------------------------------------------------------------ */
/* transactions                                                        */
/* ------------------------------------------------------------------ */

static void
write_tx(void *arg)
{
	dispatch_store_write(sinks);
}

/*
 * Fetch one sink's chunk in a subtransaction: a sink whose predicate
 * fails (a column dropped, a division by zero) backs off alone.
 */
static void
fetch_chunk(void *arg)
{
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	dispatch_store_fetch((Sink *) arg);
	SPI_finish();
}

static void
fetch_one(Sink *sink)
{
	ErrorData  *edata = cdviz_subxact(fetch_chunk, sink, NULL);

	if (edata == NULL)
		return;
	if (sink->chunk)
	{
		MemoryContextDelete(sink->chunk->cxt);
		sink->chunk = NULL;
	}
	dispatch_sink_failed(sink, "reading events: %s", edata->message);
	FreeErrorData(edata);
}

static void
sync_tx(void *arg)
{
	TimestampTz now = GetCurrentTimestamp();
	bool		timed = *(bool *) arg;
	ListCell   *lc;

	dispatch_sinks_sync(&sinks);
	foreach(lc, sinks)
	{
		Sink	   *sink = lfirst(lc);

		if (sink->paused || sink->chunk || sink->retry_at > now)
			continue;
		if (sink->more || timed)
			fetch_one(sink);
	}
}

static void
prune_tx(void *arg)
{
	(void) dispatch_store_prune();
}

static void
forget_sinks(void)
{
	ListCell   *lc;

	foreach(lc, sinks)
		dispatch_sink_free(lfirst(lc));
	list_free(sinks);
	sinks = NIL;
}

/* ------------------------------------------------------------------ */
/* the loop                                                            */
/* ------------------------------------------------------------------ */

/* Hand every sink that holds events to its kind's delivery. */
static void
deliver(TimestampTz now)
{
	ListCell   *lc;

	foreach(lc, sinks)
	{
		Sink	   *sink = lfirst(lc);

		if (sink->chunk == NULL || sink->paused)
			continue;
		if (dispatch_store_absorb_empty(sink))
		{
			dispatch_progressed |= sink->more;
			continue;
		}
		if (dispatch_chunk_settled(sink) || sink->retry_at > now)
			continue;
		sink->methods->start(sink);
	}
}

/* Milliseconds until something is due without any event. */
static long
next_timeout(TimestampTz now, TimestampTz next_sync)
{
	long		t = (long) Max(0, (next_sync - now) / 1000);
	ListCell   *lc;

	for (int k = 0; k < dispatch_nsink_kinds; k++)
	{
		const SinkMethods *m = dispatch_sink_kinds[k];
		long		c = m->timer_ms ? m->timer_ms() : -1;

		if (c >= 0)
			t = Min(t, c);
	}
	foreach(lc, sinks)
	{
		Sink	   *sink = lfirst(lc);

		if (sink->chunk && sink->retry_at > now)
			t = Min(t, (long) ((sink->retry_at - now) / 1000) + 1);
		/* a chunk in flight must notice its deadline */
		if (sink->chunk && sink->methods->recheck_ms > 0)
			t = Min(t, sink->methods->recheck_ms);
	}
	return t;
}

/*
 * The latch, the wake-up pipe and the sockets of every kind of sink; each
 * socket's event carries the methods of its kind, which handle it.
 */
static WaitEventSet *
build_wait_set(WaitEventSet *old)
{
	WaitEventSet *set;
	int			fds[256];
	int			evs[256];
	const SinkMethods *owner[256];
	int			n = 0;

	dispatch_sockets_changed = false;
	for (int k = 0; k < dispatch_nsink_kinds; k++)
	{
		const SinkMethods *m = dispatch_sink_kinds[k];
		int			got = m->sockets ? m->sockets(fds + n, evs + n, lengthof(fds) - n) : 0;

		for (int i = n; i < n + got; i++)
			owner[i] = m;
		n += got;
	}
	if (old)
		FreeWaitEventSet(old);
	set = CreateWaitEventSet(TopMemoryContext, 3 + n);
	AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(set, WL_SOCKET_READABLE, dispatch_wake_fd(), NULL, NULL);
	for (int i = 0; i < n; i++)
		AddWaitEventToSet(set, evs[i], fds[i], NULL, (void *) owner[i]);
	return set;
}

/* Entry point of the worker. */
void
cdviz_dispatch_main(Datum arg)
{
	WaitEventSet *set = NULL;
	TimestampTz next_sync = 0;
	TimestampTz next_prune = 0;
	MemoryContext loopcxt;

	cdviz_worker_connect("dispatching");

	/*
	 * What an iteration allocates outside its transactions (error copies
	 * from cdviz_worker_transaction(), NATS subjects and route arrays, the
	 * NATS source's batch context) lives in this context, reset at the top
	 * of every iteration.  What outlives an iteration (the sinks, their
	 * chunks and delivery states, the wait event set) is allocated in
	 * TopMemoryContext or in the sink's and the chunk's own contexts.
	 */
	loopcxt = AllocSetContextCreate(TopMemoryContext, "cdviz dispatcher loop",
									ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(loopcxt);
	dispatch_wake_open();
	for (int k = 0; k < dispatch_nsink_kinds; k++)
	{
		if (dispatch_sink_kinds[k]->init)
			dispatch_sink_kinds[k]->init();
	}

	for (;;)
	{
		WaitEvent	events[64];
		TimestampTz now;
		int			n;

		MemoryContextReset(loopcxt);
		if (cdviz_worker_process_interrupts())
		{
			/* new NATS settings: reconnect */
			dispatch_nats_close();
			next_sync = 0;
		}
		dispatch_progressed = false;
		now = GetCurrentTimestamp();

		/* 1. what was settled is recorded, then the sinks move on */
		{
			ListCell   *lc;
			bool		any = false;

			foreach(lc, sinks)
			{
				Sink	   *sink = lfirst(lc);

				any |= dispatch_chunk_settled(sink) || sink->failures > 0 || sink->pos_dirty;
			}
			if (any && cdviz_worker_transaction("recording deliveries", write_tx, NULL, NULL)
				== CDVIZ_TX_DONE)
				dispatch_store_written();
		}

		/* 2. new events for the sinks that are ready for them */
		{
			ListCell   *lc;
			bool		timed = now >= next_sync;
			bool		wanted = timed;
			CdvizTxResult res;

			foreach(lc, sinks)
			{
				Sink	   *sink = lfirst(lc);

				wanted |= !sink->paused && sink->chunk == NULL && sink->more &&
					sink->retry_at <= now;
			}
			if (wanted)
			{
				res = cdviz_worker_transaction("reading events", sync_tx, &timed, NULL);
				if (res == CDVIZ_TX_NO_EXTENSION)
				{
					forget_sinks();
					dispatch_nats_close();
					(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
									 CDVIZ_WORKER_RETRY_SECONDS * 1000L, PG_WAIT_EXTENSION);
					ResetLatch(MyLatch);
					continue;
				}
				if (timed)
					next_sync = TimestampTzPlusMilliseconds(now, cdviz_dispatch_interval);
			}
		}

		/* 3. deliveries, housekeeping */
		deliver(now);
		if (now >= next_prune)
		{
			(void) cdviz_worker_transaction("pruning the outbox", prune_tx, NULL, NULL);
			next_prune = TimestampTzPlusMilliseconds(now, PRUNE_SECONDS * 1000);
		}
		if (dispatch_progressed)
			continue;
		{
			ListCell   *lc;
			bool		busy = false;

			foreach(lc, sinks)
			{
				Sink	   *sink = lfirst(lc);

				busy |= dispatch_chunk_settled(sink) ||
					(!sink->paused && sink->chunk == NULL && sink->more && sink->retry_at <= now);
			}
			if (busy)
				continue;
		}

		/* 4. wait for sockets, acknowledgements, the latch or a timer */
		if (set == NULL || dispatch_sockets_changed)
			set = build_wait_set(set);
		n = WaitEventSetWait(set, next_timeout(now, next_sync), events, lengthof(events),
							 PG_WAIT_EXTENSION);
		for (int i = 0; i < n; i++)
		{
			if (events[i].events & WL_LATCH_SET)
				ResetLatch(MyLatch);
			else if (events[i].fd == dispatch_wake_fd())
				dispatch_wake_drain();
			else if (events[i].events & (WL_SOCKET_READABLE | WL_SOCKET_WRITEABLE))
			{
				const SinkMethods *m = events[i].user_data;

				m->socket_ready(events[i].fd, events[i].events);
			}
		}
		for (int k = 0; k < dispatch_nsink_kinds; k++)
		{
			if (dispatch_sink_kinds[k]->timer)
				dispatch_sink_kinds[k]->timer();
		}
	}
}
