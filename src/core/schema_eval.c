/*
 * schema_eval.c
 *	  Evaluate a json-c value against a compiled schema (schema.c).
 *
 * Problems are reported at the first keyword that fails on each value,
 * with its JSON path, which is what a user needs to fix an event; the
 * verdict (valid or not) is the JSON Schema verdict with formats asserted.
 */
#include "core/schema_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/formats.h"

/*
 * The path of the value being checked, as a stack of segments grown and
 * cut as we descend.  It is rendered as text only when a problem is
 * reported: building the text for every value visited would cost more than
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
				bsearch(&k, s->props, s->nprops, sizeof(PropRule), cdviz_prop_cmp) : NULL;
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

/* See schema.h. */
bool
cdviz_schema_validate(const CdvizSchema *schema, json_object *value,
					  CdvizSchemaLevel level, CdvizProblems *problems)
{
	PathBuf		path;

	path.depth = 0;
	return validate_node(schema, value, level, &path, problems);
}
