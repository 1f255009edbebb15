/*
 * webhook_delivery.c
 *	  One delivery: recorded in cdviz.webhook_deliveries, turned into
 *	  CDEvents by its route's SQL transformer, the events stored.  The
 *	  transformers are SQL; the path around them is C, so that the
 *	  transformer is called directly, by its OID, its output goes to the
 *	  store as items, and the delivery's row is written once, with its
 *	  outcome.
 *
 * A delivery is known by its route and key (cdviz_webhook_key()).  A
 * redelivery finds the first one's row and is transformed from its
 * headers, body and reception time (the default timestamp of the events),
 * so its events get the same identity and the lake stores nothing new.
 * Two sessions processing one delivery at once are serialized by a
 * transaction lock on that identity (common/locks.h: one no SQL role can
 * take), taken before the row is looked up.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/skey.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_collation.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "common/locks.h"
#include "webhook/webhook_int.h"

/* A column of a deliveries row, by name, copied out of the tuple. */
static Datum
stored_column(HeapTuple tuple, Relation rel, const char *name, bool *isnull)
{
	Form_pg_attribute att;
	AttrNumber	attnum = get_attnum(RelationGetRelid(rel), name);
	Datum		v;

	if (attnum == InvalidAttrNumber)
		elog(ERROR, "cdviz: cdviz.webhook_deliveries has no column %s", name);
	v = heap_getattr(tuple, attnum, RelationGetDescr(rel), isnull);
	att = TupleDescAttr(RelationGetDescr(rel), attnum - 1);
	return *isnull ? (Datum) 0 : datumCopy(v, att->attbyval, att->attlen);
}

/*
 * A redelivery: take the first reception's headers, body, event name and
 * time from its row, so that the transformer makes the same events of it
 * (as for cdviz.retransform()) whatever this attempt carried; a new
 * delivery keeps its own and the time is now.  Read through the unique
 * index, without a plan: one made while the table was empty would read it
 * whole.  The caller holds the delivery's lock, so the latest
 * snapshot sees a concurrent reception that committed.
 */
static void
find_earlier_reception(CdvizDelivery *d)
{
	Oid			nsp = get_namespace_oid("cdviz", false);
	Oid			relid = get_relname_relid("webhook_deliveries", nsp);
	Oid			indexid = get_relname_relid("webhook_deliveries_route_delivery_key_key", nsp);
	Relation	rel;
	SysScanDesc scan;
	ScanKeyData keys[2];
	HeapTuple	tuple;

	if (!OidIsValid(relid) || !OidIsValid(indexid))
		elog(ERROR, "cdviz: table cdviz.webhook_deliveries or its unique index is missing");
	rel = table_open(relid, AccessShareLock);
	ScanKeyEntryInitialize(&keys[0], 0, get_attnum(relid, "route"), BTEqualStrategyNumber,
						   InvalidOid, DEFAULT_COLLATION_OID, F_TEXTEQ, CStringGetTextDatum(d->route));
	ScanKeyEntryInitialize(&keys[1], 0, get_attnum(relid, "delivery_key"), BTEqualStrategyNumber,
						   InvalidOid, DEFAULT_COLLATION_OID, F_TEXTEQ, CStringGetTextDatum(d->key));
	scan = systable_beginscan(rel, indexid, true, GetLatestSnapshot(), 2, keys);
	d->received_at = GetCurrentTransactionStartTimestamp();
	if ((tuple = systable_getnext(scan)) != NULL)
	{
		bool		isnull;
		Datum		v;

		v = stored_column(tuple, rel, "received_at", &isnull);
		if (!isnull)
			d->received_at = DatumGetTimestampTz(v);
		v = stored_column(tuple, rel, "headers", &isnull);
		if (!isnull)
			d->headers = DatumGetJsonbP(v);
		v = stored_column(tuple, rel, "body", &isnull);
		if (!isnull)
			d->body = DatumGetJsonbP(v);
		v = stored_column(tuple, rel, "event_name", &isnull);
		d->event_name = isnull ? NULL : TextDatumGetCString(v);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
}

/*
 * See webhook_int.h.  A reception is keyed and named here, and locked
 * (one session at a time per delivery, until it commits) before its
 * earlier reception is looked up; a retransform comes with its stored key
 * and name.  d is processed in the batch's memory context.
 */
void
cdviz_webhook_process_delivery(const CdvizWebhookRoute *route, CdvizDelivery *d,
							   CdvizWebhookOutcome *out, CdvizWebhookBatch *batch)
{
	MemoryContext outcxt = CurrentMemoryContext;
	CdvizWebhookBatch *b = batch ? batch : cdviz_webhook_batch_new(false);
	int			nest = cdviz_webhook_pin_search_path();
	CdvizTransformed t;

	SPI_connect();
	MemoryContextSwitchTo(cdviz_webhook_batch_context(b));
	if (d->receptions > 0)
	{
		StringInfoData lockname;

		d->key = cdviz_webhook_key(d->headers, d->body);
		d->event_name = cdviz_webhook_event_name(d->headers, d->body);
		initStringInfo(&lockname);
		appendStringInfo(&lockname, "%s%c%s", d->route, '\0', d->key);
		cdviz_lock_key(CDVIZ_LOCK_WEBHOOK,
					   DatumGetUInt32(hash_any((unsigned char *) lockname.data, lockname.len)));
		find_earlier_reception(d);
	}
	cdviz_webhook_make_events(route, d, &t);
	cdviz_webhook_batch_add(b, route, d, &t, out, outcxt);
	SPI_finish();
	cdviz_webhook_restore_search_path(nest);
	if (batch == NULL)
	{
		cdviz_webhook_batch_flush(b);
		cdviz_webhook_batch_end(b);
	}
}

/* See webhook.h. */
void
cdviz_webhook_process(const CdvizWebhookRoute *route, Jsonb *headers, Jsonb *body,
					  CdvizWebhookOutcome *out, CdvizWebhookBatch *batch)
{
	CdvizDelivery	d;

	memset(&d, 0, sizeof(d));
	d.route = route->name;
	d.headers = headers;
	d.body = body;
	d.receptions = 1;
	cdviz_webhook_process_delivery(route, &d, out, batch);
}
