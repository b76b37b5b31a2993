package TestProc;

# Processes for the tests that start programs of their own (t/52, t/55,
# t/56): spawn a command in a process group of its own with its output in
# files, reap it with a deadline, find what is left, and end everything
# that was started when the test file exits (TERM to each group, then
# KILL).  Plus the small file and port helpers those tests share.

use strict;
use warnings;

use Exporter ();
use IO::Socket::INET ();
use POSIX ();
use Time::HiRes ();
use TestISD ();          # (wait_until; not imported: no second alarm)

our @ISA    = ('Exporter');
our @EXPORT = qw(spawn track reap end_kid alive proc_stat ours describe
                 slurp spit free_port);

my $MAIN = $$;
my %KIDS;                # pid => 1: started here, each the leader of its group
my @ALSO;                # subs giving more PIDs to end at exit (daemons)

# spawn(\@cmd, OPTIONS): run @cmd in a process group of its own, stdin from
# /dev/null, signal dispositions and alarm reset; OPTIONS:
#   out    => FILE   stdout and stderr appended to FILE
#   stdout => FILE, stderr => FILE   each to its own file (truncated)
#   env    => { NAME => VALUE }      added (undef: removed)
#   as     => [uid, gid]             run as that user
sub spawn {
    my ($cmd, %o) = @_;
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if (!$pid) {
        POSIX::setpgid(0, 0);
        $SIG{$_} = 'DEFAULT' for qw(ALRM TERM HUP INT PIPE QUIT);
        alarm 0;
        open STDIN, '<', '/dev/null' or POSIX::_exit(126);
        if (defined $o{out}) {
            open STDOUT, '>>', $o{out} or POSIX::_exit(126);
            open STDERR, '>>', $o{out} or POSIX::_exit(126);
        }
        else {
            open STDOUT, '>', $o{stdout} or POSIX::_exit(126) if defined $o{stdout};
            open STDERR, '>', $o{stderr} or POSIX::_exit(126) if defined $o{stderr};
        }
        for my $k (keys %{ $o{env} || {} }) {
            if (defined $o{env}{$k}) { $ENV{$k} = $o{env}{$k} } else { delete $ENV{$k} }
        }
        if ($o{as}) {
            my ($uid, $gid) = @{ $o{as} };
            POSIX::setgid($gid);
            $) = "$gid $gid";
            POSIX::setuid($uid) or POSIX::_exit(125);
        }
        exec @$cmd or POSIX::_exit(127);
    }
    return track($pid);
}

# track($pid): a child forked by the test itself, ended at exit too
sub track { $KIDS{ $_[0] } = 1; return $_[0] }

# also(sub { PIDS }): more processes to end at exit (not our children)
sub also { push @ALSO, $_[0] }

# reap($pid, $timeout): its wait status, or undef if it is still running
sub reap {
    my ($pid, $timeout) = @_;
    my $st;
    TestISD::wait_until(sub {
        my $r = waitpid($pid, POSIX::WNOHANG());
        $st = $r == $pid ? $? : -1 if $r != 0;
        return defined $st;
    }, defined $timeout ? $timeout : 5);
    delete $KIDS{$pid} if defined $st;
    return $st;
}

# end_kid($pid): TERM (to its group), then KILL; the wait status
sub end_kid {
    my ($pid) = @_;
    return undef unless $KIDS{$pid};
    kill 'TERM', -$pid;
    my $st = reap($pid, 3);
    return $st if defined $st;
    kill 'KILL', -$pid;
    return reap($pid, 3);
}

# kill_kids($signal): every process started here (and those of also), at
# once with $signal; then they are waited for (KILL after 2 s)
sub kill_kids {
    my ($sig) = @_;
    my @extra = map { $_->() } @ALSO;
    for my $pid (keys %KIDS) {
        kill $sig, -$pid;
        kill $sig, $pid;
    }
    kill $sig, $_ for @extra;
    TestISD::wait_until(sub {
        for my $pid (keys %KIDS) {
            delete $KIDS{$pid} if waitpid($pid, POSIX::WNOHANG()) != 0;
        }
        !%KIDS && !grep { alive($_) } @extra;
    }, 2);
    for my $pid (keys %KIDS) {
        kill 'KILL', -$pid;
        kill 'KILL', $pid;
        waitpid $pid, 0;
        delete $KIDS{$pid};
    }
    kill 'KILL', $_ for grep { alive($_) } @extra;
}

END {
    if ($$ == $MAIN) {
        local ($?, $!);
        kill_kids('TERM');
    }
}

# alive($pid): running (a zombie is not)
sub alive {
    my ($pid) = @_;
    return 0 unless kill 0, $pid;
    my $st = proc_stat($pid) or return 0;
    return $st->{state} !~ /\A[ZX]\z/;
}

# /proc/PID/stat: state, ppid, pgrp, session, cpu (utime + stime, seconds)
sub proc_stat {
    my ($pid) = @_;
    my $s = slurp("/proc/$pid/stat");
    return undef unless $s =~ /\)\s+(.*)\z/s;
    my @f = split ' ', $1;
    my $tck = POSIX::sysconf(POSIX::_SC_CLK_TCK()) || 100;
    return { state => $f[0], ppid => $f[1], pgrp => $f[2], session => $f[3],
             cpu => ($f[11] + $f[12]) / $tck };
}

# ours($dir): the live processes (not this one) whose command line names
# $dir: the daemons and workers a test started, children or not
sub ours {
    my ($dir) = @_;
    my @p;
    for my $d (glob '/proc/[0-9]*') {
        my ($pid) = $d =~ /(\d+)\z/;
        next if $pid == $$;
        open my $fh, '<', "$d/cmdline" or next;
        local $/;
        my $c = <$fh>;
        push @p, $pid if defined $c and index($c, "$dir") >= 0 and alive($pid);
    }
    return @p;
}

sub describe {
    my ($st) = @_;
    return 'still running' unless defined $st;
    return sprintf 'exit %d, signal %d', $st >> 8, $st & 127;
}

sub slurp {
    my ($f) = @_;
    open my $fh, '<', $f or return '';
    local $/;
    my $s = <$fh>;
    return defined $s ? $s : '';
}

sub spit {
    my ($f, $s) = @_;
    open my $fh, '>', $f or die "$f: $!";
    print $fh $s;
    close $fh or die "$f: $!";
}

# free_port($proto): a port free on 127.0.0.1 now (TCP, or 'udp')
sub free_port {
    my ($proto) = @_;
    my $s = ($proto // '') eq 'udp'
        ? IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'udp')
        : IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1', LocalPort => 0,
                                Proto => 'tcp', ReuseAddr => 1);
    $s or die "free port: $@";
    my $p = $s->sockport;
    close $s;
    return $p;
}

1;
