/*
 * jsonb_parse.c
 *	  JSON text to jsonb through the core's scanner (core/json_scan.c), for
 *	  the large documents of webhook deliveries and for event payloads.
 *
 * The jsonb is built from the same sequence of pushJsonbValue() calls
 * that jsonb_in makes, so it is the same value, byte for byte (pgTAP
 * 70_webhooks compares the two on tricky documents).  Strings are not
 * copied: they point into a copy of the text that the scanner unescaped
 * in place, alive until the jsonb is built.  Whatever the scanner refuses
 * or this file declines is left to jsonb_in, which words the error.
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "core/json_scan.h"
#include "store/store.h"

/*
 * Longest number, and largest exponent, taken here: this file raises no
 * error of its own, and numeric_in refuses numbers out of its range (an
 * exponent beyond INT_MAX / 2, a weight beyond 32767).  A short number
 * with an exponent of at most 1000 is always a numeric.
 */
#define NUMBER_MAX_LEN 64
#define EXPONENT_MAX 1000

/*
 * Longest text taken here: jsonb may take eight times the room of its
 * text (a one-digit number), and one under 16 MB stays far below jsonb's
 * limits (256 MB), whose errors are left to jsonb_in.
 */
#define TEXT_MAX_LEN (16 * 1024 * 1024)

typedef struct JsonbBuild
{
	JsonbParseState *state;
	JsonbValue *result;
} JsonbBuild;

/* Whether numeric_in takes number text s (as the scanner checked it). */
static bool
number_fits(const char *s, size_t len)
{
	const char *e;
	long		exponent = 0;

	if (len > NUMBER_MAX_LEN)
		return false;
	e = memchr(s, 'e', len);
	if (e == NULL)
		e = memchr(s, 'E', len);
	if (e == NULL)
		return true;
	for (e++; e < s + len; e++)
	{
		if (*e >= '0' && *e <= '9')
			exponent = exponent * 10 + (*e - '0');
		/* checked digit by digit: twenty digits would wrap around */
		if (exponent > EXPONENT_MAX)
			return false;
	}
	return true;
}

/* One token pushed as jsonb_in's callbacks push it. */
static bool
push_token(void *arg, CdvizJsonToken token, const char *s, size_t len)
{
	JsonbBuild *b = (JsonbBuild *) arg;
	JsonbValue	v;
	JsonbIteratorToken tok;
	char		number[NUMBER_MAX_LEN + 1];

	switch (token)
	{
		case CDVIZ_JSON_OBJECT_START:
			b->result = pushJsonbValue(&b->state, WJB_BEGIN_OBJECT, NULL);
			return true;
		case CDVIZ_JSON_OBJECT_END:
			b->result = pushJsonbValue(&b->state, WJB_END_OBJECT, NULL);
			return true;
		case CDVIZ_JSON_ARRAY_START:
			b->result = pushJsonbValue(&b->state, WJB_BEGIN_ARRAY, NULL);
			return true;
		case CDVIZ_JSON_ARRAY_END:
			b->result = pushJsonbValue(&b->state, WJB_END_ARRAY, NULL);
			return true;
		case CDVIZ_JSON_KEY:
		case CDVIZ_JSON_STRING:
			if (len > JENTRY_OFFLENMASK)
				return false;
			v.type = jbvString;
			v.val.string.val = (char *) s;
			v.val.string.len = (int) len;
			break;
		case CDVIZ_JSON_NUMBER:
			if (!number_fits(s, len))
				return false;
			memcpy(number, s, len);
			number[len] = '\0';
			v.type = jbvNumeric;
			v.val.numeric = DatumGetNumeric(DirectFunctionCall3(numeric_in, CStringGetDatum(number),
																ObjectIdGetDatum(InvalidOid),
																Int32GetDatum(-1)));
			break;
		case CDVIZ_JSON_TRUE:
		case CDVIZ_JSON_FALSE:
			v.type = jbvBool;
			v.val.boolean = token == CDVIZ_JSON_TRUE;
			break;
		case CDVIZ_JSON_NULL:
			v.type = jbvNull;
			break;
	}
	if (token == CDVIZ_JSON_KEY)
		tok = WJB_KEY;
	else
		tok = b->state->contVal.type == jbvArray ? WJB_ELEM : WJB_VALUE;
	b->result = pushJsonbValue(&b->state, tok, &v);
	return true;
}

/* See store.h. */
Jsonb *
cdviz_jsonb_from_text(const char *text, size_t len)
{
	JsonbBuild	b = {NULL, NULL};
	char	   *copy;
	Jsonb	   *result = NULL;

	/* the scanner decodes escapes to UTF-8 and reads no other encoding */
	if (GetDatabaseEncoding() != PG_UTF8 || len > TEXT_MAX_LEN)
		return NULL;
	copy = palloc(len + 1);
	memcpy(copy, text, len);
	copy[len] = '\0';
	if (cdviz_json_scan(copy, len, push_token, &b) && b.result != NULL)
		result = JsonbValueToJsonb(b.result);
	pfree(copy);
	return result;
}

PG_FUNCTION_INFO_V1(cdviz_jsonb_from_text_sql);

/*
 * cdviz._jsonb_from_text(doc text) RETURNS jsonb
 *
 * What the receivers make of a document, NULL when it is declined: for
 * tests, which compare it with doc::jsonb.
 */
Datum
cdviz_jsonb_from_text_sql(PG_FUNCTION_ARGS)
{
	text	   *doc = PG_GETARG_TEXT_PP(0);
	Jsonb	   *jb = cdviz_jsonb_from_text(VARDATA_ANY(doc), VARSIZE_ANY_EXHDR(doc));

	if (jb == NULL)
		PG_RETURN_NULL();
	PG_RETURN_JSONB_P(jb);
}
