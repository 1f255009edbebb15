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
 * One structured CloudEvent (a parsed object) to an event: its data, or
 * the CloudEvent's text with problems when it carries no usable CDEvent.
 */
static bool
structured_event(struct json_object *ce, CdvizEnvelope *env, int *capacity)
{
	CdvizProblems problems;
	struct json_object *data = NULL;
	const char *b64;
	const char *specversion;
	CdvizEnvelopeEvent *ev;

	cdviz_problems_init(&problems);
	if (!json_object_is_type(ce, json_type_object))
	{
		cdviz_problems_add(&problems, "$", "a structured CloudEvent must be a JSON object, not %s",
						   json_type_to_name(json_object_get_type(ce)));
		goto refuse;
	}
	specversion = string_member(ce, "specversion");
	if (specversion == NULL)
		cdviz_problems_add(&problems, "specversion", "required CloudEvents attribute is missing");
	else if (strcmp(specversion, CE_SPECVERSION) != 0)
		cdviz_problems_add(&problems, "specversion", "CloudEvents \"%s\" is not supported (only %s)",
						   specversion, CE_SPECVERSION);

	if (json_object_object_get_ex(ce, "data", &data) && data != NULL)
	{
		if (!json_object_is_type(data, json_type_object))
		{
			cdviz_problems_add(&problems, "data", "must be the CDEvent as a JSON object, not %s",
							   json_type_to_name(json_object_get_type(data)));
			goto refuse;
		}
		check_agreement(data, string_member(ce, "id"), string_member(ce, "source"),
						string_member(ce, "type"), "", &problems);
		if (problems.count > 0)
			goto refuse;
		if ((ev = json_event(data, env, capacity)) == NULL)
			return false;
		return true;
	}
	if ((b64 = string_member(ce, "data_base64")) != NULL)
	{
		size_t		len;
		char	   *decoded = base64_decode(b64, &len);
		struct json_object *doc;
		CdvizProblems parse;

		if (decoded == NULL)
		{
			if (len != (size_t) -1)
				return false;
			cdviz_problems_add(&problems, "data_base64", "is not valid base64");
			goto refuse;
		}
		/* only to compare the attributes: validation parses it again */
		cdviz_problems_init(&parse);
		doc = cdviz_json_parse(decoded, len, &parse);
		cdviz_problems_reset(&parse);
		check_agreement(doc, string_member(ce, "id"), string_member(ce, "source"),
						string_member(ce, "type"), "", &problems);
		cdviz_json_free(doc);
		if (problems.count > 0 || (ev = add_event(env, capacity)) == NULL)
		{
			free(decoded);
			if (problems.count > 0)
				goto refuse;
			return false;
		}
		ev->raw = decoded;
		ev->raw_len = len;
		ev->owned = true;
		return true;
	}
	cdviz_problems_add(&problems, "data",
					   "missing: a structured CloudEvent carries the CDEvent in data or data_base64");

refuse:
	if ((ev = json_event(ce, env, capacity)) == NULL)
	{
		cdviz_problems_reset(&problems);
		return false;
	}
	cdviz_problems_move(&ev->problems, &problems);
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
			if (strcmp(in->ce_specversion, CE_SPECVERSION) != 0)
				cdviz_problems_add(&problems, "$", "CloudEvents \"%s\" (ce-specversion) is not supported (only %s)",
								   in->ce_specversion, CE_SPECVERSION);
			if (first_char(in->body, in->body_len) == '[')
				cdviz_problems_add(&problems, "$", "a binary-mode CloudEvent carries one CDEvent, not an array; "
								   "use application/cloudevents-batch+json for batches");
			else
			{
				CdvizProblems parse;

				cdviz_problems_init(&parse);
				doc = cdviz_json_parse(in->body, in->body_len, &parse);
				cdviz_problems_reset(&parse);	/* validation reports it */
				check_agreement(doc, in->ce_id, in->ce_source, in->ce_type, "ce-", &problems);
				cdviz_json_free(doc);
			}
			return body_event(in, env, &capacity, problems.count ? &problems : NULL);

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
				ok = structured_event(doc, env, &capacity);
			break;

		case CDVIZ_ENVELOPE_ARRAY:
		case CDVIZ_ENVELOPE_BATCH:
			if (env->mode == CDVIZ_ENVELOPE_ARRAY)
			{
				int			split = split_array(in, env, &capacity);

				if (split != 0)
					return split > 0;
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
			for (size_t i = 0; ok && i < json_object_array_length(doc); i++)
			{
				struct json_object *elem = json_object_array_get_idx(doc, i);

				if (env->mode == CDVIZ_ENVELOPE_BATCH)
					ok = structured_event(elem, env, &capacity);
				else
					ok = json_event(elem, env, &capacity) != NULL;
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
