/*
 * jsonb_parse.c
 *	  JSON text to jsonb through the core's scanner (core/json_scan.c), for
 *	  the large documents of webhook deliveries and for event payloads.
 *
 * The jsonb is converted from the same in-memory tree that jsonb_in's
 * pushJsonbValue() calls make (members sorted by key length then bytes,
 * the last of equal keys kept), so it is the same value, byte for byte
 * (pgTAP 10_core compares the two on tricky documents).  The tree is
 * built here rather than through pushJsonbValue(), whose generic qsort
 * calls the comparison through a pointer: on a GitHub body, whose objects
 * have up to a hundred members, that call dominates the parse.  The sort
 * below is PostgreSQL's template with the comparison inlined.
 * Strings are not copied: they point into a copy of the text that the
 * scanner unescaped in place, alive until the jsonb is built.  Whatever
 * the scanner refuses or this file declines is left to jsonb_in, which
 * words the error.
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"

#include "core/json_scan.h"
#include "common/json.h"
#include "common/version.h"
#include "common/subxact.h"

/*
 * Longest number, and largest exponent, taken here: this file raises no
 * error of its own (but for running out of memory), and numeric_in
 * refuses numbers out of its range (an exponent beyond INT_MAX / 2, more
 * than 131072 digits before the point or 16383 after it).  A number of
 * at most 64 characters with an exponent of at most 1000 is always a
 * numeric.
 */
#define NUMBER_MAX_LEN 64
#define EXPONENT_MAX 1000

/*
 * Longest text taken here: jsonb may take six times the room of its text
 * (an array of one-digit numbers), and its tree more (a member is a
 * 72-byte pair): a text of at most 16 MB stays below jsonb's limits (256
 * MB) and the allocator's (1 GB), whose errors are left to jsonb_in.
 */
#define TEXT_MAX_LEN (16 * 1024 * 1024)

/* Memory kept for parsing: the tree of a 30 KB document */
#define PARSE_KEPT_BLOCK (256 * 1024)

/* An object or array being read: its members so far. */
typedef struct OpenContainer
{
	JsonbValue	value;			/* jbvObject or jbvArray */
	int			room;			/* pairs or elems allocated */
	const char *key;			/* an object's member name read last */
	int			keylen;
} OpenContainer;

typedef struct JsonbBuild
{
	OpenContainer *open;		/* CDVIZ_JSON_MAX_DEPTH of them */
	int			depth;
	JsonbValue *result;			/* the document, once closed */
} JsonbBuild;

/* Key order of jsonb: shorter first, then by bytes. */
static inline int
compare_keys(const JsonbValue *a, const JsonbValue *b)
{
	if (a->val.string.len != b->val.string.len)
		return a->val.string.len > b->val.string.len ? 1 : -1;
	return memcmp(a->val.string.val, b->val.string.val, a->val.string.len);
}

/* Members with equal keys: the one read last first, as jsonb_in keeps it. */
static inline int
compare_pairs(const JsonbPair *a, const JsonbPair *b)
{
	int			c = compare_keys(&a->key, &b->key);

	if (c != 0)
		return c;
	return a->order > b->order ? -1 : 1;
}

#define ST_SORT sort_pairs
#define ST_ELEMENT_TYPE JsonbPair
#define ST_COMPARE(a, b) compare_pairs(a, b)
#define ST_SCOPE static
#define ST_DEFINE
#include "lib/sort_template.h"

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

/* Room for one more member in c, doubling the room as jsonb_in does. */
static void
make_room(OpenContainer *c)
{
	bool		object = c->value.type == jbvObject;
	int			n = object ? c->value.val.object.nPairs : c->value.val.array.nElems;
	size_t		size = object ? sizeof(JsonbPair) : sizeof(JsonbValue);
	void	   *members = object ? (void *) c->value.val.object.pairs : (void *) c->value.val.array.elems;

	if (n < c->room)
		return;
	c->room = c->room == 0 ? 8 : c->room * 2;
	members = members ? repalloc(members, size * c->room) : palloc(size * c->room);
	if (object)
		c->value.val.object.pairs = members;
	else
		c->value.val.array.elems = members;
}

/* v as the next member of the innermost open container. */
static void
add_member(JsonbBuild *b, const JsonbValue *v)
{
	OpenContainer *c = &b->open[b->depth - 1];

	make_room(c);
	if (c->value.type == jbvArray)
		c->value.val.array.elems[c->value.val.array.nElems++] = *v;
	else
	{
		JsonbPair  *pair = &c->value.val.object.pairs[c->value.val.object.nPairs];

		pair->key.type = jbvString;
		pair->key.val.string.val = (char *) c->key;
		pair->key.val.string.len = c->keylen;
		pair->value = *v;
		pair->order = c->value.val.object.nPairs++;
	}
}

/* Members in key order, one per key: what pushJsonbValue() makes of them. */
static void
sort_members(JsonbValue *object)
{
	JsonbPair  *pairs = object->val.object.pairs;
	int			n = object->val.object.nPairs;
	int			kept = 0;

	if (n < 2)
		return;
	sort_pairs(pairs, n);
	for (int i = 1; i < n; i++)
		if (compare_keys(&pairs[i].key, &pairs[kept].key) != 0)
			pairs[++kept] = pairs[i];
	object->val.object.nPairs = kept + 1;
}

/* Open an object or an array; false beyond the scanner's depth. */
static bool
open_container(JsonbBuild *b, enum jbvType type)
{
	OpenContainer *c;

	if (b->depth == CDVIZ_JSON_MAX_DEPTH)
		return false;
	c = &b->open[b->depth++];
	memset(c, 0, sizeof(*c));
	c->value.type = type;
	/* val.array.rawScalar is false: a document here is never a scalar */
	return true;
}

/* Close the innermost container: a member of the one around it, or the document. */
static void
close_container(JsonbBuild *b)
{
	OpenContainer *c = &b->open[--b->depth];

	if (c->value.type == jbvObject)
		sort_members(&c->value);
	if (b->depth > 0)
		add_member(b, &c->value);
	else
	{
		b->result = palloc(sizeof(JsonbValue));
		*b->result = c->value;
	}
}

/* One token into the tree. */
static bool
add_token(void *arg, CdvizJsonToken token, const char *s, size_t len)
{
	JsonbBuild *b = (JsonbBuild *) arg;
	JsonbValue	v;
	char		number[NUMBER_MAX_LEN + 1];

	switch (token)
	{
		case CDVIZ_JSON_OBJECT_START:
			return open_container(b, jbvObject);
		case CDVIZ_JSON_ARRAY_START:
			return open_container(b, jbvArray);
		case CDVIZ_JSON_OBJECT_END:
		case CDVIZ_JSON_ARRAY_END:
			close_container(b);
			return true;
		case CDVIZ_JSON_KEY:
			if (len > JENTRY_OFFLENMASK)
				return false;
			b->open[b->depth - 1].key = s;
			b->open[b->depth - 1].keylen = (int) len;
			return true;
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
	add_member(b, &v);
	return true;
}

/* See store.h. */
Jsonb *
cdviz_jsonb_from_text(const char *text, size_t len)
{
	JsonbBuild	b = {NULL, 0, NULL};
	static MemoryContext building = NULL;
	MemoryContext caller = CurrentMemoryContext;
	char	   *copy;
	Jsonb	   *result = NULL;

	/* the scanner decodes escapes to UTF-8 and reads no other encoding */
	if (GetDatabaseEncoding() != PG_UTF8 || len > TEXT_MAX_LEN)
		return NULL;

	/*
	 * The text's copy and the tree (eight times the text for a GitHub
	 * body, whose jsonb is the size of the text) live only until the jsonb
	 * is made, so that a batch of large documents keeps only their
	 * jsonb.  In a context of this process's lifetime, reset after each
	 * document, whose first block (kept by a reset) holds the tree of a
	 * GitHub body: a context created for each document, or one whose blocks
	 * a reset frees, would have malloc map and unmap them each time, which
	 * costs more than the parse itself.
	 */
	if (building == NULL)
		building = AllocSetContextCreate(TopMemoryContext, "cdviz jsonb parse",
										 PARSE_KEPT_BLOCK, PARSE_KEPT_BLOCK,
										 ALLOCSET_DEFAULT_MAXSIZE);
	Assert(caller != building);
	PG_TRY();
	{
		MemoryContextSwitchTo(building);
		copy = palloc(len + 1);
		memcpy(copy, text, len);
		copy[len] = '\0';
		b.open = palloc(sizeof(OpenContainer) * CDVIZ_JSON_MAX_DEPTH);
		if (cdviz_json_scan(copy, len, add_token, &b) && b.result != NULL)
		{
			MemoryContextSwitchTo(caller);
			result = JsonbValueToJsonb(b.result);
		}
	}
	PG_FINALLY();
	{
		/* also on an error (out of memory): no tree left behind */
		MemoryContextSwitchTo(caller);
		MemoryContextReset(building);
	}
	PG_END_TRY();
	return result;
}

/* jsonb_in over a text, as cdviz_subxact() runs it. */
typedef struct JsonbIn
{
	const char *text;
	Jsonb	   *result;
} JsonbIn;

static void
run_jsonb_in(void *arg)
{
	JsonbIn    *in = (JsonbIn *) arg;

	in->result = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(in->text)));
}

/* See store.h. */
Jsonb *
cdviz_jsonb_parse(const char *text, size_t len, ErrorData **edata)
{
	JsonbIn		in = {text, NULL};
	Jsonb	   *result = cdviz_jsonb_from_text(text, len);

	*edata = NULL;
	if (result != NULL)
		return result;
	if ((*edata = cdviz_subxact(run_jsonb_in, &in, NULL)) == NULL)
		return in.result;
	/*
	 * Only the text's fault is the document's: invalid (class 22) or too
	 * large for jsonb (class 54); a cancel, running out of memory or
	 * anything else is the caller's.
	 */
	if (ERRCODE_TO_CATEGORY((*edata)->sqlerrcode) != ERRCODE_DATA_EXCEPTION &&
		ERRCODE_TO_CATEGORY((*edata)->sqlerrcode) != ERRCODE_PROGRAM_LIMIT_EXCEEDED)
		ReThrowError(*edata);
	return NULL;
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

	cdviz_check_version();
	if (jb == NULL)
		PG_RETURN_NULL();
	PG_RETURN_JSONB_P(jb);
}
