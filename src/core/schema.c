/*
 * schema.c
 *	  Compile the embedded CDEvents JSON schemas into rule trees (see
 *	  schema_int.h), which schema_eval.c evaluates json-c values against.
 *
 * The rule trees are built once per process from cdevents_schemas.c and
 * never freed: they are the validator's tables.
 */
#include "core/schema_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
		qsort(s->props, s->nprops, sizeof(PropRule), cdviz_prop_cmp);
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

/* See schema.h. */
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

/* See schema.h. */
int
cdviz_event_schema_count(void)
{
	return nevent_schemas;
}

/* See schema.h. */
const CdvizEventSchema *
cdviz_event_schema_at(int i)
{
	return (i >= 0 && i < nevent_schemas) ? &event_schemas[i] : NULL;
}

/* See schema.h. */
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
