#!perl
# Issue 17, items 6-8: replies lost or duplicated.
#  6. A client dropped for max_line still gets the replies printed for its
#     earlier lines of the same read (then EOF); error and remove once each.
#  7. The FORK recipe: a child forked in data (or in add) that prints, flushes
#     and destroys must not send again what the parent had printed and not
#     yet flushed: every byte the parent printed goes out once.
#  8. run, stop, fork, then run in the child: the child serves on the same
#     listening socket.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use TestISD;
use Test::More;
use POSIX ();

sub count_of { my ($s, $sub) = @_; my $n = () = $s =~ /\Q$sub\E/g; $n }

# read from $c until $re matches what arrived (or $timeout), then whatever
# else comes within $extra seconds (a duplicate would come then).
sub collect {
    my ($c, $re, $timeout, $extra) = @_;
    my $got = '';
    my $end = now() + $timeout;
    while ($got !~ $re && !got_eof($c) && now() < $end) {
        $got .= read_for($c, 0.05);
    }
    $got .= read_for($c, $extra);
    return $got;
}

for my $be (backends()) {
    # ------------------------------------------------------------ item 6
    isd_subtest "6: a max_line drop keeps the replies already printed, backend $be" => sub {
        my $srv = start_server(
            backend  => $be,
            timeout  => 1,
            max_line => 1024,
            callback => {
                data   => sub { log_event('data %s', $_[0]->peerport); $_[0]->print("echo: $_[2]"); 1 },
                error  => sub { log_event('error %s %s', defined $_[0] ? $_[0]->peerport : 'undef', $_[2]) },
                remove => sub { log_event('remove %s', $_[0]->peerport) },
            },
        );
        for my $writes (1, 2) {
            my $c = client($srv);
            my $p = $c->sockport;
            my @parts = ("PING\n", ("x" x 2000) . "\n");
            @parts = (join '', @parts) if $writes == 1;
            for my $i (0 .. $#parts) {
                Time::HiRes::sleep(0.2) if $i;       # the second write lands in a later read
                is(send_all($c, $parts[$i], 3), length $parts[$i], "write $i of $writes sent");
            }
            my $got = read_until_eof($c, 5);
            ok(got_eof($c), "$writes write(s): the client is dropped (EOF)");
            is($got, "echo: PING\n", "$writes write(s): the reply printed for PING arrives before the close");
            ok($srv->wait_event(qr/^remove $p$/, 3), "$writes write(s): remove called");
            Time::HiRes::sleep(0.2);
            is($srv->count(qr/^data $p$/), 1, "$writes write(s): data called once (for PING only)");
            my @err = $srv->grep_events(qr/^error $p /);
            is(scalar @err, 1, "$writes write(s): error called once");
            like($err[0] // '', qr/^error $p .*max_line/, "$writes write(s): error gets the \$io and names max_line");
            is($srv->count(qr/^remove $p$/), 1, "$writes write(s): remove called once");
            close $c;
        }
        my $o = client($srv);
        print $o "still\n";
        is(read_line($o, 3), "echo: still\n", 'the server serves on');
        close $o;
        is($srv->stop, 15, 'SIGTERM still ends the server');
    };

    # ------------------------------------------------------------ item 7
    # the POD's FORK recipe: the child answers the slow request, flushes,
    # destroys its copy; run returns in the child, which exits.
    my $fork_run = sub {
        my ($d) = @_;
        my $me = $$;
        my $rv = $d->run;
        POSIX::_exit(0) if $$ != $me;                   # the forked child
        log_event('run_returned %s', $rv ? 1 : 0);
    };
    my $fork_child = sub {
        my ($io, $d, $what) = @_;
        alarm 5;                                        # not inherited
        $io->print("$what\n");
        $io->flush;
        $d->destroy;
        log_event('child destroyed');
    };

    isd_subtest "7: fork in data does not duplicate unflushed replies, backend $be" => sub {
        my $srv = start_server(
            backend    => $be,
            timeout    => 1,
            child_init => sub { $SIG{CHLD} = 'IGNORE' },
            child_run  => $fork_run,
            callback   => { data => sub {
                my ($io, $d, $l) = @_;
                if ($l eq "slow\n") {
                    my $pid = fork;
                    if (defined $pid && $pid == 0) {
                        $fork_child->($io, $d, 'slow reply');
                        return 1;
                    }
                    log_event('forked %s', $pid // "failed $!");
                    return 1;
                }
                $io->print($l eq "quick\n" ? "quick reply\n" : "R:$l");
                1;
            } },
        );
        my $c = client($srv);
        is(send_all($c, "quick\nslow\n", 3), 11, 'sent "quick\nslow\n" in one write');
        ok($srv->wait_event(qr/^child destroyed$/, 5), 'the child answered and destroyed its copy');
        my $got = collect($c, qr/quick reply\n.*slow reply\n|slow reply\n.*quick reply\n/s, 5, 0.5);
        is(count_of($got, "quick reply\n"), 1, 'the parent\'s "quick reply" arrives exactly once');
        is(count_of($got, "slow reply\n"), 1, 'the child\'s "slow reply" arrives once');
        is(length $got, length("quick reply\nslow reply\n"), 'nothing else arrived') or diag explain $got;
        print $c "next\n";
        is(read_line($c, 3), "R:next\n", 'the parent serves the connection on');
        is(read_for($c, 0.2), '', 'and sends nothing twice');
        ok($srv->alive, 'the server is alive');
        close $c;
        is($srv->stop, 15, 'SIGTERM still ends the server');
    };

    isd_subtest "7: fork in add does not duplicate the welcome, backend $be" => sub {
        my $srv = start_server(
            backend    => $be,
            timeout    => 1,
            child_init => sub { $SIG{CHLD} = 'IGNORE' },
            child_run  => $fork_run,
            callback   => {
                add => sub {
                    my ($io, $d) = @_;
                    $io->print("welcome\n");
                    my $pid = fork;
                    if (defined $pid && $pid == 0) {
                        $fork_child->($io, $d, 'child hello');
                        return 1;
                    }
                    log_event('forked %s', $pid // "failed $!");
                    return 1;
                },
                data => sub { $_[0]->print("R:$_[2]"); 1 },
            },
        );
        my $c = client($srv);
        ok($srv->wait_event(qr/^child destroyed$/, 5), 'the child greeted and destroyed its copy');
        my $got = collect($c, qr/welcome\n.*child hello\n|child hello\n.*welcome\n/s, 5, 0.5);
        is(count_of($got, "welcome\n"), 1, 'the welcome printed in add arrives exactly once');
        is(count_of($got, "child hello\n"), 1, "the child's line arrives once");
        is(length $got, length("welcome\nchild hello\n"), 'nothing else arrived') or diag explain $got;
        print $c "next\n";
        is(read_line($c, 3), "R:next\n", 'the parent serves the connection on');
        is(read_for($c, 0.2), '', 'and sends nothing twice');
        close $c;
        is($srv->stop, 15, 'SIGTERM still ends the server');
    };

    # ------------------------------------------------------------ item 8
    isd_subtest "8: run, stop, fork, run in the child serves, backend $be" => sub {
        my $srv = start_server(
            backend   => $be,
            timeout   => 1,
            callback  => { data => sub {
                my ($io, $d, $l) = @_;
                if ($l eq "stop\n") {
                    $io->print("stopping $$\n");
                    $d->stop;
                    return 1;
                }
                $io->print("R$$:$l");
                1;
            } },
            child_run => sub {
                my ($d) = @_;
                my $rv = $d->run;
                log_event('run_returned %s', $rv ? 1 : 0);
                my $pid = fork;
                if (!defined $pid) {
                    log_event('fork failed %s', $!);
                    return;
                }
                if ($pid == 0) {
                    alarm 8;                     # not inherited
                    log_event('child %d sockport %s', $$, $d->sockport);
                    my $ticked;
                    $d->callback(tick => sub {
                        log_event('child tick sockport %s', $_[1]->sockport) unless $ticked++;
                    });
                    my $rv2 = $d->run;
                    log_event('child run_returned %s', $rv2 ? 1 : "0 $!");
                    POSIX::_exit(0);
                }
                log_event('forked %d', $pid);
                waitpid($pid, 0);
                log_event('reaped %d', $?);
            },
        );
        my $port = $srv->port;
        my $a = client($srv);
        print $a "hi\n";
        like(read_line($a, 3) // '', qr/^R\d+:hi\n\z/, 'served before the stop');
        print $a "stop\n";
        like(read_line($a, 3) // '', qr/^stopping \d+\n\z/, 'stop');
        ok($srv->wait_event(qr/^run_returned 1$/, 3), 'run returned after stop');
        ok($srv->wait_event(qr/^child \d+ sockport /, 3), 'the child started');
        my ($ev) = $srv->grep_events(qr/^child \d+ sockport /);
        my ($gpid, $sp) = ($ev // '') =~ /^child (\d+) sockport (\S+)$/;
        is($sp, $port, "the child's server still has the listening socket (sockport $port)");
        ok($srv->wait_event(qr/^child tick sockport /, 3), "the child's run ticks");
        ($ev) = $srv->grep_events(qr/^child tick sockport /);
        is(($ev // '') =~ /(\S+)$/ ? $1 : undef, $port, "sockport inside the child's run is still $port");

        my $b = try_client($port, timeout => 3);
        ok($b, 'a new client connects');
        if ($b) {
            print $b "hello\n";
            my $r = read_line($b, 3);
            if (is($r, defined $gpid ? "R$gpid:hello\n" : 'child pid', "the child's run accepts and answers it")) {
                print $b "stop\n";
                like(read_line($b, 3) // '', qr/^stopping \d+\n\z/, 'stop in the child');
                ok($srv->wait_event(qr/^child run_returned 1$/, 3), "the child's run returns after stop");
                ok($srv->wait_event(qr/^reaped 0$/, 3), 'the child exited 0');
            }
            close $b;
        }
        close $a;
        kill 'KILL', $gpid if $gpid && !$srv->count(qr/^reaped /) && kill(0, $gpid);
        $srv->stop;
    };
}

done_testing;
