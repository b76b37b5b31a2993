#!perl
# Peers that reset mid-write, close mid-line, half-close, or vanish (close,
# or get killed) while 20 MiB is queued for them: the server does not crash,
# calls remove exactly once for each, keeps serving, and gives the queued
# memory back (RSS back near its warm-up level after repeated rounds).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib", "$FindBin::Bin/../xt/lib";
use TestISD;
use ISDStress qw(proc_rss_kb proc_hwm_kb figure asan_build);
use Test::More;
use POSIX ();
use Socket qw(SOL_SOCKET SO_LINGER SO_RCVBUF);

my $MiB = 1048576;
my $MIB = asan_build() ? 8 : 20;
my $ROUNDS = asan_build() ? 1 : 3;

sub data {
    my ($io, $d, $l) = @_;
    if ($l =~ /^big (\d+)\n\z/) {
        my $ok = 0;
        $ok += $io->print(chr(65 + $_ % 26) x $MiB) ? 1 : 0 for 1 .. $1;
        log_event('big %s %d', $io->peerport, $ok);
        return 1;
    }
    log_event('data %s %s', $io->peerport, $l);
    $io->print("echo $l");
    1;
}

my %cb = (
    data   => \&data,
    remove => sub {
        my ($io) = @_;
        log_event('remove %s', $io->peerport);
        # after a half-close the peer can still read this
        $io->print("bye\n");
    },
    error  => sub { log_event('error %s', $_[2]) },
);

sub rst_close {
    my ($c) = @_;
    setsockopt($c, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0));
    close $c;
}

sub removed_once {
    my ($srv, $p, $what) = @_;
    ok($srv->wait_event(qr/^remove $p$/, 5), "$what: remove called");
    Time::HiRes::sleep(0.05);
    is($srv->count(qr/^remove $p$/), 1, "$what: exactly once");
}

# One round of every fault; returns nothing, asserts as it goes.
sub faults {
    my ($srv, $round) = @_;
    my $r = "round $round";

    # reset in the middle of a 20 MiB write
    my $c = client($srv);
    my $p = $c->sockport;
    print $c "big $MIB\n";
    my $got = read_n($c, 65536, 5);
    is(length $got, 65536, "$r reset mid-write: the write had started");
    rst_close($c);
    removed_once($srv, $p, "$r reset mid-write");

    # close in the middle of a line: the unterminated rest is still data
    $c = client($srv);
    $p = $c->sockport;
    print $c "whole\npartial line";
    is(read_line($c), "echo whole\n", "$r close mid-line: the whole line answered");
    shutdown($c, 1);
    close $c;
    ok($srv->wait_event(qr/^data $p partial line$/, 5), "$r close mid-line: the partial line delivered as the last one");
    removed_once($srv, $p, "$r close mid-line");
    my @ev = grep { /^(?:data|remove) $p\b/ } $srv->events;
    like($ev[-1], qr/^remove $p$/, "$r close mid-line: remove after the last data");

    # half-close: replies and what remove prints still reach the peer
    $c = client($srv);
    $p = $c->sockport;
    print $c "a\nb\n";
    shutdown($c, 1);
    my $all = read_until_eof($c, 5);
    ok(got_eof($c), "$r half-close: the server closed its side");
    is($all, "echo a\necho b\nbye\n", "$r half-close: both replies and remove's goodbye arrived");
    close $c;
    removed_once($srv, $p, "$r half-close");

    # vanish (plain close) with 20 MiB queued
    $c = client($srv);
    $p = $c->sockport;
    setsockopt($c, SOL_SOCKET, SO_RCVBUF, 4096);
    print $c "big $MIB\n";
    ok($srv->wait_event(qr/^big $p $MIB$/, 10), "$r vanish: $MIB MiB queued");
    close $c;
    removed_once($srv, $p, "$r vanish with output queued");

    # vanish by dying: a client process killed with 20 MiB queued for it
    pipe(my $rd, my $wr) or die "pipe: $!";
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if (!$pid) {
        close $rd;
        my $k = TestISD::try_client($srv->port) or POSIX::_exit(1);
        syswrite $wr, $k->sockport . "\n";
        print $k "big $MIB\n";
        sleep 30;
        POSIX::_exit(0);
    }
    close $wr;
    my $kp = <$rd>;
    close $rd;
    chomp $kp if defined $kp;
    ok($kp && $srv->wait_event(qr/^big $kp $MIB$/, 10), "$r killed: $MIB MiB queued");
    kill 'KILL', $pid;
    waitpid $pid, 0;
    removed_once($srv, $kp // 0, "$r killed client");

    ok($srv->alive, "$r: server alive");
    my $o = client($srv);
    print $o "ok\n";
    is(read_line($o), "echo ok\n", "$r: still serving");
    close $o;
}

for my $be (backends()) {
    isd_subtest "faulty peers, backend $be" => sub {
        my $srv = start_server(backend => $be, timeout => 1, callback => {%cb});
        faults($srv, 0);                     # warm-up
        my $rss0 = proc_rss_kb($srv->pid);
        faults($srv, $_) for 1 .. $ROUNDS;
        # (sanitizers and valgrind keep freed memory in quarantine: RSS says
        # nothing there)
        SKIP: {
            skip 'RSS is meaningless under ASan or valgrind', 2 if asan_build();
            ok(wait_until(sub { proc_rss_kb($srv->pid) - $rss0 < 8192 }, 3),
               'server RSS back near the warm-up level');
            my $rss1 = proc_rss_kb($srv->pid);
            my $hwm = proc_hwm_kb($srv->pid);
            ok($hwm - $rss0 > $MIB * 1024 / 2,
               sprintf 'the queued output did take memory (peak %d KiB)', $hwm);
            diag(sprintf 'server RSS %d KiB after warm-up, %d KiB after %d rounds (%+d)',
                 $rss0, $rss1, $ROUNDS, $rss1 - $rss0) if $ENV{TEST_VERBOSE};
            if ($ENV{ISD_FIGURES}) {
                figure("$be.faults_rss_peak_kb", $hwm);
                figure("$be.faults_rss_drift_kb", $rss1 - $rss0);
            }
        }
        is($srv->count(qr/^error /), 0, 'no error callback (faults of peers are not errors)')
            or diag join "\n", $srv->grep_events(qr/^error /);
        is($srv->stop, 15, 'SIGTERM still ends the server');
    };
}

done_testing;
