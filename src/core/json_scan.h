/*
 * json_scan.h
 *	  A strict JSON (RFC 8259) scanner that reports what it reads, one
 *	  token at a time, with strings unescaped where they stand.
 *
 * For webhook bodies and event payloads, which become jsonb: PostgreSQL
 * 15's JSON lexer appends every character of every string to a buffer
 * one call at a time, which makes parsing a large GitHub body cost more
 * than running its transformer.  This scanner hands out each string as a pointer into the
 * text, unescaped in place (an escape never gets longer than what it
 * stands for), so a caller can build its values without copying.
 *
 * Strict by design, to be used in front of PostgreSQL's own parser: what
 * it accepts, jsonb input accepts and reads the same way.  It refuses
 * what is not JSON, and also what jsonb refuses (\u0000, lone surrogate
 * escapes) or what it leaves to the other parser (a scalar at top level,
 * nesting deeper than CDVIZ_JSON_MAX_DEPTH).  The caller then parses the
 * text with PostgreSQL's parser, which words the error.
 *
 * The text must be valid UTF-8 (the caller checks it) without NUL bytes;
 * \u escapes are decoded to UTF-8.
 *
 * Part of the PostgreSQL-free core: plain C, no PostgreSQL header.
 */
#ifndef CDVIZ_CORE_JSON_SCAN_H
#define CDVIZ_CORE_JSON_SCAN_H

#include <stdbool.h>
#include <stddef.h>

/* Deepest nesting of objects and arrays scanned; deeper is refused. */
#define CDVIZ_JSON_MAX_DEPTH 256

typedef enum CdvizJsonToken
{
	CDVIZ_JSON_OBJECT_START,
	CDVIZ_JSON_OBJECT_END,
	CDVIZ_JSON_ARRAY_START,
	CDVIZ_JSON_ARRAY_END,
	CDVIZ_JSON_KEY,				/* s, len: the member name, unescaped */
	CDVIZ_JSON_STRING,			/* s, len: the value, unescaped */
	CDVIZ_JSON_NUMBER,			/* s, len: the number as written */
	CDVIZ_JSON_TRUE,
	CDVIZ_JSON_FALSE,
	CDVIZ_JSON_NULL
} CdvizJsonToken;

/*
 * Called for each token in document order; s points into the scanned
 * text (not NUL-terminated) and stays valid as long as the text.  Returns
 * false to stop the scan.
 */
typedef bool (*CdvizJsonEmit) (void *arg, CdvizJsonToken token, const char *s, size_t len);

/*
 * Scan the object or array in text[0, len), which it modifies (strings are
 * unescaped in place), calling emit for every token.  True when the whole
 * text is one such document and emit never said stop.
 */
extern bool cdviz_json_scan(char *text, size_t len, CdvizJsonEmit emit, void *arg);

#endif							/* CDVIZ_CORE_JSON_SCAN_H */
