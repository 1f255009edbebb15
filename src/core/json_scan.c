/*
 * json_scan.c
 *	  See json_scan.h.  An iterative scanner: a stack of the open
 *	  containers instead of recursion, so depth costs no C stack.
 */
#include <stdint.h>
#include <string.h>

#include "core/json_scan.h"

/* What the scanner expects next. */
typedef enum ScanState
{
	EXPECT_VALUE,				/* a value (after '[', ',' in an array, ':') */
	EXPECT_KEY,					/* a member name (after ',' in an object) */
	AFTER_VALUE					/* ',' or the end of the open container */
} ScanState;

static inline char *
skip_ws(char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

static inline bool
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Four hex digits at p as *cp; false when there are not four. */
static bool
hex4(const char *p, const char *end, uint32_t *cp)
{
	uint32_t	v = 0;

	if (end - p < 4)
		return false;
	for (int i = 0; i < 4; i++)
	{
		char		c = p[i];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (uint32_t) (c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (uint32_t) (c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (uint32_t) (c - 'A' + 10);
		else
			return false;
	}
	*cp = v;
	return true;
}

/* Code point cp (not a surrogate) as UTF-8 at w; the bytes written. */
static int
utf8_encode(uint32_t cp, char *w)
{
	if (cp < 0x80)
	{
		w[0] = (char) cp;
		return 1;
	}
	if (cp < 0x800)
	{
		w[0] = (char) (0xC0 | (cp >> 6));
		w[1] = (char) (0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000)
	{
		w[0] = (char) (0xE0 | (cp >> 12));
		w[1] = (char) (0x80 | ((cp >> 6) & 0x3F));
		w[2] = (char) (0x80 | (cp & 0x3F));
		return 3;
	}
	w[0] = (char) (0xF0 | (cp >> 18));
	w[1] = (char) (0x80 | ((cp >> 12) & 0x3F));
	w[2] = (char) (0x80 | ((cp >> 6) & 0x3F));
	w[3] = (char) (0x80 | (cp & 0x3F));
	return 4;
}

/*
 * The \u escape whose hex digits begin at *pp: decoded at *wp, a
 * surrogate pair as one code point.  Refuses \u0000 and lone surrogates,
 * as jsonb does.  Writing never overtakes reading: six characters (twelve
 * for a pair) become at most three bytes (four).
 */
static bool
unescape_u(char **pp, const char *end, char **wp)
{
	char	   *p = *pp;
	uint32_t	cp;
	uint32_t	lo;

	if (!hex4(p, end, &cp))
		return false;
	p += 4;
	if (cp >= 0xD800 && cp <= 0xDBFF)
	{
		if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || !hex4(p + 2, end, &lo) ||
			lo < 0xDC00 || lo > 0xDFFF)
			return false;
		p += 6;
		cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
	}
	else if ((cp >= 0xDC00 && cp <= 0xDFFF) || cp == 0)
		return false;
	*wp += utf8_encode(cp, *wp);
	*pp = p;
	return true;
}

/*
 * The string whose first character is at p (after the opening quote):
 * unescaped in place, as *s and *len.  Returns what follows the closing
 * quote, or NULL when it is no JSON string.
 */
static char *
scan_string(char *p, const char *end, const char **s, size_t *len)
{
	char	   *start = p;
	char	   *w;

	/* most strings have no escape: find their end and leave them be */
	while (p < end && *p != '"' && *p != '\\')
	{
		if ((unsigned char) *p < 0x20)
			return NULL;
		p++;
	}
	w = p;
	while (p < end)
	{
		char		c = *p++;

		if (c == '"')
		{
			*s = start;
			*len = (size_t) (w - start);
			return p;
		}
		if ((unsigned char) c < 0x20)
			return NULL;
		if (c != '\\')
		{
			*w++ = c;
			continue;
		}
		if (p >= end)
			return NULL;
		switch (*p++)
		{
			case '"':
				*w++ = '"';
				break;
			case '\\':
				*w++ = '\\';
				break;
			case '/':
				*w++ = '/';
				break;
			case 'b':
				*w++ = '\b';
				break;
			case 'f':
				*w++ = '\f';
				break;
			case 'n':
				*w++ = '\n';
				break;
			case 'r':
				*w++ = '\r';
				break;
			case 't':
				*w++ = '\t';
				break;
			case 'u':
				if (!unescape_u(&p, end, &w))
					return NULL;
				break;
			default:
				return NULL;
		}
	}
	return NULL;
}

/*
 * The number that begins at p: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
 * Returns what follows it, or NULL.
 */
static char *
scan_number(char *p, const char *end)
{
	if (p < end && *p == '-')
		p++;
	if (p < end && *p == '0')
		p++;
	else if (p < end && *p >= '1' && *p <= '9')
		while (p < end && is_digit(*p))
			p++;
	else
		return NULL;
	if (p < end && *p == '.')
	{
		p++;
		if (p >= end || !is_digit(*p))
			return NULL;
		while (p < end && is_digit(*p))
			p++;
	}
	if (p < end && (*p == 'e' || *p == 'E'))
	{
		p++;
		if (p < end && (*p == '+' || *p == '-'))
			p++;
		if (p >= end || !is_digit(*p))
			return NULL;
		while (p < end && is_digit(*p))
			p++;
	}
	return p;
}

/* The literal word at p (true, false, null) or NULL; its token in *token. */
static char *
scan_literal(char *p, const char *end, CdvizJsonToken *token)
{
	static const struct
	{
		const char *word;
		size_t		len;
		CdvizJsonToken token;
	}			words[] = {
		{"true", 4, CDVIZ_JSON_TRUE},
		{"false", 5, CDVIZ_JSON_FALSE},
		{"null", 4, CDVIZ_JSON_NULL},
	};

	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
	{
		if ((size_t) (end - p) >= words[i].len && memcmp(p, words[i].word, words[i].len) == 0)
		{
			*token = words[i].token;
			return p + words[i].len;
		}
	}
	return NULL;
}

/*
 * One value at p, which is not blank: a scalar is emitted, a container
 * opened (pushed on the stack, its start emitted).  Returns what follows
 * it, or NULL; *opened says whether a container was opened.
 */
static char *
scan_value(char *p, const char *end, char *stack, int *depth, bool *opened,
		   CdvizJsonEmit emit, void *arg)
{
	const char *s = p;
	size_t		len = 0;
	CdvizJsonToken token;
	char	   *next;

	*opened = false;
	switch (*p)
	{
		case '{':
		case '[':
			if (*depth == CDVIZ_JSON_MAX_DEPTH)
				return NULL;
			stack[(*depth)++] = *p;
			*opened = true;
			return emit(arg, *p == '{' ? CDVIZ_JSON_OBJECT_START : CDVIZ_JSON_ARRAY_START, p, 1)
				? p + 1 : NULL;
		case '"':
			token = CDVIZ_JSON_STRING;
			next = scan_string(p + 1, end, &s, &len);
			break;
		case '-':
		case '0':
		case '1':
		case '2':
		case '3':
		case '4':
		case '5':
		case '6':
		case '7':
		case '8':
		case '9':
			token = CDVIZ_JSON_NUMBER;
			next = scan_number(p, end);
			len = next ? (size_t) (next - p) : 0;
			break;
		default:
			next = scan_literal(p, end, &token);
			len = next ? (size_t) (next - p) : 0;
			break;
	}
	if (next == NULL || !emit(arg, token, s, len))
		return NULL;
	return next;
}

/* See json_scan.h. */
bool
cdviz_json_scan(char *text, size_t len, CdvizJsonEmit emit, void *arg)
{
	const char *end = text + len;
	char		stack[CDVIZ_JSON_MAX_DEPTH];
	int			depth = 0;
	ScanState	state = EXPECT_VALUE;
	char	   *p = skip_ws(text, end);
	bool		opened;

	/* a scalar document is left to the other parser */
	if (p >= end || (*p != '{' && *p != '['))
		return false;
	for (;;)
	{
		p = skip_ws(p, end);
		if (p >= end)
			return false;
		switch (state)
		{
			case EXPECT_VALUE:
				if ((p = scan_value(p, end, stack, &depth, &opened, emit, arg)) == NULL)
					return false;
				state = AFTER_VALUE;
				if (opened)
				{
					/* an empty container is closed by AFTER_VALUE at once */
					char		close = stack[depth - 1] == '{' ? '}' : ']';

					p = skip_ws(p, end);
					if (p >= end || *p != close)
						state = close == '}' ? EXPECT_KEY : EXPECT_VALUE;
				}
				continue;
			case AFTER_VALUE:
				if (*p == ',' && depth > 0)
				{
					p++;
					state = stack[depth - 1] == '{' ? EXPECT_KEY : EXPECT_VALUE;
					continue;
				}
				if (depth > 0 && *p == (stack[depth - 1] == '{' ? '}' : ']'))
				{
					depth--;
					if (!emit(arg, *p == '}' ? CDVIZ_JSON_OBJECT_END : CDVIZ_JSON_ARRAY_END, p, 1))
						return false;
					p++;
					if (depth == 0)
						return skip_ws(p, end) == end;
					state = AFTER_VALUE;
					continue;
				}
				return false;
			case EXPECT_KEY:
				{
					const char *s;
					size_t		slen;

					if (*p != '"' || (p = scan_string(p + 1, end, &s, &slen)) == NULL ||
						!emit(arg, CDVIZ_JSON_KEY, s, slen))
						return false;
					p = skip_ws(p, end);
					if (p >= end || *p != ':')
						return false;
					p++;
					state = EXPECT_VALUE;
					continue;
				}
		}
	}
}
