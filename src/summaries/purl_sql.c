/*
 * purl_sql.c
 *	  SQL wrappers of the core's package URL splitting: cdviz.purl_split()
 *	  behind cdviz.purl_parse(), and cdviz.percent_decode().
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "core/purl.h"
#include "common/version.h"

PG_FUNCTION_INFO_V1(cdviz_purl_split_text);
PG_FUNCTION_INFO_V1(cdviz_percent_decode_text);

/* A percent-decoded text datum of a slice; NULL when the slice is absent. */
static Datum
decoded(CdvizStr s, bool *isnull)
{
	text	   *t;

	*isnull = (s.ptr == NULL);
	if (*isnull)
		return (Datum) 0;
	t = (text *) palloc(VARHDRSZ + s.len);
	SET_VARSIZE(t, VARHDRSZ + cdviz_percent_decode(s.ptr, s.len, VARDATA(t)));
	return PointerGetDatum(t);
}

/*
 * cdviz.purl_split(purl text) RETURNS text[]
 *
 * {type (lower case), namespace, name, version, qualifiers (raw), subpath}
 * with absent components NULL, or NULL when purl is not a package URL.
 */
Datum
cdviz_purl_split_text(PG_FUNCTION_ARGS)
{
	text	   *purl = PG_GETARG_TEXT_PP(0);
	CdvizPurl	p;
	Datum		elems[6];
	bool		nulls[6];
	int			dims[1] = {6};
	int			lbs[1] = {1};
	char	   *type;

	cdviz_check_version();
	if (!cdviz_purl_split(VARDATA_ANY(purl), VARSIZE_ANY_EXHDR(purl), &p))
		PG_RETURN_NULL();
	type = pnstrdup(p.type.ptr, p.type.len);
	for (char *c = type; *c; c++)
		*c = (char) pg_ascii_tolower((unsigned char) *c);
	elems[0] = CStringGetTextDatum(type);
	nulls[0] = false;
	elems[1] = decoded(p.namespace, &nulls[1]);
	elems[2] = decoded(p.name, &nulls[2]);
	elems[3] = decoded(p.version, &nulls[3]);
	nulls[4] = (p.qualifiers.ptr == NULL);
	elems[4] = nulls[4] ? (Datum) 0 :
		PointerGetDatum(cstring_to_text_with_len(p.qualifiers.ptr, (int) p.qualifiers.len));
	elems[5] = decoded(p.subpath, &nulls[5]);
	PG_RETURN_ARRAYTYPE_P(construct_md_array(elems, nulls, 1, dims, lbs,
											 TEXTOID, -1, false, TYPALIGN_INT));
}

/* cdviz.percent_decode(s text) RETURNS text: see cdviz_percent_decode(). */
Datum
cdviz_percent_decode_text(PG_FUNCTION_ARGS)
{
	text	   *s = PG_GETARG_TEXT_PP(0);
	CdvizStr	in = {VARDATA_ANY(s), VARSIZE_ANY_EXHDR(s)};
	bool		isnull;

	cdviz_check_version();
	PG_RETURN_DATUM(decoded(in, &isnull));
}
