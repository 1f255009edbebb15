# The memory of a source's transformer: a folder source of format junit
# whose transformer returns cdviz.report_cdevents(meta, body) stores a
# report of 50,000 cases whole, in one transaction, while the source
# worker's peak resident memory (VmHWM of /proc/<pid>/status) grows by
# less than 250 MB, about what the built-in mapping takes (028): the
# transformer's output is kept as jsonb rows (in a tuplestore, on disk
# past work_mem) and made into json-c documents and stored a batch at a
# time, each some 8 kB of json-c; the whole output at once would take
# well over a gigabyte.  The events keep their ids <meta.id>#<n> across
# batches, and an invalid one among them is its own dead letter, at its
# position.
use strict;
use warnings;
use Digest::SHA qw(sha256_hex);
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
make_path("$tmp/big");

my $node = memory_node('transformer_memory');
sub q1 { return $node->safe_psql('postgres', $_[0]); }

# The built-in events, but for the 31,234th, whose subject is taken out.
q1(q{CREATE FUNCTION public.report_with_a_bad_one(meta jsonb, body jsonb)
RETURNS SETOF jsonb LANGUAGE sql STABLE AS $$
	SELECT CASE WHEN r.n = 31234 THEN r.e #- '{subject}' ELSE r.e END
	FROM cdviz.report_cdevents(meta, body) WITH ORDINALITY AS r(e, n)
$$});

q1(qq{SELECT cdviz.create_source('big', 'folder', '$tmp/big', '{"format": "junit", "poll_interval": 1}',
	transformer => 'public.report_with_a_bad_one(jsonb,jsonb)')});

# a small report first: the worker has loaded what every report needs
drop_file("$tmp/big", 'small.xml', junit_report(10, 'small'));
wait_lake_count($node, "file://$tmp/big", 11, 'a small report: 10 cases and its suite');
my ($pid, $before) = source_worker_hwm($node);
ok($before > 0, "the worker's peak memory before: $before kB");

my $report = junit_report(50_000, 'big');
my $id = "$tmp/big/big.xml\@sha256:" . sha256_hex($report);
drop_file("$tmp/big", 'big.xml', $report);
ok($node->poll_query_until('postgres',
	qq{SELECT status <> 'reading' FROM cdviz.fs_files WHERE path = '$tmp/big/big.xml'}),
	'the report of 50,000 cases is read');
my ($pid_after, $after) = source_worker_hwm($node);
is($pid_after, $pid, 'the same worker read it');
my $growth_mb = ($after - $before) / 1024;
note sprintf('worker VmHWM %d kB -> %d kB: +%.1f MB for 50,000 cases through a transformer',
	$before, $after, $growth_mb);
cmp_ok($growth_mb, '<', 250, 'its peak memory grew by less than 250 MB');
is(q1(qq{SELECT status || ' ' || events || ' ' || duplicates || ' ' || rejected FROM cdviz.fs_files WHERE path = '$tmp/big/big.xml'}),
	'read 50049 0 1', 'its progress row: read, every event counted, the bad one rejected');
is(q1(qq{SELECT count(*) || ' ' || count(DISTINCT context_id) || ' ' || count(DISTINCT pg_xact_commit_timestamp(xmin))
	FROM cdviz.cdevents_lake WHERE context_id LIKE '$id#%'}),
	'50049 50049 1', 'stored in one transaction, batch after batch');
is(q1(qq{SELECT string_agg(replace(context_id, '$id', ''), ' ' ORDER BY id) FROM cdviz.cdevents_lake
	WHERE context_id IN ('$id#0', '$id#31232', '$id#31233', '$id#31234', '$id#50049')}),
	'#0 #31232 #31234 #50049', 'the ids are the positions in the output, across batches');
is(q1(qq{SELECT origin_ref || ' ' || (raw::jsonb->'context'->>'id') FROM cdviz.rejected_events}),
	"$tmp/big/big.xml[31233] $id#31233", 'the invalid event is its own dead letter, at its position');

$node->stop;
done_testing();
