#!perl
# TLS (issue 14), on every backend: STARTTLS ($io->start_tls in an
# SMTP-like exchange: what was printed before goes out in plain text, what
# is printed after encrypted; start_tls returns true, a getline right
# after it undef at once; it croaks on a listener without starttls and on
# a connection that is TLS already; plain text pipelined after STARTTLS
# never reaches data; a failed STARTTLS handshake is one error, then
# remove), tls_reload under traffic (no client fails, new connections get
# the new certificate, an open one goes on, a bad file or key keeps the old
# one and is reported; from a HUP handler, the SNI certificates and the CAs
# too), a 20 MiB reply to a slow TLS reader (all bytes intact, others
# served meanwhile), backpressure and max_output, $io->close after a big
# print and destroy (everything delivered, then close_notify), a graceful
# stop, a forked child that cannot write to a TLS connection (EPERM), and
# prefork workers serving TLS (HUP to the master reloads the certificate).
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
use IO::Socket::INET::Daemon;
use POSIX ();
use Scalar::Util ();
use Time::HiRes ();

my $why = tls_skip_reason();
plan skip_all => $why if $why;

my $C = make_certs();
my %TLS = (cert_file => $C->{localhost}, key_file => $C->{localhost_key});

# STARTTLS: "220 go ahead", then start_tls; a croak is answered "454 ..."
my %STARTTLS = (
    STARTTLS => sub {
        my ($io) = @_;
        $io->getline;                   # (the line data was called with)
        $io->print("220 go ahead\n");
        my $r = eval { $io->start_tls };
        if (!defined $r) {
            (my $e = $@) =~ s/\n.*//s;
            $io->print("454 $e\n");
            TestISD::log_event('croak %s %s', $io->peerport, $e);
            return 1;
        }
        my $t0 = TestISD::now();
        my $next = $io->getline;
        TestISD::log_event('start_tls %s returned %s, then getline %s (%.2f s), tls %s', $io->peerport, $r,
                           defined $next ? "'$next'" : 'undef', TestISD::now() - $t0,
                           defined $io->tls ? 'defined' : 'undef');
        $io->print("printed after start_tls\n");
        return 1;
    },
);

sub server {
    my ($be, %o) = @_;
    my $cmds = delete $o{commands} || {};
    return start_server(backend => $be, callback => tls_callbacks(commands => { %STARTTLS, %$cmds }),
                        child_deadline => 40 * $TestTLS::SLOW,
                        child_init => sub { log_event('addresses %s', join ' ', $_[0]->addresses) },
                        %o);
}

sub port_of {
    my ($srv, $i) = @_;
    $srv->wait_event(qr/^addresses /, 5);
    my ($a) = $srv->grep_events(qr/^addresses /);
    my @a = split ' ', ($a || '');
    return $a[$i + 1] && $a[$i + 1] =~ /:(\d+)\z/ ? $1 : undef;
}

sub tls_of { tls_unflat(ask($_[0], 'tls')) }

for my $be (backends()) {
    isd_subtest("backend $be: STARTTLS", sub {
        my $srv = server($be, listen => [{ address => '127.0.0.1:0', tls => { %TLS, starttls => 1 } },
                                         { address => '127.0.0.1:0', tls => { %TLS } },
                                         '127.0.0.1:0']);
        my ($sp, $tp, $pp) = map { port_of($srv, $_) } 0 .. 2;

        my $c = client($sp);
        is(ask($c, 'EHLO me'), 'EHLO me', 'a starttls listener: plain text at first');
        is(ask($c, 'tls'), 'undef', '... $io->tls undef');
        my $cport = $c->sockport;
        is(ask($c, 'STARTTLS'), '220 go ahead', 'STARTTLS: what was printed before start_tls comes in plain text');
        ok(tls_upgrade($c, ca => $C->{ca}, sni => 'localhost'), 'the client\'s handshake succeeds')
            or diag($IO::Socket::SSL::SSL_ERROR);
        is(read_line($c, 3), "printed after start_tls\n", 'what was printed after start_tls comes encrypted');
        ok($srv->wait_event(qr/^start_tls $cport /, 3), 'start_tls returned');
        my ($st) = $srv->grep_events(qr/^start_tls $cport /);
        like($st // '', qr/returned 1, then getline undef \(\d+\.\d+ s\), tls undef$/,
             '... true; a getline right after it returns undef; $io->tls undef until the handshake');
        my ($wait) = ($st // '') =~ /\((\d+\.\d+) s\)/;
        ok(defined $wait && $wait < 0.5, "... that getline returns at once (@{[ $wait // '?' ]} s)");
        is(peer_subject($c), 'localhost', '... the server\'s certificate, verified');
        my $t = tls_of($c) || {};
        is($t->{version}, 'TLSv1.3', '$io->tls after start_tls: TLSv1.3');
        is($t->{sni}, 'localhost', '... sni');
        is(ask($c, 'MAIL FROM:<a@example>'), 'MAIL FROM:<a@example>', 'the conversation goes on, encrypted');
        is(ask($c, 'STARTTLS'), '220 go ahead', 'STARTTLS again: ...');
        my $l = read_line($c, 3);
        like($l // '', qr/^454 .*start_tls/, '... start_tls croaks on a TLS connection, naming start_tls');
        ok(echo_ping($c, 'still'), '... and the connection goes on');
        is(ask($c, 'quit'), 'bye', 'quit');
        read_until_eof($c, 3);
        ok(got_eof($c) && clean_eof($c), '... close_notify');
        ok($srv->wait_event(qr/^remove $cport$/, 3), '... remove');
        is($srv->count(qr/^add $cport /), 1, 'one add for it (at the connect: plain)');

        # TLS 1.2, lines right after the handshake
        $c = client($sp);
        is(ask($c, 'STARTTLS'), '220 go ahead', 'TLS 1.2: 220');
        ok(tls_upgrade($c, ca => $C->{ca}, version => 'TLSv1_2'), '... upgraded');
        is(read_line($c, 3), "printed after start_tls\n", '... the line printed after start_tls');
        send_all($c, join('', map { "line $_\n" } 1 .. 100), 3);
        my $want = join '', map { "line $_\n" } 1 .. 100;
        is(read_n($c, length $want, 5 * $TestTLS::SLOW), $want, '... 100 pipelined lines echoed');
        is((tls_of($c) || {})->{version}, 'TLSv1.2', '... TLSv1.2');
        close $c;

        # a TLS listener without starttls, and a plain one: start_tls croaks
        $c = tls_client($tp, ca => $C->{ca});
        is(ask($c, 'STARTTLS'), '220 go ahead', 'a TLS listener without starttls: ...');
        like(read_line($c, 3) // '', qr/^454 .*start_tls/, '... start_tls croaks');
        ok(echo_ping($c, 'on'), '... the connection goes on');
        close $c;
        $c = client($pp);
        is(ask($c, 'STARTTLS'), '220 go ahead', 'a plain listener: ...');
        like(read_line($c, 3) // '', qr/^454 .*start_tls/, '... start_tls croaks');
        ok(echo_ping($c, 'on'), '... the connection goes on');
        is($srv->count(qr/^croak /), 3, 'three croaks in all');

        # plain text pipelined after STARTTLS is not taken for TLS input
        $c = client($sp);
        $cport = $c->sockport;
        send_all($c, "STARTTLS\nINJECTED\n", 3);
        is(read_line($c, 3), "220 go ahead\n", 'STARTTLS with a line behind it: 220');
        my $up = tls_upgrade($c, ca => $C->{ca});
        if ($up) {
            is(read_line($c, 3), "printed after start_tls\n", '... if the handshake goes through, the line printed after');
            ok(echo_ping($c, 'after'), '... and the connection works');
        }
        else {
            pass('... the handshake failed (the injected line spoilt it)');
        }
        Time::HiRes::sleep(0.2);
        is($srv->count(qr/^data $cport INJECTED$/), 0, '... the injected line never reaches data');
        close $c;

        # a failed STARTTLS handshake: one error, with $io, then remove
        $c = client($sp);
        $cport = $c->sockport;
        is(ask($c, 'STARTTLS'), '220 go ahead', 'a failed STARTTLS: 220');
        send_all($c, "this is not a ClientHello\n", 3);
        read_until_eof($c, 3);
        ok(got_eof($c), '... plain text instead of a handshake: the server ends the connection');
        ok($srv->wait_event(qr/^remove $cport$/, 3), '... remove');
        my @e = $srv->grep_events(qr/^error $cport /);
        is(scalar @e, 1, '... exactly one error, with $io');
        like($e[0] // '', qr/^error $cport connection 127\.0\.0\.1:$cport: TLS handshake: \S/,
             '... "connection 127.0.0.1:PORT: TLS handshake: REASON"');
        my @ev = grep { /^(error|remove) $cport\b/ } $srv->events;
        like($ev[0] // '', qr/^error /, '... error before remove');
        is($srv->stderr, '', 'nothing on STDERR');
    });

    isd_subtest("backend $be: tls_reload under traffic", sub {
        my $dir = File::Temp->newdir('isd-reload-XXXXXX', TMPDIR => 1, CLEANUP => 1);
        my ($pem, $key) = ("$dir/live.pem", "$dir/live.key");
        my $put = sub {
            my ($from, $to) = @_;
            File::Copy::copy($from, "$to.new") or die "copy $from: $!";
            rename "$to.new", $to or die "rename: $!";
        };
        $put->($C->{localhost}, $pem);
        $put->($C->{localhost_key}, $key);
        my $srv = server($be, tls => { cert_file => $pem, key_file => $key },
                         commands => { reload => sub {
                             my ($io, $d) = @_;
                             my $r = $d->tls_reload;
                             $io->print('reload ', ($r ? 1 : 0), "\n");
                             return 1;
                         } });
        my $ctl = tls_client($srv, ca => $C->{ca});
        my $old = tls_client($srv, ca => $C->{ca});
        is(peer_subject($old), 'localhost', 'before: the first certificate');
        ok(echo_ping($old, 'x'), 'an open connection');

        # clients that connect, talk and go, over and over, through the
        # reloads: one line each in $result ("ok SUBJECT" or "fail"), until
        # the parent says stop (after the last reload) and ten have talked.
        # Driven by the parent's progress, not a clock: under valgrind a
        # handshake takes a good part of a second.
        my $result = "$dir/traffic";
        my $stop   = "$dir/stop";
        my $pid = fork;
        die "fork: $!" unless defined $pid;
        if (!$pid) {
            alarm 30 * $TestTLS::SLOW;
            open my $log, '>>', $result or POSIX::_exit(2);
            $log->autoflush(1);
            my $ok = 0;
            until (-e $stop && $ok >= 10) {
                my $c = tls_try_client($srv->port, ca => $C->{ca}, timeout => 3);
                if ($c && echo_ping($c, "t$ok", 3 * $TestTLS::SLOW)) {
                    $ok++;
                    print $log 'ok ', (peer_subject($c) // '?'), "\n";
                } else {
                    print $log "fail\n";
                }
                close $c if $c;
            }
            close $log;
            POSIX::_exit(0);
        }
        my $seen = sub {            # how many traffic lines say $what
            my ($what) = @_;
            return 0 unless -e $result;
            my @l = grep { $_ eq $what } split /\n/, TestTLS::_slurp($result);
            return scalar @l;
        };
        ok(wait_until(sub { $seen->('ok localhost') }, 10 * $TestTLS::SLOW), 'the traffic runs');
        Time::HiRes::sleep(0.5);
        $put->($C->{localhost2}, $pem);
        $put->($C->{localhost2_key}, $key);
        is(ask($ctl, 'reload'), 'reload 1', 'tls_reload returns true');
        my $new = tls_client($srv, ca => $C->{ca});
        is(peer_subject($new), 'localhost-2', 'a new connection gets the new certificate');
        ok(echo_ping($old, 'y'), 'the open connection goes on');
        ok(echo_ping($new, 'z'), 'the new one is served');

        # a bad certificate file: false, the old one stays, reported
        Time::HiRes::sleep(0.3);
        $put->($C->{notpem}, $pem);
        is(ask($ctl, 'reload'), 'reload 0', 'a file that is not PEM: tls_reload returns false');
        ok($srv->wait_event(qr/^error undef tls_reload: /, 2), '... an error, $io undef');
        my @e = $srv->grep_events(qr/^error undef tls_reload: /);
        like($e[-1] // '', qr/^error undef tls_reload: .*\Q$pem\E/, '... "tls_reload: " naming the file');
        my $still = tls_client($srv, ca => $C->{ca});
        is(peer_subject($still), 'localhost-2', '... new connections still get the certificate in use');
        close $still;

        # a key that does not match
        $put->($C->{localhost}, $pem);
        $put->($C->{other_key}, $key);
        is(ask($ctl, 'reload'), 'reload 0', 'a key that does not match: false');
        ok($srv->wait_event(qr/^error undef tls_reload: /, 2, 2), '... an error');
        @e = $srv->grep_events(qr/^error undef tls_reload: /);
        like($e[-1] // '', qr/^error undef tls_reload: .*\Q$key\E.*key values mismatch/, '... naming the key file: "key values mismatch"');
        $still = tls_client($srv, ca => $C->{ca});
        is(peer_subject($still), 'localhost-2', '... the certificate in use stays');
        close $still;

        # some traffic with the new certificate, then good again
        ok(wait_until(sub { $seen->('ok localhost-2') }, 10 * $TestTLS::SLOW),
           'the traffic meets the new certificate');
        $put->($C->{localhost_key}, $key);
        is(ask($ctl, 'reload'), 'reload 1', 'both good again: true');
        $still = tls_client($srv, ca => $C->{ca});
        is(peer_subject($still), 'localhost', '... the reloaded certificate');
        close $still;

        my $n = $seen->('ok localhost');
        ok(wait_until(sub { $seen->('ok localhost') > $n }, 10 * $TestTLS::SLOW),
           'the traffic meets the certificate reloaded last');
        open my $sf, '>', $stop or die "$stop: $!";
        close $sf;
        my $st;
        wait_until(sub { my $r = waitpid($pid, POSIX::WNOHANG()); $st = $? if $r == $pid; $r != 0 },
                   30 * $TestTLS::SLOW);
        is($st, 0, 'the traffic process ended');
        my %cn;
        $cn{$_}++ for split /\n/, TestTLS::_slurp($result);
        my $r = join ', ', map { "$_: $cn{$_}" } sort keys %cn;
        ok(($cn{'ok localhost'} // 0) + ($cn{'ok localhost-2'} // 0) >= 10,
           "the traffic went on through the reloads ($r)");
        is($cn{fail} // 0, 0, '... no client failed');
        is(join(',', sort keys %cn), 'ok localhost,ok localhost-2', '... and saw only the two certificates');
        ok(echo_ping($old, 'end'), 'the connection opened before the reloads is still served');
        is($srv->count(qr/^error /), 2, 'two errors in all (the two bad reloads)');
        is($srv->stderr, '', 'nothing on STDERR');
    });

    isd_subtest("backend $be: tls_reload from a HUP handler: the SNI certificates and the CAs too", sub {
        my $dir = File::Temp->newdir('isd-reload-XXXXXX', TMPDIR => 1, CLEANUP => 1);
        my $put = sub {
            my ($from, $to) = @_;
            File::Copy::copy($from, "$dir/$to.new") or die "copy $from: $!";
            rename "$dir/$to.new", "$dir/$to" or die "rename: $!";
        };
        $put->($C->{localhost}, 'c.pem');
        $put->($C->{localhost_key}, 'c.key');
        $put->($C->{mail}, 'm.pem');
        $put->($C->{mail_key}, 'm.key');
        $put->($C->{ca}, 'ca.pem');
        my $srv = server($be, tls => { cert_file => "$dir/c.pem", key_file => "$dir/c.key",
                                       sni => { 'mail.example' => { cert_file => "$dir/m.pem",
                                                                    key_file => "$dir/m.key" } },
                                       verify_client => 'optional', ca_file => "$dir/ca.pem" },
                         child_init => sub {
                             Scalar::Util::weaken(my $d = $_[0]);
                             $SIG{HUP} = sub { log_event('reload %d', $d->tls_reload ? 1 : 0) };
                         });
        my %good = (cert => $C->{client}, key => $C->{client_key});
        my %other = (cert => $C->{foreign2}, key => $C->{foreign2_key});
        my $c = tls_client($srv, sni => 'mail.example');
        is(peer_subject($c), 'mail.example', 'before: SNI mail.example gets its certificate');
        close $c;
        $c = tls_client($srv, %good);
        is((tls_of($c) || {})->{peer_subject}, 'CN=client', 'before: a client certificate of the CA is taken');
        close $c;
        ok(not_served($srv->port, %other), 'before: one of the other CA is refused');

        $put->($C->{localhost2}, 'm.pem');
        $put->($C->{localhost2_key}, 'm.key');
        $put->($C->{foreign_ca}, 'ca.pem');
        kill 'HUP', $srv->pid;
        ok($srv->wait_event(qr/^reload /, 3), 'HUP: tls_reload ran in the handler');
        is(($srv->grep_events(qr/^reload /))[0], 'reload 1', '... and returned true');
        $c = tls_client($srv, sni => 'mail.example');
        is(peer_subject($c), 'localhost-2', 'after: SNI mail.example gets the new file');
        close $c;
        $c = tls_client($srv, sni => 'other.example');
        is(peer_subject($c), 'localhost', '... the default certificate is the same');
        close $c;
        $c = tls_client($srv, %other);
        is((tls_of($c) || {})->{peer_subject}, 'CN=foreign-2', 'after: a client certificate of the new CA is taken');
        close $c;
        ok(not_served($srv->port, %good), '... one of the old CA is refused');
        my @e = $srv->grep_events(qr/^error /);
        is(scalar @e, 2, 'an error for each refused client, no other');
    });

    isd_subtest("backend $be: 20 MiB to a slow TLS reader, others served meanwhile", sub {
        my $size = 20 * 1024 * 1024;
        my $want = pattern($size);
        my $srv = server($be, tls => { %TLS });
        my $c = tls_client($srv, ca => $C->{ca});
        my $other = tls_client($srv, ca => $C->{ca});
        print $c "big $size\n";
        my ($got, $pings, $slow_pings) = ('', 0, 0);
        my $t0 = now();
        my ($next_ping, $next_pause) = (1024 * 1024, 256 * 1024);
        my $sel = IO::Select->new($c);
        while (length $got < $size && now() - $t0 < 30 * $TestTLS::SLOW) {
            if (!$c->pending && !$sel->can_read(5)) { last }
            my $n = sysread($c, my $buf, 16384);     # small pieces
            last unless $n;
            $got .= $buf;
            if (length $got >= $next_pause) {
                $next_pause += 512 * 1024;
                Time::HiRes::sleep(0.03);           # with pauses: the server's writes block
            }
            if (length $got >= $next_ping) {
                $next_ping += 2 * 1024 * 1024;
                my $p0 = now();
                $pings++ if echo_ping($other, "ping $pings", 3);
                $slow_pings++ if now() - $p0 > $TestTLS::SLOW;
            }
        }
        is(length $got, $size, sprintf('all %d bytes arrived (%.1f s)', $size, now() - $t0));
        ok($got eq $want, '... intact, in order');
        ok($pings >= 9, "the other client was served meanwhile ($pings pings)");
        is($slow_pings, 0, '... each ping answered within a second');
        ok(echo_ping($c, 'after'), 'the reader is served after');
        is(join("\n", $srv->grep_events(qr/^error /)), '', 'no error');
        is($srv->stderr, '', 'nothing on STDERR');
    });

    isd_subtest("backend $be: backpressure and max_output over TLS", sub {
        my $srv = server($be, tls => { %TLS }, high_water => 64 * 1024, max_output => 4 * 1024 * 1024);
        my $c = tls_client($srv, ca => $C->{ca});
        my $n = 100;
        # 100 requests for 100000 bytes each, none of the replies read yet
        is(send_all($c, "big 100000\n" x $n, 5), 11 * $n, "$n requests pipelined");
        Time::HiRes::sleep(0.5);
        my $port = $c->sockport;
        is(join("\n", $srv->grep_events(qr/^error $port /)), '',
           'a client that does not read: held at high_water, not dropped for max_output');
        my $got = read_n($c, 100000 * $n, 10 * $TestTLS::SLOW);
        is(length $got, 100000 * $n, 'then it reads: every reply arrives');
        ok($got eq pattern(100000) x $n, '... intact, in order');
        ok(echo_ping($c, 'after'), '... and the connection goes on');
        close $c;

        # one reply over max_output: dropped, error then remove
        $c = tls_client($srv, ca => $C->{ca});
        $port = $c->sockport;
        print $c "big " . (5 * 1024 * 1024) . "\n";
        ok($srv->wait_event(qr/^remove $port$/, 5 * $TestTLS::SLOW), 'a print past max_output: remove');
        my @e = $srv->grep_events(qr/^error $port /);
        is(scalar @e, 1, '... after one error');
        like($e[0] // '', qr/max_output/, "... about max_output ($e[0])");
        read_until_eof($c, 5 * $TestTLS::SLOW);
        ok(got_eof($c), '... and the connection ends');
        close $c;
        my $d = tls_client($srv, ca => $C->{ca});
        ok(echo_ping($d, 'next'), 'the next client is served');
        close $d;
    });

    isd_subtest("backend $be: \$io->close after a big print delivers it all, then close_notify", sub {
        my $srv = server($be, tls => { %TLS });
        for my $v ('TLSv1_3', 'TLSv1_2') {
            my $c = tls_client($srv, ca => $C->{ca}, version => $v);
            my $size = 5_000_000 + 17;
            print $c "bigclose $size\n";
            Time::HiRes::sleep(0.3);        # the server has queued it all and closed
            my $got = read_until_eof($c, 10);
            is(length $got, $size, "$v: every byte before the end");
            ok($got eq pattern($size), "$v: ... intact");
            ok(got_eof($c), "$v: then the end");
            ok(clean_eof($c), "$v: ... with close_notify");
        }
        is($srv->count(qr/^remove /), 0, 'no remove ($io->close is as $server->remove)');
        is(join("\n", $srv->grep_events(qr/^error /)), '', 'no error');
        is($srv->stderr, '', 'nothing on STDERR');
    });

    isd_subtest("backend $be: a graceful stop serves the open TLS connections on", sub {
        my $srv = start_server(backend => $be, tls => { %TLS }, callback => tls_callbacks(),
                               child_init => sub {
                                   Scalar::Util::weaken(my $d = $_[0]);
                                   $SIG{TERM} = sub { $d->stop(grace => 1.5); log_event('term') };
                               });
        my $c = tls_client($srv, ca => $C->{ca});
        my $idle = tls_client($srv, ca => $C->{ca});
        ok(echo_ping($c, 'before'), 'a TLS client served');
        ok(echo_ping($idle, 'before'), 'another, which will stay idle');
        my $iport = $idle->sockport;
        my $t0 = now();
        kill 'TERM', $srv->pid;
        ok($srv->wait_event(qr/^term$/, 3), 'TERM: stop(grace => 1.5)');
        Time::HiRes::sleep(0.1);
        ok(!tls_try_client($srv->port, ca => $C->{ca}, timeout => 1), 'new clients are refused');
        ok(echo_ping($c, 'during the grace'), 'an open TLS connection is served on');
        is(ask($c, 'quit'), 'bye', '... until it ends');
        read_until_eof($c, 3);
        ok(got_eof($c) && clean_eof($c), '... with close_notify');
        read_until_eof($idle, 4);
        my $took = now() - $t0;
        ok(got_eof($idle), sprintf('the idle one is closed at the end of the grace (%.2f s)', $took));
        ok($took > 1.2, '... not before');
        ok(clean_eof($idle), '... with close_notify');
        ok($srv->wait_event(qr/^remove $iport$/, 3), '... and remove');
        ok($srv->wait_event(qr/^run_returned 1$/, 3), 'then run returns');
        is(join("\n", $srv->grep_events(qr/^error /)), '', 'no error');
    });

    isd_subtest("backend $be: destroy delivers what was printed, then close_notify", sub {
        my $srv = server($be, tls => { %TLS }, commands => { destroy => sub {
            my ($io, $d) = @_;
            $_->print(pattern(300000), "going down\n") for $d->connections;
            $d->destroy;
            return 1;
        } });
        my @c = map { tls_client($srv, ca => $C->{ca}) } 1 .. 3;
        ok(echo_ping($_, 'up'), 'a TLS client served') for @c;
        print { $c[0] } "destroy\n";
        for my $i (0 .. 2) {
            my $got = read_until_eof($c[$i], 5);
            ok($got eq pattern(300000) . "going down\n", "client $i: everything printed arrives");
            ok(got_eof($c[$i]) && clean_eof($c[$i]), "client $i: ... then close_notify");
        }
        ok($srv->wait_event(qr/^run_returned 1$/, 3), 'run returns');
        is(join("\n", $srv->grep_events(qr/^error /)), '', 'no error');
    });

    isd_subtest("backend $be: a child forked from a callback cannot write to a TLS connection", sub {
        my $srv = server($be, tls => { %TLS }, commands => { forkprint => sub {
            my ($io) = @_;
            my $pid = fork;
            if (defined $pid && !$pid) {
                my $r = $io->print("from the child\n");
                TestISD::log_event('child print %s %s', $r ? 'true' : 'false', $!{EPERM} ? 'EPERM' : 0 + $!);
                POSIX::_exit(0);
            }
            waitpid $pid, 0 if $pid;
            $io->print("the parent goes on\n");
            return 1;
        } });
        my $c = tls_client($srv, ca => $C->{ca});
        is(ask($c, 'forkprint'), 'the parent goes on', 'the next line is the parent\'s');
        ok($srv->wait_event(qr/^child print /, 3), 'the child printed');
        is(($srv->grep_events(qr/^child print /))[0], 'child print false EPERM', '... print returned false, $! EPERM');
        ok(echo_ping($c, 'still'), 'the connection goes on');
        is(ask($c, 'quit'), 'bye', 'and ends');
        read_until_eof($c, 3);
        ok(got_eof($c) && clean_eof($c), '... cleanly');
        is(join("\n", $srv->grep_events(qr/^error /)), '', 'no error');
    });

    isd_subtest("backend $be: prefork workers serve TLS; HUP reloads the certificate", sub {
        my $dir = File::Temp->newdir('isd-prefork-XXXXXX', TMPDIR => 1, CLEANUP => 1);
        File::Copy::copy($C->{localhost}, "$dir/c.pem") or die;
        File::Copy::copy($C->{localhost_key}, "$dir/c.key") or die;
        my $srv = start_server(backend => $be, tls => { cert_file => "$dir/c.pem", key_file => "$dir/c.key" },
                               workers => 2, stop_grace => 1,
                               child_deadline => 20 * $TestTLS::SLOW,
                               callback => tls_callbacks(commands => {
                                   pid => sub { $_[0]->print("$$\n"); 1 },
                               }, worker_start => sub { log_event('worker %s %s', $$, $_[1]) }));
        ok($srv->wait_event(qr/^worker /, 5, 2), 'two workers started');
        my %pid;
        my $served = 0;
        for my $i (1 .. 20) {
            my $c = tls_try_client($srv->port, ca => $C->{ca}, timeout => 3) or next;
            my $p = ask($c, 'pid');
            if (defined $p && $p =~ /^\d+$/) { $pid{$p}++; $served++ }
            close $c;
        }
        is($served, 20, '20 TLS clients served, one after another');
        my @w = map { /^worker (\d+) / } $srv->grep_events(qr/^worker /);
        my %w = map { $_ => 1 } @w;
        is(scalar(grep { !$w{$_} } keys %pid), 0, '... each by a worker (' . join(', ', map { "$_: $pid{$_}" } sort keys %pid) . ')');
        ok(!$pid{ $srv->pid }, '... not by the master');

        File::Copy::copy($C->{localhost2}, "$dir/c.pem.new") or die;
        File::Copy::copy($C->{localhost2_key}, "$dir/c.key.new") or die;
        rename "$dir/c.pem.new", "$dir/c.pem" or die;
        rename "$dir/c.key.new", "$dir/c.key" or die;
        kill 'HUP', $srv->pid;
        my ($fails, $tries) = (0, 0);
        my $new = wait_until(sub {
            $tries++;
            my $c = tls_try_client($srv->port, ca => $C->{ca}, timeout => 3);
            $fails++, return 0 unless $c && echo_ping($c, 'x', 3);
            my $cn = peer_subject($c);
            close $c;
            return $cn eq 'localhost-2';
        }, 8, 0.05);
        ok($new, "after HUP to the master, new connections get the new certificate ($tries tries)");
        is($fails, 0, '... no client failed meanwhile');
        Time::HiRes::sleep(0.2);
        is(join("\n", $srv->grep_events(qr/^error /)), '', 'no error');
    });
}

done_testing();
