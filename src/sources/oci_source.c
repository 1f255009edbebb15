/*
 * oci_source.c
 *	  The oci kind: a container registry's tags, scanned through the OCI
 *	  Distribution API at the source's interval; an artifact.published
 *	  event for each tag seen pointing to a digest it did not point to.
 *
 * A scan lists the repositories (the names the source gives, and those of
 * /v2/_catalog that its patterns match, when it gives patterns or no
 * names), the tags of each (/v2/<name>/tags/list, page after page through
 * the Link header) and the manifest digest of each tag (HEAD of the
 * manifest, Docker-Content-Digest).  What it finds is compared with the
 * registry's rows of cdviz.oci_tags, loaded once per scan; a new or moved
 * tag is an item whose events are stored in the transaction that writes
 * its row, batch_size items per transaction, so that a scan interrupted
 * anywhere resumes with nothing emitted twice and nothing missed.  Rows
 * of tags and repositories no longer listed are deleted, so a scan costs
 * in proportion to the registry, not to its history.
 *
 * An item becomes events as any source's item does, through
 * cdviz_source_item_store() (webhook/source_item.h): oci_item_meta()
 * describes it as the meta of the transformer contract (body is NULL: no
 * content is read), the source's transformer maps it when it has one,
 * else oci_builtin() by cdviz.oci_source_events(meta, NULL).  A
 * transformer that raises keeps the tag as a dead letter, in the
 * transaction that writes its row: the row may then advance, since
 * cdviz.retransform_source() makes the tag again from the dead letter,
 * and a scan restarted before that transaction committed finds the tag
 * new again, with neither its events nor its dead letter stored.
 *
 * A registry that fails (refused connection, 5xx, an answer that is not
 * the JSON expected) ends the scan with its error in
 * cdviz.source_progress; the next scan waits twice as long, up to ten
 * minutes, and the first scan that succeeds clears the error.
 */
#include "postgres.h"

#include <fnmatch.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "common/hmac_sha256.h"
#include "common/json.h"
#include "common/rfc3339.h"
#include "common/spi_util.h"
#include "common/worker.h"
#include "poll/poll.h"
#include "sources/kinds.h"
#include "sources/oci.h"
#include "store/store.h"
#include "webhook/source_item.h"

/* Repository names and tags, as the Distribution spec bounds them. */
#define MAX_NAME 256
#define MAX_TAG 129
#define KEY_SIZE (MAX_NAME + MAX_TAG)

/* What a manifest HEAD accepts: images and indexes, OCI and Docker. */
#define MANIFEST_TYPES \
	"application/vnd.oci.image.index.v1+json, " \
	"application/vnd.oci.image.manifest.v1+json, " \
	"application/vnd.docker.distribution.manifest.list.v2+json, " \
	"application/vnd.docker.distribution.manifest.v2+json"

/* A row of cdviz.oci_tags, by "repository\ntag". */
typedef struct OciKnown
{
	char		key[KEY_SIZE];
	char		digest[160];
} OciKnown;

/* A tag seen pointing to a digest its row does not have. */
typedef struct OciItem
{
	const char *repository;
	char	   *tag;
	char	   *digest;
	char	   *media_type;
	const char *previous_digest;	/* NULL for a new tag */
	TimestampTz seen_at;
} OciItem;

/* The source, as its options say, and one scan's state. */
typedef struct OciScan
{
	const CdvizSource *src;
	OciClient  *client;
	const char *host;			/* host[:port] of the location */
	List	   *patterns;		/* names and patterns of "repositories" */
	bool		use_catalog;
	bool		backfill;		/* "initial": "backfill" */
	int			page_size;
	int			batch_size;
	/* this scan */
	bool		baseline;		/* records without events */
	HTAB	   *known;
	List	   *pending;		/* OciItem */
	List	   *seen;			/* tags of the repository being read */
	int64		events;
	int64		items;
} OciScan;

static int	failures;			/* consecutive failed scans */
static SPIPlanPtr events_plan;

/* ------------------------------------------------------------------ */
/* an item's events                                                    */
/* ------------------------------------------------------------------ */

/*
 * The meta of an item, as a transformer receives it: the source's name
 * and kind, the item's identity (id: ref, host/repository:tag@digest, and
 * when the source saw it), the default context source (the location) and
 * time (mtime, when the source saw the tag), the registry (the location),
 * its host, the repository, tag, digest, media type, the digest the tag
 * pointed to before (null for a new tag) and when the source saw it.
 *
 * The lake tells events apart by context id and timestamp, and the
 * timestamp is when the tag was seen: a tag found pointing to a digest
 * again (moved back, or deleted and pushed again) is another event, so
 * the time is in the id too, which CloudEvents wants unique per event (and
 * the NATS sink's Nats-Msg-Id dedup reads so).  A retransform makes the
 * item from the meta its dead letter keeps: the same ids and times.
 */
static Jsonb *
oci_item_meta(const OciScan *s, const OciItem *it, const char *ref)
{
	StringInfoData buf;
	char	   *seen_at = cdviz_rfc3339_utc(it->seen_at);

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	cdviz_json_add_text(&buf, "source", s->src->name);
	cdviz_json_add_text(&buf, "kind", "oci");
	cdviz_json_add_text(&buf, "id", psprintf("%s@%s", ref, seen_at));
	cdviz_json_add_text(&buf, "source_uri", s->src->location);
	cdviz_json_add_text(&buf, "mtime", seen_at);
	cdviz_json_add_text(&buf, "registry", s->src->location);
	cdviz_json_add_text(&buf, "host", s->host);
	cdviz_json_add_text(&buf, "repository", it->repository);
	cdviz_json_add_text(&buf, "tag", it->tag);
	cdviz_json_add_text(&buf, "digest", it->digest);
	cdviz_json_add_text(&buf, "media_type", it->media_type[0] ? it->media_type : NULL);
	cdviz_json_add_text(&buf, "previous_digest", it->previous_digest);
	cdviz_json_add_text(&buf, "seen_at", seen_at);
	appendStringInfoChar(&buf, '}');
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}

/*
 * The built-in mapping of an item (CdvizSourceMapping), for a source
 * without transformer: the events of cdviz.oci_source_events(meta, NULL),
 * stored.
 */
static CdvizStoreResult
oci_builtin(const CdvizSourceItem *item, void *arg)
{
	Datum		args[1] = {JsonbPGetDatum(item->meta)};
	CdvizStoreResult r = {0};
	CdvizItem  *items;
	int			n = 0;

	if (events_plan == NULL)
	{
		Oid			types[1] = {JSONBOID};

		events_plan = cdviz_prepare_kept("SELECT e FROM cdviz.oci_source_events($1, NULL) e",
										 1, types, 0);
	}
	if (SPI_execute_plan(events_plan, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "%s: cdviz.oci_source_events failed", POLL_WHO);
	/* copied out before storing them: the store runs its own statements */
	items = palloc0(sizeof(CdvizItem) * Max(SPI_processed, 1));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			cdviz_item_from_jsonb(&items[n++], DatumGetJsonbPCopy(d), item->origin_ref);
	}
	SPI_freetuptable(SPI_tuptable);
	if (n > 0)
	{
		r = cdviz_store_items(items, n, item->origin);
		cdviz_store_release_items(items, n);
	}
	return r;
}

/*
 * Store an item's events, or keep it as a dead letter when the source's
 * transformer raises, in the current transaction; counts added to sum.
 */
static void
store_item(const OciScan *s, const OciItem *it, CdvizStoreResult *sum)
{
	CdvizSourceItem item;
	CdvizStoreResult r;
	char	   *error;
	char	   *ref = psprintf("%s/%s:%s@%s", s->host, it->repository, it->tag, it->digest);

	memset(&item, 0, sizeof(item));
	item.source = s->src->name;
	item.transformer = s->src->transformer;
	item.origin = "oci";
	item.origin_ref = ref;
	item.meta = oci_item_meta(s, it, ref);
	item.builtin = oci_builtin;
	r = cdviz_source_item_store(&item, &error);
	if (error)
		ereport(LOG,
				(errmsg("%s: %s: %s", POLL_WHO, ref, error),
				 errhint("The tag is kept in cdviz.rejected_events; fix the transformer, then SELECT * FROM cdviz.retransform_source('%s').",
						 s->src->name)));
	sum->stored += r.stored;
	sum->duplicates += r.duplicates;
	sum->rejected += r.rejected;
}

/* ------------------------------------------------------------------ */
/* progress                                                            */
/* ------------------------------------------------------------------ */

/* PollRowFill of cdviz.oci_tags. */
static void
fill_known(void *entry, HeapTuple tup, TupleDesc desc)
{
	strlcpy(((OciKnown *) entry)->digest, SPI_getvalue(tup, desc, 2), sizeof(((OciKnown *) entry)->digest));
}

/* Arguments of load_registry(). */
typedef struct RegistryLoad
{
	const char *registry;
	bool		scanned;		/* a complete scan was made */
} RegistryLoad;

static void
load_registry(void *arg)
{
	RegistryLoad *l = (RegistryLoad *) arg;
	Oid			types[1] = {TEXTOID};
	Datum		args[1] = {CStringGetTextDatum(l->registry)};

	if (SPI_execute_with_args("SELECT FROM cdviz.oci_registries "
							  "WHERE registry = $1 AND first_scan_at IS NOT NULL",
							  1, types, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "%s: reading cdviz.oci_registries failed", POLL_WHO);
	l->scanned = SPI_processed > 0;
}

/* Text values as a text[] argument. */
static Datum
text_array(List *values)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(list_length(values), 1));
	int			n = 0;
	ListCell   *lc;

	foreach(lc, values)
		d[n++] = CStringGetTextDatum((const char *) lfirst(lc));
	return PointerGetDatum(cdviz_make_array(d, NULL, n, TEXTOID));
}

/* Arguments of store_items(). */
typedef struct ItemsStore
{
	OciScan    *s;
	const char *repository;
	bool		repository_done;	/* delete the rows of tags not seen */
} ItemsStore;

/*
 * In one transaction: the events (or dead letters) of the pending items,
 * their rows, and when the repository was read whole, the deletion of its
 * other rows.
 */
static void
store_items(void *arg)
{
	ItemsStore *a = (ItemsStore *) arg;
	OciScan    *s = a->s;
	CdvizStoreResult sum = {0};
	List	   *tags = NIL,
			   *digests = NIL,
			   *types = NIL;
	ListCell   *lc;
	Oid			argtypes[6] = {TEXTOID, TEXTOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, BOOLOID};
	Datum		args[6];

	foreach(lc, s->pending)
	{
		OciItem    *it = (OciItem *) lfirst(lc);

		if (!s->baseline)
			store_item(s, it, &sum);
		tags = lappend(tags, it->tag);
		digests = lappend(digests, it->digest);
		types = lappend(types, it->media_type);
	}
	if (!s->baseline && s->pending != NIL)
		cdviz_source_count(s->src, sum.stored, sum.duplicates, sum.rejected);
	args[0] = CStringGetTextDatum(s->src->location);
	args[1] = CStringGetTextDatum(a->repository);
	args[2] = text_array(tags);
	args[3] = text_array(digests);
	args[4] = text_array(types);
	args[5] = BoolGetDatum(!s->baseline);
	if (tags != NIL &&
		SPI_execute_with_args("INSERT INTO cdviz.oci_tags AS t "
							  " (registry, repository, tag, digest, media_type, seen_at, emitted) "
							  "SELECT $1, $2, x.tag, x.digest, nullif(x.media_type, ''), now(), $6 "
							  "FROM unnest($3, $4, $5) x (tag, digest, media_type) "
							  "ON CONFLICT (registry, repository, tag) DO UPDATE "
							  "SET digest = excluded.digest, media_type = excluded.media_type, "
							  " seen_at = excluded.seen_at, emitted = excluded.emitted",
							  6, argtypes, args, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "%s: writing cdviz.oci_tags failed", POLL_WHO);
	if (a->repository_done)
	{
		args[2] = text_array(s->seen);
		if (SPI_execute_with_args("DELETE FROM cdviz.oci_tags "
								  "WHERE registry = $1 AND repository = $2 AND tag <> ALL ($3)",
								  3, argtypes, args, NULL, false, 0) != SPI_OK_DELETE)
			elog(ERROR, "%s: deleting from cdviz.oci_tags failed", POLL_WHO);
	}
}

/* Store the pending items (and the end of a repository); false with *error. */
static bool
flush(OciScan *s, const char *repository, bool repository_done, char **error)
{
	ItemsStore	a = {s, repository, repository_done};
	ErrorData  *edata = NULL;

	if (s->pending == NIL && !repository_done)
		return true;
	if (cdviz_worker_transaction("storing registry tags", store_items, &a, &edata) != CDVIZ_TX_DONE)
	{
		*error = psprintf("storing the tags of %s: %s", repository,
						  edata ? edata->message : "the extension is not ready");
		return false;
	}
	if (!s->baseline)
		s->events += list_length(s->pending);
	s->items += list_length(s->pending);
	s->pending = NIL;
	return true;
}

/* Arguments of end_scan(). */
typedef struct ScanEnd
{
	OciScan    *s;
	List	   *repositories;
} ScanEnd;

/* A complete scan: rows of repositories no longer read go, the registry's row is written. */
static void
end_scan(void *arg)
{
	ScanEnd    *e = (ScanEnd *) arg;
	Oid			types[2] = {TEXTOID, TEXTARRAYOID};
	Datum		args[2];

	args[0] = CStringGetTextDatum(e->s->src->location);
	args[1] = text_array(e->repositories);
	if (SPI_execute_with_args("DELETE FROM cdviz.oci_tags WHERE registry = $1 AND repository <> ALL ($2)",
							  2, types, args, NULL, false, 0) != SPI_OK_DELETE ||
		SPI_execute_with_args("INSERT INTO cdviz.oci_registries AS r (registry, first_scan_at, last_scan_at) "
							  "VALUES ($1, now(), now()) ON CONFLICT (registry) DO UPDATE "
							  "SET first_scan_at = coalesce(r.first_scan_at, now()), last_scan_at = now()",
							  1, types, args, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "%s: writing the end of a scan failed", POLL_WHO);
}

/* ------------------------------------------------------------------ */
/* the registry                                                        */
/* ------------------------------------------------------------------ */

/* Whether a repository name or a tag has only the characters the spec allows. */
static bool
valid_name(const char *name, bool tag)
{
	size_t		len = strlen(name);

	if (len == 0 || len >= (tag ? MAX_TAG : MAX_NAME) || (tag && (name[0] == '.' || name[0] == '-')))
		return false;
	for (const char *p = name; *p; p++)
		if (!(isdigit((unsigned char) *p) || (*p >= 'a' && *p <= 'z') || *p == '.' || *p == '_' ||
			  *p == '-' || (tag ? (*p >= 'A' && *p <= 'Z') : *p == '/')))
			return false;
	return true;
}

/*
 * The valid names of member key of a page (the catalog's "repositories",
 * a tag list's "tags") appended to *out; false when the page is not such
 * an object.
 */
static bool
page_names(OciScan *s, const char *key, bool tags, List **out)
{
	bool		ok;
	List	   *names = oci_json_strings(s->client, key, &ok);
	ListCell   *lc;

	foreach(lc, names)
	{
		const char *name = (const char *) lfirst(lc);

		if (valid_name(name, tags))
			*out = lappend(*out, (char *) name);
		else
			ereport(LOG, (errmsg("%s: skipping %s \"%s\": not a valid name", POLL_WHO,
								 tags ? "tag" : "repository", name)));
	}
	return ok;
}

/*
 * Every entry of a paginated list (the catalog, or a repository's tags):
 * path?n=page_size, then what the Link header names.  A repository that
 * does not exist has no tags.  False with *error on failure.
 */
static bool
list_pages(OciScan *s, const char *path, const char *repository, const char *key,
		   List **out, char **error)
{
	char	   *url = psprintf("%s?n=%d", path, s->page_size);

	for (int pages = 0; url != NULL; pages++)
	{
		OciResponse *r = oci_request(s->client, false, url, "application/json", repository, error);

		if (r == NULL)
			return false;
		if (r->status == 404 && repository)
			return true;
		if (r->status != 200)
		{
			*error = oci_describe(s->client, psprintf("GET %s", url));
			return false;
		}
		if (!page_names(s, key, repository != NULL, out))
		{
			*error = psprintf("GET %s: the answer is not a JSON object with an array \"%s\"", url, key);
			return false;
		}
		url = r->next;
		if (pages > 100000)
		{
			*error = psprintf("GET %s: the pages do not end", path);
			return false;
		}
		cdviz_worker_process_interrupts();
	}
	return true;
}

static int
compare_names(const ListCell *a, const ListCell *b)
{
	return strcmp((const char *) lfirst(a), (const char *) lfirst(b));
}

/* The repositories to read, sorted, once each; NULL with *error on failure. */
static List *
list_repositories(OciScan *s, char **error)
{
	List	   *names = NIL;
	List	   *catalog = NIL;
	List	   *out = NIL;
	ListCell   *lc;

	*error = NULL;
	foreach(lc, s->patterns)
	{
		const char *p = (const char *) lfirst(lc);

		if (strpbrk(p, "*?[") == NULL)
			names = lappend(names, (char *) p);
	}
	if (s->use_catalog)
	{
		if (!list_pages(s, "/v2/_catalog", NULL, "repositories", &catalog, error))
			return NIL;
		foreach(lc, catalog)
		{
			const char *name = (const char *) lfirst(lc);
			bool		match = s->patterns == NIL;
			ListCell   *pc;

			foreach(pc, s->patterns)
				match = match || fnmatch((const char *) lfirst(pc), name, 0) == 0;
			if (match)
				names = lappend(names, (char *) name);
		}
	}
	list_sort(names, compare_names);
	foreach(lc, names)
		if (out == NIL || strcmp((const char *) llast(out), (const char *) lfirst(lc)) != 0)
			out = lappend(out, lfirst(lc));
	return out;
}

/*
 * The SHA-256 digest of a manifest, from its body, for registries that do
 * not send it (computed between transactions, as the scan is).
 */
static bool
body_digest(OciResponse *r, char *out, size_t outlen)
{
	Assert(outlen >= 7 + CDVIZ_HMAC_HEX_LEN + 1);
	strlcpy(out, "sha256:", outlen);
	return cdviz_sha256_hex(r->body.data, r->body.len, out + 7);
}

/*
 * The digest and media type of a tag's manifest into it: 1 when found,
 * 0 when the tag is gone, -1 with *error on failure.
 */
static int
read_manifest(OciScan *s, const char *repository, OciItem *it, char **error)
{
	char	   *path = psprintf("/v2/%s/manifests/%s", repository, it->tag);
	OciResponse *r = oci_request(s->client, true, path, MANIFEST_TYPES, repository, error);
	char		digest[160];

	if (r && r->status == 200 && r->digest[0] == '\0')
		r = oci_request(s->client, false, path, MANIFEST_TYPES, repository, error);
	if (r == NULL)
		return -1;
	if (r->status == 404)
		return 0;
	if (r->status != 200)
	{
		*error = oci_describe(s->client, psprintf("HEAD %s", path));
		return -1;
	}
	if (r->digest[0])
		strlcpy(digest, r->digest, sizeof(digest));
	else if (!body_digest(r, digest, sizeof(digest)))
	{
		*error = psprintf("GET %s: could not compute the manifest's digest", path);
		return -1;
	}
	it->digest = pstrdup(digest);
	it->media_type = pstrdup(r->content_type);
	it->seen_at = GetCurrentTimestamp();
	return 1;
}

/* Read one repository: its tags, their digests, the items they make. */
static bool
read_repository(OciScan *s, const char *repository, char **error)
{
	List	   *tags = NIL;
	ListCell   *lc;

	if (!list_pages(s, psprintf("/v2/%s/tags/list", repository), repository, "tags", &tags, error))
		return false;
	s->seen = NIL;
	foreach(lc, tags)
	{
		OciItem    *it = palloc0(sizeof(OciItem));
		char		key[KEY_SIZE];
		OciKnown   *known;
		int			found;

		it->repository = repository;
		it->tag = (char *) lfirst(lc);
		found = read_manifest(s, repository, it, error);
		if (found < 0)
			return false;
		if (found == 0)
			continue;
		s->seen = lappend(s->seen, it->tag);
		snprintf(key, sizeof(key), "%s\n%s", repository, it->tag);
		known = hash_search(s->known, key, HASH_FIND, NULL);
		if (known && strcmp(known->digest, it->digest) == 0)
			continue;
		it->previous_digest = known ? pstrdup(known->digest) : NULL;
		s->pending = lappend(s->pending, it);
		if (list_length(s->pending) >= s->batch_size && !flush(s, repository, false, error))
			return false;
		cdviz_worker_process_interrupts();
	}
	return flush(s, repository, true, error);
}

/* One scan of the registry; NULL, or what went wrong. */
static char *
scan(OciScan *s)
{
	RegistryLoad reg = {s->src->location, false};
	Oid			types[1] = {TEXTOID};
	Datum		args[1] = {CStringGetTextDatum(s->src->location)};
	List	   *repositories;
	ListCell   *lc;
	char	   *error = NULL;
	ScanEnd		end;

	s->known = poll_load_rows("cdviz.oci_tags",
							  "SELECT repository || E'\\n' || tag, digest FROM cdviz.oci_tags "
							  "WHERE registry = $1",
							  1, types, args, KEY_SIZE, sizeof(OciKnown), fill_known);
	if (s->known == NULL ||
		cdviz_worker_transaction("reading cdviz.oci_registries", load_registry, &reg, NULL) != CDVIZ_TX_DONE)
		return pstrdup("could not read the registry's progress (the log says why)");
	s->baseline = !s->backfill && !reg.scanned;
	s->pending = NIL;
	s->events = s->items = 0;

	repositories = list_repositories(s, &error);
	if (error)
		return error;
	foreach(lc, repositories)
	{
		if (!read_repository(s, (const char *) lfirst(lc), &error))
			return error;
	}
	end.s = s;
	end.repositories = repositories;
	if (cdviz_worker_transaction("ending a registry scan", end_scan, &end, NULL) != CDVIZ_TX_DONE)
		return pstrdup("could not write the end of the scan (the log says why)");
	if (s->items > 0)
		ereport(LOG,
				(errmsg("%s: %s: " INT64_FORMAT " new or moved tags in %d repositories, " INT64_FORMAT " with events%s",
						POLL_WHO, s->src->location, s->items, list_length(repositories), s->events,
						s->baseline ? " (a baseline scan records tags without events)" : "")));
	return NULL;
}

/* ------------------------------------------------------------------ */
/* the source                                                          */
/* ------------------------------------------------------------------ */

/* A string member of an object option ("ecr"), or dflt. */
static const char *
object_text(const CdvizSource *src, const char *option, const char *key, const char *dflt)
{
	JsonbValue	buf;
	JsonbValue *obj = getKeyJsonValueFromContainer(&src->options->root, option, strlen(option), &buf);
	JsonbValue	vbuf;
	JsonbValue *v;

	if (obj == NULL || obj->type != jbvBinary)
		return dflt;
	v = getKeyJsonValueFromContainer(obj->val.binary.data, key, strlen(key), &vbuf);
	return v && v->type == jbvString ? pnstrdup(v->val.string.val, v->val.string.len) : dflt;
}

/* The strings of an array option ("repositories"). */
static List *
array_texts(const CdvizSource *src, const char *option)
{
	JsonbValue	buf;
	JsonbValue *arr = getKeyJsonValueFromContainer(&src->options->root, option, strlen(option), &buf);
	List	   *out = NIL;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;

	if (arr == NULL || arr->type != jbvBinary)
		return NIL;
	it = JsonbIteratorInit(arr->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		if (tok == WJB_ELEM && v.type == jbvString)
			out = lappend(out, pnstrdup(v.val.string.val, v.val.string.len));
	return out;
}

/* poll_interval in seconds: a number, or a duration such as "5m". */
static int
interval_seconds(const char *text)
{
	Interval   *iv;
	int64		usecs;

	if (strspn(text, "0123456789") == strlen(text))
		return atoi(text);
	iv = DatumGetIntervalP(DirectFunctionCall3(interval_in, CStringGetDatum(text),
											   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
	usecs = iv->time + (iv->day * (int64) SECS_PER_DAY + iv->month * (int64) DAYS_PER_MONTH * SECS_PER_DAY) * USECS_PER_SEC;
	return (int) Max(usecs / USECS_PER_SEC, 1);
}

/* See kinds.h. */
void
cdviz_oci_source_run(const CdvizSource *src)
{
	MemoryContext keep = AllocSetContextCreate(TopMemoryContext, "cdviz oci client",
											   ALLOCSET_DEFAULT_SIZES);
	MemoryContext scancxt = AllocSetContextCreate(CurrentMemoryContext, "cdviz oci scan",
												  ALLOCSET_DEFAULT_SIZES);
	OciScan		s;
	OciAuth		auth;
	ListCell   *lc;
	int			interval = interval_seconds(cdviz_source_opt_text(src, "poll_interval", "60"));
	const char *host = strstr(src->location, "://") + 3;

	memset(&s, 0, sizeof(s));
	s.src = src;
	s.host = host;
	s.patterns = array_texts(src, "repositories");
	s.use_catalog = s.patterns == NIL;
	foreach(lc, s.patterns)
		s.use_catalog = s.use_catalog || strpbrk((const char *) lfirst(lc), "*?[") != NULL;
	s.backfill = strcmp(cdviz_source_opt_text(src, "initial", "baseline"), "backfill") == 0;
	s.page_size = cdviz_source_opt_int(src, "page_size", 1000);
	s.batch_size = cdviz_source_opt_int(src, "batch_size", 500);
	auth.username = cdviz_source_opt_text(src, "username", "");
	auth.password = cdviz_source_opt_text(src, "password", "");
	auth.ecr_region = object_text(src, "ecr", "region", "");
	auth.ecr_endpoint = object_text(src, "ecr", "endpoint", "");
	auth.access_key_id = cdviz_source_opt_text(src, "access_key_id", "");
	auth.secret_access_key = cdviz_source_opt_text(src, "secret_access_key", "");
	auth.session_token = cdviz_source_opt_text(src, "session_token", "");
	s.client = oci_client_create(keep, src->location, &auth, POLL_WHO);

	while (!cdviz_source_stopping())
	{
		MemoryContext old;
		TimestampTz started = GetCurrentTimestamp();
		char	   *error;
		int			wait_s = interval;

		if (!cdviz_worker_wait_for_extension())
			continue;
		pgstat_report_activity(STATE_RUNNING, "scanning the registry");
		old = MemoryContextSwitchTo(scancxt);
		error = scan(&s);
		cdviz_source_note_poll(src, error);
		if (error)
		{
			failures++;
			wait_s = poll_backoff_seconds(interval, failures);
			ereport(LOG,
					(errmsg("%s: %s", POLL_WHO, error),
					 errdetail("Failure %d in a row; next scan in %d s.", failures, wait_s),
					 errhint("What was stored is kept; the next scan goes on from there.")));
		}
		else if (failures > 0)
		{
			ereport(LOG, (errmsg("%s: %s answers again", POLL_WHO, src->location)));
			failures = 0;
		}
		MemoryContextSwitchTo(old);
		MemoryContextReset(scancxt);
		cdviz_source_sleep_until(TimestampTzPlusMilliseconds(started, wait_s * 1000L));
	}
}
