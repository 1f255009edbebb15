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

#include <fcntl.h>
#include <math.h>
#include <unistd.h>

#include "access/xact.h"
#include "common/pg_prng.h"
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

int			cdviz_dispatch_interval = 500;
int			cdviz_dispatch_chunk = 1000;
char	   *cdviz_nats_url = NULL;
char	   *cdviz_nats_subjects = NULL;
char	   *cdviz_nats_stream = NULL;
char	   *cdviz_nats_consumer = NULL;
int			cdviz_nats_stream_check_interval = 60;

/* Seconds between prunings of the outbox. */
#define PRUNE_SECONDS 10

PGDLLEXPORT void cdviz_dispatch_main(Datum arg);

static List *sinks = NIL;
static int	wake_pipe[2] = {-1, -1};
static bool progressed = false;

/* Define the settings and register the worker (from _PG_init, preloaded). */
void
cdviz_dispatch_init(void)
{
	cdviz_worker_define_gucs();
	DefineCustomIntVariable("cdviz.dispatch_interval",
							"Milliseconds between the dispatcher's looks for new events when idle.",
							"A busy dispatcher reads the next chunk as soon as one is delivered.  "
							"Reloaded on SIGHUP.",
							&cdviz_dispatch_interval, 500, 10, 60000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("cdviz.dispatch_chunk",
							"Events the dispatcher reads per sink at once.",
							"Progress is recorded once per chunk: larger chunks cost fewer "
							"transactions, and redeliver more after a crash.  Reloaded on SIGHUP.",
							&cdviz_dispatch_chunk, 1000, 1, 100000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("cdviz.nats_url",
							   "NATS server(s) of the nats sinks and the NATS source (comma-separated URLs).",
							   "May carry credentials (nats://user:password@host:4222), hence "
							   "superuser only.  Reloaded on SIGHUP.",
							   &cdviz_nats_url, "nats://127.0.0.1:4222",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	DefineCustomStringVariable("cdviz.nats_subjects",
							   "NATS subjects the dispatcher subscribes to and ingests (comma-separated, wildcards allowed); empty disables the NATS source.",
							   "Reloaded on SIGHUP.",
							   &cdviz_nats_subjects, "",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("cdviz.nats_stream",
							   "JetStream stream the NATS source reads with a durable consumer; empty: a plain subscription.",
							   "With a stream, a message is acknowledged only after the transaction "
							   "that stored it committed (at least once; dedup stores it once).  A "
							   "plain subscription loses what arrives while the worker is down.  "
							   "Reloaded on SIGHUP.",
							   &cdviz_nats_stream, "",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("cdviz.nats_consumer",
							   "Name of the durable JetStream consumer of the NATS source.",
							   "Reloaded on SIGHUP.",
							   &cdviz_nats_consumer, "cdviz",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);

	DefineCustomIntVariable("cdviz.nats_stream_check_interval",
							"Seconds after which a nats sink in jetstream = auto mode looks again which streams take a subject.",
							"The look-up is a JetStream API request answered in the background; "
							"until its answer the previous one is used.  Reloaded on SIGHUP.",
							&cdviz_nats_stream_check_interval, 60, 1, 86400,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);

	cdviz_worker_register("cdviz dispatcher", "cdviz dispatcher", "cdviz_dispatch_main",
						  CDVIZ_WORKER_RETRY_SECONDS);
}

/* Wake the loop; safe from libnats threads (a write(2), nothing else). */
void
dispatch_wake(void)
{
	char		c = 1;

	if (wake_pipe[1] >= 0)
		(void) !write(wake_pipe[1], &c, 1);
}

/*
 * A delivery attempt failed: retry the same events after an exponential
 * backoff with jitter (half to all of the step), so that a receiver
 * coming back is not hit by every sender at the same instant.
 */
void
dispatch_sink_failed(Sink *sink, const char *fmt,...)
{
	char		buf[1200];
	va_list		ap;
	double		step;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	sink->attempts++;
	sink->failures++;
	if (sink->last_error)
		free(sink->last_error);
	sink->last_error = strdup(buf);
	step = sink->initial_backoff_ms * pow(2.0, Min(sink->attempts - 1, 30));
	step = Min(step, (double) sink->max_backoff_ms);
	step *= 0.5 + 0.5 * pg_prng_double(&pg_global_prng_state);
	sink->retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), (int64) step);
	/* the first failure and then fewer and fewer lines */
	if ((sink->attempts & (sink->attempts - 1)) == 0)
		ereport(LOG,
				(errmsg("cdviz dispatcher: delivery to sink \"%s\" failed (attempt %d), retrying in %.1f s",
						sink->name, sink->attempts, step / 1000.0),
				 errdetail_internal("%s", buf)));
}

/* Part of a chunk was settled: send the next part at once. */
void
dispatch_sink_progressed(Sink *sink)
{
	progressed = true;
	if (sink->kind == SINK_HTTP && sink->chunk && sink->chunk->next < sink->chunk->nevents)
		sink_http_start(sink);
}

static bool
chunk_settled(Sink *sink)
{
	return sink->chunk && sink->chunk->next >= sink->chunk->nevents;
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

	dispatch_store_sync(&sinks);
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
			progressed |= sink->more;
			continue;
		}
		if (chunk_settled(sink) || sink->retry_at > now)
			continue;
		switch (sink->kind)
		{
			case SINK_HTTP:
				sink_http_start(sink);
				break;
			case SINK_LOG:
				sink_log_deliver(sink);
				break;
			case SINK_NATS:
				sink_nats_start(sink);
				break;
			case SINK_KAFKA:
				sink_kafka_start(sink);
				break;
		}
	}
}

/* Milliseconds until something is due without any event. */
static long
next_timeout(TimestampTz now, TimestampTz next_sync)
{
	long		t = (long) Max(0, (next_sync - now) / 1000);
	long		c = sink_http_timeout_ms();
	ListCell   *lc;

	if (c >= 0)
		t = Min(t, c);
	foreach(lc, sinks)
	{
		Sink	   *sink = lfirst(lc);

		if (sink->chunk && sink->retry_at > now)
			t = Min(t, (long) ((sink->retry_at - now) / 1000) + 1);
		/* a NATS or Kafka chunk in flight must notice its deadline */
		if ((sink->kind == SINK_NATS || sink->kind == SINK_KAFKA) && sink->chunk)
			t = Min(t, 250);
	}
	if (nats_source_active())
		t = Min(t, 100);
	return t;
}

static WaitEventSet *
build_wait_set(WaitEventSet *old)
{
	WaitEventSet *set;
	int			fds[256];
	int			evs[256];
	int			n = sink_http_sockets(fds, evs, lengthof(fds));

	if (old)
		FreeWaitEventSet(old);
	set = CreateWaitEventSet(TopMemoryContext, 3 + n);
	AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(set, WL_SOCKET_READABLE, wake_pipe[0], NULL, NULL);
	for (int i = 0; i < n; i++)
		AddWaitEventToSet(set, evs[i], fds[i], NULL, NULL);
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
	if (pipe(wake_pipe) != 0 ||
		fcntl(wake_pipe[0], F_SETFL, O_NONBLOCK) != 0 ||
		fcntl(wake_pipe[1], F_SETFL, O_NONBLOCK) != 0)
		ereport(ERROR, (errmsg("cdviz dispatcher: could not create a pipe: %m")));
	sink_http_init_multi();

	for (;;)
	{
		WaitEvent	events[64];
		TimestampTz now;
		int			n;

		MemoryContextReset(loopcxt);
		if (cdviz_worker_process_interrupts())
		{
			/* new NATS settings: reconnect and subscribe again */
			nats_source_close();
			dispatch_nats_close();
			next_sync = 0;
		}
		progressed = false;
		now = GetCurrentTimestamp();

		/* 1. what was settled is recorded, then the sinks move on */
		{
			ListCell   *lc;
			bool		any = false;

			foreach(lc, sinks)
			{
				Sink	   *sink = lfirst(lc);

				any |= chunk_settled(sink) || sink->failures > 0 || sink->pos_dirty;
			}
			if (any && cdviz_worker_transaction("recording deliveries", write_tx, NULL, NULL)
				== CDVIZ_TX_DONE)
				dispatch_store_written(sinks);
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
					nats_source_close();
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

		/* 3. deliveries, the NATS source, housekeeping */
		deliver(now);
		nats_source_poll();
		if (now >= next_prune)
		{
			(void) cdviz_worker_transaction("pruning the outbox", prune_tx, NULL, NULL);
			next_prune = TimestampTzPlusMilliseconds(now, PRUNE_SECONDS * 1000);
		}
		if (progressed)
			continue;
		{
			ListCell   *lc;
			bool		busy = false;

			foreach(lc, sinks)
			{
				Sink	   *sink = lfirst(lc);

				busy |= chunk_settled(sink) ||
					(!sink->paused && sink->chunk == NULL && sink->more && sink->retry_at <= now);
			}
			if (busy)
				continue;
		}

		/* 4. wait for sockets, acknowledgements, the latch or a timer */
		if (set == NULL || dispatch_curl_sockets_changed)
			set = build_wait_set(set);
		n = WaitEventSetWait(set, next_timeout(now, next_sync), events, lengthof(events),
							 PG_WAIT_EXTENSION);
		for (int i = 0; i < n; i++)
		{
			if (events[i].events & WL_LATCH_SET)
				ResetLatch(MyLatch);
			else if (events[i].fd == wake_pipe[0])
			{
				char		buf[256];

				while (read(wake_pipe[0], buf, sizeof(buf)) > 0)
					;
			}
			else if (events[i].events & (WL_SOCKET_READABLE | WL_SOCKET_WRITEABLE))
				sink_http_socket_action(events[i].fd, events[i].events);
		}
		sink_http_timeout();
	}
}
