# The memory of reading a test report: a JUnit report of 50,000 cases is
# stored whole, in one transaction, while the source worker's peak
# resident memory (VmHWM of /proc/<pid>/status) grows by less than 200 MB:
# its model, and one batch of events at a time (all of them at once took
# some 8 kB of json-c each, and a subtransaction per batch kept each
# batch's transition table until the commit).  Resident memory counts the
# pages of shared buffers the worker touches: shared_buffers is kept small
# so that they weigh little.  A report over the source's max_report_cases is
# one dead letter saying so, and nothing of it is stored; one at the limit
# is stored.
use strict;
use warnings;
use File::Path qw(make_path);
use FindBin;
use lib $FindBin::Bin;
use CdvizNode;
use ReportMemory;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

plan skip_all => 'needs /proc/<pid>/status' unless -r '/proc/self/status';

my $tmp = PostgreSQL::Test::Utils::tempdir();
make_path("$tmp/$_") for qw(big capped);

my $node = memory_node('report_memory');
sub q1 { return $node->safe_psql('postgres', $_[0]); }

q1(qq{SELECT cdviz.create_source('big', 'folder', '$tmp/big', '{"format": "junit", "poll_interval": 1}')});

# a small report first: the worker has loaded what every report needs
drop_file("$tmp/big", 'small.xml', junit_report(10, 'small'));
wait_lake_count($node, "file://$tmp/big", 11, 'a small report: 10 cases and its suite');
my ($pid, $before) = source_worker_hwm($node);
ok($before > 0, "the worker's peak memory before: $before kB");

drop_file("$tmp/big", 'big.xml', junit_report(50_000, 'big'));
wait_lake_count($node, "file://$tmp/big", 11 + 50_050, 'a report of 50,000 cases: all its events and suites');
my ($pid_after, $after) = source_worker_hwm($node);
is($pid_after, $pid, 'the same worker read it');
my $growth_mb = ($after - $before) / 1024;
note sprintf('worker VmHWM %d kB -> %d kB: +%.1f MB for 50,000 cases', $before, $after, $growth_mb);
cmp_ok($growth_mb, '<', 200, 'its peak memory grew by less than 200 MB');
is(q1(qq{SELECT status || ' ' || events || ' ' || duplicates || ' ' || rejected FROM cdviz.fs_files WHERE path = '$tmp/big/big.xml'}),
	'read 50050 0 0', 'its progress row: read, every event counted');
is(q1(qq{SELECT count(DISTINCT pg_xact_commit_timestamp(xmin)) FROM cdviz.cdevents_lake WHERE context_id LIKE '$tmp/big/big.xml\@%'}),
	'1', 'stored in one transaction, batch after batch');
is(q1(qq{SELECT payload->'subject'->'content'->>'reason' FROM cdviz.cdevents_lake
	WHERE context_id LIKE '$tmp/big/big.xml\@sha256:%#s49'}),
	'20 failed, 0 in error, 0 skipped, of 1000 tests', 'the last suite counts its cases');

# ---- the case limit -----------------------------------------------------------
q1(qq{SELECT cdviz.create_source('capped', 'folder', '$tmp/capped', '{"format": "junit", "poll_interval": 1, "max_report_cases": 100}')});
drop_file("$tmp/capped", 'over.xml', junit_report(100, 'over'));
drop_file("$tmp/capped", 'at.xml', junit_report(99, 'at'));
ok($node->poll_query_until('postgres',
	qq{SELECT count(*) = 2 FROM cdviz.fs_files WHERE source = '$tmp/capped' AND status IN ('read', 'rejected')}),
	'both reports are looked at');
is(q1(qq{SELECT string_agg(regexp_replace(path, '.*/', '') || ' ' || status || ' ' || events, ', ' ORDER BY path)
	FROM cdviz.fs_files WHERE source = '$tmp/capped'}),
	'at.xml read 100, over.xml rejected 0', 'the report at the limit is read, the one over it rejected');
is(q1(qq{SELECT length(raw) || ' ' || (problems->0->>'message') FROM cdviz.rejected_events WHERE origin_ref = '$tmp/capped/over.xml'}),
	"0 the report holds more than 100 suites and cases, the limit (a source's max_report_cases)",
	'its dead letter says why, without the report');
is(q1(qq{SELECT count(*) FROM cdviz.cdevents_lake WHERE context_id LIKE '$tmp/capped/over.xml\@%'}), '0',
	'nothing of it is stored');

$node->stop;
done_testing();
