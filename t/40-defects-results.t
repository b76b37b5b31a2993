#!perl
# Issue 17, items 13-18 ("Wrong results"): regression tests for the results
# the core gave that differ from Perl's own or from the POD.
#
#   13  output encoding: :utf8 and raw peers, print/printf/say/printflush/
#       syswrite, "Wide character" warnings, compared with what Perl's own
#       handle sends on a real socketpair
#   14  sysread/read with OFFSET into a character buffer; read, getc,
#       $/ = \N and sysread count characters on a :utf8 peer
#   15  local $d->{callback}{data} / local $d->{callback} honoured once the
#       callback was cached by an earlier run
#   16  host => '' binds every address
#   17  $io inside remove: listed in connections and print true whichever
#       way the connection ended; what remove prints is delivered
#   18  (a) error after a failed over-max_output print when data then
#       returns false or dies, (b) read_timeout => 0 is ETIMEDOUT,
#       (c) printflush honours $, and $\, (d) a final line of exactly
#       max_line bytes at EOF is delivered, (e) error messages end without
#       "\n"
#
# The expected bytes are, where Perl can say, what Perl itself sends or
# reads on a real socket with the same layer (socketpair below).  Perl
# 5.30+ refuses sysread/syswrite on :utf8 handles; there the expectation is
# the documented pre-5.30 semantics (LEN, OFFSET and the result count
# characters), written out by hand.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use TestISD;
use Test::More;
use Errno qw(ETIMEDOUT EAGAIN EWOULDBLOCK);
use IO::Handle ();
use IO::Socket::INET ();
use Scalar::Util qw(refaddr);
use Socket qw(AF_UNIX SOCK_STREAM PF_UNSPEC SOL_SOCKET SO_LINGER);
use Time::HiRes ();

{
    package Str40;    # an object whose "" gives a given string
    use overload '""' => sub { ${ $_[0] } }, fallback => 1;
    sub new { my ($class, $s) = @_; bless \$s, $class }
}

# "\xe9" as a UTF-8-flagged string: a Latin-1 character in a character string
my $LATIN = substr("\x{263a}\xe9", 1);
BAIL_OUT('test setup: $LATIN is not UTF-8 flagged') unless utf8::is_utf8($LATIN) && $LATIN eq "\xe9";

sub hexs { defined $_[0] ? unpack('H*', $_[0]) : 'undef' }
sub ords { defined $_[0] ? join(',', map { sprintf '%x', ord } split //, $_[0]) : 'undef' }

# A warning or die message without its " at FILE line N." part.
sub norm {
    my ($m) = @_;
    return '' unless defined $m && length $m;
    $m =~ s/ at \S+ line \d+\.?\n?\z//;
    $m =~ s/\n\z//;
    return $m;
}

sub socket_pair {
    socketpair(my $a, my $b, AF_UNIX, SOCK_STREAM, PF_UNSPEC) or die "socketpair: $!";
    binmode $a;
    binmode $b;
    return ($a, $b);
}

# Run $code on a Perl handle with $layer; what it sent, returned, warned.
sub run_output {
    my ($fh, $layer, $code, $rvkind) = @_;
    binmode $fh, $layer;
    my @w;
    my $rv = do {
        local $SIG{__WARN__} = sub { push @w, $_[0] };
        eval { $code->($fh) };
    };
    my $err = norm($@);
    $rv = $rvkind eq 'count' ? (defined $rv ? $rv : 'undef') : ($rv ? 1 : 0);
    # IO::Handle::say is print with $\ = "\n" and warns "in print", the
    # built-in say warns "in say": either is Perl's
    return ($rv, $err, join('|', map { norm($_) =~ s/^Wide character in say$/Wide character in print/r } @w));
}

# ------------------------------------------------------------------ item 13

# [ name, layer, code, kind of result ('bool' or 'count'), expected (only
#   where Perl cannot tell: syswrite on :utf8) ]
my @OUT = (
    [ 'print "\xe9" on :utf8', ':utf8', sub { $_[0]->print("\xe9") }, 'bool' ],
    [ 'print of a wide string on :utf8', ':utf8', sub { $_[0]->print("\x{263a}\xe9") }, 'bool' ],
    [ 'print of a UTF-8-flagged Latin-1 string on raw', ':raw', sub { $_[0]->print($LATIN) }, 'bool' ],
    [ 'print of a wide character on raw (warns)', ':raw', sub { $_[0]->print("\x{263a}") }, 'bool' ],
    [ 'print wide, then flagged Latin-1 (each item on its own)', ':raw',
      sub { $_[0]->print("\x{263a}", $LATIN) }, 'bool' ],
    [ 'print with flagged Latin-1 $, and $\ on raw', ':raw',
      sub { local $, = $LATIN; local $\ = $LATIN; $_[0]->print('a', 'b') }, 'bool' ],
    [ 'print with Latin-1 $, and $\ on :utf8', ':utf8',
      sub { local $, = "\xe9"; local $\ = "\xe8"; $_[0]->print('a', 'b') }, 'bool' ],
    [ 'printf of Latin-1 and wide on :utf8', ':utf8',
      sub { $_[0]->printf('%s|%s', "\xe9", "\x{263a}") }, 'bool' ],
    [ 'printf of flagged Latin-1 on raw', ':raw', sub { $_[0]->printf('%s', $LATIN) }, 'bool' ],
    [ 'printf of a wide character on raw (warns)', ':raw', sub { $_[0]->printf('%s', "\x{263a}") }, 'bool' ],
    [ 'say "\xe9" on :utf8', ':utf8', sub { $_[0]->say("\xe9") }, 'bool' ],
    [ 'say of a wide character on raw (warns)', ':raw', sub { $_[0]->say("\x{263a}") }, 'bool' ],
    [ 'printflush with $, and $\ on :utf8', ':utf8',
      sub { local $, = '-'; local $\ = "\xe8"; $_[0]->printflush('a', "\xe9") }, 'bool' ],
    [ 'print {$fh} "\xe9" (filehandle syntax) on :utf8', ':utf8', sub { print { $_[0] } "\xe9" }, 'bool' ],
    # values whose UTF-8 flag is only known after get-magic or overloading
    [ 'print of $1 holding a Latin-1 character of a character string, on raw', ':raw',
      sub { "\x{263a}\xe9" =~ /(.)\z/; $_[0]->print($1) }, 'bool' ],
    [ 'print of $1 holding a wide character, on raw (warns)', ':raw',
      sub { "\x{263a}\xe9" =~ /\A(.)/; $_[0]->print($1) }, 'bool' ],
    [ 'print of an object stringifying to flagged Latin-1, on raw', ':raw',
      sub { $_[0]->print(Str40->new($LATIN)) }, 'bool' ],
    [ 'print of $1 holding "\xe9" of a byte string, on :utf8', ':utf8',
      sub { "ab\xe9" =~ /(.)\z/; $_[0]->print($1) }, 'bool' ],
    [ 'syswrite of flagged Latin-1 on raw', ':raw', sub { $_[0]->syswrite($LATIN) }, 'count' ],
    [ 'syswrite of $1 holding a Latin-1 character of a character string, on raw', ':raw',
      sub { "\x{263a}\xe9" =~ /(.)\z/; $_[0]->syswrite($1) }, 'count' ],
    [ 'syswrite of an object stringifying to flagged Latin-1, on raw', ':raw',
      sub { $_[0]->syswrite(Str40->new($LATIN)) }, 'count' ],
    [ 'syswrite of a wide character on raw dies', ':raw', sub { $_[0]->syswrite("\x{263a}") }, 'count' ],
    # Perl >= 5.30 dies here ("syswrite() isn't allowed on :utf8 handles");
    # the decision: LEN, OFFSET and the result count characters (5.8-5.28).
    [ 'syswrite(BUF, 1, 1) on :utf8 counts characters', ':utf8',
      sub { $_[0]->syswrite("\x{263a}\x{263b}", 1, 1) }, 'count',
      { hex => 'e298bb', rv => 1, err => '', warn => '' } ],
    [ 'syswrite of a byte string on :utf8 sends it encoded', ':utf8',
      sub { $_[0]->syswrite("\xe9") }, 'count',
      { hex => 'c3a9', rv => 1, err => '', warn => '' } ],
    [ 'syswrite(BUF, 2, -3) on :utf8: negative OFFSET in characters', ':utf8',
      sub { $_[0]->syswrite("a\x{263a}\x{263b}b", 2, -3) }, 'count',
      { hex => 'e298bae298bb', rv => 2, err => '', warn => '' } ],
    [ 'syswrite with LEN past the end on :utf8', ':utf8',
      sub { $_[0]->syswrite("\x{263a}\x{263b}", 10) }, 'count',
      { hex => 'e298bae298bb', rv => 2, err => '', warn => '' } ],
    [ 'syswrite($fh, BUF, 1, 1) (filehandle syntax) on :utf8', ':utf8',
      sub { syswrite($_[0], "\x{263a}\x{263b}", 1, 1) }, 'count',
      { hex => 'e298bb', rv => 1, err => '', warn => '' } ],
);

# What Perl's own handle does for each case.
for my $case (@OUT) {
    next if $case->[4];
    my ($w, $r) = socket_pair();
    my ($rv, $err, $warn) = run_output($w, $case->[1], $case->[2], $case->[3]);
    close $w;
    my $bytes = do { local $/; <$r> };
    close $r;
    $case->[4] = { hex => hexs($bytes), rv => $rv, err => $err, warn => $warn };
}

# the reference itself, as issue 17 states it
is($OUT[0][4]{hex}, 'c3a9', 'reference: Perl\'s :utf8 layer sends c3 a9 for "\xe9"');
is($OUT[2][4]{hex}, 'e9', 'reference: Perl sends the byte e9 for a flagged Latin-1 string on raw');
is($OUT[3][4]{warn}, 'Wide character in print', 'reference: Perl warns for a wide character on raw');

# ------------------------------------------------------------------ item 14

# [ name, layer, bytes the client sends, code returning a string, expected
#   (only where Perl cannot tell) ]
my $SMILES = "\x{263a}\xe9b\x{263b}xyz";
utf8::encode(my $SMILES_UTF8 = $SMILES);
my @IN = (
    [ 'sysread($buf, 3, 1) into "\x{263a}"', ':raw', 'abc',
      sub { my $b = "\x{263a}"; my $n = $_[0]->sysread($b, 3, 1); "$n:" . ords($b) } ],
    [ 'read($buf, 3, 1) into "\x{263a}"', ':raw', 'abc',
      sub { my $b = "\x{263a}"; my $n = $_[0]->read($b, 3, 1); "$n:" . ords($b) } ],
    [ 'sysread($fh, $buf, 3, 1) (filehandle syntax)', ':raw', 'abc',
      sub { my $b = "\x{263a}"; my $n = sysread($_[0], $b, 3, 1); "$n:" . ords($b) } ],
    [ 'read past the end of a character buffer pads with NULs', ':raw', 'ab',
      sub { my $b = "\x{263a}"; my $n = $_[0]->read($b, 2, 3); "$n:" . ords($b) } ],
    [ 'sysread at a negative OFFSET into a character buffer', ':raw', 'ab',
      sub { my $b = "\x{263a}\x{263b}"; my $n = $_[0]->sysread($b, 2, -1); "$n:" . ords($b) } ],
    [ ':utf8: read, getc, $/ = \2, read count characters', ':utf8', $SMILES_UTF8,
      sub {
          my $io = shift;
          my $n = $io->read(my $b, 2);
          my $c = $io->getc;
          my $rec = do { local $/ = \2; $io->getline };
          my $m = $io->read(my $rest, 2);
          join ' ', "read=$n:" . ords($b), 'getc=' . ords($c), 'rec=' . ords($rec), "rest=$m:" . ords($rest);
      } ],
    [ ':utf8: read($buf, 2, 1) into a character buffer', ':utf8', "\xe2\x98\xba\xc3\xa9",
      sub { my $b = "\x{263b}"; my $n = $_[0]->read($b, 2, 1); "$n:" . ords($b) } ],
    # Perl >= 5.30 dies ("sysread() isn't allowed on :utf8 handles"): the
    # decision is the pre-5.30 semantics, characters.
    [ ':utf8: sysread counts characters', ':utf8', "\xe2\x98\xba\xe2\x98\xbb\xe2\x98\xbc",
      sub {
          my $io = shift;
          my $n = $io->sysread(my $b, 2);
          my $m = $io->sysread(my $c, 5);
          "$n:" . ords($b) . " $m:" . ords($c);
      },
      '2:263a,263b 1:263c' ],
);

for my $case (@IN) {
    next if defined $case->[4];
    my ($w, $r) = socket_pair();
    print $w $case->[2];
    close $w;
    binmode $r, $case->[1];
    $case->[4] = eval { $case->[3]->($r) };
    $case->[4] = 'died: ' . norm($@) unless defined $case->[4];
    close $r;
}
is($IN[0][4], '3:263a,61,62,63', 'reference: Perl\'s sysread at an OFFSET keeps the characters');

# ---------------------------------------------------------- the servers

sub ev_val {
    my ($srv, $key, $timeout) = @_;
    $srv->wait_event(qr/^\Q$key\E /, defined $timeout ? $timeout : 5);
    my @v = map { /^\Q$key\E (.*)\z/s ? $1 : () } $srv->events;
    return $v[-1];
}

# Everything up to a line equal to $marker (the "\n" put before the marker
# is not part of the result); undef if it does not come in time.
sub read_to_marker {
    my ($c, $marker, $timeout) = @_;
    my $deadline = now() + (defined $timeout ? $timeout : 5);
    my $got = '';
    while (1) {
        my $left = $deadline - now();
        return undef if $left <= 0;
        my $l = read_line($c, $left);
        return undef unless defined $l;
        if ($l eq $marker && $got =~ /\n\z/) {
            chop $got;
            return $got;
        }
        $got .= $l;
    }
}

# the server side of 13 and 14: "out N" / "in N" on a line of its own
sub io_data {
    my ($io, $d, $line) = @_;
    $io->getline;
    if ($line =~ /^out (\d+)$/) {
        my $case = $OUT[$1];
        my ($rv, $err, $warn) = run_output($io, $case->[1], $case->[2], $case->[3]);
        $io->binmode(':raw');
        log_event("out$1 %s", join("\t", $rv, $err, $warn));
        $io->print("\n<END $1>\n");
    }
    elsif ($line =~ /^in (\d+)$/) {
        my $case = $IN[$1];
        $io->binmode($case->[1]);
        my $res = eval { $case->[3]->($io) };
        $res = 'died: ' . norm($@) unless defined $res;
        $io->binmode(':raw');
        log_event("in$1 %s", $res);
        $io->print("<END $1>\n");
    }
    elsif ($line eq "in split\n") {     # a character split over two packets
        $io->binmode(':utf8');
        my $ch = $io->getc;
        $io->binmode(':raw');
        log_event('insplit %s', ords($ch));
        $io->print("<END split>\n");
    }
    return 1;
}

for my $be (backends()) {

    # ------------------------------------------------------------- 13
    isd_subtest "13: output encoding as Perl's handles, backend $be" => sub {
        my $srv = start_server(backend => $be, read_timeout => 2, callback => { data => \&io_data });
        my $c = client($srv);
        for my $i (0 .. $#OUT) {
            my ($name, undef, undef, undef, $want) = @{ $OUT[$i] };
            print $c "out $i\n";
            my $got = read_to_marker($c, "<END $i>\n", 5);
            is(hexs($got), $want->{hex}, "$name: bytes sent");
            my ($rv, $err, $warn) = split /\t/, (ev_val($srv, "out$i") // ''), -1;
            is($rv, $want->{rv}, "$name: returns $want->{rv}");
            is($err // '', $want->{err}, "$name: " . (length $want->{err} ? "dies '$want->{err}'" : 'does not die'));
            is($warn // '', $want->{warn}, "$name: " . (length $want->{warn} ? "warns '$want->{warn}'" : 'no warning'));
        }
        ok($srv->alive, 'server alive');
        $srv->stop;
    };

    # ------------------------------------------------------------- 14
    isd_subtest "14: reads into character buffers, :utf8 counts characters, backend $be" => sub {
        my $srv = start_server(backend => $be, read_timeout => 2, callback => { data => \&io_data });
        for my $i (0 .. $#IN) {
            my ($name, undef, $bytes, undef, $want) = @{ $IN[$i] };
            my $c = client($srv);        # one connection each: nothing left over
            send_all($c, "in $i\n$bytes");
            is(read_line($c, 5), "<END $i>\n", "$name: answered");
            is(ev_val($srv, "in$i"), $want, "$name: $want");
            close $c;
        }

        # a character split over two packets: getc waits for the whole of it
        my $c = client($srv);
        print $c "in split\n\xe2\x98";
        $c->flush;
        Time::HiRes::sleep(0.2);
        print $c "\xba";
        $c->flush;
        is(read_line($c, 5), "<END split>\n", 'getc over a split character: answered');
        is(ev_val($srv, 'insplit'), '263a', 'getc on :utf8 returns the whole character split over two packets');
        close $c;
        ok($srv->alive, 'server alive');
        $srv->stop;
    };

    # ------------------------------------------------------------- 15
    isd_subtest "15: local callbacks after the callback was cached, backend $be" => sub {
        my $orig = sub { $_[0]->print("orig: $_[2]"); $_[1]->stop; 1 };
        my $srv = start_server(
            backend  => $be,
            callback => { data => $orig },
            child_run => sub {
                my ($d) = @_;
                log_event('running 1');
                $d->run;
                {
                    local $d->{callback}{data} = sub { $_[0]->print("local elem: $_[2]"); $_[1]->stop; 1 };
                    log_event('running 2');
                    $d->run;
                }
                log_event('running 3');
                $d->run;
                {
                    local $d->{callback} = { data => sub { $_[0]->print("local hash: $_[2]"); $_[1]->stop; 1 } };
                    log_event('running 4');
                    $d->run;
                }
                log_event('running 5');
                $d->run;
            },
        );
        my $c = client($srv);
        my @want = ('orig: a', 'local elem: b', 'orig: c', 'local hash: d', 'orig: e');
        my @what = ('the original (now cached)', 'local $d->{callback}{data} is called',
                    'the original again once the local is gone',
                    'local $d->{callback} = {...} is called',
                    'the original again once the local hash is gone');
        for my $i (0 .. $#want) {
            my $n = $i + 1;
            ok($srv->wait_event(qr/^running $n$/, 5), "run $n started");
            my $l = chr(ord('a') + $i);
            print $c "$l\n";
            is(read_line($c, 5), "$want[$i]\n", "run $n: $what[$i]");
        }
        $srv->stop;
    };

    # ------------------------------------------------------------- 16
    isd_subtest "16: host => '' binds every address, backend $be" => sub {
        my $srv = start_server(
            backend    => $be, host => '',
            callback   => { data => sub { $_[0]->print("echo: $_[2]"); 1 } },
            child_init => sub { log_event('sockhost %s', $_[0]->sockhost) },
        );
        is(ev_val($srv, 'sockhost'), '0.0.0.0', "sockhost is 0.0.0.0 (IO::Socket::INET's LocalAddr '' binds INADDR_ANY too)");
        for my $addr ('127.0.0.1', '127.0.0.2') {
            my $c = IO::Socket::INET->new(PeerAddr => $addr, PeerPort => $srv->port, Timeout => 3);
            ok($c, "a client reaches it on $addr") or next;
            print $c "hi $addr\n";
            is(read_line($c, 5), "echo: hi $addr\n", "and is answered on $addr");
            close $c;
        }
        $srv->stop;

        # the other hosts, without running: '0' is an address (INADDR_ANY,
        # as for IO::Socket::INET); only no host means localhost
        my $ref = IO::Socket::INET->new(Listen => 1, LocalAddr => '0', LocalPort => 0);
        my $d = IO::Socket::INET::Daemon->new(port => 0, host => '0', backend => $be);
        ok($d->listen, "host => '0' listens");
        is($d->sockhost, $ref ? $ref->sockhost : '0.0.0.0', "host => '0': sockhost as IO::Socket::INET's LocalAddr '0'");
        $d->destroy;
        close $ref if $ref;
        for my $how ('no host', 'host => undef') {
            $d = IO::Socket::INET::Daemon->new(port => 0, backend => $be,
                                               ($how eq 'no host' ? () : (host => undef)));
            ok($d->listen, "$how listens");
            is($d->sockhost, '127.0.0.1', "$how: localhost (127.0.0.1)");
            my $c = IO::Socket::INET->new(PeerAddr => '127.0.0.2', PeerPort => $d->sockport, Timeout => 3);
            ok(!$c, "$how: not reachable on 127.0.0.2");
            $d->destroy;
        }
    };

    # ------------------------------------------------------------- 17
    isd_subtest "17: \$io inside remove, every way a connection ends, backend $be" => sub {
        my $srv = start_server(
            backend => $be, max_line => 1024, max_output => 65536, read_timeout => 2,
            callback => {
                data => sub {
                    my ($io, $d, $line) = @_;
                    $io->getline;
                    if ($line =~ /^tag (\w+)$/) {
                        ${*$io}{tag} = $1;
                        $io->print("ok\n");
                    }
                    elsif ($line eq "false\n") { $io->print("answer false\n"); return 0 }
                    elsif ($line eq "die\n")   { $io->print("answer die\n"); die "boom\n" }
                    elsif ($line eq "flood\n") {
                        my $ok = $io->print('x' x 70000);
                        log_event('flood %d print=%d', $io->peerport, $ok ? 1 : 0);
                    }
                    return 1;
                },
                remove => sub {
                    my ($io, $d) = @_;
                    my $listed = grep { refaddr($_) == refaddr($io) } $d->connections;
                    my $tag = ${*$io}{tag} // 'none';
                    my $ok = $io->print("bye $tag\n");
                    log_event('remove %d listed=%d print=%d', $io->peerport, $listed ? 1 : 0, $ok ? 1 : 0);
                },
                error => sub {
                    log_event('error %s %s', defined $_[0] ? $_[0]->peerport : 'undef', $_[2]);
                },
            },
        );
        my %how = (
            false    => sub { print {$_[0]} "false\n"; ("answer false\n", "bye false\n") },
            died     => sub { print {$_[0]} "die\n"; ("answer die\n", "bye died\n") },
            eof      => sub { shutdown($_[0], 1); ("bye eof\n") },
            max_line => sub { send_all($_[0], 'x' x 2000); ("bye max_line\n") },
        );
        my %err = (false => 0, died => 1, eof => 0, max_line => 1);
        my %ports;
        for my $how (qw(false died eof max_line)) {
            my $c = client($srv);
            my $p = $c->sockport;
            print $c "tag $how\n";
            is(read_line($c, 5), "ok\n", "$how: tagged");
            my @want = $how{$how}->($c);
            my $got = read_until_eof($c, 5);
            ok(got_eof($c), "$how: the server closed the connection");
            is($got, join('', @want), "$how: the client gets what data and remove printed, then EOF");
            ok($srv->wait_event(qr/^remove $p /, 5), "$how: remove called");
            like(ev_val($srv, "remove $p"), qr/listed=1/, "$how: \$io is in connections inside remove");
            like(ev_val($srv, "remove $p"), qr/print=1/, "$how: print inside remove returns true");
            $ports{$how} = $p;
            close $c;
        }

        # the client closes for good, or resets: nobody can read what remove
        # prints, but $io is in the same state
        for my $how (qw(close reset)) {
            my $c = client($srv);
            my $p = $c->sockport;
            print $c "tag $how\n";
            is(read_line($c, 5), "ok\n", "$how: tagged");
            setsockopt($c, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0)) or die "SO_LINGER: $!"
                if $how eq 'reset';
            close $c;
            ok($srv->wait_event(qr/^remove $p /, 5), "$how: remove called");
            like(ev_val($srv, "remove $p"), qr/listed=1/, "$how: \$io is in connections inside remove");
            like(ev_val($srv, "remove $p"), qr/print=1/, "$how: print inside remove returns true");
            $ports{$how} = $p;
            $err{$how} = 0;
        }

        # max_output: the print fails, the client is dropped right after remove
        my $c = client($srv);
        my $p = $c->sockport;
        print $c "tag max_output\n";
        is(read_line($c, 5), "ok\n", 'max_output: tagged');
        print $c "flood\n";
        ok($srv->wait_event(qr/^remove $p /, 5), 'max_output: remove called');
        is(ev_val($srv, "flood $p"), 'print=0', 'max_output: the print over max_output returns false');
        like(ev_val($srv, "remove $p"), qr/listed=1/, 'max_output: $io is in connections inside remove');
        like(ev_val($srv, "remove $p"), qr/print=1/, 'max_output: print inside remove returns true');
        read_until_eof($c, 5);
        ok(got_eof($c), 'max_output: the client is dropped');
        close $c;
        $ports{max_output} = $p;
        $err{max_output} = 1;

        Time::HiRes::sleep(0.2);    # a second remove or error would be there by now
        for my $how (sort keys %ports) {
            my $p = $ports{$how};
            is($srv->count(qr/^remove $p /), 1, "$how: remove called once");
            is($srv->count(qr/^error $p /), $err{$how}, "$how: error called $err{$how} time(s)");
        }
        my $ml = $ports{max_line};
        like(join("\n", $srv->grep_events(qr/^error $ml /)), qr/max_line/, 'max_line: the error names max_line');
        my $mo = $ports{max_output};
        like(join("\n", $srv->grep_events(qr/^error $mo /)), qr/max_output/, 'max_output: the error names max_output');
        my @msgs = map { /^error \S+ (.*)\z/s ? $1 : () } $srv->events;
        ok(@msgs >= 3, 'errors reported');
        is(scalar(grep { /\n\z/ } @msgs), 0, '18(e): no error message ends in "\n"');
        ok($srv->alive, 'server alive');
        $srv->stop;
    };

    # ------------------------------------------------------------- 18
    isd_subtest "18: max_output then false/die, read_timeout 0, printflush, max_line at EOF, backend $be" => sub {
        my $srv = start_server(
            backend => $be, max_line => 16, max_output => 4096, read_timeout => 0,
            callback => {
                data => sub {
                    my ($io, $d, $line) = @_;
                    $io->getline;
                    if ($line eq "bigfalse\n" || $line eq "bigdie\n") {
                        my $ok = $io->print('x' x 5000);
                        log_event('big %d print=%d', $io->peerport, $ok ? 1 : 0);
                        die "after big\n" if $line eq "bigdie\n";
                        return 0;
                    }
                    if ($line eq "rt\n") {
                        my $t0 = now();
                        my $l = $io->getline;
                        log_event('rt getline %s errno=%d dt=%.3f', defined $l ? 'defined' : 'undef', $! + 0, now() - $t0);
                        $t0 = now();
                        my $n = $io->read(my $buf, 10);
                        log_event('rt read %s errno=%d dt=%.3f', defined $n ? $n : 'undef', $! + 0, now() - $t0);
                        $io->blocking(0);
                        $t0 = now();
                        $l = $io->getline;
                        log_event('rt nonblocking %s errno=%d dt=%.3f', defined $l ? 'defined' : 'undef', $! + 0, now() - $t0);
                        $io->blocking(1);
                        $io->print("rt done\n");
                        return 1;
                    }
                    if ($line eq "pf\n") {
                        {
                            local $, = '-';
                            local $\ = "!\n";
                            $io->printflush('a', 'b');
                        }
                        $io->print("\n<END pf>\n");
                        return 1;
                    }
                    log_event('line %d %s', $io->peerport, $line);
                    $io->print('got ' . length($line) . "\n");
                    return 1;
                },
                remove => sub { log_event('remove %d', $_[0]->peerport) },
                error  => sub { log_event('error %s %s', defined $_[0] ? $_[0]->peerport : 'undef', $_[2]) },
            },
        );

        # (a) a print over max_output, then data returns false / dies
        for my $how (qw(bigfalse bigdie)) {
            my $c = client($srv);
            my $p = $c->sockport;
            print $c "$how\n";
            read_until_eof($c, 5);
            ok(got_eof($c), "(a) $how: the connection is closed");
            ok($srv->wait_event(qr/^remove $p$/, 5), "(a) $how: remove called");
            is(ev_val($srv, "big $p"), 'print=0', "(a) $how: the print over max_output returned false");
            Time::HiRes::sleep(0.1);
            is($srv->count(qr/^error $p .*max_output/), 1, "(a) $how: error called with the max_output message");
            is($srv->count(qr/^remove $p$/), 1, "(a) $how: remove called once");
            close $c;
        }

        # (b) read_timeout => 0
        my $c = client($srv);
        print $c "rt\n";
        is(read_line($c, 5), "rt done\n", '(b) answered');
        my $rt = ev_val($srv, 'rt getline');
        like($rt, qr/^undef /, '(b) read_timeout 0: a getline that needs more input fails');
        like($rt, qr/errno=${\ ETIMEDOUT} /, '(b) ... with $! == ETIMEDOUT');
        like($rt, qr/dt=0\.[0-4]/, '(b) ... at once');
        $rt = ev_val($srv, 'rt read');
        like($rt, qr/^undef errno=${\ ETIMEDOUT} dt=0\.[0-4]/, '(b) read of more than was sent: ETIMEDOUT at once');
        $rt = ev_val($srv, 'rt nonblocking');
        like($rt, qr/^undef errno=(?:${\ EAGAIN}|${\ EWOULDBLOCK}) dt=0\.[0-4]/, '(b) blocking(0) keeps EAGAIN');

        # (c) printflush honours $, and $\ as Perl's does
        my ($w, $r) = socket_pair();
        { local $, = '-'; local $\ = "!\n"; $w->printflush('a', 'b') }
        close $w;
        my $want = do { local $/; <$r> };
        close $r;
        print $c "pf\n";
        is(read_to_marker($c, "<END pf>\n", 5), $want, '(c) printflush honours $, and $\ (as IO::Handle::printflush: "a-b!\n")');
        close $c;

        # (d) max_line counts the terminator when there is one
        my %lines = (
            'exact at EOF'         => ['x' x 16, 1],
            'exact with "\n"'      => [('y' x 15) . "\n", 1],
            'one over at EOF'      => ['z' x 17, 0],
            'one over with "\n"'   => [('w' x 16) . "\n", 0],
        );
        for my $name (sort keys %lines) {
            my ($bytes, $ok) = @{ $lines{$name} };
            my $c = client($srv);
            my $p = $c->sockport;
            send_all($c, $bytes);
            shutdown($c, 1);
            my $got = read_until_eof($c, 5);
            ok(got_eof($c), "(d) $name: closed after EOF");
            ok($srv->wait_event(qr/^remove $p$/, 5), "(d) $name: remove called");
            if ($ok) {
                is($got, "got 16\n", "(d) $name: a line of max_line bytes is delivered");
                is(ev_val($srv, "line $p"), $bytes, "(d) $name: data gets the whole line");
                is($srv->count(qr/^error $p /), 0, "(d) $name: no error");
            }
            else {
                is($got, '', "(d) $name: not delivered");
                is($srv->count(qr/^line $p /), 0, "(d) $name: data not called");
                like(ev_val($srv, "error $p"), qr/max_line/, "(d) $name: error names max_line");
            }
            close $c;
        }

        # (e) messages passed to error have no trailing newline
        my @msgs = map { /^error \S+ (.*)\z/s ? $1 : () } $srv->events;
        ok(@msgs >= 4, '(e) errors reported');
        is(scalar(grep { /\n\z/ } @msgs), 0, '(e) no error message ends in "\n"')
            or diag explain \@msgs;
        ok(scalar(grep { /after big\z/ } @msgs), '(e) the message of a die "after big\n" ends in "after big"');
        ok($srv->alive, 'server alive');
        $srv->stop;
    };
}

done_testing;
