/*
 * report_model.c
 *	  Builders of the report model (see report.h) the readers share: its
 *	  suites and cases within the item budget, and its text made safe to
 *	  store (valid UTF-8, no NUL: jsonb holds neither an invalid sequence
 *	  nor \u0000).
 */
#include "core/report_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

long
cdviz_report_case_limit(long max_cases)
{
	if (max_cases <= 0)
		return CDVIZ_REPORT_DEFAULT_CASES;
	return max_cases < CDVIZ_REPORT_MAX_CASES ? max_cases : CDVIZ_REPORT_MAX_CASES;
}

void
cdviz_report_build_start(ReportBuild *b, const char *format, const CdvizReportLimits *limits,
						 CdvizProblems *problems)
{
	b->model = json_object_new_object();
	b->items = 0;
	b->max_items = cdviz_report_case_limit(limits ? limits->max_cases : 0);
	b->problems = problems;
	json_object_object_add(b->model, "format", json_object_new_string(format));
	json_object_object_add(b->model, "suites", json_object_new_array());
}

void
cdviz_report_too_many(CdvizProblems *problems, long max)
{
	cdviz_problems_add(problems, "$", "the report holds more than %ld suites and cases, "
					   "the limit (a source's max_report_cases)", max);
}

/* Count one more item; false with a problem past the budget. */
static bool
take_item(ReportBuild *b)
{
	if (b->items >= b->max_items)
	{
		if (b->items == b->max_items)
			cdviz_report_too_many(b->problems, b->max_items);
		b->items++;
		return false;
	}
	b->items++;
	return true;
}

/* A new object appended to owner[list], or NULL past the budget. */
static json_object *
add_item(ReportBuild *b, json_object *owner, const char *list)
{
	json_object *arr;
	json_object *item;

	if (!take_item(b))
		return NULL;
	json_object_object_get_ex(owner, list, &arr);
	item = json_object_new_object();
	json_object_array_add(arr, item);
	return item;
}

json_object *
cdviz_report_add_suite(ReportBuild *b, json_object *parent)
{
	json_object *suite = add_item(b, parent ? parent : b->model, "suites");

	if (suite != NULL)
	{
		json_object_object_add(suite, "cases", json_object_new_array());
		json_object_object_add(suite, "suites", json_object_new_array());
	}
	return suite;
}

json_object *
cdviz_report_add_case(ReportBuild *b, json_object *suite)
{
	return add_item(b, suite, "cases");
}

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid. */
static size_t
utf8_seq(const unsigned char *s, size_t n)
{
	size_t		need;
	unsigned int cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xC2 && s[0] <= 0xDF)
		need = 2, cp = s[0] & 0x1F;
	else if (s[0] >= 0xE0 && s[0] <= 0xEF)
		need = 3, cp = s[0] & 0x0F;
	else if (s[0] >= 0xF0 && s[0] <= 0xF4)
		need = 4, cp = s[0] & 0x07;
	else
		return 0;
	if (n < need)
		return 0;
	for (size_t i = 1; i < need; i++)
	{
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3F);
	}
	/* overlong forms, surrogates, beyond U+10FFFF */
	if ((need == 3 && cp < 0x800) || (need == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
		(cp >= 0xD800 && cp <= 0xDFFF))
		return 0;
	return need;
}

void
cdviz_report_set_text(json_object *obj, const char *key, const char *s, size_t len,
					  size_t max)
{
	const unsigned char *in = (const unsigned char *) s;
	char	   *out = malloc(len * 3 + 4);
	size_t		o = 0;

	if (out == NULL)
		return;
	for (size_t i = 0; i < len;)
	{
		size_t		n = utf8_seq(in + i, len - i);
		size_t		w = n ? n : 3;

		if (max && o + w > max)
		{
			memcpy(out + o, "...", 3);
			o += 3;
			break;
		}
		if (n == 0)
		{
			memcpy(out + o, "\xEF\xBF\xBD", 3);
			o += 3;
			i++;
			continue;
		}
		if (in[i] != '\0')
		{
			memcpy(out + o, in + i, n);
			o += n;
		}
		i += n;
	}
	json_object_object_add(obj, key, json_object_new_string_len(out, (int) o));
	free(out);
}

void
cdviz_report_set_seconds(json_object *obj, const char *key, const char *s, size_t len,
						 double scale)
{
	char		buf[64];
	size_t		o = 0;
	char	   *end;
	double		v;

	while (len > 0 && (*s == ' ' || *s == '\t'))
		s++, len--;
	while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
		len--;
	if (len == 0)
		return;
	for (size_t i = 0; i < len; i++)
	{
		if (s[i] == ',')
			continue;
		/* digits and one point only: no sign, exponent, hex or "nan" */
		if (!((s[i] >= '0' && s[i] <= '9') || s[i] == '.') || o + 1 >= sizeof(buf))
			return;
		buf[o++] = s[i];
	}
	buf[o] = '\0';
	/* a backend runs with LC_NUMERIC C: the point is the decimal point */
	v = strtod(buf, &end);
	if (o == 0 || *end != '\0' || !(v * scale <= 1e9))
		return;
	/* to the microsecond, written as such (no 0.10000000000000001) */
	o = (size_t) snprintf(buf, sizeof(buf), "%.6f", v * scale);
	while (o > 1 && buf[o - 1] == '0' && buf[o - 2] != '.')
		buf[--o] = '\0';
	json_object_object_add(obj, key, json_object_new_double_s(strtod(buf, NULL), buf));
}
