/*
 * kinds.h
 *	  The run functions of the kinds of sources, for the table of kinds in
 *	  source_worker.c: a kind built into the library adds its function
 *	  here and its entry there.
 */
#ifndef CDVIZ_SOURCES_KINDS_H
#define CDVIZ_SOURCES_KINDS_H

#include "sources/source.h"

/* folder and s3 (poll_kinds.c): the poller's readers, one source each */
extern void cdviz_folder_source_run(const CdvizSource *src);
extern void cdviz_s3_source_run(const CdvizSource *src);

/* nats (nats_source.c) */
extern void cdviz_nats_source_run(const CdvizSource *src);

/* kafka (kafka_source.c) */
extern void cdviz_kafka_source_run(const CdvizSource *src);

/* oci (oci_source.c): a container registry's tags */
extern void cdviz_oci_source_run(const CdvizSource *src);

#endif							/* CDVIZ_SOURCES_KINDS_H */
