#!perl
# Descriptor exhaustion, hard: the server may hold 256 descriptors and 5,000
# clients connect at once and stay; for 5 s the listen queue never empties.
# The server's CPU time over the flood (from /proc/PID/stat) must stay low
# (the core's spare descriptor and 100 ms accept pause, not a busy loop),
# a client connected before the flood must be answered throughout, and once
# the flood is gone new clients are served again.  t/34-fd-exhaustion.t is
# the quick version of this.
# Figures: flood size, server CPU %, connections shed, recovery time.
#
#   ISD_FLOOD_CONNS   flood connections (default 5000)
#   ISD_FLOOD_SECS    flood duration (default 5)
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../t/lib", "$FindBin::Bin/lib";
use TestISD;
use ISDStress;
use Test::More;

$TestISD::DEADLINE = 300;
alarm $TestISD::DEADLINE;

my $N = $ENV{ISD_FLOOD_CONNS} || 5000;
my $SECS = $ENV{ISD_FLOOD_SECS} || 5;
my $LIMIT = 256;
load_tool() or plan skip_all => $@;
plan skip_all => 'needs Linux /proc' unless -r "/proc/$$/stat";
my $soft = raise_nofile($N + 256);
plan skip_all => "RLIMIT_NOFILE is $soft and cannot be raised to " . ($N + 256) if $soft < $N + 256;
my $CPU_MAX = asan_build() ? 0.5 : 0.2;

for my $be (backends()) {
    isd_subtest "$N connections against $LIMIT descriptors for ${SECS}s, backend $be" => sub {
        my $srv = echo_server(backend => $be, child_deadline => 200, backlog => 8192);
        my $pid = $srv->pid;
        my $vip = client($srv);
        ok(echo_ping($vip, 'before'), 'served before the flood');
        ok(set_nofile($pid, $LIMIT), "server RLIMIT_NOFILE set to $LIMIT") or return;

        # the flood runs in the background; we watch the server meanwhile
        my ($c0, $t0, $c1, $t1, $vip_ok, $vip_max) = (undef, undef, undef, undef, 0, 0);
        my $flood_pid = open my $fh, '-|';
        die "fork: $!" unless defined $flood_pid;
        if (!$flood_pid) {
            my $r = run_tool(['flood', '-p', $srv->port, '-n', $N, '-t', $SECS, '-D', $SECS + 60],
                             timeout => $SECS + 90);
            print map { "$_ $r->{$_}\n" } grep { !/stderr/ } sort keys %$r;
            POSIX::_exit(0);
        }
        Time::HiRes::sleep(1);             # the flood is on
        $c0 = proc_cpu_ticks($pid);
        $t0 = now();
        while (now() - $t0 < $SECS - 1.5) {
            my $t = now();
            $vip_ok++ if echo_ping($vip, "during $vip_ok");
            $vip_max = now() - $t if now() - $t > $vip_max;
            Time::HiRes::sleep(0.1);
        }
        $c1 = proc_cpu_ticks($pid);
        $t1 = now();
        my %r = map { /^(\w+) (.*)$/ ? ($1, $2) : () } <$fh>;
        close $fh;
        my $t_end = now();
        my $cpu = ($c1 - $c0) / clk_tck() / ($t1 - $t0);

        ok($srv->alive, 'the server survived');
        ok($r{flood_connected} > $LIMIT, "$r{flood_connected} flood connections were made");
        ok($cpu < $CPU_MAX, sprintf 'server CPU during the flood: %.1f%% of a core (< %d%%)',
                                    100 * $cpu, 100 * $CPU_MAX);
        ok($vip_ok >= 5, sprintf 'the earlier client was answered %d times meanwhile (slowest %.3fs)',
                                 $vip_ok, $vip_max);
        my @err = $srv->grep_events(qr/^error accept: /);
        ok(@err >= 1 && @err <= $SECS + 3, scalar(@err) . ' "accept" error reports (rate-limited)');

        # the flood client has closed everything: back to normal
        my $back;
        wait_until(sub {
            my $c = TestISD::try_client($srv->port, timeout => 1) or return 0;
            $back = echo_ping($c, 'after', 1);
            close $c;
            $back;
        }, 60, 0.1);
        my $rec = now() - $t_end;
        ok($back, sprintf 'a new client is served %.2fs after the flood ended', $rec);
        ok(echo_ping($vip, 'still'), 'and the earlier one still is');
        close $vip;
        ok(wait_until(sub { stats($srv)->{open} == 1 }, 60), 'every flood connection closed on the server');
        my $st = stats($srv);
        is($st->{dups}, 0, 'remove never twice');
        is($st->{removes}, $st->{adds} - 1, 'remove once for every accepted connection');

        # one shed per EMFILE, then a 100 ms accept pause: ~10 a second
        ok($r{flood_shed} >= 1 && $r{flood_shed} <= 10 * $SECS + 10,
           "$r{flood_shed} pending connections shed in ${SECS}s (the spare descriptor, one per pause)");
        figure("$be.fdflood_connections", $r{flood_connected});
        figure("$be.fdflood_server_limit", $LIMIT);
        figure("$be.fdflood_cpu_percent", sprintf '%.1f', 100 * $cpu);
        figure("$be.fdflood_shed", $r{flood_shed});
        figure("$be.fdflood_vip_max_secs", sprintf '%.3f', $vip_max);
        figure("$be.fdflood_recovery_secs", sprintf '%.2f', $rec);
        is($srv->stop, 15, 'SIGTERM ends the server');
    };
}

done_testing;
