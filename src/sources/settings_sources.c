/*
 * settings_sources.c
 *	  The sources the settings define, as rows of cdviz.sources:
 *	  settings.folder (cdviz.fs_*), settings.s3 (cdviz.s3_*) and
 *	  settings.nats (cdviz.nats_*), written by the launcher at start and on
 *	  SIGHUP through cdviz._source_sync_settings(), which checks them as
 *	  create_source() would and leaves an unchanged row alone.
 *
 * A group of settings that a row cannot hold (a location another source
 * reads already, a move without a done_path) is logged and left out; the
 * other groups are written all the same.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/json.h"

#include "common/json.h"
#include "common/worker.h"
#include "dispatch/dispatch.h"
#include "poll/poll.h"
#include "sources/source.h"

/* One group of settings: a kind, a location and options (JSON text). */
typedef struct SettingsSource
{
	const char *kind;
	const char *location;		/* NULL or empty: no source */
	StringInfoData options;
} SettingsSource;

static void
add_text(StringInfo buf, const char *key, const char *value)
{
	cdviz_json_add_text(buf, key, value ? value : "");
}

static void
add_int(StringInfo buf, const char *key, int value)
{
	appendStringInfoString(buf, buf->len > 1 ? ", " : "");
	escape_json(buf, key);
	appendStringInfo(buf, ": %d", value);
}

static void
add_read_options(StringInfo buf)
{
	add_int(buf, "batch_lines", cdviz_poll_batch_lines);
	add_int(buf, "max_line_size", cdviz_poll_max_line_size);
	add_int(buf, "max_json_size", cdviz_poll_max_json_size);
}

static void
sync_one(void *arg)
{
	SettingsSource *s = (SettingsSource *) arg;
	Oid			types[3] = {TEXTOID, TEXTOID, JSONBOID};
	Datum		args[3];
	char		nulls[3] = {' ', s->location ? ' ' : 'n', ' '};

	args[0] = CStringGetTextDatum(s->kind);
	args[1] = s->location ? CStringGetTextDatum(s->location) : (Datum) 0;
	args[2] = DirectFunctionCall1(jsonb_in, CStringGetDatum(s->options.data));
	if (SPI_execute_with_args("SELECT cdviz._source_sync_settings($1, $2, $3)",
							  3, types, args, nulls, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "cdviz sources: cdviz._source_sync_settings() failed");
}

/* See source.h. */
void
cdviz_sources_sync_settings(void)
{
	static const char *const after[] = {"keep", "delete", "move"};
	SettingsSource s[3];
	ErrorData  *edata;

	for (int i = 0; i < lengthof(s); i++)
	{
		initStringInfo(&s[i].options);
		appendStringInfoChar(&s[i].options, '{');
	}

	s[0].kind = "folder";
	s[0].location = cdviz_fs_path[0] ? poll_absolute_path(cdviz_fs_path) : NULL;
	add_int(&s[0].options, "poll_interval", cdviz_fs_poll_interval);
	add_text(&s[0].options, "pattern", cdviz_fs_pattern);
	if (cdviz_fs_after == POLL_AFTER_MOVE && cdviz_fs_done_path[0] == '\0')
	{
		/* as the folder source always did: read, and keep the files */
		ereport(WARNING,
				(errmsg("cdviz sources: cdviz.fs_after is \"move\" but cdviz.fs_done_path is empty: files are kept")));
		add_text(&s[0].options, "after", "keep");
	}
	else
		add_text(&s[0].options, "after", after[cdviz_fs_after]);
	if (cdviz_fs_done_path[0])
		add_text(&s[0].options, "done_path", poll_absolute_path(cdviz_fs_done_path));
	add_read_options(&s[0].options);

	s[1].kind = "s3";
	s[1].location = cdviz_s3_bucket[0] ? psprintf("s3://%s/%s", cdviz_s3_bucket, cdviz_s3_prefix) : NULL;
	add_text(&s[1].options, "endpoint", cdviz_s3_endpoint);
	add_text(&s[1].options, "region", cdviz_s3_region);
	appendStringInfo(&s[1].options, ", \"path_style\": %s", cdviz_s3_path_style ? "true" : "false");
	add_text(&s[1].options, "access_key_id", cdviz_s3_access_key_id);
	add_text(&s[1].options, "secret_access_key", cdviz_s3_secret_access_key);
	add_int(&s[1].options, "poll_interval", cdviz_s3_poll_interval);
	add_text(&s[1].options, "pattern", cdviz_s3_pattern);
	add_read_options(&s[1].options);

	s[2].kind = "nats";
	s[2].location = cdviz_nats_subjects[0] ? cdviz_nats_subjects : NULL;
	add_text(&s[2].options, "url", cdviz_nats_url);
	add_text(&s[2].options, "stream", cdviz_nats_stream);
	add_text(&s[2].options, "consumer", cdviz_nats_consumer);

	for (int i = 0; i < lengthof(s); i++)
	{
		appendStringInfoChar(&s[i].options, '}');
		if (cdviz_worker_transaction("writing the sources of the settings", sync_one, &s[i], &edata)
			== CDVIZ_TX_FAILED)
		{
			ereport(WARNING,
					(errmsg("cdviz sources: the %s source of the settings is not shown in cdviz.sources: %s",
							s[i].kind, edata->message),
					 edata->hint ? errhint("%s", edata->hint) : 0));
			FreeErrorData(edata);
		}
	}
}
