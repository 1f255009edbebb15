/*
 * poll_fs.c
 *	  The folder source: walk cdviz.fs_path, read the files that are new,
 *	  grew or changed, then keep, delete or move them (cdviz.fs_after).
 *
 * A file is read only once it looks finished: its size and modification
 * time must be the same at two consecutive polls.  The previous look is
 * kept in memory only; after a restart every unfinished file simply waits
 * one more poll.  What was read is in cdviz.fs_files, written with the
 * events (poll_read.c), so that table, not memory, decides where reading
 * starts: at the committed offset of a file that was appended to (same
 * hash of the read prefix), at zero for a new or rewritten one.
 */
#include "postgres.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catalog/pg_type.h"
#include "common/file_perm.h"
#include "datatype/timestamp.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "storage/fd.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "common/rfc3339.h"
#include "core/jsonl.h"
#include "poll/poll.h"
#include "common/worker.h"

/* Deepest folder nesting walked; deeper folders are skipped with a warning. */
#define MAX_DEPTH 32

/* What the previous polls saw of a file: the in-memory "last look". */
typedef struct FsSeen
{
	char		path[MAXPGPATH];	/* hash key */
	int64		size;
	int64		mtime_us;
	uint64		poll;			/* number of the last poll that saw it */
	char		error[256];		/* last error logged about it, "" if none */
} FsSeen;

/* A progress row of cdviz.fs_files, loaded at the start of a poll. */
typedef struct FsRow
{
	char		path[MAXPGPATH];	/* hash key */
	int64		size;
	int64		mtime_us;
	int64		offset;
	int64		lines;
	uint64		hash;
	char		status[16];
} FsRow;

/* A file found by the walk. */
typedef struct FsFound
{
	char	   *path;
	int64		size;
	int64		mtime_us;
} FsFound;

static HTAB *seen_files;
static uint64 poll_number;

/* The current poll's settings and findings. */
typedef struct FsPoll
{
	const PollConfig *cfg;
	char	   *root;
	char	   *done_path;
	char	   *patterns;
	PollAfter	after;
	HTAB	   *rows;
	List	   *found;
	char	   *error;			/* first folder-level error of this poll */
} FsPoll;

/* Microseconds since 1970 of a stat's modification time. */
static int64
mtime_us(const struct stat *st)
{
	return (int64) st->st_mtim.tv_sec * USECS_PER_SEC + st->st_mtim.tv_nsec / 1000;
}

/* Log a problem with a path once, until it changes or goes away. */
static bool
first_report(const char *path, const char *message)
{
	bool		found;
	FsSeen	   *s = hash_search(seen_files, path, HASH_ENTER, &found);

	if (!found)
	{
		s->size = -1;
		s->mtime_us = -1;
		s->error[0] = '\0';
	}
	s->poll = poll_number;
	if (strncmp(s->error, message, sizeof(s->error) - 1) == 0)
		return false;
	strlcpy(s->error, message, sizeof(s->error));
	return true;
}

static void
clear_report(const char *path)
{
	FsSeen	   *s = hash_search(seen_files, path, HASH_FIND, NULL);

	if (s)
		s->error[0] = '\0';
}

/* ------------------------------------------------------------------ */
/* progress rows                                                       */
/* ------------------------------------------------------------------ */

/* PollRowFill of cdviz.fs_files. */
static void
fs_fill_row(void *entry, HeapTuple tup, TupleDesc desc)
{
	FsRow	   *row = (FsRow *) entry;
	bool		isnull;

	row->size = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
	row->mtime_us = cdviz_timestamptz_to_unix_us(DatumGetTimestampTz(SPI_getbinval(tup, desc, 3, &isnull)));
	row->offset = DatumGetInt64(SPI_getbinval(tup, desc, 4, &isnull));
	row->lines = DatumGetInt64(SPI_getbinval(tup, desc, 5, &isnull));
	row->hash = (uint64) DatumGetInt64(SPI_getbinval(tup, desc, 6, &isnull));
	strlcpy(row->status, SPI_getvalue(tup, desc, 7), sizeof(row->status));
}

/* Extra facts the progress row of a file needs besides PollFile. */
typedef struct FsFileArg
{
	FsPoll	   *poll;
	FsFound    *file;
} FsFileArg;

/* $1 to $4 of a statement on a file's row: path, source, size, mtime. */
static void
file_args(Datum *args, FsPoll *p, FsFound *file)
{
	args[0] = CStringGetTextDatum(file->path);
	args[1] = CStringGetTextDatum(p->root);
	args[2] = Int64GetDatum(file->size);
	args[3] = TimestampTzGetDatum(cdviz_unix_us_to_timestamptz(file->mtime_us));
}

/* PollSaveFunc of the folder source: upsert the file's row. */
static void
save_fs_progress(PollFile *f, const PollDelta *d)
{
	FsFileArg  *a = (FsFileArg *) f->arg;
	Oid			types[11] = {TEXTOID, TEXTOID, INT8OID, TIMESTAMPTZOID, INT8OID, INT8OID,
	INT8OID, TEXTOID, INT8OID, INT8OID, INT8OID};
	Datum		args[11];

	file_args(args, a->poll, a->file);
	poll_delta_args(args + 4, d);
	if (SPI_execute_with_args("INSERT INTO cdviz.fs_files AS f (path, source, size, mtime, read_offset, "
							  " lines_read, prefix_hash, status, events, duplicates, rejected, "
							  " first_read_at, last_read_at) "
							  "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, now(), now()) "
							  "ON CONFLICT (path) DO UPDATE SET source = excluded.source, "
							  " size = excluded.size, mtime = excluded.mtime, "
							  " read_offset = excluded.read_offset, lines_read = excluded.lines_read, "
							  " prefix_hash = excluded.prefix_hash, status = excluded.status, "
							  " moved_to = NULL, events = f.events + excluded.events, "
							  " duplicates = f.duplicates + excluded.duplicates, "
							  " rejected = f.rejected + excluded.rejected, "
							  " first_read_at = coalesce(f.first_read_at, now()), last_read_at = now(), "
							  " last_error = NULL, last_error_at = NULL",
							  11, types, args, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "%s: saving progress of \"%s\" failed", POLL_WHO, a->file->path);
}

/* A change of a row outside reading: an error, or the fs_after outcome. */
typedef struct FsNote
{
	FsPoll	   *poll;
	FsFound    *file;
	const char *status;			/* new status, or NULL to keep it */
	const char *moved_to;
	const char *error;
} FsNote;

static void
note_file(void *arg)
{
	FsNote	   *n = (FsNote *) arg;
	Oid			types[7] = {TEXTOID, TEXTOID, INT8OID, TIMESTAMPTZOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		args[7];
	char		nulls[7] = {' ', ' ', ' ', ' '};

	file_args(args, n->poll, n->file);
	poll_text_args(args + 4, nulls + 4, 3, n->status, n->moved_to, n->error);
	if (SPI_execute_with_args("INSERT INTO cdviz.fs_files AS f (path, source, size, mtime, prefix_hash, "
							  " status, moved_to, last_error, last_error_at) "
							  "VALUES ($1, $2, $3, $4, 0, coalesce($5, 'error'), $6, $7, "
							  " CASE WHEN $7 IS NOT NULL THEN now() END) "
							  "ON CONFLICT (path) DO UPDATE SET "
							  " status = coalesce($5, f.status), moved_to = coalesce($6, f.moved_to), "
							  " last_error = coalesce($7, f.last_error), "
							  " last_error_at = CASE WHEN $7 IS NOT NULL THEN now() ELSE f.last_error_at END",
							  7, types, args, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "%s: updating \"%s\" in cdviz.fs_files failed", POLL_WHO, n->file->path);
}

/* Report a file's error: logged and recorded once, until it changes. */
static void
file_error(FsPoll *p, FsFound *file, const char *message)
{
	FsNote		n = {p, file, NULL, NULL, message};

	if (!first_report(file->path, message))
		return;
	ereport(WARNING,
			(errmsg("%s: %s", POLL_WHO, message),
			 errhint("The file is tried again at every poll; see cdviz.fs_files.")));
	(void) cdviz_worker_transaction("noting a file error", note_file, &n, NULL);
}

/* ------------------------------------------------------------------ */
/* the walk                                                            */
/* ------------------------------------------------------------------ */

/* A folder-level error: logged once, kept for the poll's note. */
static void
folder_error(FsPoll *p, const char *path, const char *message)
{
	if (first_report(path, message))
		ereport(WARNING, (errmsg("%s: %s", POLL_WHO, message)));
	if (p->error == NULL)
		p->error = pstrdup(message);
}

/*
 * Collect the matching regular files under dir, depth-first.
 *
 * The folder is read with AllocateDir(), which counts the descriptor
 * against the server's limit and frees descriptors of its own when the
 * kernel has none left.  The walk runs outside any transaction, so
 * nothing would close the folder for us: FreeDir() does, before the
 * sub-folders are walked, so that one folder is open at a time however
 * deep the tree (AllocateDir() has a small limit of its own).
 */
static void
walk(FsPoll *p, const char *dir, int depth)
{
	DIR		   *d;
	struct dirent *de;
	List	   *subdirs = NIL;
	ListCell   *lc;

	if (depth > MAX_DEPTH)
	{
		folder_error(p, dir, psprintf("folder \"%s\" is nested deeper than %d levels: skipped", dir, MAX_DEPTH));
		return;
	}
	d = AllocateDir(dir);
	if (d == NULL)
	{
		folder_error(p, dir, psprintf("could not open folder \"%s\": %m", dir));
		return;
	}
	clear_report(dir);
	/* a failed read is logged and ends the folder's listing, as its end */
	while ((de = ReadDirExtended(d, dir, WARNING)) != NULL)
	{
		char		path[MAXPGPATH];
		struct stat st;

		/* hidden names: ".", "..", and files being written by many tools */
		if (de->d_name[0] == '.')
			continue;
		if (snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) >= (int) sizeof(path))
			continue;
		if (lstat(path, &st) != 0)
			continue;			/* gone meanwhile */
		if (S_ISDIR(st.st_mode))
		{
			if (p->done_path && strcmp(path, p->done_path) == 0)
				continue;
			subdirs = lappend(subdirs, pstrdup(path));
			continue;
		}
		if (!poll_name_matches(de->d_name, p->patterns))
			continue;
		/* a symbolic link to a file is read; one to a folder is not followed */
		if (S_ISLNK(st.st_mode) && (stat(path, &st) != 0 || !S_ISREG(st.st_mode)))
			continue;
		if (!S_ISREG(st.st_mode))
			continue;
		{
			FsFound    *f = palloc(sizeof(FsFound));

			f->path = pstrdup(path);
			f->size = (int64) st.st_size;
			f->mtime_us = mtime_us(&st);
			p->found = lappend(p->found, f);
		}
	}
	FreeDir(d);
	foreach(lc, subdirs)
		walk(p, (char *) lfirst(lc), depth + 1);
	list_free_deep(subdirs);
}

static int
found_cmp(const ListCell *a, const ListCell *b)
{
	return strcmp(((FsFound *) lfirst(a))->path, ((FsFound *) lfirst(b))->path);
}

/* ------------------------------------------------------------------ */
/* after reading                                                       */
/* ------------------------------------------------------------------ */

/* mkdir -p of the folders above path. */
static bool
make_parents(char *path)
{
	for (char *s = strchr(path + 1, '/'); s; s = strchr(s + 1, '/'))
	{
		*s = '\0';
		if (mkdir(path, pg_dir_create_mode) != 0 && errno != EEXIST)
		{
			*s = '/';
			return false;
		}
		*s = '/';
	}
	return true;
}

/* Delete or move a file that was read to its end (cdviz.fs_after). */
static void
after_read(FsPoll *p, FsFound *file)
{
	FsNote		n = {p, file, NULL, NULL, NULL};

	if (p->after == POLL_AFTER_DELETE)
	{
		if (unlink(file->path) != 0 && errno != ENOENT)
		{
			file_error(p, file, psprintf("could not delete \"%s\" after reading it: %m", file->path));
			return;
		}
		n.status = "deleted";
	}
	else
	{
		const char *rel = file->path + strlen(p->root);
		char	   *target = psprintf("%s%s", p->done_path, rel);
		struct stat st;

		if (!make_parents(target))
		{
			file_error(p, file, psprintf("could not create the folder of \"%s\": %m", target));
			return;
		}
		/* never overwrite an earlier file of the same name */
		for (int i = 1; lstat(target, &st) == 0; i++)
			target = psprintf("%s%s.%d", p->done_path, rel, i);
		if (rename(file->path, target) != 0)
		{
			if (errno == EXDEV)
				file_error(p, file, psprintf("could not move \"%s\" to \"%s\": cdviz.fs_done_path must be on the same file system as cdviz.fs_path",
											 file->path, target));
			else
				file_error(p, file, psprintf("could not move \"%s\" to \"%s\": %m", file->path, target));
			return;
		}
		n.status = "moved";
		n.moved_to = target;
	}
	/* a crash before this commit: the next poll finds the file gone */
	(void) cdviz_worker_transaction("noting fs_after", note_file, &n, NULL);
}

/* ------------------------------------------------------------------ */
/* one file                                                            */
/* ------------------------------------------------------------------ */

/*
 * Open a found file for reading.  It stays open across the transactions
 * that store its chunks, and the reader (src/core/jsonl.c) reads a kernel
 * descriptor: OpenTransientFile() would be closed at the first commit and
 * a virtual File may lose its descriptor to another file meanwhile.  So a
 * plain descriptor, counted against the server's limit with
 * AcquireExternalFD() (EMFILE when none is left), closed by close_file()
 * on every path.
 */
static int
open_file(const char *path)
{
	int			fd;
	int			save_errno;

	if (!AcquireExternalFD())
		return -1;				/* errno is EMFILE */
	fd = open(path, O_RDONLY | PG_BINARY, 0);
	if (fd < 0)
	{
		save_errno = errno;
		ReleaseExternalFD();
		errno = save_errno;
	}
	return fd;
}

static void
close_file(int fd)
{
	close(fd);
	ReleaseExternalFD();
}

/* Decide about one found file and read it if it is due. */
static void
handle_file(FsPoll *p, FsFound *file)
{
	FsRow	   *row = hash_search(p->rows, file->path, HASH_FIND, NULL);
	bool		same_as_row = row && row->size == file->size && row->mtime_us == file->mtime_us;
	bool		found;
	FsSeen	   *seen;
	int			fd;
	struct stat st;
	PollFile	f;
	FsFileArg	arg = {p, file};
	char	   *error;

	if (same_as_row && strcmp(row->status, "reading") != 0 && strcmp(row->status, "error") != 0)
	{
		/* nothing new; a crash may have come between reading and fs_after */
		if (p->after != POLL_AFTER_KEEP &&
			(strcmp(row->status, "read") == 0 || strcmp(row->status, "rejected") == 0) &&
			row->offset == row->size)
			after_read(p, file);
		return;
	}
	if (!same_as_row || strcmp(row->status, "error") == 0)
	{
		/* new or changed: only once it looks the same at two polls */
		seen = hash_search(seen_files, file->path, HASH_ENTER, &found);
		if (!found)
			seen->error[0] = '\0';
		seen->poll = poll_number;
		if (!found || seen->size != file->size || seen->mtime_us != file->mtime_us)
		{
			seen->size = file->size;
			seen->mtime_us = file->mtime_us;
			return;
		}
	}
	else
	{
		seen = hash_search(seen_files, file->path, HASH_ENTER, &found);
		if (!found)
			seen->error[0] = '\0';
		seen->poll = poll_number;
		seen->size = file->size;
		seen->mtime_us = file->mtime_us;
	}

	fd = open_file(file->path);
	if (fd < 0)
	{
		file_error(p, file, psprintf("could not open \"%s\": %m", file->path));
		return;
	}
	if (fstat(fd, &st) != 0 || (int64) st.st_size != file->size || mtime_us(&st) != file->mtime_us)
	{
		close_file(fd);			/* it changed again: next poll */
		return;
	}

	memset(&f, 0, sizeof(f));
	f.origin = "fs";
	f.cfg = p->cfg;
	f.name = file->path;
	f.ref_sep = ':';
	f.document = poll_is_document(file->path);
	f.fd = fd;
	f.size = (uint64) file->size;
	/* fs_after removes the file: what is there now is all there will be */
	f.complete = p->after != POLL_AFTER_KEEP;
	f.hash = CDVIZ_HASH_INIT;
	f.save = save_fs_progress;
	f.arg = &arg;
	f.id_name = file->path;
	f.mtime_us = file->mtime_us;
	if (row && (strcmp(row->status, "read") == 0 || strcmp(row->status, "rejected") == 0))
	{
		f.read_before = true;
		f.read_hash = row->hash;
	}
	/* a report is read whole, whatever was read of it before */
	if (!f.document && p->cfg->format == POLL_FORMAT_CDEVENTS && row &&
		(strcmp(row->status, "reading") == 0 || strcmp(row->status, "read") == 0) &&
		row->offset > 0 && row->offset <= file->size)
	{
		uint64		h;

		/* continue after what was read, if that part did not change */
		if (same_as_row || (cdviz_hash_fd(fd, (uint64) row->offset, &h) && h == row->hash))
		{
			f.offset = (uint64) row->offset;
			f.lines = (uint64) row->lines;
			f.hash = row->hash;
		}
		else
			ereport(LOG,
					(errmsg("%s: \"%s\" was rewritten; reading it again from its start", POLL_WHO,
							file->path),
					 errdetail("Its first " INT64_FORMAT " bytes, read before, changed; events read again are deduplicated.",
							   row->offset)));
	}
	if (f.offset == (uint64) file->size && same_as_row)
	{
		close_file(fd);
		return;
	}
	if (!poll_read_file(&f, &error))
	{
		close_file(fd);
		file_error(p, file, psprintf("reading \"%s\" failed: %s", file->path, error));
		return;
	}
	close_file(fd);
	clear_report(file->path);
	if (f.events + f.duplicates + f.rejected > 0)
		ereport(DEBUG1,
				(errmsg("%s: read \"%s\": " INT64_FORMAT " events stored, " INT64_FORMAT " duplicates, " INT64_FORMAT " rejected", POLL_WHO,
						file->path, f.events, f.duplicates, f.rejected)));
	if (p->after != POLL_AFTER_KEEP && f.offset == (uint64) file->size)
		after_read(p, file);
}

/* ------------------------------------------------------------------ */
/* the poll                                                            */
/* ------------------------------------------------------------------ */

/* See poll.h. */
void
poll_fs_run(const PollConfig *cfg)
{
	FsPoll		p;
	HASHCTL		ctl;
	ListCell   *lc;
	HASH_SEQ_STATUS seq;
	FsSeen	   *s;

	if (seen_files == NULL)
	{
		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = MAXPGPATH;
		ctl.entrysize = sizeof(FsSeen);
		seen_files = hash_create("cdviz source files seen", 256, &ctl, HASH_ELEM | HASH_STRINGS);
	}
	poll_number++;

	memset(&p, 0, sizeof(p));
	p.cfg = cfg;
	p.root = poll_absolute_path(cfg->location);
	p.patterns = pstrdup(cfg->pattern);
	p.after = cfg->after;
	if (p.after == POLL_AFTER_MOVE)
	{
		if (cfg->done_path[0] == '\0')
		{
			folder_error(&p, "cdviz.fs_done_path",
						 "cdviz.fs_after is \"move\" but cdviz.fs_done_path is empty: files are kept");
			p.after = POLL_AFTER_KEEP;
		}
		else
			p.done_path = poll_absolute_path(cfg->done_path);
	}
	{
		Oid			types[1] = {TEXTOID};
		Datum		args[1] = {CStringGetTextDatum(p.root)};

		p.rows = poll_load_rows("cdviz.fs_files",
								"SELECT path, size, mtime, read_offset, lines_read, prefix_hash, status "
								"FROM cdviz.fs_files WHERE source = $1",
								1, types, args, MAXPGPATH, sizeof(FsRow), fs_fill_row);
	}
	if (p.rows == NULL)
		return;

	walk(&p, p.root, 0);
	list_sort(p.found, found_cmp);
	foreach(lc, p.found)
	{
		handle_file(&p, (FsFound *) lfirst(lc));
		cdviz_worker_process_interrupts();
	}

	/* forget files that are gone */
	hash_seq_init(&seq, seen_files);
	while ((s = hash_seq_search(&seq)) != NULL)
		if (s->poll != poll_number)
			hash_search(seen_files, s->path, HASH_REMOVE, NULL);

	cfg->note_poll(cfg->note_arg, p.error);
}
