/*
 * cdviz.c
 *	  Library entry point: settings and, when preloaded, the background
 *	  workers.
 *
 * The SQL API works without shared_preload_libraries: the library is then
 * loaded on first use and _PG_init defines the settings it reads.
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "dispatch/dispatch_worker.h"
#include "http/http_worker.h"
#include "poll/poll.h"
#include "sources/source.h"
#include "store/store.h"
#include "summaries/summaries_worker.h"
#include "common/wake.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/* Define settings; register the workers when preloaded. */
void
_PG_init(void)
{
	cdviz_store_define_gucs();
	cdviz_lake_restore_init();
	cdviz_summaries_init(process_shared_preload_libraries_in_progress);

	/*
	 * Workers exist only when preloaded; each worker folder defines its
	 * own settings and registers its worker here.
	 */
	if (process_shared_preload_libraries_in_progress)
	{
		/* worker registrations */
		cdviz_wake_init();
		cdviz_http_init();
		cdviz_poll_init();
		cdviz_dispatch_init();
		/* after the poller and the dispatcher: their settings define sources */
		cdviz_sources_init();
	}
	MarkGUCPrefixReserved("cdviz");
}
