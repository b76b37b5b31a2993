#!perl
# The server inside another event loop (issue 16): run_once, fd,
# next_timeout, attach/detach with EV, AnyEvent (on EV and on its pure-Perl
# loop), IO::Async, Mojo::IOLoop and POE, each on every backend.
#
# Each case runs in a host child of its own (t/lib/TestEmbed.pm): one loop
# loaded, with a recurring timer (0.05 s) and a control socket of its own,
# the server attached to it; what the test asks of the host loop ("stop",
# "detach", "timer 0.3", ...) is done in the host loop's callback of that
# socket.  Cases run a few at a time in worker processes and are reported
# as one subtest each.
#
# Per loop and backend:
# - serve:    20 clients x 100 pipelined lines answered, in order, while the
#             host timer keeps its rate and the control socket answers
# - stop:     stop from the host loop: detached, no callbacks, no answers,
#             the host loop runs on
# - grace:    stop(grace => 2) with two connections open: both answered,
#             no new clients, detached as soon as the last one closes
# - grace-end: stop(grace => 0.6) with an idle connection: dropped at the
#             end of the grace, detached (no traffic: the glue's timer)
# - destroy:  destroy from the host loop: clients see EOF, detached, no
#             warnings, the host loop runs on
# - die:      a die in the data callback: that connection dropped, the
#             error callback told, others served, the host loop runs on
# - detach:   detach, the host loop runs on, the server answers nothing
#             (connects still complete), attach: the waiting clients answered
# - timer:    a server timer (after => 0.3) made in a host callback fires on
#             time with no traffic; also when that callback worked 50 ms
#             before making it
# - slow:     a data callback that works 25 ms: the lines after it are
#             answered too
# - idle:     idle_timeout => 0.5 drops an idle client on time, not a busy one
# Plus, without a host loop: run_once, fd, next_timeout, the croaks.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use TestISD;
use TestEmbed;
use Test::More;
use IO::Select ();
use Time::HiRes ();

alarm 88;                       # (TestISD: the whole file)

my @BACKENDS = backends();
my @LOOPS;
for my $v (loop_variants()) {
    (my $f = "$v->{module}.pm") =~ s{::}{/}g;
    if (system($^X, '-e', "require '$f'") == 0) {
        push @LOOPS, $v;
    } else {
        diag("$v->{name}: $v->{module} is not installed, its cases are skipped");
    }
}
my $JOBS = $ENV{ISD_EMBED_JOBS} || 4;

# echo($sock, $msg): "$msg\n" sent, "echo $msg\n" back within 3 s.
sub echo {
    my ($sock, $msg) = @_;
    print $sock "$msg\n";
    my $r = read_line($sock, 3);
    return defined $r && $r eq "echo $msg\n";
}

# croaks(sub { ... }, qr/.../): it dies, with $@ matching (a plain boolean).
sub croaks {
    my ($code, $re) = @_;
    return 0 if eval { $code->(); 1 };
    return $@ =~ $re ? 1 : 0;
}

# Lines that must not come back (the server detached or stopped).
sub no_reply {
    my ($sock, $secs) = @_;
    my $got = read_for($sock, $secs);
    return $got eq '' ? 1 : 0;
}

# ------------------------------------------------------------------ cases

my %CASE;

$CASE{serve} = sub {
    my ($v, $be) = @_;
    my $c = start_case($v, $be);
    my $impl = $c->cmd('impl');
    chk_ok(defined $impl, "the host loop runs ($impl)");
    chk_like($impl, $v->{impl}, "on the wanted model") if $v->{impl};
    chk_is($c->cmd('embedded'), 1, 'attached');
    $c->cmd('ticks_reset');
    my $t0 = now();
    my @cl = map { client($c->port) } 1 .. 20;
    for my $i (0 .. $#cl) {
        send_all($cl[$i], join('', map { "c$i l$_\n" } 1 .. 100), 5);
    }
    my ($bad, $pings, $pongs) = (0, 0, 0);
    my ($first_bad, $stalled);
    for my $i (0 .. $#cl) {
        for my $j (1 .. 100) {
            # (once a reply did not come, the rest are not waited for)
            my $r = read_line($cl[$i], $stalled ? 0.001 : 5);
            $stalled = 1 unless defined $r;
            if (!defined $r || $r ne "echo c$i l$j\n") {
                $bad++;
                $first_bad ||= "client $i line $j: " . (defined $r ? "'$r'" : 'nothing');
            }
            if ($j % 25 == 0) {             # the host's own socket, meanwhile
                $pings++;
                my $p = $c->cmd('ping');
                $pongs++ if defined $p && $p eq 'pong';
            }
        }
    }
    chk_is($bad, 0, '2000 replies, all correct and in order') or chk_diag($first_bad);
    chk_is($pongs, $pings, "the host loop's own socket answered all $pings pings meanwhile");
    # the host timer over the whole time (at least 0.6 s)
    my $left = 0.6 - (now() - $t0);
    Time::HiRes::sleep($left) if $left > 0;
    my $span = now() - $t0;
    my ($n, $gap) = split ' ', ($c->cmd('ticks') || '0 9');
    chk_between($n, int($span / 0.05 * 0.5), $span / 0.05 + 2,
                sprintf('the host timer (0.05 s) kept its rate: %s firings in %.2f s', $n, $span));
    chk_between($gap, 0, 0.25, 'its longest gap is short');
    chk_is($c->cmd('embedded'), 1, 'still attached');
    close $_ for @cl;
    $c->finish;
};

$CASE{stop} = sub {
    my ($v, $be) = @_;
    my $c = start_case($v, $be);
    my $a = client($c->port);
    chk_ok(echo($a, 'hello'), 'a client is answered');
    chk_is($c->cmd('stop'), 1, 'stop from the host loop');
    chk_is($c->wait_cmd('embedded', 0, 2), 0, 'the glue detaches itself');
    chk_is($c->cmd('glue'), 'none', '$server->{_embed} is gone');
    my $cb = $c->cmd('cb');
    print $a "after stop\n";
    chk_ok(no_reply($a, 0.3), 'the open connection is not answered any more');
    my $b = try_client($c->port, timeout => 2);
    if ($b) {
        print $b "new\n";
        chk_ok(no_reply($b, 0.3), 'a new connection is not answered');
    }
    chk_is($c->cmd('cb'), $cb, 'no callback ran after the stop (tick included)');
    chk_between($c->ticks_over(0.3), 3, 8, 'the host loop runs on (its timer)');
    chk_is($c->cmd('ping'), 'pong', 'its socket too');
    chk_is($c->cmd('next_timeout'), 'undef', 'next_timeout: nothing pending after the stop');
    close $a;
    close $b if $b;
    my @ev = $c->finish;
    chk_is(scalar(grep { /^add/ } @ev), 1, 'only the first client was added');
};

$CASE{grace} = sub {
    my ($v, $be) = @_;
    my $c = start_case($v, $be);
    my $a = client($c->port);
    my $b = client($c->port);
    chk_ok(echo($a, 'a1') && echo($b, 'b1'), 'two clients answered');
    my $t0 = now();
    chk_is($c->cmd('grace 2'), 1, 'stop(grace => 2) from the host loop');
    chk_ok(echo($a, 'a2'), 'the first connection is still answered');
    chk_ok(echo($b, 'b2'), 'the second too');
    chk_is($c->cmd('embedded'), 1, 'still attached during the grace');
    my $n = try_client($c->port, timeout => 1);
    chk_ok(!$n || (do { print $n "new\n"; no_reply($n, 0.2) }),
           'a new client is refused or not answered');
    close $n if $n;
    close $a;
    Time::HiRes::sleep(0.2);
    chk_ok(echo($b, 'b3'), 'one closed: the other still answered');
    chk_is($c->cmd('embedded'), 1, 'still attached with one open');
    close $b;
    my $t1 = now();
    chk_is($c->wait_cmd('embedded', 0, 3), 0, 'the last one closed: detached');
    my $took = now() - $t1;
    chk_between($took, 0, 0.6, sprintf('at once (%.2f s after the close), not at the end of the grace', $took));
    chk_ok(now() - $t0 < 1.9, 'before the grace was over');
    chk_between($c->ticks_over(0.3), 3, 8, 'the host loop runs on');
    $c->finish;
};

$CASE{'grace-end'} = sub {
    my ($v, $be) = @_;
    my $c = start_case($v, $be);
    my $a = client($c->port);
    chk_ok(echo($a, 'a1'), 'a client answered');
    my $t0 = now();
    chk_is($c->cmd('grace 0.6'), 1, 'stop(grace => 0.6) from the host loop, the client idle');
    my $got = read_until_eof($a, 3);
    my $took = now() - $t0;
    chk_ok(got_eof($a), 'the idle client is dropped at the end of the grace');
    chk_between($took, 0.55, 1.3, sprintf('on time (%.2f s)', $took));
    chk_is($c->wait_cmd('embedded', 0, 2), 0, 'then detached');
    chk_between($c->ticks_over(0.3), 3, 8, 'the host loop runs on');
    $c->finish;
};

$CASE{destroy} = sub {
    my ($v, $be) = @_;
    my $c = start_case($v, $be);
    my @cl = map { client($c->port) } 1 .. 3;
    chk_ok(!grep({ !echo($_, 'x') } @cl), 'three clients answered');
    my $t0 = now();
    chk_is($c->cmd('destroy'), 1, 'destroy from the host loop');
    my $eof = 0;
    for (@cl) { read_until_eof($_, 2); $eof++ if got_eof($_) }
    chk_is($eof, 3, 'every client sees EOF');
    chk_between(now() - $t0, 0, 1, 'at once');
    chk_is($c->wait_cmd('embedded', 0, 2), 0, 'detached');
    chk_ok(!try_client($c->port, timeout => 1), 'the port is closed');
    chk_between($c->ticks_over(0.3), 3, 8, 'the host loop runs on');
    chk_is($c->cmd('ping'), 'pong', 'its socket too');
    $c->finish;     # (checks: no warnings)
};

$CASE{die} = sub {
    my ($v, $be) = @_;
    my $c = start_case($v, $be);
    my $a = client($c->port);
    my $b = client($c->port);
    chk_ok(echo($a, 'a') && echo($b, 'b'), 'two clients answered');
    print $a "die now\n";
    my $rest = read_until_eof($a, 3);
    chk_ok(got_eof($a), 'the connection whose data callback died is dropped');
    chk_is($rest, '', 'without a reply');
    chk_ok($c->srv->wait_event(qr/^error .*boom in data/, 2), 'the error callback got the die');
    chk_ok(echo($b, 'b2'), 'the other connection is still served');
    my $n = client($c->port);
    chk_ok(echo($n, 'n'), 'and a new one');
    chk_is($c->cmd('ping'), 'pong', 'the host loop runs on (its socket)');
    chk_between($c->ticks_over(0.3), 3, 8, '(its timer)');
    chk_is($c->cmd('embedded'), 1, 'still attached');
    close $_ for $b, $n;
    $c->finish;
};

$CASE{detach} = sub {
    my ($v, $be) = @_;
    my $c = start_case($v, $be);
    my $a = client($c->port);
    chk_ok(echo($a, 'a1'), 'a client answered');
    chk_is($c->cmd('detach'), 1, 'detach returns 1 when attached');
    chk_is($c->cmd('detach'), 0, 'and 0 when not');
    chk_is($c->cmd('glue'), 'none', '$server->{_embed} is gone');
    my $cb = $c->cmd('cb');
    chk_between($c->ticks_over(0.3), 3, 8, 'the host loop runs on (its timer)');
    print $a "a2\n";
    chk_ok(no_reply($a, 0.3), 'the open connection is not answered while detached');
    my $b = try_client($c->port, timeout => 2);
    chk_ok($b, 'a connect completes (the socket still listens)');
    print $b "b1\n" if $b;
    chk_ok(!$b || no_reply($b, 0.2), 'but gets no answer');
    chk_is($c->cmd('cb'), $cb, 'no callback ran while detached');
    chk_is($c->cmd('attach'), 1, 'attach again');
    chk_is(read_line($a, 3), "echo a2\n", 'the waiting line is answered');
    chk_is($b && read_line($b, 3), "echo b1\n", 'the waiting client is added and answered');
    chk_ok(echo($a, 'a3'), 'and served on');
    chk_is($c->cmd('embedded'), 1, 'attached');
    close $_ for grep defined, $a, $b;
    $c->finish;
};

$CASE{timer} = sub {
    my ($v, $be) = @_;
    my $c = start_case($v, $be);
    my $srv = $c->srv;
    for my $busy (0, 50) {
        my $t0 = now();
        my $name = $c->cmd("timer 0.3 $busy");
        chk_ok(defined $name, "a server timer made in a host callback"
                              . ($busy ? " after $busy ms of work there" : ''));
        $name = 'none' unless defined $name;
        $srv->wait_event(qr/^timer_fired $name /, 1.5);
        my ($ev) = $srv->grep_events(qr/^timer_fired $name /);
        my $at = $ev && $ev =~ / ([\d.]+)$/ ? $1 : undef;
        chk_between($at, 0.25, 1.0, 'fires on time with no traffic ('
                    . (defined $at ? "${at}s" : 'not within 1.5 s') . ')');
    }
    chk_is($c->cmd('embedded'), 1, 'still attached');
    $c->finish;
};

$CASE{idle} = sub {
    my ($v, $be) = @_;
    my $c = start_case($v, $be, idle_timeout => 0.5);
    my $idle = client($c->port);
    my $busy = client($c->port);
    chk_ok(echo($idle, 'i') && echo($busy, 'b'), 'two clients answered');
    my $t0 = now();
    my ($eof_at, $busy_ok) = (undef, 1);
    while (now() - $t0 < 1.3) {
        read_for($idle, 0.15);
        $eof_at = now() - $t0 if !defined $eof_at && got_eof($idle);
        $busy_ok = 0 unless echo($busy, 'b');
    }
    chk_between($eof_at, 0.45, 1.2, 'the idle client is dropped on time ('
                . (defined $eof_at ? sprintf('%.2fs', $eof_at) : 'not at all') . ')');
    chk_ok($busy_ok, 'the busy one is kept and answered');
    chk_ok($c->srv->count(qr/^remove/) >= 1, 'the remove callback ran');
    close $busy;
    $c->finish;
};

$CASE{slow} = sub {
    my ($v, $be) = @_;
    my $c = start_case($v, $be);
    my $a = client($c->port);
    # (once one is not answered, the rest would only wait: the case ends)
    my $b;
    {
        chk_ok(echo($a, 'one'), 'a client answered') or last;
        chk_ok(echo($a, 'slow 25'), 'a line whose callback works 25 ms answered') or last;
        chk_ok(echo($a, 'two'), 'the next line answered too') or last;
        chk_ok(echo($a, 'three'), 'and the next') or last;
        $b = client($c->port);
        chk_ok(echo($b, 'b'), 'a new client answered') or last;
    }
    chk_is($c->cmd('embedded'), 1, 'still attached');
    chk_is($c->cmd('ping'), 'pong', 'the host loop runs on');
    close $_ for grep defined, $a, $b;
    $c->finish;
};

# ------------------------------------------------------- without a loop

sub plain_daemon {
    my (%a) = @_;
    require IO::Socket::INET::Daemon;
    return IO::Socket::INET::Daemon->new(port => 0, host => '127.0.0.1', timeout => undef, %a);
}

sub plain {
    my ($be) = @_;
    my @log;
    my $d = plain_daemon(backend => $be, callback => {
        add  => sub { push @log, 'add'; 1 },
        data => sub { my ($io, $s, $l) = @_; $io->print("echo $l"); 1 },
    });
    my $t0 = now();
    chk_is($d->run_once(0), 1, 'run_once(0) with nothing to do: 1');
    chk_between(now() - $t0, 0, 0.1, 'at once');
    $t0 = now();
    chk_is($d->run_once, 1, 'run_once() (timeout 0): 1');
    chk_between(now() - $t0, 0, 0.1, 'at once');
    chk_is($d->next_timeout, undef, 'next_timeout: undef with nothing pending');

    my $fd = $d->fd;
    if ($be eq 'poll') {
        chk_is($fd, undef, 'fd: undef with the poll backend');
    } else {
        chk_like($fd, qr/^\d+$/, "fd: an integer ($be)");
        my $rin = '';
        vec($rin, $fd, 1) = 1;
        chk_is(scalar select(my $r0 = $rin, undef, undef, 0), 0, 'not readable with nothing to do');
    }

    # run_once(undef) waits for a client (a forked one, 0.3 s later)
    my $port = $d->sockport;
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if (!$pid) {
        Time::HiRes::sleep(0.3);
        my $s = TestISD::try_client($port);
        if ($s) { print $s "hi\n"; TestISD::read_line($s, 3) }
        POSIX::_exit(0);
    }
    if (defined $fd) {
        my $rin = '';
        vec($rin, $fd, 1) = 1;
        my $n = select(my $r = $rin, undef, undef, 3);   # (scalar: nfound)
        chk_is($n, 1, 'select reports fd readable when a client connects');
    }
    $t0 = now();
    my $rv = $d->run_once(undef);
    my $took = now() - $t0;
    chk_is($rv, 1, 'run_once(undef): 1');
    chk_between($took, defined $fd ? 0 : 0.2, 3, sprintf('it waited for the client (%.2f s)', $took));
    for (1 .. 100) { last if @log; $d->run_once(0.05) }
    chk_is("@log", 'add', 'the client was added');
    $d->run_once(0.05) for 1 .. 10;
    waitpid($pid, 0);

    # next_timeout
    my $t = $d->timer(after => 0.3, cb => sub { push @log, 'timer' });
    chk_between($d->next_timeout, 0.2, 0.3001, 'next_timeout ~0.3 after timer(after => 0.3)');
    $t->cancel;
    chk_is($d->next_timeout, undef, 'undef again once it is cancelled');
    my $d2 = plain_daemon(backend => $be, timeout => 2);
    $d2->listen;
    chk_between($d2->next_timeout, 1.9, 2.0001, 'next_timeout ~2 with timeout => 2 (tick), once listening');
    $d2->fd;
    chk_between($d2->next_timeout, 1.9, 2.0001, 'and after fd');
    my $d5 = plain_daemon(backend => $be);
    $d5->listen;
    my $t5 = $d5->timer(after => 0.3, cb => sub { });
    chk_between($d5->next_timeout, 0.2, 0.3001, 'a timer made before the first step: next_timeout ~0.3');
    undef $d5;
    $d2->stop;
    chk_is($d2->next_timeout, 0, 'next_timeout 0 after stop');
    chk_is($d2->run_once(0), 0, 'run_once: 0 after stop');
    chk_is($d2->run_once(0), 1, '1 again on the next (it was called again)');
    undef $d2;

    # croaks
    my $err;
    $d->callback(tick => sub { eval { $_[1]->run_once(0) }; $err = $@; $_[1]->callback(tick => undef) });
    $d->run_once(0);
    chk_like($err, qr/run_once: already running/, 'run_once from a callback croaks "already running"');
    my $d3 = plain_daemon(backend => $be);
    $d3->timer(after => 0, cb => sub { eval { $_[0]->run_once(0) }; $err = $@; $_[0]->stop });
    $err = undef;
    $d3->run;
    chk_like($err, qr/run_once: already running/, 'and from inside run');
    chk_ok(croaks(sub { $d->run_once(-1) }, qr/run_once: timeout: '?-1'? is not a number/),
           'a negative timeout croaks naming it') or chk_diag($@);
    chk_ok(croaks(sub { $d->run_once('soon') }, qr/run_once: timeout: '?soon'? is not/),
           'a word too') or chk_diag($@);
    chk_ok(croaks(sub { $d->attach('Nope') }, qr/attach: loop: 'Nope' is not one of/),
           "attach('Nope') croaks naming it") or chk_diag($@);
    chk_ok(croaks(sub { $d->attach('EV', bogus => 1) }, qr/unknown option 'bogus'/),
           'attach with an unknown option croaks naming it') or chk_diag($@);
    chk_ok(!$d->{_embed}, 'and leaves nothing attached');
    chk_is($d->detach, 0, 'detach when not attached: 0');
    my $here = __FILE__;
    chk_ok(croaks(sub { $d->attach('Nope') }, qr/at \Q$here\E line \d+/),
           'the croak names the line of the call') or chk_diag($@);
    chk_ok(croaks(sub { $d->attach('EV', bogus => 1) }, qr/at \Q$here\E line \d+/),
           'that one too') or chk_diag($@);
    # a failed attach leaves an attachment in place as it was
    chk_ok(eval { $d->attach('EV'); 1 }, "attach('EV')") or chk_diag($@);
    my $glue = $d->{_embed};
    chk_ok(!eval { $d->attach('EV', bogus => 1); 1 }, 'then attach with an unknown option croaks');
    chk_ok($d->{_embed} && $glue && $d->{_embed} == $glue, 'and the attachment is still there');
    chk_is($d->detach, $glue ? 1 : 0, 'detach: 1 when attached');

    # run_once when it cannot listen
    my $busy = plain_daemon(backend => $be);
    $busy->listen;
    my $d4 = plain_daemon(backend => $be, port => $busy->sockport);
    local $@;
    my @r = $d4->run_once(0);
    chk_ok(!$r[0], 'run_once: false when it cannot listen');
    chk_like($@, qr/\S/, '$@ says why') ;
}

# attach(NAME) in a program that has loaded nothing of that loop: the glue
# loads what it needs ("Loads POE when attached", ...).
sub load_case {
    my ($v) = @_;
    $ENV{$_} = $v->{env}{$_} for keys %{ $v->{env} || {} };
    my $d = plain_daemon();
    (my $f = "$v->{module}.pm") =~ s{::}{/}g;
    chk_ok(!$INC{$f}, "$v->{module} is not loaded yet");
    my $ok = eval { $d->attach($v->{attach}); 1 };
    chk_ok($ok, "attach('$v->{attach}') loads what it needs") or chk_diag($@);
    chk_is($d->detach, $ok ? 1 : 0, 'detach');
    POE::Kernel->run if $INC{'POE/Kernel.pm'} && defined &POE::Kernel::run;   # (its END warning)
}

# The glue's POD sends readers to IO::Socket::INET::Daemon/EMBEDDING (and
# its run_once, fd, next_timeout, attach): that section must exist.
sub doc_case {
    my $pm = $INC{'IO/Socket/INET/Daemon.pm'} || 'blib/lib/IO/Socket/INET/Daemon.pm';
    open my $fh, '<', $pm or return chk_ok(0, "read $pm: $!");
    my $pod = do { local $/; <$fh> };
    chk_like($pod, qr/^=head\d EMBEDDING\b/m, 'IO::Socket::INET::Daemon has an EMBEDDING section (linked from Embed*.pm)');
    for my $m (qw(run_once fd next_timeout attach detach)) {
        chk_like($pod, qr/^=(?:head\d|item) +(?:\$\w+->)?$m\b/m, "$m is documented there");
    }
}

# ---------------------------------------------------------------- order

my @cases;
for my $be (@BACKENDS) {
    push @cases, ["plain ($be): run_once, fd, next_timeout, croaks", sub { plain($be) }];
}
push @cases, ['doc: the EMBEDDING section and its methods', \&doc_case];
for my $v (@LOOPS) {
    push @cases, ["load: attach('$v->{attach}') with nothing of $v->{name} loaded", sub { load_case($v) }];
}
for my $name (qw(serve slow stop grace grace-end destroy die detach timer idle)) {
    for my $v (@LOOPS) {
        for my $be (@BACKENDS) {
            push @cases, ["$name: $v->{name} ($be)", sub { $CASE{$name}->($v, $be) }];
        }
    }
}
@cases = grep { $_->[0] =~ /$ENV{ISD_EMBED_ONLY}/ } @cases if $ENV{ISD_EMBED_ONLY};

my $t0 = now();
run_cases($JOBS, @cases);
note(sprintf '%d cases in %.1f s', scalar @cases, now() - $t0);

done_testing();
