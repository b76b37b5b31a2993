#!perl
# Idle timeouts (issue 12): with idle_timeout => SECONDS a connection that
# sends nothing for that long is ended: error($io, $server, "idle timeout
# (no input for SECONDS s) from HOST:PORT"), then remove, then what was
# queued for it (and what error and remove printed) is delivered and it is
# closed.  Only input counts as activity; a client sending a line every
# 0.2 s stays; $io->idle_timeout(S) changes it for one connection (0
# disables) and returns the previous value; without the option nothing
# times out; a paused connection's idle clock stops and restarts at resume;
# one held at high water counts from the last time it took some output;
# bad values croak in new; 2,000 idle connections cost no CPU.
#
# Times are taken in the server process (log_event with Time::HiRes::time);
# bounds are loose: not before 0.4 s for 0.5, within 1.5 s.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib", "$FindBin::Bin/../xt/lib";
use TestISD qw(:DEFAULT ask);
use ISDStress qw(proc_cpu_ticks clk_tck asan_build raise_nofile);
use Test::More;
use IO::Select ();
use IO::Socket::INET ();
use Socket qw(SOL_SOCKET SO_RCVBUF SO_SNDBUF inet_aton sockaddr_in);
use Time::HiRes ();

my $BIG = 512 * 1024;      # queued output, under the default high_water (1 MiB)

# ------------------------------------------------------------- child side

sub error_cb {
    my ($io, $d, $msg) = @_;
    log_event('error %s %.6f %s', defined $io ? $io->peerport : 'undef', TestISD::now(), $msg);
    $io->print("E:$msg\n") if $io;
}

sub remove_cb {
    my ($io) = @_;
    log_event('remove %s %.6f', $io->peerport, TestISD::now());
    $io->print("bye\n");
}

sub add_cb {
    my ($io) = @_;
    log_event('add %s %.6f', $io->peerport, TestISD::now());
    $io->print("welcome\n");
    1;
}

sub by_port {
    my ($d, $port) = @_;
    my ($io) = grep { $_->peerport == $port } $d->connections;
    return $io;
}

# data: logs "data PORT T LINE" and runs a command, else echoes "R:LINE".
sub data_cb {
    my ($io, $d, $line) = @_;
    my $p = $io->peerport;
    log_event('data %s %.6f %s', $p, TestISD::now(), $line);
    my ($cmd, @a) = split ' ', $line;
    $cmd = '' unless defined $cmd;
    if ($cmd eq 'feed') {                   # tick prints to it from now on
        ${*$io}{feed} = 1;
        $io->print("feeding\n");
    }
    elsif ($cmd eq 'big') {                 # queue output it does not read
        # a small kernel buffer (no autotuning: it would take megabytes),
        # so that the output stays queued in the server
        $io->setsockopt(SOL_SOCKET, SO_SNDBUF, 4096);
        $io->print('x' x ($BIG - 1), "\n");
        $io->print("big-end\n");
        log_event('pending %s %d', $p, $io->pending);
    }
    elsif ($cmd eq 'it') {
        my $prev = $io->idle_timeout($a[0]);
        $io->print('prev=' . (defined $prev ? $prev : 'undef') . "\n");
    }
    elsif ($cmd eq 'get') {
        my $cur = $io->idle_timeout;
        $io->print('cur=' . (defined $cur ? $cur : 'undef') . "\n");
    }
    elsif ($cmd eq 'pause') {
        my $r = $io->pause;
        log_event('paused %s %.6f', $p, TestISD::now());
        $io->print('paused=' . ($r ? 1 : 0) . "\n");
    }
    elsif ($cmd eq 'resume') {
        my $other = by_port($d, $a[0]);
        my $r = $other ? $other->resume : 0;
        log_event('resumed %s %.6f', $a[0], TestISD::now());
        $io->print('resumed=' . ($r ? 1 : 0) . "\n");
    }
    elsif ($cmd eq 'count') {
        my @c = $d->connections;
        $io->print('count=' . scalar(@c) . "\n");
    }
    else {
        $io->print("R:$line");
    }
    return 1;
}

sub tick_cb {
    my (undef, $d) = @_;
    $_->print("f\n") for grep { ${*$_}{feed} } $d->connections;
}

sub iserver {
    my (%a) = @_;
    return start_server(
        child_deadline => 25,
        callback => { add => \&add_cb, data => \&data_cb, remove => \&remove_cb,
                      error => \&error_cb, tick => \&tick_cb },
        %a,
    );
}

# ------------------------------------------------------------ parent side

sub fmt { defined $_[0] ? sprintf('%.3f', $_[0]) : 'undef' }

# the time of the first event "WHAT PORT T ..." (optionally the one whose rest matches $re)
sub t_of {
    my ($srv, $what, $port, $re) = @_;
    for my $e ($srv->events) {
        next unless $e =~ /^\Q$what\E \Q$port\E (\d+\.\d+)(?: (.*))?\z/s;
        next if $re && !(defined $2 && $2 =~ $re);
        return $1;
    }
    return undef;
}

sub last_t_of {
    my ($srv, $what, $port) = @_;
    my $t;
    for my $e ($srv->events) {
        $t = $1 if $e =~ /^\Q$what\E \Q$port\E (\d+\.\d+)/;
    }
    return $t;
}

sub errors_for {
    my ($srv, $port) = @_;
    return map { /^error \Q$port\E \S+ (.*)\z/s ? $1 : () } $srv->events;
}

sub in_range {
    my ($v, $lo, $hi, $what) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    ok(defined $v && $v >= $lo && $v <= $hi, sprintf '%s: %s s (in [%.2f, %.2f])', $what, fmt($v), $lo, $hi);
}

# still open: nothing arrives and no EOF within $secs (output of the
# server drained first)
sub still_open {
    my ($c) = @_;
    read_for($c, 0.05);
    return !got_eof($c);
}

sub small_rcvbuf_client {
    my ($port) = @_;
    my $s = IO::Socket::INET->new(Proto => 'tcp') or die "socket: $!";
    setsockopt($s, SOL_SOCKET, SO_RCVBUF, pack('i', 4096)) or die "SO_RCVBUF: $!";
    connect($s, sockaddr_in($port, inet_aton('127.0.0.1'))) or die "connect: $!";
    return $s;
}

sub server_ok {
    my ($srv) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    ok($srv->alive, 'the server is alive');
    is($srv->stderr, '', 'the server printed nothing on stderr');
}

my $IDLE_RE = qr/^idle timeout \(no input for 0\.5 s\) from 127\.0\.0\.1:(\d+)\z/;

for my $be (backends()) {

    # ------------------------------------------------- silent vs. active
    isd_subtest "a silent client is ended, an active one stays, backend $be" => sub {
        my $srv = iserver(backend => $be, idle_timeout => 0.5, timeout => 0.1);
        my $S = client($srv);                      # silent
        my $F = client($srv);                      # only output flows to it
        my $P = client($srv);                      # a line every 0.2 s
        my $B = small_rcvbuf_client($srv->port);   # output queued, not read
        my ($ps, $pf, $pp, $pb) = map { $_->sockport } $S, $F, $P, $B;
        is(read_line($F), "welcome\n", 'F welcomed');
        is(ask($F, 'feed'), 'feeding', 'F is fed by tick');
        is(read_line($B), "welcome\n", 'B welcomed');
        print $B "big\n";
        is(read_line($P), "welcome\n", 'P welcomed');

        my $t0 = now();
        my ($sent, $ok) = (0, 0);
        while (now() - $t0 < 1.5) {
            $sent++;
            $ok++ if (ask($P, "ping $sent", 1) // '') eq "R:ping $sent";
            Time::HiRes::sleep(0.2);
        }
        is($ok, $sent, "P: every line answered ($ok of $sent over 1.5 s)");
        ok(still_open($P), 'P still open');
        is(scalar(errors_for($srv, $pp)), 0, 'no error for P while it sends');

        # S: silent from the start
        my $t_add = t_of($srv, 'add', $ps);
        my $t_err = t_of($srv, 'error', $ps);
        my $t_rem = t_of($srv, 'remove', $ps);
        ok(defined $t_err, 'S: error called');
        my ($msg) = errors_for($srv, $ps);
        like($msg // '', qr/^idle timeout/, 'S: the message says "idle timeout"');
        like($msg // '', qr/\b127\.0\.0\.1:$ps\b/, "S: and names the client's address");
        like($msg // '', $IDLE_RE, 'S: "idle timeout (no input for 0.5 s) from 127.0.0.1:PORT"');
        in_range(defined $t_err && defined $t_add ? $t_err - $t_add : undef, 0.4, 1.5, 'S: ended after');
        ok(defined $t_rem && defined $t_err && $t_rem >= $t_err, 'S: remove called after error');
        is($srv->count(qr/^remove $ps /), 1, 'S: remove called once');
        is($srv->count(qr/^data $ps /), 0, 'S: data never called');
        my $got = read_until_eof($S, 3);
        like($got, qr/\Awelcome\nE:idle timeout[^\n]*\nbye\n\z/,
             'S got the welcome, what error and remove printed, in order');
        ok(got_eof($S), 'S: then EOF');

        # F: output every 0.1 s does not keep it alive
        my $t_feed = t_of($srv, 'data', $pf);
        $t_err = t_of($srv, 'error', $pf);
        in_range(defined $t_err && defined $t_feed ? $t_err - $t_feed : undef, 0.4, 1.5,
                 'F (output only) ended after its last input');
        $got = read_until_eof($F, 3);
        like($got, qr/\A(?:f\n){2,}E:idle timeout[^\n]*\n(?:f\n)?bye\n\z/,
             'F got tick output meanwhile, then the error and bye lines')
            or diag("F got: $got");
        ok(got_eof($F), 'F: then EOF');

        # B: queued output is still delivered in full
        my ($pend) = map { /^pending $pb (\d+)$/ ? $1 : () } $srv->events;
        ok(defined $pend && $pend > 100_000, 'B: output is queued in the server (pending ' . ($pend // 'undef') . ')');
        my $t_big = t_of($srv, 'data', $pb);
        $t_err = t_of($srv, 'error', $pb);
        in_range(defined $t_err && defined $t_big ? $t_err - $t_big : undef, 0.4, 1.5,
                 'B (not reading its output) ended after');
        $got = read_until_eof($B, 5);
        ok(substr($got, 0, $BIG) eq 'x' x ($BIG - 1) . "\n", "B: all $BIG bytes queued before the timeout delivered")
            or diag('got ' . length($got) . ' bytes');
        like(substr($got, $BIG), qr/\Abig-end\nE:idle timeout[^\n]*\nbye\n\z/,
             'B: then the error and bye lines');
        ok(got_eof($B), 'B: then EOF');

        # P goes silent now: ended about 0.5 s after its last line
        ok($srv->wait_event(qr/^error $pp /, 2.5), 'P ended once silent');
        my $t_last = last_t_of($srv, 'data', $pp);
        $t_err = t_of($srv, 'error', $pp);
        in_range(defined $t_err && defined $t_last ? $t_err - $t_last : undef, 0.4, 1.5,
                 'P: ended after its last line by');
        read_until_eof($P, 3);
        ok(got_eof($P), 'P: EOF');

        my $n = client($srv);
        is(read_line($n), "welcome\n", 'a new client is served');
        is(ask($n, 'hi'), 'R:hi', 'and answered');
        close $_ for $S, $F, $P, $B, $n;
        server_ok($srv);
        $srv->stop;
    };

    # ------------------------------------------------ per connection
    isd_subtest "\$io->idle_timeout per connection, backend $be" => sub {
        my $srv = iserver(backend => $be, idle_timeout => 0.5, timeout => undef);
        my %c = map { $_ => client($srv) } qw(Z S L D);      # 0, 0.3, 1, default
        my %p = map { $_ => $c{$_}->sockport } keys %c;
        is(read_line($c{$_}), "welcome\n", "$_ welcomed") for sort keys %c;
        my %set = (Z => 0, S => 0.3, L => 1);
        for my $k (sort keys %set) {
            my $r = ask($c{$k}, "it $set{$k}");
            ok(defined $r && $r =~ /^prev=([\d.]+)$/ && abs($1 - 0.5) < 0.0005,
               "$k: idle_timeout($set{$k}) returns the previous value 0.5 (" . ($r // 'undef') . ')');
        }
        my %want = (Z => 0, S => 0.3, L => 1, D => 0.5);
        for my $k (sort keys %want) {
            my $r = ask($c{$k}, 'get');
            ok(defined $r && $r =~ /^cur=([\d.]+)$/ && abs($1 - $want{$k}) < 0.0005,
               "$k: idle_timeout returns $want{$k} (" . ($r // 'undef') . ')');
        }
        # every clock restarted by 'get'
        ok($srv->wait_event(qr/^error $p{D} /, 2), 'D (default 0.5) ended');
        ok($srv->wait_event(qr/^error $p{S} /, 0.1), 'S (0.3) ended');
        my %t_get = map { $_ => last_t_of($srv, 'data', $p{$_}) } keys %c;
        my %t_err = map { $_ => t_of($srv, 'error', $p{$_}) } keys %c;
        ok(defined $t_err{S} && defined $t_err{D} && $t_err{S} < $t_err{D}, 'S (0.3) ended before D (0.5)');
        in_range(defined $t_err{S} ? $t_err{S} - $t_get{S} : undef, 0.25, 1.5, 'S: idle_timeout(0.3) ended it after');
        in_range(defined $t_err{D} ? $t_err{D} - $t_get{D} : undef, 0.4, 1.5, 'D: ended after');
        like((errors_for($srv, $p{S}))[0] // '', qr/^idle timeout \(no input for 0\.3 s\) from 127\.0\.0\.1:$p{S}\z/,
             'S: the message names its own 0.3 s');
        Time::HiRes::sleep(0.2);
        is(scalar(errors_for($srv, $p{L})), 0, 'L (1) not ended when D was');
        ok($srv->wait_event(qr/^error $p{L} /, 2.5), 'L ended later');
        $t_err{L} = t_of($srv, 'error', $p{L});
        in_range(defined $t_err{L} ? $t_err{L} - $t_get{L} : undef, 0.9, 2.5, 'L: idle_timeout(1) ended it after');
        is(scalar(errors_for($srv, $p{Z})), 0, 'Z (0: disabled) not ended after ' . fmt(now() - $t_get{Z}) . ' s of silence');
        ok(still_open($c{Z}), 'Z still open');
        is(ask($c{Z}, 'hi'), 'R:hi', 'Z still served');
        for my $k (qw(S L D)) {
            read_until_eof($c{$k}, 3);
            ok(got_eof($c{$k}), "$k closed");
            is($srv->count(qr/^remove $p{$k} /), 1, "$k: remove once");
        }
        close $_ for values %c;
        server_ok($srv);
        $srv->stop;
    };

    # ------------------------------------------------ without the option
    isd_subtest "without idle_timeout nothing times out, backend $be" => sub {
        my $none = iserver(backend => $be, timeout => 0.1);
        my $zero = iserver(backend => $be, timeout => 0.1, idle_timeout => 0);
        my $n1 = client($none);
        my $n2 = client($none);
        my $z1 = client($zero);
        is(read_line($_), "welcome\n", 'welcomed') for $n1, $n2, $z1;
        my $r = ask($n2, 'it 0.3');
        ok(defined $r && $r =~ /^prev=(?:0|undef)$/, 'idle_timeout(0.3) on a server without the option: previous value none (' . ($r // 'undef') . ')');
        Time::HiRes::sleep(1.0);
        ok(still_open($n1), 'no idle_timeout: a client silent for 1 s stays');
        ok(still_open($z1), 'idle_timeout => 0: a client silent for 1 s stays');
        is(ask($n1, 'hi'), 'R:hi', 'and is served');
        is(ask($z1, 'hi'), 'R:hi', 'and is served');
        $r = ask($n1, 'get');
        ok(defined $r && $r =~ /^cur=(?:0|undef)$/, 'idle_timeout returns none (' . ($r // 'undef') . ')');
        $r = ask($z1, 'get');
        ok(defined $r && $r =~ /^cur=(?:0|undef)$/, 'idle_timeout => 0: returns none (' . ($r // 'undef') . ')');
        is(scalar($none->grep_events(qr/^error /)), 1, 'one error on the server without the option');
        is(scalar($zero->grep_events(qr/^error /)), 0, 'none on the one with 0');

        my $p2 = $n2->sockport;
        my $t_it  = last_t_of($none, 'data', $p2);
        my $t_err = t_of($none, 'error', $p2);
        in_range(defined $t_err && defined $t_it ? $t_err - $t_it : undef, 0.25, 1.0,
                 'but one connection given idle_timeout(0.3) is ended after');
        like((errors_for($none, $p2))[0] // '', qr/^idle timeout \(no input for 0\.3 s\) from 127\.0\.0\.1:$p2\z/,
             'with the idle timeout message');
        read_until_eof($n2, 3);
        ok(got_eof($n2), 'and closed');
        close $_ for $n1, $n2, $z1;
        server_ok($_) for $none, $zero;
        $_->stop for $none, $zero;
    };

    # ---------------------------------------------------------- paused
    isd_subtest "a paused connection is not timed out, backend $be" => sub {
        my $srv = iserver(backend => $be, idle_timeout => 0.5, timeout => undef);
        my $A = client($srv);
        my $pa = $A->sockport;
        is(read_line($A), "welcome\n", 'welcomed');
        is(ask($A, 'pause'), 'paused=1', 'paused ($io->pause true)');
        # (not a multiple of 0.5: a clock left running would end it early after resume)
        Time::HiRes::sleep(1.2);
        is(scalar(errors_for($srv, $pa)), 0, 'not ended while paused for 1.2 s');
        ok(still_open($A), 'still open');
        my $C = client($srv);
        is(read_line($C), "welcome\n", 'a control client');
        is(ask($C, "resume $pa"), 'resumed=1', 'resumed ($io->resume true)');
        my $t_res = t_of($srv, 'resumed', $pa);
        ok($srv->wait_event(qr/^error $pa /, 2.5), 'ended once silent after resume');
        my $t_err = t_of($srv, 'error', $pa);
        in_range(defined $t_err && defined $t_res ? $t_err - $t_res : undef, 0.4, 1.5,
                 'the idle clock restarted at resume: ended after');
        like((errors_for($srv, $pa))[0] // '', $IDLE_RE, 'the idle timeout message');
        my $got = read_until_eof($A, 3);
        like($got, qr/\AE:idle timeout[^\n]*\nbye\n\z/, 'A gets the error and bye lines');
        ok(got_eof($A), 'then EOF');
        close $_ for $A, $C;
        server_ok($srv);
        $srv->stop;
    };

    # ------------------------------------------------- held at high water
    # While its output is held above high_water the server does not read
    # from it; the idle clock then counts from the last time the client
    # took some of its output: one that neither sends nor reads is ended,
    # one that reads (slowly) is not.
    isd_subtest "held at high water: the clock counts from the client's last read, backend $be" => sub {
        my $srv = iserver(backend => $be, idle_timeout => 0.5, timeout => undef,
                          high_water => 65536);
        my $H1 = small_rcvbuf_client($srv->port);      # neither sends nor reads
        my $H2 = small_rcvbuf_client($srv->port);      # reads a little every 0.2 s
        my ($p1, $p2) = map { $_->sockport } $H1, $H2;
        is(read_line($_), "welcome\n", 'welcomed') for $H1, $H2;
        print $H1 "big\n";
        print $H2 "big\n";
        ok($srv->wait_event(qr/^pending $p2 /, 2), 'output queued');
        for my $p ($p1, $p2) {
            my ($pend) = map { /^pending $p (\d+)$/ ? $1 : () } $srv->events;
            ok(defined $pend && $pend > 65536, 'above high_water (pending ' . ($pend // 'undef') . ')');
        }
        my $t0 = now();
        my $took = 0;
        while (now() - $t0 < 1.3) {
            Time::HiRes::sleep(0.2);
            next unless IO::Select->new($H2)->can_read(0.5);
            my $n = sysread($H2, my $buf, 16384);      # one read: a little
            $took += $n if $n;
        }
        ok($took > 0 && $took < $BIG - 65536 - 65536,
           "H2 read $took bytes in 1.3 s, slowly: still above high_water");
        is(scalar(errors_for($srv, $p2)), 0, 'H2, taking some of its output every 0.2 s, is not ended');

        # H1 was ended meanwhile, held or not
        my $t_big = t_of($srv, 'data', $p1);
        my $t_err = t_of($srv, 'error', $p1);
        in_range(defined $t_err && defined $t_big ? $t_err - $t_big : undef, 0.4, 1.5,
                 'H1, held at high water but reading nothing, was ended after');
        like((errors_for($srv, $p1))[0] // '', $IDLE_RE, 'with the idle timeout message');
        my $got = read_until_eof($H1, 5);
        ok(substr($got, 0, $BIG) eq 'x' x ($BIG - 1) . "\n", 'H1 still gets all its queued output')
            or diag('got ' . length($got) . ' bytes');
        like(substr($got, $BIG), qr/\Abig-end\nE:idle timeout[^\n]*\nbye\n\z/, 'then the error and bye lines');
        ok(got_eof($H1), 'then EOF');

        # H2 reads the rest, then is silent: ended once it stops taking output
        $got = read_n($H2, $BIG - $took, 5);
        my $t_drained = now();
        is(length($got), $BIG - $took, 'H2 reads the rest');
        ok($srv->wait_event(qr/^error $p2 /, 2.5), 'H2, silent, is ended after that');
        $t_err = t_of($srv, 'error', $p2);
        # (the queue empties a little before the client has read the last byte)
        in_range(defined $t_err ? $t_err - $t_drained : undef, 0.35, 1.5,
                 'counting from when it took the last of its output: ended after');
        $got = read_until_eof($H2, 3);
        like($got, qr/\Abig-end\nE:idle timeout[^\n]*\nbye\n\z/, 'then the rest, the error and bye lines');
        ok(got_eof($H2), 'then EOF');
        close $_ for $H1, $H2;
        server_ok($srv);
        $srv->stop;
    };

    # ---------------------------------------------------------- croaks
    isd_subtest "bad idle_timeout values croak, backend $be" => sub {
        my $M = 'IO::Socket::INET::Daemon::new';
        for my $bad ('-1', 'abc', '-0.5', '1s') {
            my $d = eval { IO::Socket::INET::Daemon->new(port => 0, host => '127.0.0.1', backend => $be,
                                                        idle_timeout => $bad) };
            ok(!$d, "idle_timeout => '$bad': no daemon");
            like($@, qr/^\Q$M\E: idle_timeout: '\Q$bad\E' /, "croaks naming new, the option and the value");
        }
        for my $good (0, 0.5, '2', 30) {
            my $d = eval { IO::Socket::INET::Daemon->new(port => 0, host => '127.0.0.1', backend => $be,
                                                        idle_timeout => $good) };
            ok($d, "idle_timeout => $good accepted") or diag $@;
        }
    };

    # ----------------------------------------------- 2,000 idle connections
    isd_subtest "2,000 idle connections cost no CPU, backend $be" => sub {
        my $N = 2000;
        my $need = 2 * $N + 200;        # both ends live in this process and the server
        my $have = raise_nofile($need);
        if ($have < $need) {
            pass("skipped: RLIMIT_NOFILE is $have and cannot be raised to $need");
            return;
        }
        if (!-r "/proc/$$/stat") {
            pass('skipped: needs Linux /proc');
            return;
        }
        my $ticks = 0;
        my $srv = start_server(
            backend => $be, timeout => undef, idle_timeout => 30, backlog => 4096,
            child_deadline => 25,
            callback => {
                tick => sub { $ticks++ },           # once per loop cycle
                data => sub {
                    my ($io, $d, $line) = @_;
                    if ($line eq "ticks\n") {
                        $io->print("ticks=$ticks\n");
                    }
                    elsif ($line eq "count\n") {
                        my @c = $d->connections;
                        $io->print('count=' . scalar(@c) . "\n");
                    }
                    elsif ($line eq "short\n") {
                        my $n = 0;
                        for my $o ($d->connections) {
                            next if $o == $io;
                            $o->idle_timeout(0.3);
                            $n++;
                        }
                        $io->print("short=$n\n");
                    }
                    else {
                        $io->print("R:$line");
                    }
                    1;
                },
                error  => sub { log_event('error %s', $_[2] =~ /^idle timeout/ ? 'idle' : $_[2]) },
                remove => sub { log_event('remove') },
            });
        my $ctl = client($srv);
        my @c;
        my $t0 = now();
        for (1 .. $N) {
            # blocking connect: select() cannot watch descriptors past 1023
            my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $srv->port, Proto => 'tcp');
            last unless $s;
            push @c, $s;
        }
        is(scalar(@c), $N, sprintf '%d connections made in %.2f s', scalar(@c), now() - $t0) or return;
        my $count = '';
        wait_until(sub { $count = ask($ctl, 'count') // ''; $count eq 'count=' . ($N + 1) }, 10, 0.1);
        is($count, 'count=' . ($N + 1), 'the server has them all');
        Time::HiRes::sleep(0.3);
        my $pid = $srv->pid;
        my ($k0) = (ask($ctl, 'ticks') // '') =~ /^ticks=(\d+)$/;
        my $c0 = proc_cpu_ticks($pid);
        my $t1 = now();
        Time::HiRes::sleep(1.0);
        my $c1 = proc_cpu_ticks($pid);
        my ($k1) = (ask($ctl, 'ticks') // '') =~ /^ticks=(\d+)$/;
        my $secs = now() - $t1;
        my $cpu = ($c1 - $c0) / clk_tck();
        my $max = asan_build() ? 0.4 : 0.2;
        ok($cpu < $max, sprintf 'server CPU over %.2f s with %d idle connections (idle_timeout 30): %.2f s (< %.1f)',
                                $secs, $N, $cpu, $max);
        ok(defined $k0 && defined $k1 && $k1 - $k0 <= 4,
           'loop cycles over that second: ' . (defined $k0 && defined $k1 ? $k1 - $k0 : '?') . ' (<= 4: no wakeups)');
        is(ask($ctl, 'hi'), 'R:hi', 'the server answers');
        is(ask($ctl, 'count'), 'count=' . ($N + 1), 'none timed out');
        is($srv->count(qr/^error /), 0, 'no error');

        # now all of them expire together
        is(ask($ctl, 'short', 5), "short=$N", 'idle_timeout(0.3) on every one of them');
        ok($srv->wait_event(qr/^remove$/, 5, $N), "all $N ended (" . $srv->count(qr/^remove$/) . ')');
        is($srv->count(qr/^error idle$/), $N, "$N idle timeout errors");
        is($srv->count(qr/^error (?!idle$)/), 0, 'no other error');
        my $eof = 0;
        wait_until(sub {
            for my $s (@c) {
                next if ${*$s}{eof43};
                $s->blocking(0);
                my $n = sysread($s, my $buf, 4096);
                ${*$s}{eof43} = 1 if defined $n ? $n == 0 : !$!{EAGAIN};
            }
            $eof = grep { ${*$_}{eof43} } @c;
            $eof == @c;
        }, 3, 0.1);
        is($eof, $N, 'every client sees EOF');
        is(ask($ctl, 'count'), 'count=1', 'the control connection is left');
        close $_ for @c;
        close $ctl;
        ok($srv->alive, 'the server is alive');
        $srv->stop;
    };
}

done_testing;
