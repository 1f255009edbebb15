/*
 * formats.c
 *	  RFC 3339 date-time and RFC 3986 URI grammars, written from the RFCs'
 *	  ABNF so the verdicts agree with JSON Schema validators that assert
 *	  formats (python-jsonschema with rfc3987, for one).
 */
#include "core/formats.h"

#include <arpa/inet.h>
#include <string.h>

/* --------------------------------------------------------------------
 * RFC 3339 section 5.6
 * -------------------------------------------------------------------- */

/* Read exactly n digits at s[*pos] into *out. */
static bool
read_digits(const char *s, size_t len, size_t *pos, int n, int *out)
{
	int			v = 0;

	if (*pos + n > len)
		return false;
	for (int i = 0; i < n; i++)
	{
		char		c = s[*pos + i];

		if (c < '0' || c > '9')
			return false;
		v = v * 10 + (c - '0');
	}
	*pos += n;
	*out = v;
	return true;
}

static bool
expect_char(const char *s, size_t len, size_t *pos, char c1, char c2)
{
	if (*pos >= len || (s[*pos] != c1 && s[*pos] != c2))
		return false;
	(*pos)++;
	return true;
}

static bool
is_leap_year(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar. */
static int64_t
days_from_civil(int y, int m, int d)
{
	int64_t		era;
	int			yoe,
				doy,
				doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (int) (y - era * 400);
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

bool
cdviz_parse_datetime(const char *s, size_t len, int64_t *epoch_us)
{
	static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	size_t		pos = 0;
	int			year,
				mon,
				day,
				hour,
				min,
				sec,
				usec = 0,
				off_h = 0,
				off_m = 0,
				off_sign = 0;
	int64_t		us;

	if (!read_digits(s, len, &pos, 4, &year) ||
		!expect_char(s, len, &pos, '-', '-') ||
		!read_digits(s, len, &pos, 2, &mon) ||
		!expect_char(s, len, &pos, '-', '-') ||
		!read_digits(s, len, &pos, 2, &day) ||
		!expect_char(s, len, &pos, 'T', 't') ||
		!read_digits(s, len, &pos, 2, &hour) ||
		!expect_char(s, len, &pos, ':', ':') ||
		!read_digits(s, len, &pos, 2, &min) ||
		!expect_char(s, len, &pos, ':', ':') ||
		!read_digits(s, len, &pos, 2, &sec))
		return false;
	if (pos < len && s[pos] == '.')
	{
		int			ndigits = 0;

		pos++;
		while (pos < len && s[pos] >= '0' && s[pos] <= '9')
		{
			if (ndigits < 6)
				usec = usec * 10 + (s[pos] - '0');
			ndigits++;
			pos++;
		}
		if (ndigits == 0)
			return false;
		for (int i = ndigits; i < 6; i++)
			usec *= 10;
	}
	if (pos < len && (s[pos] == 'Z' || s[pos] == 'z'))
		pos++;
	else if (pos < len && (s[pos] == '+' || s[pos] == '-'))
	{
		off_sign = s[pos] == '+' ? 1 : -1;
		pos++;
		if (!read_digits(s, len, &pos, 2, &off_h) ||
			!expect_char(s, len, &pos, ':', ':') ||
			!read_digits(s, len, &pos, 2, &off_m))
			return false;
	}
	else
		return false;
	if (pos != len)
		return false;

	if (mon < 1 || mon > 12 || day < 1 || hour > 23 || min > 59 || sec > 60 ||
		off_h > 23 || off_m > 59)
		return false;
	if (day > mdays[mon - 1] + (mon == 2 && is_leap_year(year) ? 1 : 0))
		return false;

	us = days_from_civil(year, mon, day) * 86400 + hour * 3600 + min * 60 + sec;
	us -= (int64_t) off_sign * (off_h * 3600 + off_m * 60);
	*epoch_us = us * 1000000 + usec;
	return true;
}

/* --------------------------------------------------------------------
 * RFC 3986 section 3 and appendix A
 * -------------------------------------------------------------------- */

static bool
is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool
is_hex(char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool
is_unreserved(char c)
{
	return is_alpha(c) || is_digit(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

static bool
is_sub_delim(char c)
{
	return strchr("!$&'()*+,;=", c) != NULL && c != '\0';
}

/*
 * Every character of s[from, to) is unreserved, a sub-delim, a valid
 * pct-encoded triple, or one of extra.
 */
static bool
all_chars(const char *s, size_t from, size_t to, const char *extra)
{
	for (size_t i = from; i < to; i++)
	{
		char		c = s[i];

		if (c == '%')
		{
			if (i + 2 >= to || !is_hex(s[i + 1]) || !is_hex(s[i + 2]))
				return false;
			i += 2;
			continue;
		}
		if (c == '\0')
			return false;
		if (!is_unreserved(c) && !is_sub_delim(c) && strchr(extra, c) == NULL)
			return false;
	}
	return true;
}

/* IP-literal = "[" ( IPv6address / IPvFuture ) "]", given the inside. */
static bool
is_ip_literal_body(const char *s, size_t from, size_t to)
{
	char		buf[64];
	unsigned char addr[16];
	size_t		n = to - from;

	if (n > 0 && (s[from] == 'v' || s[from] == 'V'))
	{
		size_t		i = from + 1;

		if (i >= to || !is_hex(s[i]))
			return false;
		while (i < to && is_hex(s[i]))
			i++;
		if (i >= to || s[i] != '.')
			return false;
		i++;
		if (i >= to)
			return false;
		for (; i < to; i++)
			if (!is_unreserved(s[i]) && !is_sub_delim(s[i]) && s[i] != ':')
				return false;
		return true;
	}
	if (n == 0 || n >= sizeof(buf))
		return false;
	memcpy(buf, s + from, n);
	buf[n] = '\0';
	/* inet_pton's IPv6 text form is RFC 4291's, the grammar RFC 3986 uses */
	for (size_t i = 0; i < n; i++)
		if (!is_hex(buf[i]) && buf[i] != ':' && buf[i] != '.')
			return false;
	return inet_pton(AF_INET6, buf, addr) == 1;
}

/* authority = [ userinfo "@" ] host [ ":" port ], s[from, to) */
static bool
is_authority(const char *s, size_t from, size_t to)
{
	const char *at = memchr(s + from, '@', to - from);
	size_t		host;
	size_t		port;

	if (at)
	{
		size_t		at_pos = at - s;

		if (!all_chars(s, from, at_pos, ":"))
			return false;
		host = at_pos + 1;
	}
	else
		host = from;

	if (host < to && s[host] == '[')
	{
		const char *close = memchr(s + host, ']', to - host);

		if (close == NULL || !is_ip_literal_body(s, host + 1, close - s))
			return false;
		port = close - s + 1;
		if (port < to && s[port] != ':')
			return false;
	}
	else
	{
		/* reg-name (IPv4address is a special case of it) */
		port = host;
		while (port < to && s[port] != ':')
			port++;
		if (!all_chars(s, host, port, ""))
			return false;
	}
	if (port < to)
	{
		for (size_t i = port + 1; i < to; i++)
			if (!is_digit(s[i]))
				return false;
	}
	return true;
}

/*
 * hier-part / relative-part, s[from, to) (query and fragment removed).
 * A relative reference's first segment may not contain ':'
 * (path-noscheme), or it would read as a scheme.
 */
static bool
is_hier_part(const char *s, size_t from, size_t to, bool relative)
{
	size_t		path = from;

	if (to - from >= 2 && s[from] == '/' && s[from + 1] == '/')
	{
		size_t		end = from + 2;

		while (end < to && s[end] != '/')
			end++;
		if (!is_authority(s, from + 2, end))
			return false;
		path = end;
	}
	else if (relative && path < to && s[path] != '/')
	{
		size_t		end = path;

		while (end < to && s[end] != '/')
		{
			if (s[end] == ':')
				return false;
			end++;
		}
	}
	/* path-absolute may not start with "//": excluded above by authority */
	return all_chars(s, path, to, ":@/");
}

/* Validate [ "?" query ] [ "#" fragment ] after the hier-part. */
static bool
split_query_fragment(const char *s, size_t len, size_t *hier_end)
{
	size_t		q = 0;

	while (q < len && s[q] != '?' && s[q] != '#')
		q++;
	*hier_end = q;
	if (q < len && s[q] == '?')
	{
		size_t		f = q + 1;

		while (f < len && s[f] != '#')
			f++;
		if (!all_chars(s, q + 1, f, ":@/?"))
			return false;
		q = f;
	}
	if (q < len && s[q] == '#')
	{
		if (!all_chars(s, q + 1, len, ":@/?"))
			return false;
	}
	return true;
}

/* Length of a scheme followed by ':' at the start of s, or 0. */
static size_t
scheme_length(const char *s, size_t len)
{
	size_t		i = 0;

	if (len == 0 || !is_alpha(s[0]))
		return 0;
	i = 1;
	while (i < len && (is_alpha(s[i]) || is_digit(s[i]) || s[i] == '+' ||
					   s[i] == '-' || s[i] == '.'))
		i++;
	return (i < len && s[i] == ':') ? i : 0;
}

bool
cdviz_is_uri(const char *s, size_t len)
{
	size_t		scheme = scheme_length(s, len);
	size_t		hier_end;

	if (scheme == 0)
		return false;
	if (!split_query_fragment(s + scheme + 1, len - scheme - 1, &hier_end))
		return false;
	return is_hier_part(s + scheme + 1, 0, hier_end, false);
}

bool
cdviz_is_uri_reference(const char *s, size_t len)
{
	size_t		hier_end;

	if (scheme_length(s, len) > 0)
		return cdviz_is_uri(s, len);
	if (!split_query_fragment(s, len, &hier_end))
		return false;
	return is_hier_part(s, 0, hier_end, true);
}
