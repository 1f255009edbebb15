/*
 * validate_cli.c
 *	  Run the core validator over JSON Lines on stdin, one verdict a line:
 *	  "ok <subject> <predicate> <version> <epoch_us>" or "invalid <problems>"
 *	  (problems as a JSON array).  Used by the oracle test and by hand.
 *
 * usage: validate_cli [strict|lenient|off] < events.jsonl
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "core/event.h"

int
main(int argc, char **argv)
{
	CdvizValidation mode = CDVIZ_VALIDATION_STRICT;
	char	   *line = NULL;
	size_t		cap = 0;
	ssize_t		n;

	if (argc > 1 && !cdviz_validation_from_name(argv[1], &mode))
	{
		fprintf(stderr, "usage: %s [strict|lenient|off] < events.jsonl\n", argv[0]);
		return 2;
	}
	while ((n = getline(&line, &cap, stdin)) >= 0)
	{
		json_tokener *tok = json_tokener_new();
		json_object *ev;
		CdvizProblems problems;
		CdvizEventInfo info;

		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		cdviz_problems_init(&problems);
		ev = json_tokener_parse_ex(tok, line, (int) n);
		if (ev == NULL || tok->char_offset != (int) n)
			printf("invalid [{\"path\":\"$\",\"message\":\"not JSON\"}]\n");
		else if (cdviz_event_check(ev, mode, &info, &problems))
			printf("ok %.*s %.*s %.*s %lld\n",
				   (int) info.subject.len, info.subject.ptr,
				   (int) info.predicate.len, info.predicate.ptr,
				   (int) info.type_version.len, info.type_version.ptr,
				   (long long) info.timestamp_us);
		else
		{
			char	   *js = cdviz_problems_to_json(&problems);

			printf("invalid %s\n", js);
			free(js);
		}
		cdviz_problems_reset(&problems);
		json_object_put(ev);
		json_tokener_free(tok);
	}
	free(line);
	return 0;
}
