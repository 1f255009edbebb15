# CdvizNode.pm — the cluster every cdviz TAP test starts from.
package CdvizNode;

use strict;
use warnings;
use Exporter 'import';
use File::Path qw(make_path);
use PostgreSQL::Test::Cluster;
use Test::More ();

our @EXPORT = qw(cdviz_node fs_inbox drop_file lake_count wait_lake_count);

# A new, initialised node with cdviz preloaded and its workers serving
# database postgres, the http receiver off; $extra (postgresql.conf lines)
# comes after, so it may turn the receiver on.  Not started: some tests
# prepare their sources first.  %init goes to PostgreSQL::Test::Cluster's
# init (allows_streaming => 1 for a primary with standbys).
sub cdviz_node
{
	my ($name, $extra, %init) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(%init);
	$node->append_conf('postgresql.conf', qq(
shared_preload_libraries = 'cdviz'
cdviz.database = 'postgres'
cdviz.http_listen_addresses = ''
) . ($extra // ''));
	return $node;
}

# A new empty folder $dir/in for the folder poller, and the
# postgresql.conf lines that make it poll that folder every second:
# returns ($in, $conf).
sub fs_inbox
{
	my ($dir) = @_;
	my $in = "$dir/in";
	make_path($in);
	return ($in, qq(
cdviz.fs_path = '$in'
cdviz.fs_poll_interval = 1
));
}

# Write $text as $dir/$name, aside first, then renamed: a folder source never
# sees half a file.
sub drop_file
{
	my ($dir, $name, $text) = @_;
	open my $fh, '>:raw', "$dir/.$name.tmp" or die "$dir/.$name.tmp: $!";
	print $fh $text;
	close $fh;
	rename("$dir/.$name.tmp", "$dir/$name") or die "rename: $!";
	return;
}

# The number of events of the lake from context source $src.
sub lake_count
{
	my ($node, $src) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM cdviz.cdevents_lake WHERE context_source = '$src'");
}

# Passes (test $what) once the lake holds $n events from source $src; tells
# how many it holds when it times out.
sub wait_lake_count
{
	my ($node, $src, $n, $what) = @_;
	return Test::More::ok($node->poll_query_until('postgres',
		"SELECT count(*) = $n FROM cdviz.cdevents_lake WHERE context_source = '$src'"),
		$what) || Test::More::diag('have ' . lake_count($node, $src));
}

1;
