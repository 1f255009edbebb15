# The README's quick tour runs as written: each of its sh and sql blocks,
# against a cluster of this test (its own ports put in place of the demo
# cluster's 5455 and 8080), and each does what the README says it does.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use HttpTest;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $readme = slurp_file("$FindBin::Bin/../../README.md");
my ($tour) = $readme =~ /^## A quick tour\n(.*?)^## /ms;
ok(defined $tour, 'the README has a quick tour');
my @blocks;
push @blocks, [ $1, $2 ] while $tour =~ /^```(sh|sql)\n(.*?)^```/msg;
cmp_ok(scalar(@blocks), '>=', 3, 'with its sh and sql blocks');

my $node = start_http_node('readme_tour');
$node->safe_psql('postgres', 'CREATE EXTENSION cdviz');
my $dir = PostgreSQL::Test::Utils::tempdir();

my @outputs;
for my $b (@blocks)
{
	my ($kind, $code) = @$b;
	my ($out, $err) = ('', '');
	my $ok;
	if ($kind eq 'sh')
	{
		$code =~ s{localhost:8080}{127.0.0.1:$http_port}g;
		$code =~ s{psql -h 127\.0\.0\.1 -p 5455 -U postgres -d cdviz}{psql -X -d '@{[ $node->connstr('postgres') ]}'}g;
		$ok = IPC::Run::run([ 'bash', '-ec', "cd '$dir'\n$code" ], '>', \$out, '2>', \$err);
	}
	else
	{
		$ok = IPC::Run::run([ 'psql', '-X', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'), '-c', $code ],
			'>', \$out, '2>', \$err);
	}
	ok($ok, "$kind block " . scalar(@outputs) . ' runs') or diag("$code\n$out\n$err");
	push @outputs, $out;
}
like($outputs[0], qr/"status":"stored"/, 'the event is stored');
like($outputs[1], qr/prod\s+\|\s+tour-service\s+\|\s+2026-12-01 10:00:00/, 'and listed by cdviz.environment_inventory');
like($outputs[2], qr{/webhooks/github}, 'the GitHub route is made');

$node->stop;
done_testing();
