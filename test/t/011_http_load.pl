# The cdviz http worker under load: 1,000 concurrent POSTs each stored
# exactly once and sharing transactions (group commit), then SIGKILL of
# the worker during a load: every event acknowledged before the kill is
# stored, and the clients' retries of the others create no duplicates.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep);
use HttpTest;

my $node = start_http_node('load', "cdviz.http_max_connections = 1000\nrestart_after_crash = on\n");
$node->safe_psql('postgres', 'CREATE EXTENSION cdviz');
wait_http('/readyz', 200);

my $dir = PostgreSQL::Test::Utils::tempdir();

# one file per event; a client that posts one until it is acknowledged
sub make_events
{
	my ($prefix, $n) = @_;
	mkdir "$dir/$prefix";
	open my $list, '>', "$dir/$prefix.list" or die;
	for my $i (1 .. $n)
	{
		my $f = "$dir/$prefix/$prefix-$i.json";
		PostgreSQL::Test::Utils::append_to_file($f, event_json("$prefix-$i"));
		print $list "$f\n";
	}
	close $list;
}

PostgreSQL::Test::Utils::append_to_file("$dir/once.sh", <<"SH");
#!/bin/sh
# post one event once; print the status and the file
code=\$(curl -s -o /dev/null -w '%{http_code}' --max-time 30 -H 'Content-Type: application/json' --data-binary "\@\$1" http://127.0.0.1:$http_port/cdevents)
echo "\$code \$1"
SH
PostgreSQL::Test::Utils::append_to_file("$dir/until_acked.sh", <<"SH");
#!/bin/sh
# post one event until it is acknowledged (201), as a careful client does;
# print its context id once acknowledged
id=\$(basename "\$1" .json)
while :; do
	code=\$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -H 'Content-Type: application/json' --data-binary "\@\$1" http://127.0.0.1:$http_port/cdevents)
	if [ "\$code" = 201 ]; then echo "\$id"; exit 0; fi
	sleep 0.2
done
SH
chmod 0755, "$dir/once.sh", "$dir/until_acked.sh";

# ---- 1,000 concurrent POSTs, 50 at a time ------------------------------------
make_events('conc', 1000);
my ($out, $err) = ('', '');
IPC::Run::run([ 'xargs', '-P', '50', '-n', '1', "$dir/once.sh" ],
	'<', "$dir/conc.list", '>', \$out, '2>', \$err);
my @acked = grep { /^201 / } split /\n/, $out;
is(scalar @acked, 1000, '1,000 concurrent POSTs all acknowledged with 201');
is($node->safe_psql('postgres',
		"SELECT count(*) || ' ' || count(DISTINCT context_id) FROM cdviz.cdevents_lake WHERE context_id LIKE 'conc-%'"),
	'1000 1000', 'every acknowledged event stored exactly once');
my ($code, $metrics) = http_request(method => 'GET', path => '/metrics');
my ($one) = $metrics =~ /^cdviz_http_batch_requests_bucket\{le="1"\} (\d+)/m;
my ($all) = $metrics =~ /^cdviz_http_batch_requests_count (\d+)/m;
cmp_ok($one, '<', $all, "group commit: some transactions served several requests ($one of $all served one)");

# ---- SIGKILL of the worker during a load ---------------------------------------
make_events('kill', 3000);
my $acked_file = "$dir/kill.acked";
my $h = IPC::Run::start([ 'xargs', '-P', '20', '-n', '1', "$dir/until_acked.sh" ],
	'<', "$dir/kill.list", '>', $acked_file, '2>', \$err);
my $count = 0;
for (my $i = 0; $i < 300 && $count < 300; $i++)
{
	sleep 0.05;
	$count = () = slurp_file($acked_file) =~ /\n/g;
}
my $pid = $node->safe_psql('postgres', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'cdviz http'");
my @before = split /\n/, slurp_file($acked_file);
kill 'KILL', $pid;
note(scalar(@before) . " events acknowledged before SIGKILL of pid $pid");
cmp_ok(scalar @before, '>', 0, 'some events were acknowledged before the kill');

# a killed process that held shared memory makes the postmaster reinitialise
# every backend; until it has, a psql may die before reading its query.
# Wait for a new worker: the restart is then over.
my $back = 0;
for (1 .. 600)
{
	my $now = eval {
		$node->safe_psql('postgres', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'cdviz http'");
	};
	if (defined $now && $now ne '' && $now ne $pid)
	{
		$back = 1;
		last;
	}
	sleep 0.1;
}
$back or die 'no new cdviz http worker after the kill';
my $list = join(',', map { "'$_'" } @before);
is($node->safe_psql('postgres', "SELECT count(*) FROM cdviz.cdevents_lake WHERE context_id IN ($list)"),
	scalar @before, 'every event acknowledged before the kill is stored');

$h->finish;
my @after = split /\n/, slurp_file($acked_file);
is(scalar @after, 3000, 'after the restart, the clients got every event acknowledged');
is($node->safe_psql('postgres',
		"SELECT count(*) || ' ' || count(DISTINCT context_id) FROM cdviz.cdevents_lake WHERE context_id LIKE 'kill-%'"),
	'3000 3000', 'retries created no duplicates');
isnt($node->safe_psql('postgres', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'cdviz http'"),
	$pid, 'the worker was restarted');

$node->stop;
done_testing();
