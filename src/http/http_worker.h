/*
 * http_worker.h
 *	  The cdviz http worker, as seen from _PG_init.
 */
#ifndef CDVIZ_HTTP_WORKER_H
#define CDVIZ_HTTP_WORKER_H

/* Define the cdviz.http_* settings and register the worker. */
extern void cdviz_http_init(void);

#endif							/* CDVIZ_HTTP_WORKER_H */
