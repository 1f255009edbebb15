/*
 * poll_kinds.c
 *	  The folder and s3 kinds: one source read by the readers of src/poll/
 *	  in the source's own worker, at its interval.
 *
 * The readers take the source's location and options as a PollConfig,
 * and note each poll through it in cdviz.source_progress, as the other
 * kinds do.  Progress is kept per file (cdviz.fs_files) and object
 * (cdviz.s3_objects) under the source's location.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "common/worker.h"
#include "core/report.h"
#include "poll/poll.h"
#include "sources/kinds.h"

#define DEFAULT_PATTERN "*.json,*.jsonl,*.ndjson"
#define JUNIT_PATTERN "*.xml"
#define TAP_PATTERN "*.tap"
#define METADATA_PATTERN "*"

/* See PollNoteFunc: the poll in cdviz.source_progress, as every kind notes it. */
static void
note_poll(const void *arg, const char *error)
{
	cdviz_source_note_poll((const CdvizSource *) arg, error);
}

/*
 * The options both kinds take, with the defaults of cdviz.source_options();
 * uri is the source's URI, the context.source of the events of reports.
 */
static void
read_options(const CdvizSource *src, PollConfig *cfg, int poll_interval, const char *uri)
{
	const char *format = cdviz_source_opt_text(src, "format", "cdevents");
	const char *pattern = DEFAULT_PATTERN;

	memset(cfg, 0, sizeof(*cfg));
	cfg->source_name = src->name;
	cfg->transformer = src->transformer;
	cfg->location = src->location;
	/* a report's usual name, unless the source names its files */
	if (strcmp(format, "junit") == 0)
	{
		cfg->format = POLL_FORMAT_JUNIT;
		pattern = JUNIT_PATTERN;
	}
	else if (strcmp(format, "tap") == 0)
	{
		cfg->format = POLL_FORMAT_TAP;
		pattern = TAP_PATTERN;
	}
	else if (strcmp(format, "metadata") == 0)
	{
		cfg->format = POLL_FORMAT_METADATA;
		pattern = METADATA_PATTERN;
	}
	else
		cfg->format = POLL_FORMAT_CDEVENTS;
	cfg->pattern = cdviz_source_opt_text(src, "pattern", pattern);
	cfg->max_report_size = cdviz_source_opt_int(src, "max_report_size", 64 * 1024);
	cfg->max_report_cases = cdviz_source_opt_int(src, "max_report_cases",
												 CDVIZ_REPORT_DEFAULT_CASES);
	cfg->environment = cdviz_source_opt_text(src, "environment", "");
	cfg->source_uri = uri;
	cfg->poll_interval = cdviz_source_opt_int(src, "poll_interval", poll_interval);
	cfg->batch_lines = cdviz_source_opt_int(src, "batch_lines", 5000);
	cfg->max_line_size = cdviz_source_opt_int(src, "max_line_size", 1024);
	cfg->max_json_size = cdviz_source_opt_int(src, "max_json_size", 64 * 1024);
	cfg->done_path = "";
	cfg->note_poll = note_poll;
	cfg->note_arg = src;
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
	PollConfig	cfg;
	const char *after = cdviz_source_opt_text(src, "after", "keep");

	/* a folder's location is an absolute path: file:///path */
	read_options(src, &cfg, 5, psprintf("file://%s", src->location));
	cfg.after = strcmp(after, "delete") == 0 ? POLL_AFTER_DELETE
		: strcmp(after, "move") == 0 ? POLL_AFTER_MOVE : POLL_AFTER_KEEP;
	cfg.done_path = cdviz_source_opt_text(src, "done_path", "");

	while (!cdviz_source_stopping())
	{
		if (cdviz_worker_wait_for_extension())
		{
			MemoryContext old = MemoryContextSwitchTo(pollcxt);
			TimestampTz next = in_seconds(cfg.poll_interval);

			pgstat_report_activity(STATE_RUNNING, "polling the folder");
			poll_fs_run(&cfg);
			MemoryContextSwitchTo(old);
			MemoryContextReset(pollcxt);
			cdviz_source_sleep_until(next);
		}
	}
}

/* See kinds.h. */
void
cdviz_s3_source_run(const CdvizSource *src)
{
	MemoryContext pollcxt = AllocSetContextCreate(CurrentMemoryContext, "cdviz source poll",
												  ALLOCSET_DEFAULT_SIZES);
	PollConfig	cfg;

	/* s3://bucket/prefix/ is a URI already */
	read_options(src, &cfg, 30, src->location);
	cfg.endpoint = cdviz_source_opt_text(src, "endpoint", "");
	cfg.region = cdviz_source_opt_text(src, "region", "us-east-1");
	cfg.path_style = cdviz_source_opt_bool(src, "path_style", false);
	cfg.access_key_id = cdviz_source_opt_text(src, "access_key_id", "");
	cfg.secret_access_key = cdviz_source_opt_text(src, "secret_access_key", "");

	while (!cdviz_source_stopping())
	{
		if (cdviz_worker_wait_for_extension())
		{
			MemoryContext old = MemoryContextSwitchTo(pollcxt);
			int			wait_s;

			pgstat_report_activity(STATE_RUNNING, "polling S3");
			/* the wait grows after failures, up to 10 minutes */
			wait_s = poll_s3_run(&cfg);
			MemoryContextSwitchTo(old);
			MemoryContextReset(pollcxt);
			cdviz_source_sleep_until(in_seconds(wait_s));
		}
	}
}
