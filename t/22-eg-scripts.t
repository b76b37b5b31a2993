#!/usr/bin/perl
# The eg/ scripts work as documented: each is started as its own process
# (perl -Mblib eg/X.pl PORT) and talked to by real clients.
use strict;
use warnings;
use Test::More;
use IO::Socket::INET;
use IO::Select;
use File::Spec;
use Time::HiRes qw(time sleep);
use POSIX ();

alarm 60;

# A free port: bind 0, note it, let it go (SO_REUSEADDR on the server side).
sub free_port {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Listen => 1, ReuseAddr => 1) or die "bind: $!";
    my $p = $s->sockport;
    close $s;
    return $p;
}

sub start {
    my ($script, @args) = @_;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open STDERR, '>', File::Spec->devnull;
        exec $^X, '-Mblib', $script, @args or POSIX::_exit(127);
    }
    return $pid;
}

sub connect_to {
    my ($port) = @_;
    my $deadline = time + 10;
    while (time < $deadline) {
        my $c = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                      Timeout => 2);
        return $c if $c;
        sleep 0.05;
    }
    die "cannot connect to $port: $!";
}

sub line {
    my ($c, $timeout) = @_;
    my $buf = '';
    my $sel = IO::Select->new($c);
    my $deadline = time + ($timeout || 5);
    while ($buf !~ /\n/) {
        my $left = $deadline - time;
        return undef if $left <= 0 or !$sel->can_read($left);
        my $n = sysread $c, $buf, 1, length $buf;
        return length $buf ? $buf : undef unless $n;
    }
    return $buf;
}

# A length-prefixed body: 4 bytes of length, then the bytes (5 s at most).
sub body {
    my ($c) = @_;
    my $buf = '';
    my $sel = IO::Select->new($c);
    my $deadline = time + 5;
    while (1) {
        if (length $buf >= 4) {
            my $n = unpack 'N', $buf;
            return substr($buf, 4, $n) if length $buf >= 4 + $n;
        }
        my $left = $deadline - time;
        return undef if $left <= 0 or !$sel->can_read($left);
        my $n = sysread $c, $buf, 65536, length $buf;
        return undef unless $n;
    }
}

sub stop {
    my ($pid) = @_;
    kill 'TERM', $pid;
    my $deadline = time + 10;
    while (time < $deadline) {
        return $? if waitpid($pid, POSIX::WNOHANG()) == $pid;
        sleep 0.05;
    }
    kill 'KILL', $pid;
    waitpid $pid, 0;
    return -1;
}

use lib 'blib/lib', 'blib/arch';
use IO::Socket::INET::Daemon ();

# Every script once per backend, forced through the environment.
for my $be (IO::Socket::INET::Daemon::backends()) {
local $ENV{IO_SOCKET_INET_DAEMON_BACKEND} = $be;

subtest "eg/echo.pl, backend $be" => sub {
    my $port = free_port();
    my $pid = start('eg/echo.pl', $port, '127.0.0.1');
    my $c = connect_to($port);
    print $c "hello\nworld\n";
    is(line($c), "hello\n", 'first line echoed');
    is(line($c), "world\n", 'second line echoed');
    my $d = connect_to($port);
    print $d "other\n";
    is(line($d), "other\n", 'a second client is served');
    close $c;
    close $d;
    is(stop($pid), 0, 'SIGTERM stops it cleanly (exit 0)');
};

subtest "eg/prefork.pl, backend $be" => sub {
    my $port = free_port();
    my $pid = start('eg/prefork.pl', '--port', $port, '--host', '127.0.0.1', '--workers', 2);
    my (%slot, %pid, $bad);
    my $deadline = time + 10;
    while (keys %slot < 2 and time < $deadline) {
        my $c = connect_to($port);
        print $c "hi\n";
        my $l = line($c);
        close $c;
        if (defined $l and $l =~ /^worker ([01]) \(pid (\d+)\): hi$/) { $slot{$1}++; $pid{$2}++ }
        else { $bad++ }
    }
    is(join(' ', sort keys %slot), '0 1', 'both workers answer, each naming its slot');
    is(scalar(keys %pid), 2, '... from two processes');
    ok(!$pid{$pid}, '... neither of them the master');
    ok(!$bad, 'every answer as documented');
    is(stop($pid), 0, 'SIGTERM: the workers stop, the master returns and exits 0');
};

subtest "eg/reverse.pl, backend $be" => sub {
    my $port = free_port();
    my $pid = start('eg/reverse.pl', $port);
    my $c = connect_to($port);
    like(line($c), qr/^Welcome, 127\.0\.0\.1\./, 'welcome names the peer');
    print $c "stressed\r\n";
    is(line($c), "desserts\n", 'line reversed (CRLF accepted)');
    print $c "quit\n";
    is(line($c), "Bye.\n", 'quit says Bye.');
    is(line($c, 2), undef, 'then the server closes');
    is(stop($pid), 0, 'SIGTERM stops it cleanly');
};

subtest "eg/blobstore.pl, backend $be" => sub {
    my $port = free_port();
    my $pid = start('eg/blobstore.pl', $port);
    my $c = connect_to($port);
    my $bytes = join '', map { chr int rand 256 } 1 .. 100_000;
    $bytes .= "\n\0\r\n";                       # line ends inside a body are bytes
    print $c "PUT photo\n", pack('N/a*', $bytes), "LIST\n";    # all in one go
    is(line($c), "STORED photo 100004\n", 'PUT: the body after the line is stored whole');
    is(line($c), "photo 100004\n", 'and lines come after it again');
    is(line($c), ".\n", 'LIST ends');
    print $c "PUT empty\n", pack('N', 0);
    is(line($c), "STORED empty 0\n", 'an empty body');
    print $c "GET photo\n";
    my $got = body($c);
    ok(defined $got && $got eq $bytes, 'GET: the same bytes back, length-prefixed');
    print $c "GET nothing\n";
    is(body($c), '', 'GET of no such blob: an empty body');
    print $c "QUIT\n";
    is(line($c), "BYE\n", 'QUIT says BYE');
    is(line($c, 2), undef, 'then the server closes');
    is(stop($pid), 0, 'SIGTERM stops it cleanly');
};

subtest "eg/tls.pl and eg/starttls.pl, backend $be" => sub {
    plan skip_all => 'built without OpenSSL (no libssl-dev at build time)'
        unless IO::Socket::INET::Daemon->has_tls;
    plan skip_all => 'no IO::Socket::SSL (Debian: libio-socket-ssl-perl)'
        unless eval { require IO::Socket::SSL; 1 };
    plan skip_all => 'no openssl command' unless system('openssl version >/dev/null 2>&1') == 0;
    my $port = free_port();
    my $pid = start('eg/tls.pl', $port);
    my $c = connect_to($port);
    ok(IO::Socket::SSL->start_SSL($c, SSL_verify_mode => 0, SSL_alpn_protocols => ['echo'],
                                  Timeout => 5), 'TLS handshake with eg/tls.pl')
        or diag("SSL error: $IO::Socket::SSL::SSL_ERROR");
    like(scalar <$c>, qr/\Ahello 127\.0\.0\.1, this is TLSv1\.[23] with \S+\n\z/, 'its TLS greeting');
    print $c "over tls\n";
    is(scalar <$c>, "over tls\n", 'a line echoed over TLS');
    kill 'HUP', $pid;
    sleep 0.3;
    print $c "after HUP\n";
    is(scalar <$c>, "after HUP\n", 'HUP (tls_reload) leaves the connection served');
    close $c;
    is(stop($pid), 0, 'SIGTERM stops it cleanly');

    $port = free_port();
    $pid = start('eg/starttls.pl', $port);
    $c = connect_to($port);
    like(line($c), qr/\A220 .*STARTTLS\r\n\z/, 'plain greeting');
    print $c "hello\r\n";
    is(line($c), "250 in plain text: hello\r\n", 'a plain line');
    print $c "STARTTLS\r\n";
    is(line($c), "220 Ready to start TLS\r\n", 'STARTTLS answered in plain text');
    ok(IO::Socket::SSL->start_SSL($c, SSL_verify_mode => 0, Timeout => 5), 'then the handshake')
        or diag("SSL error: $IO::Socket::SSL::SSL_ERROR");
    print $c "secret\r\n";
    like(scalar <$c>, qr/\A250 over TLSv1\.[23]: secret\r\n\z/, 'lines after it go over TLS');
    print $c "QUIT\r\n";
    is(scalar <$c>, "221 Bye\r\n", 'QUIT');
    close $c;
    is(stop($pid), 0, 'SIGTERM stops it cleanly');
};

subtest "eg/chat.pl, backend $be" => sub {
    my $port = free_port();
    my $pid = start('eg/chat.pl', $port);
    my $a = connect_to($port);
    is(line($a), "NICK?\n", 'asks for a nick');
    print $a "alice\n";
    is(line($a), "WELCOME alice\n", 'welcomes alice');
    my $b = connect_to($port);
    is(line($b), "NICK?\n", 'asks bob');
    print $b "bad nick!\n";
    like(line($b), qr/^NICK\?/, 'a bad nick is asked again');
    print $b "bob\n";
    is(line($b), "WELCOME bob\n", 'welcomes bob');
    is(line($a), "* bob joined\n", 'alice hears bob join');
    print $a "hi bob\n";
    is(line($b), "<alice> hi bob\n", 'bob gets alice\'s line');
    print $b "hi alice\n";
    is(line($a), "<bob> hi alice\n", 'alice gets bob\'s line');
    {
        # carol reads nothing while alice talks a lot: once 64 KiB wait
        # for her she is skipped; when she has read it all she is told
        my $c = connect_to($port);
        is(line($c), "NICK?\n", 'asks carol');
        print $c "carol\n";
        is(line($c), "WELCOME carol\n", 'welcomes carol');
        is(line($a), "* carol joined\n", 'alice hears carol join');
        is(line($b), "* carol joined\n", 'bob hears carol join');
        my $text = 'x' x 500;
        my $sent = 0;
        my $bob = '';
        my $sel = IO::Select->new($b);
        my $deadline = time + 20;
        # alice talks; bob keeps reading (he must not lag too)
        while ($sent < 30_000 && time < $deadline) {
            print $a "$text\n" for 1 .. 100;
            $sent += 100;
            while ($sel->can_read(0)) {
                sysread($b, $bob, 1 << 20, length $bob) or last;
            }
            $bob = substr($bob, -100) if length $bob > 1000;
        }
        my ($got, $lines, $missed) = ('', 0, undef);
        my $csel = IO::Select->new($c);
        $deadline = time + 20;
        # (after the notice she is in the room again: the rest comes too)
        while ((!defined $missed || $lines + $missed < $sent) && time < $deadline) {
            $csel->can_read(0.2) or next;
            sysread($c, $got, 1 << 20, length $got) or last;
            $lines += () = $got =~ /^<alice> x+\n/mg;
            $missed = ($missed // 0) + $1 while $got =~ /^\* you missed (\d+) line/mg;
            $got = $1 if $got =~ /([^\n]*)\z/;
        }
        ok(defined $missed && $missed > 0, "carol is told she missed lines (" . ($missed // 'none') . ')');
        ok(defined $missed && $lines + $missed == $sent,
           "what she got and what she missed add up ($lines + " . ($missed // '-') . " of $sent)");
        close $c;
        $sel->can_read(1);
        1 while $sel->can_read(0.2) and sysread($b, my $junk, 1 << 20);
        1 while IO::Select->new($a)->can_read(0.2) and sysread($a, my $junk2, 1 << 20);
    }
    close $a;
    is(line($b), "* alice left\n", 'bob hears alice leave');
    print $b "/quit\n";
    is(line($b, 2), undef, '/quit closes the connection');
    is(stop($pid), 0, 'SIGTERM stops it cleanly');
};
}

done_testing;
