/*
 * rfc3339.h
 *	  A time as the CDEvents context.timestamp writes it (rfc3339.c).
 */
#ifndef CDVIZ_COMMON_RFC3339_H
#define CDVIZ_COMMON_RFC3339_H

#include "postgres.h"

#include "datatype/timestamp.h"

/*
 * t as RFC 3339 in UTC ("2024-05-01T10:20:30Z"), with six digits of
 * fraction when it has any, palloc'd; raises when out of range.
 */
extern char *cdviz_rfc3339_utc(TimestampTz t);

/* Microseconds since 1970 as a TimestampTz, and back. */
extern TimestampTz cdviz_unix_us_to_timestamptz(int64 us);
extern int64 cdviz_timestamptz_to_unix_us(TimestampTz ts);

#endif							/* CDVIZ_COMMON_RFC3339_H */
