#!perl
# 10,000 concurrent connections on one server, each proven live with a
# request and its reply, then all held open, then every one proven again at
# once: none refused, none lost, remove exactly once each after they close.
# Figures: connections held, server bytes per connection, connect time.
#
#   ISD_STRESS_CONNS   how many (default 10000)
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../t/lib", "$FindBin::Bin/lib";
use TestISD;
use ISDStress;
use Test::More;

$TestISD::DEADLINE = 600;
alarm $TestISD::DEADLINE;

my $N = $ENV{ISD_STRESS_CONNS} || 10_000;
load_tool() or plan skip_all => $@;
my $soft = raise_nofile($N + 256);
plan skip_all => "RLIMIT_NOFILE is $soft here and cannot be raised to " . ($N + 256)
    if $soft < $N + 256;
my $per_conn_max = asan_build() ? 64 * 1024 : 8 * 1024;

for my $be (backends()) {
    isd_subtest "$N concurrent connections, backend $be" => sub {
        my $srv = echo_server(backend => $be, child_deadline => 500);
        my $pid = $srv->pid;
        ok(set_nofile($pid, $N + 256) || (nofile_limits($pid))[0] >= $N + 64,
           'server RLIMIT_NOFILE raised');

        # warm-up: the loop's tables, Perl's arenas
        my $w = run_tool(['hold', '-p', $srv->port, '-n', 500, '-h', 0.1], timeout => 60);
        is($w->{exit}, 0, 'warm-up: 500 connections') or diag $w->{stderr};
        ok(wait_until(sub { stats($srv)->{open} == 1 }, 10), 'warm-up connections all closed');
        my $rss0 = proc_rss_kb($pid);

        my ($rss_held, $fds_held, $st_held);
        my $r = run_tool(['hold', '-p', $srv->port, '-n', $N, '-c', 512, '-h', 2, '-D', 240],
            timeout => 300,
            on_line => sub {
                my ($k) = @_;
                return unless $k eq 'phase1_done';
                $rss_held = proc_rss_kb($pid);
                $fds_held = proc_nfds($pid);
                $st_held  = eval { stats($srv, 30) };
            });
        is($r->{exit}, 0, 'the load client passed every check') or diag $r->{stderr};
        is($r->{phase1_live}, $N, "$N connections each answered a request");
        is($r->{phase2_live}, $N, "after holding them 2s, all $N answered again at once");
        is($r->{refused}, 0, 'none refused');
        is($r->{connect_failed}, 0, 'no connect failed');
        is($r->{reset} + $r->{early_eof}, 0, 'none reset or closed by the server');
        is($r->{bad_reply}, 0, 'every reply byte-exact');
        ok($st_held && $st_held->{open} >= $N, "server had $N connections open at once ("
           . ($st_held ? $st_held->{open} - 1 : '?') . ' + the stats one)');
        ok($fds_held && $fds_held >= $N, "server held $fds_held descriptors");

        ok(wait_until(sub { stats($srv)->{open} == 1 }, 30), 'all closed on the server side');
        my $st = stats($srv);
        is($st->{removes}, $st->{adds} - 1, "remove called for every connection ($st->{removes})");
        is($st->{dups}, 0, 'remove never twice');
        is($st->{late}, 0, 'no data event for a closed peer');
        my $rss_end = proc_rss_kb($pid);
        ok($srv->alive, 'server alive');

        my $per = defined $rss_held ? ($rss_held - $rss0) * 1024 / $N : -1;
        figure("$be.connections_held", $r->{phase1_live});
        figure("$be.connect_secs", $r->{phase1_secs});
        figure("$be.all_again_secs", $r->{phase2_secs});
        figure("$be.server_rss_base_kb", $rss0);
        figure("$be.server_rss_held_kb", $rss_held // -1);
        figure("$be.server_bytes_per_conn", sprintf '%.0f', $per);
        figure("$be.server_rss_after_kb", $rss_end);
        ok($per >= 0 && $per < $per_conn_max,
           sprintf 'server memory per idle connection %.0f bytes (< %d)', $per, $per_conn_max);
        ok($rss_end - $rss0 < 32 * 1024,
           sprintf 'server RSS after they all closed: %+d KiB from warm-up', $rss_end - $rss0);
        is($srv->stop, 15, 'SIGTERM ends the server');
    };
}

done_testing;
