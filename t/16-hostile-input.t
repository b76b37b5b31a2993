#!perl
# Hostile input: endless lines are dropped (max_line), floods of empty lines
# are handled, every byte value survives.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use TestISD;
use Test::More;

my $MiB = 1048576;
my $empty = 0;

sub data {
    my ($io, $d, $line) = @_;
    my $l = $io->getline;
    if ($l eq "\n") { $empty++; return 1 }
    if ($l eq "count\n") { $io->print("empty=$empty\n"); return 1 }
    if ($l =~ /^len /) { $io->print('len=' . length($l) . "\n"); return 1 }
    $io->print($l);    # echo, exact bytes
    1;
}

my %cb = (
    data   => \&data,
    error  => sub { log_event('error %s %s', defined $_[0] ? $_[0]->peerport : 'undef', $_[2]) },
    remove => sub { log_event('remove %s', $_[0]->peerport) },
);

sub pinger {
    my ($srv) = @_;
    my $c = client($srv);
    return sub {
        my $t0 = now();
        print $c "ping\n";
        my $r = read_line($c, 3);
        return (defined $r && $r eq "ping\n") ? now() - $t0 : 99;
    };
}

for my $be (backends()) {
    isd_subtest "64 MiB without a newline, backend $be" => sub {
        my $srv = start_server(backend => $be, timeout => 1, callback => {%cb});
        my $ping = pinger($srv);
        ok($ping->() < 1, 'other client served');
        my $c = client($srv);
        my $p = $c->sockport;
        my $blk = 'x' x $MiB;
        my $sent = 0;
        for (1 .. 64) {
            my $n = send_all($c, $blk, 3);
            $sent += $n;
            last if $n < length $blk;
        }
        ok($sent < 64 * $MiB, "the server stopped taking bytes (after $sent)");
        ok($srv->wait_event(qr/^error $p /, 5), 'error callback called for the long line');
        ok($srv->wait_event(qr/^remove $p$/, 5), 'remove called');
        read_until_eof($c, 5);
        ok(got_eof($c), 'the client was dropped');
        close $c;
        my $lat = $ping->();
        ok($lat < 1, "other client still served ($lat s)");
        Time::HiRes::sleep(0.1);
        is($srv->count(qr/^remove $p$/), 1, 'remove once');
        is($srv->count(qr/^error $p /), 1, 'error once');
        ok($srv->alive, 'alive');
        is($srv->stop, 15, 'SIGTERM still ends the server (no signal left blocked)');
    };

    isd_subtest "no error callback: warn, backend $be" => sub {
        my $srv = start_server(backend => $be, timeout => 1, max_line => 100,
                               callback => { data => \&data,
                                             remove => sub { log_event('remove') } });
        my $c = client($srv);
        send_all($c, 'y' x 200);
        read_until_eof($c, 5);
        ok(got_eof($c), 'dropped');
        ok($srv->wait_event(qr/^remove$/), 'remove called');
        ok(wait_until(sub { $srv->stderr =~ /^IO::Socket::INET::Daemon: /m }, 3),
           'warning starting "IO::Socket::INET::Daemon: " on STDERR')
            or diag 'stderr: ' . $srv->stderr;
        close $c;
        is($srv->stop, 15, 'SIGTERM still ends the server (no signal left blocked)');
    };

    isd_subtest "max_line => 100, backend $be" => sub {
        my $srv = start_server(backend => $be, timeout => 1, max_line => 100, callback => {%cb});
        my $c = client($srv);
        my $line = 'len ' . ('a' x 95) . "\n";    # 100 bytes with the newline
        print $c $line;
        is(read_line($c), "len=100\n", 'a 100-byte line (newline included) is delivered');
        print $c "short\n";
        is(read_line($c), "short\n", 'short line');

        my $p = $c->sockport;
        print $c 'b' x 101;    # no newline
        read_until_eof($c, 5);
        ok(got_eof($c), '101 bytes without a newline: dropped');
        ok($srv->wait_event(qr/^error $p /), 'error callback');
        ok($srv->wait_event(qr/^remove $p$/), 'remove');
        close $c;

        # the same in small pieces
        $c = client($srv);
        $p = $c->sockport;
        for (1 .. 11) { print $c 'c' x 10; Time::HiRes::sleep(0.01) }
        read_until_eof($c, 5);
        ok(got_eof($c), '110 bytes in 10-byte pieces: dropped');
        ok($srv->wait_event(qr/^remove $p$/), 'remove');
        close $c;

        my $ok = client($srv);
        print $ok "fine\n";
        is(read_line($ok), "fine\n", 'others still served');
        close $ok;
        is($srv->stop, 15, 'SIGTERM still ends the server (no signal left blocked)');
    };

    isd_subtest "megabytes of newlines, backend $be" => sub {
        my $srv = start_server(backend => $be, timeout => 1, callback => {%cb});
        my $ping = pinger($srv);
        my $c = client($srv);
        # 2 MiB = 2 million data calls; far fewer under AddressSanitizer
        # (make asan-test), where each costs ten times as much
        my $n = ($ENV{LD_PRELOAD} || '') =~ /asan/ ? 128 * 1024 : 2 * $MiB;
        my $t0 = now();
        is(send_all($c, "\n" x $n, 20), $n, "$n bytes of \"\\n\" sent");
        print $c "count\n";
        is(read_line($c, 20), "empty=$n\n", 'every empty line delivered once');
        diag(sprintf '%d empty lines in %.2fs', $n, now() - $t0) if $ENV{TEST_VERBOSE};
        ok($ping->() < 1, 'other client served');
        close $c;
        is($srv->stop, 15, 'SIGTERM still ends the server (no signal left blocked)');
    };

    isd_subtest "every byte value, backend $be" => sub {
        my $srv = start_server(backend => $be, timeout => 1, callback => {%cb});
        my $c = client($srv);
        # line framing: everything but "\n" inside a line
        my $bytes = join '', map { chr } grep { $_ != 10 } 0 .. 255;
        print $c "$bytes\n";
        my $r = read_line($c);
        ok(defined $r && $r eq "$bytes\n", 'bytes 0..255 (except \n) echoed exactly in a line');
        print $c "cr\r\n";
        is(read_line($c), "cr\r\n", 'CR kept');
        print $c "nul\0mid\n";
        is(read_line($c), "nul\0mid\n", 'NUL kept');
        my $hi = join '', map { chr } 128 .. 255;
        print $c "$hi$hi\n";
        $r = read_line($c);
        ok(defined $r && $r eq "$hi$hi\n" && !utf8::is_utf8($r), 'high bytes stay bytes');
        close $c;
        is($srv->stop, 15, 'SIGTERM still ends the server (no signal left blocked)');

        # raw framing: all 256 values, repeated
        $srv = start_server(backend => $be, timeout => 1, framing => 'raw',
                            callback => { data => sub {
                                my ($io) = @_;
                                my $n = $io->sysread(my $buf, 1 << 20);
                                $io->print($buf) if $n;
                                1;
                            } });
        $c = client($srv);
        my $all = join('', map { chr } 0 .. 255) x 64;
        is(send_all($c, $all), length $all, 'sent 16 KiB of every byte value');
        my $back = read_n($c, length $all, 5);
        is(length $back, length $all, 'raw: same length back');
        ok($back eq $all, 'raw: every byte value echoed exactly');
        close $c;
        is($srv->stop, 15, 'SIGTERM still ends the server (no signal left blocked)');
    };
}

done_testing;
