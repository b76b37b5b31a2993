#!perl
# Issue 17, items 9-12: bounds that must hold.
#  9. read_timeout bounds the whole read call: a peer trickling a byte every
#     0.3 s cannot hold a second getline (or read) past it.
# 10. max_line bounds slurp, record and read reads: the read fails with
#     EMSGSIZE, the client is dropped (error, remove), the server stays small.
# 11. linger => 0 means no time: a connection the server ends (remove, close,
#     data false, destroy) is closed at once, the rest of its output dropped.
# 12. While destroy drains output, %SIG handlers run promptly, and a handler
#     calling destroy or stop again, or exit, ends the drain.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use TestISD;
use Test::More;
use Errno ();
use POSIX ();

# on the unfixed code several cases wait out their whole deadline
$TestISD::DEADLINE = 150;
alarm $TestISD::DEADLINE;

my $MiB = 1048576;
my $ETIMEDOUT = Errno::ETIMEDOUT();
my $EMSGSIZE  = Errno::EMSGSIZE();

# VmRSS / VmHWM of a process in kB (undef once it is gone)
sub vm {
    my ($pid, $key) = @_;
    open my $fh, '<', "/proc/$pid/status" or return undef;
    while (<$fh>) { return $1 if /^\Q$key\E:\s+(\d+)\s+kB/ }
    return undef;
}

# the fds of $pid whose link is $link ("socket:[inode]")
sub has_fd_link {
    my ($pid, $link) = @_;
    opendir my $dh, "/proc/$pid/fd" or return 0;
    for my $fd (readdir $dh) {
        next unless $fd =~ /^\d+$/;
        my $l = readlink "/proc/$pid/fd/$fd";
        return 1 if defined $l && $l eq $link;
    }
    return 0;
}

sub ev_field {
    my ($srv, $re) = @_;
    my ($ev) = $srv->grep_events($re);
    return unless defined $ev;
    return $ev =~ $re;
}

for my $be (backends()) {
    # ------------------------------------------------------------ item 9
    for my $how (qw(getline read)) {
        isd_subtest "9: read_timeout bounds a $how against a trickling peer, backend $be" => sub {
            my $srv = start_server(
                backend      => $be,
                timeout      => 5,
                read_timeout => 1,
                callback     => { data => sub {
                    my ($io, $d, $l) = @_;
                    if ($l eq "wait\n") {
                        $io->getline;                 # this line: buffered, no wait
                        my $t0 = TestISD::now();
                        my ($r, $buf);
                        if ($how eq 'getline') { $r = $io->getline }
                        else                   { $r = $io->read($buf, 100) }
                        my $err = $! + 0;
                        log_event('waited %s errno %d after %.3f',
                                  defined $r ? "got" : 'undef', $err, TestISD::now() - $t0);
                        $io->print(defined $r ? "got\n" : "timeout\n");
                        return 1;
                    }
                    $io->print("R:$l");
                    1;
                } },
            );
            my $a = client($srv);
            my $b = client($srv);
            my $t0 = now();
            print $a "wait\n";
            Time::HiRes::sleep(0.1);
            my $tb = now();
            print $b "b\n";                    # another client, waiting meanwhile
            # one byte every 0.3 s, no newline, for up to 3.5 s
            my $sent = 0;
            while (now() - $t0 < 3.5 && !$srv->count(qr/^waited /)) {
                $sent++ if send_all($a, 'a', 1) == 1;
                Time::HiRes::sleep(0.3);
            }
            ok($srv->count(qr/^waited /), "the $how returned while the peer still trickled ($sent bytes sent)");
            my ($res, $err, $el) = ev_field($srv, qr/^waited (\S+) errno (\d+) after ([\d.]+)$/);
            is($res, 'undef', "the $how returned undef");
            is($err, $ETIMEDOUT, '$! is ETIMEDOUT');
            ok(defined $el && $el >= 0.8 && $el < 2.5,
               sprintf 'after about read_timeout (%ss, 0.8s .. 2.5s)', $el // 'never');
            ok($sent >= 3, "the peer trickled during the wait ($sent bytes)");
            my $rb = read_line($b, 3);
            my $wb = now() - $tb;
            is($rb, "R:b\n", 'the other client is answered');
            ok($wb < 2.5, sprintf 'within the bound too (%.2fs, < 2.5s)', $wb);
            is(read_line($a, 3), "timeout\n", 'the waiting client got the timeout reply');
            # nothing received is lost: the trickled bytes are the next line
            Time::HiRes::sleep(0.1);
            print $a "\n";
            my $rest = read_line($a, 3);
            like($rest // '', qr/^R:a+\n\z/, 'the bytes received meanwhile are kept for the next line');
            close $_ for $a, $b;
            $srv->stop;
        };
    }

    # ------------------------------------------------------------ item 10
    for my $how (qw(slurp record read)) {
        isd_subtest "10: max_line bounds a $how read, backend $be" => sub {
            my $srv = start_server(
                backend      => $be,
                timeout      => 1,
                read_timeout => 3,
                max_line     => 1024,
                callback     => {
                    data => sub {
                        my ($io, $d, $l) = @_;
                        if ($l eq "go\n") {
                            $io->getline;             # this line: buffered, no wait
                            my ($r, $buf);
                            if ($how eq 'slurp') {
                                local $/;
                                $r = $io->getline;
                            }
                            elsif ($how eq 'record') {
                                local $/ = \100000;
                                $r = $io->getline;
                            }
                            else {
                                $r = $io->read($buf, 100000);
                                $r = $buf if defined $r;
                            }
                            my $err = $! + 0;
                            log_event('read %s errno %d', defined $r ? length $r : 'undef', $err);
                            return 1;
                        }
                        $io->print("R:$l");
                        1;
                    },
                    error  => sub { log_event('error %s %s', defined $_[0] ? $_[0]->peerport : 'undef', $_[2]) },
                    remove => sub { log_event('remove %s', $_[0]->peerport) },
                },
            );
            my $pid = $srv->pid;
            my $c = client($srv);
            my $p = $c->sockport;
            my $rss0 = vm($pid, 'VmRSS');
            my $line = ('y' x 99) . "\n";              # short lines: no line is over max_line
            my $chunk = $line x 10486;                 # ~1 MiB
            print $c "go\n";
            my ($sent, $max) = (0, $rss0);
            if ($how eq 'slurp') {
                # up to 100 MiB, stop early once the server has clearly grown
                my $end = now() + 10;
                while ($sent < 100 * $MiB && now() < $end) {
                    my $n = send_all($c, $chunk, 2);
                    $sent += $n;
                    my $r = vm($pid, 'VmRSS') // 0;
                    $max = $r if $r > $max;
                    last if $n < length $chunk;            # dropped
                    last if $max - $rss0 > 80 * 1024;
                }
            }
            else {
                $sent = send_all($c, $line x 2000, 3);      # 200 KB
            }
            shutdown($c, 1);                              # EOF: a slurp returns now at the latest
            ok($srv->wait_event(qr/^read /, 5), "the $how read returned");
            my ($len, $err) = ev_field($srv, qr/^read (\S+) errno (\d+)$/);
            is($len, 'undef', "the $how read failed (returned " . ($len // 'nothing') . ')');
            is($err, $EMSGSIZE, '$! is EMSGSIZE');
            ok($srv->wait_event(qr/^remove $p$/, 3), 'the client is dropped: remove');
            my @err = $srv->grep_events(qr/^error $p /);
            is(scalar @err, 1, 'error called once');
            like($err[0] // '', qr/max_line/, 'the error names max_line');
            read_until_eof($c, 5);
            ok(got_eof($c), 'the client sees the close');
            if ($how eq 'slurp') {
                my $hwm = vm($pid, 'VmHWM') // 0;
                $max = $hwm if $hwm > $max;
                my $grew = ($max - $rss0) / 1024;
                ok($grew < 50, sprintf 'the server grew by %.1f MB (< 50 MB) while %.1f MB were sent',
                                       $grew, $sent / $MiB);
            }
            my $o = client($srv);
            print $o "still\n";
            is(read_line($o, 3), "R:still\n", 'the server serves on');
            close $o;
            close $c;
            $srv->stop;
        };
    }

    # ------------------------------------------------------------ item 11
    for my $how (qw(remove close false destroy)) {
        isd_subtest "11: linger 0 means no time ($how), backend $be" => sub {
            my $chunk = 'z' x $MiB;
            my $srv = start_server(
                backend  => $be,
                timeout  => 1,
                linger   => 0,
                callback => { data => sub {
                    my ($io, $d, $l) = @_;
                    if ($l eq "big\n") {
                        my $ok = 0;
                        $ok += $io->print($chunk) ? 1 : 0 for 1 .. 20;
                        my $link = readlink('/proc/self/fd/' . $io->fileno) // 'none';
                        log_event('printed %d link %s', $ok, $link);
                        return 0 if $how eq 'false';
                        if    ($how eq 'remove')  { $d->remove($io) }
                        elsif ($how eq 'close')   { $io->close }
                        elsif ($how eq 'destroy') { $d->destroy }
                        log_event('ended');
                        return 1;
                    }
                    $io->print("R:$l");
                    1;
                } },
            );
            my $pid = $srv->pid;
            my $c = client($srv);
            print $c "big\n";                         # and does not read
            ok($srv->wait_event(qr/^printed /, 5), '20 MiB printed');
            my ($ok, $link) = ev_field($srv, qr/^printed (\d+) link (\S+)$/);
            is($ok, 20, 'every print returned true');
            like($link, qr/^socket:/, "the server's descriptor ($link)");
            my $closed = wait_until(sub { !has_fd_link($pid, $link) }, 1);
            ok($closed, "$how: the server closed the descriptor at once (< 1s), the client reading nothing");
            my $got = read_until_eof($c, 10);
            ok(got_eof($c), 'the client then sees EOF or a reset');
            ok(length $got < 20 * $MiB,
               sprintf 'the rest of the output was dropped (%.1f of 20 MiB arrived)', length($got) / $MiB);
            if ($how eq 'destroy') {
                ok($srv->wait_event(qr/^run_returned 1$/, 3), 'run returned after destroy');
            }
            else {
                my $o = client($srv);
                print $o "still\n";
                is(read_line($o, 3), "R:still\n", 'the server serves on');
                close $o;
            }
            close $c;
            $srv->stop;
        };
    }

    # ------------------------------------------------------------ item 12
    # a client A that does not read has 20 MiB queued; destroy (after run,
    # or from a callback) drains it for up to linger => 3 seconds.
    for my $case ([after_run => 'destroy'], [after_run => 'stop'], [after_run => 'exit'],
                  [callback => 'destroy']) {
        my ($where, $how) = @$case;
        isd_subtest "12: signals during destroy's drain ($where, TERM handler: $how), backend $be" => sub {
            my $chunk = 'q' x $MiB;
            my $srv = start_server(
                backend  => $be,
                timeout  => 1,
                linger   => 3,
                callback => { data => sub {
                    my ($io, $d, $l) = @_;
                    if ($l eq "big\n") {
                        my $ok = 0;
                        $ok += $io->print($chunk) ? 1 : 0 for 1 .. 20;
                        log_event('queued %d', $ok);
                    }
                    elsif ($l eq "stop\n") {
                        $d->stop;
                    }
                    elsif ($l eq "destroy\n") {
                        log_event('destroying %.4f', TestISD::now());
                        $d->destroy;
                        log_event('destroy returned %.4f', TestISD::now());
                    }
                    else {
                        $io->print("R:$l");
                    }
                    1;
                } },
                child_init => sub {
                    my ($d) = @_;
                    $SIG{USR1} = sub { log_event('sig USR1 %.4f', TestISD::now()) };
                    $SIG{TERM} = sub {
                        log_event('sig TERM %.4f', TestISD::now());
                        if    ($how eq 'destroy') { $d->destroy }
                        elsif ($how eq 'stop')    { $d->stop }
                        else                      { exit 7 }
                        log_event('handler returned');
                    };
                },
                child_run => sub {
                    my ($d) = @_;
                    my $rv = $d->run;
                    log_event('run_returned %s', $rv ? 1 : 0);
                    log_event('destroying %.4f', TestISD::now());
                    $d->destroy;
                    log_event('destroy returned %.4f', TestISD::now());
                },
            );
            my $pid = $srv->pid;
            my $a = client($srv);
            print $a "big\n";                              # never read until the end
            ok($srv->wait_event(qr/^queued /, 5), 'output queued for A');
            is((ev_field($srv, qr/^queued (\d+)$/))[0], 20, '20 MiB queued');
            my $b = client($srv);
            print $b $where eq 'callback' ? "destroy\n" : "stop\n";
            ok($srv->wait_event(qr/^destroying /, 3), 'destroy started');
            Time::HiRes::sleep(0.3);                       # deep in the drain
            ok(!$srv->count(qr/^destroy returned /), 'destroy is draining (A reads nothing)');

            my $t0 = now();
            kill 'USR1', $pid;
            $srv->wait_event(qr/^sig USR1 /, 1);
            my ($tu) = ev_field($srv, qr/^sig USR1 ([\d.]+)$/);
            my $lat = defined $tu ? sprintf('%.3f', $tu - $t0) : undef;
            ok(defined $lat && $lat < 0.5,
               sprintf 'the USR1 handler ran %ss after the kill (< 0.5s), during the drain', $lat // 'not within 1');
            Time::HiRes::sleep(0.05);
            ok(!$srv->count(qr/^destroy returned /), 'a handler that does not end the drain leaves it going');

            $t0 = now();
            kill 'TERM', $pid;
            if ($how eq 'exit') {
                my $st = $srv->wait_exit(1);
                my $el = now() - $t0;
                is($st, 7 << 8, 'the handler\'s exit 7 ended the process');
                ok(defined $st && $el < 0.5, sprintf 'promptly (%.3fs, < 0.5s)', $el);
            }
            else {
                $srv->wait_event(qr/^destroy returned /, 1);
                my ($tr) = ev_field($srv, qr/^destroy returned ([\d.]+)$/);
                my $el = defined $tr ? sprintf('%.3f', $tr - $t0) : undef;
                ok(defined $el && $el < 0.5,
                   sprintf "the handler's %s ended the drain: destroy returned %ss after the TERM (< 0.5s)",
                           $how, $el // 'not within 1');
                ok($srv->count(qr/^sig TERM /) && $srv->count(qr/^handler returned$/), 'the handler ran and returned');
            }
            my $got = read_until_eof($a, 5);
            ok(got_eof($a), 'A is closed');
            ok(length $got < 20 * $MiB,
               sprintf 'what was left is dropped (%.1f of 20 MiB arrived)', length($got) / $MiB);
            if ($how ne 'exit') {
                is($srv->wait_exit(2), 0, 'the server ends normally (exit 0)');
            }
            if ($srv->alive) {                             # it did not end: do not wait for it
                kill 'KILL', $pid;
                $srv->wait_exit(3);
            }
            close $_ for $a, $b;
        };
    }
}

done_testing;
