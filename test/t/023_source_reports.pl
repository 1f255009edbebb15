# Test reports read by folder and S3 sources (option format): a folder of
# JUnit reports as Surefire, pytest, jest-junit and a nested suite write
# them, a folder of TAP 13 and 14 files, each event type and outcome
# counted; ids made of the path and the content's SHA-256, the same after
# a rewrite of the same content (nothing stored again), others after a
# change; nothing stored twice after a restart.  Hostile XML (a billion
# laughs, an external entity naming a local secret) and a report over
# max_report_size become dead letters that keep neither the XML nor the
# secret.  An S3 source reads a JUnit object (s3rver), its default
# timestamp the object's LastModified.
use strict;
use warnings;
use Digest::SHA qw(sha256_hex);
use File::Copy qw(copy);
use File::Path qw(make_path);
use FindBin;
use lib $FindBin::Bin;
use CdvizNode;
use S3Test;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $fixtures = "$FindBin::Bin/../fixtures/reports";
my $tmp = PostgreSQL::Test::Utils::tempdir();
make_path("$tmp/$_") for qw(junit tap hostile s3);

my $node = cdviz_node('reports');
$node->start;
sub q1 { return $node->safe_psql('postgres', $_[0]); }
q1('CREATE EXTENSION cdviz');

sub fixture { return slurp_file("$fixtures/$_[0]"); }

# The events of a source: "type outcome=count" lines, in order.
sub counts
{
	my ($src) = @_;
	return q1(qq{SELECT string_agg(t || ' ' || o || '=' || n, E'\\n' ORDER BY t, o)
		FROM (SELECT regexp_replace(payload->'context'->>'type', '^dev\\.cdevents\\.(\\w+)run\\.(\\w+)\\..*\$', '\\1.\\2') AS t,
					 coalesce(payload->'subject'->'content'->>'outcome', '-') AS o, count(*) AS n
			  FROM cdviz.cdevents_lake WHERE context_source = '$src' GROUP BY 1, 2) c});
}

sub wait_rows
{
	my ($sql, $what) = @_;
	ok($node->poll_query_until('postgres', $sql), $what) or diag q1("TABLE cdviz.fs_files");
}

my @junit = qw(surefire-TEST-com.example.CalculatorTest.xml pytest-junit.xml jest-junit.xml nested-junit.xml);
drop_file("$tmp/junit", $_, fixture($_)) for @junit;
drop_file("$tmp/tap", $_, fixture($_)) for qw(tap13.tap tap14.tap);

q1(qq{
	SELECT cdviz.create_source('junit', 'folder', '$tmp/junit', '{"format": "junit", "poll_interval": 1}');
	SELECT cdviz.create_source('tap', 'folder', '$tmp/tap', '{"format": "tap", "poll_interval": 1}');
});

# ---- JUnit: every outcome of the four tools' shapes ------------------------
wait_lake_count($node, "file://$tmp/junit", 22, 'JUnit folder: 15 cases and 7 suites');
is(counts("file://$tmp/junit"), join("\n",
	'testcase.finished error=3', 'testcase.finished failure=4', 'testcase.finished success=5',
	'testcase.skipped -=3',
	'testsuite.finished error=3', 'testsuite.finished failure=3', 'testsuite.finished success=1'),
	'JUnit events per type and outcome');
is(q1(qq{SELECT string_agg(regexp_replace(path, '.*/', '') || ' ' || status || ' ' || events || ' ' || duplicates, ', ' ORDER BY path)
	FROM cdviz.fs_files WHERE source = '$tmp/junit'}),
	'jest-junit.xml read 6 0, nested-junit.xml read 6 0, pytest-junit.xml read 5 0, surefire-TEST-com.example.CalculatorTest.xml read 5 0',
	'one progress row per report, read, with its events');

my $pytest = "$tmp/junit/pytest-junit.xml";
my $pytest_id = "$pytest\@sha256:" . sha256_hex(fixture('pytest-junit.xml'));
is(q1(qq{SELECT payload->'subject'->'content'->>'outcome' || ' ' || (payload->'subject'->'content'->'testSuiteRun'->>'id')
	FROM cdviz.cdevents_lake WHERE context_id = '$pytest_id#s0.c1'}),
	"failure $pytest_id#s0", 'ids: path, @sha256:, the content hash, #, the position; a case names its suite run');
my $surefire = "$tmp/junit/surefire-TEST-com.example.CalculatorTest.xml";
is(q1(qq{SELECT l."timestamp" = f.mtime FROM cdviz.cdevents_lake l JOIN cdviz.fs_files f ON f.path = '$surefire'
	WHERE l.context_id LIKE '$surefire\@sha256:%#s0'}), 't',
	'a suite without a timestamp attribute takes the file\'s modification time');

my $ids_before = q1("SELECT string_agg(context_id, ',' ORDER BY context_id) FROM cdviz.cdevents_lake WHERE context_id LIKE '$pytest\@%'");

# ---- TAP 13 and 14 -------------------------------------------------------------
wait_lake_count($node, "file://$tmp/tap", 14, 'TAP folder: 10 cases and 4 suites');
is(counts("file://$tmp/tap"), join("\n",
	'testcase.finished failure=3', 'testcase.finished success=4', 'testcase.skipped -=3',
	'testsuite.finished failure=3', 'testsuite.finished success=1'),
	'TAP events per type and outcome');
is(q1(qq{SELECT payload->'subject'->'content'->'testSuite'->>'name' FROM cdviz.cdevents_lake
	WHERE context_id LIKE '$tmp/tap/tap13.tap\@sha256:%#s0'}), 'tap13.tap', 'a TAP file\'s suite is named after the file');

# ---- rewrites -------------------------------------------------------------------
# the same content again (a new mtime): read, nothing stored; a changed
# report: its new content gives new ids
my $old_mtime = q1("SELECT mtime FROM cdviz.fs_files WHERE path = '$pytest'");
sleep 1;
drop_file("$tmp/junit", 'pytest-junit.xml', fixture('pytest-junit.xml'));
drop_file("$tmp/junit", 'jest-junit.xml', fixture('jest-junit.xml') . "<!-- run 2 -->\n");
wait_rows("SELECT mtime <> '$old_mtime' FROM cdviz.fs_files WHERE path = '$pytest'",
	'the rewritten report is looked at again');
wait_lake_count($node, "file://$tmp/junit", 28, 'the changed report: 6 events of new ids');
is(q1("SELECT string_agg(context_id, ',' ORDER BY context_id) FROM cdviz.cdevents_lake WHERE context_id LIKE '$pytest\@%'"),
	$ids_before, 'the same content rewritten: the same ids, nothing stored again');
is(q1("SELECT status || ' ' || events || ' ' || duplicates FROM cdviz.fs_files WHERE path = '$pytest'"),
	'read 5 0', 'its progress row counts no new event and no duplicate');

# ---- hostile and oversized reports ------------------------------------------------
my $secret = 'TOP-SECRET-' . int(rand(1e9));
open my $sf, '>', "$tmp/secret.txt" or die;
print $sf "$secret\n";
close $sf;
q1(qq{SELECT cdviz.create_source('hostile', 'folder', '$tmp/hostile', '{"format": "junit", "poll_interval": 1, "max_report_size": 1}')});
drop_file("$tmp/hostile", 'billion-laughs.xml', fixture('billion-laughs.xml'));
drop_file("$tmp/hostile", 'xxe.xml', qq{<?xml version="1.0"?>
<!DOCTYPE testsuite [<!ENTITY xxe SYSTEM "file://$tmp/secret.txt">]>
<testsuite name="x" tests="1"><testcase classname="c" name="&xxe;"><failure message="&xxe;"/></testcase></testsuite>
});
drop_file("$tmp/hostile", 'large.xml', fixture('surefire-TEST-com.example.CalculatorTest.xml'));
wait_rows(qq{SELECT count(*) = 3 FROM cdviz.fs_files WHERE source = '$tmp/hostile' AND status = 'rejected'},
	'the hostile and the oversized reports are rejected');
is(q1(qq{SELECT string_agg(regexp_replace(origin_ref, '.*/', '') || ' ' || origin || ' ' || length(raw), ', ' ORDER BY origin_ref)
	FROM cdviz.rejected_events WHERE origin_ref LIKE '$tmp/hostile/%'}),
	'billion-laughs.xml fs 0, large.xml fs 0, xxe.xml fs 0', 'one dead letter each, without the refused text');
like(q1(qq{SELECT problems::text FROM cdviz.rejected_events WHERE origin_ref = '$tmp/hostile/xxe.xml'}),
	qr/entit/i, 'the external entity\'s dead letter says why');
like(q1(qq{SELECT problems->0->>'message' FROM cdviz.rejected_events WHERE origin_ref = '$tmp/hostile/large.xml'}),
	qr/^report of 1625 bytes is larger than the source's max_report_size \(1 kB\)/, 'the oversized report\'s problem');
is(q1(qq{SELECT count(*) FROM cdviz.rejected_events WHERE raw LIKE '%$secret%' OR problems::text LIKE '%$secret%'})
	 + q1(qq{SELECT count(*) FROM cdviz.cdevents_lake WHERE payload::text LIKE '%$secret%'}),
	'0', 'the secret is in no dead letter and no event');
is(lake_count($node, "file://$tmp/hostile"), '0', 'no event from the hostile folder');
# (this test's own statements, logged, name it)
is(scalar(grep { /\Q$secret\E/ && !/ statement: / } split /\n/, slurp_file($node->logfile)), 0,
	'nor in the server log');

# ---- a restart: nothing read twice ------------------------------------------------
my $before = q1('SELECT count(*) FROM cdviz.cdevents_lake') . ' '
  . q1('SELECT sum(events) || \' \' || sum(duplicates) FROM cdviz.fs_files');
$node->restart;
drop_file("$tmp/tap", 'after-restart.tap', "TAP version 14\n1..2\nok 1 - one\nnot ok 2 - two\n");
wait_lake_count($node, "file://$tmp/tap", 17, 'a report dropped after the restart: 2 cases and its suite');
is(q1('SELECT count(*) - 3 FROM cdviz.cdevents_lake') . ' '
	 . q1(qq{SELECT sum(events) - 3 || ' ' || sum(duplicates) FROM cdviz.fs_files}),
	$before, 'after the restart nothing was stored twice, nor read again');

# ---- S3: a JUnit object -----------------------------------------------------------
SKIP:
{
	skip s3rver_missing(), 5 if s3rver_missing();
	my $s3 = S3Test->new("$tmp/s3");
	my $body = fixture('surefire-TEST-com.example.CalculatorTest.xml');
	$s3->put('reports/ci/TEST-calc.xml' => $body,
		'reports/ci/TEST-broken.xml' => '<testsuite name="x"><testcase');
	q1(qq{SELECT cdviz.create_source('s3-junit', 's3', 's3://bkt/reports/', '${\ $s3->source_options('"format": "junit"')}')});
	wait_lake_count($node, 's3://bkt/reports/', 5, 'S3: the JUnit object\'s 4 cases and its suite');
	my $id = 'reports/ci/TEST-calc.xml@sha256:' . sha256_hex($body);
	is(q1(qq{SELECT payload->'subject'->'content'->>'outcome' FROM cdviz.cdevents_lake WHERE context_id = '$id#s0'}),
		'error', 'S3: ids are made of the key and the content\'s hash');
	is(q1(qq{SELECT abs(extract(epoch FROM "timestamp" - now())) < 600 FROM cdviz.cdevents_lake WHERE context_id = '$id#s0'}),
		't', 'S3: the default timestamp is the object\'s LastModified');
	ok($node->poll_query_until('postgres', qq{SELECT count(*) = 1 FROM cdviz.rejected_events
		WHERE origin = 's3' AND origin_ref = 's3://bkt/reports/ci/TEST-broken.xml' AND raw = ''}),
		'S3: a malformed report is a dead letter');
	is(q1(qq{SELECT string_agg(key || ' ' || status || ' ' || events, ', ' ORDER BY key) FROM cdviz.s3_objects WHERE bucket = 'bkt'}),
		'reports/ci/TEST-broken.xml rejected 0, reports/ci/TEST-calc.xml read 5', 'S3: progress rows');
	$s3->stop;
}

$node->stop;
done_testing();
