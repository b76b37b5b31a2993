#!perl
# TLS behind a real HAProxy, both ways it is deployed:
#   - HAProxy in TCP mode passes the client's TLS through, with a PROXY v2
#     header in front (send-proxy-v2): the server takes the header, then
#     the client's handshake (HAProxy may send the two in one packet: the
#     bytes after the header are the handshake's); add sees the client's
#     address and $io->tls the client's TLS;
#   - HAProxy is the TLS client itself (server ... ssl verify none
#     send-proxy-v2 sni ... alpn ...): a plain-text client in front, TLS
#     between HAProxy and the server, the SNI and ALPN HAProxy sends.
# Both on every backend; skipped without OpenSSL in the build, without
# IO::Socket::SSL, the openssl command or haproxy.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use TestISD qw(:DEFAULT ask);
use TestProc;
use TestHAProxy;
use Test::More;
use File::Temp ();
use IO::Socket::INET::Daemon;

plan skip_all => 'built without OpenSSL (no libssl-dev at build time)'
    unless IO::Socket::INET::Daemon->has_tls;
plan skip_all => 'no IO::Socket::SSL (Debian: libio-socket-ssl-perl)'
    unless eval { require IO::Socket::SSL; 1 };
plan skip_all => 'no openssl command (Debian: openssl)'
    unless system('openssl version >/dev/null 2>&1') == 0;
my $HAPROXY = haproxy_bin();
plan skip_all => 'haproxy not found (PATH, /usr/sbin, /usr/local/sbin; or HAPROXY=/path)'
    unless $HAPROXY;

my $TMP = File::Temp->newdir('isd-tlshap-XXXXXX', TMPDIR => 1, CLEANUP => 1);
system("cd $TMP && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
       . "-keyout key.pem -out cert.pem -days 2 -subj /CN=localhost "
       . "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 >openssl.log 2>&1") == 0
    or BAIL_OUT("openssl req failed: " . slurp("$TMP/openssl.log"));

# A TLS server behind the PROXY protocol: "who" answers with what it sees
# (peerhost peerport tls-version sni alpn); other lines come back.
sub tserver {
    my ($be) = @_;
    return start_server(
        backend         => $be,
        proxy_protocol  => 1,
        trusted_proxies => ['127.0.0.1'],
        tls             => { cert_file => "$TMP/cert.pem", key_file => "$TMP/key.pem",
                             alpn => ['echo', 'other'] },
        child_deadline  => 25,
        callback        => {
            add => sub {
                my ($io) = @_;
                my $t = $io->tls;
                log_event('add %s %s %s', $io->peerhost, $io->peerport, $t ? $t->{version} : 'plain');
                1;
            },
            data => sub {
                my ($io, $d, $line) = @_;
                if ($line eq "who\n") {
                    my $t = $io->tls || {};
                    $io->print(join(' ', $io->peerhost, $io->peerport,
                                    map { $_ // '-' } @$t{qw(version sni alpn)}), "\n");
                }
                else {
                    $io->print($line);
                }
                1;
            },
            remove => sub { log_event('remove %s', $_[0]->peerport) },
            error  => sub { log_event('error %s %s', defined $_[0] ? 'io' : 'undef', $_[2]) },
        },
    );
}

# a line from an IO::Socket::SSL client, within 5 s
sub sline {
    my ($c) = @_;
    my $l;
    eval {
        local $SIG{ALRM} = sub { die "timeout\n" };
        alarm 5;
        $l = <$c>;
        alarm 0;
    };
    alarm 0;
    return $l;
}

for my $be (backends()) {
    isd_subtest "HAProxy passes the client's TLS through, send-proxy-v2 in front, backend $be" => sub {
        my $S = tserver($be);
        my $f = free_port();
        my $h = haproxy_start(dir => "$TMP", name => "pass-$be", config => <<"EOC");
frontend fe
    bind 127.0.0.1:$f
    default_backend be

backend be
    server a 127.0.0.1:@{[$S->port]} send-proxy-v2
EOC
        for my $i (1 .. 4) {
            my $c = IO::Socket::SSL->new(PeerAddr => "127.0.0.1:$f", SSL_verify_mode => 0,
                                         SSL_hostname => 'localhost', SSL_alpn_protocols => ['echo'],
                                         Timeout => 5);
            ok($c, "client $i: TLS through haproxy") or diag("SSL: " . IO::Socket::SSL::errstr()), next;
            print $c "who\n";
            my $w = sline($c) // '';
            like($w, qr/\A127\.0\.0\.1 \Q@{[$c->sockport]}\E TLSv1\.3 localhost echo\n\z/,
                 "client $i: the server sees the client's address (the header's) and its TLS: $w");
            print $c join('', map { "line $_\n" } 1 .. 50);
            my @got = map { sline($c) // '' } 1 .. 50;
            is_deeply(\@got, [map { "line $_\n" } 1 .. 50], "client $i: 50 pipelined lines echoed in order");
            close $c;
        }
        ok(wait_until(sub { $S->count(qr/^remove /) >= 4 }, 5), 'remove ran for each');
        is($S->count(qr/^error /), 0, 'no error') or diag(join "\n", $S->grep_events(qr/^error /));
        $h->stop;
        unlike($h->log_text, qr/\[ALERT\]/, 'haproxy: no alert') or diag($h->log_text);
    };

    isd_subtest "HAProxy as the TLS client (ssl, sni, alpn, send-proxy-v2), backend $be" => sub {
        my $S = tserver($be);
        my $f = free_port();
        my $h = haproxy_start(dir => "$TMP", name => "ssl-$be", config => <<"EOC");
frontend fe
    bind 127.0.0.1:$f
    default_backend be

backend be
    server a 127.0.0.1:@{[$S->port]} ssl verify none sni str(localhost) alpn other send-proxy-v2
EOC
        for my $i (1 .. 3) {
            my $c = client($f);
            my $w = ask($c, 'who') // '';
            is($w, '127.0.0.1 ' . $c->sockport . ' TLSv1.3 localhost other',
               "client $i: plain to haproxy, TLS to the server, which sees the client, the SNI and the ALPN");
            is(ask($c, 'x' x 3000), 'x' x 3000, "client $i: a long line echoed");
            close $c;
        }
        ok(wait_until(sub { $S->count(qr/^remove /) >= 3 }, 5), 'remove ran for each');
        is($S->count(qr/^error /), 0, 'no error') or diag(join "\n", $S->grep_events(qr/^error /));
        $h->stop;
        unlike($h->log_text, qr/\[ALERT\]/, 'haproxy: no alert') or diag($h->log_text);
    };
}

done_testing;
