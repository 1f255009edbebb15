# Sources of kind oci against a real registry (docker-registry, Debian's
# Distribution 2.8, on loopback; images pushed through its API by
# RegistryTest.pm): the events and their package URLs, the catalog and
# tag lists past one page, a moved and a deleted tag, a scan restarted in
# its middle (nothing twice, nothing missed), a registry answering 500 then
# recovering, baseline and backfill, htpasswd basic auth, the registry
# token flow (auth: token, tokens made by registry_front.py) with a token
# that expires, and ECR's GetAuthorizationToken signed with SigV4 (checked
# by registry_front.py's stand-in: there is no ECR here).
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use CdvizNode;
use RegistryTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $why = registry_available();
plan skip_all => $why if $why;

my $node = cdviz_node('source_oci');
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION cdviz');

sub q1 { return $node->safe_psql('postgres', $_[0]); }

# Events of the lake whose context source is $src (and whose subject id
# matches the LIKE pattern $like).
sub events
{
	my ($src, $like) = @_;
	return q1("SELECT count(*) FROM cdviz.cdevents_lake WHERE context_source = '$src'"
		  . ($like ? " AND subject_id LIKE '$like'" : ''));
}

sub wait_events
{
	my ($src, $n, $what, $like) = @_;
	my $cond = "SELECT count(*) = $n FROM cdviz.cdevents_lake WHERE context_source = '$src'"
	  . ($like ? " AND subject_id LIKE '$like'" : '');
	ok($node->poll_query_until('postgres', $cond), $what)
	  or diag('have ' . events($src, $like) . "\n" . slurp_file($node->logfile));
	return;
}

sub status
{
	my ($name, $col) = @_;
	return q1("SELECT $col FROM cdviz.source_status WHERE name = '$name'");
}

sub purl
{
	my ($hostport, $repo, $tag, $digest) = @_;
	(my $name = $repo) =~ s{.*/}{};
	(my $d = $digest) =~ s/:/%3A/;
	return "pkg:oci/$name\@$d?repository_url=$hostport/$repo&tag=$tag";
}

# ------------------------------------------------------------ options ----
my $err;
$node->psql('postgres', q{SELECT cdviz.create_source('x', 'oci', 'registry.example', '{}')},
	stderr => \$err);
like($err, qr/must be a registry URL.*\n.*HINT:  Give its scheme and host/s, 'a location without scheme is refused with a hint');
$node->psql('postgres', q{SELECT cdviz.create_source('x', 'oci', 'https://r.example', '{"repositories": "team/app"}')},
	stderr => \$err);
like($err, qr/must be an array of repository names/, 'repositories must be an array');
$node->psql('postgres', q{SELECT cdviz.create_source('x', 'oci', 'https://r.example', '{"repositories": ["Team/App"]}')},
	stderr => \$err);
like($err, qr/is not a repository name or pattern/, 'repository names are lower case');
$node->psql('postgres', q{SELECT cdviz.create_source('x', 'oci', 'https://r.example', '{"poll_interval": "2 days"}')},
	stderr => \$err);
like($err, qr/poll_interval.*from 1 s to 1 day/, 'poll_interval is bounded');
$node->psql('postgres', q{SELECT cdviz.create_source('x', 'oci', 'https://r.example', '{"initial": "all"}')},
	stderr => \$err);
like($err, qr/"initial" must be baseline or backfill/, 'initial is baseline or backfill');
$node->psql('postgres', q{SELECT cdviz.create_source('x', 'oci', 'https://r.example', '{"username": "u"}')},
	stderr => \$err);
like($err, qr/"username" and "password" of an oci source go together/, 'username needs a password');
$node->psql('postgres', q{SELECT cdviz.create_source('x', 'oci', 'https://r.example', '{"ecr": {"region": "eu-west-1"}}')},
	stderr => \$err);
like($err, qr/ECR registry needs options "access_key_id" and "secret_access_key"/, 'ecr needs keys');
$node->psql('postgres', q{SELECT cdviz.create_source('x', 'oci', 'https://r.example', '{"ecr": {"zone": "a"}}')},
	stderr => \$err);
like($err, qr/unknown key "zone" in option "ecr"/, 'unknown ecr keys are refused');
is(q1(q{SELECT option || '=' || default_value FROM cdviz.source_options('oci') WHERE option IN ('initial', 'poll_interval') ORDER BY 1}),
	"initial=baseline\npoll_interval=60", 'source_options documents the kind');

# ------------------------------------- a plain registry, through a proxy ----
my $reg = registry_start();
my $front = front_start(upstream => $reg->{url});
my $src = $front->{url};
my $hp = "127.0.0.1:$front->{port}";
my $d_app = push_tags($reg->{url}, 'team/app', [qw(v1 v2 v3 V4 latest)]);
my $d_lib = push_tags($reg->{url}, 'team/lib', ['1.0']);
push_tags($reg->{url}, 'other/x', ['latest']);

q1(qq{SELECT cdviz.create_source('reg', 'oci', '$src/', '{"repositories": ["team/*"], "poll_interval": "1s", "initial": "backfill", "page_size": 2}')});
is(q1(q{SELECT location FROM cdviz.sources WHERE name = 'reg'}), $src, 'the location is stored without its slash');
wait_events($src, 6, 'backfill: an event for each tag of the repositories the pattern matches');
is(events($src, '%other%'), 0, 'a repository the patterns do not match is not read');
is(q1(qq{SELECT count(*) FROM cdviz.cdevents_lake WHERE context_source = '$src'
	AND subject_id = '} . purl($hp, 'team/app', 'v1', $d_app->{v1}) . q{'}), 1,
	'subject id: pkg:oci/<name>@sha256%3A<hex>?repository_url=<host>/<repository>&tag=<tag>');
is(q1(qq{SELECT count(*) FROM cdviz.cdevents_lake WHERE subject_id = '} . purl($hp, 'team/app', 'V4', $d_app->{V4}) . q{'}),
	1, 'a tag keeps its case in the purl');
is(q1(qq{SELECT cdviz.webhook_oci_purl('$hp/team/app:V4', '$d_app->{V4}')}), purl($hp, 'team/app', 'V4', $d_app->{V4}),
	'the purl is the one cdviz.webhook_oci_purl makes of the image reference');
is(q1(qq{SELECT type || ' ' || (payload->'customData'->>'repository') || ' ' || (payload->'customData'->>'mediaType')
	FROM cdviz.cdevents_lake WHERE subject_id LIKE '%lib%'}),
	'dev.cdevents.artifact.published.0.3.0 team/lib application/vnd.oci.image.manifest.v1+json',
	'artifact.published, with the repository and media type in customData');
my $flog = front_log($front);
like($flog, qr{GET /v2/_catalog\?last=\S+&n=2 200}, 'the catalog is read past its first page (Link)');
like($flog, qr{GET /v2/team/app/tags/list\?n=2&last=latest 200}, 'tags are read past their first page (Link)');
like($flog, qr{HEAD /v2/team/app/manifests/v3 200}, 'digests come from manifest HEADs');
is(status('reg', 'items || \' \' || events || \' \' || duplicates'), '6 6 0', 'source_status counts tags and events');

wait_scans($node, 'reg', 2);
is(events($src), 6, 'later scans emit nothing again');

# a moved tag, a new tag, a deleted tag
my $moved = push_tags($reg->{url}, 'team/app', ['v1'], salt => 'rebuilt');
push_tags($reg->{url}, 'team/lib', ['1.1']);
delete_tag($reg->{url}, 'team/app', $d_app->{v2});
wait_events($src, 8, 'a moved tag and a new tag are new events');
is(q1(qq{SELECT payload->'customData'->>'previousDigest' FROM cdviz.cdevents_lake
	WHERE subject_id = '} . purl($hp, 'team/app', 'v1', $moved->{v1}) . q{'}), $d_app->{v1},
	'the moved tag\'s event names the digest it pointed to');
ok($node->poll_query_until('postgres', qq{SELECT NOT EXISTS (SELECT FROM cdviz.oci_tags WHERE registry = '$src' AND tag = 'v2')}),
	'the row of a deleted tag goes');
is(q1(qq{SELECT digest FROM cdviz.oci_tags WHERE registry = '$src' AND repository = 'team/app' AND tag = 'v1'}),
	$moved->{v1}, 'the moved tag\'s row has its new digest');

# ------------------------------------------ 500s, then the registry heals ----
front_control($front, "fail=always\n");
push_tags($reg->{url}, 'team/app', ['v5']);
ok($node->poll_query_until('postgres',
	q{SELECT last_error LIKE '%HTTP 500 UNKNOWN: injected failure%' FROM cdviz.source_status WHERE name = 'reg'}),
	'a registry answering 500 shows in source_status')
  or diag(status('reg', 'last_error'));
is(status('reg', 'state'), 'running', 'the worker keeps running');
front_control($front, "fail=0\n");
wait_events($src, 9, 'the tag pushed during the failures is found once the registry answers');
ok($node->poll_query_until('postgres', q{SELECT last_error IS NULL FROM cdviz.source_status WHERE name = 'reg'}),
	'the error clears by itself');
like(slurp_file($node->logfile), qr/Failure 1 in a row; next scan in 1 s/, 'a failure is logged with the wait');
like(slurp_file($node->logfile), qr/cdviz source reg: \Q$src\E answers again/, 'and so is the recovery');

# a registry linking its next page elsewhere is not followed there
front_control($front, "link_base=http://127.0.0.2:9\n");
ok($node->poll_query_until('postgres',
	q{SELECT last_error LIKE '%the registry links to http://127.0.0.2:9/v2/team/%/tags/list?n=2&last=%, outside %' FROM cdviz.source_status WHERE name = 'reg'}),
	'a Link to another host is refused: the credentials stay with the registry')
  or diag(status('reg', 'last_error'));
front_control($front, "");

# a registry that sends no Docker-Content-Digest: the digest is the manifest's SHA-256
front_control($front, "no_digest=1\n");
my $d_nd = push_tags($reg->{url}, 'team/lib', ['2.0']);
wait_events($src, 10, 'a tag whose manifest answer names no digest is still found');
is(q1(qq{SELECT digest FROM cdviz.oci_tags WHERE registry = '$src' AND repository = 'team/lib' AND tag = '2.0'}),
	$d_nd->{'2.0'}, 'its digest is the SHA-256 of the manifest, the registry\'s own');
like(front_log($front), qr{GET /v2/team/lib/manifests/2.0 200}, 'the manifest is read to hash it');
front_control($front, "");

# a refused connection
front_stop($front);
ok($node->poll_query_until('postgres',
	q{SELECT last_error LIKE '%Connection refused%' OR last_error LIKE '%connect%' FROM cdviz.source_status WHERE name = 'reg'}),
	'a refused connection shows in source_status');
$front = front_start(upstream => $reg->{url}, port => $front->{port});

# ------------------------------------------- a restart in the middle of a scan ----
my @big = map { sprintf('b%03d', $_) } 1 .. 60;
q1(q{SELECT cdviz.pause_source('reg')});
push_tags($reg->{url}, 'team/big', \@big);
front_control($front, "delay_ms=40\n");
q1(q{SELECT cdviz.alter_source('reg', options => '{"repositories": ["team/*"], "poll_interval": 1, "initial": "backfill", "page_size": 100, "batch_size": 10}', paused => false)});
ok($node->poll_query_until('postgres',
	qq{SELECT count(*) >= 10 FROM cdviz.cdevents_lake WHERE context_source = '$src' AND subject_id LIKE '%big%'}),
	'the scan of 60 tags stores batches of 10');
my $mid = events($src, '%big%');
$node->stop('immediate');
$node->start;
front_control($front, "");
cmp_ok($mid, '<', 60, "the server stopped in the middle of the scan ($mid of 60 stored)");
wait_events($src, 60, 'after the restart, every tag of the repository has its event', '%big%');
wait_scans($node, 'reg', 1);
is(events($src, '%big%'), 60, 'nothing twice, nothing missed');
is(status('reg', 'duplicates'), 0, 'no event was even made twice');
is(q1(qq{SELECT count(*) FROM cdviz.oci_tags WHERE registry = '$src' AND repository = 'team/big'}), 60,
	'a row per tag');

# ------------------------------------------------------------ baseline ----
q1(qq{SELECT cdviz.create_source('base', 'oci', '$reg->{url}', '{"repositories": ["team/app"], "poll_interval": 1}')});
ok($node->poll_query_until('postgres',
	qq{SELECT first_scan_at IS NOT NULL FROM cdviz.oci_registries WHERE registry = '$reg->{url}'}),
	'the baseline scan completes');
is(q1(qq{SELECT count(*) || ' ' || bool_or(emitted) FROM cdviz.oci_tags WHERE registry = '$reg->{url}'}), '5 false',
	'baseline (the default): the tags are recorded without events');
is(events($reg->{url}), 0, 'baseline: no event');
my $after = push_tags($reg->{url}, 'team/app', ['v6']);
wait_events($reg->{url}, 1, 'after the baseline, a new tag is an event');
is(q1(qq{SELECT subject_id FROM cdviz.cdevents_lake WHERE context_source = '$reg->{url}'}),
	purl("127.0.0.1:$reg->{port}", 'team/app', 'v6', $after->{v6}), 'its purl names the registry read');
q1(q{SELECT cdviz.drop_source('base'), cdviz.drop_source('reg')});
front_stop($front);
registry_stop($reg);

# ------------------------------------------------------ htpasswd basic auth ----
my $breg = registry_start(users => { alice => 'wonderland-pass', AWS => 'ecr-token-pass' });
my $bd = push_tags($breg->{url}, 'team/app', [qw(1.0 2.0)], user => 'alice', pass => 'wonderland-pass');
q1(qq{SELECT cdviz.create_source('basic', 'oci', '$breg->{url}', '{"repositories": ["team/app"], "poll_interval": 1, "initial": "backfill", "username": "alice", "password": "wrong-password"}')});
ok($node->poll_query_until('postgres', q{SELECT last_error LIKE '%HTTP 401%' FROM cdviz.source_status WHERE name = 'basic'}),
	'wrong credentials: a 401 in source_status')
  or diag(status('basic', 'last_error'));
unlike(status('basic', 'last_error'), qr/wrong-password/, 'the password is not shown');
is(q1(q{SELECT options->>'password' FROM cdviz.sources WHERE name = 'basic'}), '***', 'the password is a secret');
q1(q{SELECT cdviz.alter_source('basic', options => '{"repositories": ["team/app"], "poll_interval": 1, "initial": "backfill", "username": "alice", "password": "wonderland-pass"}')});
wait_events($breg->{url}, 2, 'basic auth: the events of the tags');
is(q1(qq{SELECT count(*) FROM cdviz.cdevents_lake WHERE subject_id = '}
	  . purl("127.0.0.1:$breg->{port}", 'team/app', '2.0', $bd->{'2.0'}) . q{'}), 1, 'with their purls');
q1(q{SELECT cdviz.drop_source('basic')});

# ---------------------------------------------------- AWS ECR, stand-in ----
my $ecr = front_start(upstream => $breg->{url}, ecr_keys => 'AKIDCDVIZTEST:test-secret-key',
	ecr_password => 'ecr-token-pass', ecr_region => 'eu-west-1');
q1(qq{SELECT cdviz.create_source('ecr', 'oci', '$ecr->{url}', '{"repositories": ["team/app"], "poll_interval": 1, "initial": "backfill", "ecr": {"region": "eu-west-1", "endpoint": "$ecr->{url}/ecr"}, "access_key_id": "AKIDCDVIZTEST", "secret_access_key": "not-the-key"}')});
ok($node->poll_query_until('postgres',
	q{SELECT last_error LIKE '%GetAuthorizationToken: HTTP 403 InvalidSignatureException: signature mismatch%' FROM cdviz.source_status WHERE name = 'ecr'}),
	'ECR: a request signed with the wrong secret key is refused by the signature check')
  or diag(status('ecr', 'last_error'));
q1(qq{SELECT cdviz.alter_source('ecr', options => '{"repositories": ["team/app"], "poll_interval": 1, "initial": "backfill", "ecr": {"region": "eu-west-1", "endpoint": "$ecr->{url}/ecr"}, "access_key_id": "AKIDCDVIZTEST", "secret_access_key": "test-secret-key"}')});
wait_events($ecr->{url}, 2, 'ECR: a signed GetAuthorizationToken, then the registry read with its basic credentials');
wait_scans($node, 'ecr', 2);
my @signed = front_log($ecr) =~ /POST \/ecr 200 signed by AKIDCDVIZTEST/g;
is(scalar @signed, 1, 'the ECR credentials are kept until they expire');
like(front_log($ecr), qr{HEAD /v2/team/app/manifests/1.0 200}, 'the registry accepted AWS:<token> as basic credentials');
q1(q{SELECT cdviz.drop_source('ecr')});
front_stop($ecr);
registry_stop($breg);

# ------------------------------------------------- the registry token flow ----
my $tdir = PostgreSQL::Test::Utils::tempdir();
my ($key, $cert) = token_keys($tdir);
my $tport = PostgreSQL::Test::Cluster::get_free_port();
my $treg = registry_start(token => { realm => "http://127.0.0.1:$tport/token", service => 'cdviz-test-registry',
		issuer => 'cdviz-test-issuer', cert => $cert });
my $tok = front_start(port => $tport, upstream => $treg->{url}, token_key => $key, token_cert => $cert,
	users => 'bob:builder-pass');
push_tags($treg->{url}, 'team/app', [qw(t1 t2)], user => 'bob', pass => 'builder-pass');
push_tags($treg->{url}, 'team/web', ['t1'], user => 'bob', pass => 'builder-pass');
q1(qq{SELECT cdviz.create_source('token', 'oci', '$treg->{url}', '{"repositories": ["team/*"], "poll_interval": 1, "initial": "backfill", "username": "bob", "password": "builder-pass"}')});
wait_events($treg->{url}, 3, 'token flow: the events of a registry with auth: token');
my $tlog = front_log($tok);
like($tlog, qr{GET /token\S* 200 scope=registry:catalog:\*}, 'a token for the catalog');
like($tlog, qr{GET /token\S* 200 scope=repository:team/web:pull}, 'a token per repository');
my $web_tokens = sub { my @l = front_log($tok) =~ /scope=repository:team\/web:pull/g; return scalar @l; };
my $before = $web_tokens->();
wait_scans($node, 'token', 3);
is($web_tokens->(), $before, 'tokens are kept while they last: later scans ask for none');
# tokens that end before their expires_in says: the registry's 401 renews them
front_control($tok, "token_ttl=2\n");
q1(q{SELECT cdviz.alter_source('token', options => '{"repositories": ["team/web"], "poll_interval": 1, "username": "bob", "password": "builder-pass"}')});
wait_scans($node, 'token', 1);
$before = $web_tokens->();
sleep 3;
my $late = push_tags($treg->{url}, 'team/web', ['t2'], user => 'bob', pass => 'builder-pass');
wait_events($treg->{url}, 4, 'a tag pushed after the token expired is found');
cmp_ok($web_tokens->(), '>', $before, 'the expired token was renewed after the registry\'s 401');
is(status('token', 'last_error'), '', 'no error');
front_control($tok, "");
q1(q{SELECT cdviz.alter_source('token', options => '{"repositories": ["team/*"], "poll_interval": 1, "username": "bob", "password": "not-his"}')});
ok($node->poll_query_until('postgres',
	qq{SELECT last_error LIKE '%asking http://127.0.0.1:$tport/token for a token: HTTP 401%' FROM cdviz.source_status WHERE name = 'token'}),
	'a token endpoint refusing the credentials shows in source_status')
  or diag(status('token', 'last_error'));
q1(q{SELECT cdviz.drop_source('token')});
front_stop($tok);
registry_stop($treg);

done_testing();
