# Transformers of oci sources (test/fixtures/sources/oci_transformers.sql),
# against a real registry (docker-registry, through registry_front.py):
# release tags published and environment tags made service.deployed, other
# tags ignored, the exact events asserted (ids from the registry, the
# repository, the tag, the digest and when it was seen); a transformer
# that raises: each
# release tag a dead letter of origin oci with its error, the other tags of
# the scan stored, the tags' rows advancing, a server stopped in the middle
# of the scan keeping each tag once (nothing twice, nothing missed); then
# the transformer fixed with CREATE OR REPLACE and
# cdviz.retransform_source() storing each event once, with the ids and
# times it would have had, and putting the source's counters right; a
# second run stores nothing.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use CdvizNode;
use RegistryTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $why = registry_available();
plan skip_all => $why if $why;

my $node = cdviz_node('oci_xform');
$node->start;
sub q1 { return $node->safe_psql('postgres', $_[0]); }
q1('CREATE EXTENSION cdviz');
q1(slurp_file("$FindBin::Bin/../fixtures/sources/oci_transformers.sql"));

my $reg = registry_start();
my $front = front_start(upstream => $reg->{url});
my $src = $front->{url};
my $hp = "127.0.0.1:$front->{port}";

sub status
{
	my ($cols) = @_;
	return q1("SELECT concat_ws(' ', $cols) FROM cdviz.source_status WHERE name = 'images'");
}

sub wait_until
{
	my ($sql, $what) = @_;
	ok($node->poll_query_until('postgres', $sql), $what)
	  or diag(status('state, items, events, duplicates, rejected, last_error') . "\n"
		  . q1("SELECT string_agg(origin_ref, E'\\n') FROM cdviz.rejected_events"));
	return;
}

sub purl
{
	my ($tag, $digest) = @_;
	(my $d = $digest) =~ s/:/%3A/;
	return "pkg:oci/app\@$d?repository_url=$hp/team/app&tag=$tag";
}

# The lake's events from the registry: context id (the time in it shown as
# <seen>), type, subject id, and for a deployment its environment and
# artifact; in context id order.
sub lake
{
	return q1(qq{SELECT string_agg(concat_ws(' ', regexp_replace(context_id, '\@[0-9T:.-]+Z#', '\@<seen>#'),
			(regexp_match(payload->'context'->>'type', 'cdevents\\.(\\w+\\.\\w+)\\.'))[1], subject_id,
			payload->'subject'->'content'->'environment'->>'id', payload->'subject'->'content'->>'artifactId'),
		E'\\n' ORDER BY context_id)
	FROM cdviz.cdevents_lake WHERE context_source = '$src'});
}

# ---- a transformer: releases published, environments deployed -------------
my $d = push_tags($reg->{url}, 'team/app', [qw(v1.0.0 latest production)]);
q1(qq{SELECT cdviz.create_source('images', 'oci', '$src', '{"repositories": ["team/app"], "poll_interval": 1,
	"initial": "backfill"}', transformer => 'public.registry_events(jsonb,jsonb)')});
wait_lake_count($node, $src, 2, 'the release tag and the environment tag make events, latest none');
is(lake(), join("\n",
	"$hp/team/app:production\@$d->{production}\@<seen>#0 service.deployed team/app production " . purl('production', $d->{production}),
	"$hp/team/app:v1.0.0\@$d->{'v1.0.0'}\@<seen>#0 artifact.published " . purl('v1.0.0', $d->{'v1.0.0'})),
	'the exact events: ids from the registry, repository, tag, digest and time seen; the release as the built-in mapping makes it');
is(q1(qq{SELECT count(*) FROM cdviz.cdevents_lake
	WHERE context_source = '$src' AND (regexp_match(context_id, '\@([0-9T:.-]+Z)#'))[1]::timestamptz = "timestamp"}), 2,
	'the time in the id is the event\'s timestamp');
is(q1(qq{SELECT count(*) FROM cdviz.cdevents_lake l JOIN cdviz.oci_tags t ON t.registry = '$src' AND t.tag = 'v1.0.0'
	WHERE l.context_source = '$src' AND l.payload->'customData'->>'digest' = t.digest
	  AND abs(extract(epoch FROM l."timestamp" - t.seen_at)) < 60}), 1,
	'the built-in mapping\'s customData and a timestamp from when the tag was seen');
is(status('items, events, duplicates, rejected'), '3 2 0 0', 'source_status: 3 tags, 2 events');

my $moved = push_tags($reg->{url}, 'team/app', ['production'], salt => 'hotfix');
wait_lake_count($node, $src, 3, 'an environment tag moved to another image is a deployment of it');
is(q1(qq{SELECT payload->'subject'->'content'->>'artifactId' FROM cdviz.cdevents_lake
	WHERE context_id LIKE '$hp/team/app:production\@$moved->{production}\@%'}),
	purl('production', $moved->{production}), 'of the image it points to now');

# ---- a transformer that raises on release tags ----------------------------
# the source paused, 24 release tags and an environment tag pushed, the
# registry slowed down, 4 tags per transaction; stopped in the middle
q1(q{SELECT cdviz.alter_source('images', transformer => 'public.buggy_registry_events(jsonb,jsonb)',
	options => '{"repositories": ["team/app"], "poll_interval": 1, "batch_size": 4}', paused => true)});
my @releases = map { "v2.0.$_" } 1 .. 24;
my $rd = push_tags($reg->{url}, 'team/app', [ @releases, 'staging' ]);
front_control($front, "delay_ms=100\n");
q1(q{SELECT cdviz.resume_source('images')});
my $letters = qq{SELECT count(*) FROM cdviz.rejected_events WHERE origin = 'oci' AND origin_ref LIKE '$hp/team/app:%'};
wait_until("SELECT ($letters) >= 4", 'bug: the first release tags are kept as dead letters');
my $mid = q1($letters);
$node->stop('immediate');
$node->start;
front_control($front, '');
cmp_ok($mid, '<', 24, "the server stopped in the middle of the scan ($mid of 24 kept)");
wait_until("SELECT ($letters) = 24", 'bug: after the restart, each release tag is a dead letter');
wait_until(qq{SELECT count(*) = 1 FROM cdviz.cdevents_lake WHERE context_id LIKE '$hp/team/app:staging\@$rd->{staging}\@%'},
	'bug: the environment tag of the same scan is stored');
wait_scans($node, 'images', 2);
is(q1(qq{SELECT count(*) || ' ' || count(DISTINCT origin_ref) FROM cdviz.rejected_events WHERE origin = 'oci'}), '24 24',
	'bug: later scans and the restart keep each tag once');
is(q1(qq{SELECT count(*) FROM cdviz.oci_tags WHERE registry = '$src' AND tag LIKE 'v2.0.%' AND emitted}), 24,
	'bug: the tags\' rows advanced with their dead letters');
is(q1(qq{SELECT concat_ws(' ', origin, origin_ref, length(raw), envelope->>'mode', envelope->>'source',
		envelope->>'transformer', envelope->>'sqlstate', envelope->'meta'->>'kind',
		envelope->'meta'->>'id' = origin_ref || '\@' || (envelope->'meta'->>'seen_at'),
		envelope->'meta'->>'source_uri', envelope->'meta'->>'tag', envelope->'meta'->>'digest',
		envelope->'meta'->>'mtime' = envelope->'meta'->>'seen_at', problems->0->>'message')
	FROM cdviz.rejected_events WHERE origin_ref LIKE '%:v2.0.7@%'}),
	"oci $hp/team/app:v2.0.7\@$rd->{'v2.0.7'} 0 transformer images public.buggy_registry_events 22012 oci "
	  . "t $src v2.0.7 $rd->{'v2.0.7'} t "
	  . 'transformer public.buggy_registry_events failed: division by zero',
	'bug: a dead letter per tag: origin oci, its meta, no body, the error and its SQLSTATE');
is(lake_count($node, $src), 4, 'bug: no event of the release tags');
is(status('state, items, events, rejected'), 'running 28 4 24', 'bug: the source runs, its rejected tags counted');
like(slurp_file($node->logfile),
	qr/\Q$hp\E\/team\/app:v2\.0\.\d+\@sha256:\w+: transformer public\.buggy_registry_events failed: division by zero\n.*HINT:  The tag is kept in cdviz\.rejected_events; fix the transformer, then SELECT \* FROM cdviz\.retransform_source\('images'\)\./,
	'bug: logged with what to do');

is(q1(q{SELECT concat_ws(' ', items, stored, failed) FROM cdviz.retransform_source('images')}), '24 0 24',
	'bug: retransform_source before the fix fails on each');
my $kept = q1(qq{SELECT string_agg((envelope->'meta'->>'id') || '#0 ' || (envelope->'meta'->>'seen_at')::timestamptz, E'\n'
		ORDER BY envelope->'meta'->>'id')
	FROM cdviz.rejected_events WHERE origin = 'oci'});

# ---- fixed ------------------------------------------------------------------
q1(q{CREATE OR REPLACE FUNCTION public.buggy_registry_events(meta jsonb, body jsonb)
	RETURNS SETOF jsonb LANGUAGE sql STABLE AS 'SELECT * FROM public.registry_events(meta, body)'});
is(q1(q{SELECT concat_ws(' ', items, stored, duplicates, rejected, failed) FROM cdviz.retransform_source('images')}),
	'24 24 0 0 0', 'fixed: retransform_source stores an event for each tag');
is(q1(qq{SELECT string_agg(l.context_id || ' ' || l."timestamp", E'\n' ORDER BY l.context_id)
	FROM cdviz.cdevents_lake l JOIN cdviz.oci_tags t ON t.registry = '$src' AND l.context_id LIKE '$hp/team/app:' || t.tag || '\@' || t.digest || '\@%'
	WHERE l.context_source = '$src' AND t.tag LIKE 'v2.0.%' AND l.type = 'dev.cdevents.artifact.published.0.3.0'
	  AND l.subject_id = cdviz.webhook_oci_purl('$hp/team/app:' || t.tag, t.digest)}), $kept,
	'fixed: each release tag published once, with the id and time it would have had');
is(q1($letters), 0, 'fixed: the dead letters are gone');
is(status('events, duplicates, rejected'), '28 0 0', 'fixed: the source counts the events, no rejection');
is(q1(q{SELECT concat_ws(' ', items, stored, duplicates, rejected, failed) FROM cdviz.retransform_source('images')}),
	'0 0 0 0 0', 'fixed: run again, it finds nothing to do');
wait_scans($node, 'images', 1);
is(lake_count($node, $src), 28, 'fixed: later scans store nothing more');

front_stop($front);
registry_stop($reg);
$node->stop;
done_testing();
