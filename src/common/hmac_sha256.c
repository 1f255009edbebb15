/*
 * hmac_sha256.c
 *	  HMAC-SHA256 and SHA-256 with PostgreSQL's own pg_hmac and
 *	  pg_cryptohash (OpenSSL when the server has it), so no other crypto
 *	  library is needed.
 */
#include "postgres.h"

#include "common/cryptohash.h"
#include "common/hmac.h"
#include "utils/resowner.h"

#include "common/hmac_sha256.h"

/*
 * With OpenSSL a hash or HMAC context is remembered by the current resource
 * owner; between transactions a worker has none, so the contexts made here
 * belong to one of ours.  Returns the owner to put back.
 */
static ResourceOwner
use_own_owner(void)
{
	static ResourceOwner owner = NULL;
	ResourceOwner saved = CurrentResourceOwner;

	if (owner == NULL)
		owner = ResourceOwnerCreate(NULL, "cdviz digests");
	CurrentResourceOwner = owner;
	return saved;
}

static void
to_hex(const uint8 *digest, char *hex)
{
	for (int i = 0; i < PG_SHA256_DIGEST_LENGTH; i++)
		snprintf(hex + i * 2, 3, "%02x", digest[i]);
}

bool
cdviz_hmac_sha256_hex(const char *secret, const char *data, size_t len, char *hex)
{
	uint8		mac[PG_SHA256_DIGEST_LENGTH];
	pg_hmac_ctx *ctx;
	bool		ok;
	ResourceOwner saved = use_own_owner();

	ctx = pg_hmac_create(PG_SHA256);
	if (ctx == NULL)
	{
		CurrentResourceOwner = saved;
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	}
	ok = pg_hmac_init(ctx, (const uint8 *) secret, strlen(secret)) == 0 &&
		pg_hmac_update(ctx, (const uint8 *) data, len) == 0 &&
		pg_hmac_final(ctx, mac, sizeof(mac)) == 0;
	pg_hmac_free(ctx);
	CurrentResourceOwner = saved;
	if (ok)
		to_hex(mac, hex);
	return ok;
}

bool
cdviz_sha256_hex(const char *data, size_t len, char *hex)
{
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	pg_cryptohash_ctx *ctx;
	bool		ok;
	ResourceOwner saved = use_own_owner();

	ctx = pg_cryptohash_create(PG_SHA256);
	if (ctx == NULL)
	{
		CurrentResourceOwner = saved;
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	}
	ok = pg_cryptohash_init(ctx) == 0 &&
		pg_cryptohash_update(ctx, (const uint8 *) data, len) == 0 &&
		pg_cryptohash_final(ctx, digest, sizeof(digest)) == 0;
	pg_cryptohash_free(ctx);
	CurrentResourceOwner = saved;
	if (ok)
		to_hex(digest, hex);
	return ok;
}
