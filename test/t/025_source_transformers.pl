# Transformers of sources, end to end (test/fixtures/sources/transformers.sql):
# a folder of format metadata whose transformer makes each dropped .tgz an
# artifact.published of a pkg:generic purl with its checksum (the exact
# event asserted, the same content rewritten storing nothing, a changed one
# a new event); a JUnit folder whose transformer puts its test runs in
# environment staging; a transformer that raises: each file kept as a dead
# letter with the error and its SQLSTATE, the source reading on, nothing
# replayed as a CDEvent, then the transformer fixed with CREATE OR REPLACE
# and cdviz.retransform_source() storing each event once, removing the dead
# letters, and storing nothing when run again.  An S3 source of format
# metadata (s3rver) tells its transformer the bucket, key and ETag.
use strict;
use warnings;
use Digest::SHA qw(sha256_hex);
use File::Path qw(make_path);
use FindBin;
use lib $FindBin::Bin;
use CdvizNode;
use S3Test;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $fixtures = "$FindBin::Bin/../fixtures";
my $tmp = PostgreSQL::Test::Utils::tempdir();
make_path("$tmp/$_") for qw(drops junit buggy);

my $node = cdviz_node('xform');
$node->start;
sub q1 { return $node->safe_psql('postgres', $_[0]); }
q1('CREATE EXTENSION cdviz');
q1(slurp_file("$fixtures/sources/transformers.sql"));

sub wait_rows
{
	my ($sql, $what) = @_;
	ok($node->poll_query_until('postgres', $sql), $what)
	  or diag q1("SELECT path, status, events, rejected, last_error FROM cdviz.fs_files");
}

# The event a package makes (public.packages), as JSON, for a file of a
# source: its meta from the file's row of cdviz.fs_files.
sub package_event
{
	my ($source, $dir, $name, $content) = @_;
	my ($pkg, $version) = $name =~ /^(.+)-([0-9][^-]*)\.tgz$/ or die $name;
	my $sha = sha256_hex($content);
	my $path = "$dir/$name";
	my $mtime = q1(qq{SELECT cdviz.webhook_timestamp(mtime::text) FROM cdviz.fs_files WHERE path = '$path'});
	my $size = length($content);
	return qq({"context": {"specversion": "0.5.1", "id": "$path\@sha256:$sha#0", "source": "file://$dir",
		"type": "dev.cdevents.artifact.published.0.3.0", "timestamp": "$mtime"},
	  "subject": {"id": "pkg:generic/$pkg\@$version?checksum=sha256:$sha", "source": "file://$dir", "content": {}},
	  "customData": {"source": "$source", "kind": "folder", "format": "metadata", "id": "$path\@sha256:$sha",
		"source_uri": "file://$dir", "path": "$path", "uri": "file://$path", "name": "$name",
		"size": $size, "mtime": "$mtime", "sha256": "$sha"}});
}

# Whether the lake holds exactly these events from a source, in id order.
sub lake_is
{
	my ($src, $what, @events) = @_;
	my $expected = join(', ', map { "'$_'::jsonb" } @events);
	is(q1(qq{SELECT array_agg(payload ORDER BY context_id) = ARRAY[$expected]
		FROM cdviz.cdevents_lake WHERE context_source = '$src'}), 't', $what)
	  or diag q1(qq{SELECT string_agg(payload::text, E'\\n' ORDER BY context_id) FROM cdviz.cdevents_lake
		WHERE context_source = '$src'});
}

# ---- format metadata: a dropped package is published ----------------------
# larger than a hashing chunk (256 kB), with bytes that are no text
my $tgz = "\x1f\x8b\x08\x00" . join('', map { chr($_ % 256) } 0 .. 300_000);
drop_file("$tmp/drops", 'app-1.2.3.tgz', $tgz);
drop_file("$tmp/drops", 'README.txt', "not a package\n");
q1(qq{SELECT cdviz.create_source('drops', 'folder', '$tmp/drops', '{"format": "metadata", "poll_interval": 1}',
	transformer => 'public.packages(jsonb,jsonb)')});
wait_rows(qq{SELECT count(*) = 2 FROM cdviz.fs_files WHERE source = '$tmp/drops' AND status = 'read'},
	'metadata: both files read');
lake_is("file://$tmp/drops", 'metadata: the package is published, its checksum in the purl, what the source said of it kept',
	package_event('drops', "$tmp/drops", 'app-1.2.3.tgz', $tgz));
is(q1(qq{SELECT string_agg(regexp_replace(path, '.*/', '') || ' ' || events || ' ' || rejected, ', ' ORDER BY path)
	FROM cdviz.fs_files WHERE source = '$tmp/drops'}),
	'README.txt 0 0, app-1.2.3.tgz 1 0', 'metadata: the file the transformer ignores stores nothing and is no dead letter');

# the same content written again: its time changed, nothing more is stored;
# a new content is a new event
my $old = q1("SELECT mtime FROM cdviz.fs_files WHERE path = '$tmp/drops/app-1.2.3.tgz'");
sleep 1;
drop_file("$tmp/drops", 'app-1.2.3.tgz', $tgz);
wait_rows(qq{SELECT mtime <> '$old' FROM cdviz.fs_files WHERE path = '$tmp/drops/app-1.2.3.tgz'},
	'metadata: the rewritten file is looked at again');
is(lake_count($node, "file://$tmp/drops"), '1', 'metadata: the same content stores nothing again');
my $tgz2 = $tgz . 'rebuilt';
drop_file("$tmp/drops", 'app-1.2.3.tgz', $tgz2);
wait_lake_count($node, "file://$tmp/drops", 2, 'metadata: a new content is an event of its own');
is(q1(qq{SELECT payload->'subject'->>'id' FROM cdviz.cdevents_lake
	WHERE context_id = '$tmp/drops/app-1.2.3.tgz\@sha256:${\ sha256_hex($tgz2)}#0'}),
	'pkg:generic/app@1.2.3?checksum=sha256:' . sha256_hex($tgz2), 'metadata: with its own checksum');

# ---- a JUnit report whose transformer attaches an environment --------------
my $surefire = slurp_file("$fixtures/reports/surefire-TEST-com.example.CalculatorTest.xml");
drop_file("$tmp/junit", 'TEST-calc.xml', $surefire);
q1(qq{SELECT cdviz.create_source('junit-staging', 'folder', '$tmp/junit', '{"format": "junit", "poll_interval": 1}',
	transformer => 'public.junit_in_staging(jsonb,jsonb)')});
wait_lake_count($node, "file://$tmp/junit", 5, 'junit: the 4 cases and the suite');
my $file_id = "$tmp/junit/TEST-calc.xml\@sha256:" . sha256_hex($surefire);
is(q1(qq{SELECT string_agg(replace(context_id, '$file_id', '') || ' ' || replace(payload->'subject'->>'id', '$file_id', '')
		|| ' ' || (regexp_match(payload->'context'->>'type', 'cdevents\\.(\\w+\\.\\w+)\\.'))[1]
		|| ' ' || coalesce(payload->'subject'->'content'->>'outcome', '-')
		|| ' ' || (payload->'subject'->'content'->'environment'->>'id'), E'\\n' ORDER BY context_id)
	FROM cdviz.cdevents_lake WHERE context_source = 'file://$tmp/junit'}),
	join("\n", '#0 #s0.c0 testcaserun.finished success staging', '#1 #s0.c1 testcaserun.finished failure staging',
		'#2 #s0.c2 testcaserun.finished error staging', '#3 #s0.c3 testcaserun.skipped - staging',
		'#4 #s0 testsuiterun.finished error staging'),
	'junit: the built-in events, in environment staging, ids from the file and the position in the output');

# ---- a transformer bug ---------------------------------------------------------
my %buggy = ('lib-2.0.0.tgz' => "lib\n" x 1000, 'tool-0.9.1.tgz' => "tool\n" x 10);
drop_file("$tmp/buggy", $_, $buggy{$_}) for sort keys %buggy;
q1(qq{SELECT cdviz.create_source('buggy', 'folder', '$tmp/buggy', '{"format": "metadata", "poll_interval": 1}',
	transformer => 'public.buggy_packages(jsonb,jsonb)')});
wait_rows(qq{SELECT count(*) = 2 FROM cdviz.fs_files WHERE source = '$tmp/buggy' AND status = 'read' AND rejected = 1},
	'bug: both files read, each rejected');
# the source reads on: a file dropped afterwards is kept as well
$buggy{'cli-1.0.0.tgz'} = "cli\n";
drop_file("$tmp/buggy", 'cli-1.0.0.tgz', $buggy{'cli-1.0.0.tgz'});
wait_rows(qq{SELECT count(*) = 3 FROM cdviz.fs_files WHERE source = '$tmp/buggy' AND rejected = 1},
	'bug: the source goes on with the next file');
my $letters = qq{SELECT string_agg(concat_ws(' ', regexp_replace(origin_ref, '.*/', ''), origin, length(raw),
		envelope->>'mode', envelope->>'source', envelope->>'transformer', envelope->>'sqlstate',
		envelope->'meta'->>'name', envelope->'meta'->>'size', problems->0->>'message'), E'\\n' ORDER BY origin_ref)
	FROM cdviz.rejected_events WHERE origin_ref LIKE '$tmp/buggy/%'};
is(q1($letters), join("\n",
	map { "$_ fs 0 transformer buggy public.buggy_packages 22012 $_ " . length($buggy{$_})
		  . ' transformer public.buggy_packages failed: division by zero' } sort keys %buggy),
	'bug: each file a dead letter: its meta, no body, the error and its SQLSTATE');
is(lake_count($node, "file://$tmp/buggy"), '0', 'bug: no event');
is(q1(qq{SELECT state || ' ' || rejected FROM cdviz.source_status WHERE name = 'buggy'}), 'running 3',
	'bug: the source runs, its rejected files counted');

# these dead letters are the source's input, not CDEvents
my $ids = q1(qq{SELECT string_agg(id::text, ',' ORDER BY id) FROM cdviz.rejected_events WHERE origin_ref LIKE '$tmp/buggy/%'});
my $first = (split /,/, $ids)[0];
my ($rc, $out, $err) = $node->psql('postgres', "SELECT cdviz.replay_rejected($first)");
like($err, qr/is the input of a source's transformer, not a CDEvent/, 'bug: replay_rejected refuses one');
is(q1('SELECT replayed || \' \' || still_rejected FROM cdviz.replay_rejected()'), '0 0',
	'bug: replay_rejected() leaves them alone');

# running the transformer again before it is fixed: the same dead letters, the new error
is(q1(qq{SELECT items || ' ' || stored || ' ' || failed FROM cdviz.retransform_source('buggy')}), '3 0 3',
	'bug: retransform_source with the bug still there fails on each');
is(q1(qq{SELECT string_agg(id::text, ',' ORDER BY id) FROM cdviz.rejected_events WHERE origin_ref LIKE '$tmp/buggy/%'}),
	$ids, 'bug: and keeps the same dead letters');

# fixed
q1(q{CREATE OR REPLACE FUNCTION public.buggy_packages(meta jsonb, body jsonb)
	RETURNS SETOF jsonb LANGUAGE sql STABLE AS 'SELECT * FROM public.packages(meta, body)'});
is(q1(qq{SELECT concat_ws(' ', items, stored, duplicates, rejected, failed) FROM cdviz.retransform_source('buggy')}),
	'3 3 0 0 0', 'fixed: retransform_source stores an event for each file');
lake_is("file://$tmp/buggy", 'fixed: the events the fixed transformer makes of each file, once',
	map { package_event('buggy', "$tmp/buggy", $_, $buggy{$_}) } sort keys %buggy);
is(q1(qq{SELECT count(*) FROM cdviz.rejected_events WHERE origin_ref LIKE '$tmp/buggy/%'}), '0',
	'fixed: the dead letters are gone');
is(q1(qq{SELECT string_agg(events || '/' || rejected, ' ') FROM cdviz.fs_files WHERE source = '$tmp/buggy'}),
	'1/0 1/0 1/0', 'fixed: each file counts its event and no rejection');
is(q1(qq{SELECT concat_ws(' ', items, stored, duplicates, rejected, failed) FROM cdviz.retransform_source('buggy')}),
	'0 0 0 0 0', 'fixed: run again, it finds nothing to do');
# the kept events were the ones the source makes: read again, they are duplicates
q1(qq{DELETE FROM cdviz.fs_files WHERE source = '$tmp/buggy'});
wait_rows(qq{SELECT count(*) = 3 FROM cdviz.fs_files WHERE source = '$tmp/buggy' AND duplicates = 1},
	'fixed: the files read again give the same events');
is(lake_count($node, "file://$tmp/buggy"), '3', 'fixed: stored once');

# ---- S3: an object of format metadata ----------------------------------------------
SKIP:
{
	skip s3rver_missing(), 3 if s3rver_missing();
	my $s3 = S3Test->new("$tmp/s3");
	$s3->put('pkgs/app-4.0.0.tgz' => $tgz);
	q1(qq{SELECT cdviz.create_source('s3-drops', 's3', 's3://bkt/pkgs/', '${\ $s3->source_options('"format": "metadata"')}',
		transformer => 'public.packages(jsonb,jsonb)')});
	wait_lake_count($node, 's3://bkt/pkgs/', 1, 'S3: the object is published');
	my $sha = sha256_hex($tgz);
	is(q1(qq{SELECT concat_ws(' ', context_id, payload->'subject'->>'id') FROM cdviz.cdevents_lake
		WHERE context_source = 's3://bkt/pkgs/'}),
		"pkgs/app-4.0.0.tgz\@sha256:$sha#0 pkg:generic/app\@4.0.0?checksum=sha256:$sha",
		'S3: ids from the key and the content\'s hash');
	is(q1(qq{SELECT concat_ws(' ', m->>'kind', m->>'bucket', m->>'key', m->>'uri', m->>'size', m->>'etag' = o.etag)
		FROM cdviz.cdevents_lake l, LATERAL (SELECT l.payload->'customData' AS m) x
		JOIN cdviz.s3_objects o ON o.key = x.m->>'key' WHERE l.context_source = 's3://bkt/pkgs/'}),
		's3 bkt pkgs/app-4.0.0.tgz s3://bkt/pkgs/app-4.0.0.tgz ' . length($tgz) . ' t',
		'S3: the transformer is told the bucket, key, URI, size and ETag');
	$s3->stop;
}

$node->stop;
done_testing();
