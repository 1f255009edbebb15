# The Kafka source against librdkafka's mock cluster (test/kafka/mock_cluster.c),
# kcat producing: 3,000 messages stored exactly once through a SIGKILL of the
# source's worker mid-stream, then all of them delivered again and kept once;
# the CloudEvents Kafka binding's binary and structured modes and a plain
# JSON array; a bad message dead-lettered with its topic, partition and offset
# and committed (not read again after a restart); an outage of every broker
# and back; a pause while every broker is down and a batch's offsets are not
# committed, done within 3 s, what was stored delivered again and kept once;
# two sources with their own groups at once; pause, resume and drop
# taking effect without a restart; the counters and the lag in
# cdviz.source_status.
use strict;
use warnings;
use FindBin;
use IPC::Run;
use lib $FindBin::RealBin;
use DispatchTest;
use KafkaTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use POSIX ();
use Time::HiRes qw(usleep);

my $why = KafkaTest::available();
plan skip_all => $why if $why;

my $tmp = PostgreSQL::Test::Utils::tempdir();
my $kafka = KafkaTest->start($tmp, 3);
my $bs = $kafka->bootstrap;
$kafka->topic('ks.in', 4, 1);
$kafka->topic('ks.modes', 1, 1);
$kafka->topic('ks.two', 2, 1);

my $node = dispatch_node('source_kafka', "max_worker_processes = 20\n");
sub sql { return $node->safe_psql('postgres', $_[0]); }

sub lake_count
{
	my ($like) = @_;
	return sql(qq{SELECT count(*) || '/' || count(DISTINCT context_id) FROM cdviz.cdevents_lake
		WHERE context_id LIKE '$like'});
}

# A source's options: a quick session timeout, so that a killed member's
# partitions go to its successor within seconds.
sub options
{
	my ($group, $extra) = @_;
	$extra //= '';
	return qq({"brokers": "$bs", "group": "$group", "batch_size": 100, )
	  . qq("config": {"session.timeout.ms": "6000", "heartbeat.interval.ms": "500"}$extra});
}

# The pid of a source's worker, or '' when it has none.
sub worker_pid
{
	my ($name) = @_;
	return sql(qq{SELECT pid FROM pg_stat_activity
		WHERE backend_type = 'cdviz source' AND application_name = 'cdviz source $name'});
}

sub status
{
	my ($name, $cols) = @_;
	return sql(qq{SELECT $cols FROM cdviz.source_status WHERE name = '$name'});
}

sub produce_events
{
	my ($topic, $prefix, $from, $to) = @_;
	$kafka->produce($topic, map { { value => event_doc("$prefix$_", '/kafka/test') } } $from .. $to);
}

# --- exactly once through a SIGKILL of the worker, then a redelivery ---
sql("SELECT cdviz.create_source('k1', 'kafka', 'ks.in', '" . options('g1') . "')");
ok(wait_until('the worker of k1', 60, sub { worker_pid('k1') ne '' }), 'the source k1 has a worker');
# a stream: 30 runs of kcat, 100 messages each, from a child process
my $producer = fork() // die "fork: $!";
if ($producer == 0)
{
	for my $run (0 .. 29)
	{
		produce_events('ks.in', 'k-', $run * 100 + 1, $run * 100 + 100);
		usleep(100_000);
	}
	POSIX::_exit(0);
}
ok(wait_until('k1 storing', 60, sub { (split m{/}, lake_count('k-%'))[0] >= 300 }), 'k1 stores');
# the kill lands inside a batch's transaction: another session holds a lock
# its last statement (the source's counters) waits for
my $locker = IPC::Run::start(
	[ 'psql', '-X', '-q', '-d', $node->connstr('postgres'), '-c',
	  'LOCK TABLE cdviz.source_progress IN SHARE MODE; SELECT pg_sleep(600)' ],
	'>', \my $lock_out, '2>', \my $lock_err);
my $pid = worker_pid('k1');
ok(wait_until('k1 waiting', 60, sub {
	sql("SELECT wait_event_type FROM pg_stat_activity WHERE pid = $pid") eq 'Lock' }),
	'a batch of k1 is being stored');
my $before = (split m{/}, lake_count('k-%'))[0];
ok(kill('KILL', $pid), "SIGKILL of the source worker (pid $pid) after $before events");
cmp_ok($before, '<', 3000, 'killed mid-stream');
$locker->kill_kill;
waitpid($producer, 0);
is($?, 0, 'the 3,000 messages produced');
$node->poll_query_until('postgres',
	q{SELECT count(*) >= 3000 FROM cdviz.cdevents_lake WHERE context_id LIKE 'k-%'})
  or diag('lake: ' . lake_count('k-%'));
sleep 1;
is(lake_count('k-%'), '3000/3000', 'every message stored once through the crash');

is(status('k1', 'events'), '3000', 'k1 counted 3,000 events');
my $dups = status('k1', 'duplicates');
produce_events('ks.in', 'k-', 1, 3000);
ok(wait_until('the redelivery', 120, sub { status('k1', 'duplicates') - $dups >= 3000 }),
	'all 3,000 delivered again');
is(status('k1', "events || ' ' || duplicates - $dups"), '3000 3000',
	'counted as 3,000 duplicates');
is(lake_count('k-%'), '3000/3000', 'the lake keeps one copy of each');
ok(wait_until('the lag', 30, sub { status('k1', 'lag') eq '0' }), 'k1 lag 0 once read')
  or diag(status('k1', 'lag'));

# --- modes: binary, structured, a plain array; a bad message ---
sql("SELECT cdviz.create_source('modes', 'kafka', 'ks.modes', '" . options('gm') . "')");
my $type = 'dev.cdeventsx.probe-item.created.0.1.0';
$kafka->produce('ks.modes',
	{ value => event_doc('bin-1', '/kafka/test'),
	  headers => [ 'content-type' => 'application/json', ce_specversion => '1.0', ce_id => 'bin-1',
		ce_source => '/kafka/test', ce_type => $type ] });
$kafka->produce('ks.modes',
	{ value => qq({"specversion":"1.0","id":"str-1","source":"/kafka/test","type":"$type",)
		  . qq("datacontenttype":"application/json","data":) . event_doc('str-1', '/kafka/test') . '}',
	  headers => [ 'content-type' => 'application/cloudevents+json' ] });
$kafka->produce('ks.modes',
	{ value => '[' . event_doc('arr-1', '/kafka/test') . ',' . event_doc('arr-2', '/kafka/test') . ']' });
$kafka->produce('ks.modes', { value => 'this is not an event' });
ok(wait_until('the modes', 60, sub { status('modes', 'events + rejected') eq '5' }),
	'binary, structured, array and a bad message read')
  or diag(status('modes', 'events, rejected, last_error'));
is(sql(q{SELECT string_agg(context_id, ',' ORDER BY context_id) FROM cdviz.cdevents_lake
	WHERE context_id IN ('bin-1', 'str-1', 'arr-1', 'arr-2')}), 'arr-1,arr-2,bin-1,str-1',
	'binary, structured and array events stored');
is(sql(q{SELECT origin || ' ' || origin_ref FROM cdviz.rejected_events WHERE origin = 'kafka'}),
	'kafka ks.modes/0@3', 'the bad message dead-lettered with its topic, partition and offset');
is(status('modes', q{events || ' ' || rejected}), '4 1', 'counters of modes');

# a restart of the whole server: the bad message was committed with its batch
$node->restart;
ok(wait_until('modes again', 60, sub { worker_pid('modes') ne '' }), 'modes restarted');
$kafka->produce('ks.modes', { value => event_doc('after-1', '/kafka/test') });
ok(wait_until('after-1', 60, sub { lake_count('after-%') eq '1/1' }), 'a message after the restart');
is(sql(q{SELECT count(*) FROM cdviz.rejected_events WHERE origin = 'kafka'}), '1',
	'the bad message was not read again');

# --- every broker down, and back ---
$kafka->broker_down(-1);
ok(wait_until('the outage seen', 60, sub { status('k1', 'last_error IS NOT NULL') eq 't' }),
	'the outage is the source\'s last_error');
$kafka->broker_up(-1);
produce_events('ks.in', 'out-', 1, 300);
ok(wait_until('after the outage', 120, sub { lake_count('out-%') eq '300/300' }),
	'stored after every broker was down and came back')
  or diag(lake_count('out-%'), ' ', status('k1', 'state, last_error'));
ok(wait_until('the error cleared', 60, sub { status('k1', 'last_error IS NULL') eq 't' }),
	'and the error is cleared')
  or diag(status('k1', 'last_error'));

# --- a batch stored while every broker is down: its offsets cannot be
# committed, and the source, paused then, still stops at once (one last
# bounded attempt at the commit); what was stored and not committed is
# delivered again once the brokers are back, and kept once ---
my $locker2 = IPC::Run::start(
	[ 'psql', '-X', '-q', '-d', $node->connstr('postgres'), '-c',
	  'LOCK TABLE cdviz.source_progress IN SHARE MODE; SELECT pg_sleep(600)' ],
	'>', \my $lock_out2, '2>', \my $lock_err2);
produce_events('ks.in', 'late-', 1, 50);
$pid = worker_pid('k1');
ok(wait_until('k1 waiting', 60, sub {
	sql("SELECT wait_event_type FROM pg_stat_activity WHERE pid = $pid") eq 'Lock' }),
	'a batch of k1 is being stored');
$kafka->broker_down(-1);
sql(q{SELECT pg_terminate_backend(pid) FROM pg_stat_activity
	WHERE query LIKE 'LOCK TABLE cdviz.source_progress%'});
$locker2->finish;
ok(wait_until('late- stored', 30, sub { (split m{/}, lake_count('late-%'))[0] > 0 }),
	'the batch is stored while the brokers are down');
my $paused_at = Time::HiRes::time();
sql("SELECT cdviz.pause_source('k1')");
ok(wait_until('k1 paused in the outage', 30, sub { worker_pid('k1') eq '' }),
	'pausing stops the worker during the outage');
my $pause_took = Time::HiRes::time() - $paused_at;
cmp_ok($pause_took, '<', 3,
	sprintf('paused during the outage, the worker was gone in %.1f s', $pause_took));
my ($late) = split m{/}, lake_count('late-%');
is(lake_count('late-%'), "$late/$late", "$late events stored before the pause, once");
my $late_dups = status('k1', 'duplicates');
$kafka->broker_up(-1);
sql("SELECT cdviz.resume_source('k1')");
produce_events('ks.in', 'late-', 51, 60);
ok(wait_until('late- after', 60, sub { lake_count('late-%') eq '60/60' }),
	'resumed after the outage, it reads on; what was not committed is kept once');
ok(wait_until('late- again', 60, sub { status('k1', 'duplicates') - $late_dups >= $late }),
	'what was stored and not committed was delivered again, as duplicates')
  or diag(status('k1', 'duplicates') - $late_dups);
is(lake_count('late-%'), '60/60', 'every event in the lake once');

# --- two sources, their own groups, at once ---
sql("SELECT cdviz.create_source('k2', 'kafka', 'ks.two', '" . options('g2') . "')");
produce_events('ks.two', 'two-', 1, 500);
produce_events('ks.in', 'one-', 1, 500);
ok(wait_until('both sources', 60,
	sub { lake_count('two-%') eq '500/500' && lake_count('one-%') eq '500/500' }),
	'two sources of different groups read at once');

# --- pause, resume, drop: no restart ---
my $old = worker_pid('k2');
sql("SELECT cdviz.pause_source('k2')");
ok(wait_until('k2 paused', 30, sub { worker_pid('k2') eq '' }), 'pausing stops the worker');
produce_events('ks.two', 'paused-', 1, 50);
sleep 3;
is(lake_count('paused-%'), '0/0', 'nothing read while paused');
sql("SELECT cdviz.resume_source('k2')");
ok(wait_until('k2 resumed', 60, sub { lake_count('paused-%') eq '50/50' }), 'resumed, it reads on');
isnt(worker_pid('k2'), $old, 'by a new worker');
sql("SELECT cdviz.drop_source('k2')");
ok(wait_until('k2 dropped', 30, sub { worker_pid('k2') eq '' }), 'dropping ends the worker');
produce_events('ks.two', 'dropped-', 1, 20);
sleep 3;
is(lake_count('dropped-%'), '0/0', 'nothing read once dropped');
is(sql(q{SELECT count(*) FROM cdviz.sources WHERE name = 'k2'}), '0', 'k2 is gone');

# --- idle: asleep on its latch, woken by librdkafka, not polling ---
sub cpu_ticks
{
	my ($pid) = @_;
	open(my $fh, '<', "/proc/$pid/stat") or return undef;
	my @f = split / /, (<$fh> =~ s/^.*\) //r);
	return $f[11] + $f[12];    # utime + stime
}
my $idle = worker_pid('k1');
my $t0 = cpu_ticks($idle);
sleep 5;
my $used = cpu_ticks($idle) - $t0;
cmp_ok($used, '<', 50, "idle, k1 used $used ticks of CPU in 5 s");
$kafka->produce('ks.in', { value => event_doc('wake-1', '/kafka/test') });
ok(wait_until('wake-1', 10, sub { lake_count('wake-%') eq '1/1' }), 'and a message wakes it');

$node->stop;
$kafka->stop;
done_testing();
