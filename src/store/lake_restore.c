/*
 * lake_restore.c
 *	  Let pg_restore recreate the lake's partitions without errors.
 *
 * The lake, cdviz.cdevents_lake, belongs to the extension; its monthly
 * partitions are created at ingest and do not.  pg_dump therefore writes
 * each partition as a table of its own, attaches it to the lake before the
 * data, and recreates its indexes and key constraints after the data.  But
 * at restore the lake exists already, with its indexes (CREATE EXTENSION
 * made them), so attaching a partition already creates the partition's
 * copies of them, under the very names the dump uses next: every one of
 * those commands would fail with "already exists".  They asked for what is
 * there, so they are skipped here with a notice, as CREATE INDEX IF NOT
 * EXISTS would.  Nothing else is touched: only an index or a primary
 * key/unique constraint of a lake partition, of the same name, that is
 * already attached to an index of the lake.
 */
#include "postgres.h"

#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/partition.h"
#include "catalog/pg_constraint.h"
#include "commands/tablecmds.h"
#include "nodes/parsenodes.h"
#include "tcop/utility.h"
#include "utils/lsyscache.h"

#include "store/store.h"

static ProcessUtility_hook_type prev_process_utility = NULL;

/* Whether relid is a partition of cdviz.cdevents_lake. */
static bool
is_lake_partition(Oid relid)
{
	Oid			nsp;
	Oid			lake;

	if (!OidIsValid(relid) || !get_rel_relispartition(relid))
		return false;
	nsp = get_namespace_oid("cdviz", true);
	lake = OidIsValid(nsp) ? get_relname_relid("cdevents_lake", nsp) : InvalidOid;
	return OidIsValid(lake) && get_partition_parent(relid, true) == lake;
}

/* Whether index indexid exists on relid as a copy of one of its parent's. */
static bool
is_attached_index_of(Oid indexid, Oid relid)
{
	return OidIsValid(indexid) &&
		IndexGetRelation(indexid, true) == relid &&
		get_rel_relispartition(indexid);
}

/* The name of the object the command would create when it is already there. */
static const char *
restored_lake_index(Node *parsetree)
{
	if (IsA(parsetree, IndexStmt))
	{
		IndexStmt  *stmt = (IndexStmt *) parsetree;
		Oid			relid;

		if (stmt->idxname == NULL || stmt->relation == NULL)
			return NULL;
		relid = RangeVarGetRelid(stmt->relation, NoLock, true);
		if (is_lake_partition(relid) &&
			is_attached_index_of(get_relname_relid(stmt->idxname, get_rel_namespace(relid)), relid))
			return stmt->idxname;
	}
	else if (IsA(parsetree, AlterTableStmt))
	{
		AlterTableStmt *stmt = (AlterTableStmt *) parsetree;
		AlterTableCmd *cmd;
		Constraint *con;
		Oid			relid;
		Oid			conid;

		if (stmt->objtype != OBJECT_TABLE || list_length(stmt->cmds) != 1)
			return NULL;
		cmd = linitial_node(AlterTableCmd, stmt->cmds);
		if (cmd->subtype != AT_AddConstraint || !IsA(cmd->def, Constraint))
			return NULL;
		con = (Constraint *) cmd->def;
		if ((con->contype != CONSTR_PRIMARY && con->contype != CONSTR_UNIQUE) ||
			con->conname == NULL)
			return NULL;
		relid = RangeVarGetRelid(stmt->relation, NoLock, true);
		if (!is_lake_partition(relid))
			return NULL;
		conid = get_relation_constraint_oid(relid, con->conname, true);
		if (OidIsValid(conid) && is_attached_index_of(get_constraint_index(conid), relid))
			return con->conname;
	}
	return NULL;
}

/* ProcessUtility_hook: skip what restoring a lake partition finds done. */
static void
cdviz_process_utility(PlannedStmt *pstmt, const char *queryString,
					  bool readOnlyTree, ProcessUtilityContext context,
					  ParamListInfo params, QueryEnvironment *queryEnv,
					  DestReceiver *dest, QueryCompletion *qc)
{
	const char *done = restored_lake_index(pstmt->utilityStmt);

	if (done != NULL)
	{
		ereport(NOTICE,
				(errmsg("\"%s\" already exists on this partition of cdviz.cdevents_lake, skipping",
						done),
				 errdetail("Attaching the partition created it from the lake's own index.")));
		return;
	}
	if (prev_process_utility)
		prev_process_utility(pstmt, queryString, readOnlyTree, context, params,
							 queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);
}

/* See store.h. */
void
cdviz_lake_restore_init(void)
{
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = cdviz_process_utility;
}
