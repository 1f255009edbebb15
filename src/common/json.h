/*
 * json.h
 *	  JSON text to jsonb (jsonb_parse.c), jsonb to the json-c documents
 *	  the core checks (jsonb_to_json.c), and small JSON objects written as
 *	  text (json_write.c).
 */
#ifndef CDVIZ_COMMON_JSON_H
#define CDVIZ_COMMON_JSON_H

#include "postgres.h"

#include "lib/stringinfo.h"
#include "utils/jsonb.h"

struct json_object;

/*
 * A jsonb object or array as a json-c document, to be freed before the
 * current memory context is reset (jsonb_to_json.c).
 */
extern struct json_object *cdviz_jsonb_to_json(Jsonb *jb);

/*
 * JSON text (valid in the database encoding, no NUL byte) as jsonb, the
 * same value jsonb_in makes of it, faster; NULL when it is declined: not
 * JSON, a scalar, or something only jsonb_in should judge.  Raises no
 * error of its own but for running out of memory (jsonb_parse.c).
 */
extern Jsonb *cdviz_jsonb_from_text(const char *text, size_t len);

/*
 * The same, NUL-terminated text, where what the scanner declines goes to
 * jsonb_in in a subtransaction: NULL with *edata (the caller frees it)
 * when jsonb_in refuses the text (a data exception, or a program limit
 * such as jsonb's size); any other error is raised (jsonb_parse.c).
 */
extern Jsonb *cdviz_jsonb_parse(const char *text, size_t len, ErrorData **edata);

/*
 * A json-c document as jsonb (through its text, as cdviz_jsonb_parse()
 * reads it), and the elements of a json-c array so, *n of them (none when
 * it is no array); raises when jsonb refuses one (jsonb_to_json.c).
 */
extern Jsonb *cdviz_json_to_jsonb(struct json_object *doc);
extern Jsonb **cdviz_json_array_to_jsonb(struct json_object *array, int *n);

/*
 * Append "key": value to the JSON object being written in buf (which holds
 * its opening brace): value a JSON string, or null when NULL; a comma
 * before it unless it is the first member (json_write.c).
 */
extern void cdviz_json_add_text(StringInfo buf, const char *key, const char *value);

#endif							/* CDVIZ_COMMON_JSON_H */
