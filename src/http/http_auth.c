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


#include "http/http.h"
#include "common/hmac_sha256.h"

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
	char		hex[CDVIZ_HMAC_HEX_LEN + 1];
	char		lower[CDVIZ_HMAC_HEX_LEN + 1];
	const char *given;
	size_t		glen;

	if (header == NULL || pg_strncasecmp(header, "sha256=", 7) != 0)
		return false;
	given = header + 7;
	glen = strlen(given);
	if (glen != CDVIZ_HMAC_HEX_LEN || !cdviz_hmac_sha256_hex(secret, body, len, hex))
		return false;
	/* hex digits in either case are the same signature */
	for (size_t i = 0; i < glen; i++)
		lower[i] = pg_ascii_tolower((unsigned char) given[i]);
	lower[glen] = '\0';
	return http_equal_constant_time(lower, glen, hex, CDVIZ_HMAC_HEX_LEN);
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
