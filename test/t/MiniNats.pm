# MiniNats.pm — just enough of the NATS client protocol for the dispatcher
# tests (no Perl NATS client in Debian): connect, publish with headers,
# subscribe, read messages, request/reply for the JetStream API.
package MiniNats;

use strict;
use warnings;
use IO::Select;
use IO::Socket::INET;
use IPC::Run;
use JSON::PP;
use Time::HiRes qw(time usleep);

# The nats-server binary (Debian installs it in /usr/sbin, which an
# unprivileged user's PATH lacks); undef when it is not installed.
sub server_bin
{
	return '/usr/sbin/nats-server' if -x '/usr/sbin/nats-server';
	my $which = `which nats-server 2>/dev/null`;
	chomp $which;
	return $which ne '' ? $which : undef;
}

# Start nats-server with JetStream (its store in $dir/js, its log in
# $dir/nats.log) on $port; returns its harness and a client connected to it.
sub start_server
{
	my ($dir, $port) = @_;
	my $h = IPC::Run::start([ server_bin(), '-js', '-sd', "$dir/js", '-a', '127.0.0.1', '-p', $port ],
		'>', "$dir/nats.log", '2>&1');
	for (1 .. 100)
	{
		my $c = eval { MiniNats->new($port) };
		return ($h, $c) if $c;
		usleep(100_000);
	}
	die 'nats-server did not start';
}

sub new
{
	my ($class, $port) = @_;
	my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Timeout => 5)
	  or die "cannot connect to NATS on $port: $!";
	my $self = bless { s => $s, buf => '', sid => 0 }, $class;
	$self->_line(5) =~ /^INFO/ or die 'no INFO from NATS';
	print $s qq(CONNECT {"verbose":false,"pedantic":false,"headers":true,"no_responders":true}\r\nPING\r\n);
	while (1)
	{
		my $l = $self->_line(5) // die 'no PONG';
		last if $l =~ /^PONG/;
		die "NATS: $l" if $l =~ /^-ERR/;
	}
	return $self;
}

sub _fill
{
	my ($self, $deadline) = @_;
	my $sel = IO::Select->new($self->{s});
	my $left = $deadline - time();
	return 0 if $left <= 0 || !$sel->can_read($left);
	my $n = sysread($self->{s}, my $chunk, 65536);
	die 'NATS connection closed' unless $n;
	$self->{buf} .= $chunk;
	return 1;
}

sub _line
{
	my ($self, $timeout) = @_;
	my $deadline = time() + $timeout;
	while ((my $i = index($self->{buf}, "\r\n")) < 0)
	{
		return undef unless $self->_fill($deadline);
	}
	my $i = index($self->{buf}, "\r\n");
	my $l = substr($self->{buf}, 0, $i);
	$self->{buf} = substr($self->{buf}, $i + 2);
	return $l;
}

sub _bytes
{
	my ($self, $n, $deadline) = @_;
	while (length($self->{buf}) < $n + 2)
	{
		$self->_fill($deadline) or die 'NATS: truncated message';
	}
	my $b = substr($self->{buf}, 0, $n);
	$self->{buf} = substr($self->{buf}, $n + 2);
	return $b;
}

sub publish
{
	my ($self, $subject, $data, $headers, $reply) = @_;
	my $r = defined $reply ? " $reply" : '';
	if ($headers && %$headers)
	{
		my $h = "NATS/1.0\r\n" . join('', map { "$_: $headers->{$_}\r\n" } sort keys %$headers) . "\r\n";
		print { $self->{s} } "HPUB $subject$r " . length($h) . ' ' . (length($h) + length($data))
		  . "\r\n$h$data\r\n";
	}
	else
	{
		print { $self->{s} } "PUB $subject$r " . length($data) . "\r\n$data\r\n";
	}
}

sub subscribe
{
	my ($self, $subject) = @_;
	my $sid = ++$self->{sid};
	print { $self->{s} } "SUB $subject $sid\r\n";
	return $sid;
}

# Next message: { subject, headers => {...}, data }, or undef after timeout.
sub next_msg
{
	my ($self, $timeout) = @_;
	my $deadline = time() + $timeout;
	while (1)
	{
		my $l = $self->_line($deadline - time());
		return undef unless defined $l;
		if ($l =~ /^PING/)
		{
			print { $self->{s} } "PONG\r\n";
			next;
		}
		if ($l =~ /^MSG (\S+) (\S+) (?:(\S+) )?(\d+)$/)
		{
			return { subject => $1, headers => {}, data => $self->_bytes($4, $deadline) };
		}
		if ($l =~ /^HMSG (\S+) (\S+) (?:(\S+) )?(\d+) (\d+)$/)
		{
			my ($subj, $hlen, $tlen) = ($1, $4, $5);
			my $all = $self->_bytes($tlen, $deadline);
			my $head = substr($all, 0, $hlen);
			my %h;
			$h{$1} = $2 while $head =~ /^([^:\r\n]+):\s*(.*?)\r$/mg;
			return { subject => $subj, headers => \%h, data => substr($all, $hlen) };
		}
		die "NATS: $l" if $l =~ /^-ERR/;
	}
}

# Request/reply; returns the decoded JSON answer.
sub request
{
	my ($self, $subject, $data) = @_;
	my $inbox = '_INBOX.t' . int(rand(1e9));
	$self->subscribe($inbox);
	$self->publish($subject, $data // '', undef, $inbox);
	while (my $m = $self->next_msg(5))
	{
		return decode_json($m->{data}) if $m->{subject} eq $inbox;
	}
	die "no answer to $subject";
}

1;
