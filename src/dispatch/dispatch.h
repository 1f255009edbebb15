/*
 * dispatch.h
 *	  The cdviz dispatcher worker: what its files share.
 *
 * Files, each calling only those listed below it:
 *
 *	  dispatch_worker.c    registration and the wait loop (latch, the sinks'
 *	                       sockets and timers, the wake-up pipe)
 *	  dispatch_sinks.c     the kinds of sink, and the list of sinks kept in
 *	                       line with cdviz.sinks
 *	  sink_http.c          HTTP sink on libcurl's multi interface
 *	  sink_nats.c          NATS sink (core NATS or JetStream)
 *	  sink_kafka.c         Kafka sink (librdkafka idempotent producer)
 *	  sink_log.c           log sink
 *	  nats_conn.c          the one libnats connection (of the dispatcher, or
 *	                       of a NATS source's worker: src/sources/)
 *	  dispatch_store.c     SQL side: chunks of events read in storage order,
 *	                       deliveries and progress written back
 *	  sink_options.c       a sink's options (JSON) into its settings
 *	  dispatch_progress.c  what sinks report to the loop: settled events,
 *	                       failures and their backoff, wake-ups
 *	  dispatch_settings.c  the dispatcher's settings
 *
 * A kind of sink is a table of methods (SinkMethods) that the loop and the
 * SQL side call without knowing the kind; a sink reports back only through
 * dispatch_progress.c.
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

/* settings (dispatch_settings.c) */
extern int	cdviz_dispatch_interval;	/* ms between looks at the lake */
extern int	cdviz_dispatch_chunk;	/* events read per sink at once */
extern char *cdviz_nats_url;
extern char *cdviz_nats_subjects;
extern char *cdviz_nats_stream;
extern char *cdviz_nats_consumer;
extern int	cdviz_nats_stream_check_interval;	/* s between looks for streams */

extern void dispatch_define_settings(void);

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

typedef enum HttpMode
{
	HTTP_BINARY,
	HTTP_STRUCTURED,
	HTTP_BATCH
} HttpMode;

typedef struct Sink Sink;

/*
 * What a kind of sink does, called by the loop (dispatch_worker.c) and by
 * the list of sinks (dispatch_sinks.c) without knowing the kind.  A sink
 * reports what it delivered with dispatch_chunk_settle() and
 * dispatch_sink_progressed(), and failures with dispatch_sink_failed().
 * Members marked "or NULL" are left out by kinds that need nothing there.
 */
typedef struct SinkMethods
{
	const char *kind;			/* cdviz.sinks.kind */

	/* Once per process, before the loop's first wait (or NULL). */
	void		(*init) (void);

	/*
	 * Deliver sink->chunk from chunk->next on, or look whether what is in
	 * flight is settled.  Called again by the loop while the sink holds a
	 * chunk that is not settled; must not wait.
	 */
	void		(*start) (Sink *sink);

	/* Forget what is in flight: the chunk is dropped or read again (or NULL). */
	void		(*cancel) (Sink *sink);

	/* The sink is dropped, after cancel: release its state (or NULL). */
	void		(*close) (Sink *sink);

	/*
	 * Milliseconds after which the loop calls start again while the sink
	 * holds a chunk, even when nothing woke it (deadlines of work in
	 * flight); 0: only when woken.
	 */
	int			recheck_ms;

	/*
	 * The kind's sockets and timer, shared by its sinks (or NULL): the
	 * sockets to wait on (WL_SOCKET_* flags), what to do when one is ready,
	 * milliseconds until the timer is due (-1: none) and what to do then.
	 * A change of the sockets is announced by dispatch_sockets_changed.
	 */
	int			(*sockets) (int *fds, int *events, int max);
	void		(*socket_ready) (int fd, int events);
	long		(*timer_ms) (void);
	void		(*timer) (void);
} SinkMethods;

struct Sink
{
	MemoryContext cxt;			/* configuration lives here */
	int			id;
	char	   *name;
	const SinkMethods *methods;	/* its kind */
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

	void	   *state;			/* the kind's own, owned by its methods */
};

/* dispatch_progress.c */
extern bool dispatch_progressed;	/* a chunk part settled in this iteration */
extern bool dispatch_sockets_changed;	/* the loop must wait on other sockets */
extern void dispatch_wake_open(void);
extern int	dispatch_wake_fd(void);
extern void dispatch_wake_drain(void);
extern void dispatch_wake(void);	/* from any thread */
extern void dispatch_sink_failed(Sink *sink, const char *fmt,...) pg_attribute_printf(2, 3);
extern void dispatch_chunk_settle(Sink *sink, int upto, int status, const char *response);
extern void dispatch_sink_progressed(Sink *sink);
extern bool dispatch_chunk_settled(Sink *sink);

/* dispatch_sinks.c */
extern const SinkMethods *const dispatch_sink_kinds[];
extern const int dispatch_nsink_kinds;
extern void dispatch_sinks_sync(List **sinks);
extern void dispatch_sink_free(Sink *sink);

/* dispatch_store.c */
extern void dispatch_store_fetch(Sink *sink);
extern void dispatch_store_forget_plan(Sink *sink);
extern void dispatch_store_write(List *sinks);
extern void dispatch_store_written(void);
extern bool dispatch_store_absorb_empty(Sink *sink);
extern bool dispatch_store_prune(void);
extern char *dispatch_value(int r, int n);
extern int64 dispatch_int8_value(int r, int n, int64 dflt);
extern void dispatch_position_copy(SinkPosition *dst, const SinkPosition *src);
extern void dispatch_position_free(SinkPosition *p);

/* sink_options.c */
extern void dispatch_sink_options(Sink *sink, const char *options, const char *secrets);

/* the kinds of sink: sink_http.c, sink_nats.c, sink_kafka.c, sink_log.c */
extern const SinkMethods sink_http_methods;
extern const SinkMethods sink_nats_methods;
extern const SinkMethods sink_kafka_methods;
extern const SinkMethods sink_log_methods;

/* nats_conn.c */
extern natsConnection *dispatch_nats_connection(void);
/* Connect this process to url rather than cdviz.nats_url (a NATS source). */
extern void dispatch_nats_set_url(const char *url);
extern void dispatch_nats_close(void);
extern bool dispatch_nats_connected(void);
extern uint64 dispatch_nats_reconnects(void);
extern int	dispatch_nats_generation;
extern void dispatch_nats_block_signals(sigset_t *saved);
extern void dispatch_nats_restore_signals(const sigset_t *saved);


#endif							/* CDVIZ_DISPATCH_H */
