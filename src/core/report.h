/*
 * report.h
 *	  Test reports (JUnit XML, TAP 13 and 14) read into a neutral JSON
 *	  model, and the model turned into CDEvents test events.
 *
 * Two steps, so that a source's transformer can be handed the report
 * itself (the model) and the built-in mapping is a function of it:
 *
 *	  model = cdviz_report_parse(CDVIZ_REPORT_JUNIT, data, len, &limits, &problems);
 *	  ok = cdviz_report_map(model, &options, 500, store_batch, arg, &problems);
 *
 * The model (a json-c object; every member but "format", "suites",
 * "cases", "name" and "outcome" is left out when the report does not say):
 *
 *	  {"format": "junit" | "tap", "version": 13 | 14 (TAP only),
 *	   "suites": [suite, ...]}
 *	  suite: {"name", "timestamp" (as written), "duration" (seconds),
 *			  "hostname", "outcome" ("failure" | "error", when the report
 *			  says so of the suite itself: a TAP "Bail out!", a subtest
 *			  closed by "not ok"), "reason", "cases": [case, ...],
 *			  "suites": [suite, ...] (nested suites, TAP subtests)}
 *	  case:  {"name", "classname", "file", "line", "number" (TAP),
 *			  "duration" (seconds), "outcome": "success" | "failure" |
 *			  "error" | "skipped", "todo": true (TAP # TODO), "message",
 *			  "type" (the failure's type), "severity" (as written),
 *			  "details" (failure text or TAP YAML block, cut at
 *			  CDVIZ_REPORT_MAX_DETAILS bytes)}
 *
 * The events, in report order (a suite's cases, its nested suites, then
 * the suite itself), all of CDEvents 0.5.1:
 *	- dev.cdevents.testcaserun.finished.0.3.0 for a case that ran: outcome
 *	  success, failure or error; reason the failure's "type: message";
 *	  severity when the report's is one of CDEvents' (low .. critical);
 *	- dev.cdevents.testcaserun.skipped.0.2.0 for a skipped case, reason
 *	  the skip's message;
 *	- dev.cdevents.testsuiterun.finished.0.3.0 per suite: outcome error if
 *	  any case below it erred, else failure if any failed, else success
 *	  (or what the suite itself says), reason "N failed, M errors of T".
 * A case's subject.content.testSuiteRun is its suite's run; durations and
 * what CDEvents has no field for (classname, counts, the parent suite...)
 * go to customData, which the schemas leave open.
 *
 * Identity: context.id and subject.id are "<file_id>#<position>", the
 * position being the suite indexes and the case index ("s0", "s0.s1.c4"),
 * so reading the same file again gives the same ids.  The timestamp of a
 * suite's events is the suite's end (its timestamp attribute, read as UTC
 * when it names no offset, plus its duration), else the caller's default:
 * the lake identifies an event by source, id and timestamp, so the
 * default must be stable too (e.g. the file's modification time).
 *
 * Memory: the events are handed to the caller a batch at a time and freed
 * when it returns, so mapping a report costs the model and one batch,
 * whatever the number of cases.  The model is a json-c object per suite
 * and per case, about 1 kB each: the case limit (max_cases, default
 * CDVIZ_REPORT_DEFAULT_CASES) is what bounds it, and both the readers and
 * the mapping enforce it.  The JUnit reader counts <testsuite> and
 * <testcase> elements as libxml2 reads them and stops past the limit, so
 * a refused report does not cost its whole document tree either.
 *
 * Safety: XML is read by libxml2 without network access, without entity
 * substitution and without loading any DTD; a DOCTYPE that declares
 * entities is refused outright (billion laughs, external entities), and
 * no problem message quotes an entity's content.  Inputs over
 * max_bytes, and models with more than max_cases suites and cases, are
 * refused.
 *
 * Part of the PostgreSQL-free core: plain C, no PostgreSQL header.
 * Memory comes from malloc / json-c: release results with json_object_put().
 */
#ifndef CDVIZ_CORE_REPORT_H
#define CDVIZ_CORE_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/problems.h"

struct json_object;

/* Refused above this size unless the caller gives another limit. */
#define CDVIZ_REPORT_MAX_BYTES (64 * 1024 * 1024)
/* Suites and cases in one report unless the caller gives another limit. */
#define CDVIZ_REPORT_DEFAULT_CASES 100000
/* The highest limit a caller may give (a source's max_report_cases). */
#define CDVIZ_REPORT_MAX_CASES 1000000
/* Suites nested in suites (JUnit) or subtests in subtests (TAP). */
#define CDVIZ_REPORT_MAX_DEPTH 32
/* A failure's text or a YAML block kept in "details", in bytes. */
#define CDVIZ_REPORT_MAX_DETAILS 4096

typedef enum CdvizReportFormat
{
	CDVIZ_REPORT_JUNIT,
	CDVIZ_REPORT_TAP
} CdvizReportFormat;

/* Limits of one parse; NULL or zero members mean the defaults above. */
typedef struct CdvizReportLimits
{
	size_t		max_bytes;
	long		max_cases;		/* suites and cases, up to
								 * CDVIZ_REPORT_MAX_CASES */
} CdvizReportLimits;

/* What the mapping to events needs from the caller. */
typedef struct CdvizReportOptions
{
	const char *file_id;		/* the file's identity, e.g. "reports/a.xml@
								 * sha256:..." (required, non-empty) */
	const char *source;			/* context.source (required, non-empty) */
	const char *suite_name;		/* name of a suite the report leaves
								 * unnamed (a TAP file): e.g. the file's
								 * name; NULL: "tests" */
	const char *environment_id; /* subject.content.environment.id; NULL:
								 * the suite's hostname, else "unknown" */
	int64_t		default_timestamp_us;	/* microseconds since 1970, for
										 * suites with no timestamp */
	long		max_cases;		/* suites and cases the model may hold;
								 * zero: CDVIZ_REPORT_DEFAULT_CASES */
} CdvizReportOptions;

/*
 * Takes a batch of events (a json-c array of event objects, never empty)
 * that the mapping frees when it returns: take a reference
 * (json_object_get) to keep one.  Returning false stops the mapping.
 */
typedef bool (*CdvizReportEmit) (struct json_object *events, void *arg);

/* "junit" or "tap"; false when unknown. */
extern bool cdviz_report_format_from_name(const char *name, CdvizReportFormat *format);
extern const char *cdviz_report_format_name(CdvizReportFormat format);

/*
 * Read a report of len bytes (not NUL-terminated; may be) into the model.
 * NULL with at least one problem when it is refused: not the format,
 * malformed, too large, or (XML) declaring entities.
 */
extern struct json_object *cdviz_report_parse(CdvizReportFormat format,
											  const char *data, size_t len,
											  const CdvizReportLimits *limits,
											  CdvizProblems *problems);
extern struct json_object *cdviz_junit_parse(const char *data, size_t len,
											 const CdvizReportLimits *limits,
											 CdvizProblems *problems);
extern struct json_object *cdviz_tap_parse(const char *data, size_t len,
										   const CdvizReportLimits *limits,
										   CdvizProblems *problems);

/* A case limit as given (zero: the default), within 1 .. CDVIZ_REPORT_MAX_CASES. */
extern long cdviz_report_case_limit(long max_cases);

/*
 * The CDEvents of a model, handed to emit in report order, batch events at
 * a time (the last batch may hold fewer; a model without cases or suites
 * emits nothing).  False with problems, before anything is emitted, when
 * the options are incomplete or the model is not one within the limits
 * (no array of suites, more than options->max_cases suites and cases,
 * nested deeper than CDVIZ_REPORT_MAX_DEPTH); false without a new problem
 * when emit stopped it.
 */
extern bool cdviz_report_map(struct json_object *model, const CdvizReportOptions *options,
							 size_t batch, CdvizReportEmit emit, void *arg,
							 CdvizProblems *problems);

#endif							/* CDVIZ_CORE_REPORT_H */
