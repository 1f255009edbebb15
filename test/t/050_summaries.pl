# Deferred summaries: with cdviz.summaries = deferred (the default) the lake
# trigger keeps the environment history and state in the ingest transaction
# and queues the rest (lineage, artifact changes, change times, first
# deployments, summaries), which the cdviz summaries worker folds after
# commit.  What it folds must equal what the trigger folds in immediate mode
# and a rebuild from the whole lake; immediate mode, another database and a
# writer's own catch-up must keep read-after-write.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use CdvizNode;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = cdviz_node('summaries', qq(
cdviz.summaries_interval = 50
));
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION cdviz');
$node->safe_psql('postgres', 'CREATE DATABASE other');
$node->safe_psql('other', 'CREATE EXTENSION cdviz');
my $rows_fn = q{
	CREATE FUNCTION summary_rows(t text) RETURNS SETOF jsonb LANGUAGE plpgsql AS $$
	BEGIN
		RETURN QUERY EXECUTE format('SELECT to_jsonb(x) FROM cdviz.%I AS x', t);
	END $$;
};
$node->safe_psql('postgres', $rows_fn);
$node->safe_psql('other', $rows_fn);
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'cdviz summaries'"),
	'the cdviz summaries worker runs');

sub run_event
{
	my ($id, $run, $predicate, $ts) = @_;
	my $outcome = $predicate eq 'finished' ? ', "outcome": "success"' : '';
	return qq({"context": {"specversion": "0.5.1", "id": "$id", "source": "/t",
		"type": "dev.cdevents.pipelinerun.$predicate.0.3.0", "timestamp": "$ts"},
		"subject": {"id": "$run", "content": {"pipelineName": "p", "uri": "https://ci/$run"$outcome}}});
}

# 1. the fixture timeline, one statement per event, several out of order,
# into this database (deferred) and into "other" (no worker: immediate),
# both fresh, so that lake ids agree
my $fixture = "\\i $FindBin::Bin/../fixtures/timeline.sql";
$node->safe_psql('postgres', $fixture);
$node->safe_psql('other', $fixture);
ok($node->poll_query_until('postgres', 'SELECT cdviz.summaries_pending() = 0'),
	'the timeline is folded');
my @derived = qw(environment_history environment_state first_deployments artifact_changes
	change_times event_links);
my @summaries = qw(pipeline_run_summaries task_run_summaries build_summaries branch_summaries
	test_case_run_summaries test_suite_run_summaries artifact_summaries change_summaries
	incident_summaries event_counts_hourly test_case_outcomes_daily);
sub table_rows
{
	my ($db, @tables) = @_;
	my $list = join(',', map { "'$_'" } @tables);
	return $node->safe_psql($db, qq{
		SELECT string_agg(t || ' ' || r::text, E'\n' ORDER BY t, r::text)
		FROM unnest(ARRAY[$list]) AS t, LATERAL summary_rows(t) AS x(r)});
}
my $folded = table_rows('postgres', @derived, @summaries);
cmp_ok(length($folded), '>', 10000, 'the derived tables and summaries hold the timeline');
is($folded, table_rows('other', @derived, @summaries),
	'what the worker folded equals what the trigger folds at once, table by table');
$node->safe_psql('postgres', 'SELECT cdviz.rebuild_summaries()');
is(table_rows('postgres', @summaries), table_rows('other', @summaries),
	'and equals a rebuild of the summaries from the whole lake');

# 2. deferred: queued in the ingest transaction, folded after its commit
my $out = $node->safe_psql('postgres', q{
	BEGIN;
	SELECT cdviz.ingest('} . run_event('d-1', 'run-d', 'started', '2024-03-01T10:00:00Z') . q{');
	SELECT cdviz._summaries_deferred(), cdviz.summaries_pending(),
		   (SELECT count(*) FROM cdviz.pipeline_run_summaries WHERE pipeline_run_id = 'run-d');
	COMMIT;
});
like($out, qr/^\d+\nt\|1\|0$/,
	'deferred: the ingest transaction queues the event and does not fold it');
ok($node->poll_query_until('postgres',
	"SELECT cdviz.summaries_pending() = 0 AND EXISTS (SELECT FROM cdviz.pipeline_run_summaries WHERE pipeline_run_id = 'run-d')"),
	'the worker folds it after the commit');

# 3. immediate, per session: folded in the ingest transaction
$out = $node->safe_psql('postgres', q{
	SET cdviz.summaries = immediate;
	BEGIN;
	SELECT cdviz.ingest('} . run_event('i-1', 'run-i', 'started', '2024-03-02T10:00:00Z') . q{');
	SELECT cdviz._summaries_deferred(), cdviz.summaries_pending(),
		   (SELECT count(*) FROM cdviz.pipeline_run_summaries WHERE pipeline_run_id = 'run-i');
	COMMIT;
});
like($out, qr/^\d+\nf\|0\|1$/, 'immediate: folded in the ingest transaction');

# 4. a database no worker folds: immediate whatever the setting
$out = $node->safe_psql('other', q{
	SELECT cdviz.ingest('} . run_event('o-1', 'run-o', 'started', '2024-03-02T10:00:00Z') . q{');
	SELECT cdviz._summaries_deferred(), cdviz.summaries_pending(),
		   (SELECT count(*) FROM cdviz.pipeline_run_summaries WHERE pipeline_run_id = 'run-o');
});
like($out, qr/^\d+\nf\|0\|1$/, 'outside cdviz.database summaries are immediate');

# 5. a writer catches up in its own transaction (read-after-write)
$node->safe_psql('postgres', 'CREATE ROLE w LOGIN IN ROLE cdviz_writer');
$out = $node->safe_psql('postgres', q{
	SET ROLE w;
	BEGIN;
	SELECT cdviz.ingest('} . run_event('w-1', 'run-w', 'started', '2024-03-03T10:00:00Z') . q{');
	SELECT cdviz.ingest('} . run_event('w-2', 'run-w', 'finished', '2024-03-03T10:05:00Z') . q{');
	SELECT cdviz.fold_queued_summaries();
	SELECT cdviz.fold_queued_summaries();
	RESET ROLE;
	SELECT outcome, event_count FROM cdviz.pipeline_run_summaries WHERE pipeline_run_id = 'run-w';
	COMMIT;
});
like($out, qr/^\d+\n\d+\n2\n0\nsuccess\|2$/,
	'a writer folds its own queued events, once, and reads them');

# 6. the queue survives the worker: events queued while it is gone are
# folded when the postmaster starts it again
my $pid = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'cdviz summaries'");
$node->safe_psql('postgres', q{
	BEGIN;
	SELECT cdviz.ingest('} . run_event('k-1', 'run-k', 'started', '2024-03-04T10:00:00Z') . qq{');
	SELECT pg_terminate_backend($pid);
	COMMIT;
});
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'cdviz summaries' AND pid <> $pid"),
	'the worker is started again after it was terminated');
ok($node->poll_query_until('postgres',
	"SELECT cdviz.summaries_pending() = 0 AND EXISTS (SELECT FROM cdviz.pipeline_run_summaries WHERE pipeline_run_id = 'run-k')"),
	'and folds what was queued meanwhile');

# 7. the worker waits for the extension and survives DROP/CREATE EXTENSION
$node->safe_psql('postgres', 'DROP EXTENSION cdviz CASCADE');
$node->safe_psql('postgres', 'CREATE EXTENSION cdviz');
$node->safe_psql('postgres',
	"SELECT cdviz.ingest('" . run_event('x-1', 'run-x', 'started', '2024-03-05T10:00:00Z') . "')");
ok($node->poll_query_until('postgres',
	"SELECT cdviz.summaries_pending() = 0 AND EXISTS (SELECT FROM cdviz.pipeline_run_summaries WHERE pipeline_run_id = 'run-x')"),
	'after DROP and CREATE EXTENSION the worker folds again');

# $n insert statements of one pipeline run started each (context ids
# "$prefix-<i>", runs "run-$prefix-<i>"): $n queued statements
sub queue_statements
{
	my ($n, $prefix, $ts) = @_;
	$node->safe_psql('postgres', qq{
	DO \$\$
	BEGIN
		FOR i IN 1..$n LOOP
			PERFORM cdviz.ingest(jsonb_build_object(
				'context', jsonb_build_object('specversion', '0.5.1', 'id', '$prefix-' || i, 'source', '/t',
					'type', 'dev.cdevents.pipelinerun.started.0.3.0', 'timestamp', '$ts'),
				'subject', jsonb_build_object('id', 'run-$prefix-' || i,
					'content', jsonb_build_object('pipelineName', 'p', 'uri', 'https://ci/$prefix'))));
		END LOOP;
	END \$\$;
	});
}

# 8. pace: one fold per cdviz.summaries_interval, so that the http worker's
# many small commits become one fold (it used to fold again at once after
# any fold that found something); a backlog is folded without pause
$node->append_conf('postgresql.conf', 'cdviz.summaries_interval = 60s');
$node->reload;
sleep 1;	# the reload woke the worker: it folded nothing and waits 60 s
# a session holds a lock the next fold waits for, so that an event can be
# queued while that fold runs
my $locker = $node->background_psql('postgres');
$locker->query_safe('BEGIN');
$locker->query_safe('LOCK TABLE cdviz.pipeline_run_summaries IN SHARE ROW EXCLUSIVE MODE');
$node->safe_psql('postgres',
	"SELECT cdviz.ingest('" . run_event('p-1', 'run-p1', 'started', '2024-03-06T10:00:00Z') . "')");
$node->reload;		# wakes the worker: its fold of p-1 waits for the lock
ok($node->poll_query_until('postgres', q{SELECT count(*) > 0 FROM pg_locks l
	JOIN pg_stat_activity a USING (pid) WHERE a.backend_type = 'cdviz summaries' AND NOT l.granted}),
	'a fold waits for the locking session');
$node->safe_psql('postgres',
	"SELECT cdviz.ingest('" . run_event('p-2', 'run-p2', 'started', '2024-03-06T10:00:01Z') . "')");
$locker->query_safe('COMMIT');
$locker->quit;
ok($node->poll_query_until('postgres',
	"SELECT EXISTS (SELECT FROM cdviz.pipeline_run_summaries WHERE pipeline_run_id = 'run-p1')"),
	'the fold ends when the lock is released');
sleep 2;
is($node->safe_psql('postgres', 'SELECT cdviz.summaries_pending()'), '1',
	'an event queued during a fold waits for the next interval');
queue_statements(2500, 'b', '2024-03-07T10:00:00Z');
is($node->safe_psql('postgres', 'SELECT count(*) FROM cdviz.summary_queue'), '2501',
	'2,500 more insert statements queued, more than one fold takes');
my $t0 = time;
$node->reload;		# wakes the worker
ok($node->poll_query_until('postgres', 'SELECT cdviz.summaries_pending() = 0'),
	'the worker folds the backlog');
cmp_ok(time - $t0, '<', 45,
	'in folds that follow each other at once, not one per 60 s interval');
is($node->safe_psql('postgres',
	"SELECT count(*) FROM cdviz.pipeline_run_summaries WHERE pipeline_run_id LIKE 'run-b-%' OR pipeline_run_id = 'run-p2'"),
	'2501', 'every queued event is in the summaries');

# 9. a writer folding the queue itself (read-after-write) holds what it
# took until it commits: the worker must not take those rows for a backlog
# it cannot fold, and spin on them meanwhile (the interval is still 60 s)
queue_statements(1000, 'f', '2024-03-08T10:00:00Z');
my $folder = $node->background_psql('postgres');
$folder->query_safe('BEGIN');
is($folder->query_safe('SELECT cdviz.fold_queued_summaries()'), '1000',
	'a writer folds 1,000 queued statements in its transaction');
my $commits = "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = 'postgres'";
my $before = $node->safe_psql('postgres', $commits);
$node->reload;		# wakes the worker
sleep 3;
cmp_ok($node->safe_psql('postgres', $commits) - $before, '<', 100,
	'meanwhile the worker waits instead of folding nothing again and again');
$folder->query_safe('COMMIT');
$folder->quit;
is($node->safe_psql('postgres', 'SELECT cdviz.summaries_pending()'), '0',
	'and the writer\'s fold is committed');

# 10. folds in chunks: every path hands cdviz._fold_events() at most 10,000
# rows at a time.  25,200 events of 8,400 runs in one insert statement,
# all queued events first, then the started, then the finished ones, so
# that every run's events lie in different chunks; in "other" (immediate:
# the trigger's chunks), then refolded from one queued statement and from
# 5,040 small ones (the queued fold's slices and groups), then by a rebuild
# (the lake range's chunks): each must give every run whole.
my $chunked = q{SELECT count(*) || ' ' || sum(event_count) || ' '
	|| count(*) FILTER (WHERE queued_at < started_at AND started_at < finished_at
						AND last_predicate = 'finished' AND outcome = 'success')
	FROM cdviz.pipeline_run_summaries WHERE pipeline_run_id LIKE 'run-c-%'};
$node->safe_psql('other', q{
	SELECT cdviz.ingest_batch(jsonb_agg(jsonb_build_object(
		'context', jsonb_build_object('specversion', '0.5.1', 'id', 'c-' || p || '-' || i, 'source', '/t',
			'type', 'dev.cdevents.pipelinerun.' || p || '.0.3.0',
			'timestamp', to_char(timestamptz '2024-04-01 00:00Z' + k * interval '1 hour' + i * interval '1 second',
								 'YYYY-MM-DD"T"HH24:MI:SS"Z"')),
		'subject', jsonb_build_object('id', 'run-c-' || i, 'content',
			jsonb_build_object('pipelineName', 'p', 'uri', 'https://ci/run-c-' || i)
			|| CASE WHEN p = 'finished' THEN '{"outcome": "success"}' ELSE '{}' END::jsonb))
		ORDER BY k, i))
	FROM generate_series(1, 8400) AS i,
		 unnest(ARRAY['queued', 'started', 'finished']) WITH ORDINALITY AS t(p, k)});
is($node->safe_psql('other', $chunked), '8400 25200 8400',
	'one statement of 25,200 events is folded whole by the trigger');
my $refold = q{
	TRUNCATE cdviz.pipeline_run_summaries;
	INSERT INTO cdviz.summary_queue (events, ids, stamps)
	SELECT count(*), array_agg(l.id ORDER BY l.id), array_agg(l."timestamp" ORDER BY l.id)
	FROM (SELECT l.id, l."timestamp", row_number() OVER (ORDER BY l.id) AS r
		  FROM cdviz.cdevents_lake AS l WHERE l.subject_id LIKE 'run-c-%') AS l
	GROUP BY (l.r - 1) / %d;
	SELECT cdviz.fold_queued_summaries(10000);
};
is($node->safe_psql('other', sprintf($refold, 25200) . $chunked), "25200\n8400 25200 8400",
	'and by the fold of queued events, from one queued statement');
is($node->safe_psql('other', sprintf($refold, 5) . $chunked), "25200\n8400 25200 8400",
	'and from 5,040 queued statements');
$node->safe_psql('other', 'SELECT cdviz.rebuild_summaries()');
is($node->safe_psql('other', $chunked), '8400 25200 8400', 'and by a rebuild');

$node->stop;
done_testing();
