/*
 * http_metrics.c
 *	  Counters for GET /metrics, in the Prometheus text format.
 *
 * They live in the worker's own memory: the worker is the only one that
 * counts and the only one that answers /metrics, so no shared memory is
 * needed.  A restart of the worker resets them, which Prometheus' rate()
 * treats as a counter reset.
 *
 * The sinks' and the sources' figures are their workers', kept in their
 * progress tables: they are read from cdviz.sink_status and
 * cdviz.source_status at each scrape (a few rows, scrapes come every few
 * seconds), so /metrics and the views never disagree.
 */
#include "postgres.h"

#include "executor/spi.h"
#include "lib/stringinfo.h"

#include "http/http.h"
#include "store/store.h"
#include "common/worker.h"

/* A cumulative histogram with fixed bounds. */
typedef struct Histogram
{
	int			nbounds;
	const double *bounds;
	uint64		counts[16];		/* one per bound, +Inf last */
	double		sum;
	uint64		count;
} Histogram;

static const double latency_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
0.1, 0.25, 0.5, 1, 2.5, 10};
static const double batch_bounds[] = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000,
2000, 5000};

static Histogram request_latency = {lengthof(latency_bounds), latency_bounds};
static Histogram transaction_latency = {lengthof(latency_bounds), latency_bounds};
static Histogram batch_events = {lengthof(batch_bounds), batch_bounds};
static Histogram batch_requests = {lengthof(batch_bounds), batch_bounds};

static uint64 requests_by_status[600];
static uint64 events_stored;
static uint64 events_duplicated;
static uint64 events_rejected;
static uint64 transactions_committed;
static uint64 transactions_failed;
static int	connections_open;

static void
observe(Histogram *h, double v)
{
	int			i;

	for (i = 0; i < h->nbounds && v > h->bounds[i]; i++)
		;
	h->counts[i]++;
	h->sum += v;
	h->count++;
}

/* One answered request. */
void
http_metrics_request(int status, double seconds)
{
	if (status >= 100 && status < 600)
		requests_by_status[status]++;
	observe(&request_latency, seconds);
}

/* What a transaction did with the events it was given. */
void
http_metrics_events(int64 stored, int64 duplicates, int64 rejected)
{
	events_stored += stored;
	events_duplicated += duplicates;
	events_rejected += rejected;
}

/* One group commit: how many requests and events shared it. */
void
http_metrics_transaction(int nrequests, int nevents, double seconds, bool committed)
{
	if (committed)
		transactions_committed++;
	else
		transactions_failed++;
	observe(&transaction_latency, seconds);
	observe(&batch_events, nevents);
	observe(&batch_requests, nrequests);
}

/* Connections now open (from libmicrohttpd's notifications). */
void
http_metrics_connections(int open)
{
	connections_open = open;
}

static void
render_histogram(StringInfo out, const char *name, const char *help, Histogram *h)
{
	uint64		cum = 0;

	appendStringInfo(out, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
	for (int i = 0; i < h->nbounds; i++)
	{
		cum += h->counts[i];
		appendStringInfo(out, "%s_bucket{le=\"%g\"} " UINT64_FORMAT "\n", name, h->bounds[i], cum);
	}
	cum += h->counts[h->nbounds];
	appendStringInfo(out, "%s_bucket{le=\"+Inf\"} " UINT64_FORMAT "\n", name, cum);
	appendStringInfo(out, "%s_sum %.6f\n%s_count " UINT64_FORMAT "\n", name, h->sum, name, h->count);
}

static void
render_counter(StringInfo out, const char *name, const char *help, uint64 v)
{
	appendStringInfo(out, "# HELP %s %s\n# TYPE %s counter\n%s " UINT64_FORMAT "\n",
					 name, help, name, name, v);
}

/* A label value with \\, " and newline escaped, as the text format wants. */
static void
append_label_value(StringInfo out, const char *v)
{
	for (; *v; v++)
	{
		if (*v == '\\' || *v == '"')
			appendStringInfoChar(out, '\\');
		if (*v == '\n')
			appendStringInfoString(out, "\\n");
		else
			appendStringInfoChar(out, *v);
	}
}

/* A family of samples, one per row of a status view. */
typedef struct MetricFamily
{
	const char *name;
	const char *type;
	const char *help;
} MetricFamily;

/* The sink_status columns shown, in the query's order after name and kind. */
static const MetricFamily sink_families[] = {
	{"cdviz_sink_delivered_total", "counter", "Events delivered by the sink."},
	{"cdviz_sink_rejected_total", "counter", "Events the sink refused for good (cdviz.rejected_deliveries)."},
	{"cdviz_sink_failures_total", "counter", "Failed delivery attempts that were retried."},
	{"cdviz_sink_pending_events", "gauge", "Events stored and not yet passed by the sink."},
	{"cdviz_sink_lag_seconds", "gauge", "Age of the oldest pending event; 0 when none."},
	{"cdviz_sink_paused", "gauge", "1 while the sink is paused."},
	{"cdviz_sink_last_success_timestamp_seconds", "gauge", "When a delivery last succeeded (Unix time)."},
};

/* The source_status columns shown, in the query's order after name and kind. */
static const MetricFamily source_families[] = {
	{"cdviz_source_events_total", "counter", "Events the source stored."},
	{"cdviz_source_duplicates_total", "counter", "Events the source read that the lake already had."},
	{"cdviz_source_rejected_total", "counter", "Lines, elements or messages of the source sent to cdviz.rejected_events."},
	{"cdviz_source_lag", "gauge", "Files or objects not read to their end (folder, s3); messages waiting (nats, kafka)."},
	{"cdviz_source_up", "gauge", "1 while the source's worker runs."},
};

/*
 * The statements of a scrape, planned once for the process: planning
 * cdviz.sink_status opens every lake partition (its backfill count reads
 * the lake), which cost each scrape tens of milliseconds on a lake of a
 * few hundred partitions.  PostgreSQL plans a kept statement again when
 * the tables or views it reads change.
 */
static SPIPlanPtr summaries_plan = NULL;
static SPIPlanPtr sinks_plan = NULL;
static SPIPlanPtr sources_plan = NULL;

/* Run a kept plan of a SELECT without arguments, planning it the first time. */
static void
select_kept(SPIPlanPtr *plan, const char *sql, const char *relation)
{
	if (*plan == NULL)
		*plan = cdviz_prepare_kept(sql, 0, NULL, 0);
	if (SPI_execute_plan(*plan, NULL, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "cdviz: reading %s failed", relation);
}

/* Append the deferred summaries' backlog from cdviz.summary_queue. */
static void
render_summaries(StringInfo out)
{
	select_kept(&summaries_plan, "SELECT coalesce(sum(events), 0),"
				" coalesce(extract(epoch FROM now() - min(queued_at)), 0)"
				" FROM cdviz.summary_queue", "cdviz.summary_queue");
	appendStringInfo(out, "# HELP cdviz_summaries_pending_events Stored events not yet folded into the summary tables.\n"
					 "# TYPE cdviz_summaries_pending_events gauge\ncdviz_summaries_pending_events %s\n",
					 SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
	appendStringInfo(out, "# HELP cdviz_summaries_lag_seconds Age of the oldest event not yet folded (0: none).\n"
					 "# TYPE cdviz_summaries_lag_seconds gauge\ncdviz_summaries_lag_seconds %s\n",
					 SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2));
}

/*
 * The families of a status view's rows, just selected (name, kind, then a
 * column per family), labelled label="name",kind="kind".
 */
static void
render_families(StringInfo out, const MetricFamily *families, int n, const char *label)
{
	for (int f = 0; f < n; f++)
	{
		appendStringInfo(out, "# HELP %s %s\n# TYPE %s %s\n", families[f].name,
						 families[f].help, families[f].name, families[f].type);
		for (uint64 r = 0; r < SPI_processed; r++)
		{
			HeapTuple	tup = SPI_tuptable->vals[r];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			char	   *value = SPI_getvalue(tup, desc, f + 3);

			if (value == NULL)
				continue;		/* never measured: no sample */
			appendStringInfo(out, "%s{%s=\"", families[f].name, label);
			append_label_value(out, SPI_getvalue(tup, desc, 1));
			appendStringInfoString(out, "\",kind=\"");
			append_label_value(out, SPI_getvalue(tup, desc, 2));
			appendStringInfo(out, "\"} %s\n", value);
		}
	}
}

/*
 * Append the sink and source families from cdviz.sink_status and
 * cdviz.source_status, and the summaries' backlog; runs in a transaction.
 */
static void
render_stored(void *arg)
{
	StringInfo	out = (StringInfo) arg;

	select_kept(&sinks_plan, "SELECT name, kind, delivered, rejected, failures, pending, lag_seconds,"
				" paused::int, extract(epoch FROM last_success_at)"
				" FROM cdviz.sink_status ORDER BY name", "cdviz.sink_status");
	render_families(out, sink_families, lengthof(sink_families), "sink");
	select_kept(&sources_plan, "SELECT name, kind, events, duplicates, rejected, lag,"
				" (state = 'running')::int FROM cdviz.source_status ORDER BY name",
				"cdviz.source_status");
	render_families(out, source_families, lengthof(source_families), "source");
	render_summaries(out);
}

/* The whole exposition, palloc'd. */
char *
http_metrics_render(void)
{
	StringInfoData out;

	initStringInfo(&out);
	appendStringInfoString(&out,
						   "# HELP cdviz_http_requests_total HTTP requests answered, by status code.\n"
						   "# TYPE cdviz_http_requests_total counter\n");
	for (int s = 100; s < 600; s++)
		if (requests_by_status[s] > 0)
			appendStringInfo(&out, "cdviz_http_requests_total{code=\"%d\"} " UINT64_FORMAT "\n",
							 s, requests_by_status[s]);
	appendStringInfoString(&out,
						   "# HELP cdviz_events_total Events received over HTTP, by outcome.\n"
						   "# TYPE cdviz_events_total counter\n");
	appendStringInfo(&out, "cdviz_events_total{source=\"http\",outcome=\"stored\"} " UINT64_FORMAT "\n",
					 events_stored);
	appendStringInfo(&out, "cdviz_events_total{source=\"http\",outcome=\"duplicate\"} " UINT64_FORMAT "\n",
					 events_duplicated);
	appendStringInfo(&out, "cdviz_events_total{source=\"http\",outcome=\"rejected\"} " UINT64_FORMAT "\n",
					 events_rejected);
	render_counter(&out, "cdviz_http_transactions_total",
				   "Group-commit transactions committed.", transactions_committed);
	render_counter(&out, "cdviz_http_transactions_failed_total",
				   "Group-commit transactions rolled back (clients got 503 or a retry alone).",
				   transactions_failed);
	appendStringInfo(&out, "# HELP cdviz_http_connections Open HTTP connections.\n"
					 "# TYPE cdviz_http_connections gauge\ncdviz_http_connections %d\n",
					 connections_open);
	render_histogram(&out, "cdviz_http_request_duration_seconds",
					 "Time from a request's headers to its answer.", &request_latency);
	render_histogram(&out, "cdviz_http_transaction_duration_seconds",
					 "Time of one group-commit transaction, COMMIT included.", &transaction_latency);
	render_histogram(&out, "cdviz_http_batch_events",
					 "Events stored per group-commit transaction.", &batch_events);
	render_histogram(&out, "cdviz_http_batch_requests",
					 "Requests sharing one group-commit transaction.", &batch_requests);

	/*
	 * A scrape while the database is unavailable still gets the counters
	 * above; cdviz_sinks_up says whether the sink and summary figures could
	 * be read.
	 */
	{
		StringInfoData sinks;
		CdvizTxResult res;

		initStringInfo(&sinks);
		res = cdviz_worker_transaction("reading sink status for /metrics",
									   render_stored, &sinks, NULL);
		appendStringInfo(&out, "# HELP cdviz_sinks_up Whether the sink and summary figures below could be read.\n"
						 "# TYPE cdviz_sinks_up gauge\ncdviz_sinks_up %d\n",
						 res == CDVIZ_TX_DONE);
		if (res == CDVIZ_TX_DONE)
			appendBinaryStringInfo(&out, sinks.data, sinks.len);
		pfree(sinks.data);
	}
	return out.data;
}
