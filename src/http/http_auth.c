/*
 * http_auth.c
 *	  Who may post events: a bearer token (cdviz.http_auth_token) and/or an
 *	  HMAC-SHA256 signature of the body (cdviz.http_hmac_secret), the
 *	  X-Signature-256: sha256=<hex> header GitHub and others send.
 *
 * The HMAC comes from PostgreSQL's common/hmac.h, which the server already
 * carries for SCRAM: no extra library, and it uses OpenSSL when the server
 * was built with it.  Both comparisons take a time that does not depend on
 * where the inputs first differ, so a client cannot guess a secret byte
 * by byte from response times.
 */
#include "postgres.h"

#include "common/hmac.h"
#include "common/sha2.h"
#include "utils/resowner.h"

#include "http/http.h"

/* Equal strings, in time independent of their contents. */
bool
http_equal_constant_time(const char *a, size_t alen, const char *b, size_t blen)
{
	volatile unsigned char diff = (alen != blen);
	size_t		n = Max(alen, blen);

	for (size_t i = 0; i < n; i++)
		diff |= (unsigned char) ((i < alen ? a[i] : 0) ^ (i < blen ? b[i] : 0));
	return diff == 0;
}

/* Whether header is "Bearer <token>" (scheme case-insensitive). */
static bool
bearer_ok(const char *header, const char *token)
{
	const char *given;

	if (header == NULL || pg_strncasecmp(header, "Bearer ", 7) != 0)
		return false;
	given = header + 7;
	while (*given == ' ')
		given++;
	return http_equal_constant_time(given, strlen(given), token, strlen(token));
}

/*
 * Whether header is "sha256=<hex HMAC-SHA256 of body under secret>" (the
 * receiver's X-Signature-256 and GitHub's X-Hub-Signature-256 alike).
 * Works inside a transaction or outside one.
 */
bool
http_signature_ok(const char *header, const char *secret, const char *body, size_t len)
{
	uint8		mac[PG_SHA256_DIGEST_LENGTH];
	char		hex[PG_SHA256_DIGEST_LENGTH * 2 + 1];
	pg_hmac_ctx *ctx;
	const char *given;
	bool		ok;
	static ResourceOwner owner = NULL;
	ResourceOwner saved = CurrentResourceOwner;

	if (header == NULL || pg_strncasecmp(header, "sha256=", 7) != 0)
		return false;
	given = header + 7;

	/*
	 * With OpenSSL the server's HMAC context is remembered by the current
	 * resource owner; outside a transaction the worker needs its own.
	 */
	if (owner == NULL)
		owner = ResourceOwnerCreate(NULL, "cdviz http signatures");
	CurrentResourceOwner = owner;
	ctx = pg_hmac_create(PG_SHA256);
	if (ctx == NULL)
	{
		CurrentResourceOwner = saved;
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	}
	ok = pg_hmac_init(ctx, (const uint8 *) secret, strlen(secret)) == 0 &&
		pg_hmac_update(ctx, (const uint8 *) body, len) == 0 &&
		pg_hmac_final(ctx, mac, sizeof(mac)) == 0;
	pg_hmac_free(ctx);
	CurrentResourceOwner = saved;
	if (!ok)
		return false;
	for (int i = 0; i < PG_SHA256_DIGEST_LENGTH; i++)
		snprintf(hex + i * 2, 3, "%02x", mac[i]);
	/* hex digits in either case are the same signature */
	{
		char		lower[PG_SHA256_DIGEST_LENGTH * 2 + 1];
		size_t		glen = strlen(given);

		if (glen != sizeof(lower) - 1)
			return false;
		for (size_t i = 0; i < glen; i++)
			lower[i] = pg_ascii_tolower((unsigned char) given[i]);
		lower[glen] = '\0';
		return http_equal_constant_time(lower, glen, hex, sizeof(hex) - 1);
	}
}

/*
 * Check a request's credentials against the settings of the moment (they
 * change on reload).  When both a token and a secret are set, both are
 * required.  *why names what failed.
 */
bool
http_auth_check(const char *authorization, const char *signature,
				const char *body, size_t body_len, const char **why)
{
	if (cdviz_http_auth_token && cdviz_http_auth_token[0] != '\0' &&
		!bearer_ok(authorization, cdviz_http_auth_token))
	{
		*why = authorization ? "the bearer token is not valid"
			: "an Authorization: Bearer header is required";
		return false;
	}
	if (cdviz_http_hmac_secret && cdviz_http_hmac_secret[0] != '\0' &&
		!http_signature_ok(signature, cdviz_http_hmac_secret, body, body_len))
	{
		*why = signature ? "the X-Signature-256 signature does not match the body"
			: "an X-Signature-256: sha256=<hex HMAC-SHA256 of the body> header is required";
		return false;
	}
	return true;
}
