# The Kafka sink against librdkafka's mock cluster (test/kafka/mock_cluster.c),
# read back with kcat: every stored event reaches the topic once, keyed by
# its subject id and in storage order per key, with the CloudEvents binary
# headers; through every broker down and failed Produce requests, nothing
# is lost and nothing doubled (idempotent producer); through an outage
# longer than the delivery timeout, every event arrives at least once and
# the last copies keep the order per key (an event counts as delivered only
# when its delivery report says so); structured mode; pause and resume;
# a secret librdkafka setting that cdviz_reader never sees; a message too
# large for the broker refused for good while the others go on.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use DispatchTest;
use JSON::PP;
use KafkaTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $why = KafkaTest::available();
plan skip_all => $why if $why;

my $tmp = PostgreSQL::Test::Utils::tempdir();
my $kafka = KafkaTest->start($tmp, 3);
my $bs = $kafka->bootstrap;
$kafka->topic('cdevents', 4, 3);
$kafka->topic('structured', 2, 1);
$kafka->topic('quiet', 1, 1);

my $node = dispatch_node('dispatch_kafka');
sub sql { return $node->safe_psql('postgres', $_[0]); }

# Events whose subjects repeat (seven subjects), so that each key has many
# events whose order can be checked.
sub ingest
{
	my ($prefix, $from, $to, $b) = @_;
	for (my $i = $from; $i <= $to; $i += $b)
	{
		my $hi = $i + $b - 1 > $to ? $to : $i + $b - 1;
		my @docs;
		for my $n ($i .. $hi)
		{
			my $id = "$prefix$n";
			my $subject = 'subj-' . ($n % 7);
			push @docs, qq({"context":{"version":"0.4.1","id":"$id","source":"/kafka/test",)
			  . qq("type":"dev.cdeventsx.probe-item.created.0.1.0","timestamp":"2024-05-01T10:00:00Z"},)
			  . qq("subject":{"id":"$subject","source":"/kafka/test","type":"probe-item","content":{"n":$n}}});
		}
		sql("SELECT stored FROM cdviz.ingest_batch('[" . join(',', @docs) . "]')");
	}
}

sub num { my ($id) = @_; $id =~ /(\d+)$/; return $1; }

# Messages of $prefix, in partition and offset order.
sub messages
{
	my ($topic, $prefix, $want, $seconds) = @_;
	my @m = grep { ($_->{headers}{ce_id} // decode_json($_->{value})->{id} // '') =~ /^\Q$prefix\E\d+$/ }
	  $kafka->consume($topic, $want, $seconds);
	return sort { $a->{partition} <=> $b->{partition} || $a->{offset} <=> $b->{offset} } @m;
}

# Per key, the events in the order of the partition (keeping the last copy
# of an event sent more than once): false with a diagnostic when one is
# out of storage order.
sub in_key_order
{
	my ($msgs, $id_of) = @_;
	my %seq;
	push @{ $seq{ $_->{key} // '' } }, num($id_of->($_)) for @$msgs;
	for my $k (sort keys %seq)
	{
		my %last;
		my @s = @{ $seq{$k} };
		$last{ $s[$_] } = $_ for 0 .. $#s;
		my @kept = map { $s[$_] } grep { $last{ $s[$_] } == $_ } 0 .. $#s;
		for (1 .. $#kept)
		{
			next if $kept[$_] > $kept[ $_ - 1 ];
			diag("key $k: $kept[$_ - 1] before $kept[$_]");
			return 0;
		}
	}
	return 1;
}
sub ce_id { return $_[0]->{headers}{ce_id}; }

# ---- options are checked ------------------------------------------------------
my ($rc, $out, $err) = $node->psql('postgres',
	qq{SELECT cdviz.create_sink('bad', 'kafka', 'cdevents', '{"brokers": "$bs", "partition": 1}')});
like($err, qr/unknown option "partition" for a kafka sink.*brokers, mode, key, config, timeout/s,
	'an unknown option is refused, the known ones listed');
($rc, $out, $err) = $node->psql('postgres',
	qq{SELECT cdviz.create_sink('bad', 'kafka', 'cdevents', '{"brokers": "$bs", "config": {"acks": "1"}}')});
like($err, qr/the kafka sink sets "acks" itself/, 'a setting the guarantees rest on is refused');
($rc, $out, $err) = $node->psql('postgres', q{SELECT cdviz.create_sink('bad', 'kafka', 'cdevents', '{}')});
like($err, qr/needs "brokers"/, 'brokers are required');

# ---- binary mode, keyed by subject --------------------------------------------
sql(qq{SELECT cdviz.create_sink('k', 'kafka', 'cdevents',
	'{"brokers": "$bs", "timeout": 30, "initial_backoff": 0.05, "max_backoff": 0.5}')});
ingest('a-', 1, 300, 50);
ok(wait_for_sink($node, 'k', 300, 60), 'the sink delivered 300 events');
my @m = messages('cdevents', 'a-', 300);
is(scalar(@m), 300, '300 messages on the topic');
is(scalar(keys %{ { map { (ce_id($_) => 1) } @m } }), 300, 'each event once');
ok(in_key_order(\@m, \&ce_id), 'in storage order per key');
my ($first) = grep { ce_id($_) eq 'a-8' } @m;
is($first->{key}, 'subj-1', 'the key is the subject id');
is_deeply([ @{ $first->{headers} }{qw(content-type ce_specversion ce_id ce_source ce_type ce_time ce_subject)} ],
	[ 'application/json', '1.0', 'a-8', '/kafka/test', 'dev.cdeventsx.probe-item.created.0.1.0',
	  '2024-05-01T10:00:00Z', 'subj-1' ],
	'with the CloudEvents binary headers');
is(decode_json($first->{value})->{context}{id}, 'a-8', 'and the CDEvent as value');
my %parts = map { ($_->{key} => {}) } @m;
$parts{ $_->{key} }{ $_->{partition} } = 1 for @m;
ok(!grep({ keys %{ $parts{$_} } != 1 } keys %parts), 'each key on one partition');
cmp_ok(scalar(keys %{ { map { ($_->{partition} => 1) } @m } }), '>', 1, 'the keys spread over partitions');

# ---- every broker down mid-stream, then failed Produce requests ---------------
ingest('b-', 1, 100, 50);
$kafka->broker_down(-1);
ingest('b-', 101, 300, 50);
sleep 3;
$kafka->broker_up(-1);
$kafka->push_errors($KafkaTest::PRODUCE, ($KafkaTest::ERR_NOT_LEADER) x 3, ($KafkaTest::ERR_NOT_ENOUGH_REPLICAS) x 2,
	$KafkaTest::ERR_REQUEST_TIMED_OUT);
ingest('b-', 301, 600, 50);
ok(wait_for_sink($node, 'k', 900, 90), 'after the outage and the failed requests the sink caught up');
@m = messages('cdevents', 'b-', 600);
is(scalar(@m), 600, 'the topic holds the 600 events');
is(scalar(keys %{ { map { (ce_id($_) => 1) } @m } }), 600, 'each once: no loss, no duplicate');
ok(in_key_order(\@m, \&ce_id), 'in storage order per key');

# ---- an outage longer than the delivery timeout: reports say what failed ------
sql(qq{SELECT cdviz.alter_sink('k', options => '{"brokers": "$bs", "timeout": 1, "initial_backoff": 0.2, "max_backoff": 1}')});
ingest('c-', 1, 50, 50);
ok(wait_for_sink($node, 'k', 950, 60), 'the sink delivers with the shorter timeout');
$kafka->broker_down(-1);
ingest('c-', 51, 250, 50);
ok(wait_until('a failure', 60, sub { sql(q{SELECT failures > 0 FROM cdviz.sink_status WHERE name = 'k'}) eq 't' }),
	'the timed-out deliveries are failures');
like(sql(q{SELECT last_error FROM cdviz.sink_status WHERE name = 'k'}), qr/did not acknowledge|timed out/i,
	'with the reason');
sleep 2;
cmp_ok(sql(q{SELECT delivered FROM cdviz.sink_status WHERE name = 'k'}), '<', 1150,
	'nothing counts as delivered while every broker is down');
$kafka->broker_up(-1);
ok(wait_for_sink($node, 'k', 1150, 90), 'the sink caught up after the outage');
@m = messages('cdevents', 'c-', 250);
is(scalar(keys %{ { map { (ce_id($_) => 1) } @m } }), 250, 'every event arrived (at least once)');
ok(in_key_order(\@m, \&ce_id), 'the last copies in storage order per key');

# ---- structured mode, keyed by source -----------------------------------------
sql(qq{SELECT cdviz.create_sink('s', 'kafka', 'structured',
	'{"brokers": "$bs", "mode": "structured", "key": "source", "initial_backoff": 0.05}')});
ingest('d-', 1, 40, 20);
ok(wait_for_sink($node, 's', 40, 60), 'the structured sink delivered 40 events');
@m = messages('structured', 'd-', 40);
is(scalar(@m), 40, '40 messages');
my $ce = decode_json($m[0]{value});
is($m[0]{headers}{'content-type'}, 'application/cloudevents+json', 'structured content type');
is_deeply([ @$ce{qw(specversion source type subject partitionkey datacontenttype)} ],
	[ '1.0', '/kafka/test', 'dev.cdeventsx.probe-item.created.0.1.0', $ce->{data}{subject}{id},
	  '/kafka/test', 'application/json' ], 'the whole CloudEvent as value');
is($ce->{data}{context}{id}, $ce->{id}, 'the CDEvent as its data');
is($m[0]{key}, '/kafka/test', 'the key is the source');
ok(in_key_order(\@m, sub { decode_json($_[0]{value})->{id} }), 'in storage order');
ok(!grep({ $_->{headers}{ce_id} } @m), 'no ce_ header in structured mode');

# ---- pause and resume ----------------------------------------------------------
sql(q{SELECT cdviz.pause_sink('s')});
ingest('e-', 1, 30, 30);
sleep 2;
my @none = messages('structured', 'e-', undef);
is(scalar(@none), 0, 'a paused sink sends nothing');
is(sql(q{SELECT pending FROM cdviz.sink_status WHERE name = 's'}), '30', 'its events wait');
sql(q{SELECT cdviz.resume_sink('s')});
ok(wait_for_sink($node, 's', 70, 60), 'resumed, it delivers them');
@m = messages('structured', 'e-', 30);
is(scalar(@m), 30, 'all 30');

is(sql(q{SELECT kind || ' ' || delivered || ' ' || rejected FROM cdviz.sink_status WHERE name = 's'}),
	'kafka 70 0', 'cdviz.sink_status counts the kafka sink');

# ---- a secret setting ----------------------------------------------------------
sql(qq{SELECT cdviz.create_sink('creds', 'kafka', 'quiet',
	'{"brokers": "$bs", "config": {"sasl.password": "kafka-s3kr1t", "client.id": "cdviz-test"}}',
	type_pattern => 'nothing')});
is(sql(q{SELECT options->'config' FROM cdviz.sinks WHERE name = 'creds'}),
	'{"client.id": "cdviz-test", "sasl.password": "***"}', 'cdviz.sinks shows the secret setting as ***');
is(sql(q{SELECT secret_keys FROM cdviz.sinks WHERE name = 'creds'}), '{config}', 'secret_keys names it');
sql(q{SELECT cdviz.alter_sink('creds', options => (SELECT options || '{"key": "none"}' FROM cdviz.sinks WHERE name = 'creds'))});
is(sql(q{SELECT secrets->'config'->>'sasl.password' FROM cdviz.sink_secrets x JOIN cdviz.sinks s ON s.id = x.sink_id
	WHERE s.name = 'creds'}), 'kafka-s3kr1t', 'alter_sink with *** keeps the secret');
sql(q{CREATE ROLE tap_reader LOGIN IN ROLE cdviz_reader});
my $seen = $node->safe_psql('postgres', q{SELECT s::text FROM cdviz.sinks s UNION ALL SELECT t::text FROM cdviz.sink_status t},
	extra_params => [ '-U', 'tap_reader' ]);
unlike($seen, qr/s3kr1t/, 'cdviz_reader sees no secret in cdviz.sinks or cdviz.sink_status');
($rc, $out, $err) = $node->psql('postgres', 'SELECT * FROM cdviz.sink_secrets', extra_params => [ '-U', 'tap_reader' ]);
like($err, qr/permission denied/, 'nor in cdviz.sink_secrets');
is(sql(q{SELECT count(*) FROM cdviz.sinks WHERE name = 'creds'}), '1', 'the sink exists');

# ---- a message too large for the broker is refused for good -------------------
sql(qq{SELECT cdviz.create_sink('small', 'kafka', 'quiet',
	'{"brokers": "$bs", "config": {"message.max.bytes": 1000}, "initial_backoff": 0.05}')});
my $big = 'x' x 2000;
sql(q{SELECT stored FROM cdviz.ingest_batch('[}
	  . join(',', map {
		my $content = $_ == 2 ? qq({"pad":"$big"}) : '{"n":1}';
		qq({"context":{"version":"0.4.1","id":"f-$_","source":"/kafka/test","type":"dev.cdeventsx.probe-item.created.0.1.0",)
		  . qq("timestamp":"2024-05-01T10:00:00Z"},"subject":{"id":"subj-f","source":"/kafka/test","type":"probe-item","content":$content}})
	  } 1 .. 3) . q{]')});
ok(wait_for_sink($node, 'small', 3, 60), 'the sink settled the three events');
is(sql(q{SELECT delivered || ' ' || rejected FROM cdviz.sink_status WHERE name = 'small'}), '2 1',
	'two delivered, the large one refused');
is(sql(q{SELECT d.status || ' ' || e.context_id FROM cdviz.rejected_deliveries d
	JOIN cdviz.cdevents_lake e ON e.id = d.event_id JOIN cdviz.sinks s ON s.id = d.sink_id WHERE s.name = 'small'}),
	'10 f-2', 'dead-lettered with the Kafka error code (MSG_SIZE_TOO_LARGE)');
@m = messages('quiet', 'f-', 2);
is(join(' ', map { ce_id($_) } @m), 'f-1 f-3', 'the others reached the topic, in order');

$node->stop;
$kafka->stop;
done_testing();
