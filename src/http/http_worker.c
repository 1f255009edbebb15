/*
 * http_worker.c
 *	  The cdviz http worker: its settings, its registration, and the loop
 *	  that drives libmicrohttpd from the worker's own WaitEventSet.
 *
 * libmicrohttpd 0.9.75 runs here in its "external event loop" mode with
 * epoll: it opens no thread of its own, and its epoll descriptor waits in
 * our WaitEventSet beside the latch.  Each turn of the loop lets it read
 * and write whatever sockets are ready (calling the handlers of
 * http_routes.c, which suspend complete POSTs), then stores every
 * suspended request in one transaction (http_commit.c), then lets it send
 * the answers.  Only this one thread ever touches PostgreSQL.
 *
 * The receiver faces the internet, so what one client can hold is
 * bounded here: connections per address, a deadline for each request's
 * headers and body whatever its pace (libmicrohttpd's own timeout is an
 * idle timeout that every byte restarts), and, when every connection
 * slot is taken, the oldest connection still waiting for its request
 * gives its slot to the new one.
 */
#include "postgres.h"

#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "miscadmin.h"
#include "pgstat.h"
#include "lib/ilist.h"
#include "postmaster/bgworker.h"
#include "storage/fd.h"
#include "storage/latch.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/wait_event.h"

#include "http/http.h"
#include "http/http_webhook.h"
#include "http/http_worker.h"
#include "common/worker.h"

/* One libmicrohttpd daemon per listening address. */
#define MAX_DAEMONS 16
static struct MHD_Daemon *daemons[MAX_DAEMONS];
static int	ndaemons;
static int	open_connections;

/*
 * The peer a connection is counted against: its IPv4 address, or the /64
 * network of its IPv6 address (one host commonly has a whole /64).
 */
typedef struct PeerKey
{
	uint8		family;			/* 4 or 6 */
	uint8		addr[16];
} PeerKey;

typedef struct PeerEntry
{
	PeerKey		key;
	int			connections;
} PeerEntry;

static HTAB *peers;

/* What the worker knows of one open connection (its socket context). */
typedef struct HttpConnection
{
	dlist_node	node;			/* in `waiting` while its request is awaited */
	struct MHD_Connection *conn;
	MHD_socket	fd;
	PeerKey		peer;
	int64		since_us;		/* since when its request is awaited */
	bool		in_waiting;
	bool		headers_in;		/* the handler saw this request's headers */
	bool		closing;		/* shut down here, libmicrohttpd to close it */
} HttpConnection;

/*
 * Connections whose request is not fully received yet, the longest
 * waiting first: a connection enters at its opening and again at the end
 * of each answer (a kept-alive connection waits for its next request),
 * and leaves once its request is in (or answered at once).  Being in
 * order of since_us, the overdue ones are at the head.
 */
static dlist_head waiting = DLIST_STATIC_INIT(waiting);
static MemoryContext conncxt;
static int	closing_connections;

/* connections the open-file limit leaves room for (set at start) */
static int	fd_capacity = INT_MAX;
static int	fd_capacity_for = -1;	/* the setting fd_capacity was set for */

/* what the limits refused or closed, logged at most once a minute */
static int64 refused_per_address;
static int64 refused_full;
static int64 closed_at_deadline;
static int64 closed_for_room;
static int64 last_limits_report_us;

#define LIMITS_REPORT_US (60 * INT64CONST(1000000))

/*
 * Descriptors kept for the worker itself beyond PostgreSQL's own files
 * (max_safe_fds): listening sockets, epoll sets, the latch, log pipes.
 */
#define HTTP_RESERVED_FDS 64

PGDLLEXPORT void cdviz_http_main(Datum arg);

/* Define the settings and register the worker (from _PG_init, preloaded). */
void
cdviz_http_init(void)
{
	http_define_settings();
	if (cdviz_http_listen_addresses[0] != '\0')
		cdviz_worker_register("cdviz http", "cdviz http", "cdviz_http_main",
							  CDVIZ_WORKER_RETRY_SECONDS);
}

/* libmicrohttpd's own messages (client errors mostly): debug level. */
static void
mhd_log(void *cls, const char *fmt, va_list ap)
{
	char		buf[512];

	vsnprintf(buf, sizeof(buf), fmt, ap);
	elog(DEBUG1, "cdviz http: libmicrohttpd: %s", buf);
}

static int64
now_us(void)
{
	instr_time	now;

	INSTR_TIME_SET_CURRENT(now);
	return (int64) INSTR_TIME_GET_MICROSEC(now);
}

/* The peer an address counts against. */
static void
peer_key(const struct sockaddr *sa, PeerKey *key)
{
	memset(key, 0, sizeof(*key));
	if (sa == NULL)
		return;
	if (sa->sa_family == AF_INET)
	{
		key->family = 4;
		memcpy(key->addr, &((const struct sockaddr_in *) sa)->sin_addr, 4);
	}
	else if (sa->sa_family == AF_INET6)
	{
		const struct in6_addr *a = &((const struct sockaddr_in6 *) sa)->sin6_addr;

		if (IN6_IS_ADDR_V4MAPPED(a))
		{
			/* an IPv4 client of a dual-stack socket */
			key->family = 4;
			memcpy(key->addr, &a->s6_addr[12], 4);
		}
		else
		{
			key->family = 6;
			memcpy(key->addr, a->s6_addr, 8);
		}
	}
}

/*
 * Connections the worker can have open: cdviz.http_max_connections, or
 * fewer if the open-file limit leaves no room for them beside the files
 * PostgreSQL itself may open (max_safe_fds).  The soft limit is raised
 * as far as the hard one allows, when the setting asks for it.
 */
static int
max_connections(void)
{
	struct rlimit rl;
	rlim_t		want;

	if (fd_capacity_for == cdviz_http_max_connections)
		return Min(cdviz_http_max_connections, fd_capacity);
	fd_capacity_for = cdviz_http_max_connections;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return cdviz_http_max_connections;
	want = (rlim_t) cdviz_http_max_connections + max_safe_fds + HTTP_RESERVED_FDS;
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want)
	{
		struct rlimit raised = rl;

		raised.rlim_cur = (rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want) ? want : rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &raised) == 0)
			rl = raised;
	}
	if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= want)
		fd_capacity = INT_MAX;
	else
	{
		/*
		 * Past the room PostgreSQL counts on, its files and the sockets
		 * share the limit: on EMFILE, fd.c closes a cached file of its own
		 * and retries, so it still works with fewer.  Half the limit is
		 * left to connections whatever max_files_per_process says.
		 */
		fd_capacity = Max((int) rl.rlim_cur - max_safe_fds - HTTP_RESERVED_FDS,
						  ((int) rl.rlim_cur - HTTP_RESERVED_FDS) / 2);
		ereport(WARNING,
				(errmsg("cdviz http: the open-file limit leaves room for %d connections, fewer than cdviz.http_max_connections (%d)",
						fd_capacity, cdviz_http_max_connections),
				 errdetail("The limit on open files is %lu; PostgreSQL's own files may take %d of them (max_files_per_process).",
						   (unsigned long) rl.rlim_cur, max_safe_fds),
				 errhint("Raise the hard limit on open files of the PostgreSQL service (LimitNOFILE= in its systemd unit, ulimit -Hn), or lower cdviz.http_max_connections.")));
	}
	return Min(cdviz_http_max_connections, fd_capacity);
}

/* Stop awaiting the connection's request. */
static void
stop_waiting(HttpConnection *c)
{
	if (c->in_waiting)
	{
		dlist_delete(&c->node);
		c->in_waiting = false;
	}
}

/* Await the connection's next request from now on. */
static void
start_waiting(HttpConnection *c)
{
	stop_waiting(c);
	c->headers_in = false;
	if (c->closing)
		return;
	c->since_us = now_us();
	dlist_push_tail(&waiting, &c->node);
	c->in_waiting = true;
}

/*
 * Close a connection from outside libmicrohttpd's callbacks.  Its
 * release 0.9.75 has no call for this; shutting the socket down makes
 * epoll report a hang-up, and libmicrohttpd closes the connection the
 * way it closes one the client dropped, at its next turn (request and
 * connection callbacks included).  The descriptor stays its own.
 */
static void
close_connection(HttpConnection *c)
{
	stop_waiting(c);
	if (c->closing)
		return;
	c->closing = true;
	closing_connections++;
	(void) shutdown(c->fd, SHUT_RDWR);
}

/* Close the connections whose request is not in by its deadline. */
static void
close_overdue(void)
{
	int64		limit = now_us() - (int64) cdviz_http_request_deadline * 1000000;

	while (!dlist_is_empty(&waiting))
	{
		HttpConnection *c = dlist_head_element(HttpConnection, node, &waiting);

		if (c->since_us > limit)
			break;
		close_connection(c);
		closed_at_deadline++;
	}
}

/* Milliseconds until the next request deadline, or -1 if none. */
static long
next_deadline_ms(void)
{
	HttpConnection *c;
	int64		left;

	if (dlist_is_empty(&waiting))
		return -1;
	c = dlist_head_element(HttpConnection, node, &waiting);
	left = c->since_us + (int64) cdviz_http_request_deadline * 1000000 - now_us();
	return left <= 0 ? 0 : (long) (left / 1000) + 1;
}

/*
 * Say, at most once a minute, what the limits refused or closed, so that
 * an operator sees an attack, or limits too tight for the clients.
 */
static void
report_limits(void)
{
	int64		now;

	if (refused_per_address + refused_full + closed_at_deadline + closed_for_room == 0)
		return;
	now = now_us();
	if (last_limits_report_us != 0 && now - last_limits_report_us < LIMITS_REPORT_US)
		return;
	last_limits_report_us = now;
	ereport(LOG,
			(errmsg("cdviz http: connections refused: " INT64_FORMAT " over cdviz.http_max_connections_per_address, " INT64_FORMAT " with no slot free; closed: " INT64_FORMAT " at cdviz.http_request_deadline, " INT64_FORMAT " to make room",
					refused_per_address, refused_full, closed_at_deadline, closed_for_room),
			 errdetail("Open connections: %d of %d.", open_connections, max_connections())));
	refused_per_address = refused_full = closed_at_deadline = closed_for_room = 0;
}

/*
 * Whether to take a new connection: not past its address's limit; and if
 * every slot is taken, the connection that has waited longest for its
 * request (a slow client, or an idle kept-alive one) is closed to make
 * room, so that slow clients cannot keep others out.  Requests being
 * stored or answered are never closed for room.
 */
static enum MHD_Result
accept_policy(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
	if (cdviz_http_max_connections_per_address > 0)
	{
		PeerKey		key;
		PeerEntry  *peer;

		peer_key(addr, &key);
		peer = hash_search(peers, &key, HASH_FIND, NULL);
		if (peer && peer->connections >= cdviz_http_max_connections_per_address)
		{
			refused_per_address++;
			return MHD_NO;
		}
	}
	if (open_connections - closing_connections >= max_connections())
	{
		if (dlist_is_empty(&waiting))
		{
			refused_full++;
			return MHD_NO;
		}
		close_connection(dlist_head_element(HttpConnection, node, &waiting));
		closed_for_room++;
	}
	return MHD_YES;
}

/* The worker's record of a connection, or NULL. */
static HttpConnection *
connection_of(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *info =
		MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

	return info ? (HttpConnection *) info->socket_context : NULL;
}

/* Count connections, per peer too; await their first request. */
static void
connection_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
				  enum MHD_ConnectionNotificationCode toe)
{
	HttpConnection *c;
	PeerEntry  *peer;
	bool		found;

	if (toe == MHD_CONNECTION_NOTIFY_STARTED)
	{
		const union MHD_ConnectionInfo *info;

		c = MemoryContextAllocZero(conncxt, sizeof(HttpConnection));
		c->conn = conn;
		info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
		c->fd = info ? info->connect_fd : MHD_INVALID_SOCKET;
		info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
		peer_key(info ? info->client_addr : NULL, &c->peer);
		peer = hash_search(peers, &c->peer, HASH_ENTER, &found);
		if (!found)
			peer->connections = 0;
		peer->connections++;
		start_waiting(c);
		*socket_context = c;
		open_connections++;
		MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT,
								  (unsigned int) cdviz_http_timeout);
	}
	else
	{
		c = *socket_context;
		if (c != NULL)
		{
			stop_waiting(c);
			if (c->closing)
				closing_connections--;
			peer = hash_search(peers, &c->peer, HASH_FIND, NULL);
			if (peer && --peer->connections <= 0)
				hash_search(peers, &c->peer, HASH_REMOVE, NULL);
			pfree(c);
			*socket_context = NULL;
		}
		open_connections--;
	}
	http_metrics_connections(open_connections);
}

/*
 * The request handler as libmicrohttpd sees it: http_handle_request(),
 * noting when the request is in, which ends its deadline.  It is in when
 * an answer is queued (given at once, or after an early refusal), or at
 * the call that ends the body (no data, after the first call).
 */
static enum MHD_Result
handle_request(void *cls, struct MHD_Connection *conn, const char *url,
			   const char *method, const char *version,
			   const char *upload_data, size_t *upload_data_size,
			   void **con_cls)
{
	HttpConnection *c = connection_of(conn);
	bool		body_end = c && c->headers_in && *upload_data_size == 0;
	enum MHD_Result ret;

	ret = http_handle_request(cls, conn, url, method, version,
							  upload_data, upload_data_size, con_cls);
	if (c != NULL)
	{
		c->headers_in = true;
		if (body_end ||
			MHD_get_connection_info(conn, MHD_CONNECTION_INFO_HTTP_STATUS) != NULL)
			stop_waiting(c);
	}
	return ret;
}

/* A request is done: a kept-alive connection awaits its next one. */
static void
request_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
				  enum MHD_RequestTerminationCode toe)
{
	HttpConnection *c = connection_of(conn);

	http_request_completed(cls, conn, con_cls, toe);
	if (c != NULL)
		start_waiting(c);
}

/* Start one daemon on addr (NULL: every address, IPv4 and IPv6). */
static struct MHD_Daemon *
start_daemon(const struct sockaddr *addr, bool ipv6)
{
	unsigned int flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;

	if (addr == NULL)
		flags |= MHD_USE_DUAL_STACK;
	else if (ipv6)
		flags |= MHD_USE_IPv6;
	return MHD_start_daemon(flags, (uint16_t) cdviz_http_port,
							accept_policy, NULL,
							handle_request, NULL,
							MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
							MHD_OPTION_NOTIFY_COMPLETED, request_completed, NULL,
							MHD_OPTION_NOTIFY_CONNECTION, connection_notify, NULL,
							MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) cdviz_http_timeout,
							MHD_OPTION_CONNECTION_LIMIT, (unsigned int) 1000000,
							MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned int) 1024,
							addr ? MHD_OPTION_SOCK_ADDR : MHD_OPTION_END, addr,
							MHD_OPTION_END);
}

/*
 * Listen on every address of cdviz.http_listen_addresses, as PostgreSQL
 * does with listen_addresses: a name is every address it resolves to.
 * An address that cannot be bound is a warning as long as another one
 * works.
 */
static void
start_daemons(void)
{
	char	   *list = pstrdup(cdviz_http_listen_addresses);
	char	   *save = NULL;

	for (char *tok = strtok_r(list, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save))
	{
		struct addrinfo hints;
		struct addrinfo *res;
		char		port[16];
		int			rc;

		if (strcmp(tok, "*") == 0)
		{
			struct MHD_Daemon *d = start_daemon(NULL, false);

			if (d == NULL)
				ereport(WARNING,
						(errmsg("cdviz http: could not listen on * port %d: %m", cdviz_http_port)));
			else if (ndaemons < MAX_DAEMONS)
				daemons[ndaemons++] = d;
			continue;
		}
		memset(&hints, 0, sizeof(hints));
		hints.ai_family = AF_UNSPEC;
		hints.ai_socktype = SOCK_STREAM;
		hints.ai_flags = AI_PASSIVE;
		snprintf(port, sizeof(port), "%d", cdviz_http_port);
		if ((rc = getaddrinfo(tok, port, &hints, &res)) != 0)
		{
			ereport(WARNING,
					(errmsg("cdviz http: could not resolve \"%s\": %s", tok, gai_strerror(rc))));
			continue;
		}
		for (struct addrinfo *ai = res; ai && ndaemons < MAX_DAEMONS; ai = ai->ai_next)
		{
			struct MHD_Daemon *d;

			if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
				continue;
			d = start_daemon(ai->ai_addr, ai->ai_family == AF_INET6);
			if (d == NULL)
			{
				char		host[NI_MAXHOST];

				getnameinfo(ai->ai_addr, ai->ai_addrlen, host, sizeof(host), NULL, 0, NI_NUMERICHOST);
				ereport(WARNING,
						(errmsg("cdviz http: could not listen on %s port %d: %m", host, cdviz_http_port)));
				continue;
			}
			daemons[ndaemons++] = d;
		}
		freeaddrinfo(res);
	}
	if (ndaemons == 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("cdviz http: could not listen on any of \"%s\" port %d",
						cdviz_http_listen_addresses, cdviz_http_port),
				 errhint("Check cdviz.http_listen_addresses and cdviz.http_port; the worker retries in %d seconds.",
						 CDVIZ_WORKER_RETRY_SECONDS)));
	ereport(LOG,
			(errmsg("cdviz http: listening on \"%s\" port %d, database \"%s\"",
					cdviz_http_listen_addresses, cdviz_http_port, cdviz_database)));
}

/*
 * Milliseconds until libmicrohttpd next needs a turn (idle timeouts), or
 * a request deadline passes.
 */
static long
next_timeout(void)
{
	long		timeout = 1000;
	long		deadline = next_deadline_ms();

	if (deadline >= 0 && deadline < timeout)
		timeout = deadline;

	for (int i = 0; i < ndaemons; i++)
	{
		MHD_UNSIGNED_LONG_LONG t;

		if (MHD_get_timeout(daemons[i], &t) == MHD_YES && (long) t < timeout)
			timeout = (long) t;
	}
	return timeout;
}

static void
run_daemons(void)
{
	for (int i = 0; i < ndaemons; i++)
		MHD_run(daemons[i]);
}

/* Whether libmicrohttpd has work it can do right now (timeout zero). */
static bool
daemons_ready(void)
{
	for (int i = 0; i < ndaemons; i++)
	{
		MHD_UNSIGNED_LONG_LONG t;

		if (MHD_get_timeout(daemons[i], &t) == MHD_YES && t == 0)
			return true;
	}
	return false;
}

/*
 * Read everything the sockets already hold before the next transaction.
 * One MHD_run() reads at most one buffer per connection (the rest of a
 * large body waits in the socket, and the connection stays "ready"), so
 * without draining a large batch would take one transaction of the others
 * per buffer to arrive, and go into a later group than it could.  Bounded,
 * so that a stream of input cannot hold back the commit of what is queued.
 */
#define DRAIN_MAX_TURNS 256
#define DRAIN_MAX_US 20000

static void
drain_daemons(void)
{
	instr_time	start;
	instr_time	now;

	INSTR_TIME_SET_CURRENT(start);
	for (int turn = 0; turn < DRAIN_MAX_TURNS && daemons_ready(); turn++)
	{
		run_daemons();
		INSTR_TIME_SET_CURRENT(now);
		INSTR_TIME_SUBTRACT(now, start);
		if (INSTR_TIME_GET_MICROSEC(now) > DRAIN_MAX_US)
			break;
	}
}

/* Entry point of the worker. */
void
cdviz_http_main(Datum arg)
{
	WaitEventSet *set;
	MemoryContext loopcxt;

	HASHCTL		ctl;

	cdviz_worker_connect("serving HTTP");

	conncxt = AllocSetContextCreate(TopMemoryContext, "cdviz http connections",
									ALLOCSET_DEFAULT_SIZES);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(PeerKey);
	ctl.entrysize = sizeof(PeerEntry);
	ctl.hcxt = conncxt;
	peers = hash_create("cdviz http peers", 1024, &ctl,
						HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	(void) max_connections();
	start_daemons();

#ifdef __GLIBC__

	/*
	 * A group of batches allocates and frees tens of megabytes (bodies,
	 * parsed documents, the INSERT's arrays).  By default glibc gives large
	 * blocks back to the kernel at once and the next group faults every
	 * page in again, a cost that grows with the batches: keep up to 64 MB
	 * of freed memory for reuse instead.
	 */
	mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
	mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);
#endif

	set = CreateWaitEventSet(TopMemoryContext, 2 + ndaemons);
	AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	for (int i = 0; i < ndaemons; i++)
	{
		const union MHD_DaemonInfo *info =
			MHD_get_daemon_info(daemons[i], MHD_DAEMON_INFO_EPOLL_FD);

		AddWaitEventToSet(set, WL_SOCKET_READABLE, info->epoll_fd, NULL, NULL);
	}
	/* say once, at start, whether requests can be stored yet */
	(void) cdviz_worker_extension_exists();

	/*
	 * What the handlers allocate for one turn of the loop (error texts, a
	 * peer's name) goes here and is freed at the next turn: what a request
	 * keeps lives in its own context, its answer is copied there.  In
	 * TopMemoryContext each refused request would leak its error text.
	 */
	loopcxt = AllocSetContextCreate(TopMemoryContext, "cdviz http loop",
									ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		WaitEvent	events[MAX_DAEMONS + 2];

		MemoryContextReset(loopcxt);
		MemoryContextSwitchTo(loopcxt);
		cdviz_worker_process_interrupts();
		close_overdue();
		run_daemons();
		drain_daemons();
		report_limits();

		/*
		 * Whatever arrived during the last transaction is now queued: store
		 * it all in one, then let the answers go out at once.
		 */
		if (http_commit_pending() || http_webhook_pending())
		{
			http_commit_flush();
			/* the /cdevents answers leave before the webhooks' group runs */
			run_daemons();
			http_webhook_flush();
			run_daemons();
			continue;
		}
		(void) WaitEventSetWait(set, next_timeout(), events, lengthof(events),
								PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
