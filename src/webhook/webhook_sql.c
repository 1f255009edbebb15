/*
 * webhook_sql.c
 *	  The SQL functions of webhooks: cdviz.process_webhook() (a delivery
 *	  handed over from SQL), cdviz._webhook_transform() (a stored delivery
 *	  transformed again, for cdviz.retransform()) and
 *	  cdviz.webhook_delivery_key().  They check no credentials: who may
 *	  call them is the grants' business.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "common/spi_util.h"
#include "common/version.h"
#include "webhook/webhook_int.h"

PG_FUNCTION_INFO_V1(cdviz_process_webhook);
PG_FUNCTION_INFO_V1(cdviz_webhook_transform);
PG_FUNCTION_INFO_V1(cdviz_webhook_delivery_key);

/*
 * (status, [delivery_id,] event_ids, stored, duplicates, error): the row
 * cdviz.process_webhook() (with the delivery id) and
 * cdviz._webhook_transform() return.
 */
static Datum
outcome_record(TupleDesc tupdesc, const CdvizWebhookOutcome *out, bool with_delivery)
{
	Datum		values[6];
	bool		nulls[6] = {false, false, false, false, false, false};
	int			n = 0;

	values[n++] = CStringGetTextDatum(out->status);
	if (with_delivery)
		values[n++] = Int64GetDatum(out->delivery_id);
	nulls[n] = out->event_ids == NULL;
	values[n++] = out->event_ids ? cdviz_webhook_int8_array(out->event_ids, out->nevents) : (Datum) 0;
	values[n++] = Int64GetDatum(out->stored);
	values[n++] = Int64GetDatum(out->duplicates);
	nulls[n] = out->error == NULL;
	values[n++] = out->error ? CStringGetTextDatum(out->error) : (Datum) 0;
	return HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls));
}

/*
 * The route named name for the SQL functions, which check no credentials:
 * its secret is wiped at once.  Raises when there is no such route.
 */
static void
route_for_sql(const char *name, CdvizWebhookRoute *route)
{
	if (!cdviz_webhook_lookup(name, route))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("webhook \"%s\" does not exist", name),
				 errhint("Create it with cdviz.create_webhook().")));
	if (route->secret)
		explicit_bzero(route->secret, strlen(route->secret));
}

/*
 * cdviz.process_webhook(route text, headers jsonb, body jsonb)
 *	 RETURNS (status, delivery_id, event_ids, stored, duplicates, error)
 */
Datum
cdviz_process_webhook(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc = cdviz_result_tupdesc(fcinfo);
	char	   *name;
	CdvizWebhookRoute route;
	CdvizWebhookOutcome out;

	cdviz_check_version();
	if (PG_ARGISNULL(0) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("route and body of a webhook delivery may not be null")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	route_for_sql(name, &route);
	cdviz_webhook_process(&route, cdviz_webhook_clean_headers(PG_ARGISNULL(1) ? NULL : PG_GETARG_JSONB_P(1)),
						  PG_GETARG_JSONB_P(2), &out, NULL);

	PG_RETURN_DATUM(outcome_record(tupdesc, &out, true));
}

/* A column of a cdviz.webhook_deliveries row, by name; raises when null. */
static Datum
row_field(HeapTupleHeader row, const char *name)
{
	bool		isnull;
	Datum		v = GetAttributeByName(row, name, &isnull);

	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the webhook delivery has no %s", name),
				 errhint("Pass a row of cdviz.webhook_deliveries.")));
	return v;
}

/*
 * cdviz._webhook_transform(d cdviz.webhook_deliveries)
 *	 RETURNS (status, event_ids, stored, duplicates, error)
 *
 * The route's (current) transformer over a stored delivery, for
 * cdviz.retransform(): same events, same identities.
 */
Datum
cdviz_webhook_transform(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc = cdviz_result_tupdesc(fcinfo);
	HeapTupleHeader row = PG_GETARG_HEAPTUPLEHEADER(0);
	CdvizWebhookRoute route;
	CdvizWebhookOutcome out;
	CdvizDelivery	d;
	bool		isnull;
	Datum		name_d;

	cdviz_check_version();
	d.route = TextDatumGetCString(row_field(row, "route"));
	d.key = TextDatumGetCString(row_field(row, "delivery_key"));
	d.headers = DatumGetJsonbP(row_field(row, "headers"));
	d.body = DatumGetJsonbP(row_field(row, "body"));
	d.received_at = DatumGetTimestampTz(row_field(row, "received_at"));
	name_d = GetAttributeByName(row, "event_name", &isnull);
	d.event_name = isnull ? NULL : TextDatumGetCString(name_d);
	d.receptions = 0;
	route_for_sql(d.route, &route);
	cdviz_webhook_process_delivery(&route, &d, &out, NULL);

	PG_RETURN_DATUM(outcome_record(tupdesc, &out, false));
}

/*
 * cdviz.webhook_delivery_key(headers jsonb, body jsonb) RETURNS text
 *
 * NULL headers count as none; a NULL body has no hash.
 */
Datum
cdviz_webhook_delivery_key(PG_FUNCTION_ARGS)
{
	Jsonb	   *headers = PG_ARGISNULL(0) ? cdviz_webhook_clean_headers(NULL) : PG_GETARG_JSONB_P(0);
	char	   *key = cdviz_webhook_key(headers, PG_ARGISNULL(1) ? NULL : PG_GETARG_JSONB_P(1));

	cdviz_check_version();
	if (key == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(key));
}
