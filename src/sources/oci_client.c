/*
 * oci_client.c
 *	  The HTTP client of an oci source: requests to the registry's
 *	  Distribution API with the authentication the registry asks for.
 *
 * Without credentials requests go out bare.  With a username and password
 * they carry basic credentials, unless the registry answered a 401 with a
 * "Bearer realm=...,service=...,scope=..." challenge: then the client asks
 * the realm for a token of that scope (with the basic credentials, when
 * any; anonymous otherwise, as public images on Docker Hub or GHCR are
 * read), sends it as a bearer token and keeps it until it expires.  Once a
 * realm is known, the token of the next repository is asked for before
 * the request (repository:<name>:pull, registry:catalog:* for the
 * catalog) instead of after its 401.  Tokens are kept by scope, the
 * TOKEN_SLOTS last ones: a scan asks for none while they last.
 *
 * For AWS ECR the basic credentials are AWS:<password> from ECR's
 * GetAuthorizationToken, a POST signed with AWS Signature V4 by libcurl
 * (CURLOPT_AWS_SIGV4), kept until five minutes before its expiresAt.
 *
 * The client, its curl handle (and so its connections) and its
 * credentials live across scans; a request watches for SIGTERM and stops
 * at once.
 */
#include "postgres.h"

#include <curl/curl.h>
#include <json-c/json.h>

#include "common/base64.h"
#include "miscadmin.h"
#include "utils/memutils.h"

#include "poll/poll.h"
#include "sources/oci.h"

/* Largest answer kept: a page of 10,000 tags is ~300 kB. */
#define MAX_BODY_BYTES (16 * 1024 * 1024)
/* Renew credentials this long before they expire. */
#define TOKEN_MARGIN_MS (10 * 1000)
#define ECR_MARGIN_MS (5 * 60 * 1000)
/* Bearer tokens kept, by scope. */
#define TOKEN_SLOTS 64

typedef struct OciToken
{
	char	   *scope;			/* NULL: a free slot */
	char	   *token;
	TimestampTz expires;
} OciToken;

struct OciClient
{
	MemoryContext cxt;
	CURL	   *curl;
	char	   *base;
	OciAuth		auth;
	const char *who;
	/* the registry token flow, once a challenge named its realm */
	char	   *realm;
	char	   *service;
	OciToken	tokens[TOKEN_SLOTS];
	int			next_slot;		/* the slot a new scope takes */
	/* ECR: "AWS:<password>" */
	char	   *ecr_userpwd;
	TimestampTz ecr_expires;
	/* the last answer */
	OciResponse resp;
	char	   *challenge;		/* WWW-Authenticate */
	char		errbuf[CURL_ERROR_SIZE];
};

static bool curl_ready = false;

/* ------------------------------------------------------------------ */
/* curl callbacks                                                      */
/* ------------------------------------------------------------------ */

static size_t
on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	OciClient  *c = (OciClient *) arg;
	size_t		n = size * nmemb;

	if (c->resp.body.len + n > MAX_BODY_BYTES)
		return 0;
	appendBinaryStringInfo(&c->resp.body, data, (int) n);
	return n;
}

/* A header's value, trimmed, if the line is that header. */
static char *
header_value(const char *line, size_t len, const char *name)
{
	size_t		nlen = strlen(name);

	if (len <= nlen || pg_strncasecmp(line, name, nlen) != 0 || line[nlen] != ':')
		return NULL;
	line += nlen + 1;
	len -= nlen + 1;
	while (len > 0 && (*line == ' ' || *line == '\t'))
		line++, len--;
	while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == '\n' || line[len - 1] == ' '))
		len--;
	return pnstrdup(line, len);
}

/* The target of a Link header's rel="next": <target>; rel="next". */
static char *
link_next(const char *v)
{
	const char *lt = strchr(v, '<');
	const char *gt = lt ? strchr(lt, '>') : NULL;

	if (gt == NULL || strstr(gt, "next") == NULL)
		return NULL;
	return pnstrdup(lt + 1, gt - lt - 1);
}

static size_t
on_header(char *data, size_t size, size_t nmemb, void *arg)
{
	OciClient  *c = (OciClient *) arg;
	size_t		n = size * nmemb;
	char	   *v;

	/* in the caller's memory context: valid until the next request */

	if ((v = header_value(data, n, "docker-content-digest")) != NULL)
		strlcpy(c->resp.digest, v, sizeof(c->resp.digest));
	else if ((v = header_value(data, n, "content-type")) != NULL)
		strlcpy(c->resp.content_type, v, sizeof(c->resp.content_type));
	else if ((v = header_value(data, n, "link")) != NULL)
		c->resp.next = link_next(v);
	else if ((v = header_value(data, n, "www-authenticate")) != NULL)
	{
		c->challenge = v;
		v = NULL;
	}
	if (v)
		pfree(v);
	return n;
}

/*
 * One request: url, with the headers given, basic credentials userpwd
 * (or NULL), a POST of body when not NULL, signed with SigV4 by sigv4
 * when not NULL.  False with *error when there was no answer.
 */
static bool
perform(OciClient *c, const char *url, bool head, struct curl_slist *headers,
		const char *userpwd, const char *body, const char *sigv4, char **error)
{
	CURLcode	rc;

	resetStringInfo(&c->resp.body);
	c->resp.status = 0;
	c->resp.digest[0] = '\0';
	c->resp.content_type[0] = '\0';
	c->resp.next = NULL;
	c->challenge = NULL;
	c->errbuf[0] = '\0';
	curl_easy_reset(c->curl);
	curl_easy_setopt(c->curl, CURLOPT_URL, url);
	curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, headers);
	if (head)
		curl_easy_setopt(c->curl, CURLOPT_NOBODY, 1L);
	if (body)
	{
		curl_easy_setopt(c->curl, CURLOPT_POST, 1L);
		curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, body);
	}
	if (userpwd)
	{
		curl_easy_setopt(c->curl, CURLOPT_USERPWD, userpwd);
		if (sigv4)
			curl_easy_setopt(c->curl, CURLOPT_AWS_SIGV4, sigv4);
		else
			curl_easy_setopt(c->curl, CURLOPT_HTTPAUTH, (long) CURLAUTH_BASIC);
	}
	curl_easy_setopt(c->curl, CURLOPT_PROTOCOLS_STR, "http,https");
	poll_curl_options(c->curl, c->errbuf, on_body, on_header, c, "cdviz-oci-source");
	rc = curl_easy_perform(c->curl);
	curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &c->resp.status);
	/* SIGTERM during the transfer: exit now */
	CHECK_FOR_INTERRUPTS();
	if (rc != CURLE_OK)
	{
		*error = psprintf("%s: %s", url, c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc));
		return false;
	}
	return true;
}

/* ------------------------------------------------------------------ */
/* credentials                                                         */
/* ------------------------------------------------------------------ */

/* The body as a JSON object (to json_object_put), or NULL. */
static struct json_object *
body_json(OciClient *c)
{
	struct json_tokener *tok = json_tokener_new();
	struct json_object *doc;

	if (tok == NULL)
		return NULL;
	doc = json_tokener_parse_ex(tok, c->resp.body.data, c->resp.body.len);
	json_tokener_free(tok);
	if (doc && !json_object_is_type(doc, json_type_object))
	{
		json_object_put(doc);
		doc = NULL;
	}
	return doc;
}

/* A string member of obj, copied, or NULL. */
static char *
json_string(struct json_object *obj, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(obj, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return pstrdup(json_object_get_string(v));
}

/* The parameter name of a challenge: Bearer realm="...",service="...". */
static char *
challenge_param(const char *challenge, const char *name)
{
	size_t		nlen = strlen(name);

	for (const char *p = challenge; (p = strstr(p, name)) != NULL; p += nlen)
	{
		const char *v;
		const char *end;

		/* the name must start a parameter */
		if (p > challenge && p[-1] != ' ' && p[-1] != ',')
			continue;
		v = p + nlen;
		if (*v != '=')
			continue;
		v++;
		if (*v == '"')
		{
			v++;
			end = strchr(v, '"');
		}
		else
			end = v + strcspn(v, ", ");
		return end ? pnstrdup(v, end - v) : NULL;
	}
	return NULL;
}

/* The scope of a token for a repository, or for the catalog. */
static char *
scope_of(const char *repository)
{
	return repository ? psprintf("repository:%s:pull", repository) : pstrdup("registry:catalog:*");
}

/* The token kept for scope, while it lasts, or NULL. */
static OciToken *
find_token(OciClient *c, const char *scope)
{
	for (int i = 0; i < TOKEN_SLOTS; i++)
		if (c->tokens[i].scope && strcmp(c->tokens[i].scope, scope) == 0)
			return GetCurrentTimestamp() < c->tokens[i].expires ? &c->tokens[i] : NULL;
	return NULL;
}

/*
 * Ask the realm for a token of scope, with the basic credentials when
 * there are some, and keep it for key (the scope of the requests it is
 * for).  NULL with *error when none was given.
 */
static OciToken *
fetch_token(OciClient *c, const char *scope, const char *key, const char *userpwd, char **error)
{
	OciToken   *t = NULL;
	char	   *e_service = curl_easy_escape(c->curl, c->service ? c->service : "", 0);
	char	   *e_scope = curl_easy_escape(c->curl, scope, 0);
	char	   *url = psprintf("%s%sservice=%s&scope=%s", c->realm,
							   strchr(c->realm, '?') ? "&" : "?", e_service, e_scope);
	struct json_object *doc;
	char	   *token;
	int64		expires_in = 60;

	curl_free(e_service);
	curl_free(e_scope);
	if (!perform(c, url, false, NULL, userpwd, NULL, NULL, error))
		return NULL;
	if (c->resp.status != 200)
	{
		*error = oci_describe(c, psprintf("asking %s for a token", c->realm));
		return NULL;
	}
	doc = body_json(c);
	token = doc ? json_string(doc, "token") : NULL;
	if (token == NULL && doc)
		token = json_string(doc, "access_token");
	if (doc)
	{
		struct json_object *v;

		if (json_object_object_get_ex(doc, "expires_in", &v) && json_object_is_type(v, json_type_int))
			expires_in = json_object_get_int64(v);
		json_object_put(doc);
	}
	if (token == NULL || token[0] == '\0')
	{
		*error = psprintf("asking %s for a token: the answer has no token", c->realm);
		return NULL;
	}
	/* the key's slot, else the oldest one */
	for (int i = 0; i < TOKEN_SLOTS && t == NULL; i++)
		if (c->tokens[i].scope && strcmp(c->tokens[i].scope, key) == 0)
			t = &c->tokens[i];
	if (t == NULL)
	{
		t = &c->tokens[c->next_slot];
		c->next_slot = (c->next_slot + 1) % TOKEN_SLOTS;
		if (t->scope)
			pfree(t->scope);
		t->scope = MemoryContextStrdup(c->cxt, key);
	}
	if (t->token)
		pfree(t->token);
	t->token = MemoryContextStrdup(c->cxt, token);
	t->expires = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
											 Max(expires_in * 1000 - TOKEN_MARGIN_MS, 0));
	return t;
}

/*
 * ECR's basic credentials, asked for when there are none or they are
 * about to expire.  False with *error when they could not be had.
 */
static bool
ecr_credentials(OciClient *c, bool renew, char **error)
{
	const OciAuth *a = &c->auth;
	char	   *url;
	struct curl_slist *headers = NULL;
	struct json_object *doc;
	struct json_object *list;
	struct json_object *v;
	char	   *token = NULL;
	double		expires_at = 0;
	bool		ok;

	if (!renew && c->ecr_userpwd && GetCurrentTimestamp() < c->ecr_expires)
		return true;
	url = a->ecr_endpoint[0] ? pstrdup(a->ecr_endpoint)
		: psprintf("https://api.ecr.%s.amazonaws.com/", a->ecr_region);
	headers = curl_slist_append(headers, "Content-Type: application/x-amz-json-1.1");
	headers = curl_slist_append(headers,
								"X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken");
	if (a->session_token[0])
		headers = curl_slist_append(headers, psprintf("X-Amz-Security-Token: %s", a->session_token));
	ok = perform(c, url, false, headers,
				 psprintf("%s:%s", a->access_key_id, a->secret_access_key), "{}",
				 psprintf("aws:amz:%s:ecr", a->ecr_region), error);
	curl_slist_free_all(headers);
	if (!ok)
		return false;
	if (c->resp.status != 200)
	{
		*error = oci_describe(c, "ECR GetAuthorizationToken");
		return false;
	}
	doc = body_json(c);
	if (doc && json_object_object_get_ex(doc, "authorizationData", &list) &&
		json_object_is_type(list, json_type_array) && json_object_array_length(list) > 0)
	{
		struct json_object *first = json_object_array_get_idx(list, 0);

		token = json_string(first, "authorizationToken");
		if (json_object_object_get_ex(first, "expiresAt", &v))
			expires_at = json_object_get_double(v);
	}
	if (doc)
		json_object_put(doc);
	if (token)
	{
		int			len = pg_b64_dec_len(strlen(token));
		char	   *plain = palloc(len + 1);

		len = pg_b64_decode(token, strlen(token), plain, len);
		if (len > 0 && memchr(plain, ':', len) != NULL)
		{
			plain[len] = '\0';
			c->ecr_userpwd = MemoryContextStrdup(c->cxt, plain);
		}
		else
			token = NULL;
	}
	if (token == NULL)
	{
		*error = pstrdup("ECR GetAuthorizationToken: the answer has no authorizationToken of the form AWS:password in base64");
		return false;
	}
	{
		/* expiresAt is in seconds since 1970; 12 hours when missing */
		TimestampTz now = GetCurrentTimestamp();
		TimestampTz until = expires_at > 0
			? (TimestampTz) ((expires_at - (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY) * USECS_PER_SEC)
			: TimestampTzPlusMilliseconds(now, 12 * 3600 * 1000L);

		c->ecr_expires = Max(TimestampTzPlusMilliseconds(until, -ECR_MARGIN_MS),
							 TimestampTzPlusMilliseconds(now, 60 * 1000));
	}
	return true;
}

/* ------------------------------------------------------------------ */
/* requests                                                            */
/* ------------------------------------------------------------------ */

/* See oci.h. */
OciClient *
oci_client_create(MemoryContext cxt, const char *base, const OciAuth *auth, const char *who)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	OciClient  *c = palloc0(sizeof(OciClient));

	if (!curl_ready)
	{
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
			elog(ERROR, "%s: curl_global_init failed", who);
		curl_ready = true;
	}
	c->cxt = cxt;
	c->base = pstrdup(base);
	c->auth = *auth;
	c->who = who;
	initStringInfo(&c->resp.body);
	c->curl = curl_easy_init();
	if (c->curl == NULL)
		elog(ERROR, "%s: could not initialise libcurl", who);
	MemoryContextSwitchTo(old);
	return c;
}

/* See oci.h. */
OciResponse *
oci_request(OciClient *c, bool head, const char *path, const char *accept,
			const char *repository, char **error)
{
	char	   *url = strncmp(path, "http", 4) == 0 ? pstrdup(path) : psprintf("%s%s", c->base, path);
	char	   *scope = scope_of(repository);
	const char *basic = NULL;
	bool		ecr = c->auth.ecr_region[0] != '\0';
	size_t		blen = strlen(c->base);

	/* a Link elsewhere would be sent the registry's credentials */
	if (strncmp(url, c->base, blen) != 0 || url[blen] != '/')
	{
		*error = psprintf("the registry links to %s, outside %s", url, c->base);
		return NULL;
	}

	if (c->auth.username[0])
		basic = psprintf("%s:%s", c->auth.username, c->auth.password);
	for (int attempt = 0; attempt < 2; attempt++)
	{
		struct curl_slist *headers = NULL;
		const char *userpwd = NULL;
		OciToken   *t = NULL;
		bool		ok;

		if (ecr)
		{
			if (!ecr_credentials(c, attempt > 0, error))
				return NULL;
			basic = c->ecr_userpwd;
		}
		/* a registry of the token flow: the scope's token, asked for first */
		if (c->realm && (t = find_token(c, scope)) == NULL &&
			(t = fetch_token(c, scope, scope, basic, error)) == NULL)
			return NULL;
		if (t)
			headers = curl_slist_append(headers, psprintf("Authorization: Bearer %s", t->token));
		else
			userpwd = basic;
		if (accept)
			headers = curl_slist_append(headers, psprintf("Accept: %s", accept));
		ok = perform(c, url, head, headers, userpwd, NULL, NULL, error);
		curl_slist_free_all(headers);
		if (!ok)
			return NULL;
		if (c->resp.status != 401 || attempt > 0)
			break;
		/* a 401: a bearer challenge names the realm (again), else renew ECR's */
		if (c->challenge && pg_strncasecmp(c->challenge, "bearer ", 7) == 0)
		{
			char	   *realm = challenge_param(c->challenge, "realm");
			char	   *service = challenge_param(c->challenge, "service");
			char	   *cscope = challenge_param(c->challenge, "scope");

			if (realm == NULL || strncmp(realm, "http", 4) != 0)
				break;
			c->realm = MemoryContextStrdup(c->cxt, realm);
			c->service = service ? MemoryContextStrdup(c->cxt, service) : NULL;
			/* renewed, or new: the next attempt finds it */
			if (fetch_token(c, cscope ? cscope : scope, scope, basic, error) == NULL)
				return NULL;
		}
		else if (!ecr)
			break;
	}
	return &c->resp;
}

/* See oci.h. */
List *
oci_json_strings(OciClient *c, const char *key, bool *ok)
{
	struct json_object *doc = body_json(c);
	struct json_object *list;
	List	   *out = NIL;

	*ok = doc != NULL;
	/* a missing or null member is an empty list (a repository without tags) */
	if (doc && json_object_object_get_ex(doc, key, &list) && !json_object_is_type(list, json_type_null))
	{
		*ok = json_object_is_type(list, json_type_array);
		for (size_t i = 0; *ok && i < json_object_array_length(list); i++)
		{
			struct json_object *v = json_object_array_get_idx(list, i);

			if (json_object_is_type(v, json_type_string))
				out = lappend(out, pstrdup(json_object_get_string(v)));
			else
				*ok = false;
		}
	}
	if (doc)
		json_object_put(doc);
	return out;
}

/* See oci.h. */
char *
oci_describe(OciClient *c, const char *what)
{
	struct json_object *doc = c->resp.body.len > 0 ? body_json(c) : NULL;
	struct json_object *errors;
	char	   *s = NULL;

	/* the Distribution API's {"errors": [{"code": ..., "message": ...}]} */
	if (doc && json_object_object_get_ex(doc, "errors", &errors) &&
		json_object_is_type(errors, json_type_array) && json_object_array_length(errors) > 0)
	{
		struct json_object *e = json_object_array_get_idx(errors, 0);
		char	   *code = json_object_is_type(e, json_type_object) ? json_string(e, "code") : NULL;
		char	   *msg = json_object_is_type(e, json_type_object) ? json_string(e, "message") : NULL;

		s = psprintf("%s: HTTP %ld %s: %s", what, c->resp.status, code ? code : "", msg ? msg : "");
	}
	/* AWS's {"__type": ..., "message": ...} */
	else if (doc && json_object_object_get_ex(doc, "__type", &errors))
		s = psprintf("%s: HTTP %ld %s: %s", what, c->resp.status, json_object_get_string(errors),
					 json_string(doc, "message") ? json_string(doc, "message") : "");
	if (doc)
		json_object_put(doc);
	if (s == NULL && c->resp.status == 401)
		s = psprintf("%s: HTTP 401: the registry refused the credentials%s", what,
					 c->auth.username[0] || c->auth.ecr_region[0] ? "" : " (the source has none)");
	return s ? s : psprintf("%s: HTTP %ld", what, c->resp.status);
}
