/*
 * envelope.c
 *	  The CloudEvents HTTP binding's modes: a body read as one plain
 *	  CDEvent, an array of them, a binary-mode event (the ce-* headers as
 *	  attributes), a structured event or a batch; see envelope.h.  The
 *	  attributes are checked in envelope_ce.c, gzip bodies inflated in
 *	  envelope_gzip.c.
 *
 * Memory comes from malloc, as everywhere in the core.  A single plain or
 * binary event is not copied: its raw text is the body itself, so the
 * common case costs one scan for the first character.
 */
#include "core/envelope_int.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "core/event.h"

/* See envelope.h. */
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

/* See envelope.h. */
const char *
cdviz_envelope_column(CdvizEnvelopeMode mode)
{
	if (mode == CDVIZ_ENVELOPE_STRUCTURED)
		return "{\"mode\": \"structured\"}";
	if (mode == CDVIZ_ENVELOPE_BATCH)
		return "{\"mode\": \"batch\"}";
	return NULL;
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
	cdviz_ce_check_required(values, present, "ce-", &problems);
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
		cdviz_ce_check_agreement(doc, decoded[1], decoded[2], decoded[3], "ce-", &problems);
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

				ok = ev != NULL && cdviz_ce_structured_fill(ev, doc, in->body, in->body_len);
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
						ok = cdviz_ce_structured_fill(ev, ce, text, len);
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
					ok = cdviz_ce_structured_fill(ev, elem, text, ev->raw_len);
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
