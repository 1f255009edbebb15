/*
 * subxact.h
 *	  Running a piece of work in a subtransaction and catching its error,
 *	  the way PL/pgSQL's EXCEPTION blocks do: what fails is rolled back,
 *	  the caller goes on in its transaction.  And catching an error to
 *	  raise it again a little later, past code that is not PostgreSQL's.
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

/*
 * Run fn(arg) without a subtransaction and return its error, copied into
 * the caller's memory context, or NULL.  The transaction is then in no
 * state to go on: the caller only frees what no memory context holds
 * (json-c, the core's) and raises the error again (ReThrowError).  For
 * callbacks the core calls, so that an error does not jump over the
 * core's own cleanup.
 */
extern ErrorData *cdviz_catch(void (*fn) (void *arg), void *arg);

#endif							/* CDVIZ_COMMON_SUBXACT_H */
