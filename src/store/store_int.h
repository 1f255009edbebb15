/*
 * store_int.h
 *	  What the files of the store share: the rows of a batch with their
 *	  dedup key (store_rows.c) and the lake's insert (store_lake.c), which
 *	  store.c drives.  store.c calls both, store_lake.c calls store_rows.c.
 */
#ifndef CDVIZ_STORE_INT_H
#define CDVIZ_STORE_INT_H

#include "postgres.h"

#include "datatype/timestamp.h"

#include "store/store.h"

#define N_LAKE_COLS 11
#define COL_TS 0
#define COL_ID 1
#define COL_SOURCE 2
#define COL_PAYLOAD 10

/*
 * The lake columns of the batch's valid events, one array per column, as
 * the INSERT takes them.  They are built right after each event's check,
 * so its json-c document can be freed at once: keeping thousands of them
 * alive until the INSERT would make malloc spend its time consolidating.
 */
typedef struct BatchRows
{
	int			nrows;
	int		   *item;			/* row -> index of its item */
	Datum	   *cols[N_LAKE_COLS];
	bool	   *nulls[N_LAKE_COLS];
	char	   *texts;			/* the text columns' values, one after another */
	Size		texts_used;
	Size		texts_size;
} BatchRows;

/* An open-addressing table of batch rows, keyed by the dedup key. */
typedef struct KeyTable
{
	int			size;			/* a power of two */
	int		   *slots;			/* row, or -1 */
	BatchRows  *rows;
} KeyTable;

/* store_rows.c */

/* Lake timestamp from the core's microseconds since 1970. */
extern TimestampTz cdviz_lake_timestamp(int64 epoch_us);

/* Room for the rows of nitems items whose input is input_bytes long. */
extern void cdviz_rows_init(BatchRows *b, int nitems, Size input_bytes);

/* Append a row for a checked event of item; its index. */
extern int	cdviz_rows_add(BatchRows *b, int item, const CdvizEventInfo *in, Jsonb *payload);

/* An empty key table for the rows of nitems items. */
extern void cdviz_keytable_init(KeyTable *t, BatchRows *rows, int nitems);

/* The slot of the row with this key, or the empty slot where it belongs. */
extern int *cdviz_keytable_slot(KeyTable *t, const char *src, size_t srclen,
								const char *id, size_t idlen, TimestampTz ts);

/*
 * The valid items of an all-or-nothing unit (items first .. upto-1, rows
 * from first_row) withheld, their rows taken back.
 */
extern void cdviz_rows_withhold_unit(CdvizItem *items, int first, int upto, BatchRows *rows,
									 KeyTable *keys, int first_row);

/* store_lake.c */

/*
 * Insert the batch's rows into the lake (its partitions made first), and
 * give each item its lake id: STORED, or DUPLICATE when the lake had it.
 * Inside SPI.
 */
extern void cdviz_lake_insert(CdvizItem *items, BatchRows *rows, KeyTable *keys);

#endif							/* CDVIZ_STORE_INT_H */
