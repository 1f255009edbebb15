#!/usr/bin/perl
# bench/http_connections.pl — what open connections cost the cdviz http
# worker: its memory and CPU while COUNT connections stay open, each a
# slow client sending one header byte every INTERVAL seconds, and the
# time another client's POST takes meanwhile.
#
#   bench/http_connections.pl HOST PORT COUNT [INTERVAL] [HOLD]
#
# HOST and PORT are the receiver's (a loopback address: the connections
# come from 127.0.0.3, 127.0.0.4, ... 1,000 per address, the POSTs from
# 127.0.0.2).  The worker's pid comes from WORKER_PID, or from the server
# named by the libpq environment (pg_stat_activity).  Set the server's
# cdviz.http_max_connections, cdviz.http_max_connections_per_address (0)
# and cdviz.http_request_deadline, cdviz.http_timeout (long) so that it
# keeps them all; this script opens at most 50,000 connections and runs
# for HOLD seconds (30) once they are open.
#
# Prints one line: connections open, worker RSS before and while they
# are open (kB), the worker's CPU while they are held (% of one core),
# and the POST latencies (median, max).
use strict;
use warnings;
use IO::Socket::INET;
use Errno qw(EAGAIN EWOULDBLOCK);
use Time::HiRes qw(time sleep);

my ($host, $port, $count, $interval, $hold) = @ARGV;
die "usage: $0 HOST PORT COUNT [INTERVAL] [HOLD]\n" unless $count;
die "at most 50,000 connections\n" if $count > 50000;
$interval //= 5;
$hold //= 30;
$SIG{PIPE} = 'IGNORE';

my $pid = $ENV{WORKER_PID}
  // `psql -X -At -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'cdviz http'"`;
chomp $pid;
die "no cdviz http worker found\n" unless $pid =~ /^\d+$/;

sub rss_kb
{
	open my $fh, '<', "/proc/$pid/status" or die "worker $pid: $!";
	while (<$fh>) { return $1 if /^VmRSS:\s+(\d+)/ }
	return 0;
}

sub cpu_ticks
{
	open my $fh, '<', "/proc/$pid/stat" or die "worker $pid: $!";
	my @f = split ' ', (split /\)/, scalar <$fh>)[1];
	return $f[11] + $f[12];		# utime + stime
}

sub post_seconds
{
	my $body = '{"context":{"version":"0.4.1","id":"bench-conn-' . int(rand(1e9)) . '",'
	  . '"source":"/bench/conn","type":"dev.cdevents.service.deployed.0.2.0",'
	  . '"timestamp":"2024-05-01T10:00:00Z"},"subject":{"id":"svc/bench-conn",'
	  . '"source":"/bench/conn","type":"service","content":{"environment":{"id":"bench"},'
	  . '"artifactId":"pkg:oci/app@sha256%3A0b31b1c02ff458ad9b7b81cbdf8f028bd54699fa151f221d1e8de6817db93427"}}}';
	my $t0 = time;
	my $code = `curl -s -o /dev/null -w '%{http_code}' --max-time 10 --interface 127.0.0.2 -H 'Content-Type: application/json' --data-binary '$body' http://$host:$port/cdevents`;
	return $code eq '201' ? time - $t0 : 99;
}

my $rss0 = rss_kb();
my @socks;
for my $i (0 .. $count - 1)
{
	my $source = '127.0.0.' . (3 + int($i / 1000));
	my $s = IO::Socket::INET->new(PeerAddr => $host, PeerPort => $port,
		LocalAddr => $source, Proto => 'tcp', Timeout => 10)
	  or die "connection $i from $source: $!\n";
	$s->blocking(0);
	syswrite($s, "POST /cdevents HTTP/1.1\r\nHost: bench\r\nX-Slow: ");
	push @socks, $s;
}
sleep(2);	# let the worker accept the last ones
my $rss1 = rss_kb();
my $cpu0 = cpu_ticks();
my $t0 = time;
my @lat;
my $next_post = $t0 + 1;
while (time - $t0 < $hold)
{
	for my $s (@socks)
	{
		syswrite($s, 'a');
	}
	my $until = time + $interval;
	while (time < $until && time - $t0 < $hold)
	{
		if (time >= $next_post)
		{
			push @lat, post_seconds();
			$next_post += $hold / 6;
		}
		sleep(0.1);
	}
}
my $secs = time - $t0;
my $cpu = (cpu_ticks() - $cpu0) / 100 / $secs * 100;
my $rss2 = rss_kb();

# how many are still open: a closed one reads EOF (or a reset)
my $open = 0;
for my $s (@socks)
{
	my $n = sysread($s, my $buf, 1);
	$open++ if !defined $n && ($! == EAGAIN || $! == EWOULDBLOCK);
}
@lat = sort { $a <=> $b } @lat;
printf "connections %d open %d rss_before_kB %d rss_open_kB %d rss_end_kB %d cpu_pct %.2f post_median_s %.3f post_max_s %.3f\n",
  $count, $open, $rss0, $rss1, $rss2, $cpu, $lat[ int(@lat / 2) ], $lat[-1];
close $_ for @socks;
