#!perl
# The PROXY protocol's options and life cycle (issue 15): what new takes and
# refuses (each croak names the option and the value), listeners with and
# without a header side by side, trusted_proxies, proxy_timeout, what
# $io->proxy returns and until when, IPv6 and UNIX headers, LOCAL
# connections, health checks that go without a word, a forked child and
# prefork workers that keep their listeners' header, and callbacks that die
# or destroy the server while a connection is dropped.  Hostile headers and
# a real HAProxy: t/58-haproxy.t.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use TestISD;
use Test::More;
use File::Temp ();
use IO::Socket::UNIX ();
use POSIX ();
use Socket ();

use IO::Socket::INET::Daemon;

my $SIG2 = "\r\n\r\n\0\r\nQUIT\n";

# a v2 header: command (0 LOCAL, 1 PROXY), family/transport byte, the
# address block, the TLVs
sub v2 {
    my ($cmd, $fam, $addr, $tlv) = @_;
    $tlv = '' unless defined $tlv;
    return $SIG2 . pack('CCn', 0x20 | $cmd, $fam, length($addr . $tlv)) . $addr . $tlv;
}
sub v2_tcp4 {
    my ($src, $dst, $sp, $dp, $tlv) = @_;
    return v2(1, 0x11, pack('a4a4nn', Socket::inet_aton($src), Socket::inet_aton($dst), $sp, $dp), $tlv);
}
sub tlv { my ($type, $v) = @_; pack('Cn', $type, length $v) . $v }

my $CROAK = qr/^IO::Socket::INET::Daemon::new: /;

# ----------------------------------------------------------------- options
subtest 'new: what it refuses, naming the option and the value' => sub {
    my @bad = (
        [ { proxy_protocol => 2 }, qr/${CROAK}proxy_protocol: '2' is not 0 or 1/ ],
        [ { proxy_protocol => 'yes' }, qr/proxy_protocol: 'yes' is not 0 or 1/ ],
        [ { proxy_protocol => 1, proxy_timeout => -1 },
          qr/${CROAK}proxy_timeout: '-1' is not a number of seconds/ ],
        [ { proxy_protocol => 1, proxy_timeout => 'soon' }, qr/proxy_timeout: 'soon'/ ],
        [ { proxy_protocol => 1, proxy_timeout => undef }, qr/proxy_timeout: undef/ ],
        [ { proxy_protocol => 1, trusted_proxies => [] },
          qr/${CROAK}trusted_proxies: '\[\]' is empty/ ],
        [ { proxy_protocol => 1, trusted_proxies => {} },
          qr/trusted_proxies: 'HASH\(0x[0-9a-f]+\)' is not an array reference/ ],
        [ { proxy_protocol => 1, trusted_proxies => ['10.0.0.0/33'] },
          qr/${CROAK}trusted_proxies: '10.0.0.0\/33' is not an IPv4 or IPv6 address or CIDR block/ ],
        [ { proxy_protocol => 1, trusted_proxies => ['localhost'] }, qr/trusted_proxies: 'localhost' is not/ ],
        [ { proxy_protocol => 1, trusted_proxies => ['10.0.0.1/08'] }, qr/'10.0.0.1\/08' is not/ ],
        [ { proxy_protocol => 1, trusted_proxies => ["127.0.0.1\0junk"] }, qr/trusted_proxies: '127.0.0.1\0junk' is not/ ],
        [ { proxy_protocol => 1, trusted_proxies => ["127.0.0.\x{661}"] }, qr/trusted_proxies: '127.0.0.\x{661}' is not/ ],
        [ { proxy_protocol => 1, trusted_proxies => [undef] }, qr/trusted_proxies: undef is not/ ],
        [ { trusted_proxies => ['127.0.0.1'] },
          qr/${CROAK}trusted_proxies: '127.0.0.1' is for a listener with proxy_protocol => 1, and there is none/ ],
        [ { proxy_timeout => 5 }, qr/${CROAK}proxy_timeout: '5' is for a listener with proxy_protocol/ ],
        [ { listen => ['udp:127.0.0.1:0'], proxy_protocol => 1 },
          qr/${CROAK}proxy_protocol: '1' has no TCP or UNIX listener to go with/ ],
        [ { listen => [{ address => 'udp:127.0.0.1:0', proxy_protocol => 1 }] },
          qr/${CROAK}listen: 'udp:127.0.0.1:0' cannot take proxy_protocol \(it is for TCP and UNIX listeners\)/ ],
        [ { listen => [{ address => '127.0.0.1:0', trusted_proxies => ['::1'] }] },
          qr/trusted_proxies: '::1' is for a listener with proxy_protocol => 1, and there is none of that address/ ],
        [ { listen => [{ address => '127.0.0.1:0', proxy_protocol => 0, trusted_proxies => ['::1'] }],
            proxy_protocol => 1 },
          qr/trusted_proxies: '::1' is for a listener with proxy_protocol => 1, and there is none of that/ ],
    );
    for my $b (@bad) {
        my %o = (port => 0, host => '127.0.0.1', %{ $b->[0] });
        my $ok = eval { IO::Socket::INET::Daemon->new(%o); 1 };
        my $err = $@;
        ok(!$ok, "refused: " . join(', ', map { "$_ => " . (defined $o{$_} ? $o{$_} : 'undef') } sort keys %{ $b->[0] }));
        like($err, $b->[1], '... saying why');
        like($err, qr/ at \Q$0\E line \d+/, '... from the caller') if $err;
    }
    my @good = (
        { proxy_protocol => 1 },
        { proxy_protocol => 0 },
        { proxy_protocol => 1, trusted_proxies => '127.0.0.1' },
        { proxy_protocol => 1, trusted_proxies => ['10.1.2.3/8', '::1', 'fd00::/8', '::ffff:10.0.0.0/104'] },
        { proxy_protocol => 1, proxy_timeout => 0 },
        { proxy_protocol => 1, proxy_timeout => 0.25 },
        { listen => [{ address => '127.0.0.1:0', proxy_protocol => 1, proxy_timeout => 1,
                       trusted_proxies => ['127.0.0.1'] }, 'udp:127.0.0.1:0'] },
        { listen => [{ address => 'unix:/tmp/x.sock', proxy_protocol => 1 }] },
        { listen => ['fd:3'], proxy_protocol => 1 },
    );
    for my $g (@good) {
        my $d = eval { IO::Socket::INET::Daemon->new(port => 0, host => '127.0.0.1', %$g) };
        ok($d, 'taken: ' . join(', ', map { "$_ => " . (ref $g->{$_} ? "[@{ref $g->{$_} eq 'ARRAY' ? $g->{$_} : [] }]" : $g->{$_}) } sort keys %$g))
            or diag $@;
    }
};

# ---------------------------------------------------------------- a server

my %cb = (
    add => sub {
        my ($io) = @_;
        my $p = $io->proxy;
        log_event('add %s %s %s %s %s', $io->peerhost, $io->peerport, $io->sockhost, $io->sockport,
                  $p ? "v$p->{version} $p->{command}" : 'none');
        $io->print('hello ', $io->peerhost, ' ', $io->peerport, "\n");
        1;
    },
    data => sub {
        my ($io, $d, $l) = @_;
        chomp(my $c = $l);
        if ($c eq 'proxy') {
            my $p = $io->proxy;
            my @k;
            my $walk;
            $walk = sub {
                my ($pre, $h) = @_;
                for my $k (sort keys %$h) {
                    ref $h->{$k} ? $walk->("$pre$k.", $h->{$k}) : push @k, "$pre$k=$h->{$k}";
                }
            };
            $walk->('', $p) if $p;
            $io->print($p ? join(' ', @k) : 'undef', "\n");
        }
        elsif ($c eq 'stats') {
            my $s = $d->stats;
            $io->print("rejected=$s->{rejected} accepted=$s->{accepted} errors=$s->{errors}\n");
        }
        else {
            $io->print("echo $c\n");
        }
        1;
    },
    remove => sub {
        my ($io) = @_;
        my $p = $io->proxy;
        log_event('remove %s %s', $io->peerport, $p ? "v$p->{version}" : 'none');
    },
    error => sub { log_event('error %s %s', defined $_[0] ? 'io' : 'undef', $_[2]) },
);

sub server { my ($be, %o) = @_; start_server(backend => $be, callback => {%cb}, %o) }

sub got_line {
    my ($c, $want, $name) = @_;
    my $l = read_line($c, 5);
    defined $l and $l =~ s/\n\z//;
    ref $want ? like($l, $want, $name) : is($l, $want, $name);
    return $l;
}

for my $be (backends()) {
    isd_subtest("backend $be: listeners with and without a header, side by side", sub {
        my $srv = server($be,
            listen => [{ address => '127.0.0.1:0', proxy_protocol => 1 }, '127.0.0.1:0'],
            child_init => sub { log_event('addresses %s', join ' ', $_[0]->addresses) });
        ok($srv->wait_event(qr/^addresses /, 5), 'addresses logged');
        my ($a) = $srv->grep_events(qr/^addresses /);
        my ($pp, $plain) = $a =~ /127\.0\.0\.1:(\d+) 127\.0\.0\.1:(\d+)/;
        ok($pp && $plain, "two ports ($pp, $plain)");

        my $c = client($plain);
        got_line($c, 'hello 127.0.0.1 ' . $c->sockport, 'plain listener: served at once, the real peer');
        send_all($c, "proxy\n");
        got_line($c, 'undef', '... $io->proxy is undef there');
        send_all($c, "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n");
        got_line($c, 'echo PROXY TCP4 1.2.3.4 5.6.7.8 1 2' . "\r", '... and a PROXY line is just a line');

        $c = client($pp);
        send_all($c, "PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\nproxy\n");
        got_line($c, 'hello 192.0.2.1 56324', 'PROXY listener: add sees the header\'s client');
        got_line($c, qr/^command=PROXY dest\.host=198\.51\.100\.7 dest\.port=443 family=INET length=45 source\.host=192\.0\.2\.1 source\.port=56324 transport=STREAM version=1 via\.host=127\.0\.0\.1 via\.port=(\d+)$/,
                 '$io->proxy: the header, and the proxy as via');
        ok($srv->wait_event(qr/^add 192\.0\.2\.1 56324 198\.51\.100\.7 443 v1 PROXY$/, 5),
           'peerhost, peerport, sockhost, sockport follow the header');
        close $c;
        ok($srv->wait_event(qr/^remove 56324 v1$/, 5), '$io->proxy still there in remove');

        # v2, IPv6 addresses, TLVs, the stream in the same packet
        $c = client($pp);
        my $tlv = tlv(1, 'h2') . tlv(2, "\xc3\xa9.example") . tlv(5, 'id-42') . tlv(0xE1, "\0\1")
                . tlv(0x20, pack('CN', 5, 0) . tlv(0x21, 'TLSv1.3') . tlv(0x22, 'Alice'));
        my $addr = Socket::inet_pton(Socket::AF_INET6(), '2001:db8::1') . Socket::inet_pton(Socket::AF_INET6(), '2001:db8::2')
                 . pack('nn', 40000, 8443);
        send_all($c, v2(1, 0x21, $addr, $tlv) . "proxy\n");
        got_line($c, 'hello 2001:db8::1 40000', 'v2 TCP6: the client\'s IPv6 address');
        got_line($c, qr/^alpn=h2 authority=\xc3\xa9\.example command=PROXY dest\.host=2001:db8::2 dest\.port=8443 family=INET6 length=\d+ source\.host=2001:db8::1 source\.port=40000 ssl\.client=5 ssl\.cn=Alice ssl\.verify=0 ssl\.version=TLSv1\.3 tlv\.225=\0\x01 transport=STREAM unique_id=id-42 version=2 via\.host=127\.0\.0\.1 via\.port=\d+$/,
                 '$io->proxy: TLVs by name, SSL sub-fields, others by number (bytes as sent)');
        close $c;

        # an IPv4-mapped address is IPv4
        $c = client($pp);
        $addr = Socket::inet_pton(Socket::AF_INET6(), '::ffff:192.0.2.9') . Socket::inet_pton(Socket::AF_INET6(), '::ffff:192.0.2.10')
              . pack('nn', 7, 8);
        send_all($c, v2(1, 0x21, $addr));
        got_line($c, 'hello 192.0.2.9 7', 'an IPv4-mapped source is IPv4');
        close $c;

        # LOCAL with the stream: the real addresses
        $c = client($pp);
        send_all($c, v2(0, 0x00, '') . "proxy\n");
        got_line($c, 'hello 127.0.0.1 ' . $c->sockport, 'LOCAL: the real peer');
        got_line($c, qr/^command=LOCAL family=UNSPEC length=16 transport=UNSPEC version=2 via\.host=127\.0\.0\.1 via\.port=\d+$/,
                 '$io->proxy of a LOCAL header: no source, no dest');
        close $c;
        $c = client($pp);
        send_all($c, "PROXY UNKNOWN ffff::1 whatever\r\nproxy\n");
        got_line($c, 'hello 127.0.0.1 ' . $c->sockport, 'v1 UNKNOWN: the real peer');
        got_line($c, qr/^command=UNKNOWN family=UNSPEC /, '... command UNKNOWN');
        close $c;

        # the stats
        $c = client($plain);
        read_line($c, 5);
        my $bad = client($pp);
        send_all($bad, "GET / HTTP/1.0\r\n\r\n");
        ok(read_until_eof($bad, 5) eq '' && got_eof($bad), 'plain text on the PROXY listener: dropped, no byte sent');
        ok($srv->wait_event(qr/^error undef connection from 127\.0\.0\.1:\d+ refused: PROXY: /, 5),
           'one error, without $io, naming the source');
        send_all($c, "stats\n");
        got_line($c, qr/^rejected=1 accepted=7 errors=1$/, 'stats: rejected 1 (not accepted)');
        is($srv->count(qr/^add /), 7, 'no add for it');
        is($srv->stderr, '', 'nothing on STDERR');
    });

    isd_subtest("backend $be: trusted_proxies", sub {
        my $srv = server($be, proxy_protocol => 1, trusted_proxies => ['10.0.0.0/8', '::1']);
        my $c = client($srv);
        my $t0 = now();
        ok(read_until_eof($c, 5) eq '' && got_eof($c), 'from 127.0.0.1, untrusted: dropped before a byte is read');
        ok($srv->wait_event(qr/^error undef connection from 127\.0\.0\.1:\d+ refused: PROXY: source 127\.0\.0\.1 is not a trusted proxy$/, 5),
           'error: not a trusted proxy');
        ok(!$srv->count(qr/^add /), 'no add');
        $srv->stop;

        $srv = server($be, listen => [{ address => '127.0.0.1:0', proxy_protocol => 1,
                                        trusted_proxies => ['127.0.0.0/8'] }],
                      proxy_timeout => 0.3);
        $c = client($srv);
        send_all($c, "PROXY TCP4 203.0.113.5 127.0.0.1 999 1000\r\n");
        got_line($c, 'hello 203.0.113.5 999', 'from 127.0.0.1 in 127.0.0.0/8: trusted');

        # proxy_timeout 0.3 s: a header that is late
        my $slow = client($srv);
        $t0 = now();
        send_all($slow, "PROXY TCP4 ");
        ok(read_until_eof($slow, 5) eq '' && got_eof($slow), 'a header not complete in proxy_timeout: dropped');
        my $took = now() - $t0;
        ok($took > 0.2 && $took < 3, sprintf('after about 0.3 s (%.2f)', $took));
        ok($srv->wait_event(qr/^error undef connection from .* refused: PROXY header not complete within 300 ms$/, 5),
           'error: not complete within 300 ms');
        send_all($c, "still\n");
        got_line($c, 'echo still', 'the other connection is served on');
    });

    isd_subtest("backend $be: health checks go without a word", sub {
        my $srv = server($be, proxy_protocol => 1, proxy_timeout => 0.5);
        my $port = $srv->port;
        for my $i (1 .. 3) {
            my $c = client($port);                   # connect, close
            close $c;
            $c = client($port);                      # LOCAL, close
            send_all($c, v2(0, 0, ''));
            close $c;
            $c = client($port);                      # v1 of its own addresses, close
            send_all($c, sprintf("PROXY TCP4 127.0.0.1 127.0.0.1 %d %d\r\n", $c->sockport, $port));
            close $c;
        }
        # a LOCAL connection that stays: served after proxy_timeout
        my $c = client($port);
        my $t0 = now();
        send_all($c, v2(0, 0, ''));
        got_line($c, 'hello 127.0.0.1 ' . $c->sockport, 'a LOCAL connection that stays: greeted');
        ok(now() - $t0 > 0.35, sprintf('... after proxy_timeout (%.2f s)', now() - $t0));
        send_all($c, "stats\n");
        got_line($c, qr/^rejected=0 accepted=1 errors=0$/, 'nine probes: not accepted, not rejected, no error');
        is($srv->count(qr/^(?:add|error|remove) /), 1, 'one add in all (the one that stayed)');
        is($srv->stderr, '', 'no warning');
    });

    isd_subtest("backend $be: a UNIX listener", sub {
        my $dir = File::Temp->newdir('isd-pp-XXXXXX', TMPDIR => 1);
        my $path = "$dir/s";
        my $srv = server($be, listen => [ "unix:$path", '127.0.0.1:0' ], proxy_protocol => 1,
                         trusted_proxies => ['10.0.0.0/8']);
        my $c = IO::Socket::UNIX->new(Peer => $path) or die "unix: $!";
        send_all($c, "PROXY TCP4 192.0.2.1 192.0.2.2 3 4\r\n");
        got_line($c, 'hello 192.0.2.1 3', 'UNIX: always trusted, the header\'s client');
        send_all($c, "proxy\n");
        got_line($c, qr/^command=PROXY .*via\.host=\S*/, '$io->proxy there too');
    });

    isd_subtest("backend $be: a child forked by a callback serves with the header, prefork workers too", sub {
        my $srv = server($be, proxy_protocol => 1, child_run => sub {
            my ($d) = @_;
            # serve one connection, then a forked child serves the rest
            $d->{callback}{data} = sub {
                my ($io, $dd, $l) = @_;
                if ($l =~ /^fork/) {
                    $io->print("forking\n");
                    $dd->stop;
                }
                1;
            };
            $d->run;
            my $pid = fork;
            if (!defined $pid) { log_event('fork failed'); return }
            if ($pid) { waitpid $pid, 0; log_event('child status %d', $?); return }
            $d->{callback}{data} = $cb{data};
            log_event('child %d runs', $$);
            $d->run;
            POSIX::_exit(0);
        });
        my $c = client($srv);
        send_all($c, "PROXY TCP4 192.0.2.1 192.0.2.2 3 4\r\nfork\n");
        got_line($c, 'hello 192.0.2.1 3', 'the parent: the header');
        got_line($c, 'forking', 'the parent stops');
        ok($srv->wait_event(qr/^child \d+ runs$/, 5), 'a forked child runs');
        my $c2 = client($srv);
        send_all($c2, "PROXY TCP4 192.0.2.7 192.0.2.8 5 6\r\nproxy\n");
        got_line($c2, 'hello 192.0.2.7 5', 'the child takes the header too');
        got_line($c2, qr/^command=PROXY .*version=1 /, '... and has it');
        my $c3 = client($srv);
        send_all($c3, "not a header\n");
        ok(read_until_eof($c3, 5) eq '' && got_eof($c3), '... and drops what is not one');
        ok($srv->wait_event(qr/^error undef connection from .* refused: PROXY v1: /, 5)
           || $srv->wait_event(qr/^error undef .* refused: PROXY: /, 1), '... with an error');
        kill 'TERM', $srv->pid;
    });

    isd_subtest("backend $be: prefork workers", sub {
        my $srv = server($be, proxy_protocol => 1, workers => 2,
                         child_run => sub { $_[0]->run; log_event('master done') });
        my %pids;
        for my $i (1 .. 6) {
            my $c = client($srv);
            send_all($c, "PROXY TCP4 198.51.100.$i 192.0.2.2 $i 4\r\n");
            got_line($c, "hello 198.51.100.$i $i", "connection $i: the header's client, in a worker");
            close $c;
        }
        my $bad = client($srv);
        send_all($bad, "\x16\x03\x01\x00\x05hello");
        ok(read_until_eof($bad, 5) eq '' && got_eof($bad), 'a worker drops TLS on a PROXY listener');
        ok($srv->wait_event(qr/^error undef connection from .* refused: PROXY: /, 5), 'with an error');
        kill 'TERM', $srv->pid;
        ok(defined $srv->wait_exit(10), 'the master stops');
    });

    isd_subtest("backend $be: callbacks of a dropped connection that die or destroy", sub {
        my $srv = server($be, proxy_protocol => 1, trusted_proxies => ['127.0.0.1'],
            callback => { %cb, error => sub {
                log_event('error %s', $_[2]);
                die "boom\n" if $_[2] =~ /neither/;
                $_[1]->destroy if $_[2] =~ /PROXY v2: /;
            } });
        my $c = client($srv);
        send_all($c, "GET / HTTP/1.0\r\n\r\n");
        ok(read_until_eof($c, 5) eq '' && got_eof($c), 'dropped');
        ok($srv->wait_event(qr/^error connection from .* refused/, 5), 'error ran, and died');
        $c = client($srv);
        send_all($c, "PROXY TCP4 1.1.1.1 2.2.2.2 1 2\r\n");
        got_line($c, 'hello 1.1.1.1 1', 'served on after the die');
        like($srv->stderr, qr/error callback died: boom/, 'the die is a warning');
        my $c2 = client($srv);
        send_all($c2, "\r\n\r\n\0\r\nQUIT\n\x31\x11\0\x0c");
        ok(read_until_eof($c2, 5) eq '' && got_eof($c2), 'a header dropped while error destroys the server');
        ok(read_until_eof($c, 5) eq '' && got_eof($c), 'destroy closed the others');
        ok(defined $srv->wait_exit(5), 'the server child ended (run returned)');
        ok($srv->wait_event(qr/^child_done$/, 5), 'and cleanly');
    });

    isd_subtest("backend $be: stop(grace) with headers pending", sub {
        my $srv = server($be, proxy_protocol => 1, proxy_timeout => 0, child_init => sub {
            my ($d) = @_;
            $d->{callback}{data} = sub {
                my ($io, $dd, $l) = @_;
                $dd->stop(grace => 1.5) if $l =~ /stop/;
                $io->print("echo $l");
                1;
            };
        });
        my $pending = client($srv);
        send_all($pending, "PROXY TCP4 1.2.3.4 ");
        my $never = client($srv);
        send_all($never, "PROXY TCP4 9.9.9.9 ");
        my $c = client($srv);
        send_all($c, "PROXY TCP4 5.6.7.8 1.2.3.4 1 2\r\nstop\n");
        got_line($c, 'hello 5.6.7.8 1', 'accepted');
        got_line($c, 'echo stop', 'stop(grace) asked');
        close $c;
        ok(!try_client($srv->port, timeout => 1), 'no new connection after the stop');
        send_all($pending, "5.6.7.8 1 2\r\nlate\n");
        got_line($pending, 'hello 1.2.3.4 1', 'a header sent before the stop and completed during the grace: served');
        got_line($pending, 'echo late', '... its request too');
        close $pending;
        my $t0 = now();
        ok(read_until_eof($never, 5) eq '' && got_eof($never), 'one never completed: closed at the grace\'s end');
        ok(now() - $t0 < 3, sprintf('... (%.2f s)', now() - $t0));
        ok($srv->wait_event(qr/^run_returned/, 5), 'run returns');
        is($srv->count(qr/^error /), 0, 'without an error for it');
    });
}

done_testing;
