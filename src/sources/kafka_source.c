/*
 * kafka_source.c
 *	  The kafka kind: the topics of a source read by a consumer of a
 *	  consumer group (librdkafka's high-level consumer), the messages
 *	  stored in batches, the offsets committed after the batch.
 *
 * A message is read as an HTTP request body is (store_messages.h): in the
 * CloudEvents Kafka protocol binding, binary mode (ce_* headers, the
 * CDEvent as the value) or structured mode (content-type
 * application/cloudevents+json), or else as a plain CDEvent or JSON array
 * of CDEvents.  What is not an event goes to cdviz.rejected_events with
 * origin 'kafka' and origin_ref "topic/partition@offset".
 *
 * Delivery: at least once into the lake, exactly once in it.  Messages are
 * gathered until batch_size of them or batch_timeout_ms after the first,
 * stored in one transaction, and only once that transaction committed are
 * their offsets (offset + 1 per partition) committed to the group
 * (enable.auto.commit and enable.auto.offset.store are off, and "config"
 * cannot turn them on).  A crash in between makes the group deliver them
 * again, and the lake's dedup keeps one copy; the dead letters of a batch
 * are committed with it, so a bad message is kept once and not read
 * again.  A commit never blocks the loop, for while every broker is down
 * it is not answered: it is sent (rd_kafka_commit_queue) and its answer
 * served with the messages, one at a time, the offsets stored meanwhile
 * kept per partition for the next; a commit that fails is sent again.
 * When partitions are revoked, the batch gathered so far is stored and
 * committed before they are given up, so the next owner starts after it
 * (the wait is bounded, and ends at SIGTERM).  A batch that cannot be
 * stored ends the worker with the error: the launcher starts it again, and
 * the group delivers again from the committed offsets.
 *
 * librdkafka's threads never touch PostgreSQL: the consumer's queue (to
 * which the main queue, its errors and its logs are forwarded) is served
 * by rd_kafka_consumer_poll() in this process's main thread, which also
 * runs the rebalance callback.  While the queue is empty the worker sleeps
 * on its latch and on a pipe librdkafka writes a byte to when the queue
 * gets something (rd_kafka_queue_io_event_enable), waking only for a
 * batch's deadline and to measure the lag (high watermark minus committed
 * offset, summed over the assigned partitions) now and then.
 *
 * On exit (SIGTERM: the source was paused, altered or dropped, or the
 * server stops) the worker tries once more to commit what it stored, then
 * the consumer leaves its group, so that another member takes its
 * partitions at once; both are bounded (EXIT_TIMEOUT_MS), and what it
 * gathered and had not stored, or stored and could not commit, is
 * delivered again.
 */
#include "postgres.h"

#include <fcntl.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "miscadmin.h"
#include "pgstat.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "common/worker.h"
#include "sources/kinds.h"
#include "store/store_messages.h"

/* While idle, the lag is measured this often. */
#define MEASURE_INTERVAL_MS 5000
/* An unchanged lag and state are written again after this long. */
#define NOTE_INTERVAL_MS 60000
/* A failed commit is tried again after this long. */
#define COMMIT_RETRY_MS 1000
/* Longest wait for a commit before revoked partitions are given up. */
#define REVOKE_COMMIT_MS 3000
/* On exit: longest wait for the last commit, then for leaving the group. */
#define EXIT_COMMIT_MS 1000
#define EXIT_TIMEOUT_MS 1500

typedef struct KafkaSource
{
	const CdvizSource *src;
	rd_kafka_t *rk;
	rd_kafka_queue_t *queue;	/* the consumer's queue */
	int			wake[2];		/* librdkafka writes to wake[1] */
	bool		closing;		/* leaving the group: store nothing more */
	MemoryContext cxt;			/* of one batch */

	/* the batch gathered */
	rd_kafka_message_t **batch;
	int			nbatch;
	int			batch_size;
	int			batch_timeout_ms;
	TimestampTz batch_deadline;

	/*
	 * Offsets committed, and those stored but not committed yet (sent in a
	 * commit not answered yet, or to be sent).  Commits are numbered: the
	 * loop's commit awaiting its answer (one at a time), and the one
	 * commit_wait() awaits.
	 */
	rd_kafka_topic_partition_list_t *committed;
	rd_kafka_topic_partition_list_t *uncommitted;
	uintptr_t	commit_seq;
	uintptr_t	in_flight;
	uintptr_t	awaited;
	bool		awaited_ok;
	TimestampTz commit_retry_at;

	/* why a batch could not be stored, raised by the loop */
	char	   *store_error;

	/* librdkafka's last error, cleared by a message or a commit */
	char		error[512];
	/* what source_progress says */
	char		noted_error[512];
	int64		noted_lag;
	TimestampTz noted_at;
	TimestampTz measure_at;
} KafkaSource;

static KafkaSource ks = {.wake = {-1, -1}};

static bool flush_batch(void);

/* librdkafka's error, for last_error (served by consumer_poll). */
static void
error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	snprintf(ks.error, sizeof(ks.error), "%s", reason);
	if (err == RD_KAFKA_RESP_ERR__FATAL)
	{
		char		why[512];

		(void) rd_kafka_fatal_error(rk, why, sizeof(why));
		snprintf(ks.error, sizeof(ks.error), "fatal: %s", why);
	}
}

static void
log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	ereport(LOG, (errmsg("cdviz source %s: librdkafka %s: %s", ks.src->name, fac, buf)));
}

/* The entry of topic/partition in list, or NULL. */
static rd_kafka_topic_partition_t *
find(rd_kafka_topic_partition_list_t *list, const char *topic, int32 partition)
{
	return list ? rd_kafka_topic_partition_list_find(list, topic, partition) : NULL;
}

/* Raise the offset of topic/partition in *list to offset. */
static void
merge_offset(rd_kafka_topic_partition_list_t **list, const char *topic, int32 partition,
			 int64 offset)
{
	rd_kafka_topic_partition_t *p;

	if (*list == NULL)
		*list = rd_kafka_topic_partition_list_new(8);
	p = find(*list, topic, partition);
	if (p == NULL)
		p = rd_kafka_topic_partition_list_add(*list, topic, partition);
	else if (p->offset >= offset)
		return;
	p->offset = offset;
}

/* Forget the partitions of parts in *list (they were revoked). */
static void
forget_partitions(rd_kafka_topic_partition_list_t **list,
				  const rd_kafka_topic_partition_list_t *parts)
{
	if (*list == NULL)
		return;
	for (int i = 0; i < parts->cnt; i++)
		(void) rd_kafka_topic_partition_list_del(*list, parts->elems[i].topic,
												 parts->elems[i].partition);
	if ((*list)->cnt == 0)
	{
		rd_kafka_topic_partition_list_destroy(*list);
		*list = NULL;
	}
}

/*
 * Messages behind the committed offsets, summed over the assigned
 * partitions, counting those of pending (offsets about to be committed)
 * as committed; -1 when not known.  The high watermarks are those the
 * fetcher last saw: nothing is asked of the brokers.
 */
static int64
measure_lag(rd_kafka_topic_partition_list_t *pending)
{
	rd_kafka_topic_partition_list_t *a = NULL;
	int64		lag = 0;
	int			known = 0;

	if (rd_kafka_assignment(ks.rk, &a) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return -1;
	/* where the application is, for partitions not committed by it yet */
	(void) rd_kafka_position(ks.rk, a);
	for (int i = 0; i < a->cnt; i++)
	{
		rd_kafka_topic_partition_t *e = &a->elems[i];
		rd_kafka_topic_partition_t *c;
		int64_t		lo,
					hi;
		int64		at = e->offset;

		if (rd_kafka_get_watermark_offsets(ks.rk, e->topic, e->partition, &lo, &hi) !=
			RD_KAFKA_RESP_ERR_NO_ERROR || hi < 0)
			continue;
		if ((c = find(pending, e->topic, e->partition)) != NULL ||
			(c = find(ks.uncommitted, e->topic, e->partition)) != NULL ||
			(c = find(ks.committed, e->topic, e->partition)) != NULL)
			at = c->offset;
		if (at < 0)
			continue;
		lag += Max(hi - at, 0);
		known++;
	}
	if (a->cnt > 0 && known == 0)
		lag = -1;
	rd_kafka_topic_partition_list_destroy(a);
	return lag;
}

/*
 * The answer to a commit (served by consumer_poll for the loop's commits,
 * by commit_wait otherwise): what was committed is no longer uncommitted,
 * what failed stays so, to be committed again.
 */
static void
commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
		  rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
	uintptr_t	seq = (uintptr_t) opaque;
	bool		ok = true;

	for (int i = 0; offsets && i < offsets->cnt; i++)
	{
		rd_kafka_topic_partition_t *e = &offsets->elems[i];
		rd_kafka_topic_partition_t *u;

		if (err == RD_KAFKA_RESP_ERR_NO_ERROR && e->err == RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			merge_offset(&ks.committed, e->topic, e->partition, e->offset);
			/* a batch stored since is still to be committed */
			if ((u = find(ks.uncommitted, e->topic, e->partition)) != NULL &&
				u->offset <= e->offset)
				(void) rd_kafka_topic_partition_list_del(ks.uncommitted, e->topic, e->partition);
			continue;
		}
		if (ok)
			snprintf(ks.error, sizeof(ks.error), "committing offsets of %s [%d]: %s",
					 e->topic, e->partition,
					 rd_kafka_err2str(err != RD_KAFKA_RESP_ERR_NO_ERROR ? err : e->err));
		ok = false;
	}
	if (offsets == NULL && err != RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		snprintf(ks.error, sizeof(ks.error), "committing offsets: %s", rd_kafka_err2str(err));
		ok = false;
	}
	if (ks.uncommitted && ks.uncommitted->cnt == 0)
	{
		rd_kafka_topic_partition_list_destroy(ks.uncommitted);
		ks.uncommitted = NULL;
	}
	if (ok)
		ks.error[0] = '\0';
	if (seq == ks.in_flight)
	{
		ks.in_flight = 0;
		if (!ok)
			ks.commit_retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
															 COMMIT_RETRY_MS);
	}
	if (seq == ks.awaited)
	{
		ks.awaited = 0;
		ks.awaited_ok = ok;
	}
}

/*
 * Send a commit of the uncommitted offsets, answered on q; returns its
 * number, or 0 when librdkafka refused it at once.  Nothing waits for
 * the brokers here.
 */
static uintptr_t
send_commit(rd_kafka_queue_t *q)
{
	rd_kafka_resp_err_t err;

	err = rd_kafka_commit_queue(ks.rk, ks.uncommitted, q, commit_cb, (void *) ++ks.commit_seq);
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
		return ks.commit_seq;
	snprintf(ks.error, sizeof(ks.error), "committing offsets: %s", rd_kafka_err2str(err));
	return 0;
}

/* The loop's commit: sent unless one awaits its answer. */
static void
commit_uncommitted(void)
{
	if (ks.uncommitted == NULL || ks.in_flight != 0)
		return;
	ks.in_flight = send_commit(ks.queue);
	if (ks.in_flight == 0)
		ks.commit_retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), COMMIT_RETRY_MS);
}

/*
 * Commit the uncommitted offsets and wait for the answer until deadline
 * (or, with on_term, a SIGTERM: the caller holds interrupts).  Returns
 * whether all of it was committed.
 */
static bool
commit_wait(TimestampTz deadline, bool on_term)
{
	rd_kafka_queue_t *q;

	if (ks.uncommitted == NULL)
		return true;
	pgstat_report_activity(STATE_RUNNING, "committing Kafka offsets");
	q = rd_kafka_queue_new(ks.rk);
	ks.awaited_ok = false;
	ks.awaited = send_commit(q);
	while (ks.awaited != 0 && GetCurrentTimestamp() < deadline && !(on_term && ProcDiePending))
		(void) rd_kafka_queue_poll_callback(q, 50);
	/* an answer after this is dropped with the queue */
	ks.awaited = 0;
	rd_kafka_queue_destroy(q);
	return ks.awaited_ok;
}

/* The value of a message header, NUL-terminated, or NULL. */
static const char *
header(rd_kafka_headers_t *hdrs, const char *name)
{
	const void *value;
	size_t		size;

	if (hdrs == NULL ||
		rd_kafka_header_get_last(hdrs, name, &value, &size) != RD_KAFKA_RESP_ERR_NO_ERROR ||
		value == NULL)
		return NULL;
	return pnstrdup(value, size);
}

/* What one batch's transaction does. */
typedef struct StoreArg
{
	CdvizMessageBatch *b;
	int64		lag;
} StoreArg;

static void
store_batch(void *arg)
{
	StoreArg   *a = arg;
	CdvizStoreResult r = cdviz_messages_store(a->b, "kafka");

	cdviz_source_count(ks.src, r.stored, r.duplicates, r.rejected);
	if (a->lag >= 0 && a->lag != ks.noted_lag)
		cdviz_source_note_lag(ks.src, a->lag);
}

/*
 * Store the batch in one transaction; its offsets are then uncommitted,
 * to be committed by the loop or before revoked partitions go.  Returns
 * false, with store_error set, when the transaction failed: nothing is
 * committed, and the messages are delivered again to the worker started
 * after this one.
 */
static bool
flush_batch(void)
{
	MemoryContext old;
	CdvizMessage *msgs;
	CdvizMessageBatch b;
	StoreArg	a;
	rd_kafka_topic_partition_list_t *offsets = rd_kafka_topic_partition_list_new(8);
	ErrorData  *edata = NULL;
	CdvizTxResult res;

	if (ks.nbatch == 0)
	{
		rd_kafka_topic_partition_list_destroy(offsets);
		return true;
	}
	pgstat_report_activity(STATE_RUNNING, "storing Kafka messages");
	old = MemoryContextSwitchTo(ks.cxt);
	msgs = palloc0(sizeof(CdvizMessage) * ks.nbatch);
	for (int i = 0; i < ks.nbatch; i++)
	{
		rd_kafka_message_t *m = ks.batch[i];
		rd_kafka_headers_t *hdrs = NULL;
		const char *topic = rd_kafka_topic_name(m->rkt);

		if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR)
			hdrs = NULL;
		msgs[i].in.content_type = header(hdrs, "content-type");
		if (msgs[i].in.content_type == NULL)
			msgs[i].in.content_type = header(hdrs, "Content-Type");
		msgs[i].in.ce_specversion = header(hdrs, "ce_specversion");
		msgs[i].in.ce_id = header(hdrs, "ce_id");
		msgs[i].in.ce_source = header(hdrs, "ce_source");
		msgs[i].in.ce_type = header(hdrs, "ce_type");
		msgs[i].in.body = m->payload ? pnstrdup(m->payload, m->len) : "";
		msgs[i].in.body_len = m->payload ? m->len : 0;
		msgs[i].origin_ref = psprintf("%s/%d@" INT64_FORMAT, topic, (int) m->partition,
									  (int64) m->offset);
		merge_offset(&offsets, topic, m->partition, (int64) m->offset + 1);
	}
	cdviz_messages_read(&b, msgs, ks.nbatch);
	MemoryContextSwitchTo(old);

	a.b = &b;
	a.lag = measure_lag(offsets);
	res = cdviz_worker_transaction("storing Kafka messages", store_batch, &a, &edata);
	cdviz_messages_release(&b);
	for (int i = 0; i < ks.nbatch; i++)
		rd_kafka_message_destroy(ks.batch[i]);
	ks.nbatch = 0;
	MemoryContextReset(ks.cxt);

	if (res == CDVIZ_TX_DONE)
	{
		if (a.lag >= 0)
			ks.noted_lag = a.lag;
		/* only now: a crash before their commit makes the group deliver them again */
		for (int i = 0; i < offsets->cnt; i++)
			merge_offset(&ks.uncommitted, offsets->elems[i].topic, offsets->elems[i].partition,
						 offsets->elems[i].offset);
	}
	else
		ks.store_error = MemoryContextStrdup(TopMemoryContext,
											 res == CDVIZ_TX_FAILED ? edata->message
											 : cdviz_worker_not_ready());
	rd_kafka_topic_partition_list_destroy(offsets);
	if (edata)
		FreeErrorData(edata);
	return res == CDVIZ_TX_DONE;
}

/*
 * Partitions assigned or revoked (served by consumer_poll, in this thread).
 * Before revoked partitions go, what was gathered is stored and its
 * offsets committed, waiting for the answer no longer than
 * REVOKE_COMMIT_MS or a SIGTERM; interrupts are held meanwhile, for the
 * worker must not exit from inside librdkafka.
 */
static void
rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
			 rd_kafka_topic_partition_list_t *parts, void *opaque)
{
	bool		cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
	rd_kafka_error_t *error = NULL;

	switch (err)
	{
		case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
			if (cooperative)
				error = rd_kafka_incremental_assign(rk, parts);
			else
				(void) rd_kafka_assign(rk, parts);
			/* the group's coordinator answers again: no error to show */
			ks.error[0] = '\0';
			ereport(LOG, (errmsg("cdviz source %s: %d partitions assigned",
								 ks.src->name, parts->cnt)));
			break;
		case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
			if (!ks.closing && ks.store_error == NULL)
			{
				HOLD_INTERRUPTS();
				if (flush_batch())
					(void) commit_wait(TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
																   REVOKE_COMMIT_MS), true);
				RESUME_INTERRUPTS();
			}
			forget_partitions(&ks.uncommitted, parts);
			forget_partitions(&ks.committed, parts);
			if (cooperative)
				error = rd_kafka_incremental_unassign(rk, parts);
			else
				(void) rd_kafka_assign(rk, NULL);
			if (!ks.closing)
				ereport(LOG, (errmsg("cdviz source %s: %d partitions revoked",
									 ks.src->name, parts->cnt)));
			break;
		default:
			snprintf(ks.error, sizeof(ks.error), "rebalance: %s", rd_kafka_err2str(err));
			(void) rd_kafka_assign(rk, NULL);
			break;
	}
	if (error)
		rd_kafka_error_destroy(error);
}

/* Set one consumer property, or raise with librdkafka's reason. */
static void
set_conf(rd_kafka_conf_t *conf, const char *name, const char *value)
{
	char		why[512];

	if (rd_kafka_conf_set(conf, name, value, why, sizeof(why)) != RD_KAFKA_CONF_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cdviz source \"%s\": librdkafka refuses the setting \"%s\"",
						ks.src->name, name),
				 errdetail("%s", why),
				 errhint("Change the source's \"config\" option with cdviz.alter_source().")));
}

/* The librdkafka settings of the "config" option, secrets merged in. */
static void
set_librdkafka_config(rd_kafka_conf_t *conf)
{
	JsonbValue	buf;
	JsonbValue *cfg = getKeyJsonValueFromContainer(&ks.src->options->root, "config", 6, &buf);
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *key = NULL;

	if (cfg == NULL || cfg->type != jbvBinary)
		return;
	it = JsonbIteratorInit(cfg->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
			key = pnstrdup(v.val.string.val, v.val.string.len);
		else if (tok == WJB_VALUE && key != NULL)
		{
			char	   *value;

			if (v.type == jbvString)
				value = pnstrdup(v.val.string.val, v.val.string.len);
			else if (v.type == jbvBool)
				value = v.val.boolean ? "true" : "false";
			else if (v.type == jbvNumeric)
				value = DatumGetCString(DirectFunctionCall1(numeric_out,
															NumericGetDatum(v.val.numeric)));
			else
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("cdviz source \"%s\": the librdkafka setting \"%s\" is not a string",
								ks.src->name, key)));
			set_conf(conf, key, value);
			key = NULL;
		}
	}
}

/*
 * On exit (no transaction any more): one last commit of what was stored,
 * then leave the group, each bounded, so that a pause or a shutdown does
 * not wait for brokers that are down; what stays uncommitted is delivered
 * again and the lake keeps one copy.  Then free the consumer.
 */
static void
close_consumer(int code, Datum arg)
{
	rd_kafka_queue_t *q;
	rd_kafka_error_t *error;
	TimestampTz start = GetCurrentTimestamp();
	TimestampTz deadline = TimestampTzPlusMilliseconds(start, EXIT_TIMEOUT_MS);

	if (ks.rk == NULL)
		return;
	ks.closing = true;
	for (int i = 0; i < ks.nbatch; i++)
		rd_kafka_message_destroy(ks.batch[i]);
	ks.nbatch = 0;
	(void) commit_wait(TimestampTzPlusMilliseconds(start, EXIT_COMMIT_MS), false);
	q = rd_kafka_queue_new(ks.rk);
	error = rd_kafka_consumer_close_queue(ks.rk, q);
	if (error)
		rd_kafka_error_destroy(error);
	else
		while (!rd_kafka_consumer_closed(ks.rk) && GetCurrentTimestamp() < deadline)
			(void) rd_kafka_queue_poll_callback(q, 100);

	/*
	 * rd_kafka_destroy() would wait for the group's coordinator as long as
	 * the session lasts: when it did not answer, the process ends with
	 * librdkafka's threads, as after a crash (they touch nothing of
	 * PostgreSQL's), and the group gives the partitions away at the end of
	 * the session.
	 */
	if (!rd_kafka_consumer_closed(ks.rk))
	{
		ereport(LOG,
				(errmsg("cdviz source %s: exiting before the consumer left its Kafka group",
						ks.src->name),
				 errdetail("The group's coordinator did not answer within %d ms.",
						   EXIT_TIMEOUT_MS)));
		return;
	}
	rd_kafka_queue_destroy(q);
	rd_kafka_queue_destroy(ks.queue);
	rd_kafka_destroy_flags(ks.rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
	ks.rk = NULL;
}

/* Make the consumer, subscribe it to the source's topics. */
static void
open_consumer(void)
{
	const CdvizSource *src = ks.src;
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(4);
	char		errstr[512];
	char	   *list = pstrdup(src->location);
	char	   *save = NULL;
	rd_kafka_resp_err_t err;

	set_conf(conf, "bootstrap.servers", cdviz_source_opt_text(src, "brokers", ""));
	set_conf(conf, "group.id", cdviz_source_opt_text(src, "group",
													psprintf("cdviz-%s", src->name)));
	set_conf(conf, "client.id", psprintf("cdviz-source-%s", src->name));
	set_conf(conf, "auto.offset.reset", cdviz_source_opt_text(src, "start", "earliest"));
	set_conf(conf, "log_level", "3");
	set_librdkafka_config(conf);
	/* what the delivery guarantee rests on, whatever "config" says */
	set_conf(conf, "enable.auto.commit", "false");
	set_conf(conf, "enable.auto.offset.store", "false");
	set_conf(conf, "enable.partition.eof", "false");
	set_conf(conf, "log.queue", "true");
	rd_kafka_conf_set_error_cb(conf, error_cb);
	rd_kafka_conf_set_log_cb(conf, log_cb);
	rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);

	/* librdkafka's threads block every signal: PostgreSQL's go to this one */
	ks.rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
	if (ks.rk == NULL)
		ereport(ERROR,
				(errmsg("cdviz source \"%s\": could not make a Kafka consumer", src->name),
				 errdetail("%s", errstr)));
	before_shmem_exit(close_consumer, (Datum) 0);
	/* logs to the main queue, the main queue to the consumer's: one queue */
	rd_kafka_set_log_queue(ks.rk, NULL);
	rd_kafka_poll_set_consumer(ks.rk);
	ks.queue = rd_kafka_queue_get_consumer(ks.rk);
	if (pipe2(ks.wake, O_NONBLOCK | O_CLOEXEC) != 0)
		ereport(ERROR, (errcode_for_file_access(), errmsg("could not create a pipe: %m")));
	rd_kafka_queue_io_event_enable(ks.queue, ks.wake[1], "k", 1);

	for (char *t = strtok_r(list, ", ", &save); t; t = strtok_r(NULL, ", ", &save))
		(void) rd_kafka_topic_partition_list_add(topics, t, RD_KAFKA_PARTITION_UA);
	err = rd_kafka_subscribe(ks.rk, topics);
	rd_kafka_topic_partition_list_destroy(topics);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		ereport(ERROR,
				(errmsg("cdviz source \"%s\": could not subscribe to %s", src->name, src->location),
				 errdetail("%s", rd_kafka_err2str(err))));
}

/* Take what the consumer's queue holds, storing each batch that fills. */
static void
drain(void)
{
	rd_kafka_message_t *m;

	while (ks.store_error == NULL && (m = rd_kafka_consumer_poll(ks.rk, 0)) != NULL)
	{
		if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			snprintf(ks.error, sizeof(ks.error), "%s", rd_kafka_message_errstr(m));
			rd_kafka_message_destroy(m);
			continue;
		}
		if (ks.nbatch == 0)
			ks.batch_deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
															ks.batch_timeout_ms);
		ks.batch[ks.nbatch++] = m;
		if (ks.nbatch >= ks.batch_size)
			(void) flush_batch();
	}
}

/* What source_progress says: the lag and librdkafka's error, when changed. */
static void
note_state(void *arg)
{
	int64		lag = *(int64 *) arg;

	if (lag >= 0)
		cdviz_source_note_lag(ks.src, lag);
}

static void
note_progress(TimestampTz now)
{
	int64		lag = measure_lag(NULL);
	bool		error_changed = strcmp(ks.error, ks.noted_error) != 0;

	ks.measure_at = TimestampTzPlusMilliseconds(now, MEASURE_INTERVAL_MS);
	if (!error_changed && lag == ks.noted_lag &&
		now < TimestampTzPlusMilliseconds(ks.noted_at, NOTE_INTERVAL_MS))
		return;
	if (cdviz_worker_transaction("noting the lag", note_state, &lag, NULL) == CDVIZ_TX_DONE &&
		lag >= 0)
		ks.noted_lag = lag;
	cdviz_source_note_poll(ks.src, ks.error[0] ? ks.error : NULL);
	strlcpy(ks.noted_error, ks.error, sizeof(ks.noted_error));
	ks.noted_at = now;
}

/* See kinds.h. */
void
cdviz_kafka_source_run(const CdvizSource *src)
{
	ks.src = src;
	ks.batch_size = cdviz_source_opt_int(src, "batch_size", 500);
	ks.batch_timeout_ms = cdviz_source_opt_int(src, "batch_timeout_ms", 100);
	ks.batch = MemoryContextAllocZero(TopMemoryContext,
									  sizeof(rd_kafka_message_t *) * ks.batch_size);
	ks.cxt = AllocSetContextCreate(TopMemoryContext, "cdviz kafka batch", ALLOCSET_DEFAULT_SIZES);
	ks.noted_lag = -1;
	/* which source this worker reads, for pg_stat_activity */
	pgstat_report_appname(psprintf("cdviz source %s", src->name));

	while (!cdviz_worker_wait_for_extension())
		(void) cdviz_source_stopping();
	open_consumer();

	while (!cdviz_source_stopping())
	{
		TimestampTz now;
		long		timeout;
		char		buf[64];
		int			rc;

		drain();
		now = GetCurrentTimestamp();
		if (ks.store_error == NULL && ks.nbatch > 0 && now >= ks.batch_deadline)
			(void) flush_batch();
		if (ks.store_error)
			ereport(ERROR,
					(errmsg("cdviz source \"%s\": could not store Kafka messages", src->name),
					 errdetail("%s", ks.store_error),
					 errhint("The messages are read again from the group's committed offsets.")));
		if (ks.uncommitted && now >= ks.commit_retry_at)
			commit_uncommitted();	/* answered through drain() */
		if (now >= ks.measure_at)
			note_progress(now);

		/* sleep until a message, a deadline, or the latch */
		now = GetCurrentTimestamp();
		if (ks.nbatch > 0)
			timeout = (ks.batch_deadline - now) / 1000;
		else
		{
			timeout = (ks.measure_at - now) / 1000;
			if (ks.uncommitted && ks.in_flight == 0)
				timeout = Min(timeout, (ks.commit_retry_at - now) / 1000);
			pgstat_report_activity(STATE_IDLE, NULL);
		}
		rc = WaitLatchOrSocket(MyLatch,
							   WL_LATCH_SET | WL_SOCKET_READABLE | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							   ks.wake[0], Max(timeout, 0) + 1, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		if (rc & WL_SOCKET_READABLE)
			while (read(ks.wake[0], buf, sizeof(buf)) > 0)
				;
	}
}
