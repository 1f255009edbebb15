/*
 * poll_report.c
 *	  A file read whole, in one transaction, turned into stored events with
 *	  its progress saved in the same transaction: a test report (a source
 *	  with format junit or tap), or a file of a source with format
 *	  metadata, whose content is only hashed.
 *
 * Either is one item for the source's transformer (poll_item.c), its
 * body the report's model (src/core/report.h), or none for metadata; a
 * report without transformer is stored by the built-in mapping.  The
 * metadata of a file is hashed in chunks of HASH_CHUNK bytes: memory
 * stays bounded whatever its size.
 *
 * A report is read whole, in one transaction: parsed by the core's
 * readers (src/core/report.h) into its model, within the source's
 * max_report_size and max_report_cases, the model made into CDEvents
 * test events that are stored a batch (the item's batch_events:
 * CDVIZ_SOURCE_BATCH, or batch_lines when smaller) at a time as the core
 * hands them over, and the file's progress row written as read.
 * The mapping refuses a model before it hands over any event, and an
 * error in a batch aborts the transaction: a report is stored whole or
 * kept as a dead letter.  Its identity is its path (or S3
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

#include "common/json.h"
#include "common/subxact.h"
#include "core/jsonl.h"
#include "core/report.h"
#include "poll/poll.h"
#include "store/store.h"

/* What a file of format metadata is read by, at a time, to hash it. */
#define HASH_CHUNK (256 * 1024)

/*
 * Read up to len bytes of f at offset into buf: how many, at least one;
 * raises when the file cannot be read or ends before offset.
 */
static size_t
read_at(PollFile *f, char *buf, size_t len, uint64 offset)
{
	for (;;)
	{
		ssize_t		n = pread(f->fd, buf, len, (off_t) offset);

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
		return (size_t) n;
	}
}

/* See poll.h: a .json document, a report, a file's start. */
char *
poll_read_prefix(PollFile *f, size_t len)
{
	char	   *buf = palloc(len + 1);
	size_t		got = 0;

	while (got < len)
		got += read_at(f, buf + got, len - got, (uint64) got);
	buf[len] = '\0';
	return buf;
}

/*
 * The SHA-256 of f's content, in hex, and its hash for the progress row
 * (*fnv): of data (f->size bytes) when given, else read from f in chunks.
 */
static char *
content_hashes(PollFile *f, const char *data, uint64 *fnv)
{
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	char	   *hex = palloc(PG_SHA256_DIGEST_LENGTH * 2 + 1);
	char	   *chunk = data ? NULL : palloc(HASH_CHUNK);
	uint64		done = 0;

	*fnv = CDVIZ_HASH_INIT;
	if (ctx == NULL || pg_cryptohash_init(ctx) < 0)
		elog(ERROR, "%s: could not compute SHA-256: %s", POLL_WHO, pg_cryptohash_error(ctx));
	while (done < f->size)
	{
		const char *part = data ? data : chunk;
		size_t		n = data ? (size_t) f->size :
			read_at(f, chunk, (size_t) Min(f->size - done, (uint64) HASH_CHUNK), done);

		*fnv = cdviz_hash_update(*fnv, part, n);
		if (pg_cryptohash_update(ctx, (const uint8 *) part, n) < 0)
			elog(ERROR, "%s: could not compute SHA-256: %s", POLL_WHO, pg_cryptohash_error(ctx));
		done += (uint64) n;
		CHECK_FOR_INTERRUPTS();
	}
	if (pg_cryptohash_final(ctx, digest, sizeof(digest)) < 0)
		elog(ERROR, "%s: could not compute SHA-256: %s", POLL_WHO, pg_cryptohash_error(ctx));
	pg_cryptohash_free(ctx);
	for (int i = 0; i < PG_SHA256_DIGEST_LENGTH; i++)
		sprintf(hex + i * 2, "%02x", digest[i]);
	if (chunk)
		pfree(chunk);
	return hex;
}

/* Keep a refused report as one dead letter, without its text. */
static void
reject_report(PollFile *f, const CdvizProblems *problems, PollDelta *delta)
{
	(void) cdviz_store_dead_letter(f->origin, f->name, "", 0, problems);
	delta->rejected = 1;
	delta->status = "rejected";
}

/*
 * What the built-in mapping of a report carries from batch to batch: the
 * events are stored as the core hands them over, so that memory holds
 * the model and one batch, whatever the number of cases.
 */
typedef struct ReportMapping
{
	PollFile   *f;
	struct json_object *model;
	const char *sha256;			/* of its content */
	PollDelta  *delta;
	MemoryContext cxt;			/* a batch's items, reset after each */
	struct json_object *events; /* the batch being stored */
	int			next;			/* the next event's position in the report */
	CdvizStoreResult total;
	ErrorData  *error;			/* what a batch raised, raised again once
								 * the core has freed its own memory */
} ReportMapping;

/* Store the batch of events rm->events, in rm->cxt, reset after it. */
static void
store_events(void *arg)
{
	ReportMapping *rm = (ReportMapping *) arg;
	int			count = (int) json_object_array_length(rm->events);
	MemoryContext old = MemoryContextSwitchTo(rm->cxt);
	CdvizItem  *items = palloc0(sizeof(CdvizItem) * count);
	CdvizStoreResult res;

	for (int i = 0; i < count; i++)
	{
		struct json_object *ev = json_object_array_get_idx(rm->events, i);
		size_t		len;
		const char *text = json_object_to_json_string_length(ev, JSON_C_TO_STRING_PLAIN |
															 JSON_C_TO_STRING_NOSLASHESCAPE,
															 &len);

		items[i].raw = pnstrdup(text, len);
		items[i].raw_len = len;
		/* the store frees what it is given: the batch keeps its own */
		items[i].json = json_object_get(ev);
		items[i].origin_ref = psprintf("%s#%d", rm->f->name, rm->next + i);
	}
	res = cdviz_store_items(items, count, rm->f->origin);
	cdviz_store_release_items(items, count);
	rm->total.stored += res.stored;
	rm->total.duplicates += res.duplicates;
	rm->total.rejected += res.rejected;
	rm->next += count;
	MemoryContextSwitchTo(old);
	MemoryContextReset(rm->cxt);
}

/*
 * CdvizReportEmit: store a batch.  An error is kept for report_builtin()
 * to raise again once the core has freed its memory, which is not the
 * memory context's.
 */
static bool
store_batch(struct json_object *events, void *arg)
{
	ReportMapping *rm = (ReportMapping *) arg;

	rm->events = events;
	rm->error = cdviz_catch(store_events, rm);
	return rm->error == NULL;
}

/*
 * CdvizSourceMapping of reports: the events of the model, stored batch by
 * batch in the item's transaction, or a dead letter when the model cannot
 * be made into events (refused before any is stored: a report is stored
 * whole or not at all).
 */
static CdvizStoreResult
report_builtin(const CdvizSourceItem *item, void *arg)
{
	ReportMapping *rm = (ReportMapping *) arg;
	PollFile   *f = rm->f;
	const PollConfig *cfg = f->cfg;
	CdvizReportOptions options = {0};
	CdvizProblems problems;
	CdvizStoreResult res = {0};
	const char *slash = strrchr(f->id_name, '/');
	bool		ok;

	/* the item's id in its meta (poll_item_meta()) */
	options.file_id = psprintf("%s@sha256:%s", f->id_name, rm->sha256);
	options.source = cfg->source_uri;
	/* a TAP file's suite is named after the file */
	options.suite_name = slash ? slash + 1 : f->id_name;
	options.environment_id = cfg->environment[0] ? cfg->environment : NULL;
	options.default_timestamp_us = f->mtime_us;
	options.max_cases = cfg->max_report_cases;
	rm->cxt = AllocSetContextCreate(CurrentMemoryContext, "cdviz source report",
									ALLOCSET_DEFAULT_SIZES);
	cdviz_problems_init(&problems);
	ok = cdviz_report_map(rm->model, &options, (size_t) item->batch_events,
						  store_batch, rm, &problems);
	MemoryContextDelete(rm->cxt);
	if (rm->error != NULL)
	{
		cdviz_problems_reset(&problems);
		ReThrowError(rm->error);
	}
	if (!ok)
	{
		(void) cdviz_store_dead_letter(f->origin, f->name, "", 0, &problems);
		cdviz_problems_reset(&problems);
		rm->delta->status = "rejected";
		res.rejected = 1;
		return res;
	}
	cdviz_problems_reset(&problems);
	return rm->total;
}

/*
 * A file of format metadata: not parsed, hashed; its content read before
 * stores nothing again (only its time changed).
 */
static void
read_metadata(PollFile *f, PollDelta *delta)
{
	uint64		fnv;
	char	   *sha256 = content_hashes(f, NULL, &fnv);

	delta->hash = fnv;
	if (!(f->read_before && f->read_hash == fnv))
		poll_item_store(f, poll_item_meta(f, sha256), NULL, NULL, NULL, delta);
	f->save(f, delta);
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
	ReportMapping rm = {0};
	Jsonb	   *meta;
	Jsonb	   *body = NULL;
	char	   *data;
	char	   *sha256;

	delta->offset = f->size;
	delta->lines = 0;
	delta->hash = CDVIZ_HASH_INIT;
	delta->status = "read";
	if (cfg->format == POLL_FORMAT_METADATA)
	{
		read_metadata(f, delta);
		return;
	}
	rm.f = f;
	rm.delta = delta;
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
	sha256 = content_hashes(f, data, &delta->hash);
	rm.sha256 = sha256;
	if (f->read_before && f->read_hash == delta->hash)
	{
		/* the same content as the last reading: its events are stored */
		f->save(f, delta);
		return;
	}

	limits.max_bytes = (size_t) max;
	limits.max_cases = cfg->max_report_cases;
	rm.model = cdviz_report_parse(format, data, (size_t) f->size, &limits, &problems);
	if (rm.model == NULL)
	{
		reject_report(f, &problems, delta);
		cdviz_problems_reset(&problems);
		f->save(f, delta);
		return;
	}
	cdviz_problems_reset(&problems);
	PG_TRY();
	{
		meta = poll_item_meta(f, sha256);
		if (OidIsValid(cfg->transformer))
			body = cdviz_json_to_jsonb(rm.model);
		poll_item_store(f, meta, body, report_builtin, &rm, delta);
	}
	PG_FINALLY();
	{
		json_object_put(rm.model);
	}
	PG_END_TRY();
	f->save(f, delta);
}
