/*
 * launcher.c
 *	  The "cdviz sources" worker: one dynamic background worker per active
 *	  source of cdviz.sources, and the rows of the sources the settings
 *	  define.
 *
 * At start, when woken (a transaction that changed cdviz.sources or
 * cdviz.source_secrets committed, or a source's worker started or
 * stopped: the postmaster tells the launcher, bgw_notify_pid) and on
 * SIGHUP, the launcher reads cdviz.sources and makes the workers agree:
 * a worker for each source that is not paused, started again when the
 * row changed (its updated_at), stopped when the source is dropped or
 * paused.  A worker that stops by itself (an error, recorded by the
 * worker) is started again after a pause of 5 s, doubled at each failure
 * in a row up to 5 minutes; a worker that ran a minute is forgiven its
 * past failures.  When no background worker slot is free
 * (max_worker_processes), the source says so and the launcher tries again
 * every few seconds.  Nothing else wakes it: idle, it sleeps, looking
 * once every 5 minutes all the same.
 *
 * The settings cdviz.fs_path, cdviz.s3_bucket and cdviz.nats_subjects
 * (with the settings of their groups) each define one source, named
 * settings.folder, settings.s3 and settings.nats; the launcher writes
 * their rows at start and on SIGHUP, and runs them as the others: a
 * changed setting changes the row, which restarts the source's worker.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "common/wake.h"
#include "common/worker.h"
#include "sources/source.h"

PG_FUNCTION_INFO_V1(cdviz_sources_changed);
PGDLLEXPORT void cdviz_sources_main(Datum arg);

#define BACKOFF_FIRST_S 5
#define BACKOFF_MAX_S 300
#define FORGIVE_AFTER_S 60
#define NO_SLOT_RETRY_S 5
/* Without wake-ups, a look now and then all the same (cheap: one query). */
#define IDLE_LOOK_S 300

/* A source as the launcher last read it, and its worker. */
typedef struct SourceSlot
{
	int32		id;				/* hash key */
	char		name[NAMEDATALEN];
	char		kind[16];
	bool		active;			/* in cdviz.sources and not paused */
	bool		seen;			/* in the last reading of cdviz.sources */
	TimestampTz updated_at;		/* of the row the worker was started for */
	BackgroundWorkerHandle *handle; /* NULL: no worker */
	bool		stopping;		/* the launcher terminated it */
	TimestampTz started_at;
	TimestampTz next_start;		/* after a failure or without a slot */
	int			backoff_s;
	bool		failed;			/* the last worker stopped on its own */
	const char *state;			/* last state written */
} SourceSlot;

static HTAB *slots = NULL;

/* Trigger of cdviz.sources and cdviz.source_secrets: wake the launcher. */
Datum
cdviz_sources_changed(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("cdviz._sources_changed() must be called as a trigger")));
	cdviz_wake_at_commit(CDVIZ_WAKE_SOURCES);
	return PointerGetDatum(NULL);
}

/* See source.h. */
void
cdviz_sources_init(void)
{
	cdviz_worker_register("cdviz sources", "cdviz sources", "cdviz_sources_main",
						  CDVIZ_WORKER_RETRY_SECONDS);
}

/* Write a source's state when it changed. */
static void
set_state(SourceSlot *slot, const char *state, const char *error, bool restarted)
{
	if (slot->state == state && error == NULL && !restarted)
		return;
	cdviz_source_set_state(slot->id, state, error, restarted);
	slot->state = state;
}

/* Read cdviz.sources: mark the slots seen, active or not. */
static void
read_sources(void *arg)
{
	if (SPI_execute("SELECT id, name, kind, NOT paused, updated_at "
					"FROM cdviz.sources", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "cdviz sources: reading cdviz.sources failed");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		int32		id = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
		bool		found;
		SourceSlot *slot = hash_search(slots, &id, HASH_ENTER, &found);
		TimestampTz updated_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 5, &isnull));

		if (!found)
		{
			memset(((char *) slot) + sizeof(int32), 0, sizeof(SourceSlot) - sizeof(int32));
			slot->updated_at = updated_at;
		}
		strlcpy(slot->name, SPI_getvalue(tup, desc, 2), sizeof(slot->name));
		strlcpy(slot->kind, SPI_getvalue(tup, desc, 3), sizeof(slot->kind));
		slot->active = DatumGetBool(SPI_getbinval(tup, desc, 4, &isnull));
		slot->seen = true;
		/* a changed source starts afresh, failures forgotten */
		if (updated_at != slot->updated_at && slot->handle == NULL)
		{
			slot->updated_at = updated_at;
			slot->next_start = 0;
			slot->backoff_s = 0;
		}
		else if (updated_at != slot->updated_at)
		{
			/* started again for the new row once stopped */
			slot->updated_at = updated_at;
			slot->backoff_s = 0;
			slot->failed = false;
			if (!slot->stopping)
			{
				TerminateBackgroundWorker(slot->handle);
				slot->stopping = true;
			}
		}
	}
}

/* Start the worker of a slot; false when no slot was free. */
static bool
start_worker(SourceSlot *slot)
{
	BackgroundWorker worker;
	char		name[BGW_MAXLEN];

	snprintf(name, sizeof(name), "cdviz source %s", slot->name);
	cdviz_worker_describe(&worker, name, "cdviz source", "cdviz_source_main");
	worker.bgw_main_arg = Int32GetDatum(slot->id);
	/* the row it is started for, for whoever looks at the worker */
	memcpy(worker.bgw_extra, &slot->updated_at, sizeof(TimestampTz));
	worker.bgw_notify_pid = MyProcPid;
	return RegisterDynamicBackgroundWorker(&worker, &slot->handle);
}

/* Start the worker of an active source, or say why it cannot run. */
static void
start_or_say(SourceSlot *slot, TimestampTz now)
{
	const CdvizSourceKind *kind = cdviz_source_kind(slot->kind);

	if (kind == NULL || kind->run == NULL)
	{
		/* no worker can read it: say so once, until the row changes */
		if (slot->state == NULL)
			set_state(slot, "failed", psprintf(CDVIZ_SOURCE_NOT_BUILT, slot->kind), false);
		slot->next_start = DT_NOEND;
		return;
	}
	if (!start_worker(slot))
	{
		slot->handle = NULL;
		set_state(slot, "no worker slot", NULL, false);
		slot->next_start = TimestampTzPlusMilliseconds(now, NO_SLOT_RETRY_S * 1000L);
		return;
	}
	set_state(slot, "starting", NULL, slot->failed);
	slot->started_at = now;
}

/* What became of a running worker. */
static void
check_worker(SourceSlot *slot, TimestampTz now)
{
	pid_t		pid;

	switch (GetBackgroundWorkerPid(slot->handle, &pid))
	{
		case BGWH_STARTED:
			if (!slot->stopping)
				set_state(slot, "running", NULL, false);
			if (slot->failed && TimestampDifferenceExceeds(slot->started_at, now,
														   FORGIVE_AFTER_S * 1000))
			{
				slot->failed = false;
				slot->backoff_s = 0;
			}
			return;
		case BGWH_NOT_YET_STARTED:
			return;
		case BGWH_STOPPED:
		case BGWH_POSTMASTER_DIED:
			break;
	}
	pfree(slot->handle);
	slot->handle = NULL;
	if (slot->stopping)
	{
		/* stopped as asked: a changed source starts again at once */
		slot->stopping = false;
		slot->next_start = 0;
		return;
	}
	if (!TimestampDifferenceExceeds(slot->started_at, now, FORGIVE_AFTER_S * 1000))
		slot->backoff_s = slot->backoff_s == 0 ? BACKOFF_FIRST_S
			: Min(slot->backoff_s * 2, BACKOFF_MAX_S);
	else
		slot->backoff_s = BACKOFF_FIRST_S;
	slot->failed = true;
	slot->next_start = TimestampTzPlusMilliseconds(now, slot->backoff_s * 1000L);
	/* the worker recorded its error; a worker killed could not */
	set_state(slot, "failed", NULL, false);
	ereport(LOG,
			(errmsg("cdviz sources: the worker of source \"%s\" stopped; starting it again in %d s",
					slot->name, slot->backoff_s)));
}

/*
 * Make the workers agree with the slots; returns ms until the next look.
 * The slots are listed first: writing a state is a transaction, and a
 * transaction ends every scan of a hash table.
 */
static long
reconcile(void)
{
	HASH_SEQ_STATUS seq;
	SourceSlot *slot;
	SourceSlot **list;
	long		n = 0;
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz next = TimestampTzPlusMilliseconds(now, IDLE_LOOK_S * 1000L);

	list = palloc(sizeof(SourceSlot *) * (hash_get_num_entries(slots) + 1));
	hash_seq_init(&seq, slots);
	while ((slot = hash_seq_search(&seq)) != NULL)
		list[n++] = slot;

	for (long i = 0; i < n; i++)
	{
		slot = list[i];
		if (slot->handle != NULL)
			check_worker(slot, now);
		if (slot->handle != NULL && !slot->stopping && (!slot->seen || !slot->active))
		{
			TerminateBackgroundWorker(slot->handle);
			slot->stopping = true;
		}
		if (!slot->seen && slot->handle == NULL)
		{
			hash_search(slots, &slot->id, HASH_REMOVE, NULL);
			continue;
		}
		if (!slot->active)
		{
			slot->state = NULL;
			continue;
		}
		if (slot->handle == NULL && slot->next_start <= now)
			start_or_say(slot, now);
		if (slot->handle == NULL && slot->next_start != DT_NOEND)
			next = Min(next, slot->next_start);
	}
	pfree(list);
	return Max(1, (next - GetCurrentTimestamp()) / 1000 + 1);
}

/* Forget what cdviz.sources said: the next reading says it again. */
static void
unsee(void)
{
	HASH_SEQ_STATUS seq;
	SourceSlot *slot;

	hash_seq_init(&seq, slots);
	while ((slot = hash_seq_search(&seq)) != NULL)
		slot->seen = false;
}

/* The launcher's main function. */
void
cdviz_sources_main(Datum arg)
{
	HASHCTL		ctl;
	bool		sync = true;

	cdviz_worker_connect("cdviz sources: starting");
	cdviz_wake_register(CDVIZ_WAKE_SOURCES);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(int32);
	ctl.entrysize = sizeof(SourceSlot);
	slots = hash_create("cdviz sources", 64, &ctl, HASH_ELEM | HASH_BLOBS);
	ereport(LOG, (errmsg("cdviz sources: started")));

	for (;;)
	{
		long		timeout;

		if (cdviz_worker_process_interrupts())
			sync = true;
		if (!cdviz_worker_wait_for_extension())
		{
			sync = true;
			continue;
		}
		(void) cdviz_wake_take(CDVIZ_WAKE_SOURCES);
		if (sync)
		{
			cdviz_sources_sync_settings();
			sync = false;
		}
		unsee();
		if (cdviz_worker_transaction("reading cdviz.sources", read_sources, NULL, NULL)
			== CDVIZ_TX_DONE)
			timeout = reconcile();
		else
			timeout = CDVIZ_WORKER_RETRY_SECONDS * 1000L;
		pgstat_report_activity(STATE_IDLE, NULL);

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
