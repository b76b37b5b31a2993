#!perl
# %SIG handlers run promptly while run waits in C (even with no timeout and
# no traffic); SIGPIPE never kills the server.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use TestISD;
use Test::More;
use Socket qw(SOL_SOCKET SO_LINGER SO_RCVBUF);

my $MiB = 1048576;

sub data {
    my ($io, $d) = @_;
    my $l = $io->getline;
    if ($l eq "big\n") {
        my $ok = 0;
        $ok += $io->print('z' x $MiB) ? 1 : 0 for 1 .. 8;
        log_event('big printed %d', $ok);
    }
    elsif ($l eq "late\n") {
        Time::HiRes::sleep(0.3);       # the client is gone by now
        my @r;
        for (1 .. 50) { push @r, $io->print('w' x 65536) ? 1 : 0 }
        push @r, $io->syswrite("x" x 1000) ? 1 : 0;
        log_event('late wrote %s', join '', @r);
    }
    else {
        $io->print("R:$l");
    }
    1;
}

sub handlers {
    my ($d) = @_;
    for my $sig (qw(USR1 HUP INT)) {
        $SIG{$sig} = sub { log_event('sig %s %.4f', $sig, TestISD::now()) };
    }
    $SIG{ALRM} = sub { log_event('sig ALRM %.4f', TestISD::now()) };
    $SIG{TERM} = sub { log_event('sig TERM %.4f', TestISD::now()); $d->stop };
}

sub latency {
    my ($srv, $sig, $timeout) = @_;
    my $t0 = now();
    kill $sig, $srv->pid;
    return 99 unless $srv->wait_event(qr/^sig $sig /, $timeout || 3);
    my ($ev) = $srv->grep_events(qr/^sig $sig /);
    my ($t) = $ev =~ /([\d.]+)$/;
    return $t - $t0;
}

for my $be (backends()) {
    isd_subtest "signals while waiting with no timeout, backend $be" => sub {
        my $srv = start_server(backend => $be, timeout => undef,
                               callback => { data => \&data, tick => sub { log_event('tick') } },
                               child_init => \&handlers);
        Time::HiRes::sleep(0.3);    # the server is deep in its wait now
        my $ticks = $srv->count(qr/^tick$/);
        for my $sig (qw(USR1 HUP ALRM INT USR1)) {
            my $lat = latency($srv, $sig);
            ok($lat < 0.2, sprintf '%s handler ran %.3fs after the kill (< 0.2s)', $sig, $lat);
            Time::HiRes::sleep(0.05);
        }
        is($srv->count(qr/^sig USR1 /), 2, 'USR1 handler ran once per signal');
        ok($srv->alive, 'alive');
        my $c = client($srv);
        print $c "x\n";
        is(read_line($c), "R:x\n", 'still serving after the signals');
        close $c;

        # TERM handler calling stop: run returns
        my $lat = latency($srv, 'TERM');
        ok($lat < 0.2, sprintf 'TERM handler ran after %.3fs', $lat);
        ok($srv->wait_event(qr/^run_returned 1$/, 2), 'stop from a signal handler makes run return (no traffic, no timeout)');
        is($srv->wait_exit(3), 0, 'exited 0');
    };

    isd_subtest "alarm set in the server fires during the wait, backend $be" => sub {
        my $t0;
        my $srv = start_server(backend => $be, timeout => undef,
                               callback => { data => \&data },
                               child_init => sub {
                                   handlers(@_);
                                   log_event('armed %.4f', TestISD::now());
                                   Time::HiRes::alarm(0.3);
                               });
        ok($srv->wait_event(qr/^sig ALRM /, 3), 'alarm handler ran');
        my ($armed) = map { /([\d.]+)$/ } $srv->grep_events(qr/^armed /);
        my ($fired) = map { /([\d.]+)$/ } $srv->grep_events(qr/^sig ALRM /);
        my $dt = defined $fired ? $fired - $armed : 99;
        ok($dt >= 0.25 && $dt < 0.5, sprintf 'alarm(0.3) fired after %.3fs', $dt);
        $srv->stop;
    };

    isd_subtest "signals while waiting with a long timeout, backend $be" => sub {
        my $srv = start_server(backend => $be, timeout => 5,
                               callback => { data => \&data }, child_init => \&handlers);
        Time::HiRes::sleep(0.2);
        my $lat = latency($srv, 'USR1');
        ok($lat < 0.2, sprintf 'USR1 handler ran after %.3fs, not after the 5s timeout', $lat);
        $srv->stop;
    };

    # While traffic flows, run waits without blocking signals first (capped
    # at 10 ms); then the traffic stops: handlers must stay prompt in both.
    isd_subtest "signals during and right after traffic, backend $be" => sub {
        my $srv = start_server(backend => $be, timeout => undef,
                               callback => { data => \&data, tick => sub { log_event('tick') } },
                               child_init => \&handlers);
        my $c = client($srv);
        my ($n, $bad, @lat) = (0, 0);
        for my $round (1 .. 20) {
            for (1 .. 25) {             # ping-pong: the server is busy
                print $c "p$n\n";
                $bad++ unless (read_line($c) // '') eq "R:p$n\n";
                $n++;
            }
            # a signal right after a reply (odd rounds: the capped wait),
            # or once the server has gone back to the exact wait
            Time::HiRes::sleep(0.05) unless $round % 2;
            my $t0 = now();
            kill 'USR1', $srv->pid;
            $srv->wait_event(qr/^sig USR1 /, 2, $round);
            my ($t) = (($srv->grep_events(qr/^sig USR1 /))[$round - 1] // '') =~ /([\d.]+)$/;
            push @lat, defined $t ? $t - $t0 : 99;
        }
        is($bad, 0, "$n replies, all right");
        is($srv->count(qr/^sig USR1 /), 20, 'USR1 handler ran once per signal');
        my ($max) = sort { $b <=> $a } @lat;
        ok($max < 0.2, sprintf 'slowest handler ran %.4fs after its kill (< 0.2s)', $max);
        my $ticks = $srv->count(qr/^tick$/);
        diag "$ticks ticks for $n lines and 20 signals" if $ENV{TEST_VERBOSE};
        ok($ticks <= $n + 20 + 10, "no extra ticks from the capped waits ($ticks ticks for $n lines, 20 signals)");
        Time::HiRes::sleep(0.3);    # quiet again: the exact wait
        my $lat = latency($srv, 'HUP');
        ok($lat < 0.2, sprintf 'HUP handler ran %.3fs after the kill, traffic over', $lat);
        close $c;
        $srv->stop;
    };

    # Reading methods that wait for input (getline, read, eof...) must leave
    # the signal mask as they found it, whichever way they return.
    for my $how (qw(kernel-data closed-io eof-wait)) {
        isd_subtest "signals after a reading method ($how), backend $be" => sub {
            my $srv = start_server(
                backend    => $be,
                timeout    => undef,
                read_timeout => 1,
                child_init => \&handlers,
                callback   => { data => sub {
                    my ($io, $d) = @_;
                    my $l = $io->getline;
                    if ($how eq 'kernel-data') {      # the next line is already in the kernel
                        Time::HiRes::sleep(0.2);
                        my $n = $io->getline;
                        log_event('read %s', $n // 'undef');
                    }
                    elsif ($how eq 'closed-io') {     # getline on a removed peer
                        $d->remove($io);
                        my $n = $io->getline;
                        log_event('read %s', $n // 'undef');
                    }
                    else {                            # eof when the peer half-closed
                        Time::HiRes::sleep(0.2);
                        log_event('read eof=%d', $io->eof ? 1 : 0);
                    }
                    1;
                } },
            );
            my $c = client($srv);
            print $c "first\n";
            if ($how eq 'kernel-data') { Time::HiRes::sleep(0.05); print $c "second\n" }
            if ($how eq 'eof-wait')    { shutdown($c, 1) }
            ok($srv->wait_event(qr/^read /, 3), 'the reading method returned');
            Time::HiRes::sleep(0.2);    # back in run's wait, no traffic
            my $lat = latency($srv, 'USR1', 1);
            ok($lat < 0.2, sprintf 'USR1 handler still runs promptly afterwards (%.3fs)', $lat);
            close $c;
            my $st = $srv->stop;    # the TERM handler stops run: exit 0
            is($st, 0, 'SIGTERM handler ran and the server ended (signals not left blocked)');
        };
    }

    isd_subtest "SIGPIPE never kills the server, backend $be" => sub {
        my $srv = start_server(backend => $be, timeout => 1,
                               callback => { data => \&data,
                                             remove => sub { log_event('remove %s', $_[0]->peerport) } });
        # a reader that disappears while the server writes a lot
        my $c = client($srv);
        my $p = $c->sockport;
        print $c "big\n";
        my $got = read_n($c, 65536, 3);
        ok(length $got > 0, 'the server started sending');
        setsockopt($c, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0));
        close $c;    # reset, with 8 MiB still to go
        ok($srv->wait_event(qr/^remove $p$/, 3), 'remove called for the vanished reader');
        ok($srv->alive, 'server alive after writing to a reset connection');

        # writes from a callback after the peer is gone
        $c = client($srv);
        $p = $c->sockport;
        print $c "late\n";
        Time::HiRes::sleep(0.1);    # the callback is sleeping now
        setsockopt($c, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0));
        close $c;
        ok($srv->wait_event(qr/^late wrote /, 3), 'the callback wrote to the closed peer');
        my ($ev) = $srv->grep_events(qr/^late wrote /);
        like($ev, qr/0$/, 'the writes failed (print false) instead of killing the process');
        ok($srv->alive, 'server alive (no SIGPIPE death)');
        ok($srv->wait_event(qr/^remove $p$/, 3), 'remove called');

        my $o = client($srv);
        print $o "y\n";
        is(read_line($o), "R:y\n", 'still serving');
        close $o;
        my $st = $srv->stop;
        ok(!($st & 127) || ($st & 127) == 15, 'the child was not killed by SIGPIPE');
    };
}

done_testing;
