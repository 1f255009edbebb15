/*
 * summaries_worker.h
 *	  cdviz.summaries and the worker that folds deferred summaries.
 */
#ifndef CDVIZ_SUMMARIES_WORKER_H
#define CDVIZ_SUMMARIES_WORKER_H

/*
 * Define the settings (from _PG_init); when preloading, also register the
 * cdviz summaries worker.
 */
extern void cdviz_summaries_init(bool preloading);

#endif							/* CDVIZ_SUMMARIES_WORKER_H */
