/*
 * purl.c
 *	  Package URL splitting and percent-decoding; see purl.h for the rules.
 *
 * Every delimiter is ASCII, so working on bytes gives the same components
 * as working on characters would for any UTF-8 input.
 */
#include <string.h>

#include "core/hexdigit.h"
#include "core/purl.h"

static CdvizStr
slice(const char *ptr, size_t len)
{
	CdvizStr	s = {ptr, len};

	return s;
}

static const CdvizStr absent = {NULL, 0};

/* The last occurrence of c in [p, p + len), or NULL. */
static const char *
last_byte(const char *p, size_t len, char c)
{
	while (len > 0)
	{
		if (p[len - 1] == c)
			return p + len - 1;
		len--;
	}
	return NULL;
}

/*
 * What lies after the first c of [p, p + len), up to a second c: split_part
 * (text, c, 2) in SQL.  Absent when there is no c or nothing after it.
 */
static CdvizStr
second_part(const char *p, size_t len, char c)
{
	const char *first = memchr(p, c, len);
	const char *start;
	const char *end;

	if (first == NULL)
		return absent;
	start = first + 1;
	end = memchr(start, c, len - (size_t) (start - p));
	if (end == NULL)
		end = p + len;
	return end > start ? slice(start, (size_t) (end - start)) : absent;
}

/* The length of [p, p + len) before the first c (all of it when none). */
static size_t
before(const char *p, size_t len, char c)
{
	const char *hit = memchr(p, c, len);

	return hit ? (size_t) (hit - p) : len;
}

bool
cdviz_purl_split(const char *purl, size_t len, CdvizPurl *out)
{
	const char *body;
	size_t		body_len;
	size_t		nohash_len;
	size_t		core_len;
	const char *slash;
	const char *last_slash;
	const char *last_at;
	const char *rest;
	size_t		namever_len;
	const char *name_slash;

	if (len < 4 || memcmp(purl, "pkg:", 4) != 0)
		return false;
	body = purl + 4;
	body_len = len - 4;
	while (body_len > 0 && *body == '/')
		body++, body_len--;

	nohash_len = before(body, body_len, '#');
	out->subpath = second_part(body, body_len, '#');
	while (out->subpath.len > 0 && out->subpath.ptr[0] == '/')
		out->subpath.ptr++, out->subpath.len--;
	while (out->subpath.len > 0 && out->subpath.ptr[out->subpath.len - 1] == '/')
		out->subpath.len--;
	if (out->subpath.len == 0)
		out->subpath = absent;
	out->qualifiers = second_part(body, nohash_len, '?');
	core_len = before(body, nohash_len, '?');

	/* type, then a "/": without one there is no name */
	slash = memchr(body, '/', core_len);
	if (slash == NULL || slash == body)
		return false;
	out->type = slice(body, (size_t) (slash - body));
	rest = slash + 1;

	/* the version follows the last "@" after the last "/" */
	last_slash = last_byte(body, core_len, '/');
	last_at = last_byte(body, core_len, '@');
	if (last_at != NULL && last_at > last_slash)
	{
		out->version = slice(last_at + 1, (size_t) (body + core_len - last_at - 1));
		namever_len = (size_t) (last_at - rest);
	}
	else
	{
		out->version = absent;
		namever_len = (size_t) (body + core_len - rest);
	}

	/* the name is the last segment, the namespace what comes before it */
	name_slash = last_byte(rest, namever_len, '/');
	if (name_slash == NULL)
	{
		out->name = slice(rest, namever_len);
		out->namespace = absent;
	}
	else
	{
		out->name = slice(name_slash + 1, (size_t) (rest + namever_len - name_slash - 1));
		out->namespace = name_slash > rest ? slice(rest, (size_t) (name_slash - rest)) : absent;
	}
	return out->name.len > 0;
}

/* Is p[0..2] an escape of an ASCII character other than NUL? */
static bool
ascii_escape_at(const char *p, size_t left)
{
	int			hi;
	int			lo;

	if (left < 3)
		return false;
	hi = cdviz_hex_value(p[1]);
	lo = cdviz_hex_value(p[2]);
	return hi >= 0 && hi <= 7 && lo >= 0 && (hi > 0 || lo > 0);
}

size_t
cdviz_percent_decode(const char *in, size_t len, char *out)
{
	size_t		n = 0;

	/* all escapes must be ASCII, else the text stays as it is */
	for (size_t i = 0; i < len; i++)
		if (in[i] == '%' && !ascii_escape_at(in + i, len - i))
		{
			memcpy(out, in, len);
			return len;
		}
	for (size_t i = 0; i < len; i++)
	{
		if (in[i] == '%')
		{
			out[n++] = (char) (cdviz_hex_value(in[i + 1]) * 16 + cdviz_hex_value(in[i + 2]));
			i += 2;
		}
		else
			out[n++] = in[i];
	}
	return n;
}
