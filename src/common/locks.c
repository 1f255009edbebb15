/*
 * locks.c
 *	  Transaction locks that no SQL role can take or hold against cdviz.
 *
 * They are advisory locks of this database whose fourth tag field is 3.
 * The SQL advisory lock functions fill that field with 1 (one bigint key)
 * or 2 (two integer keys) and cannot name anything else, so a role that
 * may call pg_advisory_lock() still cannot take one of these: a read-only
 * role cannot delay a writer.  pg_locks shows them as "advisory" with
 * objsubid 3, and the deadlock detector sees them like any other lock.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/array.h"

#include "common/locks.h"
#include "common/version.h"

/* What no SQL advisory lock function puts in locktag_field4. */
#define CDVIZ_LOCKTAG_KIND 3

PG_FUNCTION_INFO_V1(cdviz_lock_keys);

/* See locks.h. */
void
cdviz_lock_key(uint32 class, uint32 key)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, class, key, CDVIZ_LOCKTAG_KIND);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
}

/*
 * cdviz._lock_keys(class integer, keys integer[]) RETURNS void
 *
 * Takes the transaction locks (class, key) in the order of keys: callers
 * that may lock several keys pass them sorted, so that two of them never
 * wait for each other in opposite orders.
 */
Datum
cdviz_lock_keys(PG_FUNCTION_ARGS)
{
	uint32		class = (uint32) PG_GETARG_INT32(0);
	ArrayType  *keys = PG_GETARG_ARRAYTYPE_P(1);
	Datum	   *elems;
	bool	   *nulls;
	int			n;

	cdviz_check_version();
	deconstruct_array(keys, INT4OID, sizeof(int32), true, TYPALIGN_INT,
					  &elems, &nulls, &n);
	for (int i = 0; i < n; i++)
	{
		if (!nulls[i])
			cdviz_lock_key(class, (uint32) DatumGetInt32(elems[i]));
	}
	PG_RETURN_VOID();
}
