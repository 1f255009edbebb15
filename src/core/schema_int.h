/*
 * schema_int.h
 *	  The compiled form of a JSON schema, which schema.c builds and
 *	  schema_eval.c walks.
 */
#ifndef CDVIZ_SCHEMA_INT_H
#define CDVIZ_SCHEMA_INT_H

#include <regex.h>
#include <string.h>

#include "core/schema.h"

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

/* Order of a node's properties, sorted for bsearch. */
static inline int
cdviz_prop_cmp(const void *a, const void *b)
{
	return strcmp(((const PropRule *) a)->name, ((const PropRule *) b)->name);
}

#endif							/* CDVIZ_SCHEMA_INT_H */
