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

#include <fnmatch.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "poll/poll.h"
#include "common/worker.h"

char	   *cdviz_fs_path = NULL;
int			cdviz_fs_poll_interval = 5;
char	   *cdviz_fs_pattern = NULL;
int			cdviz_fs_after = POLL_AFTER_KEEP;
char	   *cdviz_fs_done_path = NULL;
char	   *cdviz_s3_endpoint = NULL;
char	   *cdviz_s3_bucket = NULL;
char	   *cdviz_s3_prefix = NULL;
char	   *cdviz_s3_region = NULL;
char	   *cdviz_s3_access_key_id = NULL;
char	   *cdviz_s3_secret_access_key = NULL;
bool		cdviz_s3_path_style = false;
int			cdviz_s3_poll_interval = 30;
char	   *cdviz_s3_pattern = NULL;
int			cdviz_poll_batch_lines = 5000;
int			cdviz_poll_max_line_size = 1024;
int			cdviz_poll_max_json_size = 64 * 1024;

static const struct config_enum_entry after_options[] = {
	{"keep", POLL_AFTER_KEEP, false},
	{"delete", POLL_AFTER_DELETE, false},
	{"move", POLL_AFTER_MOVE, false},
	{NULL, 0, false}
};

#define DEFAULT_PATTERN "*.json,*.jsonl,*.ndjson"

PGDLLEXPORT void cdviz_poller_main(Datum arg);

/* Define the settings and register the worker; see poll.h. */
void
cdviz_poll_init(void)
{
	cdviz_worker_define_gucs();
	DefineCustomStringVariable("cdviz.fs_path",
							   "Folder the cdviz poller reads CDEvents files from (sub-folders included); empty disables.",
							   "A relative path is relative to the data directory.  Reloaded on SIGHUP.",
							   &cdviz_fs_path, "", PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("cdviz.fs_poll_interval",
							"Seconds between two looks at cdviz.fs_path.",
							"A new or changed file is read once it looked the same at two polls.",
							&cdviz_fs_poll_interval, 5, 1, 86400,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomStringVariable("cdviz.fs_pattern",
							   "Comma-separated file name patterns the folder source reads.",
							   "Shell patterns matched against the file name; *.json files hold one event or an array, "
							   "other files one event per line (JSON Lines).  Names starting with a dot are ignored.",
							   &cdviz_fs_pattern, DEFAULT_PATTERN, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomEnumVariable("cdviz.fs_after",
							 "What the folder source does with a file read to its end: keep, delete or move.",
							 "keep: lines appended later are read too; delete; move: into cdviz.fs_done_path.",
							 &cdviz_fs_after, POLL_AFTER_KEEP, after_options,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("cdviz.fs_done_path",
							   "Folder that cdviz.fs_after = move moves read files into, keeping their sub-folders.",
							   "Must be on the same file system as cdviz.fs_path; it is not read even when inside it.",
							   &cdviz_fs_done_path, "", PGC_SIGHUP, 0, NULL, NULL, NULL);

	DefineCustomStringVariable("cdviz.s3_endpoint",
							   "S3 endpoint URL, e.g. https://s3.eu-west-1.amazonaws.com or http://127.0.0.1:9000.",
							   "https:// is assumed without a scheme; empty means AWS in cdviz.s3_region.",
							   &cdviz_s3_endpoint, "", PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("cdviz.s3_bucket",
							   "S3 bucket the cdviz poller reads CDEvents objects from; empty disables.",
							   NULL, &cdviz_s3_bucket, "", PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("cdviz.s3_prefix",
							   "Only objects whose key starts with this prefix are read.",
							   NULL, &cdviz_s3_prefix, "", PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("cdviz.s3_region",
							   "Region used in the AWS Signature V4 of S3 requests.",
							   NULL, &cdviz_s3_region, "us-east-1", PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("cdviz.s3_access_key_id",
							   "Access key id of the S3 credentials.",
							   "Visible to superusers only.",
							   &cdviz_s3_access_key_id, "", PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("cdviz.s3_secret_access_key",
							   "Secret access key of the S3 credentials.",
							   "Visible to superusers only.",
							   &cdviz_s3_secret_access_key, "", PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomBoolVariable("cdviz.s3_path_style",
							 "Address the bucket in the URL path (endpoint/bucket/key) rather than as a host name.",
							 "Needed by most S3-compatible servers (MinIO, s3rver, Ceph).",
							 &cdviz_s3_path_style, false, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("cdviz.s3_poll_interval",
							"Seconds between two listings of the S3 bucket.",
							"After a failure the poller waits longer, doubling up to 10 minutes.",
							&cdviz_s3_poll_interval, 30, 1, 86400,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomStringVariable("cdviz.s3_pattern",
							   "Comma-separated patterns for the last segment of the S3 keys read.",
							   "As cdviz.fs_pattern.",
							   &cdviz_s3_pattern, DEFAULT_PATTERN, PGC_SIGHUP, 0, NULL, NULL, NULL);

	DefineCustomIntVariable("cdviz.poll_batch_lines",
							"Lines (or array elements) the poller stores per transaction.",
							"Each transaction also records how far the file was read.",
							&cdviz_poll_batch_lines, 5000, 1, 1000000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("cdviz.poll_max_line_size",
							"Longest JSON Lines line the poller reads; longer lines are rejected.",
							"Also the most of a non-JSON file kept in cdviz.rejected_events.",
							&cdviz_poll_max_line_size, 1024, 1, 1024 * 1024,
							PGC_SIGHUP, GUC_UNIT_KB, NULL, NULL, NULL);
	DefineCustomIntVariable("cdviz.poll_max_json_size",
							"Largest .json file (one event or an array) the poller reads; larger ones are rejected.",
							"Such files are read whole into memory; use JSON Lines for bigger ones.",
							&cdviz_poll_max_json_size, 64 * 1024, 1, 1024 * 1024,
							PGC_SIGHUP, GUC_UNIT_KB, NULL, NULL, NULL);

	cdviz_worker_register("cdviz poller", "cdviz poller", "cdviz_poller_main",
						  CDVIZ_WORKER_RETRY_SECONDS);
}

/* See poll.h. */
bool
poll_name_matches(const char *name, const char *patterns)
{
	char	   *list = pstrdup(patterns);
	char	   *save = NULL;
	bool		match = false;

	for (char *tok = strtok_r(list, ",", &save); tok && !match; tok = strtok_r(NULL, ",", &save))
	{
		char	   *end;

		while (*tok == ' ' || *tok == '\t')
			tok++;
		end = tok + strlen(tok);
		while (end > tok && (end[-1] == ' ' || end[-1] == '\t'))
			*--end = '\0';
		if (*tok && fnmatch(tok, name, 0) == 0)
			match = true;
	}
	pfree(list);
	return match;
}

/* See poll.h. */
bool
poll_is_document(const char *name)
{
	size_t		len = strlen(name);

	return len >= 5 && pg_strcasecmp(name + len - 5, ".json") == 0;
}

/* Arguments of note_source(). */
typedef struct SourceNote
{
	const char *source;
	const char *kind;
	const char *error;
} SourceNote;

static void
note_source(void *arg)
{
	SourceNote *n = (SourceNote *) arg;
	Oid			types[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum		args[3];
	char		nulls[3] = {' ', ' ', n->error ? ' ' : 'n'};

	args[0] = CStringGetTextDatum(n->source);
	args[1] = CStringGetTextDatum(n->kind);
	args[2] = n->error ? CStringGetTextDatum(n->error) : (Datum) 0;
	if (SPI_execute_with_args("INSERT INTO cdviz.source_polls AS s (source, kind, last_poll_at, "
							  " last_success_at, last_error, last_error_at) "
							  "VALUES ($1, $2, now(), CASE WHEN $3 IS NULL THEN now() END, $3, "
							  " CASE WHEN $3 IS NOT NULL THEN now() END) "
							  "ON CONFLICT (source) DO UPDATE SET last_poll_at = now(), "
							  " last_success_at = CASE WHEN $3 IS NULL THEN now() ELSE s.last_success_at END, "
							  " last_error = $3, "
							  " last_error_at = CASE WHEN $3 IS NOT NULL THEN now() ELSE s.last_error_at END",
							  3, types, args, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "cdviz poller: updating cdviz.source_polls failed");
}

/* See poll.h. */
void
poll_note_source(const char *source, const char *kind, const char *error)
{
	SourceNote	n = {source, kind, error};

	(void) cdviz_worker_transaction("cdviz poller: noting the poll", note_source, &n, NULL);
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
