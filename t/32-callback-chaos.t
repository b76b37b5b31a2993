#!perl
# Callbacks that misbehave, all at once and at random: they die (in add,
# data, remove, tick, error), replace the callbacks themselves (callback(),
# a new hash, new slots, deleted keys), remove the current or another peer,
# close or shut down peers, call stop (run is run again) and finally
# destroy, print to peers that are gone, keep $io after its connection ended
# and call methods on it later.  Meanwhile clients come, pipeline, reset
# and half-close.
# Checked from the server's event log: no event for a peer after it ended,
# remove at most once per peer and never after the server removed it, dead
# $io objects answer as documented, and the process ends cleanly.
#
#   ISD_SEED   the random seed (printed on failure) to replay a run
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use TestISD;
use Test::More;
use IO::Select;
use Socket qw(SOL_SOCKET SO_LINGER);

no warnings 'once';

my $SEED = $ENV{ISD_SEED} || int(rand(1 << 30));
my $SECS = (($ENV{LD_PRELOAD} || '') =~ /asan/ || $ENV{ISD_VALGRIND}) ? 1.0 : 1.5;

# ------------------------------------------------------------- the server

my $NEXT = 0;
my @held;        # $io objects kept after their end
our $in_remove = 0;

sub id { my $id = ${*{ $_[0] }}{id}; defined $id ? $id : 'none' }

sub pick_other {
    my ($d, $io) = @_;
    my @c = grep { $_ != $io } $d->connections;
    return @c ? $c[int rand @c] : undef;
}

sub probe_held {
    for my $io (@held) {
        next unless ${*$io}{ended};     # kept by "hold", still open
        my @bad;
        push @bad, 'opened'    if $io->opened;
        push @bad, 'print'     if $io->print("late\n");
        push @bad, 'syswrite'  if defined $io->syswrite("late\n");
        push @bad, 'fileno'    if defined $io->fileno;
        push @bad, 'connected' if defined $io->connected;
        push @bad, 'getline'   if defined $io->getline;
        push @bad, 'peerport'  unless defined $io->peerport;
        push @bad, 'close'     if $io->close;
        push @bad, 'id'        if id($io) eq 'none';
        log_event('probe %s %s', id($io), @bad ? "BAD @bad" : 'ok');
    }
    splice @held, 0, @held - 50 if @held > 50;
}

sub ended {
    my ($io, $how) = @_;
    log_event('%s %s', $how, id($io));
    ${*$io}{ended} = 1;
    push @held, $io;
}

sub s_add {
    my ($io, $d) = @_;
    my $id = ${*$io}{id} = ++$NEXT;
    log_event('add %s', $id);
    my $r = rand;
    if ($r < 0.05) { ended($io, 'refuse'); die "add dies\n" }
    if ($r < 0.08) { ended($io, 'refuse'); return 0 }
    if ($r < 0.10) { $io->print("removed in add\n"); $d->remove($io); ended($io, 'killed'); return 1 }
    $io->print("hello $id\n");
    return 1;
}

sub s_data {
    my ($io, $d, $line) = @_;
    my $id = id($io);
    log_event('data %s', $id);
    log_event('BAD data for a closed $io %s', $id) unless $io->opened;
    (my $cmd = $line) =~ s/\s+\z//;
    $cmd =~ s/^(\w+).*/$1/s;
    if ($cmd eq 'die') { log_event('dies %s', $id); die "data dies\n" }
    if ($cmd eq 'false') { $io->print("bye\n"); log_event('false %s', $id); return 0 }
    if ($cmd eq 'killself') {
        $io->print("going\n");
        $d->remove($io);
        ended($io, 'killed');
        log_event('BAD print after remove succeeded %s', $id) if $io->print("x\n");
        return 1;
    }
    if ($cmd eq 'kill' || $cmd eq 'closeother' || $cmd eq 'shutother') {
        my $o = pick_other($d, $io);
        if ($o) {
            if    ($cmd eq 'kill')       { $d->remove($o) }
            elsif ($cmd eq 'closeother') { $o->close }
            else                         { $o->shutdown(2) }
            ended($o, 'killed');
            log_event('BAD print to a removed peer succeeded %s', id($o)) if $o->print("x\n");
        }
        $io->print("done\n");
        return 1;
    }
    if ($cmd eq 'printother') {
        my @dead = grep { ${*$_}{ended} } @held;
        my $o = @dead && rand() < 0.5 ? $dead[int rand @dead] : pick_other($d, $io);
        $o->print("from $id\n") if $o;
        $io->print("done\n");
        return 1;
    }
    if ($cmd eq 'recb') {
        # change the callbacks under the running loop (the XS caches slots)
        my $cb = $d->{callback};
        my $r = rand;
        if    ($r < 0.2) { $d->callback(remove => \&s_remove, tick => \&s_tick) }
        elsif ($r < 0.4) { $d->{callback} = { %$cb } }                  # a new hash
        elsif ($r < 0.6) { %$cb = (%$cb) }                               # same hash, new slots
        elsif ($r < 0.7) { delete $cb->{tick}; $cb->{tick} = \&s_tick }
        elsif ($r < 0.8) { $cb->{error} = undef; $cb->{error} = \&s_error }
        else             { my $x = delete $cb->{data}; $cb->{data} = sub { goto &s_data } }
        $io->print("recb\n");
        return 1;
    }
    if ($cmd eq 'halfclose') { $io->print("half\n"); $io->shutdown(1); return 1 }
    if ($cmd eq 'hold')  { push @held, $io; $io->print("held\n"); return 1 }
    if ($cmd eq 'probe') { probe_held(); $io->print("probed\n"); return 1 }
    if ($cmd eq 'stop')  { $io->print("stopping\n"); $d->stop; return 1 }
    if ($cmd eq 'destroy') {
        $io->print("destroying\n");
        log_event('destroy by %s', $id);
        $d->destroy;
        $main::done = 1;
        probe_held();
        return 1;
    }
    $io->print("echo $line");
    return 1;
}

sub s_remove {
    my ($io, $d) = @_;
    my $id = id($io);
    ended($io, 'remove');
    log_event('BAD remove inside remove %s', $id) if $in_remove;
    local $in_remove = 1;
    my $r = rand;
    die "remove dies\n" if $r < 0.1;
    if ($r < 0.2) {
        my $o = pick_other($d, $io);
        if ($o) { $d->remove($o); ended($o, 'killed') }
    }
    elsif ($r < 0.3) {
        my $o = pick_other($d, $io);
        $o->print("from remove of $id\n") if $o;
    }
    $io->print("too late?\n");    # allowed (a half-closed peer still reads it)
}

sub s_tick {
    my (undef, $d) = @_;
    probe_held() if rand() < 0.3;
    die "tick dies\n" if rand() < 0.02;
}

sub s_error {
    my ($io, $d, $msg) = @_;
    log_event('error %s %s', defined $io ? id($io) : 'undef', $msg);
    die "error dies too\n" if rand() < 0.2;
}

sub child_run {
    my ($d) = @_;
    my $runs = 0;
    until ($main::done) {
        $d->run;
        $runs++;
        log_event('run returned');
        last if $runs > 10_000;
    }
    log_event('runs %d', $runs);
}

# ------------------------------------------------------------- the clients

my @CMDS = (('echo') x 10, qw(die false killself kill closeother shutother
            printother printother halfclose hold probe probe stop recb recb));

sub chaos {
    my ($srv) = @_;
    my %socks;     # fileno => socket
    my %half;      # fileno => 1: half-closed by us, only read
    my $sel = IO::Select->new;
    my $open = sub {
        my $c = TestISD::try_client($srv->port, timeout => 2) or return;
        $c->blocking(0);
        $socks{ fileno $c } = $c;
        $sel->add($c);
        return $c;
    };
    my $drop = sub {
        my ($c, $rst) = @_;
        $sel->remove($c);
        delete $socks{ fileno $c };
        delete $half{ fileno $c };
        setsockopt($c, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0)) if $rst;
        close $c;
    };
    $open->() for 1 .. 12;
    my ($sent, $conns) = (0, 12);
    my $end = now() + $SECS;
    while (now() < $end) {
        for my $c ($sel->can_read(0.005)) {
            my $n = sysread($c, my $buf, 65536);
            $drop->($c) if defined $n && $n == 0 || !defined $n && !$!{EAGAIN};
        }
        my @all = grep { !$half{ fileno $_ } } values %socks;
        while (@all < 12) {
            my $c = $open->() or last;
            $conns++;
            push @all, $c;
        }
        next unless @all;
        my $c = $all[int rand @all];
        my $r = rand;
        if ($r < 0.03) { $drop->($c, 1); next }                 # reset
        if ($r < 0.06) { shutdown($c, 1); $half{ fileno $c } = 1; next }
        if ($r < 0.08) { $drop->($c, 0); next }                 # plain close
        my $lines = join '', map { $CMDS[int rand @CMDS] . " " . int(rand 1e6) . "\n" } 1 .. 1 + int rand 4;
        $lines .= 'partial' if rand() < 0.05;
        syswrite($c, $lines);
        $sent++;
    }
    # the end: destroy while everything is in flight
    # (add may refuse a client at random: try again)
    my $got = '';
    for (1 .. 20) {
        my $k = TestISD::try_client($srv->port) or last;
        print $k "destroy\n";
        $got = read_until_eof($k, 10);
        last if $got =~ /destroying\n/;
    }
    like($got, qr/destroying\n\z/, 'destroy answered before the close');
    $drop->($_) for values %socks;
    return ($sent, $conns);
}

# ------------------------------------------------------------- the checks

sub check_log {
    my ($srv) = @_;
    my @ev = $srv->events;
    my (%state, %removes, @bad);
    for my $e (@ev) {
        my ($what, $id) = $e =~ /^(\w+) (\S+)/ or next;
        if ($what eq 'BAD') { push @bad, $e; next }
        if ($what eq 'add') { push @bad, "added twice: $e" if $state{$id}; $state{$id} = 'open'; next }
        next unless defined $state{$id} || $what =~ /^(?:data|remove|killed)$/;
        my $st = $state{$id} // 'unknown';
        if ($what eq 'data') {
            push @bad, "data for $st peer: $e" if $st ne 'open';
        }
        elsif ($what eq 'remove') {
            push @bad, "remove for $st peer: $e" if $st ne 'open' && $st ne 'ending';
            $removes{$id}++;
            $state{$id} = 'removed';
        }
        elsif ($what eq 'killed') {
            push @bad, "server removed a $st peer: $e" if $st ne 'open';
            $state{$id} = 'killed';
        }
        elsif ($what eq 'refuse') {
            $state{$id} = 'refused';
        }
        elsif ($what eq 'false' || $what eq 'dies') {
            $state{$id} = 'ending';    # remove comes next
        }
        elsif ($what eq 'probe') {
            push @bad, $e if $e =~ /BAD/;
        }
    }
    push @bad, "remove $_ called $removes{$_} times" for grep { $removes{$_} > 1 } keys %removes;
    my @stuck = grep { $state{$_} eq 'ending' } keys %state;
    push @bad, "no remove after false/die for $_" for @stuck;
    return (\@bad, scalar keys %state, scalar @ev);
}

for my $be (backends()) {
    isd_subtest "callback chaos, backend $be (seed $SEED)" => sub {
        srand($SEED);
        my $srv = start_server(
            backend => $be, timeout => 0.05, read_timeout => 0.2, linger => 2,
            callback => { add => \&s_add, data => \&s_data, remove => \&s_remove,
                          tick => \&s_tick, error => \&s_error },
            child_init => sub { srand($SEED + 1) },
            child_run => \&child_run,
        );
        my ($sent, $conns) = chaos($srv);
        my $st = $srv->wait_exit(15);
        is($st, 0, 'the server ended cleanly after destroy') or diag 'stderr: ' . $srv->stderr;
        ok($srv->count(qr/^child_done$/), 'the daemon was freed after run');
        my ($bad, $peers, $nev) = check_log($srv);
        is(scalar @$bad, 0, "$peers peers, $nev server events, $sent client writes: every invariant held")
            or diag join "\n", "seed $SEED", @$bad[0 .. ($#$bad > 20 ? 20 : $#$bad)];
        ok($srv->count(qr/^remove /) > 0 && $srv->count(qr/^killed /) > 0
           && $srv->count(qr/^run returned$/) > 0 && $srv->count(qr/^probe /) > 0,
           'the chaos did happen (removes, kills, stops, probes)');
        unlike($srv->stderr, qr/panic|Attempt to free|Segmentation|corrupt|double free|Use of freed/i,
               'no Perl or libc memory errors on stderr');
    };
}

done_testing;
