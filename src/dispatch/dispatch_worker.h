/*
 * dispatch_worker.h
 *	  Registration of the cdviz dispatcher worker, for _PG_init.
 */
#ifndef CDVIZ_DISPATCH_WORKER_H
#define CDVIZ_DISPATCH_WORKER_H

/* Define the dispatcher's settings and register it (preloaded only). */
extern void cdviz_dispatch_init(void);

#endif							/* CDVIZ_DISPATCH_WORKER_H */
