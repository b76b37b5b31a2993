#!perl
# Slow-loris: thousands of connections that each trickle one byte a second
# of a line that never ends (for the test's duration), while one normal client
# sends a line every 50 ms: its replies must stay prompt, no slow connection
# may be dropped, and when the slow lines finally end every one must come
# back whole.  Figures: slow connections held, probe latency (median, p99,
# max), server memory per slow connection.
#
#   ISD_LORIS_CONNS   slow connections (default 3000)
#   ISD_LORIS_SECS    how long they trickle (default 8)
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../t/lib", "$FindBin::Bin/lib";
use TestISD;
use ISDStress;
use Test::More;

$TestISD::DEADLINE = 300;
alarm $TestISD::DEADLINE;

my $N = $ENV{ISD_LORIS_CONNS} || 3000;
my $SECS = $ENV{ISD_LORIS_SECS} || 8;
load_tool() or plan skip_all => $@;
my $soft = raise_nofile($N + 256);
plan skip_all => "RLIMIT_NOFILE is $soft and cannot be raised to " . ($N + 256) if $soft < $N + 256;
my $slow = asan_build();

for my $be (backends()) {
    isd_subtest "$N slow-loris connections for ${SECS}s, backend $be" => sub {
        my $srv = echo_server(backend => $be, child_deadline => 200);
        my $pid = $srv->pid;
        set_nofile($pid, $N + 256);
        my $w = run_tool(['loris', '-p', $srv->port, '-n', 50, '-t', 1], timeout => 30);
        is($w->{exit}, 0, 'warm-up') or diag $w->{stderr};
        my $rss0 = proc_rss_kb($pid);

        my $r = run_tool(['loris', '-p', $srv->port, '-n', $N, '-t', $SECS, '-i', 50, '-D', $SECS + 120],
                         timeout => $SECS + 150);
        my $hwm = proc_hwm_kb($pid);
        is($r->{exit}, 0, 'the load client passed every check') or diag $r->{stderr};
        is($r->{loris_connected}, $N, "$N slow connections made");
        is($r->{early_eof} + $r->{reset}, 0, 'none dropped while trickling');
        is($r->{loris_lines_echoed}, $N, "all $N slow lines came back whole at the end");
        ok($r->{probe_count} >= $SECS * 1000 / 50 / 2, "$r->{probe_count} probe replies meanwhile");
        my $max_ms = $slow ? 2000 : 500;
        ok($r->{probe_max_ms} < $max_ms, "probe latency: median $r->{probe_median_ms} ms, "
           . "p99 $r->{probe_p99_ms} ms, max $r->{probe_max_ms} ms (< $max_ms)");
        ok($r->{probe_median_ms} < ($slow ? 200 : 20), 'median probe latency stays small');
        ok(wait_until(sub { stats($srv)->{open} == 1 }, 20), 'all closed on the server side');
        my $st = stats($srv);
        is($st->{dups}, 0, 'remove never twice');
        is($st->{late}, 0, 'no data event for a closed peer');
        is($st->{removes}, $st->{adds} - 1, 'remove once for every connection');
        ok($srv->alive, 'alive');
        my $per = ($hwm - $rss0) * 1024 / $N;
        figure("$be.loris_connections", $r->{loris_connected});
        figure("$be.loris_secs", $SECS);
        figure("$be.loris_probe_median_ms", $r->{probe_median_ms});
        figure("$be.loris_probe_p99_ms", $r->{probe_p99_ms});
        figure("$be.loris_probe_max_ms", $r->{probe_max_ms});
        figure("$be.loris_server_bytes_per_conn", sprintf '%.0f', $per);
        is($srv->stop, 15, 'SIGTERM ends the server');
    };
}

done_testing;
