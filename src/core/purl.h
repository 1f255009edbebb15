/*
 * purl.h
 *	  Package URL splitting (https://github.com/package-url/purl-spec):
 *	  pkg:type/namespace/name@version?qualifiers#subpath
 *
 * The read API shows the package name and version of every deployed
 * artifact; a deployments listing splits thousands of purls per query, so
 * the splitting is plain C rather than string functions in SQL.  The rules
 * are those cdviz.purl_parse() documents:
 *
 *	- the text starts with "pkg:"; slashes after it are skipped;
 *	- the subpath is what follows the first "#" (up to a second one), the
 *	  qualifiers what follows the first "?" before it (up to a second one);
 *	- the type is the first segment, lower-cased (ASCII), and must not be
 *	  empty; a "/" must follow it;
 *	- the version is what follows the last "@" when no "/" comes after it;
 *	- the name is the last segment before it and must not be empty; the
 *	  namespace is what lies between type and name (absent when empty);
 *	- namespace, name, version and subpath (with its outer slashes
 *	  trimmed, absent when empty) are percent-decoded, see below.
 *
 * Part of the PostgreSQL-free core: plain C, no PostgreSQL header.
 */
#ifndef CDVIZ_CORE_PURL_H
#define CDVIZ_CORE_PURL_H

#include <stdbool.h>
#include <stddef.h>

#include "core/event.h"			/* CdvizStr: a slice of the input */

typedef struct CdvizPurl
{
	CdvizStr	type;			/* not yet lower-cased */
	CdvizStr	namespace;
	CdvizStr	name;
	CdvizStr	version;
	CdvizStr	qualifiers;		/* raw "k=v&k=v", absent when empty */
	CdvizStr	subpath;		/* outer slashes trimmed */
} CdvizPurl;

/* Split purl (len bytes) into its components; false when not a purl. */
extern bool cdviz_purl_split(const char *purl, size_t len, CdvizPurl *out);

/*
 * Percent-decode len bytes of in into out (room for len bytes); returns
 * the length written.  Only ASCII escapes (%01-%7F) are decoded, so the
 * result is valid UTF-8 whenever the input is: when any "%" is not the
 * start of such an escape, the input is copied unchanged.
 */
extern size_t cdviz_percent_decode(const char *in, size_t len, char *out);

#endif							/* CDVIZ_CORE_PURL_H */
