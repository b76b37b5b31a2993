#!perl
# Backpressure (issue 12): $io->pending; high_water / low_water hold the
# input of a connection whose output piles up (no reads, no data calls for
# lines already buffered) and call drain when it is down to low_water;
# $io->pause / resume / paused, resume delivering the buffered lines at once
# also from a timer or tick (mojo#248); max_output still drops a client that
# another connection's callback floods; new validates the options.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use TestISD qw(:DEFAULT ask);
use Test::More;
use IO::Select ();
use POSIX ();

my $KiB = 1024;
my $MiB = 1048576;
my $HOLD = 0.4;    # how long "nothing happens" is watched

my $base = substr(join('', map { chr } 0 .. 250) x (int($MiB / 251) + 1), 0, $MiB);
sub chunk { sprintf('%08d', $_[0]) . substr($base, 8, ($_[1] || $MiB) - 8) }    # numbered

# VmRSS / VmHWM of a process in kB (undef once it is gone)
sub vm {
    my ($pid, $key) = @_;
    open my $fh, '<', "/proc/$pid/status" or return undef;
    while (<$fh>) { return $1 if /^\Q$key\E:\s+(\d+)\s+kB/ }
    return undef;
}

# CPU time (user + system) of a process in seconds
my $TCK = eval { POSIX::sysconf(POSIX::_SC_CLK_TCK()) } || 100;
sub cpu_secs {
    my ($pid) = @_;
    open my $fh, '<', "/proc/$pid/stat" or return undef;
    my $s = <$fh>;
    return undef unless defined $s && $s =~ /\)\s+(.*)/;
    my @f = split ' ', $1;
    return ($f[11] + $f[12]) / $TCK;
}

# --------------------------------------------------------------- the server

# Everything below runs in the server child.  %IO keeps every $io by peer
# port, also after it closed, so that another connection can ask about it.
my (%IO, %calls, %maxentry, %armed, %held, %drains, %TICK);
my $HW;      # the server's high_water, for the crossing bookkeeping

sub reply { my $h = sprintf('rep %05d ', $_[0]); $h . ('x' x (1024 - 1 - length $h)) . "\n" }

sub data {
    my ($io, $d, $l) = @_;
    my $p = $io->peerport;
    if ($l =~ /^req (\d+)\n\z/) {           # the pipelined requests: 1 KiB each
        my $before = $io->pending;
        $calls{$p}++;
        $maxentry{$p} = $before if $before > ($maxentry{$p} || 0);
        my $r = reply($1);
        # armed: the queue may have gone over high_water (what print
        # appended, before any write); held: it certainly is over it now
        $armed{$p}++ if defined $HW && $before + length($r) > $HW;
        $io->print($r);
        $held{$p}++ if defined $HW && $io->pending > $HW;
        return 1;
    }
    (my $cmd = $l) =~ s/\n\z//;
    my @a = split ' ', $cmd;
    my $o = defined $a[1] ? $IO{ $a[1] } : undef;
    if ($a[0] eq 'stat') {                  # stat PORT
        $io->printf("stat calls=%d maxentry=%d armed=%d held=%d drains=%d pending=%d\n",
                    $calls{ $a[1] } || 0, $maxentry{ $a[1] } || 0, $armed{ $a[1] } || 0,
                    $held{ $a[1] } || 0, $drains{ $a[1] } || 0, $o ? $o->pending : -1);
    }
    elsif ($a[0] eq 'pending') {           # pending [PORT]
        $o ||= $io;
        $io->print('pending ', $o->pending, "\n");
    }
    elsif ($a[0] eq 'fill') {              # fill MiB [PORT]: numbered 1 MiB chunks
        my $t = $a[1] * 1;
        my $to = defined $a[2] ? $IO{ $a[2] } : $io;
        my $ok = 0;
        for my $i (0 .. $t - 1) { $ok++ if $to->print(chunk($i)) }
        log_event('filled %s %d/%d pending=%d', $to->peerport, $ok, $t, $to->pending);
        $armed{ $to->peerport }++;
    }
    elsif ($a[0] eq 'after') {
        log_event('after %s pending=%d', $p, $io->pending);
        $io->print("AFTER\n");
    }
    elsif ($a[0] eq 'remove') {            # remove PORT: the server closes it
        $d->remove($o);
        $io->print("removed\n");
    }
    elsif ($a[0] eq 'pause') {
        my $was = $io->paused ? 1 : 0;
        my $r = $io->pause;
        log_event('pause %s was=%d ret=%d paused=%d', $p, $was, $r ? 1 : 0, $io->paused ? 1 : 0);
        $io->print("paused\n");
    }
    elsif ($a[0] eq 'resume_now') {        # resume PORT from this data callback
        my $r = $o->resume;
        log_event('resumed %s ret=%d paused=%d at=%.6f', $a[1], $r ? 1 : 0, $o->paused ? 1 : 0, now());
        $io->print("ok\n");
    }
    elsif ($a[0] eq 'resume_timer') {      # resume_timer PORT SECONDS
        my $port = $a[1];
        $d->timer(after => $a[2], cb => sub {
            my $r = $IO{$port}->resume;
            log_event('resumed %s ret=%d paused=%d at=%.6f', $port, $r ? 1 : 0,
                      $IO{$port}->paused ? 1 : 0, now());
        });
        $io->print("ok\n");
    }
    elsif ($a[0] eq 'resume_tick') {       # resume_tick PORT: tick resumes it
        $TICK{ $a[1] } = 1;
        $io->print("ok\n");
    }
    elsif ($a[0] eq 'paused') {            # paused PORT
        $io->print('paused ', ($o->paused ? 1 : 0), "\n");
    }
    elsif ($a[0] eq 'closed_ops') {        # closed_ops PORT [remove]
        $d->remove($o) if ($a[2] || '') eq 'remove';
        my $res = eval {
            my $r1 = $o->pause;
            my $s1 = $o->paused;
            my $r2 = $o->resume;
            my $s2 = $o->paused;
            my $r3 = $o->pause;
            my $n = $o->pending;
            sprintf('ok pending=%s opened=%d', defined $n ? $n : 'undef', $o->opened ? 1 : 0);
        };
        $res = 'died ' . $@ unless defined $res;
        $res =~ s/\n/ /g;
        log_event('closed_ops %s %s', $a[1], $res);
        $io->print("closed_ops $res\n");
    }
    elsif ($a[0] eq 'bcast') {             # bcast ROUND KiB: to everybody else
        my $blob = chunk($a[1], $a[2] * $KiB);
        my ($ok, $fail) = (0, 0);
        for my $c ($d->connections) {
            next if $c == $io;
            if ($c->print($blob)) { $ok++ }
            else { $fail++; log_event('bcast %d failed to %s', $a[1], $c->peerport) }
        }
        $io->print("bcast $a[1] ok=$ok fail=$fail\n");
    }
    else {
        log_event('data %s %s at=%.6f', $p, $cmd, now());
        $io->print("got $cmd\n");
    }
    return 1;
}

sub drain {
    my ($io, $d) = @_;
    my $p = $io->peerport;
    log_event('drain %s armed=%d pending=%d', $p, $armed{$p} || 0, $io->pending);
    $armed{$p} = $held{$p} = 0;
    $drains{$p}++;
}

sub tick {
    my (undef, $d) = @_;
    for my $port (sort keys %TICK) {
        delete $TICK{$port};
        my $r = $IO{$port}->resume;
        log_event('resumed %s ret=%d paused=%d at=%.6f', $port, $r ? 1 : 0,
                  $IO{$port}->paused ? 1 : 0, now());
    }
}

my %cb = (
    add    => sub { $IO{ $_[0]->peerport } = $_[0]; log_event('add %s', $_[0]->peerport); 1 },
    remove => sub { log_event('remove %s', $_[0]->peerport) },
    error  => sub { log_event('error %s %s', defined $_[0] ? $_[0]->peerport : 'undef', $_[2]) },
    data   => \&data,
    drain  => \&drain,
    tick   => \&tick,
);

sub server {
    my ($be, %o) = @_;
    my $hw = $o{high_water};
    return start_server(
        backend    => $be,
        timeout    => 5,            # a resume that waits for the next cycle shows
        callback   => {%cb},
        child_init => sub { $HW = defined $hw ? $hw : 1048576 },
        %o,
    );
}

# fields of "stat PORT" asked over $c
sub stat_of {
    my ($c, $port) = @_;
    my $r = ask($c, "stat $port");
    return {} unless defined $r && $r =~ /^stat /;
    return { map { split /=/ } grep /=/, split ' ', $r };
}

sub ev_list { my ($srv, $re) = @_; map { [ $_ =~ $re ] } $srv->grep_events($re) }

# write $out while reading until $want bytes came (or EOF, or the deadline)
sub pump {
    my ($sock, $out, $want, $timeout) = @_;
    my $deadline = now() + $timeout;
    $sock->blocking(0);
    my ($in, $off) = ('', 0);
    while (length($in) < $want) {
        my $left = $deadline - now();
        last if $left <= 0;
        my $r = IO::Select->new($sock);
        my $w = $off < length $out ? IO::Select->new($sock) : undef;
        my ($rr, $ww) = IO::Select->select($r, $w, undef, $left);
        if ($rr && @$rr) {
            my $n = sysread($sock, $in, 1048576, length $in);
            last if defined $n && $n == 0;
            last if !defined $n && !($!{EAGAIN} || $!{EINTR});
        }
        if ($ww && @$ww) {
            my $n = syswrite($sock, $out, length($out) - $off, $off);
            $off += $n if $n;
        }
    }
    $sock->blocking(1);
    return ($in, $off);
}

sub no_errors {
    my ($srv) = @_;
    my @e = $srv->grep_events(qr/^error /);
    is(scalar @e, 0, 'no error callback') or diag(join "\n", @e);
}

for my $be (backends()) {
    isd_subtest "pending, backend $be" => sub {
        my $srv = server($be);
        my $b = client($srv);
        my $a = client($srv);
        my $pa = $a->sockport;
        is(ask($a, 'pending'), 'pending 0', 'an idle connection: pending is 0');
        is(ask($b, "pending $pa"), 'pending 0', '... also asked from another connection');

        # A never reads: the first 4 MiB may all go into the kernel's
        # buffers (about 4 MiB on loopback), the next 4 MiB cannot.  B prints
        # them (A's own input may be held at high water meanwhile).
        print $b "fill 4 $pa\n";
        ok($srv->wait_event(qr/^filled $pa /, 5), '4 MiB printed to A');
        Time::HiRes::sleep(0.2);
        print $b "fill 4 $pa\n";
        ok($srv->wait_event(qr/^filled $pa /, 5, 2), '4 MiB more printed to A, which does not read');
        my @f = ev_list($srv, qr/^filled $pa (\d+)\/(\d+) pending=(\d+)$/);
        is(join(',', map { "$_->[0]/$_->[1]" } @f), '4/4,4/4', 'every print returned true');
        ok($f[1][2] > 0, "right after printing 4 MiB to a client that does not read, pending is $f[1][2] (> 0)");
        ok($f[1][2] <= 8 * $MiB, '... and no more than was printed');
        Time::HiRes::sleep(0.2);
        my ($n) = (ask($b, "pending $pa") || '') =~ /^pending (\d+)$/;
        ok(defined $n && $n > 0 && $n <= 8 * $MiB,
           'still > 0 a moment later (' . (defined $n ? $n : 'no answer') . ')');

        # A reads everything: pending falls to 0
        my $got = read_n($a, 8 * $MiB, 10);
        ok($got eq chunk(0) . chunk(1) . chunk(2) . chunk(3) . chunk(0) . chunk(1) . chunk(2) . chunk(3),
           'A got the 8 MiB, in order');
        my $zero = wait_until(sub { (ask($b, "pending $pa") || '') eq 'pending 0' }, 3, 0.05);
        ok($zero, 'pending is 0 once A read it all');

        # a client that resets the connection with output queued
        my $r = client($srv);
        my $pr = $r->sockport;
        print $r "fill 8\n";
        ok($srv->wait_event(qr/^filled $pr /, 5), '8 MiB printed to R, which does not read');
        my ($m) = (ask($b, "pending $pr") || '') =~ /^pending (\d+)$/;
        ok(defined $m && $m > 0, 'R: pending ' . (defined $m ? $m : 'no answer') . ' before the close');
        close $r;                              # unread data: a reset
        ok($srv->wait_event(qr/^remove $pr$/, 5), 'the server saw R go');
        is(ask($b, "pending $pr"), 'pending 0', 'R closed: pending is 0');

        # a connection the server removes with output queued, delivered in linger
        my $q = client($srv);
        my $pq = $q->sockport;
        print $q "fill 8\n";
        ok($srv->wait_event(qr/^filled $pq /, 5), '8 MiB printed to Q');
        is(ask($b, "remove $pq"), 'removed', 'the server removes Q');
        my $all = read_until_eof($q, 10);
        ok(got_eof($q), 'Q sees the close');
        is(length $all, 8 * $MiB, 'Q got its 8 MiB first');
        my $qz = wait_until(sub { (ask($b, "pending $pq") || '') eq 'pending 0' }, 3, 0.05);
        ok($qz, 'Q removed and delivered: pending is 0');
        close $q;
        is(ask($b, 'hello'), 'got hello', 'the server serves on');
        no_errors($srv);
        close $_ for $a, $b;
    };

    isd_subtest "high_water 65536: a pipelining client that does not read is held, backend $be" => sub {
        my $HWM = 65536;
        my $N = 20_000;
        my $srv = server($be, high_water => $HWM);
        my $pid = $srv->pid;
        my $b = client($srv);       # asks the questions; never crosses high water
        my $c = client($srv);       # pipelines a little (30 KiB of replies), reads them
        my $pc = $c->sockport;
        print $c join('', map { "req $_\n" } 1 .. 30);
        is(read_n($c, 30 * 1024, 5), join('', map { reply($_) } 1 .. 30), 'C: 30 pipelined replies');
        my $a = client($srv);
        my $pa = $a->sockport;
        is(ask($b, 'warm'), 'got warm', 'B is served');
        my $rss0 = vm($pid, 'VmRSS');

        # A sends all the requests and reads nothing
        my $req = join '', map { "req $_\n" } 1 .. $N;
        my $sent = send_all($a, $req, 2);
        my ($st, $prev, $stable) = ({}, -1, 0);
        my $end = now() + 6;
        while (now() < $end) {                # until the data calls stop
            $st = stat_of($b, $pa);
            my $calls = $st->{calls} || 0;
            $stable = $calls == $prev && $calls > 0 ? $stable + 1 : 0;
            last if $stable >= 2;
            $prev = $calls;
            Time::HiRes::sleep(0.15);
        }
        my $calls1 = $st->{calls} || 0;
        ok($stable >= 2, "the data calls for A stop while it does not read ($calls1 calls)");
        ok($calls1 > 0 && $calls1 < $N / 2, "... well before $N ($calls1)");
        my $cpu0 = cpu_secs($pid);
        my $t0 = now();
        Time::HiRes::sleep($HOLD);
        my $st2 = stat_of($b, $pa);
        my $cpu = cpu_secs($pid) - $cpu0;
        my $wall = now() - $t0;
        is($st2->{calls}, $calls1, "no data call for A in ${HOLD}s more");
        ok($cpu < $wall / 3, sprintf('the server does not spin while A is held (%.2fs CPU in %.2fs)', $cpu, $wall));
        ok(($st2->{pending} || 0) > 0 && ($st2->{pending} || 0) <= $HWM + 1024,
           "A's queue is held near high water: pending $st2->{pending}");
        ok($st2->{maxentry} <= $HWM,
           "no data call began with more than high_water queued (max $st2->{maxentry})");
        my $rss1 = vm($pid, 'VmRSS');
        my $grew = ($rss1 - $rss0) / 1024;
        ok($grew < 40, sprintf('server RSS grew %.1f MB (< 40 MB) while held (%d bytes of requests sent)', $grew, $sent));
        is(ask($b, 'other'), 'got other', 'B is served meanwhile');
        is(ask($c, 'other'), 'got other', 'C is served meanwhile');

        # now A reads (and sends the rest)
        my ($in, $off) = pump($a, substr($req, $sent), $N * 1024, 15);
        my $want = join '', map { reply($_) } 1 .. $N;
        is(length $in, length $want, "A got " . length($in) . " bytes of replies");
        if ($in ne $want) {
            my @got = split /(?<=\n)/, $in;
            my ($i) = grep { !defined $got[$_] || $got[$_] ne reply($_ + 1) } 0 .. $N - 1;
            fail('every reply, in order, exactly once');
            diag('first difference at reply ' . ($i + 1) . ': '
                 . (defined $got[$i] ? substr($got[$i], 0, 20) : 'missing'));
        }
        else {
            pass('every reply, in order, exactly once');
        }
        is(read_for($a, 0.2), '', 'and nothing more');
        my $st3 = stat_of($b, $pa);
        is($st3->{calls}, $N, "data called $N times for A");
        ok($st3->{maxentry} <= $HWM, "no data call began with more than high_water queued (max $st3->{maxentry})");
        my $hwm = vm($pid, 'VmHWM');
        $grew = (($hwm > $rss1 ? $hwm : $rss1) - $rss0) / 1024;
        ok($grew < 40, sprintf('server peak RSS grew %.1f MB (< 40 MB) in all', $grew));

        # drain
        my $drained = wait_until(sub { my $n = stat_of($b, $pa)->{pending}; defined $n && $n == 0 }, 3, 0.05);
        ok($drained, "A's queue is empty");
        my @d = ev_list($srv, qr/^drain (\d+) armed=(\d+) pending=(\d+)$/);
        my @da = grep { $_->[0] == $pa } @d;
        ok(@da >= 1, 'drain called for A (' . scalar(@da) . ' times)');
        my $dl = "drains of A (armed: prints since the previous drain that may have crossed):\n"
               . join("\n", $srv->grep_events(qr/^drain $pa /));
        is(scalar(grep { $_->[1] < 1 } @da), 0, 'every drain of A came after its queue went over high water')
            or diag($dl);
        is(scalar(grep { $_->[2] > 0 } @da), 0, 'every drain of A came with its queue at low_water (0)')
            or diag($dl);
        is(stat_of($b, $pa)->{held}, 0, 'the last time A was held over high water was followed by a drain');
        is(scalar(grep { $_->[0] != $pa } @d), 0, 'no drain for B or C, which never crossed high water')
            or diag(join ' ', map { $_->[0] } @d);
        ok(!$srv->count(qr/^drain $pc /), 'none for C');
        print $a "req 1\n";
        is(read_n($a, 1024, 3), reply(1), 'A is served on');
        no_errors($srv);
        close $_ for $a, $b, $c;
    };

    isd_subtest "low_water: input flows again (and drain) once the queue is down to it, backend $be" => sub {
        # The kernel takes a non-reading client's output in steps of about a
        # third of the socket's send buffer (~1.4 MB on loopback) as the
        # client reads: low_water must be well above such a step for the
        # queue to be seen between 0 and low_water.
        my ($hw, $lw, $fill) = (4 * $MiB, 3 * $MiB, 12);
        my $srv = server($be, high_water => $hw, low_water => $lw);
        my $a = client($srv);
        my $pa = $a->sockport;
        print $a "fill $fill\nafter\n";
        ok($srv->wait_event(qr/^filled $pa /, 5), "$fill MiB printed to A");
        my $b = client($srv);
        my $st = stat_of($b, $pa);
        ok(($st->{pending} || 0) > $hw, "A's queue is over high water (" . ($st->{pending} || 0) . ')');
        Time::HiRes::sleep($HOLD);
        is($srv->count(qr/^after /), 0, 'the line after it is held');
        # A reads slowly
        my $got = '';
        my $end = now() + 10;
        while (length($got) < $fill * $MiB && now() < $end) {
            $got .= read_n($a, 256 * $KiB, 3);
            Time::HiRes::sleep(0.01);
        }
        $got .= read_n($a, 6, 3);
        ok($got eq join('', map { chunk($_) } 0 .. $fill - 1) . "AFTER\n",
           "A got the $fill MiB, then the reply to the held line");
        my @d = ev_list($srv, qr/^drain $pa armed=(\d+) pending=(\d+)$/);
        is(scalar @d, 1, 'drain called once');
        my $pd = @d ? $d[0][1] : -1;
        ok($pd >= 0 && $pd <= $lw, "drain came with the queue at or below low_water ($pd <= $lw)");
        ok($pd > 0, "... and before it was empty ($pd > 0)");
        my @ev = $srv->events;
        my ($idrain) = grep { $ev[$_] =~ /^drain $pa / } 0 .. $#ev;
        my ($iafter) = grep { $ev[$_] =~ /^after $pa / } 0 .. $#ev;
        ok(defined $idrain && defined $iafter && $idrain < $iafter,
           'drain is called first, then the held line is delivered');
        my ($pafter) = map { /pending=(\d+)/ } $srv->grep_events(qr/^after $pa /);
        $pafter = -1 unless defined $pafter;
        ok($pafter >= 0 && $pafter <= $lw, "the held line was delivered once the queue was at low_water ($pafter)");
        ok($pafter > 0, "... before it was empty ($pafter > 0)");
        is(ask($a, 'more'), 'got more', 'A is served on');
        no_errors($srv);
        close $_ for $a, $b;
    };

    isd_subtest "pause holds buffered and new lines, others are served, resume delivers them, backend $be" => sub {
        my $srv = server($be);
        my $pid = $srv->pid;
        my $a = client($srv);
        my $pa = $a->sockport;
        my $b = client($srv);
        is(ask($b, "paused $pa"), 'paused 0', 'paused is false at first');
        print $a "x1\npause\nl1\nl2\nl3\n";
        is(read_line($a, 3), "got x1\n", 'the line before pause is served');
        is(read_line($a, 3), "paused\n", 'pause');
        ok($srv->wait_event(qr/^pause $pa /, 3), 'pause called');
        my ($ev) = $srv->grep_events(qr/^pause $pa /);
        like($ev, qr/was=0 ret=1 paused=1$/, 'pause returns true; paused was false, is true');
        is(ask($b, "paused $pa"), 'paused 1', 'paused is true, asked from another connection');

        my $cpu0 = cpu_secs($pid);
        my $t0 = now();
        is(read_for($a, $HOLD), '', 'no data call for the lines buffered after pause');
        print $a "l4\nl5\n";
        is(read_for($a, $HOLD), '', 'nor for new lines');
        my $cpu = cpu_secs($pid) - $cpu0;
        my $wall = now() - $t0;
        is($srv->count(qr/^data $pa l/), 0, 'no data event for l1..l5');
        ok($cpu < $wall / 3, sprintf('the server does not spin on the paused connection (%.2fs CPU in %.2fs)', $cpu, $wall));
        is(ask($b, 'b1'), 'got b1', 'another connection is served meanwhile');
        ok(!got_eof($a), 'A stays open');

        is(ask($b, "resume_now $pa"), 'ok', 'resume from another connection\'s data');
        my $got = read_n($a, 35, 3);
        is($got, join('', map { "got l$_\n" } 1 .. 5), 'l1..l5 delivered, in order');
        is(read_for($a, 0.2), '', 'exactly once');
        my ($rv) = $srv->grep_events(qr/^resumed $pa /);
        like($rv, qr/ret=1 paused=0 /, 'resume returns true; paused is false after');
        is(ask($b, "paused $pa"), 'paused 0', 'paused is false, asked from another connection');
        is(ask($a, 'l6'), 'got l6', 'A is served on');
        no_errors($srv);
        close $_ for $a, $b;
    };

    for my $from (qw(timer tick)) {
        isd_subtest "resume from a $from delivers the buffered lines at once (mojo#248), backend $be" => sub {
            my $srv = server($be);
            my $a = client($srv);
            my $pa = $a->sockport;
            my $b = client($srv);
            print $a "pause\nl1\nl2\nl3\n";
            is(read_line($a, 3), "paused\n", 'paused, three lines buffered behind');
            is(read_for($a, 0.2), '', 'held');
            my $t0 = now();
            is(ask($b, $from eq 'timer' ? "resume_timer $pa 0.3" : "resume_tick $pa"), 'ok',
               $from eq 'timer' ? 'a timer will resume A in 0.3s' : 'the next tick will resume A');
            # A sends nothing more
            my $got = read_n($a, 21, 3);
            my $dt = now() - $t0;
            is($got, "got l1\ngot l2\ngot l3\n", 'the buffered lines are delivered, in order, without new input');
            ok($dt < ($from eq 'timer' ? 0.3 : 0) + 0.6, sprintf('%.3fs after the request', $dt));
            ok($srv->wait_event(qr/^resumed $pa /, 1), "resume called from the $from");
            my ($r) = map { /at=([\d.]+)/ } $srv->grep_events(qr/^resumed $pa /);
            my @at = map { /at=([\d.]+)/ } $srv->grep_events(qr/^data $pa l\d at=/);
            is(scalar @at, 3, 'three data calls');
            my $lag = (@at && defined $r) ? $at[-1] - $r : 99;
            ok($lag >= 0 && $lag < 0.2, sprintf('all three within %.3fs of the resume (< 0.2s)', $lag));
            is(read_for($a, 0.1), '', 'exactly once');
            is(ask($a, 'l4'), 'got l4', 'A is served on');
            no_errors($srv);
            close $_ for $a, $b;
        };
    }

    isd_subtest "pause and resume on a closed \$io are harmless, backend $be" => sub {
        my $srv = server($be);
        my $b = client($srv);
        my $a = client($srv);
        my $pa = $a->sockport;
        is(ask($a, 'hi'), 'got hi', 'A served');
        close $a;
        ok($srv->wait_event(qr/^remove $pa$/, 3), 'A closed by the client');
        like(ask($b, "closed_ops $pa") || '', qr/^closed_ops ok pending=0 opened=0$/,
             'pause, paused, resume, pending on a closed $io: no die; pending 0');

        my $c = client($srv);
        my $pc = $c->sockport;
        print $c "pause\n";
        is(read_line($c, 3), "paused\n", 'C paused');
        like(ask($b, "closed_ops $pc remove"), qr/^closed_ops ok pending=\d+ opened=0$/,
             'the server removes paused C, then pause/resume on it: no die');
        read_until_eof($c, 3);
        ok(got_eof($c), 'C sees the close');
        close $c;
        is(ask($b, 'still'), 'got still', 'the server serves on');
        no_errors($srv);
        is($srv->stderr, '', 'no warning');
        close $b;
    };

    isd_subtest "max_output drops a client another connection floods, backend $be" => sub {
        my $srv = server($be, max_output => 2 * $MiB, high_water => 65536);
        my $s = client($srv);       # never reads
        my $ps = $s->sockport;
        my $r = client($srv);       # reads every broadcast
        my $pr = $r->sockport;
        my $b = client($srv);       # broadcasts
        my $pb = $b->sockport;
        ok($srv->wait_event(qr/^add $pb$/, 3), 'three connected');
        my ($rounds, $rbad, $after) = (0, 0, 0);
        for my $i (1 .. 48) {             # up to 12 MiB each
            my $ans = ask($b, "bcast $i 256");
            last unless defined $ans && $ans =~ /^bcast $i /;
            $rounds++;
            $rbad++ unless read_n($r, 256 * $KiB, 3) eq chunk($i, 256 * $KiB);
            $after++ if $srv->count(qr/^error $ps /);
            last if $after >= 3;
        }
        ok($srv->count(qr/^error $ps /), "S dropped after $rounds rounds of 256 KiB");
        is($rbad, 0, 'R got every broadcast, byte-exact');
        my @e = $srv->grep_events(qr/^error /);
        is(scalar @e, 1, 'one error') or diag(join "\n", @e);
        like($e[0] || '', qr/^error $ps .*max_output/, 'for S, naming max_output');
        ok($srv->count(qr/^bcast \d+ failed to $ps$/) >= 1, 'print to S returned false');
        is($srv->count(qr/^bcast \d+ failed to (?!$ps$)/), 0, 'no print to R failed');
        ok($srv->wait_event(qr/^remove $ps$/, 3), 'remove called for S');
        my $all = read_until_eof($s, 10);
        ok(got_eof($s), 'S sees the close (' . length($all) . ' bytes came before)');
        my $sent = join '', map { chunk($_, 256 * $KiB) } 1 .. $rounds;
        ok(length($all) < length($sent), 'S did not get everything');
        ok(substr($sent, 0, length $all) eq $all, 'what S got is in order');
        is($srv->count(qr/^remove $ps$/), 1, 'remove once');
        is(ask($b, 'still'), 'got still', 'B is served on');
        is(ask($r, 'still'), 'got still', 'R is served on');
        close $_ for $s, $r, $b;
    };

    isd_subtest "options, backend $be" => sub {
        my %base = (port => 0, host => '127.0.0.1', backend => $be);
        for my $ok ([high_water => 1], [high_water => 65536, low_water => 65535],
                    [high_water => 65536, low_water => 0], [low_water => 1048575]) {
            my $d = eval { IO::Socket::INET::Daemon->new(%base, @$ok) };
            ok($d, "new(@$ok) is fine") or diag($@);
            $d->destroy if $d;
        }
        for my $bad ([high_water => 0, 'high_water'], [high_water => -1, 'high_water'],
                     [high_water => '1.5', 'high_water'], [high_water => 'x', 'high_water'],
                     [high_water => '64k', 'high_water'], [low_water => -1, 'low_water'],
                     [low_water => '0.5', 'low_water'], [low_water => 'x', 'low_water'],
                     [high_water => 100, low_water => 100, 'low_water'],
                     [high_water => 100, low_water => 101, 'low_water'],
                     [low_water => 1048576, 'low_water']) {
            my @o = @$bad;
            my $name = pop @o;
            my $ok = eval { IO::Socket::INET::Daemon->new(%base, @o); 1 };
            ok(!$ok, "new(@o) croaks");
            like($@, qr/\b$name\b/, "... naming $name");
        }
    };
}

done_testing;
