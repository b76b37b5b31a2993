#!perl
# Regression tests for more defects fixed in the XS and the C core:
#
#  1. getlines, and <$io> in list context, inside data read every line to
#     EOF but are bounded by max_line in all, as a slurp is: past it they
#     return an empty list with $! == EMSGSIZE and the client is dropped
#     (error naming max_line, then remove, once each).  Under the bound
#     every line comes back.
#  2. ungetc(ORD) on a :utf8 peer pushes back the character ORD (its
#     UTF-8), not the low byte of ORD: getc then returns that one
#     character, getline that character followed by the rest of the input.
#  3. In a child forked from data, $io->flush writes ALL that the child
#     printed before it returns, even to a slow reader (4 MiB, the client
#     starts reading 0.5 s later); the parent serves on meanwhile.
#  4. A child's flush (and destroy) does not change the event interest the
#     parent shares with it (epoll): output the parent has queued (8 MiB,
#     not read yet) still goes out once the client reads; 4 with another
#     client than the child's, 4b with the child's own client.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use TestISD;
use Test::More;
use Errno ();
use IO::Socket::INET ();
use POSIX ();
use Socket qw(SOL_SOCKET SO_RCVBUF inet_aton pack_sockaddr_in);
use Time::HiRes ();

my $EMSGSIZE = Errno::EMSGSIZE();

# Payloads with numbered 64-byte lines, so that a loss, a duplicate or a
# reordering shows.
my $PAY4 = join '', map { sprintf "%07d %s\n", $_, 'y' x 55 } 0 .. 65535;     # 4 MiB
my $PAY8 = join '', map { sprintf "%07d %s\n", $_, 'z' x 55 } 0 .. 131071;    # 8 MiB
BAIL_OUT('test setup: payload sizes') unless length $PAY4 == 4 << 20 && length $PAY8 == 8 << 20;

sub ords { defined $_[0] ? join(',', map { sprintf '%x', ord } split //, $_[0]) : 'undef' }

# $got eq $want, without dumping megabytes on failure.
sub same_data {
    my ($got, $want, $name) = @_;
    my $ok = is(length $got, length $want, "$name: length");
    if ($got eq $want) {
        pass("$name: content");
        return $ok;
    }
    my $i = 0;
    my $n = length $got < length $want ? length $got : length $want;
    $i++ while $i < $n && substr($got, $i, 1) eq substr($want, $i, 1);
    fail("$name: content");
    diag("first difference at byte $i of " . length($want)
         . ': got ' . (substr($got, $i, 40) =~ s/\n/\\n/gr)
         . ' want ' . (substr($want, $i, 40) =~ s/\n/\\n/gr));
    return 0;
}

# A client with a small receive buffer: what the server sends stays queued
# in the server (not in the kernel) until the client reads.
sub small_client {
    my ($srv) = @_;
    my $s = IO::Socket::INET->new(Proto => 'tcp') or die "small_client: socket: $!";
    $s->setsockopt(SOL_SOCKET, SO_RCVBUF, 32768) or die "small_client: SO_RCVBUF: $!";
    $s->connect(pack_sockaddr_in($srv->port, inet_aton('127.0.0.1')))
        or die "small_client: connect: $!";
    return $s;
}

# A forked child (grandchild of the test) gone: SIGCHLD is ignored in the
# server, so it is reaped as soon as it exits.
sub gone { my ($pid) = @_; wait_until(sub { !kill(0, $pid) }, 5) }

# The FORK recipe: run returns in a child that destroyed its copy; it exits.
my $fork_run = sub {
    my ($d) = @_;
    my $me = $$;
    my $rv = $d->run;
    POSIX::_exit(0) if $$ != $me;
    log_event('run_returned %s', $rv ? 1 : 0);
};

for my $be (backends()) {
    # ------------------------------------------------------------ 1
    isd_subtest "1: getlines and list <\$io> are bounded by max_line in all, backend $be" => sub {
        my $srv = start_server(
            backend  => $be,
            timeout  => 1,
            max_line => 1024,
            callback => {
                data => sub {
                    my ($io, $d, $l) = @_;
                    my $p = $io->peerport;
                    log_event('data %s', $p);
                    my $how = substr($l, 0, 1) eq 'r' ? 'readline' : 'getlines';
                    $! = 0;
                    my @l = $how eq 'readline' ? <$io> : $io->getlines;
                    my $e = $! + 0;
                    log_event('%s %s n=%d errno=%d', $how, $p, scalar @l, $e);
                    if (@l) {
                        chomp(my @c = @l);
                        splice @c, 3, @c - 4, '...' if @c > 10;      # short, even when wrong
                        $io->print(scalar(@l) . ': ' . join('|', @c) . "\n");
                    }
                    1;
                },
                error  => sub { log_event('error %s %s', defined $_[0] ? $_[0]->peerport : 'undef', $_[2]) },
                remove => sub { log_event('remove %s', $_[0]->peerport) },
            },
        );
        for my $how (qw(getlines readline)) {
            my $t = substr $how, 0, 1;

            # under the bound: every line to EOF
            my $c = client($srv);
            my $p = $c->sockport;
            my $msg = join '', map { "$t$_\n" } 1 .. 5;
            is(send_all($c, $msg, 3), length $msg, "$how: 5 short lines sent");
            ok(shutdown($c, 1), "$how: the client shuts its write side");
            is(read_line($c, 5), "5: " . join('|', map { "$t$_" } 1 .. 5) . "\n",
               "$how: returns all 5 lines");
            ok($srv->wait_event(qr/^remove $p$/, 3), "$how: remove at EOF");
            is($srv->count(qr/^data $p$/), 1, "$how: data called once (the rest was read)");
            is($srv->count(qr/^error $p /), 0, "$how: no error for 5 short lines");
            close $c;

            # 200 KB of 100-byte lines: over max_line (1024) in all
            $c = client($srv);
            $p = $c->sockport;
            my $line = $t . ('x' x 98) . "\n";
            my $big = $line x 2048;
            my $sent = send_all($c, $big, 5);
            note("$how: sent $sent of " . length($big) . ' bytes');
            ok($sent > 2048, "$how: more than 2 lines' worth of max_line sent");
            shutdown($c, 1);
            my $got = read_until_eof($c, 5);
            ok(got_eof($c), "$how: the client is dropped");
            is($got, '', "$how: nothing was sent to it");
            ok($srv->wait_event(qr/^remove $p$/, 5), "$how: remove called");
            Time::HiRes::sleep(0.1);
            my ($r) = $srv->grep_events(qr/^$how $p /);
            is($r, "$how $p n=0 errno=$EMSGSIZE", "$how: returns an empty list with \$! == EMSGSIZE");
            is($srv->count(qr/^data $p$/), 1, "$how: data called once");
            my @err = $srv->grep_events(qr/^error $p /);
            is(scalar @err, 1, "$how: error called once");
            like($err[0] // '', qr/max_line/, "$how: the error names max_line");
            is($srv->count(qr/^remove $p$/), 1, "$how: remove called once");
            my @ev = $srv->events;
            my ($ei) = grep { $ev[$_] =~ /^error $p / } 0 .. $#ev;
            my ($ri) = grep { $ev[$_] eq "remove $p" } 0 .. $#ev;
            ok(defined $ei && defined $ri && $ei < $ri, "$how: error comes before remove");
            close $c;
        }
        my $o = client($srv);
        print $o "gone\n";
        shutdown($o, 1);
        is(read_line($o, 3), "1: gone\n", 'the server serves other clients on');
        ok($srv->alive, 'the server is alive');
        is($srv->stop, 15, 'SIGTERM still ends the server');
    };

    # ------------------------------------------------------------ 2
    isd_subtest "2: ungetc of a character on a :utf8 peer, backend $be" => sub {
        my $srv = start_server(
            backend  => $be,
            timeout  => 1,
            callback => { data => sub {
                my ($io) = @_;
                $io->binmode(':utf8');
                my $first = $io->getline;                 # the line data got
                my $r1 = $io->ungetc(0x263a);
                my $c1 = $io->getc;
                my $r2 = $io->ungetc(0x263a);
                my $next = $io->getline;                  # "\x{263a}" . "second\n"
                my $r3 = $io->ungetc(0xe9);
                my $c3 = $io->getc;
                log_event('first %s', ords($first));
                log_event('ungetc %s getc %s', $r1 // 'undef', ords($c1));
                log_event('ungetc %s getline %s', $r2 // 'undef', ords($next));
                log_event('ungetc %s getc %s', $r3 // 'undef', ords($c3));
                $io->print('c1=', $c1 // '', "\n", 'next=', $next // "\n", 'c3=', $c3 // '', "\n");
                1;
            } },
        );
        my $c = client($srv);
        is(send_all($c, "first\nsecond\n", 3), 13, 'sent "first\nsecond\n" in one write');
        is(read_line($c, 3), "c1=\xe2\x98\xba\n", 'the client gets the character back from getc (UTF-8)');
        is(read_line($c, 3), "next=\xe2\x98\xbasecond\n", '... and from getline, followed by the rest');
        is(read_line($c, 3), "c3=\xc3\xa9\n", '... and U+00E9 from getc');
        ok($srv->wait_event(qr/^ungetc \S+ getc \S+ *$/, 3, 2), 'the server logged its reads');
        my @ev = $srv->events;
        is($ev[0], 'first 66,69,72,73,74,a', 'getline in data returns the line');
        is($ev[1], 'ungetc 9786 getc 263a', 'ungetc(0x263a) returns 0x263a; getc returns one character, U+263A');
        is($ev[2], 'ungetc 9786 getline 263a,73,65,63,6f,6e,64,a',
           'getline returns U+263A followed by the rest of the input');
        is($ev[3], 'ungetc 233 getc e9', 'ungetc(0xe9) then getc returns U+00E9');
        close $c;
        is($srv->stop, 15, 'SIGTERM still ends the server');
    };

    # ------------------------------------------------------------ 3
    isd_subtest "3: flush in a forked child writes all of it to a slow reader, backend $be" => sub {
        my $srv = start_server(
            backend    => $be,
            timeout    => 1,
            child_init => sub { $SIG{CHLD} = 'IGNORE' },
            child_run  => $fork_run,
            callback   => { data => sub {
                my ($io, $d, $l) = @_;
                if ($l eq "big\n") {
                    my $pid = fork;
                    if (defined $pid && $pid == 0) {
                        alarm 10;                            # not inherited
                        my $t0 = now();
                        my $okp = $io->print($PAY4);
                        my $okf = $io->flush;
                        my $e = $! + 0;
                        log_event('child print %s flush %s after %.2fs',
                                  $okp ? 1 : 0, $okf ? 1 : "0 errno $e", now() - $t0);
                        $d->destroy;
                        log_event('child destroyed');
                        return 1;
                    }
                    log_event('forked %s', $pid // "failed $!");
                    return 1;
                }
                $io->print("R:$l");
                1;
            } },
        );
        my $c = small_client($srv);               # the 4 MiB cannot all sit in the kernel
        print $c "big\n";
        ok($srv->wait_event(qr/^forked \d+$/, 3), 'the server forked a child');
        my ($gpid) = map { /(\d+)$/ } $srv->grep_events(qr/^forked \d+$/);
        my $t0 = now();
        # the parent serves another client while the child's flush waits
        my $o = client($srv);
        ok(echo_ping_r($o, 'other'), 'the parent serves another client meanwhile');
        my $w = 0.5 - (now() - $t0);
        Time::HiRes::sleep($w) if $w > 0;
        is($srv->count(qr/^child print /), 0, "the child's flush has not returned before the client reads");
        my $got = read_n($c, length $PAY4, 10);
        same_data($got, $PAY4, 'the client receives the 4 MiB the child printed');
        ok($srv->wait_event(qr/^child destroyed$/, 5), 'the child destroyed its copy');
        my ($fl) = $srv->grep_events(qr/^child print /);
        like($fl // '', qr/^child print 1 flush 1 after /, "the child's print and flush returned true");
        ok(gone($gpid), 'the child exited') if $gpid;
        is(read_for($c, 0.3), '', 'nothing more arrives');
        print $c "next\n";
        is(read_line($c, 3), "R:next\n", "the parent serves the client's next line");
        ok(echo_ping_r($o, 'again'), 'and the other client');
        close $o;
        close $c;
        ok($srv->alive, 'the server is alive');
        is($srv->stop, 15, 'SIGTERM still ends the server');
    };

    # ------------------------------------------------------------ 4
    # a server for 4 and 4b: "big" queues 8 MiB, "fork" forks a child that
    # prints "child hello\n", flushes, destroys its copy and exits
    my $server4 = sub {
        start_server(
            backend    => $be,
            timeout    => 1,
            high_water => 64 * 1048576,   # 4b: the next line with 8 MiB queued
            child_init => sub { $SIG{CHLD} = 'IGNORE' },
            child_run  => $fork_run,
            callback   => { data => sub {
                my ($io, $d, $l) = @_;
                if ($l eq "big\n") {
                    log_event('queued %s', $io->print($PAY8) ? 1 : "0 $!");
                    return 1;
                }
                if ($l eq "fork\n") {
                    my $pid = fork;
                    if (defined $pid && $pid == 0) {
                        alarm 10;                            # not inherited
                        my $okp = $io->print("child hello\n");
                        my $okf = $io->flush;
                        log_event('child print %s flush %s', $okp ? 1 : 0, $okf ? 1 : "0 $!");
                        $d->destroy;
                        log_event('child destroyed');
                        return 1;
                    }
                    log_event('forked %s', $pid // "failed $!");
                    return 1;
                }
                $io->print("R:$l");
                1;
            } },
        );
    };

    isd_subtest "4: a child's flush for B leaves the parent's output queued for A alone, backend $be" => sub {
        my $srv = $server4->();
        my $a = small_client($srv);
        print $a "big\n";
        ok($srv->wait_event(qr/^queued /, 3), 'the parent queued 8 MiB for A');
        is(($srv->grep_events(qr/^queued /))[0], 'queued 1', 'print of 8 MiB returned true');
        Time::HiRes::sleep(0.2);                # the parent writes what A's socket takes

        my $b = client($srv);
        print $b "fork\n";
        is(read_line($b, 3), "child hello\n", "B gets the child's line");
        ok($srv->wait_event(qr/^child destroyed$/, 3), 'the child flushed and destroyed its copy');
        is(($srv->grep_events(qr/^child print /))[0], 'child print 1 flush 1', "the child's print and flush returned true");
        ok($srv->wait_event(qr/^forked \d+$/, 3), 'the parent logged the fork');
        my ($gpid) = map { /(\d+)$/ } $srv->grep_events(qr/^forked \d+$/);
        ok($gpid && gone($gpid), 'the child exited');
        Time::HiRes::sleep(0.2);                # the parent loops on

        my $got = read_n($a, length $PAY8, 5);
        same_data($got, $PAY8, 'A then receives all 8 MiB from the parent');
        is(read_for($a, 0.2), '', 'nothing more for A');
        is(read_for($b, 0.1), '', 'nothing more for B');
        print $b "next\n";
        is(read_line($b, 3), "R:next\n", 'the parent serves B on');
        print $a "next\n";
        is(read_line($a, 3), "R:next\n", 'the parent serves A on');
        close $a;
        close $b;
        ok($srv->alive, 'the server is alive');
        is($srv->stop, 15, 'SIGTERM still ends the server');
    };

    # the same with one client: the interest the child would change is the
    # very one the parent needs for its 8 MiB
    isd_subtest "4b: a child's flush leaves the parent's output queued for the same client alone, backend $be" => sub {
        my $srv = $server4->();
        my $a = small_client($srv);
        print $a "big\n";
        ok($srv->wait_event(qr/^queued /, 3), 'the parent queued 8 MiB');
        is(($srv->grep_events(qr/^queued /))[0], 'queued 1', 'print of 8 MiB returned true');
        Time::HiRes::sleep(0.2);
        print $a "fork\n";
        ok($srv->wait_event(qr/^forked \d+$/, 3), 'the parent forked a child for the next line');
        my ($gpid) = map { /(\d+)$/ } $srv->grep_events(qr/^forked \d+$/);
        Time::HiRes::sleep(0.3);                # the child waits in flush: nobody reads
        my $hello = "child hello\n";
        my $got = read_n($a, length($PAY8) + length($hello), 8);
        ok($srv->wait_event(qr/^child destroyed$/, 3), 'the child flushed and destroyed its copy');
        is(($srv->grep_events(qr/^child print /))[0], 'child print 1 flush 1', "the child's print and flush returned true");
        ok($gpid && gone($gpid), 'the child exited');
        my $i = index($got, $hello);
        ok($i >= 0, "the child's line arrives");
        substr($got, $i, length $hello, '') if $i >= 0;
        same_data($got, $PAY8, 'and around it all 8 MiB from the parent, once');
        is(read_for($a, 0.2), '', 'nothing more');
        print $a "next\n";
        is(read_line($a, 3), "R:next\n", 'the parent serves the client on');
        close $a;
        ok($srv->alive, 'the server is alive');
        is($srv->stop, 15, 'SIGTERM still ends the server');
    };
}

# "R:$msg\n" back from the servers of 3 and 4 (which answer "R:" . line)
sub echo_ping_r {
    my ($s, $msg) = @_;
    print $s "$msg\n";
    my $r = read_line($s, 3);
    return defined $r && $r eq "R:$msg\n";
}

done_testing;
