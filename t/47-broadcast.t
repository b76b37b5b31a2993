#!perl
# $server->broadcast($bytes, @except): the same bytes queued for every open
# connection but the $io objects listed, the count of those that got them
# returned; stored once in the core and shared by the queues (128 bytes and
# more).  Every client's bytes are checked exactly, in order with what else
# is printed to it: from a data callback, a timer and outside run; small
# (copied) and large (shared: 1 KiB, 200 KB, 1 MiB) payloads, bytes and
# ASCII; @except (several, undef, a closed $io, the sender); interleaved
# with print; character strings to :utf8 and raw peers (what print would
# send each, the "Wide character in broadcast" warning); write-shut and
# removed connections left out; high_water holds a receiver's input;
# max_output drops a receiver, which is not counted; 2,000 connections
# cost the server far less than 2,000 copies (VmRSS measured around the
# call), then all receive it; a non-peer in @except croaks.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib", "$FindBin::Bin/../xt/lib";
use TestISD qw(:DEFAULT ask);
use ISDStress qw(raise_nofile);
use Test::More;
use IO::Socket::INET ();
use IO::Socket::INET::Daemon ();
use Socket qw(SOL_SOCKET SO_RCVBUF inet_aton pack_sockaddr_in);
use POSIX ();
use File::Temp ();
use Time::HiRes ();
use IO::Select ();

my $KiB  = 1024;
my $MiB  = 1048576;
my $HOLD = 0.4;     # how long "nothing happens" is watched
my $M    = 'IO::Socket::INET::Daemon::broadcast';

# Deterministic payloads: every byte value, numbered; $ascii keeps them
# below 0x80 (the XS's one-pass path), else they go the two-pass way.
my $PAT = join '', map { chr(($_ * 7 + ($_ >> 8)) & 255) } 0 .. 65535;
$PAT x= 66;     # > 4 MiB + 64 KiB
sub payload {
    my ($len, $seed, $ascii) = @_;
    my $s = substr(sprintf('<%06d>', $seed) . substr($PAT, ($seed * 61) % 65536, $len), 0, $len);
    die "payload: $len bytes asked, " . length($s) . " made\n" unless length $s == $len;
    $s =~ tr/\x80-\xff/\x00-\x7f/ if $ascii;
    return $s;
}

# Character strings, and the bytes print sends for them to a raw and to a
# :utf8 peer.
my $WL = ("\x{263a}\x{e9}x" x 60) . "\n";       # 181 characters, 361 bytes
my %STR = (
    ascii    => "plain ascii\n",
    latin    => "caf\xe9 \xff\n",               # bytes, high ones
    upg      => do { my $s = "caf\xe9 \xff\n"; utf8::upgrade($s); $s },
    wide     => "\x{263a} smile, caf\x{e9}\n",
    widelong => $WL,
    latinlong => ("caf\xe9 " x 40) . "\n",      # 201 bytes: the shared path
);
my %RAW = (
    ascii    => "plain ascii\n",
    latin    => "caf\xe9 \xff\n",
    upg      => "caf\xe9 \xff\n",
    wide     => "\xe2\x98\xba smile, caf\xc3\xa9\n",
    widelong => ("\xe2\x98\xba\xc3\xa9x" x 60) . "\n",
    latinlong => ("caf\xe9 " x 40) . "\n",
);
my %U8 = (
    ascii    => "plain ascii\n",
    latin    => "caf\xc3\xa9 \xc3\xbf\n",
    upg      => "caf\xc3\xa9 \xc3\xbf\n",
    wide     => "\xe2\x98\xba smile, caf\xc3\xa9\n",
    widelong => ("\xe2\x98\xba\xc3\xa9x" x 60) . "\n",
    latinlong => ("caf\xc3\xa9 " x 40) . "\n",
);

# --------------------------------------------------------------- the server

# Runs in the server child.  %IO keeps every $io by peer port, also after
# it closed.
my (%IO, $OUT);

sub rss_self {
    open my $fh, '<', '/proc/self/status' or return undef;
    while (<$fh>) { return $1 if /^VmRSS:\s+(\d+)\s+kB/ }
    return undef;
}

sub except_list {
    my ($io, @w) = @_;
    return map {
          $_ eq 'undef' ? undef
        : $_ eq 'self'  ? $io
        : ($IO{$_} || die "no peer $_\n")
    } @w;
}

sub data {
    my ($io, $d, $line) = @_;
    my $p = $io->peerport;
    (my $cmd = $line) =~ s/\n\z//;
    my @a = split ' ', $cmd;
    log_event('data %s %s', $p, $cmd) unless $a[0] =~ /^(?:count|pend)$/;
    if ($a[0] eq 'bc') {                    # bc LEN SEED a|b [EXCEPT...]
        my $bytes = payload($a[1], $a[2], $a[3] eq 'a');
        $io->print("pre\n");
        my $n = $d->broadcast($bytes, except_list($io, @a[4 .. $#a]));
        $io->print("bc $a[2] n=$n\n");
    }
    elsif ($a[0] eq 'empty') {
        my $n = $d->broadcast('');
        $io->print('empty n=', (defined $n ? $n : 'undef'), "\n");
    }
    elsif ($a[0] eq 'mix') {                # mix PORT SEED: print and broadcast in turn
        my $t = $IO{ $a[1] };
        my @n;
        $t->print("p1\n");
        push @n, $d->broadcast(payload(200, $a[2]), $io);
        $t->print("p2\n");
        push @n, $d->broadcast(payload(100, $a[2] + 1), $io);
        $t->print("p3\n");
        push @n, $d->broadcast(payload(65536, $a[2] + 2), $io);
        $t->print("p4\n");
        $io->print('mix n=', join(',', @n), "\n");
    }
    elsif ($a[0] eq 'timer') {              # timer DELAY LEN SEED
        my ($len, $seed) = @a[2, 3];
        $d->timer(after => $a[1], cb => sub {
            my ($dd) = @_;
            my $n = $dd->broadcast(payload($len, $seed));
            log_event('timer %d n=%d', $seed, $n);
            $io->print("after timer\n");
        });
        $io->print("armed\n");
    }
    elsif ($a[0] eq 'out') {                # out LEN SEED a|b: after run returns
        $OUT = [ @a[1 .. 3] ];
        $d->stop;
        $io->print("stopping\n");
    }
    elsif ($a[0] eq 'utf8') {
        $io->binmode(':utf8');
        $io->print("utf8\n");
    }
    elsif ($a[0] eq 'pc') {                 # pc WHICH: print it to me
        no warnings 'utf8';
        $io->print($STR{ $a[1] });
    }
    elsif ($a[0] eq 'bcc') {                # bcc WHICH [quiet] [EXCEPT...]
        my $quiet = ($a[2] || '') eq 'quiet';
        my @ex = except_list($io, @a[($quiet ? 3 : 2) .. $#a]);
        my $n;
        if ($quiet) {
            no warnings 'utf8';
            $n = $d->broadcast($STR{ $a[1] }, @ex);
        }
        else {
            $n = $d->broadcast($STR{ $a[1] }, @ex);
        }
        $io->print("bcc n=$n\n");
    }
    elsif ($a[0] eq 'shut') {
        $IO{ $a[1] }->shutdown(1);
        $io->print("shut\n");
    }
    elsif ($a[0] eq 'rm') {
        $d->remove($IO{ $a[1] });
        $io->print("rm\n");
    }
    elsif ($a[0] eq 'pend') {
        $io->print('pend ', $IO{ $a[1] }->pending, "\n");
    }
    elsif ($a[0] eq 'count') {
        $io->print('count ', scalar(my @c = $d->connections), "\n");
    }
    elsif ($a[0] eq 'bcmax') {              # bcmax PORT LEN SEED: to all but me
        my $before = $IO{ $a[1] }->pending;
        my $n = $d->broadcast(payload($a[2], $a[3]), $io);
        log_event('bcmax %d before=%d n=%d', $a[3], $before, $n);
        $io->print("bcmax $a[3] before=$before n=$n\n");
    }
    elsif ($a[0] eq 'bad') {                # bad KIND: a non-peer in @except
        my $other = (grep { $_ != $io } $d->connections)[0];
        my %bad = (
            str    => 'nope',
            num    => 42,
            href   => {},
            aref   => [],
            glob   => \*STDOUT,
            sock   => IO::Socket::INET->new(Proto => 'tcp'),
            daemon => $d,
        );
        my $n = eval { $d->broadcast(payload(300, 91), $other, $bad{ $a[1] }) };
        my $err = $@;
        $err =~ s/\n/ /g;
        $io->print("bad $a[1] died=", ($n // 'undef') eq 'undef' ? 1 : 0, " msg=$err\n");
    }
    elsif ($a[0] eq 'mem' || $a[0] eq 'memprint') {     # mem LEN SEED
        my $bytes = payload($a[1], $a[2]);
        my @conns = grep { $_ != $io } $d->connections;
        my $n = 0;
        rss_self();                          # (its buffers, once)
        my $r0 = rss_self();
        if ($a[0] eq 'mem') {
            $n = $d->broadcast($bytes, $io);
        }
        else {                               # the same, copied: the yardstick
            for my $c (@conns) { $n++ if $c->print($bytes) }
        }
        my $r1 = rss_self();
        my $pend = 0;
        $pend += $_->pending for @conns;
        $io->print("$a[0] n=$n grew=", $r1 - $r0, " pending=$pend\n");
    }
    else {
        $io->print("got $cmd\n");
    }
    return 1;
}

my %cb = (
    add    => sub { my $p = $_[0]->peerport; $IO{$p} = $_[0]; log_event('add %s', $p); 1 },
    remove => sub { log_event('remove %s', $_[0]->peerport) },
    error  => sub { log_event('error %s %s', defined $_[0] ? $_[0]->peerport : 'undef', $_[2]) },
    drain  => sub { log_event('drain %s', $_[0]->peerport) },
    data   => \&data,
);

sub server {
    my ($be, %o) = @_;
    return start_server(backend => $be, callback => {%cb}, %o);
}

# ----------------------------------------------------------- test helpers

# $got eq $want, without dumping megabytes when not
sub bytes_is {
    my ($got, $want, $name) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    return pass($name) if defined $got && $got eq $want;
    fail($name);
    $got = '' unless defined $got;
    my $i = 0;
    my $max = length $got < length $want ? length $got : length $want;
    $i++ while $i < $max && substr($got, $i, 1) eq substr($want, $i, 1);
    diag(sprintf('got %d bytes, want %d; first difference at offset %d: got %s, want %s',
                 length $got, length $want, $i,
                 map { my $s = substr($_, $i, 16); $s =~ s/([^\x20-\x7e])/sprintf('\\x%02x', ord $1)/ge; "\"$s\"" }
                 $got, $want));
    return 0;
}

# n clients, all added on the server side
sub clients {
    my ($srv, $n) = @_;
    my $have = $srv->count(qr/^add /);
    my @c = map { client($srv) } 1 .. $n;
    $srv->wait_event(qr/^add /, 3, $have + $n) or die "the server did not add $n clients\n";
    return @c;
}

sub no_errors {
    my ($srv) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    my @e = $srv->grep_events(qr/^error /);
    is(scalar @e, 0, 'no error callback') or diag(join "\n", @e);
}

sub warn_count { my ($srv, $re) = @_; scalar(() = $srv->stderr =~ /$re/g) }

# a client with a small receive buffer (set before connect)
sub small_client {
    my ($srv) = @_;
    my $s = IO::Socket::INET->new(Proto => 'tcp') or die "socket: $!\n";
    setsockopt($s, SOL_SOCKET, SO_RCVBUF, pack('i', 8192)) or die "SO_RCVBUF: $!\n";
    $s->connect(pack_sockaddr_in($srv->port, inet_aton('127.0.0.1'))) or die "connect: $!\n";
    return $s;
}

# The memory test's server is a fresh perl (exec'd, not forked): a child
# forked from this process would inherit its heap, whose free parts (what
# the earlier tests allocated and freed) new allocations reuse without
# growing the RSS, so that even copies would not show.
sub mem_payload { my ($len, $seed) = @_; join '', map { chr(($_ * 7 + $seed) & 255) } 0 .. $len - 1 }

my $MEM_SERVER = <<'EOS';
use strict;
use warnings;
use IO::Socket::INET::Daemon;
alarm 25;
$SIG{PIPE} = 'IGNORE';
my $be = shift;
sub mem_payload { my ($len, $seed) = @_; join '', map { chr(($_ * 7 + $seed) & 255) } 0 .. $len - 1 }
sub rss_self {
    open my $fh, '<', '/proc/self/status' or return -1;
    while (<$fh>) { return $1 if /^VmRSS:\s+(\d+)\s+kB/ }
    return -1;
}
my $d = IO::Socket::INET::Daemon->new(
    port => 0, host => '127.0.0.1', backend => $be, backlog => 4096,
    callback => {
        error => sub { print STDERR "error: $_[2]\n" },
        data  => sub {
            my ($io, $d, $line) = @_;
            my ($cmd, $len, $seed) = split ' ', $line;
            if ($cmd eq 'count') {
                $io->print('count ', scalar(my @c = $d->connections), "\n");
            }
            elsif ($cmd eq 'mem' || $cmd eq 'memprint') {
                my $bytes = mem_payload($len, $seed);
                my @conns = grep { $_ != $io } $d->connections;
                my $n = 0;
                rss_self();                     # (its buffers, once)
                my $r0 = rss_self();
                if ($cmd eq 'mem') {
                    $n = $d->broadcast($bytes, $io);
                }
                else {
                    for my $c (@conns) { $n++ if $c->print($bytes) }
                }
                my $r1 = rss_self();
                my $pend = 0;
                $pend += $_->pending for @conns;
                $io->print("$cmd n=$n grew=", $r1 - $r0, " pending=$pend\n");
            }
            else {
                chomp $line;
                $io->print("got $line\n");
            }
            return 1;
        },
    },
);
$d->listen or die "listen: $!\n";
$| = 1;
print 'PORT ', $d->sockport, "\n";
$SIG{TERM} = sub { $d->stop };
$d->run;
EOS

sub mem_server {
    my ($be) = @_;
    my $err = File::Temp->new(TEMPLATE => 'isd47-XXXXXX', TMPDIR => 1);
    my $pid = open my $out, '-|';
    die "fork: $!\n" unless defined $pid;
    if (!$pid) {
        open STDERR, '>', $err->filename or POSIX::_exit(126);
        no warnings 'exec';
        exec $^X, (map { "-I$_" } grep { !ref } @INC), '-e', $MEM_SERVER, $be;
        POSIX::_exit(127);
    }
    my $line;
    if (IO::Select->new($out)->can_read(10)) { $line = <$out> }
    if (!defined $line || $line !~ /^PORT (\d+)$/) {
        kill 'KILL', $pid;
        waitpid $pid, 0;
        seek $err, 0, 0;
        die "the memory test's server did not start: " . join('', <$err>) . "\n";
    }
    return { pid => $pid, port => $1, out => $out, err => $err };
}

sub mem_server_stop {
    my ($srv) = @_;
    kill 'TERM', $srv->{pid};
    wait_until(sub { waitpid($srv->{pid}, POSIX::WNOHANG()) == $srv->{pid} }, 5)
        or do { kill 'KILL', $srv->{pid}; waitpid $srv->{pid}, 0 };
    open my $fh, '<', $srv->{err}->filename or return '?';
    local $/;
    my $e = <$fh>;
    return defined $e ? $e : '';
}

# The memory test proper (its server: mem_server).
sub mem_test {
    my ($srv, $N) = @_;
    my $ctl = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $srv->{port}, Proto => 'tcp')
        or die "cannot connect: $!\n";
    my @c;
    for (1 .. $N) {
        # blocking connect: select() cannot watch descriptors past 1023
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $srv->{port}, Proto => 'tcp');
        last unless $s;
        push @c, $s;
    }
    is(scalar(@c), $N, "$N clients connected") or return;
    my $count = '';
    wait_until(sub { $count = ask($ctl, 'count') // ''; $count eq 'count ' . ($N + 1) }, 10, 0.1);
    is($count, 'count ' . ($N + 1), 'the server has them all');
    $_->blocking(0) for @c;

    # how many of the clients got exactly $want (and nothing else so far)
    my $got_all = sub {
        my ($want) = @_;
        my %buf;
        wait_until(sub {
            for my $i (0 .. $#c) {
                next if defined $buf{$i} && length $buf{$i} >= length $want;
                my $n = sysread($c[$i], my $chunk, 65536);
                $buf{$i} .= $chunk if $n;
            }
            $N == grep { defined $buf{$_} && length $buf{$_} >= length $want } 0 .. $#c;
        }, 10, 0.02);
        return scalar grep { defined $buf{$_} && $buf{$_} eq $want } 0 .. $#c;
    };

    my $r = ask($ctl, 'mem 1024 71', 10) // '';
    my ($n, $grew, $pend) = $r =~ /^mem n=(\d+) grew=(-?\d+) pending=(\d+)$/;
    ok(defined $n, "reply: $r");
    is($n, $N, "broadcast returned $N");
    is($pend, $N * 1024, 'right after it, all of it was still queued ('
                         . ($pend // '?') . ' bytes in the queues)');
    # (under ASan the figures are still far apart: ~170 kB against
    # ~5,600 kB; valgrind's allocator is another matter)
    my $vg = $ENV{ISD_VALGRIND};
    if ($vg) {
        pass("RSS not compared under valgrind (grew " . ($grew // '?') . ' kB)');
    }
    else {
        ok(defined $grew && $grew < 1024,
           "the server's RSS grew " . ($grew // '?') . " kB (< 1024 kB; $N copies take 2000 kB and more)");
    }
    is($got_all->(mem_payload(1024, 71)), $N, "all $N clients got the 1 KiB, exact");

    # the yardstick: the same bytes printed to each, measured the same way
    $r = ask($ctl, 'memprint 1024 72', 10) // '';
    my ($n2, $grew2, $pend2) = $r =~ /^memprint n=(\d+) grew=(-?\d+) pending=(\d+)$/;
    is($n2, $N, "the yardstick: the same printed to each of the $N");
    is($pend2, $N * 1024, '... all of it still queued when measured');
    if ($vg) {
        pass("RSS not compared under valgrind (grew " . ($grew2 // '?') . ' kB)');
    }
    else {
        ok(defined $grew2 && $grew2 >= 2000,
           'the yardstick: copies do show in the RSS measured the same way (' . ($grew2 // '?') . ' kB)');
    }
    is($got_all->(mem_payload(1024, 72)), $N, "all $N clients got that too");
    is(ask($ctl, 'still'), 'got still', 'the server serves on');
    close $_ for @c;
    close $ctl;
}

# --------------------------------------------------------------- the tests

{
    # no server needed: argument checks, and nobody to send to
    my $d = IO::Socket::INET::Daemon->new(port => 0, host => '127.0.0.1');
    is($d->broadcast("hello\n"), 0, 'broadcast before listen: 0');
    ok($d->listen, 'listen');
    is($d->broadcast('x' x 300), 0, 'no connection: 0');
    for my $bad ('nope', 42, {}, \*STDOUT, $d) {
        my $ok = eval { $d->broadcast('x' x 300, $bad); 1 };
        ok(!$ok, 'a non-peer in @except croaks (' . (ref $bad || $bad) . ')');
        like($@, qr/^\Q$M\E: .*not a connection/, '... naming the method');
    }
    ok(!eval { IO::Socket::INET::Daemon::broadcast(bless({}, 'Foo'), 'x'); 1 },
       'called on something else than a daemon: croaks');
    like($@, qr/broadcast/, '... naming the method');
    $d->destroy;
    is($d->broadcast('x' x 300), 0, 'after destroy: 0');
}

for my $be (backends()) {
    isd_subtest "count and exact bytes, small and large payloads, from a data callback, backend $be" => sub {
        my $srv = server($be);
        my ($a, $b, $c) = clients($srv, 3);
        for my $case ([1, 1, 'b'], [12, 2, 'a'], [127, 3, 'b'], [128, 4, 'b'], [129, 5, 'a'],
                      [1024, 6, 'b'], [1024, 7, 'a'], [200_000, 8, 'b'], [$MiB, 9, 'b'],
                      [$MiB, 10, 'a']) {
            my ($len, $seed, $mode) = @$case;
            my $want = payload($len, $seed, $mode eq 'a');
            my $what = "$len bytes" . ($mode eq 'a' ? ' (ASCII)' : '');
            print $c "bc $len $seed $mode\n";
            bytes_is(read_n($a, $len, 5), $want, "A got the $what");
            bytes_is(read_n($b, $len, 5), $want, "B got the $what");
            bytes_is(read_n($c, $len + 4, 5), "pre\n$want", "C, the sender, got them after what it printed before");
            is(read_line($c, 3), "bc $seed n=3\n", "... and then the reply: 3 connections got the $what");
        }
        is(read_for($a, 0.2) . read_for($b, 0.05), '', 'A and B got nothing more');

        is(ask($c, 'empty'), 'empty n=0', 'an empty string: nobody got anything (0)');
        is(read_for($a, 0.2) . read_for($b, 0.05), '', '... nothing sent');
        is(ask($a, 'still'), 'got still', 'A is served on');
        no_errors($srv);
        close $_ for $a, $b, $c;
    };

    isd_subtest "\@except: several, undef, a closed one, the sender, backend $be" => sub {
        my $srv = server($be);
        my ($a, $b, $c, $d, $e) = clients($srv, 5);
        my ($pa, $pb, $pd) = map { $_->sockport } $a, $b, $d;
        my %want = map { $_ => '' } qw(a b c d);
        my %s = (a => $a, b => $b, c => $c, d => $d);

        print $e "bc 300 11 b $pa $pb\n";
        my $p11 = payload(300, 11);
        bytes_is(read_n($e, 304, 3), "pre\n$p11", 'E (the sender) got it');
        is(read_line($e, 3), "bc 11 n=3\n", 'A and B left out: 3 got it');
        $want{$_} .= $p11 for qw(c d);

        print $e "bc 300 12 b undef self undef\n";
        my $p12 = payload(300, 12);
        is(read_line($e, 3), "pre\n", 'E left itself out');
        is(read_line($e, 3), "bc 12 n=4\n", 'undef ignored: the 4 others got it');
        $want{$_} .= $p12 for qw(a b c d);

        close $d;
        ok($srv->wait_event(qr/^remove $pd$/, 3), 'D closed');
        print $e "bc 300 13 b $pd $pa $pa self\n";
        my $p13 = payload(300, 13);
        is(read_line($e, 3), "pre\n", 'E left out');
        is(read_line($e, 3), "bc 13 n=2\n", 'a closed $io and one listed twice in @except are harmless: B and C got it');
        $want{$_} .= $p13 for qw(b c);

        print $e "bc 200 14 a $pb\n";       # the one-pass (ASCII) way
        my $p14 = payload(200, 14, 1);
        bytes_is(read_n($e, 204, 3), "pre\n$p14", 'E got the ASCII one');
        is(read_line($e, 3), "bc 14 n=3\n", 'B left out of an ASCII one: A, C, E got it');
        $want{$_} .= $p14 for qw(a c);
        print $e "bc 20 15 b $pa $pb\n";    # and a small (copied) one
        my $p15 = payload(20, 15);
        bytes_is(read_n($e, 24, 3), "pre\n$p15", 'E got the small one');
        is(read_line($e, 3), "bc 15 n=2\n", 'A and B left out of a small one: C, E got it');
        $want{c} .= $p15;

        for my $k (qw(a b c)) {
            bytes_is(read_for($s{$k}, $HOLD), $want{$k}, uc($k) . ' got exactly the broadcasts it was not left out of');
        }
        no_errors($srv);
        close $_ for $a, $b, $c, $e;
    };

    isd_subtest "interleaved with print to the same client: order kept, backend $be" => sub {
        my $srv = server($be);
        my ($a, $b, $c) = clients($srv, 3);
        my $pa = $a->sockport;
        my ($x, $y, $z) = (payload(200, 21), payload(100, 22), payload(65536, 23));
        print $c "mix $pa 21\n";
        bytes_is(read_n($a, 200 + 100 + 65536 + 12, 5), "p1\n${x}p2\n${y}p3\n${z}p4\n",
                 'A: each print and broadcast in the order made (shared, copied, shared)');
        bytes_is(read_n($b, 200 + 100 + 65536, 5), "$x$y$z", 'B: the three broadcasts, in order');
        is(read_line($c, 3), "mix n=2,2,2\n", 'each counted 2');
        is(read_for($a, 0.2) . read_for($b, 0.05) . read_for($c, 0.05), '', 'nothing more');
        no_errors($srv);
        close $_ for $a, $b, $c;
    };

    isd_subtest "from a timer, backend $be" => sub {
        my $srv = server($be);
        my ($a, $b) = clients($srv, 2);
        is(ask($a, 'timer 0.05 200000 31'), 'armed', 'a timer will broadcast 200,000 bytes');
        my $want = payload(200_000, 31);
        bytes_is(read_n($a, 200_000, 5), $want, 'A got them');
        is(read_line($a, 3), "after timer\n", '... then what the timer printed after');
        bytes_is(read_n($b, 200_000, 5), $want, 'B got them');
        ok($srv->wait_event(qr/^timer 31 /, 3), 'the timer ran');
        is(($srv->grep_events(qr/^timer 31 /))[0], 'timer 31 n=2', 'broadcast returned 2 there');
        is(ask($a, 'timer 0 50 32'), 'armed', 'a timer will broadcast 50 bytes');
        bytes_is(read_n($a, 50, 3), payload(50, 32), 'A got them');
        bytes_is(read_n($b, 50, 3), payload(50, 32), 'B got them');
        ok($srv->wait_event(qr/^timer 32 n=2$/, 3), 'and 2 counted');
        no_errors($srv);
        close $_ for $a, $b;
    };

    isd_subtest "from outside run, backend $be" => sub {
        my $srv = server($be, child_run => sub {
            my ($d) = @_;
            while (1) {
                $d->run;
                last unless $OUT;
                my ($len, $seed, $mode) = @$OUT;
                undef $OUT;
                my $n = $d->broadcast(payload($len, $seed, $mode eq 'a'));
                log_event('outside %d n=%d', $seed, $n);
            }
        });
        my ($a, $b) = clients($srv, 2);
        for my $case ([$MiB, 41, 'b'], [100, 42, 'a'], [1024, 43, 'b']) {
            my ($len, $seed, $mode) = @$case;
            my $want = payload($len, $seed, $mode eq 'a');
            is(ask($a, "out $len $seed $mode"), 'stopping', "run will stop; then $len bytes are broadcast");
            bytes_is(read_n($a, $len, 5), $want, 'A got them');
            bytes_is(read_n($b, $len, 5), $want, 'B got them');
            ok($srv->wait_event(qr/^outside $seed /, 3), 'broadcast outside run');
            is(($srv->grep_events(qr/^outside $seed /))[0], "outside $seed n=2", '... returned 2');
            is(ask($b, 'again'), 'got again', 'run again: served on');
        }
        no_errors($srv);
        close $_ for $a, $b;
    };

    isd_subtest "characters to :utf8 and raw peers, as print sends them, backend $be" => sub {
        my $srv = server($be);
        my ($r1, $u1, $r2, $u2) = clients($srv, 4);
        my ($pr1, $pr2) = map { $_->sockport } $r1, $r2;
        is(ask($_, 'utf8'), 'utf8', ':utf8 peer') for $u1, $u2;
        my %mode = ($r1 => 'raw', $r2 => 'raw', $u1 => 'utf8', $u2 => 'utf8');
        my @all = ($r1, $u1, $r2, $u2);
        my @name = qw(R1 U1 R2 U2);
        my $wide_re = qr/Wide character in broadcast/;
        for my $which (qw(ascii latin upg wide latinlong widelong)) {
            my %printed;
            for my $i (0 .. $#all) {
                my $s = $all[$i];
                my $want = $mode{$s} eq 'raw' ? $RAW{$which} : $U8{$which};
                print $s "pc $which\n";
                $printed{$s} = read_n($s, length $want, 3);
                bytes_is($printed{$s}, $want, "$which: print to $name[$i] ($mode{$s}) sends what a Perl handle would");
            }
            my $w0 = warn_count($srv, $wide_re);
            print $r1 "bcc $which\n";
            for my $i (0 .. $#all) {
                my $s = $all[$i];
                bytes_is(read_n($s, length $printed{$s}, 3), $printed{$s},
                         "$which: broadcast to $name[$i] ($mode{$s}) sends the same bytes as print");
            }
            is(read_line($r1, 3), "bcc n=4\n", "$which: 4 got it");
            my $wide = $which =~ /^wide/ ? 1 : 0;
            is(warn_count($srv, $wide_re) - $w0, $wide,
               "$which: " . ($wide ? 'one "Wide character in broadcast" warning' : 'no warning'));
        }
        like($srv->stderr, qr/Wide character in broadcast at \S+ line \d+/, 'the warning says where');

        my $w0 = warn_count($srv, $wide_re);
        print $r1 "bcc wide quiet\n";
        is(read_n($_, length $RAW{wide}, 3), $RAW{wide}, 'no warnings "utf8": still sent') for @all;
        is(read_line($r1, 3), "bcc n=4\n", '... to 4');
        is(warn_count($srv, $wide_re) - $w0, 0, '... without a warning');

        # only :utf8 peers get it (raw ones left out): print would not warn
        $w0 = warn_count($srv, $wide_re);
        print $r1 "bcc wide self $pr2\n";
        is(read_n($_, length $U8{wide}, 3), $U8{wide}, 'wide characters to the :utf8 peers only') for $u1, $u2;
        is(read_line($r1, 3), "bcc n=2\n", '... 2 got it');
        is(warn_count($srv, $wide_re) - $w0, 0, '... no warning: no raw peer got them');

        is(read_for($_, 0.1), '', 'nothing more') for @all;
        no_errors($srv);
        close $_ for @all;
    };

    isd_subtest "write-shut and removed connections are left out, backend $be" => sub {
        my $srv = server($be);
        my ($a, $b, $c, $d) = clients($srv, 4);
        my ($pb, $pc) = map { $_->sockport } $b, $c;
        is(ask($d, "shut $pb"), 'shut', 'B shut for writing by the server');
        print $d "bc 300 51 b\n";
        my $p51 = payload(300, 51);
        bytes_is(read_n($d, 304, 3), "pre\n$p51", 'D got it');
        is(read_line($d, 3), "bc 51 n=3\n", 'B, write-shut, is left out: 3');
        bytes_is(read_n($a, 300, 3), $p51, 'A got it');
        bytes_is(read_n($c, 300, 3), $p51, 'C got it');
        is(read_until_eof($b, 3), '', 'B got nothing');
        ok(got_eof($b), '... but its end of file');
        print $b "still reading\n";
        ok($srv->wait_event(qr/^data $pb still reading$/, 3), 'B is still read from');

        is(ask($d, "rm $pc"), 'rm', 'C removed by the server');
        print $d "bc 20 52 b\n";            # small: copied
        my $p52 = payload(20, 52);
        bytes_is(read_n($d, 24, 3), "pre\n$p52", 'D got it');
        is(read_line($d, 3), "bc 52 n=2\n", 'B and C left out: 2');
        bytes_is(read_n($a, 20, 3), $p52, 'A got it');
        is(read_until_eof($c, 3), '', 'C got nothing');
        ok(got_eof($c), '... but its end of file');
        no_errors($srv);
        close $_ for $a, $b, $c, $d;
    };

    isd_subtest "high_water holds the input of a client a broadcast fills, backend $be" => sub {
        my $srv = server($be, high_water => 65536);
        my $s = small_client($srv);             # reads only later
        my $ps = $s->sockport;
        ok($srv->wait_event(qr/^add $ps$/, 3), 'S connected');
        my ($c) = clients($srv, 1);
        my $len = 4 * $MiB;
        print $c "bc $len 61 b self\n";
        is(read_line($c, 5), "pre\n", 'C left itself out');
        is(read_line($c, 5), "bc 61 n=1\n", '4 MiB broadcast to S, which does not read');
        my $pend = (ask($c, "pend $ps") // '') =~ /^pend (\d+)$/ ? $1 : -1;
        ok($pend > 65536, "S's queue is over high_water ($pend)");
        print $s "ping\n";
        Time::HiRes::sleep($HOLD);
        is($srv->count(qr/^data $ps /), 0, "S's line is held while its queue is over high_water");
        bytes_is(read_n($s, $len, 10), payload($len, 61), 'S reads: the 4 MiB, exact');
        is(read_line($s, 3), "got ping\n", 'then the reply to the held line');
        ok($srv->count(qr/^drain $ps$/) >= 1, 'drain was called for S');
        no_errors($srv);
        close $_ for $s, $c;
    };

    isd_subtest "max_output drops a receiver, not counted, backend $be" => sub {
        my $max = 512 * $KiB;
        my $len = 128 * $KiB;
        my $srv = server($be, max_output => $max);
        my $s = small_client($srv);             # never reads
        my $ps = $s->sockport;
        ok($srv->wait_event(qr/^add $ps$/, 3), 'S connected');
        my ($r, $c) = clients($srv, 2);
        my (@rounds, $drop, $rbad);
        for my $seed (101 .. 300) {
            my $ans = ask($c, "bcmax $ps $len $seed", 5);
            last unless defined $ans && $ans =~ /^bcmax $seed before=(\d+) n=(\d+)$/;
            push @rounds, [$seed, $1, $2];
            $rbad++ unless read_n($r, $len, 5) eq payload($len, $seed);
            if ($2 != 2) { $drop = $#rounds; last }
        }
        ok(defined $drop, 'S was dropped after ' . scalar(@rounds) . " rounds of $len bytes");
        $drop = $#rounds unless defined $drop;
        my @bad = grep { $_->[2] != 2 || $_->[1] + $len > $max } @rounds[0 .. $drop - 1];
        is(scalar @bad, 0, "before: every round counted 2 and S's queue stayed within max_output")
            or diag(join ', ', map { "@$_" } @bad);
        my ($seed, $before, $n) = @{ $rounds[$drop] || [0, 0, 0] };
        ok($before + $len > $max, "the round that dropped S would have put $before + $len > $max bytes in its queue");
        is($n, 1, '... and counted only R');
        ok(!$rbad, 'R got every broadcast, byte-exact');
        ok($srv->wait_event(qr/^error $ps /, 3), 'error for S');
        my @e = $srv->grep_events(qr/^error /);
        is(scalar @e, 1, 'one error') or diag(join "\n", @e);
        like($e[0] || '', qr/^error $ps .*max_output/, '... naming max_output');
        ok($srv->wait_event(qr/^remove $ps$/, 3), 'remove for S');
        is(ask($c, "bcmax $ps $len 999"), "bcmax 999 before=0 n=1", 'the next broadcast leaves S out: 1');
        bytes_is(read_n($r, $len, 5), payload($len, 999), 'R got it');
        my $all = read_until_eof($s, 10);
        ok(got_eof($s), 'S sees the close (' . length($all) . ' bytes came first)');
        my $sent = join '', map { payload($len, $_->[0]) } @rounds[0 .. $drop - 1];
        ok(length($all) <= length($sent) && $all eq substr($sent, 0, length $all),
           'what S got is a prefix of the broadcasts before the drop');
        close $_ for $s, $r, $c;
    };

    isd_subtest "a non-peer in \@except croaks, nothing sent, backend $be" => sub {
        my $srv = server($be);
        my ($a, $b) = clients($srv, 2);
        for my $kind (qw(str num href aref glob sock daemon)) {
            like(ask($b, "bad $kind"), qr/^bad $kind died=1 msg=\Q$M\E: .*not a connection/,
                 "$kind in \@except: croaks naming the method");
        }
        is(read_for($a, $HOLD), '', 'nobody got anything (also not the peer listed before it)');
        is(ask($a, 'still'), 'got still', 'served on');
        no_errors($srv);
        close $_ for $a, $b;
    };

    isd_subtest "memory: 1 KiB to 2,000 clients that do not read, backend $be" => sub {
        my $N = 2000;
        my $need = $N + 256;            # in this process, and in the server
        my $have = raise_nofile($need);
        if ($have < $need) {
            pass("skipped: RLIMIT_NOFILE is $have and cannot be raised to $need");
            return;
        }
        if (!-r '/proc/self/status') {
            pass('skipped: needs /proc/PID/status (VmRSS)');
            return;
        }
        my $srv = mem_server($be);
        my $ok = eval { mem_test($srv, $N); 1 };
        my $died = $@;
        my $err = mem_server_stop($srv);      # on every path: a pipe's close waits for it
        die $died unless $ok;
        is($err, '', 'no error or warning from the server');
    };
}

done_testing;
