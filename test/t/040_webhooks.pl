# Tool webhooks end to end through the real HTTP receiver: every fixture of
# test/fixtures/webhooks posted with the headers its tool sends and real
# credentials (GitHub HMAC-SHA256 computed here, GitLab token, bearer,
# basic); key fields of the stored events; redelivery; wrong and missing
# credentials (401, nothing stored); a raising transformer kept and
# recovered by retransform; a user transformer; deployed vs upgraded.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use Digest::SHA qw(hmac_sha256_hex);
use File::Find;
use IPC::Run;
use MIME::Base64;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use HttpTest;

my $fixtures = "$FindBin::Bin/../fixtures/webhooks";
my $secret = "It's a Secret to Everybody";
my $node = start_http_node('webhooks');
$node->safe_psql('postgres', 'CREATE EXTENSION cdviz');
wait_http('/readyz', 200);
$node->safe_psql('postgres', qq{
	SELECT cdviz.create_webhook('github', 'cdviz.transform_github(jsonb,jsonb)', 'github', \$s\$$secret\$s\$);
	SELECT cdviz.create_webhook('gitlab', 'cdviz.transform_gitlab(jsonb,jsonb)', 'gitlab', 'gl-token');
	SELECT cdviz.create_webhook('argocd', 'cdviz.transform_argocd(jsonb,jsonb)', 'bearer', 'argo-token');
	SELECT cdviz.create_webhook('tekton', 'cdviz.transform_tekton(jsonb,jsonb)', 'none');
});

sub q1 { return $node->safe_psql('postgres', shift); }
sub lake_count { return q1('SELECT count(*) FROM cdviz.cdevents_lake'); }

my %gitlab_event = (
	'pipeline' => 'Pipeline Hook', 'job' => 'Job Hook', 'build' => 'Job Hook',
	'merge_request' => 'Merge Request Hook', 'push' => 'Push Hook',
	'tag_push' => 'Tag Push Hook', 'release' => 'Release Hook',
	'deployment' => 'Deployment Hook');

# post(tool, relative fixture path, %options): (code, body)
my $n = 0;
sub post
{
	my ($tool, $rel, %o) = @_;
	my $file = "$fixtures/$tool/$rel";
	my $body = slurp_file($file);
	my @h = ('Content-Type: application/json', 'User-Agent: cdviz-test');
	$n++;
	if ($tool eq 'github')
	{
		my ($event) = split m{/}, $rel;
		push @h, "X-GitHub-Event: $event", "X-GitHub-Hook-ID: 109948940",
		  'X-GitHub-Delivery: ' . ($o{delivery} // "guid-$rel");
		push @h, 'X-Hub-Signature-256: sha256=' . hmac_sha256_hex($body, $o{secret} // $secret)
		  unless $o{no_signature};
	}
	elsif ($tool eq 'gitlab')
	{
		my ($kind) = $rel =~ /^([a-z_]+)/;
		push @h, "X-Gitlab-Event: $gitlab_event{$kind}", "X-Gitlab-Event-UUID: uuid-$rel",
		  'X-Gitlab-Token: ' . ($o{token} // 'gl-token');
	}
	elsif ($tool eq 'argocd')
	{
		push @h, 'Authorization: Bearer ' . ($o{token} // 'argo-token');
	}
	elsif ($tool eq 'tekton')
	{
		(my $hfile = $file) =~ s/\.json$/.headers.json/;
		my $hjson = slurp_file($hfile);
		push @h, "$1: $2" while $hjson =~ /"(ce-[a-z]+)":\s*"([^"]*)"/g;
	}
	my ($code, $answer) = http_request(path => "/webhooks/$tool", body => $body, headers => \@h);
	return ($code, $answer);
}

# ---- every fixture, with the right credentials -----------------------------
my @files;
find(sub { push @files, $File::Find::name if /\.json$/ && !/\.headers\.json$/ }, $fixtures);
@files = sort @files;
my ($code, $answer);
my $posted = 0;
for my $path (@files)
{
	my ($tool, $rel) = $path =~ m{webhooks/([a-z]+)/(.*)$};
	($code, $answer) = post($tool, $rel);
	my $expect = $rel =~ m{^ping/} ? 200 : qr/^20[12]$/;
	like($code, ref $expect ? $expect : qr/^$expect$/, "$tool/$rel: $code") or diag($answer);
	$posted++;
}
cmp_ok($posted, '>=', 70, "posted every fixture ($posted)");
is(q1("SELECT count(*) FROM cdviz.webhook_deliveries WHERE status = 'failed'"), 0, 'no delivery failed');
is(q1('SELECT count(*) FROM cdviz.cdevents_lake l CROSS JOIN LATERAL cdviz.validate(l.payload) v'), 0,
	'every stored event passes strict validation');
is(q1("SELECT count(*) FROM cdviz.cdevents_lake WHERE spec_version <> '0.5.1'"), 0, 'all CDEvents 0.5.1');

# key fields, per mapping: type, subject id, outcome, environment, artifact, time
my $fields = q{SELECT concat_ws(' | ', l.type, l.subject_id, l.payload #>> '{subject,content,outcome}',
	l.payload #>> '{subject,content,environment,id}', l.payload #>> '{subject,content,artifactId}',
	to_char(l."timestamp" AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))
	FROM cdviz.webhook_deliveries d JOIN cdviz.cdevents_lake l ON l.id = d.event_ids[1]
	WHERE d.route = '%s' AND d.delivery_key = '%s'};
sub fields_of { my ($route, $key) = @_; return q1(sprintf($fields, $route, $key)); }

is(fields_of('github', 'github:109948940:guid-workflow_run/requested.json'),
	'dev.cdevents.pipelinerun.queued.0.3.0 | https://github.com/octo-org/octo-repo/actions/runs/289782451/attempts/1 | 2020-10-05T16:33:24Z',
	'GitHub workflow_run requested -> pipelinerun.queued');
is(fields_of('github', 'github:109948940:guid-workflow_run/completed.failure.json'),
	'dev.cdevents.pipelinerun.finished.0.3.0 | https://github.com/octo-org/octo-repo/actions/runs/289782452/attempts/1 | failure | 2020-10-05T16:33:49Z',
	'GitHub workflow_run completed failure -> pipelinerun.finished failure');
is(fields_of('github', 'github:109948940:guid-workflow_job/completed.success.with-organization.json'),
	'dev.cdevents.taskrun.finished.0.3.0 | https://github.com/Codertocat/Hello-World/actions/runs/2202229078/job/289782451 | success | 2021-08-05T10:38:16Z',
	'GitHub workflow_job completed -> taskrun.finished');
is(fields_of('github', 'github:109948940:guid-deployment_status/payload.json'),
	'dev.cdevents.service.deployed.0.3.0 | Codertocat/Hello-World | production | pkg:github/codertocat/hello-world@f95f852bd8fca8fcc58a9a2d6c842781e32a215e | 2019-05-15T15:20:55Z',
	'GitHub deployment_status success -> service.deployed with environment and artifact');
is(fields_of('github', 'github:109948940:guid-release/published.json'),
	'dev.cdevents.artifact.published.0.3.0 | pkg:github/codertocat/hello-world@0.0.1 | 2019-05-15T15:20:53Z',
	'GitHub release published -> artifact.published');
is(fields_of('github', 'github:109948940:guid-registry_package/published.docker.json'),
	'dev.cdevents.artifact.published.0.3.0 | pkg:oci/hello-world@sha256%3A6c62fb45fe66bfb1ea9a66abc38f6a0cc974292b?repository_url=ghcr.io/codertocat/hello-world | 2019-05-09T23:28:29Z',
	'GitHub registry_package -> artifact.published pkg:oci');
is(fields_of('github', 'github:109948940:guid-pull_request/closed.merged.json'),
	'dev.cdevents.change.merged.0.3.0 | https://github.com/Codertocat/Hello-World/pull/2 | 2019-05-15T15:21:18Z',
	'GitHub pull_request closed merged -> change.merged');
is(fields_of('github', 'github:109948940:guid-check_run/completed.json'),
	'dev.cdevents.testsuiterun.finished.0.3.0 | https://github.com/Codertocat/Hello-World/runs/128620228 | success | github/checks | 2019-05-15T15:21:12Z',
	'GitHub check_run completed -> testsuiterun.finished');
is(fields_of('github', 'github:109948940:guid-issues/closed.json'),
	'dev.cdevents.ticket.closed.0.2.0 | https://github.com/Codertocat/Hello-World/issues/1 | 2019-05-15T15:24:41Z',
	'GitHub issues closed -> ticket.closed');
is(q1("SELECT status FROM cdviz.webhook_deliveries WHERE delivery_key = 'github:109948940:guid-ping/payload.json'"),
	'ping', 'GitHub ping kept as a delivery only');
is(fields_of('gitlab', 'gitlab:uuid-pipeline.failed.json'),
	'dev.cdevents.pipelinerun.finished.0.3.0 | http://192.168.64.1:3005/gitlab-org/gitlab-test/-/pipelines/31 | failure | 2016-08-12T15:26:29Z',
	'GitLab Pipeline Hook failed -> pipelinerun.finished failure');
is(fields_of('gitlab', 'gitlab:uuid-deployment.json'),
	'dev.cdevents.service.deployed.0.3.0 | root/test-deployment-webhooks | staging | pkg:gitlab/root/test-deployment-webhooks@279484c09fbe69ededfced8c1bb6e6d24616b468 | 2021-04-28T19:50:00Z',
	'GitLab Deployment Hook -> service.deployed');
is(fields_of('gitlab', 'gitlab:uuid-deployment.failed.json'),
	'dev.cdevents.incident.detected.0.3.0 | http://10.126.0.2:3000/root/test-deployment-webhooks/-/environments#deployment-15 | staging | pkg:gitlab/root/test-deployment-webhooks@279484c09fbe69ededfced8c1bb6e6d24616b468 | 2021-04-28T20:05:00Z',
	'GitLab Deployment Hook failed -> incident.detected');
is(fields_of('tekton', 'ce:/apis///namespaces/ci//build-and-deploy-run-x7k2p-deploy:2a3b4c5d-0003'),
	'dev.cdevents.taskrun.finished.0.3.0 | ci/build-and-deploy-run-x7k2p-deploy | cancel | 2024-03-08T14:26:40Z',
	'Tekton taskrun failed (cancelled) -> taskrun.finished cancel');
is(q1(q{SELECT string_agg(l.type || ' ' || l.subject_id || ' ' || (l.payload #>> '{subject,content,artifactId}'), ', ' ORDER BY l.subject_id)
	FROM cdviz.cdevents_lake l WHERE l.context_source = '/webhooks/argocd/argocd/aaaaaaaaa'
	AND l.subject = 'service' AND l.payload #>> '{subject,content,artifactId}' LIKE 'pkg:oci/%'}),
	'dev.cdevents.service.deployed.0.3.0 aaaaaaaaa/demo-api pkg:oci/demo-api?repository_url=ghcr.io/cdviz-dev/demo-api&tag=1.2.0, '
	  . 'dev.cdevents.service.deployed.0.3.0 aaaaaaaaa/demo-web pkg:oci/demo-web?repository_url=ghcr.io/cdviz-dev/demo-web&tag=3.4.1',
	'Argo CD: one service.deployed per image, pkg:oci');

# ---- redelivery: nothing new -------------------------------------------------
my $before = lake_count();
my $deliveries = q1('SELECT count(*) FROM cdviz.webhook_deliveries');
($code, $answer) = post('github', 'workflow_run/completed.json');
is($code, 201, 'redelivery answered 201');
like($answer, qr/"status":"duplicate".*"stored":0,"duplicates":1/, 'redelivery reported as duplicate');
($code) = post('gitlab', 'pipeline.json');
is(lake_count(), $before, 'redeliveries store no event');
is(q1('SELECT count(*) FROM cdviz.webhook_deliveries'), $deliveries, 'nor a delivery row');

# ---- wrong or missing credentials: 401, nothing stored -------------------------
$before = lake_count();
$deliveries = q1('SELECT count(*) FROM cdviz.webhook_deliveries');
my $f401 = 'workflow_run/requested.json';
($code, $answer) = post('github', $f401, delivery => 'bad-1', secret => 'wrong');
is($code, 401, 'GitHub wrong signature: 401');
like($answer, qr/does not match/, 'says the signature does not match');
($code, $answer) = post('github', $f401, delivery => 'bad-2', no_signature => 1);
is($code, 401, 'GitHub missing signature: 401');
like($answer, qr/X-Hub-Signature-256/, 'says which header is missing');
{
	# signature of other bytes than those sent
	my $body = slurp_file("$fixtures/github/$f401");
	my ($c) = http_request(path => '/webhooks/github', body => $body . ' ',
		headers => ['Content-Type: application/json', 'X-GitHub-Event: workflow_run', 'X-GitHub-Delivery: bad-3',
			'X-Hub-Signature-256: sha256=' . hmac_sha256_hex($body, $secret)]);
	is($c, 401, 'GitHub signature of a different body: 401');
}
($code) = post('gitlab', 'pipeline.running.json', token => 'nope');
is($code, 401, 'GitLab wrong token: 401');
my ($c2, undef, $h2) = http_request(path => '/webhooks/argocd', body => '{}', headers => ['Content-Type: application/json']);
is($c2, 401, 'bearer missing: 401');
like($h2, qr/^WWW-Authenticate: Bearer/mi, 'with WWW-Authenticate');
is(lake_count(), $before, 'refused deliveries stored no event');
is(q1('SELECT count(*) FROM cdviz.webhook_deliveries'), $deliveries, 'and no delivery');
my (undef, $metrics_text) = http_request(method => 'GET', path => '/metrics');
my ($metrics) = $metrics_text =~ /cdviz_http_requests_total\{code="401"\} (\d+)/;
is($metrics, 5, 'every refused delivery counted');

# ---- other refusals ------------------------------------------------------------
($code) = http_request(path => '/webhooks/nope', body => '{}', headers => ['Content-Type: application/json']);
is($code, 404, 'unknown route: 404');
($code, undef, my $h405) = http_request(method => 'GET', path => '/webhooks/github');
is($code, 405, 'GET: 405');
like($h405, qr/^Allow: POST/mi, 'Allow: POST');
($code) = http_request(path => '/webhooks/tekton', body => 'payload=%7B%7D',
	headers => ['Content-Type: application/x-www-form-urlencoded']);
is($code, 400, 'a form-encoded body: 400');

# ---- basic auth and a user-written transformer (Jenkins notification plugin) ---
$node->safe_psql('postgres', qq{\\set schema public
\\i $fixtures/transform_jenkins.sql
SELECT cdviz.create_webhook('jenkins', 'public.transform_jenkins(jsonb,jsonb)', 'basic', 'jenkins:pa55');
});
my $basic = 'Authorization: Basic ' . encode_base64('jenkins:pa55', '');
sub jenkins
{
	my ($phase, $ts, %p) = @_;
	my $params = join(',', map { qq("$_":"$p{$_}") } sort keys %p);
	return http_request(path => '/webhooks/jenkins', headers => ['Content-Type: application/json', $basic],
		body => qq({"name":"api","url":"job/api/","build":{"full_url":"https://jenkins.example.com/job/api/42/",)
		  . qq("number":42,"phase":"$phase","status":"SUCCESS","timestamp":"$ts","parameters":{$params}}}));
}
($code) = jenkins('STARTED', '2024-05-01T09:00:00Z');
is($code, 201, 'Jenkins STARTED through the user transformer: 201');
is(q1(q{SELECT type FROM cdviz.cdevents_lake WHERE subject_id = 'https://jenkins.example.com/job/api/42/'}),
	'dev.cdevents.pipelinerun.started.0.3.0', 'stored as pipelinerun.started');
($code) = http_request(path => '/webhooks/jenkins', body => '{}',
	headers => ['Content-Type: application/json', 'Authorization: Basic ' . encode_base64('jenkins:nope', '')]);
is($code, 401, 'wrong basic password: 401');

# ---- deployed / upgraded follow the inventory, in and out of order -------------
sub deploy_predicate
{
	my ($ts, $artifact) = @_;
	my ($c, $a) = jenkins('FINALIZED', $ts, ENVIRONMENT => 'prod', ARTIFACT => $artifact);
	my ($id) = $a =~ /"events":\[(\d+)\]/;
	return $c == 201 && $id ? q1("SELECT predicate FROM cdviz.cdevents_lake WHERE id = $id") : "HTTP $c $a";
}
is(deploy_predicate('2024-05-02T10:00:00Z', 'pkg:oci/api@sha256%3Ab2'), 'deployed', 'first seen (the later one) -> deployed');
is(deploy_predicate('2024-05-01T10:00:00Z', 'pkg:oci/api@sha256%3Ab1'), 'deployed', 'an earlier one delivered late -> deployed');
is(deploy_predicate('2024-05-03T10:00:00Z', 'pkg:oci/api@sha256%3Ab3'), 'upgraded', 'a later one -> upgraded');
is(deploy_predicate('2024-05-01T18:00:00Z', 'pkg:oci/api@sha256%3Ab15'), 'upgraded', 'a late one in between -> upgraded');
is(q1("SELECT artifact_id FROM cdviz.environment_inventory WHERE environment_id = 'prod' AND service_id = 'api'"),
	'pkg:oci/api@sha256%3Ab3', 'the inventory runs the latest by time');

# ---- a raising transformer keeps the delivery; retransform recovers it --------
$node->safe_psql('postgres', q{
CREATE FUNCTION public.transform_buggy(headers jsonb, body jsonb)
RETURNS SETOF jsonb LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'bug in transformer'; END $$;
SELECT cdviz.create_webhook('buggy', 'public.transform_buggy(jsonb,jsonb)', 'none');
});
my $bug_body = '{"service":"billing","env":"prod","at":"2024-06-01T08:00:00Z","artifact":"pkg:generic/billing@1.0"}';
($code, $answer) = http_request(path => '/webhooks/buggy', body => $bug_body, headers => ['Content-Type: application/json']);
is($code, 202, 'a raising transformer: 202');
like($answer, qr/"status":"failed".*bug in transformer/, 'the answer carries the error');
is(q1(q{SELECT status || ' ' || (body ->> 'service') FROM cdviz.webhook_deliveries WHERE route = 'buggy'}),
	'failed billing', 'the delivery is kept with its body');
$node->safe_psql('postgres', q{
CREATE OR REPLACE FUNCTION public.transform_buggy(headers jsonb, body jsonb)
RETURNS SETOF jsonb LANGUAGE sql AS $$
	SELECT cdviz.webhook_cdevent('service.deployed', '/webhooks/buggy', body ->> 'at', body ->> 'service',
		jsonb_build_object('environment', jsonb_build_object('id', body ->> 'env'), 'artifactId', body ->> 'artifact'))
$$;
});
is(q1(q{SELECT (deliveries, stored, failed)::text FROM cdviz.retransform('buggy', now() - interval '1 hour')}),
	'(1,1,0)', 'retransform stores what the fixed transformer returns');
is(q1(q{SELECT status FROM cdviz.webhook_deliveries WHERE route = 'buggy'}), 'stored', 'the delivery is now stored');
($code, $answer) = http_request(path => '/webhooks/buggy', body => $bug_body, headers => ['Content-Type: application/json']);
like($answer, qr/"status":"duplicate"/, 'the same body again is a duplicate (hash of the body)');

# ---- concurrent deliveries share transactions, each answered for itself -------
# 160 deliveries posted 16 at a time: 150 good ones, 5 the database refuses
# (an X-GitHub-Delivery of 8,000 random characters: the delivery key is too
# large for its index, so their subtransaction fails) and 5 with a wrong
# token.  The worker groups what arrives during a transaction; a delivery
# that fails in its subtransaction must not take the others of its group
# with it.
$node->safe_psql('postgres',
	q{SELECT cdviz.create_webhook('grouped', 'public.transform_buggy(jsonb,jsonb)', 'bearer', 'grp-token')});
my $gdir = PostgreSQL::Test::Utils::tempdir();
open my $glist, '>', "$gdir/list" or die;
for my $i (1 .. 160)
{
	my $kind = $i % 32 == 7 ? 'bad' : $i % 32 == 23 ? 'unauth' : 'ok';
	PostgreSQL::Test::Utils::append_to_file("$gdir/$kind-$i.json",
		qq({"service":"grp$i","env":"grp","at":"2024-08-01T08:00:00Z","artifact":"pkg:generic/grp\@$i"}));
	print $glist "$gdir/$kind-$i.json\n";
}
close $glist;
PostgreSQL::Test::Utils::append_to_file("$gdir/post.sh", <<"SH");
#!/bin/sh
tok=grp-token; id=\$(basename "\$1" .json)
case "\$1" in
*unauth-*) tok=wrong ;;
*bad-*) id=\$(head -c 6000 /dev/urandom | base64 -w 0) ;;
esac
code=\$(curl -s -o /dev/null -w '%{http_code}' --max-time 30 -H 'Content-Type: application/json' -H "Authorization: Bearer \$tok" -H "X-GitHub-Delivery: \$id" --data-binary "\@\$1" http://127.0.0.1:$http_port/webhooks/grouped)
echo "\$code \$(basename "\$1" .json)"
SH
chmod 0755, "$gdir/post.sh";
# Grouping must not depend on how fast this machine starts curl: a session
# holds a lock the first delivery's transaction waits for, so that the
# deliveries sent meanwhile are waiting together when it is released.
my $locker = IPC::Run::start([ 'psql', '-X', '-q', '-d', $node->connstr('postgres'), '-c',
	'BEGIN; LOCK TABLE cdviz.webhook_deliveries IN SHARE ROW EXCLUSIVE MODE; SELECT pg_sleep(3); COMMIT;' ]);
$node->poll_query_until('postgres', q{SELECT count(*) > 0 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
	WHERE c.relname = 'webhook_deliveries' AND l.mode = 'ShareRowExclusiveLock' AND l.granted})
  or die 'the locking session did not get its lock';
my ($gout, $gerr) = ('', '');
IPC::Run::run([ 'xargs', '-P', '16', '-n', '1', "$gdir/post.sh" ], '<', "$gdir/list", '>', \$gout, '2>', \$gerr);
$locker->finish;
my %by;
for (split /\n/, $gout)
{
	my ($c, $name) = split / /;
	my ($kind) = $name =~ /^([a-z]+)-/;
	$by{"$kind $c"}++;
}
is(join(', ', map { "$_: $by{$_}" } sort keys %by), 'bad 400: 5, ok 201: 150, unauth 401: 5',
	'each delivery answered for itself: 150 stored, 5 refused by the database, 5 unauthorized');
is(q1(q{SELECT count(*) || ' ' || count(*) FILTER (WHERE status = 'stored') || ' ' || sum(cardinality(event_ids))
		FROM cdviz.webhook_deliveries WHERE route = 'grouped'}),
	'150 150 150', 'the 150 good deliveries are recorded with one event each, nothing of the others');
is(q1(q{SELECT count(*) FROM cdviz.environment_inventory WHERE environment_id = 'grp'}), '150',
	'their events reached the inventory');
is(q1(q{SELECT count(*) FROM cdviz.rejected_events WHERE origin = 'webhook'
		AND origin_ref = 'POST /webhooks/grouped' AND problems::text LIKE '%index row size%'}), '5',
	'the 5 refused deliveries are kept as dead letters, with why');
# received_at is the transaction's start: deliveries of one group share it
cmp_ok(q1(q{SELECT count(DISTINCT received_at) FROM cdviz.webhook_deliveries WHERE route = 'grouped'}),
	'<', 150, 'group commit: deliveries shared transactions');

# ---- a body that is not JSON: 400 with why, kept as a dead letter only ----------
for my $bad ('this is not JSON', '{"service": "x"', qq({"a": "\\u0000"}), qq({"a": 1}\0{"b": 2}))
{
	my $before = q1(q{SELECT count(*) FROM cdviz.webhook_deliveries WHERE route = 'grouped'});
	my $dead = q1(q{SELECT count(*) FROM cdviz.rejected_events WHERE origin = 'webhook'});
	($code, $answer) = http_request(path => '/webhooks/grouped', body => $bad,
		headers => ['Content-Type: application/json', 'Authorization: Bearer grp-token']);
	(my $shown = $bad) =~ s/\0/\\0/g;
	is($code, 400, "not JSON ($shown): 400");
	like($answer, qr/the body is not JSON.*"rejected_id":\d+/, "not JSON ($shown): the answer says so, and where it is kept");
	is(q1(q{SELECT count(*) FROM cdviz.webhook_deliveries WHERE route = 'grouped'}), $before,
		"not JSON ($shown): no delivery recorded");
	is(q1(q{SELECT count(*) FROM cdviz.rejected_events WHERE origin = 'webhook'}), $dead + 1,
		"not JSON ($shown): kept as a dead letter");
}
($code) = http_request(path => '/webhooks/grouped', body => 'not JSON, no token', headers => ['Content-Type: application/json']);
is($code, 401, 'not JSON without credentials: 401 first');
is(q1(q{SELECT count(*) FROM cdviz.rejected_events WHERE raw = 'not JSON, no token'}), '0',
	'an unauthenticated body is not kept, even as a dead letter');

# ---- plans made while the deliveries table was empty --------------------------
# The worker keeps its plans for the life of its connection.  With the table
# vacuumed empty, a plan that looked a delivery up by key would be a
# sequential scan, kept as the table grows: the delivery path must not
# depend on plans (the row comes from the insert, the outcome goes through
# the unique key).
$node->safe_psql('postgres', 'DELETE FROM cdviz.webhook_deliveries');
$node->safe_psql('postgres', 'VACUUM ANALYZE cdviz.webhook_deliveries');
is(q1(q{SELECT relpages FROM pg_class WHERE oid = 'cdviz.webhook_deliveries'::regclass}), '0',
	'the deliveries table is vacuumed empty');
sub delivery_scans
{
	return q1(q{SELECT n_tup_ins || ' ' || seq_scan FROM pg_stat_user_tables
				WHERE relid = 'cdviz.webhook_deliveries'::regclass});
}
my ($ins0, $seq0) = split / /, delivery_scans();
my $planned_ok = 0;
for my $i (1 .. 30)
{
	my $b = qq({"service":"planned","env":"prod","at":"2024-07-01T08:00:${\ sprintf('%02d', $i)}Z","artifact":"pkg:generic/planned\@$i"});
	($code) = http_request(path => '/webhooks/buggy', body => $b, headers => ['Content-Type: application/json']);
	$planned_ok++ if $code == 201;
}
is($planned_ok, 30, '30 deliveries stored after the table was emptied');
# the worker sends its table statistics at most once a second, after a transaction
my ($ins1, $seq1) = ($ins0, $seq0);
for (my $i = 0; $i < 30 && $ins1 - $ins0 < 30; $i++)
{
	usleep(1_100_000);
	http_request(path => '/webhooks/buggy', body => '{"ping": true}', headers => ['Content-Type: application/json']);
	($ins1, $seq1) = split / /, delivery_scans();
}
cmp_ok($ins1 - $ins0, '>=', 30, 'the worker reported its inserts');
is($seq1 - $seq0, 0, 'no delivery read the deliveries table sequentially');


# ---- one group's deliveries: written together, and yet each for itself ------
# The worker stores a group's events in one statement and records its
# deliveries in another (a batch), yet a delivery must be all or nothing,
# a redelivery must find the first reception, and a transformer must see
# the inventory the earlier deliveries of its group changed.  The order of
# a group is the order libmicrohttpd reads its requests in, so each check
# holds in any order.  To make a group: a session locks the deliveries
# table, a first delivery's transaction waits for it, the group's
# deliveries are sent meanwhile and run together once it is released.
sub post_async
{
	my ($path, $body, @headers) = @_;
	my $dir = PostgreSQL::Test::Utils::tempdir();
	PostgreSQL::Test::Utils::append_to_file("$dir/in", $body);
	my @cmd = ('curl', '-s', '-o', "$dir/out", '-w', '%{http_code}', '--max-time', '60',
		(map { ('-H', $_) } 'Content-Type: application/json', @headers),
		'--data-binary', "\@$dir/in", "http://127.0.0.1:$http_port$path");
	my $code = '';
	my $h = IPC::Run::start(\@cmd, '>', \$code);
	return sub { $h->finish; return ($code + 0, -f "$dir/out" ? slurp_file("$dir/out") : ''); };
}
sub one_group
{
	my (@sends) = @_;
	my $locker = $node->background_psql('postgres');
	$locker->query_safe('BEGIN');
	$locker->query_safe('LOCK TABLE cdviz.webhook_deliveries IN SHARE ROW EXCLUSIVE MODE');
	my $first = post_async('/webhooks/tekton', '{"group": "opener"}', 'Ce-Id: opener-' . $n++, 'Ce-Source: /t');
	$node->poll_query_until('postgres', q{SELECT count(*) > 0 FROM pg_stat_activity
		WHERE backend_type = 'cdviz http' AND wait_event_type = 'Lock'})
	  or die 'the first delivery did not wait for the lock';
	my @waits = map { post_async(@$_) } @sends;
	sleep 1;					# they are sent, and wait for the worker
	$locker->query_safe('COMMIT');
	$locker->quit;
	$first->();
	return map { [ $_->() ] } @waits;
}

# A transformer of the extension's own kind (a member of it) whose output is
# half invalid, a GitHub delivery and its redelivery: one batch.
$node->safe_psql('postgres', q{
CREATE FUNCTION public.transform_half(headers jsonb, body jsonb)
RETURNS SETOF jsonb LANGUAGE sql AS $$
	SELECT cdviz.webhook_cdevent('pipelinerun.started', '/half', '2024-09-01T08:00:00Z', 'half-run',
		jsonb_build_object('pipelineName', 'half', 'uri', 'https://ci.example.com/half'))
	UNION ALL SELECT '{"context": {"type": "dev.cdevents.nothing.0.1.0"}, "subject": {}}'::jsonb
$$;
ALTER EXTENSION cdviz ADD FUNCTION public.transform_half(jsonb, jsonb);
SELECT cdviz.create_webhook('half', 'public.transform_half(jsonb,jsonb)', 'none');
});
my $run_body = slurp_file("$fixtures/github/workflow_run/completed.json");
$run_body =~ s/289782451/777000777/g;
my @gh = ("X-GitHub-Event: workflow_run", 'X-GitHub-Hook-ID: 109948940', 'X-GitHub-Delivery: batch-run',
	'X-Hub-Signature-256: sha256=' . hmac_sha256_hex($run_body, $secret));
my $lake_before = lake_count();
my ($half, $run1, $run2) = one_group([ '/webhooks/half', '{"n": 1}' ],
	[ '/webhooks/github', $run_body, @gh ], [ '/webhooks/github', $run_body, @gh ]);
is($half->[0], 202, 'batch: half-invalid output is answered 202') or diag($half->[1]);
like($half->[1], qr/"status":"failed".*1 invalid event/, 'batch: and recorded as failed, with why');
is(join(' ', sort map { $_->[1] =~ /"status":"(\w+)"/ } $run1, $run2), 'duplicate stored',
	'batch: a delivery and its redelivery in one group: stored once, then a duplicate');
my @ids = map { $_->[1] =~ /"events":\[(\d+)\]/ } $run1, $run2;
is(scalar(@ids) == 2 && $ids[0] == $ids[1] ? 'same' : "@ids", 'same', 'batch: both answers name the same event');
is(lake_count() - $lake_before, 1, 'batch: one event stored, nothing of the half-invalid delivery');
is(q1(q{SELECT attempts || ' ' || status FROM cdviz.webhook_deliveries WHERE delivery_key = 'github:109948940:batch-run'}),
	'2 stored', 'batch: the redelivery counted on the first reception');
is(q1(q{SELECT count(DISTINCT received_at) FROM cdviz.webhook_deliveries
		WHERE route = 'half' OR delivery_key = 'github:109948940:batch-run'}), '1',
	'batch: the three ran in one transaction');
is(q1(q{SELECT status || ' ' || jsonb_array_length(problems) || ' ' || cardinality(context_ids)
		FROM cdviz.webhook_deliveries WHERE route = 'half'}), 'failed 1 2',
	'batch: the failed delivery keeps its problems and the ids it would have had');

# Two Argo CD notifications of one sync (two deliveries, one body): the
# second must see the first's deployment in the inventory and make nothing.
(my $argo_body = slurp_file("$fixtures/argocd/sync_succeeded.annotated.json")) =~ s/aaaaaaaaa/batchapp/g;
my @argo = map { [ '/webhooks/argocd', $argo_body, 'Authorization: Bearer argo-token', "Idempotency-Key: argo-$_" ] } 1 .. 2;
my @argo_answers = one_group(@argo);
is(join(' ', sort map { $_->[0] } @argo_answers), '201 202', 'batch: one notification stored, one ignored')
  or diag(join("\n", map { $_->[1] } @argo_answers));
is(q1(q{SELECT count(*) || ' ' || min(predicate) FROM cdviz.cdevents_lake WHERE subject = 'service' AND subject_id = 'batchapp'}),
	'1 deployed', 'batch: the second transformer saw the first deployment (the batch was stored before it ran)');
is(q1(q{SELECT count(DISTINCT received_at) FROM cdviz.webhook_deliveries WHERE delivery_key LIKE 'gitlab:argo-%'}), '1',
	'batch: the two ran in one transaction');

done_testing();
