/*
 * schema.h
 *	  A JSON Schema (draft 2020-12) evaluator for the keywords the CDEvents
 *	  schemas use, over json-c values.
 *
 * Supported: type, required, properties, additionalProperties (boolean or
 * schema), enum, minLength, pattern (POSIX ERE), format (date-time, uri,
 * uri-reference), items, anyOf, oneOf, $ref (resolved against $id).
 * Annotations (contentEncoding, description, ...) are ignored, as the
 * specification says.  Part of the PostgreSQL-free core.
 */
#ifndef CDVIZ_CORE_SCHEMA_H
#define CDVIZ_CORE_SCHEMA_H

#include <stdbool.h>

#include <json-c/json.h>

#include "core/problems.h"

/* One embedded schema document (see cdevents_schemas.c). */
typedef struct CdvizSchemaSource
{
	const char *release;		/* CDEvents release, "0.5.1" */
	const char *file;			/* where it came from, for messages */
	const char *text;			/* the minified JSON document */
} CdvizSchemaSource;

extern const CdvizSchemaSource cdviz_schema_sources[];
extern const int cdviz_schema_source_count;

typedef struct CdvizSchema CdvizSchema;

/* What to check: strict is the schema's own verdict. */
typedef enum CdvizSchemaLevel
{
	CDVIZ_SCHEMA_STRICT,
	CDVIZ_SCHEMA_LENIENT,		/* required fields and types only */
	CDVIZ_SCHEMA_LENIENT_BRANCH /* internal: lenient inside anyOf/oneOf */
} CdvizSchemaLevel;

/* A compiled event schema and what it describes. */
typedef struct CdvizEventSchema
{
	const char *release;		/* "0.5.1" */
	const char *type;			/* the context.type it accepts, or NULL for
								 * the custom-event schema */
	size_t		type_len;		/* strlen(type): compared first, per event */
	const char *version_field;	/* "specversion" or "version" */
	const CdvizSchema *root;
} CdvizEventSchema;

/*
 * Compile the embedded schemas (once per process; later calls are free).
 * Returns false with a message when the embedded data is broken, which
 * only a bad regeneration can cause.
 */
extern bool cdviz_schemas_load(const char **error);

/* All compiled event schemas, in release order. */
extern int	cdviz_event_schema_count(void);
extern const CdvizEventSchema *cdviz_event_schema_at(int i);

/*
 * Evaluate value against schema, appending problems with paths below
 * base_path ("" for the document root).  Returns true when valid.
 */
extern bool cdviz_schema_validate(const CdvizSchema *schema, json_object *value,
								  CdvizSchemaLevel level, CdvizProblems *problems);


/*
 * Compile a schema document given as text (used for the generic event
 * rules); $ref inside resolves against base_id, or the document's own
 * $id when base_id is NULL.  NULL with *error set on
 * failure.  The result lives for the process.
 */
extern const CdvizSchema *cdviz_schema_compile_text(const char *text, const char *base_id,
													const char **error);

#endif							/* CDVIZ_CORE_SCHEMA_H */
