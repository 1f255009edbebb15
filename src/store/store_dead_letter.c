/*
 * store_dead_letter.c
 *	  Input that is not an event, kept in cdviz.rejected_events with its
 *	  problems, so that nothing a client sent is lost.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "store/store.h"

static SPIPlanPtr reject_plan;

/* See store.h. */
int64
cdviz_store_dead_letter(const char *origin, const char *origin_ref,
						const char *raw, size_t raw_len, const CdvizProblems *problems)
{
	return cdviz_store_dead_letter_enveloped(origin, origin_ref, raw, raw_len, NULL, problems);
}

/* See store.h. */
int64
cdviz_store_dead_letter_enveloped(const char *origin, const char *origin_ref,
								  const char *raw, size_t raw_len, const char *envelope,
								  const CdvizProblems *problems)
{
	char	   *json = cdviz_problems_to_json(problems);
	Datum		args[5];
	char		nulls[5] = {' ', origin_ref ? ' ' : 'n', ' ', ' ', envelope ? ' ' : 'n'};
	bool		isnull;
	int64		id;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "cdviz: SPI_connect failed");
	if (reject_plan == NULL)
	{
		Oid			types[5] = {TEXTOID, TEXTOID, TEXTOID, JSONBOID, TEXTOID};

		reject_plan = cdviz_prepare_kept("INSERT INTO cdviz.rejected_events (origin, origin_ref, raw, problems, envelope) "
										 "VALUES ($1, $2, $3, $4, $5::jsonb) RETURNING id",
										 5, types, 0);
	}
	args[0] = CStringGetTextDatum(origin);
	args[1] = origin_ref ? CStringGetTextDatum(origin_ref) : (Datum) 0;
	args[2] = PointerGetDatum(cdviz_bytes_as_text(raw, raw_len));
	args[3] = DirectFunctionCall1(jsonb_in, CStringGetDatum(json ? json : "[]"));
	args[4] = envelope ? CStringGetTextDatum(envelope) : (Datum) 0;
	free(json);
	if (SPI_execute_plan(reject_plan, args, nulls, false, 1) != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "cdviz: storing a rejected event failed");
	id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	return id;
}
