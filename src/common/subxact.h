/*
 * subxact.h
 *	  Running a piece of work in a subtransaction and catching its error,
 *	  the way PL/pgSQL's EXCEPTION blocks do: what fails is rolled back,
 *	  the caller goes on in its transaction.
 */
#ifndef CDVIZ_COMMON_SUBXACT_H
#define CDVIZ_COMMON_SUBXACT_H

#include "postgres.h"

/*
 * Run fn(arg) in an internal subtransaction, in the caller's memory
 * context.  Returns NULL when it completed (its work stays), or, when it
 * raised, the error copied into errcxt (the caller's context when NULL)
 * after the subtransaction was rolled back.  Either way the caller's
 * memory context and resource owner are current again.  The caller decides
 * what to rethrow (ReThrowError) and frees the copy (FreeErrorData).
 */
extern ErrorData *cdviz_subxact(void (*fn) (void *arg), void *arg, MemoryContext errcxt);

#endif							/* CDVIZ_COMMON_SUBXACT_H */
