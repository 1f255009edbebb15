/*
 * hmac_sha256.h
 *	  HMAC-SHA256 as hex, for what every worker signs or checks: the HTTP
 *	  receiver's X-Signature-256, GitHub's X-Hub-Signature-256 and the
 *	  signature the dispatcher's HTTP sinks send; and plain SHA-256 as hex,
 *	  for the digests workers compute (a webhook delivery's key, a
 *	  registry manifest's digest).
 */
#ifndef CDVIZ_COMMON_HMAC_SHA256_H
#define CDVIZ_COMMON_HMAC_SHA256_H

#include "common/sha2.h"

#define CDVIZ_HMAC_HEX_LEN (PG_SHA256_DIGEST_LENGTH * 2)

/*
 * hex (CDVIZ_HMAC_HEX_LEN + 1 bytes) gets the lowercase hex HMAC-SHA256 of
 * data under secret.  False when the computation failed.  Works inside a
 * transaction or outside one.
 */
extern bool cdviz_hmac_sha256_hex(const char *secret, const char *data, size_t len,
								  char *hex);

/*
 * hex (CDVIZ_HMAC_HEX_LEN + 1 bytes) gets the lowercase hex SHA-256 of
 * data.  False when the computation failed.  Works inside a transaction or
 * outside one.
 */
extern bool cdviz_sha256_hex(const char *data, size_t len, char *hex);

#endif							/* CDVIZ_COMMON_HMAC_SHA256_H */
