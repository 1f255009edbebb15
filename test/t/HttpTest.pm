# HttpTest.pm — helpers shared by the cdviz http TAP tests: a cluster with
# the http worker on a free port, curl wrappers, CDEvent builders.
package HttpTest;

use strict;
use warnings;
use Exporter 'import';
use File::Temp qw(tempdir);
use IPC::Run;
use PostgreSQL::Test::Cluster;
use CdvizNode;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

our @EXPORT = qw(start_http_node http_request wait_http event_json $http_port);

our $http_port;

# A node with cdviz preloaded, the receiver on a free port, extension not
# created.  Extra postgresql.conf lines may be passed.
sub start_http_node
{
	my ($name, $extra) = @_;
	$http_port = PostgreSQL::Test::Cluster::get_free_port();
	my $node = cdviz_node($name, qq(
cdviz.http_listen_addresses = '127.0.0.1'
cdviz.http_port = $http_port
cdviz.http_timeout = 5
) . ($extra // ''));
	$node->start;
	wait_http('/healthz', 200);
	return $node;
}

# Run curl; returns (status, body, headers).  %o: method, path, body (text),
# body_file, headers (array of "Name: value"), port.
sub http_request
{
	my (%o) = @_;
	my $dir = tempdir(CLEANUP => 1);
	my $port = $o{port} // $http_port;
	my @cmd = ('curl', '-s', '-o', "$dir/body", '-D', "$dir/headers",
		'-w', '%{http_code}', '--max-time', ($o{timeout} // 30));
	push @cmd, '-X', $o{method} if $o{method};
	push @cmd, '-H', $_ for @{ $o{headers} // [] };
	if (defined $o{body})
	{
		open my $fh, '>:raw', "$dir/in" or die;
		print $fh $o{body};
		close $fh;
		push @cmd, '--data-binary', "\@$dir/in";
	}
	push @cmd, '--data-binary', "\@$o{body_file}" if $o{body_file};
	push @cmd, "http://127.0.0.1:$port" . ($o{path} // '/cdevents');
	my ($out, $err) = ('', '');
	IPC::Run::run(\@cmd, '>', \$out, '2>', \$err);
	my $body = -f "$dir/body" ? slurp_file("$dir/body") : '';
	my $headers = -f "$dir/headers" ? slurp_file("$dir/headers") : '';
	return ($out + 0, $body, $headers);
}

# Poll path until it answers status (the worker starts, restarts, reloads).
sub wait_http
{
	my ($path, $status, $port) = @_;
	for (my $i = 0; $i < 600; $i++)
	{
		my ($code) = http_request(method => 'GET', path => $path, port => $port, timeout => 2);
		return 1 if $code == $status;
		usleep(100_000);
	}
	die "timed out waiting for $path to answer $status";
}

# A valid CDEvent (spec 0.4.1 service.deployed) with the given context id.
sub event_json
{
	my ($id, %o) = @_;
	my $source = $o{source} // '/cdviz/test';
	my $ts = $o{timestamp} // '2024-05-01T10:00:00Z';
	return qq({"context":{"version":"0.4.1","id":"$id","source":"$source",)
	  . qq("type":"dev.cdevents.service.deployed.0.2.0","timestamp":"$ts"},)
	  . qq("subject":{"id":"svc/$id","source":"$source","type":"service",)
	  . qq("content":{"environment":{"id":"prod"},"artifactId":"pkg:oci/app\@sha256%3A0b31b1c02ff458ad9b7b81cbdf8f028bd54699fa151f221d1e8de6817db93427"}}});
}

1;
