/*
 * jsonb_to_json.c
 *	  A jsonb value as the json-c document the core checks, built by walking
 *	  the jsonb directly; and back, a document the core made (a test
 *	  report's model, its events) as jsonb.
 *
 * The SQL functions receive jsonb.  Printing it as text only for json-c to
 * tokenize that text again would be a large part of cdviz.ingest_batch's
 * time; the walk builds the same document (same keys in the same order, since jsonb's
 * text form lists them in its own order too), and the text is printed only
 * when a dead letter needs it.
 */
#include "postgres.h"

#include <json-c/json.h>

#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "common/json.h"

/*
 * From utils/fmgrprotos.h, which cannot be included here: it declares the
 * SQL function json_object, a name json-c gives its object type.
 */
extern Datum numeric_out(PG_FUNCTION_ARGS);

/*
 * A number as json-c would have read its text: an integer when written
 * without fraction or exponent and within int64, otherwise a double.
 */
static struct json_object *
number_to_json(Numeric num)
{
	char	   *text = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(num)));
	struct json_object *obj;

	if (strpbrk(text, ".eE") == NULL)
	{
		char	   *end;
		long long	v;

		errno = 0;
		v = strtoll(text, &end, 10);
		if (errno == 0 && *end == '\0')
		{
			pfree(text);
			return json_object_new_int64((int64_t) v);
		}
	}
	obj = json_object_new_double(strtod(text, NULL));
	pfree(text);
	return obj;
}

/* A jsonb scalar as a json-c value (NULL for a JSON null, as json-c has it). */
static struct json_object *
scalar_to_json(const JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return NULL;
		case jbvString:
			return json_object_new_string_len(v->val.string.val, v->val.string.len);
		case jbvNumeric:
			return number_to_json(v->val.numeric);
		case jbvBool:
			return json_object_new_boolean(v->val.boolean);
		default:
			elog(ERROR, "cdviz: unexpected jsonb value type %d", (int) v->type);
	}
	return NULL;				/* keep compiler quiet */
}

/*
 * The json-c document of a jsonb object or array; the caller owns it
 * (release with cdviz_json_free, before its memory context is reset: the
 * document's keys live there).  Iterative: jsonb nests as deep as
 * PostgreSQL allows.  Scalars are for the text path (json-c has no object
 * for a top-level null).
 */
struct json_object *
cdviz_jsonb_to_json(Jsonb *jb)
{
	JsonbIterator *it = JsonbIteratorInit(&jb->root);
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			size = 16;
	int			depth = 0;
	struct json_object **open = palloc(sizeof(*open) * size);
	char	  **keys = palloc(sizeof(*keys) * size);
	struct json_object *done = NULL;

	Assert(!JB_ROOT_IS_SCALAR(jb));
	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		struct json_object *value;

		switch (tok)
		{
			case WJB_BEGIN_ARRAY:
			case WJB_BEGIN_OBJECT:
				if (depth == size)
				{
					size *= 2;
					open = repalloc(open, sizeof(*open) * size);
					keys = repalloc(keys, sizeof(*keys) * size);
				}
				open[depth] = tok == WJB_BEGIN_ARRAY ? json_object_new_array()
					: json_object_new_object();
				keys[depth] = NULL;
				depth++;
				continue;
			case WJB_KEY:
				keys[depth - 1] = pnstrdup(v.val.string.val, v.val.string.len);
				continue;
			case WJB_VALUE:
			case WJB_ELEM:
				value = scalar_to_json(&v);
				break;
			case WJB_END_ARRAY:
			case WJB_END_OBJECT:
				value = open[--depth];
				break;
			default:
				continue;
		}
		if (depth == 0)
			done = value;
		else if (json_object_is_type(open[depth - 1], json_type_array))
			json_object_array_add(open[depth - 1], value);
		else
		{
			/*
			 * jsonb keys are unique, and ours outlive the document (they
			 * are palloc'd in the caller's context, the document is freed
			 * first): json-c need neither look the key up nor copy it.
			 */
			json_object_object_add_ex(open[depth - 1], keys[depth - 1], value,
									  JSON_C_OBJECT_ADD_KEY_IS_NEW |
									  JSON_C_OBJECT_ADD_CONSTANT_KEY);
			keys[depth - 1] = NULL;
		}
	}
	pfree(open);
	pfree(keys);
	return done;
}

/* See json.h. */
Jsonb *
cdviz_json_to_jsonb(struct json_object *doc)
{
	size_t		len;
	const char *text = json_object_to_json_string_length(doc, JSON_C_TO_STRING_PLAIN |
														 JSON_C_TO_STRING_NOSLASHESCAPE, &len);
	ErrorData  *edata = NULL;
	Jsonb	   *jb = cdviz_jsonb_parse(text, len, &edata);

	if (jb == NULL)
		ReThrowError(edata);
	return jb;
}

/* See json.h. */
Jsonb **
cdviz_json_array_to_jsonb(struct json_object *array, int *n)
{
	Jsonb	  **out;

	*n = json_object_is_type(array, json_type_array) ? (int) json_object_array_length(array) : 0;
	out = palloc0(sizeof(Jsonb *) * Max(*n, 1));
	for (int i = 0; i < *n; i++)
		out[i] = cdviz_json_to_jsonb(json_object_array_get_idx(array, i));
	return out;
}
