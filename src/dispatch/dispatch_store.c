/*
 * dispatch_store.c
 *	  The dispatcher's SQL side: chunks of events read in storage order,
 *	  and what was delivered written back with the sinks' progress.
 *
 * Storage order is (inserting transaction, statement, position in the
 * statement), read from the outbox cdviz.lake_batches in snapshot windows:
 * the transactions visible in the window's newer snapshot and not in its
 * older one (see sql/ext/60_sinks.sql for why a lake id cursor would skip
 * events).  A window is a fixed set once opened, so a position inside it
 * never misses a row; when it is exhausted the newer snapshot becomes the
 * older one.
 *
 * Everything runs inside cdviz_worker_transaction() with SPI connected.
 * Progress in memory moves only after the transaction that wrote it
 * committed, so a failed write delivers the chunk again, never skips it.
 *
 * An idle dispatcher looks for new events every cdviz.dispatch_interval,
 * so what a look costs without finding anything must not grow with the
 * lake: the statements of that look are planned once for the process
 * (kept plans, re-planned by PostgreSQL when their tables change) and none
 * of them reads the lake: planning a statement over the partitioned lake
 * opens every partition, so a look planned anew would cost in proportion
 * to the number of partitions.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "dispatch/dispatch.h"
#include "store/store.h"

/* Batches looked at per window fetch; a chunk needs few of them. */
#define WINDOW_BATCHES 200

/* Unwritten progress without events is written at most this often. */
#define LAZY_WRITE_MS 5000

/* Plans of the idle look, kept for the life of the process. */
static SPIPlanPtr retries_exist_plan = NULL;
static SPIPlanPtr snapshot_plan = NULL;
static SPIPlanPtr window_plan = NULL;

/* A string kept across transactions (NULL stays NULL). */
static void
set_str(char **dst, const char *src)
{
	if (*dst)
		pfree(*dst);
	*dst = src ? MemoryContextStrdup(TopMemoryContext, src) : NULL;
}

/* Copy a position into memory that outlives the transaction. */
void
dispatch_position_copy(SinkPosition *dst, const SinkPosition *src)
{
	set_str(&dst->snap, src->snap);
	set_str(&dst->next_snap, src->next_snap);
	set_str(&dst->pos_xid, src->pos_xid);
	dst->pos_batch = src->pos_batch;
	dst->pos_ord = src->pos_ord;
	dst->backfill = src->backfill;
	dst->backfill_until = src->backfill_until;
	dst->backfill_pos = src->backfill_pos;
}

void
dispatch_position_free(SinkPosition *p)
{
	set_str(&p->snap, NULL);
	set_str(&p->next_snap, NULL);
	set_str(&p->pos_xid, NULL);
}

/* Column n (1-based) of row r of the last result, or NULL. */
char *
dispatch_value(int r, int n)
{
	return SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, n);
}

int64
dispatch_int8_value(int r, int n, int64 dflt)
{
	char	   *v = dispatch_value(r, n);

	return v ? strtoll(v, NULL, 10) : dflt;
}

/* The kept plan of a sink's events goes with its filter. */
void
dispatch_store_forget_plan(Sink *sink)
{
	if (sink->events_plan)
		SPI_freeplan(sink->events_plan);
	sink->events_plan = NULL;
}

/* ------------------------------------------------------------------ */
/* reading chunks                                                      */
/* ------------------------------------------------------------------ */

#define EVENT_COLUMNS \
	"e.id, e.\"timestamp\"::text, e.context_id, e.context_source, e.type, e.subject," \
	" e.predicate, e.type_version, e.payload->'context'->>'timestamp', e.payload::text," \
	" e.subject_id"
#define N_EVENT_COLUMNS 11

static DispatchChunk *
chunk_create(ChunkKind kind, int nrows)
{
	MemoryContext cxt = AllocSetContextCreate(TopMemoryContext, "cdviz dispatch chunk",
											  ALLOCSET_DEFAULT_SIZES);
	DispatchChunk *chunk = MemoryContextAllocZero(cxt, sizeof(DispatchChunk));

	chunk->cxt = cxt;
	chunk->kind = kind;
	chunk->events = MemoryContextAllocZero(cxt, sizeof(DispatchEvent) * Max(nrows, 1));
	chunk->rejections = MemoryContextAllocZero(cxt, sizeof(DispatchRejection) * Max(nrows, 1));
	return chunk;
}

/* Copy the event columns starting at column first of each result row. */
static void
chunk_fill(DispatchChunk *chunk, int first, bool with_reject_row)
{
	MemoryContext old = MemoryContextSwitchTo(chunk->cxt);

	for (uint64 r = 0; r < SPI_processed; r++)
	{
		DispatchEvent *ev = &chunk->events[chunk->nevents++];
		int			c = first;

		if (with_reject_row)
			ev->reject_row = dispatch_int8_value(r, 1, 0);
		ev->id = dispatch_int8_value(r, c++, 0);
		ev->ts = dispatch_value(r, c++);
		ev->context_id = dispatch_value(r, c++);
		ev->source = dispatch_value(r, c++);
		ev->type = dispatch_value(r, c++);
		ev->subject = dispatch_value(r, c++);
		ev->predicate = dispatch_value(r, c++);
		ev->version = dispatch_value(r, c++);
		ev->time = dispatch_value(r, c++);
		ev->payload = dispatch_value(r, c++);
		ev->payload_len = (int) strlen(ev->payload);
		ev->subject_id = dispatch_value(r, c++);
	}
	MemoryContextSwitchTo(old);
}

/*
 * Refused events the user asked to retry come first.  Whether there are
 * any is asked of cdviz.rejected_deliveries alone: the statement that
 * reads them joins the lake, and planning it opens every partition.
 */
static bool
fetch_retries(Sink *sink)
{
	Datum		args[2] = {Int32GetDatum(sink->id), Int32GetDatum(cdviz_dispatch_chunk)};
	Oid			types[2] = {INT4OID, INT4OID};
	DispatchChunk *chunk;
	bool		isnull;

	if (retries_exist_plan == NULL)
		retries_exist_plan = cdviz_prepare_kept("SELECT EXISTS (SELECT FROM cdviz.rejected_deliveries d"
												" WHERE d.sink_id = $1 AND d.retry_requested_at IS NOT NULL"
												" AND d.retried_at IS NULL)",
												1, types, 0);
	if (SPI_execute_plan(retries_exist_plan, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "cdviz dispatcher: looking for retries failed");
	if (!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)))
		return false;
	if (SPI_execute_with_args("SELECT d.id, " EVENT_COLUMNS
							  " FROM cdviz.rejected_deliveries d"
							  " JOIN cdviz.cdevents_lake e ON e.id = d.event_id"
							  " AND e.\"timestamp\" = d.event_timestamp"
							  " WHERE d.sink_id = $1 AND d.retry_requested_at IS NOT NULL"
							  " AND d.retried_at IS NULL ORDER BY d.id LIMIT $2",
							  2, types, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "cdviz dispatcher: reading retries failed");
	if (SPI_processed == 0)
		return false;
	chunk = chunk_create(CHUNK_RETRY, (int) SPI_processed);
	chunk_fill(chunk, 2, true);
	dispatch_position_copy(&chunk->after, &sink->pos);
	chunk->more = true;
	sink->chunk = chunk;
	return true;
}

/*
 * Lake rows by id: those older than the sink when it was created with
 * start_at (imported since then), or, after a re-base, every event from
 * the oldest one the sink had not delivered (see cdviz._rebase_sinks()).
 */
static void
fetch_backfill(Sink *sink)
{
	Datum		args[4] = {Int64GetDatum(sink->pos.backfill_pos),
		Int64GetDatum(sink->pos.backfill_until), Int32GetDatum(sink->id),
	Int32GetDatum(cdviz_dispatch_chunk)};
	Oid			types[4] = {INT8OID, INT8OID, INT4OID, INT4OID};
	char	   *sql = psprintf("SELECT " EVENT_COLUMNS " FROM cdviz.cdevents_lake e"
							   " WHERE e.id > $1 AND e.id <= $2"
							   " AND (e.id > (SELECT created_until FROM cdviz.sink_progress WHERE sink_id = $3)"
							   " OR e.imported_at >= (SELECT start_at FROM cdviz.sinks WHERE id = $3))"
							   " AND %s ORDER BY e.id LIMIT $4", sink->filter);
	DispatchChunk *chunk;

	if (SPI_execute_with_args(sql, 4, types, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "cdviz dispatcher: reading the backfill of sink \"%s\" failed", sink->name);
	chunk = chunk_create(CHUNK_BACKFILL, (int) SPI_processed);
	chunk_fill(chunk, 1, false);
	dispatch_position_copy(&chunk->after, &sink->pos);
	if (SPI_processed == (uint64) cdviz_dispatch_chunk)
	{
		chunk->after.backfill_pos = chunk->events[chunk->nevents - 1].id;
		chunk->more = true;
	}
	else
	{
		/* done: the window takes over */
		chunk->after.backfill = false;
		chunk->after.backfill_pos = sink->pos.backfill_until;
		chunk->more = true;
	}
	sink->chunk = chunk;
}

/*
 * The next events of the window.  Step one lists the window's next
 * statements (cheap: the outbox's primary key) and picks enough of them
 * for a chunk; step two reads their events from the lake.  Positions past
 * cdviz_dispatch_chunk in a statement cannot be in this chunk, so the
 * lake is read for at most a chunk's worth of rows per statement.
 */
static void
fetch_window(Sink *sink)
{
	int			limit = cdviz_dispatch_chunk;
	char	   *cur_snap = NULL;
	SinkPosition *p = &sink->pos;
	Datum		args[7];
	char		nulls[7];
	Oid			types[7] = {TEXTOID, TEXTOID, TEXTOID, INT8OID, INT4OID, TEXTOID, INT8OID};
	uint64		nbatches;
	int64		want = 0;
	int			taken = 0;
	char	   *last_xid = NULL;
	int64		last_batch = 0;
	int64		last_card = 0;
	int64		last_start = 0;
	char	   *first_xid = NULL;
	int64		first_batch = 0;
	DispatchChunk *chunk;
	char	   *sql;
	bool		exhausted;

	if (p->next_snap == NULL)
	{
		if (snapshot_plan == NULL)
			snapshot_plan = cdviz_prepare_kept("SELECT pg_catalog.pg_current_snapshot()::text",
											   0, NULL, 0);
		if (SPI_execute_plan(snapshot_plan, NULL, NULL, true, 1) != SPI_OK_SELECT)
			elog(ERROR, "cdviz dispatcher: pg_current_snapshot failed");
		cur_snap = dispatch_value(0, 1);
	}

	/* step one: the window's statements from the position on */
	args[0] = CStringGetTextDatum(p->snap);
	args[1] = CStringGetTextDatum(p->next_snap ? p->next_snap : cur_snap);
	args[2] = p->pos_xid ? CStringGetTextDatum(p->pos_xid) : (Datum) 0;
	args[3] = Int64GetDatum(p->pos_batch);
	memset(nulls, ' ', sizeof(nulls));
	nulls[2] = p->pos_xid ? ' ' : 'n';

	/*
	 * ORDER BY b.xid, qualified: a bare "xid" would name the output column
	 * xid::text, and text order ("10001" < "9999") would pass statements
	 * by whenever the window's xids cross a power of ten.
	 */
	if (window_plan == NULL)
		window_plan = cdviz_prepare_kept("SELECT b.xid::text, b.batch_id, cardinality(b.ids) FROM cdviz.lake_batches b"
										 " WHERE b.xid >= pg_catalog.pg_snapshot_xmin($1::pg_snapshot)"
										 " AND b.xid < pg_catalog.pg_snapshot_xmax($2::pg_snapshot)"
										 " AND pg_catalog.pg_visible_in_snapshot(b.xid, $2::pg_snapshot)"
										 " AND NOT pg_catalog.pg_visible_in_snapshot(b.xid, $1::pg_snapshot)"
										 " AND (b.xid, b.batch_id) >= (coalesce($3::xid8, '0'::xid8), $4)"
										 " ORDER BY b.xid, b.batch_id LIMIT " CppAsString2(WINDOW_BATCHES),
										 4, types, 0);
	if (SPI_execute_plan(window_plan, args, nulls, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "cdviz dispatcher: reading the outbox failed");
	nbatches = SPI_processed;
	for (uint64 r = 0; r < nbatches && want < limit; r++)
	{
		int64		batch = dispatch_int8_value(r, 2, 0);
		int64		card = dispatch_int8_value(r, 3, 0);
		char	   *xid = dispatch_value(r, 1);
		int64		start = 0;

		if (p->pos_xid && strcmp(xid, p->pos_xid) == 0 && batch == p->pos_batch)
			start = p->pos_ord;
		if (taken == 0)
		{
			first_xid = xid;
			first_batch = batch;
		}
		taken++;
		want += Max(card - start, 0);
		last_xid = xid;
		last_batch = batch;
		last_card = card;
		last_start = start;
	}
	exhausted = (nbatches < WINDOW_BATCHES && taken == (int) nbatches &&
				 last_card - last_start <= limit);

	if (taken == 0 || want == 0)
	{
		/* nothing (more) in the window: the newer snapshot is passed */
		chunk = chunk_create(CHUNK_WINDOW, 0);
		dispatch_position_copy(&chunk->after, p);
		chunk->passed = (taken > 0 || p->next_snap != NULL);
		if (exhausted)
		{
			set_str(&chunk->after.snap, p->next_snap ? p->next_snap : cur_snap);
			set_str(&chunk->after.next_snap, NULL);
			set_str(&chunk->after.pos_xid, NULL);
			chunk->after.pos_batch = 0;
			chunk->after.pos_ord = 0;
			chunk->more = (p->next_snap != NULL);
		}
		else
		{
			set_str(&chunk->after.next_snap, p->next_snap ? p->next_snap : cur_snap);
			set_str(&chunk->after.pos_xid, last_xid);
			chunk->after.pos_batch = last_batch;
			chunk->after.pos_ord = (int32) last_card;
			chunk->more = true;
		}
		sink->chunk = chunk;
		return;
	}

	/* step two: their events, past the position, through the filter */
	args[5] = CStringGetTextDatum(last_xid);
	args[6] = Int64GetDatum(last_batch);
	args[2] = p->pos_xid ? CStringGetTextDatum(p->pos_xid) : CStringGetTextDatum(first_xid);
	args[3] = Int64GetDatum(p->pos_xid ? p->pos_batch : first_batch);
	args[4] = Int32GetDatum(p->pos_xid ? p->pos_ord : 0);
	nulls[2] = ' ';

	/*
	 * Kept for the sink, as each chunk of a trickle of events would plan it
	 * over every lake partition again; the lake rows are found by key.
	 */
	if (sink->events_plan != NULL && sink->events_plan_limit != limit)
		dispatch_store_forget_plan(sink);
	if (sink->events_plan == NULL)
	{
		sql = psprintf("SELECT b.xid::text, b.batch_id, u.ord::int4, " EVENT_COLUMNS
					   " FROM cdviz.lake_batches b"
					   " CROSS JOIN LATERAL unnest(b.ids, b.stamps) WITH ORDINALITY AS u(lake_id, lake_ts, ord)"
					   " JOIN cdviz.cdevents_lake e ON e.id = u.lake_id AND e.\"timestamp\" = u.lake_ts"
					   " WHERE (b.xid, b.batch_id) >= ($3::xid8, $4) AND (b.xid, b.batch_id) <= ($6::xid8, $7)"
					   " AND pg_catalog.pg_visible_in_snapshot(b.xid, $2::pg_snapshot)"
					   " AND NOT pg_catalog.pg_visible_in_snapshot(b.xid, $1::pg_snapshot)"
					   " AND (b.xid, b.batch_id, u.ord) > ($3::xid8, $4, $5)"
					   " AND u.ord <= %d + CASE WHEN (b.xid, b.batch_id) = ($3::xid8, $4) THEN $5 ELSE 0 END"
					   " AND %s ORDER BY b.xid, b.batch_id, u.ord LIMIT %d",
					   limit, sink->filter, limit);
		sink->events_plan = cdviz_prepare_kept(sql, 7, types, 0);
		sink->events_plan_limit = limit;
	}
	if (SPI_execute_plan(sink->events_plan, args, nulls, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "cdviz dispatcher: reading the events of sink \"%s\" failed", sink->name);

	chunk = chunk_create(CHUNK_WINDOW, (int) SPI_processed);
	dispatch_position_copy(&chunk->after, p);
	chunk->passed = true;
	if (p->next_snap == NULL)
		set_str(&chunk->after.next_snap, cur_snap);
	if (SPI_processed == (uint64) limit)
	{
		/* the chunk is full: continue right after its last event */
		uint64		r = SPI_processed - 1;

		set_str(&chunk->after.pos_xid, dispatch_value(r, 1));
		chunk->after.pos_batch = dispatch_int8_value(r, 2, 0);
		chunk->after.pos_ord = (int32) dispatch_int8_value(r, 3, 0);
		chunk->more = true;
	}
	else if (exhausted)
	{
		set_str(&chunk->after.snap, chunk->after.next_snap);
		set_str(&chunk->after.next_snap, NULL);
		set_str(&chunk->after.pos_xid, NULL);
		chunk->after.pos_batch = 0;
		chunk->after.pos_ord = 0;
		chunk->more = true;
	}
	else
	{
		/* everything looked at was passed, matched or not */
		set_str(&chunk->after.pos_xid, last_xid);
		chunk->after.pos_batch = last_batch;
		chunk->after.pos_ord = (int32) Min(last_card, last_start + limit);
		chunk->more = true;
	}
	chunk_fill(chunk, 4, false);
	sink->chunk = chunk;
}

/* Give an idle sink its next chunk (possibly empty: progress only). */
void
dispatch_store_fetch(Sink *sink)
{
	Assert(sink->chunk == NULL);
	if (fetch_retries(sink))
		return;
	if (sink->pos.backfill)
		fetch_backfill(sink);
	else
		fetch_window(sink);
}

/* ------------------------------------------------------------------ */
/* settling and writing back                                           */
/* ------------------------------------------------------------------ */

/* Write one sink's progress (and its chunk's refusals). */
static void
write_sink(Sink *sink, DispatchChunk *chunk, const SinkPosition *p)
{
	Oid			types[15] = {INT4OID, TEXTOID, TEXTOID, TEXTOID, INT8OID, INT4OID, INT8OID,
		INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, TEXTOID, BOOLOID, BOOLOID};
	Datum		args[15];
	char		nulls[15];
	int			delivered = chunk ? chunk->delivered : 0;
	int64		last_id = 0;

	memset(nulls, ' ', sizeof(nulls));
	if (chunk && chunk->nrejections > 0)
	{
		Datum	   *ids = palloc(sizeof(Datum) * chunk->nrejections);
		Datum	   *ts = palloc(sizeof(Datum) * chunk->nrejections);
		Datum	   *st = palloc(sizeof(Datum) * chunk->nrejections);
		Datum	   *resp = palloc(sizeof(Datum) * chunk->nrejections);
		bool	   *rnulls = palloc0(sizeof(bool) * chunk->nrejections);
		Datum		a[5];
		Oid			t[5] = {INT4OID, INT8ARRAYOID, TEXTARRAYOID, INT4ARRAYOID, TEXTARRAYOID};

		for (int i = 0; i < chunk->nrejections; i++)
		{
			DispatchRejection *rej = &chunk->rejections[i];

			ids[i] = Int64GetDatum(chunk->events[rej->event].id);
			ts[i] = CStringGetTextDatum(chunk->events[rej->event].ts);
			st[i] = Int32GetDatum(rej->status);
			rnulls[i] = rej->response == NULL;
			resp[i] = rej->response ? CStringGetTextDatum(rej->response) : (Datum) 0;
		}
		a[0] = Int32GetDatum(sink->id);
		a[1] = PointerGetDatum(construct_array(ids, chunk->nrejections, INT8OID, 8, true, TYPALIGN_DOUBLE));
		a[2] = PointerGetDatum(construct_array(ts, chunk->nrejections, TEXTOID, -1, false, TYPALIGN_INT));
		a[3] = PointerGetDatum(construct_array(st, chunk->nrejections, INT4OID, 4, true, TYPALIGN_INT));
		{
			int			dims[1] = {chunk->nrejections};
			int			lbs[1] = {1};

			a[4] = PointerGetDatum(construct_md_array(resp, rnulls, 1, dims, lbs, TEXTOID, -1,
													  false, TYPALIGN_INT));
		}
		if (SPI_execute_with_args("INSERT INTO cdviz.rejected_deliveries"
								  " (sink_id, event_id, event_timestamp, status, response)"
								  " SELECT $1, i, t::timestamptz, s, r"
								  " FROM unnest($2, $3, $4, $5) AS u(i, t, s, r)"
								  " WHERE EXISTS (SELECT FROM cdviz.sinks WHERE id = $1)",
								  5, t, a, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "cdviz dispatcher: recording refused deliveries failed");
	}
	if (chunk && chunk->kind == CHUNK_RETRY && chunk->nevents > 0)
	{
		Datum	   *rows = palloc(sizeof(Datum) * chunk->nevents);
		Datum		a[1];
		Oid			t[1] = {INT8ARRAYOID};

		for (int i = 0; i < chunk->nevents; i++)
			rows[i] = Int64GetDatum(chunk->events[i].reject_row);
		a[0] = PointerGetDatum(construct_array(rows, chunk->nevents, INT8OID, 8, true, TYPALIGN_DOUBLE));
		if (SPI_execute_with_args("UPDATE cdviz.rejected_deliveries SET retried_at = now()"
								  " WHERE id = ANY ($1)", 1, t, a, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "cdviz dispatcher: marking retried deliveries failed");
	}
	if (chunk)
	{
		for (int i = chunk->nevents - 1; i >= 0 && last_id == 0; i--)
			last_id = chunk->events[i].id;
	}

	args[0] = Int32GetDatum(sink->id);
	args[1] = CStringGetTextDatum(p->snap);
	nulls[2] = p->next_snap ? ' ' : 'n';
	args[2] = p->next_snap ? CStringGetTextDatum(p->next_snap) : (Datum) 0;
	nulls[3] = p->pos_xid ? ' ' : 'n';
	args[3] = p->pos_xid ? CStringGetTextDatum(p->pos_xid) : (Datum) 0;
	args[4] = Int64GetDatum(p->pos_batch);
	args[5] = Int32GetDatum(p->pos_ord);
	nulls[6] = p->backfill ? ' ' : 'n';
	args[6] = Int64GetDatum(p->backfill_until);
	args[7] = Int64GetDatum(p->backfill_pos);
	args[8] = Int64GetDatum(delivered);
	args[9] = Int64GetDatum(chunk ? chunk->nrejections : 0);
	args[10] = Int64GetDatum(sink->failures);
	nulls[11] = last_id ? ' ' : 'n';
	args[11] = Int64GetDatum(last_id);
	nulls[12] = sink->last_error ? ' ' : 'n';
	args[12] = sink->last_error ? CStringGetTextDatum(sink->last_error) : (Datum) 0;
	args[13] = BoolGetDatum(delivered > 0);
	args[14] = BoolGetDatum(sink->last_error != NULL);

	/*
	 * A row of another cluster was restored under this dispatcher: it is
	 * not overwritten with a position of this cluster's, but re-based by
	 * the next sync, which loads the sink again.  cdviz_reader reads the
	 * last error (cdviz.sink_status), and a receiver may answer with the
	 * request it was sent: the sink's secrets are taken out of it.
	 */
	if (SPI_execute_with_args("UPDATE cdviz.sink_progress SET snap = $2::pg_snapshot,"
							  " next_snap = $3::pg_snapshot, pos_xid = $4::xid8, pos_batch = $5,"
							  " pos_ord = $6, backfill_until = $7, backfill_pos = $8,"
							  " delivered = delivered + $9, rejected = rejected + $10,"
							  " failures = failures + $11,"
							  " last_delivered_id = coalesce($12, last_delivered_id),"
							  " last_success_at = CASE WHEN $14 THEN now() ELSE last_success_at END,"
							  " last_error = CASE WHEN $15 THEN cdviz._sink_redact($13,"
							  "   (SELECT x.secrets FROM cdviz.sink_secrets x WHERE x.sink_id = $1))"
							  "   ELSE last_error END,"
							  " last_error_at = CASE WHEN $15 THEN now() ELSE last_error_at END"
							  " WHERE sink_id = $1"
							  " AND (cluster_id IS NULL OR cluster_id = cdviz._cluster_id())",
							  15, types, args, nulls, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "cdviz dispatcher: writing the progress of sink \"%s\" failed", sink->name);
}

/* Whether a sink has something to write now. */
static bool
needs_write(Sink *sink, TimestampTz now)
{
	return dispatch_chunk_settled(sink) || sink->failures > 0 || sink->last_error != NULL ||
		(sink->pos_dirty && TimestampDifferenceExceeds(sink->pos_written_at, now, LAZY_WRITE_MS));
}

/* The sinks dispatch_store_write() wrote, for dispatch_store_written(). */
static List *written_sinks = NIL;

/*
 * Write what the sinks settled.  Called inside a transaction; the caller
 * applies the result with dispatch_store_written() after the commit.
 */
void
dispatch_store_write(List *sinks)
{
	ListCell   *lc;
	TimestampTz now = GetCurrentTimestamp();
	MemoryContext old;

	list_free(written_sinks);
	written_sinks = NIL;
	foreach(lc, sinks)
	{
		Sink	   *sink = lfirst(lc);

		if (!needs_write(sink, now))
			continue;
		if (dispatch_chunk_settled(sink))
			write_sink(sink, sink->chunk, &sink->chunk->after);
		else
			write_sink(sink, NULL, &sink->pos);
		old = MemoryContextSwitchTo(TopMemoryContext);
		written_sinks = lappend(written_sinks, sink);
		MemoryContextSwitchTo(old);
	}
}

/*
 * After the commit of dispatch_store_write(): the positions of the sinks
 * it wrote move, their chunks go, their counters start again.  Called by
 * the worker, which alone knows the commit happened, before anything
 * changes the list of sinks.
 */
void
dispatch_store_written(void)
{
	ListCell   *lc;
	TimestampTz now = GetCurrentTimestamp();

	foreach(lc, written_sinks)
	{
		Sink	   *sink = lfirst(lc);

		if (dispatch_chunk_settled(sink))
		{
			dispatch_position_copy(&sink->pos, &sink->chunk->after);
			sink->more = sink->chunk->more;
			MemoryContextDelete(sink->chunk->cxt);
			sink->chunk = NULL;
		}
		sink->pos_dirty = false;
		sink->pos_written_at = now;
		sink->failures = 0;
		if (sink->last_error)
		{
			free(sink->last_error);
			sink->last_error = NULL;
		}
	}
	list_free(written_sinks);
	written_sinks = NIL;
}

/*
 * A chunk without events settles without a write when it only moved the
 * position: that is written lazily (a crash then reads the same empty
 * stretch again, which costs nothing and skips nothing).  A window that
 * held no statement at all moves the position too (its newer snapshot),
 * but is not worth a write: each write is a transaction that moves the
 * next snapshot again, so an idle dispatcher would write its position
 * every LAZY_WRITE_MS for ever.  The next write of a chunk records it.
 */
bool
dispatch_store_absorb_empty(Sink *sink)
{
	DispatchChunk *chunk = sink->chunk;

	bool		moved;
	bool		passed;

	if (chunk == NULL || chunk->nevents > 0 || chunk->kind != CHUNK_WINDOW)
		return false;
	passed = chunk->passed;
	moved = strcmp(chunk->after.snap, sink->pos.snap) != 0 ||
		(chunk->after.next_snap == NULL) != (sink->pos.next_snap == NULL) ||
		(chunk->after.pos_xid == NULL) != (sink->pos.pos_xid == NULL) ||
		chunk->after.pos_batch != sink->pos.pos_batch ||
		chunk->after.pos_ord != sink->pos.pos_ord;
	dispatch_position_copy(&sink->pos, &chunk->after);
	sink->more = chunk->more && chunk->after.next_snap != NULL;
	MemoryContextDelete(chunk->cxt);
	sink->chunk = NULL;
	if (moved && passed && !sink->pos_dirty)
	{
		sink->pos_written_at = GetCurrentTimestamp();
		sink->pos_dirty = true;
	}
	return true;
}

/*
 * Delete the outbox rows every sink has passed: those of transactions
 * older than the oldest committed snapshot of any sink (or, without
 * sinks, than every running transaction).  The SHARE lock waits for a
 * cdviz.create_sink() in progress, whose first snapshot must count.
 * Nothing is deleted while progress of another cluster waits for its
 * re-base: its snapshots say nothing of this cluster's transactions.
 */
bool
dispatch_store_prune(void)
{
	if (SPI_execute("LOCK TABLE cdviz.sink_progress IN SHARE MODE", false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "cdviz dispatcher: locking cdviz.sink_progress failed");
	if (SPI_execute("DELETE FROM cdviz.lake_batches WHERE xid <"
					" (SELECT coalesce(min(pg_catalog.pg_snapshot_xmin(snap)),"
					"  pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot()))"
					"  FROM cdviz.sink_progress)"
					" AND NOT EXISTS (SELECT FROM cdviz.sink_progress"
					"  WHERE cluster_id <> cdviz._cluster_id())", false, 0) != SPI_OK_DELETE)
		elog(ERROR, "cdviz dispatcher: pruning cdviz.lake_batches failed");
	return SPI_processed > 0;
}
