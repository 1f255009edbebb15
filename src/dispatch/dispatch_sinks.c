/*
 * dispatch_sinks.c
 *	  The kinds of sink, and the dispatcher's list of sinks kept in line
 *	  with cdviz.sinks: configured from their rows, started from their
 *	  committed progress, dropped when their row goes.
 *
 * A kind of sink is its table of methods (see SinkMethods in dispatch.h);
 * a new kind is one more entry in dispatch_sink_kinds[].
 */
#include "postgres.h"

#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "dispatch/dispatch.h"
#include "common/spi_util.h"

const SinkMethods *const dispatch_sink_kinds[] = {
	&sink_http_methods,
	&sink_nats_methods,
	&sink_kafka_methods,
	&sink_log_methods,
};
const int	dispatch_nsink_kinds = lengthof(dispatch_sink_kinds);

/* Plans of the idle look, kept for the life of the process. */
static SPIPlanPtr rebase_plan = NULL;
static SPIPlanPtr sinks_plan = NULL;

/*
 * The methods of a kind named in cdviz.sinks.  Its CHECK constraint admits
 * the kinds of this library only; anything else is logged by the log sink.
 */
static const SinkMethods *
kind_methods(const char *kind)
{
	for (int i = 0; i < dispatch_nsink_kinds; i++)
	{
		if (strcmp(dispatch_sink_kinds[i]->kind, kind) == 0)
			return dispatch_sink_kinds[i];
	}
	return &sink_log_methods;
}

/* Read a sink's configuration from row r of the sinks query. */
static void
configure(Sink *sink, int r)
{
	MemoryContext old;
	const char *kind = dispatch_value(r, 3);
	char	   *type_pattern = dispatch_value(r, 7);
	char	   *source_pattern = dispatch_value(r, 8);
	char	   *predicate = dispatch_value(r, 9);
	StringInfoData filter;

	dispatch_store_forget_plan(sink);
	MemoryContextReset(sink->cxt);
	old = MemoryContextSwitchTo(sink->cxt);
	sink->name = pstrdup(dispatch_value(r, 2));
	sink->methods = kind_methods(kind);
	sink->target = pstrdup(dispatch_value(r, 4));
	sink->paused = strcmp(dispatch_value(r, 10), "t") == 0;
	sink->updated_at = pstrdup(dispatch_value(r, 11));

	initStringInfo(&filter);
	appendStringInfoString(&filter, "true");
	if (type_pattern)
		appendStringInfo(&filter, " AND e.type LIKE %s", quote_literal_cstr(type_pattern));
	if (source_pattern)
		appendStringInfo(&filter, " AND e.context_source LIKE %s",
						 quote_literal_cstr(source_pattern));
	if (predicate)
		appendStringInfo(&filter, " AND (%s)", predicate);
	sink->filter = filter.data;

	dispatch_sink_options(sink, dispatch_value(r, 5), dispatch_value(r, 6));
	MemoryContextSwitchTo(old);
}

/* Drop a sink's chunk, whatever is in flight. */
static void
drop_chunk(Sink *sink)
{
	if (sink->methods && sink->methods->cancel)
		sink->methods->cancel(sink);
	if (sink->chunk)
	{
		MemoryContextDelete(sink->chunk->cxt);
		sink->chunk = NULL;
	}
}

void
dispatch_sink_free(Sink *sink)
{
	drop_chunk(sink);
	if (sink->methods && sink->methods->close)
		sink->methods->close(sink);
	dispatch_store_forget_plan(sink);
	dispatch_position_free(&sink->pos);
	if (sink->last_error)
		free(sink->last_error);
	MemoryContextDelete(sink->cxt);
	pfree(sink);
}

/*
 * Bring the list of sinks in line with cdviz.sinks: new ones start from
 * their committed progress, changed ones are configured again (a changed
 * sink drops its chunk, which is read again), removed ones are freed.
 */
void
dispatch_sinks_sync(List **sinks)
{
	ListCell   *lc;
	List	   *keep = NIL;
	int64		rebased;

	/*
	 * Progress restored from another cluster is re-based before anything
	 * is read with it (see cdviz._rebase_sinks()).  The sinks are then
	 * loaded again by the next sync: this transaction's read-only queries
	 * would still see the progress as it was.
	 */
	if (rebase_plan == NULL)
		rebase_plan = cdviz_prepare_kept("SELECT cdviz._rebase_sinks()", 0, NULL, 0);
	if (SPI_execute_plan(rebase_plan, NULL, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "cdviz dispatcher: re-basing the sinks failed");
	rebased = dispatch_int8_value(0, 1, 0);
	if (rebased > 0)
	{
		ereport(LOG,
				(errmsg("cdviz dispatcher: the progress of %lld sinks was written by another cluster",
						(long long) rebased),
				 errdetail("The database was restored from another cluster: each of these sinks "
						   "delivers again by lake id from the oldest event it had not delivered."),
				 errhint("See cdviz.sink_status for what is pending.")));
		foreach(lc, *sinks)
			dispatch_sink_free(lfirst(lc));
		list_free(*sinks);
		*sinks = NIL;
		return;
	}

	/*
	 * cdviz.sinks shows the secret parts as ***; the target and options
	 * used are those of cdviz.sink_secrets where it has them (the whole
	 * URL, the header values by name).  See cdviz._sink_split().
	 */
	if (sinks_plan == NULL)
		sinks_plan = cdviz_prepare_kept("SELECT s.id, s.name, s.kind, coalesce(x.secrets->>'target', s.target),"
										" (s.options || (coalesce(x.secrets, '{}') - 'target'))::text,"
										" coalesce(x.secrets, '{}')::text, s.type_pattern, s.source_pattern,"
										" s.predicate, s.paused, s.updated_at::text,"
										" p.snap::text, p.next_snap::text, p.pos_xid::text, p.pos_batch,"
										" p.pos_ord, p.backfill_until, p.backfill_pos"
										" FROM cdviz.sinks s JOIN cdviz.sink_progress p ON p.sink_id = s.id"
										" LEFT JOIN cdviz.sink_secrets x ON x.sink_id = s.id ORDER BY s.id",
										0, NULL, 0);
	if (SPI_execute_plan(sinks_plan, NULL, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "cdviz dispatcher: reading cdviz.sinks failed");

	foreach(lc, *sinks)
		((Sink *) lfirst(lc))->seen = false;

	for (uint64 r = 0; r < SPI_processed; r++)
	{
		int			id = (int) dispatch_int8_value(r, 1, 0);
		Sink	   *sink = NULL;

		foreach(lc, *sinks)
		{
			if (((Sink *) lfirst(lc))->id == id)
				sink = lfirst(lc);
		}
		if (sink == NULL)
		{
			SinkPosition p = {0};
			MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

			sink = palloc0(sizeof(Sink));
			sink->cxt = AllocSetContextCreate(TopMemoryContext, "cdviz sink",
											  ALLOCSET_SMALL_SIZES);
			sink->id = id;
			*sinks = lappend(*sinks, sink);
			MemoryContextSwitchTo(old);
			p.snap = dispatch_value(r, 12);
			p.next_snap = dispatch_value(r, 13);
			p.pos_xid = dispatch_value(r, 14);
			p.pos_batch = dispatch_int8_value(r, 15, 0);
			p.pos_ord = (int32) dispatch_int8_value(r, 16, 0);
			p.backfill = dispatch_value(r, 17) != NULL;
			p.backfill_until = dispatch_int8_value(r, 17, 0);
			p.backfill_pos = dispatch_int8_value(r, 18, 0);
			dispatch_position_copy(&sink->pos, &p);
			sink->more = true;
			configure(sink, r);
			elog(DEBUG1, "cdviz dispatcher: sink \"%s\" loaded", sink->name);
		}
		else if (strcmp(sink->updated_at, dispatch_value(r, 11)) != 0)
		{
			drop_chunk(sink);
			configure(sink, r);
			sink->attempts = 0;
			sink->retry_at = 0;
			sink->more = true;
		}
		sink->seen = true;
		if (sink->paused)
			drop_chunk(sink);
	}

	foreach(lc, *sinks)
	{
		Sink	   *sink = lfirst(lc);

		if (sink->seen)
		{
			/* the list outlives the transaction */
			MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

			keep = lappend(keep, sink);
			MemoryContextSwitchTo(old);
		}
		else
			dispatch_sink_free(sink);
	}
	list_free(*sinks);
	*sinks = keep;
}

