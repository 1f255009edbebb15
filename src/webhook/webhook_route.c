/*
 * webhook_route.c
 *	  A route, read for each delivery: its row of cdviz.webhooks with its
 *	  secret, and its transformer's name and kind.
 */
#include "postgres.h"

#include "catalog/dependency.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"

#include "common/spi_util.h"
#include "webhook/webhook_int.h"

static SPIPlanPtr lookup_plan;

/*
 * The route's row; the transformer's name and kind come from the caches
 * (route_transformer()).
 */
static void
prepare_lookup_plan(void)
{
	Oid			types[1] = {TEXTOID};

	if (lookup_plan != NULL)
		return;
	lookup_plan = cdviz_prepare_kept("SELECT w.auth, s.secret, w.transformer::pg_catalog.oid, w.retention "
									 "FROM cdviz.webhooks w "
									 "LEFT JOIN cdviz.webhook_secrets s ON s.name = w.name "
									 "WHERE w.name = $1",
									 1, types, 0);
}

/*
 * The route's transformer as schema.name (quoted), NULL when the function
 * no longer exists, and whether it is one of the extension's own.  From
 * the system caches and an index scan of pg_depend: cheaper, for every
 * delivery, than a join over the catalogs in the route's query.
 */
static void
route_transformer(CdvizWebhookRoute *route)
{
	Oid			ext = get_extension_oid("cdviz", true);

	route->transformer_name = cdviz_webhook_function_name(route->transformer);
	route->builtin = route->transformer_name != NULL && OidIsValid(ext) &&
		getExtensionOfObject(ProcedureRelationId, route->transformer) == ext;
}

/* See webhook.h. */
bool
cdviz_webhook_lookup(const char *name, CdvizWebhookRoute *route)
{
	MemoryContext outcxt = CurrentMemoryContext;
	Datum		args[1];
	HeapTuple	tuple;
	TupleDesc	desc;
	bool		isnull;
	bool		found;

	SPI_connect();
	prepare_lookup_plan();
	args[0] = CStringGetTextDatum(name);
	if (SPI_execute_plan(lookup_plan, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "cdviz: looking up webhook \"%s\" failed", name);
	found = SPI_processed == 1;
	if (found)
	{
		MemoryContext old = MemoryContextSwitchTo(outcxt);

		tuple = SPI_tuptable->vals[0];
		desc = SPI_tuptable->tupdesc;
		route->name = pstrdup(name);
		route->auth = SPI_getvalue(tuple, desc, 1);
		route->secret = SPI_getvalue(tuple, desc, 2);
		route->transformer = DatumGetObjectId(SPI_getbinval(tuple, desc, 3, &isnull));
		route->retention = datumCopy(SPI_getbinval(tuple, desc, 4, &isnull), false, 16);
		route_transformer(route);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	return found;
}
