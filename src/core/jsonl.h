/*
 * jsonl.h
 *	  Streaming JSON Lines reader and .json document splitter, for the
 *	  folder and S3 sources.
 *
 * The reader walks a file descriptor from a given byte offset with bounded
 * memory: a line longer than max_line is skipped and reported, never
 * buffered whole.  It hands out complete lines only (ended by a newline)
 * unless told the file is complete, so a file still being appended is read
 * up to its last newline and the next poll continues at the returned
 * offset.  It also keeps a running hash of every byte it consumed, so the
 * caller can later tell an appended file (same prefix) from a rewritten
 * one.
 *
 * Part of the PostgreSQL-free core: plain C, no PostgreSQL header.
 */
#ifndef CDVIZ_CORE_JSONL_H
#define CDVIZ_CORE_JSONL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/problems.h"

/* Initial value of the prefix hash: the hash of zero bytes. */
#define CDVIZ_HASH_INIT UINT64_C(14695981039346656037)

/* How much of an overlong line is kept to show in a dead letter. */
#define CDVIZ_JSONL_EXCERPT 1024

typedef enum CdvizJsonlStatus
{
	CDVIZ_JSONL_LINE,			/* a line: see CdvizJsonlLine */
	CDVIZ_JSONL_TOO_LONG,		/* a line over max_line, skipped: text is
								 * its beginning */
	CDVIZ_JSONL_END,			/* no further complete line before the limit */
	CDVIZ_JSONL_ERROR			/* read() failed: see reader->error */
} CdvizJsonlStatus;

/* One line handed out by the reader; text is valid until the next call. */
typedef struct CdvizJsonlLine
{
	char	   *text;			/* NUL-terminated, no newline, no trailing CR */
	size_t		len;
	uint64_t	line_no;		/* 1-based line number in the file */
	uint64_t	offset;			/* byte offset of its first byte */
	uint64_t	end_offset;		/* byte offset just past its newline */
} CdvizJsonlLine;

typedef struct CdvizJsonlReader
{
	/* set up by cdviz_jsonl_init(); complete may be changed at any time */
	int			fd;
	size_t		max_line;		/* longest line handed out, newline excluded */
	uint64_t	limit;			/* read nothing at or past this offset */
	bool		complete;		/* the file is finished: an unterminated last
								 * line is a line too */

	/* progress: everything before offset was consumed */
	uint64_t	offset;
	uint64_t	line_no;		/* lines consumed before offset */
	uint64_t	hash;			/* hash of bytes [0, offset) */
	int			error;			/* errno of a failed read, or 0 */

	/* private */
	char	   *buf;
	size_t		cap;
	size_t		start;			/* buf[start] is the byte at offset */
	size_t		end;			/* bytes of buf in use */
	size_t		scanned;		/* bytes after start known to hold no newline */
	uint64_t	buf_off;		/* file offset of buf[start] */
	uint64_t	buf_hash;		/* hash of bytes [0, buf_off) */
	uint64_t	file_pos;		/* file offset of buf[end] */
	bool		eof;
	bool		skipping;		/* inside an overlong line */
	uint64_t	skip_from;		/* where the overlong line began */
	size_t		excerpt_len;
	char		excerpt[CDVIZ_JSONL_EXCERPT + 1];
} CdvizJsonlReader;

/*
 * Start reading fd at offset (which must be the start of a line), line_no
 * lines and a prefix hash of hash already behind it, stopping at limit
 * (the size the caller saw; UINT64_MAX for none).  Seeks fd.  Returns
 * false with errno set when the seek or the allocation fails.
 */
extern bool cdviz_jsonl_init(CdvizJsonlReader *r, int fd, uint64_t offset,
							 uint64_t line_no, uint64_t hash,
							 uint64_t limit, size_t max_line);

/*
 * The next line.  Blank lines are consumed silently (they still count as
 * lines).  After CDVIZ_JSONL_END, cdviz_jsonl_tail() shows what an
 * incomplete last line holds so far.
 */
extern CdvizJsonlStatus cdviz_jsonl_next(CdvizJsonlReader *r, CdvizJsonlLine *line);

/*
 * After CDVIZ_JSONL_END: the unterminated bytes before the limit (NULL and
 * 0 when there are none, or when they are over max_line).  Set
 * r->complete and call cdviz_jsonl_next() again to take them as a line.
 */
extern const char *cdviz_jsonl_tail(CdvizJsonlReader *r, size_t *len);

extern void cdviz_jsonl_free(CdvizJsonlReader *r);

/* Continue a prefix hash over more bytes. */
extern uint64_t cdviz_hash_update(uint64_t hash, const void *data, size_t len);

/*
 * Hash bytes [0, length) of fd (positioned anywhere; it is read with
 * pread).  False with errno set on a read error, errno 0 when the file is
 * shorter than length.
 */
extern bool cdviz_hash_fd(int fd, uint64_t length, uint64_t *hash);

/*
 * Whether text of len bytes can be JSON Lines at all: no NUL byte, and the
 * first character that is not white space opens an object or an array.
 * A file failing this is rejected once, as a whole, not line by line.
 */
extern bool cdviz_jsonl_plausible(const char *text, size_t len);

/* One top-level value of a .json document. */
typedef struct CdvizJsonElement
{
	size_t		offset;			/* byte offset of its text in the document */
	size_t		len;
	int			index;			/* 1-based element number; 0 for a lone
								 * document */
} CdvizJsonElement;

/*
 * Split a .json document: a lone value gives one element (index 0), an
 * array gives one element per member, in order, each its raw text (parsed
 * with json-c one element at a time, so a large array never becomes one
 * big tree).  Where the array stops being JSON, the rest of the document
 * from that point is one last element (flagged through *broken_at, the
 * index of that element, else 0) so nothing is lost: its parse then
 * reports the problem.  *elems is malloc'd (free() it).  Returns the
 * number of elements, or -1 when out of memory.
 */
extern int	cdviz_json_split(const char *doc, size_t len,
							 CdvizJsonElement **elems, int *broken_at);

#endif							/* CDVIZ_CORE_JSONL_H */
