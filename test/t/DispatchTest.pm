# DispatchTest.pm — helpers of the dispatcher TAP tests: a node with the
# dispatcher, the Perl HTTP receiver (sink_receiver.pl), CDEvent batches,
# waiting for sink_status.
package DispatchTest;

use strict;
use warnings;
use Exporter 'import';
use File::Basename qw(dirname);
use IO::Socket::INET;
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use CdvizNode;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

our @EXPORT = qw(dispatch_node start_receiver receiver_control receiver_log
  receiver_ids ingest_events event_doc wait_for_sink wait_until);

# A node with cdviz preloaded, a quick dispatcher and the extension created.
sub dispatch_node
{
	my ($name, $extra) = @_;
	my $node = cdviz_node($name, qq(
cdviz.dispatch_interval = 50
cdviz.dispatch_chunk = 50
restart_after_crash = on
) . ($extra // ''));
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION cdviz');
	return $node;
}

# Start sink_receiver.pl on a free port; returns (harness, port, log, control).
sub start_receiver
{
	my ($dir) = @_;
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	my $log = "$dir/recv_$port.log";
	my $control = "$dir/recv_$port.ctl";
	my $script = dirname(__FILE__) . '/sink_receiver.pl';
	open my $fh, '>', $log or die;
	close $fh;
	my $h = IPC::Run::start([ 'perl', $script, $port, $log, $control ],
		'>', "$dir/recv_$port.out", '2>&1');
	# wait until it listens
	for (1 .. 100)
	{
		last if IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port");
		usleep(50_000);
	}
	return { h => $h, port => $port, log => $log, control => $control };
}

# Set the receiver's behaviour (see sink_receiver.pl).
sub receiver_control
{
	my ($r, %c) = @_;
	open my $fh, '>', "$r->{control}.tmp" or die;
	print $fh "$_=$c{$_}\n" for sort keys %c;
	close $fh;
	rename "$r->{control}.tmp", $r->{control} or die;
}

# Lines of the receiver's log: [content-type, ce-id, signature, body].
sub receiver_log
{
	my ($r) = @_;
	open my $fh, '<', $r->{log} or die;
	my @l = map { chomp; [ split /\t/, $_, 4 ] } <$fh>;
	return @l;
}

# Context ids in arrival order, whatever the mode.
sub receiver_ids
{
	my ($r) = @_;
	my @ids;
	for my $l (receiver_log($r))
	{
		my $doc = decode_json($l->[3]);
		if (ref $doc eq 'ARRAY')
		{
			push @ids, $_->{data}{context}{id} for @$doc;
		}
		elsif ($doc->{specversion})
		{
			push @ids, $doc->{data}{context}{id};
		}
		else
		{
			push @ids, $doc->{context}{id};
		}
	}
	return @ids;
}

# A valid CDEvent as JSON text: a custom event (dev.cdeventsx.probe-item),
# which no current-state table folds, so that concurrent writers never
# wait for each other's row locks.
sub event_doc
{
	my ($id, $src, $ts) = @_;
	$src //= '/dispatch/test';
	$ts //= '2024-05-01T10:00:00Z';
	return qq({"context":{"version":"0.4.1","id":"$id","source":"$src",)
	  . qq("type":"dev.cdeventsx.probe-item.created.0.1.0","timestamp":"$ts"},)
	  . qq("subject":{"id":"item/$id","source":"$src","type":"probe-item","content":{"n":1}}});
}

# Ingest events with ids prefix1..prefixN in batches of $b (one transaction each).
sub ingest_events
{
	my ($node, $prefix, $from, $to, $b, $ts) = @_;
	$b //= 100;
	for (my $i = $from; $i <= $to; $i += $b)
	{
		my $hi = $i + $b - 1 > $to ? $to : $i + $b - 1;
		my $batch = '[' . join(',', map { event_doc("$prefix$_", undef, $ts) } $i .. $hi) . ']';
		$node->safe_psql('postgres', "SELECT stored FROM cdviz.ingest_batch('$batch')");
	}
}

sub wait_until
{
	my ($what, $seconds, $cond) = @_;
	my $deadline = time() + $seconds;
	while (time() < $deadline)
	{
		return 1 if $cond->();
		usleep(100_000);
	}
	diag("timed out waiting for $what");
	return 0;
}

# Wait until the sink has nothing pending and has delivered at least $min.
sub wait_for_sink
{
	my ($node, $sink, $min, $seconds) = @_;
	return wait_until("sink $sink", $seconds // 120, sub {
		my $r = $node->safe_psql('postgres',
			"SELECT pending = 0 AND delivered + rejected >= $min FROM cdviz.sink_status WHERE name = '$sink'");
		return $r eq 't';
	});
}

1;
