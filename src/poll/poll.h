/*
 * poll.h
 *	  The readers of folder and S3 sources: what their files share.  A
 *	  source's worker (src/sources/) fills a PollConfig from the source and
 *	  calls poll_fs_run() or poll_s3_run() at its interval.
 *
 * Files, each calling only those listed below it:
 *
 *	  poll_fs.c        a folder source
 *	  poll_s3.c        an S3 source
 *	  poll_source.c    what both sources share: names, progress rows
 *	  poll_read.c      a file turned into stored events with exactly-once
 *	                   progress
 *	  poll_report.c    a file read whole, in one transaction: a test report
 *	                   (format junit or tap), a file of format metadata
 *	                   (not read, hashed), and a file read into memory
 *	  poll_item.c      such a file handed to the source's transformer, or
 *	                   to the built-in mapping of its format
 *	  poll_settings.c  the cdviz.fs_*, cdviz.s3_* and cdviz.poll_* settings,
 *	                   which define the source settings.folder and
 *	                   settings.s3
 */
#ifndef CDVIZ_POLL_H
#define CDVIZ_POLL_H

#include "postgres.h"

#include <curl/curl.h>

#include "access/htup.h"
#include "access/tupdesc.h"
#include "postmaster/bgworker.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"

#include "webhook/source_item.h"

/* Define the settings (from _PG_init, preloaded). */
extern void cdviz_poll_init(void);

/* Who says it, in messages: the source's worker, "cdviz source <name>". */
#define POLL_WHO (MyBgworkerEntry ? MyBgworkerEntry->bgw_name : "cdviz")

/* cdviz.fs_after */
typedef enum PollAfter
{
	POLL_AFTER_KEEP,
	POLL_AFTER_DELETE,
	POLL_AFTER_MOVE
} PollAfter;

/* settings (poll_settings.c), reloaded on SIGHUP */
extern char *cdviz_fs_path;
extern int	cdviz_fs_poll_interval;
extern char *cdviz_fs_pattern;
extern int	cdviz_fs_after;
extern char *cdviz_fs_done_path;
extern char *cdviz_s3_endpoint;
extern char *cdviz_s3_bucket;
extern char *cdviz_s3_prefix;
extern char *cdviz_s3_region;
extern char *cdviz_s3_access_key_id;
extern char *cdviz_s3_secret_access_key;
extern bool cdviz_s3_path_style;
extern int	cdviz_s3_poll_interval;
extern char *cdviz_s3_pattern;
extern int	cdviz_poll_batch_lines;
extern int	cdviz_poll_max_line_size;	/* kB */
extern int	cdviz_poll_max_json_size;	/* kB */

extern void poll_define_settings(void);

/*
 * Records one poll of the source, error NULL for success, in a transaction
 * of its own; the source's worker provides it, with its argument.
 */
typedef void (*PollNoteFunc) (const void *arg, const char *error);

/* How a source's files are read (its option "format"). */
typedef enum PollFormat
{
	POLL_FORMAT_CDEVENTS,		/* CDEvents: .json documents or JSON Lines */
	POLL_FORMAT_JUNIT,			/* one JUnit XML report per file */
	POLL_FORMAT_TAP,			/* one TAP 13/14 report per file */
	POLL_FORMAT_METADATA		/* each file an item of its own, not read:
								 * its name, size, time and hash */
} PollFormat;

/* One folder or S3 source, as its worker read it from cdviz.sources. */
typedef struct PollConfig
{
	const char *source_name;	/* the source's name, for its transformer */
	Oid			transformer;	/* the source's transformer, or InvalidOid */
	const char *location;		/* absolute folder path, or s3://bucket/prefix */
	const char *pattern;		/* comma-separated file name patterns */
	int			poll_interval;	/* seconds */
	int			batch_lines;	/* lines or elements per transaction */
	int			max_line_size;	/* kB */
	int			max_json_size;	/* kB */
	PollFormat	format;
	int			max_report_size;	/* kB */
	int			max_report_cases;	/* suites and cases of a report */
	const char *environment;	/* reports: environment.id, "" when none */
	const char *source_uri;		/* reports: the events' context.source */
	/* folder */
	PollAfter	after;
	const char *done_path;		/* absolute; "" when none */
	/* s3 */
	const char *endpoint;		/* "" means AWS in the region */
	const char *region;
	const char *access_key_id;
	const char *secret_access_key;
	bool		path_style;
	/* what the reader calls at the end of each poll */
	PollNoteFunc note_poll;
	const void *note_arg;
} PollConfig;

/* What one transaction of reading changed, for the progress row. */
typedef struct PollDelta
{
	uint64		offset;			/* new committed position */
	uint64		lines;
	uint64		hash;
	const char *status;			/* "reading", "read" or "rejected" */
	int64		events;			/* counts of this transaction only */
	int64		duplicates;
	int64		rejected;
} PollDelta;

struct PollFile;

/* Writes the progress row; runs inside the transaction that stored. */
typedef void (*PollSaveFunc) (struct PollFile *f, const PollDelta *delta);

/* One file or downloaded object to read into the lake. */
typedef struct PollFile
{
	const char *origin;			/* "fs" or "s3": rejected_events.origin */
	const char *name;			/* path or s3://bucket/key, for refs and logs */
	char		ref_sep;		/* ':' gives path:line, '#' gives s3://...#n */
	bool		document;		/* a .json file: one value or an array */
	int			fd;
	uint64		size;			/* nothing at or past this is read */
	bool		complete;		/* an unterminated last line is a line */
	const PollConfig *cfg;		/* the source's limits */
	/* reports */
	const char *id_name;		/* path or key: the report's identity */
	int64		mtime_us;		/* modification time, microseconds since
								 * 1970: the events' default timestamp */
	bool		read_before;	/* its row says a content was read whole */
	uint64		read_hash;		/* and that content's hash */
	/* s3: what its transformer is told; NULL for a folder's file */
	const char *bucket;
	const char *etag;

	/* the committed progress: where reading starts, updated per commit */
	uint64		offset;
	uint64		lines;
	uint64		hash;

	PollSaveFunc save;
	void	   *arg;

	/* totals of this reading */
	int64		events;
	int64		duplicates;
	int64		rejected;
} PollFile;

/* poll_read.c */

/*
 * Read f from its committed progress to its end (or its last newline),
 * storing events and progress together, one transaction per chunk.
 * Returns false when a transaction failed (logged; *error gets its
 * message): the file is then retried from the committed progress later.
 */
extern bool poll_read_file(PollFile *f, char **error);

/* poll_report.c */

/* Read the first len bytes of f into memory (NUL-terminated). */
extern char *poll_read_prefix(PollFile *f, size_t len);

/*
 * Read f whole as its source's format says (a report, or its metadata
 * only) and store its events (or its dead letters) and its progress
 * (f->save) in the current transaction.
 */
extern void poll_read_report(PollFile *f, PollDelta *delta);

/* poll_item.c */

/*
 * What f's transformer is told of it (see docs/sources.md): the source,
 * kind and format, the file's identity (id: its path or key, "@sha256:"
 * and sha256, the hex SHA-256 of its content), name, size, time and hash.
 */
extern Jsonb *poll_item_meta(PollFile *f, const char *sha256);

/*
 * Store the events of f, whose meta and body (NULL: none) are given,
 * made by the source's transformer, else by builtin (called with arg);
 * counts added to delta.  A transformer that raises keeps the item as a
 * dead letter (webhook/source_item.h).
 */
extern void poll_item_store(PollFile *f, Jsonb *meta, Jsonb *body,
							CdvizSourceMapping builtin, void *arg, PollDelta *delta);

/* poll_source.c */

/* Does name (the last path segment) match a comma-separated pattern list? */
extern bool poll_name_matches(const char *name, const char *patterns);

/* A folder without its final slashes; a relative one is in the data folder. */
extern char *poll_absolute_path(const char *path);

/* Whether a file or key names a .json document (else JSON Lines). */
extern bool poll_is_document(const char *name);

/*
 * The delta as seven statement arguments from args[0] on (int8 offset,
 * lines, hash, text status, int8 events, duplicates, rejected), in the
 * order of both progress tables' columns.
 */
extern void poll_delta_args(Datum *args, const PollDelta *d);

/* n text arguments (NULL: SQL NULL) into args[0..n-1] and nulls[0..n-1]. */
extern void poll_text_args(Datum *args, char *nulls, int n,...);

/* Copy the columns of a progress row after its key into its entry. */
typedef void (*PollRowFill) (void *entry, HeapTuple tup, TupleDesc desc);

/*
 * The progress rows of a source, read from table by sql (whose first
 * column is the row's key, a string shorter than keysize) in a
 * transaction, in a hash table of entries of entrysize bytes made in the
 * current memory context; NULL when the transaction failed.
 */
extern HTAB *poll_load_rows(const char *table, const char *sql, int nargs,
							Oid *types, Datum *args, Size keysize, Size entrysize,
							PollRowFill fill);

/*
 * The options every request of a polling source's curl handle takes,
 * after curl_easy_reset(): no signals, 10 s to connect, a server silent
 * for 30 s is dead, errors into errbuf, the body to on_body and the
 * headers to on_header (both given arg), the transfer stopped when the
 * worker is told to exit, and the user agent.
 */
extern void poll_curl_options(CURL *curl, char *errbuf, curl_write_callback on_body,
							  curl_write_callback on_header, void *arg, const char *agent);

/*
 * Seconds to wait before the next poll after failures failed polls in a
 * row: interval, doubled with each failure after the first, up to ten
 * minutes.
 */
extern int	poll_backoff_seconds(int interval, int failures);

/* poll_fs.c, poll_s3.c */

/* A folder source: one pass over its folder. */
extern void poll_fs_run(const PollConfig *cfg);

/* An S3 source: one pass over its prefix; returns seconds to wait. */
extern int	poll_s3_run(const PollConfig *cfg);

#endif							/* CDVIZ_POLL_H */
