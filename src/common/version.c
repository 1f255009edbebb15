/*
 * version.c
 *	  The library refuses to work under an extension of another version.
 *
 * The check costs one catalog lookup per transaction: functions that run
 * once per row (the purl helpers of the read API) ask again only when a
 * new transaction has started.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"

#include "common/version.h"

/* See version.h. */
char *
cdviz_extension_version(Oid ext)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	char	   *version = NULL;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(ext));
	scan = systable_beginscan(rel, ExtensionOidIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, Anum_pg_extension_extversion,
									 RelationGetDescr(rel), &isnull);

		if (!isnull)
			version = text_to_cstring(DatumGetTextPP(d));
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return version;
}

/* See version.h. */
void
cdviz_check_version(void)
{
	static LocalTransactionId checked = InvalidLocalTransactionId;
	Oid			ext;
	char	   *installed;

	/*
	 * An extension script (CREATE EXTENSION, or an update script run by
	 * ALTER EXTENSION UPDATE) may call the library before pg_extension says
	 * which version it is making.
	 */
	if (creating_extension || MyProc->lxid == checked)
		return;
	ext = get_extension_oid("cdviz", true);
	if (!OidIsValid(ext))
		return;
	installed = cdviz_extension_version(ext);
	if (installed != NULL && strcmp(installed, CDVIZ_LIBRARY_VERSION) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"cdviz\" is installed at version %s, but its library is version %s",
						installed, CDVIZ_LIBRARY_VERSION),
				 errdetail("The library was upgraded and the extension's objects were not."),
				 errhint("Run ALTER EXTENSION cdviz UPDATE in database \"%s\".",
						 get_database_name(MyDatabaseId))));
	checked = MyProc->lxid;
}
