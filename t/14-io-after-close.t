#!perl
# An $io kept after its connection is gone stays a valid object: peerhost and
# peerport answer, print is false, fileno undef, connected false, getline
# undef; nothing crashes and the server keeps serving.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use TestISD;
use Test::More;

no warnings;    # operations on closed handles may warn; that is allowed

my @kept;       # [tag, $io]
my @probe;      # tags to probe in the next tick

sub probe {
    my ($tag, $io) = @_;
    my %r;
    $r{peerhost}  = eval { $io->peerhost } // 'undef';
    $r{peerport}  = eval { $io->peerport } // 'undef';
    $r{print}     = eval { $io->print("late\n") ? 1 : 0 } // "died";
    $r{printfh}   = eval { (print $io "late\n") ? 1 : 0 } // "died";
    $r{syswrite}  = eval { my $n = $io->syswrite("late\n"); defined $n && $n > 0 ? 1 : 0 } // "died";
    $r{fileno}    = eval { my $f = $io->fileno; defined $f ? $f : 'undef' } // "died";
    $r{connected} = eval { $io->connected ? 1 : 0 } // "died";
    $r{getline}   = eval { my $l = $io->getline; defined $l ? "line" : 'undef' } // "died";
    $r{sysread}   = eval { my $n = $io->sysread(my $b, 10); $n ? "data" : 'none' } // "died";
    $r{eof}       = eval { $io->eof ? 1 : 0 } // "died";
    $r{opened}    = eval { $io->opened ? 1 : 0 } // "died";
    $r{close}     = eval { $io->close; 'ok' } // "died";
    $r{mine}      = eval { ${*$io}{mine} } // 'undef';
    log_event('probe %s %s ', $tag, join ' ', map { "$_=$r{$_}" } sort keys %r);
}

sub tick {
    while (my $k = shift @probe) {
        probe(@$k);
    }
}

sub add {
    my ($io) = @_;
    ${*$io}{mine} = 'kept ' . $io->peerport;
    if ($io->peerport == ($main::refuse_port || -1)) {
        push @probe, ['refused', $io];
        return 0;
    }
    1;
}

sub data {
    my ($io, $d) = @_;
    my $l = $io->getline;
    if ($l eq "keep\n") {
        push @kept, $io;
        $io->print("kept\n");
    }
    elsif ($l eq "removeme\n") {
        $d->remove($io);
        push @probe, ['removed', $io];
    }
    elsif ($l eq "probe\n") {
        push @probe, ['closed', $_] for splice @kept;
        $io->print("probing\n");
    }
    elsif ($l =~ /^refuse (\d+)/) {
        $main::refuse_port = $1;
        $io->print("ok\n");
    }
    else {
        $io->print("R:$l");
    }
    1;
}

sub remove {
    my ($io) = @_;
    log_event('remove %s', $io->peerport);
}

for my $be (backends()) {
    isd_subtest "backend $be" => sub {
        my $srv = start_server(backend => $be, timeout => 0.05,
                               callback => { add => \&add, data => \&data,
                                             remove => \&remove, tick => \&tick });
        my $ctl = client($srv);

        # closed by the peer, probed later from tick
        my $c = client($srv);
        my $p = $c->sockport;
        print $c "keep\n";
        is(read_line($c), "kept\n", 'kept');
        close $c;
        ok($srv->wait_event(qr/^remove $p$/), 'remove called');
        print $ctl "probe\n";
        is(read_line($ctl), "probing\n", 'probe requested');
        ok($srv->wait_event(qr/^probe closed /), 'probed in tick');
        my ($ev) = $srv->grep_events(qr/^probe closed /);
        like($ev, qr/ peerhost=127\.0\.0\.1 /, 'peerhost answers after the close');
        like($ev, qr/ peerport=$p /, 'peerport answers after the close');
        like($ev, qr/ print=0 /, 'print returns false');
        like($ev, qr/ printfh=0 /, 'print $io returns false');
        like($ev, qr/ syswrite=0 /, 'syswrite writes nothing');
        like($ev, qr/ fileno=undef /, 'fileno returns undef');
        like($ev, qr/ connected=0 /, 'connected returns false');
        like($ev, qr/ getline=undef /, 'getline returns undef (no wait, no crash)');
        like($ev, qr/ sysread=none /, 'sysread returns nothing');
        like($ev, qr/ close=ok /, 'close is harmless');
        like($ev, qr/ mine=kept $p /, '${*$io}{mine} still readable');
        unlike($ev, qr/=died/, 'no method died');

        # removed with $d->remove, probed in tick
        $c = client($srv);
        $p = $c->sockport;
        print $c "removeme\n";
        read_until_eof($c, 3);
        ok(got_eof($c), 'removed');
        ok($srv->wait_event(qr/^probe removed /), 'probed after remove()');
        ($ev) = $srv->grep_events(qr/^probe removed /);
        like($ev, qr/ peerhost=127\.0\.0\.1 peerport=$p /, 'peerhost/peerport after remove()');
        like($ev, qr/ print=0 /, 'print false after remove()');
        like($ev, qr/ fileno=undef /, 'fileno undef after remove()');
        like($ev, qr/ connected=0 /, 'connected false after remove()');
        unlike($ev, qr/=died/, 'no method died');
        close $c;

        # refused by add, probed later
        # bind first, announce the local port, then connect from it
        my $sock = IO::Socket::INET->new(Proto => 'tcp', LocalAddr => '127.0.0.1', ReuseAddr => 1)
            or die "bind: $@";
        $p = $sock->sockport;
        print $ctl "refuse $p\n";
        is(read_line($ctl), "ok\n", 'refusal armed');
        ok($sock->connect(Socket::pack_sockaddr_in($srv->port, Socket::inet_aton('127.0.0.1'))),
           'connect from the announced port') or diag $!;
        read_until_eof($sock, 3);
        ok(got_eof($sock), 'refused');
        ok($srv->wait_event(qr/^probe refused /), 'probed after add returned false');
        ($ev) = $srv->grep_events(qr/^probe refused /);
        like($ev, qr/ peerport=$p /, 'peerport after refusal');
        like($ev, qr/ print=0 /, 'print false after refusal');
        like($ev, qr/ fileno=undef /, 'fileno undef after refusal');
        unlike($ev, qr/=died/, 'no method died');
        close $sock;

        print $ctl "still\n";
        is(read_line($ctl), "R:still\n", 'server still serving');
        ok($srv->alive, 'alive');
        unlike($srv->stderr, qr/panic|Attempt to free|Segmentation/, 'no panic');
        close $ctl;
        is($srv->stop, 15, 'SIGTERM still ends the server (no signal left blocked)');
    };
}

done_testing;
