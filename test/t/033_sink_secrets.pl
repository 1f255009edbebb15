# A sink's secrets are kept in cdviz.sink_secrets and shown as *** in
# cdviz.sinks (test/pgtap/32_reader_secrets.sql): the dispatcher must still
# send them.  A receiver that requires the URL's user info (HTTP Basic), a
# header and a query value gets every event; so it does after alter_sink()
# was given the options as cdviz.sinks shows them (*** keeps the value);
# and a receiver that answers a failure with the request it was sent
# leaves no secret in the last error that cdviz_reader reads.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use DispatchTest;
use MIME::Base64 qw(encode_base64);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $tmp = PostgreSQL::Test::Utils::tempdir();
my $node = dispatch_node('sink_secrets');
my $recv = start_receiver($tmp);

sub sql { return $node->safe_psql('postgres', $_[0]); }

my %needs = (
	require_auth => 'authorization: Basic ' . encode_base64('user-s3kr1t:pass-s3kr1t', ''),
	require_key => 'x-api-key: header-s3kr1t',
	require_target => '/in?key=query-s3kr1t&v=2');
receiver_control($recv, %needs);

sql(qq{SELECT cdviz.create_sink('creds', 'http',
	'http://user-s3kr1t:pass-s3kr1t\@127.0.0.1:$recv->{port}/in?key=query-s3kr1t&v=2',
	'{"headers": {"X-Api-Key": "header-s3kr1t"}, "timeout": 2, "initial_backoff": 0.05, "max_backoff": 0.3}')});
is(sql(q{SELECT target || ' ' || (options->>'headers') FROM cdviz.sinks WHERE name = 'creds'}),
	"http://***\@127.0.0.1:$recv->{port}/in?key=***&v=*** {\"X-Api-Key\": \"***\"}",
	'cdviz.sinks shows the secrets as ***');

ingest_events($node, 'a-', 1, 20, 10);
ok(wait_for_sink($node, 'creds', 20, 60), 'the sink delivered the first events');
is(scalar(receiver_ids($recv)), 20, 'the receiver took them all: user info, header and query were sent');
is(sql(q{SELECT rejected FROM cdviz.sink_status WHERE name = 'creds'}), '0', 'none was refused');

# the options as cdviz.sinks shows them, one changed: the secrets stay
sql(q{SELECT cdviz.alter_sink('creds', target => (SELECT target FROM cdviz.sinks WHERE name = 'creds'),
	options => (SELECT options || '{"mode": "batch", "batch_size": 4}' FROM cdviz.sinks WHERE name = 'creds'))});
ingest_events($node, 'b-', 1, 10, 10);
ok(wait_for_sink($node, 'creds', 30, 60), 'after alter_sink with *** the sink delivers');
is(scalar(grep { /^b-/ } receiver_ids($recv)), 10, 'with the same secrets');
is(sql(q{SELECT rejected FROM cdviz.sink_status WHERE name = 'creds'}), '0', 'none was refused');

# a receiver that echoes the request in its failure
receiver_control($recv, echo_fail => 1);
ingest_events($node, 'c-', 1, 1, 1);
ok(wait_until('a recorded failure', 60, sub {
	sql(q{SELECT last_error LIKE 'HTTP 500:%' FROM cdviz.sink_status WHERE name = 'creds'}) eq 't' }),
	'the failure is recorded');
my $err = sql(q{SELECT last_error FROM cdviz.sink_status WHERE name = 'creds'});
like($err, qr/x-api-key: \*\*\*/i, 'the echoed header is recorded with its value as ***');
unlike($err, qr/s3kr1t/, 'no secret in the last error cdviz_reader reads');

receiver_control($recv, %needs);
ok(wait_for_sink($node, 'creds', 31, 60), 'the sink delivers once the receiver takes it');

$recv->{h}->kill_kill;
$node->stop;
done_testing();
