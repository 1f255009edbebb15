/*
 * webhook_util.c
 *	  What every file of src/webhook/ uses: the search_path transformers
 *	  and our statements run under, members of jsonb objects, jsonb built
 *	  from strings, arrays of text and int8.
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"

#include "common/spi_util.h"
#include "webhook/webhook_int.h"

/* What transformers and the folder's statements run under. */
#define WEBHOOK_SEARCH_PATH "pg_catalog, pg_temp"

/*
 * Run under WEBHOOK_SEARCH_PATH (a user's transformer, whoever calls it),
 * in a GUC nest level of our own, as a SET clause on a function would:
 * the caller's search_path is back afterwards.  Returns the level for
 * cdviz_webhook_restore_search_path().
 */
int
cdviz_webhook_pin_search_path(void)
{
	int			nest = NewGUCNestLevel();

	if (namespace_search_path == NULL || strcmp(namespace_search_path, WEBHOOK_SEARCH_PATH) != 0)
		(void) set_config_option("search_path", WEBHOOK_SEARCH_PATH, PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
	return nest;
}

/* The caller's search_path again, as at the end of a function with SET. */
void
cdviz_webhook_restore_search_path(int nest)
{
	AtEOXact_GUC(true, nest);
}

/*
 * The text of member key of an object, as ->> gives it: NULL when c is no
 * object, has no such member or it is JSON null.
 */
char *
cdviz_webhook_member_text(JsonbContainer *c, const char *key)
{
	JsonbValue	v;
	Jsonb	   *jb;

	if (!JsonContainerIsObject(c) ||
		getKeyJsonValueFromContainer(c, key, strlen(key), &v) == NULL ||
		v.type == jbvNull)
		return NULL;
	if (v.type == jbvString)
		return pnstrdup(v.val.string.val, v.val.string.len);
	jb = JsonbValueToJsonb(&v);
	return JsonbToCString(NULL, &jb->root, VARSIZE(jb));
}

/* Whether object c has member key (as the ? operator tells). */
bool
cdviz_webhook_has_member(JsonbContainer *c, const char *key)
{
	JsonbValue	v;

	return JsonContainerIsObject(c) &&
		getKeyJsonValueFromContainer(c, key, strlen(key), &v) != NULL;
}

/* Member key of object c when it is an object itself, or NULL. */
JsonbContainer *
cdviz_webhook_member_object(JsonbContainer *c, const char *key)
{
	JsonbValue	v;

	if (!JsonContainerIsObject(c) ||
		getKeyJsonValueFromContainer(c, key, strlen(key), &v) == NULL ||
		v.type != jbvBinary || !JsonContainerIsObject(v.val.binary.data))
		return NULL;
	return v.val.binary.data;
}

/* Push string s to a jsonb being built, as tok (a key or a value). */
void
cdviz_webhook_push_string(JsonbParseState **st, JsonbIteratorToken tok, const char *s)
{
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = (char *) s;
	v.val.string.len = strlen(s);
	pushJsonbValue(st, tok, &v);
}

/* Push a member, key and string value, to an object being built. */
void
cdviz_webhook_push_pair(JsonbParseState **st, const char *key, const char *value)
{
	cdviz_webhook_push_string(st, WJB_KEY, key);
	cdviz_webhook_push_string(st, WJB_VALUE, value);
}

/* A text[] of a list of C strings. */
Datum
cdviz_webhook_text_array(List *strings)
{
	int			n = list_length(strings);
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));
	int			i = 0;
	ListCell   *lc;

	foreach(lc, strings)
		elems[i++] = CStringGetTextDatum((char *) lfirst(lc));
	return PointerGetDatum(cdviz_make_array(elems, NULL, n, TEXTOID));
}

/* An int8[] of n values. */
Datum
cdviz_webhook_int8_array(const int64 *values, int n)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		elems[i] = Int64GetDatum(values[i]);
	return PointerGetDatum(cdviz_make_array(elems, NULL, n, INT8OID));
}

/* See webhook_int.h: from the system caches. */
char *
cdviz_webhook_function_name(Oid fn)
{
	char	   *name = get_func_name(fn);
	char	   *nsp = name ? get_namespace_name(get_func_namespace(fn)) : NULL;

	return nsp ? quote_qualified_identifier(nsp, name) : NULL;
}
