# NATS both ways against a real nats-server with JetStream: a sink
# publishing to a stream (Nats-Msg-Id = context id) and one to a plain
# subject; the source storing what is published into its stream exactly
# once across a SIGKILL of its worker and a restart of nats-server,
# and dead-lettering a bad message with its subject and stream sequence.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use DispatchTest;
use IPC::Run;
use JSON::PP;
use MIME::Base64;
use MiniNats;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

plan skip_all => 'nats-server is not installed' unless MiniNats::server_bin();

my $tmp = PostgreSQL::Test::Utils::tempdir();
my $nport = PostgreSQL::Test::Cluster::get_free_port();
my $nats;

sub start_nats
{
	my $c;
	($nats, $c) = MiniNats::start_server($tmp, $nport);
	return $c;
}

my $nc = start_nats();
sub js_api
{
	my ($what, $body) = @_;
	return $nc->request("\$JS.API.$what", $body);
}
my $r = js_api('STREAM.CREATE.OUT', encode_json({ name => 'OUT', subjects => ['cdevents.>'], storage => 'file' }));
ok(!$r->{error}, 'stream OUT created') or diag explain $r;
$r = js_api('STREAM.CREATE.IN', encode_json({ name => 'IN', subjects => ['in.>'], storage => 'file' }));
ok(!$r->{error}, 'stream IN created') or diag explain $r;

my $node = dispatch_node('dispatch_nats', qq(
cdviz.nats_url = 'nats://127.0.0.1:$nport'
cdviz.nats_subjects = 'in.>'
cdviz.nats_stream = 'IN'
));
sub sql { return $node->safe_psql('postgres', $_[0]); }

# ---- out: JetStream and a plain subject ------------------------------------
# a connection of its own: the JetStream API requests below must not eat its messages
my $listener = MiniNats->new($nport);
$listener->subscribe('plain.>');
sql(q{SELECT cdviz.create_sink('js', 'nats', 'cdevents.{subject}.{predicate}')});
sql(q{SELECT cdviz.create_sink('plain', 'nats', 'plain.{subject}', '{"jetstream": "never"}')});
ingest_events($node, 'n-', 1, 300, 100);
ok(wait_for_sink($node, 'js', 300, 60), 'the JetStream sink delivered 300 events');
$r = js_api('STREAM.INFO.OUT', '');
is($r->{state}{messages}, 300, 'stream OUT holds 300 messages');
my $m = js_api('STREAM.MSG.GET.OUT', encode_json({ seq => 1 }));
my $hdrs = MIME::Base64::decode_base64($m->{message}{hdrs} // '');
like($hdrs, qr/Nats-Msg-Id:\s*n-1\r/, 'Nats-Msg-Id is the context id');
like($hdrs, qr/ce-type:\s*dev\.cdeventsx\.probe-item\.created/, 'with the CloudEvents binary headers');
is($m->{message}{subject}, 'cdevents.probe-item.created', 'on the subject of the template');
like(MIME::Base64::decode_base64($m->{message}{data}), qr/"id": "n-1"/, 'the event as data');

my @plain;
while (@plain < 300 and my $msg = $listener->next_msg(10))
{
	push @plain, decode_json($msg->{data})->{context}{id} if $msg->{subject} =~ /^plain\./;
}
is_deeply(\@plain, [ map { "n-$_" } 1 .. 300 ], 'the core NATS sink published every event, in order');

# a republished chunk is dropped by JetStream: Nats-Msg-Id dedup
sql(q{SELECT cdviz.create_sink('js-again', 'nats', 'cdevents.{subject}.{predicate}', start_at => '-infinity')});
ok(wait_for_sink($node, 'js-again', 300, 60), 'a second sink on the same stream re-sent everything');
is(js_api('STREAM.INFO.OUT', '')->{state}{messages}, 300, 'and the stream kept one copy of each');

# ---- in: the source, across a kill of its worker and a nats-server restart ----
sub publish_in
{
	my ($from, $to) = @_;
	for my $i ($from .. $to)
	{
		my $id = "in-$i";
		my $ev = DispatchTest::event_doc($id, '/nats/in');
		if ($i % 3 == 0)
		{
			# binary mode: ce-* headers, the CDEvent as data
			$nc->publish('in.binary', $ev, { 'ce-specversion' => '1.0', 'ce-id' => $id,
				'ce-source' => '/nats/in', 'ce-type' => 'dev.cdeventsx.probe-item.created.0.1.0',
				'content-type' => 'application/json' });
		}
		elsif ($i % 3 == 1)
		{
			$nc->publish('in.structured', qq({"specversion":"1.0","id":"$id","source":"/nats/in",)
				  . qq("type":"dev.cdeventsx.probe-item.created.0.1.0","data":$ev}),
				{ 'content-type' => 'application/cloudevents+json' });
		}
		else
		{
			$nc->publish('in.plain', $ev);
		}
	}
}
# (while the server restarts after the SIGKILL, a failed query counts as -1)
sub stored_in
{
	my ($rc, $out) = $node->psql('postgres',
		q{SELECT count(*) FROM cdviz.cdevents_lake WHERE context_id LIKE 'in-%'});
	return $rc == 0 ? $out : -1;
}

publish_in(1, 500);
ok(wait_until('source', 60, sub { stored_in() >= 100 }), 'the source is storing');
my $pid = sql("SELECT pid FROM pg_stat_activity WHERE application_name = 'cdviz source settings.nats'");
kill 'KILL', $pid;
publish_in(501, 1000);
ok(wait_until('all 1000', 120, sub { stored_in() == 1000 }), 'after the SIGKILL every message is stored')
  or diag(sql(q{SELECT substr(context_id, 4)::int % 3, count(*), min(substr(context_id, 4)::int), max(substr(context_id, 4)::int)
		FROM cdviz.cdevents_lake WHERE context_id LIKE 'in-%' GROUP BY 1}),
	' rejected: ', sql(q{SELECT count(*) FROM cdviz.rejected_events}),
	' lake: ', sql(q{SELECT count(*) FROM cdviz.cdevents_lake}),
	' ', encode_json(js_api('CONSUMER.INFO.IN.cdviz', '')));

# nats-server goes away and comes back with its store
$nats->kill_kill;
$nats->finish;
$nc = start_nats();
publish_in(1001, 1500);
ok(wait_until('all 1500', 120, sub { stored_in() == 1500 }), 'after the nats-server restart too');
is(sql(q{SELECT count(DISTINCT context_id) FROM cdviz.cdevents_lake WHERE context_id LIKE 'in-%'}), '1500',
	'each message stored exactly once');

# ---- a bad message is dead-lettered -----------------------------------------
$nc->publish('in.bad', '{"not": "an event"');
ok(wait_until('dead letter', 30, sub {
	sql(q{SELECT count(*) FROM cdviz.rejected_events WHERE origin = 'nats'}) eq '1' }),
	'the bad message is in rejected_events');
like(sql(q{SELECT origin_ref FROM cdviz.rejected_events WHERE origin = 'nats'}), qr/^in\.bad#\d+$/,
	'with its subject and stream sequence');
my $cons = js_api('CONSUMER.INFO.IN.cdviz', '');
is($cons->{num_ack_pending}, 0, 'every message was acknowledged once stored (the bad one too)');

$nats->kill_kill;
$node->stop;
done_testing();
