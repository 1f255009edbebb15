# KafkaTest.pm — the Kafka peer of the tests: librdkafka's mock cluster
# (test/kafka/mock_cluster.c, built here when missing) driven over a pipe,
# and kcat, an independent client, to produce and consume.
#
#   my $k = KafkaTest->start($dir, 3);        # 3 brokers
#   $k->topic('out', 4);                      # 4 partitions
#   $k->broker_down(1); $k->broker_up(1);     # -1: every broker
#   $k->push_errors(0, 6, 6);                 # next 2 Produce requests: NOT_LEADER
#   $k->produce('in', { key => 'k', value => '{...}', headers => [ce_id => 'x'] }, ...);
#   my @m = $k->consume('out', 300, 30);      # hashes: key, value, headers, partition, offset
#   $k->stop;
package KafkaTest;

use strict;
use warnings;
use File::Basename qw(dirname);
use IPC::Run;
use JSON::PP;
use Test::More;
use Time::HiRes qw(time usleep);

my $root = dirname(__FILE__) . '/../..';

# Kafka protocol API keys and error codes the tests use.
our $PRODUCE = 0;
our $ERR_NOT_LEADER = 6;				  # NOT_LEADER_OR_FOLLOWER: retriable
our $ERR_REQUEST_TIMED_OUT = 7;
our $ERR_NOT_ENOUGH_REPLICAS = 19;

# Whether the tests can run here: kcat and librdkafka's mock header.
sub available
{
	return 'kcat is not installed' unless `which kcat 2>/dev/null` =~ /\S/;
	return 'librdkafka-dev (rdkafka_mock.h) is not installed'
	  unless -f '/usr/include/librdkafka/rdkafka_mock.h' || -x "$root/test/kafka/mock_cluster";
	return undef;
}

sub binary
{
	my $bin = "$root/test/kafka/mock_cluster";
	if (!-x $bin || -M $bin > -M "$bin.c")
	{
		# PATH holds the pg_config of the installation under test (PGXS)
		system('make', '-s', '-C', $root, 'test/kafka/mock_cluster') == 0
		  or die "cannot build $bin";
	}
	return $bin;
}

sub start
{
	my ($class, $dir, $brokers) = @_;
	my $self = bless { in => '', out => '', dir => $dir }, $class;
	$self->{h} = IPC::Run::start([ binary(), $brokers // 3 ],
		'<', \$self->{in}, '>', \$self->{out}, '2>', "$dir/mock_cluster.log");
	my $line = $self->_line(10) // die 'the mock cluster printed no bootstrap line';
	$line =~ /^bootstrap (\S+)$/ or die "mock cluster: $line";
	$self->{bootstrap} = $1;
	return $self;
}

sub bootstrap { return $_[0]->{bootstrap}; }

sub _line
{
	my ($self, $seconds) = @_;
	my $deadline = time() + $seconds;
	while ($self->{out} !~ /\n/)
	{
		die 'the mock cluster timed out' if time() > $deadline;
		$self->{h}->pump_nb;
		usleep(10_000) if $self->{out} !~ /\n/;
	}
	$self->{out} =~ s/^([^\n]*)\n//;
	return $1;
}

# One command; dies unless it answers ok.
sub command
{
	my ($self, $cmd) = @_;
	$self->{in} .= "$cmd\n";
	$self->{h}->pump_nb while length $self->{in};
	my $a = $self->_line(10);
	die "mock cluster: $cmd: $a" unless $a eq 'ok';
	return 1;
}

sub topic { my ($s, $t, $p, $r) = @_; return $s->command("topic $t $p" . ($r ? " $r" : '')); }
sub broker_down { return $_[0]->command("down $_[1]"); }
sub broker_up { return $_[0]->command("up $_[1]"); }
sub push_errors { my ($s, $api, @codes) = @_; return $s->command("errors $api @codes"); }
sub clear_errors { return $_[0]->command("clear $_[1]"); }
sub leader { my ($s, $t, $p, $b) = @_; return $s->command("leader $t $p $b"); }

sub stop
{
	my ($self) = @_;
	return unless $self->{h};
	$self->{in} .= "quit\n";
	eval { $self->{h}->finish; 1 } or $self->{h}->kill_kill;
	delete $self->{h};
}

sub DESTROY { $_[0]->{h}->kill_kill if $_[0]->{h}; }

# Produce messages with kcat: hashes of key (undef: none), value and
# headers (a list of name => value pairs).  One kcat per run of messages
# that share their headers (kcat's -H applies to all it sends); values
# must not hold a newline.
sub produce
{
	my ($self, $topic, @msgs) = @_;
	while (@msgs)
	{
		my $h = $msgs[0]{headers} // [];
		my $hk = join("\0", @$h);
		my $keyed = defined $msgs[0]{key};
		my @run;
		push @run, shift @msgs
		  while @msgs && join("\0", @{ $msgs[0]{headers} // [] }) eq $hk
		  && (defined $msgs[0]{key}) == $keyed;
		my $input = join('', map { ($keyed ? "$_->{key}\t" : '') . "$_->{value}\n" } @run);
		my @cmd = ('kcat', '-P', '-b', $self->{bootstrap}, '-t', $topic, '-z', 'none',
			($keyed ? ('-K', "\t") : ()),
			map { ("-H", "$h->[2*$_]=$h->[2*$_+1]") } 0 .. @$h / 2 - 1);
		my $err = '';
		IPC::Run::run(\@cmd, '<', \$input, '>', \my $out, '2>', \$err)
		  or die "kcat -P failed: $err";
	}
}

# Consume a topic from the beginning with kcat -J until $want messages
# (or the end of every partition when $want is undef) or $seconds passed.
# Returns hashes: topic, partition, offset, key, value, headers (a hash of
# the last value of each name) and header_list (the pairs as sent).
sub consume
{
	my ($self, $topic, $want, $seconds) = @_;
	$seconds //= 30;
	my @msgs;
	my $deadline = time() + $seconds;
	while (1)
	{
		my ($out, $err) = ('', '');
		IPC::Run::run([ 'kcat', '-C', '-b', $self->{bootstrap}, '-t', $topic, '-o', 'beginning',
				'-e', '-q', '-J', '-m', '10' ], '>', \$out, '2>', \$err);
		@msgs = ();
		for my $l (split /\n/, $out)
		{
			next unless $l =~ /^\{/;
			my $j = decode_json($l);
			my @hl = @{ $j->{headers} // [] };
			my %h;
			for (my $i = 0; $i < @hl; $i += 2) { $h{ $hl[$i] } = $hl[ $i + 1 ]; }
			push @msgs, { topic => $j->{topic}, partition => $j->{partition}, offset => $j->{offset},
				key => $j->{key}, value => $j->{payload}, headers => \%h, header_list => \@hl };
		}
		last if !defined $want || @msgs >= $want || time() > $deadline;
		usleep(300_000);
	}
	return @msgs;
}

1;
