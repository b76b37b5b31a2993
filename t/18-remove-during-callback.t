#!perl
# remove/destroy/stop from inside callbacks, on the current peer or another:
# no event reaches a removed peer, nothing crashes, the process exits 0.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use TestISD;
use Test::More;

my %peer;        # name => $io
my %name;        # "$io" => name
my %on_remove;   # name => what to do when that peer goes
my $remove_in_add = 0;

sub nm { my $n = $name{ $_[0] }; defined $n ? $n : 'anon' }

sub add {
    my ($io, $d) = @_;
    if ($remove_in_add) {
        $remove_in_add = 0;
        $io->print("removed in add\n");
        $d->remove($io);
        log_event('add removed self');
        return 1;
    }
    1;
}

sub data {
    my ($io, $d) = @_;
    my $l = $io->getline;
    (my $cmd = $l) =~ s/\n\z//;
    my $me = nm($io);
    log_event('data %s %s', $me, $cmd);
    if ($cmd =~ /^name (\w+)$/) {
        $peer{$1} = $io;
        $name{$io} = $1;
        $io->print("hi $1\n");
    }
    elsif ($cmd =~ /^kill (\w+)$/) {
        $d->remove($peer{$1});
        log_event('killed %s by %s', $1, $me);
        $io->print("killed $1\n");
    }
    elsif ($cmd eq 'sleep') {
        Time::HiRes::sleep(0.4);    # block the loop so that others' input piles up
        $io->print("slept\n");
    }
    elsif ($cmd eq 'destroy') {
        $io->print("destroying\n");
        $d->destroy;
        log_event('destroyed by %s', $me);
    }
    elsif ($cmd =~ /^onremove (\w+) (\w+)$/) {
        $on_remove{$1} = $2;
        $io->print("ok\n");
    }
    elsif ($cmd eq 'removeinadd') {
        $remove_in_add = 1;
        $io->print("ok\n");
    }
    elsif ($cmd eq 'stop') {
        $io->print("stopping\n");
        $d->stop;
    }
    else {
        $io->print("R:$l");
    }
    1;
}

sub remove {
    my ($io, $d) = @_;
    my $me = nm($io);
    log_event('remove %s', $me);
    my $what = $on_remove{$me} || '';
    if ($what eq 'stop') {
        $d->stop;
        log_event('stopped from remove');
    }
    elsif ($what eq 'self') {
        $d->remove($io);
        log_event('removed self in remove');
    }
    elsif ($what =~ /^kill(\w+)$/) {
        $d->remove($peer{$1});
        log_event('killed %s in remove', $1);
    }
}

sub named {
    my ($srv, $n) = @_;
    my $c = client($srv);
    print $c "name $n\n";
    my $r = read_line($c);
    die "named $n: got " . (defined $r ? $r : 'nothing') . "\n" unless defined $r && $r eq "hi $n\n";
    return $c;
}

sub server {
    my ($be) = @_;
    return start_server(backend => $be, timeout => 1,
                        callback => { add => \&add, data => \&data, remove => \&remove });
}

# the events about $who after the event matching $after
sub after {
    my ($srv, $after, $who) = @_;
    my @e = $srv->events;
    my ($i) = grep { $e[$_] =~ $after } 0 .. $#e;
    return ('no such event') unless defined $i;
    return grep { /^(data|remove) \Q$who\E\b/ } @e[$i + 1 .. $#e];
}

sub clean_exit {
    my ($srv, $how) = @_;
    my $st = $srv->wait_exit(5);
    is($st, 0, "$how: the server process exited 0");
    unlike($srv->stderr, qr/panic|Attempt to free|Use of freed|Segmentation|double free|corrupt/,
           "$how: nothing alarming on stderr") or diag $srv->stderr;
}

for my $be (backends()) {
    isd_subtest "A and B remove each other in the same batch, backend $be" => sub {
        my $srv = server($be);
        my ($a, $b, $c) = map { named($srv, $_) } qw(A B C);
        print $c "sleep\n";
        Time::HiRes::sleep(0.1);
        print $a "kill B\na2\n";
        print $b "kill A\nb2\n";
        is(read_line($c), "slept\n", 'loop was blocked');
        my $ra = read_line($a, 2);
        my $rb = read_line($b, 2);
        my @winner = grep { defined $_->[1] && $_->[1] =~ /^killed/ } ['A', $ra], ['B', $rb];
        is(scalar(@winner), 1, 'exactly one kill happened');
        my ($w, $l) = @winner ? ($winner[0][0], $winner[0][0] eq 'A' ? 'B' : 'A') : ('A', 'B');
        my %sock = (A => $a, B => $b);
        read_until_eof($sock{$l}, 3);
        ok(got_eof($sock{$l}), "the loser ($l) was closed");
        is(read_line($sock{$w}, 2), "R:" . lc($w) . "2\n", "the winner ($w) is still served");
        Time::HiRes::sleep(0.2);
        is($srv->count(qr/^killed /), 1, 'one kill event');
        is_deeply([ after($srv, qr/^killed $l by $w$/, $l) ], [],
                  "no data and no remove for $l after it was removed");
        print $c "stop\n";
        is(read_line($c), "stopping\n", 'stop');
        clean_exit($srv, 'mutual removal');
        close $_ for $a, $b, $c;
    };

    isd_subtest "removing a peer with pipelined input, backend $be" => sub {
        my $srv = server($be);
        my ($a, $b, $c) = map { named($srv, $_) } qw(A B C);
        print $c "sleep\n";
        Time::HiRes::sleep(0.1);
        print $b join '', map { "b$_\n" } 1 .. 50;
        print $a "kill B\n";
        is(read_line($c), "slept\n", 'slept');
        is(read_line($a), "killed B\n", 'A removed B');
        my $got = read_until_eof($b, 3);
        ok(got_eof($b), 'B closed');
        Time::HiRes::sleep(0.2);
        is_deeply([ after($srv, qr/^killed B by A$/, 'B') ], [], 'no event for B after its removal');
        print $c "stop\n";
        read_line($c);
        clean_exit($srv, 'pipelined');
        close $_ for $a, $b, $c;
    };

    isd_subtest "removing another peer (and itself) from remove, backend $be" => sub {
        my $srv = server($be);
        my ($a, $b, $c) = map { named($srv, $_) } qw(A B C);
        print $c "onremove A killB\n";
        is(read_line($c), "ok\n", 'armed');
        print $c "onremove C self\n";
        is(read_line($c), "ok\n", 'armed');
        close $a;
        ok($srv->wait_event(qr/^killed B in remove$/), 'remove(A) removed B');
        read_until_eof($b, 3);
        ok(got_eof($b), 'B closed');
        Time::HiRes::sleep(0.2);
        is($srv->count(qr/^remove B$/), 0, 'no remove callback for B');
        close $c;
        ok($srv->wait_event(qr/^removed self in remove$/), '$d->remove($io) inside its own remove');
        my $d = named($srv, 'D');
        print $d "x\n";
        is(read_line($d), "R:x\n", 'still serving');
        print $d "stop\n";
        read_line($d);
        clean_exit($srv, 'remove from remove');
        close $_ for $b, $d;
    };

    isd_subtest "removing the current peer in add, backend $be" => sub {
        my $srv = server($be);
        my $a = named($srv, 'A');
        print $a "removeinadd\n";
        is(read_line($a), "ok\n", 'armed');
        my $b = client($srv);
        print $b "name B\n";
        is(read_line($b), "removed in add\n", 'output before remove() in add delivered');
        read_until_eof($b, 3);
        ok(got_eof($b), 'closed');
        ok($srv->wait_event(qr/^add removed self$/), 'add went on after remove()');
        Time::HiRes::sleep(0.2);
        is($srv->count(qr/^data anon name B$/), 0, 'no data for it');
        is($srv->count(qr/^remove anon$/), 0, 'no remove callback for it');
        print $a "stop\n";
        read_line($a);
        clean_exit($srv, 'remove in add');
        close $_ for $a, $b;
    };

    isd_subtest "destroy from data with others' input pending, backend $be" => sub {
        my $srv = server($be);
        my ($a, $b, $c) = map { named($srv, $_) } qw(A B C);
        print $c "sleep\n";
        Time::HiRes::sleep(0.1);
        print $a "destroy\n";
        print $b "b1\n";
        print $c "c1\n";
        is(read_line($c), "slept\n", 'slept');
        for my $s ($a, $b, $c) { read_until_eof($s, 3) }
        ok(got_eof($a) && got_eof($b) && got_eof($c), 'every peer closed');
        ok($srv->wait_event(qr/^run_returned /), 'run returned');
        my @e = $srv->events;
        my ($i) = grep { $e[$_] =~ /^destroyed by/ } 0 .. $#e;
        if (defined $i) {
            is_deeply([ grep { !/^(run_returned|child_done)/ } @e[$i + 1 .. $#e] ], [],
                      'no event after destroy');
        }
        else {
            # B or C may have run first and been served; destroy must still happen
            fail('destroy happened');
        }
        clean_exit($srv, 'destroy');
        close $_ for $a, $b, $c;
    };

    isd_subtest "stop from remove, backend $be" => sub {
        my $srv = server($be);
        my ($a, $b) = map { named($srv, $_) } qw(A B);
        print $b "onremove A stop\n";
        is(read_line($b), "ok\n", 'armed');
        close $a;
        ok($srv->wait_event(qr/^stopped from remove$/), 'stop called from remove');
        ok($srv->wait_event(qr/^run_returned 1$/, 3), 'run returned true');
        clean_exit($srv, 'stop from remove');
        close $b;
    };
}

done_testing;
