/*
 * test_jsonl.c
 *	  Unit tests of the JSON Lines reader and the .json splitter (TAP).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/jsonl.h"

static int	tests_run = 0;
static int	tests_failed = 0;

/* One TAP test line; the test name is printf-formatted. */
static void
ok(int cond, const char *fmt,...)
	__attribute__((format(printf, 2, 3)));

static void
ok(int cond, const char *fmt,...)
{
	va_list		ap;

	tests_run++;
	if (!cond)
		tests_failed++;
	printf("%sok %d - ", cond ? "" : "not ", tests_run);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
}

/* A temporary file holding text; returns its descriptor. */
static int
file_with(const char *text, size_t len)
{
	FILE	   *f = tmpfile();
	int			fd;

	if (f == NULL || fwrite(text, 1, len, f) != len || fflush(f) != 0)
	{
		perror("tmpfile");
		exit(2);
	}
	fd = dup(fileno(f));
	fclose(f);
	return fd;
}

/*
 * A reader of the first len bytes of text, from their start, in a
 * temporary file of their own; false when it could not start.
 */
static bool
reader_of(CdvizJsonlReader *r, const char *text, size_t len, uint64_t limit, size_t max_line)
{
	return cdviz_jsonl_init(r, file_with(text, len), 0, 0, CDVIZ_HASH_INIT, limit, max_line);
}

/* Free a reader and close its file. */
static void
reader_done(CdvizJsonlReader *r)
{
	cdviz_jsonl_free(r);
	close(r->fd);
}

static void
test_lines(void)
{
	const char *text = "{\"a\":1}\n\n  \n{\"b\":2}\r\n{\"c\":3}";
	CdvizJsonlReader r;
	CdvizJsonlLine line;
	size_t		tlen;
	const char *tail;

	ok(reader_of(&r, text, strlen(text), UINT64_MAX, 1024), "init");
	ok(cdviz_jsonl_next(&r, &line) == CDVIZ_JSONL_LINE && strcmp(line.text, "{\"a\":1}") == 0 &&
	   line.line_no == 1 && line.offset == 0 && line.end_offset == 8, "first line, number and offsets");
	ok(cdviz_jsonl_next(&r, &line) == CDVIZ_JSONL_LINE && strcmp(line.text, "{\"b\":2}") == 0 &&
	   line.line_no == 4 && line.offset == 12, "blank lines skipped but counted, CR stripped");
	ok(cdviz_jsonl_next(&r, &line) == CDVIZ_JSONL_END, "unterminated last line held back");
	ok(r.offset == 21 && r.line_no == 4, "progress stops after the last newline");
	tail = cdviz_jsonl_tail(&r, &tlen);
	ok(tail != NULL && tlen == 7 && memcmp(tail, "{\"c\":3}", 7) == 0, "tail shows the pending bytes");
	r.complete = true;
	ok(cdviz_jsonl_next(&r, &line) == CDVIZ_JSONL_LINE && strcmp(line.text, "{\"c\":3}") == 0 &&
	   line.line_no == 5 && line.end_offset == strlen(text), "complete file: last line taken");
	ok(cdviz_jsonl_next(&r, &line) == CDVIZ_JSONL_END && r.offset == strlen(text), "then the end");
	{
		uint64_t	h;

		ok(cdviz_hash_fd(r.fd, r.offset, &h) && h == r.hash, "running hash equals hash of the prefix");
		ok(!cdviz_hash_fd(r.fd, r.offset + 1, &h), "hashing past the end fails");
	}
	reader_done(&r);
}

/* Read a file in two sessions, the second resuming where the first stopped. */
static void
test_resume(void)
{
	char	   *text = malloc(200000 * 24);
	size_t		len = 0;
	int			fd;
	CdvizJsonlReader r;
	CdvizJsonlLine line;
	uint64_t	count = 0;
	uint64_t	sum = 0;
	uint64_t	h;
	int			bad = 0;

	for (int i = 1; i <= 200000; i++)
		len += sprintf(text + len, "{\"n\":%d}\n", i);
	fd = file_with(text, len);

	cdviz_jsonl_init(&r, fd, 0, 0, CDVIZ_HASH_INIT, UINT64_MAX, 64);
	while (count < 77777 && cdviz_jsonl_next(&r, &line) == CDVIZ_JSONL_LINE)
	{
		count++;
		sum += (uint64_t) atoi(line.text + 5);
		if ((uint64_t) atoi(line.text + 5) != line.line_no)
			bad++;
	}
	cdviz_jsonl_free(&r);
	/* a new reader, as after a restart, from the recorded progress */
	cdviz_jsonl_init(&r, fd, r.offset, r.line_no, r.hash, UINT64_MAX, 64);
	while (cdviz_jsonl_next(&r, &line) == CDVIZ_JSONL_LINE)
	{
		count++;
		sum += (uint64_t) atoi(line.text + 5);
		if ((uint64_t) atoi(line.text + 5) != line.line_no)
			bad++;
	}
	ok(count == 200000 && sum == (uint64_t) 200000 * 200001 / 2, "200,000 lines read exactly once across a resume");
	ok(bad == 0, "line numbers continue after the resume");
	ok(r.offset == len, "offset at the end");
	ok(cdviz_hash_fd(fd, len, &h) && h == r.hash, "resumed hash equals hash of the whole file");
	ok(r.cap <= 64 + 65536 + 2, "buffer bounded by max_line plus one read");
	cdviz_jsonl_free(&r);
	close(fd);
	free(text);
}

static void
test_too_long(void)
{
	size_t		big = 300000;
	char	   *text = malloc(big + 100);
	size_t		len = 0;
	CdvizJsonlReader r;
	CdvizJsonlLine line;

	len += sprintf(text, "{\"a\":1}\n");
	memset(text + len, 'x', big);
	len += big;
	text[len++] = '\n';
	len += sprintf(text + len, "{\"b\":2}\n");
	reader_of(&r, text, len, UINT64_MAX, 1000);
	ok(cdviz_jsonl_next(&r, &line) == CDVIZ_JSONL_LINE, "line before the long one");
	ok(cdviz_jsonl_next(&r, &line) == CDVIZ_JSONL_TOO_LONG && line.line_no == 2 &&
	   line.offset == 8 && line.end_offset == 8 + big + 1 && line.len == CDVIZ_JSONL_EXCERPT &&
	   line.text[0] == 'x', "overlong line reported with its place and an excerpt");
	ok(cdviz_jsonl_next(&r, &line) == CDVIZ_JSONL_LINE && line.line_no == 3 &&
	   strcmp(line.text, "{\"b\":2}") == 0, "reading goes on after it");
	ok(r.cap <= 1000 + 65536 + 2, "the long line was never buffered whole");
	reader_done(&r);

	/* an overlong unterminated end of a file being written: left in place */
	reader_of(&r, text, 8 + big, UINT64_MAX, 1000);
	cdviz_jsonl_next(&r, &line);
	ok(cdviz_jsonl_next(&r, &line) == CDVIZ_JSONL_END && r.offset == 8 && r.line_no == 1,
	   "overlong unterminated tail: progress stays at its start");
	r.complete = true;
	ok(cdviz_jsonl_next(&r, &line) == CDVIZ_JSONL_TOO_LONG && r.offset == 8 + big,
	   "once complete it is reported too long and consumed");
	reader_done(&r);
	free(text);
}

static void
test_limit(void)
{
	const char *text = "{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n";
	CdvizJsonlReader r;
	CdvizJsonlLine line;
	size_t		tlen;

	/* the caller saw 12 bytes: the second line was half written then */
	reader_of(&r, text, strlen(text), 12, 1024);
	ok(cdviz_jsonl_next(&r, &line) == CDVIZ_JSONL_LINE, "line before the limit");
	ok(cdviz_jsonl_next(&r, &line) == CDVIZ_JSONL_END && r.offset == 8, "nothing read past the limit");
	ok(cdviz_jsonl_tail(&r, &tlen) != NULL && tlen == 4, "the tail is what lay before the limit");
	reader_done(&r);
}

static void
test_plausible(void)
{
	ok(cdviz_jsonl_plausible("  \n{\"a\":1}", 10), "object lines are plausible");
	ok(cdviz_jsonl_plausible("[1]", 3), "array lines are plausible");
	ok(!cdviz_jsonl_plausible("hello world", 11), "text is not");
	ok(!cdviz_jsonl_plausible("{\0", 2), "NUL bytes are not");
	ok(cdviz_jsonl_plausible("\xEF\xBB\xBF{", 4), "a byte order mark is tolerated");
}

/* The text of element i of doc. */
static int
elem_is(const char *doc, CdvizJsonElement *e, const char *want)
{
	return e->len == strlen(want) && memcmp(doc + e->offset, want, e->len) == 0;
}

static void
test_split(void)
{
	CdvizJsonElement *el;
	int			broken;
	int			n;
	const char *one = " {\"a\": [1, \"],\"]}\n";
	const char *arr = "[ {\"a\": \"x,]\\\"\"} ,\n{\"b\": [[1],{\"c\":null}]}, 3, null ]\n";
	const char *cut = "[{\"a\":1}, {\"b\": tru}, {\"c\":3}]";
	const char *open = "[{\"a\":1}, {\"b\":2}";

	n = cdviz_json_split(one, strlen(one), &el, &broken);
	ok(n == 1 && el[0].index == 0 && elem_is(one, &el[0], "{\"a\": [1, \"],\"]}") && broken == 0,
	   "a lone document is one element, trimmed");
	free(el);

	n = cdviz_json_split(arr, strlen(arr), &el, &broken);
	ok(n == 4 && broken == 0, "array of four");
	ok(n == 4 && elem_is(arr, &el[0], "{\"a\": \"x,]\\\"\"}") && el[0].index == 1,
	   "strings holding brackets, commas and quotes");
	ok(n == 4 && elem_is(arr, &el[1], "{\"b\": [[1],{\"c\":null}]}"), "nested arrays stay whole");
	ok(n == 4 && elem_is(arr, &el[2], "3") && elem_is(arr, &el[3], "null") && el[3].index == 4,
	   "scalars and null are elements too");
	free(el);

	n = cdviz_json_split("[ ]", 3, &el, &broken);
	ok(n == 0 && broken == 0, "an empty array has no element");
	free(el);

	n = cdviz_json_split(cut, strlen(cut), &el, &broken);
	ok(n == 2 && broken == 2 && elem_is(cut, &el[0], "{\"a\":1}") &&
	   elem_is(cut, &el[1], "{\"b\": tru}, {\"c\":3}]"),
	   "where JSON stops, the rest is one last element");
	free(el);

	n = cdviz_json_split(open, strlen(open), &el, &broken);
	ok(n == 3 && broken == 3 && el[2].len == 0, "an array cut short is flagged");
	free(el);

	n = cdviz_json_split("[1] x", 5, &el, &broken);
	ok(n == 2 && broken == 2 && elem_is("[1] x", &el[1], "x"), "garbage after the array is flagged");
	free(el);
}

int
main(void)
{
	test_lines();
	test_resume();
	test_too_long();
	test_limit();
	test_plausible();
	test_split();
	printf("1..%d\n", tests_run);
	return tests_failed ? 1 : 0;
}
