/*
 * envelope_gzip.c
 *	  Request bodies sent with Content-Encoding: gzip, inflated with a
 *	  limit on the size they may grow to.
 */
#include "core/envelope.h"

#include <stdlib.h>
#include <string.h>

#include <zlib.h>

/* See envelope.h. */
CdvizInflateResult
cdviz_gzip_inflate(const char *in, size_t in_len, size_t max_out,
				   char **out, size_t *out_len)
{
	z_stream	zs;
	size_t		cap = in_len * 4 + 1024;
	char	   *buf;
	int			rc;

	*out = NULL;
	*out_len = 0;
	if (cap > max_out + 1)
		cap = max_out + 1;
	if ((buf = malloc(cap + 1)) == NULL)
		return CDVIZ_INFLATE_NO_MEMORY;
	memset(&zs, 0, sizeof(zs));
	/* 15 + 32: a zlib or gzip header, detected */
	if (inflateInit2(&zs, 15 + 32) != Z_OK)
	{
		free(buf);
		return CDVIZ_INFLATE_NO_MEMORY;
	}
	zs.next_in = (Bytef *) in;
	zs.avail_in = (uInt) in_len;
	for (;;)
	{
		zs.next_out = (Bytef *) buf + zs.total_out;
		zs.avail_out = (uInt) (cap - zs.total_out);
		rc = inflate(&zs, Z_NO_FLUSH);
		if (rc == Z_STREAM_END)
			break;
		if (rc != Z_OK && rc != Z_BUF_ERROR)
		{
			inflateEnd(&zs);
			free(buf);
			return rc == Z_MEM_ERROR ? CDVIZ_INFLATE_NO_MEMORY : CDVIZ_INFLATE_CORRUPT;
		}
		if (zs.avail_out == 0)
		{
			char	   *bigger;

			if (zs.total_out > max_out)
			{
				inflateEnd(&zs);
				free(buf);
				return CDVIZ_INFLATE_TOO_LARGE;
			}
			cap = cap * 2 > max_out + 1 ? max_out + 1 : cap * 2;
			if ((bigger = realloc(buf, cap + 1)) == NULL)
			{
				inflateEnd(&zs);
				free(buf);
				return CDVIZ_INFLATE_NO_MEMORY;
			}
			buf = bigger;
		}
		else if (zs.avail_in == 0)
		{
			/* input ended before the stream did */
			inflateEnd(&zs);
			free(buf);
			return CDVIZ_INFLATE_CORRUPT;
		}
	}
	inflateEnd(&zs);
	if (zs.total_out > max_out)
	{
		free(buf);
		return CDVIZ_INFLATE_TOO_LARGE;
	}
	buf[zs.total_out] = '\0';
	*out = buf;
	*out_len = zs.total_out;
	return CDVIZ_INFLATE_OK;
}
