/*
 * store_messages.c
 *	  Batches of messages of a message source stored through the envelope
 *	  and the store, as HTTP request bodies are (see store_messages.h).
 *
 * A message whose media type the envelope cannot read is kept whole as a
 * dead letter with one problem; an element the envelope refuses (a body
 * that is not what its mode requires, attributes that disagree with the
 * CDEvent) is kept with its problems; the rest go to cdviz_store_items(),
 * which keeps the events that fail validation.  Dead letters of binary
 * mode keep the CloudEvents attributes the message came with, named as
 * their HTTP headers, so that cdviz.replay_rejected() judges the body as
 * the source did.
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/json.h"

#include "store/store_messages.h"

/* Add one attribute to the envelope's headers object, when present. */
static void
add_header(StringInfo buf, int *count, const char *name, const char *value)
{
	if (value == NULL)
		return;
	appendStringInfoString(buf, (*count)++ ? ", " : "{");
	escape_json(buf, name);
	appendStringInfoString(buf, ": ");
	escape_json(buf, text_to_cstring(cdviz_bytes_as_text(value, strlen(value))));
}

/* The envelope column of a message's dead letters (see cdviz.rejected_events). */
static char *
envelope_json(const CdvizMessage *m, CdvizEnvelopeMode mode)
{
	StringInfoData buf;
	int			count = 0;

	if (mode != CDVIZ_ENVELOPE_BINARY)
	{
		const char *column = cdviz_envelope_column(mode);

		return column ? pstrdup(column) : NULL;
	}
	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"mode\": \"binary\", \"headers\": ");
	add_header(&buf, &count, "content-type", m->in.content_type);
	add_header(&buf, &count, "ce-specversion", m->in.ce_specversion);
	add_header(&buf, &count, "ce-id", m->in.ce_id);
	add_header(&buf, &count, "ce-source", m->in.ce_source);
	add_header(&buf, &count, "ce-type", m->in.ce_type);
	appendStringInfoString(&buf, count ? "}}" : "{}}");
	return buf.data;
}

/* See store_messages.h. */
void
cdviz_messages_read(CdvizMessageBatch *b, CdvizMessage *msgs, int nmsgs)
{
	int			n = 0;

	b->msgs = msgs;
	b->nmsgs = nmsgs;
	b->envs = palloc0(sizeof(CdvizEnvelope) * Max(nmsgs, 1));
	b->envelopes = palloc0(sizeof(char *) * Max(nmsgs, 1));
	for (int m = 0; m < nmsgs; m++)
	{
		if (!cdviz_envelope_read(&msgs[m].in, &b->envs[m]))
			ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
		b->envelopes[m] = envelope_json(&msgs[m], b->envs[m].mode);
		n += b->envs[m].nevents;
	}
	b->items = palloc0(sizeof(CdvizItem) * Max(n, 1));
	b->nitems = 0;
	for (int m = 0; m < nmsgs; m++)
	{
		for (int i = 0; i < b->envs[m].nevents; i++)
		{
			CdvizEnvelopeEvent *ev = &b->envs[m].events[i];
			CdvizItem  *it;

			if (ev->problems.count > 0)
				continue;
			it = &b->items[b->nitems++];
			it->raw = ev->raw;
			it->raw_len = ev->raw_len;
			it->received = ev->received;
			it->received_len = ev->received_len;
			it->envelope = b->envelopes[m];
			/* the envelope's parse, taken (and freed) by the store */
			it->json = ev->json;
			ev->json = NULL;
			it->origin_ref = msgs[m].origin_ref;
		}
	}
}

/* See store_messages.h. */
CdvizStoreResult
cdviz_messages_store(CdvizMessageBatch *b, const char *origin)
{
	CdvizStoreResult r = {0};

	if (b->nitems > 0)
		r = cdviz_store_items(b->items, b->nitems, origin);
	for (int m = 0; m < b->nmsgs; m++)
	{
		CdvizEnvelope *env = &b->envs[m];
		CdvizMessage *msg = &b->msgs[m];

		if (env->mode == CDVIZ_ENVELOPE_UNSUPPORTED)
		{
			CdvizProblems problems;

			cdviz_problems_init(&problems);
			cdviz_problems_add(&problems, "$", "%s", env->error);
			(void) cdviz_store_dead_letter(origin, msg->origin_ref, msg->in.body,
										   msg->in.body_len, &problems);
			cdviz_problems_reset(&problems);
			r.rejected++;
			continue;
		}
		for (int i = 0; i < env->nevents; i++)
		{
			if (env->events[i].problems.count == 0)
				continue;
			(void) cdviz_store_dead_letter_enveloped(origin, msg->origin_ref,
													 env->events[i].raw,
													 env->events[i].raw_len,
													 b->envelopes[m],
													 &env->events[i].problems);
			r.rejected++;
		}
	}
	return r;
}

/* See store_messages.h. */
void
cdviz_messages_release(CdvizMessageBatch *b)
{
	cdviz_store_release_items(b->items, b->nitems);
	for (int m = 0; m < b->nmsgs; m++)
		cdviz_envelope_free(&b->envs[m]);
	b->nitems = 0;
	b->nmsgs = 0;
}
