/*
 * hexdigit.h
 *	  The value of a hexadecimal digit, for the percent-decoders of the core
 *	  (package URLs, CloudEvents header values).
 */
#ifndef CDVIZ_CORE_HEXDIGIT_H
#define CDVIZ_CORE_HEXDIGIT_H

/* 0-15 for a hexadecimal digit, -1 for anything else. */
static inline int
cdviz_hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

#endif							/* CDVIZ_CORE_HEXDIGIT_H */
