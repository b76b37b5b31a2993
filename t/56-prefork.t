#!perl
# Prefork workers (workers => N), with real processes, signals and sockets
# on 127.0.0.1.  The server script answers each line with "PID LINE" (so
# the test sees which worker served), "slow X" half a second later, and
# logs worker_start / worker_stop / $server->workers (on USR2) to a file.
# - workers => 2 (each backend): two workers, not the master, serve;
#   worker_start ran once per worker with slots 0 and 1; workers (USR2)
#   names exactly them; TERM (INT on the second backend): run returns true, the master exits 0,
#   worker_stop ran in each, no process is left;
# - a worker killed (KILL) is replaced and reported once; new clients are
#   served; the other worker's open connection is served throughout;
# - HUP under traffic (short connections from forked clients, two
#   long-lived ones): nothing refused, reset, lost or wrong; the old workers
#   are gone afterwards, new ones serve; the long-lived connections got
#   every reply until the old worker's graceful stop closed them;
# - HUP while worker_start fails: the old workers serve on until new ones
#   can start, then are stopped gracefully;
# - two HUPs in a row: one generation of workers is left, all the others
#   stopped gracefully;
# - TERM with requests in flight: answered before the workers exit; new
#   clients are refused meanwhile (the master's listener is closed too);
# - TERM while the workers are still in worker_start: they stop once it is
#   over, gracefully, none has to be killed;
# - the master killed: the workers stop by themselves, gracefully;
# - TTIN: a third worker (slot 2); TTOU: back to two, the removed one stops
#   gracefully, no warning;
# - max_requests => 5: sequential connections are all served, by a
#   succession of workers;
# - worker_start dying in every worker: restarts are rate-limited (count
#   and master CPU time bounded), each reported on one line (a message of
#   several lines too), TERM still ends it;
# - QUIT: the master exits at once even with stop_grace => 30 and a client
#   connected;
# - reuseport => 1: both workers serve on the port; with the port taken
#   run returns false saying why ($@, $! EADDRINUSE), no worker left;
#   without reuseport the master's own bind fails, no worker is started;
# - daemonize + pid_file + workers: the pid file names the master, the
#   workers are its children, TERM ends them all and removes the file;
# - bad values croak in new, naming the option.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use TestISD;
use TestProc;
use Test::More;
use Cwd ();
use Errno ();
use File::Temp ();
use IO::Socket::INET ();
use POSIX ();
use Time::HiRes ();
use IO::Socket::INET::Daemon;

BEGIN { $TestISD::DEADLINE = 150; alarm 150 }

plan skip_all => 'needs Linux /proc' unless -r '/proc/self/stat';

my $BLIB = Cwd::abs_path("$FindBin::Bin/../blib");
my @PERL = ($^X, "-I$BLIB/lib", "-I$BLIB/arch");
my $TMP = File::Temp->newdir('isd-prefork-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my @BACKENDS = backends();

delete @ENV{qw(LISTEN_PID LISTEN_FDS LISTEN_FDNAMES SERVER_STARTER_PORT
               NOTIFY_SOCKET WATCHDOG_USEC WATCHDOG_PID)};

# ------------------------------------------------------------- processes

# spawn_named(\@cmd, $name, %o): spawn with stdout to $TMP/$name.out and
# stderr to $TMP/$name.err (TestProc's spawn options in %o)
sub spawn_named {
    my ($cmd, $name, %o) = @_;
    unlink "$TMP/$name.out", "$TMP/$name.err";
    return spawn($cmd, stdout => "$TMP/$name.out", stderr => "$TMP/$name.err", %o);
}
TestProc::also(sub { ours($TMP) });    # (daemons and workers: not our children)

sub kill_all {
    TestProc::kill_kids('KILL');
    wait_until(sub { !ours($TMP) }, 3);
}

# ------------------------------------------------------------ the server

my $SCRIPT = "$TMP/server.pl";
spit($SCRIPT, <<'EOS');
use strict;
use warnings;
use POSIX ();
use IO::Socket::INET::Daemon;
my ($port, $log, %o) = @ARGV;
my $deadline = time + 60;
my $die = delete $o{die_start};
my $slow_start = delete $o{start_sleep};
my $die_file = delete $o{die_file};
sub logl {
    open my $fh, '>>', $log or return;
    syswrite $fh, "@_\n";
    close $fh;
}
my $server;
$server = IO::Socket::INET::Daemon->new(
    listen   => ["127.0.0.1:$port"],
    %o,
    callback => {
        data => sub {
            my ($io, $d, $l) = @_;
            $l =~ s/\n\z//;
            if ($l =~ /\Aslow (.*)\z/s) {
                my $x = $1;
                $d->timer(after => 0.5, cb => sub { $io->print("$$ $x\n") });
            }
            else {
                $io->print("$$ $l\n");
            }
            1;
        },
        worker_start => sub {
            my ($s, $slot) = @_;
            alarm 60;
            # (a daemonized master has no alarm: its workers end it)
            my $left = $deadline - time;
            $s->timer(after => $left > 1 ? $left : 1, cb => sub {
                kill 'KILL', getppid() if getppid() > 1;
                POSIX::_exit(9);
            });
            logl("start $$ $slot");
            die "no start in $$\nsecond line\n" if $die;
            die "no start: $die_file\n" if defined $die_file and -e $die_file;
            if ($slow_start) {              # (signals handled meanwhile)
                my $end = time + $slow_start;
                select undef, undef, undef, 0.05 while time < $end;
                logl("started $$ $slot");
            }
        },
        worker_stop => sub { logl("stop $$ $_[1]") },
    },
);
$SIG{USR2} = sub { logl("workers $$ " . join(' ', $server->workers)) };
alarm 60;
logl("master $$");
my $rv = $server->run;
my ($err, $errno) = ($@, $! + 0);
logl("run returned " . ($rv ? 1 : 0));
print "run returned ", ($rv ? 1 : "0 ($err) errno $errno"), "\n";
exit($rv ? 0 : 3);
EOS

# start($name, $port, OPTIONS...): the server script started (its PID)
sub start {
    my ($name, $port, @o) = @_;
    unlink "$TMP/$name.log";
    return spawn_named([@PERL, $SCRIPT, $port, "$TMP/$name.log", @o], $name);
}

sub log_lines { split /\n/, slurp("$TMP/$_[0].log") }

# the worker_start lines: [ pid, slot ]
sub starts { map { [ /\Astart (\d+) (\d+)\z/ ] } grep { /\Astart / } log_lines($_[0]) }
sub stops  { map { [ /\Astop (\d+) (\d+)\z/ ] } grep { /\Astop / } log_lines($_[0]) }

# workers($name, $master): $server->workers in the master (asked by USR2)
sub workers {
    my ($name, $master) = @_;
    my $re = qr/\Aworkers $master\b ?(.*)\z/;
    my $n = grep { $_ =~ $re } log_lines($name);
    kill 'USR2', $master;
    my $line;
    wait_until(sub {
        my @l = grep { $_ =~ $re } log_lines($name);
        $line = $l[-1] if @l > $n;
        return defined $line;
    }, 5) or die "workers: no answer from the master $master\n";
    my ($list) = $line =~ $re;
    return split ' ', $list;
}

# wait_workers($name, $master, $code): wait (5 s) until $code->(@pids) is true
# for the master's workers; returns them (the last ones seen)
sub wait_workers {
    my ($name, $master, $code, $timeout) = @_;
    my @w;
    wait_until(sub { @w = workers($name, $master); $code->(@w) }, $timeout || 5, 0.05);
    return @w;
}

# ask($c, $msg): the reply's PID when it is "PID $msg", else undef
sub ask {
    my ($c, $msg, $t) = @_;
    print $c "$msg\n";
    my $r = read_line($c, defined $t ? $t : 3);
    return undef unless defined $r and $r =~ /\A(\d+) \Q$msg\E\n\z/;
    return $1;
}

# serve_pids($port, $n, $timeout): short connections (one line each) until
# $n distinct PIDs have answered; returns { pid => count, '' => failures }
sub serve_pids {
    my ($port, $n, $timeout) = @_;
    my %seen;
    my $i = 0;
    wait_until(sub {
        my $c = try_client($port, timeout => 2);
        my $pid = $c && ask($c, 'who ' . ++$i);
        $seen{defined $pid ? $pid : ''}++;
        return grep({ length } keys %seen) >= $n;
    }, $timeout || 5, 0.005);
    $seen{''} ||= 0;
    return \%seen;
}

sub served { my ($s) = @_; sort { $a <=> $b } grep { length } keys %$s }

# the port answers (the first worker is ready)
sub answers {
    my ($port, $timeout) = @_;
    return wait_until(sub { my $c = try_client($port, timeout => 1); $c && ask($c, 'up') }, $timeout || 5, 0.02);
}

# stop($name, $master): TERM, its exit status
sub term {
    my ($master, $sig, $t) = @_;
    kill $sig || 'TERM', $master;
    return reap($master, $t || 8);
}

sub warnings_in { grep { /IO::Socket::INET::Daemon: worker/ } split /\n/, slurp("$TMP/$_[0].err") }

# pf_subtest: isd_subtest, then whatever it left running is killed (so that
# a failure does not spill into the next subtests)
sub pf_subtest {
    my ($name, $code) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    my $r = isd_subtest($name, $code);
    kill_all();
    return $r;
}

# --------------------------------------------------------------- basics

for my $be (@BACKENDS) {
    pf_subtest("$be: workers => 2 serve, workers names them, TERM (INT) ends it" => sub {
        my $port = free_port();
        my $name = "basic-$be";
        my $m = start($name, $port, backend => $be, workers => 2);
        ok(answers($port), 'the port answers') or return diag(slurp("$TMP/$name.err"));
        my $seen = serve_pids($port, 2, 8);
        my @pids = served($seen);
        is(scalar @pids, 2, 'two distinct PIDs serve') or diag(explain($seen));
        is($seen->{''}, 0, 'every connection was served');
        ok(!grep({ $_ == $m } @pids), 'neither is the master');
        my @st = starts($name);
        is(scalar @st, 2, 'worker_start ran twice');
        is_deeply([ sort map { $_->[1] } @st ], [0, 1], 'with slots 0 and 1');
        is_deeply([ sort { $a <=> $b } map { $_->[0] } @st ], \@pids, 'in the workers that serve');
        my %slot = map { $_->[0] => $_->[1] } @st;
        my @w = workers($name, $m);
        is_deeply([ sort { $a <=> $b } @w ], \@pids, 'workers names exactly them');
        is_deeply([ map { $slot{$_} } @w ], [0, 1], 'sorted by slot');
        is(proc_stat($_)->{ppid}, $m, "worker $_ is the master's child") for @pids;

        my $sig = $be eq $BACKENDS[0] ? 'TERM' : 'INT';
        is(describe(term($m, $sig)), 'exit 0, signal 0', "$sig: the master exits 0");
        like(slurp("$TMP/$name.out"), qr/\Arun returned 1\n\z/, 'run returned true');
        is_deeply([ sort { $a <=> $b } map { $_->[0] } stops($name) ], \@pids, 'worker_stop ran in each');
        is_deeply([ sort map { $_->[1] } stops($name) ], [0, 1], 'with its slot');
        ok(!grep({ alive($_) } @pids), 'no worker is left');
        is_deeply([ ours($TMP) ], [], 'no process is left');
        is(slurp("$TMP/$name.err"), '', 'no warning');
    });
}

my $BE = $BACKENDS[0];
my $BE2 = $BACKENDS[-1];

# -------------------------------------------------------------- a crash

pf_subtest("$BE: a worker killed is replaced; the other one serves on" => sub {
    my $port = free_port();
    my $name = 'kill';
    my $m = start($name, $port, backend => $BE, workers => 2);
    ok(answers($port), 'the port answers') or return diag(slurp("$TMP/$name.err"));
    my @w = wait_workers($name, $m, sub { @_ == 2 });
    is(scalar @w, 2, 'two workers');

    # a connection open on each worker
    my %conn;
    wait_until(sub {
        my $c = try_client($port, timeout => 2) or return 0;
        my $pid = ask($c, 'hold');
        $conn{$pid} ||= $c if defined $pid;
        return keys %conn >= 2;
    }, 8, 0.005);
    is(scalar keys %conn, 2, 'a connection open on each worker') or return;
    my ($victim, $other) = @w;
    my $keep = $conn{$other};

    kill 'KILL', $victim;
    my $n = 0;
    my $ok = 0;
    my @now = wait_workers($name, $m, sub {
        $n++;
        my $pid = ask($keep, "still $n");
        $ok++ if defined $pid and $pid == $other;
        return @_ == 2 && !grep { $_ == $victim } @_;
    }, 5);
    is($ok, $n, "the other worker's connection is served throughout ($n lines)");
    is(scalar @now, 2, 'two workers again');
    is($now[1], $other, 'the other one is still there');
    ok($now[0] != $victim && $now[0] != $other, 'a new one in the slot of the one killed');
    my $gone = $conn{$victim};
    ok(!defined read_line($gone, 2) && got_eof($gone), "the killed worker's connection is closed");

    my @warn = warnings_in($name);
    is(scalar @warn, 1, 'one warning') or diag(join "\n", @warn);
    like($warn[0] // '', qr/\AIO::Socket::INET::Daemon: worker 0 \(pid $victim\) died of signal 9: a new one is started\z/,
         'naming the slot, the PID and the signal');
    my $seen = serve_pids($port, 2, 8);
    is_deeply([ served($seen) ], [ sort { $a <=> $b } @now ], 'new clients are served by both');
    is($seen->{''}, 0, 'every connection was served');
    is(ask($keep, 'last'), $other, 'the old connection still is');
    is(scalar(starts($name)), 3, 'worker_start ran three times');

    close $_ for values %conn;
    is(describe(term($m)), 'exit 0, signal 0', 'TERM: exit 0');
    is_deeply([ ours($TMP) ], [], 'no process is left');
    is(scalar(warnings_in($name)), 1, 'no other warning');
});

# ----------------------------------------------------------------- HUP

# client_loop($port, $file, $tag, $secs): short connections, one line each,
# for $secs; the counts to $file
sub client_loop {
    my ($port, $file, $tag, $secs, $pause) = @_;
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if ($pid) {
        track($pid);
        return $pid;
    }
    alarm 20;
    my %n = (ok => 0, refused => 0, reset => 0, lost => 0, wrong => 0);
    my %pids;
    my $end = now() + $secs;
    my $i = 0;
    while (now() < $end) {
        $i++;
        my $c = try_client($port, timeout => 3);
        if (!$c) { $n{refused}++; next }
        print $c "$tag $i\n";
        my $r = read_line($c, 3);
        if (!defined $r) { $n{ got_eof($c) ? 'reset' : 'lost' }++ }
        elsif ($r =~ /\A(\d+) \Q$tag $i\E\n\z/) { $n{ok}++; $pids{$1}++ }
        else { $n{wrong}++ }
        close $c;
        Time::HiRes::sleep($pause);
    }
    spit($file, join(' ', map { "$_=$n{$_}" } sort keys %n) . ' pids=' . join(',', sort keys %pids) . "\n");
    POSIX::_exit(0);
}

# long_loop($port, $file, $secs): one connection, a line every 50 ms until
# EOF (or $secs); what came back to $file
sub long_loop {
    my ($port, $file, $tag, $secs) = @_;
    my $c = try_client($port, timeout => 3) or die "long: cannot connect: $@";
    my $first = ask($c, "$tag 0") or die "long: no answer\n";
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if ($pid) {
        track($pid);
        close $c;
        return ($pid, $first);
    }
    alarm 20;
    my ($sent, $ok, $bad, $eof, $unanswered) = (1, 1, 0, 0, 0);
    my $end = now() + $secs;
    while (now() < $end) {
        my $msg = "$tag $sent";
        my $w = send_all($c, "$msg\n", 2);
        $sent++;
        my $r = read_line($c, 3);
        if (!defined $r) {
            $eof = got_eof($c);
            $unanswered = 1;
            last;
        }
        if ($r eq "$first $msg\n") { $ok++ } else { $bad++ }
        Time::HiRes::sleep(0.05);
    }
    $eof ||= !defined(read_line($c, 0.5)) && got_eof($c) ? 1 : 0 unless $unanswered;
    spit($file, "sent=$sent ok=$ok bad=$bad eof=$eof unanswered=$unanswered\n");
    POSIX::_exit(0);
}

sub results {
    my ($file) = @_;
    my $s = slurp($file);
    return { map { split /=/, $_, 2 } split ' ', $s };
}

pf_subtest("$BE2: HUP under traffic: a rolling restart, nothing lost" => sub {
    my $port = free_port();
    my $name = 'hup';
    my $m = start($name, $port, backend => $BE2, workers => 2, stop_grace => 1);
    ok(answers($port), 'the port answers') or return diag(slurp("$TMP/$name.err"));
    my @old = wait_workers($name, $m, sub { @_ == 2 });
    is(scalar @old, 2, 'two workers');

    my (@long, %long_pid);
    for my $i (1, 2) {
        my ($pid, $wpid) = long_loop($port, "$TMP/long$i", "long$i", 6);
        push @long, $pid;
        $long_pid{$i} = $wpid;
    }
    ok(!grep({ my $p = $_; !grep { $_ == $p } @old } values %long_pid),
       'the long-lived connections are on the old workers');
    my @loops = map { client_loop($port, "$TMP/loop$_", "c$_", 3, 0.04) } 1 .. 3;
    Time::HiRes::sleep(1);
    kill 'HUP', $m;
    my @new = wait_workers($name, $m, sub {
        my %o = map { $_ => 1 } @old;
        @_ == 2 && !grep { $o{$_} } @_;
    }, 6);
    is(scalar @new, 2, 'two workers after the HUP');
    ok(!grep({ my $p = $_; grep { $_ == $p } @old } @new), 'none of them an old one');
    ok(wait_until(sub { !grep { alive($_) } @old }, 5), 'the old workers are gone');

    for my $pid (@loops, @long) {
        ok(defined reap($pid, 10), "client $pid done");
    }
    my %t = (ok => 0, refused => 0, reset => 0, lost => 0, wrong => 0);
    my %by;
    for my $i (1 .. 3) {
        my $r = results("$TMP/loop$i");
        ok(exists $r->{ok}, "client loop $i reported") or next;
        $t{$_} += $r->{$_} for keys %t;
        $by{$_}++ for grep { length } split /,/, $r->{pids};
    }
    cmp_ok($t{ok}, '>=', 100, "$t{ok} connections served");
    is($t{$_}, 0, "0 $_") for qw(refused reset lost wrong);
    ok((grep { $by{$_} } @old) == 2, 'by both old workers');
    ok((grep { $by{$_} } @new) >= 1, 'and by new ones');
    for my $i (1, 2) {
        my $r = results("$TMP/long$i");
        ok(exists $r->{sent}, "long-lived connection $i reported") or next;
        is($r->{bad}, 0, "long-lived $i: no wrong reply");
        is($r->{eof}, 1, "long-lived $i: closed by its old worker's graceful stop");
        is($r->{ok}, $r->{sent} - $r->{unanswered},
           "long-lived $i: every line answered before the EOF ($r->{ok} of $r->{sent})");
        cmp_ok($r->{ok}, '>=', 20, "long-lived $i: answered on through the HUP");
    }
    my $seen = serve_pids($port, 2, 8);
    is_deeply([ served($seen) ], [ sort { $a <=> $b } @new ], 'the new workers serve');
    is_deeply([ sort { $a <=> $b } map { $_->[0] } stops($name) ], [ sort { $a <=> $b } @old ],
              'worker_stop ran in the old ones');
    is(scalar(starts($name)), 4, 'worker_start ran four times');
    is(describe(term($m)), 'exit 0, signal 0', 'TERM: exit 0');
    is_deeply([ ours($TMP) ], [], 'no process is left');
    is(slurp("$TMP/$name.err"), '', 'no warning');
});

pf_subtest("$BE: two HUPs in a row: one generation of workers at the end" => sub {
    my $port = free_port();
    my $name = 'hup2';
    my $m = start($name, $port, backend => $BE, workers => 2, stop_grace => 1);
    ok(answers($port), 'the port answers') or return diag(slurp("$TMP/$name.err"));
    my @old = wait_workers($name, $m, sub { @_ == 2 });
    my $c = try_client($port, timeout => 2);
    my $held = ask($c, 'held');
    kill 'HUP', $m;
    Time::HiRes::sleep(0.05);
    kill 'HUP', $m;
    my %o = map { $_ => 1 } @old;
    # settled: the same two for longer than a slot waits to start again
    # (the second HUP may come before or after the first one's workers)
    my @new;
    wait_until(sub {
        my @a = workers($name, $m);
        return 0 unless @a == 2 && !grep { $o{$_} } @a;
        Time::HiRes::sleep(1.2);
        @new = workers($name, $m);
        return "@a" eq "@new";
    }, 10, 0.05);
    is(scalar @new, 2, 'two workers, none an old one');
    my %started = map { $_->[0] => 1 } starts($name);
    ok(wait_until(sub { my %n = map { $_ => 1 } @new; !grep { !$n{$_} && alive($_) } keys %started }, 5),
       'every worker started before them is gone');
    ok(!defined read_line($c, 3) && got_eof($c), 'a connection held on an old worker was closed by its graceful stop');
    my $seen = serve_pids($port, 2, 8);
    is_deeply([ served($seen) ], [ sort { $a <=> $b } @new ], 'the last ones serve');
    is(scalar(stops($name)), scalar(starts($name)) - 2, 'every other worker ran worker_stop');
    is(describe(term($m)), 'exit 0, signal 0', 'TERM: exit 0');
    is_deeply([ ours($TMP) ], [], 'no process is left');
    is(slurp("$TMP/$name.err"), '', 'no warning');
});

pf_subtest("$BE2: HUP while new workers cannot start: the old ones serve on" => sub {
    my $port = free_port();
    my $name = 'hup-fail';
    my $flag = "$TMP/no-start";
    unlink $flag;
    my $m = start($name, $port, backend => $BE2, workers => 2, stop_grace => 1, die_file => $flag);
    ok(answers($port), 'the port answers') or return diag(slurp("$TMP/$name.err"));
    my @old = wait_workers($name, $m, sub { @_ == 2 });
    spit($flag, '');
    kill 'HUP', $m;
    ok(wait_until(sub { warnings_in($name) >= 2 }, 5), 'HUP: the new workers fail to start (reported)');
    like((warnings_in($name))[0] // '', qr/worker_start died: no start: \Q$flag\E: a new one is started\z/, 'saying why');
    my $seen = serve_pids($port, 2, 8);
    is_deeply([ served($seen) ], [ sort { $a <=> $b } @old ], 'the old workers serve on, both');
    is($seen->{''}, 0, 'every connection was served');
    ok(!grep({ !alive($_) } @old), 'neither was stopped');
    unlink $flag;
    my %o = map { $_ => 1 } @old;
    my @new = wait_workers($name, $m, sub { @_ == 2 && !grep { $o{$_} } @_ }, 5);
    is(scalar @new, 2, 'once they can start, new workers take over');
    ok(wait_until(sub { !grep { alive($_) } @old }, 5), 'and the old ones are stopped');
    is_deeply([ sort { $a <=> $b } map { $_->[0] } stops($name) ], [ sort { $a <=> $b } @old ],
              'gracefully (worker_stop ran in them, not in the ones that failed)');
    $seen = serve_pids($port, 2, 8);
    is_deeply([ served($seen) ], [ sort { $a <=> $b } @new ], 'the new ones serve');
    is(describe(term($m)), 'exit 0, signal 0', 'TERM: exit 0');
    is_deeply([ ours($TMP) ], [], 'no process is left');
});

# -------------------------------------------------------------- TERM

pf_subtest("$BE: TERM with requests in flight: answered first" => sub {
    my $port = free_port();
    my $name = 'term';
    my $m = start($name, $port, backend => $BE, workers => 2);
    ok(answers($port), 'the port answers') or return diag(slurp("$TMP/$name.err"));
    my @w = wait_workers($name, $m, sub { @_ == 2 });
    my (%conn, @c);
    wait_until(sub {
        my $c = try_client($port, timeout => 2) or return 0;
        my $pid = ask($c, 'hold');
        push @c, [ $c, $pid ] if defined $pid and ($conn{$pid}++ < 2);
        return @c >= 4;
    }, 8, 0.005);
    is(scalar @c, 4, 'four connections, two on each worker') or return;
    my $i = 0;
    print { $_->[0] } 'slow ', ++$i, "\n" for @c;
    kill 'TERM', $m;
    # the listener is closed everywhere, the master's copy too: new
    # clients are refused while the workers finish (not left in a backlog
    # nobody accepts from)
    my $late = 0;
    ok(wait_until(sub {
        my $c = try_client($port, timeout => 1) or return 1;
        $late++;
        return 0;
    }, 3, 0.05), 'new clients are refused during the graceful stop') or diag("$late connected");
    $i = 0;
    for (@c) {
        my ($c, $pid) = @$_;
        $i++;
        is(read_line($c, 3), "$pid $i\n", "in-flight request $i answered by its worker");
        close $c;
    }
    is(describe(reap($m, 8)), 'exit 0, signal 0', 'the master exits 0');
    like(slurp("$TMP/$name.out"), qr/\Arun returned 1\n\z/, 'run returned true');
    is(scalar(stops($name)), 2, 'worker_stop ran in both');
    is_deeply([ ours($TMP) ], [], 'no process is left');
    is(slurp("$TMP/$name.err"), '', 'no warning');
});

pf_subtest("$BE2: TERM while the workers are in worker_start: they stop" => sub {
    my $port = free_port();
    my $name = 'term-early';
    my $m = start($name, $port, backend => $BE2, workers => 2, start_sleep => 2);
    ok(wait_until(sub { starts($name) == 2 }, 5), 'both workers are in worker_start')
        or return diag(slurp("$TMP/$name.err"));
    my @pids = map { $_->[0] } starts($name);
    kill 'TERM', $m;
    # (stop_grace 10 + linger + 5 s is when the master would kill them)
    is(describe(reap($m, 8)), 'exit 0, signal 0', 'the master exits 0 once worker_start is over');
    is_deeply([ sort { $a <=> $b } map { $_->[0] } stops($name) ], [ sort { $a <=> $b } @pids ],
              'worker_stop ran in both (a graceful stop, not a kill)');
    is_deeply([ ours($TMP) ], [], 'no process is left');
    is(slurp("$TMP/$name.err"), '', 'no warning (none had to be killed)');
});

pf_subtest("$BE: the master killed: the workers stop by themselves" => sub {
    my $port = free_port();
    my $name = 'orphans';
    my $m = start($name, $port, backend => $BE, workers => 2, stop_grace => 1);
    ok(answers($port), 'the port answers') or return diag(slurp("$TMP/$name.err"));
    my @w = wait_workers($name, $m, sub { @_ == 2 });
    is(scalar @w, 2, 'two workers');
    kill 'KILL', $m;
    reap($m, 3);
    ok(wait_until(sub { !grep { alive($_) } @w }, 5), 'the workers exit (they check every second)');
    is_deeply([ sort { $a <=> $b } map { $_->[0] } stops($name) ], [ sort { $a <=> $b } @w ],
              'gracefully (worker_stop ran)');
    is_deeply([ ours($TMP) ], [], 'no process is left');
});

# --------------------------------------------------------- TTIN, TTOU

pf_subtest("$BE2: TTIN: one more worker; TTOU: one less, stopped gracefully" => sub {
    my $port = free_port();
    my $name = 'ttin';
    my $m = start($name, $port, backend => $BE2, workers => 2);
    ok(answers($port), 'the port answers') or return diag(slurp("$TMP/$name.err"));
    my @w = wait_workers($name, $m, sub { @_ == 2 });
    is(scalar @w, 2, 'two workers');
    kill 'TTIN', $m;
    my @w3 = wait_workers($name, $m, sub { @_ == 3 });
    is(scalar @w3, 3, 'TTIN: three');
    is_deeply([ @w3[0, 1] ], \@w, 'the first two as they were');
    my ($third) = map { $_->[0] } grep { $_->[1] == 2 } starts($name);
    is($third, $w3[2], 'the third started in slot 2');
    my $seen = serve_pids($port, 3, 8);
    is(scalar(my @s = served($seen)), 3, 'three serve');

    kill 'TTOU', $m;
    my @w2 = wait_workers($name, $m, sub { @_ == 2 });
    is_deeply(\@w2, \@w, 'TTOU: the first two are left');
    ok(wait_until(sub { !alive($third) }, 5), 'the third exits');
    is_deeply([ map { $_->[0] } stops($name) ], [$third], 'after worker_stop (a graceful stop)');
    is(slurp("$TMP/$name.err"), '', 'no warning');
    kill 'TTOU', $m;
    kill 'TTOU', $m;
    my @w1 = wait_workers($name, $m, sub { @_ == 1 });
    is_deeply(\@w1, [ $w[0] ], 'TTOU twice more: one is left (slot 0)');
    Time::HiRes::sleep(0.3);
    is_deeply([ workers($name, $m) ], [ $w[0] ], 'and stays (never fewer than one)');
    is(describe(term($m)), 'exit 0, signal 0', 'TERM: exit 0');
    is_deeply([ ours($TMP) ], [], 'no process is left');
    is(slurp("$TMP/$name.err"), '', 'no warning');
});

# ------------------------------------------------------ max_requests

pf_subtest("$BE: max_requests => 5: workers are recycled, every client served" => sub {
    my $port = free_port();
    my $name = 'maxreq';
    my $m = start($name, $port, backend => $BE, workers => 1, max_requests => 5, stop_grace => 2);
    ok(answers($port), 'the port answers') or return diag(slurp("$TMP/$name.err"));
    my ($n, $failed, %by) = (0, 0);
    wait_until(sub {
        my $c = try_client($port, timeout => 3);
        my $pid = $c && ask($c, 'req ' . ++$n);
        if (defined $pid) { $by{$pid}++ } else { $failed++ }
        return $n >= 30 && keys %by >= 4;
    }, 12, 0.05);
    cmp_ok($n, '>=', 30, "$n sequential connections");
    is($failed, 0, 'all of them served');
    cmp_ok(scalar keys %by, '>=', 4, 'by ' . keys(%by) . ' workers in turn');
    ok(!grep({ $_ == $m } keys %by), 'never the master');
    my @w = wait_workers($name, $m, sub { @_ == 1 });
    is(scalar @w, 1, 'one worker at a time');
    is(describe(term($m)), 'exit 0, signal 0', 'TERM: exit 0');
    is_deeply([ ours($TMP) ], [], 'no process is left');
    is(slurp("$TMP/$name.err"), '', 'no warning');
});

# ------------------------------------------------ worker_start dies

pf_subtest("$BE2: worker_start dies in every worker: restarts rate-limited" => sub {
    my $port = free_port();
    my $name = 'die';
    my $m = start($name, $port, backend => $BE2, workers => 2, die_start => 1);
    ok(wait_until(sub { starts($name) >= 2 }, 5), 'the workers start (and die)')
        or return diag(slurp("$TMP/$name.err"));
    my $st0 = proc_stat($m);
    my $n0 = starts($name);
    Time::HiRes::sleep(3);
    my $st1 = proc_stat($m);
    my $n = starts($name) - $n0;
    ok($st0 && $st1, 'the master runs on') or return;
    cmp_ok($n, '<=', (3 + 1) * 2 + 2, "$n starts in 3 s (at most one per second per slot)");
    cmp_ok($n, '>=', 2, 'but it keeps trying');
    my $cpu = $st1->{cpu} - $st0->{cpu};
    is(scalar(grep { /\Asecond line/ } split /\n/, slurp("$TMP/$name.err")), 0,
       "no line of the message is left on its own");
    cmp_ok($cpu, '<', 0.3, "the master used ${cpu}s of CPU in 3 s: it does not spin");
    my @warn = warnings_in($name);
    cmp_ok(scalar @warn, '>=', $n0 + $n - 2, 'each failed start is reported');
    like($warn[0] // '', qr/\AIO::Socket::INET::Daemon: worker [01] \(pid (\d+)\) exited with status \d+: worker_start died: no start in \1 second line: a new one is started\z/,
         'saying why, on one line');
    is(describe(term($m)), 'exit 0, signal 0', 'TERM still ends it, exit 0');
    is_deeply([ ours($TMP) ], [], 'no process is left');
});

# -------------------------------------------------------------- QUIT

pf_subtest("$BE: QUIT: the master exits at once" => sub {
    my $port = free_port();
    my $name = 'quit';
    my $m = start($name, $port, backend => $BE, workers => 2, stop_grace => 30);
    ok(answers($port), 'the port answers') or return diag(slurp("$TMP/$name.err"));
    my @w = wait_workers($name, $m, sub { @_ == 2 });
    my $c = try_client($port, timeout => 2);
    ok($c && defined ask($c, 'hello'), 'a client is connected');
    my $t0 = now();
    kill 'QUIT', $m;
    my $st = reap($m, 2);
    is(describe($st), 'exit 0, signal 0', 'the master exits 0 within 2 s');
    ok(wait_until(sub { !grep { alive($_) } @w }, 2), 'the workers are gone');
    ok(!defined read_line($c, 2) && got_eof($c), "the client's connection is closed");
    is_deeply([ ours($TMP) ], [], 'no process is left');
    is(slurp("$TMP/$name.err"), '', 'no warning');
});

# ---------------------------------------------------------- reuseport

pf_subtest("$BE2: reuseport => 1: a socket per worker" => sub {
    my $port = free_port();
    my $name = 'reuse';
    my $m = start($name, $port, backend => $BE2, workers => 2, reuseport => 1);
    ok(answers($port), 'the port answers') or return diag(slurp("$TMP/$name.err"));
    my @w = wait_workers($name, $m, sub { @_ == 2 });
    my $seen = serve_pids($port, 2, 8);
    is_deeply([ served($seen) ], [ sort { $a <=> $b } @w ], 'both workers serve');
    is($seen->{''}, 0, 'every connection was served');
    is(describe(term($m)), 'exit 0, signal 0', 'TERM: exit 0');
    is_deeply([ ours($TMP) ], [], 'no process is left');
    is(slurp("$TMP/$name.err"), '', 'no warning');

    my $hold = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1', LocalPort => 0,
                                     Proto => 'tcp') or die "listen: $@";
    my $taken = $hold->sockport;
    $m = start('reuse2', $taken, backend => $BE2, workers => 2, reuseport => 1);
    my $st = reap($m, 8);
    is(describe($st), 'exit 3, signal 0', 'port taken: run returns false (the script exits 3)');
    like(slurp("$TMP/reuse2.out"), qr/\Arun returned 0 \(.*127\.0\.0\.1:$taken.*in use/i,
         '$@ names the address and says it is in use') or diag(slurp("$TMP/reuse2.out"));
    my $eaddrinuse = Errno::EADDRINUSE();
    like(slurp("$TMP/reuse2.out"), qr/ errno $eaddrinuse\n\z/, '$! is EADDRINUSE');
    is_deeply([ ours($TMP) ], [], 'no worker is left');
    is(scalar(stops('reuse2')), 0, 'no worker_stop (none ran)');

    # without reuseport the master binds: run fails before any worker starts
    $m = start('reuse3', $taken, backend => $BE2, workers => 2);
    is(describe(reap($m, 8)), 'exit 3, signal 0', 'without reuseport: run returns false too');
    like(slurp("$TMP/reuse3.out"), qr/\Arun returned 0 \(.*127\.0\.0\.1:$taken.*in use.* errno $eaddrinuse\n\z/i,
         'saying why') or diag(slurp("$TMP/reuse3.out"));
    is(scalar(starts('reuse3')), 0, 'no worker was started');
    is_deeply([ ours($TMP) ], [], 'nothing is left');
});

# ---------------------------------------------------------- daemonize

pf_subtest("$BE: daemonize + pid_file + workers" => sub {
    my $port = free_port();
    my $name = 'daemon';
    my $pf = "$TMP/daemon.pid";
    my $starter = start($name, $port, backend => $BE, workers => 2, daemonize => 1, pid_file => $pf);
    is(describe(reap($starter, 10)), 'exit 0, signal 0', 'the process started exits 0')
        or return diag(slurp("$TMP/$name.err"));
    my ($m) = slurp($pf) =~ /\A(\d+)\n\z/;
    ok($m, 'the pid file holds a PID') or return;
    my ($logged) = map { /\Amaster (\d+)/ ? $1 : () } log_lines($name);
    isnt($m, $logged, 'not that of the process started');
    ok(alive($m), 'which runs');
    my @w = wait_workers($name, $m, sub { @_ == 2 });
    is(scalar @w, 2, 'it has two workers');
    is(proc_stat($_)->{ppid}, $m, "worker $_ is the master's child") for @w;
    my $seen = serve_pids($port, 2, 8);
    is_deeply([ served($seen) ], [ sort { $a <=> $b } @w ], 'both serve');
    kill 'TERM', $m;
    ok(wait_until(sub { !grep { alive($_) } $m, @w }, 8), 'TERM: the master and workers are gone');
    ok(!-e $pf, 'the pid file is removed');
    is_deeply([ ours($TMP) ], [], 'no process is left');
    like(join("\n", log_lines($name)), qr/^run returned 1$/m, 'run returned true');
    is(scalar(stops($name)), 2, 'worker_stop ran in both');
});

# ------------------------------------------------------- bad values

isd_subtest('bad values croak in new, naming the option' => sub {
    my $D = 'IO::Socket::INET::Daemon';
    my @base = (port => 0, host => '127.0.0.1');
    my @cases = (
        [ [ workers => 0 ],    qr/\A${D}::new: workers: '0' is not a number of processes/ ],
        [ [ workers => 'x' ],  qr/\A${D}::new: workers: 'x' is not a number of processes/ ],
        [ [ workers => -1 ],   qr/\A${D}::new: workers: '-1' is not a number of processes/ ],
        [ [ workers => 2, stop_grace => 'x' ], qr/\A${D}::new: stop_grace: 'x' is not a number of seconds/ ],
        [ [ workers => 2, max_requests => 0 ], qr/\A${D}::new: max_requests: '0' is not a positive integer/ ],
        [ [ max_requests => 5 ], qr/\A${D}::new: max_requests: '5' goes with workers/ ],
        [ [ stop_grace => 5 ],   qr/\A${D}::new: stop_grace: '5' goes with workers/ ],
    );
    for my $case (@cases) {
        my ($o, $re) = @$case;
        ok(!eval { $D->new(@base, @$o); 1 }, "@$o: croaks");
        like($@, $re, "@$o: naming the option");
    }
    ok(!eval { $D->new(listen => ['unix:/x'], workers => 2, reuseport => 1); 1 }, 'reuseport, workers, unix: croaks');
    like($@, qr/\A${D}::new: reuseport: '1' with workers binds a socket per worker: 'unix:\/x'/, 'naming the option and the address');
    ok(!eval { $D->new(@base, workers => 2, reuseport => 1); 1 }, 'reuseport, workers, port 0: croaks');
    like($@, qr/\A${D}::new: reuseport: '1' .*port 0/, 'naming the option');
    ok(eval { $D->new(@base, workers => 2, stop_grace => 0.5, max_requests => 10); 1 },
       'good values do not') or diag($@);
    ok(eval { $D->new(port => 12345, host => '127.0.0.1', workers => 2, reuseport => 1); 1 },
       'reuseport with a port does not') or diag($@);
});

is_deeply([ ours($TMP) ], [], 'no process is left at the end');
done_testing;
