#!perl
# UDP listeners (new in 1.02): 'udp:127.0.0.1:0', 'udp:[::1]:0', 'udp:*:0'.
# Each datagram calls data($io, $server, $datagram) with $io an
# IO::Socket::INET::Daemon::Datagram standing for the sender (peerhost,
# peerport, sockhost, sockport, sockdomain); print, say, printf, send and
# syswrite each send one datagram back ($, and $\ honoured), getline returns
# the datagram once; a burst from several clients is answered in full; a
# datagram over max_line is dropped and reported, one of exactly max_line
# bytes and an empty one are delivered; a kept $io replies later from a
# timer; max_output refuses a reply with ENOBUFS; $server->stats counts
# datagrams; TCP and UDP listeners on one server; wide characters; a die in
# data; destroy closes the socket; a child forked after listen serves; bad
# SPECs croak in new.  Servers run in a child (TestISD::start_server, or a
# daemon bound here and run by a child forked after listen); clients are
# plain IO::Socket::INET / IO::Socket::IP UDP sockets, connected to the
# server, so only its replies reach them.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use TestISD;
use Test::More;
use Errno qw(EADDRINUSE ENOBUFS);
use IO::Select ();
use IO::Socket::INET ();
use IO::Socket::IP ();
use POSIX ();
use Socket qw(AF_INET AF_INET6 SOL_SOCKET SOCK_DGRAM);
use File::Temp ();
use IO::Socket::INET::Daemon;

my $D = 'IO::Socket::INET::Daemon';
my $DG = 'IO::Socket::INET::Daemon::Datagram';

my $V6 = do {
    my $s = IO::Socket::IP->new(LocalHost => '::1', LocalPort => 0, Proto => 'udp');
    $s ? 1 : 0;
};
my $NO_V6 = 'binding udp [::1]:0 fails on this machine (no IPv6)';

# ------------------------------------------------------------------ servers

# Runs in the server child.  The datagram is a command or is echoed; every
# datagram is logged as "data LENGTH" first.
our $KEPT;
sub data {
    my ($io, $d, $dg) = @_;
    log_event('data %d', length $dg);
    my ($cmd, $arg) = $dg =~ /\A(\w+)(?: (.*))?\z/s ? ($1, $2) : ('', undef);
    if ($cmd eq 'who') {
        $io->print(join '|', map { defined $_ ? $_ : 'undef' }
            ref($io), $io->peerhost, $io->peerport, $io->sockhost, $io->sockport, $io->sockdomain);
    }
    elsif ($cmd eq 'print') {
        local $, = '-';
        local $\ = '!';
        log_event('rv print %s', $io->print('a', 'b', 'c') ? 1 : 0);
    }
    elsif ($cmd eq 'say') {
        local $, = ',';
        local $\ = '!';           # say uses "\n" instead
        log_event('rv say %s', $io->say('x', 'y') ? 1 : 0);
    }
    elsif ($cmd eq 'printf') {
        local $\ = '!';           # printf does not add $\
        log_event('rv printf %s', $io->printf('%03d|%s', 7, 'z') ? 1 : 0);
    }
    elsif ($cmd eq 'send') {
        log_event('rv send %s', $io->send('sent'));
    }
    elsif ($cmd eq 'syswrite') {
        log_event('rv syswrite %s', $io->syswrite('abcdef', 3, 2));
    }
    elsif ($cmd eq 'multi') {
        $io->print("m$_") for 1 .. 3;
    }
    elsif ($cmd eq 'getline') {
        my $x = $io->getline;
        my $y = $io->getline;
        $io->print(join '|', (defined $x ? "<$x>" : 'undef'), (defined $y ? "<$y>" : 'undef'),
                   (defined $x && $x eq $dg ? 'same' : 'differ'));
    }
    elsif ($cmd eq 'later') {
        $KEPT = $io;
        $d->timer(after => 0.3, cb => sub {
            log_event('timer rv %s', $KEPT->print("later $arg") ? 1 : 0);
        });
    }
    elsif ($cmd eq 'die') {
        die "boom $arg\n";
    }
    elsif ($cmd eq 'wide') {
        $io->print("w\x{263a}");
    }
    elsif ($cmd eq 'latin') {
        my ($b, $u) = ("\xe9", "\xe9");
        utf8::upgrade($u);
        $io->print($b, $u);
    }
    elsif ($cmd eq 'wsys') {
        my @r;
        for my $m (qw(syswrite send)) {
            my $ok = eval { $io->$m("\x{263a}"); 1 };
            (my $e = $ok ? 'no croak' : $@) =~ s/ at .*//s;
            push @r, "$m: $e";
        }
        $io->print(join ' / ', @r);
    }
    elsif ($cmd eq 'big') {
        $! = 0;
        my $ok = $io->print('x' x $arg);
        log_event('big %d %s %d', $arg, $ok ? 1 : 0, $ok ? 0 : $! + 0);
    }
    elsif ($cmd eq 'three') {
        my @ok = map { $io->print($_ x 4) ? 1 : 0 } qw(a b c);
        log_event('three %s', join '', @ok);
    }
    elsif ($cmd eq 'stats') {
        my $s = $d->stats;
        my $t = join ',', map { "$_=" . (defined $s->{$_} ? $s->{$_} : 'undef') }
            qw(messages_in bytes_in bytes_out datagrams_in datagrams_out datagrams_dropped);
        log_event('stats %s', $t);
        $io->print($t);
    }
    else {
        $io->print($dg);
    }
    return 1;
}

my %CB = (
    data  => \&data,
    error => sub {
        my ($io, $d, $msg) = @_;
        log_event('error %s|%s|%s', (ref $io || 'undef'), ($io ? $io->peerport : 'undef'), $msg);
    },
    add    => sub { log_event('add'); 1 },
    remove => sub { log_event('remove') },
);

# A server child: new + listen + run there; its addresses come back as an
# "addr ..." event, its warnings as "warn ..." events.
sub udp_server {
    my ($be, %o) = @_;
    my $srv = start_server(
        backend  => $be,
        timeout  => 1,
        callback => {%CB},
        child_deadline => 20,
        %o,
        child_init => sub {
            my ($d) = @_;
            $SIG{__WARN__} = sub { log_event('warn %s', $_[0]) };
            log_event('addr %s', join ' ', $d->addresses);
        },
    );
    return $srv;
}

sub addresses_of {
    my ($srv) = @_;
    my ($a) = $srv->grep_events(qr/^addr /);
    return () unless defined $a;
    $a =~ s/^addr //;
    return split ' ', $a;
}

sub port_of {
    my ($re, @addr) = @_;
    for (@addr) { return $1 if $_ =~ $re }
    return undef;
}

sub quiet {
    my ($srv, $what) = @_;
    my @bad = $srv->grep_events(qr/^(?:warn|error) /);
    is(scalar @bad, 0, "$what: no warning and no error in the server") or diag(join "\n", @bad);
}

# ------------------------------------------------------------------ clients

sub u4 {
    my ($port) = @_;
    IO::Socket::INET->new(Proto => 'udp', PeerAddr => '127.0.0.1', PeerPort => $port)
        or die "udp socket to 127.0.0.1:$port: $@\n";
}

sub u6 {
    my ($port) = @_;
    IO::Socket::IP->new(Proto => 'udp', PeerHost => '::1', PeerPort => $port)
        or die "udp socket to [::1]:$port: $@\n";
}

# the next datagram within $timeout seconds, or undef
sub dgram {
    my ($s, $timeout) = @_;
    my $deadline = now() + (defined $timeout ? $timeout : 3);
    my $sel = IO::Select->new($s);
    while (1) {
        my $left = $deadline - now();
        return undef if $left <= 0;
        next unless $sel->can_read($left);
        my $from = recv($s, my $buf, 70000, 0);
        return $buf if defined $from;
        return undef unless $!{EINTR} || $!{EAGAIN};
    }
}

sub snd {
    my ($c, $msg) = @_;
    defined send($c, $msg, 0) or die "send: $!\n";
}

sub ask {
    my ($c, $msg, $timeout) = @_;
    snd($c, $msg);
    return dgram($c, $timeout);
}

# Send $msg, then a marker; every datagram that comes back before the
# marker's echo, in order (the marker must come back within 3 s: else the
# list ends with '<no marker>').
my $MARK = 0;
sub exchange {
    my ($c, $msg) = @_;
    my $mark = 'mark ' . ++$MARK;
    snd($c, $msg);
    snd($c, $mark);
    my @got;
    while (1) {
        my $g = dgram($c, 3);
        return (@got, '<no marker>') unless defined $g;
        return @got if $g eq $mark;
        push @got, $g;
    }
}

# /proc/net/udp{,6}: the kernel's drop count of the sockets bound to
# 127.0.0.1:PORT / ::1:PORT (undef without /proc)
sub kernel_drops {
    my (@ports) = @_;
    my %want = map { sprintf('%04X', $_) => 1 } @ports;
    my ($n, $seen) = (0, 0);
    for my $f ('/proc/net/udp', '/proc/net/udp6') {
        open my $fh, '<', $f or next;
        $seen++;
        <$fh>;
        while (<$fh>) {
            my @f = split;
            next unless @f >= 13 && $f[1] =~ /:([0-9A-F]{4})\z/ && $want{$1};
            $n += $f[-1];
        }
    }
    return $seen ? $n : undef;
}

# ------------------------------------------------------------ per backend

for my $be (backends()) {
    isd_subtest "who sent it, and the replies, backend $be" => sub {
        my @spec = ('udp:127.0.0.1:0', ($V6 ? 'udp:[::1]:0' : ()), 'udp:*:0');
        my $srv = udp_server($be, listen => \@spec, max_line => 100);
        my @addr = addresses_of($srv);
        is(scalar @addr, scalar @spec, "addresses: one per SPEC (@addr)");
        my $p4 = port_of(qr/\Audp:127\.0\.0\.1:(\d+)\z/, $addr[0]);
        ok($p4, "the first is udp:127.0.0.1:PORT ($addr[0])");
        is($srv->port, $p4, 'sockport of a UDP-only server: the first UDP listener\'s port');
        my $p6 = $V6 ? port_of(qr/\Audp:\[::1\]:(\d+)\z/, $addr[1]) : undef;
        ok($p6, "the second is udp:[::1]:PORT ($addr[1])") if $V6;
        my ($any_host, $pa) = $addr[-1] =~ /\Audp:\[?([^\]]*?)\]?:(\d+)\z/;
        ok($pa, "the last is the wildcard ($addr[-1])");
        is($any_host, ($V6 ? '::' : '0.0.0.0'), '... udp:[::]:PORT where there is IPv6');

        my $c4 = u4($p4);
        is(ask($c4, 'who'), join('|', $DG, '127.0.0.1', $c4->sockport, '127.0.0.1', $p4, AF_INET),
           'IPv4: $io is a Datagram; peerhost/peerport the sender\'s, sockhost/sockport the listener\'s, AF_INET');
        SKIP: {
            skip $NO_V6, 2 unless $V6;
            my $c6 = u6($p6);
            is(ask($c6, 'who'), join('|', $DG, '::1', $c6->sockport, '::1', $p6, AF_INET6),
               'IPv6: peerhost ::1, sockhost ::1, AF_INET6');
            my $cw6 = u6($pa);
            is(ask($cw6, 'who'), join('|', $DG, '::1', $cw6->sockport, '::', $pa, AF_INET6),
               'IPv6 sender on udp:*: ::1, AF_INET6');
        }
        my $cw4 = u4($pa);
        is(ask($cw4, 'who'), join('|', $DG, '127.0.0.1', $cw4->sockport, $any_host, $pa, AF_INET),
           'IPv4 sender on udp:*: plain 127.0.0.1 and AF_INET, and its reply reaches it');
        is(ask($cw4, 'on the wildcard'), 'on the wildcard', '... an echo too');

        # each write method: exactly one datagram
        is_deeply([exchange($c4, 'print')], ['a-b-c!'], 'print of a list: one datagram, $, and $\ honoured');
        is_deeply([exchange($c4, 'say')], ["x,y\n"], 'say: one datagram, $, honoured, "\n" instead of $\\');
        is_deeply([exchange($c4, 'printf')], ['007|z'], 'printf: one datagram, no $\\');
        is_deeply([exchange($c4, 'send')], ['sent'], 'send: one datagram');
        is_deeply([exchange($c4, 'syswrite')], ['cde'], 'syswrite(BUF, LEN, OFFSET): one datagram');
        is_deeply([exchange($c4, 'multi')], [qw(m1 m2 m3)], 'three prints: three datagrams, in order');
        is_deeply([$srv->grep_events(qr/^rv /)],
                  ['rv print 1', 'rv say 1', 'rv printf 1', 'rv send 4', 'rv syswrite 3'],
                  'print, say, printf return true; send and syswrite the bytes sent');
        is(ask($c4, 'getline'), '<getline>|undef|same', 'getline: the datagram once, then undef');
        is(ask($c4, 'latin'), "\xe9\xe9", 'a byte string goes out as bytes, whatever its internal form');

        # lengths: max_line 100
        my $c100 = 'y' x 100;
        is_deeply([exchange($c4, $c100)], [$c100], 'a datagram of exactly max_line (100) bytes is delivered');
        is_deeply([exchange($c4, '')], [''], 'an empty datagram is delivered as \'\' (and echoed)');
        my $cport = $c4->sockport;
        is_deeply([exchange($c4, 'z' x 101)], [], 'a datagram of 101 bytes gets no answer');
        ok($srv->wait_event(qr/^error /, 3), 'error was called');
        my @err = $srv->grep_events(qr/^error /);
        is(scalar @err, 1, 'once');
        like($err[0], qr/^error \Q$DG\E\|$cport\|datagram too long \(over max_line 100 bytes\) from 127\.0\.0\.1:$cport\z/,
             'error($io of the sender, $server, "datagram too long (over max_line 100 bytes) from 127.0.0.1:PORT")');
        is($srv->count(qr/^data 101$/), 0, 'data was not called for it');
        is($srv->count(qr/^data 100$/), 1, 'the 100-byte one was');
        is($srv->count(qr/^data 0$/), 1, 'and the empty one');
        SKIP: {
            skip $NO_V6, 1 unless $V6;
            my $c6 = u6($p6);
            my $p = $c6->sockport;
            is_deeply([exchange($c6, 'z' x 200)], [], 'an IPv6 sender over max_line: no answer');
            ok($srv->wait_event(qr/^error .*datagram too long .* from \[::1\]:$p\z/, 3),
               '... "from [::1]:PORT"') or diag(join "\n", $srv->grep_events(qr/^error /));
        }
        my @w = $srv->grep_events(qr/^warn /);
        is(scalar @w, 0, 'no warning so far') or diag(join "\n", @w);
        $srv->stop;
    };

    isd_subtest "wide characters, die in data, a kept \$io, backend $be" => sub {
        my $srv = udp_server($be, listen => 'udp:127.0.0.1:0');
        my $p = $srv->port;
        my $c = u4($p);
        is_deeply([exchange($c, 'wide')], ["w\xe2\x98\xba"], 'a wide character in print: sent as UTF-8, one datagram');
        ok($srv->wait_event(qr/^warn Wide character in print/, 3), '... with a "Wide character in print" warning')
            or diag(join "\n", $srv->events);
        is(ask($c, 'wsys'), 'syswrite: Wide character in syswrite / send: Wide character in send',
           'syswrite and send of a wide character croak');

        is_deeply([exchange($c, 'die now')], [], 'data dies: no answer');
        ok($srv->wait_event(qr/^error /, 3), 'error was called');
        my @e = $srv->grep_events(qr/^error /);
        is(scalar @e, 1, 'once');
        like($e[0], qr/^error \Q$DG\E\|\d+\|.*boom now/, 'with the sender\'s $io and the die\'s message');
        is(ask($c, 'next'), 'next', 'the next datagram is served');

        # a kept $io replies later, to that sender only
        my $a = u4($p);
        my $b = u4($p);
        snd($a, 'later A');
        is(ask($b, 'hi B'), 'hi B', 'another sender is served meanwhile');
        is(dgram($a, 3), 'later A', 'the kept $io, printed to from a timer, replies to its sender');
        ok($srv->wait_event(qr/^timer rv /, 3), 'the timer ran');
        is(($srv->grep_events(qr/^timer rv /))[0], 'timer rv 1', '... and its print returned true');
        is_deeply([exchange($b, 'x')], ['x'], 'the other sender got nothing else');
        is_deeply([exchange($a, 'y')], ['y'], 'nor did the first one');
        my @w = $srv->grep_events(qr/^warn /);
        is(scalar @w, 1, 'one warning in all (the wide character)') or diag(join "\n", @w);
        $srv->stop;
    };

    isd_subtest "a burst from 5 clients, backend $be" => sub {
        my $srv = udp_server($be, listen => 'udp:127.0.0.1:0');
        my $p = $srv->port;
        my @c = map { u4($p) } 0 .. 4;
        my %sock_of = map { (fileno($c[$_]) => $_) } 0 .. 4;
        my $sel = IO::Select->new(@c);

        # (a) at most 20 unanswered per client (100 in all: what the kernel's
        # default receive buffer holds many times over)
        my (%got, @sent, @outstanding, $dups);
        my $deadline = now() + 8;
        while (keys %got < 500 && now() < $deadline) {
            for my $i (0 .. 4) {
                while (($outstanding[$i] || 0) < 20 && ($sent[$i] || 0) < 100) {
                    my $n = ++$sent[$i];
                    snd($c[$i], "c$i n$n");
                    $outstanding[$i]++;
                }
            }
            for my $s ($sel->can_read(0.5)) {
                my $i = $sock_of{ fileno $s };
                defined recv($s, my $buf, 100, 0) or next;
                $dups++ if $got{"$i $buf"}++;
                $outstanding[$i]--;
            }
            last if !grep { ($outstanding[$_] || 0) > 0 || ($sent[$_] || 0) < 100 } 0 .. 4;
        }
        my @want = map { my $i = $_; map { "$i c$i n$_" } 1 .. 100 } 0 .. 4;
        my @missing = grep { !$got{$_} } @want;
        is(scalar(keys %got), 500, '500 datagrams, 20 in flight per client: 500 different answers')
            or diag(scalar(@missing) . ' missing, e.g. ' . join(', ', @missing[0 .. ($#missing < 4 ? $#missing : 4)]));
        ok(!$dups, 'none twice');
        is(scalar(grep { !exists $got{$_} } @want), 0, 'each answer to the client that sent it');

        # (b) all 500 sent before any is read: the kernel may drop some (the
        # server socket's receive buffer); every one it did not drop is answered
        my $drops0 = kernel_drops($p, map { $_->sockport } @c);
        %got = ();
        for my $n (1 .. 100) {
            for my $i (0 .. 4) { snd($c[$i], "b$i n$n") }
        }
        $deadline = now() + 5;
        while (keys %got < 500 && now() < $deadline) {
            my @r = $sel->can_read(0.5);
            last if !@r && now() > $deadline - 4;    # quiet for 0.5 s after the first second
            for my $s (@r) {
                my $i = $sock_of{ fileno $s };
                defined recv($s, my $buf, 100, 0) or next;
                $got{"$i $buf"}++;
            }
        }
        my $answered = keys %got;
        my $drops = defined $drops0 ? kernel_drops($p, map { $_->sockport } @c) - $drops0 : undef;
        SKIP: {
            skip 'no /proc/net/udp to count the kernel\'s drops', 1 unless defined $drops;
            is($answered + $drops, 500,
               "500 sent at once: $answered answered, $drops dropped by the kernel (receive buffer full)");
        }
        diag("UDP loss on loopback: $drops of 500 datagrams sent at once were dropped by the kernel "
             . "(a socket receive buffer was full: the default SO_RCVBUF; the rcvbuf subtest raises it)")
            if $drops;
        ok($srv->alive, 'the server is still there');
        my $fresh = u4($p);
        is(ask($fresh, 'after'), 'after', 'and serves on');
        quiet($srv, 'burst');
        $srv->stop;
    };

    isd_subtest "stats, backend $be" => sub {
        my $srv = udp_server($be, listen => 'udp:127.0.0.1:0', max_line => 100);
        my $c = u4($srv->port);
        is(ask($c, 'hello'), 'hello', 'hello (5 bytes in, 5 out)');
        is(ask($c, ''), '', 'an empty one (0 in, 0 out)');
        snd($c, 'q' x 101);
        is(dgram($c, 0.5), undef, '101 bytes: dropped');
        ok($srv->wait_event(qr/^error /, 3), '... reported');
        my $c100 = 'w' x 100;
        is(ask($c, $c100), $c100, '100 bytes in, 100 out');
        my $s1 = ask($c, 'stats');
        is($s1, 'messages_in=4,bytes_in=110,bytes_out=105,datagrams_in=4,datagrams_out=3,datagrams_dropped=1',
           'stats inside the 4th delivered datagram: its own reply not yet out');
        my $s2 = ask($c, 'stats');
        my $out = 105 + length($s1 // '');
        is($s2, "messages_in=5,bytes_in=115,bytes_out=$out,datagrams_in=5,datagrams_out=4,datagrams_dropped=1",
           'the next one counts the first stats reply');
        $srv->stop;
    };

    isd_subtest "max_output, backend $be" => sub {
        my $srv = udp_server($be, listen => 'udp:127.0.0.1:0', max_output => 10);
        my $c = u4($srv->port);
        snd($c, 'big 10');
        is(dgram($c, 3), 'x' x 10, 'a reply of max_output (10) bytes goes');
        ok($srv->wait_event(qr/^big 10 /, 3), 'print returned');
        is(($srv->grep_events(qr/^big 10 /))[0], 'big 10 1 0', '... true');
        snd($c, 'big 11');
        ok($srv->wait_event(qr/^big 11 /, 3), 'a reply of 11 bytes: print returned');
        is(($srv->grep_events(qr/^big 11 /))[0], 'big 11 0 ' . ENOBUFS, '... false, with $! ENOBUFS');
        is(dgram($c, 0.5), undef, '... and nothing was sent');
        snd($c, 'big 3');
        is(dgram($c, 3), 'xxx', 'the next reply goes');
        snd($c, 'stats');
        ok($srv->wait_event(qr/^stats /, 3), 'stats');
        like(($srv->grep_events(qr/^stats /))[0], qr/datagrams_out=2,datagrams_dropped=1\z/,
             'the refused reply counts in datagrams_dropped');
        snd($c, 'three');
        ok($srv->wait_event(qr/^three /, 3), 'three replies of 4 bytes from one data call');
        is(($srv->grep_events(qr/^three /))[0], 'three 111',
           'all three printed (the POD: replies wait only while the kernel cannot take them)');
        $srv->stop;
    };

    isd_subtest "an inherited UDP socket (fd:N), backend $be" => sub {
        my $s = IO::Socket::INET->new(Proto => 'udp', LocalAddr => '127.0.0.1', LocalPort => 0)
            or die "udp socket: $@";
        my $p = $s->sockport;
        my $fd = fileno $s;
        my $srv = udp_server($be, listen => ["fd:$fd", '127.0.0.1:0'], keep_fds => [$fd]);
        my @addr = addresses_of($srv);
        is($addr[0], "udp:127.0.0.1:$p", "addresses: the inherited UDP socket first, as its SPEC (@addr)");
        like($addr[1] // '', qr/\A127\.0\.0\.1:\d+\z/, '... then the TCP one');
        is($srv->port, $p, 'sockport: the inherited socket\'s');
        my $c = u4($p);
        is(ask($c, 'who'), join('|', $DG, '127.0.0.1', $c->sockport, '127.0.0.1', $p, AF_INET),
           'served: data() with the sender and the socket\'s own address');
        is(ask($c, 'again'), 'again', 'and on');
        is($srv->count(qr/^warn /), 0, 'no warning');
        $srv->stop;
        ok(defined getsockname($s), 'the parent\'s copy of the inherited socket is still open');
        close $s;
    };

    isd_subtest "TCP and UDP listeners on one server, backend $be" => sub {
        my $srv = udp_server($be, listen => ['127.0.0.1:0', 'udp:127.0.0.1:0']);
        my @addr = addresses_of($srv);
        my $pt = port_of(qr/\A127\.0\.0\.1:(\d+)\z/, @addr);
        my $pu = port_of(qr/\Audp:127\.0\.0\.1:(\d+)\z/, @addr);
        is(scalar @addr, 2, "two addresses (@addr)");
        ok($pt && $pu, 'a TCP one (127.0.0.1:PORT) and a UDP one (udp:127.0.0.1:PORT)');
        is_deeply(\@addr, ["127.0.0.1:$pt", "udp:127.0.0.1:$pu"], 'in SPEC order');
        is($srv->port, $pt, 'sockport: the first (TCP) listener\'s');
        my $t = client($pt);
        ok(echo_ping($t, 'over tcp'), 'TCP echo');
        my $u = u4($pu);
        is(ask($u, 'over udp'), 'over udp', 'UDP echo');
        ok(echo_ping($t, 'tcp again'), 'TCP again');
        is(ask($u, 'who'), join('|', $DG, '127.0.0.1', $u->sockport, '127.0.0.1', $pu, AF_INET), 'UDP who');
        close $t;
        ok($srv->wait_event(qr/^remove$/, 3), 'the TCP client\'s remove');
        is($srv->count(qr/^add$/), 1, 'one add: the TCP client (a datagram is no connection)');
        $srv->stop;

        $srv = udp_server($be, listen => ['udp:127.0.0.1:0', '127.0.0.1:0']);
        @addr = addresses_of($srv);
        $pt = port_of(qr/\A127\.0\.0\.1:(\d+)\z/, @addr);
        $pu = port_of(qr/\Audp:127\.0\.0\.1:(\d+)\z/, @addr);
        ok($pt && $pu, "UDP SPEC first: both listen (@addr)");
        is_deeply(\@addr, ["udp:127.0.0.1:$pu", "127.0.0.1:$pt"], 'addresses in SPEC order');
        is($srv->port, $pu, 'sockport: the first SPEC\'s (the UDP one)');
        is(ask(u4($pu), 'u'), 'u', 'served over UDP');
        ok(echo_ping(client($pt), 't'), 'and TCP');
        $srv->stop;
    };

    isd_subtest "destroy, and a child forked after listen, backend $be" => sub {
        my $d = $D->new(backend => $be, listen => 'udp:127.0.0.1:0', callback => {%CB}, timeout => 1);
        ok($d->listen, 'listen') or die "listen: $!\n";
        my $p = $d->sockport;
        ok($p, "sockport $p");
        is_deeply([$d->addresses], ["udp:127.0.0.1:$p"], 'addresses');
        my $plain = IO::Socket::INET->new(Proto => 'udp', LocalAddr => '127.0.0.1', LocalPort => $p);
        my $err = $! + 0;
        ok(!$plain, 'the port is taken (a plain bind fails)');
        is($err, EADDRINUSE, '... EADDRINUSE');
        undef $plain;
        my $d2 = $D->new(listen => "udp:127.0.0.1:$p");
        $! = 0;
        ok(!$d2->listen, 'a second daemon cannot listen on it');
        $d2->destroy;
        $d->destroy;
        is_deeply([$d->addresses], [], 'no addresses after destroy');
        $plain = IO::Socket::INET->new(Proto => 'udp', LocalAddr => '127.0.0.1', LocalPort => $p);
        ok($plain, 'after destroy a plain bind of the port succeeds: the socket is closed') or diag("bind: $!");
        undef $plain;

        $d = $D->new(backend => $be, listen => "udp:127.0.0.1:$p", callback => {%CB}, timeout => 1);
        ok($d->listen, 'a new daemon listens on the same port') or die "listen: $!\n";
        my $srv = start_server(daemon => $d, child_deadline => 20, child_init => sub {
            $SIG{__WARN__} = sub { log_event('warn %s', $_[0]) };
        });
        is($srv->port, $p, 'forked after listen: the child has the port');
        my $c = u4($p);
        is(ask($c, 'who'), join('|', $DG, '127.0.0.1', $c->sockport, '127.0.0.1', $p, AF_INET),
           'the child\'s run serves UDP');
        is(ask($c, 'again'), 'again', 'and on');
        is($srv->count(qr/^data /), 2, 'the child got both datagrams (the parent\'s copy reads nothing)');
        $srv->stop;
        quiet($srv, 'forked');
        $d->destroy;
        $plain = IO::Socket::INET->new(Proto => 'udp', LocalAddr => '127.0.0.1', LocalPort => $p);
        ok($plain, 'the parent\'s destroy (the child gone) lets go of the port') or diag("bind: $!");
    };
}

# ------------------------------------------------------- rcvbuf, sndbuf

# the fd of this process's socket bound to $port (TCP or UDP), as a handle
# (kept: closing one would close the fd under the daemon's feet)
my @KEEP;
sub fd_of_port {
    my ($port, $type) = @_;
    for my $fd (3 .. 200) {
        open(my $fh, '+<&=', $fd) or next;     # (a second handle on it, not closed)
        push @KEEP, $fh;
        my $t = getsockopt($fh, SOL_SOCKET, Socket::SO_TYPE());
        my $name = getsockname($fh);
        next unless $t and $name and unpack('i', $t) == $type;
        my ($fam) = Socket::sockaddr_family($name);
        next unless $fam == AF_INET;
        return $fh if (Socket::unpack_sockaddr_in($name))[0] == $port;
    }
    return undef;
}

sub sockopt_int { my ($fh, $o) = @_; my $v = getsockopt($fh, SOL_SOCKET, $o); defined $v ? unpack('i', $v) : -1 }

subtest 'rcvbuf and sndbuf: per listener, TCP, UDP and UNIX' => sub {
    my $max = do { open my $f, '<', '/proc/sys/net/core/rmem_max'; $f ? 0 + <$f> : undef };
    my $wmax = do { open my $f, '<', '/proc/sys/net/core/wmem_max'; $f ? 0 + <$f> : undef };
    my $d = $D->new(listen => [{ address => 'udp:127.0.0.1:0', rcvbuf => 4_194_304, sndbuf => 1_048_576 },
                               { address => '127.0.0.1:0', rcvbuf => 65536 },
                               'udp:127.0.0.1:0']);
    ok($d->listen, 'listen') or diag($@);
    my @a = $d->addresses;
    my ($pu) = $a[0] =~ /:(\d+)\z/;
    my ($pt) = $a[1] =~ /:(\d+)\z/;
    my ($pd) = $a[2] =~ /:(\d+)\z/;
    my $u = fd_of_port($pu, SOCK_DGRAM);
    my $t = fd_of_port($pt, Socket::SOCK_STREAM());
    my $plain = fd_of_port($pd, SOCK_DGRAM);
    ok($u && $t && $plain, 'the three sockets found') or return;
    my $want = defined $max && $< != 0 && $max < 4_194_304 ? $max : 4_194_304;
    cmp_ok(sockopt_int($u, Socket::SO_RCVBUF()), '>=', $want,
           "UDP rcvbuf 4 MiB: SO_RCVBUF at least $want (as root past net.core.rmem_max)");
    my $wwant = defined $wmax && $< != 0 && $wmax < 1_048_576 ? $wmax : 1_048_576;
    cmp_ok(sockopt_int($u, Socket::SO_SNDBUF()), '>=', $wwant, "sndbuf 1 MiB: SO_SNDBUF at least $wwant");
    cmp_ok(sockopt_int($t, Socket::SO_RCVBUF()), '>=', 65536, 'TCP listener: SO_RCVBUF at least 64 KiB');
    cmp_ok(sockopt_int($plain, Socket::SO_RCVBUF()), '<', sockopt_int($u, Socket::SO_RCVBUF()),
           'a listener without rcvbuf keeps the default (smaller)');
    $d->destroy;

    my $tmp = File::Temp->newdir('isd-bufs-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    my $path = "$tmp/bufs.sock";
    $d = $D->new(listen => [{ address => "unix:$path", sndbuf => 300_000 }]);
    ok($d->listen, 'unix:PATH with sndbuf listens') or diag($@);
    $d->destroy;

    for my $bad (0, -1, '4M', 2**31, undef) {
        ok(!eval { $D->new(listen => [{ address => 'udp:127.0.0.1:0', rcvbuf => $bad }]); 1 },
           'rcvbuf ' . (defined $bad ? "'$bad'" : 'undef') . ' croaks');
        like($@, qr/\AIO::Socket::INET::Daemon::new: rcvbuf: .* is not a size in bytes/, '... saying why');
    }
    ok(!eval { $D->new(listen => [{ address => 'fd:3', sndbuf => 4096 }]); 1 }, 'fd:N with sndbuf croaks');
    like($@, qr/listen: 'fd:3' cannot take sndbuf/, '... (an inherited socket keeps its own)');

    # a burst the default buffer drops a part of: with room for it, none
    SKIP: {
        skip 'an SO_RCVBUF of 4 MiB is not allowed here (not root, rmem_max ' . ($max // '?') . ')', 3
            unless $< == 0 or (defined $max and $max >= 4_194_304);
        my $srv = udp_server('epoll', listen => [{ address => 'udp:127.0.0.1:0', rcvbuf => 4_194_304 }]);
        my ($p) = (addresses_of($srv))[0] =~ /:(\d+)\z/;
        my @c = map { u4($p) } 0 .. 4;
        my %sock_of = map { (fileno($c[$_]) => $_) } 0 .. 4;
        my $sel = IO::Select->new(@c);
        my $drops0 = kernel_drops($p, map { $_->sockport } @c);
        for my $n (1 .. 100) {
            for my $i (0 .. 4) { snd($c[$i], "b$i n$n") }
        }
        my %got;
        my $deadline = now() + 5;
        while (keys %got < 500 && now() < $deadline) {
            for my $s ($sel->can_read(0.5)) {
                defined recv($s, my $buf, 100, 0) or next;
                $got{"$sock_of{fileno $s} $buf"}++;
            }
        }
        is(scalar(keys %got), 500, '500 datagrams sent at once to a socket with rcvbuf 4 MiB: all answered');
        my $drops = defined $drops0 ? kernel_drops($p, map { $_->sockport } @c) - $drops0 : 0;
        is($drops, 0, 'none dropped by the kernel');
        ok($srv->alive, 'the server is still there');
        $srv->stop;
    }
};

# ------------------------------------------------------------------ croaks

subtest 'bad udp SPECs croak in new' => sub {
    my @bad = (
        ['udp:127.0.0.1',       qr/listen: 'udp:127\.0\.0\.1' is not udp:HOST:PORT/],
        ['udp:unix:/x',         qr/listen: 'udp:unix:\/x' is not udp:HOST:PORT/],
        ['udp:',                qr/listen: 'udp:' is not udp:HOST:PORT/],
        ['udp:[::1]',           qr/listen: 'udp:\[::1\]' is not udp:HOST:PORT/],
        [{ address => 'udp:127.0.0.1:0', unix_mode => 0600 },
                                qr/listen: 'udp:127\.0\.0\.1:0' cannot take unix_mode/],
    );
    for my $b (@bad) {
        my ($v, $re) = @$b;
        my $name = ref $v ? "{ address => '$v->{address}', unix_mode => 0600 }" : "'$v'";
        ok(!eval { $D->new(listen => $v); 1 }, "listen => $name croaks");
        like($@, qr/\AIO::Socket::INET::Daemon::new: /, '... naming the method');
        like($@, $re, '... the SPEC and why') or diag($@);
    }

    # a SPEC the udp: pattern lets through to the TCP parser
    for my $b (['udp:127.0.0.1:70000', qr/has a port over 65535/],
               ['udp:[nonsense]:1',    qr/is not an IPv6 address in brackets/]) {
        my ($v, $why) = @$b;
        ok(!eval { $D->new(listen => $v); 1 }, "listen => '$v' croaks");
        like($@, qr/\AIO::Socket::INET::Daemon::new: listen: .*$why/, '... naming the method, saying why');
        like($@, qr/listen: '\Q$v\E' /, '... and the whole SPEC');
    }

    # udp: + another kind of SPEC that looks like HOST:PORT
    for my $v ('udp:fd:3', 'udp:unix:5', 'udp:systemd:1') {
        my @w;
        local $SIG{__WARN__} = sub { push @w, $_[0] };
        my $ok = eval {
            my $d = $D->new(listen => $v);
            $! = 0;
            my $rv = $d->listen;
            $d->destroy;
            !$rv;
        };
        ok(!defined $ok, "listen => '$v' croaks in new");
        is(scalar(grep { /uninitialized/ } @w), 0, "... and no \"uninitialized\" warning");
    }

    for my $ok ('udp:127.0.0.1:0', 'udp:*:0', 'udp:[::1]:0', 'udp:localhost:0',
                { address => 'udp:127.0.0.1:0', reuseport => 1 }) {
        my $name = ref $ok ? "{ address => '$ok->{address}', reuseport => 1 }" : "'$ok'";
        ok(eval { $D->new(listen => $ok); 1 }, "listen => $name is accepted") or diag($@);
    }
};

done_testing;
