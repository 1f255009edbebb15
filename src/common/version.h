/*
 * version.h
 *	  The library and the installed extension must be of one version.
 *
 * A package upgrade installs a new cdviz.so before anyone runs ALTER
 * EXTENSION cdviz UPDATE.  Until then the library's statements would meet
 * tables and functions of another shape: its SQL functions refuse with a
 * hint instead, and its workers wait.
 */
#ifndef CDVIZ_COMMON_VERSION_H
#define CDVIZ_COMMON_VERSION_H

#include "postgres.h"

/* The version this library was built for (the Makefile's EXTVERSION). */
#define CDVIZ_LIBRARY_VERSION CDVIZ_EXTVERSION

/* The installed version of extension ext, palloc'd; NULL when it is gone. */
extern char *cdviz_extension_version(Oid ext);

/*
 * For SQL-callable functions: raise an error, with a hint to update, when
 * the extension installed in this database is of another version.
 */
extern void cdviz_check_version(void);

#endif							/* CDVIZ_COMMON_VERSION_H */
