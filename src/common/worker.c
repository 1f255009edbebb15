/*
 * worker.c
 *	  Plumbing shared by the cdviz background workers (http, poller,
 *	  dispatcher): registration, connection, signals, transactions.
 *
 * A worker is one process with one database connection.  It must never
 * crash-loop: while the extension is not created in cdviz.database it says
 * so once and keeps checking, and an error inside a unit of work rolls
 * that work back and is reported to the caller instead of ending the
 * process, so that the caller can answer its clients (HTTP 503, retry
 * the file later) and carry on.
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "replication/syncrep.h"
#include "replication/walsender.h"
#include "replication/walsender_private.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "common/version.h"
#include "common/worker.h"

char	   *cdviz_database = NULL;

/* Last known state of the extension, to log changes only. */
typedef enum ExtensionState
{
	EXT_UNKNOWN,
	EXT_PRESENT,				/* created, of this library's version */
	EXT_MISSING,
	EXT_OTHER_VERSION			/* created, of another version */
} ExtensionState;

static ExtensionState extension_state = EXT_UNKNOWN;

/* The installed version, while it is not the library's. */
static char other_version[NAMEDATALEN];

/* Define cdviz.database once, whichever worker asks first. */
void
cdviz_worker_define_gucs(void)
{
	static bool defined = false;

	if (defined)
		return;
	defined = true;
	DefineCustomStringVariable("cdviz.database",
							   "Database the cdviz background workers connect to.",
							   "The extension must be created in this database; until it is, "
							   "the workers wait.  Changing it requires a server restart.",
							   &cdviz_database,
							   "postgres",
							   PGC_POSTMASTER,
							   0,
							   NULL, NULL, NULL);
}

/* See worker.h. */
void
cdviz_worker_define_settings(const CdvizSetting *settings, int n)
{
	cdviz_worker_define_gucs();
	for (int i = 0; i < n; i++)
	{
		const CdvizSetting *s = &settings[i];

		if (s->options)
			DefineCustomEnumVariable(s->name, s->short_desc, s->long_desc, s->int_var,
									 s->int_default, s->options, s->context, s->flags,
									 NULL, NULL, NULL);
		else if (s->int_var)
			DefineCustomIntVariable(s->name, s->short_desc, s->long_desc, s->int_var,
									s->int_default, s->min, s->max, s->context, s->flags,
									NULL, NULL, NULL);
		else if (s->string_var)
			DefineCustomStringVariable(s->name, s->short_desc, s->long_desc, s->string_var,
									   s->string_default, s->context, s->flags,
									   NULL, NULL, NULL);
		else
			DefineCustomBoolVariable(s->name, s->short_desc, s->long_desc, s->bool_var,
									 s->bool_default, s->context, s->flags,
									 NULL, NULL, NULL);
	}
}

/* See worker.h. */
void
cdviz_worker_describe(BackgroundWorker *worker, const char *name, const char *type,
					  const char *function_name)
{
	memset(worker, 0, sizeof(*worker));
	worker->bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	/* a standby cannot store anything: start on a primary only */
	worker->bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker->bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(worker->bgw_library_name, "cdviz", BGW_MAXLEN);
	strlcpy(worker->bgw_function_name, function_name, BGW_MAXLEN);
	strlcpy(worker->bgw_name, name, BGW_MAXLEN);
	strlcpy(worker->bgw_type, type, BGW_MAXLEN);
}

/* Register one worker of this library; see worker.h. */
void
cdviz_worker_register(const char *name, const char *type,
					  const char *function_name, int restart_seconds)
{
	BackgroundWorker worker;

	cdviz_worker_describe(&worker, name, type, function_name);
	worker.bgw_restart_time = restart_seconds;
	RegisterBackgroundWorker(&worker);
}

/*
 * Signals as in every well-behaved worker: SIGHUP sets ConfigReloadPending,
 * SIGTERM (die) makes the next CHECK_FOR_INTERRUPTS exit with FATAL, which
 * also rolls back an open transaction.  An exit code other than 0 makes
 * the postmaster start the worker again, so pg_terminate_backend()
 * restarts it too.
 */
void
cdviz_worker_connect(const char *activity)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnection(cdviz_database, NULL, 0);
	pgstat_report_appname(MyBgworkerEntry->bgw_type);
	pgstat_report_activity(STATE_IDLE, activity);
}

/* SIGTERM and SIGHUP; see worker.h. */
bool
cdviz_worker_process_interrupts(void)
{
	CHECK_FOR_INTERRUPTS();
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
		return true;
	}
	return false;
}

/* Log the extension's changes of state, once each. */
static void
note_extension(ExtensionState now)
{
	const char *type = MyBgworkerEntry->bgw_type;

	if (now == extension_state)
		return;
	if (now == EXT_MISSING)
		ereport(LOG,
				(errmsg("%s: extension \"cdviz\" is not created in database \"%s\"; waiting for it",
						type, cdviz_database),
				 errhint("Run CREATE EXTENSION cdviz in database \"%s\", or set cdviz.database.",
						 cdviz_database)));
	else if (now == EXT_OTHER_VERSION)
		ereport(LOG,
				(errmsg("%s: extension \"cdviz\" in database \"%s\" is version %s, but the library is version %s; waiting for the update",
						type, cdviz_database, other_version, CDVIZ_LIBRARY_VERSION),
				 errhint("Run ALTER EXTENSION cdviz UPDATE in database \"%s\".", cdviz_database)));
	else if (extension_state == EXT_MISSING)
		ereport(LOG,
				(errmsg("%s: extension \"cdviz\" found in database \"%s\"",
						type, cdviz_database)));
	else if (extension_state == EXT_OTHER_VERSION)
		ereport(LOG,
				(errmsg("%s: extension \"cdviz\" in database \"%s\" is now version %s; resuming",
						type, cdviz_database, CDVIZ_LIBRARY_VERSION)));
	extension_state = now;
}

/* See worker.h. */
char *
cdviz_worker_not_ready(void)
{
	if (extension_state == EXT_OTHER_VERSION)
		return psprintf("the cdviz extension in database \"%s\" is version %s, the library version %s: run ALTER EXTENSION cdviz UPDATE",
						cdviz_database, other_version, CDVIZ_LIBRARY_VERSION);
	return psprintf("the cdviz extension is not created in database \"%s\"", cdviz_database);
}

/*
 * Whether the extension exists, of this library's version, holding a share
 * lock on it until the end of the transaction.  DROP EXTENSION locks the
 * extension before anything else, then every table in turn, so a worker
 * that locked some of those tables before the extension could deadlock
 * with it; taking the extension's lock first makes one of the two wait
 * for the other before holding anything.  After the wait the extension
 * may be gone (or created anew): look again.
 */
static ExtensionState
extension_locked(void)
{
	Oid			ext = get_extension_oid("cdviz", true);
	char	   *version;

	if (!OidIsValid(ext))
		return EXT_MISSING;
	LockDatabaseObject(ExtensionRelationId, ext, 0, AccessShareLock);
	if (get_extension_oid("cdviz", true) != ext ||
		(version = cdviz_extension_version(ext)) == NULL)
		return EXT_MISSING;
	if (strcmp(version, CDVIZ_LIBRARY_VERSION) != 0)
	{
		strlcpy(other_version, version, sizeof(other_version));
		return EXT_OTHER_VERSION;
	}
	return EXT_PRESENT;
}

/* End of this process's last commit record; see commit_confirmed(). */
static XLogRecPtr last_commit_end = InvalidXLogRecPtr;

/*
 * Whether the synchronous standbys confirmed this process's last commit, as
 * synchronous_commit asks.  A commit waiting for them is let go, committed
 * locally only, when the wait is cancelled (pg_cancel_backend,
 * statement_timeout) or the process is told to exit (pg_terminate_backend,
 * pg_ctl stop -m fast): the server only warns.  Acknowledging such a commit
 * to a client would promise what a failover can lose.  A transaction that
 * wrote nothing (an answer of duplicates only, say) stands on that last
 * commit too: it may be the one a retry finds.
 */
static bool
commit_confirmed(void)
{
	int			mode;
	bool		confirmed;

	if (last_commit_end == InvalidXLogRecPtr || !SyncRepRequested() ||
		SyncRepStandbyNames == NULL || SyncRepStandbyNames[0] == '\0')
		return true;
	switch (synchronous_commit)
	{
		case SYNCHRONOUS_COMMIT_REMOTE_WRITE:
			mode = SYNC_REP_WAIT_WRITE;
			break;
		case SYNCHRONOUS_COMMIT_REMOTE_APPLY:
			mode = SYNC_REP_WAIT_APPLY;
			break;
		default:
			mode = SYNC_REP_WAIT_FLUSH;
			break;
	}
	LWLockAcquire(SyncRepLock, LW_SHARED);
	confirmed = WalSndCtl->lsn[mode] >= last_commit_end;
	LWLockRelease(SyncRepLock);
	return confirmed;
}

/*
 * Error context of a worker transaction: which worker, doing what.  The
 * activity names the work (and often its source or sink) where the error's
 * own message and location do not.
 */
static void
transaction_error_callback(void *arg)
{
	const char *activity = (const char *) arg;
	const char *type = MyBgworkerEntry->bgw_type;
	size_t		len = strlen(type);

	/* some activities name their worker already */
	if (strncmp(activity, type, len) == 0 && activity[len] == ':')
		errcontext("%s", activity);
	else
		errcontext("%s: %s", type, activity);
}

/* Run fn in a transaction; see worker.h. */
CdvizTxResult
cdviz_worker_transaction(const char *activity, CdvizTxFunc fn, void *arg,
						 ErrorData **error)
{
	MemoryContext callercxt = CurrentMemoryContext;
	ResourceOwner callerowner = CurrentResourceOwner;
	volatile CdvizTxResult result = CDVIZ_TX_DONE;
	volatile ExtensionState state = EXT_UNKNOWN;
	bool		had_xid;
	ErrorContextCallback errcallback;

	if (error)
		*error = NULL;
	SetCurrentStatementStartTimestamp();
	PG_TRY();
	{
		/* PG_CATCH restores error_context_stack; the normal path pops it */
		errcallback.callback = transaction_error_callback;
		errcallback.arg = unconstify(char *, activity);
		errcallback.previous = error_context_stack;
		error_context_stack = &errcallback;

		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());

		/*
		 * Looked up in every transaction: DROP, CREATE and ALTER EXTENSION
		 * may happen at any time, and the lookups are two index probes.
		 */
		state = extension_locked();
		if (state != EXT_PRESENT)
			result = CDVIZ_TX_NO_EXTENSION;
		else
		{
			pgstat_report_activity(STATE_RUNNING, activity);
			if (SPI_connect() != SPI_OK_CONNECT)
				elog(ERROR, "SPI_connect failed");
			fn(arg);
			SPI_finish();
		}
		PopActiveSnapshot();
		/* only a transaction with an xid writes a commit record and waits */
		had_xid = TransactionIdIsValid(GetTopTransactionIdIfAny());
		CommitTransactionCommand();
		if (had_xid)
			last_commit_end = XactLastCommitEnd;

		/*
		 * Committed here, not on the synchronous standbys: a failure to
		 * the caller, which then does not acknowledge (a retry is
		 * deduplicated).
		 */
		if (result == CDVIZ_TX_DONE && !commit_confirmed())
			ereport(ERROR,
					(errcode(ERRCODE_OPERATOR_INTERVENTION),
					 errmsg("the synchronous standbys have not confirmed the commit"),
					 errdetail("The wait for them was cancelled; the transaction is committed on this server only.")));
		error_context_stack = errcallback.previous;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		/*
		 * As PostgreSQL's own workers do: no interrupt while the error is
		 * reported and the transaction aborted.  EmitErrorReport() logs the
		 * error as raised, with its detail, hint, context (the worker and
		 * activity, from the callback above) and location.  The caller gets
		 * its own copy, then the error is forgotten and rolled back.
		 */
		HOLD_INTERRUPTS();
		MemoryContextSwitchTo(callercxt);
		EmitErrorReport();
		edata = CopyErrorData();
		FlushErrorState();
		AbortOutOfAnyTransaction();
		CurrentResourceOwner = callerowner;
		MemoryContextSwitchTo(callercxt);
		RESUME_INTERRUPTS();
		if (error)
			*error = edata;
		else
			FreeErrorData(edata);
		result = CDVIZ_TX_FAILED;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(callercxt);
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	if (result != CDVIZ_TX_FAILED)
		note_extension(state);
	return result;
}

/* Nothing to do but to look: the lookup itself happens in the helper. */
static void
noop(void *arg)
{
}

/* See worker.h. */
bool
cdviz_worker_extension_exists(void)
{
	return cdviz_worker_transaction("checking for the extension", noop, NULL, NULL)
		== CDVIZ_TX_DONE;
}

/* See worker.h. */
bool
cdviz_worker_wait_for_extension(void)
{
	if (cdviz_worker_extension_exists())
		return true;
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 CDVIZ_WORKER_RETRY_SECONDS * 1000L, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	return false;
}
