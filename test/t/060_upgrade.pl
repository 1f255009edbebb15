# Upgrading an installed cdviz: release 0.1.0, filled with every kind of
# row it keeps (test/fixtures/upgrade/cdviz-0.1.0-data.sql, written by the
# 0.1.0 library), under this library.  Until ALTER EXTENSION cdviz UPDATE
# the workers wait with one log line, the SQL functions refuse with a hint
# and the receiver answers 503; after it they resume by themselves, every
# row is still there, the schema equals a fresh install's (pg_dump
# --binary-upgrade, which writes the extension's own objects), and
# ingestion, webhooks, sinks and pollers go on.
use strict;
use warnings;
use FindBin;
use IPC::Run;
use lib $FindBin::Bin;
use CdvizNode;
use HttpTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $fixture = "$FindBin::Bin/../fixtures/upgrade/cdviz-0.1.0-data.sql";
my ($in, $fs_conf) = fs_inbox(PostgreSQL::Test::Utils::tempdir());

my $node = start_http_node('upgrade', $fs_conf);

# ------------------------------------------------------ 0.1.0 installed ----
$node->safe_psql('postgres', "CREATE EXTENSION cdviz VERSION '0.1.0'");
$node->command_ok(
	[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'), '-f', $fixture ],
	'the 0.1.0 fixture loads into a 0.1.0 install');
is($node->safe_psql('postgres', "SELECT extversion FROM pg_extension WHERE extname = 'cdviz'"),
	'0.1.0', 'installed at 0.1.0');

# Every row of the extension's tables and of the lake's partitions (but the
# 0.1.0 poller's last poll per source, which it writes meanwhile and the
# update drops: the sources note their polls in cdviz.source_progress).
my $count_rows = q{
	SELECT string_agg(format('%s=%s', c.relname,
							 (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM %s', c.oid::regclass),
																  false, true, '')))[1]), ' ' ORDER BY c.relname)
	FROM pg_class c
	WHERE c.relnamespace = 'cdviz'::regnamespace AND c.relkind = 'r'
	  AND c.relname <> 'source_polls'};
my $rows_before = $node->safe_psql('postgres', $count_rows);
like($rows_before, qr/ rejected_events=2 /, 'dead letters in the fixture');
like($rows_before, qr/ webhook_deliveries=45 /, 'webhook deliveries in the fixture');
like($rows_before, qr/ fs_files=1 /, 'folder progress in the fixture');
like($rows_before, qr/ sink_progress=2 /, 'sink progress in the fixture');

# A file of the folder the settings name, read to its end under 0.1.0:
# its progress row as the 0.1.0 poller wrote it (size, mtime, offset, the
# FNV-1a hash of what was read).  Its events are not in the lake: were the
# file read again after the update, they would be.
my $old_file = "$in/read-under-0.1.0.jsonl";
my $old_text = event_json('read-under-0.1.0-a') . "\n" . event_json('read-under-0.1.0-b') . "\n";
PostgreSQL::Test::Utils::append_to_file($old_file, $old_text);
utime(1700000000, 1700000000, $old_file) or die "utime: $!";
use Math::BigInt;
my $fnv = Math::BigInt->from_hex('cbf29ce484222325');
my $prime = Math::BigInt->from_hex('100000001b3');
my $two64 = Math::BigInt->new(2)->bpow(64);
$fnv = (($fnv ^ $_) * $prime) % $two64 for unpack('C*', $old_text);
$fnv -= $two64 if $fnv >= $two64 / 2;
$node->safe_psql('postgres', sprintf(q{INSERT INTO cdviz.fs_files (path, source, size, mtime, read_offset,
	lines_read, prefix_hash, status, events, first_read_at, last_read_at)
	VALUES ('%s', '%s', %d, to_timestamp(1700000000), %d, 2, %s, 'read', 2, now(), now())},
	$old_file, $in, length($old_text), length($old_text), "$fnv"));

# A sink of 0.1.0 with credentials where 0.1.0 left them for cdviz_reader
# to read (header values, the URL's user info and query), and the planner
# statistics of those rows (pg_stats shows them to whoever reads the
# columns): the update moves them to cdviz.sink_secrets.
$node->safe_psql('postgres', q{SELECT cdviz.create_sink('legacy-creds', 'http',
	'http://legacy-user:legacy-pass@127.0.0.1:9/in?key=legacy-query',
	'{"headers": {"X-Api-Key": "legacy-header"}, "token": "legacy-token"}', paused => true);
	ANALYZE cdviz.sinks});
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_stats WHERE schemaname = 'cdviz'
	AND tablename = 'sinks' AND strpos(pg_stats::text, 'legacy-pass') > 0}), '1',
	'0.1.0: the URL password is in the statistics of cdviz.sinks');
$rows_before = $node->safe_psql('postgres', $count_rows);

# The library is 0.2.0: each worker says so once and waits.
for my $worker ('cdviz dispatcher', 'cdviz summaries', 'cdviz sources')
{
	ok($node->wait_for_log(
			qr/\Q$worker\E: extension "cdviz" in database "postgres" is version 0\.1\.0, but the library is version 0\.2\.0; waiting for the update/),
		"$worker waits for the update");
}
my ($code, $body) = http_request(method => 'POST', headers => ['Content-Type: application/json'],
	body => event_json('during-mismatch'));
is($code, 503, 'the receiver answers 503 before the update');
like($body, qr/version 0\.1\.0, the library version 0\.2\.0: run ALTER EXTENSION cdviz UPDATE/,
	'and says why');

my ($rc, $out, $err) = $node->psql('postgres',
	"\\set VERBOSITY verbose\nSELECT cdviz.ingest('" . event_json('sql-during-mismatch') . "')");
isnt($rc, 0, 'cdviz.ingest() refuses before the update');
like($err, qr/ERROR:  55000: extension "cdviz" is installed at version 0\.1\.0, but its library is version 0\.2\.0/,
	'with SQLSTATE 55000');
like($err, qr/HINT:  Run ALTER EXTENSION cdviz UPDATE in database "postgres"/, 'and the hint');
($rc, $out, $err) = $node->psql('postgres', "SELECT cdviz.purl_split('pkg:oci/app')");
like($err, qr/installed at version 0\.1\.0/, 'the read API\'s C helpers refuse too');
my $log_lines = () = slurp_file($node->logfile) =~ /cdviz sources: extension "cdviz" in database "postgres" is version/g;
is($log_lines, 1, 'one log line, not one per retry');

# ------------------------------------------------------------- update ----
my $log_offset = -s $node->logfile;
$node->safe_psql('postgres', 'ALTER EXTENSION cdviz UPDATE');
is($node->safe_psql('postgres', "SELECT extversion FROM pg_extension WHERE extname = 'cdviz'"),
	'0.2.0', 'updated to 0.2.0');
for my $worker ('cdviz dispatcher', 'cdviz summaries', 'cdviz sources')
{
	ok($node->wait_for_log(qr/\Q$worker\E: extension "cdviz" in database "postgres" is now version 0\.2\.0; resuming/,
			$log_offset),
		"$worker resumes by itself");
}
# (tables the update adds are not compared)
my %before = map { split /=/ } split / /, $rows_before;
my %after = map { split /=/ } split / /, $node->safe_psql('postgres', $count_rows);
is_deeply({ map { $_ => $after{$_} } keys %before }, \%before, 'every row is still there');
cmp_ok($after{environment_artifacts} // 0, '>', 0, 'the update filled the new environment_artifacts');
is($node->safe_psql('postgres', q{SELECT s.target || ' ' || s.options::text || ' ' || s.secret_keys::text
	FROM cdviz.sinks s WHERE s.name = 'legacy-creds'}),
	'http://***@127.0.0.1:9/in?key=*** {"headers": {"X-Api-Key": "***"}} {headers,target,token}',
	'the 0.1.0 sink\'s credentials are shown as ***');
is($node->safe_psql('postgres', q{SELECT x.secrets FROM cdviz.sink_secrets x JOIN cdviz.sinks s ON s.id = x.sink_id
	WHERE s.name = 'legacy-creds'}),
	'{"token": "legacy-token", "target": "http://legacy-user:legacy-pass@127.0.0.1:9/in?key=legacy-query", "headers": {"X-Api-Key": "legacy-header"}}',
	'and kept in cdviz.sink_secrets');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_stats WHERE schemaname = 'cdviz'
	AND pg_stats::text ~ 'legacy-(user|pass|query|header|token)'}), '0',
	'no statistic of cdviz shows them any more');

# The updated schema is a fresh install's.
$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('fresh', 'CREATE EXTENSION cdviz');
sub schema_dump
{
	my ($db) = @_;
	my ($stdout, $stderr);
	IPC::Run::run([ 'pg_dump', '--schema-only', '--binary-upgrade', '-T', 'cdviz.cdevents_lake_[0-9]*',
			'-d', $node->connstr($db) ], '>', \$stdout, '2>', \$stderr)
	  or die "pg_dump $db: $stderr";
	# what differs between any two databases: OIDs, xids, the dump's key,
	# the sequences' positions
	$stdout =~ s/^SELECT pg_catalog\.setval\(.*\n//mg;
	$stdout =~ s/^.*binary_upgrade_set_(next|record_init_privs).*\n//mg;
	$stdout =~ s/^\\(un)?restrict .*\n//mg;
	$stdout =~ s/(binary_upgrade_create_empty_extension.*)/my $l = $1; $l =~ s{\d+}{N}g; $l/mge;
	$stdout =~ s/relfrozenxid = '\d+'/relfrozenxid = N/g;
	$stdout =~ s/^WHERE oid = '\d+'/WHERE oid = N/mg;
	return $stdout;
}
my $updated = schema_dump('postgres');
my $fresh = schema_dump('fresh');
ok(length($fresh) > 100_000, 'the schema dump holds the extension\'s objects');
if ($updated eq $fresh)
{
	pass('an updated install equals a fresh one (pg_dump --schema-only --binary-upgrade)');
}
else
{
	my $dir = PostgreSQL::Test::Utils::tempdir();
	PostgreSQL::Test::Utils::append_to_file("$dir/updated.sql", $updated);
	PostgreSQL::Test::Utils::append_to_file("$dir/fresh.sql", $fresh);
	my ($diff) = ('');
	IPC::Run::run([ 'diff', '-u', "$dir/updated.sql", "$dir/fresh.sql" ], '>', \$diff);
	diag(substr($diff, 0, 6000));
	fail('an updated install equals a fresh one (pg_dump --schema-only --binary-upgrade)');
}

# ------------------------------------------------------------ goes on ----
my $max_id = $node->safe_psql('postgres', 'SELECT max(id) FROM cdviz.cdevents_lake');
wait_http('/readyz', 200);
($code) = http_request(method => 'POST', headers => ['Content-Type: application/json'],
	body => event_json('after-update'));
is($code, 201, 'the receiver stores again');
cmp_ok($node->safe_psql('postgres', "SELECT id FROM cdviz.cdevents_lake WHERE context_id = 'after-update'"),
	'>', $max_id, 'with an id above the fixture\'s');
is($node->safe_psql('postgres', q{SELECT status FROM cdviz.process_webhook('github',
	'{"X-GitHub-Event": "ping", "X-GitHub-Delivery": "after-update"}', '{"zen": "Keep it logically awesome."}')}),
	'ping', 'a webhook route of 0.1.0 takes deliveries');

$node->safe_psql('postgres', q{SELECT cdviz.create_sink('after', 'log', 'after-update')});
$node->safe_psql('postgres', "SELECT cdviz.ingest('" . event_json('for-the-sink') . "')");
ok($node->wait_for_log(qr/\{"sink":"after","id":\d+,"event":\{[^\n]*"for-the-sink"/, $log_offset),
	'a sink delivers');

PostgreSQL::Test::Utils::append_to_file("$in/after.jsonl", event_json('from-the-folder') . "\n");
ok($node->poll_query_until('postgres',
		"SELECT EXISTS (SELECT FROM cdviz.cdevents_lake WHERE context_id = 'from-the-folder')"),
	'the folder source reads');
is($node->safe_psql('postgres', q{SELECT count(*) FROM cdviz.cdevents_lake WHERE context_id LIKE 'read-under-0.1.0-%'}),
	'0', 'a file read under 0.1.0 is not read again');
is($node->safe_psql('postgres', q{SELECT name || ' ' || defined_by || ' ' || items || ' ' || events
	FROM cdviz.source_status WHERE location = '} . $in . q{'}),
	'settings.folder settings 2 3', 'the folder of the settings is a source, with the progress of 0.1.0');
ok($node->poll_query_until('postgres', 'SELECT cdviz.summaries_pending() = 0'),
	'the summaries are folded');

$node->stop;
done_testing();
