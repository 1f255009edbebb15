/*
 * envelope.c
 *	  CloudEvents HTTP envelopes and gzip bodies; see envelope.h.
 *
 * Memory comes from malloc, as everywhere in the core.  A single plain or
 * binary event is not copied: its raw text is the body itself, so the
 * common case costs one scan for the first character.
 */
#include "core/envelope.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>
#include <zlib.h>

#include "core/event.h"
#include "core/hexdigit.h"

#define CE_SPECVERSION "1.0"

const char *
cdviz_envelope_mode_name(CdvizEnvelopeMode mode)
{
	switch (mode)
	{
		case CDVIZ_ENVELOPE_PLAIN:
			return "plain";
		case CDVIZ_ENVELOPE_ARRAY:
			return "array";
		case CDVIZ_ENVELOPE_BINARY:
			return "binary";
		case CDVIZ_ENVELOPE_STRUCTURED:
			return "structured";
		case CDVIZ_ENVELOPE_BATCH:
			return "batch";
		case CDVIZ_ENVELOPE_UNSUPPORTED:
			break;
	}
	return "unsupported";
}

/* Copy the media type of a Content-Type value, lower-cased, no parameters. */
static void
media_type(const char *content_type, char *buf, size_t size)
{
	size_t		n = 0;
	const char *p = content_type;

	buf[0] = '\0';
	if (p == NULL)
		return;
	while (*p == ' ' || *p == '\t')
		p++;
	while (*p && *p != ';' && *p != ' ' && *p != '\t' && n + 1 < size)
		buf[n++] = (char) tolower((unsigned char) *p++);
	buf[n] = '\0';
}

/* Whether a media type names JSON: application/json or any +json suffix. */
static bool
is_json_type(const char *mt)
{
	size_t		len = strlen(mt);

	return strcmp(mt, "application/json") == 0 ||
		strcmp(mt, "text/json") == 0 ||
		(len > 5 && strcmp(mt + len - 5, "+json") == 0);
}

/*
 * NULL when s (len bytes) is well-formed UTF-8 (no overlong form, no
 * surrogate, nothing past U+10FFFF) holding no character that a
 * CloudEvents attribute may not hold (U+0000-U+001F, U+007F-U+009F);
 * otherwise what is wrong.
 */
static const char *
attribute_text_problem(const unsigned char *s, size_t len)
{
	size_t		i = 0;

	while (i < len)
	{
		unsigned int c = s[i];
		unsigned int cp;
		int			n;

		if (c < 0x80)
		{
			if (c < 0x20 || c == 0x7F)
				return "it holds a control character";
			i++;
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF)
			n = 1, cp = c & 0x1F;
		else if (c >= 0xE0 && c <= 0xEF)
			n = 2, cp = c & 0x0F;
		else if (c >= 0xF0 && c <= 0xF4)
			n = 3, cp = c & 0x07;
		else
			return "it is not valid UTF-8 once percent-decoded";
		if ((size_t) n >= len - i)
			return "it is not valid UTF-8 once percent-decoded";
		for (int k = 1; k <= n; k++)
		{
			if ((s[i + k] & 0xC0) != 0x80)
				return "it is not valid UTF-8 once percent-decoded";
			cp = (cp << 6) | (s[i + k] & 0x3F);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
			(cp >= 0xD800 && cp <= 0xDFFF))
			return "it is not valid UTF-8 once percent-decoded";
		if (cp >= 0x80 && cp <= 0x9F)
			return "it holds a control character";
		i += n + 1;
	}
	return NULL;
}

/* See envelope.h. */
char *
cdviz_ce_header_decode(const char *value, const char **why)
{
	const char *start = value;
	const char *end = value + strlen(value);
	char	   *unquoted;
	char	   *out;
	size_t		n = 0;
	size_t		o = 0;

	*why = NULL;
	/* surrounding white space (HTTP's OWS) is not part of the value */
	while (start < end && (*start == ' ' || *start == '\t'))
		start++;
	while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	if ((unquoted = malloc(end - start + 1)) == NULL)
		return NULL;
	if (start < end && *start == '"')
	{
		/* an RFC 7230 quoted-string: "..." with backslash escapes */
		const char *p = start + 1;

		for (;;)
		{
			if (p < end && *p == '\\')
				p++;
			else if (p < end && *p == '"')
				break;
			if (p >= end)
			{
				*why = "its quoted string is not terminated";
				free(unquoted);
				return NULL;
			}
			unquoted[n++] = *p++;
		}
		if (p + 1 != end)
		{
			*why = "it has text after its quoted string";
			free(unquoted);
			return NULL;
		}
	}
	else
	{
		memcpy(unquoted, start, end - start);
		n = end - start;
	}

	/* one round of percent-decoding: the result is never longer */
	if ((out = malloc(n + 1)) == NULL)
	{
		free(unquoted);
		return NULL;
	}
	for (size_t i = 0; i < n; i++)
	{
		if (unquoted[i] != '%')
		{
			out[o++] = unquoted[i];
			continue;
		}
		if (i + 2 >= n || cdviz_hex_value(unquoted[i + 1]) < 0 || cdviz_hex_value(unquoted[i + 2]) < 0)
		{
			*why = "a % is not followed by two hexadecimal digits";
			free(unquoted);
			free(out);
			return NULL;
		}
		out[o++] = (char) (cdviz_hex_value(unquoted[i + 1]) * 16 + cdviz_hex_value(unquoted[i + 2]));
		i += 2;
	}
	out[o] = '\0';
	free(unquoted);
	if ((*why = attribute_text_problem((const unsigned char *) out, o)) != NULL)
	{
		free(out);
		return NULL;
	}
	return out;
}

/* Grow the event array by one; NULL when out of memory. */
static CdvizEnvelopeEvent *
add_event(CdvizEnvelope *env, int *capacity)
{
	CdvizEnvelopeEvent *ev;

	if (env->nevents == *capacity)
	{
		int			newcap = *capacity ? *capacity * 2 : 4;
		CdvizEnvelopeEvent *n = realloc(env->events, sizeof(*n) * newcap);

		if (n == NULL)
			return NULL;
		env->events = n;
		*capacity = newcap;
	}
	ev = &env->events[env->nevents++];
	memset(ev, 0, sizeof(*ev));
	cdviz_problems_init(&ev->problems);
	return ev;
}

/* The whole body as the one event. */
static bool
body_event(const CdvizEnvelopeInput *in, CdvizEnvelope *env, int *capacity,
		   CdvizProblems *problems)
{
	CdvizEnvelopeEvent *ev = add_event(env, capacity);

	if (ev == NULL)
		return false;
	ev->raw = in->body;
	ev->raw_len = in->body_len;
	if (problems)
		cdviz_problems_move(&ev->problems, problems);
	return true;
}

/* An owned copy of a JSON value's text as an event. */
static CdvizEnvelopeEvent *
json_event(struct json_object *value, CdvizEnvelope *env, int *capacity)
{
	CdvizEnvelopeEvent *ev;
	const char *text;
	char	   *copy;

	text = json_object_to_json_string_ext(value, JSON_C_TO_STRING_PLAIN |
										  JSON_C_TO_STRING_NOSLASHESCAPE);
	if (text == NULL || (copy = strdup(text)) == NULL)
		return NULL;
	if ((ev = add_event(env, capacity)) == NULL)
	{
		free(copy);
		return NULL;
	}
	ev->raw = copy;
	ev->raw_len = strlen(copy);
	ev->owned = true;
	return ev;
}

/* The string member name of obj, or NULL. */
static const char *
string_member(struct json_object *obj, const char *name)
{
	struct json_object *v;

	if (obj == NULL || !json_object_is_type(obj, json_type_object) ||
		!json_object_object_get_ex(obj, name, &v) ||
		!json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

/*
 * Compare the CloudEvents id/source/type with the CDEvent's context.  what
 * says where the attributes came from ("ce-" for headers, "" for a
 * structured event).
 */
static void
check_agreement(struct json_object *cdevent, const char *id, const char *source,
				const char *type, const char *what, CdvizProblems *problems)
{
	struct json_object *ctx = NULL;
	const char *attrs[3] = {id, source, type};
	static const char *const names[3] = {"id", "source", "type"};

	if (cdevent == NULL || !json_object_is_type(cdevent, json_type_object) ||
		!json_object_object_get_ex(cdevent, "context", &ctx))
		return;					/* validation will say what is missing */
	for (int i = 0; i < 3; i++)
	{
		const char *mine = string_member(ctx, names[i]);

		if (attrs[i] == NULL || mine == NULL || strcmp(attrs[i], mine) == 0)
			continue;
		cdviz_problems_add(problems, names[i][0] == 'i' ? "context.id" :
						   names[i][0] == 's' ? "context.source" : "context.type",
						   "\"%s\" does not match the CloudEvents attribute %s%s \"%s\"",
						   mine, what, names[i], attrs[i]);
	}
}

/* Decode standard base64 (white space ignored) into a malloc'd string. */
static char *
base64_decode(const char *in, size_t *out_len)
{
	size_t		len = strlen(in);
	char	   *out = malloc(len / 4 * 3 + 4);
	unsigned int acc = 0;
	int			bits = 0;
	size_t		n = 0;
	bool		pad = false;

	if (out == NULL)
		return NULL;
	for (const char *p = in; *p; p++)
	{
		int			c = (unsigned char) *p;
		int			v;

		if (c == ' ' || c == '\n' || c == '\r' || c == '\t')
			continue;
		if (c == '=')
		{
			pad = true;
			continue;
		}
		if (pad)
			goto bad;			/* data after padding */
		if (c >= 'A' && c <= 'Z')
			v = c - 'A';
		else if (c >= 'a' && c <= 'z')
			v = c - 'a' + 26;
		else if (c >= '0' && c <= '9')
			v = c - '0' + 52;
		else if (c == '+')
			v = 62;
		else if (c == '/')
			v = 63;
		else
			goto bad;
		acc = (acc << 6) | (unsigned int) v;
		bits += 6;
		if (bits >= 8)
		{
			bits -= 8;
			out[n++] = (char) ((acc >> bits) & 0xFF);
		}
	}
	if (bits >= 6)
		goto bad;				/* a lone sextet carries no byte */
	out[n] = '\0';
	*out_len = n;
	return out;
bad:
	free(out);
	*out_len = (size_t) -1;
	return NULL;
}

/*
 * The problems of required CloudEvents attributes that are absent, not
 * strings or empty.  values and present are those of id, source and type;
 * prefix says how they are spelt where they came from ("ce-" for headers,
 * whose problems are about the whole input, "" for a structured event's
 * members).
 */
static void
check_required(const char *const values[3], const bool present[3], const char *prefix,
			   CdvizProblems *problems)
{
	static const char *const names[3] = {"id", "source", "type"};
	char		missing[64] = "";
	int			nmissing = 0;

	for (int i = 0; i < 3; i++)
	{
		const char *path = prefix[0] ? "$" : names[i];

		if (!present[i])
		{
			snprintf(missing + strlen(missing), sizeof(missing) - strlen(missing), "%s%s%s",
					 nmissing ? ", " : "", prefix, names[i]);
			nmissing++;
		}
		else if (values[i] == NULL)
			cdviz_problems_add(problems, path, "the CloudEvents attribute %s%s must be a string",
							   prefix, names[i]);
		else if (values[i][0] == '\0')
			cdviz_problems_add(problems, path, "the CloudEvents attribute %s%s is empty",
							   prefix, names[i]);
	}
	if (nmissing > 0)
		cdviz_problems_add(problems, "$", "a CloudEvent requires %s: missing %s",
						   prefix[0] ? "the headers ce-id, ce-source and ce-type"
						   : "the attributes id, source and type",
						   missing);
}

/*
 * Fill ev from one structured CloudEvent (ce, parsed; text is it as
 * received, len bytes, NUL-terminated, living as long as the envelope):
 * raw is its CDEvent (data printed, or data_base64 decoded) and received
 * is text; or, when it carries no usable CDEvent, raw is text with the
 * problems.  Returns false only when out of memory.
 */
static bool
structured_fill(CdvizEnvelopeEvent *ev, struct json_object *ce, const char *text, size_t len)
{
	CdvizProblems *problems = &ev->problems;
	struct json_object *data = NULL;
	const char *b64;
	const char *specversion;
	const char *attrs[3];
	bool		present[3];
	static const char *const names[3] = {"id", "source", "type"};

	if (!json_object_is_type(ce, json_type_object))
	{
		cdviz_problems_add(problems, "$", "a structured CloudEvent must be a JSON object, not %s",
						   json_type_to_name(json_object_get_type(ce)));
		goto refuse;
	}
	specversion = string_member(ce, "specversion");
	if (specversion == NULL)
		cdviz_problems_add(problems, "specversion", "required CloudEvents attribute is missing");
	else if (strcmp(specversion, CE_SPECVERSION) != 0)
		cdviz_problems_add(problems, "specversion", "CloudEvents \"%s\" is not supported (only %s)",
						   specversion, CE_SPECVERSION);
	for (int i = 0; i < 3; i++)
	{
		present[i] = json_object_object_get_ex(ce, names[i], NULL);
		attrs[i] = string_member(ce, names[i]);
	}
	check_required(attrs, present, "", problems);

	if (json_object_object_get_ex(ce, "data", &data) && data != NULL)
	{
		const char *printed;

		if (!json_object_is_type(data, json_type_object))
		{
			cdviz_problems_add(problems, "data", "must be the CDEvent as a JSON object, not %s",
							   json_type_to_name(json_object_get_type(data)));
			goto refuse;
		}
		check_agreement(data, attrs[0], attrs[1], attrs[2], "", problems);
		if (problems->count > 0)
			goto refuse;
		printed = json_object_to_json_string_ext(data, JSON_C_TO_STRING_PLAIN |
												 JSON_C_TO_STRING_NOSLASHESCAPE);
		if (printed == NULL || (ev->raw = strdup(printed)) == NULL)
			return false;
		ev->raw_len = strlen(ev->raw);
		ev->owned = true;
		ev->received = text;
		ev->received_len = len;
		return true;
	}
	if ((b64 = string_member(ce, "data_base64")) != NULL)
	{
		size_t		dlen;
		char	   *decoded = base64_decode(b64, &dlen);
		struct json_object *doc;
		CdvizProblems parse;

		if (decoded == NULL)
		{
			if (dlen != (size_t) -1)
				return false;
			cdviz_problems_add(problems, "data_base64", "is not valid base64");
			goto refuse;
		}
		/* only to compare the attributes: validation parses it again */
		cdviz_problems_init(&parse);
		doc = cdviz_json_parse(decoded, dlen, &parse);
		cdviz_problems_reset(&parse);
		check_agreement(doc, attrs[0], attrs[1], attrs[2], "", problems);
		cdviz_json_free(doc);
		if (problems->count > 0)
		{
			free(decoded);
			goto refuse;
		}
		ev->raw = decoded;
		ev->raw_len = dlen;
		ev->owned = true;
		ev->received = text;
		ev->received_len = len;
		return true;
	}
	cdviz_problems_add(problems, "data",
					   "missing: a structured CloudEvent carries the CDEvent in data or data_base64");

refuse:
	ev->raw = text;
	ev->raw_len = len;
	return true;
}

static bool
is_json_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/*
 * A JSON array of CDEvents, element by element: each one is parsed on its
 * own and becomes an event whose raw text is exactly what was sent (a
 * slice of a copy of the body, NUL-terminated in place) and whose parsed
 * document goes along (json), so that nothing is serialised again and
 * validation parses nothing twice.  This is the bulk path (hundreds of
 * events per request).  Returns 1 when done, 0 when the body is not a
 * well-formed array (the caller then reads it as a whole, which gives the
 * problems it always gave), -1 when out of memory.
 */
static int
split_array(const CdvizEnvelopeInput *in, CdvizEnvelope *env, int *capacity)
{
	const char *body = in->body;
	size_t		len = in->body_len;
	size_t		p = 0;
	json_tokener *tok;
	int			result = 0;

	while (p < len && is_json_space(body[p]))
		p++;
	if (p >= len || body[p] != '[')
		return 0;
	p++;
	while (p < len && is_json_space(body[p]))
		p++;
	if (p < len && body[p] == ']')
		return 0;				/* empty: the whole-body path says so */

	/* one level less than json-c's default: the element sits in the array */
	if ((tok = json_tokener_new_ex(JSON_TOKENER_DEFAULT_DEPTH - 1)) == NULL)
		return -1;
	if ((env->text = malloc(len + 1)) == NULL)
	{
		json_tokener_free(tok);
		return -1;
	}
	memcpy(env->text, body, len);
	env->text[len] = '\0';
	for (;;)
	{
		struct json_object *obj;
		CdvizEnvelopeEvent *ev;
		size_t		end;

		json_tokener_reset(tok);
		obj = json_tokener_parse_ex(tok, body + p, (int) (len - p));
		if (json_tokener_get_error(tok) != json_tokener_success)
		{
			json_object_put(obj);
			break;				/* not JSON here: read as a whole */
		}
		end = json_tokener_get_parse_end(tok);
		/* json-c may have consumed white space after the value */
		while (end > 0 && is_json_space(body[p + end - 1]))
			end--;
		if (end == 0 || (ev = add_event(env, capacity)) == NULL)
		{
			json_object_put(obj);
			if (end != 0)
				result = -1;
			break;
		}
		ev->raw = env->text + p;
		ev->raw_len = end;
		ev->json = obj;			/* NULL for a JSON null: validation says so */
		p += end;
		/* what follows the element is white space, ',' or ']': not text of it */
		env->text[p] = '\0';
		while (p < len && is_json_space(body[p]))
			p++;
		if (p < len && (body[p] == ',' || body[p] == ']'))
		{
			if (body[p] == ',')
			{
				p++;
				while (p < len && is_json_space(body[p]))
					p++;
				continue;
			}
			p++;
			while (p < len && is_json_space(body[p]))
				p++;
			if (p == len)
				result = 1;
		}
		break;
	}
	json_tokener_free(tok);
	if (result != 1)
	{
		/* undo (text too): the caller starts again from the body */
		cdviz_envelope_free(env);
		*capacity = 0;
	}
	return result;
}

/* First byte that is not JSON white space, or NUL. */
static char
first_char(const char *body, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (!(body[i] == ' ' || body[i] == '\t' || body[i] == '\n' || body[i] == '\r'))
			return body[i];
	return '\0';
}

/*
 * Binary mode: the body is the CDEvent, the ce-* headers its CloudEvents
 * attributes.  The one event is the body, with the problems of the
 * headers when they are not what the binding requires.
 */
static bool
binary_event(const CdvizEnvelopeInput *in, CdvizEnvelope *env, int *capacity)
{
	CdvizProblems problems;
	const char *raw[4] = {in->ce_specversion, in->ce_id, in->ce_source, in->ce_type};
	static const char *const headers[4] = {"ce-specversion", "ce-id", "ce-source", "ce-type"};
	char	   *decoded[4] = {NULL, NULL, NULL, NULL};
	const char *values[3];
	bool		present[3];
	bool		ok = true;

	cdviz_problems_init(&problems);
	for (int i = 0; i < 4 && ok; i++)
	{
		const char *why = NULL;

		if (raw[i] == NULL)
			continue;
		if (in->http_headers)
			decoded[i] = cdviz_ce_header_decode(raw[i], &why);
		else
			decoded[i] = strdup(raw[i]);
		if (decoded[i] == NULL && why == NULL)
			ok = false;
		else if (decoded[i] == NULL)
			cdviz_problems_add(&problems, "$", "the %s header \"%s\" cannot be decoded: %s",
							   headers[i], raw[i], why);
	}
	if (!ok)
		goto done;

	if (decoded[0] != NULL && strcmp(decoded[0], CE_SPECVERSION) != 0)
		cdviz_problems_add(&problems, "$", "CloudEvents \"%s\" (ce-specversion) is not supported (only %s)",
						   decoded[0], CE_SPECVERSION);
	for (int i = 0; i < 3; i++)
	{
		present[i] = raw[i + 1] != NULL;
		/* one that cannot be decoded was reported above, not as empty */
		values[i] = decoded[i + 1] ? decoded[i + 1] : (present[i] ? "?" : NULL);
	}
	check_required(values, present, "ce-", &problems);
	if (first_char(in->body, in->body_len) == '[')
		cdviz_problems_add(&problems, "$", "a binary-mode CloudEvent carries one CDEvent, not an array; "
						   "use application/cloudevents-batch+json for batches");
	else
	{
		CdvizProblems parse;
		struct json_object *doc;

		cdviz_problems_init(&parse);
		doc = cdviz_json_parse(in->body, in->body_len, &parse);
		cdviz_problems_reset(&parse);	/* validation reports it */
		check_agreement(doc, decoded[1], decoded[2], decoded[3], "ce-", &problems);
		cdviz_json_free(doc);
	}
	ok = body_event(in, env, capacity, problems.count ? &problems : NULL);

done:
	for (int i = 0; i < 4; i++)
		free(decoded[i]);
	cdviz_problems_reset(&problems);
	return ok;
}

/* See envelope.h. */
bool
cdviz_envelope_read(const CdvizEnvelopeInput *in, CdvizEnvelope *env)
{
	char		mt[128];
	int			capacity = 0;
	CdvizProblems problems;
	struct json_object *doc = NULL;
	bool		ok = true;

	memset(env, 0, sizeof(*env));
	cdviz_problems_init(&problems);
	media_type(in->content_type, mt, sizeof(mt));

	if (strcmp(mt, "application/cloudevents+json") == 0)
		env->mode = CDVIZ_ENVELOPE_STRUCTURED;
	else if (strcmp(mt, "application/cloudevents-batch+json") == 0)
		env->mode = CDVIZ_ENVELOPE_BATCH;
	else if (mt[0] == '\0' || is_json_type(mt))
	{
		if (in->ce_specversion != NULL)
			env->mode = CDVIZ_ENVELOPE_BINARY;
		else if (first_char(in->body, in->body_len) == '[')
			env->mode = CDVIZ_ENVELOPE_ARRAY;
		else
			env->mode = CDVIZ_ENVELOPE_PLAIN;
	}
	else
	{
		env->mode = CDVIZ_ENVELOPE_UNSUPPORTED;
		snprintf(env->error, sizeof(env->error),
				 "content type \"%s\" is not supported: use application/json, "
				 "application/cloudevents+json or application/cloudevents-batch+json",
				 mt);
		return true;
	}

	switch (env->mode)
	{
		case CDVIZ_ENVELOPE_PLAIN:
			/* the common case: no parsing here, validation parses once */
			return body_event(in, env, &capacity, NULL);

		case CDVIZ_ENVELOPE_BINARY:
			return binary_event(in, env, &capacity);

		case CDVIZ_ENVELOPE_STRUCTURED:
			doc = cdviz_json_parse(in->body, in->body_len, &problems);
			if (doc == NULL)
				return body_event(in, env, &capacity, &problems);
			if (json_object_is_type(doc, json_type_array))
			{
				cdviz_problems_add(&problems, "$", "application/cloudevents+json carries one CloudEvent, not an array; "
								   "use application/cloudevents-batch+json for batches");
				ok = body_event(in, env, &capacity, &problems);
			}
			else
			{
				CdvizEnvelopeEvent *ev = add_event(env, &capacity);

				ok = ev != NULL && structured_fill(ev, doc, in->body, in->body_len);
			}
			break;

		case CDVIZ_ENVELOPE_ARRAY:
		case CDVIZ_ENVELOPE_BATCH:
			{
				int			split = split_array(in, env, &capacity);

				if (split < 0)
					return false;
				if (split > 0 && env->mode == CDVIZ_ENVELOPE_ARRAY)
					return true;
				if (split > 0)
				{
					/* each element, as sent, is one structured CloudEvent */
					for (int i = 0; i < env->nevents; i++)
					{
						CdvizEnvelopeEvent *ev = &env->events[i];
						struct json_object *ce = ev->json;
						const char *text = ev->raw;
						size_t		len = ev->raw_len;

						ev->json = NULL;
						ev->raw = NULL;
						ev->raw_len = 0;
						ok = structured_fill(ev, ce, text, len);
						json_object_put(ce);
						if (!ok)
							return false;
					}
					return true;
				}
			}
			doc = cdviz_json_parse(in->body, in->body_len, &problems);
			if (doc == NULL)
				return body_event(in, env, &capacity, &problems);
			if (!json_object_is_type(doc, json_type_array))
			{
				cdviz_problems_add(&problems, "$", "a batch must be a JSON array, not %s",
								   json_type_to_name(json_object_get_type(doc)));
				ok = body_event(in, env, &capacity, &problems);
				break;
			}
			/* an empty array, or one the splitter could not take apart */
			for (size_t i = 0; ok && i < json_object_array_length(doc); i++)
			{
				struct json_object *elem = json_object_array_get_idx(doc, i);
				CdvizEnvelopeEvent *ev = json_event(elem, env, &capacity);

				ok = ev != NULL;
				if (ok && env->mode == CDVIZ_ENVELOPE_BATCH)
				{
					/* the element printed again is its text, owned by ev */
					char	   *text = (char *) ev->raw;

					ev->raw = NULL;
					ok = structured_fill(ev, elem, text, ev->raw_len);
					if (ev->raw != text)
					{
						/* accepted: raw is its CDEvent */
						ev->received = NULL;
						ev->received_len = 0;
						free(text);
					}
				}
			}
			break;

		case CDVIZ_ENVELOPE_UNSUPPORTED:
			break;
	}
	cdviz_json_free(doc);
	return ok;
}

/* See envelope.h. */
void
cdviz_envelope_free(CdvizEnvelope *env)
{
	for (int i = 0; i < env->nevents; i++)
	{
		if (env->events[i].owned)
			free((char *) env->events[i].raw);
		cdviz_json_free(env->events[i].json);
		cdviz_problems_reset(&env->events[i].problems);
	}
	free(env->events);
	env->events = NULL;
	env->nevents = 0;
	free(env->text);
	env->text = NULL;
}

/* See envelope.h. */
CdvizInflateResult
cdviz_gzip_inflate(const char *in, size_t in_len, size_t max_out,
				   char **out, size_t *out_len)
{
	z_stream	zs;
	size_t		cap = in_len * 4 + 1024;
	char	   *buf;
	int			rc;

	*out = NULL;
	*out_len = 0;
	if (cap > max_out + 1)
		cap = max_out + 1;
	if ((buf = malloc(cap + 1)) == NULL)
		return CDVIZ_INFLATE_NO_MEMORY;
	memset(&zs, 0, sizeof(zs));
	/* 15 + 32: a zlib or gzip header, detected */
	if (inflateInit2(&zs, 15 + 32) != Z_OK)
	{
		free(buf);
		return CDVIZ_INFLATE_NO_MEMORY;
	}
	zs.next_in = (Bytef *) in;
	zs.avail_in = (uInt) in_len;
	for (;;)
	{
		zs.next_out = (Bytef *) buf + zs.total_out;
		zs.avail_out = (uInt) (cap - zs.total_out);
		rc = inflate(&zs, Z_NO_FLUSH);
		if (rc == Z_STREAM_END)
			break;
		if (rc != Z_OK && rc != Z_BUF_ERROR)
		{
			inflateEnd(&zs);
			free(buf);
			return rc == Z_MEM_ERROR ? CDVIZ_INFLATE_NO_MEMORY : CDVIZ_INFLATE_CORRUPT;
		}
		if (zs.avail_out == 0)
		{
			char	   *bigger;

			if (zs.total_out > max_out)
			{
				inflateEnd(&zs);
				free(buf);
				return CDVIZ_INFLATE_TOO_LARGE;
			}
			cap = cap * 2 > max_out + 1 ? max_out + 1 : cap * 2;
			if ((bigger = realloc(buf, cap + 1)) == NULL)
			{
				inflateEnd(&zs);
				free(buf);
				return CDVIZ_INFLATE_NO_MEMORY;
			}
			buf = bigger;
		}
		else if (zs.avail_in == 0)
		{
			/* input ended before the stream did */
			inflateEnd(&zs);
			free(buf);
			return CDVIZ_INFLATE_CORRUPT;
		}
	}
	inflateEnd(&zs);
	if (zs.total_out > max_out)
	{
		free(buf);
		return CDVIZ_INFLATE_TOO_LARGE;
	}
	buf[zs.total_out] = '\0';
	*out = buf;
	*out_len = zs.total_out;
	return CDVIZ_INFLATE_OK;
}
