/*
 * event.h
 *	  Validate a CDEvent and extract the columns the lake stores.
 *
 * Part of the PostgreSQL-free core: plain C, no PostgreSQL header.
 */
#ifndef CDVIZ_CORE_EVENT_H
#define CDVIZ_CORE_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/problems.h"

/* json-c's document type; its header clashes with PostgreSQL's fmgrprotos.h */
struct json_object;

typedef enum CdvizValidation
{
	CDVIZ_VALIDATION_OFF,		/* only what storage needs */
	CDVIZ_VALIDATION_LENIENT,	/* required fields and types; extra fields ok */
	CDVIZ_VALIDATION_STRICT		/* the official schema's verdict */
} CdvizValidation;

/*
 * A string borrowed from the input (the json-c document of an event, a
 * package URL): not NUL-terminated, and may hold NUL bytes.
 */
typedef struct CdvizStr
{
	const char *ptr;			/* NULL when absent */
	size_t		len;
} CdvizStr;

/* The normalised columns of one event; strings point into the document. */
typedef struct CdvizEventInfo
{
	CdvizStr	context_id;
	CdvizStr	context_source;
	CdvizStr	type;
	CdvizStr	subject;		/* "service", or "<tool>-<subject>" if custom */
	CdvizStr	predicate;
	CdvizStr	type_version;
	CdvizStr	spec_version;	/* context.specversion, else context.version */
	CdvizStr	subject_id;
	CdvizStr	chain_id;
	int64_t		timestamp_us;	/* context.timestamp, microseconds since 1970 */
	bool		custom;			/* a dev.cdeventsx type */
	const char *judged_by;		/* what validated it, e.g. "0.5.1 schema" */
} CdvizEventInfo;

/*
 * Check event under mode; on success fill info and return true.  On
 * failure append every problem found and return false.  Thread-compatible
 * once cdviz_schemas_load() has run (it runs on the first call).
 */
extern bool cdviz_event_check(struct json_object *event, CdvizValidation mode,
							  CdvizEventInfo *info, CdvizProblems *problems);

/*
 * The same, told whether the document can hold no NUL character (one built
 * from PostgreSQL's jsonb, which refuses \u0000): then the search for one,
 * a walk over every string, is skipped.
 */
extern bool cdviz_event_check_ex(struct json_object *event, CdvizValidation mode,
								 bool nul_free, CdvizEventInfo *info,
								 CdvizProblems *problems);

/*
 * Parse one JSON document of len bytes.  NULL with a problem saying where
 * and why when it is not JSON, or has more than white space after it.
 * Release the result with cdviz_json_free().
 */
extern struct json_object *cdviz_json_parse(const char *raw, size_t len,
											CdvizProblems *problems);
extern void cdviz_json_free(struct json_object *doc);

/* Parse "strict"/"lenient"/"off"; false when unknown. */
extern bool cdviz_validation_from_name(const char *name, CdvizValidation *mode);

#endif							/* CDVIZ_CORE_EVENT_H */
