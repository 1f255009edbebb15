/*
 * fuzz_core.c
 *	  libFuzzer harness over the PostgreSQL-free core.
 *
 * Each input is parsed as JSON (json-c's tokener, and cdviz_json_parse),
 * checked as an event in all three validation modes, its problems rendered
 * as JSON and text, and the format parsers run on the raw bytes and on
 * every string of the document.  Besides memory errors (ASan, LSan, UBSan)
 * it traps on broken invariants: strict acceptance implies lenient
 * acceptance implies acceptance with validation off; a refused event has
 * at least one problem; an accepted one has the columns storage needs.
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
#include "core/problems.h"

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
