/*
 * webhook_identity.c
 *	  Who a delivery is: its key, stable across redeliveries (the ids of
 *	  its events are made from it), the name its tool gives it, and its
 *	  headers as they are kept: names in lower case, no credentials.
 */
#include "postgres.h"

#include "catalog/pg_collation.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/formatting.h"
#include "utils/jsonb.h"

#include "common/hmac_sha256.h"
#include "webhook/webhook_int.h"

/* Hex SHA-256 of the body's jsonb text in UTF-8. */
static char *
body_hash(Jsonb *body)
{
	char	   *text = JsonbToCString(NULL, &body->root, VARSIZE(body));
	char	   *utf8 = pg_server_to_any(text, strlen(text), PG_UTF8);
	char	   *hex = palloc(CDVIZ_HMAC_HEX_LEN + 1);

	if (!cdviz_sha256_hex(utf8, strlen(utf8), hex))
		elog(ERROR, "could not compute a SHA-256 digest");
	return hex;
}

/*
 * The identity of a delivery, stable across redeliveries (see the comment
 * of cdviz.webhook_delivery_key); headers in lower case.  NULL when only
 * the body could tell and there is none.
 */
char *
cdviz_webhook_key(Jsonb *headers, Jsonb *body)
{
	JsonbContainer *h = &headers->root;
	char	   *v;

	if ((v = cdviz_webhook_member_text(h, "x-github-delivery")) != NULL)
	{
		char	   *hook = cdviz_webhook_member_text(h, "x-github-hook-id");

		return psprintf("github:%s:%s", hook ? hook : "", v);
	}
	if ((v = cdviz_webhook_member_text(h, "idempotency-key")) != NULL ||
		(v = cdviz_webhook_member_text(h, "x-gitlab-event-uuid")) != NULL)
		return psprintf("gitlab:%s", v);
	if ((v = cdviz_webhook_member_text(h, "ce-id")) != NULL)
	{
		char	   *source = cdviz_webhook_member_text(h, "ce-source");

		return psprintf("ce:%s:%s", source ? source : "", v);
	}
	return body ? psprintf("sha256:%s", body_hash(body)) : NULL;
}

/* What the tool calls the delivery: X-GitHub-Event.action, ... or NULL. */
char *
cdviz_webhook_event_name(Jsonb *headers, Jsonb *body)
{
	JsonbContainer *h = &headers->root;
	char	   *v;

	if ((v = cdviz_webhook_member_text(h, "x-github-event")) != NULL)
	{
		char	   *action = cdviz_webhook_member_text(&body->root, "action");

		return action ? psprintf("%s.%s", v, action) : v;
	}
	if ((v = cdviz_webhook_member_text(h, "x-gitlab-event")) != NULL ||
		(v = cdviz_webhook_member_text(h, "ce-type")) != NULL ||
		(v = cdviz_webhook_member_text(h, "x-event-name")) != NULL)
		return v;
	if (cdviz_webhook_member_object(&body->root, "app") && cdviz_webhook_has_member(&body->root, "context"))
		return pstrdup("argocd");
	return cdviz_webhook_member_text(&body->root, "object_kind");
}

/* See webhook.h. */
bool
cdviz_webhook_is_credential_header(const char *name)
{
	return pg_strcasecmp(name, "Authorization") == 0 ||
		pg_strcasecmp(name, "Proxy-Authorization") == 0 ||
		pg_strcasecmp(name, "Cookie") == 0 ||
		pg_strcasecmp(name, "X-Gitlab-Token") == 0 ||
		pg_strcasecmp(name, "X-Hub-Signature") == 0 ||
		pg_strcasecmp(name, "X-Hub-Signature-256") == 0 ||
		pg_strcasecmp(name, "X-Signature-256") == 0;
}

/* See webhook.h. */
Jsonb *
cdviz_webhook_clean_headers(Jsonb *headers)
{
	JsonbParseState *st = NULL;
	JsonbValue *res;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	bool		skip = false;

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	if (headers != NULL && JB_ROOT_IS_OBJECT(headers))
	{
		it = JsonbIteratorInit(&headers->root);
		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			if (tok == WJB_KEY)
			{
				char	   *key = pnstrdup(v.val.string.val, v.val.string.len);
				char	   *lower = str_tolower(v.val.string.val, v.val.string.len, DEFAULT_COLLATION_OID);

				/* (the original too: a locale may lower-case I to dotless ı) */
				skip = cdviz_webhook_is_credential_header(key) ||
					cdviz_webhook_is_credential_header(lower);
				if (!skip)
					cdviz_webhook_push_string(&st, WJB_KEY, lower);
			}
			else if (tok == WJB_VALUE && !skip)
				pushJsonbValue(&st, WJB_VALUE, &v);
		}
	}
	res = pushJsonbValue(&st, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(res);
}
