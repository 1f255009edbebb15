-- Read API, part 6: lineage through context.chainId and context.links.

CREATE FUNCTION cdviz.chain(chain text)
RETURNS TABLE (event_id bigint, "timestamp" timestamptz, type text, subject text,
			   predicate text, subject_id text, context_id text, context_source text,
			   payload jsonb)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT l.id, l."timestamp", l.type, l.subject, l.predicate, l.subject_id,
	   l.context_id, l.context_source, l.payload
FROM cdviz.cdevents_lake AS l
WHERE l.chain_id = chain
ORDER BY l."timestamp", l.id
$$;

COMMENT ON FUNCTION cdviz.chain(text) IS
'cdviz: the events of one chain (context.chainId), in timestamp order. Example: SELECT subject, predicate, "timestamp" FROM cdviz.chain(''4c8cb7dd-3448-41de-8768-eec704e2829b'')';
REVOKE EXECUTE ON FUNCTION cdviz.chain(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz.chain(text) TO cdviz_reader;

-- Walks cdviz.event_links from one event, in both directions, max_depth
-- hops away; an event is listed once, at its shortest distance.
CREATE FUNCTION cdviz.related(context text, max_depth int DEFAULT 1)
RETURNS TABLE (depth int, direction text, link_type text, link_kind text,
			   context_id text, event_id bigint, "timestamp" timestamptz, type text,
			   subject text, predicate text, subject_id text, payload jsonb)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
WITH RECURSIVE walk (context_id, depth, direction, link_type, link_kind, path) AS (
	SELECT context, 0, NULL::text, NULL::text, NULL::text, ARRAY[context]
	UNION ALL
	SELECT n.other, w.depth + 1, n.direction, n.link_type, n.link_kind, w.path || n.other
	FROM walk AS w
	CROSS JOIN LATERAL (
		SELECT k.linked_context_id AS other, 'outgoing' AS direction, k.link_type, k.link_kind
		FROM cdviz.event_links AS k
		WHERE k.context_id = w.context_id
		UNION ALL
		SELECT k.context_id, 'incoming', k.link_type, k.link_kind
		FROM cdviz.event_links AS k
		WHERE k.linked_context_id = w.context_id) AS n
	WHERE w.depth < max_depth AND n.other <> ALL (w.path)
), nearest AS (
	SELECT DISTINCT ON (w.context_id) w.*
	FROM walk AS w
	WHERE w.depth > 0
	ORDER BY w.context_id, w.depth, w.direction DESC
)
SELECT w.depth, w.direction, w.link_type, w.link_kind, w.context_id,
	   l.id, l."timestamp", l.type, l.subject, l.predicate, l.subject_id, l.payload
FROM nearest AS w
LEFT JOIN cdviz.cdevents_lake AS l ON l.context_id = w.context_id
ORDER BY w.depth, l."timestamp", w.context_id
$$;

COMMENT ON FUNCTION cdviz.related(text, int) IS
'cdviz: events linked to the event with context.id = context through context.links, both ways: outgoing (links this event carries: RELATION target, PATH/END from) and incoming (events whose links name it), up to max_depth hops (default 1), each once at its shortest depth. Event columns are NULL for a linked context id that is not in the lake.';
REVOKE EXECUTE ON FUNCTION cdviz.related(text, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz.related(text, int) TO cdviz_reader;
