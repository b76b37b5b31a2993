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

# A client process: sends "hi\n" to $port and exits 0 if the reply is
# $want (2: no connection, 3: another reply).  Returns its pid, undef if
# fork failed.
sub hi_client {
    my ($port, $want) = @_;
    my $pid = fork;
    return $pid if !defined $pid || $pid;
    alarm 10;
    my $c = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Timeout => 5)
        or POSIX::_exit(2);
    print $c "hi\n";
    my $l = <$c> // '';
    POSIX::_exit($l eq $want ? 0 : 3);
}

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
            my $pid = hi_client($port, "thread: hi\n");
            return "fork: $!" unless defined $pid;
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

# A thread started while connections are open gets copies of their $io
# objects (perl cannot skip cloning a glob object without panicking when
# that thread ends); the copies refuse to act on a connection that is not
# theirs, and the daemon's own $io keeps working.
for my $be (backends()) {
    subtest "thread started from a callback, backend $be" => sub {
        my %seen;
        my $d = IO::Socket::INET::Daemon->new(
            port => 0, host => '127.0.0.1', backend => $be,
            callback => {
                data => sub {
                    my ($io, $daemon, $line) = @_;
                    my $t = threads->create(sub {
                        my @r = (ref $io);
                        push @r, eval { $io->print("from thread\n"); 1 } ? 'printed' : $@;
                        push @r, eval { print {$io} "from thread\n"; 1 } ? 'printed' : $@;
                        push @r, eval { fileno($io) } // $@;
                        return join "\0", @r;
                    });
                    @seen{qw(class method tied fileno)} = split /\0/, $t->join;
                    $io->print("main: $line");
                    $daemon->stop;
                    return 1;
                },
            });
        $d->listen or die "listen: $!";
        my $port = $d->sockport;
        my $pid = hi_client($port, "main: hi\n");
        die "fork: $!" unless defined $pid;
        $d->run;
        waitpid $pid, 0;
        is($?, 0, 'the client got the reply written after the thread ended');
        is($seen{class}, 'IO::Socket::INET::Daemon::Peer', 'the thread saw a peer object');
        like($seen{method}, qr/^IO::Socket::INET::Daemon::Peer::print: this peer is a copy made for a new thread/,
             'a method on the copy croaks, naming it');
        like($seen{tied}, qr/this peer is a copy made for a new thread/, 'so does print {$io} on the copy');
        like($seen{fileno}, qr/this peer is a copy made for a new thread/, 'and fileno($io)');
    };
}

done_testing;
