/*
 * source.h
 *	  Sources managed as rows of cdviz.sources: what a kind of source
 *	  implements (a run function in the table of kinds, source_worker.c)
 *	  and what the source worker gives it.
 *
 *	  launcher.c       the "cdviz sources" worker: keeps one dynamic
 *	                   background worker per active source, and the rows
 *	                   of the sources the settings define
 *	  source_worker.c  the dynamic worker "cdviz source <name>" and the
 *	                   table of kinds
 *	  catalog.c        loading a source (secrets merged into its options),
 *	                   its options, what its worker records about it
 *	  poll_kinds.c     the folder and s3 kinds (the readers of src/poll/)
 *	  nats_source.c    the nats kind
 *	  oci_source.c     the oci kind (oci.h)
 *	  settings_sources.c  the rows of the sources the settings define
 *
 * A kind's run function reads its source until cdviz_source_stopping(),
 * sleeping on the latch while there is nothing to read.  An error it
 * raises ends the worker: the error is recorded as the source's
 * last_error and the launcher starts the worker again after a pause.
 */
#ifndef CDVIZ_SOURCES_SOURCE_H
#define CDVIZ_SOURCES_SOURCE_H

#include "postgres.h"

#include "utils/jsonb.h"
#include "utils/timestamp.h"

typedef struct CdvizSource
{
	int32		id;
	char	   *name;
	char	   *kind;			/* folder, s3, nats, kafka, oci */
	char	   *location;
	Jsonb	   *options;		/* options with the secrets merged in */
	Oid			transformer;	/* InvalidOid when none */
} CdvizSource;

typedef struct CdvizSourceKind
{
	const char *kind;
	/* Read the source until cdviz_source_stopping(); return to exit. */
	void		(*run) (const CdvizSource *src);
} CdvizSourceKind;

/* Processes interrupts (SIGHUP reload); true once the worker must exit. */
extern bool cdviz_source_stopping(void);

/*
 * Wait on the latch until a deadline: a reload or SIGTERM wakes it, and
 * the wait goes on for what is left, until cdviz_source_stopping().
 */
extern void cdviz_source_sleep_until(TimestampTz deadline);

/* One poll done: last_poll_at, and last_success_at or last_error (NULL = success). */
extern void cdviz_source_note_poll(const CdvizSource *src, const char *error);

/* Counters of a message source (nats, kafka), in the transaction that stored the events. */
extern void cdviz_source_count(const CdvizSource *src, int64 events, int64 duplicates, int64 rejected);

/*
 * A message source's lag (kafka: messages behind the group's committed
 * offsets), as last measured; in a transaction of the caller's, SPI
 * connected (the one that stored a batch, say).
 */
extern void cdviz_source_note_lag(const CdvizSource *src, int64 lag);

/* Options accessors: text, int, bool with defaults (the SQL side validated them). */
extern const char *cdviz_source_opt_text(const CdvizSource *src, const char *key, const char *dflt);
extern int	cdviz_source_opt_int(const CdvizSource *src, const char *key, int dflt);
extern bool cdviz_source_opt_bool(const CdvizSource *src, const char *key, bool dflt);

/* The kind of that name, NULL when unknown; its run is NULL when not built in. */
extern const CdvizSourceKind *cdviz_source_kind(const char *kind);

/* Why a kind without run does not run, for last_error. */
#define CDVIZ_SOURCE_NOT_BUILT "%s sources are not built into this library"

/*
 * Load source id (in a transaction of the caller's, SPI connected) into
 * cxt; NULL when it no longer exists.  *paused (when not NULL) tells
 * whether it is paused.
 */
extern CdvizSource *cdviz_source_load(int32 id, MemoryContext cxt, bool *paused);

/*
 * The launcher's and the worker's records in cdviz.source_progress, each
 * in a transaction of its own: the worker's state ("starting", "running",
 * "failed", "no worker slot"), and for "failed" the error.
 */
extern void cdviz_source_set_state(int32 id, const char *state, const char *error,
								   bool restarted);

/* The launcher: define settings and register it (from _PG_init, preloaded). */
extern void cdviz_sources_init(void);

/* In the launcher, at start and on SIGHUP: the rows of the settings' sources. */
extern void cdviz_sources_sync_settings(void);

#endif							/* CDVIZ_SOURCES_SOURCE_H */
