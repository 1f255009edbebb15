/*
 * test_json_scan.c
 *	  Unit tests of the strict JSON scanner (core/json_scan.c), TAP.
 *
 * Each accepted document is shown as its token stream, strings as they
 * were unescaped in place; each refused one must be refused whole (the
 * receivers then leave it to PostgreSQL's parser).  pgTAP 10_core checks
 * that the jsonb built from the tokens is jsonb_in's, byte for byte.
 */
#include <stdlib.h>
#include <string.h>

#include "core/json_scan.h"
#include "tap.h"

/* The tokens of a scan, one after another: "{ k:a s:x n:1 t f z [ ] }". */
typedef struct Tokens
{
	char		buf[4096];
	size_t		len;
	int			stop_after;		/* say stop at this token (0: never) */
	int			seen;
} Tokens;

static void
append(Tokens *t, const char *s, size_t len)
{
	if (t->len + len + 2 >= sizeof(t->buf))
		return;
	if (t->len > 0)
		t->buf[t->len++] = ' ';
	memcpy(t->buf + t->len, s, len);
	t->len += len;
	t->buf[t->len] = '\0';
}

/* Each token's mark, in the order of CdvizJsonToken; a value follows k, s, n. */
static const char token_marks[] = "{}[]ksntfz";

static bool
collect(void *arg, CdvizJsonToken token, const char *s, size_t len)
{
	Tokens	   *t = (Tokens *) arg;
	char		item[1024];

	t->seen++;
	item[0] = token_marks[token];
	if (token == CDVIZ_JSON_KEY || token == CDVIZ_JSON_STRING || token == CDVIZ_JSON_NUMBER)
	{
		item[1] = ':';
		if (len > sizeof(item) - 2)
			len = sizeof(item) - 2;
		memcpy(item + 2, s, len);
		append(t, item, len + 2);
	}
	else
		append(t, item, 1);
	return t->stop_after == 0 || t->seen < t->stop_after;
}

/* Scan a copy of doc; the tokens, or NULL when refused. */
static const char *
scan(const char *doc, Tokens *t)
{
	char	   *copy = strdup(doc);
	bool		ok;

	t->len = 0;
	t->buf[0] = '\0';
	t->seen = 0;
	ok = cdviz_json_scan(copy, strlen(doc), collect, t);
	free(copy);
	return ok ? t->buf : NULL;
}

static void
accepts(const char *doc, const char *want)
{
	Tokens		t = {.stop_after = 0};
	const char *got = scan(doc, &t);
	char	   *name = strdup(doc);

	/* one line per test: blanks of the document shown as dots */
	for (char *c = name; *c; c++)
		if ((unsigned char) *c < 0x20)
			*c = '.';
	is_str(got ? got : "(refused)", want, name);
	free(name);
}

static void
refuses(const char *doc, const char *why)
{
	Tokens		t = {.stop_after = 0};

	ok(scan(doc, &t) == NULL, "refused: %s", why);
}

int
main(void)
{
	Tokens		t = {.stop_after = 3};
	char		deep[2 * CDVIZ_JSON_MAX_DEPTH + 8];

	accepts("{}", "{ }");
	accepts(" [ ] ", "[ ]");
	accepts("{\"a\":1,\"b\":[true,false,null],\"c\":{}}",
			"{ k:a n:1 k:b [ t f z ] k:c { } }");
	accepts("[\"\",{\"\":\"\"},[[]]]", "[ s: { k: s: } [ [ ] ] ]");
	accepts("[-0, 0.5, 1e10, -2.5E-3, 10, 0e+0]", "[ n:-0 n:0.5 n:1e10 n:-2.5E-3 n:10 n:0e+0 ]");
	accepts("[\"a\\\"b\\\\c\\/d\\be\\ff\\ng\\rh\\ti\"]", "[ s:a\"b\\c/d\be\ff\ng\rh\ti ]");
	accepts("[\"\\u00e9\\u4E2D\\ud83d\\ude00\\u0041\"]", "[ s:\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80" "A ]");
	accepts("[\"caf\xc3\xa9 \xf0\x9f\x98\x80\"]", "[ s:caf\xc3\xa9 \xf0\x9f\x98\x80 ]");
	accepts("\t{\r\n\"k\" : \"v\" }\n", "{ k:k s:v }");
	accepts("[\"\x7f\"]", "[ s:\x7f ]");

	refuses("", "empty text");
	refuses("   ", "blanks only");
	refuses("\"a\"", "a string at top level (left to jsonb_in)");
	refuses("3", "a number at top level");
	refuses("null", "null at top level");
	refuses("{\"a\":1,}", "a trailing comma in an object");
	refuses("[1,]", "a trailing comma in an array");
	refuses("[,1]", "a leading comma");
	refuses("{\"a\"}", "a member without value");
	refuses("{\"a\" 1}", "a member without colon");
	refuses("{a:1}", "an unquoted name");
	refuses("{1:1}", "a number as name");
	refuses("[1 2]", "two values without comma");
	refuses("[1}", "a mismatched close");
	refuses("{\"a\":1]", "a mismatched close of an object");
	refuses("[[]", "an unclosed array");
	refuses("{\"a\":1}x", "text after the document");
	refuses("{} {}", "two documents");
	refuses("[01]", "a leading zero");
	refuses("[1.]", "a point without digits");
	refuses("[.5]", "a point first");
	refuses("[+1]", "a plus sign");
	refuses("[-]", "a lone minus");
	refuses("[1e]", "an exponent without digits");
	refuses("[1x]", "a number glued to a word");
	refuses("[tru]", "a truncated literal");
	refuses("[truex]", "a literal glued to a word");
	refuses("[True]", "a capitalized literal");
	refuses("[NaN]", "NaN");
	refuses("[\"a]", "an unterminated string");
	refuses("[\"a\tb\"]", "a raw tab in a string");
	refuses("[\"a\nb\"]", "a raw newline in a string");
	refuses("[\"\\x\"]", "an unknown escape");
	refuses("[\"\\u12\"]", "a short \\u escape");
	refuses("[\"\\u12g4\"]", "a \\u escape with a non-hex digit");
	refuses("[\"\\u0000\"]", "\\u0000 (jsonb cannot hold it)");
	refuses("[\"\\ud800\"]", "a lone high surrogate");
	refuses("[\"\\ud800\\u0041\"]", "a high surrogate followed by no low one");
	refuses("[\"\\udc00\"]", "a lone low surrogate");
	refuses("['a']", "single quotes");
	refuses("[1] // comment", "a comment");

	/* nesting up to the limit is scanned, deeper is refused */
	memset(deep, '[', CDVIZ_JSON_MAX_DEPTH);
	memset(deep + CDVIZ_JSON_MAX_DEPTH, ']', CDVIZ_JSON_MAX_DEPTH);
	deep[2 * CDVIZ_JSON_MAX_DEPTH] = '\0';
	{
		Tokens		all = {.stop_after = 0};

		ok(scan(deep, &all) != NULL, "nesting of %d levels is scanned", CDVIZ_JSON_MAX_DEPTH);
		memmove(deep + 1, deep, 2 * CDVIZ_JSON_MAX_DEPTH + 1);
		deep[0] = '[';
		strcat(deep, "]");
		ok(scan(deep, &all) == NULL, "nesting of %d levels is refused", CDVIZ_JSON_MAX_DEPTH + 1);
	}

	/* a callback saying stop ends the scan as refused */
	ok(scan("[1,2,3]", &t) == NULL && t.seen == 3, "the emitter can stop the scan");

	/* an escaped string is unescaped where it stood; the text after it is intact */
	{
		char		doc[] = "{\"k\\u00e9y\":\"v\\nw\",\"z\":\"plain\"}";
		Tokens		all = {.stop_after = 0};

		ok(cdviz_json_scan(doc, strlen(doc), collect, &all), "escapes in place: scanned");
		is_str(all.buf, "{ k:k\xc3\xa9y s:v\nw k:z s:plain }", "escapes in place: tokens");
	}
	return tap_done();
}
