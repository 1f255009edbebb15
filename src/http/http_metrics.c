/*
 * http_metrics.c
 *	  Counters for GET /metrics, in the Prometheus text format.
 *
 * They live in the worker's own memory: the worker is the only one that
 * counts and the only one that answers /metrics, so no shared memory is
 * needed.  A restart of the worker resets them, which Prometheus' rate()
 * treats as a counter reset.
 */
#include "postgres.h"

#include "lib/stringinfo.h"

#include "http/http.h"

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
	return out.data;
}
