# RegistryTest.pm — what the oci source's TAP tests share: a real
# docker-registry (Debian's Distribution registry) on loopback, with or
# without htpasswd basic auth or token auth, images pushed through its API
# (blobs, then an OCI manifest) without Docker, and registry_front.py
# beside it (a proxy the test controls, a token endpoint, an ECR stand-in).
package RegistryTest;

use strict;
use warnings;
use Exporter 'import';
use Digest::SHA qw(sha256_hex);
use File::Basename qw(dirname);
use File::Path qw(make_path);
use HTTP::Tiny;
use IPC::Run;
use MIME::Base64 qw(encode_base64);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Time::HiRes qw(usleep);

our @EXPORT = qw(registry_available registry_start registry_stop front_start front_stop
  front_control front_log push_tags delete_tag token_keys wait_scans);

my $registry_bin = '/usr/bin/docker-registry';
my $http = HTTP::Tiny->new(keep_alive => 1, timeout => 30);

# Why the tests cannot run here, or undef.
sub registry_available
{
	return "docker-registry not installed ($registry_bin): apt-get install docker-registry"
	  unless -x $registry_bin;
	return 'openssl not found' unless grep { -x "$_/openssl" } split /:/, $ENV{PATH};
	return 'python3 not found' unless grep { -x "$_/python3" } split /:/, $ENV{PATH};
	return undef;
}

# An htpasswd line with a bcrypt hash, made by the C library's crypt(3)
# (libxcrypt knows $2b$), which the registry's Go bcrypt reads.
sub htpasswd_line
{
	my ($user, $pass) = @_;
	my @c = ('.', '/', 'A' .. 'Z', 'a' .. 'z', '0' .. '9');
	my $salt = join '', map { $c[ int rand @c ] } 1 .. 22;
	my $hash = crypt($pass, '$2b$05$' . $salt);
	die "crypt(3) here makes no bcrypt hash" unless $hash && $hash =~ /^\$2b\$/;
	return "$user:$hash\n";
}

# A key and a self-signed certificate for the token endpoint's JWTs:
# returns (key, cert) paths.
sub token_keys
{
	my ($dir) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', "$dir/token.key",
			'-out', "$dir/token.crt", '-days', '2', '-subj', '/CN=cdviz-test-token' ],
		'>', \$out, '2>', \$err) or die "openssl: $err";
	return ("$dir/token.key", "$dir/token.crt");
}

# Start a registry: %o users => { user => pass } for htpasswd basic auth,
# or token => { realm, service, issuer, cert } for token auth.  Returns a
# hash: port, url, dir, handle.
sub registry_start
{
	my (%o) = @_;
	my $dir = PostgreSQL::Test::Utils::tempdir();
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	my $auth = '';
	if ($o{users})
	{
		open my $fh, '>', "$dir/htpasswd" or die;
		print $fh htpasswd_line($_, $o{users}{$_}) for sort keys %{ $o{users} };
		close $fh;
		$auth = "auth:\n  htpasswd:\n    realm: cdviz-test\n    path: $dir/htpasswd\n";
	}
	elsif ($o{token})
	{
		my $t = $o{token};
		$auth = "auth:\n  token:\n    realm: $t->{realm}\n    service: $t->{service}\n"
		  . "    issuer: $t->{issuer}\n    rootcertbundle: $t->{cert}\n";
	}
	open my $fh, '>', "$dir/config.yml" or die;
	print $fh <<"EOF";
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
$auth
EOF
	close $fh;
	my $h = IPC::Run::start([ $registry_bin, 'serve', "$dir/config.yml" ],
		'>>', "$dir/registry.log", '2>>', "$dir/registry.log");
	my $url = "http://127.0.0.1:$port";
	started(sub { my $r = $http->get("$url/v2/"); $r->{status} == 200 || $r->{status} == 401 },
		"$dir/registry.log");
	return { port => $port, url => $url, dir => $dir, handle => $h };
}

# Wait (10 s at most) until $up->() is true, else die with the server's log.
sub started
{
	my ($up, $log) = @_;
	for (1 .. 100)
	{
		return if $up->();
		usleep(100_000);
	}
	die "$log: the server did not start:\n" . (-f $log ? slurp_file($log) : '');
}

sub registry_stop
{
	my ($reg) = @_;
	$reg->{handle}->kill_kill;
	$reg->{handle}->finish;
	return;
}

# Start registry_front.py; %o: port (a free one when not given), upstream,
# and its other options (token_key, token_cert, users, ecr_keys,
# ecr_password, ecr_region, ecr_expires).
# Returns a hash: port, url, log, control, handle.
sub front_start
{
	my (%o) = @_;
	my $dir = PostgreSQL::Test::Utils::tempdir();
	my $port = delete $o{port} // PostgreSQL::Test::Cluster::get_free_port();
	my @cmd = ('python3', dirname(__FILE__) . '/registry_front.py', '--port', $port,
		'--log', "$dir/front.log", '--control', "$dir/control");
	for my $k (sort keys %o)
	{
		(my $flag = $k) =~ s/_/-/g;
		push @cmd, "--$flag", $o{$k};
	}
	my $h = IPC::Run::start(\@cmd, '>>', "$dir/front.out", '2>>', "$dir/front.out");
	started(sub { -s "$dir/front.log" }, "$dir/front.out");
	return { port => $port, url => "http://127.0.0.1:$port", log => "$dir/front.log",
		control => "$dir/control", handle => $h };
}

sub front_stop
{
	my ($front) = @_;
	$front->{handle}->kill_kill;
	$front->{handle}->finish;
	return;
}

# Set the front's control file (see registry_front.py).
sub front_control
{
	my ($front, $text) = @_;
	open my $fh, '>', "$front->{control}.tmp" or die;
	print $fh $text;
	close $fh;
	rename "$front->{control}.tmp", $front->{control} or die;
	return;
}

sub front_log
{
	my ($front) = @_;
	return -f $front->{log} ? slurp_file($front->{log}) : '';
}

# A request to a registry as a client does it: basic credentials ($o{user},
# $o{pass}) first, and after a 401 with a bearer challenge, a token asked
# for at its realm (with the same credentials), kept in %$o for the scope.
sub registry_http
{
	my ($method, $url, $o, %req) = @_;
	my $basic = defined $o->{user} ? 'Basic ' . encode_base64("$o->{user}:$o->{pass}", '') : undef;
	for my $attempt (0, 1)
	{
		my %h = %{ $req{headers} // {} };
		$h{authorization} = $o->{bearer} ? "Bearer $o->{bearer}" : $basic if $o->{bearer} || $basic;
		my $r = $http->request($method, $url, { %req, headers => \%h });
		return $r unless $r->{status} == 401 && $attempt == 0;
		my $ch = $r->{headers}{'www-authenticate'} // '';
		return $r unless $ch =~ /^Bearer /;
		my %p = $ch =~ /(\w+)="([^"]*)"/g;
		my $t = $http->get("$p{realm}?service=$p{service}&scope=" . ($p{scope} // ''),
			{ headers => $basic ? { authorization => $basic } : {} });
		die "token: $t->{status} $t->{content}" unless $t->{status} == 200;
		($o->{bearer}) = $t->{content} =~ /"token":\s*"([^"]+)"/;
	}
}

# Push one image per tag to $url/$repo (its config and layer blobs, then an
# OCI manifest named after the tag and $o{salt}, so each tag has its own
# digest); %o: user, pass.  Returns { tag => digest }.
sub push_tags
{
	my ($url, $repo, $tags, %o) = @_;
	my %digests;
	my $blob = sub {
		my ($data) = @_;
		my $d = 'sha256:' . sha256_hex($data);
		my $r = registry_http('POST', "$url/v2/$repo/blobs/uploads/", \%o);
		die "upload: $r->{status} $r->{content}" unless $r->{status} == 202;
		my $loc = $r->{headers}{location};
		$loc = "$url$loc" if $loc =~ m{^/};
		$loc .= ($loc =~ /\?/ ? '&' : '?') . "digest=$d";
		$r = registry_http('PUT', $loc, \%o, content => $data,
			headers => { 'content-type' => 'application/octet-stream' });
		die "blob: $r->{status} $r->{content}" unless $r->{status} == 201;
		return ($d, length $data);
	};
	my ($cd, $cl) = $blob->('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}');
	my ($ld, $ll) = $blob->("a layer of $repo");
	for my $tag (@$tags)
	{
		my $salt = $o{salt} // '';
		my $m = qq({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",)
		  . qq("config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"$cd","size":$cl},)
		  . qq("layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"$ld","size":$ll}],)
		  . qq("annotations":{"org.opencontainers.image.ref.name":"$tag","salt":"$salt"}});
		my $r = registry_http('PUT', "$url/v2/$repo/manifests/$tag", \%o, content => $m,
			headers => { 'content-type' => 'application/vnd.oci.image.manifest.v1+json' });
		die "manifest $repo:$tag: $r->{status} $r->{content}" unless $r->{status} == 201;
		$digests{$tag} = $r->{headers}{'docker-content-digest'};
	}
	return \%digests;
}

# Delete the manifest $digest of $repo (and so every tag pointing to it).
sub delete_tag
{
	my ($url, $repo, $digest, %o) = @_;
	my $r = registry_http('DELETE', "$url/v2/$repo/manifests/$digest", \%o);
	die "delete: $r->{status} $r->{content}" unless $r->{status} == 202;
	return;
}

# Wait until $node's source $name has ended $n more scans with success.
sub wait_scans
{
	my ($node, $name, $n) = @_;
	my $sql = "SELECT last_success_at FROM cdviz.source_status WHERE name = '$name'";
	my $before = $node->safe_psql('postgres', $sql);
	for (1 .. $n)
	{
		$node->poll_query_until('postgres',
			"SELECT last_success_at > '$before' FROM cdviz.source_status WHERE name = '$name'")
		  or die "no scan of $name";
		$before = $node->safe_psql('postgres', $sql);
	}
	return;
}

1;
