package ISDStress;

# Helpers of the reliability suite (xt/*.t and t/3*.t), on top of
# t/lib/TestISD.pm (servers, clients, deadlines):
#
#   echo_server(%args)      a TestISD server running the reference echo
#                           protocol below, with counters
#   stats($srv)             the server's counters, asked over a connection
#   proc_rss_kb($pid)       VmRSS of a process, in KiB (VmHWM: proc_hwm_kb)
#   proc_cpu_ticks($pid)    utime + stime of a process, in clock ticks
#   proc_nfds($pid)         open descriptors of a process
#   raise_nofile($n)        soft RLIMIT_NOFILE of this process to >= $n
#   set_nofile($pid, $n)    RLIMIT_NOFILE of another process (prlimit)
#   load_tool()             builds bench/loadgen.c, returns its path
#   run_tool(\@args, %o)    runs it with a deadline; returns its results
#   figure($name, $value)   records a measured figure (see below)
#
# The echo protocol: every line comes back byte-exact; a line starting
# with "q" comes back and the server then closes the connection (data
# returns false); "stats\n" answers "stats adds=A removes=R dups=D
# late=L open=O\n" (late: data for a closed $io, dups: second remove of
# one $io - both must stay 0).  echo_server(commands => { "line\n" => sub
# { my ($io, $d, $stats) = @_; ...; return 1 } }) adds commands.
#
# Figures: figure() prints "# FIGURE <test> <name> <value>" on STDERR and,
# when $ENV{ISD_FIGURES} names a file, appends "<test>\t<name>\t<value>"
# to it (.ci/run and `make stress` print that file at the end).

use strict;
use warnings;
no warnings 'exec';    # exec in a forked child, then _exit

use Config ();
use Exporter ();
use File::Basename ();
use File::Spec ();
use File::Temp ();
use IO::Select ();
use POSIX ();
use Time::HiRes ();

our @ISA    = ('Exporter');
our @EXPORT = qw(
    echo_server stats proc_rss_kb proc_hwm_kb proc_cpu_ticks proc_nfds
    raise_nofile set_nofile nofile_limits load_tool run_tool figure
    clk_tck asan_build
);

my $ROOT = File::Spec->rel2abs(
    File::Spec->catdir(File::Basename::dirname(__FILE__), File::Spec->updir, File::Spec->updir));

# ------------------------------------------------------------ echo server

sub echo_server {
    my (%args) = @_;
    my %st = (adds => 0, removes => 0, dups => 0, late => 0);
    my $cmds = delete $args{commands} || {};
    my %cb = (
        add => sub {
            my ($io) = @_;
            $st{adds}++;
            ${*$io}{isd_added} = 1;
            1;
        },
        data => sub {
            my ($io, $d, $line) = @_;
            $st{late}++ unless $io->opened;
            if ($line eq "stats\n") {
                my @open = $d->connections;
                $io->print(sprintf "stats adds=%d removes=%d dups=%d late=%d open=%d\n",
                           @st{qw(adds removes dups late)}, scalar @open);
                return 1;
            }
            if (my $cmd = $cmds->{$line}) {
                return $cmd->($io, $d, \%st);
            }
            $io->print($line);
            return substr($line, 0, 1) ne 'q';
        },
        remove => sub {
            my ($io) = @_;
            $st{removes}++;
            $st{dups}++ if ${*$io}{isd_removed}++;
        },
        error => sub {
            my ($io, $d, $msg) = @_;
            TestISD::log_event('error %s', $msg);
        },
    );
    my $extra = delete $args{callback} || {};
    %cb = (%cb, %$extra);
    return TestISD::start_server(timeout => 1, %args, callback => \%cb);
}

# stats($srv): hash of the echo server's counters (dies without an answer).
sub stats {
    my ($srv, $timeout) = @_;
    my $c = TestISD::client($srv);
    print $c "stats\n";
    my $l = TestISD::read_line($c, defined $timeout ? $timeout : 10);
    close $c;
    die "stats: no answer from the server\n" unless defined $l && $l =~ /^stats /;
    my %h = $l =~ /(\w+)=(\d+)/g;
    return \%h;
}

# ----------------------------------------------------------------- /proc

sub _status_field {
    my ($pid, $field) = @_;
    open my $fh, '<', "/proc/$pid/status" or return undef;
    while (<$fh>) {
        return $1 if /^\Q$field\E:\s+(\d+)/;
    }
    return undef;
}

sub proc_rss_kb { _status_field($_[0], 'VmRSS') }
sub proc_hwm_kb { _status_field($_[0], 'VmHWM') }

sub proc_cpu_ticks {
    my ($pid) = @_;
    open my $fh, '<', "/proc/$pid/stat" or return undef;
    my $s = <$fh>;
    return undef unless defined $s;
    $s =~ s/^.*\)\s+//s;           # the command name may hold spaces
    my @f = split ' ', $s;
    # after "pid (comm)": state is field 3, utime 14, stime 15
    return $f[11] + $f[12];
}

sub clk_tck {
    my $t = eval { POSIX::sysconf(POSIX::_SC_CLK_TCK()) };
    return $t && $t > 0 ? $t : 100;
}

sub proc_nfds {
    my ($pid) = @_;
    opendir my $dh, "/proc/$pid/fd" or return undef;
    my $n = grep { /^\d+$/ } readdir $dh;
    closedir $dh;
    return $n;
}

# --------------------------------------------------------------- limits

# (soft, hard) RLIMIT_NOFILE of $pid (default: this process).
sub nofile_limits {
    my ($pid) = @_;
    $pid ||= $$;
    open my $fh, '<', "/proc/$pid/limits" or return;
    while (<$fh>) {
        if (/^Max open files\s+(\S+)\s+(\S+)/) {
            my ($s, $h) = ($1, $2);
            $_ = $_ eq 'unlimited' ? 1 << 30 : $_ for $s, $h;
            return ($s, $h);
        }
    }
    return;
}

sub _prlimit {
    my ($pid, $soft, $hard) = @_;
    my $pr = _which('prlimit') or return 0;
    my $pidc = fork;
    return 0 unless defined $pidc;
    if (!$pidc) {
        open STDOUT, '>', '/dev/null';
        open STDERR, '>', '/dev/null';
        exec $pr, "--pid=$pid", "--nofile=$soft:$hard";
        POSIX::_exit(127);
    }
    waitpid $pidc, 0;
    return $? == 0;
}

sub _which {
    my ($prog) = @_;
    for my $d (split /:/, ($ENV{PATH} || '') . ':/usr/bin:/bin:/usr/sbin:/sbin') {
        return "$d/$prog" if length $d && -x "$d/$prog";
    }
    return undef;
}

# raise_nofile($n): soft limit of this process (and so of the servers it
# forks afterwards) to at least $n; as root past the hard limit.  Returns
# the soft limit in force afterwards.
sub raise_nofile {
    my ($want) = @_;
    my ($soft, $hard) = nofile_limits();
    return 0 unless defined $soft;
    return $soft if $soft >= $want;
    _prlimit($$, $want, $hard >= $want ? $hard : $want)
        or _prlimit($$, $hard, $hard);
    ($soft) = nofile_limits();
    return $soft;
}

# set_nofile($pid, $n): both limits of $pid to $n (lowering needs no
# privilege).  True on success.
sub set_nofile {
    my ($pid, $n) = @_;
    _prlimit($pid, $n, $n) or return 0;
    my ($soft) = nofile_limits($pid);
    return defined $soft && $soft == $n;
}

# ----------------------------------------------------------- load client

my $TOOL;
my $TOOLDIR;

# load_tool(): path of the compiled bench/loadgen.c (the benchmark's load
# generator; its modes hold, short, pipe, loris and flood are this suite's);
# undef (with the reason in $@) where it cannot be built: not Linux, no
# compiler.
sub load_tool {
    return $TOOL if $TOOL;
    $@ = '';
    if ($^O ne 'linux') { $@ = 'loadgen needs Linux (epoll)'; return undef }
    my $src = File::Spec->catfile($ROOT, 'bench', 'loadgen.c');
    unless (-f $src) { $@ = "no $src"; return undef }
    $TOOLDIR ||= File::Temp->newdir('isd-loadgen-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    my $exe = "$TOOLDIR/loadgen";
    my @cc = split ' ', ($ENV{ISD_CC} || $Config::Config{cc} || 'cc');
    my $log = "$TOOLDIR/cc.log";
    my $pid = fork;
    if (!defined $pid) { $@ = "fork: $!"; return undef }
    if (!$pid) {
        open STDOUT, '>', $log;
        open STDERR, '>&', \*STDOUT;
        exec @cc, qw(-std=c99 -O2 -g -Wall), $src, '-o', $exe;
        POSIX::_exit(127);
    }
    waitpid $pid, 0;
    if ($? != 0 || !-x $exe) {
        open my $fh, '<', $log;
        local $/;
        $@ = "cannot build loadgen: " . (<$fh> // '');
        return undef;
    }
    return $TOOL = $exe;
}

# run_tool(\@args, timeout => secs, on_line => sub { my ($k, $v) = @_ }):
# runs loadgen with @args (MODE first: hold, short, pipe, loris, flood); returns { key => value, ..., exit => status,
# stderr => text }.  Killed at the timeout (exit then reads 'killed').
sub run_tool {
    my ($args, %o) = @_;
    my $exe = load_tool() or die "run_tool: $@\n";
    my $timeout = $o{timeout} || 120;
    my $err = File::Temp->new(TEMPLATE => 'isd-loadgen-err-XXXXXX', TMPDIR => 1);
    my $pid = open my $fh, '-|';
    die "run_tool: fork: $!\n" unless defined $pid;
    if (!$pid) {
        open STDERR, '>', $err->filename;
        exec $exe, @$args;
        print STDERR "exec $exe: $!\n";
        POSIX::_exit(127);
    }
    my %r;
    my $deadline = Time::HiRes::time() + $timeout;
    my $sel = IO::Select->new($fh);
    my $buf = '';
    my $killed = 0;
    while (1) {
        my $left = $deadline - Time::HiRes::time();
        if ($left <= 0) {
            kill 'KILL', $pid;
            $killed = 1;
            last;
        }
        next unless $sel->can_read($left > 1 ? 1 : $left);
        my $n = sysread $fh, $buf, 65536, length $buf;
        next if !defined $n && $!{EINTR};
        last unless $n;
        while ($buf =~ s/\A([^\n]*)\n//) {
            my $line = $1;
            next unless $line =~ /^(\w+)\s+(.*)$/;
            $r{$1} = $2;
            $o{on_line}->($1, $2) if $o{on_line};
        }
    }
    close $fh;
    $r{exit} = $killed ? 'killed' : $? >> 8;
    open my $eh, '<', $err->filename;
    local $/;
    $r{stderr} = <$eh> // '';
    return \%r;
}

# ------------------------------------------------------------------ figures

sub figure {
    my ($name, $value) = @_;
    my $test = File::Basename::basename($0);
    print STDERR "# FIGURE $test $name $value\n";
    if (my $f = $ENV{ISD_FIGURES}) {
        if (open my $fh, '>>', $f) {
            print {$fh} "$test\t$name\t$value\n";
            close $fh;
        }
    }
}

# A build with sanitizers (make asan-test): timing and memory figures mean
# little there; tests scale down or loosen their bounds.
sub asan_build {
    ($ENV{LD_PRELOAD} || '') =~ /asan/ || ($ENV{ISD_CFLAGS} || '') =~ /sanitize/ || $ENV{ISD_VALGRIND}
}

1;
