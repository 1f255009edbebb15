/*
 * envelope.h
 *	  Take CDEvents out of what an HTTP request (or a message with headers)
 *	  carries: plain JSON, a JSON array, and the CloudEvents 1.0 HTTP
 *	  binding's binary, structured and batch modes; gzip bodies.
 *
 * Part of the PostgreSQL-free core: plain C, no PostgreSQL header.
 *
 * Modes, chosen by the media type (parameters such as charset ignored):
 *	  application/cloudevents+json		 structured: one CloudEvent whose
 *										 data (object) or data_base64 is the
 *										 CDEvent
 *	  application/cloudevents-batch+json batch: a JSON array of structured
 *										 CloudEvents
 *	  application/json, any other +json	 binary mode when a ce-specversion
 *	  media type, or none				 header is present (the body is the
 *										 CDEvent), otherwise plain: a JSON
 *										 object is one event, a JSON array a
 *										 batch of events
 *	  anything else						 unsupported (HTTP 415)
 *
 * CloudEvents attributes and the CDEvent they carry must agree: ce-id (or
 * the structured "id") equals context.id, ce-source / "source" equals
 * context.source, ce-type / "type" equals context.type.  The CDEvents
 * binding says they are the same values; a disagreement means the sender
 * is confused about which event this is, so the event is refused with a
 * problem naming both values rather than stored under either identity.
 * Binary mode requires the ce-id, ce-source and ce-type headers (and
 * ce-specversion, which chooses the mode); a structured CloudEvent requires
 * specversion, id, source and type as strings.  A request without them is
 * not a CloudEvent and is refused.
 *
 * HTTP header values (input http_headers) are decoded as the HTTP binding
 * (1.0.2, section 3.1.3.2) says: surrounding white space dropped, a
 * double-quoted value unquoted (backslash escapes processed), then one
 * round of percent-decoding, whose result must be UTF-8 without control
 * characters.  Other transports (NATS headers) pass values as they are.
 */
#ifndef CDVIZ_CORE_ENVELOPE_H
#define CDVIZ_CORE_ENVELOPE_H

#include <stdbool.h>
#include <stddef.h>

#include "core/problems.h"

typedef enum CdvizEnvelopeMode
{
	CDVIZ_ENVELOPE_PLAIN,		/* one JSON document */
	CDVIZ_ENVELOPE_ARRAY,		/* a JSON array of CDEvents */
	CDVIZ_ENVELOPE_BINARY,		/* ce-* headers, body is the CDEvent */
	CDVIZ_ENVELOPE_STRUCTURED,	/* application/cloudevents+json */
	CDVIZ_ENVELOPE_BATCH,		/* application/cloudevents-batch+json */
	CDVIZ_ENVELOPE_UNSUPPORTED	/* media type or encoding not readable */
} CdvizEnvelopeMode;

/* What arrived; every string may be NULL when the header was absent. */
typedef struct CdvizEnvelopeInput
{
	const char *content_type;
	const char *ce_specversion;
	const char *ce_id;
	const char *ce_source;
	const char *ce_type;
	const char *body;			/* NUL-terminated after body_len bytes */
	size_t		body_len;
	bool		http_headers;	/* the ce-* values are HTTP header values:
								 * decode them (see above) */
} CdvizEnvelopeInput;

/*
 * One document to store.  raw is NUL-terminated; it points into the body,
 * into the envelope's copy of it (text), or is owned by the envelope.
 * With problems, the envelope itself refused it and raw is what to keep as
 * a dead letter (the CloudEvent element or the whole body, as received);
 * otherwise it goes to validation.
 *
 * received, when not NULL, is the structured CloudEvent raw was taken out
 * of, as received (a slice of the body or of text, NUL-terminated): what
 * a dead letter keeps if validation refuses raw.
 *
 * json, when not NULL, is raw already parsed (as cdviz_json_parse() would
 * parse it): the envelope had to parse it anyway, and validation can take
 * it instead of parsing raw again.  It belongs to the envelope until a
 * caller takes it (sets it to NULL and frees it with cdviz_json_free()).
 */
typedef struct CdvizEnvelopeEvent
{
	const char *raw;
	size_t		raw_len;
	bool		owned;
	const char *received;
	size_t		received_len;
	struct json_object *json;
	CdvizProblems problems;
} CdvizEnvelopeEvent;

typedef struct CdvizEnvelope
{
	CdvizEnvelopeMode mode;
	int			nevents;
	CdvizEnvelopeEvent *events;
	char	   *text;			/* a copy of a JSON array body, each element
								 * NUL-terminated in place, or NULL */
	char		error[256];		/* why, when mode is UNSUPPORTED */
} CdvizEnvelope;

/*
 * Split input into event documents.  Returns false only when out of
 * memory.  An unreadable media type gives mode UNSUPPORTED and no event;
 * a body that is not what its mode requires gives one event (the whole
 * body) with problems; an empty array gives no event.  Release with
 * cdviz_envelope_free().
 */
extern bool cdviz_envelope_read(const CdvizEnvelopeInput *in, CdvizEnvelope *env);
extern void cdviz_envelope_free(CdvizEnvelope *env);
extern const char *cdviz_envelope_mode_name(CdvizEnvelopeMode mode);

/*
 * The envelope column (cdviz.rejected_events.envelope) of a dead letter
 * read in a mode that needs nothing but its name to be read again:
 * structured or batch.  NULL for binary mode, whose column the caller
 * writes with the headers it has, and for modes that keep no envelope.
 */
extern const char *cdviz_envelope_column(CdvizEnvelopeMode mode);

/*
 * Decode one CloudEvents HTTP header value (see above) into a malloc'd,
 * NUL-terminated string.  Returns NULL when out of memory, or when the
 * value cannot be decoded, with *why (static text) saying why.
 */
extern char *cdviz_ce_header_decode(const char *value, const char **why);

/* Outcome of cdviz_gzip_inflate(). */
typedef enum CdvizInflateResult
{
	CDVIZ_INFLATE_OK,
	CDVIZ_INFLATE_TOO_LARGE,	/* more than max_out bytes once inflated */
	CDVIZ_INFLATE_CORRUPT,		/* not gzip/zlib data, or truncated */
	CDVIZ_INFLATE_NO_MEMORY
} CdvizInflateResult;

/*
 * Inflate a gzip (or zlib) stream of in_len bytes into a malloc'd,
 * NUL-terminated buffer of at most max_out bytes: the cap applies to the
 * inflated size, so a small bomb cannot expand past the body limit.
 */
extern CdvizInflateResult cdviz_gzip_inflate(const char *in, size_t in_len,
											 size_t max_out, char **out,
											 size_t *out_len);

#endif							/* CDVIZ_CORE_ENVELOPE_H */
