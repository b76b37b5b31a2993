#!perl
# TLS in the C core (issue 14): has_tls; what new takes and refuses in
# tls => {...} (each croak names the option, and for a file the file and
# the reason); and on every backend, with IO::Socket::SSL clients and
# `openssl s_client`: echo over TLS 1.3 and 1.2, $io->tls in add and later,
# 1000 pipelined lines and a 600 KiB line, session resumption,
# min_version refusing 1.2, verify_client none/optional/require with good,
# missing, expired and foreign client certificates (peer_subject and
# peer_issuer, kept on a resumed session; a session from a listener
# without client certificates does not open one that requires them), SNI
# (exact names, wildcards, the default), ALPN (agreed, none in common), a
# TLS and a plain listener on one server (and tls => 0), a UNIX listener,
# a PROXY header before the handshake, ca_path, max_line, idle_timeout,
# length and raw framing, broadcast to TLS and plain clients, a getline
# that waits, a client's close_notify after its last line, and
# close_notify whenever the server closes.  Hostile peers:
# t/63-tls-hostile.t; STARTTLS, tls_reload, big replies and the rest:
# t/64-tls-more.t.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use TestISD qw(:DEFAULT ask);
use TestTLS;
use Test::More;
use File::Copy ();
use File::Temp ();
use IO::Select ();
use POSIX ();
use IO::Socket::UNIX ();
use Time::HiRes ();
use IO::Socket::INET::Daemon;

my $why = tls_skip_reason();
plan skip_all => $why if $why;

my $C = make_certs();
my %TLS = (cert_file => $C->{localhost}, key_file => $C->{localhost_key});
my $CROAK = qr/^IO::Socket::INET::Daemon::new: tls: /;

# extra commands: who (peerhost peerport), shout TEXT (broadcast), shoutbig
# N (broadcast N bytes of pattern), two (a second getline, which waits
# for the next line)
my %MORE = (
    who => sub { $_[0]->print($_[0]->peerhost, ' ', $_[0]->peerport, "\n"); 1 },
    shout => sub { my ($io, $d, $arg) = @_; my $n = $d->broadcast("* $arg\n"); $io->print("sent $n\n"); 1 },
    shoutbig => sub { my ($io, $d, $arg) = @_; $d->broadcast(pattern($arg)); 1 },
    two => sub {
        my ($io) = @_;
        $io->getline;                   # (the line data was called with)
        my $next = $io->getline;
        $io->print('second: ', defined $next ? $next : "undef\n");
        1;
    },
);

sub server {
    my ($be, %o) = @_;
    return start_server(backend => $be, callback => tls_callbacks(commands => \%MORE), child_deadline => 25 * $TestTLS::SLOW,
                        child_init => sub { log_event('addresses %s', join ' ', $_[0]->addresses) },
                        %o);
}

# the server's view of the connection: $io->tls as a hash (undef: plain)
sub tls_of { tls_unflat(ask($_[0], 'tls')) }

# the port of listener $i (0-based) from the "addresses" event
sub port_of {
    my ($srv, $i) = @_;
    $srv->wait_event(qr/^addresses /, 5);
    my ($a) = $srv->grep_events(qr/^addresses /);
    my @a = split ' ', ($a || '');
    return $a[$i + 1] && $a[$i + 1] =~ /:(\d+)\z/ ? $1 : undef;
}

sub no_errors {
    my ($srv, $what) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    is(join("\n", $srv->grep_events(qr/^error /)), '', "$what: no error callback");
    is($srv->stderr, '', "$what: nothing on STDERR");
}

# ------------------------------------------------------------ has_tls, new

subtest 'has_tls: OpenSSL\'s version string' => sub {
    my $v = IO::Socket::INET::Daemon->has_tls;
    like($v, qr/^OpenSSL \d+\.\d+/, "has_tls is OpenSSL's version ($v)");
};

subtest 'new: tls options it refuses, naming the option (and the file and the reason)' => sub {
    my $missing = "$C->{dir}/no-such.pem";
    my @bad = (
        [ {}, qr/${CROAK}cert_file/, 'no cert_file' ],
        [ { cert_file => $missing }, qr/${CROAK}cert_file.*\Q$missing\E.*no such file/i, 'a missing cert_file' ],
        [ { cert_file => $C->{notpem} }, qr/${CROAK}cert_file.*\Q$C->{notpem}\E: ?\S/, 'a cert_file that is not PEM' ],
        [ { cert_file => $C->{localhost}, key_file => $missing },
          qr/${CROAK}key_file.*\Q$missing\E.*no such file/i, 'a missing key_file' ],
        [ { cert_file => $C->{localhost}, key_file => $C->{notpem} },
          qr/${CROAK}key_file.*\Q$C->{notpem}\E: ?\S/, 'a key_file that is not PEM' ],
        [ { cert_file => $C->{localhost}, key_file => $C->{other_key} },
          qr/${CROAK}key_file.*\Q$C->{other_key}\E.*key values mismatch/, 'a key that does not match' ],
        [ { cert_file => $C->{localhost} }, qr/${CROAK}.*\Q$C->{localhost}\E/,
          'a cert_file without its key and no key_file' ],
        [ { %TLS, bogus => 1 }, qr/${CROAK}.*bogus/, 'an unknown key' ],
        [ { %TLS, verify_client => 'require' }, qr/${CROAK}verify_client.*ca_file/, 'require without ca_file or ca_path' ],
        [ { %TLS, verify_client => 'optional' }, qr/${CROAK}verify_client/, 'optional without ca_file or ca_path' ],
        [ { %TLS, verify_client => 'sometimes', ca_file => $C->{ca} }, qr/${CROAK}verify_client.*sometimes/,
          'verify_client: an unknown mode' ],
        [ { %TLS, ca_file => $missing }, qr/${CROAK}ca_file.*\Q$missing\E/, 'a missing ca_file' ],
        [ { %TLS, ca_path => $missing }, qr/${CROAK}ca_path.*\Q$missing\E/, 'a missing ca_path' ],
        [ { %TLS, min_version => 'TLSv1.1' }, qr/${CROAK}min_version.*TLSv1\.1/, 'min_version TLSv1.1' ],
        [ { %TLS, min_version => 'SSLv3' }, qr/${CROAK}min_version.*SSLv3/, 'min_version SSLv3' ],
        [ { %TLS, ciphers => 'NO-SUCH-CIPHER' }, qr/${CROAK}ciphers.*NO-SUCH-CIPHER/, 'ciphers that match nothing' ],
        [ { %TLS, ciphersuites => 'TLS_NO_SUCH_SUITE' }, qr/${CROAK}ciphersuites.*TLS_NO_SUCH_SUITE/,
          'ciphersuites that match nothing' ],
        [ { %TLS, handshake_timeout => -1 }, qr/${CROAK}handshake_timeout.*-1/, 'handshake_timeout -1' ],
        [ { %TLS, handshake_timeout => 'soon' }, qr/${CROAK}handshake_timeout.*soon/, 'handshake_timeout soon' ],
        [ { %TLS, sni => { 'mail.example' => { cert_file => $missing } } },
          qr/${CROAK}.*\Q$missing\E.*no such file/i, 'an SNI certificate that is missing' ],
        [ { %TLS, sni => { 'mail.example' => { cert_file => $C->{mail}, key_file => $C->{other_key} } } },
          qr/${CROAK}.*\Q$C->{other_key}\E.*key values mismatch/, 'an SNI key that does not match' ],
    );
    for my $b (@bad) {
        my ($tls, $re, $name) = @$b;
        my $ok = eval { IO::Socket::INET::Daemon->new(port => 0, host => '127.0.0.1', tls => $tls); 1 };
        my $err = $@;
        ok(!$ok, "refused: $name");
        like($err, $re, '... saying why') or diag $err;
        like($err, qr/ at \Q$0\E line \d+/, '... from the caller') if $err;
    }
    # a file that cannot be read (as root: in a child that is nobody)
    SKIP: {
        my $unreadable = "$C->{dir}/unreadable.pem";
        File::Copy::copy($C->{combined}, $unreadable) or die "copy: $!";
        chmod 0, $unreadable;
        my $err;
        if ($> == 0) {
            my $uid = getpwnam('nobody');
            skip 'running as root and there is no user nobody to read as', 1 unless defined $uid;
            pipe(my $r, my $w) or die "pipe: $!";
            my $pid = fork;
            die "fork: $!" unless defined $pid;
            if (!$pid) {
                close $r;
                POSIX::setgid(65534);
                POSIX::setuid($uid) or POSIX::_exit(3);
                eval { IO::Socket::INET::Daemon->new(port => 0, host => '127.0.0.1',
                                                     tls => { cert_file => $unreadable }) };
                print $w ($@ || 'no croak');
                close $w;
                POSIX::_exit(0);
            }
            close $w;
            local $/;
            $err = <$r>;
            waitpid $pid, 0;
        }
        else {
            eval { IO::Socket::INET::Daemon->new(port => 0, host => '127.0.0.1', tls => { cert_file => $unreadable }) };
            $err = $@;
        }
        like($err // '', qr/${CROAK}cert_file.*\Q$unreadable\E.*Permission denied/,
             'refused: a cert_file that cannot be read, saying why');
    }

    # the same in a listen entry
    my $ok = eval { IO::Socket::INET::Daemon->new(listen => [{ address => '127.0.0.1:0',
                                                             tls => { cert_file => $missing } }]); 1 };
    ok(!$ok, 'refused in a listen entry too');
    like($@, qr/${CROAK}cert_file.*\Q$missing\E/, '... saying why');

    my @good = (
        [ { %TLS }, 'cert_file and key_file' ],
        [ { cert_file => $C->{combined} }, 'the key in cert_file' ],
        [ { %TLS, verify_client => 'none' }, 'verify_client none' ],
        [ { %TLS, verify_client => 'optional', ca_file => $C->{ca} }, 'verify_client optional, ca_file' ],
        [ { %TLS, verify_client => 'require', ca_path => $C->{dir} }, 'verify_client require, ca_path' ],
        [ { %TLS, min_version => 'TLSv1.3', ciphersuites => 'TLS_AES_128_GCM_SHA256',
            ciphers => 'ECDHE-ECDSA-AES128-GCM-SHA256', alpn => ['h2', 'http/1.1'],
            handshake_timeout => 0.5, starttls => 1 }, 'every option' ],
        [ { %TLS, sni => { 'mail.example' => { cert_file => $C->{mail}, key_file => $C->{mail_key} } } },
          'sni' ],
    );
    for my $g (@good) {
        my $d = eval { IO::Socket::INET::Daemon->new(port => 0, host => '127.0.0.1', tls => $g->[0]) };
        ok($d, "taken: $g->[1]") or diag $@;
    }
};

# ------------------------------------------------------------ every backend

for my $be (backends()) {
    isd_subtest("backend $be: echo over TLS 1.3 and 1.2, \$io->tls", sub {
        my $srv = server($be, tls => { %TLS });
        my $c = tls_client($srv, ca => $C->{ca});
        ok(echo_ping($c, 'hello over TLS'), 'TLS 1.3: a line echoed');
        is(peer_subject($c), 'localhost', 'the client got the server\'s certificate (verified for localhost)');
        my $t = tls_of($c) || {};
        is($t->{version}, 'TLSv1.3', '$io->tls->{version} TLSv1.3');
        like($t->{cipher} // '', qr/^TLS_(AES_\d+_GCM_SHA\d+|CHACHA20_POLY1305_SHA256)$/, "... cipher ($t->{cipher})");
        is($c->get_cipher, $t->{cipher}, '... the one the client agreed on');
        ok(exists $t->{sni} && !defined $t->{sni}, '... sni undef (none sent)');
        ok(exists $t->{alpn} && !defined $t->{alpn}, '... alpn undef');
        ok(!exists $t->{peer_subject} && !exists $t->{peer_issuer}, '... no peer_subject, peer_issuer');
        my $port = $c->sockport;
        ok($srv->wait_event(qr/^add $port /, 3), 'add ran');
        my ($add) = $srv->grep_events(qr/^add $port /);
        like($add // '', qr/^add $port .*version=TLSv1\.3/, '$io->tls is already there in add');

        my $c12 = tls_client($srv, ca => $C->{ca}, version => 'TLSv1_2', sni => 'localhost');
        ok(echo_ping($c12, 'hello over TLS 1.2'), 'TLS 1.2: a line echoed');
        $t = tls_of($c12) || {};
        is($t->{version}, 'TLSv1.2', '$io->tls->{version} TLSv1.2');
        is($t->{cipher}, $c12->get_cipher, "... cipher $t->{cipher}");
        is($t->{sni}, 'localhost', '... sni localhost');

        # 1000 lines in one write: every one echoed, in order
        my $lines = join '', map { "line $_ " . ('y' x ($_ % 50)) . "\n" } 1 .. 1000;
        is(send_all($c, $lines, 5), length $lines, '1000 pipelined lines sent at once');
        my $got = read_n($c, length $lines, 10 * $TestTLS::SLOW);
        ok($got eq $lines, 'all 1000 echoed, in order')
            or diag(sprintf 'got %d of %d bytes', length $got, length $lines);

        # one line of 600 KiB, over many records
        my $long = ('L' x (600 * 1024)) . "\n";
        is(send_all($c, $long, 5), length $long, 'a 600 KiB line sent');
        ok(read_n($c, length $long, 5 * $TestTLS::SLOW) eq $long, '... echoed whole');

        # a client that resumes its session is served
        for my $v ('TLSv1_3', 'TLSv1_2') {
            my $ctx = IO::Socket::SSL::SSL_Context->new(SSL_verify_mode => 0, SSL_session_cache_size => 4,
                                                        SSL_version => $v);
            for my $i (1, 2) {
                my $r = tls_client($srv, ssl => { SSL_reuse_ctx => $ctx, SSL_session_key => 'k' });
                ok(echo_ping($r, "resume $i"), "$v, a client with a session cache, connection $i: served");
                my $t = tls_of($r) || {};
                is($t->{version}, $v =~ tr/_/./r, "... over $v");
                ok(length($t->{cipher} // ''), '... $io->tls->{cipher} set');
                note("$v, connection $i: session resumed: " . ($r->get_session_reused ? 'yes' : 'no'));
                close $r;
            }
        }

        # the server closes: close_notify first
        is(ask($c, 'quit'), 'bye', 'quit: bye');
        read_until_eof($c, 3);
        ok(got_eof($c), 'data returning false: the connection ends');
        ok(clean_eof($c), '... with close_notify (a clean TLS shutdown)');
        is(ask($c12, 'close'), 'bye', 'close: bye');
        read_until_eof($c12, 3);
        ok(got_eof($c12) && clean_eof($c12), '$io->close: close_notify too (TLS 1.2)');
        my ($p13, $p12) = ($c->sockport, $c12->sockport);
        ok($srv->wait_event(qr/^remove $p13$/, 3), 'remove for the one whose data returned false');
        Time::HiRes::sleep(0.1);
        is($srv->count(qr/^remove $p12$/), 0, '... not for the one closed with $io->close (as $server->remove)');
        no_errors($srv, 'echo');
    });

    isd_subtest("backend $be: min_version => 'TLSv1.3' refuses a TLS 1.2 client", sub {
        my $srv = server($be, tls => { %TLS, min_version => 'TLSv1.3' });
        my $c = tls_try_client($srv->port, ca => $C->{ca}, version => 'TLSv1_2');
        ok(!$c, 'the TLS 1.2 client\'s handshake fails');
        ok($srv->wait_event(qr/^error /, 3), 'an error callback');
        my @e = $srv->grep_events(qr/^error /);
        is(scalar @e, 1, 'exactly one');
        like($e[0] // '', qr/^error undef connection from 127\.0\.0\.1:\d+ refused: TLS handshake: \S/,
             '"connection from 127.0.0.1:PORT refused: TLS handshake: REASON"');
        like($e[0] // '', qr/unsupported protocol|protocol version/i, "... the reason ($e[0])");
        my $c13 = tls_client($srv, ca => $C->{ca}, version => 'TLSv1_3');
        ok(echo_ping($c13, 'hi'), 'a TLS 1.3 client is served');
        is($srv->count(qr/^add /), 1, 'add only for the 1.3 client');
        is($srv->count(qr/^remove /), 0, 'no remove for the refused one');
    });

    isd_subtest("backend $be: verify_client none, optional, require", sub {
        my %good = (cert => $C->{client}, key => $C->{client_key});
        my %expired = (cert => $C->{expired}, key => $C->{expired_key});
        my %foreign = (cert => $C->{foreign}, key => $C->{foreign_key});

        # none: no certificate is asked for, one sent is not looked at
        my $srv = server($be, tls => { %TLS, ca_file => $C->{ca} });
        my $c = tls_client($srv, ca => $C->{ca}, %good);
        my $t = tls_of($c) || {};
        is($t->{version}, 'TLSv1.3', 'none: served');
        ok(!exists $t->{peer_subject}, 'none: no peer_subject');
        close $c if $c;
        $c = tls_client($srv, ca => $C->{ca}, %expired);
        ok(echo_ping($c, 'x'), 'none: an expired client certificate is not looked at');
        no_errors($srv, 'none');
        $srv->stop;

        for my $mode (qw(optional require)) {
            $srv = server($be, tls => { %TLS, ca_file => $C->{ca}, verify_client => $mode });
            my $nerr = 0;
            for my $v ('TLSv1_3', 'TLSv1_2') {
                my $what = "$mode, $v";
                close $c if $c;
                $c = tls_client($srv, ca => $C->{ca}, version => $v, %good);
                $t = tls_of($c) || {};
                is($t->{peer_subject}, 'CN=client', "$what: a good certificate: peer_subject CN=client");
                is($t->{peer_issuer}, 'CN=isd-test-ca', "$what: ... peer_issuer CN=isd-test-ca");
                my $port = $c->sockport;
                my ($add) = $srv->grep_events(qr/^add $port /);
                like($add // '', qr/peer_subject=CN=client/, "$what: ... already in add");
                close $c;

                if ($mode eq 'optional') {
                    close $c if $c;
                    $c = tls_client($srv, ca => $C->{ca}, version => $v);
                    $t = tls_of($c) || {};
                    is($t->{version}, $v =~ tr/_/./r, "$what: no certificate: served");
                    ok(!exists $t->{peer_subject}, "$what: ... without peer_subject");
                    close $c;
                }
                else {
                    ok(not_served($srv->port, ca => $C->{ca}, version => $v), "$what: no certificate: not served");
                    $nerr++;
                    ok($srv->wait_event(qr/^error /, 3, $nerr), "$what: ... an error");
                    my @e = $srv->grep_events(qr/^error /);
                    like($e[-1] // '', qr/^error undef connection from 127\.0\.0\.1:\d+ refused: TLS handshake: .*peer did not return a certificate/,
                         "$what: ... \"peer did not return a certificate\"");
                }

                ok(not_served($srv->port, ca => $C->{ca}, version => $v, %expired), "$what: an expired certificate: not served");
                $nerr++;
                ok($srv->wait_event(qr/^error /, 3, $nerr), "$what: ... an error");
                my @e = $srv->grep_events(qr/^error /);
                like($e[-1] // '', qr/^error undef connection from 127\.0\.0\.1:\d+ refused: TLS handshake: .*certificate has expired/,
                     "$what: ... \"certificate has expired\"");

                ok(not_served($srv->port, ca => $C->{ca}, version => $v, %foreign), "$what: a foreign CA's certificate: not served");
                $nerr++;
                ok($srv->wait_event(qr/^error /, 3, $nerr), "$what: ... an error");
                @e = $srv->grep_events(qr/^error /);
                like($e[-1] // '', qr/^error undef connection from 127\.0\.0\.1:\d+ refused: TLS handshake: .*(certificate verify failed|unable to get local issuer certificate)/,
                     "$what: ... \"certificate verify failed\"");
            }
            # a subject of two parts, as the POD shows it ('CN=alice,O=Example')
            $c = tls_client($srv, ca => $C->{ca}, cert => $C->{alice}, key => $C->{alice_key});
            $t = tls_of($c) || {};
            is($t->{peer_subject}, 'CN=alice,O=Example', "$mode: O=Example, CN=alice: peer_subject 'CN=alice,O=Example'");
            close $c;

            # a resumed session keeps the client's certificate
            for my $v ('TLSv1_3', 'TLSv1_2') {
                my $ctx = IO::Socket::SSL::SSL_Context->new(SSL_verify_mode => 0, SSL_session_cache_size => 4,
                                                            SSL_version => $v, SSL_cert_file => $C->{client},
                                                            SSL_key_file => $C->{client_key});
                for my $i (1, 2) {
                    my $r = tls_client($srv, ssl => { SSL_reuse_ctx => $ctx, SSL_session_key => 'k' });
                    my $re = $r->get_session_reused ? 'resumed' : 'not resumed';
                    $t = tls_of($r) || {};
                    is($t->{peer_subject}, 'CN=client', "$mode, $v, connection $i ($re): peer_subject CN=client");
                    close $r;
                }
            }
            Time::HiRes::sleep(0.2);
            is($srv->count(qr/^error /), $nerr, "$mode: exactly one error per refused client");
            is($srv->count(qr/^add /), $mode eq 'optional' ? 9 : 7, "$mode: add only for those served");
            is($srv->count(qr/^remove /), $mode eq 'optional' ? 9 : 7, "$mode: remove only for those added");
            is($srv->stderr, '', "$mode: nothing on STDERR");
            $srv->stop;
        }
    });

    isd_subtest("backend $be: a session from a listener without client certificates does not open one that requires them", sub {
        my $srv = server($be, listen => [{ address => '127.0.0.1:0', tls => { %TLS } },
                                         { address => '127.0.0.1:0',
                                           tls => { %TLS, verify_client => 'require', ca_file => $C->{ca} } }]);
        my ($open, $strict) = (port_of($srv, 0), port_of($srv, 1));
        for my $v ('TLSv1_3', 'TLSv1_2') {
            my $ctx = IO::Socket::SSL::SSL_Context->new(SSL_verify_mode => 0, SSL_session_cache_size => 4,
                                                        SSL_version => $v);
            my $r = tls_client($open, ssl => { SSL_reuse_ctx => $ctx, SSL_session_key => 'k' });
            ok(echo_ping($r, 'x'), "$v: served on the listener without verify_client (a session to take away)");
            close $r;
            $r = tls_client($open, ssl => { SSL_reuse_ctx => $ctx, SSL_session_key => 'k' });
            ok($r->get_session_reused, "$v: ... which resumes there") or diag('no resumption: the check below proves less');
            close $r;
            ok(not_served($strict, ssl => { SSL_reuse_ctx => $ctx, SSL_session_key => 'k' }),
               "$v: that session on the listener that requires a certificate: not served");
        }
        ok($srv->wait_event(qr/^error undef .*refused: TLS handshake: /, 3, 2), 'refused with an error each');
        is($srv->count(qr/^add \d+ .*peer_subject/), 0, 'no add with a peer_subject');
    });

    isd_subtest("backend $be: SNI picks the certificate", sub {
        my $srv = server($be, tls => { %TLS, sni => { 'mail.example' => { cert_file => $C->{mail},
                                                                          key_file => $C->{mail_key} } } });
        my $c = tls_client($srv, ca => $C->{ca}, sni => 'mail.example', name => 'mail.example');
        is(peer_subject($c), 'mail.example', 'SNI mail.example: the mail.example certificate (verified)');
        is((tls_of($c) || {})->{sni}, 'mail.example', '... $io->tls->{sni} mail.example');
        close $c if $c;
        $c = tls_client($srv, ca => $C->{ca}, sni => 'localhost');
        is(peer_subject($c), 'localhost', 'SNI localhost: the default certificate');
        is((tls_of($c) || {})->{sni}, 'localhost', '... sni localhost');
        close $c if $c;
        $c = tls_client($srv, ca => $C->{ca}, sni => 'other.example');
        is(peer_subject($c), 'localhost', 'SNI other.example: the default certificate');
        is((tls_of($c) || {})->{sni}, 'other.example', '... sni other.example');
        close $c if $c;
        $c = tls_client($srv, ca => $C->{ca});
        is(peer_subject($c), 'localhost', 'no SNI: the default certificate');
        ok(!defined((tls_of($c) || {})->{sni}), '... sni undef');
        close $c if $c;
        $c = tls_client($srv, ca => $C->{ca}, sni => 'mail.example', name => 'mail.example', version => 'TLSv1_2');
        is(peer_subject($c), 'mail.example', 'TLS 1.2 with SNI mail.example: the mail.example certificate');
        close $c;
        no_errors($srv, 'SNI');
        $srv->stop;

        # a wildcard: any one label in front; an exact name wins
        $srv = server($be, tls => { %TLS, sni => { 'mail.example' => { cert_file => $C->{mail}, key_file => $C->{mail_key} },
                                                   '*.example' => { cert_file => $C->{localhost2},
                                                                    key_file => $C->{localhost2_key} } } });
        for my $case (['mail.example', 'mail.example', 'an exact name wins over the wildcard'],
                      ['www.example', 'localhost-2', '*.example takes www.example'],
                      ['WWW.Example', 'localhost-2', '... in any case'],
                      ['a.b.example', 'localhost', '... not two labels'],
                      ['example', 'localhost', '... nor none']) {
            my ($name, $cn, $what) = @$case;
            $c = tls_client($srv, sni => $name);
            is(peer_subject($c), $cn, "SNI $name: $cn ($what)");
            close $c;
        }
        no_errors($srv, 'SNI wildcards');
    });

    isd_subtest("backend $be: ALPN", sub {
        my $srv = server($be, tls => { %TLS, alpn => ['h2', 'http/1.1'] });
        my $c = tls_client($srv, ca => $C->{ca}, alpn => ['http/1.1', 'h2']);
        is($c->alpn_selected, 'h2', 'both offered: the server\'s preference, h2');
        is((tls_of($c) || {})->{alpn}, 'h2', '... $io->tls->{alpn} h2');
        close $c if $c;
        $c = tls_client($srv, ca => $C->{ca}, alpn => ['http/1.1'], version => 'TLSv1_2');
        is($c->alpn_selected, 'http/1.1', 'only http/1.1 offered (TLS 1.2): http/1.1');
        is((tls_of($c) || {})->{alpn}, 'http/1.1', '... $io->tls->{alpn} http/1.1');
        close $c if $c;
        $c = tls_client($srv, ca => $C->{ca});
        ok(!defined((tls_of($c) || {})->{alpn}), 'no ALPN offered: served, alpn undef');
        no_errors($srv, 'ALPN');
        # none in common: served without a protocol (as the POD says)
        close $c if $c;
        $c = tls_try_client($srv->port, ca => $C->{ca}, alpn => ['spdy/3']);
        ok($c && echo_ping($c, 'x'), 'none in common: served');
        ok(!defined(($c && tls_of($c) || {})->{alpn}), '... alpn undef');
        ok(!defined($c && $c->alpn_selected), '... the client agreed on none either');
        close $c if $c;
        Time::HiRes::sleep(0.1);
        no_errors($srv, 'ALPN, none in common');
    });

    isd_subtest("backend $be: a TLS and a plain listener on one server", sub {
        my $srv = server($be, listen => [{ address => '127.0.0.1:0', tls => { %TLS } }, '127.0.0.1:0']);
        my ($tp, $pp) = (port_of($srv, 0), port_of($srv, 1));
        ok($tp && $pp, "two ports ($tp, $pp)");
        my $c = tls_client($tp, ca => $C->{ca});
        is((tls_of($c) || {})->{version}, 'TLSv1.3', 'the TLS listener: TLS');
        my $p = client($pp);
        ok(echo_ping($p, 'plain'), 'the plain listener: plain text echoed');
        is(ask($p, 'tls'), 'undef', '... $io->tls undef there');
        my $pport = $p->sockport;
        my ($add) = $srv->grep_events(qr/^add $pport /);
        is($add, "add $pport undef", '... in add too');
        no_errors($srv, 'two listeners');
        $srv->stop;

        # top-level tls, off for one entry
        $srv = server($be, tls => { %TLS },
                      listen => ['127.0.0.1:0', { address => '127.0.0.1:0', tls => 0 }]);
        ($tp, $pp) = (port_of($srv, 0), port_of($srv, 1));
        close $c if $c;
        $c = tls_client($tp, ca => $C->{ca});
        ok(echo_ping($c, 'hello'), 'tls in new: the first listener is TLS');
        $p = client($pp);
        is(ask($p, 'tls'), 'undef', 'tls => 0 in the entry: the second is plain');
        no_errors($srv, 'tls => 0');
    });

    isd_subtest("backend $be: framings and limits over TLS", sub {
        my $srv = server($be, tls => { %TLS }, max_line => 100);
        my $c = tls_client($srv, ca => $C->{ca});
        ok(echo_ping($c, 'short'), 'a short line');
        my $port = $c->sockport;
        send_all($c, ('z' x 200) . "\n");
        read_until_eof($c, 3);
        ok(got_eof($c), 'a line over max_line: dropped');
        ok($srv->wait_event(qr/^remove $port$/, 3), '... remove');
        my @e = $srv->grep_events(qr/^error $port /);
        is(scalar @e, 1, '... one error, with $io');
        like($e[0] // '', qr/line too long \(over max_line 100 bytes\)/, "... about the line ($e[0])");
        $srv->stop;

        # idle_timeout: the error, remove, and close_notify
        $srv = server($be, tls => { %TLS }, idle_timeout => 0.5);
        $c = tls_client($srv, ca => $C->{ca});
        ok(echo_ping($c, 'then idle'), 'idle_timeout: served');
        $port = $c->sockport;
        my $t0 = now();
        read_until_eof($c, 3);
        ok(got_eof($c), sprintf('... ended after %.2f s of silence', now() - $t0));
        ok(clean_eof($c), '... with close_notify');
        ok($srv->wait_event(qr/^remove $port$/, 2), '... remove');
        @e = $srv->grep_events(qr/^error $port /);
        is(scalar @e, 1, '... one error');
        like($e[0] // '', qr/idle timeout/, "... \"idle timeout\" ($e[0])");
        close $c;
        $srv->stop;

        $srv = start_server(backend => $be, tls => { %TLS }, framing => 'length', length_format => 'n',
                            callback => { data => sub { $_[0]->send_message(uc $_[2]); 1 },
                                          error => sub { log_event('error %s', $_[2]) } });
        close $c if $c;
        $c = tls_client($srv, ca => $C->{ca});
        send_all($c, pack('n/a*', 'abc') . pack('n/a*', 'hello tls'));
        is(read_n($c, 16, 3 * $TestTLS::SLOW), pack('n/a*', 'ABC') . pack('n/a*', 'HELLO TLS'), 'length framing: two messages answered');
        is(join("\n", $srv->grep_events(qr/^error /)), '', '... no error');
    });

    isd_subtest("backend $be: a UNIX listener, a PROXY header before TLS, ca_path", sub {
        my $dir = File::Temp->newdir('isd-tlsu-XXXXXX', TMPDIR => 1, CLEANUP => 1);
        my $path = "$dir/s.sock";
        my $srv = server($be, listen => ["unix:$path",
                                         { address => '127.0.0.1:0', proxy_protocol => 1, tls => { %TLS } }],
                         tls => { %TLS });
        my $pp = port_of($srv, 1);
        my $u = IO::Socket::UNIX->new(Peer => $path) or die "connect $path: $!\n";
        ok(tls_upgrade($u, ca => $C->{ca}), 'a UNIX listener with tls: the handshake succeeds');
        ok(echo_ping($u, 'over UNIX'), '... a line echoed');
        is((tls_of($u) || {})->{version}, 'TLSv1.3', '... $io->tls');
        close $u;

        my $c = client($pp);
        send_all($c, "PROXY TCP4 192.0.2.1 192.0.2.2 1111 443\r\n", 3);
        ok(tls_upgrade($c, ca => $C->{ca}), 'a PROXY header, then the TLS handshake');
        is(ask($c, 'who'), '192.0.2.1 1111', '... the header\'s client');
        is((tls_of($c) || {})->{version}, 'TLSv1.3', '... over TLS');
        close $c;
        no_errors($srv, 'UNIX, PROXY');
        $srv->stop;

        # client certificates checked against a hashed directory
        my $capath = "$dir/cas";
        mkdir $capath or die "$capath: $!";
        File::Copy::copy($C->{ca}, "$capath/ca.pem") or die "copy: $!";
        system(openssl_bin(), 'rehash', $capath) == 0 or die "openssl rehash failed\n";
        $srv = server($be, tls => { %TLS, verify_client => 'require', ca_path => $capath });
        $c = tls_client($srv, ca => $C->{ca}, cert => $C->{client}, key => $C->{client_key});
        is((tls_of($c) || {})->{peer_subject}, 'CN=client', 'ca_path: a good client certificate is taken');
        close $c;
        ok(not_served($srv->port, ca => $C->{ca}, cert => $C->{foreign}, key => $C->{foreign_key}),
           'ca_path: a foreign one is refused');
        ok($srv->wait_event(qr/^error undef .*refused: TLS handshake: /, 3), '... with an error');
    });

    isd_subtest("backend $be: broadcast, a getline that waits, raw framing, a last line at the end", sub {
        my $srv = server($be, listen => [{ address => '127.0.0.1:0', tls => { %TLS } }, '127.0.0.1:0']);
        my ($tp, $pp) = (port_of($srv, 0), port_of($srv, 1));
        my @tls = map { tls_client($tp, ca => $C->{ca}) } 1 .. 3;
        my $plain = client($pp);
        ok(echo_ping($_, 'ready'), 'client ready') for @tls, $plain;
        is(ask($tls[0], 'shout hi'), '* hi', 'broadcast: the sender gets it');
        is(read_line($tls[0], 3), "sent 4\n", '... sent to 4');
        is(read_line($_, 3), "* hi\n", '... every other client too (TLS and plain)') for @tls[1, 2], $plain;
        my $big = 3 * 1024 * 1024 + 5;
        print { $tls[1] } "shoutbig $big\n";
        my $want = pattern($big);
        for my $c (@tls, $plain) {
            my $got = read_n($c, $big, 10 * $TestTLS::SLOW);
            ok($got eq $want, 'a 3 MiB broadcast arrives intact at each') or diag(length($got) . " bytes");
        }

        # a second getline in data waits for the next line
        print { $tls[2] } "two\n";
        Time::HiRes::sleep(0.2);
        print { $tls[2] } "next line\n";
        is(read_line($tls[2], 3), "second: next line\n", 'a getline in data waits for the next TLS record');
        print { $tls[2] } "two\nsame record\n";
        is(read_line($tls[2], 3), "second: same record\n", '... or takes it from the same one');
        ok(echo_ping($tls[0], 'others'), 'the others are served after');
        print $plain "two\n";
        Time::HiRes::sleep(0.2);
        print $plain "next line\n";
        is(read_line($plain, 3), "second: next line\n", '(the same on the plain listener)');

        # a last line without "\n", then close_notify
        my $c = $tls[0];
        my $port = $c->sockport;
        print $c "no newline";
        my $ssl = $c->_get_ssl_object;
        is(Net::SSLeay::shutdown($ssl), 0, 'a client sends a last line without "\n", then close_notify, and reads on');
        ok($srv->wait_event(qr/^data $port no newline$/, 3), '... the line is delivered at close_notify');
        my ($reply, $t0) = ('', now());
        while (now() - $t0 < 3) {
            next unless IO::Select->new($c)->can_read(0.5);
            my ($b, $rv) = Net::SSLeay::read($ssl);
            last if !defined $rv || $rv <= 0;
            $reply .= $b;
        }
        is($reply, 'no newline', '... the reply to it still comes');
        ok(Net::SSLeay::get_shutdown($ssl) & 2, '... then the server\'s close_notify');
        ok($srv->wait_event(qr/^remove $port$/, 3), '... remove');
        close $c;
        close $_ for @tls[1, 2];
        Time::HiRes::sleep(0.2);
        no_errors($srv, 'broadcast');
        $srv->stop;

        # raw framing: bytes as they come, all 256 values
        $srv = start_server(backend => $be, tls => { %TLS }, framing => 'raw',
                            callback => { data => sub { my $n = $_[0]->sysread(my $b, 1 << 20);
                                                        $_[0]->print($b) if $n; 1 },
                                          error => sub { log_event('error %s', $_[2]) } });
        $c = tls_client($srv, ca => $C->{ca});
        my $bytes = join '', map { chr } (0 .. 255) x 200;
        is(send_all($c, $bytes, 5), length $bytes, 'raw framing: 51200 bytes, every value, sent');
        ok(read_n($c, length $bytes, 5 * $TestTLS::SLOW) eq $bytes, '... echoed as they were');
        close $c;
        Time::HiRes::sleep(0.1);
        is(join("\n", $srv->grep_events(qr/^error /)), '', '... no error');
    });

    isd_subtest("backend $be: openssl s_client", sub {
        my $srv = server($be, tls => { %TLS, alpn => ['h2', 'http/1.1'],
                                       sni => { 'mail.example' => { cert_file => $C->{mail},
                                                                    key_file => $C->{mail_key} } } });
        for my $v ('-tls1_3', '-tls1_2') {
            my $r = s_client($srv->port, [$v, '-CAfile', $C->{ca}, '-verify_return_error',
                                          '-servername', 'mail.example', '-alpn', 'http/1.1', '-ign_eof'],
                             sub {
                                 my ($w, $out) = @_;
                                 $w->("hello s_client\n");
                                 wait_until(sub { $out->() =~ /^hello s_client$/m }, 3);
                                 $w->("tls\n");
                                 wait_until(sub { $out->() =~ /^alpn=/m }, 3);
                                 $w->("quit\n");
                             }, 5);
            is($r->{status}, 0, "$v: s_client ends normally (exit 0)") or diag $r->{err};
            like($r->{out}, qr/^hello s_client$/m, "$v: the line echoed");
            like($r->{out}, qr/subject=CN ?= ?mail\.example/, "$v: the mail.example certificate");
            like($r->{out}, qr/Verify return code: 0 \(ok\)/, "$v: verified");
            like($r->{out}, qr/ALPN protocol: http\/1\.1/, "$v: ALPN http/1.1");
            my ($t) = $r->{out} =~ /^(alpn=.*)$/m;
            $t = tls_unflat($t) || {};
            is($t->{version}, $v eq '-tls1_3' ? 'TLSv1.3' : 'TLSv1.2', "$v: \$io->tls->{version}");
            is($t->{sni}, 'mail.example', "$v: \$io->tls->{sni}");
            like($r->{out}, qr/^bye$/m, "$v: bye");
            unlike($r->{err}, qr/unexpected eof/, "$v: the server closed with close_notify");
        }
        no_errors($srv, 's_client');
    });
}

done_testing();
