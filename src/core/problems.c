/*
 * problems.c
 *	  Validation problem lists: collect, move, render as JSON or text.
 *
 * Memory comes from malloc: the core runs in unit tests and fuzzers as well
 * as in backends, and a list never lives past the call that reports it.
 */
#include "core/problems.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

/* Start an empty list. */
void
cdviz_problems_init(CdvizProblems *p)
{
	p->count = 0;
	p->truncated = false;
}

/* Free every entry and leave the list empty. */
void
cdviz_problems_reset(CdvizProblems *p)
{
	for (int i = 0; i < p->count; i++)
	{
		free(p->items[i].path);
		free(p->items[i].message);
	}
	cdviz_problems_init(p);
}

/* Append one problem; beyond the cap only remember that some were cut. */
void
cdviz_problems_add(CdvizProblems *p, const char *path, const char *fmt,...)
{
	va_list		ap;
	char		buf[1024];
	char	   *msg;
	char	   *pth;

	if (p->count >= CDVIZ_MAX_PROBLEMS)
	{
		p->truncated = true;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	msg = strdup(buf);
	pth = strdup(path && *path ? path : "$");
	if (msg == NULL || pth == NULL)
	{
		free(msg);
		free(pth);
		p->truncated = true;
		return;
	}
	p->items[p->count].path = pth;
	p->items[p->count].message = msg;
	p->count++;
}

/* Append all of src to dst; src is left empty. */
void
cdviz_problems_move(CdvizProblems *dst, CdvizProblems *src)
{
	for (int i = 0; i < src->count; i++)
	{
		if (dst->count >= CDVIZ_MAX_PROBLEMS)
		{
			dst->truncated = true;
			free(src->items[i].path);
			free(src->items[i].message);
			continue;
		}
		dst->items[dst->count++] = src->items[i];
	}
	dst->truncated |= src->truncated;
	cdviz_problems_init(src);
}

/*
 * Render as a JSON array of {"path":..,"message":..}; a cut list ends with
 * an entry saying so.  Caller frees the result.
 */
char *
cdviz_problems_to_json(const CdvizProblems *p)
{
	json_object *arr = json_object_new_array();
	char	   *out;

	for (int i = 0; i < p->count; i++)
	{
		json_object *o = json_object_new_object();

		json_object_object_add(o, "path", json_object_new_string(p->items[i].path));
		json_object_object_add(o, "message", json_object_new_string(p->items[i].message));
		json_object_array_add(arr, o);
	}
	if (p->truncated)
	{
		json_object *o = json_object_new_object();

		json_object_object_add(o, "path", json_object_new_string("$"));
		json_object_object_add(o, "message",
							   json_object_new_string("more problems were found than are listed"));
		json_object_array_add(arr, o);
	}
	out = strdup(json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PLAIN |
												 JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(arr);
	return out;
}

/* Render as "path: message" joined by sep.  Caller frees the result. */
char *
cdviz_problems_to_text(const CdvizProblems *p, const char *sep)
{
	size_t		len = 1;
	char	   *out;
	char	   *w;

	for (int i = 0; i < p->count; i++)
		len += strlen(p->items[i].path) + strlen(p->items[i].message) + 2 + strlen(sep);
	out = malloc(len);
	if (out == NULL)
		return NULL;
	w = out;
	*w = '\0';
	for (int i = 0; i < p->count; i++)
		w += sprintf(w, "%s%s: %s", i ? sep : "", p->items[i].path, p->items[i].message);
	return out;
}
