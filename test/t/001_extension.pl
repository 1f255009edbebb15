# Extension lifecycle: CREATE EXTENSION without shared_preload_libraries, in
# two databases of one cluster; DROP EXTENSION leaves nothing but the roles.
use strict;
use warnings;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('ext');
$node->init;
$node->start;

my $event = q({"context": {"specversion": "0.5.1", "id": "e-1", "source": "/t",
	"type": "dev.cdevents.build.finished.0.3.0", "timestamp": "2024-04-01T00:00:00Z"},
	"subject": {"id": "b-1", "content": {"artifactId": "pkg:generic/b@1"}}});

# objects in the catalogs that CREATE EXTENSION may leave behind
my $leftovers = q{
	SELECT (SELECT count(*) FROM pg_namespace WHERE nspname = 'cdviz')
	     + (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	        WHERE n.nspname = 'cdviz')
	     + (SELECT count(*) FROM pg_proc WHERE proname LIKE '%cdviz%')
	     + (SELECT count(*) FROM pg_trigger WHERE tgname LIKE '%cdviz%')
};

$node->safe_psql('postgres', 'CREATE DATABASE one');
$node->safe_psql('postgres', 'CREATE DATABASE two');
is($node->safe_psql('one', $leftovers), '0', 'nothing of cdviz before CREATE EXTENSION');

$node->safe_psql('one', 'CREATE EXTENSION cdviz');
$node->safe_psql('two', 'CREATE EXTENSION cdviz');
is($node->safe_psql('postgres',
	"SELECT count(*) FROM pg_roles WHERE rolname IN ('cdviz_reader', 'cdviz_writer')"),
	'2', 'both roles exist once');

ok($node->safe_psql('one', "SELECT cdviz.ingest('$event')") > 0,
	'ingest works without shared_preload_libraries');
ok($node->safe_psql('two', "SELECT cdviz.ingest('$event')") > 0,
	'and in the second database');
is($node->safe_psql('two', 'SELECT count(*) FROM cdviz.cdevents_lake'), '1',
	'each database has its own lake');

$node->safe_psql('one', 'DROP EXTENSION cdviz');
is($node->safe_psql('one', $leftovers), '0', 'DROP EXTENSION leaves no object behind');
is($node->safe_psql('postgres',
	"SELECT count(*) FROM pg_roles WHERE rolname IN ('cdviz_reader', 'cdviz_writer')"),
	'2', 'the roles stay for the other database');
is($node->safe_psql('two', 'SELECT count(*) FROM cdviz.cdevents_lake'), '1',
	'the other database is untouched');

# and it can be created again, in the same session as it was dropped
$node->safe_psql('one', 'CREATE EXTENSION cdviz');
ok($node->safe_psql('one', "SELECT cdviz.ingest('$event')") > 0,
	'created again after a drop, it ingests');

# the cached plans of a session survive DROP/CREATE in that session
my $out = $node->safe_psql('two', qq{
	SELECT cdviz.ingest('$event');
	DROP EXTENSION cdviz;
	CREATE EXTENSION cdviz;
	SELECT cdviz.ingest('$event') > 0;
});
like($out, qr/t$/, 'a session that dropped and recreated the extension still ingests');

# The lake trigger's statements are planned once per session and kept (the
# http worker keeps its connection for days): planned while the history was
# vacuumed empty, they must still probe it by key once it is large.
$node->safe_psql('one', 'CREATE EXTENSION IF NOT EXISTS cdviz');
$node->safe_psql('one', 'VACUUM cdviz.environment_history, cdviz.environment_state');
sub deploy
{
	my ($id, $svc, $ts) = @_;
	return qq(DO \$\$ BEGIN PERFORM cdviz.ingest('{"context": {"specversion": "0.5.1", "id": "$id", "source": "/t",
		"type": "dev.cdevents.service.deployed.0.3.0", "timestamp": "$ts"},
		"subject": {"id": "$svc", "content": {"environment": {"id": "prod"}, "artifactId": "pkg:generic/$svc\@$id"}}}'); END \$\$;);
}
is($node->safe_psql('one', deploy('d-0', 'api', '2024-04-01T00:00:00Z') . q{
BEGIN;
INSERT INTO cdviz.environment_history (event_id, environment_id, service_id, predicate, artifact_id, valid_from, context_id)
SELECT -g, 'prod', 'svc-' || (g % 500), 'deployed', 'pkg:generic/x@' || g, '2024-03-01'::timestamptz + g * interval '1 minute', 'h-' || g
FROM generate_series(1, 20000) g;
} . deploy('d-1', 'api', '2024-04-02T00:00:00Z') . deploy('d-2', 'svc-7', '2024-04-03T00:00:00Z') . q{
SELECT seq_scan FROM pg_stat_xact_user_tables WHERE relid = 'cdviz.environment_history'::regclass;
COMMIT;
}), '0', 'the trigger probes a grown history by key with plans made when it was empty');

# Concurrent writers of one (environment, service).  Its state is
# recomputed from the history a transaction sees, so a writer must see the
# events of another that is storing the same key: the one committing last
# used to write its own view, and an older event could overwrite a newer
# state.  A session stores one event and keeps its transaction open; a
# second writer of the same key is started and waits (for the key's turn;
# without it, for the state row); then the first commits.  Both orders.
sub race
{
	my ($svc, $first, $first_ts, $second, $second_ts) = @_;
	my $holder = $node->background_psql('one');
	$holder->query_safe('BEGIN');
	$holder->query_safe(deploy("$svc-$first", $svc, $first_ts));
	my ($out, $err) = ('', '');
	my $writer = IPC::Run::start([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('one'),
		'-c', deploy("$svc-$second", $svc, $second_ts) ], '>', \$out, '2>', \$err);
	$node->poll_query_until('one', qq{SELECT count(*) = 1 FROM pg_stat_activity
		WHERE wait_event_type = 'Lock' AND query LIKE '%$svc-$second%'})
	  or die "the second writer of $svc did not wait for the first";
	$holder->query_safe('COMMIT');
	$holder->quit;
	$writer->finish or die "the second writer of $svc failed: $err";
	return $node->safe_psql('one', qq{SELECT artifact_id, previous_artifact_id
		FROM cdviz.environment_state WHERE service_id = '$svc'});
}
# (the month's partition first: its creation would make them take turns)
$node->safe_psql('one', deploy('first', 'race-2', '2024-05-01T10:00:00Z'));
is(race('race-1', 'new', '2024-05-01T10:01:41Z', 'old', '2024-05-01T10:01:40Z'),
	'pkg:generic/race-1@race-1-new|pkg:generic/race-1@race-1-old',
	'an older event stored while a newer one commits does not overwrite the state');
is(race('race-2', 'old', '2024-05-01T10:01:40Z', 'new', '2024-05-01T10:01:41Z'),
	'pkg:generic/race-2@race-2-new|pkg:generic/race-2@race-2-old',
	'a newer event stored while an older one commits sees it as the previous artifact');


$node->stop;
done_testing();
