/*
 * http_answer.c
 *	  The answers of the http worker's requests: set on the request by the
 *	  route that decides them, queued to libmicrohttpd when the request is
 *	  done.
 *
 * Apart from the routes so that the group commits, which answer the
 * requests they stored, need not call back into the handler that queued
 * those requests.
 */
#include "postgres.h"

#include "utils/json.h"
#include "utils/memutils.h"

#include "http/http.h"

/* Set the answer; text is copied. */
void
http_set_answer(HttpRequest *req, int status, const char *type, const char *text)
{
	req->status = status;
	req->answer_type = type;
	req->answer = MemoryContextStrdup(req->cxt, text);
	req->state = REQ_ANSWERED;
}

/* An error answer: {"error": message}, and "rejected_id" when with_id. */
static void
set_error_answer(HttpRequest *req, int status, const char *message, bool with_id,
				 int64 rejected_id)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"error\":");
	escape_json(&buf, message);
	if (with_id)
		appendStringInfo(&buf, ",\"rejected_id\":" INT64_FORMAT, rejected_id);
	appendStringInfoString(&buf, "}\n");
	http_set_answer(req, status, "application/json", buf.data);
	pfree(buf.data);
}

/* An error answer: {"error": message}. */
void
http_set_error(HttpRequest *req, int status, const char *message)
{
	set_error_answer(req, status, message, false, 0);
}

/* A refused body kept as a dead letter: {"error": message, "rejected_id": id}. */
void
http_set_rejected(HttpRequest *req, int status, const char *message, int64 rejected_id)
{
	set_error_answer(req, status, message, true, rejected_id);
}

/*
 * Hand the answer to libmicrohttpd; it is sent when the socket allows.
 * A 401 carries www_authenticate, a 405 allow (either may be NULL).
 */
enum MHD_Result
http_queue_answer(HttpRequest *req, const char *www_authenticate, const char *allow)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;
	instr_time	now;

	resp = MHD_create_response_from_buffer(strlen(req->answer), req->answer,
										   MHD_RESPMEM_MUST_COPY);
	if (resp == NULL)
		return MHD_NO;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, req->answer_type);
	if (req->retry_after)
	{
		char		secs[16];

		snprintf(secs, sizeof(secs), "%d", HTTP_RETRY_AFTER);
		MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, secs);
	}
	if (req->www_authenticate && www_authenticate)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, www_authenticate);
	if (req->status == MHD_HTTP_METHOD_NOT_ALLOWED && allow)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
	ret = MHD_queue_response(req->conn, (unsigned int) req->status, resp);
	MHD_destroy_response(resp);
	req->answer_queued = true;

	INSTR_TIME_SET_CURRENT(now);
	INSTR_TIME_SUBTRACT(now, req->started);
	http_metrics_request(req->status, INSTR_TIME_GET_DOUBLE(now));
	return ret;
}

/*
 * Suspend the request's connection until a transaction answers it, at the
 * end of queue (node is the request's place in that queue).
 */
void
http_suspend(HttpRequest *req, dlist_head *queue, dlist_node *node)
{
	req->state = REQ_QUEUED;
	MHD_suspend_connection(req->conn);
	dlist_push_tail(queue, node);
}
