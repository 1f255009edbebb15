/*
 * poll_worker.c
 *	  The cdviz poller worker: its settings, its registration and the loop
 *	  that runs the folder and S3 sources at their intervals.
 *
 * Both sources live in this one process and take turns: a pass over the
 * folder and a pass over the bucket never overlap, and neither delays the
 * http worker, which is another process.  All waiting is on the latch, so
 * SIGHUP and SIGTERM are seen at once.
 */
#include "postgres.h"


#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "poll/poll.h"
#include "common/worker.h"

PGDLLEXPORT void cdviz_poller_main(Datum arg);

/* Define the settings and register the worker; see poll.h. */
void
cdviz_poll_init(void)
{
	poll_define_settings();
	cdviz_worker_register("cdviz poller", "cdviz poller", "cdviz_poller_main",
						  CDVIZ_WORKER_RETRY_SECONDS);
}

/* Milliseconds from now until a deadline (0 if it passed). */
static long
ms_until(TimestampTz deadline)
{
	long		secs;
	int			usecs;

	if (deadline <= GetCurrentTimestamp())
		return 0;
	TimestampDifference(GetCurrentTimestamp(), deadline, &secs, &usecs);
	return secs * 1000 + usecs / 1000 + 1;
}

/* The worker's main function: poll each enabled source at its interval. */
void
cdviz_poller_main(Datum arg)
{
	MemoryContext pollcxt;
	TimestampTz next_fs = 0;
	TimestampTz next_s3 = 0;
	char	   *s3_config = NULL;

	cdviz_worker_connect("cdviz poller: starting");
	pollcxt = AllocSetContextCreate(TopMemoryContext, "cdviz poller poll",
									ALLOCSET_DEFAULT_SIZES);
	ereport(LOG, (errmsg("cdviz poller: started")));

	for (;;)
	{
		long		timeout = 3600 * 1000L;

		if (cdviz_worker_process_interrupts())
		{
			/* settings changed: look at once, with the new ones */
			char	   *now_config = psprintf("%s|%s|%s|%s|%s|%s|%d", cdviz_s3_endpoint,
											  cdviz_s3_bucket, cdviz_s3_prefix, cdviz_s3_region,
											  cdviz_s3_access_key_id, cdviz_s3_secret_access_key,
											  (int) cdviz_s3_path_style);

			next_fs = 0;
			if (s3_config == NULL || strcmp(s3_config, now_config) != 0)
			{
				poll_s3_reset();
				next_s3 = 0;
			}
			if (s3_config)
				pfree(s3_config);
			s3_config = MemoryContextStrdup(TopMemoryContext, now_config);
			pfree(now_config);
		}
		if (!cdviz_worker_wait_for_extension())
			continue;

		if (cdviz_fs_path[0] != '\0')
		{
			if (ms_until(next_fs) == 0)
			{
				MemoryContext old = MemoryContextSwitchTo(pollcxt);

				pgstat_report_activity(STATE_RUNNING, "cdviz poller: polling the folder");
				poll_fs_run();
				MemoryContextSwitchTo(old);
				MemoryContextReset(pollcxt);
				next_fs = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													  cdviz_fs_poll_interval * 1000L);
			}
			timeout = Min(timeout, ms_until(next_fs));
		}
		if (cdviz_s3_bucket[0] != '\0')
		{
			if (ms_until(next_s3) == 0)
			{
				MemoryContext old = MemoryContextSwitchTo(pollcxt);
				int			wait_s;

				pgstat_report_activity(STATE_RUNNING, "cdviz poller: polling S3");
				wait_s = poll_s3_run();
				MemoryContextSwitchTo(old);
				MemoryContextReset(pollcxt);
				next_s3 = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), wait_s * 1000L);
			}
			timeout = Min(timeout, ms_until(next_s3));
		}
		pgstat_report_activity(STATE_IDLE, NULL);

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Max(timeout, 1), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
