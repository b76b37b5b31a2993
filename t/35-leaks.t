#!perl
# Perl-level leaks (Test::LeakTrace; skipped when it is not installed):
# creating and destroying daemons, and many connections through one daemon
# (each ending a different way), leave no SV behind; and while run is on
# the stack SVs do not pile up either (run may never return in a real
# server, so what it frees only on return is a leak there).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use TestISD;
use Test::More;
use IO::Socket::INET;
use POSIX ();
use Socket qw(SOL_SOCKET SO_LINGER);

BEGIN {
    eval { require Test::LeakTrace; Test::LeakTrace->import; 1 }
        or plan skip_all => 'Test::LeakTrace is not installed (apt-get install libtest-leaktrace-perl)';
}
plan skip_all => 'Test::LeakTrace cannot trace here (Devel::Cover?)'
    unless Test::LeakTrace::_runops_installed();

require IO::Socket::INET::Daemon;

my $CONNS = (($ENV{LD_PRELOAD} || '') =~ /asan/ || $ENV{ISD_VALGRIND}) ? 60 : 150;

# The client side: a forked process making $n connections, each sending a
# few lines and ending one of four ways; it exits when done.
sub clients {
    my ($port, $n) = @_;
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    return $pid if $pid;
    local $SIG{ALRM} = sub { POSIX::_exit(3) };
    alarm 30;
    for my $i (1 .. $n) {
        my $c = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 5)
            or POSIX::_exit(2);
        my $how = $i % 4;
        print $c "hello $i\nline two\n", ($how == 1 ? "quit\n" : ''), ($how == 3 ? 'partial' : '');
        my $got = '';
        while ($got !~ /two\n/) {
            my $r = sysread($c, $got, 4096, length $got);
            last unless $r;
        }
        setsockopt($c, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0)) if $how == 2;
        shutdown($c, 1) if $how == 3;
        if ($how == 1 || $how == 3) { 1 while sysread($c, my $b, 4096) }
        close $c;
    }
    POSIX::_exit(0);
}

our ($CHILD, $SVS_START, $SVS_END);
my %cb = (
    add    => sub { my ($io) = @_; ${*$io}{n} = 0; $io->print("hi\n"); 1 },
    data   => sub {
        my ($io, $d, $line) = @_;
        ${*$io}{n}++;
        my $l = $io->getline;
        return 0 if $l eq "quit\n";
        $io->print("you said $l");
        1;
    },
    remove => sub { my ($io) = @_; ${*$io}{gone} = 1 },
    error  => sub { },
    tick   => sub {
        my (undef, $d) = @_;
        $SVS_START //= Test::LeakTrace::count_sv();
        $CHILD = undef if $CHILD && waitpid($CHILD, POSIX::WNOHANG()) == $CHILD;
        if (!$CHILD && !$d->connections) {
            # the clients are done and every connection is closed
            $SVS_END = Test::LeakTrace::count_sv();
            $d->stop;
        }
    },
);

for my $be (backends()) {
    isd_subtest "create and destroy daemons, backend $be" => sub {
        no_leaks_ok {
            my $d = IO::Socket::INET::Daemon->new(port => 0, host => '127.0.0.1', backend => $be,
                                                  callback => {%cb});
            $d->listen or die "listen: $!";
            $d->destroy;
        } 'new, listen, destroy';
        no_leaks_ok {
            my $d = IO::Socket::INET::Daemon->new(port => 0, host => '127.0.0.1', backend => $be,
                                                  timeout => 0.01,
                                                  callback => { tick => sub { $_[1]->stop } });
            $d->run or die "run: $!";
            $d->run or die "run again: $!";
        } 'new, run, stop, run again, DESTROY';
        no_leaks_ok {
            my $d = IO::Socket::INET::Daemon->new(port => 0, host => '127.0.0.1', backend => $be);
            my $p = $d->sockport;
            my @c = $d->connections;
        } 'new and DESTROY without listening';
    };

    isd_subtest "$CONNS connections through one daemon, backend $be" => sub {
        my $d = IO::Socket::INET::Daemon->new(port => 0, host => '127.0.0.1', backend => $be,
                                              timeout => 0.02, callback => {%cb});
        $d->listen or die "listen: $!";
        my $port = $d->sockport;
        # warm the loop up outside the traced block
        $CHILD = clients($port, 4);
        $d->run;
        no_leaks_ok {
            $CHILD = clients($port, $CONNS);
            $d->run;
        } "$CONNS connections (close, quit, reset, half-close), no SV leaked";
        $d->destroy;
    };

    isd_subtest "SVs do not pile up while run is running, backend $be" => sub {
        my $d = IO::Socket::INET::Daemon->new(port => 0, host => '127.0.0.1', backend => $be,
                                              timeout => 0.02, callback => {%cb});
        $d->listen or die "listen: $!";
        my $port = $d->sockport;
        $CHILD = clients($port, 4);
        $d->run;
        ($SVS_START, $SVS_END) = (undef, undef);
        $CHILD = clients($port, $CONNS);
        $d->run;
        my $after = Test::LeakTrace::count_sv();
        ok(defined $SVS_END, 'measured at the end of the traffic, inside run');
        my $grew = ($SVS_END // 0) - ($SVS_START // 0);
        ok($grew < $CONNS / 2,
           "live SVs inside run: $SVS_START before $CONNS connections, $SVS_END after ($grew more; "
           . ($after - $SVS_START) . ' once run returned)');
        $d->destroy;
    };
}

done_testing;
