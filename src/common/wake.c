/*
 * wake.c
 *	  Waking a cdviz worker when a transaction that gave it work commits;
 *	  see wake.h.
 *
 * As ApplyLauncherWakeupAtCommit() does for the logical replication
 * launcher: the wish is kept in the backend and acted on by a transaction
 * callback after the commit, when the worker's next snapshot sees what
 * the transaction wrote.  The latches live in shared memory (PGPROC), so
 * a pointer to one is valid in every process; a pointer left by a worker
 * that exited names a latch another process may own by now, which would
 * cost it one spurious wake-up only, but the worker withdraws it on exit.
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"

#include "common/wake.h"

typedef struct CdvizWakeShared
{
	slock_t		mutex;			/* protects latch[] */
	Latch	   *latch[CDVIZ_WAKE_TARGETS];
	pg_atomic_uint32 woken[CDVIZ_WAKE_TARGETS];
} CdvizWakeShared;

static CdvizWakeShared *wake_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* This backend's wishes for its current transaction, one bit per target. */
static uint32 wake_pending = 0;
static bool callback_registered = false;

static void
wake_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(CdvizWakeShared)));
}

static void
wake_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	wake_shared = ShmemInitStruct("cdviz wake-ups", sizeof(CdvizWakeShared), &found);
	if (!found)
	{
		SpinLockInit(&wake_shared->mutex);
		for (int t = 0; t < CDVIZ_WAKE_TARGETS; t++)
		{
			wake_shared->latch[t] = NULL;
			pg_atomic_init_u32(&wake_shared->woken[t], 0);
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

/* See wake.h. */
void
cdviz_wake_init(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = wake_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = wake_shmem_startup;
}

static void
wake_unregister(int code, Datum arg)
{
	CdvizWakeTarget target = (CdvizWakeTarget) DatumGetInt32(arg);

	SpinLockAcquire(&wake_shared->mutex);
	if (wake_shared->latch[target] == MyLatch)
		wake_shared->latch[target] = NULL;
	SpinLockRelease(&wake_shared->mutex);
}

/* See wake.h. */
void
cdviz_wake_register(CdvizWakeTarget target)
{
	if (wake_shared == NULL)
		elog(ERROR, "cdviz: shared memory for wake-ups is missing (library not preloaded?)");
	SpinLockAcquire(&wake_shared->mutex);
	wake_shared->latch[target] = MyLatch;
	SpinLockRelease(&wake_shared->mutex);
	before_shmem_exit(wake_unregister, Int32GetDatum((int32) target));
}

static void
wake_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
			for (int t = 0; t < CDVIZ_WAKE_TARGETS; t++)
			{
				Latch	   *latch;

				if ((wake_pending & (1U << t)) == 0)
					continue;
				pg_atomic_write_u32(&wake_shared->woken[t], 1);
				SpinLockAcquire(&wake_shared->mutex);
				latch = wake_shared->latch[t];
				SpinLockRelease(&wake_shared->mutex);
				if (latch)
					SetLatch(latch);
			}
			wake_pending = 0;
			break;

			/*
			 * A prepared transaction commits later, maybe in another
			 * session, which does not know of the wish: the worker's own
			 * occasional look finds its work.
			 */
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
			wake_pending = 0;
			break;
		default:
			break;
	}
}

/* See wake.h. */
void
cdviz_wake_at_commit(CdvizWakeTarget target)
{
	if (wake_shared == NULL)
		return;
	if (!callback_registered)
	{
		RegisterXactCallback(wake_xact_callback, NULL);
		callback_registered = true;
	}
	wake_pending |= 1U << target;
}

/* See wake.h. */
bool
cdviz_wake_take(CdvizWakeTarget target)
{
	if (wake_shared == NULL)
		return false;
	/* cheap when not woken: a read, no bus-locked write */
	if (pg_atomic_read_u32(&wake_shared->woken[target]) == 0)
		return false;
	return pg_atomic_exchange_u32(&wake_shared->woken[target], 0) != 0;
}
