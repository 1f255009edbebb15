/*
 * test_report.c
 *	  Unit tests of the test-report readers (src/core/report_*.c): JUnit
 *	  files in the shapes Surefire, pytest and jest-junit write, TAP 13 and
 *	  14, every outcome, stable ids, every event valid under the official
 *	  schema, hostile XML refused without leaking a file, the case limits,
 *	  and the events of a large report handed over in batches.
 *
 *	  test_report [FIXTURE_DIR]	(default test/fixtures/reports)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "core/event.h"
#include "core/report.h"
#include "tap.h"

static const char *fixture_dir = "test/fixtures/reports";

/* 2024-05-06T12:00:00Z: the default timestamp of the tests */
#define DEFAULT_TS 1714996800000000LL

/* Events every batch appends to, and the batches' sizes. */
typedef struct Collect
{
	json_object *all;
	size_t		batches;
	size_t		first_size;		/* of the first batch */
	size_t		odd_batches;	/* batches but the last of another size */
	size_t		last_size;
	size_t		stop_after;		/* batches to take before stopping; 0: all */
} Collect;

static bool
collect(json_object *events, void *arg)
{
	Collect    *c = (Collect *) arg;
	size_t		n = json_object_array_length(events);

	if (c->batches == 0)
		c->first_size = n;
	else if (c->last_size != c->first_size)
		c->odd_batches++;
	c->batches++;
	c->last_size = n;
	for (size_t i = 0; i < n; i++)
		json_object_array_add(c->all, json_object_get(json_object_array_get_idx(events, i)));
	return c->stop_after == 0 || c->batches < c->stop_after;
}

/* Every event of a model, mapped batch at a time; NULL when refused. */
static json_object *
map_all(json_object *model, const CdvizReportOptions *opt, size_t batch, CdvizProblems *problems)
{
	Collect		c = {json_object_new_array(), 0, 0, 0, 0, 0};

	if (!cdviz_report_map(model, opt, batch, collect, &c, problems))
	{
		json_object_put(c.all);
		return NULL;
	}
	return c.all;
}

static char *
slurp(const char *name, size_t *len)
{
	char		path[1024];
	FILE	   *f;
	char	   *buf;
	long		n;

	snprintf(path, sizeof(path), "%s/%s", fixture_dir, name);
	f = fopen(path, "rb");
	if (f == NULL)
	{
		tap_diag("cannot open %s", path);
		exit(2);
	}
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc(n + 1);
	if (fread(buf, 1, n, f) != (size_t) n)
		exit(2);
	buf[n] = '\0';
	fclose(f);
	*len = (size_t) n;
	return buf;
}

/* The string at a dotted path ("subject.content.outcome"), or NULL. */
static const char *
str_at(json_object *o, const char *path)
{
	char		key[128];
	const char *p = path;

	while (o && *p)
	{
		size_t		n = strcspn(p, ".");

		snprintf(key, sizeof(key), "%.*s", (int) n, p);
		if (!json_object_object_get_ex(o, key, &o))
			return NULL;
		p += n;
		if (*p == '.')
			p++;
	}
	return o && json_object_is_type(o, json_type_string) ? json_object_get_string(o) : NULL;
}

static double
num_at(json_object *o, const char *key)
{
	json_object *c,
			   *v;

	if (json_object_object_get_ex(o, "customData", &c) && json_object_object_get_ex(c, key, &v))
		return json_object_get_double(v);
	return -1;
}

/* The event whose context.id ends with "#<pos>", or NULL. */
static json_object *
by_pos(json_object *events, const char *pos)
{
	for (size_t i = 0; i < json_object_array_length(events); i++)
	{
		json_object *ev = json_object_array_get_idx(events, i);
		const char *id = str_at(ev, "context.id");
		const char *hash = id ? strrchr(id, '#') : NULL;

		if (hash && strcmp(hash + 1, pos) == 0)
			return ev;
	}
	return NULL;
}

/* Every event passes the official schema under strict validation. */
static void
all_valid(json_object *events, const char *what)
{
	int			bad = 0;

	for (size_t i = 0; i < json_object_array_length(events); i++)
	{
		CdvizProblems problems;
		CdvizEventInfo info;

		cdviz_problems_init(&problems);
		if (!cdviz_event_check(json_object_array_get_idx(events, i), CDVIZ_VALIDATION_STRICT,
							   &info, &problems))
		{
			char	   *txt = cdviz_problems_to_text(&problems, "; ");

			tap_diag("%s event %zu: %s", what, i, txt);
			tap_diag("%s", json_object_to_json_string(json_object_array_get_idx(events, i)));
			free(txt);
			bad++;
		}
		else if (strstr(info.judged_by, "0.5.1 event schema") == NULL)
		{
			tap_diag("%s event %zu judged by %s", what, i, info.judged_by);
			bad++;
		}
		cdviz_problems_reset(&problems);
	}
	ok(bad == 0 && json_object_array_length(events) > 0,
	   "%s: all %zu events valid under the 0.5.1 schemas (strict)", what,
	   json_object_array_length(events));
}

/* Read a fixture and map it; the events, or NULL after a failed test. */
static json_object *
events_of(CdvizReportFormat fmt, const char *name, const char *file_id, json_object **model_out)
{
	size_t		len;
	char	   *data = slurp(name, &len);
	CdvizProblems problems;
	json_object *model;
	json_object *events = NULL;
	CdvizReportOptions opt = {file_id, "/cdviz/sources/reports", name, NULL, DEFAULT_TS, 0};

	cdviz_problems_init(&problems);
	model = cdviz_report_parse(fmt, data, len, NULL, &problems);
	if (ok(model != NULL, "%s: read", name))
		events = map_all(model, &opt, 3, &problems);
	if (problems.count)
	{
		char	   *txt = cdviz_problems_to_text(&problems, "; ");

		tap_diag("%s", txt);
		free(txt);
	}
	cdviz_problems_reset(&problems);
	free(data);
	if (model_out)
		*model_out = model;
	else
		json_object_put(model);
	return events;
}

/* The case at pos: its type, outcome (NULL when skipped) and reason. */
static void
check_case(json_object *events, const char *pos, const char *type, const char *outcome,
		   const char *reason, const char *what)
{
	json_object *ev = by_pos(events, pos);
	char		desc[256];

	snprintf(desc, sizeof(desc), "%s %s: %s", what, pos, outcome ? outcome : "skipped");
	if (!ok(ev != NULL, "%s: present", desc))
		return;
	tap_is_str_at(str_at(ev, "context.type"), type, __FILE__, __LINE__, "  its type");
	tap_is_str_at(str_at(ev, "subject.content.outcome"), outcome, __FILE__, __LINE__, "  its outcome");
	if (reason)
		tap_is_str_at(str_at(ev, "subject.content.reason"), reason, __FILE__, __LINE__, "  its reason");
}

#define FINISHED "dev.cdevents.testcaserun.finished.0.3.0"
#define SKIPPED "dev.cdevents.testcaserun.skipped.0.2.0"
#define SUITE "dev.cdevents.testsuiterun.finished.0.3.0"

/* What a fixture's case must be; a table of them ends with a NULL pos. */
typedef struct CaseWant
{
	const char *pos;
	const char *type;
	const char *outcome;
	const char *reason;
	const char *what;			/* its label, when not the fixture's */
} CaseWant;

static void
check_cases(json_object *events, const CaseWant *want, const char *what)
{
	for (; want->pos; want++)
		check_case(events, want->pos, want->type, want->outcome, want->reason,
				   want->what ? want->what : what);
}

static void
test_surefire(void)
{
	const char *f = "surefire-TEST-com.example.CalculatorTest.xml";
	json_object *ev = events_of(CDVIZ_REPORT_JUNIT, f, "reports/a.xml@sha256:aa", NULL);
	json_object *again = events_of(CDVIZ_REPORT_JUNIT, f, "reports/a.xml@sha256:aa", NULL);
	json_object *other = events_of(CDVIZ_REPORT_JUNIT, f, "reports/a.xml@sha256:bb", NULL);
	json_object *suite;

	if (ev == NULL || again == NULL || other == NULL)
		return;
	is_int(json_object_array_length(ev), 5, "surefire: 4 cases and 1 suite");
	all_valid(ev, "surefire");
	check_cases(ev, (const CaseWant[]) {
		{"s0.c0", FINISHED, "success", NULL, NULL},
		{"s0.c1", FINISHED, "failure", "org.opentest4j.AssertionFailedError: expected: <0> but was: <1>", NULL},
		{"s0.c2", FINISHED, "error", "java.io.FileNotFoundException: config.properties (No such file or directory)", NULL},
		{"s0.c3", SKIPPED, NULL, "slow test disabled", NULL},
		{0}
	}, "surefire");
	suite = by_pos(ev, "s0");
	is_str(str_at(suite, "context.type"), SUITE, "surefire: suite event last");
	ok(json_object_array_get_idx(ev, 4) == suite, "surefire: the suite after its cases");
	is_str(str_at(suite, "subject.content.outcome"), "error", "surefire: suite in error (an error beats a failure)");
	is_str(str_at(suite, "subject.content.reason"), "1 failed, 1 in error, 1 skipped, of 4 tests",
		   "surefire: suite reason counts");
	is_str(str_at(suite, "subject.content.testSuite.name"), "com.example.CalculatorTest", "surefire: suite name");
	is_str(str_at(suite, "context.id"), "reports/a.xml@sha256:aa#s0", "surefire: suite id from the file identity");
	is_str(str_at(suite, "context.timestamp"), "2024-05-06T12:00:00Z", "surefire: no timestamp attribute: the default");
	is_str(str_at(by_pos(ev, "s0.c1"), "subject.content.testSuiteRun.id"), "reports/a.xml@sha256:aa#s0",
		   "surefire: a case's testSuiteRun is its suite's run");
	is_str(str_at(by_pos(ev, "s0.c1"), "subject.content.testCase.id"),
		   "com.example.CalculatorTest.dividesByZero", "surefire: test case id: classname.name");
	is_str(str_at(by_pos(ev, "s0.c1"), "customData.failureType"), "org.opentest4j.AssertionFailedError",
		   "surefire: failure type kept");
	ok(num_at(by_pos(ev, "s0.c1"), "duration") == 0.012, "surefire: case duration 0.012 s");
	ok(num_at(suite, "duration") == 0.052, "surefire: suite duration 0.052 s");
	ok(strstr(str_at(by_pos(ev, "s0.c1"), "customData.details"), "CalculatorTest.java:27") != NULL,
	   "surefire: the failure's text kept as details");
	ok(json_object_equal(ev, again), "surefire: reading the same file again gives the same events");
	ok(strcmp(str_at(by_pos(other, "s0.c1"), "context.id"), str_at(by_pos(ev, "s0.c1"), "context.id")) != 0,
	   "surefire: another file identity gives other ids");
	json_object_put(ev);
	json_object_put(again);
	json_object_put(other);
}

static void
test_pytest(void)
{
	json_object *ev = events_of(CDVIZ_REPORT_JUNIT, "pytest-junit.xml", "py@1", NULL);
	json_object *c;

	if (ev == NULL)
		return;
	is_int(json_object_array_length(ev), 5, "pytest: 4 cases and 1 suite");
	all_valid(ev, "pytest");
	check_cases(ev, (const CaseWant[]) {
		{"s0.c0", FINISHED, "success", NULL, NULL},
		{"s0.c1", FINISHED, "failure", "AssertionError: assert 404 == 204\n +  where 404 = <Response [404]>.status_code", NULL},
		{"s0.c2", FINISHED, "error", "failed on setup with \"ConnectionRefusedError: [Errno 111] Connection refused\"", NULL},
		{"s0.c3", SKIPPED, NULL, "pytest.skip: needs S3", NULL},
		{0}
	}, "pytest");
	c = by_pos(ev, "s0");
	is_str(str_at(c, "subject.content.outcome"), "error", "pytest: suite in error");
	/* 10:15:30.123456+02:00 plus 0.087 s */
	is_str(str_at(c, "context.timestamp"), "2024-05-06T08:15:30.210456Z",
		   "pytest: timestamp with offset, plus the duration, in UTC");
	is_str(str_at(c, "subject.content.environment.id"), "ci-runner-7", "pytest: hostname as environment");
	is_str(str_at(by_pos(ev, "s0.c3"), "subject.content.testCase.name"), "test_slow_export[csv]",
		   "pytest: parametrised case name");
	json_object_put(ev);
}

static void
test_jest(void)
{
	json_object *ev = events_of(CDVIZ_REPORT_JUNIT, "jest-junit.xml", "jest@1", NULL);

	if (ev == NULL)
		return;
	is_int(json_object_array_length(ev), 6, "jest: 4 cases and 2 suites");
	all_valid(ev, "jest");
	check_cases(ev, (const CaseWant[]) {
		{"s0.c0", FINISHED, "success", NULL, NULL},
		{"s0.c1", FINISHED, "failure", "Error: expect(received).toBe(expected) // Object.is equality", NULL},
		{"s0.c2", SKIPPED, NULL, NULL, NULL},
		{"s1.c0", FINISHED, "error", "Cannot find module './payment' from 'src/checkout.test.js'", NULL},
		{0}
	}, "jest");
	is_str(str_at(by_pos(ev, "s0"), "subject.content.outcome"), "failure", "jest: first suite failed");
	is_str(str_at(by_pos(ev, "s1"), "subject.content.outcome"), "error", "jest: second suite in error");
	is_str(str_at(by_pos(ev, "s0"), "context.timestamp"), "2024-05-06T08:00:02.100000Z",
		   "jest: timestamp without offset read as UTC, plus 1.1 s");
	is_str(str_at(by_pos(ev, "s1"), "subject.content.environment.id"), "unknown",
		   "jest: no hostname, no environment given: unknown");
	json_object_put(ev);
}

static void
test_nested(void)
{
	json_object *ev = events_of(CDVIZ_REPORT_JUNIT, "nested-junit.xml", "n@1", NULL);
	json_object *auth;

	if (ev == NULL)
		return;
	is_int(json_object_array_length(ev), 6, "nested: 3 cases and 3 suites");
	all_valid(ev, "nested");
	check_cases(ev, (const CaseWant[]) {
		{"s0.c0", FINISHED, "success", NULL, NULL},
		{"s0.s0.c0", FINISHED, "failure", "AssertionError", NULL},
		{"s1.c0", FINISHED, "success", NULL, NULL},
		{0}
	}, "nested");
	auth = by_pos(ev, "s0.s0");
	is_str(str_at(auth, "subject.content.testSuite.id"), "api/auth", "nested: inner suite id names its parent");
	is_str(str_at(auth, "customData.parent"), "n@1#s0", "nested: parent run in customData");
	is_str(str_at(auth, "subject.content.outcome"), "failure", "nested: inner suite failed");
	is_str(str_at(by_pos(ev, "s0"), "subject.content.outcome"), "failure", "nested: outer suite fails with it");
	is_str(str_at(auth, "context.timestamp"), "2024-05-06T09:00:01.500000Z",
		   "nested: inner suite starts with its parent");
	is_str(str_at(by_pos(ev, "s1"), "subject.content.environment.id"), "builder-2", "nested: hostname");
	ok(num_at(by_pos(ev, "s0"), "tests") == 2, "nested: outer suite counts inner cases");
	json_object_put(ev);
}

static void
test_tap13(void)
{
	json_object *model;
	json_object *ev = events_of(CDVIZ_REPORT_TAP, "tap13.tap", "t13", &model);
	json_object *v;

	if (ev == NULL)
		return;
	ok(json_object_object_get_ex(model, "version", &v) && json_object_get_int(v) == 13, "tap13: version 13");
	is_int(json_object_array_length(ev), 7, "tap13: 6 cases and 1 suite");
	all_valid(ev, "tap13");
	check_cases(ev, (const CaseWant[]) {
		{"s0.c0", FINISHED, "success", NULL, NULL},
		{"s0.c1", FINISHED, "failure", "connection refused", NULL},
		{"s0.c2", SKIPPED, NULL, "no S3 credentials", NULL},
		{"s0.c3", SKIPPED, NULL, "TODO not implemented yet", "tap13 (not ok TODO)"},
		{"s0.c4", FINISHED, "success", NULL, "tap13 (ok TODO)"},
		{"s0.c5", FINISHED, "failure", "metrics endpoint\nanswered 500", "tap13 (block message)"},
		{0}
	}, "tap13");
	is_str(str_at(by_pos(ev, "s0.c3"), "subject.content.testCase.name"), "handles # in names",
		   "tap13: \\# unescaped in a name");
	ok(num_at(by_pos(ev, "s0.c1"), "duration") == 0.0125, "tap13: duration_ms 12.5");
	is_str(str_at(by_pos(ev, "s0.c1"), "customData.severity"), "fail", "tap13: severity not CDEvents' kept aside");
	is_str(str_at(by_pos(ev, "s0.c5"), "subject.content.severity"), "high", "tap13: CDEvents severity");
	ok(num_at(by_pos(ev, "s0.c5"), "duration") == 0.25, "tap13: duration 0.25 s");
	is_str(str_at(by_pos(ev, "s0"), "subject.content.outcome"), "failure", "tap13: suite failed (TODO not counted)");
	is_str(str_at(by_pos(ev, "s0"), "subject.content.reason"), "2 failed, 0 in error, 2 skipped, of 6 tests",
		   "tap13: suite reason");
	is_str(str_at(by_pos(ev, "s0"), "subject.content.testSuite.name"), "tap13.tap", "tap13: suite named by the caller");
	json_object_put(model);
	json_object_put(ev);
}

static void
test_tap14(void)
{
	json_object *ev = events_of(CDVIZ_REPORT_TAP, "tap14.tap", "t14", NULL);

	if (ev == NULL)
		return;
	is_int(json_object_array_length(ev), 7, "tap14: 4 cases and 3 suites");
	all_valid(ev, "tap14");
	check_cases(ev, (const CaseWant[]) {
		{"s0.s0.c0", FINISHED, "success", NULL, NULL},
		{"s0.s0.c1", FINISHED, "failure", "still unlocked", NULL},
		{"s0.s1.c0", SKIPPED, NULL, "no SMTP server", NULL},
		{"s0.c0", FINISHED, "success", NULL, NULL},
		{0}
	}, "tap14");
	is_str(str_at(by_pos(ev, "s0.s0"), "subject.content.testSuite.name"), "login", "tap14: indented # Subtest names");
	is_str(str_at(by_pos(ev, "s0.s1"), "subject.content.testSuite.name"), "signup", "tap14: # Subtest at the parent's depth names");
	is_str(str_at(by_pos(ev, "s0.s0"), "subject.content.outcome"), "failure", "tap14: subtest failed");
	is_str(str_at(by_pos(ev, "s0.s1"), "subject.content.outcome"), "success", "tap14: subtest with a skip succeeded");
	is_str(str_at(by_pos(ev, "s0"), "subject.content.outcome"), "failure", "tap14: top suite failed");
	ok(num_at(by_pos(ev, "s0.c0"), "duration") == 0.0004, "tap14: duration of a top-level case");
	ok(num_at(by_pos(ev, "s0.s0.c1"), "duration") == 0.003, "tap14: duration of a nested case");
	json_object_put(ev);
}

/* Parse text; the model or NULL, the first problem's message in *msg. */
static json_object *
parse_text(CdvizReportFormat fmt, const char *text, char *msg, size_t msgsize)
{
	CdvizProblems problems;
	json_object *model;

	cdviz_problems_init(&problems);
	model = cdviz_report_parse(fmt, text, strlen(text), NULL, &problems);
	snprintf(msg, msgsize, "%s", problems.count ? problems.items[0].message : "");
	cdviz_problems_reset(&problems);
	return model;
}

/* Outcome of the first suite of a TAP text. */
static const char *
tap_suite_outcome(const char *text, char *reason, size_t size)
{
	static char outcome[32];
	char		msg[512];
	json_object *model = parse_text(CDVIZ_REPORT_TAP, text, msg, sizeof(msg));
	CdvizReportOptions opt = {"x", "/s", NULL, NULL, DEFAULT_TS, 0};
	CdvizProblems problems;
	json_object *ev;
	json_object *last;

	cdviz_problems_init(&problems);
	if (model == NULL)
		return NULL;
	ev = map_all(model, &opt, 1, &problems);
	last = json_object_array_get_idx(ev, json_object_array_length(ev) - 1);
	snprintf(outcome, sizeof(outcome), "%s", str_at(last, "subject.content.outcome"));
	snprintf(reason, size, "%s", str_at(last, "subject.content.reason") ? str_at(last, "subject.content.reason") : "");
	json_object_put(ev);
	json_object_put(model);
	return outcome;
}

/*
 * The reader stops at len: the bytes after it (here digits) are not part of
 * the report.  A fuzzer found "TAP version " read past its end.
 */
static void
test_tap_version_bounds(void)
{
	const char *buf = "TAP version 149";
	CdvizProblems problems;
	json_object *model;
	json_object *v;

	cdviz_problems_init(&problems);
	model = cdviz_report_parse(CDVIZ_REPORT_TAP, buf, 14, NULL, &problems);
	ok(model && json_object_object_get_ex(model, "version", &v) && json_object_get_int(v) == 14,
	   "tap: the version number ends where the data ends");
	json_object_put(model);
	model = cdviz_report_parse(CDVIZ_REPORT_TAP, buf, 12, NULL, &problems);
	ok(model && !json_object_object_get_ex(model, "version", &v),
	   "tap: a version line without a number gives no version");
	json_object_put(model);
	cdviz_problems_reset(&problems);
}

/* A TAP file nested to the limit gives events; one level more is refused by the reader. */
static void
test_tap_depth(void)
{
	CdvizReportOptions opt = {"x", "/s", NULL, NULL, DEFAULT_TS, 0};
	CdvizProblems problems;
	char		text[4096];
	char		msg[512];
	json_object *model;
	json_object *events;

	for (int subtests = CDVIZ_REPORT_MAX_DEPTH - 1; subtests <= CDVIZ_REPORT_MAX_DEPTH; subtests++)
	{
		snprintf(text, sizeof(text), "%*sok 1\n", subtests * 4, "");
		model = parse_text(CDVIZ_REPORT_TAP, text, msg, sizeof(msg));
		if (subtests < CDVIZ_REPORT_MAX_DEPTH)
		{
			cdviz_problems_init(&problems);
			events = model ? map_all(model, &opt, 2, &problems) : NULL;
			ok(events != NULL && json_object_array_length(events) == (size_t) subtests + 2,
			   "tap: suites nested to the limit give events (the cases and every suite)");
			json_object_put(events);
			cdviz_problems_reset(&problems);
		}
		else
		{
			ok(model == NULL, "tap: one subtest deeper is refused by the reader");
			is_str(msg, "test suites are nested more than 32 deep", "tap: says why");
		}
		json_object_put(model);
	}
}

static void
test_tap_edges(void)
{
	char		reason[256];
	char		msg[512];

	is_str(tap_suite_outcome("TAP version 14\n1..3\nok 1\nok 2\n", reason, sizeof(reason)), "failure",
		   "tap: fewer tests than planned fails the suite");
	is_str(reason, "planned 3 tests, ran 2", "tap: the plan's reason");
	is_str(tap_suite_outcome("1..2\nok 1\nBail out! database down\nok 2\n", reason, sizeof(reason)), "error",
		   "tap: Bail out! puts the suite in error");
	is_str(reason, "Bail out! database down", "tap: bail out reason");
	is_str(tap_suite_outcome("ok 1 - a\r\nok 2 - b\r\n1..2\r\n", reason, sizeof(reason)), "success",
		   "tap: no version line, plan at the end, CRLF");
	ok(parse_text(CDVIZ_REPORT_TAP, "hello\nworld\n", msg, sizeof(msg)) == NULL, "tap: refuses what is not TAP");
	is_str(msg, "no TAP version line, plan or test line: not a TAP report", "tap: says why");
	test_tap_version_bounds();
	test_tap_depth();
	ok(parse_text(CDVIZ_REPORT_JUNIT, "<html><body/></html>", msg, sizeof(msg)) == NULL, "junit: refuses another XML");
	is_str(msg, "the root element is not <testsuites> or <testsuite>: not a JUnit report", "junit: says why");
	ok(parse_text(CDVIZ_REPORT_JUNIT, "<testsuite><testcase></testsuite>", msg, sizeof(msg)) == NULL,
	   "junit: refuses malformed XML");
	ok(strncmp(msg, "not well-formed XML: ", 21) == 0, "junit: says it is not well-formed");
}

static void
test_limits(void)
{
	CdvizProblems problems;
	CdvizReportLimits small = {16, 0};
	const char *text = "<testsuite name=\"a\"><testcase name=\"b\"/></testsuite>";
	json_object *model;
	CdvizReportOptions no_id = {NULL, "/s", NULL, NULL, DEFAULT_TS, 0};

	cdviz_problems_init(&problems);
	model = cdviz_report_parse(CDVIZ_REPORT_JUNIT, text, strlen(text), &small, &problems);
	ok(model == NULL && problems.count == 1, "size limit: a report over max_bytes is refused");
	ok(problems.count && strstr(problems.items[0].message, "more than the limit of 16") != NULL,
	   "size limit: says so");
	cdviz_problems_reset(&problems);
	model = cdviz_report_parse(CDVIZ_REPORT_TAP, "ok 1\n", 5, &small, &problems);
	ok(model != NULL, "size limit: a small TAP report is read");
	ok(map_all(model, &no_id, 10, &problems) == NULL && problems.count == 1,
	   "mapping without the file identity is refused");
	json_object_put(model);
	cdviz_problems_reset(&problems);
}

/*
 * A JUnit text of suites of the given numbers of cases, the first with a
 * nested suite of nested_cases when that is not zero.
 */
static char *
big_junit(const int *cases, int nsuites, int nested_cases, size_t *len)
{
	size_t		size = 256;
	char	   *buf;
	size_t		o = 0;

	for (int s = 0; s < nsuites; s++)
		size += 64 + (size_t) cases[s] * 48;
	size += (size_t) nested_cases * 48;
	buf = malloc(size);
	o += sprintf(buf + o, "<testsuites>");
	for (int s = 0; s < nsuites; s++)
	{
		o += sprintf(buf + o, "<testsuite name=\"s%d\" timestamp=\"2024-05-01T10:00:00\">", s);
		for (int c = 0; c < cases[s]; c++)
			o += sprintf(buf + o, c % 7 ? "<testcase name=\"t%d\"/>" :
						 "<testcase name=\"t%d\"><failure message=\"m\"/></testcase>", c);
		if (s == 0 && nested_cases > 0)
		{
			o += sprintf(buf + o, "<testsuite name=\"inner\">");
			for (int c = 0; c < nested_cases; c++)
				o += sprintf(buf + o, "<testcase name=\"n%d\"/>", c);
			o += sprintf(buf + o, "</testsuite>");
		}
		o += sprintf(buf + o, "</testsuite>");
	}
	o += sprintf(buf + o, "</testsuites>");
	*len = o;
	return buf;
}

/*
 * A large report mapped in batches: every batch but the last full, every
 * event there, in report order, each the same (ids included) as when the
 * whole report is one batch; a stop from the caller ends the mapping.
 */
static void
test_batches(void)
{
	const int	cases[] = {12000, 1, 0, 9999};
	const int	nested = 3000;
	size_t		len;
	char	   *text = big_junit(cases, 4, nested, &len);
	CdvizReportOptions opt = {"big.xml@sha256:00", "/s", NULL, NULL, DEFAULT_TS, 0};
	CdvizProblems problems;
	json_object *model;
	Collect		small = {json_object_new_array(), 0, 0, 0, 0, 0};
	Collect		whole = {json_object_new_array(), 0, 0, 0, 0, 0};
	Collect		stopped = {json_object_new_array(), 0, 0, 0, 0, 2};
	size_t		expected = 12000 + 1 + 9999 + nested + 5;
	size_t		same = 0;
	size_t		at = 0;
	char		id[128];
	bool		ids_ok = true;

	cdviz_problems_init(&problems);
	model = cdviz_report_parse(CDVIZ_REPORT_JUNIT, text, len, NULL, &problems);
	ok(model != NULL, "batches: a report of %zu events is read", expected);
	ok(cdviz_report_map(model, &opt, 1000, collect, &small, &problems), "batches: mapped 1000 at a time");
	ok(small.batches == (expected + 999) / 1000 && small.first_size == 1000 && small.odd_batches == 0 &&
	   small.last_size == expected % 1000,
	   "batches: %zu batches of 1000 and a last of %zu", small.batches, small.last_size);
	ok(cdviz_report_map(model, &opt, expected + 1, collect, &whole, &problems) && whole.batches == 1,
	   "batches: one batch when it is larger than the report");
	ok(json_object_array_length(small.all) == expected && json_object_array_length(whole.all) == expected,
	   "batches: all %zu events either way", expected);
	for (size_t i = 0; i < expected && i < json_object_array_length(small.all); i++)
		same += strcmp(json_object_to_json_string(json_object_array_get_idx(small.all, i)),
					   json_object_to_json_string(json_object_array_get_idx(whole.all, i))) == 0;
	ok(same == expected, "batches: each event the same as in one batch (%zu of %zu)", same, expected);

	/* report order and the position ids: a suite's cases, nested suites, the suite */
	for (int s = 0; s < 4; s++)
	{
		for (int c = 0; c < cases[s]; c++)
		{
			snprintf(id, sizeof(id), "big.xml@sha256:00#s%d.c%d", s, c);
			ids_ok &= strcmp(str_at(json_object_array_get_idx(small.all, at++), "context.id"), id) == 0;
		}
		for (int c = 0; s == 0 && c < nested; c++)
		{
			snprintf(id, sizeof(id), "big.xml@sha256:00#s0.s0.c%d", c);
			ids_ok &= strcmp(str_at(json_object_array_get_idx(small.all, at++), "context.id"), id) == 0;
		}
		if (s == 0)
			ids_ok &= strcmp(str_at(json_object_array_get_idx(small.all, at++), "context.id"),
							 "big.xml@sha256:00#s0.s0") == 0;
		snprintf(id, sizeof(id), "big.xml@sha256:00#s%d", s);
		ids_ok &= strcmp(str_at(json_object_array_get_idx(small.all, at++), "context.id"), id) == 0;
	}
	ok(ids_ok && at == expected, "batches: every id is its position, in report order");
	is_str(str_at(json_object_array_get_idx(small.all, 12000 + nested + 1), "subject.content.reason"),
		   "1715 failed, 0 in error, 0 skipped, of 15000 tests", "batches: a suite counts the cases of every batch");

	ok(!cdviz_report_map(model, &opt, 100, collect, &stopped, &problems) && problems.count == 0 &&
	   stopped.batches == 2 && json_object_array_length(stopped.all) == 200,
	   "batches: the caller stops the mapping, without a problem");
	json_object_put(small.all);
	json_object_put(whole.all);
	json_object_put(stopped.all);
	json_object_put(model);
	cdviz_problems_reset(&problems);
	free(text);
}

/* A model for the mapping alone: suites nested depth deep, each with a case. */
static json_object *
nested_model(int depth)
{
	json_object *model = json_object_new_object();
	json_object *suites = json_object_new_array();

	json_object_object_add(model, "suites", suites);
	for (int d = 0; d < depth; d++)
	{
		json_object *suite = json_object_new_object();
		json_object *cases = json_object_new_array();
		json_object *tc = json_object_new_object();

		json_object_object_add(tc, "name", json_object_new_string("t"));
		json_object_object_add(tc, "outcome", json_object_new_string("success"));
		json_object_array_add(cases, tc);
		json_object_object_add(suite, "cases", cases);
		json_object_array_add(suites, suite);
		suites = json_object_new_array();
		json_object_object_add(suite, "suites", suites);
	}
	return model;
}

/*
 * The case limit: the readers stop at it, and the mapping holds any model
 * it is given to it (and to the depth) before it hands over an event.
 */
static void
test_case_limits(void)
{
	const int	fit[] = {99};
	const int	over[] = {100};
	CdvizReportLimits hundred = {0, 100};
	CdvizReportOptions opt = {"x", "/s", NULL, NULL, DEFAULT_TS, 0};
	CdvizProblems problems;
	Collect		none = {json_object_new_array(), 0, 0, 0, 0, 0};
	json_object *model;
	size_t		len;
	char	   *text;
	char		tap[2048];
	size_t		o = 0;

	ok(cdviz_report_case_limit(0) == CDVIZ_REPORT_DEFAULT_CASES &&
	   cdviz_report_case_limit(5 * CDVIZ_REPORT_MAX_CASES) == CDVIZ_REPORT_MAX_CASES &&
	   cdviz_report_case_limit(7) == 7, "limits: default and ceiling of the case limit");
	cdviz_problems_init(&problems);
	text = big_junit(fit, 1, 0, &len);
	model = cdviz_report_parse(CDVIZ_REPORT_JUNIT, text, len, &hundred, &problems);
	ok(model != NULL, "limits: junit of 100 suites and cases is read with a limit of 100");
	opt.max_cases = 99;
	ok(!cdviz_report_map(model, &opt, 10, collect, &none, &problems) && none.batches == 0 &&
	   problems.count == 1, "limits: the mapping refuses it with a limit of 99, before any event");
	is_str(problems.count ? problems.items[0].message : "",
		   "the report holds more than 99 suites and cases, the limit (a source's max_report_cases)",
		   "limits: the mapping says why");
	json_object_put(model);
	free(text);
	cdviz_problems_reset(&problems);

	text = big_junit(over, 1, 0, &len);
	ok(cdviz_report_parse(CDVIZ_REPORT_JUNIT, text, len, &hundred, &problems) == NULL &&
	   problems.count == 1, "limits: junit of 101 suites and cases is refused with a limit of 100");
	is_str(problems.count ? problems.items[0].message : "",
		   "the report holds more than 100 suites and cases, the limit (a source's max_report_cases)",
		   "limits: the junit reader says why");
	free(text);
	cdviz_problems_reset(&problems);

	for (int i = 1; i <= 100; i++)
		o += snprintf(tap + o, sizeof(tap) - o, "ok %d\n", i);
	ok(cdviz_report_parse(CDVIZ_REPORT_TAP, tap, o, &hundred, &problems) == NULL && problems.count == 1,
	   "limits: TAP of 100 tests (and its suite) is refused with a limit of 100");
	cdviz_problems_reset(&problems);

	opt.max_cases = 0;
	model = nested_model(CDVIZ_REPORT_MAX_DEPTH);
	json_object_put(none.all);
	none.all = map_all(model, &opt, 5, &problems);
	ok(none.all != NULL && json_object_array_length(none.all) == 2 * CDVIZ_REPORT_MAX_DEPTH,
	   "limits: a model nested to the limit is mapped");
	json_object_put(model);
	json_object_put(none.all);
	none.all = json_object_new_array();
	model = nested_model(CDVIZ_REPORT_MAX_DEPTH + 1);
	ok(!cdviz_report_map(model, &opt, 5, collect, &none, &problems) && none.batches == 0 &&
	   problems.count == 1, "limits: one level deeper is refused by the mapping, before any event");
	json_object_put(model);
	json_object_put(none.all);
	cdviz_problems_reset(&problems);
}

/* Hostile XML: refused, and nothing of the named file in any problem. */
static void
test_hostile_xml(void)
{
	char		secret_path[] = "/tmp/cdviz-report-secret-XXXXXX";
	int			fd = mkstemp(secret_path);
	const char	secret[] = "TOP-SECRET-42";
	char		doc[2048];
	size_t		len;
	char	   *laughs = slurp("billion-laughs.xml", &len);
	CdvizProblems problems;
	json_object *model;
	char	   *all;

	if (fd < 0 || write(fd, secret, sizeof(secret) - 1) != (ssize_t) (sizeof(secret) - 1))
		exit(2);
	close(fd);

	cdviz_problems_init(&problems);
	model = cdviz_report_parse(CDVIZ_REPORT_JUNIT, laughs, len, NULL, &problems);
	ok(model == NULL, "billion laughs: refused");
	ok(problems.count == 1 && strstr(problems.items[0].message, "declares entities") != NULL,
	   "billion laughs: the problem says the DOCTYPE declares entities");
	cdviz_problems_reset(&problems);
	free(laughs);

	/* an external general entity in an attribute and in text */
	snprintf(doc, sizeof(doc),
			 "<?xml version=\"1.0\"?>\n<!DOCTYPE testsuite [<!ENTITY xxe SYSTEM \"file://%s\">]>\n"
			 "<testsuite name=\"&xxe;\"><testcase name=\"a\"><failure message=\"x\">&xxe;</failure>"
			 "</testcase></testsuite>", secret_path);
	model = cdviz_report_parse(CDVIZ_REPORT_JUNIT, doc, strlen(doc), NULL, &problems);
	ok(model == NULL, "external entity: refused");
	all = cdviz_problems_to_json(&problems);
	ok(strstr(all, "declares entities") != NULL, "external entity: the problem says why");
	ok(strstr(all, secret) == NULL, "external entity: the file's content is not in the problems");
	free(all);
	cdviz_problems_reset(&problems);

	/* an external parameter entity */
	snprintf(doc, sizeof(doc),
			 "<?xml version=\"1.0\"?>\n<!DOCTYPE testsuite [<!ENTITY %% p SYSTEM \"file://%s\"> %%p;]>\n"
			 "<testsuite name=\"a\"/>", secret_path);
	model = cdviz_report_parse(CDVIZ_REPORT_JUNIT, doc, strlen(doc), NULL, &problems);
	all = cdviz_problems_to_json(&problems);
	ok(model == NULL && strstr(all, secret) == NULL, "external parameter entity: refused, nothing leaked");
	free(all);
	cdviz_problems_reset(&problems);

	/* an external DTD is not loaded, and an undeclared entity stays empty */
	snprintf(doc, sizeof(doc),
			 "<?xml version=\"1.0\"?>\n<!DOCTYPE testsuite SYSTEM \"file://%s\">\n"
			 "<testsuite name=\"a\"><testcase name=\"b\"><failure message=\"m\">&xxe;</failure>"
			 "</testcase></testsuite>", secret_path);
	model = cdviz_report_parse(CDVIZ_REPORT_JUNIT, doc, strlen(doc), NULL, &problems);
	all = model ? strdup(json_object_to_json_string(model)) : cdviz_problems_to_json(&problems);
	ok(strstr(all, secret) == NULL, "external DTD: never read");
	free(all);
	json_object_put(model);
	cdviz_problems_reset(&problems);
	unlink(secret_path);
}

int
main(int argc, char **argv)
{
	if (argc > 1)
		fixture_dir = argv[1];
	test_surefire();
	test_pytest();
	test_jest();
	test_nested();
	test_tap13();
	test_tap14();
	test_tap_edges();
	test_limits();
	test_case_limits();
	test_batches();
	test_hostile_xml();
	return tap_done();
}
