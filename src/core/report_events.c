/*
 * report_events.c
 *	  The built-in mapping of a report model (report.h) to CDEvents 0.5.1
 *	  test events, handed to the caller in batches, and the entry point
 *	  that picks a reader by format.
 *
 * Every event is written to pass the official schema of its type: the
 * content members are the schema's (additionalProperties is false there),
 * what CDEvents has no member for goes to customData.
 */
#include "core/report.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "core/formats.h"
#include "core/report_int.h"

#define SPEC_VERSION "0.5.1"
#define TYPE_CASE_FINISHED "dev.cdevents.testcaserun.finished.0.3.0"
#define TYPE_CASE_SKIPPED "dev.cdevents.testcaserun.skipped.0.2.0"
#define TYPE_SUITE_FINISHED "dev.cdevents.testsuiterun.finished.0.3.0"

/* Position paths ("s0.s12.c345") of suites nested CDVIZ_REPORT_MAX_DEPTH deep. */
#define POSITION_MAX (CDVIZ_REPORT_MAX_DEPTH * 12 + 16)

bool
cdviz_report_format_from_name(const char *name, CdvizReportFormat *format)
{
	if (strcmp(name, "junit") == 0)
		*format = CDVIZ_REPORT_JUNIT;
	else if (strcmp(name, "tap") == 0)
		*format = CDVIZ_REPORT_TAP;
	else
		return false;
	return true;
}

const char *
cdviz_report_format_name(CdvizReportFormat format)
{
	return format == CDVIZ_REPORT_JUNIT ? "junit" : "tap";
}

json_object *
cdviz_report_parse(CdvizReportFormat format, const char *data, size_t len,
				   const CdvizReportLimits *limits, CdvizProblems *problems)
{
	if (format == CDVIZ_REPORT_JUNIT)
		return cdviz_junit_parse(data, len, limits, problems);
	return cdviz_tap_parse(data, len, limits, problems);
}

/* ---- time -------------------------------------------------------------- */

/* Year, month and day of a day count since 1970-01-01 (proleptic Gregorian). */
static void
civil_from_days(int64_t z, int *y, int *m, int *d)
{
	int64_t		era;
	int64_t		doe,
				yoe,
				doy,
				mp;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*d = (int) (doy - (153 * mp + 2) / 5 + 1);
	*m = (int) (mp < 10 ? mp + 3 : mp - 9);
	*y = (int) (yoe + era * 400 + (*m <= 2));
}

/* RFC 3339 in UTC, with microseconds when any; false out of years 1-9999. */
static bool
format_timestamp(int64_t us, char *buf, size_t size)
{
	int64_t		secs = us >= 0 ? us / 1000000 : -((-us + 999999) / 1000000);
	int			frac = (int) (us - secs * 1000000);
	int64_t		days = secs >= 0 ? secs / 86400 : -((-secs + 86399) / 86400);
	int			sod = (int) (secs - days * 86400);
	int			y,
				m,
				d;

	if (us < -62135596800000000LL || us > 253402300799999999LL)
		return false;
	civil_from_days(days, &y, &m, &d);
	if (frac)
		snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", y, m, d,
				 sod / 3600, sod / 60 % 60, sod % 60, frac);
	else
		snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02dZ", y, m, d,
				 sod / 3600, sod / 60 % 60, sod % 60);
	return true;
}

/*
 * The start of a suite from its timestamp text: RFC 3339, or the same
 * without an offset (what Surefire, pytest and jest-junit write), read as
 * UTC.  False when it is neither.
 */
static bool
parse_report_time(const char *s, size_t len, int64_t *us)
{
	char		buf[64];

	if (cdviz_parse_datetime(s, len, us))
		return true;
	if (len + 2 > sizeof(buf))
		return false;
	memcpy(buf, s, len);
	buf[len] = 'Z';
	return cdviz_parse_datetime(buf, len + 1, us);
}

/* ---- model access ------------------------------------------------------ */

static const char *
member_str(json_object *o, const char *key)
{
	json_object *v;

	if (json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string))
		return json_object_get_string(v);
	return NULL;
}

static json_object *
member_array(json_object *o, const char *key)
{
	json_object *v;

	if (json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_array))
		return v;
	return NULL;
}

/* obj[key] = model[key], when the model has it. */
static void
copy_member(json_object *obj, const char *key, json_object *model, const char *mkey)
{
	json_object *v;

	if (json_object_object_get_ex(model, mkey, &v) && v != NULL)
		json_object_object_add(obj, key, json_object_get(v));
}

static void
add_str(json_object *obj, const char *key, const char *value)
{
	json_object_object_add(obj, key, json_object_new_string(value));
}

/* ---- events ------------------------------------------------------------ */

/* "<file_id>#<position>", malloc'd. */
static char *
make_id(const char *file_id, const char *position)
{
	size_t		n = strlen(file_id) + strlen(position) + 2;
	char	   *id = malloc(n);

	if (id != NULL)
		snprintf(id, n, "%s#%s", file_id, position);
	return id;
}

/* What the walk over a model carries along. */
typedef struct MapState
{
	const CdvizReportOptions *opt;
	json_object *events;		/* the batch being filled */
	size_t		batch;			/* events per batch */
	int			room;			/* slots a new batch array starts with */
	CdvizReportEmit emit;
	void	   *arg;
	bool		stopped;		/* emit said to stop */
} MapState;

/* Append ev to the batch, handed over once full; false once stopped. */
static bool
add_event(MapState *st, json_object *ev)
{
	json_object_array_add(st->events, ev);
	if (json_object_array_length(st->events) < st->batch)
		return true;
	st->stopped = !st->emit(st->events, st->arg);
	json_object_put(st->events);
	st->events = json_object_new_array_ext(st->room);
	return !st->stopped;
}

/* Counts of a suite's cases, nested suites included. */
typedef struct SuiteCounts
{
	long		tests;
	long		failures;
	long		errors;
	long		skipped;
} SuiteCounts;

/* A new event with its context; the subject is added by the caller. */
static json_object *
new_event(MapState *st, const char *type, const char *id, const char *ts)
{
	json_object *ev = json_object_new_object();
	json_object *ctx = json_object_new_object();

	add_str(ctx, "specversion", SPEC_VERSION);
	add_str(ctx, "id", id);
	add_str(ctx, "source", st->opt->source);
	add_str(ctx, "type", type);
	add_str(ctx, "timestamp", ts);
	json_object_object_add(ev, "context", ctx);
	return ev;
}

static json_object *
new_subject(json_object *ev, const char *id)
{
	json_object *subject = json_object_new_object();
	json_object *content = json_object_new_object();

	add_str(subject, "id", id);
	json_object_object_add(subject, "content", content);
	json_object_object_add(ev, "subject", subject);
	return content;
}

static json_object *
environment(MapState *st, json_object *suite)
{
	json_object *env = json_object_new_object();
	const char *host = member_str(suite, "hostname");

	add_str(env, "id", st->opt->environment_id && *st->opt->environment_id ?
			st->opt->environment_id : host && *host ? host : "unknown");
	return env;
}

/* A CDEvents severity, or NULL for what the report says otherwise. */
static const char *
cdevents_severity(const char *s)
{
	static const char *const known[] = {"low", "medium", "high", "critical"};

	for (int i = 0; s && i < 4; i++)
		if (strcmp(s, known[i]) == 0)
			return known[i];
	return NULL;
}

/* The event of one case; false once the mapping is stopped. */
static bool
map_case(MapState *st, json_object *tc, const char *suite_id, const char *suite_name,
		 json_object *suite, const char *position, const char *ts, SuiteCounts *counts)
{
	char	   *id;
	const char *outcome = member_str(tc, "outcome");
	const char *name = member_str(tc, "name");
	const char *classname = member_str(tc, "classname");
	const char *message = member_str(tc, "message");
	const char *ftype = member_str(tc, "type");
	const char *details;
	bool		skipped = outcome && strcmp(outcome, "skipped") == 0;
	json_object *ev;
	json_object *content;
	json_object *test_case = json_object_new_object();
	json_object *run = json_object_new_object();
	json_object *custom = json_object_new_object();
	char	   *case_id;
	size_t		n;

	if (outcome == NULL || (!skipped && strcmp(outcome, "success") != 0 &&
							strcmp(outcome, "failure") != 0 && strcmp(outcome, "error") != 0))
		outcome = "error";
	counts->tests++;
	counts->failures += strcmp(outcome, "failure") == 0;
	counts->errors += strcmp(outcome, "error") == 0;
	counts->skipped += skipped;
	id = make_id(st->opt->file_id, position);
	ev = new_event(st, skipped ? TYPE_CASE_SKIPPED : TYPE_CASE_FINISHED, id, ts);
	content = new_subject(ev, id);
	free(id);
	if (!skipped)
		add_str(content, "outcome", outcome);
	if (!skipped && cdevents_severity(member_str(tc, "severity")))
		add_str(content, "severity", cdevents_severity(member_str(tc, "severity")));
	if (ftype && *ftype && message && *message)
	{
		n = strlen(ftype) + strlen(message) + 3;
		case_id = malloc(n);
		snprintf(case_id, n, "%s: %s", ftype, message);
		add_str(content, "reason", case_id);
		free(case_id);
	}
	else if ((message && *message) || (ftype && *ftype))
		add_str(content, "reason", message && *message ? message : ftype);
	else if ((details = member_str(tc, "details")) != NULL)
	{
		/* jest-junit writes no message: the text's first line says it */
		n = strcspn(details, "\n");
		if (n > 200)
			for (n = 200; n > 0 && ((unsigned char) details[n] & 0xC0) == 0x80; n--)
				;
		case_id = strndup(details, n);
		add_str(content, "reason", case_id);
		free(case_id);
	}
	json_object_object_add(content, "environment", environment(st, suite));
	add_str(run, "id", suite_id);
	add_str(run, "source", st->opt->source);
	json_object_object_add(content, "testSuiteRun", run);

	/* the test case: the same across runs, unlike its run */
	if (name == NULL || *name == '\0')
		name = "(unnamed)";
	n = strlen(name) + strlen(classname ? classname : suite_name) + 2;
	case_id = malloc(n);
	snprintf(case_id, n, "%s%s%s", classname && *classname ? classname : suite_name,
			 (classname && *classname) || *suite_name ? "." : "", name);
	add_str(test_case, "id", case_id);
	add_str(test_case, "name", name);
	json_object_object_add(content, "testCase", test_case);
	free(case_id);

	copy_member(custom, "duration", tc, "duration");
	copy_member(custom, "classname", tc, "classname");
	copy_member(custom, "file", tc, "file");
	copy_member(custom, "line", tc, "line");
	copy_member(custom, "number", tc, "number");
	copy_member(custom, "todo", tc, "todo");
	copy_member(custom, "failureType", tc, "type");
	if (!cdevents_severity(member_str(tc, "severity")))
		copy_member(custom, "severity", tc, "severity");
	copy_member(custom, "details", tc, "details");
	add_str(custom, "report", st->opt->file_id);
	json_object_object_add(ev, "customData", custom);
	return add_event(st, ev);
}

/*
 * The events of one suite: its cases, its nested suites, then its own;
 * counts gets what ran below it.  start_us: the suite's start when its
 * timestamp does not say (a nested suite's parent's, started), else the
 * caller's default, which stands for the end: the duration is not added.
 * False once the mapping is stopped.  check_model() saw the depth, so
 * the positions fit POSITION_MAX.
 */
static bool
map_suite(MapState *st, json_object *suite, const char *position, const char *parent_id,
		  const char *parent_name, int64_t start_us, bool started, int depth,
		  SuiteCounts *counts)
{
	char	   *id;
	char		child_pos[POSITION_MAX];
	char		ts[64];
	char		reason[160];
	const char *name = member_str(suite, "name");
	const char *stamp = member_str(suite, "timestamp");
	const char *outcome = member_str(suite, "outcome");
	json_object *cases = member_array(suite, "cases");
	json_object *suites = member_array(suite, "suites");
	json_object *dur;
	json_object *ev;
	json_object *content;
	json_object *test_suite = json_object_new_object();
	json_object *custom = json_object_new_object();
	SuiteCounts mine = {0, 0, 0, 0};
	int64_t		end_us;
	char	   *full_name;
	size_t		n;
	bool		go_on = true;

	if (name == NULL || *name == '\0')
		name = depth == 1 && st->opt->suite_name ? st->opt->suite_name : "tests";
	/* a nested suite's name says where it is: "outer/inner" */
	n = strlen(parent_name) + strlen(name) + 2;
	full_name = malloc(n);
	snprintf(full_name, n, "%s%s%s", parent_name, *parent_name ? "/" : "", name);
	if (stamp && parse_report_time(stamp, strlen(stamp), &start_us))
		started = true;
	end_us = start_us;
	if (started && json_object_object_get_ex(suite, "duration", &dur) &&
		(json_object_is_type(dur, json_type_double) || json_object_is_type(dur, json_type_int)) &&
		json_object_get_double(dur) >= 0 && json_object_get_double(dur) <= 1e9 &&
		start_us > -62135596800000000LL && start_us < 253402300799999999LL)
		end_us += (int64_t) (json_object_get_double(dur) * 1e6);
	if (!format_timestamp(end_us, ts, sizeof(ts)) &&
		!format_timestamp(st->opt->default_timestamp_us, ts, sizeof(ts)))
		snprintf(ts, sizeof(ts), "1970-01-01T00:00:00Z");
	id = make_id(st->opt->file_id, position);

	for (size_t i = 0; go_on && cases && i < json_object_array_length(cases); i++)
	{
		if (!json_object_is_type(json_object_array_get_idx(cases, i), json_type_object))
			continue;
		snprintf(child_pos, sizeof(child_pos), "%s.c%zu", position, i);
		go_on = map_case(st, json_object_array_get_idx(cases, i), id, full_name, suite,
						 child_pos, ts, &mine);
	}
	for (size_t i = 0; go_on && suites && i < json_object_array_length(suites); i++)
	{
		if (!json_object_is_type(json_object_array_get_idx(suites, i), json_type_object))
			continue;
		snprintf(child_pos, sizeof(child_pos), "%s.s%zu", position, i);
		go_on = map_suite(st, json_object_array_get_idx(suites, i), child_pos, id, full_name,
						  start_us, started, depth + 1, &mine);
	}
	if (!go_on)
	{
		free(id);
		free(full_name);
		json_object_put(test_suite);
		json_object_put(custom);
		return false;
	}

	ev = new_event(st, TYPE_SUITE_FINISHED, id, ts);
	content = new_subject(ev, id);
	free(id);
	if (outcome == NULL || (strcmp(outcome, "failure") != 0 && strcmp(outcome, "error") != 0))
	{
		outcome = mine.errors ? "error" : mine.failures ? "failure" : "success";
		snprintf(reason, sizeof(reason), "%ld failed, %ld in error, %ld skipped, of %ld tests",
				 mine.failures, mine.errors, mine.skipped, mine.tests);
		add_str(content, "outcome", outcome);
		if (strcmp(outcome, "success") != 0)
			add_str(content, "reason", reason);
	}
	else
	{
		add_str(content, "outcome", outcome);
		copy_member(content, "reason", suite, "reason");
	}
	json_object_object_add(content, "environment", environment(st, suite));
	add_str(test_suite, "id", full_name);
	add_str(test_suite, "name", name);
	json_object_object_add(content, "testSuite", test_suite);

	copy_member(custom, "duration", suite, "duration");
	json_object_object_add(custom, "tests", json_object_new_int64(mine.tests));
	json_object_object_add(custom, "failures", json_object_new_int64(mine.failures));
	json_object_object_add(custom, "errors", json_object_new_int64(mine.errors));
	json_object_object_add(custom, "skipped", json_object_new_int64(mine.skipped));
	copy_member(custom, "hostname", suite, "hostname");
	if (parent_id)
		add_str(custom, "parent", parent_id);
	add_str(custom, "report", st->opt->file_id);
	json_object_object_add(ev, "customData", custom);

	counts->tests += mine.tests;
	counts->failures += mine.failures;
	counts->errors += mine.errors;
	counts->skipped += mine.skipped;
	free(full_name);
	return add_event(st, ev);
}

/*
 * Count the suites and cases of suites (an array), depth levels deep,
 * into *items; false with a problem past max or CDVIZ_REPORT_MAX_DEPTH.
 * What the mapping skips (an entry that is no object) is not counted.
 */
static bool
check_suites(json_object *suites, int depth, long max, long *items, CdvizProblems *problems)
{
	for (size_t i = 0; i < json_object_array_length(suites); i++)
	{
		json_object *suite = json_object_array_get_idx(suites, i);
		json_object *cases;
		json_object *nested;

		if (!json_object_is_type(suite, json_type_object))
			continue;
		if (depth > CDVIZ_REPORT_MAX_DEPTH)
		{
			cdviz_problems_add(problems, "$", "test suites are nested more than %d deep",
							   CDVIZ_REPORT_MAX_DEPTH);
			return false;
		}
		(*items)++;
		if ((cases = member_array(suite, "cases")) != NULL)
			for (size_t c = 0; c < json_object_array_length(cases); c++)
				*items += json_object_is_type(json_object_array_get_idx(cases, c),
											  json_type_object);
		if (*items > max)
		{
			cdviz_report_too_many(problems, max);
			return false;
		}
		if ((nested = member_array(suite, "suites")) != NULL &&
			!check_suites(nested, depth + 1, max, items, problems))
			return false;
	}
	return true;
}

bool
cdviz_report_map(json_object *model, const CdvizReportOptions *options, size_t batch,
				 CdvizReportEmit emit, void *arg, CdvizProblems *problems)
{
	MapState	st = {options, NULL, batch > 0 ? batch : 1, 0, emit, arg, false};
	json_object *suites = model ? member_array(model, "suites") : NULL;
	SuiteCounts total = {0, 0, 0, 0};
	long		items = 0;
	int			before = problems->count;

	if (options->file_id == NULL || *options->file_id == '\0')
		cdviz_problems_add(problems, "$", "a report's events need the file's identity");
	if (options->source == NULL || *options->source == '\0')
		cdviz_problems_add(problems, "$", "a report's events need a source");
	if (suites == NULL)
		cdviz_problems_add(problems, "suites", "the report model has no array of suites");
	/* refused before any event is handed over: a report is stored whole */
	if (problems->count > before ||
		!check_suites(suites, 1, cdviz_report_case_limit(options->max_cases), &items, problems))
		return false;
	/* the array grows as it fills: no huge one for a huge batch size */
	st.room = (int) (st.batch < (size_t) items + 1 ? st.batch : (size_t) items + 1);
	if (st.room > 4096)
		st.room = 4096;
	st.events = json_object_new_array_ext(st.room);
	for (size_t i = 0; !st.stopped && i < json_object_array_length(suites); i++)
	{
		char		pos[32];
		json_object *suite = json_object_array_get_idx(suites, i);

		if (!json_object_is_type(suite, json_type_object))
			continue;
		snprintf(pos, sizeof(pos), "s%zu", i);
		(void) map_suite(&st, suite, pos, NULL, "", options->default_timestamp_us, false, 1,
						 &total);
	}
	if (!st.stopped && json_object_array_length(st.events) > 0)
		st.stopped = !emit(st.events, arg);
	json_object_put(st.events);
	return !st.stopped;
}
