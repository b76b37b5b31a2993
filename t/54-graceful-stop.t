#!perl
# $server->stop(grace => SECONDS) (new in 1.02): a server child whose
# $SIG{TERM} calls it stops accepting at once (a new client is refused)
# and serves its open connections on; run returns once every client has
# closed (remove called for each), or at the deadline, where the ones still
# open get remove and are closed with their queued output delivered;
# grace => 0 removes every connection at once; timers keep firing during the
# grace; a plain stop ends it at once; a second stop(grace => ...) keeps the
# earlier (or a sooner) deadline; bad arguments croak, naming the method; a
# later run listens anew and serves; UDP listeners are closed too.  The
# servers listen in the child (TestISD::start_server), so that the test
# process holds no copy of a listening socket that would go on accepting.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use TestISD;
use Test::More;
use Errno ();
use IO::Select ();
use IO::Socket::INET ();
use POSIX ();
use Scalar::Util ();
use IO::Socket::INET::Daemon;

my $D = 'IO::Socket::INET::Daemon';
my $DG = 'IO::Socket::INET::Daemon::Datagram';
my $HOLD = 0.3;     # how long "nothing happens yet" is watched

# ------------------------------------------------------------------ servers

# In the server child.  TCP lines: "big N" (a reply of N x's and "\n"),
# "stop" (a plain stop), "kept" (print to the Datagram $io kept from the
# last UDP datagram); anything else, TCP or UDP, is echoed.
our $KEPT;
sub data {
    my ($io, $d, $line) = @_;
    (my $cmd = $line) =~ s/\n\z//;
    if (ref $io eq $DG) {
        $KEPT = $io;
        $io->print($line);
    }
    elsif ($cmd =~ /\Abig (\d+)\z/) {
        my $ok = $io->print('x' x $1, "\n");
        log_event('big %d %d', $io->peerport, $ok ? 1 : 0);
    }
    elsif ($cmd eq 'stop') {
        $io->print("stopping\n");
        $d->stop;
    }
    elsif ($cmd eq 'kept') {
        $! = 0;
        my $ok = $KEPT ? $KEPT->print('late') : undef;
        log_event('kept %d %d', $ok ? 1 : 0, $! + 0);
        $io->print("kept\n");
    }
    else {
        $io->print($line);
    }
    return 1;
}

my %CB = (
    data   => \&data,
    add    => sub { log_event('add %d', $_[0]->peerport); 1 },
    remove => sub { log_event('remove %d %d', $_[0]->peerport, $_[0]->pending) },
    error  => sub { log_event('error %s', $_[2]) },
);

# A server child.  TERM: stop(grace => $o{grace}); USR1: stop(grace =>
# $o{grace2}); USR2: a plain stop.  Each logs "NAME" before and "NAME done"
# after.  timer => 1: a timer every 0.1 s logs "timer".  again => 1: after
# run returns, run once more.  run logs "run_returned RV TIME".  pause =>
# SECONDS: then wait that long before the daemon is dropped (destroyed),
# logging "destroying".
sub gserver {
    my ($be, %o) = @_;
    my %x = map { $_ => delete $o{$_} } grep { exists $o{$_} } qw(grace grace2 timer again pause);
    return start_server(
        backend  => $be,
        timeout  => 1,
        callback => {%CB},
        child_deadline => 20,
        %o,
        child_init => sub {
            Scalar::Util::weaken(my $d = $_[0]);    # (no cycle: the child destroys it at the end)
            $SIG{__WARN__} = sub { log_event('warn %s', $_[0]) };
            $SIG{TERM} = sub {
                log_event('term %.3f', now());
                $d->stop(grace => $x{grace});
                log_event('term done');
            };
            $SIG{USR1} = sub {
                log_event('usr1');
                $d->stop(grace => $x{grace2});
                log_event('usr1 done');
            };
            $SIG{USR2} = sub {
                log_event('usr2');
                $d->stop;
                log_event('usr2 done');
            };
            $d->timer(every => 0.1, cb => sub { log_event('timer') }) if $x{timer};
            log_event('addr %s', join ' ', $d->addresses);
        },
        child_run => sub {
            my ($d) = @_;
            my $rv = $d->run;
            log_event('run_returned %d %.3f', $rv ? 1 : 0, now());
            if ($x{again}) {
                log_event('run again');
                $rv = $d->run;
                log_event('run2_returned %d', $rv ? 1 : 0);
            }
            if ($x{pause}) {
                Time::HiRes::sleep($x{pause});
                log_event('destroying');
            }
        },
    );
}

sub signal {
    my ($srv, $sig) = @_;
    my $name = lc $sig;
    kill $sig, $srv->pid or die "kill $sig: $!\n";
    $srv->wait_event(qr/^\Q$name\E done$/, 5) or die "the server did not handle $sig\n";
}

# the index of the first event matching $re (undef: none)
sub at {
    my ($srv, $re) = @_;
    my @e = $srv->events;
    for my $i (0 .. $#e) { return $i if $e[$i] =~ $re }
    return undef;
}

sub before {
    my ($srv, $re1, $re2) = @_;
    my ($a, $b) = (at($srv, $re1), at($srv, $re2));
    return defined $a && defined $b && $a < $b;
}

sub quiet {
    my ($srv, $what) = @_;
    my @bad = $srv->grep_events(qr/^(?:warn|error) /);
    is(scalar @bad, 0, "$what: no warning and no error in the server") or diag(join "\n", @bad);
}

sub connected_clients {
    my ($srv, $n) = @_;
    my @c = map { client($srv) } 1 .. $n;
    for my $i (0 .. $#c) {
        echo_ping($c[$i], "hello $i") or die "client $i: no echo\n";
    }
    return @c;
}

sub free_port {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 1, Proto => 'tcp')
        or die "free_port: $@";
    return $s->sockport;
}

# ------------------------------------------------------------ per backend

for my $be (backends()) {
    isd_subtest "grace: open clients served, new ones refused, run returns when all closed, backend $be" => sub {
        my $srv = gserver($be, grace => 10);
        my ($c1, $c2) = connected_clients($srv, 2);
        my ($p1, $p2) = map { $_->sockport } $c1, $c2;
        signal($srv, 'TERM');
        ok(echo_ping($c1, 'after term'), 'after TERM an open client\'s new line is answered');
        my $new = try_client($srv->port, timeout => 2);
        ok(!$new, 'a new connection is refused') or diag('connected to ' . $new->peerport);
        ok(echo_ping($c2, 'me too'), 'the other open client is answered too');
        close $c1;
        ok($srv->wait_event(qr/^remove $p1 /, 3), 'the first client closes: its remove');
        Time::HiRes::sleep($HOLD);
        is($srv->count(qr/^run_returned /), 0, 'run has not returned while the other is open');
        ok(echo_ping($c2, 'still'), 'and serves it on');
        close $c2;
        ok($srv->wait_event(qr/^run_returned /, 5), 'the last client closes: run returns (long before the 10 s grace)');
        is(($srv->grep_events(qr/^run_returned /))[0] =~ /^run_returned (\d)/ ? $1 : undef, 1, 'run returned true');
        is($srv->count(qr/^remove $p1 /), 1, 'remove once for the first client');
        is($srv->count(qr/^remove $p2 /), 1, 'and once for the second');
        ok(before($srv, qr/^remove $p2 /, qr/^run_returned /), 'both before run returned');
        ok($srv->wait_event(qr/^child_done$/, 5), 'the child finished');
        is($srv->wait_exit(5), 0, 'and exited 0');
        quiet($srv, 'grace');
    };

    isd_subtest "grace: the deadline removes what is still open, its output delivered; timers fire, backend $be" => sub {
        my $G = 1;
        my $BIG = 8 * 1048576;
        my $srv = gserver($be, grace => $G, timer => 1, pause => 1.5);
        my ($c1, $c2) = connected_clients($srv, 2);
        my ($p1, $p2) = map { $_->sockport } $c1, $c2;
        print $c1 "big $BIG\n";
        ok($srv->wait_event(qr/^big $p1 /, 5), 'the server printed a big reply to client 1 (which does not read)');
        is(($srv->grep_events(qr/^big $p1 /))[0], "big $p1 1", '... print returned true');
        signal($srv, 'TERM');
        ok(echo_ping($c2, 'during'), 'during the grace client 2 is served');
        Time::HiRes::sleep($HOLD);
        is($srv->count(qr/^remove /), 0, 'no remove yet');
        is($srv->count(qr/^run_returned /), 0, 'run has not returned');
        ok($srv->wait_event(qr/^run_returned /, $G + 5), 'at the deadline run returns');
        my ($r1) = $srv->grep_events(qr/^remove $p1 /);
        ok(defined $r1, 'client 1 got remove');
        ok(defined $r1 && $r1 =~ /^remove $p1 (\d+)$/ && $1 > 0, "... with output still queued ($r1)")
            if defined $r1;
        is($srv->count(qr/^remove $p2 /), 1, 'client 2 got remove');
        ok(before($srv, qr/^remove $p1 /, qr/^run_returned /) && before($srv, qr/^remove $p2 /, qr/^run_returned /),
           'both before run returned');
        ok(before($srv, qr/^term /, qr/^remove /), 'and after the TERM');
        my ($t0) = map { /^term (\S+)/ } $srv->grep_events(qr/^term \d/);
        my ($t1) = map { /^run_returned \d (\S+)/ } $srv->grep_events(qr/^run_returned /);
        cmp_ok($t1 - $t0, '>=', $G - 0.2, "run returned no sooner than the grace ($G s) after TERM");
        my @e = $srv->events;
        my ($ti, $ri) = (at($srv, qr/^term /), at($srv, qr/^run_returned /));
        my $timers = grep { $_ eq 'timer' } @e[$ti .. $ri];
        cmp_ok($timers, '>=', 3, "the 0.1 s timer kept firing during the grace ($timers times)");

        my $got = read_n($c1, $BIG + 1, 15);
        my $destroyed = $srv->count(qr/^destroying$/);
        is(length $got, $BIG + 1, 'client 1 gets all of its queued reply');
        # (the POD: run returns at the deadline; what those connections
        # still have to send is delivered by destroy, for up to linger)
        is($destroyed, 1, 'delivered by destroy (the child waits 1.5 s after run returned, then drops the daemon)');
        ok($got eq ('x' x $BIG) . "\n", '... intact');
        read_until_eof($c1, 5);
        ok(got_eof($c1), '... then end of file');
        read_until_eof($c2, 5);
        ok(got_eof($c2), 'client 2 gets end of file');
        is($srv->wait_exit(5), 0, 'the child exited 0');
        quiet($srv, 'deadline');
    };

    isd_subtest "grace => 0, backend $be" => sub {
        my $srv = gserver($be, grace => 0);
        my ($c1, $c2) = connected_clients($srv, 2);
        my ($p1, $p2) = map { $_->sockport } $c1, $c2;
        signal($srv, 'TERM');
        ok($srv->wait_event(qr/^run_returned /, 3), 'run returns');
        is($srv->count(qr/^remove $p1 /), 1, 'client 1 got remove');
        is($srv->count(qr/^remove $p2 /), 1, 'client 2 got remove');
        ok(before($srv, qr/^remove $p1 /, qr/^run_returned /) && before($srv, qr/^remove $p2 /, qr/^run_returned /),
           'before run returned');
        for my $c ($c1, $c2) {
            read_until_eof($c, 3);
            ok(got_eof($c), 'the client gets end of file');
        }
        quiet($srv, 'grace 0');
    };

    isd_subtest "a plain stop during the grace ends it at once, backend $be" => sub {
        my $srv = gserver($be, grace => 10);
        my ($c1) = connected_clients($srv, 1);
        signal($srv, 'TERM');
        ok(echo_ping($c1, 'in grace'), 'in the grace');
        signal($srv, 'USR2');
        ok($srv->wait_event(qr/^run_returned /, 3), 'a plain stop: run returns (not after 10 s)');
        is($srv->count(qr/^remove /), 0, 'remove was not called before run returned (a plain stop leaves connections open)');
        ok(before($srv, qr/^usr2 done$/, qr/^run_returned /), 'after the stop');
        quiet($srv, 'plain stop');
    };

    isd_subtest "a second stop(grace => ...) keeps the earlier deadline or a sooner one, backend $be" => sub {
        my $srv = gserver($be, grace => 1, grace2 => 30);
        my ($c1) = connected_clients($srv, 1);
        signal($srv, 'TERM');
        signal($srv, 'USR1');
        ok(echo_ping($c1, 'in grace'), 'grace 1, then grace 30: in the grace');
        ok($srv->wait_event(qr/^run_returned /, 5), 'run returns at the first deadline (not 30 s later)');
        is($srv->count(qr/^remove /), 1, 'the open client got remove');
        quiet($srv, 'second stop');

        $srv = gserver($be, grace => 30, grace2 => 0.5);
        ($c1) = connected_clients($srv, 1);
        signal($srv, 'TERM');
        ok(echo_ping($c1, 'in grace'), 'grace 30: in the grace');
        signal($srv, 'USR1');
        ok($srv->wait_event(qr/^run_returned /, 5), 'then grace 0.5: run returns at the sooner deadline');
        is($srv->count(qr/^remove /), 1, 'the open client got remove');
        quiet($srv, 'sooner');
    };

    isd_subtest "after a graceful stop run listens anew, backend $be" => sub {
        my $port = free_port();
        my $srv = gserver($be, grace => 10, again => 1, port => $port);
        is($srv->port, $port, "the server listens on the port given ($port)");
        my ($c1) = connected_clients($srv, 1);
        signal($srv, 'TERM');
        ok(!try_client($port, timeout => 2), 'during the grace: refused');
        close $c1;
        ok($srv->wait_event(qr/^run again$/, 5), 'the client closes: run returns, and is called again');
        my $c;
        ok(wait_until(sub { $c = try_client($port, timeout => 2) }, 5, 0.05), 'a new client connects to the same port')
            or die "no second run\n";
        ok(echo_ping($c, 'second run'), 'and is served');
        print $c "stop\n";
        is(read_line($c, 3), "stopping\n", 'stop');
        ok($srv->wait_event(qr/^run2_returned 1$/, 5), 'the second run returns true');
        is($srv->count(qr/^add /), 2, 'two clients in all');
        quiet($srv, 'run again');
    };

    isd_subtest "a graceful stop closes UDP listeners too, backend $be" => sub {
        my $srv = gserver($be, grace => 10, listen => ['127.0.0.1:0', 'udp:127.0.0.1:0']);
        my ($addr) = $srv->grep_events(qr/^addr /);
        my ($pu) = $addr =~ /udp:127\.0\.0\.1:(\d+)/;
        ok($pu, "a UDP listener ($addr)") or die "no udp port\n";
        my ($c) = connected_clients($srv, 1);
        my $u = IO::Socket::INET->new(Proto => 'udp', PeerAddr => '127.0.0.1', PeerPort => $pu)
            or die "udp client: $@";
        defined send($u, 'dgram', 0) or die "send: $!";
        my $sel = IO::Select->new($u);
        my $r;
        recv($u, $r, 100, 0) if $sel->can_read(3);
        is($r, 'dgram', 'UDP is served before the stop');
        my $plain = IO::Socket::INET->new(Proto => 'udp', LocalAddr => '127.0.0.1', LocalPort => $pu);
        ok(!$plain, 'its port is taken');
        undef $plain;

        signal($srv, 'TERM');
        $plain = IO::Socket::INET->new(Proto => 'udp', LocalAddr => '127.0.0.1', LocalPort => $pu);
        ok($plain, 'during the grace the UDP port is free: the socket is closed') or diag("bind: $!");
        undef $plain;
        ok(echo_ping($c, 'tcp in grace'), 'the TCP client is served on');
        print $c "kept\n";
        is(read_line($c, 3), "kept\n", 'print to the Datagram $io kept from before the stop');
        is(($srv->grep_events(qr/^kept /))[0] =~ /^kept (\d) (\d+)/ ? $1 : undef, 0, '... returns false');
        close $c;
        ok($srv->wait_event(qr/^run_returned /, 5), 'the client closes: run returns');
        is($srv->count(qr/^remove /), 1, 'remove for the TCP client (none for UDP)');
        quiet($srv, 'udp');
    };
}

# ------------------------------------------------------------------ croaks

subtest 'stop: bad arguments croak, naming the method' => sub {
    my $d = $D->new(listen => '127.0.0.1:0');
    my $M = qr/\AIO::Socket::INET::Daemon::stop: /;
    my @bad = (
        [[grace => -1],    qr/grace: '-1' is not a number of seconds/],
        [[grace => 'abc'], qr/grace: 'abc' is not a number of seconds/],
        [[grace => undef], qr/grace: undef is not a number of seconds/],
        [[grace => ''],    qr/grace: '' is not a number of seconds/],
        [[bogus => 1],     qr/unknown option 'bogus'/],
        [['grace'],        qr/options come in pairs/],
        [[grace => 1, 'x'], qr/options come in pairs/],
    );
    for my $b (@bad) {
        my ($args, $re) = @$b;
        my $name = join ', ', map { defined $_ ? "'$_'" : 'undef' } @$args;
        ok(!eval { $d->stop(@$args); 1 }, "stop($name) croaks");
        like($@, $M, '... naming the method');
        like($@, $re, '... and why') or diag($@);
    }
    for my $g (0, 2.5, '1', '0.25', '1e1') {
        ok(eval { $d->stop(grace => $g); 1 }, "stop(grace => '$g') is accepted") or diag($@);
    }
    ok(eval { $d->stop; 1 }, 'stop() is accepted');
    ok(!eval { $d->stop(grace => 'nan'); 1 }, "stop(grace => 'nan') croaks");
    $d->destroy;
};

done_testing;
