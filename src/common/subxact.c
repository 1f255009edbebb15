/*
 * subxact.c
 *	  See subxact.h.  One implementation of the dance every caller of
 *	  BeginInternalSubTransaction() must get right: switch back to its own
 *	  memory context after starting the subtransaction, copy the error out
 *	  before rolling back (the error lives in ErrorContext), and restore
 *	  the resource owner, which the rollback leaves pointing at the parent
 *	  transaction's.
 */
#include "postgres.h"

#include "access/xact.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "common/subxact.h"

/* See subxact.h. */
ErrorData *
cdviz_subxact(void (*fn) (void *arg), void *arg, MemoryContext errcxt)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	ErrorData  *edata = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(errcxt ? errcxt : cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return edata;
}

/* See subxact.h. */
ErrorData *
cdviz_catch(void (*fn) (void *arg), void *arg)
{
	MemoryContext cxt = CurrentMemoryContext;
	ErrorData  *edata = NULL;

	PG_TRY();
	{
		fn(arg);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	return edata;
}
