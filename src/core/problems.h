/*
 * problems.h
 *	  A list of validation problems, each a JSON path and a message.
 *
 * Part of the PostgreSQL-free core: plain C, no PostgreSQL header.
 */
#ifndef CDVIZ_CORE_PROBLEMS_H
#define CDVIZ_CORE_PROBLEMS_H

#include <stdbool.h>
#include <stddef.h>

/* No event needs more; past this the list says it was cut. */
#define CDVIZ_MAX_PROBLEMS 64

typedef struct CdvizProblem
{
	char	   *path;			/* e.g. "context.timestamp", "$" for the root */
	char	   *message;
} CdvizProblem;

typedef struct CdvizProblems
{
	int			count;
	bool		truncated;		/* more problems than CDVIZ_MAX_PROBLEMS */
	CdvizProblem items[CDVIZ_MAX_PROBLEMS];
} CdvizProblems;

extern void cdviz_problems_init(CdvizProblems *p);
extern void cdviz_problems_reset(CdvizProblems *p);
extern void cdviz_problems_add(CdvizProblems *p, const char *path,
							   const char *fmt,...)
			__attribute__((format(printf, 3, 4)));
extern void cdviz_problems_move(CdvizProblems *dst, CdvizProblems *src);
extern char *cdviz_problems_to_json(const CdvizProblems *p);
extern char *cdviz_problems_to_text(const CdvizProblems *p, const char *sep);

#endif							/* CDVIZ_CORE_PROBLEMS_H */
