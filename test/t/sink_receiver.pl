#!/usr/bin/perl
# sink_receiver.pl — an HTTP/1.1 receiver for the dispatcher's TAP tests.
#
#   sink_receiver.pl PORT LOGFILE CONTROLFILE
#
# Keeps connections alive, reads requests with a Content-Length body and
# answers as CONTROLFILE says, re-read before every answer (key=value
# lines; absent file: answer 204):
#   fail_rate=0.3        answer 500 to that share of requests
#   hang_rate=0.1        never answer that share (the client times out)
#   reject=TEXT          answer 400 to any request whose body contains TEXT
#   down=1               close every connection without an answer
#   delay_ms=N           wait before answering
#   require_N=NAME: VALUE  answer 401 to a request without that header
#                        (N: any word, one key per header)
#   require_target=PATH  answer 401 to a request for another path?query
#   echo_fail=1          answer 500 with the request's head as the body
# Every request answered 2xx is appended to LOGFILE as one line:
#   <content-type>\t<ce-id header or ->\t<x-signature-256 or ->\t<body>
use strict;
use warnings;
use IO::Select;
use IO::Socket::INET;
use Time::HiRes qw(usleep);

my ($port, $log, $control) = @ARGV;
my $listener = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port,
	Listen => 128, ReuseAddr => 1) or die "listen on $port: $!";
my $sel = IO::Select->new($listener);
my %buf;
my %hung;
$| = 1;
open my $lf, '>>', $log or die "$log: $!";
$lf->autoflush(1);

sub control
{
	my %c;
	if (open my $fh, '<', $control)
	{
		while (<$fh>)
		{
			chomp;
			$c{$1} = $2 if /^(\w+)=(.*)$/;
		}
	}
	return \%c;
}

sub answer
{
	my ($s, $status, $text) = @_;
	my $body = "$text\n";
	print $s "HTTP/1.1 $status X\r\nContent-Length: " . length($body)
	  . "\r\nContent-Type: text/plain\r\n\r\n$body";
}

while (1)
{
	for my $s ($sel->can_read(1))
	{
		if ($s == $listener)
		{
			my $c = $listener->accept or next;
			$sel->add($c);
			$buf{$c} = '';
			next;
		}
		my $n = sysread($s, my $chunk, 65536);
		if (!$n)
		{
			$sel->remove($s);
			delete $buf{$s};
			delete $hung{$s};
			close $s;
			next;
		}
		next if $hung{$s};
		$buf{$s} .= $chunk;
		while ($buf{$s} =~ /\r\n\r\n/)
		{
			my $end = index($buf{$s}, "\r\n\r\n");
			my $head = substr($buf{$s}, 0, $end);
			my ($len) = $head =~ /^content-length:\s*(\d+)/mi;
			$len //= 0;
			last if length($buf{$s}) < $end + 4 + $len;
			my $body = substr($buf{$s}, $end + 4, $len);
			$buf{$s} = substr($buf{$s}, $end + 4 + $len);
			my %h;
			$h{lc $1} = $2 while $head =~ /^([\w-]+):\s*(.*?)\r?$/mg;
			my ($target) = $head =~ /^\S+ (\S+)/;
			my $c = control();
			if ($c->{down})
			{
				$sel->remove($s);
				close $s;
				last;
			}
			usleep($c->{delay_ms} * 1000) if $c->{delay_ms};
			if ($c->{hang_rate} && rand() < $c->{hang_rate})
			{
				$hung{$s} = 1;
				last;
			}
			if ($c->{echo_fail})
			{
				answer($s, 500, $head);
				next;
			}
			my @missing = grep {
				my ($n, $v) = $c->{$_} =~ /^([^:]+):\s*(.*)$/;
				!defined $h{ lc $n } || $h{ lc $n } ne $v
			} grep { /^require_/ && $_ ne 'require_target' } sort keys %$c;
			push @missing, 'target' if defined $c->{require_target} && $target ne $c->{require_target};
			if (@missing)
			{
				answer($s, 401, "missing or wrong: @missing");
				next;
			}
			if ($c->{fail_rate} && rand() < $c->{fail_rate})
			{
				answer($s, 500, 'random failure');
				next;
			}
			if (defined $c->{reject} && $c->{reject} ne '' && index($body, $c->{reject}) >= 0)
			{
				answer($s, 400, "refused: contains $c->{reject}");
				next;
			}
			print $lf join("\t", $h{'content-type'} // '-', $h{'ce-id'} // '-',
				$h{'x-signature-256'} // '-', $body) . "\n";
			answer($s, 204, '');
		}
	}
}
