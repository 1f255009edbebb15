# The CloudEvents HTTP binding (1.0.2) as the receiver reads it, with real
# clients (curl, and the CloudEvents JavaScript SDK when installed): header
# values unquoted and percent-decoded once (§3.1.3.2), the attributes binary
# mode requires, empty batches, and dead letters that keep what was received
# (the bytes, and for binary mode the ce-* headers) so that a replay judges
# the same input again.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use HttpTest;
use Digest::SHA;
use Time::HiRes;

my $node = start_http_node('cebinding');
$node->safe_psql('postgres', 'CREATE EXTENSION cdviz');
wait_http('/readyz', 200);

my ($code, $body);
my $type = 'dev.cdevents.service.deployed.0.2.0';
my @bin = ('Content-Type: application/json', 'ce-specversion: 1.0',
	'ce-source: /cdviz/test', "ce-type: $type");

# A query's output; an error is reported as a failure, not a stop, so that
# every case below is tried.
sub sql
{
	my ($ret, $out, $err) = $node->psql('postgres', $_[0]);
	fail("query failed: $err") if $ret != 0;
	return $out;
}
sub lake_count { return sql("SELECT count(*) FROM cdviz.cdevents_lake WHERE context_id = '$_[0]'"); }
sub dead_count { return sql('SELECT count(*) FROM cdviz.rejected_events'); }
sub last_dead { return sql('SELECT max(id) FROM cdviz.rejected_events'); }

# Whether dead letter id keeps exactly these bytes (compared in SQL, so that
# no line ending is lost on the way).
sub raw_is
{
	my ($id, $bytes, $what) = @_;
	$id //= 0;
	is(sql("SELECT raw = \$raw\$$bytes\$raw\$ FROM cdviz.rejected_events WHERE id = $id"), 't', $what)
	  or diag('kept: ' . sql("SELECT raw FROM cdviz.rejected_events WHERE id = $id"));
}

# Wait until the receiver has read a reload that turns auth on (1) or off
# (0): an unauthenticated GET-free probe (an empty batch stores nothing)
# is answered 401 exactly while auth is on.
sub auth_wait
{
	my ($on) = @_;
	for (my $i = 0; $i < 100; $i++)
	{
		my ($c) = http_request(body => '[]', headers => ['Content-Type: application/json']);
		return if ($c == 401) == $on;
		Time::HiRes::usleep(100_000);
	}
	die 'the receiver did not read the reload';
}

# A JSON string literal of s (the ids below need only " and \ escaped).
sub jstr { my $s = shift; $s =~ s/(["\\])/\\$1/g; return $s; }

# ---- §3.1.3.2: header values are unquoted, then percent-decoded once ------
my @decoded = (
	[ 'qa%20pct', 'qa pct', 'percent-encoded space' ],
	[ '50%25off', '50%off', 'percent-encoded percent' ],
	[ 'gr%C3%BC%c3%9Fe', "gr\x{fc}\x{df}e", 'percent-encoded UTF-8, either case of hex' ],
	[ '"quoted-1"', 'quoted-1', 'a double-quoted value' ],
	[ '"q\\"2\\\\"', 'q"2\\', 'backslash escapes inside quotes' ],
	[ '"q%20three"', 'q three', 'quoted, then percent-decoded' ],
	[ 'pct%2520once', 'pct%20once', 'decoded once, not twice' ],);
for my $case (@decoded)
{
	my ($header, $id, $what) = @$case;
	my $json_id = jstr($id);
	my $bytes = event_json($json_id);
	utf8::encode($bytes);
	($code, $body) = http_request(body => $bytes, headers => [ @bin, "ce-id: $header" ]);
	is($code, 201, "binary mode, ce-id: $header ($what): 201") or diag($body);
	my $sql_id = $id;
	$sql_id =~ s/'/''/g;
	utf8::encode($sql_id);
	is(sql("SELECT count(*) FROM cdviz.cdevents_lake WHERE context_id = '$sql_id'"),
		'1', "$what: stored under the decoded id");
}
($code, $body) = http_request(body => event_json('sv-quoted'),
	headers => [ grep(!/^ce-specversion/, @bin), 'ce-specversion: "1.0"', 'ce-id: sv-quoted' ]);
is($code, 201, 'ce-specversion: "1.0" is 1.0') or diag($body);
($code, $body) = http_request(body => event_json('sv-space'),
	headers => [ grep(!/^ce-specversion/, @bin), 'ce-specversion: 1.0 ', 'ce-id: sv-space  ' ]);
is($code, 201, 'surrounding white space is not part of a header value') or diag($body);
is(lake_count('sv-quoted') . lake_count('sv-space'), '11', 'both stored');

# what cannot be decoded is refused and kept
my $dead0 = dead_count();
for my $case ([ 'bad%zz', 'a % not followed by two hexadecimal digits' ],
	[ '%C0%A0', 'an overlong UTF-8 encoding' ],
	[ 'nul%00byte', 'a control character' ],
	[ '"unterminated', 'an unterminated quoted string' ])
{
	my ($header, $what) = @$case;
	($code, $body) = http_request(body => event_json('undecodable'), headers => [ @bin, "ce-id: $header" ]);
	is($code, 400, "ce-id: $header ($what): 400");
	like($body, qr/ce-id/, "$what: the problem names ce-id");
}
is(dead_count() - $dead0, 4, 'each undecodable request is a dead letter');
is(lake_count('undecodable'), '0', 'and nothing was stored');

# white space around other header values is not part of them either
my $gz = PostgreSQL::Test::Utils::tempdir() . '/ev.json';
PostgreSQL::Test::Utils::append_to_file($gz, event_json('gz-space'));
system('gzip', '-f', $gz) == 0 or die 'gzip';
($code, $body) = http_request(body_file => "$gz.gz",
	headers => [ 'Content-Type: application/json ', 'Content-Encoding: gzip ' ]);
is($code, 201, 'Content-Encoding: "gzip " is gzip') or diag($body);

$node->safe_psql('postgres', "ALTER SYSTEM SET cdviz.http_auth_token = 'tok-ws'");
$node->safe_psql('postgres', "ALTER SYSTEM SET cdviz.http_hmac_secret = 'key-ws'");
$node->reload;
auth_wait(1);
{
	my $ev = event_json('auth-space');
	my $sig = Digest::SHA::hmac_sha256_hex($ev, 'key-ws');
	($code, $body) = http_request(body => $ev,
		headers => [ 'Content-Type: application/json', 'Authorization: Bearer tok-ws ',
			"X-Signature-256: sha256=$sig " ]);
	is($code, 201, 'a token and a signature with white space after them are accepted') or diag($body);
	($code) = http_request(body => $ev, headers => [ 'Content-Type: application/json',
			'Authorization: Bearer tok-ws x', "X-Signature-256: sha256=$sig" ]);
	is($code, 401, 'but not a different token');
}
$node->safe_psql('postgres', "ALTER SYSTEM RESET cdviz.http_auth_token");
$node->safe_psql('postgres', "ALTER SYSTEM RESET cdviz.http_hmac_secret");
$node->reload;
auth_wait(0);

# ---- an empty batch is a batch: 2xx, nothing stored, nothing kept ---------
$dead0 = dead_count();
my $lake0 = sql('SELECT count(*) FROM cdviz.cdevents_lake');
for my $case ([ 'application/cloudevents-batch+json', '[]' ],
	[ 'application/cloudevents-batch+json; charset=utf-8', " [ \n ] " ],
	[ 'application/json', '[]' ])
{
	my ($ct, $b) = @$case;
	($code, $body) = http_request(body => $b, headers => ["Content-Type: $ct"]);
	ok($code >= 200 && $code < 300, "empty array as $ct: 2xx ($code)") or diag($body);
	like($body, qr/"stored":\[\],"duplicates":\[\],"rejected":0/, "empty array as $ct: nothing stored");
}
is(dead_count() - $dead0, 0, 'an empty batch is no dead letter');
is(sql('SELECT count(*) FROM cdviz.cdevents_lake'), $lake0, 'and stores nothing');

# ---- binary mode requires ce-id, ce-source and ce-type --------------------
$dead0 = dead_count();
($code, $body) = http_request(body => event_json('bin-bare'),
	headers => [ 'Content-Type: application/json', 'ce-specversion: 1.0' ]);
is($code, 400, 'ce-specversion alone: 400');
like($body, qr/ce-id.*ce-source.*ce-type/, 'the answer names the three missing headers');
like($body, qr/"rejected_id":(\d+)/, 'the answer gives the dead letter');
($code, $body) = http_request(body => event_json('bin-notype'),
	headers => [ grep(!/^ce-type/, @bin), 'ce-id: bin-notype' ]);
is($code, 400, 'no ce-type: 400');
like($body, qr/missing ce-type"/, 'the answer names ce-type, and only ce-type, as missing');
is(lake_count('bin-bare') . lake_count('bin-notype'), '00', 'neither is stored');
is(dead_count() - $dead0, 2, 'both are dead letters');
is(sql(
		"SELECT envelope->>'mode' || ' ' || (envelope->'headers'->>'ce-specversion') || ' ' || (envelope->'headers' ? 'ce-id')::text
		   FROM cdviz.rejected_events WHERE id = " . last_dead()),
	'binary 1.0 true', 'the dead letter keeps the ce-* headers it came with');

# ---- dead letters keep what was received -------------------------------
# a structured CloudEvent that is not a CDEvent: the CloudEvent, every byte
my $foreign = qq({"specversion":"1.0", "id":"x1","source":"/elsewhere",\n  "type":"com.example.foo","data":{"a":1}});
($code, $body) = http_request(body => $foreign,
	headers => ['Content-Type: application/cloudevents+json']);
is($code, 400, 'a structured CloudEvent that is no CDEvent: 400');
my ($rid) = $body =~ /"rejected_id":(\d+)/;
ok($rid, 'its answer names its dead letter') or diag($body);
raw_is($rid, $foreign, 'the dead letter is the CloudEvent as sent, id, type and source included');
is(sql("SELECT envelope->>'mode' FROM cdviz.rejected_events WHERE id = $rid"), 'structured',
	'and says it was a structured CloudEvent');

# a refused structured request keeps the bytes sent, not JSON printed again
my $old = qq({ "specversion" : "0.3" ,\n  "id" : "old-1", "source":"/s", "type":"$type", "data" : { } }\n);
($code, $body) = http_request(body => $old,
	headers => ['Content-Type: application/cloudevents+json; charset=UTF-8']);
is($code, 400, 'CloudEvents 0.3 structured: 400');
($rid) = $body =~ /"rejected_id":(\d+)/;
raw_is($rid, $old, 'the refused structured request is kept byte for byte');

# a batch element: its own bytes
my $good = qq({"specversion":"1.0","id":"bel-1","source":"/cdviz/test","type":"$type","data":)
  . event_json('bel-1') . '}';
my $bad = qq({ "specversion":"1.0",  "id":"bel-2", "source":"/x", "type":"com.example.foo", "data":{"b": [1, 2]} });
($code, $body) = http_request(body => "[\n  $good,\n  $bad\n]",
	headers => ['Content-Type: application/cloudevents-batch+json']);
is($code, 400, 'a batch with one foreign element: 400');
is(lake_count('bel-1'), '1', 'its CDEvent is stored');
($rid) = $body =~ /"rejected_id":(\d+)/;
raw_is($rid, $bad, 'the foreign element is kept as sent');
is(sql("SELECT envelope->>'mode' FROM cdviz.rejected_events WHERE id = $rid"), 'batch',
	'and says it came in a batch');

# binary mode, identity conflict: body and ce-* headers are kept, and the
# replay judges them together
($code, $body) = http_request(body => event_json('conflict-1'),
	headers => [ @bin, 'ce-id: conflict%20one' ]);
is($code, 400, 'ce-id disagreeing with context.id: 400');
($rid) = $body =~ /"rejected_id":(\d+)/;
raw_is($rid, event_json('conflict-1'), 'the body is kept as sent');
is(sql("SELECT envelope->'headers'->>'ce-id' FROM cdviz.rejected_events WHERE id = $rid"),
	'conflict%20one', 'with its ce-id header as received');
my ($ret, $out, $err) = $node->psql('postgres', "SELECT cdviz.replay_rejected($rid)");
isnt($ret, 0, 'replaying it still refuses it');
like($err, qr/does not match the CloudEvents attribute ce-id "conflict one"/,
	'for the same reason as the receiver');
is(lake_count('conflict-1'), '0', 'the replay stored nothing under the body\'s identity');
is(sql('SELECT (cdviz.replay_rejected(\'http\')).replayed'), '0',
	'a replay of every http dead letter stores none of the refused binary events');
is(lake_count('conflict-1') . lake_count('bin-bare'), '00', 'neither the conflict nor the bare one');

# once the header is corrected, the replay stores it under the agreed identity
sql("UPDATE cdviz.rejected_events SET envelope = jsonb_set(envelope, '{headers,ce-id}', '\"conflict-1\"') WHERE id = $rid");
ok(sql("SELECT cdviz.replay_rejected($rid)") > 0, 'the corrected dead letter replays');
is(lake_count('conflict-1'), '1', 'and is stored');

# ---- the CloudEvents JavaScript SDK --------------------------------------
my $node_modules = "$ENV{TESTDIR}/node_modules";
SKIP:
{
	skip "the CloudEvents SDK is not installed in $node_modules (scripts/test.sh installs it)", 6
	  unless -d "$node_modules/cloudevents";
	my $script = <<'EOF';
const { CloudEvent, HTTP } = require('cloudevents');
const [url, cdevent, foreign] = process.argv.slice(1);
const ce = (o) => new CloudEvent({ source: '/cdviz/test', datacontenttype: 'application/json', ...o });
async function post(message) {
	const r = await fetch(url, { method: 'POST', headers: message.headers, body: message.body });
	return r.status;
}
(async () => {
	const ev = JSON.parse(cdevent);
	const out = [];
	out.push(await post(HTTP.binary(ce({ id: ev.context.id, type: ev.context.type, data: ev }))));
	ev.context.id = 'sdk structured';
	out.push(await post(HTTP.structured(ce({ id: ev.context.id, type: ev.context.type, data: ev }))));
	out.push(await post(HTTP.binary(ce({ id: 'sdk-foreign', type: 'com.example.foo', data: JSON.parse(foreign) }))));
	console.log(out.join(' '));
})().catch((e) => { console.error(e); process.exit(1); });
EOF
	my ($stdout, $stderr) = ('', '');
	local $ENV{NODE_PATH} = $node_modules;
	IPC::Run::run([ 'node', '-e', $script, '--', "http://127.0.0.1:$http_port/cdevents",
			event_json('sdk binary'), '{"a":1}' ],
		'>', \$stdout, '2>', \$stderr);
	chomp $stdout;
	is($stdout, '201 201 400', 'SDK: binary 201, structured 201, a foreign event 400') or diag($stderr);
	is(lake_count('sdk binary'), '1', 'SDK binary mode: stored under its id (a space in it)');
	is(lake_count('sdk structured'), '1', 'SDK structured mode: stored');
	is(sql("SELECT raw FROM cdviz.rejected_events WHERE envelope->'headers'->>'ce-id' = 'sdk-foreign'"),
		'{"a":1}', 'SDK foreign event: its body kept');
	is(sql("SELECT envelope->'headers'->>'ce-type' FROM cdviz.rejected_events WHERE envelope->'headers'->>'ce-id' = 'sdk-foreign'"),
		'com.example.foo', 'with the ce-type the SDK sent');
	ok(sql("SELECT envelope->'headers' ? 'ce-time' FROM cdviz.rejected_events WHERE envelope->'headers'->>'ce-id' = 'sdk-foreign'")
		eq 't', 'and every other ce-* header');
}

ok(!$node->log_contains('terminated by signal'), 'no crash');
$node->stop;
done_testing();
