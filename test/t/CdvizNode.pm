# CdvizNode.pm — the cluster every cdviz TAP test starts from.
package CdvizNode;

use strict;
use warnings;
use Exporter 'import';
use PostgreSQL::Test::Cluster;

our @EXPORT = qw(cdviz_node);

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

1;
