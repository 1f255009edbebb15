#!/usr/bin/perl
# bench/gen_junit.pl — JUnit XML reports shaped as Maven Surefire writes
# them, for bench/sources.sh.
#
#   perl bench/gen_junit.pl DIR FILES CASES [SEED]
#
# Writes FILES reports DIR/TEST-<class>.xml of CASES test cases each: a
# <testsuite> with Surefire's attributes and its block of JVM properties
# (the long class path included), then the cases, each with classname and
# time.  About 4% of the cases fail (message, type, a stack trace of 10 to
# 30 frames, some with <system-out>), 1% err, 3% are skipped; a tenth of
# the cases are parameterized ("[3] amount=…").  The same SEED (default 1)
# gives the same files, byte for byte.
use strict;
use warnings;

my ($dir, $files, $cases, $seed) = @ARGV;
die "usage: $0 DIR FILES CASES [SEED]\n" unless defined $cases && $cases =~ /^\d+$/;
srand($seed // 1);

my @modules = qw(billing catalog checkout identity inventory ledger notify orders payments
  pricing search shipping);
my @nouns = qw(Invoice Order Cart Customer Account Payment Refund Shipment Price Discount Coupon
  Token Session Report Ledger Entry Warehouse Item Quantity Currency Address Tax);
my @verbs = qw(computes rejects accepts returns stores loads updates deletes validates rounds
  converts splits merges sends retries expires caches signs parses formats);
my @conds = qw(WhenEmpty WhenNegative WhenMissing OnTimeout AfterRetry ForLargeValues
  WithDiscount WithoutCurrency OnConflict WhenExpired InParallel ForUnicodeNames);
my @java_frames = (
	'org.junit.jupiter.api.AssertionFailureBuilder.build(AssertionFailureBuilder.java:151)',
	'org.junit.jupiter.api.AssertionFailureBuilder.buildAndThrow(AssertionFailureBuilder.java:132)',
	'org.junit.jupiter.api.AssertEquals.failNotEqual(AssertEquals.java:197)',
	'org.junit.jupiter.api.AssertEquals.assertEquals(AssertEquals.java:182)',
	'org.junit.jupiter.api.Assertions.assertEquals(Assertions.java:1141)',
	'java.base/jdk.internal.reflect.NativeMethodAccessorImpl.invoke0(Native Method)',
	'java.base/jdk.internal.reflect.NativeMethodAccessorImpl.invoke(NativeMethodAccessorImpl.java:77)',
	'java.base/jdk.internal.reflect.DelegatingMethodAccessorImpl.invoke(DelegatingMethodAccessorImpl.java:43)',
	'java.base/java.lang.reflect.Method.invoke(Method.java:568)',
	'org.junit.platform.commons.util.ReflectionUtils.invokeMethod(ReflectionUtils.java:727)',
	'org.junit.jupiter.engine.execution.MethodInvocation.proceed(MethodInvocation.java:60)',
	'org.junit.jupiter.engine.execution.InvocationInterceptorChain$ValidatingInvocation.proceed(InvocationInterceptorChain.java:131)',
	'org.junit.jupiter.engine.extension.TimeoutExtension.intercept(TimeoutExtension.java:156)',
	'org.junit.jupiter.engine.extension.TimeoutExtension.interceptTestableMethod(TimeoutExtension.java:147)',
	'org.junit.jupiter.engine.descriptor.TestMethodTestDescriptor.invokeTestMethod(TestMethodTestDescriptor.java:217)',
	'org.junit.platform.engine.support.hierarchical.ThrowableCollector.execute(ThrowableCollector.java:73)',
	'org.junit.platform.engine.support.hierarchical.NodeTestTask.executeRecursively(NodeTestTask.java:151)',
	'org.apache.maven.surefire.junitplatform.JUnitPlatformProvider.invoke(JUnitPlatformProvider.java:124)',
	'org.apache.maven.surefire.booter.ForkedBooter.runSuitesInProcess(ForkedBooter.java:385)',
	'org.apache.maven.surefire.booter.ForkedBooter.main(ForkedBooter.java:507)',
);

sub pick { $_[int(rand(@_))] }

sub xml_attr
{
	my ($s) = @_;
	$s =~ s/&/&amp;/g;
	$s =~ s/</&lt;/g;
	$s =~ s/>/&gt;/g;
	$s =~ s/"/&quot;/g;
	return $s;
}

sub seconds { sprintf('%.3f', $_[0]) }

sub properties
{
	my ($module) = @_;
	my $repo = '/home/runner/.m2/repository';
	my $cp = join(':',
		"/home/runner/work/shop/$module/target/test-classes",
		"/home/runner/work/shop/$module/target/classes",
		map { "$repo/$_" } qw(
		  org/junit/jupiter/junit-jupiter-api/5.10.1/junit-jupiter-api-5.10.1.jar
		  org/opentest4j/opentest4j/1.3.0/opentest4j-1.3.0.jar
		  org/junit/platform/junit-platform-commons/1.10.1/junit-platform-commons-1.10.1.jar
		  org/apiguardian/apiguardian-api/1.1.2/apiguardian-api-1.1.2.jar
		  org/junit/jupiter/junit-jupiter-params/5.10.1/junit-jupiter-params-5.10.1.jar
		  org/junit/jupiter/junit-jupiter-engine/5.10.1/junit-jupiter-engine-5.10.1.jar
		  org/mockito/mockito-core/5.8.0/mockito-core-5.8.0.jar
		  net/bytebuddy/byte-buddy/1.14.10/byte-buddy-1.14.10.jar
		  org/assertj/assertj-core/3.24.2/assertj-core-3.24.2.jar
		  com/fasterxml/jackson/core/jackson-databind/2.16.0/jackson-databind-2.16.0.jar
		  org/slf4j/slf4j-api/2.0.9/slf4j-api-2.0.9.jar));
	my @p = (
		['java.specification.version', '17'],
		['sun.jnu.encoding', 'UTF-8'],
		['java.class.path', $cp],
		['java.vm.vendor', 'Eclipse Adoptium'],
		['sun.arch.data.model', '64'],
		['java.vendor.url', 'https://adoptium.net/'],
		['os.name', 'Linux'],
		['java.vm.specification.version', '17'],
		['sun.java.launcher', 'SUN_STANDARD'],
		['user.country', 'US'],
		['sun.boot.library.path', '/opt/java/openjdk/lib'],
		['sun.java.command', "/home/runner/work/shop/$module/target/surefire/surefirebooter-20261207.jar /home/runner/work/shop/$module/target/surefire 2026-12-07T10-00-00_123-jvmRun1 surefire-20261207.tmp surefire_0-20261207.tmp"],
		['jdk.debug', 'release'],
		['surefire.test.class.path', $cp],
		['sun.cpu.endian', 'little'],
		['user.home', '/home/runner'],
		['user.language', 'en'],
		['java.specification.vendor', 'Oracle Corporation'],
		['java.version.date', '2023-10-17'],
		['java.home', '/opt/java/openjdk'],
		['file.separator', '/'],
		['basedir', "/home/runner/work/shop/$module"],
		['java.vm.compressedOopsMode', 'Zero based'],
		['line.separator', '\n'],
		['java.vm.specification.vendor', 'Oracle Corporation'],
		['java.specification.name', 'Java Platform API Specification'],
		['surefire.real.class.path', "/home/runner/work/shop/$module/target/surefire/surefirebooter-20261207.jar"],
		['sun.management.compiler', 'HotSpot 64-Bit Tiered Compilers'],
		['java.runtime.version', '17.0.9+9'],
		['user.name', 'runner'],
		['path.separator', ':'],
		['os.version', '6.5.0-1016-azure'],
		['java.runtime.name', 'OpenJDK Runtime Environment'],
		['file.encoding', 'UTF-8'],
		['java.vm.name', 'OpenJDK 64-Bit Server VM'],
		['localRepository', $repo],
		['java.vendor.url.bug', 'https://github.com/adoptium/adoptium-support/issues'],
		['java.io.tmpdir', '/tmp'],
		['java.version', '17.0.9'],
		['user.dir', "/home/runner/work/shop/$module"],
		['os.arch', 'amd64'],
		['java.vm.specification.name', 'Java Virtual Machine Specification'],
		['native.encoding', 'UTF-8'],
		['java.library.path', '/usr/java/packages/lib:/usr/lib64:/lib64:/lib:/usr/lib'],
		['java.vm.info', 'mixed mode, sharing'],
		['java.vendor', 'Eclipse Adoptium'],
		['java.vm.version', '17.0.9+9'],
		['sun.io.unicode.encoding', 'UnicodeLittle'],
		['java.class.version', '61.0'],
	);
	return join('', map { sprintf(qq{    <property name="%s" value="%s"/>\n}, $_->[0], xml_attr($_->[1])) } @p);
}

sub stack
{
	my ($class, $method, $exc, $msg) = @_;
	my $simple = (split /\./, $class)[-1];
	my $line = 20 + int(rand(400));
	my @t = ("$exc: $msg", "\tat " . pick(@java_frames[0 .. 4]));
	push @t, "\tat $class.$method($simple.java:$line)";
	push @t, map { "\tat " . $java_frames[5 + ($_ % 15)] } 0 .. 8 + int(rand(20));
	return join("\n", @t) . "\n";
}

mkdir $dir unless -d $dir;
for my $f (1 .. $files)
{
	my $module = pick(@modules);
	my $class = sprintf('com.example.%s.%s%sTest', $module, pick(@nouns), pick(qw(Service Repository Controller Mapper Validator Client)))
	  . sprintf('%04d', $f);
	my (@body, $fail, $err, $skip, $total);
	$fail = $err = $skip = 0;
	$total = 0;
	for my $c (1 .. $cases)
	{
		my $method = pick(@verbs) . pick(@nouns) . pick(@conds);
		my $name = $method;
		$name .= sprintf('(%s)', pick(qw(String BigDecimal int Locale))) if rand() < 0.5;
		$name = sprintf('[%d] amount=%d, currency=%s', $c, int(rand(10000)), pick(qw(EUR USD JPY CHF)))
		  if rand() < 0.1;
		my $t = rand() < 0.9 ? rand(0.05) : rand(3);
		$total += $t;
		my $open = sprintf(qq{  <testcase name="%s" classname="%s" time="%s"}, xml_attr($name), $class, seconds($t));
		my $r = rand();
		if ($r < 0.04)
		{
			$fail++;
			my $want = int(rand(1000));
			my $msg = "expected: <$want> but was: <" . ($want + 1 + int(rand(9))) . '>';
			my $out = rand() < 0.3
			  ? sprintf(qq{    <system-out><![CDATA[%s INFO  %s - request %d took %d ms\n]]></system-out>\n},
				'10:00:0' . int(rand(10)), $class, int(rand(99999)), int(rand(900)))
			  : '';
			push @body, sprintf(qq{%s>\n    <failure message="%s" type="org.opentest4j.AssertionFailedError"><![CDATA[%s]]></failure>\n%s  </testcase>\n},
				$open, xml_attr($msg), stack($class, $method, 'org.opentest4j.AssertionFailedError', $msg), $out);
		}
		elsif ($r < 0.05)
		{
			$err++;
			my $msg = pick('Connection refused', 'Cannot invoke "String.length()" because "name" is null',
				'Index 3 out of bounds for length 3', 'config.properties (No such file or directory)');
			my $exc = pick(qw(java.net.ConnectException java.lang.NullPointerException
				  java.lang.ArrayIndexOutOfBoundsException java.io.FileNotFoundException));
			push @body, sprintf(qq{%s>\n    <error message="%s" type="%s"><![CDATA[%s]]></error>\n  </testcase>\n},
				$open, xml_attr($msg), $exc, stack($class, $method, $exc, $msg));
		}
		elsif ($r < 0.08)
		{
			$skip++;
			push @body, sprintf(qq{%s>\n    <skipped message="%s"/>\n  </testcase>\n},
				$open, pick('slow test disabled', 'requires a database', 'flaky, see SHOP-1234'));
		}
		else
		{
			push @body, "$open/>\n";
		}
	}
	my $path = "$dir/TEST-$class.xml";
	open(my $fh, '>', $path) or die "$path: $!\n";
	print $fh qq{<?xml version="1.0" encoding="UTF-8"?>\n};
	printf $fh qq{<testsuite xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:noNamespaceSchemaLocation="https://maven.apache.org/surefire/maven-surefire-plugin/xsd/surefire-test-report-3.0.xsd" version="3.0" name="%s" time="%s" tests="%d" errors="%d" skipped="%d" failures="%d">\n},
	  $class, seconds($total), $cases, $err, $skip, $fail;
	print $fh "  <properties>\n", properties($module), "  </properties>\n", @body, "</testsuite>\n";
	close($fh) or die "$path: $!\n";
}
