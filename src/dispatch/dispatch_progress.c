/*
 * dispatch_progress.c
 *	  What the sinks report to the dispatcher's loop: events settled,
 *	  attempts failed (and when to try again), and wake-ups from the
 *	  threads of client libraries.
 *
 * Apart from the loop so that a sink reports without calling back into
 * the file that calls it: the loop reads what is recorded here.
 */
#include "postgres.h"

#include <fcntl.h>
#include <math.h>
#include <unistd.h>

#include "common/pg_prng.h"
#include "utils/memutils.h"

#include "dispatch/dispatch.h"

bool		dispatch_progressed = false;
bool		dispatch_sockets_changed = true;

static int	wake_pipe[2] = {-1, -1};

/* The pipe dispatch_wake() writes to, non-blocking at both ends. */
void
dispatch_wake_open(void)
{
	if (pipe(wake_pipe) != 0 ||
		fcntl(wake_pipe[0], F_SETFL, O_NONBLOCK) != 0 ||
		fcntl(wake_pipe[1], F_SETFL, O_NONBLOCK) != 0)
		ereport(ERROR, (errmsg("cdviz dispatcher: could not create a pipe: %m")));
}

/* The end of the pipe the loop waits on. */
int
dispatch_wake_fd(void)
{
	return wake_pipe[0];
}

/* Empty the pipe once the loop woke up. */
void
dispatch_wake_drain(void)
{
	char		buf[256];

	while (read(wake_pipe[0], buf, sizeof(buf)) > 0)
		;
}

/* Wake the loop; safe from libnats threads (a write(2), nothing else). */
void
dispatch_wake(void)
{
	char		c = 1;

	if (wake_pipe[1] >= 0)
		(void) !write(wake_pipe[1], &c, 1);
}

/*
 * A delivery attempt failed: retry the same events after an exponential
 * backoff with jitter (half to all of the step), so that a receiver
 * coming back is not hit by every sender at the same instant.
 */
void
dispatch_sink_failed(Sink *sink, const char *fmt,...)
{
	char		buf[1200];
	va_list		ap;
	double		step;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	sink->attempts++;
	sink->failures++;
	if (sink->last_error)
		free(sink->last_error);
	sink->last_error = strdup(buf);
	step = sink->initial_backoff_ms * pow(2.0, Min(sink->attempts - 1, 30));
	step = Min(step, (double) sink->max_backoff_ms);
	step *= 0.5 + 0.5 * pg_prng_double(&pg_global_prng_state);
	sink->retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), (int64) step);
	/* the first failure and then fewer and fewer lines */
	if ((sink->attempts & (sink->attempts - 1)) == 0)
		ereport(LOG,
				(errmsg("cdviz dispatcher: delivery to sink \"%s\" failed (attempt %d), retrying in %.1f s",
						sink->name, sink->attempts, step / 1000.0),
				 errdetail_internal("%s", buf)));
}

/*
 * Events [next, upto) of the chunk are settled: delivered (status 0) or
 * refused for good (an HTTP status, with the start of the answer).
 */
void
dispatch_chunk_settle(Sink *sink, int upto, int status, const char *response)
{
	DispatchChunk *chunk = sink->chunk;

	Assert(upto <= chunk->nevents);
	for (int i = chunk->next; i < upto; i++)
	{
		if (status == 0)
			chunk->delivered++;
		else
		{
			DispatchRejection *rej = &chunk->rejections[chunk->nrejections++];

			rej->event = i;
			rej->status = status;
			rej->response = response ? MemoryContextStrdup(chunk->cxt, response) : NULL;
		}
	}
	chunk->next = upto;
	sink->attempts = 0;
	sink->retry_at = 0;
}

/* Part of a chunk was settled: the loop goes round again without waiting. */
void
dispatch_sink_progressed(Sink *sink)
{
	dispatch_progressed = true;
}

/* Whether the sink holds a chunk whose every event is settled. */
bool
dispatch_chunk_settled(Sink *sink)
{
	return sink->chunk && sink->chunk->next >= sink->chunk->nevents;
}
