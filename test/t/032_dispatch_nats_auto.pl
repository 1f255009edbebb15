# NATS sinks in jetstream = auto mode beside a core NATS subscriber and an
# HTTP sink, against a real nats-server: the subscriber receives every
# event exactly once over many stream re-check periods (the look-up of
# the streams that take a subject must publish nothing on it), a stream
# created later is found at a re-check, and neither a NATS server that is
# not running, nor one that answers nothing, nor the NATS sinks' look-ups
# delay the HTTP sink.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use DispatchTest;
use IPC::Run;
use JSON::PP;
use MiniNats;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

plan skip_all => 'nats-server is not installed' unless MiniNats::server_bin();

my $tmp = PostgreSQL::Test::Utils::tempdir();
my $nport = PostgreSQL::Test::Cluster::get_free_port();
my $recv = start_receiver($tmp);

# re-check the streams every second: the test spans many re-check periods
my $node = dispatch_node('dispatch_nats_auto', qq(
cdviz.nats_url = 'nats://127.0.0.1:$nport'
cdviz.nats_stream_check_interval = '1s'
));
sub sql { return $node->safe_psql('postgres', $_[0]); }
sub http_ids { my $p = shift; return scalar(grep { /^\Q$p\E/ } receiver_ids($recv)); }

# ---- no NATS server yet: the HTTP sink does not wait for it ------------------
sql(qq{SELECT cdviz.create_sink('http', 'http', 'http://127.0.0.1:$recv->{port}/')});
sql(q{SELECT cdviz.create_sink('early', 'nats', 'early.{subject}')});
my $t0 = time();
ingest_events($node, 'a-', 1, 20, 1);
ok(wait_until('HTTP without NATS', 10, sub { http_ids('a-') == 20 }),
	'with no NATS server running, the HTTP sink delivers every event');
note(sprintf('20 events through HTTP in %.1f s with no NATS server', time() - $t0));
is(sql(q{SELECT pending FROM cdviz.sink_status WHERE name = 'early'}), '20',
	'while the NATS sink keeps its events');

# ---- the NATS server comes up ---------------------------------------------------
my ($nats, $api) = MiniNats::start_server($tmp, $nport);
ok(wait_for_sink($node, 'early', 20, 30), 'once NATS is up the waiting sink delivers');

my $r = $api->request('$JS.API.STREAM.CREATE.OUT',
	encode_json({ name => 'OUT', subjects => ['js.>'], storage => 'file' }));
ok(!$r->{error}, 'stream OUT created') or diag explain $r;

# a core subscriber, as core NATS is used: it never answers what it reads
my $sub = MiniNats->new($nport);
$sub->subscribe('core.>');
$sub->subscribe('js.>');
$sub->publish('core.ready', '{}');
my $ready = $sub->next_msg(5);
ok($ready && $ready->{subject} eq 'core.ready', 'the subscriber is subscribed');

sql(q{SELECT cdviz.create_sink('core', 'nats', 'core.{subject}.{predicate}')});
sql(q{SELECT cdviz.create_sink('js', 'nats', 'js.{subject}.{predicate}')});

# one event per transaction every half second, over many re-check periods;
# half-way, a stream starts taking the core sink's subjects
my $n = 16;
my (@core, @js, $late_at);
my $max_lag = 0;
sub drain
{
	my ($timeout) = @_;
	while (my $m = $sub->next_msg($timeout))
	{
		my $id = eval { decode_json($m->{data})->{context}{id} } // "?$m->{subject}";
		push @core, $id if $m->{subject} =~ /^core\.probe-item/;
		push @js, $id if $m->{subject} =~ /^js\./;
		$timeout = 0.01;
	}
}
for my $i (1 .. $n)
{
	my $start = time();
	ingest_events($node, 'c-', $i, $i, 1);
	wait_until("HTTP c-$i", 10, sub { http_ids("c-$i") == 1 });
	my $lag = time() - $start;
	$max_lag = $lag if $lag > $max_lag;
	if ($i == $n / 2)
	{
		$r = $api->request('$JS.API.STREAM.CREATE.LATE',
			encode_json({ name => 'LATE', subjects => ['core.>'], storage => 'file' }));
		ok(!$r->{error}, 'stream LATE created half-way') or diag explain $r;
		$late_at = $i;
	}
	drain(0.01);
	my $rest = 0.5 - (time() - $start);
	usleep(int($rest * 1e6)) if $rest > 0;
}
ok($max_lag < 2, 'the HTTP sink delivered each event promptly beside the NATS sinks')
  or diag(sprintf('slowest HTTP delivery: %.1f s', $max_lag));
note(sprintf('slowest HTTP delivery: %.2f s', $max_lag));

ok(wait_for_sink($node, 'core', $n, 30), 'the core sink delivered everything');
ok(wait_for_sink($node, 'js', $n, 30), 'the JetStream sink delivered everything');
# three more re-check periods: nothing else may arrive
my $until = time() + 3;
drain($until - time()) while time() < $until;
my @want = map { "c-$_" } 1 .. $n;
is_deeply(\@core, \@want, 'the core subscriber received every event of the core sink exactly once, in order');
is_deeply(\@js, \@want, 'and every event of the JetStream sink exactly once, in order');
is($api->request('$JS.API.STREAM.INFO.OUT', '')->{state}{messages}, $n, 'stream OUT holds each event once');

my $late = $api->request('$JS.API.STREAM.INFO.LATE', '')->{state};
ok($late->{messages} >= 1 && $late->{messages} < $n, 'a stream created later takes the events after a re-check')
  or diag explain $late;
my $last = $api->request('$JS.API.STREAM.MSG.GET.LATE', encode_json({ last_by_subj => 'core.>' }));
like(decode_base64_data($last), qr/"id": "c-$n"/, 'up to the last one');

is(sql(q{SELECT string_agg(name || '=' || failures, ',' ORDER BY name) FROM cdviz.sink_status
	WHERE name IN ('core', 'js', 'http')}), 'core=0,http=0,js=0', 'no failed attempt');
is(http_ids('c-'), $n, 'the HTTP sink delivered each event once');

# ---- a NATS server that takes connections but answers nothing ----------------
# (stopped with SIGSTOP): the NATS sinks wait for answers, the HTTP sink does not
sql(q{SELECT cdviz.create_sink('stalled', 'nats', 'core.{subject}.{predicate}', '{"jetstream": "never", "timeout": 2}')});
ingest_events($node, 's-', 1, 1, 1);
ok(wait_for_sink($node, 'stalled', 1, 30), 'a core NATS sink with jetstream = never delivers');
kill 'STOP', $nats->{KIDS}[0]{PID};
$max_lag = 0;
for my $i (1 .. 10)
{
	my $start = time();
	ingest_events($node, 'd-', $i, $i, 1);
	wait_until("HTTP d-$i", 10, sub { http_ids("d-$i") == 1 });
	my $lag = time() - $start;
	$max_lag = $lag if $lag > $max_lag;
	my $rest = 0.4 - (time() - $start);
	usleep(int($rest * 1e6)) if $rest > 0;
}
# (the core NATS sink "stalled" times out there with nothing published on
# JetStream, which must not take the dispatcher down)
ok($max_lag < 2, 'with the NATS server unresponsive the HTTP sink still delivers each event promptly')
  or diag(sprintf('slowest HTTP delivery: %.1f s', $max_lag));
note(sprintf('slowest HTTP delivery with NATS stopped: %.2f s', $max_lag));
ok(sql(q{SELECT pending FROM cdviz.sink_status WHERE name = 'stalled'}) > 0,
	'while the NATS sinks hold their events');
kill 'CONT', $nats->{KIDS}[0]{PID};
ok(wait_for_sink($node, 'stalled', 11, 60), 'and deliver them once the server answers again');
ok(wait_for_sink($node, 'core', $n + 11, 60), 'all of them');
@core = ();
drain(2);
my %seen = map { $_ => 1 } @core;
is(scalar(grep { $seen{"d-$_"} } 1 .. 10), 10, 'the subscriber got every event (at least once: the server kept what it had read)');

sub decode_base64_data
{
	require MIME::Base64;
	return MIME::Base64::decode_base64($_[0]{message}{data} // '');
}

unlike(slurp_file($node->logfile), qr/terminated by signal/, 'the dispatcher never crashed');

$nats->kill_kill;
$node->stop;
done_testing();
