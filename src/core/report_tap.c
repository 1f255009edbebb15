/*
 * report_tap.c
 *	  TAP (the Test Anything Protocol, versions 13 and 14) read into the
 *	  report model: the whole stream is one suite, each test line a case.
 *
 *	- "ok" / "not ok" [number] [- description] [# SKIP|TODO reason]:
 *	  success or failure; SKIP gives a skipped case; TODO marks the case
 *	  "todo", and a TODO that is "not ok" is an expected failure, not a
 *	  failure: it is kept as skipped, with "TODO" and its reason as the
 *	  message.  "\#" in a description is a "#".
 *	- A YAML diagnostics block ("---" ... "...", two spaces deeper than
 *	  its test line) gives the case's message, severity and duration
 *	  (duration_ms, or duration in seconds) when it names them, and is
 *	  kept as the case's details.  Only top-level scalars are read:
 *	  plain, quoted, or block ("|", ">").
 *	- Subtests (TAP 14, and TAP 13 as node-tap writes it): lines four
 *	  spaces deeper open a nested suite, named by a preceding
 *	  "# Subtest: name" comment; the test line at the parent's depth that
 *	  follows closes it, names it when nothing did, and fails it when
 *	  "not ok".
 *	- "Bail out!" ends the stream: every open suite ends in error.
 *	- A plan ("1..N") that the suite's test lines do not match fails the
 *	  suite.
 *	- Anything else (comments, pragmas, unknown lines) is ignored, as the
 *	  protocol says; a stream with no version line, plan or test line is
 *	  refused as not TAP.
 */
#include "core/report_int.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A YAML block longer than this is kept cut (details) and read no further. */
#define YAML_MAX (64 * 1024)

typedef struct TapLevel
{
	json_object *suite;
	long		plan;			/* -1 when no plan */
	long		points;			/* test lines, subtests' closing ones too */
} TapLevel;

typedef struct TapParse
{
	ReportBuild b;
	TapLevel	stack[CDVIZ_REPORT_MAX_DEPTH + 1];
	int			depth;			/* stack[depth] is the innermost open suite */
	bool		seen;			/* a version line, plan or test line */
	bool		refused;		/* past a limit: no model */
	int			version;
	char	   *subtest_name;	/* from "# Subtest: ", not yet used */
	json_object *yaml_target;	/* what a YAML block would describe */
	int			yaml_indent;	/* its "---" is expected at this indent */
	bool		in_yaml;
	char	   *yaml;			/* the block so far */
	size_t		yaml_len;
} TapParse;

static bool
starts_with(const char *s, size_t len, const char *prefix)
{
	size_t		n = strlen(prefix);

	return len >= n && memcmp(s, prefix, n) == 0;
}

/* Trim spaces and tabs on both sides of s[0..*len). */
static const char *
trim(const char *s, size_t *len)
{
	while (*len > 0 && (*s == ' ' || *s == '\t'))
		s++, (*len)--;
	while (*len > 0 && (s[*len - 1] == ' ' || s[*len - 1] == '\t'))
		(*len)--;
	return s;
}

/*
 * The decimal number at s[*i..len), capped so it cannot overflow; -1 when
 * no digit is there.  Lines are not NUL-terminated, so atoi() is no use.
 */
static long
read_number(const char *s, size_t len, size_t *i)
{
	long		n = 0;

	if (*i >= len || !isdigit((unsigned char) s[*i]))
		return -1;
	while (*i < len && isdigit((unsigned char) s[*i]))
	{
		if (n < 100000000)
			n = n * 10 + (s[*i] - '0');
		(*i)++;
	}
	return n;
}

/* ---- YAML diagnostics ------------------------------------------------- */

/* Append one line of a YAML block. */
static void
yaml_append(TapParse *p, const char *s, size_t len)
{
	char	   *grown;

	if (p->yaml_len + len + 1 > YAML_MAX)
		return;
	grown = realloc(p->yaml, p->yaml_len + len + 2);
	if (grown == NULL)
		return;
	p->yaml = grown;
	memcpy(p->yaml + p->yaml_len, s, len);
	p->yaml_len += len;
	p->yaml[p->yaml_len++] = '\n';
	p->yaml[p->yaml_len] = '\0';
}

/*
 * The value of top-level key in the block, unquoted, into a malloc'd
 * string; NULL when absent or not a scalar.
 */
static char *
yaml_scalar(const char *y, size_t ylen, const char *key)
{
	size_t		klen = strlen(key);
	const char *end = y + ylen;

	for (const char *line = y; line < end;)
	{
		const char *eol = memchr(line, '\n', end - line);
		const char *v;
		size_t		vlen;

		if (eol == NULL)
			eol = end;
		if ((size_t) (eol - line) > klen && memcmp(line, key, klen) == 0 &&
			line[klen] == ':' && (line + klen + 1 == eol || line[klen + 1] == ' '))
		{
			v = line + klen + 1;
			vlen = eol - v;
			v = trim(v, &vlen);
			if (vlen >= 1 && (v[0] == '|' || v[0] == '>'))
			{
				/* a block scalar: the more indented lines after it */
				bool		literal = v[0] == '|';
				char	   *out = malloc(end - eol + 1);
				size_t		o = 0;
				size_t		indent = 0;

				if (out == NULL)
					return NULL;
				for (line = eol + 1; line < end && (*line == ' ' || *line == '\n');)
				{
					const char *e = memchr(line, '\n', end - line);
					size_t		sp = 0;

					if (e == NULL)
						e = end;
					while (line + sp < e && line[sp] == ' ')
						sp++;
					if (indent == 0 && line + sp < e)
						indent = sp;
					if (o > 0)
						out[o++] = literal ? '\n' : ' ';
					if ((size_t) (e - line) > indent)
					{
						memcpy(out + o, line + indent, e - line - indent);
						o += e - line - indent;
					}
					line = e + 1;
				}
				while (o > 0 && (out[o - 1] == '\n' || out[o - 1] == ' '))
					o--;
				out[o] = '\0';
				return out;
			}
			if (vlen >= 2 && (v[0] == '\'' || v[0] == '"') && v[vlen - 1] == v[0])
			{
				char	   *out = malloc(vlen);
				size_t		o = 0;

				if (out == NULL)
					return NULL;
				for (size_t i = 1; i + 1 < vlen; i++)
				{
					if (v[0] == '\'' && v[i] == '\'' && v[i + 1] == '\'' && i + 2 < vlen)
						i++;
					else if (v[0] == '"' && v[i] == '\\' && i + 2 < vlen)
					{
						i++;
						out[o++] = v[i] == 'n' ? '\n' : v[i] == 't' ? '\t' : v[i];
						continue;
					}
					out[o++] = v[i];
				}
				out[o] = '\0';
				return out;
			}
			if (vlen == 0 || v[0] == '{' || v[0] == '[')
				return NULL;
			return strndup(v, vlen);
		}
		line = eol + 1;
	}
	return NULL;
}

/* Apply the finished YAML block to its test line (or subtest). */
static void
yaml_apply(TapParse *p)
{
	json_object *t = p->yaml_target;
	char	   *v;

	p->in_yaml = false;
	if (t == NULL || p->yaml_len == 0)
		return;
	if (!json_object_object_get_ex(t, "message", NULL) &&
		(v = yaml_scalar(p->yaml, p->yaml_len, "message")) != NULL)
	{
		cdviz_report_set_text(t, "message", v, strlen(v), CDVIZ_REPORT_MAX_DETAILS);
		free(v);
	}
	if ((v = yaml_scalar(p->yaml, p->yaml_len, "severity")) != NULL)
	{
		cdviz_report_set_text(t, "severity", v, strlen(v), 64);
		free(v);
	}
	if ((v = yaml_scalar(p->yaml, p->yaml_len, "duration_ms")) != NULL)
	{
		cdviz_report_set_seconds(t, "duration", v, strlen(v), 0.001);
		free(v);
	}
	else if ((v = yaml_scalar(p->yaml, p->yaml_len, "duration")) != NULL)
	{
		size_t		n = strlen(v);

		if (n > 2 && strcmp(v + n - 2, "ms") == 0)
			cdviz_report_set_seconds(t, "duration", v, n - 2, 0.001);
		else
			cdviz_report_set_seconds(t, "duration", v, n - (n > 1 && v[n - 1] == 's'), 1.0);
		free(v);
	}
	cdviz_report_set_text(t, "details", p->yaml, p->yaml_len - 1, CDVIZ_REPORT_MAX_DETAILS);
}

/* ---- suites ------------------------------------------------------------ */

/* Open a subtest below the innermost suite; false past the limits. */
static bool
open_subtest(TapParse *p)
{
	json_object *suite;

	/* stack[0] is the file's own suite: a subtest is one suite deeper */
	if (p->depth + 1 >= CDVIZ_REPORT_MAX_DEPTH)
	{
		cdviz_problems_add(p->b.problems, "$", "test suites are nested more than %d deep",
						   CDVIZ_REPORT_MAX_DEPTH);
		p->refused = true;
		return false;
	}
	suite = cdviz_report_add_suite(&p->b, p->stack[p->depth].suite);
	if (suite == NULL)
	{
		p->refused = true;
		return false;
	}
	if (p->subtest_name)
		cdviz_report_set_text(suite, "name", p->subtest_name, strlen(p->subtest_name), 0);
	else
		json_object_object_add(suite, "name", json_object_new_string(""));
	free(p->subtest_name);
	p->subtest_name = NULL;
	p->depth++;
	p->stack[p->depth].suite = suite;
	p->stack[p->depth].plan = -1;
	p->stack[p->depth].points = 0;
	return true;
}

/* Say in suite that it failed or erred, unless it said so already. */
static void
suite_outcome(json_object *suite, const char *outcome, const char *reason, size_t len)
{
	if (json_object_object_get_ex(suite, "outcome", NULL))
		return;
	json_object_object_add(suite, "outcome", json_object_new_string(outcome));
	cdviz_report_set_text(suite, "reason", reason, len, CDVIZ_REPORT_MAX_DETAILS);
}

/* The innermost suite is over: hold its plan against its test lines. */
static json_object *
close_level(TapParse *p)
{
	TapLevel   *l = &p->stack[p->depth];

	if (l->plan >= 0 && l->plan != l->points)
	{
		char		reason[96];

		snprintf(reason, sizeof(reason), "planned %ld tests, ran %ld", l->plan, l->points);
		suite_outcome(l->suite, "failure", reason, strlen(reason));
	}
	if (p->depth > 0)
		p->depth--;
	return l->suite;
}

/* ---- lines ------------------------------------------------------------- */

/* "1..N" (a trailing "# reason" allowed). */
static bool
read_plan(TapParse *p, const char *s, size_t len)
{
	size_t		i = 3;
	long		n;

	if (!starts_with(s, len, "1.."))
		return false;
	n = read_number(s, len, &i);
	if (n < 0)
		return false;
	if (i < len && s[i] != ' ' && s[i] != '\t')
		return false;
	p->stack[p->depth].plan = n;
	return true;
}

/*
 * Where in description d (len bytes) a SKIP or TODO directive starts: a
 * "#" after white space, not escaped; -1 when none.  *todo tells which.
 */
static long
find_directive(const char *d, size_t len, bool *todo, size_t *reason_at)
{
	for (size_t i = 0; i < len; i++)
	{
		size_t		k;

		if (d[i] == '\\')
		{
			i++;
			continue;
		}
		if (d[i] != '#' || (i > 0 && d[i - 1] != ' ' && d[i - 1] != '\t'))
			continue;
		for (k = i + 1; k < len && (d[k] == ' ' || d[k] == '\t'); k++)
			;
		if (len - k >= 4 && (strncasecmp(d + k, "skip", 4) == 0 ||
							 strncasecmp(d + k, "todo", 4) == 0))
		{
			*todo = strncasecmp(d + k, "todo", 4) == 0;
			/* "SKIP", "skipped:", "TODO:"... then the reason */
			for (k += 4; k < len && d[k] != ' ' && d[k] != '\t'; k++)
				;
			*reason_at = k;
			return (long) i;
		}
	}
	return -1;
}

/* Set obj[key] to d unescaped ("\#" is "#", "\\" is "\"), trimmed. */
static void
set_unescaped(json_object *obj, const char *key, const char *d, size_t len)
{
	char	   *out = malloc(len + 1);
	size_t		o = 0;

	if (out == NULL)
		return;
	d = trim(d, &len);
	for (size_t i = 0; i < len; i++)
	{
		if (d[i] == '\\' && i + 1 < len && (d[i + 1] == '#' || d[i + 1] == '\\'))
			i++;
		out[o++] = d[i];
	}
	cdviz_report_set_text(obj, key, out, o, 0);
	free(out);
}

/*
 * "ok" / "not ok" line s; closed: the subtest it closes, if any.  False
 * when s is no test line.
 */
static bool
read_point(TapParse *p, const char *s, size_t len, json_object *closed, bool *failed)
{
	bool		pass;
	size_t		i;
	long		number = -1;
	const char *d;
	size_t		dlen;
	long		dir;
	bool		todo = false;
	size_t		reason_at = 0;
	json_object *t;

	if (starts_with(s, len, "ok"))
		pass = true, i = 2;
	else if (starts_with(s, len, "not ok"))
		pass = false, i = 6;
	else
		return false;
	if (i < len && s[i] != ' ' && s[i] != '\t')
		return false;
	while (i < len && s[i] == ' ')
		i++;
	number = read_number(s, len, &i);
	while (i < len && s[i] == ' ')
		i++;
	if (i + 1 < len && s[i] == '-' && s[i + 1] == ' ')
		i += 2;
	else if (i + 1 == len && s[i] == '-')
		i++;
	d = s + i;
	dlen = len - i;
	dir = find_directive(d, dlen, &todo, &reason_at);
	p->stack[p->depth].points++;
	*failed = !pass && dir < 0;
	if (closed)
	{
		/* the line that ends a subtest is the subtest's own result */
		json_object *name;

		json_object_object_get_ex(closed, "name", &name);
		if (json_object_get_string_len(name) == 0)
			set_unescaped(closed, "name", d, dir >= 0 ? (size_t) dir : dlen);
		if (*failed)
			suite_outcome(closed, "failure", "the subtest's test line is not ok", 33);
		p->yaml_target = closed;
		return true;
	}
	t = cdviz_report_add_case(&p->b, p->stack[p->depth].suite);
	if (t == NULL)
	{
		p->refused = true;
		return true;
	}
	set_unescaped(t, "name", d, dir >= 0 ? (size_t) dir : dlen);
	if (number >= 0)
		json_object_object_add(t, "number", json_object_new_int64(number));
	if (dir >= 0 && todo)
		json_object_object_add(t, "todo", json_object_new_boolean(1));
	if (dir >= 0 && (!todo || !pass))
	{
		/* a skip, or an expected failure: neither passed nor failed */
		json_object_object_add(t, "outcome", json_object_new_string("skipped"));
		if (todo || reason_at < dlen)
		{
			size_t		rlen = dlen - reason_at;
			const char *r = trim(d + reason_at, &rlen);
			char	   *msg = malloc(rlen + 6);

			if (msg != NULL)
			{
				int			n = todo ? (rlen ? snprintf(msg, rlen + 6, "TODO %.*s", (int) rlen, r)
										: snprintf(msg, rlen + 6, "TODO"))
					: snprintf(msg, rlen + 6, "%.*s", (int) rlen, r);

				cdviz_report_set_text(t, "message", msg, (size_t) n, CDVIZ_REPORT_MAX_DETAILS);
				free(msg);
			}
		}
	}
	else
		json_object_object_add(t, "outcome", json_object_new_string(pass ? "success" : "failure"));
	p->yaml_target = t;
	return true;
}

/* One line (no newline) at indent spaces; false to stop reading. */
static bool
read_line(TapParse *p, const char *line, size_t len, size_t indent)
{
	const char *s = line + indent;
	size_t		slen = len - indent;
	int			level;
	json_object *closed = NULL;
	bool		failed;

	if (starts_with(s, slen, "# Subtest:"))
	{
		size_t		n = slen - 10;
		const char *name = trim(s + 10, &n);

		free(p->subtest_name);
		p->subtest_name = strndup(name, n);
		return true;
	}
	if (indent % 4 != 0)
		return true;
	level = (int) (indent / 4);
	if (!starts_with(s, slen, "TAP version ") && !starts_with(s, slen, "1..") &&
		!starts_with(s, slen, "ok") && !starts_with(s, slen, "not ok") &&
		!starts_with(s, slen, "Bail out!"))
		return true;
	while (level > p->depth)
		if (!open_subtest(p))
			return false;
	while (level < p->depth)
		closed = close_level(p);
	p->yaml_target = NULL;
	p->yaml_indent = (int) indent + 2;
	if (starts_with(s, slen, "TAP version "))
	{
		size_t		i = 12;

		if (level == 0)
			p->version = (int) read_number(s, slen, &i);
		p->seen = true;
		return true;
	}
	if (starts_with(s, slen, "Bail out!"))
	{
		size_t		n = slen;
		const char *reason = trim(s, &n);

		for (int i = p->depth; i >= 0; i--)
			suite_outcome(p->stack[i].suite, "error", reason, n);
		p->seen = true;
		return false;
	}
	if (read_plan(p, s, slen) || read_point(p, s, slen, closed, &failed))
		p->seen = true;
	return !p->refused;
}

json_object *
cdviz_tap_parse(const char *data, size_t len, const CdvizReportLimits *limits,
				CdvizProblems *problems)
{
	size_t		max = limits && limits->max_bytes ? limits->max_bytes : CDVIZ_REPORT_MAX_BYTES;
	TapParse	p;
	const char *end = data + len;
	bool		ok = true;

	if (len > max)
	{
		cdviz_problems_add(problems, "$", "the report has %zu bytes, more than the limit of %zu",
						   len, max);
		return NULL;
	}
	memset(&p, 0, sizeof(p));
	cdviz_report_build_start(&p.b, "tap", limits, problems);
	p.stack[0].suite = cdviz_report_add_suite(&p.b, NULL);
	json_object_object_add(p.stack[0].suite, "name", json_object_new_string(""));
	p.stack[0].plan = -1;
	for (const char *line = data; ok && line < end;)
	{
		const char *eol = memchr(line, '\n', end - line);
		size_t		n;
		size_t		indent = 0;

		if (eol == NULL)
			eol = end;
		n = eol - line;
		if (n > 0 && line[n - 1] == '\r')
			n--;
		while (indent < n && line[indent] == ' ')
			indent++;
		if (p.in_yaml)
		{
			size_t		rest = n - indent;
			const char *r = trim(line + indent, &rest);

			if (rest == 3 && memcmp(r, "...", 3) == 0)
				yaml_apply(&p);
			else if (indent >= (size_t) p.yaml_indent || indent == n)
				yaml_append(&p, line + (indent < (size_t) p.yaml_indent ? indent : (size_t) p.yaml_indent),
							n - (indent < (size_t) p.yaml_indent ? indent : (size_t) p.yaml_indent));
			else
			{
				/* an unterminated block: it ends where the indentation does */
				yaml_apply(&p);
				ok = read_line(&p, line, n, indent);
			}
		}
		else if (p.yaml_target && indent == (size_t) p.yaml_indent &&
				 n - indent >= 3 && memcmp(line + indent, "---", 3) == 0)
		{
			p.in_yaml = true;
			p.yaml_len = 0;
		}
		else if (indent < n)
			ok = read_line(&p, line, n, indent);
		line = eol + 1;
	}
	if (p.in_yaml)
		yaml_apply(&p);
	while (p.depth > 0)
		close_level(&p);
	close_level(&p);
	free(p.subtest_name);
	free(p.yaml);
	if (!p.refused && !p.seen)
	{
		cdviz_problems_add(problems, "$", "no TAP version line, plan or test line: not a TAP report");
		p.refused = true;
	}
	if (p.refused)
	{
		json_object_put(p.b.model);
		return NULL;
	}
	if (p.version > 0)
		json_object_object_add(p.b.model, "version", json_object_new_int(p.version));
	return p.b.model;
}
