/*
 * store_rows.c
 *	  The rows of a batch, one array per lake column as the INSERT takes
 *	  them, and their dedup key (context_source, context_id, timestamp) in
 *	  an open-addressing table: duplicates inside one batch are found here,
 *	  since ON CONFLICT cannot report which row a skipped one collided with.
 */
#include "postgres.h"

#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "store/store_int.h"

/* Lake timestamp from the core's microseconds since 1970. */
TimestampTz
cdviz_lake_timestamp(int64 epoch_us)
{
	return (TimestampTz) (epoch_us -
						  ((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY));
}

/*
 * Room for the rows of nitems items whose input is at most input_bytes
 * long.  The text columns are copied into one buffer taken here: every one
 * is a part of a JSON string of the input, so the input's size bounds them.
 * Taken piece by piece, the memory context's growing blocks would be
 * large allocations made between the parser's many small frees, each
 * making malloc merge its free lists again.
 */
void
cdviz_rows_init(BatchRows *b, int nitems, Size input_bytes)
{
	b->nrows = 0;
	b->item = palloc(sizeof(int) * nitems);
	for (int c = 0; c < N_LAKE_COLS; c++)
	{
		b->cols[c] = palloc(sizeof(Datum) * nitems);
		b->nulls[c] = palloc0(sizeof(bool) * nitems);
	}
	b->texts_size = input_bytes + (Size) nitems * (N_LAKE_COLS - 2) * MAXALIGN(VARHDRSZ + 1);
	b->texts = palloc_extended(b->texts_size, MCXT_ALLOC_HUGE);
	b->texts_used = 0;
}

/* A text column's value, in the batch's buffer (palloc'd if it is full). */
static Datum
text_datum(BatchRows *b, CdvizStr s, bool *isnull)
{
	Size		need = VARHDRSZ + s.len;
	text	   *t;

	*isnull = (s.ptr == NULL);
	if (s.ptr == NULL)
		return (Datum) 0;
	if (b->texts_used + MAXALIGN(need) > b->texts_size)
		return PointerGetDatum(cstring_to_text_with_len(s.ptr, (int) s.len));
	t = (text *) (b->texts + b->texts_used);
	b->texts_used += MAXALIGN(need);
	SET_VARSIZE(t, need);
	memcpy(VARDATA(t), s.ptr, s.len);
	return PointerGetDatum(t);
}

/* Append a row for a checked event; its index. */
int
cdviz_rows_add(BatchRows *b, int item, const CdvizEventInfo *in, Jsonb *payload)
{
	int			r = b->nrows++;
	const CdvizStr *text_cols[N_LAKE_COLS] = {NULL, &in->context_id, &in->context_source,
		&in->type, &in->subject, &in->predicate, &in->type_version, &in->spec_version,
	&in->subject_id, &in->chain_id, NULL};

	b->item[r] = item;
	b->cols[COL_TS][r] = TimestampTzGetDatum(cdviz_lake_timestamp(in->timestamp_us));
	for (int c = COL_ID; c < COL_PAYLOAD; c++)
		b->cols[c][r] = text_datum(b, *text_cols[c], &b->nulls[c][r]);
	b->cols[COL_PAYLOAD][r] = JsonbPGetDatum(payload);
	return r;
}

/* FNV-1a over the key's parts. */
static uint64
key_hash(const char *src, size_t srclen, const char *id, size_t idlen, TimestampTz ts)
{
	uint64		h = UINT64CONST(14695981039346656037);

	for (size_t i = 0; i < srclen; i++)
		h = (h ^ (unsigned char) src[i]) * UINT64CONST(1099511628211);
	h = (h ^ 0xff) * UINT64CONST(1099511628211);
	for (size_t i = 0; i < idlen; i++)
		h = (h ^ (unsigned char) id[i]) * UINT64CONST(1099511628211);
	return h ^ (uint64) ts * UINT64CONST(0x9E3779B97F4A7C15);
}

/* Whether text t is the len bytes at b. */
static bool
text_eq(Datum t, const char *b, size_t blen)
{
	text	   *a = DatumGetTextPP(t);

	return VARSIZE_ANY_EXHDR(a) == blen && memcmp(VARDATA_ANY(a), b, blen) == 0;
}

/* See store_int.h. */
void
cdviz_keytable_init(KeyTable *t, BatchRows *rows, int nitems)
{
	t->size = 16;
	while (t->size < nitems * 2)
		t->size <<= 1;
	t->slots = palloc(sizeof(int) * t->size);
	memset(t->slots, -1, sizeof(int) * t->size);
	t->rows = rows;
}

/* Find the row with this key, or the empty slot where it belongs. */
int *
cdviz_keytable_slot(KeyTable *t, const char *src, size_t srclen,
			  const char *id, size_t idlen, TimestampTz ts)
{
	int			pos = (int) (key_hash(src, srclen, id, idlen, ts) & (t->size - 1));

	for (;;)
	{
		int		   *slot = &t->slots[pos];
		int			r = *slot;

		if (r < 0)
			return slot;
		if (DatumGetTimestampTz(t->rows->cols[COL_TS][r]) == ts &&
			text_eq(t->rows->cols[COL_SOURCE][r], src, srclen) &&
			text_eq(t->rows->cols[COL_ID][r], id, idlen))
			return slot;
		pos = (pos + 1) & (t->size - 1);
	}
}

/*
 * An invalid item in an all-or-nothing unit that began at item first and
 * row first_row: the unit's valid items so far are withheld.  Their rows
 * are the batch's last ones (a unit's items are adjacent), so they are
 * taken off the end and out of the key table in the reverse order of
 * their insertion, which leaves the open-addressing table as if they had
 * never been there.
 */
void
cdviz_rows_withhold_unit(CdvizItem *items, int first, int upto, BatchRows *rows, KeyTable *keys,
			  int first_row)
{
	for (int r = rows->nrows - 1; r >= first_row; r--)
	{
		int		   *slot;
		text	   *src = DatumGetTextPP(rows->cols[COL_SOURCE][r]);
		text	   *cid = DatumGetTextPP(rows->cols[COL_ID][r]);

		slot = cdviz_keytable_slot(keys, VARDATA_ANY(src), VARSIZE_ANY_EXHDR(src),
							 VARDATA_ANY(cid), VARSIZE_ANY_EXHDR(cid),
							 DatumGetTimestampTz(rows->cols[COL_TS][r]));
		Assert(*slot == r);
		*slot = -1;
		items[rows->item[r]].status = CDVIZ_ITEM_WITHHELD;
	}
	rows->nrows = first_row;
	for (int i = first; i < upto; i++)
	{
		if (items[i].first_of_key >= 0)
		{
			items[i].status = CDVIZ_ITEM_WITHHELD;
			items[i].first_of_key = -1;
		}
	}
}
