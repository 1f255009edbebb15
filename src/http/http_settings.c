/*
 * http_settings.c
 *	  The cdviz.http_* settings, read by the loop, the routes and the
 *	  credential checks.
 *
 * The receiver faces the internet, so its connection settings bound what
 * clients can hold; docs/http.md says how to choose them (per address: 0
 * behind a reverse proxy, where every client shares its address).
 */
#include "postgres.h"

#include "http/http.h"
#include "common/worker.h"

#define HTTP_DEFAULT_MAX_CONNECTIONS 4096
#define HTTP_DEFAULT_MAX_PER_ADDRESS 64

char	   *cdviz_http_listen_addresses = NULL;
int			cdviz_http_port = 8080;
char	   *cdviz_http_auth_token = NULL;
char	   *cdviz_http_hmac_secret = NULL;
int			cdviz_http_max_body = 10 * 1024;
int			cdviz_http_max_connections = HTTP_DEFAULT_MAX_CONNECTIONS;
int			cdviz_http_max_connections_per_address = HTTP_DEFAULT_MAX_PER_ADDRESS;
int			cdviz_http_timeout = 30;
int			cdviz_http_request_deadline = 30;

static const CdvizSetting settings[] = {
	{"cdviz.http_listen_addresses", "Addresses the cdviz HTTP receiver listens on (comma-separated).", "Host names or IP addresses, or * for all; empty disables the receiver.  Changing it requires a server restart.", PGC_POSTMASTER, 0, .string_var = &cdviz_http_listen_addresses, .string_default = "localhost"},
	{"cdviz.http_port", "TCP port of the cdviz HTTP receiver.", "Changing it requires a server restart.", PGC_POSTMASTER, 0, .int_var = &cdviz_http_port, .int_default = 8080, .min = 1, .max = 65535},
	{"cdviz.http_auth_token", "Bearer token required from HTTP clients; empty accepts any client.", "Clients send Authorization: Bearer <token>.  Reloaded on SIGHUP.", PGC_SIGHUP, GUC_SUPERUSER_ONLY, .string_var = &cdviz_http_auth_token, .string_default = ""},
	{"cdviz.http_hmac_secret", "Secret of the HMAC-SHA256 body signature required from HTTP clients; empty disables.", "Clients send X-Signature-256: sha256=<hex HMAC of the body>.  Reloaded on SIGHUP.", PGC_SIGHUP, GUC_SUPERUSER_ONLY, .string_var = &cdviz_http_hmac_secret, .string_default = ""},
	{"cdviz.http_max_body", "Largest request body the HTTP receiver accepts (after gzip inflation).", "Larger bodies are answered 413.  Reloaded on SIGHUP.", PGC_SIGHUP, GUC_UNIT_KB, .int_var = &cdviz_http_max_body, .int_default = 10 * 1024, .min = 1, .max = 1024 * 1024},
	{"cdviz.http_max_connections", "Most HTTP connections open at once.", "When all are taken, the connection that has waited longest for its request is closed to make room; the worker's open-file limit may allow fewer.  Reloaded on SIGHUP.", PGC_SIGHUP, 0, .int_var = &cdviz_http_max_connections, .int_default = HTTP_DEFAULT_MAX_CONNECTIONS, .min = 1, .max = 1000000},
	{"cdviz.http_max_connections_per_address", "Most HTTP connections open at once from one client address; 0 for no limit.", "IPv6 clients are counted by /64 network.  More are closed on accept.  Reloaded on SIGHUP.", PGC_SIGHUP, 0, .int_var = &cdviz_http_max_connections_per_address, .int_default = HTTP_DEFAULT_MAX_PER_ADDRESS, .min = 0, .max = 1000000},
	{"cdviz.http_timeout", "Seconds an HTTP connection may stay idle (headers or body included) before it is closed.", "Applies to connections opened after a reload.", PGC_SIGHUP, GUC_UNIT_S, .int_var = &cdviz_http_timeout, .int_default = 30, .min = 1, .max = 3600},
	{"cdviz.http_request_deadline", "Seconds a client has to send a request's headers and body, however steadily it sends.", "Counted from the opening of the connection, or from the previous answer on a kept-alive connection; the connection is closed when it passes.  Reloaded on SIGHUP.", PGC_SIGHUP, GUC_UNIT_S, .int_var = &cdviz_http_request_deadline, .int_default = 30, .min = 1, .max = 3600},
};

/* Define the settings (from _PG_init, preloaded). */
void
http_define_settings(void)
{
	cdviz_worker_define_settings(settings, lengthof(settings));
}
