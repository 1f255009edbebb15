/*
 * test_core.c
 *	  Unit tests of the PostgreSQL-free core: formats, problem lists, the
 *	  schema evaluator, schema choice, validation modes, extracted columns,
 *	  and every official conformance event.  Prints TAP; exit status 1 when
 *	  a test fails.
 *
 * Run from the repository root (`make unit` does): the fixtures are read
 * at run time from test/fixtures/cdevents-spec.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "core/event.h"
#include "core/formats.h"
#include "core/problems.h"
#include "core/purl.h"
#include "core/schema.h"
#include "tap.h"

#define SPEC "test/fixtures/cdevents-spec"

/* ------------------------------------------------------------------ */
/* helpers                                                             */
/* ------------------------------------------------------------------ */

/* Is there a problem with exactly this path? */
static bool
has_path(const CdvizProblems *p, const char *path)
{
	for (int i = 0; i < p->count; i++)
		if (strcmp(p->items[i].path, path) == 0)
			return true;
	return false;
}

/* Does a CdvizStr hold exactly want (NULL: absent)? */
static bool
str_is(CdvizStr s, const char *want)
{
	if (want == NULL)
		return s.ptr == NULL;
	return s.ptr != NULL && s.len == strlen(want) && memcmp(s.ptr, want, s.len) == 0;
}

static json_object *
load_fixture(const char *rel)
{
	char		path[1024];
	json_object *doc;

	snprintf(path, sizeof(path), "%s/%s", SPEC, rel);
	doc = json_object_from_file(path);
	if (doc == NULL)
	{
		tap_diag("cannot read %s (run from the repository root)", path);
		exit(1);
	}
	return doc;
}

/* The object holding the last component of a dotted path, and that name. */
static json_object *
parent_of(json_object *root, const char *dotted, char *last, size_t lastsize)
{
	char		buf[256];
	char	   *p = buf;
	char	   *dot;
	json_object *cur = root;

	snprintf(buf, sizeof(buf), "%s", dotted);
	while ((dot = strchr(p, '.')) != NULL)
	{
		*dot = '\0';
		if (!json_object_object_get_ex(cur, p, &cur))
			return NULL;
		p = dot + 1;
	}
	snprintf(last, lastsize, "%s", p);
	return cur;
}

/* Set (or add) a field given by a dotted path; takes ownership of value. */
static void
set_path(json_object *root, const char *dotted, json_object *value)
{
	char		last[256];
	json_object *parent = parent_of(root, dotted, last, sizeof(last));

	if (parent == NULL)
	{
		tap_diag("set_path: no parent for %s", dotted);
		json_object_put(value);
		return;
	}
	json_object_object_add(parent, last, value);
}

static void
del_path(json_object *root, const char *dotted)
{
	char		last[256];
	json_object *parent = parent_of(root, dotted, last, sizeof(last));

	if (parent)
		json_object_object_del(parent, last);
}

/* Run a check with fresh problems; the caller resets them. */
static bool
check(json_object *ev, CdvizValidation mode, CdvizEventInfo *info, CdvizProblems *p)
{
	cdviz_problems_reset(p);
	return cdviz_event_check(ev, mode, info, p);
}

/* Validate text under a mode: valid?  Optionally, must a path be named? */
static bool
text_valid(const char *text, CdvizValidation mode, const char *want_path, bool *path_named)
{
	json_object *ev = json_tokener_parse(text);
	CdvizEventInfo info;
	CdvizProblems p;
	bool		valid;

	cdviz_problems_init(&p);
	valid = cdviz_event_check(ev, mode, &info, &p);
	if (path_named)
		*path_named = want_path ? has_path(&p, want_path) : false;
	cdviz_problems_reset(&p);
	json_object_put(ev);
	return valid;
}

/* ------------------------------------------------------------------ */
/* formats                                                             */
/* ------------------------------------------------------------------ */

static void
test_datetime(void)
{
	static const struct
	{
		const char *s;
		int64_t		us;
	}			good[] = {
		{"1970-01-01T00:00:00Z", 0},
		{"1970-01-01T00:00:00.000001Z", 1},
		{"1969-12-31T23:59:59.5Z", -500000},
		{"2023-03-20T14:27:05.315384Z", INT64_C(1679322425315384)},
		{"2023-03-20t14:27:05.315384z", INT64_C(1679322425315384)},
		{"2023-03-20T16:27:05.315384+02:00", INT64_C(1679322425315384)},
		{"2023-03-20T14:27:05.315384-00:00", INT64_C(1679322425315384)},
		{"2023-03-20T14:27:05.3153849999999Z", INT64_C(1679322425315384)},
		{"2023-03-20T14:27:05.3Z", INT64_C(1679322425300000)},
		{"2024-02-29T12:00:00-05:30", INT64_C(1709227800000000)},
		{"2000-02-29T00:00:00Z", INT64_C(951782400000000)},
		{"2016-12-31T23:59:60Z", INT64_C(1483228800000000)},
		{"2023-03-20T14:27:05+23:59", INT64_C(1679236085000000)},
		{"0000-01-01T00:00:00Z", INT64_C(-62167219200000000)},
		{"9999-12-31T23:59:59.999999Z", INT64_C(253402300799999999)},
	};
	static const char *const bad[] = {
		"", "now", "2023-02-29T00:00:00Z", "1900-02-29T00:00:00Z", "2024-02-30T00:00:00Z",
		"2023-04-31T00:00:00Z", "2023-13-01T00:00:00Z", "2023-00-10T00:00:00Z",
		"2023-01-00T00:00:00Z", "2023-01-32T00:00:00Z", "2023-12-31T24:00:00Z",
		"2023-12-31T23:60:00Z", "2023-12-31T23:59:61Z", "2023-03-20T14:27:05+24:00",
		"2023-03-20T14:27:05+01:60", "2023-03-20T14:27:05", "2023-03-20 14:27:05Z",
		"2023-03-20T14:27Z", "2023-03-20T14:27:05.Z", "2023-03-20T14:27:05,5Z",
		"2023-3-20T14:27:05Z", "+2023-03-20T14:27:05Z", "2023-03-20T14:27:05+0100",
		"2023-03-20T14:27:05+01", "2023-03-20T14:27:05UTC", "2023-03-20T14:27:05Z ",
		" 2023-03-20T14:27:05Z", "2023-03-20T14:27:05Z\n", "2023-03-20T14:27:05ZZ",
		"2023-03-20", "14:27:05Z", "2023-03-20T1a:27:05Z", "2023-03-20T14:27:05.-1Z",
	};
	int64_t		us;
	int			nbad = 0;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
	{
		char		desc[128];

		us = -1;
		snprintf(desc, sizeof(desc), "date-time %s parses to %lld us", good[i].s,
				 (long long) good[i].us);
		if (ok(cdviz_parse_datetime(good[i].s, strlen(good[i].s), &us), "%s", desc))
			is_int(us, good[i].us, "  ... with the exact epoch value");
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (cdviz_parse_datetime(bad[i], strlen(bad[i]), &us))
		{
			nbad++;
			tap_diag("accepted invalid date-time \"%s\"", bad[i]);
		}
	is_int(nbad, 0, "every invalid date-time is refused (leap years, ranges, offsets, "
		   "separators, trailing newline)");
	ok(cdviz_parse_datetime("2023-03-20T14:27:05Zjunk", 20, &us) &&
	   us == INT64_C(1679322425000000), "date-time parse honours the given length");
	ok(!cdviz_parse_datetime("2023-03-20T14:27:05Z\0", 21, &us),
	   "a NUL byte inside the length is refused");
	ok(!cdviz_parse_datetime("2023-03-20T14:27:05Z", 19, &us),
	   "a date-time cut short by the length is refused");
}

/*
 * How many of the n strings of v the check judges otherwise than want; each
 * is named in a diagnostic after what.
 */
static int
misjudged(const char *const *v, size_t n, bool (*check) (const char *, size_t),
		  bool want, const char *what)
{
	int			wrong = 0;

	for (size_t i = 0; i < n; i++)
		if (check(v[i], strlen(v[i])) != want)
		{
			wrong++;
			tap_diag("%s \"%s\"", what, v[i]);
		}
	return wrong;
}

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static void
test_uri(void)
{
	static const char *const uri_good[] = {
		"https://example.org/a/b?c=d#e", "urn:isbn:0451450523", "a:b", "mailto:a@b.c",
		"a+b.c-d:x", "http:", "http://", "http:///a", "http://h:/", "file:///etc/passwd",
		"http://u:p@h:8080/p", "http://[::1]:8080/x", "http://[2001:db8::ff00:42:8329]/",
		"http://[2001:db8:0:0:0:0:2:1]", "http://[::ffff:192.0.2.1]/", "http://[v1.fe]/",
		"http://[vF.a:b!$]/", "http://h/%41%7e", "http://h/!$&'()*+,;=:@",
		"http://256.256.256.256/", "pkg:oci/myapp@sha256%3A0b31", "http://h/a?b?c/d#e?f/",
		"https://www.example.com/mySubject123",
	};
	static const char *const uri_bad[] = {
		"", "/relative", "relative", "//host/x", "?q", "#f", "1a:b", "-a:b", "a_b:c",
		"http://a b/", "http://h/%4", "http://h/%zz", "http://h/a%", "http://[::1",
		"http://[1::2::3]/", "http://[12345::]/", "http://[::1%25eth0]/", "http://[v.x]/",
		"http://[v1.]/", "http://[]/", "http://[g::1]/", "http://[::1]x/", "http://h:80a/",
		"http://u@h@i/", "http://h/a#b#c", "http://h/\xc3\xa9", "http://h/a\\b",
		"http://h/<a>", "http://h/a{b}", "http://h/a|b", "http://h/a^b", "http://h/a`b",
		"https://x.example/a\n",
	};
	static const char *const ref_good[] = {
		"", "/event/source/123", "event/source", "./a:b", "a/b:c", "//host/path", "?q",
		"#f", "?q#f", "a?b/c?d#e/f?", "%41/b", "my-git.example/an-org/a-repo",
		"//[::1]/a", "//h:/p", "//u@h", "https://example.org/a/b?c=d#e", "urn:x",
		"pkg:golang/mygit.com/myorg/myapp@234fd47e07d1004f0aed9c",
	};
	static const char *const ref_bad[] = {
		"1a:b", "a:b c", "a b", "#f#g", "%4", "%zz", "//[::1", "//h:x/", "\xc3\xa9",
		"//u@h@i", "a\\b", "\"q\"", "/a\n",
	};
	int			n;

	is_int(misjudged(uri_good, NELEM(uri_good), cdviz_is_uri, true, "refused valid URI"), 0,
		   "valid URIs are accepted (IPv6 and IPvFuture literals, pct-encoding, "
		   "empty port, empty authority)");
	is_int(misjudged(uri_bad, NELEM(uri_bad), cdviz_is_uri, false, "accepted invalid URI"), 0,
		   "invalid URIs are refused (no scheme, bad literals, bad "
		   "pct-encoding, non-digit port, forbidden characters)");
	n = misjudged(ref_good, NELEM(ref_good), cdviz_is_uri_reference, true,
				  "refused valid URI reference");
	n += misjudged(uri_good, NELEM(uri_good), cdviz_is_uri_reference, true,
				   "refused URI as URI reference");
	is_int(n, 0,
		   "valid URI references are accepted (relative refs, ':' past the "
		   "first segment, every URI)");
	is_int(misjudged(ref_bad, NELEM(ref_bad), cdviz_is_uri_reference, false,
					 "accepted invalid URI reference"), 0,
		   "invalid URI references are refused (':' in a relative first "
		   "segment, spaces, two fragments)");
	ok(cdviz_is_uri("http://a/ b", 8), "URI check honours the given length");
	ok(!cdviz_is_uri("http://a\0b", 10), "a NUL byte inside a URI is refused");
	ok(!cdviz_is_uri_reference("a\0", 2), "a NUL byte inside a URI reference is refused");
}

/* ------------------------------------------------------------------ */
/* problem lists                                                       */
/* ------------------------------------------------------------------ */

static void
test_problems(void)
{
	CdvizProblems p;
	CdvizProblems q;
	char	   *js;
	char	   *txt;
	json_object *arr;

	cdviz_problems_init(&p);
	is_int(p.count, 0, "a new problem list is empty");
	cdviz_problems_add(&p, "", "root %d", 1);
	cdviz_problems_add(&p, NULL, "null path");
	cdviz_problems_add(&p, "context.id", "must not be empty");
	is_str(p.items[0].path, "$", "an empty path is rendered as $");
	is_str(p.items[1].path, "$", "a NULL path is rendered as $");
	is_str(p.items[0].message, "root 1", "messages are formatted printf-style");

	txt = cdviz_problems_to_text(&p, "; ");
	is_str(txt, "$: root 1; $: null path; context.id: must not be empty",
		   "text rendering joins path: message with the separator");
	free(txt);
	cdviz_problems_reset(&p);
	is_int(p.count, 0, "reset empties the list");
	txt = cdviz_problems_to_text(&p, "; ");
	is_str(txt, "", "an empty list renders as empty text");
	free(txt);
	js = cdviz_problems_to_json(&p);
	is_str(js, "[]", "an empty list renders as []");
	free(js);

	/* JSON escaping: quotes, backslashes, control characters, UTF-8 */
	cdviz_problems_add(&p, "a\"b\\c", "line1\nline2 \xc3\xa9 /");
	js = cdviz_problems_to_json(&p);
	arr = json_tokener_parse(js);
	ok(arr && json_object_is_type(arr, json_type_array) &&
	   json_object_array_length(arr) == 1, "JSON rendering is a JSON array");
	if (arr && json_object_array_length(arr) == 1)
	{
		json_object *o = json_object_array_get_idx(arr, 0);
		json_object *v;

		ok(json_object_object_get_ex(o, "path", &v) &&
		   strcmp(json_object_get_string(v), "a\"b\\c") == 0,
		   "the path survives JSON escaping");
		ok(json_object_object_get_ex(o, "message", &v) &&
		   strcmp(json_object_get_string(v), "line1\nline2 \xc3\xa9 /") == 0,
		   "the message survives JSON escaping");
	}
	ok(strstr(js, "\\/") == NULL, "slashes are not escaped");
	json_object_put(arr);
	free(js);
	cdviz_problems_reset(&p);

	/* the cap */
	for (int i = 0; i < CDVIZ_MAX_PROBLEMS + 10; i++)
		cdviz_problems_add(&p, "x", "problem %d", i);
	is_int(p.count, CDVIZ_MAX_PROBLEMS, "the list stops at CDVIZ_MAX_PROBLEMS");
	ok(p.truncated, "and says it was truncated");
	js = cdviz_problems_to_json(&p);
	arr = json_tokener_parse(js);
	is_int(arr ? (long long) json_object_array_length(arr) : -1, CDVIZ_MAX_PROBLEMS + 1,
		   "a truncated list renders one more entry");
	if (arr)
	{
		json_object *last = json_object_array_get_idx(arr, CDVIZ_MAX_PROBLEMS);
		json_object *v;

		ok(json_object_object_get_ex(last, "message", &v) &&
		   strstr(json_object_get_string(v), "more problems") != NULL,
		   "which says more problems were found");
	}
	json_object_put(arr);
	free(js);

	/* move, including overflow */
	cdviz_problems_init(&q);
	cdviz_problems_add(&q, "y", "moved");
	cdviz_problems_reset(&p);
	cdviz_problems_add(&p, "x", "first");
	cdviz_problems_move(&p, &q);
	ok(p.count == 2 && strcmp(p.items[1].message, "moved") == 0 && q.count == 0,
	   "move appends and empties the source");
	for (int i = 0; i < CDVIZ_MAX_PROBLEMS; i++)
		cdviz_problems_add(&q, "z", "overflow %d", i);
	cdviz_problems_move(&p, &q);
	ok(p.count == CDVIZ_MAX_PROBLEMS && p.truncated && q.count == 0 && !q.truncated,
	   "move past the cap truncates the destination and frees the rest");
	cdviz_problems_reset(&p);
	ok(!p.truncated && p.count == 0, "reset clears truncation");

	/* a message longer than the format buffer is cut, not overrun */
	{
		char		big[3000];

		memset(big, 'm', sizeof(big) - 1);
		big[sizeof(big) - 1] = '\0';
		cdviz_problems_add(&p, "x", "%s", big);
		ok(p.count == 1 && strlen(p.items[0].message) < sizeof(big),
		   "an overlong message is cut");
		cdviz_problems_reset(&p);
	}
}

/* ------------------------------------------------------------------ */
/* the schema evaluator                                                */
/* ------------------------------------------------------------------ */

/* Validate text against a compiled schema at a level; optionally a path. */
static bool
schema_valid(const CdvizSchema *s, const char *text, CdvizSchemaLevel level,
			 const char *path)
{
	json_object *v = json_tokener_parse(text);
	CdvizProblems p;
	bool		valid;

	cdviz_problems_init(&p);
	valid = cdviz_schema_validate(s, v, level, &p);
	if (!valid && path && !has_path(&p, path))
	{
		char	   *t = cdviz_problems_to_text(&p, "; ");

		tap_diag("expected a problem at %s, got: %s", path, t);
		free(t);
		valid = true;			/* make the caller's "invalid" test fail */
	}
	cdviz_problems_reset(&p);
	json_object_put(v);
	return valid;
}

static void
test_schema(void)
{
	const char *err = NULL;
	const CdvizSchema *s;

	ok(cdviz_schemas_load(&err) && err == NULL, "the embedded schemas load");
	is_int(cdviz_event_schema_count(), 39 + 45 + 45 + 2,
		   "131 event schemas: 39 (0.3.0) + 45 (0.4.1) + 45 (0.5.1) + 2 custom");

	s = cdviz_schema_compile_text(
		"{\"type\":\"object\",\"required\":[\"a\"],\"additionalProperties\":false,"
		"\"properties\":{\"a\":{\"type\":\"string\",\"minLength\":2},"
		"\"b\":{\"type\":\"array\",\"items\":{\"type\":\"string\",\"format\":\"date-time\"}},"
		"\"n\":{\"type\":\"integer\"},"
		"\"p\":{\"type\":\"string\",\"pattern\":\"^[a-z]+-[a-z]+$\"}}}", NULL, &err);
	ok(s != NULL, "a schema compiles from text");
	if (s)
	{
		ok(schema_valid(s, "{\"a\":\"xy\"}", CDVIZ_SCHEMA_STRICT, NULL), "schema: valid object");
		ok(!schema_valid(s, "{}", CDVIZ_SCHEMA_STRICT, "a"), "schema: required names the field");
		ok(!schema_valid(s, "{\"a\":\"x\"}", CDVIZ_SCHEMA_STRICT, "a"), "schema: minLength");
		ok(schema_valid(s, "{\"a\":\"\xc3\xa9\xc3\xa9\"}", CDVIZ_SCHEMA_STRICT, NULL) &&
		   !schema_valid(s, "{\"a\":\"\xc3\xa9\"}", CDVIZ_SCHEMA_STRICT, "a"),
		   "schema: minLength counts code points, not bytes");
		ok(!schema_valid(s, "{\"a\":\"xy\",\"b\":[\"2023-01-01T00:00:00Z\",\"bad\"]}",
						 CDVIZ_SCHEMA_STRICT, "b[1]"), "schema: items, with the index in the path");
		ok(!schema_valid(s, "{\"a\":\"xy\",\"c\":1}", CDVIZ_SCHEMA_STRICT, "c"),
		   "schema: additionalProperties false names the field");
		ok(schema_valid(s, "{\"a\":\"xy\",\"c\":1}", CDVIZ_SCHEMA_LENIENT, NULL),
		   "schema: lenient allows unknown fields");
		ok(!schema_valid(s, "{\"a\":5}", CDVIZ_SCHEMA_LENIENT, "a"),
		   "schema: lenient still checks types");
		ok(schema_valid(s, "{\"a\":\"x\"}", CDVIZ_SCHEMA_LENIENT, NULL),
		   "schema: lenient does not check string constraints");
		ok(schema_valid(s, "{\"a\":\"xy\",\"n\":1.0}", CDVIZ_SCHEMA_STRICT, NULL) &&
		   !schema_valid(s, "{\"a\":\"xy\",\"n\":1.5}", CDVIZ_SCHEMA_STRICT, "n"),
		   "schema: 1.0 is an integer, 1.5 is not");
		ok(schema_valid(s, "{\"a\":\"xy\",\"p\":\"ab-cd\"}", CDVIZ_SCHEMA_STRICT, NULL) &&
		   !schema_valid(s, "{\"a\":\"xy\",\"p\":\"ab-cd\\n\"}", CDVIZ_SCHEMA_STRICT, "p") &&
		   !schema_valid(s, "{\"a\":\"xy\",\"p\":\"ab-c\\u0000d\"}", CDVIZ_SCHEMA_STRICT, "p"),
		   "schema: pattern ($ is the end of the string, as in ECMA-262; no NUL)");
	}

	s = cdviz_schema_compile_text("{\"oneOf\":[{\"type\":\"string\"},"
								  "{\"type\":\"string\",\"minLength\":1}]}", NULL, &err);
	ok(s && !schema_valid(s, "\"x\"", CDVIZ_SCHEMA_STRICT, "$") &&
	   schema_valid(s, "\"\"", CDVIZ_SCHEMA_STRICT, NULL) &&
	   !schema_valid(s, "1", CDVIZ_SCHEMA_STRICT, "$"),
	   "schema: oneOf wants exactly one branch");
	s = cdviz_schema_compile_text("{\"anyOf\":[{\"enum\":[\"a\"]},{\"enum\":[\"b\"]}]}", NULL, &err);
	ok(s && schema_valid(s, "\"b\"", CDVIZ_SCHEMA_STRICT, NULL) &&
	   !schema_valid(s, "\"c\"", CDVIZ_SCHEMA_STRICT, "$"), "schema: anyOf and enum");
	s = cdviz_schema_compile_text("{\"$ref\":\"links/embeddedlinksarray\"}",
								  "https://cdevents.dev/0.5.1/schema/test", &err);
	ok(s != NULL, "schema: $ref resolves against the given base $id");
	if (s)
	{
		ok(schema_valid(s, "[{\"linkType\":\"END\"},{\"linkType\":\"RELATION\","
						"\"linkKind\":\"TRIGGER\",\"target\":{}}]", CDVIZ_SCHEMA_STRICT, NULL),
		   "schema: links END and RELATION");
		ok(!schema_valid(s, "[{\"linkType\":\"END\"},{\"linkType\":\"PATH\"}]",
						 CDVIZ_SCHEMA_STRICT, "[1].from"),
		   "schema: a PATH link without from names [1].from (closest branch)");
	}
	err = NULL;
	s = cdviz_schema_compile_text("{\"$ref\":\"nowhere\"}", "https://x.example/a", &err);
	ok(s == NULL && err != NULL, "schema: an unresolvable $ref is an error");
	err = NULL;
	s = cdviz_schema_compile_text("{not json", NULL, &err);
	ok(s == NULL && err != NULL, "schema: text that is not JSON is an error");
	err = NULL;
	s = cdviz_schema_compile_text("{\"pattern\":\"(\"}", NULL, &err);
	ok(s == NULL && err != NULL, "schema: a bad pattern is an error");
}

/* ------------------------------------------------------------------ */
/* events                                                              */
/* ------------------------------------------------------------------ */

static void
test_schema_choice(void)
{
	CdvizEventInfo info;
	CdvizProblems p;
	json_object *ev;

	cdviz_problems_init(&p);

	ev = load_fixture("v0.3.0/examples/service_deployed.json");
	ok(check(ev, CDVIZ_VALIDATION_STRICT, &info, &p) &&
	   strcmp(info.judged_by, "CDEvents 0.3.0 event schema") == 0,
	   "0.3.0 event judged by the 0.3.0 schema");
	set_path(ev, "context.type", json_object_new_string("dev.cdevents.service.deployed.0.9.9"));
	ok(check(ev, CDVIZ_VALIDATION_STRICT, &info, &p) &&
	   strcmp(info.judged_by, "CDEvents 0.3.0 generic rules") == 0,
	   "unknown version of a known 0.3 type: 0.3.0 generic rules, strict");
	json_object_put(ev);

	ev = load_fixture("v0.4.1/conformance/pipelinerun_finished.json");
	ok(check(ev, CDVIZ_VALIDATION_STRICT, &info, &p) &&
	   strcmp(info.judged_by, "CDEvents 0.4.1 event schema") == 0,
	   "0.4.1 event judged by the 0.4.1 schema");
	set_path(ev, "context.type", json_object_new_string("dev.cdevents.pipelinerun.finished.0.9.0"));
	ok(check(ev, CDVIZ_VALIDATION_STRICT, &info, &p) &&
	   strcmp(info.judged_by, "CDEvents 0.4.1 generic rules") == 0,
	   "unknown version of a known 0.4 type: 0.4.1 generic rules (context.version)");
	json_object_put(ev);

	ev = load_fixture("v0.5.1/conformance/pipelinerun_finished.json");
	ok(check(ev, CDVIZ_VALIDATION_STRICT, &info, &p) &&
	   strcmp(info.judged_by, "CDEvents 0.5.1 event schema") == 0,
	   "0.5.1 event judged by the 0.5.1 schema");
	set_path(ev, "context.type", json_object_new_string("dev.cdevents.pipelinerun.finished.0.9.0"));
	ok(check(ev, CDVIZ_VALIDATION_STRICT, &info, &p) &&
	   strcmp(info.judged_by, "CDEvents 0.5.1 generic rules") == 0,
	   "unknown version of a known 0.5 type: 0.5.1 generic rules (context.specversion)");
	set_path(ev, "context.somethingNew", json_object_new_string("x"));
	set_path(ev, "subject.content.outcome", json_object_new_string("anything"));
	ok(check(ev, CDVIZ_VALIDATION_STRICT, &info, &p),
	   "generic rules allow unknown fields and do not know the content");
	set_path(ev, "subject.id", json_object_new_string(""));
	ok(!check(ev, CDVIZ_VALIDATION_STRICT, &info, &p) && has_path(&p, "subject.id"),
	   "generic rules still want a non-empty subject.id");
	set_path(ev, "subject.id", json_object_new_string("s"));
	set_path(ev, "context.source", json_object_new_string("a b"));
	ok(!check(ev, CDVIZ_VALIDATION_STRICT, &info, &p) && has_path(&p, "context.source"),
	   "generic rules still check context.source is a URI reference");
	set_path(ev, "context.source", json_object_new_string("/s"));
	del_path(ev, "context.specversion");
	ok(!check(ev, CDVIZ_VALIDATION_STRICT, &info, &p) && has_path(&p, "context.specversion"),
	   "generic rules want the version field");

	/* unknown subject/predicate */
	set_path(ev, "context.specversion", json_object_new_string("0.5.1"));
	set_path(ev, "context.type", json_object_new_string("dev.cdevents.spaceship.launched.0.1.0"));
	ok(!check(ev, CDVIZ_VALIDATION_STRICT, &info, &p) && has_path(&p, "context.type"),
	   "strict refuses an unknown dev.cdevents subject and predicate, naming context.type");
	ok(check(ev, CDVIZ_VALIDATION_LENIENT, &info, &p) &&
	   strcmp(info.judged_by, "CDEvents 0.5.1 generic rules") == 0,
	   "lenient judges it by the generic rules");
	ok(check(ev, CDVIZ_VALIDATION_OFF, &info, &p), "off accepts it");
	set_path(ev, "context.type", json_object_new_string("com.example.thing.happened"));
	ok(!check(ev, CDVIZ_VALIDATION_OFF, &info, &p) && has_path(&p, "context.type"),
	   "a type that is not a CDEvents type is refused even with validation off");
	set_path(ev, "context.type", json_object_new_string("dev.cdevents.x"));
	ok(!check(ev, CDVIZ_VALIDATION_OFF, &info, &p) && has_path(&p, "context.type"),
	   "a type without predicate and version is refused");
	json_object_put(ev);

	/* custom events */
	ev = load_fixture("v0.4.1/custom/conformance.json");
	ok(check(ev, CDVIZ_VALIDATION_STRICT, &info, &p) &&
	   strcmp(info.judged_by, "CDEvents 0.4.1 custom event schema") == 0 && info.custom,
	   "0.4.1 custom event judged by the 0.4.1 custom schema");
	del_path(ev, "context.version");
	ok(!check(ev, CDVIZ_VALIDATION_STRICT, &info, &p) && has_path(&p, "context.version") &&
	   !has_path(&p, "context.specversion"),
	   "a 0.4.1 custom event without its version field is told context.version is missing");
	json_object_put(ev);
	ev = load_fixture("v0.5.1/custom/conformance.json");
	del_path(ev, "context.specversion");
	ok(!check(ev, CDVIZ_VALIDATION_STRICT, &info, &p) && has_path(&p, "context.specversion") &&
	   !has_path(&p, "context.version"),
	   "a 0.5.1 custom event without its version field is told context.specversion is missing");
	set_path(ev, "context.specversion", json_object_new_string("0.5.1"));
	ok(check(ev, CDVIZ_VALIDATION_STRICT, &info, &p) &&
	   strcmp(info.judged_by, "CDEvents 0.5.1 custom event schema") == 0 && info.custom,
	   "0.5.1 custom event judged by the 0.5.1 custom schema");
	set_path(ev, "context.type", json_object_new_string("dev.cdeventsx.mytool-resource.created.0.10.0"));
	ok(!check(ev, CDVIZ_VALIDATION_STRICT, &info, &p) && has_path(&p, "context.type"),
	   "a custom type version of two digits fails the official custom pattern (strict)");
	ok(check(ev, CDVIZ_VALIDATION_LENIENT, &info, &p),
	   "lenient does not check the pattern");
	set_path(ev, "context.type", json_object_new_string("dev.cdeventsx.mytool-resource.created.0.1.0"));
	del_path(ev, "subject.content");
	ok(!check(ev, CDVIZ_VALIDATION_STRICT, &info, &p) && has_path(&p, "subject.content"),
	   "a custom event needs subject.content");
	json_object_put(ev);
	cdviz_problems_reset(&p);
}

static void
test_modes(void)
{
	CdvizEventInfo info;
	CdvizProblems p;
	json_object *ev;
	static const char *const modes[] = {"off", "lenient", "strict"};

	cdviz_problems_init(&p);
	ev = load_fixture("v0.5.1/conformance/pipelinerun_finished.json");

#define EXPECT(desc, off_ok, lenient_ok, strict_ok, path) \
	do { \
		bool	r0 = check(ev, CDVIZ_VALIDATION_OFF, &info, &p); \
		bool	n0 = (path) == NULL || r0 || has_path(&p, (path)); \
		bool	r1 = check(ev, CDVIZ_VALIDATION_LENIENT, &info, &p); \
		bool	n1 = (path) == NULL || r1 || has_path(&p, (path)); \
		bool	r2 = check(ev, CDVIZ_VALIDATION_STRICT, &info, &p); \
		bool	n2 = (path) == NULL || r2 || has_path(&p, (path)); \
		ok(r0 == (off_ok) && r1 == (lenient_ok) && r2 == (strict_ok) && n0 && n1 && n2, \
		   "%s: off %s, lenient %s, strict %s", desc, (off_ok) ? "accepts" : "refuses", \
		   (lenient_ok) ? "accepts" : "refuses", (strict_ok) ? "accepts" : "refuses"); \
	} while (0)

	EXPECT("conformance event", true, true, true, NULL);

	set_path(ev, "context.xExtra", json_object_new_string("x"));
	EXPECT("unknown context field", true, true, false, "context.xExtra");
	del_path(ev, "context.xExtra");

	set_path(ev, "subject.content.xExtra", json_object_new_int(1));
	EXPECT("unknown content field", true, true, false, "subject.content.xExtra");
	del_path(ev, "subject.content.xExtra");

	set_path(ev, "subject.content.outcome", json_object_new_string("maybe"));
	EXPECT("outcome outside the enum", true, true, false, "subject.content.outcome");
	set_path(ev, "subject.content.outcome", json_object_new_string("failure"));

	set_path(ev, "subject.content.pipelineName", json_object_new_int(5));
	EXPECT("content field of the wrong type", true, false, false, "subject.content.pipelineName");
	set_path(ev, "subject.content.pipelineName", json_object_new_string("p"));

	set_path(ev, "context.source", json_object_new_string("a b"));
	EXPECT("source that is not a URI reference", true, true, false, "context.source");
	set_path(ev, "context.source", json_object_new_string("/event/source/123"));

	set_path(ev, "subject.id", json_object_new_string(""));
	EXPECT("empty subject.id", true, true, false, "subject.id");
	set_path(ev, "subject.id", json_object_new_string("mySubject123"));

	set_path(ev, "context.id", json_object_new_string(""));
	EXPECT("empty context.id", false, false, false, "context.id");
	del_path(ev, "context.id");
	EXPECT("missing context.id", false, false, false, "context.id");
	set_path(ev, "context.id", json_object_new_int(7));
	EXPECT("context.id of the wrong type", false, false, false, "context.id");
	set_path(ev, "context.id", json_object_new_string("271069a8"));

	set_path(ev, "context.source", json_object_new_string(""));
	EXPECT("empty context.source", false, false, false, "context.source");
	set_path(ev, "context.source", json_object_new_string("/event/source/123"));

	set_path(ev, "context.timestamp", json_object_new_string("2023-02-29T00:00:00Z"));
	EXPECT("February 29th of 2023", false, false, false, "context.timestamp");
	set_path(ev, "context.timestamp", json_object_new_string("2023-03-20T14:27:05"));
	EXPECT("timestamp without offset", false, false, false, "context.timestamp");
	del_path(ev, "context.timestamp");
	EXPECT("missing timestamp", false, false, false, "context.timestamp");
	set_path(ev, "context.timestamp", json_object_new_string("2023-03-20T14:27:05.315384Z"));

	del_path(ev, "context.type");
	EXPECT("missing type", false, false, false, "context.type");
	set_path(ev, "context.type", json_object_new_int(1));
	EXPECT("type of the wrong type", false, false, false, "context.type");
	set_path(ev, "context.type", json_object_new_string("dev.cdevents.pipelinerun.finished.0.3.0"));

	/* links: lenient still tells the branches apart by linkType */
	{
		json_object *links = json_tokener_parse(
												"[{\"linkType\": \"RELATION\", \"linkKind\": 42, \"target\": {}}]");

		set_path(ev, "context.links", links);
		EXPECT("RELATION link with a linkKind of the wrong type", true, false, false,
			   "context.links[0].linkKind");
		set_path(ev, "context.links", json_tokener_parse(
														 "[{\"linkType\": \"RELATION\", \"linkKind\": \"TRIGGER\", \"target\": {}, \"xExtra\": 1}]"));
		EXPECT("RELATION link with an unknown field", true, true, false, "context.links[0].xExtra");
		del_path(ev, "context.links");
	}

	del_path(ev, "subject.content");
	EXPECT("missing subject.content", true, false, false, "subject.content");
	del_path(ev, "subject");
	EXPECT("missing subject", true, false, false, "subject");
	ok(check(ev, CDVIZ_VALIDATION_OFF, &info, &p) && info.subject_id.ptr == NULL,
	   "with validation off a missing subject leaves subject_id absent");
	json_object_put(ev);

	ev = json_tokener_parse("[1,2]");
	EXPECT("an array", false, false, false, "$");
	json_object_put(ev);
	ev = json_tokener_parse("{\"context\":[]}");
	EXPECT("a context that is an array", false, false, false, "context");
	json_object_put(ev);
	ev = NULL;					/* JSON null */
	EXPECT("JSON null", false, false, false, "$");

	for (int i = 0; i < 3; i++)
	{
		CdvizValidation m;

		ok(cdviz_validation_from_name(modes[i], &m) && (int) m == (int) CDVIZ_VALIDATION_OFF + i,
		   "mode name %s", modes[i]);
	}
	{
		CdvizValidation m;

		ok(!cdviz_validation_from_name("STRICT", &m) && !cdviz_validation_from_name("", &m),
		   "unknown mode names are refused");
	}
	cdviz_problems_reset(&p);
#undef EXPECT
}

static void
test_columns(void)
{
	CdvizEventInfo info;
	CdvizProblems p;
	json_object *ev;

	cdviz_problems_init(&p);
	ev = load_fixture("v0.5.1/conformance/pipelinerun_finished.json");
	ok(check(ev, CDVIZ_VALIDATION_STRICT, &info, &p), "0.5.1 pipelinerun finished is valid");
	ok(str_is(info.context_id, "271069a8-fc18-44f1-b38f-9d70a1695819"), "columns: context_id");
	ok(str_is(info.context_source, "/event/source/123"), "columns: context_source");
	ok(str_is(info.type, "dev.cdevents.pipelinerun.finished.0.3.0"), "columns: type");
	ok(str_is(info.subject, "pipelinerun"), "columns: subject");
	ok(str_is(info.predicate, "finished"), "columns: predicate");
	ok(str_is(info.type_version, "0.3.0"), "columns: type version");
	ok(str_is(info.spec_version, "0.5.1"), "columns: spec_version from context.specversion");
	ok(str_is(info.chain_id, "4c8cb7dd-3448-41de-8768-eec704e2829b"), "columns: chain_id");
	ok(str_is(info.subject_id, "mySubject123"), "columns: subject_id");
	is_int(info.timestamp_us, INT64_C(1679322425315384), "columns: timestamp in microseconds");
	ok(!info.custom, "columns: not custom");
	json_object_put(ev);

	ev = load_fixture("v0.4.1/conformance/pipelinerun_finished.json");
	ok(check(ev, CDVIZ_VALIDATION_STRICT, &info, &p) && str_is(info.spec_version, "0.4.1"),
	   "columns: spec_version from context.version (0.4)");
	json_object_put(ev);

	ev = load_fixture("v0.3.0/examples/service_deployed.json");
	ok(check(ev, CDVIZ_VALIDATION_STRICT, &info, &p) && str_is(info.spec_version, "0.3.0") &&
	   str_is(info.chain_id, NULL) && str_is(info.type_version, "0.1.1"),
	   "columns: 0.3.0 has context.version and no chain_id");
	set_path(ev, "context.specversion", json_object_new_string("9.9.9"));
	ok(check(ev, CDVIZ_VALIDATION_OFF, &info, &p) && str_is(info.spec_version, "9.9.9"),
	   "columns: specversion wins over version when both are there");
	set_path(ev, "context.timestamp", json_object_new_string("2023-03-20T16:27:05.315384+02:00"));
	ok(check(ev, CDVIZ_VALIDATION_OFF, &info, &p) &&
	   info.timestamp_us == INT64_C(1679322425315384),
	   "columns: the timestamp is converted to UTC");
	json_object_put(ev);

	ev = load_fixture("v0.5.1/custom/conformance.json");
	ok(check(ev, CDVIZ_VALIDATION_STRICT, &info, &p), "custom event is valid");
	ok(info.custom && str_is(info.subject, "mytool-resource") && str_is(info.predicate, "created") &&
	   str_is(info.type_version, "0.1.0") &&
	   str_is(info.subject_id, "pkg:resource/name@234fd47e07d1004f0aed9c"),
	   "columns: custom subject is <tool>-<subject>, predicate, version, subject_id");
	json_object_put(ev);
	cdviz_problems_reset(&p);
}

static void
test_nul(void)
{
	bool		named;

	ok(!text_valid("{\"context\":{\"specversion\":\"0.5.1\",\"id\":\"a\\u0000b\",\"source\":\"/s\","
				   "\"type\":\"dev.cdevents.spaceship.launched.0.1.0\",\"timestamp\":\"2023-03-20T14:27:05Z\"},"
				   "\"subject\":{\"id\":\"x\"}}", CDVIZ_VALIDATION_OFF, "context.id", &named) && named,
	   "a NUL inside context.id is refused with validation off");
	{
		json_object *ev = load_fixture("v0.5.1/conformance/pipelinerun_finished.json");
		json_object *arr = json_object_new_array();
		json_object *cd = json_object_new_object();
		CdvizEventInfo info;
		CdvizProblems p;

		cdviz_problems_init(&p);
		set_path(ev, "subject.content.errors", json_object_new_string_len("bad\0news", 8));
		ok(!check(ev, CDVIZ_VALIDATION_STRICT, &info, &p) && has_path(&p, "subject.content.errors"),
		   "a NUL inside subject.content.errors is refused, naming it (strict)");
		ok(!check(ev, CDVIZ_VALIDATION_OFF, &info, &p) && has_path(&p, "subject.content.errors"),
		   "... and with validation off");
		set_path(ev, "subject.content.errors", json_object_new_string("fine"));
		json_object_array_add(arr, json_object_new_string("x"));
		json_object_array_add(arr, json_object_new_string_len("y\0", 2));
		json_object_object_add(cd, "list", arr);
		set_path(ev, "customData", cd);
		ok(!check(ev, CDVIZ_VALIDATION_LENIENT, &info, &p) && has_path(&p, "customData.list[1]"),
		   "a NUL inside customData is refused, with the array index in the path");
		set_path(ev, "customData", json_object_new_string("\\u0000 is fine escaped"));
		ok(check(ev, CDVIZ_VALIDATION_STRICT, &info, &p), "an escaped \\u0000 text is fine");
		cdviz_problems_reset(&p);
		json_object_put(ev);
	}
}

/* Check every *.json of a fixture directory in all three modes. */
static int
check_dir(const char *rel, const char *release, bool custom)
{
	char		dirpath[512];
	DIR		   *d;
	struct dirent *de;
	int			n = 0;
	char	  **names = NULL;
	int			nnames = 0;

	snprintf(dirpath, sizeof(dirpath), "%s/%s", SPEC, rel);
	d = opendir(dirpath);
	if (d == NULL)
	{
		ok(false, "read %s", dirpath);
		return 0;
	}
	while ((de = readdir(d)) != NULL)
	{
		size_t		len = strlen(de->d_name);

		if (len < 6 || strcmp(de->d_name + len - 5, ".json") != 0)
			continue;
		if (custom && strcmp(de->d_name, "conformance.json") != 0)
			continue;
		names = realloc(names, sizeof(char *) * (nnames + 1));
		names[nnames++] = strdup(de->d_name);
	}
	closedir(d);
	/* in name order, for stable output */
	for (int i = 1; i < nnames; i++)
		for (int j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--)
		{
			char	   *t = names[j];

			names[j] = names[j - 1];
			names[j - 1] = t;
		}
	for (int i = 0; i < nnames; i++)
	{
		char		file[600];
		json_object *ev;
		CdvizEventInfo info;
		CdvizProblems p;
		bool		s,
					l,
					o;
		bool		right_schema;

		snprintf(file, sizeof(file), "%s/%s", rel, names[i]);
		ev = load_fixture(file);
		cdviz_problems_init(&p);
		s = cdviz_event_check(ev, CDVIZ_VALIDATION_STRICT, &info, &p);
		right_schema = s && strstr(info.judged_by, release) != NULL &&
			strstr(info.judged_by, "generic") == NULL;
		if (!s)
		{
			char	   *t = cdviz_problems_to_text(&p, "; ");

			tap_diag("%s: %s", file, t);
			free(t);
		}
		cdviz_problems_reset(&p);
		l = cdviz_event_check(ev, CDVIZ_VALIDATION_LENIENT, &info, &p);
		cdviz_problems_reset(&p);
		o = cdviz_event_check(ev, CDVIZ_VALIDATION_OFF, &info, &p);
		cdviz_problems_reset(&p);
		ok(s && l && o && right_schema, "%s accepted (strict by the %s schema, lenient, off)",
		   file, release);
		json_object_put(ev);
		free(names[i]);
		n++;
	}
	free(names);
	return n;
}

static void
test_conformance(void)
{
	int			n041 = check_dir("v0.4.1/conformance", "0.4.1", false);
	int			n051 = check_dir("v0.5.1/conformance", "0.5.1", false);
	int			n030 = check_dir("v0.3.0/examples", "0.3.0", false);
	int			ncustom = check_dir("v0.4.1/custom", "0.4.1", true) +
		check_dir("v0.5.1/custom", "0.5.1", true);

	is_int(n041 + n051, 90, "all 90 official conformance events (0.4.1 and 0.5.1) were checked");
	is_int(n030, 39, "all 39 0.3.0 examples were checked");
	is_int(ncustom, 2, "both custom conformance events were checked");
}

/* Package URLs: the components, and what is not a purl. */
static void
test_purl(void)
{
	struct
	{
		const char *purl;
		const char *type,
				   *ns,
				   *name,
				   *version,
				   *qualifiers,
				   *subpath;	/* "-" for absent */
	}			cases[] = {
		{"pkg:oci/myapp@sha256%3A0b31?repository_url=ghcr.io&arch=x#sub/p/", "oci", "-", "myapp",
		"sha256%3A0b31", "repository_url=ghcr.io&arch=x", "sub/p"},
		{"pkg:npm/%40angular/core@12.3.1", "npm", "%40angular", "core", "12.3.1", "-", "-"},
		{"pkg:maven/org.apache/io", "maven", "org.apache", "io", "-", "-", "-"},
		{"pkg://git/github.com/org/repo@v1.0", "git", "github.com/org", "repo", "v1.0", "-", "-"},
		{"pkg:a/b/c@d/e", "a", "b/c@d", "e", "-", "-", "-"},
		{"pkg:x/y@", "x", "-", "y", "", "-", "-"},
		{"pkg:x//y", "x", "-", "y", "-", "-", "-"},
		{"pkg:x///y", "x", "/", "y", "-", "-", "-"},
		{"pkg:x/y?a=1?b=2#s#t", "x", "-", "y", "-", "a=1", "s"},
	};
	const char *not_purls[] = {"pkg:", "pkg:oci", "pkg:/oci", "pkg:oci/", "pkg:oci/@1",
	"docker.io/nginx:1", "PKG:oci/x"};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		CdvizPurl	p;
		CdvizStr *got[6] = {&p.type, &p.namespace, &p.name, &p.version, &p.qualifiers, &p.subpath};
		const char *want[6] = {cases[i].type, cases[i].ns, cases[i].name, cases[i].version,
		cases[i].qualifiers, cases[i].subpath};
		bool		ok = cdviz_purl_split(cases[i].purl, strlen(cases[i].purl), &p);

		ok(ok, "purl %s splits", cases[i].purl);
		for (int c = 0; ok && c < 6; c++)
		{
			char		buf[256] = "-";

			if (got[c]->ptr)
				snprintf(buf, sizeof(buf), "%.*s", (int) got[c]->len, got[c]->ptr);
			is_str(buf, want[c], cases[i].purl);
		}
	}
	for (size_t i = 0; i < sizeof(not_purls) / sizeof(not_purls[0]); i++)
	{
		CdvizPurl	p;

		ok(!cdviz_purl_split(not_purls[i], strlen(not_purls[i]), &p), "not a purl: %s", not_purls[i]);
	}
}

/* Percent-decoding: ASCII escapes only, else the text as it is. */
static void
test_percent_decode(void)
{
	const char *cases[][2] = {
		{"sha256%3A0b%2f", "sha256:0b/"}, {"%40scope", "@scope"}, {"plain", "plain"},
		{"caf%C3%A9%3A1", "caf%C3%A9%3A1"}, {"50%", "50%"}, {"%4", "%4"}, {"%00x", "%00x"},
		{"%7F%01", "\x7f\x01"}, {"%2541", "%41"}, {"", ""},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		char		out[64];
		size_t		n = cdviz_percent_decode(cases[i][0], strlen(cases[i][0]), out);

		out[n] = '\0';
		is_str(out, cases[i][1], cases[i][0]);
	}
}

int
main(void)
{
	test_datetime();
	test_uri();
	test_problems();
	test_schema();
	test_schema_choice();
	test_modes();
	test_columns();
	test_nul();
	test_conformance();
	test_purl();
	test_percent_decode();
	return tap_done();
}
