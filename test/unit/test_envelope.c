/*
 * test_envelope.c
 *	  Unit tests of the CloudEvents envelopes and gzip inflation
 *	  (src/core/envelope.c), without PostgreSQL.
 */
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "core/envelope.h"
#include "tap.h"

#define EV(id) "{\"context\":{\"id\":\"" id "\",\"source\":\"/s\",\"type\":\"t\"},\"subject\":{}}"

/* Read a body with the given headers (binary-mode ones may be NULL). */
static void
read_env(CdvizEnvelope *env, const char *ctype, const char *specversion,
		 const char *id, const char *body)
{
	CdvizEnvelopeInput in = {ctype, specversion, id, specversion ? "/s" : NULL,
	specversion ? "t" : NULL, body, strlen(body), true};

	if (!cdviz_envelope_read(&in, env))
		abort();
}

/* The first problem's message, or "". */
static const char *
problem(const CdvizEnvelope *env, int i)
{
	return env->events[i].problems.count ? env->events[i].problems.items[0].message : "";
}

int
main(void)
{
	CdvizEnvelope env;
	char	   *out;
	size_t		outlen;

	/* plain: the body itself, not copied */
	read_env(&env, "application/json", NULL, NULL, EV("a"));
	is_str(cdviz_envelope_mode_name(env.mode), "plain", "application/json object: plain");
	is_int(env.nevents, 1, "plain: one event");
	ok(!env.events[0].owned && env.events[0].problems.count == 0, "plain: raw is the body");
	cdviz_envelope_free(&env);

	read_env(&env, NULL, NULL, NULL, "not json");
	is_str(cdviz_envelope_mode_name(env.mode), "plain", "no content type: plain");
	ok(env.nevents == 1 && env.events[0].problems.count == 0, "plain: validation, not the envelope, judges JSON");
	cdviz_envelope_free(&env);

	read_env(&env, "Application/CDEvents+JSON; charset=utf-8", NULL, NULL, EV("a"));
	is_str(cdviz_envelope_mode_name(env.mode), "plain", "+json with parameters, any case: plain");
	cdviz_envelope_free(&env);

	/* array */
	read_env(&env, "application/json", NULL, NULL, " [" EV("a") ", " EV("b") ", 3]");
	is_str(cdviz_envelope_mode_name(env.mode), "array", "array body: array mode");
	is_int(env.nevents, 3, "array: three elements");
	ok(strstr(env.events[1].raw, "\"b\"") != NULL, "array: second element's text");
	is_str(env.events[2].raw, "3", "array: a non-object is passed on for validation");
	cdviz_envelope_free(&env);

	/* array elements: the text as sent, parsed once */
	read_env(&env, "application/json", NULL, NULL, "[ {\"a\" : [1, 2]} ,\n{\"b\":\"x,]\"}\t,null,\"s\" ]\n");
	is_int(env.nevents, 4, "array split: four elements");
	is_str(env.events[0].raw, "{\"a\" : [1, 2]}", "array split: first element exactly as sent");
	is_int((int) env.events[0].raw_len, 14, "array split: its length");
	is_str(env.events[1].raw, "{\"b\":\"x,]\"}", "array split: separators inside strings");
	ok(env.events[0].json != NULL && env.events[1].json != NULL, "array split: parsed documents come along");
	ok(strcmp(env.events[2].raw, "null") == 0 && env.events[2].json == NULL, "array split: null is left to validation");
	is_str(env.events[3].raw, "\"s\"", "array split: a string element");
	ok(env.events[0].problems.count == 0 && env.events[3].problems.count == 0, "array split: no problem from the envelope");
	cdviz_envelope_free(&env);

	read_env(&env, "application/json", NULL, NULL, "[" EV("a") ", " EV("b") ",]");
	ok(env.nevents == 2 && env.events[0].problems.count == 0 && env.events[1].json == NULL,
	   "trailing comma: read as a whole, as json-c does");
	cdviz_envelope_free(&env);

	read_env(&env, "application/json", NULL, NULL, "[" EV("a") "] x");
	ok(env.nevents == 1 && env.events[0].problems.count == 1 &&
	   strstr(problem(&env, 0), "after the document") != NULL, "array with trailing data: one problem on the body");
	cdviz_envelope_free(&env);

	read_env(&env, "application/json", NULL, NULL, "[" EV("a") " " EV("b") "]");
	ok(env.nevents == 1 && env.events[0].problems.count == 1, "array without a comma: one problem on the body");
	cdviz_envelope_free(&env);

	read_env(&env, "application/json", NULL, NULL, "[]");
	is_int(env.nevents, 0, "empty array: no event");
	cdviz_envelope_free(&env);

	read_env(&env, "application/json", NULL, NULL, "[1,");
	ok(env.nevents == 1 && env.events[0].problems.count == 1, "truncated array: one problem on the body");
	cdviz_envelope_free(&env);

	/* binary */
	read_env(&env, "application/json", "1.0", "a", EV("a"));
	is_str(cdviz_envelope_mode_name(env.mode), "binary", "ce-specversion: binary mode");
	ok(env.nevents == 1 && env.events[0].problems.count == 0, "binary: agreeing attributes");
	cdviz_envelope_free(&env);

	read_env(&env, "application/json", "1.0", "zzz", EV("a"));
	ok(strstr(problem(&env, 0), "ce-id \"zzz\"") != NULL, "binary: ce-id disagreeing is a problem");
	is_str(env.events[0].problems.items[0].path, "context.id", "binary: problem path");
	cdviz_envelope_free(&env);

	read_env(&env, "application/json", "0.3", "a", EV("a"));
	ok(strstr(problem(&env, 0), "not supported") != NULL, "binary: CloudEvents 0.3 refused");
	cdviz_envelope_free(&env);

	read_env(&env, "application/json", "1.0", "a", "[" EV("a") "]");
	ok(env.events[0].problems.count == 1, "binary: an array body is a problem");
	cdviz_envelope_free(&env);

	/* binary: header values are decoded as the HTTP binding says */
	read_env(&env, "application/json", " \"1.0\" ", "\"b%20c\"", EV("b c"));
	ok(env.nevents == 1 && env.events[0].problems.count == 0,
	   "binary: quoted specversion, quoted and percent-encoded id agree with context.id");
	cdviz_envelope_free(&env);
	read_env(&env, "application/json", "1.0", "b%zz", EV("b"));
	ok(strstr(problem(&env, 0), "ce-id header \"b%zz\" cannot be decoded") != NULL,
	   "binary: an undecodable ce-id is a problem naming it");
	cdviz_envelope_free(&env);
	{
		CdvizEnvelopeInput in = {"application/json", "1.0", NULL, NULL, "t", EV("a"), strlen(EV("a")), true};

		if (!cdviz_envelope_read(&in, &env))
			abort();
		is_int(env.events[0].problems.count, 1, "binary: missing headers are one problem");
		is_str(problem(&env, 0), "a CloudEvent requires the headers ce-id, ce-source and ce-type: missing ce-id, ce-source",
			   "binary: it names the missing headers");
		cdviz_envelope_free(&env);
		in.http_headers = false;
		in.ce_id = "b%20c";
		in.ce_source = "/s";
		if (!cdviz_envelope_read(&in, &env))
			abort();
		ok(strstr(problem(&env, 0), "ce-id \"b%20c\"") != NULL,
		   "binary, not HTTP headers (NATS): values taken as they are");
		cdviz_envelope_free(&env);
	}

	/* header decoding */
	{
		static const char *const good[][2] = {
			{"qa%20pct", "qa pct"}, {"50%25", "50%"}, {"%C3%bc", "\xC3\xBC"},
			{" \t1.0 \t", "1.0"}, {"\"x\"", "x"}, {"\"a\\\"b\\\\\"", "a\"b\\"},
			{"\"%41\"", "A"}, {"%2541", "%41"}, {"a\"b", "a\"b"}, {"", ""},
			{"%F0%9F%98%80", "\xF0\x9F\x98\x80"},
		};
		static const char *const bad[] = {
			"%", "%4", "%zz", "%C0%A0", "%ED%A0%80", "%F4%90%80%80", "%C3", "%FF",
			"%00", "a%0Ab", "%C2%85", "\"open", "\"x\"y", "\"x\\\"",
		};

		for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		{
			const char *why;
			char	   *d = cdviz_ce_header_decode(good[i][0], &why);

			is_str(d ? d : why, good[i][1], "header decode");
			free(d);
		}
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		{
			const char *why;
			char	   *d = cdviz_ce_header_decode(bad[i], &why);

			ok(d == NULL && why != NULL, "header decode refuses a bad value");
			free(d);
		}
	}

	/* structured */
	read_env(&env, "application/cloudevents+json", NULL, NULL,
			 "{\"specversion\":\"1.0\",\"id\":\"a\",\"source\":\"/s\",\"type\":\"t\",\"data\":" EV("a") "}");
	is_str(cdviz_envelope_mode_name(env.mode), "structured", "cloudevents+json: structured");
	ok(env.nevents == 1 && env.events[0].problems.count == 0 &&
	   strncmp(env.events[0].raw, "{\"context\"", 10) == 0, "structured: raw is data");
	cdviz_envelope_free(&env);

	/* base64 of EV("b") */
	read_env(&env, "application/cloudevents+json", NULL, NULL,
			 "{\"specversion\":\"1.0\",\"id\":\"b\",\"source\":\"/s\",\"type\":\"t\",\"data_base64\":"
			 "\"eyJjb250ZXh0Ijp7ImlkIjoiYiIsInNvdXJjZSI6Ii9zIiwidHlwZSI6InQifSwic3ViamVjdCI6e319\"}");
	ok(env.nevents == 1 && env.events[0].problems.count == 0, "structured data_base64: decoded");
	is_str(env.events[0].raw, EV("b"), "structured data_base64: the CDEvent text");
	cdviz_envelope_free(&env);

	read_env(&env, "application/cloudevents+json", NULL, NULL,
			 "{\"specversion\":\"1.0\",\"id\":\"a\",\"source\":\"/s\",\"type\":\"t\",\"data_base64\":\"***\"}");
	ok(strstr(problem(&env, 0), "base64") != NULL, "structured: bad base64 is a problem");
	cdviz_envelope_free(&env);

	read_env(&env, "application/cloudevents+json", NULL, NULL,
			 "{\"specversion\":\"1.0\",\"id\":\"a\",\"source\":\"/s\",\"type\":\"t\"}");
	ok(strstr(problem(&env, 0), "data or data_base64") != NULL, "structured: no data is a problem");
	cdviz_envelope_free(&env);

	read_env(&env, "application/cloudevents+json", NULL, NULL,
			 "{\"specversion\":\"1.0\",\"id\":\"a\",\"source\":\"/other\",\"type\":\"t\",\"data\":" EV("a") "}");
	ok(strstr(problem(&env, 0), "source \"/other\"") != NULL, "structured: source disagreeing is a problem");
	cdviz_envelope_free(&env);

	read_env(&env, "application/cloudevents+json", NULL, NULL, "{\"id\":\"a\",\"data\":" EV("a") "}");
	ok(strstr(problem(&env, 0), "required") != NULL, "structured: specversion is required");
	cdviz_envelope_free(&env);

	/* batch */
	read_env(&env, "application/cloudevents-batch+json", NULL, NULL,
			 "[{\"specversion\":\"1.0\",\"id\":\"a\",\"source\":\"/s\",\"type\":\"t\",\"data\":" EV("a") "},"
			 " {\"specversion\":\"1.0\", \"id\":\"x\",\"source\":\"/s\",\"type\":\"t\"} ,7]");
	is_str(cdviz_envelope_mode_name(env.mode), "batch", "cloudevents-batch+json: batch");
	is_int(env.nevents, 3, "batch: one entry per element");
	ok(env.events[0].problems.count == 0, "batch: first element fine");
	ok(env.events[1].problems.count == 1 && env.events[2].problems.count == 1,
	   "batch: the others carry their problems");
	is_str(env.events[2].raw, "7", "batch: refused element kept as sent");
	is_str(env.events[1].raw, "{\"specversion\":\"1.0\", \"id\":\"x\",\"source\":\"/s\",\"type\":\"t\"}",
		   "batch: a refused CloudEvent is kept as sent, not printed again");
	ok(env.events[0].received != NULL &&
	   strncmp(env.events[0].received, "{\"specversion\":\"1.0\",\"id\":\"a\"", 29) == 0 &&
	   env.events[0].received[env.events[0].received_len] == '\0' &&
	   env.events[0].received[env.events[0].received_len - 1] == '}',
	   "batch: an accepted element keeps its CloudEvent as received");
	cdviz_envelope_free(&env);

	/* an empty batch is a batch of nothing */
	read_env(&env, "application/cloudevents-batch+json", NULL, NULL, " [ ] ");
	ok(env.mode == CDVIZ_ENVELOPE_BATCH && env.nevents == 0, "batch: [ ] is no event and no problem");
	cdviz_envelope_free(&env);
	read_env(&env, "application/json", NULL, NULL, "[]");
	ok(env.mode == CDVIZ_ENVELOPE_ARRAY && env.nevents == 0, "array: [] is no event and no problem");
	cdviz_envelope_free(&env);

	/* structured: a CloudEvent that is no CDEvent keeps the CloudEvent */
	{
		const char *foreign = "{\"specversion\":\"1.0\",\"id\":\"x1\",\"source\":\"/f\","
			"\"type\":\"com.example.foo\",\"data\":{\"a\":1}}";

		read_env(&env, "application/cloudevents+json", NULL, NULL, foreign);
		ok(env.nevents == 1 && env.events[0].problems.count == 0, "structured foreign: validation judges data");
		is_str(env.events[0].raw, "{\"a\":1}", "structured foreign: raw is data");
		ok(env.events[0].received == foreign, "structured foreign: received is the body itself");
		cdviz_envelope_free(&env);
	}
	read_env(&env, "application/cloudevents+json", NULL, NULL,
			 "{ \"specversion\" : \"1.0\", \"data\": " EV("a") " }");
	ok(env.events[0].problems.count == 1 &&
	   strstr(problem(&env, 0), "requires the attributes id, source and type: missing id, source, type"),
	   "structured: id, source and type are required");
	is_str(env.events[0].raw, "{ \"specversion\" : \"1.0\", \"data\": " EV("a") " }",
		   "structured: a refused CloudEvent is the body as sent");
	cdviz_envelope_free(&env);
	read_env(&env, "application/cloudevents+json", NULL, NULL,
			 "{\"specversion\":\"1.0\",\"id\":7,\"source\":\"\",\"type\":\"t\",\"data\":" EV("a") "}");
	ok(env.events[0].problems.count == 3 && strstr(problem(&env, 0), "id must be a string"),
	   "structured: a number id and an empty source are problems");
	cdviz_envelope_free(&env);

	read_env(&env, "application/cloudevents-batch+json", NULL, NULL, EV("a"));
	ok(strstr(problem(&env, 0), "JSON array") != NULL, "batch: an object is a problem");
	cdviz_envelope_free(&env);

	/* unsupported */
	read_env(&env, "text/plain", NULL, NULL, EV("a"));
	ok(env.mode == CDVIZ_ENVELOPE_UNSUPPORTED && env.nevents == 0 && strstr(env.error, "text/plain"),
	   "text/plain: unsupported, says which");
	cdviz_envelope_free(&env);
	read_env(&env, "application/x-www-form-urlencoded", NULL, NULL, EV("a"));
	ok(env.mode == CDVIZ_ENVELOPE_UNSUPPORTED, "curl -d's form type: unsupported");
	cdviz_envelope_free(&env);

	/* gzip */
	{
		const char *text = EV("gz") EV("gz") EV("gz");
		unsigned char gz[512];
		z_stream	zs;

		memset(&zs, 0, sizeof(zs));
		deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
		zs.next_in = (Bytef *) text;
		zs.avail_in = strlen(text);
		zs.next_out = gz;
		zs.avail_out = sizeof(gz);
		deflate(&zs, Z_FINISH);
		deflateEnd(&zs);

		is_int(cdviz_gzip_inflate((char *) gz, zs.total_out, 10000, &out, &outlen),
			   CDVIZ_INFLATE_OK, "gzip: inflated");
		ok(outlen == strlen(text) && strcmp(out, text) == 0, "gzip: same bytes, NUL-terminated");
		free(out);
		is_int(cdviz_gzip_inflate((char *) gz, zs.total_out, strlen(text) - 1, &out, &outlen),
			   CDVIZ_INFLATE_TOO_LARGE, "gzip: the cap applies to the inflated size");
		is_int(cdviz_gzip_inflate((char *) gz, zs.total_out, strlen(text), &out, &outlen),
			   CDVIZ_INFLATE_OK, "gzip: exactly at the cap is fine");
		free(out);
		is_int(cdviz_gzip_inflate((char *) gz, zs.total_out - 5, 10000, &out, &outlen),
			   CDVIZ_INFLATE_CORRUPT, "gzip: truncated stream is corrupt");
		is_int(cdviz_gzip_inflate("plain text", 10, 10000, &out, &outlen),
			   CDVIZ_INFLATE_CORRUPT, "gzip: not gzip is corrupt");
	}
	{
		/* a bomb: 10 MB of zeros must stop at the cap */
		size_t		n = 10 * 1024 * 1024;
		char	   *zeros = calloc(1, n);
		uLongf		clen = compressBound(n);
		unsigned char *c = malloc(clen);

		compress(c, &clen, (Bytef *) zeros, n);
		is_int(cdviz_gzip_inflate((char *) c, clen, 64 * 1024, &out, &outlen),
			   CDVIZ_INFLATE_TOO_LARGE, "zlib bomb stops at the cap");
		free(zeros);
		free(c);
	}
	return tap_done();
}
