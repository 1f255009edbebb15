# Sinks after pg_dump + pg_restore into another cluster.  The progress of
# a sink is made of transaction ids (snapshots, the outbox's xids), which
# mean nothing in another cluster.  Cluster A has two sinks: "caught",
# which has delivered everything, and "lagging", stopped in the middle of
# a statement of 120 events (one or two chunks of 50 delivered, then its
# receiver goes down and it is paused) with more statements waiting
# behind.  A's dump is restored into a cluster whose transaction counter
# is far BEHIND A's (new events there would look delivered by A's
# snapshots) and into one far AHEAD of it; in each, events are stored
# before the dispatcher starts and after.  Every event must reach each
# receiver exactly once: the pending ones, the new ones, and nothing
# twice.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use CdvizNode;
use DispatchTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $tmp = PostgreSQL::Test::Utils::tempdir();

# Consume transaction ids: each subtransaction that writes takes one.
sub burn_xids
{
	my ($node, $db, $n) = @_;
	$node->safe_psql($db, qq{
CREATE TEMP TABLE burn (i int);
DO \$\$
BEGIN
	FOR i IN 1..$n LOOP
		BEGIN
			INSERT INTO burn VALUES (i);
		EXCEPTION WHEN others THEN NULL;
		END;
	END LOOP;
END
\$\$});
}

sub xid { return $_[0]->safe_psql($_[1], 'SELECT pg_current_xact_id()::text::bigint'); }

# How often each id arrived; the ids that did not arrive exactly once.
sub not_once
{
	my ($want, @got) = @_;
	my %n;
	$n{$_}++ for @got;
	my @bad;
	for my $id (@$want)
	{
		push @bad, "$id x" . ($n{$id} // 0) if ($n{$id} // 0) != 1;
		delete $n{$id};
	}
	push @bad, map { "$_ (unexpected) x$n{$_}" } sort keys %n;
	return @bad;
}

sub ids { my ($p, $from, $to) = @_; return map { "$p$_" } $from .. $to; }

# ---- cluster A: a sink caught up, a sink stopped inside a statement -------
my $caught = start_receiver($tmp);
my $lagging = start_receiver($tmp);
my $a = dispatch_node('restore_a');
burn_xids($a, 'postgres', 6000);
$a->safe_psql('postgres', qq{
SELECT cdviz.create_sink('caught', 'http', 'http://127.0.0.1:$caught->{port}/in',
	'{"mode": "batch", "batch_size": 50, "initial_backoff": 0.05, "max_backoff": 0.2}');
SELECT cdviz.create_sink('lagging', 'http', 'http://127.0.0.1:$lagging->{port}/in',
	'{"mode": "batch", "batch_size": 50, "initial_backoff": 0.05, "max_backoff": 0.2}');
});
ingest_events($a, 'e-', 1, 100, 25);
ok(wait_for_sink($a, 'lagging', 100), 'A: both sinks delivered the first events');
# one statement of 120 events, delivered in chunks of 50 (one request
# each) by a slow receiver that goes down once the first chunk is in: the
# lagging sink stops at position 50 or 100 of the statement
receiver_control($lagging, delay_ms => 1500);
ingest_events($a, 'p-', 1, 120, 120);
ok(wait_until('p-50 at the lagging receiver', 60, sub { grep { $_ eq 'p-50' } receiver_ids($lagging) }),
	'A: the lagging sink delivered the first chunk of the statement');
receiver_control($lagging, down => 1);
ingest_events($a, 'q-', 1, 30, 10);
ok(wait_until('the lagging sink failing', 60, sub {
	$a->safe_psql('postgres', q{SELECT last_error IS NOT NULL FROM cdviz.sink_status
		WHERE name = 'lagging'}) eq 't' }),
	'A: the lagging receiver is down');
$a->safe_psql('postgres', q{SELECT cdviz.pause_sink('lagging')});
ok(wait_for_sink($a, 'caught', 250), 'A: the caught sink delivered everything');
my $pos = $a->safe_psql('postgres', q{SELECT p.pos_ord || ' ' || s.pending FROM cdviz.sink_progress p
	JOIN cdviz.sinks sn ON sn.id = p.sink_id JOIN cdviz.sink_status s ON s.name = sn.name
	WHERE sn.name = 'lagging'});
like($pos, qr/^(50 100|100 50)$/, "A: the lagging sink stopped inside the statement (position, pending: $pos)");
my @a_caught = receiver_ids($caught);
my @a_lagging = receiver_ids($lagging);

my $dump = "$tmp/a.dump";
command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $a->connstr('postgres') ], 'pg_dump -Fc of A');
my $a_xid = xid($a, 'postgres');
$a->stop;

my @all = (ids('e-', 1, 100), ids('p-', 1, 120), ids('q-', 1, 30));

# Restore A's dump into a new cluster ($burn transaction ids consumed
# first), store events there before the dispatcher runs, start it, store
# more, and check both receivers.
sub restore_case
{
	my ($name, $burn, $rc, $rl) = @_;
	# the workers wait in an empty database until the restored one has
	# events their dispatcher has never seen
	my $n = cdviz_node("restore_$name", q{
cdviz.dispatch_interval = 50
cdviz.dispatch_chunk = 50
cdviz.database = 'idle'
});
	$n->start;
	$n->safe_psql('postgres', 'CREATE DATABASE idle');
	burn_xids($n, 'postgres', $burn) if $burn;
	command_ok([ 'pg_restore', '--single-transaction', '-d', $n->connstr('postgres'), $dump ],
		"$name: pg_restore --single-transaction");
	my $x = xid($n, 'postgres');
	note("$name: A's transaction counter $a_xid, this cluster's $x");
	# the receivers of this case
	$n->safe_psql('postgres', qq{
SELECT cdviz.alter_sink('caught', 'http://127.0.0.1:$rc->{port}/in');
SELECT cdviz.alter_sink('lagging', 'http://127.0.0.1:$rl->{port}/in');
});
	ingest_events($n, "$name-before-", 1, 20, 10);
	$n->append_conf('postgresql.conf', "cdviz.database = 'postgres'\n");
	$n->restart;
	ingest_events($n, "$name-after-", 1, 20, 10);
	my @new = (ids("$name-before-", 1, 20), ids("$name-after-", 1, 20));
	ok(wait_until("$name: caught", 120, sub { scalar(receiver_ids($rc)) >= 40 }),
		"$name: the caught sink delivers the new events");
	# the lagging sink resumes where it was
	$n->safe_psql('postgres', q{SELECT cdviz.resume_sink('lagging')});
	ok(wait_until("$name: lagging", 120, sub {
		scalar(receiver_ids($rl)) >= 250 + 40 - scalar(@a_lagging) }),
		"$name: the lagging sink delivers what it owed and the new events");
	# whatever would come twice has had time to come
	ok(wait_for_sink($n, 'caught', 0, 60) & wait_for_sink($n, 'lagging', 0, 60),
		"$name: nothing pending");
	sleep 1;
	is(join(', ', not_once([ @all, @new ], @a_caught, receiver_ids($rc))), '',
		"$name: the caught sink delivered every event exactly once");
	is(join(', ', not_once([ @all, @new ], @a_lagging, receiver_ids($rl))), '',
		"$name: the lagging sink delivered every event exactly once");
	is($n->safe_psql('postgres', q{SELECT count(*) FROM cdviz.lake_batches b
		WHERE b.xid >= pg_snapshot_xmin(pg_current_snapshot())}), '0',
		"$name: the outbox holds no transaction id from this cluster's future");
	$n->stop;
	return $x;
}

my @receivers = (start_receiver($tmp), start_receiver($tmp), start_receiver($tmp), start_receiver($tmp));
my $behind = restore_case('behind', 0, @receivers[ 0, 1 ]);
ok($behind < $a_xid - 5000, "behind: the cluster's transaction ids were far behind A's ($behind < $a_xid)");
my $ahead = restore_case('ahead', 15000, @receivers[ 2, 3 ]);
ok($ahead > $a_xid + 5000, "ahead: the cluster's transaction ids were far ahead of A's ($ahead > $a_xid)");

$_->{h}->kill_kill for $caught, $lagging, @receivers;
done_testing();
