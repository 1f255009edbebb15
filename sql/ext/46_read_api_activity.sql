-- Read API, part 8: rejected input, for dashboards.
--
-- cdviz.rejected_events keeps the raw text of every input that was not a
-- valid event, which may hold anything a client sent (tokens included), so
-- cdviz_reader cannot read it.  What a dashboard needs is where bad input
-- came from, when, and why it was refused: these two views give that
-- without the raw body (only its size).  Both are plain views over the
-- dead-letter table, indexed on received_at, so a
-- WHERE received_at >= now() - interval '7 days' is an index range scan.

CREATE VIEW cdviz.rejected_inputs AS
SELECT r.id,
	   r.received_at,
	   r.origin,
	   r.origin_ref,
	   octet_length(r.raw) AS raw_bytes,
	   CASE WHEN jsonb_typeof(r.problems) = 'array' THEN jsonb_array_length(r.problems) END AS problem_count,
	   (SELECT string_agg(coalesce(p.value ->> 'path', '?') || ': ' || coalesce(p.value ->> 'message', p.value::text),
						  '; ' ORDER BY p.ordinality)
		FROM jsonb_array_elements(CASE WHEN jsonb_typeof(r.problems) = 'array' THEN r.problems
									   ELSE '[]'::jsonb END) WITH ORDINALITY AS p) AS summary,
	   r.problems,
	   CASE WHEN r.replayed_at IS NULL THEN 'pending' ELSE 'replayed' END AS state,
	   r.replayed_at,
	   r.replayed_event_id
FROM cdviz.rejected_events AS r;

COMMENT ON VIEW cdviz.rejected_inputs IS
'cdviz: rejected input without its raw text, one row per cdviz.rejected_events row: when (received_at), where from (origin: sql, http, fs, s3, nats, webhook; origin_ref: HTTP peer and path, file:line, S3 key, batch index), raw_bytes (size of the input), problem_count, summary ("path: message; ..."), problems (JSON array of {path, message}), state (pending or replayed), replayed_at and replayed_event_id. WHERE received_at >= ... is an index range scan.';

-- One row per problem: what goes wrong most often.
CREATE VIEW cdviz.rejected_input_problems AS
SELECT r.id AS rejected_id,
	   r.received_at,
	   r.origin,
	   p.ordinality::int AS problem_index,
	   p.value ->> 'path' AS path,
	   coalesce(p.value ->> 'message', p.value::text) AS message
FROM cdviz.rejected_events AS r
CROSS JOIN LATERAL jsonb_array_elements(CASE WHEN jsonb_typeof(r.problems) = 'array' THEN r.problems
											  ELSE '[]'::jsonb END) WITH ORDINALITY AS p;

COMMENT ON VIEW cdviz.rejected_input_problems IS
'cdviz: one row per problem of each rejected input (cdviz.rejected_events without the raw text): rejected_id, received_at, origin, problem_index (1-based), path (JSON path of the problem, "$" for the whole input) and message. Example: SELECT path, message, count(*) FROM cdviz.rejected_input_problems WHERE received_at >= now() - interval ''7 days'' GROUP BY 1, 2 ORDER BY 3 DESC';

GRANT SELECT ON cdviz.rejected_inputs, cdviz.rejected_input_problems TO cdviz_reader;
