# Slow clients (slowloris) against the cdviz http receiver: one peer
# holding 1,000 connections that each send a header byte every second
# must not keep another peer out, and every slow connection is closed by
# cdviz.http_request_deadline, whatever its pace.  A slow body and a slow
# second request on a kept-alive connection meet the same deadline.
#
# The peers are told apart by their loopback source address (all of
# 127.0.0.0/8 is local on Linux): the slow client binds 127.0.0.3 (and
# 127.0.0.4, 127.0.0.5), the well-behaved one 127.0.0.2.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);
use HttpTest;

my $deadline = 3;
my $per_address = 16;
my $node = start_http_node('slow', qq(
cdviz.http_request_deadline = ${deadline}s
cdviz.http_max_connections_per_address = $per_address
));
$node->safe_psql('postgres', 'CREATE EXTENSION cdviz');
wait_http('/readyz', 200);

my $dir = PostgreSQL::Test::Utils::tempdir();

# The slow client: opens COUNT connections from SOURCE, then sends one
# byte of an endless request on each every INTERVAL seconds, and notes
# when the server closes each one.  "header": the headers never end;
# "body": complete headers, then the announced body byte by byte;
# "keepalive": one complete POST of EVENT_FILE first (answered 201, the
# connection kept alive), then a slow second request on the same
# connection.  It stops after MAX seconds or once
# the server has closed every connection, and prints one summary line.
PostgreSQL::Test::Utils::append_to_file("$dir/slow_client.pl", <<'PERL');
use strict;
use warnings;
use IO::Socket::INET;
use IO::Select;
use Errno qw(EAGAIN EWOULDBLOCK EINTR);
use Time::HiRes qw(time sleep);

my ($host, $port, $source, $count, $interval, $max, $mode, $event_file) = @ARGV;
$SIG{PIPE} = 'IGNORE';
$| = 1;

my $first = "POST /cdevents HTTP/1.1\r\nHost: slow\r\nContent-Type: application/json\r\n";
$first = "POST /cdevents HTTP/1.1\r\nHost: slow\r\nContent-Type: application/json\r\n"
  . "Content-Length: 100000\r\n\r\n" if $mode eq 'body';
if ($mode eq 'keepalive')
{
	open my $fh, '<', $event_file or die "$event_file: $!";
	my $event = do { local $/; <$fh> };
	$first = "POST /cdevents HTTP/1.1\r\nHost: slow\r\nContent-Type: application/json\r\n"
	  . "Content-Length: " . length($event) . "\r\n\r\n$event"
	  . "POST /cdevents HTTP/1.1\r\nHost: slow\r\nContent-Type: application/json\r\n";
}

my (@conns, %by_fd);
my $sel = IO::Select->new;
my $start = time;
for my $i (1 .. $count)
{
	my $s = IO::Socket::INET->new(PeerAddr => $host, PeerPort => $port,
		LocalAddr => $source, Proto => 'tcp', Timeout => 5);
	die "connect $i: $!" unless $s;
	$s->blocking(0);
	my $c = { sock => $s, opened => time, closed => undef };
	# the first bytes at once, then one byte per interval
	syswrite($s, $first);
	push @conns, $c;
	$by_fd{ fileno($s) } = $c;
	$sel->add($s);
}
print "ready ", scalar(@conns), "\n";

sub close_conn
{
	my ($c) = @_;
	return if defined $c->{closed};
	$c->{closed} = time;
	$sel->remove($c->{sock});
	close($c->{sock});
}

my $next_byte = time + $interval;
while (time - $start < $max && grep { !defined $_->{closed} } @conns)
{
	my $wait = $next_byte - time;
	$wait = 0 if $wait < 0;
	for my $s ($sel->can_read($wait))
	{
		my $c = $by_fd{ fileno($s) };
		my $n = sysread($s, my $buf, 65536);
		next if !defined $n && ($! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR);
		close_conn($c) if !$n;	# EOF or reset: closed by the server
	}
	if (time >= $next_byte)
	{
		for my $c (grep { !defined $_->{closed} } @conns)
		{
			my $n = syswrite($c->{sock}, $mode eq 'body' ? '{' : 'X');
			close_conn($c) if !defined $n && $! != EAGAIN && $! != EWOULDBLOCK;
		}
		$next_byte += $interval;
	}
}
# the longest a connection lived, those still open included
my @closed = grep { defined $_->{closed} } @conns;
my $end = time;
my $max_life = 0;
for (@conns)
{
	my $life = ($_->{closed} // $end) - $_->{opened};
	$max_life = $life if $life > $max_life;
}
printf "opened %d closed %d open %d max_life %.2f\n",
  scalar(@conns), scalar(@closed), scalar(@conns) - scalar(@closed), $max_life;
PERL

# Start the slow client; returns its harness and output, once connected.
sub start_slow
{
	my ($source, $count, $mode) = @_;
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[ $^X, "$dir/slow_client.pl", '127.0.0.1', $http_port, $source, $count, 1, 30, $mode,
		  "$dir/keepalive.json" ],
		'>', \$out, '2>', \$err,
		IPC::Run::timeout(60));
	$h->pump until $out =~ /^ready/m || !$h->pumpable;
	return ($h, \$out, \$err);
}

# Wait for the slow client to end; its summary as a hash.
sub finish_slow
{
	my ($h, $out, $err) = @_;
	$h->finish;
	diag($$err) if $$err ne '';
	my %r = $$out =~ /(\w+) ([\d.]+)/g;
	return \%r;
}

# A POST from 127.0.0.2: (status, seconds).
sub post_from_other_peer
{
	my ($id) = @_;
	my $file = "$dir/$id.json";
	PostgreSQL::Test::Utils::append_to_file($file, event_json($id));
	my ($out, $err) = ('', '');
	my $t0 = time;
	IPC::Run::run(
		[ 'curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '10',
		  '--interface', '127.0.0.2', '-H', 'Content-Type: application/json',
		  '--data-binary', "\@$file", "http://127.0.0.1:$http_port/cdevents" ],
		'>', \$out, '2>', \$err);
	return ($out + 0, time - $t0);
}

# ---- one peer holds 1,000 slow connections ---------------------------------
my ($h, $out, $err) = start_slow('127.0.0.3', 1000, 'header');
sleep(1);
my ($status, $secs) = post_from_other_peer('slow-other-1');
is($status, 201, 'a POST from another peer is stored while one peer holds 1,000 slow connections');
cmp_ok($secs, '<', 1, "... and answered within 1 s (took ${secs}s)");
is($node->safe_psql('postgres',
		"SELECT count(*) FROM cdviz.cdevents_lake WHERE context_id = 'slow-other-1'"),
	'1', '... and its event is in the lake');
my $r = finish_slow($h, $out, $err);
is($r->{opened}, 1000, 'the slow peer opened 1,000 connections');
is($r->{open}, 0, 'the server closed every slow connection');
cmp_ok($r->{max_life}, '<=', $deadline + 1.5,
	"none lived much past cdviz.http_request_deadline ($r->{max_life}s for ${deadline}s)");

# ---- a slow body, a slow second request on a kept-alive connection ---------
PostgreSQL::Test::Utils::append_to_file("$dir/keepalive.json", event_json('slow-keepalive'));
for my $case ([ 'body', '127.0.0.4' ], [ 'keepalive', '127.0.0.5' ])
{
	my ($mode, $source) = @$case;
	my @slow = start_slow($source, 5, $mode);
	my $r = finish_slow(@slow);
	is($r->{open}, 0, "$mode: the server closed every slow connection");
	cmp_ok($r->{max_life}, '<=', $deadline + 1.5,
		"$mode: none lived much past the deadline ($r->{max_life}s)");
	cmp_ok($r->{max_life}, '>=', $deadline - 0.5,
		"$mode: none was closed long before it ($r->{max_life}s)");
}
is($node->safe_psql('postgres',
		"SELECT count(*) FROM cdviz.cdevents_lake WHERE context_id = 'slow-keepalive'"),
	'1', 'keepalive: the complete first request was stored');

# ---- several slow peers take every slot ------------------------------------
# Three peers within their own limit hold 48 slow connections, more than
# the 32 slots: the oldest waiting ones give way, and another peer's POST
# still gets a slot at once.
$node->append_conf('postgresql.conf', "cdviz.http_max_connections = 32\n");
$node->reload;
wait_http('/healthz', 200);
my @peers = map { [ start_slow("127.0.0.$_", $per_address, 'header') ] } (6, 7, 8);
($status, $secs) = post_from_other_peer('slow-other-3');
is($status, 201, 'a POST from another peer is stored while slow peers take every slot');
cmp_ok($secs, '<', 1, "... and answered within 1 s (took ${secs}s)");
my @results = map { finish_slow(@$_) } @peers;
for my $r (@results)
{
	is($r->{open}, 0, 'every connection of the slow peers was closed');
	cmp_ok($r->{max_life}, '<=', $deadline + 1.5, "... by the deadline ($r->{max_life}s)");
}
cmp_ok($results[0]{max_life}, '<', $deadline - 1,
	"the first peer's connections, the oldest, gave way to the later ones ($results[0]{max_life}s)");

# the well-behaved peer is still served, and nothing was stored by the slow ones
($status) = post_from_other_peer('slow-other-4');
is($status, 201, 'a POST from another peer is stored after the slow peers left');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM cdviz.cdevents_lake WHERE context_id LIKE 'slow-other-%'"),
	'3', 'every event of the well-behaved peer is stored');

$node->stop;
done_testing();
