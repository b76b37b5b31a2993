#!perl
# The 0.04 SYNOPSIS server, unchanged: welcome, echo, quit, stop.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use TestISD;
use Test::More;

sub add {
    my $io = shift;
    log_event('add %s', $io->peerport);
    $io->print("Welcome, ", $io->peerhost, ".\n");
    return !0;
}

sub remove {
    my $io = shift;
    log_event('remove %s %s', $io->peerhost, $io->peerport);
}

sub data {
    my ($io, $host) = @_;
    my $line = $io->getline;
    $line =~ s/\r?\n//;
    log_event('data %s %s', $io->peerport, $line);
    if ($line eq 'quit') {
        $io->print("Bye.\n");
        return 0;
    }
    elsif ($line eq 'stop') {
        $host->stop;
    }
    else {
        $io->print("You wrote: $line\n");
        return !0;
    }
}

for my $be (backends()) {
    isd_subtest "backend $be" => sub {
        my $srv = start_server(
            backend  => $be,
            timeout  => 20,
            callback => { add => \&add, remove => \&remove, data => \&data },
        );
        ok($srv->port, 'server listening on port ' . $srv->port);

        # one client: welcome, echo, CRLF, quit
        my $c = client($srv);
        my $me = $c->sockport;
        is(read_line($c), "Welcome, 127.0.0.1.\n", 'welcome with peerhost');
        print $c "hello\n";
        is(read_line($c), "You wrote: hello\n", 'echo');
        print $c "with crlf\r\n";
        is(read_line($c), "You wrote: with crlf\n", 'CRLF line');
        print $c "\n";
        is(read_line($c), "You wrote: \n", 'empty line');
        print $c "quit\n";
        is(read_line($c), "Bye.\n", 'Bye. before the close');
        is(read_until_eof($c, 5), '', 'then EOF, nothing more');
        ok(got_eof($c), 'connection closed by the server');
        close $c;

        ok($srv->wait_event(qr/^remove 127\.0\.0\.1 $me$/), 'remove called with peerhost/peerport answering');
        Time::HiRes::sleep(0.2);
        is($srv->count(qr/^remove /), 1, 'remove called exactly once');
        is($srv->count(qr/^add /), 1, 'add called once');
        is_deeply([ map { /^data \d+ (.*)/ ? $1 : () } $srv->events ],
                  ['hello', 'with crlf', '', 'quit'], 'data called once per line, in order');
        my @ev = $srv->events;
        is($ev[-1], "remove 127.0.0.1 $me", 'remove is the last event (after data quit)');

        # two interleaved clients, one leaving without quit
        my $a = client($srv);
        my $b = client($srv);
        my ($pa, $pb) = ($a->sockport, $b->sockport);
        is(read_line($a), "Welcome, 127.0.0.1.\n", 'A welcome');
        is(read_line($b), "Welcome, 127.0.0.1.\n", 'B welcome');
        for my $i (1 .. 5) {
            print $a "a$i\n";
            print $b "b$i\n";
            is(read_line($b), "You wrote: b$i\n", "B reply $i");
            is(read_line($a), "You wrote: a$i\n", "A reply $i");
        }
        close $a;    # no quit: the server sees EOF
        ok($srv->wait_event(qr/^remove 127\.0\.0\.1 $pa$/), 'A closing calls remove');
        print $b "still here\n";
        is(read_line($b), "You wrote: still here\n", 'B still served after A left');
        Time::HiRes::sleep(0.2);
        is($srv->count(qr/^remove 127\.0\.0\.1 $pa$/), 1, 'remove for A exactly once');
        is($srv->count(qr/^remove 127\.0\.0\.1 $pb$/), 0, 'no remove for B yet');

        # stop: run returns true, the child exits cleanly
        print $b "stop\n";
        ok($srv->wait_event(qr/^run_returned /), 'stop from data makes run return');
        is(($srv->grep_events(qr/^run_returned /))[0], 'run_returned 1', 'run returned true');
        is($srv->wait_exit(5), 0, 'server process exited 0');
        unlike($srv->stderr, qr/panic|Attempt to free|Segmentation/, 'no panic on stderr');
        close $b;
    };
}

done_testing;
