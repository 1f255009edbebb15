/*
 * poll_s3.c
 *	  The S3 source: list the bucket (ListObjectsV2, page after page),
 *	  download each new or changed object and read it like a file.
 *
 * Requests are signed by libcurl (CURLOPT_AWS_SIGV4).  An object is
 * downloaded into an anonymous temporary file (bounded memory whatever its
 * size), then poll_read.c stores its events with the object's progress
 * row (key, ETag, offset) in the same transactions.  An object whose ETag
 * changed is read again; its events that were stored before deduplicate.
 *
 * Failures (network, 403, 5xx) end the pass with one log line and make
 * the next pass wait longer, doubling up to ten minutes, so a wrong key or
 * a dead server never turns into a tight loop.  A transfer watches for
 * SIGTERM through the progress callback and stops at once.
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

#include "catalog/pg_type.h"
#include "common/file_perm.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/datetime.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "core/jsonl.h"
#include "poll/poll.h"
#include "common/worker.h"

/* Largest listing page accepted (S3 pages of 1,000 keys are ~300 kB). */
#define MAX_LISTING_BYTES (32 * 1024 * 1024)
/* S3 keys are at most 1,024 bytes of UTF-8. */
#define MAX_KEY 1025

/* SHA-256 of an empty body: what a GET carries in x-amz-content-sha256. */
#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static int	failures;			/* consecutive failed passes */
static bool curl_ready;

/* A progress row of cdviz.s3_objects. */
typedef struct S3Row
{
	char		key[MAX_KEY];	/* hash key */
	char		etag[128];
	char		status[16];
	int64		offset;
	int64		lines;
	uint64		hash;
} S3Row;

/* An object of the listing that must be read. */
typedef struct S3Pending
{
	char	   *key;
	char	   *etag;
	int64		size;
	int64		mtime_us;		/* LastModified, microseconds since 1970 */
	S3Row	   *row;			/* its progress row, or NULL */
} S3Pending;

/* One pass. */
typedef struct S3Pass
{
	const PollConfig *cfg;
	CURL	   *curl;
	char	   *base;			/* scheme://host[:port] (with bucket when virtual-hosted) */
	char	   *bucket;
	char	   *prefix;
	char	   *source;			/* s3://bucket/prefix */
	HTAB	   *rows;
	List	   *pending;
	long		http_status;
	StringInfoData body;		/* a listing, or an error document */
	int			fd;				/* download target */
	int64		downloaded;
	char		etag[128];		/* ETag header of the last GET */
	char		curl_error[CURL_ERROR_SIZE];
} S3Pass;

/* ------------------------------------------------------------------ */
/* HTTP                                                                */
/* ------------------------------------------------------------------ */

static size_t
to_buffer(char *data, size_t size, size_t nmemb, void *arg)
{
	S3Pass	   *p = (S3Pass *) arg;
	size_t		n = size * nmemb;

	if (p->body.len + n > MAX_LISTING_BYTES)
		return 0;
	appendBinaryStringInfo(&p->body, data, (int) n);
	return n;
}

/* Downloads go to the temporary file; error bodies to the buffer. */
static size_t
to_file(char *data, size_t size, size_t nmemb, void *arg)
{
	S3Pass	   *p = (S3Pass *) arg;
	size_t		n = size * nmemb;
	size_t		done = 0;
	long		status = 0;

	curl_easy_getinfo(p->curl, CURLINFO_RESPONSE_CODE, &status);
	if (status != 200)
		return to_buffer(data, size, nmemb, arg);
	while (done < n)
	{
		ssize_t		w = write(p->fd, data + done, n - done);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return 0;
		done += (size_t) w;
	}
	p->downloaded += (int64) n;
	return n;
}

/* Keep the ETag response header. */
static size_t
on_header(char *data, size_t size, size_t nmemb, void *arg)
{
	S3Pass	   *p = (S3Pass *) arg;
	size_t		n = size * nmemb;

	if (n > 5 && pg_strncasecmp(data, "etag:", 5) == 0)
	{
		char	   *v = data + 5;
		size_t		len = n - 5;

		while (len > 0 && (*v == ' ' || *v == '"'))
			v++, len--;
		while (len > 0 && (v[len - 1] == '\r' || v[len - 1] == '\n' ||
						   v[len - 1] == ' ' || v[len - 1] == '"'))
			len--;
		if (len < sizeof(p->etag))
		{
			memcpy(p->etag, v, len);
			p->etag[len] = '\0';
		}
	}
	return n;
}

/* Text of one child element of node, or NULL. */
static char *
child_text(xmlNodePtr node, const char *name)
{
	for (xmlNodePtr c = node->children; c; c = c->next)
	{
		if (c->type == XML_ELEMENT_NODE && strcmp((const char *) c->name, name) == 0)
		{
			xmlChar    *t = xmlNodeGetContent(c);
			char	   *s = pstrdup(t ? (const char *) t : "");

			xmlFree(t);
			return s;
		}
	}
	return NULL;
}

/* A one-line account of a failed request, with S3's own Code and Message. */
static char *
describe_failure(S3Pass *p, CURLcode rc, const char *what)
{
	if (rc != CURLE_OK)
		return psprintf("%s: %s", what, p->curl_error[0] ? p->curl_error : curl_easy_strerror(rc));
	if (p->body.len > 0)
	{
		xmlDocPtr	doc = xmlReadMemory(p->body.data, p->body.len, NULL, NULL,
										XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
		xmlNodePtr	root = doc ? xmlDocGetRootElement(doc) : NULL;

		if (root && strcmp((const char *) root->name, "Error") == 0)
		{
			char	   *code = child_text(root, "Code");
			char	   *msg = child_text(root, "Message");
			char	   *s = psprintf("%s: HTTP %ld %s: %s", what, p->http_status,
									 code ? code : "", msg ? msg : "");

			xmlFreeDoc(doc);
			return s;
		}
		if (doc)
			xmlFreeDoc(doc);
	}
	return psprintf("%s: HTTP %ld", what, p->http_status);
}

/* Perform a signed GET of url; the body goes where write_fn says. */
static CURLcode
s3_get(S3Pass *p, const char *url, curl_write_callback write_fn)
{
	struct curl_slist *headers = NULL;
	char	   *sigv4 = psprintf("aws:amz:%s:s3", p->cfg->region);
	char	   *userpwd = psprintf("%s:%s", p->cfg->access_key_id, p->cfg->secret_access_key);
	CURLcode	rc;

	resetStringInfo(&p->body);
	p->curl_error[0] = '\0';
	p->etag[0] = '\0';
	p->http_status = 0;
	/* libcurl signs but does not add the payload hash S3 requires */
	headers = curl_slist_append(headers, "x-amz-content-sha256: " EMPTY_SHA256);
	curl_easy_reset(p->curl);
	curl_easy_setopt(p->curl, CURLOPT_URL, url);
	curl_easy_setopt(p->curl, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(p->curl, CURLOPT_AWS_SIGV4, sigv4);
	curl_easy_setopt(p->curl, CURLOPT_USERPWD, userpwd);
	poll_curl_options(p->curl, p->curl_error, write_fn, on_header, p, "cdviz-poller");
	rc = curl_easy_perform(p->curl);
	curl_easy_getinfo(p->curl, CURLINFO_RESPONSE_CODE, &p->http_status);
	curl_slist_free_all(headers);
	pfree(sigv4);
	pfree(userpwd);
	/* SIGTERM during the transfer: exit now */
	CHECK_FOR_INTERRUPTS();
	return rc;
}

/* URL-encode s; '/' kept when keep_slash (object keys in paths). */
static char *
url_encode(CURL *curl, const char *s, bool keep_slash)
{
	StringInfoData out;

	initStringInfo(&out);
	while (*s)
	{
		const char *slash = keep_slash ? strchr(s, '/') : NULL;
		size_t		len = slash ? (size_t) (slash - s) : strlen(s);
		char	   *e = curl_easy_escape(curl, s, (int) len);

		appendStringInfoString(&out, e);
		curl_free(e);
		s += len;
		if (slash)
		{
			appendStringInfoChar(&out, '/');
			s++;
		}
	}
	return out.data;
}

/* Base URL of the bucket: path style or virtual-hosted. */
static char *
bucket_url(S3Pass *p)
{
	char	   *endpoint;
	char	   *scheme_end;
	size_t		len;

	if (p->cfg->endpoint[0] == '\0')
		endpoint = psprintf("https://s3.%s.amazonaws.com", p->cfg->region);
	else if (strstr(p->cfg->endpoint, "://") == NULL)
		endpoint = psprintf("https://%s", p->cfg->endpoint);
	else
		endpoint = pstrdup(p->cfg->endpoint);
	len = strlen(endpoint);
	while (len > 0 && endpoint[len - 1] == '/')
		endpoint[--len] = '\0';
	if (p->cfg->path_style)
		return psprintf("%s/%s", endpoint, p->bucket);
	scheme_end = strstr(endpoint, "://") + 3;
	return psprintf("%.*s%s.%s", (int) (scheme_end - endpoint), endpoint, p->bucket, scheme_end);
}

/* ------------------------------------------------------------------ */
/* progress rows                                                       */
/* ------------------------------------------------------------------ */

/* PollRowFill of cdviz.s3_objects. */
static void
s3_fill_row(void *entry, HeapTuple tup, TupleDesc desc)
{
	S3Row	   *row = (S3Row *) entry;
	bool		isnull;

	strlcpy(row->etag, SPI_getvalue(tup, desc, 2), sizeof(row->etag));
	strlcpy(row->status, SPI_getvalue(tup, desc, 3), sizeof(row->status));
	row->offset = DatumGetInt64(SPI_getbinval(tup, desc, 4, &isnull));
	row->lines = DatumGetInt64(SPI_getbinval(tup, desc, 5, &isnull));
	row->hash = (uint64) DatumGetInt64(SPI_getbinval(tup, desc, 6, &isnull));
}

/* Arguments of save_s3_progress(), through PollFile.arg. */
typedef struct S3ObjectArg
{
	S3Pass	   *pass;
	S3Pending  *pending;
	const char *etag;
	const char *error;			/* for note_object() */
} S3ObjectArg;

/* PollSaveFunc of the S3 source: upsert the object's row. */
static void
save_s3_progress(PollFile *f, const PollDelta *d)
{
	S3ObjectArg *a = (S3ObjectArg *) f->arg;
	Oid			types[12] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, INT8OID, INT8OID, INT8OID,
	INT8OID, TEXTOID, INT8OID, INT8OID, INT8OID};
	Datum		args[12];

	args[0] = CStringGetTextDatum(a->pass->bucket);
	args[1] = CStringGetTextDatum(a->pending->key);
	args[2] = CStringGetTextDatum(a->pass->source);
	args[3] = CStringGetTextDatum(a->etag);
	args[4] = Int64GetDatum((int64) f->size);
	poll_delta_args(args + 5, d);
	if (SPI_execute_with_args("INSERT INTO cdviz.s3_objects AS o (bucket, key, source, etag, size, "
							  " read_offset, lines_read, prefix_hash, status, events, duplicates, rejected, "
							  " first_read_at, last_read_at) "
							  "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, now(), now()) "
							  "ON CONFLICT (bucket, key) DO UPDATE SET source = excluded.source, "
							  " etag = excluded.etag, size = excluded.size, "
							  " read_offset = excluded.read_offset, lines_read = excluded.lines_read, "
							  " prefix_hash = excluded.prefix_hash, status = excluded.status, "
							  " events = o.events + excluded.events, "
							  " duplicates = o.duplicates + excluded.duplicates, "
							  " rejected = o.rejected + excluded.rejected, "
							  " first_read_at = coalesce(o.first_read_at, now()), last_read_at = now(), "
							  " last_error = NULL, last_error_at = NULL",
							  12, types, args, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "%s: saving progress of s3://%s/%s failed", POLL_WHO,
			 a->pass->bucket, a->pending->key);
}

/* Record why an object could not be read. */
static void
note_object(void *arg)
{
	S3ObjectArg *a = (S3ObjectArg *) arg;
	Oid			types[6] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, INT8OID, TEXTOID};
	Datum		args[6];

	args[0] = CStringGetTextDatum(a->pass->bucket);
	args[1] = CStringGetTextDatum(a->pending->key);
	args[2] = CStringGetTextDatum(a->pass->source);
	args[3] = CStringGetTextDatum(a->pending->etag);
	args[4] = Int64GetDatum(a->pending->size);
	args[5] = CStringGetTextDatum(a->error);
	if (SPI_execute_with_args("INSERT INTO cdviz.s3_objects AS o (bucket, key, source, etag, size, "
							  " prefix_hash, status, last_error, last_error_at) "
							  "VALUES ($1, $2, $3, $4, $5, 0, 'error', $6, now()) "
							  "ON CONFLICT (bucket, key) DO UPDATE SET last_error = $6, last_error_at = now()",
							  6, types, args, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "%s: updating cdviz.s3_objects failed", POLL_WHO);
}

/* ------------------------------------------------------------------ */
/* listing                                                             */
/* ------------------------------------------------------------------ */

/*
 * A listing's LastModified (2024-05-01T10:20:30.000Z, always UTC) in
 * microseconds since 1970; the time of the listing when it is missing or
 * unreadable, which S3 servers do not leave it.
 */
static int64
last_modified_us(const char *text)
{
	struct pg_tm tm;
	int			ms = 0;
	Timestamp	ts;

	memset(&tm, 0, sizeof(tm));
	if (text == NULL ||
		sscanf(text, "%d-%d-%dT%d:%d:%d.%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
			   &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) < 6 ||
		ms < 0 || ms > 999 ||
		tm2timestamp(&tm, (fsec_t) ms * 1000, NULL, &ts) != 0)
		ts = GetCurrentTimestamp();
	return (int64) ts + (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY;
}

/*
 * Parse one ListObjectsV2 page: add what must be read to the pending list;
 * return the continuation token, or NULL on the last page.
 */
static char *
parse_listing(S3Pass *p, char **error)
{
	xmlDocPtr	doc;
	xmlNodePtr	root;
	char	   *truncated;
	char	   *token = NULL;

	doc = xmlReadMemory(p->body.data, p->body.len, NULL, NULL,
						XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	root = doc ? xmlDocGetRootElement(doc) : NULL;
	if (root == NULL || strcmp((const char *) root->name, "ListBucketResult") != 0)
	{
		*error = psprintf("listing s3://%s/%s: the answer is not a ListBucketResult document",
						  p->bucket, p->prefix);
		if (doc)
			xmlFreeDoc(doc);
		return NULL;
	}
	for (xmlNodePtr c = root->children; c; c = c->next)
	{
		char	   *key;
		char	   *etag;
		char	   *size;
		const char *last;
		S3Row	   *row;

		if (c->type != XML_ELEMENT_NODE || strcmp((const char *) c->name, "Contents") != 0)
			continue;
		key = child_text(c, "Key");
		etag = child_text(c, "ETag");
		size = child_text(c, "Size");
		if (key == NULL || strlen(key) >= MAX_KEY || key[strlen(key) - 1] == '/')
			continue;
		last = strrchr(key, '/');
		if (!poll_name_matches(last ? last + 1 : key, p->cfg->pattern))
			continue;
		/* ETags come quoted */
		if (etag == NULL)
			etag = pstrdup("");
		if (etag[0] == '"')
			etag++;
		if (*etag && etag[strlen(etag) - 1] == '"')
			etag[strlen(etag) - 1] = '\0';
		row = hash_search(p->rows, key, HASH_FIND, NULL);
		if (row && strcmp(row->etag, etag) == 0 &&
			(strcmp(row->status, "read") == 0 || strcmp(row->status, "rejected") == 0))
			continue;
		{
			S3Pending	   *t = palloc(sizeof(S3Pending));

			t->key = key;
			t->etag = etag;
			t->size = size ? strtoll(size, NULL, 10) : 0;
			t->mtime_us = last_modified_us(child_text(c, "LastModified"));
			t->row = row;
			p->pending = lappend(p->pending, t);
		}
	}
	truncated = child_text(root, "IsTruncated");
	if (truncated && strcmp(truncated, "true") == 0)
	{
		token = child_text(root, "NextContinuationToken");
		if (token == NULL || token[0] == '\0')
			*error = psprintf("listing s3://%s/%s: truncated page without NextContinuationToken",
							  p->bucket, p->prefix);
	}
	xmlFreeDoc(doc);
	return token;
}

/* List the whole prefix, page after page; false (with *error) on failure. */
static bool
list_objects(S3Pass *p, char **error)
{
	char	   *token = NULL;
	int			pages = 0;

	do
	{
		StringInfoData url;
		CURLcode	rc;

		initStringInfo(&url);
		appendStringInfo(&url, "%s?list-type=2", p->base);
		if (token)
			appendStringInfo(&url, "&continuation-token=%s", url_encode(p->curl, token, false));
		if (p->prefix[0])
			appendStringInfo(&url, "&prefix=%s", url_encode(p->curl, p->prefix, false));
		rc = s3_get(p, url.data, to_buffer);
		if (rc != CURLE_OK || p->http_status != 200)
		{
			*error = describe_failure(p, rc, psprintf("listing s3://%s/%s", p->bucket, p->prefix));
			return false;
		}
		*error = NULL;
		token = parse_listing(p, error);
		if (*error)
			return false;
		pages++;
	} while (token != NULL);
	elog(DEBUG1, "%s: s3://%s/%s: %d listing pages, %d objects to read", POLL_WHO,
		 p->bucket, p->prefix, pages, list_length(p->pending));
	return true;
}

/* ------------------------------------------------------------------ */
/* objects                                                             */
/* ------------------------------------------------------------------ */

/*
 * An empty anonymous file in the server's temporary folder, for one object.
 *
 * The object is read back by the same reader as a folder's files
 * (src/core/jsonl.c), which reads a kernel descriptor with pread() across
 * the transactions that store its chunks.  BufFileCreateTemp() offers no
 * descriptor and reads sequentially, and a virtual File from
 * OpenTemporaryFile() may lose its descriptor to another file meanwhile;
 * so a plain descriptor, counted against the server's limit with
 * AcquireExternalFD().  Unlinked at once, it is gone with the descriptor
 * whatever happens; its name in pgsql_tmp is also what the server removes
 * at start-up.  close_temp_file() closes it on every path.
 */
static int
temp_file(void)
{
	char	   *dir = psprintf("base/%s", PG_TEMP_FILES_DIR);
	char	   *path = psprintf("%s/%scdviz_s3.%d", dir, PG_TEMP_FILE_PREFIX, MyProcPid);
	int			fd;
	int			save_errno;

	if (!AcquireExternalFD())
		return -1;				/* errno is EMFILE */
	(void) MakePGDirectory(dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | PG_BINARY, pg_file_create_mode);
	if (fd >= 0)
		unlink(path);
	else
	{
		save_errno = errno;
		ReleaseExternalFD();
		errno = save_errno;
	}
	return fd;
}

static void
close_temp_file(int fd)
{
	close(fd);
	ReleaseExternalFD();
}

/*
 * Download one object and read it.  False with *error when the pass must
 * stop (network, server errors); an object that vanished is skipped.
 */
static bool
read_object(S3Pass *p, S3Pending *t, char **error)
{
	char	   *url = psprintf("%s/%s", p->base, url_encode(p->curl, t->key, true));
	char	   *name = psprintf("s3://%s/%s", p->bucket, t->key);
	S3ObjectArg arg = {p, t, NULL, NULL};
	PollFile	f;
	CURLcode	rc;
	char	   *read_error;

	p->fd = temp_file();
	if (p->fd < 0)
	{
		*error = psprintf("could not create a temporary file: %m");
		return false;
	}
	p->downloaded = 0;
	rc = s3_get(p, url, to_file);
	if (rc != CURLE_OK || p->http_status != 200)
	{
		close_temp_file(p->fd);
		if (rc == CURLE_OK && p->http_status == 404)
			return true;		/* deleted since the listing */
		*error = describe_failure(p, rc, psprintf("reading %s", name));
		arg.error = *error;
		(void) cdviz_worker_transaction("noting an S3 error", note_object, &arg, NULL);
		return false;
	}

	memset(&f, 0, sizeof(f));
	f.origin = "s3";
	f.cfg = p->cfg;
	f.name = name;
	f.ref_sep = '#';
	f.document = poll_is_document(t->key);
	f.fd = p->fd;
	f.size = (uint64) p->downloaded;
	f.complete = true;			/* an object is whole */
	f.hash = CDVIZ_HASH_INIT;
	f.save = save_s3_progress;
	f.arg = &arg;
	f.id_name = t->key;
	f.mtime_us = t->mtime_us;
	if (t->row && (strcmp(t->row->status, "read") == 0 || strcmp(t->row->status, "rejected") == 0))
	{
		f.read_before = true;
		f.read_hash = t->row->hash;
	}
	arg.etag = p->etag[0] ? p->etag : t->etag;
	f.bucket = p->bucket;
	f.etag = arg.etag;
	/* the same version, left half read by a crash: continue it */
	if (t->row && strcmp(t->row->etag, arg.etag) == 0 &&
		strcmp(t->row->status, "reading") == 0 && (uint64) t->row->offset <= f.size)
	{
		f.offset = (uint64) t->row->offset;
		f.lines = (uint64) t->row->lines;
		f.hash = t->row->hash;
	}
	else if (t->row && strcmp(t->row->status, "error") != 0)
		ereport(LOG,
				(errmsg("%s: %s changed (ETag %s, was %s); reading it again", POLL_WHO,
						name, arg.etag, t->row->etag),
				 errdetail("Events read before are deduplicated.")));
	if (!poll_read_file(&f, &read_error))
	{
		close_temp_file(p->fd);
		*error = psprintf("reading %s failed: %s", name, read_error);
		return false;
	}
	close_temp_file(p->fd);
	return true;
}

/* See poll.h. */
int
poll_s3_run(const PollConfig *cfg)
{
	S3Pass		p;
	char	   *error = NULL;
	ListCell   *lc;
	int			wait;

	if (!curl_ready)
	{
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
			elog(ERROR, "%s: curl_global_init failed", POLL_WHO);
		xmlInitParser();
		curl_ready = true;
	}
	memset(&p, 0, sizeof(p));
	/* s3://bucket/prefix, checked by cdviz._source_check() */
	p.cfg = cfg;
	p.source = pstrdup(cfg->location);
	p.bucket = pstrdup(cfg->location + strlen("s3://"));
	p.prefix = strchr(p.bucket, '/');
	if (p.prefix)
		*p.prefix++ = '\0';
	else
		p.prefix = "";
	initStringInfo(&p.body);
	{
		Oid			types[2] = {TEXTOID, TEXTOID};
		Datum		args[2] = {CStringGetTextDatum(p.bucket), CStringGetTextDatum(p.prefix)};

		p.rows = poll_load_rows("cdviz.s3_objects",
								"SELECT key, etag, status, read_offset, lines_read, prefix_hash "
								"FROM cdviz.s3_objects WHERE bucket = $1 AND starts_with(key, $2)",
								2, types, args, MAX_KEY, sizeof(S3Row), s3_fill_row);
	}
	if (p.rows == NULL)
		return cfg->poll_interval;

	p.curl = curl_easy_init();
	if (p.curl == NULL)
		error = pstrdup("could not initialise libcurl");
	else
	{
		p.base = bucket_url(&p);
		if (list_objects(&p, &error))
		{
			foreach(lc, p.pending)
			{
				if (!read_object(&p, (S3Pending *) lfirst(lc), &error))
					break;
				cdviz_worker_process_interrupts();
			}
		}
		curl_easy_cleanup(p.curl);
	}

	cfg->note_poll(cfg->note_arg, error);
	if (error == NULL)
	{
		if (failures > 0)
			ereport(LOG, (errmsg("%s: %s is reachable again", POLL_WHO, p.source)));
		failures = 0;
		return cfg->poll_interval;
	}
	failures++;
	wait = poll_backoff_seconds(cfg->poll_interval, failures);
	ereport(LOG,
			(errmsg("%s: %s", POLL_WHO, error),
			 errdetail("Failure %d in a row; next attempt in %d s.", failures, wait),
			 errhint("Check cdviz.s3_endpoint, cdviz.s3_bucket and the credentials; progress is kept, nothing is read twice.")));
	return wait;
}
