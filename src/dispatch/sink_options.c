/*
 * sink_options.c
 *	  A sink's options, as cdviz.create_sink() checked them, read into its
 *	  settings.
 *
 * Apart from dispatch_store.c because json-c and PostgreSQL's builtins
 * both declare json_object().
 */
#include "postgres.h"

#include <json-c/json.h>

#include "dispatch/dispatch.h"

static int
option_ms(struct json_object *opts, const char *key, double dflt_seconds)
{
	struct json_object *v;
	double		seconds = dflt_seconds;

	if (opts && json_object_object_get_ex(opts, key, &v))
		seconds = json_object_get_double(v);
	return (int) Max(1.0, Min(seconds * 1000.0, 86400000.0));
}

/* Fill the option fields of sink, in sink->cxt (the current context). */
void
dispatch_sink_options(Sink *sink, const char *options, const char *secrets_text)
{
	struct json_object *opts = json_tokener_parse(options);
	struct json_object *secrets = json_tokener_parse(secrets_text);
	struct json_object *v;

	/* the Kafka sink reads its own options (brokers, key, config) */
	sink->options_json = pstrdup(options);
	sink->mode = HTTP_BINARY;
	if (opts && json_object_object_get_ex(opts, "mode", &v))
	{
		const char *m = json_object_get_string(v);

		sink->mode = strcmp(m, "batch") == 0 ? HTTP_BATCH
			: strcmp(m, "structured") == 0 ? HTTP_STRUCTURED : HTTP_BINARY;
	}
	sink->batch_size = 100;
	if (opts && json_object_object_get_ex(opts, "batch_size", &v))
		sink->batch_size = Max(1, Min(json_object_get_int(v), 10000));
	sink->timeout_ms = option_ms(opts, "timeout", 10);
	sink->initial_backoff_ms = option_ms(opts, "initial_backoff", 0.5);
	sink->max_backoff_ms = option_ms(opts, "max_backoff", 60);
	sink->headers_json = NULL;
	if (opts && json_object_object_get_ex(opts, "headers", &v))
		sink->headers_json = pstrdup(json_object_to_json_string(v));
	sink->jetstream = 2;
	if (opts && json_object_object_get_ex(opts, "jetstream", &v))
	{
		const char *m = json_object_get_string(v);

		sink->jetstream = strcmp(m, "never") == 0 ? 0 : strcmp(m, "always") == 0 ? 1 : 2;
	}
	sink->token = NULL;
	sink->hmac_secret = NULL;
	if (secrets && json_object_object_get_ex(secrets, "token", &v))
		sink->token = pstrdup(json_object_get_string(v));
	if (secrets && json_object_object_get_ex(secrets, "hmac_secret", &v))
		sink->hmac_secret = pstrdup(json_object_get_string(v));
	if (opts)
		json_object_put(opts);
	if (secrets)
		json_object_put(secrets);
}
