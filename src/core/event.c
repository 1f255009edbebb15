/*
 * event.c
 *	  Decide whether a JSON document is a CDEvent cdviz can store, under the
 *	  validation mode in force, and extract its normalised columns.
 *
 * Schema choice, in strict and lenient modes:
 *	- a type that an official schema names (dev.cdevents.service.deployed.
 *	  0.3.0) is judged by that schema; when several releases carry the same
 *	  type, the release matching context.specversion/version wins;
 *	- a custom dev.cdeventsx type is judged by the release's custom schema;
 *	- a known subject and predicate with an unknown version, or (lenient)
 *	  any dev.cdevents type, gets the generic context and subject rules;
 *	- in strict mode an unknown dev.cdevents subject or predicate is refused.
 * Whatever the mode, storage needs a JSON object with a context holding a
 * non-empty id and source, a parseable type and an RFC 3339 timestamp, and
 * no NUL character in any string (jsonb cannot hold one).
 */
#include "core/event.h"

#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "core/formats.h"
#include "core/schema.h"

/*
 * Generic rules for types no schema names: the context fields every
 * release shares, and a subject with an id; unknown fields are allowed,
 * as a later version may add some.  %s: release, version field, links.
 */
static const char generic_template[] =
"{\"$id\":\"https://cdevents.dev/%s/schema/cdviz-generic\",\"type\":\"object\","
"\"required\":[\"context\",\"subject\"],\"properties\":{"
"\"context\":{\"type\":\"object\",\"required\":[\"%s\",\"id\",\"source\",\"type\",\"timestamp\"],"
"\"properties\":{\"%s\":{\"type\":\"string\",\"minLength\":1},"
"\"id\":{\"type\":\"string\",\"minLength\":1},"
"\"source\":{\"type\":\"string\",\"minLength\":1,\"format\":\"uri-reference\"},"
"\"type\":{\"type\":\"string\",\"minLength\":1},"
"\"timestamp\":{\"type\":\"string\",\"format\":\"date-time\"},"
"\"schemaUri\":{\"type\":\"string\",\"minLength\":1,\"format\":\"uri\"},"
"\"chainId\":{\"type\":\"string\",\"minLength\":1}%s}},"
"\"subject\":{\"type\":\"object\",\"required\":[\"id\"],\"properties\":{"
"\"id\":{\"type\":\"string\",\"minLength\":1},"
"\"source\":{\"type\":\"string\",\"minLength\":1,\"format\":\"uri-reference\"},"
"\"content\":{\"type\":\"object\"}}},"
"\"customData\":{\"oneOf\":[{\"type\":\"object\"},{\"type\":\"string\"}]},"
"\"customDataContentType\":{\"type\":\"string\"}}}";

typedef struct GenericRules
{
	const char *release;
	const char *version_field;
	bool		links;
	const CdvizSchema *schema;
} GenericRules;

static GenericRules generic_rules[] = {
	{"0.3.0", "version", false, NULL},
	{"0.4.1", "version", true, NULL},
	{"0.5.1", "specversion", true, NULL},
};
#define N_GENERIC (int) (sizeof(generic_rules) / sizeof(generic_rules[0]))

static bool rules_ready;
static const char *rules_error;

/* Compile the official schemas and the generic rules, once. */
static bool
load_rules(void)
{
	if (rules_ready)
		return rules_error == NULL;
	rules_ready = true;
	if (!cdviz_schemas_load(&rules_error))
		return false;
	for (int i = 0; i < N_GENERIC; i++)
	{
		char		text[sizeof(generic_template) + 128];

		snprintf(text, sizeof(text), generic_template, generic_rules[i].release,
				 generic_rules[i].version_field, generic_rules[i].version_field,
				 generic_rules[i].links ?
				 ",\"links\":{\"$ref\":\"links/embeddedlinksarray\"}" : "");
		generic_rules[i].schema = cdviz_schema_compile_text(text, NULL, &rules_error);
		if (generic_rules[i].schema == NULL)
			return false;
	}
	return true;
}

bool
cdviz_validation_from_name(const char *name, CdvizValidation *mode)
{
	if (strcmp(name, "strict") == 0)
		*mode = CDVIZ_VALIDATION_STRICT;
	else if (strcmp(name, "lenient") == 0)
		*mode = CDVIZ_VALIDATION_LENIENT;
	else if (strcmp(name, "off") == 0)
		*mode = CDVIZ_VALIDATION_OFF;
	else
		return false;
	return true;
}

/* The string value of obj[key], or absent. */
static CdvizStr
get_str(json_object *obj, const char *key)
{
	CdvizStr	s = {NULL, 0};
	json_object *v;

	if (obj && json_object_object_get_ex(obj, key, &v) &&
		json_object_is_type(v, json_type_string))
	{
		s.ptr = json_object_get_string(v);
		s.len = (size_t) json_object_get_string_len(v);
	}
	return s;
}

/*
 * Split "dev.cdevents.<subject>.<predicate>.<version>" (or cdeventsx) into
 * its parts.  The version is everything after the fourth dot.
 */
static bool
parse_type(CdvizStr type, CdvizEventInfo *info)
{
	static const char std[] = "dev.cdevents.";
	static const char custom[] = "dev.cdeventsx.";
	const char *p;
	const char *end = type.ptr + type.len;
	const char *dot1,
			   *dot2;

	if (type.len > sizeof(custom) - 1 && memcmp(type.ptr, custom, sizeof(custom) - 1) == 0)
	{
		info->custom = true;
		p = type.ptr + sizeof(custom) - 1;
	}
	else if (type.len > sizeof(std) - 1 && memcmp(type.ptr, std, sizeof(std) - 1) == 0)
	{
		info->custom = false;
		p = type.ptr + sizeof(std) - 1;
	}
	else
		return false;
	dot1 = memchr(p, '.', end - p);
	if (dot1 == NULL || dot1 == p)
		return false;
	dot2 = memchr(dot1 + 1, '.', end - dot1 - 1);
	if (dot2 == NULL || dot2 == dot1 + 1 || dot2 + 1 >= end)
		return false;
	info->subject.ptr = p;
	info->subject.len = dot1 - p;
	info->predicate.ptr = dot1 + 1;
	info->predicate.len = dot2 - dot1 - 1;
	info->type_version.ptr = dot2 + 1;
	info->type_version.len = end - dot2 - 1;
	return true;
}

/* Does any string below v contain a NUL?  (Cheap: no path is built.) */
static bool
has_nul(json_object *v)
{
	switch (json_object_get_type(v))
	{
		case json_type_string:
			return memchr(json_object_get_string(v), '\0',
						  (size_t) json_object_get_string_len(v)) != NULL;
		case json_type_object:
			{
				json_object_object_foreach(v, key, child)
				{
					(void) key;
					if (has_nul(child))
						return true;
				}
				return false;
			}
		case json_type_array:
			for (size_t i = 0; i < json_object_array_length(v); i++)
				if (has_nul(json_object_array_get_idx(v, i)))
					return true;
			return false;
		default:
			return false;
	}
}

/*
 * Report the first string below v that contains a NUL, with its path.
 * Only called once has_nul() said there is one: building paths for every
 * value of every event would cost more than the rest of the check.
 */
static bool
find_nul(json_object *v, char *path, size_t pathlen, size_t cap, CdvizProblems *problems)
{
	switch (json_object_get_type(v))
	{
		case json_type_string:
			if (strlen(json_object_get_string(v)) != (size_t) json_object_get_string_len(v))
			{
				cdviz_problems_add(problems, path, "contains a NUL character (\\u0000), which cannot be stored");
				return true;
			}
			return false;
		case json_type_object:
			{
				json_object_object_foreach(v, key, child)
				{
					size_t		n = snprintf(path + pathlen, cap - pathlen, "%s%s",
											 pathlen ? "." : "", key);

					if (pathlen + n >= cap)
						n = cap - pathlen - 1;
					if (find_nul(child, path, pathlen + n, cap, problems))
						return true;
					path[pathlen] = '\0';
				}
				return false;
			}
		case json_type_array:
			for (size_t i = 0; i < json_object_array_length(v); i++)
			{
				size_t		n = snprintf(path + pathlen, cap - pathlen, "[%zu]", i);

				if (pathlen + n >= cap)
					n = cap - pathlen - 1;
				if (find_nul(json_object_array_get_idx(v, i), path, pathlen + n, cap, problems))
					return true;
				path[pathlen] = '\0';
			}
			return false;
		default:
			return false;
	}
}

/*
 * The checks every mode makes: what the lake's columns need.  nul_free: the
 * document cannot hold a NUL character, no need to look for one.
 */
static bool
check_storable(json_object *event, bool nul_free, CdvizEventInfo *info,
			   CdvizProblems *problems)
{
	json_object *ctx = NULL;
	json_object *subject = NULL;
	json_object *v;
	CdvizStr	ts;
	int			before = problems->count;
	char		path[256] = "";

	if (!json_object_is_type(event, json_type_object))
	{
		cdviz_problems_add(problems, "$", "an event must be a JSON object");
		return false;
	}
	if (!json_object_object_get_ex(event, "context", &ctx) ||
		!json_object_is_type(ctx, json_type_object))
	{
		cdviz_problems_add(problems, "context", ctx || json_object_object_get_ex(event, "context", NULL) ?
						   "must be an object" : "required field is missing");
		return false;
	}
	info->context_id = get_str(ctx, "id");
	if (info->context_id.ptr == NULL || info->context_id.len == 0)
		cdviz_problems_add(problems, "context.id", info->context_id.ptr ?
						   "must not be empty" : "required, must be a string");
	info->context_source = get_str(ctx, "source");
	if (info->context_source.ptr == NULL || info->context_source.len == 0)
		cdviz_problems_add(problems, "context.source", info->context_source.ptr ?
						   "must not be empty" : "required, must be a string");
	info->type = get_str(ctx, "type");
	if (info->type.ptr == NULL)
		cdviz_problems_add(problems, "context.type", "required, must be a string");
	else if (!parse_type(info->type, info))
		cdviz_problems_add(problems, "context.type",
						   "not a CDEvents type (dev.cdevents.<subject>.<predicate>.<version> or dev.cdeventsx.<tool>-<subject>.<predicate>.<version>)");
	ts = get_str(ctx, "timestamp");
	if (ts.ptr == NULL)
		cdviz_problems_add(problems, "context.timestamp", "required, must be a string");
	else if (!cdviz_parse_datetime(ts.ptr, ts.len, &info->timestamp_us))
		cdviz_problems_add(problems, "context.timestamp", "not an RFC 3339 date-time");

	info->spec_version = get_str(ctx, "specversion");
	if (info->spec_version.ptr == NULL)
		info->spec_version = get_str(ctx, "version");
	info->chain_id = get_str(ctx, "chainId");
	if (json_object_object_get_ex(event, "subject", &subject) &&
		json_object_is_type(subject, json_type_object))
		info->subject_id = get_str(subject, "id");
	(void) v;

	if (problems->count == before && !nul_free && has_nul(event))
		find_nul(event, path, 0, sizeof(path), problems);
	return problems->count == before;
}

/* Release prefix ("0.5.") of a version string, compared with a release. */
static bool
same_release(CdvizStr version, const char *release)
{
	/* "0.5.1" matches releases "0.5.x" */
	const char *dot = strchr(release, '.');
	size_t		n;

	if (dot == NULL || (dot = strchr(dot + 1, '.')) == NULL)
		return false;
	n = dot - release + 1;
	return version.ptr && version.len >= n - 1 &&
		memcmp(version.ptr, release, n - 1) == 0 &&
		(version.len == n - 1 || version.ptr[n - 1] == '.' || version.ptr[n - 1] == '-');
}

/*
 * Rank a candidate release for an event: the version field's name decides
 * first (0.5 renamed context.version to specversion), then its value.
 */
static int
release_rank(const CdvizEventInfo *info, json_object *ctx, const char *release,
			 const char *version_field)
{
	int			rank = 0;

	if (json_object_object_get_ex(ctx, version_field, NULL))
		rank += 2;
	if (same_release(info->spec_version, release))
		rank += 1;
	return rank;
}

/* Pick the official schema naming this type (or the custom one), or NULL. */
static const CdvizEventSchema *
find_type_schema(const CdvizEventInfo *info, json_object *ctx, bool custom_schema)
{
	const CdvizEventSchema *best = NULL;
	int			best_rank = -1;

	for (int i = 0; i < cdviz_event_schema_count(); i++)
	{
		const CdvizEventSchema *es = cdviz_event_schema_at(i);
		int			rank;

		if (custom_schema ? es->type != NULL :
			(es->type == NULL || es->type_len != info->type.len ||
			 memcmp(es->type, info->type.ptr, info->type.len) != 0))
			continue;
		/* on a tie the later (newer) release wins */
		rank = release_rank(info, ctx, es->release, es->version_field);
		if (rank >= best_rank)
		{
			best = es;
			best_rank = rank;
		}
	}
	return best;
}

/*
 * A custom event with neither context.version nor context.specversion
 * gives no hint of its release, and every custom schema refuses it.  Pick
 * the custom schema it comes closest to (fewest problems; on a tie the
 * newer release), so that the missing field reported is the one its
 * release wants: context.version for a 0.4 event, not specversion.
 */
static const CdvizEventSchema *
closest_custom_schema(json_object *event, CdvizSchemaLevel level)
{
	const CdvizEventSchema *best = NULL;
	int			best_count = -1;

	for (int i = 0; i < cdviz_event_schema_count(); i++)
	{
		const CdvizEventSchema *es = cdviz_event_schema_at(i);
		CdvizProblems tmp;
		int			count;

		if (es->type != NULL)
			continue;
		cdviz_problems_init(&tmp);
		cdviz_schema_validate(es->root, event, level, &tmp);
		count = tmp.count + (tmp.truncated ? 1 : 0);
		cdviz_problems_reset(&tmp);
		if (best_count < 0 || count <= best_count)
		{
			best = es;
			best_count = count;
		}
	}
	return best;
}

/* Is subject.predicate named by some official schema, in any version? */
static bool
known_subject_predicate(const CdvizEventInfo *info)
{
	size_t		prefix = info->type_version.ptr - info->type.ptr;

	for (int i = 0; i < cdviz_event_schema_count(); i++)
	{
		const CdvizEventSchema *es = cdviz_event_schema_at(i);

		if (es->type && es->type_len > prefix &&
			memcmp(es->type, info->type.ptr, prefix) == 0)
			return true;
	}
	return false;
}

/* The generic rules of the release the event names, else the newest. */
static const CdvizSchema *
generic_for(const CdvizEventInfo *info, json_object *ctx, const char **release)
{
	GenericRules *best = NULL;
	int			best_rank = -1;

	for (int i = 0; i < N_GENERIC; i++)
	{
		int			rank = release_rank(info, ctx, generic_rules[i].release,
										generic_rules[i].version_field);

		if (rank >= best_rank)
		{
			best = &generic_rules[i];
			best_rank = rank;
		}
	}
	*release = best->release;
	return best->schema;
}

bool
cdviz_event_check(json_object *event, CdvizValidation mode,
				  CdvizEventInfo *info, CdvizProblems *problems)
{
	return cdviz_event_check_ex(event, mode, false, info, problems);
}

bool
cdviz_event_check_ex(json_object *event, CdvizValidation mode, bool nul_free,
					 CdvizEventInfo *info, CdvizProblems *problems)
{
	const CdvizEventSchema *es;
	const CdvizSchema *schema = NULL;
	CdvizSchemaLevel level;
	json_object *ctx = NULL;
	bool		storable;
	static char judged[64];

	memset(info, 0, sizeof(*info));
	if (!load_rules())
	{
		cdviz_problems_add(problems, "$", "cdviz validation rules failed to load: %s",
						   rules_error ? rules_error : "unknown error");
		return false;
	}
	storable = check_storable(event, nul_free, info, problems);
	if (mode == CDVIZ_VALIDATION_OFF)
	{
		info->judged_by = "storage checks (validation off)";
		return storable;
	}
	if (!json_object_is_type(event, json_type_object) ||
		!json_object_object_get_ex(event, "context", &ctx) ||
		!json_object_is_type(ctx, json_type_object) ||
		info->type.ptr == NULL || info->subject.ptr == NULL)
		return false;			/* check_storable said why */

	level = mode == CDVIZ_VALIDATION_STRICT ? CDVIZ_SCHEMA_STRICT : CDVIZ_SCHEMA_LENIENT;
	es = find_type_schema(info, ctx, info->custom);
	if (es && es->type == NULL &&
		!json_object_object_get_ex(ctx, "version", NULL) &&
		!json_object_object_get_ex(ctx, "specversion", NULL))
		es = closest_custom_schema(event, level);
	if (es)
	{
		schema = es->root;
		snprintf(judged, sizeof(judged), "CDEvents %s %s schema", es->release,
				 es->type ? "event" : "custom event");
	}
	else if (info->custom || known_subject_predicate(info) || mode == CDVIZ_VALIDATION_LENIENT)
	{
		const char *release;

		schema = generic_for(info, ctx, &release);
		snprintf(judged, sizeof(judged), "CDEvents %s generic rules", release);
	}
	else
	{
		cdviz_problems_add(problems, "context.type",
						   "unknown event type \"%.*s\": no CDEvents release defines this subject and predicate",
						   (int) info->type.len, info->type.ptr);
		return false;
	}
	info->judged_by = judged;

	/*
	 * Storage problems were already reported; the schema may name the same
	 * fields again, so keep its list only when storage had none.
	 */
	if (!storable)
	{
		CdvizProblems tmp;

		cdviz_problems_init(&tmp);
		cdviz_schema_validate(schema, event, level, &tmp);
		for (int i = 0; i < tmp.count; i++)
		{
			bool		dup = false;

			for (int j = 0; j < problems->count && !dup; j++)
				dup = strcmp(problems->items[j].path, tmp.items[i].path) == 0;
			if (!dup)
				cdviz_problems_add(problems, tmp.items[i].path, "%s", tmp.items[i].message);
		}
		cdviz_problems_reset(&tmp);
		return false;
	}
	return cdviz_schema_validate(schema, event, level, problems);
}

struct json_object *
cdviz_json_parse(const char *raw, size_t len, CdvizProblems *problems)
{
	json_tokener *tok = json_tokener_new();
	json_object *obj;
	enum json_tokener_error err;
	size_t		end;

	if (tok == NULL)
	{
		cdviz_problems_add(problems, "$", "out of memory");
		return NULL;
	}
	obj = json_tokener_parse_ex(tok, raw, (int) len);
	err = json_tokener_get_error(tok);
	end = json_tokener_get_parse_end(tok);
	if (obj == NULL && err == json_tokener_continue)
	{
		/* a bare number at the end is complete only once a delimiter follows */
		obj = json_tokener_parse_ex(tok, " ", 1);
		err = json_tokener_get_error(tok);
		if (obj != NULL)
			end = len;
	}
	if (obj == NULL && err == json_tokener_success)
	{
		/* json-c represents a JSON null as no object */
		cdviz_problems_add(problems, "$", "an event must be a JSON object, not null");
	}
	else if (obj == NULL || err != json_tokener_success)
	{
		cdviz_problems_add(problems, "$", "not valid JSON: %s (at byte %zu)",
						   err == json_tokener_continue ? "unexpected end of input" :
						   json_tokener_error_desc(err), end);
		json_object_put(obj);
		obj = NULL;
	}
	else
	{
		/* only white space may follow the document */
		while (end < len && (raw[end] == ' ' || raw[end] == '\t' ||
							 raw[end] == '\n' || raw[end] == '\r'))
			end++;
		if (end < len)
		{
			cdviz_problems_add(problems, "$", "not valid JSON: unexpected data after the document (at byte %zu)", end);
			json_object_put(obj);
			obj = NULL;
		}
	}
	json_tokener_free(tok);
	return obj;
}

void
cdviz_json_free(struct json_object *doc)
{
	json_object_put(doc);
}
