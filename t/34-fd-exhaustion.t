#!perl
# Descriptor exhaustion: the server's RLIMIT_NOFILE is lowered so that only
# ~20 connections fit, then hundreds of clients connect and keep connecting.
# accept must not spin (the server's CPU time during the flood, from
# /proc/PID/stat, stays low: the core sheds one pending connection with its
# spare descriptor and pauses accepting for 100 ms), the error is reported
# (rate-limited), an already connected client is still served, nothing
# crashes, and once the flood's descriptors are closed new clients are
# served again.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib", "$FindBin::Bin/../xt/lib";
use TestISD;
use ISDStress qw(proc_cpu_ticks proc_nfds set_nofile clk_tck figure asan_build);
use Test::More;
use IO::Socket::INET;
use Socket qw(IPPROTO_TCP);

plan skip_all => 'needs Linux /proc' unless -r "/proc/$$/stat" && -d "/proc/$$/fd";

my $FLOOD_SECS = 1.0;
my $CPU_MAX = asan_build() ? 0.5 : 0.25;    # fraction of one core

sub flood_one {
    my ($port) = @_;
    return IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                 Proto => 'tcp', Blocking => 0);
}

# how many of $pid's descriptors are numbered below $limit
sub fds_below {
    my ($pid, $limit) = @_;
    opendir my $dh, "/proc/$pid/fd" or return -1;
    my $n = grep { /^\d+$/ && $_ < $limit } readdir $dh;
    return $n;
}

for my $be (backends()) {
    isd_subtest "descriptor exhaustion, backend $be" => sub {
        my $srv = start_server(
            backend => $be, timeout => 1,
            callback => {
                data  => sub { $_[0]->print($_[2]); 1 },
                error => sub { log_event('error %s %s', defined $_[0] ? 'io' : 'undef', $_[2]) },
            });
        my $pid = $srv->pid;
        my $vip = client($srv);
        ok(echo_ping($vip, 'before'), 'a client is served before the flood');
        my $nfd0 = proc_nfds($pid);
        ok(set_nofile($pid, $nfd0 + 20), "server RLIMIT_NOFILE lowered to " . ($nfd0 + 20))
            or return;

        # the flood: 150 at once, then 5 more every 50 ms (xt/fd-flood.t
        # floods harder); the listen queue never empties meanwhile
        my $t_flood = now();
        my @flood = grep { defined } map { flood_one($srv->port) } 1 .. 150;
        ok(@flood >= 100, scalar(@flood) . ' flood connections started');
        Time::HiRes::sleep(0.2);    # the first wave hits the limit
        my $c0 = proc_cpu_ticks($pid);
        my $t0 = now();
        my $vip_ok = 0;
        my $vip_slow = 0;
        while (now() - $t0 < $FLOOD_SECS) {
            push @flood, grep { defined } map { flood_one($srv->port) } 1 .. 5;
            my $t = now();
            $vip_ok++ if echo_ping($vip, "during $vip_ok");
            $vip_slow = now() - $t if now() - $t > $vip_slow;
            Time::HiRes::sleep(0.05);
        }
        my $c1 = proc_cpu_ticks($pid);
        my $secs = now() - $t0;
        my $cpu = ($c1 - $c0) / clk_tck() / $secs;
        ok($srv->alive, 'the server survived the flood');
        ok($cpu < $CPU_MAX, sprintf 'server CPU during a %.1fs flood: %.1f%% of a core (< %d%%: accept does not spin)',
                                    $secs, 100 * $cpu, 100 * $CPU_MAX);
        ok($vip_ok >= 5, "the connected client was served during the flood ($vip_ok replies, slowest "
                         . sprintf('%.3fs)', $vip_slow));
        my $below = fds_below($pid, $nfd0 + 20);
        ok($below >= $nfd0 + 18, "the flood did fill the server's descriptors ($below of " . ($nfd0 + 20) . ')');

        my @err = $srv->grep_events(qr/^error undef accept: /);
        ok(@err >= 1, 'out of descriptors reported through error ($io undef): ' . ($err[0] // 'none'));
        ok(@err <= 2 + $FLOOD_SECS * 2, scalar(@err) . ' error reports: rate-limited, not one per attempt');

        # the spare descriptor: pending clients hear a close instead of hanging
        my $shed = 0;
        for my $f (@flood) {
            my $n = sysread($f, my $buf, 16);
            $shed++ if defined $n && $n == 0 || !defined $n && ($!{ECONNRESET});
        }
        my $flood_secs = now() - $t_flood;
        ok($shed >= 1, "$shed pending connections were shed with a close (the spare descriptor)");
        # one shed per EMFILE, then a 100 ms pause: no more than ~10 a second
        ok($shed <= 10 * $flood_secs + 5,
           sprintf 'at most one shed per 100 ms accept pause (%d in %.1fs)', $shed, $flood_secs);

        figure("$be.flood_cpu_percent", sprintf '%.1f', 100 * $cpu) if $ENV{ISD_FIGURES};
        figure("$be.flood_connections", scalar @flood) if $ENV{ISD_FIGURES};
        figure("$be.flood_shed", $shed) if $ENV{ISD_FIGURES};
        figure("$be.flood_error_reports", scalar @err) if $ENV{ISD_FIGURES};

        # descriptors free up: new clients are served again
        close $_ for @flood;
        @flood = ();
        my $back;
        my $t1 = now();
        wait_until(sub {
            my $c = TestISD::try_client($srv->port, timeout => 1) or return 0;
            $back = echo_ping($c, 'after', 1);
            close $c;
            $back;
        }, 15, 0.05);
        # (the dead connections still queued are accepted as descriptors
        # allow: about 20 per 100 ms pause here)
        ok($back, sprintf 'a new client is served again %.2fs after the flood ended', now() - $t1);
        ok(echo_ping($vip, 'still'), 'and the old one too');
        figure("$be.flood_recovery_secs", sprintf '%.2f', now() - $t1) if $ENV{ISD_FIGURES};
        close $vip;
        ok(wait_until(sub { proc_nfds($pid) <= $nfd0 }, 5), 'the server is back to its descriptors before the flood');
        is($srv->stop, 15, 'SIGTERM ends the server');
    };
}

done_testing;
