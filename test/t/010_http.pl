# The cdviz http worker end to end, with real curl: every content mode,
# every status code, auth on and off with reloads, gzip, limits, an idle
# connection, DROP/CREATE EXTENSION while running.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use IO::Socket::INET;
use MIME::Base64;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use HttpTest;
use Time::HiRes qw(sleep);

my $node = start_http_node('http');
my ($code, $body, $headers);

# ---- before CREATE EXTENSION: alive, not ready, 503 + Retry-After --------
($code) = http_request(method => 'GET', path => '/healthz');
is($code, 200, 'healthz answers before the extension exists');
($code, $body, $headers) = http_request(method => 'GET', path => '/readyz');
is($code, 503, 'readyz is 503 without the extension');
($code, $body, $headers) = http_request(body => event_json('early'),
	headers => ['Content-Type: application/json']);
is($code, 503, 'POST is 503 without the extension');
like($headers, qr/^Retry-After: \d+/mi, '503 carries Retry-After');
ok($node->log_contains('extension "cdviz" is not created in database "postgres"'),
	'the wait is logged');

$node->safe_psql('postgres', 'CREATE EXTENSION cdviz');
wait_http('/readyz', 200);
pass('readyz is 200 once the extension exists');

my $json = ['Content-Type: application/json'];

# ---- plain JSON object --------------------------------------------------
($code, $body) = http_request(body => event_json('plain-1'), headers => $json);
is($code, 201, 'plain event: 201');
like($body, qr/"stored":\[\d+\],"duplicates":\[\]/, 'plain event: id in the answer');
is($node->safe_psql('postgres', "SELECT count(*) FROM cdviz.cdevents_lake WHERE context_id = 'plain-1'"),
	1, 'plain event stored');
($code, $body) = http_request(body => event_json('plain-1'), headers => $json);
is($code, 201, 'retransmission: 201');
like($body, qr/"stored":\[\],"duplicates":\[\d+\]/, 'retransmission reported as a duplicate');
($code) = http_request(body => event_json('plain-2'));
is($code, 415, 'curl -d default form content type: 415')
  ;    # application/x-www-form-urlencoded is not JSON
($code) = http_request(body => event_json('plain-2'),
	headers => ['Content-Type: application/cdevents+json; charset=utf-8']);
is($code, 201, 'any +json media type with parameters is read as JSON');

# ---- JSON array: a batch storing the valid, reporting the invalid ----------
($code, $body) = http_request(
	body => '[' . event_json('arr-1') . ',{"context":{}},' . event_json('arr-2') . ']',
	headers => $json);
is($code, 400, 'array with an invalid event: 400');
like($body, qr/"stored":\[\d+,\d+\]/, 'array: valid events stored');
like($body, qr/"index":1,"status":"rejected","rejected_id":\d+,"problems":\[\{"path"/,
	'array: problems of the invalid event');
is($node->safe_psql('postgres', "SELECT count(*) FROM cdviz.cdevents_lake WHERE context_id IN ('arr-1','arr-2')"),
	2, 'array: both valid events stored');

# ---- an event jsonb refuses (a lone surrogate escape, which JSON allows) ----
# The receivers' parser declines it, jsonb_in refuses it: a problem of that
# event, kept as a dead letter, while the other event of the batch is stored.
my $lone = event_json('sur-1') =~ s/"svc\/sur-1"/"svc\/sur-1\\ud800"/r;
($code, $body) = http_request(body => '[' . event_json('sur-2') . ",$lone]", headers => $json);
is($code, 400, 'array with an event jsonb refuses: 400');
like($body, qr/"index":1,"status":"rejected","rejected_id":\d+,"problems":\[\{"path":"\$","message":"cannot be stored as jsonb: [^"]*surrogate/,
	'the refused event: jsonb_in\'s words');
is($node->safe_psql('postgres', "SELECT count(*) FROM cdviz.cdevents_lake WHERE context_id = 'sur-2'")
	  . $node->safe_psql('postgres', "SELECT count(*) FROM cdviz.rejected_events WHERE raw LIKE '%sur-1\\\\ud800%'"),
	'11', 'the other event is stored, the refused one is a dead letter');

# ---- CloudEvents binary mode ----------------------------------------------
my @ce0 = ('Content-Type: application/json',
	'ce-source: /cdviz/test', 'ce-type: dev.cdevents.service.deployed.0.2.0');
my @ce = (@ce0, 'ce-specversion: 1.0');
($code) = http_request(body => event_json('bin-1'), headers => [@ce, 'ce-id: bin-1']);
is($code, 201, 'binary mode: 201');
($code, $body) = http_request(body => event_json('bin-2'), headers => [@ce, 'ce-id: not-bin-2']);
is($code, 400, 'binary mode, ce-id disagreeing with context.id: 400');
like($body, qr/context\.id.*does not match the CloudEvents attribute ce-id/, 'binary mode: the problem says why');
($code) = http_request(body => event_json('bin-3'),
	headers => [@ce0, 'ce-id: bin-3', 'ce-specversion: 0.3']);
is($code, 400, 'binary mode: unsupported CloudEvents version is 400');

# ---- structured mode ------------------------------------------------------
my $structured = sub {
	my ($id, $data, %o) = @_;
	return qq({"specversion":"1.0","id":"$id","source":"/cdviz/test",)
	  . qq("type":"dev.cdevents.service.deployed.0.2.0",) . $data . '}';
};
my $sj = ['Content-Type: application/cloudevents+json; charset=UTF-8'];
($code) = http_request(body => $structured->('str-1', '"data":' . event_json('str-1')), headers => $sj);
is($code, 201, 'structured mode, data: 201');
($code) = http_request(
	body => $structured->('str-2', '"data_base64":"' . encode_base64(event_json('str-2'), '') . '"'),
	headers => $sj);
is($code, 201, 'structured mode, data_base64: 201');
($code, $body) = http_request(body => $structured->('str-3', '"datacontenttype":"application/json"'), headers => $sj);
is($code, 400, 'structured mode without data: 400');
like($body, qr/data or data_base64/, 'structured mode: the problem names data');

# ---- batch mode -----------------------------------------------------------
($code, $body) = http_request(
	body => '[' . $structured->('bat-1', '"data":' . event_json('bat-1')) . ','
	  . $structured->('bat-2', '"data":' . event_json('bat-2')) . ']',
	headers => ['Content-Type: application/cloudevents-batch+json']);
is($code, 201, 'batch mode: 201');
like($body, qr/"stored":\[\d+,\d+\]/, 'batch mode: two ids');
($code, $body) = http_request(body => '{"not":"an array"}',
	headers => ['Content-Type: application/cloudevents-batch+json']);
is($code, 400, 'batch mode with an object: 400');

# ---- gzip -----------------------------------------------------------------
my $gz = PostgreSQL::Test::Utils::tempdir() . '/ev.json';
PostgreSQL::Test::Utils::append_to_file($gz, event_json('gz-1'));
system('gzip', '-f', $gz) == 0 or die 'gzip';
($code) = http_request(body_file => "$gz.gz", headers => [@$json, 'Content-Encoding: gzip']);
is($code, 201, 'gzip body: 201');
($code) = http_request(body => 'not gzip', headers => [@$json, 'Content-Encoding: gzip']);
is($code, 400, 'corrupt gzip: 400');
($code) = http_request(body => event_json('br'), headers => [@$json, 'Content-Encoding: br']);
is($code, 415, 'unknown Content-Encoding: 415');

# ---- bad input, statuses ---------------------------------------------------
($code, $body) = http_request(body => '{"context": tru', headers => $json);
is($code, 400, 'bad JSON: 400');
like($body, qr/not valid JSON/, 'bad JSON: the problem says so');
($code) = http_request(body => 'a,b', headers => ['Content-Type: text/csv']);
is($code, 415, 'text/csv: 415');
($code) = http_request(body => '[]', headers => $json);
is($code, 200, 'empty array: 200, nothing to store (080 tests it further)');
($code, $body, $headers) = http_request(method => 'GET');
is($code, 405, 'GET /cdevents: 405');
like($headers, qr/^Allow: POST/mi, '405 names the allowed method');
($code) = http_request(method => 'POST', path => '/healthz', body => 'x');
is($code, 405, 'POST /healthz: 405');
($code) = http_request(method => 'GET', path => '/nowhere');
is($code, 404, 'unknown path: 404');

# every refused body is a dead letter with peer, method and path
is($node->safe_psql('postgres',
		"SELECT count(*) FROM cdviz.rejected_events WHERE origin = 'http' AND origin_ref ~ '^127\\.0\\.0\\.1:[0-9]+ POST /cdevents\$'"),
	$node->safe_psql('postgres', "SELECT count(*) FROM cdviz.rejected_events"),
	'dead letters carry "<peer> POST /cdevents"');
ok($node->safe_psql('postgres', "SELECT count(*) FROM cdviz.rejected_events WHERE raw = 'a,b'") == 1,
	'the 415 body is kept');
ok($node->safe_psql('postgres', "SELECT count(*) FROM cdviz.rejected_events WHERE raw LIKE '{\"context\": tru%'") == 1,
	'the bad JSON is kept verbatim');

# ---- size limit, reloaded --------------------------------------------------
$node->safe_psql('postgres', "ALTER SYSTEM SET cdviz.http_max_body = '1kB'");
$node->reload;
my $big = '[' . join(',', map { event_json("big-$_") } 1 .. 10) . ']';
my $tries = 0;
do { ($code) = http_request(body => $big, headers => $json); sleep 0.2 if $code != 413; }
  while ($code != 413 && $tries++ < 50);
is($code, 413, 'over cdviz.http_max_body: 413');
($code) = http_request(body => $big, headers => [@$json, 'Transfer-Encoding: chunked']);
is($code, 413, 'chunked body over the limit: 413');
my $gzbig = PostgreSQL::Test::Utils::tempdir() . '/big.json';
PostgreSQL::Test::Utils::append_to_file($gzbig, $big);
system('gzip', '-f', $gzbig) == 0 or die 'gzip';
($code) = http_request(body_file => "$gzbig.gz", headers => [@$json, 'Content-Encoding: gzip']);
is($code, 413, 'gzip body inflating past the limit: 413');
$node->safe_psql('postgres', "ALTER SYSTEM RESET cdviz.http_max_body");
$node->reload;

# ---- auth: bearer token, reloaded -----------------------------------------
$node->safe_psql('postgres', "ALTER SYSTEM SET cdviz.http_auth_token = 'tok-one'");
$node->reload;
$tries = 0;
do { ($code) = http_request(body => event_json('auth-0'), headers => $json); sleep 0.2 if $code != 401; }
  while ($code != 401 && $tries++ < 50);
($code, $body, $headers) = http_request(body => event_json('auth-1'), headers => $json);
is($code, 401, 'token set, no Authorization: 401');
like($headers, qr/^WWW-Authenticate: Bearer/mi, '401 carries WWW-Authenticate');
($code) = http_request(body => event_json('auth-1'), headers => [@$json, 'Authorization: Bearer wrong']);
is($code, 401, 'wrong token: 401');
($code) = http_request(body => event_json('auth-1'), headers => [@$json, 'Authorization: Bearer tok-one']);
is($code, 201, 'right token: 201');
is($node->safe_psql('postgres', "SELECT count(*) FROM cdviz.rejected_events WHERE raw LIKE '%auth-1%'"),
	0, 'unauthenticated bodies are not kept');
$node->safe_psql('postgres', "ALTER SYSTEM SET cdviz.http_auth_token = 'tok-two'");
$node->reload;
$tries = 0;
do { ($code) = http_request(body => event_json('auth-2'), headers => [@$json, 'Authorization: Bearer tok-two']); sleep 0.2 if $code != 201; }
  while ($code != 201 && $tries++ < 50);
is($code, 201, 'token changed by pg_reload_conf: new token accepted');
($code) = http_request(body => event_json('auth-3'), headers => [@$json, 'Authorization: Bearer tok-one']);
is($code, 401, 'old token refused after reload');
($code) = http_request(method => 'GET', path => '/healthz');
is($code, 200, 'healthz needs no token');

# secrets are for superusers only
$node->safe_psql('postgres', 'CREATE ROLE plain LOGIN');
my ($ret, $out, $err) = $node->psql('postgres', 'SHOW cdviz.http_auth_token', extra_params => ['-U', 'plain']);
isnt($ret, 0, 'a plain role cannot read the token');

# ---- HMAC signature, with and without the token ----------------------------
$node->safe_psql('postgres', "ALTER SYSTEM RESET cdviz.http_auth_token");
$node->safe_psql('postgres', "ALTER SYSTEM SET cdviz.http_hmac_secret = 'hmac-key'");
$node->reload;
my $signed = event_json('hmac-1');
my $sig = `printf '%s' '$signed' | openssl dgst -sha256 -hmac hmac-key -r | cut -d' ' -f1`;
chomp $sig;
$tries = 0;
do { ($code) = http_request(body => $signed, headers => $json); sleep 0.2 if $code != 401; }
  while ($code != 401 && $tries++ < 50);
is($code, 401, 'secret set, no signature: 401');
($code) = http_request(body => $signed, headers => [@$json, 'X-Signature-256: sha256=' . ('0' x 64)]);
is($code, 401, 'wrong signature: 401');
($code) = http_request(body => $signed, headers => [@$json, "X-Signature-256: sha256=$sig"]);
is($code, 201, 'right signature: 201');
($code) = http_request(body => $signed . ' ', headers => [@$json, "X-Signature-256: sha256=$sig"]);
is($code, 401, 'signature of another body: 401');
$node->safe_psql('postgres', "ALTER SYSTEM RESET cdviz.http_hmac_secret");
$node->reload;
$tries = 0;
do { ($code) = http_request(body => event_json('open-1'), headers => $json); sleep 0.2 if $code != 201; }
  while ($code != 201 && $tries++ < 50);
is($code, 201, 'auth off again after reload');

# ---- an idle connection does not stall the others, and times out ------------
my $idle = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $http_port, Proto => 'tcp')
  or die "connect: $!";
print $idle "POST /cdevents HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"cont";
($code) = http_request(body => event_json('while-idle'), headers => $json, timeout => 3);
is($code, 201, 'served while another connection sits idle mid-body');
$idle->blocking(1);
my $rin = '';
vec($rin, fileno($idle), 1) = 1;
my $nfound = select(my $rout = $rin, undef, undef, 15);
my $got = $nfound > 0 ? sysread($idle, my $buf, 100) : -1;
ok($nfound > 0 && defined $got && $got == 0, 'the idle connection is closed after cdviz.http_timeout');
close $idle;

# ---- metrics -------------------------------------------------------------
($code, $body) = http_request(method => 'GET', path => '/metrics');
is($code, 200, 'metrics: 200');
like($body, qr/^cdviz_http_requests_total\{code="201"\} \d+/m, 'metrics: requests by status');
like($body, qr/^cdviz_events_total\{source="http",outcome="stored"\} \d+/m, 'metrics: events stored');
like($body, qr/^cdviz_events_total\{source="http",outcome="duplicate"\} [1-9]/m, 'metrics: duplicates');
like($body, qr/^cdviz_events_total\{source="http",outcome="rejected"\} [1-9]/m, 'metrics: rejected');
like($body, qr/^cdviz_http_batch_events_bucket\{le="\+Inf"\} \d+/m, 'metrics: batch size histogram');
like($body, qr/^cdviz_http_request_duration_seconds_count \d+/m, 'metrics: latency histogram');
like($body, qr/^cdviz_http_transactions_total [1-9]/m, 'metrics: transactions');

# ---- DROP / CREATE EXTENSION while the worker runs ----------------------------
$node->safe_psql('postgres', 'DROP EXTENSION cdviz CASCADE');
($code, $body, $headers) = http_request(body => event_json('dropped'), headers => $json);
is($code, 503, 'extension dropped: 503');
like($headers, qr/^Retry-After:/mi, 'extension dropped: Retry-After');
($code) = http_request(method => 'GET', path => '/readyz');
is($code, 503, 'extension dropped: readyz 503');
$node->safe_psql('postgres', 'CREATE EXTENSION cdviz');
($code) = http_request(body => event_json('recreated'), headers => $json);
is($code, 201, 'extension recreated: 201 again, same worker');
is($node->safe_psql('postgres', "SELECT count(*) FROM cdviz.cdevents_lake WHERE context_id = 'recreated'"),
	1, 'stored in the new lake');
($code) = http_request(body => '{', headers => $json);
is($code, 400, 'dead letters work in the recreated schema');

# the worker never restarted through all of this
is($node->safe_psql('postgres', "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'cdviz http'"),
	1, 'one cdviz http worker');
ok(!$node->log_contains('terminated by signal'), 'no crash');

$node->stop;
done_testing();
