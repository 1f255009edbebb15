/*
 * poll_settings.c
 *	  The settings cdviz.fs_*, cdviz.s3_* and cdviz.poll_*: they define the
 *	  sources settings.folder and settings.s3, which the sources launcher
 *	  writes into cdviz.sources (src/sources/settings_sources.c).
 */
#include "postgres.h"

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

static const CdvizSetting settings[] = {
	{"cdviz.fs_path", "Folder the source settings.folder reads CDEvents files from (sub-folders included); empty: no such source.", "A relative path is relative to the data directory.  Reloaded on SIGHUP.", PGC_SIGHUP, 0, .string_var = &cdviz_fs_path, .string_default = ""},
	{"cdviz.fs_poll_interval", "Seconds between two looks at cdviz.fs_path.", "A new or changed file is read once it looked the same at two polls.", PGC_SIGHUP, GUC_UNIT_S, .int_var = &cdviz_fs_poll_interval, .int_default = 5, .min = 1, .max = 86400},
	{"cdviz.fs_pattern", "Comma-separated file name patterns the folder source reads.", "Shell patterns matched against the file name; *.json files hold one event or an array, other files one event per line (JSON Lines).  Names starting with a dot are ignored.", PGC_SIGHUP, 0, .string_var = &cdviz_fs_pattern, .string_default = DEFAULT_PATTERN},
	{"cdviz.fs_after", "What the folder source does with a file read to its end: keep, delete or move.", "keep: lines appended later are read too; delete; move: into cdviz.fs_done_path.", PGC_SIGHUP, 0, .int_var = &cdviz_fs_after, .int_default = POLL_AFTER_KEEP, .options = after_options},
	{"cdviz.fs_done_path", "Folder that cdviz.fs_after = move moves read files into, keeping their sub-folders.", "Must be on the same file system as cdviz.fs_path; it is not read even when inside it.", PGC_SIGHUP, 0, .string_var = &cdviz_fs_done_path, .string_default = ""},
	{"cdviz.s3_endpoint", "S3 endpoint URL, e.g. https://s3.eu-west-1.amazonaws.com or http://127.0.0.1:9000.", "https:// is assumed without a scheme; empty means AWS in cdviz.s3_region.", PGC_SIGHUP, 0, .string_var = &cdviz_s3_endpoint, .string_default = ""},
	{"cdviz.s3_bucket", "S3 bucket the source settings.s3 reads CDEvents objects from; empty: no such source.", NULL, PGC_SIGHUP, 0, .string_var = &cdviz_s3_bucket, .string_default = ""},
	{"cdviz.s3_prefix", "Only objects whose key starts with this prefix are read.", NULL, PGC_SIGHUP, 0, .string_var = &cdviz_s3_prefix, .string_default = ""},
	{"cdviz.s3_region", "Region used in the AWS Signature V4 of S3 requests.", NULL, PGC_SIGHUP, 0, .string_var = &cdviz_s3_region, .string_default = "us-east-1"},
	{"cdviz.s3_access_key_id", "Access key id of the S3 credentials.", "Visible to superusers only.", PGC_SIGHUP, GUC_SUPERUSER_ONLY, .string_var = &cdviz_s3_access_key_id, .string_default = ""},
	{"cdviz.s3_secret_access_key", "Secret access key of the S3 credentials.", "Visible to superusers only.", PGC_SIGHUP, GUC_SUPERUSER_ONLY, .string_var = &cdviz_s3_secret_access_key, .string_default = ""},
	{"cdviz.s3_path_style", "Address the bucket in the URL path (endpoint/bucket/key) rather than as a host name.", "Needed by most S3-compatible servers (MinIO, s3rver, Ceph).", PGC_SIGHUP, 0, .bool_var = &cdviz_s3_path_style, .bool_default = false},
	{"cdviz.s3_poll_interval", "Seconds between two listings of the S3 bucket.", "After a failure the poller waits longer, doubling up to 10 minutes.", PGC_SIGHUP, GUC_UNIT_S, .int_var = &cdviz_s3_poll_interval, .int_default = 30, .min = 1, .max = 86400},
	{"cdviz.s3_pattern", "Comma-separated patterns for the last segment of the S3 keys read.", "As cdviz.fs_pattern.", PGC_SIGHUP, 0, .string_var = &cdviz_s3_pattern, .string_default = DEFAULT_PATTERN},
	{"cdviz.poll_batch_lines", "Lines (or array elements) the poller stores per transaction.", "Each transaction also records how far the file was read.", PGC_SIGHUP, 0, .int_var = &cdviz_poll_batch_lines, .int_default = 5000, .min = 1, .max = 1000000},
	{"cdviz.poll_max_line_size", "Longest JSON Lines line the poller reads; longer lines are rejected.", "Also the most of a non-JSON file kept in cdviz.rejected_events.", PGC_SIGHUP, GUC_UNIT_KB, .int_var = &cdviz_poll_max_line_size, .int_default = 1024, .min = 1, .max = 1024 * 1024},
	{"cdviz.poll_max_json_size", "Largest .json file (one event or an array) the poller reads; larger ones are rejected.", "Such files are read whole into memory; use JSON Lines for bigger ones.", PGC_SIGHUP, GUC_UNIT_KB, .int_var = &cdviz_poll_max_json_size, .int_default = 64 * 1024, .min = 1, .max = 1024 * 1024},
};

/* Define the settings (from _PG_init, preloaded). */
void
poll_define_settings(void)
{
	cdviz_worker_define_settings(settings, lengthof(settings));
}

/* See poll.h: the readers run in the sources' workers (src/sources/). */
void
cdviz_poll_init(void)
{
	poll_define_settings();
}
