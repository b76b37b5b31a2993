#!perl
# Every $io method of the spec, called inside callbacks; results come back
# through the event log and are checked against the client's view.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use TestISD;
use Test::More;
use Socket qw(SOL_SOCKET SO_KEEPALIVE SO_TYPE SOCK_STREAM inet_aton inet_ntoa
              unpack_sockaddr_in);
use Scalar::Util qw(refaddr);

no warnings 'once';

sub r { log_event('%s=%s', @_) }    # result

my %fileno;

sub add {
    my ($io, $d) = @_;
    r('add.ref', ref $io);
    r('add.isa_inet', $io->isa('IO::Socket::INET') ? 1 : 0);
    r('add.isa_peer', $io->isa('IO::Socket::INET::Daemon::Peer') ? 1 : 0);
    r('add.isa_handle', $io->isa('IO::Handle') ? 1 : 0);
    r('add.peerhost', $io->peerhost);
    r('add.peerport', $io->peerport);
    r('add.peeraddr', inet_ntoa($io->peeraddr));
    my ($pp, $pa) = unpack_sockaddr_in($io->peername);
    r('add.peername', inet_ntoa($pa) . ":$pp");
    r('add.sockhost', $io->sockhost);
    r('add.sockport', $io->sockport);
    r('add.sockaddr', inet_ntoa($io->sockaddr));
    my ($sp, $sa) = unpack_sockaddr_in($io->sockname);
    r('add.sockname', inet_ntoa($sa) . ":$sp");
    my $fd = $io->fileno;
    $fileno{$io} = $fd;
    r('add.fileno', $fd);
    r('add.connected', $io->connected ? 1 : 0);
    r('add.opened', $io->opened ? 1 : 0);
    r('add.autoflush', eval { $io->autoflush(1); 1 } ? 'ok' : "died $@");
    r('add.blocking', eval { my $b = $io->blocking; defined $b ? 'defined' : 'undef' } || "died $@");
    r('add.binmode', eval { $io->binmode ? 1 : 0 } // "died $@");
    r('add.setsockopt', $io->setsockopt(SOL_SOCKET, SO_KEEPALIVE, 1) ? 1 : 0);
    # as IO::Socket::getsockopt: an int-sized option comes back unpacked
    r('add.getsockopt', $io->getsockopt(SOL_SOCKET, SO_KEEPALIVE));
    r('add.sockopt_get', $io->sockopt(SO_KEEPALIVE));
    $io->sockopt(SO_KEEPALIVE, 0);
    r('add.sockopt_set0', $io->sockopt(SO_KEEPALIVE));
    r('add.so_type', $io->sockopt(SO_TYPE) == SOCK_STREAM ? 'stream' : 'other');
    r('add.print', $io->print("welcome\n") ? 1 : 0);
    return 1;
}

sub data {
    my ($io, $d, $arg) = @_;
    my $l = $io->getline;
    (my $cmd = $l) =~ s/\n\z//;
    r('data.fileno_same', $io->fileno == $fileno{$io} ? 1 : 0);
    r('data.connected', $io->connected ? 1 : 0);
    if ($cmd eq 'write') {
        r('print', $io->print('p1', 'p2', "\n") ? 1 : 0);
        r('printf', $io->printf("%s-%03d\n", 'pf', 7) ? 1 : 0);
        r('say', $io->say('s1') ? 1 : 0);
        r('write', $io->write("0123456789", 4, 3) ? 1 : 0);    # "3456"
        $io->print("\n");
        r('syswrite', $io->syswrite("abcdefgh", 3, 2));          # "cde"
        $io->print("\n");
        r('syswrite_full', $io->syswrite("full\n"));
        r('send', $io->send("sent\n"));
        r('flush', defined $io->flush ? 1 : 0);
        $io->print("end\n");
    }
    elsif ($cmd eq 'read') {            # client sent "read\nABCDEFGHIJ"
        my $n = $io->read(my $buf, 4);
        r('read', "$n:$buf");
        $n = $io->read($buf, 2, 4);     # at offset 4
        r('read_off', "$n:$buf");
        $n = $io->sysread(my $sb, 2);
        r('sysread', "$n:$sb");
        $n = $io->sysread($sb, 2, 2);   # at offset 2
        r('sysread_off', "$n:$sb");
        $io->print("done read\n");
    }
    elsif ($cmd eq 'getc') {            # client sent "getc\nXY\n"
        my $c1 = $io->getc;
        $io->ungetc(ord 'Q');
        my $c2 = $io->getc;
        my $c3 = $io->getc;
        r('getc', join ',', map { defined $_ ? $_ : 'undef' } $c1, $c2, $c3);
        my $rest = $io->getline;
        r('getc_rest', $rest);
        $io->print("done getc\n");
    }
    elsif ($cmd eq 'recv') {            # client sent "recv\nrecvdata"
        my $from = $io->recv(my $buf, 8);
        r('recv', defined $from ? "ok:$buf" : 'undef');
        $io->print("done recv\n");
    }
    elsif ($cmd eq 'eofno') {           # "eofno\nmore\n": more is buffered
        r('eof_buffered', $io->eof ? 1 : 0);
        r('eof_rest', $io->getline);
        $io->print("done eofno\n");
    }
    elsif ($cmd eq 'eofyes') {          # "eofyes\n" then half-close
        r('eof_at_end', $io->eof ? 1 : 0);
        $io->print("done eofyes\n");
    }
    elsif ($cmd eq 'getlines') {        # "getlines\nx\ny\nz\n" then half-close
        my @l = $io->getlines;
        r('getlines', join '|', map { s/\n/\\n/r } @l);
        $io->print("done getlines\n");
    }
    elsif ($cmd eq 'shutdown') {
        $io->print("before shutdown\n");
        r('shutdown', $io->shutdown(1) ? 1 : 0);
    }
    elsif ($cmd eq 'close') {
        $io->print("before close\n");
        r('close', $io->close ? 1 : 0);
    }
    else {
        r('line', $l);
        r('arg', $arg);
    }
    return 1;
}

sub remove {
    my ($io) = @_;
    r('remove.peerport', $io->peerport);
}

sub val {
    my ($srv, $key, $timeout) = @_;
    $srv->wait_event(qr/^\Q$key\E=/, defined $timeout ? $timeout : 3);
    my @v = map { /^\Q$key\E=(.*)\z/s ? $1 : () } $srv->events;
    return $v[-1];
}

for my $be (backends()) {
    isd_subtest "backend $be" => sub {
        my $srv = start_server(backend => $be, timeout => 1, read_timeout => 1,
                               callback => { add => \&add, data => \&data, remove => \&remove });
        my $port = $srv->port;
        my $c = client($srv);
        is(read_line($c), "welcome\n", 'welcome');
        is(val($srv, 'add.print'), 1, 'print returns true');

        is(val($srv, 'add.ref'), 'IO::Socket::INET::Daemon::Peer', 'ref $io');
        is(val($srv, 'add.isa_inet'), 1, 'isa IO::Socket::INET');
        is(val($srv, 'add.isa_peer'), 1, 'isa IO::Socket::INET::Daemon::Peer');
        is(val($srv, 'add.isa_handle'), 1, 'isa IO::Handle');
        is(val($srv, 'add.peerhost'), '127.0.0.1', 'peerhost');
        is(val($srv, 'add.peerport'), $c->sockport, 'peerport = client sockport');
        is(val($srv, 'add.peeraddr'), '127.0.0.1', 'peeraddr');
        is(val($srv, 'add.peername'), '127.0.0.1:' . $c->sockport, 'peername');
        is(val($srv, 'add.sockhost'), '127.0.0.1', 'sockhost');
        is(val($srv, 'add.sockport'), $port, 'sockport = server port');
        is(val($srv, 'add.sockaddr'), '127.0.0.1', 'sockaddr');
        is(val($srv, 'add.sockname'), "127.0.0.1:$port", 'sockname');
        like(val($srv, 'add.fileno'), qr/^\d+$/, 'fileno is a number');
        ok(val($srv, 'add.fileno') > 2, 'fileno > 2');
        is(val($srv, 'add.connected'), 1, 'connected');
        is(val($srv, 'add.opened'), 1, 'opened');
        is(val($srv, 'add.autoflush'), 'ok', 'autoflush(1)');
        is(val($srv, 'add.blocking'), 'defined', 'blocking() answers');
        is(val($srv, 'add.binmode'), 1, 'binmode');
        is(val($srv, 'add.setsockopt'), 1, 'setsockopt SO_KEEPALIVE 1');
        is(val($srv, 'add.getsockopt'), 1, 'getsockopt SO_KEEPALIVE reads it back (unpacked, as IO::Socket)');
        ok(val($srv, 'add.sockopt_get'), 'sockopt(SO_KEEPALIVE) reads it back');
        is(val($srv, 'add.sockopt_set0'), 0, 'sockopt(SO_KEEPALIVE, 0) sets it');
        is(val($srv, 'add.so_type'), 'stream', 'sockopt(SO_TYPE)');

        # output methods
        print $c "write\n";
        my @want = ("p1p2\n", "pf-007\n", "s1\n", "3456\n", "cde\n", "full\n", "sent\n", "end\n");
        my @got = map { read_line($c) } @want;
        is_deeply(\@got, \@want, 'print, printf, say, write(len,off), syswrite(len,off), syswrite, send in order');
        is(val($srv, 'print'), 1, 'print true');
        is(val($srv, 'printf'), 1, 'printf true');
        is(val($srv, 'say'), 1, 'say true');
        is(val($srv, 'write'), 1, 'write true');
        is(val($srv, 'syswrite'), 3, 'syswrite returns the byte count');
        is(val($srv, 'syswrite_full'), 5, 'syswrite of a whole string');
        is(val($srv, 'send'), 5, 'send returns the byte count');
        is(val($srv, 'flush'), 1, 'flush');
        is(val($srv, 'data.fileno_same'), 1, 'fileno stable between add and data');
        is(val($srv, 'data.connected'), 1, 'connected in data');

        # plain line: getline and the 3rd argument
        print $c "plain\n";
        ok($srv->wait_event(qr/^arg=/), 'plain line');
        is(val($srv, 'line'), "plain\n", 'getline returns the line with "\n"');
        is(val($srv, 'arg'), "plain\n", '3rd argument is the line');

        # input methods
        print $c "read\nABCDEFGHIJ";
        is(read_line($c), "done read\n", 'read done');
        is(val($srv, 'read'), '4:ABCD', 'read($buf, 4)');
        is(val($srv, 'read_off'), '2:ABCDEF', 'read($buf, 2, 4) at an offset');
        is(val($srv, 'sysread'), '2:GH', 'sysread($buf, 2) gets buffered bytes');
        is(val($srv, 'sysread_off'), '2:GHIJ', 'sysread at an offset');

        print $c "getc\nXY\n";
        is(read_line($c), "done getc\n", 'getc done');
        is(val($srv, 'getc'), 'X,Q,Y', 'getc, ungetc, getc, getc');
        is(val($srv, 'getc_rest'), "\n", 'getline after getc: rest of the line');

        print $c "recv\nrecvdata";
        is(read_line($c), "done recv\n", 'recv done');
        is(val($srv, 'recv'), 'ok:recvdata', 'recv gets buffered bytes');

        print $c "eofno\nmore\n";
        is(read_line($c), "done eofno\n", 'eof done');
        is(val($srv, 'eof_buffered'), 0, 'eof false while input is buffered');
        is(val($srv, 'eof_rest'), "more\n", 'and the buffered line is still there');

        print $c "ping\n";
        ok($srv->wait_event(qr/^line=ping\n/), 'still line-delivering after the input tests');

        # shutdown(1): client sees EOF, the server still reads
        print $c "shutdown\n";
        is(read_line($c), "before shutdown\n", 'output before shutdown delivered');
        is(read_until_eof($c, 3), '', 'shutdown(1): client reads EOF');
        ok(got_eof($c), 'EOF seen');
        is(val($srv, 'shutdown'), 1, 'shutdown returns true');
        print $c "after shutdown\n";
        ok($srv->wait_event(qr/^line=after shutdown\n/), 'server still reads after shutdown(1)');
        close $c;
        ok($srv->wait_event(qr/^remove\.peerport=/), 'remove after client close');

        # close: client sees EOF
        $c = client($srv);
        is(read_line($c), "welcome\n", 'welcome');
        print $c "close\n";
        is(read_line($c), "before close\n", 'output before close delivered');
        is(read_until_eof($c, 3), '', 'close: EOF');
        ok(got_eof($c), 'closed by $io->close');
        is(val($srv, 'close'), 1, 'close returns true');
        close $c;

        # eof at the end of the stream
        $c = client($srv);
        read_line($c);
        print $c "eofyes\n";
        shutdown($c, 1);
        is(read_line($c), "done eofyes\n", 'eofyes done');
        is(val($srv, 'eof_at_end'), 1, 'eof true after the peer half-closed');
        close $c;

        # getlines reads to EOF
        $c = client($srv);
        read_line($c);
        print $c "getlines\nx\ny\nz\n";
        shutdown($c, 1);
        is(read_line($c), "done getlines\n", 'getlines done');
        is(val($srv, 'getlines'), 'x\n|y\n|z\n', 'getlines returns the remaining lines up to EOF');
        close $c;

        $c = client($srv);
        is(read_line($c), "welcome\n", 'server still serving');
        close $c;
        ok($srv->alive, 'server alive');
        unlike($srv->stderr, qr/panic|Attempt to free|Segmentation/, 'no panic');
        is($srv->stop, 15, 'SIGTERM still ends the server (no signal left blocked)');
    };
}

done_testing;
