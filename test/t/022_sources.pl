# Sources managed with SQL, one worker each: two folders, an S3 prefix and
# a NATS stream read at once, next to three that fail (a folder that does
# not exist, a bucket that does not exist, an S3 endpoint that accepts the
# connection and never answers); a file dropped into a healthy folder is
# stored within two of its polls all the same.  A source created, altered,
# paused, resumed and dropped with SQL takes effect without a restart, its
# worker started and stopped (pg_stat_activity).  A kafka source whose
# broker cannot be reached keeps its worker and shows the error.
use strict;
use warnings;
use File::Path qw(make_path);
use FindBin;
use lib $FindBin::Bin;
use CdvizNode;
use HttpTest qw(event_json);
use IO::Socket::INET;
use IPC::Run;
use JSON::PP;
use MiniNats;
use S3Test;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

plan skip_all => s3rver_missing() if s3rver_missing();
plan skip_all => 'nats-server is not installed' unless MiniNats::server_bin();

my $tmp = PostgreSQL::Test::Utils::tempdir();
make_path("$tmp/$_") for qw(a b c);

# ---- the servers ----------------------------------------------------------
my $s3 = S3Test->new("$tmp/s3");

my $nport = PostgreSQL::Test::Cluster::get_free_port();
my ($nats, $nc) = MiniNats::start_server($tmp, $nport);
my $r = $nc->request('$JS.API.STREAM.CREATE.SRC', encode_json({ name => 'SRC', subjects => ['src.>'], storage => 'file' }));
ok(!$r->{error}, 'stream SRC created') or diag explain $r;

# A port that accepts connections (the kernel's backlog) and never answers:
# an S3 endpoint that hangs every request.
my $hang = IO::Socket::INET->new(Listen => 5, LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp')
  or die "listen: $!";
my $hang_port = $hang->sockport;

# ---- the node: no source in the settings ---------------------------------
my $hport = PostgreSQL::Test::Cluster::get_free_port();
my $node = cdviz_node('sources', qq(
max_worker_processes = 20
cdviz.http_listen_addresses = '127.0.0.1'
cdviz.http_port = $hport
));
$node->start;
sub q1 { return $node->safe_psql('postgres', $_[0]); }
q1('CREATE EXTENSION cdviz');

sub stored { return q1("SELECT count(*) FROM cdviz.cdevents_lake WHERE context_id = '$_[0]'"); }

# Seconds until the event is stored (undef after $limit seconds).
sub time_to_store
{
	my ($id, $start, $limit) = @_;
	while (time - $start < $limit)
	{
		return time - $start if stored($id) == 1;
		usleep(50_000);
	}
	return undef;
}

# The pid of a source's worker, '' when it has none.
sub worker_of
{
	return q1("SELECT pid FROM pg_stat_activity WHERE backend_type = 'cdviz source'
			   AND application_name = 'cdviz source $_[0]'");
}

sub wait_worker
{
	my ($name, $running, $what) = @_;
	my $cond = $running ? 'count(*) = 1' : 'count(*) = 0';
	ok($node->poll_query_until('postgres', "SELECT $cond FROM pg_stat_activity
		WHERE backend_type = 'cdviz source' AND application_name = 'cdviz source $name'"), $what);
}

# ---- every kind at once, three of them failing ----------------------------
q1(qq{
	SELECT cdviz.create_source('folder-a', 'folder', '$tmp/a', '{"poll_interval": 1}');
	SELECT cdviz.create_source('folder-b', 'folder', '$tmp/b', '{"poll_interval": 1}');
	SELECT cdviz.create_source('bucket', 's3', 's3://bkt/ev/', '${\ $s3->source_options}');
	SELECT cdviz.create_source('stream', 'nats', 'src.>', '{"url": "nats://127.0.0.1:$nport", "stream": "SRC"}');
	SELECT cdviz.create_source('no-folder', 'folder', '$tmp/missing', '{"poll_interval": 1}');
	SELECT cdviz.create_source('no-bucket', 's3', 's3://nobucket/', '${\ $s3->source_options}');
	SELECT cdviz.create_source('hanging', 's3', 's3://bkt/hang/', '{"endpoint": "http://127.0.0.1:$hang_port",
		"path_style": true, "poll_interval": 1}');
	SELECT cdviz.create_source('kafka', 'kafka', 'events', '{"brokers": "127.0.0.1:9"}');
});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 8 FROM pg_stat_activity
	WHERE backend_type = 'cdviz source'}), 'one worker per source, without a restart');
ok($node->poll_query_until('postgres', q{SELECT state = 'running' AND last_error IS NOT NULL
	FROM cdviz.source_status WHERE name = 'kafka'}),
	'a kafka source with no broker shows its error');
isnt(worker_of('kafka'), '', 'and keeps its worker');
ok($node->poll_query_until('postgres', q{SELECT last_error LIKE '%could not open folder%'
	FROM cdviz.source_status WHERE name = 'no-folder'}), 'a missing folder shows its error');
ok($node->poll_query_until('postgres', q{SELECT last_error LIKE '%NoSuchBucket%'
	FROM cdviz.source_status WHERE name = 'no-bucket'}), 'a missing bucket shows its error');
is(q1(q{SELECT state || ' ' || (last_poll_at IS NULL) FROM cdviz.source_status WHERE name = 'hanging'}),
	'running true', 'the hanging endpoint holds its worker in its first request');

# While those fail and hang (a request that gets no answer is given up
# after 30 s), each healthy source stores what arrives, a folder within
# two of its polls (a file is read once it looked the same twice) and a
# little time to store it on a busy machine.
# (a first file each, untimed: the workers have just started)
drop_file("$tmp/a", 'a0.json', event_json('a-0', source => '/a'));
drop_file("$tmp/b", 'b0.json', event_json('b-0', source => '/b'));
ok($node->poll_query_until('postgres', q{SELECT count(*) = 2 FROM cdviz.cdevents_lake WHERE context_id IN ('a-0', 'b-0')}),
	'both folders read a first file');
for my $round (1 .. 3)
{
	my $t0 = time;
	drop_file("$tmp/a", "a$round.json", event_json("a-$round", source => '/a'));
	drop_file("$tmp/b", "b$round.json", event_json("b-$round", source => '/b'));
	my ($ta, $tb) = (time_to_store("a-$round", $t0, 10), time_to_store("b-$round", $t0, 10));
	ok(defined $ta && $ta < 3.5, "round $round: folder a stored its file in " . ($ta // 'more than 10') . ' s');
	ok(defined $tb && $tb < 3.5, "round $round: folder b stored its file in " . ($tb // 'more than 10') . ' s');
}
$s3->put('ev/one.json' => event_json('s3-1', source => '/s3'));
ok($node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM cdviz.cdevents_lake WHERE context_id = 's3-1'}),
	'the S3 source stores an object');
$nc->publish('src.x', event_json('nats-1', source => '/nats'));
ok($node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM cdviz.cdevents_lake WHERE context_id = 'nats-1'}),
	'the NATS source stores a message');
like(q1(q{SELECT string_agg(name || '=' || state, ' ' ORDER BY name) FROM cdviz.source_status}),
	qr/^bucket=running folder-a=running folder-b=running hanging=running kafka=running no-bucket=running no-folder=running stream=running$/,
	'cdviz.source_status: one row per source');
is(q1(q{SELECT events || '/' || items FROM cdviz.source_status WHERE name = 'folder-a'}), '4/4',
	'counts per folder source');
is(q1(q{SELECT last_poll_at IS NULL FROM cdviz.source_status WHERE name = 'hanging'}), 't',
	'all the while, the hanging source has not finished one poll');
ok(q1(q{SELECT last_error LIKE '%could not open folder%' FROM cdviz.source_status WHERE name = 'no-folder'}) eq 't',
	'the missing folder still fails');

# /metrics shows the same, per source
my $metrics = '';
IPC::Run::run([ 'curl', '-s', '--max-time', '10', "http://127.0.0.1:$hport/metrics" ], '>', \$metrics, '2>', \my $cerr);
like($metrics, qr/^cdviz_source_events_total\{source="folder-a",kind="folder"\} 4$/m, '/metrics: events per source');
like($metrics, qr/^cdviz_source_events_total\{source="stream",kind="nats"\} 1$/m, '/metrics: a NATS source counts what it stores');
like($metrics, qr/^cdviz_source_up\{source="bucket",kind="s3"\} 1$/m, '/metrics: a running source is up');
like($metrics, qr/^cdviz_source_up\{source="kafka",kind="kafka"\} 1$/m,
	'/metrics: a kafka source whose broker is unreachable keeps running');
like($metrics, qr/^cdviz_source_lag\{source="folder-b",kind="folder"\} 0$/m, '/metrics: the lag of a folder');

# ---- alter: a new location and pattern, the worker restarted -------------
my $pid_a = worker_of('folder-a');
q1(qq{SELECT cdviz.alter_source('folder-a', location => '$tmp/c', options => '{"poll_interval": 1, "pattern": "*.ndjson"}')});
ok($node->poll_query_until('postgres', qq{SELECT count(*) = 1 FROM pg_stat_activity
	WHERE application_name = 'cdviz source folder-a' AND pid <> $pid_a}), 'an altered source gets a new worker');
drop_file("$tmp/c", 'c1.json', event_json('c-json', source => '/c'));
drop_file("$tmp/c", 'c1.ndjson', event_json('c-ndjson', source => '/c') . "\n");
drop_file("$tmp/a", 'a9.json', event_json('a-9', source => '/a'));
ok($node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM cdviz.cdevents_lake WHERE context_id = 'c-ndjson'}),
	'it reads its new location with its new pattern');
sleep 3;
is(stored('c-json') + stored('a-9'), 0, 'and neither what the pattern leaves out nor its old folder');

# ---- pause, resume ---------------------------------------------------------
q1(q{SELECT cdviz.pause_source('folder-b')});
wait_worker('folder-b', 0, 'a paused source has no worker');
is(q1(q{SELECT state FROM cdviz.source_status WHERE name = 'folder-b'}), 'paused', 'and says so');
drop_file("$tmp/b", 'b-paused.json', event_json('b-paused', source => '/b'));
sleep 3;
is(stored('b-paused'), 0, 'nothing is read while paused');
IPC::Run::run([ 'curl', '-s', '--max-time', '10', "http://127.0.0.1:$hport/metrics" ], '>', \$metrics, '2>', \$cerr);
like($metrics, qr/^cdviz_source_up\{source="folder-b",kind="folder"\} 0$/m, '/metrics: a paused one is not up');
q1(q{SELECT cdviz.resume_source('folder-b')});
wait_worker('folder-b', 1, 'a resumed source has its worker again');
ok($node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM cdviz.cdevents_lake WHERE context_id = 'b-paused'}),
	'and reads what arrived meanwhile');
is(q1(q{SELECT count(*) FROM cdviz.cdevents_lake WHERE context_id LIKE 'b-%'}), 5, 'each file of b once');

# ---- drop ------------------------------------------------------------------
q1(q{SELECT cdviz.drop_source('folder-b'); SELECT cdviz.drop_source('hanging')});
wait_worker('folder-b', 0, 'a dropped source has no worker');
wait_worker('hanging', 0, 'a dropped source stuck in a request has no worker either');
is(q1(q{SELECT count(*) FROM cdviz.source_status WHERE name IN ('folder-b', 'hanging')}), 0,
	'nor a row in cdviz.source_status');
drop_file("$tmp/b", 'b-dropped.json', event_json('b-dropped', source => '/b'));
sleep 3;
is(stored('b-dropped'), 0, 'a dropped folder is read no more');
# created again for the same folder, the progress is there: nothing read twice
q1(qq{SELECT cdviz.create_source('folder-b2', 'folder', '$tmp/b', '{"poll_interval": 1}')});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM cdviz.cdevents_lake WHERE context_id = 'b-dropped'}),
	'a source created again for the folder reads the new file');
is(q1(q{SELECT sum(duplicates) FROM cdviz.fs_files WHERE source LIKE '%/b'}), 0, 'and no file twice');

# ---- a worker that stops on its own is started again, after a pause ------
my $pid_c = worker_of('folder-a');
q1("SELECT pg_terminate_backend($pid_c)");
ok($node->poll_query_until('postgres', q{SELECT state = 'failed' FROM cdviz.source_status WHERE name = 'folder-a'}),
	'a worker terminated from outside leaves its source failed');
my $t_fail = time;
ok($node->poll_query_until('postgres', qq{SELECT count(*) = 1 FROM pg_stat_activity
	WHERE application_name = 'cdviz source folder-a' AND pid <> $pid_c}), 'then a new worker reads it');
my $pause = time - $t_fail;
ok($pause >= 3 && $pause < 10, sprintf('after a pause of about 5 s (%.1f s)', $pause));
ok($node->poll_query_until('postgres', q{SELECT s.state = 'running' AND p.restarts = 1
	FROM cdviz.source_status s JOIN cdviz.source_progress p ON p.source_id = s.id WHERE s.name = 'folder-a'}),
	'running again, the restart counted');
drop_file("$tmp/c", 'c2.ndjson', event_json('c-after-restart', source => '/c') . "\n");
ok($node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM cdviz.cdevents_lake WHERE context_id = 'c-after-restart'}),
	'and stores what arrives');

# ---- a reload changes nothing -------------------------------------------
my $pids = q1(q{SELECT string_agg(pid::text, ',' ORDER BY pid) FROM pg_stat_activity WHERE backend_type = 'cdviz source'});
$node->reload;
sleep 2;
is(q1(q{SELECT string_agg(pid::text, ',' ORDER BY pid) FROM pg_stat_activity WHERE backend_type = 'cdviz source'}),
	$pids, 'a reload restarts no source worker');

$node->stop;
$s3->stop;
$nats->kill_kill;
done_testing();
