/*
 * fuzz_core.c
 *	  libFuzzer harness over the PostgreSQL-free core.
 *
 * Each input is parsed as JSON (json-c's tokener, and cdviz_json_parse),
 * checked as an event in all three validation modes, its problems rendered
 * as JSON and text, and the format parsers run on the raw bytes and on
 * every string of the document; the receivers' strict scanner runs on the
 * raw bytes.  Besides memory errors (ASan, LSan, UBSan) it traps on broken
 * invariants: what the scanner accepts json-c accepts; strict acceptance
 * implies lenient
 * acceptance implies acceptance with validation off; a refused event has
 * at least one problem; an accepted one has the columns storage needs.
 * The same bytes are read as a JUnit and as a TAP report, with a case
 * limit and a batch size taken from the input's length: a refused report
 * has a problem, the mapping accepts whatever the reader accepted under
 * the same limit, hands over full batches but the last, and every event
 * it maps passes the official schema (strict).
 *
 *	  make fuzz FUZZ_SECONDS=120
 */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "core/event.h"
#include "core/formats.h"
#include "core/json_scan.h"
#include "core/problems.h"
#include "core/report.h"

#define CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)

/* Run the format parsers on one string; their verdicts must be coherent. */
static void
fuzz_formats(const char *s, size_t len)
{
	int64_t		us;
	bool		uri = cdviz_is_uri(s, len);
	bool		ref = cdviz_is_uri_reference(s, len);

	(void) cdviz_parse_datetime(s, len, &us);
	/* every URI is a URI reference */
	CHECK(!uri || ref);
}

/* Every string value and key below v goes through the format parsers. */
static void
walk_strings(json_object *v, int depth)
{
	if (depth > 64)
		return;
	switch (json_object_get_type(v))
	{
		case json_type_string:
			fuzz_formats(json_object_get_string(v), (size_t) json_object_get_string_len(v));
			break;
		case json_type_object:
			{
				json_object_object_foreach(v, key, child)
				{
					fuzz_formats(key, strlen(key));
					walk_strings(child, depth + 1);
				}
			}
			break;
		case json_type_array:
			for (size_t i = 0; i < json_object_array_length(v); i++)
				walk_strings(json_object_array_get_idx(v, i), depth + 1);
			break;
		default:
			break;
	}
}

/* Check one mode; render the problems both ways; return the verdict. */
static bool
check_mode(json_object *ev, CdvizValidation mode)
{
	CdvizProblems problems;
	CdvizEventInfo info;
	bool		valid;
	char	   *js;
	char	   *txt;

	cdviz_problems_init(&problems);
	valid = cdviz_event_check(ev, mode, &info, &problems);
	if (valid)
	{
		/* what the lake's columns need */
		CHECK(info.context_id.ptr && info.context_id.len > 0);
		CHECK(info.context_source.ptr && info.context_source.len > 0);
		CHECK(info.type.ptr && info.subject.ptr && info.predicate.ptr &&
			  info.type_version.ptr);
		CHECK(info.judged_by != NULL);
	}
	else
		CHECK(problems.count > 0);
	js = cdviz_problems_to_json(&problems);
	txt = cdviz_problems_to_text(&problems, "; ");
	CHECK(js != NULL && txt != NULL);
	free(js);
	free(txt);
	cdviz_problems_reset(&problems);
	return valid;
}

/* Depth of the scan so far, and the deepest it went. */
typedef struct ScanDepth
{
	int			depth;
	int			deepest;
} ScanDepth;

static bool
track_depth(void *arg, CdvizJsonToken token, const char *s, size_t len)
{
	ScanDepth  *d = (ScanDepth *) arg;

	if (token == CDVIZ_JSON_OBJECT_START || token == CDVIZ_JSON_ARRAY_START)
	{
		if (++d->depth > d->deepest)
			d->deepest = d->depth;
	}
	else if (token == CDVIZ_JSON_OBJECT_END || token == CDVIZ_JSON_ARRAY_END)
		d->depth--;
	/* a string handed out lies within the text, unescaped in place */
	CHECK(len == 0 || s != NULL);
	return true;
}

/*
 * The strict scanner (the receivers' parser) on a copy of the input: what
 * it accepts, json-c accepts too (within json-c's depth of 32), and it
 * ends balanced.
 */
static void
fuzz_scan(const char *s, size_t size)
{
	char	   *copy = malloc(size + 1);
	ScanDepth	d = {0, 0};
	CdvizProblems problems;
	json_object *doc;

	if (copy == NULL)
		return;
	memcpy(copy, s, size);
	copy[size] = '\0';
	if (cdviz_json_scan(copy, size, track_depth, &d))
	{
		CHECK(d.depth == 0 && d.deepest >= 1);
		if (d.deepest < 32)
		{
			cdviz_problems_init(&problems);
			doc = cdviz_json_parse(s, size, &problems);
			CHECK(doc != NULL);
			cdviz_json_free(doc);
			cdviz_problems_reset(&problems);
		}
	}
	free(copy);
}

/* What the batches of one mapping looked like. */
typedef struct FuzzBatches
{
	size_t		batch;
	size_t		events;
	bool		short_seen;		/* a batch under the size came already */
} FuzzBatches;

/* A batch of the mapping: the size holds, every event is valid. */
static bool
fuzz_emit(json_object *events, void *arg)
{
	FuzzBatches *b = (FuzzBatches *) arg;
	size_t		n = json_object_array_length(events);
	CdvizProblems problems;

	CHECK(n > 0 && n <= b->batch && !b->short_seen);
	b->short_seen = n < b->batch;
	b->events += n;
	cdviz_problems_init(&problems);
	for (size_t i = 0; i < n; i++)
	{
		CdvizEventInfo info;

		if (!cdviz_event_check(json_object_array_get_idx(events, i),
							   CDVIZ_VALIDATION_STRICT, &info, &problems))
			__builtin_trap();
	}
	cdviz_problems_reset(&problems);
	return true;
}

/* Read the input as a report; its events must all be valid. */
static void
fuzz_report(CdvizReportFormat format, const char *s, size_t size)
{
	CdvizProblems problems;
	CdvizReportLimits limits = {0, size % 2 ? 0 : 1 + (long) (size % 50)};
	CdvizReportOptions opt = {"fuzz@sha256:00", "/fuzz", "fuzz", NULL, 1714996800000000LL,
	limits.max_cases};
	FuzzBatches batches = {1 + size % 4, 0, false};
	json_object *model;

	cdviz_problems_init(&problems);
	model = cdviz_report_parse(format, s, size, &limits, &problems);
	CHECK(model != NULL || problems.count > 0);
	if (model != NULL)
	{
		CHECK(cdviz_report_map(model, &opt, batches.batch, fuzz_emit, &batches, &problems));
		CHECK(problems.count == 0);
	}
	json_object_put(model);
	cdviz_problems_reset(&problems);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *) data;
	json_tokener *tok;
	json_object *ev;
	CdvizProblems problems;

	fuzz_formats(s, size);
	if (size > INT_MAX)
		return 0;
	fuzz_scan(s, size);
	fuzz_report(CDVIZ_REPORT_JUNIT, s, size);
	fuzz_report(CDVIZ_REPORT_TAP, s, size);

	/* json-c's own tokener, as the CLI and tests use it */
	tok = json_tokener_new();
	ev = json_tokener_parse_ex(tok, s, (int) size);
	if (json_tokener_get_error(tok) == json_tokener_success)
	{
		bool		strict = check_mode(ev, CDVIZ_VALIDATION_STRICT);
		bool		lenient = check_mode(ev, CDVIZ_VALIDATION_LENIENT);
		bool		off = check_mode(ev, CDVIZ_VALIDATION_OFF);

		CHECK(!strict || lenient);
		CHECK(!lenient || off);
		walk_strings(ev, 0);
	}
	json_object_put(ev);
	json_tokener_free(tok);

	/* the core's parser, as the extension uses it */
	cdviz_problems_init(&problems);
	ev = cdviz_json_parse(s, size, &problems);
	CHECK(ev != NULL || problems.count > 0);
	if (ev)
		(void) check_mode(ev, CDVIZ_VALIDATION_STRICT);
	cdviz_json_free(ev);
	cdviz_problems_reset(&problems);
	return 0;
}
