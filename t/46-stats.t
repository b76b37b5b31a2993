#!perl
# stats: $server->stats (connections, accepted, refused, closed, bytes_in,
# bytes_out, messages_in, errors, started) and $io->stats (bytes_in,
# bytes_out, messages_in, connected) count exactly what happened: the test
# keeps its own account of every byte and line each client sent and read
# and compares it with what the server reports (through log_event, from a
# "stats" request's data callback) after a known exchange.  Each call
# returns a new hash; the counters survive stop and a second run; started
# is undef before the first run and keeps its value after it.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use TestISD;
use Test::More;
use Scalar::Util qw(refaddr);

my @SRV_KEYS = sort qw(connections accepted refused rejected closed bytes_in bytes_out
                       messages_in errors started
                       datagrams_in datagrams_out datagrams_dropped);
my @IO_KEYS  = sort qw(bytes_in bytes_out messages_in connected);
my $MAX_LINE = 64;

# ------------------------------------------------------------ server side

sub kv {
    my ($h) = @_;
    return join ' ', map { "$_=" . (defined $h->{$_} ? $h->{$_} : 'undef') } sort keys %$h;
}

our ($REFUSE_NEXT, $DIE_NEXT) = (0, 0);

sub log_stats {
    my ($io, $d) = @_;
    log_event('stats %s | server: %s | io: %s', $io->peerport, kv($d->stats), kv($io->stats));
}

sub data {
    my ($io, $d, $line) = @_;
    (my $cmd = $line) =~ s/\n\z//;
    if ($cmd eq 'stats') {
        log_stats($io, $d);
        $io->print("ok\n");
    }
    elsif ($cmd eq 'fresh') {
        # two hashes alive at once must be two hashes; changing one (and
        # the other) must change nothing the next call returns
        my ($s1, $s2, $i1, $i2) = ($d->stats, $d->stats, $io->stats, $io->stats);
        my $distinct = (refaddr($s1) != refaddr($s2) && refaddr($i1) != refaddr($i2)) ? 1 : 0;
        for my $h ($s1, $s2, $i1, $i2) {
            $_ = 1000 for values %$h;
            delete $h->{bytes_in};
            $h->{bogus} = 1;
        }
        log_event('fresh %s distinct=%d', $io->peerport, $distinct);
        log_stats($io, $d);
        $io->print("ok\n");
    }
    elsif ($cmd eq 'refuse') {
        $REFUSE_NEXT = 1;
        $io->print("refusing\n");
    }
    elsif ($cmd eq 'die') {
        $DIE_NEXT = 1;
        $io->print("dying\n");
    }
    elsif ($cmd eq 'stop') {
        $io->print("stopping\n");
        $d->stop;
    }
    else {
        $io->print("echo: $line");
    }
    return 1;
}

my %CB = (
    add => sub {
        my ($io) = @_;
        my $p = $io->peerport;
        if ($REFUSE_NEXT) {
            $REFUSE_NEXT = 0;
            log_event('refused %s | io: %s', $p, kv($io->stats));
            return 0;
        }
        if ($DIE_NEXT) {
            $DIE_NEXT = 0;
            log_event('add dies %s', $p);
            die "add says no\n";
        }
        log_event('add %s', $p);
        return 1;
    },
    data   => \&data,
    remove => sub {
        my ($io) = @_;
        log_event('remove %s | io: %s', $io->peerport, kv($io->stats));
    },
    error  => sub {
        my ($io, undef, $msg) = @_;
        log_event('error %s | io: %s | %s', $io ? ($io->peerport, kv($io->stats)) : ('undef', ''), $msg);
    },
);

# child_run: $runs runs, each announced with the time it starts and ended
# with the stats read outside any callback
sub runs {
    my ($runs) = @_;
    return sub {
        my ($d) = @_;
        for my $i (1 .. $runs) {
            log_event('run %d start %.6f', $i, now());
            my $rv = $d->run;
            log_event('run %d returned %d | server: %s', $i, $rv ? 1 : 0, kv($d->stats));
        }
    };
}

sub server {
    my ($be, %o) = @_;
    my $runs = delete $o{runs} || 1;
    my %cb = %CB;
    delete $cb{$_} for @{ delete $o{no_cb} || [] };
    return start_server(backend => $be, max_line => $MAX_LINE, callback => \%cb,
                        child_run => runs($runs), %o);
}

# -------------------------------------------------------------- test side

sub parse_kv {
    my ($s) = @_;
    my %h;
    for my $pair (split ' ', $s) {
        my ($k, $v) = split /=/, $pair, 2;
        $h{$k} = $v eq 'undef' ? undef : $v;
    }
    return \%h;
}

sub show { defined $_[0] ? $_[0] : 'undef' }

# The account: per client what it sent (bytes, lines the server delivers)
# and read; per server ($M) the sums over all its clients.
sub new_client {
    my ($srv, $M) = @_;
    my $t = int(now());
    my $s = client($srv);
    return { sock => $s, port => $s->sockport, sent => 0, got => 0, lines => 0,
             t_conn => $t, M => $M };
}

sub send_raw {
    my ($cl, $data, $lines, $name) = @_;
    is(send_all($cl->{sock}, $data, 3), length $data, "$name: sent");
    $cl->{sent} += length $data;
    $cl->{lines} += $lines;
    $cl->{M}{in} += length $data;
    $cl->{M}{msgs} += $lines;
}

sub send_lines {
    my ($cl, @lines) = @_;
    send_raw($cl, join('', map { "$_\n" } @lines), scalar @lines, "$cl->{port} '@lines'");
}

sub recv_line {
    my ($cl) = @_;
    my $r = read_line($cl->{sock}, 3);
    return undef unless defined $r;
    $cl->{got} += length $r;
    $cl->{M}{out} += length $r;
    $r =~ s/\n\z//;
    return $r;
}

sub ask {
    my ($cl, $line) = @_;
    send_lines($cl, $line);
    return recv_line($cl);
}

# The entry of $pre for $port in the server's log, the ($n+1)th
sub event_of {
    my ($srv, $pre, $port, $n) = @_;
    my $re = qr/^\Q$pre\E $port\b/;
    return undef unless $srv->wait_event($re, 3, $n + 1);
    return ($srv->grep_events($re))[$n];
}

sub check_io {
    my ($io, $cl, $name, $t_hi) = @_;
    is_deeply([sort keys %$io], \@IO_KEYS, "$name: \$io->stats has exactly @IO_KEYS");
    is($io->{bytes_in}, $cl->{sent}, "$name: \$io bytes_in = $cl->{sent}, what the client sent");
    is($io->{bytes_out}, $cl->{got}, "$name: \$io bytes_out = $cl->{got}, what the client read");
    is($io->{messages_in}, $cl->{lines}, "$name: \$io messages_in = $cl->{lines} lines");
    my $c = show($io->{connected});
    like($c, qr/^\d+$/, "$name: connected is an integer ($c)");
    $t_hi = int(now()) unless defined $t_hi;
    ok($c =~ /^\d+$/ && $c >= $cl->{t_conn} && $c <= $t_hi,
       "$name: connected is the time of the connect (between $cl->{t_conn} and $t_hi)");
}

sub check_server {
    my ($s, $M, $name, %want) = @_;
    is_deeply([sort keys %$s], \@SRV_KEYS, "$name: \$server->stats has exactly @SRV_KEYS");
    my %exp = (bytes_in => $M->{in}, bytes_out => $M->{out}, messages_in => $M->{msgs}, %want);
    is($s->{$_}, $exp{$_}, "$name: server $_ = $exp{$_}") for sort keys %exp;
    my ($a, $c) = map { show($s->{$_}) } qw(accepted closed);
    ok($a =~ /^\d+$/ && $c =~ /^\d+$/ && show($s->{connections}) eq $a - $c,
       "$name: connections (" . show($s->{connections}) . ") = accepted ($a) - closed ($c)");
}

# $cl sends $cmd ('stats' or 'fresh'), which is answered "ok" after the
# server logged both stats; they are compared with the account (the server's
# at that moment: every byte and line so far, this request's included, but
# not its answer).  Returns the server's hash.
sub stats_check {
    my ($srv, $cl, $name, %want) = @_;
    my $cmd = delete $want{cmd} || 'stats';
    my $n = $srv->count(qr/^stats $cl->{port}\b/);
    send_lines($cl, $cmd);
    my %M = %{ $cl->{M} };
    my %cl = %$cl;
    is(recv_line($cl), 'ok', "$name: '$cmd' answered");
    my $ev = event_of($srv, 'stats', $cl->{port}, $n);
    ok(defined $ev, "$name: the server logged its stats") or return {};
    my ($s, $io) = $ev =~ /^stats \d+ \| server: (.*) \| io: (.*)$/ or return {};
    $s = parse_kv($s);
    check_server($s, \%M, $name, %want);
    check_io(parse_kv($io), \%cl, "$name (\$io of $cl->{port})");
    return $s;
}

sub check_started {
    my ($s, $t_run, $name) = @_;
    my $st = show($s->{started});
    like($st, qr/^\d+$/, "$name: started is an integer ($st)");
    ok($st =~ /^\d+$/ && $st >= int($t_run) && $st <= now(),
       "$name: started is when run started ($st, run at " . int($t_run) . ')');
    ok($st =~ /^\d+$/ && abs($st - $t_run) < 5, "$name: started within 5s of run's start");
}

sub run_start {
    my ($srv, $i) = @_;
    my $ev = event_of($srv, 'run', $i, 0);
    return $ev && $ev =~ /^run \d+ start ([\d.]+)$/ ? $1 : undef;
}

sub eof_unserved {
    my ($c, $name) = @_;
    is(read_until_eof($c, 3), '', "$name: nothing is sent to it");
    ok(got_eof($c), "$name: the server closed it");
}

for my $be (backends()) {
    isd_subtest "before run, outside run and across two runs in this process, backend $be" => sub {
        my ($kept, $timed_out) = (undef, 0);
        my $d = IO::Socket::INET::Daemon->new(
            port => 0, host => '127.0.0.1', backend => $be,
            callback => {
                add    => sub { $kept = $_[0]; 1 },
                data   => sub {
                    my ($io, $d, $line) = @_;
                    if ($line eq "bye\n") { $io->print("bye\n"); $d->stop }
                    else                  { $io->print("echo: $line") }
                    1;
                },
                remove => sub { $_[1]->stop },
            },
        );
        my $s0 = $d->stats;
        is(ref $s0, 'HASH', 'stats returns a hash reference before run');
        is_deeply([sort keys %$s0], \@SRV_KEYS, "... with exactly @SRV_KEYS");
        ok(exists $s0->{started} && !defined $s0->{started}, 'started is undef before run');
        is($s0->{$_}, 0, "$_ is 0 before run") for grep { $_ ne 'started' } @SRV_KEYS;
        $s0->{accepted} = 42;
        $s0->{started} = 1;
        delete $s0->{closed};
        my $s1 = $d->stats;
        isnt(refaddr($s1), refaddr($s0), 'a second call returns another hash');
        is_deeply($s1, { map { $_ => ($_ eq 'started' ? undef : 0) } @SRV_KEYS },
                  'changing the first hash changed nothing in the daemon');

        ok($d->listen, 'listen') or die "listen: $!\n";
        my $port = $d->sockport;
        # connected (by the kernel) and sent before the server runs
        my $t_conn = int(now());
        my $c = client($port);
        my $data = "a\nbb\nbye\n";
        is(send_all($c, $data, 3), length $data, 'the client sent 3 lines (9 bytes)');
        is($d->stats->{started}, undef, 'started is still undef after listen');

        my $guard = $d->timer(after => 5, cb => sub { $timed_out = 1; $_[0]->stop });
        my $t0 = now();
        my $rv = $d->run;
        my $t1 = now();
        $guard->cancel;
        ok($rv, 'run 1 returned true (stopped by data)');
        ok(!$timed_out, 'run 1 ended by data, not by the 5s guard');
        my $replies = join '', map { read_line($c, 3) // '' } 1 .. 3;
        is($replies, "echo: a\necho: bb\nbye\n", 'the client got the 3 replies');
        my $out = length $replies;

        my $s = $d->stats;
        my $st = show($s->{started});
        like($st, qr/^\d+$/, "started is an integer after run ($st)");
        ok($st =~ /^\d+$/ && $st >= int($t0) && $st <= int($t1),
           'started is the time run started (' . int($t0) . "..$st.." . int($t1) . ')');
        my %exp = (connections => 1, accepted => 1, refused => 0, closed => 0, bytes_in => 9,
                   bytes_out => $out, messages_in => 3, errors => 0);
        is($s->{$_}, $exp{$_}, "after run 1: $_ = $exp{$_}") for sort keys %exp;

        ok($kept, 'add saw the connection') or return;
        my $io = $kept->stats;
        is_deeply([sort keys %$io], \@IO_KEYS, "\$io->stats has exactly @IO_KEYS");
        is($io->{bytes_in}, 9, '$io bytes_in = 9');
        is($io->{bytes_out}, $out, "\$io bytes_out = $out");
        is($io->{messages_in}, 3, '$io messages_in = 3');
        my $ct = show($io->{connected});
        ok($ct =~ /^\d+$/ && $ct >= $t_conn && $ct <= int($t1),
           "connected is the accept's time ($t_conn..$ct.." . int($t1) . ')');
        $io->{bytes_in} = 0;
        is($kept->stats->{bytes_in}, 9, 'changing an $io->stats hash changes nothing');

        # run 2, in a later second than run 1 (started must not move), the
        # client goes and remove stops the server
        ok(wait_until(sub { int(now()) > $st }, 2, 0.01), 'a new second began') if $st =~ /^\d+$/;
        close $c;
        $guard = $d->timer(after => 5, cb => sub { $timed_out = 1; $_[0]->stop });
        ok($d->run, 'run 2 returned true (stopped by remove)');
        $guard->cancel;
        ok(!$timed_out, 'run 2 ended by remove, not by the 5s guard');
        my $s2 = $d->stats;
        is($s2->{started}, $st, 'started keeps the time of the first run');
        %exp = (%exp, connections => 0, closed => 1);
        is($s2->{$_}, $exp{$_}, "after run 2: $_ = $exp{$_} (not reset)") for sort keys %exp;
        my $io2 = eval { $kept->stats };
        ok($io2, '$io->stats still answers after the connection is gone') or diag($@);
        is_deeply($io2, { bytes_in => 9, bytes_out => $out, messages_in => 3, connected => $ct },
                  '... with its final counts') if $io2;
        undef $kept;
        $d->destroy;
    };

    isd_subtest "exact counts after a known exchange, backend $be" => sub {
        my $M = { in => 0, out => 0, msgs => 0 };
        my $srv = server($be);
        my $c1 = new_client($srv, $M);
        is(ask($c1, 'hello'), 'echo: hello', 'c1 is served');
        my $t_run = run_start($srv, 1);
        ok(defined $t_run, 'the server logged when run started') or $t_run = 0;

        my $c2 = new_client($srv, $M);
        send_lines($c2, 'one', 'two', 'three');        # one write, 3 lines
        is(recv_line($c2), "echo: $_", "c2: reply to '$_'") for qw(one two three);

        my $c3 = new_client($srv, $M);
        is(ask($c3, 'a somewhat longer line of text'), 'echo: a somewhat longer line of text',
           'c3 is served');

        # c4: refused by add
        is(ask($c1, 'refuse'), 'refusing', 'c1 asks for the next client to be refused');
        my $c4 = new_client($srv, $M);
        eof_unserved($c4->{sock}, 'c4 (refused)');
        my $ev = event_of($srv, 'refused', $c4->{port}, 0);
        ok(defined $ev, 'add refused c4');
        if (defined $ev && $ev =~ /\| io: (.*)$/) {
            my $io = parse_kv($1);
            check_io($io, $c4, 'c4 in add');
        }

        # c5: one line, then one over max_line in a single write: dropped
        my $c5 = new_client($srv, $M);
        is(ask($c5, 'ok'), 'echo: ok', 'c5 is served');
        send_raw($c5, ('x' x 100) . "\n", 0, 'c5 over max_line');
        eof_unserved($c5->{sock}, 'c5 (over max_line)');
        ok($srv->wait_event(qr/^remove $c5->{port}\b/, 3), 'remove for c5');
        my @err = $srv->grep_events(qr/^error /);
        is(scalar @err, 1, 'one error report') or diag(join "\n", @err);
        like($err[0] // '', qr/^error $c5->{port} .*line too long/, '... for c5, over max_line');
        for my $what ('error', 'remove') {
            my ($e) = $srv->grep_events(qr/^$what $c5->{port}\b/);
            next unless ok(defined $e && $e =~ /\| io: ([^|]*?)(?: \|.*)?$/, "c5: \$io->stats in $what");
            check_io(parse_kv($1), $c5, "c5 in $what");
        }

        my $s = stats_check($srv, $c3, 'c3 after 5 accepted, 1 refused, 1 dropped',
                            accepted => 5, refused => 1, closed => 2, connections => 3, errors => 1);
        check_started($s, $t_run, 'in data');

        # c1 goes: remove sees its final counts
        close $c1->{sock};
        my $rm = event_of($srv, 'remove', $c1->{port}, 0);
        ok(defined $rm, 'remove for c1');
        check_io(parse_kv($1), $c1, 'c1 in remove') if defined $rm && $rm =~ /\| io: (.*)$/;

        my $s2 = stats_check($srv, $c2, 'c2 after c1 closed',
                             accepted => 5, refused => 1, closed => 3, connections => 2, errors => 1);
        is($s2->{started}, $s->{started}, 'started does not change');
        stats_check($srv, $c2, 'c2 again (stats counts itself)',
                    accepted => 5, refused => 1, closed => 3, connections => 2, errors => 1);

        # fresh: a new hash each call; changing returned hashes changes nothing
        stats_check($srv, $c3, 'stats after changing earlier hashes', cmd => 'fresh',
                    accepted => 5, refused => 1, closed => 3, connections => 2, errors => 1,
                    started => $s->{started});
        like(($srv->grep_events(qr/^fresh $c3->{port}\b/))[0] // '', qr/distinct=1$/,
             'two calls alive at once are two hashes (server and $io)');

        close $_->{sock} for $c2, $c3;
        ok($srv->wait_event(qr/^remove (?:$c2->{port}|$c3->{port})\b/, 3, 2), 'c2 and c3 removed');
        my $c6 = new_client($srv, $M);
        stats_check($srv, $c6, 'a new client after all left',
                    accepted => 6, refused => 1, closed => 5, connections => 1, errors => 1);
        is(scalar(() = $srv->grep_events(qr/^error /)), 1, 'still one error report');
        is($srv->stderr, '', "nothing on the server's stderr");
    };

    isd_subtest "stop and a second run keep counting; warnings count as errors, backend $be" => sub {
        my $M = { in => 0, out => 0, msgs => 0 };
        # no error callback: a die in add is reported with a warning
        my $srv = server($be, runs => 2, no_cb => ['error']);
        my $c1 = new_client($srv, $M);
        is(ask($c1, 'hello'), 'echo: hello', 'c1 is served in run 1');
        my $t_run = run_start($srv, 1);
        ok(defined $t_run, 'run 1 start logged') or $t_run = 0;
        my $s1 = stats_check($srv, $c1, 'run 1',
                             accepted => 1, refused => 0, closed => 0, connections => 1, errors => 0);
        check_started($s1, $t_run, 'run 1');

        is(ask($c1, 'stop'), 'stopping', 'c1 stops the server');
        my $ev = event_of($srv, 'run', 1, 1);
        ok(defined $ev && $ev =~ /^run 1 returned 1 \| server: (.*)$/, 'run 1 returned true')
            or diag(show($ev));
        my $after = parse_kv($1 // '');
        check_server($after, $M, 'read after run 1 returned (outside callbacks)',
                     accepted => 1, refused => 0, closed => 0, connections => 1, errors => 0,
                     started => $s1->{started});

        ok(defined run_start($srv, 2), 'run 2 started');
        my $s2 = stats_check($srv, $c1, 'run 2, same connection',
                             accepted => 1, refused => 0, closed => 0, connections => 1, errors => 0,
                             started => $s1->{started});

        is(ask($c1, 'die'), 'dying', 'c1 asks add to die for the next client');
        my $c2 = new_client($srv, $M);
        eof_unserved($c2->{sock}, 'c2 (add died)');
        ok($srv->wait_event(qr/^add dies $c2->{port}$/, 3), 'add died for c2');
        my $c3 = new_client($srv, $M);
        is(ask($c3, 'hi'), 'echo: hi', 'c3 is served in run 2');
        stats_check($srv, $c3, 'run 2 after a refusal by die',
                    accepted => 3, refused => 1, closed => 1, connections => 2, errors => 1,
                    started => $s1->{started});
        my @warn = $srv->stderr =~ /add callback died: add says no/g;
        is(scalar @warn, 1, 'the die was reported with one warning');

        is(ask($c3, 'stop'), 'stopping', 'c3 stops run 2');
        $ev = event_of($srv, 'run', 2, 1);
        ok(defined $ev && $ev =~ /^run 2 returned 1 \| server: (.*)$/, 'run 2 returned true')
            or diag(show($ev));
        check_server(parse_kv($1 // ''), $M, 'read after run 2 returned',
                     accepted => 3, refused => 1, closed => 1, connections => 2, errors => 1,
                     started => $s1->{started});
        close $_->{sock} for $c1, $c3;
    };
}

done_testing;
