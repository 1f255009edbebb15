/*
 * schema.c
 *	  Compile the embedded CDEvents JSON schemas into rule trees and
 *	  evaluate json-c values against them.
 *
 * The rule trees are built once per process from cdevents_schemas.c and
 * never freed: they are the validator's tables.  Problems are reported at
 * the first keyword that fails on each value, with its JSON path, which is
 * what a user needs to fix an event; the verdict (valid or not) is the
 * JSON Schema verdict with formats asserted.
 */
#include "core/schema.h"

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/formats.h"

#define T_OBJECT	(1u << 0)
#define T_ARRAY		(1u << 1)
#define T_STRING	(1u << 2)
#define T_NUMBER	(1u << 3)
#define T_INTEGER	(1u << 4)
#define T_BOOLEAN	(1u << 5)
#define T_NULL		(1u << 6)

typedef enum
{
	FMT_NONE,
	FMT_DATETIME,
	FMT_URI,
	FMT_URI_REFERENCE
} SchemaFormat;

typedef enum
{
	ADDL_ANY,					/* absent, or true */
	ADDL_NONE,					/* false */
	ADDL_SCHEMA
} AddlMode;

typedef struct PropRule
{
	const char *name;
	CdvizSchema *schema;
} PropRule;

struct CdvizSchema
{
	unsigned	types;			/* T_* bits; 0 when no "type" keyword */
	int			min_length;		/* -1 when absent */
	int			nrequired;
	const char **required;
	int			nprops;
	PropRule   *props;			/* sorted by name for bsearch */
	AddlMode	addl_mode;
	CdvizSchema *addl;
	int			nenum;
	json_object **enums;
	SchemaFormat format;
	bool		has_pattern;
	regex_t		pattern;
	const char *pattern_text;
	CdvizSchema *items;
	int			nany;
	CdvizSchema **any_of;
	int			none;
	CdvizSchema **one_of;
	char	   *ref;			/* resolved absolute URI of "$ref" */
	const CdvizSchema *ref_target;
};

/* A compiled document: its $id and root, kept for $ref resolution. */
typedef struct SchemaDoc
{
	const char *id;
	const char *release;
	json_object *json;
	CdvizSchema *root;
} SchemaDoc;

static SchemaDoc *docs;
static int	ndocs;
static CdvizEventSchema *event_schemas;
static int	nevent_schemas;
static bool loaded;
static const char *load_error;

/*
 * Documents compiled by cdviz_schema_compile_text().  The rule trees point
 * into their strings, so they live for the process like the embedded ones;
 * keeping them on this list keeps them reachable (leak checkers, LSan in
 * the fuzzer, would otherwise report every one).
 */
typedef struct TextDoc
{
	json_object *json;
	CdvizSchema *root;
	struct TextDoc *next;
} TextDoc;

static TextDoc *text_docs;

/*
 * The path of the value being checked, as a stack of segments grown and
 * cut as we descend.  It is rendered as text only when a problem is
 * reported: building the text for every value visited cost more than
 * checking it.
 */
#define PATH_MAX_DEPTH 64

typedef struct PathSeg
{
	const char *key;			/* object member, or NULL for an array index */
	size_t		index;
} PathSeg;

typedef struct PathBuf
{
	int			depth;			/* may exceed PATH_MAX_DEPTH; deeper ones are
								 * not recorded */
	PathSeg		segs[PATH_MAX_DEPTH];
	char		buf[512];		/* rendering */
} PathBuf;

/* ------------------------------------------------------------------ */
/* compilation                                                         */
/* ------------------------------------------------------------------ */

static void *
xcalloc(size_t n, size_t size)
{
	void	   *p = calloc(n ? n : 1, size);

	if (p == NULL)
	{
		fputs("cdviz: out of memory compiling schemas\n", stderr);
		abort();
	}
	return p;
}

static int
prop_cmp(const void *a, const void *b)
{
	return strcmp(((const PropRule *) a)->name, ((const PropRule *) b)->name);
}

/* Resolve a relative $ref against the document's $id (RFC 3986, simply). */
static char *
resolve_ref(const char *base, const char *ref)
{
	const char *slash;
	char	   *out;

	if (strstr(ref, "://") != NULL || base == NULL)
		return strdup(ref);
	slash = strrchr(base, '/');
	if (slash == NULL)
		return strdup(ref);
	out = xcalloc(slash - base + 2 + strlen(ref), 1);
	memcpy(out, base, slash - base + 1);
	strcat(out, ref);
	return out;
}

static unsigned
type_bit(const char *name)
{
	static const struct
	{
		const char *name;
		unsigned	bit;
	}			names[] = {
		{"object", T_OBJECT}, {"array", T_ARRAY}, {"string", T_STRING},
		{"number", T_NUMBER}, {"integer", T_INTEGER}, {"boolean", T_BOOLEAN},
		{"null", T_NULL}
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(names[i].name, name) == 0)
			return names[i].bit;
	return 0;
}

static CdvizSchema *compile_node(json_object *node, const char *base, const char **err);

static CdvizSchema **
compile_list(json_object *arr, const char *base, int *n, const char **err)
{
	CdvizSchema **list;

	*n = (int) json_object_array_length(arr);
	list = xcalloc(*n, sizeof(CdvizSchema *));
	for (int i = 0; i < *n; i++)
		list[i] = compile_node(json_object_array_get_idx(arr, i), base, err);
	return list;
}

/* Compile one schema object; unknown keywords are annotations. */
static CdvizSchema *
compile_node(json_object *node, const char *base, const char **err)
{
	CdvizSchema *s = xcalloc(1, sizeof(CdvizSchema));
	json_object *v;

	s->min_length = -1;
	if (json_object_get_type(node) == json_type_boolean)
	{
		/* "true" accepts anything; "false" is expressed as no types */
		if (!json_object_get_boolean(node))
			s->types = 0x80000000u;
		return s;
	}
	if (!json_object_is_type(node, json_type_object))
	{
		*err = "schema node is not an object";
		return s;
	}
	if (json_object_object_get_ex(node, "type", &v))
	{
		if (json_object_is_type(v, json_type_string))
			s->types = type_bit(json_object_get_string(v));
		else if (json_object_is_type(v, json_type_array))
			for (size_t i = 0; i < json_object_array_length(v); i++)
				s->types |= type_bit(json_object_get_string(json_object_array_get_idx(v, i)));
	}
	if (json_object_object_get_ex(node, "minLength", &v))
		s->min_length = json_object_get_int(v);
	if (json_object_object_get_ex(node, "required", &v))
	{
		s->nrequired = (int) json_object_array_length(v);
		s->required = xcalloc(s->nrequired, sizeof(char *));
		for (int i = 0; i < s->nrequired; i++)
			s->required[i] = json_object_get_string(json_object_array_get_idx(v, i));
	}
	if (json_object_object_get_ex(node, "properties", &v))
	{
		int			i = 0;

		s->nprops = json_object_object_length(v);
		s->props = xcalloc(s->nprops, sizeof(PropRule));
		{
			/* json-c's foreach macro declares variables: give it a block */
			json_object_object_foreach(v, key, sub)
			{
				s->props[i].name = key;
				s->props[i].schema = compile_node(sub, base, err);
				i++;
			}
		}
		qsort(s->props, s->nprops, sizeof(PropRule), prop_cmp);
	}
	if (json_object_object_get_ex(node, "additionalProperties", &v))
	{
		if (json_object_is_type(v, json_type_boolean))
			s->addl_mode = json_object_get_boolean(v) ? ADDL_ANY : ADDL_NONE;
		else
		{
			s->addl_mode = ADDL_SCHEMA;
			s->addl = compile_node(v, base, err);
		}
	}
	if (json_object_object_get_ex(node, "enum", &v))
	{
		s->nenum = (int) json_object_array_length(v);
		s->enums = xcalloc(s->nenum, sizeof(json_object *));
		for (int i = 0; i < s->nenum; i++)
			s->enums[i] = json_object_array_get_idx(v, i);
	}
	if (json_object_object_get_ex(node, "format", &v))
	{
		const char *f = json_object_get_string(v);

		if (strcmp(f, "date-time") == 0)
			s->format = FMT_DATETIME;
		else if (strcmp(f, "uri") == 0)
			s->format = FMT_URI;
		else if (strcmp(f, "uri-reference") == 0)
			s->format = FMT_URI_REFERENCE;
		/* other formats are annotations here: none is used by CDEvents */
	}
	if (json_object_object_get_ex(node, "pattern", &v))
	{
		s->pattern_text = json_object_get_string(v);
		if (regcomp(&s->pattern, s->pattern_text, REG_EXTENDED | REG_NOSUB) != 0)
			*err = "schema pattern is not a POSIX extended regular expression";
		else
			s->has_pattern = true;
	}
	if (json_object_object_get_ex(node, "items", &v))
		s->items = compile_node(v, base, err);
	if (json_object_object_get_ex(node, "anyOf", &v))
		s->any_of = compile_list(v, base, &s->nany, err);
	if (json_object_object_get_ex(node, "oneOf", &v))
		s->one_of = compile_list(v, base, &s->none, err);
	if (json_object_object_get_ex(node, "$ref", &v))
		s->ref = resolve_ref(base, json_object_get_string(v));
	return s;
}

static const CdvizSchema *
find_doc(const char *id)
{
	for (int i = 0; i < ndocs; i++)
		if (docs[i].id && strcmp(docs[i].id, id) == 0)
			return docs[i].root;
	return NULL;
}

/* Point every "$ref" at its compiled target. */
static void
link_refs(CdvizSchema *s, const char **err)
{
	if (s == NULL)
		return;
	if (s->ref && s->ref_target == NULL)
	{
		s->ref_target = find_doc(s->ref);
		if (s->ref_target == NULL)
			*err = "schema $ref does not resolve";
	}
	for (int i = 0; i < s->nprops; i++)
		link_refs(s->props[i].schema, err);
	link_refs(s->addl, err);
	link_refs(s->items, err);
	for (int i = 0; i < s->nany; i++)
		link_refs(s->any_of[i], err);
	for (int i = 0; i < s->none; i++)
		link_refs(s->one_of[i], err);
}

/* Record a document as an event schema when it describes a whole event. */
static void
register_event_schema(const SchemaDoc *doc)
{
	json_object *ctx,
			   *props,
			   *type,
			   *e;
	CdvizEventSchema *es;

	if (!json_object_object_get_ex(doc->json, "properties", &props) ||
		!json_object_object_get_ex(props, "context", &ctx) ||
		!json_object_object_get_ex(ctx, "properties", &props))
		return;
	es = &event_schemas[nevent_schemas++];
	es->release = doc->release;
	es->root = doc->root;
	es->version_field = json_object_object_get_ex(props, "specversion", NULL) ?
		"specversion" : "version";
	es->type = NULL;
	if (json_object_object_get_ex(props, "type", &type) &&
		json_object_object_get_ex(type, "enum", &e) &&
		json_object_array_length(e) == 1)
	{
		es->type = json_object_get_string(json_object_array_get_idx(e, 0));
		es->type_len = strlen(es->type);
	}
}

bool
cdviz_schemas_load(const char **error)
{
	const char *err = NULL;

	if (loaded)
	{
		if (error)
			*error = load_error;
		return load_error == NULL;
	}
	docs = xcalloc(cdviz_schema_source_count, sizeof(SchemaDoc));
	event_schemas = xcalloc(cdviz_schema_source_count, sizeof(CdvizEventSchema));
	for (int i = 0; i < cdviz_schema_source_count && err == NULL; i++)
	{
		SchemaDoc  *d = &docs[ndocs++];
		json_object *id;

		d->release = cdviz_schema_sources[i].release;
		d->json = json_tokener_parse(cdviz_schema_sources[i].text);
		if (d->json == NULL)
		{
			err = "embedded schema is not JSON";
			break;
		}
		if (json_object_object_get_ex(d->json, "$id", &id))
			d->id = json_object_get_string(id);
		d->root = compile_node(d->json, d->id, &err);
	}
	for (int i = 0; i < ndocs && err == NULL; i++)
		link_refs(docs[i].root, &err);
	for (int i = 0; i < ndocs && err == NULL; i++)
		register_event_schema(&docs[i]);
	loaded = true;
	load_error = err;
	if (error)
		*error = err;
	return err == NULL;
}

int
cdviz_event_schema_count(void)
{
	return nevent_schemas;
}

const CdvizEventSchema *
cdviz_event_schema_at(int i)
{
	return (i >= 0 && i < nevent_schemas) ? &event_schemas[i] : NULL;
}

/* ------------------------------------------------------------------ */
/* evaluation                                                          */
/* ------------------------------------------------------------------ */

/* Descend into object member key; returns the depth to come back to. */
static int
path_push_key(PathBuf *p, const char *key)
{
	if (p->depth < PATH_MAX_DEPTH)
	{
		p->segs[p->depth].key = key;
		p->segs[p->depth].index = 0;
	}
	return p->depth++;
}

/* Descend into array element idx. */
static int
path_push_index(PathBuf *p, size_t idx)
{
	if (p->depth < PATH_MAX_DEPTH)
	{
		p->segs[p->depth].key = NULL;
		p->segs[p->depth].index = idx;
	}
	return p->depth++;
}

static void
path_pop(PathBuf *p, int old)
{
	p->depth = old;
}

/* The path as text: "context.links[0].linkType" ("" at the root). */
static const char *
path_text(PathBuf *p)
{
	size_t		len = 0;
	int			depth = p->depth < PATH_MAX_DEPTH ? p->depth : PATH_MAX_DEPTH;

	p->buf[0] = '\0';
	for (int i = 0; i < depth && len < sizeof(p->buf) - 1; i++)
	{
		int			n;

		if (p->segs[i].key)
			n = snprintf(p->buf + len, sizeof(p->buf) - len, "%s%s",
						 len ? "." : "", p->segs[i].key);
		else
			n = snprintf(p->buf + len, sizeof(p->buf) - len, "[%zu]", p->segs[i].index);
		if (n < 0)
			break;
		len = (len + n < sizeof(p->buf)) ? len + n : sizeof(p->buf) - 1;
	}
	return p->buf;
}

static bool
value_has_type(json_object *v, unsigned types)
{
	switch (json_object_get_type(v))
	{
		case json_type_object:
			return types & T_OBJECT;
		case json_type_array:
			return types & T_ARRAY;
		case json_type_string:
			return types & T_STRING;
		case json_type_boolean:
			return types & T_BOOLEAN;
		case json_type_null:
			return types & T_NULL;
		case json_type_int:
			return types & (T_NUMBER | T_INTEGER);
		case json_type_double:
			{
				double		d = json_object_get_double(v);

				if (types & T_NUMBER)
					return true;
				return (types & T_INTEGER) && d == (double) (long long) d;
			}
	}
	return false;
}

static const char *
type_names(unsigned types)
{
	static char buf[96];
	static const char *names[] = {"an object", "an array", "a string", "a number",
	"an integer", "a boolean", "null"};

	buf[0] = '\0';
	for (int i = 0; i < 7; i++)
		if (types & (1u << i))
		{
			if (buf[0])
				strcat(buf, " or ");
			strcat(buf, names[i]);
		}
	return buf[0] ? buf : "nothing (no value is allowed here)";
}

/* Number of code points of a UTF-8 string, as minLength counts. */
static size_t
utf8_length(const char *s, size_t len)
{
	size_t		n = 0;

	for (size_t i = 0; i < len; i++)
		if (((unsigned char) s[i] & 0xC0) != 0x80)
			n++;
	return n;
}

static bool
enum_contains(const CdvizSchema *s, json_object *v)
{
	for (int i = 0; i < s->nenum; i++)
		if (json_object_equal(s->enums[i], v))
			return true;
	return false;
}

static void
describe_enum(const CdvizSchema *s, char *buf, size_t size)
{
	size_t		len = 0;

	buf[0] = '\0';
	for (int i = 0; i < s->nenum && len < size; i++)
		len += snprintf(buf + len, size - len, "%s%s", i ? ", " : "",
						json_object_to_json_string_ext(s->enums[i], JSON_C_TO_STRING_PLAIN));
}

static bool validate_node(const CdvizSchema *s, json_object *v, CdvizSchemaLevel level,
						  PathBuf *path, CdvizProblems *problems);

/*
 * How far a failing branch is from matching.  A failed enum usually means
 * the value is another branch's (links are told apart by linkType), so it
 * weighs more than a missing field: the problems reported are then those
 * of the branch the user meant.
 */
static int
branch_distance(const CdvizProblems *p)
{
	int			d = p->count;

	for (int i = 0; i < p->count; i++)
		if (strncmp(p->items[i].message, "must be one of", 14) == 0)
			d += 10;
	return d;
}

/* Evaluate the branches of anyOf/oneOf; returns how many matched. */
static int
count_matching(CdvizSchema **branches, int n, json_object *v, CdvizSchemaLevel level,
			   PathBuf *path, CdvizProblems *best)
{
	int			matched = 0;
	int			best_count = -1;

	for (int i = 0; i < n; i++)
	{
		CdvizProblems tmp;

		cdviz_problems_init(&tmp);
		if (validate_node(branches[i], v,
						  level == CDVIZ_SCHEMA_STRICT ? level : CDVIZ_SCHEMA_LENIENT_BRANCH,
						  path, &tmp))
			matched++;
		else if (best_count < 0 || branch_distance(&tmp) < best_count)
		{
			/* keep the problems of the branch that came closest */
			cdviz_problems_reset(best);
			best_count = branch_distance(&tmp);
			cdviz_problems_move(best, &tmp);
		}
		cdviz_problems_reset(&tmp);
	}
	return matched;
}

static bool
validate_string(const CdvizSchema *s, json_object *v, CdvizSchemaLevel level,
				PathBuf *path, CdvizProblems *problems)
{
	const char *str = json_object_get_string(v);
	size_t		len = (size_t) json_object_get_string_len(v);
	bool		ok = true;

	if (level != CDVIZ_SCHEMA_STRICT)
		return true;
	if (s->min_length >= 0 && utf8_length(str, len) < (size_t) s->min_length)
	{
		cdviz_problems_add(problems, path_text(path), s->min_length == 1 ?
						   "must not be empty" : "must be at least %d characters long",
						   s->min_length);
		ok = false;
	}
	if (s->format == FMT_DATETIME)
	{
		int64_t		us;

		if (!cdviz_parse_datetime(str, len, &us))
		{
			cdviz_problems_add(problems, path_text(path), "not an RFC 3339 date-time");
			ok = false;
		}
	}
	else if (s->format == FMT_URI && !cdviz_is_uri(str, len))
	{
		cdviz_problems_add(problems, path_text(path), "not a URI (RFC 3986, with a scheme)");
		ok = false;
	}
	else if (s->format == FMT_URI_REFERENCE && !cdviz_is_uri_reference(str, len))
	{
		cdviz_problems_add(problems, path_text(path), "not a URI reference (RFC 3986)");
		ok = false;
	}
	if (s->has_pattern &&
		(strlen(str) != len || regexec(&s->pattern, str, 0, NULL, 0) != 0))
	{
		cdviz_problems_add(problems, path_text(path), "does not match the pattern %s",
						   s->pattern_text);
		ok = false;
	}
	return ok;
}

static bool
validate_object(const CdvizSchema *s, json_object *v, CdvizSchemaLevel level,
				PathBuf *path, CdvizProblems *problems)
{
	bool		ok = true;

	for (int i = 0; i < s->nrequired; i++)
		if (!json_object_object_get_ex(v, s->required[i], NULL))
		{
			int			old = path_push_key(path, s->required[i]);

			cdviz_problems_add(problems, path_text(path), "required field is missing");
			path_pop(path, old);
			ok = false;
		}
	{
		json_object_object_foreach(v, key, child)
		{
			PropRule	k = {key, NULL};
			PropRule   *rule = s->nprops ?
				bsearch(&k, s->props, s->nprops, sizeof(PropRule), prop_cmp) : NULL;
			const CdvizSchema *sub = NULL;
			int			old;

			if (rule)
				sub = rule->schema;
			else if (s->addl_mode == ADDL_SCHEMA)
				sub = s->addl;
			else if (s->addl_mode == ADDL_NONE && level == CDVIZ_SCHEMA_STRICT)
			{
				old = path_push_key(path, key);
				cdviz_problems_add(problems, path_text(path), "unknown field, not allowed here by the schema");
				path_pop(path, old);
				ok = false;
				continue;
			}
			if (sub == NULL)
				continue;
			old = path_push_key(path, key);
			ok &= validate_node(sub, child, level, path, problems);
			path_pop(path, old);
		}
	}
	return ok;
}

static bool
validate_node(const CdvizSchema *s, json_object *v, CdvizSchemaLevel level,
			  PathBuf *path, CdvizProblems *problems)
{
	bool		ok = true;
	json_type	jt = json_object_get_type(v);

	if (s->types && !value_has_type(v, s->types))
	{
		cdviz_problems_add(problems, path_text(path), "must be %s", type_names(s->types));
		return false;
	}
	if (s->ref_target)
		ok &= validate_node(s->ref_target, v, level, path, problems);
	/*
	 * Lenient mode skips enums, except inside anyOf/oneOf branches: there an
	 * enum tells the branches apart (a link's linkType), and without it the
	 * loosest branch would accept any object and its types go unchecked.
	 */
	if (s->nenum && level != CDVIZ_SCHEMA_LENIENT && !enum_contains(s, v))
	{
		char		allowed[256];

		describe_enum(s, allowed, sizeof(allowed));
		cdviz_problems_add(problems, path_text(path), "must be one of: %s", allowed);
		ok = false;
	}
	if (jt == json_type_string)
		ok &= validate_string(s, v, level, path, problems);
	else if (jt == json_type_object)
		ok &= validate_object(s, v, level, path, problems);
	else if (jt == json_type_array && s->items)
	{
		size_t		n = json_object_array_length(v);

		for (size_t i = 0; i < n; i++)
		{
			int			old = path_push_index(path, i);

			ok &= validate_node(s->items, json_object_array_get_idx(v, i), level, path, problems);
			path_pop(path, old);
		}
	}
	if (s->nany)
	{
		CdvizProblems best;

		cdviz_problems_init(&best);
		if (count_matching(s->any_of, s->nany, v, level, path, &best) == 0)
		{
			cdviz_problems_move(problems, &best);
			ok = false;
		}
		cdviz_problems_reset(&best);
	}
	if (s->none)
	{
		CdvizProblems best;
		int			matched;

		cdviz_problems_init(&best);
		matched = count_matching(s->one_of, s->none, v, level, path, &best);
		if (matched == 0)
		{
			cdviz_problems_move(problems, &best);
			ok = false;
		}
		else if (matched > 1)
		{
			cdviz_problems_add(problems, path_text(path), "matches more than one of the allowed forms");
			ok = false;
		}
		cdviz_problems_reset(&best);
	}
	return ok;
}

bool
cdviz_schema_validate(const CdvizSchema *schema, json_object *value,
					  CdvizSchemaLevel level, CdvizProblems *problems)
{
	PathBuf		path;

	path.depth = 0;
	return validate_node(schema, value, level, &path, problems);
}

const CdvizSchema *
cdviz_schema_compile_text(const char *text, const char *base_id, const char **error)
{
	const char *err = NULL;
	json_object *doc;
	CdvizSchema *root;

	if (!cdviz_schemas_load(error))
		return NULL;
	doc = json_tokener_parse(text);
	if (doc == NULL)
	{
		*error = "schema text is not JSON";
		return NULL;
	}
	if (base_id == NULL)
	{
		json_object *id;

		if (json_object_object_get_ex(doc, "$id", &id))
			base_id = json_object_get_string(id);
	}
	root = compile_node(doc, base_id, &err);
	if (err == NULL)
		link_refs(root, &err);
	*error = err;
	/* doc is kept (even on failure): the compiled tree points into it */
	{
		TextDoc    *td = xcalloc(1, sizeof(TextDoc));

		td->json = doc;
		td->root = root;
		td->next = text_docs;
		text_docs = td;
	}
	return err ? NULL : root;
}
