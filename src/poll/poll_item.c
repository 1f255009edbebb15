/*
 * poll_item.c
 *	  A file (or object) read whole handed to the source's transformer,
 *	  with what the transformer is told of it, or to the built-in mapping
 *	  of the source's format: webhook/source_item.h does either, and keeps
 *	  the file as a dead letter when the transformer raises.
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "utils/json.h"

#include "common/json.h"
#include "common/rfc3339.h"
#include "poll/poll.h"

/* The file's name without its folders. */
static const char *
base_name(const char *name)
{
	const char *slash = strrchr(name, '/');

	return slash ? slash + 1 : name;
}

/* See poll.h. */
Jsonb *
poll_item_meta(PollFile *f, const char *sha256)
{
	const PollConfig *cfg = f->cfg;
	static const char *const formats[] = {"cdevents", "junit", "tap", "metadata"};
	StringInfoData buf;
	ErrorData  *edata = NULL;
	Jsonb	   *meta;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	cdviz_json_add_text(&buf, "source", cfg->source_name);
	cdviz_json_add_text(&buf, "kind", f->bucket ? "s3" : "folder");
	cdviz_json_add_text(&buf, "format", formats[cfg->format]);
	cdviz_json_add_text(&buf, "id", psprintf("%s@sha256:%s", f->id_name, sha256));
	cdviz_json_add_text(&buf, "source_uri", cfg->source_uri);
	if (f->bucket)
	{
		cdviz_json_add_text(&buf, "bucket", f->bucket);
		cdviz_json_add_text(&buf, "key", f->id_name);
		cdviz_json_add_text(&buf, "uri", f->name);
		if (f->etag)
			cdviz_json_add_text(&buf, "etag", f->etag);
	}
	else
	{
		cdviz_json_add_text(&buf, "path", f->name);
		cdviz_json_add_text(&buf, "uri", psprintf("file://%s", f->name));
	}
	cdviz_json_add_text(&buf, "name", base_name(f->id_name));
	appendStringInfo(&buf, ", \"size\": " UINT64_FORMAT, f->size);
	cdviz_json_add_text(&buf, "mtime", cdviz_rfc3339_utc(cdviz_unix_us_to_timestamptz(f->mtime_us)));
	cdviz_json_add_text(&buf, "sha256", sha256);
	appendStringInfoChar(&buf, '}');
	meta = cdviz_jsonb_parse(buf.data, buf.len, &edata);
	if (meta == NULL)
		ReThrowError(edata);
	return meta;
}

/* See poll.h. */
void
poll_item_store(PollFile *f, Jsonb *meta, Jsonb *body, CdvizSourceMapping builtin, void *arg,
				PollDelta *delta)
{
	CdvizSourceItem item;
	CdvizStoreResult res;
	char	   *error;

	memset(&item, 0, sizeof(item));
	item.source = f->cfg->source_name;
	item.transformer = f->cfg->transformer;
	item.origin = f->origin;
	item.origin_ref = f->name;
	item.meta = meta;
	item.body = body;
	item.batch_events = Min(f->cfg->batch_lines, CDVIZ_SOURCE_BATCH);
	item.builtin = builtin;
	item.builtin_arg = arg;
	res = cdviz_source_item_store(&item, &error);
	if (error)
		ereport(LOG,
				(errmsg("%s: %s: %s", POLL_WHO, f->name, error),
				 errhint("The file is kept in cdviz.rejected_events; fix the transformer, then SELECT * FROM cdviz.retransform_source('%s').",
						 f->cfg->source_name)));
	delta->events += res.stored;
	delta->duplicates += res.duplicates;
	delta->rejected += res.rejected;
}
