# ReportMemory.pm — what the tests of a source worker's memory share: their
# node, a large JUnit report, and the worker's peak resident memory.
package ReportMemory;

use strict;
use warnings;
use Exporter 'import';
use CdvizNode;
use PostgreSQL::Test::Utils;

our @EXPORT = qw(memory_node junit_report source_worker_hwm);

# A node named $name, started, with cdviz created.  Resident memory counts
# the pages of shared buffers the worker touches: shared_buffers is kept
# small so that they weigh little.  The commit timestamp of a row's xmin
# names its whole transaction.
sub memory_node
{
	my ($name) = @_;
	my $node = cdviz_node($name, qq(
shared_buffers = 16MB
track_commit_timestamp = on
));
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION cdviz');
	return $node;
}

# A JUnit report of $n cases in suites of 1,000, one in 50 failing.
sub junit_report
{
	my ($n, $tag) = @_;
	my $xml = qq{<?xml version="1.0" encoding="UTF-8"?>\n<testsuites name="$tag">\n};
	for (my $s = 0; $s < $n; $s += 1000)
	{
		$xml .= qq{<testsuite name="$tag.s$s" timestamp="2024-05-01T10:00:00" time="12.5" hostname="ci-1">\n};
		for my $c ($s .. ($s + 999 < $n ? $s + 999 : $n - 1))
		{
			$xml .= $c % 50
			  ? qq{ <testcase classname="com.example.T$s" name="test_$c" time="0.001"/>\n}
			  : qq{ <testcase classname="com.example.T$s" name="test_$c" time="0.002"><failure message="expected 1" type="AssertionError">at T.java:$c</failure></testcase>\n};
		}
		$xml .= "</testsuite>\n";
	}
	return $xml . "</testsuites>\n";
}

# The pid of $node's only source worker, and its peak resident memory
# (VmHWM of /proc/<pid>/status) in kB.
sub source_worker_hwm
{
	my ($node) = @_;
	my $pid = $node->safe_psql('postgres',
		q{SELECT string_agg(pid::text, ',') FROM pg_stat_activity WHERE backend_type = 'cdviz source'});
	die "not one source worker: '$pid'" unless $pid =~ /^\d+$/;
	my ($kb) = slurp_file("/proc/$pid/status") =~ /^VmHWM:\s+(\d+) kB/m;
	return ($pid, $kb);
}

1;
