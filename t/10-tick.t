#!perl
# tick: called with (undef, $daemon) at the start of each cycle; with a
# timeout of 0.1 about 10 times a second while idle; with no timeout only when
# something happens.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use TestISD;
use Test::More;
use Scalar::Util qw(refaddr);

my $daemon_addr;    # child: refaddr of the daemon object

sub tick {
    my ($io, $d) = @_;
    log_event('tick %.4f %s %s %s %d', TestISD::now(), defined $io ? 'def' : 'undef',
              ref($d) || 'noref', (ref $d && refaddr($d) == $daemon_addr) ? 'same' : 'other',
              scalar @_);
}

sub data {
    my ($io) = @_;
    $io->print("R:" . $io->getline);
    1;
}

sub ticks { my ($srv) = @_; map { [ split / / ] } $srv->grep_events(qr/^tick /) }

for my $be (backends()) {
    isd_subtest "timeout 0.1, backend $be" => sub {
        my $srv = start_server(
            backend    => $be,
            timeout    => 0.1,
            callback   => { tick => \&tick, data => \&data },
            child_init => sub { $daemon_addr = refaddr($_[0]) },
        );
        Time::HiRes::sleep(1.2);
        my @t = ticks($srv);
        ok(@t >= 2, 'tick called while idle (' . scalar(@t) . ' times)');
        my @bad = grep { $_->[2] ne 'undef' || $_->[3] ne 'IO::Socket::INET::Daemon'
                         || $_->[4] ne 'same' || $_->[5] != 2 } @t;
        is(scalar(@bad), 0, 'every tick got exactly (undef, $daemon)')
            or diag explain $bad[0];

        # rate over one idle second, skipping the first tick
        my $t0 = $t[1][1];
        my $n = grep { $_->[1] >= $t0 && $_->[1] < $t0 + 1 } @t;
        ok($n >= 6 && $n <= 14, "about 10 ticks per idle second ($n)");
        my @gap = map { $t[$_][1] - $t[$_ - 1][1] } 2 .. $#t;
        my ($min) = sort { $a <=> $b } @gap;
        ok(defined $min && $min > 0.05, sprintf 'no busy loop: shortest idle gap %.3fs', $min || 0);

        # traffic: every cycle starts with a tick
        my $c = client($srv);
        my $before = scalar ticks($srv);
        for my $i (1 .. 20) {
            print $c "$i\n";
            is(read_line($c), "R:$i\n", "reply $i") or last;
        }
        my $during = scalar(ticks($srv)) - $before;
        # the tick starting the cycle after reply 20 may not be logged yet
        ok($during >= 19, "at least one tick per busy cycle ($during for 20 round trips)");
        close $c;
        is($srv->stop, 15, 'SIGTERM still ends the server (no signal left blocked)');
    };

    isd_subtest "no timeout, backend $be" => sub {
        my $srv = start_server(
            backend    => $be,
            timeout    => undef,
            callback   => { tick => \&tick, data => \&data },
            child_init => sub { $daemon_addr = refaddr($_[0]) },
        );
        Time::HiRes::sleep(0.3);
        my $idle = scalar ticks($srv);
        ok($idle >= 1 && $idle <= 2, "idle with no timeout: tick only at the start ($idle)");
        Time::HiRes::sleep(0.4);
        is(scalar(ticks($srv)), $idle, 'no ticks while waiting for traffic');
        my $c = client($srv);
        for my $i (1 .. 5) {
            print $c "$i\n";
            is(read_line($c), "R:$i\n", "reply $i");
        }
        my $after = scalar ticks($srv);
        ok($after - $idle >= 5, 'traffic makes cycles, each with a tick (' . ($after - $idle) . ')');
        my @bad = grep { $_->[2] ne 'undef' || $_->[4] ne 'same' } ticks($srv);
        is(scalar(@bad), 0, 'ticks got (undef, $daemon)');
        close $c;
        is($srv->stop, 15, 'SIGTERM still ends the server (no signal left blocked)');
    };
}

done_testing;
