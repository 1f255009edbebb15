/*
 * spi_util.h
 *	  Small helpers for talking to the executor (see spi_util.c).
 */
#ifndef CDVIZ_COMMON_SPI_UTIL_H
#define CDVIZ_COMMON_SPI_UTIL_H

#include "postgres.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "utils/array.h"

/*
 * SPI_prepare_cursor() and SPI_keepplan(), raising on failure: a plan kept
 * for the life of the session.
 */
extern SPIPlanPtr cdviz_prepare_kept(const char *sql, int nargs, Oid *argtypes,
									 int cursor_options);

/* A one-dimensional array of n values of elemtype (nulls may be NULL). */
extern ArrayType *cdviz_make_array(Datum *values, bool *nulls, int n, Oid elemtype);

/* The row type a SQL function returning a record was declared with. */
extern TupleDesc cdviz_result_tupdesc(FunctionCallInfo fcinfo);

/* Bytes as text, invalid encoding and NUL bytes escaped as \xNN. */
extern text *cdviz_bytes_as_text(const char *raw, size_t len);

#endif							/* CDVIZ_COMMON_SPI_UTIL_H */
