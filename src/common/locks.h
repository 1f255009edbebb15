/*
 * locks.h
 *	  Transaction locks that only cdviz can take.
 *
 * cdviz serialises some of its writers on keys (an environment's service,
 * a lake month, a webhook delivery).  An advisory lock would do, but any
 * role may call pg_advisory_lock() with the same keys and hold it: a
 * read-only role could stall ingestion.  These locks are advisory locks
 * of a kind no SQL function takes (see locks.c).
 */
#ifndef CDVIZ_COMMON_LOCKS_H
#define CDVIZ_COMMON_LOCKS_H

#include "postgres.h"

/* The lock classes (first key), as four-letter tags. */
#define CDVIZ_LOCK_SERVICE	0x63647673	/* "cdvs": an (environment, service) */
#define CDVIZ_LOCK_WEBHOOK	0x6364767a	/* "cdvz": a webhook delivery */

/* Take the transaction lock (class, key), waiting for it. */
extern void cdviz_lock_key(uint32 class, uint32 key);

#endif							/* CDVIZ_COMMON_LOCKS_H */
