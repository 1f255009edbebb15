/*
 * hmac_sha256.c
 *	  HMAC-SHA256 with PostgreSQL's own pg_hmac (OpenSSL when the server
 *	  has it), so no other crypto library is needed.
 */
#include "postgres.h"

#include "common/hmac.h"
#include "utils/resowner.h"

#include "common/hmac_sha256.h"

bool
cdviz_hmac_sha256_hex(const char *secret, const char *data, size_t len, char *hex)
{
	uint8		mac[PG_SHA256_DIGEST_LENGTH];
	pg_hmac_ctx *ctx;
	bool		ok;
	static ResourceOwner owner = NULL;
	ResourceOwner saved = CurrentResourceOwner;

	/*
	 * With OpenSSL the HMAC context is remembered by the current resource
	 * owner; between transactions a worker has none, so it gets its own.
	 */
	if (owner == NULL)
		owner = ResourceOwnerCreate(NULL, "cdviz signatures");
	CurrentResourceOwner = owner;
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
	if (!ok)
		return false;
	for (int i = 0; i < PG_SHA256_DIGEST_LENGTH; i++)
		snprintf(hex + i * 2, 3, "%02x", mac[i]);
	return true;
}
