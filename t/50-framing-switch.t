#!perl
# $io->framing: without arguments the connection's framing ('line', 'raw'
# or 'length'); with them it switches that one connection, for the bytes
# already buffered too, and returns the previous name.  Inside data the
# switch applies after the current message (a line header, then a
# length-prefixed body, then lines again, all in one write; raw takes the
# rest of the buffer); from outside the connection's data (a timer,
# another connection's data, add) messages already buffered are delivered
# without the client sending more.
# Options not given are the server's (separator, length_format); other
# connections keep the server's framing; bad arguments croak.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use TestISD;
use Test::More;

sub shown {
    my $s = shift;
    return 'undef' unless defined $s;
    $s =~ s/([^\x20-\x7e]|[<>\[\]])/sprintf '<%02x>', ord $1/ge;
    return $s;
}

sub frame { my ($fmt, $payload) = @_; pack($fmt, length $payload) . $payload }

# ------------------------------------------------------------- server side

# Every message is answered with a line: "[message] f=FRAMING same"
# (FRAMING: $io->framing at the start of the call; same: getline, $/ left
# alone, returned the message too, or for a raw chunk sysread did), plus
# what a command did.  Commands (lines): LEN (to length 'n'), LENDEF (to
# length, the server's format), RAW, CRLF (line, separator "\r\n"), LINE
# (line, the server's), TIMER (a timer switches to length 'n' 0.2 s
# later), SWITCH PORT (switches another connection to length 'n'), BAD
# (the croaks), TWO (a second getline reads the next line),
# LENTWO (LEN, then a second getline).  A length-framed message is
# answered, then the connection goes back to line unless it starts with
# "+"; "echo" is answered with send_message too, "+two" reads the next
# message with a second getline.  A raw chunk is answered, then back to
# line.
sub try_framing {
    my ($io, @args) = @_;
    my $r = eval { $io->framing(@args) };
    return 'ret=' . shown($r) if defined $r;
    (my $e = $@) =~ s/\n/ /g;
    $e =~ s/([^\x00-\xff])/sprintf '\\x{%x}', ord $1/ge;    # a wide separator
    $e =~ s/ at \S+ line \d+\.\s*\z//;
    return "died: $e";
}

my $ADDS = 0;
my %IO;     # by peer port, when add keeps them

sub data {
    my ($io, $d, $msg) = @_;
    my $f = $io->framing;
    my $got;
    if ($f eq 'raw') { $io->sysread($got, 1 << 20) } else { $got = $io->getline }
    my $reply = '[' . shown($msg) . "] f=$f " . (defined $got && $got eq $msg ? 'same' : 'DIFF');
    if ($f eq 'line') {
        (my $cmd = $msg) =~ s/(?:\r?\n|\|)\z//;
        my @sw = $cmd =~ /\ALEN(?:TWO)?\z/ ? ('length', length_format => 'n')
               : $cmd eq 'LENDEF' ? ('length')
               : $cmd eq 'RAW'    ? ('raw')
               : $cmd eq 'CRLF'   ? ('line', separator => "\r\n")
               : $cmd eq 'LINE'   ? ('line')
               :                    ();
        if (@sw) {
            my $was = $io->framing(@sw);
            $reply .= ' was=' . shown($was) . ' now=' . shown(scalar $io->framing);
            $reply .= ' next=[' . shown(scalar $io->getline) . ']' if $cmd eq 'LENTWO';
        }
        elsif ($cmd =~ /\ASWITCH (\d+)\z/) {       # another connection's
            my $was = $IO{$1}->framing('length', length_format => 'n');
            $reply .= ' was=' . shown($was) . ' there=' . shown(scalar $IO{$1}->framing);
        }
        elsif ($cmd eq 'TWO') {
            $reply .= ' next=[' . shown(scalar $io->getline) . ']';
        }
        elsif ($cmd eq 'TIMER') {
            $d->timer(after => 0.2, cb => sub {
                my $was = $io->framing('length', length_format => 'n');
                log_event('timer switched was=%s now=%s', $was, scalar $io->framing);
            });
        }
        elsif ($cmd eq 'BAD') {
            $reply .= ' | ' . join ' | ', map { try_framing($io, @$_) }
                ['bogus'], [undef], ['line', 'separator'], ['length', 'length_format', 'n', 'x'],
                ['raw', separator => 'x'], ['length', separator => 'x'], ['line', length_format => 'n'],
                ['length', length_format => 'Z'], ['length', length_format => undef],
                ['line', separator => ''], ['line', separator => "\x{263a}"], ['line', bogus => 1];
            $reply .= ' | now=' . $io->framing;
        }
    }
    elsif ($f eq 'length') {
        $reply .= ' next=[' . shown(scalar $io->getline) . ']' if $msg eq '+two';
        $io->print("$reply\n");
        $io->send_message('ECHO') if $msg eq 'echo';
        $io->framing('line') unless $msg =~ /\A\+/;
        return 1;
    }
    else {
        my $was = $io->framing('line');
        $reply .= ' was=' . shown($was);
    }
    $io->print("$reply\n");
    return 1;
}

sub server {
    my ($be, %o) = @_;
    start_server(backend => $be, timeout => 1, read_timeout => 2,
        callback => {
            data   => \&data,
            error  => sub { log_event('error %s', $_[2]) },
            remove => sub { log_event('remove') },
        }, %o);
}

# ------------------------------------------------------------------- tests

for my $be (backends()) {
    isd_subtest "a line header, a length-prefixed body, lines again, backend $be" => sub {
        my $srv = server($be, length_format => 'V');
        my $c = client($srv);
        # all in one write: the switch must cut what is already buffered
        send_all($c, "LEN\n" . frame('n', "he\nlo") . "more\n");
        is(read_line($c, 3), "[LEN<0a>] f=line same was=line now=length\n",
           "framing('length', length_format => 'n') returns the previous name; framing tells the new one");
        is(read_line($c, 3), "[he<0a>lo] f=length same\n",
           'the next message is cut by its n prefix, the newline inside is payload; getline agrees');
        is(read_line($c, 3), "[more<0a>] f=line same\n", "after framing('line') the rest is a line again");

        # length_format not given: the server's (V); many switches in one write
        send_all($c, "LENDEF\n" . frame('V', '+one') . frame('V', '') . "x\n" . "LEN\n" . frame('n', 'y') . "z\n");
        is(read_line($c, 3), "[LENDEF<0a>] f=line same was=line now=length\n", 'LENDEF');
        is(read_line($c, 3), "[+one] f=length same\n", "framing('length') alone takes the server's length_format");
        is(read_line($c, 3), "[] f=length same\n", 'an empty message');
        is(read_line($c, 3), "[x<0a>] f=line same\n", 'then a line');
        is(read_line($c, 3), "[LEN<0a>] f=line same was=line now=length\n", 'LEN again');
        is(read_line($c, 3), "[y] f=length same\n", 'n again');
        is(read_line($c, 3), "[z<0a>] f=line same\n", 'and a line');

        # a second getline reads by the new framing, inside the switching
        # data too; the stream stays length-framed until a data switches back
        send_all($c, "LENTWO\n" . frame('n', "a\nb") . frame('n', '+two') . frame('n', "c\n") . frame('n', 'd') . "e\n");
        is(read_line($c, 3), "[LENTWO<0a>] f=line same was=line now=length next=[a<0a>b]\n",
           'a second getline in the data that switched reads the next message the new way');
        is(read_line($c, 3), "[+two] f=length same next=[c<0a>]\n", 'so does one in a length-framed data');
        is(read_line($c, 3), "[d] f=length same\n", 'd');
        is(read_line($c, 3), "[e<0a>] f=line same\n", 'e');

        # send_message writes the connection's format (n), not the server's (V)
        send_all($c, "LEN\n" . frame('n', 'echo'));
        is(read_line($c, 3), "[LEN<0a>] f=line same was=line now=length\n", 'LEN');
        is(read_line($c, 3), "[echo] f=length same\n", 'echo');
        is(read_n($c, 6, 3), frame('n', 'ECHO'), "send_message on a connection switched to 'n' writes an n prefix");
        send_all($c, "after\n");
        is(read_line($c, 3), "[after<0a>] f=line same\n", 'still in step');
        close $c;
        is($srv->count(qr/^error /), 0, 'no error');
    };

    isd_subtest "raw takes the rest of the buffer, backend $be" => sub {
        my $srv = server($be);
        my $c = client($srv);
        send_all($c, "RAW\nabc\ndef");
        is(read_line($c, 3), "[RAW<0a>] f=line same was=line now=raw\n", "framing('raw')");
        is(read_line($c, 3), "[abc<0a>def] f=raw same was=raw\n",
           'the rest of the buffer comes as one raw chunk, its newline no frame; sysread gets it');
        send_all($c, "l1\nl2\n");
        is(read_line($c, 3), "[l1<0a>] f=line same\n", 'back to lines');
        is(read_line($c, 3), "[l2<0a>] f=line same\n", 'each its own');
        close $c;
    };

    isd_subtest "a separator of the connection's own, backend $be" => sub {
        my $srv = server($be);
        my $c = client($srv);
        send_all($c, "CRLF\na\nb\r\nc\r\n");
        is(read_line($c, 3), "[CRLF<0a>] f=line same was=line now=line\n", "framing('line', separator => \"\\r\\n\")");
        is(read_line($c, 3), "[a<0a>b<0d><0a>] f=line same\n", 'lines end in \r\n; getline reads by it too');
        is(read_line($c, 3), "[c<0d><0a>] f=line same\n", 'c');
        send_all($c, "TWO\r\nx\ny\r\n");
        is(read_line($c, 3), "[TWO<0d><0a>] f=line same next=[x<0a>y<0d><0a>]\n",
           'a second getline (with $/ left alone) reads by the connection\'s separator');
        send_all($c, "LINE\r\nd\ne\n");
        is(read_line($c, 3), "[LINE<0d><0a>] f=line same was=line now=line\n", "framing('line')");
        is(read_line($c, 3), "[d<0a>] f=line same\n", "the server's separator (\"\\n\") again");
        is(read_line($c, 3), "[e<0a>] f=line same\n", 'e');

        # the server's separator is what framing('line') goes back to
        my $srv2 = server($be, separator => '|');
        my $e = client($srv2);
        send_all($e, "CRLF|x|y\r\nLINE\r\nz|");
        is(read_line($e, 3), "[CRLF|] f=line same was=line now=line\n", 'a server with separator "|"');
        is(read_line($e, 3), "[x|y<0d><0a>] f=line same\n", 'the connection\'s \r\n replaces it');
        is(read_line($e, 3), "[LINE<0d><0a>] f=line same was=line now=line\n", 'LINE');
        is(read_line($e, 3), "[z|] f=line same\n", "framing('line') goes back to the server's \"|\"");
        close $_ for $c, $e;
    };

    isd_subtest "other connections keep the server's framing, backend $be" => sub {
        my $srv = server($be);
        my $c1 = client($srv);
        my $c2 = client($srv);
        send_all($c1, "LEN\n");
        is(read_line($c1, 3), "[LEN<0a>] f=line same was=line now=length\n", 'c1 switches to length');
        send_all($c2, frame('n', 'abc') . "\n");
        is(read_line($c2, 3), "[<00><03>abc<0a>] f=line same\n", 'c2 still cuts lines');
        send_all($c1, frame('n', 'abc'));
        is(read_line($c1, 3), "[abc] f=length same\n", 'c1 cuts messages');
        close $_ for $c1, $c2;
    };

    isd_subtest "a switch from a timer delivers what is buffered, backend $be" => sub {
        my $srv = server($be);
        my $c = client($srv);
        # no newline after TIMER's line: nothing more is a line
        send_all($c, "TIMER\n" . frame('n', '+hello') . frame('n', 'world'));
        is(read_line($c, 3), "[TIMER<0a>] f=line same\n", 'TIMER');
        # the client sends nothing more: the timer's switch alone must deliver
        is(read_line($c, 3), "[+hello] f=length same\n", 'the first buffered message, after the timer switched');
        is(read_line($c, 3), "[world] f=length same\n", 'and the second');
        ok($srv->wait_event(qr/^timer switched was=line now=length$/, 3),
           'the timer got the previous name and saw the new one');
        send_all($c, "back\n");
        is(read_line($c, 3), "[back<0a>] f=line same\n", 'lines again');
        close $c;
    };

    isd_subtest "a switch from another connection's data, backend $be" => sub {
        my $srv = server($be, callback => {
            data => \&data,
            add  => sub { $IO{ $_[0]->peerport } = $_[0]; 1 },
        });
        my $ca = client($srv);
        my $cb = client($srv);
        # one write: once "hi" is answered the rest is buffered
        send_all($cb, "hi\n" . frame('n', '+one') . frame('n', 'two'));
        is(read_line($cb, 3), "[hi<0a>] f=line same\n", 'b: a line, the rest buffered');
        my $port = $cb->sockport;
        send_all($ca, "SWITCH $port\n");
        is(read_line($ca, 3), "[SWITCH $port<0a>] f=line same was=line there=length\n",
           "a's data switches b: the previous name, and b's new one");
        # b sends nothing more
        is(read_line($cb, 3), "[+one] f=length same\n", "b's buffered messages are delivered the new way");
        is(read_line($cb, 3), "[two] f=length same\n", 'both');
        send_all($ca, "mine\n");
        is(read_line($ca, 3), "[mine<0a>] f=line same\n", 'a is still line-framed');
        close $_ for $ca, $cb;
    };

    isd_subtest "a switch from add, backend $be" => sub {
        my $srv = server($be, length_format => 'C', callback => {
            data => \&data,
            add  => sub {
                my ($io) = @_;
                # the first connection only
                my $was = ++$ADDS == 1 ? $io->framing('length') : 'untouched';
                log_event('add %d was=%s now=%s', $ADDS, $was, scalar $io->framing);
                1;
            },
        });
        my $c1 = client($srv);
        send_all($c1, frame('C', "+a\nb") . frame('C', 'c') . "d\n");
        is(read_line($c1, 3), "[+a<0a>b] f=length same\n", 'the first connection reads C-prefixed messages from the start');
        is(read_line($c1, 3), "[c] f=length same\n", 'c');
        is(read_line($c1, 3), "[d<0a>] f=line same\n", 'then lines');
        my $c2 = client($srv);
        send_all($c2, frame('C', 'ab') . "\n");
        is(read_line($c2, 3), "[<02>ab<0a>] f=line same\n", 'the second connection cuts lines');
        ok($srv->wait_event(qr/^add 1 was=line now=length$/, 3), 'add 1 switched');
        ok($srv->wait_event(qr/^add 2 was=untouched now=line$/, 3), 'add 2 did not');
        close $_ for $c1, $c2;
    };

    isd_subtest "limits and errors of a switched connection, backend $be" => sub {
        my $srv = server($be, max_line => 50);
        my $c = client($srv);
        send_all($c, "LEN\n" . frame('n', 'x' x 50));
        is(read_line($c, 3), "[LEN<0a>] f=line same was=line now=length\n", 'LEN');
        like(read_line($c, 3), qr/^\[x{50}\] f=length same$/, 'max_line bytes are fine');
        send_all($c, "LEN\n" . pack('n', 51));
        is(read_line($c, 3), "[LEN<0a>] f=line same was=line now=length\n", 'LEN');
        read_until_eof($c, 3);
        ok(got_eof($c), 'a prefix over max_line drops the client');
        ok($srv->wait_event(qr/^remove$/, 3), 'remove');
        like(join("\n", $srv->grep_events(qr/^error /)), qr/\Aerror message too long \(over max_line 50 bytes\)[^\n]*\z/,
             "one error, that of a length-framed message");
        close $c;

        my $d = client($srv);
        send_all($d, "LEN\n" . frame('n', 'ok') . pack('n', 10) . 'half');
        is(read_line($d, 3), "[LEN<0a>] f=line same was=line now=length\n", 'LEN');
        is(read_line($d, 3), "[ok] f=length same\n", 'ok');
        # back to line after "ok": "\0\x0a" is a line, "half" waits
        is(read_line($d, 3), "[<00><0a>] f=line same\n", 'back in line framing the prefix bytes are a line');
        send_all($d, "\nLEN\n");
        is(read_line($d, 3), "[half<0a>] f=line same\n", 'and the rest of the payload another');
        is(read_line($d, 3), "[LEN<0a>] f=line same was=line now=length\n", 'LEN');
        send_all($d, pack('n', 10) . 'half');
        shutdown $d, 1;
        read_until_eof($d, 3);
        ok(got_eof($d), 'EOF inside a message of a switched connection: closed');
        ok($srv->wait_event(qr/^error end of file inside a message/, 3), 'with its error');
        close $d;
    };

    isd_subtest "bad arguments croak, backend $be" => sub {
        my $srv = server($be);
        my $c = client($srv);
        send_all($c, "BAD\nafter\n");
        my $r = read_line($c, 3);
        my @parts = split / \| /, defined $r ? $r : '';
        is(shift(@parts), '[BAD<0a>] f=line same', 'BAD');
        my @want = (
            qr/^died: .*'bogus' is not 'line', 'raw' or 'length'/,
            qr/^died: .*: undef is not 'line', 'raw' or 'length'/,
            qr/^died: .*come in pairs/,
            qr/^died: .*come in pairs/,
            qr/^died: .*'separator' is not an option of framing 'raw'/,
            qr/^died: .*'separator' is not an option of framing 'length'/,
            qr/^died: .*'length_format' is not an option of framing 'line'/,
            qr/^died: .*length_format: 'Z' is not one of N n V v C/,
            qr/^died: .*length_format: undef is not one of N n V v C/,
            qr/^died: .*separator: '' is not a non-empty string of bytes/,
            qr/^died: .*separator: '\\x\{263a\}' is not a non-empty string of bytes/,
            qr/^died: .*'bogus' is not an option of framing 'line'/,
            qr/^now=line$/,
        );
        my @names = ("'bogus'", 'undef', "('line', 'separator')", 'three options', "raw with separator",
                     'length with separator', 'line with length_format', "length_format 'Z'",
                     'length_format undef', "separator ''", 'a wide separator', 'an unknown option',
                     'and the connection is still line-framed');
        is(scalar @parts, scalar @want, 'every call answered');
        for my $i (0 .. $#want) {
            my $p = defined $parts[$i] ? $parts[$i] : '';
            $p =~ s/\n\z//;
            like($p, $want[$i], $names[$i]);
        }
        is(read_line($c, 3), "[after<0a>] f=line same\n", 'the next line is a line');
        close $c;
        is($srv->count(qr/^error /), 0, 'no error');
    };
}

done_testing;
