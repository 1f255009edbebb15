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
 */
#include "postgres.h"

#include <netdb.h>
#include <sys/socket.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/latch.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/wait_event.h"

#include "http/http.h"
#include "http/http_webhook.h"
#include "http/http_worker.h"
#include "store/worker.h"

char	   *cdviz_http_listen_addresses = NULL;
int			cdviz_http_port = 8080;
char	   *cdviz_http_auth_token = NULL;
char	   *cdviz_http_hmac_secret = NULL;
int			cdviz_http_max_body = 10 * 1024;
int			cdviz_http_max_connections = 256;
int			cdviz_http_timeout = 30;

/* One libmicrohttpd daemon per listening address. */
#define MAX_DAEMONS 16
static struct MHD_Daemon *daemons[MAX_DAEMONS];
static int	ndaemons;
static int	open_connections;

PGDLLEXPORT void cdviz_http_main(Datum arg);

/* Define the settings and register the worker (from _PG_init, preloaded). */
void
cdviz_http_init(void)
{
	cdviz_worker_define_gucs();
	DefineCustomStringVariable("cdviz.http_listen_addresses",
							   "Addresses the cdviz HTTP receiver listens on (comma-separated).",
							   "Host names or IP addresses, or * for all; empty disables the "
							   "receiver.  Changing it requires a server restart.",
							   &cdviz_http_listen_addresses, "localhost",
							   PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("cdviz.http_port",
							"TCP port of the cdviz HTTP receiver.",
							"Changing it requires a server restart.",
							&cdviz_http_port, 8080, 1, 65535,
							PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("cdviz.http_auth_token",
							   "Bearer token required from HTTP clients; empty accepts any client.",
							   "Clients send Authorization: Bearer <token>.  Reloaded on SIGHUP.",
							   &cdviz_http_auth_token, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	DefineCustomStringVariable("cdviz.http_hmac_secret",
							   "Secret of the HMAC-SHA256 body signature required from HTTP clients; empty disables.",
							   "Clients send X-Signature-256: sha256=<hex HMAC of the body>.  Reloaded on SIGHUP.",
							   &cdviz_http_hmac_secret, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	DefineCustomIntVariable("cdviz.http_max_body",
							"Largest request body the HTTP receiver accepts (after gzip inflation).",
							"Larger bodies are answered 413.  Reloaded on SIGHUP.",
							&cdviz_http_max_body, 10 * 1024, 1, 1024 * 1024,
							PGC_SIGHUP, GUC_UNIT_KB, NULL, NULL, NULL);
	DefineCustomIntVariable("cdviz.http_max_connections",
							"Most HTTP connections open at once; more are closed on accept.",
							"Reloaded on SIGHUP.",
							&cdviz_http_max_connections, 256, 1, 100000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("cdviz.http_timeout",
							"Seconds an HTTP connection may stay idle (headers or body included) before it is closed.",
							"Applies to connections opened after a reload.",
							&cdviz_http_timeout, 30, 1, 3600,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);

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

/* Refuse connections past cdviz.http_max_connections (read live). */
static enum MHD_Result
accept_policy(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
	return open_connections < cdviz_http_max_connections ? MHD_YES : MHD_NO;
}

/* Count connections; give each the idle timeout of the moment. */
static void
connection_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
				  enum MHD_ConnectionNotificationCode toe)
{
	if (toe == MHD_CONNECTION_NOTIFY_STARTED)
	{
		open_connections++;
		MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT,
								  (unsigned int) cdviz_http_timeout);
	}
	else
		open_connections--;
	http_metrics_connections(open_connections);
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
							http_handle_request, NULL,
							MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
							MHD_OPTION_NOTIFY_COMPLETED, http_request_completed, NULL,
							MHD_OPTION_NOTIFY_CONNECTION, connection_notify, NULL,
							MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) cdviz_http_timeout,
							MHD_OPTION_CONNECTION_LIMIT, (unsigned int) 100000,
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

/* Milliseconds until libmicrohttpd next needs a turn (idle timeouts). */
static long
next_timeout(void)
{
	long		timeout = 1000;

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
 * large body waits in the socket, and the connection stays "ready"), so a
 * 200 kB batch took one transaction of the others per 32 kB piece to
 * arrive, and went into a later group than it could.  Bounded, so that a
 * stream of input cannot hold back the commit of what is queued.
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

	cdviz_worker_connect("serving HTTP");
	start_daemons();

#ifdef __GLIBC__

	/*
	 * A group of batches allocates and frees tens of megabytes (bodies,
	 * parsed documents, the INSERT's arrays).  By default glibc gives large
	 * blocks back to the kernel at once and the next group faults every
	 * page in again (8% of the worker's time with batches of 500): keep up
	 * to 64 MB of freed memory for reuse instead.
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
	 * TopMemoryContext each refused request leaked its error text (about
	 * 450 bytes a request, 45 MB for 100,000 requests with a bad encoding).
	 */
	loopcxt = AllocSetContextCreate(TopMemoryContext, "cdviz http loop",
									ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		WaitEvent	events[MAX_DAEMONS + 2];

		MemoryContextReset(loopcxt);
		MemoryContextSwitchTo(loopcxt);
		cdviz_worker_process_interrupts();
		run_daemons();
		drain_daemons();

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
