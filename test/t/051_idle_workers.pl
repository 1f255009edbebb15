# Idle workers cost next to nothing, whatever the lake's size: with every
# worker on (the http receiver, a folder source, a sink) and a lake of 24
# monthly partitions, the cdviz workers together use at most 0.5% of a core
# over 60 idle seconds.  Then the summaries worker, asleep, still folds an
# event as soon as the ingest transaction commits, and the dispatcher still
# delivers it.
use strict;
use warnings;
use File::Path qw(make_path);
use FindBin;
use lib $FindBin::Bin;
use HttpTest;
use POSIX ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $tmp = PostgreSQL::Test::Utils::tempdir();
make_path("$tmp/in");

# the defaults of every interval: idle is what a user gets out of the box
my $node = start_http_node('idle', qq(
cdviz.fs_path = '$tmp/in'
));
$node->safe_psql('postgres', 'CREATE EXTENSION cdviz');
$node->safe_psql('postgres', q{SELECT cdviz.create_sink('idle-log', 'log', 'idle')});

# the lake: 24 monthly partitions, a few events of each kind in each
sub month_events
{
	my ($prefix) = @_;
	return qq{
	SELECT cdviz.ingest_batch(jsonb_agg(e)) FROM (
		SELECT jsonb_build_object(
			'context', jsonb_build_object('specversion', '0.5.1',
				'id', '$prefix-' || m || '-' || p, 'source', '/idle',
				'type', 'dev.cdevents.pipelinerun.' || p || '.0.3.0',
				'timestamp', to_char(timestamptz '2023-01-10 12:00Z' + m * interval '1 month'
									 + k * interval '1 minute', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')),
			'subject', jsonb_build_object('id', '$prefix-run-' || m,
				'content', jsonb_build_object('pipelineName', 'p', 'uri', 'https://ci/' || m)
				|| CASE WHEN p = 'finished' THEN '{"outcome": "success"}' ELSE '{}' END::jsonb)) AS e
		FROM generate_series(0, 23) AS m,
			 unnest(ARRAY['queued', 'started', 'finished']) WITH ORDINALITY AS t(p, k)) AS x};
}
$node->safe_psql('postgres', month_events('sql'));
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_inherits
	WHERE inhparent = 'cdviz.cdevents_lake'::regclass}), '24', 'the lake has 24 partitions');

# every path has worked once: an HTTP post, a file read, the sink's deliveries
my ($code) = http_request(body => event_json('idle-http', timestamp => '2024-12-20T10:00:00Z'),
	headers => ['Content-Type: application/json']);
is($code, 201, 'an event posted over HTTP is stored');
open my $fh, '>', "$tmp/in/events.json" or die;
print $fh event_json('idle-file', timestamp => '2024-12-21T10:00:00Z');
close $fh;
ok($node->poll_query_until('postgres', q{SELECT count(*) = 74 FROM cdviz.cdevents_lake}),
	'the file is read');
ok($node->poll_query_until('postgres', q{SELECT cdviz.summaries_pending() = 0
	AND (SELECT pending = 0 FROM cdviz.sink_status WHERE name = 'idle-log')}),
	'the summaries are folded and the sink is up to date');

my %types = ('cdviz http' => 1, 'cdviz source' => 1, 'cdviz dispatcher' => 1, 'cdviz sources' => 1,
	'cdviz summaries' => 1);
my %pids = map { split /\|/ } split /\n/, $node->safe_psql('postgres',
	q{SELECT backend_type, pid FROM pg_stat_activity WHERE backend_type LIKE 'cdviz %'});
is(join(',', sort keys %pids), join(',', sort keys %types), 'the five workers run');

# utime + stime of a process, in seconds
my $hz = POSIX::sysconf(POSIX::_SC_CLK_TCK());
sub cpu_seconds
{
	my ($pid) = @_;
	my $stat = slurp_file("/proc/$pid/stat");
	# the command name may hold spaces: count fields after its ")"
	$stat =~ s/^.*\) //s;
	my @f = split / /, $stat;
	return ($f[11] + $f[12]) / $hz;		# fields 14 and 15 of stat(5)
}

sleep 2;	# whatever was due after the last event (a fold, a delivery) is done
my %before = map { $_ => cpu_seconds($pids{$_}) } keys %pids;
my $t0 = time;
sleep 60;
my %after = map { $_ => cpu_seconds($pids{$_}) } keys %pids;
my $elapsed = time - $t0;
my %still = map { split /\|/ } split /\n/, $node->safe_psql('postgres',
	q{SELECT backend_type, pid FROM pg_stat_activity WHERE backend_type LIKE 'cdviz %'});
is_deeply(\%still, \%pids, 'no worker was restarted meanwhile');
my $total = 0;
for my $type (sort keys %pids)
{
	my $used = $after{$type} - $before{$type};
	$total += $used;
	note(sprintf('%s: %.2f s of CPU in %.1f s (%.2f%% of a core)',
		$type, $used, $elapsed, 100 * $used / $elapsed));
}
cmp_ok(100 * $total / $elapsed, '<=', 0.5,
	sprintf('idle workers use at most 0.5%% of a core (%.2f s in %.1f s)', $total, $elapsed));

# asleep, the workers still answer at once: the summaries of an event are
# folded and the event delivered well within the default intervals' range
my $t1 = time;
$node->safe_psql('postgres', month_events('late'));
ok($node->poll_query_until('postgres', q{SELECT cdviz.summaries_pending() = 0
	AND EXISTS (SELECT FROM cdviz.pipeline_run_summaries WHERE pipeline_run_id = 'late-run-23')
	AND (SELECT pending = 0 FROM cdviz.sink_status WHERE name = 'idle-log')}),
	'events ingested after the idle minute are folded and delivered');
cmp_ok(time - $t1, '<', 3, 'within seconds');

$node->stop;
done_testing();
