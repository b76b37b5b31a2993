#!perl
# stop: from data and from tick run returns (true); run again on the same
# object keeps serving, connections included.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use TestISD;
use Test::More;

my $ticks = 0;
my $stop_at_tick = 0;    # child: tick number at which tick calls stop

sub data {
    my ($io, $d) = @_;
    my $l = $io->getline;
    if ($l eq "stop\n") {
        $io->print("stopping\n");
        $d->stop;
        log_event('stop called');
        return 1;
    }
    if ($l eq "tickstop\n") {
        $stop_at_tick = $ticks + 3;
        $io->print("ok\n");
        return 1;
    }
    $io->print("R:$l");
    1;
}

sub tick {
    my (undef, $d) = @_;
    $ticks++;
    if ($stop_at_tick && $ticks >= $stop_at_tick) {
        $stop_at_tick = 0;
        $d->stop;
        log_event('tick stop');
    }
}

for my $be (backends()) {
    isd_subtest "stop from data, run again, backend $be" => sub {
        my $srv = start_server(
            backend   => $be,
            timeout   => 5,    # long: run must not wait for it after stop
            callback  => { data => \&data, remove => sub { log_event('remove') } },
            child_run => sub {
                my ($d) = @_;
                for my $i (1 .. 3) {
                    my $t0 = TestISD::now();
                    my $rv = $d->run;
                    log_event('run %d returned %s', $i, $rv ? 1 : 0);
                    Time::HiRes::sleep(0.3);    # stopped: nobody is served now
                    log_event('run %d again', $i + 1) if $i < 3;
                }
            },
        );
        my $c = client($srv);
        print $c "a\n";
        is(read_line($c), "R:a\n", 'served in run 1');
        my $t0 = now();
        print $c "stop\n";
        is(read_line($c), "stopping\n", 'output of the stopping callback delivered');
        ok($srv->wait_event(qr/^run 1 returned/, 3), 'run 1 returned');
        ok(now() - $t0 < 2, 'promptly, not after the 5s timeout');
        is(($srv->grep_events(qr/^run 1 returned/))[0], 'run 1 returned 1', 'run returns true after stop');

        # while stopped, a line from the old connection waits; run 2 serves it
        print $c "while stopped\n";
        my $new = try_client($srv->port);
        ok($new, 'new connection accepted by the kernel while stopped (still listening)');
        ok($srv->wait_event(qr/^run 2 again$/, 3), 'run 2 started');
        is(read_line($c, 3), "R:while stopped\n", 'run again: the old connection is still served');
        if ($new) {
            print $new "new\n";
            is(read_line($new, 3), "R:new\n", 'run again: a connection made while stopped is served');
        }
        my $c2 = client($srv);
        print $c2 "b\n";
        is(read_line($c2), "R:b\n", 'run again: new connections served');

        print $c2 "stop\n";
        is(read_line($c2), "stopping\n", 'stop in run 2');
        ok($srv->wait_event(qr/^run 2 returned 1$/, 3), 'run 2 returned true');
        ok($srv->wait_event(qr/^run 3 again$/, 3), 'run 3 started');
        print $c "c\n";
        is(read_line($c, 3), "R:c\n", 'served in run 3');
        print $c "stop\n";
        is(read_line($c), "stopping\n", 'stop in run 3');
        ok($srv->wait_event(qr/^run 3 returned 1$/, 3), 'run 3 returned true');
        is($srv->wait_exit(5), 0, 'child exited 0');
        is($srv->count(qr/^remove$/), 0, 'stop closes no connection (no remove)');
        close $_ for grep defined, $c, $c2, $new;
    };

    isd_subtest "stop from tick, backend $be" => sub {
        my $srv = start_server(
            backend   => $be,
            timeout   => 0.05,
            callback  => { data => \&data, tick => \&tick },
            child_run => sub {
                my ($d) = @_;
                for my $i (1 .. 2) {
                    my $rv = $d->run;
                    log_event('run %d returned %s', $i, $rv ? 1 : 0);
                }
            },
        );
        my $c = client($srv);
        print $c "tickstop\n";
        is(read_line($c), "ok\n", 'armed');
        ok($srv->wait_event(qr/^tick stop$/, 3), 'tick called stop');
        ok($srv->wait_event(qr/^run 1 returned 1$/, 3), 'run returned true after stop from tick');
        print $c "x\n";
        is(read_line($c, 3), "R:x\n", 'run again keeps serving');
        print $c "tickstop\n";
        is(read_line($c), "ok\n", 'armed again');
        ok($srv->wait_event(qr/^run 2 returned 1$/, 3), 'second run stopped from tick too');
        is($srv->wait_exit(5), 0, 'child exited 0');
        close $c;
    };

    isd_subtest "stop from tick with no timeout returns without waiting, backend $be" => sub {
        my $srv = start_server(
            backend   => $be,
            timeout   => undef,
            callback  => { tick => sub { log_event('tick'); $_[1]->stop } },
            child_run => sub {
                my ($d) = @_;
                for my $i (1 .. 3) {
                    my $t0 = TestISD::now();
                    my $rv = $d->run;
                    log_event('run %d returned %s after %.3f', $i, $rv ? 1 : 0, TestISD::now() - $t0);
                }
            },
        );
        ok($srv->wait_event(qr/^run 3 returned/, 3), 'three runs, each stopped by its first tick, with no traffic');
        my @r = $srv->grep_events(qr/^run \d returned/);
        for my $r (@r) {
            like($r, qr/^run \d returned 1 after /, 'run returned true');
            my ($t) = $r =~ /after ([\d.]+)/;
            ok(defined $t && $t < 0.5, "returned without waiting for traffic ($r)");
        }
        is($srv->count(qr/^tick$/), 3, 'one tick per run');
        is($srv->wait_exit(5), 0, 'child exited 0');
    };
}

done_testing;
