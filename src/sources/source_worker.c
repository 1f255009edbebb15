/*
 * source_worker.c
 *	  The dynamic background worker "cdviz source <name>" that reads one
 *	  source, and the table of kinds.
 *
 * The launcher starts one such worker per active source, with the
 * source's id as its argument.  The worker loads the source (its secrets
 * merged into its options) and hands it to its kind's run function,
 * which reads until the worker is told to stop (SIGTERM: the source was
 * dropped, paused or changed, or the server stops).  One process per
 * source is what keeps a source that hangs or fails (a bucket that does
 * not answer, a broker that is down) from delaying any other.
 *
 * An error raised by the run function ends the worker: it is logged,
 * recorded as the source's last_error with the state "failed", and the
 * launcher starts the worker again after a pause.
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "common/worker.h"
#include "sources/kinds.h"
#include "sources/source.h"

/*
 * The kinds of sources.  A kind the library is built without has a NULL
 * run: its sources are accepted by the catalog and shown as failed.
 */
static const CdvizSourceKind source_kinds[] = {
	{"folder", cdviz_folder_source_run},
	{"s3", cdviz_s3_source_run},
	{"nats", cdviz_nats_source_run},
	{"kafka", cdviz_kafka_source_run},
	{"oci", cdviz_oci_source_run},
};

PGDLLEXPORT void cdviz_source_main(Datum arg);

/* See source.h. */
const CdvizSourceKind *
cdviz_source_kind(const char *kind)
{
	for (int i = 0; i < lengthof(source_kinds); i++)
		if (strcmp(source_kinds[i].kind, kind) == 0)
			return &source_kinds[i];
	return NULL;
}

/* See source.h. */
bool
cdviz_source_stopping(void)
{
	/* SIGTERM ends the process here, through die() */
	(void) cdviz_worker_process_interrupts();
	return ProcDiePending;
}

/* See source.h. */
void
cdviz_source_sleep_until(TimestampTz deadline)
{
	pgstat_report_activity(STATE_IDLE, NULL);
	while (!cdviz_source_stopping())
	{
		long		secs;
		int			usecs;

		if (GetCurrentTimestamp() >= deadline)
			return;
		TimestampDifference(GetCurrentTimestamp(), deadline, &secs, &usecs);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 secs * 1000L + usecs / 1000 + 1, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/* Arguments of load_source(). */
typedef struct LoadArg
{
	int32		id;
	CdvizSource *src;
	bool		paused;
} LoadArg;

static void
load_source(void *arg)
{
	LoadArg    *a = (LoadArg *) arg;

	a->src = cdviz_source_load(a->id, TopMemoryContext, &a->paused);
}

/* The worker's main function: bgw_main_arg is the source's id. */
void
cdviz_source_main(Datum arg)
{
	LoadArg		a = {DatumGetInt32(arg), NULL, false};
	const CdvizSourceKind *kind;
	ErrorData  *edata = NULL;

	cdviz_worker_connect("cdviz source: starting");
	/* "cdviz source <name>" in pg_stat_activity.application_name */
	pgstat_report_appname(MyBgworkerEntry->bgw_name);
	for (;;)
	{
		CdvizTxResult r = cdviz_worker_transaction("loading the source", load_source, &a, &edata);

		if (r == CDVIZ_TX_DONE)
			break;
		if (r == CDVIZ_TX_FAILED)
		{
			cdviz_source_set_state(a.id, "failed", edata->message, false);
			proc_exit(1);
		}
		(void) cdviz_worker_wait_for_extension();
		(void) cdviz_worker_process_interrupts();
	}
	/* dropped or paused since the launcher looked: nothing to do */
	if (a.src == NULL || a.paused)
		proc_exit(0);

	kind = cdviz_source_kind(a.src->kind);
	if (kind == NULL || kind->run == NULL)
	{
		char	   *msg = psprintf(CDVIZ_SOURCE_NOT_BUILT, a.src->kind);

		cdviz_source_set_state(a.id, "failed", msg, false);
		ereport(LOG, (errmsg("cdviz source %s: %s", a.src->name, msg)));
		proc_exit(1);
	}

	ereport(LOG, (errmsg("cdviz source %s: reading %s %s", a.src->name, a.src->kind,
						 a.src->location)));
	PG_TRY();
	{
		kind->run(a.src);
	}
	PG_CATCH();
	{
		/* as cdviz_worker_transaction() does: logged whole, then recorded */
		HOLD_INTERRUPTS();
		MemoryContextSwitchTo(TopMemoryContext);
		EmitErrorReport();
		edata = CopyErrorData();
		FlushErrorState();
		AbortOutOfAnyTransaction();
		RESUME_INTERRUPTS();
		cdviz_source_set_state(a.id, "failed", edata->message, false);
		proc_exit(1);
	}
	PG_END_TRY();
	proc_exit(0);
}
