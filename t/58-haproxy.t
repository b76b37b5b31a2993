#!perl
# The PROXY protocol (proxy_protocol => 1, trusted_proxies, proxy_timeout),
# behind a real HAProxy and face to face with hostile clients.  Every server
# is a TestISD child; "who" makes it answer with its view of the connection
# (peerhost, peerport, sockhost, sockport, peeraddr, peername, and
# $io->proxy's version, command and via), "proxy" with all of $io->proxy,
# "stats" with $server->stats; add, data, remove and error are logged.
#
# A. Without haproxy (runs wherever the module builds), every backend:
#   - hostile headers, one connection each: truncated then EOF (v1, v2), v1
#     over 107 bytes, a wrong signature (v1 and v2), bad v2 version,
#     command, family and transport nibbles, v1 with a lone CR or a lone LF,
#     unparsable addresses and ports, a TLV (and an SSL sub-TLV) overrunning
#     its header, a bad CRC32C, a v2 length shorter than its addresses,
#     plain HTTP: each is dropped with exactly one error callback ($io
#     undef, the message naming the client and the reason), no add, counted
#     in stats->{rejected}; a good client is served before, during and
#     after, and a new one afterwards;
#   - a slow loris (a byte every 0.3 s, proxy_timeout => 1): dropped after
#     about 1 s with "not complete within 1 s" (the deadline counts from the
#     accept, bytes arriving do not push it back);
#   - a client that connects and closes (or resets) without sending a
#     byte (a plain TCP health check), or after a v2 LOCAL header or a v1
#     header with its own addresses (haproxy's checks with a header): no
#     error callback, no add, nothing on STDERR; with data after the
#     header, a client served; a silent LOCAL connection that stays gets
#     its add at proxy_timeout;
#   - good headers: v1 with data in the same packet (add sees 1.2.3.4:1111
#     -> 5.6.7.8:2222, data gets "hello\n"), v1 TCP6, v1 UNKNOWN and v2 LOCAL
#     (the real addresses), v2 with TLVs (alpn, authority, unique_id, netns,
#     ssl with its sub-TLVs, an unknown type in tlv), a valid CRC32C, v2
#     IPv6, v2 UNIX: $io->proxy says exactly what the header said;
#   - per listener: a PROXY listener, a plain one ($io->proxy undef) and one
#     trusting only 10.0.0.0/8 (a direct client refused: not a trusted proxy);
#   - eg/proxied.pl greets a client with the address of its header.
# B. With haproxy (skipped if there is none), every backend, two server
#   instances behind it, a config written per test:
#   - send-proxy and send-proxy-v2, IPv4 and IPv6 ([::1]) clients: peerhost
#     and peerport are the client's own socket address, sockhost/sockport
#     haproxy's frontend, proxy->{version} 1 or 2, via haproxy's side;
#   - health checks, every 100 ms, on two instances: one checked without a
#     header (a server line with "port", or without send-proxy: haproxy
#     resets it before the handshake's last ACK, it never reaches
#     accept(2)), one with (send-proxy or send-proxy-v2 plus check, which
#     send one by default, or check-send-proxy: v1 PROXY with the check's
#     own addresses, or v2 LOCAL, then a reset): on both no add, no error,
#     nothing on STDERR, stats->{accepted} and {rejected} untouched;
#   - round robin over both; one instance stopped gracefully (TERM:
#     stop(grace => 5)) and one killed (KILL): every later request is served
#     by the other, none is lost; haproxy marks the stopped one DOWN; the
#     gracefully stopped one serves its open connection on;
#   - a deploy as eg/haproxy.cfg describes it: "set server be/a state
#     drain" on the stats socket (new connections all go to B, A serves its
#     open one), TERM (graceful stop), a new A on the same port, "state
#     ready": both serve again, no request lost;
#   - trusted_proxies => ['10.0.0.0/8']: haproxy's connections are refused
#     ("not a trusted proxy"), no add;
#   - eg/haproxy.cfg is valid (haproxy -c) and, with its ports moved, works
#     in front of two eg/proxied.pl.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use TestISD qw(:DEFAULT ask);
use TestProc;
use TestHAProxy;
use Test::More;
use Cwd ();
use File::Temp ();
use IO::Socket::INET ();
use IO::Socket::IP ();
use POSIX ();
use Scalar::Util ();
use Socket qw(AF_INET AF_INET6 SOL_SOCKET SO_LINGER);
use Time::HiRes ();
use IO::Socket::INET::Daemon;

my $ROOT = Cwd::abs_path("$FindBin::Bin/..");
my @PERL = ($^X, "-I$ROOT/blib/lib", "-I$ROOT/blib/arch");
my $TMP = File::Temp->newdir('isd-haproxy-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my @BACKENDS = backends();
my $HAPROXY = haproxy_bin();
my $V6 = have_ipv6();
my $NO_V6 = 'binding [::1] fails on this machine (no IPv6)';
my $SIG2 = "\r\n\r\n\0\r\nQUIT\n";

# =================================================================== servers

# What the server sees of a connection, one word each ('-' for nothing):
# name peerhost peerport sockhost sockport peeraddr peername version
# command via sockaddr sockname  (peername, via and sockname as HOST/PORT)
my @VIEW = qw(name ph pp sh sp pa pn ver cmd via sa sn);

sub host_port {
    my ($n) = @_;
    my $f = Socket::sockaddr_family($n);
    my ($port, $addr) = $f == AF_INET ? Socket::unpack_sockaddr_in($n)
                                      : Socket::unpack_sockaddr_in6($n);
    return Socket::inet_ntop($f, $addr) . "/$port";
}

sub view {
    my ($io) = @_;
    my $p = $io->proxy;
    my $pa = eval {
        my $a = $io->peeraddr;
        Socket::inet_ntop(length $a == 4 ? AF_INET : AF_INET6, $a);
    };
    my $pn = eval { host_port($io->peername) };
    my $sa = eval {
        my $a = $io->sockaddr;
        Socket::inet_ntop(length $a == 4 ? AF_INET : AF_INET6, $a);
    };
    my $sn = eval { host_port($io->sockname) };
    my @v = ($io->peerhost, $io->peerport, $io->sockhost, $io->sockport, $pa, $pn);
    push @v, $p ? ($p->{version}, $p->{command},
                   ref $p->{via} eq 'HASH' ? "$p->{via}{host}/$p->{via}{port}" : undef)
                : (undef, undef, undef);
    push @v, $sa, $sn;
    return join ' ', map { defined $_ && length $_ ? $_ : '-' } @v;
}

# $io->proxy as one line: "key=value" (nested keys "ssl.cn", "tlv.224"),
# sorted; bytes outside 0x21-0x7e (and "%") as %XX; undef as "key=%undef"
sub flat {
    my ($h, $pre) = @_;
    return 'undef' unless defined $h;
    return "notahash:$h" unless ref $h eq 'HASH';
    $pre = '' unless defined $pre;
    my @kv;
    for my $k (sort keys %$h) {
        my $v = $h->{$k};
        if (ref $v eq 'HASH') {
            push @kv, flat($v, "$pre$k.");
        }
        elsif (ref $v) {
            push @kv, "$pre$k=%ref:" . ref $v;
        }
        elsif (!defined $v) {
            push @kv, "$pre$k=%undef";
        }
        else {
            $v =~ s/([^\x21-\x24\x26-\x7e])/sprintf '%%%02X', ord $1/ge;
            push @kv, "$pre$k=$v";
        }
    }
    return join ' ', grep length, @kv;
}

sub unflat {
    my ($line) = @_;
    return undef if !defined $line || $line eq 'undef';
    my %h;
    for my $kv (split ' ', $line) {
        my ($k, $v) = split /=/, $kv, 2;
        $v = undef if defined $v && $v eq '%undef';
        $v =~ s/%([0-9A-F]{2})/chr hex $1/ge if defined $v;
        $h{$k} = $v;
    }
    return \%h;
}

# The callbacks of a server instance called $name.
sub callbacks {
    my ($name) = @_;
    return {
        add => sub {
            my ($io) = @_;
            log_event('add %s', view($io));
            return 1;
        },
        data => sub {
            my ($io, $d, $line) = @_;
            (my $cmd = $line) =~ s/\r?\n\z//;
            log_event('data %s %s', $io->peerport, $line);
            if ($cmd eq 'who') {
                $io->print("$name ", view($io), "\n");
            }
            elsif ($cmd eq 'proxy') {
                $io->print(flat($io->proxy), "\n");
            }
            elsif ($cmd eq 'stats') {
                my $s = $d->stats;
                $io->print(join(' ', map { "$_=" . (defined $s->{$_} ? $s->{$_} : 'undef') }
                                     sort grep { !ref $s->{$_} } keys %$s), "\n");
            }
            else {
                $io->print("$name $line");
            }
            return 1;
        },
        remove => sub {
            my ($io) = @_;
            log_event('remove %s %s', $io->peerhost, $io->peerport);
        },
        error => sub {
            my ($io, $d, $msg) = @_;
            log_event('error %s %s', defined $io ? 'io' : 'undef', $msg);
        },
    };
}

# pserver($backend, $name, OPTIONS): a server instance on 127.0.0.1 with
# proxy_protocol => 1, trusting 127.0.0.1 and ::1, proxy_timeout => 3
# (OPTIONS override, and go to new); grace => S: TERM stops it with
# stop(grace => S), logging "term"; top => 0: none of the three PROXY
# options in new (a listen list says it all)
sub pserver {
    my ($be, $name, %o) = @_;
    my $grace = delete $o{grace};
    my $top = delete $o{top} // 1;
    return start_server(
        backend         => $be,
        ($top ? (proxy_protocol  => 1,
                 trusted_proxies => ['127.0.0.1', '::1'],
                 proxy_timeout   => 3) : ()),
        child_deadline  => 25,
        callback        => callbacks($name),
        %o,
        child_init => sub {
            Scalar::Util::weaken(my $d = $_[0]);
            log_event('addresses %s', join ' ', $d->addresses);
            $SIG{TERM} = sub { $d->stop(grace => $grace); log_event('term') }
                if defined $grace;
        },
    );
}

# ================================================================== clients

sub client6 {
    my ($port) = @_;
    my $c = IO::Socket::IP->new(PeerHost => '::1', PeerPort => $port, Proto => 'tcp',
                                Timeout => 3);
    return $c if $c;
    die "cannot connect to [::1]:$port: $@\n";
}

# who($c): the server's view of $c (a hash: @VIEW), {} without an answer
sub who {
    my ($c) = @_;
    my $r = ask($c, 'who');
    return {} unless defined $r;
    my %v;
    @v{@VIEW} = split ' ', $r;
    return \%v;
}

# A direct client that sends $header first (and nothing else).
sub pclient {
    my ($port, $header) = @_;
    my $c = client($port);
    send_all($c, $header, 3) == length $header or die "pclient: short write\n";
    return $c;
}

sub v1 {
    my ($src, $dst, $sp, $dp) = @_;
    my $fam = $src =~ /:/ ? 'TCP6' : 'TCP4';
    return "PROXY $fam $src $dst $sp $dp\r\n";
}

# v2(%o): a v2 header.  cmd (1: PROXY), fam (1 INET, 2 INET6, 3 UNIX, 0),
# tr (1 STREAM), src, dst, sport, dport (or path_src, path_dst for UNIX),
# tlvs => [[TYPE, VALUE], ...], raw => bytes after the addresses, len =>
# the length field (default: the real one), vc => the version/command byte
sub v2 {
    my (%o) = @_;
    my $cmd = defined $o{cmd} ? $o{cmd} : 1;
    my $fam = defined $o{fam} ? $o{fam} : 1;
    my $tr  = defined $o{tr} ? $o{tr} : 1;
    my $addr = '';
    if ($fam == 1 && defined $o{src}) {
        $addr = pack('a4a4nn', Socket::inet_aton($o{src}), Socket::inet_aton($o{dst}),
                     $o{sport}, $o{dport});
    }
    elsif ($fam == 2 && defined $o{src}) {
        $addr = pack('a16a16nn', Socket::inet_pton(AF_INET6, $o{src}),
                     Socket::inet_pton(AF_INET6, $o{dst}), $o{sport}, $o{dport});
    }
    elsif ($fam == 3 && defined $o{path_src}) {
        $addr = pack('a108a108', $o{path_src}, $o{path_dst});
    }
    my $body = $addr . join('', map { tlv(@$_) } @{ $o{tlvs} || [] })
             . (defined $o{raw} ? $o{raw} : '');
    my $vc = defined $o{vc} ? $o{vc} : 0x20 | $cmd;
    return $SIG2 . pack('CCn', $vc, ($fam << 4) | $tr,
                        defined $o{len} ? $o{len} : length $body) . $body;
}

sub tlv { my ($type, $value) = @_; pack('Cn', $type, length $value) . $value }

# The SSL TLV: client bits, verify, sub-TLVs [[TYPE, VALUE], ...]
sub ssl_tlv {
    my ($client, $verify, @sub) = @_;
    return [0x20, pack('CN', $client, $verify) . join('', map { tlv(@$_) } @sub)];
}

sub crc32c {
    my $crc = 0xffffffff;
    for my $b (unpack 'C*', $_[0]) {
        $crc ^= $b;
        $crc = $crc & 1 ? ($crc >> 1) ^ 0x82f63b78 : $crc >> 1 for 1 .. 8;
    }
    return $crc ^ 0xffffffff;
}

# with_crc($header): the header with a CRC32C TLV appended (length fixed)
sub with_crc {
    my ($h) = @_;
    my $len = unpack('n', substr($h, 14, 2)) + 7;
    substr($h, 14, 2) = pack('n', $len);
    $h .= pack('Cn', 0x03, 4) . "\0\0\0\0";
    substr($h, -4) = pack('N', crc32c($h));
    return $h;
}

sub rst_close {
    my ($c) = @_;
    setsockopt($c, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0));
    close $c;
}

# ------------------------------------------------------------- assertions

# quiet($srv, $what): no error callback, no warning, nothing on STDERR
sub quiet {
    my ($srv, $what) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    is(join("\n", $srv->grep_events(qr/^error /)), '', "$what: no error callback");
    is($srv->stderr, '', "$what: nothing on STDERR");
}

sub port_of { my ($srv, $i) = @_; my ($a) = $srv->grep_events(qr/^addresses /);
              my @a = split ' ', ($a || '');
              return $a[$i + 1] && $a[$i + 1] =~ /:(\d+)\z/ ? $1 : undef }

# ============================================ A. without haproxy: hostile

# [name, bytes, how ('keep': the client waits; 'eof': it shuts its side
# down after the bytes), what the error must say]
my $ADDR4 = pack('a4a4nn', Socket::inet_aton('192.0.2.1'), Socket::inet_aton('192.0.2.2'), 1111, 2222);
my @HOSTILE = (
    ['v1 truncated, then EOF', 'PROXY TCP4 192.0.2.1 19', 'eof', qr/not complete/],
    ['v2 truncated, then EOF', substr(v2(src => '192.0.2.1', dst => '192.0.2.2', sport => 1, dport => 2), 0, 20),
        'eof', qr/not complete/],
    ['signature truncated, then EOF', "\r\n\r\n\0", 'eof', qr/not complete/],
    ['v1 over 107 bytes', 'PROXY UNKNOWN ' . ('x' x 100) . "\r\n", 'keep', qr/107 bytes/],
    ['v1 TCP6 with a 189-digit address, no CRLF', 'PROXY TCP6 ' . ('1' x 189), 'keep', qr/PROXY v1: /],
    ['wrong signature "PROXZ"', "PROXZ TCP4 192.0.2.1 192.0.2.2 1111 2222\r\n", 'keep', qr/neither/],
    ['wrong v2 signature (QUIX)', "\r\n\r\n\0\r\nQUIX\n\x21\x11\0\x0c$ADDR4", 'keep', qr/neither/],
    ['lower-case "proxy"', "proxy TCP4 192.0.2.1 192.0.2.2 1111 2222\r\n", 'keep', qr/neither/],
    ['plain HTTP', "GET / HTTP/1.0\r\n\r\n", 'keep', qr/neither/],
    ['v2 version nibble 1', v2(vc => 0x11, src => '192.0.2.1', dst => '192.0.2.2', sport => 1, dport => 2),
        'keep', qr/version is not 2/],
    ['v2 version nibble 3', v2(vc => 0x31, src => '192.0.2.1', dst => '192.0.2.2', sport => 1, dport => 2),
        'keep', qr/version is not 2/],
    ['v2 command nibble 2', v2(cmd => 2, src => '192.0.2.1', dst => '192.0.2.2', sport => 1, dport => 2),
        'keep', qr/unknown command/],
    ['v2 family nibble 4', v2(fam => 4, raw => $ADDR4), 'keep', qr/unknown address family/],
    ['v2 transport nibble 3', v2(tr => 3, src => '192.0.2.1', dst => '192.0.2.2', sport => 1, dport => 2),
        'keep', qr/unknown transport/],
    ['v2 length shorter than the IPv4 block', v2(raw => "\0\0\0\0"), 'keep', qr/shorter than the IPv4/],
    ['v2 length over 4096', v2(len => 5000, src => '192.0.2.1', dst => '192.0.2.2', sport => 1, dport => 2),
        'keep', qr/4096/],
    ['v1 lone CR', "PROXY TCP4 192.0.2.1 192.0.2.2 1111 2222\rX\n", 'keep', qr/CR without LF/],
    ['v1 lone LF', "PROXY TCP4 192.0.2.1 192.0.2.2 1111 2222\n", 'keep', qr/LF without CR/],
    ['v1 lone LF in UNKNOWN', "PROXY UNKNOWN x\n", 'keep', qr/LF without CR/],
    ['v1 CR inside the addresses', "PROXY TCP4 192.0.2.1\r\n", 'keep', qr/CR before the destination port/],
    ['v1 source 192.0.2.256', v1('192.0.2.256', '192.0.2.2', 1111, 2222), 'keep', qr/bad source address/],
    ['v1 source with a leading zero', v1('192.0.2.01', '192.0.2.2', 1111, 2222), 'keep', qr/bad source address/],
    ['v1 TCP4 with IPv6 addresses', "PROXY TCP4 ::1 ::1 1111 2222\r\n", 'keep', qr/bad source address/],
    ['v1 TCP6 destination "::g"', "PROXY TCP6 ::1 ::g 1111 2222\r\n", 'keep', qr/bad destination address/],
    ['v1 source port 65536', v1('192.0.2.1', '192.0.2.2', 65536, 2222), 'keep', qr/bad source port/],
    ['v1 destination port "22x"', "PROXY TCP4 192.0.2.1 192.0.2.2 1111 22x\r\n", 'keep', qr/bad destination port/],
    ['v1 protocol TCP5', "PROXY TCP5 192.0.2.1 192.0.2.2 1111 2222\r\n", 'keep', qr/unknown protocol/],
    ['v2 TLV overrunning the header',
        v2(src => '192.0.2.1', dst => '192.0.2.2', sport => 1, dport => 2, raw => pack('Cn', 0x01, 10) . 'h2'),
        'keep', qr/TLV overruns/],
    ['v2 two stray bytes after the TLVs',
        v2(src => '192.0.2.1', dst => '192.0.2.2', sport => 1, dport => 2, raw => "\x01\x00"),
        'keep', qr/TLV overruns/],
    ['v2 SSL sub-TLV overrunning the SSL TLV',
        v2(src => '192.0.2.1', dst => '192.0.2.2', sport => 1, dport => 2,
           tlvs => [[0x20, pack('CN', 1, 0) . pack('Cn', 0x22, 50) . 'cn']]),
        'keep', qr/sub-TLV overruns/],
    ['v2 CRC32C that does not match',
        do { my $h = with_crc(v2(src => '192.0.2.1', dst => '192.0.2.2', sport => 1, dport => 2));
             substr($h, -1) = chr(ord(substr $h, -1) ^ 1); $h },
        'keep', qr/CRC32C mismatch/],
);

for my $be (@BACKENDS) {
    isd_subtest "hostile headers, each dropped with one error, a good client served throughout, backend $be" => sub {
        my $srv = pserver($be, 'S', proxy_timeout => 1);
        my $good = pclient($srv->port, v1('192.0.2.10', '192.0.2.20', 40000, 80));
        is(who($good)->{ph}, '192.0.2.10', 'a good client first: served');
        my $stats0 = unflat(ask($good, 'stats')) || {};
        my $n = 0;
        for my $case (@HOSTILE) {
            my ($name, $bytes, $how, $re) = @$case;
            my $c = client($srv);
            my $cport = $c->sockport;
            send_all($c, $bytes, 3);
            shutdown($c, 1) if $how eq 'eof';
            read_until_eof($c, 3);
            ok(got_eof($c), "$name: the server closes the connection");
            $n++;
            ok($srv->wait_event(qr/^error /, 3, $n), "$name: an error callback");
            my @err = $srv->grep_events(qr/^error /);
            my $last = $err[-1] // '';
            like($last, $re, "$name: the message says why") or diag(join "\n", grep defined, @err[-3 .. -1]);
            like($last, qr/^error undef /, "$name: \$io is undef");
            like($last, qr/\b127\.0\.0\.1:$cport\b/, "$name: the message names the client 127.0.0.1:$cport");
            is(scalar @err, $n, "$name: exactly one error so far for each") or $n = @err;
            close $c;
            if ($n % 10 == 0) {
                is(who($good)->{ph}, '192.0.2.10', "the good client is served alongside ($n refused so far)");
            }
        }
        is(who($good)->{ph}, '192.0.2.10', 'the good client is served afterwards');
        my $late = pclient($srv->port, v1('192.0.2.11', '192.0.2.20', 40001, 80));
        is(who($late)->{ph}, '192.0.2.11', 'and a new good client');
        Time::HiRes::sleep(0.2);
        is($srv->count(qr/^error /), scalar @HOSTILE, 'exactly one error callback per hostile connection, in all');
        is($srv->count(qr/^add /), 2, 'add ran only for the two good clients');
        my $stats = unflat(ask($good, 'stats')) || {};
        is(($stats->{rejected} // 0) - ($stats0->{rejected} // 0), scalar @HOSTILE,
           'stats->{rejected} counts each of them');
        is(($stats->{accepted} // 0) - ($stats0->{accepted} // 0), 1,
           'stats->{accepted} counts only the good client that came meanwhile')
            or diag(ask($good, 'stats'));
        is($srv->stderr, '', 'nothing on STDERR');
    };

    isd_subtest "a slow loris is dropped after proxy_timeout, backend $be" => sub {
        my $srv = pserver($be, 'S', proxy_timeout => 1);
        my $good = pclient($srv->port, v1('192.0.2.10', '192.0.2.20', 40000, 80));
        my $local = pclient($srv->port, v2(cmd => 0, fam => 0, tr => 0));   # and waits
        my $header = v1('192.0.2.1', '192.0.2.2', 1111, 2222);
        my $c = client($srv);
        my $cport = $c->sockport;
        my $t0 = now();
        my ($sent, $eof_at) = (0, undef);
        # a byte every 0.3 s (the whole header would take 12 s)
        while (now() - $t0 < 4 && $sent < length $header) {
            last unless syswrite($c, substr($header, $sent, 1));
            $sent++;
            read_for($c, 0.3);
            if (got_eof($c)) { $eof_at = now() - $t0; last }
        }
        if (!defined $eof_at) {
            read_until_eof($c, 3);
            $eof_at = now() - $t0 if got_eof($c);
        }
        ok(defined $eof_at, 'the slow client is dropped');
        ok(defined $eof_at && $eof_at >= 0.8 && $eof_at < 2.5,
           sprintf('after about 1 s (%.2f s, %d bytes sent)', $eof_at // -1, $sent));
        ok($srv->wait_event(qr/^error /, 2), 'an error callback');
        my @err = $srv->grep_events(qr/^error /);
        is(scalar @err, 1, 'exactly one');
        like($err[0] // '', qr/^error undef .*127\.0\.0\.1:$cport\b.*not complete within 1 s/,
             '"... 127.0.0.1:PORT refused: PROXY header not complete within 1 s"');
        is($srv->count(qr/^add \S+ $cport /), 0, 'no add for it');
        is(who($good)->{ph}, '192.0.2.10', 'the good client is served on');
        my $lport = $local->sockport;
        ok($srv->wait_event(qr/^add 127\.0\.0\.1 $lport \S+ \S+ \S+ \S+ 2 LOCAL /, 1),
           'a v2 LOCAL connection that stays silent: add after proxy_timeout, command LOCAL');
        is(who($local)->{cmd}, 'LOCAL', 'and it is served');
        is($srv->stderr, '', 'nothing on STDERR');
    };

    isd_subtest "health-check-like probes: no error, no add, backend $be" => sub {
        my $srv = pserver($be, 'S');
        my $port = $srv->port;
        my $c1 = client($srv);
        close $c1;                                      # FIN, nothing sent
        my $c2 = client($srv);
        rst_close($c2);                                 # RST, nothing sent
        my $c3 = client($srv);
        shutdown($c3, 1);                               # half-closed, nothing sent
        read_until_eof($c3, 3);
        ok(got_eof($c3), 'a half-closed silent client: the server closes too');
        close $c3;
        # a header of the proxy's own, then nothing: v2 LOCAL (haproxy's
        # send-proxy-v2 checks), v1 with the connection's own addresses
        # (its send-proxy checks)
        my $l1 = pclient($port, v2(cmd => 0, fam => 0, tr => 0));
        close $l1;
        my $l2 = pclient($port, v2(cmd => 0, fam => 0, tr => 0));
        rst_close($l2);
        my $o1 = client($srv);
        send_all($o1, v1('127.0.0.1', '127.0.0.1', $o1->sockport, $port), 3);
        rst_close($o1);
        my $o2 = client($srv);
        send_all($o2, v1('127.0.0.1', '127.0.0.1', $o2->sockport, $port), 3);
        shutdown($o2, 1);
        read_until_eof($o2, 3);
        ok(got_eof($o2), 'v1 with its own addresses, then a half-close: the server closes');
        close $o2;
        my $good = pclient($port, v1('192.0.2.10', '192.0.2.20', 40000, 80));
        is(who($good)->{ph}, '192.0.2.10', 'a good client afterwards: served');
        Time::HiRes::sleep(0.3);
        is(join("\n", $srv->grep_events(qr/^error /)), '',
           'no error callback for a connection that sent nothing (FIN, RST, half-close), '
           . 'nor for a LOCAL or own-address header followed by nothing');
        is($srv->count(qr/^add /), 1, 'no add for them');
        my $st = unflat(ask($good, 'stats')) || {};
        is("$st->{accepted} $st->{rejected}", '1 0', 'stats: 1 accepted, 0 rejected');
        # the same headers followed by data: clients after all
        my $o3 = client($srv);
        send_all($o3, v1('127.0.0.1', '127.0.0.1', $o3->sockport, $port) . "own\n", 3);
        is(read_line($o3, 3), "S own\n", 'v1 with its own addresses, then data: served');
        my $l3 = pclient($port, v2(cmd => 0, fam => 0, tr => 0) . "local\n");
        is(read_line($l3, 3), "S local\n", 'v2 LOCAL, then data: served');
        is($srv->count(qr/^add /), 3, 'with an add each');
        is($srv->stderr, '', 'nothing on STDERR');
    };

    isd_subtest "good headers: the original addresses and \$io->proxy, backend $be" => sub {
        my $srv = pserver($be, 'S');
        my $port = $srv->port;

        # v1 and data in the same packet
        my $c = client($srv);
        syswrite($c, "PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\r\nhello\n");
        is(read_line($c, 3), "S hello\n", 'v1 header and "hello\n" in one packet: data gets "hello\n"');
        my ($add) = $srv->grep_events(qr/^add 1\.2\.3\.4 /);
        my %a;
        @a{@VIEW[1 .. $#VIEW]} = split ' ', ($add // '')=~ s/^add //r;
        is("$a{ph} $a{pp} $a{sh} $a{sp}", '1.2.3.4 1111 5.6.7.8 2222',
           'add saw peerhost 1.2.3.4, peerport 1111, sockhost 5.6.7.8, sockport 2222');
        is("$a{pa} $a{pn}", '1.2.3.4 1.2.3.4/1111', 'peeraddr and peername: the header\'s source');
        is("$a{sa} $a{sn}", '5.6.7.8 5.6.7.8/2222', 'sockaddr and sockname: its destination');
        ok($srv->wait_event(qr/^data \d+ hello\n\z/, 2), 'data got exactly "hello\n"');
        my $p = unflat(ask($c, 'proxy'));
        is_deeply($p, {
            version => 1, command => 'PROXY', family => 'INET', transport => 'STREAM',
            'source.host' => '1.2.3.4', 'source.port' => 1111,
            'dest.host' => '5.6.7.8', 'dest.port' => 2222,
            'via.host' => '127.0.0.1', 'via.port' => $c->sockport,
            length => length "PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\r\n",
        }, '$io->proxy for v1 TCP4') or diag(explain($p));

        # v1 TCP6
        $c = pclient($port, v1('2001:db8::1', '2001:db8::2', 65535, 1));
        my $w = who($c);
        is("$w->{ph} $w->{pp} $w->{sh} $w->{sp} $w->{ver} $w->{cmd}", '2001:db8::1 65535 2001:db8::2 1 1 PROXY',
           'v1 TCP6: peerhost/peerport/sockhost/sockport from the header');
        is(unflat(ask($c, 'proxy'))->{family}, 'INET6', 'family INET6');

        # v1 UNKNOWN: the real addresses
        $c = pclient($port, "PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n");
        $w = who($c);
        is("$w->{ph} $w->{pp} $w->{sp} $w->{ver} $w->{cmd}", join(' ', '127.0.0.1', $c->sockport, $port, 1, 'UNKNOWN'),
           'v1 UNKNOWN: the real peer and port, command UNKNOWN');
        $p = unflat(ask($c, 'proxy'));
        ok(!grep(/^(source|dest)\./, keys %$p), 'no source or dest') or diag(explain($p));

        # v2 LOCAL (what haproxy's health checks send with send-proxy-v2)
        $c = pclient($port, v2(cmd => 0, fam => 0, tr => 0));
        $w = who($c);
        is("$w->{ph} $w->{pp} $w->{sp} $w->{ver} $w->{cmd} $w->{via}",
           join(' ', '127.0.0.1', $c->sockport, $port, 2, 'LOCAL', '127.0.0.1/' . $c->sockport),
           'v2 LOCAL: the real addresses, version 2, command LOCAL, via the real peer');
        $p = unflat(ask($c, 'proxy'));
        is_deeply($p, {
            version => 2, command => 'LOCAL', family => 'UNSPEC', transport => 'UNSPEC',
            'via.host' => '127.0.0.1', 'via.port' => $c->sockport, length => 16,
        }, '$io->proxy for v2 LOCAL') or diag(explain($p));

        # v2 LOCAL keeping its family, with addresses (ignored)
        $c = pclient($port, v2(cmd => 0, src => '192.0.2.1', dst => '192.0.2.2', sport => 1, dport => 2));
        $w = who($c);
        is("$w->{ph} $w->{cmd}", '127.0.0.1 LOCAL', 'v2 LOCAL with addresses: still the real peer');

        # v2 with TLVs
        my $hdr = v2(src => '192.0.2.1', dst => '192.0.2.2', sport => 51234, dport => 443, tlvs => [
            [0x01, 'h2'],
            [0x02, 'example.com'],
            [0x05, "req-42\x00\xff"],
            ssl_tlv(0x07, 0, [0x21, 'TLSv1.3'], [0x22, 'client.example'],
                    [0x23, 'TLS_AES_128_GCM_SHA256'], [0x24, 'SHA256'], [0x25, 'RSA2048']),
            [0x30, 'blue'],
            [0xE0, "cu\x00stom \xff"],
        ]);
        $c = pclient($port, $hdr);
        $w = who($c);
        is("$w->{ph} $w->{pp} $w->{sh} $w->{sp} $w->{ver}", '192.0.2.1 51234 192.0.2.2 443 2',
           'v2 with TLVs: the addresses of its header');
        $p = unflat(ask($c, 'proxy'));
        is_deeply($p, {
            version => 2, command => 'PROXY', family => 'INET', transport => 'STREAM',
            'source.host' => '192.0.2.1', 'source.port' => 51234,
            'dest.host' => '192.0.2.2', 'dest.port' => 443,
            'via.host' => '127.0.0.1', 'via.port' => $c->sockport,
            length => length $hdr,
            alpn => 'h2', authority => 'example.com', unique_id => "req-42\x00\xff", netns => 'blue',
            'ssl.client' => 7, 'ssl.verify' => 0, 'ssl.version' => 'TLSv1.3',
            'ssl.cn' => 'client.example', 'ssl.cipher' => 'TLS_AES_128_GCM_SHA256',
            'ssl.sig_alg' => 'SHA256', 'ssl.key_alg' => 'RSA2048',
            'tlv.224' => "cu\x00stom \xff",
        }, '$io->proxy: alpn, authority, unique_id, netns, ssl, tlv') or diag(explain($p));

        # v2 with a valid CRC32C, data right behind it
        $hdr = with_crc(v2(src => '198.51.100.1', dst => '198.51.100.2', sport => 7, dport => 8,
                           tlvs => [[0x01, 'http/1.1']]));
        $c = client($srv);
        syswrite($c, $hdr . "crc\n");
        is(read_line($c, 3), "S crc\n", 'v2 with a good CRC32C and data in the same packet: the data is delivered');
        $w = who($c);
        is("$w->{ph} $w->{pp}", '198.51.100.1 7', 'and the header\'s source is the peer');
        $p = unflat(ask($c, 'proxy'));
        is($p->{alpn}, 'http/1.1', 'its alpn');
        is($p->{crc32c}, 1, 'crc32c => 1');
        ok(!grep(/^tlv\.3$/, keys %$p), 'the CRC32C TLV is not listed under tlv') or diag(explain($p));

        # v2 IPv6
        $c = pclient($port, v2(fam => 2, src => '2001:db8::a', dst => '2001:db8::b', sport => 1000, dport => 2000));
        $w = who($c);
        is("$w->{ph} $w->{pp} $w->{sh} $w->{sp} $w->{pa} $w->{pn}",
           '2001:db8::a 1000 2001:db8::b 2000 2001:db8::a 2001:db8::a/1000', 'v2 IPv6: the header\'s addresses');
        is(unflat(ask($c, 'proxy'))->{family}, 'INET6', 'family INET6');

        # v2 IPv4-mapped IPv6 source: peerhost is the IPv4 address
        $c = pclient($port, v2(fam => 2, src => '::ffff:192.0.2.77', dst => '::ffff:192.0.2.78', sport => 1, dport => 2));
        is(who($c)->{ph}, '192.0.2.77', 'v2 IPv6 with an IPv4-mapped source: peerhost 192.0.2.77');

        # v2 UNIX: no IP addresses; the real peer stays
        $c = pclient($port, v2(fam => 3, path_src => '/run/a.sock', path_dst => '/run/b.sock'));
        $w = who($c);
        is("$w->{ph} $w->{ver} $w->{cmd}", '127.0.0.1 2 PROXY', 'v2 UNIX: served, the real peer');
        $p = unflat(ask($c, 'proxy'));
        is("$p->{family} $p->{command}", 'UNIX PROXY', 'family UNIX, command PROXY');
        is(join(' ', map { $_ // '-' } @$p{qw(source.path dest.path)}), '/run/a.sock /run/b.sock',
           'source and dest: { path => ... }') or diag(explain($p));

        quiet($srv, 'good headers');
    };

    isd_subtest "per listener: PROXY, plain, and trusting only 10.0.0.0/8, backend $be" => sub {
        my $srv = pserver($be, 'S', top => 0,
            listen => [
                { address => '127.0.0.1:0', proxy_protocol => 1, trusted_proxies => ['127.0.0.1'], proxy_timeout => 2 },
                '127.0.0.1:0',
                { address => '127.0.0.1:0', proxy_protocol => 1, trusted_proxies => ['10.0.0.0/8'] },
            ]);
        my ($pp, $plain, $strict) = map { port_of($srv, $_) } 0 .. 2;
        ok($pp && $plain && $strict, "three listeners ($pp, $plain, $strict)") or return;
        my $c = pclient($pp, v1('192.0.2.5', '192.0.2.6', 5, 6));
        is(who($c)->{ph}, '192.0.2.5', 'the PROXY listener: the header\'s source');
        my $d = client($plain);
        my $w = who($d);
        is("$w->{ph} $w->{pp} $w->{sp} $w->{ver}", join(' ', '127.0.0.1', $d->sockport, $plain, '-'),
           'the plain listener: the real peer, $io->proxy undef');
        is(ask($d, 'proxy'), 'undef', '$io->proxy is undef there');
        my $e = client($plain);
        is(ask($e, 'PROXY TCP4 1.1.1.1 2.2.2.2 1 2'), 'S PROXY TCP4 1.1.1.1 2.2.2.2 1 2',
           'a PROXY line on the plain listener is just data');
        my $u = client($strict);
        my $uport = $u->sockport;
        read_until_eof($u, 3);
        ok(got_eof($u), 'the listener trusting only 10.0.0.0/8: 127.0.0.1 is dropped before it sends anything');
        ok($srv->wait_event(qr/^error /, 2), 'with an error callback');
        my @err = $srv->grep_events(qr/^error /);
        is(scalar @err, 1, 'exactly one');
        like($err[0] // '', qr/^error undef .*127\.0\.0\.1:$uport\b.*not a trusted proxy/,
             '"connection from 127.0.0.1:PORT refused: ... not a trusted proxy"');
        my $n = client($pp);
        syswrite($n, "who\n");
        read_until_eof($n, 3);
        ok(got_eof($n), 'no header on the PROXY listener: dropped');
        ok($srv->wait_event(qr/^error /, 2, 2), 'with an error callback');
        is($srv->count(qr/^add /), 3, 'add ran for the three served clients only');
        is($srv->stderr, '', 'nothing on STDERR');
    };
}

# eg/proxied.pl, as the module's users start it
{
    my $port = free_port();
    my $pid = spawn([@PERL, "$ROOT/eg/proxied.pl", $port], out => "$TMP/proxied.out");
    ok(wait_until(sub { listening($port) }, 10, 0.05), 'eg/proxied.pl listens on the port given');
    my $c = try_client($port, timeout => 3);
    if ($c) {
        send_all($c, v1('198.51.100.7', '127.0.0.1', 5555, $port) . "hi\n", 3);
        my $hello = read_line($c, 3);
        like($hello // '', qr/\b198\.51\.100\.7:5555\b/, 'eg/proxied.pl greets the client with the header\'s source')
            or diag(TestProc::slurp("$TMP/proxied.out"));
        is(read_line($c, 3), "hi\n", 'and echoes its lines');
        close $c;
    }
    is(TestProc::end_kid($pid), 0, 'TERM: eg/proxied.pl stops gracefully and exits 0')
        or diag(TestProc::slurp("$TMP/proxied.out"));
}

# ================================================== B. behind a real haproxy

SKIP: {
    skip 'haproxy not found (PATH, /usr/sbin, /usr/local/sbin; or HAPROXY=/path)', 1 unless $HAPROXY;
    diag("haproxy $HAPROXY, version " . (haproxy_version() // '?'));

    my $eg = `"$HAPROXY" -c -f "$ROOT/eg/haproxy.cfg" 2>&1`;
    is($?, 0, 'eg/haproxy.cfg: haproxy -c says it is valid') or diag($eg);

    for my $be (@BACKENDS) {
        isd_subtest "send-proxy and send-proxy-v2, IPv4 and IPv6 clients, backend $be" => sub {
            my $A = pserver($be, 'A');
            my $B = pserver($be, 'B');
            my ($pa, $pb) = ($A->port, $B->port);
            my ($f1, $f2) = (free_port(), free_port());
            my ($b1, $b2) = map { $V6 ? "    bind [::1]:$_\n" : '' } $f1, $f2;
            my $h = haproxy_start(dir => "$TMP", name => "pp-$be", config => <<"EOC");
frontend fe_v1
    bind 127.0.0.1:$f1
$b1    default_backend be_v1

frontend fe_v2
    bind 127.0.0.1:$f2
$b2    default_backend be_v2

backend be_v1
    balance roundrobin
    server a 127.0.0.1:$pa send-proxy
    server b 127.0.0.1:$pb send-proxy

backend be_v2
    balance roundrobin
    server a 127.0.0.1:$pa send-proxy-v2
    server b 127.0.0.1:$pb send-proxy-v2
EOC
            my (%served, @open);
            for my $case ([1, $f1, 4], [1, $f1, 6], [2, $f2, 4], [2, $f2, 6]) {
                my ($ver, $front, $fam) = @$case;
                SKIP: {
                    skip $NO_V6, 1 if $fam == 6 && !$V6;
                    for my $i (1, 2) {
                        my $c = $fam == 4 ? client($front) : client6($front);
                        my $what = "v$ver, IPv$fam client $i";
                        my $re = qr/^add \Q@{[$c->sockhost]}\E @{[$c->sockport]} /;
                        ok(wait_until(sub { $A->count($re) + $B->count($re) }, 2),
                           "$what: add runs before the client sends a byte (not held back as a health check)");
                        my $w = who($c);
                        ok($w->{name}, "$what: answered") or next;
                        $served{"$ver/$w->{name}"}++;
                        is("$w->{ph} $w->{pp}", $c->sockhost . ' ' . $c->sockport,
                           "$what: peerhost/peerport are the client's sockhost/sockport (@{[$c->sockhost]} @{[$c->sockport]})");
                        is("$w->{sh} $w->{sp}", ($fam == 4 ? '127.0.0.1' : '::1') . " $front",
                           "$what: sockhost/sockport are haproxy's frontend");
                        is($w->{pa}, $c->sockhost, "$what: peeraddr too");
                        is($w->{pn}, $c->sockhost . '/' . $c->sockport, "$what: peername too");
                        is("$w->{sa} $w->{sn}", ($fam == 4 ? '127.0.0.1' : '::1') . ' ' . ($fam == 4 ? '127.0.0.1' : '::1') . "/$front",
                           "$what: sockaddr and sockname too");
                        is("$w->{ver} $w->{cmd}", "$ver PROXY", "$what: \$io->proxy: version $ver, command PROXY");
                        like($w->{via}, qr{\A127\.0\.0\.1/\d+\z}, "$what: via is haproxy's side ($w->{via})");
                        push @open, $c;
                    }
                }
            }
            for my $k ('1/A', '1/B', '2/A', '2/B') {
                ok($served{$k}, "version $k: served by that instance (round robin)");
            }
            my $n = @open;
            close $_ for @open;
            ok(wait_until(sub { $A->count(qr/^remove /) + $B->count(qr/^remove /) >= $n }, 3),
               'remove ran for every connection');
            is($A->count(qr/^add /) + $B->count(qr/^add /), $n, 'one add per client, no other');
            quiet($A, 'instance A');
            quiet($B, 'instance B');
            $h->stop;
            unlike($h->log_text, qr/\[ALERT\]/, 'haproxy: no alert') or diag($h->log_text);
        };

        isd_subtest "haproxy health checks, with and without a header, backend $be" => sub {
            my $A = pserver($be, 'A');     # checked without a header
            my $B = pserver($be, 'B');     # checked with one
            my ($pa, $pb) = ($A->port, $B->port);
            my $f = free_port();
            # "check port N" (or "addr"): the check sends no PROXY header
            # unless "check-send-proxy" is there too; "check" alone on a
            # send-proxy(-v2) server sends one (v1: a PROXY TCP4 line with
            # the check connection's own addresses; v2: LOCAL, no address),
            # then resets the connection (SO_LINGER 0).  A check without a
            # header is a bare connect, which haproxy (TCP_QUICKACK off,
            # then SO_LINGER 0 and close) resets before the handshake's last
            # ACK: it never reaches the server's accept(2).  (Seen with
            # haproxy 2.6 and a server dumping what it gets, and strace.)
            my $h = haproxy_start(dir => "$TMP", name => "check-$be", config => <<"EOC");
frontend fe
    bind 127.0.0.1:$f
    default_backend be_plain

backend be_plain
    default-server inter 100ms fastinter 100ms downinter 100ms
    server a1 127.0.0.1:$pa send-proxy-v2 check port $pa
    server a2 127.0.0.1:$pa send-proxy check port $pa
    server a3 127.0.0.1:$pa check

backend be_header
    default-server inter 100ms fastinter 100ms downinter 100ms
    server b1 127.0.0.1:$pb send-proxy check
    server b2 127.0.0.1:$pb send-proxy-v2 check
    server b3 127.0.0.1:$pb send-proxy-v2 check port $pb check-send-proxy
EOC
            my %want = map { $_ => qr/^UP L[4-7]OK/ } qw(be_plain/a1 be_plain/a2 be_plain/a3
                                                         be_header/b1 be_header/b2 be_header/b3);
            ok($h->wait_state(3, %want), 'haproxy: every check passed')
                or diag(join "\n", map { "$_: " . ($h->state($_) // '?') } sort keys %want);
            Time::HiRes::sleep(0.8);                   # 8 more rounds of 6 checks
            ok($h->wait_state(1, %want), 'and the servers stay UP');
            $h->stop;
            my $t_stop = now();

            # A: nothing at all
            is($A->count(qr/^(add|remove|data) /), 0, 'checks without a header: no add, no remove')
                or diag(join "\n", $A->events);
            quiet($A, 'checks without a header');
            my $c = pclient($pa, v1('192.0.2.1', '192.0.2.2', 1, 2));
            my $st = unflat(ask($c, 'stats')) || {};
            is($st->{accepted}, 1, 'stats->{accepted} is 1 (this client): no check got that far');
            is($st->{rejected}, 0, 'stats->{rejected} is 0');

            # B: a header of haproxy's own (v2 LOCAL, v1 with the check
            # connection's own addresses), then a reset: not a client
            is($B->count(qr/^(add|remove|data) /), 0, 'checks with a header: no add, no remove')
                or diag(join "\n", $B->events);
            quiet($B, 'checks with a header');
            $c = pclient($pb, v1('192.0.2.1', '192.0.2.2', 1, 2));
            $st = unflat(ask($c, 'stats')) || {};
            is($st->{accepted}, 1, 'stats->{accepted} is 1 (this client): none of the checks was');
            is($st->{rejected}, 0, 'stats->{rejected} is 0');
        };

        isd_subtest "round robin; one instance stopped gracefully: no lost reply, backend $be" => sub {
            my $A = pserver($be, 'A', grace => 5);
            my $B = pserver($be, 'B', grace => 5);
            my $f = free_port();
            # No lost reply: when an instance stops, its listener closes at
            # once (refused connections) while haproxy has not marked it
            # DOWN yet; "retries" with "option redispatch 1" makes haproxy
            # retry such a connection on another server at the first retry
            # (the client never sees the refusal).  The check (inter 100ms,
            # fall 1) takes the server out soon after.  Connections the
            # instance had accepted are served on by the graceful stop.
            my $h = haproxy_start(dir => "$TMP", name => "rr-$be", config => rr_config($f, $A, $B));
            ok($h->wait_state(3, 'be/a' => qr/^UP L[4-7]OK/, 'be/b' => qr/^UP L[4-7]OK/),
               'haproxy: both instances UP');
            my @first = map { serve($f) } 1 .. 10;
            is(scalar(grep { $_ eq 'A' } @first), 5, 'round robin: A served 5 of 10') or diag("@first");
            is(scalar(grep { $_ eq 'B' } @first), 5, 'B the other 5');

            my (%long);
            for (1 .. 2) {
                my $c = client($f);
                my $w = who($c);
                $long{$w->{name} // '?'} = $c;
            }
            ok($long{A} && $long{B}, 'a long-lived connection to each') or return;

            kill 'TERM', $A->pid;
            ok($A->wait_event(qr/^term$/, 2), 'A: TERM, stop(grace => 5)');
            my @after = map { serve($f) } 1 .. 10;
            is("@after", join(' ', ('B') x 10), 'the 10 requests right after: all served, by B');
            is(who($long{A})->{name}, 'A', 'A serves its open connection on');
            ok($h->wait_state(3, 'be/a' => qr/^DOWN/), 'haproxy marks A DOWN');
            my @later = map { serve($f) } 1 .. 5;
            is("@later", join(' ', ('B') x 5), 'later requests: all by B');
            is(who($long{B})->{name}, 'B', 'B\'s long-lived connection: served');
            close $long{A};
            ok($A->wait_event(qr/^run_returned 1$/, 3), 'A\'s last connection closed: its run returns');
            is($A->wait_exit(3), 0, 'A exits 0');
            quiet($A, 'A');
            quiet($B, 'B');
            $h->stop;
            unlike($h->log_text, qr/\[ALERT\]/, 'haproxy: no alert') or diag($h->log_text);
        };

        isd_subtest "a deploy as eg/haproxy.cfg says: drain, graceful stop, restart, ready, backend $be" => sub {
            my $A = pserver($be, 'A', grace => 5);
            my $B = pserver($be, 'B', grace => 5);
            my $pa = $A->port;
            my $f = free_port();
            my $h = haproxy_start(dir => "$TMP", name => "deploy-$be", config => rr_config($f, $A, $B));
            ok($h->wait_state(3, 'be/a' => qr/^UP L[4-7]OK/, 'be/b' => qr/^UP L[4-7]OK/),
               'haproxy: both instances UP');
            my ($la, $n) = (undef, 0);
            while (!$la && $n++ < 4) {
                my $c = client($f);
                $la = $c if (who($c)->{name} // '') eq 'A';
            }
            ok($la, 'a long-lived connection to A') or return;
            is($h->cmd('set server be/a state drain') // 'no answer', "\n", 'set server be/a state drain');
            ok($h->wait_state(2, 'be/a' => qr/^DRAIN/), 'haproxy: A is DRAIN');
            my @drain = map { serve($f) } 1 .. 6;
            is("@drain", join(' ', ('B') x 6), 'new connections go to B only');
            is(who($la)->{name}, 'A', 'A serves its open connection on');
            kill 'TERM', $A->pid;
            ok($A->wait_event(qr/^term$/, 2), 'A: TERM, stop(grace => 5)');
            is(who($la)->{name}, 'A', 'and during its grace');
            close $la;
            ok($A->wait_event(qr/^run_returned 1$/, 3), 'its last connection closed: A\'s run returns');
            is($A->wait_exit(3), 0, 'A exits 0');
            quiet($A, 'old A');
            my $A2 = pserver($be, 'A', grace => 5, port => $pa);
            is($A2->port, $pa, 'the new A listens on the same port');
            is($h->cmd('set server be/a state ready') // 'no answer', "\n", 'set server be/a state ready');
            ok($h->wait_state(3, 'be/a' => qr/^UP L[4-7]OK/), 'haproxy: A is UP again');
            my @after = map { serve($f) } 1 .. 6;
            is(scalar(grep { $_ eq 'LOST' } @after), 0, 'no request lost');
            ok((grep { $_ eq 'A' } @after) && (grep { $_ eq 'B' } @after), "both serve again (@after)");
            quiet($A2, 'new A');
            quiet($B, 'B');
            $h->stop;
        };

        isd_subtest "round robin; one instance killed: no lost reply, backend $be" => sub {
            my $A = pserver($be, 'A');
            my $B = pserver($be, 'B');
            my $f = free_port();
            my $h = haproxy_start(dir => "$TMP", name => "kill-$be", config => rr_config($f, $A, $B));
            ok($h->wait_state(3, 'be/a' => qr/^UP L[4-7]OK/, 'be/b' => qr/^UP L[4-7]OK/),
               'haproxy: both instances UP');
            my @first = map { serve($f) } 1 .. 6;
            ok((grep { $_ eq 'A' } @first) && (grep { $_ eq 'B' } @first), "both serve (@first)");
            kill 'KILL', $A->pid;
            ok(defined $A->wait_exit(3), 'A killed');
            my @after = map { serve($f) } 1 .. 10;
            is("@after", join(' ', ('B') x 10), 'the 10 requests right after: all served, by B');
            ok($h->wait_state(3, 'be/a' => qr/^DOWN/), 'haproxy marks A DOWN');
            my @later = map { serve($f) } 1 .. 5;
            is("@later", join(' ', ('B') x 5), 'later requests: all by B');
            quiet($B, 'B');
            $h->stop;
        };

        isd_subtest "haproxy not among trusted_proxies: refused, backend $be" => sub {
            my $A = pserver($be, 'A', trusted_proxies => ['10.0.0.0/8']);
            my $B = pserver($be, 'B', trusted_proxies => ['10.0.0.0/8']);
            my ($pa, $pb) = ($A->port, $B->port);
            my $f = free_port();
            my $h = haproxy_start(dir => "$TMP", name => "untrusted-$be", config => <<"EOC");
frontend fe
    bind 127.0.0.1:$f
    default_backend be

backend be
    balance roundrobin
    retries 0
    server a 127.0.0.1:$pa send-proxy-v2
    server b 127.0.0.1:$pb send-proxy-v2
EOC
            # retries 0: the server resets a refused connection right after
            # accept(2); when the reset beats haproxy's own view of the
            # connect, haproxy counts a connection failure and would retry
            # (and each retry would be refused and reported again)
            for my $i (1, 2) {
                my $c = client($f);
                print $c "who\n";
                my $r = read_line($c, 3);
                ok(!defined $r && got_eof($c), "client $i: no answer, closed") or diag($r);
            }
            for my $s ([A => $A], [B => $B]) {
                my ($n, $srv) = @$s;
                ok($srv->wait_event(qr/^error /, 2), "$n: an error callback");
                my @err = $srv->grep_events(qr/^error /);
                is(scalar @err, 1, "$n: exactly one");
                like($err[0] // '', qr/^error undef .*127\.0\.0\.1:\d+.*not a trusted proxy/,
                     "$n: \"... 127.0.0.1:PORT refused: PROXY: source 127.0.0.1 is not a trusted proxy\"");
                is($srv->count(qr/^add /), 0, "$n: no add");
                is($srv->stderr, '', "$n: nothing on STDERR");
            }
            $h->stop;
        };
    }

    # eg/haproxy.cfg with its ports moved, in front of two eg/proxied.pl
    isd_subtest 'eg/haproxy.cfg in front of two eg/proxied.pl' => sub {
        my ($f, $p1, $p2) = (free_port(), free_port(), free_port());
        my $cfg = TestProc::slurp("$ROOT/eg/haproxy.cfg");
        my %map = (7000 => $f, 7001 => $p1, 7002 => $p2);
        $cfg =~ s/\b(700[012])\b/$map{$1}/g;
        $cfg =~ s/^(\s*stats\s+socket\s+)\S+/$1$TMP\/eg.sock/m;
        $cfg =~ s/^(\s*(?:user|group|chroot|pidfile|daemon)\b)/#$1/mg;   # not root, not detached
        my @pid = map { spawn([@PERL, "$ROOT/eg/proxied.pl", $_], out => "$TMP/proxied-$_.out") } $p1, $p2;
        ok(wait_until(sub { my $ok = 1; for ($p1, $p2) { $ok &&= listening($_) } $ok }, 10),
           'both eg/proxied.pl listen');
        my $h = haproxy_start(dir => "$TMP", name => 'eg', config => $cfg, raw => 1);
        ok($h->wait_state(3, 'proxied/s1' => qr/^UP L[4-7]OK/, 'proxied/s2' => qr/^UP L[4-7]OK/),
           'haproxy: both UP') or diag(join "\n", map { "$_: " . ($h->state($_) // '?') } 'proxied/s1', 'proxied/s2');
        my %port;
        for my $i (1 .. 4) {
            my $c = client($f);
            my $hello = read_line($c, 3) // '';
            my $me = $c->sockhost . ':' . $c->sockport;
            like($hello, qr/\Q$me\E/, "client $i greeted with its own address ($me)");
            $port{$1}++ if $hello =~ /port (\d+)/;
            is(ask($c, 'ping'), 'ping', 'and echoed');
        }
        is(scalar keys %port, 2, 'both instances greeted someone') or diag(join ' ', %port);
        $h->stop;
        is(TestProc::end_kid($_), 0, 'TERM: eg/proxied.pl exits 0') for @pid;
        for my $p ($p1, $p2) {
            unlike(TestProc::slurp("$TMP/proxied-$p.out"), qr/refused|warn|error/i, "eg/proxied.pl $p: no refusal or warning")
                or diag(TestProc::slurp("$TMP/proxied-$p.out"));
        }
    };
}

# serve($front): one request through haproxy; the name of the instance that
# answered, or 'LOST'
sub serve {
    my ($front) = @_;
    my $c = try_client($front, timeout => 3) or return 'LOST';
    my $w = who($c);
    close $c;
    return $w->{name} // 'LOST';
}

sub rr_config {
    my ($f, $A, $B) = @_;
    my ($pa, $pb) = ($A->port, $B->port);
    return <<"EOC";
frontend fe
    bind 127.0.0.1:$f
    default_backend be

backend be
    balance roundrobin
    retries 3
    option redispatch 1
    default-server send-proxy-v2 check inter 100ms fastinter 100ms downinter 100ms fall 1 rise 1
    server a 127.0.0.1:$pa
    server b 127.0.0.1:$pb
EOC
}

done_testing;
