/*
 * poll_read.c
 *	  Turn one file (a folder's file or a downloaded S3 object) into stored
 *	  events, with its progress saved in the same transactions.
 *
 * Exactly once, across crashes: every transaction stores a chunk of lines
 * and moves the file's committed position past them, together.  A crash
 * loses the uncommitted chunk and its position alike, and the next reading
 * starts again at the committed position.  The JSON Lines reader is
 * abandoned after a failed transaction, since it has read past what was
 * committed.
 */
#include "postgres.h"

#include <unistd.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "core/jsonl.h"
#include "poll/poll.h"
#include "store/store.h"
#include "common/worker.h"

/* A chunk also ends after this much line text, whatever the line count. */
#define CHUNK_BYTES (8 * 1024 * 1024)

/* State of one chunk transaction. */
typedef struct ChunkState
{
	PollFile   *f;
	CdvizJsonlReader *reader;
	bool		finished;		/* out: nothing more to read now */
	PollDelta	delta;			/* out: what was committed */
} ChunkState;

/*
 * Keep a piece of input the store cannot judge (an overlong line) as a
 * dead letter with our own problem.  The excerpt is cut to its valid
 * prefix: text may hold neither NUL bytes nor invalid encoding.
 */
static void
reject_text(PollFile *f, const char *ref, const char *text, size_t len,
			const char *message)
{
	Oid			types[4] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		args[4];
	int			valid = pg_encoding_verifymbstr(GetDatabaseEncoding(), text, (int) len);

	args[0] = CStringGetTextDatum(f->origin);
	args[1] = CStringGetTextDatum(ref);
	args[2] = PointerGetDatum(cstring_to_text_with_len(text, valid));
	args[3] = CStringGetTextDatum(message);
	if (SPI_execute_with_args("INSERT INTO cdviz.rejected_events (origin, origin_ref, raw, problems) "
							  "VALUES ($1, $2, $3, pg_catalog.jsonb_build_array("
							  "pg_catalog.jsonb_build_object('path', '$', 'message', $4)))",
							  4, types, args, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "%s: storing a rejected line failed", POLL_WHO);
}

/* Store items[0..n) and add their fates to the delta. */
static void
store_items(PollFile *f, CdvizItem *items, int n, PollDelta *delta)
{
	CdvizStoreResult res;

	if (n == 0)
		return;
	res = cdviz_store_items(items, n, f->origin);
	cdviz_store_release_items(items, n);
	delta->events += res.stored;
	delta->duplicates += res.duplicates;
	delta->rejected += res.rejected;
}

/* Whether the unterminated end of the file is a whole JSON value already. */
static bool
tail_is_json(CdvizJsonlReader *r)
{
	size_t		len;
	const char *tail = cdviz_jsonl_tail(r, &len);
	CdvizProblems problems;
	struct json_object *doc;

	if (tail == NULL)
		return false;
	cdviz_problems_init(&problems);
	doc = cdviz_json_parse(tail, len, &problems);
	cdviz_problems_reset(&problems);
	if (doc == NULL)
		return false;
	cdviz_json_free(doc);
	return true;
}

/* One transaction's worth of JSON Lines: up to cdviz.poll_batch_lines. */
static void
read_chunk(void *arg)
{
	ChunkState *cs = (ChunkState *) arg;
	PollFile   *f = cs->f;
	CdvizJsonlReader *r = cs->reader;
	int			max = f->cfg->batch_lines;
	CdvizItem  *items = palloc0(sizeof(CdvizItem) * max);
	int			n = 0;
	size_t		bytes = 0;

	cs->finished = false;
	while (n < max && bytes < CHUNK_BYTES)
	{
		CdvizJsonlLine line;
		CdvizJsonlStatus st = cdviz_jsonl_next(r, &line);

		if (st == CDVIZ_JSONL_LINE)
		{
			items[n].raw = pnstrdup(line.text, line.len);
			items[n].raw_len = line.len;
			items[n].origin_ref = psprintf("%s%c" UINT64_FORMAT, f->name, f->ref_sep,
										   line.line_no);
			n++;
			bytes += line.len;
		}
		else if (st == CDVIZ_JSONL_TOO_LONG)
		{
			char	   *ref = psprintf("%s%c" UINT64_FORMAT, f->name, f->ref_sep, line.line_no);

			reject_text(f, ref, line.text, line.len,
						psprintf("line of " UINT64_FORMAT " bytes is longer than cdviz.poll_max_line_size (%d kB); its beginning is kept",
								 line.end_offset - line.offset - 1, f->cfg->max_line_size));
			cs->delta.rejected++;
		}
		else if (st == CDVIZ_JSONL_END)
		{
			/* a last line without newline counts once it is whole JSON */
			if (!r->complete && tail_is_json(r))
			{
				r->complete = true;
				continue;
			}
			cs->finished = true;
			break;
		}
		else
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not read \"%s\": %s", f->name, strerror(r->error))));
	}
	store_items(f, items, n, &cs->delta);
	cs->delta.offset = r->offset;
	cs->delta.lines = r->line_no;
	cs->delta.hash = r->hash;
	cs->delta.status = cs->finished ? "read" : "reading";
	f->save(f, &cs->delta);
}

/*
 * A .json document, in one transaction: a lone event, or an array stored
 * element by element (each rejected element apart, as file#n).
 */
static void
read_document(void *arg)
{
	ChunkState *cs = (ChunkState *) arg;
	PollFile   *f = cs->f;
	uint64		max = (uint64) f->cfg->max_json_size * 1024;
	char	   *doc;
	CdvizJsonElement *elems;
	int			broken;
	int			n;
	int			batch = f->cfg->batch_lines;
	MemoryContext chunkcxt;

	cs->finished = true;
	cs->delta.offset = f->size;
	cs->delta.lines = 0;
	if (f->size > max)
	{
		doc = poll_read_prefix(f, CDVIZ_JSONL_EXCERPT);
		reject_text(f, f->name, doc, CDVIZ_JSONL_EXCERPT,
					psprintf("file of " UINT64_FORMAT " bytes is larger than cdviz.poll_max_json_size (%d kB): write JSON Lines (.jsonl) instead; its beginning is kept",
							 f->size, f->cfg->max_json_size));
		cs->delta.rejected = 1;
		cs->delta.hash = CDVIZ_HASH_INIT;
		cs->delta.status = "rejected";
		f->save(f, &cs->delta);
		return;
	}
	doc = poll_read_prefix(f, (size_t) f->size);
	cs->delta.hash = cdviz_hash_update(CDVIZ_HASH_INIT, doc, (size_t) f->size);
	n = cdviz_json_split(doc, (size_t) f->size, &elems, &broken);
	if (n < 0)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));

	chunkcxt = AllocSetContextCreate(CurrentMemoryContext, "cdviz source document",
									 ALLOCSET_DEFAULT_SIZES);
	for (int from = 0; from < n; from += batch)
	{
		int			count = Min(batch, n - from);
		MemoryContext old = MemoryContextSwitchTo(chunkcxt);
		CdvizItem  *items = palloc0(sizeof(CdvizItem) * count);

		for (int i = 0; i < count; i++)
		{
			CdvizJsonElement *e = &elems[from + i];

			items[i].raw = pnstrdup(doc + e->offset, e->len);
			items[i].raw_len = e->len;
			items[i].origin_ref = e->index == 0 ? f->name :
				psprintf("%s#%d", f->name, e->index);
		}
		store_items(f, items, count, &cs->delta);
		MemoryContextSwitchTo(old);
		MemoryContextReset(chunkcxt);
	}
	MemoryContextDelete(chunkcxt);
	cs->delta.lines = n;
	/* a lone document that is not an event at all: the file is rejected */
	cs->delta.status = (n == 1 && elems[0].index == 0 && cs->delta.rejected == 1) ?
		"rejected" : "read";
	free(elems);
	f->save(f, &cs->delta);
}

/*
 * A JSON Lines file that is not JSON at all (binary, plain text): one dead
 * letter for the whole file, with its beginning, instead of one per line.
 */
static void
reject_file(void *arg)
{
	ChunkState *cs = (ChunkState *) arg;
	PollFile   *f = cs->f;
	size_t		len = (size_t) Min(f->size, (uint64) f->cfg->max_line_size * 1024);
	CdvizItem  *item = palloc0(sizeof(CdvizItem));

	item->raw = poll_read_prefix(f, len);
	item->raw_len = len;
	item->origin_ref = f->name;
	store_items(f, item, 1, &cs->delta);
	cs->finished = true;
	cs->delta.offset = f->size;
	cs->delta.lines = 0;
	cs->delta.hash = CDVIZ_HASH_INIT;
	cs->delta.status = "rejected";
	f->save(f, &cs->delta);
}

/* A report, in one transaction (poll_report.c). */
static void
read_report(void *arg)
{
	ChunkState *cs = (ChunkState *) arg;

	cs->finished = true;
	poll_read_report(cs->f, &cs->delta);
}

/* Run one transaction of reading; false (with *error) when it failed. */
static bool
run_chunk(PollFile *f, CdvizTxFunc fn, ChunkState *cs, char **error)
{
	ErrorData  *edata = NULL;
	CdvizTxResult res;
	char	   *activity = psprintf("reading %s", f->name);

	memset(&cs->delta, 0, sizeof(cs->delta));
	cs->f = f;
	res = cdviz_worker_transaction(activity, fn, cs, &edata);
	pfree(activity);
	if (res == CDVIZ_TX_DONE)
	{
		f->offset = cs->delta.offset;
		f->lines = cs->delta.lines;
		f->hash = cs->delta.hash;
		f->events += cs->delta.events;
		f->duplicates += cs->delta.duplicates;
		f->rejected += cs->delta.rejected;
		return true;
	}
	if (res == CDVIZ_TX_NO_EXTENSION)
		*error = pstrdup("extension \"cdviz\" is not created");
	else
	{
		*error = pstrdup(edata->message);
		FreeErrorData(edata);
	}
	return false;
}

/* See poll.h. */
bool
poll_read_file(PollFile *f, char **error)
{
	ChunkState	cs;
	CdvizJsonlReader reader;
	bool		ok = true;

	*error = NULL;
	memset(&cs, 0, sizeof(cs));
	if (f->cfg->format != POLL_FORMAT_CDEVENTS)
		return run_chunk(f, read_report, &cs, error);
	if (f->document)
		return run_chunk(f, read_document, &cs, error);

	if (f->offset == 0 && f->size > 0)
	{
		size_t		len = (size_t) Min(f->size, (uint64) 4096);
		char		start[4096];
		ssize_t		got = pread(f->fd, start, len, 0);

		if (got < 0)
		{
			*error = psprintf("could not read \"%s\": %m", f->name);
			return false;
		}
		if (!cdviz_jsonl_plausible(start, (size_t) got))
			return run_chunk(f, reject_file, &cs, error);
	}

	if (!cdviz_jsonl_init(&reader, f->fd, f->offset, f->lines, f->hash, f->size,
						  (size_t) f->cfg->max_line_size * 1024))
	{
		*error = psprintf("could not read \"%s\": %m", f->name);
		return false;
	}
	reader.complete = f->complete;
	cs.reader = &reader;
	for (;;)
	{
		if (!run_chunk(f, read_chunk, &cs, error))
		{
			ok = false;
			break;
		}
		if (cs.finished)
			break;
		/* between chunks: SIGTERM ends the worker here, nothing half done */
		cdviz_worker_process_interrupts();
	}
	cdviz_jsonl_free(&reader);
	return ok;
}
