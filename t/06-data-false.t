#!perl
# data returning false: remove is called, then the peer is closed after what
# data printed is delivered; no further data for that peer.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use TestISD;
use Test::More;

my $BIG = join '', map { sprintf "%07d\n", $_ } 0 .. 131071;    # 1 MiB

sub data {
    my ($io) = @_;
    my $l = $io->getline;
    log_event('data %s %s', $io->peerport, $l);
    return 0 if $l eq "silent\n";
    if ($l eq "bye\n")   { $io->print("bye!\n"); return 0 }
    if ($l eq "undef\n") { $io->print("bye!\n"); return undef }
    if ($l eq "empty\n") { $io->print("bye!\n"); return }
    if ($l eq "big\n")   { $io->print($BIG); return 0 }
    $io->print("R:$l");
    return 1;
}

sub remove {
    my ($io) = @_;
    log_event('remove %s %s', $io->peerport, $io->peerhost);
}

for my $be (backends()) {
    isd_subtest "backend $be" => sub {
        my $srv = start_server(backend => $be, timeout => 1,
                               callback => { data => \&data, remove => \&remove });

        for my $cmd (qw(bye undef empty)) {
            my $c = client($srv);
            my $p = $c->sockport;
            print $c "one\n";
            is(read_line($c), "R:one\n", "$cmd: served");
            print $c "$cmd\nafter1\nafter2\n";    # pipelined after the closing line
            is(read_line($c), "bye!\n", "$cmd: output of the false-returning data arrives");
            is(read_until_eof($c, 5), '', "$cmd: then EOF, no reply to later lines");
            ok(got_eof($c), "$cmd: closed");
            close $c;
            ok($srv->wait_event(qr/^remove $p /), "$cmd: remove called");
            Time::HiRes::sleep(0.2);
            my @mine = grep { /^\w+ $p / } $srv->events;
            is_deeply(\@mine, ["data $p one\n", "data $p $cmd\n", "remove $p 127.0.0.1"],
                      "$cmd: data, data, remove once; no data after the false return");
        }

        # nothing printed
        my $c = client($srv);
        my $p = $c->sockport;
        print $c "silent\n";
        is(read_until_eof($c, 5), '', 'silent false return: EOF');
        ok(got_eof($c), 'closed');
        close $c;
        ok($srv->wait_event(qr/^remove $p /), 'remove called');

        # 1 MiB printed, then false
        $c = client($srv);
        $p = $c->sockport;
        print $c "big\n";
        my $got = read_until_eof($c, 10);
        ok(got_eof($c), 'big output then false: closed');
        is(length $got, length $BIG, 'all 1 MiB delivered before the close');
        ok($got eq $BIG, 'byte-exact');
        close $c;
        ok($srv->wait_event(qr/^remove $p /), 'remove called');
        Time::HiRes::sleep(0.2);
        is($srv->count(qr/^remove $p /), 1, 'remove once');

        $c = client($srv);
        print $c "still\n";
        is(read_line($c), "R:still\n", 'server still serving');
        close $c;
        is($srv->stop, 15, 'SIGTERM still ends the server (no signal left blocked)');
    };
}

for my $be (backends()) {
    isd_subtest "linger bounds the flush of a closed peer, backend $be" => sub {
        my $srv = start_server(
            backend  => $be,
            timeout  => 0.1,
            linger   => 0.5,
            callback => { data => sub { $_[0]->getline; $_[0]->print('L' x (8 << 20)); 0 } },
        );
        my $c = client($srv);
        print $c "go\n";
        Time::HiRes::sleep(1.5);    # never read within linger
        my $got = read_until_eof($c, 5);
        ok(got_eof($c), 'the connection ended');
        ok(length($got) < 8 << 20,
           'the server gave up flushing after linger seconds (' . length($got) . ' of 8 MiB arrived)');
        close $c;
        my $o = client($srv);
        print $o "x\n";
        is(read_n($o, 10, 3), 'L' x 10, 'server still serving');
        close $o;
        is($srv->stop, 15, 'SIGTERM still ends the server (no signal left blocked)');
    };
}

done_testing;
