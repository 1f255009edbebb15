# A role that may only read (a member of cdviz_reader, as Grafana's is)
# cannot hold ingestion up.  The test records every lock an ingest
# transaction takes (a deployment that needs a new lake month, a webhook
# delivery), then the reader takes every one of them it is allowed to
# take — each advisory lock under the same keys, each relation the reader
# may SELECT in ACCESS SHARE mode — and holds them while the same event
# and delivery are posted over HTTP: both are answered within a second.
use strict;
use warnings;
use Digest::SHA qw(hmac_sha256_hex);
use FindBin;
use lib $FindBin::Bin;
use HttpTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $node = start_http_node('reader_locks');
$node->safe_psql('postgres', q{
	CREATE EXTENSION cdviz;
	CREATE ROLE grafana LOGIN IN ROLE cdviz_reader;
	SELECT cdviz.create_webhook('github', 'cdviz.transform_github(jsonb,jsonb)', 'github', 'locks-secret');});

# a month the lake has, so that the state of prod/shop exists
my $first = event_json('shop-1', timestamp => '2024-05-01T10:00:00Z');
$node->safe_psql('postgres', "SELECT cdviz.ingest('$first')");

# The event and the delivery posted below: a deployment in a month the lake
# does not have yet (its partition is created by the ingest), the same
# (environment, service), a GitHub ping.
my $event = event_json('shop-2', timestamp => '2024-06-01T10:00:00Z');
my $ping = '{"zen": "Practicality beats purity.", "hook_id": 1}';
my @ping_headers = ('X-GitHub-Event: ping', 'X-GitHub-Delivery: locks-1',
	'X-Hub-Signature-256: sha256=' . hmac_sha256_hex($ping, 'locks-secret'),
	'Content-Type: application/json');

# The locks of an ingest transaction doing the same, rolled back.
my $locks = $node->safe_psql('postgres', qq{
	BEGIN;
	SELECT cdviz.ingest('$event');
	SELECT cdviz.process_webhook('github', '{"X-GitHub-Event": "ping", "X-GitHub-Delivery": "locks-1"}', '$ping');
	SELECT string_agg(CASE l.locktype
						  WHEN 'advisory' THEN format('advisory %s %s %s', l.classid, l.objid, l.objsubid)
						  ELSE (SELECT format('relation %I.%I', n.nspname, c.relname)
								FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
								WHERE c.oid = l.relation) END, E'\\n')
	FROM pg_locks l
	WHERE l.pid = pg_backend_pid() AND l.locktype IN ('advisory', 'relation')
	  AND (l.locktype = 'advisory' OR l.relation IN (SELECT c.oid FROM pg_class c
													 WHERE c.relnamespace = 'cdviz'::regnamespace));
	ROLLBACK;});
my @advisory = grep { /^advisory/ } split /\n/, $locks;
my @relations = grep { /^relation/ } split /\n/, $locks;
cmp_ok(scalar(@advisory), '>=', 3, 'the ingest transaction takes advisory locks (service key, month, delivery)');
cmp_ok(scalar(@relations), '>', 5, 'and relation locks');

# Everything of that the reader may take, under the same keys.
my @take;
for (@advisory)
{
	my (undef, $classid, $objid, $objsubid) = split / /;
	# the two-key form takes (classid, objid); the one-key form their bigint
	push @take, sprintf('SELECT pg_advisory_lock(%d, %d)',
		$classid >= 2**31 ? $classid - 2**32 : $classid, $objid >= 2**31 ? $objid - 2**32 : $objid);
	push @take, sprintf('SELECT pg_advisory_lock(%d)', $classid * 2**32 + $objid);
}
my $readable = 0;
for (@relations)
{
	my (undef, $rel) = split / /;
	# (what the rolled-back transaction created is gone)
	next unless $node->safe_psql('postgres', qq{SELECT c.relkind IN ('r', 'p', 'v')
		AND has_table_privilege('grafana', c.oid, 'SELECT') FROM pg_class c WHERE c.oid = to_regclass('$rel')}) eq 't';
	push @take, "LOCK TABLE $rel IN ACCESS SHARE MODE";
	$readable++;
}
cmp_ok($readable, '>', 0, 'the reader may lock some of those relations (ACCESS SHARE)');

my $reader = $node->background_psql('postgres', extra_params => [ '-U', 'grafana' ]);
$reader->query_safe('BEGIN');
$reader->query_safe($_) for @take;
is($node->safe_psql('postgres', q{SELECT count(*) > 0 FROM pg_locks l JOIN pg_stat_activity a USING (pid)
	WHERE a.usename = 'grafana' AND l.locktype = 'advisory' AND l.granted}),
	't', 'the reader holds its advisory locks');

my $t0 = time();
my ($code, $body) = http_request(method => 'POST', headers => ['Content-Type: application/json'],
	body => $event, timeout => 10);
my $elapsed = time() - $t0;
is($code, 201, 'the event is stored while the reader holds its locks') or diag($body);
cmp_ok($elapsed, '<', 1, 'and answered within a second');

$t0 = time();
($code, $body) = http_request(method => 'POST', path => '/webhooks/github', headers => \@ping_headers,
	body => $ping, timeout => 10);
$elapsed = time() - $t0;
is($code, 200, 'the webhook delivery is taken') or diag($body);
cmp_ok($elapsed, '<', 1, 'and answered within a second');

# Retention needs the lake to itself: it gives up after a second instead
# of queueing every writer behind it.
my ($rc, $out, $err) = $node->psql('postgres',
	"\\set VERBOSITY verbose\nSELECT cdviz.drop_partitions_before('2024-06-01')");
like($err, qr/ERROR:  55P03: lake partition cdviz\.cdevents_lake_202405 is in use: not dropped/,
	'cdviz.drop_partitions_before() gives up on a lake in use (55P03)');
like($err, qr/HINT:  Run cdviz\.drop_partitions_before\(\) again/, 'and says what to do');

# Rebuilding the summaries (which holds the lake meanwhile) does not wait
# for a reader of the summary tables.
$reader->query_safe('LOCK TABLE cdviz.pipeline_run_summaries IN ACCESS SHARE MODE');
($rc, $out, $err) = $node->psql('postgres',
	"SET statement_timeout = '5s'; SELECT count(*) FROM cdviz.rebuild_summaries()");
is($rc, 0, 'cdviz.rebuild_summaries() does not wait for a reader of the summaries') or diag($err);

$reader->query_safe('COMMIT');
$reader->quit;
is($node->safe_psql('postgres', "SELECT cdviz.drop_partitions_before('2024-06-01')"),
	'cdevents_lake_202405', 'and drops it once the reader is done');
is($node->safe_psql('postgres', q{SELECT artifact_id IS NOT NULL FROM cdviz.environment_state
	WHERE service_id = 'svc/shop-2'}), 't', 'the state was kept');

$node->stop;
done_testing();
