# pg_dump -Fc of a live cdviz database (workers running) and pg_restore
# into a new cluster: no error, every table's rows, the lake goes on with
# ids above the old ones, the folder source reads nothing twice, the sink
# delivers nothing twice, dead letters and secrets are kept.  The old
# cluster has used more transaction ids than the new one will have: its
# snapshots in the sink's progress mean nothing there.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use CdvizNode;
use HttpTest;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $tmp = PostgreSQL::Test::Utils::tempdir();
my ($in, $settings) = fs_inbox($tmp);

sub post_batch
{
	my ($port, @ids) = @_;
	my ($code, $body) = http_request(port => $port, method => 'POST',
		headers => ['Content-Type: application/json'],
		body => '[' . join(',', map { event_json($_, timestamp => '2024-05-01T10:00:00Z') } @ids) . ']');
	is($code, 201, "$ids[0].. stored") or diag($body);
}

# Rows of every table of schema cdviz (the lake through its partitions).
my $count_rows = q{
	SELECT string_agg(format('%s=%s', c.relname,
							 (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM %s', c.oid::regclass),
																  false, true, '')))[1]), ' ' ORDER BY c.relname)
	FROM pg_class c
	WHERE c.relnamespace = 'cdviz'::regnamespace AND c.relkind = 'r'};

# ------------------------------------------------------------ cluster A ----
my $old = start_http_node('dump_a', $settings);
my $port_a = $http_port;
$old->safe_psql('postgres', 'CREATE EXTENSION cdviz');
$old->safe_psql('postgres', q{SELECT cdviz.create_sink('archive', 'log', 'restore-test')});
$old->safe_psql('postgres', q{SELECT cdviz.create_webhook('github', 'cdviz.transform_github(jsonb,jsonb)',
	'github', 'It''s a Secret to Everybody')});

post_batch($port_a, map { "a-$_" } (1 + 50 * $_) .. (50 + 50 * $_)) for 0 .. 3;
my ($code) = http_request(port => $port_a, method => 'POST', headers => ['Content-Type: application/json'],
	body => '{"not": "an event"}');
is($code, 400, 'a dead letter');
PostgreSQL::Test::Utils::append_to_file("$in/one.jsonl",
	join('', map { event_json("file-$_") . "\n" } 1 .. 10));
$old->safe_psql('postgres', q{SELECT cdviz.process_webhook('github',
	'{"X-GitHub-Event": "ping", "X-GitHub-Delivery": "restore-1"}', '{"zen": "Design for failure."}')});

ok($old->poll_query_until('postgres',
		q{SELECT count(*) = 1 FROM cdviz.fs_files WHERE status = 'read' AND events = 10}),
	'A read the folder');
ok($old->poll_query_until('postgres',
		q{SELECT pending = 0 AND delivered = 210 FROM cdviz.sink_status WHERE name = 'archive'}),
	'A\'s sink delivered everything');
ok($old->poll_query_until('postgres', 'SELECT cdviz.summaries_pending() = 0'), 'A\'s summaries folded');

# A has used many more transaction ids than B will have (subtransactions
# that write take one each).
$old->safe_psql('postgres', q{
	CREATE TEMP TABLE burn (i int);
	DO $$ BEGIN
		FOR i IN 1..3000 LOOP
			BEGIN INSERT INTO burn VALUES (i); EXCEPTION WHEN OTHERS THEN NULL; END;
		END LOOP;
	END $$;});

# Wait until A's workers have nothing left to write (the dispatcher prunes
# its outbox), then dump while they run.
# The sink is paused: on B, events are stored before it looks at its
# progress again.
my $rows_a;
ok($old->poll_query_until('postgres', "SELECT count(*) = 0 FROM cdviz.lake_batches"), 'A\'s outbox pruned');
$old->safe_psql('postgres', q{SELECT cdviz.pause_sink('archive')});
$rows_a = $old->safe_psql('postgres', $count_rows);
my $dump = "$tmp/cdviz.dump";
$old->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $old->connstr('postgres') ], 'pg_dump -Fc of live A');
is($old->safe_psql('postgres', $count_rows), $rows_a, 'A did not change during the dump');
my $max_id_a = $old->safe_psql('postgres', 'SELECT max(id) FROM cdviz.cdevents_lake');
my $xid_a = $old->safe_psql('postgres', 'SELECT pg_current_xact_id()');
my $files_a = $old->safe_psql('postgres', 'SELECT path, events, duplicates, first_read_at, last_read_at FROM cdviz.fs_files');
$old->stop;

# ------------------------------------------------------------ cluster B ----
my $new = start_http_node('dump_b', $settings);
my $port_b = $http_port;
cmp_ok($new->safe_psql('postgres', 'SELECT pg_current_xact_id()'), '<', $xid_a - 2000,
	'B\'s transaction ids are far behind A\'s');
my ($stdout, $stderr) = ('', '');
my $ok = IPC::Run::run([ 'pg_restore', '--single-transaction', '-d', $new->connstr('postgres'), $dump ],
	'>', \$stdout, '2>', \$stderr);
ok($ok, 'pg_restore --single-transaction exits 0');
unlike($stderr, qr/error/i, 'and reports no error') or diag($stderr);
is($new->safe_psql('postgres', $count_rows), $rows_a, 'B holds every row of A');
is($new->safe_psql('postgres', q{SELECT count(*) FROM cdviz.webhook_secrets WHERE secret = 'It''s a Secret to Everybody'}),
	'1', 'the webhook secret is kept');

# B goes on: higher ids, nothing read twice, nothing delivered twice.
wait_http('/readyz', 200, $port_b);
post_batch($port_b, map { "b-$_" } 1 .. 20);
is($new->safe_psql('postgres', "SELECT min(id) > $max_id_a FROM cdviz.cdevents_lake WHERE context_id LIKE 'b-%'"),
	't', 'B stores with ids above A\'s');
PostgreSQL::Test::Utils::append_to_file("$in/two.jsonl",
	join('', map { event_json("file-b-$_") . "\n" } 1 .. 5));
ok($new->poll_query_until('postgres',
		q{SELECT count(*) = 1 FROM cdviz.fs_files WHERE path LIKE '%two.jsonl' AND status = 'read' AND events = 5}),
	'B reads the new file');
is($new->safe_psql('postgres',
		q{SELECT path, events, duplicates, first_read_at, last_read_at FROM cdviz.fs_files WHERE path NOT LIKE '%two.jsonl'}),
	$files_a, 'and not the old one again');
$new->safe_psql('postgres', q{SELECT cdviz.resume_sink('archive')});
ok($new->poll_query_until('postgres',
		q{SELECT pending = 0 AND delivered >= 235 FROM cdviz.sink_status WHERE name = 'archive'}),
	'B\'s sink delivers the new events');
my %seen;
my $log = slurp_file($new->logfile);
$seen{$1}++ while $log =~ /\{"sink":"archive","id":(\d+),/g;
my $new_ids = $new->safe_psql('postgres',
	"SELECT string_agg(id::text, ',' ORDER BY id) FROM cdviz.cdevents_lake WHERE id > $max_id_a");
is(join(',', sort { $a <=> $b } keys %seen), $new_ids, 'B\'s sink delivered exactly the events stored on B');
is((grep { $_ > 1 } values %seen), 0, 'each once');

# A lake id sequence left behind its rows (a hand-made partial restore) is
# reported as the unique violation it is, not as a refused event.
$new->safe_psql('postgres', q{SELECT setval('cdviz.cdevents_lake_id_seq', 1)});
my ($rc, $out, $err) = $new->psql('postgres',
	"\\set VERBOSITY verbose\nSELECT cdviz.ingest('" . event_json('behind-the-sequence') . "')");
like($err, qr/ERROR:  23505: duplicate key value violates unique constraint "cdevents_lake_\d+_pkey"/,
	'an id clash is a unique violation (23505)');

$new->stop;
done_testing();
