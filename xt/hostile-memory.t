#!perl
# Hostile input at volume (t/16-hostile-input.t has the quick cases):
#  - 32 clients at once each send 4 MiB without a newline: each is dropped
#    at max_line (error, then remove, once), the server's peak memory stays
#    bounded by max_line per client, a normal client is served meanwhile,
#    and the memory comes back afterwards;
#  - 8 clients at once send 2 MiB of random bytes (every value, lines of
#    random length) in random-sized writes: every line comes back exactly.
# Figures: peak server memory per endless-line client, RSS after.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../t/lib", "$FindBin::Bin/lib";
use TestISD;
use ISDStress;
use Test::More;
use IO::Select;

$TestISD::DEADLINE = 300;
alarm $TestISD::DEADLINE;

my $MiB = 1048576;
my $ENDLESS = 32;
my $RANDOM = 8;

for my $be (backends()) {
    isd_subtest "$ENDLESS endless lines at once, backend $be" => sub {
        my $srv = echo_server(backend => $be, child_deadline => 200);
        my $pid = $srv->pid;
        my $probe = client($srv);
        ok(echo_ping($probe, 'warm', 5), 'served');
        my $rss0 = proc_rss_kb($pid);

        my @c = map { client($srv) } 1 .. $ENDLESS;
        $_->blocking(0) for @c;
        my %sent = map { $_ => 0 } 0 .. $#c;
        my %done;
        my $blk = 'x' x 65536;
        my $end = now() + 60;
        my $pings = 0;
        while (keys %done < @c && now() < $end) {
            for my $i (0 .. $#c) {
                next if $done{$i};
                my $n = syswrite($c[$i], $blk);
                if (defined $n) { $sent{$i} += $n }
                elsif (!$!{EAGAIN}) { $done{$i} = 'error' }
                $done{$i} = 'sent' if $sent{$i} >= 4 * $MiB;
            }
            $pings++ if echo_ping($probe, "p$pings", 5);
        }
        ok($pings > 0, "the probe was answered $pings times meanwhile");
        my $hwm = proc_hwm_kb($pid);
        my $dropped = 0;
        for my $c (@c) {
            read_until_eof($c, 10);
            $dropped++ if got_eof($c);
        }
        is($dropped, $ENDLESS, 'every endless-line client was dropped');
        ok(wait_until(sub { $srv->count(qr/^error line too long/) >= $ENDLESS }, 10),
           'error reported for each') or diag join "\n", ($srv->events)[-5 .. -1];
        close $_ for @c;
        ok(wait_until(sub { stats($srv)->{open} == 2 }, 10), 'all gone on the server side');
        my $st = stats($srv);
        is($st->{removes}, $st->{adds} - $st->{open}, 'remove once each');
        is($st->{dups}, 0, 'never twice');
        my $per = ($hwm - $rss0) * 1024 / $ENDLESS;
        ok($per < 3 * $MiB, sprintf 'peak server memory per endless-line client: %.2f MiB (max_line 1 MiB; < 3)',
                                    $per / $MiB);
        my $rss1 = proc_rss_kb($pid);
        SKIP: {
            skip 'RSS is meaningless under ASan or valgrind', 1 if asan_build();
            ok($rss1 - $rss0 < 8 * 1024, sprintf 'server RSS %+d KiB from before (peak was %+d KiB)',
                                                 $rss1 - $rss0, $hwm - $rss0);
        }
        figure("$be.endless_peak_bytes_per_client", sprintf '%.0f', $per);
        figure("$be.endless_rss_drift_kb", $rss1 - $rss0);
        ok(echo_ping($probe, 'after', 5), 'still serving');
        close $probe;
        is($srv->stop, 15, 'SIGTERM ends the server');
    };

    isd_subtest "$RANDOM clients of random bytes at once, backend $be" => sub {
        my $srv = echo_server(backend => $be, child_deadline => 200);
        my @c = map { client($srv) } 1 .. $RANDOM;
        my (@out, @want, @got, @off);
        srand(12345);
        for my $i (0 .. $#c) {
            # lines of random bytes; never a line starting with "q" or "stats"
            my $s = '';
            while (length $s < 2 * $MiB) {
                my $len = int(rand 600);
                my $line = join '', map { chr(int rand 256) } 1 .. $len;
                $line =~ tr/\n/\x00/;
                $line = "L$line\n";
                $s .= $line;
            }
            $out[$i] = $want[$i] = $s;
            $got[$i] = '';
            $off[$i] = 0;
            $c[$i]->blocking(0);
        }
        my $sel = IO::Select->new(@c);
        my %idx = map { fileno($c[$_]) => $_ } 0 .. $#c;
        my $end = now() + 60;
        while (now() < $end && grep { length $got[$_] < length $want[$_] } 0 .. $#c) {
            for my $i (0 .. $#c) {
                next if $off[$i] >= length $out[$i];
                my $n = syswrite($c[$i], $out[$i], 1 + int rand 9000, $off[$i]);
                $off[$i] += $n if $n;
            }
            for my $s ($sel->can_read(0.01)) {
                my $i = $idx{ fileno $s };
                my $n = sysread($s, $got[$i], 262144, length $got[$i]);
                $sel->remove($s) unless $n || (!defined $n && $!{EAGAIN});
            }
        }
        my $exact = grep { $got[$_] eq $want[$_] } 0 .. $#c;
        is($exact, $RANDOM, "$RANDOM x 2 MiB of random bytes in random writes: every line back exactly");
        close $_ for @c;
        is($srv->stop, 15, 'SIGTERM ends the server');
    };
}

done_testing;
