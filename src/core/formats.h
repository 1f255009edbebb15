/*
 * formats.h
 *	  String formats the CDEvents schemas use: RFC 3339 date-time and
 *	  RFC 3986 URI / URI-reference.
 *
 * Part of the PostgreSQL-free core: plain C, no PostgreSQL header.
 */
#ifndef CDVIZ_CORE_FORMATS_H
#define CDVIZ_CORE_FORMATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Parse an RFC 3339 date-time ("2023-03-20T14:27:05.315384Z",
 * "2023-03-20t14:27:05+02:00").  On success stores microseconds since
 * 1970-01-01T00:00:00Z (fraction digits past the sixth are truncated; a
 * leap second 60 counts as the first second of the next minute).
 */
extern bool cdviz_parse_datetime(const char *s, size_t len, int64_t *epoch_us);

/* RFC 3986 "URI": a scheme is required. */
extern bool cdviz_is_uri(const char *s, size_t len);

/* RFC 3986 "URI-reference": a URI or a relative reference. */
extern bool cdviz_is_uri_reference(const char *s, size_t len);

#endif							/* CDVIZ_CORE_FORMATS_H */
