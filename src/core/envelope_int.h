/*
 * envelope_int.h
 *	  What envelope.c (the modes of the HTTP binding) takes from
 *	  envelope_ce.c (the CloudEvents attributes and structured events).
 */
#ifndef CDVIZ_ENVELOPE_INT_H
#define CDVIZ_ENVELOPE_INT_H

#include <stdbool.h>

#include "core/envelope.h"

/* The CloudEvents release the binding accepts. */
#define CE_SPECVERSION "1.0"

/*
 * Compare the CloudEvents id/source/type with the CDEvent's context.  what
 * says where the attributes came from ("ce-" for headers, "" for a
 * structured event).
 */
extern void cdviz_ce_check_agreement(struct json_object *cdevent, const char *id,
									 const char *source, const char *type,
									 const char *what, CdvizProblems *problems);

/*
 * The problems of required CloudEvents attributes (id, source, type) that
 * are absent, not strings or empty; prefix as what above.
 */
extern void cdviz_ce_check_required(const char *const values[3], const bool present[3],
									const char *prefix, CdvizProblems *problems);

/*
 * Fill ev from one structured CloudEvent ce, received as text (len bytes);
 * false only when out of memory.
 */
extern bool cdviz_ce_structured_fill(CdvizEnvelopeEvent *ev, struct json_object *ce,
									 const char *text, size_t len);

#endif							/* CDVIZ_ENVELOPE_INT_H */
