/*
 * jsonl.c
 *	  Streaming JSON Lines reader and .json document splitter.
 *
 * The reader keeps two positions: what it has consumed from its buffer
 * and what it has committed (offset, line_no, hash), which moves only at
 * the end of a line.  They differ only while it skips an overlong line:
 * should that line turn out to be the unterminated end of a file still
 * being written, the committed position stays at its start and the next
 * poll looks at it again.
 */
#include "core/jsonl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

/* Bytes asked of read() at a time. */
#define READ_BLOCK 65536

#define FNV_PRIME UINT64_C(1099511628211)

/* Continue an FNV-1a hash over more bytes; see jsonl.h. */
uint64_t
cdviz_hash_update(uint64_t hash, const void *data, size_t len)
{
	const unsigned char *p = data;
	const unsigned char *end = p + len;

	while (end - p >= 4)
	{
		hash = (hash ^ p[0]) * FNV_PRIME;
		hash = (hash ^ p[1]) * FNV_PRIME;
		hash = (hash ^ p[2]) * FNV_PRIME;
		hash = (hash ^ p[3]) * FNV_PRIME;
		p += 4;
	}
	while (p < end)
		hash = (hash ^ *p++) * FNV_PRIME;
	return hash;
}

/* Hash the first length bytes of fd; see jsonl.h. */
bool
cdviz_hash_fd(int fd, uint64_t length, uint64_t *hash)
{
	char	   *block = malloc(READ_BLOCK);
	uint64_t	pos = 0;
	uint64_t	h = CDVIZ_HASH_INIT;

	if (block == NULL)
		return false;
	while (pos < length)
	{
		size_t		want = length - pos < READ_BLOCK ? (size_t) (length - pos) : READ_BLOCK;
		ssize_t		n = pread(fd, block, want, (off_t) pos);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
		{
			int			save = n < 0 ? errno : 0;

			free(block);
			errno = save;
			return false;
		}
		h = cdviz_hash_update(h, block, (size_t) n);
		pos += (uint64_t) n;
	}
	free(block);
	*hash = h;
	return true;
}

/* Start a reader; see jsonl.h. */
bool
cdviz_jsonl_init(CdvizJsonlReader *r, int fd, uint64_t offset,
				 uint64_t line_no, uint64_t hash, uint64_t limit,
				 size_t max_line)
{
	memset(r, 0, sizeof(*r));
	r->fd = fd;
	r->max_line = max_line;
	r->limit = limit;
	r->offset = offset;
	r->line_no = line_no;
	r->hash = hash;
	r->buf_off = offset;
	r->buf_hash = hash;
	r->file_pos = offset;
	/* grows on demand up to max_line + READ_BLOCK + the NUL byte */
	r->cap = 2 * READ_BLOCK;
	if (r->cap > max_line + READ_BLOCK + 2)
		r->cap = max_line + READ_BLOCK + 2;
	r->buf = malloc(r->cap);
	if (r->buf == NULL)
		return false;
	if (lseek(fd, (off_t) offset, SEEK_SET) < 0)
	{
		int			save = errno;

		free(r->buf);
		r->buf = NULL;
		errno = save;
		return false;
	}
	return true;
}

void
cdviz_jsonl_free(CdvizJsonlReader *r)
{
	free(r->buf);
	r->buf = NULL;
}

/*
 * Read more into the buffer: 1 when bytes came, 0 at the end of the file
 * or the limit, -1 on error.  Always leaves one spare byte after the data,
 * for the NUL that ends an unterminated last line.
 */
static int
fill(CdvizJsonlReader *r)
{
	size_t		want;
	ssize_t		n;

	if (r->eof)
		return 0;
	if (r->file_pos >= r->limit)
	{
		r->eof = true;
		return 0;
	}
	if (r->start > 0 && r->cap - r->end < READ_BLOCK + 1)
	{
		memmove(r->buf, r->buf + r->start, r->end - r->start);
		r->end -= r->start;
		r->start = 0;
	}
	if (r->cap - r->end < READ_BLOCK + 1)
	{
		size_t		newcap = r->cap * 2;
		char	   *nb;

		if (newcap > r->max_line + READ_BLOCK + 2)
			newcap = r->max_line + READ_BLOCK + 2;
		if (newcap > r->cap)
		{
			nb = realloc(r->buf, newcap);
			if (nb == NULL)
			{
				r->error = ENOMEM;
				return -1;
			}
			r->buf = nb;
			r->cap = newcap;
		}
	}
	want = r->cap - r->end - 1;
	if (r->limit - r->file_pos < want)
		want = (size_t) (r->limit - r->file_pos);
	do
		n = read(r->fd, r->buf + r->end, want);
	while (n < 0 && errno == EINTR);
	if (n < 0)
	{
		r->error = errno;
		return -1;
	}
	if (n == 0)
	{
		r->eof = true;
		return 0;
	}
	r->end += (size_t) n;
	r->file_pos += (uint64_t) n;
	return 1;
}

static bool
is_blank(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
			return false;
	return true;
}

/* Remember the beginning of an overlong line for its dead letter. */
static void
keep_excerpt(CdvizJsonlReader *r, const char *from, size_t n)
{
	r->excerpt_len = n < CDVIZ_JSONL_EXCERPT ? n : CDVIZ_JSONL_EXCERPT;
	memcpy(r->excerpt, from, r->excerpt_len);
	r->excerpt[r->excerpt_len] = '\0';
}

/* The next line; see jsonl.h. */
CdvizJsonlStatus
cdviz_jsonl_next(CdvizJsonlReader *r, CdvizJsonlLine *line)
{
	for (;;)
	{
		size_t		avail = r->end - r->start;
		char	   *base = r->buf + r->start;
		char	   *nl = NULL;

		if (r->scanned < avail)
			nl = memchr(base + r->scanned, '\n', avail - r->scanned);
		if (nl != NULL || (r->eof && r->complete && (avail > 0 || r->skipping)))
		{
			size_t		n = nl ? (size_t) (nl - base) : avail;
			size_t		used = nl ? n + 1 : avail;
			uint64_t	line_start = r->skipping ? r->skip_from : r->buf_off;

			r->buf_hash = cdviz_hash_update(r->buf_hash, base, used);
			r->buf_off += used;
			r->start += used;
			r->scanned = 0;
			/* a line ended: commit */
			r->offset = r->buf_off;
			r->hash = r->buf_hash;
			r->line_no++;
			line->line_no = r->line_no;
			line->offset = line_start;
			line->end_offset = r->buf_off;
			if (r->skipping || n > r->max_line)
			{
				if (!r->skipping)
					keep_excerpt(r, base, n);
				r->skipping = false;
				line->text = r->excerpt;
				line->len = r->excerpt_len;
				return CDVIZ_JSONL_TOO_LONG;
			}
			if (n > 0 && base[n - 1] == '\r')
				n--;
			base[n] = '\0';
			if (is_blank(base, n))
				continue;
			line->text = base;
			line->len = n;
			return CDVIZ_JSONL_LINE;
		}
		r->scanned = avail;
		if (!r->skipping && avail > r->max_line)
		{
			r->skipping = true;
			r->skip_from = r->buf_off;
			keep_excerpt(r, base, avail);
		}
		if (r->skipping && avail > 0)
		{
			/* no newline in what is buffered: drop it, keep only its hash */
			r->buf_hash = cdviz_hash_update(r->buf_hash, base, avail);
			r->buf_off += avail;
			r->start = r->end = 0;
			r->scanned = 0;
		}
		if (r->eof)
			return CDVIZ_JSONL_END;
		if (fill(r) < 0)
			return CDVIZ_JSONL_ERROR;
	}
}

/* The unterminated end of the file; see jsonl.h. */
const char *
cdviz_jsonl_tail(CdvizJsonlReader *r, size_t *len)
{
	size_t		avail = r->end - r->start;

	if (!r->eof || r->skipping || avail == 0)
	{
		*len = 0;
		return NULL;
	}
	*len = avail;
	return r->buf + r->start;
}

/* Whether this can be JSON Lines at all; see jsonl.h. */
bool
cdviz_jsonl_plausible(const char *text, size_t len)
{
	size_t		i = 0;

	if (memchr(text, '\0', len) != NULL)
		return false;
	/* a UTF-8 byte order mark is tolerated */
	if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
		i = 3;
	while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\r' || text[i] == '\n'))
		i++;
	return i == len || text[i] == '{' || text[i] == '[';
}

static size_t
skip_ws(const char *doc, size_t len, size_t p)
{
	while (p < len && (doc[p] == ' ' || doc[p] == '\t' || doc[p] == '\r' || doc[p] == '\n'))
		p++;
	return p;
}

/* Append one element, growing the array. */
static bool
add_element(CdvizJsonElement **elems, int *n, int *cap,
			size_t offset, size_t len, int index)
{
	if (*n == *cap)
	{
		int			newcap = *cap ? *cap * 2 : 16;
		CdvizJsonElement *ne = realloc(*elems, sizeof(CdvizJsonElement) * newcap);

		if (ne == NULL)
			return false;
		*elems = ne;
		*cap = newcap;
	}
	(*elems)[*n].offset = offset;
	(*elems)[*n].len = len;
	(*elems)[*n].index = index;
	(*n)++;
	return true;
}

/* Split a .json document; see jsonl.h. */
int
cdviz_json_split(const char *doc, size_t len, CdvizJsonElement **elems,
				 int *broken_at)
{
	json_tokener *tok;
	size_t		p;
	int			n = 0;
	int			cap = 0;
	int			index = 0;

	*elems = NULL;
	*broken_at = 0;
	p = skip_ws(doc, len, 0);
	if (len >= 3 && memcmp(doc, "\xEF\xBB\xBF", 3) == 0)
		p = skip_ws(doc, len, 3);
	if (p >= len || doc[p] != '[')
	{
		size_t		e = len;

		while (e > p && (doc[e - 1] == ' ' || doc[e - 1] == '\t' ||
						 doc[e - 1] == '\r' || doc[e - 1] == '\n'))
			e--;
		return add_element(elems, &n, &cap, p, e - p, 0) ? n : -1;
	}

	tok = json_tokener_new();
	if (tok == NULL)
		return -1;
	p = skip_ws(doc, len, p + 1);
	if (p < len && doc[p] == ']')
	{
		/* an empty array: fine if nothing follows */
		p = skip_ws(doc, len, p + 1);
		if (p < len)
		{
			*broken_at = 1;
			if (!add_element(elems, &n, &cap, p, len - p, 1))
				n = -1;
		}
		json_tokener_free(tok);
		return n;
	}
	for (;;)
	{
		json_object *obj;
		enum json_tokener_error err;
		size_t		end;

		index++;
		json_tokener_reset(tok);
		obj = json_tokener_parse_ex(tok, doc + p, (int) (len - p));
		err = json_tokener_get_error(tok);
		end = json_tokener_get_parse_end(tok);
		json_object_put(obj);
		if (err != json_tokener_success)
		{
			/* not JSON from here on: the rest is one element */
			*broken_at = index;
			if (!add_element(elems, &n, &cap, p, len - p, index))
				n = -1;
			break;
		}
		/* json-c may have consumed white space after the value */
		while (end > 0 && (doc[p + end - 1] == ' ' || doc[p + end - 1] == '\t' ||
						   doc[p + end - 1] == '\r' || doc[p + end - 1] == '\n'))
			end--;
		if (!add_element(elems, &n, &cap, p, end, index))
		{
			n = -1;
			break;
		}
		p = skip_ws(doc, len, p + end);
		if (p < len && doc[p] == ',')
		{
			p = skip_ws(doc, len, p + 1);
			continue;
		}
		if (p < len && doc[p] == ']')
		{
			p = skip_ws(doc, len, p + 1);
			if (p < len)
			{
				*broken_at = index + 1;
				if (!add_element(elems, &n, &cap, p, len - p, index + 1))
					n = -1;
			}
			break;
		}
		/* neither ',' nor ']': the array is cut short or malformed */
		*broken_at = index + 1;
		if (!add_element(elems, &n, &cap, p, len - p, index + 1))
			n = -1;
		break;
	}
	json_tokener_free(tok);
	if (n < 0)
	{
		free(*elems);
		*elems = NULL;
	}
	return n;
}
