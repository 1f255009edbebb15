# Extension lifecycle: CREATE EXTENSION without shared_preload_libraries, in
# two databases of one cluster; DROP EXTENSION leaves nothing but the roles.
use strict;
use warnings;
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

$node->stop;
done_testing();
