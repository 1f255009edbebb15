# The S3 source of the settings (cdviz.s3_bucket) against a real S3-compatible server (s3rver
# from npm, on loopback): more than 1,000 objects across listing pages,
# prefix filtering, objects added between polls, a rewritten object, bad
# lines, wrong credentials (clear error, no crash loop), the server stopped
# and restarted while the poller works.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use CdvizNode;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use S3Test;
use Test::More;

plan skip_all => s3rver_missing() if s3rver_missing();

my $tmp = PostgreSQL::Test::Utils::tempdir();
my $s3 = S3Test->new("$tmp/s3");
my $s3url = $s3->url;

sub ev
{
	my ($id, $src) = @_;
	return qq({"context":{"version":"0.4.1","id":"$id","source":"$src",)
	  . qq("type":"dev.cdevents.service.deployed.0.2.0","timestamp":"2024-05-01T10:00:00Z"},)
	  . qq("subject":{"id":"svc/$id","source":"$src","type":"service",)
	  . qq("content":{"environment":{"id":"prod"},"artifactId":"pkg:oci/app\@sha256%3A0b31b1c02ff458ad9b7b81cbdf8f028bd54699fa151f221d1e8de6817db93427"}}});
}

my $node = cdviz_node('poll_s3', qq(
cdviz.s3_endpoint = '$s3url'
cdviz.s3_bucket = 'bkt'
cdviz.s3_prefix = 'events/'
cdviz.s3_path_style = on
cdviz.s3_access_key_id = 'S3RVER'
cdviz.s3_secret_access_key = 'S3RVER'
cdviz.s3_poll_interval = 1
));

sub q1 { return $node->safe_psql('postgres', $_[0]); }
sub events_of { return lake_count($node, $_[0]); }
sub wait_events { return wait_lake_count($node, @_); }

sub poller_pid
{
	return q1("SELECT pid FROM pg_stat_activity WHERE application_name = 'cdviz source settings.s3'");
}

# ---------------------------------------------------- pages and prefix ----
my %objs;
$objs{ sprintf('events/day%d/obj-%04d.jsonl', $_ % 3, $_) } = ev("o-$_", '/s3') . "\n" for 1 .. 1100;
$objs{"other/x-$_.jsonl"} = ev("x-$_", '/outside') . "\n" for 1 .. 5;
$objs{'events/array.json'} = '[' . ev('a-1', '/s3array') . ',' . ev('a-2', '/s3array') . ']';
$objs{'events/bad.jsonl'} = ev('b-1', '/s3bad') . "\n{oops\n" . ev('b-3', '/s3bad') . "\n";
$objs{'events/readme.txt'} = "not matched by cdviz.s3_pattern\n";
$s3->put(%objs);

$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION cdviz');
my $pid = poller_pid();

wait_events('/s3', 1100, '1,100 objects, more than one listing page, are read');
wait_events('/s3array', 2, 'a .json array object is read');
wait_events('/s3bad', 2, 'the valid lines of an object with a bad line are read');
is(q1("SELECT origin || ' ' || origin_ref FROM cdviz.rejected_events WHERE origin = 's3'"),
	's3 s3://bkt/events/bad.jsonl#2', 'the bad line is a dead letter with s3://bucket/key#n');
is(events_of('/outside'), '0', 'objects outside cdviz.s3_prefix are not read');
is(q1("SELECT count(*) FROM cdviz.s3_objects"), '1102', 'one progress row per object read');
is(q1("SELECT sum(duplicates) FROM cdviz.s3_objects"), '0', 'nothing read twice');

# ------------------------------------------------- between polls, rewrite ----
$s3->put(map { ("events/new-$_.ndjson" => ev("n-$_", '/s3new') . "\n") } 1 .. 3);
wait_events('/s3new', 3, 'objects added between polls are read');

$s3->put('events/day1/obj-0001.jsonl' => ev('o-1', '/s3') . "\n" . ev('o-1b', '/s3') . "\n");
wait_events('/s3', 1101, 'a rewritten object (new ETag) is read again');
is(q1("SELECT duplicates || ' ' || events FROM cdviz.s3_objects WHERE key = 'events/day1/obj-0001.jsonl'"),
	'1 2', 'its event stored before deduplicates');

# ---------------------------------------------------- wrong credentials ----
$node->append_conf('postgresql.conf', "cdviz.s3_access_key_id = 'WRONGKEY'\n");
$node->reload;
ok($node->poll_query_until('postgres',
	"SELECT last_error LIKE '%403%InvalidAccessKeyId%' FROM cdviz.source_status WHERE location = 's3://bkt/events/'"),
	'a wrong key id shows a clear error in cdviz.source_status');
# (a changed setting restarts the source's worker with it: from here on,
# while it fails, it stays the same process)
$pid = poller_pid();
my $log_at = -s $node->logfile;
sleep 8;
my $log = substr(slurp_file($node->logfile), $log_at);
my @fails = $log =~ /cdviz source settings\.s3: listing s3:\/\/bkt\/events\/: HTTP 403 InvalidAccessKeyId/g;
ok(@fails >= 1 && @fails <= 4, 'failures back off (' . scalar(@fails) . ' attempts in 8 s)');
is(poller_pid(), $pid, 'the worker does not crash or restart');
$node->append_conf('postgresql.conf', "cdviz.s3_access_key_id = 'S3RVER'\n");
$node->reload;
$s3->put('events/after-fix.jsonl' => ev('fix-1', '/s3fix') . "\n");
wait_events('/s3fix', 1, 'with the right key again, reading resumes');
ok($node->poll_query_until('postgres',
	"SELECT p.last_error IS NULL FROM cdviz.source_progress p JOIN cdviz.sources s ON s.id = p.source_id WHERE s.location = 's3://bkt/events/'"),
	'and the error clears');
$pid = poller_pid();

# ------------------------------------------------- server stops and restarts ----
my %burst;
for my $o (1 .. 150)
{
	$burst{ sprintf('events/burst/b-%03d.jsonl', $o) } = join('', map { ev("burst-$o-$_", '/s3burst') . "\n" } 1 .. 200);
}
$s3->put(%burst);
my $total = 150 * 200;
ok($node->poll_query_until('postgres',
	"SELECT count(*) > 0 FROM cdviz.cdevents_lake WHERE context_source = '/s3burst'"),
	'the poller is reading the burst');
$s3->stop;
ok($node->poll_query_until('postgres',
	"SELECT p.last_error IS NOT NULL FROM cdviz.source_progress p JOIN cdviz.sources s ON s.id = p.source_id WHERE s.location = 's3://bkt/events/'"),
	'with the server gone, the poll fails with an error');
is(poller_pid(), $pid, 'the worker is still the same process');
$s3->start;
wait_events('/s3burst', $total, 'after the server is back, every object is read');
is(q1("SELECT sum(duplicates) FROM cdviz.s3_objects WHERE key LIKE 'events/burst/%'"), '0',
	'and no event was stored twice');
like(slurp_file($node->logfile), qr/cdviz source settings\.s3: s3:\/\/bkt\/events\/ is reachable again/,
	'the recovery is logged');

is(q1("SELECT count(*) FROM (SELECT context_source, context_id FROM cdviz.cdevents_lake GROUP BY 1, 2 HAVING count(*) > 1) d"),
	'0', 'no event is in the lake twice');

$node->stop;
$s3->stop;
done_testing();
