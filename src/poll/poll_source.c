/*
 * poll_source.c
 *	  What the folder and S3 sources share besides reading a file: which
 *	  names they read, and their progress rows.
 */
#include "postgres.h"

#include "miscadmin.h"

#include <fnmatch.h>

#include <curl/curl.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"

#include "poll/poll.h"
#include "common/worker.h"

/* Longest wait between polls after failures. */
#define MAX_BACKOFF_SECONDS 600

/* See poll.h. */
bool
poll_name_matches(const char *name, const char *patterns)
{
	char	   *list = pstrdup(patterns);
	char	   *save = NULL;
	bool		match = false;

	for (char *tok = strtok_r(list, ",", &save); tok && !match; tok = strtok_r(NULL, ",", &save))
	{
		char	   *end;

		while (*tok == ' ' || *tok == '\t')
			tok++;
		end = tok + strlen(tok);
		while (end > tok && (end[-1] == ' ' || end[-1] == '\t'))
			*--end = '\0';
		if (*tok && fnmatch(tok, name, 0) == 0)
			match = true;
	}
	pfree(list);
	return match;
}

/* See poll.h. */
bool
poll_is_document(const char *name)
{
	size_t		len = strlen(name);

	return len >= 5 && pg_strcasecmp(name + len - 5, ".json") == 0;
}

/* See poll.h. */
void
poll_delta_args(Datum *args, const PollDelta *d)
{
	args[0] = Int64GetDatum((int64) d->offset);
	args[1] = Int64GetDatum((int64) d->lines);
	args[2] = Int64GetDatum((int64) d->hash);
	args[3] = CStringGetTextDatum(d->status);
	args[4] = Int64GetDatum(d->events);
	args[5] = Int64GetDatum(d->duplicates);
	args[6] = Int64GetDatum(d->rejected);
}

/* See poll.h. */
void
poll_text_args(Datum *args, char *nulls, int n,...)
{
	va_list		ap;

	va_start(ap, n);
	for (int i = 0; i < n; i++)
	{
		const char *value = va_arg(ap, const char *);

		nulls[i] = value ? ' ' : 'n';
		args[i] = value ? CStringGetTextDatum(value) : (Datum) 0;
	}
	va_end(ap);
}

/* Arguments of load_rows(). */
typedef struct RowsLoad
{
	const char *table;
	const char *sql;
	int			nargs;
	Oid		   *types;
	Datum	   *args;
	HTAB	   *rows;
	Size		keysize;
	PollRowFill fill;
} RowsLoad;

static void
load_rows(void *arg)
{
	RowsLoad   *l = (RowsLoad *) arg;

	if (SPI_execute_with_args(l->sql, l->nargs, l->types, l->args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "%s: reading %s failed", POLL_WHO, l->table);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *key = SPI_getvalue(tup, desc, 1);

		/* no file or object this source reads has such a key */
		if (strlen(key) >= l->keysize)
			continue;
		l->fill(hash_search(l->rows, key, HASH_ENTER, NULL), tup, desc);
	}
}

/* See poll.h. */
HTAB *
poll_load_rows(const char *table, const char *sql, int nargs, Oid *types, Datum *args,
			   Size keysize, Size entrysize, PollRowFill fill)
{
	HASHCTL		ctl;
	RowsLoad	l = {table, sql, nargs, types, args, NULL, keysize, fill};
	char	   *activity = psprintf("loading %s", table);
	CdvizTxResult res;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = keysize;
	ctl.entrysize = entrysize;
	ctl.hcxt = CurrentMemoryContext;
	l.rows = hash_create("cdviz source progress rows", 256, &ctl,
						 HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	res = cdviz_worker_transaction(activity, load_rows, &l, NULL);
	pfree(activity);
	return res == CDVIZ_TX_DONE ? l.rows : NULL;
}

/* See poll.h. */
char *
poll_absolute_path(const char *path)
{
	char	   *s = pstrdup(path);
	size_t		len = strlen(s);

	while (len > 1 && s[len - 1] == '/')
		s[--len] = '\0';
	if (s[0] != '/')
		s = psprintf("%s/%s", DataDir, s);
	return s;
}

/* Stop a transfer when the worker is told to exit. */
static int
on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
	return ProcDiePending ? 1 : 0;
}

/* See poll.h. */
void
poll_curl_options(CURL *curl, char *errbuf, curl_write_callback on_body,
				  curl_write_callback on_header, void *arg, const char *agent)
{
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 10L);
	/* a server that stops sending for 30 s is dead */
	curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, 30L);
	curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, arg);
	curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(curl, CURLOPT_HEADERDATA, arg);
	curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(curl, CURLOPT_USERAGENT, agent);
}

/* See poll.h. */
int
poll_backoff_seconds(int interval, int failures)
{
	int			wait = interval;

	for (int i = 1; i < failures && wait < MAX_BACKOFF_SECONDS; i++)
		wait *= 2;
	return Min(wait, MAX_BACKOFF_SECONDS);
}
