#!perl
# TLS listeners face to face with hostile and broken peers (issue 14), on
# every backend:
#   - before add (no add, no remove, exactly one error with $io undef:
#     "connection from 127.0.0.1:PORT refused: TLS handshake: REASON",
#     counted in stats->{rejected}): plain text, an HTTP request, random
#     bytes, a record header with junk, a huge record length, a ClientHello
#     followed by junk; a stalled handshake and a slow loris
#     (handshake_timeout => 1, 5 under valgrind: "not complete within 1 s"); a client that
#     vanishes mid-handshake (FIN: "at EOF", RST: "at a reset");
#   - a port check (connect, close, nothing sent; FIN or RST): nothing at
#     all, no error;
#   - after add (error with $io, "connection 127.0.0.1:PORT: TLS: REASON",
#     then remove, once each): junk records mid-stream, a huge record
#     length, a TLS 1.2 client renegotiating ("renegotiation refused"; with
#     Net::SSLeay and with s_client's "R"), a client that closes TCP
#     without close_notify (FIN or RST); a clean close (close_notify) and
#     TLS 1.3 key updates (s_client's "K" and "k") are no error;
#   - after every one a fresh TLS client is served, and a good client that
#     stayed connected is served throughout;
#   - 50 hostile clients at once while good clients keep being served.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use TestISD qw(:DEFAULT ask);
use TestTLS;
use Test::More;
use IO::Socket::INET::Daemon;
use POSIX ();
use Time::HiRes ();

my $why = tls_skip_reason();
plan skip_all => $why if $why;

my $C = make_certs();
my %TLS = (cert_file => $C->{localhost}, key_file => $C->{localhost_key});
my $HELLO = client_hello(sni => 'localhost');

# handshake_timeout, and how much longer everything takes: under valgrind
# (xt/valgrind-run) a good handshake alone takes a good part of a second
my $HT = $ENV{ISD_VALGRIND} ? 5 : 1;
my $W  = $TestTLS::SLOW;

sub server {
    my ($be, %o) = @_;
    return start_server(backend => $be, callback => tls_callbacks(), child_deadline => 40 * $TestTLS::SLOW,
                        tls => { %TLS, handshake_timeout => $HT }, %o);
}

sub stats_of { tls_unflat(ask($_[0], 'stats')) || {} }

# bytes that are not TLS, sent before any handshake: [name, bytes, what the
# reason must say (undef: any reason), what may follow "TLS handshake" if
# not ": REASON"]
srand(42);
my $RANDOM = join '', map { chr int rand 256 } 1 .. 300;
my @BEFORE = (
    ['plain text', "hello, server\n", qr/wrong version number|unknown protocol|record layer failure/],
    ['an HTTP request', "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", qr/http request/],
    ['random bytes', "\x17" . $RANDOM, undef],
    ['a handshake record header with junk', "\x16\x03\x01\x00\x40" . ("\xAB" x 64), undef],
    ['a huge record length', "\x16\x03\x01\xff\xff" . ('A' x 200), qr/length|too long/i],
    ['a ClientHello, then junk records', $HELLO . "\x17\x03\x03\x00\x10" . ("\x00" x 16), undef],
    ['a ClientHello, then a close_notify alert', $HELLO . "\x15\x03\x03\x00\x02\x01\x00", undef,
        qr/(: \S| not complete at EOF$)/],
    ['a ClientHello, then a fatal alert', $HELLO . "\x15\x03\x03\x00\x02\x02\x28", undef],
    ['an SSLv2-style hello', "\x80\x2e\x01\x00\x02\x00\x15\x00\x00\x00\x10" . ("\x01" x 37), undef,
        qr/(: \S| not complete within $HT s$)/],
);

for my $be (backends()) {
    isd_subtest("backend $be: non-TLS bytes before the handshake: one error each, no add", sub {
        my $srv = server($be);
        my $good = tls_client($srv, ca => $C->{ca});
        ok(echo_ping($good, 'first'), 'a good client first');
        my $s0 = stats_of($good);
        my $n = 0;
        for my $case (@BEFORE) {
            my ($name, $bytes, $re, $how) = @$case;
            my $c = client($srv);
            my $cport = $c->sockport;
            send_all($c, $bytes, 3);
            my $got = read_until_eof($c, 3 * $W);
            ok(got_eof($c), "$name: the server ends the connection");
            unlike($got, qr/^HTTP\/|hello|server/, "$name: ... sending no application data") if length $got;
            $n++;
            ok($srv->wait_event(qr/^error /, 3, $n), "$name: an error");
            my @e = $srv->grep_events(qr/^error /);
            is(scalar @e, $n, "$name: exactly one") or $n = @e;
            $how ||= qr/: \S/;
            like($e[-1] // '', qr/^error undef connection from 127\.0\.0\.1:$cport refused: TLS handshake$how/,
                 "$name: \"connection from 127.0.0.1:$cport refused: TLS handshake: ...\"");
            like($e[-1] // '', $re, "$name: the reason") if $re;
            note($e[-1] // '');
            close $c;
            my $fresh = tls_client($srv, ca => $C->{ca});
            ok(echo_ping($fresh, "after $name"), "$name: a fresh TLS client is served afterwards");
            close $fresh;
        }
        ok(echo_ping($good, 'still'), 'the first good client is served throughout');
        my $s1 = stats_of($good);
        is($s1->{rejected} - $s0->{rejected}, scalar @BEFORE, 'stats->{rejected} counts each');
        is($s1->{accepted} - $s0->{accepted}, scalar @BEFORE, 'stats->{accepted} only the fresh clients');
        is($srv->count(qr/^add /), 1 + @BEFORE, 'add only for the TLS clients');
        $srv->wait_event(qr/^remove /, 3, scalar @BEFORE);
        Time::HiRes::sleep(0.1 * $W);
        is($srv->count(qr/^remove /), scalar @BEFORE, 'remove only for the fresh TLS clients (closed)');
        is($srv->count(qr/^error /), scalar @BEFORE, 'one error per hostile client, in all');
        is($srv->stderr, '', 'nothing on STDERR');
    });

    isd_subtest("backend $be: stalled handshakes, a slow loris, clients that vanish mid-handshake", sub {
        my $srv = server($be);
        my $good = tls_client($srv, ca => $C->{ca});
        ok(echo_ping($good, 'first'), 'a good client first');

        # a few bytes of the ClientHello, then nothing
        my $c = client($srv);
        my $cport = $c->sockport;
        my $t0 = now();
        send_all($c, substr($HELLO, 0, 20), 3);
        read_until_eof($c, 4 * $HT);
        my $took = now() - $t0;
        ok(got_eof($c), 'a stalled handshake: dropped');
        ok($took >= 0.8 * $HT && $took < 2.5 * $HT, sprintf('... after about handshake_timeout (%.2f s)', $took));
        ok($srv->wait_event(qr/^error undef connection from 127\.0\.0\.1:$cport /, 2 * $W), '... an error');
        my ($e) = $srv->grep_events(qr/^error undef connection from 127\.0\.0\.1:$cport /);
        like($e // '', qr/refused: TLS handshake not complete within $HT s$/, '... "TLS handshake not complete within $HT s"');
        ok(echo_ping($good, 'during'), 'the good client is served meanwhile');

        # the whole ClientHello, then silence (the server waits for the client's Finished)
        $c = client($srv);
        $cport = $c->sockport;
        send_all($c, $HELLO, 3);
        $t0 = now();
        read_until_eof($c, 4 * $HT);
        $took = now() - $t0;
        ok(got_eof($c) && $took >= 0.8 * $HT && $took < 2.5 * $HT,
           sprintf('a ClientHello, then silence: dropped after about 1 s (%.2f s)', $took));
        ok($srv->wait_event(qr/^error undef connection from 127\.0\.0\.1:$cport .*not complete within $HT s$/, 2 * $W),
           '... "not complete within $HT s"');

        # a byte every 0.3 s: arriving bytes do not push the deadline back
        $c = client($srv);
        $cport = $c->sockport;
        $t0 = now();
        my ($sent, $eof_at) = (0, undef);
        while (now() - $t0 < 4 * $HT && $sent < length $HELLO) {
            last unless syswrite($c, substr($HELLO, $sent, 1));
            $sent++;
            read_for($c, 0.3);
            if (got_eof($c)) { $eof_at = now() - $t0; last }
        }
        ok(defined $eof_at && $eof_at >= 0.8 * $HT && $eof_at < 2.5 * $HT,
           sprintf('a slow loris: dropped after about 1 s (%.2f s, %d bytes sent)', $eof_at // -1, $sent));
        ok($srv->wait_event(qr/^error undef connection from 127\.0\.0\.1:$cport .*not complete within $HT s$/, 2 * $W),
           '... "not complete within $HT s"');

        # vanishing mid-handshake: FIN, then RST
        $c = client($srv);
        $cport = $c->sockport;
        send_all($c, substr($HELLO, 0, 50), 3);
        Time::HiRes::sleep(0.1 * $W);
        close $c;
        ok($srv->wait_event(qr/^error undef connection from 127\.0\.0\.1:$cport /, 3 * $W), 'a client that goes (FIN) mid-handshake: an error');
        ($e) = $srv->grep_events(qr/^error undef connection from 127\.0\.0\.1:$cport /);
        like($e // '', qr/refused: TLS handshake not complete at EOF$/, '... "TLS handshake not complete at EOF"');

        $c = client($srv);
        $cport = $c->sockport;
        send_all($c, $HELLO, 3);
        read_for($c, 0.3 * $W);      # the server's flight arrives
        rst_close($c);
        ok($srv->wait_event(qr/^error undef connection from 127\.0\.0\.1:$cport /, 3 * $W), 'a client that resets mid-handshake: an error');
        ($e) = $srv->grep_events(qr/^error undef connection from 127\.0\.0\.1:$cport /);
        like($e // '', qr/refused: TLS handshake not complete at a reset$/, '... "TLS handshake not complete at a reset"');

        my $fresh = tls_client($srv, ca => $C->{ca});
        ok(echo_ping($fresh, 'after'), 'a fresh TLS client is served afterwards');
        ok(echo_ping($good, 'still'), 'the first one too');
        Time::HiRes::sleep(0.2 * $W);
        is($srv->count(qr/^error /), 5, 'one error each, five in all');
        is($srv->count(qr/^add /), 2, 'add only for the good clients');
        is($srv->count(qr/^remove /), 0, 'no remove');
        is(stats_of($good)->{rejected}, 5, 'stats->{rejected} 5');
        is($srv->stderr, '', 'nothing on STDERR');
    });

    isd_subtest("backend $be: a port check goes quietly", sub {
        my $srv = server($be);
        my $c = client($srv);
        close $c;                       # FIN, nothing sent
        $c = client($srv);
        rst_close($c);                  # RST, nothing sent
        $c = client($srv);
        shutdown($c, 1);                # half-closed, nothing sent
        read_until_eof($c, 3 * $W);
        ok(got_eof($c), 'a half-closed silent client: the server closes too');
        close $c;
        my $good = tls_client($srv, ca => $C->{ca});
        ok(echo_ping($good, 'x'), 'a TLS client afterwards: served');
        Time::HiRes::sleep(0.3 * $W);
        is(join("\n", $srv->grep_events(qr/^error /)), '', 'no error for connections that sent nothing');
        is($srv->count(qr/^add /), 1, 'no add for them');
        is(stats_of($good)->{rejected}, 0, 'not counted as rejected');
        is($srv->stderr, '', 'nothing on STDERR');
    });

    isd_subtest("backend $be: after the handshake: junk, renegotiation, no close_notify", sub {
        my $srv = server($be);
        my $good = tls_client($srv, ca => $C->{ca});
        ok(echo_ping($good, 'first'), 'a good client first');
        my @cases = (
            ['junk application data', "\x17\x03\x03\x00\x30" . ("\x5A" x 48), qr/TLS: \S/],
            ['a huge record length', "\x17\x03\x03\xff\xff" . ('B' x 100), qr/TLS: \S/],
            ['random bytes', $RANDOM, qr/TLS: \S/],
        );
        my $n = 0;
        for my $case (@cases) {
            my ($name, $bytes, $re) = @$case;
            my $c = tls_client($srv, ca => $C->{ca});
            ok(echo_ping($c, 'before'), "$name: served first");
            my $cport = $c->sockport;
            # straight onto the socket, under the TLS layer
            my $w = POSIX::write(fileno($c), $bytes, length $bytes);
            is($w, length $bytes, "$name: written");
            read_until_eof($c, 3 * $W);
            ok(got_eof($c), "$name: the server ends the connection");
            $n++;
            ok($srv->wait_event(qr/^remove $cport$/, 3 * $W), "$name: remove");
            my @e = $srv->grep_events(qr/^error $cport /);
            is(scalar @e, 1, "$name: exactly one error, with \$io");
            like($e[0] // '', qr/^error $cport connection 127\.0\.0\.1:$cport: TLS: \S/,
                 "$name: \"connection 127.0.0.1:$cport: TLS: REASON\"");
            like($e[0] // '', $re, "$name: the reason") if $re;
            note($e[0] // '');
            my @ev = grep { /^(error|remove) $cport\b/ } $srv->events;
            like($ev[0] // '', qr/^error /, "$name: error before remove");
            is($srv->count(qr/^remove $cport$/), 1, "$name: one remove");
            close $c;
            my $fresh = tls_client($srv, ca => $C->{ca});
            ok(echo_ping($fresh, "after $name"), "$name: a fresh client is served afterwards");
            close $fresh;
        }

        # renegotiation from a TLS 1.2 client
        {
            my $c = tls_client($srv, ca => $C->{ca}, version => 'TLSv1_2');
            ok(echo_ping($c, 'before'), 'renegotiation: a TLS 1.2 client served first');
            my $cport = $c->sockport;
            my $ssl = $c->_get_ssl_object;
            $c->blocking(0);
            ok(Net::SSLeay::renegotiate($ssl), 'renegotiation: asked for');
            Net::SSLeay::do_handshake($ssl);
            my $t0 = now();
            while (now() - $t0 < 3 * $W && !$srv->count(qr/^remove $cport$/)) {
                Net::SSLeay::do_handshake($ssl);
                Net::SSLeay::read($ssl);
                Time::HiRes::sleep(0.05 * $W);
            }
            ok($srv->wait_event(qr/^remove $cport$/, 1 * $W), 'renegotiation: the server ends the connection (remove)');
            my @e = $srv->grep_events(qr/^error $cport /);
            is(scalar @e, 1, 'renegotiation: exactly one error');
            like($e[0] // '', qr/^error $cport connection 127\.0\.0\.1:$cport: TLS: renegotiation refused$/,
                 'renegotiation: "connection 127.0.0.1:PORT: TLS: renegotiation refused"');
            my $fresh = tls_client($srv, ca => $C->{ca});
            ok(echo_ping($fresh, 'after renegotiation'), 'renegotiation: a fresh client is served afterwards');
            close $fresh;
        }

        # with openssl s_client: "R" renegotiates (TLS 1.2): refused; "K"
        # and "k" are TLS 1.3 key updates (with and without a request for
        # one back): no error, the conversation goes on
        {
            my $n0 = $srv->count(qr/^error /);
            my $r = s_client($srv->port, ['-tls1_2', '-CAfile', $C->{ca}], sub {
                my ($w, $out) = @_;
                $w->("hello one\n");
                wait_until(sub { $out->() =~ /^hello one$/m }, 3 * $W);
                $w->("R\n");
                wait_until(sub { $srv->count(qr/^error /) > $n0 }, 3 * $W);
                return 'eof';
            }, 5);
            like($r->{out}, qr/^hello one$/m, 's_client -tls1_2: served');
            like($r->{out} . $r->{err}, qr/RENEGOTIATING/, '... "R": it renegotiates');
            ok($srv->wait_event(qr/^error \d+ .*TLS: renegotiation refused$/, 3 * $W, 2),
               '... refused: "TLS: renegotiation refused"');
            is($srv->count(qr/^error /), $n0 + 1, '... one error');
            for my $cmd ('K', 'k') {
                my $n1 = $srv->count(qr/^error /);
                $r = s_client($srv->port, ['-tls1_3', '-CAfile', $C->{ca}], sub {
                    my ($w, $out) = @_;
                    $w->("before $cmd\n");
                    wait_until(sub { $out->() =~ /^before $cmd$/m }, 3 * $W);
                    $w->("$cmd\n");
                    Time::HiRes::sleep(0.3 * $W);
                    $w->("after $cmd\n");
                    wait_until(sub { $out->() =~ /^after $cmd$/m }, 3 * $W);
                    return 'eof';
                }, 5);
                like($r->{out} . $r->{err}, qr/KEYUPDATE/, "s_client -tls1_3, \"$cmd\": a key update sent");
                like($r->{out}, qr/^after $cmd$/m, '... the conversation goes on after it');
                is($r->{status}, 0, '... s_client ends normally');
                Time::HiRes::sleep(0.1 * $W);
                is($srv->count(qr/^error /), $n1, '... no error');
            }
        }

        # a clean close is no error; one without close_notify is reported
        for my $how (qw(clean fin rst)) {
            my $c = tls_client($srv, ca => $C->{ca});
            ok(echo_ping($c, 'x'), "close ($how): served");
            my $cport = $c->sockport;
            $how eq 'clean' ? close $c : $how eq 'fin' ? dirty_close($c) : rst_close($c);
            ok($srv->wait_event(qr/^remove $cport$/, 3 * $W), "close ($how): remove");
            Time::HiRes::sleep(0.1 * $W);
            my @e = $srv->grep_events(qr/^error $cport /);
            if ($how eq 'clean') {
                is(scalar @e, 0, 'a clean close (close_notify, then FIN): no error');
            }
            else {
                is(scalar @e, 1, "without close_notify ($how): one error");
                like($e[0] // '', qr/^error $cport connection 127\.0\.0\.1:$cport: TLS: \S/,
                     "... \"connection 127.0.0.1:$cport: TLS: REASON\"");
                like($e[0] // '', qr/close_notify|unexpected eof|reset/i, "... saying so ($e[0])")
                    if @e;
                my @ev = grep { /^(error|remove) $cport\b/ } $srv->events;
                like($ev[0] // '', qr/^error /, '... error before remove');
            }
        }
        ok(echo_ping($good, 'still'), 'the first client was served throughout');
        is(stats_of($good)->{rejected}, 0, 'none of these counted as rejected (they were accepted)');
        is($srv->stderr, '', 'nothing on STDERR');
    });

    isd_subtest("backend $be: 50 hostile clients at once, good clients served", sub {
        my $srv = server($be);
        my $good = tls_client($srv, ca => $C->{ca});
        ok(echo_ping($good, 'first'), 'a good client first');
        my @kinds = (
            sub { send_all($_[0], "hello\n", 1) },                       # plain text
            sub { send_all($_[0], "GET / HTTP/1.0\r\n\r\n", 1) },        # HTTP
            sub { send_all($_[0], substr($HELLO, 0, 30), 1) },           # stalls
            sub { send_all($_[0], "\x16\x03\x01\xff\xff", 1) },          # huge length
            sub { send_all($_[0], $HELLO, 1); },                         # then silent
        );
        my (@hostile, @vanish);
        my $t0 = now();
        for my $i (0 .. 49) {
            my $c = client($srv);
            $kinds[$i % @kinds]->($c);
            push @hostile, $c;
            if ($i % 10 == 9) {
                ok(echo_ping($good, "during $i"), "the good client is served while they come ($i)");
            }
        }
        my $ok = 0;
        for my $i (1 .. 10) {
            my $f = tls_try_client($srv->port, ca => $C->{ca}, timeout => 3);
            $ok++ if $f && echo_ping($f, "fresh $i", 3);
            close $f if $f;
        }
        is($ok, 10, 'ten fresh TLS clients served meanwhile');
        ok(now() - $t0 < 5 * $HT, sprintf('... without waiting for the stalled ones (%.2f s)', now() - $t0));
        ok($srv->wait_event(qr/^error undef /, 5 * $W, 50), 'an error for each of the 50 (the stalled ones at handshake_timeout)');
        for my $c (@hostile) {
            read_until_eof($c, 1);
        }
        is(scalar(grep { got_eof($_) } @hostile), 50, 'every hostile connection was closed by the server');
        Time::HiRes::sleep(0.2 * $W);
        is($srv->count(qr/^error /), 50, 'exactly 50 errors');
        is($srv->count(qr/^add /), 11, 'add only for the good clients');
        is($srv->count(qr/^remove /), 10, 'remove only for the ten fresh ones (closed)');
        ok(echo_ping($good, 'last'), 'the good client is still served');
        is(stats_of($good)->{rejected}, 50, 'stats->{rejected} 50');
        is($srv->stderr, '', 'nothing on STDERR');
    });
}

done_testing();
