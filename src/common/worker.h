/*
 * worker.h
 *	  What every cdviz background worker shares: registration, connecting to
 *	  cdviz.database, reload and shutdown signals, transactions with SPI and
 *	  the "is the extension created" check.
 *
 * A worker's main function follows this shape:
 *
 *		cdviz_worker_connect("cdviz dispatcher");
 *		for (;;)
 *		{
 *			cdviz_worker_process_interrupts();		-- SIGTERM exits, SIGHUP reloads
 *			if (!cdviz_worker_wait_for_extension())	-- optional: sleep while absent
 *				continue;
 *			result = cdviz_worker_transaction("polling", work, arg, &err);
 *			WaitLatch(...);
 *		}
 *
 * The extension may be dropped and created again while a worker runs:
 * cdviz_worker_transaction() looks it up inside every transaction it starts,
 * so a worker never touches a missing schema and picks up the new one.
 */
#ifndef CDVIZ_COMMON_WORKER_H
#define CDVIZ_COMMON_WORKER_H

#include "postgres.h"

#include "postmaster/bgworker.h"

#include "utils/guc.h"

/* cdviz.database: the database every cdviz worker connects to. */
extern char *cdviz_database;

/* How a transaction run by cdviz_worker_transaction() ended. */
typedef enum CdvizTxResult
{
	CDVIZ_TX_DONE,				/* committed */
	CDVIZ_TX_NO_EXTENSION,		/* extension not created, or of another
								 * version than the library: nothing was run */
	CDVIZ_TX_FAILED				/* an error was raised; rolled back */
} CdvizTxResult;

/* Work done inside a transaction, with SPI connected. */
typedef void (*CdvizTxFunc) (void *arg);

/* Define cdviz.database; safe to call from every worker's init. */
extern void cdviz_worker_define_gucs(void);

/*
 * One setting of a worker, for cdviz_worker_define_settings(): an integer
 * (int_var, between min and max), an enum (int_var with options), a string
 * (string_var) or a boolean (bool_var); the default is int_default,
 * string_default or bool_default.  None of them has hooks.
 */
typedef struct CdvizSetting
{
	const char *name;
	const char *short_desc;
	const char *long_desc;
	GucContext	context;
	int			flags;
	int		   *int_var;
	int			int_default;
	int			min;
	int			max;
	const struct config_enum_entry *options;
	char	  **string_var;
	const char *string_default;
	bool	   *bool_var;
	bool		bool_default;
} CdvizSetting;

/* Define cdviz.database and the n settings of a worker. */
extern void cdviz_worker_define_settings(const CdvizSetting *settings, int n);

/*
 * Fill *worker for a worker of this library running function_name in
 * cdviz.database, on a primary, not restarted by the postmaster.
 */
extern void cdviz_worker_describe(BackgroundWorker *worker, const char *name,
								  const char *type, const char *function_name);

/*
 * Register a background worker running function_name (exported by this
 * library) on a primary, restarted restart_seconds after it dies.
 */
extern void cdviz_worker_register(const char *name, const char *type,
								  const char *function_name,
								  int restart_seconds);

/* In the worker: install signal handlers and connect to cdviz.database. */
extern void cdviz_worker_connect(const char *activity);

/*
 * Exit on SIGTERM (through CHECK_FOR_INTERRUPTS) and reload the
 * configuration after SIGHUP; true when it was reloaded.
 */
extern bool cdviz_worker_process_interrupts(void);

/*
 * Run fn(arg) in its own transaction, SPI connected and a snapshot set,
 * if the extension exists in this database.  Errors are caught: the
 * transaction is rolled back, and *error (when not NULL) receives a copy
 * made in the caller's memory context (FreeErrorData it).
 */
extern CdvizTxResult cdviz_worker_transaction(const char *activity,
											  CdvizTxFunc fn, void *arg,
											  ErrorData **error);

/*
 * Why the last transaction found no extension to work with, for clients
 * (palloc'd, without a final period).
 */
extern char *cdviz_worker_not_ready(void);

/* Whether the extension exists, checked in a short transaction. */
extern bool cdviz_worker_extension_exists(void);

/*
 * For workers with nothing to do without the extension: true when it
 * exists; otherwise sleep a few seconds (latch-aware) and return false.
 * Says so once in the log, not at every retry.
 */
extern bool cdviz_worker_wait_for_extension(void);

/* Seconds between checks while the extension is missing. */
#define CDVIZ_WORKER_RETRY_SECONDS 5

#endif							/* CDVIZ_COMMON_WORKER_H */
