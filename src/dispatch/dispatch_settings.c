/*
 * dispatch_settings.c
 *	  The dispatcher's settings, read by the loop, the SQL side, the NATS
 *	  connection, the NATS source and the NATS sink.
 */
#include "postgres.h"

#include "dispatch/dispatch.h"
#include "common/worker.h"

int			cdviz_dispatch_interval = 500;
int			cdviz_dispatch_chunk = 1000;
char	   *cdviz_nats_url = NULL;
char	   *cdviz_nats_subjects = NULL;
char	   *cdviz_nats_stream = NULL;
char	   *cdviz_nats_consumer = NULL;
int			cdviz_nats_stream_check_interval = 60;

static const CdvizSetting settings[] = {
	{"cdviz.dispatch_interval", "Milliseconds between the dispatcher's looks for new events when idle.", "A busy dispatcher reads the next chunk as soon as one is delivered.  Reloaded on SIGHUP.", PGC_SIGHUP, GUC_UNIT_MS, .int_var = &cdviz_dispatch_interval, .int_default = 500, .min = 10, .max = 60000},
	{"cdviz.dispatch_chunk", "Events the dispatcher reads per sink at once.", "Progress is recorded once per chunk: larger chunks cost fewer transactions, and redeliver more after a crash.  Reloaded on SIGHUP.", PGC_SIGHUP, 0, .int_var = &cdviz_dispatch_chunk, .int_default = 1000, .min = 1, .max = 100000},
	{"cdviz.nats_url", "NATS server(s) of the nats sinks and the NATS source (comma-separated URLs).", "May carry credentials (nats://user:password@host:4222), hence superuser only.  Reloaded on SIGHUP.", PGC_SIGHUP, GUC_SUPERUSER_ONLY, .string_var = &cdviz_nats_url, .string_default = "nats://127.0.0.1:4222"},
	{"cdviz.nats_subjects", "NATS subjects the dispatcher subscribes to and ingests (comma-separated, wildcards allowed); empty disables the NATS source.", "Reloaded on SIGHUP.", PGC_SIGHUP, 0, .string_var = &cdviz_nats_subjects, .string_default = ""},
	{"cdviz.nats_stream", "JetStream stream the NATS source reads with a durable consumer; empty: a plain subscription.", "With a stream, a message is acknowledged only after the transaction that stored it committed (at least once; dedup stores it once).  A plain subscription loses what arrives while the worker is down.  Reloaded on SIGHUP.", PGC_SIGHUP, 0, .string_var = &cdviz_nats_stream, .string_default = ""},
	{"cdviz.nats_consumer", "Name of the durable JetStream consumer of the NATS source.", "Reloaded on SIGHUP.", PGC_SIGHUP, 0, .string_var = &cdviz_nats_consumer, .string_default = "cdviz"},
	{"cdviz.nats_stream_check_interval", "Seconds after which a nats sink in jetstream = auto mode looks again which streams take a subject.", "The look-up is a JetStream API request answered in the background; until its answer the previous one is used.  Reloaded on SIGHUP.", PGC_SIGHUP, GUC_UNIT_S, .int_var = &cdviz_nats_stream_check_interval, .int_default = 60, .min = 1, .max = 86400},
};

/* Define the settings (from _PG_init, preloaded). */
void
dispatch_define_settings(void)
{
	cdviz_worker_define_settings(settings, lengthof(settings));
}
