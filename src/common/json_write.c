/*
 * json_write.c
 *	  Writing a JSON object member by member into a StringInfo, for the
 *	  small documents workers build (a source item's meta, a source's
 *	  options).
 */
#include "postgres.h"

#include "utils/json.h"

#include "common/json.h"

/* See json.h. */
void
cdviz_json_add_text(StringInfo buf, const char *key, const char *value)
{
	appendStringInfoString(buf, buf->len > 1 ? ", " : "");
	escape_json(buf, key);
	appendStringInfoString(buf, ": ");
	if (value)
		escape_json(buf, value);
	else
		appendStringInfoString(buf, "null");
}
