/*
 * dispatch.h
 *	  The cdviz dispatcher worker: what its files share.
 *
 *	  dispatch_worker.c  settings, registration, the wait loop (latch, libcurl
 *	                     sockets and timers, the NATS wake-up pipe)
 *	  dispatch_store.c   SQL side: sinks and their progress, reading chunks
 *	                     of events in storage order, recording deliveries
 *	  sink_options.c     a sink's options (JSON) into its settings
 *	  sink_http.c        HTTP sink on libcurl's multi interface
 *	  sink_nats.c        NATS sink (core NATS or JetStream)
 *	  sink_kafka.c       Kafka sink (librdkafka idempotent producer)
 *	  sink_log.c         log sink
 *	  nats_conn.c        the one libnats connection
 *	  nats_source.c      NATS source: durable JetStream consumer or plain
 *	                     subscription, stored through the common store path
 *
 * Only the worker's main thread touches PostgreSQL.  libcurl runs in that
 * thread (curl_multi_socket_action from the loop); libnats has threads of
 * its own, whose callbacks only count and write a byte to a pipe the loop
 * waits on; so do librdkafka's, whose delivery reports the loop then
 * serves with rd_kafka_poll().
 *
 * Delivery is at least once and in storage order per sink: a sink holds
 * one chunk of events at a time, delivers it front to back, and its
 * progress moves past the chunk only in the transaction that follows the
 * last delivery.  A crash before that transaction delivers the chunk again.
 */
#ifndef CDVIZ_DISPATCH_H
#define CDVIZ_DISPATCH_H

#include "postgres.h"

#include <signal.h>

#include <nats/nats.h>

#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "port/atomics.h"
#include "utils/timestamp.h"

/* settings (dispatch_worker.c) */
extern int	cdviz_dispatch_interval;	/* ms between looks at the lake */
extern int	cdviz_dispatch_chunk;	/* events read per sink at once */
extern char *cdviz_nats_url;
extern char *cdviz_nats_subjects;
extern char *cdviz_nats_stream;
extern char *cdviz_nats_consumer;
extern int	cdviz_nats_stream_check_interval;	/* s between looks for streams */

/* One event to deliver. */
typedef struct DispatchEvent
{
	int64		id;				/* lake id */
	char	   *ts;				/* lake "timestamp" as text */
	char	   *context_id;
	char	   *source;
	char	   *type;
	char	   *subject;
	char	   *subject_id;		/* subject.id, or NULL */
	char	   *predicate;
	char	   *version;
	char	   *time;			/* context.timestamp as sent */
	char	   *payload;		/* the event, JSON text */
	int			payload_len;
	int64		reject_row;		/* rejected_deliveries.id being retried, or 0 */
} DispatchEvent;

typedef enum ChunkKind
{
	CHUNK_RETRY,				/* rows of cdviz.rejected_deliveries asked again */
	CHUNK_BACKFILL,				/* lake rows older than the sink */
	CHUNK_WINDOW				/* events of the snapshot window */
} ChunkKind;

/* A refusal to record. */
typedef struct DispatchRejection
{
	int			event;			/* index in the chunk */
	int			status;
	char	   *response;
} DispatchRejection;

/* Where the sink stands in the outbox (texts as SQL takes them). */
typedef struct SinkPosition
{
	char	   *snap;			/* pg_snapshot */
	char	   *next_snap;		/* NULL: no window open */
	char	   *pos_xid;		/* xid8, NULL: window start */
	int64		pos_batch;
	int32		pos_ord;
	bool		backfill;		/* backfill still running */
	int64		backfill_until;
	int64		backfill_pos;
} SinkPosition;

/* The events a sink holds, and the position after them. */
typedef struct DispatchChunk
{
	MemoryContext cxt;
	ChunkKind	kind;
	int			nevents;
	DispatchEvent *events;
	int			next;			/* first event not settled yet */
	int			delivered;
	int			nrejections;
	DispatchRejection *rejections;
	SinkPosition after;			/* progress once the chunk is settled */
	bool		more;			/* more events wait behind this chunk */
	bool		passed;			/* it moved past statements of the outbox, or
								 * closed a window that held some */
} DispatchChunk;

typedef enum SinkKind
{
	SINK_HTTP,
	SINK_NATS,
	SINK_KAFKA,
	SINK_LOG
} SinkKind;

typedef enum HttpMode
{
	HTTP_BINARY,
	HTTP_STRUCTURED,
	HTTP_BATCH
} HttpMode;

typedef struct HttpSinkState HttpSinkState;
typedef struct NatsSinkState NatsSinkState;
typedef struct KafkaSinkState KafkaSinkState;

typedef struct Sink
{
	MemoryContext cxt;			/* configuration lives here */
	int			id;
	char	   *name;
	SinkKind	kind;
	char	   *target;
	char	   *updated_at;		/* to notice changes */
	bool		paused;
	bool		seen;			/* still in cdviz.sinks */
	char	   *filter;			/* SQL condition on the lake row "e" */
	struct _SPI_plan *events_plan;	/* its window's events, kept, or NULL */
	int			events_plan_limit;	/* the chunk size it was planned with */

	/* options */
	HttpMode	mode;
	int			batch_size;
	int			timeout_ms;
	int			initial_backoff_ms;
	int			max_backoff_ms;
	char	   *token;
	char	   *hmac_secret;
	char	   *headers_json;	/* JSON object, or NULL */
	int			jetstream;		/* 0 never, 1 always, 2 auto */
	char	   *options_json;	/* all options, secrets included */

	/* progress: committed, and in memory (may be ahead, never behind) */
	SinkPosition pos;
	bool		pos_dirty;		/* advanced without events: write lazily */
	TimestampTz pos_written_at;
	DispatchChunk *chunk;
	bool		more;			/* fetch again at once */

	/* failures */
	int			attempts;		/* consecutive failed attempts */
	TimestampTz retry_at;		/* no attempt before */
	int64		failures;		/* not yet written */
	char	   *last_error;		/* not yet written, malloc'd */

	/* kind-specific state */
	HttpSinkState *http;
	NatsSinkState *nats;
	KafkaSinkState *kafka;
} Sink;

/* dispatch_worker.c */
extern void dispatch_sink_failed(Sink *sink, const char *fmt,...) pg_attribute_printf(2, 3);
extern void dispatch_sink_progressed(Sink *sink);
extern void dispatch_wake(void);	/* from any thread */
extern bool dispatch_curl_sockets_changed;

/* dispatch_store.c */
extern void dispatch_store_sync(List **sinks);
extern void dispatch_store_fetch(Sink *sink);
extern void dispatch_store_write(List *sinks);
extern void dispatch_store_written(List *sinks);
extern bool dispatch_store_absorb_empty(Sink *sink);
extern bool dispatch_store_prune(void);
extern void dispatch_chunk_settle(Sink *sink, int upto, int status, const char *response);
extern void dispatch_sink_free(Sink *sink);

/* sink_options.c */
extern void dispatch_sink_options(Sink *sink, const char *options, const char *secrets);

/* sink_http.c */
extern void sink_http_start(Sink *sink);
extern void sink_http_cancel(Sink *sink);
extern void sink_http_init_multi(void);
extern void sink_http_socket_action(int fd, int events);
extern void sink_http_timeout(void);
extern long sink_http_timeout_ms(void);
extern int	sink_http_sockets(int *fds, int *events, int max);

/* sink_nats.c */
extern void sink_nats_start(Sink *sink);
extern void sink_nats_cancel(Sink *sink);
extern void sink_nats_free(Sink *sink);

/* sink_kafka.c */
extern void sink_kafka_start(Sink *sink);
extern void sink_kafka_cancel(Sink *sink);
extern void sink_kafka_free(Sink *sink);

/* sink_log.c */
extern void sink_log_deliver(Sink *sink);

/* nats_conn.c */
extern natsConnection *dispatch_nats_connection(void);
extern void dispatch_nats_close(void);
extern bool dispatch_nats_connected(void);
extern uint64 dispatch_nats_reconnects(void);
extern int	dispatch_nats_generation;
extern void dispatch_nats_block_signals(sigset_t *saved);
extern void dispatch_nats_restore_signals(const sigset_t *saved);

/* nats_source.c */
extern void nats_source_poll(void);
extern void nats_source_close(void);
extern bool nats_source_active(void);

#endif							/* CDVIZ_DISPATCH_H */
