# Streaming standbys and failover.  A hot standby answers the read API to
# cdviz_reader members and runs no cdviz worker (the workers start when
# recovery is finished), so its HTTP port stays closed; promoted, it starts
# them and ingests.  With synchronous replication an event the HTTP
# receiver acknowledged is on the standby: killing the primary with
# -m immediate and promoting the standby loses none of them.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use CdvizNode;
use HttpTest;
use IO::Socket::INET;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $json = ['Content-Type: application/json'];

# How long promotion may take to give a receiver that stores events.
my $promote_bound = 30;

# A service deployment (spec 0.4.1) of $service at $version into $env.
sub deployed
{
	my ($id, $env, $service, $version, $ts) = @_;
	return qq({"context":{"version":"0.4.1","id":"$id","source":"/cdviz/repl",)
	  . qq("type":"dev.cdevents.service.deployed.0.2.0","timestamp":"$ts"},)
	  . qq("subject":{"id":"$service","source":"/cdviz/repl","type":"service",)
	  . qq("content":{"environment":{"id":"$env"},"artifactId":"pkg:oci/$service\@$version"}}});
}

# A pipeline run event (spec 0.5.1): only the summaries know runs.
sub run_event
{
	my ($id, $run, $predicate, $ts) = @_;
	my $outcome = $predicate eq 'finished' ? ',"outcome":"success"' : '';
	return qq({"context":{"specversion":"0.5.1","id":"$id","source":"/cdviz/repl",)
	  . qq("type":"dev.cdevents.pipelinerun.$predicate.0.3.0","timestamp":"$ts"},)
	  . qq("subject":{"id":"$run","content":{"pipelineName":"p","uri":"https://ci/$run"$outcome}}});
}

# POST a body of events to the receiver on $port; returns the status and
# the lake ids the answer says were stored, in the order of the events.
sub post_events
{
	my ($port, $body, %o) = @_;
	my ($code, $answer) = http_request(port => $port, body => $body, headers => $json, %o);
	my @ids = $answer =~ /"stored":\[([\d,]*)\]/ ? split(/,/, $1) : ();
	return ($code, \@ids);
}

# A primary (allowing standbys) with the receiver on a port of its own.
sub http_primary
{
	my ($name, $extra) = @_;
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	my $node = cdviz_node($name, qq(
cdviz.http_listen_addresses = '127.0.0.1'
cdviz.http_port = $port
cdviz.http_timeout = 30
) . ($extra // ''), allows_streaming => 1);
	$node->start;
	return ($node, $port);
}

# A hot standby of $primary from a fresh backup, streaming.  It gets an
# HTTP port of its own, so that a closed port says that no receiver runs
# there, and no synchronous standby of its own: promoted, it would wait
# for one that does not exist, and so would every commit.
sub standby_of
{
	my ($primary, $name) = @_;
	$primary->backup("${name}_backup");
	my $standby = PostgreSQL::Test::Cluster->new($name);
	$standby->init_from_backup($primary, "${name}_backup", has_streaming => 1);
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	$standby->append_conf('postgresql.conf', qq(
cdviz.http_port = $port
synchronous_standby_names = ''
));
	$standby->start;
	return ($standby, $port);
}

sub wait_sync
{
	my ($primary, $standby) = @_;
	my $name = $standby->name;
	return $primary->poll_query_until('postgres', qq{
		SELECT sync_state = 'sync' AND state = 'streaming'
		FROM pg_stat_replication WHERE application_name = '$name'});
}

# A primary with the extension and its standby $sname, synchronous under
# synchronous_commit = $commit; passes (test $what) once the standby
# streams as the synchronous one.
sub sync_pair
{
	my ($pname, $sname, $commit, $what) = @_;
	my ($primary, $primary_http) = http_primary($pname, qq(
synchronous_standby_names = '$sname'
synchronous_commit = $commit
));
	my ($standby, $standby_http) = standby_of($primary, $sname);
	ok(wait_sync($primary, $standby), $what);
	$primary->safe_psql('postgres', 'CREATE EXTENSION cdviz');
	return ($primary, $primary_http, $standby, $standby_http);
}

# The cdviz workers that run, by type ("cdviz http", "cdviz dispatcher"...).
sub cdviz_backends
{
	my ($node) = @_;
	return $node->safe_psql('postgres', q{
		SELECT string_agg(backend_type, ',' ORDER BY backend_type)
		FROM pg_stat_activity WHERE backend_type LIKE 'cdviz%'});
}

sub port_open
{
	my ($port) = @_;
	my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
		Proto => 'tcp', Timeout => 5);
	return 0 unless $sock;
	close $sock;
	return 1;
}

# Promote $standby and POST $body to its receiver until it is stored;
# returns the status, the stored ids and the seconds from promotion.
sub promote_and_post
{
	my ($standby, $port, $body) = @_;
	my $t0 = time;
	my ($code, $ids) = (0, []);
	$standby->promote;
	while (time - $t0 < $promote_bound)
	{
		($code, $ids) = post_events($port, $body, timeout => 5);
		last if $code == 201;
		usleep(50_000);
	}
	return ($code, $ids, time - $t0);
}

# ==== 1. a hot standby: the read API, no worker; promotion ===============
# remote_apply: the primary answers a commit once the standby applied it,
# so an acknowledged event is visible on the standby at once.
my ($primary, $primary_http, $standby, $standby_http) = sync_pair('primary', 'standby', 'remote_apply',
	'the standby streams, as the synchronous standby');
$primary->safe_psql('postgres', 'CREATE ROLE grafana LOGIN IN ROLE cdviz_reader');
wait_http('/readyz', 200, $primary_http);

my ($code, $ids) = post_events($primary_http, '['
	  . join(',',
		deployed('dep-1', 'prod', 'api', '1.0.0', '2024-05-01T10:00:00Z'),
		deployed('dep-2', 'prod', 'web', '1.0.0', '2024-05-01T11:00:00Z'),
		deployed('dep-3', 'staging', 'api', '2.0.0', '2024-05-02T09:00:00Z'),
		deployed('dep-4', 'prod', 'api', '2.0.0', '2024-05-03T09:00:00Z'))
	  . ']');
is($code . ' ' . scalar(@$ids), '201 4', 'four deployments stored on the primary');

# as a cdviz_reader member, on the standby, without waiting for anything
my $reader = sub {
	my ($node, $sql) = @_;
	return $node->safe_psql('postgres', $sql, extra_params => ['-U', 'grafana']);
};
my %read = (
	inventory => q{SELECT string_agg(environment_id || '/' || service_id || '=' || version, ','
		ORDER BY environment_id, service_id) FROM cdviz.environment_inventory},
	deployments => q{SELECT string_agg(context_id || ':' || action, ',' ORDER BY "timestamp")
		FROM cdviz.deployments},
	dora => q{SELECT string_agg(environment_id || ':' || deployments || ':' || frequency_tier, ','
		ORDER BY environment_id)
		FROM cdviz.dora_by_environment('2024-04-01', '2024-06-01')},
	lake => q{SELECT string_agg(id::text, ',' ORDER BY id) FROM cdviz.cdevents_lake});
is($reader->($standby, $read{inventory}), 'prod/api=2.0.0,prod/web=1.0.0,staging/api=2.0.0',
	'standby: cdviz.environment_inventory as a cdviz_reader member');
for my $q (sort keys %read)
{
	my $want = $primary->safe_psql('postgres', $read{$q});
	isnt($want, '', "primary: the $q query has rows");
	is($reader->($standby, $read{$q}), $want, "standby: the $q query answers as the primary");
}
is($reader->($standby, 'SELECT pg_is_in_recovery()'), 't', 'the reader is on a standby');

# Summaries are folded by the primary's summaries worker after the ingest
# commit: a standby has them once that fold is replayed.  A lock the fold
# needs holds it back here (EXCLUSIVE lets the standby's readers be), once
# the worker folds (it found the extension: the deployments are folded).
ok($primary->poll_query_until('postgres', 'SELECT cdviz.summaries_pending() = 0'),
	'primary: the summaries worker folded the deployments');
my $hold = $primary->background_psql('postgres');
$hold->query_safe('BEGIN');
$hold->query_safe('LOCK TABLE cdviz.pipeline_run_summaries IN EXCLUSIVE MODE');
($code) = post_events($primary_http, '['
	  . run_event('run-1a', 'run-1', 'started', '2024-05-01T09:00:00Z') . ','
	  . run_event('run-1b', 'run-1', 'finished', '2024-05-01T09:05:00Z') . ']');
is($code, 201, 'a pipeline run stored on the primary');
ok($primary->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM pg_stat_activity
	WHERE backend_type = 'cdviz summaries' AND wait_event_type = 'Lock'}),
	'primary: the fold of the run waits for the lock');
is($reader->($standby, q{
	SELECT (SELECT count(*) FROM cdviz.cdevents_lake WHERE context_id LIKE 'run-1_'),
		   cdviz.summaries_pending() > 0,
		   (SELECT count(*) FROM cdviz.pipeline_runs WHERE pipeline_run_id = 'run-1')}),
	'2|t|0', 'standby: the run is in the lake, not yet in the summaries the primary has not folded');
$hold->query_safe('COMMIT');
$hold->quit;
ok($standby->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM cdviz.pipeline_runs WHERE pipeline_run_id = 'run-1' AND outcome = 'success'}),
	'standby: the run is in the summaries once the primary folded it');

# no worker on the standby, so no receiver
is(cdviz_backends($standby), '', 'standby: no cdviz worker runs');
my $workers = cdviz_backends($primary);
like($workers, qr/cdviz http.*cdviz summaries/, "primary: the cdviz workers run ($workers)");
ok(port_open($primary_http), "primary: its HTTP port $primary_http is open");
ok(!port_open($standby_http), "standby: its HTTP port $standby_http refuses connections");

# failover: the primary is gone, the standby is promoted
$primary->stop;
my ($elapsed);
($code, $ids, $elapsed) = promote_and_post($standby, $standby_http,
	deployed('dep-5', 'prod', 'web', '1.1.0', '2024-05-04T09:00:00Z'));
is($code, 201, sprintf('promoted: a POST is stored within %d s (%.2f s)', $promote_bound, $elapsed));
note(sprintf('promote to first stored event: %.2f s', $elapsed));
is($standby->safe_psql('postgres',
		"SELECT count(*) FROM cdviz.cdevents_lake WHERE context_id = 'dep-5' AND id = " . ($ids->[0] // 0)),
	1, 'promoted: the event is in the lake');
is($reader->($standby, $read{inventory}), 'prod/api=2.0.0,prod/web=1.1.0,staging/api=2.0.0',
	'promoted: the inventory follows');
ok($standby->poll_query_until('postgres', qq{
	SELECT string_agg(backend_type, ',' ORDER BY backend_type) = '$workers'
	FROM pg_stat_activity WHERE backend_type LIKE 'cdviz%'}),
	'promoted: the same cdviz workers run as on the primary');
$standby->stop;

# ==== 2. synchronous replication: no acknowledged event lost =============
my ($sprimary, $sprimary_http, $sstandby, $sstandby_http) = sync_pair('sync_primary', 'sync_standby', 'on',
	'the second standby is synchronous');
wait_http('/readyz', 200, $sprimary_http);

# A commit waiting for the synchronous standby can be let go: a cancel
# (pg_cancel_backend) or a terminate (pg_ctl stop -m fast) of the waiting
# process ends the wait with a WARNING and the transaction committed
# locally only.  The receiver must not answer 2xx then: the event is not
# on the standby, and would be lost with the primary.
$sstandby->stop;
my $tmp = PostgreSQL::Test::Utils::tempdir();
PostgreSQL::Test::Utils::append_to_file("$tmp/unconfirmed",
	deployed('unconfirmed-1', 'prod', 'api', '3.0.0', '2024-05-05T09:00:00Z'));
my $pending_code = '';
my $pending = IPC::Run::start(
	[ 'curl', '-s', '-o', "$tmp/unconfirmed.answer", '-w', '%{http_code}', '--max-time', '60',
	  '-H', 'Content-Type: application/json', '--data-binary', "\@$tmp/unconfirmed",
	  "http://127.0.0.1:$sprimary_http/cdevents" ],
	'>', \$pending_code);
ok($sprimary->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM pg_stat_activity
	WHERE backend_type = 'cdviz http' AND wait_event = 'SyncRep'}),
	'with the synchronous standby down, the receiver\'s commit waits for it');
$sprimary->safe_psql('postgres', q{
	SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE backend_type = 'cdviz http'});
$pending->finish;
ok($pending_code !~ /^2/,
	"a commit the synchronous standby did not confirm is not acknowledged (got $pending_code)");
$sstandby->start;
ok(wait_sync($sprimary, $sstandby), 'the standby is back, synchronous');
($code) = http_request(port => $sprimary_http, body_file => "$tmp/unconfirmed", headers => $json);
is($code, 201, 'the client\'s retry is acknowledged once the standby is back');

# 1,000 events in ten acknowledged requests
my %acked;    # lake id => context id, for every event answered as stored
my $sync_ok = 1;
for my $r (1 .. 10)
{
	my @ctx = map { sprintf('sync-%02d-%03d', $r, $_) } 1 .. 100;
	my ($c, $stored) = post_events($sprimary_http, '['
		  . join(',', map { deployed($_, 'prod', "svc-$r", '1.0.0', '2024-05-06T09:00:00Z') } @ctx)
		  . ']');
	$sync_ok = 0 unless $c == 201 && @$stored == 100;
	@acked{@$stored} = @ctx;
}
ok($sync_ok, '1,000 events acknowledged in ten requests of 100');
is(scalar(keys %acked), 1000, '1,000 distinct lake ids acknowledged');

# and a stream of requests still being answered when the primary dies:
# whatever was acknowledged must be on the standby too
my $stream = PostgreSQL::Test::Utils::tempdir();
for my $i (1 .. 300)
{
	PostgreSQL::Test::Utils::append_to_file("$stream/body$i", '['
		  . join(',', map { deployed("flight-$i-$_", 'prod', 'svc-flight', '1.0.0', '2024-05-07T09:00:00Z') } 1 .. 10)
		  . ']');
}
my $loop = IPC::Run::start([ 'bash', '-c', qq{
	for i in \$(seq 1 300); do
		code=\$(curl -s -o "$stream/answer\$i" -w '%{http_code}' --max-time 20 \\
			-H 'Content-Type: application/json' --data-binary "\@$stream/body\$i" \\
			http://127.0.0.1:$sprimary_http/cdevents)
		echo "\$i \$code" >> "$stream/codes"
		[ "\$code" = 201 ] || break
	done
} ]);
for (my $i = 0; $i < 600 && !(-f "$stream/codes" && (() = slurp_file("$stream/codes") =~ /\n/g) >= 5); $i++)
{
	usleep(20_000);
}
$sprimary->stop('immediate');
$loop->finish;
my ($flight_acked, $flight_failed) = (0, 0);
for my $line (split /\n/, slurp_file("$stream/codes"))
{
	my ($i, $c) = split / /, $line;
	if ($c ne '201')
	{
		$flight_failed++;
		next;
	}
	my ($s) = slurp_file("$stream/answer$i") =~ /"stored":\[([\d,]*)\]/;
	my @s = split /,/, ($s // '');
	@acked{@s} = map { "flight-$i-$_" } 1 .. @s;
	$flight_acked += @s;
}
note("stream: $flight_acked events acknowledged before the kill, $flight_failed request(s) cut off");
cmp_ok($flight_acked, '>', 0, 'the stream had events acknowledged before the kill');

($code, $ids, $elapsed) = promote_and_post($sstandby, $sstandby_http,
	deployed('after-1', 'prod', 'api', '4.0.0', '2024-05-08T09:00:00Z'));
is($code, 201, sprintf('promoted synchronous standby stores a POST (%.2f s after promote)', $elapsed));
note(sprintf('promote to first stored event: %.2f s', $elapsed));
my @acked_ids = sort { $a <=> $b } keys %acked;
my $id_array = "'{" . join(',', @acked_ids) . "}'::bigint[]";
is($sstandby->safe_psql('postgres',
		"SELECT count(*) FROM cdviz.cdevents_lake WHERE id = ANY($id_array)"),
	scalar(@acked_ids), scalar(@acked_ids) . ' acknowledged events: all on the promoted standby');
is($sstandby->safe_psql('postgres', qq{SELECT string_agg(id || ':' || context_id, ',' ORDER BY id)
		FROM cdviz.cdevents_lake WHERE id = ANY($id_array)}),
	join(',', map { "$_:$acked{$_}" } @acked_ids),
	'each acknowledged lake id holds the acknowledged event');
my $flight_there = $sstandby->safe_psql('postgres',
	q{SELECT count(*) FROM cdviz.cdevents_lake WHERE context_id LIKE 'flight-%'});
note('stream events on the promoted standby: ' . $flight_there . ', of which '
	  . ($flight_there - $flight_acked) . ' committed but not acknowledged');
is($sstandby->safe_psql('postgres',
		q{SELECT count(*) FROM cdviz.cdevents_lake WHERE context_id = 'unconfirmed-1'}),
	1, 'the retried event is on the promoted standby');
ok($sstandby->poll_query_until('postgres', 'SELECT cdviz.summaries_pending() = 0'),
	'promoted: the summaries the old primary had queued are folded');

done_testing();
