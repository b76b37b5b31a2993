#!perl
# separator => STRING (issue 12, framings): lines end in the server's
# separator, kept like the newline; getline (with $/ left alone) reads the
# same lines; a separator split across reads is found; max_line counts it.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use TestISD;
use Test::More;
use IO::Socket::INET::Daemon;

sub shown { my $s = shift; $s =~ s/([^\x20-\x7e])/sprintf '<%02x>', ord $1/ge; $s }

# data answers "[line]" (its bytes shown) and whether getline agreed; "two"
# reads the next record itself; "dollar" reads one with $/ = "|"
sub data {
    my ($io, $d, $line) = @_;
    my $got = $io->getline;
    my $same = defined $got && $got eq $line ? 'same' : 'DIFF';
    my $reply = '[' . shown($line) . "] $same";
    if ($line =~ /\Atwo/) {
        my $next = $io->getline;
        $reply .= ' next=[' . shown(defined $next ? $next : 'undef') . ']';
    }
    elsif ($line =~ /\Adollar/) {
        local $/ = '|';
        my $next = $io->getline;
        $reply .= ' bar=[' . shown(defined $next ? $next : 'undef') . ']';
    }
    $io->print("$reply\n");
    return 1;
}

sub server {
    my ($be, %o) = @_;
    start_server(backend => $be, timeout => 1,
        callback => {
            data   => \&data,
            error  => sub { log_event('error %s', $_[2]) },
            remove => sub { log_event('remove') },
        }, %o);
}

for my $be (backends()) {
    isd_subtest "separator \\r\\n, backend $be" => sub {
        my $srv = server($be, separator => "\r\n");
        my $c = client($srv);
        send_all($c, "one\r\ntwo\nstill two\r");     # "\n" alone ends nothing
        Time::HiRes::sleep(0.1);
        send_all($c, "\nthree\r\n");                  # the separator split
        is(read_line($c, 3), "[one<0d><0a>] same\n", 'a line ends in \r\n, kept');
        is(read_line($c, 3), "[two<0a>still two<0d><0a>] same next=[three<0d><0a>]\n",
           'a lone \n is part of the line; a separator split across reads is found; '
           . 'a second getline reads the next line by the separator');
        send_all($c, "dollar\r\nx|y\r\n");
        is(read_line($c, 3), "[dollar<0d><0a>] same bar=[x|]\n", 'a $/ set by the caller is used as it is');
        is(read_line($c, 3), "[y<0d><0a>] same\n", 'and the rest is the next line');
        shutdown $c, 1;
        ok($srv->wait_event(qr/^remove$/, 3), 'EOF ends it');
        is($srv->count(qr/^error /), 0, 'no error');
        close $c;
    };

    isd_subtest "separator \\0 and a multi-byte one, backend $be" => sub {
        for my $sep ("\0", 'END') {
            my $srv = server($be, separator => $sep);
            my $c = client($srv);
            send_all($c, "a${sep}b\nc$sep");
            is(read_line($c, 3), '[' . shown("a$sep") . "] same\n", shown($sep) . ': first line');
            is(read_line($c, 3), '[' . shown("b\nc$sep") . "] same\n", shown($sep) . ': "\n" inside a line');
            send_all($c, 'last');
            shutdown $c, 1;
            is(read_line($c, 3), "[last] same\n", shown($sep) . ': an unterminated last line at EOF');
            close $c;
        }
    };

    isd_subtest "max_line counts the separator, backend $be" => sub {
        my $srv = server($be, separator => "\r\n", max_line => 8);
        my $c = client($srv);
        send_all($c, "123456\r\n");
        is(read_line($c, 3), "[123456<0d><0a>] same\n", 'a line of max_line bytes with its separator is served');
        send_all($c, "1234567\r\n");
        read_until_eof($c, 3);
        ok(got_eof($c), 'one byte more: the client is dropped');
        ok($srv->wait_event(qr/^error line too long/, 3), 'with error');
        close $c;
    };
}

subtest 'bad values croak, naming the option' => sub {
    my %base = (port => 0, host => '127.0.0.1');
    for my $bad ([''], [undef], [[1]], ["\x{263a}"]) {
        my $v = $bad->[0];
        ok(!eval { IO::Socket::INET::Daemon->new(%base, separator => $v); 1 }, 'separator ' . (defined $v ? "'$v'" : 'undef') . ' croaks');
        like($@, qr/\AIO::Socket::INET::Daemon::new: separator: /, 'naming the option');
    }
    ok(!eval { IO::Socket::INET::Daemon->new(%base, separator => "\r\n", framing => 'raw'); 1 }, 'with framing raw: croaks');
    like($@, qr/goes with framing 'line'/, 'saying why');
    ok(eval { IO::Socket::INET::Daemon->new(%base, separator => "\n"); 1 }, '"\n" is accepted (the default)');
    ok(eval { IO::Socket::INET::Daemon->new(%base, separator => "\xe9\0"); 1 }, 'any bytes are accepted');
};

done_testing;
