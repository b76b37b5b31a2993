#!perl
# A callback asking for more lines than are buffered waits for that
# connection only, up to read_timeout; on timeout getline returns undef.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use TestISD;
use Test::More;

sub data {
    my ($io, $d) = @_;
    my $first = $io->getline;
    if ($first eq "two\n") {
        my $t0 = TestISD::now();
        my $second = $io->getline;
        log_event('second %s %s after %.3f', $io->peerport,
                  defined $second ? $second : 'undef', TestISD::now() - $t0);
        $io->print(defined $second ? "got $second" : "timeout\n");
        return 1;
    }
    log_event('data %s %s', $io->peerport, $first);
    $io->print("R:$first");
    1;
}

sub second {
    my ($srv, $p) = @_;
    return unless $srv->wait_event(qr/^second $p /, 5);
    my ($ev) = $srv->grep_events(qr/^second $p /);
    my ($line, $t) = $ev =~ /^second $p (.*) after ([\d.]+)$/s;
    return ($line, $t);
}

for my $be (backends()) {
    isd_subtest "read_timeout 1, backend $be" => sub {
        my $srv = start_server(backend => $be, timeout => 5, read_timeout => 1,
                               callback => { data => \&data });
        my $a = client($srv);
        my $b = client($srv);
        my $pa = $a->sockport;

        # the second line arrives later: the wait ends when it comes
        print $a "two\n";
        Time::HiRes::sleep(0.3);
        print $b "from b\n";      # another client's line must not satisfy A's getline
        Time::HiRes::sleep(0.1);
        my $t0 = now();
        print $a "second line\n";
        is(read_line($a, 3), "got second line\n", 'the second getline returned the next line of that client');
        ok(now() - $t0 < 0.5, sprintf 'the wait ended when the line arrived (%.3fs)', now() - $t0);
        my ($line, $t) = second($srv, $pa);
        is($line, "second line\n", 'server saw the second line');
        ok($t >= 0.3 && $t < 1, "getline waited ${t}s");
        is(read_line($b, 3), "R:from b\n", "B's line was served afterwards by B's own data call");
        is($srv->count(qr/^data $pa second/), 0, 'the consumed line is not delivered to data again');

        # both lines in one packet: no wait, one data call
        print $a "two\nsame packet\n";
        is(read_line($a), "got same packet\n", 'second line already buffered');
        ($line, $t) = second($srv, $pa);
        Time::HiRes::sleep(0.1);
        is($srv->count(qr/^data $pa same packet/), 0, 'data not called again for the consumed line');

        # the second line never comes: undef after read_timeout
        my $c = client($srv);
        my $pc = $c->sockport;
        $t0 = now();
        print $c "two\n";
        is(read_line($c, 4), "timeout\n", 'getline returned undef');
        my $el = now() - $t0;
        ok($el >= 0.8 && $el < 2, sprintf 'after about read_timeout (%.2fs)', $el);
        ($line, $t) = second($srv, $pc);
        is($line, 'undef', 'server saw undef');
        print $c "later\n";
        is(read_line($c), "R:later\n", 'the connection still works after the timeout');
        print $b "b2\n";
        is(read_line($b), "R:b2\n", 'others still served');
        close $_ for $a, $b, $c;
        is($srv->stop, 15, 'SIGTERM still ends the server (no signal left blocked)');
    };

    isd_subtest "read_timeout defaults to timeout, backend $be" => sub {
        my $srv = start_server(backend => $be, timeout => 0.5, callback => { data => \&data });
        my $c = client($srv);
        my $t0 = now();
        print $c "two\n";
        is(read_line($c, 4), "timeout\n", 'getline returned undef');
        my $el = now() - $t0;
        ok($el >= 0.35 && $el < 1.5, sprintf 'after about timeout (%.2fs)', $el);
        close $c;
        is($srv->stop, 15, 'SIGTERM still ends the server (no signal left blocked)');
    };

    isd_subtest "EOF during the wait, backend $be" => sub {
        my $srv = start_server(backend => $be, timeout => 5, read_timeout => 3,
                               callback => { data => \&data,
                                             remove => sub { log_event('remove %s', $_[0]->peerport) } });
        my $c = client($srv);
        my $p = $c->sockport;
        print $c "two\n";
        Time::HiRes::sleep(0.2);
        shutdown($c, 1);
        is(read_line($c, 3), "timeout\n", 'getline returned undef at EOF');
        my ($line, $t) = second($srv, $p);
        ok(defined $t && $t < 1, 'without waiting for read_timeout');
        ok($srv->wait_event(qr/^remove $p$/), 'then remove');
        close $c;
        is($srv->stop, 15, 'SIGTERM still ends the server (no signal left blocked)');
    };
}

done_testing;
