/*
 * store.c
 *	  Validate a batch of documents, insert the valid ones into the lake in
 *	  one statement (store_lake.c), and keep the rest in
 *	  cdviz.rejected_events (store_dead_letter.c).  Each valid event's row
 *	  is built right after its check (store_rows.c), so that its json-c
 *	  document is freed at once; duplicates within the batch are found
 *	  there too.
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "store/store_int.h"

int			cdviz_validation = CDVIZ_VALIDATION_STRICT;

static const struct config_enum_entry validation_options[] = {
	{"strict", CDVIZ_VALIDATION_STRICT, false},
	{"lenient", CDVIZ_VALIDATION_LENIENT, false},
	{"off", CDVIZ_VALIDATION_OFF, false},
	{NULL, 0, false}
};

/* Define the settings the store reads. */
void
cdviz_store_define_gucs(void)
{
	DefineCustomEnumVariable("cdviz.validation",
							 "How strictly incoming CDEvents are validated.",
							 "strict: the official CDEvents JSON schema of the event's type and release; "
							 "lenient: required fields and types only, unknown fields allowed; "
							 "off: only what storage needs (context id, source, type, timestamp).",
							 &cdviz_validation,
							 CDVIZ_VALIDATION_STRICT,
							 validation_options,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);
}

/* See store.h. */
bool
cdviz_store_check(const char *raw, size_t raw_len, CdvizProblems *problems)
{
	struct json_object *obj = cdviz_json_parse(raw, raw_len, problems);
	CdvizEventInfo info;
	bool		ok;

	if (obj == NULL)
		return false;
	ok = cdviz_event_check(obj, (CdvizValidation) cdviz_validation, &info, problems);
	cdviz_json_free(obj);
	return ok;
}

/*
 * Build the jsonb payload from raw text (cdviz_jsonb_parse).  jsonb_in
 * refuses a few things json-c accepts (lone surrogate escapes, numbers out
 * of numeric range); those become a problem of the item instead of an
 * error of the batch.
 */
static Jsonb *
payload_from_raw(CdvizItem *item)
{
	ErrorData  *edata;
	Jsonb	   *result = cdviz_jsonb_parse(item->raw, item->raw_len, &edata);

	if (result == NULL)
	{
		/* the detail says what: "Unicode low surrogate must follow …" */
		cdviz_problems_add(&item->problems, "$", "cannot be stored as jsonb: %s%s%s", edata->message,
						   edata->detail ? ": " : "", edata->detail ? edata->detail : "");
		FreeErrorData(edata);
	}
	return result;
}

/*
 * Validate every item, then insert the valid ones in one statement and
 * find the lake ids of the retransmissions; atomic: see
 * cdviz_store_items_atomic().
 */
static CdvizStoreResult
store_items(CdvizItem *items, int nitems, const char *origin, bool atomic)
{
	CdvizStoreResult result = {0, 0, 0, 0};
	int			unit_first = 0; /* atomic: where the current unit began */
	int			unit_first_row = 0;
	bool		unit_failed = false;
	MemoryContext batchcxt;
	MemoryContext oldcxt;
	KeyTable	keys;
	BatchRows	rows;
	CdvizValidation mode = (CdvizValidation) cdviz_validation;

	if (nitems == 0)
		return result;
	batchcxt = AllocSetContextCreate(CurrentMemoryContext, "cdviz store batch",
									 ALLOCSET_DEFAULT_SIZES);
	oldcxt = MemoryContextSwitchTo(batchcxt);

	{
		Size		input_bytes = 0;

		for (int i = 0; i < nitems; i++)
			input_bytes += items[i].raw ? items[i].raw_len : VARSIZE(items[i].jsonb);
		cdviz_rows_init(&rows, nitems, input_bytes);
	}
	cdviz_keytable_init(&keys, &rows, nitems);
	for (int i = 0; i < nitems; i++)
	{
		CdvizItem  *it = &items[i];
		struct json_object *json;
		CdvizEventInfo info;
		Jsonb	   *payload = NULL;
		int		   *slot;

		if (atomic && (i == 0 || it->unit != items[i - 1].unit))
		{
			unit_first = i;
			unit_first_row = rows.nrows;
			unit_failed = false;
		}
		cdviz_problems_init(&it->problems);
		it->status = CDVIZ_ITEM_REJECTED;
		it->event_id = 0;
		it->rejected_id = 0;
		it->first_of_key = -1;
		/* the caller's parsed document, if any, is ours from here on */
		json = it->json;
		it->json = NULL;
		/* jsonb is valid text of the database encoding by construction */
		if (it->raw != NULL && !pg_verifymbstr(it->raw, (int) it->raw_len, true))
		{
			cdviz_problems_add(&it->problems, "$", "not valid %s text",
							   GetDatabaseEncodingName());
			cdviz_json_free(json);
			json = NULL;
		}
		else if (json == NULL)
			json = cdviz_json_parse(it->raw, it->raw_len, &it->problems);
		/* a document built from jsonb holds no NUL (jsonb refuses \u0000) */
		if (json != NULL &&
			cdviz_event_check_ex(json, mode, it->raw == NULL, &info, &it->problems))
			payload = it->jsonb ? it->jsonb : payload_from_raw(it);
		if (payload == NULL)
		{
			if (atomic && !unit_failed)
				cdviz_rows_withhold_unit(items, unit_first, i, &rows, &keys, unit_first_row);
			unit_failed = atomic;
		}
		else if (unit_failed)
			it->status = CDVIZ_ITEM_WITHHELD;
		else
		{
			slot = cdviz_keytable_slot(&keys, info.context_source.ptr, info.context_source.len,
								 info.context_id.ptr, info.context_id.len,
								 cdviz_lake_timestamp(info.timestamp_us));
			if (*slot >= 0)
			{
				/* same key earlier in this batch: a retransmission */
				it->status = CDVIZ_ITEM_DUPLICATE;
				it->first_of_key = rows.item[*slot];
			}
			else
				*slot = cdviz_rows_add(&rows, i, &info, payload);
		}
		/* info pointed into the document: rows_add copied what it needs */
		cdviz_json_free(json);
	}

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "cdviz: SPI_connect failed");
	if (rows.nrows > 0)
		cdviz_lake_insert(items, &rows, &keys);
	for (int i = 0; i < nitems; i++)
	{
		CdvizItem  *it = &items[i];

		if (it->first_of_key >= 0)
			it->event_id = items[it->first_of_key].event_id;
		if (it->status == CDVIZ_ITEM_REJECTED)
		{
			if (it->problems.count == 0)
				cdviz_problems_add(&it->problems, "$", "the lake refused the event");
			if (!it->no_dead_letter)
			{
				const char *raw = it->received ? it->received : it->raw;
				size_t		raw_len = it->received ? it->received_len : it->raw_len;

				/* a jsonb item's text is printed only for its dead letter */
				if (raw == NULL)
				{
					raw = JsonbToCString(NULL, &it->jsonb->root, VARSIZE(it->jsonb));
					raw_len = strlen(raw);
				}
				it->rejected_id = cdviz_store_dead_letter_enveloped(origin, it->origin_ref,
																	raw, raw_len, it->envelope,
																	&it->problems);
			}
			result.rejected++;
		}
		else if (it->status == CDVIZ_ITEM_STORED)
			result.stored++;
		else if (it->status == CDVIZ_ITEM_WITHHELD)
			result.withheld++;
		else
			result.duplicates++;
	}
	SPI_finish();

	MemoryContextSwitchTo(oldcxt);
	/* payloads built from raw die with the batch; the caller's stay valid */
	MemoryContextDelete(batchcxt);
	return result;
}

/* See store.h. */
CdvizStoreResult
cdviz_store_items(CdvizItem *items, int nitems, const char *origin)
{
	return store_items(items, nitems, origin, false);
}

/* See store.h. */
CdvizStoreResult
cdviz_store_items_atomic(CdvizItem *items, int nitems, const char *origin)
{
	return store_items(items, nitems, origin, true);
}

/* See store.h. */
void
cdviz_store_release_items(CdvizItem *items, int nitems)
{
	for (int i = 0; i < nitems; i++)
	{
		cdviz_problems_reset(&items[i].problems);
		cdviz_json_free(items[i].json);
		items[i].json = NULL;
	}
}
