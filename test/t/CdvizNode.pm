# CdvizNode.pm — the cluster every cdviz TAP test starts from.
package CdvizNode;

use strict;
use warnings;
use Exporter 'import';
use PostgreSQL::Test::Cluster;
use Test::More ();

our @EXPORT = qw(cdviz_node lake_count wait_lake_count);

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
