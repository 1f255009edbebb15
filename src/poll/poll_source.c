/*
 * poll_source.c
 *	  What the folder and S3 sources share besides reading a file: which
 *	  names they read, and each poll recorded in cdviz.source_polls.
 */
#include "postgres.h"

#include <fnmatch.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"

#include "poll/poll.h"
#include "common/worker.h"

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

/* Arguments of note_source(). */
typedef struct SourceNote
{
	const char *source;
	const char *kind;
	const char *error;
} SourceNote;

static void
note_source(void *arg)
{
	SourceNote *n = (SourceNote *) arg;
	Oid			types[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum		args[3];
	char		nulls[3] = {' ', ' ', n->error ? ' ' : 'n'};

	args[0] = CStringGetTextDatum(n->source);
	args[1] = CStringGetTextDatum(n->kind);
	args[2] = n->error ? CStringGetTextDatum(n->error) : (Datum) 0;
	if (SPI_execute_with_args("INSERT INTO cdviz.source_polls AS s (source, kind, last_poll_at, "
							  " last_success_at, last_error, last_error_at) "
							  "VALUES ($1, $2, now(), CASE WHEN $3 IS NULL THEN now() END, $3, "
							  " CASE WHEN $3 IS NOT NULL THEN now() END) "
							  "ON CONFLICT (source) DO UPDATE SET last_poll_at = now(), "
							  " last_success_at = CASE WHEN $3 IS NULL THEN now() ELSE s.last_success_at END, "
							  " last_error = $3, "
							  " last_error_at = CASE WHEN $3 IS NOT NULL THEN now() ELSE s.last_error_at END",
							  3, types, args, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "cdviz poller: updating cdviz.source_polls failed");
}

/* See poll.h. */
void
poll_note_source(const char *source, const char *kind, const char *error)
{
	SourceNote	n = {source, kind, error};

	(void) cdviz_worker_transaction("cdviz poller: noting the poll", note_source, &n, NULL);
}
