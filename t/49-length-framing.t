#!perl
# framing => 'length' (length_format N n V v C): each message is a length
# prefix then that many bytes; data gets it without the prefix (an empty
# one as ''), whether it comes split byte by byte or many in one write;
# getline (with $/ left alone) returns it, a second getline reads the next
# message; max_line bounds the payload (a claim over it, 4 GiB included,
# drops the client as soon as the prefix is in, after the earlier replies);
# EOF inside a message is an error; other clients are unaffected.
# $io->send_message writes the prefix (the connection's format, else the
# server's length_format, also on a line server), croaks for a wide
# character on a raw peer, counts UTF-8 bytes on a :utf8 one, croaks for a
# message too long for the format and for undef.  $io->stats counts the
# messages, empty ones included.  new validates framing and length_format.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use TestISD;
use Test::More;
use IO::Socket::INET::Daemon;

my %SIZE = (N => 4, n => 2, V => 4, v => 2, C => 1);
my $BIG = 8 * 1048576;

sub shown {
    my $s = shift;
    return 'undef' unless defined $s;
    $s = substr($s, 0, 12) . '...(' . length($s) . ')' if length $s > 40;
    $s =~ s/([^\x20-\x7e]|[<>\[\]])/sprintf '<%02x>', ord $1/ge;
    return $s;
}

sub frame { my ($fmt, $payload) = @_; pack($fmt, length $payload) . $payload }

# read_msg($sock, $fmt, $timeout): the next length-prefixed message (the
# payload), or undef when it did not come whole in time
sub read_msg {
    my ($c, $fmt, $timeout) = @_;
    $timeout = 3 unless defined $timeout;
    my $h = read_n($c, $SIZE{$fmt}, $timeout);
    return undef unless length $h == $SIZE{$fmt};
    my $n = unpack $fmt, $h;
    my $p = read_n($c, $n, $timeout);
    return length $p == $n ? $p : undef;
}

# ------------------------------------------------------------- server side

# data answers with send_message (in the connection's format): the message
# it got, shown, and whether getline returned the same; "two..." reads the
# next message with a second getline; "stats" reports the counters
sub data {
    my ($io, $d, $msg) = @_;
    my $got = $io->getline;
    my $reply = '[' . shown($msg) . '] ' . (defined $got && $got eq $msg ? 'same' : 'DIFF ' . shown($got));
    if ($msg =~ /\Atwo/) {
        my $next = $io->getline;
        $reply .= ' next=[' . shown($next) . ']';
    }
    elsif ($msg eq 'big') {         # more than the sockets hold
        $reply .= ' ' . ('B' x $BIG);
    }
    elsif ($msg eq 'stats') {
        my ($s, $t) = ($io->stats, $d->stats);
        $reply .= " io=$s->{messages_in} server=$t->{messages_in}";
    }
    $io->send_message($reply);
    return 1;
}

my @LOG = (
    error  => sub { log_event('error %s', $_[2]) },
    remove => sub { log_event('remove') },
);

sub length_server {
    my ($be, %o) = @_;
    start_server(backend => $be, timeout => 1, read_timeout => 3, framing => 'length',
                 callback => { data => \&data, @LOG }, %o);
}

# data of a line server answering with send_message and its croaks
sub send_data {
    my ($io, $d, $line) = @_;
    (my $cmd = $line) =~ s/\r?\n\z//;
    my %try = (
        abc   => sub { $io->send_message('abc') },
        empty => sub { $io->send_message('') },
        max   => sub { $io->send_message('x' x 255) },
        long  => sub { $io->send_message('x' x 256) },
        wide  => sub { $io->send_message("a\x{263a}") },
        undef => sub { $io->send_message(undef) },
        utf8  => sub {
            $io->binmode(':utf8');
            my $r = $io->send_message("\x{263a}");
            $io->binmode(':raw');
            $r;
        },
        utf8latin => sub {  # bytes on a :utf8 peer: characters, sent as UTF-8
            $io->binmode(':utf8');
            my $r = $io->send_message("\xe9");
            $io->binmode(':raw');
            $r;
        },
        latin => sub {      # a character string of bytes on a raw peer: bytes
            my $s = substr("\x{263a}\xe9", 1);    # "\xe9", internally UTF-8
            $io->send_message($s);
        },
    );
    my $r = eval { $try{$cmd}->() };
    my $err = $@;
    $err =~ s/\n/ /g;
    $io->print(defined $r ? "ret=" . ($r ? 1 : 0) . "\n" : "died: $err\n");
    return 1;
}

sub send_server {
    my ($be, %o) = @_;
    start_server(backend => $be, timeout => 1, callback => { data => \&send_data, @LOG }, %o);
}

sub error_before_remove {
    my ($srv, $re, $name) = @_;
    my @ev = $srv->events;
    my ($e) = grep { $ev[$_] =~ /^error / } 0 .. $#ev;
    my ($r) = grep { $ev[$_] eq 'remove' } 0 .. $#ev;
    ok(defined $e && substr($ev[$e], 6) =~ $re, "$name: error $re") or diag explain \@ev;
    ok(defined $r && defined $e && $e < $r, "$name: then remove");
    is(scalar(grep { /^error / } @ev), 1, "$name: one error");
}

# big_then($be, $bad, $re, $name): "big" is answered with $BIG bytes the
# client does not read yet, then $bad (and EOF) ends the connection with
# error $re: the whole answer must still come, then EOF
sub big_then {
    my ($be, $bad, $re, $name) = @_;
    my $srv = length_server($be, high_water => 64 * 1048576);
    my $c = client($srv);
    send_all($c, frame('N', 'big') . $bad);
    shutdown $c, 1;
    ok($srv->wait_event(qr/^remove$/, 5), "$name: remove, with the answer to big not yet read");
    error_before_remove($srv, $re, $name);
    my $r = read_msg($c, 'N', 5);
    ok(defined $r && $r eq '[big] same ' . ('B' x $BIG), "$name: the whole answer to the message before is delivered")
        or diag 'got ' . (defined $r ? length($r) . ' bytes' : 'undef');
    read_until_eof($c, 3);
    ok(got_eof($c), "$name: then EOF");
    close $c;
}

# ------------------------------------------------------------------- tests

for my $be (backends()) {
    isd_subtest "each length_format, messages coalesced in one write, backend $be" => sub {
        for my $fmt (qw(N n V v C)) {
            my $srv = length_server($be, $fmt eq 'N' ? () : (length_format => $fmt));
            my $c = client($srv);
            my @msgs = ('hello', '', "a\nb\r\n\0\xff", 'y' x 255, 'two', 'second', 'after');
            send_all($c, join '', map { frame($fmt, $_) } @msgs);
            is(read_msg($c, $fmt), '[hello] same', "$fmt: a message, without its prefix; getline agrees");
            is(read_msg($c, $fmt), '[] same', "$fmt: an empty message is delivered as ''");
            is(read_msg($c, $fmt), '[a<0a>b<0d><0a><00><ff>] same', "$fmt: newlines and any bytes are payload");
            is(read_msg($c, $fmt), '[yyyyyyyyyyyy...(255)] same', "$fmt: 255 bytes");
            is(read_msg($c, $fmt), '[two] same next=[second]', "$fmt: a second getline reads the next message, without its prefix");
            is(read_msg($c, $fmt), '[after] same', "$fmt: and the one after it is delivered");

            # 100 messages in one write, each answered in order
            send_all($c, join '', map { frame($fmt, "m$_") } 1 .. 100);
            my @got = map { read_msg($c, $fmt) } 1 .. 100;
            is_deeply(\@got, [map { "[m$_] same" } 1 .. 100], "$fmt: 100 messages in one write, all answered in order");
            shutdown $c, 1;
            ok($srv->wait_event(qr/^remove$/, 3), "$fmt: EOF between messages ends it");
            is($srv->count(qr/^error /), 0, "$fmt: without error");
            close $c;
        }
    };

    isd_subtest "a message split across many reads, backend $be" => sub {
        my $srv = length_server($be);
        my $c = client($srv);
        my $payload = join '', map { chr($_ % 256) } 0 .. 258;     # 259 bytes: prefix 00 00 01 03
        for my $b (split //, pack('N', length $payload)) {
            send_all($c, $b);
            Time::HiRes::sleep(0.05);
        }
        send_all($c, substr($payload, 0, 100));
        Time::HiRes::sleep(0.05);
        send_all($c, substr($payload, 100));
        is(read_msg($c, 'N'), '[' . shown($payload) . '] same', 'the prefix byte by byte, the payload in two: one message');

        # "two" now, its next message later and in pieces: the second getline waits
        send_all($c, frame('N', 'two') . "\0\0");
        Time::HiRes::sleep(0.1);
        send_all($c, "\0\x04");
        Time::HiRes::sleep(0.1);
        send_all($c, 'late' . frame('N', 'end'));
        is(read_msg($c, 'N'), '[two] same next=[late]', 'a second getline waits for the next message to come whole');
        is(read_msg($c, 'N'), '[end] same', 'and the stream stays in step');

        # an empty message split: its prefix in two
        send_all($c, "\0\0");
        Time::HiRes::sleep(0.05);
        send_all($c, "\0\0");
        is(read_msg($c, 'N'), '[] same', 'an empty message whose prefix is split');
        close $c;
        is($srv->count(qr/^error /), 0, 'no error');
    };

    isd_subtest "max_line bounds the payload, backend $be" => sub {
        my $srv = length_server($be, max_line => 100);
        my $other = client($srv);
        send_all($other, frame('N', 'other'));
        is(read_msg($other, 'N'), '[other] same', 'another client is served');

        my $c = client($srv);
        send_all($c, frame('N', 'first') . frame('N', 'z' x 100) . pack('N', 101));
        is(read_msg($c, 'N'), '[first] same', 'the reply to the message before is delivered');
        is(read_msg($c, 'N'), '[zzzzzzzzzzzz...(100)] same', 'so is the one to a message of exactly max_line bytes');
        my $rest = read_until_eof($c, 3);
        ok(got_eof($c), 'a prefix of max_line + 1 drops the client at once, no payload needed');
        is($rest, '', 'with nothing more');
        ok($srv->wait_event(qr/^remove$/, 3), 'remove is called');
        error_before_remove($srv, qr/\Amessage too long \(over max_line 100 bytes\)/, 'max_line + 1');
        close $c;

        send_all($other, frame('N', 'still'));
        is(read_msg($other, 'N'), '[still] same', 'the other client is unaffected');
        close $other;
    };

    isd_subtest "a 4 GiB claim, backend $be" => sub {
        my $srv = length_server($be);
        my $c = client($srv);
        send_all($c, frame('N', 'q' x 1048576) . frame('N', 'ok') . pack('N', 0xFFFFFFFF) . 'abc');
        is(read_msg($c, 'N'), '[qqqqqqqqqqqq...(1048576)] same', 'a message of the default max_line, 1 MiB, is fine');
        is(read_msg($c, 'N'), '[ok] same', 'the reply before');
        read_until_eof($c, 3);
        ok(got_eof($c), 'a prefix of 0xFFFFFFFF drops the client without waiting for 4 GiB');
        ok($srv->wait_event(qr/^remove$/, 3), 'remove');
        error_before_remove($srv, qr/\Amessage too long \(over max_line 1048576 bytes\)/, '4 GiB');
        ok($srv->alive, 'the server lives on');
        my $d = client($srv);
        send_all($d, frame('N', 'next'));
        is(read_msg($d, 'N'), '[next] same', 'and serves the next client');
        close $_ for $c, $d;
    };

    isd_subtest "max_line with a short format, backend $be" => sub {
        my $srv = length_server($be, max_line => 100, length_format => 'C');
        my $c = client($srv);
        send_all($c, frame('C', 'x' x 100) . pack('C', 101));
        is(read_msg($c, 'C'), '[xxxxxxxxxxxx...(100)] same', 'C: max_line bytes are fine');
        read_until_eof($c, 3);
        ok(got_eof($c), 'C: 101 drops the client');
        ok($srv->wait_event(qr/^remove$/, 3), 'remove');
        error_before_remove($srv, qr/\Amessage too long \(over max_line 100 bytes\)/, 'C prefix 101');
        close $c;
    };

    isd_subtest "EOF inside a message, backend $be" => sub {
        my $srv = length_server($be);
        my $other = client($srv);
        my $c = client($srv);
        send_all($c, frame('N', 'before') . pack('N', 10) . 'half!');
        is(read_msg($c, 'N'), '[before] same', 'the earlier message is answered');
        shutdown $c, 1;
        my $rest = read_until_eof($c, 3);
        ok(got_eof($c), 'EOF halfway through the payload: the client is closed');
        is($rest, '', 'with nothing more');
        ok($srv->wait_event(qr/^remove$/, 3), 'remove');
        error_before_remove($srv, qr/\Aend of file inside a message/, 'EOF in the payload');
        close $c;

        # queued replies are still delivered: "before" is answered in the
        # same read as the EOF
        my $srv2 = length_server($be);
        my $e = client($srv2);
        send_all($e, frame('N', 'queued') . pack('N', 10) . 'half!');
        shutdown $e, 1;
        is(read_msg($e, 'N'), '[queued] same', 'a reply queued with the EOF already in is delivered');
        read_until_eof($e, 3);
        ok(got_eof($e), 'then the close');
        ok($srv2->wait_event(qr/^remove$/, 3), 'remove');
        error_before_remove($srv2, qr/\Aend of file inside a message/, 'EOF with the message');
        close $e;

        # EOF inside the prefix
        my $f = client($srv);
        send_all($f, "\0\0");
        shutdown $f, 1;
        read_until_eof($f, 3);
        ok(got_eof($f), 'EOF inside the prefix: closed');
        ok($srv->wait_event(qr/^error end of file inside a message/, 3, 2), 'with the same error');

        send_all($other, frame('N', 'fine'));
        is(read_msg($other, 'N'), '[fine] same', 'the other client is unaffected');
        close $other;
        close $f;
    };

    isd_subtest "replies queued before the error are delivered, backend $be" => sub {
        big_then($be, pack('N', 10) . 'half!', qr/\Aend of file inside a message/, 'EOF inside a message');
        big_then($be, pack('N', 0xFFFFFFFF), qr/\Amessage too long \(over max_line 1048576 bytes\)/, 'a 4 GiB claim');
    };

    isd_subtest "stats count the messages, backend $be" => sub {
        my $srv = length_server($be, length_format => 'n');
        my $c = client($srv);
        send_all($c, join '', map { frame('n', $_) } 'a', '', 'bc', 'stats');
        is(read_msg($c, 'n'), '[a] same', 'a');
        is(read_msg($c, 'n'), '[] same', 'empty');
        is(read_msg($c, 'n'), '[bc] same', 'bc');
        is(read_msg($c, 'n'), '[stats] same io=4 server=4', 'messages_in counts 4, the empty one included');
        send_all($c, join '', map { frame('n', $_) } '', '', 'stats');
        is(read_msg($c, 'n'), '[] same', 'empty');
        is(read_msg($c, 'n'), '[] same', 'empty');
        is(read_msg($c, 'n'), '[stats] same io=7 server=7', 'two empty messages more and stats: 7');
        close $c;
    };

    isd_subtest "send_message on a line server, backend $be" => sub {
        my $srv = send_server($be, length_format => 'C');
        my $c = client($srv);
        my %want = (
            abc   => ["\x03abc", 'the server\'s length_format (C) on a line-framed connection'],
            empty => ["\x00", 'an empty message: its prefix alone'],
            max   => ["\xff" . ('x' x 255), '255 bytes fit C'],
            utf8  => ["\x03\xe2\x98\xba", 'on a :utf8 peer: UTF-8, the prefix counts 3 bytes'],
            utf8latin => ["\x02\xc3\xa9", 'on a :utf8 peer a byte string is characters: "\xe9" goes as 2 bytes'],
            latin => ["\x01\xe9", 'a character string without wide characters: its bytes'],
        );
        for my $k (qw(abc empty max utf8 utf8latin latin)) {
            send_all($c, "$k\n");
            my $w = $want{$k}[0];
            is(read_n($c, length $w, 3), $w, "$k: $want{$k}[1]");
            is(read_line($c, 3), "ret=1\n", "$k: returns true");
        }
        send_all($c, "long\n");
        like(read_line($c, 3), qr/^died: .*too long for length_format 'C'/, '256 bytes for C croak');
        send_all($c, "wide\n");
        like(read_line($c, 3), qr/^died: .*Wide character/, 'a wide character on a raw peer croaks');
        send_all($c, "undef\n");
        like(read_line($c, 3), qr/^died: .*undef is not a message/, 'undef croaks');
        send_all($c, "abc\n");
        is(read_n($c, 4, 3) . read_line($c, 3), "\x03abcret=1\n", 'nothing was sent by the croaks');
        close $c;

        my $srv2 = send_server($be);
        my $d = client($srv2);
        send_all($d, "abc\r\n");
        is(read_n($d, 7, 3), "\0\0\0\x03abc", 'by default the prefix is N');
        is(read_line($d, 3), "ret=1\n", 'returns true');
        send_all($d, "long\n");
        is(read_n($d, 260, 3), pack('N', 256) . ('x' x 256), '256 bytes fit N');
        is(read_line($d, 3), "ret=1\n", 'returns true');
        close $d;
        is($srv->count(qr/^error /) + $srv2->count(qr/^error /), 0, 'no error');
    };
}

subtest 'new validates framing and length_format' => sub {
    my %base = (port => 0, host => '127.0.0.1');
    ok(!eval { IO::Socket::INET::Daemon->new(%base, framing => 'bogus'); 1 }, "framing 'bogus' croaks");
    like($@, qr/\AIO::Socket::INET::Daemon::new: framing: 'bogus' /, 'naming the option');
    for my $bad ('q', '', 'NN', 'a', 'N*') {
        ok(!eval { IO::Socket::INET::Daemon->new(%base, framing => 'length', length_format => $bad); 1 },
           "length_format '$bad' croaks");
        like($@, qr/length_format: '\Q$bad\E' is not one of N n V v C/, 'saying why');
    }
    ok(!eval { IO::Socket::INET::Daemon->new(%base, length_format => undef); 1 }, 'length_format undef croaks');
    like($@, qr/length_format: undef is not one of N n V v C/, 'saying why');
    for my $fmt (qw(N n V v C)) {
        ok(eval { IO::Socket::INET::Daemon->new(%base, framing => 'length', length_format => $fmt); 1 },
           "length_format '$fmt' is accepted") or diag $@;
    }
    for my $framing (qw(line raw)) {
        ok(eval { IO::Socket::INET::Daemon->new(%base, framing => $framing, length_format => 'v'); 1 },
           "length_format goes with framing '$framing' too") or diag $@;
    }
    ok(eval { IO::Socket::INET::Daemon->new(%base, framing => 'length'); 1 }, "framing 'length' alone") or diag $@;
    ok(!eval { IO::Socket::INET::Daemon->new(%base, framing => 'length', separator => "\r\n"); 1 },
       'separator with framing length croaks');
    like($@, qr/goes with framing 'line'/, 'saying why');
};

done_testing;
