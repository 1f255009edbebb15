# The dispatcher's HTTP sinks against real receivers: a receiver that fails
# and hangs at random then recovers (everything arrives, in storage order),
# one that refuses some events (dead-lettered, retried on request), one
# that is down for a while (catches up; the others are not delayed), two
# writers committing out of id order (nothing skipped), cdviz forwarding
# to a second cdviz with HMAC (every event stored there once), and the
# dispatcher killed with SIGKILL in the middle of a backlog.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use DispatchTest;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

my $tmp = PostgreSQL::Test::Utils::tempdir();
# the http worker too: /metrics carries the sinks' figures
my $hport = PostgreSQL::Test::Cluster::get_free_port();
my $node = dispatch_node('dispatch_http', qq(
cdviz.http_listen_addresses = '127.0.0.1'
cdviz.http_port = $hport
));

my $flaky = start_receiver($tmp);
my $steady = start_receiver($tmp);

sub sql { return $node->safe_psql('postgres', $_[0]); }

# The value of one sample of GET /metrics, e.g.
# metric('cdviz_sink_pending_events{sink="flaky",kind="http"}'); undef if absent.
sub metric
{
	my ($sample) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'curl', '-s', '--max-time', '10', "http://127.0.0.1:$hport/metrics" ],
		'>', \$out, '2>', \$err);
	for my $line (split /\n/, $out)
	{
		return $1 if $line =~ /^\Q$sample\E (\S+)$/;
	}
	return undef;
}

# ---- a receiver failing and hanging at random, then recovering ----------
receiver_control($flaky, fail_rate => 0.3, hang_rate => 0.05);
sql(qq{SELECT cdviz.create_sink('flaky', 'http', 'http://127.0.0.1:$flaky->{port}/in',
	'{"timeout": 1, "initial_backoff": 0.05, "max_backoff": 0.3}')});
sql(qq{SELECT cdviz.create_sink('steady', 'http', 'http://127.0.0.1:$steady->{port}/in',
	'{"mode": "batch", "batch_size": 7}')});
ingest_events($node, 'f-', 1, 400, 40);
ok(wait_until('steady delivery', 60, sub { scalar(receiver_ids($steady)) >= 400 }),
	'the steady sink got the 400 events while the flaky one struggled');
receiver_control($flaky);
ok(wait_for_sink($node, 'flaky', 400, 120), 'the flaky sink caught up once the receiver recovered');
my @got = receiver_ids($flaky);
my @want = map { "f-$_" } 1 .. 400;
is_deeply(\@got, \@want, 'flaky receiver: every event once, in storage order');
is_deeply([ receiver_ids($steady) ], \@want, 'batch receiver: every event once, in storage order');
ok(sql("SELECT failures > 0 AND last_error IS NOT NULL FROM cdviz.sink_status WHERE name = 'flaky'") eq 't',
	'sink_status shows the failures and the last error');
is(metric('cdviz_sinks_up'), '1', '/metrics reads the sink figures');
is(metric('cdviz_sink_delivered_total{sink="flaky",kind="http"}'),
	sql("SELECT delivered FROM cdviz.sink_status WHERE name = 'flaky'"),
	'/metrics: delivered, as sink_status says');
is(metric('cdviz_sink_failures_total{sink="flaky",kind="http"}'),
	sql("SELECT failures FROM cdviz.sink_status WHERE name = 'flaky'"),
	'/metrics: failed attempts, as sink_status says');
is(metric('cdviz_sink_pending_events{sink="steady",kind="http"}'), '0', '/metrics: nothing pending');
ok($node->poll_query_until('postgres', 'SELECT cdviz.summaries_pending() = 0'),
	'the summaries are folded');
is(metric('cdviz_summaries_pending_events') . ' ' . metric('cdviz_summaries_lag_seconds'), '0 0',
	'/metrics: no summaries pending, no lag');
ok(metric('cdviz_sink_last_success_timestamp_seconds{sink="steady",kind="http"}') > time() - 600,
	'/metrics: time of the last success');

# ---- refusals go to rejected_deliveries, the rest is delivered ----------
receiver_control($flaky, reject => '"bad-');
ingest_events($node, 'bad-', 1, 5, 5);
ingest_events($node, 'g-', 1, 20, 10);
ok(wait_for_sink($node, 'flaky', 425, 60), 'refusing receiver: the sink moved on');
is(sql("SELECT count(*) FROM cdviz.rejected_deliveries d JOIN cdviz.sinks s ON s.id = d.sink_id
	WHERE s.name = 'flaky' AND d.status = 400 AND d.response LIKE 'refused%'"), '5',
	'the five refused events are dead-lettered with status and response');
@got = receiver_ids($flaky);
is_deeply([ @got[400 .. $#got] ], [ map { "g-$_" } 1 .. 20 ], 'the other events were delivered');
receiver_control($flaky);
is(sql("SELECT cdviz.retry_rejected_deliveries('flaky')"), '5', 'retry asked for five');
ok(wait_until('retried', 30, sub { grep({ /^bad-/ } receiver_ids($flaky)) == 5 }),
	'the refused events arrive once retried');
ok(wait_until('retry marked', 30, sub {
	sql("SELECT count(*) FROM cdviz.rejected_deliveries WHERE retried_at IS NULL") eq '0' }),
	'the retried rows are marked');

# ---- a sink down for a while: it catches up, the others are not delayed ----
receiver_control($flaky, down => 1);
my $t0 = time();
ingest_events($node, 'd-', 1, 200, 20);
ok(wait_until('steady during the outage', 30,
	sub { scalar(grep { /^d-/ } receiver_ids($steady)) == 200 }), 'the other sink kept delivering during the outage');
my $steady_s = time() - $t0;
sleep(3);
is(scalar(grep { /^d-/ } receiver_ids($flaky)), 0, 'nothing reached the dead receiver');
ok(sql("SELECT pending >= 200 AND lag_seconds > 0 FROM cdviz.sink_status WHERE name = 'flaky'") eq 't',
	'sink_status shows the dead sink\'s backlog and lag');
ok(metric('cdviz_sink_pending_events{sink="flaky",kind="http"}') >= 200
	&& metric('cdviz_sink_lag_seconds{sink="flaky",kind="http"}') > 0,
	'/metrics shows the dead sink\'s backlog and lag too');
receiver_control($flaky);
ok(wait_for_sink($node, 'flaky', 625, 60), 'the sink caught up when the receiver came back');
is_deeply([ grep { /^d-/ } receiver_ids($flaky) ], [ map { "d-$_" } 1 .. 200 ],
	'after the outage: every event once, in order');
note(sprintf('steady sink delivered 200 events in %.1f s while the other was down', $steady_s));

# ---- two writers committing out of id order --------------------------------
# (their events lie in different hours: per-hour state rows would otherwise
# make the second writer wait for the first one's commit)
my $slow = $node->background_psql('postgres');
$slow->query_safe('BEGIN');
# takes lower lake ids, commits last
$slow->query_safe("SELECT stored FROM cdviz.ingest_batch('["
	  . join(',', map { DispatchTest::event_doc("late-$_", undef, '2024-05-03T10:00:00Z') } 1 .. 30) . "]')");
ingest_events($node, 'early-', 1, 5, 5, '2024-05-04T10:00:00Z');
ok(wait_until('early events', 30, sub { scalar(grep { /^early-/ } receiver_ids($steady)) == 5 }),
	'the later-committed ids are delivered first');
$slow->query_safe('COMMIT');
$slow->quit;
ok(sql("SELECT min(id) FILTER (WHERE context_id LIKE 'late-%') < max(id) FILTER (WHERE context_id LIKE 'early-%')
	FROM cdviz.cdevents_lake") eq 't', 'the slow writer\'s ids are lower than the early ones');
ok(wait_until('late events', 30, sub { scalar(grep { /^late-/ } receiver_ids($steady)) == 30 }),
	'the events committed out of id order are delivered too: nothing skipped');
ok(wait_until('late events, flaky', 30, sub { scalar(grep { /^late-/ } receiver_ids($flaky)) == 30 }),
	'to every sink');

# ---- a window whose xids cross a power of ten (999 -> 1000, 9999 -> 10000) ----
# The window must be walked in xid order, not in the order of the xids'
# decimal text ("10001" sorts before "9999"), or it passes statements by.
my $digits = start_receiver($tmp);
sql(qq{SELECT cdviz.create_sink('digits', 'http', 'http://127.0.0.1:$digits->{port}/in',
	'{"mode": "batch", "batch_size": 10}', paused => true)});
sql(q{CREATE PROCEDURE burn_xids(target bigint) LANGUAGE plpgsql AS $$
BEGIN
	PERFORM set_config('synchronous_commit', 'off', false);
	WHILE pg_current_xact_id()::text::bigint < target LOOP
		COMMIT;
	END LOOP;
END $$});
my $power = 10**length(sql('SELECT pg_current_xact_id()') + 60);
sql("CALL burn_xids($power - 40)");
ingest_events($node, 'x-', 1, 30, 10);
sql("CALL burn_xids($power + 5)");
ingest_events($node, 'y-', 1, 30, 10);
ok(sql(qq{SELECT min(xid)::text::bigint < $power AND max(xid)::text::bigint > $power FROM cdviz.lake_batches
	WHERE xid > (SELECT pg_snapshot_xmin(snap) FROM cdviz.sink_progress p JOIN cdviz.sinks s ON s.id = p.sink_id
				 WHERE s.name = 'digits')}) eq 't', "the paused sink's window holds statements on both sides of $power");
sql("SELECT cdviz.resume_sink('digits')");
ok(wait_until('digits', 30, sub { scalar(receiver_ids($digits)) >= 60 }), 'every event of the window arrives');
is_deeply([ receiver_ids($digits) ], [ (map { "x-$_" } 1 .. 30), (map { "y-$_" } 1 .. 30) ],
	'once each, in storage order, across the power of ten');
sql("SELECT cdviz.drop_sink('digits')");
$digits->{h}->kill_kill;

# ---- cdviz forwarding to a second cdviz with HMAC, SIGKILL mid-backlog ----
my $node2 = PostgreSQL::Test::Cluster->new('dispatch_http_downstream');
$node2->init;
my $port2 = PostgreSQL::Test::Cluster::get_free_port();
$node2->append_conf('postgresql.conf', qq(
shared_preload_libraries = 'cdviz'
cdviz.database = 'postgres'
cdviz.http_listen_addresses = '127.0.0.1'
cdviz.http_port = $port2
cdviz.http_hmac_secret = 'hub-secret'
cdviz.http_auth_token = 'hub-token'
));
$node2->start;
$node2->safe_psql('postgres', 'CREATE EXTENSION cdviz');
sql(qq{SELECT cdviz.create_sink('hub-batch', 'http', 'http://127.0.0.1:$port2/cdevents',
	'{"mode": "batch", "batch_size": 25, "hmac_secret": "hub-secret", "token": "hub-token",
	  "initial_backoff": 0.1, "max_backoff": 1}', start_at => '-infinity')});
sql(qq{SELECT cdviz.create_sink('hub-wrong', 'http', 'http://127.0.0.1:$port2/cdevents',
	'{"hmac_secret": "not-the-secret", "token": "hub-token"}', type_pattern => 'dev.cdeventsx.probe-item.%')});
ok(sql("SELECT NOT has_table_privilege('cdviz_reader', 'cdviz.sink_secrets', 'SELECT')
	AND has_table_privilege('cdviz_reader', 'cdviz.sink_status', 'SELECT')
	AND NOT EXISTS (SELECT FROM cdviz.sinks WHERE options ? 'hmac_secret' OR options ? 'token')") eq 't',
	'secrets are kept apart, out of cdviz_reader\'s reach');

# a backlog, and the dispatcher killed while it works through it
ingest_events($node, 'k-', 1, 3000, 500);
ok(wait_until('part of the backlog', 60, sub {
	sql("SELECT delivered FROM cdviz.sink_status WHERE name = 'hub-batch'") > 300 }),
	'the backlog is on its way');
my $pid = sql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'cdviz dispatcher'");
ok($pid, 'dispatcher pid');
kill 'KILL', $pid;
ok(wait_until('restart', 60, sub {
	my ($rc, $out) = $node->psql('postgres', "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'cdviz dispatcher'");
	return $rc == 0 && $out eq '1' }), 'the dispatcher is back after SIGKILL (and the crash restart)');
my $n = sql('SELECT count(*) FROM cdviz.cdevents_lake');
ok(wait_for_sink($node, 'hub-batch', $n, 180), 'the forwarding sink worked through the backlog');
is($node2->safe_psql('postgres', 'SELECT count(*), count(DISTINCT (context_source, context_id)) FROM cdviz.cdevents_lake'),
	"$n|$n", 'the second cdviz holds every event of the first, once');
is($node2->safe_psql('postgres', q{SELECT count(*) FROM cdviz.cdevents_lake WHERE context_id LIKE 'k-%'}),
	'3000', 'including the whole backlog crossed by the kill');
ok(wait_until('wrong secret refused', 30, sub {
	sql("SELECT rejected > 0 AND delivered = 0 FROM cdviz.sink_status WHERE name = 'hub-wrong'") eq 't' }),
	'a wrong HMAC secret is refused (401) and dead-lettered, nothing stored');
is(sql("SELECT DISTINCT status FROM cdviz.rejected_deliveries d JOIN cdviz.sinks s ON s.id = d.sink_id
	WHERE s.name = 'hub-wrong'"), '401', 'with status 401');

# ---- management: pause, alter, drop; log sink -------------------------------
# (caught up first: a chunk in flight when the pause is asked would still
# arrive)
wait_for_sink($node, 'steady', 1, 120) or diag('steady did not catch up before the pause');
sql("SELECT cdviz.pause_sink('steady')");
my $before = scalar(receiver_ids($steady));
ingest_events($node, 'p-', 1, 10, 10);
sleep(2);
is(scalar(receiver_ids($steady)), $before, 'a paused sink receives nothing');
sql("SELECT cdviz.resume_sink('steady')");
ok(wait_until('resumed', 30, sub { scalar(grep { /^p-/ } receiver_ids($steady)) == 10 }),
	'resumed, it gets what waited');
sql("SELECT cdviz.alter_sink('steady', source_pattern => '/only/%')");
ingest_events($node, 'q-', 1, 5, 5);
DispatchTest::ingest_events($node, 'r-', 1, 1, 1);
$node->safe_psql('postgres', "SELECT cdviz.ingest('" . DispatchTest::event_doc('only-1', '/only/x') . "')");
ok(wait_until('filtered', 30, sub { scalar(grep { /^only-/ } receiver_ids($steady)) == 1 }),
	'an altered filter applies');
is(scalar(grep { /^[qr]-/ } receiver_ids($steady)), 0, 'events outside the filter are not sent');
sql("SELECT cdviz.create_sink('logged', 'log', 'server log', type_pattern => 'dev.cdeventsx.probe-item.%')");
$node->safe_psql('postgres', "SELECT cdviz.ingest('" . DispatchTest::event_doc('log-1') . "')");
ok(wait_until('log line', 30, sub { slurp_file($node->logfile) =~ /\{"sink":"logged","id":\d+,"event":\{.*"log-1"/ }),
	'the log sink wrote the event as one JSON line');
sql("SELECT cdviz.drop_sink('flaky')");
is(sql("SELECT count(*) FROM cdviz.sink_progress p LEFT JOIN cdviz.sinks s ON s.id = p.sink_id WHERE s.id IS NULL"),
	'0', 'drop_sink removes the progress');
ok(wait_until('outbox pruned', 40, sub {
	sql("SELECT count(*) = 0 FROM cdviz.lake_batches b WHERE b.xid < (SELECT min(pg_snapshot_xmin(snap)) FROM cdviz.sink_progress)") eq 't' }),
	'the outbox is pruned behind every sink');

$flaky->{h}->kill_kill;
$steady->{h}->kill_kill;
$node2->stop;
$node->stop;
done_testing();
