# The folder source of the settings (cdviz.fs_path) against a real server: files dropped
# while it runs, partial writes, appended lines, a large file, nested
# folders, bad files and lines, SIGKILL in the middle of files (every event
# present exactly once afterwards), the three fs_after modes, permission
# errors.
use strict;
use warnings;
use File::Path qw(make_path);
use FindBin;
use lib $FindBin::Bin;
use CdvizNode;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $tmp = PostgreSQL::Test::Utils::tempdir();
my ($in, $fs_conf) = fs_inbox($tmp);

my $node = cdviz_node('poll_fs', $fs_conf . qq(
cdviz.poll_batch_lines = 1000
restart_after_crash = on
));
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION cdviz');

# A valid CDEvent (spec 0.4.1 service.deployed) with the given id and source.
sub ev
{
	my ($id, $src) = @_;
	$src //= '/t';
	return qq({"context":{"version":"0.4.1","id":"$id","source":"$src",)
	  . qq("type":"dev.cdevents.service.deployed.0.2.0","timestamp":"2024-05-01T10:00:00Z"},)
	  . qq("subject":{"id":"svc/$id","source":"$src","type":"service",)
	  . qq("content":{"environment":{"id":"prod"},"artifactId":"pkg:oci/app\@sha256%3A0b31b1c02ff458ad9b7b81cbdf8f028bd54699fa151f221d1e8de6817db93427"}}});
}

sub write_file
{
	my ($path, $text, $mode) = @_;
	open my $fh, ($mode // '>'), $path or die "$path: $!";
	binmode $fh;
	print $fh $text;
	close $fh;
}

# Write in a hidden file, then rename: the poller never sees it half done.
sub drop_path
{
	my ($path, $text) = @_;
	my ($d, $b) = $path =~ m{^(.*)/([^/]+)$};
	write_file("$d/.$b.tmp", $text);
	rename("$d/.$b.tmp", $path) or die "rename: $!";
}

sub q1 { return $node->safe_psql('postgres', $_[0]); }

sub events_of { return lake_count($node, $_[0]); }
sub wait_events { return wait_lake_count($node, @_); }

# A SIGKILLed worker makes the postmaster restart every backend: until it
# has, a psql may die before reading its query (IPC::Run then croaks on the
# broken pipe).  Wait until a new poller runs: the restart is then over.
sub wait_server_back
{
	my ($killed) = @_;
	for (1 .. 600)
	{
		my $now = eval { q1("SELECT pid FROM pg_stat_activity WHERE application_name = 'cdviz source settings.folder'") };
		return if defined $now && $now ne '' && $now ne $killed;
		usleep(100_000);
	}
	die 'no new poller after the worker was killed';
}

sub poller_pid
{
	return q1("SELECT pid FROM pg_stat_activity WHERE application_name = 'cdviz source settings.folder'");
}

# Three polls pass: what was due has been read.
sub settle { sleep 3; }

# ---------------------------------------------------------------- drops ----
drop_path("$in/one.json", ev('single-1', '/single'));
wait_events('/single', 1, 'a single-event .json file is read');

drop_path("$in/array.json", '[' . join(",\n", ev('arr-1', '/array'), '{"not": "an event"}', ev('arr-3', '/array')) . ']');
wait_events('/array', 2, 'a .json array: valid elements stored');
is(q1("SELECT origin || ' ' || origin_ref FROM cdviz.rejected_events WHERE origin_ref LIKE '%array.json%'"),
	"fs $in/array.json#2", 'the bad element is a dead letter with file#n');

drop_path("$in/lines.jsonl", join("\n", ev('l-1', '/lines'), ev('l-2', '/lines'), '{broken', '', ev('l-5', '/lines')) . "\n");
wait_events('/lines', 3, 'a .jsonl file: valid lines stored');
is(q1("SELECT origin_ref FROM cdviz.rejected_events WHERE origin_ref LIKE '%lines.jsonl%'"),
	"$in/lines.jsonl:3", 'the bad line is a dead letter with file:line');

# ------------------------------------------------- partial writes, appends ----
write_file("$in/grow.ndjson", ev('g-1', '/grow') . "\n" . substr(ev('g-2', '/grow'), 0, 40));
wait_events('/grow', 1, 'complete lines of a file being written are read');
settle();
is(events_of('/grow'), '1', 'a half-written last line waits');
write_file("$in/grow.ndjson", substr(ev('g-2', '/grow'), 40) . "\n" . ev('g-3', '/grow') . "\n", '>>');
wait_events('/grow', 3, 'the rest of the line and appended lines are read');
write_file("$in/grow.ndjson", ev('g-4', '/grow') . "\n", '>>');
wait_events('/grow', 4, 'lines appended later are read');
is(q1("SELECT lines_read || ' ' || duplicates || ' ' || (read_offset = size)::int FROM cdviz.fs_files WHERE path = '$in/grow.ndjson'"),
	'4 0 1', 'appends continue at the recorded offset: nothing read twice');

# a rewritten file (different start) is read again; its events deduplicate
drop_path("$in/grow.ndjson", ev('g-1', '/grow') . "\n" . ev('g-5', '/grow') . "\n" . ev('g-6', '/grow') . "\n" . ev('g-7', '/grow') . "\n" . ev('g-8', '/grow') . "\n");
wait_events('/grow', 8, 'a rewritten file is read again from the start');
is(q1("SELECT duplicates FROM cdviz.fs_files WHERE path = '$in/grow.ndjson'"), '1',
	'its event read before deduplicated');

# ------------------------------------------------------ nested, large ----
make_path("$in/a/b/c");
drop_path("$in/a/b/c/deep.jsonl", ev('d-1', '/deep') . "\n");
wait_events('/deep', 1, 'files in nested folders are read');

my $big = '';
$big .= ev("big-$_", '/big') . "\n" for 1 .. 200_000;
drop_path("$in/a/big.jsonl", $big);
undef $big;
wait_events('/big', 200_000, 'a 200,000-line file is read');
is(q1("SELECT events || ' ' || duplicates || ' ' || rejected || ' ' || status FROM cdviz.fs_files WHERE path = '$in/a/big.jsonl'"),
	'200000 0 0 read', 'once each, in chunks');

# ------------------------------------------------------------ bad files ----
drop_path("$in/notjson.json", "this is not JSON at all\n");
drop_path("$in/binary.jsonl", "\x00\x01\x02garbage\n" x 100);
drop_path("$in/ignored.txt", ev('ignored', '/ignored') . "\n");
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 2 FROM cdviz.fs_files WHERE status = 'rejected'"),
	'files that are not JSON are rejected');
settle();
is(q1("SELECT count(*) FROM cdviz.rejected_events WHERE origin_ref IN ('$in/notjson.json', '$in/binary.jsonl')"),
	'2', 'each once, not at every poll, not line by line');
is(events_of('/ignored'), '0', 'files not matching cdviz.fs_pattern are ignored');

my $long = '{"x":"' . ('y' x 1_100_000) . '"}';
drop_path("$in/long.jsonl", ev('long-1', '/long') . "\n$long\n" . ev('long-3', '/long') . "\n");
wait_events('/long', 2, 'lines around an overlong line are read');
like(q1("SELECT problems->0->>'message' FROM cdviz.rejected_events WHERE origin_ref = '$in/long.jsonl:2'"),
	qr/longer than cdviz.poll_max_line_size/, 'the overlong line is rejected with its reason');

# ------------------------------------------------------------ SIGKILL ----
my $kill_log_start = -s $node->logfile;
my $n = 150_000;
my $text = '';
$text .= ev("k-$_", '/kill') . "\n" for 1 .. $n;
drop_path("$in/kill.jsonl", $text);
ok($node->poll_query_until('postgres',
	"SELECT count(*) > 0 FROM cdviz.fs_files WHERE path = '$in/kill.jsonl' AND status = 'reading'"),
	'the large file is being read');
my $pid = poller_pid();
ok($pid, "poller pid $pid");
kill 'KILL', $pid;
wait_server_back($pid);
wait_events('/kill', $n, 'after SIGKILL in the middle of a file, every event arrives');
is(q1("SELECT duplicates || ' ' || events FROM cdviz.fs_files WHERE path = '$in/kill.jsonl'"),
	"0 $n", 'exactly once: no line was stored twice');

for my $round (1 .. 3)
{
	my $m = 20_000;
	my $t = '';
	$t .= ev("r$round-$_", "/random$round") . "\n" for 1 .. $m;
	drop_path("$in/random$round.jsonl", $t);
	usleep(int(rand(3_000_000)));
	my $p = poller_pid();
	kill 'KILL', $p if $p;
	wait_server_back($p // '');
	wait_events("/random$round", $m, "round $round: SIGKILL at a random point, all events arrive");
	is(q1("SELECT duplicates FROM cdviz.fs_files WHERE path = '$in/random$round.jsonl'"), '0',
		"round $round: none twice");
}
$node->poll_query_until('postgres', "SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = 'cdviz source settings.folder'");

# --------------------------------------------------------- permissions ----
drop_path("$in/locked.jsonl", ev('p-1', '/perm') . "\n");
chmod 0000, "$in/locked.jsonl";
ok($node->poll_query_until('postgres',
	"SELECT last_error LIKE '%Permission denied%' FROM cdviz.fs_files WHERE path = '$in/locked.jsonl'"),
	'an unreadable file is noted in cdviz.fs_files');
make_path("$in/closed");
chmod 0000, "$in/closed";
ok($node->poll_query_until('postgres',
	"SELECT last_error LIKE '%could not open folder%closed%' FROM cdviz.source_status WHERE location = '$in'"),
	'an unreadable folder shows in cdviz.source_status');
settle();
my $log = slurp_file($node->logfile);
my @warnings = $log =~ /could not open "\Q$in\E\/locked.jsonl"/g;
is(scalar(@warnings), 1, 'the file error is logged once, not at every poll');
chmod 0644, "$in/locked.jsonl";
chmod 0755, "$in/closed";
wait_events('/perm', 1, 'once readable, the file is read');
ok($node->poll_query_until('postgres',
	"SELECT last_error IS NULL FROM cdviz.source_status WHERE location = '$in'"),
	'and the source error clears');
# (cdviz.source_status has a row per source: this folder's, until the
# settings name another below)
is(q1("SELECT events >= 200000 AND items > 10 AND last_poll_at IS NOT NULL FROM cdviz.source_status WHERE location = '$in'"),
	't', 'cdviz.source_status sums up the folder');

# ------------------------------------------------------------ fs_after ----
my $in2 = "$tmp/in2";
my $done = "$tmp/done";
make_path("$in2/sub");
$node->append_conf('postgresql.conf', qq(
cdviz.fs_path = '$in2'
cdviz.fs_after = 'delete'
));
$node->reload;
drop_path("$in2/del.jsonl", ev('del-1', '/after') . "\n" . ev('del-2', '/after'));
wait_events('/after', 2, 'fs_after = delete: the file is read, unterminated last line included');
ok($node->poll_query_until('postgres',
	"SELECT status = 'deleted' FROM cdviz.fs_files WHERE path = '$in2/del.jsonl'"),
	'and then deleted');
ok(!-e "$in2/del.jsonl", 'the file is gone');

$node->append_conf('postgresql.conf', qq(
cdviz.fs_after = 'move'
cdviz.fs_done_path = '$done'
));
$node->reload;
sleep 2;
drop_path("$in2/sub/mv.json", '[' . ev('mv-1', '/after') . ']');
wait_events('/after', 3, 'fs_after = move: the file is read');
ok($node->poll_query_until('postgres',
	"SELECT status = 'moved' FROM cdviz.fs_files WHERE path = '$in2/sub/mv.json'"),
	'and then moved');
ok(-e "$done/sub/mv.json" && !-e "$in2/sub/mv.json", 'into fs_done_path, keeping its sub-folder');

$node->append_conf('postgresql.conf', qq(
cdviz.fs_after = 'keep'
));
$node->reload;
sleep 2;
drop_path("$in2/kept.jsonl", ev('keep-1', '/after') . "\n");
wait_events('/after', 4, 'fs_after = keep: the file is read');
settle();
ok(-e "$in2/kept.jsonl", 'and kept');

# -------------------------------------------------------------- status ----
$node->safe_psql('postgres', q{
	CREATE ROLE tap_reader LOGIN IN ROLE cdviz_reader;
});
is($node->psql('postgres', 'SELECT count(*) FROM cdviz.source_status', extra_params => ['-U', 'tap_reader']),
	0, 'cdviz_reader may read cdviz.source_status');

is(q1("SELECT count(*) FROM (SELECT context_source, context_id FROM cdviz.cdevents_lake GROUP BY 1, 2 HAVING count(*) > 1) d"),
	'0', 'no event is in the lake twice');

# ---------------------------------------- errors in a worker transaction ----
# The error is logged as raised, with its context: the worker and what it did.
my $poller = poller_pid();
my $log_offset = -s $node->logfile;
$node->safe_psql('postgres', q{
	CREATE FUNCTION public.tap_refuse_poll() RETURNS trigger LANGUAGE plpgsql
	AS $$BEGIN RAISE EXCEPTION 'tap refuses the poll note' USING HINT = 'tap hint'; END$$;
	CREATE TRIGGER tap_refuse BEFORE UPDATE ON cdviz.source_progress
	FOR EACH ROW WHEN (NEW.last_poll_at IS DISTINCT FROM OLD.last_poll_at)
	EXECUTE FUNCTION public.tap_refuse_poll();
});
ok($node->wait_for_log(
		qr/ERROR:  tap refuses the poll note\n[^\n]*HINT:  tap hint\n[^\n]*CONTEXT:  PL\/pgSQL function tap_refuse_poll\(\)[^\n]*\n(?:\t[^\n]*\n)*\tcdviz source: noting the poll\n/,
		$log_offset),
	'a failed transaction logs the error with its hint and context, naming the worker\'s activity');
$node->safe_psql('postgres', q{
	DROP TRIGGER tap_refuse ON cdviz.source_progress;
	DROP FUNCTION public.tap_refuse_poll();
});
is(poller_pid(), $poller, 'the poller goes on after the failed transaction');

$node->stop;
done_testing();
