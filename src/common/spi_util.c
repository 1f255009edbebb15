/*
 * spi_util.c
 *	  Small helpers every worker and SQL function of cdviz uses to talk to
 *	  the executor: kept plans, arrays, result row types, text from bytes.
 */
#include "postgres.h"

#include "executor/spi.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "common/spi_util.h"

/* See spi_util.h. */
SPIPlanPtr
cdviz_prepare_kept(const char *sql, int nargs, Oid *argtypes, int cursor_options)
{
	SPIPlanPtr	plan = SPI_prepare_cursor(sql, nargs, argtypes, cursor_options);

	if (plan == NULL)
		elog(ERROR, "cdviz: SPI_prepare failed for \"%s\": %s", sql,
			 SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "cdviz: SPI_keepplan failed");
	return plan;
}

/* See spi_util.h. */
ArrayType *
cdviz_make_array(Datum *values, bool *nulls, int n, Oid elemtype)
{
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			dims[1] = {n};
	int			lbs[1] = {1};

	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	return construct_md_array(values, nulls, 1, dims, lbs, elemtype, typlen, typbyval, typalign);
}

/* See spi_util.h. */
TupleDesc
cdviz_result_tupdesc(FunctionCallInfo fcinfo)
{
	TupleDesc	tupdesc;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "function returning record called in context that cannot accept type record");
	return BlessTupleDesc(tupdesc);
}

/*
 * Bytes as a text value.  Text holds neither NUL bytes nor invalid
 * encoding, both of which bad input may have: such bytes are kept as \xNN
 * escapes, so a dead letter still shows what was sent.
 */
text *
cdviz_bytes_as_text(const char *raw, size_t len)
{
	StringInfoData buf;
	size_t		i = 0;

	if (memchr(raw, '\0', len) == NULL && pg_verifymbstr(raw, (int) len, true))
		return cstring_to_text_with_len(raw, (int) len);
	initStringInfo(&buf);
	while (i < len)
	{
		int			clen = pg_encoding_verifymbchar(GetDatabaseEncoding(), raw + i,
													(int) (len - i));

		if (raw[i] != '\0' && clen > 0)
		{
			appendBinaryStringInfo(&buf, raw + i, clen);
			i += clen;
		}
		else
			appendStringInfo(&buf, "\\x%02X", (unsigned char) raw[i++]);
	}
	return cstring_to_text_with_len(buf.data, buf.len);
}
