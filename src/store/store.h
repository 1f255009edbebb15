/*
 * store.h
 *	  The one way events enter the lake: validate, deduplicate, insert in
 *	  one statement per batch, keep dead letters.  Every source (SQL, HTTP,
 *	  folder, S3, NATS) hands its input here as an array of items.
 */
#ifndef CDVIZ_STORE_H
#define CDVIZ_STORE_H

#include "postgres.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/jsonb.h"

#include "core/event.h"
#include "core/problems.h"
#include "common/json.h"
#include "common/spi_util.h"

typedef enum CdvizItemStatus
{
	CDVIZ_ITEM_STORED,			/* new row in the lake */
	CDVIZ_ITEM_DUPLICATE,		/* a retransmission: the lake already had it */
	CDVIZ_ITEM_REJECTED,		/* not an event: see problems */
	CDVIZ_ITEM_WITHHELD			/* valid, but not stored: another item of an
								 * all-or-nothing batch was rejected */
} CdvizItemStatus;

/* One input document and, after cdviz_store_items(), its fate. */
typedef struct CdvizItem
{
	/*
	 * input: raw (what a dead letter keeps), or jsonb with json, in which
	 * case raw is printed from jsonb only if a dead letter needs it
	 */
	const char *raw;			/* the text as received, NUL-terminated */
	size_t		raw_len;
	Jsonb	   *jsonb;			/* the payload when the caller has it, or
								 * NULL: built from raw */
	struct json_object *json;	/* optional: raw already parsed by the caller
								 * (as cdviz_json_parse() parses it), or NULL:
								 * parsed here.  The store takes it: frees it
								 * once checked and sets it to NULL; one left
								 * by an error is freed by
								 * cdviz_store_release_items() */
	const char *origin_ref;		/* where it came from: peer+path, file:line */
	const char *received;		/* what a dead letter keeps instead of raw,
								 * or NULL: the CloudEvent raw was taken out
								 * of, as received */
	size_t		received_len;
	const char *envelope;		/* JSON text for the dead letter's envelope
								 * column (how raw arrived), or NULL */
	bool		no_dead_letter; /* report rejection without storing it */
	int			unit;			/* cdviz_store_items_atomic(): items of one
								 * unit (adjacent) are stored all or nothing */

	/* output */
	CdvizItemStatus status;
	int64		event_id;		/* lake id, stored or duplicate */
	int64		rejected_id;	/* rejected_events id, or 0 */
	CdvizProblems problems;		/* why it was rejected */

	/* private to the store */
	int			first_of_key;	/* in-batch duplicate: index of the first */
} CdvizItem;

/* Totals of one call, for answers and metrics. */
typedef struct CdvizStoreResult
{
	int64		stored;
	int64		duplicates;
	int64		rejected;
	int64		withheld;
} CdvizStoreResult;

/* cdviz.validation, set in postgresql.conf (superuser only). */
extern int	cdviz_validation;

extern void cdviz_store_define_gucs(void);

/*
 * Install the utility hook that lets pg_restore recreate the lake's
 * partitions (lake_restore.c).
 */
extern void cdviz_lake_restore_init(void);

/*
 * Store items in the current transaction.  origin names the source
 * ('sql', 'http', 'fs', 's3', 'nats', 'webhook').  Never raises for bad
 * input: each item's status says what happened.  Items' problems (and a
 * json an error left untaken) must be released with
 * cdviz_store_release_items().
 */
extern CdvizStoreResult cdviz_store_items(CdvizItem *items, int nitems, const char *origin);

/*
 * The same, all or nothing per unit: when any item of a unit is rejected,
 * none of that unit is stored (its valid ones are WITHHELD); the other
 * units are stored.  A unit is a run of adjacent items with the same unit
 * number.  For callers that keep each unit's whole input elsewhere and
 * will submit it again whole (webhook deliveries, one unit each).
 */
extern CdvizStoreResult cdviz_store_items_atomic(CdvizItem *items, int nitems, const char *origin);
extern void cdviz_store_release_items(CdvizItem *items, int nitems);

/*
 * Keep input that is not an event in cdviz.rejected_events, in the current
 * transaction; returns its id.  For sources that reject before the store
 * sees an item (a body that is no envelope, a file that is not JSON).
 */
extern int64 cdviz_store_dead_letter(const char *origin, const char *origin_ref,
									 const char *raw, size_t raw_len,
									 const CdvizProblems *problems);

/*
 * The same with the envelope it came in: JSON text for the envelope
 * column (see cdviz.rejected_events), or NULL.
 */
extern int64 cdviz_store_dead_letter_enveloped(const char *origin, const char *origin_ref,
											   const char *raw, size_t raw_len,
											   const char *envelope,
											   const CdvizProblems *problems);

/*
 * Fill item from a jsonb value (an event, or anything a caller was given
 * as one), with origin_ref for its dead letter (store_items.c).
 */
extern void cdviz_item_from_jsonb(CdvizItem *item, Jsonb *jb, const char *origin_ref);

/*
 * The problems of the rejected items as a jsonb array of
 * {"index": n, "path": …, "message": …}, index from 0.
 */
extern Jsonb *cdviz_items_problems(const CdvizItem *items, int nitems);

/* Check one document without storing it (cdviz.validate). */
extern bool cdviz_store_check(const char *raw, size_t raw_len, CdvizProblems *problems);

#endif							/* CDVIZ_STORE_H */
