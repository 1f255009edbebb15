/*
 * sink_kafka.c
 *	  Kafka sink: produce each event to a topic with librdkafka's idempotent
 *	  producer (enable.idempotence, acks=all), in the CloudEvents Kafka
 *	  protocol binding.
 *
 * Binary mode (the default): the CDEvent is the value, its CloudEvents
 * attributes are ce_* headers (ce_specversion, ce_id, ce_source, ce_type,
 * ce_time, ce_subject) and the content-type header says application/json.
 * Structured mode: the whole CloudEvent is the value, content-type
 * application/cloudevents+json.  The message key is the event's subject
 * id by default ("key": "subject"), so that the events of one subject go
 * to one partition, in storage order; "source" keys by context.source,
 * "none" leaves the key empty (librdkafka spreads such messages over the
 * partitions: no order between them).  A key is also sent as the
 * binding's partitionkey attribute.  The partitioner is murmur2_random,
 * the Java client's, so that cdviz and Java producers keying alike write
 * a subject's events to the same partition.
 *
 * An event counts as delivered only when its delivery report says the
 * broker acknowledged it (acks=all: every in-sync replica has it).  The
 * loop produces the sink's chunk and comes back when the reports are in:
 * librdkafka's threads queue them on the producer's main queue, whose
 * event callback only writes a byte to the dispatcher's wake-up pipe, and
 * the loop serves them with rd_kafka_poll() here, in the main thread.  The
 * front of the chunk that was acknowledged is settled; a failure (a
 * message not acknowledged within the sink's timeout, which is librdkafka's
 * message.timeout.ms: its own retries, deduplicated by the broker thanks to
 * idempotence, happen inside it) is retried after the backoff, from the
 * first event not acknowledged.  A message the broker refuses for its size
 * is refused for good (cdviz.rejected_deliveries, with the Kafka error
 * code as status).
 *
 * Each sink has its own producer, made from its options when first needed
 * and made again when they change.  Reports of an attempt that was
 * cancelled are recognised by the attempt number carried in each message's
 * opaque and ignored.
 */
#include "postgres.h"

#include <json-c/json.h>
#include <librdkafka/rdkafka.h>

#include "utils/json.h"
#include "utils/memutils.h"

#include "dispatch/dispatch.h"

/* Seconds past the sink's timeout after which missing reports fail it. */
#define REPORT_GRACE_MS 5000

typedef struct KafkaSinkState KafkaSinkState;

typedef enum KafkaKey
{
	KEY_SUBJECT,
	KEY_SOURCE,
	KEY_NONE
} KafkaKey;

/* What happened to one event of the attempt in flight. */
typedef enum Outcome
{
	OUT_PENDING,
	OUT_ACKED,
	OUT_FAILED,
	OUT_REFUSED					/* for good: too large, invalid record */
} Outcome;

struct KafkaSinkState
{
	rd_kafka_t *rk;
	rd_kafka_topic_t *rkt;
	char	   *made_from;		/* target and options of rk, malloc'd */
	KafkaKey	key;
	char		last_error[256];	/* of the producer, for failure messages */
	char		name[NAMEDATALEN];	/* the sink's, for the log */

	/* the attempt in flight: events [start, end) of the chunk */
	bool		in_flight;
	uint32		attempt;
	int			start;
	int			end;
	int			outstanding;	/* reports not in yet */
	Outcome    *outcome;		/* end - start of them, in the chunk's context */
	int16	   *codes;			/* Kafka error code of a refusal */
	int			nfailed;
	char		error[256];		/* the first failure */
	TimestampTz deadline;
};

/*
 * Every open producer: the loop's timer serves their queues after each
 * wait, idle ones included, so that their errors and logs do not pile up.
 */
static List *producers = NIL;

/* The opaque of a message: attempt number and index in the chunk. */
#define TAG(attempt, i)		((void *) (((uintptr_t) (attempt) << 32) | (uint32) (i)))
#define TAG_ATTEMPT(p)		((uint32) ((uintptr_t) (p) >> 32))
#define TAG_INDEX(p)		((int) (uint32) (uintptr_t) (p))

/* A message no retry will make acceptable. */
static bool
refused_for_good(rd_kafka_resp_err_t err)
{
	return err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ||
		err == RD_KAFKA_RESP_ERR_INVALID_RECORD ||
		err == RD_KAFKA_RESP_ERR_INVALID_MSG;
}

/* librdkafka's queue went from empty to non-empty (any thread). */
static void
queue_event_cb(rd_kafka_t *rk, void *opaque)
{
	dispatch_wake();
}

/* Served by rd_kafka_poll() in the loop's thread, like the two below. */
static void
dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	KafkaSinkState *st = opaque;
	int			i = TAG_INDEX(m->_private);

	if (!st->in_flight || TAG_ATTEMPT(m->_private) != st->attempt ||
		i < st->start || i >= st->end)
		return;
	st->outstanding--;
	if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR)
		st->outcome[i - st->start] = OUT_ACKED;
	else if (refused_for_good(m->err))
	{
		st->outcome[i - st->start] = OUT_REFUSED;
		st->codes[i - st->start] = (int16) m->err;
	}
	else
	{
		st->outcome[i - st->start] = OUT_FAILED;
		if (st->nfailed++ == 0)
			snprintf(st->error, sizeof(st->error), "%s", rd_kafka_err2str(m->err));
	}
}

static void
error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	KafkaSinkState *st = opaque;

	snprintf(st->last_error, sizeof(st->last_error), "%s", reason);
}

static void
log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	KafkaSinkState *st = rd_kafka_opaque(rk);

	ereport(LOG,
			(errmsg("cdviz dispatcher: sink \"%s\": librdkafka %s: %s", st->name, fac, buf)));
}

/* Forget what is in flight (the chunk goes, or is read again). */
static void
kafka_cancel(Sink *sink)
{
	KafkaSinkState *st = sink->state;

	if (st == NULL || !st->in_flight)
		return;
	st->in_flight = false;
	st->attempt++;
	/* what was not sent yet is not sent; reports of the rest are ignored */
	if (st->rk)
		rd_kafka_purge(st->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_NON_BLOCKING);
}

static void
close_producer(KafkaSinkState *st)
{
	if (st->rk)
	{
		rd_kafka_purge(st->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT |
					   RD_KAFKA_PURGE_F_NON_BLOCKING);
		st->in_flight = false;
		st->attempt++;
		/* the purged messages' reports, ignored */
		rd_kafka_poll(st->rk, 0);
		if (st->rkt)
			rd_kafka_topic_destroy(st->rkt);
		rd_kafka_destroy(st->rk);
		producers = list_delete_ptr(producers, st);
	}
	st->rk = NULL;
	st->rkt = NULL;
	if (st->made_from)
		free(st->made_from);
	st->made_from = NULL;
}

/* The sink is dropped (after kafka_cancel). */
static void
kafka_close(Sink *sink)
{
	KafkaSinkState *st = sink->state;

	if (st == NULL)
		return;
	close_producer(st);
	pfree(st);
	sink->state = NULL;
}

/* Set one producer property; false with errstr filled when refused. */
static bool
set_conf(rd_kafka_conf_t *conf, const char *name, const char *value,
		 char *errstr, size_t errlen)
{
	char		why[512];

	if (rd_kafka_conf_set(conf, name, value, why, sizeof(why)) == RD_KAFKA_CONF_OK)
		return true;
	snprintf(errstr, errlen, "librdkafka setting \"%s\": %s", name, why);
	return false;
}

/*
 * A producer configuration from a sink's options (JSON text): the sink's
 * own settings first, then "config", then what the sink's guarantees rest
 * on, which "config" cannot change (cdviz._sink_check() refuses those keys
 * anyway).  NULL with errstr filled when librdkafka refuses a setting.
 */
static rd_kafka_conf_t *
make_conf(const char *options, int timeout_ms, KafkaKey *key, char *errstr, size_t errlen)
{
	struct json_object *opts = json_tokener_parse(options);
	struct json_object *v;
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char		timeout[32];
	bool		ok = true;

	*key = KEY_SUBJECT;
	if (opts && json_object_object_get_ex(opts, "key", &v))
	{
		const char *k = json_object_get_string(v);

		*key = strcmp(k, "source") == 0 ? KEY_SOURCE : strcmp(k, "none") == 0 ? KEY_NONE : KEY_SUBJECT;
	}
	ok = set_conf(conf, "bootstrap.servers",
				  opts && json_object_object_get_ex(opts, "brokers", &v)
				  ? json_object_get_string(v) : "", errstr, errlen) &&
		set_conf(conf, "partitioner", "murmur2_random", errstr, errlen) &&
		set_conf(conf, "log_level", "3", errstr, errlen);
	if (ok && opts && json_object_object_get_ex(opts, "config", &v) &&
		json_object_is_type(v, json_type_object))
	{
		json_object_object_foreach(v, name, val)
		{
			if (!(ok = set_conf(conf, name, json_object_get_string(val), errstr, errlen)))
				break;
		}
	}
	snprintf(timeout, sizeof(timeout), "%d", timeout_ms);
	ok = ok &&
		set_conf(conf, "enable.idempotence", "true", errstr, errlen) &&
		set_conf(conf, "acks", "all", errstr, errlen) &&
		set_conf(conf, "message.timeout.ms", timeout, errstr, errlen) &&
		set_conf(conf, "log.queue", "true", errstr, errlen);
	if (opts)
		json_object_put(opts);
	if (!ok)
	{
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	return conf;
}

/* The sink's producer, made (again) when its target or options changed. */
static bool
open_producer(Sink *sink, KafkaSinkState *st, char *errstr, size_t errlen)
{
	char	   *from = psprintf("%s\n%d\n%s", sink->target, sink->timeout_ms, sink->options_json);
	rd_kafka_conf_t *conf;

	if (st->rk && strcmp(st->made_from, from) == 0)
	{
		pfree(from);
		return true;
	}
	close_producer(st);
	conf = make_conf(sink->options_json, sink->timeout_ms, &st->key, errstr, errlen);
	if (conf == NULL)
	{
		pfree(from);
		return false;
	}
	rd_kafka_conf_set_opaque(conf, st);
	rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
	rd_kafka_conf_set_error_cb(conf, error_cb);
	rd_kafka_conf_set_log_cb(conf, log_cb);
	/* librdkafka's threads block every signal: PostgreSQL's go to this one */
	st->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, errlen);
	if (st->rk == NULL)
	{
		rd_kafka_conf_destroy(conf);
		pfree(from);
		return false;
	}
	/* logs are served by rd_kafka_poll() too, in this thread */
	rd_kafka_set_log_queue(st->rk, NULL);
	rd_kafka_queue_cb_event_enable(rd_kafka_queue_get_main(st->rk), queue_event_cb, NULL);
	st->rkt = rd_kafka_topic_new(st->rk, sink->target, NULL);
	st->made_from = strdup(from);
	strlcpy(st->name, sink->name, sizeof(st->name));
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		producers = lappend(producers, st);
		MemoryContextSwitchTo(old);
	}
	pfree(from);
	st->last_error[0] = '\0';
	return true;
}

static void
append_attribute(StringInfo buf, const char *name, const char *value)
{
	if (value == NULL)
		return;
	appendStringInfo(buf, ",\"%s\":", name);
	escape_json(buf, value);
}

/* Produce one event; the librdkafka error, or 0. */
static rd_kafka_resp_err_t
produce(Sink *sink, KafkaSinkState *st, const DispatchEvent *ev, int i, StringInfo buf)
{
	const char *key = st->key == KEY_SUBJECT ? ev->subject_id
		: st->key == KEY_SOURCE ? ev->source : NULL;
	size_t		keylen = key ? strlen(key) : 0;
	void	   *tag = TAG(st->attempt, i);

	if (sink->mode == HTTP_STRUCTURED)
	{
		resetStringInfo(buf);
		appendStringInfoString(buf, "{\"specversion\":\"1.0\"");
		append_attribute(buf, "id", ev->context_id);
		append_attribute(buf, "source", ev->source);
		append_attribute(buf, "type", ev->type);
		append_attribute(buf, "subject", ev->subject_id);
		append_attribute(buf, "time", ev->time);
		append_attribute(buf, "partitionkey", key);
		appendStringInfoString(buf, ",\"datacontenttype\":\"application/json\",\"data\":");
		appendBinaryStringInfo(buf, ev->payload, ev->payload_len);
		appendStringInfoChar(buf, '}');
		return rd_kafka_producev(st->rk,
								 RD_KAFKA_V_RKT(st->rkt),
								 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
								 RD_KAFKA_V_KEY(key, keylen),
								 RD_KAFKA_V_VALUE(buf->data, buf->len),
								 RD_KAFKA_V_HEADER("content-type",
												   "application/cloudevents+json", -1),
								 RD_KAFKA_V_OPAQUE(tag),
								 RD_KAFKA_V_END);
	}
	/* binary: absent attributes are sent as empty headers, never skipped */
	return rd_kafka_producev(st->rk,
							 RD_KAFKA_V_RKT(st->rkt),
							 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
							 RD_KAFKA_V_KEY(key, keylen),
							 RD_KAFKA_V_VALUE(ev->payload, ev->payload_len),
							 RD_KAFKA_V_HEADER("content-type", "application/json", -1),
							 RD_KAFKA_V_HEADER("ce_specversion", "1.0", -1),
							 RD_KAFKA_V_HEADER("ce_id", ev->context_id, -1),
							 RD_KAFKA_V_HEADER("ce_source", ev->source, -1),
							 RD_KAFKA_V_HEADER("ce_type", ev->type, -1),
							 RD_KAFKA_V_HEADER("ce_time", ev->time ? ev->time : "", -1),
							 RD_KAFKA_V_HEADER("ce_subject", ev->subject_id ? ev->subject_id : "", -1),
							 RD_KAFKA_V_HEADER("ce_partitionkey", key ? key : "", -1),
							 RD_KAFKA_V_OPAQUE(tag),
							 RD_KAFKA_V_END);
}

/*
 * Every report of the attempt is in (or its deadline passed): settle the
 * front of the chunk that was acknowledged or refused for good, and fail
 * the attempt if anything is left before its end.
 */
static void
finish_attempt(Sink *sink, KafkaSinkState *st, bool timed_out)
{
	DispatchChunk *chunk = sink->chunk;
	int			i = st->start;
	bool		settled = false;

	st->in_flight = false;
	while (i < st->end)
	{
		Outcome		o = st->outcome[i - st->start];
		int			j = i;

		if (o != OUT_ACKED && o != OUT_REFUSED)
			break;
		/* a run of the same outcome (and, for refusals, the same code) */
		while (j < st->end && st->outcome[j - st->start] == o &&
			   (o == OUT_ACKED || st->codes[j - st->start] == st->codes[i - st->start]))
			j++;
		if (o == OUT_ACKED)
			dispatch_chunk_settle(sink, j, 0, NULL);
		else
			dispatch_chunk_settle(sink, j, st->codes[i - st->start],
								  rd_kafka_err2str((rd_kafka_resp_err_t) st->codes[i - st->start]));
		settled = true;
		i = j;
	}
	st->attempt++;
	if (i < st->end)
	{
		if (timed_out)
		{
			rd_kafka_purge(st->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_NON_BLOCKING);
			dispatch_sink_failed(sink, "Kafka delivery reports of %d of %d messages to \"%s\" did not arrive within %d ms%s%s",
								 st->outstanding, st->end - st->start, sink->target,
								 sink->timeout_ms + REPORT_GRACE_MS,
								 st->last_error[0] ? "; last error: " : "", st->last_error);
		}
		else
			dispatch_sink_failed(sink, "Kafka did not acknowledge %d of %d messages to \"%s\": %s%s%s",
								 st->nfailed, st->end - st->start, sink->target, st->error,
								 st->last_error[0] ? "; last error: " : "", st->last_error);
	}
	else if (settled || chunk->next >= chunk->nevents)
		dispatch_sink_progressed(sink);
}

/* Produce the sink's chunk, or see whether what is in flight is settled. */
static void
kafka_start(Sink *sink)
{
	DispatchChunk *chunk = sink->chunk;
	KafkaSinkState *st = sink->state;
	char		errstr[512];
	StringInfoData buf;

	if (st == NULL)
		st = sink->state = MemoryContextAllocZero(TopMemoryContext, sizeof(KafkaSinkState));
	if (st->rk)
		rd_kafka_poll(st->rk, 0);
	if (st->in_flight)
	{
		if (st->outstanding <= 0)
			finish_attempt(sink, st, false);
		else if (GetCurrentTimestamp() >= st->deadline)
			finish_attempt(sink, st, true);
		return;
	}
	if (st->rk && rd_kafka_fatal_error(st->rk, errstr, sizeof(errstr)) != RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		/* an idempotent producer that lost its guarantees: make another */
		ereport(LOG,
				(errmsg("cdviz dispatcher: the Kafka producer of sink \"%s\" failed: %s; making a new one",
						sink->name, errstr)));
		close_producer(st);
		dispatch_sink_failed(sink, "the Kafka producer failed: %s", errstr);
		return;
	}
	if (!open_producer(sink, st, errstr, sizeof(errstr)))
	{
		dispatch_sink_failed(sink, "%s", errstr);
		return;
	}
	if (chunk->next >= chunk->nevents)
	{
		dispatch_sink_progressed(sink);
		return;
	}

	/* the rest of the chunk, in order; a full queue ends the attempt early */
	st->start = chunk->next;
	st->end = chunk->next;
	st->outstanding = 0;
	st->nfailed = 0;
	st->error[0] = '\0';
	st->outcome = MemoryContextAllocZero(chunk->cxt, sizeof(Outcome) * (chunk->nevents - st->start));
	st->codes = MemoryContextAllocZero(chunk->cxt, sizeof(int16) * (chunk->nevents - st->start));
	st->in_flight = true;
	st->deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
											   sink->timeout_ms + REPORT_GRACE_MS);
	initStringInfo(&buf);
	for (int i = st->start; i < chunk->nevents; i++)
	{
		rd_kafka_resp_err_t err = produce(sink, st, &chunk->events[i], i, &buf);

		if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL)
			break;
		st->end = i + 1;
		if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
			st->outstanding++;
		else if (refused_for_good(err))
		{
			st->outcome[i - st->start] = OUT_REFUSED;
			st->codes[i - st->start] = (int16) err;
		}
		else
		{
			/* what was produced before it goes on; it is tried again */
			st->outcome[i - st->start] = OUT_FAILED;
			st->nfailed++;
			snprintf(st->error, sizeof(st->error), "%s", rd_kafka_err2str(err));
			break;
		}
	}
	pfree(buf.data);
	if (st->end == st->start)
	{
		st->in_flight = false;
		dispatch_sink_failed(sink, "the Kafka producer's queue is full");
		return;
	}
	rd_kafka_poll(st->rk, 0);
	if (st->outstanding <= 0)
		finish_attempt(sink, st, false);
}

/*
 * After each wait of the loop: reports, errors and logs of every producer
 * (the loop was woken through the pipe when one of their queues filled).
 */
static void
kafka_timer(void)
{
	ListCell   *lc;

	foreach(lc, producers)
		rd_kafka_poll(((KafkaSinkState *) lfirst(lc))->rk, 0);
}

/*
 * Reports wake the loop through the pipe; the recheck notices an attempt
 * whose reports are overdue.
 */
const SinkMethods sink_kafka_methods = {
	.kind = "kafka",
	.start = kafka_start,
	.cancel = kafka_cancel,
	.close = kafka_close,
	.recheck_ms = 250,
	.timer = kafka_timer,
};
