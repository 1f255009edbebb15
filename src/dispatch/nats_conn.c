/*
 * nats_conn.c
 *	  The dispatcher's one libnats connection, shared by the nats sinks and
 *	  the NATS source.
 *
 * libnats runs threads of its own (socket reader, flusher, callbacks).
 * They are created with every signal blocked, so that PostgreSQL's
 * handlers (SIGTERM, SIGHUP, SIGURG of the latch) keep running in the
 * worker's main thread, the only one that touches PostgreSQL.
 *
 * The connection reconnects by itself, forever, and is created without
 * waiting for the server: a NATS server that is down delays nothing, the
 * publishes and fetches fail and are retried.  (libnats retries a failed
 * first connect in the background only when given a connected callback;
 * without one, natsConnection_Connect() blocks until the server is up.)
 */
#include "postgres.h"

#include "postmaster/bgworker.h"

#include "utils/memutils.h"

#include <pthread.h>

#include "dispatch/dispatch.h"

static natsConnection *conn = NULL;

/*
 * The connection's state as its callbacks (libnats threads) report it.
 * The loop reads these instead of asking libnats: while libnats
 * reconnects it holds the connection's lock for each attempt (up to the
 * connect timeout against a server that accepts and answers nothing),
 * and natsConnection_Status() would wait for it.
 */
static pg_atomic_uint32 conn_up;
static pg_atomic_uint32 conn_closed;
static pg_atomic_uint32 conn_reconnects;

/* Bumped at each new connection: JetStream contexts of an older one are stale. */
int			dispatch_nats_generation = 0;

/* The server this process connects to: cdviz.nats_url unless set. */
static char *nats_url = NULL;

/* See dispatch.h. */
void
dispatch_nats_set_url(const char *url)
{
	nats_url = MemoryContextStrdup(TopMemoryContext, url);
}

static const char *
current_url(void)
{
	return nats_url ? nats_url : cdviz_nats_url;
}

void
dispatch_nats_block_signals(sigset_t *saved)
{
	sigset_t	all;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, saved);
}

void
dispatch_nats_restore_signals(const sigset_t *saved)
{
	pthread_sigmask(SIG_SETMASK, saved, NULL);
}

/*
 * What a libnats callback reports.  Its closure carries the event and the
 * generation of the connection it was set for.
 */
typedef enum ConnEvent
{
	CONN_CONNECTED,				/* the first connect, in the background */
	CONN_RECONNECTED,
	CONN_DISCONNECTED,
	CONN_CLOSED					/* for good: the next use connects anew */
} ConnEvent;

#define CONN_CLOSURE(gen, ev) ((void *) (((intptr_t) (gen) << 2) | (ev)))

/* libnats thread: note the event, unless of a connection already replaced. */
static void
conn_event(natsConnection *nc, void *closure)
{
	intptr_t	c = (intptr_t) closure;
	ConnEvent	ev = (ConnEvent) (c & 3);

	if ((c >> 2) != dispatch_nats_generation)
		return;
	if (ev == CONN_RECONNECTED)
		pg_atomic_fetch_add_u32(&conn_reconnects, 1);
	pg_atomic_write_u32(&conn_up, ev == CONN_CONNECTED || ev == CONN_RECONNECTED);
	if (ev == CONN_CLOSED)
		pg_atomic_write_u32(&conn_closed, 1);
	if (ev != CONN_DISCONNECTED)
		dispatch_wake();
}

/* The connection, created on first use; NULL when it cannot be made. */
natsConnection *
dispatch_nats_connection(void)
{
	natsOptions *opts = NULL;
	natsStatus	s;
	sigset_t	saved;
	int			gen;

	if (conn && pg_atomic_read_u32(&conn_closed) == 0)
		return conn;
	if (conn)
	{
		natsConnection_Destroy(conn);
		conn = NULL;
	}
	pg_atomic_init_u32(&conn_up, 0);
	pg_atomic_init_u32(&conn_closed, 0);
	pg_atomic_init_u32(&conn_reconnects, 0);
	gen = ++dispatch_nats_generation;
	dispatch_nats_block_signals(&saved);
	s = natsOptions_Create(&opts);
	if (s == NATS_OK)
		s = natsOptions_SetURL(opts, current_url());
	if (s == NATS_OK)
		s = natsOptions_SetName(opts, MyBgworkerEntry ? MyBgworkerEntry->bgw_name : "cdviz");
	if (s == NATS_OK)
		s = natsOptions_SetAllowReconnect(opts, true);
	if (s == NATS_OK)
		s = natsOptions_SetMaxReconnect(opts, -1);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectWait(opts, 500);
	if (s == NATS_OK)
		s = natsOptions_SetTimeout(opts, 2000);
	if (s == NATS_OK)
		s = natsOptions_SetPingInterval(opts, 5000);
	if (s == NATS_OK)
		s = natsOptions_SetRetryOnFailedConnect(opts, true, conn_event, CONN_CLOSURE(gen, CONN_CONNECTED));
	if (s == NATS_OK)
		s = natsOptions_SetReconnectedCB(opts, conn_event, CONN_CLOSURE(gen, CONN_RECONNECTED));
	if (s == NATS_OK)
		s = natsOptions_SetDisconnectedCB(opts, conn_event, CONN_CLOSURE(gen, CONN_DISCONNECTED));
	if (s == NATS_OK)
		s = natsOptions_SetClosedCB(opts, conn_event, CONN_CLOSURE(gen, CONN_CLOSED));
	if (s == NATS_OK)
	{
		s = natsConnection_Connect(&conn, opts);
		if (s == NATS_OK)
			pg_atomic_write_u32(&conn_up, 1);
		else if (s == NATS_NOT_YET_CONNECTED)
			s = NATS_OK;
	}
	natsOptions_Destroy(opts);
	dispatch_nats_restore_signals(&saved);
	if (s != NATS_OK)
	{
		ereport(LOG,
				(errmsg("%s: could not connect to NATS at \"%s\": %s",
						MyBgworkerEntry ? MyBgworkerEntry->bgw_name : "cdviz",
						current_url(), natsStatus_GetText(s))));
		if (conn)
			natsConnection_Destroy(conn);
		conn = NULL;
	}
	return conn;
}

/* Close it (settings changed, extension gone); the next use reconnects. */
void
dispatch_nats_close(void)
{
	if (conn == NULL)
		return;
	natsConnection_Destroy(conn);
	conn = NULL;
}

bool
dispatch_nats_connected(void)
{
	return conn && pg_atomic_read_u32(&conn_up) == 1;
}

/* Reconnections of the connection so far: what was in flight may be lost. */
uint64
dispatch_nats_reconnects(void)
{
	return conn ? pg_atomic_read_u32(&conn_reconnects) : 0;
}
