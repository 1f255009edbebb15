/*
 * summaries_worker.c
 *	  The cdviz summaries worker: folds the events the lake trigger queued
 *	  (cdviz.summaries = deferred) into the summary tables.
 *
 * The current-state tables are kept by the trigger in the ingest
 * transaction, as they must be; the summaries (runs, counts, rollups) cost
 * as much again and only feed the *_between functions and dashboards, which
 * can be a moment behind.  Deferring them takes that cost off every
 * ingest path, and one fold then covers many small insert statements (the
 * http worker's group commits) with one statement per summary table.
 *
 * So the worker folds at most once per cdviz.summaries_interval, unless a
 * fold was full (a backlog: see fold_tx).  A worker that folded again as
 * soon as a fold found anything would chase the http worker's group
 * commits: many small folds, each paying every summary statement's
 * start-up, taking the CPU the receiver needs (docs/benchmarks.md has the
 * figures of bench/http.sh).
 *
 * With nothing queued the worker sleeps: a transaction that queues
 * summaries wakes it when it commits (see wake.h), and it then folds at
 * once, or when the interval since its last fold has passed, so that an
 * idle cluster runs no transaction for an empty queue.  What no committing
 * writer announces (a prepared transaction committed later, queue rows
 * restored from a dump) is found by a look every IDLE_LOOK_SECONDS.
 */
#include "postgres.h"

#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/latch.h"
#include "utils/guc.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "summaries/summaries_worker.h"
#include "common/worker.h"
#include "common/version.h"
#include "common/wake.h"

PGDLLEXPORT void cdviz_summaries_main(Datum arg);

PG_FUNCTION_INFO_V1(cdviz_summaries_deferred);

enum
{
	SUMMARIES_IMMEDIATE,
	SUMMARIES_DEFERRED
};

static const struct config_enum_entry summaries_options[] = {
	{"immediate", SUMMARIES_IMMEDIATE, false},
	{"deferred", SUMMARIES_DEFERRED, false},
	{NULL, 0, false}
};

static int	cdviz_summaries = SUMMARIES_DEFERRED;
static int	cdviz_summaries_interval = 100;

/*
 * Set in the postmaster when the library is preloaded; backends inherit it.
 * Without the worker, nobody would fold a queue: then the trigger folds.
 */
static bool worker_registered = false;

/* Insert statements folded per transaction. */
#define FOLD_STATEMENTS 1000

/* Seconds between looks at the queue when nobody woke the worker. */
#define IDLE_LOOK_SECONDS 60

/* Define the settings; register the worker when preloaded. */
void
cdviz_summaries_init(bool preloading)
{
	DefineCustomEnumVariable("cdviz.summaries",
							 "When the summary tables take in new events.",
							 "deferred: the cdviz summaries worker folds them just after the ingest "
							 "transaction commits (the *_between functions lag by a fraction of a second); "
							 "immediate: in the ingest transaction.  Current state (inventory, deployments) "
							 "is always kept at once.  deferred applies in cdviz.database when the library "
							 "is preloaded; elsewhere summaries are immediate.",
							 &cdviz_summaries,
							 SUMMARIES_DEFERRED,
							 summaries_options,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);
	if (!preloading)
		return;
	cdviz_worker_define_gucs();
	DefineCustomIntVariable("cdviz.summaries_interval",
							"Least milliseconds between two folds of the summaries worker.",
							"The worker sleeps until an ingest transaction that queued summaries "
							"commits, then folds what was queued, up to 1,000 insert statements, at "
							"most once per interval; after a fold of 1,000 events or more (a backlog) "
							"the next one follows at once.  Reloaded on SIGHUP.",
							&cdviz_summaries_interval, 100, 10, 60000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	cdviz_worker_register("cdviz summaries", "cdviz summaries", "cdviz_summaries_main", 5);
	worker_registered = true;
}

/*
 * cdviz._summaries_deferred() RETURNS boolean
 *
 * Whether the lake trigger queues this statement's summaries: the setting
 * says deferred and a worker folds this database's queue.  The trigger
 * asks once per insert statement and queues when told so: the worker is
 * then woken when the transaction commits.  (A statement that stored
 * nothing queues nothing; the worker then folds an empty queue once.)
 */
Datum
cdviz_summaries_deferred(PG_FUNCTION_ARGS)
{
	char	   *dbname;

	cdviz_check_version();
	if (cdviz_summaries != SUMMARIES_DEFERRED || !worker_registered ||
		cdviz_database == NULL)
		PG_RETURN_BOOL(false);
	dbname = get_database_name(MyDatabaseId);
	if (dbname == NULL || strcmp(dbname, cdviz_database) != 0)
		PG_RETURN_BOOL(false);
	cdviz_wake_at_commit(CDVIZ_WAKE_SUMMARIES);
	PG_RETURN_BOOL(true);
}

/*
 * One fold; *arg says whether it was a full one, so that more may wait:
 * FOLD_STATEMENTS insert statements hold at least as many events, so a
 * fold of fewer events did not take them all.  (A fold of many events from
 * fewer statements makes one more fold follow at once, which finds what
 * came meanwhile.)  Rows another transaction is folding are skipped by the
 * fold and not counted: the worker does not spin while a writer catches up
 * on its own.
 */
static void
fold_tx(void *arg)
{
	bool	   *full = (bool *) arg;
	bool		isnull;

	if (SPI_execute("SELECT cdviz.fold_queued_summaries(" CppAsString2(FOLD_STATEMENTS) ")",
					false, 1) != SPI_OK_SELECT)
		elog(ERROR, "cdviz.fold_queued_summaries() failed");
	*full = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
										1, &isnull)) >= FOLD_STATEMENTS;
}

/*
 * Entry point of the worker.  The next fold is due at a time: at once
 * (start-up, reload, a backlog), after a failure, or, once the worker is
 * woken, when the interval since the last fold has passed; until it is
 * woken, none is due (DT_NOEND) but the occasional look.  Only the wake-up
 * flag says "woken": a latch is also set by signals that are none of our
 * business (cache invalidation catch-up, timeouts), and a wake-up taken as
 * "fold now" folded a few events again.  A reload (SIGHUP) folds at once,
 * since the interval may have changed.
 */
void
cdviz_summaries_main(Datum arg)
{
	TimestampTz next_fold = 0;
	TimestampTz paced_until = 0;
	TimestampTz idle_look = 0;

	cdviz_worker_connect("folding summaries");
	cdviz_wake_register(CDVIZ_WAKE_SUMMARIES);
	for (;;)
	{
		bool		full = false;
		long		wait_ms;
		TimestampTz now;

		if (cdviz_worker_process_interrupts())
			next_fold = 0;
		now = GetCurrentTimestamp();
		if (next_fold == DT_NOEND && cdviz_wake_take(CDVIZ_WAKE_SUMMARIES))
			next_fold = Max(now, paced_until);
		if (next_fold == DT_NOEND && now >= idle_look)
			next_fold = now;
		if (now < next_fold)
		{
			TimestampTz until = next_fold == DT_NOEND ? idle_look : next_fold;

			wait_ms = (long) ((until - now + 999) / 1000);
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 wait_ms, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			continue;
		}

		/* what commits from now on is for the next fold */
		(void) cdviz_wake_take(CDVIZ_WAKE_SUMMARIES);
		switch (cdviz_worker_transaction("folding summaries", fold_tx, &full, NULL))
		{
			case CDVIZ_TX_DONE:
				/* a backlog: fold the next ones at once */
				wait_ms = full ? 0 : -1;
				break;
			case CDVIZ_TX_NO_EXTENSION:
				wait_ms = CDVIZ_WORKER_RETRY_SECONDS * 1000L;
				break;
			default:
				/* logged by the helper; the queue keeps the events */
				wait_ms = 1000;
				break;
		}
		now = GetCurrentTimestamp();
		paced_until = TimestampTzPlusMilliseconds(now, cdviz_summaries_interval);
		idle_look = TimestampTzPlusMilliseconds(now, IDLE_LOOK_SECONDS * 1000L);
		next_fold = wait_ms < 0 ? DT_NOEND : TimestampTzPlusMilliseconds(now, wait_ms);
	}
}
