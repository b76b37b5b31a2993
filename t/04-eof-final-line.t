#!perl
# EOF: a final unterminated line is delivered, then remove exactly once, with
# peerhost/peerport still answering.  Same for a reset.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use TestISD;
use Test::More;
use Socket qw(SOL_SOCKET SO_LINGER);

sub data {
    my ($io) = @_;
    my $l = $io->getline;
    log_event('data %s %s', $io->peerport, $l);
    (my $t = $l) =~ s/\n\z//;
    $io->print("got:$t\n");
    1;
}

sub remove {
    my ($io) = @_;
    log_event('remove %s %s %s', $io->peerport, $io->peerhost, $io->peerport);
}

for my $be (backends()) {
    isd_subtest "backend $be" => sub {
        my $srv = start_server(backend => $be, timeout => 1,
                               callback => { data => \&data, remove => \&remove });

        # "a\nb" then half-close
        my $c = client($srv);
        my $p = $c->sockport;
        print $c "a\nb";
        ok(shutdown($c, 1), 'client half-closes after "a\nb"');
        is(read_line($c), "got:a\n", 'reply to "a\n"');
        is(read_line($c), "got:b\n", 'reply to the final unterminated "b" (written after EOF)');
        is(read_until_eof($c, 5), '', 'then EOF');
        ok(got_eof($c), 'server closed');
        close $c;
        ok($srv->wait_event(qr/^remove $p /), 'remove called');
        Time::HiRes::sleep(0.2);
        my @mine = grep { /^\w+ $p / } $srv->events;
        is_deeply(\@mine, ["data $p a\n", "data $p b", "remove $p 127.0.0.1 $p"],
                  'data "a\n", data "b", remove once; peerhost/peerport answer in remove');

        # "x\ny" then a full close (no replies read)
        $c = client($srv);
        $p = $c->sockport;
        print $c "x\ny";
        close $c;
        ok($srv->wait_event(qr/^remove $p /), 'remove after full close');
        Time::HiRes::sleep(0.2);
        @mine = grep { /^\w+ $p / } $srv->events;
        is_deeply(\@mine, ["data $p x\n", "data $p y", "remove $p 127.0.0.1 $p"],
                  'final line delivered before remove on a full close too');

        # connect and leave without a byte
        $c = client($srv);
        $p = $c->sockport;
        close $c;
        ok($srv->wait_event(qr/^remove $p /), 'silent client: remove');
        Time::HiRes::sleep(0.2);
        @mine = grep { /^\w+ $p / } $srv->events;
        is_deeply(\@mine, ["remove $p 127.0.0.1 $p"], 'silent client: no data, remove once');

        # reset (SO_LINGER 0): remove exactly once
        $c = client($srv);
        $p = $c->sockport;
        print $c "r1\n";
        is(read_line($c), "got:r1\n", 'reply before the reset');
        setsockopt($c, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0)) or diag "SO_LINGER: $!";
        close $c;    # RST
        ok($srv->wait_event(qr/^remove $p /), 'reset: remove');
        Time::HiRes::sleep(0.2);
        is($srv->count(qr/^remove $p /), 1, 'reset: remove exactly once');
        like(($srv->grep_events(qr/^remove $p /))[0], qr/^remove $p 127\.0\.0\.1 $p$/,
             'reset: peerhost/peerport answer in remove');

        # reset with unread input and a final partial line pending
        $c = client($srv);
        $p = $c->sockport;
        print $c "z1\nz2";
        is(read_line($c), "got:z1\n", 'reply before the reset');
        setsockopt($c, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0));
        close $c;
        ok($srv->wait_event(qr/^remove $p /), 'reset with a partial line: remove');
        Time::HiRes::sleep(0.2);
        is($srv->count(qr/^remove $p /), 1, 'remove exactly once');

        # still serving
        $c = client($srv);
        print $c "ok\n";
        is(read_line($c), "got:ok\n", 'server still serving');
        close $c;
        is($srv->stop, 15, 'SIGTERM still ends the server (no signal left blocked)');
    };
}

done_testing;
