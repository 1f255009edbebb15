/*
 * source_item.h
 *	  One item a source read — a file, an S3 object, a registry's tag —
 *	  made into stored events, with the webhooks' transformer contract: the
 *	  source's transformer, a SQL function (meta jsonb, body jsonb) RETURNS
 *	  SETOF jsonb, when it has one, else the built-in mapping of its kind or
 *	  format.  What the folder and S3 readers (src/poll/) and any other kind
 *	  of source call for each item, in the transaction that also records
 *	  the item's progress:
 *
 *		CdvizSourceItem item = {0};
 *		char	   *error;
 *
 *		item.source = src->name;
 *		item.transformer = src->transformer;
 *		item.origin = "fs";
 *		item.origin_ref = path;
 *		item.meta = meta;			-- with "id", "source_uri", "mtime"
 *		item.body = body;			-- or NULL
 *		item.builtin = my_mapping;	-- or NULL when a transformer is required
 *		counts = cdviz_source_item_store(&item, &error);
 *
 * With a transformer, each jsonb it returns is a CDEvent whose context is
 * completed as a webhook's are: context.id "<meta.id>#<n>" (n its
 * position in the output), context.source meta.source_uri and
 * context.timestamp meta.mtime when it has none, so that the same item
 * makes the same events, which the lake then stores once.  Each is
 * validated and stored like any other event: an invalid one is a dead
 * letter of its own (origin_ref "<origin_ref>[<n>]").  {"ignored":
 * "reason"} outputs are left out.  A transformer that raises keeps the
 * item as one dead letter in cdviz.rejected_events, as it was handed
 * over: raw the body's JSON text ('' for a SQL null body), envelope
 * {"mode": "transformer", "source": <name>, "transformer": <function>,
 * "sqlstate": <its SQLSTATE>, "meta": <meta>}, problems the error text.
 * It does not raise: the source goes on with its next item, and
 * cdviz.retransform_source() runs the (fixed) transformer again over the
 * dead letter (cdviz._source_retransform(), source_item_sql.c).
 */
#ifndef CDVIZ_WEBHOOK_SOURCE_ITEM_H
#define CDVIZ_WEBHOOK_SOURCE_ITEM_H

#include "postgres.h"

#include "utils/jsonb.h"

#include "store/store.h"

/*
 * Events of one item stored at a time, at most, by a transformer or a
 * built-in mapping: each takes some 8 kB of json-c while it is checked,
 * outside PostgreSQL's memory contexts, and an item (a test report) may
 * make a hundred thousand of them.  Batches are stored one after another
 * in the item's transaction: the item is still stored whole or not at
 * all.
 */
#define CDVIZ_SOURCE_BATCH 1000

typedef struct CdvizSourceItem CdvizSourceItem;

/*
 * The built-in mapping of an item, for a source without transformer:
 * store its events (and its dead letters), in the current transaction,
 * and return the counts.
 */
typedef CdvizStoreResult (*CdvizSourceMapping) (const CdvizSourceItem *item, void *arg);

struct CdvizSourceItem
{
	const char *source;			/* the source's name */
	Oid			transformer;	/* the source's transformer, or InvalidOid */
	const char *origin;			/* cdviz.rejected_events.origin: fs, s3... */
	const char *origin_ref;		/* where the item is: path, s3://bucket/key */

	/*
	 * What the transformer is handed.  meta must have the string members
	 * "id" (the item's identity: the same for the same content) and
	 * "source_uri" (the default context.source), and should have "mtime"
	 * (RFC 3339: the default context.timestamp; without it, the time of
	 * the transaction, which a retransform does not make again).
	 */
	Jsonb	   *meta;
	Jsonb	   *body;			/* NULL: SQL null */

	int			batch_events;	/* a transformer's events made into json-c and
								 * stored at a time, at most; 0:
								 * CDVIZ_SOURCE_BATCH */
	CdvizSourceMapping builtin; /* used without transformer; NULL: none */
	void	   *builtin_arg;

	/*
	 * A retransform: the dead letter the item comes from, removed once
	 * the transformer succeeds, updated with the new error when it raises
	 * again (no new dead letter); 0 otherwise.
	 */
	int64		dead_letter_id;
};

/*
 * Make item's events and store them, in the current transaction; see the
 * head of this file.  Returns the counts (rejected: invalid events, and
 * the item itself when it is kept as a dead letter); *error is the
 * transformer's error when it raised, else NULL.  Raises only when the
 * database refuses to write (and for a cancel), never for the
 * transformer's fault.  Without transformer and built-in mapping it
 * raises: the source's definition should have required one.
 */
extern CdvizStoreResult cdviz_source_item_store(const CdvizSourceItem *item, char **error);

#endif							/* CDVIZ_WEBHOOK_SOURCE_ITEM_H */
