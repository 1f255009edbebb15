-- Whose rights a transformer runs with (src/webhook/webhook_transform.c),
-- through the webhook path a session can call: one owned by a role that is
-- no superuser runs with its owner's rights, what it may not do refused,
-- the settings it changes undone after it; one owned by a superuser runs
-- as its caller, what it sets undone after it all the same.  It is called
-- by its OID: a function of the same name taking a defaulted third
-- argument, which makes a call by name ambiguous, changes nothing.  (The
-- sources' workers: TAP 026_source_transformers_review.pl.)
BEGIN;
SET client_min_messages = warning;

SELECT plan(10);

CREATE ROLE cdviz_review_owner NOLOGIN IN ROLE cdviz_reader;
CREATE SCHEMA review_owner AUTHORIZATION cdviz_review_owner;

-- what it runs as, whether it could raise its owner's rights, and what it
-- found set: as a transformer's output, one event
CREATE FUNCTION pg_temp.probe_body() RETURNS text LANGUAGE sql AS $f$ SELECT $b$
DECLARE
	seen text := current_setting('review.left', true);
	denied text := '-';
BEGIN
	BEGIN
		EXECUTE 'ALTER ROLE cdviz_review_owner SUPERUSER';
		EXECUTE 'ALTER ROLE cdviz_review_owner NOSUPERUSER';
	EXCEPTION WHEN insufficient_privilege THEN
		denied := SQLSTATE;
	END;
	PERFORM set_config('review.left', 'by the transformer', false);
	RETURN NEXT cdviz.webhook_cdevent('artifact.published', '/review', '2024-05-01T10:00:00Z',
		'pkg:generic/probe@' || (body->>'n'), '{}')
		|| jsonb_build_object('customData', jsonb_build_object('user', current_user, 'denied', denied,
															  'seen', coalesce(nullif(seen, ''), '-')));
END
$b$ $f$;

SET ROLE cdviz_review_owner;
SELECT lives_ok(format($$CREATE FUNCTION review_owner.probe(headers jsonb, body jsonb)
	RETURNS SETOF jsonb LANGUAGE plpgsql AS %L$$, pg_temp.probe_body()),
	'a role that is no superuser owns a transformer');
RESET ROLE;
DO $d$
BEGIN
	EXECUTE format($$CREATE FUNCTION public.review_probe(headers jsonb, body jsonb)
		RETURNS SETOF jsonb LANGUAGE plpgsql AS %L$$, pg_temp.probe_body());
END
$d$;

SELECT cdviz.create_webhook('review-owned', 'review_owner.probe(jsonb,jsonb)', 'none');
SELECT cdviz.create_webhook('review-super', 'public.review_probe(jsonb,jsonb)', 'none');

SELECT is(w.status, 'stored', 'the owned transformer''s event is stored')
FROM cdviz.process_webhook('review-owned', '{}', '{"n": 1}') w;
SELECT is(concat_ws(' ', l.payload->'customData'->>'user', l.payload->'customData'->>'denied',
					l.payload->'customData'->>'seen'),
		  'cdviz_review_owner 42501 -',
		  'it ran as its owner, who may not make herself a superuser')
FROM cdviz.cdevents_lake l WHERE l.payload->'subject'->>'id' = 'pkg:generic/probe@1';
SELECT is(coalesce(nullif(current_setting('review.left', true), ''), '-'), '-',
		  'what it set is undone after it');

SELECT is(w.status, 'stored', 'the superuser''s transformer''s event is stored')
FROM cdviz.process_webhook('review-super', '{}', '{"n": 2}') w;
SELECT is(concat_ws(' ', l.payload->'customData'->>'user', l.payload->'customData'->>'denied'),
		  current_user || ' -', 'it ran as its caller, a superuser')
FROM cdviz.cdevents_lake l WHERE l.payload->'subject'->>'id' = 'pkg:generic/probe@2';

-- what the superuser's transformer set for delivery 2 is gone for delivery 3
SELECT is(w.status, 'stored', 'the superuser''s transformer runs again')
FROM cdviz.process_webhook('review-super', '{}', '{"n": 3}') w;
SELECT is(l.payload->'customData'->>'seen', '-',
		  'it does not see what it set for the delivery before')
FROM cdviz.cdevents_lake l WHERE l.payload->'subject'->>'id' = 'pkg:generic/probe@3';
SELECT is(coalesce(nullif(current_setting('review.left', true), ''), '-'), '-',
		  'nor does its caller after it');

-- a route whose function has an overload before its first call (a call by
-- name, planned then, would be ambiguous)
CREATE FUNCTION public.review_plain(headers jsonb, body jsonb) RETURNS SETOF jsonb LANGUAGE sql
	AS $$ SELECT cdviz.webhook_cdevent('artifact.published', '/review', '2024-05-01T10:00:00Z',
									   'pkg:generic/plain@' || (body->>'n'), '{}') $$;
CREATE FUNCTION public.review_plain(headers jsonb, body jsonb, extra int DEFAULT 0)
	RETURNS SETOF jsonb LANGUAGE sql
	AS $$ SELECT jsonb_build_object('ignored', 'the overload ran') $$;
SELECT cdviz.create_webhook('review-overload', 'public.review_plain(jsonb,jsonb)', 'none');
SELECT is(w.status, 'stored', 'an overload of its name does not make the route''s call ambiguous')
FROM cdviz.process_webhook('review-overload', '{}', '{"n": 4}') w;

SELECT * FROM finish();
ROLLBACK;
