#!perl
# print never blocks: 20 MiB to a slow reader all arrive byte-exact while
# other clients get prompt replies.  max_output drops a peer that lets too
# much output pile up.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use TestISD;
use Test::More;

my $MiB = 1048576;
# Under ASan (make asan-test; LD_PRELOAD=libasan.so) everything is two to
# three times slower: the latency bounds grow with it.  A print that
# blocked would stall the pings for seconds, not tenths.
my $SLOW = ($ENV{LD_PRELOAD} || '') =~ /asan/ ? 2.5 : 1;
my $base = substr(join('', map { chr } 0 .. 250) x (int($MiB / 251) + 1), 0, $MiB);
sub chunk { sprintf('%08d', $_[0]) . substr($base, 8) }    # 1 MiB, numbered

sub data {
    my ($io, $d) = @_;
    my $l = $io->getline;
    if ($l eq "big\n") {
        my $t0 = TestISD::now();
        my $ok = 0;
        for my $i (0 .. 19) { $ok++ if $io->print(chunk($i)) }
        log_event('big printed %d/20 in %.3f', $ok, TestISD::now() - $t0);
    }
    elsif ($l eq "flood\n") {
        my @r;
        for my $i (0 .. 15) { push @r, $io->print(chunk($i)) ? 1 : 0 }
        log_event('flood %s', join '', @r);
    }
    else {
        $io->print("pong $l");
    }
    1;
}

sub ping {
    my ($c, $i) = @_;
    my $t0 = now();
    print $c "$i\n";
    my $r = read_line($c, 3);
    return (defined $r && $r eq "pong $i\n") ? now() - $t0 : 99;
}

for my $be (backends()) {
    isd_subtest "20 MiB to a slow reader, backend $be" => sub {
        my $srv = start_server(backend => $be, timeout => 1, callback => { data => \&data });
        my $slow = client($srv);
        my $fast = client($srv);
        my @lat;
        push @lat, ping($fast, 0);

        print $slow "big\n";
        # the slow client reads nothing for a while
        my $end = now() + 0.5;
        my $i = 1;
        while (now() < $end) {
            push @lat, ping($fast, $i++);
            Time::HiRes::sleep(0.02);
        }
        ok($srv->wait_event(qr/^big printed/, 3), 'the server printed 20 MiB');
        my ($ev) = $srv->grep_events(qr/^big printed/);
        like($ev, qr{^big printed 20/20 }, 'every print returned true');
        my ($secs) = $ev =~ /in ([\d.]+)/;
        ok($secs < $SLOW, "printing 20 MiB to a reader that does not read took ${secs}s (never blocks)");

        # now it reads, slowly, 1 MiB at a time; the fast client keeps pinging
        my $bad = 0;
        my $got = 0;
        for my $n (0 .. 19) {
            my $blk = read_n($slow, $MiB, 5);
            $got += length $blk;
            $bad++ unless $blk eq chunk($n);
            push @lat, ping($fast, $i++) if $n % 2;
            Time::HiRes::sleep(0.01);
        }
        is($got, 20 * $MiB, 'the slow client got all 20 MiB');
        is($bad, 0, 'byte-exact, in order');
        is(read_for($slow, 0.2), '', 'and nothing more');
        my ($max) = sort { $b <=> $a } @lat;
        ok($max < 0.2 * $SLOW, sprintf('%d pings meanwhile, slowest %.3fs (< %.1fs)', scalar @lat, $max, 0.2 * $SLOW));
        ok($srv->alive, 'alive');
        close $slow;
        close $fast;
        is($srv->stop, 15, 'SIGTERM still ends the server (no signal left blocked)');
    };

    isd_subtest "max_output, backend $be" => sub {
        my $srv = start_server(
            backend    => $be,
            timeout    => 1,
            max_output => $MiB,
            callback   => {
                data   => \&data,
                error  => sub { log_event('error %s %s', defined $_[0] ? 'io' : 'undef', $_[2]) },
                remove => sub { log_event('remove %s', $_[0]->peerport) },
            },
        );
        my $c = client($srv);
        my $p = $c->sockport;
        print $c "flood\n";    # 16 MiB, never read
        ok($srv->wait_event(qr/^flood /, 5), 'flood printed');
        my ($ev) = $srv->grep_events(qr/^flood /);
        like($ev, qr/^flood 1*0+$/, "print turns false once over max_output ($ev)");
        ok($srv->wait_event(qr/^error /, 3), 'error callback called');
        ($ev) = $srv->grep_events(qr/^error /);
        like($ev, qr/^error io /, 'error gets the $io');
        ok($srv->wait_event(qr/^remove $p$/, 3), 'remove called');
        my $all = read_until_eof($c, 5);
        ok(got_eof($c), 'the peer is dropped (' . length($all) . ' bytes arrived before)');
        ok(length($all) < 16 * $MiB, 'not everything was delivered');
        close $c;
        Time::HiRes::sleep(0.1);
        is($srv->count(qr/^remove $p$/), 1, 'remove once');

        my $f = client($srv);
        is(ping($f, 1) < 1, 1, 'server still serving');
        close $f;
        is($srv->stop, 15, 'SIGTERM still ends the server (no signal left blocked)');
    };
}

done_testing;
