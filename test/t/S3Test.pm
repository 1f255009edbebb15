# An S3-compatible server for the tests: s3rver (npm, installed by
# scripts/test.sh) on loopback with one bucket "bkt", and uploads with
# curl signing SigV4 as S3 clients do.
package S3Test;

use strict;
use warnings;
use Exporter 'import';
use File::Path qw(make_path);
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Time::HiRes qw(usleep);

our @EXPORT = qw(s3rver_missing);

my $s3rver = "$ENV{TESTDIR}/node_modules/.bin/s3rver";

# s3rver 3.7.1 makes continuation tokens with DES, which Node 17+ (OpenSSL
# 3) refuses unless the legacy provider is loaded: listings past one page
# would answer 500.
$ENV{NODE_OPTIONS} = '--openssl-legacy-provider';

# Why the S3 tests cannot run here, or undef.
sub s3rver_missing
{
	return -x $s3rver ? undef
	  : "s3rver not installed ($s3rver): run scripts/test.sh or npm install --no-save s3rver\@3.7.1";
}

# A server keeping its objects under $dir (made when missing), started.
sub new
{
	my ($class, $dir) = @_;
	my $self = bless {
		dir => $dir,
		port => PostgreSQL::Test::Cluster::get_free_port(),
		upload => 0,
	}, $class;
	make_path($dir);
	$self->{url} = "http://127.0.0.1:$self->{port}";
	$self->start;
	return $self;
}

sub url { return $_[0]->{url}; }

# Start the server (again) and wait until it lists the bucket.
sub start
{
	my ($self) = @_;
	my $log = "$self->{dir}.log";
	$self->{h} = IPC::Run::start(
		[ $s3rver, '-d', $self->{dir}, '-p', $self->{port}, '-a', '127.0.0.1', '--configure-bucket', 'bkt', '--silent' ],
		'>>', $log, '2>>', $log);
	for (1 .. 100)
	{
		my $out = '';
		IPC::Run::run([ 'curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', $self->_sign,
			"$self->{url}/bkt?list-type=2&max-keys=1" ], '>', \$out, '2>', \my $err);
		return if $out eq '200';
		usleep(200_000);
	}
	die 's3rver did not start: ' . slurp_file($log);
}

sub stop
{
	my ($self) = @_;
	$self->{h}->kill_kill;
	$self->{h}->finish;
}

# Upload objects (key => body) into bkt with one curl run.
sub put
{
	my ($self, %objs) = @_;
	my $n = $self->{upload}++;
	my $cfg = "$self->{dir}.put$n.cfg";
	open my $fh, '>', $cfg or die;
	print $fh qq(aws-sigv4 = "aws:amz:us-east-1:s3"\nuser = "S3RVER:S3RVER"\n);
	print $fh qq(header = "x-amz-content-sha256: UNSIGNED-PAYLOAD"\nsilent\nfail\n);
	my $i = 0;
	for my $key (sort keys %objs)
	{
		my $f = "$self->{dir}.body${n}_" . $i++;
		open my $b, '>:raw', $f or die;
		print $b $objs{$key};
		close $b;
		print $fh qq(upload-file = "$f"\nurl = "$self->{url}/bkt/$key"\noutput = "/dev/null"\n);
	}
	close $fh;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'curl', '-K', $cfg ], '>', \$out, '2>', \$err)
	  or die "upload failed: $err";
}

# The options of a source reading bkt/<prefix> of this server.
sub source_options
{
	my ($self, $extra) = @_;
	return qq({"endpoint": "$self->{url}", "path_style": true, "access_key_id": "S3RVER", )
	  . qq("secret_access_key": "S3RVER", "poll_interval": 1) . ($extra ? ", $extra" : '') . '}';
}

sub _sign
{
	return ('--aws-sigv4', 'aws:amz:us-east-1:s3', '--user', 'S3RVER:S3RVER',
		'-H', 'x-amz-content-sha256: UNSIGNED-PAYLOAD');
}

1;
