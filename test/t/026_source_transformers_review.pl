# Source transformers, second look: whose rights a transformer runs with,
# and cdviz.retransform_source() run from two sessions at once.
#
# A superuser may name as a source's transformer a function that another
# role owns.  That role can replace the function's body whenever it
# likes; the source's worker is a superuser.  The function must then run
# with its owner's rights, and what it sets (search_path...) must not
# stay behind in the worker's session, whose own statements follow.
#
# A transformer owned by a superuser runs as the worker, but what it sets
# is undone after each item all the same: the next item's call must not
# depend on the one before.  It is called by its OID, so a function of the
# same name taking a defaulted third argument, which would make a call by
# name ambiguous, changes nothing.
#
# Two sessions running retransform_source() over the same dead letters:
# the second waits for the first and finds nothing left, rather than
# failing on a dead letter the first removed.
use strict;
use warnings;
use File::Path qw(make_path);
use FindBin;
use lib $FindBin::Bin;
use CdvizNode;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $tmp = PostgreSQL::Test::Utils::tempdir();
make_path("$tmp/$_") for qw(alice root over bug);

my $node = cdviz_node('xform_review');
$node->start;
sub q1 { return $node->safe_psql('postgres', $_[0]); }
q1('CREATE EXTENSION cdviz');

# ---- a transformer owned by a role that is no superuser --------------------
# (the helpers of schema cdviz are hers to call, as cdviz_reader's)
q1(q{CREATE ROLE alice LOGIN IN ROLE cdviz_reader;
	CREATE SCHEMA alice AUTHORIZATION alice;
	SET ROLE alice;
	CREATE FUNCTION alice.files(meta jsonb, body jsonb) RETURNS SETOF jsonb LANGUAGE sql
		AS $$ SELECT jsonb_build_object('ignored', 'not yet') $$;
	RESET ROLE});
q1(qq{SELECT cdviz.create_source('alice', 'folder', '$tmp/alice', '{"format": "metadata", "poll_interval": 1}',
	transformer => 'alice.files(jsonb,jsonb)')});
# alice, on her own, makes her function try what a superuser may do, and
# leave a setting behind; each event says whose rights it ran with and
# what it found set (once set, a setting undone is empty, no longer NULL)
$node->safe_psql('postgres', q{CREATE OR REPLACE FUNCTION alice.files(meta jsonb, body jsonb)
	RETURNS SETOF jsonb LANGUAGE plpgsql AS $$
	DECLARE
		seen text := current_setting('review.left', true);
		denied text;
	BEGIN
		BEGIN
			EXECUTE 'ALTER ROLE alice SUPERUSER';
		EXCEPTION WHEN insufficient_privilege THEN
			denied := SQLSTATE;
		END;
		PERFORM set_config('review.left', meta->>'name', false);
		RETURN NEXT cdviz.webhook_cdevent('artifact.published', meta->>'source_uri', meta->>'mtime',
			'pkg:generic/' || (meta->>'name') || '@1', '{}')
			|| jsonb_build_object('customData', jsonb_build_object('user', current_user,
				'denied', denied, 'seen', seen));
	END
	$$}, extra_params => [ '-U', 'alice' ]);
drop_file("$tmp/alice", $_, "$_\n") for qw(a-1.tgz b-1.tgz);
wait_lake_count($node, "file://$tmp/alice", 2, 'owner: both files stored');
is(q1(q{SELECT rolsuper FROM pg_roles WHERE rolname = 'alice'}), 'f',
	'owner: the transformer did not make its owner a superuser');
is(q1(qq{SELECT string_agg(concat_ws(' ', payload->'customData'->>'user', payload->'customData'->>'denied',
		coalesce(nullif(payload->'customData'->>'seen', ''), '-')), ', ' ORDER BY context_id)
	FROM cdviz.cdevents_lake WHERE context_source = 'file://$tmp/alice'}),
	'alice 42501 -, alice 42501 -',
	'owner: it ran as its owner, refused what she may not do, and what it set did not stay');
is(q1(qq{SELECT count(*) FROM cdviz.rejected_events WHERE origin_ref LIKE '$tmp/alice/%'}), '0',
	'owner: no dead letter');

# ---- a superuser's transformer; an overload of a transformer's name -------
q1(q{CREATE FUNCTION public.stamp(meta jsonb, body jsonb) RETURNS SETOF jsonb LANGUAGE plpgsql AS $$
	DECLARE
		seen text := current_setting('review.root', true);
	BEGIN
		PERFORM set_config('review.root', meta->>'name', false);
		RETURN NEXT cdviz.webhook_cdevent('artifact.published', meta->>'source_uri', meta->>'mtime',
			'pkg:generic/' || (meta->>'name') || '@1', '{}')
			|| jsonb_build_object('customData', jsonb_build_object('seen', seen));
	END
	$$});
q1(qq{SELECT cdviz.create_source('root', 'folder', '$tmp/root', '{"format": "metadata", "poll_interval": 1}',
	transformer => 'public.stamp(jsonb,jsonb)')});
drop_file("$tmp/root", $_, "$_\n") for qw(c-1.tgz d-1.tgz);
wait_lake_count($node, "file://$tmp/root", 2, 'superuser: both files stored');
is(q1(qq{SELECT string_agg(coalesce(nullif(payload->'customData'->>'seen', ''), '-'), ', ')
	FROM cdviz.cdevents_lake WHERE context_source = 'file://$tmp/root'}),
	'-, -', 'superuser: what it set for one item did not stay for the next');

# (the overload exists before the worker's first call: a call by name,
# planned then, would be ambiguous)
q1(q{CREATE FUNCTION public.plain(meta jsonb, body jsonb) RETURNS SETOF jsonb LANGUAGE sql AS $$
		SELECT cdviz.webhook_cdevent('artifact.published', meta->>'source_uri', meta->>'mtime',
			'pkg:generic/' || (meta->>'name') || '@1', '{}') $$;
	CREATE FUNCTION public.plain(meta jsonb, body jsonb, extra int DEFAULT 0) RETURNS SETOF jsonb
		LANGUAGE sql AS $$ SELECT jsonb_build_object('ignored', 'the overload ran') $$});
q1(qq{SELECT cdviz.create_source('over', 'folder', '$tmp/over', '{"format": "metadata", "poll_interval": 1}',
	transformer => 'public.plain(jsonb,jsonb)')});
drop_file("$tmp/over", 'e-1.tgz', "e\n");
ok($node->poll_query_until('postgres', qq{SELECT count(*) = 1 FROM cdviz.fs_files
	WHERE source = '$tmp/over' AND events + rejected > 0}), 'overload: the file was read');
is(lake_count($node, "file://$tmp/over"), '1', 'overload: its event is stored, the source\'s function ran');
is(q1(qq{SELECT count(*) FROM cdviz.rejected_events WHERE origin_ref LIKE '$tmp/over/%'}), '0',
	'overload: no dead letter');

# ---- retransform_source() from two sessions --------------------------------
q1(q{CREATE FUNCTION public.flaky(meta jsonb, body jsonb) RETURNS SETOF jsonb LANGUAGE plpgsql AS $$
	BEGIN
		RAISE EXCEPTION 'not fixed yet';
	END
	$$});
q1(qq{SELECT cdviz.create_source('bug', 'folder', '$tmp/bug', '{"format": "metadata", "poll_interval": 1}',
	transformer => 'public.flaky(jsonb,jsonb)')});
drop_file("$tmp/bug", "f$_.tgz", "$_\n") for 1 .. 3;
ok($node->poll_query_until('postgres',
	qq{SELECT count(*) = 3 FROM cdviz.rejected_events WHERE origin_ref LIKE '$tmp/bug/%'}),
	'concurrent: three dead letters');
q1(q{CREATE OR REPLACE FUNCTION public.flaky(meta jsonb, body jsonb) RETURNS SETOF jsonb LANGUAGE sql AS $$
	SELECT cdviz.webhook_cdevent('artifact.published', meta->>'source_uri', meta->>'mtime',
		'pkg:generic/' || (meta->>'name') || '@1', '{}') $$});

my $first = $node->background_psql('postgres');
$first->query_safe('BEGIN');
is($first->query_safe(q{SELECT concat_ws(' ', items, stored, failed) FROM cdviz.retransform_source('bug')}),
	'3 3 0', 'concurrent: the first session recovers the three');
my $second = $node->background_psql('postgres');
$second->query_until(qr/started/, q{\echo started
CREATE TABLE second_run AS SELECT * FROM cdviz.retransform_source('bug');
});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM pg_stat_activity
	WHERE query LIKE 'CREATE TABLE second_run%' AND wait_event_type = 'Lock'}),
	'concurrent: the second waits for the first');
$first->query_safe('COMMIT');
$first->quit;
# (psql ends by itself when its statement fails)
eval { $second->quit; };
my ($rc, $out, $err) = $node->psql('postgres',
	q{SELECT concat_ws(' ', items, stored, duplicates, rejected, failed) FROM second_run});
is($out, '0 0 0 0 0', 'concurrent: the second finds nothing left to do') or diag($err);
is(lake_count($node, "file://$tmp/bug"), '3', 'concurrent: each event stored once');
is(q1(qq{SELECT count(*) FROM cdviz.rejected_events WHERE origin_ref LIKE '$tmp/bug/%'}), '0',
	'concurrent: no dead letter left');
is(q1(qq{SELECT string_agg(events || '/' || rejected, ' ') FROM cdviz.fs_files WHERE source = '$tmp/bug'}),
	'1/0 1/0 1/0', 'concurrent: each file counted once');

$node->stop;
done_testing();
