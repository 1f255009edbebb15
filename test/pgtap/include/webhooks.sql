-- What the webhook pgTAP files share (included after their BEGIN): every
-- fixture of test/fixtures/webhooks/ in webhook_fixture(path, body), and
-- post(route, headers, fixture): one delivery of a fixture, through
-- cdviz.process_webhook (what the http worker calls after checking
-- credentials); ev(event_ids, n): the nth stored event.
\set QUIET on
\ir ../../fixtures/webhooks/load.sql

CREATE FUNCTION pg_temp.post(route text, headers jsonb, fixture text)
RETURNS TABLE (status text, delivery_id bigint, event_ids bigint[], stored bigint, error text)
LANGUAGE sql AS $$
	SELECT p.status, p.delivery_id, p.event_ids, p.stored, p.error
	FROM cdviz.process_webhook(route, headers, (SELECT f.body FROM webhook_fixture f WHERE f.path = fixture)) p
$$;
CREATE FUNCTION pg_temp.ev(ids bigint[], n int DEFAULT 1)
RETURNS jsonb LANGUAGE sql AS $$
	SELECT l.payload FROM cdviz.cdevents_lake l WHERE l.id = ids[n]
$$;
\set QUIET off
