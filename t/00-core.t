#!perl
# Build and run the C unit tests of the core (t/c/test_*.c against
# c_src/*.c), one subtest per program, re-emitting their TAP.
#
#   ISD_CFLAGS   extra compiler flags, e.g. "-fsanitize=address,undefined"
#                (CI rebuilds the unit tests under sanitizers this way)
#   ISD_CC       compiler to use instead of $Config{cc}
#   ISD_KEEP     keep the build directory (its path is printed)
use strict;
use warnings;

use Config;
use File::Basename qw(basename dirname);
use File::Spec;
use File::Temp qw(tempdir);
use FindBin;
use POSIX ();
use Test::More;

plan skip_all => 'the C core is POSIX-only' if $^O eq 'MSWin32';

my $root  = File::Spec->rel2abs(File::Spec->catdir($FindBin::Bin, File::Spec->updir));
my $csrc  = File::Spec->catdir($root, 'c_src');
my $tdir  = File::Spec->catdir($root, 't', 'c');
my @core  = sort glob(File::Spec->catfile($csrc, '*.c'));
my @tests = sort glob(File::Spec->catfile($tdir, 'test_*.c'));

plan skip_all => 'no c_src/*.c or t/c/test_*.c' unless @core && @tests;

my @cc = split ' ', ($ENV{ISD_CC} || $Config{cc} || 'cc');
my @cflags = (qw(-std=c99 -D_GNU_SOURCE -Wall -Wextra -O1 -g), "-I$csrc");
my @extra = split ' ', ($ENV{ISD_CFLAGS} || '');
my $build = tempdir('isd-core-XXXXXX', TMPDIR => 1, CLEANUP => !$ENV{ISD_KEEP});
diag("build directory: $build") if $ENV{ISD_KEEP};

# Run a command; returns (exit status, combined output).
sub run_cmd {
    my @cmd = @_;
    my $log = File::Spec->catfile($build, 'cmd.log');
    open my $save_out, '>&', \*STDOUT or die "dup STDOUT: $!";
    open my $save_err, '>&', \*STDERR or die "dup STDERR: $!";
    open STDOUT, '>', $log or die "open $log: $!";
    open STDERR, '>&', \*STDOUT or die "dup: $!";
    my $rc = system { $cmd[0] } @cmd;
    open STDOUT, '>&', $save_out or die "restore STDOUT: $!";
    open STDERR, '>&', $save_err or die "restore STDERR: $!";
    open my $fh, '<', $log or die "open $log: $!";
    local $/;
    my $out = <$fh>;
    close $fh;
    return ($rc == -1 ? -1 : $?, defined $out ? $out : '');
}

# A working compiler at all?
{
    my $src = File::Spec->catfile($build, 'probe.c');
    open my $fh, '>', $src or die "write $src: $!";
    print {$fh} "int main(void) { return 0; }\n";
    close $fh;
    my $exe = File::Spec->catfile($build, 'probe');
    my ($rc, $out) = run_cmd(@cc, $src, '-o', $exe);
    plan skip_all => "no working C compiler (@cc): $out"
        if $rc != 0 || !-x $exe;
    if (@extra) {
        # asked for explicitly (CI): an unusable ISD_CFLAGS is a failure
        unlink $exe;
        ($rc, $out) = run_cmd(@cc, @extra, $src, '-o', $exe);
        if ($rc != 0 || !-x $exe) {
            plan tests => 1;
            fail("the compiler accepts ISD_CFLAGS=$ENV{ISD_CFLAGS}");
            diag($out);
            exit 1;
        }
    }
}

# OpenSSL, as Makefile.PL finds it (ISD_NO_OPENSSL=1: without): the core's
# tls.c and t/c/test_tls.c are built with it when it links.
my @ssl_libs;
if (!$ENV{ISD_NO_OPENSSL}) {
    my $src = File::Spec->catfile($build, 'sslprobe.c');
    open my $fh, '>', $src or die "write $src: $!";
    print {$fh} "#include <openssl/ssl.h>\nint main(void) { SSL_CTX_free(SSL_CTX_new(TLS_server_method())); return 0; }\n";
    close $fh;
    my $lf = `pkg-config --libs libssl libcrypto 2>/dev/null` || '-lssl -lcrypto';
    my $cf = `pkg-config --cflags libssl libcrypto 2>/dev/null` || '';
    my ($rc) = run_cmd(@cc, split(' ', $cf), $src, '-o', File::Spec->catfile($build, 'sslprobe'), split(' ', $lf));
    if ($rc == 0) {
        push @cflags, '-DISD_HAVE_OPENSSL', split(' ', $cf);
        @ssl_libs = split ' ', $lf;
    }
}
note(@ssl_libs ? "OpenSSL: @ssl_libs" : 'OpenSSL: not used');

# The core, compiled once.
my @objs;
{
    my ($failed, $log) = (0, '');
    for my $c (@core) {
        my $o = File::Spec->catfile($build, 'core_' . basename($c, '.c') . '.o');
        my ($rc, $out) = run_cmd(@cc, @cflags, @extra, '-c', $c, '-o', $o);
        $log .= $out;
        if ($rc != 0) { $failed = 1; $log .= "(failed: $c)\n" }
        push @objs, $o;
    }
    if ($failed) {
        plan tests => 1;
        fail('the core (c_src/*.c) compiles');
        diag("@cc @cflags @extra -c c_src/*.c\n$log");
        exit 1;
    }
    note("core compiler output:\n$log") if length $log;
}

# Sanitizer runtimes: impossible allocations return NULL (the buffer tests
# ask for SIZE_MAX bytes on purpose) and reports go where we can see them.
{
    my $asan = $ENV{ASAN_OPTIONS} || '';
    $ENV{ASAN_OPTIONS} = join ':', grep length, $asan,
        ($asan =~ /allocator_may_return_null/ ? () : 'allocator_may_return_null=1');
    my $ubsan = $ENV{UBSAN_OPTIONS} || '';
    $ENV{UBSAN_OPTIONS} = join ':', grep length, $ubsan,
        ($ubsan =~ /print_stacktrace/ ? () : 'print_stacktrace=1');
}

for my $src (@tests) {
    my $name = basename($src, '.c');
    subtest $name => sub { run_one($src, $name) };
}
done_testing();

sub run_one {
    my ($src, $name) = @_;
    my $exe = File::Spec->catfile($build, $name);

    # Build: the plain command first; some older libcs want -lpthread/-lrt.
    my ($rc, $out);
    for my $libs ([], ['-lpthread'], ['-lpthread', '-lrt']) {
        ($rc, $out) = run_cmd(@cc, @cflags, @extra, $src, @objs, '-o', $exe, @$libs, @ssl_libs);
        last if $rc == 0;
    }
    if ($rc != 0) {
        fail("$name: compiles");
        diag("@cc @cflags @extra $src <core objects> -o $exe\n$out");
        return;
    }
    pass("$name: compiles");
    note("compiler output:\n$out") if length $out;

    # Run, stdout (TAP) and stderr apart.
    my $err = File::Spec->catfile($build, "$name.stderr");
    my $pid = open my $tap, '-|';
    die "fork: $!" unless defined $pid;
    if (!$pid) {
        # the child must not run Test::Builder's END blocks
        open STDERR, '>', $err or POSIX::_exit(126);
        chdir $root;
        no warnings 'exec';
        exec { $exe } $exe;
        print STDERR "exec $exe: $!\n";
        POSIX::_exit(127);
    }
    my ($planned, $seen, $skip_all) = (undef, 0, undef);
    while (my $line = <$tap>) {
        chomp $line;
        if ($line =~ /^(not )?ok\b\s*(\d*)\s*(?:-\s*)?(.*)$/) {
            my ($not, $desc) = ($1, $3);
            my ($directive, $reason) = ('', '');
            if ($desc =~ s/\s*(?<!\\)#\s*(TODO|SKIP)\b\s*(.*)$//i) {
                ($directive, $reason) = (uc $1, $2);
            }
            $seen++;
            if ($directive eq 'SKIP') {
                SKIP: { skip("$desc: $reason", 1) }
            } elsif ($directive eq 'TODO') {
                local $main::TODO = $reason;
                ok(!$not, $desc);
            } else {
                ok(!$not, $desc);
            }
        } elsif ($line =~ /^1\.\.(\d+)(?:\s*#\s*SKIP\S*\s*(.*))?/i) {
            $planned  = $1;
            $skip_all = defined $2 ? $2 : 'skipped' if $1 == 0;
        } elsif ($line =~ /^Bail out!\s*(.*)/) {
            fail("$name bailed out: $1");
        } elsif ($line =~ /^#\s?(.*)/) {
            note($1);
        } elsif (length $line) {
            note("(unparsed) $line");
        }
    }
    close $tap;
    my $status = $?;

    my $stderr = '';
    if (open my $fh, '<', $err) {
        local $/;
        $stderr = <$fh>;
        $stderr = '' unless defined $stderr;
        close $fh;
    }

    if (defined $skip_all) {
        SKIP: { skip("$name: $skip_all", 1) }
        return;
    }
    my $sig = $status & 127;
    ok($status == 0, "$name: exit status 0")
        or diag($sig ? "killed by signal $sig" : "exit status " . ($status >> 8));
    ok(defined $planned, "$name: printed a plan");
    is($seen, $planned, "$name: ran every planned test") if defined $planned;
    my $sanitizer = $stderr =~ /runtime error:|ERROR: \w*Sanitizer|LeakSanitizer/;
    ok(!$sanitizer, "$name: no sanitizer reports");
    if (length $stderr) {
        if ($status != 0 || $sanitizer) { diag($stderr) }
        else                            { note($stderr) }
    }
}
