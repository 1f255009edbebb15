/*
 * envelope_ce.c
 *	  CloudEvents attributes: ce-* header values decoded (percent-encoding)
 *	  and checked, required attributes present, agreement with the
 *	  CDEvent's context, and a structured CloudEvent made an event of the
 *	  envelope (its data, or data_base64 decoded).  Memory comes from
 *	  malloc, as everywhere in the core.
 */
#include "core/envelope_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "core/event.h"
#include "core/hexdigit.h"

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
void
cdviz_ce_check_agreement(struct json_object *cdevent, const char *id, const char *source,
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
void
cdviz_ce_check_required(const char *const values[3], const bool present[3], const char *prefix,
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
bool
cdviz_ce_structured_fill(CdvizEnvelopeEvent *ev, struct json_object *ce, const char *text, size_t len)
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
	cdviz_ce_check_required(attrs, present, "", problems);

	if (json_object_object_get_ex(ce, "data", &data) && data != NULL)
	{
		const char *printed;

		if (!json_object_is_type(data, json_type_object))
		{
			cdviz_problems_add(problems, "data", "must be the CDEvent as a JSON object, not %s",
							   json_type_to_name(json_object_get_type(data)));
			goto refuse;
		}
		cdviz_ce_check_agreement(data, attrs[0], attrs[1], attrs[2], "", problems);
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
		cdviz_ce_check_agreement(doc, attrs[0], attrs[1], attrs[2], "", problems);
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
