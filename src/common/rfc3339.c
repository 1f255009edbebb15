/*
 * rfc3339.c
 *	  Times written the way events carry them: what a transformer's events
 *	  get as their default context.timestamp, and what a source tells its
 *	  transformer a file's modification time is, so that the one can be
 *	  made again from the other.
 */
#include "postgres.h"

#include "utils/datetime.h"
#include "utils/timestamp.h"

#include "common/rfc3339.h"

/* See rfc3339.h. */
char *
cdviz_rfc3339_utc(TimestampTz t)
{
	struct pg_tm tm;
	fsec_t		fsec;

	if (timestamp2tm(t, NULL, &tm, &fsec, NULL, NULL) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range")));
	if (fsec == 0)
		return psprintf("%04d-%02d-%02dT%02d:%02d:%02dZ",
						tm.tm_year, tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
	return psprintf("%04d-%02d-%02dT%02d:%02d:%02d.%06dZ",
					tm.tm_year, tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int) fsec);
}

/* See rfc3339.h. */
TimestampTz
cdviz_unix_us_to_timestamptz(int64 us)
{
	return (TimestampTz) (us - (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY);
}

/* See rfc3339.h. */
int64
cdviz_timestamptz_to_unix_us(TimestampTz ts)
{
	return (int64) ts + (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY;
}
