/*
 * store_items.c
 *	  Items for the store made from jsonb, and their problems as jsonb: what
 *	  the SQL functions and the webhook processing hand to and read from
 *	  cdviz_store_items().
 */
#include "postgres.h"

#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"

#include "store/store.h"

/*
 * Fill an item from a jsonb value.  An object or array is handed to the
 * core as a document built from the jsonb (its text is printed only for a
 * dead letter); a scalar, never a valid event, goes the text way, so that
 * its problems read as for any client's text.
 */
void
cdviz_item_from_jsonb(CdvizItem *item, Jsonb *jb, const char *origin_ref)
{
	memset(item, 0, sizeof(*item));
	item->jsonb = jb;
	item->origin_ref = origin_ref;
	if (JB_ROOT_IS_SCALAR(jb))
	{
		char	   *raw = JsonbToCString(NULL, &jb->root, VARSIZE(jb));

		item->raw = raw;
		item->raw_len = strlen(raw);
	}
	else
		item->json = cdviz_jsonb_to_json(jb);
}

/* One problem of item index as {"index": …, "path": …, "message": …}. */
static void
append_problem(StringInfo buf, int index, const char *path, const char *message)
{
	appendStringInfo(buf, "%s{\"index\": %d, \"path\": ", buf->len > 1 ? ", " : "", index);
	escape_json(buf, path);
	appendStringInfoString(buf, ", \"message\": ");
	escape_json(buf, message);
	appendStringInfoChar(buf, '}');
}

/* See store.h. */
Jsonb *
cdviz_items_problems(const CdvizItem *items, int nitems)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '[');
	for (int i = 0; i < nitems; i++)
	{
		const CdvizProblems *p = &items[i].problems;

		if (items[i].status != CDVIZ_ITEM_REJECTED)
			continue;
		for (int k = 0; k < p->count; k++)
			append_problem(&buf, i, p->items[k].path, p->items[k].message);
		if (p->truncated)
			append_problem(&buf, i, "$", "more problems were found than are listed");
	}
	appendStringInfoChar(&buf, ']');
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}

