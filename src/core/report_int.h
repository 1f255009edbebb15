/*
 * report_int.h
 *	  What the report readers (report_junit.c, report_tap.c) share: the
 *	  model's builders (report_model.c).  Not for use outside src/core/.
 */
#ifndef CDVIZ_CORE_REPORT_INT_H
#define CDVIZ_CORE_REPORT_INT_H

#include <json-c/json.h>

#include "core/report.h"

/* A model being built: the case budget is shared by every suite. */
typedef struct ReportBuild
{
	json_object *model;
	long		items;			/* suites and cases so far */
	long		max_items;		/* and at most */
	CdvizProblems *problems;
} ReportBuild;

/* Start a model of the given format ("junit", "tap"); limits may be NULL. */
extern void cdviz_report_build_start(ReportBuild *b, const char *format,
									 const CdvizReportLimits *limits,
									 CdvizProblems *problems);

/* The problem of a report over its limit of max suites and cases. */
extern void cdviz_report_too_many(CdvizProblems *problems, long max);

/*
 * A new suite appended to parent's "suites" (parent NULL: the model's);
 * NULL with a problem once the report holds too many items.
 */
extern json_object *cdviz_report_add_suite(ReportBuild *b, json_object *parent);

/* A new case appended to suite's "cases", or NULL as above. */
extern json_object *cdviz_report_add_case(ReportBuild *b, json_object *suite);

/*
 * Set obj[key] to len bytes of text, made valid UTF-8 (an invalid byte
 * becomes U+FFFD, a NUL is dropped), cut at a character boundary at max
 * bytes when max is not zero (then "..." marks the cut).
 */
extern void cdviz_report_set_text(json_object *obj, const char *key,
								  const char *s, size_t len, size_t max);

/*
 * Set obj[key] to the number of seconds s (len bytes) says: a decimal
 * number, digits grouped by commas allowed, scaled by scale; nothing when
 * it is no number of seconds up to 1e9 (some 31 years).
 */
extern void cdviz_report_set_seconds(json_object *obj, const char *key,
									 const char *s, size_t len, double scale);

#endif							/* CDVIZ_CORE_REPORT_INT_H */
