#!perl
# Soak: 100,000 short connections and 1,000,000 pipelined lines through one
# server, every reply checked byte-exact; the server's RSS at the end must be
# within a few MiB of its RSS after a warm-up of the same shape (no leak), and
# its count of live Perl SVs (asked over the wire) must not have grown.
# Figures: connections/s, lines/s, RSS drift, SV drift.
#
#   ISD_SOAK_CONNS   short connections (default 100000)
#   ISD_SOAK_LINES   pipelined lines (default 1000000, over 10 connections)
#   ISD_SOAK_DRIFT   allowed RSS drift in KiB (default 4096)
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../t/lib", "$FindBin::Bin/lib";
use TestISD;
use ISDStress;
use Test::More;

$TestISD::DEADLINE = 900;
alarm $TestISD::DEADLINE;

my $CONNS = $ENV{ISD_SOAK_CONNS} || 100_000;
my $LINES = $ENV{ISD_SOAK_LINES} || 1_000_000;
my $PIPES = 10;
my $DRIFT = $ENV{ISD_SOAK_DRIFT} || 4096;
load_tool() or plan skip_all => $@;
my $have_count = eval { require Test::LeakTrace; defined &Test::LeakTrace::count_sv };

# "svcount\n" answers the number of live SVs in the server (0 without
# Test::LeakTrace): a leak of Perl values shows there first.
my %cmds = ("svcount\n" => sub {
    my ($io) = @_;
    $io->print('svcount ' . ($have_count ? Test::LeakTrace::count_sv() : 0) . "\n");
    return 1;
});

sub svcount {
    my ($srv) = @_;
    my $c = client($srv);
    print $c "svcount\n";
    my $l = read_line($c, 10);
    close $c;
    return defined $l && $l =~ /^svcount (\d+)/ ? $1 : -1;
}

sub round {
    my ($srv, $conns, $lines, $what) = @_;
    my $s = run_tool(['short', '-p', $srv->port, '-n', $conns, '-c', 64, '-D', 600], timeout => 660);
    is($s->{exit}, 0, "$what: $conns short connections passed") or diag $s->{stderr};
    is($s->{short_ok}, $conns, "$what: every one answered");
    my $p = run_tool(['pipe', '-p', $srv->port, '-n', $PIPES, '-l', int($lines / $PIPES), '-D', 600],
                     timeout => 660);
    is($p->{exit}, 0, "$what: $lines pipelined lines passed") or diag $p->{stderr};
    is($p->{pipe_lines}, $PIPES * int($lines / $PIPES), "$what: every line answered in order");
    ok(wait_until(sub { stats($srv)->{open} == 1 }, 30), "$what: all closed");
    return ($s, $p);
}

for my $be (backends()) {
    isd_subtest "soak, backend $be" => sub {
        my $srv = echo_server(backend => $be, child_deadline => 800, commands => \%cmds);
        my $pid = $srv->pid;

        round($srv, int($CONNS / 10), int($LINES / 10), 'warm-up');
        round($srv, int($CONNS / 10), int($LINES / 10), 'warm-up 2');
        my $rss0 = proc_rss_kb($pid);
        my $sv0 = svcount($srv);

        my $t0 = now();
        my ($s, $p) = round($srv, $CONNS, $LINES, 'soak');
        my $secs = now() - $t0;
        my $rss1 = proc_rss_kb($pid);
        my $sv1 = svcount($srv);
        my $st = stats($srv);
        is($st->{dups}, 0, 'remove never twice');
        is($st->{late}, 0, 'no data event for a closed peer');
        is($st->{removes}, $st->{adds} - $st->{open}, 'remove once for every closed connection');
        ok($srv->alive, 'alive');

        figure("$be.soak_short_conns", $s->{short_ok});
        figure("$be.soak_conns_per_sec", $s->{short_per_sec});
        figure("$be.soak_lines", $p->{pipe_lines});
        figure("$be.soak_lines_per_sec", $p->{pipe_lines_per_sec});
        figure("$be.soak_secs", sprintf '%.1f', $secs);
        figure("$be.soak_rss_warm_kb", $rss0);
        figure("$be.soak_rss_end_kb", $rss1);
        figure("$be.soak_rss_drift_kb", $rss1 - $rss0);
        figure("$be.soak_sv_drift", $sv1 - $sv0) if $have_count;
        ok($rss1 - $rss0 <= $DRIFT,
           sprintf 'server RSS %d KiB after warm-up, %d KiB at the end (drift %+d KiB, limit %d)',
           $rss0, $rss1, $rss1 - $rss0, $DRIFT);
        SKIP: {
            skip 'Test::LeakTrace not installed: no SV count', 1 unless $have_count;
            # a few SVs come and go (the stats connections); a leak is one
            # or more per connection or line
            ok($sv1 - $sv0 < 1000, "live SVs in the server: $sv0 after warm-up, $sv1 at the end");
        }
        is($srv->stop, 15, 'SIGTERM ends the server');
    };
}

done_testing;
