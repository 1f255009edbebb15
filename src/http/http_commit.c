/*
 * http_commit.c
 *	  Group commit: every POST /cdevents whose body is complete is suspended
 *	  and queued; the worker loop then stores all queued requests in ONE
 *	  transaction, commits, and resumes each connection with its answer.
 *
 * While one transaction runs (its COMMIT waits for the WAL flush), new
 * requests pile up in the sockets; the next turn of the loop reads them
 * all and stores them together.  So the cost of a commit is shared by as
 * many requests as arrive during one, which is how a single worker
 * outpaces clients that each commit their own INSERT.
 *
 * Acknowledged means committed: no answer leaves before COMMIT returns.
 * When a group's transaction fails, each of its requests is retried in a
 * transaction of its own, so that one request the database refuses (say an
 * index key too large) does not make its neighbours fail with it.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/elog.h"
#include "utils/json.h"
#include "utils/memutils.h"

#include "http/http.h"
#include "store/store.h"
#include "common/worker.h"

/* Past this many events a group waits for the next transaction. */
#define GROUP_MAX_EVENTS 5000

static dlist_head queue = DLIST_STATIC_INIT(queue);

/* Dead letters of whole bodies and envelope-refused events. */

typedef struct CommitGroup
{
	HttpRequest **reqs;
	int			nreqs;
	CdvizItem  *items;
	int			nitems;
	CdvizStoreResult result;
	int64		envelope_rejected;
} CommitGroup;

/* Suspend the request's connection until its transaction is over. */
void
http_commit_enqueue(HttpRequest *req)
{
	http_suspend(req, &queue, &req->queue_node);
}

bool
http_commit_pending(void)
{
	return !dlist_is_empty(&queue);
}

/* Events a request brings to the store. */
static int
events_of(HttpRequest *req)
{
	int			n = 0;

	if (req->keep_body)
		return 0;
	for (int i = 0; i < req->env.nevents; i++)
		if (req->env.events[i].problems.count == 0)
			n++;
	return n;
}

/* (Re)build the store's items; a failed attempt leaves them unusable. */
static void
build_items(CommitGroup *g)
{
	int			n = 0;

	for (int r = 0; r < g->nreqs; r++)
	{
		HttpRequest *req = g->reqs[r];

		req->first_item = n;
		req->nitems = 0;
		req->keep_rejected_id = 0;
		if (req->keep_body)
			continue;
		for (int i = 0; i < req->env.nevents; i++)
		{
			CdvizEnvelopeEvent *ev = &req->env.events[i];
			CdvizItem  *it;

			if (ev->problems.count > 0)
				continue;
			it = &g->items[n++];
			memset(it, 0, sizeof(*it));
			it->raw = ev->raw;
			it->raw_len = ev->raw_len;
			/* a dead letter keeps the CloudEvent and how it came */
			it->received = ev->received;
			it->received_len = ev->received_len;
			it->envelope = req->envelope;
			/* the envelope's parse, taken (and freed) by the store */
			it->json = ev->json;
			ev->json = NULL;
			it->origin_ref = req->origin_ref;
			req->nitems++;
		}
	}
	g->nitems = n;
}

/* Keep a whole body that could not be stored, with its one problem. */
int64
http_store_refused_body(const char *origin, const char *origin_ref,
						const char *body, size_t len, const char *problem)
{
	CdvizProblems problems;
	int64		id;

	cdviz_problems_init(&problems);
	cdviz_problems_add(&problems, "$", "%s", problem);
	id = cdviz_store_dead_letter(origin, origin_ref, body, len, &problems);
	cdviz_problems_reset(&problems);
	return id;
}

/* Inside the transaction: the store, then the dead letters of the envelopes. */
static void
store_group(void *arg)
{
	CommitGroup *g = (CommitGroup *) arg;

	g->envelope_rejected = 0;
	if (g->nitems > 0)
		g->result = cdviz_store_items(g->items, g->nitems, "http");
	for (int r = 0; r < g->nreqs; r++)
	{
		HttpRequest *req = g->reqs[r];

		if (req->keep_body)
		{
			CdvizProblems problems;

			cdviz_problems_init(&problems);
			cdviz_problems_add(&problems, "$", "%s", req->keep_problem);
			req->keep_rejected_id =
				cdviz_store_dead_letter_enveloped("http", req->origin_ref,
												  req->keep_body, req->keep_len,
												  req->envelope, &problems);
			cdviz_problems_reset(&problems);
			continue;
		}
		for (int i = 0; i < req->env.nevents; i++)
		{
			CdvizEnvelopeEvent *ev = &req->env.events[i];
			if (ev->problems.count == 0)
				continue;
			if (req->envelope_rejected_ids == NULL)
				req->envelope_rejected_ids =
					MemoryContextAllocZero(req->cxt, sizeof(int64) * req->env.nevents);
			req->envelope_rejected_ids[i] =
				cdviz_store_dead_letter_enveloped("http", req->origin_ref, ev->raw, ev->raw_len,
												  req->envelope, &ev->problems);
			g->envelope_rejected++;
		}
	}
}

/* The answer of a request whose events were stored (or judged). */
static void
answer_stored(HttpRequest *req, CdvizItem *items)
{
	StringInfoData ev;
	StringInfoData stored;
	StringInfoData dups;
	StringInfoData out;
	int			nrejected = 0;
	int			item = req->first_item;

	if (req->keep_body)
	{
		http_set_rejected(req, req->status, req->keep_problem, req->keep_rejected_id);
		return;
	}
	initStringInfo(&ev);
	initStringInfo(&stored);
	initStringInfo(&dups);
	for (int i = 0; i < req->env.nevents; i++)
	{
		CdvizEnvelopeEvent *e = &req->env.events[i];
		const CdvizProblems *problems = NULL;
		int64		rejected_id = 0;

		if (i > 0)
			appendStringInfoChar(&ev, ',');
		if (e->problems.count > 0)
		{
			problems = &e->problems;
			rejected_id = req->envelope_rejected_ids ? req->envelope_rejected_ids[i] : 0;
		}
		else
		{
			CdvizItem  *it = &items[item++];

			if (it->status == CDVIZ_ITEM_REJECTED)
			{
				problems = &it->problems;
				rejected_id = it->rejected_id;
			}
			else
			{
				bool		dup = it->status == CDVIZ_ITEM_DUPLICATE;
				StringInfo	list = dup ? &dups : &stored;

				if (list->len > 0)
					appendStringInfoChar(list, ',');
				appendStringInfo(list, INT64_FORMAT, it->event_id);
				appendStringInfo(&ev, "{\"index\":%d,\"status\":\"%s\",\"id\":" INT64_FORMAT "}",
								 i, dup ? "duplicate" : "stored", it->event_id);
				continue;
			}
		}
		{
			char	   *pj = cdviz_problems_to_json(problems);

			appendStringInfo(&ev, "{\"index\":%d,\"status\":\"rejected\",\"rejected_id\":" INT64_FORMAT
							 ",\"problems\":%s}", i, rejected_id, pj ? pj : "[]");
			free(pj);
			nrejected++;
		}
	}
	initStringInfo(&out);
	appendStringInfo(&out, "{\"stored\":[%s],\"duplicates\":[%s],\"rejected\":%d,\"events\":[%s]}\n",
					 stored.data, dups.data, nrejected, ev.data);
	/* a batch stores what is valid and reports the rest: 400 if any was refused */
	http_set_answer(req, nrejected > 0 ? MHD_HTTP_BAD_REQUEST : MHD_HTTP_CREATED,
					"application/json", out.data);
}

/* Errors caused by the data rather than by the database's state. */
bool
http_is_data_error(int sqlerrcode)
{
	char		class[2] = {PGUNSIXBIT(sqlerrcode), PGUNSIXBIT(sqlerrcode >> 6)};

	/* 22 data exception, 23 integrity violation, 54 program limit exceeded */
	return (class[0] == '2' && (class[1] == '2' || class[1] == '3')) ||
		(class[0] == '5' && class[1] == '4');
}

static void run_group(CommitGroup *g);

/* Store g in one transaction and answer its requests. */
static void
run_group(CommitGroup *g)
{
	ErrorData  *edata = NULL;
	CdvizTxResult res;
	instr_time	start;
	instr_time	end;

	build_items(g);
	memset(&g->result, 0, sizeof(g->result));
	INSTR_TIME_SET_CURRENT(start);
	res = cdviz_worker_transaction("storing HTTP events", store_group, g, &edata);
	INSTR_TIME_SET_CURRENT(end);
	INSTR_TIME_SUBTRACT(end, start);
	if (res != CDVIZ_TX_NO_EXTENSION)
		http_metrics_transaction(g->nreqs, g->nitems, INSTR_TIME_GET_DOUBLE(end),
								 res == CDVIZ_TX_DONE);

	switch (res)
	{
		case CDVIZ_TX_DONE:
			http_metrics_events(g->result.stored, g->result.duplicates,
								g->result.rejected + g->envelope_rejected);
			for (int r = 0; r < g->nreqs; r++)
				answer_stored(g->reqs[r], g->items);
			break;

		case CDVIZ_TX_NO_EXTENSION:
			for (int r = 0; r < g->nreqs; r++)
			{
				http_set_error(g->reqs[r], MHD_HTTP_SERVICE_UNAVAILABLE,
							   psprintf("not ready: %s", cdviz_worker_not_ready()));
				g->reqs[r]->retry_after = true;
			}
			break;

		case CDVIZ_TX_FAILED:
			if (g->nreqs > 1)
			{
				/* find the culprit: each request alone */
				for (int r = 0; r < g->nreqs; r++)
				{
					CommitGroup one = {&g->reqs[r], 1, g->items, 0};

					cdviz_store_release_items(g->items, g->nitems);
					memset(g->items, 0, sizeof(CdvizItem) * g->nitems);
					run_group(&one);
					cdviz_store_release_items(one.items, one.nitems);
					one.nitems = 0;
				}
				g->nitems = 0;
				break;
			}
			if (http_is_data_error(edata->sqlerrcode) && !g->reqs[0]->keep_body)
			{
				HttpRequest *req = g->reqs[0];

				/* the database refuses this body: keep it and say why */
				req->keep_body = req->inflated ? req->inflated : req->body.data;
				req->keep_len = req->inflated ? strlen(req->inflated) : req->body.len;
				req->keep_problem = MemoryContextStrdup(req->cxt,
														psprintf("the database refused it: %s", edata->message));
				req->status = MHD_HTTP_BAD_REQUEST;
				/* a whole batch is not one element of it, which "batch" says */
				if (req->env.mode == CDVIZ_ENVELOPE_BATCH)
					req->envelope = NULL;
				cdviz_store_release_items(g->items, g->nitems);
				run_group(g);
				g->nitems = 0;
				break;
			}
			http_set_error(g->reqs[0], MHD_HTTP_SERVICE_UNAVAILABLE,
						   psprintf("the database is not available: %s", edata->message));
			g->reqs[0]->retry_after = true;
			break;
	}
	if (edata)
		FreeErrorData(edata);
}

/*
 * Store what is queued (up to GROUP_MAX_EVENTS events; the rest waits for
 * the next turn) and resume the connections with their answers.
 */
void
http_commit_flush(void)
{
	MemoryContext flushcxt;
	MemoryContext old;
	CommitGroup g;
	int			nreqs = 0;
	int			nevents = 0;
	dlist_iter	iter;

	if (dlist_is_empty(&queue))
		return;
	flushcxt = AllocSetContextCreate(TopMemoryContext, "cdviz http group commit",
									 ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(flushcxt);

	dlist_foreach(iter, &queue)
	{
		int			n = events_of(dlist_container(HttpRequest, queue_node, iter.cur));

		if (nreqs > 0 && nevents + n > GROUP_MAX_EVENTS)
			break;
		nreqs++;
		nevents += n;
	}
	memset(&g, 0, sizeof(g));
	g.reqs = palloc(sizeof(HttpRequest *) * nreqs);
	g.items = palloc0(sizeof(CdvizItem) * Max(nevents, 1));
	for (int r = 0; r < nreqs; r++)
		g.reqs[g.nreqs++] = dlist_container(HttpRequest, queue_node,
											dlist_pop_head_node(&queue));

	run_group(&g);
	cdviz_store_release_items(g.items, g.nitems);

	for (int r = 0; r < g.nreqs; r++)
	{
		Assert(g.reqs[r]->state == REQ_ANSWERED);
		MHD_resume_connection(g.reqs[r]->conn);
	}
	MemoryContextSwitchTo(old);
	MemoryContextDelete(flushcxt);
}
