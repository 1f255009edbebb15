/*
 * oci.h
 *	  The oci kind: a registry's tags read through the OCI Distribution API.
 *
 *	  oci_source.c  the scan: repositories, tags and their manifest
 *	                digests, compared with cdviz.oci_tags; the events of
 *	                new and moved tags stored with their progress rows
 *	  oci_client.c  the registry's HTTP client and its authentication:
 *	                none, basic, the registry token flow (a bearer token
 *	                from the realm a 401 names) and AWS ECR (basic
 *	                credentials from a SigV4-signed GetAuthorizationToken)
 */
#ifndef CDVIZ_SOURCES_OCI_H
#define CDVIZ_SOURCES_OCI_H

#include "postgres.h"

#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "utils/timestamp.h"

/* How the client authenticates, from the source's options. */
typedef struct OciAuth
{
	const char *username;		/* "" for none */
	const char *password;
	/* AWS ECR when ecr_region is not "" */
	const char *ecr_region;
	const char *ecr_endpoint;	/* "" for https://api.ecr.<region>.amazonaws.com */
	const char *access_key_id;
	const char *secret_access_key;
	const char *session_token;
} OciAuth;

typedef struct OciClient OciClient;

/* The answer to the last request. */
typedef struct OciResponse
{
	long		status;			/* HTTP status, 0 when there was no answer */
	StringInfoData body;		/* GET: the body (bounded) */
	char		digest[128];	/* Docker-Content-Digest */
	char		content_type[128];
	char	   *next;			/* the Link header's rel="next" target, or NULL */
} OciResponse;

/*
 * A client of the registry at base (scheme://host[:port]) that lives as
 * long as cxt: its bearer tokens and ECR credentials are kept across
 * scans until they expire.  who names the source in messages.
 */
extern OciClient *oci_client_create(MemoryContext cxt, const char *base, const OciAuth *auth,
									const char *who);

/*
 * GET (head false) or HEAD the registry's path (from /v2/..., or an
 * absolute URL a Link header gave) with the Accept header accept (or
 * NULL), authenticating as the registry asks; repository names the scope
 * of a bearer token (NULL: the catalog).  Returns the answer, whatever its
 * status, or NULL with *error when there was none (network, the
 * credentials could not be had, or an absolute URL outside the
 * registry).  The answer is valid until the next
 * request.
 */
extern OciResponse *oci_request(OciClient *c, bool head, const char *path, const char *accept,
								const char *repository, char **error);

/*
 * The strings of the array member key of the last answer, a JSON object;
 * *ok false when it is not such an object.  A missing or null member is
 * an empty list.
 */
extern List *oci_json_strings(OciClient *c, const char *key, bool *ok);

/* A one-line account of an answer that was not the one expected. */
extern char *oci_describe(OciClient *c, const char *what);

#endif							/* CDVIZ_SOURCES_OCI_H */
