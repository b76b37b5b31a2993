#!perl
# destroy: closes every peer and the listener, safe twice, runs from DESTROY,
# inside callbacks and outside; the port can be bound again afterwards.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use TestISD;
use Test::More;
use IO::Socket::INET;
use POSIX ();
use IO::Socket::INET::Daemon;

sub can_bind {
    my ($port) = @_;
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port,
                                  Proto => 'tcp', Listen => 5, ReuseAddr => 1);
    return $s ? 1 : 0;
}

sub refused {
    my ($port) = @_;
    my $s = try_client($port, timeout => 2);
    return $s ? 0 : 1;
}

# ------------------------------------------------------- in-process, no run
{
    my $d = IO::Socket::INET::Daemon->new(port => 0, host => '127.0.0.1');
    ok($d->listen, 'listen');
    my $port = $d->sockport;
    ok(!can_bind($port), 'port busy while listening');
    ok(eval { $d->destroy; 1 }, 'destroy') or diag $@;
    ok(eval { $d->destroy; 1 }, 'destroy twice') or diag $@;
    ok(can_bind($port), 'port can be bound again in the same process');
    ok(refused($port), 'nothing listens any more');
    ok(eval { undef $d; 1 }, 'DESTROY after destroy') or diag $@;
}
{
    my $port;
    {
        my $d = IO::Socket::INET::Daemon->new(port => 0, host => '127.0.0.1');
        $d->listen;
        $port = $d->sockport;
        ok(!can_bind($port), 'port busy');
    }
    ok(can_bind($port), 'out of scope: DESTROY freed the port');
}
{
    my $d = IO::Socket::INET::Daemon->new(port => 0, host => '127.0.0.1');
    ok(eval { $d->destroy; 1 }, 'destroy before listen/run is harmless') or diag $@;
}

sub data {
    my ($io, $d) = @_;
    my $l = $io->getline;
    log_event('data %s', $l);
    if ($l eq "destroy\n") {
        $io->print("destroying\n");
        $d->destroy;
        log_event('destroyed');
        $d->destroy;
        log_event('destroyed twice');
        return 1;
    }
    if ($l eq "stop\n") { $d->stop; return 1 }
    $io->print("R:$l");
    1;
}

for my $be (backends()) {
    isd_subtest "destroy inside data, backend $be" => sub {
        my $srv = start_server(
            backend    => $be,
            timeout    => 1,
            callback   => { data => \&data, remove => sub { log_event('remove') } },
            child_run  => sub {
                my ($d) = @_;
                my $port = $d->sockport;
                my $rv = $d->run;
                log_event('run_returned %s', $rv ? 1 : 0);
                log_event('bind %s', can_bind($port));
                $d->destroy;
                log_event('destroy after run ok');
                my $d2 = IO::Socket::INET::Daemon->new(port => $port, host => '127.0.0.1');
                log_event('relisten %s', $d2->listen ? 1 : "0 $!");
                $d2->destroy;
            },
        );
        my $port = $srv->port;
        my $a = client($srv);
        my $b = client($srv);
        print $b "hi\n";
        is(read_line($b), "R:hi\n", 'B served');
        print $a "destroy\n";
        is(read_line($a), "destroying\n", 'output printed before destroy arrives');
        is(read_until_eof($a, 5), '', 'A: EOF');
        ok(got_eof($a), 'A closed by destroy');
        is(read_until_eof($b, 5), '', 'B: EOF');
        ok(got_eof($b), 'B (another peer) closed by destroy');
        ok($srv->wait_event(qr/^destroyed twice$/), 'destroy twice inside a callback');
        ok($srv->wait_event(qr/^run_returned/), 'run returns after destroy');
        ok($srv->wait_event(qr/^bind /), 'child tried to bind the port');
        is(($srv->grep_events(qr/^bind /))[0], 'bind 1', 'the port can be bound again in the server process');
        ok($srv->wait_event(qr/^relisten /), 'a new daemon tried the same port');
        is(($srv->grep_events(qr/^relisten /))[0], 'relisten 1',
           'a new daemon listens on the port at once (ReuseAddr despite TIME_WAIT)');
        ok($srv->wait_event(qr/^child_done$/), 'destroy after run and DESTROY fine');
        is($srv->wait_exit(5), 0, 'server exited 0');
        is($srv->count(qr/^remove$/), 0, 'destroy calls no remove callback');
        unlike($srv->stderr, qr/panic|Attempt to free|Segmentation/, 'no panic');
    };

    # fork per request: the child lets go of its copy of the daemon from
    # inside the callback and returns into run (the core is on its stack:
    # the copy's loop must outlive that; valgrind-test and asan-test see a
    # use of freed memory otherwise).  The parent's sockets are untouched.
    isd_subtest "destroy in a child forked inside data, backend $be" => sub {
        my $srv = start_server(
            backend   => $be,
            timeout   => 1,
            callback  => { data => sub {
                my ($io, $d) = @_;
                my $l = $io->getline;
                if ($l eq "fork\n") {
                    my $pid = fork;
                    if (defined $pid && !$pid) {
                        $io->print("C:$l");     # the child answers...
                        $io->flush;             # ...now: destroy drops output
                        $d->destroy;
                        log_event('child destroyed');
                        return 1;
                    }
                    waitpid($pid, 0) if $pid;
                    log_event('child status %d', $?);
                }
                $io->print("R:$l");
                1;
            } },
            child_run => sub {
                my ($d) = @_;
                my $me = $$;
                $d->run;
                POSIX::_exit(0) if $$ != $me;       # the forked child
            },
        );
        my $a = client($srv);
        my $b = client($srv);
        print $a "fork\n";
        ok($srv->wait_event(qr/^child destroyed$/), 'the child destroyed its copy');
        ok($srv->wait_event(qr/^child status /), 'the parent reaped it');
        is(($srv->grep_events(qr/^child status /))[0], 'child status 0',
           'the child returned from data and out of run, exit 0');
        is(read_line($a), "C:fork\n", "the child's print and flush reach the peer");
        is(read_line($a), "R:fork\n", 'the parent answers the forking peer');
        print $b "after\n";
        is(read_line($b), "R:after\n", 'and another peer, sockets intact');
        print $a "again\n";
        is(read_line($a), "R:again\n", 'the forking peer still served');
        unlike($srv->stderr, qr/panic|Attempt to free|Segmentation|ERROR SUMMARY: [1-9]/,
               'no panic');
    };

    isd_subtest "destroy outside callbacks and DESTROY with peers, backend $be" => sub {
        my $srv = start_server(
            backend   => $be,
            timeout   => 1,
            callback  => { data => \&data },
            child_run => sub {
                my $port = $_[0]->sockport;
                my $rv = $_[0]->run;
                log_event('run_returned %s', $rv ? 1 : 0);
                Time::HiRes::sleep(0.3);    # peers stay open after stop
                log_event('dropping');
                undef $_[0];                # last reference: DESTROY
                log_event('dropped');
                log_event('bind %s', can_bind($port));
                Time::HiRes::sleep(0.5);
            },
        );
        my $a = client($srv);
        my $b = client($srv);
        print $a "x\n";
        is(read_line($a), "R:x\n", 'A served');
        print $b "stop\n";
        ok($srv->wait_event(qr/^run_returned 1$/), 'run returned after stop');
        ok($srv->wait_event(qr/^dropped$/), 'daemon dropped');
        is(read_until_eof($a, 5), '', 'A: EOF');
        ok(got_eof($a), 'DESTROY closed peer A');
        read_until_eof($b, 5);
        ok(got_eof($b), 'DESTROY closed peer B');
        ok($srv->wait_event(qr/^bind /), 'bind tried');
        is(($srv->grep_events(qr/^bind /))[0], 'bind 1', 'DESTROY freed the port');
        is($srv->wait_exit(5), 0, 'server exited 0');
    };
}

done_testing;
