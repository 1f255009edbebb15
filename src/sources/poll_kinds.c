/*
 * poll_kinds.c
 *	  The folder and s3 kinds: one source read by the poller's readers
 *	  (src/poll/) in the source's own worker.
 *
 * The readers take their settings from the cdviz.fs_*, cdviz.s3_* and
 * cdviz.poll_* variables of the process they run in.  A source worker
 * reads one source, so it sets those variables to the source's location
 * and options, at the highest priority (PGC_S_OVERRIDE): a reload of
 * postgresql.conf in this process does not change them back.  Progress
 * is kept per file (cdviz.fs_files) and object (cdviz.s3_objects) under
 * the source's location, as the poller always kept it.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "common/worker.h"
#include "poll/poll.h"
#include "sources/kinds.h"

#define DEFAULT_PATTERN "*.json,*.jsonl,*.ndjson"

static void
set_variable(const char *name, const char *value)
{
	SetConfigOption(name, value, PGC_SIGHUP, PGC_S_OVERRIDE);
}

static void
set_int_variable(const char *name, int value)
{
	char		buf[32];

	snprintf(buf, sizeof(buf), "%d", value);
	set_variable(name, buf);
}

/* The options both kinds take. */
static void
set_read_options(const CdvizSource *src)
{
	set_int_variable("cdviz.poll_batch_lines", cdviz_source_opt_int(src, "batch_lines", 5000));
	set_int_variable("cdviz.poll_max_line_size", cdviz_source_opt_int(src, "max_line_size", 1024));
	set_int_variable("cdviz.poll_max_json_size", cdviz_source_opt_int(src, "max_json_size", 64 * 1024));
}

/*
 * Wait until a deadline, on the latch: a reload or SIGTERM wakes it, and
 * the loop goes on waiting for what is left.
 */
static void
sleep_until(TimestampTz deadline)
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

/* The time seconds from now. */
static TimestampTz
in_seconds(int seconds)
{
	return TimestampTzPlusMilliseconds(GetCurrentTimestamp(), seconds * 1000L);
}

/* See kinds.h. */
void
cdviz_folder_source_run(const CdvizSource *src)
{
	MemoryContext pollcxt = AllocSetContextCreate(CurrentMemoryContext, "cdviz source poll",
												  ALLOCSET_DEFAULT_SIZES);
	int			interval = cdviz_source_opt_int(src, "poll_interval", 5);

	set_variable("cdviz.fs_path", src->location);
	set_variable("cdviz.fs_pattern", cdviz_source_opt_text(src, "pattern", DEFAULT_PATTERN));
	set_variable("cdviz.fs_after", cdviz_source_opt_text(src, "after", "keep"));
	set_variable("cdviz.fs_done_path", cdviz_source_opt_text(src, "done_path", ""));
	set_int_variable("cdviz.fs_poll_interval", interval);
	set_read_options(src);

	while (!cdviz_source_stopping())
	{
		if (cdviz_worker_wait_for_extension())
		{
			MemoryContext old = MemoryContextSwitchTo(pollcxt);
			TimestampTz next = in_seconds(interval);

			pgstat_report_activity(STATE_RUNNING, "cdviz source: polling the folder");
			poll_fs_run();
			MemoryContextSwitchTo(old);
			MemoryContextReset(pollcxt);
			sleep_until(next);
		}
	}
}

/* See kinds.h. */
void
cdviz_s3_source_run(const CdvizSource *src)
{
	MemoryContext pollcxt = AllocSetContextCreate(CurrentMemoryContext, "cdviz source poll",
												  ALLOCSET_DEFAULT_SIZES);
	/* s3://bucket/prefix, checked by cdviz._source_check() */
	const char *bucket = src->location + strlen("s3://");
	const char *slash = strchr(bucket, '/');

	set_variable("cdviz.s3_bucket", slash ? pnstrdup(bucket, slash - bucket) : bucket);
	set_variable("cdviz.s3_prefix", slash ? slash + 1 : "");
	set_variable("cdviz.s3_endpoint", cdviz_source_opt_text(src, "endpoint", ""));
	set_variable("cdviz.s3_region", cdviz_source_opt_text(src, "region", "us-east-1"));
	set_variable("cdviz.s3_path_style", cdviz_source_opt_bool(src, "path_style", false) ? "on" : "off");
	set_variable("cdviz.s3_access_key_id", cdviz_source_opt_text(src, "access_key_id", ""));
	set_variable("cdviz.s3_secret_access_key", cdviz_source_opt_text(src, "secret_access_key", ""));
	set_variable("cdviz.s3_pattern", cdviz_source_opt_text(src, "pattern", DEFAULT_PATTERN));
	set_int_variable("cdviz.s3_poll_interval", cdviz_source_opt_int(src, "poll_interval", 30));
	set_read_options(src);

	while (!cdviz_source_stopping())
	{
		if (cdviz_worker_wait_for_extension())
		{
			MemoryContext old = MemoryContextSwitchTo(pollcxt);
			int			wait_s;

			pgstat_report_activity(STATE_RUNNING, "cdviz source: polling S3");
			/* the wait grows after failures, up to 10 minutes */
			wait_s = poll_s3_run();
			MemoryContextSwitchTo(old);
			MemoryContextReset(pollcxt);
			sleep_until(in_seconds(wait_s));
		}
	}
}
