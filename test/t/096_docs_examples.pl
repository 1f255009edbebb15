# Every fenced example of README.md and docs/*.md runs as written, or says
# in the Markdown why it cannot run here.
#
# Each page starts from the demo cluster of scripts/run.sh: database cdviz
# with the demo events, served by the workers, the HTTP receiver listening
# (its port put in place of 8080); the page's blocks then run in order, so
# a page may build on its own earlier examples but not on another page's.
#
#   ```sql           runs with psql -v ON_ERROR_STOP=1 in database cdviz.
#                    Output shown after a statement is compared:
#                      SELECT ...;  -- → value        first column of the first row (on the
#                                                     statement's last line or the next one)
#                      SELECT ...;  -- ERROR 22023    the statement must fail (with that SQLSTATE)
#                      --  col | col                  comment lines with "|" under a statement:
#                      --  val | val                  its columns, then its first rows
#                    ("…" or "..." in a shown value stands for anything).
#   ```sh / ```bash  runs with bash -e -o pipefail in a folder of the page
#                    (holding test/docs/<page>/*, files the page assumes;
#                    test/docs/<page>/setup.sql runs before the page),
#                    psql and curl pointed at this cluster; a curl answered
#                    4xx/5xx fails the block unless the block names that
#                    status in a comment ("# 400 ...").  "# → text": the
#                    block's output must contain text.
#   ```console       its "$ " lines run as sh.
#
# A block that cannot run here is preceded by
#   <!-- example: not run, <reason> -->
# and a block that needs a database without cdviz by
#   <!-- example: in a new database -->
# Any other block fails the test.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use File::Basename qw(basename);
use File::Copy qw(copy);
use CdvizNode;
use HttpTest;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $root = "$FindBin::Bin/../..";
my $started = time;
my $US = "\x1f";
my $receiver_ready = 0;	# psql field separator: never in a shown value

# The fenced blocks of a Markdown text: line, info string, code, marker.
sub parse_blocks
{
	my ($text) = @_;
	my @lines = split /\n/, $text, -1;
	my (@blocks, @bad);
	for (my $i = 0; $i < @lines; $i++)
	{
		if ($lines[$i] =~ /^(\s*)(```+|~~~+)\s*(\S*)/)
		{
			my ($indent, $fence, $info) = (length($1), $2, $3);
			my @code;
			my $j;
			for ($j = $i + 1; $j < @lines; $j++)
			{
				last if $lines[$j] =~ /^\s*\Q$fence\E\s*$/;
				push @code, substr($lines[$j], $indent <= length($lines[$j]) ? $indent : 0);
			}
			my $mark;
			$mark = $1
			  if $i > 0 && $lines[ $i - 1 ] =~ /^<!--\s*example:\s*(.*?)\s*-->\s*$/;
			push @blocks,
			  { line => $i + 1, info => $info, code => join("\n", @code) . "\n", mark => $mark };
			$i = $j;
		}
		elsif ($lines[$i] =~ /^<!--\s*example:/
			&& !($i + 1 < @lines && $lines[ $i + 1 ] =~ /^\s*(```|~~~)/))
		{
			push @bad, $i + 1;
		}
	}
	return (\@blocks, \@bad);
}

# Statements of an SQL block, each with what its output should be.
sub split_sql
{
	my ($sql) = @_;
	my @stmts;
	my $n = length $sql;
	my $start = 0;
	my $i = 0;
	my $add = sub {
		my ($end) = @_;
		my $text = substr($sql, $start, $end - $start);
		push @stmts, { sql => $text, end => $end } if $text =~ /\S/ && $text =~ /^\s*(?:--[^\n]*\n\s*)*[^\s-]/;
		$start = $end;
	};
	while ($i < $n)
	{
		my $c = substr($sql, $i, 1);
		my $rest = substr($sql, $i);
		if ($rest =~ /^--[^\n]*/ || $rest =~ m{^/\*.*?\*/}s || $rest =~ /^'(?:[^']|'')*'/
			|| $rest =~ /^"(?:[^"]|"")*"/)
		{
			$i += length $&;
		}
		elsif ($rest =~ /^(\$\w*\$)/)
		{
			my $tag = $1;
			my $e = index($sql, $tag, $i + length $tag);
			$i = $e < 0 ? $n : $e + length $tag;
		}
		elsif ($c eq '\\' && substr($sql, 0, $i) =~ /(^|\n)\s*$/)
		{
			# a psql meta-command is a line of its own
			my $e = index($sql, "\n", $i);
			$i = $e < 0 ? $n : $e;
			$add->($i);
		}
		elsif ($c eq ';')
		{
			$add->(++$i);
		}
		else
		{
			$i++;
		}
	}
	$add->($n) if substr($sql, $start) =~ /^\s*(?:--[^\n]*\n\s*)*[^\s-]/;

	# what follows each statement up to the next: its shown output
	for my $k (0 .. $#stmts)
	{
		my $s = $stmts[$k];
		my $next = $k < $#stmts ? $stmts[ $k + 1 ]{sql} : substr($sql, $s->{end});
		my ($lead) = $next =~ /^([ \t]*(?:--[^\n]*)?(?:\n[ \t]*--[^\n]*)*)/;
		my @tail = split /\n/, $lead;
		my $same = @tail ? shift @tail : '';
		if ($same =~ /^\s*--\s*→\s*(.*?)\s*$/)
		{
			$s->{value} = $1;
		}
		elsif (@tail && $same !~ /\S/ && $tail[0] =~ /^\s*--\s*→\s*(.*?)\s*$/)
		{
			$s->{value} = $1;
			shift @tail;
		}
		elsif ($same =~ /^\s*--\s*ERROR\b\s*([0-9A-Z]{5})?/)
		{
			$s->{error} = $1 // '';
		}
		my @table;
		for my $l (@tail)
		{
			last unless $l =~ /^\s*--(.*)$/;
			my $t = $1;
			last unless $t =~ /\|/ || (@table && $t =~ /^[\s+-]+$/);
			push @table, $t unless $t =~ /^[\s+-]+$/;
		}
		$s->{table} = [ map { [ map { s/^\s+|\s+$//gr } split /\|/, $_, -1 ] } @table ]
		  if @table;
	}
	return @stmts;
}

# does a shown value ("…" and "..." stand for anything) match the actual one?
sub shown_matches
{
	my ($shown, $actual) = @_;
	$actual =~ s/^\s+|\s+$//g;
	my $re = join('.*', map { quotemeta } split /…|\.\.\./, $shown, -1);
	return $actual =~ /^$re$/s;
}

# Run one SQL block in database $db; returns the problems found.
sub run_sql
{
	my ($node, $db, $code) = @_;
	my @stmts = split_sql($code);
	return ('no statement found') unless @stmts;
	my $script = "\\set ON_ERROR_STOP 1\n\\pset format unaligned\n\\pset fieldsep '$US'\n"
	  . "\\pset footer off\n\\pset pager off\n";
	for my $k (0 .. $#stmts)
	{
		my $s = $stmts[$k];
		$script .= "\\set ON_ERROR_STOP 0\n" if defined $s->{error};
		$script .= "\\echo '\@\@\@$k'\n$s->{sql}\n";
		$script .= "\\echo '\@\@\@state' :SQLSTATE\n\\set ON_ERROR_STOP 1\n" if defined $s->{error};
	}
	my ($out, $err) = ('', '');
	my $ok = IPC::Run::run(
		[ 'psql', '-X', '-q', '-d', $node->connstr($db), '-f', '-' ],
		'<', \$script, '>', \$out, '2>', \$err);
	return ("psql failed: $err") unless $ok;

	my (%section, $cur);
	for my $l (split /\n/, $out)
	{
		if ($l =~ /^\@\@\@(\d+)$/) { $cur = $1; $section{$cur} = []; next; }
		push @{ $section{$cur} }, $l if defined $cur;
	}
	my @problems;
	for my $k (0 .. $#stmts)
	{
		my $s = $stmts[$k];
		my @got = @{ $section{$k} // [] };
		my $what = "statement " . ($k + 1) . " (" . (($s->{sql} =~ /^\s*(?:--[^\n]*\n\s*)*(.{0,50})/)[0]) . ")";
		if (defined $s->{error})
		{
			my ($state) = map { /^\@\@\@state (\S*)/ ? $1 : () } @got;
			push @problems, "$what: expected an error" . ($s->{error} ? " $s->{error}" : '')
			  . ", got SQLSTATE " . ($state // '?')
			  if !defined $state || $state eq '00000'
			  || ($s->{error} && $state ne $s->{error});
			next;
		}
		my @rows = map { [ split /$US/, $_, -1 ] } @got;
		if (defined $s->{value})
		{
			my $v = @rows > 1 ? $rows[1][0] : undef;
			push @problems, "$what: shows $s->{value}, returned " . ($v // 'no row')
			  unless defined $v && shown_matches($s->{value}, $v);
		}
		if ($s->{table})
		{
			my @shown = @{ $s->{table} };
			my $head = join(' | ', @{ $shown[0] });
			my $ghead = @rows ? join(' | ', @{ $rows[0] }) : '(nothing)';
			if ($head ne $ghead)
			{
				push @problems, "$what: shows columns $head, returned $ghead";
				next;
			}
			for my $r (1 .. $#shown)
			{
				my $g = $rows[$r];
				my $shown_row = join(' | ', @{ $shown[$r] });
				if (!$g)
				{
					push @problems, "$what: shows row $shown_row, returned fewer rows";
					last;
				}
				for my $c (0 .. $#{ $shown[$r] })
				{
					next if shown_matches($shown[$r][$c], $g->[$c] // '');
					push @problems, "$what: shows row $shown_row, returned " . join(' | ', @$g);
					last;
				}
			}
		}
	}
	return @problems;
}

# Run one sh block in folder $dir; returns the problems found.
sub run_sh
{
	my ($node, $dir, $code) = @_;
	if (!$receiver_ready && $code =~ /:8080\b/)
	{
		# the workers reconnect to the page's new database
		wait_http('/readyz', 200);
		$receiver_ready = 1;
	}
	my %allowed = map { $_ => 1 } ($code =~ /^\s*#\s*([1-5]\d\d)\b/mg);
	my @contains = map { s/\s+$//r } ($code =~ /^\s*#\s*→\s*(.*)$/mg);
	$code =~ s{(?:localhost|127\.0\.0\.1):8080}{127.0.0.1:$http_port}g;
	my $pre = <<'SH';
set -e -o pipefail
psql() {
	local a=()
	while [ $# -gt 0 ]; do
		case "$1" in -h|-p) shift 2 ;; *) a+=("$1"); shift ;; esac
	done
	command psql -X -v ON_ERROR_STOP=1 "${a[@]}"
}
curl() { command curl -sS --max-time 30 -w '%{stderr}@@@http %{http_code}\n' "$@"; }
SH
	my ($out, $err) = ('', '');
	my $ok = IPC::Run::run(
		[ 'bash', '-c', "$pre\ncd '$dir'\n$code" ],
		'>', \$out, '2>', \$err,
		init => sub {
			$ENV{PGHOST} = $node->host;
			$ENV{PGPORT} = $node->port;
			$ENV{PGDATABASE} = 'cdviz';
			$ENV{TOKEN} = 'docs-token';
			$ENV{SECRET} = 'docs-secret';
		});
	my @problems;
	push @problems, "exit status " . ($? >> 8) . ": $err" unless $ok;
	for my $st ($err =~ /^\@\@\@http (\d+)$/mg)
	{
		push @problems, "curl answered $st (name it in a comment, \"# $st ...\", if that is the point)"
		  unless $st =~ /^2/ || $allowed{$st};
	}
	for my $c (@contains)
	{
		my $re = join('.*', map { quotemeta } split /…|\.\.\./, $c, -1);
		push @problems, "output does not contain $c:\n$out" unless $out =~ /$re/s;
	}
	return @problems;
}

# Check one page; returns (run, not run by reason, problems).
sub check_page
{
	my ($node, $page, $text, $dir) = @_;
	my ($blocks, $bad) = parse_blocks($text);
	my ($run, %skipped, @problems) = (0);
	push @problems, "$page:$_: example marker not just before a fence" for @$bad;
	for my $b (@$blocks)
	{
		my $where = "$page:$b->{line}";
		my $mark = $b->{mark} // '';
		my $db = 'cdviz';
		if ($mark =~ /^not run, (.+)$/)
		{
			$skipped{$1}++;
			next;
		}
		elsif ($mark eq 'in a new database')
		{
			$db = 'docs_new';
			$node->safe_psql('postgres', "DROP DATABASE IF EXISTS $db");
			$node->safe_psql('postgres', "CREATE DATABASE $db");
		}
		elsif ($mark ne '')
		{
			push @problems, "$where: unknown example marker \"$mark\"";
			next;
		}
		my @p;
		if ($b->{info} eq 'sql')
		{
			@p = run_sql($node, $db, $b->{code});
		}
		elsif ($b->{info} =~ /^(sh|bash|console)$/)
		{
			my $code = $b->{code};
			$code = join("\n", map { /^\$ (.*)/ ? $1 : () } split /\n/, $code) . "\n"
			  if $b->{info} eq 'console';
			@p = run_sh($node, $dir, $code);
		}
		else
		{
			@p = ("a ```$b->{info} block neither run nor marked <!-- example: not run, <reason> -->");
		}
		$run++;
		push @problems, map { "$where: $_" } @p;
	}
	return ($run, \%skipped, \@problems);
}

# The demo cluster: database cdviz_demo with the demo events, copied into
# database cdviz (the one the workers serve) for every page.
$http_port = PostgreSQL::Test::Cluster::get_free_port();
my $node = cdviz_node('docs', qq(
cdviz.database = 'cdviz'
cdviz.http_listen_addresses = '127.0.0.1'
cdviz.http_port = $http_port
));
$node->start;
my $me = $node->safe_psql('postgres', 'SELECT current_user');
$node->safe_psql('postgres', 'CREATE ROLE postgres SUPERUSER LOGIN') if $me ne 'postgres';
$node->safe_psql('postgres', 'CREATE DATABASE cdviz_demo');
$node->safe_psql('cdviz_demo', 'CREATE EXTENSION cdviz');
$node->command_ok(
	[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('cdviz_demo'),
	  '-f', "$root/scripts/demo_events.sql", '-o', '/dev/null' ],
	'demo events loaded');
my @roles = split /\n/, $node->safe_psql('postgres', 'SELECT rolname FROM pg_roles ORDER BY 1');

sub fresh_cdviz
{
	$node->safe_psql('postgres', 'DROP DATABASE IF EXISTS cdviz WITH (FORCE)');
	$node->safe_psql('postgres', 'DROP DATABASE IF EXISTS docs_new WITH (FORCE)');
	my %keep = map { $_ => 1 } @roles;
	for my $r (split /\n/, $node->safe_psql('postgres', 'SELECT rolname FROM pg_roles ORDER BY 1'))
	{
		$node->safe_psql('postgres', qq(DROP OWNED BY "$r"; DROP ROLE "$r")) unless $keep{$r};
	}
	$node->safe_psql('postgres', 'ALTER SYSTEM RESET ALL; SELECT pg_reload_conf()');
	$node->safe_psql('postgres', 'CREATE DATABASE cdviz TEMPLATE cdviz_demo');
	$receiver_ready = 0;
}

# The check itself fails on a broken page.
{
	fresh_cdviz();
	my $dir = PostgreSQL::Test::Utils::tempdir();
	my $broken = <<'MD';
```sql
SELECT cdviz.no_such_function();
```

```sql
SELECT 1 AS a, 2 AS b;
--  a | c
```

```sql
SELECT cdviz.normalize_outcome('pass');  -- → failure
```

```sql
SELECT 1;  -- ERROR 22023
```

```sh
curl -s -H 'Content-Type: application/json' --data '{}' http://localhost:8080/cdevents
```

```
not marked
```

<!-- example: not run, a reason -->
```
marked
```
MD
	my ($run, $skipped, $problems) = check_page($node, 'broken.md', $broken, $dir);
	is(scalar(@$problems), 6, 'a broken page fails the check, once per broken example')
	  or diag(join("\n", @$problems));
	is($skipped->{'a reason'}, 1, 'and its marked block is counted as not run');
}

my @pages = ('README.md', map { "docs/" . basename($_) } sort glob("$root/docs/*.md"));
my ($total_run, %total_skipped) = (0);
for my $page (@pages)
{
	fresh_cdviz();
	my $dir = PostgreSQL::Test::Utils::tempdir();
	(my $name = basename($page)) =~ s/\.md$//;
	copy($_, $dir) or die "copy $_: $!" for glob("$root/test/docs/$name/*");
	$node->command_ok(
		[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('cdviz'),
		  '-f', "$dir/setup.sql" ],
		"$page: test/docs/$name/setup.sql") if -f "$dir/setup.sql";
	my $t0 = time;
	my ($run, $skipped, $problems) = check_page($node, $page, slurp_file("$root/$page"), $dir);
	$total_run += $run;
	$total_skipped{$_} += $skipped->{$_} for keys %$skipped;
	my $nskip = 0;
	$nskip += $_ for values %$skipped;
	is(scalar(@$problems), 0,
		sprintf('%s: %d examples run, %d marked not run (%.1f s)', $page, $run, $nskip, time - $t0))
	  or diag(join("\n", @$problems));
}
note sprintf('%d examples run; not run: %s', $total_run,
	join('; ', map { "$total_skipped{$_} $_" } sort keys %total_skipped));
note sprintf('%.0f s in all', time - $started);

$node->stop;
done_testing();
