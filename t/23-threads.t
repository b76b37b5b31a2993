#!/usr/bin/perl
# On a threaded perl a daemon runs inside a thread too (peers blessed into
# that interpreter's classes), and daemons are not cloned into new threads.
use strict;
use warnings;
use Config;
use Test::More;
BEGIN {
    plan skip_all => 'perl without ithreads' unless $Config{useithreads};
    plan skip_all => 'threads.pm not loadable' unless eval { require threads; 1 };
}
use lib 't/lib';
use TestISD;    # deadline, client helpers
use IO::Socket::INET::Daemon;
use POSIX ();
use Scalar::Util ();

for my $be (backends()) {
    subtest "daemon inside a thread, backend $be" => sub {
        my $outer = IO::Socket::INET::Daemon->new(port => 0, host => '127.0.0.1');
        my $thr = threads->create(sub {
            my $d = IO::Socket::INET::Daemon->new(
                port => 0, host => '127.0.0.1', timeout => 0.2, backend => $be,
                callback => {
                    add    => sub { ref($_[0]) . "|" . ($_[0]->isa('IO::Socket::INET') ? 1 : 0) },
                    data   => sub { $_[0]->print("thread: $_[2]"); 0 },
                    remove => sub { $_[1]->stop },
                });
            $d->listen or return "listen: $!";
            my $port = $d->sockport;
            my $pid = fork;
            return "fork: $!" unless defined $pid;
            if (!$pid) {
                alarm 10;
                my $c = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Timeout => 5)
                    or POSIX::_exit(2);
                print $c "hi\n";
                my $l = <$c> // '';
                POSIX::_exit($l eq "thread: hi\n" ? 0 : 3);
            }
            $d->run;
            waitpid $pid, 0;
            return "child $?";
        });
        is($thr->join, 'child 0', 'a client was served by the daemon in the thread');
        isa_ok($outer, 'IO::Socket::INET::Daemon', 'the outer daemon, after the thread');
        # CLONE_SKIP: the thread sees an unblessed reference to undef
        my $t2 = threads->create(sub {
            'seen in thread: ' . (Scalar::Util::blessed($outer) // 'not an object') });
        is($t2->join, 'seen in thread: not an object', 'daemons are not cloned into threads (CLONE_SKIP)');
    };
}

done_testing;
