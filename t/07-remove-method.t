#!perl
# $daemon->remove($io): closes one peer after delivering its queued output;
# no remove callback; no more events for it; safe twice; from tick too.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use TestISD;
use Test::More;

my $BIG = join '', map { sprintf "%07d\n", $_ } 0 .. 262143;    # 2 MiB
my @later;    # peers to remove from tick

sub data {
    my ($io, $d) = @_;
    my $l = $io->getline;
    log_event('data %s %s', $io->peerport, $l);
    if ($l eq "rm\n") {
        $io->print("queued\n");
        $d->remove($io);
        log_event('removed %s', $io->peerport);
        return 1;
    }
    if ($l eq "rm2\n") {
        $io->print("queued\n");
        $d->remove($io);
        $d->remove($io);    # twice: harmless
        log_event('removed %s', $io->peerport);
        return 1;
    }
    if ($l eq "rmbig\n") {
        $io->print($BIG);
        $d->remove($io);
        return 1;
    }
    if ($l eq "later\n") {
        push @later, $io;
        $io->print("ok later\n");
        return 1;
    }
    if ($l eq "count\n") {
        $io->print('conns=' . scalar($d->connections) . "\n");
        return 1;
    }
    $io->print("R:$l");
    1;
}

sub tick {
    my (undef, $d) = @_;
    while (my $io = shift @later) {
        $io->print("from tick\n");
        $d->remove($io);
        log_event('tick-removed %s', $io->peerport);
    }
}

for my $be (backends()) {
    isd_subtest "backend $be" => sub {
        my $srv = start_server(
            backend  => $be,
            timeout  => 0.05,
            callback => {
                data   => \&data,
                tick   => \&tick,
                remove => sub { log_event('remove %s', $_[0]->peerport) },
            },
        );

        my $watch = client($srv);    # stays connected throughout
        print $watch "count\n";
        is(read_line($watch), "conns=1\n", 'connections() counts one peer');

        for my $cmd (qw(rm rm2)) {
            my $c = client($srv);
            my $p = $c->sockport;
            print $c "$cmd\nnext1\nnext2\n";
            is(read_line($c), "queued\n", "$cmd: output printed before remove() arrives");
            is(read_until_eof($c, 5), '', "$cmd: then EOF; later pipelined lines unanswered");
            ok(got_eof($c), "$cmd: closed");
            close $c;
            ok($srv->wait_event(qr/^removed $p$/), "$cmd: remove() returned");
            Time::HiRes::sleep(0.2);
            is($srv->count(qr/^remove $p$/), 0, "$cmd: no remove callback");
            is($srv->count(qr/^data $p next/), 0, "$cmd: no data after remove()");
        }

        my $c = client($srv);
        print $c "rmbig\n";
        my $got = read_until_eof($c, 10);
        ok(got_eof($c), 'remove() with 2 MiB queued: closed');
        is(length $got, length $BIG, 'all queued output delivered first');
        ok($got eq $BIG, 'byte-exact');
        close $c;

        $c = client($srv);
        my $p = $c->sockport;
        print $c "later\n";
        is(read_line($c), "ok later\n", 'peer stored for tick');
        is(read_line($c), "from tick\n", 'output printed in tick before remove() arrives');
        is(read_until_eof($c, 5), '', 'then EOF');
        ok(got_eof($c), 'remove() from tick closes');
        close $c;
        ok($srv->wait_event(qr/^tick-removed $p$/), 'tick-removed');
        Time::HiRes::sleep(0.2);
        is($srv->count(qr/^remove $p$/), 0, 'no remove callback for a tick remove()');

        print $watch "count\n";
        is(read_line($watch), "conns=1\n", 'removed peers are gone from connections()');
        close $watch;
        ok($srv->wait_event(qr/^remove \d+$/), 'an ordinary close still calls remove');
        ok($srv->alive, 'server alive');
        is($srv->stop, 15, 'SIGTERM still ends the server (no signal left blocked)');
    };
}

done_testing;
