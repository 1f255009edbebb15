/*
 * poll_report.c
 *	  A test report (a source with format junit or tap) turned into stored
 *	  events, with its progress saved in the same transaction.
 *
 * A report is read whole, in one transaction: parsed by the core's
 * readers (src/core/report.h) into CDEvents test events, stored, and the
 * file's progress row written as read.  Its identity is its path (or S3
 * key) and the SHA-256 of its content, so the events' ids are the same
 * whenever the same content is read, and the lake deduplicates them.
 * A report read before and found again with the same content (a rewrite,
 * a copy over it) stores nothing: its events may take their timestamp
 * from the file's modification time, which the rewrite changed.
 *
 * A report the parser refuses (malformed, entities declared, too large)
 * is one dead letter with the parser's problems and an empty raw: the
 * refused text is not kept, since an external entity may have named a
 * file the report's writer must not read through us.
 */
#include "postgres.h"

#include <unistd.h>

#include <json-c/json.h>

#include "common/cryptohash.h"
#include "common/sha2.h"
#include "miscadmin.h"
#include "utils/memutils.h"

#include "core/jsonl.h"
#include "core/report.h"
#include "poll/poll.h"
#include "store/store.h"

/* See poll.h: a .json document, a report, a file's start. */
char *
poll_read_prefix(PollFile *f, size_t len)
{
	char	   *buf = palloc(len + 1);
	size_t		got = 0;

	while (got < len)
	{
		ssize_t		n = pread(f->fd, buf + got, len - got, (off_t) got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not read \"%s\": %m", f->name)));
		if (n == 0)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("\"%s\" shrank while it was read", f->name)));
		got += (size_t) n;
	}
	buf[len] = '\0';
	return buf;
}

/* The content's SHA-256, in hex. */
static char *
content_sha256(const char *data, size_t len)
{
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	char	   *hex = palloc(PG_SHA256_DIGEST_LENGTH * 2 + 1);

	if (ctx == NULL || pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) data, len) < 0 ||
		pg_cryptohash_final(ctx, digest, sizeof(digest)) < 0)
		elog(ERROR, "%s: could not compute SHA-256: %s", POLL_WHO, pg_cryptohash_error(ctx));
	pg_cryptohash_free(ctx);
	for (int i = 0; i < PG_SHA256_DIGEST_LENGTH; i++)
		sprintf(hex + i * 2, "%02x", digest[i]);
	return hex;
}

/* The file's name without its folders: a TAP file's suite name. */
static const char *
base_name(const char *name)
{
	const char *slash = strrchr(name, '/');

	return slash ? slash + 1 : name;
}

/* Keep a refused report as one dead letter, without its text. */
static void
reject_report(PollFile *f, const CdvizProblems *problems, PollDelta *delta)
{
	(void) cdviz_store_dead_letter(f->origin, f->name, "", 0, problems);
	delta->rejected = 1;
	delta->status = "rejected";
}

/* Store the events of a json-c array of them. */
static void
store_events(PollFile *f, struct json_object *events, PollDelta *delta)
{
	int			n = (int) json_object_array_length(events);
	int			batch = f->cfg->batch_lines;
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "cdviz source report",
											  ALLOCSET_DEFAULT_SIZES);

	for (int from = 0; from < n; from += batch)
	{
		int			count = Min(batch, n - from);
		MemoryContext old = MemoryContextSwitchTo(cxt);
		CdvizItem  *items = palloc0(sizeof(CdvizItem) * count);
		CdvizStoreResult res;

		for (int i = 0; i < count; i++)
		{
			struct json_object *ev = json_object_array_get_idx(events, from + i);
			size_t		len;
			const char *text = json_object_to_json_string_length(ev, JSON_C_TO_STRING_PLAIN |
																 JSON_C_TO_STRING_NOSLASHESCAPE,
																 &len);

			items[i].raw = pnstrdup(text, len);
			items[i].raw_len = len;
			/* the store frees what it is given: the array keeps its own */
			items[i].json = json_object_get(ev);
			items[i].origin_ref = psprintf("%s#%d", f->name, from + i);
		}
		res = cdviz_store_items(items, count, f->origin);
		cdviz_store_release_items(items, count);
		delta->events += res.stored;
		delta->duplicates += res.duplicates;
		delta->rejected += res.rejected;
		MemoryContextSwitchTo(old);
		MemoryContextReset(cxt);
	}
	MemoryContextDelete(cxt);
}

/* See poll.h. */
void
poll_read_report(PollFile *f, PollDelta *delta)
{
	const PollConfig *cfg = f->cfg;
	CdvizReportFormat format = cfg->format == POLL_FORMAT_JUNIT ?
		CDVIZ_REPORT_JUNIT : CDVIZ_REPORT_TAP;
	uint64		max = (uint64) cfg->max_report_size * 1024;
	CdvizProblems problems;
	CdvizReportLimits limits = {0};
	CdvizReportOptions options = {0};
	struct json_object *model;
	struct json_object *events;
	char	   *data;

	delta->offset = f->size;
	delta->lines = 0;
	delta->hash = CDVIZ_HASH_INIT;
	delta->status = "read";
	cdviz_problems_init(&problems);
	if (f->size > max)
	{
		cdviz_problems_add(&problems, "$",
						   "report of " UINT64_FORMAT " bytes is larger than the source's max_report_size (%d kB)",
						   f->size, cfg->max_report_size);
		reject_report(f, &problems, delta);
		cdviz_problems_reset(&problems);
		f->save(f, delta);
		return;
	}
	data = poll_read_prefix(f, (size_t) f->size);
	delta->hash = cdviz_hash_update(CDVIZ_HASH_INIT, data, (size_t) f->size);
	if (f->read_before && f->read_hash == delta->hash)
	{
		/* the same content as the last reading: its events are stored */
		f->save(f, delta);
		return;
	}

	limits.max_bytes = (size_t) max;
	model = cdviz_report_parse(format, data, (size_t) f->size, &limits, &problems);
	if (model == NULL)
	{
		reject_report(f, &problems, delta);
		cdviz_problems_reset(&problems);
		f->save(f, delta);
		return;
	}
	options.file_id = psprintf("%s@sha256:%s", f->id_name, content_sha256(data, (size_t) f->size));
	options.source = cfg->source_uri;
	options.suite_name = base_name(f->id_name);
	options.environment_id = cfg->environment[0] ? cfg->environment : NULL;
	options.default_timestamp_us = f->mtime_us;
	events = cdviz_report_to_cdevents(model, &options, &problems);
	json_object_put(model);
	if (events == NULL)
		reject_report(f, &problems, delta);
	else
	{
		/* json-c memory is not the memory context's: freed on errors too */
		PG_TRY();
		{
			store_events(f, events, delta);
		}
		PG_FINALLY();
		{
			json_object_put(events);
		}
		PG_END_TRY();
	}
	cdviz_problems_reset(&problems);
	f->save(f, delta);
}
